/*
 * mq_names.h - the broker objects every party declares the same way: the
 * groups exchange, the control exchange and the three websocket.* work
 * queues.
 *
 * Owns: those names, because mq_conn.c declares them (mq_declare_*) and
 * common/ includes nothing from proto/, and for the same reason the two
 * control key prefixes the control exchange's bindings are made of. Must
 * not: hold other protocol names (reply channels, websocket.dead, size
 * caps): those are proto/chan_names.h, which gives these ones their CHAN_
 * names too.
 */
#ifndef MQ_NAMES_H
#define MQ_NAMES_H

/* Durable topic exchange (direct before the event history: issue 14);
 * routing key = group name; body = the exact text every member of the group
 * receives. Group names hold no '*' or '#', so a binding with a group's
 * name routes exactly as a direct binding did. */
#define MQ_GROUPS_EXCHANGE "websocket.groups"
#define MQ_GROUPS_EXCHANGE_TYPE "topic"

/* Durable topic exchange of the gateways' control keys (kicks): each
 * gateway binds its queue there, and only there, with the keys below, so a
 * kick published to it with mandatory comes back (basic.return) when no
 * gateway holds the key. On websocket.groups the history stream's '#'
 * takes every key, which would hide that. Bound as a destination of
 * websocket.groups for both prefixes, so a kick still published there
 * reaches the gateways too (once: they bind no control key on
 * websocket.groups). The prefixes are the protocol's (chan_names.h aliases
 * them); they live here because mq_conn.c binds the patterns. */
#define MQ_CONTROL_EXCHANGE "websocket.control"
#define MQ_CONTROL_EXCHANGE_TYPE "topic"
#define MQ_USER_KEY_PREFIX "wsgw!user."
#define MQ_GATEWAY_KEY_PREFIX "wsgw!gw."
/* A user key is two words (wsgw!user, the id); a gateway's holds its
 * queue name, which has dots (amq.gen-...): any number of words. */
#define MQ_CONTROL_BINDING_USER MQ_USER_KEY_PREFIX "*"
#define MQ_CONTROL_BINDING_GATEWAY MQ_GATEWAY_KEY_PREFIX "#"

/* The event history's stream (history.stream) when not configured, and the
 * binding key that gives it every message sent to the exchange. */
#define MQ_HISTORY_STREAM "websocket.history"
#define MQ_HISTORY_BINDING "#"

/* Durable queues shared by all workers (competing consumers). The gateway
 * publishes to them through the default exchange (routing key = queue name). */
#define MQ_QUEUE_CONNECT "websocket.connect"
#define MQ_QUEUE_RECEIVE "websocket.receive"
#define MQ_QUEUE_DISCONNECT "websocket.disconnect"

#endif
