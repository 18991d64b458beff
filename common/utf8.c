/*
 * utf8.c - strict UTF-8 validation (RFC 3629).
 *
 * Owns: the yes/no answer for a byte string. Must not: repair, replace or
 * allocate. Runs once per emitted event and per received text frame, so
 * ASCII (the bulk of JSON) is skipped eight bytes at a time; multi-byte
 * sequences take the byte-wise path below.
 */
#include "utf8.h"

#include <stdint.h>
#include <string.h>

#define UTF8_HIGH_BITS 0x8080808080808080ULL

/* Bytes [i, i + 8) are all ASCII. memcpy: an unaligned load done right. */
static int utf8__ascii8(const unsigned char *p) {
  uint64_t w;
  memcpy(&w, p, sizeof w);
  return (w & UTF8_HIGH_BITS) == 0;
}

static int utf8__cont(unsigned char c) { return (c & 0xC0) == 0x80; }

/*
 * Length of the valid sequence that starts with lead byte p[0] (>= 0x80),
 * or 0 when it is invalid or cut off by the end. The second byte's range
 * depends on the lead: that is where overlongs (E0, F0), surrogates (ED)
 * and code points past U+10FFFF (F4) are refused.
 */
static size_t utf8__seq(const unsigned char *p, size_t left) {
  unsigned char c = p[0];
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 3;
    if (c == 0xE0) lo = 0xA0;      /* below: overlong */
    else if (c == 0xED) hi = 0x9F; /* above: UTF-16 surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 4;
    if (c == 0xF0) lo = 0x90;      /* below: overlong */
    else if (c == 0xF4) hi = 0x8F; /* above: past U+10FFFF */
  } else {
    return 0; /* 80..C1 (continuation or overlong lead), F5..FF */
  }
  if (left < need || p[1] < lo || p[1] > hi) return 0;
  for (size_t i = 2; i < need; i++) {
    if (!utf8__cont(p[i])) return 0;
  }
  return need;
}

int utf8_valid(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < len) {
    if (len - i >= 8 && utf8__ascii8(p + i)) {
      i += 8;
    } else if (p[i] < 0x80) {
      i++;
    } else {
      size_t n = utf8__seq(p + i, len - i);
      if (n == 0) return 0;
      i += n;
    }
  }
  return 1;
}
