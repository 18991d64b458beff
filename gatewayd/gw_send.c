/*
 * gw_send.c - a connection's send queue (see gw_send.h).
 *
 * The cost admitted: one 16-byte node malloc per queued frame, which
 * docs/BENCHMARKS.md measures as the largest user-space cost of a fanout.
 */
#include "gw_send.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

int gw_send_push(gw_send *q, gw_buf *b) {
  gw_send__node *o = malloc(sizeof(*o));
  if (!o) return -1;
  o->next = NULL;
  o->buf = gw_buf_ref(b);
  if (q->tail) q->tail->next = o; else q->head = o;
  q->tail = o;
  q->bytes += b->len;
  q->tail_room = 0; /* b may be shared: never written into */
  return 0;
}

int gw_send_push_copy(gw_send *q, const void *data, size_t len) {
  if (len == 0) return 0;
  if (len <= q->tail_room) {
    gw_buf *b = q->tail->buf;
    assert(b->refs == 1); /* our own copy: the room is ours to fill */
    memcpy(b->data + b->len, data, len);
    b->len += (uint32_t)len;
    q->tail_room -= (uint32_t)len;
    q->bytes += len;
    return 0;
  }
  size_t cap = len < GW_SEND_COPY_ROOM ? GW_SEND_COPY_ROOM : len;
  gw_buf *b = gw_buf_new(cap);
  if (!b) return -1;
  memcpy(b->data, data, len);
  b->len = (uint32_t)len;
  int rc = gw_send_push(q, b);
  gw_buf_unref(b);
  if (rc == 0) q->tail_room = (uint32_t)(cap - len);
  return rc;
}

size_t gw_send_gather(const gw_send *q, uv_buf_t *iov, size_t *bytes) {
  size_t n = 0;
  *bytes = 0;
  uint32_t off = q->off;
  for (gw_send__node *o = q->head; o && n < GW_SEND_IOV_MAX; o = o->next) {
    iov[n] = uv_buf_init((char *)o->buf->data + off, o->buf->len - off);
    *bytes += iov[n].len;
    n++;
    off = 0;
  }
  return n;
}

void gw_send_consume(gw_send *q, size_t n) {
  assert(n <= q->bytes);
  q->bytes -= n;
  while (n > 0 && q->head) {
    gw_send__node *o = q->head;
    size_t left = o->buf->len - q->off;
    if (n < left) {
      q->off += (uint32_t)n;
      return;
    }
    n -= left;
    q->off = 0;
    q->head = o->next;
    if (!q->head) {
      q->tail = NULL;
      q->tail_room = 0;
    }
    gw_buf_unref(o->buf);
    free(o);
  }
}

void gw_send_begin_write(gw_send *q, uint32_t nodes, size_t bytes) {
  assert(!q->writing && nodes > 0 && bytes <= q->bytes);
  q->writing = 1;
  q->wr_nodes = nodes;
  q->wr_bytes = bytes;
}

void gw_send_end_write(gw_send *q) {
  assert(q->writing);
  gw_send_consume(q, q->wr_bytes);
  q->writing = 0;
  q->wr_bytes = 0;
  q->wr_nodes = 0;
}

void gw_send_drop_unsent(gw_send *q) {
  uint32_t keep = q->writing ? q->wr_nodes : (q->off ? 1 : 0);
  gw_send__node **link = &q->head, *last = NULL;
  for (uint32_t i = 0; i < keep && *link; i++) {
    last = *link;
    link = &(*link)->next;
  }
  for (gw_send__node *o = *link, *n; o; o = n) {
    n = o->next;
    q->bytes -= o->buf->len;
    gw_buf_unref(o->buf);
    free(o);
  }
  *link = NULL;
  q->tail = last;
  q->tail_room = 0;
  /* What is left: the kept nodes less what of the first is already out. */
  size_t left = 0;
  for (gw_send__node *o = q->head; o; o = o->next) left += o->buf->len;
  q->bytes = left - (q->head ? q->off : 0);
}

void gw_send_free(gw_send *q) {
  for (gw_send__node *o = q->head, *n; o; o = n) {
    n = o->next;
    gw_buf_unref(o->buf);
    free(o);
  }
  q->head = q->tail = NULL;
  q->bytes = 0;
  q->tail_room = 0;
}
