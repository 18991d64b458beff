/*
 * gw_buf.c - reference-counted frame buffers (see gw_buf.h).
 */
#include "gw_buf.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

gw_buf *gw_buf_new(size_t len) {
  if (len > GW_BUF_MAX) return NULL;
  gw_buf *b = malloc(sizeof(*b) + len);
  if (!b) return NULL;
  b->refs = 1;
  b->len = (uint32_t)len;
  b->serial = 0;
  b->z = b->zc = NULL;
  b->zc_after = 0;
  return b;
}

/* RFC 6455 section 5.2: FIN set, no RSV bits, no mask from a server. */
static size_t gw_buf__frame_header(uint8_t *h, int opcode, size_t len) {
  h[0] = (uint8_t)(0x80 | (opcode & 0x0f));
  if (len < 126) {
    h[1] = (uint8_t)len;
    return 2;
  }
  if (len <= 0xffff) {
    h[1] = 126;
    h[2] = (uint8_t)(len >> 8);
    h[3] = (uint8_t)len;
    return 4;
  }
  h[1] = 127;
  for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
  return 10;
}

const uint8_t *gw_buf_payload(const gw_buf *b, size_t *len) {
  uint8_t l7 = b->data[1] & 0x7f;
  size_t hdr = l7 < 126 ? 2 : l7 == 126 ? 4 : 10;
  assert(b->len >= hdr);
  *len = b->len - hdr;
  return b->data + hdr;
}

uint64_t gw_buf_serial(gw_buf *b) {
  static uint64_t last; /* the loop thread's */
  if (!b->serial) b->serial = ++last;
  return b->serial;
}

size_t gw_buf_heap_bytes(const gw_buf *b) {
  if (!b) return 0;
  size_t n = sizeof(*b) + b->len;
  if (b->z && b->z != b) n += sizeof(*b) + b->z->len;
  if (b->zc && b->zc != b->z && b->zc != b) n += sizeof(*b) + b->zc->len;
  return n;
}

gw_buf *gw_buf_frame_new(int opcode, size_t len, uint8_t **payload) {
  uint8_t header[10];
  size_t hlen = gw_buf__frame_header(header, opcode, len);
  if (len > GW_BUF_MAX - hlen) return NULL;
  gw_buf *b = gw_buf_new(hlen + len);
  if (!b) return NULL;
  memcpy(b->data, header, hlen);
  *payload = b->data + hlen;
  return b;
}

gw_buf *gw_buf_frame(int opcode, const void *payload, size_t len) {
  uint8_t *p;
  gw_buf *b = gw_buf_frame_new(opcode, len, &p);
  if (b && len) memcpy(p, payload, len);
  return b;
}

void gw_buf_unref(gw_buf *b) {
  assert(!b || b->refs > 0); /* one unref per reference */
  if (b && --b->refs == 0) {
    if (b->z != b) gw_buf_unref(b->z); /* a twin has no twin: one level */
    if (b->zc != b) gw_buf_unref(b->zc);
    free(b);
  }
}
