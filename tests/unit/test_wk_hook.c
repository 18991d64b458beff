/*
 * test_wk_hook.c - the hooks' pure parts: answer parsing (ids exact, the
 * contract's rules), the circuit breaker, the grant cache, and the ack
 * bookkeeping of jobs finishing out of order.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"
#include "wk_acks.h"
#include "wk_cache.h"
#include "wk_hook.h"

static int hk_connect(const char *body, wk_hook_connect_answer *a) {
  char err[128];
  return wk_hook_parse_connect(body, strlen(body), a, err, sizeof err);
}

UNIT_TEST(wk_hook_connect_answer_reads_user_expiry_grants_session) {
  wk_hook_connect_answer a;
  UNIT_CHECK(hk_connect("{\"user\": 7, \"expires\": 1765100000, \"grants\": "
                        "{\"job_events\": [42, \"43\"], \"jobs\": \"*\"}, "
                        "\"session\": {\"name\": \"alice\", \"n\": 5000000000000001}, "
                        "\"other\": true}", &a) == 0);
  UNIT_CHECK(a.user_id == 7 && a.expires == 1765100000);
  UNIT_CHECK_STR(a.grants_json, "{\"job_events\":[42,\"43\"],\"jobs\":\"*\"}");
  UNIT_CHECK_STR(a.session_json, "{\"name\":\"alice\",\"n\":5000000000000001}");
  wk_hook_connect_answer_free(&a);
  /* A string user, exact past 2^52; null optional keys are absent. */
  UNIT_CHECK(hk_connect(" {\"user\": \"5000000000000001\", \"expires\": null, "
                        "\"grants\": null} ", &a) == 0);
  UNIT_CHECK(a.user_id == 5000000000000001LL && a.expires == 0 && !a.grants_json &&
             !a.session_json);
  wk_hook_connect_answer_free(&a);
  UNIT_CHECK(hk_connect("{\"user\": 9007199254740991}", &a) == 0);
  UNIT_CHECK(a.user_id == 9007199254740991LL);
  wk_hook_connect_answer_free(&a);
}

UNIT_TEST(wk_hook_connect_answer_refuses_what_breaks_the_contract) {
  static const char *const bad[] = {
      "", "null", "[]", "{}", "{\"user\": 0}", "{\"user\": -7}", "{\"user\": 7.5}",
      "{\"user\": 9007199254740992}", "{\"user\": 9007199254740993}",
      "{\"user\": \"007\"}", "{\"user\": \"7a\"}", "{\"user\": \"\"}",
      "{\"user\": \"9007199254740992\"}", "{\"user\": true}", "{\"user\": 1e300}",
      "{\"user\": 7, \"expires\": \"soon\"}", "{\"user\": 7, \"expires\": -1}",
      "{\"user\": 7, \"grants\": [42]}", "{\"user\": 7, \"grants\": {\"j\": [1.5]}}",
      "{\"user\": 7, \"grants\": {\"j\": [9007199254740993]}}",
      "{\"user\": 7, \"session\": \"x\"}", "{\"user\": 7} trailing", "{\"user\": 7"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    wk_hook_connect_answer a;
    int rc = hk_connect(bad[i], &a);
    if (rc != -1) printf("  accepted: %s\n", bad[i]);
    UNIT_CHECK(rc == -1 && a.grants_json == NULL && a.session_json == NULL);
  }
}

UNIT_TEST(wk_hook_subscribe_answer_reads_ids_exactly) {
  uint64_t *ids;
  size_t n;
  char err[128];
  const char *ok = "{\"allowed\": [42, \"43\", 0, 9007199254740991]}";
  UNIT_CHECK(wk_hook_parse_subscribe(ok, strlen(ok), 10, &ids, &n, err, sizeof err) == 0);
  UNIT_CHECK(n == 4 && ids[0] == 42 && ids[1] == 43 && ids[2] == 0 &&
             ids[3] == 9007199254740991ull);
  free(ids);
  UNIT_CHECK(wk_hook_parse_subscribe("{\"allowed\": []}", 15, 10, &ids, &n, err,
                                     sizeof err) == 0 && n == 0);
  free(ids);
  static const char *const bad[] = {"{}", "{\"allowed\": null}", "{\"allowed\": 42}",
                                    "{\"allowed\": [1.5]}", "{\"allowed\": [-1]}",
                                    "{\"allowed\": [\"042\"]}", "{\"allowed\": [[1]]}",
                                    "{\"allowed\": [9007199254740993]}",
                                    "{\"allowed\": [1, 2, 3]}", "[42]"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int rc = wk_hook_parse_subscribe(bad[i], strlen(bad[i]), 2, &ids, &n, err, sizeof err);
    if (rc != -1) printf("  accepted: %s\n", bad[i]);
    UNIT_CHECK(rc == -1 && ids == NULL && n == 0);
  }
}

UNIT_TEST(wk_hook_id_parse_is_exact) {
  uint64_t v;
  UNIT_CHECK(wk_hook_id_parse("0", &v) && v == 0);
  UNIT_CHECK(wk_hook_id_parse("42", &v) && v == 42);
  UNIT_CHECK(wk_hook_id_parse("9007199254740991", &v) && v == 9007199254740991ull);
  UNIT_CHECK(!wk_hook_id_parse("9007199254740992", &v));
  UNIT_CHECK(!wk_hook_id_parse("042", &v) && !wk_hook_id_parse("", &v) &&
             !wk_hook_id_parse("4a", &v) && !wk_hook_id_parse("abc", &v) &&
             !wk_hook_id_parse("12345678901234567", &v));
}

UNIT_TEST(wk_breaker_opens_after_n_failures_then_one_probe) {
  int saved = unit_stderr_mute(); /* it logs each change, by design */
  wk_breaker b;
  wk_breaker_init(&b, 3, 1000);
  for (int i = 0; i < 2; i++) {
    UNIT_CHECK(wk_breaker_allow(&b, 0));
    wk_breaker_result(&b, 0, 0);
  }
  UNIT_CHECK(b.state == WK_BREAKER_CLOSED);
  /* A success in between starts the count again. */
  UNIT_CHECK(wk_breaker_allow(&b, 0));
  wk_breaker_result(&b, 1, 0);
  for (int i = 0; i < 3; i++) {
    UNIT_CHECK(wk_breaker_allow(&b, 10));
    wk_breaker_result(&b, 0, 10);
  }
  UNIT_CHECK(b.state == WK_BREAKER_OPEN);
  UNIT_CHECK(!wk_breaker_allow(&b, 500) && !wk_breaker_allow(&b, 1009));
  /* Cool-down over: one probe, the others still fail fast. */
  UNIT_CHECK(wk_breaker_allow(&b, 1010));
  UNIT_CHECK(b.state == WK_BREAKER_HALF_OPEN);
  UNIT_CHECK(!wk_breaker_allow(&b, 1011));
  /* The probe fails: open again for a whole cool-down. */
  wk_breaker_result(&b, 0, 1100);
  UNIT_CHECK(b.state == WK_BREAKER_OPEN && !wk_breaker_allow(&b, 2099));
  UNIT_CHECK(wk_breaker_allow(&b, 2100));
  wk_breaker_result(&b, 1, 2150);
  UNIT_CHECK(b.state == WK_BREAKER_CLOSED && wk_breaker_allow(&b, 2151));
  /* A late failure of a call let through before it opened changes nothing. */
  wk_breaker_init(&b, 1, 1000);
  wk_breaker_result(&b, 0, 0);
  UNIT_CHECK(b.state == WK_BREAKER_OPEN);
  wk_breaker_result(&b, 0, 500);
  UNIT_CHECK(b.open_until_ms == 1000);
  unit_stderr_restore(saved);
}

UNIT_TEST(wk_cache_answers_until_the_ttl_then_misses) {
  wk_cache *c = wk_cache_new(100, 1000, 100);
  UNIT_CHECK(wk_cache_get(c, 7, "job_events", 42, 0) == -1);
  wk_cache_put(c, 7, "job_events", 42, 1, 0);
  wk_cache_put(c, 7, "job_events", 43, 0, 0);
  UNIT_CHECK(wk_cache_get(c, 7, "job_events", 42, 999) == 1);
  UNIT_CHECK(wk_cache_get(c, 7, "job_events", 43, 99) == 0);
  /* Keyed by user, channel and id. */
  UNIT_CHECK(wk_cache_get(c, 8, "job_events", 42, 1) == -1);
  UNIT_CHECK(wk_cache_get(c, 7, "workflow_events", 42, 1) == -1);
  /* Refusals have their own, shorter TTL; expired entries go. */
  UNIT_CHECK(wk_cache_get(c, 7, "job_events", 43, 100) == -1);
  UNIT_CHECK(wk_cache_size(c) == 1);
  UNIT_CHECK(wk_cache_get(c, 7, "job_events", 42, 1000) == -1);
  UNIT_CHECK(wk_cache_size(c) == 0);
  /* A new answer replaces the old one. */
  wk_cache_put(c, 7, "job_events", 42, 1, 0);
  wk_cache_put(c, 7, "job_events", 42, 0, 10);
  UNIT_CHECK(wk_cache_get(c, 7, "job_events", 42, 20) == 0 && wk_cache_size(c) == 1);
  wk_cache_free(c);
  /* Size 0: off. */
  c = wk_cache_new(0, 1000, 1000);
  wk_cache_put(c, 7, "job_events", 42, 1, 0);
  UNIT_CHECK(wk_cache_get(c, 7, "job_events", 42, 1) == -1);
  wk_cache_free(c);
}

UNIT_TEST(wk_cache_is_bounded_and_evicts_the_least_recently_used) {
  wk_cache *c = wk_cache_new(3, 1000000, 1000000);
  wk_cache_put(c, 1, "j", 1, 1, 0);
  wk_cache_put(c, 1, "j", 2, 1, 0);
  wk_cache_put(c, 1, "j", 3, 1, 0);
  UNIT_CHECK(wk_cache_get(c, 1, "j", 1, 1) == 1); /* 1 is now the freshest */
  wk_cache_put(c, 1, "j", 4, 1, 1);               /* evicts 2 */
  UNIT_CHECK(wk_cache_size(c) == 3);
  UNIT_CHECK(wk_cache_get(c, 1, "j", 2, 2) == -1);
  UNIT_CHECK(wk_cache_get(c, 1, "j", 1, 2) == 1 && wk_cache_get(c, 1, "j", 3, 2) == 1 &&
             wk_cache_get(c, 1, "j", 4, 2) == 1);
  for (uint64_t i = 0; i < 10000; i++) wk_cache_put(c, i, "j", i, (int)(i & 1), 3);
  UNIT_CHECK(wk_cache_size(c) == 3);
  UNIT_CHECK(wk_cache_get(c, 9999, "j", 9999, 4) == 1 && wk_cache_get(c, 9998, "j", 9998, 4) == 0);
  wk_cache_free(c);
}

UNIT_TEST(wk_acks_batch_when_in_order_single_while_jobs_pend) {
  wk_acks a;
  wk_ack_op op;
  wk_acks_init(&a, 8); /* at most 4 held */
  /* In order, more buffered: held, then one multiple ack. */
  UNIT_CHECK(wk_acks_done(&a, 1, 1, &op) == 0);
  UNIT_CHECK(wk_acks_done(&a, 2, 1, &op) == 0);
  UNIT_CHECK(wk_acks_done(&a, 3, 0, &op) == 1 && op.tag == 3 && op.multiple);
  UNIT_CHECK(wk_acks_flush(&a, &op) == 0);
  /* Half the window held: flushed even with more buffered. */
  for (uint64_t t = 4; t < 7; t++) UNIT_CHECK(wk_acks_done(&a, t, 1, &op) == 0);
  UNIT_CHECK(wk_acks_done(&a, 7, 1, &op) == 1 && op.tag == 7 && op.multiple);
  /* 8 held, then job 9 starts: 8 is flushed first. */
  UNIT_CHECK(wk_acks_done(&a, 8, 1, &op) == 0);
  UNIT_CHECK(wk_acks_job_start(&a, &op) == 1 && op.tag == 8 && op.multiple);
  /* While job 9 pends, 10 and 11 are acked alone: a multiple ack of 11
   * would cover 9, whose reply is not out. */
  UNIT_CHECK(wk_acks_done(&a, 10, 1, &op) == 1 && op.tag == 10 && !op.multiple);
  UNIT_CHECK(wk_acks_job_start(&a, &op) == 0); /* job 12 */
  UNIT_CHECK(wk_acks_done(&a, 11, 0, &op) == 1 && op.tag == 11 && !op.multiple);
  /* Out of order: 12 ends before 9. */
  wk_acks_job_end(&a, 12, &op);
  UNIT_CHECK(op.tag == 12 && !op.multiple);
  UNIT_CHECK(wk_acks_done(&a, 13, 1, &op) == 1 && op.tag == 13 && !op.multiple);
  wk_acks_job_end(&a, 9, &op);
  UNIT_CHECK(op.tag == 9 && !op.multiple);
  /* No job left: batching again. */
  UNIT_CHECK(wk_acks_done(&a, 14, 1, &op) == 0);
  UNIT_CHECK(wk_acks_flush(&a, &op) == 1 && op.tag == 14 && op.multiple);
  /* A new connection forgets everything. */
  UNIT_CHECK(wk_acks_job_start(&a, &op) == 0);
  wk_acks_reset(&a);
  UNIT_CHECK(wk_acks_done(&a, 1, 1, &op) == 0 && wk_acks_flush(&a, &op) == 1 && op.multiple);
}
