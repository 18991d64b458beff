/*
 * em_broker.h - emitd's broker side: one thread with one AMQP connection
 * in confirm mode, publishing the messages of every request handed to it
 * and telling the event loop, request by request, how many the broker
 * confirmed.
 *
 * Group commit: the thread takes every request waiting, publishes all of
 * their messages back to back, then reads confirms, which RabbitMQ sends
 * `multiple` (one ack settles many tags). So requests in flight at the
 * same time share a broker round trip, and a request's latency is one
 * round plus its own publishes, whatever the load.
 *
 * Owns: the thread, the connection (reconnect with backoff over the
 * amqp.url list, readiness), the mapping of confirms to requests (each
 * publish's cookie in mq_confirms is its job) and the confirm timeout.
 * Must not: touch HTTP connections or the loop's state; a job belongs to
 * this thread from em_broker_submit until it comes back through done().
 */
#ifndef EM_BROKER_H
#define EM_BROKER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "em_request.h"

typedef struct em_job {
  struct em_job *next;     /* the queue it is in */
  em_pubs pubs;            /* what to publish; points into body */
  char *body;              /* the request's body, owned */
  uint64_t submit_us;      /* monotonic, for the latency histogram */
  long long deadline_ms;   /* monotonic: no answer by then is a failure */
  /* results, written by the broker thread before it hands the job back */
  size_t confirmed;        /* messages the broker acked */
  char why[160];           /* when confirmed < pubs.n: the first reason */
  /* broker thread only */
  size_t nacked;           /* refused or lost */
  uint64_t last_tag;       /* delivery tag of its last publish */
  /* event loop only */
  void *owner;             /* the waiting HTTP connection; NULL: gone */
} em_job;

typedef void (*em_broker_done_cb)(em_job *job, void *arg);

typedef struct em_broker_conf {
  const char *url;      /* amqp.url, one or several */
  long heartbeat_ms;    /* amqp.heartbeat */
  long timeout_ms;      /* emit.timeout */
} em_broker_conf;

/* What /metrics shows of the broker side; counters only grow. */
typedef struct em_broker_stats {
  atomic_int up;                 /* 1 while connected and in confirm mode */
  atomic_uint_fast64_t rounds;   /* publish rounds (group commits) */
  atomic_uint_fast64_t published, acked, nacked, lost;
  atomic_uint_fast64_t connects, disconnects;
} em_broker_stats;

typedef struct em_broker em_broker;

/* Starts the thread (which connects on its own, retrying). done is called
 * on loop's thread for every submitted job, exactly once. NULL with a reason
 * in err (bad URL list, thread or handle creation failed). */
em_broker *em_broker_start(uv_loop_t *loop, const em_broker_conf *conf,
                           em_broker_done_cb done, void *arg, char *err,
                           size_t errlen);

/* Hands job over (loop thread). Its deadline and submit time are set here. */
void em_broker_submit(em_broker *b, em_job *job);

const em_broker_stats *em_broker_stats_of(const em_broker *b);

/* Stops the thread (jobs not yet answered fail with "shutting down"),
 * delivers what is left to done(), closes the async handle and frees b
 * once the loop ran the close (call uv_run after it). */
void em_broker_stop(em_broker *b);

/* Monotonic clock, for both threads. */
long long em_now_ms(void);
uint64_t em_now_us(void);

#endif
