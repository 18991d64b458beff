/*
 * wk_auth.c - token extraction and verification for websocket.connect.
 *
 * Owns: the secrets (copies, at least WK_AUTH_SECRET_MIN bytes), the static
 * token table, the parsing of query strings, cookies and the Authorization
 * header as far as finding a token (and the csrftoken cookie) needs. Must not: log, or put any part of a token in a reason or an error:
 * callers log what this returns.
 *
 * Static tokens are compared in constant time against every entry, so the
 * lookup is linear: it is a development mode with a handful of tokens.
 */
#include "wk_auth.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "origin.h"
#include "token.h"

typedef struct wk_auth_static {
  char *token; /* malloc'd, owned by the table */
  size_t len;
  long long user_id;
  char *objects_json; /* malloc'd or NULL */
} wk_auth_static;

struct wk_auth {
  token_secret secrets[2]; /* key points at secret_copy[i] */
  char *secret_copy[2];
  size_t n_secrets;
  int leeway_s;
  wk_auth_static *statics;
  size_t n_statics;
};

const char *wk_auth_source_name(wk_auth_source src) {
  switch (src) {
    case WK_AUTH_NONE: return "none";
    case WK_AUTH_QUERY: return "query";
    case WK_AUTH_COOKIE: return "cookie";
    case WK_AUTH_HEADER: return "header";
  }
  return "?";
}

/* --- extraction --------------------------------------------------------- */

static int wk_auth__hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Form-decodes s[0..n) ('+' is a space, %XX a byte) into out. Returns the
 * length, or -1 on a bad escape, an encoded NUL, or no room. */
static long wk_auth__url_decode(const char *s, size_t n, char *out,
                               size_t outlen) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int c = (unsigned char)s[i];
    if (c == '+') {
      c = ' ';
    } else if (c == '%') {
      if (i + 2 >= n) return -1;
      int hi = wk_auth__hex(s[i + 1]), lo = wk_auth__hex(s[i + 2]);
      if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return -1;
      c = hi * 16 + lo;
      i += 2;
    }
    if (o + 1 >= outlen) return -1;
    out[o++] = (char)c;
  }
  out[o] = '\0';
  return (long)o;
}

/* The first name=value pair whose decoded name matches counts. */
int wk_auth_query_param(const char *query, const char *name, char *out,
                        size_t outlen) {
  char key[64];
  const char *p = query ? query : "";
  while (*p) {
    size_t plen = strcspn(p, "&");
    const char *eq = memchr(p, '=', plen);
    size_t klen = eq ? (size_t)(eq - p) : plen;
    long kn = wk_auth__url_decode(p, klen, key, sizeof key);
    if (kn >= 0 && strcmp(key, name) == 0) {
      const char *v = eq ? eq + 1 : p + plen;
      long vn = wk_auth__url_decode(v, (size_t)(p + plen - v), out, outlen);
      if (vn < 0) return -1;
      return vn > 0 ? 1 : 0;
    }
    p += plen;
    if (*p == '&') p++;
  }
  return 0;
}

static int wk_auth__ows(char c) { return c == ' ' || c == '\t'; }

/* Trims optional whitespace around s[0..*n); returns the new start. */
static const char *wk_auth__trim(const char *s, size_t *n) {
  while (*n && wk_auth__ows(s[0])) s++, (*n)--;
  while (*n && wk_auth__ows(s[*n - 1])) (*n)--;
  return s;
}

static int wk_auth__copy(const char *v, size_t n, char *out, size_t outlen) {
  if (n == 0) return 0;
  if (n >= outlen) return -1;
  memcpy(out, v, n);
  out[n] = '\0';
  return 1;
}

/* RFC 6265 cookie-string: "a=b; c=d". Values are not URL-decoded (cookies
 * have no such rule); a quoted value loses its quotes. */
int wk_auth_cookie(const char *cookie_header, const char *name, char *out,
                   size_t outlen) {
  size_t name_len = strlen(name);
  const char *p = cookie_header ? cookie_header : "";
  while (*p) {
    size_t plen = strcspn(p, ";");
    const char *eq = memchr(p, '=', plen);
    if (eq) {
      size_t klen = (size_t)(eq - p), vlen = (size_t)(p + plen - eq - 1);
      const char *k = wk_auth__trim(p, &klen);
      const char *v = wk_auth__trim(eq + 1, &vlen);
      if (klen == name_len && memcmp(k, name, klen) == 0) {
        if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') v++, vlen -= 2;
        return wk_auth__copy(v, vlen, out, outlen);
      }
    }
    p += plen;
    if (*p == ';') p++;
  }
  return 0;
}

int wk_auth_bearer(const char *authorization, char *out, size_t outlen) {
  static const char scheme[] = "bearer";
  size_t n = authorization ? strlen(authorization) : 0;
  const char *v = wk_auth__trim(authorization ? authorization : "", &n);
  if (n <= sizeof scheme - 1 ||
      strncasecmp(v, scheme, sizeof scheme - 1) != 0 ||
      !wk_auth__ows(v[sizeof scheme - 1]))
    return 0; /* another scheme (Basic ...) is no bearer token */
  v += sizeof scheme - 1;
  n -= sizeof scheme - 1;
  v = wk_auth__trim(v, &n);
  for (size_t i = 0; i < n; i++)
    if (wk_auth__ows(v[i])) return -1;
  return wk_auth__copy(v, n, out, outlen);
}

int wk_auth_msg_cookie(const chan_msg *m, const char *name, char *out,
                       size_t outlen) {
  for (size_t i = 0; i < m->n_headers; i++) {
    if (strcmp(m->headers[i].name, "cookie") != 0) continue;
    int rc = wk_auth_cookie(m->headers[i].value, name, out, outlen);
    if (rc != 0) return rc;
  }
  return 0;
}

/* Every value of cookie name in one Cookie header against *first (the
 * first value seen, copied to out). -2 on a different one, -1 when one is
 * unusable, else how many were seen so far in *seen. */
static int wk_auth__cookie_all(const char *cookie_header, const char *name,
                               char *out, size_t outlen, int *seen) {
  char *tmp = malloc(outlen);
  size_t name_len = strlen(name);
  const char *p = cookie_header ? cookie_header : "";
  int rc = 0;
  if (!tmp) return -1;
  while (*p && rc == 0) {
    size_t plen = strcspn(p, ";");
    /* One pair at a time through wk_auth_cookie: the same trimming and
     * quoting rules as the first-wins lookup. */
    const char *eq = memchr(p, '=', plen);
    size_t klen = eq ? (size_t)(eq - p) : 0;
    const char *k = eq ? wk_auth__trim(p, &klen) : NULL;
    if (k && klen == name_len && memcmp(k, name, klen) == 0) {
      char *pair = strndup(p, plen);
      int got = pair ? wk_auth_cookie(pair, name, tmp, outlen) : -1;
      free(pair);
      if (got < 0) {
        rc = -1;
      } else {
        if (got == 0) tmp[0] = '\0'; /* an empty value is a value too */
        if (*seen == 0) memcpy(out, tmp, strlen(tmp) + 1);
        else if (strcmp(out, tmp) != 0) rc = -2;
        (*seen)++;
      }
    }
    p += plen;
    if (*p == ';') p++;
  }
  free(tmp);
  return rc;
}

int wk_auth_msg_cookie_unique(const chan_msg *m, const char *name, char *out,
                              size_t outlen) {
  int seen = 0;
  if (outlen == 0) return -1;
  out[0] = '\0';
  for (size_t i = 0; i < m->n_headers; i++) {
    if (strcmp(m->headers[i].name, "cookie") != 0) continue;
    int rc = wk_auth__cookie_all(m->headers[i].value, name, out, outlen, &seen);
    if (rc != 0) return rc;
  }
  return seen && out[0] ? 1 : 0;
}

static const char *wk_auth__header(const chan_msg *m, const char *name) {
  for (size_t i = 0; i < m->n_headers; i++)
    if (strcmp(m->headers[i].name, name) == 0) return m->headers[i].value;
  return NULL;
}

int wk_auth_origin_check(const chan_msg *m, wk_auth_source src,
                         const char *allowed_origins, char *reason,
                         size_t reasonlen) {
  if (src != WK_AUTH_COOKIE) return 0;
  const char *origin = wk_auth__header(m, "origin");
  if (!origin) {
    snprintf(reason, reasonlen, "cookie token without Origin");
    return -1;
  }
  if (!origin_allowed(origin, wk_auth__header(m, "host"), allowed_origins)) {
    snprintf(reason, reasonlen, "cookie token from a disallowed Origin");
    return -1;
  }
  return 0;
}

int wk_auth_find_token(const chan_msg *m, char *out, size_t outlen,
                       wk_auth_source *src) {
  int rc;
  *src = WK_AUTH_QUERY;
  rc = wk_auth_query_param(m->query_string, "token", out, outlen);
  if (rc != 0) return rc;
  *src = WK_AUTH_COOKIE;
  /* Two different token cookies: one may be planted by a sibling
   * subdomain, to connect the victim's page as the planter. */
  rc = wk_auth_msg_cookie_unique(m, "token", out, outlen);
  if (rc != 0) return rc;
  *src = WK_AUTH_HEADER;
  rc = wk_auth_bearer(wk_auth__header(m, "authorization"), out, outlen);
  if (rc != 0) return rc;
  *src = WK_AUTH_NONE;
  return 0;
}

/* --- verification ------------------------------------------------------- */

static const wk_auth_static *wk_auth__static_find(const wk_auth *a,
                                                 const char *tok, size_t len) {
  const wk_auth_static *hit = NULL;
  for (size_t i = 0; i < a->n_statics; i++) {
    const wk_auth_static *s = &a->statics[i];
    if (s->len == len && CRYPTO_memcmp(s->token, tok, len) == 0) hit = s;
  }
  return hit;
}

static int wk_auth__from_static(const wk_auth_static *s, wk_auth_identity *out,
                               char *reason, size_t reasonlen) {
  out->user_id = s->user_id;
  out->objects_json = NULL;
  out->expires = 0;
  if (s->objects_json && !(out->objects_json = strdup(s->objects_json))) {
    snprintf(reason, reasonlen, "out of memory");
    return -1;
  }
  return 0;
}

static int wk_auth__from_jwt(const wk_auth *a, const char *tok, size_t len,
                            time_t now, wk_auth_identity *out, char *reason,
                            size_t reasonlen) {
  token_claims c;
  char why[128];
  if (token_verify(tok, len, a->secrets, a->n_secrets, now, a->leeway_s, &c,
                   why, sizeof why) != 0) {
    snprintf(reason, reasonlen, "%s", why);
    return -1;
  }
  out->user_id = c.user_id;
  out->expires = c.exp ? c.exp + a->leeway_s : 0;
  out->objects_json = c.objects_json; /* ownership moves to out */
  c.objects_json = NULL;
  token_claims_free(&c);
  return 0;
}

static int wk_auth__check(const wk_auth *a, const char *tok, time_t now,
                          wk_auth_identity *out, char *reason, size_t reasonlen);

int wk_auth_check(const wk_auth *a, const chan_msg *m, time_t now,
                  wk_auth_identity *out, char *reason, size_t reasonlen) {
  char tok[WK_AUTH_TOKEN_MAX];
  wk_auth_source src;
  int rc = wk_auth_find_token(m, tok, sizeof tok, &src);
  out->user_id = 0;
  out->objects_json = NULL;
  out->expires = 0;
  out->source = src;
  if (rc == 0) {
    snprintf(reason, reasonlen, "no token");
    return -1;
  }
  if (rc == -2) {
    snprintf(reason, reasonlen, "conflicting token cookies");
    return -1;
  }
  if (rc < 0) {
    snprintf(reason, reasonlen, "malformed token in %s",
             wk_auth_source_name(src));
    return -1;
  }
  return wk_auth__check(a, tok, now, out, reason, reasonlen);
}

int wk_auth_check_token(const wk_auth *a, const char *tok, time_t now,
                        wk_auth_identity *out, char *reason, size_t reasonlen) {
  out->user_id = 0;
  out->objects_json = NULL;
  out->expires = 0;
  out->source = WK_AUTH_NONE;
  return wk_auth__check(a, tok, now, out, reason, reasonlen);
}

/* The token's verdict, wherever it came from. */
static int wk_auth__check(const wk_auth *a, const char *tok, time_t now,
                          wk_auth_identity *out, char *reason, size_t reasonlen) {
  size_t len = strlen(tok);
  if (len == 0 || len >= WK_AUTH_TOKEN_MAX) {
    snprintf(reason, reasonlen, "malformed token");
    return -1;
  }
  const wk_auth_static *s = wk_auth__static_find(a, tok, len);
  if (s) return wk_auth__from_static(s, out, reason, reasonlen);
  if (a->n_secrets)
    return wk_auth__from_jwt(a, tok, len, now, out, reason, reasonlen);
  snprintf(reason, reasonlen, "unknown static token");
  return -1;
}

void wk_auth_identity_free(wk_auth_identity *id) {
  free(id->objects_json);
  id->objects_json = NULL;
}

/* --- setup -------------------------------------------------------------- */

void wk_auth_free(wk_auth *a) {
  if (!a) return;
  for (size_t i = 0; i < a->n_statics; i++) {
    OPENSSL_cleanse(a->statics[i].token, a->statics[i].len);
    free(a->statics[i].token);
    free(a->statics[i].objects_json);
  }
  free(a->statics);
  for (size_t i = 0; i < 2; i++) {
    if (a->secret_copy[i]) {
      OPENSSL_cleanse(a->secret_copy[i], strlen(a->secret_copy[i]));
      free(a->secret_copy[i]);
    }
  }
  free(a);
}

static int wk_auth__add_secret(wk_auth *a, const char *secret) {
  if (!secret || !secret[0]) return 0;
  if (strlen(secret) < WK_AUTH_SECRET_MIN) return -2;
  char *copy = strdup(secret);
  if (!copy) return -1;
  a->secret_copy[a->n_secrets] = copy;
  a->secrets[a->n_secrets].key = (const unsigned char *)copy;
  a->secrets[a->n_secrets].len = strlen(copy);
  a->n_secrets++;
  return 0;
}

/* "12" -> 12; anything but a decimal integer from 1 to TOKEN_USER_MAX
 * -> -1 (the same bound as a JWT's sub). */
static long long wk_auth__parse_uid(const char *s) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v <= 0 || v > TOKEN_USER_MAX ||
      !isdigit((unsigned char)s[0]))
    return -1;
  return v;
}

/* The rest of a token-file line, a JSON object, in the compact form a JWT's
 * claim also takes (it goes into every session), ids checked and exact.
 * NULL when not such an object (or out of memory). */
static char *wk_auth__objects_compact(const char *json) {
  cJSON *o = cJSON_Parse(json);
  char *text = NULL;
  token_objects_text(o, &text);
  cJSON_Delete(o);
  return text;
}

static const char wk_auth_ws[] = " \t\r\n";

/* Cuts the next whitespace-separated field off *p ("" at the end). */
static char *wk_auth__field(char **p) {
  char *f = *p + strspn(*p, wk_auth_ws);
  char *end = f + strcspn(f, wk_auth_ws);
  if (*end) *end++ = '\0';
  *p = end;
  return f;
}

/* Parses one line "TOKEN USERID [OBJECTS-JSON]" in place into e (which then
 * owns copies). Returns 0, 1 for a blank or comment line, or -1 with a
 * reason that never quotes the line. */
static int wk_auth__parse_line(char *line, wk_auth_static *e,
                              const char **why) {
  char *tok = wk_auth__field(&line);
  if (*tok == '\0' || *tok == '#') return 1;
  char *uid = wk_auth__field(&line);
  char *rest = line + strspn(line, wk_auth_ws);
  rest[strcspn(rest, "\r\n")] = '\0';
  *why = "expected: TOKEN USERID [OBJECTS-JSON], USERID 1 to 2^53-1";
  if (!*uid || (e->user_id = wk_auth__parse_uid(uid)) < 0) return -1;
  *why = "token too long";
  if (strlen(tok) >= WK_AUTH_TOKEN_MAX) return -1;
  *why = "objects must be a JSON object, its ids integers up to 2^53-1";
  e->objects_json = NULL;
  if (*rest && !(e->objects_json = wk_auth__objects_compact(rest))) return -1;
  *why = "out of memory";
  e->len = strlen(tok);
  if (!(e->token = strdup(tok))) {
    free(e->objects_json);
    return -1;
  }
  return 0;
}

static int wk_auth__push_static(wk_auth *a, size_t *cap,
                               const wk_auth_static *e) {
  if (a->n_statics == *cap) {
    size_t ncap = *cap ? *cap * 2 : 8;
    wk_auth_static *v = realloc(a->statics, ncap * sizeof *v);
    if (!v) return -1;
    a->statics = v;
    *cap = ncap;
  }
  a->statics[a->n_statics++] = *e;
  return 0;
}

static int wk_auth__load_file(wk_auth *a, const char *path, char *err,
                             size_t errlen) {
  FILE *f = fopen(path, "r");
  char *line = NULL;
  size_t linecap = 0, cap = 0;
  int lineno = 0, rc = 0;
  if (!f) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return -1;
  }
  while (rc == 0 && getline(&line, &linecap, f) >= 0) {
    wk_auth_static e = {0};
    const char *why = NULL;
    lineno++;
    int lr = wk_auth__parse_line(line, &e, &why);
    if (lr == 0 && wk_auth__push_static(a, &cap, &e) != 0) {
      free(e.token);
      free(e.objects_json);
      lr = -1;
      why = "out of memory";
    }
    if (lr < 0) {
      snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
      rc = -1;
    }
  }
  if (line) OPENSSL_cleanse(line, linecap);
  free(line);
  fclose(f);
  return rc;
}

wk_auth *wk_auth_new(const char *secret, const char *secret_previous,
                     const char *token_file, int leeway_s, char *err,
                     size_t errlen) {
  wk_auth *a = calloc(1, sizeof *a);
  if (!a) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  a->leeway_s = leeway_s;
  const char *names[2] = {"auth.secret", "auth.secret_previous"};
  const char *values[2] = {secret, secret_previous};
  for (int i = 0; i < 2; i++) {
    int rc = wk_auth__add_secret(a, values[i]);
    if (rc == -2)
      snprintf(err, errlen,
               "%s is %zu bytes; an HS256 secret needs at least %d (make "
               "one with: head -c 32 /dev/urandom | base64)",
               names[i], strlen(values[i]), WK_AUTH_SECRET_MIN);
    else if (rc != 0)
      snprintf(err, errlen, "out of memory");
    if (rc != 0) {
      wk_auth_free(a);
      return NULL;
    }
  }
  if (token_file && token_file[0] &&
      wk_auth__load_file(a, token_file, err, errlen) != 0) {
    wk_auth_free(a);
    return NULL;
  }
  if (a->n_secrets == 0 && !(token_file && token_file[0])) {
    snprintf(err, errlen, "no auth: set auth.secret or auth.token_file");
    wk_auth_free(a);
    return NULL;
  }
  return a;
}
