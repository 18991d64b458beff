/*
 * test_wk_recheck.c - the worker's side of re-checking application grants
 * (wk_handle): which groups a re-check asks the subscribe hook about (only
 * those the hook granted, not a token's objects claim), the reply for each
 * outcome (revoked, 401, application down), and the "recheck" key of a
 * subscription's reply. Also the wire fields: "recheck" in a reply and in
 * a websocket.receive.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chan_msg.h"
#include "chan_reply.h"
#include "unit.h"
#include "wk_cache.h"
#include "wk_handle.h"
#include "wk_metrics.h"
#include "wk_policy.h"

#define RC_NOW 1765100000
#define RC_CHANNEL "websocket.send.amq.gen-x!3"
#define RC_SESSION \
  "{\"user\":7,\"objects\":{\"job_events\":[5]},\"credentials\":{\"cookie\":\"sessionid=s\"}}"

typedef struct rc_fix {
  wk_policy policy;
  wk_cache *cache;
  wk_handle_ctx ctx;
} rc_fix;

static void rc_init(rc_fix *f) {
  memset(f, 0, sizeof *f);
  wk_policy_default(&f->policy);
  f->cache = wk_cache_new(100, 60000, 10000);
  f->ctx.policy = &f->policy;
  f->ctx.max_groups = 100;
  f->ctx.subscribe_url = "http://127.0.0.1:9/wsgw/subscribe";
  f->ctx.cache = f->cache;
  f->ctx.recheck_s = 60;
}

static void rc_done(rc_fix *f) {
  wk_cache_free(f->cache);
  wk_policy_free(&f->policy);
}

static char *rc_groups[] = {"job_events-42", "job_events-43", "job_events-5", "jobs-status"};

static chan_msg rc_msg(int recheck, const char *text) {
  chan_msg m;
  memset(&m, 0, sizeof m);
  m.kind = CHAN_MSG_RECEIVE;
  m.reply_channel = RC_CHANNEL;
  m.path = "/websocket/";
  m.order = 4;
  m.recheck = recheck;
  m.data = (char *)text;
  m.data_len = text ? strlen(text) : 0;
  m.session_json = RC_SESSION;
  m.groups = rc_groups;
  m.n_groups = 4;
  return m;
}

static int rc_decode(char *json, size_t len, chan_reply *r) {
  char err[128];
  int rc = chan_reply_decode(json, len, r, err, sizeof err);
  free(json);
  return rc;
}

/* A re-check's call after the hook answered (status, body); the reply. */
static int rc_run(rc_fix *f, long status, const char *body, wk_hook_outcome out,
                  chan_reply *r, char *req_body, size_t req_len) {
  chan_msg m = rc_msg(1, NULL);
  char *reply;
  size_t len;
  wk_handle_call *call = NULL;
  if (wk_handle_message(&f->ctx, &m, RC_NOW, &reply, &len, &call) != 0 || !call ||
      reply || wk_handle_call_requests(call) != 1)
    return -1;
  wk_handle_request q;
  wk_handle_call_request(call, 0, &q);
  snprintf(req_body, req_len, "%.*s", (int)q.body_len, q.body);
  wk_handle_call_answer(call, 0, out, 0, status, body, body ? strlen(body) : 0);
  int rc = wk_handle_call_done(call) &&
                   wk_handle_call_reply(&f->ctx, call, RC_NOW, &reply, &len) == 0
               ? rc_decode(reply, len, r)
               : -1;
  wk_handle_call_free(call);
  return rc;
}

UNIT_TEST(wk_recheck_asks_only_hook_granted_ids_and_removes_the_revoked) {
  rc_fix f;
  rc_init(&f);
  chan_reply r;
  char body[256];
  int saved = unit_stderr_mute();
  UNIT_CHECK(rc_run(&f, 200, "{\"allowed\": [43]}", WK_HOOK_ANSWERED, &r, body,
                    sizeof body) == 0);
  /* 5 is the token's grant: never asked about. */
  UNIT_CHECK(strcmp(body, "{\"user\": 7, \"channel\": \"job_events\", \"ids\": [42, 43]}") == 0);
  UNIT_CHECK(r.has_groups && r.n_groups == 3 && strcmp(r.groups[0], "job_events-43") == 0 &&
             strcmp(r.groups[1], "job_events-5") == 0 && strcmp(r.groups[2], "jobs-status") == 0);
  UNIT_CHECK(r.n_texts == 1 &&
             strcmp(r.texts[0].data,
                    "{\"error\": \"access denied to channel job_events for resource id 42\"}") == 0);
  UNIT_CHECK(r.recheck == RC_NOW + 60 && r.order == 4);
  /* The cache learnt both answers. */
  UNIT_CHECK(wk_cache_get(f.cache, 7, "job_events", 42, wk_metrics_now_us() / 1000u) == 0);
  UNIT_CHECK(wk_cache_get(f.cache, 7, "job_events", 43, wk_metrics_now_us() / 1000u) == 1);
  chan_reply_free(&r);
  /* Everything still granted: nothing said, membership untouched. */
  UNIT_CHECK(rc_run(&f, 200, "{\"allowed\": [42, 43]}", WK_HOOK_ANSWERED, &r, body,
                    sizeof body) == 0);
  UNIT_CHECK(!r.has_groups && r.n_texts == 0 && r.recheck == RC_NOW + 60);
  chan_reply_free(&r);
  unit_stderr_restore(saved);
  rc_done(&f);
}

UNIT_TEST(wk_recheck_401_removes_every_hook_grant_and_down_keeps_them) {
  rc_fix f;
  rc_init(&f);
  chan_reply r;
  char body[256];
  int saved = unit_stderr_mute();
  /* The credential is no longer accepted (logout): both go, no next re-check,
   * and the cache no longer allows them. */
  uint64_t now_ms = wk_metrics_now_us() / 1000u;
  wk_cache_put(f.cache, 7, "job_events", 42, 1, now_ms);
  UNIT_CHECK(rc_run(&f, 401, "", WK_HOOK_ANSWERED, &r, body, sizeof body) == 0);
  UNIT_CHECK(wk_cache_get(f.cache, 7, "job_events", 42, now_ms) == -1);
  UNIT_CHECK(r.has_groups && r.n_groups == 2 && strcmp(r.groups[0], "job_events-5") == 0);
  UNIT_CHECK(r.n_texts == 2 && strstr(r.texts[1].data, "resource id 43"));
  UNIT_CHECK(r.recheck == 0);
  chan_reply_free(&r);
  /* The application down (or 500, or the breaker open): all kept, asked again. */
  UNIT_CHECK(rc_run(&f, 0, NULL, WK_HOOK_FAILED, &r, body, sizeof body) == 0);
  UNIT_CHECK(!r.has_groups && r.n_texts == 0 && r.recheck == RC_NOW + 60);
  chan_reply_free(&r);
  UNIT_CHECK(rc_run(&f, 500, "oops", WK_HOOK_ANSWERED, &r, body, sizeof body) == 0);
  UNIT_CHECK(!r.has_groups && r.n_texts == 0 && r.recheck == RC_NOW + 60);
  chan_reply_free(&r);
  unit_stderr_restore(saved);
  rc_done(&f);
}

UNIT_TEST(wk_recheck_with_nothing_hook_granted_or_off_ends_the_rechecks) {
  rc_fix f;
  rc_init(&f);
  char *reply;
  size_t len;
  chan_reply r;
  wk_handle_call *call = NULL;
  chan_msg m = rc_msg(1, NULL);
  m.n_groups = 0;
  UNIT_CHECK(wk_handle_message(&f.ctx, &m, RC_NOW, &reply, &len, &call) == 0 && !call);
  UNIT_CHECK(rc_decode(reply, len, &r) == 0 && !r.has_groups && !r.recheck && !r.n_texts);
  chan_reply_free(&r);
  m = rc_msg(1, NULL);
  f.ctx.recheck_s = 0;
  UNIT_CHECK(wk_handle_message(&f.ctx, &m, RC_NOW, &reply, &len, &call) == 0 && !call);
  UNIT_CHECK(rc_decode(reply, len, &r) == 0 && !r.has_groups && !r.recheck);
  chan_reply_free(&r);
  rc_done(&f);
}

UNIT_TEST(wk_recheck_subscription_reply_carries_recheck_when_hook_grants_are_held) {
  rc_fix f;
  rc_init(&f);
  char *reply;
  size_t len;
  chan_reply r;
  wk_handle_call *call = NULL;
  /* 42 allowed from the cache (the hook's answer): due a re-check. */
  wk_cache_put(f.cache, 7, "job_events", 42, 1, wk_metrics_now_us() / 1000u);
  chan_msg m = rc_msg(0, "{\"groups\": {\"job_events\": [42, 5]}}");
  m.n_groups = 0;
  UNIT_CHECK(wk_handle_message(&f.ctx, &m, RC_NOW, &reply, &len, &call) == 0 && !call);
  UNIT_CHECK(rc_decode(reply, len, &r) == 0 && r.has_groups && r.n_groups == 2);
  UNIT_CHECK(r.recheck == RC_NOW + 60);
  chan_reply_free(&r);
  /* Only the token's grant: nothing to re-check. */
  m = rc_msg(0, "{\"groups\": {\"job_events\": [5], \"jobs\": [\"status\"]}}");
  m.n_groups = 0;
  UNIT_CHECK(wk_handle_message(&f.ctx, &m, RC_NOW, &reply, &len, &call) == 0 && !call);
  UNIT_CHECK(rc_decode(reply, len, &r) == 0 && r.has_groups && r.recheck == 0);
  chan_reply_free(&r);
  rc_done(&f);
}

UNIT_TEST(chan_wire_recheck_in_a_reply_and_a_receive_round_trips) {
  chan_reply r;
  memset(&r, 0, sizeof r);
  r.accept = -1;
  r.reply_channel = RC_CHANNEL;
  r.order = 3;
  r.recheck = 1765100060;
  size_t len;
  char *json = chan_reply_encode(&r, &len);
  UNIT_CHECK(json && strstr(json, "\"recheck\":1765100060"));
  chan_reply back;
  UNIT_CHECK(rc_decode(json, len, &back) == 0 && back.recheck == 1765100060);
  chan_reply_free(&back);
  char err[128];
  const char *bad = "{\"reply_channel\":\"" RC_CHANNEL "\",\"order\":1,\"recheck\":-1}";
  UNIT_CHECK(chan_reply_decode(bad, strlen(bad), &back, err, sizeof err) == -1 &&
             strstr(err, "recheck"));
  /* websocket.receive: "recheck": true and no text; nothing else decodes. */
  chan_msg m = rc_msg(1, NULL);
  json = chan_msg_encode(&m, &len);
  UNIT_CHECK(json && strstr(json, "\"recheck\":true") && !strstr(json, "\"text\""));
  chan_msg d;
  UNIT_CHECK(chan_msg_decode(CHAN_MSG_RECEIVE, json, len, &d, err, sizeof err) == 0 &&
             d.recheck == 1 && d.data_len == 0 && d.n_groups == 4);
  chan_msg_free(&d);
  free(json);
  m = rc_msg(0, "{}");
  json = chan_msg_encode(&m, &len);
  UNIT_CHECK(json && !strstr(json, "recheck"));
  free(json);
  m = rc_msg(1, "x"); /* a re-check carries no payload */
  UNIT_CHECK(chan_msg_encode(&m, &len) == NULL);
  static const char *const bads[] = {
      "{\"reply_channel\":\"" RC_CHANNEL "\",\"path\":\"/\",\"order\":1,\"recheck\":false}",
      "{\"reply_channel\":\"" RC_CHANNEL "\",\"path\":\"/\",\"order\":1,\"recheck\":true,\"text\":\"\"}"};
  for (size_t i = 0; i < 2; i++)
    UNIT_CHECK(chan_msg_decode(CHAN_MSG_RECEIVE, bads[i], strlen(bads[i]), &d, err,
                               sizeof err) == -1);
}
