/*
 * gw_buf.h - reference-counted byte buffers for outgoing websocket frames.
 *
 * Owns: the frame bytes that many connections share. A group message is
 * framed once into one gw_buf and every member's send queue holds a
 * reference; the last writer to finish frees it. Must not: be shared across
 * threads while more than one thread holds a reference (the count is not
 * atomic: the AMQP thread builds a buffer, hands it over whole, and never
 * touches it again).
 */
#ifndef GW_BUF_H
#define GW_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw_buf {
  uint32_t refs;
  uint32_t len;
  /* The message's identity in clients' compression windows (gw_buf_serial),
   * shared by its compressed twins; 0 until asked. */
  uint64_t serial;
  /* The same message compressed (RFC 7692), for the clients that
   * negotiated it: NULL until one needs it, the buffer itself when
   * compressing does not pay. Built once by gw_deflate_twin and released
   * with the buffer, so an event is compressed once for all its
   * subscribers, as it is framed once. */
  struct gw_buf *z;
  /* Compressed once more with the message `zc_after` (its group's previous
   * event) as the window, for the clients that decompressed that one last
   * (gw_deflate_twin_after); NULL until one needs it. Released with it. */
  struct gw_buf *zc;
  uint64_t zc_after;
  uint8_t data[];
} gw_buf;

/* A buffer of len bytes (uninitialised) with one reference. NULL: no memory. */
gw_buf *gw_buf_new(size_t len);

/* A text (opcode 1) or binary (opcode 2) server frame holding payload: the
 * header (2, 4 or 10 bytes, unmasked as servers send) and the payload. */
gw_buf *gw_buf_frame(int opcode, const void *payload, size_t len);

/* The payload of a frame gw_buf_frame built (after its header). */
const uint8_t *gw_buf_payload(const gw_buf *b, size_t *len);

/* b's serial, given on first call from a counter of the process's loop
 * thread (never the AMQP thread's: the counter is not atomic). Never 0. */
uint64_t gw_buf_serial(gw_buf *b);

/* A buffer's bytes on the heap with its twins' (for memory bounds). */
size_t gw_buf_heap_bytes(const gw_buf *b);

/* The same frame with its payload left for the caller to write: *payload
 * points at the len bytes after the header. For a payload built in place
 * (gw_hist's envelopes), saving a copy. */
gw_buf *gw_buf_frame_new(int opcode, size_t len, uint8_t **payload);

static inline gw_buf *gw_buf_ref(gw_buf *b) {
  b->refs++;
  return b;
}

void gw_buf_unref(gw_buf *b);

/* Largest frame payload we build (a 32-bit length field keeps gw_buf small;
 * message limits are far below it). */
#define GW_BUF_MAX ((size_t)UINT32_MAX - 16)

#endif
