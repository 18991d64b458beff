/*
 * gw_conn.c - one client connection's lifecycle (see gw_conn.h).
 *
 * Reads go into the server's shared buffer and are consumed inside the read
 * callback (TLS first when on, then llhttp before the upgrade, gw_ws
 * after), so an idle connection holds no read buffer. Deadlines are kept in
 * the server's deadline queues and served by one tick (gw_conn_tick).
 */
#include "gw_conn.h"

#include <stdlib.h>
#include <string.h>

#include "chan_msg.h"
#include "log.h"

#define GW_LINGER_MS 2000 /* how long a closing connection may take */



static void gw_conn__on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void gw_conn__on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf);

static void gw_conn__on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  free(req);
}

/* After an HTTP error: half-close and read until the client closes too.
 * Closing at once with unread request bytes in the kernel would send a
 * reset, and a reset can destroy our response before the client reads it. */
static void gw_conn__http_linger(gw_conn *c) {
  uv_shutdown_t *req = malloc(sizeof(*req));
  c->shut = 1;
  uv_read_stop((uv_stream_t *)&c->tcp); /* start again: it may be stopped or not */
  if (!req || uv_shutdown(req, (uv_stream_t *)&c->tcp, gw_conn__on_shutdown) != 0 ||
      uv_read_start((uv_stream_t *)&c->tcp, gw_conn__on_alloc, gw_conn__on_read) != 0) {
    free(req);
    gw_conn_destroy(c, c->close_code);
  }
}

/* A closing connection ends once its last bytes are out and the closing
 * handshake is complete, or, refused over HTTP, once the client hung up
 * (the linger deadline bounds both). */
void gw_conn_maybe_finish(gw_conn *c) {
  if (c->state != GW_CONN_CLOSING || c->out_head || c->writing) return;
  if (!c->upgraded) {
    if (!c->shut) gw_conn__http_linger(c);
    return;
  }
  if (gw_ws_awaiting_close(c)) return;
  gw_conn_destroy(c, c->close_code);
}

/* ---- read path and handshake ------------------------------------------------ */

static void gw_conn__on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  gw_conn *c = h->data;
  *buf = uv_buf_init(c->srv->read_buf, 65536);
}

static void gw_conn__on_http(gw_conn *c, const char *data, size_t len) {
  int rc = gw_http_req_feed(c->req, data, len);
  if (rc == GW_HTTP_MORE) return;
  gw_http_upgrade up;
  if (rc == GW_HTTP_DONE) rc = gw_http_req_check(c->req, c->srv->cfg->echo, &up);
  if (rc != 0) {
    c->srv->stats.http_errors++;
    log_info("http_error", "id=%llu status=%d", (unsigned long long)c->id, rc);
    gw_conn_reject(c, rc);
    return;
  }
  if (!gw_http_origin_allowed(c->req, c->srv->cfg->allowed_origins)) {
    c->srv->stats.origin_rejects++;
    log_info("origin_refused", "id=%llu", (unsigned long long)c->id);
    gw_conn_reject(c, 403);
    return;
  }
  if (c->srv->shutting_down || !amqp_bridge_is_up(c->srv->bridge)) {
    c->srv->stats.handshakes_failed++;
    gw_conn_reject(c, 503);
    return;
  }
  gw_relay_connect(c, &up);
}

/* Bytes from the client, decrypted when under TLS. */
static void gw_conn__on_plain(gw_conn *c, const char *data, size_t n) {
  /* A refused client's bytes are read only to be dropped (see linger). */
  if (c->state == GW_CONN_HTTP) {
    gw_conn__on_http(c, data, n);
  } else if (c->state == GW_CONN_CONNECTING && c->req) {
    /* TLS can hold decrypted records past the head: keep them for later. */
    if (gw_http_req_feed(c->req, data, n) != GW_HTTP_DONE) gw_conn_reject(c, 400);
  } else if (c->state == GW_CONN_OPEN || c->state == GW_CONN_CLOSING) {
    if (c->upgraded) gw_ws_feed(c, data, n);
  }
}

static void gw_conn__tls_plain(void *arg, const char *data, size_t n) {
  gw_conn *c = arg;
  gw_conn__on_plain(c, data, n);
  c->tls_stop = c->state == GW_CONN_CLOSED;
}

static void gw_conn__on_tls(gw_conn *c, const char *data, size_t n) {
  c->tls_stop = 0;
  int rc = gw_tls_feed(c->ssl, data, n, c->srv->plain_buf, 65536, gw_conn__tls_plain, c,
                       &c->tls_stop);
  if (c->state == GW_CONN_CLOSED) return;
  gw_buf *out = gw_tls_take_output(c->ssl); /* handshake records, alerts */
  if (out) {
    if (gw_send_raw(c, out) != 0) rc = -1;
    gw_buf_unref(out);
  }
  if (rc != 0) {
    log_info("tls_failed", "id=%llu state=%d", (unsigned long long)c->id, c->state);
    gw_conn_destroy(c, 1015);
  }
}

static void gw_conn__on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf) {
  gw_conn *c = stream->data;
  if (n == 0) return;
  if (n < 0) {
    /* EOF or reset. After a close frame from the client that is the end of
     * a clean closing handshake; otherwise an abnormal closure. */
    int code = c->close_code ? c->close_code : 1006;
    gw_conn_destroy(c, code);
    return;
  }
  c->srv->stats.bytes_in += (uint64_t)n;
  if (c->ssl) gw_conn__on_tls(c, buf->base, (size_t)n);
  else gw_conn__on_plain(c, buf->base, (size_t)n);
}

/* The worker accepted: 101, then the websocket starts. */
int gw_conn_upgrade(gw_conn *c) {
  char resp[256];
  const char *key = gw_http_req_header(c->req, "sec-websocket-key");
  size_t n = gw_http_switching(key, resp, sizeof(resp));
  if (n == 0 || gw_send_copy(c, resp, n) != 0) return -1;
  /* No wslay context yet: gw_ws makes one when the first frame arrives. */
  c->upgraded = 1;
  c->state = GW_CONN_OPEN;
  c->srv->stats.handshakes_accepted++;
  gw_timeq_push(&c->srv->idle, &c->tq, uv_now(c->srv->loop));
  return 0;
}

/* After the accept's own texts are queued: what the client sent before the
 * 101 (kept by the HTTP parser), then the socket again. */
void gw_conn_start_reading(gw_conn *c) {
  gw_http_req *req = c->req;
  c->req = NULL;
  if (req->early_len && c->state == GW_CONN_OPEN)
    gw_ws_feed(c, req->early, req->early_len);
  gw_http_req_free(req);
  if (c->state == GW_CONN_OPEN || c->state == GW_CONN_CLOSING) {
    if (uv_read_start((uv_stream_t *)&c->tcp, gw_conn__on_alloc, gw_conn__on_read) != 0)
      gw_conn_destroy(c, 1011);
  }
}

/* ---- closing ---------------------------------------------------------------- */

void gw_conn_reject(gw_conn *c, int status) {
  if (c->state != GW_CONN_HTTP && c->state != GW_CONN_CONNECTING) return;
  char resp[512];
  size_t n = gw_http_error(status, resp, sizeof(resp));
  c->state = GW_CONN_CLOSING;
  c->close_code = 1006;
  if (n == 0 || gw_send_copy(c, resp, n) != 0) {
    gw_conn_destroy(c, 1006);
    return;
  }
  gw_timeq_push(&c->srv->closing, &c->tq, uv_now(c->srv->loop));
}

void gw_conn_close(gw_conn *c, int code, const char *reason) {
  if (c->state == GW_CONN_HTTP || c->state == GW_CONN_CONNECTING) {
    gw_conn_reject(c, 503);
    return;
  }
  if (c->state != GW_CONN_OPEN) return;
  log_debug("conn_closing", "id=%llu code=%d reason=\"%s\"",
            (unsigned long long)c->id, code, reason);
  c->close_code = (uint16_t)code;
  if (gw_ws_close(c, code, reason) != 0) gw_conn_destroy(c, code);
}

static void gw_conn__free(uv_handle_t *h) {
  gw_conn *c = h->data;
  gw_send_free(c);
  for (gw_pending *p = c->pend_head, *n; p; p = n) {
    n = p->next;
    free(p);
  }
  gw_ws_free(c);
  if (c->ssl) SSL_free(c->ssl);
  gw_http_req_free(c->req);
  free(c->session);
  free(c->members);
  free(c);
}

/* The one way out. Safe to call twice; memory goes in the close callback,
 * after libuv has cancelled any write in flight. */
void gw_conn_destroy(gw_conn *c, int code) {
  if (c->state == GW_CONN_CLOSED) return;
  gw_server *s = c->srv;
  if (c->connect_sent) gw_relay_disconnect(c, code ? code : 1006);
  for (uint16_t i = 0; i < c->n_members; i++) gw_group_leave(&s->groups, c->members[i]);
  c->n_members = 0;
  gw_timeq_remove(&c->tq);
  gw_timeq_remove(&c->rq);
  gw_clients_release(&s->clients, c->client);
  c->client = NULL;
  gw_conntab_del(&s->conns, c->id);
  s->n_conns--;
  s->stats.conns_closed++;
  gw_admin_count_close(&s->stats, c->upgraded, code);
  log_debug("conn_closed", "id=%llu code=%d", (unsigned long long)c->id, code);
  c->state = GW_CONN_CLOSED;
  uv_close((uv_handle_t *)&c->tcp, gw_conn__free);
}

/* ---- accept ------------------------------------------------------------------ */

void gw_conn_accept(gw_server *s) {
  gw_conn *c = calloc(1, sizeof(*c));
  if (!c) return;
  c->srv = s;
  if (uv_tcp_init(s->loop, &c->tcp) != 0) {
    free(c);
    return;
  }
  c->tcp.data = c;
  c->id = ++s->next_conn_id;
  c->state = GW_CONN_HTTP;
  if (uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&c->tcp) != 0 ||
      gw_conntab_put(&s->conns, c->id, c) != 0) {
    c->state = GW_CONN_CLOSED;
    uv_close((uv_handle_t *)&c->tcp, gw_conn__free);
    return;
  }
  s->n_conns++;
  s->stats.conns_opened++;
  uv_tcp_nodelay(&c->tcp, 1);
  if (s->tls && !(c->ssl = gw_tls_session(s->tls))) {
    gw_conn_destroy(c, 1006);
    return;
  }
  c->req = gw_http_req_new((size_t)s->cfg->max_head, (uint32_t)s->cfg->max_headers);
  if (!c->req || (long)s->n_conns > s->cfg->max_connections) {
    c->srv->stats.handshakes_failed++;
    gw_conn_reject(c, 503);
    return;
  }
  gw_timeq_push(&s->handshakes, &c->tq, uv_now(s->loop));
  if (uv_read_start((uv_stream_t *)&c->tcp, gw_conn__on_alloc, gw_conn__on_read) != 0)
    gw_conn_destroy(c, 1006);
}

/* ---- deadlines ---------------------------------------------------------------- */

#define GW_CONN_OF(node, field) \
  ((gw_conn *)((char *)(node) - offsetof(gw_conn, field)))

/* Idle connections: the queue is ordered by the last byte received. Pinged
 * ones stay at its head until they answer, so each tick walks over the
 * connections pinged and not yet answered (normally few: a pong takes a
 * round trip). */
static void gw_conn__tick_idle(gw_server *s, uint64_t now) {
  uint64_t ping_at = now - (uint64_t)s->cfg->ping_interval;
  uint64_t dead_at = now - (uint64_t)s->cfg->ping_timeout;
  gw_timeq_node *n = s->idle.head;
  while (n && n->since_ms <= ping_at) {
    gw_timeq_node *next = n->next;
    gw_conn *c = GW_CONN_OF(n, tq);
    if (n->since_ms <= dead_at) {
      log_info("conn_timeout", "id=%llu", (unsigned long long)c->id);
      s->stats.ping_timeouts++;
      gw_conn_destroy(c, 1006);
    } else if (!c->pinged) {
      gw_ws_ping(c);
    }
    n = next;
  }
}

void gw_conn_tick(gw_server *s, uint64_t now) {
  gw_timeq_node *n;
  if (now > (uint64_t)s->cfg->handshake_timeout) {
    while ((n = gw_timeq_expired(&s->handshakes, now - (uint64_t)s->cfg->handshake_timeout))) {
      gw_timeq_remove(n);
      s->stats.handshake_timeouts++;
      gw_conn_reject(GW_CONN_OF(n, tq), 408);
    }
  }
  if (now > (uint64_t)s->cfg->connect_timeout) {
    while ((n = gw_timeq_expired(&s->connecting, now - (uint64_t)s->cfg->connect_timeout))) {
      gw_conn *c = GW_CONN_OF(n, tq);
      log_warn("connect_timeout", "id=%llu", (unsigned long long)c->id);
      c->srv->stats.handshakes_failed++;
      gw_conn_reject(c, 503);
    }
  }
  if (now > (uint64_t)s->cfg->reply_timeout) {
    while ((n = gw_timeq_expired(&s->replies, now - (uint64_t)s->cfg->reply_timeout)))
      gw_relay_timeout(GW_CONN_OF(n, rq));
  }
  if (now > GW_LINGER_MS) {
    while ((n = gw_timeq_expired(&s->closing, now - GW_LINGER_MS))) {
      gw_conn *c = GW_CONN_OF(n, tq);
      gw_conn_destroy(c, c->close_code ? c->close_code : 1006);
    }
  }
  if (now > (uint64_t)s->cfg->ping_interval) gw_conn__tick_idle(s, now);
}

void gw_conn_fail_connecting(gw_server *s) {
  gw_timeq_node *n;
  while ((n = s->connecting.head)) {
    gw_conn *c = GW_CONN_OF(n, tq);
    c->srv->stats.handshakes_failed++;
    gw_conn_reject(c, 503);
  }
}

uint64_t *gw_conn_ids(gw_server *s, size_t *n) {
  *n = 0;
  uint64_t *ids = malloc((s->conns.used ? s->conns.used : 1) * sizeof(*ids));
  if (!ids) return NULL;
  for (size_t i = 0; i < s->conns.cap && *n < s->conns.used; i++)
    if (s->conns.slots[i].id) ids[(*n)++] = s->conns.slots[i].id;
  return ids;
}

void gw_conn_go_away(gw_conn *c) {
  if (c->state == GW_CONN_OPEN) gw_conn_close(c, 1001, "going away");
  else if (c->state == GW_CONN_HTTP || c->state == GW_CONN_CONNECTING)
    gw_conn_reject(c, 503);
}

/* Destroying removes table entries (and shifts others), so take the ids
 * first. O(connections), once per process. */
void gw_conn_destroy_all(gw_server *s) {
  size_t n;
  uint64_t *ids = gw_conn_ids(s, &n);
  for (size_t i = 0; ids && i < n; i++) {
    gw_conn *c = gw_conntab_get(&s->conns, ids[i]);
    if (c) gw_conn_destroy(c, 1001);
  }
  free(ids);
}
