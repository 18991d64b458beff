/*
 * wk_redeliver.c - delivery counting and dead letters (see wk_redeliver.h).
 *
 * The side connection has no AMQP heartbeat: it is idle nearly always, and
 * rabbitmq-c only answers heartbeats inside its own calls, so the broker
 * would close it anyway. Instead a publish on a connection found dead is
 * retried once on a fresh one.
 */
#include "wk_redeliver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "chan_msg.h"
#include "chan_names.h"
#include "mq_confirm.h"
#include "mq_conn.h"

/* How long the broker has to confirm one copy. */
#define WK_REDELIVER_CONFIRM_S 5

wk_redeliver_counters wk_redeliver_stats;

wk_redeliver_action wk_redeliver_decide(int redelivered, long count,
                                        long max_deliveries,
                                        long *deliveries) {
  long n = count > 0 ? count : 1; /* the copy in hand was delivered n times */
  if (!redelivered) {
    *deliveries = n;
    return WK_REDELIVER_HANDLE;
  }
  /* A worker took it before and never acked: this is delivery n + 1. */
  *deliveries = n + 1;
  return *deliveries > max_deliveries ? WK_REDELIVER_DEAD
                                      : WK_REDELIVER_REQUEUE;
}

long wk_redeliver_count(const amqp_basic_properties_t *p) {
  long n;
  return mq_header_int(p, WK_REDELIVER_HEADER, &n) == 1 && n > 0 ? n : 0;
}

/* Same type as the work queues: a classic websocket.dead lives on one node,
 * and while that node is unreachable this declare fails (404, "home node
 * ... is down"), so a worker could not reconnect at all and quorum mode
 * would not survive the loss of that node. */
int wk_redeliver_declare(amqp_connection_state_t c, int quorum, char *err, size_t errlen) {
  amqp_table_entry_t e[2];
  e[0].key = amqp_cstring_bytes("x-max-length");
  e[0].value.kind = AMQP_FIELD_KIND_I64;
  e[0].value.value.i64 = WK_REDELIVER_DEAD_MAX;
  e[1].key = amqp_cstring_bytes("x-queue-type");
  e[1].value.kind = AMQP_FIELD_KIND_UTF8;
  e[1].value.value.bytes = amqp_cstring_bytes("quorum");
  amqp_table_t args = {quorum ? 2 : 1, e};
  amqp_queue_declare(c, MQ_CHANNEL, amqp_cstring_bytes(CHAN_QUEUE_DEAD), 0,
                     1 /* durable */, 0, 0, args);
  return mq_rpc_check(amqp_get_rpc_reply(c), "declare queue " CHAN_QUEUE_DEAD,
                      err, errlen);
}

/* ---- the side connection ------------------------------------------------ */

void wk_redeliver_close(wk_redeliver_pub *p) {
  if (p->c) mq_conn_close(p->c);
  p->c = NULL;
}

static int wk_redeliver__open(wk_redeliver_pub *p, char *err, size_t errlen) {
  if (p->c) return 0;
  p->c = mq_conn_open(p->url, 0, err, errlen);
  if (!p->c) return -1;
  amqp_confirm_select(p->c, MQ_CHANNEL);
  if (mq_rpc_check(amqp_get_rpc_reply(p->c), "confirm.select", err, errlen)) {
    wk_redeliver_close(p);
    return -1;
  }
  return 0;
}

/* The broker's answer to our one outstanding publish: 0 ack, 1 nack, -1
 * none within the deadline or the channel closed. */
static int wk_redeliver__confirm(wk_redeliver_pub *p, char *err, size_t errlen) {
  time_t deadline = time(NULL) + WK_REDELIVER_CONFIRM_S;
  while (time(NULL) <= deadline) {
    amqp_frame_t f;
    struct timeval tv = {1, 0};
    int st = amqp_simple_wait_frame_noblock(p->c, &f, &tv);
    if (st == AMQP_STATUS_TIMEOUT) continue;
    if (st != AMQP_STATUS_OK) {
      snprintf(err, errlen, "confirm: %s", amqp_error_string2(st));
      return -1;
    }
    if (f.frame_type != AMQP_FRAME_METHOD) continue;
    if (f.payload.method.id == AMQP_BASIC_ACK_METHOD) return 0;
    if (f.payload.method.id == AMQP_BASIC_NACK_METHOD) return 1;
    if (mq_frame_close_reason(&f, "confirm", err, errlen)) return -1;
  }
  snprintf(err, errlen, "confirm: none within %ds", WK_REDELIVER_CONFIRM_S);
  return -1;
}

static int wk_redeliver__try(wk_redeliver_pub *p, const char *queue,
                            const amqp_basic_properties_t *props,
                            amqp_bytes_t body, char *err, size_t errlen) {
  if (wk_redeliver__open(p, err, errlen) != 0) return -1;
  int st = amqp_basic_publish(p->c, MQ_CHANNEL, amqp_empty_bytes,
                              amqp_cstring_bytes(queue), 0, 0, props, body);
  int rc = -1;
  if (st == AMQP_STATUS_OK) rc = wk_redeliver__confirm(p, err, errlen);
  else snprintf(err, errlen, "publish: %s", amqp_error_string2(st));
  amqp_maybe_release_buffers(p->c);
  if (rc < 0) wk_redeliver_close(p);
  return rc;
}

int wk_redeliver_publish(wk_redeliver_pub *p, const char *queue,
                         const char *origin, const amqp_message_t *msg,
                         long deliveries, char *err, size_t errlen) {
  const amqp_basic_properties_t *in = &msg->properties;
  amqp_basic_properties_t props;
  amqp_table_entry_t h[2];
  /* The gateway's messages are transient JSON; keep whatever the original
   * said it was. */
  mq_json_props(&props, (in->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG) &&
                            in->delivery_mode == AMQP_DELIVERY_PERSISTENT);
  if (in->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG)
    props.content_type = in->content_type;
  props._flags |= AMQP_BASIC_HEADERS_FLAG;
  h[0].key = amqp_cstring_bytes(WK_REDELIVER_HEADER);
  h[0].value.kind = AMQP_FIELD_KIND_I64;
  h[0].value.value.i64 = deliveries;
  h[1].key = amqp_cstring_bytes(WK_REDELIVER_QUEUE_HEADER);
  h[1].value.kind = AMQP_FIELD_KIND_UTF8;
  h[1].value.value.bytes = amqp_cstring_bytes(origin ? origin : "");
  props.headers.num_entries = origin ? 2 : 1;
  props.headers.entries = h;
  /* A dead letter is kept for people to read: a connect message's
   * credentials stay out of it, and so do those a receive or disconnect
   * carries in its session. A copy for another delivery is whole. */
  amqp_bytes_t body = msg->body;
  char *redacted = NULL;
  chan_msg_kind kind = CHAN_MSG_CONNECT;
  int known = 0;
  if (origin && strcmp(origin, CHAN_QUEUE_CONNECT) == 0) {
    known = 1;
  } else if (origin && strcmp(origin, CHAN_QUEUE_RECEIVE) == 0) {
    known = 1;
    kind = CHAN_MSG_RECEIVE;
  } else if (origin && strcmp(origin, CHAN_QUEUE_DISCONNECT) == 0) {
    known = 1;
    kind = CHAN_MSG_DISCONNECT;
  }
  if (known) {
    redacted = chan_msg_redact(kind, msg->body.bytes, msg->body.len, &body.len);
    if (!redacted) {
      snprintf(err, errlen, "redact: out of memory");
      return -1;
    }
    body.bytes = redacted;
  }
  /* A connection left from before a broker restart fails at first use:
   * one retry on a fresh connection tells that apart from a dead broker. */
  int rc = wk_redeliver__try(p, queue, &props, body, err, errlen);
  if (rc < 0) rc = wk_redeliver__try(p, queue, &props, body, err, errlen);
  free(redacted);
  return rc;
}
