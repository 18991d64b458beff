/*
 * chan_json.c - JSON pieces shared by channel messages and replies.
 *
 * Owns: strict parsing of untrusted text and the rules for reply_channel,
 * order, session and groups. Must not: keep state, or trust any input
 * (messages come off the broker and are fuzzed).
 */
#include "chan_json.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chan_group.h"
#include "chan_names.h"
#include "chan_reply_channel.h"

cJSON *chan_json_parse(const char *json, size_t len) {
  if (!json || len == SIZE_MAX) return NULL;
  /* A NUL-terminated copy: cJSON may read one byte past a counted buffer,
   * and only with the terminator does it refuse trailing data. */
  char *copy = malloc(len + 1);
  if (!copy) return NULL;
  memcpy(copy, json, len);
  copy[len] = '\0';
  cJSON *root = cJSON_ParseWithLengthOpts(copy, len + 1, NULL, 1);
  free(copy);
  return root;
}

/* ---- U+0000 in texts (chan_json.h) ---- */

/* A NUL-terminated copy of json[0..len) with each \u0000 escape as one mark
 * byte; *n gets its length. Every other escape is copied whole, so the
 * second backslash of an escaped one never starts an escape: "\\u0000" is
 * a backslash and five characters, as JSON means it. Outside strings a
 * backslash or a mark is invalid JSON either way, so no string tracking is
 * needed. */
static char *chan_json__mark_nuls(const char *json, size_t len, size_t *n) {
  char *copy = malloc(len + 1);
  if (!copy) return NULL;
  size_t o = 0;
  for (size_t i = 0; i < len;) {
    if (len - i >= 6 && memcmp(json + i, "\\u0000", 6) == 0) {
      copy[o++] = (char)CHAN_JSON_NUL_MARK;
      i += 6;
      continue;
    }
    size_t step = json[i] == '\\' && i + 1 < len ? 2 : 1;
    memcpy(copy + o, json + i, step);
    o += step;
    i += step;
  }
  copy[o] = '\0';
  *n = o;
  return copy;
}

cJSON *chan_json_parse_marked(const char *json, size_t len) {
  if (!json || len == SIZE_MAX) return NULL;
  if (memchr(json, CHAN_JSON_NUL_MARK, len)) return NULL;
  size_t n;
  char *copy = chan_json__mark_nuls(json, len, &n);
  if (!copy) return NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(copy, n + 1, NULL, 1);
  free(copy);
  return root;
}

static int chan_json__has_mark(const char *s) {
  return s && memchr(s, CHAN_JSON_NUL_MARK, strlen(s)) != NULL;
}

/* 1 when item's key, its string (raw text included) or anything under it
 * holds a mark. Depth is bounded by cJSON's nesting limit on parse. */
static int chan_json__item_marked(const cJSON *item) {
  if (chan_json__has_mark(item->string)) return 1;
  if ((cJSON_IsString(item) || cJSON_IsRaw(item)) &&
      chan_json__has_mark(item->valuestring)) {
    return 1;
  }
  for (const cJSON *c = item->child; c; c = c->next) {
    if (chan_json__item_marked(c)) return 1;
  }
  return 0;
}

int chan_json_marked_outside_text(const cJSON *root) {
  if (!root) return 0;
  if (!cJSON_IsObject(root)) return chan_json__item_marked(root);
  for (const cJSON *c = root->child; c; c = c->next) {
    /* Every "text" member is skipped: decoders read the first and ignore
     * duplicates, which are never written back. */
    if (c->string && strcmp(c->string, "text") == 0) continue;
    if (chan_json__item_marked(c)) return 1;
  }
  return 0;
}

cJSON *chan_json_parse_object(const char *json, size_t len, const char *what, char *err,
                              size_t errlen) {
  cJSON *root = chan_json_parse_marked(json, len);
  if (!root) {
    chan_json_fail(err, errlen, "invalid JSON");
    return NULL;
  }
  if (!cJSON_IsObject(root)) {
    chan_json_fail(err, errlen, "%s must be a JSON object", what);
  } else if (chan_json_marked_outside_text(root)) {
    chan_json_fail(err, errlen, "U+0000 outside text");
  } else {
    return root;
  }
  cJSON_Delete(root);
  return NULL;
}

cJSON *chan_json_text_create(const char *data, size_t len) {
  if (len > 0 && !data) return NULL;
  if (len > 0 && memchr(data, CHAN_JSON_NUL_MARK, len)) return NULL;
  char *s = malloc(len + 1);
  if (!s) return NULL;
  for (size_t i = 0; i < len; i++) {
    s[i] = data[i] == '\0' ? (char)CHAN_JSON_NUL_MARK : data[i];
  }
  s[len] = '\0';
  cJSON *item = cJSON_CreateString(s);
  free(s);
  return item;
}

int chan_json_text_copy(const cJSON *item, char **data, size_t *len) {
  const char *s = item->valuestring;
  size_t n = strlen(s);
  char *d = malloc(n + 1);
  if (!d) return -1;
  for (size_t i = 0; i < n; i++) {
    d[i] = (unsigned char)s[i] == CHAN_JSON_NUL_MARK ? '\0' : s[i];
  }
  d[n] = '\0';
  *data = d;
  *len = n;
  return 0;
}

/* text (cJSON's output, freed here) with each mark as the escape \u0000;
 * *len gets the new length. cJSON copies bytes >= 0x20 other than '"' and
 * '\\' into its output as they are, so each mark arrives there unchanged. */
static char *chan_json__unmark(char *text, size_t *len) {
  size_t n = strlen(text), marks = 0;
  for (size_t i = 0; i < n; i++) {
    marks += (unsigned char)text[i] == CHAN_JSON_NUL_MARK;
  }
  *len = n;
  if (marks == 0) return text;
  /* Each mark grows by five bytes. */
  char *out = marks <= (SIZE_MAX - n - 1) / 5 ? malloc(n + 5 * marks + 1)
                                              : NULL;
  if (!out) {
    free(text);
    return NULL;
  }
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if ((unsigned char)text[i] == CHAN_JSON_NUL_MARK) {
      memcpy(out + o, "\\u0000", 6);
      o += 6;
    } else {
      out[o++] = text[i];
    }
  }
  out[o] = '\0';
  *len = o;
  free(text);
  return out;
}

int chan_json_fail(char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}

int chan_json_uint(const cJSON *item, uint64_t max, uint64_t *out) {
  if (!cJSON_IsNumber(item)) return -1;
  double d = item->valuedouble;
  /* Written so that NaN fails too. */
  if (!(d >= 0 && d <= (double)max)) return -1;
  uint64_t v = (uint64_t)d;
  if ((double)v != d) return -1;
  *out = v;
  return 0;
}

int chan_json_string(const cJSON *obj, const char *key, int required,
                     char **out, char *err, size_t errlen) {
  *out = NULL;
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!item) {
    return required ? chan_json_fail(err, errlen, "missing %s", key) : 0;
  }
  if (!cJSON_IsString(item)) {
    return chan_json_fail(err, errlen, "%s must be a string", key);
  }
  *out = strdup(item->valuestring);
  return *out ? 0 : chan_json_fail(err, errlen, "out of memory");
}

int chan_json_reply_channel(const cJSON *obj, char **out, char *err,
                            size_t errlen) {
  if (chan_json_string(obj, "reply_channel", 1, out, err, errlen) != 0) {
    return -1;
  }
  char queue[CHAN_QUEUE_NAME_MAX + 1];
  uint64_t conn_id;
  if (chan_reply_channel_parse(*out, queue, sizeof queue, &conn_id) != 0) {
    free(*out);
    *out = NULL;
    return chan_json_fail(err, errlen, "invalid reply_channel");
  }
  return 0;
}

int chan_json_order(const cJSON *obj, uint64_t *out, char *err,
                    size_t errlen) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, "order");
  if (!item) return chan_json_fail(err, errlen, "missing order");
  if (chan_json_uint(item, CHAN_JSON_UINT_MAX, out) != 0) {
    return chan_json_fail(err, errlen, "order must be an integer >= 0");
  }
  return 0;
}

int chan_json_exact_numbers(cJSON *item) {
  /* Depth is bounded by cJSON's nesting limit on parse. */
  for (; item; item = item->next) {
    if (cJSON_IsNumber(item)) {
      char digits[32];
      double d = item->valuedouble;
      if (!isfinite(d))
        snprintf(digits, sizeof digits, "null");
      else if (d == floor(d) && fabs(d) <= 9007199254740992.0)
        snprintf(digits, sizeof digits, "%.0f", d);
      else
        snprintf(digits, sizeof digits, "%.17g", d);
      char *raw = strdup(digits);
      if (!raw) return -1;
      item->type = cJSON_Raw | (item->type & cJSON_StringIsConst);
      item->valuestring = raw;
    } else if (item->child && chan_json_exact_numbers(item->child) != 0) {
      return -1;
    }
  }
  return 0;
}

char *chan_json_print_exact(const cJSON *item) {
  cJSON *copy = cJSON_Duplicate(item, 1);
  if (!copy) return NULL;
  /* The copy is a root: its siblings are not the item's. */
  char *text = chan_json_exact_numbers(copy) == 0
                   ? cJSON_PrintUnformatted(copy)
                   : NULL;
  cJSON_Delete(copy);
  return text;
}

/* The compact text of a session object, checked against the cap. Numbers
 * are printed exactly (chan_json_print_exact): the session carries the
 * user's id, which the gateway hands back with every message. */
static char *chan_json__session_text(const cJSON *session, char *err,
                                    size_t errlen) {
  if (!cJSON_IsObject(session)) {
    chan_json_fail(err, errlen, "session must be an object");
    return NULL;
  }
  char *text = chan_json_print_exact(session);
  if (!text) {
    chan_json_fail(err, errlen, "out of memory");
    return NULL;
  }
  if (strlen(text) > CHAN_SESSION_MAX) {
    free(text);
    chan_json_fail(err, errlen, "session over %d bytes", CHAN_SESSION_MAX);
    return NULL;
  }
  return text;
}

int chan_json_session(const cJSON *obj, char **out, char *err, size_t errlen) {
  *out = NULL;
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, "session");
  if (!item) return 0;
  *out = chan_json__session_text(item, err, errlen);
  return *out ? 0 : -1;
}

void chan_json_strings_free(char **v, size_t n) {
  if (!v) return;
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
}

/* 1 when item is a string that is a valid group name. */
static int chan_json__group_valid(const cJSON *item) {
  return cJSON_IsString(item) &&
         chan_group_name_valid(item->valuestring, strlen(item->valuestring));
}

int chan_json_groups(const cJSON *obj, int *present, char ***out, size_t *n,
                     char *err, size_t errlen) {
  *present = 0;
  *out = NULL;
  *n = 0;
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(obj, "groups");
  if (!list) return 0;
  *present = 1;
  if (!cJSON_IsArray(list)) {
    return chan_json_fail(err, errlen, "groups must be an array");
  }
  int count = cJSON_GetArraySize(list);
  if (count > CHAN_GROUPS_MAX) {
    return chan_json_fail(err, errlen, "more than %d groups", CHAN_GROUPS_MAX);
  }
  char **v = calloc((size_t)count + 1, sizeof *v);
  if (!v) return chan_json_fail(err, errlen, "out of memory");
  size_t i = 0;
  const cJSON *item;
  cJSON_ArrayForEach(item, list) {
    if (!chan_json__group_valid(item)) {
      chan_json_strings_free(v, i);
      return chan_json_fail(err, errlen, "invalid group name in groups");
    }
    v[i] = strdup(item->valuestring);
    if (!v[i]) {
      chan_json_strings_free(v, i);
      return chan_json_fail(err, errlen, "out of memory");
    }
    i++;
  }
  *out = v;
  *n = i;
  return 0;
}

int chan_json_add(cJSON *obj, const char *key, cJSON *item) {
  if (!item) return -1;
  if (!cJSON_AddItemToObject(obj, key, item)) {
    cJSON_Delete(item);
    return -1;
  }
  return 0;
}

int chan_json_add_uint(cJSON *obj, const char *key, uint64_t v) {
  if (v > CHAN_JSON_UINT_MAX) return -1;
  /* Written as digits, not as a cJSON number: cJSON prints a double with
   * 15 significant digits whenever that reads back within its relative
   * epsilon, so 9007199254740991 went out as 9.00719925474099e+15 (one
   * less). Found by tests/fuzz/fuzz_reply. */
  char digits[24];
  snprintf(digits, sizeof digits, "%" PRIu64, v);
  return chan_json_add(obj, key, cJSON_CreateRaw(digits));
}

int chan_json_add_session(cJSON *obj, const char *session_json) {
  if (!session_json) return 0;
  /* Marked, so that a U+0000 in it reaches chan_json_print_marked, which
   * refuses it, rather than silently cutting a string of the session. */
  cJSON *session =
      chan_json_parse_marked(session_json, strlen(session_json));
  if (session && chan_json_exact_numbers(session->child) != 0) {
    cJSON_Delete(session);
    return -1;
  }
  /* Measured as the decoder will measure it: compact, after a reparse. */
  char *text = chan_json__session_text(session, NULL, 0);
  if (!text) {
    cJSON_Delete(session);
    return -1;
  }
  free(text);
  return chan_json_add(obj, "session", session);
}

int chan_json_add_groups(cJSON *obj, char *const *groups, size_t n) {
  if (n > CHAN_GROUPS_MAX || (n > 0 && !groups)) return -1;
  cJSON *list = cJSON_CreateArray();
  if (chan_json_add(obj, "groups", list) != 0) return -1;
  for (size_t i = 0; i < n; i++) {
    if (!groups[i] || !chan_group_name_valid(groups[i], strlen(groups[i]))) {
      return -1;
    }
    cJSON *name = cJSON_CreateString(groups[i]);
    if (!name) return -1;
    if (!cJSON_AddItemToArray(list, name)) {
      cJSON_Delete(name);
      return -1;
    }
  }
  return 0;
}

char *chan_json_print_marked(const cJSON *obj, size_t *len) {
  if (chan_json_marked_outside_text(obj)) return NULL;
  char *text = cJSON_PrintUnformatted(obj);
  if (!text) return NULL;
  size_t n;
  text = chan_json__unmark(text, &n);
  if (text && len) *len = n;
  return text;
}
