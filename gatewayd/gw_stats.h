/*
 * gw_stats.h - the gateway process's counters, bumped where things happen
 * (gw_conn, gw_relay, gw_dispatch) and read by the metrics (gw_admin).
 *
 * Owns: the struct only. Must not: be written from the AMQP thread (its own
 * counters are atomics in gw_bridge). A header of its own so that a module
 * that counts (gw_relay) needs nothing else of the server.
 */
#ifndef GW_STATS_H
#define GW_STATS_H

#include <stdint.h>

#include "gw_admin.h"
#include "gw_ws.h"
#include "prom.h"

typedef struct gw_stats {
  uint64_t conns_opened, conns_closed;
  uint64_t handshakes_accepted, handshakes_rejected, handshakes_failed;
  uint64_t http_errors;
  uint64_t msgs_in, msgs_out, bytes_in, bytes_out;
  uint64_t msgs_out_z; /* of msgs_out, sent compressed (permessage-deflate) */
  uint64_t writes;     /* socket writes to clients (uv_try_write and uv_write calls) */
  uint64_t group_msgs, deliveries;
  uint64_t slow_closes, reply_timeouts, replies_dropped;
  uint64_t rate_closes, client_limit_rejects, origin_rejects;
  /* client messages answered by the gateway: group changes over the
   * connection's allowance; too many binds queued (gw_relay) */
  uint64_t changes_refused, binds_busy_refused;
  /* access that ends (issue 13): replies that moved an open connection's
   * expiry (refreshes), connections closed at their refresh window's end
   * (4401), and by a kick (4403) */
  uint64_t refreshes, expiry_closes, kick_closes, kicks_received;
  /* Re-checks of application grants sent to workers (a reply's "recheck"
   * came due), and the groups their replies took away. */
  uint64_t rechecks, recheck_leaves;
  /* wsgw.2 (issue 14): positions a subscription recovered, found too old,
   * or did not know; connections whose send queue was full (served from
   * the history instead: lags), that caught up, and that fell out of it. */
  uint64_t hist_recovered, hist_recover_expired, hist_recover_unknown;
  uint64_t hist_lags, hist_caught_up, hist_lag_expired;
  /* For the metrics (gw_admin) */
  uint64_t handshake_timeouts, ping_timeouts, amqp_connects;
  uint64_t closes[GW_CLOSE_N];  /* by gw_admin_close_reason */
  gw_ws_budget partial;         /* bytes in partial client messages */
  prom_hist reply_latency[2];   /* publish -> reply: [0] connect, [1] receive */
} gw_stats;

#endif
