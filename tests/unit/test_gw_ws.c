/*
 * test_gw_ws.c - the websocket protocol core without a socket: framing,
 * the closing handshake from either side, the frame and message limits,
 * pings both ways, invalid input, and wslay's context freed between
 * messages; reassembly of fragments into one buffer (heap O(payload)
 * whatever the fragment size, control frames between fragments, UTF-8
 * split across fragments) and the process-wide budget for it. A fake sink records what the gateway would send and which
 * messages would go to a worker.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_ws.h"
#include "unit.h"
#include "unit_ws.h"

typedef struct fake {
  uint8_t out[4096]; /* bytes the gateway owes the client */
  size_t out_len;
  char msgs[8][256]; /* messages handed on, as "t:TEXT" or "b:BYTES" */
  size_t n_msgs;
  int fail_send;     /* the next sends fail with this close code */
  gw_ws *close_on_message; /* a handler that closes the connection */
} fake;

static int fake_send(void *arg, const uint8_t *data, size_t len) {
  fake *f = arg;
  if (f->fail_send) return f->fail_send; /* the close code asked for */
  if (f->out_len + len <= sizeof f->out) memcpy(f->out + f->out_len, data, len);
  f->out_len += len;
  return 0;
}

static void fake_message(void *arg, int binary, const uint8_t *msg, size_t len) {
  fake *f = arg;
  if (f->n_msgs < 8)
    snprintf(f->msgs[f->n_msgs], sizeof f->msgs[0], "%c:%.*s", binary ? 'b' : 't', (int)len,
             len ? (const char *)msg : "");
  f->n_msgs++;
  if (f->close_on_message) { /* twice: a second close changes nothing */
    gw_ws_io io = {0};
    UNIT_CHECK(gw_ws_close(f->close_on_message, &io, 1008, "policy") == GW_WS_CLOSED);
  }
}

static const gw_ws_sink fake_sink = {fake_send, fake_message};

/* The process's budget for partial messages; a test that changes the limit
 * puts it back. Every test ends with it unused (gw_ws_free gives back). */
static gw_ws_budget budget = {.limit = 1u << 30};

static gw_ws_io io_for(fake *f, uint64_t max_frame, uint64_t max_message) {
  gw_ws_io io = {.sink = &fake_sink, .arg = f, .max_frame = max_frame,
                 .max_message = max_message, .max_pings = 100, .budget = &budget};
  return io;
}

/* A client frame (masked, key 1 2 3 4) into buf; returns its length. */
static size_t client_frame(uint8_t *buf, int fin, int opcode, const void *payload,
                           size_t len) {
  return unit_ws_frame(buf, fin, 0, opcode, payload, len);
}

static gw_ws_result feed(gw_ws *ws, fake *f, const uint8_t *data, size_t len, uint16_t *code) {
  gw_ws_io io = io_for(f, 1 << 20, 1 << 20);
  return gw_ws_feed(ws, &io, data, len, code);
}

/* The close frame the client would read: 0x88, length, code, reason. */
static int sent_close(const fake *f, uint16_t code) {
  for (size_t i = 0; i + 3 < f->out_len; i++)
    if (f->out[i] == 0x88 && f->out[i + 2] == (code >> 8) && f->out[i + 3] == (code & 0xff))
      return 1;
  return 0;
}

UNIT_TEST(gw_ws_text_message_reaches_the_sink_and_the_context_goes) {
  gw_ws ws = {0};
  fake f = {0};
  uint8_t buf[64];
  uint16_t code = 0;
  size_t n = client_frame(buf, 1, 1, "hello", 5);
  UNIT_CHECK(feed(&ws, &f, buf, n, &code) == GW_WS_OK);
  UNIT_CHECK(f.n_msgs == 1);
  UNIT_CHECK_STR(f.msgs[0], "t:hello");
  UNIT_CHECK(f.out_len == 0);
  UNIT_CHECK(!gw_ws_holds_context(&ws)); /* idle: wslay's ~9 KiB are given back */
  gw_ws_free(&ws, &budget);
}

UNIT_TEST(gw_ws_fragmented_message_byte_by_byte_keeps_the_context_until_done) {
  gw_ws ws = {0};
  fake f = {0};
  uint8_t buf[128];
  uint16_t code = 0;
  size_t n = client_frame(buf, 0, 1, "hel", 3);
  n += client_frame(buf + n, 1, 9, "p", 1);  /* a ping between the fragments */
  n += client_frame(buf + n, 1, 0, "lo", 2); /* continuation, FIN */
  for (size_t i = 0; i < n; i++) {
    UNIT_CHECK(feed(&ws, &f, buf + i, 1, &code) == GW_WS_OK);
    if (i + 1 < n) UNIT_CHECK(gw_ws_holds_context(&ws));
  }
  UNIT_CHECK(f.n_msgs == 1);
  UNIT_CHECK_STR(f.msgs[0], "t:hello");
  UNIT_CHECK(f.out_len == 3 && f.out[0] == 0x8a && f.out[1] == 1 && f.out[2] == 'p'); /* pong */
  UNIT_CHECK(!gw_ws_holds_context(&ws));
  gw_ws_free(&ws, &budget);
}

UNIT_TEST(gw_ws_client_close_is_answered_and_reported_once) {
  gw_ws ws = {0};
  fake f = {0};
  uint8_t buf[64], body[] = {0x03, 0xe8, 'b', 'y', 'e'};
  uint16_t code = 0;
  size_t n = client_frame(buf, 1, 8, body, sizeof body);
  UNIT_CHECK(feed(&ws, &f, buf, n, &code) == GW_WS_CLOSED);
  UNIT_CHECK(code == 1000);
  UNIT_CHECK(sent_close(&f, 1000));
  UNIT_CHECK(!gw_ws_awaiting_close(&ws)); /* the handshake is complete */
  gw_ws_free(&ws, &budget);
}

UNIT_TEST(gw_ws_server_close_waits_for_the_clients_close) {
  gw_ws ws = {0};
  fake f = {0};
  gw_ws_io io = io_for(&f, 1 << 20, 1 << 20);
  UNIT_CHECK(gw_ws_close(&ws, &io, 1001, "going away") == GW_WS_CLOSED);
  UNIT_CHECK(sent_close(&f, 1001));
  UNIT_CHECK(f.out[1] == 2 + strlen("going away"));
  UNIT_CHECK(gw_ws_awaiting_close(&ws));
  uint8_t buf[64], body[] = {0x03, 0xe9};
  uint16_t code = 0;
  size_t n = client_frame(buf, 1, 8, body, sizeof body);
  /* The close that completes our handshake is not a new close. */
  UNIT_CHECK(feed(&ws, &f, buf, n, &code) == GW_WS_OK);
  UNIT_CHECK(!gw_ws_awaiting_close(&ws));
  gw_ws_free(&ws, &budget);
}

UNIT_TEST(gw_ws_frame_over_max_frame_is_refused_before_its_payload) {
  gw_ws ws = {0};
  fake f = {0};
  uint8_t buf[256];
  char payload[200];
  memset(payload, 'x', sizeof payload);
  uint16_t code = 0;
  size_t n = client_frame(buf, 1, 1, payload, sizeof payload);
  gw_ws_io io = io_for(&f, 199, 1 << 20);
  /* The header and one payload byte: the limit acts before the rest. */
  UNIT_CHECK(n > 9 && gw_ws_feed(&ws, &io, buf, 9, &code) == GW_WS_CLOSED);
  UNIT_CHECK(code == 1009 && sent_close(&f, 1009));
  UNIT_CHECK(f.n_msgs == 0);
  gw_ws_free(&ws, &budget);
}

UNIT_TEST(gw_ws_message_over_max_message_closes_1009) {
  gw_ws ws = {0};
  fake f = {0};
  uint8_t buf[256];
  uint16_t code = 0;
  size_t n = client_frame(buf, 0, 1, "0123456789", 10);
  n += client_frame(buf + n, 1, 0, "0123456789", 10);
  gw_ws_io io = io_for(&f, 1 << 20, 15);
  UNIT_CHECK(gw_ws_feed(&ws, &io, buf, n, &code) == GW_WS_CLOSED);
  UNIT_CHECK(code == 1009 && sent_close(&f, 1009));
  UNIT_CHECK(f.n_msgs == 0);
  gw_ws_free(&ws, &budget);
}

UNIT_TEST(gw_ws_invalid_utf8_text_closes_1007) {
  gw_ws ws = {0};
  fake f = {0};
  uint8_t buf[64];
  uint16_t code = 0;
  size_t n = client_frame(buf, 1, 1, "\xc3\x28", 2);
  UNIT_CHECK(feed(&ws, &f, buf, n, &code) == GW_WS_CLOSED);
  UNIT_CHECK(code == 1007 && sent_close(&f, 1007));
  UNIT_CHECK(f.n_msgs == 0);
  gw_ws_free(&ws, &budget);
}

UNIT_TEST(gw_ws_protocol_errors_close_1002) {
  uint8_t buf[256];
  uint16_t code;
  /* A fragmented ping, a ping over 125 bytes, an unmasked frame, a close
   * body of one byte: each a protocol error, answered with close 1002. */
  char big[126];
  memset(big, 'p', sizeof big);
  size_t lens[4];
  uint8_t frames[4][256];
  lens[0] = client_frame(frames[0], 0, 9, "p", 1);
  lens[1] = client_frame(frames[1], 1, 9, big, sizeof big);
  memcpy(frames[2], "\x81\x02hi", 4);
  lens[2] = 4;
  lens[3] = client_frame(frames[3], 1, 8, "\x03", 1);
  for (int i = 0; i < 4; i++) {
    gw_ws ws = {0};
    fake f = {0};
    code = 0;
    memcpy(buf, frames[i], lens[i]);
    UNIT_CHECK(feed(&ws, &f, buf, lens[i], &code) == GW_WS_CLOSED);
    /* The client's empty-bodied close is recorded as what it said (1005,
     * no status); the wire still carries our 1002. */
    UNIT_CHECK(code == (i == 3 ? 1005 : 1002));
    UNIT_CHECK(sent_close(&f, 1002));
    UNIT_CHECK(f.n_msgs == 0);
    gw_ws_free(&ws, &budget);
  }
}

UNIT_TEST(gw_ws_keepalive_ping_goes_out_and_the_pong_is_taken) {
  gw_ws ws = {0};
  fake f = {0};
  gw_ws_io io = io_for(&f, 1 << 20, 1 << 20);
  uint16_t code = 0;
  UNIT_CHECK(gw_ws_ping(&ws, &io, &code) == GW_WS_OK);
  UNIT_CHECK(f.out_len == 2 && f.out[0] == 0x89 && f.out[1] == 0);
  uint8_t buf[16];
  size_t n = client_frame(buf, 1, 10, NULL, 0);
  UNIT_CHECK(feed(&ws, &f, buf, n, &code) == GW_WS_OK);
  UNIT_CHECK(f.n_msgs == 0 && f.out_len == 2); /* a pong needs no answer */
  UNIT_CHECK(!gw_ws_holds_context(&ws));
  gw_ws_free(&ws, &budget);
}

UNIT_TEST(gw_ws_close_from_a_message_handler_goes_out_with_the_feed) {
  gw_ws ws = {0};
  fake f = {0};
  f.close_on_message = &ws;
  uint8_t buf[64];
  uint16_t code = 0;
  size_t n = client_frame(buf, 1, 1, "x", 1);
  /* Read in the same feed, after the handler closed: still handed on (the
   * relay drops messages of a connection that is not open). */
  n += client_frame(buf + n, 1, 1, "y", 1);
  UNIT_CHECK(feed(&ws, &f, buf, n, &code) == GW_WS_CLOSED);
  UNIT_CHECK(code == 1008 && sent_close(&f, 1008));
  UNIT_CHECK(f.n_msgs == 2);
  UNIT_CHECK(f.out_len == 2 + 2 + strlen("policy")); /* one close frame only */
  UNIT_CHECK(gw_ws_awaiting_close(&ws));
  gw_ws_free(&ws, &budget);
}

UNIT_TEST(gw_ws_a_sink_that_cannot_queue_fails_the_connection) {
  gw_ws ws = {0};
  fake f = {0};
  f.fail_send = 1011; /* no memory */
  gw_ws_io io = io_for(&f, 1 << 20, 1 << 20);
  uint16_t code = 0;
  UNIT_CHECK(gw_ws_ping(&ws, &io, &code) == GW_WS_FAILED);
  UNIT_CHECK(code == 1011);
  gw_ws_free(&ws, &budget);
  /* A client owed more than it reads: a pong it would make us queue. */
  f.fail_send = 1008;
  uint8_t buf[16];
  size_t n = client_frame(buf, 1, 9, NULL, 0);
  UNIT_CHECK(feed(&ws, &f, buf, n, &code) == GW_WS_FAILED);
  UNIT_CHECK(code == 1008);
  gw_ws_free(&ws, &budget);
}

UNIT_TEST(gw_ws_pings_over_the_rate_close_1008) {
  gw_ws ws = {0};
  fake f = {0};
  uint8_t buf[16 * 101];
  size_t n = 0;
  for (int i = 0; i < 101; i++) n += client_frame(buf + n, 1, 9, NULL, 0);
  gw_ws_io io = io_for(&f, 1 << 20, 1 << 20);
  io.now_ms = 7000;
  uint16_t code = 0;
  /* 100 in one second are answered; the 101st closes. */
  size_t one = n / 101;
  UNIT_CHECK(gw_ws_feed(&ws, &io, buf, 100 * one, &code) == GW_WS_OK);
  UNIT_CHECK(f.out_len == 100 * 2); /* 100 pongs */
  io.now_ms = 8000; /* a new second: counting starts again */
  UNIT_CHECK(gw_ws_feed(&ws, &io, buf, 100 * one, &code) == GW_WS_OK);
  int saved = unit_stderr_mute(); /* the refusal is logged, by design */
  gw_ws_result r = gw_ws_feed(&ws, &io, buf + 100 * one, one, &code);
  unit_stderr_restore(saved);
  UNIT_CHECK(r == GW_WS_CLOSED);
  UNIT_CHECK(code == 1008 && sent_close(&f, 1008));
  gw_ws_free(&ws, &budget);
}

/* A message as n one-byte fragments, a ping after each: one buffer that
 * doubles, so its room stays under twice the payload, and the budget holds
 * exactly that room while the message is partial. */
UNIT_TEST(gw_ws_one_byte_fragments_with_pings_reassemble_in_one_buffer) {
  gw_ws ws = {0};
  fake f = {0};
  enum { N = 3000 };
  uint8_t frame[32];
  uint16_t code = 0;
  for (int i = 0; i < N; i++) {
    uint8_t byte = (uint8_t)('a' + i % 26);
    size_t n = client_frame(frame, i == N - 1, i == 0 ? 2 : 0, &byte, 1);
    n += i == N - 1 ? 0 : client_frame(frame + n, 1, 9, NULL, 0); /* a ping between */
    gw_ws_io io = io_for(&f, 1 << 20, 1 << 20);
    io.now_ms = (uint64_t)i * 1000; /* under the ping rate */
    f.out_len = 0;
    UNIT_CHECK(gw_ws_feed(&ws, &io, frame, n, &code) == GW_WS_OK);
    if (i == N - 1) break;
    UNIT_CHECK(f.out_len == 2 && f.out[0] == 0x8a); /* each ping answered */
    UNIT_CHECK(ws.msg_len == (uint32_t)i + 1);
    UNIT_CHECK(ws.msg_cap <= 2u * (uint32_t)(i + 1) + 256); /* O(payload), not O(fragments) */
    UNIT_CHECK(budget.used == ws.msg_cap);
  }
  UNIT_CHECK(f.n_msgs == 1);
  UNIT_CHECK(f.msgs[0][0] == 'b' && strncmp(f.msgs[0] + 2, "abcdefghijklmnopqrstuvwxyzab", 28) == 0);
  UNIT_CHECK(budget.used == 0 && ws.msg == NULL); /* delivered, given back */
  UNIT_CHECK(!gw_ws_holds_context(&ws));
  gw_ws_free(&ws, &budget);
}

/* "é" (c3 a9) split between two fragments is valid; a bad byte in the
 * first fragment fails at once (1007), before the message ends. */
UNIT_TEST(gw_ws_utf8_split_across_fragments) {
  gw_ws ws = {0};
  fake f = {0};
  uint8_t buf[64];
  uint16_t code = 0;
  size_t n = client_frame(buf, 0, 1, "caf\xc3", 4);
  n += client_frame(buf + n, 1, 0, "\xa9!", 2);
  UNIT_CHECK(feed(&ws, &f, buf, n, &code) == GW_WS_OK);
  UNIT_CHECK(f.n_msgs == 1);
  UNIT_CHECK_STR(f.msgs[0], "t:caf\xc3\xa9!");
  gw_ws_free(&ws, &budget);

  gw_ws bad = {0};
  fake g = {0};
  n = client_frame(buf, 0, 1, "ab\xff", 3); /* never valid UTF-8; no FIN yet */
  UNIT_CHECK(feed(&bad, &g, buf, n, &code) == GW_WS_CLOSED);
  UNIT_CHECK(code == 1007 && sent_close(&g, 1007));
  UNIT_CHECK(g.n_msgs == 0 && budget.used == 0);
  gw_ws_free(&bad, &budget);
}

/* The message limit counts all fragments, checked at each frame's header,
 * before its payload is stored. */
UNIT_TEST(gw_ws_fragments_past_max_message_close_1009) {
  gw_ws ws = {0};
  fake f = {0};
  uint8_t buf[512], chunk[100];
  memset(chunk, 'x', sizeof chunk);
  uint16_t code = 0;
  size_t n = client_frame(buf, 0, 2, chunk, 100);
  n += client_frame(buf + n, 0, 0, chunk, 100);
  n += client_frame(buf + n, 1, 0, chunk, 100);
  gw_ws_io io = io_for(&f, 1000, 250);
  UNIT_CHECK(gw_ws_feed(&ws, &io, buf, n, &code) == GW_WS_CLOSED);
  UNIT_CHECK(code == 1009 && sent_close(&f, 1009));
  UNIT_CHECK(f.n_msgs == 0);
  UNIT_CHECK(budget.used == 0); /* reading ended: the partial is given back */
  gw_ws_free(&ws, &budget);
}

/* Two connections share the budget: the one whose message would pass it
 * is closed 1013 and counted; the other goes on; every byte comes back. */
UNIT_TEST(gw_ws_partial_budget_refuses_with_1013_and_accounts_exactly) {
  gw_ws a = {0}, b = {0};
  fake fa = {0}, fb = {0};
  uint8_t buf[2048], chunk[600];
  memset(chunk, 'y', sizeof chunk);
  uint16_t code = 0;
  uint64_t saved_limit = budget.limit, saved_refused = budget.refused;
  budget.limit = 1024;
  size_t n = client_frame(buf, 0, 2, chunk, 600);
  UNIT_CHECK(feed(&a, &fa, buf, n, &code) == GW_WS_OK);
  UNIT_CHECK(budget.used == a.msg_cap && a.msg_cap >= 600 && a.msg_cap <= 1024);
  int muted = unit_stderr_mute(); /* the refusal is logged, by design */
  gw_ws_result r = feed(&b, &fb, buf, n, &code);
  unit_stderr_restore(muted);
  UNIT_CHECK(r == GW_WS_CLOSED && code == 1013 && sent_close(&fb, 1013));
  UNIT_CHECK(budget.refused == saved_refused + 1);
  UNIT_CHECK(budget.used == a.msg_cap && b.msg_cap == 0);
  n = client_frame(buf, 1, 0, "z", 1); /* a finishes: delivered */
  UNIT_CHECK(feed(&a, &fa, buf, n, &code) == GW_WS_OK && fa.n_msgs == 1);
  UNIT_CHECK(budget.used == 0);
  n = client_frame(buf, 0, 2, chunk, 600); /* a partial freed with the connection */
  UNIT_CHECK(feed(&a, &fa, buf, n, &code) == GW_WS_OK && budget.used > 0);
  gw_ws_free(&a, &budget);
  UNIT_CHECK(budget.used == 0);
  gw_ws_free(&b, &budget);
  budget.limit = saved_limit;
}
