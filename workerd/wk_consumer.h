/*
 * wk_consumer.h - the worker's AMQP loop: consume websocket.connect,
 * websocket.receive and websocket.disconnect, answer each on its reply
 * channel, ack after the reply is published.
 *
 * Owns: the broker connection of workerd, reconnecting with capped
 * exponential backoff, the ack discipline. Must not: decide anything about
 * a message (wk_handle does), or ack a message before its reply is out.
 */
#ifndef WK_CONSUMER_H
#define WK_CONSUMER_H

#include <signal.h>

#include "mq_conn.h"
#include "wk_handle.h"
#include "wk_hook.h"

typedef struct wk_consumer_conf {
  const char *url;        /* amqp://user:pass@host:port/vhost, or several
                             separated by commas (tried in turn) */
  int heartbeat_s;        /* 0: no AMQP heartbeats */
  mq_queue_limits limits; /* must match every other party's */
  int prefetch;           /* basic.qos, per consumer (RabbitMQ's meaning of
                             global=false): each of the three queues */
  /* Optional (NULL: none). Called from the loop itself, so a call proves
   * the loop turns: on every connect attempt (consuming = 0) and at least
   * every poll interval, and after each delivery, while consuming
   * (consuming = 1). main.c uses it for systemd readiness and watchdog;
   * it must be cheap, since busy workers call it per message. */
  void (*alive)(void *arg, int consuming);
  void *alive_arg;
  /* Deliveries of one message before it goes to websocket.dead
   * (wk_redeliver.h); at least 1. */
  long max_deliveries;
  /* Optional (NULL: none). When *reload is nonzero between two messages,
   * it is cleared and on_reload(reload_arg) runs on the loop's thread, so
   * the callee may swap what wk_handle_ctx points to (SIGHUP). */
  volatile sig_atomic_t *reload;
  void (*on_reload)(void *arg);
  void *reload_arg;
  /* Optional (NULL: none): the application hooks' client (main's). With
   * it, deliveries whose answer needs the application wait for it as jobs
   * while the loop goes on; without it they are answered as if the
   * application were unreachable. */
  wk_hook *hook;
} wk_consumer_conf;

/*
 * Runs until *stop becomes nonzero (set it from a signal handler): connects
 * (retrying until the broker is up), consumes, and reconnects after any
 * broker error. The message in hand when *stop is set is finished, replied
 * to and acked first. Returns 0.
 */
int wk_consumer_run(const wk_consumer_conf *conf, const wk_handle_ctx *ctx,
                    volatile sig_atomic_t *stop);

#endif
