/*
 * gw_ring.h - one reader of the history stream per host (issue 17): the
 * gateway processes of one gatewayd share what process 0 reads.
 *
 * With the history every process consumed the stream itself, and the
 * broker paid a delivery per event per process (100-125 us each at a
 * trickle): two processes carried half the events one did. Now process 0
 * (the writer) copies every delivery of its consumption into a ring in
 * shared memory, and its siblings (the readers) take the stream from
 * there. Nothing else changes for them: each runs its own gw_stream on the
 * records as if the broker had sent them, so a reader that cannot read
 * the ring (overtaken by the writer, a new consumption of the writer, the
 * writer gone) resumes on the broker from its last offset, which gw_stream
 * verifies like any resume, and comes back once the ring is ahead of it.
 *
 * The ring is a memfd the supervisor creates before the first child and
 * passes to every child (and to restarted ones) with one eventfd per
 * process. Single writer, many readers, no locks: the writer never waits
 * for a reader (a slow one is overtaken and falls back to the broker), and
 * a reader checks after reading a record that the writer had not yet
 * begun to overwrite it (a sequence check: `reserve` moves before any byte
 * is written, `head` after).
 *
 * Records: offset, digest (chan_pos_digest, computed once per host), kick
 * flag, segment, key, body; 8-aligned; a record that does not fit at the
 * end of the buffer leaves a pad and starts at its beginning. A segment is
 * one consumption of the writer: records of one segment are consecutive
 * stream messages, so a reader stays only within the segment it found its
 * offset in.
 *
 * Owns: the mapping and its layout, the reader's cursor, the wake-ups.
 * Must not: know AMQP or gw_stream (gw_bridge decides what to read and
 * when to leave); block.
 *
 * Costs: cap bytes of shared memory per host (counted once, but in the RSS
 * of every process that touched the pages); one copy of each message into
 * the ring by the writer; an eventfd write per pass per sleeping reader.
 */
#ifndef GW_RING_H
#define GW_RING_H

#include <stddef.h>
#include <stdint.h>

#define GW_RING_MAX_SLOTS 64
#define GW_RING_MIN_BYTES (64u * 1024)

/* Flags of a record. */
#define GW_RING_KICK 1u /* the message carried the kick control header */

typedef struct gw_ring__shm gw_ring__shm;

typedef struct gw_ring_rec {
  uint64_t offset, digest;
  unsigned flags;
  const char *key; /* into the ring: valid until gw_ring_still says 0 */
  size_t key_len;
  const char *body;
  size_t body_len;
} gw_ring_rec;

typedef struct gw_ring {
  gw_ring__shm *shm;
  size_t map_len;
  uint8_t *data;
  uint64_t cap;
  int slot;     /* ours: 0 writes, others read; -1: the supervisor */
  int nslots;
  int memfd;    /* the supervisor's: passed to children */
  int efd[GW_RING_MAX_SLOTS]; /* each process's wake-up */
  /* a reader's */
  uint64_t pos;  /* next byte to read */
  uint64_t cur;  /* the record last returned */
  uint64_t seg;  /* the segment being read */
  int32_t writer; /* the pid that wrote it */
  /* the writer's */
  uint64_t tail; /* the oldest whole record */
} gw_ring;

/* The supervisor: a ring of cap bytes for nslots processes (2..64), the
 * memfd and eventfds close-on-exec (gw_supervisor hands them to each child
 * as stdio entries at the descriptors below). */
int gw_ring_create(gw_ring *r, size_t cap, int nslots);
/* Where a child finds them: the memfd at fd GW_RING_FD (the child is told
 * so by --history.shared_fd), process i's eventfd at GW_RING_FD + 1 + i. */
#define GW_RING_FD 3
/* A child: maps the ring passed at fd by its supervisor. -1 when it is not
 * a ring (then the child reads the broker itself). */
int gw_ring_attach(gw_ring *r, int fd, int slot);
void gw_ring_close(gw_ring *r);

/* ---- the writer (slot 0) ---- */
/* The writer's consumption is live: readers may take the ring from now. */
void gw_ring_lead(gw_ring *r);
/* It is not (a new consumption begins, the broker is lost, the process
 * stops): readers leave the ring now, and the next record begins a new
 * segment. */
void gw_ring_quit(gw_ring *r);
/* Appends one message; a message too large for the ring (over a quarter)
 * breaks the segment instead, so that readers fetch it from the broker. */
void gw_ring_put(gw_ring *r, const gw_ring_rec *rec);
/* Wakes the readers asleep (once per pass, after the puts). */
void gw_ring_wake(gw_ring *r);
/* The supervisor, when process 0 is gone: readers leave the ring now. */
void gw_ring_orphan(gw_ring *r);

/* ---- a reader ---- */
typedef enum {
  GW_RING_NONE = 0,  /* nothing newer yet */
  GW_RING_REC,       /* a record */
  GW_RING_ENDED,     /* the segment ended: the writer quit, went, or is another */
  GW_RING_OVERTAKEN  /* the writer overwrote what this reader had not read */
} gw_ring_got;
/* 1 when a writer lives and is live, and its current segment holds
 * offset (and, with newer, something after it): worth leaving the broker
 * for (gw_ring_seek decides). A cheap look at the header only. */
int gw_ring_covers(const gw_ring *r, uint64_t offset, int newer);
/* Positions the reader at the record with this offset in the current
 * segment: 0, or -1 when it is not there, or only in the oldest quarter of
 * the ring (about to be overwritten: the reader would be overtaken at
 * once). */
int gw_ring_seek(gw_ring *r, uint64_t offset);
/* The next record (pointers into the ring), or NONE, ENDED, OVERTAKEN
 * (above): after the last two the reader cannot go on here. */
gw_ring_got gw_ring_next(gw_ring *r, gw_ring_rec *out);
/* 1 when the record last returned was whole while it was read: call after
 * copying what it points to, before using the copy. */
int gw_ring_still(const gw_ring *r);
/* Before sleeping: asks for a wake-up. 1 when there is something to read
 * already (do not sleep). */
int gw_ring_arm(gw_ring *r);
/* The reader's eventfd (poll it for POLLIN), and its reset. */
int gw_ring_fd(const gw_ring *r);
void gw_ring_drain(gw_ring *r);

#endif
