/*
 * b64.c - base64 and base64url over OpenSSL's EVP_EncodeBlock and
 * EVP_DecodeBlock.
 *
 * Owns: the strictness those calls lack (EVP_DecodeBlock skips surrounding
 * whitespace, turns '=' anywhere into zero bits and accepts non-zero unused
 * bits) and the url-alphabet translation. Must not: accept any text but the
 * one canonical encoding of a byte string.
 */
#include "b64.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* The EVP block calls take an int length. */
#define B64_TEXT_MAX ((size_t)INT_MAX - 3)
#define B64_DATA_MAX (B64_TEXT_MAX / 4 * 3)

/* The 6-bit value of c in the standard or the url alphabet, or -1. */
static int b64__value(unsigned char c, int url) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == (url ? '-' : '+')) return 62;
  if (c == (url ? '_' : '/')) return 63;
  return -1;
}

/*
 * 1 when text (padding removed) is all alphabet and its last character has
 * no bits set beyond the final byte: 4k+2 characters leave 4 unused bits,
 * 4k+3 leave 2, and 4k+1 cannot encode anything.
 */
static int b64__digits_valid(const char *text, size_t len, int url) {
  if (len % 4 == 1) return 0;
  for (size_t i = 0; i < len; i++) {
    if (b64__value((unsigned char)text[i], url) < 0) return 0;
  }
  if (len % 4 == 0) return 1;
  int last = b64__value((unsigned char)text[len - 1], url);
  int unused = len % 4 == 2 ? 0x0f : 0x03;
  return (last & unused) == 0;
}

/* quads: validated standard base64, padded to a multiple of 4, of which the
 * last pad characters are '='. */
static int b64__decode_quads(const char *quads, size_t len, size_t pad,
                            char **out, size_t *outlen) {
  char *buf = malloc(len / 4 * 3 + 1);
  if (!buf) return -1;
  int n = EVP_DecodeBlock((unsigned char *)buf, (const unsigned char *)quads,
                          (int)len);
  if (n < 0 || (size_t)n < pad) {
    free(buf);
    return -1;
  }
  /* EVP_DecodeBlock decodes each '=' as a zero byte: drop those. */
  *outlen = (size_t)n - pad;
  buf[*outlen] = '\0';
  *out = buf;
  return 0;
}

char *b64_encode(const void *data, size_t len, size_t *outlen) {
  if (len > B64_DATA_MAX) return NULL;
  char *out = malloc((len + 2) / 3 * 4 + 1);
  if (!out) return NULL;
  /* Writes the padded text and a NUL. */
  int n = EVP_EncodeBlock((unsigned char *)out, data, (int)len);
  if (outlen) *outlen = (size_t)n;
  return out;
}

char *b64_url_encode(const void *data, size_t len, size_t *outlen) {
  size_t n;
  char *s = b64_encode(data, len, &n);
  if (!s) return NULL;
  while (n > 0 && s[n - 1] == '=') s[--n] = '\0';
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '+') s[i] = '-';
    else if (s[i] == '/') s[i] = '_';
  }
  if (outlen) *outlen = n;
  return s;
}

int b64_decode(const char *text, size_t len, char **out, size_t *outlen) {
  *out = NULL;
  if (!text || len % 4 != 0 || len > B64_TEXT_MAX) return -1;
  size_t pad = 0;
  while (pad < 2 && pad < len && text[len - 1 - pad] == '=') pad++;
  if (!b64__digits_valid(text, len - pad, 0)) return -1;
  return b64__decode_quads(text, len, pad, out, outlen);
}

int b64_url_decode(const char *text, size_t len, char **out, size_t *outlen) {
  *out = NULL;
  if (!text || len > B64_TEXT_MAX || !b64__digits_valid(text, len, 1)) return -1;
  /* Rewrite as standard padded base64, the only form OpenSSL decodes. */
  size_t pad = (4 - len % 4) % 4;
  char *quads = malloc(len + pad + 1);
  if (!quads) return -1;
  for (size_t i = 0; i < len; i++) {
    char c = text[i];
    quads[i] = c == '-' ? '+' : c == '_' ? '/' : c;
  }
  memset(quads + len, '=', pad);
  int rc = b64__decode_quads(quads, len + pad, pad, out, outlen);
  free(quads);
  return rc;
}
