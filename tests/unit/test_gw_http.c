/*
 * test_gw_http.c - the upgrade request parser and checks, fed the way a
 * socket delivers bytes: whole, split at every offset, and with a first
 * websocket frame in the same read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_http.h"
#include "unit.h"

static const char good_req[] =
    "GET /websocket/?token=abc HTTP/1.1\r\n"
    "Host: example\r\n"
    "Upgrade: websocket\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Cookie: csrftoken=xyz; token=t\r\n"
    "\r\n";

static int feed_all(gw_http_req *r, const char *s, size_t len) {
  return gw_http_req_feed(r, s, len);
}

UNIT_TEST(gw_http_accepts_valid_upgrade) {
  gw_http_req *r = gw_http_req_new(8192, 64);
  UNIT_CHECK(feed_all(r, good_req, sizeof(good_req) - 1) == GW_HTTP_DONE);
  gw_http_upgrade up;
  UNIT_CHECK(gw_http_req_check(r, 0, &up) == 0);
  UNIT_CHECK_STR(up.path, "/websocket/");
  UNIT_CHECK_STR(up.query, "token=abc");
  UNIT_CHECK_STR(up.key, "dGhlIHNhbXBsZSBub25jZQ==");
  UNIT_CHECK_STR(gw_http_req_header(r, "cookie"), "csrftoken=xyz; token=t");
  UNIT_CHECK_STR(gw_http_req_header(r, "host"), "example");
  UNIT_CHECK(r->early_len == 0);
  gw_http_req_free(r);
}

UNIT_TEST(gw_http_byte_at_a_time_equals_whole) {
  gw_http_req *r = gw_http_req_new(8192, 64);
  int rc = GW_HTTP_MORE;
  for (size_t i = 0; i < sizeof(good_req) - 1 && rc == GW_HTTP_MORE; i++)
    rc = gw_http_req_feed(r, good_req + i, 1);
  UNIT_CHECK(rc == GW_HTTP_DONE);
  gw_http_upgrade up;
  UNIT_CHECK(gw_http_req_check(r, 0, &up) == 0);
  UNIT_CHECK_STR(gw_http_req_header(r, "sec-websocket-version"), "13");
  UNIT_CHECK_STR(gw_http_req_header(r, "connection"), "keep-alive, Upgrade");
  gw_http_req_free(r);
}

UNIT_TEST(gw_http_keeps_first_frame_after_head) {
  char buf[1024];
  const char frame[] = "\x81\x85\x01\x02\x03\x04iggmn";
  memcpy(buf, good_req, sizeof(good_req) - 1);
  memcpy(buf + sizeof(good_req) - 1, frame, sizeof(frame) - 1);
  gw_http_req *r = gw_http_req_new(8192, 64);
  UNIT_CHECK(feed_all(r, buf, sizeof(good_req) - 1 + sizeof(frame) - 1) == GW_HTTP_DONE);
  UNIT_CHECK(r->early_len == sizeof(frame) - 1);
  UNIT_CHECK(r->early && memcmp(r->early, frame, sizeof(frame) - 1) == 0);
  gw_http_req_free(r);
}

static int check_of(const char *req, int echo) {
  gw_http_req *r = gw_http_req_new(8192, 64);
  int rc = gw_http_req_feed(r, req, strlen(req));
  if (rc == GW_HTTP_DONE) {
    gw_http_upgrade up;
    rc = gw_http_req_check(r, echo, &up);
  }
  gw_http_req_free(r);
  return rc;
}

UNIT_TEST(gw_http_rejections) {
  UNIT_CHECK(check_of("POST /websocket HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 0) == 405);
  UNIT_CHECK(check_of("GET /other HTTP/1.1\r\nHost: x\r\n\r\n", 0) == 404);
  UNIT_CHECK(check_of("GET /websocket/echo HTTP/1.1\r\nHost: x\r\n\r\n", 0) == 404);
  UNIT_CHECK(check_of("GET /websocket HTTP/1.1\r\nHost: x\r\n\r\n", 0) == 400);
  UNIT_CHECK(check_of("GET /websocket HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
                      "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", 0) == 426);
  UNIT_CHECK(check_of("GET /websocket HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
                      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n", 0) == 400);
  UNIT_CHECK(check_of("GET /websocket HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n", 0) == 400);
  UNIT_CHECK(check_of("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0) >= 400);
  UNIT_CHECK(check_of("garbage\r\n\r\n", 0) == 400);
}

UNIT_TEST(gw_http_echo_route_only_when_enabled) {
  const char *req = "GET /websocket/echo HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
  UNIT_CHECK(check_of(req, 0) == 404);
  UNIT_CHECK(check_of(req, 1) == 0);
}

UNIT_TEST(gw_http_head_limits) {
  char big[4096];
  int n = snprintf(big, sizeof(big), "GET /websocket HTTP/1.1\r\nX-Long: %0*d\r\n\r\n", 2000, 0);
  gw_http_req *r = gw_http_req_new(1024, 64);
  UNIT_CHECK(gw_http_req_feed(r, big, (size_t)n) == 431);
  gw_http_req_free(r);

  char many[8192];
  size_t off = (size_t)snprintf(many, sizeof(many), "GET /websocket HTTP/1.1\r\n");
  for (int i = 0; i < 10; i++) off += (size_t)snprintf(many + off, sizeof(many) - off, "X-%d: v\r\n", i);
  off += (size_t)snprintf(many + off, sizeof(many) - off, "\r\n");
  r = gw_http_req_new(8192, 8);
  UNIT_CHECK(gw_http_req_feed(r, many, off) == 431);
  gw_http_req_free(r);
}

UNIT_TEST(gw_http_accept_key_rfc6455_example) {
  char out[29];
  gw_http_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out);
  UNIT_CHECK_STR(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

UNIT_TEST(gw_http_forward_only_the_listed_headers) {
  gw_http_req *r = gw_http_req_new(8192, 64);
  UNIT_CHECK(feed_all(r, good_req, sizeof(good_req) - 1) == GW_HTTP_DONE);
  chan_header *h;
  size_t n;
  char *scratch;
  UNIT_CHECK(gw_http_req_forward(r, "Host, cookie", "token,csrftoken", &h, &n, &scratch) == 0);
  UNIT_CHECK(n == 2);
  UNIT_CHECK_STR(h[0].name, "host");
  UNIT_CHECK_STR(h[1].name, "cookie");
  UNIT_CHECK_STR(h[1].value, "csrftoken=xyz; token=t");
  free(h);
  free(scratch);
  gw_http_req_free(r);
}

/* The application's other cookies stay at the gateway; names are exact. */
static const char jar_req[] =
    "GET /websocket/ HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "Authorization: Bearer abc\r\n"
    "Cookie: sessionid=SECRET; token=t1 ;Token=no; csrftoken=c1; =x; junk; csrftoken=c2\r\n"
    "Cookie: other=1\r\n"
    "X-Api-Key: SECRET\r\n"
    "\r\n";

UNIT_TEST(gw_http_forward_filters_the_cookie_jar) {
  gw_http_req *r = gw_http_req_new(8192, 64);
  UNIT_CHECK(feed_all(r, jar_req, sizeof(jar_req) - 1) == GW_HTTP_DONE);
  chan_header *h;
  size_t n;
  char *scratch;
  UNIT_CHECK(gw_http_req_forward(r, "authorization,cookie,origin,host", "token,csrftoken", &h,
                                 &n, &scratch) == 0);
  UNIT_CHECK(n == 3); /* host, authorization, one cookie header; not x-api-key */
  UNIT_CHECK_STR(h[0].name, "host");
  UNIT_CHECK_STR(h[1].value, "Bearer abc");
  UNIT_CHECK_STR(h[2].name, "cookie");
  /* Both csrftokens stay: refusing a planted duplicate is the worker's. */
  UNIT_CHECK_STR(h[2].value, "token=t1; csrftoken=c1; csrftoken=c2");
  for (size_t i = 0; i < n; i++) UNIT_CHECK(!strstr(h[i].value, "SECRET"));
  free(h);
  free(scratch);
  UNIT_CHECK(gw_http_req_forward(r, "", "token", &h, &n, &scratch) == 0 && n == 0);
  free(h);
  free(scratch);
  gw_http_req_free(r);
}

UNIT_TEST(gw_http_error_response_is_complete) {
  char buf[512];
  size_t n = gw_http_error(426, buf, sizeof(buf));
  UNIT_CHECK(n > 0);
  UNIT_CHECK(strstr(buf, "HTTP/1.1 426 Upgrade Required\r\n") == buf);
  UNIT_CHECK(strstr(buf, "Sec-WebSocket-Version: 13\r\n") != NULL);
  UNIT_CHECK(strstr(buf, "Connection: close\r\n") != NULL);
  const char *body = strstr(buf, "\r\n\r\n");
  UNIT_CHECK(body && strlen(body + 4) == strlen("Upgrade Required\n"));
}

UNIT_TEST(gw_http_origin_allow_list) {
  const char *with_origin = "GET /websocket HTTP/1.1\r\nOrigin: https://awx.example\r\n\r\n";
  const char *without = "GET /websocket HTTP/1.1\r\nHost: x\r\n\r\n";
  gw_http_req *r = gw_http_req_new(8192, 64);
  UNIT_CHECK(gw_http_req_feed(r, with_origin, strlen(with_origin)) == GW_HTTP_DONE);
  UNIT_CHECK(gw_http_origin_allowed(r, ""));
  UNIT_CHECK(gw_http_origin_allowed(r, "https://awx.example"));
  UNIT_CHECK(gw_http_origin_allowed(r, "https://other.example, https://awx.example"));
  UNIT_CHECK(!gw_http_origin_allowed(r, "https://other.example"));
  UNIT_CHECK(!gw_http_origin_allowed(r, "https://awx.example.evil"));
  gw_http_req_free(r);
  r = gw_http_req_new(8192, 64);
  UNIT_CHECK(gw_http_req_feed(r, without, strlen(without)) == GW_HTTP_DONE);
  UNIT_CHECK(gw_http_origin_allowed(r, "https://awx.example"));
  gw_http_req_free(r);
}
