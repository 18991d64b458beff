/*
 * gw_http.c - the upgrade request (see gw_http.h).
 *
 * The head is copied into one buffer that grows to at most max_head bytes:
 * llhttp hands a header name or value over in pieces when it spans reads,
 * and each piece is appended where the previous one ended, so every string
 * ends up contiguous. The request (and the buffer) is freed the moment the
 * connection is upgraded; an open connection carries none of it.
 */
#include "gw_http.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "httpstatus.h"
#include "origin.h"

#define GW_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static const char *const gw_http__paths[] = {"/websocket", "/websocket/"};
static const char gw_http__echo_path[] = "/websocket/echo";

/* ---- parsing ------------------------------------------------------------ */

static gw_http_req *gw_http__req(llhttp_t *p) { return p->data; }

/* Appends to head[]; sets status 431 when the head outgrows its limit. */
static int gw_http__append(gw_http_req *r, const char *at, size_t len) {
  if (r->used + len + 1 > r->max) {
    r->status = 431;
    return -1;
  }
  if (r->used + len + 1 > r->cap) {
    size_t cap = r->cap;
    while (cap < r->used + len + 1) cap *= 2;
    if (cap > r->max) cap = r->max;
    char *h = realloc(r->head, cap);
    if (!h) {
      r->status = 503;
      return -1;
    }
    r->head = h;
    r->cap = cap;
  }
  memcpy(r->head + r->used, at, len);
  r->used += len;
  return 0;
}

static int gw_http__terminate(gw_http_req *r) {
  /* append() always leaves room for one more byte: the NUL. */
  if (gw_http__append(r, "", 0) != 0) return -1;
  r->head[r->used++] = '\0';
  return 0;
}

static int gw_http__on_url(llhttp_t *p, const char *at, size_t len) {
  return gw_http__append(gw_http__req(p), at, len);
}

static int gw_http__on_url_complete(llhttp_t *p) {
  return gw_http__terminate(gw_http__req(p));
}

static int gw_http__on_field(llhttp_t *p, const char *at, size_t len) {
  gw_http_req *r = gw_http__req(p);
  /* A piece of a name whose end we have not seen extends it; otherwise
   * (the previous header has its value offset) a new header starts. */
  if (r->n_hdrs == 0 || r->hdrs[r->n_hdrs - 1].value != 0) {
    if (r->n_hdrs == r->max_hdrs) {
      r->status = 431;
      return -1;
    }
    r->hdrs[r->n_hdrs].name = (uint32_t)r->used;
    r->hdrs[r->n_hdrs].value = 0;
    r->n_hdrs++;
  }
  size_t start = r->used;
  if (gw_http__append(r, at, len) != 0) return -1;
  for (size_t i = start; i < r->used; i++)
    r->head[i] = (char)tolower((unsigned char)r->head[i]);
  return 0;
}

static int gw_http__on_field_complete(llhttp_t *p) {
  gw_http_req *r = gw_http__req(p);
  if (gw_http__terminate(r) != 0) return -1;
  /* The value starts here even when llhttp sends no data for it (empty). */
  r->hdrs[r->n_hdrs - 1].value = (uint32_t)r->used;
  return 0;
}

static int gw_http__on_value(llhttp_t *p, const char *at, size_t len) {
  return gw_http__append(gw_http__req(p), at, len);
}

static int gw_http__on_value_complete(llhttp_t *p) {
  return gw_http__terminate(gw_http__req(p));
}

static int gw_http__on_headers_complete(llhttp_t *p) {
  gw_http__req(p)->complete = 1;
  return 2; /* no body; stop here and let us take over the stream */
}

static llhttp_settings_t gw_http__settings;

gw_http_req *gw_http_req_new(size_t max_head, uint32_t max_headers) {
  if (!gw_http__settings.on_headers_complete) {
    llhttp_settings_init(&gw_http__settings);
    gw_http__settings.on_url = gw_http__on_url;
    gw_http__settings.on_url_complete = gw_http__on_url_complete;
    gw_http__settings.on_header_field = gw_http__on_field;
    gw_http__settings.on_header_field_complete = gw_http__on_field_complete;
    gw_http__settings.on_header_value = gw_http__on_value;
    gw_http__settings.on_header_value_complete = gw_http__on_value_complete;
    gw_http__settings.on_headers_complete = gw_http__on_headers_complete;
  }
  gw_http_req *r = calloc(1, sizeof(*r));
  if (!r) return NULL;
  r->max = max_head;
  r->cap = max_head < 1024 ? max_head : 1024;
  r->head = malloc(r->cap);
  r->max_hdrs = max_headers;
  r->hdrs = calloc(max_headers, sizeof(*r->hdrs));
  if (!r->head || !r->hdrs) {
    gw_http_req_free(r);
    return NULL;
  }
  llhttp_init(&r->parser, HTTP_REQUEST, &gw_http__settings);
  r->parser.data = r;
  return r;
}

void gw_http_req_free(gw_http_req *r) {
  if (!r) return;
  free(r->head);
  free(r->hdrs);
  free(r->early);
  free(r);
}

/* Keeps what the client sends between its head and our 101 (a plain
 * socket stops reading after the head; TLS may still hand over records that
 * were already decrypted), up to max_head bytes. */
static int gw_http__keep_early(gw_http_req *r, const char *at, size_t len) {
  if (len == 0) return GW_HTTP_DONE;
  if (len > r->max - r->early_len) return 400; /* a flood before the 101 */
  char *grown = realloc(r->early, r->early_len + len);
  if (!grown) return 503;
  memcpy(grown + r->early_len, at, len);
  r->early = grown;
  r->early_len += len;
  return GW_HTTP_DONE;
}

int gw_http_req_feed(gw_http_req *r, const char *data, size_t len) {
  if (r->complete) return gw_http__keep_early(r, data, len);
  llhttp_errno_t e = llhttp_execute(&r->parser, data, len);
  if (r->status) return r->status;
  if (e == HPE_PAUSED_UPGRADE && r->complete) {
    const char *end = llhttp_get_error_pos(&r->parser);
    size_t used = end ? (size_t)(end - data) : len;
    r->fed += (uint32_t)used;
    return gw_http__keep_early(r, data + used, len - used);
  }
  if (e != HPE_OK) return 400;
  r->fed += (uint32_t)len;
  return r->fed > r->max ? 431 : GW_HTTP_MORE;
}

/* ---- checking ----------------------------------------------------------- */

const char *gw_http_req_header_nth(const gw_http_req *r, const char *name, uint32_t nth) {
  for (uint32_t i = 0; i < r->n_hdrs; i++)
    if (strcmp(r->head + r->hdrs[i].name, name) == 0 && nth-- == 0)
      return r->head + r->hdrs[i].value;
  return NULL;
}

const char *gw_http_req_header(const gw_http_req *r, const char *name) {
  return gw_http_req_header_nth(r, name, 0);
}

/* 1 when the comma-separated list holds [s, s + len): case-insensitive
 * (header names, upgrade tokens) or exact (cookie names, RFC 6265). */
static int gw_http__in_list(const char *list, const char *s, size_t len, int nocase) {
  for (const char *p = list; p && *p;) {
    while (*p == ' ' || *p == '\t' || *p == ',') p++;
    const char *end = p;
    while (*end && *end != ',') end++;
    const char *last = end;
    while (last > p && (last[-1] == ' ' || last[-1] == '\t')) last--;
    if ((size_t)(last - p) == len && len > 0 &&
        (nocase ? strncasecmp(p, s, len) : memcmp(p, s, len)) == 0)
      return 1;
    p = end;
  }
  return 0;
}

static int gw_http__has_token(const char *list, const char *token) {
  return gw_http__in_list(list, token, strlen(token), 1);
}

/* RFC 6455: the key is base64 of 16 bytes, i.e. 22 characters and "==". */
static int gw_http__key_valid(const char *key) {
  if (!key || strlen(key) != 24 || strcmp(key + 22, "==") != 0) return 0;
  for (int i = 0; i < 22; i++)
    if (!isalnum((unsigned char)key[i]) && key[i] != '+' && key[i] != '/') return 0;
  return 1;
}

static const char *gw_http__route(const char *path, size_t len, int echo) {
  for (size_t i = 0; i < sizeof(gw_http__paths) / sizeof(*gw_http__paths); i++)
    if (strlen(gw_http__paths[i]) == len && memcmp(path, gw_http__paths[i], len) == 0)
      return gw_http__paths[i];
  if (echo && len == sizeof(gw_http__echo_path) - 1 &&
      memcmp(path, gw_http__echo_path, len) == 0)
    return gw_http__echo_path;
  return NULL;
}

int gw_http_is_echo(const char *path) { return path == gw_http__echo_path; }

int gw_http_req_check(const gw_http_req *r, int echo_enabled, gw_http_upgrade *up) {
  if (llhttp_get_method((llhttp_t *)&r->parser) != HTTP_GET) return 405;
  const char *url = r->head; /* the url is the first string stored */
  const char *q = strchr(url, '?');
  size_t plen = q ? (size_t)(q - url) : strlen(url);
  up->path = gw_http__route(url, plen, echo_enabled);
  if (!up->path) return 404;
  up->query = q ? q + 1 : "";
  const char *upgrade = gw_http_req_header(r, "upgrade");
  const char *connection = gw_http_req_header(r, "connection");
  if (!gw_http__has_token(upgrade, "websocket") ||
      !gw_http__has_token(connection, "upgrade"))
    return 400;
  const char *version = gw_http_req_header(r, "sec-websocket-version");
  if (!version || strcmp(version, "13") != 0) return 426;
  up->key = gw_http_req_header(r, "sec-websocket-key");
  if (!gw_http__key_valid(up->key)) return 400;
  return 0;
}

int gw_http_wants_protocol(const gw_http_req *r, const char *name) {
  /* Subprotocol names are case-sensitive tokens (RFC 6455 4.1). */
  return gw_http__in_list(gw_http_req_header(r, "sec-websocket-protocol"), name,
                          strlen(name), 0);
}

int gw_http_origin_allowed(const gw_http_req *r, const char *allowed) {
  const char *origin = gw_http_req_header(r, "origin");
  if (!allowed || !allowed[0] || !origin) return 1;
  return origin_in_list(origin, allowed);
}

/* Appends to out the "name=value" pairs of the cookie-string v whose name
 * is listed, "; "-separated; returns out's new end. out has room for v
 * plus 2: the kept pairs are never longer than v with its separators. */
static char *gw_http__filter_cookies(const char *v, const char *cookies, char *out) {
  char *o = out;
  for (const char *p = v; *p;) {
    while (*p == ' ' || *p == '\t' || *p == ';') p++;
    const char *end = p;
    while (*end && *end != ';') end++;
    const char *eq = memchr(p, '=', (size_t)(end - p));
    const char *name_end = eq ? eq : end;
    while (name_end > p && (name_end[-1] == ' ' || name_end[-1] == '\t')) name_end--;
    const char *last = end;
    while (last > p && (last[-1] == ' ' || last[-1] == '\t')) last--;
    if (eq && gw_http__in_list(cookies, p, (size_t)(name_end - p), 0)) {
      if (o > out) *o++ = ';', *o++ = ' ';
      memcpy(o, p, (size_t)(last - p));
      o += last - p;
    }
    p = end;
  }
  *o = '\0';
  return o;
}

int gw_http_req_forward(const gw_http_req *r, const char *names, const char *cookies,
                        chan_header **out, size_t *n, char **scratch) {
  *n = 0;
  *scratch = NULL;
  *out = calloc(r->n_hdrs ? r->n_hdrs : 1, sizeof(**out));
  if (!*out) return -1;
  size_t room = 0;
  for (uint32_t i = 0; i < r->n_hdrs; i++)
    if (strcmp(r->head + r->hdrs[i].name, "cookie") == 0)
      room += strlen(r->head + r->hdrs[i].value) + 3;
  char *o = room ? (*scratch = malloc(room)) : NULL;
  if (room && !o) {
    free(*out);
    *out = NULL;
    return -1;
  }
  for (uint32_t i = 0; i < r->n_hdrs; i++) {
    const char *name = r->head + r->hdrs[i].name, *value = r->head + r->hdrs[i].value;
    if (!gw_http__has_token(names, name)) continue;
    if (strcmp(name, "cookie") == 0) {
      char *end = gw_http__filter_cookies(value, cookies, o);
      if (end == o) continue; /* none of ours */
      value = o;
      o = end + 1;
    }
    (*out)[*n].name = (char *)name;
    (*out)[*n].value = (char *)value;
    (*n)++;
  }
  assert(!room || o <= *scratch + room);
  return 0;
}

/* ---- responses ------------------------------------------------------------ */

void gw_http_accept_key(const char *key, char out[29]) {
  /* Keys are checked to be 24 characters before we get here. */
  char joined[24 + sizeof(GW_WS_GUID)];
  int n = snprintf(joined, sizeof(joined), "%.24s%s", key, GW_WS_GUID);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int dlen = 0;
  EVP_Digest(joined, (size_t)n, digest, &dlen, EVP_sha1(), NULL);
  EVP_EncodeBlock((unsigned char *)out, digest, (int)dlen);
}

size_t gw_http_switching(const char *key, const char *protocol, const char *extensions,
                         char *buf, size_t buflen) {
  char accept[29];
  gw_http_accept_key(key, accept);
  int n = snprintf(buf, buflen,
                   "HTTP/1.1 101 Switching Protocols\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: %s\r\n%s%s%s%s%s%s\r\n",
                   accept, protocol ? "Sec-WebSocket-Protocol: " : "",
                   protocol ? protocol : "", protocol ? "\r\n" : "",
                   extensions ? "Sec-WebSocket-Extensions: " : "",
                   extensions ? extensions : "", extensions ? "\r\n" : "");
  return n > 0 && (size_t)n < buflen ? (size_t)n : 0;
}


size_t gw_http_error(int status, char *buf, size_t buflen) {
  const char *reason = http_reason(status);
  const char *extra = status == 426 ? "Sec-WebSocket-Version: 13\r\n"
                      : status == 405 ? "Allow: GET\r\n"
                                      : "";
  int n = snprintf(buf, buflen,
                   "HTTP/1.1 %d %s\r\n"
                   "Content-Type: text/plain\r\n"
                   "Content-Length: %zu\r\n"
                   "%s"
                   "Connection: close\r\n\r\n"
                   "%s\n",
                   status, reason, strlen(reason) + 1, extra, reason);
  return n > 0 && (size_t)n < buflen ? (size_t)n : 0;
}

/* ---- the client address behind trusted proxies ---------------------------- */

/* One address, IPv4-mapped IPv6 folded to IPv4 so either form matches. */
typedef struct gw_http__ip {
  int family; /* AF_INET or AF_INET6 */
  unsigned char b[16];
} gw_http__ip;

/* Parses len bytes of text as an address; "[v6]" brackets are allowed. */
static int gw_http__ip_parse(const char *s, size_t len, gw_http__ip *ip) {
  char buf[INET6_ADDRSTRLEN + 2];
  if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
    s++;
    len -= 2;
  }
  if (len == 0 || len >= sizeof(buf)) return -1;
  memcpy(buf, s, len);
  buf[len] = '\0';
  if (inet_pton(AF_INET, buf, ip->b) == 1) {
    ip->family = AF_INET;
    return 0;
  }
  if (inet_pton(AF_INET6, buf, ip->b) != 1) return -1;
  static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (memcmp(ip->b, mapped, 12) == 0) {
    memmove(ip->b, ip->b + 12, 4);
    ip->family = AF_INET;
  } else {
    ip->family = AF_INET6;
  }
  return 0;
}

/* The next item of a comma/space separated list: *p advances past it. */
static int gw_http__next_item(const char **p, const char **item, size_t *len) {
  const char *s = *p;
  while (*s == ' ' || *s == '\t' || *s == ',') s++;
  if (!*s) return 0;
  const char *e = s;
  while (*e && *e != ' ' && *e != '\t' && *e != ',') e++;
  *item = s;
  *len = (size_t)(e - s);
  *p = e;
  return 1;
}

/* One "addr" or "addr/prefix" of the trusted list. */
static int gw_http__cidr_parse(const char *s, size_t len, gw_http__ip *net, int *bits) {
  const char *slash = memchr(s, '/', len);
  size_t alen = slash ? (size_t)(slash - s) : len;
  if (gw_http__ip_parse(s, alen, net) != 0) return -1;
  int max = net->family == AF_INET ? 32 : 128;
  *bits = max;
  if (slash) {
    const char *d = slash + 1, *end = s + len;
    if (d == end || end - d > 3) return -1;
    int v = 0;
    for (; d < end; d++) {
      if (*d < '0' || *d > '9') return -1;
      v = v * 10 + (*d - '0');
    }
    if (v > max) return -1;
    *bits = v;
  }
  return 0;
}

static int gw_http__in_net(const gw_http__ip *ip, const gw_http__ip *net, int bits) {
  if (ip->family != net->family) return 0;
  int whole = bits / 8, rest = bits % 8;
  if (memcmp(ip->b, net->b, (size_t)whole) != 0) return 0;
  if (rest == 0) return 1;
  unsigned char mask = (unsigned char)(0xff << (8 - rest));
  return (ip->b[whole] & mask) == (net->b[whole] & mask);
}

static int gw_http__trusted(const char *trusted, const gw_http__ip *ip) {
  const char *p = trusted, *item;
  size_t len;
  while (gw_http__next_item(&p, &item, &len)) {
    gw_http__ip net;
    int bits;
    if (gw_http__cidr_parse(item, len, &net, &bits) == 0 && gw_http__in_net(ip, &net, bits))
      return 1;
  }
  return 0;
}

int gw_http_trusted_check(const char *trusted, char *err, size_t errlen) {
  const char *p = trusted ? trusted : "", *item;
  size_t len;
  while (gw_http__next_item(&p, &item, &len)) {
    gw_http__ip net;
    int bits;
    if (gw_http__cidr_parse(item, len, &net, &bits) != 0) {
      snprintf(err, errlen, "not an address or CIDR block: '%.*s'",
               len > 64 ? 64 : (int)len, item);
      return -1;
    }
  }
  return 0;
}

int gw_http_is_trusted(const char *trusted, const char *host) {
  gw_http__ip ip;
  return trusted && trusted[0] && gw_http__ip_parse(host, strlen(host), &ip) == 0 &&
         gw_http__trusted(trusted, &ip);
}

int gw_http_client_addr(const gw_http_req *r, const chan_addr *peer,
                        const char *trusted, chan_addr *out) {
  *out = *peer;
  gw_http__ip hop;
  if (!trusted || !trusted[0] || gw_http__ip_parse(peer->host, strlen(peer->host), &hop) != 0 ||
      !gw_http__trusted(trusted, &hop))
    return 0;
  int found = 0;
  /* Right to left across every X-Forwarded-For header, last header first:
   * the right end is what the nearest proxy appended. */
  for (uint32_t h = r->n_hdrs; h-- > 0;) {
    if (strcmp(r->head + r->hdrs[h].name, "x-forwarded-for") != 0) continue;
    const char *v = r->head + r->hdrs[h].value;
    const char *end = v + strlen(v);
    while (end > v) {
      const char *start = end;
      while (start > v && start[-1] != ',') start--;
      const char *a = start, *b = end;
      while (a < b && (*a == ' ' || *a == '\t')) a++;
      while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
      end = start > v ? start - 1 : v;
      if (a == b) continue; /* an empty list element: skipped, as RFC 7230 says */
      gw_http__ip ip;
      if (gw_http__ip_parse(a, (size_t)(b - a), &ip) != 0) return found;
      hop = ip;
      if (!inet_ntop(hop.family, hop.b, out->host, sizeof(out->host))) {
        *out = *peer;
        return 0;
      }
      out->port = 0;
      found = 1;
      if (!gw_http__trusted(trusted, &hop)) return 1;
    }
  }
  return found;
}
