/*
 * fuzz.h - what the libFuzzer targets of tests/fuzz share: the entry point's
 * prototype and an invariant check.
 *
 * A target states the properties its code must keep on any input (a round
 * trip gives back what went in, every reply text is JSON, ...). A broken
 * property must stop the run like a sanitizer report does, so that
 * libFuzzer saves the input as a crash: FUZZ_CHECK aborts.
 */
#ifndef FUZZ_H
#define FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                   \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, \
              #cond);                                                      \
      abort();                                                             \
    }                                                                      \
  } while (0)

#endif
