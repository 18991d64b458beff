/*
 * gw_relay.c - a connection's conversation with the workers (see
 * gw_relay.h).
 *
 * One message per connection is with a worker at a time; the others wait in
 * order (bounded by max_pending), so any number of workers see a
 * connection's messages in the order it sent them. A reply is applied only
 * if its `order` is the one in flight: a redelivered message answered twice
 * changes nothing the second time.
 */
#include "gw_relay.h"

#include <stdlib.h>
#include <string.h>

#include "chan_msg.h"
#include "chan_reply_channel.h"
#include "gw_admin.h"
#include "gw_conn.h"
#include "log.h"

static int gw_relay__reply_channel(gw_conn *c, char *buf, size_t len) {
  if (!c->srv->queue[0]) return -1;
  return chan_reply_channel_format(buf, len, c->srv->queue, c->id) < 0 ? -1 : 0;
}

static const char **gw_relay__group_names(gw_conn *c) {
  const char **names = malloc((c->n_members ? c->n_members : 1) * sizeof(*names));
  if (!names) return NULL;
  for (uint16_t i = 0; i < c->n_members; i++) names[i] = c->members[i]->group->name;
  return names;
}

/* Encodes m and hands it to the bridge. -1: broker down or backlog full. */
static int gw_relay__publish(gw_conn *c, chan_msg *m) {
  char channel[CHAN_QUEUE_NAME_MAX + 64];
  if (gw_relay__reply_channel(c, channel, sizeof(channel)) != 0) return -1;
  c->sent_us = gw_admin_now_us(); /* for the reply latency histogram */
  m->reply_channel = channel;
  m->path = (char *)c->path;
  m->session_json = c->session;
  const char **names = NULL;
  if (m->kind != CHAN_MSG_CONNECT) {
    names = gw_relay__group_names(c);
    if (!names) return -1;
    m->groups = (char **)names;
    m->n_groups = c->n_members;
  }
  size_t len;
  char *json = chan_msg_encode(m, &len);
  free(names);
  if (!json) return -1;
  /* A disconnect needs no answer, so nobody is told if it is refused. */
  uint64_t tell = m->kind == CHAN_MSG_DISCONNECT ? 0 : c->id;
  return amqp_bridge_publish(c->srv->bridge, chan_msg_queue(m->kind), tell, json, len);
}

static void gw_relay__receive(gw_conn *c, int binary, const char *data,
                              size_t len) {
  chan_msg m = {.kind = CHAN_MSG_RECEIVE, .order = c->next_order,
                .is_binary = binary, .data = (char *)data, .data_len = len};
  if (gw_relay__publish(c, &m) != 0) {
    gw_conn_close(c, 1013, "broker unavailable");
    return;
  }
  c->inflight = 1;
  c->inflight_order = c->next_order++;
  gw_timeq_push(&c->srv->replies, &c->rq, uv_now(c->srv->loop));
}

void gw_relay_disconnect(gw_conn *c, int code) {
  chan_msg m = {.kind = CHAN_MSG_DISCONNECT, .order = c->next_order++, .code = code};
  if (gw_relay__publish(c, &m) != 0)
    log_debug("disconnect_not_published", "id=%llu", (unsigned long long)c->id);
}

/* A fixed one-second window: cheap (8 bytes, no timer) at the cost of
 * letting up to twice the rate through across a window boundary. */
static int gw_relay__over_rate(gw_conn *c) {
  uint32_t second = (uint32_t)(uv_now(c->srv->loop) / 1000);
  if (second != c->rate_window) {
    c->rate_window = second;
    c->rate_count = 0;
  }
  return ++c->rate_count > (uint32_t)c->srv->cfg->max_rate;
}

/* A client message: to a worker now, or queued behind the one in flight, so
 * that any number of workers see one connection's messages in order. */
void gw_relay_client_message(gw_conn *c, int binary, const uint8_t *msg,
                             size_t len) {
  c->srv->stats.msgs_in++;
  if (c->state != GW_CONN_OPEN) return;
  if (gw_relay__over_rate(c)) {
    c->srv->stats.rate_closes++;
    log_info("conn_rate_limited", "id=%llu", (unsigned long long)c->id);
    gw_conn_close(c, 1008, "message rate limit");
    return;
  }
  if (!c->inflight) {
    gw_relay__receive(c, binary, (const char *)msg, len);
    return;
  }
  if (c->n_pending >= c->srv->cfg->max_pending) {
    gw_conn_close(c, 1008, "too many messages waiting");
    return;
  }
  gw_pending *p = malloc(sizeof(*p) + len);
  if (!p) {
    gw_conn_close(c, 1011, "out of memory");
    return;
  }
  p->next = NULL;
  p->binary = binary;
  p->len = len;
  if (len) memcpy(p->data, msg, len); /* wslay passes NULL for an empty message */
  if (c->pend_tail) c->pend_tail->next = p; else c->pend_head = p;
  c->pend_tail = p;
  c->n_pending++;
}

static void gw_relay__next_pending(gw_conn *c) {
  gw_pending *p = c->pend_head;
  if (!p || c->inflight || c->state != GW_CONN_OPEN) return;
  c->pend_head = p->next;
  if (!c->pend_head) c->pend_tail = NULL;
  c->n_pending--;
  gw_relay__receive(c, p->binary, p->data, p->len);
  free(p);
}

static void gw_relay__addr(const struct sockaddr_storage *ss, chan_addr *out) {
  out->host[0] = '\0';
  out->port = 0;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    uv_ip4_name(a, out->host, sizeof(out->host));
    out->port = ntohs(a->sin_port);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    uv_ip6_name(a, out->host, sizeof(out->host));
    out->port = ntohs(a->sin6_port);
  }
}

static void gw_relay__peer(gw_conn *c, chan_addr *client, chan_addr *server) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  memset(&ss, 0, sizeof(ss));
  uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len);
  gw_relay__addr(&ss, client);
  len = sizeof(ss);
  memset(&ss, 0, sizeof(ss));
  uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len);
  gw_relay__addr(&ss, server);
}

/* Applies max_per_client. Returns -1 (and answers 503) at the limit. */
static int gw_relay__count_client(gw_conn *c, const char *addr) {
  long limit = c->srv->cfg->max_per_client;
  if (limit <= 0) return 0;
  c->client = gw_clients_acquire(&c->srv->clients, addr, (uint32_t)limit);
  if (c->client) return 0;
  c->srv->stats.client_limit_rejects++;
  log_info("client_limit", "id=%llu client=%s", (unsigned long long)c->id, addr);
  gw_conn_reject(c, 503);
  return -1;
}

/* The head is complete and valid: ask a worker whether to accept. */
void gw_relay_connect(gw_conn *c, const gw_http_upgrade *up) {
  chan_msg m = {.kind = CHAN_MSG_CONNECT, .order = 0, .query_string = (char *)up->query};
  c->path = up->path;
  gw_relay__peer(c, &m.client, &m.server);
  /* Behind a trusted proxy the client is the X-Forwarded-For hop: limits,
   * logs and workers all see the real address. */
  chan_addr peer = m.client;
  int forwarded = gw_http_client_addr(c->req, &peer, c->srv->cfg->trusted_proxies, &m.client);
  if (gw_relay__count_client(c, m.client.host) != 0) return;
  if (gw_http_req_headers(c->req, &m.headers, &m.n_headers) != 0) {
    gw_conn_reject(c, 503);
    return;
  }
  int rc = gw_relay__publish(c, &m);
  free(m.headers);
  if (rc != 0) {
    c->srv->stats.handshakes_failed++;
    gw_conn_reject(c, 503);
    return;
  }
  log_info("conn_connecting", "id=%llu client=%s:%d peer=%s:%d forwarded=%d path=%s",
           (unsigned long long)c->id, m.client.host, m.client.port, peer.host, peer.port,
           forwarded, c->path);
  c->connect_sent = 1;
  c->inflight = 1;
  c->inflight_order = 0;
  c->next_order = 1;
  c->state = GW_CONN_CONNECTING;
  gw_timeq_push(&c->srv->connecting, &c->tq, uv_now(c->srv->loop));
  /* Nothing more is read until the worker answers: anything the client
   * sends early is either in req->early or waits in the kernel. */
  uv_read_stop((uv_stream_t *)&c->tcp);
}

static int gw_relay__has_name(char *const *names, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(names[i], name) == 0) return 1;
  return 0;
}

/* Makes the membership exactly `names`. O(old x new) string compares: the
 * worker caps a connection at ~100 groups, so this stays in microseconds. */
static void gw_relay__set_groups(gw_conn *c, char *const *names, size_t n) {
  gw_group_table *t = &c->srv->groups;
  uint16_t kept = 0;
  for (uint16_t i = 0; i < c->n_members; i++) {
    gw_member *m = c->members[i];
    if (gw_relay__has_name(names, n, m->group->name)) c->members[kept++] = m;
    else gw_group_leave(t, m);
  }
  c->n_members = kept;
  if (n > UINT16_MAX) n = UINT16_MAX;
  /* Every kept member is in names, so n slots hold the new set. */
  gw_member **grown = realloc(c->members, (n ? n : 1) * sizeof(*grown));
  if (!grown) {
    gw_conn_close(c, 1011, "out of memory");
    return;
  }
  c->members = grown;
  for (size_t i = 0; i < n; i++) {
    int have = 0;
    for (uint16_t j = 0; j < c->n_members && !have; j++)
      have = strcmp(c->members[j]->group->name, names[i]) == 0;
    if (have) continue;
    gw_member *m = gw_group_join(t, names[i], c);
    if (!m) {
      gw_conn_close(c, 1011, "out of memory");
      return;
    }
    c->members[c->n_members++] = m;
  }
}

static void gw_relay__set_session(gw_conn *c, const char *json) {
  size_t len = strlen(json);
  if (len > (size_t)c->srv->cfg->max_session) {
    log_warn("session_too_large", "id=%llu bytes=%zu", (unsigned long long)c->id, len);
    return;
  }
  char *copy = strdup(json);
  if (!copy) return;
  free(c->session);
  c->session = copy;
}

void gw_relay_apply_reply(gw_conn *c, const chan_reply *r) {
  if (!c->inflight || r->order != c->inflight_order ||
      c->state == GW_CONN_CLOSED) {
    /* A duplicate (a redelivered message answered twice) or too late. */
    c->srv->stats.replies_dropped++;
    return;
  }
  c->inflight = 0;
  gw_timeq_remove(&c->rq);
  int connecting = c->state == GW_CONN_CONNECTING;
  gw_admin_observe_reply(&c->srv->stats, connecting, c->sent_us);
  if (connecting) gw_timeq_remove(&c->tq);
  if (r->has_groups && c->state != GW_CONN_CLOSING)
    gw_relay__set_groups(c, r->groups, r->n_groups);
  if (r->session_json) gw_relay__set_session(c, r->session_json);
  if (connecting) {
    if (r->accept != 1 || r->close_code) {
      c->srv->stats.handshakes_rejected++;
      gw_conn_reject(c, 403);
      return;
    }
    if (gw_conn_upgrade(c) != 0) {
      gw_conn_reject(c, 503);
      return;
    }
  }
  for (size_t i = 0; i < r->n_texts && c->state == GW_CONN_OPEN; i++)
    gw_send_text(c, 1, r->texts[i].data, r->texts[i].len);
  if (r->has_bytes && c->state == GW_CONN_OPEN)
    gw_send_text(c, 2, r->bytes, r->bytes_len);
  if (r->close_code && c->state == GW_CONN_OPEN) gw_conn_close(c, r->close_code, "");
  if (connecting) gw_conn_start_reading(c);
  gw_relay__next_pending(c);
}

void gw_relay_refused(gw_conn *c) {
  if (!c->inflight) return;
  log_warn("publish_refused", "id=%llu order=%llu", (unsigned long long)c->id,
           (unsigned long long)c->inflight_order);
  if (c->state == GW_CONN_CONNECTING) {
    c->srv->stats.handshakes_failed++;
    gw_conn_reject(c, 503);
  } else if (c->state == GW_CONN_OPEN) {
    gw_conn_close(c, 1013, "try again later");
  }
}

void gw_relay_timeout(gw_conn *c) {
  c->srv->stats.reply_timeouts++;
  log_warn("reply_timeout", "id=%llu order=%llu", (unsigned long long)c->id,
           (unsigned long long)c->inflight_order);
  gw_timeq_remove(&c->rq);
  c->inflight = 0;
  static const char msg[] = "{\"error\": \"no worker answered in time\"}";
  gw_send_text(c, 1, msg, sizeof(msg) - 1);
  gw_relay__next_pending(c);
}
