/*
 * wsb_proto2.c - the load client's side of protocol wsgw.2 (docs/PROTOCOL.md,
 * "Protocol wsgw.2"): envelopes, positions, recovery.
 *
 * Owns: a wsgw.2 connection's wsb_c2: the last position per group (the last
 * event's, else the last reply's or notice's, as the protocol's client rule
 * says), the set of sequence numbers it has seen (a bitmap over 1..--expect,
 * so a duplicate, a gap and a disorder are told apart), the times of its
 * reconnect; reading an envelope far enough to find the group, the position
 * and the emitter's seq and stamp inside the JSON-escaped text; reading the
 * "positions" and "recovery" objects of a reply or notice; writing the
 * subscription that names positions.
 *
 * Must not: touch sockets or connection states (wsb_conn.c does), or run
 * on the old protocol: an old-protocol connection has no wsb_c2, and its
 * path in wsb_conn.c is unchanged.
 *
 * Not a JSON parser: it reads the compact objects the gateway writes and
 * tolerates spaces around ':' and ','; anything else is an error with the
 * reason, never a crash (every read is bounded by the message length).
 * Cost: a few memmem per event, plus 1 bit per expected event per
 * connection (1,000 connections x 1,000 events: 125 KB).
 */
#define _GNU_SOURCE /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chan_pos.h"
#include "wsb.h"

#define WSB2_GROUPS 8      /* groups one benchmark connection is in, at most */
#define WSB2_GROUP_MAX 128 /* bytes of a group name, with the NUL */
#define WSB2_SEEN_MAX (64L << 20) /* --expect above this: no bitmap (8 MiB) */

typedef struct wsb2_group {
  char name[WSB2_GROUP_MAX];
  char pos[CHAN_POS_MAX];
  uint8_t fresh; /* an event came since the last subscription request */
} wsb2_group;

struct wsb_c2 {
  uint8_t ngroups;
  uint8_t bounced;    /* the --reconnect-after drop was done */
  uint64_t resume_rt; /* CLOCK_REALTIME when the reconnect started (0: none) */
  uint64_t resume_ns; /* CLOCK_MONOTONIC, the same moment */
  uint64_t reply_rt;  /* CLOCK_REALTIME when the reconnect's reply came */
  uint64_t max_seq;
  uint64_t *seen;     /* bit s-1: seq s arrived; NULL without --expect */
  uint64_t nseen;     /* bits */
  wsb2_group g[WSB2_GROUPS];
};

int wsb2_attach(wsb_conn *c) {
  if (c->c2) return 0;
  wsb_c2 *x = calloc(1, sizeof(*x));
  if (!x) return -1;
  long e = c->p->o->expect;
  if (e > 0 && e <= WSB2_SEEN_MAX) {
    x->nseen = (uint64_t)e;
    x->seen = calloc(((size_t)e + 63) / 64, sizeof(uint64_t));
    if (!x->seen) {
      free(x);
      return -1;
    }
  }
  c->c2 = x;
  return 0;
}

void wsb2_detach(wsb_conn *c) {
  if (!c->c2) return;
  free(c->c2->seen);
  free(c->c2);
  c->c2 = NULL;
}

void wsb2_mark_resume(wsb_conn *c) {
  if (!c->c2) return;
  c->c2->resume_rt = wsb_now_rt_ns();
  c->c2->resume_ns = wsb_now_ns();
  c->c2->reply_rt = 0;
}

/* ---- reading ---------------------------------------------------------------- */

static const uint8_t *wsb2__skip(const uint8_t *p, const uint8_t *end, const char *set) {
  while (p < end && strchr(set, *p)) p++;
  return p;
}

/* The string value after "key" (JSON name with quotes, e.g. "\"group\""),
 * copied into out (no escapes expected: group names and positions have
 * none). Returns a pointer past the closing quote, or NULL. */
static const uint8_t *wsb2__str(const uint8_t *d, size_t len, const char *key, char *out,
                                size_t cap) {
  const uint8_t *end = d + len, *k = memmem(d, len, key, strlen(key));
  if (!k) return NULL;
  const uint8_t *p = wsb2__skip(k + strlen(key), end, " :");
  if (p == end || *p != '"') return NULL;
  p++;
  const uint8_t *q = memchr(p, '"', (size_t)(end - p));
  if (!q || (size_t)(q - p) >= cap || memchr(p, '\\', (size_t)(q - p))) return NULL;
  memcpy(out, p, (size_t)(q - p));
  out[q - p] = 0;
  return q + 1;
}

/* The number after `key` inside escaped text: key, then any of \ " : and
 * spaces, then digits. -1 when absent. */
static int wsb2__num(const uint8_t *d, const uint8_t *end, const char *key, uint64_t *out) {
  const uint8_t *k = memmem(d, (size_t)(end - d), key, strlen(key));
  if (!k) return -1;
  const uint8_t *p = wsb2__skip(k + strlen(key), end, "\\\": ");
  if (p == end || *p < '0' || *p > '9') return -1;
  uint64_t v = 0;
  while (p < end && *p >= '0' && *p <= '9') v = v * 10 + (uint64_t)(*p++ - '0');
  *out = v;
  return 0;
}

static wsb2_group *wsb2__group(wsb_c2 *x, const char *name, char *why) {
  for (unsigned i = 0; i < x->ngroups; i++)
    if (strcmp(x->g[i].name, name) == 0) return &x->g[i];
  if (x->ngroups == WSB2_GROUPS) {
    snprintf(why, 96, "more than %d groups on one connection", WSB2_GROUPS);
    return NULL;
  }
  wsb2_group *g = &x->g[x->ngroups++];
  snprintf(g->name, sizeof(g->name), "%s", name);
  return g;
}

static int wsb2__pos_ok(const char *pos) {
  uint64_t off, tag;
  return chan_pos_parse(pos, strlen(pos), &off, &tag) == 0;
}

/* Each "name": "value" pair of the object after key, in turn, to fn. 0 when
 * the key is absent (absent is fine), -1 on a malformed object or when fn
 * fails. */
typedef int (*wsb2_pair_fn)(wsb_conn *c, const char *name, const char *value, char *why);

static int wsb2__object(wsb_conn *c, const uint8_t *d, size_t len, const char *key,
                        wsb2_pair_fn fn, char *why) {
  const uint8_t *end = d + len, *k = memmem(d, len, key, strlen(key));
  if (!k) return 0;
  const uint8_t *p = wsb2__skip(k + strlen(key), end, " :");
  if (p == end || *p != '{') goto bad;
  p = wsb2__skip(p + 1, end, " \n");
  if (p < end && *p == '}') return 0;
  for (;;) {
    char name[WSB2_GROUP_MAX], value[WSB2_GROUP_MAX];
    p = wsb2__skip(p, end, " \n");
    if (p == end || *p != '"') goto bad;
    const uint8_t *q = memchr(p + 1, '"', (size_t)(end - p - 1));
    if (!q || (size_t)(q - p - 1) >= sizeof(name)) goto bad;
    memcpy(name, p + 1, (size_t)(q - p - 1));
    name[q - p - 1] = 0;
    p = wsb2__skip(q + 1, end, " :");
    if (p == end || *p != '"') goto bad;
    q = memchr(p + 1, '"', (size_t)(end - p - 1));
    if (!q || (size_t)(q - p - 1) >= sizeof(value)) goto bad;
    memcpy(value, p + 1, (size_t)(q - p - 1));
    value[q - p - 1] = 0;
    if (fn(c, name, value, why) != 0) return -1;
    p = wsb2__skip(q + 1, end, " \n");
    if (p < end && *p == ',') { p++; continue; }
    if (p < end && *p == '}') return 0;
    goto bad;
  }
bad:
  snprintf(why, 96, "malformed %s object", key);
  return -1;
}

/* ---- events ----------------------------------------------------------------- */

/* Counts seq against what this connection has seen: 1 new, 0 duplicate,
 * -1 outside 1..--expect. */
static int wsb2__seen(wsb_conn *c, uint64_t seq, char *why) {
  wsb_c2 *x = c->c2;
  wsb_proc *p = c->p;
  if (!x->seen) { /* no --expect: order only, as the old protocol's check */
    if (seq <= c->last_seq) p->rep.ooo++;
    else c->last_seq = seq;
    return 1;
  }
  if (seq == 0 || seq > x->nseen) {
    snprintf(why, 96, "seq %llu outside 1..%llu", (unsigned long long)seq,
             (unsigned long long)x->nseen);
    return -1;
  }
  uint64_t bit = 1ULL << ((seq - 1) & 63), *w = &x->seen[(seq - 1) / 64];
  if (*w & bit) {
    p->rep.dups++;
    return 0;
  }
  *w |= bit;
  if (seq < x->max_seq) p->rep.ooo++; /* a new one below the highest: disorder */
  else x->max_seq = seq;
  return 1;
}

static void wsb2__count(wsb_conn *c, uint64_t t, size_t len, uint64_t now_rt) {
  wsb_proc *p = c->p;
  wsb_c2 *x = c->c2;
  c->received++;
  wsb_hist_add(&p->rep.lat, now_rt > t ? (now_rt - t) / 1000 : 0);
  if (!p->rep.emit_first_rt || t < p->rep.emit_first_rt) p->rep.emit_first_rt = t;
  if (now_rt > p->rep.recv_last_rt) p->rep.recv_last_rt = now_rt;
  if (x->resume_rt) {
    p->rep.resume_events++;
    p->rep.resume_bytes += len;
    /* Emitted before the reply: it can only have come from the history. */
    if (t < x->reply_rt) p->rep.replayed++;
  }
  if (p->o->expect && c->received == (uint64_t)p->o->expect && !c->complete) {
    c->complete = 1;
    if (x->resume_ns) {
      uint64_t now = wsb_now_ns();
      wsb_hist_add(&p->rep.catchup, (now - x->resume_ns) / 1000);
      if (now > p->rep.caught_last_ns) p->rep.caught_last_ns = now;
    }
    wsb_proc_complete(p, c);
  }
}

int wsb2_event(wsb_conn *c, const uint8_t *d, size_t len, uint64_t now_rt, char *why) {
  wsb_c2 *x = c->c2;
  wsb_proc *p = c->p;
  char name[WSB2_GROUP_MAX], pos[CHAN_POS_MAX];
  uint64_t seq, t;
  p->rep.events++;
  p->rep.bytes += len;
  p->last_event_ms = uv_now(p->loop);
  if (c->state != WSB_C_READY) p->rep.early++;
  if (!wsb2__str(d, len, "\"group\"", name, sizeof(name)) ||
      !wsb2__str(d, len, "\"position\"", pos, sizeof(pos)) || !wsb2__pos_ok(pos)) {
    snprintf(why, 96, "envelope without group or a valid position");
    return -1;
  }
  const uint8_t *text = memmem(d, len, "\"text\"", 6), *end = d + len;
  if (!text || wsb2__num(text, end, "seq\\\"", &seq) || wsb2__num(text, end, "\\\"t\\\"", &t)) {
    snprintf(why, 96, "envelope text without seq or t");
    return -1;
  }
  wsb2_group *g = wsb2__group(x, name, why);
  if (!g) return -1;
  memcpy(g->pos, pos, sizeof(pos));
  g->fresh = 1;
  int r = wsb2__seen(c, seq, why);
  if (r < 0) return -1;
  if (r > 0) wsb2__count(c, t, len, now_rt);
  return 0;
}

/* ---- replies and notices ------------------------------------------------------ */

static int wsb2__status(wsb_conn *c, const char *name, const char *value, char *why) {
  (void)name;
  wsb_report *r = &c->p->rep;
  if (strcmp(value, "ok") == 0) r->rec_ok++;
  else if (strcmp(value, "expired") == 0) r->rec_expired++;
  else if (strcmp(value, "unknown") == 0) r->rec_unknown++;
  else {
    snprintf(why, 96, "recovery status \"%.32s\"", value);
    return -1;
  }
  return 0;
}

/* A reply's position stands unless an event of the group came after the
 * request (that event's position is newer); a notice's always stands. */
static int wsb2__position(wsb_conn *c, const char *name, const char *value, char *why) {
  if (!wsb2__pos_ok(value)) {
    snprintf(why, 96, "invalid position \"%.40s\"", value);
    return -1;
  }
  wsb2_group *g = wsb2__group(c->c2, name, why);
  if (!g) return -1;
  if (!g->fresh) snprintf(g->pos, sizeof(g->pos), "%s", value);
  return 0;
}

static int wsb2__notice_position(wsb_conn *c, const char *name, const char *value,
                                 char *why) {
  wsb2_group *g = wsb2__group(c->c2, name, why);
  if (!g) return -1;
  g->fresh = 0;
  return wsb2__position(c, name, value, why);
}

int wsb2_reply(wsb_conn *c, const uint8_t *d, size_t len, char *why) {
  int reply = memmem(d, len, "\"groups_current\"", 16) != NULL;
  if (!memmem(d, len, "\"positions\"", 11)) {
    snprintf(why, 96, "%s without positions", reply ? "subscription reply" : "notice");
    return -1;
  }
  if (!reply) c->p->rep.notices++;
  if (reply && c->c2->resume_rt && !c->c2->reply_rt) c->c2->reply_rt = wsb_now_rt_ns();
  if (wsb2__object(c, d, len, "\"recovery\"", wsb2__status, why) != 0) return -1;
  return wsb2__object(c, d, len, "\"positions\"",
                      reply ? wsb2__position : wsb2__notice_position, why);
}

/* ---- requests ------------------------------------------------------------------ */

int wsb2_sub_text(wsb_conn *c, char *out, size_t cap, size_t *len) {
  wsb_c2 *x = c->c2;
  const char *sub = c->p->o->sub;
  size_t n = strlen(sub);
  while (n > 0 && (sub[n - 1] == ' ' || sub[n - 1] == '\n')) n--;
  if (n == 0 || sub[n - 1] != '}' || n + 32 > cap) return -1;
  if (x->ngroups == 0) {
    memcpy(out, sub, n);
    *len = n;
    return 0;
  }
  size_t used = n - 1;
  memcpy(out, sub, used);
  int w = snprintf(out + used, cap - used, ", \"positions\": {");
  used += (size_t)w;
  for (unsigned i = 0; i < x->ngroups; i++) {
    x->g[i].fresh = 0;
    w = snprintf(out + used, cap - used, "%s\"%s\": \"%s\"", i ? ", " : "", x->g[i].name,
                 x->g[i].pos);
    if (w < 0 || (size_t)w >= cap - used) return -1;
    used += (size_t)w;
  }
  if (used + 3 > cap) return -1;
  memcpy(out + used, "}}", 2);
  *len = used + 2;
  return 0;
}

int wsb2_bounce_due(wsb_conn *c) {
  const wsb_opts *o = c->p->o;
  if (!c->c2 || o->reconnect_after <= 0 || c->c2->bounced) return 0;
  if (c->received < (uint64_t)o->reconnect_after) return 0;
  c->c2->bounced = 1;
  return 1;
}
