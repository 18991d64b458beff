/*
 * gw_timeq.h - a deadline queue for many items that share one timeout.
 *
 * Every item in a queue waits the same time (the handshake deadline, the
 * connect timeout, the ping interval), so pushing at the tail keeps the queue
 * sorted by start time: push, remove and "pop what has expired" are all O(1)
 * per item, and one periodic timer serves every connection instead of a
 * uv_timer_t (~150 bytes and a heap insert) per connection. The cost is
 * precision: a deadline fires up to one tick late.
 *
 * Owns: the links. Must not: own the items (they embed a gw_timeq_node).
 * A node is in at most one queue at a time and knows which.
 */
#ifndef GW_TIMEQ_H
#define GW_TIMEQ_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gw_timeq gw_timeq;

typedef struct gw_timeq_node {
  struct gw_timeq_node *prev, *next;
  gw_timeq *owner;   /* NULL when in no queue */
  uint64_t since_ms; /* when the wait started (loop time) */
} gw_timeq_node;

struct gw_timeq {
  gw_timeq_node *head, *tail;
};

static inline void gw_timeq_remove(gw_timeq_node *n) {
  gw_timeq *q = n->owner;
  if (!q) return;
  assert(n->prev ? n->prev->next == n : q->head == n);
  assert(n->next ? n->next->prev == n : q->tail == n);
  if (n->prev) n->prev->next = n->next; else q->head = n->next;
  if (n->next) n->next->prev = n->prev; else q->tail = n->prev;
  n->prev = n->next = NULL;
  n->owner = NULL;
}

/* Moves n to the tail of q (out of whatever queue held it). */
static inline void gw_timeq_push(gw_timeq *q, gw_timeq_node *n, uint64_t now) {
  gw_timeq_remove(n);
  assert(!q->tail || q->tail->since_ms <= now); /* one timeout per queue */
  n->since_ms = now;
  n->prev = q->tail;
  n->next = NULL;
  if (q->tail) q->tail->next = n; else q->head = n;
  q->tail = n;
  n->owner = q;
}

/* The oldest item if it started at or before `cutoff`, else NULL. Items
 * are pushed in time order, so the queue stays sorted (asserted on push). */
static inline gw_timeq_node *gw_timeq_expired(const gw_timeq *q, uint64_t cutoff) {
  return (q->head && q->head->since_ms <= cutoff) ? q->head : NULL;
}

#endif
