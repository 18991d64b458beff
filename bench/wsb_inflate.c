/*
 * wsb_inflate.c - the load client's permessage-deflate decoder (--deflate,
 * --deflate-no-takeover).
 *
 * Owns: the raw inflate streams and the buffer a message is inflated into
 * (one per process: messages are read one at a time). Two ways, as the
 * gateway's 101 answered a connection (wsb_conn.c):
 *
 *  - server_no_context_takeover: every message was compressed alone, so
 *    one process-wide stream is reset before each message and a connection
 *    keeps no state: 19,000 connections cost what one does.
 *  - without it, the server keeps its context (RFC 7692 7.2.2): a message
 *    may refer back to the last 32 KiB the connection inflated, so each
 *    connection has its own stream (wsb_inflate_new), never reset. Its
 *    cost, measured with zlib 1.2.13: 7,160 bytes of inflate state at
 *    inflateInit2, 32,768 of window at the first message, 112 of z_stream:
 *    ~39 KiB, ~40 with malloc's overhead, so ~40 MB for 1,000 connections
 *    (wsbench's RSS at 1,000: 49 MB, against 10 MB with
 *    --deflate-no-takeover) and ~750 MB at 19,000 (that scale wants
 *    --deflate-no-takeover).
 *
 * Must not: know frames or connections (wsb_conn.c hands it a message's
 * payload and its stream, and reads the result before the next call).
 *
 * RFC 7692 7.2.2: the 4 octets 00 00 ff ff the sender removed are appended
 * again. A message that ends in a final block (BFINAL, as a compressor
 * that writes whole streams makes) is read on the reset stream: nothing may
 * then follow it but those 4 octets. On a kept stream it is an error: the
 * stream would be over and the next message could not be read; so is a
 * message that does not end between two blocks.
 */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "wsb.h"

#define WSB_INFLATE_MAX (16u << 20) /* as big as a frame may be (wsb_conn.c) */

static const uint8_t wsb_inflate__tail[4] = {0x00, 0x00, 0xff, 0xff};

int wsb_inflate_init(wsb_proc *p) {
  if (inflateInit2(&p->inf, -15) != Z_OK) return -1;
  p->inf_ready = 1;
  return 0;
}

void wsb_inflate_end(wsb_proc *p) {
  if (p->inf_ready) inflateEnd(&p->inf);
  p->inf_ready = 0;
  free(p->zbuf);
  p->zbuf = NULL;
  p->zbuf_cap = 0;
}

/* A 15-bit window whatever server_max_window_bits was answered: a bigger
 * window than the sender's reads its stream as well. */
z_stream *wsb_inflate_new(wsb_proc *p) {
  z_stream *zs = calloc(1, sizeof(*zs));
  if (!zs) return NULL;
  if (inflateInit2(zs, -15) != Z_OK) {
    free(zs);
    return NULL;
  }
  p->rep.zctx++;
  return zs;
}

void wsb_inflate_free(z_stream *zs) {
  if (!zs) return;
  inflateEnd(zs);
  free(zs);
}

/* Inflates what is at zs's next_in into zbuf from *have on, growing zbuf.
 * 1: the stream ended (final block), 0: the input is used up, -1: bad. */
static int wsb_inflate__run(wsb_proc *p, z_stream *zs, size_t *have) {
  for (;;) {
    if (*have == p->zbuf_cap) {
      size_t cap = p->zbuf_cap ? p->zbuf_cap * 2 : 16384;
      uint8_t *b = cap <= WSB_INFLATE_MAX ? realloc(p->zbuf, cap) : NULL;
      if (!b) return -1;
      p->zbuf = b;
      p->zbuf_cap = cap;
    }
    zs->next_out = p->zbuf + *have;
    zs->avail_out = (uInt)(p->zbuf_cap - *have);
    int rc = inflate(zs, Z_SYNC_FLUSH);
    *have = p->zbuf_cap - zs->avail_out;
    if (rc == Z_STREAM_END) return 1;
    if (rc == Z_BUF_ERROR && zs->avail_in == 0) return 0; /* nothing left to do */
    if (rc != Z_OK) return -1;
    if (zs->avail_in == 0 && zs->avail_out > 0) return 0;
  }
}

/* The payload, then the 4 octets. 1: a final block came (the stream is
 * over), 0: it did not, -1: bad. */
static int wsb_inflate__message(wsb_proc *p, z_stream *zs, const uint8_t *in, size_t len,
                                size_t *have) {
  zs->next_in = (Bytef *)in;
  zs->avail_in = (uInt)len;
  int r = wsb_inflate__run(p, zs, have);
  if (r == 1) {
    /* A final block inside the payload: only padding may follow it (an
     * empty stored block's first byte, RFC 7692 7.2.3.2). */
    for (uInt i = 0; i < zs->avail_in; i++)
      if (zs->next_in[i] != 0) return -1;
    return 1;
  }
  if (r < 0) return -1;
  zs->next_in = (Bytef *)wsb_inflate__tail;
  zs->avail_in = sizeof wsb_inflate__tail;
  return wsb_inflate__run(p, zs, have);
}

int wsb_inflate(wsb_proc *p, z_stream *kept, const uint8_t *in, size_t len,
                const uint8_t **out, size_t *out_len) {
  size_t have = 0;
  z_stream *zs = kept ? kept : &p->inf;
  if (!kept) inflateReset(zs);
  int r = wsb_inflate__message(p, zs, in, len, &have);
  if (r < 0 || (r == 1 && kept)) return -1;
  /* A kept stream must stop between blocks (zlib's data_type bit 128), as
   * the empty stored block 00 00 ff ff ends it; a payload that leaves a
   * block open (an empty one: the 4 octets then read as a block's header
   * and length) would garble the next message instead of failing here. */
  if (kept && !(zs->data_type & 128)) return -1;
  *out = p->zbuf;
  *out_len = have;
  return 0;
}
