/*
 * gw_conn.c - one client connection's lifecycle (see gw_conn.h).
 *
 * Reads go into the server's shared buffer and are consumed inside the read
 * callback (TLS first when on, then llhttp before the upgrade, gw_ws
 * after), so an idle connection holds no read buffer. Deadlines are kept in
 * the server's deadline queues and served by one tick (gw_conn_tick).
 * Writes: frames are queued by reference (gw_send) and each connection with
 * something queued gets one writev per loop iteration, in the check phase:
 * uv_try_write first (most writes complete at once), uv_write for the rest.
 */
#include "gw_conn.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chan_msg.h"
#include "chan_names.h"
#include "chan_pos.h"
#include "chan_reply_channel.h"
#include "gw_pmd.h"
#include "log.h"

#define GW_LINGER_MS 2000 /* how long a closing connection may take */

static void gw_conn__on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void gw_conn__on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf);
static void gw_conn__maybe_finish(gw_conn *c);

/* ---- the lifecycle: one transition function ------------------------------------ */

/* Which transitions exist: a bit per target state, by source state. */
static const uint8_t gw_conn__next[] = {
    [GW_CONN_HTTP] = 1u << GW_CONN_HTTP | 1u << GW_CONN_CONNECTING |
                     1u << GW_CONN_CLOSING | 1u << GW_CONN_CLOSED,
    [GW_CONN_CONNECTING] = 1u << GW_CONN_OPEN | 1u << GW_CONN_CLOSING | 1u << GW_CONN_CLOSED,
    [GW_CONN_OPEN] = 1u << GW_CONN_CLOSING | 1u << GW_CONN_CLOSED,
    [GW_CONN_CLOSING] = 1u << GW_CONN_CLOSED,
    [GW_CONN_CLOSED] = 0,
};

/* The echo route (conformance tests only) may have limits of its own,
 * sized for Autobahn (make run, the conformance tests), so that the real
 * route keeps limits sized for what its clients send. Known once the
 * worker is asked (the relay's path). An echo_* of 0: the route's own. */
static long gw_conn__limit(const gw_conn *c, long route, long echo) {
  return echo && c->relay.path && gw_http_is_echo(c->relay.path) ? echo : route;
}

static size_t gw_conn__max_send_queue(const gw_conn *c) {
  const gw_config *cfg = c->srv->cfg;
  return (size_t)gw_conn__limit(c, cfg->max_send_queue, cfg->echo_max_send_queue);
}

/* Backpressure: an open connection is not read while more than a quarter
 * of max_send_queue waits to be written to it, and is read again once less
 * than an eighth does. A client that does not read what it is owed (events,
 * pongs, replies) cannot make us read, and so owe, more. */
static int gw_conn__may_read_more(const gw_conn *c) {
  size_t high = gw_conn__max_send_queue(c) / 4;
  return c->send.bytes <= (c->life.reading ? high : high / 2);
}

/* The socket is read while a request head or frames may come (and the
 * client reads what it is owed), and after an HTTP refusal once our answer
 * is out (to see the client hang up): never while a worker decides (what
 * the client sends early waits in the kernel). */
static int gw_conn__wants_read(const gw_conn *c) {
  switch (c->life.state) {
    case GW_CONN_HTTP: return 1;
    case GW_CONN_OPEN: return gw_conn__may_read_more(c);
    case GW_CONN_CLOSING: return c->life.upgraded || c->life.shut;
    default: return 0;
  }
}

/* Makes reading match the state. -1 when libuv refused (the caller ends
 * the connection). */
static int gw_conn__apply_reading(gw_conn *c) {
  int want = gw_conn__wants_read(c);
  if (want == c->life.reading) return 0;
  c->life.reading = (uint8_t)want;
  if (!want) return uv_read_stop((uv_stream_t *)&c->tcp);
  return uv_read_start((uv_stream_t *)&c->tcp, gw_conn__on_alloc, gw_conn__on_read);
}

/* The one place state, deadline-queue membership and reading change.
 * Entering a state (re)starts its deadline; OPEN's is the idle deadline,
 * restarted by every read (gw_conn__touch). */
static void gw_conn__enter(gw_conn *c, gw_conn_state to) {
  assert(c->life.state < sizeof gw_conn__next);
  assert(gw_conn__next[c->life.state] & (1u << to));
  gw_server *s = c->srv;
  c->life.state = (uint8_t)to;
  uint64_t now = uv_now(s->loop);
  switch (to) {
    case GW_CONN_HTTP: gw_timeq_push(&s->handshakes, &c->life.tq, now); break;
    case GW_CONN_CONNECTING: gw_timeq_push(&s->connecting, &c->life.tq, now); break;
    case GW_CONN_OPEN:
      gw_clients_opened(c->client);
      c->life.pinged = 0;
      gw_timeq_push(&s->idle, &c->life.tq, now);
      break;
    case GW_CONN_CLOSING: gw_timeq_push(&s->closing, &c->life.tq, now); break;
    case GW_CONN_CLOSED:
      gw_timeq_remove(&c->life.tq);
      c->life.reading = 0; /* uv_close stops it */
      return;
  }
  if (gw_conn__apply_reading(c) != 0) gw_conn_destroy(c, GW_WS_ABNORMAL);
}

/* Bytes arrived on an open connection: it is alive. */
static void gw_conn__touch(gw_conn *c) {
  assert(c->life.state == GW_CONN_OPEN);
  c->life.pinged = 0;
  gw_timeq_push(&c->srv->idle, &c->life.tq, uv_now(c->srv->loop));
}

/* ---- writing ------------------------------------------------------------------- */

static void gw_conn__mark_dirty(gw_conn *c) {
  if (c->life.dirty) return;
  c->life.dirty = 1;
  c->dirty_next = c->srv->dirty;
  c->srv->dirty = c;
}

/* After the send queue grew or shrank: backpressure on or off. */
static void gw_conn__pace(gw_conn *c) {
  if (c->life.state == GW_CONN_OPEN && gw_conn__apply_reading(c) != 0)
    gw_conn_destroy(c, GW_WS_ABNORMAL);
}

/* The queue grew: write it this iteration, and stop reading if the client
 * is owed too much. */
static void gw_conn__queued(gw_conn *c) {
  gw_conn__mark_dirty(c);
  if (c->life.reading) gw_conn__pace(c);
}

static void gw_conn__flush(gw_conn *c);
static void gw_conn__on_later(uv_timer_t *t);

/* Unsent bytes past which an event is written this iteration after all:
 * the delay saves writes on a trickle, not on a burst. */
#define GW_CONN_LATER_MAX_BYTES (16 * 1024)

/* The queue grew by an event (fanout): written within write_delay, with
 * whatever else comes meanwhile, in one writev (a job's output arrives a
 * line at a time, and a write and a wakeup per line per client was most
 * of a trickle's cost). Anything else queued for the connection, or its
 * queue past GW_CONN_LATER_MAX_BYTES, writes it this iteration. Costs: a
 * delivery waits write_delay at most; 8 bytes per waiting connection in
 * srv->later. */
static void gw_conn__queued_event(gw_conn *c) {
  gw_server *s = c->srv;
  /* A closing server's timer runs no more: what is queued goes now. */
  if (!s->cfg->write_delay || c->life.dirty || c->send.bytes >= GW_CONN_LATER_MAX_BYTES ||
      uv_is_closing((uv_handle_t *)&s->later_timer)) {
    gw_conn__queued(c);
    return;
  }
  if (c->life.reading) gw_conn__pace(c);
  if (c->life.later || c->life.state == GW_CONN_CLOSED) return;
  if (s->later_n == s->later_cap) {
    size_t cap = s->later_cap ? s->later_cap * 2 : 256;
    uint64_t *ids = realloc(s->later, cap * sizeof *ids);
    if (!ids) { /* now rather than never */
      gw_conn__queued(c);
      return;
    }
    s->later = ids;
    s->later_cap = cap;
  }
  if (s->later_n == 0)
    uv_timer_start(&s->later_timer, gw_conn__on_later, (uint64_t)s->cfg->write_delay, 0);
  s->later[s->later_n++] = c->id;
  c->life.later = 1;
}

/* write_delay after the first event of a round: the round's connections
 * are written. */
static void gw_conn__on_later(uv_timer_t *t) {
  gw_server *s = t->data;
  /* Taken whole first: a flush may queue events for the next round. */
  uint64_t *ids = s->later;
  size_t n = s->later_n, cap = s->later_cap;
  s->later = NULL;
  s->later_n = s->later_cap = 0;
  for (size_t i = 0; i < n; i++) {
    gw_conn *c = gw_conntab_get(&s->conns, ids[i]);
    if (!c) continue; /* closed meanwhile */
    assert(c->life.later);
    c->life.later = 0;
    gw_conn__flush(c);
  }
  if (!s->later) { /* no new round began meanwhile: keep the array */
    s->later = ids;
    s->later_cap = cap;
  } else {
    free(ids);
  }
}

/* Appends bytes that go to the socket as they are. Takes a reference.
 * event: an event of the fanout (may wait for write_delay). */
static int gw_conn__queue_raw(gw_conn *c, gw_buf *b, int event) {
  if (gw_send_push(&c->send, b) != 0) return -1;
  if (event) gw_conn__queued_event(c);
  else gw_conn__queued(c);
  return 0;
}

/* Bytes we owe the client whatever its state (HTTP responses, wslay's
 * control frames): not bounded. Under TLS the queue holds ciphertext: the
 * bytes are encrypted here, once, in queue order (records must reach the
 * peer in the order they were made). */
static int gw_conn__queue_owed(gw_conn *c, gw_buf *b, int event) {
  if (!c->ssl) return gw_conn__queue_raw(c, b, event);
  gw_buf *cipher = gw_tls_encrypt(c->ssl, b->data, b->len);
  if (!cipher) return -1;
  int rc = gw_conn__queue_raw(c, cipher, event);
  gw_buf_unref(cipher);
  return rc;
}

/* Bytes of our own (HTTP answers, wslay's control frames), copied into
 * the queue: small ones share buffers (gw_send_push_copy). */
static int gw_conn__queue_copy(gw_conn *c, const void *data, size_t len) {
  int rc;
  if (!c->ssl) {
    rc = gw_send_push_copy(&c->send, data, len);
  } else {
    gw_buf *cipher = gw_tls_encrypt(c->ssl, data, len);
    rc = cipher ? gw_send_push_copy(&c->send, cipher->data, cipher->len) : -1;
    gw_buf_unref(cipher);
  }
  if (rc != 0) return -1;
  gw_conn__queued(c);
  return 0;
}

/* The process's deflater when c is sent compressed messages, else NULL. */
static gw_deflate *gw_conn__deflate(const gw_conn *c) {
  return (c->ws.pmd & GW_PMD_SEND) ? &c->srv->deflate : NULL;
}

/* Queues b as it is (already what this client is to get). */
static void gw_conn__send_wire(gw_conn *c, gw_buf *b, int event) {
  if (c->life.state != GW_CONN_OPEN) return;
  if (c->send.bytes + b->len > gw_conn__max_send_queue(c)) {
    c->srv->stats.slow_closes++;
    log_info("conn_slow", "id=%llu unsent=%zu frame=%u", (unsigned long long)c->id,
             c->send.bytes, b->len);
    /* The close goes out at once, not behind what the client cannot read.
     * Not under TLS: records carry sequence numbers, dropping one breaks
     * the stream, so a slow TLS client is cut at the linger deadline. */
    if (!c->ssl) gw_send_drop_unsent(&c->send);
    gw_conn_close(c, GW_WS_POLICY, "send queue full");
    return;
  }
  if (gw_conn__queue_owed(c, b, event) != 0) {
    gw_conn_destroy(c, GW_WS_INTERNAL);
    return;
  }
  c->srv->stats.msgs_out++;
  if (b->data[0] & 0x40) { /* RSV1: a twin; the client's window now ends with it */
    assert(b->serial != 0);
    c->ws.zlast = b->serial;
    c->srv->stats.msgs_out_z++;
  }
}

/* `prev` when this client's window ends with it (it kept its context and
 * the last compressed message queued to it was prev), else NULL. */
static gw_buf *gw_conn__after(const gw_conn *c, gw_buf *prev) {
  return prev && (c->ws.pmd & GW_PMD_CHAIN) && prev->serial && c->ws.zlast == prev->serial
             ? prev
             : NULL;
}

/* Queues frame b (compressed for a client that reads it so); event: one
 * of the fanout's (gw_conn__queued_event). */
static void gw_conn__send_frame(gw_conn *c, gw_buf *b, gw_buf *prev, int event) {
  gw_deflate *z = gw_conn__deflate(c);
  if (!z || c->life.state != GW_CONN_OPEN) {
    gw_conn__send_wire(c, b, event);
    return;
  }
  gw_buf *after = gw_conn__after(c, prev);
  gw_conn__send_wire(c, after ? gw_deflate_twin_after(z, b, after) : gw_deflate_twin(z, b),
                     event);
}

void gw_conn_send_frame(gw_conn *c, gw_buf *b, gw_buf *prev) {
  gw_conn__send_frame(c, b, prev, 1);
}

void gw_conn_send_event(gw_conn *c, gw_hist *h, gw_hist_ev *e, gw_buf *const prev[2]) {
  if (!c->relay.v2) {
    gw_buf *b = gw_hist_frame_for(h, e, 0, gw_conn__deflate(c), gw_conn__after(c, prev[0]));
    if (b) gw_conn__send_wire(c, b, 1);
    return;
  }
  if (c->relay.lag || c->life.state != GW_CONN_OPEN) return; /* the pump serves it */
  gw_buf *env = gw_hist_frame_for(h, e, 1, gw_conn__deflate(c), gw_conn__after(c, prev[1]));
  if (!env) {
    gw_conn_close(c, GW_WS_INTERNAL, "out of memory");
    return;
  }
  if (c->send.bytes + env->len > gw_conn__max_send_queue(c) && strcmp(c->srv->cfg->slow_client, "close") != 0) {
    /* Behind: served from the history once its queue drained, not closed.
     * Nothing queued is dropped, so this works under TLS too. */
    c->srv->stats.hist_lags++;
    log_info("conn_lagging", "id=%llu unsent=%zu offset=%llu", (unsigned long long)c->id,
             c->send.bytes, (unsigned long long)e->offset);
    if (gw_relay_lag_start(&c->relay, gw_hist_prev_offset(h, e->offset)) != 0)
      gw_conn_close(c, GW_WS_INTERNAL, "out of memory");
    return;
  }
  gw_conn__send_wire(c, env, 1);
}

static void gw_conn__send_text(gw_conn *c, int opcode, const char *data, size_t len) {
  gw_buf *b = gw_buf_frame(opcode, data, len);
  if (!b) {
    gw_conn_close(c, GW_WS_INTERNAL, "out of memory");
    return;
  }
  gw_conn__send_frame(c, b, NULL, 0);
  gw_buf_unref(b);
}

static void gw_conn__on_write(uv_write_t *req, int status) {
  gw_conn *c = req->data;
  free(req);
  if (c->life.state == GW_CONN_CLOSED) return; /* cancelled by uv_close */
  if (status < 0) {
    gw_conn_destroy(c, GW_WS_ABNORMAL);
    return;
  }
  c->srv->stats.bytes_out += c->send.wr_bytes;
  gw_send_end_write(&c->send);
  if (!c->life.reading) gw_conn__pace(c);
  gw_conn__flush(c);
}

static void gw_conn__pump(gw_conn *c);

/* Writes what is queued, unless a write is in flight. */
static void gw_conn__flush(gw_conn *c) {
  if (c->send.writing || c->life.state == GW_CONN_CLOSED) return;
  gw_conn__pump(c);
  if (c->life.state == GW_CONN_CLOSED) return;
  uv_buf_t iov[GW_SEND_IOV_MAX];
  size_t bytes, n = gw_send_gather(&c->send, iov, &bytes);
  if (n > 0) {
    /* Most writes complete at once; try that before paying for a request. */
    int r = uv_try_write((uv_stream_t *)&c->tcp, iov, (unsigned)n);
    c->srv->stats.writes++;
    if (r < 0 && r != UV_EAGAIN) {
      gw_conn_destroy(c, GW_WS_ABNORMAL);
      return;
    }
    if (r > 0) {
      gw_send_consume(&c->send, (size_t)r);
      c->srv->stats.bytes_out += (uint64_t)r;
      if (!c->life.reading) gw_conn__pace(c);
      if (c->life.state == GW_CONN_CLOSED) return;
    }
    n = gw_send_gather(&c->send, iov, &bytes);
  }
  if (n == 0) {
    /* All written at once: no write completes to ask for more history, so
     * ask now (what it queues marks the connection for another flush). */
    gw_conn__pump(c);
    gw_conn__maybe_finish(c);
    return;
  }
  uv_write_t *req = malloc(sizeof(*req));
  if (!req) {
    gw_conn_destroy(c, GW_WS_INTERNAL);
    return;
  }
  req->data = c;
  c->srv->stats.writes++;
  if (uv_write(req, (uv_stream_t *)&c->tcp, iov, (unsigned)n, gw_conn__on_write) != 0) {
    free(req);
    gw_conn_destroy(c, GW_WS_ABNORMAL);
    return;
  }
  gw_send_begin_write(&c->send, (uint32_t)n, bytes);
}

void gw_conn_flush_dirty(gw_server *s) {
  while (s->dirty) {
    gw_conn *c = s->dirty;
    s->dirty = c->dirty_next;
    c->life.dirty = 0;
    c->dirty_next = NULL;
    gw_conn__flush(c);
  }
}

/* ---- the protocol modules' sinks --------------------------------------------- */

/* What wslay owes the client (pongs, close frames) counts against
 * max_send_queue like everything else: a client that makes us owe more
 * than it reads is cut (1008, no close frame: it would not read one). */
static int gw_conn__ws_send(void *arg, const uint8_t *data, size_t len) {
  gw_conn *c = arg;
  if (c->life.state == GW_CONN_CLOSED) return 0; /* nobody to tell */
  if (c->send.bytes + len > gw_conn__max_send_queue(c)) {
    c->srv->stats.slow_closes++;
    log_info("conn_slow", "id=%llu unsent=%zu owed=1", (unsigned long long)c->id,
             c->send.bytes);
    return GW_WS_POLICY;
  }
  return gw_conn__queue_copy(c, data, len) == 0 ? 0 : GW_WS_INTERNAL;
}

static void gw_conn__ws_message(void *arg, int binary, const uint8_t *msg, size_t len);

static const gw_ws_sink gw_conn__ws_sink = {gw_conn__ws_send, gw_conn__ws_message};

static void gw_conn__ws_io(gw_conn *c, gw_ws_io *io) {
  io->sink = &gw_conn__ws_sink;
  io->arg = c;
  const gw_config *cfg = c->srv->cfg;
  io->max_frame = (uint64_t)gw_conn__limit(c, cfg->max_frame, cfg->echo_max_message);
  io->max_message = (uint64_t)gw_conn__limit(c, cfg->max_message, cfg->echo_max_message);
  io->now_ms = uv_now(c->srv->loop);
  io->id = c->id;
  io->max_pings = (uint32_t)gw_conn__limit(c, cfg->max_rate, cfg->echo_max_rate);
  io->deflate = (c->ws.pmd & GW_PMD_RECV) ? &c->srv->deflate : NULL;
  io->budget = &c->srv->stats.partial;
  io->rd = NULL;
  io->rd_len = 0;
}

static int gw_conn__publish(void *arg, const char *queue, char *json, size_t len,
                            int answer) {
  gw_conn *c = arg;
  return gw_bridge_publish(c->srv->bridge, queue, answer ? c->id : 0, json, len);
}

static void gw_conn__relay_send(void *arg, int opcode, const char *data, size_t len) {
  gw_conn__send_text(arg, opcode, data, len);
}

static void gw_conn__relay_close(void *arg, uint16_t code, const char *reason) {
  gw_conn_close(arg, code, reason);
}

static void gw_conn__relay_refuse(void *arg, int status) { gw_conn_reject(arg, status); }

static int gw_conn__upgrade(void *arg);

static int gw_conn__relay_open(void *arg) {
  const gw_conn *c = arg;
  return c->life.state == GW_CONN_OPEN;
}

/* Catch-up takes at most half the send queue, so replies and pongs keep
 * room, and is asked again once the queue drained (gw_conn__flush). */
static int gw_conn__relay_push(void *arg, gw_buf *b) {
  gw_conn *c = arg;
  if (c->send.bytes + b->len > gw_conn__max_send_queue(c) / 2) return -1;
  gw_conn__send_wire(c, b, 0); /* the history chose compressed or not */
  return 0;
}

static const gw_relay_sink gw_conn__relay_sink = {
    gw_conn__publish,      gw_conn__relay_send, gw_conn__relay_close,
    gw_conn__relay_refuse, gw_conn__upgrade,    gw_conn__relay_open,
    gw_conn__relay_push,
};

static uint64_t gw_conn__wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The relay's view of this connection for one call; channel is the
 * caller's buffer for the reply channel. */
static void gw_conn__relay_io(gw_conn *c, gw_relay_io *io, char *channel, size_t len) {
  gw_server *s = c->srv;
  io->sink = &gw_conn__relay_sink;
  io->arg = c;
  io->id = c->id;
  io->reply_channel =
      s->queue[0] && chan_reply_channel_format(channel, len, s->queue, c->id) >= 0 ? channel
                                                                                   : NULL;
  io->groups = &s->groups;
  io->replies = &s->replies;
  io->stats = &s->stats;
  io->now_ms = uv_now(s->loop);
  io->max_rate = gw_conn__limit(c, s->cfg->max_rate, s->cfg->echo_max_rate);
  io->max_pending = gw_conn__limit(c, s->cfg->max_pending, s->cfg->echo_max_pending);
  io->max_session = s->cfg->max_session;
  io->changes_rate = s->cfg->group_changes_rate;
  io->changes_burst = s->cfg->group_changes_burst;
  io->expiries = &s->expiries;
  io->rechecks = &s->rechecks;
  io->hist = s->cfg->history.enabled ? &s->hist : NULL;
  io->deflate = gw_conn__deflate(c);
  io->wall_ms = gw_conn__wall_ms();
  io->refresh_window_ms = (uint64_t)s->cfg->refresh_window;
  /* The echo route changes no groups, so it is never told the binds wait. */
  io->binds_busy = s->bridge &&
                   gw_bridge_bind_backlog(s->bridge) > (size_t)s->cfg->max_bind_backlog &&
                   !(c->relay.path && strcmp(c->relay.path, "/websocket/echo") == 0);
}

#define GW_CONN_CHANNEL_MAX (CHAN_QUEUE_NAME_MAX + 64)

/* A wsgw.2 connection owed history: queue more of it while the queue is
 * under an eighth of its bound (what was queued is flushed next; each
 * call queues at most half the bound, so one catch-up cannot hold the loop
 * longer than the socket takes it). */
static void gw_conn__pump(gw_conn *c) {
  if (!c->relay.lag || c->send.bytes > gw_conn__max_send_queue(c) / 8) return;
  /* Called on every flush of a lagging connection: only what the pump
   * reads (gw_relay.h), not the whole io with its reply channel. */
  gw_server *s = c->srv;
  gw_relay_io io = {.sink = &gw_conn__relay_sink, .arg = c, .id = c->id, .stats = &s->stats,
                    .hist = s->cfg->history.enabled ? &s->hist : NULL};
  gw_relay_pump(&c->relay, &io);
}


static void gw_conn__ws_message(void *arg, int binary, const uint8_t *msg, size_t len) {
  gw_conn *c = arg;
  char channel[GW_CONN_CHANNEL_MAX];
  gw_relay_io io;
  gw_conn__relay_io(c, &io, channel, sizeof channel);
  gw_relay_client_message(&c->relay, &io, binary, msg, len);
}

/* ---- closing ------------------------------------------------------------------- */

static void gw_conn__on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  free(req);
}

/* After an HTTP error is out: half-close and read until the client closes
 * too. Closing at once with unread request bytes in the kernel would send a
 * reset, and a reset can destroy our response before the client reads it. */
static void gw_conn__http_linger(gw_conn *c) {
  uv_shutdown_t *req = malloc(sizeof(*req));
  c->life.shut = 1;
  if (!req || uv_shutdown(req, (uv_stream_t *)&c->tcp, gw_conn__on_shutdown) != 0 ||
      gw_conn__apply_reading(c) != 0) {
    free(req);
    gw_conn_destroy(c, c->life.close_code);
  }
}

/* A closing connection ends once its last bytes are out and the closing
 * handshake is complete, or, refused over HTTP, once the client hung up
 * (the linger deadline bounds both). */
static void gw_conn__maybe_finish(gw_conn *c) {
  if (c->life.state != GW_CONN_CLOSING || !gw_send_empty(&c->send)) return;
  if (!c->life.upgraded) {
    if (!c->life.shut) gw_conn__http_linger(c);
    return;
  }
  if (gw_ws_awaiting_close(&c->ws)) return;
  gw_conn_destroy(c, c->life.close_code);
}

/* What a gw_ws call said: a failure ends the connection, a close frame sent
 * starts CLOSING (with the code the client gave, or ours). */
static void gw_conn__ws_result(gw_conn *c, gw_ws_result r, uint16_t code) {
  if (c->life.state == GW_CONN_CLOSED) return;
  if (r == GW_WS_FAILED) {
    gw_conn_destroy(c, code);
    return;
  }
  if (r == GW_WS_CLOSED && c->life.state == GW_CONN_OPEN) {
    c->life.close_code = code;
    gw_conn__enter(c, GW_CONN_CLOSING);
  }
  gw_conn__maybe_finish(c);
}

void gw_conn_reject(gw_conn *c, int status) {
  if (c->life.state != GW_CONN_HTTP && c->life.state != GW_CONN_CONNECTING) return;
  char resp[512];
  size_t n = gw_http_error(status, resp, sizeof(resp));
  c->life.close_code = GW_WS_ABNORMAL;
  gw_conn__enter(c, GW_CONN_CLOSING);
  if (c->life.state != GW_CONN_CLOSING) return;
  if (n == 0 || gw_conn__queue_copy(c, resp, n) != 0) gw_conn_destroy(c, GW_WS_ABNORMAL);
}

void gw_conn_close(gw_conn *c, uint16_t code, const char *reason) {
  if (c->life.state == GW_CONN_HTTP || c->life.state == GW_CONN_CONNECTING) {
    gw_conn_reject(c, 503);
    return;
  }
  if (c->life.state != GW_CONN_OPEN) return;
  log_debug("conn_closing", "id=%llu code=%d reason=\"%s\"", (unsigned long long)c->id, code,
            reason);
  c->life.close_code = code;
  gw_ws_io io;
  gw_conn__ws_io(c, &io);
  if (gw_ws_close(&c->ws, &io, code, reason) == GW_WS_FAILED) {
    gw_conn_destroy(c, code);
    return;
  }
  gw_conn__enter(c, GW_CONN_CLOSING);
  gw_conn__maybe_finish(c);
}

static void gw_conn__free(uv_handle_t *h) {
  gw_conn *c = h->data;
  gw_send_free(&c->send);
  gw_ws_free(&c->ws, &c->srv->stats.partial);
  gw_relay_free(&c->relay);
  if (c->ssl) SSL_free(c->ssl);
  gw_http_req_free(c->req);
  free(c);
}

/* The one way out. Safe to call twice; memory goes in the close callback,
 * after libuv has cancelled any write in flight. */
void gw_conn_destroy(gw_conn *c, uint16_t code) {
  if (c->life.state == GW_CONN_CLOSED) return;
  gw_server *s = c->srv;
  char channel[GW_CONN_CHANNEL_MAX];
  gw_relay_io io;
  gw_conn__relay_io(c, &io, channel, sizeof channel);
  gw_relay_end(&c->relay, &io, code);
  gw_clients_release(&s->clients, c->client, c->life.upgraded);
  c->client = NULL;
  gw_conntab_del(&s->conns, c->id);
  assert(s->n_conns > 0);
  s->n_conns--;
  s->stats.conns_closed++;
  gw_admin_count_close(&s->stats, c->life.upgraded, code);
  log_debug("conn_closed", "id=%llu code=%d", (unsigned long long)c->id, code);
  gw_conn__enter(c, GW_CONN_CLOSED);
  uv_close((uv_handle_t *)&c->tcp, gw_conn__free);
}

/* ---- the websocket ---------------------------------------------------------------- */

static void gw_conn__ws_feed(gw_conn *c, const uint8_t *data, size_t len) {
  gw_ws_io io;
  gw_conn__ws_io(c, &io);
  uint16_t code = 0;
  gw_ws_result r = gw_ws_feed(&c->ws, &io, data, len, &code);
  if (r == GW_WS_OK && c->life.state == GW_CONN_OPEN) gw_conn__touch(c);
  gw_conn__ws_result(c, r, code);
}

/* wsgw.2's heartbeat (docs/PROTOCOL.md): a browser cannot see pings, so a
 * wsgw.2 client learns that the connection lives from this text, sent with
 * each keepalive ping. Not while a write is stuck or the queue is long: a
 * heartbeat behind a full queue would count against max_send_queue. Costs one small frame per ping_interval of
 * client silence, in the same write as the ping. */
static void gw_conn__heartbeat(gw_conn *c) {
  /* Events waiting for write_delay are not a slow reader: a stream flowing
   * every millisecond would otherwise never leave room for the heartbeat,
   * and the SDK would never learn the interval. */
  if (!c->relay.v2 || c->send.writing || c->send.bytes >= GW_CONN_LATER_MAX_BYTES) return;
  char text[48];
  int n = snprintf(text, sizeof(text), "{\"heartbeat\":%ld}", c->srv->cfg->ping_interval);
  assert(n > 0 && (size_t)n < sizeof(text));
  gw_conn__send_text(c, 1 /* text */, text, (size_t)n);
}

static void gw_conn__ping(gw_conn *c) {
  gw_ws_io io;
  gw_conn__heartbeat(c);
  if (c->life.state != GW_CONN_OPEN) return; /* out of memory */
  gw_conn__ws_io(c, &io);
  uint16_t code = 0;
  c->life.pinged = 1;
  gw_conn__ws_result(c, gw_ws_ping(&c->ws, &io, &code), code);
}

/* The worker accepted (the relay's accept): the 101, and the connection is
 * a websocket from here on. -1: it could not be queued, or the connection
 * is no longer waiting for it. */
/* permessage-deflate: the request's Sec-WebSocket-Extensions headers in
 * order until one holds an offer we take; its GW_PMD_* flags (0: none) and
 * the answer in ext. */
static uint8_t gw_conn__negotiate(const gw_http_req *req, char ext[GW_PMD_ANSWER_MAX]) {
  const char *offers;
  for (uint32_t i = 0; (offers = gw_http_req_header_nth(req, "sec-websocket-extensions", i));
       i++) {
    int flags = gw_pmd_negotiate(offers, ext);
    if (flags) return (uint8_t)flags;
  }
  return 0;
}

static int gw_conn__upgrade(void *arg) {
  gw_conn *c = arg;
  if (c->life.state != GW_CONN_CONNECTING) return -1;
  char resp[512], ext[GW_PMD_ANSWER_MAX];
  const char *key = gw_http_req_header(c->req, "sec-websocket-key");
  const char *protocol = c->relay.v2 ? CHAN_POS_PROTOCOL
                         : gw_http_wants_protocol(c->req, CHAN_OLD_PROTOCOL) ? CHAN_OLD_PROTOCOL
                                                                              : NULL;
  c->ws.pmd = c->srv->cfg->compression.enabled ? gw_conn__negotiate(c->req, ext) : 0;
  size_t n = gw_http_switching(key, protocol, c->ws.pmd ? ext : NULL, resp, sizeof(resp));
  if (n == 0 || gw_conn__queue_copy(c, resp, n) != 0) return -1;
  /* No wslay context yet: gw_ws makes one when the first frame arrives. */
  c->life.upgraded = 1;
  c->srv->stats.handshakes_accepted++;
  gw_conn__enter(c, GW_CONN_OPEN);
  return 0;
}

/* After the accept's own texts are queued: what the client sent before the
 * 101 (kept by the HTTP parser) goes to the websocket first. */
static void gw_conn__feed_early(gw_conn *c) {
  gw_http_req *req = c->req;
  c->req = NULL;
  if (req->early_len && c->life.state == GW_CONN_OPEN)
    gw_conn__ws_feed(c, (const uint8_t *)req->early, req->early_len);
  gw_http_req_free(req);
}

void gw_conn_apply_reply(gw_conn *c, const chan_reply *r) {
  if (c->life.state == GW_CONN_CLOSED) return;
  char channel[GW_CONN_CHANNEL_MAX];
  gw_relay_io io;
  gw_conn__relay_io(c, &io, channel, sizeof channel);
  int connecting = c->life.state == GW_CONN_CONNECTING;
  if (gw_relay_apply_reply(&c->relay, &io, r, connecting) == GW_RELAY_ACCEPTED &&
      c->life.state != GW_CONN_CLOSED)
    gw_conn__feed_early(c);
}

void gw_conn_refused(gw_conn *c) {
  char channel[GW_CONN_CHANNEL_MAX];
  gw_relay_io io;
  gw_conn__relay_io(c, &io, channel, sizeof channel);
  gw_relay_refused(&c->relay, &io, c->life.state == GW_CONN_CONNECTING);
}

/* ---- read path and handshake ------------------------------------------------ */

static void gw_conn__on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  gw_conn *c = h->data;
  *buf = uv_buf_init(c->srv->read_buf, GW_CONN_READ_BUF);
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

/* Applies max_per_client and max_handshakes_per_client to addr, once per
 * connection. Returns -1 (and answers 503) at a limit. */
static int gw_conn__count_client(gw_conn *c, const char *addr) {
  const gw_config *cfg = c->srv->cfg;
  gw_clients_limits lim = {.total = (uint32_t)cfg->max_per_client,
                           .handshakes = (uint32_t)cfg->max_handshakes_per_client};
  if (c->client || !gw_clients_limited(&lim)) return 0;
  gw_clients_refusal why;
  c->client = gw_clients_acquire(&c->srv->clients, addr, &lim, &why);
  if (c->client) return 0;
  c->srv->stats.client_limit_rejects++;
  /* Every client of a proxy we do not trust has the proxy's address: the
   * log says which setting to look at. */
  log_info("client_limit", "id=%llu client=%s limit=%s", (unsigned long long)c->id, addr,
           gw_clients_refusal_name(why));
  gw_conn_reject(c, 503);
  return -1;
}

/* At accept, a peer that is not a trusted proxy is the client: it is
 * counted before it may send a byte, so one address cannot hold more
 * handshake slots than its share. A proxy's clients are counted once the
 * head names them (gw_conn__connect). Costs one getpeername per accept. */
static int gw_conn__count_peer(gw_conn *c) {
  const gw_config *cfg = c->srv->cfg;
  if (cfg->max_per_client <= 0 && cfg->max_handshakes_per_client <= 0) return 0;
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  memset(&ss, 0, sizeof(ss));
  uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len);
  chan_addr peer;
  gw_conn__addr(&ss, &peer);
  if (gw_http_is_trusted(cfg->trusted_proxies, peer.host)) return 0;
  return gw_conn__count_client(c, peer.host);
}

/* The head is complete and valid: ask a worker whether to accept. Nothing
 * more is read until it answers: anything the client sends early is either
 * in req->early or waits in the kernel. */
static void gw_conn__connect(gw_conn *c, const gw_http_upgrade *up) {
  chan_msg m = {.query_string = (char *)up->query};
  gw_conn__peer(c, &m.client, &m.server);
  /* Behind a trusted proxy the client is the X-Forwarded-For hop: limits,
   * logs and workers all see the real address. */
  chan_addr peer = m.client;
  int forwarded = gw_http_client_addr(c->req, &peer, c->srv->cfg->trusted_proxies, &m.client);
  if (gw_conn__count_client(c, m.client.host) != 0) return;
  char *scratch;
  if (gw_http_req_forward(c->req, c->srv->cfg->forward_headers, c->srv->cfg->forward_cookies,
                          &m.headers, &m.n_headers, &scratch) != 0) {
    gw_conn_reject(c, 503);
    return;
  }
  char channel[GW_CONN_CHANNEL_MAX];
  gw_relay_io io;
  gw_conn__relay_io(c, &io, channel, sizeof channel);
  /* wsgw.2 is offered only with a history to serve positions from. */
  c->relay.v2 = io.hist && gw_http_wants_protocol(c->req, CHAN_POS_PROTOCOL);
  int rc = gw_relay_connect(&c->relay, &io, up->path, &m);
  free(m.headers);
  free(scratch);
  if (rc != 0) {
    c->srv->stats.handshakes_failed++;
    gw_conn_reject(c, 503);
    return;
  }
  log_info("conn_connecting", "id=%llu client=%s:%d peer=%s:%d forwarded=%d path=%s",
           (unsigned long long)c->id, m.client.host, m.client.port, peer.host, peer.port,
           forwarded, up->path);
  gw_conn__enter(c, GW_CONN_CONNECTING);
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
  if (c->srv->shutting_down || !gw_bridge_is_up(c->srv->bridge)) {
    c->srv->stats.handshakes_failed++;
    gw_conn_reject(c, 503);
    return;
  }
  gw_conn__connect(c, &up);
}

/* Bytes from the client, decrypted when under TLS. A refused client's bytes
 * are read only to be dropped (see gw_conn__http_linger). */
static void gw_conn__on_plain(gw_conn *c, const char *data, size_t n) {
  switch (c->life.state) {
    case GW_CONN_HTTP: gw_conn__on_http(c, data, n); break;
    case GW_CONN_CONNECTING:
      /* TLS can hold decrypted records past the head: keep them for later. */
      if (c->req && gw_http_req_feed(c->req, data, n) != GW_HTTP_DONE) gw_conn_reject(c, 400);
      break;
    case GW_CONN_OPEN:
    case GW_CONN_CLOSING:
      if (c->life.upgraded) gw_conn__ws_feed(c, (const uint8_t *)data, n);
      break;
    default: break;
  }
}

/* gw_tls_feed's callback; stops it once the connection ended. */
static int gw_conn__tls_plain(void *arg, const char *data, size_t n) {
  gw_conn *c = arg;
  gw_conn__on_plain(c, data, n);
  return c->life.state == GW_CONN_CLOSED;
}

static void gw_conn__on_tls(gw_conn *c, const char *data, size_t n) {
  int rc = gw_tls_feed(c->ssl, data, n, c->srv->plain_buf, GW_CONN_READ_BUF,
                       gw_conn__tls_plain, c);
  if (c->life.state == GW_CONN_CLOSED) return;
  gw_buf *out = gw_tls_take_output(c->ssl); /* handshake records, alerts */
  if (out) {
    if (gw_conn__queue_raw(c, out, 0) != 0) rc = -1;
    gw_buf_unref(out);
  }
  if (rc != 0) {
    log_info("tls_failed", "id=%llu state=%d", (unsigned long long)c->id, c->life.state);
    gw_conn_destroy(c, GW_WS_TLS_FAILED);
  }
}

static void gw_conn__on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf) {
  gw_conn *c = stream->data;
  if (n == 0) return;
  if (n < 0) {
    /* EOF or reset. After a close frame from the client that is the end of
     * a clean closing handshake; otherwise an abnormal closure. */
    gw_conn_destroy(c, c->life.close_code ? c->life.close_code : GW_WS_ABNORMAL);
    return;
  }
  c->srv->stats.bytes_in += (uint64_t)n;
  if (c->ssl) gw_conn__on_tls(c, buf->base, (size_t)n);
  else gw_conn__on_plain(c, buf->base, (size_t)n);
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
  if (uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&c->tcp) != 0 ||
      gw_conntab_put(&s->conns, c->id, c) != 0) {
    c->life.state = GW_CONN_CLOSED;
    uv_close((uv_handle_t *)&c->tcp, gw_conn__free);
    return;
  }
  s->n_conns++;
  s->stats.conns_opened++;
  uv_tcp_nodelay(&c->tcp, 1);
  if (s->tls && !(c->ssl = gw_tls_session(s->tls))) {
    gw_conn_destroy(c, GW_WS_ABNORMAL);
    return;
  }
  if (gw_conn__count_peer(c) != 0) return;
  c->req = gw_http_req_new((size_t)s->cfg->max_head, (uint32_t)s->cfg->max_headers);
  if (!c->req || (long)s->n_conns > s->cfg->max_connections) {
    c->srv->stats.handshakes_failed++;
    gw_conn_reject(c, 503);
    return;
  }
  gw_conn__enter(c, GW_CONN_HTTP); /* the handshake deadline, and reading */
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
    gw_conn *c = GW_CONN_OF(n, life.tq);
    assert(c->life.state == GW_CONN_OPEN);
    if (n->since_ms <= dead_at) {
      log_info("conn_timeout", "id=%llu", (unsigned long long)c->id);
      s->stats.ping_timeouts++;
      gw_conn_destroy(c, GW_WS_ABNORMAL);
    } else if (!c->life.pinged) {
      gw_conn__ping(c);
    }
    n = next;
  }
}

static void gw_conn__tick_replies(gw_server *s, uint64_t cutoff) {
  gw_timeq_node *n;
  while ((n = gw_timeq_expired(&s->replies, cutoff))) {
    gw_conn *c = GW_CONN_OF(n, relay.rq);
    char channel[GW_CONN_CHANNEL_MAX];
    gw_relay_io io;
    gw_conn__relay_io(c, &io, channel, sizeof channel);
    gw_relay_timeout(&c->relay, &io);
    assert(n->owner != &s->replies || n->since_ms > cutoff); /* it moved on */
  }
}

/* Connections whose refresh window ended without a refresh: 4401, "sign in
 * again". Each leaves the heap as it starts closing (a later reply cannot
 * put it back: the relay sets expiries only on open connections). */
static void gw_conn__tick_expiries(gw_server *s, uint64_t now) {
  uint32_t *slot;
  while ((slot = gw_expiry_due(&s->expiries, now))) {
    gw_conn *c = GW_CONN_OF(slot, relay.exp_slot);
    gw_expiry_remove(&s->expiries, slot);
    if (c->life.state != GW_CONN_OPEN) continue; /* closing anyway */
    s->stats.expiry_closes++;
    log_info("conn_expired", "id=%llu", (unsigned long long)c->id);
    gw_conn_close(c, CHAN_CLOSE_EXPIRED, GW_RELAY_EXPIRED_REASON);
  }
}

/* Connections whose re-check of application grants is due: each leaves
 * the heap and its relay sends the re-check (the reply sets the next). */
static void gw_conn__tick_rechecks(gw_server *s, uint64_t now) {
  uint32_t *slot;
  while ((slot = gw_expiry_due(&s->rechecks, now))) {
    gw_conn *c = GW_CONN_OF(slot, relay.recheck_slot);
    gw_expiry_remove(&s->rechecks, slot);
    if (c->life.state != GW_CONN_OPEN) continue;
    char channel[GW_CONN_CHANNEL_MAX];
    gw_relay_io io;
    gw_conn__relay_io(c, &io, channel, sizeof channel);
    gw_relay_recheck(&c->relay, &io);
  }
}

int gw_conn_kick(gw_conn *c) {
  if (c->life.state == GW_CONN_CLOSING || c->life.state == GW_CONN_CLOSED) return 0;
  c->srv->stats.kick_closes++;
  log_info("conn_kicked", "id=%llu", (unsigned long long)c->id);
  gw_conn_close(c, CHAN_CLOSE_REVOKED, "access revoked");
  return 1;
}

void gw_conn_tick(gw_server *s, uint64_t now) {
  gw_timeq_node *n;
  gw_conn__tick_expiries(s, now);
  gw_conn__tick_rechecks(s, now);
  if (now > (uint64_t)s->cfg->handshake_timeout) {
    while ((n = gw_timeq_expired(&s->handshakes, now - (uint64_t)s->cfg->handshake_timeout))) {
      s->stats.handshake_timeouts++;
      gw_conn_reject(GW_CONN_OF(n, life.tq), 408);
    }
  }
  if (now > (uint64_t)s->cfg->connect_timeout) {
    while ((n = gw_timeq_expired(&s->connecting, now - (uint64_t)s->cfg->connect_timeout))) {
      gw_conn *c = GW_CONN_OF(n, life.tq);
      log_warn("connect_timeout", "id=%llu", (unsigned long long)c->id);
      c->srv->stats.handshakes_failed++;
      gw_conn_reject(c, 503);
    }
  }
  if (now > (uint64_t)s->cfg->reply_timeout)
    gw_conn__tick_replies(s, now - (uint64_t)s->cfg->reply_timeout);
  if (now > GW_LINGER_MS) {
    while ((n = gw_timeq_expired(&s->closing, now - GW_LINGER_MS))) {
      gw_conn *c = GW_CONN_OF(n, life.tq);
      gw_conn_destroy(c, c->life.close_code ? c->life.close_code : GW_WS_ABNORMAL);
    }
  }
  if (now > (uint64_t)s->cfg->ping_interval) gw_conn__tick_idle(s, now);
}

void gw_conn_fail_connecting(gw_server *s) {
  gw_timeq_node *n;
  while ((n = s->connecting.head)) {
    gw_conn *c = GW_CONN_OF(n, life.tq);
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

void gw_conn_history_lost(gw_server *s, gw_hist_status st) {
  size_t n;
  uint64_t *ids = gw_conn_ids(s, &n);
  for (size_t i = 0; ids && i < n; i++) {
    gw_conn *c = gw_conntab_get(&s->conns, ids[i]);
    if (!c || !c->relay.v2) continue;
    char channel[GW_CONN_CHANNEL_MAX];
    gw_relay_io io;
    gw_conn__relay_io(c, &io, channel, sizeof channel);
    gw_relay_history_lost(&c->relay, &io, st);
  }
  free(ids);
}

void gw_conn_go_away(gw_conn *c) {
  if (c->life.state == GW_CONN_OPEN) gw_conn_close(c, GW_WS_GOING_AWAY, "going away");
  else if (c->life.state == GW_CONN_HTTP || c->life.state == GW_CONN_CONNECTING)
    gw_conn_reject(c, 503);
}

/* Destroying removes table entries (and shifts others), so take the ids
 * first. O(connections), once per process. */
void gw_conn_destroy_all(gw_server *s) {
  size_t n;
  uint64_t *ids = gw_conn_ids(s, &n);
  for (size_t i = 0; ids && i < n; i++) {
    gw_conn *c = gw_conntab_get(&s->conns, ids[i]);
    if (c) gw_conn_destroy(c, GW_WS_GOING_AWAY);
  }
  free(ids);
}
