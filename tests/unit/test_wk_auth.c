/*
 * test_wk_auth.c - where the worker finds a token (query, cookie, bearer
 * header, in that order), how it decodes it, and how it checks it (JWT with
 * key rotation, static token file).
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "token.h"
#include "unit.h"
#include "wk_auth.h"

static char wk_auth_t_buf[WK_AUTH_TOKEN_MAX];

static int wk_auth_t_query(const char *q) {
  return wk_auth_query_param(q, "token", wk_auth_t_buf, sizeof wk_auth_t_buf);
}

static int wk_auth_t_cookie(const char *h, const char *name) {
  return wk_auth_cookie(h, name, wk_auth_t_buf, sizeof wk_auth_t_buf);
}

static int wk_auth_t_bearer(const char *h) {
  return wk_auth_bearer(h, wk_auth_t_buf, sizeof wk_auth_t_buf);
}

UNIT_TEST(wk_auth_query_decoding) {
  UNIT_CHECK(wk_auth_t_query("token=abc") == 1);
  UNIT_CHECK_STR(wk_auth_t_buf, "abc");
  UNIT_CHECK(wk_auth_t_query("a=1&token=ab%2Bc%2fd&b") == 1);
  UNIT_CHECK_STR(wk_auth_t_buf, "ab+c/d");
  UNIT_CHECK(wk_auth_t_query("token=a+b") == 1); /* form encoding */
  UNIT_CHECK_STR(wk_auth_t_buf, "a b");
  UNIT_CHECK(wk_auth_t_query("%74oken=x") == 1); /* the name is decoded too */
  UNIT_CHECK_STR(wk_auth_t_buf, "x");
  UNIT_CHECK(wk_auth_t_query("token=first&token=second") == 1);
  UNIT_CHECK_STR(wk_auth_t_buf, "first");
  UNIT_CHECK(wk_auth_t_query("xtoken=1&tokenx=2&token") == 0);
  UNIT_CHECK(wk_auth_t_query("token=") == 0);
  UNIT_CHECK(wk_auth_t_query("") == 0);
  UNIT_CHECK(wk_auth_query_param(NULL, "token", wk_auth_t_buf, 8) == 0);
  UNIT_CHECK(wk_auth_t_query("&&token=a&") == 1);
  UNIT_CHECK_STR(wk_auth_t_buf, "a");
}

UNIT_TEST(wk_auth_query_refuses_bad_escapes) {
  UNIT_CHECK(wk_auth_t_query("token=ab%zz") == -1);
  UNIT_CHECK(wk_auth_t_query("token=ab%4") == -1);
  UNIT_CHECK(wk_auth_t_query("token=ab%") == -1);
  UNIT_CHECK(wk_auth_t_query("token=a%00b") == -1);
  /* A bad escape elsewhere does not spoil the token. */
  UNIT_CHECK(wk_auth_t_query("x=%zz&token=ok") == 1);
  char small[4];
  UNIT_CHECK(wk_auth_query_param("token=abcd", "token", small,
                                 sizeof small) == -1);
  UNIT_CHECK(wk_auth_query_param("token=abc", "token", small,
                                 sizeof small) == 1);
}

UNIT_TEST(wk_auth_cookie_parsing) {
  UNIT_CHECK(wk_auth_t_cookie("a=b; token=xyz; c=d", "token") == 1);
  UNIT_CHECK_STR(wk_auth_t_buf, "xyz");
  UNIT_CHECK(wk_auth_t_cookie("token=xyz", "token") == 1);
  UNIT_CHECK(wk_auth_t_cookie("  token = x%2By ;other=1", "token") == 1);
  UNIT_CHECK_STR(wk_auth_t_buf, "x%2By"); /* cookies are not URL-decoded */
  UNIT_CHECK(wk_auth_t_cookie("token=\"quoted\"", "token") == 1);
  UNIT_CHECK_STR(wk_auth_t_buf, "quoted");
  UNIT_CHECK(wk_auth_t_cookie("mytoken=1; token=2", "token") == 1);
  UNIT_CHECK_STR(wk_auth_t_buf, "2");
  UNIT_CHECK(wk_auth_t_cookie("csrftoken=c1; token=t1", "csrftoken") == 1);
  UNIT_CHECK_STR(wk_auth_t_buf, "c1");
  UNIT_CHECK(wk_auth_t_cookie("token=a=b", "token") == 1); /* '=' in value */
  UNIT_CHECK_STR(wk_auth_t_buf, "a=b");
  UNIT_CHECK(wk_auth_t_cookie("Token=x", "token") == 0); /* case matters */
  UNIT_CHECK(wk_auth_t_cookie("token", "token") == 0);
  UNIT_CHECK(wk_auth_t_cookie("token=; a=1", "token") == 0);
  UNIT_CHECK(wk_auth_t_cookie(";;", "token") == 0);
  UNIT_CHECK(wk_auth_t_cookie("", "token") == 0);
  UNIT_CHECK(wk_auth_cookie(NULL, "token", wk_auth_t_buf, 8) == 0);
  UNIT_CHECK(wk_auth_t_cookie("token=\"", "token") == 1); /* lone quote */
  UNIT_CHECK_STR(wk_auth_t_buf, "\"");
}

UNIT_TEST(wk_auth_bearer_parsing) {
  UNIT_CHECK(wk_auth_t_bearer("Bearer abc.def") == 1);
  UNIT_CHECK_STR(wk_auth_t_buf, "abc.def");
  UNIT_CHECK(wk_auth_t_bearer("  bEaReR \t abc  ") == 1);
  UNIT_CHECK_STR(wk_auth_t_buf, "abc");
  UNIT_CHECK(wk_auth_t_bearer("Basic dXNlcjpwYXNz") == 0);
  UNIT_CHECK(wk_auth_t_bearer("Bearer") == 0);
  UNIT_CHECK(wk_auth_t_bearer("Bearer   ") == 0);
  UNIT_CHECK(wk_auth_t_bearer("Bearerabc") == 0);
  UNIT_CHECK(wk_auth_t_bearer("Bearer a b") == -1);
  UNIT_CHECK(wk_auth_t_bearer(NULL) == 0);
}

/* A connect message with the given query and headers (name, value pairs). */
static chan_msg wk_auth_t_msg(const char *query, chan_header *h, size_t n) {
  chan_msg m;
  memset(&m, 0, sizeof m);
  m.kind = CHAN_MSG_CONNECT;
  m.query_string = (char *)query;
  m.headers = h;
  m.n_headers = n;
  return m;
}

UNIT_TEST(wk_auth_token_source_order) {
  chan_header h[] = {{"authorization", "Bearer fromheader"},
                     {"cookie", "a=1"},
                     {"cookie", "token=fromcookie"}};
  char tok[64];
  wk_auth_source src;
  chan_msg m = wk_auth_t_msg("token=fromquery", h, 3);
  UNIT_CHECK(wk_auth_find_token(&m, tok, sizeof tok, &src) == 1);
  UNIT_CHECK_STR(tok, "fromquery");
  UNIT_CHECK(src == WK_AUTH_QUERY);
  m = wk_auth_t_msg("other=1", h, 3);
  UNIT_CHECK(wk_auth_find_token(&m, tok, sizeof tok, &src) == 1);
  UNIT_CHECK_STR(tok, "fromcookie"); /* found in the second cookie header */
  UNIT_CHECK(src == WK_AUTH_COOKIE);
  m = wk_auth_t_msg("", h, 2);
  UNIT_CHECK(wk_auth_find_token(&m, tok, sizeof tok, &src) == 1);
  UNIT_CHECK_STR(tok, "fromheader");
  UNIT_CHECK(src == WK_AUTH_HEADER);
  m = wk_auth_t_msg(NULL, h + 1, 1);
  UNIT_CHECK(wk_auth_find_token(&m, tok, sizeof tok, &src) == 0);
  UNIT_CHECK(src == WK_AUTH_NONE);
  /* A malformed token where one was given is refused, not skipped. */
  m = wk_auth_t_msg("token=%zz", h, 3);
  UNIT_CHECK(wk_auth_find_token(&m, tok, sizeof tok, &src) == -1);
  UNIT_CHECK(src == WK_AUTH_QUERY);
  /* Two different token cookies (one planted): neither is used. The same
   * one twice is one token. */
  chan_header two[] = {{"cookie", "token=mine"}, {"cookie", "a=1; token=planted"}};
  m = wk_auth_t_msg("", two, 2);
  UNIT_CHECK(wk_auth_find_token(&m, tok, sizeof tok, &src) == -2);
  UNIT_CHECK(src == WK_AUTH_COOKIE);
  chan_header same[] = {{"cookie", "token=mine; token=\"mine\""}};
  m = wk_auth_t_msg("", same, 1);
  UNIT_CHECK(wk_auth_find_token(&m, tok, sizeof tok, &src) == 1);
  UNIT_CHECK_STR(tok, "mine");
}

/* 32 bytes and more: wk_auth_new refuses shorter secrets. */
static const char wk_auth_t_key[] = "current-secret-0123456789abcdefgh";
static const char wk_auth_t_old[] = "previous-secret-0123456789abcdefg";

static char *wk_auth_t_mint(const char *key, long long uid, long long exp,
                            const char *extra) {
  token_secret s = {(const unsigned char *)key, strlen(key)};
  return token_mint(&s, uid, exp, extra);
}

/* Checks a connect whose query is "token=<tok>"; returns the user or -1. */
static long long wk_auth_t_check(const wk_auth *a, const char *tok,
                                 time_t now, char **objects) {
  char query[WK_AUTH_TOKEN_MAX + 8], reason[128];
  wk_auth_identity id;
  snprintf(query, sizeof query, "token=%s", tok);
  chan_msg m = wk_auth_t_msg(query, NULL, 0);
  if (wk_auth_check(a, &m, now, &id, reason, sizeof reason) != 0) {
    UNIT_CHECK(reason[0] != '\0' && !strstr(reason, tok));
    return -1;
  }
  if (objects) *objects = id.objects_json ? strdup(id.objects_json) : NULL;
  wk_auth_identity_free(&id);
  return id.user_id;
}

UNIT_TEST(wk_auth_jwt_and_rotation) {
  char err[256], *objects = NULL;
  time_t now = 1800000000;
  wk_auth *a = wk_auth_new(wk_auth_t_key, wk_auth_t_old, NULL, 30, err,
                           sizeof err);
  UNIT_CHECK(a != NULL);
  char *cur = wk_auth_t_mint(wk_auth_t_key, 7, now + 60,
                             "{\"objects\": {\"job_events\": [42]}}");
  char *old = wk_auth_t_mint(wk_auth_t_old, 8, now + 60, NULL);
  char *other = wk_auth_t_mint("someone-else", 9, now + 60, NULL);
  char *expired = wk_auth_t_mint(wk_auth_t_key, 10, now - 31, NULL);
  UNIT_CHECK(wk_auth_t_check(a, cur, now, &objects) == 7);
  UNIT_CHECK(objects && strstr(objects, "\"job_events\""));
  free(objects);
  UNIT_CHECK(wk_auth_t_check(a, old, now, NULL) == 8);
  UNIT_CHECK(wk_auth_t_check(a, other, now, NULL) == -1);
  UNIT_CHECK(wk_auth_t_check(a, expired, now, NULL) == -1);
  wk_auth_free(a);
  /* After the rotation window the old key no longer works. */
  a = wk_auth_new(wk_auth_t_key, "", NULL, 30, err, sizeof err);
  UNIT_CHECK(wk_auth_t_check(a, old, now, NULL) == -1);
  UNIT_CHECK(wk_auth_t_check(a, cur, now, NULL) == 7);
  wk_auth_free(a);
  free(cur);
  free(old);
  free(other);
  free(expired);
}

UNIT_TEST(wk_auth_no_token_reason) {
  char err[256], reason[128];
  wk_auth_identity id;
  wk_auth *a = wk_auth_new(wk_auth_t_key, NULL, NULL, 30, err, sizeof err);
  chan_msg m = wk_auth_t_msg("", NULL, 0);
  UNIT_CHECK(wk_auth_check(a, &m, 0, &id, reason, sizeof reason) == -1);
  UNIT_CHECK_STR(reason, "no token");
  m = wk_auth_t_msg("token=%", NULL, 0);
  UNIT_CHECK(wk_auth_check(a, &m, 0, &id, reason, sizeof reason) == -1);
  UNIT_CHECK_STR(reason, "malformed token in query");
  wk_auth_free(a);
}

static void wk_auth_t_write(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  UNIT_CHECK(f != NULL);
  if (!f) return;
  fputs(text, f);
  fclose(f);
}

UNIT_TEST(wk_auth_static_token_file) {
  char path[] = "/tmp/wk_auth_tokens_XXXXXX", err[256], *objects = NULL;
  int fd = mkstemp(path);
  UNIT_CHECK(fd >= 0);
  close(fd);
  wk_auth_t_write(path,
                  "# dev tokens\n"
                  "\n"
                  "alice-token 7\n"
                  "  bob-token\t8   {\"job_events\": \"*\"}\r\n");
  wk_auth *a = wk_auth_new(NULL, NULL, path, 30, err, sizeof err);
  UNIT_CHECK(a != NULL);
  UNIT_CHECK(wk_auth_t_check(a, "alice-token", 0, &objects) == 7);
  UNIT_CHECK(objects == NULL);
  UNIT_CHECK(wk_auth_t_check(a, "bob-token", 0, &objects) == 8);
  UNIT_CHECK_STR(objects, "{\"job_events\":\"*\"}");
  free(objects);
  UNIT_CHECK(wk_auth_t_check(a, "alice-toke", 0, NULL) == -1);
  UNIT_CHECK(wk_auth_t_check(a, "alice-tokenX", 0, NULL) == -1);
  wk_auth_free(a);

  /* Static tokens and JWTs together. */
  a = wk_auth_new(wk_auth_t_key, NULL, path, 30, err, sizeof err);
  char *jwt = wk_auth_t_mint(wk_auth_t_key, 11, 2000000000, NULL);
  UNIT_CHECK(wk_auth_t_check(a, jwt, 1800000000, NULL) == 11);
  UNIT_CHECK(wk_auth_t_check(a, "alice-token", 1800000000, NULL) == 7);
  free(jwt);
  wk_auth_free(a);
  remove(path);
}

UNIT_TEST(wk_auth_static_file_errors) {
  char path[] = "/tmp/wk_auth_tokens_XXXXXX", err[256];
  int fd = mkstemp(path);
  close(fd);
  static const char *const bad[] = {"tok\n", "tok 0\n", "tok -3\n",
                                    "tok 7x\n", "tok 7 [1]\n", "tok 7 {\n"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char text[64];
    snprintf(text, sizeof text, "ok 1\n%s", bad[i]);
    wk_auth_t_write(path, text);
    wk_auth *a = wk_auth_new(NULL, NULL, path, 30, err, sizeof err);
    UNIT_CHECK(a == NULL);
    UNIT_CHECK(strstr(err, ":2:") != NULL && strstr(err, path) != NULL);
    UNIT_CHECK(!strstr(err, "tok "));
  }
  remove(path);
  UNIT_CHECK(wk_auth_new(NULL, NULL, path, 30, err, sizeof err) == NULL);
  UNIT_CHECK(wk_auth_new(NULL, "", "", 30, err, sizeof err) == NULL);
  UNIT_CHECK(strstr(err, "no auth") != NULL);
}

/* ---- issue 12: short secrets, cookie tokens, csrftoken, big ids ------- */

UNIT_TEST(wk_auth_refuses_short_secrets) {
  char err[256];
  /* 31 bytes: refused with a message naming the setting and the rule. */
  wk_auth *a = wk_auth_new("0123456789abcdef0123456789abcde", NULL, NULL, 30,
                           err, sizeof err);
  UNIT_CHECK(a == NULL);
  UNIT_CHECK(strstr(err, "auth.secret is 31 bytes") &&
             strstr(err, "at least 32"));
  a = wk_auth_new(wk_auth_t_key, "short", NULL, 30, err, sizeof err);
  UNIT_CHECK(a == NULL && strstr(err, "auth.secret_previous is 5 bytes"));
  /* 32 bytes: fine. */
  a = wk_auth_new("0123456789abcdef0123456789abcdef", NULL, NULL, 30, err,
                  sizeof err);
  UNIT_CHECK(a != NULL);
  wk_auth_free(a);
}

static chan_msg wk_auth_t_connect(chan_header *h, size_t n) {
  return wk_auth_t_msg("", h, n);
}

UNIT_TEST(wk_auth_cookie_token_needs_allowed_origin) {
  char reason[128];
  chan_header h[] = {{"host", "awx.example.com"},
                     {"origin", "https://awx.example.com"},
                     {"cookie", "token=t"}};
  chan_msg m = wk_auth_t_connect(h, 3);
  /* Same host: allowed with the default (empty) list. */
  UNIT_CHECK(wk_auth_origin_check(&m, WK_AUTH_COOKIE, "", reason,
                                  sizeof reason) == 0);
  /* Another site's page. */
  h[1].value = "https://evil.example.net";
  UNIT_CHECK(wk_auth_origin_check(&m, WK_AUTH_COOKIE, "", reason,
                                  sizeof reason) == -1);
  UNIT_CHECK_STR(reason, "cookie token from a disallowed Origin");
  /* ... unless listed; a list replaces the same-host default. */
  UNIT_CHECK(wk_auth_origin_check(&m, WK_AUTH_COOKIE,
                                  "https://evil.example.net", reason,
                                  sizeof reason) == 0);
  h[1].value = "https://awx.example.com";
  UNIT_CHECK(wk_auth_origin_check(&m, WK_AUTH_COOKIE, "https://ui.example",
                                  reason, sizeof reason) == -1);
  /* No Origin at all. */
  m = wk_auth_t_connect(h + 2, 1);
  UNIT_CHECK(wk_auth_origin_check(&m, WK_AUTH_COOKIE, "", reason,
                                  sizeof reason) == -1);
  UNIT_CHECK_STR(reason, "cookie token without Origin");
  /* Query and bearer tokens are not ambient: no Origin needed. */
  UNIT_CHECK(wk_auth_origin_check(&m, WK_AUTH_QUERY, "", reason,
                                  sizeof reason) == 0);
  UNIT_CHECK(wk_auth_origin_check(&m, WK_AUTH_HEADER, "https://x.example",
                                  reason, sizeof reason) == 0);
  /* awxkit's WSClient (websocket-client): Origin http://HOST[:PORT] with
   * the Host it names, also over wss. */
  chan_header awx[] = {{"host", "awx.example.com:8043"},
                       {"origin", "http://awx.example.com:8043"},
                       {"cookie", "token=\"t\";"}};
  m = wk_auth_t_connect(awx, 3);
  UNIT_CHECK(wk_auth_origin_check(&m, WK_AUTH_COOKIE, "", reason,
                                  sizeof reason) == 0);
}

UNIT_TEST(wk_auth_csrftoken_must_be_unique) {
  char v[64];
  chan_header one[] = {{"cookie", "csrftoken=abc; token=t"}};
  chan_msg m = wk_auth_t_connect(one, 1);
  UNIT_CHECK(wk_auth_msg_cookie_unique(&m, "csrftoken", v, sizeof v) == 1);
  UNIT_CHECK_STR(v, "abc");
  /* The same value twice is harmless. */
  chan_header same[] = {{"cookie", "csrftoken=abc"}, {"cookie", "csrftoken=\"abc\""}};
  m = wk_auth_t_connect(same, 2);
  UNIT_CHECK(wk_auth_msg_cookie_unique(&m, "csrftoken", v, sizeof v) == 1);
  /* Two values (a sibling domain planted one): refused, in one header or
   * across headers, also when one is empty. */
  chan_header two[] = {{"cookie", "csrftoken=planted; token=t; csrftoken=abc"}};
  m = wk_auth_t_connect(two, 1);
  UNIT_CHECK(wk_auth_msg_cookie_unique(&m, "csrftoken", v, sizeof v) == -2);
  chan_header split[] = {{"cookie", "csrftoken=abc"}, {"cookie", "csrftoken=x"}};
  m = wk_auth_t_connect(split, 2);
  UNIT_CHECK(wk_auth_msg_cookie_unique(&m, "csrftoken", v, sizeof v) == -2);
  chan_header empty[] = {{"cookie", "csrftoken=; csrftoken=abc"}};
  m = wk_auth_t_connect(empty, 1);
  UNIT_CHECK(wk_auth_msg_cookie_unique(&m, "csrftoken", v, sizeof v) == -2);
  /* Absent, empty, too long. */
  chan_header none[] = {{"cookie", "token=t; xcsrftoken=1"}};
  m = wk_auth_t_connect(none, 1);
  UNIT_CHECK(wk_auth_msg_cookie_unique(&m, "csrftoken", v, sizeof v) == 0);
  chan_header blank[] = {{"cookie", "csrftoken="}};
  m = wk_auth_t_connect(blank, 1);
  UNIT_CHECK(wk_auth_msg_cookie_unique(&m, "csrftoken", v, sizeof v) == 0);
  chan_header big[] = {{"cookie", "csrftoken=0123456789"}};
  m = wk_auth_t_connect(big, 1);
  UNIT_CHECK(wk_auth_msg_cookie_unique(&m, "csrftoken", v, 5) == -1);
}

UNIT_TEST(wk_auth_ids_past_2_53_are_refused) {
  char err[256], *objects = NULL;
  time_t now = 1800000000;
  wk_auth *a = wk_auth_new(wk_auth_t_key, NULL, NULL, 30, err, sizeof err);
  char *tok = wk_auth_t_mint(wk_auth_t_key, 5000000000000001LL, now + 60,
                             "{\"objects\": {\"job_events\": [5000000000000001]}}");
  UNIT_CHECK(wk_auth_t_check(a, tok, now, &objects) == 5000000000000001LL);
  /* The grant reaches the session as the same digits, not 5e+15. */
  UNIT_CHECK_STR(objects, "{\"job_events\":[5000000000000001]}");
  free(objects);
  free(tok);
  UNIT_CHECK(wk_auth_t_mint(wk_auth_t_key, TOKEN_USER_MAX + 1, now + 60,
                            NULL) == NULL);
  wk_auth_free(a);
}

/* Access that ends (issue 13): the identity says when (exp + leeway), for
 * the accept's "expires"; a refresh's token is checked by the same rules. */
UNIT_TEST(wk_auth_identity_expires_is_exp_plus_leeway_and_refresh_checks_alike) {
  char err[256], reason[128];
  time_t now = 1800000000;
  wk_auth *a = wk_auth_new(wk_auth_t_key, NULL, NULL, 30, err, sizeof err);
  UNIT_CHECK(a != NULL);
  char *tok = wk_auth_t_mint(wk_auth_t_key, 7, now + 60, NULL);
  char *expired = wk_auth_t_mint(wk_auth_t_key, 7, now - 31, NULL);
  char query[2048];
  snprintf(query, sizeof query, "token=%s", tok);
  chan_msg m = wk_auth_t_msg(query, NULL, 0);
  wk_auth_identity id;
  UNIT_CHECK(wk_auth_check(a, &m, now, &id, reason, sizeof reason) == 0);
  UNIT_CHECK(id.user_id == 7 && id.expires == now + 60 + 30);
  wk_auth_identity_free(&id);
  UNIT_CHECK(wk_auth_check_token(a, tok, now, &id, reason, sizeof reason) == 0);
  UNIT_CHECK(id.user_id == 7 && id.expires == now + 90 && id.source == WK_AUTH_NONE);
  wk_auth_identity_free(&id);
  UNIT_CHECK(wk_auth_check_token(a, expired, now, &id, reason, sizeof reason) == -1);
  UNIT_CHECK(reason[0] && !strstr(reason, expired));
  UNIT_CHECK(wk_auth_check_token(a, "", now, &id, reason, sizeof reason) == -1);
  wk_auth_free(a);
  free(tok);
  free(expired);
}
