/*
 * gw_send.h - a connection's send queue: shared frames waiting for the
 * socket, written with one writev per connection per loop iteration.
 *
 * Owns: the queue (out_head..out_tail of gw_conn), its byte count and its
 * bound, the write in flight, and the server's list of connections with
 * something to write. Under TLS the queue holds ciphertext, encrypted here
 * in queue order. Must not: decide anything about the connection's state
 * beyond "it has to go" (write error, slow reader).
 */
#ifndef GW_SEND_H
#define GW_SEND_H

#include <stddef.h>

#include "gw_buf.h"

typedef struct gw_conn gw_conn;
typedef struct gw_server gw_server;

/* A data frame for an open connection (takes a new reference). A reader
 * whose unsent bytes would pass max_send_queue is closed (1008) instead. */
void gw_send_frame(gw_conn *c, gw_buf *b);

/* Frames a text (opcode 1) or binary (2) message and queues it as above. */
void gw_send_text(gw_conn *c, int opcode, const char *data, size_t len);

/* Bytes owed whatever the state (HTTP responses, wslay's control frames):
 * not bounded, encrypted under TLS. 0, or -1 when out of memory. */
int gw_send_owed(gw_conn *c, gw_buf *b);
int gw_send_copy(gw_conn *c, const void *data, size_t len);

/* Bytes that go to the socket as they are (TLS records). */
int gw_send_raw(gw_conn *c, gw_buf *b);

/* Drops every queued frame no write has started on (so a close frame can
 * follow at once). Not under TLS, where it would break the record stream. */
void gw_send_drop_unsent(gw_conn *c);

/* Writes what the connection has queued, if no write is in flight. */
void gw_send_flush(gw_conn *c);

/* The loop's check phase: flushes every connection marked since the last. */
void gw_send_flush_dirty(gw_server *s);

/* Releases the queue (the connection's close callback). */
void gw_send_free(gw_conn *c);

#endif
