/*
 * prom.h - the Prometheus text exposition format (version 0.0.4), written
 * into a strbuf, and one fixed-bucket latency histogram.
 *
 *   # HELP wsgw_gateway_connections Sockets open, in any state.
 *   # TYPE wsgw_gateway_connections gauge
 *   wsgw_gateway_connections 3
 *
 * Owns: the text of families, samples and histograms, and the bucket
 * layout every latency histogram of the project shares. Must not: know any
 * metric of a daemon (gw_admin and wk_metrics name theirs), do I/O, or
 * escape anything: names, label values and help texts are compile-time
 * constants of this project, without '\\', '"' or newlines.
 */
#ifndef PROM_H
#define PROM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "strbuf.h"

#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* "# HELP name help" and "# TYPE name type" (counter, gauge, histogram). */
void prom_family(strbuf *b, const char *name, const char *type,
                 const char *help);
/* "name{labels} value"; labels is NULL or e.g. "reason=\"normal\"". */
void prom_sample(strbuf *b, const char *name, const char *labels,
                 uint64_t value);

/*
 * Latency buckets, upper bounds in microseconds, from 100 us to 10 s (a
 * loopback round trip through RabbitMQ is ~0.3-1 ms; the reply timeout is
 * seconds). One layout for the whole project, so that a zeroed prom_hist is
 * ready to use and dashboards can compare gateway and worker latencies.
 */
#define PROM_HIST_BOUNDS 16
extern const uint64_t prom_hist_bounds_us[PROM_HIST_BOUNDS];

/* Per-bucket (not cumulative) counts; the last slot is +Inf. Atomic
 * (relaxed) so that workerd's consumer thread may observe while its HTTP
 * thread reads: a scrape may then see a count and a sum one observation
 * apart, which Prometheus tolerates. On the gateway's single thread the
 * cost is one locked add per reply. A zeroed struct is an empty histogram. */
typedef struct prom_hist {
  atomic_uint_fast64_t counts[PROM_HIST_BOUNDS + 1];
  atomic_uint_fast64_t sum_us;
} prom_hist;

void prom_hist_observe(prom_hist *h, uint64_t us);
/* The _bucket, _sum and _count samples (the family line is the caller's,
 * since several labelled histograms share one family). labels: NULL or
 * "kind=\"connect\"" (le is appended). */
void prom_hist_write(strbuf *b, const char *name, const char *labels,
                     const prom_hist *h);

/* Microseconds as decimal seconds, exact and shortest: 2500 -> "0.0025",
 * 1000000 -> "1", 0 -> "0". Returns the length written (out holds at least
 * 32 bytes). */
size_t prom_us_to_seconds(uint64_t us, char *out, size_t outlen);

#endif
