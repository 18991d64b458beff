/*
 * wsb_hist.c - log-linear latency histogram (see wsb_hist.h).
 */
#include "wsb_hist.h"

static unsigned wsb_hist__index(uint64_t v) {
  if (v < WSB_HIST_SUB) return (unsigned)v;
  unsigned msb = 63u - (unsigned)__builtin_clzll(v);
  unsigned shift = msb - 6u; /* v >> shift lands in [64, 128) */
  unsigned idx = (shift + 1u) * WSB_HIST_SUB + (unsigned)((v >> shift) - WSB_HIST_SUB);
  return idx < WSB_HIST_BUCKETS ? idx : WSB_HIST_BUCKETS - 1;
}

/* The largest value that lands in bucket idx. */
static uint64_t wsb_hist__upper(unsigned idx) {
  if (idx < WSB_HIST_SUB) return idx;
  unsigned shift = idx / WSB_HIST_SUB - 1u;
  uint64_t mant = idx % WSB_HIST_SUB + WSB_HIST_SUB;
  return ((mant + 1) << shift) - 1;
}

void wsb_hist_add(wsb_hist *h, uint64_t v) {
  h->b[wsb_hist__index(v)]++;
  h->count++;
  h->sum += v;
  if (v > h->max) h->max = v;
}

void wsb_hist_merge(wsb_hist *into, const wsb_hist *from) {
  for (unsigned i = 0; i < WSB_HIST_BUCKETS; i++) into->b[i] += from->b[i];
  into->count += from->count;
  into->sum += from->sum;
  if (from->max > into->max) into->max = from->max;
}

uint64_t wsb_hist_quantile(const wsb_hist *h, double q) {
  if (h->count == 0) return 0;
  uint64_t rank = (uint64_t)(q * (double)h->count);
  if (rank >= h->count) rank = h->count - 1;
  uint64_t seen = 0;
  for (unsigned i = 0; i < WSB_HIST_BUCKETS; i++) {
    seen += h->b[i];
    if (seen > rank) {
      uint64_t v = wsb_hist__upper(i);
      return v < h->max ? v : h->max;
    }
  }
  return h->max;
}
