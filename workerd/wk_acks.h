/*
 * wk_acks.h - when the consumer acks, and how: the bookkeeping of the ack
 * discipline, without AMQP (unit-tested).
 *
 * Rules: a delivery is acked only after its reply was handed to the
 * socket. Deliveries answered at once are acked in batches (basic.ack
 * multiple=true up to the last one) while more are already buffered, never
 * holding more than half the prefetch window. A delivery that waits for the
 * application (a job) finishes out of order, so while any job is pending
 * every ack names one delivery (multiple=false): a multiple ack would also
 * cover the pending job's earlier tag. A job's start first flushes the
 * batch, so that no batched tag waits behind a slow application.
 *
 * Owns: that state. Must not: talk to the broker (wk_consumer does what
 * the returned operations say).
 */
#ifndef WK_ACKS_H
#define WK_ACKS_H

#include <stdint.h>

typedef struct wk_acks {
  unsigned max_held; /* half the prefetch window, at least 1 */
  uint64_t batch_tag; /* last delivery of the batch held back */
  unsigned batch_n;   /* deliveries held back, up to batch_tag */
  unsigned pending;   /* jobs started, not yet finished */
} wk_acks;

/* One basic.ack to send. */
typedef struct wk_ack_op {
  uint64_t tag;
  int multiple;
} wk_ack_op;

void wk_acks_init(wk_acks *a, unsigned prefetch);
/* A fresh connection: every tag before it is void. */
void wk_acks_reset(wk_acks *a);
/* A delivery answered at once; more_buffered: more deliveries are already
 * read. 1 with *op to send now, or 0 (held back in the batch). */
int wk_acks_done(wk_acks *a, uint64_t tag, int more_buffered, wk_ack_op *op);
/* A job starts: 1 with the batch to flush first, or 0. */
int wk_acks_job_start(wk_acks *a, wk_ack_op *op);
/* A job's reply is out: the ack to send (always one delivery). */
void wk_acks_job_end(wk_acks *a, uint64_t tag, wk_ack_op *op);
/* Idle or stopping: 1 with the batch to flush, or 0. */
int wk_acks_flush(wk_acks *a, wk_ack_op *op);

#endif
