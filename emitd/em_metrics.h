/*
 * em_metrics.h - emitd's counters and the text of its /metrics.
 *
 * Owns: the metric names (wsgw_emit_*) and their help, rendering a
 * snapshot into Prometheus text (pure, unit-tested). Must not: do I/O; the
 * counters are bumped by em_http (loop thread) and em_broker (atomics).
 */
#ifndef EM_METRICS_H
#define EM_METRICS_H

#include <stdint.h>

#include "em_broker.h"
#include "prom.h"

/* The statuses emitd answers, each a label value of
 * wsgw_emit_requests_total. */
#define EM_STATUS_CODES {200, 400, 401, 404, 405, 408, 413, 414, 431, 503}
#define EM_STATUS_N 10

typedef struct em_stats {
  uint64_t requests[EM_STATUS_N];    /* by EM_STATUS_CODES index */
  uint64_t events_emitted;           /* messages confirmed, in 200s and 503s */
  uint64_t events_failed;            /* messages of 503s not confirmed */
  uint64_t connections_total, connections_refused, timeouts;
  prom_hist latency;                 /* submit to answer of accepted requests */
} em_stats;

/* Index of status in EM_STATUS_CODES, or -1. */
int em_status_index(int status);

typedef struct em_gauges {
  uint64_t connections, pending, requests_waiting, keys;
} em_gauges;

void em_metrics_write(strbuf *b, const em_stats *s, const em_gauges *g,
                      const em_broker_stats *bs);

#endif
