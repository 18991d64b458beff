/*
 * bench-deflate - zlib against libdeflate for permessage-deflate as the
 * gateway uses it: every message compressed alone (server_no_context_takeover),
 * once, on the AWX job event sample (awx_sample.h).
 *
 *   bench-deflate [--events N] [--seed S] [--reps R] [--out DIR]
 *
 * Codecs: zlib raw deflate at levels 1 and 6, deflateReset then one
 * deflate(Z_SYNC_FLUSH) per message and the trailing 00 00 ff ff removed
 * (what gatewayd/gw_deflate.c does); libdeflate at levels 1 and 6, one
 * libdeflate_deflate_compress per message (a whole stream: its last block
 * has BFINAL set). For each: CPU per event (the best of R passes over the
 * N events, and the median pass), the same with the caches cold before each
 * message (a gateway sending tens of events a second compresses each after
 * other work has evicted the compressor's tables: 8 MiB written between
 * messages, only the compression timed, over the first 500 events), bytes
 * out and the ratio, and a check that zlib inflates every message back (a
 * fresh inflater, 00 00 ff ff appended).
 *
 * With --out, the messages as they would go on the wire, for
 * bench/deflate_decode.py to feed to the clients' decoders: DIR/plain.bin
 * (the events), DIR/<codec>.bin, and for libdeflate two forms: as
 * libdeflate made it ("-bare"), and with the empty stored block RFC 7692
 * 7.2.1 asks for appended and its 00 00 ff ff removed (one 0x00 more: the
 * form of 7.2.3.2's example). Each file: records of a 4-byte little-endian
 * length and the bytes.
 *
 * Prints "SAMPLE ..." and one "CODEC ..." line per codec (key=value).
 *
 * Owns: its buffers and the files it writes. Built only by `make
 * bench-deflate` (it needs libdeflate-dev, which `make all` never does).
 */
#include <libdeflate.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "awx_sample.h"

static const uint8_t dl_tail[4] = {0x00, 0x00, 0xff, 0xff};

typedef struct dl_msg {
  uint8_t *d;
  size_t len;
} dl_msg;

typedef struct dl_opts {
  long events, reps;
  uint64_t seed;
  const char *out;
} dl_opts;

/* One codec: compresses in (len) into out (room cap); returns the bytes
 * of the wire form, or 0 on failure. */
typedef struct dl_codec {
  const char *name;
  int level;
  size_t (*run)(struct dl_codec *k, const uint8_t *in, size_t len, uint8_t *out, size_t cap);
  z_stream zs;
  struct libdeflate_compressor *ld;
} dl_codec;

static uint64_t dl__now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the codecs ----------------------------------------------------------- */

static size_t dl__zlib(dl_codec *k, const uint8_t *in, size_t len, uint8_t *out, size_t cap) {
  deflateReset(&k->zs);
  k->zs.next_in = (Bytef *)in;
  k->zs.avail_in = (uInt)len;
  k->zs.next_out = out;
  k->zs.avail_out = (uInt)cap;
  if (deflate(&k->zs, Z_SYNC_FLUSH) != Z_OK || k->zs.avail_in != 0) return 0;
  size_t n = cap - k->zs.avail_out;
  if (n < 4 || memcmp(out + n - 4, dl_tail, 4) != 0) return 0;
  return n - 4;
}

static size_t dl__libdeflate(dl_codec *k, const uint8_t *in, size_t len, uint8_t *out,
                             size_t cap) {
  return libdeflate_deflate_compress(k->ld, in, len, out, cap);
}

static int dl__codec_init(dl_codec *k) {
  if (k->run == dl__zlib)
    return deflateInit2(&k->zs, k->level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK
               ? 0 : -1;
  k->ld = libdeflate_alloc_compressor(k->level);
  return k->ld ? 0 : -1;
}

static void dl__codec_free(dl_codec *k) {
  if (k->run == dl__zlib) deflateEnd(&k->zs);
  else libdeflate_free_compressor(k->ld);
}

/* ---- checking and writing ---------------------------------------------------- */

/* 0 when zlib inflates z (the receiver's 00 00 ff ff appended) to exactly
 * want, as a client with a fresh inflater per message does. */
static int dl__inflates_to(const uint8_t *z, size_t zlen, const dl_msg *want) {
  static uint8_t in[2 * AWX_EVENT_MAX + 8], out[AWX_EVENT_MAX + 1];
  z_stream s = {0};
  if (zlen + 4 > sizeof in || inflateInit2(&s, -15) != Z_OK) return -1;
  memcpy(in, z, zlen);
  memcpy(in + zlen, dl_tail, 4);
  s.next_in = in;
  s.avail_in = (uInt)(zlen + 4);
  s.next_out = out;
  s.avail_out = sizeof out;
  int rc = inflate(&s, Z_SYNC_FLUSH);
  size_t got = sizeof out - s.avail_out;
  inflateEnd(&s);
  if (rc != Z_OK && rc != Z_STREAM_END) return -1;
  return got == want->len && memcmp(out, want->d, got) == 0 ? 0 : -1;
}

static FILE *dl__open(const char *dir, const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.bin", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f) perror(path);
  return f;
}

static void dl__record(FILE *f, const uint8_t *d, size_t len, const uint8_t *extra,
                       size_t extra_len) {
  uint32_t n = (uint32_t)(len + extra_len);
  uint8_t le[4] = {(uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24)};
  fwrite(le, 1, 4, f);
  fwrite(d, 1, len, f);
  if (extra_len) fwrite(extra, 1, extra_len, f);
}

/* ---- measuring ------------------------------------------------------------------ */

static int dl__cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* R passes over every event; the best and the median pass, in ns. */
static int dl__time(dl_codec *k, const dl_msg *ev, long n, long reps, uint8_t *out, size_t cap,
                    uint64_t *best, uint64_t *median) {
  uint64_t *t = calloc((size_t)reps, sizeof *t);
  if (!t) return -1;
  volatile size_t sink = 0; /* the work must not be optimised away */
  for (long r = 0; r < reps; r++) {
    uint64_t t0 = dl__now();
    for (long i = 0; i < n; i++) sink += k->run(k, ev[i].d, ev[i].len, out, cap);
    t[r] = dl__now() - t0;
  }
  (void)sink;
  qsort(t, (size_t)reps, sizeof *t, dl__cmp_u64);
  *best = t[0];
  *median = t[reps / 2];
  free(t);
  return 0;
}

/* Mean ns per message over the first n events, each compressed after
 * writing a buffer larger than the CPU's L2 and a good part of its L3, so
 * the compressor's tables are cold as they are when events are sparse. */
static int dl__time_cold(dl_codec *k, const dl_msg *ev, long n, uint8_t *out, size_t cap,
                         uint64_t *mean) {
  enum { EVICT = 8 << 20 };
  uint8_t *junk = malloc(EVICT);
  if (!junk) return -1;
  uint64_t total = 0;
  volatile size_t sink = 0;
  for (long i = 0; i < n; i++) {
    memset(junk, (int)i, EVICT);
    sink += junk[(size_t)i * 4099 % EVICT];
    uint64_t t0 = dl__now();
    sink += k->run(k, ev[i].d, ev[i].len, out, cap);
    total += dl__now() - t0;
  }
  (void)sink;
  free(junk);
  *mean = total / (uint64_t)n;
  return 0;
}

/* One codec: timing, sizes, the check, and (with --out) its files. */
static int dl__codec(dl_codec *k, const dl_msg *ev, const dl_opts *o, uint64_t plain) {
  static uint8_t out[2 * AWX_EVENT_MAX + 64];
  uint64_t best, median, cold, zbytes = 0;
  long bad = 0;
  if (dl__codec_init(k) != 0) return -1;
  FILE *f = NULL, *f2 = NULL;
  int is_ld = k->run == dl__libdeflate;
  if (o->out) {
    char bare[64];
    snprintf(bare, sizeof bare, "%s-bare", k->name);
    f = dl__open(o->out, k->name);
    if (is_ld) f2 = dl__open(o->out, bare);
    if (!f || (is_ld && !f2)) return -1;
  }
  for (long i = 0; i < o->events; i++) {
    size_t n = k->run(k, ev[i].d, ev[i].len, out, sizeof out);
    zbytes += n;
    if (n == 0 || dl__inflates_to(out, n, &ev[i]) != 0) bad++;
    /* libdeflate's stream with an empty stored block after it: the 3 header
     * bits and padding make one 0x00, the block's 00 00 ff ff are removed. */
    if (f) dl__record(f, out, n, (const uint8_t *)"", is_ld ? 1 : 0);
    if (f2) dl__record(f2, out, n, NULL, 0);
  }
  if (f) fclose(f);
  if (f2) fclose(f2);
  if (dl__time(k, ev, o->events, o->reps, out, sizeof out, &best, &median) != 0 ||
      dl__time_cold(k, ev, o->events < 500 ? o->events : 500, out, sizeof out, &cold) != 0)
    return -1;
  printf("CODEC name=%s level=%d us_per_event=%.2f us_per_event_median=%.2f "
         "us_per_event_cold=%.2f mb_per_s=%.0f bytes_in=%llu bytes_out=%llu mean_out=%.0f "
         "ratio=%.3f inflate_bad=%ld\n",
         k->name, k->level, (double)best / 1000.0 / (double)o->events,
         (double)median / 1000.0 / (double)o->events, (double)cold / 1000.0,
         (double)plain * 1e3 / (double)best,
         (unsigned long long)plain, (unsigned long long)zbytes,
         (double)zbytes / (double)o->events, (double)plain / (double)zbytes, bad);
  dl__codec_free(k);
  return bad ? 1 : 0;
}

/* ---- the sample ------------------------------------------------------------------- */

static int dl__cmp_size(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return x < y ? -1 : x > y;
}

static dl_msg *dl__sample(const dl_opts *o, uint64_t *total) {
  dl_msg *ev = calloc((size_t)o->events, sizeof *ev);
  size_t *sizes = calloc((size_t)o->events, sizeof *sizes);
  char buf[AWX_EVENT_MAX];
  FILE *f = o->out ? dl__open(o->out, "plain") : NULL;
  if (!ev || !sizes || (o->out && !f)) return NULL;
  *total = 0;
  for (long i = 0; i < o->events; i++) {
    /* A fixed stamp: the same sample on every run, as if emitted 1 ms apart. */
    uint64_t t = 1796637600000000000ull + (uint64_t)i * 1000000u;
    size_t len = awx_event(buf, sizeof buf, o->seed, (uint64_t)i + 1, t);
    if (!len || !(ev[i].d = malloc(len))) return NULL;
    memcpy(ev[i].d, buf, len);
    ev[i].len = sizes[i] = len;
    *total += len;
    if (f) dl__record(f, ev[i].d, len, NULL, 0);
  }
  if (f) fclose(f);
  qsort(sizes, (size_t)o->events, sizeof *sizes, dl__cmp_size);
  printf("SAMPLE events=%ld seed=%llu bytes=%llu min=%zu p10=%zu median=%zu p90=%zu max=%zu "
         "mean=%.0f\n", o->events, (unsigned long long)o->seed, (unsigned long long)*total,
         sizes[0], sizes[o->events / 10], sizes[o->events / 2], sizes[o->events * 9 / 10],
         sizes[o->events - 1], (double)*total / (double)o->events);
  free(sizes);
  return ev;
}

static int dl__parse(int argc, char **argv, dl_opts *o) {
  for (int i = 1; i < argc; i++) {
    if (i + 1 >= argc) return -1;
    const char *a = argv[i], *v = argv[++i];
    if (strcmp(a, "--events") == 0) o->events = atol(v);
    else if (strcmp(a, "--reps") == 0) o->reps = atol(v);
    else if (strcmp(a, "--seed") == 0) o->seed = strtoull(v, NULL, 10);
    else if (strcmp(a, "--out") == 0) o->out = v;
    else return -1;
  }
  return o->events > 0 && o->reps > 0 ? 0 : -1;
}

int main(int argc, char **argv) {
  dl_opts o = {.events = 2000, .reps = 15, .seed = AWX_SEED};
  if (dl__parse(argc, argv, &o) != 0) {
    fprintf(stderr, "usage: bench-deflate [--events N] [--seed S] [--reps R] [--out DIR]\n");
    return 2;
  }
  uint64_t plain;
  dl_msg *ev = dl__sample(&o, &plain);
  if (!ev) {
    fprintf(stderr, "bench-deflate: could not make the sample\n");
    return 1;
  }
  dl_codec codecs[] = {{"zlib-1", 1, dl__zlib, {0}, NULL},
                       {"zlib-6", 6, dl__zlib, {0}, NULL},
                       {"libdeflate-1", 1, dl__libdeflate, {0}, NULL},
                       {"libdeflate-6", 6, dl__libdeflate, {0}, NULL}};
  int rc = 0;
  for (size_t i = 0; i < sizeof codecs / sizeof *codecs; i++) {
    int r = dl__codec(&codecs[i], ev, &o, plain);
    if (r < 0) {
      fprintf(stderr, "bench-deflate: %s failed\n", codecs[i].name);
      return 1;
    }
    rc |= r;
  }
  for (long i = 0; i < o.events; i++) free(ev[i].d);
  free(ev);
  return rc;
}
