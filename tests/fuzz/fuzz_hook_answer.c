/*
 * fuzz_hook_answer.c - libFuzzer target: wk_hook_parse_connect and
 * wk_hook_parse_subscribe, workerd's reading of the application's answers
 * (untrusted: whatever the configured URL's server sends).
 *
 * Input: byte 0 even: a connect answer, odd: a subscribe answer (at most
 * byte 0 / 2 ids asked); the rest is the body.
 *
 * Invariants beyond the sanitizers: an accepted connect answer has a user
 * from 1 to 2^53-1 and grants and a session that are JSON objects again; an
 * accepted subscribe answer has at most the ids asked, each from 0 to
 * 2^53-1 and exactly the one written (a number equal to it as a double, a
 * string of its digits); a refused one leaves nothing allocated.
 */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fuzz.h"
#include "wk_hook.h"

#define ID_MAX 9007199254740991ull

static void check_object(const char *text) {
  if (!text) return;
  cJSON *o = cJSON_Parse(text);
  FUZZ_CHECK(cJSON_IsObject(o));
  cJSON_Delete(o);
}

static void connect_answer(const char *body, size_t len) {
  wk_hook_connect_answer a;
  char err[128];
  if (wk_hook_parse_connect(body, len, &a, err, sizeof err) != 0) {
    FUZZ_CHECK(a.grants_json == NULL && a.session_json == NULL && err[0]);
    return;
  }
  FUZZ_CHECK(a.user_id >= 1 && (unsigned long long)a.user_id <= ID_MAX);
  FUZZ_CHECK(a.expires >= 0 && (unsigned long long)a.expires <= ID_MAX);
  check_object(a.grants_json);
  check_object(a.session_json);
  wk_hook_connect_answer_free(&a);
}

static void subscribe_answer(const char *body, size_t len, size_t max) {
  uint64_t *ids;
  size_t n;
  char err[128];
  if (wk_hook_parse_subscribe(body, len, max, &ids, &n, err, sizeof err) != 0) {
    FUZZ_CHECK(ids == NULL && n == 0 && err[0]);
    return;
  }
  FUZZ_CHECK(n <= max);
  /* Read the same text again, independently: each id is what was written. */
  cJSON *root = cJSON_ParseWithLength(body, len);
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "allowed"), *item;
  size_t i = 0;
  cJSON_ArrayForEach(item, list) {
    FUZZ_CHECK(i < n && ids[i] <= ID_MAX);
    if (cJSON_IsNumber(item)) {
      FUZZ_CHECK((double)ids[i] == item->valuedouble);
    } else {
      char digits[24];
      FUZZ_CHECK(cJSON_IsString(item));
      snprintf(digits, sizeof digits, "%llu", (unsigned long long)ids[i]);
      FUZZ_CHECK(strcmp(digits, item->valuestring) == 0);
    }
    i++;
  }
  FUZZ_CHECK(i == n);
  cJSON_Delete(root);
  free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const char *body = (const char *)data + 1;
  if (data[0] % 2 == 0)
    connect_answer(body, size - 1);
  else
    subscribe_answer(body, size - 1, data[0] / 2);
  return 0;
}
