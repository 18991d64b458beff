/*
 * wk_cache.h - the application's subscribe answers, remembered per (user,
 * channel, id): allowed or refused, each until its TTL passes.
 *
 * Bounded: at most max entries; a new entry past the bound evicts the
 * least recently used one. A hash table with chaining over a power-of-two
 * bucket array, and an LRU list; both O(1) per operation.
 *
 * Owns: the entries and their expiry. Must not: do I/O, or be used from
 * two threads (the consumer's thread alone uses it).
 */
#ifndef WK_CACHE_H
#define WK_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct wk_cache wk_cache;

/* max 0: caching off (every lookup misses, inserts are dropped). ttl_ms for
 * allowed entries, deny_ttl_ms for refused ones. NULL when out of memory. */
wk_cache *wk_cache_new(size_t max, uint64_t ttl_ms, uint64_t deny_ttl_ms);
void wk_cache_free(wk_cache *c);

/* 1 allowed, 0 refused, -1 not known (absent or expired: an expired entry
 * is removed). channel: 1..64 characters. */
int wk_cache_get(wk_cache *c, uint64_t user, const char *channel, uint64_t id,
                 uint64_t now_ms);
/* Records an answer (replacing any). */
void wk_cache_put(wk_cache *c, uint64_t user, const char *channel, uint64_t id,
                  int allowed, uint64_t now_ms);
/* Drops the entry, if any (a re-check found the credential refused: the
 * next subscription to it asks again). */
void wk_cache_forget(wk_cache *c, uint64_t user, const char *channel, uint64_t id);
size_t wk_cache_size(const wk_cache *c);

#endif
