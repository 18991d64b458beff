/*
 * gw_stream.h - what the AMQP thread does with each message of the history
 * stream (issue 14): post it, skip it, go live, report a gap, or start over.
 *
 * A pure state machine, so that the resume decision is unit-tested without
 * a broker: gw_bridge feeds it the stream's deliveries (offset, digest,
 * whether it is this gateway's own marker) and the clock, and does what the
 * returned action says. One consumption (a basic.consume on the stream)
 * goes through these phases:
 *
 *   PRELOAD  from a timestamp (first start) or "first" (after a reset):
 *            every message is posted; this gateway's own marker M makes it
 *            LIVE(M).
 *   RESUME   after a lost connection, from the last posted offset L (not
 *            L+1): the first message decides. L with L's digest: nothing is
 *            posted again, LIVE(L+1). L with another digest, or nothing
 *            within the resume timeout: the stream was recreated (a
 *            consumer at a future offset waits silently): start over
 *            (RESTART: reset, consume "first"). Past L: the messages in
 *            between are gone (retention): GAP, LIVE(that offset). Before
 *            L (a chunk starts there): skipped.
 *   LIVE     every message after the last posted one is posted. Offsets
 *            have holes (the broker's own chunks take offsets too): a jump
 *            while reading on is no loss.
 *
 * The watch (PRELOAD and LIVE): RabbitMQ 3.10 can stop delivering to a
 * stream consumer that retention overtook (it deleted the segment being
 * read), silently, with the connection healthy: the stall of issue 15's
 * session, about one run in ten of an 8 MiB flood through a 1 MiB stream.
 * Silence alone proves nothing (nobody may be emitting), so after
 * check_interval of it the caller publishes its marker (PROBE); when
 * nothing at all arrives within the timeout after that, the consumption is
 * dead (STALLED): the caller cancels it and resumes from the last offset,
 * which reports the retention gap as any resume does.
 *
 * Owns: the phase, the last posted offset and digest, the resume deadline.
 * Must not: do I/O or read the clock (callers pass now_ms).
 */
#ifndef GW_STREAM_H
#define GW_STREAM_H

#include <stdint.h>

typedef enum {
  GW_STREAM_IDLE = 0, /* not consuming (history off, or not connected) */
  GW_STREAM_PRELOAD,
  GW_STREAM_RESUME,
  GW_STREAM_LIVE
} gw_stream_phase;

/* Where a consumption starts (the x-stream-offset of basic.consume). */
typedef enum {
  GW_STREAM_FROM_TIME = 0, /* a timestamp: now - history.preload */
  GW_STREAM_FROM_OFFSET,   /* the last posted offset (a resume) */
  GW_STREAM_FROM_FIRST     /* the oldest message kept (after a reset) */
} gw_stream_from;

/* What to do with one delivery, bit flags, in this order: */
#define GW_STREAM_RESTART 1u /* cancel, post RESET, consume "first"; nothing else */
#define GW_STREAM_GAP 2u     /* post GAP (messages lost before this one) */
#define GW_STREAM_GO_LIVE 4u /* post LIVE(action.live) */
#define GW_STREAM_POST 8u    /* post this message as HIST */

typedef struct gw_stream_action {
  unsigned flags;
  uint64_t live;     /* GO_LIVE: the first live offset */
  uint64_t gap_from; /* GAP: the first offset lost */
} gw_stream_action;

typedef struct gw_stream {
  gw_stream_phase phase;
  int have_last;        /* a message was posted since the last reset */
  uint64_t last;        /* its offset */
  uint64_t last_digest; /* its chan_pos_digest */
  uint64_t deadline_ms; /* RESUME: start over when nothing came by then */
  uint64_t heard_ms;    /* the last delivery of this consumption (or its start) */
  uint64_t probe_ms;    /* a probe is out: stalled when nothing came by then; 0: none */
} gw_stream;

typedef enum {
  GW_STREAM_WATCH_NONE = 0,
  GW_STREAM_WATCH_PROBE,  /* publish a marker now */
  GW_STREAM_WATCH_STALLED /* cancel and resume from the last offset */
} gw_stream_watch_result;

void gw_stream_init(gw_stream *s);

/* A consumption starts (at connect or after RESTART, restart = 1 then).
 * Returns where, with *offset for FROM_OFFSET. *reset is 1 when the loop
 * must forget its history first (post RESET before anything else): a
 * first start or a restart. */
gw_stream_from gw_stream_begin(gw_stream *s, int restart, uint64_t now_ms,
                               uint64_t resume_timeout_ms, uint64_t *offset,
                               int *reset);

/* One delivery of the current consumption. own_marker: its routing key is
 * this gateway's marker (CHAN_MARK_KEY_PREFIX + its queue). */
gw_stream_action gw_stream_step(gw_stream *s, uint64_t offset, uint64_t digest,
                                int own_marker);

/* 1 when a resume has waited past its deadline: the caller restarts as for
 * a mismatch (gw_stream_begin with restart = 1). */
int gw_stream_overdue(const gw_stream *s, uint64_t now_ms);

/* A delivery of the current consumption arrived: it lives. */
void gw_stream_heard(gw_stream *s, uint64_t now_ms);

/* The watch (above), called every pass of the AMQP thread. PROBE starts a
 * timeout_ms wait for any delivery; idle_ms is history.check_interval. */
gw_stream_watch_result gw_stream_watch(gw_stream *s, uint64_t now_ms, uint64_t idle_ms,
                                       uint64_t timeout_ms);

/* When the watch next has something to do (for the thread's poll); 0 when
 * it is off (not consuming, or resuming: the resume has its deadline). */
uint64_t gw_stream_watch_at(const gw_stream *s, uint64_t idle_ms);

/* The connection is gone: the next begin resumes (or starts afresh if
 * nothing was posted yet). */
void gw_stream_stop(gw_stream *s);

#endif
