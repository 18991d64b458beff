/*
 * test_gw_expiry.c - the expiry heap (gw_expiry): order, updates in both
 * directions, removal from any position, the slots kept current, the array
 * shrinking back, and a random walk checked against every invariant after
 * each step. Also the relay's side: an accept's "user" and "expires", a
 * refresh moving the deadline, the end taking both away.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_expiry.h"
#include "gw_relay.h"
#include "gw_stats.h"
#include "unit.h"

UNIT_TEST(gw_expiry_pops_in_deadline_order_and_keeps_slots) {
  gw_expiry h = {0};
  uint32_t slots[5] = {0};
  uint64_t at[5] = {50, 10, 40, 20, 30};
  for (int i = 0; i < 5; i++) UNIT_CHECK(gw_expiry_set(&h, &slots[i], at[i]) == 0);
  UNIT_CHECK(gw_expiry_check(&h) && h.n == 5);
  UNIT_CHECK(gw_expiry_due(&h, 9) == NULL);
  uint64_t last = 0;
  uint32_t *s;
  int popped = 0;
  while ((s = gw_expiry_due(&h, 100))) {
    UNIT_CHECK(gw_expiry_at(&h, s) >= last);
    last = gw_expiry_at(&h, s);
    gw_expiry_remove(&h, s);
    UNIT_CHECK(*s == 0 && gw_expiry_check(&h));
    popped++;
  }
  UNIT_CHECK(popped == 5 && h.n == 0 && last == 50);
  gw_expiry_remove(&h, &slots[0]); /* not in the heap: nothing */
  gw_expiry_free(&h);
}

UNIT_TEST(gw_expiry_update_moves_an_entry_both_ways) {
  gw_expiry h = {0};
  uint32_t a = 0, b = 0, c = 0;
  gw_expiry_set(&h, &a, 10);
  gw_expiry_set(&h, &b, 20);
  gw_expiry_set(&h, &c, 30);
  UNIT_CHECK(gw_expiry_due(&h, 10) == &a);
  UNIT_CHECK(gw_expiry_set(&h, &a, 40) == 0 && gw_expiry_check(&h)); /* later: a refresh */
  UNIT_CHECK(gw_expiry_due(&h, 100) == &b);
  UNIT_CHECK(gw_expiry_set(&h, &c, 5) == 0 && gw_expiry_check(&h)); /* earlier */
  UNIT_CHECK(gw_expiry_due(&h, 5) == &c && gw_expiry_due(&h, 4) == NULL);
  gw_expiry_remove(&h, &b); /* from the middle */
  UNIT_CHECK(gw_expiry_check(&h) && h.n == 2 && b == 0);
  gw_expiry_free(&h);
}

UNIT_TEST(gw_expiry_random_walk_keeps_every_invariant_and_shrinks) {
  enum { N = 2000 };
  gw_expiry h = {0};
  uint32_t *slots = calloc(N, sizeof *slots);
  uint64_t *want = calloc(N, sizeof *want);
  unsigned seed = 12345;
  int ok = 1;
  for (int step = 0; step < 20000 && ok; step++) {
    int i = (int)(rand_r(&seed) % N);
    if (slots[i] && rand_r(&seed) % 3 == 0) {
      gw_expiry_remove(&h, &slots[i]);
    } else {
      want[i] = (uint64_t)(rand_r(&seed) % 100000);
      ok = gw_expiry_set(&h, &slots[i], want[i]) == 0;
    }
    if (step % 97 == 0) ok = ok && gw_expiry_check(&h);
  }
  UNIT_CHECK(ok && gw_expiry_check(&h));
  for (int i = 0; i < N; i++)
    if (slots[i]) UNIT_CHECK(gw_expiry_at(&h, &slots[i]) == want[i]);
  size_t peak = h.cap;
  for (int i = 0; i < N; i++) gw_expiry_remove(&h, &slots[i]);
  UNIT_CHECK(h.n == 0 && h.cap < peak && h.cap <= 128);
  gw_expiry_free(&h);
  free(slots);
  free(want);
}

/* ---- the relay's side ---- */

typedef struct rel {
  int open;
  uint16_t closed;
} rel;

static int rel_publish(void *arg, const char *q, char *json, size_t len, int answer) {
  (void)arg, (void)q, (void)len, (void)answer;
  free(json);
  return 0;
}
static void rel_send(void *arg, int op, const char *d, size_t n) { (void)arg, (void)op, (void)d, (void)n; }
static void rel_close(void *arg, uint16_t code, const char *why) {
  (void)why;
  ((rel *)arg)->closed = code;
  ((rel *)arg)->open = 0;
}
static void rel_refuse(void *arg, int st) { (void)arg, (void)st; }
static int rel_accept(void *arg) {
  ((rel *)arg)->open = 1;
  return 0;
}
static int rel_open(void *arg) { return ((rel *)arg)->open; }
static const gw_relay_sink rel_sink = {rel_publish, rel_send, rel_close,
                                       rel_refuse, rel_accept, rel_open, NULL};

UNIT_TEST(gw_relay_accept_joins_the_user_key_and_sets_the_expiry_a_refresh_moves_it) {
  rel f = {0};
  gw_relay r;
  gw_group_table groups;
  gw_timeq replies = {0};
  gw_expiry exp = {0};
  gw_stats st;
  memset(&r, 0, sizeof r);
  memset(&st, 0, sizeof st);
  int saved = unit_stderr_mute();
  UNIT_CHECK(gw_group_table_init(&groups, NULL, NULL, NULL) == 0);
  gw_relay_io io = {.sink = &rel_sink, .arg = &f, .id = 3,
                    .reply_channel = "websocket.send.amq.gen-x!3", .groups = &groups,
                    .replies = &replies, .stats = &st, .now_ms = 1000, .max_rate = 100,
                    .max_pending = 3, .max_session = 64, .changes_rate = 10,
                    .changes_burst = 200, .expiries = &exp,
                    .wall_ms = 1700000000000ull, .refresh_window_ms = 60000};
  chan_msg m = {0};
  UNIT_CHECK(gw_relay_connect(&r, &io, "/websocket/", &m) == 0);
  chan_reply a;
  memset(&a, 0, sizeof a);
  a.accept = 1;
  a.user = 7;
  a.expires = 1700000030; /* 30 s from wall_ms */
  UNIT_CHECK(gw_relay_apply_reply(&r, &io, &a, 1) == GW_RELAY_ACCEPTED);
  UNIT_CHECK(r.user && strcmp(r.user->group->name, "wsgw!user.7") == 0);
  UNIT_CHECK(r.n_members == 0); /* not a client group: never in "groups" */
  UNIT_CHECK(r.exp_slot && gw_expiry_at(&exp, &r.exp_slot) == 1000 + 30000 + 60000);
  /* A refresh: the reply to a client message carrying "expires". */
  const char *msg = "{\"token\": \"t\"}";
  gw_relay_client_message(&r, &io, 0, (const uint8_t *)msg, strlen(msg));
  chan_reply ref;
  memset(&ref, 0, sizeof ref);
  ref.accept = -1;
  ref.order = 1;
  ref.expires = 1700003600;
  UNIT_CHECK(gw_relay_apply_reply(&r, &io, &ref, 0) == GW_RELAY_OK);
  UNIT_CHECK(gw_expiry_at(&exp, &r.exp_slot) == 1000 + 3600000 + 60000);
  UNIT_CHECK(st.refreshes == 1 && f.closed == 0);
  /* An expiry long past: due at once. */
  gw_relay_client_message(&r, &io, 0, (const uint8_t *)msg, strlen(msg));
  ref.order = 2;
  ref.expires = 1600000000;
  gw_relay_apply_reply(&r, &io, &ref, 0);
  UNIT_CHECK(gw_expiry_due(&exp, 1000) == &r.exp_slot);
  gw_relay_end(&r, &io, 1000);
  UNIT_CHECK(!r.user && !r.exp_slot && exp.n == 0 && groups.n_groups == 0);
  gw_relay_free(&r);
  gw_expiry_free(&exp);
  gw_group_table_free(&groups);
  unit_stderr_restore(saved);
}

/* ---- re-checks of application grants (the second heap) ---- */

typedef struct rc_rel {
  int open;
  uint16_t closed;
  int texts;
  char last[512]; /* the last message published */
} rc_rel;

static int rc_publish(void *arg, const char *q, char *json, size_t len, int answer) {
  (void)q, (void)answer;
  rc_rel *f = arg;
  snprintf(f->last, sizeof f->last, "%.*s", (int)len, json);
  free(json);
  return 0;
}
static void rc_send(void *arg, int op, const char *d, size_t n) {
  (void)op, (void)d, (void)n;
  ((rc_rel *)arg)->texts++;
}
static void rc_close(void *arg, uint16_t code, const char *why) {
  (void)why;
  ((rc_rel *)arg)->closed = code;
  ((rc_rel *)arg)->open = 0;
}
static int rc_accept(void *arg) {
  ((rc_rel *)arg)->open = 1;
  return 0;
}
static int rc_open(void *arg) { return ((rc_rel *)arg)->open; }
static const gw_relay_sink rc_sink = {rc_publish, rc_send, rc_close,
                                      rel_refuse, rc_accept, rc_open, NULL};

static chan_reply rc_reply(uint64_t order, uint64_t recheck) {
  chan_reply r;
  memset(&r, 0, sizeof r);
  r.accept = -1;
  r.order = order;
  r.recheck = recheck;
  return r;
}

UNIT_TEST(gw_relay_recheck_deadline_sent_free_of_the_allowances_and_replaced_by_its_reply) {
  rc_rel f = {0};
  gw_relay r;
  gw_group_table groups;
  gw_timeq replies = {0};
  gw_expiry exp = {0}, rch = {0};
  gw_stats st;
  memset(&r, 0, sizeof r);
  memset(&st, 0, sizeof st);
  int saved = unit_stderr_mute();
  UNIT_CHECK(gw_group_table_init(&groups, NULL, NULL, NULL) == 0);
  gw_relay_io io = {.sink = &rc_sink, .arg = &f, .id = 3,
                    .reply_channel = "websocket.send.amq.gen-x!3", .groups = &groups,
                    .replies = &replies, .stats = &st, .now_ms = 1000, .max_rate = 100,
                    .max_pending = 3, .max_session = 64, .changes_rate = 10,
                    .changes_burst = 200, .expiries = &exp, .rechecks = &rch,
                    .wall_ms = 1700000000000ull, .refresh_window_ms = 60000};
  chan_msg m = {0};
  UNIT_CHECK(gw_relay_connect(&r, &io, "/websocket/", &m) == 0);
  chan_reply a = rc_reply(0, 0);
  a.accept = 1;
  UNIT_CHECK(gw_relay_apply_reply(&r, &io, &a, 1) == GW_RELAY_ACCEPTED);
  UNIT_CHECK(r.recheck_slot == 0 && rch.n == 0);
  /* A subscription whose reply holds hook-granted groups: due in 2 s. */
  const char *sub = "{\"groups\": {\"job_events\": [1, 2]}}";
  char *g[2] = {"job_events-1", "job_events-2"};
  gw_relay_client_message(&r, &io, 0, (const uint8_t *)sub, strlen(sub));
  chan_reply s1 = rc_reply(1, 1700000002);
  s1.has_groups = 1;
  s1.groups = g;
  s1.n_groups = 2;
  gw_relay_apply_reply(&r, &io, &s1, 0);
  UNIT_CHECK(r.n_members == 2 && gw_expiry_at(&rch, &r.recheck_slot) == 3000);
  /* Another client reply cannot put it off, only bring it forward. */
  gw_relay_client_message(&r, &io, 0, (const uint8_t *)sub, strlen(sub));
  chan_reply s2 = rc_reply(2, 1700000060);
  gw_relay_apply_reply(&r, &io, &s2, 0);
  UNIT_CHECK(gw_expiry_at(&rch, &r.recheck_slot) == 3000);
  gw_relay_client_message(&r, &io, 0, (const uint8_t *)sub, strlen(sub));
  chan_reply s3 = rc_reply(3, 1700000001);
  gw_relay_apply_reply(&r, &io, &s3, 0);
  UNIT_CHECK(gw_expiry_at(&rch, &r.recheck_slot) == 2000);
  /* Due: what gw_conn's tick does. The message is a re-check, not text. */
  io.now_ms = 2000;
  UNIT_CHECK(gw_expiry_due(&rch, 2000) == &r.recheck_slot);
  gw_expiry_remove(&rch, &r.recheck_slot);
  int32_t allowance = r.changes_milli;
  uint16_t rate = r.rate_count;
  gw_relay_recheck(&r, &io);
  UNIT_CHECK(r.inflight && r.recheck_inflight && st.rechecks == 1);
  UNIT_CHECK(strstr(f.last, "\"recheck\":true") && !strstr(f.last, "\"text\"") &&
             strstr(f.last, "\"order\":4"));
  UNIT_CHECK(r.rate_count == rate);
  /* Its reply: one removed with its text, not charged, next deadline set. */
  char *g2[1] = {"job_events-2"};
  chan_text t = {"{\"error\": \"access denied to channel job_events for resource id 1\"}", 66};
  chan_reply rr = rc_reply(4, 1700000005);
  rr.has_groups = 1;
  rr.groups = g2;
  rr.n_groups = 1;
  rr.texts = &t;
  rr.n_texts = 1;
  int texts = f.texts;
  gw_relay_apply_reply(&r, &io, &rr, 0);
  UNIT_CHECK(r.n_members == 1 && r.changes_milli >= allowance && st.recheck_leaves == 1);
  UNIT_CHECK(f.texts == texts + 1 && gw_expiry_at(&rch, &r.recheck_slot) == 2000 + 5000);
  /* Due while a client message is with a worker: sent right after it. */
  gw_expiry_remove(&rch, &r.recheck_slot);
  gw_relay_client_message(&r, &io, 0, (const uint8_t *)sub, strlen(sub));
  gw_relay_recheck(&r, &io);
  UNIT_CHECK(r.recheck_due && !r.recheck_inflight && st.rechecks == 1);
  chan_reply s5 = rc_reply(5, 0);
  gw_relay_apply_reply(&r, &io, &s5, 0);
  UNIT_CHECK(r.recheck_inflight && !r.recheck_due && st.rechecks == 2 &&
             strstr(f.last, "\"recheck\":true") && strstr(f.last, "\"order\":6"));
  /* A timeout of a re-check tells the client nothing. */
  texts = f.texts;
  gw_relay_timeout(&r, &io);
  UNIT_CHECK(f.texts == texts && !r.inflight && !r.recheck_inflight);
  UNIT_CHECK(gw_expiry_at(&rch, &r.recheck_slot) == 2000 + 30000); /* tried again */
  gw_expiry_remove(&rch, &r.recheck_slot);
  /* A re-check's reply without "recheck": no deadline any more. */
  gw_relay_recheck(&r, &io);
  chan_reply s7 = rc_reply(7, 1700000009);
  gw_relay_apply_reply(&r, &io, &s7, 0);
  UNIT_CHECK(r.recheck_slot != 0);
  gw_relay_recheck(&r, &io);
  chan_reply s8 = rc_reply(8, 0);
  gw_relay_apply_reply(&r, &io, &s8, 0);
  UNIT_CHECK(r.recheck_slot == 0 && rch.n == 0);
  /* The end takes the deadline away. */
  gw_relay_client_message(&r, &io, 0, (const uint8_t *)sub, strlen(sub));
  chan_reply s9 = rc_reply(9, 1700000030);
  gw_relay_apply_reply(&r, &io, &s9, 0);
  UNIT_CHECK(rch.n == 1 && f.closed == 0);
  gw_relay_end(&r, &io, 1000);
  UNIT_CHECK(r.recheck_slot == 0 && rch.n == 0);
  gw_relay_free(&r);
  gw_expiry_free(&exp);
  gw_expiry_free(&rch);
  gw_group_table_free(&groups);
  unit_stderr_restore(saved);
}
