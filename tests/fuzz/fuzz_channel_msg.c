/*
 * fuzz_channel_msg.c - libFuzzer target: chan_msg_decode, the worker's
 * reading of websocket.connect / .receive / .disconnect off the broker.
 *
 * Input: byte 0 picks the kind (% 3); the rest is the JSON text. Whatever
 * decodes must encode again and decode to the same message (one rule on
 * both sides of the wire). A connect message's dead-letter copy
 * (chan_msg_redact_connect) decodes too, with the same headers and
 * nothing left of a credential's value; a receive's or disconnect's
 * (chan_msg_redact) decodes too, with the same order, payload and groups,
 * and its session's "credentials" values and "csrftoken" redacted.
 */
#include <string.h>

#include <cjson/cJSON.h>

#include "chan_msg.h"
#include "fuzz.h"

static void check_session_redacted(const chan_msg *m, const char *json, size_t len) {
  size_t rlen;
  char *r = chan_msg_redact(m->kind, json, len, &rlen);
  FUZZ_CHECK(r != NULL && strlen(r) == rlen);
  chan_msg red;
  char err[160];
  FUZZ_CHECK(chan_msg_decode(m->kind, r, rlen, &red, err, sizeof(err)) == 0);
  FUZZ_CHECK(red.order == m->order && red.n_groups == m->n_groups &&
             red.data_len == m->data_len && red.code == m->code &&
             red.protocol == m->protocol);
  cJSON *s = red.session_json ? cJSON_Parse(red.session_json) : NULL;
  FUZZ_CHECK(!m->session_json || s != NULL);
  const cJSON *creds = cJSON_GetObjectItemCaseSensitive(s, "credentials"), *v;
  if (cJSON_IsObject(creds))
    cJSON_ArrayForEach(v, creds)
      FUZZ_CHECK(cJSON_IsString(v) && strcmp(v->valuestring, CHAN_MSG_REDACTED) == 0);
  const cJSON *csrf = cJSON_GetObjectItemCaseSensitive(s, "csrftoken");
  FUZZ_CHECK(!csrf || (cJSON_IsString(csrf) &&
                       strcmp(csrf->valuestring, CHAN_MSG_REDACTED) == 0));
  cJSON_Delete(s);
  chan_msg_free(&red);
  free(r);
}

static void check_redacted(const chan_msg *m, const char *json, size_t len) {
  size_t rlen;
  char *r = chan_msg_redact_connect(json, len, &rlen);
  FUZZ_CHECK(r != NULL && strlen(r) == rlen);
  chan_msg red;
  char err[160];
  FUZZ_CHECK(chan_msg_decode(CHAN_MSG_CONNECT, r, rlen, &red, err, sizeof(err)) == 0);
  FUZZ_CHECK(red.n_headers == m->n_headers && strcmp(red.path, m->path) == 0);
  for (size_t i = 0; i < red.n_headers; i++) {
    int secret = strcmp(red.headers[i].name, "cookie") == 0 ||
                 strcmp(red.headers[i].name, "authorization") == 0;
    FUZZ_CHECK(!secret || strcmp(red.headers[i].value, CHAN_MSG_REDACTED) == 0);
  }
  /* Every '=' of the query is followed by the placeholder and nothing of
   * the value it replaced. */
  for (const char *q = strchr(red.query_string, '='); q; q = strchr(q + 1, '='))
    FUZZ_CHECK(strncmp(q + 1, CHAN_MSG_REDACTED, strlen(CHAN_MSG_REDACTED)) == 0 &&
               (q[1 + strlen(CHAN_MSG_REDACTED)] == '\0' ||
                q[1 + strlen(CHAN_MSG_REDACTED)] == '&'));
  chan_msg_free(&red);
  free(r);
}

static int same_str(const char *a, const char *b) {
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_same(const chan_msg *a, const chan_msg *b) {
  FUZZ_CHECK(a->kind == b->kind);
  FUZZ_CHECK(strcmp(a->reply_channel, b->reply_channel) == 0);
  FUZZ_CHECK(strcmp(a->path, b->path) == 0);
  FUZZ_CHECK(a->order == b->order);
  FUZZ_CHECK(same_str(a->query_string, b->query_string));
  FUZZ_CHECK(a->n_headers == b->n_headers);
  for (size_t i = 0; i < a->n_headers; i++)
    FUZZ_CHECK(strcmp(a->headers[i].name, b->headers[i].name) == 0 &&
               strcmp(a->headers[i].value, b->headers[i].value) == 0);
  FUZZ_CHECK(strcmp(a->client.host, b->client.host) == 0 &&
             a->client.port == b->client.port);
  FUZZ_CHECK(strcmp(a->server.host, b->server.host) == 0 &&
             a->server.port == b->server.port);
  FUZZ_CHECK(a->is_binary == b->is_binary && a->data_len == b->data_len &&
             a->recheck == b->recheck && a->protocol == b->protocol);
  if (a->data_len) FUZZ_CHECK(memcmp(a->data, b->data, a->data_len) == 0);
  FUZZ_CHECK(a->code == b->code);
  FUZZ_CHECK(same_str(a->session_json, b->session_json));
  FUZZ_CHECK(a->n_groups == b->n_groups);
  for (size_t i = 0; i < a->n_groups; i++)
    FUZZ_CHECK(strcmp(a->groups[i], b->groups[i]) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const chan_msg_kind kind = (chan_msg_kind)(data[0] % 3);
  chan_msg m, back;
  char err[160];
  if (chan_msg_decode(kind, (const char *)data + 1, size - 1, &m, err,
                      sizeof(err)) != 0) {
    FUZZ_CHECK(m.reply_channel == NULL && m.headers == NULL && m.data == NULL);
    return 0;
  }
  /* What workers rely on. */
  FUZZ_CHECK(m.reply_channel && m.path);
  if (kind == CHAN_MSG_CONNECT) FUZZ_CHECK(m.query_string != NULL);
  if (kind == CHAN_MSG_RECEIVE) FUZZ_CHECK(m.data_len == 0 || m.data != NULL);
  if (m.recheck) FUZZ_CHECK(kind == CHAN_MSG_RECEIVE && !m.data_len && !m.is_binary);
  FUZZ_CHECK(m.protocol == CHAN_MSG_PROTOCOL_OLD ||
             (kind == CHAN_MSG_RECEIVE && m.protocol == CHAN_MSG_PROTOCOL_WSGW2));
  if (kind == CHAN_MSG_DISCONNECT) FUZZ_CHECK(m.code >= 1000 && m.code <= 4999);
  for (size_t i = 0; i < m.n_headers; i++)
    FUZZ_CHECK(m.headers[i].name && m.headers[i].value);

  size_t len;
  char *json = chan_msg_encode(&m, &len);
  FUZZ_CHECK(json != NULL);
  FUZZ_CHECK(chan_msg_decode(kind, json, len, &back, err, sizeof(err)) == 0);
  check_same(&m, &back);
  chan_msg_free(&back);
  if (kind == CHAN_MSG_CONNECT) check_redacted(&m, json, len);
  else check_session_redacted(&m, json, len);
  free(json);
  chan_msg_free(&m);
  return 0;
}
