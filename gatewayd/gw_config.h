/*
 * gw_config.h - gatewayd's settings: what they are and their defaults.
 *
 * Owns: the settings table (names, defaults, ranges, help). Must not: parse
 * anything itself (common/config.c does).
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stddef.h>

#include "config.h"
#include "mq_conn.h"

/* [history]: the event history (issue 14), a RabbitMQ stream every gateway
 * reads all its events from. */
typedef struct gw_history_settings {
  int enabled;        /* off: per-group bindings, as before the history */
  char *stream;       /* the stream queue's name */
  long max_age;       /* ms (whole seconds on the broker): x-max-age */
  long max_bytes;     /* x-max-length-bytes */
  long segment_bytes; /* x-stream-max-segment-size-bytes */
  long replicas;      /* x-initial-cluster-size; 0: not sent */
  long preload;       /* ms of history read at a first start before going live */
  long prefetch;      /* unacknowledged stream messages the broker sends ahead */
  long resume_timeout;/* ms a resume waits for its first message */
  long check_interval;/* ms of stream silence before a probe marker */
  long memory;        /* bytes of recent history each gateway process keeps */
  long shared;        /* bytes of the ring process 0 shares the stream through; 0: off */
  long shared_fd;     /* a child's: where its supervisor passed the ring (-1: none) */
} gw_history_settings;

/* [compression]: permessage-deflate (RFC 7692, issue 16). */
typedef struct gw_compression_settings {
  int enabled;   /* negotiate it with clients that offer it */
  long min_size; /* messages smaller than this go uncompressed */
  long level;    /* zlib level, 1 (fastest) to 9 */
} gw_compression_settings;

typedef struct gw_config {
  /* [gateway] */
  char *listen;            /* host:port */
  long processes;          /* event loops (processes) on the port; 0: one per core */
  long process_index;      /* -1: not a child of gw_supervisor; else which one */
  long process_watchdog;   /* ms a child may go without a ping before it is restarted */
  long backlog;
  long handshake_timeout;  /* ms: request head must arrive within it */
  long connect_timeout;    /* ms: worker must answer websocket.connect */
  long reply_timeout;      /* ms: worker must answer websocket.receive */
  long ping_interval;      /* ms of client silence before a ping */
  long ping_timeout;       /* ms of client silence before closing */
  long max_head;           /* bytes of request line + headers */
  long max_headers;        /* header count */
  long max_message;        /* bytes of one client message (1009 above) */
  long max_frame;          /* bytes of one client frame (1009 above) */
  long max_rate;           /* client messages per second (1008 above) */
  long max_per_client;     /* connections per client address; 0: no limit */
  long max_handshakes_per_client; /* of those, before a worker accepted; 0: no limit */
  char *allowed_origins;   /* comma-separated; "": any */
  char *forward_headers;   /* request headers workers get (comma-separated) */
  char *forward_cookies;   /* of a Cookie header, the cookies they get */
  long max_send_queue;     /* unsent bytes per connection (1008 above) */
  long max_pending;        /* client messages waiting for a worker */
  long max_connections;    /* open sockets (503 above) */
  long max_session;        /* bytes of session JSON a worker may set */
  long shutdown_timeout;   /* ms to drain on SIGTERM */
  long shutdown_spread;    /* ms over which clients are told to go away */
  int echo;                /* serve /websocket/echo */
  long echo_max_message;   /* its message and frame limit (conformance sizes) */
  long echo_max_send_queue;
  long echo_max_pending;
  long echo_max_rate;
  long max_partial_total;  /* bytes in partial client messages, per process (1013) */
  char *tls_cert;          /* PEM chain; "" for plain ws:// */
  char *tls_key;           /* PEM private key */
  char *trusted_proxies;   /* whose X-Forwarded-For is believed (gw_http_client_addr) */
  mq_settings amqp;        /* [amqp]; queue_type checked by main.c */
  long amqp_max_backlog;   /* [gateway] amqp_backlog: bytes waiting to be published */
  long amqp_batch;         /* channel messages one AMQP message may carry */
  long write_delay;        /* ms an event may wait to share a write (0: none) */
  long max_bind_backlog;   /* binds queued above which subscription changes are refused */
  long group_changes_rate; /* group joins + leaves per second per connection */
  long group_changes_burst;/* ... at once from a full allowance */
  long group_linger;       /* ms a group's binding outlives its last member */
  long max_lingering_groups; /* bindings kept that way, at most */
  long refresh_window;     /* ms after a credential's expiry for a refresh (then 4401) */
  char *slow_client;       /* "catch_up" or "close": wsgw.2 clients over max_send_queue */
  gw_history_settings history; /* [history] */
  gw_compression_settings compression; /* [compression] */
  /* [log] */
  char *log_level;
  char *metrics_listen;    /* [gateway] metrics_listen; "": off */
} gw_config;

extern const cfg_opt gw_config_opts[];
extern const size_t gw_config_n_opts;

#endif
