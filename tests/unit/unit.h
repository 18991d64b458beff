/*
 * unit.h - the unit-test harness: self-registering tests, plain asserts.
 *
 *   UNIT_TEST(chan_group_rejects_empty) {
 *     UNIT_CHECK(!chan_group_name_valid("", 0));
 *   }
 *
 * Each test file only includes this header; main.c runs every registered
 * test (or those whose name contains argv[1]) and ends with the line
 * "N passed, N failed". A failed check records file:line and the test goes on.
 */
#ifndef UNIT_H
#define UNIT_H

#include <stddef.h>
#include <string.h>

typedef void (*unit_fn)(void);
void unit_register(const char *name, unit_fn fn);
void unit_fail(const char *file, int line, const char *expr);

/* Sends stderr to /dev/null, for a call that reports there by design;
 * returns what unit_stderr_restore needs. Not nestable. */
int unit_stderr_mute(void);
void unit_stderr_restore(int saved);

#define UNIT_TEST(name)                                              \
  static void unit_test_##name(void);                                \
  __attribute__((constructor)) static void unit_reg_##name(void) {  \
    unit_register(#name, unit_test_##name);                          \
  }                                                                  \
  static void unit_test_##name(void)

#define UNIT_CHECK(expr) \
  do { if (!(expr)) unit_fail(__FILE__, __LINE__, #expr); } while (0)
#define UNIT_CHECK_STR(a, b)                                          \
  do {                                                               \
    const char *unit_a_ = (a), *unit_b_ = (b);                       \
    if (!unit_a_ || !unit_b_ || strcmp(unit_a_, unit_b_) != 0)       \
      unit_fail(__FILE__, __LINE__, #a " == " #b);                   \
  } while (0)

#endif
