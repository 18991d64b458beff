/*
 * wk_hook.c - the application hooks' HTTP client (libcurl multi), its
 * circuit breaker and the parsing of the answers. wk_hook.h says what each
 * part promises.
 *
 * Cost: one easy handle per call (a few allocations); the TCP (and TLS)
 * connection is the multi handle's and is reused by the next call to the
 * same host, so a busy worker talks to the application over a handful of
 * kept-alive connections.
 */
#include "wk_hook.h"

#include <math.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "chan_json.h"
#include "log.h"
#include "token.h"

#define WK_HOOK_ID_DIGITS_MAX 16 /* 2^53 - 1 has 16 digits */
/* Past it a double no longer tells neighbouring integers apart. */
#define WK_HOOK_ID_MAX CHAN_JSON_UINT_MAX

/* --- metrics ------------------------------------------------------------ */

static struct {
  prom_hist latency; /* answered calls, whatever the status */
  atomic_uint_fast64_t calls[2]; /* [0] failed, [1] answered and usable */
  atomic_uint_fast64_t errors[WK_HOOK_ERR_N];
  atomic_uint_fast64_t cache[2]; /* [0] misses, [1] hits */
  atomic_uint in_flight;
  atomic_int breaker; /* wk_breaker_state */
  atomic_uint_fast64_t breaker_opened;
} wk_hook__m;

static const char *const wk_hook__err_names[WK_HOOK_ERR_N] = {
    "timeout", "connect", "status", "invalid", "too_large",
    "breaker_open", "busy", "other"};

const char *wk_hook_err_name(wk_hook_err e) {
  return (unsigned)e < WK_HOOK_ERR_N ? wk_hook__err_names[e] : "other";
}

static void wk_hook__count_error(wk_hook_err e) {
  if ((unsigned)e >= WK_HOOK_ERR_N) e = WK_HOOK_ERR_OTHER;
  atomic_fetch_add_explicit(&wk_hook__m.errors[e], 1, memory_order_relaxed);
}

void wk_hook_metrics_cache(int hit) {
  atomic_fetch_add_explicit(&wk_hook__m.cache[hit ? 1 : 0], 1,
                            memory_order_relaxed);
}

static uint64_t wk_hook__load(atomic_uint_fast64_t *c) {
  return atomic_load_explicit(c, memory_order_relaxed);
}

void wk_hook_metrics_render(strbuf *b) {
  static const char lat[] = "wsgw_worker_hook_seconds";
  static const char err[] = "wsgw_worker_hook_errors_total";
  static const char cache[] = "wsgw_worker_grant_cache_lookups_total";
  prom_family(b, lat, "histogram",
              "Time from starting a hook call to its answer (any HTTP status).");
  prom_hist_write(b, lat, NULL, &wk_hook__m.latency);
  prom_family(b, err, "counter",
              "Hook calls without a usable answer, by kind (timeout, connect, "
              "status, invalid, too_large, breaker_open, busy, other).");
  for (int i = 0; i < WK_HOOK_ERR_N; i++) {
    char labels[48];
    snprintf(labels, sizeof labels, "kind=\"%s\"", wk_hook__err_names[i]);
    prom_sample(b, err, labels, wk_hook__load(&wk_hook__m.errors[i]));
  }
  prom_family(b, "wsgw_worker_hook_in_flight", "gauge",
              "Hook calls started and not yet answered.");
  prom_sample(b, "wsgw_worker_hook_in_flight", NULL,
              atomic_load(&wk_hook__m.in_flight));
  prom_family(b, "wsgw_worker_hook_breaker_state", "gauge",
              "The hooks' circuit breaker: 0 closed, 1 open (failing fast), "
              "2 half open (one probe out).");
  prom_sample(b, "wsgw_worker_hook_breaker_state", NULL,
              (uint64_t)atomic_load(&wk_hook__m.breaker));
  prom_family(b, "wsgw_worker_hook_breaker_opened_total", "counter",
              "Times the breaker opened.");
  prom_sample(b, "wsgw_worker_hook_breaker_opened_total", NULL,
              wk_hook__load(&wk_hook__m.breaker_opened));
  prom_family(b, cache, "counter",
              "Grant cache lookups per (user, channel, id): hit (an answer, "
              "allowed or refused, younger than its TTL) or miss.");
  prom_sample(b, cache, "result=\"hit\"", wk_hook__load(&wk_hook__m.cache[1]));
  prom_sample(b, cache, "result=\"miss\"", wk_hook__load(&wk_hook__m.cache[0]));
}

/* --- answers ------------------------------------------------------------ */

int wk_hook_id_parse(const char *s, uint64_t *out) {
  size_t n = strlen(s);
  uint64_t v = 0;
  if (n == 0 || n > WK_HOOK_ID_DIGITS_MAX || (s[0] == '0' && n > 1)) return 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  if (v > WK_HOOK_ID_MAX) return 0;
  *out = v;
  return 1;
}

/* An id as a JSON number (integral, exact) or a digit string. */
static int wk_hook__id_item(const cJSON *item, uint64_t *out) {
  if (cJSON_IsNumber(item)) return chan_json_uint(item, WK_HOOK_ID_MAX, out) == 0;
  if (cJSON_IsString(item)) return wk_hook_id_parse(item->valuestring, out);
  return 0;
}

static cJSON *wk_hook__parse_object(const char *body, size_t len, char *err,
                                    size_t errlen) {
  cJSON *root = body ? chan_json_parse(body, len) : NULL;
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    chan_json_fail(err, errlen, "%s", "answer is not a JSON object");
    return NULL;
  }
  return root;
}

void wk_hook_connect_answer_free(wk_hook_connect_answer *a) {
  free(a->grants_json);
  free(a->session_json);
  memset(a, 0, sizeof *a);
}

int wk_hook_parse_connect(const char *body, size_t len,
                          wk_hook_connect_answer *out, char *err,
                          size_t errlen) {
  memset(out, 0, sizeof *out);
  cJSON *root = wk_hook__parse_object(body, len, err, errlen);
  if (!root) return -1;
  const cJSON *user = cJSON_GetObjectItemCaseSensitive(root, "user");
  const cJSON *exp = cJSON_GetObjectItemCaseSensitive(root, "expires");
  const cJSON *grants = cJSON_GetObjectItemCaseSensitive(root, "grants");
  const cJSON *session = cJSON_GetObjectItemCaseSensitive(root, "session");
  uint64_t v;
  int rc = -1;
  if (!wk_hook__id_item(user, &v) || v == 0) {
    chan_json_fail(err, errlen, "%s", "user is not a positive integer up to 2^53-1");
    goto done;
  }
  out->user_id = (long long)v;
  if (exp && !cJSON_IsNull(exp)) {
    if (chan_json_uint(exp, WK_HOOK_ID_MAX, &v) != 0) {
      chan_json_fail(err, errlen, "%s", "expires is not an integer of unix seconds");
      goto done;
    }
    out->expires = (long long)v;
  }
  if (grants && !cJSON_IsNull(grants)) {
    int g = token_objects_text(grants, &out->grants_json);
    if (g != 0) {
      chan_json_fail(err, errlen, "%s", g == -1 ? "grants is not an object of ids "
                                            "up to 2^53-1"
                                          : "out of memory");
      goto done;
    }
  }
  if (session && !cJSON_IsNull(session)) {
    if (!cJSON_IsObject(session)) {
      chan_json_fail(err, errlen, "%s", "session is not an object");
      goto done;
    }
    out->session_json = chan_json_print_exact(session);
    if (!out->session_json) {
      chan_json_fail(err, errlen, "%s", "out of memory");
      goto done;
    }
  }
  rc = 0;
done:
  cJSON_Delete(root);
  if (rc != 0) wk_hook_connect_answer_free(out);
  return rc;
}

int wk_hook_parse_subscribe(const char *body, size_t len, size_t max_ids,
                            uint64_t **ids, size_t *n, char *err,
                            size_t errlen) {
  *ids = NULL;
  *n = 0;
  cJSON *root = wk_hook__parse_object(body, len, err, errlen);
  if (!root) return -1;
  const cJSON *allowed = cJSON_GetObjectItemCaseSensitive(root, "allowed");
  int rc = -1;
  if (!cJSON_IsArray(allowed)) {
    chan_json_fail(err, errlen, "%s", "allowed is not a list");
    goto done;
  }
  size_t count = (size_t)cJSON_GetArraySize(allowed);
  if (count > max_ids) {
    chan_json_fail(err, errlen, "%s", "allowed lists more ids than were asked");
    goto done;
  }
  uint64_t *v = malloc((count + 1) * sizeof *v);
  if (!v) {
    chan_json_fail(err, errlen, "%s", "out of memory");
    goto done;
  }
  const cJSON *item;
  size_t i = 0;
  cJSON_ArrayForEach(item, allowed) {
    if (!wk_hook__id_item(item, &v[i])) {
      free(v);
      chan_json_fail(err, errlen, "%s", "allowed holds an id that is not an "
                                  "integer from 0 to 2^53-1");
      goto done;
    }
    i++;
  }
  *ids = v;
  *n = i;
  rc = 0;
done:
  cJSON_Delete(root);
  return rc;
}

/* --- circuit breaker ---------------------------------------------------- */

static void wk_breaker__set(wk_breaker *b, wk_breaker_state s) {
  if (s == WK_BREAKER_OPEN && b->state != WK_BREAKER_OPEN)
    atomic_fetch_add_explicit(&wk_hook__m.breaker_opened, 1,
                              memory_order_relaxed);
  b->state = s;
  atomic_store(&wk_hook__m.breaker, (int)s);
}

void wk_breaker_init(wk_breaker *b, unsigned threshold, uint64_t cooldown_ms) {
  memset(b, 0, sizeof *b);
  b->threshold = threshold ? threshold : 1;
  b->cooldown_ms = cooldown_ms;
  wk_breaker__set(b, WK_BREAKER_CLOSED);
}

int wk_breaker_allow(wk_breaker *b, uint64_t now_ms) {
  switch (b->state) {
    case WK_BREAKER_CLOSED:
      return 1;
    case WK_BREAKER_OPEN:
      if (now_ms < b->open_until_ms) return 0;
      wk_breaker__set(b, WK_BREAKER_HALF_OPEN);
      return 1; /* the probe */
    case WK_BREAKER_HALF_OPEN:
      return 0;
  }
  return 0;
}

void wk_breaker_result(wk_breaker *b, int ok, uint64_t now_ms) {
  if (ok) {
    b->failures = 0;
    if (b->state != WK_BREAKER_CLOSED) {
      log_info("hook_breaker_closed", "after=probe");
      wk_breaker__set(b, WK_BREAKER_CLOSED);
    }
    return;
  }
  if (b->failures < UINT32_MAX) b->failures++;
  /* A call let through before the breaker opened may end while it is
   * open: that changes nothing. A failed probe reopens it at once. */
  if (b->state == WK_BREAKER_HALF_OPEN ||
      (b->state == WK_BREAKER_CLOSED && b->failures >= b->threshold)) {
    b->open_until_ms = now_ms + b->cooldown_ms;
    log_warn("hook_breaker_open", "failures=%u cooldown_ms=%llu", b->failures,
             (unsigned long long)b->cooldown_ms);
    wk_breaker__set(b, WK_BREAKER_OPEN);
  }
}

/* --- the client --------------------------------------------------------- */

typedef struct wk_hook_call {
  struct wk_hook_call *prev, *next; /* in flight */
  wk_hook *h;
  CURL *easy;
  struct curl_slist *headers;
  char *body; /* the request's, kept until the end (POSTFIELDS borrows) */
  char *resp;
  size_t resp_len, resp_cap;
  int too_large;
  uint64_t start_us;
  wk_hook_done_fn done;
  void *arg;
} wk_hook_call;

struct wk_hook {
  CURLM *multi;
  wk_hook_conf conf;
  wk_breaker breaker;
  wk_hook_call *calls; /* in flight */
  unsigned n_calls;
};

static uint64_t wk_hook__now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int wk_hook__curl_global(void) {
  static int done = 0;
  if (done) return 0;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return -1;
  done = 1;
  return 0;
}

wk_hook *wk_hook_new(const wk_hook_conf *conf) {
  if (wk_hook__curl_global() != 0) {
    log_error("hook_init_failed", "reason=\"curl_global_init\"");
    return NULL;
  }
  wk_hook *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  h->multi = curl_multi_init();
  if (!h->multi) {
    free(h);
    log_error("hook_init_failed", "reason=\"curl_multi_init\"");
    return NULL;
  }
  wk_hook_set_conf(h, conf);
  return h;
}

void wk_hook_set_conf(wk_hook *h, const wk_hook_conf *conf) {
  h->conf = *conf;
  if (h->conf.max_in_flight == 0) h->conf.max_in_flight = 1;
  /* Keep as many idle connections as calls may be out at once. */
  curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS,
                    (long)h->conf.max_in_flight);
  wk_breaker b = h->breaker;
  wk_breaker_init(&h->breaker, conf->breaker_threshold,
                  (uint64_t)conf->breaker_cooldown_ms);
  /* A reload keeps what the breaker knows about the application. */
  if (b.threshold) {
    h->breaker.state = b.state;
    h->breaker.failures = b.failures;
    h->breaker.open_until_ms = b.open_until_ms;
    atomic_store(&wk_hook__m.breaker, (int)b.state);
  }
}

static void wk_hook__call_free(wk_hook_call *c) {
  if (c->easy) curl_easy_cleanup(c->easy);
  curl_slist_free_all(c->headers);
  free(c->body);
  free(c->resp);
  free(c);
}

static void wk_hook__unlink(wk_hook *h, wk_hook_call *c) {
  if (c->prev) c->prev->next = c->next;
  else h->calls = c->next;
  if (c->next) c->next->prev = c->prev;
  h->n_calls--;
  atomic_fetch_sub(&wk_hook__m.in_flight, 1);
  curl_multi_remove_handle(h->multi, c->easy);
}

void wk_hook_cancel_all(wk_hook *h) {
  if (!h) return;
  while (h->calls) {
    wk_hook_call *c = h->calls;
    wk_hook__unlink(h, c);
    wk_hook__call_free(c);
  }
}

void wk_hook_free(wk_hook *h) {
  if (!h) return;
  wk_hook_cancel_all(h);
  curl_multi_cleanup(h->multi);
  free(h);
}

unsigned wk_hook_in_flight(const wk_hook *h) { return h ? h->n_calls : 0; }

int wk_hook_full(const wk_hook *h) {
  return h && h->n_calls >= h->conf.max_in_flight;
}

static size_t wk_hook__write(char *data, size_t size, size_t nmemb, void *arg) {
  wk_hook_call *c = arg;
  size_t n = size * nmemb;
  if (n > c->h->conf.max_response - c->resp_len) {
    c->too_large = 1;
    return 0; /* curl ends the transfer with CURLE_WRITE_ERROR */
  }
  if (c->resp_len + n + 1 > c->resp_cap) {
    size_t cap = c->resp_cap ? c->resp_cap : 1024;
    while (cap < c->resp_len + n + 1) cap *= 2;
    char *p = realloc(c->resp, cap);
    if (!p) return 0;
    c->resp = p;
    c->resp_cap = cap;
  }
  memcpy(c->resp + c->resp_len, data, n);
  c->resp_len += n;
  c->resp[c->resp_len] = '\0';
  return n;
}

/* Sets up the easy handle; 0 or -1. */
static int wk_hook__easy(wk_hook *h, wk_hook_call *c, const char *url) {
  CURL *e = c->easy;
  int bad = 0;
  bad |= curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, h->conf.timeout_ms) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                          h->conf.connect_timeout_ms) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(c->body)) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, wk_hook__write) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, c) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, c) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_USERAGENT, "wsgw-workerd") != CURLE_OK;
  return bad ? -1 : 0;
}

/* One "Name: value" line; curl sends it as it is. NULL when out of memory
 * or when the value holds a line break (it would add a header). */
static struct curl_slist *wk_hook__add_header(struct curl_slist *l,
                                              const char *name,
                                              const char *value) {
  if (strpbrk(value, "\r\n")) return NULL;
  size_t n = strlen(name) + strlen(value) + 3;
  char *line = malloc(n);
  if (!line) return NULL;
  snprintf(line, n, "%s: %s", name, value);
  struct curl_slist *next = curl_slist_append(l, line);
  free(line);
  return next;
}

int wk_hook_start(wk_hook *h, const char *url, const wk_hook_header *headers,
                  size_t n_headers, const char *body, size_t body_len,
                  wk_hook_done_fn done, void *arg, wk_hook_err *kind) {
  *kind = WK_HOOK_ERR_OTHER;
  if (wk_hook_full(h)) {
    *kind = WK_HOOK_ERR_BUSY;
    wk_hook__count_error(*kind);
    return -1;
  }
  if (!wk_breaker_allow(&h->breaker, wk_hook__now_us() / 1000u)) {
    *kind = WK_HOOK_ERR_BREAKER;
    wk_hook__count_error(*kind);
    return -1;
  }
  wk_hook_call *c = calloc(1, sizeof *c);
  if (!c) goto fail;
  c->h = h;
  c->done = done;
  c->arg = arg;
  c->body = malloc(body_len + 1);
  c->easy = curl_easy_init();
  if (!c->body || !c->easy) goto fail;
  memcpy(c->body, body, body_len);
  c->body[body_len] = '\0';
  c->headers = curl_slist_append(NULL, "Content-Type: application/json");
  struct curl_slist *l = c->headers;
  /* No "Expect: 100-continue" round trip for a small body. */
  if (l) l = curl_slist_append(c->headers, "Expect:");
  for (size_t i = 0; l && i < n_headers; i++) {
    l = wk_hook__add_header(c->headers, headers[i].name, headers[i].value);
    if (l) c->headers = l;
  }
  if (!l || wk_hook__easy(h, c, url) != 0) goto fail;
  if (curl_multi_add_handle(h->multi, c->easy) != CURLM_OK) goto fail;
  c->start_us = wk_hook__now_us();
  c->next = h->calls;
  if (h->calls) h->calls->prev = c;
  h->calls = c;
  h->n_calls++;
  atomic_fetch_add(&wk_hook__m.in_flight, 1);
  return 0;
fail:
  /* Not the application's fault: the breaker is not told, but a probe it
   * let through must not stay out forever. */
  if (h->breaker.state == WK_BREAKER_HALF_OPEN)
    h->breaker.state = WK_BREAKER_OPEN;
  if (c) wk_hook__call_free(c);
  wk_hook__count_error(*kind);
  return -1;
}

int wk_hook_poll(wk_hook *h, int fd, int timeout_ms, int *fd_ready) {
  struct curl_waitfd extra = {.fd = fd, .events = CURL_WAIT_POLLIN, .revents = 0};
  int numfds = 0;
  *fd_ready = 0;
  CURLMcode mc = curl_multi_poll(h->multi, fd >= 0 ? &extra : NULL,
                                 fd >= 0 ? 1 : 0, timeout_ms, &numfds);
  if (mc != CURLM_OK) {
    log_error("hook_poll_failed", "reason=\"%s\"", curl_multi_strerror(mc));
    return -1;
  }
  *fd_ready = fd >= 0 && (extra.revents & (CURL_WAIT_POLLIN | POLLHUP | POLLERR)) != 0;
  return 0;
}

static wk_hook_err wk_hook__curl_kind(CURLcode rc, const wk_hook_call *c) {
  if (c->too_large) return WK_HOOK_ERR_TOO_LARGE;
  switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
      return WK_HOOK_ERR_TIMEOUT;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
      return WK_HOOK_ERR_CONNECT;
    default:
      return WK_HOOK_ERR_OTHER;
  }
}

static void wk_hook__finish(wk_hook *h, wk_hook_call *c, CURLcode rc) {
  uint64_t now = wk_hook__now_us();
  wk_hook__unlink(h, c);
  int ok;
  if (rc == CURLE_OK) {
    long status = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    prom_hist_observe(&wk_hook__m.latency, now - c->start_us);
    int kind = c->done(c->arg, WK_HOOK_ANSWERED, WK_HOOK_ERR_OTHER, status,
                       c->resp ? c->resp : "", c->resp_len);
    ok = kind == 0;
    if (!ok) {
      wk_hook__count_error((wk_hook_err)kind);
      log_warn("hook_failed", "kind=%s status=%ld ms=%llu",
               wk_hook_err_name((wk_hook_err)kind), status,
               (unsigned long long)((now - c->start_us) / 1000u));
    }
  } else {
    wk_hook_err kind = wk_hook__curl_kind(rc, c);
    wk_hook__count_error(kind);
    log_warn("hook_failed", "kind=%s reason=\"%s\" ms=%llu",
             wk_hook_err_name(kind), curl_easy_strerror(rc),
             (unsigned long long)((now - c->start_us) / 1000u));
    c->done(c->arg, WK_HOOK_FAILED, kind, 0, NULL, 0);
    ok = 0;
  }
  if (ok) atomic_fetch_add_explicit(&wk_hook__m.calls[1], 1, memory_order_relaxed);
  else atomic_fetch_add_explicit(&wk_hook__m.calls[0], 1, memory_order_relaxed);
  wk_breaker_result(&h->breaker, ok, now / 1000u);
  wk_hook__call_free(c);
}

void wk_hook_perform(wk_hook *h) {
  int running = 0, left = 0;
  CURLMsg *msg;
  curl_multi_perform(h->multi, &running);
  while ((msg = curl_multi_info_read(h->multi, &left))) {
    if (msg->msg != CURLMSG_DONE) continue;
    wk_hook_call *c = NULL;
    CURLcode rc = msg->data.result;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
    if (c) wk_hook__finish(h, c, rc);
  }
}
