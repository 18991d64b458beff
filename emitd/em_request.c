/*
 * em_request.c - emit requests into messages (see em_request.h).
 *
 * Owns: the query and batch rules: a group named twice in one event is
 * refused (it would deliver the event twice), unknown members and query
 * parameters are refused (a typo must not emit to nobody), every message
 * counts against max_events (an event to three groups is three). Must not:
 * allocate more than the message list and one copy of the query.
 */
#include "em_request.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chan_group.h"
#include "chan_names.h"
#include "em_json.h"
#include "utf8.h"

#define EM_GROUP_RULE "1-128 of A-Z a-z 0-9 _ . : -"

void em_pubs_free(em_pubs *p) {
  free(p->v);
  free(p->names);
  memset(p, 0, sizeof *p);
}

static int em_request__fail(char *err, size_t errlen, int status, const char *fmt,
                            const char *a, size_t alen) {
  /* Quotes at most 64 bytes of what the client sent. */
  int n = alen > 64 ? 64 : (int)alen;
  snprintf(err, errlen, fmt, n, a ? a : "");
  return status;
}

static int em_request__push(em_pubs *p, size_t max_events, const char *g, size_t glen,
                            const char *t, size_t tlen, char *err, size_t errlen) {
  if (p->n >= max_events) {
    snprintf(err, errlen, "too many events: at most %zu messages (event x group) per request",
             max_events);
    return 413;
  }
  if (p->n == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 8;
    if (cap > max_events) cap = max_events;
    em_pub *v = realloc(p->v, cap * sizeof *v);
    if (!v) {
      snprintf(err, errlen, "out of memory");
      return 503;
    }
    p->v = v;
    p->cap = cap;
  }
  p->v[p->n++] = (em_pub){g, glen, t, tlen};
  return 0;
}

/* Group g is named again among the last k messages (those of one event). */
static int em_request__dup(const em_pubs *p, size_t k, const char *g, size_t glen) {
  for (size_t i = p->n - k; i < p->n; i++)
    if (p->v[i].glen == glen && memcmp(p->v[i].group, g, glen) == 0) return 1;
  return 0;
}

static int em_request__hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Percent-decodes s[0..n) into out ('+' is a space); the length, or -1. */
static long em_request__unescape(const char *s, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%') {
      if (i + 2 >= n) return -1; /* "%" or "%4" at the end */
      int hi = em_request__hex(s[i + 1]);
      int lo = em_request__hex(s[i + 2]);
      if (hi < 0 || lo < 0) return -1;
      out[o++] = (char)(hi * 16 + lo);
      i += 2;
    } else {
      out[o++] = s[i] == '+' ? ' ' : s[i];
    }
  }
  return (long)o;
}

static int em_request__check_event(const char *body, size_t blen, char *err,
                                   size_t errlen) {
  if (!utf8_valid(body, blen)) {
    snprintf(err, errlen, "body is not valid UTF-8");
    return 400;
  }
  char why[96];
  if (blen == 0) {
    snprintf(err, errlen, "body is empty: the event must be JSON");
    return 400;
  }
  if (em_json_document(body, blen, why, sizeof why) < 0) {
    snprintf(err, errlen, "body is not JSON: %s", why);
    return 400;
  }
  return 0;
}

int em_request_single(const char *query, size_t qlen, const char *body,
                      size_t blen, size_t max_events, em_pubs *out, char *err,
                      size_t errlen) {
  memset(out, 0, sizeof *out);
  out->names = malloc(qlen + 1);
  if (!out->names) {
    snprintf(err, errlen, "out of memory");
    return 503;
  }
  char *dst = out->names;
  const char *p = query, *end = query + qlen;
  while (p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *pe = amp ? amp : end;
    const char *eq = memchr(p, '=', (size_t)(pe - p));
    if (pe == p) { /* "a&&b": empty parameter */
      p = pe + 1;
      continue;
    }
    if (!eq || eq - p != 5 || memcmp(p, "group", 5) != 0)
      return em_request__fail(err, errlen, 400,
                              "unknown query parameter \"%.*s\" (only group=NAME)", p,
                              (size_t)((eq ? eq : pe) - p));
    long n = em_request__unescape(eq + 1, (size_t)(pe - eq - 1), dst);
    if (n < 0)
      return em_request__fail(err, errlen, 400, "invalid percent-encoding in \"%.*s\"", p,
                              (size_t)(pe - p));
    if (!chan_group_name_valid(dst, (size_t)n))
      return em_request__fail(err, errlen, 400,
                              "invalid group name \"%.*s\" (" EM_GROUP_RULE ")", dst,
                              (size_t)n);
    if (em_request__dup(out, out->n, dst, (size_t)n))
      return em_request__fail(err, errlen, 400, "group \"%.*s\" named twice", dst,
                              (size_t)n);
    int rc = em_request__push(out, max_events, dst, (size_t)n, body, blen, err, errlen);
    if (rc) return rc;
    dst += n;
    p = amp ? amp + 1 : end;
  }
  if (out->n == 0) {
    snprintf(err, errlen, "no group: name one with ?group=NAME");
    return 400;
  }
  return em_request__check_event(body, blen, err, errlen);
}

/* Reason for batch entry i, "events[i]: WHY". */
static int em_request__entry_fail(char *err, size_t errlen, size_t i, const char *why) {
  snprintf(err, errlen, "events[%zu]: %s", i, why);
  return 400;
}

/* One group name (a string value) of entry i, checked. */
static int em_request__group(em_json *j, size_t i, const char **g, size_t *glen,
                             char *err, size_t errlen) {
  char why[160];
  if (em_json_string(j, g, glen) < 0) {
    snprintf(why, sizeof why, "a group must be a string (%s)", j->err);
    return em_request__entry_fail(err, errlen, i, why);
  }
  if (!chan_group_name_valid(*g, *glen)) {
    int n = *glen > 64 ? 64 : (int)*glen;
    snprintf(why, sizeof why, "invalid group name \"%.*s\" (" EM_GROUP_RULE ")", n, *g);
    return em_request__entry_fail(err, errlen, i, why);
  }
  return 0;
}

static int em_request__entry(em_json *j, size_t i, size_t max_events, em_pubs *out,
                             const char **gs, size_t *gl, char *err, size_t errlen) {
  char why[160];
  if (!em_json_take(j, '{'))
    return em_request__entry_fail(err, errlen, i, "must be an object {\"groups\": [...], \"event\": ...}");
  size_t ng = 0;
  int seen_groups = 0, seen_group = 0, seen_event = 0;
  const char *ev = NULL;
  size_t evlen = 0;
  if (!em_json_take(j, '}')) {
    for (;;) {
      const char *k;
      size_t kl;
      if (em_json_string(j, &k, &kl) < 0 || !em_json_take(j, ':')) {
        return em_request__entry_fail(err, errlen, i, "malformed member");
      }
      if (kl == 6 && memcmp(k, "groups", 6) == 0 && !seen_groups) {
        seen_groups = 1;
        if (!em_json_take(j, '['))
          return em_request__entry_fail(err, errlen, i, "\"groups\" must be an array of group names");
        if (!em_json_take(j, ']')) {
          for (;;) {
            if (ng >= max_events) {
              snprintf(err, errlen, "too many events: at most %zu messages (event x group) per request",
                       max_events);
              return 413;
            }
            int rc = em_request__group(j, i, &gs[ng], &gl[ng], err, errlen);
            if (rc) return rc;
            for (size_t x = 0; x < ng; x++)
              if (gl[x] == gl[ng] && memcmp(gs[x], gs[ng], gl[ng]) == 0) {
                snprintf(why, sizeof why, "group \"%.*s\" named twice", (int)gl[ng], gs[ng]);
                return em_request__entry_fail(err, errlen, i, why);
              }
            ng++;
            if (em_json_take(j, ']')) break;
            if (!em_json_take(j, ','))
              return em_request__entry_fail(err, errlen, i, "malformed \"groups\" array");
          }
        }
      } else if (kl == 5 && memcmp(k, "group", 5) == 0 && !seen_group) {
        seen_group = 1;
        int rc = em_request__group(j, i, &gs[ng], &gl[ng], err, errlen);
        if (rc) return rc;
        ng++;
      } else if (kl == 5 && memcmp(k, "event", 5) == 0 && !seen_event) {
        seen_event = 1;
        if (em_json_value(j, &ev, &evlen) < 0) {
          snprintf(why, sizeof why, "\"event\" is not JSON: %s", j->err);
          return em_request__entry_fail(err, errlen, i, why);
        }
      } else {
        int n = kl > 32 ? 32 : (int)kl;
        snprintf(why, sizeof why, "unknown or repeated member \"%.*s\" (groups, group, event)", n, k);
        return em_request__entry_fail(err, errlen, i, why);
      }
      if (em_json_take(j, '}')) break;
      if (!em_json_take(j, ','))
        return em_request__entry_fail(err, errlen, i, "expected ',' or '}'");
    }
  }
  if (seen_group && seen_groups)
    return em_request__entry_fail(err, errlen, i, "give \"groups\" or \"group\", not both");
  if (!seen_event) return em_request__entry_fail(err, errlen, i, "no \"event\"");
  if (ng == 0) return em_request__entry_fail(err, errlen, i, "no group");
  for (size_t x = 0; x < ng; x++) {
    int rc = em_request__push(out, max_events, gs[x], gl[x], ev, evlen, err, errlen);
    if (rc) return rc;
  }
  return 0;
}

static int em_request__events(em_json *j, size_t max_events, em_pubs *out,
                              const char **gs, size_t *gl, char *err, size_t errlen) {
  if (!em_json_take(j, '[')) {
    snprintf(err, errlen, "\"events\" must be an array");
    return 400;
  }
  if (em_json_take(j, ']')) return 0;
  for (size_t i = 0;; i++) {
    char jerr[96] = "";
    j->err = jerr;
    j->errlen = sizeof jerr;
    int rc = em_request__entry(j, i, max_events, out, gs, gl, err, errlen);
    if (rc) return rc;
    if (em_json_take(j, ']')) return 0;
    if (!em_json_take(j, ',')) {
      snprintf(err, errlen, "events: expected ',' or ']' after entry %zu", i);
      return 400;
    }
  }
}

int em_request_batch(const char *body, size_t blen, size_t max_events,
                     em_pubs *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (!utf8_valid(body, blen)) {
    snprintf(err, errlen, "body is not valid UTF-8");
    return 400;
  }
  char why[96] = "";
  if (em_json_document(body, blen, why, sizeof why) < 0) {
    snprintf(err, errlen, "body is not JSON: %s", why);
    return 400;
  }
  /* Scratch for one entry's groups; an entry has at most max_events. */
  const char **gs = malloc((max_events + 1) * sizeof *gs);
  size_t *gl = malloc((max_events + 1) * sizeof *gl);
  int rc = 0;
  if (!gs || !gl) {
    snprintf(err, errlen, "out of memory");
    rc = 503;
    goto done;
  }
  em_json j;
  em_json_init(&j, body, blen, why, sizeof why);
  if (!em_json_take(&j, '{')) {
    snprintf(err, errlen, "body must be an object {\"events\": [...]}");
    rc = 400;
    goto done;
  }
  int seen = 0;
  if (!em_json_take(&j, '}')) {
    for (;;) {
      const char *k;
      size_t kl;
      /* The document is valid JSON: a member is a string, ':' and a value. */
      (void)em_json_string(&j, &k, &kl);
      (void)em_json_take(&j, ':');
      if (kl != 6 || memcmp(k, "events", 6) != 0 || seen) {
        int n = kl > 32 ? 32 : (int)kl;
        snprintf(err, errlen, "unknown or repeated member \"%.*s\" (only \"events\")", n, k);
        rc = 400;
        goto done;
      }
      seen = 1;
      rc = em_request__events(&j, max_events, out, gs, gl, err, errlen);
      if (rc) goto done;
      if (em_json_take(&j, '}')) break;
      (void)em_json_take(&j, ',');
    }
  }
  if (!seen) {
    snprintf(err, errlen, "no \"events\" member");
    rc = 400;
  }
done:
  free(gs);
  free(gl);
  assert(rc != 0 || out->n <= max_events);
  return rc;
}
