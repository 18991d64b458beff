/*
 * gw_deflate.h - permessage-deflate's compression and decompression
 * (RFC 7692 section 7.2) for one gateway process, with zlib.
 *
 * Owns: one raw deflate stream and one raw inflate stream per process,
 * both reset before every message, so no connection holds compression
 * state: an idle connection pays nothing and a message compressed once
 * serves every subscriber. The compressed twins of a frame: alone
 * (gw_buf.z), which any client reads, and after its group's previous
 * event (gw_buf.zc: that event's text set as the window), which a client
 * whose window ends with that event reads (gw_pmd.h: clients keep their
 * windows unless they ask server_no_context_takeover); each made once.
 * The inflated copy of a client's message (client_no_context_takeover:
 * each alone), bounded by the caller's limit (a zip bomb is refused when
 * its output passes the limit, never allocated).
 * Must not: know connections, sockets or the history (gw_hist accounts the
 * twins of the frames it keeps), or keep a buffer past its bound (the
 * scratch buffers shrink back after a large message).
 *
 * Costs (docs/BENCHMARKS.md, Compression): level 1 compresses a 2 KB job
 * event in ~19 us (a tight loop; 35-50 us in a gateway at 50 events/s, its
 * caches cold); a process's streams take ~300 KiB (zlib's window and
 * hash tables), made once at start-up.
 */
#ifndef GW_DEFLATE_H
#define GW_DEFLATE_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#include "gw_buf.h"

typedef struct gw_deflate_stats {
  uint64_t twins;       /* frames compressed (each once, however many receive it) */
  uint64_t plain_bytes; /* their payload bytes before */
  uint64_t z_bytes;     /* ... and after */
  uint64_t not_smaller; /* compressed to no fewer bytes: sent as they were */
  uint64_t chained;     /* frames compressed once more after their group's previous event */
  uint64_t z_bytes_chained; /* their payload bytes after */
  uint64_t inflated;    /* client messages decompressed */
  uint64_t refused;     /* client messages refused: too big once inflated, or not deflate */
} gw_deflate_stats;

typedef struct gw_deflate {
  z_stream def, inf;
  uint8_t def_ready, inf_ready;
  size_t min_size;     /* payloads below it are not compressed */
  uint8_t *zout;       /* compression scratch */
  size_t zout_cap;
  uint8_t *iout;       /* inflated message, valid until the next inflate */
  size_t iout_cap;
  gw_deflate_stats stats;
} gw_deflate;

/* Scratch kept between messages; a larger one is freed after its message. */
#define GW_DEFLATE_KEEP 65536

/* level: zlib's, 1..9. 0, or -1 when zlib cannot start (no memory). */
int gw_deflate_init(gw_deflate *d, int level, size_t min_size);
void gw_deflate_free(gw_deflate *d);

/* The frame to send a client that negotiated compression in place of
 * frame: its compressed twin (RSV1 set, same opcode), or frame itself when
 * it is small, compresses to no fewer bytes, or memory is short (a plain
 * message is always allowed, RFC 7692 section 6). Made on the first call
 * and kept on frame (frame->z), so later calls cost nothing. frame must be
 * a whole unfragmented data frame built by gw_buf_frame. No new reference
 * is taken. */
gw_buf *gw_deflate_twin(gw_deflate *d, gw_buf *frame);

/* The frame to send in place of frame to a client that kept its context
 * (GW_PMD_CHAIN) and whose last compressed message was `after` (the same
 * kind of frame: its group's previous event): frame compressed with
 * after's text as the window, so what the two share (keys, play and task
 * names, hosts, UUIDs) costs a back-reference (5.6x against 2.4x alone on
 * job events). Made once per frame and kept (frame->zc); the twin alone
 * when that is no larger, or when the frame was chained to another
 * message already. A client that decompressed `after` last has exactly
 * its text at the end of its window, whatever else it received plain. */
gw_buf *gw_deflate_twin_after(gw_deflate *d, gw_buf *frame, gw_buf *after);

typedef enum {
  GW_INFLATE_OK = 0,
  GW_INFLATE_TOO_BIG, /* the output would pass max: close 1009 */
  GW_INFLATE_BAD,     /* not a valid deflate stream: close 1007 */
  GW_INFLATE_NOMEM    /* close 1011 */
} gw_inflate_result;

/* Decompresses a client's message (its frames' payloads, joined): RFC 7692
 * section 7.2.2, the 4 octets 00 00 ff ff appended. On OK *out (len
 * *out_len) is valid until the next call or gw_deflate_trim. */
gw_inflate_result gw_deflate_inflate(gw_deflate *d, const uint8_t *in, size_t len, size_t max,
                                     const uint8_t **out, size_t *out_len);

/* Gives back scratch over GW_DEFLATE_KEEP (after a large message). */
void gw_deflate_trim(gw_deflate *d);

#endif
