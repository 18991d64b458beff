/*
 * chan_reply.c - replies, worker -> gateway, as JSON (ASGI keys accept,
 * text, bytes, close, plus session, groups, order; docs/PROTOCOL.md).
 * The reply-channel name is chan_reply_channel's, a layer below.
 *
 * Owns: encoding a chan_reply and decoding one from untrusted text. Must
 * not: do I/O, or pass on anything the gateway could not act on safely (an
 * unsendable close code, an oversize session, an invalid group name, a
 * position that does not parse or names a group outside the reply's
 * groups): such a reply is refused whole.
 *
 * Texts cross whole, U+0000 included, as \u0000 on the wire with their
 * length counted (the marks of chan_json.h); a U+0000 anywhere else is
 * refused (see chan_msg.c).
 */
#include "chan_reply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "chan_group.h"
#include "chan_json.h"
#include "chan_names.h"
#include "chan_pos.h"
#include "chan_reply_channel.h"

/* A reply carries its few texts, one per refused entry plus the answer; the
 * cap bounds the array the gateway allocates for a hostile one. */
#define CHAN_REPLY_TEXTS_MAX 10000
#define CHAN_REPLY_CLOSE_NORMAL 1000
#define CHAN_REPLY_TAG_MAX 0xffffffffffffull /* 48 bits, chan_pos.h */

/* ---- close codes ---- */

/* Codes a close frame may carry (RFC 6455 7.4): not 1004-1006 or 1015,
 * which are reserved or must never be sent, nor the unassigned 1016-2999,
 * which clients treat as a protocol error. */
static int chan_reply__close_valid(uint64_t code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

void chan_reply_free(chan_reply *r) {
  if (!r) return;
  free(r->reply_channel);
  for (size_t i = 0; i < r->n_texts; i++) free(r->texts[i].data);
  free(r->texts);
  free(r->bytes);
  free(r->session_json);
  chan_json_strings_free(r->groups, r->n_groups);
  free(r->positions);
  memset(r, 0, sizeof *r);
  r->accept = -1;
}

/* ---- positions ---- */

static int chan_reply__cmp_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* 1 when each name of pos[0..n) is one of groups[0..n_groups) and none
 * comes twice, 0 when not, -1 when out of memory. Sorted copies of both
 * lists, so a hostile reply of CHAN_GROUPS_MAX of each costs two sorts of
 * a thousand pointers, not a million comparisons. */
static int chan_reply__positions_fit(const chan_reply_pos *pos, size_t n,
                                     char *const *groups, size_t n_groups) {
  const char **p = malloc((n + 1) * sizeof *p);
  const char **g = malloc((n_groups + 1) * sizeof *g);
  int ok = -1;
  if (p && g) {
    for (size_t i = 0; i < n; i++) p[i] = pos[i].group;
    for (size_t i = 0; i < n_groups; i++) g[i] = groups[i];
    qsort(p, n, sizeof *p, chan_reply__cmp_name);
    qsort(g, n_groups, sizeof *g, chan_reply__cmp_name);
    ok = 1;
    for (size_t i = 0; i < n && ok; i++)
      ok = (i == 0 || strcmp(p[i - 1], p[i]) != 0) &&
           bsearch(&p[i], g, n_groups, sizeof *g, chan_reply__cmp_name);
  }
  free(p);
  free(g);
  return ok;
}

/* "positions": {"G": "P", ...}, written when has_positions (even {}); the
 * decoder's rules, so that whatever one side writes the other reads. */
static int chan_reply__encode_positions(cJSON *obj, const chan_reply *r) {
  if (!r->has_positions) return 0;
  if (!r->has_groups || r->n_positions > CHAN_GROUPS_MAX ||
      (r->n_positions > 0 && !r->positions)) {
    return -1;
  }
  for (size_t i = 0; i < r->n_positions; i++) {
    const chan_reply_pos *p = &r->positions[i];
    size_t len = strnlen(p->group, sizeof p->group);
    if (len == sizeof p->group || !chan_group_name_valid(p->group, len) ||
        p->offset > (uint64_t)INT64_MAX || p->tag > CHAN_REPLY_TAG_MAX) {
      return -1;
    }
  }
  if (chan_reply__positions_fit(r->positions, r->n_positions, r->groups,
                                r->n_groups) != 1) {
    return -1;
  }
  cJSON *map = cJSON_CreateObject();
  if (chan_json_add(obj, "positions", map) != 0) return -1;
  for (size_t i = 0; i < r->n_positions; i++) {
    char text[CHAN_POS_MAX];
    chan_pos_format(text, r->positions[i].offset, r->positions[i].tag);
    if (chan_json_add(map, r->positions[i].group, cJSON_CreateString(text)) != 0)
      return -1;
  }
  return 0;
}

static int chan_reply__cmp_pos(const void *a, const void *b) {
  return strcmp(((const chan_reply_pos *)a)->group,
                ((const chan_reply_pos *)b)->group);
}

/* One "G": "P" entry into p; 0, or -1 when the name or the position is
 * invalid. */
static int chan_reply__decode_pos(const cJSON *item, chan_reply_pos *p) {
  size_t len = strlen(item->string);
  if (!chan_group_name_valid(item->string, len) || !cJSON_IsString(item) ||
      chan_pos_parse(item->valuestring, strlen(item->valuestring), &p->offset,
                     &p->tag) != 0) {
    return -1;
  }
  memcpy(p->group, item->string, len + 1); /* valid: len <= the name max */
  return 0;
}

/* "positions": an object of at most CHAN_GROUPS_MAX valid entries, each a
 * group of "groups" (decoded before), each once; sorted for the gateway. */
static int chan_reply__decode_positions(const cJSON *root, chan_reply *out,
                                       char *err, size_t errlen) {
  const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "positions");
  if (!map) return 0;
  if (!cJSON_IsObject(map)) {
    return chan_json_fail(err, errlen, "positions must be an object");
  }
  int count = cJSON_GetArraySize(map);
  if (count > CHAN_GROUPS_MAX) {
    return chan_json_fail(err, errlen, "more than %d positions",
                          CHAN_GROUPS_MAX);
  }
  out->positions = calloc((size_t)count + 1, sizeof *out->positions);
  if (!out->positions) return chan_json_fail(err, errlen, "out of memory");
  out->has_positions = 1;
  const cJSON *item;
  cJSON_ArrayForEach(item, map) {
    if (chan_reply__decode_pos(item, &out->positions[out->n_positions]) != 0) {
      return chan_json_fail(err, errlen,
                            "invalid group name or position in positions");
    }
    out->n_positions++;
  }
  if (!out->has_groups) {
    return chan_json_fail(err, errlen, "positions without groups");
  }
  qsort(out->positions, out->n_positions, sizeof *out->positions,
        chan_reply__cmp_pos);
  int fit = chan_reply__positions_fit(out->positions, out->n_positions,
                                      out->groups, out->n_groups);
  if (fit < 0) return chan_json_fail(err, errlen, "out of memory");
  if (fit == 0) {
    return chan_json_fail(err, errlen,
                          "positions must name groups of groups, each once");
  }
  return 0;
}

/* ---- encoding ---- */

static int chan_reply__encode_texts(cJSON *obj, const chan_reply *r) {
  if (r->n_texts == 0) return 0;
  if (r->n_texts > CHAN_REPLY_TEXTS_MAX || !r->texts) return -1;
  cJSON *list = cJSON_CreateArray();
  if (chan_json_add(obj, "text", list) != 0) return -1;
  for (size_t i = 0; i < r->n_texts; i++) {
    cJSON *item = chan_json_text_create(r->texts[i].data, r->texts[i].len);
    if (!item) return -1;
    if (!cJSON_AddItemToArray(list, item)) {
      cJSON_Delete(item);
      return -1;
    }
  }
  return 0;
}

static int chan_reply__encode_bytes(cJSON *obj, const chan_reply *r) {
  if (!r->has_bytes) return 0;
  if (r->bytes_len > 0 && !r->bytes) return -1;
  char *text = b64_encode(r->bytes, r->bytes_len, NULL);
  if (!text) return -1;
  int rc = chan_json_add(obj, "bytes", cJSON_CreateString(text));
  free(text);
  return rc;
}

static int chan_reply__encode_fields(cJSON *obj, const chan_reply *r) {
  if (r->accept < -1 || r->accept > 1) return -1;
  if (r->close_code != 0 && !chan_reply__close_valid((uint64_t)r->close_code)) {
    return -1;
  }
  if (chan_json_add(obj, "reply_channel",
                    cJSON_CreateString(r->reply_channel)) != 0 ||
      chan_json_add_uint(obj, "order", r->order) != 0) {
    return -1;
  }
  if (r->accept >= 0 &&
      chan_json_add(obj, "accept", cJSON_CreateBool(r->accept)) != 0) {
    return -1;
  }
  if (r->status != 0 && r->status != 403 && r->status != 503) return -1;
  if (r->status != 0 && chan_json_add_uint(obj, "status", (uint64_t)r->status) != 0)
    return -1;
  if (chan_reply__encode_texts(obj, r) != 0 ||
      chan_reply__encode_bytes(obj, r) != 0) {
    return -1;
  }
  if (r->close_code != 0 &&
      chan_json_add(obj, "close", cJSON_CreateNumber(r->close_code)) != 0) {
    return -1;
  }
  if (chan_json_add_session(obj, r->session_json) != 0) return -1;
  if (r->has_groups && chan_json_add_groups(obj, r->groups, r->n_groups) != 0) {
    return -1;
  }
  if (chan_reply__encode_positions(obj, r) != 0) return -1;
  if (r->user && chan_json_add_uint(obj, "user", r->user) != 0) return -1;
  if (r->expires && chan_json_add_uint(obj, "expires", r->expires) != 0)
    return -1;
  if (r->recheck && chan_json_add_uint(obj, "recheck", r->recheck) != 0)
    return -1;
  return 0;
}

char *chan_reply_encode(const chan_reply *r, size_t *len) {
  if (!r || !r->reply_channel) return NULL;
  char queue[CHAN_QUEUE_NAME_MAX + 1];
  uint64_t conn_id;
  if (chan_reply_channel_parse(r->reply_channel, queue, sizeof queue,
                               &conn_id) != 0) {
    return NULL;
  }
  cJSON *obj = cJSON_CreateObject();
  if (!obj) return NULL;
  char *text = NULL;
  if (chan_reply__encode_fields(obj, r) == 0) {
    text = chan_json_print_marked(obj, len);
  }
  cJSON_Delete(obj);
  return text;
}

/* ---- decoding ---- */

static int chan_reply__decode_accept(const cJSON *root, chan_reply *out,
                                    char *err, size_t errlen) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, "accept");
  if (!item) return 0;
  if (!cJSON_IsBool(item)) {
    return chan_json_fail(err, errlen, "accept must be true or false");
  }
  out->accept = cJSON_IsTrue(item) ? 1 : 0;
  return 0;
}

/* "text": one string, or an array of strings (sent in order). */
static int chan_reply__decode_texts(const cJSON *root, chan_reply *out,
                                   char *err, size_t errlen) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, "text");
  if (!item) return 0;
  const cJSON *t;
  int count;
  if (cJSON_IsString(item)) {
    t = item;
    count = 1;
  } else if (cJSON_IsArray(item)) {
    t = item->child;
    count = cJSON_GetArraySize(item);
  } else {
    return chan_json_fail(err, errlen,
                          "text must be a string or an array of strings");
  }
  if (count > CHAN_REPLY_TEXTS_MAX) {
    return chan_json_fail(err, errlen, "more than %d texts",
                          CHAN_REPLY_TEXTS_MAX);
  }
  out->texts = calloc((size_t)count + 1, sizeof *out->texts);
  if (!out->texts) return chan_json_fail(err, errlen, "out of memory");
  /* Counted, not walked to the end: a lone string's siblings are other
   * keys of the reply. */
  for (int i = 0; i < count; i++, t = t->next) {
    if (!cJSON_IsString(t)) {
      return chan_json_fail(err, errlen, "text entries must be strings");
    }
    chan_text *dst = &out->texts[out->n_texts];
    if (chan_json_text_copy(t, &dst->data, &dst->len) != 0) {
      return chan_json_fail(err, errlen, "out of memory");
    }
    out->n_texts++; /* counts what chan_reply_free releases */
  }
  return 0;
}

static int chan_reply__decode_bytes(const cJSON *root, chan_reply *out,
                                   char *err, size_t errlen) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, "bytes");
  if (!item) return 0;
  if (!cJSON_IsString(item) ||
      b64_decode(item->valuestring, strlen(item->valuestring), &out->bytes,
                 &out->bytes_len) != 0) {
    return chan_json_fail(err, errlen, "bytes must be a base64 string");
  }
  out->has_bytes = 1;
  return 0;
}

/* "close": true (1000), false (no close), or a code a close frame may carry. */
static int chan_reply__decode_close(const cJSON *root, chan_reply *out,
                                   char *err, size_t errlen) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, "close");
  if (!item) return 0;
  if (cJSON_IsBool(item)) {
    out->close_code = cJSON_IsTrue(item) ? CHAN_REPLY_CLOSE_NORMAL : 0;
    return 0;
  }
  uint64_t code;
  if (chan_json_uint(item, CHAN_JSON_UINT_MAX, &code) != 0 ||
      !chan_reply__close_valid(code)) {
    return chan_json_fail(err, errlen,
                          "close must be true, false or a valid close code");
  }
  out->close_code = (int)code;
  return 0;
}

/* "status": 403 or 503, the HTTP status of a refusal. */
static int chan_reply__decode_status(const cJSON *root, chan_reply *out,
                                    char *err, size_t errlen) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, "status");
  uint64_t v;
  if (!item) return 0;
  if (chan_json_uint(item, 999, &v) != 0 || (v != 403 && v != 503))
    return chan_json_fail(err, errlen, "status must be 403 or 503");
  out->status = (int)v;
  return 0;
}

/* "user" and "expires": integers from 1 to 2^53-1 (0 or absent: none). */
static int chan_reply__decode_id(const cJSON *root, const char *key,
                                 uint64_t *out, char *err, size_t errlen) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
  if (!item) return 0;
  if (chan_json_uint(item, CHAN_JSON_UINT_MAX, out) != 0) {
    return chan_json_fail(err, errlen, "%s must be an integer from 0 to 2^53-1",
                          key);
  }
  return 0;
}

static int chan_reply__decode_fields(const cJSON *root, chan_reply *out,
                                    char *err, size_t errlen) {
  if (chan_reply__decode_status(root, out, err, errlen) != 0 ||
chan_json_reply_channel(root, &out->reply_channel, err, errlen) != 0 ||
      chan_json_order(root, &out->order, err, errlen) != 0 ||
      chan_reply__decode_accept(root, out, err, errlen) != 0 ||
      chan_reply__decode_texts(root, out, err, errlen) != 0 ||
      chan_reply__decode_bytes(root, out, err, errlen) != 0 ||
      chan_reply__decode_close(root, out, err, errlen) != 0 ||
      chan_json_session(root, &out->session_json, err, errlen) != 0 ||
      chan_json_groups(root, &out->has_groups, &out->groups, &out->n_groups,
                       err, errlen) != 0 ||
      chan_reply__decode_positions(root, out, err, errlen) != 0 ||
      chan_reply__decode_id(root, "user", &out->user, err, errlen) != 0 ||
      chan_reply__decode_id(root, "expires", &out->expires, err, errlen) != 0 ||
      chan_reply__decode_id(root, "recheck", &out->recheck, err, errlen) != 0) {
    return -1;
  }
  return 0;
}

int chan_reply_decode(const char *json, size_t len, chan_reply *out, char *err,
                      size_t errlen) {
  memset(out, 0, sizeof *out);
  out->accept = -1;
  cJSON *root = chan_json_parse_object(json, len, "reply", err, errlen);
  if (!root) return -1;
  int rc = chan_reply__decode_fields(root, out, err, errlen);
  cJSON_Delete(root);
  if (rc != 0) chan_reply_free(out);
  return rc;
}
