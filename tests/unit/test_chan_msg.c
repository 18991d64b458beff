/*
 * test_chan_msg.c - channel messages: round trips of the three kinds, and
 * every way a decoder refuses a message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chan_msg.h"
#include "chan_names.h"
#include "unit.h"

#define CM_RC "websocket.send.amq.gen-JzTY20BRgKO-HjmUJj0wLg!17"

/* Decodes a NUL-terminated text; returns the decoder's result. */
static int cm_decode(chan_msg_kind kind, const char *json, chan_msg *m,
                     char *err, size_t errlen) {
  return chan_msg_decode(kind, json, strlen(json), m, err, errlen);
}

/* 1 when json is refused with a reason containing want, leaving m empty. */
static int cm_refused(chan_msg_kind kind, const char *json, const char *want) {
  chan_msg m;
  char err[128] = "";
  int rc = cm_decode(kind, json, &m, err, sizeof err);
  int ok = rc == -1 && strstr(err, want) != NULL && m.reply_channel == NULL &&
           m.data == NULL && m.groups == NULL && m.headers == NULL;
  if (!ok) fprintf(stderr, "  refused? rc=%d err=\"%s\" want \"%s\"\n", rc,
                   err, want);
  chan_msg_free(&m);
  return ok;
}

/* A receive message around one extra member (or none). */
static char *cm_receive_with(const char *extra) {
  static char buf[256];
  snprintf(buf, sizeof buf,
           "{\"reply_channel\":\"" CM_RC "\",\"path\":\"/websocket/\","
           "\"order\":1,\"text\":\"hi\"%s%s}",
           extra[0] ? "," : "", extra);
  return buf;
}

UNIT_TEST(chan_msg_queue_names) {
  UNIT_CHECK_STR(chan_msg_queue(CHAN_MSG_CONNECT), CHAN_QUEUE_CONNECT);
  UNIT_CHECK_STR(chan_msg_queue(CHAN_MSG_RECEIVE), CHAN_QUEUE_RECEIVE);
  UNIT_CHECK_STR(chan_msg_queue(CHAN_MSG_DISCONNECT), CHAN_QUEUE_DISCONNECT);
  UNIT_CHECK(chan_msg_queue((chan_msg_kind)7) == NULL);
}

UNIT_TEST(chan_msg_connect_round_trip) {
  chan_header headers[] = {{"host", "localhost"},
                           {"cookie", "csrftoken=abc; token=x"},
                           {"x-empty", ""}};
  chan_msg m = {.kind = CHAN_MSG_CONNECT,
                .reply_channel = CM_RC,
                .path = "/websocket/",
                .order = 0,
                .query_string = "token=eyJ.a.b",
                .headers = headers,
                .n_headers = 3,
                .client = {"127.0.0.1", 50312},
                .server = {"::1", 8051}};
  size_t len = 0;
  char *json = chan_msg_encode(&m, &len);
  UNIT_CHECK(json && len == strlen(json));
  UNIT_CHECK(json && strstr(json, "\"headers\":[[\"host\",\"localhost\"]"));
  UNIT_CHECK(json && strstr(json, "\"client\":[\"127.0.0.1\",50312]"));
  chan_msg d;
  char err[128];
  UNIT_CHECK(json && chan_msg_decode(CHAN_MSG_CONNECT, json, len, &d, err,
                                     sizeof err) == 0);
  UNIT_CHECK_STR(d.reply_channel, CM_RC);
  UNIT_CHECK_STR(d.path, "/websocket/");
  UNIT_CHECK(d.order == 0 && d.kind == CHAN_MSG_CONNECT);
  UNIT_CHECK_STR(d.query_string, "token=eyJ.a.b");
  UNIT_CHECK(d.n_headers == 3);
  UNIT_CHECK_STR(chan_msg_header(&d, "Cookie"), "csrftoken=abc; token=x");
  UNIT_CHECK_STR(chan_msg_header(&d, "x-empty"), "");
  UNIT_CHECK(chan_msg_header(&d, "origin") == NULL);
  UNIT_CHECK_STR(d.client.host, "127.0.0.1");
  UNIT_CHECK(d.client.port == 50312);
  UNIT_CHECK_STR(d.server.host, "::1");
  UNIT_CHECK(d.server.port == 8051);
  UNIT_CHECK(d.session_json == NULL && d.n_groups == 0);
  chan_msg_free(&d);
  free(json);
}

UNIT_TEST(chan_msg_connect_minimal) {
  /* ASGI defaults: no query, no headers, unknown addresses. */
  chan_msg d;
  char err[128];
  UNIT_CHECK(cm_decode(CHAN_MSG_CONNECT,
                       "{\"reply_channel\":\"" CM_RC "\",\"path\":\"/\","
                       "\"order\":0,\"client\":null}",
                       &d, err, sizeof err) == 0);
  UNIT_CHECK_STR(d.query_string, "");
  UNIT_CHECK(d.n_headers == 0 && d.client.host[0] == '\0' &&
             d.client.port == 0 && d.server.host[0] == '\0');
  chan_msg_free(&d);

  chan_msg m = {.kind = CHAN_MSG_CONNECT, .reply_channel = CM_RC,
                .path = "/"};
  char *json = chan_msg_encode(&m, NULL);
  UNIT_CHECK(json && strstr(json, "\"client\":null"));
  UNIT_CHECK(json && strstr(json, "\"query_string\":\"\""));
  free(json);
}

UNIT_TEST(chan_msg_receive_text_round_trip) {
  char *groups[] = {"jobs-status_changed", "job_events-42"};
  const char *text = "{\"groups\": {\"jobs\": [\"status_changed\"]}} \xc3\xa9";
  chan_msg m = {.kind = CHAN_MSG_RECEIVE,
                .reply_channel = CM_RC,
                .path = "/websocket/",
                .order = 5,
                .data = (char *)text,
                .data_len = strlen(text),
                .session_json = "{\"user\": 7, \"csrftoken\": \"abc\"}",
                .groups = groups,
                .n_groups = 2};
  size_t len;
  char *json = chan_msg_encode(&m, &len);
  chan_msg d;
  char err[128];
  UNIT_CHECK(json && chan_msg_decode(CHAN_MSG_RECEIVE, json, len, &d, err,
                                     sizeof err) == 0);
  UNIT_CHECK(d.order == 5 && !d.is_binary && d.data_len == strlen(text));
  UNIT_CHECK_STR(d.data, text);
  UNIT_CHECK_STR(d.session_json, "{\"user\":7,\"csrftoken\":\"abc\"}");
  UNIT_CHECK(d.n_groups == 2);
  UNIT_CHECK(d.n_groups == 2 && strcmp(d.groups[1], "job_events-42") == 0);
  chan_msg_free(&d);
  free(json);
}

UNIT_TEST(chan_msg_receive_bytes_round_trip) {
  const char raw[] = {'\0', '\x01', '\xff', 'a', '\0'};
  chan_msg m = {.kind = CHAN_MSG_RECEIVE,
                .reply_channel = CM_RC,
                .path = "/",
                .order = 2,
                .is_binary = 1,
                .data = (char *)raw,
                .data_len = sizeof raw};
  size_t len;
  char *json = chan_msg_encode(&m, &len);
  UNIT_CHECK(json && strstr(json, "\"bytes\":\"AAH/YQA=\""));
  UNIT_CHECK(json && strstr(json, "\"groups\":[]"));
  chan_msg d;
  char err[128];
  UNIT_CHECK(json && chan_msg_decode(CHAN_MSG_RECEIVE, json, len, &d, err,
                                     sizeof err) == 0);
  UNIT_CHECK(d.is_binary && d.data_len == sizeof raw &&
             memcmp(d.data, raw, sizeof raw) == 0);
  chan_msg_free(&d);
  free(json);
}

UNIT_TEST(chan_msg_receive_empty_text) {
  chan_msg m = {.kind = CHAN_MSG_RECEIVE, .reply_channel = CM_RC,
                .path = "/", .order = 1};
  char *json = chan_msg_encode(&m, NULL);
  UNIT_CHECK(json && strstr(json, "\"text\":\"\""));
  free(json);
}

/* 1 when the text data[0..len) encodes to a wire text holding wire (when
 * not NULL) and no 0xFF, and decodes back whole. */
static int cm_text_round_trip(const char *data, size_t len, const char *wire) {
  chan_msg m = {.kind = CHAN_MSG_RECEIVE, .reply_channel = CM_RC,
                .path = "/", .order = 1, .data = (char *)data,
                .data_len = len};
  size_t jlen = 0;
  char *json = chan_msg_encode(&m, &jlen);
  chan_msg d;
  char err[128] = "";
  int ok = json && jlen == strlen(json) && !memchr(json, 0xff, jlen) &&
           (!wire || strstr(json, wire)) &&
           chan_msg_decode(CHAN_MSG_RECEIVE, json, jlen, &d, err,
                           sizeof err) == 0;
  if (ok) {
    ok = d.data_len == len && memcmp(d.data, data, len) == 0 &&
         d.data[len] == '\0';
    chan_msg_free(&d);
  }
  if (!ok) fprintf(stderr, "  round trip of %zu bytes: %s %s\n", len,
                   json ? json : "(not encoded)", err);
  free(json);
  return ok;
}

UNIT_TEST(chan_msg_text_with_nul_round_trips) {
  UNIT_CHECK(cm_text_round_trip("ab\0cd", 5, "\"text\":\"ab\\u0000cd\""));
  UNIT_CHECK(cm_text_round_trip("\0ab", 3, "\"text\":\"\\u0000ab\""));
  UNIT_CHECK(cm_text_round_trip("ab\0", 3, "\"text\":\"ab\\u0000\""));
  UNIT_CHECK(cm_text_round_trip("\0", 1, "\"text\":\"\\u0000\""));
  UNIT_CHECK(cm_text_round_trip("a\0\0\0b\0\xc3\xa9\0", 9, NULL));
  /* Text that merely looks like the escape: a backslash, then u0000. */
  UNIT_CHECK(cm_text_round_trip("\\u0000", 6, "\"text\":\"\\\\u0000\""));
  UNIT_CHECK(cm_text_round_trip("\\\0\"\n", 4, NULL));
  char many[3000];
  for (size_t i = 0; i < sizeof many; i++) many[i] = i % 3 ? 'x' : '\0';
  UNIT_CHECK(cm_text_round_trip(many, sizeof many, NULL));
  memset(many, 0, sizeof many);
  UNIT_CHECK(cm_text_round_trip(many, sizeof many, NULL));
}

/* The receive message holding text (raw JSON string content) decodes to
 * want[0..want_len). */
static int cm_text_decodes_to(const char *text, const char *want,
                              size_t want_len) {
  char json[256];
  snprintf(json, sizeof json,
           "{\"reply_channel\":\"" CM_RC "\",\"path\":\"/\",\"order\":1,"
           "\"text\":\"%s\"}",
           text);
  chan_msg d;
  char err[128] = "";
  if (cm_decode(CHAN_MSG_RECEIVE, json, &d, err, sizeof err) != 0) {
    fprintf(stderr, "  %s: %s\n", json, err);
    return 0;
  }
  int ok = d.data_len == want_len && memcmp(d.data, want, want_len) == 0;
  chan_msg_free(&d);
  return ok;
}

UNIT_TEST(chan_msg_decodes_nul_escapes_only) {
  UNIT_CHECK(cm_text_decodes_to("\\u0000", "\0", 1));
  /* An escaped backslash, then the letters u0000: no NUL. */
  UNIT_CHECK(cm_text_decodes_to("\\\\u0000", "\\u0000", 6));
  /* An escaped backslash, then a real escape. */
  UNIT_CHECK(cm_text_decodes_to("\\\\\\u0000", "\\\0", 2));
  UNIT_CHECK(cm_text_decodes_to("\\\\\\\\u0000", "\\\\u0000", 7));
  UNIT_CHECK(cm_text_decodes_to("\\u00000", "\0" "0", 2));
  UNIT_CHECK(cm_text_decodes_to("\\u0001\\u00e9", "\x01\xc3\xa9", 3));
  UNIT_CHECK(cm_text_decodes_to("\\ud83d\\ude00\\u0000", "\xf0\x9f\x98\x80\0",
                                5));
  /* A surrogate half is no pair with a NUL. */
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE,
                        cm_receive_with("\"text\":\"\\ud83d\\u0000\""),
                        "invalid JSON"));
}

UNIT_TEST(chan_msg_refuses_nul_outside_text_and_raw_ff) {
  /* Raw 0xFF: never UTF-8, and it would read as a NUL. */
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE,
                        "{\"reply_channel\":\"" CM_RC "\",\"path\":\"/\","
                        "\"order\":1,\"text\":\"a\xff\"}",
                        "invalid JSON"));
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, cm_receive_with("\"x\":\"\xff\""),
                        "invalid JSON"));
  /* Every other string crosses as a C string: U+0000 is refused, not cut. */
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE,
                        "{\"reply_channel\":\"" CM_RC "\",\"path\":\"/\\u0000x\","
                        "\"order\":1,\"text\":\"\"}",
                        "U+0000 outside text"));
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE,
                        cm_receive_with("\"session\":{\"k\":\"a\\u0000\"}"),
                        "U+0000 outside text"));
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE,
                        cm_receive_with("\"session\":{\"\\u0000\":1}"),
                        "U+0000 outside text"));
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE,
                        cm_receive_with("\"groups\":[\"a\\u0000\"]"),
                        "U+0000 outside text"));
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE,
                        cm_receive_with("\"text\\u0000\":\"\""),
                        "U+0000 outside text"));
  UNIT_CHECK(cm_refused(CHAN_MSG_CONNECT,
                        "{\"reply_channel\":\"" CM_RC "\",\"path\":\"/\","
                        "\"order\":0,\"headers\":[[\"a\",\"b\\u0000\"]]}",
                        "U+0000 outside text"));
  /* The escaped backslash is fine anywhere. */
  chan_msg d;
  char err[128];
  UNIT_CHECK(cm_decode(CHAN_MSG_RECEIVE,
                       cm_receive_with("\"session\":{\"k\":\"\\\\u0000\"}"),
                       &d, err, sizeof err) == 0);
  UNIT_CHECK_STR(d.session_json, "{\"k\":\"\\\\u0000\"}");
  chan_msg_free(&d);
}

UNIT_TEST(chan_msg_encode_refuses_ff_and_session_nul) {
  chan_msg m = {.kind = CHAN_MSG_RECEIVE, .reply_channel = CM_RC,
                .path = "/", .order = 1, .data = "a\xff", .data_len = 2};
  UNIT_CHECK(chan_msg_encode(&m, NULL) == NULL);
  m.data = "a";
  m.data_len = 1;
  m.path = "/\xff";
  UNIT_CHECK(chan_msg_encode(&m, NULL) == NULL);
  m.path = "/";
  m.session_json = "{\"k\":\"a\\u0000b\"}";
  UNIT_CHECK(chan_msg_encode(&m, NULL) == NULL);
  m.session_json = "{\"k\":\"\xff\"}";
  UNIT_CHECK(chan_msg_encode(&m, NULL) == NULL);
  m.session_json = "{\"k\":\"\\\\u0000\"}";
  char *json = chan_msg_encode(&m, NULL);
  UNIT_CHECK(json && strstr(json, "\"session\":{\"k\":\"\\\\u0000\"}"));
  free(json);
  /* Binary data may hold any byte: it is base64 on the wire. */
  m.is_binary = 1;
  m.data = "\xff\0";
  m.data_len = 2;
  json = chan_msg_encode(&m, NULL);
  UNIT_CHECK(json && strstr(json, "\"bytes\":\"/wA=\""));
  free(json);
}

UNIT_TEST(chan_msg_disconnect_round_trip) {
  char *groups[] = {"jobs-status_changed"};
  chan_msg m = {.kind = CHAN_MSG_DISCONNECT,
                .reply_channel = CM_RC,
                .path = "/websocket/",
                .order = 4,
                .code = 1006,
                .session_json = "{\"user\":7}",
                .groups = groups,
                .n_groups = 1};
  size_t len;
  char *json = chan_msg_encode(&m, &len);
  chan_msg d;
  char err[128];
  UNIT_CHECK(json && chan_msg_decode(CHAN_MSG_DISCONNECT, json, len, &d, err,
                                     sizeof err) == 0);
  UNIT_CHECK(d.code == 1006 && d.order == 4 && d.n_groups == 1);
  UNIT_CHECK_STR(d.session_json, "{\"user\":7}");
  chan_msg_free(&d);
  free(json);
}

UNIT_TEST(chan_msg_decodes_protocol_examples) {
  chan_msg d;
  char err[128];
  UNIT_CHECK(cm_decode(CHAN_MSG_CONNECT,
                       "{\"reply_channel\": \"" CM_RC "\",\n"
                       " \"path\": \"/websocket/\", \"query_string\": "
                       "\"token=eyJ...\",\n \"headers\": [[\"host\", "
                       "\"localhost\"], [\"cookie\", \"csrftoken=abc\"]],\n"
                       " \"client\": [\"127.0.0.1\", 50312], \"server\": "
                       "[\"127.0.0.1\", 8051], \"order\": 0}",
                       &d, err, sizeof err) == 0);
  chan_msg_free(&d);
  UNIT_CHECK(cm_decode(CHAN_MSG_RECEIVE,
                       "{\"reply_channel\": \"" CM_RC "\",\n"
                       " \"path\": \"/websocket/\", \"order\": 1, \"text\": "
                       "\"{\\\"groups\\\": {\\\"jobs\\\": "
                       "[\\\"status_changed\\\"]}}\",\n \"session\": "
                       "{\"user\": 7, \"csrftoken\": \"abc\"}, \"groups\": []}",
                       &d, err, sizeof err) == 0);
  UNIT_CHECK_STR(d.data, "{\"groups\": {\"jobs\": [\"status_changed\"]}}");
  chan_msg_free(&d);
  UNIT_CHECK(cm_decode(CHAN_MSG_DISCONNECT,
                       "{\"reply_channel\": \"" CM_RC "\", \"path\": "
                       "\"/websocket/\", \"order\": 4, \"code\": 1000,\n"
                       " \"session\": {\"user\": 7}, \"groups\": "
                       "[\"jobs-status_changed\"]}",
                       &d, err, sizeof err) == 0);
  chan_msg_free(&d);
}

UNIT_TEST(chan_msg_input_need_not_be_terminated) {
  /* An exact-size heap copy: ASan catches any read past the end. */
  const char *text = cm_receive_with("");
  size_t len = strlen(text);
  char *exact = malloc(len);
  memcpy(exact, text, len);
  chan_msg d;
  char err[128];
  UNIT_CHECK(chan_msg_decode(CHAN_MSG_RECEIVE, exact, len, &d, err,
                             sizeof err) == 0);
  chan_msg_free(&d);
  for (size_t cut = 0; cut < len; cut++) {
    UNIT_CHECK(chan_msg_decode(CHAN_MSG_RECEIVE, exact, cut, &d, err,
                               sizeof err) == -1);
  }
  free(exact);
  /* A NUL escape at the very end of an exact-size buffer. */
  const char *nul = "{\"reply_channel\":\"" CM_RC "\",\"path\":\"/\","
                    "\"order\":1,\"text\":\"\\u0000\"}";
  len = strlen(nul);
  exact = malloc(len);
  memcpy(exact, nul, len);
  UNIT_CHECK(chan_msg_decode(CHAN_MSG_RECEIVE, exact, len, &d, err,
                             sizeof err) == 0);
  UNIT_CHECK(d.data_len == 1 && d.data[0] == '\0');
  chan_msg_free(&d);
  for (size_t cut = 0; cut < len; cut++) {
    UNIT_CHECK(chan_msg_decode(CHAN_MSG_RECEIVE, exact, cut, &d, err,
                               sizeof err) == -1);
  }
  free(exact);
}

UNIT_TEST(chan_msg_rejects_bad_json) {
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, "", "invalid JSON"));
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, "{", "invalid JSON"));
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, "{\"a\":}", "invalid JSON"));
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, "nul", "invalid JSON"));
  char trailing[300];
  snprintf(trailing, sizeof trailing, "%s x", cm_receive_with(""));
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, trailing, "invalid JSON"));
  snprintf(trailing, sizeof trailing, "%s{}", cm_receive_with(""));
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, trailing, "invalid JSON"));
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, "[1,2]", "JSON object"));
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, "\"text\"", "JSON object"));
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, "null", "JSON object"));
  chan_msg d;
  char err[64];
  UNIT_CHECK(chan_msg_decode(CHAN_MSG_RECEIVE, NULL, 0, &d, err,
                             sizeof err) == -1);
  UNIT_CHECK(chan_msg_decode((chan_msg_kind)9, "{}", 2, &d, err,
                             sizeof err) == -1);
  /* A NULL or zero-size err is allowed. */
  UNIT_CHECK(chan_msg_decode(CHAN_MSG_RECEIVE, "{", 1, &d, NULL, 0) == -1);
}

UNIT_TEST(chan_msg_rejects_missing_or_mistyped_keys) {
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE,
                        "{\"path\":\"/\",\"order\":1,\"text\":\"\"}",
                        "missing reply_channel"));
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE,
                        "{\"reply_channel\":17,\"path\":\"/\",\"order\":1,"
                        "\"text\":\"\"}",
                        "reply_channel must be a string"));
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE,
                        "{\"reply_channel\":\"websocket.send.q\",\"path\":"
                        "\"/\",\"order\":1,\"text\":\"\"}",
                        "invalid reply_channel"));
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE,
                        "{\"reply_channel\":\"" CM_RC "\",\"order\":1,"
                        "\"text\":\"\"}",
                        "missing path"));
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE,
                        "{\"reply_channel\":\"" CM_RC "\",\"path\":[],"
                        "\"order\":1,\"text\":\"\"}",
                        "path must be a string"));
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE,
                        "{\"reply_channel\":\"" CM_RC "\",\"path\":\"/\","
                        "\"text\":\"\"}",
                        "missing order"));
  UNIT_CHECK(cm_refused(CHAN_MSG_CONNECT,
                        "{\"reply_channel\":\"" CM_RC "\",\"path\":\"/\"}",
                        "missing order"));
}

UNIT_TEST(chan_msg_rejects_bad_order) {
  const char *bad[] = {"-1", "1.5", "\"1\"", "true", "null",
                       "9007199254740992", "9007199254740993", "1e300", "[1]"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char json[256];
    snprintf(json, sizeof json,
             "{\"reply_channel\":\"" CM_RC "\",\"path\":\"/\",\"order\":%s,"
             "\"text\":\"\"}",
             bad[i]);
    UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, json, "order must be"));
  }
  /* The largest order a double holds exactly is still fine. */
  chan_msg d;
  char err[128];
  UNIT_CHECK(cm_decode(CHAN_MSG_RECEIVE,
                       "{\"reply_channel\":\"" CM_RC "\",\"path\":\"/\","
                       "\"order\":9007199254740991,\"text\":\"\"}",
                       &d, err, sizeof err) == 0);
  UNIT_CHECK(d.order == 9007199254740991ull);
  chan_msg_free(&d);
}

UNIT_TEST(chan_msg_rejects_bad_payload) {
  const char *head = "{\"reply_channel\":\"" CM_RC "\",\"path\":\"/\","
                     "\"order\":1";
  char json[256];
  snprintf(json, sizeof json, "%s}", head);
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, json, "exactly one of"));
  snprintf(json, sizeof json, "%s,\"text\":\"a\",\"bytes\":\"YQ==\"}", head);
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, json, "exactly one of"));
  snprintf(json, sizeof json, "%s,\"text\":5}", head);
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, json, "text must be a string"));
  snprintf(json, sizeof json, "%s,\"text\":null}", head);
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, json, "text must be a string"));
  snprintf(json, sizeof json, "%s,\"bytes\":\"YQ=\"}", head);
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, json, "base64"));
  snprintf(json, sizeof json, "%s,\"bytes\":\"Y Q==\"}", head);
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, json, "base64"));
  snprintf(json, sizeof json, "%s,\"bytes\":[1]}", head);
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, json, "base64"));
}

UNIT_TEST(chan_msg_rejects_bad_disconnect_code) {
  const char *head = "{\"reply_channel\":\"" CM_RC "\",\"path\":\"/\","
                     "\"order\":3";
  char json[256];
  snprintf(json, sizeof json, "%s}", head);
  UNIT_CHECK(cm_refused(CHAN_MSG_DISCONNECT, json, "missing code"));
  const char *bad[] = {"999", "5000", "-1000", "1000.5", "\"1000\"", "true"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(json, sizeof json, "%s,\"code\":%s}", head, bad[i]);
    UNIT_CHECK(cm_refused(CHAN_MSG_DISCONNECT, json, "code must be"));
  }
}

UNIT_TEST(chan_msg_rejects_bad_headers_and_addresses) {
  const char *head = "{\"reply_channel\":\"" CM_RC "\",\"path\":\"/\","
                     "\"order\":0";
  const char *bad_headers[] = {"{}", "\"host\"", "[[\"host\"]]",
                               "[[\"host\",\"a\",\"b\"]]", "[[\"host\",1]]",
                               "[[1,\"a\"]]", "[\"host\"]", "[[]]"};
  char json[512];
  for (size_t i = 0; i < sizeof bad_headers / sizeof bad_headers[0]; i++) {
    snprintf(json, sizeof json, "%s,\"headers\":%s}", head, bad_headers[i]);
    UNIT_CHECK(cm_refused(CHAN_MSG_CONNECT, json, "header"));
  }
  const char *bad_addr[] = {"\"127.0.0.1\"", "[\"127.0.0.1\"]",
                            "[\"127.0.0.1\",70000]", "[\"127.0.0.1\",-1]",
                            "[\"127.0.0.1\",\"80\"]", "[1,80]",
                            "[\"127.0.0.1\",80,1]", "{}"};
  for (size_t i = 0; i < sizeof bad_addr / sizeof bad_addr[0]; i++) {
    snprintf(json, sizeof json, "%s,\"client\":%s}", head, bad_addr[i]);
    UNIT_CHECK(cm_refused(CHAN_MSG_CONNECT, json, "client must be"));
    snprintf(json, sizeof json, "%s,\"server\":%s}", head, bad_addr[i]);
    UNIT_CHECK(cm_refused(CHAN_MSG_CONNECT, json, "server must be"));
  }
  /* A host that would not fit the 64-byte field. */
  char host[80];
  memset(host, '1', 64);
  host[64] = '\0';
  snprintf(json, sizeof json, "%s,\"client\":[\"%s\",1]}", head, host);
  UNIT_CHECK(cm_refused(CHAN_MSG_CONNECT, json, "client must be"));
  host[63] = '\0';
  snprintf(json, sizeof json, "%s,\"client\":[\"%s\",1]}", head, host);
  chan_msg d;
  char err[128];
  UNIT_CHECK(cm_decode(CHAN_MSG_CONNECT, json, &d, err, sizeof err) == 0);
  chan_msg_free(&d);
  snprintf(json, sizeof json, "%s,\"query_string\":1}", head);
  UNIT_CHECK(cm_refused(CHAN_MSG_CONNECT, json, "query_string must be"));
}

/* A connect message with n headers; caller frees. */
static char *cm_connect_with_headers(int n) {
  size_t cap = 200 + (size_t)n * 16;
  char *json = malloc(cap);
  size_t off = (size_t)snprintf(json, cap,
                                "{\"reply_channel\":\"" CM_RC "\","
                                "\"path\":\"/\",\"order\":0,\"headers\":[");
  for (int i = 0; i < n; i++) {
    off += (size_t)snprintf(json + off, cap - off, "%s[\"h%d\",\"v\"]",
                            i ? "," : "", i);
  }
  snprintf(json + off, cap - off, "]}");
  return json;
}

UNIT_TEST(chan_msg_header_cap) {
  char *json = cm_connect_with_headers(CHAN_HEADERS_MAX);
  chan_msg d;
  char err[128];
  UNIT_CHECK(cm_decode(CHAN_MSG_CONNECT, json, &d, err, sizeof err) == 0);
  UNIT_CHECK(d.n_headers == CHAN_HEADERS_MAX);
  UNIT_CHECK_STR(chan_msg_header(&d, "h99"), "v");
  chan_msg_free(&d);
  free(json);
  json = cm_connect_with_headers(CHAN_HEADERS_MAX + 1);
  UNIT_CHECK(cm_refused(CHAN_MSG_CONNECT, json, "more than 100 headers"));
  free(json);
}

/* A receive message with n groups named g0, g1, ...; caller frees. */
static char *cm_receive_with_groups(int n) {
  size_t cap = 200 + (size_t)n * 12;
  char *json = malloc(cap);
  size_t off = (size_t)snprintf(json, cap,
                                "{\"reply_channel\":\"" CM_RC "\","
                                "\"path\":\"/\",\"order\":1,\"text\":\"\","
                                "\"groups\":[");
  for (int i = 0; i < n; i++) {
    off += (size_t)snprintf(json + off, cap - off, "%s\"g%d\"", i ? "," : "",
                            i);
  }
  snprintf(json + off, cap - off, "]}");
  return json;
}

UNIT_TEST(chan_msg_groups_rules) {
  char *json = cm_receive_with_groups(CHAN_GROUPS_MAX);
  chan_msg d;
  char err[128];
  UNIT_CHECK(cm_decode(CHAN_MSG_RECEIVE, json, &d, err, sizeof err) == 0);
  UNIT_CHECK(d.n_groups == CHAN_GROUPS_MAX);
  chan_msg_free(&d);
  free(json);
  json = cm_receive_with_groups(CHAN_GROUPS_MAX + 1);
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, json, "more than 1000 groups"));
  free(json);
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, cm_receive_with("\"groups\":{}"),
                        "groups must be an array"));
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, cm_receive_with("\"groups\":\"a\""),
                        "groups must be an array"));
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE,
                        cm_receive_with("\"groups\":[\"ok\",\"bad name\"]"),
                        "invalid group name"));
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE,
                        cm_receive_with("\"groups\":[\"ok\",7]"),
                        "invalid group name"));
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, cm_receive_with("\"groups\":[\"\"]"),
                        "invalid group name"));
}

UNIT_TEST(chan_msg_session_rules) {
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, cm_receive_with("\"session\":[]"),
                        "session must be an object"));
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, cm_receive_with("\"session\":null"),
                        "session must be an object"));
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, cm_receive_with("\"session\":\"x\""),
                        "session must be an object"));
  /* {"k":"xxx..."} of exactly CHAN_SESSION_MAX bytes, then one more. */
  size_t fill = CHAN_SESSION_MAX - strlen("{\"k\":\"\"}");
  char *json = malloc(CHAN_SESSION_MAX + 256);
  char *value = malloc(fill + 2);
  memset(value, 'x', fill + 1);
  value[fill] = '\0';
  snprintf(json, CHAN_SESSION_MAX + 256,
           "{\"reply_channel\":\"" CM_RC "\",\"path\":\"/\",\"order\":1,"
           "\"text\":\"\",\"session\":{\"k\": \"%s\"}}",
           value);
  chan_msg d;
  char err[128];
  UNIT_CHECK(cm_decode(CHAN_MSG_RECEIVE, json, &d, err, sizeof err) == 0);
  UNIT_CHECK(d.session_json && strlen(d.session_json) == CHAN_SESSION_MAX);
  chan_msg_free(&d);
  value[fill] = 'x';
  value[fill + 1] = '\0';
  snprintf(json, CHAN_SESSION_MAX + 256,
           "{\"reply_channel\":\"" CM_RC "\",\"path\":\"/\",\"order\":1,"
           "\"text\":\"\",\"session\":{\"k\":\"%s\"}}",
           value);
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, json, "session over 4096 bytes"));
  free(value);
  free(json);
}

UNIT_TEST(chan_msg_ignores_unknown_keys) {
  chan_msg d;
  char err[128];
  UNIT_CHECK(cm_decode(CHAN_MSG_RECEIVE,
                       cm_receive_with("\"future\":{\"x\":[1,2]}"), &d, err,
                       sizeof err) == 0);
  chan_msg_free(&d);
}

UNIT_TEST(chan_msg_encode_refuses_what_decode_would) {
  chan_msg m = {.kind = CHAN_MSG_RECEIVE, .reply_channel = CM_RC,
                .path = "/", .order = 1};
  UNIT_CHECK(chan_msg_encode(NULL, NULL) == NULL);
  m.path = NULL;
  UNIT_CHECK(chan_msg_encode(&m, NULL) == NULL);
  m.path = "/";
  m.session_json = "[1]";
  UNIT_CHECK(chan_msg_encode(&m, NULL) == NULL);
  m.session_json = "{not json";
  UNIT_CHECK(chan_msg_encode(&m, NULL) == NULL);
  m.session_json = NULL;
  char *groups[] = {"bad name"};
  m.groups = groups;
  m.n_groups = 1;
  UNIT_CHECK(chan_msg_encode(&m, NULL) == NULL);
  m.groups = NULL;
  m.n_groups = 0;
  m.order = 9007199254740992ull;
  UNIT_CHECK(chan_msg_encode(&m, NULL) == NULL);
  m.order = 1;
  m.kind = CHAN_MSG_DISCONNECT;
  m.code = 99;
  UNIT_CHECK(chan_msg_encode(&m, NULL) == NULL);
  m.kind = CHAN_MSG_CONNECT;
  chan_header h[CHAN_HEADERS_MAX + 1];
  for (size_t i = 0; i <= CHAN_HEADERS_MAX; i++) h[i] = (chan_header){"a", "b"};
  m.headers = h;
  m.n_headers = CHAN_HEADERS_MAX + 1;
  UNIT_CHECK(chan_msg_encode(&m, NULL) == NULL);
  m.n_headers = CHAN_HEADERS_MAX;
  char *json = chan_msg_encode(&m, NULL);
  UNIT_CHECK(json != NULL);
  free(json);
  m.n_headers = 0;
  memset(m.client.host, 'x', sizeof m.client.host); /* not terminated */
  UNIT_CHECK(chan_msg_encode(&m, NULL) == NULL);
}

UNIT_TEST(chan_msg_free_is_safe_on_empty) {
  chan_msg m;
  memset(&m, 0, sizeof m);
  chan_msg_free(&m);
  chan_msg_free(&m);
  chan_msg_free(NULL);
  UNIT_CHECK(chan_msg_header(NULL, "host") == NULL);
}

UNIT_TEST(chan_msg_redacted_connect_keeps_no_credentials) {
  const char *in =
      "{\"reply_channel\": \"" CM_RC "\", \"path\": \"/websocket/\", "
      "\"query_string\": \"token=SECRET1&x&y=SECRET2\", "
      "\"headers\": [[\"host\", \"h\"], [\"cookie\", \"token=SECRET3\"], "
      "[\"authorization\", \"Bearer SECRET4\"], [\"origin\", \"https://h\"]], "
      "\"client\": [\"10.0.0.1\", 5], \"server\": [\"10.0.0.2\", 8051], \"order\": 0}";
  size_t n = 0;
  char *out = chan_msg_redact_connect(in, strlen(in), &n);
  UNIT_CHECK(out && n == strlen(out) && !strstr(out, "SECRET"));
  chan_msg m;
  char err[128];
  UNIT_CHECK(cm_decode(CHAN_MSG_CONNECT, out, &m, err, sizeof err) == 0);
  UNIT_CHECK_STR(m.query_string, "token=(redacted)&x&y=(redacted)");
  UNIT_CHECK_STR(chan_msg_header(&m, "cookie"), CHAN_MSG_REDACTED);
  UNIT_CHECK_STR(chan_msg_header(&m, "authorization"), CHAN_MSG_REDACTED);
  UNIT_CHECK_STR(chan_msg_header(&m, "origin"), "https://h"); /* the rest as it came */
  UNIT_CHECK_STR(m.reply_channel, CM_RC);
  UNIT_CHECK_STR(m.client.host, "10.0.0.1");
  chan_msg_free(&m);
  free(out);
  /* Not a connect message: nothing of it is kept but its length. */
  const char *bad = "{\"cookie\": \"SECRET5\"";
  out = chan_msg_redact_connect(bad, strlen(bad), &n);
  UNIT_CHECK(out && !strstr(out, "SECRET") && strstr(out, "\"bytes\": 20"));
  free(out);
}

/* Issue 12: the session goes gateway -> worker through cJSON on both
 * sides; a user id of 16 digits must come back as the same digits (cJSON's
 * own printing wrote 5000000000000001 as 5e+15: user ...000's id). */
UNIT_TEST(chan_msg_session_ids_stay_exact) {
  chan_msg m = {.kind = CHAN_MSG_RECEIVE,
                .reply_channel = CM_RC,
                .path = "/websocket/",
                .order = 1,
                .data = "{}",
                .data_len = 2,
                .session_json = "{\"user\":5000000000000001,\"objects\":"
                                "{\"job_events\":[9007199254740991,0.5]}}"};
  size_t len;
  char *json = chan_msg_encode(&m, &len);
  UNIT_CHECK(json && strstr(json, "\"user\":5000000000000001"));
  chan_msg d;
  char err[128];
  UNIT_CHECK(json && chan_msg_decode(CHAN_MSG_RECEIVE, json, len, &d, err,
                                     sizeof err) == 0);
  UNIT_CHECK_STR(d.session_json, "{\"user\":5000000000000001,\"objects\":"
                                 "{\"job_events\":[9007199254740991,0.5]}}");
  chan_msg_free(&d);
  free(json);
}

/* The encoded size of a websocket.receive carrying `len` bytes of `byte`. */
static size_t cm_receive_size(int binary, int byte, size_t len) {
  char *data = malloc(len ? len : 1);
  if (!data) return 0;
  memset(data, byte, len);
  chan_msg m = {.kind = CHAN_MSG_RECEIVE, .reply_channel = CM_RC, .path = "/websocket/",
                .order = 1, .is_binary = binary, .data = data, .data_len = len};
  size_t n = 0;
  char *json = chan_msg_encode(&m, &n);
  free(json);
  free(data);
  return json ? n : 0;
}

/* What a client message costs on the broker: at most 6 bytes per byte of
 * text (cJSON's \u00XX for a control character) plus the envelope, 4/3 for
 * bytes (base64). docs/PROTOCOL.md and the max_message help state it; a
 * change of encoder that made it worse must change them. */
UNIT_TEST(chan_msg_receive_worst_case_size_is_6x_the_text) {
  enum { N = 16384 }; /* gateway.max_message's default */
  size_t envelope = cm_receive_size(0, 'a', 0);
  size_t worst = 0;
  for (int byte = 0; byte < 0x80; byte++) { /* single bytes valid in UTF-8 */
    size_t n = cm_receive_size(0, byte, N);
    UNIT_CHECK(n > envelope);
    if (n - envelope > worst) worst = n - envelope;
  }
  UNIT_CHECK(worst == 6 * (size_t)N);                  /* "\u0001" for 0x01 */
  UNIT_CHECK(cm_receive_size(0, 0x01, N) - envelope == 6 * (size_t)N);
  UNIT_CHECK(cm_receive_size(1, 0x01, N) - envelope <= (size_t)N * 4 / 3 + 4);
  UNIT_CHECK(envelope < 256);
}

UNIT_TEST(chan_msg_redacted_receive_keeps_no_session_credentials) {
  const char *in =
      "{\"reply_channel\": \"" CM_RC "\", \"path\": \"/websocket/\", "
      "\"order\": 3, \"text\": \"{}\", \"groups\": [\"jobs-status\"], "
      "\"session\": {\"user\": 5000000000000001, \"csrftoken\": \"abc\", "
      "\"credentials\": {\"cookie\": \"sessionid=s3cret\", "
      "\"authorization\": \"Bearer t0ken\", \"origin\": \"https://a.example\"}}}";
  size_t n;
  char *out = chan_msg_redact(CHAN_MSG_RECEIVE, in, strlen(in), &n);
  UNIT_CHECK(out && n == strlen(out));
  UNIT_CHECK(out && !strstr(out, "s3cret") && !strstr(out, "t0ken") &&
             !strstr(out, "abc") && !strstr(out, "a.example"));
  chan_msg m;
  char err[128];
  UNIT_CHECK(out && chan_msg_decode(CHAN_MSG_RECEIVE, out, n, &m, err, sizeof err) == 0);
  if (out) {
    UNIT_CHECK(strstr(m.session_json, "\"user\":5000000000000001") != NULL);
    UNIT_CHECK(strstr(m.session_json, "\"cookie\":\"(redacted)\"") != NULL);
    UNIT_CHECK(m.n_groups == 1 && m.order == 3);
    chan_msg_free(&m);
  }
  free(out);
  /* A disconnect likewise; a body that does not decode becomes a note. */
  const char *disc = "{\"reply_channel\": \"" CM_RC "\", \"path\": \"/websocket/\", "
                     "\"order\": 4, \"code\": 1000, \"session\": {\"user\": 7, "
                     "\"credentials\": {\"cookie\": \"sessionid=s3cret\"}}}";
  out = chan_msg_redact(CHAN_MSG_DISCONNECT, disc, strlen(disc), &n);
  UNIT_CHECK(out && !strstr(out, "s3cret") && strstr(out, "\"code\":1000"));
  free(out);
  out = chan_msg_redact(CHAN_MSG_RECEIVE, "{\"session\": \"sessionid=x\"", 25, &n);
  UNIT_CHECK_STR(out, "{\"redacted\": \"not a websocket.receive message\", \"bytes\": 25}");
  free(out);
  /* A session without credentials: the message byte for byte. */
  const char *plain = "{\"reply_channel\": \"" CM_RC "\", \"path\": \"/websocket/\", "
                      "\"order\": 1, \"text\": \"x\", \"session\": {\"user\": 7}}";
  out = chan_msg_redact(CHAN_MSG_RECEIVE, plain, strlen(plain), &n);
  UNIT_CHECK_STR(out, plain);
  free(out);
}

/* ---- protocol (issue 14) ---- */

static chan_msg cm_receive_msg(char **groups) {
  chan_msg m = {.kind = CHAN_MSG_RECEIVE,
                .reply_channel = "websocket.send.q!1",
                .path = "/websocket/",
                .order = 2,
                .data = "{\"groups\": {}}",
                .data_len = 14,
                .session_json = "{\"user\":7}",
                .groups = groups,
                .n_groups = 1};
  return m;
}

UNIT_TEST(chan_msg_old_protocol_receive_is_byte_for_byte_as_before) {
  /* The texts the encoder wrote before issue 14 (checked against it). */
  char *groups[] = {"jobs-status_changed"};
  chan_msg m = cm_receive_msg(groups);
  size_t len;
  char *json = chan_msg_encode(&m, &len);
  UNIT_CHECK_STR(json,
                 "{\"reply_channel\":\"websocket.send.q!1\",\"path\":\"/websocket/\","
                 "\"order\":2,\"text\":\"{\\\"groups\\\": {}}\",\"session\":{\"user\":7},"
                 "\"groups\":[\"jobs-status_changed\"]}");
  free(json);
  m.recheck = 1;
  m.data = NULL;
  m.data_len = 0;
  json = chan_msg_encode(&m, &len);
  UNIT_CHECK_STR(json,
                 "{\"reply_channel\":\"websocket.send.q!1\",\"path\":\"/websocket/\","
                 "\"order\":2,\"recheck\":true,\"session\":{\"user\":7},"
                 "\"groups\":[\"jobs-status_changed\"]}");
  free(json);
  chan_msg d;
  char err[128];
  UNIT_CHECK(cm_decode(CHAN_MSG_RECEIVE, cm_receive_with(""), &d, err, sizeof err) == 0);
  UNIT_CHECK(d.protocol == CHAN_MSG_PROTOCOL_OLD);
  chan_msg_free(&d);
}

UNIT_TEST(chan_msg_wsgw2_receive_round_trips) {
  char *groups[] = {"jobs-status_changed"};
  chan_msg m = cm_receive_msg(groups);
  m.protocol = CHAN_MSG_PROTOCOL_WSGW2;
  size_t len;
  char *json = chan_msg_encode(&m, &len);
  UNIT_CHECK_STR(json,
                 "{\"reply_channel\":\"websocket.send.q!1\",\"path\":\"/websocket/\","
                 "\"order\":2,\"text\":\"{\\\"groups\\\": {}}\",\"protocol\":\"wsgw.2\","
                 "\"session\":{\"user\":7},\"groups\":[\"jobs-status_changed\"]}");
  chan_msg d;
  char err[128];
  UNIT_CHECK(json && chan_msg_decode(CHAN_MSG_RECEIVE, json, len, &d, err, sizeof err) == 0);
  UNIT_CHECK(d.protocol == CHAN_MSG_PROTOCOL_WSGW2 && d.data_len == 14 && !d.recheck);
  chan_msg_free(&d);
  free(json);
  /* A re-check of a wsgw.2 connection says so too. */
  m.recheck = 1;
  m.data = NULL;
  m.data_len = 0;
  json = chan_msg_encode(&m, &len);
  UNIT_CHECK(json && strstr(json, "\"recheck\":true,\"protocol\":\"wsgw.2\""));
  UNIT_CHECK(json && chan_msg_decode(CHAN_MSG_RECEIVE, json, len, &d, err, sizeof err) == 0);
  UNIT_CHECK(d.protocol == CHAN_MSG_PROTOCOL_WSGW2 && d.recheck);
  chan_msg_free(&d);
  free(json);
}

UNIT_TEST(chan_msg_protocol_decoding_rules) {
  chan_msg d;
  char err[128];
  /* A protocol this worker does not know: the old one. */
  const char *other[] = {"\"protocol\":\"wsgw.3\"", "\"protocol\":\"\"",
                         "\"protocol\":\"WSGW.2\"", "\"protocol\":\"wsgw.2 \""};
  for (size_t i = 0; i < sizeof other / sizeof *other; i++) {
    UNIT_CHECK(cm_decode(CHAN_MSG_RECEIVE, cm_receive_with(other[i]), &d, err,
                         sizeof err) == 0);
    UNIT_CHECK(d.protocol == CHAN_MSG_PROTOCOL_OLD);
    chan_msg_free(&d);
  }
  UNIT_CHECK(cm_decode(CHAN_MSG_RECEIVE, cm_receive_with("\"protocol\":\"wsgw.2\""), &d,
                       err, sizeof err) == 0);
  UNIT_CHECK(d.protocol == CHAN_MSG_PROTOCOL_WSGW2);
  chan_msg_free(&d);
  const char *bad[] = {"\"protocol\":2", "\"protocol\":null", "\"protocol\":[\"wsgw.2\"]",
                       "\"protocol\":true"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, cm_receive_with(bad[i]),
                          "protocol must be a string"));
  /* A U+0000 in it is refused as anywhere outside text. */
  UNIT_CHECK(cm_refused(CHAN_MSG_RECEIVE, cm_receive_with("\"protocol\":\"wsgw.2\\u0000\""),
                        "U+0000"));
  /* Connect and disconnect do not carry it: the key is ignored there. */
  UNIT_CHECK(cm_decode(CHAN_MSG_DISCONNECT,
                       "{\"reply_channel\":\"" CM_RC "\",\"path\":\"/\",\"order\":3,"
                       "\"code\":1000,\"protocol\":7}",
                       &d, err, sizeof err) == 0);
  UNIT_CHECK(d.protocol == CHAN_MSG_PROTOCOL_OLD);
  chan_msg_free(&d);
}

UNIT_TEST(chan_msg_protocol_encoding_rules) {
  char *groups[] = {"jobs-status_changed"};
  chan_msg m = cm_receive_msg(groups);
  size_t len;
  m.protocol = 2; /* no such protocol */
  UNIT_CHECK(chan_msg_encode(&m, &len) == NULL);
  m.protocol = -1;
  UNIT_CHECK(chan_msg_encode(&m, &len) == NULL);
  /* Ignored on a disconnect (and a connect): not written. */
  m.kind = CHAN_MSG_DISCONNECT;
  m.code = 1000;
  m.protocol = CHAN_MSG_PROTOCOL_WSGW2;
  char *json = chan_msg_encode(&m, &len);
  UNIT_CHECK(json && !strstr(json, "protocol"));
  free(json);
  m.kind = CHAN_MSG_CONNECT;
  json = chan_msg_encode(&m, &len);
  UNIT_CHECK(json && !strstr(json, "protocol"));
  free(json);
}

UNIT_TEST(chan_msg_redacted_receive_keeps_the_protocol) {
  const char *json =
      "{\"reply_channel\":\"" CM_RC "\",\"path\":\"/websocket/\",\"order\":1,"
      "\"text\":\"hi\",\"protocol\":\"wsgw.2\",\"session\":{\"user\":7,"
      "\"csrftoken\":\"abc\"},\"groups\":[]}";
  size_t len;
  char *red = chan_msg_redact(CHAN_MSG_RECEIVE, json, strlen(json), &len);
  chan_msg d;
  char err[128];
  UNIT_CHECK(red && strstr(red, "(redacted)"));
  UNIT_CHECK(red && chan_msg_decode(CHAN_MSG_RECEIVE, red, len, &d, err, sizeof err) == 0);
  UNIT_CHECK(d.protocol == CHAN_MSG_PROTOCOL_WSGW2);
  chan_msg_free(&d);
  free(red);
}

/* A small deterministic generator for the garbage loops. */
static uint32_t cm_rand(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  return *s >> 8;
}

UNIT_TEST(chan_msg_garbage_never_crashes_and_decoded_round_trips) {
  static const char *const pieces[] = {
      "{", "}", "[", "]", ",", ":", "\"protocol\"", "\"wsgw.2\"", "\"text\"",
      "\"hi\"", "\"reply_channel\"", "\"" CM_RC "\"", "\"path\"", "\"/\"",
      "\"order\"", "1", "\"recheck\"", "true", "null", "\"groups\"", "\"a-b\"",
      "\"session\"", "{\"user\":7}", "\"bytes\"", "\"AA==\"", "\"\\u0000\"", "\xff",
      "\"code\"", "1000", "-1", "1e999", " "};
  uint32_t seed = 14;
  char buf[512];
  int decoded = 0;
  for (int iter = 0; iter < 20000; iter++) {
    size_t n = 0;
    int parts = 1 + (int)(cm_rand(&seed) % 24);
    if (iter % 2) { /* a valid receive with one more member: often valid */
      const char *k = pieces[cm_rand(&seed) % (sizeof pieces / sizeof *pieces)];
      const char *v = pieces[cm_rand(&seed) % (sizeof pieces / sizeof *pieces)];
      snprintf(buf, sizeof buf, "%s", cm_receive_with(""));
      n = strlen(buf) - 1; /* over the closing brace */
      n += (size_t)snprintf(buf + n, sizeof buf - n, ",%s:%s}", k, v);
      parts = 0;
    }
    for (int i = 0; i < parts; i++) {
      const char *p = pieces[cm_rand(&seed) % (sizeof pieces / sizeof *pieces)];
      size_t pl = strlen(p);
      if (n + pl >= sizeof buf) break;
      memcpy(buf + n, p, pl);
      n += pl;
    }
    if (iter % 10 == 0) /* raw bytes too */
      for (size_t i = 0; i < n; i += 1 + cm_rand(&seed) % 16)
        buf[i] = (char)(cm_rand(&seed) & 0xff);
    chan_msg m, back;
    char err[160];
    chan_msg_kind kind = (chan_msg_kind)(iter % 3);
    if (chan_msg_decode(kind, buf, n, &m, err, sizeof err) != 0) continue;
    decoded++;
    size_t len;
    char *json = chan_msg_encode(&m, &len);
    UNIT_CHECK(json && chan_msg_decode(kind, json, len, &back, err, sizeof err) == 0);
    UNIT_CHECK(json && back.protocol == m.protocol);
    if (json) chan_msg_free(&back);
    free(json);
    chan_msg_free(&m);
  }
  UNIT_CHECK(decoded > 1000); /* the loop reaches the encoder too */
}

UNIT_TEST(chan_msg_redacted_session_over_the_cap_is_replaced) {
  /* Short credential values under 4 KiB whose placeholders pass it. */
  char session[CHAN_SESSION_MAX + 1], json[CHAN_SESSION_MAX + 256];
  size_t o = (size_t)snprintf(session, sizeof session, "{\"user\":7,\"credentials\":{");
  for (int i = 0; o + 16 < CHAN_SESSION_MAX; i++)
    o += (size_t)snprintf(session + o, sizeof session - o, "%s\"c%d\":\"x\"", i ? "," : "", i);
  snprintf(session + o, sizeof session - o, "}}");
  UNIT_CHECK(strlen(session) <= CHAN_SESSION_MAX);
  snprintf(json, sizeof json,
           "{\"reply_channel\":\"" CM_RC "\",\"path\":\"/\",\"order\":3,\"text\":\"hi\","
           "\"session\":%s,\"groups\":[\"a\"]}", session);
  size_t len;
  char *red = chan_msg_redact(CHAN_MSG_RECEIVE, json, strlen(json), &len);
  chan_msg d;
  char err[128];
  UNIT_CHECK(red && chan_msg_decode(CHAN_MSG_RECEIVE, red, len, &d, err, sizeof err) == 0);
  UNIT_CHECK_STR(d.session_json, CHAN_MSG_SESSION_TOO_LARGE);
  UNIT_CHECK(d.order == 3 && d.n_groups == 1 && d.data_len == 2);
  chan_msg_free(&d);
  free(red);
}
