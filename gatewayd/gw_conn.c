/*
 * gw_conn.c - one client connection (see gw_conn.h).
 *
 * Reads go into the server's shared buffer and are consumed inside the read
 * callback (llhttp before the upgrade, wslay after), so an idle connection
 * holds no read buffer. Writes go through a queue of shared frames that
 * gw_conn_flush_dirty() hands to the kernel once per loop iteration.
 *
 * wslay parses and validates what the client sends (masking, fragmentation,
 * control frames, UTF-8, size limit) and writes the control frames it owes
 * (pong, close) through gw_conn__ws_send, which appends to the same queue.
 * Data frames never go through wslay: wslay copies every message it queues,
 * and a group message must be framed once for all its members.
 */
#include "gw_conn.h"

#include <stdlib.h>
#include <string.h>

#include "chan_msg.h"
#include "log.h"

#define GW_IOV_MAX 64
#define GW_LINGER_MS 2000 /* how long a closing connection may take */

static void gw_conn__destroy(gw_conn *c, int code);
static void gw_conn__next_pending(gw_conn *c);

/* ---- send queue ----------------------------------------------------------- */

static void gw_conn__mark_dirty(gw_conn *c) {
  if (c->dirty) return;
  c->dirty = 1;
  c->dirty_next = c->srv->dirty;
  c->srv->dirty = c;
}

/* Appends bytes that go to the socket as they are. Takes a reference. */
static int gw_conn__append_raw(gw_conn *c, gw_buf *b) {
  gw_out *o = malloc(sizeof(*o));
  if (!o) return -1;
  o->next = NULL;
  o->buf = gw_buf_ref(b);
  if (c->out_tail) c->out_tail->next = o; else c->out_head = o;
  c->out_tail = o;
  c->out_bytes += b->len;
  gw_conn__mark_dirty(c);
  return 0;
}

/* Appends without any check: for the bytes we owe the client whatever its
 * state (HTTP responses, wslay's control frames). Takes a reference. Under
 * TLS the queue holds ciphertext: the frame is encrypted here, once, in
 * queue order (records must reach the peer in the order they were made). */
static int gw_conn__append(gw_conn *c, gw_buf *b) {
  if (!c->ssl) return gw_conn__append_raw(c, b);
  gw_buf *cipher = gw_tls_encrypt(c->ssl, b->data, b->len);
  if (!cipher) return -1;
  int rc = gw_conn__append_raw(c, cipher);
  gw_buf_unref(cipher);
  return rc;
}

static int gw_conn__append_bytes(gw_conn *c, const void *data, size_t len) {
  gw_buf *b = gw_buf_new(len);
  if (!b) return -1;
  memcpy(b->data, data, len);
  int rc = gw_conn__append(c, b);
  gw_buf_unref(b);
  return rc;
}

/* Drops every queued frame that no write has started on, so that a close
 * frame can follow at once. A frame partly written stays, or the client
 * would see half a frame. */
static void gw_conn__drop_unsent(gw_conn *c) {
  /* TLS records carry sequence numbers: dropping one breaks the stream, so
   * a slow TLS client keeps its queue and is cut at the linger deadline. */
  if (c->ssl) return;
  uint32_t keep = c->writing ? c->wr_nodes : (c->out_off ? 1 : 0);
  gw_out **link = &c->out_head, *last = NULL;
  for (uint32_t i = 0; i < keep && *link; i++) {
    last = *link;
    link = &(*link)->next;
  }
  for (gw_out *o = *link, *n; o; o = n) {
    n = o->next;
    c->out_bytes -= o->buf->len;
    gw_buf_unref(o->buf);
    free(o);
  }
  *link = NULL;
  c->out_tail = last;
  if (last && last == c->out_head) c->out_bytes = last->buf->len - c->out_off;
}

void gw_conn_send(gw_conn *c, gw_buf *b) {
  if (c->state != GW_CONN_OPEN) return;
  if (c->out_bytes + b->len > (size_t)c->srv->cfg->max_send_queue) {
    c->srv->stats.slow_closes++;
    log_info("conn_slow", "id=%llu unsent=%zu", (unsigned long long)c->id, c->out_bytes);
    gw_conn__drop_unsent(c);
    gw_conn_close(c, 1008, "send queue full");
    return;
  }
  if (gw_conn__append(c, b) != 0) {
    gw_conn__destroy(c, 1011);
    return;
  }
  c->srv->stats.msgs_out++;
}

static void gw_conn__send_text(gw_conn *c, int opcode, const char *data, size_t len) {
  gw_buf *b = gw_buf_frame(opcode, data, len);
  if (!b) {
    gw_conn_close(c, 1011, "out of memory");
    return;
  }
  gw_conn_send(c, b);
  gw_buf_unref(b);
}

/* Forgets n bytes the kernel has taken. */
static void gw_conn__consume(gw_conn *c, size_t n) {
  c->out_bytes -= n;
  c->srv->stats.bytes_out += n;
  while (n > 0 && c->out_head) {
    gw_out *o = c->out_head;
    size_t left = o->buf->len - c->out_off;
    if (n < left) {
      c->out_off += (uint32_t)n;
      return;
    }
    n -= left;
    c->out_off = 0;
    c->out_head = o->next;
    if (!c->out_head) c->out_tail = NULL;
    gw_buf_unref(o->buf);
    free(o);
  }
}

static size_t gw_conn__gather(gw_conn *c, uv_buf_t *iov, size_t *bytes) {
  size_t n = 0;
  *bytes = 0;
  uint32_t off = c->out_off;
  for (gw_out *o = c->out_head; o && n < GW_IOV_MAX; o = o->next) {
    iov[n] = uv_buf_init((char *)o->buf->data + off, o->buf->len - off);
    *bytes += iov[n].len;
    n++;
    off = 0;
  }
  return n;
}

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
    gw_conn__destroy(c, c->close_code);
  }
}

/* A closing connection ends once its last bytes are out and the closing
 * handshake is complete, or, refused over HTTP, once the client hung up
 * (the linger deadline bounds both). */
static void gw_conn__maybe_finish(gw_conn *c) {
  if (c->state != GW_CONN_CLOSING || c->out_head || c->writing) return;
  if (!c->ws) {
    if (!c->shut) gw_conn__http_linger(c);
    return;
  }
  if (wslay_event_get_read_enabled(c->ws)) return; /* await their close */
  gw_conn__destroy(c, c->close_code);
}

static void gw_conn__flush(gw_conn *c);

static void gw_conn__on_write(uv_write_t *req, int status) {
  gw_conn *c = req->data;
  free(req);
  c->writing = 0;
  if (c->state == GW_CONN_CLOSED) return;
  if (status < 0) {
    gw_conn__destroy(c, 1006);
    return;
  }
  gw_conn__consume(c, c->wr_bytes);
  c->wr_bytes = 0;
  c->wr_nodes = 0;
  gw_conn__flush(c);
}

static void gw_conn__flush(gw_conn *c) {
  if (c->writing || c->state == GW_CONN_CLOSED) return;
  uv_buf_t iov[GW_IOV_MAX];
  size_t bytes, n = gw_conn__gather(c, iov, &bytes);
  if (n > 0) {
    /* Most writes complete at once; try that before paying for a request. */
    int r = uv_try_write((uv_stream_t *)&c->tcp, iov, (unsigned)n);
    if (r < 0 && r != UV_EAGAIN) {
      gw_conn__destroy(c, 1006);
      return;
    }
    if (r > 0) gw_conn__consume(c, (size_t)r);
    n = gw_conn__gather(c, iov, &bytes);
  }
  if (n == 0) {
    gw_conn__maybe_finish(c);
    return;
  }
  uv_write_t *req = malloc(sizeof(*req));
  if (!req) {
    gw_conn__destroy(c, 1011);
    return;
  }
  req->data = c;
  if (uv_write(req, (uv_stream_t *)&c->tcp, iov, (unsigned)n, gw_conn__on_write) != 0) {
    free(req);
    gw_conn__destroy(c, 1006);
    return;
  }
  c->writing = 1;
  c->wr_bytes = bytes;
  c->wr_nodes = (uint32_t)n;
}

void gw_conn_flush_dirty(gw_server *s) {
  while (s->dirty) {
    gw_conn *c = s->dirty;
    s->dirty = c->dirty_next;
    c->dirty = 0;
    c->dirty_next = NULL;
    gw_conn__flush(c);
  }
}

/* ---- messages to workers -------------------------------------------------- */

static int gw_conn__reply_channel(gw_conn *c, char *buf, size_t len) {
  if (!c->srv->queue[0]) return -1;
  return chan_reply_channel_format(buf, len, c->srv->queue, c->id) < 0 ? -1 : 0;
}

static const char **gw_conn__group_names(gw_conn *c) {
  const char **names = malloc((c->n_members ? c->n_members : 1) * sizeof(*names));
  if (!names) return NULL;
  for (uint16_t i = 0; i < c->n_members; i++) names[i] = c->members[i]->group->name;
  return names;
}

/* Encodes m and hands it to the bridge. -1: broker down or backlog full. */
static int gw_conn__publish(gw_conn *c, chan_msg *m) {
  char channel[CHAN_QUEUE_NAME_MAX + 64];
  if (gw_conn__reply_channel(c, channel, sizeof(channel)) != 0) return -1;
  c->sent_us = gw_admin_now_us(); /* for the reply latency histogram */
  m->reply_channel = channel;
  m->path = (char *)c->path;
  m->session_json = c->session;
  const char **names = NULL;
  if (m->kind != CHAN_MSG_CONNECT) {
    names = gw_conn__group_names(c);
    if (!names) return -1;
    m->groups = (char **)names;
    m->n_groups = c->n_members;
  }
  size_t len;
  char *json = chan_msg_encode(m, &len);
  free(names);
  if (!json) return -1;
  /* A disconnect needs no answer, so nobody is told if it is refused. */
  uint64_t tell = m->kind == CHAN_MSG_DISCONNECT ? 0 : c->id;
  return amqp_bridge_publish(c->srv->bridge, chan_msg_queue(m->kind), tell, json, len);
}

static void gw_conn__publish_receive(gw_conn *c, int binary, const char *data,
                                     size_t len) {
  chan_msg m = {.kind = CHAN_MSG_RECEIVE, .order = c->next_order,
                .is_binary = binary, .data = (char *)data, .data_len = len};
  if (gw_conn__publish(c, &m) != 0) {
    gw_conn_close(c, 1013, "broker unavailable");
    return;
  }
  c->inflight = 1;
  c->inflight_order = c->next_order++;
  gw_timeq_push(&c->srv->replies, &c->rq, uv_now(c->srv->loop));
}

static void gw_conn__publish_disconnect(gw_conn *c, int code) {
  chan_msg m = {.kind = CHAN_MSG_DISCONNECT, .order = c->next_order++, .code = code};
  if (gw_conn__publish(c, &m) != 0)
    log_debug("disconnect_not_published", "id=%llu", (unsigned long long)c->id);
}

/* A client message: to a worker now, or queued behind the one in flight, so
 * that any number of workers see one connection's messages in order. */
/* A fixed one-second window: cheap (8 bytes, no timer) at the cost of
 * letting up to twice the rate through across a window boundary. */
static int gw_conn__over_rate(gw_conn *c) {
  uint32_t second = (uint32_t)(uv_now(c->srv->loop) / 1000);
  if (second != c->rate_window) {
    c->rate_window = second;
    c->rate_count = 0;
  }
  return ++c->rate_count > (uint32_t)c->srv->cfg->max_rate;
}

static void gw_conn__client_message(gw_conn *c, int binary, const uint8_t *msg,
                                    size_t len) {
  c->srv->stats.msgs_in++;
  if (c->state != GW_CONN_OPEN) return;
  if (gw_conn__over_rate(c)) {
    c->srv->stats.rate_closes++;
    log_info("conn_rate_limited", "id=%llu", (unsigned long long)c->id);
    gw_conn_close(c, 1008, "message rate limit");
    return;
  }
  if (!c->inflight) {
    gw_conn__publish_receive(c, binary, (const char *)msg, len);
    return;
  }
  if (c->n_pending >= c->srv->cfg->max_pending) {
    gw_conn_close(c, 1008, "too many messages waiting");
    return;
  }
  gw_pending *p = malloc(sizeof(*p) + len);
  if (!p) {
    gw_conn_close(c, 1011, "out of memory");
    return;
  }
  p->next = NULL;
  p->binary = binary;
  p->len = len;
  if (len) memcpy(p->data, msg, len); /* wslay passes NULL for an empty message */
  if (c->pend_tail) c->pend_tail->next = p; else c->pend_head = p;
  c->pend_tail = p;
  c->n_pending++;
}

static void gw_conn__next_pending(gw_conn *c) {
  gw_pending *p = c->pend_head;
  if (!p || c->inflight || c->state != GW_CONN_OPEN) return;
  c->pend_head = p->next;
  if (!c->pend_head) c->pend_tail = NULL;
  c->n_pending--;
  gw_conn__publish_receive(c, p->binary, p->data, p->len);
  free(p);
}

/* ---- websocket (wslay) -------------------------------------------------- */

static ssize_t gw_conn__ws_recv(wslay_event_context_ptr ctx, uint8_t *buf,
                                size_t len, int flags, void *user) {
  (void)flags;
  gw_conn *c = user;
  if (c->rd_len == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  size_t n = c->rd_len < len ? c->rd_len : len;
  memcpy(buf, c->rd, n);
  c->rd += n;
  c->rd_len -= n;
  return (ssize_t)n;
}

static ssize_t gw_conn__ws_send(wslay_event_context_ptr ctx, const uint8_t *data,
                                size_t len, int flags, void *user) {
  (void)flags;
  gw_conn *c = user;
  /* Taking every byte means wslay never holds half a frame, so our own data
   * frames can never land inside one of its control frames. */
  if (gw_conn__append_bytes(c, data, len) != 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  return (ssize_t)len;
}

static void gw_conn__ws_msg(wslay_event_context_ptr ctx,
                            const struct wslay_event_on_msg_recv_arg *arg,
                            void *user) {
  (void)ctx;
  gw_conn *c = user;
  if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME)
    gw_conn__client_message(c, arg->opcode == WSLAY_BINARY_FRAME, arg->msg,
                            arg->msg_length);
}

/* wslay bounds whole messages; this bounds single frames, before wslay
 * allocates room for the payload. */
static void gw_conn__ws_frame_start(wslay_event_context_ptr ctx,
                                    const struct wslay_event_on_frame_recv_start_arg *arg,
                                    void *user) {
  gw_conn *c = user;
  /* A close body is empty or a code plus a reason; wslay would read a
   * 1-byte body as "no code". RFC 6455 5.5.1: a protocol error. */
  if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->payload_length == 1) {
    wslay_event_queue_close(ctx, 1002, NULL, 0);
    wslay_event_shutdown_read(ctx);
    return;
  }
  if (arg->payload_length <= (uint64_t)c->srv->cfg->max_frame) return;
  static const char reason[] = "frame too big";
  wslay_event_queue_close(ctx, 1009, (const uint8_t *)reason, sizeof(reason) - 1);
  wslay_event_shutdown_read(ctx);
}

static const struct wslay_event_callbacks gw_conn__ws_callbacks = {
    .recv_callback = gw_conn__ws_recv,
    .send_callback = gw_conn__ws_send,
    .on_frame_recv_start_callback = gw_conn__ws_frame_start,
    .on_msg_recv_callback = gw_conn__ws_msg,
};

/* Lets wslay write what it owes (pong, close), then notices a close. */
static void gw_conn__ws_after(gw_conn *c) {
  if (wslay_event_want_write(c->ws) && wslay_event_send(c->ws) != 0) {
    gw_conn__destroy(c, 1011);
    return;
  }
  if (c->state == GW_CONN_OPEN && wslay_event_get_close_sent(c->ws)) {
    /* wslay closed: the client's close (answered) or a protocol error
     * (1002, 1007, 1009 sent). */
    c->state = GW_CONN_CLOSING;
    c->close_code = wslay_event_get_close_received(c->ws)
                        ? wslay_event_get_status_code_received(c->ws)
                        : wslay_event_get_status_code_sent(c->ws);
    gw_timeq_push(&c->srv->closing, &c->tq, uv_now(c->srv->loop));
  }
  gw_conn__maybe_finish(c);
}

static void gw_conn__ws_feed(gw_conn *c, const char *data, size_t len) {
  c->rd = (const uint8_t *)data;
  c->rd_len = len;
  int rc = wslay_event_recv(c->ws);
  c->rd = NULL;
  c->rd_len = 0;
  if (c->state == GW_CONN_CLOSED) return;
  if (rc == WSLAY_ERR_CALLBACK_FAILURE && c->state == GW_CONN_OPEN &&
      !wslay_event_get_close_sent(c->ws)) {
    /* wslay's frame parser fails the call, with no close sent, on a control
     * frame over 125 bytes or fragmented and on a length not in its
     * shortest form (our recv callback never fails). Those are protocol
     * errors: the client gets close 1002, written here because wslay has
     * queued an empty close of its own, which is never sent. */
    static const uint8_t close_1002[] = {0x88, 0x02, 0x03, 0xea};
    wslay_event_shutdown_write(c->ws);
    c->state = GW_CONN_CLOSING;
    c->close_code = 1002;
    if (gw_conn__append_bytes(c, close_1002, sizeof(close_1002)) != 0) {
      gw_conn__destroy(c, 1002);
      return;
    }
    gw_timeq_push(&c->srv->closing, &c->tq, uv_now(c->srv->loop));
    return;
  }
  if (rc != 0) {
    gw_conn__destroy(c, 1011);
    return;
  }
  if (c->state == GW_CONN_OPEN) {
    c->pinged = 0;
    gw_timeq_push(&c->srv->idle, &c->tq, uv_now(c->srv->loop));
  }
  gw_conn__ws_after(c);
}

/* ---- handshake -------------------------------------------------------------- */

static void gw_conn__on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  gw_conn *c = h->data;
  *buf = uv_buf_init(c->srv->read_buf, 65536);
}

static void gw_conn__addr(const struct sockaddr_storage *ss, chan_addr *out) {
  out->host[0] = '\0';
  out->port = 0;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    uv_ip4_name(a, out->host, sizeof(out->host));
    out->port = ntohs(a->sin_port);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    uv_ip6_name(a, out->host, sizeof(out->host));
    out->port = ntohs(a->sin6_port);
  }
}

static void gw_conn__peer(gw_conn *c, chan_addr *client, chan_addr *server) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  memset(&ss, 0, sizeof(ss));
  uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len);
  gw_conn__addr(&ss, client);
  len = sizeof(ss);
  memset(&ss, 0, sizeof(ss));
  uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len);
  gw_conn__addr(&ss, server);
}

/* Applies max_per_client. Returns -1 (and answers 503) at the limit. */
static int gw_conn__count_client(gw_conn *c, const char *addr) {
  long limit = c->srv->cfg->max_per_client;
  if (limit <= 0) return 0;
  c->client = gw_clients_acquire(&c->srv->clients, addr, (uint32_t)limit);
  if (c->client) return 0;
  c->srv->stats.client_limit_rejects++;
  log_info("client_limit", "id=%llu client=%s", (unsigned long long)c->id, addr);
  gw_conn_reject(c, 503);
  return -1;
}

/* The head is complete and valid: ask a worker whether to accept. */
static void gw_conn__send_connect(gw_conn *c, const gw_http_upgrade *up) {
  chan_msg m = {.kind = CHAN_MSG_CONNECT, .order = 0, .query_string = (char *)up->query};
  c->path = up->path;
  gw_conn__peer(c, &m.client, &m.server);
  /* Behind a trusted proxy the client is the X-Forwarded-For hop: limits,
   * logs and workers all see the real address. */
  chan_addr peer = m.client;
  int forwarded = gw_http_client_addr(c->req, &peer, c->srv->cfg->trusted_proxies, &m.client);
  if (gw_conn__count_client(c, m.client.host) != 0) return;
  if (gw_http_req_headers(c->req, &m.headers, &m.n_headers) != 0) {
    gw_conn_reject(c, 503);
    return;
  }
  int rc = gw_conn__publish(c, &m);
  free(m.headers);
  if (rc != 0) {
    c->srv->stats.handshakes_failed++;
    gw_conn_reject(c, 503);
    return;
  }
  log_info("conn_connecting", "id=%llu client=%s:%d peer=%s:%d forwarded=%d path=%s",
           (unsigned long long)c->id, m.client.host, m.client.port, peer.host, peer.port,
           forwarded, c->path);
  c->connect_sent = 1;
  c->inflight = 1;
  c->inflight_order = 0;
  c->next_order = 1;
  c->state = GW_CONN_CONNECTING;
  gw_timeq_push(&c->srv->connecting, &c->tq, uv_now(c->srv->loop));
  /* Nothing more is read until the worker answers: anything the client
   * sends early is either in req->early or waits in the kernel. */
  uv_read_stop((uv_stream_t *)&c->tcp);
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
  gw_conn__send_connect(c, &up);
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
    if (c->ws) gw_conn__ws_feed(c, data, n);
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
    if (gw_conn__append_raw(c, out) != 0) rc = -1;
    gw_buf_unref(out);
  }
  if (rc != 0) {
    log_info("tls_failed", "id=%llu state=%d", (unsigned long long)c->id, c->state);
    gw_conn__destroy(c, 1015);
  }
}

static void gw_conn__on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf) {
  gw_conn *c = stream->data;
  if (n == 0) return;
  if (n < 0) {
    /* EOF or reset. After a close frame from the client that is the end of
     * a clean closing handshake; otherwise an abnormal closure. */
    int code = c->close_code ? c->close_code : 1006;
    gw_conn__destroy(c, code);
    return;
  }
  c->srv->stats.bytes_in += (uint64_t)n;
  if (c->ssl) gw_conn__on_tls(c, buf->base, (size_t)n);
  else gw_conn__on_plain(c, buf->base, (size_t)n);
}

/* The worker accepted: 101, then the websocket starts. */
static int gw_conn__upgrade(gw_conn *c) {
  char resp[256];
  const char *key = gw_http_req_header(c->req, "sec-websocket-key");
  size_t n = gw_http_switching(key, resp, sizeof(resp));
  if (n == 0 || gw_conn__append_bytes(c, resp, n) != 0) return -1;
  if (wslay_event_context_server_init(&c->ws, &gw_conn__ws_callbacks, c) != 0) {
    c->ws = NULL;
    return -1;
  }
  wslay_event_config_set_max_recv_msg_length(c->ws, (uint64_t)c->srv->cfg->max_message);
  c->state = GW_CONN_OPEN;
  c->srv->stats.handshakes_accepted++;
  gw_timeq_push(&c->srv->idle, &c->tq, uv_now(c->srv->loop));
  return 0;
}

/* After the accept's own texts are queued: what the client sent before the
 * 101 (kept by the HTTP parser), then the socket again. */
static void gw_conn__start_reading(gw_conn *c) {
  gw_http_req *req = c->req;
  c->req = NULL;
  if (req->early_len && c->state == GW_CONN_OPEN)
    gw_conn__ws_feed(c, req->early, req->early_len);
  gw_http_req_free(req);
  if (c->state == GW_CONN_OPEN || c->state == GW_CONN_CLOSING) {
    if (uv_read_start((uv_stream_t *)&c->tcp, gw_conn__on_alloc, gw_conn__on_read) != 0)
      gw_conn__destroy(c, 1011);
  }
}

/* ---- replies ---------------------------------------------------------------- */

static int gw_conn__has_name(char *const *names, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(names[i], name) == 0) return 1;
  return 0;
}

/* Makes the membership exactly `names`. O(old x new) string compares: the
 * worker caps a connection at ~100 groups, so this stays in microseconds. */
static void gw_conn__set_groups(gw_conn *c, char *const *names, size_t n) {
  gw_group_table *t = &c->srv->groups;
  uint16_t kept = 0;
  for (uint16_t i = 0; i < c->n_members; i++) {
    gw_member *m = c->members[i];
    if (gw_conn__has_name(names, n, m->group->name)) c->members[kept++] = m;
    else gw_group_leave(t, m);
  }
  c->n_members = kept;
  if (n > UINT16_MAX) n = UINT16_MAX;
  /* Every kept member is in names, so n slots hold the new set. */
  gw_member **grown = realloc(c->members, (n ? n : 1) * sizeof(*grown));
  if (!grown) {
    gw_conn_close(c, 1011, "out of memory");
    return;
  }
  c->members = grown;
  for (size_t i = 0; i < n; i++) {
    int have = 0;
    for (uint16_t j = 0; j < c->n_members && !have; j++)
      have = strcmp(c->members[j]->group->name, names[i]) == 0;
    if (have) continue;
    gw_member *m = gw_group_join(t, names[i], c);
    if (!m) {
      gw_conn_close(c, 1011, "out of memory");
      return;
    }
    c->members[c->n_members++] = m;
  }
}

static void gw_conn__set_session(gw_conn *c, const char *json) {
  size_t len = strlen(json);
  if (len > (size_t)c->srv->cfg->max_session) {
    log_warn("session_too_large", "id=%llu bytes=%zu", (unsigned long long)c->id, len);
    return;
  }
  char *copy = strdup(json);
  if (!copy) return;
  free(c->session);
  c->session = copy;
}

void gw_conn_apply_reply(gw_conn *c, const chan_reply *r) {
  if (!c->inflight || r->order != c->inflight_order ||
      c->state == GW_CONN_CLOSED) {
    /* A duplicate (a redelivered message answered twice) or too late. */
    c->srv->stats.replies_dropped++;
    return;
  }
  c->inflight = 0;
  gw_timeq_remove(&c->rq);
  int connecting = c->state == GW_CONN_CONNECTING;
  gw_admin_observe_reply(&c->srv->stats, connecting, c->sent_us);
  if (connecting) gw_timeq_remove(&c->tq);
  if (r->has_groups && c->state != GW_CONN_CLOSING)
    gw_conn__set_groups(c, r->groups, r->n_groups);
  if (r->session_json) gw_conn__set_session(c, r->session_json);
  if (connecting) {
    if (r->accept != 1 || r->close_code) {
      c->srv->stats.handshakes_rejected++;
      gw_conn_reject(c, 403);
      return;
    }
    if (gw_conn__upgrade(c) != 0) {
      gw_conn_reject(c, 503);
      return;
    }
  }
  for (size_t i = 0; i < r->n_texts && c->state == GW_CONN_OPEN; i++)
    gw_conn__send_text(c, 1, r->texts[i].data, r->texts[i].len);
  if (r->has_bytes && c->state == GW_CONN_OPEN)
    gw_conn__send_text(c, 2, r->bytes, r->bytes_len);
  if (r->close_code && c->state == GW_CONN_OPEN) gw_conn_close(c, r->close_code, "");
  if (connecting) gw_conn__start_reading(c);
  gw_conn__next_pending(c);
}

void gw_conn_refused(gw_conn *c) {
  if (!c->inflight) return;
  log_warn("publish_refused", "id=%llu order=%llu", (unsigned long long)c->id,
           (unsigned long long)c->inflight_order);
  if (c->state == GW_CONN_CONNECTING) {
    c->srv->stats.handshakes_failed++;
    gw_conn_reject(c, 503);
  } else if (c->state == GW_CONN_OPEN) {
    gw_conn_close(c, 1013, "try again later");
  }
}

/* ---- closing ---------------------------------------------------------------- */

void gw_conn_reject(gw_conn *c, int status) {
  if (c->state != GW_CONN_HTTP && c->state != GW_CONN_CONNECTING) return;
  char resp[512];
  size_t n = gw_http_error(status, resp, sizeof(resp));
  c->state = GW_CONN_CLOSING;
  c->close_code = 1006;
  if (n == 0 || gw_conn__append_bytes(c, resp, n) != 0) {
    gw_conn__destroy(c, 1006);
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
  if (wslay_event_queue_close(c->ws, (uint16_t)code, (const uint8_t *)reason,
                              strlen(reason)) != 0) {
    gw_conn__destroy(c, code);
    return;
  }
  c->state = GW_CONN_CLOSING;
  gw_timeq_push(&c->srv->closing, &c->tq, uv_now(c->srv->loop));
  gw_conn__ws_after(c);
}

static void gw_conn__free(uv_handle_t *h) {
  gw_conn *c = h->data;
  for (gw_out *o = c->out_head, *n; o; o = n) {
    n = o->next;
    gw_buf_unref(o->buf);
    free(o);
  }
  for (gw_pending *p = c->pend_head, *n; p; p = n) {
    n = p->next;
    free(p);
  }
  if (c->ws) wslay_event_context_free(c->ws);
  if (c->ssl) SSL_free(c->ssl);
  gw_http_req_free(c->req);
  free(c->session);
  free(c->members);
  free(c);
}

/* The one way out. Safe to call twice; memory goes in the close callback,
 * after libuv has cancelled any write in flight. */
static void gw_conn__destroy(gw_conn *c, int code) {
  if (c->state == GW_CONN_CLOSED) return;
  gw_server *s = c->srv;
  if (c->connect_sent) gw_conn__publish_disconnect(c, code ? code : 1006);
  for (uint16_t i = 0; i < c->n_members; i++) gw_group_leave(&s->groups, c->members[i]);
  c->n_members = 0;
  gw_timeq_remove(&c->tq);
  gw_timeq_remove(&c->rq);
  gw_clients_release(&s->clients, c->client);
  c->client = NULL;
  gw_conntab_del(&s->conns, c->id);
  s->n_conns--;
  s->stats.conns_closed++;
  gw_admin_count_close(&s->stats, c->ws != NULL, code);
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
    gw_conn__destroy(c, 1006);
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
    gw_conn__destroy(c, 1006);
}

/* ---- deadlines ---------------------------------------------------------------- */

#define GW_CONN_OF(node, field) \
  ((gw_conn *)((char *)(node) - offsetof(gw_conn, field)))

static void gw_conn__ping(gw_conn *c) {
  struct wslay_event_msg ping = {.opcode = WSLAY_PING, .msg = NULL, .msg_length = 0};
  c->pinged = 1;
  if (wslay_event_queue_msg(c->ws, &ping) != 0) {
    gw_conn__destroy(c, 1011);
    return;
  }
  gw_conn__ws_after(c);
}

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
      gw_conn__destroy(c, 1006);
    } else if (!c->pinged) {
      gw_conn__ping(c);
    }
    n = next;
  }
}

static void gw_conn__tick_reply(gw_conn *c) {
  c->srv->stats.reply_timeouts++;
  log_warn("reply_timeout", "id=%llu order=%llu", (unsigned long long)c->id,
           (unsigned long long)c->inflight_order);
  gw_timeq_remove(&c->rq);
  c->inflight = 0;
  static const char msg[] = "{\"error\": \"no worker answered in time\"}";
  gw_conn__send_text(c, 1, msg, sizeof(msg) - 1);
  gw_conn__next_pending(c);
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
      gw_conn__tick_reply(GW_CONN_OF(n, rq));
  }
  if (now > GW_LINGER_MS) {
    while ((n = gw_timeq_expired(&s->closing, now - GW_LINGER_MS))) {
      gw_conn *c = GW_CONN_OF(n, tq);
      gw_conn__destroy(c, c->close_code ? c->close_code : 1006);
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
    if (c) gw_conn__destroy(c, 1001);
  }
  free(ids);
}
