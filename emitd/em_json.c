/*
 * em_json.c - the strict JSON scanner (see em_json.h).
 *
 * Owns: RFC 8259's grammar over bytes, recursive descent bounded by
 * EM_JSON_DEPTH_MAX. Must not: allocate or read past end (every access
 * checks p < end first).
 */
#include "em_json.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

void em_json_init(em_json *j, const char *s, size_t len, char *err,
                  size_t errlen) {
  j->base = j->p = s;
  j->end = s + len;
  j->err = err;
  j->errlen = errlen;
}

int em_json_fail(em_json *j, const char *what) {
  if (j->err && j->errlen)
    snprintf(j->err, j->errlen, "%s at byte %zu", what, (size_t)(j->p - j->base));
  return -1;
}

void em_json_ws(em_json *j) {
  while (j->p < j->end &&
         (*j->p == ' ' || *j->p == '\t' || *j->p == '\r' || *j->p == '\n'))
    j->p++;
}

int em_json_take(em_json *j, char c) {
  em_json_ws(j);
  if (j->p < j->end && *j->p == c) {
    j->p++;
    return 1;
  }
  return 0;
}

int em_json_end(em_json *j) {
  em_json_ws(j);
  return j->p == j->end ? 0 : em_json_fail(j, "unexpected data after the value");
}

static int em_json__hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int em_json_string(em_json *j, const char **s, size_t *len) {
  em_json_ws(j);
  if (j->p >= j->end || *j->p != '"') return em_json_fail(j, "expected a string");
  const char *start = ++j->p;
  while (j->p < j->end) {
    unsigned char c = (unsigned char)*j->p;
    if (c == '"') {
      *s = start;
      *len = (size_t)(j->p - start);
      j->p++;
      return 0;
    }
    if (c < 0x20) return em_json_fail(j, "control character in a string");
    if (c != '\\') {
      j->p++;
      continue;
    }
    if (j->end - j->p < 2) break;
    char e = j->p[1];
    if (e == 'u') {
      if (j->end - j->p < 6) break;
      for (int i = 2; i < 6; i++)
        if (!em_json__hex(j->p[i])) return em_json_fail(j, "invalid \\u escape");
      j->p += 6;
    } else if (strchr("\"\\/bfnrt", e) && e) {
      j->p += 2;
    } else {
      return em_json_fail(j, "invalid escape");
    }
  }
  return em_json_fail(j, "unterminated string");
}

static int em_json__digits(em_json *j) {
  const char *s = j->p;
  while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
  return j->p > s;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int em_json__number(em_json *j) {
  if (j->p < j->end && *j->p == '-') j->p++;
  if (j->p >= j->end) return em_json_fail(j, "invalid number");
  if (*j->p == '0') {
    j->p++;
  } else if (!em_json__digits(j)) {
    return em_json_fail(j, "invalid number");
  }
  if (j->p < j->end && *j->p == '.') {
    j->p++;
    if (!em_json__digits(j)) return em_json_fail(j, "invalid number");
  }
  if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
    j->p++;
    if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
    if (!em_json__digits(j)) return em_json_fail(j, "invalid number");
  }
  return 0;
}

static int em_json__word(em_json *j, const char *w) {
  size_t n = strlen(w);
  if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n) != 0)
    return em_json_fail(j, "invalid literal");
  j->p += n;
  return 0;
}

static int em_json__any(em_json *j, int depth);

/* After '[' or '{': elements (members when obj) up to the closing byte. */
static int em_json__container(em_json *j, int depth, int obj) {
  if (depth >= EM_JSON_DEPTH_MAX) return em_json_fail(j, "nested too deep");
  char close = obj ? '}' : ']';
  j->p++;
  if (em_json_take(j, close)) return 0;
  for (;;) {
    if (obj) {
      const char *k;
      size_t kl;
      if (em_json_string(j, &k, &kl) < 0) return -1;
      if (!em_json_take(j, ':')) return em_json_fail(j, "expected ':'");
    }
    if (em_json__any(j, depth + 1) < 0) return -1;
    if (em_json_take(j, close)) return 0;
    if (!em_json_take(j, ',')) return em_json_fail(j, obj ? "expected ',' or '}'" : "expected ',' or ']'");
  }
}

static int em_json__any(em_json *j, int depth) {
  em_json_ws(j);
  if (j->p >= j->end) return em_json_fail(j, "expected a value");
  switch (*j->p) {
  case '{': return em_json__container(j, depth, 1);
  case '[': return em_json__container(j, depth, 0);
  case '"': {
    const char *s;
    size_t n;
    return em_json_string(j, &s, &n);
  }
  case 't': return em_json__word(j, "true");
  case 'f': return em_json__word(j, "false");
  case 'n': return em_json__word(j, "null");
  default:
    if (*j->p == '-' || (*j->p >= '0' && *j->p <= '9')) return em_json__number(j);
    return em_json_fail(j, "expected a value");
  }
}

int em_json_value(em_json *j, const char **start, size_t *len) {
  em_json_ws(j);
  const char *s = j->p;
  if (em_json__any(j, 0) < 0) return -1;
  assert(j->p > s && j->p <= j->end);
  *start = s;
  *len = (size_t)(j->p - s);
  return 0;
}

int em_json_document(const char *s, size_t len, char *err, size_t errlen) {
  em_json j;
  em_json_init(&j, s, len, err, errlen);
  const char *v;
  size_t n;
  if (em_json_value(&j, &v, &n) < 0) return -1;
  return em_json_end(&j);
}
