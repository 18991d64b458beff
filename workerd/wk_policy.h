/*
 * wk_policy.h - who may join which group: the [groups] section of the config
 * file maps each subscription key ("channel") to a policy.
 *
 *   [groups]
 *   jobs = open          ; any authenticated user
 *   jobs = open: status_changed, summary   ; ... and only these values
 *   job_events = object  ; ids granted by the token's "objects" claim
 *   control = user       ; control-<suffix>_<uid>, the user's own uid only
 *
 * An open channel without a value list takes any value, so any user can
 * make any number of groups (each a binding on the broker: issue 12); the
 * list closes that for channels whose values are known in advance.
 *
 * Owns: reading that section and answering "may this user join key-value".
 * Must not: parse requests, know about AMQP, or read any other section.
 * Rules: docs/PROTOCOL.md "Access policy".
 */
#ifndef WK_POLICY_H
#define WK_POLICY_H

#include <stddef.h>

#include <cjson/cJSON.h>

typedef enum {
  WK_POLICY_OPEN = 0,
  WK_POLICY_OBJECT,
  WK_POLICY_USER
} wk_policy_kind;

typedef struct wk_policy_entry {
  char key[65]; /* a subscription key: 1..64 of [A-Za-z0-9_.:] */
  wk_policy_kind kind;
  /* open only: ",v1,v2," (values cannot hold a comma), malloc'd; NULL:
   * any value */
  char *values;
} wk_policy_entry;

/* A handful of channels: a flat array searched linearly is the fastest and
 * simplest thing at this size. */
typedef struct wk_policy {
  wk_policy_entry *entries; /* malloc'd, owned; wk_policy_free releases */
  size_t n;
} wk_policy;

/* Fills p with AWX's channels (jobs, schedules, inventories = open; the
 * *_events channels = object; control = user). Returns 0 or -1 (no memory). */
int wk_policy_default(wk_policy *p);

/* Reads the [groups] section of the INI file at path; NULL path, or a file
 * without a [groups] section (or an empty one), gives the default. Every
 * other section is ignored. Returns 0, or -1 with "FILE:LINE: reason" in
 * err. */
int wk_policy_load(wk_policy *p, const char *path, char *err, size_t errlen);

/* Same, from INI text in memory (tests). */
int wk_policy_load_string(wk_policy *p, const char *ini, char *err,
                          size_t errlen);

void wk_policy_free(wk_policy *p);

/* 1 and *kind set when key is a known channel, else 0. */
int wk_policy_find(const wk_policy *p, const char *key, wk_policy_kind *kind);

/*
 * 1 when user_id may join the group of (key, value) under kind. value is NULL
 * for a non-list subscription entry (the group "key" alone). objects is the
 * token's "objects" claim ({"job_events": [42, "43"], "jobs": "*"}) or NULL.
 * A bare key passes "object" only with a "*" grant and never passes "user".
 */
int wk_policy_allows(wk_policy_kind kind, const char *key, const char *value,
                     long long user_id, const cJSON *objects);

const char *wk_policy_kind_name(wk_policy_kind kind);

/* 1 unless key's entry lists its values and value (NULL: a non-list
 * subscription entry, the bare key) is not one of them. */
int wk_policy_value_allowed(const wk_policy *p, const char *key, const char *value);

#endif
