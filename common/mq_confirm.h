/*
 * mq_confirm.h - publisher confirms: which publishes on a channel in
 * confirm mode (confirm.select) the broker has not answered yet.
 *
 * RabbitMQ numbers the publishes of a confirm-mode channel 1, 2, 3, ... and
 * answers each with basic.ack (it has the message: routed to every bound
 * queue, or to none when nothing is bound) or basic.nack (it refused it: a
 * full queue with x-overflow reject-publish, an internal error), one tag at
 * a time or `multiple` (every tag up to this one). Until the answer, the
 * message may or may not have arrived: a connection lost then leaves it
 * unknown, which the owner must treat as lost.
 *
 * Owns: the ring of unanswered publishes (tag and a caller's cookie, 24
 * bytes each) of one channel, and reading ack/nack frames into it. Must
 * not: do I/O (the caller reads frames and sends publishes), or decide what
 * a refusal means (the caller's callback does). Used by gatewayd's AMQP
 * thread and by chan_emit, so both count the same way.
 */
#ifndef MQ_CONFIRM_H
#define MQ_CONFIRM_H

#include <amqp.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mq_confirm__entry {
  uint64_t tag;
  uint64_t cookie; /* the caller's: whom to tell, a line number, ... */
  int done;        /* answered out of order; dropped when it reaches the front */
} mq_confirm__entry;

typedef struct mq_confirms {
  mq_confirm__entry *ring;
  size_t cap, head, len; /* len counts answered ones not yet at the front */
  size_t unanswered; /* entries (cookies) not answered yet */
  uint64_t next_tag; /* the broker's tag of the next publish */
} mq_confirms;

/* Called once for each publish the broker refused (or that was lost). */
typedef void (*mq_confirm_cb)(uint64_t cookie, void *arg);

/* An empty ring for a channel that has just entered confirm mode. */
void mq_confirms_init(mq_confirms *q);

/* Records the publish about to be sent (its tag is next_tag). -1 when out
 * of memory: the caller must not send it, since its answer could not be
 * matched. */
int mq_confirms_push(mq_confirms *q, uint64_t cookie);

/* Room for n more entries, so that the pushes of a batch cannot fail
 * halfway. -1 when out of memory. */
int mq_confirms_reserve(mq_confirms *q, size_t n);

/* One more cookie under the publish pushed last (a batch: one AMQP message
 * carrying several parties' messages). Its answer settles them together:
 * a nack calls refused once per cookie. -1 when out of memory (the caller
 * must not send the publish). Asserts a publish was pushed. */
int mq_confirms_push_more(mq_confirms *q, uint64_t cookie);

/* Publishes sent and not answered yet (O(1)). */
size_t mq_confirms_pending(const mq_confirms *q);

/* Applies frame f when it is a basic.ack or basic.nack: calls refused for
 * each publish a nack settles. Returns 1 when f was a confirm, else 0 (the
 * caller handles the frame). */
int mq_confirms_apply(mq_confirms *q, const amqp_frame_t *f,
                      mq_confirm_cb refused, void *arg);

/* The channel is gone: every unanswered publish is lost (refused is called
 * for each, oldest first), and the ring starts again for a new channel. */
void mq_confirms_fail_all(mq_confirms *q, mq_confirm_cb refused, void *arg);

void mq_confirms_free(mq_confirms *q);

/* channel.close, connection.close or basic.cancel from the broker: the
 * channel (or the consumer) is gone, whatever else the frame says. */
int mq_frame_ends_channel(const amqp_frame_t *f);

/* The same test, with the reason for the log: 1 when f ends the channel,
 * with "WHAT: broker closed the channel: 404 NOT_FOUND - ..." (or the
 * connection, or "WHAT: consumer cancelled by the broker") in err; else 0,
 * err untouched. Every party handles an unexpected frame this way: a
 * closing one means reconnect, any other is ignored. */
int mq_frame_close_reason(const amqp_frame_t *f, const char *what, char *err,
                          size_t errlen);

#endif
