/*
 * gw_send.c - a connection's send queue (see gw_send.h).
 *
 * Frames wait as (reference, offset) nodes; gw_send_flush_dirty() gathers
 * up to GW_IOV_MAX of them per connection into one writev: uv_try_write
 * first (most writes complete at once), uv_write for what remains. The
 * cost admitted: one 16-byte node malloc per queued frame, which
 * docs/BENCHMARKS.md measures as the largest user-space cost of a fanout.
 */
#include "gw_send.h"

#include <stdlib.h>
#include <string.h>

#include "gw_conn.h"
#include "log.h"

#define GW_IOV_MAX 64

static void gw_send__mark_dirty(gw_conn *c) {
  if (c->dirty) return;
  c->dirty = 1;
  c->dirty_next = c->srv->dirty;
  c->srv->dirty = c;
}

/* Appends bytes that go to the socket as they are. Takes a reference. */
int gw_send_raw(gw_conn *c, gw_buf *b) {
  gw_out *o = malloc(sizeof(*o));
  if (!o) return -1;
  o->next = NULL;
  o->buf = gw_buf_ref(b);
  if (c->out_tail) c->out_tail->next = o; else c->out_head = o;
  c->out_tail = o;
  c->out_bytes += b->len;
  gw_send__mark_dirty(c);
  return 0;
}

/* Appends without any check: for the bytes we owe the client whatever its
 * state (HTTP responses, wslay's control frames). Takes a reference. Under
 * TLS the queue holds ciphertext: the frame is encrypted here, once, in
 * queue order (records must reach the peer in the order they were made). */
int gw_send_owed(gw_conn *c, gw_buf *b) {
  if (!c->ssl) return gw_send_raw(c, b);
  gw_buf *cipher = gw_tls_encrypt(c->ssl, b->data, b->len);
  if (!cipher) return -1;
  int rc = gw_send_raw(c, cipher);
  gw_buf_unref(cipher);
  return rc;
}

int gw_send_copy(gw_conn *c, const void *data, size_t len) {
  gw_buf *b = gw_buf_new(len);
  if (!b) return -1;
  memcpy(b->data, data, len);
  int rc = gw_send_owed(c, b);
  gw_buf_unref(b);
  return rc;
}

/* Drops every queued frame that no write has started on, so that a close
 * frame can follow at once. A frame partly written stays, or the client
 * would see half a frame. */
void gw_send_drop_unsent(gw_conn *c) {
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

void gw_send_frame(gw_conn *c, gw_buf *b) {
  if (c->state != GW_CONN_OPEN) return;
  if (c->out_bytes + b->len > (size_t)c->srv->cfg->max_send_queue) {
    c->srv->stats.slow_closes++;
    log_info("conn_slow", "id=%llu unsent=%zu", (unsigned long long)c->id, c->out_bytes);
    gw_send_drop_unsent(c);
    gw_conn_close(c, 1008, "send queue full");
    return;
  }
  if (gw_send_owed(c, b) != 0) {
    gw_conn_destroy(c, 1011);
    return;
  }
  c->srv->stats.msgs_out++;
}

void gw_send_text(gw_conn *c, int opcode, const char *data, size_t len) {
  gw_buf *b = gw_buf_frame(opcode, data, len);
  if (!b) {
    gw_conn_close(c, 1011, "out of memory");
    return;
  }
  gw_send_frame(c, b);
  gw_buf_unref(b);
}

/* Forgets n bytes the kernel has taken. */
static void gw_send__consume(gw_conn *c, size_t n) {
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

static size_t gw_send__gather(gw_conn *c, uv_buf_t *iov, size_t *bytes) {
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

static void gw_send__on_write(uv_write_t *req, int status) {
  gw_conn *c = req->data;
  free(req);
  c->writing = 0;
  if (c->state == GW_CONN_CLOSED) return;
  if (status < 0) {
    gw_conn_destroy(c, 1006);
    return;
  }
  gw_send__consume(c, c->wr_bytes);
  c->wr_bytes = 0;
  c->wr_nodes = 0;
  gw_send_flush(c);
}

void gw_send_flush(gw_conn *c) {
  if (c->writing || c->state == GW_CONN_CLOSED) return;
  uv_buf_t iov[GW_IOV_MAX];
  size_t bytes, n = gw_send__gather(c, iov, &bytes);
  if (n > 0) {
    /* Most writes complete at once; try that before paying for a request. */
    int r = uv_try_write((uv_stream_t *)&c->tcp, iov, (unsigned)n);
    if (r < 0 && r != UV_EAGAIN) {
      gw_conn_destroy(c, 1006);
      return;
    }
    if (r > 0) gw_send__consume(c, (size_t)r);
    n = gw_send__gather(c, iov, &bytes);
  }
  if (n == 0) {
    gw_conn_maybe_finish(c);
    return;
  }
  uv_write_t *req = malloc(sizeof(*req));
  if (!req) {
    gw_conn_destroy(c, 1011);
    return;
  }
  req->data = c;
  if (uv_write(req, (uv_stream_t *)&c->tcp, iov, (unsigned)n, gw_send__on_write) != 0) {
    free(req);
    gw_conn_destroy(c, 1006);
    return;
  }
  c->writing = 1;
  c->wr_bytes = bytes;
  c->wr_nodes = (uint32_t)n;
}

void gw_send_flush_dirty(gw_server *s) {
  while (s->dirty) {
    gw_conn *c = s->dirty;
    s->dirty = c->dirty_next;
    c->dirty = 0;
    c->dirty_next = NULL;
    gw_send_flush(c);
  }
}

void gw_send_free(gw_conn *c) {
  for (gw_out *o = c->out_head, *n; o; o = n) {
    n = o->next;
    gw_buf_unref(o->buf);
    free(o);
  }
  c->out_head = c->out_tail = NULL;
}
