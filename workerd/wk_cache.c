/*
 * wk_cache.c - the grant cache (wk_cache.h): chained hash + LRU list.
 */
#include "wk_cache.h"

#include <stdlib.h>
#include <string.h>

#define WK_CACHE_CHANNEL_MAX 64

typedef struct wk_cache_entry {
  struct wk_cache_entry *hnext;       /* bucket chain */
  struct wk_cache_entry *prev, *next; /* LRU: head is the most recent */
  uint64_t user, id, expires_ms;
  int allowed;
  char channel[WK_CACHE_CHANNEL_MAX + 1];
} wk_cache_entry;

struct wk_cache {
  wk_cache_entry **buckets;
  size_t mask, n, max;
  wk_cache_entry *head, *tail;
  uint64_t ttl_ms, deny_ttl_ms;
};

wk_cache *wk_cache_new(size_t max, uint64_t ttl_ms, uint64_t deny_ttl_ms) {
  wk_cache *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  size_t nb = 16;
  while (nb < max && nb < ((size_t)1 << 30)) nb <<= 1;
  c->buckets = calloc(nb, sizeof *c->buckets);
  if (!c->buckets) {
    free(c);
    return NULL;
  }
  c->mask = nb - 1;
  c->max = max;
  c->ttl_ms = ttl_ms;
  c->deny_ttl_ms = deny_ttl_ms;
  return c;
}

void wk_cache_free(wk_cache *c) {
  if (!c) return;
  wk_cache_entry *e = c->head;
  while (e) {
    wk_cache_entry *next = e->next;
    free(e);
    e = next;
  }
  free(c->buckets);
  free(c);
}

size_t wk_cache_size(const wk_cache *c) { return c ? c->n : 0; }

/* FNV-1a over the key. */
static size_t wk_cache__hash(uint64_t user, const char *channel, uint64_t id) {
  uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < 8; i++) h = (h ^ ((user >> (8 * i)) & 0xff)) * 1099511628211ull;
  for (int i = 0; i < 8; i++) h = (h ^ ((id >> (8 * i)) & 0xff)) * 1099511628211ull;
  for (const char *p = channel; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
  return (size_t)(h ^ (h >> 32));
}

static wk_cache_entry **wk_cache__slot(wk_cache *c, uint64_t user,
                                      const char *channel, uint64_t id) {
  wk_cache_entry **pp = &c->buckets[wk_cache__hash(user, channel, id) & c->mask];
  for (; *pp; pp = &(*pp)->hnext) {
    wk_cache_entry *e = *pp;
    if (e->user == user && e->id == id && strcmp(e->channel, channel) == 0)
      return pp;
  }
  return pp;
}

static void wk_cache__lru_unlink(wk_cache *c, wk_cache_entry *e) {
  if (e->prev) e->prev->next = e->next;
  else c->head = e->next;
  if (e->next) e->next->prev = e->prev;
  else c->tail = e->prev;
  e->prev = e->next = NULL;
}

static void wk_cache__lru_push(wk_cache *c, wk_cache_entry *e) {
  e->prev = NULL;
  e->next = c->head;
  if (c->head) c->head->prev = e;
  c->head = e;
  if (!c->tail) c->tail = e;
}

/* Unlinks *pp (whose entry is e) from both and frees it. */
static void wk_cache__remove(wk_cache *c, wk_cache_entry **pp) {
  wk_cache_entry *e = *pp;
  *pp = e->hnext;
  wk_cache__lru_unlink(c, e);
  free(e);
  c->n--;
}

int wk_cache_get(wk_cache *c, uint64_t user, const char *channel, uint64_t id,
                 uint64_t now_ms) {
  if (!c || c->max == 0) return -1;
  wk_cache_entry **pp = wk_cache__slot(c, user, channel, id);
  wk_cache_entry *e = *pp;
  if (!e) return -1;
  if (now_ms >= e->expires_ms) {
    wk_cache__remove(c, pp);
    return -1;
  }
  wk_cache__lru_unlink(c, e);
  wk_cache__lru_push(c, e);
  return e->allowed;
}

void wk_cache_forget(wk_cache *c, uint64_t user, const char *channel, uint64_t id) {
  if (!c || c->max == 0) return;
  wk_cache_entry **pp = wk_cache__slot(c, user, channel, id);
  if (*pp) wk_cache__remove(c, pp);
}

void wk_cache_put(wk_cache *c, uint64_t user, const char *channel, uint64_t id,
                  int allowed, uint64_t now_ms) {
  if (!c || c->max == 0 || strlen(channel) > WK_CACHE_CHANNEL_MAX) return;
  uint64_t ttl = allowed ? c->ttl_ms : c->deny_ttl_ms;
  if (ttl == 0) return;
  wk_cache_entry **pp = wk_cache__slot(c, user, channel, id);
  wk_cache_entry *e = *pp;
  if (e) {
    wk_cache__lru_unlink(c, e);
  } else {
    if (c->n >= c->max) {
      /* Evict the least recently used; find its slot by its key. */
      wk_cache_entry *old = c->tail;
      wk_cache__remove(c, wk_cache__slot(c, old->user, old->channel, old->id));
      pp = wk_cache__slot(c, user, channel, id);
    }
    e = calloc(1, sizeof *e);
    if (!e) return;
    e->user = user;
    e->id = id;
    strcpy(e->channel, channel);
    *pp = e;
    c->n++;
  }
  e->allowed = allowed ? 1 : 0;
  e->expires_ms = now_ms + ttl;
  wk_cache__lru_push(c, e);
}
