/*
 * wk_consumer.c - the blocking AMQP loop of workerd.
 *
 * Owns: one connection and channel, the consumers on the three websocket.*
 * queues, publishing replies, acking, and reconnecting. Must not: look
 * inside a message beyond decoding it for wk_handle, or log a body (it may
 * carry tokens).
 *
 * Ack discipline: a delivery is acked only after its reply was handed to the
 * socket, on the same channel, so the broker sees the publish first. Acks
 * are batched (basic.ack multiple=true) while more deliveries are already
 * buffered, which saves a write per message under load; a worker killed
 * with unacked deliveries gets them redelivered to another worker, and the
 * gateway drops the duplicate reply by its order. The rules are wk_acks's.
 *
 * Many deliveries in flight: a delivery whose answer needs the application
 * (wk_handle returns a call) becomes a job: its HTTP requests start on the
 * hook client (libcurl multi) and the loop goes on consuming. The loop
 * waits in one poll on the AMQP socket and curl's sockets together; a job
 * is finished (reply published, then its delivery acked alone) when its
 * last request ends. Deliveries that need no application are answered at
 * once, as before. While hook_max_in_flight requests are out, a delivery
 * that needs another is answered at once as if the application had failed
 * (503 at connect, the "unavailable" error on a subscription: the hook
 * client refuses it busy), and the AMQP socket is still read: stopping
 * there let a slow application hold up token clients behind it (1.3 s at
 * 2 slots and 300 ms calls, test_hook_bounds_hold...). Order per connection needs nothing here: the gateway sends a
 * connection's next message only after the reply to the previous one.
 *
 * Redelivered messages are counted, not handled, here: wk_redeliver puts a
 * copy with the count back (or, past max_deliveries, in websocket.dead) and
 * the original is acked, so a message a worker crashes on cannot loop.
 *
 * Broker list: with several amqp.url addresses a failed connect tries the
 * next node at once and only a whole round of failures backs off; a lost
 * connection reconnects to the next node, which in a cluster serves the
 * same queues. Logs name nodes as host:port, never the URL.
 */
#include "wk_consumer.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "backoff.h"
#include "chan_batch.h"
#include "chan_msg.h"
#include "chan_names.h"
#include "chan_reply_channel.h"
#include "log.h"
#include "mq_confirm.h"
#include "wk_acks.h"
#include "wk_metrics.h"
#include "wk_redeliver.h"

/* How long one wait for a delivery lasts: the latency of noticing *stop. */
#define WK_CONSUMER_POLL_MS 500
#define WK_CONSUMER_BACKOFF_MIN_MS 200
#define WK_CONSUMER_BACKOFF_MAX_MS 10000
/* A connection that lived this long was healthy: start backoff afresh. */
#define WK_CONSUMER_HEALTHY_S 30

typedef struct wk_job wk_job;

/* A batch's delivery while items of it wait for the application: acked
 * (alone) when the last of them ends, as a job's delivery is. */
typedef struct wk_delivery {
  uint64_t tag;
  unsigned open; /* jobs of it not ended, +1 while its items are being read */
} wk_delivery;

/* The replies to a batch's items answered at once, for one gateway queue:
 * published as one batch (or alone, when one) before the delivery's ack. */
typedef struct wk_outbox {
  char queue[CHAN_QUEUE_NAME_MAX + 1];
  char *buf;
  size_t len, cap;
  int n;
} wk_outbox;

typedef struct wk_consumer {
  const wk_consumer_conf *conf;
  const wk_handle_ctx *ctx;
  volatile sig_atomic_t *stop;
  amqp_connection_state_t c; /* NULL while disconnected */
  wk_acks acks;              /* what is acked when */
  backoff retry;             /* between failed connects */
  mq_url_list urls;     /* amqp.url, and the node in use */
  wk_redeliver_pub pub; /* copies of redelivered messages */
  wk_hook *hook;        /* conf->hook; NULL: no application hooks */
  wk_job *jobs;         /* deliveries waiting for the application */
  unsigned n_jobs;
  int broken; /* a job's publish or ack failed: reconnect */
} wk_consumer;

/* One request of a job: the hook's done argument. */
typedef struct wk_job_req {
  wk_job *job;
  size_t i;
} wk_job_req;

/* A delivery waiting for the application. */
struct wk_job {
  wk_job *prev, *next;
  wk_consumer *w;
  uint64_t tag;
  wk_delivery *del; /* an item of a batch: its delivery; NULL: the delivery is the job's */
  uint64_t start_us;
  wk_handle_call *call;
  wk_job_req *reqs;
  size_t waiting; /* requests started and not yet ended */
};

static const chan_msg_kind wk_consumer_kinds[] = {
    CHAN_MSG_CONNECT, CHAN_MSG_RECEIVE, CHAN_MSG_DISCONNECT};

/* --- connecting --------------------------------------------------------- */

static int wk_consumer__setup(wk_consumer *w, char *err, size_t errlen) {
  const wk_consumer_conf *cf = w->conf;
  amqp_connection_state_t c = mq_conn_open(mq_url_list_current(&w->urls),
                                           cf->heartbeat_s, err, errlen);
  if (!c) return -1;
  if (mq_declare_groups_exchange(c, err, errlen) != 0 ||
      mq_declare_channel_queues(c, &cf->limits, err, errlen) != 0 ||
      wk_redeliver_declare(c, cf->limits.quorum, err, errlen) != 0)
    goto fail;
  amqp_basic_qos(c, MQ_CHANNEL, 0, (uint16_t)cf->prefetch, 0);
  if (mq_rpc_check(amqp_get_rpc_reply(c), "basic.qos", err, errlen) != 0)
    goto fail;
  for (size_t i = 0; i < 3; i++) {
    /* The consumer tag is the queue name: it tells the kind on delivery. */
    amqp_bytes_t q = amqp_cstring_bytes(chan_msg_queue(wk_consumer_kinds[i]));
    amqp_basic_consume(c, MQ_CHANNEL, q, q, 0 /* no_local */, 0 /* no_ack */,
                       0 /* exclusive */, amqp_empty_table);
    if (mq_rpc_check(amqp_get_rpc_reply(c), "basic.consume", err, errlen))
      goto fail;
  }
  w->c = c;
  wk_acks_reset(&w->acks);
  return 0;
fail:
  mq_conn_close(c);
  return -1;
}

/* Sleeps ms, cut short by a signal (nanosleep returns on EINTR). */
static void wk_consumer__sleep(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* SIGHUP: the handler only set a flag; the work happens here, between two
 * messages, where nothing borrows from wk_handle_ctx. */
static void wk_consumer__maybe_reload(wk_consumer *w) {
  const wk_consumer_conf *cf = w->conf;
  if (!cf->reload || !*cf->reload) return;
  *cf->reload = 0;
  if (cf->on_reload) cf->on_reload(cf->reload_arg);
}

/* Connects, retrying until it works or *stop is set (-1). */
static int wk_consumer__connect(wk_consumer *w) {
  char err[256], node[128];
  for (unsigned attempt = 1; !*w->stop; attempt++) {
    if (w->conf->alive) w->conf->alive(w->conf->alive_arg, 0);
    wk_consumer__maybe_reload(w);
    const char *url = mq_url_list_current(&w->urls);
    mq_url_host_port(url, node, sizeof node);
    if (wk_consumer__setup(w, err, sizeof err) == 0) {
      mq_url_list_connected(&w->urls);
      /* The side connection follows: its node may be the one that died. */
      wk_redeliver_close(&w->pub);
      w->pub.url = url;
      log_info("broker_connected", "node=%s attempt=%u prefetch=%d", node,
               attempt, w->conf->prefetch);
      wk_metrics_amqp(1);
      return 0;
    }
    wk_metrics_connect_failed();
    /* Back off only once every node of the list has failed in a row. */
    long ms = mq_url_list_next(&w->urls) ? (long)backoff_next(&w->retry) : 0;
    log_warn("broker_connect_failed",
             "node=%s attempt=%u retry_in_ms=%ld reason=\"%s\"", node,
             attempt, ms, err);
    if (ms && !*w->stop) wk_consumer__sleep(ms);
  }
  return -1;
}

/* --- one delivery ------------------------------------------------------- */

static int wk_consumer__ack(wk_consumer *w, const wk_ack_op *op) {
  int st = amqp_basic_ack(w->c, MQ_CHANNEL, op->tag, op->multiple);
  if (st != AMQP_STATUS_OK) {
    log_error("ack_failed", "reason=\"%s\"", amqp_error_string2(st));
    return -1;
  }
  return 0;
}

static int wk_consumer__flush_acks(wk_consumer *w) {
  wk_ack_op op;
  return wk_acks_flush(&w->acks, &op) ? wk_consumer__ack(w, &op) : 0;
}

/* Records tag as done; acks now unless more deliveries are already waiting
 * (then one ack covers them all), but never holds more than half the
 * prefetch window, or the broker would stop sending. */
static int wk_consumer__done(wk_consumer *w, uint64_t tag) {
  wk_ack_op op;
  int more = amqp_frames_enqueued(w->c) || amqp_data_in_buffer(w->c);
  return wk_acks_done(&w->acks, tag, more, &op) ? wk_consumer__ack(w, &op) : 0;
}

/* Publishes body (a reply, or n >= 2 of them as a batch) to a gateway's
 * queue. 0, or -1 when the connection broke. */
static int wk_consumer__publish_to(wk_consumer *w, const char *queue,
                                   const char *body, size_t len, int n) {
  amqp_basic_properties_t props;
  amqp_table_entry_t header;
  if (n >= 2) chan_batch_props(&props, &header, n);
  else mq_json_props(&props, 0); /* transient: the gateway's queue is too */
  amqp_bytes_t b = {len, (void *)body};
  int st = amqp_basic_publish(w->c, MQ_CHANNEL, amqp_empty_bytes,
                              amqp_cstring_bytes(queue), 0, 0, &props, b);
  if (st != AMQP_STATUS_OK) {
    log_error("publish_failed", "reason=\"%s\"", amqp_error_string2(st));
    wk_metrics_error(WK_METRICS_ERR_PUBLISH);
    return -1;
  }
  wk_metrics_replies(n >= 2 ? (unsigned)n : 1);
  if (n >= 2) wk_metrics_reply_batch((unsigned)n);
  return 0;
}

/* The outbox's replies go out (one publish). 0, or -1: connection broke. */
static int wk_consumer__outbox_flush(wk_consumer *w, wk_outbox *ob) {
  if (ob->n == 0) return 0;
  /* One reply goes as it would have alone: without its newline. */
  int rc = wk_consumer__publish_to(w, ob->queue, ob->buf,
                                   ob->n == 1 ? ob->len - 1 : ob->len, ob->n);
  ob->n = 0;
  ob->len = 0;
  return rc;
}

/* 0: published, queued in ob (when not NULL), or undeliverable and
 * dropped; -1: the connection broke. */
static int wk_consumer__publish(wk_consumer *w, const char *reply_channel,
                               const char *body, size_t len, wk_outbox *ob) {
  char queue[CHAN_QUEUE_NAME_MAX + 1];
  uint64_t conn_id;
  if (chan_reply_channel_parse(reply_channel, queue, sizeof queue,
                               &conn_id) != 0) {
    log_warn("reply_dropped", "reason=\"bad reply_channel\"");
    wk_metrics_error(WK_METRICS_ERR_REPLY_CHANNEL);
    return 0;
  }
  if (!ob || !chan_batch_item_ok(body, len))
    return wk_consumer__publish_to(w, queue, body, len, 1);
  /* A batch comes from one gateway process, so its replies share a queue;
   * should one not, the outbox goes out before it changes. */
  if ((ob->n && strcmp(ob->queue, queue) != 0) || ob->n == CHAN_BATCH_MAX)
    if (wk_consumer__outbox_flush(w, ob) != 0) return -1;
  if (ob->len + len + 1 > ob->cap) {
    size_t cap = ob->cap ? ob->cap : 4096;
    while (cap < ob->len + len + 1) cap *= 2;
    char *p = realloc(ob->buf, cap);
    if (!p) return wk_consumer__publish_to(w, queue, body, len, 1);
    ob->buf = p;
    ob->cap = cap;
  }
  if (ob->n == 0) snprintf(ob->queue, sizeof ob->queue, "%s", queue);
  memcpy(ob->buf + ob->len, body, len);
  ob->len += len;
  ob->buf[ob->len++] = '\n';
  ob->n++;
  return 0;
}

static int wk_consumer__kind(amqp_bytes_t tag, chan_msg_kind *kind) {
  for (size_t i = 0; i < 3; i++) {
    const char *q = chan_msg_queue(wk_consumer_kinds[i]);
    if (tag.len == strlen(q) && memcmp(tag.bytes, q, tag.len) == 0) {
      *kind = wk_consumer_kinds[i];
      return 0;
    }
  }
  return -1;
}

/* --- jobs: deliveries waiting for the application ------------------------ */

/* One of a batch's jobs ended (or the batch's items are all read): at the
 * last, the delivery's ack (when ack and the connection holds). */
static void wk_consumer__del_release(wk_consumer *w, wk_delivery *d, int ack) {
  assert(d->open > 0);
  if (--d->open > 0) return;
  if (ack && w->c && !w->broken) {
    wk_ack_op op;
    wk_acks_job_end(&w->acks, d->tag, &op);
    if (wk_consumer__ack(w, &op) != 0) w->broken = 1;
  }
  free(d);
}

/* ack: the job's reply is out, so its delivery may be acked. */
static void wk_consumer__job_free(wk_consumer *w, wk_job *j, int ack) {
  if (j->prev) j->prev->next = j->next;
  else if (w->jobs == j) w->jobs = j->next;
  if (j->next) j->next->prev = j->prev;
  w->n_jobs--;
  if (j->del) wk_consumer__del_release(w, j->del, ack);
  wk_handle_call_free(j->call);
  free(j->reqs);
  free(j);
}

/* Every request of the job has ended: the reply, then the ack (a batch's
 * item: its delivery's, once the batch's last job ends). */
static void wk_consumer__job_finish(wk_consumer *w, wk_job *j) {
  char *reply = NULL;
  size_t len = 0;
  wk_ack_op op;
  int rc = 0;
  if (wk_handle_call_reply(w->ctx, j->call, time(NULL), &reply, &len) != 0) {
    log_error("message_dropped", "reason=\"handler failed\"");
    wk_metrics_error(WK_METRICS_ERR_HANDLER);
  } else if (reply) {
    rc = wk_consumer__publish(w, wk_handle_call_reply_channel(j->call), reply,
                              len, NULL);
  }
  free(reply);
  wk_metrics_handled(wk_metrics_now_us() - j->start_us);
  if (rc == 0 && w->c && !j->del) {
    wk_acks_job_end(&w->acks, j->tag, &op);
    rc = wk_consumer__ack(w, &op);
  }
  if (rc != 0) w->broken = 1;
  wk_consumer__job_free(w, j, rc == 0);
}

/* wk_hook's done function for request r->i of r->job. */
static int wk_consumer__job_answer(void *arg, wk_hook_outcome outcome,
                                   wk_hook_err kind, long status,
                                   const char *body, size_t len) {
  wk_job_req *r = arg;
  wk_job *j = r->job;
  int rc = wk_handle_call_answer(j->call, r->i, outcome, kind, status, body, len);
  if (--j->waiting == 0) wk_consumer__job_finish(j->w, j);
  return rc;
}

/* Starts a job for call (taken): of delivery tag, or, with del, of an item
 * of that batch's delivery. -1 when the connection broke. */
static int wk_consumer__job_start(wk_consumer *w, uint64_t tag, wk_delivery *del,
                                  wk_handle_call *call, uint64_t start_us) {
  size_t n = wk_handle_call_requests(call);
  wk_job *j = calloc(1, sizeof *j);
  wk_job_req *reqs = calloc(n ? n : 1, sizeof *reqs);
  if (!j || !reqs) {
    free(j);
    free(reqs);
    wk_handle_call_free(call);
    log_error("message_dropped", "reason=\"out of memory\"");
    wk_metrics_error(WK_METRICS_ERR_HANDLER);
    return del ? 0 : wk_consumer__done(w, tag); /* a batch's: acked with it */
  }
  j->w = w;
  j->tag = tag;
  j->del = del;
  if (del) del->open++;
  j->start_us = start_us;
  j->call = call;
  j->reqs = reqs;
  j->next = w->jobs;
  if (w->jobs) w->jobs->prev = j;
  w->jobs = j;
  w->n_jobs++;
  wk_ack_op op;
  /* A batch's delivery counted as a job once, when its delivery was made one. */
  if (!del && wk_acks_job_start(&w->acks, &op) && wk_consumer__ack(w, &op) != 0)
    w->broken = 1;
  /* Counted as waiting before any starts: a request that cannot start is
   * answered (failed) at once, and the last answer finishes the job. */
  j->waiting = n + 1;
  for (size_t i = 0; i < n; i++) {
    wk_handle_request rq;
    wk_hook_err kind;
    reqs[i].job = j;
    reqs[i].i = i;
    wk_handle_call_request(call, i, &rq);
    if (!w->hook ||
        wk_hook_start(w->hook, rq.url, rq.headers, rq.n_headers, rq.body,
                      rq.body_len, wk_consumer__job_answer, &reqs[i],
                      &kind) != 0) {
      wk_handle_call_answer(call, i, WK_HOOK_FAILED,
                            w->hook ? kind : WK_HOOK_ERR_OTHER, 0, NULL, 0);
      j->waiting--;
    }
  }
  if (--j->waiting == 0) wk_consumer__job_finish(w, j);
  return w->broken ? -1 : 0;
}

/* Every job is dropped unanswered (the connection is gone: its deliveries
 * come back to some worker). */
static void wk_consumer__jobs_drop(wk_consumer *w) {
  if (!w->jobs) return;
  log_warn("jobs_dropped", "count=%u reason=\"broker connection lost\"",
           w->n_jobs);
  /* The hook's transfers point into the jobs: cancel them first. */
  wk_hook_cancel_all(w->hook);
  while (w->jobs) wk_consumer__job_free(w, w->jobs, 0);
}

/* Decodes and handles one channel message of queue kind (a delivery's
 * body, or an item of a batch, del its delivery): the reply published
 * (queued in ob when not NULL), or a job started. -1 only when the
 * connection broke (the delivery stays unacked and comes back after the
 * reconnect). 1: a job was started (acked when it ends). */
static int wk_consumer__handle(wk_consumer *w, chan_msg_kind kind,
                               const char *body, size_t len, uint64_t tag,
                               wk_delivery *del, wk_outbox *ob,
                               uint64_t start_us) {
  chan_msg m;
  char err[160], *reply = NULL;
  size_t reply_len = 0;
  wk_metrics_message(kind);
  /* Undecodable now means undecodable forever: drop it, say why, but not
   * what it said. */
  if (chan_msg_decode(kind, body, len, &m, err, sizeof err)) {
    log_warn("message_dropped", "queue=%s bytes=%zu reason=\"%s\"",
             chan_msg_queue(kind), len, err);
    wk_metrics_error(WK_METRICS_ERR_DECODE);
    return 0;
  }
  int rc = 0;
  wk_handle_call *call = NULL;
  if (wk_handle_message(w->ctx, &m, time(NULL), &reply, &reply_len,
                        w->hook ? &call : NULL) != 0) {
    log_error("message_dropped", "queue=%s reason=\"handler failed\"",
              chan_msg_queue(kind));
    wk_metrics_error(WK_METRICS_ERR_HANDLER);
  } else if (call) {
    chan_msg_free(&m);
    return wk_consumer__job_start(w, tag, del, call, start_us) == 0 ? 1 : -1;
  } else if (reply)
    rc = wk_consumer__publish(w, m.reply_channel, reply, reply_len, ob);
  free(reply);
  chan_msg_free(&m);
  return rc;
}

/* A redelivered message (or an item of a redelivered batch, alone): a copy
 * with the next count to the tail of its queue, or to websocket.dead.
 * Returns 0 when the original may be acked, 1 when it must be handled here
 * after all (the queue is full: better once more than lost), -1 when the
 * broker is gone. */
static int wk_consumer__redelivered(wk_consumer *w, const amqp_message_t *msg,
                                   const char *queue) {
  long n;
  char err[256];
  wk_redeliver_action a = wk_redeliver_decide(
      1, wk_redeliver_count(&msg->properties), w->conf->max_deliveries, &n);
  atomic_fetch_add(&wk_redeliver_stats.redelivered, 1);
  int dead = a == WK_REDELIVER_DEAD;
  int rc = wk_redeliver_publish(&w->pub, dead ? CHAN_QUEUE_DEAD : queue,
                                dead ? queue : NULL, msg, n, err, sizeof err);
  if (rc < 0) {
    log_error("redelivery_failed", "queue=%s deliveries=%ld reason=\"%s\"",
              queue, n, err);
    return -1;
  }
  if (rc == 1 && !dead) {
    log_warn("requeue_refused", "queue=%s deliveries=%ld handling=now", queue,
             n);
    return 1;
  }
  if (dead) {
    /* Refused by websocket.dead too (it drops its oldest, so only if it was
     * redeclared otherwise): acked all the same, a poison must not loop. */
    uint64_t total = atomic_fetch_add(&wk_redeliver_stats.dead_lettered, 1) + 1;
    log_error("message_dead_lettered",
              "queue=%s deliveries=%ld max_deliveries=%ld bytes=%zu "
              "stored=%d dead_lettered_total=%llu",
              queue, n - 1, w->conf->max_deliveries, msg->body.len,
              rc == 0, (unsigned long long)total);
  } else {
    atomic_fetch_add(&wk_redeliver_stats.requeued, 1);
    log_warn("message_redelivered", "queue=%s deliveries=%ld", queue, n);
  }
  return 0;
}

/* An item of a redelivered batch goes back alone, as a message of its own
 * (a poison item then takes only itself to websocket.dead): 0, 1 or -1 as
 * wk_consumer__redelivered. */
static int wk_consumer__redelivered_item(wk_consumer *w,
                                         const amqp_envelope_t *env,
                                         const char *queue, const char *item,
                                         size_t len) {
  amqp_message_t m = env->message;
  m.properties._flags &= ~(amqp_flags_t)AMQP_BASIC_HEADERS_FLAG;
  m.properties.content_type = amqp_cstring_bytes("application/json");
  m.body.bytes = (void *)item;
  m.body.len = len;
  return wk_consumer__redelivered(w, &m, queue);
}

/* A batch (chan_batch.h): every item handled as a delivery of its own
 * would be, the replies of those answered at once published as one batch,
 * then the delivery acked: with the others (multiple) when no item waits
 * for the application, else alone once the last of those jobs ends. A
 * malformed batch is dropped whole before any item is handled. */
static int wk_consumer__deliver_batch(wk_consumer *w, const amqp_envelope_t *env,
                                      chan_msg_kind kind, int n) {
  const amqp_bytes_t *body = &env->message.body;
  const char *queue = chan_msg_queue(kind);
  char err[96];
  if (n < 0 || chan_batch_check(body->bytes, body->len, n, err, sizeof err)) {
    log_warn("message_dropped", "queue=%s bytes=%zu reason=\"batch: %s\"", queue,
             body->len, n < 0 ? "bad " CHAN_BATCH_HEADER " header" : err);
    wk_metrics_error(WK_METRICS_ERR_DECODE);
    return wk_consumer__done(w, env->delivery_tag);
  }
  wk_metrics_batch((unsigned)n);
  wk_delivery *d = malloc(sizeof *d);
  if (!d) return -1; /* comes back after the reconnect */
  d->tag = env->delivery_tag;
  d->open = 1;
  wk_outbox ob = {.n = 0};
  size_t pos = 0, len;
  const char *item;
  int rc = 0;
  while (rc == 0 && chan_batch_next(body->bytes, body->len, &pos, &item, &len)) {
    if (env->redelivered) {
      int r = wk_consumer__redelivered_item(w, env, queue, item, len);
      if (r != 1) {
        rc = r < 0 ? -1 : 0;
        continue;
      }
    }
    uint64_t start = wk_metrics_now_us();
    int r = wk_consumer__handle(w, kind, item, len, d->tag, d, &ob, start);
    if (r == 0) wk_metrics_handled(wk_metrics_now_us() - start);
    rc = r < 0 ? -1 : 0;
  }
  if (rc == 0) rc = wk_consumer__outbox_flush(w, &ob);
  free(ob.buf);
  if (rc != 0 || w->broken) {
    wk_consumer__del_release(w, d, 0);
    return -1;
  }
  if (d->open == 1) { /* nothing waits for the application */
    free(d);
    return wk_consumer__done(w, env->delivery_tag);
  }
  wk_ack_op op;
  if (wk_acks_job_start(&w->acks, &op) && wk_consumer__ack(w, &op) != 0) {
    wk_consumer__del_release(w, d, 0);
    return -1;
  }
  wk_consumer__del_release(w, d, 1); /* its jobs hold it now */
  return 0;
}

static int wk_consumer__deliver(wk_consumer *w, const amqp_envelope_t *env) {
  chan_msg_kind kind;
  if (wk_consumer__kind(env->consumer_tag, &kind) != 0) {
    log_warn("message_dropped", "reason=\"unknown consumer tag\"");
    wk_metrics_error(WK_METRICS_ERR_UNKNOWN_QUEUE);
    return wk_consumer__done(w, env->delivery_tag);
  }
  int n = chan_batch_count(&env->message.properties);
  if (n != 0) return wk_consumer__deliver_batch(w, env, kind, n);
  if (env->redelivered) {
    int rc = wk_consumer__redelivered(w, &env->message, chan_msg_queue(kind));
    if (rc < 0) return -1;
    if (rc == 0) return wk_consumer__done(w, env->delivery_tag);
  }
  uint64_t start = wk_metrics_now_us();
  const amqp_bytes_t *body = &env->message.body;
  int rc = wk_consumer__handle(w, kind, body->bytes, body->len,
                               env->delivery_tag, NULL, NULL, start);
  if (rc == 1) return 0; /* a job: acked when it ends */
  wk_metrics_handled(wk_metrics_now_us() - start);
  if (rc != 0) return -1;
  return wk_consumer__done(w, env->delivery_tag);
}

/* A frame other than a delivery arrived: the broker closing the channel or
 * connection, or cancelling our consumer (queue deleted). All but stray
 * frames mean: reconnect (which redeclares). */
static int wk_consumer__other_frame(wk_consumer *w) {
  amqp_frame_t f;
  char err[256];
  if (amqp_simple_wait_frame(w->c, &f) != AMQP_STATUS_OK) return -1;
  if (mq_frame_close_reason(&f, "consume", err, sizeof err)) {
    log_error("broker_closed", "reason=\"%s\"", err);
    return -1;
  }
  if (f.frame_type == AMQP_FRAME_METHOD)
    log_debug("broker_frame_ignored", "method=0x%08x",
              (unsigned)f.payload.method.id);
  return 0;
}

/* Waits up to ms for the AMQP socket (when read_amqp) and, with hooks,
 * curl's sockets and timers; drives the transfers that are due. */
static void wk_consumer__wait(wk_consumer *w, int read_amqp, int ms) {
  int fd = read_amqp ? amqp_get_sockfd(w->c) : -1, ready = 0;
  /* curl's poll only while calls are out: a token-only worker waits as
   * before, in one poll on the AMQP socket. */
  if (w->hook && wk_hook_in_flight(w->hook) > 0) {
    if (wk_hook_poll(w->hook, fd, ms, &ready) != 0) wk_consumer__sleep(10);
    wk_hook_perform(w->hook);
    return;
  }
  struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
  poll(&p, fd >= 0 ? 1 : 0, ms);
}

/* Consumes until *stop (0) or a broker error (-1). Jobs in flight when
 * *stop is set are finished first (each within the hook timeout). */
static int wk_consumer__serve(wk_consumer *w) {
  while (!*w->stop) {
    if (w->conf->alive) w->conf->alive(w->conf->alive_arg, 1);
    wk_consumer__maybe_reload(w);
    if (w->broken) return -1;
    {
      amqp_envelope_t env;
      struct timeval tv = {0, 0}; /* never blocks: the wait below does */
      amqp_maybe_release_buffers(w->c);
      amqp_rpc_reply_t r = amqp_consume_message(w->c, &env, &tv, 0);
      if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        int rc = wk_consumer__deliver(w, &env);
        amqp_destroy_envelope(&env);
        if (rc != 0 || w->broken) return -1;
        /* Transfers make progress between deliveries too. */
        if (w->jobs) wk_hook_perform(w->hook);
        continue;
      }
      if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
          r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
        if (wk_consumer__other_frame(w) != 0) return -1;
        continue;
      }
      if (!(r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
            r.library_error == AMQP_STATUS_TIMEOUT)) {
        char err[256];
        mq_rpc_check(r, "consume", err, sizeof err);
        log_error("broker_lost", "reason=\"%s\"", err);
        return -1;
      }
    }
    /* Idle: whatever was held back for a batch goes out now, then wait
     * for the broker or the application. */
    if (wk_consumer__flush_acks(w) != 0) return -1;
    wk_consumer__wait(w, 1, WK_CONSUMER_POLL_MS);
  }
  while (w->jobs && !w->broken) wk_consumer__wait(w, 0, WK_CONSUMER_POLL_MS);
  if (w->broken) return -1;
  return wk_consumer__flush_acks(w);
}

/* --- entry point -------------------------------------------------------- */

int wk_consumer_run(const wk_consumer_conf *conf, const wk_handle_ctx *ctx,
                    volatile sig_atomic_t *stop) {
  wk_consumer w = {.conf = conf, .ctx = ctx, .stop = stop,
                   .pub = {.url = NULL, .c = NULL}};
  wk_acks_init(&w.acks, (unsigned)conf->prefetch);
  w.hook = conf->hook;
  /* Jitter, so that many workers restarted together do not hit the broker
   * in step. */
  backoff_init(&w.retry, WK_CONSUMER_BACKOFF_MIN_MS, WK_CONSUMER_BACKOFF_MAX_MS,
               backoff_seed());
  char err[96];
  if (mq_url_list_parse(&w.urls, conf->url, backoff_random(&w.retry), err,
                        sizeof err) != 0) {
    log_error("broker_url_invalid", "reason=\"%s\"", err); /* main checked */
    return 0;
  }
  while (!*stop) {
    if (wk_consumer__connect(&w) != 0) break;
    time_t since = time(NULL);
    int rc = wk_consumer__serve(&w);
    wk_consumer__jobs_drop(&w);
    w.broken = 0;
    mq_conn_close(w.c);
    w.c = NULL;
    wk_metrics_amqp(0);
    if (rc == 0) break;
    mq_url_list_next(&w.urls); /* the node just lost is the likeliest dead */
    /* A connection that failed at once must not turn into a busy loop. */
    if (time(NULL) - since >= WK_CONSUMER_HEALTHY_S)
      backoff_reset(&w.retry);
    else if (!*stop)
      wk_consumer__sleep((long)backoff_next(&w.retry));
  }
  wk_redeliver_close(&w.pub);
  mq_url_list_free(&w.urls);
  return 0;
}
