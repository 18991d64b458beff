/*
 * test_origin.c - the origin rule gatewayd and workerd share (origin.h):
 * list matching, the same-host default, what is no origin at all.
 */
#include "origin.h"
#include "unit.h"

UNIT_TEST(origin_list_match) {
  const char *list = "https://awx.example.com, https://ops.example.com:8443";
  UNIT_CHECK(origin_in_list("https://awx.example.com", list));
  UNIT_CHECK(origin_in_list("HTTPS://AWX.Example.com", list));
  UNIT_CHECK(origin_in_list("https://awx.example.com:443", list));
  UNIT_CHECK(origin_in_list("https://awx.example.com/", list));
  UNIT_CHECK(origin_in_list("https://ops.example.com:8443", list));
  UNIT_CHECK(!origin_in_list("https://ops.example.com", list));
  UNIT_CHECK(!origin_in_list("http://awx.example.com", list));
  UNIT_CHECK(!origin_in_list("https://awx.example.com.evil.net", list));
  UNIT_CHECK(!origin_in_list("https://evil.net/https://awx.example.com", list));
  UNIT_CHECK(!origin_in_list("https://user@awx.example.com", list));
  UNIT_CHECK(!origin_in_list("null", list));
  UNIT_CHECK(!origin_in_list("", list));
  UNIT_CHECK(!origin_in_list(NULL, list));
  UNIT_CHECK(!origin_in_list("https://awx.example.com", ""));
  UNIT_CHECK(!origin_in_list("https://awx.example.com", NULL));
  UNIT_CHECK(origin_in_list("http://[::1]:8080", "http://[::1]:8080"));
}

UNIT_TEST(origin_same_host_rule) {
  UNIT_CHECK(origin_same_host("https://awx.example.com", "awx.example.com"));
  UNIT_CHECK(origin_same_host("https://awx.example.com", "AWX.example.com:443"));
  UNIT_CHECK(origin_same_host("http://127.0.0.1:8051", "127.0.0.1:8051"));
  /* Host without a port (nginx's $host): any port of that host. */
  UNIT_CHECK(origin_same_host("http://127.0.0.1:8051", "127.0.0.1"));
  /* awxkit: http:// even over wss, the Host without :443. */
  UNIT_CHECK(origin_same_host("http://awx.example.com", "awx.example.com"));
  UNIT_CHECK(origin_same_host("http://[::1]:80", "[::1]"));
  UNIT_CHECK(!origin_same_host("http://127.0.0.1:9999", "127.0.0.1:8051"));
  UNIT_CHECK(!origin_same_host("https://awx.example.com", "awx.example.com:80"));
  UNIT_CHECK(!origin_same_host("https://evil.example.net", "awx.example.com"));
  UNIT_CHECK(!origin_same_host("https://awx.example.com.evil.net", "awx.example.com"));
  UNIT_CHECK(!origin_same_host("https://awx", "awx.example.com"));
  UNIT_CHECK(!origin_same_host("null", "awx.example.com"));
  UNIT_CHECK(!origin_same_host("https://awx.example.com", NULL));
  UNIT_CHECK(!origin_same_host("https://awx.example.com", ""));
  UNIT_CHECK(!origin_same_host("https://awx.example.com", "awx.example.com:x"));
}

UNIT_TEST(origin_allowed_rule) {
  UNIT_CHECK(!origin_allowed(NULL, "awx.example.com", ""));
  UNIT_CHECK(origin_allowed("https://awx.example.com", "awx.example.com", ""));
  UNIT_CHECK(origin_allowed("https://awx.example.com", "awx.example.com", " , "));
  UNIT_CHECK(!origin_allowed("https://evil.net", "awx.example.com", ""));
  UNIT_CHECK(origin_allowed("https://ui.example.com", "ws.example.com",
                            "https://ui.example.com"));
  UNIT_CHECK(!origin_allowed("https://ws.example.com", "ws.example.com",
                             "https://ui.example.com"));
}
