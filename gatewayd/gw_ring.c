/*
 * gw_ring.c - the host's shared copy of the history stream (see gw_ring.h).
 *
 * Owns: the shared mapping's layout, the writer's tail, a reader's cursor.
 * Must not: block, or trust a byte of the ring before checking it: a
 * record read while the writer overwrote it is garbage, so every length is
 * bounded by the ring before it is used, and gw_ring_still says whether
 * the bytes were whole.
 *
 * Positions are byte counts since the ring was made (never wrapped); the
 * byte at position p lives at data[p % cap]. The writer, for each record:
 * reserve = end (then a release fence), write the bytes, head = end
 * (release). Byte p is overwritten only once reserve passes p + cap, so a
 * reader that finds reserve <= p + cap after reading (acquire fence) read
 * p whole. A seqlock's check, per record.
 */
#define _GNU_SOURCE /* memfd_create */
#include "gw_ring.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GW_RING_MAGIC 0x67777272u /* "gwrr" */
#define GW_RING_VERSION 1u
#define GW_RING_PAD 0x80000000u   /* a record flag: filler up to the end */

struct gw_ring__shm {
  uint32_t magic, version;
  uint64_t cap;
  uint32_t nslots;
  _Atomic int32_t leader;       /* the writer's pid; 0: none */
  _Atomic uint64_t reserve;     /* the writer may be writing below this */
  _Atomic uint64_t head;        /* every byte below this is written */
  _Atomic uint64_t tail;        /* the oldest whole record starts here */
  _Atomic uint64_t seg;         /* the current segment */
  _Atomic uint64_t seg_first;   /* offset of its oldest record still here */
  _Atomic uint64_t seg_last;    /* offset of its newest record */
  _Atomic uint32_t seg_count;   /* its records still here (0: none) */
  _Atomic uint32_t armed[GW_RING_MAX_SLOTS]; /* reader i sleeps, wants a wake */
};

typedef struct gw_ring__hdr {
  uint32_t size;  /* the whole record, 8-aligned */
  uint32_t flags;
  uint64_t seg, offset, digest;
  uint32_t key_len, body_len;
} gw_ring__hdr;

#define GW_RING_HDR sizeof(gw_ring__hdr)
#define GW_RING_DATA_AT 4096 /* the header's page, then the buffer */

static size_t gw_ring__align(size_t n) { return (n + 7) & ~(size_t)7; }

static void gw_ring__clear(gw_ring *r) {
  memset(r, 0, sizeof *r);
  r->memfd = -1;
  r->slot = -1;
  for (int i = 0; i < GW_RING_MAX_SLOTS; i++) r->efd[i] = -1;
}

static int gw_ring__map(gw_ring *r, int fd, size_t len) {
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return -1;
  r->shm = p;
  r->map_len = len;
  r->data = (uint8_t *)p + GW_RING_DATA_AT;
  return 0;
}

int gw_ring_create(gw_ring *r, size_t cap, int nslots) {
  gw_ring__clear(r);
  assert(sizeof(gw_ring__shm) <= GW_RING_DATA_AT);
  if (nslots < 2 || nslots > GW_RING_MAX_SLOTS || cap < GW_RING_MIN_BYTES) return -1;
  cap &= ~(size_t)7;
  r->memfd = memfd_create("wsgw-history-ring", MFD_CLOEXEC);
  if (r->memfd < 0 || ftruncate(r->memfd, (off_t)(GW_RING_DATA_AT + cap)) != 0 ||
      gw_ring__map(r, r->memfd, GW_RING_DATA_AT + cap) != 0)
    goto fail;
  for (int i = 0; i < nslots; i++)
    if ((r->efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) goto fail;
  r->cap = cap;
  r->nslots = nslots;
  gw_ring__shm *s = r->shm; /* fresh pages are zero: only what is not */
  s->cap = cap;
  s->nslots = (uint32_t)nslots;
  s->version = GW_RING_VERSION;
  atomic_store(&s->seg_first, UINT64_MAX);
  s->magic = GW_RING_MAGIC;
  return 0;
fail:
  gw_ring_close(r);
  return -1;
}

int gw_ring_attach(gw_ring *r, int fd, int slot) {
  gw_ring__clear(r);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || st.st_size <= GW_RING_DATA_AT) return -1;
  if (gw_ring__map(r, fd, (size_t)st.st_size) != 0) return -1;
  gw_ring__shm *s = r->shm;
  if (s->magic != GW_RING_MAGIC || s->version != GW_RING_VERSION ||
      s->cap != (uint64_t)st.st_size - GW_RING_DATA_AT || s->nslots < 2 ||
      s->nslots > GW_RING_MAX_SLOTS || slot < 0 || (uint32_t)slot >= s->nslots) {
    gw_ring_close(r);
    return -1;
  }
  r->cap = s->cap;
  r->nslots = (int)s->nslots;
  r->slot = slot;
  for (int i = 0; i < r->nslots; i++) r->efd[i] = fd + 1 + i;
  return 0;
}

void gw_ring_close(gw_ring *r) {
  if (r->shm) munmap(r->shm, r->map_len);
  if (r->memfd >= 0) { /* the supervisor's own descriptors; a child's were inherited */
    close(r->memfd);
    for (int i = 0; i < GW_RING_MAX_SLOTS; i++)
      if (r->efd[i] >= 0) close(r->efd[i]);
  }
  gw_ring__clear(r);
}

static void gw_ring__poke(const gw_ring *r, int i) {
  uint64_t one = 1;
  /* EAGAIN: the counter is full, the reader will wake anyway. */
  if (write(r->efd[i], &one, sizeof one) < 0 && errno != EAGAIN) { /* nothing to do */ }
}

/* ---- the writer ---- */

void gw_ring_lead(gw_ring *r) {
  assert(r->slot == 0);
  atomic_store(&r->shm->leader, (int32_t)getpid());
}

/* The next record begins a new segment. */
static void gw_ring__break(gw_ring *r) {
  gw_ring__shm *s = r->shm;
  atomic_store(&s->seg_count, 0);
  atomic_store(&s->seg_first, UINT64_MAX);
  atomic_fetch_add(&s->seg, 1);
}

void gw_ring_quit(gw_ring *r) {
  assert(r->slot == 0);
  gw_ring__break(r);
  gw_ring_orphan(r);
}

/* The record at position p as the writer sees it (its own bytes). */
static const gw_ring__hdr *gw_ring__at(const gw_ring *r, uint64_t p) {
  return (const gw_ring__hdr *)(r->data + p % r->cap);
}

/* Space at position p before the end of the buffer. */
static uint64_t gw_ring__room(const gw_ring *r, uint64_t p) { return r->cap - p % r->cap; }

/* Drops the oldest records until `need` more bytes fit, keeping the
 * segment's first offset and count true. */
static void gw_ring__make_room(gw_ring *r, uint64_t head, uint64_t need) {
  gw_ring__shm *s = r->shm;
  uint64_t seg = atomic_load(&s->seg);
  while (head + need - r->tail > r->cap) {
    uint64_t room = gw_ring__room(r, r->tail);
    if (room < GW_RING_HDR) { r->tail += room; continue; }
    const gw_ring__hdr *h = gw_ring__at(r, r->tail);
    assert(h->size >= GW_RING_HDR && h->size <= room && h->size % 8 == 0);
    if (!(h->flags & GW_RING_PAD) && h->seg == seg) atomic_fetch_sub(&s->seg_count, 1);
    r->tail += h->size;
  }
  atomic_store(&s->tail, r->tail);
  /* The segment's first offset: that of the first record at or after the
   * tail (over the end gap and pads). */
  for (uint64_t p = r->tail; p < head;) {
    uint64_t room = gw_ring__room(r, p);
    if (room < GW_RING_HDR) { p += room; continue; }
    const gw_ring__hdr *h = gw_ring__at(r, p);
    if (h->flags & GW_RING_PAD) { p += h->size; continue; }
    if (h->seg == seg) atomic_store(&s->seg_first, h->offset);
    break;
  }
}

void gw_ring_put(gw_ring *r, const gw_ring_rec *rec) {
  assert(r->slot == 0);
  gw_ring__shm *s = r->shm;
  size_t need = gw_ring__align(GW_RING_HDR + rec->key_len + rec->body_len);
  if (need > r->cap / 4) { /* readers fetch it from the broker */
    gw_ring__break(r);
    return;
  }
  uint64_t head = atomic_load_explicit(&s->head, memory_order_relaxed);
  if (!r->tail) r->tail = atomic_load(&s->tail); /* a restarted writer goes on */
  uint64_t room = gw_ring__room(r, head), pad = room < need ? room : 0;
  gw_ring__make_room(r, head, pad + need);
  /* Never backwards: a writer that died mid-record left reserve past head,
   * and readers must go on taking the bytes up to it for overwritten. */
  uint64_t reserve = atomic_load_explicit(&s->reserve, memory_order_relaxed);
  if (reserve < head + pad + need) reserve = head + pad + need;
  atomic_store_explicit(&s->reserve, reserve, memory_order_relaxed);
  atomic_thread_fence(memory_order_release); /* reserve before any byte */
  if (pad >= GW_RING_HDR) {
    gw_ring__hdr p = {.size = (uint32_t)pad, .flags = GW_RING_PAD};
    memcpy(r->data + head % r->cap, &p, sizeof p);
  }
  uint64_t seg = atomic_load(&s->seg);
  gw_ring__hdr h = {.size = (uint32_t)need, .flags = rec->flags & ~GW_RING_PAD, .seg = seg,
                    .offset = rec->offset, .digest = rec->digest,
                    .key_len = (uint32_t)rec->key_len, .body_len = (uint32_t)rec->body_len};
  uint8_t *at = r->data + (head + pad) % r->cap;
  memcpy(at, &h, sizeof h);
  memcpy(at + GW_RING_HDR, rec->key, rec->key_len);
  memcpy(at + GW_RING_HDR + rec->key_len, rec->body, rec->body_len);
  atomic_store_explicit(&s->head, head + pad + need, memory_order_release);
  /* After head: gw_ring_covers never names a record not yet readable. */
  if (atomic_load(&s->seg_count) == 0) atomic_store(&s->seg_first, rec->offset);
  atomic_fetch_add(&s->seg_count, 1);
  atomic_store(&s->seg_last, rec->offset);
}

void gw_ring_wake(gw_ring *r) {
  atomic_thread_fence(memory_order_seq_cst); /* head stored, then armed read */
  for (int i = 1; i < r->nslots; i++)
    if (atomic_exchange(&r->shm->armed[i], 0)) gw_ring__poke(r, i);
}

void gw_ring_orphan(gw_ring *r) {
  atomic_store(&r->shm->leader, 0);
  for (int i = 1; i < r->nslots; i++) gw_ring__poke(r, i);
}

/* ---- a reader ---- */

static int gw_ring__writer_lives(const gw_ring *r) {
  int32_t pid = atomic_load(&r->shm->leader);
  return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

int gw_ring_covers(const gw_ring *r, uint64_t offset, int newer) {
  gw_ring__shm *s = r->shm;
  if (!atomic_load(&s->leader) || !atomic_load(&s->seg_count)) return 0;
  uint64_t first = atomic_load(&s->seg_first), last = atomic_load(&s->seg_last);
  return first <= offset && (newer ? offset < last : offset <= last) &&
         gw_ring__writer_lives(r);
}

/* Was byte p whole when it was read? (after the reads) */
static int gw_ring__whole(const gw_ring *r, uint64_t p) {
  atomic_thread_fence(memory_order_acquire);
  return atomic_load_explicit(&r->shm->reserve, memory_order_relaxed) <= p + r->cap;
}

/* The header at p, checked against the ring's bounds; -1 when it cannot
 * be a record (torn, or p was overtaken). Pads and the end gap are
 * stepped over by the callers. */
static int gw_ring__header(const gw_ring *r, uint64_t p, gw_ring__hdr *h) {
  uint64_t room = gw_ring__room(r, p);
  assert(room >= GW_RING_HDR);
  memcpy(h, r->data + p % r->cap, sizeof *h);
  if (h->size < GW_RING_HDR || h->size % 8 || h->size > room) return -1;
  if (h->flags & GW_RING_PAD) return 0;
  if ((uint64_t)h->key_len + h->body_len > h->size - GW_RING_HDR) return -1;
  return 0;
}

/* Steps pos over the end gap and pads up to the next record, or head. */
static gw_ring_got gw_ring__skip(gw_ring *r, uint64_t head) {
  while (r->pos < head) {
    uint64_t room = gw_ring__room(r, r->pos);
    if (room < GW_RING_HDR) { r->pos += room; continue; }
    gw_ring__hdr h;
    if (gw_ring__header(r, r->pos, &h) != 0 || !gw_ring__whole(r, r->pos))
      return GW_RING_OVERTAKEN;
    if (!(h.flags & GW_RING_PAD)) return GW_RING_REC;
    r->pos += h.size;
  }
  return GW_RING_NONE;
}

int gw_ring_seek(gw_ring *r, uint64_t offset) {
  gw_ring__shm *s = r->shm;
  uint64_t head = atomic_load_explicit(&s->head, memory_order_acquire);
  uint64_t seg = atomic_load(&s->seg);
  r->pos = atomic_load(&s->tail);
  for (;;) {
    if (gw_ring__skip(r, head) != GW_RING_REC) return -1;
    gw_ring__hdr h;
    if (gw_ring__header(r, r->pos, &h) != 0 || !gw_ring__whole(r, r->pos)) return -1;
    if (h.seg == seg && h.offset == offset) break;
    if (h.seg == seg && h.offset > offset) return -1;
    r->pos += h.size;
  }
  if (head - r->pos > r->cap / 4 * 3) return -1; /* overwritten soon */
  r->seg = seg;
  r->writer = atomic_load(&s->leader);
  return r->writer ? 0 : -1;
}

gw_ring_got gw_ring_next(gw_ring *r, gw_ring_rec *out) {
  gw_ring__shm *s = r->shm;
  /* Gone, quit, or another process since the seek (a restarted writer
   * goes on in a new segment anyway). */
  if (atomic_load(&s->leader) != r->writer) return GW_RING_ENDED;
  uint64_t head = atomic_load_explicit(&s->head, memory_order_acquire);
  if (head - r->pos > r->cap) return GW_RING_OVERTAKEN;
  gw_ring_got got = gw_ring__skip(r, head);
  if (got != GW_RING_REC) return got;
  gw_ring__hdr h;
  if (gw_ring__header(r, r->pos, &h) != 0 || !gw_ring__whole(r, r->pos))
    return GW_RING_OVERTAKEN;
  if (h.seg != r->seg) return GW_RING_ENDED;
  const char *at = (const char *)r->data + r->pos % r->cap;
  *out = (gw_ring_rec){.offset = h.offset, .digest = h.digest, .flags = h.flags,
                       .key = at + GW_RING_HDR, .key_len = h.key_len,
                       .body = at + GW_RING_HDR + h.key_len, .body_len = h.body_len};
  r->cur = r->pos;
  r->pos += h.size;
  return GW_RING_REC;
}

int gw_ring_still(const gw_ring *r) { return gw_ring__whole(r, r->cur); }

int gw_ring_arm(gw_ring *r) {
  gw_ring__shm *s = r->shm;
  atomic_store(&s->armed[r->slot], 1);
  atomic_thread_fence(memory_order_seq_cst); /* armed stored, then head read */
  return atomic_load(&s->head) != r->pos || atomic_load(&s->leader) != r->writer;
}

int gw_ring_fd(const gw_ring *r) { return r->efd[r->slot]; }

void gw_ring_drain(gw_ring *r) {
  uint64_t v;
  if (read(r->efd[r->slot], &v, sizeof v) < 0) { /* already drained */ }
}
