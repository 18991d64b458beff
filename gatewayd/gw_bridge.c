/*
 * gw_bridge.c - the AMQP thread (see gw_bridge.h).
 *
 * The thread sleeps in poll(2) on two descriptors: the AMQP socket and an
 * eventfd the loop writes when it queues a command. Each wake it runs every
 * queued command (publish, bind, unbind), then reads every delivery that has
 * arrived, turning each into an event for the loop, posted as one batch with
 * one uv_async_send. rabbitmq-c sends and checks heartbeats only inside its
 * own calls, so the poll timeout is half the heartbeat interval: the thread
 * calls into the library at least that often even when idle.
 *
 * Publishes wake the thread once per loop iteration (gw_bridge_flush, from
 * the loop's check and prepare phases), and the thread publishes the
 * publishes of a pass grouped by queue (gw_bridge__by_queue), each run of
 * them to one queue as one batch (proto/chan_batch.h: up to
 * gateway.amqp_batch messages, GW_BRIDGE_BATCH_BYTES); a worker answers a
 * batch with a batch of replies, which gw_bridge__replies splits. The
 * broker's work is per AMQP message: a reconnect storm of 19,000 clients
 * cost it 85 us per client one message each, 4.6 us in batches.
 *
 * Publishes are confirmed (confirm.select): a full websocket.* queue
 * (x-overflow reject-publish) answers with basic.nack, which becomes an
 * GW_BRIDGE_REFUSED event so the client hears 503 or 1013 at once rather
 * than after a timeout. Unconfirmed publishes wait in common/mq_confirm's
 * ring, the connection id as the cookie (24 bytes each; a batch's under its
 * one tag, so a refused batch refuses each of its connections).
 *
 * rabbitmq-c notices a silent broker only inside a blocking wait, and this
 * thread never blocks in the library, so it watches heartbeats itself: no
 * byte from the broker for two intervals means the connection is dead (a
 * frozen or partitioned broker never closes the socket).
 *
 * amqp.url may list several brokers (a cluster): a failed connect moves on
 * to the next node at once, and only a whole round of failures waits for
 * the backoff, so a dead node costs one connect timeout, not a sleep. A
 * lost connection also moves on, since the node it was on is the likeliest
 * to be the one gone. Logs name the node as host:port only.
 *
 * Binds and unbinds wait in a queue of their own, behind publishes: each
 * pass publishes everything queued, then binds for at most
 * GW_BRIDGE_BIND_BUDGET_MS, then reads, so a websocket.connect waits for
 * one budget of binds at most however many are queued (subscription churn
 * once delayed every handshake by seconds: issue 12). Binds count in the
 * outgoing backlog (their bytes) and gw_bridge_bind_backlog says how many
 * wait, for the loop to refuse subscription changes above its bound. Their
 * order among themselves is kept (a bind and the unbind after it must
 * reach the broker in that order); against publishes nothing depends on
 * it: a client's reply already went out before its binds, as before.
 * Control keys' binds (kicks) come after the groups' (gw_bridge__push_cmd)
 * and go to the control exchange instead of the groups exchange
 * (gw_bridge__bind_one); the thread declares it and its bindings from the
 * groups exchange at broker-up (mq_declare_control_exchange).
 *
 * The event history (history on, issue 14): at broker-up the thread declares
 * the stream and binds it with '#', sets basic.qos (the broker refuses a
 * stream consumer without a prefetch) and consumes it with manual acks from
 * where gw_stream says (a timestamp, the last offset posted, or "first"),
 * then publishes its marker. Each delivery's offset (header
 * x-stream-offset) and digest (chan_pos_digest) go through gw_stream, whose
 * action becomes events; acks go (multiple) every GW_BRIDGE_ACK_MS or half
 * a prefetch, so that when the thread stops reading at the backlog bound
 * the broker stops at the prefetch. Stream deliveries are told from our queue's by consumer tag
 * (wsgw.hist.<generation>: a cancelled consumption's stragglers are acked
 * and dropped). The login announces consumer_cancel_notify, so a deleted
 * stream is a basic.cancel (handled as a lost connection), not silence.
 * Costs: every gateway reads every event of the vhost, and an event's
 * digest (FNV over its body) is computed once per gateway.
 *
 * One consumer per host (history.shared, gw_ring.h): process 0 of a
 * supervised gatewayd copies every delivery of its consumption into the
 * host's ring and marks it live there once its gw_stream is; the other
 * processes, once live on a consumer of their own, move to the ring when
 * it holds their last offset (cancel, resume there: gw_bridge__ring_enter)
 * and go back to the broker, resuming at their last offset, whenever it
 * cannot serve them (gw_bridge__ring_read). The records go through the
 * same gw_stream_step as deliveries, with the digest process 0 computed.
 *
 * Costs admitted: a bind or unbind is a synchronous round trip to the broker
 * (~100 us on loopback, a few ms on a busy broker), during which deliveries
 * wait; the budget bounds that wait. One channel: a second one would let
 * the broker run binds and publishes side by side, but the broker's own
 * work per bind would still be there, and ordering them is simpler here.
 */
#include "gw_bridge.h"

#include <amqp.h>
#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "chan_batch.h"
#include "chan_names.h"
#include "chan_pos.h"
#include "gw_ring.h"
#include "gw_stream.h"
#include "log.h"
#include "mq_confirm.h"
#include "mq_conn.h"
#include "mq_names.h"
#include "utf8.h"

/* Binds per pass stop being started after this long, so that publishes
 * (handshakes) and deliveries (replies) wait for at most one budget; and
 * after a pass the thread does not bind again for GW_BRIDGE_BIND_REST times
 * as long, so that binding takes at most half of the thread's time and of
 * what it asks of the broker (a bind is a transaction there, far dearer
 * than a publish, and a broker busy binding is slow for everyone). Half,
 * not less: with 100 churning clients a quarter kept handshakes as fast
 * (p99 9 ms either way) but took 10 s to run the 10,000 binds they had
 * queued, and a join made meanwhile waits that long for its binding; half
 * ran 15,000 in 4-7 s (a busy machine). */
#define GW_BRIDGE_BIND_BUDGET_MS 5
/* Bytes of one batch's body, at most: a message that would take it past
 * this goes in the next (or alone). 256 KiB is 64 connects with room to
 * spare; the broker's frame_max splits it into frames. */
#define GW_BRIDGE_BATCH_BYTES (256u * 1024)
/* Stream deliveries are acknowledged once half a prefetch is read or the
 * oldest unacknowledged one is this old: an ack per pass was an ack per
 * event on a trickle, which the broker pays for. The acks only give the
 * broker credit (the resume point is our own offset), and half a prefetch
 * keeps it sending. */
#define GW_BRIDGE_ACK_MS 50
#define GW_BRIDGE_BIND_REST 1
/* A reader that did not find its offset in the host's ring (gw_ring_seek
 * walks it: ~50,000 records of 16 MiB) looks again no sooner than this. */
#define GW_BRIDGE_RING_RETRY_MS 100
/* A reader the writer overtook stays on the broker at least this long. */
#define GW_BRIDGE_RING_OVERTAKEN_MS 1000

/* The confirm cookie of a marker publish (no connection has this id): a
 * refused marker would leave a first start waiting for it forever, so the
 * connection starts over instead. */
#define GW_BRIDGE_MARK_COOKIE UINT64_MAX
/* Consumer tags of the stream consumer: this prefix and a generation, so
 * that deliveries of a cancelled consumption are told apart. */
#define GW_BRIDGE_HIST_TAG "wsgw.hist."
/* Consumes of the stream refused in a row on one node before moving on to
 * the next: with the backoff, about 3 s there (0.1 + 0.2 + ... + 1.6 s). */
#define GW_BRIDGE_HIST_TRIES 5

typedef enum { CMD_PUBLISH, CMD_BIND, CMD_UNBIND } gw_bridge__cmd_kind;

typedef struct gw_bridge__cmd {
  struct gw_bridge__cmd *next;
  gw_bridge__cmd_kind kind;
  uint64_t conn_id; /* PUBLISH: whom to tell if it is refused */
  char *body; /* PUBLISH: owned */
  size_t len;
  char name[]; /* queue (PUBLISH) or group (BIND, UNBIND) */
} gw_bridge__cmd;

struct gw_bridge {
  /* fixed after start */
  mq_url_list urls;
  int heartbeat_s;
  mq_queue_limits limits;
  size_t max_backlog;
  int batch;               /* channel messages per AMQP message, at most */
  int hist;                /* history.enabled */
  mq_stream_args stream;   /* .name owned */
  long preload_ms, prefetch, resume_timeout_ms, check_interval_ms;
  gw_bridge_cb cb;
  void *cb_arg;
  uv_async_t async; /* thread -> loop wake */
  int wake_fd;      /* loop -> thread wake (eventfd) */
  int wake_owed;    /* loop only: publishes queued since the last flush */
  pthread_t thread;

  /* shared, under mu */
  pthread_mutex_t mu;
  gw_bridge__cmd *cmd_head, *cmd_tail;   /* publishes, run first */
  gw_bridge__cmd *bind_head, *bind_tail; /* groups' binds and unbinds, in order */
  gw_bridge__cmd *ctl_head, *ctl_tail;   /* control keys' (wsgw!...), after */
  gw_bridge_event *ev_head, *ev_tail;
  int stopping;

  atomic_size_t out_bytes; /* publish and bind bytes queued, loop -> thread */
  atomic_size_t bind_ops;  /* binds and unbinds queued */
  atomic_size_t in_bytes;  /* event bytes queued, thread -> loop */
  atomic_ulong read_pauses; /* times the thread stopped reading at the bound */
  atomic_ulong batches_out, batched_out; /* batches published, messages in them */
  atomic_ulong batches_in, batched_in;   /* reply batches read, replies in them */
  atomic_int up;
  /* the history consumer's counters (gw_bridge_hist_stats) */
  atomic_ulong hist_read, hist_resumes, hist_gaps, hist_gap_lost, hist_resets, hist_stalls;
  atomic_ullong hist_last;
  atomic_int shared_on;                  /* a reader taking the ring now */
  atomic_ulong shared_enters, shared_leaves;

  /* thread only */
  amqp_connection_state_t conn;
  char queue[CHAN_QUEUE_NAME_MAX + 1];
  backoff retry;                   /* reconnect waits */
  uint64_t last_rx_ms, last_tx_ms; /* heartbeat bookkeeping */
  mq_confirms confirms;            /* publishes awaiting ack/nack */
  char *scratch;                   /* a batch's body being built */
  size_t scratch_cap;
  int paused;                      /* stopped reading at the backlog bound */
  int hist_heard;                  /* a delivery of the consumption this pass */
  uint64_t bind_after_ms;          /* no binds before (their duty cycle) */
  /* the history stream's consumption (history on) */
  gw_stream st;
  char hist_tag[32];     /* the current consumer's tag */
  unsigned hist_gen;     /* its generation */
  uint64_t ack_tag;      /* highest stream delivery not yet acknowledged */
  unsigned ack_n;        /* stream deliveries not yet acknowledged */
  uint64_t ack_since_ms; /* when the oldest of them was read */
  unsigned hist_fails;   /* consumes of the stream refused in a row on this node */
  /* history.shared (gw_ring.h): process 0 writes every delivery of its
   * consumption into the ring; the others read it instead of the broker
   * while it serves them (on_ring), the broker otherwise */
  gw_ring ring;          /* .shm NULL: no ring */
  int on_ring;
  unsigned ring_puts;    /* the writer's records this pass (to wake readers) */
  uint64_t ring_hold_ms; /* a reader that stalled on the ring: only a moving one until */
  uint64_t ring_retry_ms; /* a reader whose offset the ring did not have: not before */
};

/* ---- helpers shared by both threads ---------------------------------- */

static void gw_bridge__wake_thread(gw_bridge *b) {
  uint64_t one = 1;
  /* EAGAIN means the counter is already non-zero: the thread will wake. */
  if (write(b->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
    log_error("amqp_wake_failed", "errno=%d", errno);
}

/* What a bind costs in the outgoing backlog: its command. */
static size_t gw_bridge__bind_bytes(const gw_bridge__cmd *c) {
  return sizeof(*c) + strlen(c->name) + 1;
}

/* A control key's bind (wsgw!user.<uid>, one per user a gateway holds)
 * waits behind the groups' binds: a burst of connections of many users
 * queues one each, and a group a client just joined must not wait for
 * them (its events are published as soon as its reply is out). Control
 * keys and group names never collide, so each key's binds and unbinds
 * stay in order within their own lane. */
static int gw_bridge__is_control(const gw_bridge__cmd *c) {
  return strncmp(c->name, CHAN_CONTROL_PREFIX, sizeof CHAN_CONTROL_PREFIX - 1) == 0;
}

static void gw_bridge__push_cmd(gw_bridge *b, gw_bridge__cmd *c) {
  int bind = c->kind != CMD_PUBLISH, ctl = bind && gw_bridge__is_control(c);
  gw_bridge__cmd **head = ctl ? &b->ctl_head : bind ? &b->bind_head : &b->cmd_head;
  gw_bridge__cmd **tail = ctl ? &b->ctl_tail : bind ? &b->bind_tail : &b->cmd_tail;
  pthread_mutex_lock(&b->mu);
  int was_empty = *head == NULL;
  c->next = NULL;
  if (*tail) (*tail)->next = c; else *head = c;
  *tail = c;
  if (bind) atomic_fetch_add(&b->bind_ops, 1);
  pthread_mutex_unlock(&b->mu);
  /* A thread with binds queued sleeps no longer than their rest, so only
   * the first of a queue needs the wake-up. A publish's waits for the end
   * of the loop's iteration (gw_bridge_flush): woken at once, the thread
   * (on the loop's core, as often as not) would take the first publish
   * alone, and every publish of a burst would be an AMQP message of its
   * own; woken once, it takes them all, in batches. */
  if (was_empty && bind) gw_bridge__wake_thread(b);
  else if (was_empty) b->wake_owed = 1;
}

void gw_bridge_flush(gw_bridge *b) {
  if (!b->wake_owed) return;
  b->wake_owed = 0;
  gw_bridge__wake_thread(b);
}

static gw_bridge__cmd *gw_bridge__cmd_new(gw_bridge__cmd_kind kind,
                                              const char *name) {
  size_t n = strlen(name);
  gw_bridge__cmd *c = malloc(sizeof(*c) + n + 1);
  if (!c) return NULL;
  c->kind = kind;
  c->conn_id = 0;
  c->body = NULL;
  c->len = 0;
  memcpy(c->name, name, n + 1);
  return c;
}

static void gw_bridge__cmd_free(gw_bridge__cmd *c) {
  free(c->body);
  free(c);
}

void gw_bridge_event_free(gw_bridge_event *ev) {
  if (!ev) return;
  gw_buf_unref(ev->frame);
  free(ev);
}

/* ---- loop side -------------------------------------------------------- */

int gw_bridge_publish(gw_bridge *b, const char *queue, uint64_t conn_id,
                        char *body, size_t len) {
  if (!atomic_load(&b->up) ||
      atomic_load(&b->out_bytes) + len > b->max_backlog) {
    free(body);
    return -1;
  }
  gw_bridge__cmd *c = gw_bridge__cmd_new(CMD_PUBLISH, queue);
  if (!c) {
    free(body);
    return -1;
  }
  c->body = body;
  c->len = len;
  c->conn_id = conn_id;
  atomic_fetch_add(&b->out_bytes, len);
  gw_bridge__push_cmd(b, c);
  return 0;
}

static void gw_bridge__group_cmd(gw_bridge *b, gw_bridge__cmd_kind kind,
                                   const char *group) {
  gw_bridge__cmd *c = gw_bridge__cmd_new(kind, group);
  if (!c) {
    /* Out of memory: the binding is now out of step until the next
     * reconnect rebinds everything. Said loudly, since it loses events. */
    log_error("amqp_bind_lost", "group=%s reason=no_memory", group);
    return;
  }
  atomic_fetch_add(&b->out_bytes, gw_bridge__bind_bytes(c));
  gw_bridge__push_cmd(b, c);
}

void gw_bridge_bind(gw_bridge *b, const char *group) {
  gw_bridge__group_cmd(b, CMD_BIND, group);
}

void gw_bridge_unbind(gw_bridge *b, const char *group) {
  gw_bridge__group_cmd(b, CMD_UNBIND, group);
}

int gw_bridge_is_up(const gw_bridge *b) { return atomic_load(&b->up); }

void gw_bridge_hist_stats_get(const gw_bridge *b, gw_bridge_hist_stats *out) {
  out->read = atomic_load(&b->hist_read);
  out->resumes = atomic_load(&b->hist_resumes);
  out->gaps = atomic_load(&b->hist_gaps);
  out->gap_lost = atomic_load(&b->hist_gap_lost);
  out->resets = atomic_load(&b->hist_resets);
  out->stalls = atomic_load(&b->hist_stalls);
  out->last_offset = atomic_load(&b->hist_last);
  out->shared = atomic_load(&b->shared_on);
  out->shared_enters = atomic_load(&b->shared_enters);
  out->shared_leaves = atomic_load(&b->shared_leaves);
}

size_t gw_bridge_backlog_out(const gw_bridge *b) { return atomic_load(&b->out_bytes); }

size_t gw_bridge_backlog_in(const gw_bridge *b) { return atomic_load(&b->in_bytes); }

size_t gw_bridge_bind_backlog(const gw_bridge *b) { return atomic_load(&b->bind_ops); }

void gw_bridge_batch_stats_get(const gw_bridge *b, gw_bridge_batch_stats *out) {
  out->batches_out = atomic_load(&b->batches_out);
  out->batched_out = atomic_load(&b->batched_out);
  out->batches_in = atomic_load(&b->batches_in);
  out->batched_in = atomic_load(&b->batched_in);
}

unsigned long gw_bridge_read_pauses(const gw_bridge *b) {
  return atomic_load(&b->read_pauses);
}

static void gw_bridge__on_async(uv_async_t *h) {
  gw_bridge *b = h->data;
  pthread_mutex_lock(&b->mu);
  gw_bridge_event *list = b->ev_head;
  b->ev_head = b->ev_tail = NULL;
  pthread_mutex_unlock(&b->mu);
  size_t bytes = 0;
  for (gw_bridge_event *e = list; e; e = e->next)
    bytes += e->len + (e->frame ? e->frame->len : 0);
  size_t before = atomic_fetch_sub(&b->in_bytes, bytes);
  /* The thread stops reading above the limit; tell it there is room. */
  if (before > b->max_backlog && before - bytes <= b->max_backlog)
    gw_bridge__wake_thread(b);
  if (list) b->cb(list, b->cb_arg);
}

/* ---- thread side: events to the loop ------------------------------------ */

typedef struct gw_bridge__batch {
  gw_bridge_event *head, *tail;
  size_t bytes;
  int mark_refused; /* the broker refused a marker (checked at once) */
} gw_bridge__batch;

/* An event with len bytes of data copied and extra more bytes of room
 * after data's NUL. */
static gw_bridge_event *gw_bridge__event_make(gw_bridge_kind kind, const void *data,
                                              size_t len, size_t extra) {
  gw_bridge_event *e = malloc(sizeof(*e) + len + 1 + extra);
  if (!e) return NULL;
  e->next = NULL;
  e->kind = kind;
  e->frame = NULL;
  e->conn_id = 0;
  e->offset = e->digest = 0;
  e->reply_len = 0;
  e->len = len;
  if (len) memcpy(e->data, data, len);
  e->data[len] = '\0';
  return e;
}

static gw_bridge_event *gw_bridge__event_new(gw_bridge_kind kind, const void *data,
                                             size_t len) {
  return gw_bridge__event_make(kind, data, len, 0);
}

static void gw_bridge__batch_add(gw_bridge__batch *batch,
                                   gw_bridge_event *e) {
  if (batch->tail) batch->tail->next = e; else batch->head = e;
  batch->tail = e;
  batch->bytes += e->len + (e->frame ? e->frame->len : 0);
}

static void gw_bridge__post(gw_bridge *b, gw_bridge__batch *batch) {
  if (!batch->head) return;
  atomic_fetch_add(&b->in_bytes, batch->bytes);
  pthread_mutex_lock(&b->mu);
  if (b->ev_tail) b->ev_tail->next = batch->head; else b->ev_head = batch->head;
  b->ev_tail = batch->tail;
  pthread_mutex_unlock(&b->mu);
  uv_async_send(&b->async);
  memset(batch, 0, sizeof(*batch));
}

static void gw_bridge__post_state(gw_bridge *b, gw_bridge_kind kind,
                                    const char *text) {
  gw_bridge__batch batch = {0};
  gw_bridge_event *e = gw_bridge__event_new(kind, text, strlen(text));
  if (!e) return;
  gw_bridge__batch_add(&batch, e);
  gw_bridge__post(b, &batch);
}

static uint64_t gw_bridge__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- thread side: publisher confirms ---------------------------------- */

static void gw_bridge__refused(gw_bridge__batch *batch, uint64_t conn_id) {
  if (conn_id == GW_BRIDGE_MARK_COOKIE) {
    batch->mark_refused = 1;
    return;
  }
  if (!conn_id) return;
  gw_bridge_event *e = gw_bridge__event_new(GW_BRIDGE_REFUSED, "", 0);
  if (!e) return;
  e->conn_id = conn_id;
  gw_bridge__batch_add(batch, e);
}

/* mq_confirm_cb: a refused or lost publish; arg is the batch to tell. */
static void gw_bridge__refused_cb(uint64_t conn_id, void *arg) {
  gw_bridge__refused(arg, conn_id);
}

/* ---- thread side: the host's shared stream (gw_ring.h) -------------------- */

static int gw_bridge__ring_writer(const gw_bridge *b) { return b->ring.shm && b->ring.slot == 0; }
static int gw_bridge__ring_reader(const gw_bridge *b) { return b->ring.shm && b->ring.slot > 0; }

/* The consumption this process had ends (why): a writer's readers leave
 * the ring, a reader stops reading it. Either then begins anew. */
static void gw_bridge__ring_off(gw_bridge *b, const char *why) {
  if (gw_bridge__ring_writer(b)) gw_ring_quit(&b->ring);
  if (!b->on_ring) return;
  b->on_ring = 0;
  atomic_store(&b->shared_on, 0);
  atomic_fetch_add(&b->shared_leaves, 1);
  log_info("hist_shared_left", "stream=%s offset=%llu reason=\"%s\"", b->stream.name,
           (unsigned long long)b->st.last, why);
}

/* ---- thread side: connection ---------------------------------------------- */

/* The connection is gone or given up. move_on: reconnect to the next node
 * first (the likeliest to be the one gone is this one). */
static void gw_bridge__lost_on(gw_bridge *b, const char *why, int move_on) {
  if (b->conn) {
    char node[128];
    mq_url_host_port(mq_url_list_current(&b->urls), node, sizeof node);
    log_warn("amqp_down", "node=%s reason=\"%s\" unconfirmed=%zu", node, why,
             mq_confirms_pending(&b->confirms));
    if (move_on) mq_url_list_next(&b->urls);
    atomic_store(&b->up, 0);
    gw_stream_stop(&b->st); /* the next connection resumes */
    gw_bridge__ring_off(b, "broker lost");
    b->ack_n = 0;           /* delivery tags die with the channel */
    /* Whether unconfirmed publishes arrived is unknown, and their replies
     * would go to a queue that died with this connection: refuse them all. */
    gw_bridge__batch batch = {0};
    mq_confirms_fail_all(&b->confirms, gw_bridge__refused_cb, &batch);
    gw_bridge__post(b, &batch);
    gw_bridge__post_state(b, GW_BRIDGE_DOWN, why);
    /* Closing politely would block on a dead peer: just drop the socket. */
    amqp_destroy_connection(b->conn);
    b->conn = NULL;
  }
}

static void gw_bridge__lost(gw_bridge *b, const char *why) { gw_bridge__lost_on(b, why, 1); }

static int gw_bridge__declare(gw_bridge *b, char *err, size_t errlen) {
  amqp_connection_state_t c = b->conn;
  amqp_confirm_select(c, MQ_CHANNEL);
  if (mq_rpc_check(amqp_get_rpc_reply(c), "confirm.select", err, errlen)) return -1;
  mq_confirms_init(&b->confirms);
  if (mq_declare_groups_exchange(c, err, errlen) != 0) return -1;
  if (mq_declare_control_exchange(c, err, errlen) != 0) return -1;
  if (mq_declare_channel_queues(c, &b->limits, err, errlen) != 0) return -1;
  /* Server-named, exclusive, auto-delete: the queue and every binding
   * vanish with this process, and a reconnect never races the broker's
   * deletion of a queue with a fixed name. */
  amqp_queue_declare_ok_t *ok = amqp_queue_declare(
      c, MQ_CHANNEL, amqp_empty_bytes, 0, 0, 1, 1, amqp_empty_table);
  if (mq_rpc_check(amqp_get_rpc_reply(c), "declare own queue", err, errlen))
    return -1;
  size_t n = ok->queue.len < CHAN_QUEUE_NAME_MAX ? ok->queue.len : CHAN_QUEUE_NAME_MAX;
  memcpy(b->queue, ok->queue.bytes, n);
  b->queue[n] = '\0';
  /* no_ack: replies and events are transient by design; acking each would
   * double the frames on the hottest path. Bounding is done by pausing
   * reads (see gw_bridge__can_read). */
  amqp_basic_consume(c, MQ_CHANNEL, amqp_cstring_bytes(b->queue),
                     amqp_empty_bytes, 0, 1, 1, amqp_empty_table);
  if (mq_rpc_check(amqp_get_rpc_reply(c), "consume own queue", err, errlen)) return -1;
  if (!b->hist) return 0;
  if (mq_declare_history_stream(c, &b->stream, err, errlen) != 0) return -1;
  /* Per consumer (global 0): only the stream consumer acknowledges. The
   * broker requires it for a stream. */
  amqp_basic_qos(c, MQ_CHANNEL, 0, (uint16_t)b->prefetch, 0);
  return mq_rpc_check(amqp_get_rpc_reply(c), "basic.qos", err, errlen);
}

static int gw_bridge__hist_begin(gw_bridge *b, int restart, const char *why,
                                 gw_bridge__batch *batch);
/* The stream's first consumption on a new connection: a first start or a
 * resume (gw_stream decides). */
static int gw_bridge__hist_start(gw_bridge *b) {
  gw_bridge__batch batch = {0};
  int rc = gw_bridge__hist_begin(b, 0, "first start", &batch);
  gw_bridge__post(b, &batch);
  return rc;
}

/* Sleeps up to ms, waking early when the loop asks us to stop. */
static int gw_bridge__stopping(gw_bridge *b) {
  pthread_mutex_lock(&b->mu);
  int s = b->stopping;
  pthread_mutex_unlock(&b->mu);
  return s;
}

/* Resets the loop's wake-up counter (eventfd) after poll saw it set. */
static void gw_bridge__drain_wake(gw_bridge *b) {
  uint64_t v;
  if (read(b->wake_fd, &v, sizeof(v)) < 0) { /* already drained */ }
}

static void gw_bridge__sleep(gw_bridge *b, unsigned ms) {
  struct pollfd p = {.fd = b->wake_fd, .events = POLLIN};
  unsigned waited = 0;
  while (waited < ms && !gw_bridge__stopping(b)) {
    unsigned step = ms - waited < 100 ? ms - waited : 100;
    if (poll(&p, 1, (int)step) > 0) gw_bridge__drain_wake(b);
    waited += step;
  }
}

static int gw_bridge__connect(gw_bridge *b) {
  char err[256], node[128];
  const char *url = mq_url_list_current(&b->urls);
  mq_url_host_port(url, node, sizeof node);
  b->conn = mq_conn_open_flags(url, b->heartbeat_s,
                               b->hist ? MQ_CONN_CANCEL_NOTIFY : 0, err, sizeof(err));
  if (b->conn && gw_bridge__declare(b, err, sizeof(err)) == 0) {
    mq_url_list_connected(&b->urls);
    b->last_rx_ms = b->last_tx_ms = gw_bridge__now_ms();
    /* With the history, up once LIVE is posted (gw_bridge__hist_delivery). */
    if (!b->hist) atomic_store(&b->up, 1);
    log_info("amqp_up", "node=%s queue=%s", node, b->queue);
    gw_bridge__post_state(b, GW_BRIDGE_UP, b->queue);
    if (b->hist && gw_bridge__hist_start(b) != 0) {
      /* The node is up but the stream is not readable there yet (RabbitMQ
       * 3.10 consumes from a local replica only, and after a lost leader
       * the survivors' replicas restart): retry here a few times, backing
       * off, before moving on, which would try a dead node next. */
      int move_on = ++b->hist_fails >= GW_BRIDGE_HIST_TRIES;
      if (move_on) b->hist_fails = 0;
      gw_bridge__lost_on(b, "history consume failed", move_on);
      gw_bridge__sleep(b, backoff_next(&b->retry));
      return -1;
    }
    b->hist_fails = 0;
    backoff_reset(&b->retry);
    return 0;
  }
  if (b->conn) {
    amqp_destroy_connection(b->conn);
    b->conn = NULL;
  }
  if (mq_url_list_next(&b->urls) == 0) {
    /* Another node remains untried in this round: no wait. */
    log_warn("amqp_connect_failed", "node=%s reason=\"%s\" retry_ms=0", node,
             err);
    return -1;
  }
  /* Capped exponential backoff with jitter: a restarted broker is not hit
   * by every gateway in the same millisecond. */
  unsigned wait = backoff_next(&b->retry);
  log_warn("amqp_connect_failed", "node=%s reason=\"%s\" retry_ms=%u", node,
           err, wait);
  gw_bridge__sleep(b, wait);
  return -1;
}

/* ---- thread side: commands -------------------------------------------- */

static gw_bridge__cmd *gw_bridge__take_cmds(gw_bridge *b) {
  pthread_mutex_lock(&b->mu);
  gw_bridge__cmd *list = b->cmd_head;
  b->cmd_head = b->cmd_tail = NULL;
  pthread_mutex_unlock(&b->mu);
  return list;
}

static gw_bridge__cmd *gw_bridge__pop(gw_bridge__cmd **head, gw_bridge__cmd **tail) {
  gw_bridge__cmd *c = *head;
  if (c) {
    *head = c->next;
    if (!*head) *tail = NULL;
  }
  return c;
}

/* The oldest queued bind or unbind of a group, else of a control key, or
 * NULL. */
static gw_bridge__cmd *gw_bridge__take_bind(gw_bridge *b) {
  pthread_mutex_lock(&b->mu);
  gw_bridge__cmd *c = gw_bridge__pop(&b->bind_head, &b->bind_tail);
  if (!c) c = gw_bridge__pop(&b->ctl_head, &b->ctl_tail);
  pthread_mutex_unlock(&b->mu);
  return c;
}

static int gw_bridge__publish_one(gw_bridge *b, gw_bridge__cmd *c) {
  amqp_basic_properties_t props;
  mq_json_props(&props, 0); /* transient: a reply queue does not outlive us */
  amqp_bytes_t body = {.len = c->len, .bytes = c->body};
  /* Without its entry the confirm could not be matched: start over (the
   * loss refuses it like every other unconfirmed publish). */
  if (mq_confirms_push(&b->confirms, c->conn_id) != 0) return -1;
  int rc = amqp_basic_publish(b->conn, MQ_CHANNEL, amqp_empty_bytes,
                              amqp_cstring_bytes(c->name), 0, 0, &props, body);
  if (rc != AMQP_STATUS_OK) return -1;
  b->last_tx_ms = gw_bridge__now_ms();
  return 0;
}

/* A control key is bound on the control exchange only, whatever the
 * history: there a kick sent with mandatory comes back when nobody holds
 * the key (on the groups exchange the stream's '#' takes every key). A
 * kick sent to the groups exchange reaches us through that exchange's
 * bindings to the control exchange, once. */
static int gw_bridge__bind_one(gw_bridge *b, gw_bridge__cmd *c) {
  char err[256];
  amqp_bytes_t q = amqp_cstring_bytes(b->queue);
  amqp_bytes_t x = amqp_cstring_bytes(gw_bridge__is_control(c) ? CHAN_CONTROL_EXCHANGE
                                                                : CHAN_GROUPS_EXCHANGE);
  amqp_bytes_t key = amqp_cstring_bytes(c->name);
  if (c->kind == CMD_BIND) {
    amqp_queue_bind(b->conn, MQ_CHANNEL, q, x, key, amqp_empty_table);
  } else {
    amqp_queue_unbind(b->conn, MQ_CHANNEL, q, x, key, amqp_empty_table);
  }
  if (mq_rpc_check(amqp_get_rpc_reply(b->conn),
                   c->kind == CMD_BIND ? "bind" : "unbind", err, sizeof(err))) {
    log_warn("amqp_bind_failed", "group=%s reason=\"%s\"", c->name, err);
    return -1;
  }
  /* A round trip: the broker spoke and we did. Without this a thread busy
   * binding for two heartbeat intervals would take the broker for dead. */
  b->last_rx_ms = b->last_tx_ms = gw_bridge__now_ms();
  log_debug("amqp_bind", "group=%s op=%s", c->name,
            c->kind == CMD_BIND ? "bind" : "unbind");
  return 0;
}

/* How many publishes from c on go in one batch: the run of those to c's
 * queue that may join (chan_batch_item_ok), within b->batch of them and
 * GW_BRIDGE_BATCH_BYTES (*bytes: the body's size). */
static int gw_bridge__batch_len(const gw_bridge *b, const gw_bridge__cmd *c,
                                size_t *bytes) {
  int n = 0;
  size_t total = 0;
  *bytes = 0;
  /* Workers read batches; a kick's answer goes to a kicker, which does not. */
  if (strncmp(c->name, CHAN_QUEUE_PREFIX, sizeof CHAN_QUEUE_PREFIX - 1) != 0) return 0;
  for (const gw_bridge__cmd *x = c; x && n < b->batch; x = x->next) {
    if (strcmp(x->name, c->name) != 0 || !chan_batch_item_ok(x->body, x->len) ||
        total + x->len + 1 > GW_BRIDGE_BATCH_BYTES)
      break;
    total += x->len + 1;
    n++;
  }
  *bytes = total;
  return n;
}

/* Publishes the n commands from c on as one batch (chan_batch.h): one
 * confirm entry per message, under the batch's one tag, so a refusal
 * still names every connection. Returns 1 without publishing when memory
 * for the batch is short (the caller publishes them one by one). */
static int gw_bridge__publish_many(gw_bridge *b, const gw_bridge__cmd *c, int n,
                                   size_t bytes) {
  assert(n >= 2 && n <= b->batch && bytes <= GW_BRIDGE_BATCH_BYTES);
  if (bytes > b->scratch_cap) {
    char *p = realloc(b->scratch, GW_BRIDGE_BATCH_BYTES);
    if (!p) return 1;
    b->scratch = p;
    b->scratch_cap = GW_BRIDGE_BATCH_BYTES;
  }
  /* Every entry pushed or none: a push failing halfway would leave some
   * connections unrefused if the batch is then lost. */
  if (mq_confirms_reserve(&b->confirms, (size_t)n) != 0) return 1;
  size_t at = 0;
  const gw_bridge__cmd *x = c;
  for (int i = 0; i < n; i++, x = x->next) {
    memcpy(b->scratch + at, x->body, x->len);
    at += x->len;
    b->scratch[at++] = '\n';
    int rc = i == 0 ? mq_confirms_push(&b->confirms, x->conn_id)
                    : mq_confirms_push_more(&b->confirms, x->conn_id);
    assert(rc == 0); /* reserved */
    (void)rc;
  }
  assert(at == bytes);
  amqp_basic_properties_t props;
  amqp_table_entry_t header;
  chan_batch_props(&props, &header, n);
  amqp_bytes_t body = {.len = bytes, .bytes = b->scratch};
  int rc = amqp_basic_publish(b->conn, MQ_CHANNEL, amqp_empty_bytes,
                              amqp_cstring_bytes(c->name), 0, 0, &props, body);
  if (rc != AMQP_STATUS_OK) return -1;
  b->last_tx_ms = gw_bridge__now_ms();
  atomic_fetch_add(&b->batches_out, 1);
  atomic_fetch_add(&b->batched_out, (unsigned long)n);
  return 0;
}

/* The publishes of list grouped by queue (connects, receives, disconnects,
 * a kick's answers), each queue's in the order queued: the runs batches
 * are made of. Order across queues means nothing (a connection has one
 * message in flight; workers consume the queues independently anyway).
 * Up to GW_BRIDGE_LANES queues get a lane; the rest share the last. */
#define GW_BRIDGE_LANES 8
static gw_bridge__cmd *gw_bridge__by_queue(gw_bridge__cmd *list) {
  gw_bridge__cmd *head[GW_BRIDGE_LANES] = {0}, *tail[GW_BRIDGE_LANES] = {0};
  int lanes = 0;
  while (list) {
    gw_bridge__cmd *c = list;
    list = c->next;
    c->next = NULL;
    int i = 0;
    while (i < lanes && strcmp(head[i]->name, c->name) != 0) i++;
    if (i == lanes) {
      if (lanes < GW_BRIDGE_LANES) lanes++;
      else i = GW_BRIDGE_LANES - 1;
    }
    if (tail[i]) tail[i]->next = c; else head[i] = c;
    tail[i] = c;
  }
  gw_bridge__cmd *out = NULL, **at = &out;
  for (int i = 0; i < lanes; i++) {
    *at = head[i];
    at = &tail[i]->next;
  }
  return out;
}

/* Runs every queued publish, several to one queue as a batch. While the
 * broker is down they are dropped (the loop answered 503 already: the
 * bridge was not up). Returns -1 when the connection broke. */
static int gw_bridge__run_publishes(gw_bridge *b) {
  gw_bridge__cmd *list = gw_bridge__by_queue(gw_bridge__take_cmds(b));
  int rc = 0;
  while (list) {
    int n = 1;
    if (rc == 0 && b->conn) {
      size_t bytes;
      n = gw_bridge__batch_len(b, list, &bytes);
      rc = n >= 2 ? gw_bridge__publish_many(b, list, n, bytes) : 1;
      if (rc == 1) { /* alone (or memory for a batch was short) */
        n = 1;
        rc = gw_bridge__publish_one(b, list);
      }
    }
    for (int i = 0; i < n; i++) {
      gw_bridge__cmd *c = list;
      list = c->next;
      atomic_fetch_sub(&b->out_bytes, c->len);
      gw_bridge__cmd_free(c);
    }
  }
  return rc;
}

/* Runs queued binds and unbinds, oldest first, until the budget is spent
 * (at least one per pass, so they always progress). While the broker is
 * down, or with budget_ms 0, every one is dropped (see gw_bridge_bind for
 * why that is safe). Returns -1 when the connection broke. */
static int gw_bridge__run_binds(gw_bridge *b, unsigned budget_ms) {
  uint64_t start = gw_bridge__now_ms(), end = start + budget_ms;
  int rc = 0;
  if (budget_ms && b->conn && start < b->bind_after_ms) return 0; /* resting */
  for (gw_bridge__cmd *c; (c = gw_bridge__take_bind(b)) != NULL;) {
    int run = rc == 0 && b->conn && budget_ms > 0;
    atomic_fetch_sub(&b->out_bytes, gw_bridge__bind_bytes(c));
    if (run) rc = gw_bridge__bind_one(b, c);
    gw_bridge__cmd_free(c);
    atomic_fetch_sub(&b->bind_ops, 1);
    if (run && gw_bridge__now_ms() >= end) break;
  }
  uint64_t now = gw_bridge__now_ms();
  b->bind_after_ms = now + (now - start) * GW_BRIDGE_BIND_REST;
  return rc;
}

/* Publishes first, then a budget of binds. Returns -1 when the connection
 * broke. */
static int gw_bridge__run_cmds(gw_bridge *b) {
  if (gw_bridge__run_publishes(b) != 0) return -1;
  return gw_bridge__run_binds(b, GW_BRIDGE_BIND_BUDGET_MS);
}

/* Drops every queued command: the thread is not connected, or is leaving
 * (the queue and its bindings go with the connection). */
static void gw_bridge__drop_cmds(gw_bridge *b) {
  if (!b->conn) gw_bridge__run_publishes(b);
  gw_bridge__run_binds(b, 0);
}

/* ---- thread side: deliveries -------------------------------------------- */

static gw_bridge_event *gw_bridge__group_event(const amqp_envelope_t *env) {
  const amqp_bytes_t *key = &env->routing_key;
  const amqp_bytes_t *body = &env->message.body;
  /* Checked once here, not per recipient: a client must never receive a
   * text frame that is not UTF-8 (it would have to fail the connection). */
  if (!utf8_valid(body->bytes, body->len)) {
    log_warn("group_message_dropped", "group=%.*s reason=invalid_utf8",
             (int)key->len, (const char *)key->bytes);
    return NULL;
  }
  gw_bridge_event *e = gw_bridge__event_new(GW_BRIDGE_GROUP, key->bytes, key->len);
  if (!e) return NULL;
  e->frame = gw_buf_frame(1, body->bytes, body->len);
  if (!e->frame) {
    free(e);
    return NULL;
  }
  return e;
}

/* 1 when the message carries x-wsgw-control: kick. */
static int gw_bridge__is_kick(const amqp_envelope_t *env) {
  const amqp_basic_properties_t *p = &env->message.properties;
  if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG)) return 0;
  for (int i = 0; i < p->headers.num_entries; i++) {
    const amqp_table_entry_t *h = &p->headers.entries[i];
    if (h->key.len != strlen(CHAN_CONTROL_HEADER) ||
        memcmp(h->key.bytes, CHAN_CONTROL_HEADER, h->key.len) != 0)
      continue;
    if (h->value.kind != AMQP_FIELD_KIND_UTF8 && h->value.kind != AMQP_FIELD_KIND_BYTES)
      return 0;
    const amqp_bytes_t *v = &h->value.value.bytes;
    return v->len == strlen(CHAN_CONTROL_KICK) &&
           memcmp(v->bytes, CHAN_CONTROL_KICK, v->len) == 0;
  }
  return 0;
}

static int gw_bridge__key_has_prefix(const amqp_bytes_t *key, const char *prefix) {
  size_t n = strlen(prefix);
  return key->len >= n && memcmp(key->bytes, prefix, n) == 0;
}

/* The connection id a kick to this gateway's own key names: its body is
 * "websocket.send.<our queue>!<id>" or "<id>". 0: none of ours. */
static uint64_t gw_bridge__kick_conn_id(const gw_bridge *b, const amqp_bytes_t *body) {
  char text[CHAN_QUEUE_NAME_MAX + 64];
  if (body->len == 0 || body->len >= sizeof text) return 0;
  memcpy(text, body->bytes, body->len);
  text[body->len] = '\0';
  size_t n = body->len;
  while (n && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' '))
    text[--n] = '\0';
  const char *digits = text;
  const char *bang = strrchr(text, '!');
  if (bang) {
    size_t pre = strlen(CHAN_REPLY_PREFIX), q = strlen(b->queue);
    if ((size_t)(bang - text) != pre + q || strncmp(text, CHAN_REPLY_PREFIX, pre) != 0 ||
        strncmp(text + pre, b->queue, q) != 0)
      return 0;
    digits = bang + 1;
  }
  uint64_t id = 0;
  if (!*digits || strlen(digits) > 19) return 0;
  for (const char *d = digits; *d; d++) {
    if (*d < '0' || *d > '9') return 0;
    id = id * 10 + (uint64_t)(*d - '0');
  }
  return id;
}

/* A message to one of the gateways' control keys (wsgw!...): a kick, or
 * nothing (never delivered to a client). */
/* A kick event for key (or connection id); the kicker's reply_to, when it
 * asked for an answer (a direct reply-to name, CHAN_DIRECT_REPLY_PREFIX...:
 * at most 255 printable ASCII bytes), after the key, for the loop to
 * answer to. */
static gw_bridge_event *gw_bridge__kick_event(const amqp_envelope_t *env, const void *key,
                                              size_t len, uint64_t id) {
  const amqp_basic_properties_t *p = &env->message.properties;
  size_t rlen = 0;
  if ((p->_flags & AMQP_BASIC_REPLY_TO_FLAG) &&
      p->reply_to.len > sizeof CHAN_DIRECT_REPLY_PREFIX - 1 &&
      p->reply_to.len <= CHAN_QUEUE_NAME_MAX &&
      memcmp(p->reply_to.bytes, CHAN_DIRECT_REPLY_PREFIX, sizeof CHAN_DIRECT_REPLY_PREFIX - 1) == 0) {
    rlen = p->reply_to.len;
    for (size_t i = 0; i < rlen; i++) {
      unsigned char ch = ((const unsigned char *)p->reply_to.bytes)[i];
      if (ch <= 0x20 || ch >= 0x7f) rlen = 0;
    }
  }
  gw_bridge_event *e = gw_bridge__event_make(GW_BRIDGE_KICK, key, len, rlen ? rlen + 1 : 0);
  if (!e) return NULL;
  e->conn_id = id;
  if (rlen) {
    memcpy(e->data + len + 1, p->reply_to.bytes, rlen);
    e->data[len + 1 + rlen] = '\0';
    e->reply_len = rlen;
  }
  return e;
}

static gw_bridge_event *gw_bridge__control_event(const gw_bridge *b,
                                                 const amqp_envelope_t *env) {
  const amqp_bytes_t *key = &env->routing_key;
  if (!gw_bridge__is_kick(env)) {
    log_warn("control_message_dropped", "key=%.*s reason=\"not a kick\"", (int)key->len,
             (const char *)key->bytes);
    return NULL;
  }
  if (gw_bridge__key_has_prefix(key, CHAN_USER_KEY_PREFIX))
    return gw_bridge__kick_event(env, key->bytes, key->len, 0);
  if (gw_bridge__key_has_prefix(key, CHAN_GATEWAY_KEY_PREFIX)) {
    uint64_t id = gw_bridge__kick_conn_id(b, &env->message.body);
    if (!id) {
      log_warn("control_message_dropped", "key=%.*s reason=\"no connection of ours named\"",
               (int)key->len, (const char *)key->bytes);
      return NULL;
    }
    return gw_bridge__kick_event(env, "", 0, id);
  }
  return NULL;
}

static gw_bridge_event *gw_bridge__event_for(const gw_bridge *b, const amqp_envelope_t *env) {
  const amqp_bytes_t *x = &env->exchange;
  int groups = x->len == strlen(CHAN_GROUPS_EXCHANGE) &&
               memcmp(x->bytes, CHAN_GROUPS_EXCHANGE, x->len) == 0;
  int control = x->len == strlen(CHAN_CONTROL_EXCHANGE) &&
                memcmp(x->bytes, CHAN_CONTROL_EXCHANGE, x->len) == 0;
  /* The exchange a message was published to is the one delivered: a kick
   * sent to the groups exchange names it though it came through the
   * control exchange. We bind nothing but control keys there. */
  if (groups || control) {
    if (gw_bridge__key_has_prefix(&env->routing_key, CHAN_CONTROL_PREFIX))
      return gw_bridge__control_event(b, env);
    if (control) return NULL;
    /* With the history, group messages come from the stream only (our
     * queue is bound to control keys): none should arrive here. */
    if (b->hist) return NULL;
    if (gw_bridge__is_kick(env)) { /* a kick sent to a group: not ours to act on */
      log_warn("control_message_dropped", "key=%.*s reason=\"kick to a group\"",
               (int)env->routing_key.len, (const char *)env->routing_key.bytes);
      return NULL;
    }
    return gw_bridge__group_event(env);
  }
  if (x->len == 0) /* default exchange: a worker's reply */
    return gw_bridge__event_new(GW_BRIDGE_REPLY, env->message.body.bytes,
                                  env->message.body.len);
  return NULL;
}

/* A batch of replies (a worker answers a batch so): one REPLY event per
 * reply, in order. A malformed batch is dropped whole, with a warning:
 * its connections time out as if no worker had answered. */
static void gw_bridge__replies(gw_bridge *b, const amqp_envelope_t *env, int n,
                               gw_bridge__batch *batch) {
  const amqp_bytes_t *body = &env->message.body;
  char err[96];
  if (n < 0 || chan_batch_check(body->bytes, body->len, n, err, sizeof err) != 0) {
    log_warn("reply_batch_dropped", "bytes=%zu reason=\"%s\"", body->len,
             n < 0 ? "bad " CHAN_BATCH_HEADER " header" : err);
    return;
  }
  size_t pos = 0, len;
  const char *item;
  while (chan_batch_next(body->bytes, body->len, &pos, &item, &len)) {
    gw_bridge_event *e = gw_bridge__event_new(GW_BRIDGE_REPLY, item, len);
    if (e) gw_bridge__batch_add(batch, e);
  }
  atomic_fetch_add(&b->batches_in, 1);
  atomic_fetch_add(&b->batched_in, (unsigned long)n);
}

/* A delivery of our own queue: a reply, a batch of them, or a control
 * message (with the history off, group messages too). */
static void gw_bridge__deliver(gw_bridge *b, const amqp_envelope_t *env,
                               gw_bridge__batch *batch) {
  int n = chan_batch_count(&env->message.properties);
  if (n != 0 && env->exchange.len == 0) {
    gw_bridge__replies(b, env, n, batch);
    return;
  }
  gw_bridge_event *e = gw_bridge__event_for(b, env);
  if (e) gw_bridge__batch_add(batch, e);
}

/* ---- thread side: the history stream ------------------------------------ */

static int gw_bridge__can_read(gw_bridge *b) {
  return atomic_load(&b->in_bytes) <= b->max_backlog;
}

static int gw_bridge__bytes_eq(const amqp_bytes_t *a, const char *s) {
  size_t n = strlen(s);
  return a->len == n && memcmp(a->bytes, s, n) == 0;
}

/* 1 for a delivery of a stream consumption, current or cancelled (they
 * are acknowledged; our own queue's are not). */
static int gw_bridge__is_hist_tag(const amqp_bytes_t *tag) {
  return gw_bridge__key_has_prefix(tag, GW_BRIDGE_HIST_TAG);
}

static int gw_bridge__is_own_marker(const gw_bridge *b, const amqp_bytes_t *key) {
  size_t pre = sizeof CHAN_MARK_KEY_PREFIX - 1, q = strlen(b->queue);
  return key->len == pre + q && gw_bridge__key_has_prefix(key, CHAN_MARK_KEY_PREFIX) &&
         memcmp((const char *)key->bytes + pre, b->queue, q) == 0;
}

/* The x-stream-offset header every stream delivery carries (a long);
 * -1 when it is missing or negative. */
static int gw_bridge__stream_offset(const amqp_basic_properties_t *p, uint64_t *off) {
  if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG)) return -1;
  for (int i = 0; i < p->headers.num_entries; i++) {
    const amqp_table_entry_t *h = &p->headers.entries[i];
    if (!gw_bridge__bytes_eq(&h->key, "x-stream-offset")) continue;
    const amqp_field_value_t *v = &h->value;
    switch (v->kind) {
      case AMQP_FIELD_KIND_I64: if (v->value.i64 < 0) return -1; *off = (uint64_t)v->value.i64; return 0;
      case AMQP_FIELD_KIND_U64: *off = v->value.u64; return 0;
      case AMQP_FIELD_KIND_I32: if (v->value.i32 < 0) return -1; *off = (uint64_t)v->value.i32; return 0;
      case AMQP_FIELD_KIND_U32: *off = v->value.u32; return 0;
      default: return -1;
    }
  }
  return -1;
}

/* Acknowledges every stream delivery read so far (multiple = 1): one frame
 * per half a prefetch or GW_BRIDGE_ACK_MS (gw_bridge__ack_due). Reads stop
 * at the backlog bound, so the acks do too, and the broker stops sending at
 * the prefetch. */
static int gw_bridge__ack_flush(gw_bridge *b) {
  assert(b->hist && b->conn);
  if (!b->ack_n) return 0;
  b->ack_n = 0;
  if (amqp_basic_ack(b->conn, MQ_CHANNEL, b->ack_tag, 1) != AMQP_STATUS_OK) return -1;
  b->last_tx_ms = gw_bridge__now_ms();
  return 0;
}

/* ms until the pass-end ack is due (0: now), or -1: nothing to ack. */
static int gw_bridge__ack_due(const gw_bridge *b) {
  if (!b->hist || !b->ack_n) return -1;
  uint64_t now = gw_bridge__now_ms(), at = b->ack_since_ms + GW_BRIDGE_ACK_MS;
  return at > now ? (int)(at - now) : 0;
}

/* "wsgw!mark.<queue>" with our queue name as the body, confirmed: nobody
 * binds that key but the stream, where it marks "now" for us. */
static int gw_bridge__publish_marker(gw_bridge *b) {
  char key[sizeof CHAN_MARK_KEY_PREFIX + CHAN_QUEUE_NAME_MAX];
  snprintf(key, sizeof key, CHAN_MARK_KEY_PREFIX "%s", b->queue);
  if (mq_confirms_push(&b->confirms, GW_BRIDGE_MARK_COOKIE) != 0) return -1;
  int rc = amqp_basic_publish(b->conn, MQ_CHANNEL, amqp_cstring_bytes(CHAN_GROUPS_EXCHANGE),
                              amqp_cstring_bytes(key), 0, 0, NULL,
                              amqp_cstring_bytes(b->queue));
  if (rc != AMQP_STATUS_OK) return -1;
  b->last_tx_ms = gw_bridge__now_ms();
  return 0;
}

/* basic.consume's x-stream-offset for a consumption starting at `from`. */
static void gw_bridge__offset_arg(const gw_bridge *b, gw_stream_from from, uint64_t off,
                                  amqp_table_entry_t *e) {
  e->key = amqp_cstring_bytes("x-stream-offset");
  if (from == GW_STREAM_FROM_OFFSET) {
    e->value.kind = AMQP_FIELD_KIND_I64;
    e->value.value.i64 = (int64_t)off;
  } else if (from == GW_STREAM_FROM_FIRST) {
    e->value.kind = AMQP_FIELD_KIND_UTF8;
    e->value.value.bytes = amqp_cstring_bytes("first");
  } else { /* a timestamp, in seconds; the broker starts at that chunk */
    uint64_t now = (uint64_t)time(NULL), back = (uint64_t)b->preload_ms / 1000;
    e->value.kind = AMQP_FIELD_KIND_TIMESTAMP;
    e->value.value.u64 = now > back ? now - back : 0;
  }
}

/* Starts a consumption of the stream (gw_stream_begin decides where),
 * RESET first into batch when the loop must forget its history, then
 * publishes our marker. -1 when the connection broke. */
static int gw_bridge__hist_begin(gw_bridge *b, int restart, const char *why,
                                 gw_bridge__batch *batch) {
  uint64_t off;
  int reset;
  gw_bridge__ring_off(b, why);
  b->hist_heard = 0; /* what the old consumption delivered says nothing of this one */
  gw_stream_from from = gw_stream_begin(&b->st, restart, gw_bridge__now_ms(),
                                        (uint64_t)b->resume_timeout_ms, &off, &reset);
  if (reset) {
    gw_bridge_event *e = gw_bridge__event_new(GW_BRIDGE_HIST_RESET, why, strlen(why));
    if (!e) return -1;
    gw_bridge__batch_add(batch, e);
    atomic_fetch_add(&b->hist_resets, 1);
    if (restart) log_warn("hist_reset", "stream=%s reason=\"%s\"", b->stream.name, why);
    else log_info("hist_reset", "stream=%s reason=\"%s\"", b->stream.name, why);
  }
  amqp_table_entry_t arg;
  gw_bridge__offset_arg(b, from, off, &arg);
  amqp_table_t args = {1, &arg};
  snprintf(b->hist_tag, sizeof b->hist_tag, GW_BRIDGE_HIST_TAG "%u", ++b->hist_gen);
  amqp_basic_consume(b->conn, MQ_CHANNEL, amqp_cstring_bytes(b->stream.name),
                     amqp_cstring_bytes(b->hist_tag), 0, 0 /* no_ack */, 0, args);
  char err[256];
  if (mq_rpc_check(amqp_get_rpc_reply(b->conn), "consume history stream", err, sizeof err)) {
    log_warn("hist_consume_failed", "stream=%s reason=\"%s\"", b->stream.name, err);
    return -1;
  }
  b->last_rx_ms = b->last_tx_ms = gw_bridge__now_ms();
  if (from == GW_STREAM_FROM_OFFSET) {
    atomic_fetch_add(&b->hist_resumes, 1);
    log_info("hist_resume", "stream=%s offset=%llu timeout_ms=%ld", b->stream.name,
             (unsigned long long)off, b->resume_timeout_ms);
  } else {
    log_info("hist_consume", "stream=%s from=%s", b->stream.name,
             from == GW_STREAM_FROM_FIRST ? "first" : "time");
  }
  return gw_bridge__publish_marker(b);
}

/* Cancels the current consumption and begins another: restart = 1 when
 * the stream is not the one we read before (recreated: RESET, read it from
 * its first message), 0 to resume from the last offset posted (a stalled
 * consumer). */
/* Ends the broker's consumption (deliveries still on their way are acked
 * and dropped: their tag is no longer ours). */
static int gw_bridge__hist_cancel(gw_bridge *b) {
  if (gw_bridge__ack_flush(b) != 0) return -1;
  amqp_basic_cancel(b->conn, MQ_CHANNEL, amqp_cstring_bytes(b->hist_tag));
  b->hist_tag[0] = '\0';
  char err[256];
  if (mq_rpc_check(amqp_get_rpc_reply(b->conn), "cancel history consumer", err, sizeof err)) {
    log_warn("hist_consume_failed", "stream=%s reason=\"%s\"", b->stream.name, err);
    return -1;
  }
  return 0;
}

static int gw_bridge__hist_again(gw_bridge *b, int restart, const char *why,
                                 gw_bridge__batch *batch) {
  /* On the ring there is no consumption of ours at the broker. */
  if (!b->on_ring && gw_bridge__hist_cancel(b) != 0) return -1;
  if (!restart) gw_stream_stop(&b->st); /* the next begin resumes */
  return gw_bridge__hist_begin(b, restart, why, batch);
}

static int gw_bridge__hist_restart(gw_bridge *b, const char *why, gw_bridge__batch *batch) {
  return gw_bridge__hist_again(b, 1, why, batch);
}

/* The watch of gw_stream.h: a marker after check_interval of silence; a
 * resume when not even that came back. Costs one small publish per
 * check_interval while the stream is quiet, nothing while it flows. */
static int gw_bridge__hist_watch(gw_bridge *b, gw_bridge__batch *batch) {
  uint64_t now = gw_bridge__now_ms();
  if (b->hist_heard) gw_stream_heard(&b->st, now);
  b->hist_heard = 0;
  switch (gw_stream_watch(&b->st, now, (uint64_t)b->check_interval_ms,
                          (uint64_t)b->resume_timeout_ms)) {
    case GW_STREAM_WATCH_PROBE:
      return gw_bridge__publish_marker(b);
    case GW_STREAM_WATCH_STALLED:
      atomic_fetch_add(&b->hist_stalls, 1);
      if (b->on_ring) b->ring_hold_ms = now + 2 * (uint64_t)b->check_interval_ms;
      log_warn("hist_stalled", "stream=%s offset=%llu silent_ms=%llu", b->stream.name,
               (unsigned long long)b->st.last, (unsigned long long)(now - b->st.heard_ms));
      return gw_bridge__hist_again(b, 0, "stalled", batch);
    case GW_STREAM_WATCH_NONE:
      break;
  }
  return 0;
}

/* HIST for one stream message: its frame, unless nobody may receive it
 * (a control key, a body that is not UTF-8, a kick sent to a group). */
static gw_bridge_event *gw_bridge__hist_event(const amqp_bytes_t *key,
                                              const amqp_bytes_t *body, int kick,
                                              uint64_t off) {
  gw_bridge_event *e = gw_bridge__event_new(GW_BRIDGE_HIST, key->bytes, key->len);
  if (!e) return NULL;
  e->offset = off;
  if (gw_bridge__key_has_prefix(key, CHAN_CONTROL_PREFIX) || kick) return e;
  if (!utf8_valid(body->bytes, body->len)) {
    log_warn("group_message_dropped", "group=%.*s offset=%llu reason=invalid_utf8",
             (int)key->len, (const char *)key->bytes, (unsigned long long)off);
    return e;
  }
  e->frame = gw_buf_frame(1, body->bytes, body->len);
  if (!e->frame) {
    free(e);
    return NULL;
  }
  return e;
}

/* GAP (first lost offset) or LIVE (first live offset) into batch. */
static int gw_bridge__hist_mark(gw_bridge__batch *batch, gw_bridge_kind kind, uint64_t off) {
  gw_bridge_event *e = gw_bridge__event_new(kind, "", 0);
  if (!e) return -1;
  e->offset = off;
  gw_bridge__batch_add(batch, e);
  return 0;
}

/* Does what gw_stream decides for one message of the stream (e: its HIST,
 * ours to post or free), from the broker or the ring. -1 when the
 * connection broke, or out of memory: then the reconnect resumes from the
 * last message posted, so nothing is skipped. */
static int gw_bridge__hist_step(gw_bridge *b, gw_bridge_event *e, uint64_t off,
                                uint64_t digest, int own_marker, gw_bridge__batch *batch) {
  b->hist_heard = 1; /* the watch is told once per pass (gw_bridge__hist_watch) */
  atomic_fetch_add(&b->hist_read, 1);
  e->digest = digest;
  gw_stream_action a = gw_stream_step(&b->st, off, digest, own_marker);
  assert(!(a.flags & GW_STREAM_GO_LIVE) || b->st.phase == GW_STREAM_LIVE);
  if (!(a.flags & GW_STREAM_POST)) gw_bridge_event_free(e);
  if (a.flags & GW_STREAM_RESTART) return gw_bridge__hist_restart(b, "recreated", batch);
  if (a.flags & GW_STREAM_GAP) {
    atomic_fetch_add(&b->hist_gaps, 1);
    atomic_fetch_add(&b->hist_gap_lost, (unsigned long)(off - a.gap_from));
    log_warn("hist_gap", "stream=%s from=%llu to=%llu lost=%llu", b->stream.name,
             (unsigned long long)a.gap_from, (unsigned long long)off,
             (unsigned long long)(off - a.gap_from));
  }
  int rc = 0;
  if (a.flags & GW_STREAM_GAP) rc |= gw_bridge__hist_mark(batch, GW_BRIDGE_HIST_GAP, a.gap_from);
  if (a.flags & GW_STREAM_GO_LIVE) rc |= gw_bridge__hist_mark(batch, GW_BRIDGE_HIST_LIVE, a.live);
  if (a.flags & GW_STREAM_POST) {
    gw_bridge__batch_add(batch, e);
    atomic_store(&b->hist_last, off);
  }
  if (rc != 0) {
    log_error("hist_event_lost", "offset=%llu reason=no_memory", (unsigned long long)off);
    return -1;
  }
  if (a.flags & GW_STREAM_GO_LIVE) {
    gw_bridge__post(b, batch); /* LIVE before anyone may publish */
    atomic_store(&b->up, 1);
    log_info("hist_live", "stream=%s offset=%llu", b->stream.name, (unsigned long long)a.live);
    if (gw_bridge__ring_writer(b)) gw_ring_lead(&b->ring);
  }
  return 0;
}

/* One delivery of the broker's stream consumption: acked (later), copied
 * into the ring by its writer, then stepped. */
static int gw_bridge__hist_delivery(gw_bridge *b, const amqp_envelope_t *env,
                                    gw_bridge__batch *batch) {
  b->ack_tag = env->delivery_tag;
  if (b->ack_n++ == 0) b->ack_since_ms = gw_bridge__now_ms();
  if (!gw_bridge__bytes_eq(&env->consumer_tag, b->hist_tag)) return 0; /* cancelled */
  uint64_t off;
  if (gw_bridge__stream_offset(&env->message.properties, &off) != 0) {
    log_warn("hist_message_dropped", "reason=\"no x-stream-offset\"");
    return 0;
  }
  const amqp_bytes_t *key = &env->routing_key, *body = &env->message.body;
  uint64_t digest = chan_pos_digest(off, key->bytes, key->len, body->bytes, body->len);
  int kick = gw_bridge__is_kick(env);
  if (gw_bridge__ring_writer(b)) {
    gw_ring_rec rec = {.offset = off, .digest = digest, .flags = kick ? GW_RING_KICK : 0,
                       .key = key->bytes, .key_len = key->len,
                       .body = body->bytes, .body_len = body->len};
    gw_ring_put(&b->ring, &rec);
    b->ring_puts++;
  }
  gw_bridge_event *e = gw_bridge__hist_event(key, body, kick, off);
  if (!e) return -1;
  return gw_bridge__hist_step(b, e, off, digest, gw_bridge__is_own_marker(b, key), batch);
}

/* ---- thread side: a reader of the ring ------------------------------------ */

/* Back to the broker, resuming from the last offset posted (gw_stream
 * checks it as any resume). */
static int gw_bridge__ring_leave(gw_bridge *b, const char *why, gw_bridge__batch *batch) {
  gw_stream_stop(&b->st);
  return gw_bridge__hist_begin(b, 0, why, batch);
}

/* The writer overwrote what we had not read (our loop is behind): to the
 * broker, and not back for a while, or a reader that stays slower than
 * the writer would go back and forth, a cancel and a consume each time. */
static int gw_bridge__ring_overtaken(gw_bridge *b, gw_bridge__batch *batch) {
  b->ring_retry_ms = gw_bridge__now_ms() + GW_BRIDGE_RING_OVERTAKEN_MS;
  return gw_bridge__ring_leave(b, "overtaken", batch);
}

/* Reads what the writer put since the last pass, as deliveries. */
static int gw_bridge__ring_read(gw_bridge *b, gw_bridge__batch *batch) {
  for (int i = 0; i < 4096 && b->on_ring && gw_bridge__can_read(b); i++) {
    gw_ring_rec rec;
    gw_ring_got got = gw_ring_next(&b->ring, &rec);
    if (got == GW_RING_NONE) return 0;
    if (got == GW_RING_ENDED) return gw_bridge__ring_leave(b, "ring ended", batch);
    if (got == GW_RING_OVERTAKEN) return gw_bridge__ring_overtaken(b, batch);
    amqp_bytes_t key = {rec.key_len, (void *)rec.key}, body = {rec.body_len, (void *)rec.body};
    gw_bridge_event *e = gw_bridge__hist_event(&key, &body, rec.flags & GW_RING_KICK, rec.offset);
    if (!e) return -1;
    int own = gw_bridge__is_own_marker(b, &key);
    if (!gw_ring_still(&b->ring)) { /* overwritten while we copied it */
      gw_bridge_event_free(e);
      return gw_bridge__ring_overtaken(b, batch);
    }
    if (gw_bridge__hist_step(b, e, rec.offset, rec.digest, own, batch) != 0) return -1;
    if (batch->bytes > 1u << 20) gw_bridge__post(b, batch);
  }
  return 0;
}

/* A reader live on the broker moves to the ring once the writer is live
 * and has our last offset: cancels its consumption and resumes at that
 * offset from the ring. After the ring stalled under us, only a ring
 * that is ahead of us (it moves) will do for a while: a writer whose loop
 * is stuck is still alive, and we would stall on it again. */
static int gw_bridge__ring_enter(gw_bridge *b, gw_bridge__batch *batch) {
  /* Only when it can read at once: the resume at `last` must find its
   * record before history.resume_timeout, or it would take the stream for
   * recreated. */
  if (!gw_bridge__ring_reader(b) || b->on_ring || b->st.phase != GW_STREAM_LIVE ||
      !gw_bridge__can_read(b))
    return 0;
  uint64_t last = b->st.last, now = gw_bridge__now_ms();
  if (now < b->ring_retry_ms || !gw_ring_covers(&b->ring, last, now < b->ring_hold_ms))
    return 0;
  if (gw_ring_seek(&b->ring, last) != 0) {
    /* The scan walks the ring: not again on every pass. */
    b->ring_retry_ms = now + GW_BRIDGE_RING_RETRY_MS;
    return 0;
  }
  if (gw_bridge__hist_cancel(b) != 0) return -1;
  gw_stream_stop(&b->st);
  uint64_t off;
  int reset;
  gw_stream_from from = gw_stream_begin(&b->st, 0, gw_bridge__now_ms(),
                                        (uint64_t)b->resume_timeout_ms, &off, &reset);
  assert(from == GW_STREAM_FROM_OFFSET && off == last && !reset);
  (void)from;
  b->on_ring = 1;
  b->hist_heard = 0;
  atomic_store(&b->shared_on, 1);
  atomic_fetch_add(&b->shared_enters, 1);
  log_info("hist_shared", "stream=%s offset=%llu", b->stream.name, (unsigned long long)off);
  return gw_bridge__ring_read(b, batch);
}

/* A frame that is not a delivery: a broker-side close ends the connection;
 * anything else (basic.consume-ok arriving late, ...) is ignored. */
static int gw_bridge__other_frame(gw_bridge *b, gw_bridge__batch *batch) {
  amqp_frame_t f;
  struct timeval zero = {0, 0};
  if (amqp_simple_wait_frame_noblock(b->conn, &f, &zero) != AMQP_STATUS_OK)
    return -1;
  if (f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_NACK_METHOD) {
    const amqp_basic_nack_t *n = f.payload.method.decoded;
    log_warn("amqp_publish_refused", "tag=%llu multiple=%d",
             (unsigned long long)n->delivery_tag, n->multiple);
  }
  if (mq_confirms_apply(&b->confirms, &f, gw_bridge__refused_cb, batch)) {
    if (!batch->mark_refused) return 0;
    log_warn("hist_marker_refused", "queue=%s", b->queue);
    return -1;
  }
  if (f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_CANCEL_METHOD) {
    /* The broker cancelled a consumer: its queue was deleted (the history
     * stream, or our own queue by an operator). As a lost connection: the
     * reconnect declares both again and resumes. */
    const amqp_basic_cancel_t *m = f.payload.method.decoded;
    log_warn("amqp_consumer_cancelled", "tag=%.*s", (int)m->consumer_tag.len,
             (const char *)m->consumer_tag.bytes);
    return -1;
  }
  char why[256];
  if (mq_frame_close_reason(&f, "consume", why, sizeof why)) {
    log_warn("amqp_closed", "reason=\"%s\"", why);
    return -1;
  }
  return 0;
}

/* Counts each stop at the backlog bound once, however many idle passes it
 * lasts (a metric: the loop is not keeping up). The loop's drain wakes the
 * thread (gw_bridge__on_async). */
static void gw_bridge__note_pause(gw_bridge *b) {
  if (gw_bridge__can_read(b)) return;
  if (!b->paused) atomic_fetch_add(&b->read_pauses, 1);
  b->paused = 1;
}

/* Reads every delivery already available, without waiting. Returns -1 when
 * the connection broke. */
static int gw_bridge__read(gw_bridge *b) {
  gw_bridge__batch batch = {0};
  int rc = 0;
  /* Bytes from the broker are signs of life (gw_bridge__heartbeat), but
   * last_rx_ms is kept where poll(2) sees them, and a thread that does not
   * sleep there may go on for seconds: one the ring keeps busy (the broker
   * sends it little but heartbeats, which rabbitmq-c reads away below), or
   * one stopped at the backlog bound (it polls the loop's wake only). So
   * look now too: a poll(2) per pass. */
  struct pollfd sock = {.fd = amqp_get_sockfd(b->conn), .events = POLLIN};
  if (amqp_data_in_buffer(b->conn) || poll(&sock, 1, 0) > 0) b->last_rx_ms = gw_bridge__now_ms();
  unsigned ack_every = b->prefetch > 1 ? (unsigned)b->prefetch / 2 : 1;
  if (gw_bridge__can_read(b)) b->paused = 0;
  /* At most 4096 per wake so commands (new connections) are not starved
   * by a flood of events. */
  for (int i = 0; i < 4096 && gw_bridge__can_read(b); i++) {
    amqp_envelope_t env;
    struct timeval zero = {0, 0};
    amqp_maybe_release_buffers(b->conn);
    amqp_rpc_reply_t r = amqp_consume_message(b->conn, &env, &zero, 0);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
      if (b->hist && gw_bridge__is_hist_tag(&env.consumer_tag)) {
        rc = gw_bridge__hist_delivery(b, &env, &batch);
        if (rc == 0 && b->ack_n >= ack_every) rc = gw_bridge__ack_flush(b);
      } else {
        gw_bridge__deliver(b, &env, &batch);
      }
      amqp_destroy_envelope(&env);
      if (rc != 0) break;
      if (batch.bytes > 1u << 20) gw_bridge__post(b, &batch);
      continue;
    }
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        r.library_error == AMQP_STATUS_TIMEOUT)
      break;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        r.library_error == AMQP_STATUS_UNEXPECTED_STATE &&
        gw_bridge__other_frame(b, &batch) == 0)
      continue;
    rc = -1;
    break;
  }
  if (rc == 0 && b->on_ring) rc = gw_bridge__ring_read(b, &batch);
  else if (rc == 0) rc = gw_bridge__ring_enter(b, &batch);
  if (b->ring_puts) { /* after the puts of the whole pass: one wake-up */
    b->ring_puts = 0;
    gw_ring_wake(&b->ring);
  }
  if (rc == 0 && gw_bridge__ack_due(b) == 0) rc = gw_bridge__ack_flush(b);
  /* A resume that heard nothing: we wait at a future offset of a stream
   * recreated shorter (the broker says nothing of it). */
  if (rc == 0 && b->hist && gw_stream_overdue(&b->st, gw_bridge__now_ms()))
    rc = gw_bridge__hist_restart(b, "resume timeout", &batch);
  if (rc == 0 && b->hist) rc = gw_bridge__hist_watch(b, &batch);
  gw_bridge__post(b, &batch);
  gw_bridge__note_pause(b);
  return rc;
}

/* Waits for the socket, the loop, or half a heartbeat. Above the backlog
 * bound only the loop's wake counts: frames rabbitmq-c has already read
 * stay where they are until the loop has drained (waking for them would
 * spin this thread on a core until then). */
static void gw_bridge__wait(gw_bridge *b) {
  int readable = gw_bridge__can_read(b);
  if (readable && (amqp_frames_enqueued(b->conn) || amqp_data_in_buffer(b->conn)))
    return;
  /* A reader on the ring asks the writer for a wake-up, unless there is
   * something to read already. */
  if (readable && b->on_ring && gw_ring_arm(&b->ring)) return;
  struct pollfd p[3] = {{.fd = b->wake_fd, .events = POLLIN},
                        {.fd = amqp_get_sockfd(b->conn), .events = POLLIN},
                        {.fd = b->on_ring ? gw_ring_fd(&b->ring) : -1, .events = POLLIN}};
  int n = readable ? 3 : 1;
  int timeout = b->heartbeat_s > 0 ? b->heartbeat_s * 500 : 1000;
  if (b->st.phase == GW_STREAM_RESUME) { /* wake for its deadline */
    uint64_t now = gw_bridge__now_ms();
    int left = b->st.deadline_ms > now ? (int)(b->st.deadline_ms - now) : 0;
    if (left < timeout) timeout = left;
  }
  uint64_t watch = b->hist ? gw_stream_watch_at(&b->st, (uint64_t)b->check_interval_ms) : 0;
  if (watch) { /* the stream's watch: a probe or a stall is due then */
    uint64_t now = gw_bridge__now_ms();
    int left = watch > now ? (int)(watch - now < 3600000 ? watch - now : 3600000) : 0;
    if (left < timeout) timeout = left;
  }
  int ack = gw_bridge__ack_due(b);
  if (ack >= 0 && ack < timeout) timeout = ack; /* held acks go out in time */
  if (atomic_load(&b->bind_ops)) { /* binds queued: wake when they may run */
    uint64_t now = gw_bridge__now_ms();
    int rest = b->bind_after_ms > now ? (int)(b->bind_after_ms - now) : 0;
    if (rest < timeout) timeout = rest;
  }
  if (poll(p, (nfds_t)n, timeout) > 0) {
    if (p[0].revents & POLLIN) gw_bridge__drain_wake(b);
    if (n == 3 && p[1].revents) b->last_rx_ms = gw_bridge__now_ms();
    if (n == 3 && (p[2].revents & POLLIN)) gw_ring_drain(&b->ring);
  }
}

/* Sends our heartbeat when we have been quiet for half an interval, and
 * declares the broker dead after two intervals without a byte from it.
 * Returns -1 when it is. */
static int gw_bridge__heartbeat(gw_bridge *b) {
  if (b->heartbeat_s <= 0) return 0;
  uint64_t now = gw_bridge__now_ms(), interval = (uint64_t)b->heartbeat_s * 1000;
  if (now - b->last_rx_ms > 2 * interval) return -1;
  if (now - b->last_tx_ms >= interval / 2) {
    amqp_frame_t hb = {.frame_type = AMQP_FRAME_HEARTBEAT, .channel = 0};
    if (amqp_send_frame(b->conn, &hb) != AMQP_STATUS_OK) return -1;
    b->last_tx_ms = now;
  }
  return 0;
}

static void *gw_bridge__thread(void *arg) {
  gw_bridge *b = arg;
  while (!gw_bridge__stopping(b)) {
    if (!b->conn) {
      if (gw_bridge__connect(b) != 0) {
        gw_bridge__drop_cmds(b); /* what piled up while down */
        continue;
      }
    }
    if (gw_bridge__run_cmds(b) != 0) {
      gw_bridge__lost(b, "publish failed");
      continue;
    }
    if (gw_bridge__read(b) != 0) {
      gw_bridge__lost(b, "connection lost");
      continue;
    }
    if (gw_bridge__heartbeat(b) != 0) {
      gw_bridge__lost(b, "heartbeat timeout");
      continue;
    }
    gw_bridge__wait(b);
  }
  /* Last words: the disconnects the loop queued while shutting down. */
  if (b->conn && gw_bridge__run_publishes(b) == 0) {
    mq_conn_close(b->conn);
  } else if (b->conn) {
    amqp_destroy_connection(b->conn);
  }
  b->conn = NULL;
  atomic_store(&b->up, 0);
  gw_bridge__ring_off(b, "stopping");
  return NULL;
}

/* ---- lifecycle ------------------------------------------------------------ */

static void gw_bridge__free(uv_handle_t *h) {
  gw_bridge *b = h->data;
  pthread_mutex_destroy(&b->mu);
  mq_url_list_free(&b->urls);
  free((char *)b->stream.name);
  free(b->scratch);
  if (b->ring.shm) gw_ring_close(&b->ring);
  free(b);
}

gw_bridge *gw_bridge_start(uv_loop_t *loop, const gw_bridge_config *cfg,
                               gw_bridge_cb cb, void *arg) {
  gw_bridge *b = calloc(1, sizeof(*b));
  if (!b) return NULL;
  backoff_init(&b->retry, 100, 5000, backoff_seed());
  char err[96];
  if (mq_url_list_parse(&b->urls, cfg->url, backoff_random(&b->retry), err,
                        sizeof err) != 0) {
    log_error("amqp_url_invalid", "reason=\"%s\"", err);
    free(b);
    return NULL;
  }
  b->heartbeat_s = cfg->heartbeat_s;
  b->limits.message_ttl_ms = cfg->queue_ttl_ms;
  b->limits.max_length = cfg->queue_max_length;
  b->limits.max_bytes = cfg->queue_max_bytes;
  b->limits.quorum = cfg->queue_quorum;
  b->max_backlog = cfg->max_backlog;
  b->batch = cfg->batch > 1 ? cfg->batch : 1;
  b->hist = cfg->history;
  b->stream = cfg->stream;
  b->stream.name = strdup(cfg->stream.name ? cfg->stream.name : MQ_HISTORY_STREAM);
  b->preload_ms = cfg->preload_ms;
  b->prefetch = cfg->prefetch > 0 && cfg->prefetch <= 65535 ? cfg->prefetch : 2000;
  b->resume_timeout_ms = cfg->resume_timeout_ms;
  b->check_interval_ms = cfg->check_interval_ms;
  gw_stream_init(&b->st);
  /* Without the ring (not passed, or not a ring) this process reads the
   * broker like a standalone one. */
  if (b->hist && cfg->ring_fd > 0 && gw_ring_attach(&b->ring, cfg->ring_fd, cfg->ring_slot) != 0)
    log_warn("hist_shared_unavailable", "fd=%d slot=%d", cfg->ring_fd, cfg->ring_slot);
  b->cb = cb;
  b->cb_arg = arg;
  b->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  pthread_mutex_init(&b->mu, NULL);
  if (b->wake_fd < 0 || !b->stream.name ||
      uv_async_init(loop, &b->async, gw_bridge__on_async) != 0) {
    if (b->wake_fd >= 0) close(b->wake_fd);
    if (b->ring.shm) gw_ring_close(&b->ring);
    pthread_mutex_destroy(&b->mu);
    mq_url_list_free(&b->urls);
    free((char *)b->stream.name);
    free(b);
    return NULL;
  }
  b->async.data = b;
  if (pthread_create(&b->thread, NULL, gw_bridge__thread, b) != 0) {
    /* The async handle is registered with the loop: it and b go in its
     * close callback. */
    close(b->wake_fd);
    uv_close((uv_handle_t *)&b->async, gw_bridge__free);
    return NULL;
  }
  return b;
}

void gw_bridge_stop(gw_bridge *b) {
  pthread_mutex_lock(&b->mu);
  b->stopping = 1;
  pthread_mutex_unlock(&b->mu);
  gw_bridge__wake_thread(b);
  pthread_join(b->thread, NULL);
  for (gw_bridge__cmd *c = gw_bridge__take_cmds(b), *n; c; c = n) {
    n = c->next;
    gw_bridge__cmd_free(c);
  }
  gw_bridge__drop_cmds(b); /* binds: the queue is gone with the connection */
  for (gw_bridge_event *e = b->ev_head, *n; e; e = n) {
    n = e->next;
    gw_bridge_event_free(e);
  }
  b->ev_head = b->ev_tail = NULL;
  close(b->wake_fd);
  mq_confirms_free(&b->confirms);
  uv_close((uv_handle_t *)&b->async, gw_bridge__free);
}
