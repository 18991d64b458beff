/*
 * gw_deflate.c - permessage-deflate with zlib (see gw_deflate.h).
 *
 * Why zlib and not libdeflate (both Debian packages; `make bench-deflate`,
 * docs/BENCHMARKS.md): libdeflate compresses a job event 2.3x as fast (8
 * against 19 us at level 1), but only as a whole stream ending in a final
 * block (BFINAL). RFC 7692 allows that, yet a client that keeps one
 * inflater across messages (as `server_no_context_takeover` lets it)
 * stops at the first final block: 1 message of 2,000 decoded right through
 * Python's zlib that way, against 2,000 of 2,000 from zlib, whose
 * Z_SYNC_FLUSH ends a message on a block boundary every client reads; and
 * libdeflate cannot compress after a window (deflateSetDictionary), which
 * gw_deflate_twin_after needs. At 1,000 subscribers the compression is
 * 0.02 us of a delivery either way.
 */
#include "gw_deflate.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* RFC 7692 7.2.1: a message compressed and flushed ends with these 4
 * octets, which the sender removes and the receiver appends again. */
static const uint8_t gw_deflate__tail[4] = {0x00, 0x00, 0xff, 0xff};

int gw_deflate_init(gw_deflate *d, int level, size_t min_size) {
  memset(d, 0, sizeof(*d));
  d->min_size = min_size;
  /* Raw deflate (negative window bits: no zlib header), a 32 KiB window
   * (15: what every client accepts), zlib's default memory level. */
  if (deflateInit2(&d->def, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) return -1;
  d->def_ready = 1;
  if (inflateInit2(&d->inf, -15) != Z_OK) {
    gw_deflate_free(d);
    return -1;
  }
  d->inf_ready = 1;
  return 0;
}

void gw_deflate_free(gw_deflate *d) {
  if (d->def_ready) deflateEnd(&d->def);
  if (d->inf_ready) inflateEnd(&d->inf);
  free(d->zout);
  free(d->iout);
  memset(d, 0, sizeof(*d));
}

/* Room for `need` bytes in *buf. -1: no memory. */
static int gw_deflate__room(uint8_t **buf, size_t *cap, size_t need) {
  if (need <= *cap) return 0;
  uint8_t *p = realloc(*buf, need);
  if (!p) return -1;
  *buf = p;
  *cap = need;
  return 0;
}

void gw_deflate_trim(gw_deflate *d) {
  if (d->zout_cap > GW_DEFLATE_KEEP) {
    free(d->zout);
    d->zout = NULL;
    d->zout_cap = 0;
  }
  if (d->iout_cap > GW_DEFLATE_KEEP) {
    free(d->iout);
    d->iout = NULL;
    d->iout_cap = 0;
  }
}

/* Compresses len bytes into d->zout, the flush's 4 octets removed, after
 * the window `win` (wlen bytes, at most 32 KiB; NULL: none). Returns the
 * compressed length, or (size_t)-1 without memory. */
static size_t gw_deflate__compress(gw_deflate *d, const uint8_t *win, size_t wlen,
                                   const uint8_t *p, size_t len) {
  /* deflateBound is for one Z_FINISH; a sync flush adds an empty stored
   * block (at most 5 bytes, plus a partial byte). */
  size_t cap = deflateBound(&d->def, (uLong)len) + 16;
  if (gw_deflate__room(&d->zout, &d->zout_cap, cap) != 0) return (size_t)-1;
  deflateReset(&d->def); /* every message alone, or after `win` only */
  if (win && deflateSetDictionary(&d->def, win, (uInt)wlen) != Z_OK) return (size_t)-1;
  d->def.next_in = (Bytef *)p;
  d->def.avail_in = (uInt)len;
  d->def.next_out = d->zout;
  d->def.avail_out = (uInt)cap;
  int rc = deflate(&d->def, Z_SYNC_FLUSH);
  /* With that much room the whole message goes in one call. */
  assert(rc == Z_OK && d->def.avail_in == 0 && d->def.avail_out > 0);
  (void)rc;
  size_t n = cap - d->def.avail_out;
  assert(n >= 4 && memcmp(d->zout + n - 4, gw_deflate__tail, 4) == 0);
  return n - 4;
}

gw_buf *gw_deflate_twin(gw_deflate *d, gw_buf *frame) {
  if (frame->z) return frame->z;
  /* A whole data frame of ours: FIN, no RSV bits, text or binary. */
  assert((frame->data[0] & 0xf0) == 0x80 && (frame->data[0] & 0x0f) - 1u < 2);
  size_t len;
  const uint8_t *payload = gw_buf_payload(frame, &len);
  if (len < d->min_size) {
    frame->z = frame;
    return frame;
  }
  size_t n = gw_deflate__compress(d, NULL, 0, payload, len);
  gw_buf *t = NULL;
  if (n != (size_t)-1 && n < len) t = gw_buf_frame(frame->data[0] & 0x0f, d->zout, n);
  gw_deflate_trim(d);
  if (!t) {
    if (n != (size_t)-1) d->stats.not_smaller++;
    frame->z = frame; /* plain is always allowed */
    return frame;
  }
  t->data[0] |= 0x40; /* RSV1: "this message is compressed" */
  t->z = t;           /* a twin is never compressed again */
  t->serial = gw_buf_serial(frame); /* what a client decompressing it gets */
  frame->z = t;
  d->stats.twins++;
  d->stats.plain_bytes += len;
  d->stats.z_bytes += n;
  return t;
}

gw_buf *gw_deflate_twin_after(gw_deflate *d, gw_buf *frame, gw_buf *after) {
  size_t len, wlen;
  const uint8_t *payload = gw_buf_payload(frame, &len);
  if (len < d->min_size || frame->z == frame) return gw_deflate_twin(d, frame); /* plain */
  uint64_t s = gw_buf_serial(after);
  if (frame->zc) return frame->zc_after == s ? frame->zc : gw_deflate_twin(d, frame);
  const uint8_t *win = gw_buf_payload(after, &wlen);
  /* A client's window is its last 32 KiB: the tail of `after`. */
  if (wlen > 32768) win += wlen - 32768, wlen = 32768;
  size_t n = gw_deflate__compress(d, win, wlen, payload, len);
  gw_buf *t = n < len ? gw_buf_frame(frame->data[0] & 0x0f, d->zout, n) : NULL;
  gw_deflate_trim(d);
  frame->zc_after = s;
  if (!t) { /* no smaller (or no memory): those clients get the twin alone */
    gw_buf *alone = gw_deflate_twin(d, frame);
    frame->zc = alone == frame ? frame : gw_buf_ref(alone);
    return alone;
  }
  t->data[0] |= 0x40;
  t->z = t;
  t->serial = gw_buf_serial(frame);
  frame->zc = t;
  d->stats.chained++;
  d->stats.z_bytes_chained += n;
  return t;
}

/* Inflates the bytes at next_in into d->iout from *have on, growing it up
 * to max + 1 bytes (one past the limit tells "too big"). */
static gw_inflate_result gw_deflate__inflate(gw_deflate *d, size_t max, size_t *have) {
  for (;;) {
    if (*have == d->iout_cap) {
      if (*have > max) return GW_INFLATE_TOO_BIG;
      size_t cap = d->iout_cap ? d->iout_cap * 2 : 4096;
      if (cap > max + 1) cap = max + 1;
      if (gw_deflate__room(&d->iout, &d->iout_cap, cap) != 0) return GW_INFLATE_NOMEM;
    }
    d->inf.next_out = d->iout + *have;
    d->inf.avail_out = (uInt)(d->iout_cap - *have);
    int rc = inflate(&d->inf, Z_SYNC_FLUSH);
    *have = d->iout_cap - d->inf.avail_out;
    if (*have > max) return GW_INFLATE_TOO_BIG;
    if (rc == Z_STREAM_END) return GW_INFLATE_OK; /* a final block: nothing follows */
    if (rc == Z_MEM_ERROR) return GW_INFLATE_NOMEM;
    if (rc == Z_BUF_ERROR) return GW_INFLATE_OK; /* no input left, no output pending */
    if (rc != Z_OK) return GW_INFLATE_BAD;
    if (d->inf.avail_in == 0 && d->inf.avail_out > 0) return GW_INFLATE_OK;
  }
}

gw_inflate_result gw_deflate_inflate(gw_deflate *d, const uint8_t *in, size_t len, size_t max,
                                     const uint8_t **out, size_t *out_len) {
  inflateReset(&d->inf); /* client_no_context_takeover: every message alone */
  size_t have = 0;
  d->inf.next_in = (Bytef *)in;
  d->inf.avail_in = (uInt)len;
  gw_inflate_result r = gw_deflate__inflate(d, max, &have);
  int ended = r == GW_INFLATE_OK && d->inf.avail_in > 0; /* stopped at a final block */
  if (r == GW_INFLATE_OK && !ended) {
    d->inf.next_in = (Bytef *)gw_deflate__tail;
    d->inf.avail_in = sizeof gw_deflate__tail;
    r = gw_deflate__inflate(d, max, &have);
  } else if (ended) {
    r = GW_INFLATE_BAD; /* bytes after the final block */
  }
  if (r != GW_INFLATE_OK) {
    d->stats.refused++;
    gw_deflate_trim(d);
    return r;
  }
  d->stats.inflated++;
  *out = d->iout;
  *out_len = have;
  return GW_INFLATE_OK;
}
