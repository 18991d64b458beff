/*
 * gw_relay.c - a connection's conversation with the workers (see
 * gw_relay.h).
 *
 * One message per connection is with a worker at a time; the others wait in
 * order (bounded by max_pending), so any number of workers see a
 * connection's messages in the order it sent them. A reply is applied only
 * if its `order` is the one in flight: a redelivered message answered twice
 * changes nothing the second time.
 *
 * Group changes are rationed per connection (issue 12: each swap of 100
 * groups was 200 round trips on the AMQP thread, and a few churning clients
 * delayed everyone's handshake by seconds). A token bucket in thousandths
 * of a change, refilled by loop time: a client message goes to a worker
 * while the allowance is positive, and the reply's joins and leaves are
 * charged when it is applied (only the reply says how many), so one request
 * may overdraw it, by at most one request's changes; later messages are
 * answered here with an error until it refills. Cost: 8 bytes per
 * connection, no timer. An AWX page view changes a few groups and never
 * meets the limit.
 */
#include "gw_relay.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chan_names.h"

#include "gw_admin.h"
#include "gw_stats.h"
#include "gw_ws.h"
#include "log.h"
#include "strbuf.h"

struct gw_relay__pending {
  struct gw_relay__pending *next;
  int binary;
  size_t len;
  char data[];
};

static const char **gw_relay__group_names(const gw_relay *r) {
  const char **names = malloc((r->n_members ? r->n_members : 1) * sizeof(*names));
  if (!names) return NULL;
  for (uint16_t i = 0; i < r->n_members; i++) names[i] = r->members[i]->group->name;
  return names;
}

/* Encodes m and hands it to the broker. -1: broker down or backlog full. */
static int gw_relay__publish(gw_relay *r, gw_relay_io *io, chan_msg *m) {
  if (!io->reply_channel) return -1;
  r->sent_us = gw_admin_now_us(); /* for the reply latency histogram */
  m->reply_channel = (char *)io->reply_channel;
  m->path = (char *)r->path;
  m->session_json = r->session;
  const char **names = NULL;
  if (m->kind != CHAN_MSG_CONNECT) {
    names = gw_relay__group_names(r);
    if (!names) return -1;
    m->groups = (char **)names;
    m->n_groups = r->n_members;
  }
  size_t len;
  char *json = chan_msg_encode(m, &len);
  free(names);
  if (!json) return -1;
  /* A disconnect needs no answer, so nobody is told if it is refused. */
  return io->sink->publish(io->arg, chan_msg_queue(m->kind), json, len,
                           m->kind != CHAN_MSG_DISCONNECT);
}

static void gw_relay__refill(gw_relay *r, const gw_relay_io *io) {
  uint32_t now = (uint32_t)io->now_ms;
  int64_t elapsed = (uint32_t)(now - r->changes_ms); /* wraps every 49 days */
  int64_t cap = (int64_t)io->changes_burst * 1000;
  int64_t v = (int64_t)r->changes_milli + elapsed * io->changes_rate;
  r->changes_ms = now;
  r->changes_milli = (int32_t)(v > cap ? cap : v);
}

static void gw_relay__charge(gw_relay *r, size_t changes) {
  int64_t v = (int64_t)r->changes_milli - (int64_t)changes * 1000;
  r->changes_milli = (int32_t)(v < INT32_MIN ? INT32_MIN : v);
}

/* 1 when the message is answered here instead of by a worker: the
 * connection's allowance of group changes is spent, or the gateway has too
 * many binds queued. Nothing changes; the client may send it again. */
static int gw_relay__answer_here(gw_relay *r, gw_relay_io *io) {
  const char *text = NULL;
  gw_relay__refill(r, io);
  if (r->changes_milli <= 0) {
    text = GW_RELAY_CHANGES_ERROR;
    io->stats->changes_refused++;
  } else if (io->binds_busy) {
    text = GW_RELAY_BUSY_ERROR;
    io->stats->binds_busy_refused++;
  }
  if (!text) return 0;
  log_debug("subscription_refused", "id=%llu reason=%s", (unsigned long long)io->id,
            r->changes_milli <= 0 ? "changes" : "binds_busy");
  io->sink->send(io->arg, 1, text, strlen(text));
  return 1;
}

/* A re-check that could not be published or was not answered in time is
 * tried again this much later (loop time): the client asked for nothing,
 * so neither closes it or tells it anything. */
#define GW_RELAY_RECHECK_RETRY_MS 30000u

static void gw_relay__recheck_retry(gw_relay *r, gw_relay_io *io) {
  if (io->rechecks &&
      gw_expiry_set(io->rechecks, &r->recheck_slot, io->now_ms + GW_RELAY_RECHECK_RETRY_MS) != 0)
    io->sink->close(io->arg, GW_WS_INTERNAL, "out of memory");
}

/* recheck: a re-check of the grants (no payload; never answered here). */
static void gw_relay__send(gw_relay *r, gw_relay_io *io, int recheck, int binary,
                           const char *data, size_t len) {
  assert(!r->inflight);
  if (!recheck && gw_relay__answer_here(r, io)) return;
  chan_msg m = {.kind = CHAN_MSG_RECEIVE, .order = r->next_order,
                .is_binary = binary, .data = (char *)data, .data_len = len,
                .recheck = recheck,
                .protocol = r->v2 ? CHAN_MSG_PROTOCOL_WSGW2 : CHAN_MSG_PROTOCOL_OLD};
  if (gw_relay__publish(r, io, &m) != 0) {
    if (recheck) gw_relay__recheck_retry(r, io);
    else io->sink->close(io->arg, GW_WS_TRY_AGAIN, "broker unavailable");
    return;
  }
  r->inflight = 1;
  r->recheck_inflight = recheck ? 1 : 0;
  r->inflight_order = r->next_order++;
  gw_timeq_push(io->replies, &r->rq, io->now_ms);
}

static void gw_relay__receive(gw_relay *r, gw_relay_io *io, int binary,
                              const char *data, size_t len) {
  gw_relay__send(r, io, 0, binary, data, len);
}

void gw_relay_recheck(gw_relay *r, gw_relay_io *io) {
  if (!r->connect_sent || !io->sink->open(io->arg)) return;
  if (r->inflight) {
    r->recheck_due = 1;
    return;
  }
  io->stats->rechecks++;
  gw_relay__send(r, io, 1, 0, NULL, 0);
}

/* A fixed one-second window: cheap (8 bytes, no timer) at the cost of
 * letting up to twice the rate through across a window boundary. */
static int gw_relay__over_rate(gw_relay *r, const gw_relay_io *io) {
  uint32_t second = (uint32_t)(io->now_ms / 1000);
  if (second != r->rate_window) {
    r->rate_window = second;
    r->rate_count = 0;
  }
  /* 16 bits, saturating: a max_rate over 65534 is no limit at all. */
  if (r->rate_count < UINT16_MAX) r->rate_count++;
  return r->rate_count > (uint32_t)io->max_rate;
}

static int gw_relay__queue(gw_relay *r, int binary, const uint8_t *msg, size_t len) {
  gw_relay__pending *p = malloc(sizeof(*p) + len);
  if (!p) return -1;
  p->next = NULL;
  p->binary = binary;
  p->len = len;
  if (len) memcpy(p->data, msg, len); /* wslay passes NULL for an empty message */
  if (r->pend_tail) r->pend_tail->next = p; else r->pend_head = p;
  r->pend_tail = p;
  r->n_pending++;
  return 0;
}

/* A client message: to a worker now, or queued behind the one in flight, so
 * that any number of workers see one connection's messages in order. */
void gw_relay_client_message(gw_relay *r, gw_relay_io *io, int binary,
                             const uint8_t *msg, size_t len) {
  io->stats->msgs_in++;
  if (!io->sink->open(io->arg)) return;
  if (gw_relay__over_rate(r, io)) {
    io->stats->rate_closes++;
    log_info("conn_rate_limited", "id=%llu", (unsigned long long)io->id);
    io->sink->close(io->arg, GW_WS_POLICY, "message rate limit");
    return;
  }
  if (!r->inflight) {
    gw_relay__receive(r, io, binary, (const char *)msg, len);
    return;
  }
  if (r->n_pending >= io->max_pending) {
    io->sink->close(io->arg, GW_WS_POLICY, "too many messages waiting");
    return;
  }
  if (gw_relay__queue(r, binary, msg, len) != 0)
    io->sink->close(io->arg, GW_WS_INTERNAL, "out of memory");
}

/* Sends queued messages until one is with a worker (those answered here
 * let the next go at once). */
static void gw_relay__next_pending(gw_relay *r, gw_relay_io *io) {
  gw_relay__pending *p;
  if (r->recheck_due && !r->inflight && io->sink->open(io->arg)) {
    r->recheck_due = 0;
    io->stats->rechecks++;
    gw_relay__send(r, io, 1, 0, NULL, 0);
  }
  while ((p = r->pend_head) && !r->inflight && io->sink->open(io->arg)) {
    r->pend_head = p->next;
    if (!r->pend_head) r->pend_tail = NULL;
    r->n_pending--;
    gw_relay__receive(r, io, p->binary, p->data, p->len);
    free(p);
  }
}

int gw_relay_connect(gw_relay *r, gw_relay_io *io, const char *path, chan_msg *m) {
  assert(!r->connect_sent && !r->inflight);
  r->path = path;
  m->kind = CHAN_MSG_CONNECT;
  m->order = 0;
  r->changes_ms = (uint32_t)io->now_ms;
  r->changes_milli = (int32_t)(io->changes_burst * 1000); /* a full allowance */
  if (gw_relay__publish(r, io, m) != 0) return -1;
  r->connect_sent = 1;
  r->inflight = 1;
  r->inflight_order = 0;
  r->next_order = 1;
  return 0;
}

/* ---- wsgw.2: positions and catch-up ----------------------------------- */

/* The history's newest offset; 0 with an empty history. */
static uint64_t gw_relay__hist_end(const gw_relay_io *io) {
  const gw_hist_ev *last = io->hist ? gw_hist_last(io->hist) : NULL;
  return last ? last->offset : 0;
}

static int gw_relay__owe_from_now(gw_relay *r, gw_relay_io *io, const char *group) {
  if (gw_hist_lag_owe(r->lag, group, gw_relay__hist_end(io)) == 0) return 0;
  io->sink->close(io->arg, GW_WS_INTERNAL, "out of memory");
  return -1;
}

/* The offset after which group's events are (or will be) sent. */
static uint64_t gw_relay__served_to(const gw_relay *r, const gw_relay_io *io,
                                    const char *group) {
  return r->lag ? gw_hist_lag_from(r->lag, group) : gw_relay__hist_end(io);
}

/* "G":"V" with a comma before all but the first (group names and the
 * values written here need no escaping). */
static void gw_relay__pair(strbuf *b, int *first, const char *key, const char *val) {
  strbuf_puts(b, *first ? "\"" : ",\"");
  strbuf_puts(b, key);
  strbuf_puts(b, "\":\"");
  strbuf_puts(b, val);
  strbuf_puts(b, "\"");
  *first = 0;
}

/* "positions":{...}: where each current group is served from. */
static void gw_relay__positions(const gw_relay *r, const gw_relay_io *io, strbuf *b) {
  int first = 1;
  strbuf_puts(b, "\"positions\":{");
  for (uint16_t i = 0; i < r->n_members; i++) {
    const char *g = r->members[i]->group->name;
    char pos[CHAN_POS_MAX];
    if (gw_hist_position(io->hist, g, gw_relay__served_to(r, io, g), pos) == 0)
      gw_relay__pair(b, &first, g, pos);
  }
  strbuf_puts(b, "}");
}

static int gw_relay__member_index(const gw_relay *r, const char *group) {
  for (uint16_t i = 0; i < r->n_members; i++)
    if (strcmp(r->members[i]->group->name, group) == 0) return i;
  return -1;
}

static void gw_relay__count_recovery(gw_stats *st, gw_hist_status s) {
  if (s == GW_HIST_OK) st->hist_recovered++;
  else if (s == GW_HIST_EXPIRED) st->hist_recover_expired++;
  else st->hist_recover_unknown++;
}

/* One position the client named: a group joined by this request is owed
 * its events after it, when the history holds it; one the connection was
 * already in missed nothing. Returns the status for "recovery". */
static gw_hist_status gw_relay__recover_one(gw_relay *r, gw_relay_io *io,
                                            const chan_reply_pos *p, int was_member) {
  if (was_member) return GW_HIST_OK;
  gw_hist_status st = gw_hist_check(io->hist, p->group, p->offset, p->tag);
  gw_relay__count_recovery(io->stats, st);
  if (st != GW_HIST_OK || p->offset >= gw_relay__hist_end(io)) return st;
  if (!r->lag && !(r->lag = gw_hist_lag_new(gw_relay__hist_end(io)))) return GW_HIST_UNKNOWN;
  if (gw_hist_lag_owe(r->lag, p->group, p->offset) != 0) return GW_HIST_UNKNOWN;
  return GW_HIST_OK;
}

/* A reply to a wsgw.2 subscription: applies the positions the client named
 * (kept: members[0..kept) were members before it) and returns what the
 * gateway adds to the reply's object, or NULL when out of memory. */
static char *gw_relay__recover(gw_relay *r, gw_relay_io *io, const chan_reply *rep,
                               uint16_t kept) {
  strbuf b = {0};
  int first = 1;
  /* "recovery" only when the request named positions (the worker passes
   * those of the groups it granted). */
  if (rep->n_positions) strbuf_puts(&b, "\"recovery\":{");
  for (size_t i = 0; i < rep->n_positions; i++) {
    const chan_reply_pos *p = &rep->positions[i];
    int idx = gw_relay__member_index(r, p->group);
    if (idx < 0) continue; /* refused, or not in the membership */
    gw_hist_status st = gw_relay__recover_one(r, io, p, idx < kept);
    gw_relay__pair(&b, &first, p->group, gw_hist_status_name(st));
  }
  if (rep->n_positions) strbuf_puts(&b, "},");
  gw_relay__positions(r, io, &b);
  if (b.failed) {
    strbuf_free(&b);
    return NULL;
  }
  return b.data;
}

/* The subscription reply (a JSON object) with `extra` members added before
 * its closing brace; NULL when it is not an object or out of memory. */
static char *gw_relay__merge(const chan_text *t, const char *extra, size_t *len) {
  size_t end = t->len;
  while (end && (t->data[end - 1] == ' ' || t->data[end - 1] == '\n')) end--;
  if (end < 2 || t->data[0] != '{' || t->data[end - 1] != '}') return NULL;
  size_t inner = end - 1;
  while (inner > 1 && (t->data[inner - 1] == ' ' || t->data[inner - 1] == '\n')) inner--;
  int empty = inner == 1;
  size_t xl = strlen(extra);
  char *out = malloc(end + xl + 2);
  if (!out) return NULL;
  memcpy(out, t->data, end - 1);
  size_t n = end - 1;
  if (!empty) out[n++] = ',';
  memcpy(out + n, extra, xl);
  n += xl;
  out[n++] = '}';
  *len = n;
  return out;
}

/* An unsolicited notice: events of every group the connection is in were
 * lost (status), and where each is served from now. */
static void gw_relay__notice(gw_relay *r, gw_relay_io *io, gw_hist_status st) {
  strbuf b = {0};
  int first = 1;
  strbuf_puts(&b, "{\"recovery\":{");
  for (uint16_t i = 0; i < r->n_members; i++)
    gw_relay__pair(&b, &first, r->members[i]->group->name, gw_hist_status_name(st));
  strbuf_puts(&b, "},");
  gw_relay__positions(r, io, &b);
  strbuf_puts(&b, "}");
  if (b.failed) io->sink->close(io->arg, GW_WS_INTERNAL, "out of memory");
  else io->sink->send(io->arg, 1, b.data, b.len);
  strbuf_free(&b);
}

/* {extra} as a message of its own. */
static void gw_relay__wrapped(gw_relay_io *io, const char *extra) {
  strbuf b = {0};
  strbuf_puts(&b, "{");
  strbuf_puts(&b, extra);
  strbuf_puts(&b, "}");
  if (!b.failed) io->sink->send(io->arg, 1, b.data, b.len);
  strbuf_free(&b);
}

int gw_relay_lag_start(gw_relay *r, uint64_t given) {
  assert(r->v2 && !r->lag);
  r->lag = gw_hist_lag_new(given);
  return r->lag ? 0 : -1;
}

void gw_relay_pump(gw_relay *r, gw_relay_io *io) {
  while (r->lag && io->hist && io->sink->open(io->arg)) {
    gw_hist_pump_result res =
        gw_hist_pump(io->hist, r->lag, r->members, r->n_members, io->deflate,
                     io->sink->push, io->arg);
    if (res == GW_HIST_PUMP_FULL) return;
    if (res == GW_HIST_PUMP_CAUGHT_UP) {
      gw_hist_lag_free(r->lag);
      r->lag = NULL;
      io->stats->hist_caught_up++;
      return;
    }
    /* Part of what it was owed left the history: say so, and go on with
     * what is still there. */
    io->stats->hist_lag_expired++;
    log_info("conn_history_expired", "id=%llu", (unsigned long long)io->id);
    gw_hist_lag_skip_lost(io->hist, r->lag);
    gw_relay__notice(r, io, GW_HIST_EXPIRED);
  }
}

void gw_relay_history_lost(gw_relay *r, gw_relay_io *io, gw_hist_status st) {
  if (!r->v2) return;
  gw_hist_lag_free(r->lag);
  r->lag = NULL;
  if (io->sink->open(io->arg) && r->n_members) gw_relay__notice(r, io, st);
}

static int gw_relay__has_name(char *const *names, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(names[i], name) == 0) return 1;
  return 0;
}

/* Makes the membership exactly `names`. O(old x new) string compares: the
 * worker caps a connection at ~100 groups, so this stays in microseconds.
 * Returns the groups joined and left. */
static size_t gw_relay__set_groups(gw_relay *r, gw_relay_io *io, char *const *names,
                                   size_t n, uint16_t *kept_out) {
  uint16_t kept = 0;
  for (uint16_t i = 0; i < r->n_members; i++) {
    gw_member *m = r->members[i];
    if (gw_relay__has_name(names, n, m->group->name)) r->members[kept++] = m;
    else gw_group_leave(io->groups, m, io->now_ms);
  }
  size_t changes = r->n_members - kept;
  r->n_members = kept;
  *kept_out = kept; /* members[0..kept) were members before; the rest are new */
  if (n > UINT16_MAX) n = UINT16_MAX;
  /* Every kept member is in names, so n slots hold the new set. */
  gw_member **grown = realloc(r->members, (n ? n : 1) * sizeof(*grown));
  if (!grown) {
    io->sink->close(io->arg, GW_WS_INTERNAL, "out of memory");
    return changes;
  }
  r->members = grown;
  for (size_t i = 0; i < n; i++) {
    int have = 0;
    for (uint16_t j = 0; j < r->n_members && !have; j++)
      have = strcmp(r->members[j]->group->name, names[i]) == 0;
    if (have) continue;
    gw_member *m = gw_group_join(io->groups, names[i], io->arg);
    if (!m) {
      io->sink->close(io->arg, GW_WS_INTERNAL, "out of memory");
      return changes;
    }
    r->members[r->n_members++] = m;
    changes++;
    /* Joined while owed history: its events before now are not owed. */
    if (r->lag && gw_relay__owe_from_now(r, io, names[i]) != 0) return changes;
  }
  assert(r->n_members <= n);
  return changes;
}

static void gw_relay__set_session(gw_relay *r, const gw_relay_io *io,
                                  const char *json) {
  size_t len = strlen(json);
  if (len > (size_t)io->max_session) {
    log_warn("session_too_large", "id=%llu bytes=%zu", (unsigned long long)io->id, len);
    return;
  }
  char *copy = strdup(json);
  if (!copy) return;
  free(r->session);
  r->session = copy;
}

/* The reply's "expires" (Unix seconds): the connection is closed (4401)
 * refresh_window after it, unless a later reply moves it. Loop time is
 * monotonic and the expiry is wall-clock time: converted once, here. */
static void gw_relay__set_expiry(gw_relay *r, gw_relay_io *io, uint64_t expires_s) {
  if (!io->expiries) return;
  int64_t left = (int64_t)(expires_s * 1000) - (int64_t)io->wall_ms +
                 (int64_t)io->refresh_window_ms;
  uint64_t at = io->now_ms + (uint64_t)(left > 0 ? left : 0);
  if (gw_expiry_set(io->expiries, &r->exp_slot, at) != 0) {
    io->sink->close(io->arg, GW_WS_INTERNAL, "out of memory");
    return;
  }
  log_debug("conn_expires", "id=%llu expires=%llu close_in_ms=%lld",
            (unsigned long long)io->id, (unsigned long long)expires_s,
            (long long)(left > 0 ? left : 0));
}

/* The reply's "recheck" (Unix seconds) into io->rechecks, in loop time.
 * A reply to a re-check replaces the deadline (no "recheck": none);
 * any other reply only brings it forward, so that a client subscribing
 * often cannot put its re-check off. */
static void gw_relay__set_recheck(gw_relay *r, gw_relay_io *io, uint64_t recheck_s,
                                  int was_recheck) {
  if (!io->rechecks) return;
  if (!recheck_s) {
    if (was_recheck) gw_expiry_remove(io->rechecks, &r->recheck_slot);
    return;
  }
  int64_t left = (int64_t)(recheck_s * 1000) - (int64_t)io->wall_ms;
  uint64_t at = io->now_ms + (uint64_t)(left > 0 ? left : 0);
  if (!was_recheck && r->recheck_slot && gw_expiry_at(io->rechecks, &r->recheck_slot) <= at)
    return;
  if (gw_expiry_set(io->rechecks, &r->recheck_slot, at) != 0)
    io->sink->close(io->arg, GW_WS_INTERNAL, "out of memory");
}

/* The accepted connection joins its user's control key (a kick there
 * closes it): a group of the table like any other, so its binding is
 * counted, queued and lingers as theirs do. */
static void gw_relay__join_user(gw_relay *r, gw_relay_io *io, uint64_t user) {
  char key[sizeof CHAN_USER_KEY_PREFIX + 24];
  snprintf(key, sizeof key, CHAN_USER_KEY_PREFIX "%llu", (unsigned long long)user);
  if (r->user) return;
  r->user = gw_group_join(io->groups, key, io->arg);
  if (!r->user) io->sink->close(io->arg, GW_WS_INTERNAL, "out of memory");
}

/* The worker's verdict on the upgrade. -1: refused (or the 101 could not
 * be queued), the connection is on its way out. */
static int gw_relay__verdict(gw_relay_io *io, const chan_reply *rep) {
  if (rep->accept != 1 || rep->close_code) {
    /* 503: the worker could not reach the application that decides. */
    int status = rep->accept == 0 && rep->status == 503 ? 503 : 403;
    if (status == 403) io->stats->handshakes_rejected++;
    else io->stats->handshakes_failed++;
    io->sink->refuse(io->arg, status);
    return -1;
  }
  if (io->sink->accept(io->arg) != 0) {
    io->sink->refuse(io->arg, 503);
    return -1;
  }
  return 0;
}

gw_relay_result gw_relay_apply_reply(gw_relay *r, gw_relay_io *io,
                                     const chan_reply *rep, int connecting) {
  if (!r->inflight || rep->order != r->inflight_order) {
    /* A duplicate (a redelivered message answered twice) or too late. */
    io->stats->replies_dropped++;
    return GW_RELAY_OK;
  }
  int was_recheck = r->recheck_inflight;
  r->inflight = 0;
  r->recheck_inflight = 0;
  gw_timeq_remove(&r->rq);
  gw_admin_observe_reply(io->stats, connecting, r->sent_us);
  /* A connection closing keeps the memberships it has (it is leaving). A
   * re-check's removals are the application's, not the client's: free. */
  uint16_t kept = r->n_members;
  if (rep->has_groups && (connecting || io->sink->open(io->arg))) {
    size_t changes = gw_relay__set_groups(r, io, rep->groups, rep->n_groups, &kept);
    if (was_recheck) io->stats->recheck_leaves += changes;
    else gw_relay__charge(r, changes);
  }
  if (rep->session_json) gw_relay__set_session(r, io, rep->session_json);
  if (connecting && gw_relay__verdict(io, rep) != 0) return GW_RELAY_OK;
  if (connecting) {
    /* What operators look for to kick it: chanctl kick --conn CHANNEL. */
    log_info("conn_open", "id=%llu user=%llu channel=%s", (unsigned long long)io->id,
             (unsigned long long)rep->user, io->reply_channel ? io->reply_channel : "-");
    if (rep->user) gw_relay__join_user(r, io, rep->user);
  }
  if (rep->expires && io->sink->open(io->arg)) {
    if (!connecting) io->stats->refreshes++;
    gw_relay__set_expiry(r, io, rep->expires);
  }
  if ((rep->recheck || was_recheck) && io->sink->open(io->arg))
    gw_relay__set_recheck(r, io, rep->recheck, was_recheck);
  char *extra = NULL;
  if (r->v2 && io->hist && rep->has_positions && io->sink->open(io->arg) &&
      !(extra = gw_relay__recover(r, io, rep, kept)))
    io->sink->close(io->arg, GW_WS_INTERNAL, "out of memory");
  for (size_t i = 0; i < rep->n_texts && io->sink->open(io->arg); i++) {
    size_t len = 0;
    char *merged = extra && i + 1 == rep->n_texts ? gw_relay__merge(&rep->texts[i], extra, &len)
                                                  : NULL;
    if (merged) io->sink->send(io->arg, 1, merged, len);
    else io->sink->send(io->arg, 1, rep->texts[i].data, rep->texts[i].len);
    if (merged) {
      free(extra);
      extra = NULL;
    }
    free(merged);
  }
  if (extra && io->sink->open(io->arg)) /* no object to add them to: on their own */
    gw_relay__wrapped(io, extra);
  free(extra);
  if (rep->has_bytes && io->sink->open(io->arg))
    io->sink->send(io->arg, 2, rep->bytes, rep->bytes_len);
  if (rep->close_code && io->sink->open(io->arg))
    io->sink->close(io->arg, (uint16_t)rep->close_code, "");
  gw_relay_pump(r, io); /* what the positions recovered follows the reply */
  gw_relay__next_pending(r, io);
  return connecting ? GW_RELAY_ACCEPTED : GW_RELAY_OK;
}

void gw_relay_refused(gw_relay *r, gw_relay_io *io, int connecting) {
  if (!r->inflight) return;
  log_warn("publish_refused", "id=%llu order=%llu", (unsigned long long)io->id,
           (unsigned long long)r->inflight_order);
  if (connecting) {
    io->stats->handshakes_failed++;
    io->sink->refuse(io->arg, 503);
  } else if (io->sink->open(io->arg)) {
    io->sink->close(io->arg, GW_WS_TRY_AGAIN, "try again later");
  }
}

void gw_relay_timeout(gw_relay *r, gw_relay_io *io) {
  assert(r->inflight);
  io->stats->reply_timeouts++;
  log_warn("reply_timeout", "id=%llu order=%llu", (unsigned long long)io->id,
           (unsigned long long)r->inflight_order);
  gw_timeq_remove(&r->rq);
  r->inflight = 0;
  static const char msg[] = "{\"error\": \"no worker answered in time\"}";
  /* The client did not ask for a re-check: nothing to tell it; it is
   * tried again later (a worker may have been restarting). */
  if (r->recheck_inflight && io->sink->open(io->arg)) gw_relay__recheck_retry(r, io);
  else if (io->sink->open(io->arg)) io->sink->send(io->arg, 1, msg, sizeof(msg) - 1);
  r->recheck_inflight = 0;
  gw_relay__next_pending(r, io);
}

void gw_relay_end(gw_relay *r, gw_relay_io *io, int code) {
  if (r->connect_sent) {
    chan_msg m = {.kind = CHAN_MSG_DISCONNECT, .order = r->next_order++,
                  .code = code ? code : GW_WS_ABNORMAL};
    if (gw_relay__publish(r, io, &m) != 0)
      log_debug("disconnect_not_published", "id=%llu", (unsigned long long)io->id);
    r->connect_sent = 0;
  }
  for (uint16_t i = 0; i < r->n_members; i++)
    gw_group_leave(io->groups, r->members[i], io->now_ms);
  r->n_members = 0;
  if (r->user) gw_group_leave(io->groups, r->user, io->now_ms);
  r->user = NULL;
  if (io->expiries) gw_expiry_remove(io->expiries, &r->exp_slot);
  if (io->rechecks) gw_expiry_remove(io->rechecks, &r->recheck_slot);
  gw_hist_lag_free(r->lag);
  r->lag = NULL;
  gw_timeq_remove(&r->rq);
  r->inflight = 0;
  r->recheck_inflight = r->recheck_due = 0;
}

void gw_relay_free(gw_relay *r) {
  assert(r->n_members == 0 && !r->rq.owner && !r->user && !r->exp_slot &&
         !r->recheck_slot && !r->lag); /* gw_relay_end ran */
  for (gw_relay__pending *p = r->pend_head, *n; p; p = n) {
    n = p->next;
    free(p);
  }
  r->pend_head = r->pend_tail = NULL;
  free(r->session);
  free(r->members);
  r->session = NULL;
  r->members = NULL;
}
