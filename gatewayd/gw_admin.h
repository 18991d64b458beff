/*
 * gw_admin.h - gatewayd's admin endpoint: Prometheus metrics (/metrics),
 * liveness (/healthz) and readiness (/readyz) over HTTP/1.1, on its own
 * listener ([gateway] metrics_listen) on the same libuv loop.
 *
 * Owns: that listener, its few connections (llhttp-parsed, one request
 * each, closed after the answer, bounded in size, count and time), the
 * text of the gateway's metrics, and the mapping of close codes to the
 * `reason` label. Must not: touch client connections or block; the counters
 * themselves live in gw_server.stats, bumped where things happen.
 */
#ifndef GW_ADMIN_H
#define GW_ADMIN_H

#include <stdint.h>
#include <uv.h>

#include "gw_bridge.h"
#include "prom.h"

struct gw_server;
struct gw_stats;

/* Why a connection ended, as few label values as dashboards need. */
typedef enum {
  GW_CLOSE_HTTP = 0,        /* never upgraded: refused, failed or dropped */
  GW_CLOSE_NORMAL,          /* 1000 */
  GW_CLOSE_GOING_AWAY,      /* 1001: client navigated away, or our shutdown */
  GW_CLOSE_PROTOCOL,        /* 1002, 1003 */
  GW_CLOSE_INVALID_PAYLOAD, /* 1007: bad UTF-8 */
  GW_CLOSE_POLICY,          /* 1008: slow reader, too many pending, rate */
  GW_CLOSE_TOO_BIG,         /* 1009 */
  GW_CLOSE_INTERNAL,        /* 1011 */
  GW_CLOSE_TRY_AGAIN,       /* 1013: broker unavailable */
  GW_CLOSE_ABNORMAL,        /* 1006: EOF without a close, timeouts, errors */
  GW_CLOSE_OTHER,           /* any other code (application codes, 1012...) */
  GW_CLOSE_EXPIRED,         /* 4401: credential expired, not refreshed */
  GW_CLOSE_REVOKED,         /* 4403: kicked */
  GW_CLOSE_N
} gw_close_reason;

gw_close_reason gw_admin_close_reason(int upgraded, int code);
const char *gw_admin_close_reason_name(gw_close_reason r);

/* Counts one closed connection (gw_conn's one close path calls it). */
void gw_admin_count_close(struct gw_stats *st, int upgraded, int code);

/* Monotonic microseconds, for the worker round-trip histogram. */
uint64_t gw_admin_now_us(void);

/* A worker's reply arrived for a message published at sent_us. */
void gw_admin_observe_reply(struct gw_stats *st, int connect, uint64_t sent_us);

/* What the metrics show besides gw_stats: read from the server at scrape
 * time. Separate so that rendering is a pure, unit-tested function. */
typedef struct gw_admin_gauges {
  uint64_t connections, groups, members, groups_lingering, lingering_rejoins;
  uint64_t bind_backlog;
  uint64_t amqp_up, backlog_to_broker, backlog_from_broker;
  uint64_t amqp_read_pauses; /* a counter, kept by the AMQP thread */
  gw_bridge_batch_stats batches; /* counters, kept by the AMQP thread */
  /* the event history's consumer (gw_bridge_hist_stats); hist_on 0: the
   * history is off and none of these is shown */
  uint64_t hist_on, hist_read, hist_resumes, hist_gaps, hist_gap_lost, hist_resets;
  uint64_t hist_last_offset, hist_stalls;
  uint64_t hist_shared, hist_shared_enters, hist_shared_leaves; /* gw_ring.h */
  /* the ring (gw_hist) */
  uint64_t ring_messages, ring_bytes, ring_evicted;
  /* permessage-deflate (gw_deflate_stats); z_on 0: compression off */
  uint64_t z_on, z_twins, z_plain_bytes, z_bytes, z_not_smaller, z_inflated, z_refused;
  uint64_t z_chained, z_bytes_chained;
} gw_admin_gauges;

void gw_admin_render(strbuf *b, const struct gw_stats *st,
                     const gw_admin_gauges *g);

typedef struct gw_admin_conn gw_admin_conn;

typedef struct gw_admin {
  struct gw_server *srv;
  uv_tcp_t listener;
  uv_timer_t reaper; /* closes admin connections past ADMIN_TIMEOUT_MS */
  int on;            /* listener and reaper initialized */
  gw_admin_conn *conns;
  unsigned n_conns;
} gw_admin;

/* Starts listening on spec ("" or NULL: the endpoint is off, returns 0).
 * -1 (logged) when the address is invalid or cannot be bound. */
int gw_admin_start(gw_admin *a, struct gw_server *s, const char *spec);

/* Closes the listener, the timer and every admin connection. Idempotent. */
void gw_admin_close(gw_admin *a);

#endif
