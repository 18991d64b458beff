/*
 * test_gw_client_addr.c - gw_http_client_addr and gw_http_trusted_check:
 * which address the gateway reports for a client behind proxies.
 *
 * Owns: the X-Forwarded-For trust rules (only a trusted peer's header
 * counts; the walk goes right to left and stops at the first untrusted hop
 * or at garbage) and the trusted list's syntax.
 */
#include <stdio.h>
#include <string.h>

#include "gw_http.h"
#include "unit.h"

/* A parsed upgrade request carrying the given extra header lines. */
static gw_http_req *req_with(const char *extra) {
  char buf[2048];
  int n = snprintf(buf, sizeof buf,
                   "GET /websocket/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n%s\r\n",
                   extra);
  gw_http_req *r = gw_http_req_new(8192, 64);
  if (gw_http_req_feed(r, buf, (size_t)n) != GW_HTTP_DONE) {
    gw_http_req_free(r);
    return NULL;
  }
  return r;
}

/* The address reported for a request from peer_host with those headers. */
static const char *client_of(const char *peer_host, const char *trusted, const char *extra,
                             int *forwarded) {
  static chan_addr out;
  chan_addr peer;
  memset(&peer, 0, sizeof peer);
  snprintf(peer.host, sizeof peer.host, "%s", peer_host);
  peer.port = 40000;
  gw_http_req *r = req_with(extra);
  if (!r) return "(request did not parse)";
  int f = gw_http_client_addr(r, &peer, trusted, &out);
  if (forwarded) *forwarded = f;
  gw_http_req_free(r);
  return out.host;
}

UNIT_TEST(gw_client_addr_untrusted_peer_ignores_header) {
  int f = -1;
  UNIT_CHECK_STR(client_of("203.0.113.9", "127.0.0.1", "X-Forwarded-For: 1.2.3.4\r\n", &f),
                 "203.0.113.9");
  UNIT_CHECK(f == 0);
  /* No list at all: nobody is trusted. */
  UNIT_CHECK_STR(client_of("127.0.0.1", "", "X-Forwarded-For: 1.2.3.4\r\n", &f), "127.0.0.1");
  UNIT_CHECK(f == 0);
}

UNIT_TEST(gw_client_addr_trusted_peer_uses_last_hop) {
  int f = -1;
  /* nginx appends the address it saw: the right end is the one to trust. */
  UNIT_CHECK_STR(client_of("127.0.0.1", "127.0.0.1",
                           "X-Forwarded-For: 6.6.6.6, 198.51.100.7\r\n", &f),
                 "198.51.100.7");
  UNIT_CHECK(f == 1);
}

UNIT_TEST(gw_client_addr_walks_trusted_hops) {
  /* Two proxies of ours (10.0.0.0/8): skipped; the first stranger counts,
   * not what that stranger claimed before it. */
  UNIT_CHECK_STR(client_of("127.0.0.1", "127.0.0.1, 10.0.0.0/8",
                           "X-Forwarded-For: 6.6.6.6, 198.51.100.7, 10.1.2.3\r\n", NULL),
                 "198.51.100.7");
  /* Several headers form one list, in order. */
  UNIT_CHECK_STR(client_of("127.0.0.1", "127.0.0.1 10.0.0.0/8",
                           "X-Forwarded-For: 6.6.6.6, 198.51.100.8\r\n"
                           "X-Forwarded-For: 10.9.9.9\r\n", NULL),
                 "198.51.100.8");
  /* Every hop trusted: the leftmost one. */
  UNIT_CHECK_STR(client_of("127.0.0.1", "127.0.0.0/8,10.0.0.0/8",
                           "X-Forwarded-For: 10.0.0.5, 127.0.0.2\r\n", NULL),
                 "10.0.0.5");
}

UNIT_TEST(gw_client_addr_garbage_stops_walk) {
  int f = -1;
  UNIT_CHECK_STR(client_of("127.0.0.1", "127.0.0.1", "X-Forwarded-For: unknown\r\n", &f),
                 "127.0.0.1");
  UNIT_CHECK(f == 0);
  /* Garbage left of a trusted hop: the last good hop stays. */
  UNIT_CHECK_STR(client_of("127.0.0.1", "127.0.0.1, 10.0.0.0/8",
                           "X-Forwarded-For: <script>, 10.0.0.1\r\n", &f),
                 "10.0.0.1");
  UNIT_CHECK(f == 1);
  /* No header: the peer. */
  UNIT_CHECK_STR(client_of("127.0.0.1", "127.0.0.1", "", &f), "127.0.0.1");
  UNIT_CHECK(f == 0);
}

UNIT_TEST(gw_client_addr_ipv6_and_mapped) {
  UNIT_CHECK_STR(client_of("::1", "::1", "X-Forwarded-For: 2001:db8::1\r\n", NULL),
                 "2001:db8::1");
  /* A v4-mapped peer matches a v4 entry of the list. */
  UNIT_CHECK_STR(client_of("::ffff:127.0.0.1", "127.0.0.1",
                           "X-Forwarded-For: [2001:db8::2]\r\n", NULL),
                 "2001:db8::2");
  UNIT_CHECK_STR(client_of("127.0.0.1", "2001:db8::/32", "X-Forwarded-For: 1.2.3.4\r\n", NULL),
                 "127.0.0.1");
  /* Prefix bits that are not a whole byte. */
  UNIT_CHECK_STR(client_of("192.168.1.130", "192.168.1.128/25",
                           "X-Forwarded-For: 1.2.3.4\r\n", NULL),
                 "1.2.3.4");
  UNIT_CHECK_STR(client_of("192.168.1.127", "192.168.1.128/25",
                           "X-Forwarded-For: 1.2.3.4\r\n", NULL),
                 "192.168.1.127");
}

UNIT_TEST(gw_trusted_check_syntax) {
  char err[160];
  UNIT_CHECK(gw_http_trusted_check("", err, sizeof err) == 0);
  UNIT_CHECK(gw_http_trusted_check(NULL, err, sizeof err) == 0);
  UNIT_CHECK(gw_http_trusted_check("127.0.0.1, ::1 10.0.0.0/8,fd00::/8", err, sizeof err) == 0);
  UNIT_CHECK(gw_http_trusted_check("127.0.0.1/33", err, sizeof err) == -1);
  UNIT_CHECK(gw_http_trusted_check("10.0.0.0/", err, sizeof err) == -1);
  UNIT_CHECK(gw_http_trusted_check("localhost", err, sizeof err) == -1);
  UNIT_CHECK(strstr(err, "localhost") != NULL);
  UNIT_CHECK(gw_http_trusted_check("::1/129", err, sizeof err) == -1);
}
