/*
 * test_gw_ring.c - the host's shared copy of the stream (gw_ring): records
 * read back whole and in order across the buffer's end, a reader
 * overtaken or at a segment's end told so (never handed a torn record as
 * whole), a record too large for the ring, the wake-up handshake, the
 * writer gone, and a writer in another process racing a reader.
 */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gw_ring.h"
#include "unit.h"

#define RING_TEST_FD 200 /* where the views find the ring, as a child finds it at 3 */

typedef struct ring_set {
  gw_ring sup, w, r;
} ring_set;

/* The supervisor's ring, and the writer's and one reader's views of it,
 * the descriptors placed as gw_supervisor places them in a child. */
static int ring_set_open(ring_set *s, size_t cap) {
  if (gw_ring_create(&s->sup, cap, 2) != 0) return -1;
  if (dup2(s->sup.memfd, RING_TEST_FD) < 0) return -1;
  for (int i = 0; i < 2; i++)
    if (dup2(s->sup.efd[i], RING_TEST_FD + 1 + i) < 0) return -1;
  if (gw_ring_attach(&s->w, RING_TEST_FD, 0) != 0) return -1;
  return gw_ring_attach(&s->r, RING_TEST_FD, 1);
}

static void ring_set_close(ring_set *s) {
  gw_ring_close(&s->r);
  gw_ring_close(&s->w);
  gw_ring_close(&s->sup);
  for (int i = 0; i < 3; i++) close(RING_TEST_FD + i);
}

/* A body that says which offset it belongs to, of a length that varies. */
static size_t ring_body(uint64_t off, char *out, size_t max) {
  size_t n = 20 + (size_t)(off * 7919 % 3000);
  if (n > max) n = max;
  for (size_t i = 0; i < n; i++) out[i] = (char)('a' + (off + i) % 26);
  return n;
}

static void ring_put(gw_ring *w, uint64_t off) {
  static char body[4096];
  char key[32];
  int kl = snprintf(key, sizeof key, "jobs-%llu", (unsigned long long)(off % 97));
  gw_ring_rec rec = {.offset = off, .digest = off * 31 + 7, .flags = off % 5 == 0 ? GW_RING_KICK : 0,
                     .key = key, .key_len = (size_t)kl, .body = body};
  rec.body_len = ring_body(off, body, sizeof body);
  gw_ring_put(w, &rec);
}

/* 1 when rec is what ring_put wrote for its offset. */
static int ring_rec_ok(const gw_ring_rec *rec) {
  static char want[4096];
  char key[32];
  int kl = snprintf(key, sizeof key, "jobs-%llu", (unsigned long long)(rec->offset % 97));
  size_t n = ring_body(rec->offset, want, sizeof want);
  return rec->digest == rec->offset * 31 + 7 &&
         (rec->flags == (rec->offset % 5 == 0 ? GW_RING_KICK : 0u)) &&
         rec->key_len == (size_t)kl && memcmp(rec->key, key, (size_t)kl) == 0 &&
         rec->body_len == n && memcmp(rec->body, want, n) == 0;
}

UNIT_TEST(gw_ring_reads_back_every_record_in_order_across_the_end) {
  ring_set s;
  UNIT_CHECK(ring_set_open(&s, GW_RING_MIN_BYTES) == 0);
  gw_ring_lead(&s.w);
  ring_put(&s.w, 100);
  UNIT_CHECK(gw_ring_covers(&s.r, 100, 0) && !gw_ring_covers(&s.r, 100, 1)); /* nothing newer */
  ring_put(&s.w, 101);
  UNIT_CHECK(gw_ring_covers(&s.r, 100, 1) && !gw_ring_covers(&s.r, 99, 0) &&
             !gw_ring_covers(&s.r, 101, 1) && !gw_ring_covers(&s.r, 102, 0));
  UNIT_CHECK(gw_ring_seek(&s.r, 100) == 0);
  uint64_t want = 100;
  int bad = 0;
  /* ~1,500 bytes a record through 64 KiB: the buffer's end is crossed
   * about 20 times, with pads and end gaps of every size */
  for (uint64_t off = 102; off < 1000; off++) {
    ring_put(&s.w, off);
    gw_ring_rec rec;
    gw_ring_got got;
    while ((got = gw_ring_next(&s.r, &rec)) == GW_RING_REC) {
      bad += rec.offset != want++ || !ring_rec_ok(&rec) || !gw_ring_still(&s.r);
    }
    UNIT_CHECK(got == GW_RING_NONE);
  }
  UNIT_CHECK(bad == 0 && want == 1000);
  /* an offset overwritten long ago is not found; a recent one is */
  UNIT_CHECK(gw_ring_seek(&s.r, 100) == -1);
  UNIT_CHECK(gw_ring_seek(&s.r, 990) == 0);
  ring_set_close(&s);
}

UNIT_TEST(gw_ring_reader_overtaken_is_told_and_never_given_a_torn_record) {
  ring_set s;
  UNIT_CHECK(ring_set_open(&s, GW_RING_MIN_BYTES) == 0);
  gw_ring_lead(&s.w);
  for (uint64_t off = 0; off < 10; off++) ring_put(&s.w, off);
  UNIT_CHECK(gw_ring_seek(&s.r, 3) == 0);
  gw_ring_rec rec;
  UNIT_CHECK(gw_ring_next(&s.r, &rec) == GW_RING_REC && rec.offset == 3 && ring_rec_ok(&rec));
  /* the writer laps the reader while it holds record 3 */
  for (uint64_t off = 10; off < 200; off++) ring_put(&s.w, off);
  UNIT_CHECK(!gw_ring_still(&s.r));
  UNIT_CHECK(gw_ring_next(&s.r, &rec) == GW_RING_OVERTAKEN);
  ring_set_close(&s);
}

UNIT_TEST(gw_ring_segment_ends_when_the_writer_quits_and_leads_again) {
  ring_set s;
  UNIT_CHECK(ring_set_open(&s, GW_RING_MIN_BYTES) == 0);
  gw_ring_lead(&s.w);
  for (uint64_t off = 0; off < 5; off++) ring_put(&s.w, off);
  UNIT_CHECK(gw_ring_seek(&s.r, 1) == 0);
  gw_ring_quit(&s.w); /* e.g. its broker connection was lost */
  gw_ring_rec rec;
  UNIT_CHECK(gw_ring_next(&s.r, &rec) == GW_RING_ENDED); /* the writer is not live */
  UNIT_CHECK(!gw_ring_covers(&s.r, 1, 0));
  /* its next consumption (from offset 3, say) before it is live again */
  for (uint64_t off = 3; off < 8; off++) ring_put(&s.w, off);
  UNIT_CHECK(!gw_ring_covers(&s.r, 4, 0));
  gw_ring_lead(&s.w);
  UNIT_CHECK(gw_ring_covers(&s.r, 4, 1) && !gw_ring_covers(&s.r, 2, 0));
  UNIT_CHECK(gw_ring_seek(&s.r, 1) == -1); /* only in the old segment */
  UNIT_CHECK(gw_ring_seek(&s.r, 4) == 0);
  UNIT_CHECK(gw_ring_next(&s.r, &rec) == GW_RING_REC && rec.offset == 4);
  /* a message over a quarter of the ring is not copied: the segment ends
   * there, and a reader fetches it from the broker */
  static char big[GW_RING_MIN_BYTES / 4];
  gw_ring_rec huge = {.offset = 8, .key = "k", .key_len = 1, .body = big, .body_len = sizeof big};
  gw_ring_put(&s.w, &huge);
  ring_put(&s.w, 9);
  UNIT_CHECK(gw_ring_next(&s.r, &rec) == GW_RING_REC && rec.offset == 5);
  UNIT_CHECK(gw_ring_next(&s.r, &rec) == GW_RING_REC && rec.offset == 6);
  UNIT_CHECK(gw_ring_next(&s.r, &rec) == GW_RING_REC && rec.offset == 7);
  UNIT_CHECK(gw_ring_next(&s.r, &rec) == GW_RING_ENDED);
  ring_set_close(&s);
}

UNIT_TEST(gw_ring_seek_refuses_the_oldest_quarter_and_another_writer_ends_the_segment) {
  ring_set s;
  UNIT_CHECK(ring_set_open(&s, GW_RING_MIN_BYTES) == 0);
  gw_ring_lead(&s.w);
  for (uint64_t off = 0; off < 200; off++) ring_put(&s.w, off); /* wraps: full */
  uint64_t oldest = 0;
  while (oldest < 200 && !gw_ring_covers(&s.r, oldest, 0)) oldest++;
  UNIT_CHECK(oldest > 0 && oldest < 190);
  /* there, but the next puts overwrite it: a reader would be overtaken */
  UNIT_CHECK(gw_ring_seek(&s.r, oldest) == -1);
  UNIT_CHECK(gw_ring_seek(&s.r, 195) == 0);
  /* a writer in another process takes over (as a restarted process 0
   * would, after the supervisor's orphan): the reader's segment is over */
  pid_t pid = fork();
  if (pid == 0) {
    gw_ring w2;
    if (gw_ring_attach(&w2, RING_TEST_FD, 0) != 0) _exit(1);
    gw_ring_lead(&w2);
    ring_put(&w2, 200);
    _exit(0);
  }
  int status = 0;
  UNIT_CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
             WEXITSTATUS(status) == 0);
  gw_ring_rec rec;
  UNIT_CHECK(gw_ring_next(&s.r, &rec) == GW_RING_ENDED);
  ring_set_close(&s);
}

static int ring_woken(const gw_ring *r) {
  struct pollfd p = {.fd = gw_ring_fd(r), .events = POLLIN};
  return poll(&p, 1, 0) == 1;
}

UNIT_TEST(gw_ring_wakes_a_sleeping_reader_once_and_the_writer_s_end_wakes_all) {
  ring_set s;
  UNIT_CHECK(ring_set_open(&s, GW_RING_MIN_BYTES) == 0);
  gw_ring_lead(&s.w);
  ring_put(&s.w, 1);
  ring_put(&s.w, 2);
  UNIT_CHECK(gw_ring_seek(&s.r, 2) == 0);
  gw_ring_rec rec;
  UNIT_CHECK(gw_ring_next(&s.r, &rec) == GW_RING_REC);
  UNIT_CHECK(!ring_woken(&s.r));
  UNIT_CHECK(gw_ring_arm(&s.r) == 0); /* nothing to read: it may sleep */
  ring_put(&s.w, 3);
  UNIT_CHECK(!ring_woken(&s.r)); /* a put alone does not wake: the pass's end does */
  gw_ring_wake(&s.w);
  UNIT_CHECK(ring_woken(&s.r)); /* armed, so woken... */
  gw_ring_drain(&s.r);
  UNIT_CHECK(!ring_woken(&s.r));
  /* ...and not again: it did not arm since */
  ring_put(&s.w, 4);
  gw_ring_wake(&s.w);
  UNIT_CHECK(!ring_woken(&s.r));
  UNIT_CHECK(gw_ring_arm(&s.r) == 1); /* 3 and 4 wait: no sleep */
  UNIT_CHECK(gw_ring_next(&s.r, &rec) == GW_RING_REC && rec.offset == 3);
  UNIT_CHECK(gw_ring_next(&s.r, &rec) == GW_RING_REC && rec.offset == 4);
  /* the supervisor reaped the writer: readers wake and leave */
  gw_ring_drain(&s.r);
  gw_ring_orphan(&s.sup);
  UNIT_CHECK(ring_woken(&s.r));
  UNIT_CHECK(gw_ring_next(&s.r, &rec) == GW_RING_ENDED);
  UNIT_CHECK(!gw_ring_covers(&s.r, 3, 0));
  ring_set_close(&s);
}

UNIT_TEST(gw_ring_refuses_what_is_not_a_ring) {
  gw_ring r;
  UNIT_CHECK(gw_ring_create(&r, GW_RING_MIN_BYTES, 1) == -1);  /* one process shares nothing */
  UNIT_CHECK(gw_ring_create(&r, 1024, 2) == -1);              /* too small */
  int p[2];
  UNIT_CHECK(pipe(p) == 0);
  UNIT_CHECK(gw_ring_attach(&r, p[0], 1) == -1); /* not a memfd of ours */
  close(p[0]);
  close(p[1]);
  UNIT_CHECK(gw_ring_attach(&r, -1, 1) == -1);
  ring_set s;
  UNIT_CHECK(ring_set_open(&s, GW_RING_MIN_BYTES) == 0);
  gw_ring other;
  UNIT_CHECK(gw_ring_attach(&other, RING_TEST_FD, 2) == -1); /* no such slot */
  ring_set_close(&s);
}

/* A writer in another process (as process 0 is) puts 200,000 records as
 * fast as it can into 64 KiB while this one reads: every record handed
 * over and found whole is exactly what was written, in order, and an
 * overtaken reader finds its place again by seeking. */
UNIT_TEST(gw_ring_writer_in_another_process_races_a_reader) {
  ring_set s;
  UNIT_CHECK(ring_set_open(&s, GW_RING_MIN_BYTES) == 0);
  const uint64_t n = 200000;
  gw_ring_lead(&s.w); /* the leader pid is the parent's: alive for the reader */
  ring_put(&s.w, 0);
  ring_put(&s.w, 1);
  gw_ring_rec rec;
  UNIT_CHECK(gw_ring_seek(&s.r, 0) == 0);
  UNIT_CHECK(gw_ring_next(&s.r, &rec) == GW_RING_REC && rec.offset == 0);
  pid_t pid = fork();
  if (pid == 0) {
    for (uint64_t off = 2; off < n; off++) ring_put(&s.w, off);
    _exit(0);
  }
  UNIT_CHECK(pid > 0);
  uint64_t last = 0, whole = 0, torn = 0, broken = 0, bad = 0;
  while (last < n - 1) {
    gw_ring_got got = gw_ring_next(&s.r, &rec);
    if (got == GW_RING_NONE) continue;
    int ok = got == GW_RING_REC && rec.offset == last + 1 && ring_rec_ok(&rec);
    if (got == GW_RING_REC && gw_ring_still(&s.r)) {
      if (!ok && !bad)
        fprintf(stderr, "  first bad record: offset %llu after %llu\n",
                (unsigned long long)rec.offset, (unsigned long long)last);
      bad += !ok;
      whole++;
      last = rec.offset;
      continue;
    }
    torn += got == GW_RING_REC;
    broken += got == GW_RING_OVERTAKEN;
    if (got == GW_RING_ENDED) break; /* cannot be: one writer, one segment */
    /* as the bridge does: go back to where we were, here by offset; the
     * writer may have passed it, then jump to a recent record instead
     * (the bridge would fetch the missed ones from the broker) */
    if (gw_ring_seek(&s.r, last) == 0) {
      gw_ring_next(&s.r, &rec);
    } else {
      uint64_t head = last + 1;
      while (head < n && gw_ring_seek(&s.r, head) != 0) head += 5;
      if (head >= n) break;
      gw_ring_next(&s.r, &rec);
      last = head;
    }
  }
  int status = 0;
  UNIT_CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
  UNIT_CHECK(bad == 0);
  UNIT_CHECK(whole > 0);
  fprintf(stderr, "  (race: %llu whole, %llu torn, %llu overtaken, last %llu)\n",
          (unsigned long long)whole, (unsigned long long)torn, (unsigned long long)broken,
          (unsigned long long)last);
  ring_set_close(&s);
}
