/*
 * test_admin.c - the admin endpoints' pure parts: exposition text
 * (common/prom), routes, response heads and the request reader
 * (common/admin; listen addresses: test_hostport.c), the gateway's close reasons and rendering
 * (gw_admin), the worker's refusal classes (wk_metrics).
 */
#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "gw_server.h"
#include "prom.h"
#include "unit.h"
#include "wk_metrics.h"

static const char *secs(uint64_t us) {
  static char out[32];
  prom_us_to_seconds(us, out, sizeof out);
  return out;
}

UNIT_TEST(prom_seconds_exact_and_short) {
  UNIT_CHECK_STR(secs(0), "0");
  UNIT_CHECK_STR(secs(1), "0.000001");
  UNIT_CHECK_STR(secs(100), "0.0001");
  UNIT_CHECK_STR(secs(2500), "0.0025");
  UNIT_CHECK_STR(secs(1000000), "1");
  UNIT_CHECK_STR(secs(2500000), "2.5");
  UNIT_CHECK_STR(secs(12345678), "12.345678");
}

UNIT_TEST(prom_family_and_samples) {
  strbuf b;
  strbuf_init(&b);
  prom_family(&b, "x_total", "counter", "Things.");
  prom_sample(&b, "x_total", NULL, 3);
  prom_sample(&b, "x_total", "kind=\"a\"", 18446744073709551615u);
  UNIT_CHECK(!b.failed);
  UNIT_CHECK_STR(b.data, "# HELP x_total Things.\n# TYPE x_total counter\n"
                         "x_total 3\nx_total{kind=\"a\"} 18446744073709551615\n");
  strbuf_free(&b);
  UNIT_CHECK(b.data == NULL && b.len == 0);
}

UNIT_TEST(strbuf_grows) {
  strbuf b;
  strbuf_init(&b);
  for (int i = 0; i < 2000; i++) prom_sample(&b, "a_long_metric_name_here", NULL, (uint64_t)i);
  UNIT_CHECK(!b.failed);
  UNIT_CHECK(b.len > 8192 && b.len < b.cap);
  UNIT_CHECK(strlen(b.data) == b.len);
  UNIT_CHECK(strstr(b.data, "a_long_metric_name_here 1999\n") != NULL);
  strbuf_free(&b);
}

UNIT_TEST(prom_histogram_cumulative) {
  prom_hist h;
  memset(&h, 0, sizeof h);
  prom_hist_observe(&h, 50);       /* <= 0.0001 */
  prom_hist_observe(&h, 100);      /* on the bound: still <= 0.0001 */
  prom_hist_observe(&h, 3000);     /* <= 0.005 */
  prom_hist_observe(&h, 60000000); /* +Inf only */
  strbuf b;
  strbuf_init(&b);
  prom_hist_write(&b, "lat_seconds", "kind=\"connect\"", &h);
  UNIT_CHECK(strstr(b.data, "lat_seconds_bucket{kind=\"connect\",le=\"0.0001\"} 2\n"));
  UNIT_CHECK(strstr(b.data, "lat_seconds_bucket{kind=\"connect\",le=\"0.0025\"} 2\n"));
  UNIT_CHECK(strstr(b.data, "lat_seconds_bucket{kind=\"connect\",le=\"0.005\"} 3\n"));
  UNIT_CHECK(strstr(b.data, "lat_seconds_bucket{kind=\"connect\",le=\"10\"} 3\n"));
  UNIT_CHECK(strstr(b.data, "lat_seconds_bucket{kind=\"connect\",le=\"+Inf\"} 4\n"));
  UNIT_CHECK(strstr(b.data, "lat_seconds_sum{kind=\"connect\"} 60.00315\n"));
  UNIT_CHECK(strstr(b.data, "lat_seconds_count{kind=\"connect\"} 4\n"));
  strbuf_free(&b);
  strbuf_init(&b);
  prom_hist_write(&b, "h", NULL, &h);
  UNIT_CHECK(strstr(b.data, "h_bucket{le=\"1\"} 3\n"));
  UNIT_CHECK(strstr(b.data, "h_sum 60.00315\nh_count 4\n"));
  strbuf_free(&b);
}

UNIT_TEST(admin_routes) {
  UNIT_CHECK(admin_route("GET", "/metrics") == ADMIN_METRICS);
  UNIT_CHECK(admin_route("HEAD", "/metrics?name[]=x") == ADMIN_METRICS);
  UNIT_CHECK(admin_route("GET", "/healthz") == ADMIN_HEALTHZ);
  UNIT_CHECK(admin_route("GET", "/readyz") == ADMIN_READYZ);
  UNIT_CHECK(admin_route("GET", "/metrics/") == ADMIN_NOT_FOUND);
  UNIT_CHECK(admin_route("GET", "/metricsx") == ADMIN_NOT_FOUND);
  UNIT_CHECK(admin_route("GET", "/") == ADMIN_NOT_FOUND);
  UNIT_CHECK(admin_route("POST", "/metrics") == ADMIN_BAD_METHOD);
  UNIT_CHECK(admin_route("get", "/metrics") == ADMIN_BAD_METHOD);
}

UNIT_TEST(admin_response_heads) {
  char out[256];
  size_t n = admin_response_head(out, sizeof out, 200, PROM_CONTENT_TYPE, 12);
  UNIT_CHECK(n == strlen(out));
  UNIT_CHECK_STR(out, "HTTP/1.1 200 OK\r\n"
                      "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                      "Content-Length: 12\r\nCache-Control: no-store\r\n"
                      "Connection: close\r\n\r\n");
  admin_response_head(out, sizeof out, 405, "text/plain", 0);
  UNIT_CHECK(strstr(out, "HTTP/1.1 405 Method Not Allowed\r\n") == out);
  UNIT_CHECK(strstr(out, "\r\nAllow: GET, HEAD\r\n"));
  admin_response_head(out, sizeof out, 503, "text/plain", 0);
  UNIT_CHECK(strstr(out, "HTTP/1.1 503 Service Unavailable\r\n") == out);
  UNIT_CHECK(admin_response_head(out, 20, 200, "text/plain", 0) == 0);
}

static int reqline(const char *req, char *method, char *target) {
  return admin_request_line(req, strlen(req), method, 16, target, 32);
}

UNIT_TEST(admin_request_reader) {
  char m[16], t[32];
  UNIT_CHECK(reqline("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", m, t) == 1);
  UNIT_CHECK_STR(m, "GET");
  UNIT_CHECK_STR(t, "/metrics");
  UNIT_CHECK(reqline("HEAD /readyz?x=1 HTTP/1.0\r\n\r\n", m, t) == 1);
  UNIT_CHECK_STR(t, "/readyz?x=1");
  /* incomplete */
  UNIT_CHECK(reqline("", m, t) == 0);
  UNIT_CHECK(reqline("GET /metrics HTTP/1.1\r\nHost: x\r\n", m, t) == 0);
  /* malformed */
  UNIT_CHECK(reqline("GET /metrics\r\n\r\n", m, t) == 400);
  UNIT_CHECK(reqline("GET  /metrics HTTP/1.1\r\n\r\n", m, t) == 400);
  UNIT_CHECK(reqline("GET metrics HTTP/1.1\r\n\r\n", m, t) == 400);
  UNIT_CHECK(reqline("GET /metrics HTTP/2.0\r\n\r\n", m, t) == 400);
  UNIT_CHECK(reqline("G(T /metrics HTTP/1.1\r\n\r\n", m, t) == 400);
  UNIT_CHECK(reqline("GET /a\x01 HTTP/1.1\r\n\r\n", m, t) == 400);
  UNIT_CHECK(reqline("GET / HTTP/1.1\rX\r\n\r\n", m, t) == 400);
  UNIT_CHECK(reqline("AVERYLONGMETHODNAME / HTTP/1.1\r\n\r\n", m, t) == 400);
  UNIT_CHECK(reqline("GET /0123456789012345678901234567890123 HTTP/1.1\r\n\r\n", m, t) == 414);
  /* no end of head within the limit */
  static char big[ADMIN_REQUEST_MAX];
  memset(big, 'a', sizeof big);
  UNIT_CHECK(admin_request_line(big, sizeof big, m, 16, t, 32) == 431);
}

UNIT_TEST(gw_admin_close_reasons) {
  UNIT_CHECK(gw_admin_close_reason(0, 1000) == GW_CLOSE_HTTP);
  UNIT_CHECK(gw_admin_close_reason(1, 1000) == GW_CLOSE_NORMAL);
  UNIT_CHECK(gw_admin_close_reason(1, 1001) == GW_CLOSE_GOING_AWAY);
  UNIT_CHECK(gw_admin_close_reason(1, 1003) == GW_CLOSE_PROTOCOL);
  UNIT_CHECK(gw_admin_close_reason(1, 1006) == GW_CLOSE_ABNORMAL);
  UNIT_CHECK(gw_admin_close_reason(1, 1007) == GW_CLOSE_INVALID_PAYLOAD);
  UNIT_CHECK(gw_admin_close_reason(1, 1008) == GW_CLOSE_POLICY);
  UNIT_CHECK(gw_admin_close_reason(1, 1009) == GW_CLOSE_TOO_BIG);
  UNIT_CHECK(gw_admin_close_reason(1, 1011) == GW_CLOSE_INTERNAL);
  UNIT_CHECK(gw_admin_close_reason(1, 1013) == GW_CLOSE_TRY_AGAIN);
  UNIT_CHECK(gw_admin_close_reason(1, 4000) == GW_CLOSE_OTHER);
  UNIT_CHECK(gw_admin_close_reason(1, 0) == GW_CLOSE_OTHER);
  UNIT_CHECK_STR(gw_admin_close_reason_name(GW_CLOSE_POLICY), "policy");
  UNIT_CHECK_STR(gw_admin_close_reason_name(GW_CLOSE_N), "other");
  for (int r = 0; r < GW_CLOSE_N; r++) UNIT_CHECK(gw_admin_close_reason_name(r) != NULL);
}

/* Every line is a comment or "name{labels} integer-or-decimal". */
static int exposition_lines_valid(const char *text) {
  const char *p = text;
  while (*p) {
    const char *nl = strchr(p, '\n');
    if (!nl) return 0;
    if (*p != '#') {
      const char *sp = memchr(p, ' ', (size_t)(nl - p));
      if (!sp || sp == p || sp + 1 == nl) return 0;
      for (const char *v = sp + 1; v < nl; v++)
        if (!((*v >= '0' && *v <= '9') || *v == '.')) return 0;
    }
    p = nl + 1;
  }
  return 1;
}

UNIT_TEST(gw_admin_render_text) {
  gw_stats st;
  memset(&st, 0, sizeof st);
  st.conns_opened = 5;
  st.handshakes_accepted = 4;
  st.amqp_connects = 3;
  gw_admin_count_close(&st, 1, 1000);
  gw_admin_count_close(&st, 0, 1006);
  gw_admin_count_close(&st, 0, 1006);
  gw_admin_observe_reply(&st, 1, gw_admin_now_us());
  gw_admin_gauges g = {.connections = 2, .groups = 1, .members = 7, .amqp_up = 1,
                       .backlog_to_broker = 10, .backlog_from_broker = 20};
  strbuf b;
  strbuf_init(&b);
  gw_admin_render(&b, &st, &g);
  UNIT_CHECK(!b.failed && exposition_lines_valid(b.data));
  UNIT_CHECK(strstr(b.data, "\nwsgw_gateway_connections 2\n"));
  UNIT_CHECK(strstr(b.data, "\nwsgw_gateway_group_members 7\n"));
  UNIT_CHECK(strstr(b.data, "\nwsgw_gateway_connections_opened_total 5\n"));
  UNIT_CHECK(strstr(b.data, "\nwsgw_gateway_connections_closed_total{reason=\"normal\"} 1\n"));
  UNIT_CHECK(strstr(b.data, "\nwsgw_gateway_connections_closed_total{reason=\"http\"} 2\n"));
  UNIT_CHECK(strstr(b.data, "\nwsgw_gateway_handshakes_total{result=\"accepted\"} 4\n"));
  UNIT_CHECK(strstr(b.data, "\nwsgw_gateway_amqp_reconnects_total 2\n"));
  UNIT_CHECK(strstr(b.data, "\nwsgw_gateway_amqp_backlog_bytes{direction=\"from_broker\"} 20\n"));
  UNIT_CHECK(strstr(b.data, "\nwsgw_gateway_worker_reply_seconds_count{kind=\"connect\"} 1\n"));
  UNIT_CHECK(strstr(b.data, "\nwsgw_gateway_worker_reply_seconds_count{kind=\"receive\"} 0\n"));
  UNIT_CHECK(strstr(b.data, "# TYPE wsgw_gateway_worker_reply_seconds histogram\n"));
  strbuf_free(&b);
}

UNIT_TEST(gw_admin_render_history_only_when_on) {
  gw_stats st;
  memset(&st, 0, sizeof st);
  gw_admin_gauges g = {.hist_read = 9};
  strbuf b;
  strbuf_init(&b);
  gw_admin_render(&b, &st, &g);
  UNIT_CHECK(!strstr(b.data, "wsgw_gateway_history_"));
  strbuf_free(&b);
  g = (gw_admin_gauges){.hist_on = 1, .hist_read = 9, .hist_resumes = 2, .hist_gaps = 1,
                        .hist_gap_lost = 40, .hist_resets = 1, .hist_last_offset = 123};
  strbuf_init(&b);
  gw_admin_render(&b, &st, &g);
  UNIT_CHECK(!b.failed && exposition_lines_valid(b.data));
  UNIT_CHECK(strstr(b.data, "\nwsgw_gateway_history_messages_total 9\n"));
  UNIT_CHECK(strstr(b.data, "\nwsgw_gateway_history_resumes_total 2\n"));
  UNIT_CHECK(strstr(b.data, "\nwsgw_gateway_history_gaps_total 1\n"));
  UNIT_CHECK(strstr(b.data, "\nwsgw_gateway_history_gap_messages_total 40\n"));
  UNIT_CHECK(strstr(b.data, "\nwsgw_gateway_history_resets_total 1\n"));
  UNIT_CHECK(strstr(b.data, "# TYPE wsgw_gateway_history_offset gauge\nwsgw_gateway_history_offset 123\n"));
  strbuf_free(&b);
}

UNIT_TEST(wk_metrics_refusal_classes) {
  UNIT_CHECK(wk_metrics_auth_class("no token") == WK_METRICS_AUTH_MISSING);
  UNIT_CHECK(wk_metrics_auth_class("malformed token in query") == WK_METRICS_AUTH_MALFORMED);
  UNIT_CHECK(wk_metrics_auth_class("token expired") == WK_METRICS_AUTH_EXPIRED);
  UNIT_CHECK(wk_metrics_auth_class("bad token signature") == WK_METRICS_AUTH_INVALID);
  UNIT_CHECK(wk_metrics_auth_class("unknown static token") == WK_METRICS_AUTH_INVALID);
  UNIT_CHECK(wk_metrics_auth_class("echo is disabled") == WK_METRICS_AUTH_POLICY);
  UNIT_CHECK(wk_metrics_auth_class("unusable csrftoken cookie") == WK_METRICS_AUTH_POLICY);
  UNIT_CHECK(wk_metrics_auth_class("session too large (objects claim)") ==
             WK_METRICS_AUTH_POLICY);
  UNIT_CHECK(wk_metrics_auth_class(NULL) == WK_METRICS_AUTH_INVALID);
}

UNIT_TEST(wk_metrics_render_text) {
  strbuf b;
  strbuf_init(&b);
  wk_metrics_render(&b);
  UNIT_CHECK(!b.failed && exposition_lines_valid(b.data));
  UNIT_CHECK(strstr(b.data, "# TYPE wsgw_worker_messages_total counter\n"));
  UNIT_CHECK(strstr(b.data, "wsgw_worker_auth_rejected_total{reason=\"expired\"} "));
  UNIT_CHECK(strstr(b.data, "wsgw_worker_handle_seconds_bucket{le=\"+Inf\"} "));
  strbuf_free(&b);
}
