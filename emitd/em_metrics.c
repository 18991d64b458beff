/*
 * em_metrics.c - /metrics of emitd (see em_metrics.h).
 *
 * Owns: names and help texts. Must not: do I/O.
 */
#include "em_metrics.h"

#include <stdio.h>

static const int em_status_codes[EM_STATUS_N] = EM_STATUS_CODES;

int em_status_index(int status) {
  for (int i = 0; i < EM_STATUS_N; i++)
    if (em_status_codes[i] == status) return i;
  return -1;
}

static void em_metrics__one(strbuf *b, const char *name, const char *type,
                            const char *help, uint64_t v) {
  prom_family(b, name, type, help);
  prom_sample(b, name, NULL, v);
}

void em_metrics_write(strbuf *b, const em_stats *s, const em_gauges *g,
                      const em_broker_stats *bs) {
  prom_family(b, "wsgw_emit_requests_total", "counter",
              "HTTP requests answered, by status code.");
  for (int i = 0; i < EM_STATUS_N; i++) {
    char label[32];
    snprintf(label, sizeof label, "code=\"%d\"", em_status_codes[i]);
    prom_sample(b, "wsgw_emit_requests_total", label, s->requests[i]);
  }
  em_metrics__one(b, "wsgw_emit_events_total", "counter",
                  "Messages (event x group) the broker confirmed.", s->events_emitted);
  em_metrics__one(b, "wsgw_emit_events_failed_total", "counter",
                  "Messages of 503 answers not confirmed (refused, lost, timed out, not sent).",
                  s->events_failed);
  em_metrics__one(b, "wsgw_emit_pending", "gauge",
                  "Messages waiting for the broker's confirms (bounded by emit.max_pending).",
                  g->pending);
  em_metrics__one(b, "wsgw_emit_requests_waiting", "gauge",
                  "Requests waiting for the broker.", g->requests_waiting);
  em_metrics__one(b, "wsgw_emit_connections", "gauge", "Open HTTP connections.",
                  g->connections);
  em_metrics__one(b, "wsgw_emit_connections_total", "counter", "HTTP connections accepted.",
                  s->connections_total);
  em_metrics__one(b, "wsgw_emit_connections_refused_total", "counter",
                  "Connections over emit.max_connections, answered 503 and closed.",
                  s->connections_refused);
  em_metrics__one(b, "wsgw_emit_timeouts_total", "counter",
                  "Connections closed by request_timeout or idle_timeout.", s->timeouts);
  em_metrics__one(b, "wsgw_emit_keys", "gauge", "API keys loaded from emit.key_file.",
                  g->keys);
  em_metrics__one(b, "wsgw_emit_amqp_up", "gauge",
                  "1 while connected to the broker in confirm mode.",
                  (uint64_t)atomic_load(&bs->up));
  em_metrics__one(b, "wsgw_emit_amqp_connects_total", "counter",
                  "Broker connections opened.", atomic_load(&bs->connects));
  em_metrics__one(b, "wsgw_emit_amqp_disconnects_total", "counter",
                  "Broker connections lost or dropped.", atomic_load(&bs->disconnects));
  em_metrics__one(b, "wsgw_emit_broker_rounds_total", "counter",
                  "Publish rounds: each publishes every request waiting (group commit).",
                  atomic_load(&bs->rounds));
  em_metrics__one(b, "wsgw_emit_published_total", "counter", "Messages published.",
                  atomic_load(&bs->published));
  em_metrics__one(b, "wsgw_emit_acked_total", "counter", "Messages the broker acked.",
                  atomic_load(&bs->acked));
  em_metrics__one(b, "wsgw_emit_nacked_total", "counter",
                  "Messages the broker refused (basic.nack).", atomic_load(&bs->nacked));
  em_metrics__one(b, "wsgw_emit_lost_total", "counter",
                  "Messages unanswered when the broker connection was lost or dropped.",
                  atomic_load(&bs->lost));
  prom_family(b, "wsgw_emit_request_seconds", "histogram",
              "Time from a request's body to the broker's last confirm.");
  prom_hist_write(b, "wsgw_emit_request_seconds", NULL, &s->latency);
}
