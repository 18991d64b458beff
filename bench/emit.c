/*
 * bench-emit - the benchmark's event source.
 *
 *   bench-emit --url AMQP_URL --group G --count N [--rate R] [--size BYTES]
 *              [--sample awx [--seed S]]
 *   bench-emit --url AMQP_URL --purge
 *   bench-emit --url AMQP_URL --delete-queue NAME
 *
 * Publishes N events to group G through proto/chan_emit.h (the same call a
 * C backend uses), as fast as it can (--rate 0) or R per second on a fixed
 * schedule. Each event is a JSON object {"seq":K,"t":NS,"pad":"..."}: K
 * counts from 1 (the client checks loss and order with it), NS is
 * CLOCK_REALTIME in nanoseconds taken just before the publish (the client
 * subtracts it from its own clock at receipt), and the padding brings the
 * body to --size bytes, a typical AWX job event's order of magnitude.
 *
 * --sample awx publishes AWX job events instead (bench/awx_sample.h: stdout
 * with ANSI colour codes, 0.5-4 KB, the same K-th event for a seed on every
 * run), which start with the same "seq" and "t": what the compression
 * scenarios send, where padding of one repeated byte would compress far
 * better than real events do. --size is then ignored.
 *
 * --purge empties the websocket.* work queues: messages left from an
 * earlier run (the disconnects of 19,000 closed sockets) would otherwise be
 * work for the next run's workers and skew its handshake figures.
 *
 * --delete-queue deletes one queue (a missing one is fine): the runner
 * drops the history stream (websocket.history) before each scenario, so a
 * run with the history off does not feed a stream an earlier run left
 * bound, and a run with it on starts from an empty history, as the one
 * before it did.
 *
 * Prints "EMITTED count=N seconds=S rate=R" on success.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "awx_sample.h"
#include "chan_emit.h"
#include "chan_names.h"
#include "mq_conn.h"

#define EMIT_SIZE_MAX 65536

typedef struct emit_opts {
  const char *url, *group;
  long count, rate, size;
  int purge;
  int awx;       /* --sample awx */
  uint64_t seed; /* its seed */
  const char *delete_queue;
} emit_opts;

static uint64_t emit__now(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The body for event seq, padded to size bytes (at least the stamp's). */
static size_t emit__body(char *buf, long size, uint64_t seq) {
  int n = snprintf(buf, EMIT_SIZE_MAX, "{\"seq\":%llu,\"t\":%llu,\"pad\":\"",
                   (unsigned long long)seq, (unsigned long long)emit__now(CLOCK_REALTIME));
  size_t len = (size_t)n;
  while ((long)len + 2 < size) buf[len++] = 'x';
  buf[len++] = '"';
  buf[len++] = '}';
  return len;
}

/* Sleeps until the absolute monotonic time at_ns: a fixed schedule, so one
 * late publish is followed by quicker ones rather than a slower rate. */
static void emit__wait_until(uint64_t at_ns) {
  struct timespec ts = {.tv_sec = (time_t)(at_ns / 1000000000u),
                        .tv_nsec = (long)(at_ns % 1000000000u)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {}
}

static int emit__run(const emit_opts *o) {
  char err[256];
  chan_emitter *e = chan_emit_open(o->url, err, sizeof(err));
  if (!e) {
    fprintf(stderr, "bench-emit: %s\n", err);
    return 1;
  }
  char *buf = malloc(EMIT_SIZE_MAX);
  if (!buf) return 1;
  uint64_t start = emit__now(CLOCK_MONOTONIC);
  int rc = 0;
  for (long i = 0; i < o->count; i++) {
    if (o->rate > 0) emit__wait_until(start + (uint64_t)i * 1000000000u / (uint64_t)o->rate);
    size_t len = o->awx ? awx_event(buf, EMIT_SIZE_MAX, o->seed, (uint64_t)i + 1,
                                    emit__now(CLOCK_REALTIME))
                        : emit__body(buf, o->size, (uint64_t)i + 1);
    if (chan_emit_nowait(e, o->group, buf, len, err, sizeof(err)) != 0) {
      fprintf(stderr, "bench-emit: event %ld: %s\n", i + 1, err);
      rc = 1;
      break;
    }
  }
  double secs = (double)(emit__now(CLOCK_MONOTONIC) - start) / 1e9;
  if (chan_emit_close(e, err, sizeof(err)) != 0) { /* waits for every confirm */
    fprintf(stderr, "bench-emit: %s\n", err);
    rc = 1;
  }
  free(buf);
  if (rc == 0)
    printf("EMITTED count=%ld seconds=%.3f rate=%.0f\n", o->count, secs,
           secs > 0 ? (double)o->count / secs : 0.0);
  return rc;
}

/* queue.purge of each work queue; a queue that does not exist yet is fine. */
static int emit__purge(const emit_opts *o) {
  static const char *queues[] = {CHAN_QUEUE_CONNECT, CHAN_QUEUE_RECEIVE,
                                 CHAN_QUEUE_DISCONNECT};
  char err[256];
  for (int i = 0; i < 3; i++) {
    amqp_connection_state_t c = mq_conn_open(o->url, 0, err, sizeof(err));
    if (!c) {
      fprintf(stderr, "bench-emit: %s\n", err);
      return 1;
    }
    amqp_queue_purge(c, MQ_CHANNEL, amqp_cstring_bytes(queues[i]));
    /* A missing queue closes the channel (404): hence one connection each. */
    mq_conn_close(c);
  }
  return 0;
}

static int emit__delete(const emit_opts *o) {
  char err[256];
  amqp_connection_state_t c = mq_conn_open(o->url, 0, err, sizeof(err));
  if (!c) {
    fprintf(stderr, "bench-emit: %s\n", err);
    return 1;
  }
  amqp_queue_delete(c, MQ_CHANNEL, amqp_cstring_bytes(o->delete_queue), 0, 0);
  amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
  mq_conn_close(c);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    fprintf(stderr, "bench-emit: queue.delete %s failed\n", o->delete_queue);
    return 1;
  }
  return 0;
}

static int emit__arg(const char *a, const char *name, char **argv, int *i, int argc,
                     const char **out) {
  if (strcmp(a, name) != 0 || *i + 1 >= argc) return 0;
  *out = argv[++*i];
  return 1;
}

static int emit__parse(int argc, char **argv, emit_opts *o) {
  for (int i = 1; i < argc; i++) {
    const char *v = NULL;
    if (strcmp(argv[i], "--purge") == 0) o->purge = 1;
    else if (emit__arg(argv[i], "--url", argv, &i, argc, &v)) o->url = v;
    else if (emit__arg(argv[i], "--group", argv, &i, argc, &v)) o->group = v;
    else if (emit__arg(argv[i], "--count", argv, &i, argc, &v)) o->count = atol(v);
    else if (emit__arg(argv[i], "--rate", argv, &i, argc, &v)) o->rate = atol(v);
    else if (emit__arg(argv[i], "--size", argv, &i, argc, &v)) o->size = atol(v);
    else if (emit__arg(argv[i], "--delete-queue", argv, &i, argc, &v)) o->delete_queue = v;
    else if (emit__arg(argv[i], "--seed", argv, &i, argc, &v)) o->seed = strtoull(v, NULL, 10);
    else if (emit__arg(argv[i], "--sample", argv, &i, argc, &v)) {
      if (strcmp(v, "awx") != 0) return -1;
      o->awx = 1;
    } else return -1;
  }
  if (!o->url) return -1;
  if (o->purge || o->delete_queue) return 0;
  return o->group && o->count >= 0 && o->rate >= 0 && o->size < EMIT_SIZE_MAX ? 0 : -1;
}

int main(int argc, char **argv) {
  emit_opts o = {.size = 256, .seed = AWX_SEED};
  if (emit__parse(argc, argv, &o) != 0) {
    fprintf(stderr, "usage: bench-emit --url AMQP_URL --group G --count N [--rate R]"
                    " [--size BYTES] [--sample awx [--seed S]]\n"
                    "       bench-emit --url AMQP_URL --purge\n"
                    "       bench-emit --url AMQP_URL --delete-queue NAME\n");
    return 2;
  }
  if (o.delete_queue) return emit__delete(&o);
  return o.purge ? emit__purge(&o) : emit__run(&o);
}
