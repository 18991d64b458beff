/*
 * wk_subscribe.h - the subscription request a client sends after connecting:
 *   {"groups": {"jobs": ["status_changed"], "job_events": [42]},
 *    "xrftoken": "..."}
 * and what it does to the connection's groups. docs/PROTOCOL.md "Subscribing".
 * On a wsgw.2 connection (issue 14) the request may also name positions,
 *   "positions": {"jobs-status_changed": "1234-0123456789ab"},
 * which the result hands on, for the groups joined, to the gateway.
 *
 * Owns: parsing the request, validating names, applying the policy, the
 * replacement of the whole group set and the reply texts. Must not: do I/O
 * or log (it is a pure function, so that unit tests pin the protocol down).
 */
#ifndef WK_SUBSCRIBE_H
#define WK_SUBSCRIBE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "chan_reply.h"
#include "wk_policy.h"

/* What the gateway keeps for the connection (the reply session of connect).
 * Borrowed: the caller owns every pointer. */
typedef struct wk_session {
  long long user_id;
  const char *csrftoken; /* the handshake's csrftoken cookie; NULL: none */
  const cJSON *objects;  /* the token's "objects" claim (or the connect
                            hook's grants); NULL: none */
  /* Optional (NULL: none): asked for an "object" channel's list entry
   * that objects does not grant; 1 grants it, 0 refuses it. The worker
   * answers from the application's subscribe hook or its cache. */
  int (*decide)(void *arg, const char *key, const char *value);
  void *decide_arg;
  /* 1: the connection speaks wsgw.2 (chan_msg's protocol): a request may
   * carry "positions", and a successful result carries the positions
   * named for groups of the new membership. 0: "positions" is an unknown
   * key, as it always was. */
  int positions;
} wk_session;

typedef struct wk_subscribe_result {
  /* Text messages to send, in order: one {"error": ...} per refused entry,
   * then the reply (or a single error when the request as a whole failed).
   * Each data is malloc'd and owned here. */
  chan_text *texts;
  size_t n_texts;
  /* 1: groups[] is the connection's new, whole, sorted membership.
   * 0: the request failed and the membership stays as it was. */
  int has_groups;
  char **groups; /* point into names_block */
  size_t n_groups;
  char *names_block; /* owned: every name of groups[], NUL-separated */
  /* With wk_session.positions and has_groups: has_positions 1 and the
   * positions the request named for groups of the new membership (those
   * of refused entries dropped), sorted by group, each once; a group
   * named twice keeps the last position written. Owned. */
  int has_positions;
  chan_reply_pos *positions;
  size_t n_positions;
} wk_subscribe_result;

/*
 * Applies request text (len bytes, need not be NUL-terminated) to a connection
 * whose current membership is current[0..n_current) (any order). max_groups
 * bounds the entries of one request. Returns 0 with *out filled (release with
 * wk_subscribe_result_free), or -1 when out of memory (*out left empty).
 */
int wk_subscribe_apply(const char *text, size_t len, char *const *current,
                       size_t n_current, const wk_session *s,
                       const wk_policy *p, size_t max_groups,
                       wk_subscribe_result *out);

void wk_subscribe_result_free(wk_subscribe_result *r);

#endif
