/*
 * test_chan_reply.c - replies (round trips, each key's rules, rejections).
 * Reply-channel names: test_chan_reply_channel.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chan_names.h"
#include "chan_reply.h"
#include "unit.h"

#define CR_RC "websocket.send.amq.gen-JzTY20BRgKO-HjmUJj0wLg!17"
#define CR_HEAD "{\"reply_channel\":\"" CR_RC "\",\"order\":1"

static int cr_decode(const char *json, chan_reply *r, char *err,
                     size_t errlen) {
  return chan_reply_decode(json, strlen(json), r, err, errlen);
}

/* A reply with one extra member (CR_HEAD + "," + extra + "}"). */
static const char *cr_with(const char *extra) {
  static char buf[512];
  snprintf(buf, sizeof buf, CR_HEAD "%s%s}", extra[0] ? "," : "", extra);
  return buf;
}

/* 1 when json is refused with a reason containing want, leaving r empty. */
static int cr_refused(const char *json, const char *want) {
  chan_reply r;
  char err[128] = "";
  int rc = cr_decode(json, &r, err, sizeof err);
  int ok = rc == -1 && strstr(err, want) != NULL && r.reply_channel == NULL &&
           r.texts == NULL && r.groups == NULL && r.accept == -1;
  if (!ok) fprintf(stderr, "  refused? rc=%d err=\"%s\" want \"%s\"\n", rc,
                   err, want);
  chan_reply_free(&r);
  return ok;
}

UNIT_TEST(chan_reply_round_trip_everything) {
  char *t0 = "{\"error\": \"access denied\"}";
  char *t1 = "{\"groups_current\": []}";
  chan_text texts[] = {{t0, strlen(t0)}, {t1, strlen(t1)}, {"", 0}};
  char *groups[] = {"jobs-status_changed", "job_events-42"};
  chan_reply r = {.reply_channel = CR_RC,
                  .order = 3,
                  .accept = 1,
                  .texts = texts,
                  .n_texts = 3,
                  .has_bytes = 1,
                  .bytes = "\0\1\2",
                  .bytes_len = 3,
                  .close_code = 4001,
                  .session_json = "{ \"user\" : 7 }",
                  .has_groups = 1,
                  .groups = groups,
                  .n_groups = 2};
  size_t len = 0;
  char *json = chan_reply_encode(&r, &len);
  UNIT_CHECK(json && len == strlen(json));
  chan_reply d;
  char err[128];
  UNIT_CHECK(json && chan_reply_decode(json, len, &d, err, sizeof err) == 0);
  UNIT_CHECK_STR(d.reply_channel, CR_RC);
  UNIT_CHECK(d.order == 3 && d.accept == 1 && d.close_code == 4001);
  UNIT_CHECK(d.n_texts == 3);
  UNIT_CHECK(d.n_texts == 3 && d.texts[0].len == strlen(t0) &&
             strcmp(d.texts[0].data, t0) == 0 &&
             strcmp(d.texts[1].data, t1) == 0 && d.texts[2].len == 0);
  UNIT_CHECK(d.has_bytes && d.bytes_len == 3 &&
             memcmp(d.bytes, "\0\1\2", 3) == 0);
  UNIT_CHECK_STR(d.session_json, "{\"user\":7}");
  UNIT_CHECK(d.has_groups && d.n_groups == 2);
  UNIT_CHECK(d.n_groups == 2 && strcmp(d.groups[0], groups[0]) == 0);
  chan_reply_free(&d);
  UNIT_CHECK(d.reply_channel == NULL && d.accept == -1);
  free(json);
}

UNIT_TEST(chan_reply_round_trip_minimal) {
  chan_reply r = {.reply_channel = CR_RC, .order = 0, .accept = -1};
  size_t len;
  char *json = chan_reply_encode(&r, &len);
  UNIT_CHECK_STR(json, "{\"reply_channel\":\"" CR_RC "\",\"order\":0}");
  chan_reply d;
  char err[128];
  UNIT_CHECK(json && chan_reply_decode(json, len, &d, err, sizeof err) == 0);
  UNIT_CHECK(d.accept == -1 && d.n_texts == 0 && !d.has_bytes &&
             d.close_code == 0 && d.session_json == NULL && !d.has_groups);
  chan_reply_free(&d);
  free(json);
  /* has_groups with no names is "leave every group": an empty array. */
  r.has_groups = 1;
  r.accept = 0;
  json = chan_reply_encode(&r, &len);
  UNIT_CHECK(json && strstr(json, "\"groups\":[]") &&
             strstr(json, "\"accept\":false"));
  UNIT_CHECK(json && chan_reply_decode(json, len, &d, err, sizeof err) == 0);
  UNIT_CHECK(d.has_groups && d.n_groups == 0 && d.accept == 0);
  chan_reply_free(&d);
  free(json);
}

UNIT_TEST(chan_reply_decodes_protocol_example) {
  chan_reply d;
  char err[128];
  UNIT_CHECK(cr_decode(
                 "{\"reply_channel\": \"" CR_RC "\", \"order\": 1,\n"
                 " \"groups\": [\"jobs-status_changed\"],\n"
                 " \"text\": [\"{\\\"groups_current\\\": "
                 "[\\\"jobs-status_changed\\\"]}\"],\n"
                 " \"session\": {\"user\": 7, \"csrftoken\": \"abc\"}}",
                 &d, err, sizeof err) == 0);
  UNIT_CHECK(d.n_texts == 1 && d.has_groups && d.n_groups == 1);
  UNIT_CHECK_STR(d.session_json, "{\"user\":7,\"csrftoken\":\"abc\"}");
  chan_reply_free(&d);
}

UNIT_TEST(chan_reply_text_string_or_array) {
  chan_reply d;
  char err[128];
  UNIT_CHECK(cr_decode(cr_with("\"text\":\"one\",\"accept\":true"), &d, err,
                       sizeof err) == 0);
  UNIT_CHECK(d.n_texts == 1 && d.texts[0].len == 3 && d.accept == 1);
  UNIT_CHECK_STR(d.texts[0].data, "one");
  chan_reply_free(&d);
  UNIT_CHECK(cr_decode(cr_with("\"text\":[\"a\",\"bc\"]"), &d, err,
                       sizeof err) == 0);
  UNIT_CHECK(d.n_texts == 2 && d.texts[1].len == 2);
  chan_reply_free(&d);
  UNIT_CHECK(cr_decode(cr_with("\"text\":[]"), &d, err, sizeof err) == 0);
  UNIT_CHECK(d.n_texts == 0);
  chan_reply_free(&d);
  UNIT_CHECK(cr_refused(cr_with("\"text\":5"), "text must be"));
  UNIT_CHECK(cr_refused(cr_with("\"text\":null"), "text must be"));
  UNIT_CHECK(cr_refused(cr_with("\"text\":{}"), "text must be"));
  UNIT_CHECK(cr_refused(cr_with("\"text\":[\"a\",1]"), "text entries"));
  UNIT_CHECK(cr_refused(cr_with("\"text\":[[\"a\"]]"), "text entries"));
}

UNIT_TEST(chan_reply_texts_with_nul_round_trip) {
  char many[2048];
  memset(many, 0, sizeof many);
  chan_text texts[] = {{"\0ab", 3},   {"a\0b", 3},    {"ab\0", 3},
                       {"\\u0000", 6}, {many, sizeof many}, {"", 0}};
  size_t n = sizeof texts / sizeof texts[0];
  chan_reply r = {.reply_channel = CR_RC, .order = 2, .accept = -1,
                  .texts = texts, .n_texts = n};
  size_t len = 0;
  char *json = chan_reply_encode(&r, &len);
  UNIT_CHECK(json && len == strlen(json) && !memchr(json, 0xff, len));
  UNIT_CHECK(json && strstr(json, "\"text\":[\"\\u0000ab\",\"a\\u0000b\","
                                  "\"ab\\u0000\",\"\\\\u0000\","));
  chan_reply d;
  char err[128];
  UNIT_CHECK(json && chan_reply_decode(json, len, &d, err, sizeof err) == 0);
  UNIT_CHECK(d.n_texts == n);
  for (size_t i = 0; i < n && i < d.n_texts; i++) {
    UNIT_CHECK(d.texts[i].len == texts[i].len &&
               memcmp(d.texts[i].data, texts[i].data, texts[i].len) == 0 &&
               d.texts[i].data[texts[i].len] == '\0');
  }
  chan_reply_free(&d);
  free(json);
  /* A lone string too. */
  UNIT_CHECK(cr_decode(cr_with("\"text\":\"\\u0000x\\\\u0000\""), &d, err,
                       sizeof err) == 0);
  UNIT_CHECK(d.n_texts == 1 && d.texts[0].len == 8 &&
             memcmp(d.texts[0].data, "\0x\\u0000", 8) == 0);
  chan_reply_free(&d);
}

UNIT_TEST(chan_reply_refuses_nul_outside_text_and_raw_ff) {
  UNIT_CHECK(cr_refused(cr_with("\"text\":\"\xff\""), "invalid JSON"));
  UNIT_CHECK(cr_refused(cr_with("\"text\":[\"ok\",\"\xc3\xff\"]"),
                        "invalid JSON"));
  UNIT_CHECK(cr_refused(cr_with("\"session\":{\"k\":\"\\u0000\"}"),
                        "U+0000 outside text"));
  UNIT_CHECK(cr_refused(cr_with("\"groups\":[\"\\u0000\"]"),
                        "U+0000 outside text"));
  UNIT_CHECK(cr_refused(cr_with("\"bytes\":\"AA\\u0000==\""),
                        "U+0000 outside text"));
  UNIT_CHECK(cr_refused(cr_with("\"future\":[{\"x\":\"\\u0000\"}]"),
                        "U+0000 outside text"));
  UNIT_CHECK(cr_refused("{\"reply_channel\":\"" CR_RC "\\u0000\",\"order\":1}",
                        "U+0000 outside text"));
  UNIT_CHECK(cr_refused(cr_with("\"text\":[\"\\udbff\\u0000\"]"),
                        "invalid JSON"));
  /* The encoder refuses what the decoder would. */
  chan_text bad = {"a\xff", 2};
  chan_reply r = {.reply_channel = CR_RC, .order = 1, .accept = -1,
                  .texts = &bad, .n_texts = 1};
  UNIT_CHECK(chan_reply_encode(&r, NULL) == NULL);
  r.n_texts = 0;
  r.session_json = "{\"k\":\"\\u0000\"}";
  UNIT_CHECK(chan_reply_encode(&r, NULL) == NULL);
}

UNIT_TEST(chan_reply_text_cap) {
  /* 10001 empty strings: refused without building 10001 texts. */
  size_t cap = 64 + 10001 * 3 + 64;
  char *json = malloc(cap);
  size_t off = (size_t)snprintf(json, cap, CR_HEAD ",\"text\":[");
  for (int i = 0; i < 10001; i++) {
    off += (size_t)snprintf(json + off, cap - off, i ? ",\"\"" : "\"\"");
  }
  snprintf(json + off, cap - off, "]}");
  UNIT_CHECK(cr_refused(json, "more than 10000 texts"));
  free(json);
}

UNIT_TEST(chan_reply_close_rules) {
  chan_reply d;
  char err[128];
  UNIT_CHECK(cr_decode(cr_with("\"close\":true"), &d, err, sizeof err) == 0);
  UNIT_CHECK(d.close_code == 1000);
  chan_reply_free(&d);
  UNIT_CHECK(cr_decode(cr_with("\"close\":false"), &d, err, sizeof err) == 0);
  UNIT_CHECK(d.close_code == 0);
  chan_reply_free(&d);
  const int good[] = {1000, 1001, 1003, 1007, 1008, 1011, 1013, 1014, 3000,
                      4000, 4999};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    char member[32];
    snprintf(member, sizeof member, "\"close\":%d", good[i]);
    UNIT_CHECK(cr_decode(cr_with(member), &d, err, sizeof err) == 0 &&
               d.close_code == good[i]);
    chan_reply_free(&d);
  }
  const char *bad[] = {"0", "999", "1004", "1005", "1006", "1015", "1016",
                       "2999", "5000", "-1000", "1000.5", "\"1000\"", "null",
                       "[]", "1e30"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char member[32];
    snprintf(member, sizeof member, "\"close\":%s", bad[i]);
    UNIT_CHECK(cr_refused(cr_with(member), "close must be"));
  }
}

UNIT_TEST(chan_reply_rejects_bad_keys) {
  UNIT_CHECK(cr_refused("", "invalid JSON"));
  UNIT_CHECK(cr_refused("{\"reply_channel\":", "invalid JSON"));
  UNIT_CHECK(cr_refused(CR_HEAD "} trailing", "invalid JSON"));
  UNIT_CHECK(cr_refused("[]", "JSON object"));
  UNIT_CHECK(cr_refused("{\"order\":1}", "missing reply_channel"));
  UNIT_CHECK(cr_refused("{\"reply_channel\":\"" CR_RC "\"}", "missing order"));
  UNIT_CHECK(cr_refused("{\"reply_channel\":\"" CR_RC "\",\"order\":-2}",
                        "order must be"));
  UNIT_CHECK(cr_refused("{\"reply_channel\":\"x!1\",\"order\":1}",
                        "invalid reply_channel"));
  UNIT_CHECK(cr_refused("{\"reply_channel\":null,\"order\":1}",
                        "reply_channel must be a string"));
  UNIT_CHECK(cr_refused(cr_with("\"accept\":1"), "accept must be"));
  UNIT_CHECK(cr_refused(cr_with("\"accept\":\"true\""), "accept must be"));
  UNIT_CHECK(cr_refused(cr_with("\"bytes\":\"YQ\""), "base64"));
  UNIT_CHECK(cr_refused(cr_with("\"bytes\":\"Y*==\""), "base64"));
  UNIT_CHECK(cr_refused(cr_with("\"bytes\":5"), "base64"));
  UNIT_CHECK(cr_refused(cr_with("\"session\":[]"), "session must be"));
  UNIT_CHECK(cr_refused(cr_with("\"session\":null"), "session must be"));
  UNIT_CHECK(cr_refused(cr_with("\"session\":\"{}\""), "session must be"));
  UNIT_CHECK(cr_refused(cr_with("\"groups\":\"jobs\""), "groups must be"));
  UNIT_CHECK(cr_refused(cr_with("\"groups\":[\"a b\"]"), "invalid group"));
  UNIT_CHECK(cr_refused(cr_with("\"groups\":[null]"), "invalid group"));
  chan_reply d;
  char err[32];
  UNIT_CHECK(chan_reply_decode(NULL, 0, &d, err, sizeof err) == -1);
  UNIT_CHECK(chan_reply_decode("{", 1, &d, NULL, 0) == -1);
}

UNIT_TEST(chan_reply_caps_groups_and_session) {
  size_t cap = 128 + (CHAN_GROUPS_MAX + 1) * 12;
  char *json = malloc(cap);
  for (int n = CHAN_GROUPS_MAX; n <= CHAN_GROUPS_MAX + 1; n++) {
    size_t off = (size_t)snprintf(json, cap, CR_HEAD ",\"groups\":[");
    for (int i = 0; i < n; i++) {
      off += (size_t)snprintf(json + off, cap - off, "%s\"g-%d\"",
                              i ? "," : "", i);
    }
    snprintf(json + off, cap - off, "]}");
    if (n == CHAN_GROUPS_MAX) {
      chan_reply d;
      char err[128];
      UNIT_CHECK(cr_decode(json, &d, err, sizeof err) == 0 &&
                 d.n_groups == CHAN_GROUPS_MAX);
      chan_reply_free(&d);
    } else {
      UNIT_CHECK(cr_refused(json, "more than 1000 groups"));
    }
  }
  free(json);
  /* The session cap counts the compact text: {"k":"x..."} of 4097 bytes. */
  size_t fill = CHAN_SESSION_MAX + 1 - strlen("{\"k\":\"\"}");
  json = malloc(fill + 256);
  int off = snprintf(json, fill + 256, CR_HEAD ",\"session\":{\"k\":\"");
  memset(json + off, 'x', fill);
  snprintf(json + off + fill, 256, "\"}}");
  UNIT_CHECK(cr_refused(json, "session over"));
  free(json);
}

UNIT_TEST(chan_reply_encode_refuses_unsendable) {
  chan_reply r = {.reply_channel = CR_RC, .order = 1, .accept = -1};
  r.close_code = 1006;
  UNIT_CHECK(chan_reply_encode(&r, NULL) == NULL);
  r.close_code = 1000;
  char *ok = chan_reply_encode(&r, NULL);
  UNIT_CHECK(ok && strstr(ok, "\"close\":1000"));
  free(ok);
  r.accept = 2;
  UNIT_CHECK(chan_reply_encode(&r, NULL) == NULL);
  r.accept = -1;
  r.reply_channel = "websocket.send.q!01";
  UNIT_CHECK(chan_reply_encode(&r, NULL) == NULL);
  r.reply_channel = NULL;
  UNIT_CHECK(chan_reply_encode(&r, NULL) == NULL);
  r.reply_channel = CR_RC;
  r.session_json = "[]";
  UNIT_CHECK(chan_reply_encode(&r, NULL) == NULL);
  r.session_json = NULL;
  char *groups[] = {"ok", "not ok"};
  r.has_groups = 1;
  r.groups = groups;
  r.n_groups = 2;
  UNIT_CHECK(chan_reply_encode(&r, NULL) == NULL);
  r.n_groups = 1;
  ok = chan_reply_encode(&r, NULL);
  UNIT_CHECK(ok != NULL);
  free(ok);
  UNIT_CHECK(chan_reply_encode(NULL, NULL) == NULL);
}

UNIT_TEST(chan_reply_input_need_not_be_terminated) {
  const char *text = cr_with("\"text\":[\"a\"],\"close\":true");
  size_t len = strlen(text);
  char *exact = malloc(len);
  memcpy(exact, text, len);
  chan_reply d;
  char err[128];
  UNIT_CHECK(chan_reply_decode(exact, len, &d, err, sizeof err) == 0);
  chan_reply_free(&d);
  for (size_t cut = 0; cut < len; cut++) {
    UNIT_CHECK(chan_reply_decode(exact, cut, &d, err, sizeof err) == -1);
  }
  free(exact);
  /* A NUL escape right at the end of an exact-size buffer. */
  text = CR_HEAD ",\"text\":\"\\u0000\"}";
  len = strlen(text);
  exact = malloc(len);
  memcpy(exact, text, len);
  UNIT_CHECK(chan_reply_decode(exact, len, &d, err, sizeof err) == 0);
  UNIT_CHECK(d.n_texts == 1 && d.texts[0].len == 1);
  chan_reply_free(&d);
  for (size_t cut = 0; cut < len; cut++) {
    UNIT_CHECK(chan_reply_decode(exact, cut, &d, err, sizeof err) == -1);
  }
  free(exact);
}


UNIT_TEST(chan_reply_free_is_safe_on_empty) {
  chan_reply r;
  memset(&r, 0, sizeof r);
  chan_reply_free(&r);
  chan_reply_free(&r);
  chan_reply_free(NULL);
  UNIT_CHECK(r.accept == -1);
}

/* Issue 12: the gateway stores the session as the text this decode makes;
 * it re-printed 5000000000000001 as 5e+15 (5000000000000000), so the user
 * was refused its own control group and given its neighbour's. */
UNIT_TEST(chan_reply_session_user_id_is_exact) {
  chan_reply d;
  char err[128];
  UNIT_CHECK(cr_decode(
                 "{\"reply_channel\": \"" CR_RC "\", \"order\": 0,"
                 " \"session\": {\"user\": 5000000000000001,"
                 " \"objects\": {\"job_events\": [9007199254740991, 42]}}}",
                 &d, err, sizeof err) == 0);
  UNIT_CHECK_STR(d.session_json, "{\"user\":5000000000000001,\"objects\":"
                                 "{\"job_events\":[9007199254740991,42]}}");
  chan_reply_free(&d);
}

UNIT_TEST(chan_reply_status_403_or_503_only) {
  chan_reply r = {.reply_channel = CR_RC, .order = 0, .accept = 0, .status = 503};
  size_t len;
  char *json = chan_reply_encode(&r, &len);
  UNIT_CHECK(json && strstr(json, "\"status\":503"));
  chan_reply d;
  char err[128];
  UNIT_CHECK(json && chan_reply_decode(json, len, &d, err, sizeof err) == 0 &&
             d.status == 503 && d.accept == 0);
  chan_reply_free(&d);
  free(json);
  r.status = 500;
  UNIT_CHECK(chan_reply_encode(&r, &len) == NULL);
  static const char *const bad[] = {
      "{\"reply_channel\":\"" CR_RC "\",\"order\":0,\"status\":500}",
      "{\"reply_channel\":\"" CR_RC "\",\"order\":0,\"status\":\"503\"}",
      "{\"reply_channel\":\"" CR_RC "\",\"order\":0,\"status\":503.5}"};
  for (size_t i = 0; i < 3; i++)
    UNIT_CHECK(chan_reply_decode(bad[i], strlen(bad[i]), &d, err, sizeof err) == -1 &&
               strstr(err, "status"));
}

/* ---- user and expires (issue 13) ---- */

UNIT_TEST(chan_reply_user_and_expires_round_trip_exactly) {
  chan_reply r, back;
  char err[128];
  memset(&r, 0, sizeof r);
  r.reply_channel = CR_RC;
  r.order = 0;
  r.accept = 1;
  r.user = 5000000000000001ull;
  r.expires = 1733561234;
  size_t len;
  char *json = chan_reply_encode(&r, &len);
  UNIT_CHECK(json && strstr(json, "\"user\":5000000000000001") &&
             strstr(json, "\"expires\":1733561234"));
  UNIT_CHECK(chan_reply_decode(json, len, &back, err, sizeof err) == 0);
  UNIT_CHECK(back.user == 5000000000000001ull && back.expires == 1733561234);
  chan_reply_free(&back);
  free(json);
}

UNIT_TEST(chan_reply_user_and_expires_absent_are_0_and_not_written) {
  chan_reply r;
  char err[128];
  UNIT_CHECK(cr_decode(cr_with(""), &r, err, sizeof err) == 0);
  UNIT_CHECK(r.user == 0 && r.expires == 0);
  size_t len;
  char *json = chan_reply_encode(&r, &len);
  UNIT_CHECK(json && !strstr(json, "user") && !strstr(json, "expires"));
  free(json);
  chan_reply_free(&r);
}

UNIT_TEST(chan_reply_refuses_a_user_or_expires_that_is_not_an_exact_id) {
  UNIT_CHECK(cr_refused(cr_with("\"expires\":-1"), "expires must be an integer"));
  UNIT_CHECK(cr_refused(cr_with("\"expires\":1.5"), "expires must be an integer"));
  UNIT_CHECK(cr_refused(cr_with("\"expires\":\"1733561234\""), "expires must be an integer"));
  UNIT_CHECK(cr_refused(cr_with("\"user\":9007199254740992"), "user must be an integer"));
  UNIT_CHECK(cr_refused(cr_with("\"user\":true"), "user must be an integer"));
}

/* ---- positions (issue 14) ---- */

UNIT_TEST(chan_reply_without_positions_is_byte_for_byte_as_before) {
  /* The text the encoder wrote before issue 14 (checked against it). */
  char *groups[] = {"jobs-status_changed"};
  chan_text t = {"{\"groups_current\": []}", 22};
  chan_reply r = {.reply_channel = "websocket.send.q!1", .order = 2, .accept = -1,
                  .texts = &t, .n_texts = 1, .has_groups = 1, .groups = groups,
                  .n_groups = 1};
  size_t len;
  char *json = chan_reply_encode(&r, &len);
  UNIT_CHECK_STR(json, "{\"reply_channel\":\"websocket.send.q!1\",\"order\":2,"
                       "\"text\":[\"{\\\"groups_current\\\": []}\"],"
                       "\"groups\":[\"jobs-status_changed\"]}");
  chan_reply d;
  char err[128];
  UNIT_CHECK(json && chan_reply_decode(json, len, &d, err, sizeof err) == 0);
  UNIT_CHECK(!d.has_positions && d.n_positions == 0 && d.positions == NULL);
  chan_reply_free(&d);
  free(json);
}

UNIT_TEST(chan_reply_positions_round_trip_sorted) {
  char *groups[] = {"jobs-status_changed", "job_events-42", "a"};
  chan_reply_pos pos[] = {{"jobs-status_changed", 9223372036854775807ull, 0xffffffffffffull},
                          {"a", 0, 0},
                          {"job_events-42", 1234, 0xabcull}};
  chan_reply r = {.reply_channel = CR_RC, .order = 1, .accept = -1, .has_groups = 1,
                  .groups = groups, .n_groups = 3, .has_positions = 1,
                  .positions = pos, .n_positions = 3};
  size_t len;
  char *json = chan_reply_encode(&r, &len);
  UNIT_CHECK(json && strstr(json, ",\"positions\":{\"jobs-status_changed\":"
                                  "\"9223372036854775807-ffffffffffff\",\"a\":"
                                  "\"0-000000000000\",\"job_events-42\":"
                                  "\"1234-000000000abc\"}"));
  chan_reply d;
  char err[128];
  UNIT_CHECK(json && chan_reply_decode(json, len, &d, err, sizeof err) == 0);
  UNIT_CHECK(d.has_positions && d.n_positions == 3);
  if (d.n_positions == 3) { /* sorted by name (strcmp) */
    UNIT_CHECK_STR(d.positions[0].group, "a");
    UNIT_CHECK(d.positions[0].offset == 0 && d.positions[0].tag == 0);
    UNIT_CHECK_STR(d.positions[1].group, "job_events-42");
    UNIT_CHECK(d.positions[1].offset == 1234 && d.positions[1].tag == 0xabc);
    UNIT_CHECK_STR(d.positions[2].group, "jobs-status_changed");
    UNIT_CHECK(d.positions[2].offset == 9223372036854775807ull &&
               d.positions[2].tag == 0xffffffffffffull);
  }
  chan_reply_free(&d);
  UNIT_CHECK(d.positions == NULL && !d.has_positions);
  free(json);
}

UNIT_TEST(chan_reply_empty_positions_are_kept) {
  chan_reply r = {.reply_channel = CR_RC, .order = 1, .accept = -1, .has_groups = 1,
                  .has_positions = 1};
  size_t len;
  char *json = chan_reply_encode(&r, &len);
  UNIT_CHECK(json && strstr(json, "\"groups\":[],\"positions\":{}"));
  chan_reply d;
  char err[128];
  UNIT_CHECK(json && chan_reply_decode(json, len, &d, err, sizeof err) == 0);
  UNIT_CHECK(d.has_positions && d.n_positions == 0);
  chan_reply_free(&d);
  free(json);
  UNIT_CHECK(cr_decode(cr_with("\"groups\":[\"a\"],\"positions\":{}"), &d, err,
                       sizeof err) == 0);
  UNIT_CHECK(d.has_positions && d.n_positions == 0);
  chan_reply_free(&d);
}

UNIT_TEST(chan_reply_refuses_bad_positions) {
  const char *invalid = "invalid group name or position in positions";
  UNIT_CHECK(cr_refused(cr_with("\"groups\":[\"a\"],\"positions\":[]"),
                        "positions must be an object"));
  UNIT_CHECK(cr_refused(cr_with("\"groups\":[\"a\"],\"positions\":\"1-000000000000\""),
                        "positions must be an object"));
  UNIT_CHECK(cr_refused(cr_with("\"groups\":[\"a\"],\"positions\":null"),
                        "positions must be an object"));
  static const char *const values[] = {
      "1", "null", "\"\"", "\"1\"", "\"01-000000000000\"", "\"1-00000000000A\"",
      "\"1-00000000000\"", "\"1-0000000000000\"", "\"-1-000000000000\"",
      "\"9223372036854775808-000000000000\"", "\"1_000000000000\"",
      "\" 1-000000000000\"", "[\"1-000000000000\"]"};
  char buf[160];
  for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
    snprintf(buf, sizeof buf, "\"groups\":[\"a\"],\"positions\":{\"a\":%s}", values[i]);
    UNIT_CHECK(cr_refused(cr_with(buf), invalid));
  }
  UNIT_CHECK(cr_refused(cr_with("\"groups\":[\"a b\"],\"positions\":{\"a b\":\"1-000000000000\"}"),
                        "invalid group name in groups"));
  UNIT_CHECK(cr_refused(cr_with("\"groups\":[\"a\"],\"positions\":{\"a*\":\"1-000000000000\"}"),
                        invalid));
  UNIT_CHECK(cr_refused(cr_with("\"groups\":[\"a\"],\"positions\":{\"\":\"1-000000000000\"}"),
                        invalid));
  UNIT_CHECK(cr_refused(cr_with("\"positions\":{}"), "positions without groups"));
  UNIT_CHECK(cr_refused(cr_with("\"positions\":{\"a\":\"1-000000000000\"}"),
                        "positions without groups"));
  UNIT_CHECK(cr_refused(cr_with("\"groups\":[\"a\"],\"positions\":{\"b\":\"1-000000000000\"}"),
                        "positions must name groups of groups, each once"));
  UNIT_CHECK(cr_refused(cr_with("\"groups\":[\"a\"],\"positions\":{\"a\":\"1-000000000000\","
                                "\"a\":\"2-000000000000\"}"),
                        "positions must name groups of groups, each once"));
}

/* A reply naming n groups g0..g<n-1> and a position for each (malloc'd). */
static char *cr_positions_reply(int n) {
  size_t cap = 200 + (size_t)n * 40;
  char *b = malloc(cap);
  size_t o = (size_t)snprintf(b, cap, CR_HEAD ",\"groups\":[");
  for (int i = 0; i < n; i++) o += (size_t)snprintf(b + o, cap - o, "%s\"g%d\"", i ? "," : "", i);
  o += (size_t)snprintf(b + o, cap - o, "],\"positions\":{");
  for (int i = 0; i < n; i++)
    o += (size_t)snprintf(b + o, cap - o, "%s\"g%d\":\"%d-00000000000f\"", i ? "," : "", i, i);
  snprintf(b + o, cap - o, "}}");
  return b;
}

UNIT_TEST(chan_reply_positions_cap) {
  chan_reply d;
  char err[128];
  char *json = cr_positions_reply(CHAN_GROUPS_MAX);
  UNIT_CHECK(cr_decode(json, &d, err, sizeof err) == 0);
  UNIT_CHECK(d.n_positions == CHAN_GROUPS_MAX);
  chan_reply_free(&d);
  free(json);
  /* One more position than groups allow (the groups list is refused first
   * at CHAN_GROUPS_MAX + 1, so name the positions' cap alone). */
  size_t cap = 200 + (CHAN_GROUPS_MAX + 1) * 40;
  json = malloc(cap);
  size_t o = (size_t)snprintf(json, cap, CR_HEAD ",\"groups\":[\"a\"],\"positions\":{");
  for (int i = 0; i <= CHAN_GROUPS_MAX; i++)
    o += (size_t)snprintf(json + o, cap - o, "%s\"g%d\":\"1-000000000000\"", i ? "," : "", i);
  snprintf(json + o, cap - o, "}}");
  UNIT_CHECK(cr_refused(json, "more than 1000 positions"));
  free(json);
}

UNIT_TEST(chan_reply_encode_refuses_what_decode_would_with_positions) {
  char *groups[] = {"a", "b"};
  chan_reply_pos pos[2] = {{"a", 1, 2}, {"b", 3, 4}};
  chan_reply r = {.reply_channel = CR_RC, .order = 1, .accept = -1, .has_groups = 1,
                  .groups = groups, .n_groups = 2, .has_positions = 1,
                  .positions = pos, .n_positions = 2};
  size_t len;
  char *json = chan_reply_encode(&r, &len);
  UNIT_CHECK(json != NULL);
  free(json);
  r.has_groups = 0; /* positions only with groups */
  UNIT_CHECK(chan_reply_encode(&r, &len) == NULL);
  r.has_groups = 1;
  r.n_groups = 1; /* "b" is not a group of the reply */
  UNIT_CHECK(chan_reply_encode(&r, &len) == NULL);
  r.n_groups = 2;
  strcpy(pos[1].group, "a"); /* twice */
  UNIT_CHECK(chan_reply_encode(&r, &len) == NULL);
  strcpy(pos[1].group, "b c"); /* not a name */
  UNIT_CHECK(chan_reply_encode(&r, &len) == NULL);
  strcpy(pos[1].group, "b");
  pos[1].offset = 9223372036854775808ull; /* past what chan_pos_parse reads */
  UNIT_CHECK(chan_reply_encode(&r, &len) == NULL);
  pos[1].offset = 3;
  pos[1].tag = 0x1000000000000ull; /* 49 bits */
  UNIT_CHECK(chan_reply_encode(&r, &len) == NULL);
  pos[1].tag = 4;
  memset(pos[1].group, 'b', sizeof pos[1].group); /* unterminated */
  UNIT_CHECK(chan_reply_encode(&r, &len) == NULL);
  strcpy(pos[1].group, "b");
  r.positions = NULL;
  UNIT_CHECK(chan_reply_encode(&r, &len) == NULL);
  r.positions = pos;
  r.n_positions = CHAN_GROUPS_MAX + 1;
  UNIT_CHECK(chan_reply_encode(&r, &len) == NULL);
}

static uint32_t cr_rand(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  return *s >> 8;
}

UNIT_TEST(chan_reply_garbage_positions_never_crash_and_round_trip) {
  /* The valid ones several times, so that many replies decode. */
  static const char *const keys[] = {"\"a\"", "\"b\"", "\"a\"", "\"b\"", "\"a b\"", "\"\"", "\"x\\u0000\"",
                                     "\"positions\"", "\"groups\"", "1", "\"\xff\""};
  static const char *const values[] = {
      "\"1-000000000000\"", "\"0-ffffffffffff\"", "\"7-0123456789ab\"",
      "\"12-000000000001\"", "\"01-000000000000\"", "{}", "[]",
      "null", "\"9223372036854775807-000000000000\"", "{\"a\":\"1-000000000000\"}",
      "[\"a\",\"b\"]", "{\"a\":1}", "\"", "}", "{", "\"1-00\\u0000000000000\""};
  uint32_t seed = 7;
  char buf[600];
  int decoded = 0, entries = 0;
  for (int iter = 0; iter < 20000; iter++) {
    size_t o = (size_t)snprintf(buf, sizeof buf, CR_HEAD);
    if (iter % 2) /* often a reply that may carry positions */
      o += (size_t)snprintf(buf + o, sizeof buf - o, ",\"groups\":[\"a\",\"b\"]");
    int members = 1 + (int)(cr_rand(&seed) % 3);
    for (int m = 0; m < members; m++) {
      const char *key = (cr_rand(&seed) % 2) ? "\"positions\"" : "\"groups\"";
      o += (size_t)snprintf(buf + o, sizeof buf - o, ",%s:", key);
      if (cr_rand(&seed) % 3 == 0) {
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s",
                              values[cr_rand(&seed) % (sizeof values / sizeof *values)]);
        continue;
      }
      /* groups: an array of keys; positions: an object of key: value */
      int list = key[1] == 'g';
      int n = (int)(cr_rand(&seed) % 4);
      o += (size_t)snprintf(buf + o, sizeof buf - o, list ? "[" : "{");
      for (int i = 0; i < n && o < sizeof buf - 100; i++) {
        const char *k = keys[cr_rand(&seed) % (sizeof keys / sizeof *keys)];
        const char *v = values[cr_rand(&seed) % (sizeof values / sizeof *values)];
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s%s%s", i ? "," : "", k,
                              list ? "" : ":", list ? "" : v);
      }
      o += (size_t)snprintf(buf + o, sizeof buf - o, list ? "]" : "}");
    }
    o += (size_t)snprintf(buf + o, sizeof buf - o, "}");
    if (o >= sizeof buf) o = sizeof buf - 1;
    if (iter % 7 == 0) buf[cr_rand(&seed) % o] = (char)(cr_rand(&seed) & 0xff);
    chan_reply r, back;
    char err[160];
    if (chan_reply_decode(buf, o, &r, err, sizeof err) != 0) {
      UNIT_CHECK(r.positions == NULL && !r.has_positions);
      continue;
    }
    decoded += r.has_positions;
    entries += r.n_positions > 0;
    size_t len;
    char *json = chan_reply_encode(&r, &len);
    UNIT_CHECK(json && chan_reply_decode(json, len, &back, err, sizeof err) == 0);
    UNIT_CHECK(!json || (back.has_positions == r.has_positions &&
                         back.n_positions == r.n_positions));
    for (size_t i = 0; json && i < r.n_positions && i < back.n_positions; i++)
      UNIT_CHECK(strcmp(back.positions[i].group, r.positions[i].group) == 0 &&
                 back.positions[i].offset == r.positions[i].offset &&
                 back.positions[i].tag == r.positions[i].tag);
    if (json) chan_reply_free(&back);
    free(json);
    chan_reply_free(&r);
  }
  /* The loop reaches valid positions too (1208 and 180 at this seed). */
  UNIT_CHECK(decoded > 1000 && entries > 100);
}
