/*
 * fuzz_ws_frames.c - libFuzzer target: what a client sends after the 101,
 * through the gateway's own websocket core (gatewayd/gw_ws.c: its wslay
 * callbacks, frame limit, context freed between messages, closing
 * handshake, reassembly of fragments into one buffer charged to the
 * process's budget), driven as gw_conn drives it: one gw_ws_feed per socket read,
 * a keepalive ping mid-way, a close 1001 at shutdown. The sink stands in
 * for the connection: it checks what wslay owes the client and turns each
 * message into the websocket.receive a worker would get (chan_msg_encode,
 * decoded back), as gw_relay does.
 *
 * Input: byte 0 = switches (bit 0: the smallest configurable max_message
 * and max_frame, so that the 1009 paths are reachable with small inputs;
 * bit 1: the gateway shuts down (close 1001) after the input; bit 2: it
 * pings mid-way; bit 3: a budget for partial messages of BUDGET_SMALL
 * bytes, so that the 1013 refusal is reachable; bit 4: permessage-deflate
 * was negotiated, so RSV1 messages are decompressed, within max_message,
 * and every message is echoed compressed, checked by inflating it back);
 * byte 1 = n, how many of the next bytes give read sizes
 * (n % 8); then those sizes, used in turn (0 = everything left); then the
 * stream.
 */
#include <string.h>
#include <zlib.h>

#include "chan_msg.h"
#include "fuzz.h"
#include "gw_buf.h"
#include "gw_deflate.h"
#include "gw_pmd.h"
#include "gw_ws.h"
#include "utf8.h"

#define DEF_MAX_MESSAGE (1024 * 1024) /* a large max_message (the default is 16 KiB) */
#define MIN_MAX_MESSAGE 64            /* its smallest accepted value */
#define BUDGET_SMALL 48               /* under one small message */
#define FUZZ_CHANNEL "websocket.send.amq.gen-fuzz!1"

typedef struct conn {
  uint8_t sent[1 << 16]; /* bytes the core wrote (control frames) */
  size_t sent_len;   /* of which kept (the rest is counted, not checked) */
  uint64_t order;    /* as gw_relay's next_order */
  uint64_t max_message;
  int closing;       /* a close is under way: messages are dropped */
  gw_deflate *z;     /* negotiated: the process's deflater; else NULL */
} conn;

static int on_send(void *arg, const uint8_t *data, size_t len) {
  conn *c = arg;
  FUZZ_CHECK(len > 0 && data != NULL);
  if (c->sent_len + len <= sizeof c->sent) memcpy(c->sent + c->sent_len, data, len);
  c->sent_len += len;
  return 0;
}

/* After each call, what the core wrote is whole control frames (FIN, an
 * opcode of 8 or more, unmasked, at most 125 bytes of payload): our data
 * frames, queued between two calls, can never land inside one. */
static void check_sent(conn *c) {
  if (c->sent_len > sizeof c->sent) return;
  size_t at = 0;
  while (at < c->sent_len) {
    FUZZ_CHECK(c->sent_len - at >= 2);
    const uint8_t *f = c->sent + at;
    FUZZ_CHECK((f[0] & 0x80) && (f[0] & 0x0f) >= 8 && !(f[1] & 0x80) && f[1] <= 125);
    at += 2 + f[1];
    FUZZ_CHECK(at <= c->sent_len);
  }
}

/* The websocket.receive message gw_relay would publish, decoded again as a
 * worker would read it. */
static void publish_receive(conn *c, int binary, const uint8_t *msg, size_t len) {
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

/* The echo compressed as gw_conn sends it to a client that negotiated
 * compression: either the frame itself or a twin (RSV1, same opcode) that a
 * fresh raw inflater, given 00 00 ff ff after it, turns back into msg. */
static void check_twin(gw_deflate *z, gw_buf *b, const uint8_t *msg, size_t len) {
  gw_buf *t = gw_deflate_twin(z, b);
  FUZZ_CHECK(t && b->z == t && t->z == t);
  if (t == b) return;
  FUZZ_CHECK(t->data[0] == (b->data[0] | 0x40));
  size_t zlen;
  const uint8_t *zp = gw_buf_payload(t, &zlen);
  FUZZ_CHECK(zlen < len);
  static uint8_t in[DEF_MAX_MESSAGE + 4], out[DEF_MAX_MESSAGE];
  memcpy(in, zp, zlen);
  memcpy(in + zlen, "\x00\x00\xff\xff", 4);
  z_stream s = {0};
  FUZZ_CHECK(inflateInit2(&s, -15) == Z_OK);
  s.next_in = in;
  s.avail_in = (uInt)(zlen + 4);
  s.next_out = out;
  s.avail_out = sizeof out;
  int rc = inflate(&s, Z_SYNC_FLUSH);
  FUZZ_CHECK(rc == Z_OK && sizeof out - s.avail_out == len && memcmp(out, msg, len) == 0);
  inflateEnd(&s);
}

static void on_message(void *arg, int binary, const uint8_t *msg, size_t len) {
  conn *c = arg;
  FUZZ_CHECK(len <= c->max_message);
  FUZZ_CHECK(len == 0 || msg != NULL);
  /* The gateway forwards texts without checking them itself: wslay must
   * have refused (1007) anything that is not UTF-8. */
  if (!binary) FUZZ_CHECK(utf8_valid((const char *)msg, len));
  if (c->closing) return; /* gw_relay drops what a closing connection sends */
  publish_receive(c, binary, msg, len);
  /* An echo of it, framed as the gateway frames its own data. */
  int opcode = binary ? 2 : 1;
  gw_buf *b = gw_buf_frame(opcode, msg, len);
  FUZZ_CHECK(b != NULL);
  FUZZ_CHECK(b->len >= len + 2 && b->data[0] == (0x80 | opcode) && !(b->data[1] & 0x80));
  if (len) FUZZ_CHECK(memcmp(b->data + b->len - len, msg, len) == 0);
  if (c->z) check_twin(c->z, b, msg, len);
  gw_buf_unref(b);
}

static const gw_ws_sink sink = {on_send, on_message};

/* What gw_conn does with a result: a close code a client may receive, or
 * the end of the connection. Returns 1 when the connection is gone. */
static int outcome(conn *c, gw_ws_result r, uint16_t code) {
  if (r == GW_WS_FAILED) return 1;
  if (r == GW_WS_CLOSED) {
    FUZZ_CHECK(!c->closing); /* reported once */
    FUZZ_CHECK(code >= 1000 && code <= 4999);
    c->closing = 1;
  }
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

  static conn c; /* 64 KiB: not on the stack */
  memset(&c, 0, sizeof c);
  c.order = 1;
  c.max_message = (flags & 1) ? MIN_MAX_MESSAGE : DEF_MAX_MESSAGE;
  gw_ws ws;
  memset(&ws, 0, sizeof ws);
  static gw_deflate z; /* the process's: made once, as gw_server does */
  static int z_ready;
  if (!z_ready) z_ready = gw_deflate_init(&z, 1, 0) == 0;
  FUZZ_CHECK(z_ready);
  if (flags & 16) {
    ws.pmd = GW_PMD_RECV | GW_PMD_SEND;
    c.z = &z;
  }
  gw_ws_budget budget = {.limit = (flags & 8) ? BUDGET_SMALL : DEF_MAX_MESSAGE};
  gw_ws_io io = {.sink = &sink, .arg = &c, .max_message = c.max_message, .max_pings = 100,
                 .max_frame = (flags & 1) ? MIN_MAX_MESSAGE : DEF_MAX_MESSAGE,
                 .budget = &budget, .deflate = c.z};
  size_t off = 0, i = 0;
  int dead = 0;
  while (off < len && !dead) {
    if (c.closing && !gw_ws_awaiting_close(&ws)) break; /* gw_conn finishes */
    size_t n = n_sizes ? sizes[i++ % n_sizes] : 0;
    if (n == 0 || n > len - off) n = len - off;
    uint16_t code = 0;
    dead = outcome(&c, gw_ws_feed(&ws, &io, in + off, n, &code), code);
    off += n;
    FUZZ_CHECK(ws.io == NULL); /* no call leaves its io behind */
    /* A decompressed message's buffer never outlives its bound. */
    FUZZ_CHECK(z.iout_cap <= GW_DEFLATE_KEEP && z.zout_cap <= GW_DEFLATE_KEEP);
    check_sent(&c);
    /* The budget holds exactly the reassembly buffer: within the limit,
     * within twice the bytes it holds (or the first 256), nothing once
     * the connection stops reading. */
    FUZZ_CHECK(budget.used == ws.msg_cap && budget.used <= budget.limit);
    /* A compressed message may take an eighth more before decompression
     * (gw_ws__wire); what it decompresses to is held to max_message. */
    uint64_t wire_max = ws.msg_z ? c.max_message + c.max_message / 8 + 64 : c.max_message;
    FUZZ_CHECK(ws.msg_len <= ws.msg_cap && ws.msg_cap <= wire_max);
    FUZZ_CHECK(ws.msg_cap <= 256 || ws.msg_cap <= 2 * ws.msg_len);
    if (dead || (c.closing && !gw_ws_awaiting_close(&ws))) FUZZ_CHECK(budget.used == 0);
    /* Between messages the context must be gone (the idle cost). */
    if (!dead && !c.closing && ws.track.payload_left == 0 && ws.track.hdr_have == 0 &&
        !ws.track.in_message)
      FUZZ_CHECK(!gw_ws_holds_context(&ws));
    if (!dead && !c.closing && (flags & 4) && i == 1) {
      code = 0;
      dead = outcome(&c, gw_ws_ping(&ws, &io, &code), code);
      check_sent(&c);
    }
  }
  if (!dead && !c.closing && (flags & 2)) {
    (void)outcome(&c, gw_ws_close(&ws, &io, 1001, "going away"), 1001);
    check_sent(&c);
  }
  gw_ws_free(&ws, &budget);
  FUZZ_CHECK(budget.used == 0);
  return 0;
}
