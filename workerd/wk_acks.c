/*
 * wk_acks.c - the ack bookkeeping of wk_acks.h.
 */
#include "wk_acks.h"

#include <string.h>

void wk_acks_init(wk_acks *a, unsigned prefetch) {
  memset(a, 0, sizeof *a);
  a->max_held = prefetch / 2 ? prefetch / 2 : 1;
}

void wk_acks_reset(wk_acks *a) {
  a->batch_tag = 0;
  a->batch_n = 0;
  a->pending = 0;
}

int wk_acks_flush(wk_acks *a, wk_ack_op *op) {
  if (a->batch_n == 0) return 0;
  op->tag = a->batch_tag;
  op->multiple = 1;
  a->batch_n = 0;
  return 1;
}

int wk_acks_done(wk_acks *a, uint64_t tag, int more_buffered, wk_ack_op *op) {
  if (a->pending > 0) {
    /* The batch was flushed when the first job started. */
    op->tag = tag;
    op->multiple = 0;
    return 1;
  }
  a->batch_tag = tag;
  a->batch_n++;
  if (a->batch_n >= a->max_held || !more_buffered) return wk_acks_flush(a, op);
  return 0;
}

int wk_acks_job_start(wk_acks *a, wk_ack_op *op) {
  a->pending++;
  return wk_acks_flush(a, op);
}

void wk_acks_job_end(wk_acks *a, uint64_t tag, wk_ack_op *op) {
  if (a->pending > 0) a->pending--;
  op->tag = tag;
  op->multiple = 0;
}
