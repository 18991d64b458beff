/*
 * wsb_inflate.c - the load client's permessage-deflate decoder (--deflate).
 *
 * Owns: one raw inflate stream per client process and the buffer a
 * message is inflated into. The gateway answers server_no_context_takeover
 * (every message compressed alone), so the stream is reset before each
 * message and no connection keeps any state: 19,000 connections cost what
 * one does. Must not: know frames or connections (wsb_conn.c hands it a
 * message's payload and reads the result before the next call).
 *
 * RFC 7692 7.2.2: the 4 octets 00 00 ff ff the sender removed are appended
 * again. A message that ends in a final block (BFINAL, as a compressor
 * that writes whole streams makes) is read too: nothing may then follow it
 * but those 4 octets.
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

/* Inflates what is at next_in into zbuf from *have on, growing zbuf.
 * 1: the stream ended (final block), 0: the input is used up, -1: bad. */
static int wsb_inflate__run(wsb_proc *p, size_t *have) {
  for (;;) {
    if (*have == p->zbuf_cap) {
      size_t cap = p->zbuf_cap ? p->zbuf_cap * 2 : 16384;
      uint8_t *b = cap <= WSB_INFLATE_MAX ? realloc(p->zbuf, cap) : NULL;
      if (!b) return -1;
      p->zbuf = b;
      p->zbuf_cap = cap;
    }
    p->inf.next_out = p->zbuf + *have;
    p->inf.avail_out = (uInt)(p->zbuf_cap - *have);
    int rc = inflate(&p->inf, Z_SYNC_FLUSH);
    *have = p->zbuf_cap - p->inf.avail_out;
    if (rc == Z_STREAM_END) return 1;
    if (rc == Z_BUF_ERROR && p->inf.avail_in == 0) return 0; /* nothing left to do */
    if (rc != Z_OK) return -1;
    if (p->inf.avail_in == 0 && p->inf.avail_out > 0) return 0;
  }
}

int wsb_inflate(wsb_proc *p, const uint8_t *in, size_t len, const uint8_t **out,
                size_t *out_len) {
  size_t have = 0;
  inflateReset(&p->inf);
  p->inf.next_in = (Bytef *)in;
  p->inf.avail_in = (uInt)len;
  int r = wsb_inflate__run(p, &have);
  if (r == 0) { /* the usual case: the message ended on a sync flush */
    p->inf.next_in = (Bytef *)wsb_inflate__tail;
    p->inf.avail_in = sizeof wsb_inflate__tail;
    r = wsb_inflate__run(p, &have);
  } else if (r == 1 && p->inf.avail_in > 0) {
    /* A final block inside the payload: only padding may follow it (an
     * empty stored block's first byte, RFC 7692 7.2.3.2). */
    for (uInt i = 0; i < p->inf.avail_in; i++)
      if (p->inf.next_in[i] != 0) return -1;
  }
  if (r < 0) return -1;
  *out = p->zbuf;
  *out_len = have;
  return 0;
}
