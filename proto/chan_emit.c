/*
 * chan_emit.c - publish events to groups: the C side of "emit".
 *
 * Owns: one blocking AMQP connection per emitter, checking a group name and
 * the event's UTF-8 before anything reaches the broker, and the publish
 * itself (exchange websocket.groups, routing key = group, transient). Must
 * not: retry a publish (an event sent twice is worse than an error the
 * caller sees), or be shared between threads.
 *
 * After a broker error the connection is dropped and the next chan_emit
 * connects again: a long-lived backend survives a broker restart without
 * code of its own, at the price of losing the event that saw the error.
 *
 * With several broker addresses (amqp.url "URL,URL,..."), a connect tries
 * each node once, starting from a random one, before it reports failure;
 * after an error the next connect starts at the next node, since the one
 * that failed is the likeliest to be gone. No sleeping: the caller decides
 * whether and when to emit again.
 */
#include "chan_emit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "chan_group.h"
#include "chan_names.h"
#include "mq_conn.h"
#include "utf8.h"

struct chan_emitter {
  mq_url_list urls;             /* kept for reconnecting; may hold passwords */
  amqp_connection_state_t conn; /* NULL after an error until the next emit */
};

/* Heartbeats off: an emitter is often idle between bursts (chanctl waiting
 * on stdin, a backend between jobs) and rabbitmq-c only answers heartbeats
 * while inside a library call, so the broker would close an idle emitter.
 * The cost: a dead TCP path shows up only at the next publish. */
static int chan_emit_connect_one(chan_emitter *e, char *err, size_t errlen) {
  amqp_connection_state_t c =
      mq_conn_open(mq_url_list_current(&e->urls), 0, err, errlen);
  if (!c) return -1;
  if (mq_declare_groups_exchange(c, err, errlen) < 0) {
    mq_conn_close(c);
    return -1;
  }
  e->conn = c;
  mq_url_list_connected(&e->urls);
  return 0;
}

/* One round over the address list; err holds the last node's reason. */
static int chan_emit_connect(chan_emitter *e, char *err, size_t errlen) {
  for (;;) {
    if (chan_emit_connect_one(e, err, errlen) == 0) return 0;
    if (mq_url_list_next(&e->urls)) return -1;
  }
}

static void chan_emit_drop(chan_emitter *e) {
  mq_conn_close(e->conn);
  e->conn = NULL;
  mq_url_list_next(&e->urls);
}

chan_emitter *chan_emit_open(const char *amqp_url, char *err, size_t errlen) {
  chan_emitter *e = calloc(1, sizeof *e);
  if (!e) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  unsigned seed = (unsigned)time(NULL) ^ ((unsigned)getpid() << 8);
  if (mq_url_list_parse(&e->urls, amqp_url, seed, err, errlen) < 0) {
    free(e);
    return NULL;
  }
  if (chan_emit_connect(e, err, errlen) < 0) {
    mq_url_list_free(&e->urls);
    free(e);
    return NULL;
  }
  return e;
}

/*
 * The broker reports a failed publish (exchange deleted, access refused)
 * only by closing the channel or connection, asynchronously. Looking for
 * such a frame before each publish costs one non-blocking poll, and is the
 * only way not to keep publishing into a channel that is already gone.
 * Returns 1 with a reason when the broker closed on us, else 0.
 */
static int chan_emit_broker_closed(chan_emitter *e, char *err, size_t errlen) {
  struct timeval zero = {0, 0};
  amqp_frame_t f;
  int rc;
  while ((rc = amqp_simple_wait_frame_noblock(e->conn, &f, &zero)) ==
         AMQP_STATUS_OK) {
    if (f.frame_type != AMQP_FRAME_METHOD) continue;
    amqp_method_number_t id = f.payload.method.id;
    if (id == AMQP_CHANNEL_CLOSE_METHOD ||
        id == AMQP_CONNECTION_CLOSE_METHOD) {
      amqp_rpc_reply_t r = {AMQP_RESPONSE_SERVER_EXCEPTION, f.payload.method,
                            0};
      mq_rpc_check(r, "publish", err, errlen);
      return 1;
    }
    /* Anything else (connection.blocked, ...) does not stop publishing. */
  }
  amqp_maybe_release_buffers(e->conn);
  if (rc == AMQP_STATUS_TIMEOUT) return 0;
  snprintf(err, errlen, "publish: %s", amqp_error_string2(rc));
  return 1;
}

static int chan_emit_publish(chan_emitter *e, const char *group, size_t glen,
                             const char *json, size_t len, char *err,
                             size_t errlen) {
  amqp_basic_properties_t props;
  memset(&props, 0, sizeof props);
  props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
  props.content_type = amqp_cstring_bytes("application/json");
  props.delivery_mode = AMQP_DELIVERY_NONPERSISTENT; /* never replayed */
  amqp_bytes_t key = {glen, (void *)group};
  amqp_bytes_t body = {len, (void *)json};
  int rc = amqp_basic_publish(e->conn, MQ_CHANNEL,
                              amqp_cstring_bytes(CHAN_GROUPS_EXCHANGE), key,
                              0 /* mandatory */, 0 /* immediate */, &props,
                              body);
  if (rc == AMQP_STATUS_OK) return 0;
  /* A write error usually follows a close the broker sent first; its reply
   * text says why, the socket error does not. */
  if (!chan_emit_broker_closed(e, err, errlen)) {
    snprintf(err, errlen, "publish: %s", amqp_error_string2(rc));
  }
  return -1;
}

int chan_emit(chan_emitter *e, const char *group, const char *json, size_t len,
              char *err, size_t errlen) {
  size_t glen = group ? strlen(group) : 0;
  if (!chan_group_name_valid(group ? group : "", glen)) {
    snprintf(err, errlen, "invalid group name (1-%d of A-Z a-z 0-9 _ . : -)",
             CHAN_GROUP_NAME_MAX);
    return -1;
  }
  if (len > 0 && (!json || !utf8_valid(json, len))) {
    snprintf(err, errlen, "event is not valid UTF-8");
    return -1;
  }
  if (!e->conn && chan_emit_connect(e, err, errlen) < 0) return -1;
  if (chan_emit_broker_closed(e, err, errlen) ||
      chan_emit_publish(e, group, glen, json ? json : "", len, err,
                        errlen) < 0) {
    chan_emit_drop(e);
    return -1;
  }
  return 0;
}

void chan_emit_close(chan_emitter *e) {
  if (!e) return;
  mq_conn_close(e->conn);
  mq_url_list_free(&e->urls); /* wipes: the URLs may carry the password */
  free(e);
}
