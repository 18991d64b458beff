/*
 * test_mq_confirm.c - publisher confirms: matching the broker's ack and
 * nack frames (single, multiple, out of order) to the publishes waiting for
 * them, the refusal callbacks, and a lost channel failing every one left.
 */
#include <string.h>

#include "mq_confirm.h"
#include "unit.h"

typedef struct refusals {
  uint64_t cookies[64];
  size_t n;
} refusals;

static void note(uint64_t cookie, void *arg) {
  refusals *r = arg;
  if (r->n < 64) r->cookies[r->n] = cookie;
  r->n++;
}

static amqp_frame_t confirm_frame(int nack, uint64_t tag, int multiple,
                                  amqp_basic_ack_t *ack, amqp_basic_nack_t *nk) {
  amqp_frame_t f;
  memset(&f, 0, sizeof f);
  f.frame_type = AMQP_FRAME_METHOD;
  f.channel = 1;
  if (nack) {
    nk->delivery_tag = tag;
    nk->multiple = (amqp_boolean_t)multiple;
    nk->requeue = 0;
    f.payload.method.id = AMQP_BASIC_NACK_METHOD;
    f.payload.method.decoded = nk;
  } else {
    ack->delivery_tag = tag;
    ack->multiple = (amqp_boolean_t)multiple;
    f.payload.method.id = AMQP_BASIC_ACK_METHOD;
    f.payload.method.decoded = ack;
  }
  return f;
}

static void answer(mq_confirms *q, refusals *r, int nack, uint64_t tag, int multiple) {
  amqp_basic_ack_t a;
  amqp_basic_nack_t n;
  amqp_frame_t f = confirm_frame(nack, tag, multiple, &a, &n);
  UNIT_CHECK(mq_confirms_apply(q, &f, note, r) == 1);
}

static void push_n(mq_confirms *q, uint64_t first_cookie, int n) {
  for (int i = 0; i < n; i++) UNIT_CHECK(mq_confirms_push(q, first_cookie + (uint64_t)i) == 0);
}

UNIT_TEST(mq_confirm_single_acks_in_and_out_of_order) {
  mq_confirms q = {0};
  refusals r = {0};
  mq_confirms_init(&q);
  push_n(&q, 100, 3); /* tags 1, 2, 3 */
  UNIT_CHECK(mq_confirms_pending(&q) == 3);
  answer(&q, &r, 0, 2, 0);
  UNIT_CHECK(mq_confirms_pending(&q) == 2);
  answer(&q, &r, 0, 2, 0); /* a repeat changes nothing */
  UNIT_CHECK(mq_confirms_pending(&q) == 2);
  answer(&q, &r, 0, 1, 0);
  answer(&q, &r, 0, 3, 0);
  UNIT_CHECK(mq_confirms_pending(&q) == 0);
  UNIT_CHECK(q.len == 0);
  UNIT_CHECK(r.n == 0);
  mq_confirms_free(&q);
}

UNIT_TEST(mq_confirm_multiple_ack_settles_up_to_its_tag) {
  mq_confirms q = {0};
  refusals r = {0};
  mq_confirms_init(&q);
  push_n(&q, 0, 1000); /* grows the ring past its first size */
  answer(&q, &r, 0, 600, 1);
  UNIT_CHECK(mq_confirms_pending(&q) == 400);
  answer(&q, &r, 0, 5, 1); /* already settled: ignored */
  UNIT_CHECK(mq_confirms_pending(&q) == 400);
  answer(&q, &r, 0, 5000, 1); /* past the last: settles what there is */
  UNIT_CHECK(mq_confirms_pending(&q) == 0);
  UNIT_CHECK(r.n == 0);
  mq_confirms_free(&q);
}

UNIT_TEST(mq_confirm_nack_names_each_refused_publish_once) {
  mq_confirms q = {0};
  refusals r = {0};
  mq_confirms_init(&q);
  push_n(&q, 10, 5); /* tags 1-5, cookies 10-14 */
  answer(&q, &r, 0, 2, 0); /* tag 2 acked */
  answer(&q, &r, 1, 4, 1); /* 1, 3, 4 refused; 2 was already acked */
  UNIT_CHECK(r.n == 3);
  UNIT_CHECK(r.cookies[0] == 10 && r.cookies[1] == 12 && r.cookies[2] == 13);
  answer(&q, &r, 1, 4, 1); /* a repeat refuses nothing more */
  UNIT_CHECK(r.n == 3);
  UNIT_CHECK(mq_confirms_pending(&q) == 1);
  mq_confirms_free(&q);
}

UNIT_TEST(mq_confirm_lost_channel_fails_the_rest_and_restarts_tags) {
  mq_confirms q = {0};
  refusals r = {0};
  mq_confirms_init(&q);
  push_n(&q, 1, 4);
  answer(&q, &r, 0, 3, 0);
  mq_confirms_fail_all(&q, note, &r);
  UNIT_CHECK(r.n == 3); /* 1, 2, 4: not the one acked */
  UNIT_CHECK(r.cookies[0] == 1 && r.cookies[1] == 2 && r.cookies[2] == 4);
  UNIT_CHECK(mq_confirms_pending(&q) == 0);
  UNIT_CHECK(q.next_tag == 1); /* a new channel numbers from 1 again */
  push_n(&q, 50, 1);
  answer(&q, &r, 0, 1, 0);
  UNIT_CHECK(mq_confirms_pending(&q) == 0);
  mq_confirms_free(&q);
}

UNIT_TEST(mq_confirm_other_frames_are_left_to_the_caller) {
  mq_confirms q = {0};
  refusals r = {0};
  mq_confirms_init(&q);
  amqp_frame_t f;
  memset(&f, 0, sizeof f);
  f.frame_type = AMQP_FRAME_METHOD;
  f.payload.method.id = AMQP_CHANNEL_CLOSE_METHOD;
  UNIT_CHECK(mq_confirms_apply(&q, &f, note, &r) == 0);
  UNIT_CHECK(mq_frame_ends_channel(&f));
  f.payload.method.id = AMQP_CONNECTION_BLOCKED_METHOD;
  UNIT_CHECK(!mq_frame_ends_channel(&f));
  f.frame_type = AMQP_FRAME_HEARTBEAT;
  UNIT_CHECK(mq_confirms_apply(&q, &f, note, &r) == 0);
  mq_confirms_free(&q);
}

/* A batch: several parties' messages in one publish, one tag. A nack of it
 * refuses each of them; an ack settles them all; a single ack of a later
 * tag finds its entry past the batch's (the binary search). */
UNIT_TEST(mq_confirm_batch_settles_every_cookie_of_its_tag) {
  mq_confirms q = {0};
  refusals r = {0};
  mq_confirms_init(&q);
  UNIT_CHECK(mq_confirms_push(&q, 10) == 0); /* tag 1: 10, 11, 12 */
  UNIT_CHECK(mq_confirms_push_more(&q, 11) == 0);
  UNIT_CHECK(mq_confirms_push_more(&q, 12) == 0);
  UNIT_CHECK(mq_confirms_push(&q, 20) == 0); /* tag 2: alone */
  UNIT_CHECK(mq_confirms_push(&q, 30) == 0); /* tag 3: 30, 31 */
  UNIT_CHECK(mq_confirms_push_more(&q, 31) == 0);
  UNIT_CHECK(mq_confirms_pending(&q) == 6);
  answer(&q, &r, 1, 3, 0); /* the last batch refused alone */
  UNIT_CHECK(r.n == 2 && r.cookies[0] == 30 && r.cookies[1] == 31);
  UNIT_CHECK(mq_confirms_pending(&q) == 4);
  answer(&q, &r, 0, 2, 0);
  UNIT_CHECK(mq_confirms_pending(&q) == 3);
  answer(&q, &r, 1, 1, 0); /* the first batch refused: each of its three */
  UNIT_CHECK(r.n == 5 && r.cookies[2] == 10 && r.cookies[3] == 11 && r.cookies[4] == 12);
  UNIT_CHECK(mq_confirms_pending(&q) == 0);
  /* Tags go on after the batches: the next publish is tag 4. */
  UNIT_CHECK(mq_confirms_push(&q, 40) == 0);
  UNIT_CHECK(mq_confirms_push_more(&q, 41) == 0);
  answer(&q, &r, 0, 4, 1);
  UNIT_CHECK(mq_confirms_pending(&q) == 0 && r.n == 5);
  mq_confirms_free(&q);
}

/* A lost channel refuses each cookie of a batch still unanswered, once. */
UNIT_TEST(mq_confirm_batch_lost_refuses_each) {
  mq_confirms q = {0};
  refusals r = {0};
  mq_confirms_init(&q);
  push_n(&q, 1, 300); /* past the first ring size: the ring grows with batches in it */
  for (uint64_t c = 1000; c < 1100; c++) UNIT_CHECK(mq_confirms_push_more(&q, c) == 0);
  answer(&q, &r, 0, 299, 1);
  UNIT_CHECK(mq_confirms_pending(&q) == 101);
  mq_confirms_fail_all(&q, note, &r);
  UNIT_CHECK(r.n == 101 && r.cookies[0] == 300 && r.cookies[1] == 1000);
  UNIT_CHECK(mq_confirms_pending(&q) == 0);
  mq_confirms_free(&q);
}

/* A batch reserves its entries first: the pushes after cannot fail or grow. */
UNIT_TEST(mq_confirm_reserve_makes_room_for_a_batch) {
  mq_confirms q = {0};
  mq_confirms_init(&q);
  push_n(&q, 1, 10);
  UNIT_CHECK(mq_confirms_reserve(&q, 1000) == 0);
  size_t cap = q.cap;
  UNIT_CHECK(cap >= 1010);
  UNIT_CHECK(mq_confirms_push(&q, 100) == 0);
  for (uint64_t c = 101; c < 1100; c++) UNIT_CHECK(mq_confirms_push_more(&q, c) == 0);
  UNIT_CHECK(q.cap == cap && mq_confirms_pending(&q) == 1010);
  UNIT_CHECK(mq_confirms_reserve(&q, 0) == 0 && q.cap == cap);
  mq_confirms_free(&q);
}
