/*
 * em_http.c - the HTTP/1.1 server of emitd (see em_http.h).
 *
 * A connection's life: READ (parsing; the request timer runs from the
 * request's first byte, or from accept for the first request) -> at the end
 * of a request parsing pauses: the answer is written at once, or after the
 * broker (WAIT, timer = emit.timeout + 1 s as a backstop should the broker
 * thread be stuck in a blocking write) -> WRITE -> back to READ (the idle
 * timer runs until the next request's first byte), or a close.
 *
 * A refusal decided from the head alone (404, 405, 401) reads and drops a
 * body of at most max_body so the connection stays usable; a body over
 * max_body, or a refusal to a client that waits for "100 Continue", is
 * answered at once and followed by a lingering close: the socket's write
 * side is shut and what the client still sends is read and dropped for up
 * to 2 s, so that the client reads the answer instead of a reset.
 */
#include "em_http.h"

#include <assert.h>
#include <llhttp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin.h"
#include "hostport.h"
#include "httpstatus.h"
#include "log.h"
#include "prom.h"

#define EM_URL_MAX 8192
#define EM_HEADERS_MAX 16384
#define EM_AUTH_MAX (EM_KEY_MAX + 16)
#define EM_LINGER_MS 2000
#define EM_BACKSTOP_MS 1000

typedef enum { EM_READ = 0, EM_WAIT, EM_WRITE, EM_LINGER, EM_CLOSING } em_state;
typedef enum { EM_H_OTHER = 0, EM_H_AUTH, EM_H_EXPECT } em_header;

struct em_conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t wreq;
  uv_shutdown_t sreq;
  em_server *s;
  em_conn *prev, *next;
  llhttp_t parser;
  em_state state;
  int in_request;      /* a request's first byte arrived */
  /* the request being read */
  char url[EM_URL_MAX];
  size_t url_len;
  char hname[16];
  size_t hname_len;
  em_header cur;
  char auth[EM_AUTH_MAX];
  size_t auth_len;
  int expect_continue;
  size_t head_bytes;   /* header bytes so far (EM_HEADERS_MAX) */
  int refuse;          /* status decided from the head, 0: none */
  char refuse_why[128];
  int discard;         /* refused: the body is read and dropped */
  int req_close;       /* the request asked for no keep-alive */
  char *body;
  size_t body_len, body_cap;
  int answered_early;  /* a callback answered (413): stop parsing */
  /* pipelined bytes after a paused request */
  char *rest;
  size_t rest_len;
  em_job *job;         /* waiting for the broker */
  char *out;           /* the answer being written */
  int handles_open;    /* tcp and timer, until both close callbacks ran */
  int close_after;
};

static llhttp_settings_t em_http__settings;

/* ---- answers --------------------------------------------------------------------- */

/* s as the contents of a JSON string: '"' and '\\' escaped, any byte that
 * is not printable ASCII (a client's bytes quoted in an error) as '?'. */
static void em_http__json_text(char *out, size_t outlen, const char *s) {
  size_t o = 0;
  for (; *s && o + 3 < outlen; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') out[o++] = '\\', out[o++] = (char)c;
    else out[o++] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
  }
  out[o] = '\0';
}

static void em_http__closed(uv_handle_t *h);
static void em_http__close(em_conn *c);
static void em_http__resume(em_conn *c);
static void em_http__linger(em_conn *c);
static void em_http__timeout(uv_timer_t *t);

static void em_http__arm(em_conn *c, long ms) {
  uv_timer_start(&c->timer, em_http__timeout, (uint64_t)ms, 0);
}

static void em_http__count(em_server *s, int status) {
  int i = em_status_index(status);
  if (i >= 0) s->st.requests[i]++;
}

static void em_http__written(uv_write_t *w, int status) {
  em_conn *c = w->data;
  free(c->out);
  c->out = NULL;
  if (c->state == EM_CLOSING) return;
  if (status < 0) {
    em_http__close(c);
    return;
  }
  if (c->close_after) {
    /* Answered before the body was read: the client may still be sending. */
    if (c->answered_early) em_http__linger(c);
    else em_http__close(c);
    return;
  }
  em_http__resume(c);
}

/* Writes one answer. extra: more header lines, each ending in "\r\n". */
static void em_http__send(em_conn *c, int status, const char *extra, const char *ctype,
                          const char *body, size_t blen, int close_after) {
  em_server *s = c->s;
  if (c->state == EM_CLOSING) return;
  if (s->stopping || c->req_close) close_after = 1;
  if (status != 100) em_http__count(s, status);
  char head[512];
  int hl = snprintf(head, sizeof head,
                    "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                    "Cache-Control: no-store\r\n%s%s\r\n",
                    status, http_reason(status), ctype, blen, extra ? extra : "",
                    close_after ? "Connection: close\r\n" : "");
  assert(hl > 0 && (size_t)hl < sizeof head);
  char *out = malloc((size_t)hl + blen);
  if (!out) {
    em_http__close(c);
    return;
  }
  memcpy(out, head, (size_t)hl);
  if (blen) memcpy(out + hl, body, blen);
  c->out = out;
  c->close_after = close_after;
  c->state = EM_WRITE;
  uv_buf_t buf = uv_buf_init(out, (unsigned)((size_t)hl + blen));
  c->wreq.data = c;
  if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &buf, 1, em_http__written) != 0) {
    free(out);
    c->out = NULL;
    em_http__close(c);
    return;
  }
  em_http__arm(c, s->conf->request_timeout_ms); /* the client must read it */
}

/* {"error": why} with status; extra headers as em_http__send. */
static void em_http__error(em_conn *c, int status, const char *why, const char *extra,
                           int close_after) {
  char esc[512], body[600];
  em_http__json_text(esc, sizeof esc, why);
  int n = snprintf(body, sizeof body, "{\"error\":\"%s\"}", esc);
  em_http__send(c, status, extra, "application/json", body, (size_t)n, close_after);
}

static void em_http__error_503(em_conn *c, const char *why, size_t confirmed,
                               size_t unconfirmed) {
  char esc[512], body[640];
  em_http__json_text(esc, sizeof esc, why);
  int n = snprintf(body, sizeof body, "{\"error\":\"%s\",\"confirmed\":%zu,\"unconfirmed\":%zu}",
                   esc, confirmed, unconfirmed);
  em_http__send(c, 503, "Retry-After: 1\r\n", "application/json", body, (size_t)n, 0);
}

/* ---- connection life --------------------------------------------------------------- */

static void em_http__reset_request(em_conn *c) {
  c->in_request = 0;
  c->url_len = c->hname_len = c->auth_len = c->head_bytes = 0;
  c->cur = EM_H_OTHER;
  c->expect_continue = c->refuse = c->discard = c->answered_early = c->req_close = 0;
  free(c->body);
  c->body = NULL;
  c->body_len = c->body_cap = 0;
}

static void em_http__unlink(em_conn *c) {
  em_server *s = c->s;
  if (c->prev) c->prev->next = c->next;
  else s->all = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
}

/* Both handles (socket and timer) are closed at once; the second close
 * callback frees the connection. */
static void em_http__closed(uv_handle_t *h) {
  em_conn *c = h->data;
  assert(c->handles_open > 0);
  if (--c->handles_open > 0) return;
  em_http__reset_request(c);
  free(c->rest);
  free(c);
}

static void em_http__close(em_conn *c) {
  if (c->state == EM_CLOSING) return;
  c->state = EM_CLOSING;
  if (c->job) { /* answered later by the broker: nobody to tell */
    c->job->owner = NULL;
    c->job = NULL;
  }
  uv_timer_stop(&c->timer);
  em_http__unlink(c);
  assert(c->s->conns > 0);
  c->s->conns--;
  uv_close((uv_handle_t *)&c->tcp, em_http__closed);
  uv_close((uv_handle_t *)&c->timer, em_http__closed);
}

static void em_http__lingered(uv_shutdown_t *r, int status) {
  (void)status;
  em_conn *c = r->data;
  if (c->state == EM_LINGER) em_http__arm(c, EM_LINGER_MS);
}

static void em_http__alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void em_http__read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

/* After an answer that ends the exchange with a body maybe still coming:
 * shut our side, drop what arrives, close within EM_LINGER_MS. */
static void em_http__linger(em_conn *c) {
  c->state = EM_LINGER;
  c->sreq.data = c;
  if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, em_http__lingered) != 0) {
    em_http__close(c);
    return;
  }
  uv_read_start((uv_stream_t *)&c->tcp, em_http__alloc, em_http__read);
  em_http__arm(c, EM_LINGER_MS);
}

static void em_http__timeout(uv_timer_t *t) {
  em_conn *c = t->data;
  switch (c->state) {
  case EM_WAIT: /* the broker thread did not answer in time: backstop */
    if (c->job) {
      em_job *j = c->job;
      j->owner = NULL;
      c->job = NULL;
      c->s->st.events_failed += j->pubs.n;
      em_http__error_503(c, "no confirm from the broker in time", 0, j->pubs.n);
    }
    return;
  case EM_READ:
    c->s->st.timeouts++;
    if (c->in_request) {
      em_http__error(c, 408, "request not received within emit.request_timeout", NULL, 1);
      return;
    }
    em_http__close(c);
    return;
  default:
    em_http__close(c);
  }
}

/* ---- reading ---------------------------------------------------------------------- */

/* One read buffer for every connection: libuv reads into it and calls the
 * read callback at once, and the parser copies what it keeps (URL, headers,
 * body; pipelined bytes into c->rest). Saves 64 KiB per connection. */
static void em_http__alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  em_server *s = ((em_conn *)h->data)->s;
  (void)hint;
  if (s->rbuf_busy) { /* never with libuv's read-then-callback; ENOBUFS if so */
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  s->rbuf_busy = 1;
  *buf = uv_buf_init(s->rbuf, sizeof s->rbuf);
}

/* Feeds data to the parser. Returns 1 when the connection may read on. */
static int em_http__parse(em_conn *c, const char *data, size_t n) {
  llhttp_errno_t e = llhttp_execute(&c->parser, data, n);
  if (c->state == EM_CLOSING) return 0;
  if (e == HPE_OK) return 1;
  if (e == HPE_PAUSED) {
    /* The end of a request: keep what follows for later. */
    const char *pos = llhttp_get_error_pos(&c->parser);
    size_t used = pos ? (size_t)(pos - data) : n;
    assert(used <= n);
    if (used < n) {
      char *rest = malloc(n - used);
      if (!rest) {
        em_http__close(c);
        return 0;
      }
      memcpy(rest, data + used, n - used);
      free(c->rest);
      c->rest = rest;
      c->rest_len = n - used;
    }
    return 0;
  }
  if (c->answered_early) return 0;
  char why[160];
  snprintf(why, sizeof why, "malformed HTTP request: %s", llhttp_get_error_reason(&c->parser));
  em_http__error(c, 400, why, NULL, 1);
  return 0;
}

static void em_http__read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  em_conn *c = st->data;
  if (buf->base == c->s->rbuf) c->s->rbuf_busy = 0;
  if (n == 0) return;
  if (n < 0) {
    em_http__close(c);
    return;
  }
  if (c->state == EM_LINGER) return; /* dropped */
  if (c->state != EM_READ) return;
  if (!em_http__parse(c, buf->base, (size_t)n) && c->state != EM_CLOSING &&
      c->state != EM_LINGER)
    uv_read_stop(st);
}

/* After an answer: the next request, from the bytes kept, then the socket. */
static void em_http__resume(em_conn *c) {
  em_http__reset_request(c);
  c->state = EM_READ;
  llhttp_resume(&c->parser);
  em_http__arm(c, c->s->conf->idle_timeout_ms);
  if (c->rest) {
    char *rest = c->rest;
    size_t n = c->rest_len;
    c->rest = NULL;
    c->rest_len = 0;
    int more = em_http__parse(c, rest, n);
    free(rest);
    if (!more) return;
  }
  if (c->s->stopping && !c->in_request) {
    em_http__close(c);
    return;
  }
  uv_read_start((uv_stream_t *)&c->tcp, em_http__alloc, em_http__read);
}

/* ---- llhttp callbacks ---------------------------------------------------------------- */

static em_conn *em_http__conn(llhttp_t *p) { return p->data; }

static int em_http__on_begin(llhttp_t *p) {
  em_conn *c = em_http__conn(p);
  em_http__reset_request(c);
  c->in_request = 1;
  em_http__arm(c, c->s->conf->request_timeout_ms);
  return 0;
}

static int em_http__on_url(llhttp_t *p, const char *at, size_t n) {
  em_conn *c = em_http__conn(p);
  if (c->url_len + n >= sizeof c->url) {
    c->answered_early = 1;
    em_http__error(c, 414, "request target longer than 8 KiB", NULL, 1);
    return HPE_USER;
  }
  memcpy(c->url + c->url_len, at, n);
  c->url_len += n;
  return 0;
}

static int em_http__head_bytes(em_conn *c, size_t n) {
  c->head_bytes += n;
  if (c->head_bytes <= EM_HEADERS_MAX) return 0;
  c->answered_early = 1;
  em_http__error(c, 431, "request headers longer than 16 KiB", NULL, 1);
  return HPE_USER;
}

static int em_http__on_hfield(llhttp_t *p, const char *at, size_t n) {
  em_conn *c = em_http__conn(p);
  if (em_http__head_bytes(c, n)) return HPE_USER;
  if (c->hname_len + n < sizeof c->hname) memcpy(c->hname + c->hname_len, at, n);
  c->hname_len += n;
  return 0;
}

static int em_http__on_hfield_done(llhttp_t *p) {
  em_conn *c = em_http__conn(p);
  c->cur = EM_H_OTHER;
  if (c->hname_len == 13 && strncasecmp(c->hname, "authorization", 13) == 0) {
    c->cur = EM_H_AUTH;
    c->auth_len = 0;
  } else if (c->hname_len == 6 && strncasecmp(c->hname, "expect", 6) == 0) {
    c->cur = EM_H_EXPECT;
  }
  c->hname_len = 0;
  return 0;
}

static int em_http__on_hvalue(llhttp_t *p, const char *at, size_t n) {
  em_conn *c = em_http__conn(p);
  if (em_http__head_bytes(c, n)) return HPE_USER;
  if (c->cur == EM_H_AUTH) {
    if (c->auth_len + n < sizeof c->auth) memcpy(c->auth + c->auth_len, at, n);
    c->auth_len += n; /* too long: no key matches */
  } else if (c->cur == EM_H_EXPECT) {
    if (n >= 12 && strncasecmp(at, "100-continue", 12) == 0) c->expect_continue = 1;
  }
  return 0;
}

static int em_http__on_hvalue_done(llhttp_t *p) {
  em_http__conn(p)->cur = EM_H_OTHER;
  return 0;
}

typedef enum { EM_R_EMIT, EM_R_BATCH, EM_R_ADMIN, EM_R_NONE } em_route;

static em_route em_http__route(const em_conn *c, size_t *pathlen) {
  size_t n = 0;
  while (n < c->url_len && c->url[n] != '?') n++;
  *pathlen = n;
  if (n == 5 && memcmp(c->url, "/emit", 5) == 0) return EM_R_EMIT;
  if (n == 11 && memcmp(c->url, "/emit/batch", 11) == 0) return EM_R_BATCH;
  static const char *const admin[] = {"/metrics", "/healthz", "/readyz"};
  for (size_t i = 0; i < 3; i++)
    if (strlen(admin[i]) == n && memcmp(c->url, admin[i], n) == 0) return EM_R_ADMIN;
  return EM_R_NONE;
}

/* The headers a refusal carries: 401 says how to authenticate, 405 what
 * is allowed. */
static const char *em_http__refuse_headers(int status, em_route r) {
  if (status == 401) return "WWW-Authenticate: Bearer realm=\"wsgw-emit\"\r\n";
  if (status == 405) return r == EM_R_ADMIN ? "Allow: GET, HEAD\r\n" : "Allow: POST\r\n";
  return NULL;
}

/* "Bearer KEY" against the key file; 1 when it names a key. */
static int em_http__authorized(em_conn *c) {
  if (c->auth_len >= sizeof c->auth || c->auth_len < 7 ||
      strncasecmp(c->auth, "Bearer ", 7) != 0)
    return 0;
  const char *k = c->auth + 7;
  size_t kl = c->auth_len - 7;
  while (kl && *k == ' ') k++, kl--;
  while (kl && k[kl - 1] == ' ') kl--;
  return em_keys_check(&c->s->keys, k, kl) != NULL;
}

static int em_http__on_headers(llhttp_t *p) {
  em_conn *c = em_http__conn(p);
  size_t pl;
  em_route r = em_http__route(c, &pl);
  int post = p->method == HTTP_POST;
  int admin_method = p->method == HTTP_GET || p->method == HTTP_HEAD;
  if (r == EM_R_NONE) {
    c->refuse = 404;
    snprintf(c->refuse_why, sizeof c->refuse_why,
             "not found: POST /emit?group=NAME or POST /emit/batch");
  } else if ((r == EM_R_ADMIN && !admin_method) || (r != EM_R_ADMIN && !post)) {
    c->refuse = 405;
    snprintf(c->refuse_why, sizeof c->refuse_why, "method %s not allowed here",
             llhttp_method_name((llhttp_method_t)p->method));
  } else if (r != EM_R_ADMIN && !em_http__authorized(c)) {
    c->refuse = 401;
    snprintf(c->refuse_why, sizeof c->refuse_why,
             c->auth_len ? "wrong API key" : "missing API key: Authorization: Bearer KEY");
  }
  uint64_t max = (uint64_t)c->s->conf->max_body;
  int has_len = (p->flags & F_CONTENT_LENGTH) != 0;
  if (has_len && p->content_length > max) {
    c->answered_early = 1;
    char why[96];
    snprintf(why, sizeof why, "body larger than emit.max_body (%llu bytes)",
             (unsigned long long)max);
    em_http__error(c, c->refuse ? c->refuse : 413, c->refuse ? c->refuse_why : why,
                   em_http__refuse_headers(c->refuse, r), 1);
    return HPE_USER;
  }
  if (c->refuse) {
    c->discard = 1;
    if (c->expect_continue) { /* the client waits: answer now, then close */
      c->answered_early = 1;
      em_http__error(c, c->refuse, c->refuse_why, em_http__refuse_headers(c->refuse, r), 1);
      return HPE_USER;
    }
    return 0;
  }
  if (has_len && p->content_length > 0) {
    c->body = malloc((size_t)p->content_length);
    if (!c->body) {
      c->answered_early = 1;
      em_http__error_503(c, "out of memory", 0, 0);
      return HPE_USER;
    }
    c->body_cap = (size_t)p->content_length;
  }
  if (c->expect_continue && post) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    uv_buf_t b = uv_buf_init((char *)cont, sizeof cont - 1);
    (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1); /* 25 bytes into an empty socket */
  }
  return 0;
}

static int em_http__on_body(llhttp_t *p, const char *at, size_t n) {
  em_conn *c = em_http__conn(p);
  size_t max = (size_t)c->s->conf->max_body;
  if (c->body_len + n > max) { /* chunked: no length up front */
    c->answered_early = 1;
    char why[96];
    snprintf(why, sizeof why, "body larger than emit.max_body (%zu bytes)", max);
    em_http__error(c, 413, why, NULL, 1);
    return HPE_USER;
  }
  if (c->discard) {
    c->body_len += n;
    return 0;
  }
  if (c->body_len + n > c->body_cap) {
    size_t cap = c->body_cap ? c->body_cap * 2 : 4096;
    while (cap < c->body_len + n) cap *= 2;
    if (cap > max) cap = max;
    char *b = realloc(c->body, cap);
    if (!b) return HPE_USER;
    c->body = b;
    c->body_cap = cap;
  }
  memcpy(c->body + c->body_len, at, n);
  c->body_len += n;
  return 0;
}

static void em_http__admin(em_conn *c, int head_only) {
  em_server *s = c->s;
  size_t pl;
  (void)em_http__route(c, &pl);
  int close_after = !llhttp_should_keep_alive(&c->parser);
  if (pl == 8 && memcmp(c->url, "/metrics", 8) == 0) {
    strbuf b;
    strbuf_init(&b);
    em_gauges g = {s->conns, s->pending, s->waiting, s->keys.n};
    em_metrics_write(&b, &s->st, &g, em_broker_stats_of(s->broker));
    if (b.failed) em_http__error(c, 500, "out of memory", NULL, 1);
    else em_http__send(c, 200, NULL, PROM_CONTENT_TYPE, b.data, head_only ? 0 : b.len, close_after);
    strbuf_free(&b);
  } else if (pl == 8 && memcmp(c->url, "/healthz", 8) == 0) {
    em_http__send(c, 200, NULL, "text/plain; charset=utf-8", "ok\n", head_only ? 0 : 3, close_after);
  } else {
    int ready = em_http_ready(s);
    em_http__send(c, ready ? 200 : 503, NULL, "text/plain; charset=utf-8",
                  ready ? "ready\n" : "not ready\n", head_only ? 0 : (ready ? 6 : 10), close_after);
  }
}

static void em_http__emit(em_conn *c, em_route r) {
  em_server *s = c->s;
  em_pubs pubs;
  char why[256];
  size_t pl;
  (void)em_http__route(c, &pl);
  const char *q = pl < c->url_len ? c->url + pl + 1 : "";
  size_t ql = pl < c->url_len ? c->url_len - pl - 1 : 0;
  const char *body = c->body ? c->body : "";
  int rc = r == EM_R_EMIT
               ? em_request_single(q, ql, body, c->body_len, (size_t)s->conf->max_events, &pubs,
                                   why, sizeof why)
               : em_request_batch(body, c->body_len, (size_t)s->conf->max_events, &pubs, why,
                                  sizeof why);
  if (rc == 0 && r == EM_R_BATCH && ql) {
    rc = 400;
    snprintf(why, sizeof why, "/emit/batch takes no query string");
  }
  if (rc) {
    em_pubs_free(&pubs);
    if (rc == 503) em_http__error_503(c, why, 0, 0);
    else em_http__error(c, rc, why, NULL, 0);
    return;
  }
  if (pubs.n == 0) { /* {"events": []} */
    em_pubs_free(&pubs);
    em_http__send(c, 200, NULL, "application/json", "{\"emitted\":0}", 13, 0);
    return;
  }
  if (s->pending + pubs.n > (size_t)s->conf->max_pending) {
    s->st.events_failed += pubs.n;
    size_t n = pubs.n;
    em_pubs_free(&pubs);
    em_http__error_503(c, "not sent: too many events waiting for the broker (emit.max_pending)",
                       0, n);
    return;
  }
  em_job *j = calloc(1, sizeof *j);
  if (!j) {
    em_pubs_free(&pubs);
    em_http__error_503(c, "out of memory", 0, 0);
    return;
  }
  j->pubs = pubs;
  j->body = c->body; /* the messages point into it */
  c->body = NULL;
  c->body_len = c->body_cap = 0;
  j->owner = c;
  c->job = j;
  c->state = EM_WAIT;
  s->pending += pubs.n;
  s->waiting++;
  em_broker_submit(s->broker, j);
  em_http__arm(c, s->conf->timeout_ms + EM_BACKSTOP_MS);
}

static int em_http__on_complete(llhttp_t *p) {
  em_conn *c = em_http__conn(p);
  c->req_close = !llhttp_should_keep_alive(p);
  size_t pl;
  em_route r = em_http__route(c, &pl);
  if (c->refuse) {
    em_http__error(c, c->refuse, c->refuse_why, em_http__refuse_headers(c->refuse, r), 0);
    return HPE_PAUSED;
  }
  if (r == EM_R_ADMIN) em_http__admin(c, p->method == HTTP_HEAD);
  else em_http__emit(c, r);
  return HPE_PAUSED;
}

/* ---- the broker's answer --------------------------------------------------------------- */

void em_http_job_done(em_job *j, void *arg) {
  em_server *s = arg;
  assert(s->pending >= j->pubs.n && s->waiting > 0);
  s->pending -= j->pubs.n;
  s->waiting--;
  em_conn *c = j->owner;
  s->st.events_emitted += j->confirmed;
  if (c) {
    assert(c->job == j && c->state == EM_WAIT);
    c->job = NULL;
    prom_hist_observe(&s->st.latency, em_now_us() - j->submit_us);
    if (j->confirmed == j->pubs.n) {
      char body[64];
      int n = snprintf(body, sizeof body, "{\"emitted\":%zu}", j->confirmed);
      em_http__send(c, 200, NULL, "application/json", body, (size_t)n, 0);
    } else {
      s->st.events_failed += j->pubs.n - j->confirmed;
      em_http__error_503(c, j->why, j->confirmed, j->pubs.n - j->confirmed);
    }
  }
  em_pubs_free(&j->pubs);
  free(j->body);
  free(j);
}

/* ---- accepting ------------------------------------------------------------------------ */

static void em_http__refuse_conn(em_server *s, uv_tcp_t *t);

static void em_http__on_conn(uv_stream_t *l, int status) {
  em_server *s = l->data;
  if (status < 0) return;
  em_conn *c = calloc(1, sizeof *c);
  if (!c) return;
  c->s = s;
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->handles_open = 2;
  if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
    c->state = EM_CLOSING;
    uv_close((uv_handle_t *)&c->tcp, em_http__closed);
    uv_close((uv_handle_t *)&c->timer, em_http__closed);
    return;
  }
  if (s->conns >= (size_t)s->conf->max_connections || s->stopping) {
    s->st.connections_refused++;
    em_http__refuse_conn(s, &c->tcp);
    c->state = EM_CLOSING;
    uv_close((uv_handle_t *)&c->tcp, em_http__closed);
    uv_close((uv_handle_t *)&c->timer, em_http__closed);
    return;
  }
  s->conns++;
  s->st.connections_total++;
  c->next = s->all;
  if (s->all) s->all->prev = c;
  s->all = c;
  uv_tcp_nodelay(&c->tcp, 1);
  llhttp_init(&c->parser, HTTP_REQUEST, &em_http__settings);
  c->parser.data = c;
  c->state = EM_READ;
  /* The first request gets request_timeout from accept: a client that
   * connects and sends nothing is a slow client too. */
  em_http__arm(c, s->conf->request_timeout_ms);
  c->in_request = 0;
  uv_read_start((uv_stream_t *)&c->tcp, em_http__alloc, em_http__read);
}

/* Over max_connections: a short 503 if the socket takes it now, then close. */
static void em_http__refuse_conn(em_server *s, uv_tcp_t *t) {
  (void)s;
  static const char msg[] =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
      "Content-Length: 56\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
      "{\"error\":\"too many connections (emit.max_connections)\"}\n";
  uv_buf_t b = uv_buf_init((char *)msg, sizeof msg - 1);
  (void)uv_try_write((uv_stream_t *)t, &b, 1);
}

int em_http_start(em_server *s, uv_loop_t *loop, const em_config *conf, char *err,
                  size_t errlen) {
  llhttp_settings_init(&em_http__settings);
  em_http__settings.on_message_begin = em_http__on_begin;
  em_http__settings.on_url = em_http__on_url;
  em_http__settings.on_header_field = em_http__on_hfield;
  em_http__settings.on_header_field_complete = em_http__on_hfield_done;
  em_http__settings.on_header_value = em_http__on_hvalue;
  em_http__settings.on_header_value_complete = em_http__on_hvalue_done;
  em_http__settings.on_headers_complete = em_http__on_headers;
  em_http__settings.on_body = em_http__on_body;
  em_http__settings.on_message_complete = em_http__on_complete;
  s->loop = loop;
  s->conf = conf;
  struct sockaddr_storage ss;
  socklen_t sl;
  if (hostport_listen_addr(conf->listen, &ss, &sl) < 0) {
    snprintf(err, errlen, "emit.listen: " HOSTPORT_EXPECTED);
    return -1;
  }
  uv_tcp_init(loop, &s->listener);
  s->listener.data = s;
  int rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 511, em_http__on_conn);
  if (rc != 0) {
    snprintf(err, errlen, "emit.listen %s: %s", conf->listen, uv_strerror(rc));
    uv_close((uv_handle_t *)&s->listener, NULL);
    return -1;
  }
  return 0;
}

void em_http_stop(em_server *s) {
  if (s->stopping) return;
  s->stopping = 1;
  uv_close((uv_handle_t *)&s->listener, NULL);
  em_conn *c = s->all;
  while (c) {
    em_conn *next = c->next;
    if (c->state == EM_READ && !c->in_request) em_http__close(c);
    c = next;
  }
}

void em_http_close_all(em_server *s) {
  while (s->all) em_http__close(s->all);
}

int em_http_ready(const em_server *s) {
  return !s->stopping && s->keys.n > 0 && s->broker &&
         atomic_load(&em_broker_stats_of(s->broker)->up);
}
