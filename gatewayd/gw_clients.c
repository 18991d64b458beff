/*
 * gw_clients.c - connections per client address (see gw_clients.h).
 * Chained hash of small entries, freed when their count drops to zero, so
 * the table holds only addresses with a live connection. The table does not
 * shrink: after a burst from many addresses its buckets stay allocated
 * (8 bytes each), which is cheaper than rehashing back and forth. An entry
 * costs one malloc per new address, so the table is at most one entry per
 * connection.
 */
#include "gw_clients.h"

#include <assert.h>
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

int gw_clients_limited(const gw_clients_limits *lim) {
  return lim->total > 0 || lim->handshakes > 0;
}

static gw_clients_refusal gw_clients__check(const gw_client *e,
                                            const gw_clients_limits *lim) {
  if (lim->total && e->open + e->handshaking >= lim->total) return GW_CLIENTS_TOTAL;
  if (lim->handshakes && e->handshaking >= lim->handshakes) return GW_CLIENTS_HANDSHAKES;
  return GW_CLIENTS_OK;
}

static gw_client *gw_clients__insert(gw_clients *t, const char *addr, uint32_t h) {
  size_t len = strlen(addr);
  gw_client *e = malloc(sizeof(*e) + len + 1);
  if (!e) return NULL;
  memcpy(e->addr, addr, len + 1);
  e->hash = h;
  e->open = e->handshaking = 0;
  if (t->n + 1 > t->cap) gw_clients__grow(t);
  e->next = t->buckets[h & (t->cap - 1)];
  t->buckets[h & (t->cap - 1)] = e;
  t->n++;
  return e;
}

gw_client *gw_clients_acquire(gw_clients *t, const char *addr,
                              const gw_clients_limits *lim,
                              gw_clients_refusal *why) {
  assert(gw_clients_limited(lim));
  uint32_t h = gw_clients__hash(addr);
  gw_client *e = t->buckets[h & (t->cap - 1)];
  while (e && !(e->hash == h && strcmp(e->addr, addr) == 0)) e = e->next;
  if (e && (*why = gw_clients__check(e, lim)) != GW_CLIENTS_OK) return NULL;
  if (!e && !(e = gw_clients__insert(t, addr, h))) {
    *why = GW_CLIENTS_NOMEM;
    return NULL;
  }
  *why = GW_CLIENTS_OK;
  e->handshaking++;
  return e;
}

void gw_clients_opened(gw_client *e) {
  if (!e) return;
  assert(e->handshaking > 0);
  e->handshaking--;
  e->open++;
}

void gw_clients_release(gw_clients *t, gw_client *e, int opened) {
  if (!e) return;
  if (opened) {
    assert(e->open > 0);
    e->open--;
  } else {
    assert(e->handshaking > 0);
    e->handshaking--;
  }
  if (e->open + e->handshaking > 0) return;
  gw_client **p = &t->buckets[e->hash & (t->cap - 1)];
  while (*p != e) p = &(*p)->next;
  *p = e->next;
  assert(t->n > 0);
  t->n--;
  free(e);
}

const char *gw_clients_refusal_name(gw_clients_refusal why) {
  switch (why) {
    case GW_CLIENTS_TOTAL: return "max_per_client";
    case GW_CLIENTS_HANDSHAKES: return "max_handshakes_per_client";
    case GW_CLIENTS_NOMEM: return "no_memory";
    default: return "none";
  }
}
