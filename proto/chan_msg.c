/*
 * chan_msg.c - channel messages, gateway -> worker, as JSON (ASGI 1.x keys
 * plus session and groups; docs/PROTOCOL.md).
 *
 * Owns: encoding a chan_msg and decoding one from untrusted text. Must not:
 * do I/O, or trust the text: it comes off the broker, so every key is
 * type-checked and every list capped (chan_names.h) before use.
 *
 * A text payload may hold U+0000 (Autobahn 6.7.1): it crosses whole, as
 * \u0000 on the wire, its length counted in data_len (the marks of
 * chan_json.h). Every other string crosses as a C string, so a U+0000 in
 * one (path, a header, the session, ...) is refused rather than cut.
 */
#include "chan_msg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "b64.h"
#include "chan_json.h"
#include "chan_names.h"
#include "chan_pos.h"

#define CHAN_MSG_PORT_MAX 65535
#define CHAN_MSG_CODE_MIN 1000
#define CHAN_MSG_CODE_MAX 4999

const char *chan_msg_queue(chan_msg_kind kind) {
  switch (kind) {
    case CHAN_MSG_CONNECT: return CHAN_QUEUE_CONNECT;
    case CHAN_MSG_RECEIVE: return CHAN_QUEUE_RECEIVE;
    case CHAN_MSG_DISCONNECT: return CHAN_QUEUE_DISCONNECT;
  }
  return NULL;
}

const char *chan_msg_header(const chan_msg *m, const char *name) {
  if (!m || !name) return NULL;
  for (size_t i = 0; i < m->n_headers; i++) {
    if (strcasecmp(m->headers[i].name, name) == 0) return m->headers[i].value;
  }
  return NULL;
}

void chan_msg_free(chan_msg *m) {
  if (!m) return;
  free(m->reply_channel);
  free(m->path);
  free(m->query_string);
  for (size_t i = 0; i < m->n_headers; i++) {
    free(m->headers[i].name);
    free(m->headers[i].value);
  }
  free(m->headers);
  free(m->data);
  free(m->session_json);
  chan_json_strings_free(m->groups, m->n_groups);
  memset(m, 0, sizeof *m);
}

/* ---- encoding ---- */

/* [host, port], or null when the address is unknown. */
static cJSON *chan_msg__addr_json(const chan_addr *a) {
  if (strnlen(a->host, sizeof a->host) == sizeof a->host) return NULL;
  if (a->host[0] == '\0') return cJSON_CreateNull();
  if (a->port < 0 || a->port > CHAN_MSG_PORT_MAX) return NULL;
  cJSON *pair = cJSON_CreateArray();
  if (!pair) return NULL;
  cJSON *host = cJSON_CreateString(a->host);
  cJSON *port = cJSON_CreateNumber(a->port);
  /* The array takes each item it accepts; delete the ones it did not. */
  int ok_host = host && cJSON_AddItemToArray(pair, host);
  int ok_port = port && cJSON_AddItemToArray(pair, port);
  if (!ok_host || !ok_port) {
    if (!ok_host) cJSON_Delete(host);
    if (!ok_port) cJSON_Delete(port);
    cJSON_Delete(pair);
    return NULL;
  }
  return pair;
}

static cJSON *chan_msg__header_json(const chan_header *h) {
  if (!h->name || !h->value) return NULL;
  const char *pair[2] = {h->name, h->value};
  return cJSON_CreateStringArray(pair, 2);
}

static int chan_msg__encode_headers(cJSON *obj, const chan_msg *m) {
  if (m->n_headers > CHAN_HEADERS_MAX || (m->n_headers > 0 && !m->headers)) {
    return -1;
  }
  cJSON *list = cJSON_CreateArray();
  if (chan_json_add(obj, "headers", list) != 0) return -1;
  for (size_t i = 0; i < m->n_headers; i++) {
    cJSON *pair = chan_msg__header_json(&m->headers[i]);
    if (!pair) return -1;
    if (!cJSON_AddItemToArray(list, pair)) {
      cJSON_Delete(pair);
      return -1;
    }
  }
  return 0;
}

static int chan_msg__encode_connect(cJSON *obj, const chan_msg *m) {
  const char *query = m->query_string ? m->query_string : "";
  if (chan_json_add(obj, "query_string", cJSON_CreateString(query)) != 0 ||
      chan_msg__encode_headers(obj, m) != 0 ||
      chan_json_add(obj, "client", chan_msg__addr_json(&m->client)) != 0 ||
      chan_json_add(obj, "server", chan_msg__addr_json(&m->server)) != 0) {
    return -1;
  }
  return 0;
}

/* "text" (NULs and all, see the top of the file) or "bytes" as base64. */
static int chan_msg__encode_payload(cJSON *obj, const chan_msg *m) {
  if (m->data_len > 0 && !m->data) return -1;
  if (!m->is_binary) {
    return chan_json_add(obj, "text",
                         chan_json_text_create(m->data, m->data_len));
  }
  char *b64 = b64_encode(m->data, m->data_len, NULL);
  if (!b64) return -1;
  int rc = chan_json_add(obj, "bytes", cJSON_CreateString(b64));
  free(b64);
  return rc;
}

/* "protocol", written only for a wsgw.2 connection: an old-protocol
 * receive stays byte for byte what it was. */
static int chan_msg__encode_protocol(cJSON *obj, const chan_msg *m) {
  if (m->protocol == CHAN_MSG_PROTOCOL_OLD) return 0;
  if (m->protocol != CHAN_MSG_PROTOCOL_WSGW2) return -1;
  return chan_json_add(obj, "protocol", cJSON_CreateString(CHAN_POS_PROTOCOL));
}

static int chan_msg__encode_fields(cJSON *obj, const chan_msg *m) {
  if (chan_json_add(obj, "reply_channel",
                    cJSON_CreateString(m->reply_channel)) != 0 ||
      chan_json_add(obj, "path", cJSON_CreateString(m->path)) != 0 ||
      chan_json_add_uint(obj, "order", m->order) != 0) {
    return -1;
  }
  switch (m->kind) {
    case CHAN_MSG_CONNECT:
      return chan_msg__encode_connect(obj, m);
    case CHAN_MSG_RECEIVE:
      if (m->recheck) {
        if (m->data_len || m->is_binary ||
            chan_json_add(obj, "recheck", cJSON_CreateTrue()) != 0)
          return -1;
      } else if (chan_msg__encode_payload(obj, m) != 0) {
        return -1;
      }
      if (chan_msg__encode_protocol(obj, m) != 0) return -1;
      break;
    case CHAN_MSG_DISCONNECT:
      if (m->code < CHAN_MSG_CODE_MIN || m->code > CHAN_MSG_CODE_MAX ||
          chan_json_add(obj, "code", cJSON_CreateNumber(m->code)) != 0) {
        return -1;
      }
      break;
    default:
      return -1;
  }
  if (chan_json_add_session(obj, m->session_json) != 0 ||
      chan_json_add_groups(obj, m->groups, m->n_groups) != 0) {
    return -1;
  }
  return 0;
}

char *chan_msg_encode(const chan_msg *m, size_t *len) {
  if (!m || !m->reply_channel || !m->path) return NULL;
  cJSON *obj = cJSON_CreateObject();
  if (!obj) return NULL;
  char *text = NULL;
  if (chan_msg__encode_fields(obj, m) == 0) {
    text = chan_json_print_marked(obj, len);
  }
  cJSON_Delete(obj);
  return text;
}

/* ---- decoding ---- */

/* One [name, value] pair; on failure h is left empty. */
static int chan_msg__decode_header(const cJSON *pair, chan_header *h) {
  if (!cJSON_IsArray(pair) || cJSON_GetArraySize(pair) != 2) return -1;
  const cJSON *name = pair->child;
  const cJSON *value = name->next;
  if (!cJSON_IsString(name) || !cJSON_IsString(value)) return -1;
  h->name = strdup(name->valuestring);
  h->value = strdup(value->valuestring);
  if (!h->name || !h->value) {
    free(h->name);
    free(h->value);
    h->name = h->value = NULL;
    return -1;
  }
  return 0;
}

static int chan_msg__decode_headers(const cJSON *root, chan_msg *out,
                                   char *err, size_t errlen) {
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "headers");
  if (!list) return 0;
  if (!cJSON_IsArray(list)) {
    return chan_json_fail(err, errlen, "headers must be an array");
  }
  int count = cJSON_GetArraySize(list);
  if (count > CHAN_HEADERS_MAX) {
    return chan_json_fail(err, errlen, "more than %d headers",
                          CHAN_HEADERS_MAX);
  }
  out->headers = calloc((size_t)count + 1, sizeof *out->headers);
  if (!out->headers) return chan_json_fail(err, errlen, "out of memory");
  const cJSON *pair;
  cJSON_ArrayForEach(pair, list) {
    if (chan_msg__decode_header(pair, &out->headers[out->n_headers]) != 0) {
      return chan_json_fail(err, errlen,
                            "each header must be [name, value] strings");
    }
    out->n_headers++; /* counts what chan_msg_free releases */
  }
  return 0;
}

/* "client" or "server": [host, port], null or absent when unknown. */
static int chan_msg__decode_addr(const cJSON *root, const char *key,
                                chan_addr *a, char *err, size_t errlen) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
  if (!item || cJSON_IsNull(item)) return 0;
  const cJSON *host = NULL;
  if (cJSON_IsArray(item) && cJSON_GetArraySize(item) == 2) host = item->child;
  uint64_t port;
  if (!host || !cJSON_IsString(host) ||
      strlen(host->valuestring) >= sizeof a->host ||
      chan_json_uint(host->next, CHAN_MSG_PORT_MAX, &port) != 0) {
    return chan_json_fail(err, errlen, "%s must be [host, port]", key);
  }
  strcpy(a->host, host->valuestring);
  /* An empty host is an unknown address, which the encoder writes as null:
   * its port means nothing either (found by tests/fuzz/fuzz_channel_msg). */
  a->port = a->host[0] ? (int)port : 0;
  return 0;
}

static int chan_msg__decode_connect(const cJSON *root, chan_msg *out,
                                   char *err, size_t errlen) {
  if (chan_json_string(root, "query_string", 0, &out->query_string, err,
                       errlen) != 0) {
    return -1;
  }
  /* Absent means empty (ASGI), so workers need no NULL check. */
  if (!out->query_string && !(out->query_string = strdup(""))) {
    return chan_json_fail(err, errlen, "out of memory");
  }
  if (chan_msg__decode_headers(root, out, err, errlen) != 0 ||
      chan_msg__decode_addr(root, "client", &out->client, err, errlen) != 0 ||
      chan_msg__decode_addr(root, "server", &out->server, err, errlen) != 0) {
    return -1;
  }
  return 0;
}

/* Exactly one of "text" and "bytes" (base64), or "recheck": true alone. */
static int chan_msg__decode_payload(const cJSON *root, chan_msg *out,
                                   char *err, size_t errlen) {
  const cJSON *text = cJSON_GetObjectItemCaseSensitive(root, "text");
  const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(root, "bytes");
  const cJSON *recheck = cJSON_GetObjectItemCaseSensitive(root, "recheck");
  if (recheck) {
    if (!cJSON_IsTrue(recheck))
      return chan_json_fail(err, errlen, "recheck must be true");
    if (text || bytes)
      return chan_json_fail(err, errlen, "a recheck carries no text or bytes");
    out->recheck = 1;
    return 0;
  }
  if ((text != NULL) == (bytes != NULL)) {
    return chan_json_fail(err, errlen, "need exactly one of text and bytes");
  }
  if (text) {
    if (!cJSON_IsString(text)) {
      return chan_json_fail(err, errlen, "text must be a string");
    }
    if (chan_json_text_copy(text, &out->data, &out->data_len) != 0) {
      return chan_json_fail(err, errlen, "out of memory");
    }
    return 0;
  }
  out->is_binary = 1;
  if (!cJSON_IsString(bytes) ||
      b64_decode(bytes->valuestring, strlen(bytes->valuestring), &out->data,
                 &out->data_len) != 0) {
    return chan_json_fail(err, errlen, "bytes must be a base64 string");
  }
  return 0;
}

/* "protocol": a string; CHAN_POS_PROTOCOL is wsgw.2, any other name the
 * old protocol (a newer gateway's protocol this worker does not speak:
 * answering it the old way is what the client would get from an older
 * gateway). Absent: the old protocol. */
static int chan_msg__decode_protocol(const cJSON *root, chan_msg *out,
                                    char *err, size_t errlen) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, "protocol");
  if (!item) return 0;
  if (!cJSON_IsString(item))
    return chan_json_fail(err, errlen, "protocol must be a string");
  if (strcmp(item->valuestring, CHAN_POS_PROTOCOL) == 0)
    out->protocol = CHAN_MSG_PROTOCOL_WSGW2;
  return 0;
}

static int chan_msg__decode_code(const cJSON *root, chan_msg *out, char *err,
                                size_t errlen) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, "code");
  uint64_t code;
  if (!item) return chan_json_fail(err, errlen, "missing code");
  if (chan_json_uint(item, CHAN_MSG_CODE_MAX, &code) != 0 ||
      code < CHAN_MSG_CODE_MIN) {
    return chan_json_fail(err, errlen, "code must be an integer %d..%d",
                          CHAN_MSG_CODE_MIN, CHAN_MSG_CODE_MAX);
  }
  out->code = (int)code;
  return 0;
}

static int chan_msg__decode_fields(const cJSON *root, chan_msg *out, char *err,
                                  size_t errlen) {
  int has_groups;
  if (chan_json_reply_channel(root, &out->reply_channel, err, errlen) != 0 ||
      chan_json_string(root, "path", 1, &out->path, err, errlen) != 0 ||
      chan_json_order(root, &out->order, err, errlen) != 0) {
    return -1;
  }
  /* A connect carries no session or groups (the encoder writes none), so
   * none is read from one either: what decodes, encodes the same
   * (tests/fuzz/fuzz_channel_msg checks it). */
  if (out->kind != CHAN_MSG_CONNECT &&
      (chan_json_session(root, &out->session_json, err, errlen) != 0 ||
       chan_json_groups(root, &has_groups, &out->groups, &out->n_groups, err,
                        errlen) != 0)) {
    return -1;
  }
  switch (out->kind) {
    case CHAN_MSG_CONNECT:
      return chan_msg__decode_connect(root, out, err, errlen);
    case CHAN_MSG_RECEIVE:
      if (chan_msg__decode_payload(root, out, err, errlen) != 0) return -1;
      return chan_msg__decode_protocol(root, out, err, errlen);
    case CHAN_MSG_DISCONNECT:
      return chan_msg__decode_code(root, out, err, errlen);
  }
  return chan_json_fail(err, errlen, "unknown message kind");
}

int chan_msg_decode(chan_msg_kind kind, const char *json, size_t len,
                    chan_msg *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  out->kind = kind;
  if (!chan_msg_queue(kind)) {
    return chan_json_fail(err, errlen, "unknown message kind");
  }
  cJSON *root = chan_json_parse_object(json, len, "message", err, errlen);
  if (!root) return -1;
  int rc = chan_msg__decode_fields(root, out, err, errlen);
  cJSON_Delete(root);
  if (rc != 0) {
    chan_msg_free(out);
    out->kind = kind;
  }
  return rc;
}

/* ---- redaction ---- */

static int chan_msg__redact_header(const char *name) {
  return strcmp(name, "cookie") == 0 || strcmp(name, "authorization") == 0;
}

/* "a=1&b&c=3" -> "a=(redacted)&b&c=(redacted)": names stay (they tell what
 * the client sent), values go (a token may be any of them). */
static char *chan_msg__redact_query(const char *q) {
  size_t n = 1;
  for (const char *p = q; *p; p++) n += *p == '&' ? 1 : 0;
  char *out = malloc(strlen(q) + n * sizeof(CHAN_MSG_REDACTED) + 1);
  if (!out) return NULL;
  char *o = out;
  int in_value = 0;
  for (const char *p = q; *p; p++) {
    if (*p == '&') {
      in_value = 0;
      *o++ = '&';
    } else if (!in_value && *p == '=') {
      in_value = 1;
      o += sprintf(o, "=%s", CHAN_MSG_REDACTED);
    } else if (!in_value) {
      *o++ = *p;
    }
  }
  *o = '\0';
  return out;
}

static int chan_msg__redact(chan_msg *m) {
  for (size_t i = 0; i < m->n_headers; i++) {
    if (!chan_msg__redact_header(m->headers[i].name)) continue;
    char *v = strdup(CHAN_MSG_REDACTED);
    if (!v) return -1;
    free(m->headers[i].value);
    m->headers[i].value = v;
  }
  if (m->query_string && m->query_string[0]) {
    char *q = chan_msg__redact_query(m->query_string);
    if (!q) return -1;
    free(m->query_string);
    m->query_string = q;
  }
  return 0;
}

char *chan_msg_redact_connect(const char *json, size_t len, size_t *out_len) {
  chan_msg m;
  char err[128];
  if (chan_msg_decode(CHAN_MSG_CONNECT, json, len, &m, err, sizeof err) != 0) {
    char note[160];
    int n = snprintf(note, sizeof note,
                     "{\"redacted\": \"not a websocket.connect message\", \"bytes\": %zu}", len);
    *out_len = (size_t)n;
    return strdup(note);
  }
  char *out = chan_msg__redact(&m) == 0 ? chan_msg_encode(&m, out_len) : NULL;
  chan_msg_free(&m);
  return out;
}


/* The session's credentials (kept when the application decides
 * subscriptions) and its csrftoken: their values become CHAN_MSG_REDACTED.
 * 1 when something was, 0 when there was nothing to redact, -1 when out of
 * memory. */
static int chan_msg__redact_session(chan_msg *m) {
  if (!m->session_json) return 0;
  cJSON *s = cJSON_Parse(m->session_json);
  if (!s) return 0; /* decoded, so it parses; nothing to do otherwise */
  cJSON *creds = cJSON_GetObjectItemCaseSensitive(s, "credentials");
  cJSON *item;
  int changed = 0;
  cJSON_ArrayForEach(item, creds) {
    if (!cJSON_IsObject(creds)) break;
    cJSON *v = cJSON_CreateString(CHAN_MSG_REDACTED);
    /* The replacement keeps the member's name only if it carries it. */
    if (v) v->string = strdup(item->string);
    if (!v || !v->string || !cJSON_ReplaceItemViaPointer(creds, item, v)) {
      cJSON_Delete(v);
      cJSON_Delete(s);
      return -1;
    }
    item = v;
    changed = 1;
  }
  if (cJSON_GetObjectItemCaseSensitive(s, "csrftoken")) {
    cJSON *v = cJSON_CreateString(CHAN_MSG_REDACTED);
    if (!v || !cJSON_ReplaceItemInObjectCaseSensitive(s, "csrftoken", v)) {
      cJSON_Delete(s);
      return -1;
    }
    changed = 1;
  }
  if (!changed) {
    cJSON_Delete(s);
    return 0;
  }
  char *text = chan_json_print_exact(s);
  cJSON_Delete(s);
  if (!text) return -1;
  /* The placeholder is longer than a short value: a session just under the
   * cap may grow past it, and the copy would not encode (found by
   * tests/fuzz/fuzz_channel_msg). Then none of it is kept. */
  if (strlen(text) > CHAN_SESSION_MAX) {
    free(text);
    if (!(text = strdup(CHAN_MSG_SESSION_TOO_LARGE))) return -1;
  }
  free(m->session_json);
  m->session_json = text;
  return 1;
}

char *chan_msg_redact(chan_msg_kind kind, const char *json, size_t len,
                      size_t *out_len) {
  if (kind == CHAN_MSG_CONNECT) return chan_msg_redact_connect(json, len, out_len);
  chan_msg m;
  char err[128];
  if (chan_msg_decode(kind, json, len, &m, err, sizeof err) != 0) {
    char note[160];
    int n = snprintf(note, sizeof note,
                     "{\"redacted\": \"not a %s message\", \"bytes\": %zu}",
                     chan_msg_queue(kind) ? chan_msg_queue(kind) : "channel",
                     len);
    *out_len = (size_t)n;
    return strdup(note);
  }
  /* Nothing to redact: the message as it came, byte for byte. */
  int rc = chan_msg__redact_session(&m);
  char *out = NULL;
  if (rc == 1) {
    out = chan_msg_encode(&m, out_len);
  } else if (rc == 0 && (out = malloc(len + 1))) {
    memcpy(out, json, len);
    out[len] = '\0';
    *out_len = len;
  }
  chan_msg_free(&m);
  return out;
}
