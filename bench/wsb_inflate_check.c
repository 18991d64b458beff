/*
 * wsb-inflate-check - checks the load client's permessage-deflate decoder
 * (wsb_inflate.c) on messages a sender with context takeover makes, before
 * a gateway makes them: one raw zlib deflate stream per connection, each
 * message deflate(Z_SYNC_FLUSH) with its trailing 00 00 ff ff removed
 * (RFC 7692 7.2.1), never reset.
 *
 *   wsb-inflate-check      prints one line per check, exit 0 when all pass
 *
 * Checks: a second message that refers back into the first inflates on the
 * kept stream (and does not on the stream reset per message, which is why
 * a kept one is needed); 300 AWX job events in a row (more than the 32 KiB
 * window) come back byte for byte; two connections' streams interleaved
 * stay apart; an empty message (the single 0x00 of RFC 7692 7.2.3.6)
 * keeps the stream going, no payload at all is an error; a message ending in a final block is an
 * error on a kept stream and accepted on the reset one, as before; zctx
 * counts the kept inflaters made.
 *
 * Owns: its deflaters and buffers. Must not: need a gateway, a broker or
 * the network (`make bench-smoke` runs it first, in no time).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "awx_sample.h"
#include "wsb.h"

#define CHK_MSG_MAX (AWX_EVENT_MAX + 64)

static wsb_proc chk_proc; /* static: its read buffer is 64 KiB */
static int chk_failed;

static void chk(int ok, const char *what) {
  printf("%s: %s\n", ok ? "ok" : "FAILED", what);
  if (!ok) chk_failed = 1;
}

/* A sender's side: one deflate stream kept across messages. */
typedef struct chk_sender {
  z_stream d;
  uint8_t out[CHK_MSG_MAX];
  size_t len; /* the last message's payload, 00 00 ff ff removed */
} chk_sender;

static int chk_sender_init(chk_sender *s, int level) {
  memset(s, 0, sizeof(*s));
  return deflateInit2(&s->d, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK ? 0 : -1;
}

/* Compresses msg as the next message; flush Z_SYNC_FLUSH (the tail is
 * removed) or Z_FINISH (a whole stream: it ends in a final block). */
static int chk_send(chk_sender *s, const void *msg, size_t len, int flush) {
  s->d.next_in = (Bytef *)msg;
  s->d.avail_in = (uInt)len;
  s->d.next_out = s->out;
  s->d.avail_out = sizeof s->out;
  int rc = deflate(&s->d, flush);
  if (s->d.avail_in != 0 || s->d.avail_out == 0) return -1;
  if (flush == Z_FINISH ? rc != Z_STREAM_END : rc != Z_OK) return -1;
  s->len = sizeof s->out - s->d.avail_out;
  if (flush == Z_SYNC_FLUSH) {
    if (s->len < 4 || memcmp(s->out + s->len - 4, "\x00\x00\xff\xff", 4) != 0) return -1;
    s->len -= 4;
  }
  return 0;
}

/* 1 when the payload inflates (kept stream, or NULL: the reset one) to want. */
static int chk_inflates_to(z_stream *kept, const uint8_t *in, size_t len, const void *want,
                           size_t want_len) {
  const uint8_t *out;
  size_t out_len;
  if (wsb_inflate(&chk_proc, kept, in, len, &out, &out_len) != 0) return 0;
  return out_len == want_len && (want_len == 0 || memcmp(out, want, want_len) == 0);
}

static size_t chk_event(char *buf, uint64_t seq) {
  return awx_event(buf, AWX_EVENT_MAX, AWX_SEED, seq, 1700000000000000000ull + seq);
}

/* Event 1 and then event 1 again but for its stamp: the second is mostly
 * a reference into the first. */
static void chk_back_reference(void) {
  chk_sender s;
  char e1[AWX_EVENT_MAX], e2[AWX_EVENT_MAX];
  size_t n1 = chk_event(e1, 1), n2 = awx_event(e2, sizeof e2, AWX_SEED, 1, 42);
  z_stream *zs = wsb_inflate_new(&chk_proc);
  if (chk_sender_init(&s, 1) != 0 || !zs || chk_send(&s, e1, n1, Z_SYNC_FLUSH) != 0) {
    chk(0, "set-up");
    return;
  }
  chk(chk_inflates_to(zs, s.out, s.len, e1, n1), "kept: the first message");
  size_t first = s.len;
  if (chk_send(&s, e2, n2, Z_SYNC_FLUSH) != 0) chk(0, "set-up");
  chk(s.len * 4 < first, "the sender's second message is a back reference (1/4 the size)");
  chk(chk_inflates_to(zs, s.out, s.len, e2, n2), "kept: the second message, referring back");
  chk(!chk_inflates_to(NULL, s.out, s.len, e2, n2),
      "reset per message: the second message does not inflate");
  deflateEnd(&s.d);
  wsb_inflate_free(zs);
}

/* 300 events (~650 KB, the window slides) with a few plain messages
 * between, which the sender does not compress and the window never sees. */
static void chk_many(void) {
  chk_sender s;
  char e[AWX_EVENT_MAX];
  size_t total = 0, bad = 0, n;
  z_stream *zs = wsb_inflate_new(&chk_proc);
  if (chk_sender_init(&s, 1) != 0 || !zs) {
    chk(0, "set-up");
    return;
  }
  for (uint64_t seq = 1; seq <= 300; seq++) {
    n = chk_event(e, seq);
    if (seq % 7 == 0) continue; /* sent plain */
    total += n;
    if (chk_send(&s, e, n, Z_SYNC_FLUSH) != 0 || !chk_inflates_to(zs, s.out, s.len, e, n))
      bad++;
  }
  printf("   %zu bytes of events through one kept inflater\n", total);
  chk(bad == 0 && total > 4 * 32768, "kept: 300 AWX events, the window sliding");
  deflateEnd(&s.d);
  wsb_inflate_free(zs);
}

/* Two connections: each message must go to its own stream. */
static void chk_two_connections(void) {
  chk_sender a, b;
  char e[AWX_EVENT_MAX];
  int ok = chk_sender_init(&a, 6) == 0 && chk_sender_init(&b, 6) == 0;
  z_stream *za = wsb_inflate_new(&chk_proc), *zb = wsb_inflate_new(&chk_proc);
  for (uint64_t seq = 1; ok && za && zb && seq <= 40; seq++) {
    size_t n = chk_event(e, seq);
    ok = chk_send(&a, e, n, Z_SYNC_FLUSH) == 0 && chk_send(&b, e, n, Z_SYNC_FLUSH) == 0 &&
         chk_inflates_to(zb, b.out, b.len, e, n) && chk_inflates_to(za, a.out, a.len, e, n);
  }
  chk(ok && za && zb, "kept: two connections' streams interleaved");
  deflateEnd(&a.d);
  deflateEnd(&b.d);
  wsb_inflate_free(za);
  wsb_inflate_free(zb);
}

/* An empty message as RFC 7692 7.2.3.6 shows it (one 0x00: an empty
 * stored block once 00 00 ff ff is appended) between two others; and one
 * with no payload at all, which is no deflate data (the 4 octets read as a
 * stored block's header and half its length), an error on a kept stream
 * and not the next message's. zlib will not flush twice without input, so
 * both are written here. */
static void chk_empty(void) {
  chk_sender s;
  char e[AWX_EVENT_MAX];
  size_t n = chk_event(e, 3);
  z_stream *zs = wsb_inflate_new(&chk_proc);
  int ok = zs && chk_sender_init(&s, 1) == 0 && chk_send(&s, e, n, Z_SYNC_FLUSH) == 0 &&
           chk_inflates_to(zs, s.out, s.len, e, n) &&
           chk_inflates_to(zs, (const uint8_t *)"\x00", 1, "", 0) &&
           chk_send(&s, e, n, Z_SYNC_FLUSH) == 0 && chk_inflates_to(zs, s.out, s.len, e, n);
  chk(ok, "kept: an empty message (0x00) between two others");
  chk(ok && !chk_inflates_to(zs, s.out, 0, "", 0), "kept: no payload at all is an error");
  deflateEnd(&s.d);
  wsb_inflate_free(zs);
}

/* A whole stream per message (BFINAL): right alone, wrong on a kept stream. */
static void chk_final_block(void) {
  chk_sender s;
  char e[AWX_EVENT_MAX];
  size_t n = chk_event(e, 5);
  z_stream *zs = wsb_inflate_new(&chk_proc);
  int ok = zs && chk_sender_init(&s, 1) == 0 && chk_send(&s, e, n, Z_FINISH) == 0;
  chk(ok && chk_inflates_to(NULL, s.out, s.len, e, n),
      "reset per message: a final block is read, as before");
  chk(ok && !chk_inflates_to(zs, s.out, s.len, e, n),
      "kept: a message ending in a final block is an error");
  deflateEnd(&s.d);
  wsb_inflate_free(zs);
}

int main(void) {
  if (wsb_inflate_init(&chk_proc) != 0) return 2;
  chk_back_reference();
  chk_many();
  chk_two_connections();
  chk_empty();
  chk_final_block();
  chk(chk_proc.rep.zctx == 6, "zctx counts the 6 kept inflaters made");
  wsb_inflate_end(&chk_proc);
  printf("wsb-inflate-check: %s\n", chk_failed ? "FAILED" : "all passed");
  return chk_failed;
}
