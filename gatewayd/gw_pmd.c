/*
 * gw_pmd.c - permessage-deflate negotiation (see gw_pmd.h).
 *
 * A hand-written reader of one header's small grammar: no library in
 * Debian parses Sec-WebSocket-Extensions on its own (llhttp stops at the
 * header value). It never writes into the request, reads at most to the
 * value's NUL, and keeps no state between calls.
 */
#include "gw_pmd.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

typedef struct gw_pmd__reader {
  const char *p;
} gw_pmd__reader;

/* An HTTP token character (RFC 7230 section 3.2.6). */
static int gw_pmd__tchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void gw_pmd__ows(gw_pmd__reader *r) {
  while (*r->p == ' ' || *r->p == '\t') r->p++;
}

/* A token into out (NUL-terminated, cut at cap - 1: a longer one is no
 * name or value this file knows, and stays unequal to them). 0 when none. */
static size_t gw_pmd__token(gw_pmd__reader *r, char *out, size_t cap) {
  size_t n = 0;
  while (gw_pmd__tchar(*r->p)) {
    if (n + 1 < cap) out[n] = *r->p;
    n++;
    r->p++;
  }
  out[n < cap ? n : cap - 1] = '\0';
  return n;
}

/* A quoted string's content into out, as gw_pmd__token; -1 when it is not
 * closed. RFC 6455 9.1: its content must then be a token. */
static int gw_pmd__quoted(gw_pmd__reader *r, char *out, size_t cap) {
  size_t n = 0;
  int token = 1;
  r->p++; /* the opening quote */
  for (;;) {
    char c = *r->p;
    if (c == '\0') return -1;
    r->p++;
    if (c == '"') break;
    if (c == '\\') {
      c = *r->p;
      if (c == '\0') return -1;
      r->p++;
    }
    token &= gw_pmd__tchar(c);
    if (n + 1 < cap) out[n] = c;
    n++;
  }
  out[n < cap ? n : cap - 1] = '\0';
  return token && n > 0 ? (int)n : 0;
}

/* A window size: "8".."15", no sign, no leading zero. */
static int gw_pmd__bits(const char *v) {
  if (strcmp(v, "8") == 0 || strcmp(v, "9") == 0) return v[0] - '0';
  if (v[0] == '1' && v[1] >= '0' && v[1] <= '5' && v[2] == '\0') return 10 + v[1] - '0';
  return 0;
}

typedef struct gw_pmd__offer {
  int ok;       /* every parameter valid so far */
  unsigned seen; /* parameters met, one bit each */
  int server_bits;
} gw_pmd__offer;

/* One parameter of a permessage-deflate offer (section 7.1): has_value
 * and value as read. */
static void gw_pmd__param(gw_pmd__offer *o, const char *name, int has_value, const char *value) {
  static const char *const names[] = {"server_no_context_takeover", "client_no_context_takeover",
                                      "server_max_window_bits", "client_max_window_bits"};
  unsigned i = 0;
  while (i < 4 && strcasecmp(name, names[i]) != 0) i++;
  if (i == 4 || (o->seen & (1u << i))) { /* unknown, or repeated */
    o->ok = 0;
    return;
  }
  o->seen |= 1u << i;
  switch (i) {
    case 0:
    case 1: o->ok &= !has_value; break;
    case 2:
      o->server_bits = has_value ? gw_pmd__bits(value) : 0;
      o->ok &= o->server_bits != 0;
      break;
    default: o->ok &= !has_value || gw_pmd__bits(value) != 0; break;
  }
}

/* Reads one offer's parameters (after its name). -1: the header breaks
 * the grammar here, so nothing after it can be read either. */
static int gw_pmd__params(gw_pmd__reader *r, gw_pmd__offer *o) {
  for (;;) {
    gw_pmd__ows(r);
    if (*r->p != ';') return 0;
    r->p++;
    gw_pmd__ows(r);
    char name[32], value[32] = "";
    if (gw_pmd__token(r, name, sizeof name) == 0) return -1;
    gw_pmd__ows(r);
    int has_value = *r->p == '=';
    if (has_value) {
      r->p++;
      gw_pmd__ows(r);
      int n = *r->p == '"' ? gw_pmd__quoted(r, value, sizeof value)
                           : (int)gw_pmd__token(r, value, sizeof value);
      if (n < 0) return -1;
      if (n == 0) o->ok = 0; /* an empty or non-token value */
    }
    gw_pmd__param(o, name, has_value, value);
  }
}

int gw_pmd_negotiate(const char *value, char answer[GW_PMD_ANSWER_MAX]) {
  gw_pmd__reader r = {value ? value : ""};
  for (;;) {
    gw_pmd__ows(&r);
    while (*r.p == ',') { /* empty list elements are allowed (RFC 7230 7) */
      r.p++;
      gw_pmd__ows(&r);
    }
    if (*r.p == '\0') return 0;
    char ext[32];
    if (gw_pmd__token(&r, ext, sizeof ext) == 0) return 0;
    gw_pmd__offer o = {1, 0, 15};
    if (gw_pmd__params(&r, &o) != 0) return 0;
    gw_pmd__ows(&r);
    if (*r.p != ',' && *r.p != '\0') return 0;
    if (!o.ok || strcasecmp(ext, "permessage-deflate") != 0) continue;
    int alone = (o.seen & 1u) != 0; /* server_no_context_takeover asked for */
    int n = snprintf(answer, GW_PMD_ANSWER_MAX, "permessage-deflate%s; client_no_context_takeover",
                     alone ? "; server_no_context_takeover" : "");
    if (o.seen & 4u) /* asked for: must be answered, with its value or less */
      snprintf(answer + n, GW_PMD_ANSWER_MAX - (size_t)n, "; server_max_window_bits=%d",
               o.server_bits);
    if (o.server_bits < 15) return GW_PMD_RECV;
    return GW_PMD_RECV | GW_PMD_SEND | (alone ? 0 : GW_PMD_CHAIN);
  }
}
