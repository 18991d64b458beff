/*
 * test_emit_request.c - emitd's request reading: the strict JSON scanner
 * (em_json), POST /emit's query and body, POST /emit/batch's body
 * (em_request): spans point at the body's own bytes, every refusal says
 * what is wrong, max_events bounds the messages.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_json.h"
#include "em_request.h"
#include "unit.h"

static int doc(const char *s) {
  char err[96];
  return em_json_document(s, strlen(s), err, sizeof err);
}

UNIT_TEST(emit_json_accepts_rfc8259) {
  const char *ok[] = {"0", "-0.5e+10", "1E3", "\"a\\u00e9\\n\"", "true", " null ",
                      "[]", "{}", "[1,[2,{\"a\":[]}]]", "{\"a\":1,\"b\":\"c\"}", "\"\xc3\xa9\""};
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) UNIT_CHECK(doc(ok[i]) == 0);
}

UNIT_TEST(emit_json_refuses_the_rest) {
  const char *bad[] = {"", " ", "01", "1.", ".5", "-", "+1", "1e", "tru", "nul", "[1,]",
                       "{\"a\":1,}", "{a:1}", "'a'", "\"\\x\"", "\"\\u12\"", "\"a",
                       "\"tab\there\"", "[1 2]", "{\"a\" 1}", "1 2", "[", "{\"a\":}",
                       "NaN", "[1]]"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) UNIT_CHECK(doc(bad[i]) < 0);
}

UNIT_TEST(emit_json_bounds_nesting) {
  char deep[2 * EM_JSON_DEPTH_MAX + 3];
  size_t n = 0;
  for (int i = 0; i < EM_JSON_DEPTH_MAX + 1; i++) deep[n++] = '[';
  for (int i = 0; i < EM_JSON_DEPTH_MAX + 1; i++) deep[n++] = ']';
  char err[96];
  UNIT_CHECK(em_json_document(deep, n, err, sizeof err) < 0);
  UNIT_CHECK(strstr(err, "nested too deep") != NULL);
  UNIT_CHECK(em_json_document(deep + 1, n - 2, err, sizeof err) == 0);
}

UNIT_TEST(emit_json_error_names_the_byte) {
  char err[96];
  UNIT_CHECK(em_json_document("{\"a\": tru}", 10, err, sizeof err) < 0);
  UNIT_CHECK_STR(err, "invalid literal at byte 6");
}

static int single(const char *q, const char *body, size_t max, em_pubs *p, char *err) {
  return em_request_single(q, strlen(q), body, strlen(body), max, p, err, 256);
}

UNIT_TEST(emit_single_names_groups_and_keeps_the_body) {
  em_pubs p;
  char err[256];
  const char *body = "{ \"a\" : 1 }";
  UNIT_CHECK(single("group=jobs-x&group=a%3Ab", body, 10, &p, err) == 0);
  UNIT_CHECK(p.n == 2);
  UNIT_CHECK(p.v[0].glen == 6 && memcmp(p.v[0].group, "jobs-x", 6) == 0);
  UNIT_CHECK(p.v[1].glen == 3 && memcmp(p.v[1].group, "a:b", 3) == 0);
  UNIT_CHECK(p.v[0].text == body && p.v[0].len == strlen(body)); /* not a copy */
  em_pubs_free(&p);
}

UNIT_TEST(emit_single_refusals) {
  struct {
    const char *q, *body;
    int status;
    const char *err;
  } cases[] = {
      {"", "{}", 400, "no group: name one with ?group=NAME"},
      {"group=a%20b", "{}", 400, "invalid group name \"a b\" (1-128 of A-Z a-z 0-9 _ . : -)"},
      {"group=", "{}", 400, "invalid group name \"\" (1-128 of A-Z a-z 0-9 _ . : -)"},
      {"group=a%2", "{}", 400, "invalid percent-encoding in \"group=a%2\""},
      {"grp=a", "{}", 400, "unknown query parameter \"grp\" (only group=NAME)"},
      {"group=a&group=a", "{}", 400, "group \"a\" named twice"},
      {"group=a", "[", 400, "body is not JSON: expected a value at byte 1"},
      {"group=a", "", 400, "body is empty: the event must be JSON"},
      {"group=a", "\"\xff\"", 400, "body is not valid UTF-8"},
      {"group=a&group=b&group=c", "{}", 413,
       "too many events: at most 2 messages (event x group) per request"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    em_pubs p;
    char err[256] = "";
    int rc = single(cases[i].q, cases[i].body, 2, &p, err);
    UNIT_CHECK(rc == cases[i].status);
    UNIT_CHECK_STR(err, cases[i].err);
    if (rc != cases[i].status || strcmp(err, cases[i].err) != 0)
      printf("    case %zu: %d %s\n", i, rc, err);
    em_pubs_free(&p);
  }
}

static int batch(const char *body, size_t max, em_pubs *p, char *err) {
  return em_request_batch(body, strlen(body), max, p, err, 256);
}

UNIT_TEST(emit_batch_spans_are_the_events_bytes) {
  const char *body = "{\"events\": [{\"groups\": [\"a\", \"b\"], \"event\": {\"x\" : [1, 2.0]}},"
                     " {\"event\": \"s\", \"group\": \"c\"}]}";
  em_pubs p;
  char err[256];
  UNIT_CHECK(batch(body, 10, &p, err) == 0);
  UNIT_CHECK(p.n == 3);
  const char *ev = "{\"x\" : [1, 2.0]}";
  UNIT_CHECK(p.v[0].len == strlen(ev) && memcmp(p.v[0].text, ev, strlen(ev)) == 0);
  UNIT_CHECK(p.v[1].text == p.v[0].text && p.v[1].glen == 1 && p.v[1].group[0] == 'b');
  UNIT_CHECK(p.v[2].len == 3 && memcmp(p.v[2].text, "\"s\"", 3) == 0 && p.v[2].group[0] == 'c');
  UNIT_CHECK(p.v[0].text > body && p.v[0].text < body + strlen(body)); /* into the body */
  em_pubs_free(&p);
  UNIT_CHECK(batch("{\"events\": []}", 10, &p, err) == 0 && p.n == 0);
  em_pubs_free(&p);
}

UNIT_TEST(emit_batch_refusals) {
  struct {
    const char *body;
    int status;
    const char *err;
  } cases[] = {
      {"[]", 400, "body must be an object {\"events\": [...]}"},
      {"{}", 400, "no \"events\" member"},
      {"{\"events\": 1}", 400, "\"events\" must be an array"},
      {"{\"events\": [], \"x\": 1}", 400, "unknown or repeated member \"x\" (only \"events\")"},
      {"{\"events\": [], \"events\": []}", 400,
       "unknown or repeated member \"events\" (only \"events\")"},
      {"{\"events\": [1]}", 400,
       "events[0]: must be an object {\"groups\": [...], \"event\": ...}"},
      {"{\"events\": [{\"groups\": [\"a\"]}]}", 400, "events[0]: no \"event\""},
      {"{\"events\": [{\"event\": 1}]}", 400, "events[0]: no group"},
      {"{\"events\": [{\"event\": 1, \"groups\": []}]}", 400, "events[0]: no group"},
      {"{\"events\": [{\"event\": 1, \"group\": \"a\"}, {\"event\": 1, \"groups\": [\"a\", \"a\"]}]}",
       400, "events[1]: group \"a\" named twice"},
      {"{\"events\": [{\"event\": 1, \"group\": \"a\", \"groups\": [\"b\"]}]}", 400,
       "events[0]: give \"groups\" or \"group\", not both"},
      {"{\"events\": [{\"event\": 1, \"groups\": [\"a!\"]}]}", 400,
       "events[0]: invalid group name \"a!\" (1-128 of A-Z a-z 0-9 _ . : -)"},
      {"{\"events\": [{\"event\": 1, \"groups\": [\"a\\u0041\"]}]}", 400,
       "events[0]: invalid group name \"a\\u0041\" (1-128 of A-Z a-z 0-9 _ . : -)"},
      {"{\"events\": [{\"event\": 1, \"groups\": [7]}]}", 400,
       "events[0]: a group must be a string (expected a string at byte 36)"},
      {"{\"events\": [{\"event\": 1, \"extra\": 2, \"group\": \"a\"}]}", 400,
       "events[0]: unknown or repeated member \"extra\" (groups, group, event)"},
      {"{\"events\": [{\"event\": 1, \"groups\": [\"a\", \"b\", \"c\"]}]}", 413,
       "too many events: at most 2 messages (event x group) per request"},
      {"{\"events\": [{\"event\": 1, \"group\": \"a\"}, {\"event\": 1, \"group\": \"b\"},"
       " {\"event\": 1, \"group\": \"c\"}]}",
       413, "too many events: at most 2 messages (event x group) per request"},
      {"{\"events\": [", 400, "body is not JSON: expected a value at byte 12"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    em_pubs p;
    char err[256] = "";
    int rc = batch(cases[i].body, 2, &p, err);
    UNIT_CHECK(rc == cases[i].status);
    UNIT_CHECK_STR(err, cases[i].err);
    if (rc != cases[i].status || strcmp(err, cases[i].err) != 0)
      printf("    case %zu: %d %s\n", i, rc, err);
    em_pubs_free(&p);
  }
}
