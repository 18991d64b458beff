/*
 * gw_stream.c - the history stream consumer's decisions (see gw_stream.h).
 *
 * Owns: the consumption's phase and the last posted offset. Must not: know
 * AMQP (gw_bridge turns the actions into basic.cancel, basic.consume and
 * events) or read the clock.
 *
 * Offsets of a stream grow by one per message but have holes: RabbitMQ's
 * own chunks (a writer-tracking snapshot opens every segment) take an
 * offset each and are never delivered. So only a resume, which asks for L
 * by number, can tell a loss: L itself not delivered first.
 *
 * Why resume at L and not L+1: the message at L is the proof that this is
 * the stream we read before. Its digest (chan_pos_digest: offset, key,
 * body) differs on a stream recreated since, which has other messages at
 * the same offsets; and a stream recreated shorter than L sends nothing at
 * all, hence the deadline.
 */
#include "gw_stream.h"

#include <assert.h>
#include <string.h>

void gw_stream_init(gw_stream *s) { memset(s, 0, sizeof *s); }

gw_stream_from gw_stream_begin(gw_stream *s, int restart, uint64_t now_ms,
                               uint64_t resume_timeout_ms, uint64_t *offset,
                               int *reset) {
  *offset = 0;
  s->heard_ms = now_ms;
  s->probe_ms = 0;
  if (restart) {
    s->have_last = 0;
    s->phase = GW_STREAM_PRELOAD;
    *reset = 1;
    return GW_STREAM_FROM_FIRST;
  }
  if (!s->have_last) {
    s->phase = GW_STREAM_PRELOAD;
    *reset = 1;
    return GW_STREAM_FROM_TIME;
  }
  s->phase = GW_STREAM_RESUME;
  s->deadline_ms = now_ms + resume_timeout_ms;
  *offset = s->last;
  *reset = 0;
  return GW_STREAM_FROM_OFFSET;
}

static void gw_stream__posted(gw_stream *s, uint64_t offset, uint64_t digest) {
  s->have_last = 1;
  s->last = offset;
  s->last_digest = digest;
}

/* The first message after a resume at s->last decides. */
static gw_stream_action gw_stream__resume(gw_stream *s, uint64_t offset,
                                          uint64_t digest) {
  gw_stream_action a = {0};
  if (offset < s->last) return a; /* the chunk holding L starts earlier */
  if (offset == s->last && digest != s->last_digest) {
    a.flags = GW_STREAM_RESTART; /* another stream under the same name */
    return a;
  }
  s->phase = GW_STREAM_LIVE;
  a.flags = GW_STREAM_GO_LIVE;
  if (offset == s->last) { /* the very message we stopped at: posted already */
    a.live = s->last + 1;
    return a;
  }
  a.flags |= GW_STREAM_GAP | GW_STREAM_POST;
  a.gap_from = s->last + 1;
  a.live = offset;
  gw_stream__posted(s, offset, digest);
  return a;
}

gw_stream_action gw_stream_step(gw_stream *s, uint64_t offset, uint64_t digest,
                                int own_marker) {
  gw_stream_action a = {0};
  switch (s->phase) {
    case GW_STREAM_IDLE:
      return a; /* a straggler of a cancelled consumption */
    case GW_STREAM_RESUME:
      return gw_stream__resume(s, offset, digest);
    case GW_STREAM_PRELOAD:
      if (s->have_last && offset <= s->last) return a;
      a.flags = GW_STREAM_POST;
      if (own_marker) {
        s->phase = GW_STREAM_LIVE;
        a.flags |= GW_STREAM_GO_LIVE;
        a.live = offset;
      }
      gw_stream__posted(s, offset, digest);
      return a;
    case GW_STREAM_LIVE:
      assert(s->have_last);
      if (offset <= s->last) return a; /* seen already */
      /* A jump is not a loss here: the broker's own chunks take offsets
       * too (a tracking snapshot opens every segment). A consumer that
       * retention overtakes gets no jump either: RabbitMQ 3.10 stalls it
       * instead, and the watch's resume reports the gap. */
      a.flags = GW_STREAM_POST;
      gw_stream__posted(s, offset, digest);
      return a;
  }
  return a;
}

int gw_stream_overdue(const gw_stream *s, uint64_t now_ms) {
  return s->phase == GW_STREAM_RESUME && now_ms >= s->deadline_ms;
}

void gw_stream_stop(gw_stream *s) { s->phase = GW_STREAM_IDLE; }

void gw_stream_heard(gw_stream *s, uint64_t now_ms) {
  s->heard_ms = now_ms;
  s->probe_ms = 0;
}

static int gw_stream__watched(const gw_stream *s) {
  return s->phase == GW_STREAM_PRELOAD || s->phase == GW_STREAM_LIVE;
}

gw_stream_watch_result gw_stream_watch(gw_stream *s, uint64_t now_ms, uint64_t idle_ms,
                                       uint64_t timeout_ms) {
  if (!gw_stream__watched(s)) return GW_STREAM_WATCH_NONE;
  if (s->probe_ms) return now_ms >= s->probe_ms ? GW_STREAM_WATCH_STALLED : GW_STREAM_WATCH_NONE;
  if (now_ms < s->heard_ms + idle_ms) return GW_STREAM_WATCH_NONE;
  s->probe_ms = now_ms + (timeout_ms ? timeout_ms : 1);
  assert(s->probe_ms != 0);
  return GW_STREAM_WATCH_PROBE;
}

uint64_t gw_stream_watch_at(const gw_stream *s, uint64_t idle_ms) {
  if (!gw_stream__watched(s)) return 0;
  return s->probe_ms ? s->probe_ms : s->heard_ms + idle_ms;
}
