/*
 * prom.c - Prometheus text exposition (see prom.h).
 *
 * Owns: the exact text of each line (the buffer is strbuf's). Must not:
 * allocate anything but through the buffer, or block.
 */
#include "prom.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const uint64_t prom_hist_bounds_us[PROM_HIST_BOUNDS] = {
    100,    250,    500,     1000,    2500,    5000,    10000,   25000,
    50000,  100000, 250000,  500000,  1000000, 2500000, 5000000, 10000000};

void prom_family(strbuf *b, const char *name, const char *type,
                 const char *help) {
  strbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void prom_sample(strbuf *b, const char *name, const char *labels,
                 uint64_t value) {
  if (labels && labels[0])
    strbuf_printf(b, "%s{%s} %" PRIu64 "\n", name, labels, value);
  else
    strbuf_printf(b, "%s %" PRIu64 "\n", name, value);
}

size_t prom_us_to_seconds(uint64_t us, char *out, size_t outlen) {
  uint64_t whole = us / 1000000u, frac = us % 1000000u;
  int n;
  if (frac == 0) {
    n = snprintf(out, outlen, "%" PRIu64, whole);
  } else {
    n = snprintf(out, outlen, "%" PRIu64 ".%06" PRIu64, whole, frac);
    /* Trailing zeros of the fraction say nothing: 0.002500 -> 0.0025. */
    while (n > 0 && (size_t)n < outlen && out[n - 1] == '0') out[--n] = '\0';
  }
  return n < 0 ? 0 : (size_t)n;
}

void prom_hist_observe(prom_hist *h, uint64_t us) {
  size_t i = 0;
  /* 16 compares at most; a binary search would save nothing measurable. */
  while (i < PROM_HIST_BOUNDS && us > prom_hist_bounds_us[i]) i++;
  atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

void prom_hist_write(strbuf *b, const char *name, const char *labels,
                     const prom_hist *h) {
  const char *sep = labels && labels[0] ? "," : "";
  const char *lab = labels ? labels : "";
  char le[32];
  uint64_t total = 0;
  for (size_t i = 0; i <= PROM_HIST_BOUNDS; i++) {
    total += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
    if (i < PROM_HIST_BOUNDS)
      prom_us_to_seconds(prom_hist_bounds_us[i], le, sizeof(le));
    else
      snprintf(le, sizeof(le), "+Inf");
    strbuf_printf(b, "%s_bucket{%s%sle=\"%s\"} %" PRIu64 "\n", name, lab, sep,
                le, total);
  }
  char sum[32];
  prom_us_to_seconds(atomic_load_explicit(&h->sum_us, memory_order_relaxed),
                     sum, sizeof(sum));
  const char *open = labels && labels[0] ? "{" : "";
  const char *close = labels && labels[0] ? "}" : "";
  strbuf_printf(b, "%s_sum%s%s%s %s\n", name, open, lab, close, sum);
  /* _count is the +Inf bucket: read once, so the two always agree. */
  strbuf_printf(b, "%s_count%s%s%s %" PRIu64 "\n", name, open, lab, close,
              total);
}
