/*
 * test_hostport.c - "ADDRESS:PORT": IPv4 and [IPv6], the port's strict
 * syntax and range, what a listener refuses on top (port 0), and writing
 * one back (the supervisor's port + index).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "hostport.h"
#include "unit.h"

UNIT_TEST(hostport_ipv4) {
  hostport hp;
  UNIT_CHECK(hostport_parse("127.0.0.1:9151", &hp) == 0);
  UNIT_CHECK_STR(hp.host, "127.0.0.1");
  UNIT_CHECK(hp.port == 9151 && !hp.v6);
  UNIT_CHECK(hostport_parse("0.0.0.0:08", &hp) == 0 && hp.port == 8);
  UNIT_CHECK(hostport_parse("0.0.0.0:0", &hp) == 0 && hp.port == 0);
  UNIT_CHECK(hostport_parse("0.0.0.0:65535", &hp) == 0 && hp.port == 65535);
  struct sockaddr_storage ss;
  socklen_t len = 0;
  hostport_sockaddr(&hp, &ss, &len);
  const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
  UNIT_CHECK(ss.ss_family == AF_INET && len == sizeof *a);
  UNIT_CHECK(ntohs(a->sin_port) == 65535 && a->sin_addr.s_addr == 0);
}

UNIT_TEST(hostport_ipv6_in_brackets) {
  hostport hp;
  UNIT_CHECK(hostport_parse("[::1]:80", &hp) == 0);
  UNIT_CHECK_STR(hp.host, "::1");
  UNIT_CHECK(hp.v6 && hp.port == 80);
  struct sockaddr_storage ss;
  socklen_t len = 0;
  hostport_sockaddr(&hp, &ss, &len);
  const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
  UNIT_CHECK(ss.ss_family == AF_INET6 && len == sizeof *a);
  UNIT_CHECK(ntohs(a->sin6_port) == 80 && IN6_IS_ADDR_LOOPBACK(&a->sin6_addr));
  UNIT_CHECK(hostport_parse("[fe80::1:2]:9151", &hp) == 0 && hp.port == 9151);
  UNIT_CHECK(hostport_parse("::1:80", &hp) == -1);  /* no brackets */
  UNIT_CHECK(hostport_parse("[::1:80", &hp) == -1);
  UNIT_CHECK(hostport_parse("::1]:80", &hp) == -1);
  UNIT_CHECK(hostport_parse("[]:80", &hp) == -1);
  UNIT_CHECK(hostport_parse("[127.0.0.1]:80", &hp) == -1);
}

UNIT_TEST(hostport_bad_port) {
  hostport hp;
  const char *bad[] = {"127.0.0.1:65536", "127.0.0.1:+80", "127.0.0.1:80x",
                       "127.0.0.1:-1",    "127.0.0.1: 80", "127.0.0.1:123456",
                       "127.0.0.1:"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    UNIT_CHECK(hostport_parse(bad[i], &hp) == -1);
}

UNIT_TEST(hostport_missing_port_or_host) {
  hostport hp;
  UNIT_CHECK(hostport_parse("127.0.0.1", &hp) == -1);
  UNIT_CHECK(hostport_parse("", &hp) == -1);
  UNIT_CHECK(hostport_parse(NULL, &hp) == -1);
  UNIT_CHECK(hostport_parse(":9151", &hp) == -1);
  UNIT_CHECK(hostport_parse("localhost:9151", &hp) == -1); /* numeric only */
  UNIT_CHECK(hostport_parse("1.2.3:9151", &hp) == -1);
  char longhost[80];
  memset(longhost, '1', sizeof longhost);
  memcpy(longhost + sizeof longhost - 6, ":9151", 6);
  UNIT_CHECK(hostport_parse(longhost, &hp) == -1);
}

UNIT_TEST(hostport_listen_refuses_port_zero) {
  struct sockaddr_storage ss;
  socklen_t len;
  UNIT_CHECK(hostport_listen_addr("127.0.0.1:9151", &ss, &len) == 0);
  UNIT_CHECK(ss.ss_family == AF_INET && len == sizeof(struct sockaddr_in));
  UNIT_CHECK(hostport_listen_addr("[::]:1", &ss, &len) == 0);
  UNIT_CHECK(ss.ss_family == AF_INET6);
  UNIT_CHECK(hostport_listen_addr("127.0.0.1:0", &ss, &len) == -1);
  UNIT_CHECK(hostport_listen_addr("127.0.0.1", &ss, &len) == -1);
}

UNIT_TEST(hostport_format_round_trip) {
  hostport hp;
  char out[64], tiny[8];
  UNIT_CHECK(hostport_parse("[::1]:9151", &hp) == 0);
  UNIT_CHECK(hostport_format(&hp, out, sizeof out) == 10);
  UNIT_CHECK_STR(out, "[::1]:9151");
  UNIT_CHECK(hostport_parse("10.0.0.1:80", &hp) == 0);
  UNIT_CHECK(hostport_format(&hp, out, sizeof out) == 11);
  UNIT_CHECK_STR(out, "10.0.0.1:80");
  UNIT_CHECK(hostport_format(&hp, tiny, sizeof tiny) == -1);
  UNIT_CHECK_STR(tiny, "");
}
