/*
 * test_wk_subscribe.c - the subscription protocol of docs/PROTOCOL.md
 * "Subscribing", pinned down text for text; on wsgw.2 the request's
 * "positions" (each error, the order of the checks, what the result hands
 * on) and the reply wk_handle builds from it, at once or after the
 * subscribe hook answered.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "chan_msg.h"
#include "chan_names.h"
#include "chan_reply.h"
#include "unit.h"
#include "wk_cache.h"
#include "wk_handle.h"
#include "wk_subscribe.h"

/* One run of wk_subscribe_apply for user 7 under AWX's default policy, with
 * grants for job_events 42 and "43" and every workflow_events id. */
typedef struct wk_sub_t {
  wk_policy policy;
  cJSON *objects;
  wk_session session;
  wk_subscribe_result res;
} wk_sub_t;

static void wk_sub_t_init(wk_sub_t *t, const char *csrftoken) {
  char err[128];
  UNIT_CHECK(wk_policy_load(&t->policy, NULL, err, sizeof err) == 0);
  t->objects = cJSON_Parse(
      "{\"job_events\": [42, \"43\"], \"workflow_events\": \"*\"}");
  memset(&t->session, 0, sizeof t->session);
  t->session.user_id = 7;
  t->session.csrftoken = csrftoken;
  t->session.objects = t->objects;
  memset(&t->res, 0, sizeof t->res);
}

static void wk_sub_t_run(wk_sub_t *t, const char *req, char *const *cur,
                         size_t n_cur, size_t max) {
  wk_subscribe_result_free(&t->res);
  UNIT_CHECK(wk_subscribe_apply(req, strlen(req), cur, n_cur, &t->session,
                                &t->policy, max, &t->res) == 0);
}

static void wk_sub_t_done(wk_sub_t *t) {
  wk_subscribe_result_free(&t->res);
  wk_policy_free(&t->policy);
  cJSON_Delete(t->objects);
}

/* The request failed as a whole with exactly this error. */
static int wk_sub_t_failed(const wk_sub_t *t, const char *msg) {
  char want[256];
  snprintf(want, sizeof want, "{\"error\": \"%s\"}", msg);
  return t->res.n_texts == 1 && !t->res.has_groups &&
         t->res.texts[0].len == strlen(want) &&
         strcmp(t->res.texts[0].data, want) == 0;
}

static const char *wk_sub_t_last(const wk_sub_t *t) {
  return t->res.n_texts ? t->res.texts[t->res.n_texts - 1].data : "";
}

UNIT_TEST(wk_subscribe_joins_list_values) {
  wk_sub_t t;
  wk_sub_t_init(&t, NULL);
  wk_sub_t_run(&t,
               "{\"groups\": {\"jobs\": [\"summary\", \"status_changed\"]}}",
               NULL, 0, 100);
  UNIT_CHECK(t.res.has_groups && t.res.n_groups == 2 && t.res.n_texts == 1);
  UNIT_CHECK_STR(t.res.groups[0], "jobs-status_changed");
  UNIT_CHECK_STR(t.res.groups[1], "jobs-summary");
  UNIT_CHECK_STR(wk_sub_t_last(&t),
                 "{\"groups_current\": [\"jobs-status_changed\", "
                 "\"jobs-summary\"], \"groups_joined\": "
                 "[\"jobs-status_changed\", \"jobs-summary\"], "
                 "\"groups_left\": []}");
  UNIT_CHECK(t.res.texts[0].len == strlen(t.res.texts[0].data));
  wk_sub_t_done(&t);
}

UNIT_TEST(wk_subscribe_replaces_whole_set) {
  wk_sub_t t;
  char *cur[] = {"schedules-changed", "jobs-summary"};
  wk_sub_t_init(&t, NULL);
  wk_sub_t_run(&t,
               "{\"groups\": {\"jobs\": [\"status_changed\", \"summary\"]}}",
               cur, 2, 100);
  UNIT_CHECK_STR(wk_sub_t_last(&t),
                 "{\"groups_current\": [\"jobs-status_changed\", "
                 "\"jobs-summary\"], \"groups_joined\": "
                 "[\"jobs-status_changed\"], \"groups_left\": "
                 "[\"schedules-changed\"]}");
  wk_sub_t_run(&t, "{\"groups\": {}}", cur, 2, 100);
  UNIT_CHECK(t.res.has_groups && t.res.n_groups == 0);
  UNIT_CHECK_STR(wk_sub_t_last(&t),
                 "{\"groups_current\": [], \"groups_joined\": [], "
                 "\"groups_left\": [\"jobs-summary\", \"schedules-changed\"]}");
  wk_sub_t_done(&t);
}

UNIT_TEST(wk_subscribe_is_idempotent) {
  wk_sub_t t;
  const char *req =
      "{\"groups\": {\"jobs\": [\"summary\"], \"job_events\": [42, 44]}}";
  wk_sub_t_init(&t, NULL);
  wk_sub_t_run(&t, req, NULL, 0, 100);
  size_t n = t.res.n_groups;
  char **again = malloc(n * sizeof *again);
  for (size_t i = 0; i < n; i++) again[i] = strdup(t.res.groups[i]);
  wk_sub_t_run(&t, req, again, n, 100);
  UNIT_CHECK(t.res.n_groups == n && n == 2);
  UNIT_CHECK(t.res.n_texts == 2); /* the refusal of 44 repeats */
  UNIT_CHECK_STR(wk_sub_t_last(&t),
                 "{\"groups_current\": [\"job_events-42\", \"jobs-summary\"], "
                 "\"groups_joined\": [], \"groups_left\": []}");
  for (size_t i = 0; i < n; i++) free(again[i]);
  free(again);
  wk_sub_t_done(&t);
}

UNIT_TEST(wk_subscribe_non_list_and_empty_values) {
  wk_sub_t t;
  wk_sub_t_init(&t, NULL);
  wk_sub_t_run(&t,
               "{\"groups\": {\"jobs\": \"ignored\", \"schedules\": 5, "
               "\"inventories\": {}, \"job_events\": []}}",
               NULL, 0, 100);
  UNIT_CHECK(t.res.has_groups && t.res.n_groups == 2);
  UNIT_CHECK_STR(t.res.groups[0], "jobs");
  UNIT_CHECK_STR(t.res.groups[1], "schedules");
  wk_sub_t_run(&t, "{\"groups\": {\"inventories\": {\"a\": 1}}}", NULL, 0,
               100);
  UNIT_CHECK(wk_sub_t_failed(&t, "invalid group name"));
  wk_sub_t_done(&t);
}

UNIT_TEST(wk_subscribe_refuses_entries_one_by_one) {
  wk_sub_t t;
  wk_sub_t_init(&t, NULL);
  wk_sub_t_run(&t,
               "{\"groups\": {\"job_events\": [44, 42, \"43\", 45], "
               "\"control\": [\"limit_reached_7\", \"limit_reached_8\"]}}",
               NULL, 0, 100);
  UNIT_CHECK(t.res.has_groups && t.res.n_texts == 4);
  UNIT_CHECK_STR(t.res.texts[0].data,
                 "{\"error\": \"access denied to channel job_events for "
                 "resource id 44\"}");
  UNIT_CHECK_STR(t.res.texts[1].data,
                 "{\"error\": \"access denied to channel job_events for "
                 "resource id 45\"}");
  UNIT_CHECK_STR(t.res.texts[2].data,
                 "{\"error\": \"access denied to channel control for "
                 "resource id limit_reached_8\"}");
  UNIT_CHECK_STR(wk_sub_t_last(&t),
                 "{\"groups_current\": [\"control-limit_reached_7\", "
                 "\"job_events-42\", \"job_events-43\"], \"groups_joined\": "
                 "[\"control-limit_reached_7\", \"job_events-42\", "
                 "\"job_events-43\"], \"groups_left\": []}");
  wk_sub_t_done(&t);
}

UNIT_TEST(wk_subscribe_bare_key_policies) {
  wk_sub_t t;
  wk_sub_t_init(&t, NULL);
  wk_sub_t_run(&t,
               "{\"groups\": {\"control\": \"x\", \"job_events\": 1, "
               "\"workflow_events\": 1}}",
               NULL, 0, 100);
  UNIT_CHECK(t.res.n_texts == 3 && t.res.n_groups == 1);
  UNIT_CHECK_STR(t.res.texts[0].data,
                 "{\"error\": \"access denied to channel control\"}");
  UNIT_CHECK_STR(t.res.texts[1].data,
                 "{\"error\": \"access denied to channel job_events\"}");
  UNIT_CHECK_STR(t.res.groups[0], "workflow_events");
  wk_sub_t_done(&t);
}

UNIT_TEST(wk_subscribe_dedupes_and_sorts) {
  wk_sub_t t;
  wk_sub_t_init(&t, NULL);
  wk_sub_t_run(&t,
               "{\"groups\": {\"jobs\": [\"b\", \"a\", \"b\"], "
               "\"jobs\": [\"c\"], \"workflow_events\": [10, 9, 10.0]}}",
               NULL, 0, 100);
  UNIT_CHECK(t.res.n_groups == 5);
  UNIT_CHECK_STR(t.res.groups[0], "jobs-a");
  UNIT_CHECK_STR(t.res.groups[1], "jobs-b");
  UNIT_CHECK_STR(t.res.groups[2], "jobs-c");
  UNIT_CHECK_STR(t.res.groups[3], "workflow_events-10");
  UNIT_CHECK_STR(t.res.groups[4], "workflow_events-9");
  wk_sub_t_done(&t);
}

UNIT_TEST(wk_subscribe_request_errors_change_nothing) {
  wk_sub_t t;
  char *cur[] = {"jobs-summary"};
  wk_sub_t_init(&t, NULL);
  wk_sub_t_run(&t, "{\"groups\": ", cur, 1, 100);
  UNIT_CHECK(wk_sub_t_failed(&t, "invalid JSON"));
  wk_sub_t_run(&t, "{\"groups\": {}} x", cur, 1, 100);
  UNIT_CHECK(wk_sub_t_failed(&t, "invalid JSON"));
  wk_sub_t_run(&t, "", cur, 1, 100);
  UNIT_CHECK(wk_sub_t_failed(&t, "invalid JSON"));
  wk_sub_t_run(&t, "[{\"groups\": {}}]", cur, 1, 100);
  UNIT_CHECK(wk_sub_t_failed(&t, "request must be a JSON object"));
  wk_sub_t_run(&t, "\"groups\"", cur, 1, 100);
  UNIT_CHECK(wk_sub_t_failed(&t, "request must be a JSON object"));
  wk_sub_t_run(&t, "{\"groups\": {}, \"extra\": 1}", cur, 1, 100);
  UNIT_CHECK(wk_sub_t_failed(&t, "unknown key: extra"));
  wk_sub_t_run(&t, "{\"groups\": [\"jobs\"]}", cur, 1, 100);
  UNIT_CHECK(wk_sub_t_failed(&t, "groups must be an object"));
  wk_sub_t_run(&t, "{}", cur, 1, 100);
  UNIT_CHECK(wk_sub_t_failed(&t, "groups must be an object"));
  wk_sub_t_run(&t, "{\"groups\": {\"nope\": [1]}}", cur, 1, 100);
  UNIT_CHECK(wk_sub_t_failed(&t, "unknown channel: nope"));
  wk_sub_t_done(&t);
}

UNIT_TEST(wk_subscribe_invalid_names) {
  static const char *const bad[] = {
      "{\"groups\": {\"job-s\": [1]}}",
      "{\"groups\": {\"\": [1]}}",
      "{\"groups\": {\"jobs\": [\"a b\"]}}",
      "{\"groups\": {\"jobs\": [\"a-b\"]}}",
      "{\"groups\": {\"jobs\": [\"\"]}}",
      "{\"groups\": {\"jobs\": [-1]}}",
      "{\"groups\": {\"jobs\": [1.5]}}",
      "{\"groups\": {\"jobs\": [1e300]}}",
      "{\"groups\": {\"jobs\": [true]}}",
      "{\"groups\": {\"jobs\": [null]}}",
      "{\"groups\": {\"jobs\": [[1]]}}",
      "{\"groups\": {\"jobs\": [\"x\\u00e9\"]}}",
      /* 65 characters */
      "{\"groups\": {\"jobs\": [\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aaaaaaaaaaaaaaaaaaaaa\"]}}",
  };
  wk_sub_t t;
  wk_sub_t_init(&t, NULL);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    wk_sub_t_run(&t, bad[i], NULL, 0, 100);
    if (!wk_sub_t_failed(&t, "invalid group name")) {
      fprintf(stderr, "  request %zu: %s\n", i, wk_sub_t_last(&t));
      UNIT_CHECK(0);
    }
  }
  wk_sub_t_done(&t);
}

UNIT_TEST(wk_subscribe_name_length_limit) {
  wk_sub_t t;
  char req[512];
  wk_sub_t_init(&t, NULL);
  /* "jobs-" + 64 = 69 characters: fine. */
  snprintf(req, sizeof req, "{\"groups\": {\"jobs\": [\"%064d\"]}}", 0);
  wk_sub_t_run(&t, req, NULL, 0, 100);
  UNIT_CHECK(t.res.has_groups && t.res.n_groups == 1);
  wk_sub_t_done(&t);
}

UNIT_TEST(wk_subscribe_too_many_groups) {
  wk_sub_t t;
  char *cur[] = {"jobs-a"};
  wk_sub_t_init(&t, NULL);
  wk_sub_t_run(&t, "{\"groups\": {\"jobs\": [\"a\", \"b\"], \"schedules\": 1}}",
               cur, 1, 2);
  UNIT_CHECK(wk_sub_t_failed(&t, "too many groups"));
  wk_sub_t_run(&t, "{\"groups\": {\"jobs\": [\"a\", \"b\"]}}", cur, 1, 2);
  UNIT_CHECK(t.res.has_groups && t.res.n_groups == 2);
  /* Refused entries count too: the limit also bounds the error texts. */
  wk_sub_t_run(&t, "{\"groups\": {\"job_events\": [1, 2, 3]}}", cur, 1, 2);
  UNIT_CHECK(wk_sub_t_failed(&t, "too many groups"));
  wk_sub_t_done(&t);
}

UNIT_TEST(wk_subscribe_xrftoken) {
  wk_sub_t t;
  wk_sub_t_init(&t, "abc");
  wk_sub_t_run(&t, "{\"groups\": {\"jobs\": [\"a\"]}}", NULL, 0, 100);
  UNIT_CHECK(wk_sub_t_failed(&t, "xrftoken mismatch"));
  wk_sub_t_run(&t, "{\"groups\": {\"jobs\": [\"a\"]}, \"xrftoken\": \"abd\"}",
               NULL, 0, 100);
  UNIT_CHECK(wk_sub_t_failed(&t, "xrftoken mismatch"));
  wk_sub_t_run(&t, "{\"groups\": {\"jobs\": [\"a\"]}, \"xrftoken\": \"ab\"}",
               NULL, 0, 100);
  UNIT_CHECK(wk_sub_t_failed(&t, "xrftoken mismatch"));
  wk_sub_t_run(&t, "{\"groups\": {\"jobs\": [\"a\"]}, \"xrftoken\": 1}", NULL,
               0, 100);
  UNIT_CHECK(wk_sub_t_failed(&t, "xrftoken mismatch"));
  wk_sub_t_run(&t, "{\"xrftoken\": \"abc\", \"groups\": {\"jobs\": [\"a\"]}}",
               NULL, 0, 100);
  UNIT_CHECK(t.res.has_groups && t.res.n_groups == 1);
  wk_sub_t_done(&t);
  /* Without a csrftoken cookie, xrftoken is not needed and not checked. */
  wk_sub_t_init(&t, NULL);
  wk_sub_t_run(&t, "{\"groups\": {\"jobs\": [\"a\"]}, \"xrftoken\": \"zz\"}",
               NULL, 0, 100);
  UNIT_CHECK(t.res.has_groups && t.res.n_groups == 1);
  wk_sub_t_done(&t);
}

UNIT_TEST(wk_subscribe_unknown_key_is_sanitized) {
  wk_sub_t t;
  wk_sub_t_init(&t, NULL);
  wk_sub_t_run(&t, "{\"a\\\"b\\\\c\\n\\u00e9\": 1, \"groups\": {}}", NULL, 0,
               100);
  UNIT_CHECK(t.res.n_texts == 1 && !t.res.has_groups);
  UNIT_CHECK_STR(t.res.texts[0].data, "{\"error\": \"unknown key: a?b?c???\"}");
  char req[300];
  snprintf(req, sizeof req, "{\"%0200d\": 1}", 0);
  wk_sub_t_run(&t, req, NULL, 0, 100);
  UNIT_CHECK(t.res.texts[0].len < 100);
  wk_sub_t_done(&t);
}

UNIT_TEST(wk_subscribe_ignores_bad_current_names) {
  wk_sub_t t;
  char *cur[] = {"jobs-a", "bad\"name", "jobs-a"};
  wk_sub_t_init(&t, NULL);
  wk_sub_t_run(&t, "{\"groups\": {}}", cur, 3, 100);
  UNIT_CHECK_STR(wk_sub_t_last(&t),
                 "{\"groups_current\": [], \"groups_joined\": [], "
                 "\"groups_left\": [\"jobs-a\"]}");
  wk_sub_t_done(&t);
}

UNIT_TEST(wk_subscribe_uses_len_not_nul) {
  wk_sub_t t;
  const char *req = "{\"groups\": {\"jobs\": [\"a\"]}}GARBAGE";
  wk_sub_t_init(&t, NULL);
  UNIT_CHECK(wk_subscribe_apply(req, strlen(req) - 7, NULL, 0, &t.session,
                                &t.policy, 100, &t.res) == 0);
  UNIT_CHECK(t.res.has_groups && t.res.n_groups == 1);
  wk_sub_t_done(&t);
}

/* ---- positions (wsgw.2, issue 14) ---- */

#define P1 "1234-0123456789ab"
#define P2 "0-ffffffffffff"

static void wk_sub_t_wsgw2(wk_sub_t *t) { t->session.positions = 1; }

UNIT_TEST(wk_subscribe_positions_are_an_unknown_key_on_the_old_protocol) {
  wk_sub_t t;
  wk_sub_t_init(&t, NULL);
  wk_sub_t_run(&t, "{\"groups\": {\"jobs\": [\"a\"]}, \"positions\": {\"jobs-a\": \"" P1 "\"}}",
               NULL, 0, 100);
  UNIT_CHECK(wk_sub_t_failed(&t, "unknown key: positions"));
  /* And the old result has none. */
  wk_sub_t_run(&t, "{\"groups\": {\"jobs\": [\"a\"]}}", NULL, 0, 100);
  UNIT_CHECK(t.res.has_groups && !t.res.has_positions && !t.res.positions &&
             !t.res.n_positions);
  wk_sub_t_done(&t);
}

UNIT_TEST(wk_subscribe_wsgw2_texts_are_the_old_ones) {
  const char *req =
      "{\"groups\": {\"job_events\": [44, 42], \"jobs\": [\"a\"]}, "
      "\"positions\": {\"jobs-a\": \"" P1 "\"}}";
  const char *old = "{\"groups\": {\"job_events\": [44, 42], \"jobs\": [\"a\"]}}";
  wk_sub_t a, b;
  wk_sub_t_init(&a, NULL);
  wk_sub_t_init(&b, NULL);
  wk_sub_t_wsgw2(&b);
  wk_sub_t_run(&a, old, NULL, 0, 100);
  wk_sub_t_run(&b, req, NULL, 0, 100);
  UNIT_CHECK(a.res.n_texts == 2 && b.res.n_texts == 2);
  for (size_t i = 0; i < 2 && i < a.res.n_texts && i < b.res.n_texts; i++)
    UNIT_CHECK_STR(a.res.texts[i].data, b.res.texts[i].data);
  UNIT_CHECK(b.res.n_groups == 2 && b.res.has_positions && b.res.n_positions == 1);
  wk_sub_t_done(&a);
  wk_sub_t_done(&b);
}

UNIT_TEST(wk_subscribe_positions_for_the_new_membership_only) {
  wk_sub_t t;
  wk_sub_t_init(&t, NULL);
  wk_sub_t_wsgw2(&t);
  /* 44 is refused: its position goes; "schedules" is a bare key. */
  wk_sub_t_run(&t,
               "{\"groups\": {\"job_events\": [44, 42], \"jobs\": [\"b\", \"a\"], "
               "\"schedules\": 1}, \"positions\": {\"job_events-44\": \"" P2 "\", "
               "\"jobs-b\": \"" P1 "\", \"schedules\": \"" P2 "\", "
               "\"job_events-42\": \"7-000000000001\"}}",
               NULL, 0, 100);
  UNIT_CHECK(t.res.has_groups && t.res.n_groups == 4 && t.res.has_positions);
  UNIT_CHECK(t.res.n_positions == 3);
  if (t.res.n_positions == 3) { /* sorted as the groups are */
    UNIT_CHECK_STR(t.res.positions[0].group, "job_events-42");
    UNIT_CHECK(t.res.positions[0].offset == 7 && t.res.positions[0].tag == 1);
    UNIT_CHECK_STR(t.res.positions[1].group, "jobs-b");
    UNIT_CHECK(t.res.positions[1].offset == 1234 &&
               t.res.positions[1].tag == 0x0123456789abull);
    UNIT_CHECK_STR(t.res.positions[2].group, "schedules");
    UNIT_CHECK(t.res.positions[2].offset == 0 &&
               t.res.positions[2].tag == 0xffffffffffffull);
  }
  UNIT_CHECK_STR(t.res.texts[0].data,
                 "{\"error\": \"access denied to channel job_events for resource id 44\"}");
  wk_sub_t_done(&t);
}

UNIT_TEST(wk_subscribe_positions_empty_or_absent_give_none) {
  wk_sub_t t;
  wk_sub_t_init(&t, NULL);
  wk_sub_t_wsgw2(&t);
  wk_sub_t_run(&t, "{\"groups\": {\"jobs\": [\"a\"]}}", NULL, 0, 100);
  UNIT_CHECK(t.res.has_groups && t.res.has_positions && t.res.n_positions == 0);
  wk_sub_t_run(&t, "{\"groups\": {\"jobs\": [\"a\"]}, \"positions\": {}}", NULL, 0, 100);
  UNIT_CHECK(t.res.has_groups && t.res.has_positions && t.res.n_positions == 0);
  wk_sub_t_run(&t, "{\"groups\": {}, \"positions\": {}}", NULL, 0, 100);
  UNIT_CHECK(t.res.has_groups && t.res.n_groups == 0 && t.res.has_positions &&
             t.res.n_positions == 0);
  /* Every entry refused: no groups, no positions, still a success. */
  wk_sub_t_run(&t, "{\"groups\": {\"job_events\": [44]}, "
                   "\"positions\": {\"job_events-44\": \"" P1 "\"}}",
               NULL, 0, 100);
  UNIT_CHECK(t.res.has_groups && t.res.n_groups == 0 && t.res.has_positions &&
             t.res.n_positions == 0 && t.res.n_texts == 2);
  wk_sub_t_done(&t);
}

UNIT_TEST(wk_subscribe_a_group_named_twice_keeps_the_last_position) {
  wk_sub_t t;
  wk_sub_t_init(&t, NULL);
  wk_sub_t_wsgw2(&t);
  wk_sub_t_run(&t, "{\"groups\": {\"jobs\": [\"a\", \"a\"]}, \"positions\": "
                   "{\"jobs-a\": \"" P1 "\", \"jobs-a\": \"" P2 "\"}}",
               NULL, 0, 100);
  UNIT_CHECK(t.res.n_groups == 1 && t.res.n_positions == 1);
  UNIT_CHECK(t.res.n_positions == 1 && t.res.positions[0].offset == 0);
  wk_sub_t_done(&t);
}

UNIT_TEST(wk_subscribe_positions_errors_change_nothing) {
  static const struct {
    const char *positions, *error;
  } cases[] = {
      {"[]", "positions must be an object"},
      {"\"" P1 "\"", "positions must be an object"},
      {"null", "positions must be an object"},
      {"1", "positions must be an object"},
      {"{\"jobs-b\": \"" P1 "\"}", "position for a group not requested: jobs-b"},
      {"{\"jobs\": \"" P1 "\"}", "position for a group not requested: jobs"},
      {"{\"\": \"" P1 "\"}", "position for a group not requested: "},
      {"{\"a\\\"b\\\\c\\n\\u00e9\": \"" P1 "\"}",
       "position for a group not requested: a?b?c???"},
      {"{\"jobs-a\": 1234}", "invalid position for jobs-a"},
      {"{\"jobs-a\": null}", "invalid position for jobs-a"},
      {"{\"jobs-a\": {}}", "invalid position for jobs-a"},
      {"{\"jobs-a\": \"\"}", "invalid position for jobs-a"},
      {"{\"jobs-a\": \"1234\"}", "invalid position for jobs-a"},
      {"{\"jobs-a\": \"01-0123456789ab\"}", "invalid position for jobs-a"},
      {"{\"jobs-a\": \"1-0123456789AB\"}", "invalid position for jobs-a"},
      {"{\"jobs-a\": \"1-0123456789a\"}", "invalid position for jobs-a"},
      {"{\"jobs-a\": \"9223372036854775808-0123456789ab\"}", "invalid position for jobs-a"},
      {"{\"jobs-a\": \"1-0123456789ab \"}", "invalid position for jobs-a"},
      /* A good entry, then a bad one: the whole request fails. */
      {"{\"jobs-a\": \"" P1 "\", \"schedules\": \"x\"}", "invalid position for schedules"},
      /* Per entry in the order written; the key before the value. */
      {"{\"jobs-a\": 1, \"nope\": 1}", "invalid position for jobs-a"},
      {"{\"nope\": 1, \"jobs-a\": 1}", "position for a group not requested: nope"},
      /* A refused entry is still a group the request names. */
  };
  char *cur[] = {"jobs-summary"};
  char req[512];
  wk_sub_t t;
  wk_sub_t_init(&t, NULL);
  wk_sub_t_wsgw2(&t);
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    snprintf(req, sizeof req,
             "{\"groups\": {\"jobs\": [\"a\"], \"schedules\": 1, \"job_events\": [44]}, "
             "\"positions\": %s}",
             cases[i].positions);
    wk_sub_t_run(&t, req, cur, 1, 100);
    if (!wk_sub_t_failed(&t, cases[i].error) || t.res.has_positions) {
      fprintf(stderr, "  case %zu: %s\n", i, wk_sub_t_last(&t));
      UNIT_CHECK(0);
    }
  }
  /* The refused entry's group may be named (its position is dropped). */
  wk_sub_t_run(&t, "{\"groups\": {\"job_events\": [44]}, \"positions\": {\"job_events-44\": 5}}",
               cur, 1, 100);
  UNIT_CHECK(wk_sub_t_failed(&t, "invalid position for job_events-44"));
  /* A name of the full length is quoted whole. */
  char name[CHAN_GROUP_NAME_MAX + 1], want[256];
  memset(name, 'n', CHAN_GROUP_NAME_MAX);
  name[CHAN_GROUP_NAME_MAX] = '\0';
  snprintf(req, sizeof req, "{\"groups\": {}, \"positions\": {\"%s\": \"" P1 "\"}}", name);
  snprintf(want, sizeof want, "position for a group not requested: %s", name);
  wk_sub_t_run(&t, req, cur, 1, 100);
  UNIT_CHECK(wk_sub_t_failed(&t, want));
  /* A longer one, cut there. */
  snprintf(req, sizeof req, "{\"groups\": {}, \"positions\": {\"%sxyz\": \"" P1 "\"}}", name);
  wk_sub_t_run(&t, req, cur, 1, 100);
  UNIT_CHECK(wk_sub_t_failed(&t, want));
  wk_sub_t_done(&t);
}

UNIT_TEST(wk_subscribe_positions_errors_come_after_the_groups_errors) {
  wk_sub_t t;
  wk_sub_t_init(&t, "abc");
  wk_sub_t_wsgw2(&t);
  const char *bad_pos = "\"positions\": []";
  char req[256];
  snprintf(req, sizeof req, "{\"groups\": {}, %s, \"extra\": 1, \"xrftoken\": \"abc\"}", bad_pos);
  wk_sub_t_run(&t, req, NULL, 0, 100);
  UNIT_CHECK(wk_sub_t_failed(&t, "unknown key: extra"));
  snprintf(req, sizeof req, "{\"groups\": {}, %s}", bad_pos);
  wk_sub_t_run(&t, req, NULL, 0, 100);
  UNIT_CHECK(wk_sub_t_failed(&t, "xrftoken mismatch"));
  snprintf(req, sizeof req, "{\"groups\": [], %s, \"xrftoken\": \"abc\"}", bad_pos);
  wk_sub_t_run(&t, req, NULL, 0, 100);
  UNIT_CHECK(wk_sub_t_failed(&t, "groups must be an object"));
  snprintf(req, sizeof req, "{%s, \"groups\": {\"jobs\": [\"a b\"]}, \"xrftoken\": \"abc\"}",
           bad_pos);
  wk_sub_t_run(&t, req, NULL, 0, 100);
  UNIT_CHECK(wk_sub_t_failed(&t, "invalid group name"));
  snprintf(req, sizeof req, "{\"groups\": {\"nope\": 1}, %s, \"xrftoken\": \"abc\"}", bad_pos);
  wk_sub_t_run(&t, req, NULL, 0, 100);
  UNIT_CHECK(wk_sub_t_failed(&t, "unknown channel: nope"));
  snprintf(req, sizeof req, "{\"groups\": {\"jobs\": [\"a\", \"b\", \"c\"]}, %s, "
                            "\"xrftoken\": \"abc\"}", bad_pos);
  wk_sub_t_run(&t, req, NULL, 0, 2);
  UNIT_CHECK(wk_sub_t_failed(&t, "too many groups"));
  snprintf(req, sizeof req, "{\"groups\": {\"jobs\": [\"a\"]}, %s, \"xrftoken\": \"abc\"}", bad_pos);
  wk_sub_t_run(&t, req, NULL, 0, 2);
  UNIT_CHECK(wk_sub_t_failed(&t, "positions must be an object"));
  wk_sub_t_done(&t);
}

/* A decide that counts its calls: a request refused for its positions
 * must cost no question to the application. */
static int wk_sub_t_decide(void *arg, const char *key, const char *value) {
  (void)key;
  (void)value;
  ++*(int *)arg;
  return 1;
}

UNIT_TEST(wk_subscribe_positions_are_checked_before_access_is_decided) {
  wk_sub_t t;
  int calls = 0;
  wk_sub_t_init(&t, NULL);
  wk_sub_t_wsgw2(&t);
  t.session.decide = wk_sub_t_decide;
  t.session.decide_arg = &calls;
  wk_sub_t_run(&t, "{\"groups\": {\"job_events\": [44]}, \"positions\": {\"x\": 1}}",
               NULL, 0, 100);
  UNIT_CHECK(wk_sub_t_failed(&t, "position for a group not requested: x") && calls == 0);
  wk_sub_t_run(&t, "{\"groups\": {\"job_events\": [44]}, "
                   "\"positions\": {\"job_events-44\": \"" P1 "\"}}",
               NULL, 0, 100);
  UNIT_CHECK(calls == 1 && t.res.n_groups == 1 && t.res.n_positions == 1);
  wk_sub_t_done(&t);
}

static uint32_t wk_sub_rand(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  return *s >> 8;
}

/* Random requests from JSON pieces: never a crash, and every result keeps
 * the promises (one error and nothing else, or positions within the new
 * membership, sorted, unique). */
UNIT_TEST(wk_subscribe_positions_garbage_never_crashes) {
  static const char *const pieces[] = {
      "{", "}", "[", "]", ",", ":", "\"groups\"", "\"positions\"", "\"jobs\"",
      "\"a\"", "\"jobs-a\"", "\"job_events\"", "42", "44", "\"job_events-42\"",
      "\"" P1 "\"", "\"" P2 "\"", "\"1-x\"", "null", "{}", "[]", "\"\\u0000\"", "\xff",
      "\"schedules\"", "1", " "};
  static const char *const shapes[] = {
      "{\"groups\": {\"jobs\": [\"a\"], \"job_events\": [42, 44]}, \"positions\": {%s}}",
      "{\"positions\": {%s}, \"groups\": {\"schedules\": 1, \"jobs\": [\"a\", \"b\"]}}",
      "{\"groups\": {%s}, \"positions\": {\"jobs-a\": \"" P1 "\"}}", "%s"};
  uint32_t seed = 2;
  char body[400], req[600];
  wk_sub_t t;
  int with_positions = 0;
  wk_sub_t_init(&t, NULL);
  wk_sub_t_wsgw2(&t);
  for (int iter = 0; iter < 20000; iter++) {
    size_t n = 0;
    int parts = (int)(wk_sub_rand(&seed) % 12);
    int pairs = iter % 2; /* "K": V entries, else loose pieces */
    for (int i = 0; i < parts; i++) {
      const char *p = pieces[wk_sub_rand(&seed) % (sizeof pieces / sizeof *pieces)];
      if (pairs && i % 2) p = pieces[wk_sub_rand(&seed) % 3 + 15]; /* positions */
      else if (pairs) p = pieces[wk_sub_rand(&seed) % 8 + 8];      /* names */
      n += (size_t)snprintf(body + n, sizeof body - n, "%s%s", pairs && i ? (i % 2 ? ":" : ",") : "", p);
    }
    if (pairs && parts % 2) n += (size_t)snprintf(body + n, sizeof body - n, ":\"" P1 "\"");
    const char *shape = shapes[wk_sub_rand(&seed) % (sizeof shapes / sizeof *shapes)];
    snprintf(req, sizeof req, shape, body);
    wk_sub_t_run(&t, req, NULL, 0, 5);
    const wk_subscribe_result *r = &t.res;
    UNIT_CHECK(r->n_texts >= 1);
    if (!r->has_groups) {
      UNIT_CHECK(r->n_texts == 1 && !r->has_positions && !r->n_positions);
      continue;
    }
    UNIT_CHECK(r->has_positions && r->n_positions <= r->n_groups);
    with_positions += r->n_positions > 0;
    for (size_t i = 0; i < r->n_positions; i++) {
      UNIT_CHECK(i == 0 || strcmp(r->positions[i - 1].group, r->positions[i].group) < 0);
      int in = 0;
      for (size_t j = 0; j < r->n_groups; j++) in |= !strcmp(r->groups[j], r->positions[i].group);
      UNIT_CHECK(in);
    }
  }
  UNIT_CHECK(with_positions > 100); /* 159 at this seed */
  wk_sub_t_done(&t);
}

/* ---- positions through wk_handle: the reply on the wire ---- */

#define WH_NOW 1765100000
#define WH_CHANNEL "websocket.send.amq.gen-x!3"

typedef struct wh_fix {
  wk_policy policy;
  wk_cache *cache;
  wk_handle_ctx ctx;
} wh_fix;

static void wh_init(wh_fix *f) {
  memset(f, 0, sizeof *f);
  wk_policy_default(&f->policy);
  f->cache = wk_cache_new(100, 60000, 10000);
  f->ctx.policy = &f->policy;
  f->ctx.max_groups = 100;
  f->ctx.subscribe_url = "http://127.0.0.1:9/wsgw/subscribe";
  f->ctx.cache = f->cache;
  f->ctx.recheck_s = 60;
}

static void wh_done(wh_fix *f) {
  wk_cache_free(f->cache);
  wk_policy_free(&f->policy);
}

static chan_msg wh_msg(int protocol, int recheck, const char *text) {
  static char *groups[] = {"job_events-42"};
  chan_msg m;
  memset(&m, 0, sizeof m);
  m.kind = CHAN_MSG_RECEIVE;
  m.reply_channel = WH_CHANNEL;
  m.path = "/websocket/";
  m.order = 4;
  m.recheck = recheck;
  m.protocol = protocol;
  m.data = (char *)text;
  m.data_len = text ? strlen(text) : 0;
  m.session_json = "{\"user\":7,\"objects\":{\"job_events\":[5]},"
                   "\"credentials\":{\"cookie\":\"sessionid=s\"}}";
  m.groups = groups;
  m.n_groups = 1;
  return m;
}

/* The reply text (malloc'd) to m, after the hook answered `allowed` when
 * it was asked. */
static char *wh_run(wh_fix *f, const chan_msg *m, const char *allowed) {
  char *reply = NULL;
  size_t len;
  wk_handle_call *call = NULL;
  if (wk_handle_message(&f->ctx, m, WH_NOW, &reply, &len, &call) != 0) return NULL;
  if (!call) return reply;
  for (size_t i = 0; i < wk_handle_call_requests(call); i++)
    wk_handle_call_answer(call, i, allowed ? WK_HOOK_ANSWERED : WK_HOOK_FAILED, 0, 200,
                          allowed, allowed ? strlen(allowed) : 0);
  if (!wk_handle_call_done(call) ||
      wk_handle_call_reply(&f->ctx, call, WH_NOW, &reply, &len) != 0)
    reply = NULL;
  wk_handle_call_free(call);
  return reply;
}

#define WH_SUB                                                                 \
  "{\"groups\": {\"job_events\": [5, 77, 78]}, \"positions\": "                \
  "{\"job_events-5\": \"" P1 "\", \"job_events-77\": \"" P2 "\", "             \
  "\"job_events-78\": \"9-000000000000\"}}"

UNIT_TEST(wk_handle_wsgw2_subscription_reply_carries_positions) {
  wh_fix f;
  wh_init(&f);
  int saved = unit_stderr_mute();
  /* 5 by the token's grant, 77 and 78 asked of the application, which
   * allows 77: 78's position goes with it. */
  chan_msg m = wh_msg(CHAN_MSG_PROTOCOL_WSGW2, 0, WH_SUB);
  char *reply = wh_run(&f, &m, "{\"allowed\": [77]}");
  UNIT_CHECK(reply && strstr(reply, "\"groups\":[\"job_events-5\",\"job_events-77\"],"
                                    "\"positions\":{\"job_events-5\":\"" P1 "\","
                                    "\"job_events-77\":\"" P2 "\"}"));
  chan_reply r;
  char err[128];
  UNIT_CHECK(reply && chan_reply_decode(reply, strlen(reply), &r, err, sizeof err) == 0);
  UNIT_CHECK(r.has_positions && r.n_positions == 2);
  chan_reply_free(&r);
  free(reply);
  /* Now from the cache: no call, the same reply at once. */
  reply = wh_run(&f, &m, NULL);
  UNIT_CHECK(reply && strstr(reply, "\"positions\":{\"job_events-5\":\"" P1 "\","
                                    "\"job_events-77\":\"" P2 "\"}"));
  free(reply);
  /* No positions named: {}. */
  m = wh_msg(CHAN_MSG_PROTOCOL_WSGW2, 0, "{\"groups\": {\"job_events\": [5]}}");
  reply = wh_run(&f, &m, NULL);
  UNIT_CHECK(reply && strstr(reply, "\"groups\":[\"job_events-5\"],\"positions\":{}"));
  free(reply);
  unit_stderr_restore(saved);
  wh_done(&f);
}

UNIT_TEST(wk_handle_old_protocol_and_errors_carry_no_positions) {
  wh_fix f;
  wh_init(&f);
  int saved = unit_stderr_mute();
  chan_msg m = wh_msg(CHAN_MSG_PROTOCOL_OLD, 0, WH_SUB);
  char *reply = wh_run(&f, &m, "{\"allowed\": [77]}");
  UNIT_CHECK(reply && strstr(reply, "unknown key: positions") && !strstr(reply, "\"positions\":"));
  free(reply);
  m = wh_msg(CHAN_MSG_PROTOCOL_OLD, 0, "{\"groups\": {\"job_events\": [5]}}");
  reply = wh_run(&f, &m, NULL);
  UNIT_CHECK(reply && strstr(reply, "\"groups\":[\"job_events-5\"]") &&
             !strstr(reply, "positions"));
  free(reply);
  /* wsgw.2, a request-level error: no groups, no positions. */
  m = wh_msg(CHAN_MSG_PROTOCOL_WSGW2, 0,
             "{\"groups\": {\"job_events\": [5]}, \"positions\": {\"x\": 1}}");
  reply = wh_run(&f, &m, NULL);
  UNIT_CHECK(reply && strstr(reply, "position for a group not requested: x") &&
             !strstr(reply, "\"groups\":") && !strstr(reply, "\"positions\":"));
  free(reply);
  /* wsgw.2, the application down: the error text alone. */
  m = wh_msg(CHAN_MSG_PROTOCOL_WSGW2, 0, WH_SUB);
  reply = wh_run(&f, &m, NULL);
  UNIT_CHECK(reply && strstr(reply, "access check unavailable") &&
             !strstr(reply, "\"positions\":"));
  free(reply);
  /* wsgw.2, a re-check's reply: never positions. */
  m = wh_msg(CHAN_MSG_PROTOCOL_WSGW2, 1, NULL);
  reply = wh_run(&f, &m, "{\"allowed\": []}");
  UNIT_CHECK(reply && strstr(reply, "\"groups\":[]") && !strstr(reply, "positions"));
  free(reply);
  unit_stderr_restore(saved);
  wh_done(&f);
}
