/*
 * gw_send.h - a connection's send queue: shared frames waiting for the
 * socket, as (reference, offset) nodes.
 *
 * Owns: the queue, its byte count, and which nodes the write in flight
 * covers (so that dropping unsent frames never cuts a frame the kernel has
 * half taken). A pure data structure: no socket, no libuv loop, no
 * connection. gw_conn does the writing (one writev per connection per loop
 * iteration) and decides what a full queue means.
 * Must not: write to a socket, or know about TLS (under TLS it holds
 * ciphertext records, which gw_conn encrypted in queue order).
 */
#ifndef GW_SEND_H
#define GW_SEND_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "gw_buf.h"

/* Most nodes one writev covers. */
#define GW_SEND_IOV_MAX 64

/* One queued frame: 16 bytes, one malloc per delivery. Public only so that
 * bench-sizes can count it; nothing outside gw_send.c walks the nodes. */
typedef struct gw_send__node {
  struct gw_send__node *next;
  gw_buf *buf;
} gw_send__node;

typedef struct gw_send {
  gw_send__node *head, *tail;
  size_t bytes;       /* unsent bytes queued */
  size_t wr_bytes;    /* bytes handed to the write in flight */
  uint32_t off;       /* bytes of head already written */
  uint32_t wr_nodes;  /* nodes covered by the write in flight */
  uint32_t tail_room; /* bytes a copy may still add to the tail's buffer */
  uint8_t writing;    /* a write is in flight */
} gw_send;

/* A copied buffer is made at least this big, so that the small frames that
 * follow (pongs, HTTP answers) fill it instead of costing a node each. */
#define GW_SEND_COPY_ROOM 512

/* Appends b (takes a reference). 0, or -1 when out of memory. */
int gw_send_push(gw_send *q, gw_buf *b);

/* Appends a copy of len bytes: into the room left in the tail's buffer when
 * it is a copy too, else into a new one of at least GW_SEND_COPY_ROOM
 * bytes. A flood of 2-byte pongs thus costs its bytes, not a malloc'd node
 * and buffer (~64 bytes) each. 0, or -1 when out of memory. */
int gw_send_push_copy(gw_send *q, const void *data, size_t len);

/* 1 when nothing is queued and no write is in flight. */
static inline int gw_send_empty(const gw_send *q) { return !q->head && !q->writing; }

/* Fills iov with what is queued (at most GW_SEND_IOV_MAX nodes); returns
 * the count and the bytes they hold. */
size_t gw_send_gather(const gw_send *q, uv_buf_t *iov, size_t *bytes);

/* Forgets n bytes the kernel has taken. */
void gw_send_consume(gw_send *q, size_t n);

/* A write of the first `nodes` nodes (`bytes` bytes) is in flight. */
void gw_send_begin_write(gw_send *q, uint32_t nodes, size_t bytes);

/* The write in flight completed: its bytes are gone. */
void gw_send_end_write(gw_send *q);

/* Drops every queued frame no write has started on, so that a close frame
 * can follow at once. A frame partly written stays (the client would see
 * half a frame). */
void gw_send_drop_unsent(gw_send *q);

/* Releases every node (the connection's close callback). */
void gw_send_free(gw_send *q);

#endif
