/*
 * gw_ws.c - the websocket protocol of an upgraded connection (see gw_ws.h).
 *
 * wslay parses and validates what the client sends (masking,
 * fragmentation, control frames, UTF-8, frame size) and writes the control
 * frames it owes (pong, close) through gw_ws__send, which hands them whole
 * to the sink. Our recv callback gives wslay the bytes of the current feed
 * and nothing else, so wslay never blocks and never buffers a read of its
 * own beyond a partial frame.
 *
 * wslay runs unbuffered (no_buffering): it still buffers control frames
 * (125 bytes at most) and validates UTF-8 as chunks pass, but data payload
 * comes to gw_ws__chunk and is reassembled here, in one buffer per
 * connection that doubles as it fills. Heap per partial message is at most
 * twice its payload whatever the fragment size, at the cost of a realloc
 * per doubling (a memmove of what came so far) and of the message limit
 * being ours to check (wslay's counts one frame when unbuffered).
 */
#include "gw_ws.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "gw_pmd.h"
#include "log.h"
#include "utf8.h"

static ssize_t gw_ws__recv(wslay_event_context_ptr ctx, uint8_t *buf,
                           size_t len, int flags, void *user) {
  (void)flags;
  gw_ws *ws = user;
  assert(ws->io); /* wslay calls back only inside our calls */
  gw_ws_io *io = ws->io;
  if (io->rd_len == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  size_t n = io->rd_len < len ? io->rd_len : len;
  memcpy(buf, io->rd, n);
  io->rd += n;
  io->rd_len -= n;
  return (ssize_t)n;
}

static ssize_t gw_ws__send(wslay_event_context_ptr ctx, const uint8_t *data,
                           size_t len, int flags, void *user) {
  (void)flags;
  gw_ws *ws = user;
  assert(ws->io);
  /* Taking every byte means wslay never holds half a frame, so our own data
   * frames can never land inside one of its control frames. */
  int code = ws->io->sink->send(ws->io->arg, data, len);
  if (code != 0) {
    ws->io->fail_code = (uint16_t)code;
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  return (ssize_t)len;
}

/* Gives the reassembly buffer back (to the heap and to the budget). */
static void gw_ws__drop_msg(gw_ws *ws, gw_ws_budget *budget) {
  if (ws->msg_cap) {
    assert(budget && budget->used >= ws->msg_cap);
    budget->used -= ws->msg_cap;
  }
  free(ws->msg);
  ws->msg = NULL;
  ws->msg_len = ws->msg_cap = 0;
}

static void gw_ws__refuse(wslay_event_context_ptr ctx, uint16_t code, const char *reason) {
  wslay_event_queue_close(ctx, code, (const uint8_t *)reason, strlen(reason));
  wslay_event_shutdown_read(ctx);
}

/* What a limit on a message's bytes allows on the wire: a compressed
 * message is held to `limit` once decompressed (gw_ws__inflated), and may
 * take up to an eighth more before (deflate's worst expansion, fixed
 * Huffman codes on incompressible bytes, with its block headers), so
 * that a client compressing everything is not refused under the limit. */
static uint64_t gw_ws__wire(uint64_t limit, int compressed) {
  return compressed ? limit + limit / 8 + 64 : limit;
}

/* Room for `need` bytes: doubling (so a message in n fragments costs
 * O(log n) reallocs, not n), never past max_message, charged to the
 * budget first. -1 with the connection refused (1013, or 1011 without
 * memory). */
static int gw_ws__reserve(gw_ws *ws, wslay_event_context_ptr ctx, uint64_t need) {
  gw_ws_io *io = ws->io;
  if (need <= ws->msg_cap) return 0;
  uint64_t cap = ws->msg_cap ? (uint64_t)ws->msg_cap * 2 : 256;
  if (cap < need) cap = need;
  uint64_t max = gw_ws__wire(io->max_message, ws->msg_z);
  if (cap > max) cap = max; /* need <= max: checked at each frame's start */
  gw_ws_budget *b = io->budget;
  /* Near the limit, exactly what is needed rather than double. */
  if (b->used - ws->msg_cap + cap > b->limit) cap = need;
  if (b->used - ws->msg_cap + cap > b->limit) {
    b->refused++;
    log_info("conn_partial_budget", "id=%llu held=%u used=%llu limit=%llu",
             (unsigned long long)io->id, ws->msg_cap, (unsigned long long)b->used,
             (unsigned long long)b->limit);
    gw_ws__refuse(ctx, GW_WS_TRY_AGAIN, "gateway busy, try again later");
    return -1;
  }
  uint8_t *p = realloc(ws->msg, (size_t)cap);
  if (!p) {
    gw_ws__refuse(ctx, GW_WS_INTERNAL, "out of memory");
    return -1;
  }
  b->used = b->used - ws->msg_cap + cap;
  ws->msg = p;
  ws->msg_cap = (uint32_t)cap;
  return 0;
}

/* A piece of a frame's payload (already UTF-8 checked for text). Control
 * frames' are wslay's to buffer; after a refusal, wslay still hands over
 * the rest of the read, which is dropped. */
static void gw_ws__chunk(wslay_event_context_ptr ctx,
                         const struct wslay_event_on_frame_recv_chunk_arg *arg, void *user) {
  gw_ws *ws = user;
  assert(ws->io);
  if (!ws->frame_data || arg->data_length == 0 || !wslay_event_get_read_enabled(ctx)) return;
  uint64_t need = (uint64_t)ws->msg_len + arg->data_length; /* within the limit: frame start */
  if (gw_ws__reserve(ws, ctx, need) != 0) return;
  memcpy(ws->msg + ws->msg_len, arg->data, arg->data_length);
  ws->msg_len = (uint32_t)need;
}

/* A compressed message (RFC 7692 7.2.2), decompressed into the process's
 * scratch buffer within max_message, its UTF-8 checked (wslay cannot check
 * compressed text), then handed on like any other. */
static void gw_ws__inflated(gw_ws *ws, wslay_event_context_ptr ctx) {
  gw_ws_io *io = ws->io;
  const uint8_t *out;
  size_t n;
  switch (gw_deflate_inflate(io->deflate, ws->msg, ws->msg_len, io->max_message, &out, &n)) {
    case GW_INFLATE_OK: break;
    case GW_INFLATE_TOO_BIG:
      log_info("conn_inflate_refused", "id=%llu compressed=%u limit=%llu",
               (unsigned long long)io->id, ws->msg_len, (unsigned long long)io->max_message);
      gw_ws__refuse(ctx, GW_WS_TOO_BIG, "message too big");
      return;
    case GW_INFLATE_BAD: gw_ws__refuse(ctx, GW_WS_INVALID_DATA, "invalid compressed data"); return;
    default: gw_ws__refuse(ctx, GW_WS_INTERNAL, "out of memory"); return;
  }
  if (!ws->msg_binary && !utf8_valid((const char *)out, n))
    gw_ws__refuse(ctx, GW_WS_INVALID_DATA, "invalid UTF-8");
  else
    io->sink->message(io->arg, ws->msg_binary, out, n);
  gw_deflate_trim(io->deflate);
}

/* A whole message. Data: ours, from the reassembly buffer, freed at once
 * (an idle connection holds none); not handed on after a refusal. */
static void gw_ws__msg(wslay_event_context_ptr ctx,
                       const struct wslay_event_on_msg_recv_arg *arg,
                       void *user) {
  gw_ws *ws = user;
  assert(ws->io);
  if (arg->opcode != WSLAY_TEXT_FRAME && arg->opcode != WSLAY_BINARY_FRAME) return;
  if (wslay_event_get_read_enabled(ctx)) {
    if (ws->msg_z) gw_ws__inflated(ws, ctx);
    else ws->io->sink->message(ws->io->arg, ws->msg_binary, ws->msg, ws->msg_len);
  }
  gw_ws__drop_msg(ws, ws->io->budget);
}

/* wslay answers every ping with a pong we must queue: a fixed one-second
 * window (8 bytes per connection) bounds how many a client can make us owe.
 * 1 when this ping is one too many. */
static int gw_ws__ping_flood(gw_ws *ws) {
  uint32_t second = (uint32_t)(ws->io->now_ms / 1000);
  if (second != ws->ping_second) {
    ws->ping_second = second;
    ws->ping_count = 0;
  }
  return ++ws->ping_count > ws->io->max_pings;
}

/* A data frame's start: the message so far plus this frame within
 * max_message (1009), checked before a byte of it is stored. */
static void gw_ws__data_start(gw_ws *ws, wslay_event_context_ptr ctx,
                              const struct wslay_event_on_frame_recv_start_arg *arg) {
  ws->frame_data = 1;
  if (arg->opcode != WSLAY_CONTINUATION_FRAME) {
    assert(ws->msg_len == 0); /* wslay refuses a new message inside one (1002) */
    ws->msg_binary = arg->opcode == WSLAY_BINARY_FRAME;
    ws->msg_z = wslay_get_rsv1(arg->rsv); /* wslay allows it only when negotiated */
    assert(!ws->msg_z || (ws->pmd & GW_PMD_RECV));
  }
  if ((uint64_t)ws->msg_len + arg->payload_length > gw_ws__wire(ws->io->max_message, ws->msg_z))
    gw_ws__refuse(ctx, GW_WS_TOO_BIG, "message too big");
}

/* This bounds single frames and whole messages before a byte of their
 * payload is stored, and the rate of pings. */
static void gw_ws__frame_start(wslay_event_context_ptr ctx,
                               const struct wslay_event_on_frame_recv_start_arg *arg,
                               void *user) {
  gw_ws *ws = user;
  ws->frame_data = 0;
  if (arg->opcode == WSLAY_PING && gw_ws__ping_flood(ws)) {
    log_info("conn_control_flood", "id=%llu pings_per_s=%u", (unsigned long long)ws->io->id,
             ws->ping_count);
    gw_ws__refuse(ctx, GW_WS_POLICY, "too many pings");
    return;
  }
  /* A close body is empty or a code plus a reason; wslay would read a
   * 1-byte body as "no code". RFC 6455 5.5.1: a protocol error. */
  if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->payload_length == 1) {
    wslay_event_queue_close(ctx, GW_WS_PROTOCOL_ERROR, NULL, 0);
    wslay_event_shutdown_read(ctx);
    return;
  }
  /* A compressed message's frames (RSV1 on its first) get the same room. */
  int compressed = arg->opcode == WSLAY_CONTINUATION_FRAME ? ws->msg_z : wslay_get_rsv1(arg->rsv);
  if (arg->payload_length > gw_ws__wire(ws->io->max_frame, compressed)) {
    gw_ws__refuse(ctx, GW_WS_TOO_BIG, "frame too big");
    return;
  }
  if (arg->opcode < WSLAY_CONNECTION_CLOSE) gw_ws__data_start(ws, ctx, arg);
}

static const struct wslay_event_callbacks gw_ws__callbacks = {
    .recv_callback = gw_ws__recv,
    .send_callback = gw_ws__send,
    .on_frame_recv_start_callback = gw_ws__frame_start,
    .on_frame_recv_chunk_callback = gw_ws__chunk,
    .on_msg_recv_callback = gw_ws__msg,
};

/* wslay's context exists while a message is being received or a close is
 * under way; it goes as soon as the stream is between messages with nothing
 * left for wslay to write. A chatty connection pays a create (a few mallocs,
 * ~9 KiB zeroed) per burst of messages; an idle one pays nothing. */
static int gw_ws__begin(gw_ws *ws, gw_ws_io *io) {
  assert(!ws->io); /* calls do not nest */
  ws->io = io;
  io->fail_code = 0;
  if (ws->ctx) return 0;
  if (wslay_event_context_server_init(&ws->ctx, &gw_ws__callbacks, ws) != 0) {
    ws->ctx = NULL;
    return -1;
  }
  /* Unbuffered, wslay checks this against one frame: the message is ours. */
  wslay_event_config_set_max_recv_msg_length(ws->ctx, gw_ws__wire(io->max_message,
                                                                 ws->pmd & GW_PMD_RECV));
  wslay_event_config_set_no_buffering(ws->ctx, 1);
  /* RSV1 marks a compressed message (RFC 7692 6); without the extension
   * wslay fails it with 1002. */
  if (ws->pmd & GW_PMD_RECV) {
    assert(io->deflate);
    wslay_event_config_set_allowed_rsv_bits(ws->ctx, WSLAY_RSV1_BIT);
  }
  return 0;
}

/* Ends a call: lets wslay write what it owes (pong, close), reports a close
 * that started now, and frees the context when nothing needs it. */
static gw_ws_result gw_ws__end(gw_ws *ws, int was_closed, uint16_t *code) {
  gw_ws_result r = GW_WS_OK;
  if (wslay_event_want_write(ws->ctx) && wslay_event_send(ws->ctx) != 0) {
    *code = ws->io->fail_code ? ws->io->fail_code : GW_WS_INTERNAL;
    r = GW_WS_FAILED;
  } else if (!was_closed && wslay_event_get_close_sent(ws->ctx)) {
    /* The client's close (answered) or a protocol error (1002, 1007, 1009
     * sent). */
    *code = wslay_event_get_close_received(ws->ctx)
                ? wslay_event_get_status_code_received(ws->ctx)
                : wslay_event_get_status_code_sent(ws->ctx);
    r = GW_WS_CLOSED;
  } else if (gw_ws_track_idle(&ws->track) && !wslay_event_want_write(ws->ctx) &&
             wslay_event_get_read_enabled(ws->ctx) && !wslay_event_get_close_sent(ws->ctx)) {
    assert(ws->msg_cap == 0); /* between messages: delivered and dropped */
    wslay_event_context_free(ws->ctx);
    ws->ctx = NULL;
  }
  ws->io = NULL;
  return r;
}

/* wslay's frame parser fails the call, with no close sent, on a control
 * frame over 125 bytes or fragmented and on a length not in its shortest
 * form (our recv callback never fails). Those are protocol errors: the
 * client gets close 1002, written here because wslay has queued an empty
 * close of its own, which is never sent. */
static gw_ws_result gw_ws__protocol_error(gw_ws *ws, uint16_t *code) {
  static const uint8_t close_1002[] = {0x88, 0x02, 0x03, 0xea};
  wslay_event_shutdown_write(ws->ctx);
  *code = GW_WS_PROTOCOL_ERROR;
  int rc = ws->io->sink->send(ws->io->arg, close_1002, sizeof(close_1002));
  ws->io = NULL;
  return rc == 0 ? GW_WS_CLOSED : GW_WS_FAILED;
}

static gw_ws_result gw_ws__feed(gw_ws *ws, gw_ws_io *io, const uint8_t *data,
                                size_t len, uint16_t *code) {
  if (gw_ws__begin(ws, io) != 0) {
    ws->io = NULL;
    *code = GW_WS_INTERNAL;
    return GW_WS_FAILED;
  }
  int was_closed = wslay_event_get_close_sent(ws->ctx);
  gw_ws_track_feed(&ws->track, data, len);
  io->rd = data;
  io->rd_len = len;
  int rc = wslay_event_recv(ws->ctx);
  io->rd = NULL;
  io->rd_len = 0;
  if (io->fail_code) { /* the sink refused what wslay owed (a pong) */
    ws->io = NULL;
    *code = io->fail_code;
    return GW_WS_FAILED;
  }
  if (rc == WSLAY_ERR_CALLBACK_FAILURE && !wslay_event_get_close_sent(ws->ctx)) {
    if (was_closed) { /* after our close: nothing more to say */
      ws->io = NULL;
      return GW_WS_OK;
    }
    return gw_ws__protocol_error(ws, code);
  }
  if (rc != 0) {
    ws->io = NULL;
    *code = GW_WS_INTERNAL;
    return GW_WS_FAILED;
  }
  return gw_ws__end(ws, was_closed, code);
}

/* A partial message is given back as soon as reading ends (a close either
 * way, a refusal, a failure): a closing connection lingers up to 2 s and
 * must not hold budget meanwhile. */
gw_ws_result gw_ws_feed(gw_ws *ws, gw_ws_io *io, const uint8_t *data,
                        size_t len, uint16_t *code) {
  gw_ws_result r = gw_ws__feed(ws, io, data, len, code);
  if (ws->msg_cap && (r != GW_WS_OK || !ws->ctx || !wslay_event_get_read_enabled(ws->ctx)))
    gw_ws__drop_msg(ws, io->budget);
  return r;
}

gw_ws_result gw_ws_ping(gw_ws *ws, gw_ws_io *io, uint16_t *code) {
  struct wslay_event_msg ping = {.opcode = WSLAY_PING, .msg = NULL, .msg_length = 0};
  if (gw_ws__begin(ws, io) != 0 || wslay_event_queue_msg(ws->ctx, &ping) != 0) {
    ws->io = NULL;
    *code = GW_WS_INTERNAL;
    return GW_WS_FAILED;
  }
  return gw_ws__end(ws, wslay_event_get_close_sent(ws->ctx), code);
}

gw_ws_result gw_ws_close(gw_ws *ws, gw_ws_io *io, uint16_t code,
                         const char *reason) {
  uint16_t ignored;
  if (ws->io) {
    /* From inside a feed (a message's handler closes the connection): the
     * feed's end sends the close and reports it. */
    assert(ws->ctx);
    int rc = wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, strlen(reason));
    /* NO_MORE_MSG: a close is queued already; the first one stands. */
    return rc == 0 || rc == WSLAY_ERR_NO_MORE_MSG ? GW_WS_CLOSED : GW_WS_FAILED;
  }
  if (gw_ws__begin(ws, io) != 0 ||
      wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason,
                              strlen(reason)) != 0) {
    ws->io = NULL;
    return GW_WS_FAILED;
  }
  /* Ours: the caller knows the code; CLOSED or OK is the same to it. */
  return gw_ws__end(ws, 1, &ignored) == GW_WS_FAILED ? GW_WS_FAILED : GW_WS_CLOSED;
}

int gw_ws_awaiting_close(const gw_ws *ws) {
  return ws->ctx && wslay_event_get_read_enabled(ws->ctx);
}

int gw_ws_holds_context(const gw_ws *ws) { return ws->ctx != NULL; }

void gw_ws_free(gw_ws *ws, gw_ws_budget *budget) {
  assert(!ws->io);
  gw_ws__drop_msg(ws, budget);
  if (ws->ctx) wslay_event_context_free(ws->ctx);
  ws->ctx = NULL;
}
