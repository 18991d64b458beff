/*
 * chan_reply.h - replies, worker -> gateway, one per channel message.
 *
 * Owns: the reply JSON (ASGI keys accept/text/bytes/close plus session,
 * groups, order). Must not: do I/O. The reply-channel name syntax is
 * chan_reply_channel.h's, a layer below.
 * Wire format: docs/PROTOCOL.md.
 */
#ifndef CHAN_REPLY_H
#define CHAN_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include "chan_names.h"

typedef struct chan_text {
  char *data;
  size_t len;
} chan_text;

/* One entry of a reply's "positions": "<group>": "<offset>-<tag>"
 * (chan_pos.h). The name is held inline: a reply carries at most
 * CHAN_GROUPS_MAX of them (145 KiB), and no entry needs a malloc. */
typedef struct chan_reply_pos {
  char group[CHAN_GROUP_NAME_MAX + 1];
  uint64_t offset; /* < 2^63, as chan_pos_parse reads */
  uint64_t tag;    /* < 2^48 */
} chan_reply_pos;

/*
 * On encode nothing is owned (the caller keeps its strings); on decode every
 * pointer is malloc'd and released by chan_reply_free().
 */
typedef struct chan_reply {
  char *reply_channel;
  uint64_t order;

  int accept; /* -1 absent, 0 reject, 1 accept (connect replies) */
  /* With accept 0: the HTTP status of the refusal, 403 (0 on the wire
   * means the same) or 503 ("try again later": the application that
   * decides was unreachable). "status" on the wire; other values are
   * refused. Gateways before it ignore the key and answer 403. */
  int status;

  /* Frames to send, in order: text frames first, then the binary one. On the
   * wire "text" is a string or an array of strings. */
  chan_text *texts;
  size_t n_texts;
  int has_bytes;
  char *bytes; /* decoded */
  size_t bytes_len;

  int close_code; /* 0: no close; "close": true means 1000 */

  char *session_json; /* raw JSON object text; NULL: leave the session as is */

  int has_groups; /* 1: groups[] is the connection's new, whole membership */
  char **groups;
  size_t n_groups;

  /* Positions (issue 14, protocol wsgw.2): on the reply to a subscription
   * request from a wsgw.2 connection, the positions the client named for
   * groups of the new membership, "positions": {"G": "P", ...} on the wire.
   * has_positions 1: the key was there, even as {} (then n_positions is 0).
   * Only with has_groups, each entry one of groups[], each group once;
   * decoded, sorted by group (strcmp). Otherwise the reply is invalid. */
  int has_positions;
  chan_reply_pos *positions;
  size_t n_positions;

  /* Access that ends (issue 13). 0: absent. */
  uint64_t user;    /* accept only: the user the connection is for (the
                       gateway joins it to the user's control key) */
  uint64_t expires; /* when the credential's access ends (Unix seconds,
                       its exp plus the worker's leeway); on the accept or
                       a later reply (a refresh); 1 .. 2^53-1 */
  uint64_t recheck; /* when the gateway should send a re-check of the
                       application's grants the connection holds (Unix
                       seconds, 1 .. 2^53-1); 0/absent: none due. On a
                       reply to a re-check it replaces the deadline (absent
                       ends it); on any other reply an earlier one is kept */
} chan_reply;

/* Returns a malloc'd JSON text (length in *len), or NULL when out of memory
 * or when r breaks a wire rule (as chan_msg_encode, plus a close code no
 * close frame may carry). */
char *chan_reply_encode(const chan_reply *r, size_t *len);
/* Returns 0, or -1 with a reason in err; on success release *out with
 * chan_reply_free(). json need not be NUL-terminated. */
int chan_reply_decode(const char *json, size_t len, chan_reply *out, char *err,
                      size_t errlen);
void chan_reply_free(chan_reply *r);

#endif
