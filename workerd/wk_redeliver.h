/*
 * wk_redeliver.h - poison messages: count deliveries of the websocket.*
 * queues and move a message that keeps coming back to websocket.dead.
 *
 * Classic queues do not count deliveries; they only flag a redelivery. So
 * the count travels in the message: a worker that receives a redelivered
 * message does not handle it, but publishes a copy to the tail of the same
 * queue with header x-wsgw-deliveries = n + 1 and acks the original; the
 * copy arrives as a fresh delivery and is handled. When n + 1 would pass
 * max_deliveries the copy goes to websocket.dead instead. A worker that
 * crashes on a message therefore handles it at most max_deliveries times.
 * (docs/PROTOCOL.md "Dead letters" has the operator's view.)
 *
 * The copies go out on a second, lazily opened connection in confirm mode,
 * so that the original is acked only once the broker has taken the copy:
 * a crash in between leaves two copies, which is harmless (the gateway
 * drops the second reply by its order), never none.
 *
 * A dead letter is kept for people to read, so a websocket.connect copy
 * loses its credentials on the way (chan_msg_redact_connect: cookie and
 * authorization values, query-string values). Redacting decodes the
 * message, which could crash a worker again if decoding were what crashed
 * it; the decoder is fuzzed (fuzz_channel_msg), handling is the usual
 * culprit.
 *
 * Owns: the decision (a pure function, unit-tested), the header, the
 * dead-letter queue's declaration and the side connection, the counters.
 * Must not: handle a message or ack anything (wk_consumer does).
 */
#ifndef WK_REDELIVER_H
#define WK_REDELIVER_H

#include <amqp.h>
#include <stdatomic.h>
#include <stddef.h>

#define WK_REDELIVER_HEADER "x-wsgw-deliveries"
#define WK_REDELIVER_QUEUE_HEADER "x-wsgw-queue" /* on dead letters: origin */
/* Dead letters kept; the oldest are dropped beyond it (x-overflow
 * drop-head), so a poison storm cannot fill the broker's memory. */
#define WK_REDELIVER_DEAD_MAX 10000

typedef enum {
  WK_REDELIVER_HANDLE = 0, /* a fresh delivery: handle it */
  WK_REDELIVER_REQUEUE,    /* redelivered: copy with the next count, ack */
  WK_REDELIVER_DEAD        /* redelivered too often: to websocket.dead, ack */
} wk_redeliver_action;

/* What to do with a delivery whose redelivered flag is `redelivered` and
 * whose header says `count` (0: absent, i.e. the first copy). *deliveries is
 * set to this delivery's number (1 for the first). max_deliveries >= 1. */
wk_redeliver_action wk_redeliver_decide(int redelivered, long count,
                                        long max_deliveries,
                                        long *deliveries);

/* The x-wsgw-deliveries header of p: 0 when absent or not a positive
 * integer (a publisher's stray header must not kill a message). */
long wk_redeliver_count(const amqp_basic_properties_t *p);

/* Declares the durable websocket.dead queue, quorum when the work queues
 * are (quorum: 1), so that it has no single home node either. */
int wk_redeliver_declare(amqp_connection_state_t c, int quorum, char *err, size_t errlen);

/* Counters since start, for logs and metrics (read from any thread). */
typedef struct wk_redeliver_counters {
  atomic_uint_fast64_t redelivered;   /* redelivered deliveries seen */
  atomic_uint_fast64_t requeued;      /* copies put back with a count */
  atomic_uint_fast64_t dead_lettered; /* messages moved to websocket.dead */
} wk_redeliver_counters;
extern wk_redeliver_counters wk_redeliver_stats;

/* The side connection that publishes copies (confirmed). */
typedef struct wk_redeliver_pub {
  const char *url;
  amqp_connection_state_t c; /* NULL until first needed, or after an error */
} wk_redeliver_pub;

/*
 * Publishes body with props' content type and delivery mode and the
 * header count = deliveries to queue (through the default exchange), plus
 * x-wsgw-queue = origin when not NULL; waits for the broker's confirm.
 * Returns 0 (confirmed), 1 (refused: the queue is full) or -1 (no broker;
 * reason in err).
 */
int wk_redeliver_publish(wk_redeliver_pub *p, const char *queue,
                         const char *origin, const amqp_message_t *msg,
                         long deliveries, char *err, size_t errlen);

void wk_redeliver_close(wk_redeliver_pub *p);

#endif
