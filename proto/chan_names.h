/*
 * chan_names.h - the names every party on the broker agrees on.
 *
 * Owns: exchange and queue names, the reply-channel prefix, size limits that
 * are part of the wire contract. Must not: hold anything a deployment would
 * want to change (those live in config).
 */
#ifndef CHAN_NAMES_H
#define CHAN_NAMES_H

#include "mq_names.h"

/* The exchange and the work queues (see mq_names.h: common/mq_conn.c
 * declares them, and common/ does not include proto/). */
#define CHAN_GROUPS_EXCHANGE MQ_GROUPS_EXCHANGE
#define CHAN_QUEUE_CONNECT MQ_QUEUE_CONNECT
#define CHAN_QUEUE_RECEIVE MQ_QUEUE_RECEIVE
#define CHAN_QUEUE_DISCONNECT MQ_QUEUE_DISCONNECT

/* Durable queue of poison messages: channel messages a worker received more
 * than [worker] max_deliveries times without acking (it crashed on them).
 * Declared by workers; nobody consumes it: operators inspect it. */
#define CHAN_QUEUE_DEAD "websocket.dead"

/* Reply channel of one connection: "websocket.send.<gateway queue>!<conn id>".
 * The worker publishes the reply to the default exchange with routing key =
 * <gateway queue>; the gateway dispatches on <conn id>. */
#define CHAN_REPLY_PREFIX "websocket.send."

/* AMQP short strings (queue names, routing keys) are at most 255 bytes. */
#define CHAN_QUEUE_NAME_MAX 255

/* Group names: 1..CHAN_GROUP_NAME_MAX bytes of [A-Za-z0-9_.:-]. */
#define CHAN_GROUP_NAME_MAX 128

/* Caps of the channel JSON (channel messages and replies): encoders refuse
 * to write more, decoders refuse to read more. */
#define CHAN_SESSION_MAX 4096 /* bytes of the session object's compact JSON */
#define CHAN_GROUPS_MAX 1000  /* entries of a "groups" list */
#define CHAN_HEADERS_MAX 100  /* entries of a connect message's "headers" */

#endif
