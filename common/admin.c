/*
 * admin.c - the admin endpoint's shared rules (see admin.h).
 *
 * Owns: routing, the response head and a strict request-line reader (the
 * listen address is hostport.c's). Must not: do I/O, allocate, or accept
 * anything loosely: a request that is not plainly "GET /path HTTP/1.1"
 * gets a 4xx.
 */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpstatus.h"

admin_route_id admin_route(const char *method, const char *target) {
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
    return ADMIN_BAD_METHOD;
  size_t n = strcspn(target, "?");
  static const struct {
    const char *path;
    admin_route_id id;
  } routes[] = {{"/metrics", ADMIN_METRICS},
                {"/healthz", ADMIN_HEALTHZ},
                {"/readyz", ADMIN_READYZ}};
  for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
    if (strlen(routes[i].path) == n && memcmp(routes[i].path, target, n) == 0)
      return routes[i].id;
  return ADMIN_NOT_FOUND;
}


size_t admin_response_head(char *out, size_t outlen, int status,
                           const char *content_type, size_t content_length) {
  int n = snprintf(out, outlen,
                   "HTTP/1.1 %d %s\r\n"
                   "Content-Type: %s\r\n"
                   "Content-Length: %zu\r\n"
                   "%s"
                   "Cache-Control: no-store\r\n"
                   "Connection: close\r\n\r\n",
                   status, http_reason(status), content_type, content_length,
                   status == 405 ? "Allow: GET, HEAD\r\n" : "");
  return n < 0 || (size_t)n >= outlen ? 0 : (size_t)n;
}

/* Copies the n bytes at s into out as a string; -1 when they do not fit. */
static int admin__copy(const char *s, size_t n, char *out, size_t outlen) {
  if (n >= outlen) return -1;
  memcpy(out, s, n);
  out[n] = '\0';
  return 0;
}

static int admin__is_tchar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

int admin_request_line(const char *buf, size_t len, char *method,
                       size_t methodlen, char *target, size_t targetlen) {
  const char *end = NULL;
  for (size_t i = 0; i + 3 < len && !end; i++)
    if (memcmp(buf + i, "\r\n\r\n", 4) == 0) end = buf + i;
  if (!end) return len >= ADMIN_REQUEST_MAX ? 431 : 0;
  const char *eol = memchr(buf, '\r', (size_t)(end - buf) + 1);
  if (eol[1] != '\n') return 400; /* a bare CR inside the request line */
  const char *sp1 = memchr(buf, ' ', (size_t)(eol - buf));
  if (!sp1 || sp1 == buf) return 400;
  for (const char *p = buf; p < sp1; p++)
    if (!admin__is_tchar(*p)) return 400;
  const char *t = sp1 + 1;
  const char *sp2 = memchr(t, ' ', (size_t)(eol - t));
  if (!sp2 || sp2 == t || *t != '/') return 400;
  for (const char *p = t; p < sp2; p++)
    if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) return 400;
  size_t vlen = (size_t)(eol - sp2 - 1);
  if (vlen != 8 || (memcmp(sp2 + 1, "HTTP/1.1", 8) != 0 &&
                    memcmp(sp2 + 1, "HTTP/1.0", 8) != 0))
    return 400;
  if (admin__copy(buf, (size_t)(sp1 - buf), method, methodlen) != 0) return 400;
  if (admin__copy(t, (size_t)(sp2 - t), target, targetlen) != 0) return 414;
  return 1;
}
