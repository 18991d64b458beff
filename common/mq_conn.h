/*
 * mq_conn.h - a blocking AMQP 0-9-1 connection (rabbitmq-c) and the topology
 * every party declares.
 *
 * Owns: connect + login + channel open, turning rabbitmq-c's three error
 * styles into one message, declaring the shared exchange and queues with
 * the same arguments everywhere (RabbitMQ refuses a redeclare whose arguments
 * differ), and the properties every JSON publish carries. Must not: be called from the gateway's event-loop thread (every
 * call here may block on the network).
 */
#ifndef MQ_CONN_H
#define MQ_CONN_H

#include <amqp.h>
#include <stddef.h>

#include "config.h"

#define MQ_CHANNEL 1

/* Most broker addresses amqp.url may list: a cluster has a handful of
 * nodes, and a fixed array keeps the list free of reallocation. */
#define MQ_URL_LIST_MAX 16

/* --help text of amqp.url and amqp.queue_type, one wording for every
 * program's settings table. */
#define MQ_URL_HELP                                                     \
  "broker URL amqp://user:pass@host:port/vhost; several (the nodes of " \
  "a cluster) separated by commas: start at a random one, move to"     \
  " the next on failure"
#define MQ_QUEUE_TYPE_HELP                                              \
  "classic or quorum: type of the websocket.* queues (quorum: "         \
  "replicated, survives a node; slower; every party must agree)"

/* The [amqp] settings as every program's settings struct holds them (the
 * member names are the keys). */
typedef struct mq_settings {
  char *url;             /* one address or several, comma-separated */
  long heartbeat;        /* ms; 0 disables */
  long queue_ttl;        /* ms: x-message-ttl of the websocket.* queues */
  long queue_max_length; /* x-max-length of the websocket.* queues */
  long queue_max_bytes;  /* x-max-length-bytes of them; 0: not sent */
  char *queue_type;      /* "classic" or "quorum" (mq_settings_check) */
} mq_settings;

/*
 * The [amqp] rows of a settings table, written once for every program, as
 * X(T, m, key, type, default, min, max, flags, help) per setting, where the
 * row stores into member m (an mq_settings) of struct T. One definition,
 * so gatewayd and workerd cannot drift apart: both declare the same queues
 * and RabbitMQ refuses a redeclare with other arguments. amqp.url is apart
 * because chanctl reads it and only accepts the others (MQ_CFG_QUEUE_ROWS
 * with an expander of its own).
 */
#define MQ_CFG_URL_ROW(X, T, m)                                             \
  X(T, m, url, CFG_STR, "amqp://guest:guest@127.0.0.1:5672/", 0, 0,         \
    CFG_SECRET, MQ_URL_HELP)
#define MQ_CFG_QUEUE_ROWS(X, T, m)                                          \
  X(T, m, heartbeat, CFG_MS, "10s", 0, 600000, 0,                           \
    "AMQP heartbeat interval (0 disables)")                                 \
  X(T, m, queue_ttl, CFG_MS, "60s", 1000, 86400000, 0,                      \
    "x-message-ttl of the websocket.* queues")                              \
  X(T, m, queue_max_length, CFG_INT, "100000", 1, 100000000, 0,             \
    "x-max-length of the websocket.* queues")                               \
  X(T, m, queue_max_bytes, CFG_BYTES, "128MiB", 0, 68719476736L, 0,          \
    "x-max-length-bytes of the websocket.* queues: message bodies, as "     \
    "encoded (0: not declared, as by builds before it existed; changing "   \
    "it means recreating the queues: OPERATIONS.md)")                       \
  X(T, m, queue_type, CFG_STR, "classic", 0, 0, 0, MQ_QUEUE_TYPE_HELP)

/* One cfg_opt initializer (with its trailing comma) into T.m.key. */
#define MQ_CFG_OPT(T, m, key, type, def, lo, hi, fl, help) \
  {"amqp", #key, type, def, lo, hi, fl, offsetof(T, m.key), help},

/* Every [amqp] row, into the mq_settings member m of struct T:
 *   static const cfg_opt opts[] = { ..., MQ_CFG_OPTS(my_conf, amqp) ... }; */
#define MQ_CFG_OPTS(T, m) \
  MQ_CFG_URL_ROW(MQ_CFG_OPT, T, m) MQ_CFG_QUEUE_ROWS(MQ_CFG_OPT, T, m)

typedef struct mq_queue_limits {
  long message_ttl_ms; /* x-message-ttl of the websocket.* queues */
  long max_length;     /* x-max-length, overflow reject-publish */
  long max_bytes;      /* x-max-length-bytes (bodies), 0: not declared */
  int quorum;          /* 1: x-queue-type quorum; 0: classic (no argument) */
} mq_queue_limits;

/*
 * amqp.url as a list of broker addresses ("URL[,URL...]") and where a
 * client stands in it. Pure: no I/O, so the rotation is unit-tested.
 * A caller connects to mq_url_list_current(); after a failed connect or a
 * lost connection it calls mq_url_list_next(), which says when every
 * address has failed once in a row (then the caller backs off, as it did
 * with one address); after a successful connect, mq_url_list_connected().
 */
typedef struct mq_url_list {
  char *urls[MQ_URL_LIST_MAX]; /* malloc'd; may hold passwords */
  size_t n;                    /* at least 1 after a successful parse */
  size_t cur;                  /* index of the address to try now */
  size_t failed;               /* failures in a row since the last success */
} mq_url_list;

/* Splits spec at commas (blanks around each item are ignored) and starts at
 * item seed % n, so that many clients spread over the nodes. A spec without
 * a comma is one address, taken as it is. 0, or -1 with a reason in err
 * (an empty item, more than MQ_URL_LIST_MAX, no memory); the reason never
 * quotes the spec, which may hold a password. */
int mq_url_list_parse(mq_url_list *l, const char *spec, unsigned seed,
                      char *err, size_t errlen);

const char *mq_url_list_current(const mq_url_list *l);

/* Moves to the next address (wrapping). Returns 1 when this completes a
 * round of failures (every address failed since the last success): time
 * for the caller's backoff. Else 0: try the next address at once. */
int mq_url_list_next(mq_url_list *l);

/* The current address worked: the next failure starts a new round. */
void mq_url_list_connected(mq_url_list *l);

/* Wipes (the URLs may hold passwords) and frees the addresses. */
void mq_url_list_free(mq_url_list *l);

/* "host:port" of url for logs (never user or password); "?" when the URL
 * does not parse. */
void mq_url_host_port(const char *url, char *out, size_t outlen);

/* amqp.queue_type: "classic" -> 0, "quorum" -> 1, else -1. */
int mq_queue_type_parse(const char *s);

/* Checks amqp.url and amqp.queue_type as the daemons' start-up does; 0 or
 * -1 with "amqp.KEY: reason" in err. */
int mq_settings_check(const char *url, const char *queue_type, char *err,
                      size_t errlen);

/* Connects, logs in, opens channel MQ_CHANNEL. heartbeat_s 0 disables AMQP
 * heartbeats. Returns NULL with a reason in err. TCP connect and login each
 * give up after 5 s. "amqp://host/" (empty vhost) means the vhost "/";
 * amqps:// is refused. */
amqp_connection_state_t mq_conn_open(const char *url, int heartbeat_s,
                                     char *err, size_t errlen);

/* mq_conn_open's flags. MQ_CONN_CANCEL_NOTIFY: the client announces the
 * capability consumer_cancel_notify, so the broker sends basic.cancel when
 * a queue it consumes is deleted (without it the consumer just goes quiet:
 * a gateway reading a deleted stream would wait forever). Only for clients
 * that handle basic.cancel. */
#define MQ_CONN_CANCEL_NOTIFY 1u
amqp_connection_state_t mq_conn_open_flags(const char *url, int heartbeat_s,
                                           unsigned flags, char *err,
                                           size_t errlen);

/* Closes channel and connection politely when possible, then frees. */
void mq_conn_close(amqp_connection_state_t c);

/* The properties of every JSON message the programs publish: content_type
 * application/json and delivery_mode 2 (persistent) or 1 (transient);
 * every other property unset. */
void mq_json_props(amqp_basic_properties_t *p, int persistent);

/* Header key of properties p as an integer: 1 with *out set, 0 when p has
 * no such header, -1 when its value is not an integer (or a u64 over
 * 10^9). Batches (x-wsgw-batch) and redelivery counts read theirs so. */
int mq_header_int(const amqp_basic_properties_t *p, const char *key, long *out);

/* 0 when r is a normal reply; else -1 with "what: reason" in err. */
int mq_rpc_check(amqp_rpc_reply_t r, const char *what, char *err,
                 size_t errlen);

/* Declares the durable groups exchange (topic). An exchange of that name
 * declared as direct by an older build is refused (406): err then says what
 * to do (OPERATIONS.md, "Upgrading to history"). */
int mq_declare_groups_exchange(amqp_connection_state_t c, char *err,
                               size_t errlen);

/* A connection for emitting events: open, the groups exchange known to
 * exist, channel MQ_CHANNEL in confirm mode. The exchange is checked with a
 * passive declare, which needs no permission, so an emitter user with
 * configure '^$' (deploy/rabbitmq/setup.sh) cannot delete or redeclare the
 * exchange every gateway binds to. Only when it does not exist yet (no
 * gateway or worker ever ran on this vhost) is it declared, on a fresh
 * connection since the refusal closed the channel; that needs configure on
 * websocket.groups. NULL with a reason in err. chan_emit and emitd. */
amqp_connection_state_t mq_conn_open_emitter(const char *url, int heartbeat_s,
                                             char *err, size_t errlen);

/* Declares the durable control exchange (topic) and binds it as a
 * destination of the groups exchange with MQ_CONTROL_BINDING_USER and
 * MQ_CONTROL_BINDING_GATEWAY, after mq_declare_groups_exchange. Needs
 * configure and write on the control exchange and read on the groups
 * exchange (deploy/rabbitmq/setup.sh gives them to the gateway); workers
 * and emitters do not call it. */
int mq_declare_control_exchange(amqp_connection_state_t c, char *err,
                                size_t errlen);

/* The event history's stream queue (issue 14) as the [history] settings
 * ask for it. */
typedef struct mq_stream_args {
  const char *name;   /* history.stream */
  long max_age_s;     /* x-max-age "<N>s" */
  long max_bytes;     /* x-max-length-bytes */
  long segment_bytes; /* x-stream-max-segment-size-bytes */
  long replicas;      /* x-initial-cluster-size; 0: not sent */
} mq_stream_args;

/* Declares the durable stream (x-queue-type stream and the arguments of a)
 * and binds it to the groups exchange with key "#", so it stores every
 * message sent there, in one order. A stream that exists with other
 * arguments (406) fails with what to do in err. */
int mq_declare_history_stream(amqp_connection_state_t c, const mq_stream_args *a,
                              char *err, size_t errlen);

/* The queue arguments the [amqp] settings ask for. */
mq_queue_limits mq_queue_limits_of(const mq_settings *s);

/* Declares the three durable websocket.* queues with lim: x-message-ttl,
 * x-max-length and (when lim->max_bytes) x-max-length-bytes as signed
 * 64-bit integers (AMQP 'l'), x-overflow
 * "reject-publish" as a long string, and x-queue-type "quorum" when
 * lim->quorum (classic queues get no x-queue-type, as before the setting
 * existed, so existing queues still redeclare). A queue that exists with
 * other arguments (406) fails with what to do in err. */
int mq_declare_channel_queues(amqp_connection_state_t c,
                              const mq_queue_limits *lim, char *err,
                              size_t errlen);

#endif
