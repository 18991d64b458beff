/*
 * wsb_hist.h - a fixed-size latency histogram for the load client.
 *
 * Owns: counting values (microseconds) into log-linear buckets: exact below
 * 64, then 64 buckets per power of two (under 1.6 % error), so p50/p99 need
 * no stored samples and the histograms of several client processes merge
 * by adding bucket counts. The exact maximum is kept beside the buckets.
 */
#ifndef WSB_HIST_H
#define WSB_HIST_H

#include <stdint.h>

#define WSB_HIST_SUB 64
#define WSB_HIST_BUCKETS (WSB_HIST_SUB * 42) /* up to 2^41 us: days */

typedef struct wsb_hist {
  uint64_t count;
  uint64_t max;
  uint64_t sum;
  uint64_t b[WSB_HIST_BUCKETS];
} wsb_hist;

void wsb_hist_add(wsb_hist *h, uint64_t v);
void wsb_hist_merge(wsb_hist *into, const wsb_hist *from);
/* The value at quantile q (0..1): the upper edge of its bucket, never above
 * the exact maximum. 0 for an empty histogram. */
uint64_t wsb_hist_quantile(const wsb_hist *h, double q);

#endif
