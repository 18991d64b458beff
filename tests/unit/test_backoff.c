/*
 * test_backoff.c - capped exponential backoff with jitter: each wait within
 * [base/2, base], the doubling and its cap, reset, the same seed giving the
 * same waits, different seeds spreading them, and a zero seed still
 * working.
 */
#include "backoff.h"
#include "unit.h"

UNIT_TEST(backoff_waits_double_up_to_the_cap) {
  backoff b;
  backoff_init(&b, 100, 5000, 12345);
  unsigned base = 100;
  for (int i = 0; i < 20; i++) {
    unsigned w = backoff_next(&b);
    UNIT_CHECK(w >= base / 2 && w <= base);
    base = base * 2 > 5000 ? 5000 : base * 2;
  }
  UNIT_CHECK(b.base_ms == 5000);
}

UNIT_TEST(backoff_reset_starts_again) {
  backoff b;
  backoff_init(&b, 200, 10000, 7);
  for (int i = 0; i < 10; i++) backoff_next(&b);
  backoff_reset(&b);
  unsigned w = backoff_next(&b);
  UNIT_CHECK(w >= 100 && w <= 200);
}

UNIT_TEST(backoff_cap_not_a_power_of_two_of_min) {
  backoff b;
  backoff_init(&b, 300, 1000, 1);
  backoff_next(&b); /* 300 */
  backoff_next(&b); /* 600 */
  UNIT_CHECK(b.base_ms == 1000);
  unsigned w = backoff_next(&b);
  UNIT_CHECK(w >= 500 && w <= 1000 && b.base_ms == 1000);
  backoff_init(&b, 1, 1, 1); /* degenerate but valid: always 0 or 1 */
  UNIT_CHECK(backoff_next(&b) <= 1 && backoff_next(&b) <= 1);
}

UNIT_TEST(backoff_same_seed_same_waits) {
  backoff a, b;
  backoff_init(&a, 100, 60000, 42);
  backoff_init(&b, 100, 60000, 42);
  for (int i = 0; i < 16; i++) UNIT_CHECK(backoff_next(&a) == backoff_next(&b));
}

UNIT_TEST(backoff_jitter_spreads) {
  /* 64 clients failing together: their first waits must not all agree. */
  unsigned first[64];
  int distinct = 0;
  for (uint32_t s = 0; s < 64; s++) {
    backoff b;
    backoff_init(&b, 1000, 1000, s + 1);
    first[s] = backoff_next(&b);
    int seen = 0;
    for (uint32_t k = 0; k < s; k++) seen |= first[k] == first[s];
    distinct += !seen;
  }
  UNIT_CHECK(distinct > 32);
}

UNIT_TEST(backoff_zero_seed_and_random) {
  backoff b;
  backoff_init(&b, 100, 1000, 0);
  UNIT_CHECK(b.rng != 0);
  uint32_t x = backoff_random(&b), y = backoff_random(&b);
  UNIT_CHECK(x != 0 && y != 0 && x != y);
  UNIT_CHECK(backoff_seed() != 0 || backoff_seed() != 0);
}
