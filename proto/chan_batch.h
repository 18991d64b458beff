/*
 * chan_batch.h - several channel messages, or several replies, carried in
 * one AMQP message: a batch.
 *
 * A reconnect storm is thousands of connects and subscriptions at once;
 * the broker's work is per AMQP message (route, enqueue, deliver, ack,
 * confirm), not per byte, so a gateway puts the messages of one pass to
 * one queue in one AMQP message, and a worker answers a batch's messages
 * in one reply message. The mission's shape stays: each item is the
 * message (or the reply) it would have been alone.
 *
 * Wire form (docs/PROTOCOL.md, "Batches"): header x-wsgw-batch = the
 * number of items (an integer, 2..CHAN_BATCH_MAX), content type
 * application/x-ndjson, and a body of the items, each one JSON text
 * followed by one '\n'. JSON texts as our encoders write them hold no raw
 * newline (a string escapes it); an item that does is sent alone.
 *
 * Owns: that form, both ways: the header, splitting a body (checked whole
 * before any item is used, so a bad batch is refused, not half handled),
 * whether an item may join. Must not: know what the items mean (chan_msg,
 * chan_reply do), or do I/O.
 */
#ifndef CHAN_BATCH_H
#define CHAN_BATCH_H

#include <amqp.h>
#include <stddef.h>

#define CHAN_BATCH_HEADER "x-wsgw-batch"
#define CHAN_BATCH_CONTENT_TYPE "application/x-ndjson"
/* Items one batch may hold: a larger count is refused (the reader's work
 * per AMQP message stays bounded; the sender's bound is its own, lower). */
#define CHAN_BATCH_MAX 1024

/* The item count of a message with properties p: 0 when it is not a batch
 * (no header: a single message, as before batches), 2..CHAN_BATCH_MAX, or
 * -1 when the header is there but is not such a number. */
int chan_batch_count(const amqp_basic_properties_t *p);

/* 0 when body (len bytes) is exactly count items, each non-empty and ended
 * by '\n'; else -1 with the reason in err. */
int chan_batch_check(const void *body, size_t len, int count, char *err,
                     size_t errlen);

/* Walks a body chan_batch_check accepted: *pos starts at 0; each call gives
 * the next item (without its '\n') and returns 1, then 0 at the end. */
int chan_batch_next(const void *body, size_t len, size_t *pos,
                    const char **item, size_t *item_len);

/* 1 when an item of len bytes may join a batch (holds no '\n'). */
int chan_batch_item_ok(const void *item, size_t len);

/* The properties of a batch of n items: transient, the content type and the
 * header; *entry is the header's storage and must live as long as *p. */
void chan_batch_props(amqp_basic_properties_t *p, amqp_table_entry_t *entry,
                      int n);

#endif
