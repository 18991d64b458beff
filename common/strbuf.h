/*
 * strbuf.h - a growing text buffer: the metrics pages of every daemon, the
 * gateway's additions to replies and its notices.
 *
 * Owns: one heap block per buffer, grown by doubling, always NUL-terminated
 * once anything was written. After a failed allocation every later append
 * is ignored and `failed` is set, so a writer appends without checking and
 * looks once at the end (and answers 500, or closes 1011). Must not: know
 * what is written (no escaping: callers write only what needs none).
 */
#ifndef STRBUF_H
#define STRBUF_H

#include <stddef.h>

typedef struct strbuf {
  char *data;
  size_t len, cap;
  int failed;
} strbuf;

void strbuf_init(strbuf *b);
/* Frees data and empties b (it can be used again). */
void strbuf_free(strbuf *b);
/* Room for `more` bytes (and the NUL) without another allocation: for a
 * writer that knows its usual size. -1 once failed. */
int strbuf_reserve(strbuf *b, size_t more);
void strbuf_put(strbuf *b, const char *s, size_t n);
void strbuf_puts(strbuf *b, const char *s);
void strbuf_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
