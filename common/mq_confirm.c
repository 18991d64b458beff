/*
 * mq_confirm.c - the ring of unanswered publishes (see mq_confirm.h).
 *
 * Tags grow by one per publish, so the ring is sorted by tag and the entry
 * for tag t sits at index t - front.tag: a single ack is O(1), a multiple
 * ack O(tags it settles). The ring doubles when full; its size is bounded
 * by the caller's window (chan_emit) or backlog (gatewayd), not here.
 */
#include "mq_confirm.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mq_conn.h" /* mq_rpc_check */

void mq_confirms_init(mq_confirms *q) {
  q->head = q->len = q->unanswered = 0;
  q->next_tag = 1;
}

static mq_confirm__entry *mq_confirms__at(const mq_confirms *q, size_t i) {
  assert(i < q->len);
  return &q->ring[(q->head + i) % q->cap];
}

static int mq_confirms__grow_to(mq_confirms *q, size_t need) {
  size_t cap = q->cap ? q->cap * 2 : 256;
  while (cap < need) cap *= 2;
  mq_confirm__entry *r = malloc(cap * sizeof(*r));
  if (!r) return -1;
  for (size_t i = 0; i < q->len; i++) r[i] = *mq_confirms__at(q, i);
  free(q->ring);
  q->ring = r;
  q->cap = cap;
  q->head = 0;
  return 0;
}

static int mq_confirms__add(mq_confirms *q, uint64_t tag, uint64_t cookie) {
  if (q->len == q->cap && mq_confirms__grow_to(q, q->len + 1) != 0) return -1;
  q->len++;
  mq_confirm__entry *e = mq_confirms__at(q, q->len - 1);
  e->tag = tag;
  e->cookie = cookie;
  e->done = 0;
  q->unanswered++;
  return 0;
}

int mq_confirms_reserve(mq_confirms *q, size_t n) {
  return q->len + n <= q->cap ? 0 : mq_confirms__grow_to(q, q->len + n);
}

int mq_confirms_push(mq_confirms *q, uint64_t cookie) {
  if (mq_confirms__add(q, q->next_tag, cookie) != 0) return -1;
  q->next_tag++;
  return 0;
}

int mq_confirms_push_more(mq_confirms *q, uint64_t cookie) {
  assert(q->next_tag > 1); /* a publish was pushed on this channel */
  return mq_confirms__add(q, q->next_tag - 1, cookie);
}

size_t mq_confirms_pending(const mq_confirms *q) { return q->unanswered; }

/* The first entry with tag >= t (entries are in tag order, a batch's
 * several under one tag): a binary search, so a single ack deep in a long
 * ring costs O(log n). */
static size_t mq_confirms__find(const mq_confirms *q, uint64_t t) {
  size_t lo = 0, hi = q->len;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (mq_confirms__at(q, mid)->tag < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

static void mq_confirms__settle(mq_confirms *q, uint64_t tag, int multiple,
                                int nack, mq_confirm_cb refused, void *arg) {
  if (q->len == 0) return;
  if (tag < mq_confirms__at(q, 0)->tag) return; /* already settled */
  for (size_t i = multiple ? 0 : mq_confirms__find(q, tag); i < q->len; i++) {
    mq_confirm__entry *e = mq_confirms__at(q, i);
    if (e->tag > tag) break;
    assert(multiple || e->tag == tag); /* tags are consecutive */
    if (e->done) continue;
    if (nack && refused) refused(e->cookie, arg);
    e->done = 1;
    assert(q->unanswered > 0);
    q->unanswered--;
  }
  while (q->len && mq_confirms__at(q, 0)->done) {
    q->head = (q->head + 1) % q->cap;
    q->len--;
  }
}

int mq_confirms_apply(mq_confirms *q, const amqp_frame_t *f,
                      mq_confirm_cb refused, void *arg) {
  if (f->frame_type != AMQP_FRAME_METHOD) return 0;
  if (f->payload.method.id == AMQP_BASIC_ACK_METHOD) {
    const amqp_basic_ack_t *a = f->payload.method.decoded;
    mq_confirms__settle(q, a->delivery_tag, a->multiple, 0, refused, arg);
    return 1;
  }
  if (f->payload.method.id == AMQP_BASIC_NACK_METHOD) {
    const amqp_basic_nack_t *n = f->payload.method.decoded;
    mq_confirms__settle(q, n->delivery_tag, n->multiple, 1, refused, arg);
    return 1;
  }
  return 0;
}

void mq_confirms_fail_all(mq_confirms *q, mq_confirm_cb refused, void *arg) {
  for (size_t i = 0; i < q->len; i++) {
    mq_confirm__entry *e = mq_confirms__at(q, i);
    if (!e->done && refused) refused(e->cookie, arg);
  }
  mq_confirms_init(q);
}

void mq_confirms_free(mq_confirms *q) {
  free(q->ring);
  memset(q, 0, sizeof(*q));
}

int mq_frame_ends_channel(const amqp_frame_t *f) {
  if (f->frame_type != AMQP_FRAME_METHOD) return 0;
  amqp_method_number_t id = f->payload.method.id;
  return id == AMQP_CHANNEL_CLOSE_METHOD ||
         id == AMQP_CONNECTION_CLOSE_METHOD || id == AMQP_BASIC_CANCEL_METHOD;
}

int mq_frame_close_reason(const amqp_frame_t *f, const char *what, char *err,
                          size_t errlen) {
  if (!mq_frame_ends_channel(f)) return 0;
  if (f->payload.method.id == AMQP_BASIC_CANCEL_METHOD) {
    if (err && errlen)
      snprintf(err, errlen, "%s: consumer cancelled by the broker", what);
    return 1;
  }
  /* mq_rpc_check words a close the same way as one answering an RPC. */
  amqp_rpc_reply_t r = {AMQP_RESPONSE_SERVER_EXCEPTION, f->payload.method, 0};
  mq_rpc_check(r, what, err, errlen);
  return 1;
}
