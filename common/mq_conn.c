/*
 * mq_conn.c - open, check and close a blocking rabbitmq-c connection, and
 * declare the topology every party shares.
 *
 * Owns: the connect/login/channel sequence with bounded waits, one error
 * text for rabbitmq-c's three error styles, and the exact arguments of the
 * websocket.* queues. Must not: run on an event-loop thread, retry or sleep
 * (callers own their reconnect policy), or put the URL in an error message
 * (it may hold a password).
 *
 * Queue arguments: x-message-ttl and x-max-length are sent as 64-bit signed
 * integers (AMQP field type 'l'), x-overflow as a long string. RabbitMQ
 * compares the arguments of a redeclare by integer class, not width, so a
 * client that sends 'I' with the same number is also accepted; the values
 * must match exactly.
 *
 * Quorum queues (amqp.queue_type = quorum) take the same three arguments:
 * RabbitMQ 3.10 supports x-message-ttl, x-max-length and x-overflow
 * reject-publish on them (checked on a 3.10.8 node: messages expire, and
 * publishes are refused once the length is exceeded, so one message past
 * the limit may wait). Classic queues get no x-queue-type at all, exactly as before the
 * setting existed, so queues declared by an older build still match.
 *
 * x-max-length-bytes (amqp.queue_max_bytes) bounds the bodies a queue holds,
 * whatever their size; reject-publish applies to it as to x-max-length.
 * Queues declared before it existed have no such argument: RabbitMQ refuses
 * the redeclare (406 PRECONDITION_FAILED), and the error says to recreate
 * the queues or set the setting to 0, which declares exactly as before.
 *
 * The groups exchange is a topic exchange (issue 14: the history stream binds
 * it with '#'); one declared direct by an older build is refused with 406,
 * and the error says how to upgrade. The history stream's arguments follow
 * the same rule as the queues': a redeclare with others is a 406, whose
 * error says what to do; x-max-age goes as "<N>s", the sizes as 'l'.
 *
 * The address list (mq_url_list) lives here because every client of the
 * broker (gatewayd, workerd, chan_emit) rotates through it the same way.
 * Splitting at every comma is safe: rabbitmq-c decodes percent escapes, so
 * a comma inside a password is written %2C.
 */
#include "mq_conn.h"

#include <amqp_tcp_socket.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "mq_names.h"

/* Bounds TCP connect and the AMQP handshake (login): a host that drops SYNs
 * or a port that accepts but never speaks AMQP fails in seconds, not at the
 * kernel's two-minute connect timeout. */
#define MQ_CONNECT_TIMEOUT_S 5
/* Bounds the polite close: a dead peer must not hold up shutdown. */
#define MQ_CLOSE_TIMEOUT_S 2

static void mq__seterr(char *err, size_t errlen, const char *fmt,
                      const char *what, const char *reason) {
  if (err && errlen) snprintf(err, errlen, fmt, what, reason);
}

int mq_rpc_check(amqp_rpc_reply_t r, const char *what, char *err,
                 size_t errlen) {
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return 0;
    case AMQP_RESPONSE_NONE:
      mq__seterr(err, errlen, "%s: %s", what, "no reply from the broker");
      return -1;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      mq__seterr(err, errlen, "%s: %s", what,
                amqp_error_string2(r.library_error));
      return -1;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      break;
  }
  /* The broker closed the channel or the whole connection; its reply text
   * ("NOT_FOUND - no exchange ...", "ACCESS_REFUSED - ...") is the useful
   * part. */
  const amqp_bytes_t *text = NULL;
  unsigned code = 0;
  const char *scope = "server error";
  if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD && r.reply.decoded) {
    const amqp_connection_close_t *m = r.reply.decoded;
    text = &m->reply_text;
    code = m->reply_code;
    scope = "broker closed the connection";
  } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD && r.reply.decoded) {
    const amqp_channel_close_t *m = r.reply.decoded;
    text = &m->reply_text;
    code = m->reply_code;
    scope = "broker closed the channel";
  }
  if (err && errlen) {
    if (text) {
      snprintf(err, errlen, "%s: %s: %u %.*s", what, scope, code,
               (int)text->len, (const char *)text->bytes);
    } else {
      snprintf(err, errlen, "%s: unexpected broker method 0x%08x", what,
               (unsigned)r.reply.id);
    }
  }
  return -1;
}

void mq_json_props(amqp_basic_properties_t *p, int persistent) {
  memset(p, 0, sizeof *p);
  p->_flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
  p->content_type = amqp_cstring_bytes("application/json");
  p->delivery_mode =
      persistent ? AMQP_DELIVERY_PERSISTENT : AMQP_DELIVERY_NONPERSISTENT;
}

static long mq__field_int(const amqp_field_value_t *v, int *ok) {
  *ok = 1;
  switch (v->kind) {
    case AMQP_FIELD_KIND_I8: return v->value.i8;
    case AMQP_FIELD_KIND_U8: return v->value.u8;
    case AMQP_FIELD_KIND_I16: return v->value.i16;
    case AMQP_FIELD_KIND_U16: return v->value.u16;
    case AMQP_FIELD_KIND_I32: return v->value.i32;
    case AMQP_FIELD_KIND_U32: return (long)v->value.u32;
    case AMQP_FIELD_KIND_I64: return (long)v->value.i64;
    case AMQP_FIELD_KIND_U64:
      if (v->value.u64 <= 1000000000u) return (long)v->value.u64;
      break;
    default: break;
  }
  *ok = 0;
  return 0;
}

int mq_header_int(const amqp_basic_properties_t *p, const char *key, long *out) {
  if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG)) return 0;
  size_t klen = strlen(key);
  for (int i = 0; i < p->headers.num_entries; i++) {
    const amqp_table_entry_t *e = &p->headers.entries[i];
    if (e->key.len != klen || memcmp(e->key.bytes, key, klen) != 0) continue;
    int ok;
    *out = mq__field_int(&e->value, &ok);
    return ok ? 1 : -1;
  }
  return 0;
}

/* TCP connect with a deadline; the socket belongs to c from here on. */
static int mq__socket_open(amqp_connection_state_t c, const char *host,
                          int port, char *err, size_t errlen) {
  amqp_socket_t *sock = amqp_tcp_socket_new(c);
  if (!sock) {
    mq__seterr(err, errlen, "%s: %s", "connect", "out of memory");
    return -1;
  }
  struct timeval tv = {MQ_CONNECT_TIMEOUT_S, 0};
  int rc = amqp_socket_open_noblock(sock, host, port, &tv);
  if (rc != AMQP_STATUS_OK) {
    /* rabbitmq-c keeps the reason (refused, unreachable) to itself. */
    if (err && errlen) {
      snprintf(err, errlen, "connect to %s:%d: %s", host, port,
               rc == AMQP_STATUS_SOCKET_ERROR ? "refused or unreachable"
                                              : amqp_error_string2(rc));
    }
    return -1;
  }
  return 0;
}

/* amqp_login, or with MQ_CONN_CANCEL_NOTIFY the same login announcing
 * capabilities.consumer_cancel_notify (rabbitmq-c merges it with the
 * capabilities it sends itself). */
static amqp_rpc_reply_t mq__login(amqp_connection_state_t c,
                                  const struct amqp_connection_info *info,
                                  int heartbeat_s, unsigned flags) {
  if (!(flags & MQ_CONN_CANCEL_NOTIFY))
    return amqp_login(c, info->vhost, AMQP_DEFAULT_MAX_CHANNELS,
                      AMQP_DEFAULT_FRAME_SIZE, heartbeat_s,
                      AMQP_SASL_METHOD_PLAIN, info->user, info->password);
  amqp_table_entry_t cap = {.key = amqp_cstring_bytes("consumer_cancel_notify"),
                            .value = {.kind = AMQP_FIELD_KIND_BOOLEAN,
                                      .value = {.boolean = 1}}};
  amqp_table_entry_t prop = {.key = amqp_cstring_bytes("capabilities"),
                             .value = {.kind = AMQP_FIELD_KIND_TABLE,
                                       .value = {.table = {1, &cap}}}};
  amqp_table_t props = {1, &prop};
  return amqp_login_with_properties(c, info->vhost, AMQP_DEFAULT_MAX_CHANNELS,
                                    AMQP_DEFAULT_FRAME_SIZE, heartbeat_s, &props,
                                    AMQP_SASL_METHOD_PLAIN, info->user,
                                    info->password);
}

static int mq__login_and_open(amqp_connection_state_t c,
                             const struct amqp_connection_info *info,
                             int heartbeat_s, unsigned flags, char *err,
                             size_t errlen) {
  struct timeval tv = {MQ_CONNECT_TIMEOUT_S, 0};
  amqp_set_handshake_timeout(c, &tv);
  amqp_rpc_reply_t r = mq__login(c, info, heartbeat_s, flags);
  if (mq_rpc_check(r, "login", err, errlen) < 0) return -1;
  amqp_channel_open(c, MQ_CHANNEL);
  return mq_rpc_check(amqp_get_rpc_reply(c), "channel open", err, errlen);
}

amqp_connection_state_t mq_conn_open(const char *url, int heartbeat_s,
                                     char *err, size_t errlen) {
  return mq_conn_open_flags(url, heartbeat_s, 0, err, errlen);
}

amqp_connection_state_t mq_conn_open_flags(const char *url, int heartbeat_s,
                                           unsigned flags, char *err,
                                           size_t errlen) {
  /* amqp_parse_url cuts the string it parses, and info points into it: the
   * copy lives until the login is done. */
  char *copy = strdup(url ? url : "");
  if (!copy) {
    mq__seterr(err, errlen, "%s: %s", "connect", "out of memory");
    return NULL;
  }
  struct amqp_connection_info info;
  amqp_default_connection_info(&info);
  if (amqp_parse_url(copy, &info) != AMQP_STATUS_OK) {
    free(copy);
    mq__seterr(err, errlen, "%s: %s", "amqp url",
              "not of the form amqp://user:pass@host:port/vhost");
    return NULL;
  }
  if (info.ssl) {
    free(copy);
    mq__seterr(err, errlen, "%s: %s", "amqp url", "amqps:// is not supported");
    return NULL;
  }
  /* "amqp://host/" parses to the vhost "", which nobody means: pika and
   * kombu read it as the default vhost "/", and so do we. */
  if (!info.vhost[0]) info.vhost = "/";
  amqp_connection_state_t c = amqp_new_connection();
  if (!c) {
    free(copy);
    mq__seterr(err, errlen, "%s: %s", "connect", "out of memory");
    return NULL;
  }
  if (mq__socket_open(c, info.host, info.port, err, errlen) < 0 ||
      mq__login_and_open(c, &info, heartbeat_s, flags, err, errlen) < 0) {
    amqp_destroy_connection(c);
    free(copy);
    return NULL;
  }
  free(copy);
  return c;
}

void mq_conn_close(amqp_connection_state_t c) {
  if (!c) return;
  /* Closing politely lets the broker finish what we published on the
   * channel; results are ignored because there is nothing left to do about
   * them, and the timeout keeps a dead peer from blocking shutdown. */
  struct timeval tv = {MQ_CLOSE_TIMEOUT_S, 0};
  amqp_set_rpc_timeout(c, &tv);
  amqp_rpc_reply_t r = amqp_channel_close(c, MQ_CHANNEL, AMQP_REPLY_SUCCESS);
  if (r.reply_type == AMQP_RESPONSE_NORMAL ||
      r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION) {
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
  }
  amqp_destroy_connection(c);
}

/* What to do about a 406 on the exchange: a broker still holding the
 * direct exchange of builds before the history. Before the broker's text,
 * which the callers' 256-byte buffers would cut off. */
#define MQ__EXCHANGE_HINT                                                    \
  "exchange exists as direct (from before the event history): stop every "  \
  "gateway and worker, delete it or run deploy/rabbitmq/setup.sh --migrate " \
  "(OPERATIONS.md, Upgrading to history)"

int mq_declare_groups_exchange(amqp_connection_state_t c, char *err,
                               size_t errlen) {
  amqp_exchange_declare(c, MQ_CHANNEL, amqp_cstring_bytes(MQ_GROUPS_EXCHANGE),
                        amqp_cstring_bytes(MQ_GROUPS_EXCHANGE_TYPE),
                        0 /* passive */, 1 /* durable */, 0 /* auto_delete */,
                        0 /* internal */, amqp_empty_table);
  const char *what = "declare exchange " MQ_GROUPS_EXCHANGE;
  char full[512];
  if (mq_rpc_check(amqp_get_rpc_reply(c), what, full, sizeof full) == 0) return 0;
  const char *refusal = strstr(full, "406 PRECONDITION_FAILED");
  if (err && errlen) {
    if (refusal) snprintf(err, errlen, "%s: " MQ__EXCHANGE_HINT ": %s", what, refusal);
    else snprintf(err, errlen, "%s", full);
  }
  return -1;
}

amqp_connection_state_t mq_conn_open_emitter(const char *url, int heartbeat_s,
                                             char *err, size_t errlen) {
  amqp_connection_state_t c = mq_conn_open(url, heartbeat_s, err, errlen);
  if (!c) return NULL;
  amqp_exchange_declare(c, MQ_CHANNEL, amqp_cstring_bytes(MQ_GROUPS_EXCHANGE),
                        amqp_cstring_bytes(MQ_GROUPS_EXCHANGE_TYPE), 1 /* passive */, 0, 0,
                        0, amqp_empty_table);
  if (mq_rpc_check(amqp_get_rpc_reply(c), "check exchange " MQ_GROUPS_EXCHANGE, err,
                   errlen) < 0) {
    mq_conn_close(c);
    if (!(c = mq_conn_open(url, heartbeat_s, err, errlen))) return NULL;
    if (mq_declare_groups_exchange(c, err, errlen) < 0) {
      mq_conn_close(c);
      return NULL;
    }
  }
  amqp_confirm_select(c, MQ_CHANNEL);
  if (mq_rpc_check(amqp_get_rpc_reply(c), "confirm.select", err, errlen) < 0) {
    mq_conn_close(c);
    return NULL;
  }
  return c;
}

/* Two idempotent bindings per call: a gateway redeclares them at every
 * broker-up (two round trips), so a vhost works without setup.sh. */
int mq_declare_control_exchange(amqp_connection_state_t c, char *err,
                                size_t errlen) {
  amqp_exchange_declare(c, MQ_CHANNEL, amqp_cstring_bytes(MQ_CONTROL_EXCHANGE),
                        amqp_cstring_bytes(MQ_CONTROL_EXCHANGE_TYPE),
                        0 /* passive */, 1 /* durable */, 0 /* auto_delete */,
                        0 /* internal */, amqp_empty_table);
  if (mq_rpc_check(amqp_get_rpc_reply(c), "declare exchange " MQ_CONTROL_EXCHANGE,
                   err, errlen) != 0)
    return -1;
  static const char *const keys[] = {MQ_CONTROL_BINDING_USER,
                                     MQ_CONTROL_BINDING_GATEWAY};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
    amqp_exchange_bind(c, MQ_CHANNEL, amqp_cstring_bytes(MQ_CONTROL_EXCHANGE),
                       amqp_cstring_bytes(MQ_GROUPS_EXCHANGE),
                       amqp_cstring_bytes(keys[i]), amqp_empty_table);
    char what[96];
    snprintf(what, sizeof what, "bind " MQ_CONTROL_EXCHANGE " to " MQ_GROUPS_EXCHANGE
             " with %s", keys[i]);
    if (mq_rpc_check(amqp_get_rpc_reply(c), what, err, errlen) != 0) return -1;
  }
  return 0;
}

/* What to do about a 406 on our queues, put before the broker's text: the
 * callers' error buffers (256 bytes) would cut it off after. */
#define MQ__INEQUIVALENT_HINT                                                 \
  "queue arguments differ: queues from before amqp.queue_max_bytes need "    \
  "it set to 0, else recreate them (OPERATIONS.md, Queue arguments)"

/* What to do about a 406 on the history's stream. */
#define MQ__STREAM_HINT                                                        \
  "stream arguments differ from the [history] settings: set them as it was " \
  "declared, or delete the stream (its history goes) (OPERATIONS.md)"

static int mq__declare_queue_hint(amqp_connection_state_t c, const char *name,
                                  amqp_table_t args, const char *hint, char *err,
                                  size_t errlen) {
  amqp_queue_declare(c, MQ_CHANNEL, amqp_cstring_bytes(name), 0 /* passive */,
                     1 /* durable */, 0 /* exclusive */, 0 /* auto_delete */,
                     args);
  char what[300], full[512];
  snprintf(what, sizeof what, "declare queue %.255s", name);
  if (mq_rpc_check(amqp_get_rpc_reply(c), what, full, sizeof full) == 0) return 0;
  const char *refusal = strstr(full, "406 PRECONDITION_FAILED");
  if (err && errlen) {
    if (refusal) snprintf(err, errlen, "%s: %s: %s", what, hint, refusal);
    else snprintf(err, errlen, "%s", full);
  }
  return -1;
}

static int mq__declare_queue(amqp_connection_state_t c, const char *name,
                            amqp_table_t args, char *err, size_t errlen) {
  return mq__declare_queue_hint(c, name, args, MQ__INEQUIVALENT_HINT, err, errlen);
}

mq_queue_limits mq_queue_limits_of(const mq_settings *s) {
  mq_queue_limits lim = {.message_ttl_ms = s->queue_ttl,
                         .max_length = s->queue_max_length,
                         .max_bytes = s->queue_max_bytes,
                         .quorum = mq_queue_type_parse(s->queue_type) == 1};
  return lim;
}

static void mq__arg_long(amqp_table_entry_t *e, const char *key, long v) {
  e->key = amqp_cstring_bytes(key);
  e->value.kind = AMQP_FIELD_KIND_I64;
  e->value.value.i64 = v;
}

static void mq__arg_string(amqp_table_entry_t *e, const char *key, const char *v) {
  e->key = amqp_cstring_bytes(key);
  e->value.kind = AMQP_FIELD_KIND_UTF8;
  e->value.value.bytes = amqp_cstring_bytes(v);
}

int mq_declare_channel_queues(amqp_connection_state_t c,
                              const mq_queue_limits *lim, char *err,
                              size_t errlen) {
  amqp_table_entry_t e[5];
  int n = 0;
  mq__arg_long(&e[n++], "x-message-ttl", lim->message_ttl_ms);
  mq__arg_long(&e[n++], "x-max-length", lim->max_length);
  if (lim->max_bytes > 0) mq__arg_long(&e[n++], "x-max-length-bytes", lim->max_bytes);
  mq__arg_string(&e[n++], "x-overflow", "reject-publish");
  if (lim->quorum) mq__arg_string(&e[n++], "x-queue-type", "quorum");
  amqp_table_t args = {n, e};

  static const char *const names[] = {MQ_QUEUE_CONNECT, MQ_QUEUE_RECEIVE,
                                      MQ_QUEUE_DISCONNECT};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    if (mq__declare_queue(c, names[i], args, err, errlen) < 0) return -1;
  }
  return 0;
}

int mq_declare_history_stream(amqp_connection_state_t c, const mq_stream_args *a,
                              char *err, size_t errlen) {
  char age[32];
  snprintf(age, sizeof age, "%lds", a->max_age_s);
  amqp_table_entry_t e[5];
  int n = 0;
  mq__arg_string(&e[n++], "x-queue-type", "stream");
  mq__arg_string(&e[n++], "x-max-age", age);
  mq__arg_long(&e[n++], "x-max-length-bytes", a->max_bytes);
  mq__arg_long(&e[n++], "x-stream-max-segment-size-bytes", a->segment_bytes);
  if (a->replicas > 0) mq__arg_long(&e[n++], "x-initial-cluster-size", a->replicas);
  amqp_table_t args = {n, e};
  if (mq__declare_queue_hint(c, a->name, args, MQ__STREAM_HINT, err, errlen) < 0)
    return -1;
  amqp_queue_bind(c, MQ_CHANNEL, amqp_cstring_bytes(a->name),
                  amqp_cstring_bytes(MQ_GROUPS_EXCHANGE),
                  amqp_cstring_bytes(MQ_HISTORY_BINDING), amqp_empty_table);
  return mq_rpc_check(amqp_get_rpc_reply(c), "bind the history stream", err, errlen);
}

/* ---- the address list ------------------------------------------------- */

/* Copies [b, e) without surrounding blanks; NULL when nothing is left or
 * out of memory (*empty tells which). */
static char *mq__url_item(const char *b, const char *e, int *empty) {
  while (b < e && isspace((unsigned char)*b)) b++;
  while (e > b && isspace((unsigned char)e[-1])) e--;
  *empty = b == e;
  if (*empty) return NULL;
  size_t n = (size_t)(e - b);
  char *s = malloc(n + 1);
  if (!s) return NULL;
  memcpy(s, b, n);
  s[n] = '\0';
  return s;
}

/* Appends [b, e) as one address; -1 with a reason on failure. */
static int mq__url_list_add(mq_url_list *l, const char *b, const char *e,
                           char *err, size_t errlen) {
  if (l->n == MQ_URL_LIST_MAX) {
    if (err && errlen)
      snprintf(err, errlen, "more than %d broker addresses", MQ_URL_LIST_MAX);
    return -1;
  }
  int empty;
  char *s = mq__url_item(b, e, &empty);
  if (!s) {
    if (err && errlen)
      snprintf(err, errlen, "%s", empty ? "empty address in the list"
                                        : "out of memory");
    return -1;
  }
  l->urls[l->n++] = s;
  return 0;
}

int mq_url_list_parse(mq_url_list *l, const char *spec, unsigned seed,
                      char *err, size_t errlen) {
  memset(l, 0, sizeof *l);
  spec = spec ? spec : "";
  if (!strchr(spec, ',')) {
    /* One address: kept byte for byte, as before lists existed. */
    l->urls[0] = strdup(spec);
    if (!l->urls[0]) {
      if (err && errlen) snprintf(err, errlen, "out of memory");
      return -1;
    }
    l->n = 1;
    return 0;
  }
  for (const char *b = spec;;) {
    const char *comma = strchr(b, ',');
    const char *e = comma ? comma : b + strlen(b);
    if (mq__url_list_add(l, b, e, err, errlen) < 0) {
      mq_url_list_free(l);
      return -1;
    }
    if (!comma) break;
    b = comma + 1;
  }
  l->cur = seed % l->n;
  return 0;
}

const char *mq_url_list_current(const mq_url_list *l) {
  return l->n ? l->urls[l->cur] : "";
}

int mq_url_list_next(mq_url_list *l) {
  if (!l->n) return 1;
  l->cur = (l->cur + 1) % l->n;
  if (++l->failed < l->n) return 0;
  l->failed = 0;
  return 1;
}

void mq_url_list_connected(mq_url_list *l) { l->failed = 0; }

void mq_url_list_free(mq_url_list *l) {
  for (size_t i = 0; i < l->n; i++) {
    explicit_bzero(l->urls[i], strlen(l->urls[i]));
    free(l->urls[i]);
  }
  memset(l, 0, sizeof *l);
}

void mq_url_host_port(const char *url, char *out, size_t outlen) {
  if (!outlen) return;
  snprintf(out, outlen, "?");
  char *copy = strdup(url ? url : "");
  if (!copy) return;
  struct amqp_connection_info info;
  amqp_default_connection_info(&info);
  if (amqp_parse_url(copy, &info) == AMQP_STATUS_OK)
    snprintf(out, outlen, "%s:%d", info.host, info.port);
  explicit_bzero(copy, strlen(copy));
  free(copy);
}

int mq_queue_type_parse(const char *s) {
  if (s && strcmp(s, "classic") == 0) return 0;
  if (s && strcmp(s, "quorum") == 0) return 1;
  return -1;
}

int mq_settings_check(const char *url, const char *queue_type, char *err,
                      size_t errlen) {
  mq_url_list l;
  char why[96];
  if (mq_url_list_parse(&l, url, 0, why, sizeof why) < 0) {
    if (err && errlen) snprintf(err, errlen, "amqp.url: %s", why);
    return -1;
  }
  mq_url_list_free(&l);
  if (mq_queue_type_parse(queue_type) < 0) {
    if (err && errlen)
      snprintf(err, errlen, "amqp.queue_type: expected classic or quorum");
    return -1;
  }
  return 0;
}
