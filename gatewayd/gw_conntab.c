/*
 * gw_conntab.c - connections by id: linear probing with backward-shift
 * deletion (no tombstones, so lookups stay short under churn). Grows at 50%
 * load; 16 bytes a slot, so ~32 bytes per open connection.
 */
#include "gw_conntab.h"

#include <assert.h>
#include <stdlib.h>

static size_t gw_conntab__hash(uint64_t id, size_t cap) {
  /* Ids are sequential; a multiplicative hash spreads them. */
  return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

int gw_conntab_init(gw_conntab *t) {
  t->cap = 1024;
  t->used = 0;
  t->slots = calloc(t->cap, sizeof(*t->slots));
  return t->slots ? 0 : -1;
}

void gw_conntab_free(gw_conntab *t) {
  free(t->slots);
  t->slots = NULL;
  t->cap = t->used = 0;
}

static void gw_conntab__insert(gw_conntab_slot *slots, size_t cap, uint64_t id,
                               void *conn) {
  size_t i = gw_conntab__hash(id, cap);
  while (slots[i].id != 0 && slots[i].id != id) i = (i + 1) & (cap - 1);
  slots[i].id = id;
  slots[i].conn = conn;
}

static int gw_conntab__grow(gw_conntab *t) {
  size_t cap = t->cap * 2;
  gw_conntab_slot *slots = calloc(cap, sizeof(*slots));
  if (!slots) return -1;
  for (size_t i = 0; i < t->cap; i++)
    if (t->slots[i].id) gw_conntab__insert(slots, cap, t->slots[i].id, t->slots[i].conn);
  free(t->slots);
  t->slots = slots;
  t->cap = cap;
  return 0;
}

int gw_conntab_put(gw_conntab *t, uint64_t id, void *conn) {
  assert(id != 0 && conn); /* 0 marks a free slot; ids are never reused */
  if ((t->used + 1) * 2 > t->cap && gw_conntab__grow(t) != 0) return -1;
  gw_conntab__insert(t->slots, t->cap, id, conn);
  t->used++;
  return 0;
}

void *gw_conntab_get(const gw_conntab *t, uint64_t id) {
  if (id == 0) return NULL;
  for (size_t i = gw_conntab__hash(id, t->cap);; i = (i + 1) & (t->cap - 1)) {
    if (t->slots[i].id == id) return t->slots[i].conn;
    if (t->slots[i].id == 0) return NULL;
  }
}

void gw_conntab_del(gw_conntab *t, uint64_t id) {
  size_t mask = t->cap - 1, i = gw_conntab__hash(id, t->cap);
  while (t->slots[i].id != id) {
    if (t->slots[i].id == 0) return;
    i = (i + 1) & mask;
  }
  t->used--;
  /* Backward shift: pull later entries of the same run into the hole when
   * their home slot is at or before it. */
  for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
    if (t->slots[j].id == 0) break;
    size_t home = gw_conntab__hash(t->slots[j].id, t->cap);
    if (((j - home) & mask) >= ((j - i) & mask)) {
      t->slots[i] = t->slots[j];
      i = j;
    }
  }
  t->slots[i].id = 0;
  t->slots[i].conn = NULL;
}
