/*
 * gw_clients.c - connections per client address (see gw_clients.h).
 * Chained hash of small entries, freed when their count drops to zero, so
 * the table holds only addresses with a live connection. The table does not
 * shrink: after a burst from many addresses its buckets stay allocated
 * (8 bytes each), which is cheaper than rehashing back and forth.
 */
#include "gw_clients.h"

#include <stdlib.h>
#include <string.h>

static uint32_t gw_clients__hash(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++) {
    h ^= (uint8_t)*s;
    h *= 16777619u;
  }
  return h;
}

int gw_clients_init(gw_clients *t) {
  t->cap = 1024;
  t->n = 0;
  t->buckets = calloc(t->cap, sizeof(*t->buckets));
  return t->buckets ? 0 : -1;
}

void gw_clients_free(gw_clients *t) {
  for (size_t i = 0; i < t->cap; i++) {
    for (gw_client *e = t->buckets[i], *n; e; e = n) {
      n = e->next;
      free(e);
    }
  }
  free(t->buckets);
  t->buckets = NULL;
  t->cap = t->n = 0;
}

static void gw_clients__grow(gw_clients *t) {
  size_t cap = t->cap * 2;
  gw_client **b = calloc(cap, sizeof(*b));
  if (!b) return; /* longer chains, still correct */
  for (size_t i = 0; i < t->cap; i++) {
    for (gw_client *e = t->buckets[i], *n; e; e = n) {
      n = e->next;
      e->next = b[e->hash & (cap - 1)];
      b[e->hash & (cap - 1)] = e;
    }
  }
  free(t->buckets);
  t->buckets = b;
  t->cap = cap;
}

gw_client *gw_clients_acquire(gw_clients *t, const char *addr, uint32_t limit) {
  uint32_t h = gw_clients__hash(addr);
  gw_client *e = t->buckets[h & (t->cap - 1)];
  while (e && !(e->hash == h && strcmp(e->addr, addr) == 0)) e = e->next;
  if (e) {
    if (e->count >= limit) return NULL;
    e->count++;
    return e;
  }
  if (limit == 0) return NULL;
  size_t len = strlen(addr);
  e = malloc(sizeof(*e) + len + 1);
  if (!e) return NULL;
  memcpy(e->addr, addr, len + 1);
  e->hash = h;
  e->count = 1;
  if (t->n + 1 > t->cap) gw_clients__grow(t);
  e->next = t->buckets[h & (t->cap - 1)];
  t->buckets[h & (t->cap - 1)] = e;
  t->n++;
  return e;
}

void gw_clients_release(gw_clients *t, gw_client *e) {
  if (!e || --e->count > 0) return;
  gw_client **p = &t->buckets[e->hash & (t->cap - 1)];
  while (*p != e) p = &(*p)->next;
  *p = e->next;
  t->n--;
  free(e);
}
