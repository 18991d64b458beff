/*
 * gw_expiry.c - the expiry heap (see gw_expiry.h). An array-backed binary
 * heap whose entries tell their owners where they are; the array doubles
 * when full and halves when a quarter full (at least 64 entries), so a
 * spike of expiring connections does not hold its memory for ever.
 */
#include "gw_expiry.h"

#include <assert.h>
#include <stdlib.h>

#define GW_EXPIRY_MIN_CAP 64

static void gw_expiry__place(gw_expiry *h, size_t i, gw_expiry_entry e) {
  h->v[i] = e;
  *e.slot = (uint32_t)(i + 1);
}

/* Moves entry i up while it is earlier than its parent. */
static void gw_expiry__up(gw_expiry *h, size_t i) {
  gw_expiry_entry e = h->v[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (h->v[parent].at_ms <= e.at_ms) break;
    gw_expiry__place(h, i, h->v[parent]);
    i = parent;
  }
  gw_expiry__place(h, i, e);
  assert(i == 0 || h->v[(i - 1) / 2].at_ms <= h->v[i].at_ms);
}

/* Moves entry i down while a child is earlier. */
static void gw_expiry__down(gw_expiry *h, size_t i) {
  gw_expiry_entry e = h->v[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= h->n) break;
    if (c + 1 < h->n && h->v[c + 1].at_ms < h->v[c].at_ms) c++;
    if (e.at_ms <= h->v[c].at_ms) break;
    gw_expiry__place(h, i, h->v[c]);
    i = c;
  }
  gw_expiry__place(h, i, e);
  assert(2 * i + 1 >= h->n || h->v[i].at_ms <= h->v[2 * i + 1].at_ms);
  assert(2 * i + 2 >= h->n || h->v[i].at_ms <= h->v[2 * i + 2].at_ms);
}

static void gw_expiry__resize(gw_expiry *h, size_t cap) {
  gw_expiry_entry *v = realloc(h->v, cap * sizeof(*v));
  if (!v) return; /* shrinking only: keep the larger array */
  h->v = v;
  h->cap = cap;
}

int gw_expiry_set(gw_expiry *h, uint32_t *slot, uint64_t at_ms) {
  if (*slot) {
    size_t i = *slot - 1;
    assert(i < h->n && h->v[i].slot == slot);
    uint64_t was = h->v[i].at_ms;
    h->v[i].at_ms = at_ms;
    if (at_ms < was) gw_expiry__up(h, i);
    else gw_expiry__down(h, i);
    return 0;
  }
  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : GW_EXPIRY_MIN_CAP;
    if (cap > UINT32_MAX - 1) return -1; /* slots are 32 bits */
    gw_expiry_entry *v = realloc(h->v, cap * sizeof(*v));
    if (!v) return -1;
    h->v = v;
    h->cap = cap;
  }
  h->v[h->n] = (gw_expiry_entry){at_ms, slot};
  gw_expiry__up(h, h->n++);
  return 0;
}

void gw_expiry_remove(gw_expiry *h, uint32_t *slot) {
  if (!*slot) return;
  size_t i = *slot - 1;
  assert(i < h->n && h->v[i].slot == slot);
  *slot = 0;
  gw_expiry_entry last = h->v[--h->n];
  if (i < h->n) {
    /* The last entry fills the hole, then goes whichever way it must. */
    uint64_t was = h->v[i].at_ms;
    gw_expiry__place(h, i, last);
    if (last.at_ms < was) gw_expiry__up(h, i);
    else gw_expiry__down(h, i);
  }
  if (h->cap > GW_EXPIRY_MIN_CAP && h->n < h->cap / 4) gw_expiry__resize(h, h->cap / 2);
}

int gw_expiry_check(const gw_expiry *h) {
  if (h->n > h->cap) return 0;
  for (size_t i = 0; i < h->n; i++) {
    if (*h->v[i].slot != i + 1) return 0;
    if (i > 0 && h->v[(i - 1) / 2].at_ms > h->v[i].at_ms) return 0;
  }
  return 1;
}

void gw_expiry_free(gw_expiry *h) {
  free(h->v);
  h->v = NULL;
  h->n = h->cap = 0;
}
