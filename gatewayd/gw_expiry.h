/*
 * gw_expiry.h - when connections' access ends: a binary min-heap of
 * (deadline, slot), one entry per connection whose credential expires.
 *
 * Credentials end at times of their own (a JWT's exp, later an
 * application's "expires"), so the deadline queues of gw_timeq (one
 * timeout per queue) do not fit. A uv_timer_t per connection would cost
 * ~150 bytes each, with or without an expiry. The heap costs a connection
 * without an expiry nothing but its slot number (4 bytes, in padding of
 * gw_relay), and one with an expiry 16 bytes in the heap's array (up to
 * twice that while the array has room to grow). The 100 ms tick pops what
 * is due: O(log n) per push, update, remove and pop.
 *
 * The slot: each entry points at a uint32_t the owner embeds, which holds
 * the entry's index + 1 (0: not in the heap). The heap keeps it current as
 * entries move, so the owner can update or remove its entry in O(log n),
 * and finds itself from the slot's address (container_of).
 *
 * Invariants (asserted on every move; gw_expiry_check walks them all, for
 * the unit tests): every entry's deadline is >= its parent's, and every
 * entry's slot holds its index + 1.
 *
 * Owns: the array. Must not: own the items, or know what a connection is.
 */
#ifndef GW_EXPIRY_H
#define GW_EXPIRY_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw_expiry_entry {
  uint64_t at_ms;  /* deadline (loop time) */
  uint32_t *slot;  /* the owner's: index + 1 */
} gw_expiry_entry;

typedef struct gw_expiry {
  gw_expiry_entry *v;
  size_t n, cap;
} gw_expiry;

/* Puts the slot's entry at at_ms: inserted when *slot is 0, moved when it
 * is in the heap already. 0, or -1 when out of memory (nothing changed). */
int gw_expiry_set(gw_expiry *h, uint32_t *slot, uint64_t at_ms);

/* Takes the slot's entry out (nothing when *slot is 0). */
void gw_expiry_remove(gw_expiry *h, uint32_t *slot);

/* The slot of the earliest entry due at or before now, or NULL. The caller
 * removes it (or sets a later deadline) before asking again. */
static inline uint32_t *gw_expiry_due(const gw_expiry *h, uint64_t now) {
  return h->n && h->v[0].at_ms <= now ? h->v[0].slot : NULL;
}

/* The deadline of the slot's entry (its slot must be in the heap). */
static inline uint64_t gw_expiry_at(const gw_expiry *h, const uint32_t *slot) {
  return h->v[*slot - 1].at_ms;
}

/* 1 when every invariant holds (O(n): tests and debugging). */
int gw_expiry_check(const gw_expiry *h);

void gw_expiry_free(gw_expiry *h);

#endif
