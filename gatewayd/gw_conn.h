/*
 * gw_conn.h - one client connection, from accept to close.
 *
 * Owns: the socket (uv_tcp_t) and the connection's lifecycle: accept, the
 * read path (TLS, then HTTP before the upgrade, websocket after), the
 * upgrade itself, refusing over HTTP, closing, and the deadlines. The
 * struct's other parts belong to the modules that use them: the send queue
 * to gw_send, the wslay context to gw_ws, messages to workers and the
 * memberships to gw_relay. One close path: everything ends in
 * gw_conn_destroy(), which publishes websocket.disconnect, leaves the
 * groups and closes the handle; memory is freed in the close callback.
 * Must not: parse worker replies or group messages (gw_dispatch does) or
 * block.
 */
#ifndef GW_CONN_H
#define GW_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <wslay/wslay.h>

#include "chan_reply.h"
#include "gw_buf.h"
#include "gw_group.h"
#include "gw_http.h"
#include "gw_server.h"
#include "gw_relay.h"
#include "gw_send.h"
#include "gw_timeq.h"
#include "gw_tls.h"
#include "gw_ws.h"
#include "gw_ws_track.h"

typedef enum {
  GW_CONN_HTTP = 0,   /* reading the request head */
  GW_CONN_CONNECTING, /* websocket.connect is with a worker; not reading */
  GW_CONN_OPEN,       /* upgraded */
  GW_CONN_CLOSING,    /* a close frame or an HTTP error is on its way out */
  GW_CONN_CLOSED      /* handle closing; memory freed in its close callback */
} gw_conn_state;

typedef struct gw_out {
  struct gw_out *next;
  gw_buf *buf;
} gw_out;

typedef struct gw_pending {
  struct gw_pending *next;
  int binary;
  size_t len;
  char data[];
} gw_pending;

struct gw_conn {
  uv_tcp_t tcp;
  gw_server *srv;
  uint64_t id;
  uint8_t state;
  uint8_t writing;      /* a uv_write is in flight */
  uint8_t dirty;        /* on srv->dirty */
  uint8_t pinged;       /* a ping is out and unanswered */
  uint8_t connect_sent; /* a websocket.disconnect is owed */
  uint8_t inflight;     /* a message is with a worker */
  uint8_t shut;         /* refused over HTTP: write side shut down */
  uint8_t upgraded;     /* the 101 is queued: bytes from now on are frames */
  int tls_stop;         /* set while decrypting when the connection ended */
  SSL *ssl;             /* TLS session, NULL on plain connections */
  uint16_t n_members;
  uint16_t n_pending;
  uint16_t close_code;  /* for websocket.disconnect */
  const char *path;     /* the route, a static string */
  gw_timeq_node tq;     /* in srv->handshakes, connecting, idle or closing */
  gw_timeq_node rq;     /* in srv->replies while a receive is in flight */
  gw_http_req *req;     /* until upgraded */
  wslay_event_context_ptr ws; /* while a message is being received or the
                                 connection closes; NULL when idle (gw_ws) */
  gw_ws_track track;    /* where the client's stream stands between frames */
  const uint8_t *rd;    /* bytes wslay may read during this read callback */
  size_t rd_len;
  gw_out *out_head, *out_tail;
  uint32_t out_off;     /* bytes of out_head already written */
  uint32_t wr_nodes;    /* queue nodes covered by the write in flight */
  size_t out_bytes;     /* unsent bytes queued */
  size_t wr_bytes;      /* bytes handed to the write in flight */
  uint64_t next_order;
  uint64_t inflight_order;
  uint64_t sent_us;     /* when the message in flight was published */
  gw_pending *pend_head, *pend_tail;
  uint32_t rate_window; /* second (loop time) the rate count is for */
  uint32_t rate_count;  /* client messages in that second */
  gw_client *client;    /* counted in srv->clients (max_per_client), or NULL */
  char *session;        /* JSON object text set by a worker, or NULL */
  gw_member **members;
  gw_conn *dirty_next;
};

/* The listener's connection callback. */
void gw_conn_accept(gw_server *s);

/* Starts the websocket closing handshake with code (OPEN), or answers
 * 503 (before the upgrade). */
void gw_conn_close(gw_conn *c, int code, const char *reason);

/* Answers an HTTP error and closes (before the upgrade only). */
void gw_conn_reject(gw_conn *c, int status);

/* The worker accepted: queue the 101 and become a websocket. -1: no memory. */
int gw_conn_upgrade(gw_conn *c);

/* After the accept's texts are queued: what the client sent early, then the
 * socket again. */
void gw_conn_start_reading(gw_conn *c);

/* A closing connection ends once its last bytes are out and the closing
 * handshake is complete (or, refused over HTTP, the client hung up). */
void gw_conn_maybe_finish(gw_conn *c);

/* The one way out: publishes websocket.disconnect (when a connect was
 * sent), leaves every group, closes the handle. Safe to call twice; memory
 * goes in the close callback. */
void gw_conn_destroy(gw_conn *c, int code);

/* The periodic tick: handshake, connect, reply, ping and linger deadlines. */
void gw_conn_tick(gw_server *s, uint64_t now);

/* The broker went away: every connection waiting for its accept gets 503. */
void gw_conn_fail_connecting(gw_server *s);

/* Shutdown: the ids of every connection, in a malloc'd array. */
uint64_t *gw_conn_ids(gw_server *s, size_t *n);

/* Shutdown: an open connection gets close 1001, the others 503. */
void gw_conn_go_away(gw_conn *c);

/* Exit: whatever is still open is cut off (disconnects still published). */
void gw_conn_destroy_all(gw_server *s);

#endif
