/*
 * gw_ws.h - the websocket protocol of an upgraded connection, through
 * wslay, without a socket.
 *
 * Owns: the wslay event context, created when bytes arrive and freed again
 * as soon as the stream is between messages (gw_ws_track says when), so an
 * idle connection holds none of wslay's ~9 KiB; framing rules wslay leaves
 * to us (max_frame, a 1-byte close body); the reassembly of a client's data
 * message into one buffer of ours (wslay runs unbuffered: buffering, it
 * allocates a chunk and a queue cell per fragment, ~90 bytes of heap per
 * 1-byte fragment), held against a process-wide budget (gw_ws_budget);
 * the closing handshake as wslay sees it; decompressing a client's message
 * when permessage-deflate was negotiated (the decompressed size bounded by
 * max_message, 1009, as the compressed one is). Data frames to the client do not
 * go through wslay: it copies every message it queues, and a group message
 * is framed once for all.
 *
 * Calls go one way. The caller (gw_conn) lends each call a gw_ws_io: where
 * the bytes wslay owes the client go (pong, close: whole frames) and where
 * a complete client message goes. What happened comes back as a result;
 * the caller decides what it means for the connection (its state, its
 * deadlines). A unit test or a fuzzer drives it with a fake io.
 * Must not: know the connection, the server, the socket or the clock.
 */
#ifndef GW_WS_H
#define GW_WS_H

#include <stddef.h>
#include <stdint.h>
#include <wslay/wslay.h>

#include "gw_deflate.h"
#include "gw_ws_track.h"

/* Close codes (RFC 6455 7.4.1) the gateway sends or records. */
enum {
  GW_WS_NORMAL = 1000,
  GW_WS_GOING_AWAY = 1001,
  GW_WS_PROTOCOL_ERROR = 1002,
  GW_WS_ABNORMAL = 1006, /* never on the wire: no close frame was exchanged */
  GW_WS_INVALID_DATA = 1007,
  GW_WS_POLICY = 1008,
  GW_WS_TOO_BIG = 1009,
  GW_WS_INTERNAL = 1011,
  GW_WS_TRY_AGAIN = 1013,
  GW_WS_TLS_FAILED = 1015 /* never on the wire, like 1006 */
};

typedef struct gw_ws_sink {
  /* Bytes wslay owes the client (pong, close), whole frames. 0, or the
   * close code to fail the connection with when they cannot be queued
   * (1011: no memory; 1008: the client does not read what it is owed). */
  int (*send)(void *arg, const uint8_t *data, size_t len);
  /* A complete, valid client message (text: UTF-8 checked by wslay, which
   * validates chunk by chunk even unbuffered, so a bad byte fails at once
   * with 1007). */
  void (*message)(void *arg, int binary, const uint8_t *msg, size_t len);
} gw_ws_sink;

/* Bytes held in partially received client messages, for one process: the
 * sum of every connection's reassembly buffer (its capacity, what the heap
 * pays). A message that would take `used` past `limit` is refused with
 * close 1013 (try again later). Kept by the caller (the server's stats). */
typedef struct gw_ws_budget {
  uint64_t limit;   /* gateway.max_partial_total */
  uint64_t used;    /* == the sum of msg_cap over live gw_ws */
  uint64_t refused; /* connections closed 1013 for it */
} gw_ws_budget;

/* What one call lends the protocol: kept on the caller's stack, never
 * stored past the call (an idle connection pays no bytes for it). */
typedef struct gw_ws_io {
  const gw_ws_sink *sink;
  void *arg;
  uint64_t max_frame;   /* gateway.max_frame: one frame's payload */
  uint64_t max_message; /* gateway.max_message: one reassembled message */
  uint64_t now_ms;      /* loop time, for the ping rate */
  uint64_t id;          /* the connection's, for logs */
  gw_ws_budget *budget; /* the process's, charged for reassembly buffers */
  uint32_t max_pings;   /* pings per second a client may send (1008 above) */
  gw_deflate *deflate;  /* the process's, for compressed messages (gw_pmd) */
  uint16_t fail_code;   /* private (reset by each call): the sink's refusal */
  const uint8_t *rd;    /* private: the bytes of this feed not yet parsed */
  size_t rd_len;
} gw_ws_io;

typedef struct gw_ws {
  wslay_event_context_ptr ctx; /* NULL while the stream is between messages */
  gw_ws_io *io;                /* the current call's, NULL between calls */
  gw_ws_track track;           /* where the client's stream stands */
  uint32_t ping_second;        /* the second (loop time) ping_count is for */
  uint32_t ping_count;         /* pings from the client in that second */
  uint8_t *msg;                /* the data message being reassembled, or NULL */
  uint32_t msg_len, msg_cap;   /* its bytes so far; room (charged to the budget) */
  uint8_t msg_binary;          /* its opcode was binary */
  uint8_t frame_data;          /* the frame being read is a data frame */
  uint8_t msg_z;               /* that message is compressed (RSV1 on its first frame) */
  uint8_t pmd;                 /* GW_PMD_* negotiated at the upgrade (gw_pmd.h) */
  uint64_t zlast;              /* serial (gw_buf_serial) of the last compressed message
                                  queued to the client: what its window ends with
                                  (GW_PMD_CHAIN), set by the caller as it queues */
} gw_ws;

typedef enum {
  GW_WS_OK = 0,     /* nothing for the caller to do */
  GW_WS_CLOSED,     /* a close frame is on its way out: *code says why (the
                       client's code when it closed first) */
  GW_WS_FAILED      /* cannot go on (no memory): destroy with *code */
} gw_ws_result;

/* Bytes from the client (decrypted under TLS). Messages reach the sink
 * during the call. GW_WS_CLOSED once, when the closing handshake starts on
 * this call (a close from the client, or a protocol error we answered). */
gw_ws_result gw_ws_feed(gw_ws *ws, gw_ws_io *io, const uint8_t *data,
                        size_t len, uint16_t *code);

/* Queues a ping (the keepalive). */
gw_ws_result gw_ws_ping(gw_ws *ws, gw_ws_io *io, uint16_t *code);

/* Starts the closing handshake with code and reason (at most 123 bytes).
 * May be called from the sink's message handler during a feed: the feed
 * then sends the close and reports it. Messages read in that same feed
 * after the close are still handed to the sink, which drops them. */
gw_ws_result gw_ws_close(gw_ws *ws, gw_ws_io *io, uint16_t code,
                         const char *reason);

/* 1 while the closing handshake waits for the client's close frame. */
int gw_ws_awaiting_close(const gw_ws *ws);

/* 1 while wslay's context exists (a message on its way, or a close). */
int gw_ws_holds_context(const gw_ws *ws);

/* Releases the context and any partial message, giving its bytes back to
 * budget (the connection's close callback). */
void gw_ws_free(gw_ws *ws, gw_ws_budget *budget);

#endif
