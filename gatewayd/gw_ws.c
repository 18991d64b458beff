/*
 * gw_ws.c - the websocket protocol of an upgraded connection (see gw_ws.h).
 *
 * wslay parses and validates what the client sends (masking,
 * fragmentation, control frames, UTF-8, size limit) and writes the control
 * frames it owes (pong, close) through gw_ws__send, which appends them to
 * the send queue. Our recv callback hands wslay the bytes of the current
 * read and nothing else, so wslay never blocks and never buffers a read of
 * its own beyond a partial frame.
 */
#include "gw_ws.h"

#include <string.h>

#include "gw_conn.h"
#include "log.h"

static ssize_t gw_ws__recv(wslay_event_context_ptr ctx, uint8_t *buf,
                           size_t len, int flags, void *user) {
  (void)flags;
  gw_conn *c = user;
  if (c->rd_len == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  size_t n = c->rd_len < len ? c->rd_len : len;
  memcpy(buf, c->rd, n);
  c->rd += n;
  c->rd_len -= n;
  return (ssize_t)n;
}

static ssize_t gw_ws__send(wslay_event_context_ptr ctx, const uint8_t *data,
                           size_t len, int flags, void *user) {
  (void)flags;
  gw_conn *c = user;
  /* Taking every byte means wslay never holds half a frame, so our own data
   * frames can never land inside one of its control frames. */
  if (gw_send_copy(c, data, len) != 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  return (ssize_t)len;
}

static void gw_ws__msg(wslay_event_context_ptr ctx,
                       const struct wslay_event_on_msg_recv_arg *arg,
                       void *user) {
  (void)ctx;
  gw_conn *c = user;
  if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME)
    gw_relay_client_message(c, arg->opcode == WSLAY_BINARY_FRAME, arg->msg,
                            arg->msg_length);
}

/* wslay bounds whole messages; this bounds single frames, before wslay
 * allocates room for the payload. */
static void gw_ws__frame_start(wslay_event_context_ptr ctx,
                               const struct wslay_event_on_frame_recv_start_arg *arg,
                               void *user) {
  gw_conn *c = user;
  /* A close body is empty or a code plus a reason; wslay would read a
   * 1-byte body as "no code". RFC 6455 5.5.1: a protocol error. */
  if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->payload_length == 1) {
    wslay_event_queue_close(ctx, 1002, NULL, 0);
    wslay_event_shutdown_read(ctx);
    return;
  }
  if (arg->payload_length <= (uint64_t)c->srv->cfg->max_frame) return;
  static const char reason[] = "frame too big";
  wslay_event_queue_close(ctx, 1009, (const uint8_t *)reason, sizeof(reason) - 1);
  wslay_event_shutdown_read(ctx);
}

static const struct wslay_event_callbacks gw_ws__callbacks = {
    .recv_callback = gw_ws__recv,
    .send_callback = gw_ws__send,
    .on_frame_recv_start_callback = gw_ws__frame_start,
    .on_msg_recv_callback = gw_ws__msg,
};

/* Lets wslay write what it owes (pong, close), then notices a close. */
static void gw_ws_after(gw_conn *c) {
  if (wslay_event_want_write(c->ws) && wslay_event_send(c->ws) != 0) {
    gw_conn_destroy(c, 1011);
    return;
  }
  if (c->state == GW_CONN_OPEN && wslay_event_get_close_sent(c->ws)) {
    /* wslay closed: the client's close (answered) or a protocol error
     * (1002, 1007, 1009 sent). */
    c->state = GW_CONN_CLOSING;
    c->close_code = wslay_event_get_close_received(c->ws)
                        ? wslay_event_get_status_code_received(c->ws)
                        : wslay_event_get_status_code_sent(c->ws);
    gw_timeq_push(&c->srv->closing, &c->tq, uv_now(c->srv->loop));
  }
  gw_conn_maybe_finish(c);
}

/* wslay's context exists while a message is being received or a close is
 * under way; it goes as soon as the stream is between messages with nothing
 * left for wslay to write. A chatty connection pays a create (a few mallocs,
 * ~9 KiB zeroed) per burst of messages; an idle one pays nothing. */
static int gw_ws__create(gw_conn *c) {
  if (c->ws) return 0;
  if (wslay_event_context_server_init(&c->ws, &gw_ws__callbacks, c) != 0) {
    c->ws = NULL;
    return -1;
  }
  wslay_event_config_set_max_recv_msg_length(c->ws, (uint64_t)c->srv->cfg->max_message);
  return 0;
}

static void gw_ws__release_if_idle(gw_conn *c) {
  if (!c->ws || c->state != GW_CONN_OPEN || !gw_ws_track_idle(&c->track)) return;
  if (wslay_event_want_write(c->ws) || !wslay_event_get_read_enabled(c->ws) ||
      wslay_event_get_close_sent(c->ws))
    return;
  wslay_event_context_free(c->ws);
  c->ws = NULL;
}

void gw_ws_feed(gw_conn *c, const char *data, size_t len) {
  if (gw_ws__create(c) != 0) {
    gw_conn_destroy(c, 1011);
    return;
  }
  gw_ws_track_feed(&c->track, (const uint8_t *)data, len);
  c->rd = (const uint8_t *)data;
  c->rd_len = len;
  int rc = wslay_event_recv(c->ws);
  c->rd = NULL;
  c->rd_len = 0;
  if (c->state == GW_CONN_CLOSED) return;
  if (rc == WSLAY_ERR_CALLBACK_FAILURE && c->state == GW_CONN_OPEN &&
      !wslay_event_get_close_sent(c->ws)) {
    /* wslay's frame parser fails the call, with no close sent, on a control
     * frame over 125 bytes or fragmented and on a length not in its
     * shortest form (our recv callback never fails). Those are protocol
     * errors: the client gets close 1002, written here because wslay has
     * queued an empty close of its own, which is never sent. */
    static const uint8_t close_1002[] = {0x88, 0x02, 0x03, 0xea};
    wslay_event_shutdown_write(c->ws);
    c->state = GW_CONN_CLOSING;
    c->close_code = 1002;
    if (gw_send_copy(c, close_1002, sizeof(close_1002)) != 0) {
      gw_conn_destroy(c, 1002);
      return;
    }
    gw_timeq_push(&c->srv->closing, &c->tq, uv_now(c->srv->loop));
    return;
  }
  if (rc != 0) {
    gw_conn_destroy(c, 1011);
    return;
  }
  if (c->state == GW_CONN_OPEN) {
    c->pinged = 0;
    gw_timeq_push(&c->srv->idle, &c->tq, uv_now(c->srv->loop));
  }
  gw_ws_after(c);
  gw_ws__release_if_idle(c);
}

void gw_ws_ping(gw_conn *c) {
  struct wslay_event_msg ping = {.opcode = WSLAY_PING, .msg = NULL, .msg_length = 0};
  c->pinged = 1;
  if (gw_ws__create(c) != 0 || wslay_event_queue_msg(c->ws, &ping) != 0) {
    gw_conn_destroy(c, 1011);
    return;
  }
  gw_ws_after(c);
  gw_ws__release_if_idle(c);
}

int gw_ws_close(gw_conn *c, int code, const char *reason) {
  if (gw_ws__create(c) != 0 ||
      wslay_event_queue_close(c->ws, (uint16_t)code, (const uint8_t *)reason,
                              strlen(reason)) != 0)
    return -1;
  c->state = GW_CONN_CLOSING;
  gw_timeq_push(&c->srv->closing, &c->tq, uv_now(c->srv->loop));
  gw_ws_after(c);
  return 0;
}

int gw_ws_awaiting_close(gw_conn *c) {
  return c->ws && wslay_event_get_read_enabled(c->ws);
}

void gw_ws_free(gw_conn *c) {
  if (c->ws) wslay_event_context_free(c->ws);
  c->ws = NULL;
}
