/*
 * test_wk_policy.c - the [groups] section, the three access rules and the
 * value lists of open channels (also through wk_subscribe_apply, to pin the
 * refusal text down).
 */
#include <stdio.h>
#include <stdlib.h>

#include "wk_policy.h"
#include "wk_subscribe.h"
#include "unit.h"

static wk_policy_kind wk_policy_t_kind(const wk_policy *p, const char *key) {
  wk_policy_kind k = (wk_policy_kind)-1;
  UNIT_CHECK(wk_policy_find(p, key, &k));
  return k;
}

UNIT_TEST(wk_policy_default_is_awx) {
  wk_policy p;
  char err[256];
  wk_policy_kind k;
  UNIT_CHECK(wk_policy_load(&p, NULL, err, sizeof err) == 0);
  UNIT_CHECK(p.n == 10);
  UNIT_CHECK(wk_policy_t_kind(&p, "jobs") == WK_POLICY_OPEN);
  UNIT_CHECK(wk_policy_t_kind(&p, "schedules") == WK_POLICY_OPEN);
  UNIT_CHECK(wk_policy_t_kind(&p, "inventories") == WK_POLICY_OPEN);
  UNIT_CHECK(wk_policy_t_kind(&p, "job_events") == WK_POLICY_OBJECT);
  UNIT_CHECK(wk_policy_t_kind(&p, "ad_hoc_command_events") ==
             WK_POLICY_OBJECT);
  UNIT_CHECK(wk_policy_t_kind(&p, "workflow_events") == WK_POLICY_OBJECT);
  UNIT_CHECK(wk_policy_t_kind(&p, "project_update_events") ==
             WK_POLICY_OBJECT);
  UNIT_CHECK(wk_policy_t_kind(&p, "inventory_update_events") ==
             WK_POLICY_OBJECT);
  UNIT_CHECK(wk_policy_t_kind(&p, "system_job_events") == WK_POLICY_OBJECT);
  UNIT_CHECK(wk_policy_t_kind(&p, "control") == WK_POLICY_USER);
  UNIT_CHECK(!wk_policy_find(&p, "nope", &k));
  UNIT_CHECK(!wk_policy_find(&p, "Jobs", &k));
  wk_policy_free(&p);
}

UNIT_TEST(wk_policy_section_replaces_default) {
  wk_policy p;
  char err[256];
  wk_policy_kind k;
  const char *ini =
      "[amqp]\nurl = amqp://x\n"
      "[groups]\n"
      "jobs = open\n"
      "  job_events = object ; indented like config.c allows\n"
      "\tcontrol = user\n"
      "[worker]\nprefetch = 3\n";
  UNIT_CHECK(wk_policy_load_string(&p, ini, err, sizeof err) == 0);
  UNIT_CHECK(p.n == 3);
  UNIT_CHECK(wk_policy_t_kind(&p, "jobs") == WK_POLICY_OPEN);
  UNIT_CHECK(wk_policy_t_kind(&p, "job_events") == WK_POLICY_OBJECT);
  UNIT_CHECK(wk_policy_t_kind(&p, "control") == WK_POLICY_USER);
  UNIT_CHECK(!wk_policy_find(&p, "schedules", &k));
  wk_policy_free(&p);
}

UNIT_TEST(wk_policy_no_section_is_default) {
  wk_policy p;
  char err[256];
  UNIT_CHECK(wk_policy_load_string(&p, "[amqp]\nurl = x\n", err,
                                   sizeof err) == 0);
  UNIT_CHECK(p.n == 10);
  wk_policy_free(&p);
  UNIT_CHECK(wk_policy_load_string(&p, "", err, sizeof err) == 0);
  UNIT_CHECK(p.n == 10);
  wk_policy_free(&p);
}

UNIT_TEST(wk_policy_rejects_bad_entries) {
  wk_policy p;
  char err[256];
  UNIT_CHECK(wk_policy_load_string(&p, "[groups]\njobs = public\n", err,
                                   sizeof err) == -1);
  UNIT_CHECK(strstr(err, "<string>:2:") && strstr(err, "jobs"));
  UNIT_CHECK(p.entries == NULL);
  UNIT_CHECK(wk_policy_load_string(&p, "[groups]\nbad-key = open\n", err,
                                   sizeof err) == -1);
  UNIT_CHECK(strstr(err, "invalid channel name"));
  UNIT_CHECK(wk_policy_load_string(&p, "[groups]\na = open\na = user\n", err,
                                   sizeof err) == -1);
  UNIT_CHECK(strstr(err, ":3:") && strstr(err, "duplicate"));
  UNIT_CHECK(wk_policy_load_string(&p, "[groups]\nno equals sign\n", err,
                                   sizeof err) == -1);
  UNIT_CHECK(strstr(err, ":2:"));
}

UNIT_TEST(wk_policy_load_file) {
  wk_policy p;
  char err[256], path[] = "/tmp/wk_policy_test_XXXXXX";
  int fd = mkstemp(path);
  UNIT_CHECK(fd >= 0);
  FILE *f = fdopen(fd, "w");
  fputs("[groups]\nmine = user\n", f);
  fclose(f);
  UNIT_CHECK(wk_policy_load(&p, path, err, sizeof err) == 0);
  UNIT_CHECK(p.n == 1 && wk_policy_t_kind(&p, "mine") == WK_POLICY_USER);
  wk_policy_free(&p);
  remove(path);
  UNIT_CHECK(wk_policy_load(&p, path, err, sizeof err) == -1);
  UNIT_CHECK(strstr(err, path) != NULL);
}

UNIT_TEST(wk_policy_open_allows_anyone) {
  UNIT_CHECK(wk_policy_allows(WK_POLICY_OPEN, "jobs", "x", 1, NULL));
  UNIT_CHECK(wk_policy_allows(WK_POLICY_OPEN, "jobs", NULL, 1, NULL));
}

UNIT_TEST(wk_policy_object_grants) {
  cJSON *o = cJSON_Parse(
      "{\"job_events\": [42, \"43\", true], \"workflow_events\": \"*\","
      " \"jobs\": \"all\"}");
  UNIT_CHECK(wk_policy_allows(WK_POLICY_OBJECT, "job_events", "42", 7, o));
  UNIT_CHECK(wk_policy_allows(WK_POLICY_OBJECT, "job_events", "43", 7, o));
  UNIT_CHECK(!wk_policy_allows(WK_POLICY_OBJECT, "job_events", "44", 7, o));
  UNIT_CHECK(!wk_policy_allows(WK_POLICY_OBJECT, "job_events", "042", 7, o));
  UNIT_CHECK(!wk_policy_allows(WK_POLICY_OBJECT, "job_events", "42x", 7, o));
  UNIT_CHECK(!wk_policy_allows(WK_POLICY_OBJECT, "job_events", NULL, 7, o));
  UNIT_CHECK(wk_policy_allows(WK_POLICY_OBJECT, "workflow_events", "9", 7, o));
  UNIT_CHECK(wk_policy_allows(WK_POLICY_OBJECT, "workflow_events", NULL, 7,
                              o));
  UNIT_CHECK(!wk_policy_allows(WK_POLICY_OBJECT, "jobs", "1", 7, o));
  UNIT_CHECK(!wk_policy_allows(WK_POLICY_OBJECT, "system_job_events", "1", 7,
                               o));
  UNIT_CHECK(!wk_policy_allows(WK_POLICY_OBJECT, "job_events", "42", 7, NULL));
  cJSON_Delete(o);
}

UNIT_TEST(wk_policy_user_owns_suffix) {
  UNIT_CHECK(wk_policy_allows(WK_POLICY_USER, "control", "limit_reached_7", 7,
                              NULL));
  UNIT_CHECK(!wk_policy_allows(WK_POLICY_USER, "control", "limit_reached_7",
                               8, NULL));
  UNIT_CHECK(!wk_policy_allows(WK_POLICY_USER, "control", "limit_reached_17",
                               7, NULL));
  UNIT_CHECK(wk_policy_allows(WK_POLICY_USER, "control", "limit_reached_17",
                              17, NULL));
  UNIT_CHECK(!wk_policy_allows(WK_POLICY_USER, "control", "_7", 7, NULL));
  UNIT_CHECK(!wk_policy_allows(WK_POLICY_USER, "control", "7", 7, NULL));
  UNIT_CHECK(!wk_policy_allows(WK_POLICY_USER, "control", NULL, 7, NULL));
  UNIT_CHECK(!wk_policy_allows(WK_POLICY_USER, "control", "x_0", 0, NULL));
}

UNIT_TEST(wk_policy_open_value_lists_parse) {
  wk_policy p;
  char err[256];
  const char *ini =
      "[groups]\n"
      "jobs = open: status_changed, summary\n"
      "schedules = open :changed\n"
      "anything = open\n"
      "job_events = object\n";
  UNIT_CHECK(wk_policy_load_string(&p, ini, err, sizeof err) == 0);
  UNIT_CHECK(p.n == 4 && wk_policy_t_kind(&p, "jobs") == WK_POLICY_OPEN);
  UNIT_CHECK(wk_policy_value_allowed(&p, "jobs", "status_changed"));
  UNIT_CHECK(wk_policy_value_allowed(&p, "jobs", "summary"));
  UNIT_CHECK(!wk_policy_value_allowed(&p, "jobs", "summar"));
  UNIT_CHECK(!wk_policy_value_allowed(&p, "jobs", "status_changed,summary"));
  UNIT_CHECK(!wk_policy_value_allowed(&p, "jobs", "x"));
  UNIT_CHECK(!wk_policy_value_allowed(&p, "jobs", NULL)); /* the bare key */
  UNIT_CHECK(wk_policy_value_allowed(&p, "schedules", "changed"));
  UNIT_CHECK(wk_policy_value_allowed(&p, "anything", "x"));
  UNIT_CHECK(wk_policy_value_allowed(&p, "anything", NULL));
  UNIT_CHECK(wk_policy_value_allowed(&p, "job_events", "42"));
  wk_policy_free(&p);
}

UNIT_TEST(wk_policy_open_value_lists_refuse_bad_ones) {
  wk_policy p;
  char err[256];
  UNIT_CHECK(wk_policy_load_string(&p, "[groups]\njob_events = object: 1\n", err,
                                   sizeof err) == -1);
  UNIT_CHECK(strstr(err, ":2:") && strstr(err, "open channels only"));
  UNIT_CHECK(wk_policy_load_string(&p, "[groups]\njobs = open:\n", err, sizeof err) == -1);
  UNIT_CHECK(strstr(err, "empty value list"));
  UNIT_CHECK(wk_policy_load_string(&p, "[groups]\njobs = open: a, b-c\n", err,
                                   sizeof err) == -1);
  UNIT_CHECK(strstr(err, "invalid value"));
  UNIT_CHECK(wk_policy_load_string(&p, "[groups]\njobs = opn: a\n", err, sizeof err) == -1);
  UNIT_CHECK(strstr(err, "open, object or user"));
}

UNIT_TEST(wk_policy_open_value_lists_refuse_per_entry_through_subscribe) {
  wk_policy p;
  char err[256];
  wk_session s = {.user_id = 7};
  wk_subscribe_result r;
  UNIT_CHECK(wk_policy_load_string(&p, "[groups]\njobs = open: status_changed, summary\n",
                                   err, sizeof err) == 0);
  const char *req = "{\"groups\": {\"jobs\": [\"summary\", \"c1_1\", \"status_changed\"]}}";
  UNIT_CHECK(wk_subscribe_apply(req, strlen(req), NULL, 0, &s, &p, 100, &r) == 0);
  UNIT_CHECK(r.has_groups && r.n_groups == 2 && r.n_texts == 2);
  UNIT_CHECK_STR(r.texts[0].data,
                 "{\"error\": \"access denied to channel jobs for resource id c1_1\"}");
  UNIT_CHECK_STR(r.groups[0], "jobs-status_changed");
  wk_subscribe_result_free(&r);
  req = "{\"groups\": {\"jobs\": true}}";
  UNIT_CHECK(wk_subscribe_apply(req, strlen(req), NULL, 0, &s, &p, 100, &r) == 0);
  UNIT_CHECK(r.has_groups && r.n_groups == 0 && r.n_texts == 2);
  UNIT_CHECK_STR(r.texts[0].data, "{\"error\": \"access denied to channel jobs\"}");
  wk_subscribe_result_free(&r);
  wk_policy_free(&p);
}
