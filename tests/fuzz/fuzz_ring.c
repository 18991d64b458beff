/*
 * fuzz_ring.c - libFuzzer target: a reader of the host's shared copy of the
 * stream (gw_ring_seek, gw_ring_next, gw_ring_still) on a ring whose bytes
 * are garbage, as a writer that died mid-record or a stray write would
 * leave them. The ring is another process's memory: the reader must not
 * trust a byte of it.
 *
 * Input: byte 0 = records to put (0..63), then for each a length byte (its
 * body: 0..255 bytes), then the rest is written over the buffer from the
 * position the next two bytes give, wrapping.
 * Properties: the reader never reads outside the buffer (ASan: the mapping
 * is followed by nothing of ours), every record it hands out lies whole
 * inside the buffer, a walk ends (each step advances or stops), and on an
 * untouched ring (no garbage bytes) every record put is read back as put.
 */
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "gw_ring.h"

#define RING_FD 200

static int in_ring(const gw_ring *r, const char *p, size_t n) {
  const char *lo = (const char *)r->data, *hi = lo + r->cap;
  return p >= lo && p <= hi && n <= (size_t)(hi - p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  gw_ring sup, w, rd;
  if (gw_ring_create(&sup, GW_RING_MIN_BYTES, 2) != 0) return 0;
  dup2(sup.memfd, RING_FD);
  dup2(sup.efd[0], RING_FD + 1);
  dup2(sup.efd[1], RING_FD + 2);
  FUZZ_CHECK(gw_ring_attach(&w, RING_FD, 0) == 0 && gw_ring_attach(&rd, RING_FD, 1) == 0);
  gw_ring_lead(&w);
  size_t pos = 1, puts = data[0] % 64;
  static char body[255 * 256];
  memset(body, 'b', sizeof body);
  uint64_t off = 0;
  for (size_t i = 0; i < puts && pos < size; i++, pos++) {
    /* lengths up to 64 KiB: some wrap, some are over a quarter of the ring */
    size_t len = (size_t)data[pos] * 256;
    gw_ring_rec rec = {.offset = off++, .digest = 7, .key = "k", .key_len = 1,
                       .body = body, .body_len = len};
    gw_ring_put(&w, &rec);
  }
  int garbage = size - pos >= 2;
  if (garbage) {
    size_t at = ((size_t)data[pos] << 8 | data[pos + 1]) % rd.cap;
    pos += 2;
    for (; pos < size; pos++, at = (at + 1) % rd.cap) rd.data[at] = data[pos];
  }
  for (uint64_t want = 0; want < off; want++) {
    if (gw_ring_seek(&rd, want) != 0) continue;
    gw_ring_rec rec;
    gw_ring_got got;
    uint64_t expect = want;
    for (int steps = 0; (got = gw_ring_next(&rd, &rec)) == GW_RING_REC; steps++) {
      FUZZ_CHECK(steps < 4096); /* at most that many records fit */
      FUZZ_CHECK(in_ring(&rd, rec.key, rec.key_len) && in_ring(&rd, rec.body, rec.body_len));
      FUZZ_CHECK(gw_ring_still(&rd)); /* nobody writes meanwhile */
      if (!garbage) {
        FUZZ_CHECK(rec.offset == expect++ && rec.key_len == 1 && rec.key[0] == 'k');
        FUZZ_CHECK(rec.body_len % 256 == 0 && (rec.body_len == 0 || rec.body[0] == 'b'));
      }
    }
    FUZZ_CHECK(got == GW_RING_NONE || got == GW_RING_ENDED || got == GW_RING_OVERTAKEN);
    break; /* one walk per input: the first offset still there */
  }
  gw_ring_close(&rd);
  gw_ring_close(&w);
  gw_ring_close(&sup);
  for (int i = 0; i < 3; i++) close(RING_FD + i);
  return 0;
}
