/*
 * hostport.c - "ADDRESS:PORT" (see hostport.h).
 *
 * Owns: splitting at the last ':', the bracket rule for IPv6, the strict
 * port syntax. Must not: allocate or look names up. The last ':' splits,
 * so an IPv6 host without brackets ("::1:80") is refused rather than read
 * as host "::1", port 80, which may not be what was meant.
 */
#include "hostport.h"

#include <arpa/inet.h>
#include <assert.h>
#include <stdio.h>
#include <string.h>

/* Digits only, at most 65535; -1 otherwise. */
static long hostport__port(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 5 || strspn(s, "0123456789") != n) return -1;
  long port = 0;
  for (; *s; s++) port = port * 10 + (*s - '0');
  return port <= 65535 ? port : -1;
}

/* host[0..n) into out->host, without brackets, and parsed. */
static int hostport__host(const char *host, size_t n, hostport *out) {
  out->v6 = n >= 2 && host[0] == '[' && host[n - 1] == ']';
  if (out->v6) {
    host++;
    n -= 2;
  }
  if (n == 0 || n >= sizeof out->host) return -1;
  memcpy(out->host, host, n);
  out->host[n] = '\0';
  return inet_pton(out->v6 ? AF_INET6 : AF_INET, out->host, &out->addr) == 1
             ? 0
             : -1;
}

int hostport_parse(const char *spec, hostport *out) {
  const char *colon = spec ? strrchr(spec, ':') : NULL;
  if (!colon) return -1;
  long port = hostport__port(colon + 1);
  if (port < 0 || hostport__host(spec, (size_t)(colon - spec), out) != 0)
    return -1;
  out->port = (unsigned)port;
  return 0;
}

void hostport_sockaddr(const hostport *hp, struct sockaddr_storage *ss,
                       socklen_t *len) {
  assert(hp->port <= 65535);
  memset(ss, 0, sizeof *ss);
  if (hp->v6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)hp->port);
    a->sin6_addr = hp->addr.v6;
    *len = sizeof *a;
    return;
  }
  struct sockaddr_in *a = (struct sockaddr_in *)ss;
  a->sin_family = AF_INET;
  a->sin_port = htons((uint16_t)hp->port);
  a->sin_addr = hp->addr.v4;
  *len = sizeof *a;
}

int hostport_format(const hostport *hp, char *out, size_t outlen) {
  int n = snprintf(out, outlen, hp->v6 ? "[%s]:%u" : "%s:%u", hp->host,
                   hp->port);
  if (n >= 0 && (size_t)n < outlen) return n;
  if (outlen) out[0] = '\0';
  return -1;
}

int hostport_listen_addr(const char *spec, struct sockaddr_storage *ss,
                         socklen_t *len) {
  hostport hp;
  if (hostport_parse(spec, &hp) != 0 || hp.port == 0) return -1;
  hostport_sockaddr(&hp, ss, len);
  return 0;
}
