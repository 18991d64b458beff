/*
 * backoff.c - capped exponential backoff with jitter (see backoff.h).
 *
 * Owns: the doubling, the cap and the draw. Must not: sleep or share state
 * between instances. xorshift32 is not a good generator for anything that
 * matters, but spreading retries only needs values that differ between
 * processes; it costs three shifts and no lock.
 */
#include "backoff.h"

#include <assert.h>
#include <time.h>
#include <unistd.h>

/* Any non-zero constant: xorshift stays at 0 once there. */
#define BACKOFF_SEED_ZERO 0x9e3779b9u

void backoff_init(backoff *b, unsigned min_ms, unsigned max_ms,
                  uint32_t seed) {
  assert(min_ms >= 1 && min_ms <= max_ms);
  b->min_ms = min_ms;
  b->max_ms = max_ms;
  b->base_ms = min_ms;
  b->rng = seed ? seed : BACKOFF_SEED_ZERO;
}

uint32_t backoff_random(backoff *b) {
  assert(b->rng != 0);
  uint32_t x = b->rng;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  b->rng = x;
  return x;
}

unsigned backoff_next(backoff *b) {
  assert(b->base_ms >= b->min_ms && b->base_ms <= b->max_ms);
  unsigned half = b->base_ms / 2;
  unsigned wait = half + backoff_random(b) % (b->base_ms - half + 1);
  b->base_ms = b->base_ms > b->max_ms / 2 ? b->max_ms : b->base_ms * 2;
  return wait;
}

void backoff_reset(backoff *b) { b->base_ms = b->min_ms; }

uint32_t backoff_seed(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint32_t pid = (uint32_t)getpid();
  return (uint32_t)ts.tv_sec ^ (uint32_t)ts.tv_nsec ^ (pid << 16) ^ pid;
}
