/*
 * hostport.h - "ADDRESS:PORT", as every listen setting is written
 * (gateway.listen, gateway.metrics_listen, worker.metrics_listen):
 * "127.0.0.1:8051", "0.0.0.0:9151", "[::1]:9151".
 *
 * Owns: that syntax both ways and the socket address it names. Numeric
 * addresses only: a name would need a lookup at start-up, which can block
 * or fail for reasons unrelated to the setting. Must not: do I/O, or
 * decide whether port 0 (any free port) is acceptable: the caller does
 * (hostport_listen_addr refuses it).
 */
#ifndef HOSTPORT_H
#define HOSTPORT_H

#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>

/* The wording of an error about such a setting, one for every program. */
#define HOSTPORT_EXPECTED "expected ADDRESS:PORT (numeric, [v6] in brackets)"

typedef struct hostport {
  char host[INET6_ADDRSTRLEN]; /* as written, without the brackets */
  unsigned port;               /* 0..65535 */
  int v6;                      /* host is IPv6 (written in brackets) */
  union {
    struct in_addr v4;
    struct in6_addr v6;
  } addr; /* host, parsed */
} hostport;

/*
 * Parses "A.B.C.D:PORT" or "[V6]:PORT". The port is decimal digits only
 * ("08" is fine; "+8", "8x" and "" are not), 0 to 65535. 0, or -1 when
 * spec is malformed (NULL included); *out is then unspecified.
 */
int hostport_parse(const char *spec, hostport *out);

/* hp as a socket address for bind(2) or uv_tcp_bind. */
void hostport_sockaddr(const hostport *hp, struct sockaddr_storage *ss,
                       socklen_t *len);

/* hp written back, brackets around an IPv6 host. The length, or -1 when
 * it does not fit in outlen (out is then ""). */
int hostport_format(const hostport *hp, char *out, size_t outlen);

/* What a listener needs: hostport_parse, a port of 1 to 65535, and the
 * socket address. 0, or -1 when spec is not such an address. */
int hostport_listen_addr(const char *spec, struct sockaddr_storage *ss,
                         socklen_t *len);

#endif
