/*
 * awx_sample.h - a realistic event sample for the compression benchmarks:
 * AWX job events (the JSON AWX sends its browsers for each line of a job's
 * output), generated, not downloaded.
 *
 * Owns: the shape and the mix of the events (task starts, command output,
 * debug output, package items, skips, failures), their stdout lines with
 * ANSI colour codes as AWX shows them, and their sizes (0.5-4 KB, spread
 * evenly). Must not: keep state between calls or read files: event k of a
 * seed is the same bytes (but for the stamp) in bench-emit, which publishes
 * it, and in bench-deflate, which compresses it, on any machine.
 *
 * Every event starts with {"seq":K,"t":NS, ...: the load client (wsbench)
 * checks loss and order by seq and latency by t, as with the padded events.
 */
#ifndef AWX_SAMPLE_H
#define AWX_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

/* Room any event of the sample fits in. */
#define AWX_EVENT_MAX 8192
/* The seed the benchmarks use unless told otherwise. */
#define AWX_SEED 16

/* Writes event number seq (from 1) of the sample `seed` into buf, stamped
 * t_ns (CLOCK_REALTIME ns). Returns its length (no NUL counted; one is
 * written), or 0 when cap is too small (AWX_EVENT_MAX always suffices). */
size_t awx_event(char *buf, size_t cap, uint64_t seed, uint64_t seq, uint64_t t_ns);

#endif
