/*
 * chan_emit.h - the emit call for C backends: publish events to groups, and
 * know that the broker has them.
 *
 * Every publish is confirmed by the broker (publisher confirms). An event
 * counts as emitted only once the broker has answered basic.ack: then it
 * has been routed to every gateway subscribed at that moment, and a
 * connection closed afterwards cannot lose it. Until then it may be lost
 * (a broker busy with flow control or a stalled disk when the emitter
 * exits, a connection cut), and the call that waited for it says so.
 *
 * Two ways to emit:
 *   chan_emit()         one event, waits for its confirm: one round trip to
 *                       the broker per event (~0.1-0.3 ms on a LAN).
 *   chan_emit_nowait()  many events: returns once the event is written;
 *                       up to CHAN_EMIT_WINDOW may be unconfirmed at once.
 *                       chan_emit_flush() (or chan_emit_close()) then waits
 *                       for every confirm and reports whether all arrived.
 *
 * Owns: one blocking AMQP connection per emitter in confirm mode, checking
 * a group name and the event's UTF-8 before anything reaches the broker.
 * Must not: be used from an event loop that cannot block (it waits on the
 * network); be shared between threads (one emitter per thread); retry a
 * publish (an event sent twice is worse than an error the caller sees).
 */
#ifndef CHAN_EMIT_H
#define CHAN_EMIT_H

#include <stddef.h>

/* Most events chan_emit_nowait() lets wait for a confirm; the next one
 * waits for the broker first. Bounds the emitter's memory (24 bytes each)
 * and how much a lost connection can leave unknown. */
#define CHAN_EMIT_WINDOW 8192

/* Default for chan_emit_set_timeout(). */
#define CHAN_EMIT_TIMEOUT_MS 30000

typedef struct chan_emitter chan_emitter;

/* Connects to amqp_url ("amqp://user:pass@host:port/vhost", or several
 * separated by commas: each is tried once, from a random one), declares the
 * groups exchange and puts the channel in confirm mode. Returns NULL with a
 * reason in err on failure. */
chan_emitter *chan_emit_open(const char *amqp_url, char *err, size_t errlen);

/* How long a wait for the broker's confirms may take (default
 * CHAN_EMIT_TIMEOUT_MS); past it the events waited for count as failed.
 * Bounds waiting for answers, not a write into a broker that reads nothing
 * at all (that waits for TCP, as any blocking write does). */
void chan_emit_set_timeout(chan_emitter *e, int timeout_ms);

/* Publishes json (the exact text clients receive) to group and waits for
 * the broker's confirm. Returns 0 when the broker has it; -1 with a reason
 * in err (invalid group name, invalid UTF-8, refused by the broker, broker
 * error, no confirm within the timeout), also when an earlier
 * chan_emit_nowait() event failed and was not yet reported. */
int chan_emit(chan_emitter *e, const char *group, const char *json, size_t len,
              char *err, size_t errlen);

/* Publishes without waiting for this event's confirm. Returns 0 once the
 * event is written (its fate is reported by the next chan_emit_flush()),
 * -1 with a reason when it was not sent (invalid input, broker error). */
int chan_emit_nowait(chan_emitter *e, const char *group, const char *json,
                     size_t len, char *err, size_t errlen);

/* Waits for the confirm of every event published since the last flush.
 * Returns 0 when the broker took all of them; -1 with "N of M events not
 * confirmed by the broker: REASON" in err otherwise. Either way the count
 * starts again from zero. */
int chan_emit_flush(chan_emitter *e, char *err, size_t errlen);

/* How long a kick waits for a gateway's answer: none within it means no
 * gateway held what the kick named. */
#define CHAN_EMIT_KICK_WAIT_MS 2000
/* Where gateways answer a kick: RabbitMQ's direct reply-to, consumed on the
 * emitter's channel from its first kick on. */
#define CHAN_EMIT_REPLY_TO "amq.rabbitmq.reply-to"

/* Publishes a kick (docs/PROTOCOL.md, "Kicking connections") to the
 * control exchange (CHAN_CONTROL_EXCHANGE; a gateway declares it) with
 * the control key `key` (CHAN_USER_KEY_PREFIX<uid> or
 * CHAN_GATEWAY_KEY_PREFIX<queue>) with header CHAN_CONTROL_HEADER =
 * CHAN_CONTROL_KICK, body (NULL: empty) and reply_to CHAN_EMIT_REPLY_TO,
 * mandatory; waits for the broker's confirm, then for the first gateway's
 * answer (CHAN_KICK_ANSWER) up to CHAN_EMIT_KICK_WAIT_MS. 0 with *routed =
 * 1 when a gateway answered that it closed connections, 0 with *routed = 0
 * when none did (nobody to kick: no gateway held it, or none is running);
 * -1 with a reason (broker error, no confirm; the exchange missing: no
 * gateway of this version ever ran on the vhost and setup.sh did not
 * either). Flushes any earlier event first. */
int chan_emit_kick(chan_emitter *e, const char *key, const char *body, int *routed,
                   char *err, size_t errlen);

/* chan_emit_flush(), then closes the connection and frees e (NULL: 0).
 * Returns what the flush returned. err may be NULL. */
int chan_emit_close(chan_emitter *e, char *err, size_t errlen);

#endif
