/*
 * gw_relay.h - a connection's conversation with the workers, without a
 * socket.
 *
 * Owns: building and publishing websocket.connect/.receive/.disconnect, the
 * rule "one message per connection with a worker at a time" (later client
 * messages wait in a bounded queue), the reply deadline of the message in
 * flight, the per-connection message rate, the connection's memberships and
 * session, the per-connection allowance of group changes (a token bucket:
 * while it is spent the relay answers client messages itself), and applying
 * a worker's reply: groups, session, accept, texts, bytes, close.
 *
 * Calls go one way. The caller (gw_conn) lends each call a gw_relay_io: a
 * sink for what the conversation does to the connection (publish, send a
 * text, close, refuse, accept) and the shared tables it uses. The relay
 * never sees the socket or the connection's state beyond "does it take
 * messages" (sink->open). A unit test drives it with a fake io.
 * Must not: parse frames, write to the socket, or change the connection's
 * state itself (it asks through the sink).
 */
#ifndef GW_RELAY_H
#define GW_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "chan_msg.h"
#include "chan_reply.h"
#include "gw_expiry.h"
#include "gw_group.h"
#include "gw_hist.h"
#include "gw_timeq.h"

typedef struct gw_stats gw_stats;

typedef struct gw_relay_sink {
  /* Hands an encoded channel message (json, malloc'd: taken in every case)
   * to the broker for queue. answer: 1 when a refusal must come back to
   * this connection (gw_relay_refused). 0, or -1 (broker down, backlog). */
  int (*publish)(void *arg, const char *queue, char *json, size_t len, int answer);
  /* Queues a text (opcode 1) or binary (2) message to the client. */
  void (*send)(void *arg, int opcode, const char *data, size_t len);
  /* Closes the websocket with code (or answers 503 before the upgrade). */
  void (*close)(void *arg, uint16_t code, const char *reason);
  /* Answers the upgrade request with an HTTP error (before the upgrade). */
  void (*refuse)(void *arg, int status);
  /* The worker accepted: the 101. 0, or -1 when it cannot be sent. */
  int (*accept)(void *arg);
  /* 1 while the connection takes messages (upgraded, not closing). */
  int (*open)(void *arg);
  /* Catch-up (wsgw.2): queues a message of the history (takes a new
   * reference). 0, or -1 when the connection's queue has no room for it
   * now (not queued; the caller pumps again once it drained). */
  int (*push)(void *arg, gw_buf *frame);
} gw_relay_sink;

/* What one call lends the relay; on the caller's stack. */
typedef struct gw_relay_io {
  const gw_relay_sink *sink;
  void *arg;                 /* the connection, for the sink and as member */
  uint64_t id;               /* the connection's, for logs */
  const char *reply_channel; /* this connection's; NULL while the broker is down */
  gw_group_table *groups;
  gw_timeq *replies;         /* deadline queue of messages with a worker */
  gw_stats *stats;
  uint64_t now_ms;           /* loop time */
  long max_rate, max_pending, max_session;
  long changes_rate;         /* group joins + leaves per second, on average */
  long changes_burst;        /* ... and at once, from a full allowance */
  int binds_busy;            /* 1: too many binds queued: refuse changes */
  gw_expiry *expiries;       /* when connections' access ends */
  uint64_t wall_ms;          /* wall clock (Unix ms), for a reply's "expires" */
  uint64_t refresh_window_ms; /* after "expires", before the close (4401) */
  gw_expiry *rechecks;       /* when connections' application grants are
                                re-checked (a reply's "recheck"); NULL: never */
  gw_hist *hist;             /* the history (wsgw.2 positions); NULL: off */
  gw_deflate *deflate;       /* catch-up compressed with it (gw_hist_pump); NULL: plain */
} gw_relay_io;

typedef struct gw_relay__pending gw_relay__pending;

typedef struct gw_relay {
  gw_timeq_node rq;        /* in io->replies while a receive is in flight */
  uint64_t next_order;
  uint64_t inflight_order;
  uint64_t sent_us;        /* when the message in flight was published */
  gw_relay__pending *pend_head, *pend_tail;
  char *session;           /* JSON object text set by a worker, or NULL */
  gw_member **members;
  gw_member *user;         /* in the user's control key (wsgw!user.<uid>), or NULL */
  gw_hist_lag *lag;        /* wsgw.2: events owed from the history (the fanout
                              skips the connection while set), or NULL */
  const char *path;        /* the route, a static string */
  uint32_t rate_window;    /* second (loop time) the rate count is for */
  int32_t changes_milli;   /* group changes allowed now, x1000; < 0: owed */
  uint32_t changes_ms;     /* loop time (ms, wrapping) of the last refill */
  uint32_t exp_slot;       /* in io->expiries (index + 1), 0: no expiry */
  uint32_t recheck_slot;   /* in io->rechecks (index + 1), 0: none due */
  uint16_t rate_count;     /* client messages in that second (saturates) */
  uint16_t n_members;
  uint16_t n_pending;
  uint8_t connect_sent : 1;    /* a websocket.disconnect is owed */
  uint8_t inflight : 1;        /* a message is with a worker */
  uint8_t recheck_inflight : 1; /* ... and it is a re-check */
  uint8_t recheck_due : 1;     /* a re-check waits for the one in flight */
  uint8_t v2 : 1;              /* the client chose wsgw.2 (positions) */
} gw_relay;

typedef enum {
  GW_RELAY_OK = 0,
  GW_RELAY_ACCEPTED /* the worker accepted and the 101 is queued: the
                       caller starts reading the websocket now */
} gw_relay_result;

/* What the relay answers itself, instead of a worker, to a client message
 * while the connection's group changes are over its allowance, or while
 * the gateway has too many binds queued (docs/PROTOCOL.md). */
#define GW_RELAY_CHANGES_ERROR \
  "{\"error\": \"too many subscription changes, try again later\"}"
#define GW_RELAY_BUSY_ERROR "{\"error\": \"server busy, try again later\"}"

/* Where the access of a connection whose "expires" passed ends: its
 * refresh window is over (gw_conn's tick closes it with 4401). */
#define GW_RELAY_EXPIRED_REASON "credential expired"

/* The connection's "recheck" time came (gw_conn's tick, after taking the
 * slot out of io->rechecks): a websocket.receive with "recheck": true goes
 * to a worker now, or as soon as the message in flight is answered (ahead
 * of queued client messages: its reply is a whole membership, so any
 * order is consistent). It is not counted against the client's message
 * rate, pending limit or group-change allowance; one that cannot be
 * published or times out tells the client nothing and is tried again
 * 30 s later. */
void gw_relay_recheck(gw_relay *r, gw_relay_io *io);

/* The request head is valid: publish websocket.connect (m carries the
 * addresses, headers and query; the relay fills in the rest). 0: the caller
 * waits for the worker without reading; -1: could not publish (503). */
int gw_relay_connect(gw_relay *r, gw_relay_io *io, const char *path, chan_msg *m);

/* A complete client message. */
void gw_relay_client_message(gw_relay *r, gw_relay_io *io, int binary,
                             const uint8_t *msg, size_t len);

/* The worker's reply to the message in flight (others are dropped).
 * connecting: the connection waits for its accept. */
gw_relay_result gw_relay_apply_reply(gw_relay *r, gw_relay_io *io,
                                     const chan_reply *rep, int connecting);

/* The broker refused or lost the message in flight: 503 before the
 * upgrade, close 1013 after. */
void gw_relay_refused(gw_relay *r, gw_relay_io *io, int connecting);

/* No reply within reply_timeout: the client gets an error text and the
 * next queued message goes out. */
void gw_relay_timeout(gw_relay *r, gw_relay_io *io);

/* The connection ends: websocket.disconnect with the close code (when a
 * connect was sent), every group left, the deadline dropped. */
void gw_relay_end(gw_relay *r, gw_relay_io *io, int code);

/* wsgw.2: a live event did not fit the connection's send queue: from now
 * on it is owed every event after `given` (the offset of the last message
 * it was given: gw_hist_prev_offset) from the history (gw_relay_pump), and
 * the fanout skips it. -1: no memory. */
int gw_relay_lag_start(gw_relay *r, uint64_t given);

/* wsgw.2: queues owed history through sink->push while it has room. Once
 * caught up the connection is live again. When part of what it was owed
 * left the history, it gets a notice ("expired" for each group, with the
 * positions it is served from now) and goes on with what is left. Called
 * after a reply that recovered groups and whenever the connection's queue
 * drained. Reads only io's sink, arg, id, stats and hist (the caller on the
 * write path fills no more). */
void gw_relay_pump(gw_relay *r, gw_relay_io *io);

/* wsgw.2: the history was lost (status GW_HIST_EXPIRED: a gap past the
 * retention) or replaced (GW_HIST_UNKNOWN: recreated): a notice naming
 * every group, with their positions in what the gateway holds now; what
 * was owed is dropped. */
void gw_relay_history_lost(gw_relay *r, gw_relay_io *io, gw_hist_status st);

/* Releases what the relay holds (the connection's close callback). */
void gw_relay_free(gw_relay *r);

#endif
