/*
 * strbuf.c - a growing text buffer (see strbuf.h).
 *
 * Growth doubles, from 64 bytes or what the first append needs: a reply's
 * few hundred bytes cost two or three reallocs, a scrape's few KiB one
 * reserve (prom writers reserve 8 KiB up front).
 */
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STRBUF_MIN 64

void strbuf_init(strbuf *b) { memset(b, 0, sizeof(*b)); }

void strbuf_free(strbuf *b) {
  free(b->data);
  memset(b, 0, sizeof(*b));
}

int strbuf_reserve(strbuf *b, size_t more) {
  if (b->failed) return -1;
  if (b->len + more + 1 <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : STRBUF_MIN;
  while (cap < b->len + more + 1) cap *= 2;
  char *grown = realloc(b->data, cap);
  if (!grown) {
    b->failed = 1;
    return -1;
  }
  b->data = grown;
  b->cap = cap;
  return 0;
}

void strbuf_put(strbuf *b, const char *s, size_t n) {
  if (strbuf_reserve(b, n) != 0) return;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void strbuf_puts(strbuf *b, const char *s) { strbuf_put(b, s, strlen(s)); }

void strbuf_printf(strbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || strbuf_reserve(b, (size_t)n) != 0) return;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}
