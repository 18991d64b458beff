/*
 * gw_http.h - the HTTP/1.1 side of a connection: the upgrade request.
 *
 * Owns: parsing the request head with llhttp into one bounded buffer,
 * checking that it is a websocket upgrade we serve (RFC 6455 section 4.2.1),
 * and the text of our responses (101 and the errors). Must not: do I/O or
 * decide anything about auth (that is the worker's job).
 */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include <llhttp.h>
#include <stddef.h>
#include <stdint.h>

#include "chan_msg.h"

typedef struct gw_http_hdr {
  uint32_t name, value; /* offsets of NUL-terminated strings in head[] */
} gw_http_hdr;

typedef struct gw_http_req {
  llhttp_t parser;
  char *head;        /* url and header strings, NUL-terminated */
  size_t used, cap, max;
  gw_http_hdr *hdrs;
  uint32_t n_hdrs, max_hdrs;
  uint32_t fed;      /* bytes of the head seen so far */
  uint8_t complete;  /* head parsed */
  uint16_t status;   /* an HTTP error found while parsing (431), 0 if none */
  char *early;       /* bytes after the head (a first websocket frame) */
  size_t early_len;
} gw_http_req;

typedef enum { GW_HTTP_MORE = 0, GW_HTTP_DONE = 1 } gw_http_progress;

/* What a valid upgrade asks for. Strings point into the request. */
typedef struct gw_http_upgrade {
  const char *path;  /* a static string: the route matched */
  const char *query; /* "" when none */
  const char *key;   /* Sec-WebSocket-Key */
} gw_http_upgrade;

/* 1 when path (a route gw_http_req_check matched) is the echo route. */
int gw_http_is_echo(const char *path);

gw_http_req *gw_http_req_new(size_t max_head, uint32_t max_headers);
void gw_http_req_free(gw_http_req *r);

/* Feeds bytes read from the socket. Returns GW_HTTP_MORE, GW_HTTP_DONE, or
 * an HTTP status (400, 431, ...) to answer with before closing. Bytes after
 * the head, in this call or later ones, are kept in r->early (at most
 * max_head of them). */
int gw_http_req_feed(gw_http_req *r, const char *data, size_t len);

/* Checks a complete head. Returns 0 and fills *up, or the status to answer:
 * 405 (not GET), 404 (path), 400 (not an upgrade, bad key), 426 (version). */
int gw_http_req_check(const gw_http_req *r, int echo_enabled, gw_http_upgrade *up);

/* 1 when the request may come from its Origin: allowed is a comma-separated
 * list of origins (matched by origin_in_list, common/origin.h: scheme and
 * host ignoring case, a default port written or not); "" allows any. A
 * request without Origin (not a browser) is allowed: Origin checks stop
 * other sites' pages, not clients that set headers themselves. workerd
 * applies the stricter rule for tokens that came by cookie (origin.h). */
int gw_http_origin_allowed(const gw_http_req *r, const char *allowed);

/* Header value by lower-case name (the first one), NULL when absent. */
const char *gw_http_req_header(const gw_http_req *r, const char *name);

/* The nth (from 0) header of that name, for lists sent in several headers
 * (Sec-WebSocket-Extensions); NULL past the last. */
const char *gw_http_req_header_nth(const gw_http_req *r, const char *name, uint32_t nth);

/* Fills a channel message's header array with what workers may see: the
 * headers named in `names` (comma-separated, case-insensitive), and of a
 * Cookie header only the cookies named in `cookies` (comma-separated, exact
 * case; a Cookie header left empty is dropped). Everything else the
 * browser sends (the application's other cookies, unrelated credentials)
 * never leaves the gateway: channel messages sit in the broker, and
 * dead-letter copies are kept. Values point into r, except filtered Cookie
 * values, which point into *scratch. The caller frees *out and *scratch
 * (either may be NULL). -1 when out of memory. */
int gw_http_req_forward(const gw_http_req *r, const char *names, const char *cookies,
                        chan_header **out, size_t *n, char **scratch);

/* The 101 response for `key` into buf (>= 400 bytes), naming `protocol`
 * in Sec-WebSocket-Protocol and `extensions` in Sec-WebSocket-Extensions
 * unless they are NULL. Returns its length (0: buf too small). */
size_t gw_http_switching(const char *key, const char *protocol, const char *extensions,
                         char *buf, size_t buflen);

/* 1 when the request's Sec-WebSocket-Protocol lists `name` (wsgw.2). */
int gw_http_wants_protocol(const gw_http_req *r, const char *name);

/* A complete error response ("Connection: close", short text body) into
 * buf (>= 256 bytes). Returns its length. */
size_t gw_http_error(int status, char *buf, size_t buflen);

/* Sec-WebSocket-Accept for key: 28 base64 characters + NUL into out. */
void gw_http_accept_key(const char *key, char out[29]);

/*
 * The client address to report (websocket.connect's `client`, logs).
 * `trusted` lists the proxies whose X-Forwarded-For we believe: addresses
 * and CIDR blocks separated by commas or spaces ("127.0.0.1, 10.0.0.0/8,
 * ::1"). When the TCP peer is trusted, the X-Forwarded-For entries (all
 * such headers, in order) are walked from the right: each entry a trusted
 * hop added replaces it, and the first untrusted address is the client
 * (port 0: proxies do not forward it). An entry that is not an address
 * stops the walk at the last trusted hop. An untrusted peer or an empty
 * list: the peer itself, whatever the headers say (anyone can send them).
 * Returns 1 when *out came from the header, else 0.
 */
int gw_http_client_addr(const gw_http_req *r, const chan_addr *peer,
                        const char *trusted, chan_addr *out);

/* 1 when host (a numeric address) is in the `trusted` list: its
 * connections name their client in X-Forwarded-For. */
int gw_http_is_trusted(const char *trusted, const char *host);

/* 0 when `trusted` is a valid list for gw_http_client_addr; else -1 and a
 * reason in err (checked at start-up, so a typo fails fast). */
int gw_http_trusted_check(const char *trusted, char *err, size_t errlen);

#endif
