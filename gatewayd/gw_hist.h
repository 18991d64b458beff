/*
 * gw_hist.h - the gateway's window on the event history (issue 14).
 *
 * With history on, every message of the stream websocket.history reaches
 * the loop in offset order (gw_bridge reads it). gw_hist keeps the most
 * recent of them in a ring bounded by bytes (`history.memory`): what a
 * wsgw.2 client that reconnects, or falls behind, is served from, and what
 * positions are computed and checked against (chan_pos.h).
 *
 * A wsgw.2 connection that is owed events the live fanout did not give it
 * (it recovered groups from positions, or its send queue was full) holds a
 * gw_hist_lag: a cursor in the ring (every message at or before it is
 * accounted for) and, per group, the offset after which that group's
 * events are owed. While it has one, the fanout skips it and gw_hist_pump
 * walks the ring for it instead, as far as its send queue takes, until the
 * cursor meets the ring's end: from then on the fanout serves it again.
 * Exactly once, in offset order, because both sides go by the one offset.
 *
 * Owns: the ring and its entries (each holds a reference to its frames),
 * the wsgw.2 frame of a message (built on first need, kept in the ring),
 * the compressed twins of both (likewise, gw_hist_frame_for),
 * positions, and gw_hist_lag. Must not: touch connections, sockets or the
 * broker (the pump pushes through a callback the caller gives).
 *
 * Invariants (asserted): the ring's offsets increase (they may skip: the
 * broker's own chunks take offsets too);
 * bytes is the sum of the entries' sizes; a lag's cursor is at most every
 * owed offset it lists.
 */
#ifndef GW_HIST_H
#define GW_HIST_H

#include <stddef.h>
#include <stdint.h>

#include "chan_names.h"
#include "chan_pos.h"
#include "gw_buf.h"
#include "gw_deflate.h"
#include "gw_group.h"

typedef struct gw_hist_ev {
  uint64_t offset, digest;
  gw_buf *frame;  /* the emitted text as a frame (old protocol); NULL: not
                     for clients (a marker, a control key, not UTF-8) */
  gw_buf *env;    /* the wsgw.2 frame, built on first need; NULL until then */
  uint32_t ghash; /* gw_group_hash of the group */
  uint16_t glen;
  char group[];   /* the routing key, NUL-terminated */
} gw_hist_ev;

typedef struct gw_hist {
  gw_hist_ev **ring; /* circular: ring[(head + i) & (cap - 1)], oldest first */
  size_t cap, head, n;
  size_t bytes, max_bytes;
  uint64_t floor;     /* every message read after it is in the ring (the last
                         one evicted, or the one before the first appended) */
  uint64_t live_from; /* messages at or after it are live; UINT64_MAX: none yet */
  unsigned long evicted; /* entries dropped at the byte bound (metrics) */
} gw_hist;

typedef enum {
  GW_HIST_OK = 0,  /* the position is this group's, in the ring */
  GW_HIST_EXPIRED, /* at or before the ring's floor: what followed it left */
  GW_HIST_UNKNOWN  /* not this group's in this history, or ahead of it */
} gw_hist_status;

/* "ok", "expired", "unknown": the words of docs/PROTOCOL.md. */
const char *gw_hist_status_name(gw_hist_status st);

void gw_hist_init(gw_hist *h, size_t max_bytes);
void gw_hist_free(gw_hist *h);

/* Forgets every message and the live offset (a new or recreated history). */
void gw_hist_reset(gw_hist *h);

/* Adds the stream's next message, taking the caller's reference to frame
 * (may be NULL). Offsets must increase (one that does not resets the
 * ring first). The
 * oldest messages go while the ring is over its bytes (never the newest).
 * NULL when out of memory (frame released, ring unchanged). */
gw_hist_ev *gw_hist_append(gw_hist *h, uint64_t offset, uint64_t digest,
                           const char *key, size_t klen, gw_buf *frame);

/* The message at offset, or NULL. The newest: gw_hist_last. */
gw_hist_ev *gw_hist_at(const gw_hist *h, uint64_t offset);
gw_hist_ev *gw_hist_last(const gw_hist *h);

/* 1 once the message at `offset` is to be delivered live. */
static inline int gw_hist_is_live(const gw_hist *h, uint64_t offset) {
  return offset >= h->live_from;
}

/* The wsgw.2 frame of e: {"group": G, "position": P, "text": T}. Built once
 * and kept (its bytes count in the ring's). NULL when e is not for clients
 * or out of memory. */
gw_buf *gw_hist_envelope(gw_hist *h, gw_hist_ev *e);

/* What a client is sent for e: the emitted text's frame (old protocol) or
 * the envelope (v2), compressed (z: the process's deflater) or not (z:
 * NULL), after `after` when not NULL (gw_deflate_twin_after: the client's
 * window ends with that frame). A compressed twin is made once and kept with its frame, its bytes
 * counted in the ring's; the twins of the ring's frames are made here
 * only. NULL when e is not for clients or out of memory. */
gw_buf *gw_hist_frame_for(gw_hist *h, gw_hist_ev *e, int v2, gw_deflate *z, gw_buf *after);

/* Writes the position of `group` at offset into out. -1 when that offset
 * is not in the ring. */
int gw_hist_position(const gw_hist *h, const char *group, uint64_t offset,
                     char out[CHAN_POS_MAX]);

/* Checks a client's position (offset, tag) for group against the ring. */
gw_hist_status gw_hist_check(const gw_hist *h, const char *group, uint64_t offset,
                             uint64_t tag);

/* The offset of the message before `offset` in the ring (offset - 1 when
 * there is none): what a client given everything before it last got. */
uint64_t gw_hist_prev_offset(const gw_hist *h, uint64_t offset);

/* ---- catch-up ------------------------------------------------------------ */

typedef struct gw_hist_owed {
  uint64_t from; /* this group's events after it are owed */
  char group[CHAN_GROUP_NAME_MAX + 1];
} gw_hist_owed;

typedef struct gw_hist_lag {
  uint64_t cursor; /* every message at or before it is accounted for */
  uint64_t base;   /* a group without an entry is owed what follows it */
  gw_hist_owed *owed;
  uint16_t n_owed, cap_owed;
} gw_hist_lag;

/* A lag for a connection whose groups are owed everything after `at`
 * (a full send queue: at is the last message it was given). NULL: no memory. */
gw_hist_lag *gw_hist_lag_new(uint64_t at);
void gw_hist_lag_free(gw_hist_lag *lag);

/* Owes `group` its events after `from` (a recovered position, or the
 * offset a group was joined at). Takes the cursor back to from when it is
 * earlier; what the cursor had passed stays accounted for other groups.
 * -1: no memory. */
int gw_hist_lag_owe(gw_hist_lag *lag, const char *group, uint64_t from);

/* Where a group stands in a lag: the offset after which it is owed events. */
uint64_t gw_hist_lag_from(const gw_hist_lag *lag, const char *group);

typedef enum {
  GW_HIST_PUMP_CAUGHT_UP = 0, /* the cursor is at the ring's end: serve live */
  GW_HIST_PUMP_FULL,          /* push refused: call again once drained */
  GW_HIST_PUMP_EXPIRED        /* the cursor fell out of the ring */
} gw_hist_pump_result;

/* After GW_HIST_PUMP_EXPIRED: the lag skips what left the ring and goes on
 * from the oldest message there (itself counted lost: a position needs a
 * message to stand on), so the client loses no more than it must. */
void gw_hist_lag_skip_lost(const gw_hist *h, gw_hist_lag *lag);

/* push: queues a frame for the connection; 0 done, -1 full (not queued). */
typedef int (*gw_hist_push_fn)(void *arg, gw_buf *frame);

/* Walks the ring after lag->cursor and pushes each message of one of the
 * connection's groups (members[0..n)) that the lag owes, in order, until
 * push refuses or the ring ends: its envelope, compressed when z is not
 * NULL (gw_hist_frame_for). */
gw_hist_pump_result gw_hist_pump(gw_hist *h, gw_hist_lag *lag, gw_member *const *members,
                                 size_t n, gw_deflate *z, gw_hist_push_fn push, void *arg);

#endif
