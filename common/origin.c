/*
 * origin.c - parsing and comparing web origins (origin.h).
 *
 * Owns: the one parser both daemons use. Must not: allocate, log or keep
 * state: it runs on every handshake of the gateway's event loop.
 */
#include "origin.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Longest host kept: a DNS name is at most 253 characters. */
#define ORIGIN_HOST_MAX 255

typedef struct origin_parts {
  char scheme[8];
  char host[ORIGIN_HOST_MAX + 1]; /* lower case; IPv6 keeps its brackets */
  long port;                      /* explicit, else -1 */
} origin_parts;

static long origin__default_port(const char *scheme) {
  if (strcmp(scheme, "http") == 0 || strcmp(scheme, "ws") == 0) return 80;
  if (strcmp(scheme, "https") == 0 || strcmp(scheme, "wss") == 0) return 443;
  return -1;
}

/* "host[:port]" of s[0..n) into p->host and p->port. 0, or -1 when it is
 * not one (empty host, bad port, a character no host has). */
static int origin__authority(const char *s, size_t n, origin_parts *p) {
  size_t hlen;
  const char *colon;
  p->port = -1;
  if (n > 0 && s[0] == '[') {
    const char *close = memchr(s, ']', n);
    if (!close) return -1;
    hlen = (size_t)(close - s) + 1;
    colon = hlen < n ? s + hlen : NULL;
    if (colon && *colon != ':') return -1;
  } else {
    colon = memchr(s, ':', n);
    hlen = colon ? (size_t)(colon - s) : n;
  }
  if (hlen == 0 || hlen > ORIGIN_HOST_MAX) return -1;
  for (size_t i = 0; i < hlen; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!(isalnum(c) || c == '-' || c == '.' || c == '_' ||
          (s[0] == '[' && (c == ':' || c == '[' || c == ']'))))
      return -1;
    p->host[i] = (char)tolower(c);
  }
  p->host[hlen] = '\0';
  if (colon) {
    const char *d = colon + 1, *end = s + n;
    long v = 0;
    if (d == end || end - d > 5) return -1;
    for (; d < end; d++) {
      if (!isdigit((unsigned char)*d)) return -1;
      v = v * 10 + (*d - '0');
    }
    if (v > 65535) return -1;
    p->port = v;
  }
  return 0;
}

/* An Origin value (trimmed s[0..n)) into p; -1 when it is no origin. */
static int origin__parse(const char *s, size_t n, origin_parts *p) {
  while (n && (s[0] == ' ' || s[0] == '\t')) s++, n--;
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
  if (n && s[n - 1] == '/') n--;
  const char *sep = NULL;
  for (size_t i = 0; i + 2 < n; i++)
    if (s[i] == ':' && s[i + 1] == '/' && s[i + 2] == '/') {
      sep = s + i;
      break;
    }
  if (!sep || sep == s || (size_t)(sep - s) >= sizeof p->scheme) return -1;
  size_t sl = (size_t)(sep - s);
  for (size_t i = 0; i < sl; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!isalpha(c)) return -1;
    p->scheme[i] = (char)tolower(c);
  }
  p->scheme[sl] = '\0';
  const char *a = sep + 3;
  size_t alen = (size_t)(s + n - a);
  /* A path, query, fragment or user part makes it a URL, not an origin. */
  for (size_t i = 0; i < alen; i++)
    if (strchr("/?#@", a[i])) return -1;
  if (origin__authority(a, alen, p) != 0) return -1;
  if (p->port < 0) p->port = origin__default_port(p->scheme);
  return 0;
}

static int origin__same(const origin_parts *a, const origin_parts *b) {
  return strcmp(a->scheme, b->scheme) == 0 && strcmp(a->host, b->host) == 0 &&
         a->port == b->port;
}

int origin_in_list(const char *origin, const char *list) {
  origin_parts want, entry;
  if (!origin || !list) return 0;
  if (origin__parse(origin, strlen(origin), &want) != 0) return 0;
  const char *p = list;
  while (*p) {
    size_t n = strcspn(p, ",");
    if (origin__parse(p, n, &entry) == 0 && origin__same(&want, &entry))
      return 1;
    p += n;
    if (*p == ',') p++;
  }
  return 0;
}

int origin_same_host(const char *origin, const char *host) {
  origin_parts o, h;
  if (!origin || !host) return 0;
  if (origin__parse(origin, strlen(origin), &o) != 0) return 0;
  size_t n = strlen(host);
  while (n && (host[0] == ' ' || host[0] == '\t')) host++, n--;
  while (n && (host[n - 1] == ' ' || host[n - 1] == '\t')) n--;
  if (origin__authority(host, n, &h) != 0) return 0;
  if (strcmp(o.host, h.host) != 0) return 0;
  return h.port < 0 || h.port == o.port;
}

int origin_allowed(const char *origin, const char *host, const char *list) {
  if (!origin) return 0;
  if (list && list[strspn(list, " \t,")]) return origin_in_list(origin, list);
  return origin_same_host(origin, host);
}
