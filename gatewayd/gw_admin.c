/*
 * gw_admin.c - the gateway's admin endpoint (see gw_admin.h).
 *
 * A scrape costs one accept, one read, rendering ~6 KiB of text from
 * counters the loop already keeps, and one write: tens of microseconds of
 * loop time, every 15 s or so. Nothing here walks the connections, so a
 * scrape costs the same with 10 or 100,000 clients; the price is that
 * per-connection figures (queued messages, unsent bytes) are not shown.
 *
 * Admin connections are few and short: at most GW_ADMIN_MAX_CONNS at once
 * (more are closed at accept), ADMIN_REQUEST_MAX bytes of request, and
 * ADMIN_TIMEOUT_MS to send it and read the answer. Each one owns its read
 * buffer and its response; both go in the handle's close callback.
 */
#include "gw_admin.h"

#include <inttypes.h>
#include <llhttp.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "gw_server.h"
#include "hostport.h"
#include "log.h"

#define GW_ADMIN_MAX_CONNS 16
#define GW_ADMIN_URL_MAX 256
#define GW_ADMIN_REAP_MS 1000

struct gw_admin_conn {
  uv_tcp_t tcp;
  gw_admin *admin;
  gw_admin_conn *prev, *next; /* in admin->conns until closing */
  uint64_t since_ms;
  llhttp_t parser;
  size_t bytes;    /* request bytes read so far */
  size_t url_len;
  int url_too_long;
  int complete;    /* the request is parsed */
  int answered;    /* the response is out: reading only to see the client go */
  int closing;
  uv_write_t wr;
  uv_shutdown_t sd;
  strbuf body;   /* the response body */
  char head[256];  /* the response head */
  char url[GW_ADMIN_URL_MAX];
  char rbuf[1024];
};

/* ---- close reasons ------------------------------------------------------ */

static const char *const gw_admin__reason_names[GW_CLOSE_N] = {
    "http",   "normal",   "going_away", "protocol_error", "invalid_payload",
    "policy", "too_big",  "internal",   "try_again",      "abnormal",
    "other",  "expired",  "revoked"};

gw_close_reason gw_admin_close_reason(int upgraded, int code) {
  if (!upgraded) return GW_CLOSE_HTTP;
  switch (code) {
    case 1000: return GW_CLOSE_NORMAL;
    case 1001: return GW_CLOSE_GOING_AWAY;
    case 1002:
    case 1003: return GW_CLOSE_PROTOCOL;
    case 1006: return GW_CLOSE_ABNORMAL;
    case 1007: return GW_CLOSE_INVALID_PAYLOAD;
    case 1008: return GW_CLOSE_POLICY;
    case 1009: return GW_CLOSE_TOO_BIG;
    case 1011: return GW_CLOSE_INTERNAL;
    case 1013: return GW_CLOSE_TRY_AGAIN;
    case 4401: return GW_CLOSE_EXPIRED;
    case 4403: return GW_CLOSE_REVOKED;
    default: return GW_CLOSE_OTHER;
  }
}

const char *gw_admin_close_reason_name(gw_close_reason r) {
  return r < GW_CLOSE_N ? gw_admin__reason_names[r] : "other";
}

void gw_admin_count_close(gw_stats *st, int upgraded, int code) {
  st->closes[gw_admin_close_reason(upgraded, code)]++;
}

uint64_t gw_admin_now_us(void) { return uv_hrtime() / 1000u; }

void gw_admin_observe_reply(gw_stats *st, int connect, uint64_t sent_us) {
  uint64_t now = gw_admin_now_us();
  prom_hist_observe(&st->reply_latency[connect ? 0 : 1],
                    now > sent_us ? now - sent_us : 0);
}

/* ---- rendering ------------------------------------------------------------ */

typedef struct gw_admin__metric {
  const char *name, *type, *help;
  size_t offset; /* of a uint64_t in gw_stats */
} gw_admin__metric;

#define GW_ADMIN_STAT(name, type, field, help) \
  {"wsgw_gateway_" name, type, help, offsetof(gw_stats, field)}

/* Unlabelled counters straight from gw_stats. */
static const gw_admin__metric gw_admin__counters[] = {
    GW_ADMIN_STAT("connections_opened_total", "counter", conns_opened,
                  "TCP connections accepted on the websocket listener."),
    GW_ADMIN_STAT("messages_received_total", "counter", msgs_in,
                  "Websocket messages received from clients."),
    GW_ADMIN_STAT("messages_sent_total", "counter", msgs_out,
                  "Websocket data messages queued to clients (replies and events)."),
    GW_ADMIN_STAT("bytes_received_total", "counter", bytes_in,
                  "Bytes read from client sockets, HTTP and websocket framing included."),
    GW_ADMIN_STAT("bytes_sent_total", "counter", bytes_out,
                  "Bytes written to client sockets, HTTP and websocket framing included."),
    GW_ADMIN_STAT("socket_writes_total", "counter", writes,
                  "Writes to client sockets (each a writev of what the connection had "
                  "queued; gateway.write_delay lets events share one)."),
    GW_ADMIN_STAT("group_messages_total", "counter", group_msgs,
                  "Group messages received from the broker for a group with local members."),
    GW_ADMIN_STAT("group_deliveries_total", "counter", deliveries,
                  "Group messages queued to members (one per member per message)."),
    GW_ADMIN_STAT("slow_closes_total", "counter", slow_closes,
                  "Connections closed (1008) because their unsent bytes passed max_send_queue."),
    GW_ADMIN_STAT("rate_limit_closes_total", "counter", rate_closes,
                  "Connections closed (1008) for sending faster than max_rate."),
    GW_ADMIN_STAT("reply_timeouts_total", "counter", reply_timeouts,
                  "Client messages no worker answered within reply_timeout."),
    GW_ADMIN_STAT("replies_dropped_total", "counter", replies_dropped,
                  "Worker replies dropped: duplicate, late, or for a closed connection."),
    GW_ADMIN_STAT("partial_budget_closes_total", "counter", partial.refused,
                  "Connections closed (1013) because partially received messages held max_partial_total."),
    GW_ADMIN_STAT("partial_message_bytes", "gauge", partial.used,
                  "Heap bytes held in partially received client messages (bound: max_partial_total)."),
    GW_ADMIN_STAT("ping_timeouts_total", "counter", ping_timeouts,
                  "Connections closed after ping_timeout without a byte from the client."),
    GW_ADMIN_STAT("refreshes_total", "counter", refreshes,
                  "Worker replies that moved an open connection's expiry (a token refresh)."),
    GW_ADMIN_STAT("expiry_closes_total", "counter", expiry_closes,
                  "Connections closed (4401) at the end of their refresh window."),
    GW_ADMIN_STAT("rechecks_total", "counter", rechecks,
                  "Re-checks of application grants sent to workers (a reply's recheck came due)."),
    GW_ADMIN_STAT("recheck_leaves_total", "counter", recheck_leaves,
                  "Groups left because a re-check found the application's grant revoked."),
    GW_ADMIN_STAT("kicks_total", "counter", kicks_received,
                  "Kick messages received (by user or by connection), whether or not they "
                  "found a connection here."),
    GW_ADMIN_STAT("kick_closes_total", "counter", kick_closes,
                  "Connections closed (4403) by a kick."),
};

static void gw_admin__labelled(strbuf *b, const char *name, const char *key,
                               const char *value, uint64_t v) {
  char labels[96];
  snprintf(labels, sizeof(labels), "%s=\"%s\"", key, value);
  prom_sample(b, name, labels, v);
}

static void gw_admin__handshakes(strbuf *b, const gw_stats *st) {
  static const char name[] = "wsgw_gateway_handshakes_total";
  prom_family(b, name, "counter",
              "Websocket handshakes by outcome: accepted (101), rejected by a "
              "worker (403), failed (503: broker, backlog, limits, timeout), "
              "http_error (not a valid upgrade), timeout (no request head), "
              "origin_refused, client_limit.");
  gw_admin__labelled(b, name, "result", "accepted", st->handshakes_accepted);
  gw_admin__labelled(b, name, "result", "rejected", st->handshakes_rejected);
  gw_admin__labelled(b, name, "result", "failed", st->handshakes_failed);
  gw_admin__labelled(b, name, "result", "http_error", st->http_errors);
  gw_admin__labelled(b, name, "result", "timeout", st->handshake_timeouts);
  gw_admin__labelled(b, name, "result", "origin_refused", st->origin_rejects);
  gw_admin__labelled(b, name, "result", "client_limit", st->client_limit_rejects);
}

static void gw_admin__closes(strbuf *b, const gw_stats *st) {
  static const char name[] = "wsgw_gateway_connections_closed_total";
  prom_family(b, name, "counter",
              "Connections ended, by reason (from the close code; http: never upgraded).");
  for (int r = 0; r < GW_CLOSE_N; r++)
    gw_admin__labelled(b, name, "reason", gw_admin_close_reason_name(r), st->closes[r]);
}

/* Unlabelled families: {name, type, help} and a value each. */
static void gw_admin__families(strbuf *b, const char *const fam[][3], const uint64_t *v,
                               size_t n) {
  for (size_t i = 0; i < n; i++) {
    prom_family(b, fam[i][0], fam[i][1], fam[i][2]);
    prom_sample(b, fam[i][0], NULL, v[i]);
  }
}

static void gw_admin__gauges(strbuf *b, const gw_admin_gauges *g) {
  prom_family(b, "wsgw_gateway_connections", "gauge",
              "Client sockets open, in any state (handshake, open, closing).");
  prom_sample(b, "wsgw_gateway_connections", NULL, g->connections);
  prom_family(b, "wsgw_gateway_groups", "gauge", "Groups with at least one local member.");
  prom_sample(b, "wsgw_gateway_groups", NULL, g->groups);
  prom_family(b, "wsgw_gateway_groups_lingering", "gauge",
              "Groups without members kept bound for group_linger (bound: "
              "max_lingering_groups); bindings held = groups + this.");
  prom_sample(b, "wsgw_gateway_groups_lingering", NULL, g->groups_lingering);
  prom_family(b, "wsgw_gateway_group_rejoins_total", "counter",
              "Joins that found their group lingering: a bind saved.");
  prom_sample(b, "wsgw_gateway_group_rejoins_total", NULL, g->lingering_rejoins);
  prom_family(b, "wsgw_gateway_amqp_bind_backlog", "gauge",
              "Binds and unbinds waiting for the AMQP thread (bound: max_bind_backlog).");
  prom_sample(b, "wsgw_gateway_amqp_bind_backlog", NULL, g->bind_backlog);
  prom_family(b, "wsgw_gateway_group_members", "gauge",
              "Memberships: (connection, group) pairs.");
  prom_sample(b, "wsgw_gateway_group_members", NULL, g->members);
  prom_family(b, "wsgw_gateway_amqp_up", "gauge",
              "1 while connected to the broker with the gateway's queue consumed.");
  prom_sample(b, "wsgw_gateway_amqp_up", NULL, g->amqp_up);
  static const char bl[] = "wsgw_gateway_amqp_backlog_bytes";
  prom_family(b, bl, "gauge",
              "Bytes queued between the loop and the AMQP thread (bound: amqp_backlog).");
  gw_admin__labelled(b, bl, "direction", "to_broker", g->backlog_to_broker);
  gw_admin__labelled(b, bl, "direction", "from_broker", g->backlog_from_broker);
  static const char rp[] = "wsgw_gateway_amqp_read_pauses_total";
  prom_family(b, rp, "counter",
              "Times the AMQP thread stopped reading because the loop had amqp_backlog "
              "bytes of events still to take (the loop is not keeping up).");
  prom_sample(b, rp, NULL, g->amqp_read_pauses);
  static const char *const fam[][3] = {
      {"wsgw_gateway_amqp_batches_published_total", "counter",
       "Batches of channel messages published (one AMQP message each; amqp_batch)."},
      {"wsgw_gateway_amqp_batched_messages_total", "counter",
       "Channel messages that went in those batches."},
      {"wsgw_gateway_amqp_reply_batches_total", "counter",
       "Batches of replies read from workers (one AMQP message each)."},
      {"wsgw_gateway_amqp_batched_replies_total", "counter",
       "Replies that came in those batches."}};
  const gw_bridge_batch_stats *bs = &g->batches;
  const uint64_t v[] = {bs->batches_out, bs->batched_out, bs->batches_in, bs->batched_in};
  gw_admin__families(b, fam, v, 4);
}

/* The history stream's consumer (history on only). */
static void gw_admin__history(strbuf *b, const gw_stats *st, const gw_admin_gauges *g) {
  if (!g->hist_on) return;
  static const char *const fam[][3] = {
      {"wsgw_gateway_history_messages_total", "counter",
       "Messages read from the history stream (every event, control key and marker)."},
      {"wsgw_gateway_history_resumes_total", "counter",
       "Reconnections that resumed reading the stream at the last offset read."},
      {"wsgw_gateway_history_gaps_total", "counter",
       "Times messages were found gone on resuming (retention passed while cut off)."},
      {"wsgw_gateway_history_gap_messages_total", "counter",
       "Messages lost to those gaps."},
      {"wsgw_gateway_history_resets_total", "counter",
       "Times the gateway forgot its history: its first start, a recreated stream."},
      {"wsgw_gateway_history_stalls_total", "counter",
       "Stream consumptions that stopped receiving (not even the gateway's own marker "
       "came back within history.resume_timeout) and were resumed at the last offset."},
      {"wsgw_gateway_history_offset", "gauge", "Offset of the last stream message read."},
      {"wsgw_gateway_history_ring_messages", "gauge",
       "Messages of the history this process holds to recover wsgw.2 clients from."},
      {"wsgw_gateway_history_ring_bytes", "gauge",
       "Their bytes, frames and envelopes included (bound: history.memory)."},
      {"wsgw_gateway_history_ring_evicted_total", "counter",
       "Messages dropped from the ring at history.memory (the oldest first)."},
      {"wsgw_gateway_history_shared", "gauge",
       "1 while this process reads the stream from process 0's shared copy "
       "(history.shared) instead of the broker."},
      {"wsgw_gateway_history_shared_enters_total", "counter",
       "Moves from the broker to the shared copy (it was live and ahead)."},
      {"wsgw_gateway_history_shared_leaves_total", "counter",
       "Moves back to the broker (overtaken, process 0 reconnecting or gone, a stall)."},
  };
  const uint64_t v[] = {g->hist_read,        g->hist_resumes,  g->hist_gaps,
                        g->hist_gap_lost,    g->hist_resets,   g->hist_stalls,
                        g->hist_last_offset,
                        g->ring_messages,    g->ring_bytes,    g->ring_evicted,
                        g->hist_shared,      g->hist_shared_enters, g->hist_shared_leaves};
  gw_admin__families(b, fam, v, sizeof v / sizeof *v);
  /* wsgw.2 clients (gw_relay, gw_conn) */
  static const char rec[] = "wsgw_gateway_history_recoveries_total";
  prom_family(b, rec, "counter",
              "Positions wsgw.2 subscriptions named, by result: recovered (ok), older than "
              "the ring (expired), not of their group in this history (unknown).");
  gw_admin__labelled(b, rec, "result", "ok", st->hist_recovered);
  gw_admin__labelled(b, rec, "result", "expired", st->hist_recover_expired);
  gw_admin__labelled(b, rec, "result", "unknown", st->hist_recover_unknown);
  static const char *const cu[][3] = {
      {"wsgw_gateway_history_lags_total", "counter",
       "wsgw.2 connections whose send queue was full: served from the history instead "
       "of closed."},
      {"wsgw_gateway_history_caught_up_total", "counter",
       "Catch-ups (recoveries and lags) that reached the live stream."},
      {"wsgw_gateway_history_lag_expired_total", "counter",
       "Catch-ups whose owed events had left the ring (the client got a notice)."},
  };
  const uint64_t w[] = {st->hist_lags, st->hist_caught_up, st->hist_lag_expired};
  gw_admin__families(b, cu, w, sizeof w / sizeof *w);
}

/* permessage-deflate (compression on only). */
static void gw_admin__compression(strbuf *b, const gw_stats *st, const gw_admin_gauges *g) {
  if (!g->z_on) return;
  static const char *const fam[][3] = {
      {"wsgw_gateway_compressed_messages_sent_total", "counter",
       "Of messages_sent, those sent compressed (permessage-deflate)."},
      {"wsgw_gateway_compressions_total", "counter",
       "Messages compressed: once each, however many clients receive them."},
      {"wsgw_gateway_compression_input_bytes_total", "counter",
       "Payload bytes of those messages before compression."},
      {"wsgw_gateway_compression_output_bytes_total", "counter", "... and after."},
      {"wsgw_gateway_compressions_chained_total", "counter",
       "Messages compressed once more after their group's previous event, for the clients "
       "whose window ends with it (once each, however many receive them)."},
      {"wsgw_gateway_compression_chained_output_bytes_total", "counter",
       "Their payload bytes after (against compression_output_bytes_total alone)."},
      {"wsgw_gateway_compression_not_smaller_total", "counter",
       "Messages over compression.min_size that compressed to no fewer bytes (sent plain)."},
      {"wsgw_gateway_decompressions_total", "counter",
       "Compressed client messages decompressed."},
      {"wsgw_gateway_decompression_refusals_total", "counter",
       "Compressed client messages refused: over max_message once decompressed (1009) "
       "or not valid deflate data (1007)."},
  };
  const uint64_t v[] = {st->msgs_out_z, g->z_twins,   g->z_plain_bytes, g->z_bytes,
                        g->z_chained,  g->z_bytes_chained, g->z_not_smaller, g->z_inflated,
                        g->z_refused};
  gw_admin__families(b, fam, v, sizeof v / sizeof *v);
}

void gw_admin_render(strbuf *b, const gw_stats *st, const gw_admin_gauges *g) {
  gw_admin__gauges(b, g);
  gw_admin__history(b, st, g);
  gw_admin__compression(b, st, g);
  for (size_t i = 0; i < sizeof(gw_admin__counters) / sizeof(gw_admin__counters[0]); i++) {
    const gw_admin__metric *m = &gw_admin__counters[i];
    prom_family(b, m->name, m->type, m->help);
    prom_sample(b, m->name, NULL, *(const uint64_t *)((const char *)st + m->offset));
  }
  gw_admin__closes(b, st);
  gw_admin__handshakes(b, st);
  static const char sr[] = "wsgw_gateway_subscription_refusals_total";
  prom_family(b, sr, "counter",
              "Client messages the gateway answered itself: group changes over the "
              "connection's allowance (changes), too many binds queued (busy).");
  gw_admin__labelled(b, sr, "reason", "changes", st->changes_refused);
  gw_admin__labelled(b, sr, "reason", "busy", st->binds_busy_refused);
  prom_family(b, "wsgw_gateway_amqp_reconnects_total", "counter",
              "Broker connections established after the first.");
  prom_sample(b, "wsgw_gateway_amqp_reconnects_total", NULL,
              st->amqp_connects > 0 ? st->amqp_connects - 1 : 0);
  static const char h[] = "wsgw_gateway_worker_reply_seconds";
  prom_family(b, h, "histogram",
              "Time from publishing websocket.connect or websocket.receive to "
              "applying the worker's reply.");
  prom_hist_write(b, h, "kind=\"connect\"", &st->reply_latency[0]);
  prom_hist_write(b, h, "kind=\"receive\"", &st->reply_latency[1]);
}

/* ---- the endpoint ---------------------------------------------------------- */

static void gw_admin__gauges_of(const gw_server *s, gw_admin_gauges *g) {
  g->connections = s->n_conns;
  g->groups = s->groups.n_groups - s->groups.n_lingering;
  g->members = s->groups.n_members;
  g->groups_lingering = s->groups.n_lingering;
  g->lingering_rejoins = s->groups.lingering_rejoins;
  g->bind_backlog = s->bridge ? gw_bridge_bind_backlog(s->bridge) : 0;
  g->amqp_up = s->bridge && gw_bridge_is_up(s->bridge) && s->queue[0];
  g->backlog_to_broker = s->bridge ? gw_bridge_backlog_out(s->bridge) : 0;
  g->backlog_from_broker = s->bridge ? gw_bridge_backlog_in(s->bridge) : 0;
  g->amqp_read_pauses = s->bridge ? gw_bridge_read_pauses(s->bridge) : 0;
  if (s->bridge) gw_bridge_batch_stats_get(s->bridge, &g->batches);
  g->z_on = (uint64_t)s->cfg->compression.enabled;
  g->z_twins = s->deflate.stats.twins;
  g->z_plain_bytes = s->deflate.stats.plain_bytes;
  g->z_bytes = s->deflate.stats.z_bytes;
  g->z_not_smaller = s->deflate.stats.not_smaller;
  g->z_inflated = s->deflate.stats.inflated;
  g->z_refused = s->deflate.stats.refused;
  g->z_chained = s->deflate.stats.chained;
  g->z_bytes_chained = s->deflate.stats.z_bytes_chained;
  g->hist_on = s->bridge && s->cfg->history.enabled;
  if (!g->hist_on) return;
  gw_bridge_hist_stats h;
  gw_bridge_hist_stats_get(s->bridge, &h);
  g->hist_read = h.read;
  g->hist_resumes = h.resumes;
  g->hist_gaps = h.gaps;
  g->hist_gap_lost = h.gap_lost;
  g->hist_resets = h.resets;
  g->hist_last_offset = h.last_offset;
  g->hist_stalls = h.stalls;
  g->hist_shared = (uint64_t)h.shared;
  g->hist_shared_enters = h.shared_enters;
  g->hist_shared_leaves = h.shared_leaves;
  g->ring_messages = s->hist.n;
  g->ring_bytes = s->hist.bytes;
  g->ring_evicted = s->hist.evicted;
}

/* Why the gateway should get no new clients now, or NULL when it should. */
static const char *gw_admin__not_ready(const gw_server *s) {
  if (s->shutting_down) return "shutting down";
  /* The queue name arrives with the UP event; until then no handshake can
   * name its reply channel. */
  if (!s->bridge || !gw_bridge_is_up(s->bridge) || !s->queue[0])
    return "broker unavailable";
  if ((long)s->n_conns >= s->cfg->max_connections) return "at max_connections";
  return NULL;
}

static void gw_admin__on_closed(uv_handle_t *h) {
  gw_admin_conn *c = h->data;
  strbuf_free(&c->body);
  free(c);
}

static void gw_admin__close_conn(gw_admin_conn *c) {
  if (c->closing) return;
  c->closing = 1;
  gw_admin *a = c->admin;
  if (c->prev) c->prev->next = c->next; else a->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  a->n_conns--;
  uv_close((uv_handle_t *)&c->tcp, gw_admin__on_closed);
}

static void gw_admin__on_shutdown(uv_shutdown_t *req, int status) {
  (void)req;
  (void)status; /* the close (EOF, error or reaper) does the rest */
}

static void gw_admin__on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void gw_admin__on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

/* The response is out: half-close, and read until the client closes too.
 * Closing at once while request bytes sit unread (an oversized request)
 * would send a reset, which can destroy the response before the client
 * reads it. The reaper bounds the wait. */
static void gw_admin__on_write(uv_write_t *req, int status) {
  gw_admin_conn *c = req->data;
  if (c->closing) return; /* the close cancelled the write */
  c->answered = 1;
  if (status < 0 || uv_shutdown(&c->sd, (uv_stream_t *)&c->tcp, gw_admin__on_shutdown) != 0 ||
      uv_read_start((uv_stream_t *)&c->tcp, gw_admin__on_alloc, gw_admin__on_read) != 0)
    gw_admin__close_conn(c);
}

/* Sends head and body (which c owns); gw_admin__on_write takes it from there. */
static void gw_admin__send(gw_admin_conn *c, int status, const char *ctype,
                           int head_only) {
  uv_read_stop((uv_stream_t *)&c->tcp);
  if (c->body.failed) {
    strbuf_free(&c->body);
    status = 500;
    ctype = "text/plain; charset=utf-8";
  }
  size_t n = admin_response_head(c->head, sizeof(c->head), status, ctype, c->body.len);
  uv_buf_t bufs[2] = {uv_buf_init(c->head, (unsigned)n),
                      uv_buf_init(c->body.data, (unsigned)c->body.len)};
  unsigned nbufs = head_only || c->body.len == 0 ? 1 : 2;
  c->wr.data = c;
  if (n == 0 || uv_write(&c->wr, (uv_stream_t *)&c->tcp, bufs, nbufs, gw_admin__on_write) != 0)
    gw_admin__close_conn(c);
}

static void gw_admin__send_text(gw_admin_conn *c, int status, const char *text,
                                int head_only) {
  strbuf_printf(&c->body, "%s\n", text);
  gw_admin__send(c, status, "text/plain; charset=utf-8", head_only);
}

static void gw_admin__answer(gw_admin_conn *c) {
  gw_server *s = c->admin->srv;
  const char *method = llhttp_method_name((llhttp_method_t)llhttp_get_method(&c->parser));
  int head_only = strcmp(method, "HEAD") == 0;
  c->url[c->url_len] = '\0';
  switch (admin_route(method, c->url)) {
    case ADMIN_METRICS: {
      gw_admin_gauges g;
      gw_admin__gauges_of(s, &g);
      gw_admin_render(&c->body, &s->stats, &g);
      gw_admin__send(c, 200, PROM_CONTENT_TYPE, head_only);
      return;
    }
    case ADMIN_HEALTHZ:
      gw_admin__send_text(c, 200, "ok", head_only);
      return;
    case ADMIN_READYZ: {
      const char *why = gw_admin__not_ready(s);
      if (why) strbuf_printf(&c->body, "not ready: ");
      gw_admin__send_text(c, why ? 503 : 200, why ? why : "ready", head_only);
      return;
    }
    case ADMIN_NOT_FOUND:
      gw_admin__send_text(c, 404, "not found", head_only);
      return;
    case ADMIN_BAD_METHOD:
      gw_admin__send_text(c, 405, "method not allowed", 0);
      return;
  }
}

static int gw_admin__on_url(llhttp_t *p, const char *at, size_t n) {
  gw_admin_conn *c = p->data;
  if (c->url_len + n >= sizeof(c->url)) {
    c->url_too_long = 1;
    return -1;
  }
  memcpy(c->url + c->url_len, at, n);
  c->url_len += n;
  return 0;
}

static int gw_admin__on_complete(llhttp_t *p) {
  gw_admin_conn *c = p->data;
  c->complete = 1;
  return HPE_PAUSED; /* one request per connection: stop right here */
}

static const llhttp_settings_t gw_admin__settings = {
    .on_url = gw_admin__on_url,
    .on_message_complete = gw_admin__on_complete,
};

static void gw_admin__on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  gw_admin_conn *c = h->data;
  *buf = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void gw_admin__on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  gw_admin_conn *c = st->data;
  if (n == 0 || c->closing) return;
  if (n < 0) {
    gw_admin__close_conn(c);
    return;
  }
  if (c->answered) return; /* dropped: see gw_admin__on_write */
  c->bytes += (size_t)n;
  if (c->bytes > ADMIN_REQUEST_MAX) {
    gw_admin__send_text(c, 431, "request too large", 0);
    return;
  }
  llhttp_errno_t e = llhttp_execute(&c->parser, buf->base, (size_t)n);
  if (e == HPE_PAUSED && c->complete) gw_admin__answer(c);
  else if (e != HPE_OK) gw_admin__send_text(c, c->url_too_long ? 414 : 400, "bad request", 0);
}

static void gw_admin__on_connection(uv_stream_t *l, int status) {
  gw_admin *a = l->data;
  if (status < 0) {
    log_warn("metrics_accept_failed", "error=%s", uv_strerror(status));
    return;
  }
  gw_admin_conn *c = calloc(1, sizeof(*c));
  if (!c || uv_tcp_init(a->srv->loop, &c->tcp) != 0) {
    /* Out of memory: libuv keeps the pending socket and this listener
     * accepts nothing more; the process is in trouble anyway. */
    log_error("metrics_accept_failed", "error=%s", "out of memory");
    free(c);
    return;
  }
  c->tcp.data = c;
  c->admin = a;
  c->next = a->conns;
  if (a->conns) a->conns->prev = c;
  a->conns = c;
  a->n_conns++;
  c->since_ms = uv_now(a->srv->loop);
  llhttp_init(&c->parser, HTTP_REQUEST, &gw_admin__settings);
  c->parser.data = c;
  /* Past the cap the socket is taken and closed: a scraper retries, and a
   * flood of admin connections cannot take memory or loop time. */
  if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0 || a->n_conns > GW_ADMIN_MAX_CONNS ||
      uv_read_start((uv_stream_t *)&c->tcp, gw_admin__on_alloc, gw_admin__on_read) != 0)
    gw_admin__close_conn(c);
}

static void gw_admin__reap(uv_timer_t *t) {
  gw_admin *a = t->data;
  uint64_t now = uv_now(a->srv->loop);
  for (gw_admin_conn *c = a->conns, *next; c; c = next) {
    next = c->next;
    if (now - c->since_ms >= ADMIN_TIMEOUT_MS) gw_admin__close_conn(c);
  }
}

int gw_admin_start(gw_admin *a, gw_server *s, const char *spec) {
  memset(a, 0, sizeof(*a));
  a->srv = s;
  if (!spec || !spec[0]) {
    log_info("metrics_off", "reason=%s", "metrics_listen is empty");
    return 0;
  }
  struct sockaddr_storage ss;
  socklen_t len;
  if (hostport_listen_addr(spec, &ss, &len) != 0) {
    log_error("metrics_listen_invalid", "listen=%s", spec);
    return -1;
  }
  uv_tcp_init(s->loop, &a->listener);
  uv_timer_init(s->loop, &a->reaper);
  a->listener.data = a->reaper.data = a;
  a->on = 1;
  int rc = uv_tcp_bind(&a->listener, (struct sockaddr *)&ss, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&a->listener, 64, gw_admin__on_connection);
  if (rc != 0) {
    log_error("metrics_listen_failed", "listen=%s error=%s", spec, uv_strerror(rc));
    return -1;
  }
  uv_timer_start(&a->reaper, gw_admin__reap, GW_ADMIN_REAP_MS, GW_ADMIN_REAP_MS);
  log_info("metrics_listening", "listen=%s", spec);
  return 0;
}

void gw_admin_close(gw_admin *a) {
  if (!a->on) return;
  a->on = 0;
  uv_close((uv_handle_t *)&a->listener, NULL);
  uv_close((uv_handle_t *)&a->reaper, NULL);
  while (a->conns) gw_admin__close_conn(a->conns);
}
