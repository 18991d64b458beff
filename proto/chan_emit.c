/*
 * chan_emit.c - publish events to groups: the C side of "emit" (see
 * chan_emit.h for what a return value promises).
 *
 * The channel is in confirm mode. Confirms are read without waiting before
 * each publish (the non-blocking read that also notices a channel the
 * broker closed, which costs one recv per publish and no round trip), and
 * waited for only when the window is full, by chan_emit() for its own
 * event, and by chan_emit_flush(). A bulk emit therefore runs at the same
 * rate as without confirms: the broker's acks (one per batch of publishes,
 * `multiple`) come back while we keep writing.
 *
 * After a broker error the connection is dropped, every unconfirmed event
 * is counted as failed (the broker may or may not have it: it never said),
 * and the next emit connects again: a long-lived backend survives a broker
 * restart without code of its own, and learns of each event it may have
 * lost through the return values, never silently.
 *
 * With several broker addresses (amqp.url "URL,URL,..."), a connect tries
 * each node once, starting from a random one, before it reports failure;
 * after an error the next connect starts at the next node, since the one
 * that failed is the likeliest to be gone. No sleeping: the caller decides
 * whether and when to emit again.
 */
#include "chan_emit.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "chan_group.h"
#include "chan_names.h"
#include "mq_confirm.h"
#include "mq_conn.h"
#include "utf8.h"

struct chan_emitter {
  mq_url_list urls;             /* kept for reconnecting; may hold passwords */
  amqp_connection_state_t conn; /* NULL after an error until the next emit */
  mq_confirms confirms;         /* conn's publishes the broker has not answered */
  int timeout_ms;               /* longest wait for confirms */
  unsigned long sent, failed;   /* events since the last flush, and how many failed */
  unsigned long returned;       /* mandatory publishes the broker could not route */
  int answers_on;               /* consuming the kicks' answers (direct reply-to) on conn */
  unsigned long kicked;         /* connections the kick's answers say were closed */
  char kick_key[CHAN_QUEUE_NAME_MAX + 1]; /* the kick waited for (answers to another: ignored) */
  char why[192];                /* the first failure's reason since the last flush */
};

/* Heartbeats off: an emitter is often idle between bursts (chanctl waiting
 * on stdin, a backend between jobs) and rabbitmq-c only answers heartbeats
 * while inside a library call, so the broker would close an idle emitter.
 * The cost: a dead TCP path shows up only at the next publish. */
static int chan_emit__connect_one(chan_emitter *e, char *err, size_t errlen) {
  amqp_connection_state_t c =
      mq_conn_open_emitter(mq_url_list_current(&e->urls), 0, err, errlen);
  if (!c) return -1;
  mq_confirms_init(&e->confirms);
  e->conn = c;
  e->answers_on = 0;
  mq_url_list_connected(&e->urls);
  return 0;
}

/* One round over the address list; err holds the last node's reason. */
static int chan_emit__connect(chan_emitter *e, char *err, size_t errlen) {
  for (;;) {
    if (chan_emit__connect_one(e, err, errlen) == 0) return 0;
    if (mq_url_list_next(&e->urls)) return -1;
  }
}

/* The first reason since the last flush is the one reported. */
static void chan_emit__note(chan_emitter *e, const char *why) {
  if (!e->why[0]) snprintf(e->why, sizeof e->why, "%s", why);
}

/* mq_confirm_cb: an event refused by the broker or left unknown. */
static void chan_emit__failed(uint64_t cookie, void *arg) {
  (void)cookie;
  chan_emitter *e = arg;
  e->failed++;
}

/* Gives up the connection: its unconfirmed events count as failed. No
 * polite close: the broker is gone, stalled or has closed on us, and what
 * it confirmed is safe whatever happens to the socket now. */
static void chan_emit__drop(chan_emitter *e, const char *why) {
  chan_emit__note(e, why);
  mq_confirms_fail_all(&e->confirms, chan_emit__failed, e);
  amqp_destroy_connection(e->conn);
  e->conn = NULL;
  mq_url_list_next(&e->urls);
}

/* The N of an answer {"kicked": N, "key": "<kick_key>"} (CHAN_KICK_ANSWER)
 * to the kick this emitter waits for; 0 for anything else (a late answer
 * to an earlier kick names another key, or the same key kicked again: then
 * that gateway did close its connections). */
static unsigned long chan_emit__kick_answer(const chan_emitter *e, const void *body,
                                            size_t len) {
  char want[sizeof CHAN_KICK_ANSWER + 24 + CHAN_QUEUE_NAME_MAX];
  const char *b = body;
  if (!e->kick_key[0] || len >= sizeof want) return 0;
  unsigned long v = 0;
  size_t i = sizeof "{\"kicked\": " - 1;
  if (len <= i || memcmp(b, "{\"kicked\": ", i) != 0) return 0;
  for (; i < len && b[i] >= '0' && b[i] <= '9' && v < 1000000000ul; i++)
    v = v * 10 + (unsigned long)(b[i] - '0');
  int n = snprintf(want, sizeof want, CHAN_KICK_ANSWER, (unsigned)v, e->kick_key);
  return n > 0 && (size_t)n == len && memcmp(want, b, len) == 0 ? v : 0;
}

/* Reads one frame from the broker, waiting up to tv. Returns 1 when one was
 * handled (a confirm, or something harmless such as connection.blocked), 0
 * when none came in time, -1 when the connection was dropped (reason
 * noted). */
static int chan_emit__read(chan_emitter *e, struct timeval *tv) {
  amqp_frame_t f;
  int rc = amqp_simple_wait_frame_noblock(e->conn, &f, tv);
  if (rc == AMQP_STATUS_TIMEOUT) return 0;
  char why[160];
  if (rc != AMQP_STATUS_OK) {
    snprintf(why, sizeof why, "connection lost: %s", amqp_error_string2(rc));
    chan_emit__drop(e, why);
    return -1;
  }
  if (mq_confirms_apply(&e->confirms, &f, chan_emit__failed, e)) {
    if (f.payload.method.id == AMQP_BASIC_NACK_METHOD)
      chan_emit__note(e, "refused by the broker (basic.nack)");
    return 1;
  }
  int ret = f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_RETURN_METHOD;
  int answer = f.frame_type == AMQP_FRAME_METHOD &&
               f.payload.method.id == AMQP_BASIC_DELIVER_METHOD;
  if (ret || answer) {
    /* A mandatory publish nobody was bound for, or a gateway's answer to a
     * kick (CHAN_KICK_ANSWER, on direct reply-to; a late one, after the
     * wait, is counted and forgotten): the content follows. */
    amqp_message_t msg;
    amqp_rpc_reply_t r = amqp_read_message(e->conn, f.channel, &msg, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
      chan_emit__drop(e, ret ? "connection lost reading a returned message"
                             : "connection lost reading a kick's answer");
      return -1;
    }
    if (ret) e->returned++;
    else e->kicked += chan_emit__kick_answer(e, msg.body.bytes, msg.body.len);
    amqp_destroy_message(&msg);
    return 1;
  }
  if (mq_frame_close_reason(&f, "publish", why, sizeof why)) {
    chan_emit__drop(e, why);
    return -1;
  }
  return 1;
}

/* Takes every answer already there, without waiting. 0, or -1 when the
 * connection was dropped. */
static int chan_emit__drain(chan_emitter *e) {
  struct timeval zero = {0, 0};
  int r;
  while ((r = chan_emit__read(e, &zero)) == 1) {}
  if (r == 0) amqp_maybe_release_buffers(e->conn);
  return r;
}

static long long chan_emit__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until at most `most` events are unanswered, for timeout_ms at most.
 * 0, or -1 when the connection was dropped (by the broker, or by us at the
 * deadline). */
static int chan_emit__wait(chan_emitter *e, size_t most) {
  long long deadline = chan_emit__now_ms() + e->timeout_ms;
  while (mq_confirms_pending(&e->confirms) > most) {
    long long left = deadline - chan_emit__now_ms();
    if (left <= 0) {
      char why[96];
      snprintf(why, sizeof why, "no answer within %d ms (broker stalled or blocked)",
               e->timeout_ms);
      chan_emit__drop(e, why);
      return -1;
    }
    struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
    if (chan_emit__read(e, &tv) < 0) return -1;
  }
  amqp_maybe_release_buffers(e->conn);
  return 0;
}

chan_emitter *chan_emit_open(const char *amqp_url, char *err, size_t errlen) {
  chan_emitter *e = calloc(1, sizeof *e);
  if (!e) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  e->timeout_ms = CHAN_EMIT_TIMEOUT_MS;
  unsigned seed = (unsigned)time(NULL) ^ ((unsigned)getpid() << 8);
  if (mq_url_list_parse(&e->urls, amqp_url, seed, err, errlen) < 0) {
    free(e);
    return NULL;
  }
  if (chan_emit__connect(e, err, errlen) < 0) {
    mq_url_list_free(&e->urls);
    free(e);
    return NULL;
  }
  return e;
}

void chan_emit_set_timeout(chan_emitter *e, int timeout_ms) {
  e->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
}

static int chan_emit__publish(chan_emitter *e, const char *group, size_t glen,
                              const char *json, size_t len) {
  amqp_basic_properties_t props;
  mq_json_props(&props, 0); /* transient: events are never replayed */
  amqp_bytes_t key = {glen, (void *)group};
  amqp_bytes_t body = {len, (void *)json};
  int rc = amqp_basic_publish(e->conn, MQ_CHANNEL,
                              amqp_cstring_bytes(CHAN_GROUPS_EXCHANGE), key,
                              0 /* mandatory */, 0 /* immediate */, &props,
                              body);
  if (rc == AMQP_STATUS_OK) return 0;
  /* A write error usually follows a close the broker sent first; its reply
   * text says why, the socket error does not. */
  char why[160];
  snprintf(why, sizeof why, "publish: %s", amqp_error_string2(rc));
  if (chan_emit__drain(e) == 0) chan_emit__drop(e, why);
  return -1;
}

static int chan_emit__check(const char *group, size_t glen, const char *json,
                            size_t len, char *err, size_t errlen) {
  if (!chan_group_name_valid(group ? group : "", glen)) {
    snprintf(err, errlen, "invalid group name (1-%d of A-Z a-z 0-9 _ . : -)",
             CHAN_GROUP_NAME_MAX);
    return -1;
  }
  if (len > 0 && (!json || !utf8_valid(json, len))) {
    snprintf(err, errlen, "event is not valid UTF-8");
    return -1;
  }
  return 0;
}

int chan_emit_nowait(chan_emitter *e, const char *group, const char *json,
                     size_t len, char *err, size_t errlen) {
  size_t glen = group ? strlen(group) : 0;
  if (chan_emit__check(group, glen, json, len, err, errlen) < 0) return -1;
  if (!e->conn && chan_emit__connect(e, err, errlen) < 0) return -1;
  /* A channel the broker already closed must not take more publishes; a
   * full window waits for the broker before adding to it. */
  if (chan_emit__drain(e) < 0 ||
      (mq_confirms_pending(&e->confirms) >= CHAN_EMIT_WINDOW &&
       chan_emit__wait(e, CHAN_EMIT_WINDOW - 1) < 0)) {
    snprintf(err, errlen, "%s", e->why);
    return -1;
  }
  if (mq_confirms_push(&e->confirms, 0) < 0) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  e->sent++; /* from here on, its failure is counted by the confirms */
  if (chan_emit__publish(e, group, glen, json ? json : "", len) < 0) {
    snprintf(err, errlen, "%s", e->why);
    return -1;
  }
  assert(mq_confirms_pending(&e->confirms) <= CHAN_EMIT_WINDOW);
  return 0;
}

int chan_emit(chan_emitter *e, const char *group, const char *json, size_t len,
              char *err, size_t errlen) {
  if (chan_emit_nowait(e, group, json, len, err, errlen) < 0) return -1;
  return chan_emit_flush(e, err, errlen);
}

int chan_emit_kick(chan_emitter *e, const char *key, const char *body, int *routed,
                   char *err, size_t errlen) {
  size_t klen = strlen(key), blen = body ? strlen(body) : 0;
  if (klen == 0 || klen > CHAN_QUEUE_NAME_MAX ||
      strncmp(key, CHAN_CONTROL_PREFIX, strlen(CHAN_CONTROL_PREFIX)) != 0) {
    snprintf(err, errlen, "not a control key");
    return -1;
  }
  if (!e->conn && chan_emit__connect(e, err, errlen) < 0) return -1;
  if (chan_emit_flush(e, err, errlen) < 0 || !e->conn) return -1;
  amqp_table_entry_t h;
  h.key = amqp_cstring_bytes(CHAN_CONTROL_HEADER);
  h.value.kind = AMQP_FIELD_KIND_UTF8;
  h.value.value.bytes = amqp_cstring_bytes(CHAN_CONTROL_KICK);
  amqp_basic_properties_t props;
  mq_json_props(&props, 0);
  props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG |
                 AMQP_BASIC_REPLY_TO_FLAG;
  props.headers.num_entries = 1;
  props.headers.entries = &h;
  /* Gateways that close connections answer there (every gateway hears a
   * user's kick, so "routed" says nothing of who held it). */
  props.reply_to = amqp_cstring_bytes(CHAN_EMIT_REPLY_TO);
  if (!e->answers_on) {
    amqp_basic_consume(e->conn, MQ_CHANNEL, amqp_cstring_bytes(CHAN_EMIT_REPLY_TO),
                       amqp_empty_bytes, 0, 1 /* no_ack: direct reply-to */, 0,
                       amqp_empty_table);
    if (mq_rpc_check(amqp_get_rpc_reply(e->conn), "consume " CHAN_EMIT_REPLY_TO, err,
                     errlen) != 0) {
      chan_emit__drop(e, err);
      return -1;
    }
    e->answers_on = 1;
  }
  e->kicked = 0;
  snprintf(e->kick_key, sizeof e->kick_key, "%s", key);
  if (mq_confirms_push(&e->confirms, 0) < 0) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  e->sent++;
  e->returned = 0;
  /* To the control exchange, where only the gateways holding the key bind
   * it: on the groups exchange the history stream takes every key, and
   * nothing would ever come back. */
  int rc = amqp_basic_publish(e->conn, MQ_CHANNEL, amqp_cstring_bytes(CHAN_CONTROL_EXCHANGE),
                              (amqp_bytes_t){klen, (void *)key}, 1 /* mandatory */, 0,
                              &props, (amqp_bytes_t){blen, (void *)(body ? body : "")});
  if (rc != AMQP_STATUS_OK) {
    char why[160];
    snprintf(why, sizeof why, "publish: %s", amqp_error_string2(rc));
    if (chan_emit__drain(e) == 0) chan_emit__drop(e, why);
  }
  /* The broker sends basic.return before the publish's basic.ack. */
  if (chan_emit_flush(e, err, errlen) < 0) return -1;
  if (e->returned) { /* no gateway bound the key at all */
    *routed = 0;
    return 0;
  }
  /* The first answer says somebody held it; none within the wait, nobody. */
  long long deadline = chan_emit__now_ms() + CHAN_EMIT_KICK_WAIT_MS;
  while (!e->kicked && e->conn) {
    long long left = deadline - chan_emit__now_ms();
    if (left <= 0) break;
    struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
    if (chan_emit__read(e, &tv) < 0) break;
  }
  if (!e->conn) {
    snprintf(err, errlen, "%s", e->why[0] ? e->why : "connection lost");
    e->why[0] = '\0';
    return -1;
  }
  *routed = e->kicked > 0;
  return 0;
}

int chan_emit_flush(chan_emitter *e, char *err, size_t errlen) {
  if (e->conn) (void)chan_emit__wait(e, 0); /* a failure is counted */
  int rc = 0;
  if (e->failed > 0) {
    if (err && errlen)
      snprintf(err, errlen, "%lu of %lu events not confirmed by the broker: %s",
               e->failed, e->sent, e->why);
    rc = -1;
  }
  e->sent = e->failed = 0;
  e->why[0] = '\0';
  return rc;
}

int chan_emit_close(chan_emitter *e, char *err, size_t errlen) {
  if (!e) return 0;
  int rc = chan_emit_flush(e, err, errlen);
  mq_conn_close(e->conn);
  mq_confirms_free(&e->confirms);
  mq_url_list_free(&e->urls); /* wipes: the URLs may carry the password */
  free(e);
  return rc;
}
