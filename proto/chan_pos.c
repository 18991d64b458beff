/*
 * chan_pos.c - positions: format, parse, digest and tag (see chan_pos.h).
 *
 * FNV-1a because it is a few instructions per byte and needs no key: the
 * tag guards against accidents (a position from another group or another
 * history), not against a client, which could only read what it may read.
 * Cost: one pass over each message's body on the thread that reads the
 * stream, and one over a group name per tag.
 */
#include "chan_pos.h"

#define CHAN_POS_FNV_BASIS 0xcbf29ce484222325ull
#define CHAN_POS_FNV_PRIME 0x100000001b3ull
#define CHAN_POS_TAG_MASK 0xffffffffffffull
#define CHAN_POS_TAG_DIGITS 12

static uint64_t chan_pos__fnv(uint64_t h, const void *data, size_t len) {
  const unsigned char *p = data;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= CHAN_POS_FNV_PRIME;
  }
  return h;
}

static uint64_t chan_pos__fnv_u64(uint64_t h, uint64_t v) {
  unsigned char b[8];
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
  return chan_pos__fnv(h, b, sizeof b);
}

uint64_t chan_pos_digest(uint64_t offset, const char *key, size_t klen,
                         const void *body, size_t blen) {
  uint64_t h = chan_pos__fnv_u64(CHAN_POS_FNV_BASIS, offset);
  h = chan_pos__fnv(h, key, klen);
  h = chan_pos__fnv(h, "", 1);
  return chan_pos__fnv(h, body, blen);
}

uint64_t chan_pos_tag(const char *group, size_t glen, uint64_t digest) {
  uint64_t h = chan_pos__fnv_u64(CHAN_POS_FNV_BASIS, digest);
  return chan_pos__fnv(h, group, glen) & CHAN_POS_TAG_MASK;
}

int chan_pos_format(char *out, uint64_t offset, uint64_t tag) {
  char digits[20];
  int n = 0;
  do {
    digits[n++] = (char)('0' + offset % 10);
    offset /= 10;
  } while (offset);
  int len = 0;
  while (n) out[len++] = digits[--n];
  out[len++] = '-';
  static const char hex[] = "0123456789abcdef";
  for (int i = CHAN_POS_TAG_DIGITS - 1; i >= 0; i--)
    out[len++] = hex[(tag >> (4 * i)) & 0xf];
  out[len] = '\0';
  return len;
}

static int chan_pos__hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

int chan_pos_parse(const char *s, size_t len, uint64_t *offset, uint64_t *tag) {
  size_t i = 0;
  uint64_t off = 0;
  while (i < len && s[i] >= '0' && s[i] <= '9') {
    if (i == 19) return -1;
    if (i == 1 && s[0] == '0') return -1; /* a leading zero */
    uint64_t d = (uint64_t)(s[i] - '0');
    if (off > (INT64_MAX - d) / 10) return -1; /* past 63 bits */
    off = off * 10 + d;
    i++;
  }
  if (i == 0 || i >= len || s[i] != '-' || len - i - 1 != CHAN_POS_TAG_DIGITS) return -1;
  uint64_t t = 0;
  for (i++; i < len; i++) {
    int v = chan_pos__hex(s[i]);
    if (v < 0) return -1;
    t = (t << 4) | (uint64_t)v;
  }
  *offset = off;
  *tag = t;
  return 0;
}
