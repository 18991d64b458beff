/*
 * test_gw_stream.c - the history consumer's decisions (gw_stream): where a
 * consumption starts, the first start going live at its own marker, a
 * resume that finds its message, a recreated stream (another digest at L,
 * or nothing before the deadline), a gap past retention, duplicates and
 * holes while live, the watch that finds a dead consumer, and the
 * configuration settings of [history].
 */
#include <stdint.h>
#include <string.h>

#include "gw_config.h"
#include "gw_stream.h"
#include "unit.h"

/* A first start preloaded offsets 10..12, then its marker at 13. */
static void gw_stream__live_at_13(gw_stream *s) {
  uint64_t off;
  int reset;
  gw_stream_init(s);
  UNIT_CHECK(gw_stream_begin(s, 0, 0, 5000, &off, &reset) == GW_STREAM_FROM_TIME);
  UNIT_CHECK(reset == 1 && s->phase == GW_STREAM_PRELOAD);
  for (uint64_t o = 10; o <= 12; o++) {
    gw_stream_action a = gw_stream_step(s, o, o * 7, 0);
    UNIT_CHECK(a.flags == GW_STREAM_POST);
  }
  gw_stream_action a = gw_stream_step(s, 13, 91, 1);
  UNIT_CHECK(a.flags == (GW_STREAM_GO_LIVE | GW_STREAM_POST) && a.live == 13);
  UNIT_CHECK(s->phase == GW_STREAM_LIVE && s->last == 13 && s->last_digest == 91);
}

UNIT_TEST(gw_stream_first_start_goes_live_at_its_marker) {
  gw_stream s;
  gw_stream__live_at_13(&s);
  gw_stream_action a = gw_stream_step(&s, 14, 1, 0);
  UNIT_CHECK(a.flags == GW_STREAM_POST);
  /* another gateway's marker is an ordinary message */
  a = gw_stream_step(&s, 15, 2, 0);
  UNIT_CHECK(a.flags == GW_STREAM_POST && s.last == 15);
}

UNIT_TEST(gw_stream_live_skips_duplicates_and_takes_holes_for_no_loss) {
  gw_stream s;
  gw_stream__live_at_13(&s);
  UNIT_CHECK(gw_stream_step(&s, 13, 91, 0).flags == 0);
  UNIT_CHECK(gw_stream_step(&s, 5, 0, 0).flags == 0);
  /* 14 was the broker's chunk (a segment's tracking snapshot) */
  gw_stream_action a = gw_stream_step(&s, 15, 3, 0);
  UNIT_CHECK(a.flags == GW_STREAM_POST && s.last == 15);
}

UNIT_TEST(gw_stream_resume_at_the_same_message_posts_nothing_twice) {
  gw_stream s;
  gw_stream__live_at_13(&s);
  gw_stream_stop(&s);
  UNIT_CHECK(s.phase == GW_STREAM_IDLE);
  UNIT_CHECK(gw_stream_step(&s, 14, 1, 0).flags == 0); /* a straggler: ignored */
  uint64_t off;
  int reset;
  UNIT_CHECK(gw_stream_begin(&s, 0, 1000, 5000, &off, &reset) == GW_STREAM_FROM_OFFSET);
  UNIT_CHECK(off == 13 && reset == 0 && s.phase == GW_STREAM_RESUME);
  /* a chunk that starts before L: skipped, still waiting */
  UNIT_CHECK(gw_stream_step(&s, 11, 77, 0).flags == 0 && s.phase == GW_STREAM_RESUME);
  gw_stream_action a = gw_stream_step(&s, 13, 91, 0);
  UNIT_CHECK(a.flags == GW_STREAM_GO_LIVE && a.live == 14);
  UNIT_CHECK(s.phase == GW_STREAM_LIVE && s.last == 13);
  a = gw_stream_step(&s, 14, 5, 0);
  UNIT_CHECK(a.flags == GW_STREAM_POST && s.last == 14);
}

UNIT_TEST(gw_stream_resume_with_another_digest_restarts_from_first) {
  gw_stream s;
  gw_stream__live_at_13(&s);
  gw_stream_stop(&s);
  uint64_t off;
  int reset;
  gw_stream_begin(&s, 0, 0, 5000, &off, &reset);
  gw_stream_action a = gw_stream_step(&s, 13, 92, 0);
  UNIT_CHECK(a.flags == GW_STREAM_RESTART);
  UNIT_CHECK(gw_stream_begin(&s, 1, 0, 5000, &off, &reset) == GW_STREAM_FROM_FIRST);
  UNIT_CHECK(reset == 1 && !s.have_last && s.phase == GW_STREAM_PRELOAD);
  /* the recreated stream from 0: preload, then our marker */
  UNIT_CHECK(gw_stream_step(&s, 0, 1, 0).flags == GW_STREAM_POST);
  a = gw_stream_step(&s, 1, 2, 1);
  UNIT_CHECK(a.flags == (GW_STREAM_GO_LIVE | GW_STREAM_POST) && a.live == 1);
}

UNIT_TEST(gw_stream_resume_hearing_nothing_is_overdue_at_its_deadline) {
  gw_stream s;
  gw_stream__live_at_13(&s);
  gw_stream_stop(&s);
  UNIT_CHECK(!gw_stream_overdue(&s, 1u << 30)); /* idle: never */
  uint64_t off;
  int reset;
  gw_stream_begin(&s, 0, 1000, 5000, &off, &reset);
  UNIT_CHECK(!gw_stream_overdue(&s, 5999));
  UNIT_CHECK(gw_stream_overdue(&s, 6000));
  gw_stream_step(&s, 13, 91, 0); /* found it: live, never overdue */
  UNIT_CHECK(!gw_stream_overdue(&s, 100000));
}

UNIT_TEST(gw_stream_resume_past_retention_is_a_gap_then_live) {
  gw_stream s;
  gw_stream__live_at_13(&s);
  gw_stream_stop(&s);
  uint64_t off;
  int reset;
  gw_stream_begin(&s, 0, 0, 5000, &off, &reset);
  gw_stream_action a = gw_stream_step(&s, 40, 9, 0);
  UNIT_CHECK(a.flags == (GW_STREAM_GAP | GW_STREAM_GO_LIVE | GW_STREAM_POST));
  UNIT_CHECK(a.gap_from == 14 && a.live == 40 && s.last == 40);
}

UNIT_TEST(gw_stream_lost_before_anything_posted_starts_afresh) {
  gw_stream s;
  gw_stream_init(&s);
  uint64_t off;
  int reset;
  gw_stream_begin(&s, 0, 0, 5000, &off, &reset);
  gw_stream_stop(&s);
  UNIT_CHECK(gw_stream_begin(&s, 0, 0, 5000, &off, &reset) == GW_STREAM_FROM_TIME);
  UNIT_CHECK(reset == 1);
  /* lost during a preload that posted something: a resume there */
  gw_stream_step(&s, 3, 4, 0);
  gw_stream_stop(&s);
  UNIT_CHECK(gw_stream_begin(&s, 0, 0, 5000, &off, &reset) == GW_STREAM_FROM_OFFSET);
  UNIT_CHECK(off == 3 && reset == 0);
}

/* The watch: silence -> a probe; anything heard -> no stall; nothing even
 * after the probe -> stalled, and the resume that follows reports the
 * retention gap. begin at t=0, check_interval 1000, timeout 500. */
UNIT_TEST(gw_stream_watch_probes_after_silence_and_a_dead_consumer_is_stalled) {
  gw_stream s;
  gw_stream__live_at_13(&s); /* begun at t = 0 */
  UNIT_CHECK(gw_stream_watch_at(&s, 1000) == 1000);
  UNIT_CHECK(gw_stream_watch(&s, 999, 1000, 500) == GW_STREAM_WATCH_NONE);
  UNIT_CHECK(gw_stream_watch(&s, 1000, 1000, 500) == GW_STREAM_WATCH_PROBE);
  UNIT_CHECK(gw_stream_watch_at(&s, 1000) == 1500);
  UNIT_CHECK(gw_stream_watch(&s, 1200, 1000, 500) == GW_STREAM_WATCH_NONE); /* one probe */
  gw_stream_heard(&s, 1300); /* the marker came back: alive */
  UNIT_CHECK(gw_stream_watch(&s, 1600, 1000, 500) == GW_STREAM_WATCH_NONE);
  UNIT_CHECK(gw_stream_watch(&s, 2300, 1000, 500) == GW_STREAM_WATCH_PROBE);
  UNIT_CHECK(gw_stream_watch(&s, 2799, 1000, 500) == GW_STREAM_WATCH_NONE);
  UNIT_CHECK(gw_stream_watch(&s, 2800, 1000, 500) == GW_STREAM_WATCH_STALLED);
  /* the caller cancels and resumes at the last offset: retention took 14..99 */
  gw_stream_stop(&s);
  UNIT_CHECK(gw_stream_watch(&s, 9000, 1000, 500) == GW_STREAM_WATCH_NONE); /* idle */
  UNIT_CHECK(gw_stream_watch_at(&s, 1000) == 0);
  uint64_t off;
  int reset;
  UNIT_CHECK(gw_stream_begin(&s, 0, 3000, 500, &off, &reset) == GW_STREAM_FROM_OFFSET);
  UNIT_CHECK(off == 13 && reset == 0);
  UNIT_CHECK(gw_stream_watch(&s, 3100, 1000, 500) == GW_STREAM_WATCH_NONE); /* resuming */
  gw_stream_action a = gw_stream_step(&s, 100, 5, 0);
  UNIT_CHECK(a.flags == (GW_STREAM_GAP | GW_STREAM_GO_LIVE | GW_STREAM_POST));
  UNIT_CHECK(a.gap_from == 14 && a.live == 100);
  gw_stream_heard(&s, 3200);
  UNIT_CHECK(gw_stream_watch_at(&s, 1000) == 4200); /* watched again, from the begin's clock */
}

UNIT_TEST(gw_config_has_the_history_settings) {
  static const char *const keys[] = {"enabled",  "stream",   "max_age",
                                     "max_bytes", "segment_bytes", "replicas",
                                     "preload",  "prefetch", "resume_timeout",
                                     "memory"};
  for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
    int found = 0;
    for (size_t i = 0; i < gw_config_n_opts; i++)
      found |= strcmp(gw_config_opts[i].section, "history") == 0 &&
               strcmp(gw_config_opts[i].key, keys[k]) == 0 && gw_config_opts[i].help;
    UNIT_CHECK(found);
  }
}
