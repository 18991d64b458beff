/*
 * wk_metrics.c - workerd's counters and admin endpoint (see wk_metrics.h).
 *
 * The endpoint is one thread with a blocking accept loop: poll(2) on the
 * listening socket and an eventfd that wk_metrics_stop writes, then one
 * request per connection, answered and closed. Requests are served one at
 * a time, each bounded by ADMIN_REQUEST_MAX bytes and ADMIN_TIMEOUT_MS, so
 * a stuck client delays the next scrape by 5 s at worst; a scraper and a
 * probe or two per worker do not need more. The consumer thread is never
 * touched: it only bumps atomics.
 */
#include "wk_metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "hostport.h"
#include "log.h"
#include "wk_hook.h"
#include "wk_redeliver.h"

#define WK_METRICS_TARGET_MAX 256

typedef atomic_uint_fast64_t wk_metrics__ctr;

static struct {
  wk_metrics__ctr messages[3]; /* by chan_msg_kind */
  wk_metrics__ctr replies;
  wk_metrics__ctr batches_in, batched_in;   /* batches of channel messages, items */
  wk_metrics__ctr batches_out, batched_out; /* batches of replies, replies */
  wk_metrics__ctr errors[WK_METRICS_ERR_N];
  wk_metrics__ctr auth_accepted;
  wk_metrics__ctr auth_rejected[WK_METRICS_AUTH_N];
  wk_metrics__ctr subs[2]; /* [0] refused as a whole, [1] applied */
  wk_metrics__ctr refreshes[2]; /* {"token": ...}: [0] refused, [1] accepted */
  wk_metrics__ctr rechecks[WK_METRICS_RECHECK_N]; /* by wk_metrics_recheck_result */
  wk_metrics__ctr recheck_removed;
  wk_metrics__ctr amqp_connects, amqp_connect_failures;
  atomic_int amqp_up;
  prom_hist handle;
} wk_metrics__c;

/* The endpoint; touched by start/stop on the main thread only. */
static struct {
  int fd, wake_fd;
  pthread_t thread;
  int running;
} wk_metrics__ep = {-1, -1, 0, 0};

static void wk_metrics__inc(wk_metrics__ctr *c) {
  atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static uint64_t wk_metrics__get(const wk_metrics__ctr *c) {
  return atomic_load_explicit(c, memory_order_relaxed);
}

/* ---- counting ---------------------------------------------------------- */

wk_metrics_auth_reason wk_metrics_auth_class(const char *reason) {
  static const char *const policy[] = {"echo is disabled",
                                       "unusable csrftoken cookie",
                                       "conflicting csrftoken cookies",
                                       "conflicting token cookies",
                                       "cookie token without Origin",
                                       "cookie token from a disallowed Origin",
                                       "session too large",
                                       "cookie credentials",
                                       "application session expired"};
  if (!reason) return WK_METRICS_AUTH_INVALID;
  if (strcmp(reason, "no token") == 0) return WK_METRICS_AUTH_MISSING;
  if (strncmp(reason, "malformed token", 15) == 0) return WK_METRICS_AUTH_MALFORMED;
  if (strcmp(reason, "token expired") == 0) return WK_METRICS_AUTH_EXPIRED;
  for (size_t i = 0; i < sizeof policy / sizeof *policy; i++)
    if (strncmp(reason, policy[i], strlen(policy[i])) == 0) return WK_METRICS_AUTH_POLICY;
  return WK_METRICS_AUTH_INVALID;
}

void wk_metrics_message(chan_msg_kind kind) {
  if ((unsigned)kind < 3) wk_metrics__inc(&wk_metrics__c.messages[kind]);
}

void wk_metrics_replies(unsigned n) {
  atomic_fetch_add_explicit(&wk_metrics__c.replies, n, memory_order_relaxed);
}

void wk_metrics_batch(unsigned n) {
  wk_metrics__inc(&wk_metrics__c.batches_in);
  atomic_fetch_add_explicit(&wk_metrics__c.batched_in, n, memory_order_relaxed);
}

void wk_metrics_reply_batch(unsigned n) {
  wk_metrics__inc(&wk_metrics__c.batches_out);
  atomic_fetch_add_explicit(&wk_metrics__c.batched_out, n, memory_order_relaxed);
}

void wk_metrics_error(wk_metrics_err e) {
  if ((unsigned)e < WK_METRICS_ERR_N) wk_metrics__inc(&wk_metrics__c.errors[e]);
}

void wk_metrics_auth_accepted(void) { wk_metrics__inc(&wk_metrics__c.auth_accepted); }

void wk_metrics_auth_rejected(const char *reason) {
  wk_metrics__inc(&wk_metrics__c.auth_rejected[wk_metrics_auth_class(reason)]);
}

void wk_metrics_subscription(int applied) {
  wk_metrics__inc(&wk_metrics__c.subs[applied ? 1 : 0]);
}

void wk_metrics_refresh(int accepted) {
  wk_metrics__inc(&wk_metrics__c.refreshes[accepted ? 1 : 0]);
}

void wk_metrics_recheck(wk_metrics_recheck_result r, size_t removed) {
  if ((unsigned)r < WK_METRICS_RECHECK_N) wk_metrics__inc(&wk_metrics__c.rechecks[r]);
  atomic_fetch_add_explicit(&wk_metrics__c.recheck_removed, removed,
                            memory_order_relaxed);
}

void wk_metrics_handled(uint64_t us) { prom_hist_observe(&wk_metrics__c.handle, us); }

uint64_t wk_metrics_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void wk_metrics_amqp(int up) {
  if (up) wk_metrics__inc(&wk_metrics__c.amqp_connects);
  atomic_store(&wk_metrics__c.amqp_up, up ? 1 : 0);
}

void wk_metrics_connect_failed(void) {
  wk_metrics__inc(&wk_metrics__c.amqp_connect_failures);
}

int wk_metrics_ready(void) { return atomic_load(&wk_metrics__c.amqp_up); }

/* ---- rendering ----------------------------------------------------------- */

static void wk_metrics__labelled(strbuf *b, const char *name, const char *key,
                                 const char *value, uint64_t v) {
  char labels[96];
  snprintf(labels, sizeof labels, "%s=\"%s\"", key, value);
  prom_sample(b, name, labels, v);
}

static void wk_metrics__one(strbuf *b, const char *name, const char *type,
                            const char *help, uint64_t v) {
  prom_family(b, name, type, help);
  prom_sample(b, name, NULL, v);
}

static void wk_metrics__messages(strbuf *b) {
  static const char name[] = "wsgw_worker_messages_total";
  static const char *const kinds[3] = {"connect", "receive", "disconnect"};
  prom_family(b, name, "counter", "Channel messages consumed, by queue (websocket.KIND).");
  for (int i = 0; i < 3; i++)
    wk_metrics__labelled(b, name, "kind", kinds[i], wk_metrics__get(&wk_metrics__c.messages[i]));
}

static void wk_metrics__errors(strbuf *b) {
  static const char name[] = "wsgw_worker_errors_total";
  static const char *const kinds[WK_METRICS_ERR_N] = {
      "unknown_queue", "decode", "handler", "reply_channel", "publish"};
  prom_family(b, name, "counter",
              "Deliveries that got no reply: undecodable, out of memory, bad "
              "reply_channel, failed publish (then redelivered after the reconnect).");
  for (int i = 0; i < WK_METRICS_ERR_N; i++)
    wk_metrics__labelled(b, name, "kind", kinds[i], wk_metrics__get(&wk_metrics__c.errors[i]));
}

static void wk_metrics__auth(strbuf *b) {
  static const char *const reasons[WK_METRICS_AUTH_N] = {"missing", "malformed", "expired",
                                                         "invalid", "policy"};
  wk_metrics__one(b, "wsgw_worker_auth_accepted_total", "counter",
                  "websocket.connect accepted.", wk_metrics__get(&wk_metrics__c.auth_accepted));
  static const char name[] = "wsgw_worker_auth_rejected_total";
  prom_family(b, name, "counter", "websocket.connect refused (403), by reason class.");
  for (int i = 0; i < WK_METRICS_AUTH_N; i++)
    wk_metrics__labelled(b, name, "reason", reasons[i],
                         wk_metrics__get(&wk_metrics__c.auth_rejected[i]));
}

/* wk_redeliver keeps its own counters (it runs on the consumer thread too). */
static void wk_metrics__redelivery(strbuf *b) {
  wk_metrics__one(b, "wsgw_worker_redelivered_total", "counter",
                  "Deliveries the broker redelivered (a worker died or lost its "
                  "connection before acking).",
                  wk_metrics__get(&wk_redeliver_stats.redelivered));
  wk_metrics__one(b, "wsgw_worker_requeued_total", "counter",
                  "Redelivered messages put back on their queue with a delivery count.",
                  wk_metrics__get(&wk_redeliver_stats.requeued));
  wk_metrics__one(b, "wsgw_worker_dead_lettered_total", "counter",
                  "Messages moved to websocket.dead after max_deliveries.",
                  wk_metrics__get(&wk_redeliver_stats.dead_lettered));
}

void wk_metrics_render(strbuf *b) {
  wk_metrics__messages(b);
  wk_metrics__one(b, "wsgw_worker_replies_total", "counter",
                  "Replies published to gateways.", wk_metrics__get(&wk_metrics__c.replies));
  wk_metrics__one(b, "wsgw_worker_batches_total", "counter",
                  "Batches of channel messages consumed (one AMQP message each).",
                  wk_metrics__get(&wk_metrics__c.batches_in));
  wk_metrics__one(b, "wsgw_worker_batched_messages_total", "counter",
                  "Channel messages that came in those batches.",
                  wk_metrics__get(&wk_metrics__c.batched_in));
  wk_metrics__one(b, "wsgw_worker_reply_batches_total", "counter",
                  "Batches of replies published (one AMQP message each).",
                  wk_metrics__get(&wk_metrics__c.batches_out));
  wk_metrics__one(b, "wsgw_worker_batched_replies_total", "counter",
                  "Replies that went in those batches.",
                  wk_metrics__get(&wk_metrics__c.batched_out));
  wk_metrics__errors(b);
  wk_metrics__auth(b);
  static const char subs[] = "wsgw_worker_subscriptions_total";
  prom_family(b, subs, "counter",
              "Subscription requests: applied (the membership was replaced) or "
              "refused (the request as a whole was invalid).");
  wk_metrics__labelled(b, subs, "result", "applied", wk_metrics__get(&wk_metrics__c.subs[1]));
  wk_metrics__labelled(b, subs, "result", "refused", wk_metrics__get(&wk_metrics__c.subs[0]));
  static const char ref[] = "wsgw_worker_refreshes_total";
  prom_family(b, ref, "counter",
              "Credential refreshes ({\"token\": ...} on an open connection): accepted "
              "(the connection's expiry moved) or refused (invalid, or another user's).");
  wk_metrics__labelled(b, ref, "result", "accepted",
                       wk_metrics__get(&wk_metrics__c.refreshes[1]));
  wk_metrics__labelled(b, ref, "result", "refused",
                       wk_metrics__get(&wk_metrics__c.refreshes[0]));
  static const char rc[] = "wsgw_worker_rechecks_total";
  static const char *const rc_names[WK_METRICS_RECHECK_N] = {"kept", "revoked",
                                                             "unavailable"};
  prom_family(b, rc, "counter",
              "Re-checks of a connection's application grants: kept (every id still "
              "granted), revoked (some left), unavailable (the application could not "
              "answer: the grants were kept).");
  for (int i = 0; i < WK_METRICS_RECHECK_N; i++)
    wk_metrics__labelled(b, rc, "result", rc_names[i],
                         wk_metrics__get(&wk_metrics__c.rechecks[i]));
  wk_metrics__one(b, "wsgw_worker_recheck_removed_total", "counter",
                  "Object groups removed from connections by re-checks (revoked grants, "
                  "or credentials the application no longer accepts).",
                  wk_metrics__get(&wk_metrics__c.recheck_removed));
  wk_metrics__one(b, "wsgw_worker_amqp_up", "gauge",
                  "1 while connected to the broker and consuming the websocket.* queues.",
                  (uint64_t)atomic_load(&wk_metrics__c.amqp_up));
  uint64_t connects = wk_metrics__get(&wk_metrics__c.amqp_connects);
  wk_metrics__one(b, "wsgw_worker_amqp_reconnects_total", "counter",
                  "Broker connections established after the first.",
                  connects > 0 ? connects - 1 : 0);
  wk_metrics__one(b, "wsgw_worker_amqp_connect_failures_total", "counter",
                  "Failed attempts to connect to the broker (retried with backoff).",
                  wk_metrics__get(&wk_metrics__c.amqp_connect_failures));
  wk_metrics__redelivery(b);
  static const char h[] = "wsgw_worker_handle_seconds";
  prom_family(b, h, "histogram",
              "Time to handle one delivery: decode, decide, publish the reply.");
  prom_hist_write(b, h, NULL, &wk_metrics__c.handle);
  wk_hook_metrics_render(b);
}

/* ---- the endpoint -------------------------------------------------------- */

static uint64_t wk_metrics__now_ms(void) { return wk_metrics_now_us() / 1000u; }

/* Waits until fd is ready for events or the deadline passes (0). */
static int wk_metrics__wait(int fd, short events, uint64_t deadline) {
  for (;;) {
    uint64_t now = wk_metrics__now_ms();
    if (now >= deadline) return 0;
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, (int)(deadline - now));
    if (n > 0) return 1;
    if (n < 0 && errno != EINTR) return 0;
  }
}

static void wk_metrics__write_all(int fd, const char *data, size_t len, uint64_t deadline) {
  while (len > 0) {
    ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
    if (n > 0) {
      data += n;
      len -= (size_t)n;
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wk_metrics__wait(fd, POLLOUT, deadline)) return;
    } else {
      return;
    }
  }
}

/* After the response: half-close and read until the client closes too (or
 * the deadline). Closing with request bytes unread (an oversized request)
 * would send a reset, which can destroy the response before it is read. */
static void wk_metrics__linger(int fd, uint64_t deadline) {
  char scratch[1024];
  if (shutdown(fd, SHUT_WR) != 0) return;
  while (wk_metrics__wait(fd, POLLIN, deadline)) {
    ssize_t n = recv(fd, scratch, sizeof scratch, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return;
  }
}

/* Reads the request head; returns admin_request_line's verdict, or -1 when
 * the client left or ran out of time (then nothing is answered). */
static int wk_metrics__read(int fd, char *method, size_t mlen, char *target, size_t tlen,
                            uint64_t deadline) {
  char buf[ADMIN_REQUEST_MAX];
  size_t len = 0;
  for (;;) {
    int rc = admin_request_line(buf, len, method, mlen, target, tlen);
    if (rc != 0) return rc;
    if (!wk_metrics__wait(fd, POLLIN, deadline)) return -1;
    ssize_t n = recv(fd, buf + len, sizeof buf - len, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return -1;
    if (n > 0) len += (size_t)n;
  }
}

static void wk_metrics__serve(int fd) {
  uint64_t deadline = wk_metrics__now_ms() + ADMIN_TIMEOUT_MS;
  char method[16], target[WK_METRICS_TARGET_MAX], head[256];
  int status = 200, head_only = 0;
  const char *ctype = "text/plain; charset=utf-8";
  strbuf body;
  strbuf_init(&body);
  int rc = wk_metrics__read(fd, method, sizeof method, target, sizeof target, deadline);
  if (rc < 0) return;
  if (rc != 1) {
    status = rc;
    strbuf_printf(&body, "bad request\n");
  } else {
    head_only = strcmp(method, "HEAD") == 0;
    switch (admin_route(method, target)) {
      case ADMIN_METRICS:
        wk_metrics_render(&body);
        ctype = PROM_CONTENT_TYPE;
        break;
      case ADMIN_HEALTHZ:
        strbuf_printf(&body, "ok\n");
        break;
      case ADMIN_READYZ:
        status = wk_metrics_ready() ? 200 : 503;
        strbuf_printf(&body, "%s\n", status == 200 ? "ready" : "not ready: broker unavailable");
        break;
      case ADMIN_NOT_FOUND:
        status = 404;
        strbuf_printf(&body, "not found\n");
        break;
      case ADMIN_BAD_METHOD:
        status = 405;
        strbuf_printf(&body, "method not allowed\n");
        break;
    }
  }
  if (body.failed) {
    strbuf_free(&body);
    status = 500;
    ctype = "text/plain; charset=utf-8";
  }
  size_t n = admin_response_head(head, sizeof head, status, ctype, body.len);
  wk_metrics__write_all(fd, head, n, deadline);
  if (!head_only && body.len) wk_metrics__write_all(fd, body.data, body.len, deadline);
  strbuf_free(&body);
  wk_metrics__linger(fd, deadline);
}

static void *wk_metrics__thread(void *arg) {
  (void)arg;
  struct pollfd p[2] = {{.fd = wk_metrics__ep.wake_fd, .events = POLLIN},
                        {.fd = wk_metrics__ep.fd, .events = POLLIN}};
  for (;;) {
    if (poll(p, 2, -1) < 0 && errno != EINTR) break;
    if (p[0].revents) break; /* wk_metrics_stop */
    if (!(p[1].revents & POLLIN)) continue;
    int c = accept(wk_metrics__ep.fd, NULL, NULL);
    if (c < 0) continue; /* the client left, or out of descriptors for now */
    if (fcntl(c, F_SETFL, O_NONBLOCK) != 0 || fcntl(c, F_SETFD, FD_CLOEXEC) != 0) {
      close(c);
      continue;
    }
    wk_metrics__serve(c);
    close(c);
  }
  return NULL;
}

static int wk_metrics__listen(const char *spec) {
  struct sockaddr_storage ss;
  socklen_t len;
  if (hostport_listen_addr(spec, &ss, &len) != 0) {
    log_error("metrics_listen_invalid", "listen=%s", spec);
    return -1;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 16) != 0) {
    log_error("metrics_listen_failed", "listen=%s error=\"%s\"", spec, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

int wk_metrics_start(const char *spec) {
  if (!spec || !spec[0]) {
    log_info("metrics_off", "reason=%s", "metrics_listen is empty");
    return 0;
  }
  if (wk_metrics__ep.running) return 0;
  int fd = wk_metrics__listen(spec);
  if (fd < 0) return -1;
  int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) {
    log_error("metrics_start_failed", "error=\"%s\"", strerror(errno));
    close(fd);
    return -1;
  }
  wk_metrics__ep.fd = fd;
  wk_metrics__ep.wake_fd = wake;
  /* The thread inherits a mask that blocks every signal, so SIGTERM always
   * lands on the consumer's thread and interrupts its sleeps. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&wk_metrics__ep.thread, NULL, wk_metrics__thread, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    log_error("metrics_start_failed", "error=\"%s\"", strerror(rc));
    close(fd);
    close(wake);
    wk_metrics__ep.fd = wk_metrics__ep.wake_fd = -1;
    return -1;
  }
  wk_metrics__ep.running = 1;
  log_info("metrics_listening", "listen=%s", spec);
  return 0;
}

void wk_metrics_stop(void) {
  if (!wk_metrics__ep.running) return;
  uint64_t one = 1;
  if (write(wk_metrics__ep.wake_fd, &one, sizeof one) < 0)
    log_error("metrics_stop_failed", "error=\"%s\"", strerror(errno));
  pthread_join(wk_metrics__ep.thread, NULL);
  close(wk_metrics__ep.fd);
  close(wk_metrics__ep.wake_fd);
  wk_metrics__ep.fd = wk_metrics__ep.wake_fd = -1;
  wk_metrics__ep.running = 0;
}
