/*
 * wk_auth.h - who is connecting: find the token in a websocket.connect
 * message and check it.
 *
 * Where the token is looked for, first found wins: the query string's
 * "token=" (URL-decoded), the "token" cookie, "Authorization: Bearer". It is
 * then checked as an HS256 JWT against the current and the previous secret
 * (rotation), or looked up in a static token file (development).
 *
 * Owns: token extraction, the static token file, the verdict. Must not: log
 * or return the token (reasons are fixed phrases), or know about groups.
 */
#ifndef WK_AUTH_H
#define WK_AUTH_H

#include <stddef.h>
#include <time.h>

#include "chan_msg.h"

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
  long long user_id;
  char *objects_json; /* raw JSON object of grants, malloc'd; NULL: none */
} wk_auth_identity;

/*
 * secret and secret_previous (either may be NULL or "") are HS256 keys;
 * token_file (NULL or "": none) holds lines "TOKEN USERID [OBJECTS-JSON]",
 * '#' comments and blank lines allowed. At least one of them must be given.
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

/* The three places in order. Returns like the steps; *src says where. */
int wk_auth_find_token(const chan_msg *m, char *out, size_t outlen,
                       wk_auth_source *src);

const char *wk_auth_source_name(wk_auth_source src);

#endif
