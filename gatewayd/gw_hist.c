/*
 * gw_hist.c - the ring of recent history and catch-up (see gw_hist.h).
 *
 * The ring is an array of pointers that doubles (up to what the byte
 * bound allows), in offset order. Offsets increase but may skip: each new
 * segment of a stream starts with a chunk of the broker's own that takes
 * an offset and is never delivered. So a position is found by binary
 * search (O(log n): ~17 compares in 100,000 messages), and `floor` says
 * from where the ring is complete (every message read after it is here). An entry costs its struct (~48 bytes + the group name)
 * plus its frames, which are shared with the send queues that hold them
 * (the ring's reference keeps them alive; a message written to 1,000
 * clients is stored once). The wsgw.2 frame is built the first time a
 * wsgw.2 client needs it (live or replayed): a gateway without wsgw.2
 * clients pays nothing for it.
 *
 * The pump is O(messages walked x the connection's groups): a few compares
 * per message for a page with a few groups. A storm of N clients recovering
 * W messages each walks N x W entries, all in memory.
 */
#include "gw_hist.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define GW_HIST_MIN_CAP 1024

static size_t gw_hist__ev_size(const gw_hist_ev *e) {
  return sizeof(*e) + e->glen + 1 + gw_buf_heap_bytes(e->frame) + gw_buf_heap_bytes(e->env);
}

static void gw_hist__ev_free(gw_hist_ev *e) {
  if (e->frame) gw_buf_unref(e->frame);
  if (e->env) gw_buf_unref(e->env);
  free(e);
}

static gw_hist_ev *gw_hist__nth(const gw_hist *h, size_t i) {
  assert(i < h->n);
  return h->ring[(h->head + i) & (h->cap - 1)];
}

const char *gw_hist_status_name(gw_hist_status st) {
  switch (st) {
    case GW_HIST_OK: return "ok";
    case GW_HIST_EXPIRED: return "expired";
    default: return "unknown";
  }
}

void gw_hist_init(gw_hist *h, size_t max_bytes) {
  memset(h, 0, sizeof(*h));
  h->max_bytes = max_bytes;
  h->live_from = UINT64_MAX;
}

static void gw_hist__drop_oldest(gw_hist *h) {
  gw_hist_ev *e = gw_hist__nth(h, 0);
  h->floor = e->offset;
  h->bytes -= gw_hist__ev_size(e);
  h->ring[h->head] = NULL;
  h->head = (h->head + 1) & (h->cap - 1);
  h->n--;
  gw_hist__ev_free(e);
}

void gw_hist_reset(gw_hist *h) {
  while (h->n) gw_hist__drop_oldest(h);
  assert(h->bytes == 0);
  h->head = 0;
  h->live_from = UINT64_MAX;
}

void gw_hist_free(gw_hist *h) {
  gw_hist_reset(h);
  free(h->ring);
  h->ring = NULL;
  h->cap = 0;
}

/* Doubles the ring, keeping the order (the oldest moves to index 0). */
static int gw_hist__grow(gw_hist *h) {
  size_t cap = h->cap ? h->cap * 2 : GW_HIST_MIN_CAP;
  gw_hist_ev **r = malloc(cap * sizeof(*r));
  if (!r) return -1;
  for (size_t i = 0; i < h->n; i++) r[i] = gw_hist__nth(h, i);
  free(h->ring);
  h->ring = r;
  h->cap = cap;
  h->head = 0;
  return 0;
}

gw_hist_ev *gw_hist_last(const gw_hist *h) {
  return h->n ? gw_hist__nth(h, h->n - 1) : NULL;
}

/* Index of the first entry with an offset above `offset` (n: none). */
static size_t gw_hist__after(const gw_hist *h, uint64_t offset) {
  size_t lo = 0, hi = h->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (gw_hist__nth(h, mid)->offset <= offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

gw_hist_ev *gw_hist_at(const gw_hist *h, uint64_t offset) {
  size_t i = gw_hist__after(h, offset);
  if (i == 0) return NULL;
  gw_hist_ev *e = gw_hist__nth(h, i - 1);
  return e->offset == offset ? e : NULL;
}

gw_hist_ev *gw_hist_append(gw_hist *h, uint64_t offset, uint64_t digest,
                           const char *key, size_t klen, gw_buf *frame) {
  gw_hist_ev *last = gw_hist_last(h);
  if (last && offset <= last->offset) { /* never from the bridge: start over */
    uint64_t live = h->live_from;
    gw_hist_reset(h);
    h->live_from = live;
  }
  if (!h->n) h->floor = offset ? offset - 1 : 0; /* complete from here on */
  if (klen > UINT16_MAX) klen = UINT16_MAX;
  gw_hist_ev *e = malloc(sizeof(*e) + klen + 1);
  if (!e || (h->n == h->cap && gw_hist__grow(h) != 0)) {
    free(e);
    if (frame) gw_buf_unref(frame);
    return NULL;
  }
  e->offset = offset;
  e->digest = digest;
  e->frame = frame;
  e->env = NULL;
  e->glen = (uint16_t)klen;
  memcpy(e->group, key, klen);
  e->group[klen] = '\0';
  e->ghash = gw_group_hash(e->group, klen);
  h->ring[(h->head + h->n) & (h->cap - 1)] = e;
  h->n++;
  h->bytes += gw_hist__ev_size(e);
  while (h->bytes > h->max_bytes && h->n > 1) {
    gw_hist__drop_oldest(h);
    h->evicted++;
  }
  return e;
}

/* JSON string body of s (no quotes): the escaped length, and the bytes
 * into out when out is not NULL. s is UTF-8 (checked by the AMQP thread):
 * only '"', '\\' and control characters need escaping. */
static size_t gw_hist__escape(const uint8_t *s, size_t len, char *out) {
  static const char hex[] = "0123456789abcdef";
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    uint8_t ch = s[i];
    const char *esc = NULL;
    switch (ch) {
      case '"': esc = "\\\""; break;
      case '\\': esc = "\\\\"; break;
      case '\n': esc = "\\n"; break;
      case '\r': esc = "\\r"; break;
      case '\t': esc = "\\t"; break;
      default: break;
    }
    if (esc) {
      if (out) memcpy(out + n, esc, 2);
      n += 2;
    } else if (ch < 0x20) {
      if (out) {
        memcpy(out + n, "\\u00", 4);
        out[n + 4] = hex[ch >> 4];
        out[n + 5] = hex[ch & 0xf];
      }
      n += 6;
    } else {
      if (out) out[n] = (char)ch;
      n++;
    }
  }
  return n;
}

gw_buf *gw_hist_envelope(gw_hist *h, gw_hist_ev *e) {
  if (e->env || !e->frame) return e->env;
  size_t tlen;
  const uint8_t *text = gw_buf_payload(e->frame, &tlen);
  char pos[CHAN_POS_MAX];
  int plen = chan_pos_format(pos, e->offset, chan_pos_tag(e->group, e->glen, e->digest));
  static const char a[] = "{\"group\":\"", b[] = "\",\"position\":\"",
                    c[] = "\",\"text\":\"", d[] = "\"}";
  size_t esc = gw_hist__escape(text, tlen, NULL);
  size_t len = sizeof a - 1 + e->glen + sizeof b - 1 + (size_t)plen + sizeof c - 1 + esc +
               sizeof d - 1;
  uint8_t *json;
  e->env = gw_buf_frame_new(1, len, &json);
  if (!e->env) return NULL;
  char *p = (char *)json;
  memcpy(p, a, sizeof a - 1), p += sizeof a - 1;
  memcpy(p, e->group, e->glen), p += e->glen; /* group names need no escaping */
  memcpy(p, b, sizeof b - 1), p += sizeof b - 1;
  memcpy(p, pos, (size_t)plen), p += plen;
  memcpy(p, c, sizeof c - 1), p += sizeof c - 1;
  p += gw_hist__escape(text, tlen, p);
  memcpy(p, d, sizeof d - 1), p += sizeof d - 1;
  assert((size_t)(p - (char *)json) == len);
  h->bytes += e->env->len + sizeof(gw_buf);
  return e->env;
}

gw_buf *gw_hist_frame_for(gw_hist *h, gw_hist_ev *e, int v2, gw_deflate *z, gw_buf *after) {
  gw_buf *b = v2 ? gw_hist_envelope(h, e) : e->frame;
  if (!b || !z) return b;
  if (!after && b->z) return b->z;
  size_t before = gw_buf_heap_bytes(b);
  gw_buf *t = after ? gw_deflate_twin_after(z, b, after) : gw_deflate_twin(z, b);
  h->bytes += gw_buf_heap_bytes(b) - before;
  return t;
}

int gw_hist_position(const gw_hist *h, const char *group, uint64_t offset,
                     char out[CHAN_POS_MAX]) {
  const gw_hist_ev *e = gw_hist_at(h, offset);
  if (!e) return -1;
  chan_pos_format(out, offset, chan_pos_tag(group, strlen(group), e->digest));
  return 0;
}

gw_hist_status gw_hist_check(const gw_hist *h, const char *group, uint64_t offset,
                             uint64_t tag) {
  if (!h->n) return GW_HIST_UNKNOWN;
  if (offset <= h->floor && offset < gw_hist__nth(h, 0)->offset) return GW_HIST_EXPIRED;
  const gw_hist_ev *e = gw_hist_at(h, offset);
  if (!e) return GW_HIST_UNKNOWN; /* ahead of what this gateway has read */
  return chan_pos_tag(group, strlen(group), e->digest) == tag ? GW_HIST_OK
                                                              : GW_HIST_UNKNOWN;
}

uint64_t gw_hist_prev_offset(const gw_hist *h, uint64_t offset) {
  size_t i = gw_hist__after(h, offset - 1);
  return i ? gw_hist__nth(h, i - 1)->offset : offset - 1;
}

/* ---- catch-up ------------------------------------------------------------- */

void gw_hist_lag_skip_lost(const gw_hist *h, gw_hist_lag *lag) {
  assert(h->n && lag->cursor < h->floor);
  uint64_t to = gw_hist__nth(h, 0)->offset;
  lag->cursor = to;
  if (lag->base < to) lag->base = to;
  for (uint16_t i = 0; i < lag->n_owed; i++)
    if (lag->owed[i].from < to) lag->owed[i].from = to;
}

gw_hist_lag *gw_hist_lag_new(uint64_t at) {
  gw_hist_lag *lag = calloc(1, sizeof(*lag));
  if (lag) lag->cursor = lag->base = at;
  return lag;
}

void gw_hist_lag_free(gw_hist_lag *lag) {
  if (!lag) return;
  free(lag->owed);
  free(lag);
}

static gw_hist_owed *gw_hist__owed_find(const gw_hist_lag *lag, const char *group) {
  for (uint16_t i = 0; i < lag->n_owed; i++)
    if (strcmp(lag->owed[i].group, group) == 0) return &lag->owed[i];
  return NULL;
}

uint64_t gw_hist_lag_from(const gw_hist_lag *lag, const char *group) {
  const gw_hist_owed *o = gw_hist__owed_find(lag, group);
  uint64_t from = o ? o->from : lag->base;
  return from > lag->cursor ? from : lag->cursor;
}

int gw_hist_lag_owe(gw_hist_lag *lag, const char *group, uint64_t from) {
  if (strlen(group) > CHAN_GROUP_NAME_MAX) return -1;
  gw_hist_owed *o = gw_hist__owed_find(lag, group);
  if (!o) {
    if (lag->n_owed == lag->cap_owed) {
      uint16_t cap = lag->cap_owed ? (uint16_t)(lag->cap_owed * 2) : 4;
      if (cap <= lag->cap_owed) return -1; /* 2^16 groups: never (max 1000) */
      gw_hist_owed *grown = realloc(lag->owed, cap * sizeof(*grown));
      if (!grown) return -1;
      lag->owed = grown;
      lag->cap_owed = cap;
    }
    o = &lag->owed[lag->n_owed++];
    strcpy(o->group, group);
  }
  if (from < lag->cursor) {
    /* Walking back: what the cursor passed stays accounted for every
     * other group, so none of their events is sent twice. */
    if (lag->base < lag->cursor) lag->base = lag->cursor;
    for (uint16_t i = 0; i < lag->n_owed; i++)
      if (lag->owed[i].from < lag->cursor) lag->owed[i].from = lag->cursor;
    lag->cursor = from;
  }
  o->from = from;
  for (uint16_t i = 0; i < lag->n_owed; i++) assert(lag->owed[i].from >= lag->cursor);
  return 0;
}

/* The member group of e among members, or NULL. */
static const gw_group *gw_hist__member_group(const gw_hist_ev *e, gw_member *const *members,
                                             size_t n) {
  for (size_t i = 0; i < n; i++) {
    const gw_group *g = members[i]->group;
    if (g->hash == e->ghash && strcmp(g->name, e->group) == 0) return g;
  }
  return NULL;
}

gw_hist_pump_result gw_hist_pump(gw_hist *h, gw_hist_lag *lag, gw_member *const *members,
                                 size_t n, gw_deflate *z, gw_hist_push_fn push, void *arg) {
  gw_hist_ev *last = gw_hist_last(h);
  if (!last || lag->cursor >= last->offset) return GW_HIST_PUMP_CAUGHT_UP;
  if (lag->cursor < h->floor) return GW_HIST_PUMP_EXPIRED; /* what follows it left */
  for (size_t i = gw_hist__after(h, lag->cursor); i < h->n; i++) {
    gw_hist_ev *e = gw_hist__nth(h, i);
    assert(e->offset > lag->cursor);
    const gw_group *g = e->frame ? gw_hist__member_group(e, members, n) : NULL;
    if (g && e->offset > gw_hist_lag_from(lag, g->name)) {
      gw_buf *env = gw_hist_frame_for(h, e, 1, z, NULL);
      if (!env || push(arg, env) != 0) return GW_HIST_PUMP_FULL;
    }
    lag->cursor = e->offset;
  }
  return GW_HIST_PUMP_CAUGHT_UP;
}
