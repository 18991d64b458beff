/*
 * gw_config.c - gatewayd's settings table. Defaults follow daphne where it
 * has an equivalent (ping 20 s, ping timeout 30 s); client messages are
 * bounded for what clients send (subscription requests, well under
 * 16 KiB), not daphne's 1 MiB: each costs up to 6x its size on the broker
 * (JSON escapes) and max_pending + 1 of them wait per connection.
 */
#include "gw_config.h"

#include "log.h"
#include "mq_conn.h"
#include "mq_names.h"

#define GW_OPT(sec, key, type, def, lo, hi, fl, field, help) \
  {sec, key, type, def, lo, hi, fl, offsetof(gw_config, field), help}

const cfg_opt gw_config_opts[] = {
    GW_OPT("gateway", "listen", CFG_STR, "127.0.0.1:8051", 0, 0, 0, listen,
           "address:port to accept websocket connections on"),
    GW_OPT("gateway", "processes", CFG_INT, "0", 0, 64, 0, processes,
           "gateway processes sharing the listen port (SO_REUSEPORT), each with its "
           "own loop, broker connection and clients; 0: one per core"),
    GW_OPT("gateway", "process_index", CFG_INT, "-1", -1, 63, 0, process_index,
           "set by gatewayd for the processes it starts (-1: a standalone process); "
           "not for config files"),
    GW_OPT("gateway", "process_watchdog", CFG_MS, "10s", 0, 600000, 0, process_watchdog,
           "a gateway process whose loop is stuck this long is killed and restarted "
           "(0: never)"),
    GW_OPT("gateway", "backlog", CFG_INT, "1024", 1, 65535, 0, backlog,
           "listen(2) backlog"),
    GW_OPT("gateway", "handshake_timeout", CFG_MS, "10s", 100, 3600000, 0,
           handshake_timeout, "time a client has to send its request head"),
    GW_OPT("gateway", "connect_timeout", CFG_MS, "5s", 100, 600000, 0,
           connect_timeout, "time a worker has to answer websocket.connect (then 503)"),
    GW_OPT("gateway", "reply_timeout", CFG_MS, "10s", 100, 600000, 0,
           reply_timeout, "time a worker has to answer a client message"),
    GW_OPT("gateway", "ping_interval", CFG_MS, "20s", 100, 86400000, 0,
           ping_interval, "client silence before the gateway pings"),
    GW_OPT("gateway", "ping_timeout", CFG_MS, "30s", 200, 86400000, 0,
           ping_timeout, "client silence before the gateway closes the connection"),
    GW_OPT("gateway", "max_head", CFG_BYTES, "8KiB", 512, 1048576, 0, max_head,
           "largest request line + headers (431 above)"),
    GW_OPT("gateway", "max_headers", CFG_INT, "64", 4, 100, 0, max_headers,
           "most request headers (431 above)"),
    GW_OPT("gateway", "max_message", CFG_BYTES, "16KiB", 64, 67108864, 0,
           max_message, "largest client message (close 1009 above); on the broker it "
           "costs up to 6x this (JSON escapes of control characters) plus the envelope"),
    GW_OPT("gateway", "max_frame", CFG_BYTES, "16KiB", 64, 67108864, 0, max_frame,
           "largest client frame payload (close 1009 above)"),
    GW_OPT("gateway", "max_partial_total", CFG_BYTES, "64MiB", 65536, 4294967296L, 0,
           max_partial_total, "bytes held in partially received client messages, all "
           "connections of a process together; a message that would pass it closes its "
           "connection with 1013 (try again later)"),
    GW_OPT("gateway", "max_rate", CFG_INT, "100", 1, 1000000, 0, max_rate,
           "client messages per second per connection, and pings per second, each with bursts up to as many (close 1008 above)"),
    GW_OPT("gateway", "max_per_client", CFG_INT, "1000", 0, 10000000, 0, max_per_client,
           "connections per client address and gateway process, handshakes included, 0 for "
           "no limit (503 above); the address is the X-Forwarded-For one behind trusted_proxies"),
    GW_OPT("gateway", "max_handshakes_per_client", CFG_INT, "64", 0, 10000000, 0,
           max_handshakes_per_client,
           "connections per client address and gateway process still in their handshake "
           "(head being read or a worker deciding), 0 for no limit (503 above)"),
    GW_OPT("gateway", "allowed_origins", CFG_STR, "", 0, 0, 0, allowed_origins,
           "comma-separated Origin values browsers may connect from; empty allows any (403 otherwise; workerd: tokens sent as cookies need one of these, or with none the Host's own)"),
    GW_OPT("gateway", "forward_headers", CFG_STR, "authorization,cookie,origin,host", 0, 0,
           0, forward_headers,
           "request headers passed to workers in websocket.connect (comma-separated); the "
           "others never reach the broker"),
    GW_OPT("gateway", "forward_cookies", CFG_STR, "token,csrftoken", 0, 0, 0,
           forward_cookies,
           "cookies of the Cookie header passed to workers (comma-separated, exact case); "
           "the application's other cookies never reach the broker"),
    GW_OPT("gateway", "max_send_queue", CFG_BYTES, "4MiB", 1024, 1073741824, 0,
           max_send_queue, "unsent bytes per connection (events, replies, pongs) before it is closed as slow (1008); above a quarter of it the connection is not read until under an eighth"),
    GW_OPT("gateway", "max_pending", CFG_INT, "4", 1, 10000, 0, max_pending,
           "client messages queued while one is with a worker (close 1008 above)"),
    GW_OPT("gateway", "max_connections", CFG_INT, "100000", 1, 10000000, 0,
           max_connections, "open connections (503 above)"),
    GW_OPT("gateway", "max_session", CFG_BYTES, "4KiB", 64, 1048576, 0,
           max_session, "largest session object a worker may store"),
    GW_OPT("gateway", "shutdown_timeout", CFG_MS, "5s", 0, 600000, 0,
           shutdown_timeout, "time to close clients and flush on SIGTERM"),
    GW_OPT("gateway", "shutdown_spread", CFG_MS, "2s", 0, 600000, 0,
           shutdown_spread, "window over which clients get close 1001 on SIGTERM, so they do not all reconnect at once"),
    GW_OPT("gateway", "echo", CFG_BOOL, "false", 0, 0, 0, echo,
           "serve /websocket/echo (for conformance tests; workers must enable it too)"),
    GW_OPT("gateway", "echo_max_message", CFG_BYTES, "0", 0, 67108864, 0,
           echo_max_message, "max_message and max_frame on /websocket/echo only "
           "(0: the same as the real route's; make run and the conformance tests set "
           "16MiB, for Autobahn's largest messages)"),
    GW_OPT("gateway", "echo_max_send_queue", CFG_BYTES, "0", 0, 1073741824, 0,
           echo_max_send_queue, "max_send_queue on /websocket/echo only (0: the same)"),
    GW_OPT("gateway", "echo_max_pending", CFG_INT, "0", 0, 10000, 0, echo_max_pending,
           "max_pending on /websocket/echo only (0: the same)"),
    GW_OPT("gateway", "echo_max_rate", CFG_INT, "0", 0, 1000000, 0, echo_max_rate,
           "max_rate on /websocket/echo only (0: the same)"),
    GW_OPT("gateway", "trusted_proxies", CFG_STR, "127.0.0.1,::1", 0, 0, 0, trusted_proxies,
           "proxies (addresses, CIDR blocks; comma-separated) whose X-Forwarded-For "
           "names the client"),
    GW_OPT("gateway", "tls_cert", CFG_STR, "", 0, 0, 0, tls_cert,
           "PEM certificate chain: serve wss:// directly (empty: plain ws://, e.g. behind nginx)"),
    GW_OPT("gateway", "tls_key", CFG_STR, "", 0, 0, 0, tls_key,
           "PEM private key for tls_cert"),
    MQ_CFG_OPTS(gw_config, amqp) /* [amqp], as every program has it */
    GW_OPT("gateway", "amqp_backlog", CFG_BYTES, "64MiB", 65536, 4294967296L, 0,
           amqp_max_backlog, "bytes waiting for the AMQP thread, each direction"),
    /* Trickling streams (issue 17): a write per event per client was most of
     * a trickle's cost. */
    GW_OPT("gateway", "write_delay", CFG_MS, "1ms", 0, 100, 0, write_delay,
           "events wait at most this long to be written with the events after them "
           "in one write per connection (0: each loop iteration writes at once); "
           "replies, pings and closes never wait"),
    /* Reconnect storms (issue 17): the broker's work is per AMQP message. */
    GW_OPT("gateway", "amqp_batch", CFG_INT, "64", 1, 1024, 0, amqp_batch,
           "channel messages to one queue that one AMQP message may carry when "
           "several wait (1: one each, as before; workers must know batches, "
           "i.e. be upgraded first, before this is above 1)"),
    /* Subscription churn (issue 12): each bind is a broker round trip on the
     * one AMQP thread. A page view of AWX changes a few groups. */
    GW_OPT("gateway", "max_bind_backlog", CFG_INT, "1000", 1, 10000000, 0,
           max_bind_backlog,
           "binds and unbinds waiting for the AMQP thread above which subscription "
           "requests are answered \"server busy, try again later\""),
    GW_OPT("gateway", "group_changes_rate", CFG_INT, "10", 1, 1000000, 0,
           group_changes_rate,
           "groups a connection may join or leave per second, on average; past its "
           "allowance its requests are answered \"too many subscription changes\""),
    GW_OPT("gateway", "group_changes_burst", CFG_INT, "200", 1, 1000000, 0,
           group_changes_burst,
           "groups a connection may join or leave at once (the allowance when full)"),
    GW_OPT("gateway", "group_linger", CFG_MS, "10s", 0, 3600000, 0, group_linger,
           "time a group stays bound after its last member left, so a re-join costs "
           "the broker nothing (0: unbind at once)"),
    GW_OPT("gateway", "max_lingering_groups", CFG_INT, "1000", 0, 10000000, 0,
           max_lingering_groups,
           "groups kept bound that way at most; over it the oldest is unbound"),
    /* Access that ends (issue 13). */
    GW_OPT("gateway", "refresh_window", CFG_MS, "60s", 0, 86400000, 0, refresh_window,
           "time after a connection's credential expired (its exp plus auth.leeway) in "
           "which the client may send {\"token\": ...} to extend it; then close 4401"),
    GW_OPT("gateway", "slow_client", CFG_STR, "catch_up", 0, 0, 0, slow_client,
           "a wsgw.2 client over max_send_queue: catch_up (its events stop being queued "
           "and resume from the history once its queue drained under an eighth) or "
           "close (1008, as for other clients)"),
    /* The event history (issue 14). Every gateway declares the stream with
     * these arguments, and RabbitMQ refuses a redeclare with others: every
     * gateway of a vhost must agree. */
    GW_OPT("history", "enabled", CFG_BOOL, "true", 0, 0, 0, history.enabled,
           "read every event from the history stream, so that a gateway cut off from the "
           "broker resumes where it stopped and wsgw.2 clients recover what they missed "
           "(false: per-group bindings, as before)"),
    GW_OPT("history", "stream", CFG_STR, MQ_HISTORY_STREAM, 0, 0, 0, history.stream,
           "the stream queue holding the history, bound to websocket.groups with '#'"),
    GW_OPT("history", "max_age", CFG_MS, "24h", 1000, 31536000000L, 0, history.max_age,
           "x-max-age of the stream (whole seconds): older segments are dropped"),
    GW_OPT("history", "max_bytes", CFG_BYTES, "1GiB", 65536, 1099511627776L, 0,
           history.max_bytes, "x-max-length-bytes of the stream: older segments are dropped"),
    GW_OPT("history", "segment_bytes", CFG_BYTES, "64MiB", 4096, 3221225472L, 0,
           history.segment_bytes,
           "x-stream-max-segment-size-bytes: retention drops whole segments"),
    GW_OPT("history", "replicas", CFG_INT, "0", 0, 64, 0, history.replicas,
           "nodes of a RabbitMQ cluster holding a copy of the stream, leader included "
           "(x-initial-cluster-size; 0: not sent, the broker's default); 3 of 3 nodes: "
           "the history survives the loss of one"),
    GW_OPT("history", "preload", CFG_MS, "600s", 0, 86400000, 0, history.preload,
           "history a starting gateway reads before taking clients, so that positions "
           "that old can be recovered at once"),
    GW_OPT("history", "prefetch", CFG_INT, "2000", 1, 65535, 0, history.prefetch,
           "stream messages the broker sends ahead of the gateway's acknowledgements"),
    GW_OPT("history", "resume_timeout", CFG_MS, "5s", 100, 600000, 0,
           history.resume_timeout,
           "time a reconnected gateway waits for the message it stopped at before "
           "taking the stream for recreated (it then starts over, logged)"),
    GW_OPT("history", "check_interval", CFG_MS, "10s", 100, 3600000, 0,
           history.check_interval,
           "silence on the stream after which a gateway publishes a marker to see that "
           "its consumer still receives; when the marker does not come back within "
           "resume_timeout the consumption is resumed from the last offset read (logged "
           "hist_stalled)"),
    GW_OPT("history", "memory", CFG_BYTES, "64MiB", 65536, 68719476736L, 0,
           history.memory, "bytes of recent history each gateway process keeps to "
           "recover clients from"),
    GW_OPT("history", "shared", CFG_BYTES, "16MiB", 0, 4294967296L, 0, history.shared,
           "with gateway.processes > 1: process 0 alone reads the stream from the broker and "
           "shares it with the others through a ring of this many bytes of shared memory "
           "(the broker then sends each event to one consumer per host, not one per "
           "process); a process the ring cannot serve reads the broker itself until it "
           "can again (0: every process reads the broker)"),
    GW_OPT("history", "shared_fd", CFG_INT, "-1", -1, 1024, 0, history.shared_fd,
           "set by gatewayd for the processes it starts (-1: none); not for config files"),
    /* permessage-deflate (issue 16): opt-in, as the old protocol's bytes on
     * the wire stay what they were unless an operator asks. */
    GW_OPT("compression", "enabled", CFG_BOOL, "false", 0, 0, 0, compression.enabled,
           "negotiate permessage-deflate (RFC 7692) with clients that offer it (browsers "
           "do): each event is compressed once per gateway process for all its "
           "subscribers that negotiated it"),
    GW_OPT("compression", "min_size", CFG_BYTES, "256", 0, 67108864, 0, compression.min_size,
           "messages to clients smaller than this go uncompressed (they gain little and "
           "cost a compression each)"),
    GW_OPT("compression", "level", CFG_INT, "1", 1, 9, 0, compression.level,
           "zlib compression level: 1 fastest, 9 smallest (docs/BENCHMARKS.md: level 1 "
           "on job events)"),
    LOG_CFG_OPT(gw_config, log_level)
    /* [gateway], not [metrics]: one config file may serve both daemons,
     * and each needs its own port (workerd: worker.metrics_listen). */
    GW_OPT("gateway", "metrics_listen", CFG_STR, "127.0.0.1:9151", 0, 0, 0,
           metrics_listen, "address:port of /metrics, /healthz, /readyz (empty: off)"),
};

const size_t gw_config_n_opts = sizeof(gw_config_opts) / sizeof(gw_config_opts[0]);
