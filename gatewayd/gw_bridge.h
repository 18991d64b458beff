/*
 * gw_bridge.h - the gateway's only link to RabbitMQ: one thread that owns
 * a blocking rabbitmq-c connection, fed and drained through two bounded
 * queues, so that the libuv loop never waits on the broker.
 *
 * Loop -> thread: publish a channel message, bind or unbind a group.
 * Thread -> loop: broker up (with the gateway's queue name) or down, a reply,
 * a group message already framed for websocket clients.
 *
 * With the event history on (history.enabled, issue 14) every event comes
 * from the history stream instead, as HIST events (one per stream message,
 * control keys and markers included, in stream order), and the gateway's
 * queue is bound to its control keys only. Per consumption of the stream
 * the loop sees: RESET (forget the history: a first start, a recreated
 * stream) before its first HIST; HIST... of the preload (fill the history,
 * deliver nothing); LIVE(o) once, just before the first HIST at or after o
 * (HIST with offset >= o are live: deliver them); then HIST, with a GAP
 * before a HIST whose predecessors were lost (retention passed while the
 * gateway was cut off). A resume that finds its place posts LIVE(L+1) and
 * then the HIST after L: nothing posted twice.
 *
 * Owns: the AMQP connection, its reconnects (capped exponential backoff with
 * jitter), the gateway's server-named exclusive queue. Must not: touch
 * connections, groups or anything else of the loop thread; the loop must not
 * touch the rabbitmq-c state.
 */
#ifndef GW_BRIDGE_H
#define GW_BRIDGE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "gw_buf.h"
#include "mq_conn.h"

typedef struct gw_bridge gw_bridge;

typedef enum {
  GW_BRIDGE_UP = 0,  /* data: the gateway's queue name */
  GW_BRIDGE_DOWN,    /* data: the reason */
  GW_BRIDGE_REPLY,   /* data/len: the reply body (JSON) */
  GW_BRIDGE_GROUP,   /* data: the group name; frame: the text frame */
  GW_BRIDGE_REFUSED, /* conn_id: a publish for it was refused or lost */
  GW_BRIDGE_KICK,    /* a kick: conn_id (one connection), or 0 and data: the
                        user's control key (wsgw!user.<uid>); with reply_len,
                        the kicker's reply_to follows data's NUL */
  /* history on only (see the top of this file) */
  GW_BRIDGE_HIST,       /* one stream message: offset, digest (chan_pos_digest),
                           data: its routing key; frame: the text frame, or
                           NULL for a control key (wsgw!...), a body that is
                           not UTF-8, or a kick sent to a group */
  GW_BRIDGE_HIST_RESET, /* forget all history; data: why ("first start",
                           "recreated", "resume timeout") */
  GW_BRIDGE_HIST_GAP,   /* offset: the first offset lost; the next HIST says
                           where it continues */
  GW_BRIDGE_HIST_LIVE   /* offset: HIST from this offset on are live */
} gw_bridge_kind;

typedef struct gw_bridge_event {
  struct gw_bridge_event *next;
  gw_bridge_kind kind;
  gw_buf *frame; /* GROUP only: one reference, the receiver's to drop */
  uint64_t conn_id; /* REFUSED, KICK */
  uint64_t offset;  /* HIST, HIST_GAP, HIST_LIVE: a stream offset */
  uint64_t digest;  /* HIST: chan_pos_digest of the message */
  size_t len;    /* bytes of data, without the NUL */
  size_t reply_len; /* KICK: bytes of the reply_to after data's NUL (0: none) */
  char data[];   /* NUL-terminated */
} gw_bridge_event;

/* Called on the loop thread with a batch of events, oldest first. The
 * callee frees each with gw_bridge_event_free(). */
typedef void (*gw_bridge_cb)(gw_bridge_event *events, void *arg);

typedef struct gw_bridge_config {
  const char *url;     /* one amqp:// URL, or several separated by commas */
  int heartbeat_s;
  long queue_ttl_ms;
  long queue_max_length;
  long queue_max_bytes; /* x-max-length-bytes; 0: not declared */
  int queue_quorum;    /* 1: the websocket.* queues are quorum queues */
  size_t max_backlog; /* bytes queued in each direction */
  int batch;          /* channel messages per AMQP message, at most (>= 1) */
  /* [history]; history 0: everything as before the history existed */
  int history;
  mq_stream_args stream;   /* declared and bound at every broker-up; name copied */
  long preload_ms;         /* a first start reads this much history */
  long prefetch;           /* basic.qos of the stream consumer (1..65535) */
  long resume_timeout_ms;  /* a resume waits this long for its first message */
  long check_interval_ms;  /* stream silence before a probe marker */
  /* history.shared (gw_ring.h): the ring passed by the supervisor, <= 0:
   * none; slot: this process's index (0 writes it, the others read it) */
  int ring_fd, ring_slot;
} gw_bridge_config;

/* The history consumer's counters (for metrics). */
typedef struct gw_bridge_hist_stats {
  unsigned long read;       /* stream messages read */
  unsigned long resumes;    /* consumptions started at the last posted offset */
  unsigned long gaps;       /* GAP events posted */
  unsigned long gap_lost;   /* messages those gaps lost */
  unsigned long resets;     /* RESET events posted (first start included) */
  unsigned long stalls;     /* consumptions found dead by the watch (gw_stream.h) */
  int shared;               /* 1: reading the host's ring now (gw_ring.h) */
  unsigned long shared_enters, shared_leaves; /* moves to and from the ring */
  uint64_t last_offset;     /* of the last HIST posted */
} gw_bridge_hist_stats;

/* Batches (chan_batch.h) the thread published and read (for metrics). */
typedef struct gw_bridge_batch_stats {
  unsigned long batches_out; /* batches of channel messages published */
  unsigned long batched_out; /* channel messages in them */
  unsigned long batches_in;  /* batches of replies read */
  unsigned long batched_in;  /* replies in them */
} gw_bridge_batch_stats;

/* Starts the thread (it connects by itself, and again after every loss).
 * cfg's strings are copied. NULL on failure. */
gw_bridge *gw_bridge_start(uv_loop_t *loop, const gw_bridge_config *cfg,
                               gw_bridge_cb cb, void *arg);

/* The end of a loop iteration: wakes the thread when publishes were
 * queued since the last call (they go out together, in batches). The
 * loop's check phase calls it, after gw_conn's flush, and its prepare phase
 * (what timers published), before it polls. */
void gw_bridge_flush(gw_bridge *b);

/* Queues body for the named websocket.* queue; takes ownership of body (a
 * malloc'd buffer) in every case. Returns -1 when the broker is down or the
 * outgoing backlog is full: the caller answers 503 or 1013. Publishes are
 * confirmed by the broker; when it refuses one (the queue is full:
 * x-overflow reject-publish) or the connection is lost before its confirm,
 * an GW_BRIDGE_REFUSED event names conn_id (0: nobody to tell). */
int gw_bridge_publish(gw_bridge *b, const char *queue, uint64_t conn_id,
                        char *body, size_t len);

/* Binds / unbinds the gateway's queue to a group. Never refused (dropping
 * one would put the broker out of step with the group table), but counted
 * in the outgoing backlog, so that publishes feel them, and run after
 * publishes, a few milliseconds of them per pass. The loop bounds them by
 * refusing subscription changes while gw_bridge_bind_backlog is high.
 * While the broker is down they are dropped, and the loop rebinds every
 * group it holds on the next GW_BRIDGE_UP. */
void gw_bridge_bind(gw_bridge *b, const char *group);
void gw_bridge_unbind(gw_bridge *b, const char *group);

/* Binds and unbinds queued, not yet run. */
size_t gw_bridge_bind_backlog(const gw_bridge *b);

/* Bytes queued toward the broker and toward the loop (for metrics). */
size_t gw_bridge_backlog_out(const gw_bridge *b);
size_t gw_bridge_backlog_in(const gw_bridge *b);

/* Times the thread stopped reading because the loop had a backlog's worth
 * of events still to take (for metrics: the loop is not keeping up). */
unsigned long gw_bridge_read_pauses(const gw_bridge *b);

/* 1 while connected with the queue declared and consumed (history on: and
 * LIVE posted). Publishes are refused while it is 0. */
int gw_bridge_is_up(const gw_bridge *b);

void gw_bridge_hist_stats_get(const gw_bridge *b, gw_bridge_hist_stats *out);
void gw_bridge_batch_stats_get(const gw_bridge *b, gw_bridge_batch_stats *out);

/* Publishes what is queued (within a few seconds at most), closes the
 * connection, joins the thread and frees everything. The loop must run no
 * more callbacks of this bridge after it returns. */
void gw_bridge_stop(gw_bridge *b);

void gw_bridge_event_free(gw_bridge_event *ev);

#endif
