/*
 * em_broker.c - the broker thread (see em_broker.h).
 *
 * One round: take every job waiting, publish their messages (a job past
 * its deadline before it was taken is failed unsent: its client already
 * heard 503), read whatever the broker answered without waiting, hand back
 * every job whose tags are all settled, then sleep in poll(2) on the AMQP
 * socket and the wake-up eventfd until the broker answers, a job arrives,
 * the oldest job's deadline or a heartbeat is due.
 *
 * A job is settled when its last tag is below the front of the mq_confirms
 * ring (the oldest unanswered publish): tags are consecutive, so every tag
 * of the job has an answer. An out-of-order ack further back waits for the
 * front; RabbitMQ acks in order on one channel, so in practice it does not
 * wait.
 *
 * Failure: a lost connection, a closed channel or a deadline passed drops
 * the connection; every unanswered publish counts as not confirmed (it may
 * or may not have arrived: the 503 says how many) and the next round
 * reconnects, after a backoff once every address failed. While there is no
 * connection a job fails at once ("broker unreachable"), so a backend
 * hears 503 in milliseconds, not after the timeout. Nothing is re-sent:
 * an event published twice is worse than an error the backend sees.
 *
 * Cost: one eventfd write per submitted request, one uv_async_send per
 * round that settles jobs; no lock is held while publishing.
 */
#include "em_broker.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "chan_names.h"
#include "log.h"
#include "mq_confirm.h"
#include "mq_conn.h"

typedef struct em_jobq {
  em_job *head, *tail;
} em_jobq;

struct em_broker {
  uv_loop_t *loop;
  uv_async_t async;
  em_broker_done_cb done;
  void *arg;
  pthread_t thread;
  pthread_mutex_t mu;
  em_jobq in;  /* submitted, not taken yet (mu) */
  em_jobq out; /* answered, for the loop (mu) */
  int wake_fd;
  atomic_int stop;
  em_broker_stats st;
  /* the thread's own */
  mq_url_list urls;
  long heartbeat_ms, timeout_ms;
  amqp_connection_state_t conn;
  mq_confirms confirms;
  em_jobq flight; /* published, in tag order */
  long long last_tx, last_rx;
  backoff bo;
};

long long em_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t em_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void em_jobq_push(em_jobq *q, em_job *j) {
  j->next = NULL;
  if (q->tail) q->tail->next = j;
  else q->head = j;
  q->tail = j;
}

static em_job *em_jobq_take_all(em_jobq *q) {
  em_job *h = q->head;
  q->head = q->tail = NULL;
  return h;
}

/* ---- handing jobs back ---------------------------------------------------- */

static void em_broker__note(em_job *j, const char *why) {
  if (!j->why[0]) snprintf(j->why, sizeof j->why, "%.150s", why);
}

/* The job's answer is final: to the loop. */
static void em_broker__finish(em_broker *b, em_job *j) {
  assert(j->nacked <= j->pubs.n);
  j->confirmed = j->pubs.n - j->nacked;
  if (j->confirmed < j->pubs.n) em_broker__note(j, "not confirmed by the broker");
  pthread_mutex_lock(&b->mu);
  em_jobq_push(&b->out, j);
  pthread_mutex_unlock(&b->mu);
  uv_async_send(&b->async);
}

/* A job that was never published. */
static void em_broker__fail_unsent(em_broker *b, em_job *j, const char *why) {
  j->nacked = j->pubs.n;
  em_broker__note(j, why);
  em_broker__finish(b, j);
}

static void em_broker__deliver(uv_async_t *h) {
  em_broker *b = h->data;
  pthread_mutex_lock(&b->mu);
  em_job *j = em_jobq_take_all(&b->out);
  pthread_mutex_unlock(&b->mu);
  while (j) {
    em_job *next = j->next;
    b->done(j, b->arg);
    j = next;
  }
}

/* ---- the connection --------------------------------------------------------- */

/* mq_confirm_cb: a publish the broker refused (nack) or that was lost. */
static void em_broker__refused(uint64_t cookie, void *arg) {
  em_job *j = (em_job *)(uintptr_t)cookie;
  (void)arg;
  j->nacked++;
}

static void em_broker__drop(em_broker *b, const char *why) {
  log_warn("amqp_lost", "reason=\"%s\" requests_in_flight=%s", why,
           b->flight.head ? "yes" : "no");
  for (em_job *j = b->flight.head; j; j = j->next) em_broker__note(j, why);
  size_t before = mq_confirms_pending(&b->confirms);
  mq_confirms_fail_all(&b->confirms, em_broker__refused, b);
  atomic_fetch_add(&b->st.lost, before);
  em_job *j = em_jobq_take_all(&b->flight);
  while (j) {
    em_job *next = j->next;
    em_broker__finish(b, j);
    j = next;
  }
  amqp_destroy_connection(b->conn);
  b->conn = NULL;
  atomic_store(&b->st.up, 0);
  atomic_fetch_add(&b->st.disconnects, 1);
  mq_url_list_next(&b->urls);
}

/* Connects to the current address: the exchange must exist (a passive
 * declare needs no permission, so emitd's user needs write on
 * websocket.groups only); when it does not, emitd declares it if allowed. */
static int em_broker__connect_one(em_broker *b, char *err, size_t errlen) {
  const char *url = mq_url_list_current(&b->urls);
  int hb_s = (int)((b->heartbeat_ms + 999) / 1000);
  amqp_connection_state_t c = mq_conn_open_emitter(url, hb_s, err, errlen);
  if (!c) return -1;
  mq_confirms_init(&b->confirms);
  b->conn = c;
  b->last_tx = b->last_rx = em_now_ms();
  mq_url_list_connected(&b->urls);
  atomic_store(&b->st.up, 1);
  atomic_fetch_add(&b->st.connects, 1);
  char hp[128];
  mq_url_host_port(url, hp, sizeof hp);
  log_info("amqp_connected", "broker=%s", hp);
  return 0;
}

/* Waits up to ms for a wake-up (a job or stop) or for the socket fd
 * (-1: none). Returns poll's revents of fd. */
static short em_broker__sleep(em_broker *b, int fd, long long ms) {
  struct pollfd p[2] = {{b->wake_fd, POLLIN, 0}, {fd, POLLIN, 0}};
  if (ms < 0) ms = 0;
  int r = poll(p, fd >= 0 ? 2 : 1, (int)(ms > 1000 ? 1000 : ms));
  if (r > 0 && (p[0].revents & POLLIN)) {
    uint64_t v;
    ssize_t n = read(b->wake_fd, &v, sizeof v);
    (void)n;
  }
  return r > 0 && fd >= 0 ? p[1].revents : 0;
}

/* No connection: try the addresses; after a full round of failures, back
 * off, failing every job that arrives meanwhile. */
static void em_broker__reconnect(em_broker *b) {
  char err[256];
  if (em_broker__connect_one(b, err, sizeof err) == 0) {
    backoff_reset(&b->bo);
    return;
  }
  char hp[128], why[320];
  mq_url_host_port(mq_url_list_current(&b->urls), hp, sizeof hp);
  snprintf(why, sizeof why, "broker unreachable: %s", err);
  log_warn("amqp_connect_failed", "broker=%s reason=\"%s\"", hp, err);
  long long until = em_now_ms() + (mq_url_list_next(&b->urls) ? backoff_next(&b->bo) : 0);
  do {
    pthread_mutex_lock(&b->mu);
    em_job *j = em_jobq_take_all(&b->in);
    pthread_mutex_unlock(&b->mu);
    while (j) {
      em_job *next = j->next;
      em_broker__fail_unsent(b, j, why);
      j = next;
    }
    if (atomic_load(&b->stop)) return;
    em_broker__sleep(b, -1, until - em_now_ms());
  } while (em_now_ms() < until);
}

/* ---- one round ---------------------------------------------------------------- */

/* Publishes job j's messages. 0, or -1 when the connection was dropped. */
static int em_broker__publish(em_broker *b, em_job *j) {
  amqp_basic_properties_t props;
  mq_json_props(&props, 0); /* transient: events are never replayed */
  em_jobq_push(&b->flight, j);
  for (size_t i = 0; i < j->pubs.n; i++) {
    const em_pub *p = &j->pubs.v[i];
    if (mq_confirms_push(&b->confirms, (uint64_t)(uintptr_t)j) < 0) {
      j->nacked += j->pubs.n - i; /* never sent */
      em_broker__note(j, "out of memory");
      return 0;
    }
    j->last_tag = b->confirms.next_tag - 1;
    int rc = amqp_basic_publish(b->conn, MQ_CHANNEL, amqp_cstring_bytes(CHAN_GROUPS_EXCHANGE),
                                (amqp_bytes_t){p->glen, (void *)p->group}, 0, 0, &props,
                                (amqp_bytes_t){p->len, (void *)p->text});
    if (rc != AMQP_STATUS_OK) {
      char why[160];
      snprintf(why, sizeof why, "publish: %s", amqp_error_string2(rc));
      j->nacked += j->pubs.n - i - 1; /* the rest never sent; this one is in the ring */
      em_broker__drop(b, why);
      return -1;
    }
    atomic_fetch_add(&b->st.published, 1);
  }
  b->last_tx = em_now_ms();
  return 0;
}

/* Publishes every waiting job: one group commit. */
static void em_broker__take(em_broker *b) {
  pthread_mutex_lock(&b->mu);
  em_job *j = em_jobq_take_all(&b->in);
  pthread_mutex_unlock(&b->mu);
  if (j) atomic_fetch_add(&b->st.rounds, 1);
  long long now = em_now_ms();
  while (j) {
    em_job *next = j->next;
    if (!b->conn) em_broker__fail_unsent(b, j, "broker connection lost");
    else if (now >= j->deadline_ms) em_broker__fail_unsent(b, j, "not sent: the broker was busy past the timeout");
    else (void)em_broker__publish(b, j);
    j = next;
  }
}

/* Reads every frame already there. 0, or -1 when the connection was dropped. */
static int em_broker__read(em_broker *b) {
  struct timeval zero = {0, 0};
  for (;;) {
    amqp_frame_t f;
    int rc = amqp_simple_wait_frame_noblock(b->conn, &f, &zero);
    if (rc == AMQP_STATUS_TIMEOUT) break;
    char why[200];
    if (rc != AMQP_STATUS_OK) {
      snprintf(why, sizeof why, "connection lost: %s", amqp_error_string2(rc));
      em_broker__drop(b, why);
      return -1;
    }
    b->last_rx = em_now_ms();
    size_t before = mq_confirms_pending(&b->confirms);
    int nack = f.frame_type == AMQP_FRAME_METHOD &&
               f.payload.method.id == AMQP_BASIC_NACK_METHOD;
    if (mq_confirms_apply(&b->confirms, &f, em_broker__refused, b)) {
      size_t n = before - mq_confirms_pending(&b->confirms);
      atomic_fetch_add(nack ? &b->st.nacked : &b->st.acked, n);
      if (nack)
        for (em_job *j = b->flight.head; j; j = j->next)
          if (j->nacked) em_broker__note(j, "refused by the broker (basic.nack)");
      continue;
    }
    if (mq_frame_close_reason(&f, "publish", why, sizeof why)) {
      em_broker__drop(b, why);
      return -1;
    }
  }
  amqp_maybe_release_buffers(b->conn);
  return 0;
}

/* Hands back every job whose publishes are all answered. */
static void em_broker__settle(em_broker *b) {
  const mq_confirms *q = &b->confirms;
  uint64_t front = q->len ? q->ring[q->head].tag : q->next_tag;
  while (b->flight.head && b->flight.head->last_tag < front) {
    em_job *j = b->flight.head;
    b->flight.head = j->next;
    if (!b->flight.head) b->flight.tail = NULL;
    em_broker__finish(b, j);
  }
}

static void em_broker__round(em_broker *b) {
  em_broker__take(b);
  if (!b->conn || em_broker__read(b) < 0) return;
  em_broker__settle(b);
  long long now = em_now_ms(), wait = 1000;
  if (b->flight.head) {
    if (now >= b->flight.head->deadline_ms) {
      char why[96];
      snprintf(why, sizeof why, "no confirm within %ld ms (broker stalled or blocked)",
               b->timeout_ms);
      em_broker__drop(b, why);
      return;
    }
    wait = b->flight.head->deadline_ms - now;
  }
  long hb = b->heartbeat_ms;
  if (hb > 0) {
    if (now - b->last_rx > 2 * hb + 1000) {
      em_broker__drop(b, "missed heartbeats: the broker went silent");
      return;
    }
    if (now - b->last_tx >= hb / 2) {
      amqp_frame_t f;
      memset(&f, 0, sizeof f);
      f.frame_type = AMQP_FRAME_HEARTBEAT;
      f.channel = 0;
      if (amqp_send_frame(b->conn, &f) != AMQP_STATUS_OK) {
        em_broker__drop(b, "connection lost sending a heartbeat");
        return;
      }
      b->last_tx = now;
    }
    if (wait > hb / 2) wait = hb / 2;
  }
  /* rabbitmq-c may hold a frame it already read: then do not sleep. */
  if (amqp_frames_enqueued(b->conn) || amqp_data_in_buffer(b->conn)) return;
  pthread_mutex_lock(&b->mu);
  int queued = b->in.head != NULL;
  pthread_mutex_unlock(&b->mu);
  if (queued) return;
  short ev = em_broker__sleep(b, amqp_get_sockfd(b->conn), wait);
  if (ev) b->last_rx = em_now_ms();
}

static void *em_broker__main(void *arg) {
  em_broker *b = arg;
  while (!atomic_load(&b->stop)) {
    if (!b->conn) em_broker__reconnect(b);
    else em_broker__round(b);
  }
  if (b->conn) {
    if (b->flight.head) em_broker__drop(b, "shutting down");
    else {
      mq_conn_close(b->conn);
      b->conn = NULL;
      atomic_store(&b->st.up, 0);
    }
  }
  pthread_mutex_lock(&b->mu);
  em_job *j = em_jobq_take_all(&b->in);
  pthread_mutex_unlock(&b->mu);
  while (j) {
    em_job *next = j->next;
    em_broker__fail_unsent(b, j, "shutting down");
    j = next;
  }
  return NULL;
}

/* ---- the loop's side ------------------------------------------------------------ */

em_broker *em_broker_start(uv_loop_t *loop, const em_broker_conf *conf,
                           em_broker_done_cb done, void *arg, char *err,
                           size_t errlen) {
  em_broker *b = calloc(1, sizeof *b);
  if (!b) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  b->loop = loop;
  b->done = done;
  b->arg = arg;
  b->heartbeat_ms = conf->heartbeat_ms;
  b->timeout_ms = conf->timeout_ms;
  backoff_init(&b->bo, 100, 5000, backoff_seed());
  if (mq_url_list_parse(&b->urls, conf->url, backoff_seed(), err, errlen) < 0) {
    free(b);
    return NULL;
  }
  b->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  pthread_mutex_init(&b->mu, NULL);
  b->async.data = b;
  if (b->wake_fd < 0 || uv_async_init(loop, &b->async, em_broker__deliver) != 0) {
    snprintf(err, errlen, "eventfd or uv_async_init failed");
    goto fail;
  }
  if (pthread_create(&b->thread, NULL, em_broker__main, b) != 0) {
    snprintf(err, errlen, "pthread_create failed");
    uv_close((uv_handle_t *)&b->async, NULL);
    goto fail;
  }
  return b;
fail:
  if (b->wake_fd >= 0) close(b->wake_fd);
  mq_url_list_free(&b->urls);
  pthread_mutex_destroy(&b->mu);
  free(b);
  return NULL;
}

static void em_broker__wake(em_broker *b) {
  uint64_t one = 1;
  ssize_t n = write(b->wake_fd, &one, sizeof one);
  (void)n; /* EAGAIN: the counter is already non-zero, the thread wakes */
}

void em_broker_submit(em_broker *b, em_job *job) {
  assert(job->pubs.n > 0);
  job->submit_us = em_now_us();
  job->deadline_ms = em_now_ms() + b->timeout_ms;
  job->nacked = job->confirmed = 0;
  job->why[0] = '\0';
  pthread_mutex_lock(&b->mu);
  em_jobq_push(&b->in, job);
  pthread_mutex_unlock(&b->mu);
  em_broker__wake(b);
}

const em_broker_stats *em_broker_stats_of(const em_broker *b) { return &b->st; }

static void em_broker__closed(uv_handle_t *h) {
  em_broker *b = h->data;
  mq_confirms_free(&b->confirms);
  mq_url_list_free(&b->urls);
  pthread_mutex_destroy(&b->mu);
  close(b->wake_fd);
  free(b);
}

void em_broker_stop(em_broker *b) {
  atomic_store(&b->stop, 1);
  em_broker__wake(b);
  pthread_join(b->thread, NULL);
  em_broker__deliver(&b->async);
  uv_close((uv_handle_t *)&b->async, em_broker__closed);
}
