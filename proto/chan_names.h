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
#define CHAN_CONTROL_EXCHANGE MQ_CONTROL_EXCHANGE
#define CHAN_QUEUE_CONNECT MQ_QUEUE_CONNECT
#define CHAN_QUEUE_RECEIVE MQ_QUEUE_RECEIVE
#define CHAN_QUEUE_DISCONNECT MQ_QUEUE_DISCONNECT
/* What every work queue's name starts with (batches go to these only). */
#define CHAN_QUEUE_PREFIX "websocket."

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

/* Control keys (issue 13): routing keys that start with "wsgw!" are the
 * gateways' own. Kicks go to CHAN_CONTROL_EXCHANGE, where gateways bind
 * them (mq_names.h says why not on the groups exchange); one sent to the
 * groups exchange still arrives, through its bindings to the control
 * exchange. '!' is outside the group-name alphabet, so no client
 * subscription and no event emitted with `chanctl emit` can ever name one. Gateways never deliver a message sent
 * to one; a message there carrying the header CHAN_CONTROL_HEADER =
 * CHAN_CONTROL_KICK is a kick:
 *   "wsgw!user.<uid>"  every gateway binds "wsgw!user.*" (one binding,
 *                      not one per user: issue 17): the gateway closes
 *                      its connections of user <uid> (4403) and, when the
 *                      kick has a reply_to and it closed any, answers
 *                      CHAN_KICK_ANSWER there
 *   "wsgw!gw.<queue>"  bound by the gateway whose queue that is: the body
 *                      is the reply channel "websocket.send.<queue>!<id>"
 *                      (or "<id>") of the one connection to close (4403) */
#define CHAN_CONTROL_PREFIX "wsgw!"
#define CHAN_USER_KEY_PREFIX MQ_USER_KEY_PREFIX
#define CHAN_GATEWAY_KEY_PREFIX MQ_GATEWAY_KEY_PREFIX
/* "wsgw!mark.<queue>": a gateway's marker in the event history (issue 14):
 * published by the gateway whose queue that is, right after it starts
 * reading the stream; bound by nobody but the stream, it marks "now" there. */
#define CHAN_MARK_KEY_PREFIX "wsgw!mark."
/* The reply_to a gateway answers a kick at: RabbitMQ's direct reply-to
 * (the broker rewrites "amq.rabbitmq.reply-to" into a name with this
 * prefix). Any other reply_to is ignored: a kicker may not make gateways
 * publish into a queue of its choosing (a work queue, say). */
#define CHAN_DIRECT_REPLY_PREFIX "amq.rabbitmq.reply-to."
/* A gateway's answer to a kick with a reply_to that closed connections:
 * {"kicked": N, "key": "<the control key>"} (N >= 1; printf format). */
#define CHAN_KICK_ANSWER "{\"kicked\": %u, \"key\": \"%s\"}"
#define CHAN_CONTROL_HEADER "x-wsgw-control"
#define CHAN_CONTROL_KICK "kick"

/* Close codes of access that ends (docs/PROTOCOL.md, "Close codes"). */
#define CHAN_CLOSE_EXPIRED 4401 /* credential expired, not refreshed: re-authenticate */
#define CHAN_CLOSE_REVOKED 4403 /* kicked: access revoked */

/* Caps of the channel JSON (channel messages and replies): encoders refuse
 * to write more, decoders refuse to read more. */
#define CHAN_SESSION_MAX 4096 /* bytes of the session object's compact JSON */
#define CHAN_GROUPS_MAX 1000  /* entries of a "groups" list */
#define CHAN_HEADERS_MAX 100  /* entries of a connect message's "headers" */

#endif
