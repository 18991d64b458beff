/*
 * main.c - runs the registered unit tests. Usage: unit-tests [FILTER]
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "unit.h"

#define UNIT_MAX 1024

static struct {
  const char *name;
  unit_fn fn;
} unit_tests[UNIT_MAX];
static size_t unit_count;
static int unit_failed_checks;

void unit_register(const char *name, unit_fn fn) {
  if (unit_count == UNIT_MAX) {
    fprintf(stderr, "unit: more than %d tests\n", UNIT_MAX);
    exit(2);
  }
  unit_tests[unit_count].name = name;
  unit_tests[unit_count].fn = fn;
  unit_count++;
}

void unit_fail(const char *file, int line, const char *expr) {
  /* stdout: a test may have muted stderr (unit_stderr_mute) */
  printf("  FAILED %s:%d: %s\n", file, line, expr);
  unit_failed_checks++;
}

int unit_stderr_mute(void) {
  fflush(stderr);
  int saved = dup(2), null = open("/dev/null", O_WRONLY);
  if (saved < 0 || null < 0 || dup2(null, 2) < 0) abort();
  close(null);
  return saved;
}

void unit_stderr_restore(int saved) {
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
}

int main(int argc, char **argv) {
  const char *filter = argc > 1 ? argv[1] : NULL;
  int passed = 0, failed = 0;
  for (size_t i = 0; i < unit_count; i++) {
    if (filter && !strstr(unit_tests[i].name, filter)) continue;
    int before = unit_failed_checks;
    unit_tests[i].fn();
    if (unit_failed_checks == before) {
      passed++;
    } else {
      failed++;
      fprintf(stderr, "FAIL %s\n", unit_tests[i].name);
    }
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed || (passed == 0) ? 1 : 0;
}
