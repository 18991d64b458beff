/*
 * gw_group.c - the group table (see gw_group.h). Separate chaining with
 * FNV-1a; the table doubles at load 1. Membership is a doubly linked list
 * per group, so joining and leaving are O(1) and a fanout walks only the
 * group's own members. Costs: one malloc per membership (32 bytes) and
 * pointer chasing during fanout, cheap next to the write syscall each
 * member needs anyway.
 *
 * Lingering: a group whose last member left stays (bound) in a FIFO for
 * linger_ms, so a client that leaves and re-joins (a page reload, a
 * subscription that swaps a group out and back) costs the broker no
 * unbind/bind pair. Cost: a lingering group's events still reach this
 * gateway and are dropped at the fanout (it has no members), and the
 * broker holds up to max_lingering extra bindings.
 */
#include "gw_group.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

uint32_t gw_group_hash(const char *s, size_t len) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++) {
    h ^= (uint8_t)s[i];
    h *= 16777619u;
  }
  return h;
}

int gw_group_table_init(gw_group_table *t, gw_group_cb on_first,
                        gw_group_cb on_last, void *arg) {
  memset(t, 0, sizeof(*t));
  t->cap = 256;
  t->buckets = calloc(t->cap, sizeof(*t->buckets));
  t->on_first = on_first;
  t->on_last = on_last;
  t->cb_arg = arg;
  return t->buckets ? 0 : -1;
}

void gw_group_table_free(gw_group_table *t) {
  for (size_t i = 0; i < t->cap; i++) {
    for (gw_group *g = t->buckets[i], *gn; g; g = gn) {
      gn = g->hnext;
      for (gw_member *m = g->head, *mn; m; m = mn) {
        mn = m->next;
        free(m);
      }
      gw_group_set_zprev(g, 0, NULL);
      gw_group_set_zprev(g, 1, NULL);
      free(g);
    }
  }
  free(t->buckets);
  memset(t, 0, sizeof(*t));
}

gw_group *gw_group_find(const gw_group_table *t, const char *name, size_t len) {
  uint32_t h = gw_group_hash(name, len);
  for (gw_group *g = t->buckets[h & (t->cap - 1)]; g; g = g->hnext)
    if (g->hash == h && strncmp(g->name, name, len) == 0 && g->name[len] == '\0')
      return g;
  return NULL;
}

static void gw_group__grow(gw_group_table *t) {
  size_t cap = t->cap * 2;
  gw_group **b = calloc(cap, sizeof(*b));
  if (!b) return; /* stay at the old size: slower chains, still correct */
  for (size_t i = 0; i < t->cap; i++) {
    for (gw_group *g = t->buckets[i], *gn; g; g = gn) {
      gn = g->hnext;
      g->hnext = b[g->hash & (cap - 1)];
      b[g->hash & (cap - 1)] = g;
    }
  }
  free(t->buckets);
  t->buckets = b;
  t->cap = cap;
}

static gw_group *gw_group__create(gw_group_table *t, const char *name, size_t len) {
  gw_group *g = calloc(1, sizeof(*g) + len + 1);
  if (!g) return NULL;
  memcpy(g->name, name, len);
  g->hash = gw_group_hash(name, len);
  if (t->n_groups + 1 > t->cap) gw_group__grow(t);
  g->hnext = t->buckets[g->hash & (t->cap - 1)];
  t->buckets[g->hash & (t->cap - 1)] = g;
  t->n_groups++;
  return g;
}

static void gw_group__linger_unlink(gw_group_table *t, gw_group *g) {
  assert(g->n_members == 0 && t->n_lingering > 0);
  if (g->lprev) g->lprev->lnext = g->lnext; else t->linger_head = g->lnext;
  if (g->lnext) g->lnext->lprev = g->lprev; else t->linger_tail = g->lprev;
  g->lprev = g->lnext = NULL;
  t->n_lingering--;
}

static void gw_group__linger_push(gw_group_table *t, gw_group *g, uint64_t now_ms) {
  assert(g->n_members == 0 && !g->lprev && !g->lnext && t->linger_head != g);
  g->idle_since_ms = now_ms;
  g->lprev = t->linger_tail;
  if (t->linger_tail) t->linger_tail->lnext = g; else t->linger_head = g;
  t->linger_tail = g;
  t->n_lingering++;
}

static void gw_group__destroy(gw_group_table *t, gw_group *g) {
  assert(g->n_members == 0 && !g->lprev && !g->lnext && t->linger_head != g);
  gw_group **p = &t->buckets[g->hash & (t->cap - 1)];
  while (*p != g) p = &(*p)->hnext;
  *p = g->hnext;
  t->n_groups--;
  gw_group_set_zprev(g, 0, NULL);
  gw_group_set_zprev(g, 1, NULL);
  free(g);
}

void gw_group_set_zprev(gw_group *g, int v, gw_buf *b) {
  assert(v == 0 || v == 1);
  if (b) gw_buf_ref(b);
  gw_buf_unref(g->zprev[v]);
  g->zprev[v] = b;
}

gw_member *gw_group_join(gw_group_table *t, const char *name, void *conn) {
  size_t len = strlen(name);
  gw_member *m = malloc(sizeof(*m));
  if (!m) return NULL;
  gw_group *g = gw_group_find(t, name, len);
  int created = 0;
  if (g && g->n_members == 0) { /* lingering: still bound, nothing to ask */
    gw_group__linger_unlink(t, g);
    t->lingering_rejoins++;
  } else if (!g) {
    g = gw_group__create(t, name, len);
    if (!g) {
      free(m);
      return NULL;
    }
    created = 1;
  }
  m->group = g;
  m->conn = conn;
  m->prev = NULL;
  m->next = g->head;
  if (g->head) g->head->prev = m;
  g->head = m;
  g->n_members++;
  t->n_members++;
  if (created && t->on_first) t->on_first(g->name, t->cb_arg);
  return m;
}

void gw_group_set_linger(gw_group_table *t, uint64_t linger_ms, size_t max_lingering) {
  t->linger_ms = max_lingering ? linger_ms : 0;
  t->max_lingering = linger_ms ? max_lingering : 0;
}

/* The group goes: unbound (on_last), then freed. */
static void gw_group__drop(gw_group_table *t, gw_group *g) {
  if (t->on_last) t->on_last(g->name, t->cb_arg);
  gw_group__destroy(t, g);
}

void gw_group_expire(gw_group_table *t, uint64_t now_ms) {
  while (t->linger_head && now_ms - t->linger_head->idle_since_ms >= t->linger_ms) {
    gw_group *g = t->linger_head;
    gw_group__linger_unlink(t, g);
    gw_group__drop(t, g);
  }
}

void gw_group_leave(gw_group_table *t, gw_member *m, uint64_t now_ms) {
  gw_group *g = m->group;
  assert(g->n_members > 0 && t->n_members > 0);
  assert(m->prev ? m->prev->next == m : g->head == m);
  if (m->prev) m->prev->next = m->next; else g->head = m->next;
  if (m->next) m->next->prev = m->prev;
  g->n_members--;
  t->n_members--;
  free(m);
  if (g->n_members > 0) return;
  if (t->linger_ms == 0) {
    gw_group__drop(t, g);
    return;
  }
  gw_group__linger_push(t, g, now_ms);
  if (t->n_lingering > t->max_lingering) { /* the oldest goes first */
    gw_group *old = t->linger_head;
    gw_group__linger_unlink(t, old);
    gw_group__drop(t, old);
  }
}

void gw_group_foreach(const gw_group_table *t, gw_group_cb fn, void *arg) {
  for (size_t i = 0; i < t->cap; i++)
    for (gw_group *g = t->buckets[i]; g; g = g->hnext) fn(g->name, arg);
}
