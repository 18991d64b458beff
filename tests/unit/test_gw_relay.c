/*
 * test_gw_relay.c - a connection's conversation with the workers, without
 * a socket or a broker: one message in flight and the rest queued in
 * order, the pending bound, the rate limit, replies matched by order, the
 * reply deadline, refusals, the accept, memberships and the disconnect,
 * the allowance of group changes and the busy answer.
 * A fake sink records what the relay asks of the connection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chan_pos.h"
#include "gw_relay.h"
#include "gw_stats.h"
#include "unit.h"

typedef struct fake {
  int open;            /* what sink->open answers */
  int publish_fails;
  int accept_fails;
  chan_msg pub[16];    /* what was published, decoded */
  size_t n_pub;
  char sent[8][512];   /* texts sent to the client */
  uint64_t pushed[64]; /* history pushed (catch-up): the frames' first bytes */
  size_t n_pushed, push_room;
  size_t n_sent;
  uint16_t closed;     /* the close code asked for, 0: none */
  int refused;         /* the HTTP status asked for, 0: none */
  int accepted;
  char binds[8192];    /* +group / -group as the table binds and unbinds */
} fake;

static chan_msg_kind kind_of(const char *queue) {
  if (strcmp(queue, "websocket.connect") == 0) return CHAN_MSG_CONNECT;
  if (strcmp(queue, "websocket.receive") == 0) return CHAN_MSG_RECEIVE;
  return CHAN_MSG_DISCONNECT;
}

static int fake_publish(void *arg, const char *queue, char *json, size_t len, int answer) {
  fake *f = arg;
  int rc = -1;
  char err[128];
  chan_msg_kind kind = kind_of(queue);
  UNIT_CHECK(answer == (kind != CHAN_MSG_DISCONNECT));
  if (!f->publish_fails && f->n_pub < 16 &&
      chan_msg_decode(kind, json, len, &f->pub[f->n_pub], err, sizeof err) == 0) {
    f->n_pub++;
    rc = 0;
  }
  free(json);
  return rc;
}

static void fake_send(void *arg, int opcode, const char *data, size_t len) {
  fake *f = arg;
  UNIT_CHECK(opcode == 1);
  if (f->n_sent < 8) snprintf(f->sent[f->n_sent], 512, "%.*s", (int)len, data);
  f->n_sent++;
}

static void fake_close(void *arg, uint16_t code, const char *reason) {
  (void)reason;
  fake *f = arg;
  if (!f->closed) f->closed = code;
  f->open = 0;
}

static void fake_refuse(void *arg, int status) {
  fake *f = arg;
  f->refused = status;
}

static int fake_accept(void *arg) {
  fake *f = arg;
  if (f->accept_fails) return -1;
  f->accepted = 1;
  f->open = 1;
  return 0;
}

static int fake_open(void *arg) { return ((fake *)arg)->open; }

/* Records which message of the history was pushed (its body is its
 * offset, see hist_fill); refuses past push_room. */
static int fake_push(void *arg, gw_buf *b) {
  fake *f = arg;
  if (f->n_pushed >= f->push_room || f->n_pushed >= 64) return -1;
  const char *text = strstr((const char *)b->data, "\"text\":\"");
  f->pushed[f->n_pushed++] = text ? strtoull(text + 8, NULL, 10) : 999;
  return 0;
}

static const gw_relay_sink fake_sink = {fake_publish, fake_send, fake_close,
                                        fake_refuse, fake_accept, fake_open, fake_push};

static void on_bind(const char *name, void *arg) {
  strcat(((fake *)arg)->binds, "+");
  strcat(((fake *)arg)->binds, name);
}

static void on_unbind(const char *name, void *arg) {
  strcat(((fake *)arg)->binds, "-");
  strcat(((fake *)arg)->binds, name);
}

/* Everything a relay test touches. */
typedef struct rig {
  fake f;
  gw_relay r;
  gw_group_table groups;
  gw_timeq replies;
  gw_stats stats;
  gw_relay_io io;
  int saved_stderr; /* the relay logs refusals and timeouts, by design */
} rig;

static void rig_init(rig *t) {
  memset(t, 0, sizeof *t);
  t->saved_stderr = unit_stderr_mute();
  UNIT_CHECK(gw_group_table_init(&t->groups, on_bind, on_unbind, &t->f) == 0);
  t->io = (gw_relay_io){.sink = &fake_sink, .arg = &t->f, .id = 9,
                        .reply_channel = "websocket.send.amq.gen-x!9", .groups = &t->groups,
                        .replies = &t->replies, .stats = &t->stats, .now_ms = 5000,
                        .max_rate = 100, .max_pending = 3, .max_session = 64,
                        .changes_rate = 10, .changes_burst = 200};
}

static void rig_free(rig *t) {
  gw_relay_end(&t->r, &t->io, 1000);
  gw_relay_free(&t->r);
  for (size_t i = 0; i < t->f.n_pub; i++) chan_msg_free(&t->f.pub[i]);
  gw_group_table_free(&t->groups);
  unit_stderr_restore(t->saved_stderr);
}

static chan_reply reply(uint64_t order) {
  chan_reply r;
  memset(&r, 0, sizeof r);
  r.order = order;
  r.accept = -1;
  return r;
}

/* A reply that makes the membership exactly names. */
static chan_reply groups_reply(uint64_t order, char **names, size_t n) {
  chan_reply r = reply(order);
  r.has_groups = 1;
  r.groups = names;
  r.n_groups = n;
  return r;
}

/* Connects and has the worker accept (order 0). */
static void rig_open(rig *t) {
  chan_msg m = {0};
  UNIT_CHECK(gw_relay_connect(&t->r, &t->io, "/websocket/", &m) == 0);
  chan_reply a = reply(0);
  a.accept = 1;
  UNIT_CHECK(gw_relay_apply_reply(&t->r, &t->io, &a, 1) == GW_RELAY_ACCEPTED);
  UNIT_CHECK(t->f.accepted && t->f.open);
}

static void client(rig *t, const char *text) {
  gw_relay_client_message(&t->r, &t->io, 0, (const uint8_t *)text, strlen(text));
}

UNIT_TEST(gw_relay_connect_publishes_order_0_with_the_reply_channel) {
  rig t;
  rig_init(&t);
  chan_msg m = {.query_string = "token=x"};
  UNIT_CHECK(gw_relay_connect(&t.r, &t.io, "/websocket/", &m) == 0);
  UNIT_CHECK(t.f.n_pub == 1);
  UNIT_CHECK(t.f.pub[0].kind == CHAN_MSG_CONNECT && t.f.pub[0].order == 0);
  UNIT_CHECK_STR(t.f.pub[0].reply_channel, "websocket.send.amq.gen-x!9");
  UNIT_CHECK_STR(t.f.pub[0].path, "/websocket/");
  rig_free(&t);
}

UNIT_TEST(gw_relay_connect_without_a_broker_fails) {
  rig t;
  rig_init(&t);
  t.io.reply_channel = NULL; /* the broker is down: no queue to answer to */
  chan_msg m = {0};
  UNIT_CHECK(gw_relay_connect(&t.r, &t.io, "/websocket/", &m) == -1);
  UNIT_CHECK(t.f.n_pub == 0);
  rig_free(&t);
  UNIT_CHECK(t.f.n_pub == 0); /* no disconnect for a connect never sent */
}

UNIT_TEST(gw_relay_accept_sends_the_workers_texts_after_the_101) {
  rig t;
  rig_init(&t);
  chan_msg m = {0};
  UNIT_CHECK(gw_relay_connect(&t.r, &t.io, "/websocket/", &m) == 0);
  chan_text texts[] = {{"{\"accept\": true}", 16}};
  chan_reply a = reply(0);
  a.accept = 1;
  a.texts = texts;
  a.n_texts = 1;
  a.session_json = "{\"user\": 7}";
  UNIT_CHECK(gw_relay_apply_reply(&t.r, &t.io, &a, 1) == GW_RELAY_ACCEPTED);
  UNIT_CHECK(t.f.accepted && t.f.n_sent == 1);
  UNIT_CHECK_STR(t.f.sent[0], "{\"accept\": true}");
  client(&t, "hi"); /* the session travels with each message */
  UNIT_CHECK(t.f.n_pub == 2);
  UNIT_CHECK(t.f.pub[1].session_json && strstr(t.f.pub[1].session_json, "\"user\"") &&
             strchr(t.f.pub[1].session_json, '7'));
  rig_free(&t);
}

UNIT_TEST(gw_relay_refused_upgrade_answers_403_and_sends_nothing) {
  rig t;
  rig_init(&t);
  chan_msg m = {0};
  UNIT_CHECK(gw_relay_connect(&t.r, &t.io, "/websocket/", &m) == 0);
  chan_text texts[] = {{"no", 2}};
  chan_reply a = reply(0);
  a.accept = 0;
  a.texts = texts;
  a.n_texts = 1;
  UNIT_CHECK(gw_relay_apply_reply(&t.r, &t.io, &a, 1) == GW_RELAY_OK);
  UNIT_CHECK(t.f.refused == 403 && !t.f.accepted && t.f.n_sent == 0);
  UNIT_CHECK(t.stats.handshakes_rejected == 1);
  rig_free(&t);
}

UNIT_TEST(gw_relay_one_message_in_flight_the_rest_in_order) {
  rig t;
  rig_init(&t);
  rig_open(&t);
  client(&t, "a");
  client(&t, "b");
  client(&t, "c");
  UNIT_CHECK(t.f.n_pub == 2); /* connect, then "a" only */
  UNIT_CHECK(t.f.pub[1].order == 1 && strcmp(t.f.pub[1].data, "a") == 0);
  UNIT_CHECK(t.r.n_pending == 2 && t.replies.head == &t.r.rq);
  chan_reply stale = reply(0); /* answered twice (a redelivery) */
  gw_relay_apply_reply(&t.r, &t.io, &stale, 0);
  UNIT_CHECK(t.stats.replies_dropped == 1 && t.f.n_pub == 2);
  chan_reply r1 = reply(1);
  gw_relay_apply_reply(&t.r, &t.io, &r1, 0);
  UNIT_CHECK(t.f.n_pub == 3 && t.f.pub[2].order == 2 && strcmp(t.f.pub[2].data, "b") == 0);
  chan_reply r2 = reply(2);
  gw_relay_apply_reply(&t.r, &t.io, &r2, 0);
  UNIT_CHECK(t.f.n_pub == 4 && t.f.pub[3].order == 3 && strcmp(t.f.pub[3].data, "c") == 0);
  chan_reply r3 = reply(3);
  gw_relay_apply_reply(&t.r, &t.io, &r3, 0);
  UNIT_CHECK(!t.r.inflight && t.r.n_pending == 0 && !t.replies.head);
  rig_free(&t);
}

UNIT_TEST(gw_relay_pending_bound_closes_1008) {
  rig t;
  rig_init(&t);
  rig_open(&t);
  client(&t, "in flight");
  for (int i = 0; i < 3; i++) client(&t, "waits"); /* max_pending = 3 */
  UNIT_CHECK(!t.f.closed && t.r.n_pending == 3);
  client(&t, "one too many");
  UNIT_CHECK(t.f.closed == 1008 && t.r.n_pending == 3);
  rig_free(&t);
}

UNIT_TEST(gw_relay_rate_limit_per_second_closes_1008) {
  rig t;
  rig_init(&t);
  t.io.max_rate = 2;
  t.io.max_pending = 100;
  rig_open(&t);
  client(&t, "1");
  client(&t, "2");
  UNIT_CHECK(!t.f.closed);
  t.io.now_ms = 6000; /* the next second: a fresh window */
  client(&t, "3");
  client(&t, "4");
  UNIT_CHECK(!t.f.closed);
  client(&t, "5");
  UNIT_CHECK(t.f.closed == 1008 && t.stats.rate_closes == 1);
  client(&t, "6"); /* closing: ignored */
  UNIT_CHECK(t.stats.rate_closes == 1 && t.stats.msgs_in == 6);
  rig_free(&t);
}

UNIT_TEST(gw_relay_reply_timeout_tells_the_client_and_sends_the_next) {
  rig t;
  rig_init(&t);
  rig_open(&t);
  client(&t, "slow");
  client(&t, "next");
  gw_relay_timeout(&t.r, &t.io);
  UNIT_CHECK(t.stats.reply_timeouts == 1 && t.f.n_sent == 1);
  UNIT_CHECK(strstr(t.f.sent[0], "no worker answered") != NULL);
  UNIT_CHECK(t.f.n_pub == 3 && strcmp(t.f.pub[2].data, "next") == 0 && t.r.inflight);
  chan_reply late = reply(1); /* the slow one's answer, after all */
  gw_relay_apply_reply(&t.r, &t.io, &late, 0);
  UNIT_CHECK(t.stats.replies_dropped == 1 && t.r.inflight);
  rig_free(&t);
}

UNIT_TEST(gw_relay_refusals_503_before_the_upgrade_1013_after) {
  rig t;
  rig_init(&t);
  chan_msg m = {0};
  UNIT_CHECK(gw_relay_connect(&t.r, &t.io, "/websocket/", &m) == 0);
  gw_relay_refused(&t.r, &t.io, 1);
  UNIT_CHECK(t.f.refused == 503 && t.stats.handshakes_failed == 1);
  rig_free(&t);
  rig_init(&t);
  rig_open(&t);
  client(&t, "x");
  gw_relay_refused(&t.r, &t.io, 0);
  UNIT_CHECK(t.f.closed == 1013);
  rig_free(&t);
  rig_init(&t);
  rig_open(&t);
  t.f.publish_fails = 1; /* the backlog is full: the message cannot go */
  client(&t, "x");
  UNIT_CHECK(t.f.closed == 1013 && !t.r.inflight);
  rig_free(&t);
}

UNIT_TEST(gw_relay_memberships_follow_the_replies_and_end_with_the_connection) {
  rig t;
  rig_init(&t);
  rig_open(&t);
  char *g1[] = {"jobs-status_changed", "job_events-1"};
  client(&t, "subscribe");
  chan_reply r1 = groups_reply(1, g1, 2);
  gw_relay_apply_reply(&t.r, &t.io, &r1, 0);
  UNIT_CHECK(t.r.n_members == 2 && t.groups.n_members == 2);
  char *g2[] = {"job_events-1", "job_events-2"};
  client(&t, "replace");
  chan_reply r2 = groups_reply(2, g2, 2);
  gw_relay_apply_reply(&t.r, &t.io, &r2, 0);
  UNIT_CHECK_STR(t.f.binds, "+jobs-status_changed+job_events-1-jobs-status_changed+job_events-2");
  /* The disconnect names the groups the connection was in, then it leaves. */
  gw_relay_end(&t.r, &t.io, 1001);
  UNIT_CHECK(t.f.n_pub == 4 && t.f.pub[3].kind == CHAN_MSG_DISCONNECT);
  UNIT_CHECK(t.f.pub[3].code == 1001 && t.f.pub[3].n_groups == 2);
  UNIT_CHECK(t.groups.n_members == 0 && t.groups.n_groups == 0);
  rig_free(&t); /* a second end publishes nothing more */
  UNIT_CHECK(t.f.n_pub == 4);
}

UNIT_TEST(gw_relay_a_closing_connection_keeps_its_groups_and_takes_no_messages) {
  rig t;
  rig_init(&t);
  rig_open(&t);
  client(&t, "subscribe");
  t.f.open = 0; /* the client started closing meanwhile */
  char *g[] = {"jobs-status_changed"};
  chan_reply r1 = groups_reply(1, g, 1);
  chan_text texts[] = {{"late", 4}};
  r1.texts = texts;
  r1.n_texts = 1;
  gw_relay_apply_reply(&t.r, &t.io, &r1, 0);
  UNIT_CHECK(t.r.n_members == 0 && t.f.n_sent == 0);
  client(&t, "after");
  UNIT_CHECK(t.f.n_pub == 2);
  rig_free(&t);
}

UNIT_TEST(gw_relay_session_over_max_session_is_ignored) {
  rig t;
  rig_init(&t);
  chan_msg m = {0};
  UNIT_CHECK(gw_relay_connect(&t.r, &t.io, "/websocket/", &m) == 0);
  char big[100];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  chan_reply a = reply(0);
  a.accept = 1;
  a.session_json = big; /* max_session = 64 */
  gw_relay_apply_reply(&t.r, &t.io, &a, 1);
  UNIT_CHECK(t.r.session == NULL);
  rig_free(&t);
}

/* n fresh names "g<round>_<i>" in buf (names point into it). */
static void fresh_names(char **names, char (*buf)[16], int round, int n) {
  for (int i = 0; i < n; i++) {
    snprintf(buf[i], 16, "g%d_%d", round, i);
    names[i] = buf[i];
  }
}

UNIT_TEST(gw_relay_group_changes_over_the_allowance_are_answered_here) {
  rig t;
  rig_init(&t);
  t.io.changes_rate = 10; /* one change per 100 ms */
  t.io.changes_burst = 150;
  rig_open(&t);
  char *names[100], buf[100][16];
  fresh_names(names, buf, 1, 100);
  client(&t, "100 groups"); /* 100 joins: 50 left */
  chan_reply r1 = groups_reply(1, names, 100);
  gw_relay_apply_reply(&t.r, &t.io, &r1, 0);
  fresh_names(names, buf, 2, 100);
  client(&t, "swap them"); /* 200 changes: overdrawn by 150 */
  chan_reply r2 = groups_reply(2, names, 100);
  gw_relay_apply_reply(&t.r, &t.io, &r2, 0);
  UNIT_CHECK(t.f.n_pub == 3 && t.r.changes_milli == -150000);
  client(&t, "again"); /* answered by the gateway, not a worker */
  UNIT_CHECK(t.f.n_pub == 3 && !t.r.inflight && t.f.n_sent == 1);
  UNIT_CHECK_STR(t.f.sent[0], GW_RELAY_CHANGES_ERROR);
  UNIT_CHECK(t.stats.changes_refused == 1 && t.r.n_members == 100 && !t.f.closed);
  t.io.now_ms += 15000; /* 150 changes later: still not positive */
  client(&t, "again");
  UNIT_CHECK(t.f.n_pub == 3 && t.stats.changes_refused == 2);
  t.io.now_ms += 100; /* one change allowed: the next goes to a worker */
  client(&t, "now");
  UNIT_CHECK(t.f.n_pub == 4 && strcmp(t.f.pub[3].data, "now") == 0 && t.r.inflight);
  t.io.now_ms += 3600000; /* an hour idle refills to the burst, no more */
  chan_reply r3 = reply(3);
  gw_relay_apply_reply(&t.r, &t.io, &r3, 0);
  client(&t, "x");
  UNIT_CHECK(t.r.changes_milli == 150000);
  rig_free(&t);
}

UNIT_TEST(gw_relay_queued_messages_answered_here_let_the_next_go) {
  rig t;
  rig_init(&t);
  t.io.changes_burst = 1;
  t.io.max_pending = 10;
  rig_open(&t);
  char *g[] = {"a", "b"};
  client(&t, "join two");
  client(&t, "queued 1");
  client(&t, "queued 2");
  chan_reply r1 = groups_reply(1, g, 2); /* 2 changes: overdrawn */
  gw_relay_apply_reply(&t.r, &t.io, &r1, 0);
  /* Both queued messages are answered at once, in order, none waits. */
  UNIT_CHECK(t.f.n_pub == 2 && t.f.n_sent == 2 && t.r.n_pending == 0 && !t.r.inflight);
  rig_free(&t);
}

UNIT_TEST(gw_relay_busy_binds_answer_server_busy) {
  rig t;
  rig_init(&t);
  rig_open(&t);
  t.io.binds_busy = 1;
  client(&t, "subscribe");
  UNIT_CHECK(t.f.n_pub == 1 && t.f.n_sent == 1 && t.stats.binds_busy_refused == 1);
  UNIT_CHECK_STR(t.f.sent[0], GW_RELAY_BUSY_ERROR);
  t.io.binds_busy = 0;
  client(&t, "subscribe");
  UNIT_CHECK(t.f.n_pub == 2 && t.r.inflight);
  rig_free(&t);
}

UNIT_TEST(gw_relay_refusal_with_status_503_answers_503) {
  rig t;
  rig_init(&t);
  chan_msg m = {0};
  UNIT_CHECK(gw_relay_connect(&t.r, &t.io, "/websocket/", &m) == 0);
  chan_reply a = reply(0);
  a.accept = 0;
  a.status = 503; /* the worker could not reach the application */
  UNIT_CHECK(gw_relay_apply_reply(&t.r, &t.io, &a, 1) == GW_RELAY_OK);
  UNIT_CHECK(t.f.refused == 503 && !t.f.accepted && t.f.n_sent == 0);
  UNIT_CHECK(t.stats.handshakes_failed == 1 && t.stats.handshakes_rejected == 0);
  rig_free(&t);
}

/* Offsets 0..n-1 of groups a (even) and b (odd); each body is its offset. */
static void hist_fill(gw_hist *h, uint64_t n) {
  for (uint64_t o = 0; o < n; o++) {
    char body[24];
    snprintf(body, sizeof body, "%llu", (unsigned long long)o);
    const char *g = o % 2 ? "b" : "a";
    uint64_t d = chan_pos_digest(o, g, 1, body, strlen(body));
    UNIT_CHECK(gw_hist_append(h, o, d, g, 1, gw_buf_frame(1, body, strlen(body))) != NULL);
  }
}

UNIT_TEST(gw_relay_wsgw2_reply_recovers_positions_then_replays_in_order) {
  rig t;
  rig_init(&t);
  gw_hist h;
  gw_hist_init(&h, 1u << 20);
  hist_fill(&h, 10);
  t.io.hist = &h;
  t.r.v2 = 1;
  t.f.push_room = 16;
  rig_open(&t);
  client(&t, "{}");
  char *names[] = {"a", "b"};
  chan_reply r = groups_reply(1, names, 2);
  chan_text texts[] = {{"{\"groups_current\": [\"a\", \"b\"]}", 30}};
  r.texts = texts;
  r.n_texts = 1;
  uint64_t tag_a3 = chan_pos_tag("a", 1, gw_hist_at(&h, 3)->digest);
  chan_reply_pos pos[] = {{"a", 3, tag_a3}, {"b", 5, 12345}, {"zz", 1, 1}};
  r.has_positions = 1;
  r.positions = pos;
  r.n_positions = 3;
  gw_relay_apply_reply(&t.r, &t.io, &r, 0);
  char want_a[CHAN_POS_MAX], want_b[CHAN_POS_MAX], want[512];
  chan_pos_format(want_a, 3, tag_a3);
  gw_hist_position(&h, "b", 9, want_b);
  snprintf(want, sizeof want,
           "{\"groups_current\": [\"a\", \"b\"],\"recovery\":{\"a\":\"ok\",\"b\":\"unknown\"},"
           "\"positions\":{\"a\":\"%s\",\"b\":\"%s\"}}", want_a, want_b);
  UNIT_CHECK(t.f.n_sent == 1);
  UNIT_CHECK_STR(t.f.sent[0], want);
  /* a's events after 3 follow the reply; b missed nothing it can get */
  UNIT_CHECK(t.f.n_pushed == 3 && t.f.pushed[0] == 4 && t.f.pushed[1] == 6 &&
             t.f.pushed[2] == 8);
  UNIT_CHECK(t.r.lag == NULL && t.stats.hist_recovered == 1 &&
             t.stats.hist_recover_unknown == 1);
  rig_free(&t);
  gw_hist_free(&h);
}

UNIT_TEST(gw_relay_wsgw2_catch_up_stops_when_full_and_expires_out_of_the_ring) {
  rig t;
  rig_init(&t);
  gw_hist h;
  gw_hist_init(&h, 1u << 20);
  hist_fill(&h, 10);
  t.io.hist = &h;
  t.r.v2 = 1;
  rig_open(&t);
  client(&t, "{}");
  char *names[] = {"a", "b"};
  chan_reply r = groups_reply(1, names, 2);
  gw_relay_apply_reply(&t.r, &t.io, &r, 0);
  /* The live event at 6 found the queue full: owed from 5 on. */
  UNIT_CHECK(gw_relay_lag_start(&t.r, gw_hist_prev_offset(&h, 6)) == 0);
  t.f.push_room = 2;
  gw_relay_pump(&t.r, &t.io);
  UNIT_CHECK(t.f.n_pushed == 2 && t.f.pushed[0] == 6 && t.f.pushed[1] == 7 && t.r.lag);
  t.f.push_room = 16;
  gw_relay_pump(&t.r, &t.io);
  UNIT_CHECK(t.f.n_pushed == 4 && t.f.pushed[2] == 8 && t.f.pushed[3] == 9 && !t.r.lag);
  /* Behind again, and the history moves on past it: a notice, then what
   * is left (the oldest message left is counted lost: 21 on). */
  UNIT_CHECK(gw_relay_lag_start(&t.r, 9) == 0);
  for (uint64_t o = 10; o < 25; o++)
    UNIT_CHECK(gw_hist_append(&h, o, o, o % 2 ? "b" : "a", 1, gw_buf_frame(1, "77", 2)));
  h.max_bytes = h.bytes / 2; /* the oldest go at the next append */
  UNIT_CHECK(gw_hist_append(&h, 25, 25, "b", 1, gw_buf_frame(1, "77", 2)));
  uint64_t first = gw_hist_prev_offset(&h, 26);
  while (gw_hist_at(&h, first)) first--;
  first++; /* the oldest offset left */
  size_t sent = t.f.n_sent, pushed = t.f.n_pushed;
  t.f.push_room = 64;
  gw_relay_pump(&t.r, &t.io);
  UNIT_CHECK(!t.r.lag && t.f.n_sent == sent + 1 && t.stats.hist_lag_expired == 1);
  UNIT_CHECK(strncmp(t.f.sent[sent], "{\"recovery\":{\"a\":\"expired\",\"b\":\"expired\"},"
                                     "\"positions\":{", 54) == 0);
  UNIT_CHECK(t.f.n_pushed == pushed + (25 - first)); /* every message after the oldest */
  rig_free(&t);
  gw_hist_free(&h);
}
