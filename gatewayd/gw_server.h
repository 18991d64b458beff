/*
 * gw_server.h - the gateway process's state, owned by the loop thread.
 *
 * Owns: the listener, the tables (connections by id, groups by name), the
 * deadline queues, the AMQP bridge handle and the periodic tick. Must not:
 * be touched from the AMQP thread (that talks only through gw_bridge).
 */
#ifndef GW_SERVER_H
#define GW_SERVER_H

#include <stdint.h>
#include <uv.h>

#include "gw_bridge.h"
#include "chan_names.h"
#include "gw_admin.h"
#include "gw_clients.h"
#include "gw_config.h"
#include "gw_conntab.h"
#include "gw_expiry.h"
#include "gw_group.h"
#include "gw_hist.h"
#include "gw_stats.h"
#include "gw_timeq.h"

typedef struct gw_conn gw_conn;

typedef struct gw_server {
  uv_loop_t *loop;
  gw_config *cfg;
  const cfg_cmdline *cmdline; /* main's, parsed again on SIGHUP */
  uv_tcp_t listener;
  uv_timer_t tick;
  uv_check_t flush; /* writes every connection's pending frames once per iteration */
  uv_prepare_t before_poll; /* wakes the AMQP thread for what timers and
                               pending callbacks published (gw_bridge_flush) */
  uv_signal_t sigterm, sigint;
  uv_signal_t sighup; /* reload what is safe to change (gw_server.c) */
  gw_bridge *bridge;
  char queue[CHAN_QUEUE_NAME_MAX + 1]; /* ours, as the broker named it; "" while down */

  gw_conntab conns;
  gw_group_table groups;
  gw_hist hist; /* the stream's recent messages (history on); which are
                   live (hist.live_from: UINT64_MAX between a RESET or a
                   lost broker and the next LIVE) is gw_dispatch's to set */
  gw_clients clients; /* connections per client address */
  gw_deflate deflate; /* permessage-deflate's streams (compression on; else zeroed) */
  uint64_t next_conn_id;
  size_t n_conns;

  /* Deadline queues: a connection sits in at most one of the first four
   * (by state) and, independently, in `replies` while a message of it is
   * with a worker. */
  gw_timeq handshakes; /* reading the request head */
  gw_timeq connecting; /* waiting for the worker's accept */
  gw_timeq idle;       /* open: by last byte received */
  gw_timeq closing;    /* closing handshake or HTTP error on its way out */
  gw_timeq replies;    /* waiting for a reply to websocket.receive */
  gw_expiry expiries;  /* open connections whose credential expires */
  gw_expiry rechecks;  /* open connections whose application grants are re-checked */

  gw_conn *dirty; /* connections with frames queued since the last flush */
  /* Connections with only events queued, written when later_timer fires
   * (write_delay after the first): by id, since one may close meanwhile.
   * At most one entry per connection (c->life.later). */
  uint64_t *later;
  size_t later_n, later_cap;
  uv_timer_t later_timer;
  char *read_buf; /* shared by every connection: reads are consumed at once */
  char *plain_buf; /* likewise, for what TLS decrypts out of read_buf */
  struct gw_tls *tls; /* NULL: plain ws:// */
  int shutting_down;
  int closed; /* gw_server_close ran */
  uint64_t shutdown_start, shutdown_deadline;
  uint64_t *drain_ids; /* connections to close, by id (they may leave first) */
  size_t drain_n, drain_done;
  gw_stats stats;
  gw_admin admin; /* /metrics, /healthz, /readyz */
} gw_server;

/* cmdline: the command line main saved before cfg_load, for reloads; it
 * must outlive s. */
int gw_server_init(gw_server *s, uv_loop_t *loop, gw_config *cfg,
                   const cfg_cmdline *cmdline);
/* Closes every handle; the loop then runs until they are closed. */
void gw_server_close(gw_server *s);
/* Undoes gw_server_init once the loop has run every close callback: the
 * tables, buffers and TLS context. */
void gw_server_free(gw_server *s);

#endif
