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
}

static const char wk_auth_t_key[] = "current-secret";
static const char wk_auth_t_old[] = "previous-secret";

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
