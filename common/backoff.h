/*
 * backoff.h - capped exponential backoff with jitter, for whatever retries
 * something that failed: a broker connect (gatewayd's AMQP thread, workerd),
 * a crashed child (gw_supervisor).
 *
 * The wait after a failure is drawn from [base/2, base]; base starts at
 * min_ms and doubles after each wait, up to max_ms; a success resets it.
 * The jitter keeps many clients that failed together (a broker restart, a
 * host reboot) from retrying in the same millisecond.
 *
 * Owns: that rule and its random numbers: a xorshift32 state per instance,
 * so an instance is safe on any one thread without locks and never touches
 * rand()'s hidden global state. Must not: sleep, read clocks or know what
 * is being retried. backoff_seed() is the one impure helper (clock + pid).
 */
#ifndef BACKOFF_H
#define BACKOFF_H

#include <stdint.h>

typedef struct backoff {
  unsigned min_ms, max_ms; /* the first base, and the cap */
  unsigned base_ms;        /* the next wait is drawn from [base/2, base] */
  uint32_t rng;            /* xorshift32 state; never 0 */
} backoff;

/* Starts at min_ms (at least 1, at most max_ms). seed: any value,
 * backoff_seed() for one that differs between processes and starts. */
void backoff_init(backoff *b, unsigned min_ms, unsigned max_ms,
                  uint32_t seed);

/* The wait before the next attempt, in ms; then doubles the base (capped). */
unsigned backoff_next(backoff *b);

/* The last attempt worked (or lasted long enough to count as healthy): the
 * next failure waits from min_ms again. */
void backoff_reset(backoff *b);

/* A number from the instance's generator, for other spreading (e.g. which
 * broker of a list to try first). */
uint32_t backoff_random(backoff *b);

/* A seed from the clock and the pid: processes started in the same second
 * still differ. */
uint32_t backoff_seed(void);

#endif
