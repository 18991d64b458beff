/*
 * wk_auth.h - who is connecting: find the token in a websocket.connect
 * message and check it.
 *
 * Where the token is looked for, first found wins: the query string's
 * "token=" (URL-decoded), the "token" cookie, "Authorization: Bearer". It is
 * then checked as an HS256 JWT against the current and the previous secret
 * (rotation), or looked up in a static token file (development). A token
 * found in a cookie came without the client choosing to send it, so it also
 * needs an allowed Origin (wk_auth_origin_check; the rule: origin.h).
 *
 * Owns: token extraction, the static token file, the secrets' minimum
 * length, the verdict, which token sources need an Origin, the uniqueness
 * of a cookie. Must not: log or return the token (reasons are fixed
 * phrases), know about groups, or define what an allowed origin is.
 */
#ifndef WK_AUTH_H
#define WK_AUTH_H

#include <stddef.h>
#include <time.h>

#include "chan_msg.h"
#include "token.h"

/* Longer tokens are refused. The gateway caps the request head at 8 KiB, so
 * no real token comes near this. */
#define WK_AUTH_TOKEN_MAX 8192

typedef struct wk_auth wk_auth;

typedef enum {
  WK_AUTH_NONE = 0,
  WK_AUTH_QUERY,
  WK_AUTH_COOKIE,
  WK_AUTH_HEADER
} wk_auth_source;

typedef struct wk_auth_identity {
  long long user_id;  /* 1 .. TOKEN_USER_MAX (2^53 - 1) */
  char *objects_json; /* raw JSON object of grants, malloc'd; NULL: none */
  wk_auth_source source; /* where the token was found */
  /* When this access ends (Unix seconds): the credential's exp plus the
   * leeway; 0: never (a static token). Whoever admits the connection (the
   * JWT check here, an application hook) fills it; the worker puts it in
   * the accept reply ("expires") and the gateway closes the connection
   * (4401) a refresh window after it unless a refresh moves it. */
  long long expires;
} wk_auth_identity;

/*
 * secret and secret_previous (either may be NULL or "") are HS256 keys;
 * token_file (NULL or "": none) holds lines "TOKEN USERID [OBJECTS-JSON]",
 * '#' comments and blank lines allowed. At least one of them must be given;
 * a secret shorter than WK_AUTH_SECRET_MIN bytes is refused.
 * leeway_s is the clock skew allowed on exp/nbf. Returns NULL with
 * "FILE:LINE: reason" or another reason in err.
 */
wk_auth *wk_auth_new(const char *secret, const char *secret_previous,
                     const char *token_file, int leeway_s, char *err,
                     size_t errlen);

void wk_auth_free(wk_auth *a);

/*
 * Checks the connect message m at time now. Returns 0 with *out filled
 * (release with wk_auth_identity_free), or -1 with a short reason (never the
 * token) in reason.
 */
int wk_auth_check(const wk_auth *a, const chan_msg *m, time_t now,
                  wk_auth_identity *out, char *reason, size_t reasonlen);

void wk_auth_identity_free(wk_auth_identity *id);

/*
 * Checks one token as wk_auth_check checks the one a connect carries (a
 * static token, or a JWT against the secrets): a refresh
 * ({"token": "..."} on an open connection). Returns 0 with *out filled
 * (source WK_AUTH_NONE), or -1 with a short reason.
 */
int wk_auth_check_token(const wk_auth *a, const char *tok, time_t now,
                        wk_auth_identity *out, char *reason, size_t reasonlen);

/*
 * The extraction steps, public for tests and for the csrftoken cookie. Each
 * returns 1 with the NUL-terminated value in out, 0 when absent or empty, or
 * -1 when present but unusable (bad %-escape, %00, longer than outlen - 1,
 * spaces inside a bearer token).
 */
int wk_auth_query_param(const char *query, const char *name, char *out,
                        size_t outlen);
int wk_auth_cookie(const char *cookie_header, const char *name, char *out,
                   size_t outlen);
int wk_auth_bearer(const char *authorization, char *out, size_t outlen);

/* Value of cookie name over every "cookie" header of m (HTTP/2 clients
 * send several), with wk_auth_cookie's return convention. */
int wk_auth_msg_cookie(const chan_msg *m, const char *name, char *out,
                       size_t outlen);

/* As wk_auth_msg_cookie, but every occurrence of the cookie is read: -2
 * when two of them differ (a sibling domain can plant a second cookie of
 * the same name, and which one comes first is not up to the site). */
int wk_auth_msg_cookie_unique(const chan_msg *m, const char *name, char *out,
                              size_t outlen);

/*
 * A token that came by cookie is ambient authority: the browser sends it
 * to any page's websocket. Such a connection needs an Origin header that
 * origin_allowed (origin.h) accepts against the Host header and
 * allowed_origins (gateway.allowed_origins; "" means the Host's own).
 * Returns 0 when src is not WK_AUTH_COOKIE or the Origin is allowed, else
 * -1 with a fixed reason ("cookie token without Origin", "cookie token
 * from a disallowed Origin").
 */
int wk_auth_origin_check(const chan_msg *m, wk_auth_source src,
                         const char *allowed_origins, char *reason,
                         size_t reasonlen);

/* Secrets shorter than this are refused by wk_auth_new (RFC 7518 3.2: an
 * HS256 key of at least the hash's 256 bits). */
#define WK_AUTH_SECRET_MIN TOKEN_SECRET_MIN

/* The three places in order. Returns like the steps (-2: two different
 * token cookies); *src says where. */
int wk_auth_find_token(const chan_msg *m, char *out, size_t outlen,
                       wk_auth_source *src);

const char *wk_auth_source_name(wk_auth_source src);

#endif
