/*
 * em_http.h - emitd's HTTP/1.1 server: the listener, keep-alive
 * connections parsed by llhttp, the routes (POST /emit, POST /emit/batch,
 * GET /metrics /healthz /readyz) and every bound an attacker could push.
 *
 * One request at a time per connection: parsing pauses at the end of a
 * request and resumes once its answer is written, so pipelined requests are
 * answered in order and a connection holds one body at most. Bounds:
 * emit.max_connections (more are answered 503 and closed), emit.max_body
 * (413, read no further), emit.request_timeout (a request must arrive
 * whole within it from its first byte: slowloris), emit.idle_timeout
 * (keep-alive), emit.max_pending (messages waiting for the broker over all
 * requests: 503), a request line of 8 KiB and headers of 16 KiB (414/431,
 * llhttp's own limit on header size being its 80 KiB default).
 *
 * Owns: connections, request state, response texts, the counters of
 * em_stats. Must not: block or touch the broker (em_broker's thread does,
 * through em_broker_submit and the done callback).
 */
#ifndef EM_HTTP_H
#define EM_HTTP_H

#include <uv.h>

#include "em_broker.h"
#include "em_config.h"
#include "em_keys.h"
#include "em_metrics.h"

typedef struct em_conn em_conn;

/* Bytes one read takes from a socket. */
#define EM_HTTP_READ_CHUNK 65536

typedef struct em_server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  const em_config *conf;
  em_keys keys;        /* replaced by a reload */
  em_broker *broker;
  em_stats st;
  size_t conns;        /* open */
  size_t pending;      /* messages submitted, not answered by the broker */
  size_t waiting;      /* requests submitted, not answered */
  int stopping;        /* no new connections, keep-alive ends */
  em_conn *all;        /* every open connection */
  int rbuf_busy;       /* rbuf lent to a read in progress */
  char rbuf[EM_HTTP_READ_CHUNK]; /* every connection's reads (em_http__alloc) */
} em_server;

/* Listens on conf->listen. 0, or -1 with a reason. The keys and the broker
 * must be set before the loop runs. */
int em_http_start(em_server *s, uv_loop_t *loop, const em_config *conf, char *err,
                  size_t errlen);

/* The broker's answer for a job (em_broker_done_cb). */
void em_http_job_done(em_job *job, void *arg);

/* Stops accepting; idle connections close now, the others after their
 * current answer. */
void em_http_stop(em_server *s);

/* Closes every connection (the end of a shutdown). */
void em_http_close_all(em_server *s);

/* 1 while the server is ready: keys loaded, broker connected, not stopping. */
int em_http_ready(const em_server *s);

#endif
