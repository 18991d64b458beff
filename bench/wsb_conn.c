/*
 * wsb_conn.c - one websocket client connection of the load client.
 *
 * Owns: the socket (bound to one of several 127.0.0.x source addresses
 * before connecting, so tens of thousands of connections do not run out of
 * ephemeral ports on one address), the upgrade request with the token, the
 * check of the server's 101 and Sec-WebSocket-Accept, reading server frames,
 * and writing masked client frames. Every received event is timestamped
 * (CLOCK_REALTIME, once per read) against the emitter's stamp in the
 * payload, and its sequence number is checked for order.
 *
 * Reads land in the process's one buffer; only the bytes of an incomplete
 * frame are copied aside, so an idle connection holds no buffer (the client
 * must not be the thing that runs out of memory at 19,000 connections).
 *
 * With --protocol wsgw.2 the request names the subprotocol, the 101 must
 * name it back, and text messages go to wsb_conn__text2 (envelopes,
 * replies with positions, notices: read by wsb_proto2.c); a connection can
 * then be dropped and set up again with its positions (wsb_conn_restart).
 * Without it every byte sent and every check is as before.
 *
 * With --deflate the request offers permessage-deflate as browsers do
 * (client_max_window_bits, nothing asked of the server's context), the 101
 * must accept it, and frames with RSV1 are inflated (wsb_inflate.c) before
 * the same checks. When the 101 answers server_no_context_takeover each
 * message is inflated alone on the process's stream; when it leaves it out
 * the server keeps its context and the connection keeps its own inflater,
 * from its first compressed message to its close (a reconnect starts a
 * fresh one). --deflate-no-takeover offers server_no_context_takeover too,
 * and the 101 must then answer it. Without either, an RSV bit, or an
 * extension in the 101, is an error. Bytes on the wire are counted as
 * received (all frames, and the events' frames), beside the events'
 * inflated size and how many of their frames came compressed.
 */
#define _GNU_SOURCE /* memmem */
#include <assert.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "b64.h"
#include "chan_pos.h"
#include "wsb.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24 /* Linux 4.2; older libc headers lack it */
#endif

#define WSB_HEAD_MAX 4096
#define WSB_FRAME_MAX (16u << 20)
#define WSB_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static void wsb_conn__fail(wsb_conn *c, const char *why);

/* ---- writing ------------------------------------------------------------- */

typedef struct wsb_write {
  uv_write_t req;
  char data[];
} wsb_write;

static void wsb_conn__on_write(uv_write_t *req, int status) {
  wsb_conn *c = req->data;
  free(req);
  if (status < 0 && status != UV_ECANCELED && c->state != WSB_C_CLOSED)
    wsb_conn__fail(c, uv_strerror(status));
}

/* Small writes almost always complete at once; only a remainder is copied. */
static void wsb_conn__write(wsb_conn *c, const void *data, size_t len) {
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (r == (int)len) return;
  if (r < 0 && r != UV_EAGAIN) {
    wsb_conn__fail(c, uv_strerror(r));
    return;
  }
  size_t done = r > 0 ? (size_t)r : 0;
  wsb_write *w = malloc(sizeof(*w) + len - done);
  if (!w) {
    wsb_conn__fail(c, "out of memory");
    return;
  }
  memcpy(w->data, (const char *)data + done, len - done);
  w->req.data = c;
  b = uv_buf_init(w->data, (unsigned)(len - done));
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, wsb_conn__on_write) != 0) {
    free(w);
    wsb_conn__fail(c, "write failed");
  }
}

/* RFC 6455 5.3 wants an unpredictable mask so that a client's bytes cannot
 * be steered into something a proxy would cache; a load client talking to
 * its own gateway only needs a correct mask, so a fast PRNG seeded from the
 * kernel serves. */
static size_t wsb_conn__frame_head(uint8_t *h, int opcode, size_t len, uint32_t mask) {
  size_t n = 2;
  h[0] = (uint8_t)(0x80 | opcode);
  if (len < 126) {
    h[1] = (uint8_t)(0x80 | len);
  } else if (len <= 0xffff) {
    h[1] = 0x80 | 126;
    h[2] = (uint8_t)(len >> 8);
    h[3] = (uint8_t)len;
    n = 4;
  } else {
    h[1] = 0x80 | 127;
    for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    n = 10;
  }
  memcpy(h + n, &mask, 4);
  return n + 4;
}

static void wsb_conn__send_frame(wsb_conn *c, int opcode, const void *payload, size_t len) {
  uint8_t small[512];
  uint8_t *f = len + 14 <= sizeof(small) ? small : malloc(len + 14);
  if (!f) {
    wsb_conn__fail(c, "out of memory");
    return;
  }
  uint32_t mask = (uint32_t)wsb_rand(c->p);
  size_t h = wsb_conn__frame_head(f, opcode, len, mask);
  const uint8_t *m = f + h - 4, *src = payload;
  for (size_t i = 0; i < len; i++) f[h + i] = src[i] ^ m[i & 3];
  wsb_conn__write(c, f, h + len);
  if (f != small) free(f);
}

void wsb_conn_send_text(wsb_conn *c, const char *text, size_t len) {
  wsb_conn__send_frame(c, 1, text, len);
}

/* ---- closing -------------------------------------------------------------- */

static void wsb_conn__on_close(uv_handle_t *h) {
  wsb_conn *c = h->data;
  free(c->acc);
  c->acc = NULL;
  c->acc_len = c->acc_cap = 0;
  wsb_inflate_free(c->inf); /* its context ends with the connection */
  c->inf = NULL;
  wsb_proc_closed(c->p, c);
  if (c->bounce && !c->p->stopping) { /* --reconnect-after: the handle is free again */
    c->bounce = 0;
    int rc = wsb_conn_restart(c);
    if (rc != 0) {
      wsb_proc_error(c->p, c, uv_strerror(rc));
      wsb_proc_resumed(c->p, c);
    }
  }
}

/* A reset, not a FIN: tens of thousands of closes would otherwise leave as
 * many TIME_WAIT sockets holding the ports the next run needs. */
void wsb_conn_close(wsb_conn *c) {
  if (c->state == WSB_C_IDLE || c->state == WSB_C_CLOSED) return;
  c->state = WSB_C_CLOSED;
  if (c->churn_busy) {
    c->churn_busy = 0;
    c->p->churn_out--;
  }
  if (uv_tcp_close_reset(&c->tcp, wsb_conn__on_close) != 0)
    uv_close((uv_handle_t *)&c->tcp, wsb_conn__on_close);
}

static void wsb_conn__fail(wsb_conn *c, const char *why) {
  if (c->state == WSB_C_CLOSED) return;
  wsb_proc *p = c->p;
  int in_setup = c->state != WSB_C_IDLE && c->state < WSB_C_READY;
  int counting = c->state == WSB_C_READY && !c->complete;
  if (!p->stopping) wsb_proc_error(p, c, why);
  wsb_conn_close(c);
  if (in_setup && c->resuming) wsb_proc_resumed(p, c); /* counts it complete */
  else if (in_setup) wsb_proc_settled(p, c);
  if (counting) {
    c->complete = 1; /* nothing more will come: do not wait for it */
    wsb_proc_complete(p, c);
  }
}

/* ---- the upgrade ------------------------------------------------------------ */

static void wsb_conn__make_key(wsb_conn *c) {
  uint64_t r[2] = {wsb_rand(c->p), wsb_rand(c->p)};
  char *k = b64_encode(r, sizeof(r), NULL);
  snprintf(c->key, sizeof(c->key), "%s", k ? k : "dGhlIHNhbXBsZSBub25jZQ==");
  free(k);
}

/* The Sec-WebSocket-Extensions line of the request ("" without --deflate). */
static const char *wsb_conn__offer(const wsb_opts *o) {
  if (!o->deflate) return "";
  if (o->deflate_nct)
    return "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
           "client_max_window_bits\r\n";
  return "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
}

static void wsb_conn__send_request(wsb_conn *c) {
  const wsb_opts *o = c->p->o;
  char req[4096];
  const char *token = o->n_tokens
                          ? o->tokens[(c->p->source_base + (long)c->idx) % o->n_tokens]
                          : o->token;
  wsb_conn__make_key(c);
  int n = snprintf(req, sizeof(req),
                   "GET %s?token=%s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                   o->path, token, o->host, o->port, c->key,
                   o->proto2 ? "Sec-WebSocket-Protocol: " CHAN_POS_PROTOCOL "\r\n" : "",
                   wsb_conn__offer(o), o->headers);
  if (n <= 0 || (size_t)n >= sizeof(req)) {
    wsb_conn__fail(c, "request too long");
    return;
  }
  c->state = WSB_C_UPGRADING;
  wsb_conn__write(c, req, (size_t)n);
}

/* The value of header `name` in the response head, or NULL. */
static const char *wsb_conn__header(const char *head, size_t len, const char *name,
                                    size_t *vlen) {
  size_t nlen = strlen(name);
  const char *end = head + len, *line = memchr(head, '\n', len);
  while (line && ++line < end) {
    const char *eol = memchr(line, '\r', (size_t)(end - line));
    if (!eol) return NULL;
    if ((size_t)(eol - line) > nlen && line[nlen] == ':' &&
        strncasecmp(line, name, nlen) == 0) {
      const char *v = line + nlen + 1;
      while (v < eol && *v == ' ') v++;
      *vlen = (size_t)(eol - v);
      return v;
    }
    line = memchr(eol, '\n', (size_t)(end - eol));
  }
  return NULL;
}

static int wsb_conn__accept_ok(const wsb_conn *c, const char *head, size_t len) {
  char in[64], *want;
  unsigned char sha[EVP_MAX_MD_SIZE];
  unsigned shalen = 0;
  int n = snprintf(in, sizeof(in), "%s%s", c->key, WSB_GUID);
  if (!EVP_Digest(in, (size_t)n, sha, &shalen, EVP_sha1(), NULL)) return 0;
  want = b64_encode(sha, shalen, NULL);
  size_t vlen = 0;
  const char *v = wsb_conn__header(head, len, "sec-websocket-accept", &vlen);
  int ok = want && v && vlen == strlen(want) && memcmp(v, want, vlen) == 0;
  free(want);
  return ok;
}

/* The 101 answers Sec-WebSocket-Protocol: wsgw.2 (and nothing else). */
static int wsb_conn__proto_ok(const char *head, size_t len) {
  size_t vlen = 0, want = strlen(CHAN_POS_PROTOCOL);
  const char *v = wsb_conn__header(head, len, "sec-websocket-protocol", &vlen);
  return v && vlen == want && memcmp(v, CHAN_POS_PROTOCOL, want) == 0;
}

/* 1 when the parameters of an extension answer (v, vlen: from the first
 * ';' on) name `param` on its own, not as part of a longer name. */
static int wsb_conn__has_param(const char *v, size_t vlen, const char *param) {
  size_t plen = strlen(param);
  const char *end = v + vlen, *s = memchr(v, ';', vlen);
  while (s) {
    s++;
    while (s < end && (*s == ' ' || *s == '\t')) s++;
    if ((size_t)(end - s) >= plen && strncasecmp(s, param, plen) == 0 &&
        (s + plen == end || strchr(" \t;=", s[plen])))
      return 1;
    s = memchr(s, ';', (size_t)(end - s));
  }
  return 0;
}

/* The extension answer of the 101: NULL when it is what we offered (or
 * nothing, when we offered nothing), else why not. Sets c->pmd, and
 * c->pmd_kept when the server keeps its context (no
 * server_no_context_takeover: RFC 7692 7.1.1.1 lets it when not asked). */
static const char *wsb_conn__ext_check(wsb_conn *c, const char *head, size_t len) {
  static const char pmd[] = "permessage-deflate";
  size_t vlen = 0, plen = sizeof pmd - 1;
  const char *v = wsb_conn__header(head, len, "sec-websocket-extensions", &vlen);
  c->pmd = c->pmd_kept = 0;
  if (!c->p->o->deflate) return v ? "the 101 names an extension that was not offered" : NULL;
  if (!v || vlen < plen || strncasecmp(v, pmd, plen) != 0 ||
      (vlen > plen && v[plen] != ';' && v[plen] != ' '))
    return "the 101 does not accept permessage-deflate (compression off?)";
  int nct = wsb_conn__has_param(v, vlen, "server_no_context_takeover");
  /* Asked for, it must be answered (RFC 7692 7.1.1.1). */
  if (c->p->o->deflate_nct && !nct)
    return "the 101 does not answer the server_no_context_takeover offered";
  c->pmd = 1;
  c->pmd_kept = !nct;
  return NULL;
}

/* Bytes of the response head, 0 while incomplete, -1 when refused. */
static long wsb_conn__head(wsb_conn *c, const uint8_t *d, size_t len) {
  const uint8_t *end = memmem(d, len, "\r\n\r\n", 4);
  if (!end) return len > WSB_HEAD_MAX ? -1 : 0;
  size_t hlen = (size_t)(end - d) + 4;
  if (hlen < 13 || memcmp(d, "HTTP/1.1 101", 12) != 0) {
    char why[64];
    snprintf(why, sizeof(why), "upgrade refused: %.12s", (const char *)d);
    wsb_conn__fail(c, why);
    return -1;
  }
  if (!wsb_conn__accept_ok(c, (const char *)d, hlen)) {
    wsb_conn__fail(c, "bad Sec-WebSocket-Accept");
    return -1;
  }
  if (c->p->o->proto2 && !wsb_conn__proto_ok((const char *)d, hlen)) {
    wsb_conn__fail(c, "the 101 does not name wsgw.2 (history off?)");
    return -1;
  }
  const char *why = wsb_conn__ext_check(c, (const char *)d, hlen);
  if (why) {
    wsb_conn__fail(c, why);
    return -1;
  }
  c->p->rep.wire_bytes += hlen;
  return (long)hlen;
}

/* ---- messages -------------------------------------------------------------- */

/* The unsigned number after "key": in a JSON text, or -1. */
static int wsb_conn__num(const uint8_t *d, size_t len, const char *key, uint64_t *out) {
  size_t klen = strlen(key);
  const uint8_t *k = memmem(d, len, key, klen);
  if (!k) return -1;
  const uint8_t *p = k + klen, *end = d + len;
  while (p < end && (*p == ' ' || *p == ':')) p++;
  if (p == end || *p < '0' || *p > '9') return -1;
  uint64_t v = 0;
  while (p < end && *p >= '0' && *p <= '9') v = v * 10 + (uint64_t)(*p++ - '0');
  *out = v;
  return 0;
}

static void wsb_conn__event(wsb_conn *c, const uint8_t *d, size_t len, uint64_t now_rt) {
  wsb_proc *p = c->p;
  uint64_t seq, t;
  if (wsb_conn__num(d, len, "\"seq\"", &seq) || wsb_conn__num(d, len, "\"t\"", &t)) {
    wsb_proc_error(p, c, "event without seq or t");
    return;
  }
  c->received++;
  p->rep.events++;
  if (seq <= c->last_seq) p->rep.ooo++;
  else c->last_seq = seq;
  wsb_hist_add(&p->rep.lat, now_rt > t ? (now_rt - t) / 1000 : 0);
  if (!p->rep.emit_first_rt || t < p->rep.emit_first_rt) p->rep.emit_first_rt = t;
  if (now_rt > p->rep.recv_last_rt) p->rep.recv_last_rt = now_rt;
  p->last_event_ms = uv_now(p->loop);
  if (p->o->expect && c->received == (uint64_t)p->o->expect && !c->complete) {
    c->complete = 1;
    wsb_proc_complete(p, c);
  }
}

static void wsb_conn__ready(wsb_conn *c) {
  c->state = WSB_C_READY;
  if (c->resuming) {
    wsb_proc_resumed(c->p, c);
    return;
  }
  c->was_ready = 1;
  wsb_proc_settled(c->p, c);
}

static void wsb_conn__accepted(wsb_conn *c, const uint8_t *d, size_t len) {
  wsb_proc *p = c->p;
  if (!memmem(d, len, "\"accept\": true", 14)) {
    wsb_conn__fail(c, "first message is not the accept");
    return;
  }
  uint64_t now = wsb_now_ns();
  if (!c->resuming) { /* a reconnect's figures are resume_hs, at its reply */
    wsb_hist_add(&p->rep.hs, (now - c->t0_ns) / 1000);
    if (now > p->rep.hs_last_ns) p->rep.hs_last_ns = now;
  }
  if (!p->o->sub[0]) {
    wsb_conn__ready(c);
    return;
  }
  c->state = WSB_C_SUBSCRIBING;
  if (c->resuming) {
    char sub[4096];
    size_t slen = 0;
    if (wsb2_sub_text(c, sub, sizeof(sub), &slen) != 0) {
      wsb_conn__fail(c, "subscription with positions does not fit");
      return;
    }
    wsb_conn_send_text(c, sub, slen);
    return;
  }
  wsb_conn_send_text(c, p->o->sub, strlen(p->o->sub));
}

void wsb_conn_churn_next(wsb_conn *c) {
  const wsb_opts *o = c->p->o;
  const char *t = c->churn_flip ? o->sub : o->sub2;
  c->churn_flip ^= 1;
  c->churn_busy = 1;
  c->p->churn_out++;
  c->t0_ns = wsb_now_ns();
  wsb_conn_send_text(c, t, strlen(t));
}

static void wsb_conn__churn_reply(wsb_conn *c) {
  wsb_proc *p = c->p;
  uint64_t now = wsb_now_ns();
  c->churn_busy = 0;
  p->churn_out--;
  p->rep.churn_reqs++;
  p->rep.churn_last_ns = now;
  wsb_hist_add(&p->rep.churn, (now - c->t0_ns) / 1000);
  if (p->churning) wsb_conn_churn_next(c);
  else if (p->churn_out == 0) wsb_proc_complete(p, NULL);
}

static void wsb_conn__text2(wsb_conn *c, const uint8_t *d, size_t len, uint64_t now_rt);

static void wsb_conn__text(wsb_conn *c, const uint8_t *d, size_t len, uint64_t now_rt) {
  if (c->c2) {
    wsb_conn__text2(c, d, len, now_rt);
    return;
  }
  int is_reply = memmem(d, len, "\"groups_current\"", 16) != NULL;
  switch (c->state) {
    case WSB_C_ACCEPTING: wsb_conn__accepted(c, d, len); return;
    case WSB_C_SUBSCRIBING:
      if (is_reply) wsb_conn__ready(c);
      else wsb_conn__fail(c, "subscription refused");
      return;
    case WSB_C_READY:
      if (is_reply && c->churn_busy) wsb_conn__churn_reply(c);
      else if (memmem(d, len, "\"seq\"", 5)) wsb_conn__event(c, d, len, now_rt);
      else wsb_proc_error(c->p, c, "unexpected text message");
      return;
    default: wsb_conn__fail(c, "text message in the wrong state");
  }
}

/* ---- messages on wsgw.2 ------------------------------------------------------ */

/* why, with the first bytes of the message that caused it. */
static void wsb_conn__why2(char *out, size_t cap, const char *why, const uint8_t *d,
                           size_t len) {
  snprintf(out, cap, "%s: %.*s", why, (int)(len < 60 ? len : 60), (const char *)d);
}

static void wsb_conn__event2(wsb_conn *c, const uint8_t *d, size_t len, uint64_t now_rt) {
  char why[96], msg[192];
  if (wsb2_event(c, d, len, now_rt, why) != 0) {
    wsb_conn__why2(msg, sizeof(msg), why, d, len);
    wsb_proc_error(c->p, c, msg);
    return;
  }
  if (c->state == WSB_C_READY && wsb2_bounce_due(c)) {
    c->bounce = 1; /* drop now, in the middle of the stream; on_close reconnects */
    wsb_conn_close(c);
  }
}

/* Envelopes are {"group":..,"position":..,"text":".."}: the emitted text is
 * escaped inside, so "groups_current" and "recovery" cannot appear bare in
 * an event, and an event is what has "position" without them. */
static void wsb_conn__text2(wsb_conn *c, const uint8_t *d, size_t len, uint64_t now_rt) {
  char why[96], msg[192];
  int is_reply = memmem(d, len, "\"groups_current\"", 16) != NULL;
  int is_notice = !is_reply && memmem(d, len, "\"recovery\"", 10) != NULL;
  int is_event = !is_reply && !is_notice && memmem(d, len, "\"position\"", 10) != NULL;
  switch (c->state) {
    case WSB_C_ACCEPTING: wsb_conn__accepted(c, d, len); return;
    case WSB_C_SUBSCRIBING:
      if (is_event) {
        wsb_conn__event2(c, d, len, now_rt); /* counted as early */
      } else if (is_reply && wsb2_reply(c, d, len, why) == 0) {
        wsb_conn__ready(c);
      } else {
        wsb_conn__why2(msg, sizeof(msg), is_reply ? why : "subscription refused", d, len);
        wsb_conn__fail(c, msg);
      }
      return;
    case WSB_C_READY:
      if (is_event) {
        wsb_conn__event2(c, d, len, now_rt);
      } else if ((is_reply && c->churn_busy) || is_notice) {
        if (wsb2_reply(c, d, len, why) != 0) {
          wsb_conn__why2(msg, sizeof(msg), why, d, len);
          wsb_proc_error(c->p, c, msg);
        }
        if (is_reply) wsb_conn__churn_reply(c);
      } else {
        wsb_conn__why2(msg, sizeof(msg), "unexpected text message", d, len);
        wsb_proc_error(c->p, c, msg);
      }
      return;
    default: wsb_conn__fail(c, "text message in the wrong state");
  }
}

static void wsb_conn__message(wsb_conn *c, int opcode, const uint8_t *d, size_t len,
                              uint64_t now_rt) {
  switch (opcode) {
    case 1: wsb_conn__text(c, d, len, now_rt); break;
    case 9: wsb_conn__send_frame(c, 10, d, len); break; /* ping -> pong */
    case 10: break;
    case 8: {
      char why[48];
      snprintf(why, sizeof(why), "server closed (%d)", len >= 2 ? d[0] << 8 | d[1] : 1005);
      wsb_conn__fail(c, why);
      break;
    }
    default: wsb_conn__fail(c, "unexpected opcode");
  }
}

/* ---- reading ----------------------------------------------------------------- */

/* 1: a whole frame (header hl bytes, payload pl), 0: incomplete, -1: not a
 * frame this server may send (masked, fragmented, huge). */
static int wsb_conn__frame(const uint8_t *d, size_t n, size_t *hl, uint64_t *pl) {
  if (n < 2) return 0;
  if ((d[1] & 0x80) || !(d[0] & 0x80)) return -1;
  uint64_t len = d[1] & 0x7f;
  size_t h = 2;
  if (len == 126) {
    if (n < 4) return 0;
    len = (uint64_t)d[2] << 8 | d[3];
    h = 4;
  } else if (len == 127) {
    if (n < 10) return 0;
    len = 0;
    for (int i = 2; i < 10; i++) len = len << 8 | d[i];
    h = 10;
  }
  if (len > WSB_FRAME_MAX) return -1;
  if (n - h < len) return 0;
  *hl = h;
  *pl = len;
  return 1;
}

/* NULL when the RSV bits of a frame (first byte b0) are allowed, else why not:
 * RSV1 marks a compressed data message, once permessage-deflate was agreed. */
static const char *wsb_conn__rsv_check(const wsb_conn *c, uint8_t b0) {
  if (b0 & 0x30) return "RSV2 or RSV3 set";
  if (!(b0 & 0x40)) return NULL;
  if (!c->pmd) return "RSV1 without permessage-deflate";
  if (b0 & 0x08) return "RSV1 on a control frame";
  return NULL;
}

/* A frame of `wire` bytes was handled, its payload plen bytes once
 * inflated; it was an event when the connection's count moved. */
static void wsb_conn__count(wsb_conn *c, uint64_t received_before, size_t wire, size_t plen,
                            int z) {
  wsb_report *r = &c->p->rep;
  r->wire_bytes += wire;
  if (c->received == received_before) return;
  r->ev_wire_bytes += wire;
  r->ev_bytes += plen;
  if (z) r->zframes++;
  else r->pframes++;
}

/* A compressed message (*msg, *len) replaced by its inflated bytes: on the
 * connection's own stream when the server keeps its context (made now, at
 * the first one), else on the process's, reset. -1: the connection failed. */
static int wsb_conn__inflate(wsb_conn *c, const uint8_t **msg, size_t *len) {
  if (c->pmd_kept && !c->inf && !(c->inf = wsb_inflate_new(c->p))) {
    wsb_conn__fail(c, "out of memory (inflater)");
    return -1;
  }
  if (wsb_inflate(c->p, c->pmd_kept ? c->inf : NULL, *msg, *len, msg, len) != 0) {
    wsb_conn__fail(c, c->pmd_kept ? "a compressed message does not inflate on the "
                                    "connection's kept context (or ends the stream)"
                                  : "a compressed message does not inflate");
    return -1;
  }
  return 0;
}

/* One whole frame at f (header hl bytes, payload pl): checks, inflates,
 * hands the message on, counts. -1: the connection failed. */
static int wsb_conn__one(wsb_conn *c, const uint8_t *f, size_t hl, size_t pl, uint64_t now_rt) {
  const char *why = wsb_conn__rsv_check(c, f[0]);
  if (why) {
    wsb_conn__fail(c, why);
    return -1;
  }
  const uint8_t *msg = f + hl;
  size_t len = pl;
  int z = (f[0] & 0x40) != 0;
  if (z && wsb_conn__inflate(c, &msg, &len) != 0) return -1;
  uint64_t before = c->received;
  wsb_conn__message(c, f[0] & 0x0f, msg, len, now_rt);
  wsb_conn__count(c, before, hl + pl, len, z);
  return 0;
}

/* Handles every whole frame (and the response head) in d; returns the bytes
 * used. The rest is an incomplete frame the caller keeps. */
static size_t wsb_conn__consume(wsb_conn *c, const uint8_t *d, size_t len, uint64_t now_rt) {
  size_t used = 0;
  if (c->state == WSB_C_UPGRADING) {
    long h = wsb_conn__head(c, d, len);
    if (h < 0 && c->state != WSB_C_CLOSED) wsb_conn__fail(c, "response head too long");
    if (h <= 0) return h < 0 ? len : 0;
    used = (size_t)h;
    c->state = WSB_C_ACCEPTING;
  }
  while (used < len && c->state != WSB_C_CLOSED) {
    size_t hl;
    uint64_t pl;
    int r = wsb_conn__frame(d + used, len - used, &hl, &pl);
    if (r == 0) break;
    if (r < 0) {
      wsb_conn__fail(c, "bad frame from the server");
      return len;
    }
    if (wsb_conn__one(c, d + used, hl, (size_t)pl, now_rt) != 0) return len;
    used += hl + (size_t)pl;
  }
  return used;
}

static int wsb_conn__keep(wsb_conn *c, const uint8_t *d, size_t len) {
  if (c->acc_len + len > c->acc_cap) {
    size_t cap = c->acc_cap ? c->acc_cap : 1024;
    while (cap < c->acc_len + len) cap *= 2;
    uint8_t *a = realloc(c->acc, cap);
    if (!a) return -1;
    c->acc = a;
    c->acc_cap = (uint32_t)cap;
  }
  memmove(c->acc + c->acc_len, d, len);
  c->acc_len += (uint32_t)len;
  return 0;
}

static void wsb_conn__on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  wsb_conn *c = h->data;
  *buf = uv_buf_init(c->p->rbuf, sizeof(c->p->rbuf));
}

static void wsb_conn__on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  wsb_conn *c = s->data;
  if (n == 0 || c->state == WSB_C_CLOSED) return;
  if (n < 0) {
    wsb_conn__fail(c, n == UV_EOF ? "server closed the socket" : uv_strerror((int)n));
    return;
  }
  uint64_t now_rt = wsb_now_rt_ns();
  const uint8_t *d = (const uint8_t *)buf->base;
  size_t len = (size_t)n;
  if (c->acc_len) { /* a frame started in an earlier read */
    if (wsb_conn__keep(c, d, len) != 0) {
      wsb_conn__fail(c, "out of memory");
      return;
    }
    d = c->acc;
    len = c->acc_len;
    c->acc_len = 0;
  }
  size_t used = wsb_conn__consume(c, d, len, now_rt);
  if (c->state == WSB_C_CLOSED || used == len) return;
  if (wsb_conn__keep(c, d + used, len - used) != 0) wsb_conn__fail(c, "out of memory");
}

/* ---- connecting -------------------------------------------------------------- */

static void wsb_conn__on_connect(uv_connect_t *req, int status) {
  wsb_conn *c = req->data;
  free(req);
  if (c->state == WSB_C_CLOSED) return;
  if (status < 0) {
    wsb_conn__fail(c, uv_strerror(status));
    return;
  }
  if (uv_read_start((uv_stream_t *)&c->tcp, wsb_conn__on_alloc, wsb_conn__on_read) != 0) {
    wsb_conn__fail(c, "read_start failed");
    return;
  }
  wsb_conn__send_request(c);
}

/* Binds the source address first, with the port left to connect(2)
 * (IP_BIND_ADDRESS_NO_PORT): ports are then shared by 4-tuple, not
 * reserved per bind. */
static int wsb_conn__bind(wsb_conn *c) {
  wsb_proc *p = c->p;
  uv_os_fd_t fd;
  int one = 1;
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
  char ip[32];
  snprintf(ip, sizeof(ip), "127.0.0.%ld",
           1 + (p->source_base + (long)c->idx) % p->o->sources);
  struct sockaddr_in src;
  if (uv_ip4_addr(ip, 0, &src) != 0) return -1;
  return uv_tcp_bind(&c->tcp, (const struct sockaddr *)&src, 0);
}

int wsb_conn_start(wsb_conn *c) {
  wsb_proc *p = c->p;
  struct sockaddr_in dst;
  if (uv_ip4_addr(p->o->host, p->o->port, &dst) != 0) return -1;
  if (p->o->proto2 && wsb2_attach(c) != 0) return UV_ENOMEM;
  int rc = uv_tcp_init_ex(p->loop, &c->tcp, AF_INET);
  if (rc != 0) return rc;
  c->tcp.data = c;
  c->state = WSB_C_CONNECTING;
  p->open++;
  c->t0_ns = wsb_now_ns();
  if (!p->rep.hs_first_ns) p->rep.hs_first_ns = c->t0_ns;
  uv_connect_t *req = malloc(sizeof(*req));
  if (!req) {
    wsb_conn__fail(c, "out of memory");
    return 0;
  }
  req->data = c;
  if ((rc = wsb_conn__bind(c)) != 0 ||
      (rc = uv_tcp_connect(req, &c->tcp, (const struct sockaddr *)&dst,
                           wsb_conn__on_connect)) != 0) {
    free(req);
    wsb_conn__fail(c, uv_strerror(rc));
  }
  return 0;
}

/* A connection whose handle is closed, set up again; its subscription names
 * the positions it kept. Its figures go to resume_* (wsb_proc_resumed). */
int wsb_conn_restart(wsb_conn *c) {
  wsb_proc *p = c->p;
  assert(c->state == WSB_C_CLOSED && c->c2);
  c->resuming = 1;
  c->churn_busy = 0;
  wsb2_mark_resume(c);
  uint64_t now = wsb_now_ns();
  if (!p->rep.resume_first_ns || now < p->rep.resume_first_ns) p->rep.resume_first_ns = now;
  return wsb_conn_start(c);
}
