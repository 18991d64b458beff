/*
 * test_gw_deflate.c - permessage-deflate's data path without a socket:
 * compressed twins (made once, RSV1 set, readable by a fresh inflater,
 * none for small or incompressible frames), decompression of client
 * messages with its output bound (a zip bomb), invalid data, a final
 * block; gw_ws decompressing a (fragmented) client message, refusing one
 * too big once inflated (1009), bad data or bad UTF-8 (1007), and RSV1
 * without the extension (1002); the history ring counting the twins it
 * keeps.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "chan_pos.h"
#include "gw_deflate.h"
#include "gw_hist.h"
#include "gw_pmd.h"
#include "gw_ws.h"
#include "unit.h"
#include "unit_ws.h"

/* An AWX-like job event of about n bytes: repetitive, as real ones are. */
static size_t job_event(char *out, size_t n, int counter) {
  size_t len = (size_t)snprintf(out, n, "{\"type\":\"job_event\",\"counter\":%d,\"stdout\":\"",
                                counter);
  for (int host = 0; len + 80 < n; host++)
    len += (size_t)snprintf(out + len, n - len,
                            "\\u001b[0;32mok: [host-%d.example.com]\\u001b[0m\\r\\n", host);
  len += (size_t)snprintf(out + len, n - len, "\"}");
  return len;
}

/* Inflates a twin's payload with a fresh zlib stream, as a client does:
 * raw deflate, 00 00 ff ff appended. Returns the length or -1. */
static long client_inflate(const gw_buf *twin, char *out, size_t cap) {
  size_t len;
  const uint8_t *p = gw_buf_payload(twin, &len);
  uint8_t *in = malloc(len + 4);
  memcpy(in, p, len);
  memcpy(in + len, "\x00\x00\xff\xff", 4);
  z_stream z = {0};
  inflateInit2(&z, -15);
  z.next_in = in;
  z.avail_in = (uInt)(len + 4);
  z.next_out = (Bytef *)out;
  z.avail_out = (uInt)cap;
  int rc = inflate(&z, Z_SYNC_FLUSH);
  long n = rc == Z_OK || rc == Z_STREAM_END ? (long)(cap - z.avail_out) : -1;
  inflateEnd(&z);
  free(in);
  return n;
}

/* A client's compressed message, as a client compresses it: 4 octets off. */
static size_t client_deflate(const void *msg, size_t len, uint8_t *out, size_t cap) {
  z_stream z = {0};
  deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
  z.next_in = (Bytef *)msg;
  z.avail_in = (uInt)len;
  z.next_out = out;
  z.avail_out = (uInt)cap;
  deflate(&z, Z_SYNC_FLUSH);
  size_t n = cap - z.avail_out - 4;
  deflateEnd(&z);
  return n;
}

UNIT_TEST(gw_deflate_twin_is_made_once_and_reads_back) {
  gw_deflate d;
  UNIT_CHECK(gw_deflate_init(&d, 1, 256) == 0);
  char ev[2048], back[4096];
  size_t n = job_event(ev, sizeof ev, 7);
  gw_buf *f = gw_buf_frame(1, ev, n);
  gw_buf *t = gw_deflate_twin(&d, f);
  UNIT_CHECK(t != f && f->z == t && t->z == t);
  UNIT_CHECK(t->data[0] == (0x80 | 0x40 | 1)); /* FIN, RSV1, text */
  UNIT_CHECK(t->len * 3 < f->len);             /* job output compresses well */
  UNIT_CHECK(gw_deflate_twin(&d, f) == t && d.stats.twins == 1); /* once */
  UNIT_CHECK(gw_deflate_twin(&d, t) == t);                       /* never twice */
  UNIT_CHECK(client_inflate(t, back, sizeof back) == (long)n && memcmp(back, ev, n) == 0);
  /* each message alone (server_no_context_takeover): a second, equal
   * event reads back with a fresh inflater too */
  gw_buf *f2 = gw_buf_frame(1, ev, n);
  gw_buf *t2 = gw_deflate_twin(&d, f2);
  UNIT_CHECK(t2->len == t->len && client_inflate(t2, back, sizeof back) == (long)n);
  UNIT_CHECK(d.stats.plain_bytes == 2 * n && d.stats.z_bytes < n);
  gw_buf_unref(f); /* frees its twin too (ASan: no leak) */
  gw_buf_unref(f2);
  gw_deflate_free(&d);
}

/* A client keeping its context: one inflater for every message it gets. */
typedef struct kept {
  z_stream z;
} kept;

static long kept_inflate(kept *k, const gw_buf *twin, char *out, size_t cap) {
  size_t len;
  const uint8_t *p = gw_buf_payload(twin, &len);
  uint8_t *in = malloc(len + 4);
  memcpy(in, p, len);
  memcpy(in + len, "\x00\x00\xff\xff", 4);
  k->z.next_in = in;
  k->z.avail_in = (uInt)(len + 4);
  k->z.next_out = (Bytef *)out;
  k->z.avail_out = (uInt)cap;
  int rc = inflate(&k->z, Z_SYNC_FLUSH);
  free(in);
  return rc == Z_OK && k->z.avail_in == 0 ? (long)(cap - k->z.avail_out) : -1;
}

UNIT_TEST(gw_deflate_twin_after_the_previous_event_reads_in_a_kept_window) {
  gw_deflate d;
  UNIT_CHECK(gw_deflate_init(&d, 1, 256) == 0);
  char ev[3][2048], back[4096];
  size_t n[3];
  gw_buf *f[3];
  for (int i = 0; i < 3; i++) {
    n[i] = job_event(ev[i], sizeof ev[i], 100 + i);
    f[i] = gw_buf_frame(1, ev[i], n[i]);
  }
  kept k = {0};
  UNIT_CHECK(inflateInit2(&k.z, -15) == Z_OK);
  gw_buf *t0 = gw_deflate_twin(&d, f[0]);
  UNIT_CHECK(t0 != f[0] && t0->serial == f[0]->serial && f[0]->serial != 0);
  UNIT_CHECK(kept_inflate(&k, t0, back, sizeof back) == (long)n[0]);
  /* f1 after f0: smaller than alone, made once, read by the kept window */
  gw_buf *c1 = gw_deflate_twin_after(&d, f[1], f[0]);
  gw_buf *a1 = gw_deflate_twin(&d, f[1]);
  UNIT_CHECK(c1 != a1 && c1->len < a1->len && (c1->data[0] & 0x40));
  UNIT_CHECK(c1->serial == f[1]->serial && f[1]->serial != f[0]->serial);
  UNIT_CHECK(gw_deflate_twin_after(&d, f[1], f[0]) == c1 && d.stats.chained == 1);
  UNIT_CHECK(kept_inflate(&k, c1, back, sizeof back) == (long)n[1] &&
             memcmp(back, ev[1], n[1]) == 0);
  /* a fresh inflater cannot read it: it refers back into f0 */
  UNIT_CHECK(client_inflate(c1, back, sizeof back) != (long)n[1] ||
             memcmp(back, ev[1], n[1]) != 0);
  /* f2 after f1, then asked after f0 (another window): the twin alone */
  gw_buf *c2 = gw_deflate_twin_after(&d, f[2], f[1]);
  UNIT_CHECK(gw_deflate_twin_after(&d, f[2], f[0]) == gw_deflate_twin(&d, f[2]));
  UNIT_CHECK(kept_inflate(&k, c2, back, sizeof back) == (long)n[2] &&
             memcmp(back, ev[2], n[2]) == 0);
  /* a message alone reads in a kept window too */
  gw_buf *f3 = gw_buf_frame(1, ev[0], n[0]);
  UNIT_CHECK(kept_inflate(&k, gw_deflate_twin(&d, f3), back, sizeof back) == (long)n[0]);
  /* small frames stay plain, chained or not */
  gw_buf *small = gw_buf_frame(1, "{}", 2);
  UNIT_CHECK(gw_deflate_twin_after(&d, small, f[2]) == small);
  inflateEnd(&k.z);
  for (int i = 0; i < 3; i++) gw_buf_unref(f[i]); /* twins with them (ASan) */
  gw_buf_unref(f3);
  gw_buf_unref(small);
  gw_deflate_free(&d);
}

UNIT_TEST(gw_deflate_small_or_incompressible_frames_stay_plain) {
  gw_deflate d;
  UNIT_CHECK(gw_deflate_init(&d, 1, 256) == 0);
  gw_buf *small = gw_buf_frame(1, "{\"groups_current\":[]}", 21);
  UNIT_CHECK(gw_deflate_twin(&d, small) == small && small->z == small);
  uint8_t noise[1024];
  uint32_t x = 12345;
  for (size_t i = 0; i < sizeof noise; i++) noise[i] = (uint8_t)((x = x * 1103515245 + 12345) >> 16);
  gw_buf *rnd = gw_buf_frame(2, noise, sizeof noise);
  UNIT_CHECK(gw_deflate_twin(&d, rnd) == rnd && d.stats.not_smaller == 1);
  UNIT_CHECK(d.stats.twins == 0);
  gw_buf_unref(small);
  gw_buf_unref(rnd);
  gw_deflate_free(&d);
}

UNIT_TEST(gw_deflate_inflates_client_messages_within_the_bound) {
  gw_deflate d;
  UNIT_CHECK(gw_deflate_init(&d, 1, 256) == 0);
  uint8_t z[2048];
  const uint8_t *out;
  size_t out_len;
  const char *msg = "{\"groups\": {\"jobs\": [\"status_changed\"]}}";
  size_t zn = client_deflate(msg, strlen(msg), z, sizeof z);
  UNIT_CHECK(gw_deflate_inflate(&d, z, zn, 16384, &out, &out_len) == GW_INFLATE_OK);
  UNIT_CHECK(out_len == strlen(msg) && memcmp(out, msg, out_len) == 0);
  /* a bomb: 1 MiB of zeros in ~1 KiB, against a 16 KiB bound; exactly
   * the bound passes, one byte more does not */
  char *zeros = calloc(1, 1 << 20);
  zn = client_deflate(zeros, 1 << 20, z, sizeof z);
  UNIT_CHECK(zn < 2048);
  UNIT_CHECK(gw_deflate_inflate(&d, z, zn, 16384, &out, &out_len) == GW_INFLATE_TOO_BIG);
  UNIT_CHECK(d.iout_cap <= 16385); /* never more than the bound + 1 */
  zn = client_deflate(zeros, 16384, z, sizeof z);
  UNIT_CHECK(gw_deflate_inflate(&d, z, zn, 16384, &out, &out_len) == GW_INFLATE_OK &&
             out_len == 16384);
  zn = client_deflate(zeros, 16385, z, sizeof z);
  UNIT_CHECK(gw_deflate_inflate(&d, z, zn, 16384, &out, &out_len) == GW_INFLATE_TOO_BIG);
  free(zeros);
  /* not deflate data */
  static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x00};
  UNIT_CHECK(gw_deflate_inflate(&d, junk, sizeof junk, 16384, &out, &out_len) == GW_INFLATE_BAD);
  UNIT_CHECK(d.stats.refused == 3 && d.stats.inflated == 2);
  gw_deflate_free(&d);
}

UNIT_TEST(gw_deflate_a_final_block_ends_the_message) {
  gw_deflate d;
  UNIT_CHECK(gw_deflate_init(&d, 1, 256) == 0);
  /* a client that ends with BFINAL (RFC 7692 7.2.3.3), as libdeflate does */
  uint8_t z[256];
  z_stream s = {0};
  deflateInit2(&s, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
  s.next_in = (Bytef *)"hello hello hello";
  s.avail_in = 17;
  s.next_out = z;
  s.avail_out = sizeof z - 8;
  UNIT_CHECK(deflate(&s, Z_FINISH) == Z_STREAM_END);
  size_t zn = sizeof z - 8 - s.avail_out;
  deflateEnd(&s);
  const uint8_t *out;
  size_t out_len;
  UNIT_CHECK(gw_deflate_inflate(&d, z, zn, 1024, &out, &out_len) == GW_INFLATE_OK);
  UNIT_CHECK(out_len == 17 && memcmp(out, "hello hello hello", 17) == 0);
  z[zn] = 'x'; /* anything after the final block is not deflate */
  UNIT_CHECK(gw_deflate_inflate(&d, z, zn + 1, 1024, &out, &out_len) == GW_INFLATE_BAD);
  gw_deflate_free(&d);
}

/* ---- gw_ws with the extension ------------------------------------------------ */

typedef struct zfake {
  char msg[20000];
  size_t msg_len, n_msgs;
  uint8_t out[512];
  size_t out_len;
} zfake;

static int zfake_send(void *arg, const uint8_t *data, size_t len) {
  zfake *f = arg;
  if (f->out_len + len <= sizeof f->out) memcpy(f->out + f->out_len, data, len);
  f->out_len += len;
  return 0;
}

static void zfake_message(void *arg, int binary, const uint8_t *msg, size_t len) {
  zfake *f = arg;
  (void)binary;
  f->n_msgs++;
  f->msg_len = len < sizeof f->msg ? len : sizeof f->msg;
  memcpy(f->msg, msg, f->msg_len);
}

static const gw_ws_sink zfake_sink = {zfake_send, zfake_message};
static gw_ws_budget zbudget = {.limit = 1u << 30};

/* A client frame with rsv bits (RSV1 = 4) into buf (unit_ws.h). */
static size_t zframe(uint8_t *buf, int fin, int rsv, int opcode, const void *p, size_t len) {
  return unit_ws_frame(buf, fin, rsv, opcode, p, len);
}

static gw_ws_result zfeed(gw_ws *ws, zfake *f, gw_deflate *d, const uint8_t *b, size_t n,
                          uint16_t *code) {
  gw_ws_io io = {.sink = &zfake_sink, .arg = f, .max_frame = 16384, .max_message = 16384,
                 .max_pings = 100, .budget = &zbudget, .deflate = d};
  return gw_ws_feed(ws, &io, b, n, code);
}

static int zsent_close(const zfake *f, uint16_t code) {
  return f->out_len >= 4 && f->out[0] == 0x88 && f->out[2] == (code >> 8) &&
         f->out[3] == (code & 0xff);
}

UNIT_TEST(gw_ws_decompresses_a_fragmented_client_message) {
  gw_deflate d;
  UNIT_CHECK(gw_deflate_init(&d, 1, 256) == 0);
  gw_ws ws = {.pmd = GW_PMD_RECV | GW_PMD_SEND};
  zfake f = {0};
  char ev[4000];
  size_t n = job_event(ev, sizeof ev, 1);
  uint8_t z[4096], wire[4200];
  size_t zn = client_deflate(ev, n, z, sizeof z);
  /* RSV1 on the first frame only; two fragments */
  size_t w = zframe(wire, 0, 4, 1, z, zn / 2);
  w += zframe(wire + w, 1, 0, 0, z + zn / 2, zn - zn / 2);
  uint16_t code = 0;
  UNIT_CHECK(zfeed(&ws, &f, &d, wire, w, &code) == GW_WS_OK);
  UNIT_CHECK(f.n_msgs == 1 && f.msg_len == n && memcmp(f.msg, ev, n) == 0);
  /* the next message plain: RSV1 is per message */
  w = zframe(wire, 1, 0, 1, "plain", 5);
  UNIT_CHECK(zfeed(&ws, &f, &d, wire, w, &code) == GW_WS_OK);
  UNIT_CHECK(f.n_msgs == 2 && f.msg_len == 5);
  gw_ws_free(&ws, &zbudget);
  gw_deflate_free(&d);
}

/* One compressed message against a fresh connection: the close code sent. */
static uint16_t zrefusal(gw_deflate *d, int pmd, int rsv, int opcode, const void *p,
                         size_t len) {
  gw_ws ws = {.pmd = (uint8_t)pmd};
  zfake f = {0};
  uint8_t wire[2200];
  uint16_t code = 0;
  size_t w = zframe(wire, 1, rsv, opcode, p, len);
  int saved = unit_stderr_mute(); /* a refused bomb is logged, by design */
  gw_ws_result r = zfeed(&ws, &f, d, wire, w, &code);
  unit_stderr_restore(saved);
  gw_ws_free(&ws, &zbudget);
  return r == GW_WS_CLOSED && f.n_msgs == 0 && zsent_close(&f, code) ? code : 0;
}

UNIT_TEST(gw_ws_refuses_bombs_bad_data_and_rsv1_unasked) {
  gw_deflate d;
  UNIT_CHECK(gw_deflate_init(&d, 1, 256) == 0);
  uint8_t z[2048];
  char *zeros = calloc(1, 1 << 20);
  size_t zn = client_deflate(zeros, 1 << 20, z, sizeof z); /* 1 MiB > max_message */
  int both = GW_PMD_RECV | GW_PMD_SEND;
  UNIT_CHECK(zrefusal(&d, both, 4, 1, z, zn) == 1009);
  UNIT_CHECK(zrefusal(&d, both, 4, 1, "\xff\xff\xff\xff", 4) == 1007);
  static const uint8_t bad_utf8[] = {'a', 0xc3, 0x28, 'b'};
  zn = client_deflate(bad_utf8, sizeof bad_utf8, z, sizeof z);
  UNIT_CHECK(zrefusal(&d, both, 4, 1, z, zn) == 1007);
  UNIT_CHECK(zrefusal(&d, both, 4, 2, z, zn) == 0); /* binary: no UTF-8 rule, accepted */
  zn = client_deflate("hi", 2, z, sizeof z);
  UNIT_CHECK(zrefusal(&d, 0, 4, 1, z, zn) == 1002);      /* not negotiated */
  UNIT_CHECK(zrefusal(&d, both, 4, 9, "p", 1) == 1002);  /* on a ping */
  UNIT_CHECK(zrefusal(&d, both, 2, 1, "x", 1) == 1002);  /* RSV2 never */
  UNIT_CHECK(d.stats.refused == 2); /* the bomb and the junk; bad UTF-8 inflated fine */
  free(zeros);
  gw_deflate_free(&d);
}

UNIT_TEST(gw_ws_an_incompressible_message_just_under_the_limit_is_accepted) {
  gw_deflate d;
  UNIT_CHECK(gw_deflate_init(&d, 1, 256) == 0);
  /* 16,380 random bytes compress to more than 16,384 (the limit of both
   * frame and message here): the limit is on what they decompress to. */
  static uint8_t noise[16380], z[20000], wire[20100];
  uint32_t x = 99;
  for (size_t i = 0; i < sizeof noise; i++) noise[i] = (uint8_t)((x = x * 1103515245 + 12345) >> 16);
  size_t zn = client_deflate(noise, sizeof noise, z, sizeof z);
  UNIT_CHECK(zn > 16384);
  gw_ws ws = {.pmd = GW_PMD_RECV | GW_PMD_SEND};
  zfake f = {0};
  uint16_t code = 0;
  size_t w = zframe(wire, 1, 4, 2, z, zn);
  UNIT_CHECK(zfeed(&ws, &f, &d, wire, w, &code) == GW_WS_OK);
  UNIT_CHECK(f.n_msgs == 1 && f.msg_len == sizeof noise && memcmp(f.msg, noise, sizeof noise) == 0);
  /* the same bytes uncompressed on that connection: over the limit */
  static uint8_t plain[16385];
  w = zframe(wire, 1, 0, 2, plain, sizeof plain);
  UNIT_CHECK(zfeed(&ws, &f, &d, wire, w, &code) == GW_WS_CLOSED && code == 1009);
  gw_ws_free(&ws, &zbudget);
  gw_deflate_free(&d);
}

UNIT_TEST(gw_ws_rsv1_on_a_continuation_is_a_protocol_error) {
  gw_deflate d;
  UNIT_CHECK(gw_deflate_init(&d, 1, 256) == 0);
  gw_ws ws = {.pmd = GW_PMD_RECV};
  zfake f = {0};
  uint8_t wire[64];
  size_t w = zframe(wire, 0, 0, 1, "ab", 2);
  w += zframe(wire + w, 1, 4, 0, "cd", 2);
  uint16_t code = 0;
  UNIT_CHECK(zfeed(&ws, &f, &d, wire, w, &code) == GW_WS_CLOSED && code == 1002);
  UNIT_CHECK(f.n_msgs == 0);
  gw_ws_free(&ws, &zbudget);
  gw_deflate_free(&d);
}

/* ---- the history's twins ------------------------------------------------------ */

UNIT_TEST(gw_hist_counts_the_twins_it_keeps) {
  gw_deflate d;
  UNIT_CHECK(gw_deflate_init(&d, 1, 256) == 0);
  gw_hist h;
  gw_hist_init(&h, 64 * 1024);
  char ev[2048];
  gw_buf *prev = NULL;
  for (uint64_t off = 1; off <= 200; off++) {
    size_t n = job_event(ev, sizeof ev, (int)off);
    uint64_t dg = chan_pos_digest(off, "jobs", 4, ev, n);
    gw_hist_ev *e = gw_hist_append(&h, off, dg, "jobs", 4, gw_buf_frame(1, ev, n));
    UNIT_CHECK(e != NULL);
    size_t before = h.bytes;
    gw_buf *old = gw_hist_frame_for(&h, e, 0, &d, NULL);
    gw_buf *v2 = gw_hist_frame_for(&h, e, 1, &d, NULL);
    UNIT_CHECK(old && v2 && (old->data[0] & 0x40) && (v2->data[0] & 0x40));
    UNIT_CHECK(h.bytes > before);
    UNIT_CHECK(gw_hist_frame_for(&h, e, 1, &d, NULL) == v2); /* once */
    if (prev) { /* chained after the previous event: counted too */
      size_t b2 = h.bytes;
      gw_buf *c = gw_hist_frame_for(&h, e, 0, &d, prev);
      UNIT_CHECK(c && c != old && h.bytes > b2);
    }
    gw_buf_unref(prev);
    prev = gw_buf_ref(e->frame);
    UNIT_CHECK(gw_hist_frame_for(&h, e, 0, NULL, NULL) == e->frame);
  }
  /* evictions subtract what was added, twins included: the bound holds
   * (within the newest event's twins, made after its append) */
  UNIT_CHECK(h.evicted > 0 && h.bytes <= 64 * 1024 + 4096);
  gw_buf_unref(prev);
  gw_hist_free(&h); /* asserts the count comes back to 0 */
  gw_deflate_free(&d);
}
