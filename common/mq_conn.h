/*
 * mq_conn.h - a blocking AMQP 0-9-1 connection (rabbitmq-c) and the topology
 * every party declares.
 *
 * Owns: connect + login + channel open, turning rabbitmq-c's three error
 * styles into one message, and declaring the shared exchange and queues with
 * the same arguments everywhere (RabbitMQ refuses a redeclare whose arguments
 * differ). Must not: be called from the gateway's event-loop thread (every
 * call here may block on the network).
 */
#ifndef MQ_CONN_H
#define MQ_CONN_H

#include <amqp.h>
#include <stddef.h>

#define MQ_CHANNEL 1

typedef struct mq_queue_limits {
  long message_ttl_ms; /* x-message-ttl of the websocket.* queues */
  long max_length;     /* x-max-length, overflow reject-publish */
} mq_queue_limits;

/* Connects, logs in, opens channel MQ_CHANNEL. heartbeat_s 0 disables AMQP
 * heartbeats. Returns NULL with a reason in err. TCP connect and login each
 * give up after 5 s. "amqp://host/" (empty vhost) means the vhost "/";
 * amqps:// is refused. */
amqp_connection_state_t mq_conn_open(const char *url, int heartbeat_s,
                                     char *err, size_t errlen);

/* Closes channel and connection politely when possible, then frees. */
void mq_conn_close(amqp_connection_state_t c);

/* 0 when r is a normal reply; else -1 with "what: reason" in err. */
int mq_rpc_check(amqp_rpc_reply_t r, const char *what, char *err,
                 size_t errlen);

/* Declares the durable groups exchange (direct). */
int mq_declare_groups_exchange(amqp_connection_state_t c, char *err,
                               size_t errlen);

/* Declares the three durable websocket.* queues with lim: x-message-ttl and
 * x-max-length as signed 64-bit integers (AMQP 'l'), x-overflow
 * "reject-publish" as a long string. */
int mq_declare_channel_queues(amqp_connection_state_t c,
                              const mq_queue_limits *lim, char *err,
                              size_t errlen);

#endif
