/*
 * test_wk_subscribe.c - the subscription protocol of docs/PROTOCOL.md
 * "Subscribing", pinned down text for text.
 */
#include <stdio.h>
#include <stdlib.h>

#include "unit.h"
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
