/*
 * wk_subscribe.c - a subscription request in, the new group set and the
 * client's reply texts out.
 *
 * Owns: the rules of docs/PROTOCOL.md "Subscribing": list vs non-list values,
 * whole-set replacement, sorted current/joined/left lists, one error text per
 * refused entry, the xrftoken check, the request-level errors (which
 * change nothing), and on wsgw.2 the check of "positions" and the
 * positions handed on. Must not: do I/O, log, or keep state between calls:
 * the same request on the same state gives the same result, on any worker.
 *
 * Request-level errors come in this order (docs/PROTOCOL.md): invalid
 * JSON, not an object, an unknown key, the xrftoken, "groups" not an
 * object, the groups' entries (names, channels, the count), then
 * "positions": not an object, and per entry in the order written, a key
 * that is not a group of the request, then a value that is not a
 * position. Positions are checked before any access is decided, so a
 * request refused for them costs no call to the application.
 *
 * Cost: one cJSON parse (one malloc per JSON node: cJSON's price), two walks
 * of the tree, one sort of at most max_groups names. The names live in one
 * block sized in the first walk, so beyond the parse a request costs a fixed
 * handful of mallocs plus one per refused entry. Positions add a third
 * walk (the request's names, sorted once) and one lookup per entry.
 */
#include "wk_subscribe.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chan_group.h"
#include "chan_names.h"
#include "chan_pos.h"

#define WK_SUB_PART_MAX 64 /* a key or value part, see chan_group.h */
#define WK_SUB_ECHO_MAX 64 /* bytes of an unknown key quoted back */
/* One request-level error message: the longest quotes a group name,
 * "position for a group not requested: " and CHAN_GROUP_NAME_MAX bytes. */
#define WK_SUB_MSG_MAX 192

/* --- small helpers ------------------------------------------------------ */

static void wk_subscribe__result_init(wk_subscribe_result *r) {
  memset(r, 0, sizeof *r);
}

void wk_subscribe_result_free(wk_subscribe_result *r) {
  for (size_t i = 0; i < r->n_texts; i++) free(r->texts[i].data);
  free(r->texts);
  free(r->groups);
  free(r->names_block);
  free(r->positions);
  wk_subscribe__result_init(r);
}

/* Appends a printf-formatted text to r->texts, whose room the caller
 * reserved. Returns 0 or -1 (no memory). */
static int wk_subscribe__add_text(wk_subscribe_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int wk_subscribe__add_text(wk_subscribe_result *r, const char *fmt,
                                 ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return -1;
  char *s = malloc((size_t)n + 1);
  if (!s) return -1;
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  r->texts[r->n_texts].data = s;
  r->texts[r->n_texts].len = (size_t)n;
  r->n_texts++;
  return 0;
}

/* The request failed as a whole: one error text, membership unchanged.
 * msg must be JSON-safe (no quote, backslash or control character). */
static int wk_subscribe__fail(wk_subscribe_result *r, const char *msg) {
  wk_subscribe_result_free(r);
  r->texts = malloc(sizeof *r->texts);
  if (!r->texts) return -1;
  if (wk_subscribe__add_text(r, "{\"error\": \"%s\"}", msg) != 0) {
    wk_subscribe_result_free(r);
    return -1;
  }
  return 0;
}

/* A client-chosen key quoted back in an error: printable ASCII only, at
 * most max bytes, and nothing that needs JSON escaping, so that a hostile
 * key can neither break the reply nor make it large. */
static void wk_subscribe__sanitize(const char *in, size_t max, char *out,
                                   size_t outlen) {
  size_t i = 0;
  for (; in[i] && i < max && i + 1 < outlen; i++) {
    unsigned char c = (unsigned char)in[i];
    out[i] = (c < 0x20 || c > 0x7e || c == '"' || c == '\\') ? '?' : (char)c;
  }
  out[i] = '\0';
}

/* Compares in time independent of where they differ (CSRF token). */
static int wk_subscribe__same_token(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  unsigned char diff = 0;
  if (la != lb) return 0;
  for (size_t i = 0; i < la; i++) diff |= (unsigned char)(a[i] ^ b[i]);
  return diff == 0;
}

/* The text of a list element as a name part: a valid string, or a
 * non-negative integer (ids are often sent as numbers). 0 when neither. */
static int wk_subscribe__value_part(const cJSON *v, char *buf, size_t buflen) {
  if (cJSON_IsString(v)) {
    size_t n = strlen(v->valuestring);
    if (n >= buflen || !chan_group_part_valid(v->valuestring, n)) return 0;
    memcpy(buf, v->valuestring, n + 1);
    return 1;
  }
  if (cJSON_IsNumber(v)) {
    /* Up to 2^53 - 1 only: 9007199254740993 parses as 2^53, so 2^53 and
     * above could name a neighbour of what the client wrote. */
    double d = v->valuedouble; /* NaN fails the range test too */
    if (!(d >= 0 && d <= 9007199254740991.0)) return 0;
    if (d != (double)(long long)d) return 0;
    snprintf(buf, buflen, "%lld", (long long)d);
    return 1;
  }
  return 0;
}

static int wk_subscribe__cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts v and removes duplicates; returns the new count. */
static size_t wk_subscribe__sort_unique(char **v, size_t n) {
  size_t out = 0;
  if (n == 0) return 0;
  qsort(v, n, sizeof *v, wk_subscribe__cmp);
  for (size_t i = 1; i < n; i++)
    if (strcmp(v[i], v[out]) != 0) v[++out] = v[i];
  return out + 1;
}

/* --- request shape ------------------------------------------------------ */

/* Top level: only "groups" and "xrftoken" (and "positions" on wsgw.2, set
 * in *positions, else NULL), the CSRF check, groups an object. Returns the
 * groups object, or NULL with the client message in msg. */
static const cJSON *wk_subscribe__top(const cJSON *root, const wk_session *s,
                                     const cJSON **positions, char *msg,
                                     size_t msglen) {
  const cJSON *item, *groups = NULL, *xrf = NULL;
  char name[WK_SUB_ECHO_MAX + 1];
  *positions = NULL;
  cJSON_ArrayForEach(item, root) {
    if (strcmp(item->string, "groups") == 0) {
      groups = item;
    } else if (strcmp(item->string, "xrftoken") == 0) {
      xrf = item;
    } else if (s->positions && strcmp(item->string, "positions") == 0) {
      *positions = item;
    } else {
      wk_subscribe__sanitize(item->string, WK_SUB_ECHO_MAX, name, sizeof name);
      snprintf(msg, msglen, "unknown key: %s", name);
      return NULL;
    }
  }
  if (s->csrftoken && s->csrftoken[0] &&
      !(cJSON_IsString(xrf) &&
        wk_subscribe__same_token(xrf->valuestring, s->csrftoken))) {
    snprintf(msg, msglen, "xrftoken mismatch");
    return NULL;
  }
  if (!cJSON_IsObject(groups)) {
    snprintf(msg, msglen, "groups must be an object");
    return NULL;
  }
  return groups;
}

/* Room the second walk needs: entries (duplicates included) and bytes. */
typedef struct wk_subscribe_size {
  size_t entries;
  size_t bytes;
} wk_subscribe_size;

/* Counts one name; -1 with the message when it breaks a rule. */
static int wk_subscribe__count(wk_subscribe_size *sz, const char *key,
                              const char *part, size_t max_groups, char *msg,
                              size_t msglen) {
  char name[CHAN_GROUP_NAME_MAX + 1];
  int n = chan_group_name_make(name, sizeof name, key, part);
  if (n < 0) {
    snprintf(msg, msglen, "invalid group name");
    return -1;
  }
  if (++sz->entries > max_groups) {
    snprintf(msg, msglen, "too many groups");
    return -1;
  }
  sz->bytes += (size_t)n + 1;
  return 0;
}

/* First walk: every key a valid, known channel, every value a valid part,
 * at most max_groups entries. Nothing is decided about access yet. */
static int wk_subscribe__scan(const cJSON *groups, const wk_policy *p,
                             size_t max_groups, wk_subscribe_size *sz,
                             char *msg, size_t msglen) {
  const cJSON *k, *v;
  wk_policy_kind kind;
  char part[WK_SUB_PART_MAX + 1];
  cJSON_ArrayForEach(k, groups) {
    if (!chan_group_part_valid(k->string, strlen(k->string))) {
      snprintf(msg, msglen, "invalid group name");
      return -1;
    }
    if (!wk_policy_find(p, k->string, &kind)) {
      snprintf(msg, msglen, "unknown channel: %s", k->string);
      return -1;
    }
    if (cJSON_IsArray(k)) {
      cJSON_ArrayForEach(v, k) {
        if (!wk_subscribe__value_part(v, part, sizeof part)) {
          snprintf(msg, msglen, "invalid group name");
          return -1;
        }
        if (wk_subscribe__count(sz, k->string, part, max_groups, msg, msglen))
          return -1;
      }
    } else if (cJSON_IsObject(k)) {
      if (k->child) { /* only {} is allowed, meaning "nothing" */
        snprintf(msg, msglen, "invalid group name");
        return -1;
      }
    } else if (wk_subscribe__count(sz, k->string, NULL, max_groups, msg,
                                  msglen)) {
      return -1;
    }
  }
  return 0;
}

/* --- positions (wsgw.2) ------------------------------------------------- */

/* The names the request asks for (before any access is decided), sorted
 * and unique, and per name the position the request gives it (the value
 * item, checked), or NULL. */
typedef struct wk_subscribe_req {
  char **names;
  size_t n;
  char *block; /* the names, NUL-separated */
  const cJSON **pos;
} wk_subscribe_req;

static void wk_subscribe__req_free(wk_subscribe_req *q) {
  free(q->names);
  free(q->block);
  free(q->pos);
  memset(q, 0, sizeof *q);
}

/* Appends the name of (key, part) at q->block + *used. */
static void wk_subscribe__req_add(wk_subscribe_req *q, size_t *used,
                                  const char *key, const char *part) {
  char *dst = q->block + *used;
  /* The scan sized the block with the same calls, and they succeeded. */
  int n = chan_group_name_make(dst, CHAN_GROUP_NAME_MAX + 1, key, part);
  assert(n > 0);
  q->names[q->n++] = dst;
  *used += (size_t)n + 1;
}

/* Third walk (the request is well-formed: the scan checked it): every name
 * the request asks for into q. 0, or -1 when out of memory. */
static int wk_subscribe__req_names(const cJSON *groups,
                                   const wk_subscribe_size *sz,
                                   wk_subscribe_req *q) {
  const cJSON *k, *v;
  char part[WK_SUB_PART_MAX + 1];
  size_t used = 0;
  q->names = malloc((sz->entries + 1) * sizeof *q->names);
  q->block = malloc(sz->bytes + 1);
  q->pos = calloc(sz->entries + 1, sizeof *q->pos);
  if (!q->names || !q->block || !q->pos) return -1;
  cJSON_ArrayForEach(k, groups) {
    if (cJSON_IsArray(k)) {
      cJSON_ArrayForEach(v, k) {
        wk_subscribe__value_part(v, part, sizeof part);
        wk_subscribe__req_add(q, &used, k->string, part);
      }
    } else if (!cJSON_IsObject(k)) {
      wk_subscribe__req_add(q, &used, k->string, NULL);
    }
  }
  q->n = wk_subscribe__sort_unique(q->names, q->n);
  return 0;
}

/* Index of name in q->names, or -1. */
static long wk_subscribe__req_find(const wk_subscribe_req *q, const char *name) {
  if (q->n == 0) return -1;
  char *const *hit = bsearch(&name, q->names, q->n, sizeof *q->names,
                             wk_subscribe__cmp);
  return hit ? (long)(hit - q->names) : -1;
}

/* "positions": an object whose every key is a group the request names and
 * every value a position (chan_pos_parse), checked in the order written.
 * 0 with q filled; 1 with the client message in msg; -1 out of memory. */
static int wk_subscribe__positions(const cJSON *positions, const cJSON *groups,
                                   const wk_subscribe_size *sz,
                                   wk_subscribe_req *q, char *msg,
                                   size_t msglen) {
  const cJSON *e;
  uint64_t offset, tag;
  char name[CHAN_GROUP_NAME_MAX + 1];
  if (!cJSON_IsObject(positions)) {
    snprintf(msg, msglen, "positions must be an object");
    return 1;
  }
  if (!positions->child) return 0;
  if (wk_subscribe__req_names(groups, sz, q) != 0) return -1;
  cJSON_ArrayForEach(e, positions) {
    long i = wk_subscribe__req_find(q, e->string);
    if (i < 0) {
      wk_subscribe__sanitize(e->string, CHAN_GROUP_NAME_MAX, name, sizeof name);
      snprintf(msg, msglen, "position for a group not requested: %s", name);
      return 1;
    }
    if (!cJSON_IsString(e) ||
        chan_pos_parse(e->valuestring, strlen(e->valuestring), &offset,
                       &tag) != 0) {
      /* A name the request made: valid, so JSON-safe. */
      snprintf(msg, msglen, "invalid position for %s", q->names[i]);
      return 1;
    }
    q->pos[i] = e; /* named twice: the last one counts, as in JavaScript */
  }
  return 0;
}

/* The result's positions: for each group of the new membership (a subset
 * of the request's names) the position the request gave it. 0 or -1. */
static int wk_subscribe__positions_out(wk_subscribe_result *r,
                                       const wk_subscribe_req *q) {
  r->positions = malloc((r->n_groups + 1) * sizeof *r->positions);
  if (!r->positions) return -1;
  r->has_positions = 1;
  for (size_t i = 0; i < r->n_groups && q->n; i++) {
    long k = wk_subscribe__req_find(q, r->groups[i]);
    assert(k >= 0); /* joined names are requested names */
    if (k < 0 || !q->pos[k]) continue;
    chan_reply_pos *p = &r->positions[r->n_positions];
    const char *v = q->pos[k]->valuestring;
    if (chan_pos_parse(v, strlen(v), &p->offset, &p->tag) != 0) continue;
    snprintf(p->group, sizeof p->group, "%s", r->groups[i]);
    r->n_positions++;
  }
  return 0;
}

/* --- applying the policy ------------------------------------------------ */

/* Second-walk state: names written into r->names_block at used. */
typedef struct wk_subscribe_build {
  wk_subscribe_result *r;
  size_t used;
  const wk_session *s;
  const wk_policy *p;
} wk_subscribe_build;

/* One entry: joins (records the name) or is refused (an error text): the
 * user may not, or the channel lists its values and this is not one. */
static int wk_subscribe__entry(wk_subscribe_build *b, wk_policy_kind kind,
                              const char *key, const char *part) {
  wk_subscribe_result *r = b->r;
  int ok = wk_policy_allows(kind, key, part, b->s->user_id, b->s->objects);
  if (!ok && kind == WK_POLICY_OBJECT && part && b->s->decide)
    ok = b->s->decide(b->s->decide_arg, key, part) == 1;
  if (!ok || !wk_policy_value_allowed(b->p, key, part)) {
    if (part)
      return wk_subscribe__add_text(
          r, "{\"error\": \"access denied to channel %s for resource id %s\"}",
          key, part);
    return wk_subscribe__add_text(
        r, "{\"error\": \"access denied to channel %s\"}", key);
  }
  char *dst = r->names_block + b->used;
  /* The first walk sized the block with the same calls: this fits. */
  int n = chan_group_name_make(dst, CHAN_GROUP_NAME_MAX + 1, key, part);
  if (n < 0) return -1;
  r->groups[r->n_groups++] = dst;
  b->used += (size_t)n + 1;
  return 0;
}

static int wk_subscribe__walk(wk_subscribe_build *b, const cJSON *groups,
                             const wk_policy *p) {
  const cJSON *k, *v;
  wk_policy_kind kind = WK_POLICY_OPEN;
  char part[WK_SUB_PART_MAX + 1];
  cJSON_ArrayForEach(k, groups) {
    wk_policy_find(p, k->string, &kind); /* known: the scan checked */
    if (cJSON_IsArray(k)) {
      cJSON_ArrayForEach(v, k) {
        wk_subscribe__value_part(v, part, sizeof part);
        if (wk_subscribe__entry(b, kind, k->string, part) != 0) return -1;
      }
    } else if (!cJSON_IsObject(k)) {
      if (wk_subscribe__entry(b, kind, k->string, NULL) != 0) return -1;
    }
  }
  return 0;
}

/* --- the reply ---------------------------------------------------------- */

/* joined = next \ prev, left = prev \ next; both inputs sorted, unique. */
static void wk_subscribe__diff(char *const *prev, size_t n_prev,
                              char *const *next, size_t n_next, char **joined,
                              size_t *n_joined, char **left, size_t *n_left) {
  size_t i = 0, j = 0;
  *n_joined = *n_left = 0;
  while (i < n_prev || j < n_next) {
    int c = i == n_prev ? 1 : j == n_next ? -1 : strcmp(prev[i], next[j]);
    if (c < 0) left[(*n_left)++] = prev[i++];
    else if (c > 0) joined[(*n_joined)++] = next[j++];
    else i++, j++;
  }
}

static size_t wk_subscribe__list_size(char *const *v, size_t n) {
  size_t sz = 2; /* [] */
  for (size_t i = 0; i < n; i++) sz += strlen(v[i]) + 4; /* "", */
  return sz;
}

/* Writes head, then the names quoted and comma-separated; names are
 * JSON-safe by construction ([A-Za-z0-9_.:-]). */
static char *wk_subscribe__put_list(char *w, const char *head, char *const *v,
                                   size_t n) {
  w += sprintf(w, "%s", head);
  for (size_t i = 0; i < n; i++)
    w += sprintf(w, "%s\"%s\"", i ? ", " : "", v[i]);
  return w;
}

static int wk_subscribe__reply(wk_subscribe_result *r, char *const *prev,
                              size_t n_prev) {
  char **tmp = malloc((n_prev + r->n_groups + 1) * sizeof *tmp);
  if (!tmp) return -1;
  char **joined = tmp, **left = tmp + r->n_groups;
  size_t n_joined, n_left;
  wk_subscribe__diff(prev, n_prev, r->groups, r->n_groups, joined, &n_joined,
                    left, &n_left);
  size_t sz = 80 + wk_subscribe__list_size(r->groups, r->n_groups) +
              wk_subscribe__list_size(joined, n_joined) +
              wk_subscribe__list_size(left, n_left);
  char *s = malloc(sz), *w = s;
  if (!s) {
    free(tmp);
    return -1;
  }
  w = wk_subscribe__put_list(w, "{\"groups_current\": [", r->groups,
                            r->n_groups);
  w = wk_subscribe__put_list(w, "], \"groups_joined\": [", joined, n_joined);
  w = wk_subscribe__put_list(w, "], \"groups_left\": [", left, n_left);
  w += sprintf(w, "]}");
  free(tmp);
  r->texts[r->n_texts].data = s;
  r->texts[r->n_texts].len = (size_t)(w - s);
  r->n_texts++;
  return 0;
}

/* The gateway's current set, sorted, without anything that is not a valid
 * group name (it came from us, but a bad name must not break the reply). */
static char **wk_subscribe__prev(char *const *current, size_t n_current,
                                size_t *n_out) {
  char **v = malloc((n_current + 1) * sizeof *v);
  size_t n = 0;
  if (!v) return NULL;
  for (size_t i = 0; i < n_current; i++)
    if (current[i] && chan_group_name_valid(current[i], strlen(current[i])))
      v[n++] = current[i];
  *n_out = wk_subscribe__sort_unique(v, n);
  return v;
}

/* --- entry point -------------------------------------------------------- */

/* The request is well-formed (groups checked by the scan, positions by
 * wk_subscribe__positions into q): build the set. */
static int wk_subscribe__accept(const cJSON *groups, const wk_subscribe_size *sz,
                               const wk_subscribe_req *q,
                               char *const *current, size_t n_current,
                               const wk_session *s, const wk_policy *p,
                               wk_subscribe_result *out) {
  wk_subscribe_build b = {.r = out, .used = 0, .s = s, .p = p};
  size_t n_prev;
  out->texts = malloc((sz->entries + 1) * sizeof *out->texts);
  out->groups = malloc((sz->entries + 1) * sizeof *out->groups);
  out->names_block = malloc(sz->bytes + 1);
  if (!out->texts || !out->groups || !out->names_block) return -1;
  if (wk_subscribe__walk(&b, groups, p) != 0) return -1;
  out->n_groups = wk_subscribe__sort_unique(out->groups, out->n_groups);
  out->has_groups = 1;
  if (s->positions && wk_subscribe__positions_out(out, q) != 0) return -1;
  char **prev = wk_subscribe__prev(current, n_current, &n_prev);
  if (!prev) return -1;
  int rc = wk_subscribe__reply(out, prev, n_prev);
  free(prev);
  return rc;
}

/* Parses text; NULL when it is not exactly one JSON value (trailing bytes
 * other than whitespace count as invalid, as they would in Python). */
static cJSON *wk_subscribe__parse(const char *text, size_t len) {
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (!root) return NULL;
  while (end < text + len && *end && strchr(" \t\r\n", *end)) end++;
  if (end < text + len) {
    cJSON_Delete(root);
    return NULL;
  }
  return root;
}

int wk_subscribe_apply(const char *text, size_t len, char *const *current,
                       size_t n_current, const wk_session *s,
                       const wk_policy *p, size_t max_groups,
                       wk_subscribe_result *out) {
  char msg[WK_SUB_MSG_MAX];
  wk_subscribe_size sz = {0, 0};
  wk_subscribe_req q = {0};
  const cJSON *groups, *positions = NULL;
  int rc;
  wk_subscribe__result_init(out);
  cJSON *root = wk_subscribe__parse(text, len);
  if (!root) return wk_subscribe__fail(out, "invalid JSON");
  if (!cJSON_IsObject(root)) {
    rc = wk_subscribe__fail(out, "request must be a JSON object");
  } else if (!(groups = wk_subscribe__top(root, s, &positions, msg,
                                          sizeof msg)) ||
             wk_subscribe__scan(groups, p, max_groups, &sz, msg, sizeof msg)) {
    rc = wk_subscribe__fail(out, msg);
  } else if (positions && (rc = wk_subscribe__positions(positions, groups, &sz,
                                                        &q, msg, sizeof msg))) {
    if (rc > 0) rc = wk_subscribe__fail(out, msg);
  } else {
    rc = wk_subscribe__accept(groups, &sz, &q, current, n_current, s, p, out);
    if (rc != 0) wk_subscribe_result_free(out);
  }
  wk_subscribe__req_free(&q);
  cJSON_Delete(root);
  return rc;
}
