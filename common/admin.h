/*
 * admin.h - what both daemons' admin endpoints share: the routes (/metrics,
 * /healthz, /readyz) and the response head. The listen address is
 * hostport.h's, as every listen setting's.
 *
 * The admin endpoint is HTTP/1.1 for Prometheus and health probes only: one
 * request per connection, GET or HEAD, answered and closed. It is meant for
 * loopback or a private network: there is no auth, so keep it off public
 * addresses (docs/OPERATIONS.md, "Metrics").
 *
 * Owns: those texts and rules as pure functions (unit-tested). Must not: do
 * I/O or know any metric; gw_admin (libuv, llhttp) and wk_metrics (a
 * blocking thread) own the sockets.
 */
#ifndef ADMIN_H
#define ADMIN_H

#include <stddef.h>

/* Largest request head an admin endpoint reads; a scraper sends ~200 bytes.
 * Above it: 431 and close. */
#define ADMIN_REQUEST_MAX 4096
/* How long a client has to send its request and read the answer. */
#define ADMIN_TIMEOUT_MS 5000

typedef enum {
  ADMIN_METRICS = 0,
  ADMIN_HEALTHZ,
  ADMIN_READYZ,
  ADMIN_NOT_FOUND,  /* 404 */
  ADMIN_BAD_METHOD  /* 405: anything but GET and HEAD */
} admin_route_id;

/* The route for a method and request target; the query string is ignored
 * ("/metrics?x=1" is /metrics). */
admin_route_id admin_route(const char *method, const char *target);

/* "HTTP/1.1 200 OK" and its headers (Content-Type, Content-Length,
 * Connection: close, Cache-Control: no-store), through the blank line.
 * Returns the length, or 0 when out is too small (256 bytes is enough). */
size_t admin_response_head(char *out, size_t outlen, int status,
                           const char *content_type, size_t content_length);

/*
 * For a reader without an HTTP parser (workerd): looks at the bytes of a
 * request received so far. Returns 1 once the head is complete ("\r\n\r\n")
 * with method and target copied out, 0 while incomplete, or the HTTP status
 * to answer: 400 (not "METHOD SP /target SP HTTP/1.x"), 414 (target longer
 * than targetlen - 1), 431 (no end of head within ADMIN_REQUEST_MAX).
 */
int admin_request_line(const char *buf, size_t len, char *method,
                       size_t methodlen, char *target, size_t targetlen);

#endif
