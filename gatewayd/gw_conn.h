/*
 * gw_conn.h - one client connection, from accept to close.
 *
 * Owns: the socket (uv_tcp_t), the TLS session, and the connection's
 * lifecycle: its state, which deadline queue it waits in and whether the
 * socket is read are set in one place (gw_conn__enter), and nowhere else.
 * The read path (TLS, then HTTP before the upgrade, websocket after), the
 * upgrade (with the permessage-deflate answer, gw_pmd), refusing over HTTP, writing the send queue, closing, deadlines
 * and keepalive pings are here. The protocol modules are driven from here
 * and answer through narrow sinks this file implements: gw_ws (frames,
 * closing handshake) and gw_relay (workers, memberships). gw_send is the
 * queue this file writes out. Calls go one way: gw_conn -> gw_ws,
 * gw_relay, gw_send; never back, except through the sinks.
 *
 * One close path: everything ends in gw_conn_destroy(), which publishes
 * websocket.disconnect, leaves the groups and closes the handle; memory is
 * freed in the close callback.
 * Must not: parse worker replies or group messages (gw_dispatch does),
 * decide protocol rules (gw_ws, gw_relay do), or block.
 */
#ifndef GW_CONN_H
#define GW_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "chan_reply.h"
#include "gw_buf.h"
#include "gw_http.h"
#include "gw_relay.h"
#include "gw_send.h"
#include "gw_server.h"
#include "gw_timeq.h"
#include "gw_tls.h"
#include "gw_ws.h"

typedef enum {
  GW_CONN_HTTP = 0,   /* reading the request head */
  GW_CONN_CONNECTING, /* websocket.connect is with a worker; not reading */
  GW_CONN_OPEN,       /* upgraded */
  GW_CONN_CLOSING,    /* a close frame or an HTTP error is on its way out */
  GW_CONN_CLOSED      /* handle closing; memory freed in its close callback */
} gw_conn_state;

/* Bytes of the read buffer every connection shares (one read's worth). */
#define GW_CONN_READ_BUF 65536

struct gw_conn {
  uv_tcp_t tcp;
  gw_server *srv;
  uint64_t id;
  /* The lifecycle: written by gw_conn__enter only. */
  struct {
    uint8_t state;       /* gw_conn_state */
    uint8_t reading;     /* uv_read_start is in effect */
    uint8_t upgraded;    /* the 101 is queued: bytes from now on are frames */
    uint8_t shut;        /* refused over HTTP: write side shut down */
    uint8_t pinged;      /* a keepalive ping is out and unanswered */
    uint8_t dirty : 1;   /* on srv->dirty: has bytes to write */
    uint8_t later : 1;   /* in srv->later: has events to write within write_delay */
    uint16_t close_code; /* for websocket.disconnect */
    gw_timeq_node tq;    /* in srv->handshakes, connecting, idle or closing */
  } life;
  gw_send send;          /* the send queue (gw_send) */
  gw_ws ws;              /* the websocket protocol (gw_ws) */
  gw_relay relay;        /* the conversation with workers (gw_relay) */
  gw_http_req *req;      /* until upgraded */
  SSL *ssl;              /* TLS session, NULL on plain connections */
  gw_client *client;     /* counted in srv->clients (max_per_client), or NULL */
  gw_conn *dirty_next;
};

/* The listener's connection callback. */
void gw_conn_accept(gw_server *s);

/* Starts the websocket closing handshake with code (OPEN), or answers
 * 503 (before the upgrade). */
void gw_conn_close(gw_conn *c, uint16_t code, const char *reason);

/* Answers an HTTP error and closes (before the upgrade only). */
void gw_conn_reject(gw_conn *c, int status);

/* A data frame for an open connection (the fanout, history off; takes a
 * new reference; written within gateway.write_delay, with what else comes):
 * its compressed twin when the client negotiated permessage-deflate
 * (gw_deflate_twin: made once for all), or the twin compressed after `prev`
 * (the group's previous event; NULL: none) when the client's window ends
 * with prev (gw_deflate_twin_after). A reader whose unsent bytes would
 * pass max_send_queue is closed (1008) instead, its unsent frames dropped
 * first. Frames of the history go through gw_conn_send_event instead (the
 * ring counts the twins it keeps). */
void gw_conn_send_frame(gw_conn *c, gw_buf *b, gw_buf *prev);

/* A message of the history for a member (history on; written within
 * gateway.write_delay like gw_conn_send_frame): the emitted text on
 * the old protocol (compressed after prev[0], the group's previous one, as
 * gw_conn_send_frame does); on wsgw.2 its envelope (after prev[1]), unless the connection is owed
 * history (the pump serves it), and when the queue is full the connection
 * starts to be owed instead of being closed (gateway.slow_client). */
void gw_conn_send_event(gw_conn *c, gw_hist *h, gw_hist_ev *e, gw_buf *const prev[2]);

/* The history was lost (a gap: GW_HIST_EXPIRED) or replaced (recreated:
 * GW_HIST_UNKNOWN): every wsgw.2 connection gets a notice for its groups
 * and is owed nothing any more. O(connections); rare. */
void gw_conn_history_lost(gw_server *s, gw_hist_status st);

/* A worker's reply, and the broker's refusal of the message in flight. */
void gw_conn_apply_reply(gw_conn *c, const chan_reply *r);
void gw_conn_refused(gw_conn *c);

/* The one way out: publishes websocket.disconnect (when a connect was
 * sent), leaves every group, closes the handle. Safe to call twice; memory
 * goes in the close callback. */
void gw_conn_destroy(gw_conn *c, uint16_t code);

/* The loop's check phase: writes every connection with bytes queued since
 * the last. */
void gw_conn_flush_dirty(gw_server *s);

/* The periodic tick: handshake, connect, reply, ping and linger deadlines. */
void gw_conn_tick(gw_server *s, uint64_t now);

/* A kick (chanctl kick, or an application's kick message): close 4403
 * "access revoked" (503 before the upgrade). Once per connection. */
/* Returns 1 when it closed c now, 0 when c was closing or closed already. */
int gw_conn_kick(gw_conn *c);

/* The broker went away: every connection waiting for its accept gets 503. */
void gw_conn_fail_connecting(gw_server *s);

/* Shutdown: the ids of every connection, in a malloc'd array. */
uint64_t *gw_conn_ids(gw_server *s, size_t *n);

/* Shutdown: an open connection gets close 1001, the others 503. */
void gw_conn_go_away(gw_conn *c);

/* Exit: whatever is still open is cut off (disconnects still published). */
void gw_conn_destroy_all(gw_server *s);

#endif
