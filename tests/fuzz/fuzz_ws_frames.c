/*
 * fuzz_ws_frames.c - libFuzzer target: what a client sends after the 101,
 * through wslay configured as gw_conn_upgrade configures it (server
 * context, max_recv_msg_length = gateway.max_message), driven as
 * gw_ws_feed drives it: one wslay_event_recv per socket read, then
 * wslay_event_send of what wslay owes (pong, close) through a send callback
 * that takes every byte.
 *
 * gw_conn.c's wslay callbacks are static and tied to libuv and the server,
 * so they are mirrored here; what a message turns into is the real code:
 * the websocket.receive message (chan_msg_encode) and, for the data frames
 * the gateway writes itself, gw_buf_frame.
 *
 * Input: byte 0 = switches (bit 0: the smallest configurable max_message,
 * so that the 1009 path is reachable with small inputs; bit 1: the gateway
 * shuts down (close 1001) after the input; bit 2: it pings mid-way);
 * byte 1 = n, how many of the next bytes give read sizes (n % 8); then
 * those sizes, used in turn (0 = everything left); then the stream.
 */
#include <string.h>
#include <wslay/wslay.h>

#include "chan_msg.h"
#include "fuzz.h"
#include "gw_buf.h"
#include "utf8.h"

#define DEF_MAX_MESSAGE (1024 * 1024) /* gateway.max_message default */
#define MIN_MAX_MESSAGE 64            /* its smallest accepted value */
#define FUZZ_CHANNEL "websocket.send.amq.gen-fuzz!1"

typedef struct conn {
  const uint8_t *rd; /* the current read's bytes not yet given to wslay */
  size_t rd_len;
  size_t sent;       /* bytes wslay wrote (control frames) */
  uint64_t order;    /* as gw_conn's next_order */
  uint64_t max_message;
} conn;

static ssize_t on_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                       int flags, void *user) {
  (void)flags;
  conn *c = user;
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

static ssize_t on_send(wslay_event_context_ptr ctx, const uint8_t *data,
                       size_t len, int flags, void *user) {
  (void)ctx;
  (void)flags;
  conn *c = user;
  FUZZ_CHECK(len == 0 || data != NULL);
  c->sent += len;
  return (ssize_t)len;
}

/* The websocket.receive message gw_relay__receive would publish,
 * decoded again as a worker would read it. */
static void publish_receive(conn *c, int binary, const uint8_t *msg,
                            size_t len) {
  chan_msg m = {.kind = CHAN_MSG_RECEIVE, .reply_channel = FUZZ_CHANNEL,
                .path = "/websocket/", .order = c->order++,
                .is_binary = binary, .data = (char *)msg, .data_len = len};
  size_t json_len;
  char *json = chan_msg_encode(&m, &json_len);
  FUZZ_CHECK(json != NULL);
  chan_msg back;
  char err[128];
  FUZZ_CHECK(chan_msg_decode(CHAN_MSG_RECEIVE, json, json_len, &back, err,
                             sizeof(err)) == 0);
  /* Texts and bytes alike cross whole, a text's U+0000 included. */
  FUZZ_CHECK(back.is_binary == binary);
  FUZZ_CHECK(back.data_len == len);
  if (len) FUZZ_CHECK(memcmp(back.data, msg, len) == 0);
  chan_msg_free(&back);
  free(json);
}

static void on_msg(wslay_event_context_ptr ctx,
                   const struct wslay_event_on_msg_recv_arg *arg, void *user) {
  (void)ctx;
  conn *c = user;
  FUZZ_CHECK(arg->msg_length <= c->max_message);
  FUZZ_CHECK(arg->msg_length == 0 || arg->msg != NULL);
  if (arg->opcode == WSLAY_TEXT_FRAME) {
    /* The gateway forwards texts without checking them itself: wslay must
     * have refused (1007) anything that is not UTF-8. */
    FUZZ_CHECK(utf8_valid((const char *)arg->msg, arg->msg_length));
  }
  if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME) {
    publish_receive(c, arg->opcode == WSLAY_BINARY_FRAME, arg->msg,
                    arg->msg_length);
    /* An echo of it, framed as the gateway frames its own data. */
    gw_buf *b = gw_buf_frame(arg->opcode, arg->msg, arg->msg_length);
    FUZZ_CHECK(b != NULL);
    FUZZ_CHECK(b->len >= arg->msg_length + 2 &&
               b->data[0] == (0x80 | arg->opcode) && !(b->data[1] & 0x80));
    if (arg->msg_length)
      FUZZ_CHECK(memcmp(b->data + b->len - arg->msg_length, arg->msg,
                        arg->msg_length) == 0);
    gw_buf_unref(b);
  }
}

static const struct wslay_event_callbacks callbacks = {
    .recv_callback = on_recv,
    .send_callback = on_send,
    .on_msg_recv_callback = on_msg,
};

/* gw_ws_after: write what wslay owes. -1: the gateway would destroy
 * the connection. */
static int after(wslay_event_context_ptr ws) {
  if (wslay_event_want_write(ws) && wslay_event_send(ws) != 0) return -1;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  const uint8_t flags = data[0];
  size_t n_sizes = data[1] % 8;
  if (size < 2 + n_sizes) return 0;
  const uint8_t *sizes = data + 2;
  const uint8_t *in = data + 2 + n_sizes;
  size_t len = size - 2 - n_sizes;

  conn c = {.order = 1,
            .max_message = (flags & 1) ? MIN_MAX_MESSAGE : DEF_MAX_MESSAGE};
  wslay_event_context_ptr ws;
  FUZZ_CHECK(wslay_event_context_server_init(&ws, &callbacks, &c) == 0);
  wslay_event_config_set_max_recv_msg_length(ws, c.max_message);

  size_t off = 0, i = 0;
  int dead = 0;
  while (off < len && !dead && wslay_event_get_read_enabled(ws)) {
    size_t n = n_sizes ? sizes[i++ % n_sizes] : 0;
    if (n == 0 || n > len - off) n = len - off;
    c.rd = in + off;
    c.rd_len = n;
    int rc = wslay_event_recv(ws);
    /* wslay consumes a read whole or stops reading (after a close). */
    FUZZ_CHECK(c.rd_len == 0 || !wslay_event_get_read_enabled(ws) || rc != 0);
    off += n; /* what wslay left of a read is dropped, as in gw_conn */
    c.rd = NULL;
    c.rd_len = 0;
    if (rc != 0 || after(ws) != 0) dead = 1;
    /* gw_ws_ping, as the idle tick would send it mid-stream. */
    if (!dead && (flags & 4) && i == 1 && !wslay_event_get_close_sent(ws)) {
      struct wslay_event_msg ping = {.opcode = WSLAY_PING};
      if (wslay_event_queue_msg(ws, &ping) != 0 || after(ws) != 0) dead = 1;
    }
  }
  if (!dead && wslay_event_get_close_sent(ws)) {
    /* A close wslay sent itself carries a code a client may receive. */
    uint16_t code = wslay_event_get_status_code_sent(ws);
    FUZZ_CHECK(code >= 1000 && code <= 4999);
  } else if (!dead && (flags & 2)) {
    /* gw_conn_shutdown_all: close 1001 on an open connection. */
    static const char reason[] = "going away";
    if (wslay_event_queue_close(ws, 1001, (const uint8_t *)reason,
                                sizeof(reason) - 1) == 0)
      (void)after(ws);
  }
  wslay_event_context_free(ws);
  return 0;
}
