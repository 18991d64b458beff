/*
 * wk_hook.h - the worker as an HTTP client of the application: the connect
 * and subscribe hooks (docs/PROTOCOL.md, "Application hooks").
 *
 * Three parts, each usable alone:
 *   - answer parsing (pure): the JSON the application returns, read
 *     strictly (ids exact, at most 2^53 - 1);
 *   - the circuit breaker (pure, clock passed in): after `threshold`
 *     failures in a row it fails fast for `cooldown_ms`, then lets one
 *     probe through; the probe's outcome closes or reopens it;
 *   - the client: one libcurl multi handle (connections kept alive and
 *     reused), transfers started without blocking and finished by
 *     wk_hook_perform, which the consumer loop calls when curl's sockets
 *     or timers are due (wk_hook_poll waits on them and one extra fd: the
 *     AMQP socket).
 *
 * Owns: libcurl, the transfer's bounds (total and connect timeouts, the
 * response size, at most max_in_flight at once), the breaker, the hook's
 * metrics (latency, errors by kind, in flight, breaker state). Must not:
 * know what a hook means (wk_handle builds requests and reads answers) or
 * log request headers or bodies (they carry credentials).
 */
#ifndef WK_HOOK_H
#define WK_HOOK_H

#include <stddef.h>
#include <stdint.h>

#include "prom.h"

/* --- answers ------------------------------------------------------------ */

/* The connect hook's 200 answer:
 *   {"user": 7, "expires": 1700000000, "grants": {"job_events": [42]},
 *    "session": {...}}
 * user: a positive integer up to 2^53 - 1, as a number or a string of
 * digits without a leading zero; expires: optional, integer unix seconds
 * (0 .. 2^53 - 1); grants: optional object, the rules of a token's
 * "objects" claim; session: optional object. Other keys are ignored. */
typedef struct wk_hook_connect_answer {
  long long user_id;
  long long expires;  /* 0: none */
  char *grants_json;  /* compact, numbers exact; NULL: none */
  char *session_json; /* compact, numbers exact; NULL: none */
} wk_hook_connect_answer;

/* 0 with *out filled (release with wk_hook_connect_answer_free), or -1
 * with a short reason in err. body need not be NUL-terminated. */
int wk_hook_parse_connect(const char *body, size_t len,
                          wk_hook_connect_answer *out, char *err,
                          size_t errlen);
void wk_hook_connect_answer_free(wk_hook_connect_answer *a);

/* The subscribe hook's 200 answer: {"allowed": [42, "43"]}: ids as numbers
 * or digit strings (no leading zero), 0 .. 2^53 - 1; at most max_ids of
 * them. 0 with *ids (malloc'd, may be NULL when *n is 0) and *n, or -1
 * with a reason. */
int wk_hook_parse_subscribe(const char *body, size_t len, size_t max_ids,
                            uint64_t **ids, size_t *n, char *err,
                            size_t errlen);

/* 1 and *out when s is an id as the hooks carry it: digits without a
 * leading zero (or "0"), at most 2^53 - 1. */
int wk_hook_id_parse(const char *s, uint64_t *out);

/* --- circuit breaker ---------------------------------------------------- */

typedef enum {
  WK_BREAKER_CLOSED = 0, /* calls go through */
  WK_BREAKER_OPEN,       /* failing fast until the cool-down ends */
  WK_BREAKER_HALF_OPEN   /* one probe is out; the rest fail fast */
} wk_breaker_state;

typedef struct wk_breaker {
  unsigned threshold;   /* consecutive failures that open it (>= 1) */
  uint64_t cooldown_ms; /* open for this long, then one probe */
  wk_breaker_state state;
  unsigned failures; /* in a row */
  uint64_t open_until_ms;
} wk_breaker;

void wk_breaker_init(wk_breaker *b, unsigned threshold, uint64_t cooldown_ms);
/* 1: make the call (when the cool-down is over, this is the probe, and the
 * breaker is half open until its result); 0: fail fast. */
int wk_breaker_allow(wk_breaker *b, uint64_t now_ms);
/* The outcome of a call wk_breaker_allow let through. */
void wk_breaker_result(wk_breaker *b, int ok, uint64_t now_ms);

/* --- the client --------------------------------------------------------- */

/* What a transfer came to. */
typedef enum {
  WK_HOOK_ANSWERED = 0, /* an HTTP status arrived with a whole body */
  WK_HOOK_FAILED        /* no usable answer; kind says why */
} wk_hook_outcome;

/* Error kinds, the label of wsgw_worker_hook_errors_total. */
typedef enum {
  WK_HOOK_ERR_TIMEOUT = 0, /* hook_timeout passed (or the connect timeout) */
  WK_HOOK_ERR_CONNECT,     /* refused, unreachable, DNS, TLS */
  WK_HOOK_ERR_STATUS,      /* an HTTP status other than 200, 401, 403 */
  WK_HOOK_ERR_INVALID,     /* 200 with an answer that does not parse */
  WK_HOOK_ERR_TOO_LARGE,   /* a response over the size bound */
  WK_HOOK_ERR_BREAKER,     /* not tried: the breaker is open */
  WK_HOOK_ERR_BUSY,        /* not tried: max_in_flight reached */
  WK_HOOK_ERR_OTHER,       /* anything else curl reports; out of memory */
  WK_HOOK_ERR_N
} wk_hook_err;

const char *wk_hook_err_name(wk_hook_err e);

typedef struct wk_hook_conf {
  long timeout_ms;         /* whole transfer */
  long connect_timeout_ms; /* TCP + TLS */
  unsigned max_in_flight;  /* transfers at once */
  size_t max_response;     /* bytes of body; more fails the call */
  unsigned breaker_threshold;
  long breaker_cooldown_ms;
} wk_hook_conf;

/*
 * A transfer's end. outcome ANSWERED: status and the body (len bytes, NUL
 * after them); FAILED: kind. The callee returns 0 when the answer was
 * usable (a 200 it could parse, a 401 or 403), or the error kind it saw
 * (WK_HOOK_ERR_STATUS, WK_HOOK_ERR_INVALID), which counts against the
 * breaker and in the metrics. For FAILED the return value is ignored.
 */
typedef int (*wk_hook_done_fn)(void *arg, wk_hook_outcome outcome,
                               wk_hook_err kind, long status,
                               const char *body, size_t len);

typedef struct wk_hook wk_hook;

/* NULL when libcurl cannot start (logged). */
wk_hook *wk_hook_new(const wk_hook_conf *conf);
/* Cancels every transfer in flight without calling its done function. */
void wk_hook_free(wk_hook *h);
/* Cancels every transfer in flight without calling its done function (the
 * broker connection is gone, and with it what the answers were for). */
void wk_hook_cancel_all(wk_hook *h);
/* New bounds (SIGHUP) for transfers started from now on. */
void wk_hook_set_conf(wk_hook *h, const wk_hook_conf *conf);

/* One request header line, "Name: value". */
typedef struct wk_hook_header {
  const char *name;
  const char *value;
} wk_hook_header;

/*
 * Starts POST url with the headers and a JSON body (copied). 0: started,
 * done(arg, ...) runs from a later wk_hook_perform; -1: not started
 * (*kind says why: BREAKER, BUSY, OTHER), done is not called.
 */
int wk_hook_start(wk_hook *h, const char *url, const wk_hook_header *headers,
                  size_t n_headers, const char *body, size_t body_len,
                  wk_hook_done_fn done, void *arg, wk_hook_err *kind);

unsigned wk_hook_in_flight(const wk_hook *h);
/* 1 when max_in_flight transfers are out. */
int wk_hook_full(const wk_hook *h);

/*
 * Waits up to timeout_ms for curl's sockets, curl's next timer, or fd
 * (-1: none) becoming readable; *fd_ready says whether fd did. 0, or -1
 * (logged) when the wait itself failed.
 */
int wk_hook_poll(wk_hook *h, int fd, int timeout_ms, int *fd_ready);

/* Drives the transfers and calls done for each that ended. */
void wk_hook_perform(wk_hook *h);

/* The hook's metrics (process-wide). */
void wk_hook_metrics_render(strbuf *b);
/* The cache's lookups, counted by wk_handle. */
void wk_hook_metrics_cache(int hit);

#endif
