/*
 * fuzz_subscribe.c - libFuzzer target: the subscription request
 * (wk_subscribe_apply) for user 7 under AWX's default policy, with grants
 * for job_events 42 and "43" and every workflow_events id.
 *
 * Input: byte 0 = switches (bit 0: the handshake carried csrftoken "abc";
 * bit 1: max_groups 5 instead of the default 100; bit 2: a wsgw.2
 * connection, which may name "positions"); the rest is the text.
 *
 * Besides the sanitizers, it checks docs/PROTOCOL.md's promises: every text
 * is one JSON object; a request either fails with exactly one error and no
 * membership or ends with the groups_* reply; the new set is sorted, unique,
 * valid and within max_groups; the same request again changes nothing;
 * positions come only on wsgw.2 with a membership, sorted, unique, each
 * a group of it and a position chan_pos_format writes back as the
 * request's own text.
 */
#include <string.h>

#include "chan_group.h"
#include "chan_pos.h"
#include "fuzz.h"
#include "wk_subscribe.h"

static wk_policy policy;
static cJSON *objects;

static void setup(void) {
  if (objects) return;
  char err[128];
  FUZZ_CHECK(wk_policy_load_string(&policy, "", err, sizeof(err)) == 0);
  objects = cJSON_Parse(
      "{\"job_events\": [42, \"43\"], \"workflow_events\": \"*\"}");
  FUZZ_CHECK(objects != NULL);
}

/* The reply's list under key equals v[0..n). */
static int same_list(const cJSON *reply, const char *key, char *const *v,
                     size_t n) {
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(reply, key);
  if (!cJSON_IsArray(list) || (size_t)cJSON_GetArraySize(list) != n) return 0;
  size_t i = 0;
  const cJSON *item;
  cJSON_ArrayForEach(item, list) {
    if (!cJSON_IsString(item) || strcmp(item->valuestring, v[i++]) != 0)
      return 0;
  }
  return 1;
}

static int list_len(const cJSON *reply, const char *key) {
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(reply, key);
  return cJSON_IsArray(list) ? cJSON_GetArraySize(list) : -1;
}

/* The positions handed on: within the membership, sorted, unique, and each
 * what the request wrote for that group (the last one, when twice). */
static void check_positions(const wk_subscribe_result *r, int wsgw2,
                            const char *text, size_t len) {
  FUZZ_CHECK(r->has_positions == (wsgw2 && r->has_groups));
  FUZZ_CHECK(r->n_positions <= r->n_groups && (r->positions || !r->n_positions));
  if (!r->n_positions) return;
  cJSON *root = cJSON_ParseWithLength(text, len);
  const cJSON *map = NULL, *item;
  cJSON_ArrayForEach(item, root) /* the last "positions" counts */
    if (item->string && strcmp(item->string, "positions") == 0) map = item;
  FUZZ_CHECK(cJSON_IsObject(map));
  size_t j = 0;
  for (size_t i = 0; i < r->n_positions; i++) {
    const chan_reply_pos *p = &r->positions[i];
    FUZZ_CHECK(i == 0 || strcmp(r->positions[i - 1].group, p->group) < 0);
    while (j < r->n_groups && strcmp(r->groups[j], p->group) != 0) j++;
    FUZZ_CHECK(j < r->n_groups);
    const cJSON *last = NULL;
    cJSON_ArrayForEach(item, map)
      if (strcmp(item->string, p->group) == 0) last = item;
    char want[CHAN_POS_MAX];
    chan_pos_format(want, p->offset, p->tag);
    FUZZ_CHECK(cJSON_IsString(last) && strcmp(last->valuestring, want) == 0);
  }
  cJSON_Delete(root);
}

/* The result's invariants; returns the last text parsed (caller frees). */
static cJSON *check_result(const wk_subscribe_result *r, size_t max_groups) {
  FUZZ_CHECK(r->n_texts >= 1);
  cJSON *last = NULL;
  for (size_t i = 0; i < r->n_texts; i++) {
    FUZZ_CHECK(r->texts[i].data && strlen(r->texts[i].data) == r->texts[i].len);
    cJSON *t = cJSON_ParseWithLength(r->texts[i].data, r->texts[i].len);
    FUZZ_CHECK(cJSON_IsObject(t));
    if (i + 1 < r->n_texts || !r->has_groups)
      FUZZ_CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(t, "error")));
    if (i + 1 == r->n_texts) last = t;
    else cJSON_Delete(t);
  }
  if (!r->has_groups) {
    FUZZ_CHECK(r->n_texts == 1 && r->n_groups == 0);
    return last;
  }
  FUZZ_CHECK(r->n_groups <= max_groups);
  for (size_t i = 0; i < r->n_groups; i++) {
    FUZZ_CHECK(chan_group_name_valid(r->groups[i], strlen(r->groups[i])));
    if (i > 0) FUZZ_CHECK(strcmp(r->groups[i - 1], r->groups[i]) < 0);
  }
  FUZZ_CHECK(same_list(last, "groups_current", r->groups, r->n_groups));
  return last;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  setup();
  const int wsgw2 = (data[0] & 4) != 0;
  const wk_session s = {.user_id = 7,
                        .csrftoken = (data[0] & 1) ? "abc" : NULL,
                        .objects = objects,
                        .positions = wsgw2};
  const size_t max_groups = (data[0] & 2) ? 5 : 100;
  const char *text = (const char *)data + 1;
  size_t len = size - 1;
  /* What the gateway holds now: includes one name a worker never makes. */
  char *const current[] = {"jobs-status_changed", "job_events-42",
                           "not a group", "jobs-status_changed"};

  wk_subscribe_result r;
  FUZZ_CHECK(wk_subscribe_apply(text, len, current, 4, &s, &policy,
                                max_groups, &r) == 0);
  cJSON *reply = check_result(&r, max_groups);
  cJSON_Delete(reply);
  check_positions(&r, wsgw2, text, len);

  if (r.has_groups) {
    /* Idempotent: the same request on the new state joins and leaves
     * nothing and keeps the set. */
    wk_subscribe_result again;
    FUZZ_CHECK(wk_subscribe_apply(text, len, r.groups, r.n_groups, &s, &policy,
                                  max_groups, &again) == 0);
    reply = check_result(&again, max_groups);
    FUZZ_CHECK(again.has_groups && again.n_groups == r.n_groups);
    FUZZ_CHECK(again.n_texts == r.n_texts);
    FUZZ_CHECK(again.n_positions == r.n_positions);
    for (size_t i = 0; i < r.n_groups; i++)
      FUZZ_CHECK(strcmp(again.groups[i], r.groups[i]) == 0);
    FUZZ_CHECK(list_len(reply, "groups_joined") == 0);
    FUZZ_CHECK(list_len(reply, "groups_left") == 0);
    cJSON_Delete(reply);
    wk_subscribe_result_free(&again);
  }
  wk_subscribe_result_free(&r);
  return 0;
}
