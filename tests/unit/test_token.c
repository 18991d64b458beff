/*
 * test_token.c - HS256 tokens: minting, verifying, and every way a token is
 * refused (time, algorithm, signature, claims, garbage). Tokens with odd
 * headers or claims are built here by hand and signed with the real secret,
 * so that only the rule under test can refuse them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "b64.h"
#include "token.h"
#include "unit.h"

#define TK_NOW 1700000000LL
#define TK_KEY "unit-test-secret-0123456789abcdef"
#define TK_OLD_KEY "the-secret-before-rotation"
#define TK_HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static const token_secret tk_secret = {(const unsigned char *)TK_KEY,
                                       sizeof TK_KEY - 1};
static const token_secret tk_old_secret = {(const unsigned char *)TK_OLD_KEY,
                                           sizeof TK_OLD_KEY - 1};

/* base64url(header) "." base64url(payload) "." HMAC-SHA256 under key,
 * whatever the header claims. */
static char *tk_craft(const char *header, const char *payload,
                      const char *key) {
  char *h = b64_url_encode(header, strlen(header), NULL);
  char *p = b64_url_encode(payload, strlen(payload), NULL);
  size_t n = strlen(h) + 1 + strlen(p);
  char *signing = malloc(n + 1);
  snprintf(signing, n + 1, "%s.%s", h, p);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)signing, n,
       mac, &mac_len);
  char *s = b64_url_encode(mac, mac_len, NULL);
  size_t total = n + 1 + strlen(s) + 1;
  char *token = malloc(total);
  snprintf(token, total, "%s.%s", signing, s);
  free(h);
  free(p);
  free(signing);
  free(s);
  return token;
}

/* Claims with sub 7 and an exp one hour ahead, then extra members. */
static char *tk_craft_claims(const char *extra) {
  char payload[512];
  snprintf(payload, sizeof payload, "{\"sub\":\"7\",\"exp\":%lld%s%s}",
           TK_NOW + 3600, extra[0] ? "," : "", extra);
  return tk_craft(TK_HS256, payload, TK_KEY);
}

static int tk_verify(const char *token, long long now, int leeway,
                     token_claims *c, char *err, size_t errlen) {
  return token_verify(token, strlen(token), &tk_secret, 1, (time_t)now,
                      leeway, c, err, errlen);
}

/* 1 when err holds no 8-byte run of token: the reason never echoes it. */
static int tk_err_is_clean(const char *err, const char *token) {
  size_t n = strlen(token);
  for (size_t i = 0; i + 8 <= n; i++) {
    char window[9];
    memcpy(window, token + i, 8);
    window[8] = '\0';
    if (strstr(err, window)) return 0;
  }
  return 1;
}

/* 1 when token is refused at TK_NOW with a reason containing want. */
static int tk_refused_at(const char *token, long long now, int leeway,
                         const char *want) {
  token_claims c;
  char err[128] = "";
  int rc = tk_verify(token, now, leeway, &c, err, sizeof err);
  int ok = rc == -1 && strstr(err, want) && tk_err_is_clean(err, token) &&
           c.objects_json == NULL && c.user_id == 0;
  if (!ok) fprintf(stderr, "  refused? rc=%d err=\"%s\" want \"%s\"\n", rc,
                   err, want);
  token_claims_free(&c);
  return ok;
}

static int tk_refused(const char *token, const char *want) {
  return tk_refused_at(token, TK_NOW, 0, want);
}

/* 1 when token verifies at now with leeway. */
static int tk_accepted_at(const char *token, long long now, int leeway) {
  token_claims c;
  char err[128] = "";
  int rc = tk_verify(token, now, leeway, &c, err, sizeof err);
  if (rc != 0) fprintf(stderr, "  accepted? err=\"%s\"\n", err);
  token_claims_free(&c);
  return rc == 0;
}

UNIT_TEST(token_mint_and_verify) {
  char *token = token_mint(&tk_secret, 7, TK_NOW + 60, NULL);
  UNIT_CHECK(token != NULL);
  token_claims c;
  char err[128];
  UNIT_CHECK(token && tk_verify(token, TK_NOW, 0, &c, err, sizeof err) == 0);
  UNIT_CHECK(c.user_id == 7 && c.exp == TK_NOW + 60 && c.nbf == 0 &&
             c.objects_json == NULL);
  token_claims_free(&c);
  UNIT_CHECK(c.user_id == 0);
  free(token);
}

UNIT_TEST(token_minted_header_and_sub_are_standard) {
  char *token = token_mint(&tk_secret, 123, TK_NOW + 60, NULL);
  UNIT_CHECK(token != NULL);
  if (!token) return;
  char *dot1 = strchr(token, '.');
  char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
  UNIT_CHECK(dot2 && !strchr(dot2 + 1, '.'));
  if (!dot2) return;
  char *json;
  size_t n;
  UNIT_CHECK(b64_url_decode(token, (size_t)(dot1 - token), &json, &n) == 0);
  UNIT_CHECK_STR(json, TK_HS256);
  free(json);
  UNIT_CHECK(b64_url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &json,
                            &n) == 0);
  /* sub is a string (RFC 7519 StringOrURI). */
  UNIT_CHECK(json && strstr(json, "\"sub\":\"123\""));
  free(json);
  UNIT_CHECK(strlen(dot2 + 1) == 43); /* 32-byte MAC, unpadded */
  free(token);
}

UNIT_TEST(token_interop_vector) {
  /* Made with Python's hmac and base64 modules (no JWT library), as any
   * backend would: secret "interop-secret". */
  const char *token =
      "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
      "eyJzdWIiOiI3IiwiZXhwIjo0MTAyNDQ0ODAwLCJvYmplY3RzIjp7ImpvYl9ldmVudHMi"
      "Ols0Miw0M119fQ."
      "E2WUB4eM--uqC2TvMZJJEwIDPtUdtlWTpcKjIDUbWaE";
  token_secret s = {(const unsigned char *)"interop-secret", 14};
  token_claims c;
  char err[128];
  UNIT_CHECK(token_verify(token, strlen(token), &s, 1, (time_t)TK_NOW, 0, &c,
                          err, sizeof err) == 0);
  UNIT_CHECK(c.user_id == 7 && c.exp == 4102444800LL);
  UNIT_CHECK_STR(c.objects_json, "{\"job_events\":[42,43]}");
  token_claims_free(&c);
}

UNIT_TEST(token_objects_claim) {
  char *token = token_mint(&tk_secret, 9, TK_NOW + 60,
                           "{\"objects\": {\"job_events\": [42, 43], "
                           "\"jobs\": \"*\"}, \"sub\": \"1\"}");
  token_claims c;
  char err[128];
  UNIT_CHECK(token && tk_verify(token, TK_NOW, 0, &c, err, sizeof err) == 0);
  /* The sub in extra_json does not override the user id. */
  UNIT_CHECK(c.user_id == 9);
  UNIT_CHECK_STR(c.objects_json, "{\"job_events\":[42,43],\"jobs\":\"*\"}");
  token_claims_free(&c);
  free(token);
  char *bad = tk_craft_claims("\"objects\":[42]");
  UNIT_CHECK(tk_refused(bad, "objects"));
  free(bad);
  bad = tk_craft_claims("\"objects\":\"*\"");
  UNIT_CHECK(tk_refused(bad, "objects"));
  free(bad);
}

UNIT_TEST(token_expiry_and_leeway) {
  char *token = token_mint(&tk_secret, 7, TK_NOW, NULL);
  /* Valid strictly before exp (RFC 7519 4.1.4). */
  UNIT_CHECK(tk_accepted_at(token, TK_NOW - 1, 0));
  UNIT_CHECK(tk_refused_at(token, TK_NOW, 0, "expired"));
  UNIT_CHECK(tk_refused_at(token, TK_NOW + 1000, 0, "expired"));
  /* Clock skew allowance. */
  UNIT_CHECK(tk_accepted_at(token, TK_NOW + 5, 10));
  UNIT_CHECK(tk_refused_at(token, TK_NOW + 5, 5, "expired"));
  UNIT_CHECK(tk_refused_at(token, TK_NOW + 5, -100, "expired"));
  free(token);
  /* A fractional exp counts from its whole second, the stricter side. */
  char payload[128];
  snprintf(payload, sizeof payload, "{\"sub\":\"7\",\"exp\":%lld.5}", TK_NOW);
  token = tk_craft(TK_HS256, payload, TK_KEY);
  UNIT_CHECK(tk_refused_at(token, TK_NOW, 0, "expired"));
  UNIT_CHECK(tk_accepted_at(token, TK_NOW - 1, 0));
  free(token);
}

UNIT_TEST(token_not_before) {
  char extra[64];
  snprintf(extra, sizeof extra, "\"nbf\":%lld", TK_NOW + 100);
  char *token = tk_craft_claims(extra);
  UNIT_CHECK(tk_refused(token, "not yet valid"));
  UNIT_CHECK(tk_refused_at(token, TK_NOW, 99, "not yet valid"));
  UNIT_CHECK(tk_accepted_at(token, TK_NOW, 100));
  UNIT_CHECK(tk_accepted_at(token, TK_NOW + 100, 0));
  token_claims c;
  char err[128];
  UNIT_CHECK(tk_verify(token, TK_NOW + 200, 0, &c, err, sizeof err) == 0 &&
             c.nbf == TK_NOW + 100);
  token_claims_free(&c);
  free(token);
  /* A fractional nbf rounds up. */
  snprintf(extra, sizeof extra, "\"nbf\":%lld.25", TK_NOW);
  token = tk_craft_claims(extra);
  UNIT_CHECK(tk_refused(token, "not yet valid"));
  UNIT_CHECK(tk_accepted_at(token, TK_NOW + 1, 0));
  free(token);
  const char *bad[] = {"\"nbf\":\"soon\"", "\"nbf\":-1", "\"nbf\":null",
                       "\"nbf\":1e300"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    token = tk_craft_claims(bad[i]);
    UNIT_CHECK(tk_refused(token, "nbf is invalid"));
    free(token);
  }
}

UNIT_TEST(token_exp_required_and_typed) {
  char *token = tk_craft(TK_HS256, "{\"sub\":\"7\"}", TK_KEY);
  UNIT_CHECK(tk_refused(token, "no exp"));
  free(token);
  const char *bad[] = {"{\"sub\":\"7\",\"exp\":\"1800000000\"}",
                       "{\"sub\":\"7\",\"exp\":-5}",
                       "{\"sub\":\"7\",\"exp\":1e300}",
                       "{\"sub\":\"7\",\"exp\":null}",
                       "{\"sub\":\"7\",\"exp\":[1800000000]}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    token = tk_craft(TK_HS256, bad[i], TK_KEY);
    UNIT_CHECK(tk_refused(token, "exp is invalid"));
    free(token);
  }
}

UNIT_TEST(token_refuses_alg_none) {
  char payload[128];
  snprintf(payload, sizeof payload, "{\"sub\":\"7\",\"exp\":%lld}",
           TK_NOW + 60);
  /* Unsigned, as alg none means: the empty signature part. */
  char *h = b64_url_encode("{\"alg\":\"none\",\"typ\":\"JWT\"}", 26, NULL);
  char *p = b64_url_encode(payload, strlen(payload), NULL);
  char unsigned_token[512];
  snprintf(unsigned_token, sizeof unsigned_token, "%s.%s.", h, p);
  UNIT_CHECK(tk_refused(unsigned_token, "malformed"));
  free(h);
  free(p);
  /* Even with a correct MAC, the header's alg decides nothing. */
  const char *headers[] = {"{\"alg\":\"none\",\"typ\":\"JWT\"}",
                           "{\"alg\":\"None\"}", "{\"alg\":\"\"}",
                           "{\"typ\":\"JWT\"}", "{\"alg\":null}"};
  for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
    char *token = tk_craft(headers[i], payload, TK_KEY);
    UNIT_CHECK(tk_refused(token, "alg is not HS256"));
    free(token);
  }
}

UNIT_TEST(token_refuses_other_algs) {
  char payload[128];
  snprintf(payload, sizeof payload, "{\"sub\":\"7\",\"exp\":%lld}",
           TK_NOW + 60);
  /* RS256 "signed" with the shared secret: the key-confusion attack. */
  const char *headers[] = {"{\"alg\":\"RS256\",\"typ\":\"JWT\"}",
                           "{\"alg\":\"HS384\"}", "{\"alg\":\"HS512\"}",
                           "{\"alg\":\"hs256\"}", "{\"alg\":\"HS256 \"}",
                           "{\"alg\":256}", "{\"alg\":[\"HS256\"]}",
                           "{\"alg\":\"ES256\"}"};
  for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
    char *token = tk_craft(headers[i], payload, TK_KEY);
    UNIT_CHECK(tk_refused(token, "alg is not HS256"));
    free(token);
  }
}

UNIT_TEST(token_header_typ_and_crit) {
  char payload[128];
  snprintf(payload, sizeof payload, "{\"sub\":\"7\",\"exp\":%lld}",
           TK_NOW + 60);
  char *token = tk_craft("{\"alg\":\"HS256\"}", payload, TK_KEY);
  UNIT_CHECK(tk_accepted_at(token, TK_NOW, 0)); /* typ is optional */
  free(token);
  token = tk_craft("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"k1\"}",
                   payload, TK_KEY);
  UNIT_CHECK(tk_accepted_at(token, TK_NOW, 0));
  free(token);
  const char *typ[] = {"{\"alg\":\"HS256\",\"typ\":\"JWS\"}",
                       "{\"alg\":\"HS256\",\"typ\":\"jwt\"}",
                       "{\"alg\":\"HS256\",\"typ\":1}"};
  for (size_t i = 0; i < sizeof typ / sizeof typ[0]; i++) {
    token = tk_craft(typ[i], payload, TK_KEY);
    UNIT_CHECK(tk_refused(token, "typ is not JWT"));
    free(token);
  }
  token = tk_craft("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", payload, TK_KEY);
  UNIT_CHECK(tk_refused(token, "crit"));
  free(token);
  token = tk_craft("[\"HS256\"]", payload, TK_KEY);
  UNIT_CHECK(tk_refused(token, "malformed token header"));
  free(token);
  token = tk_craft("{\"alg\":\"HS256\"", payload, TK_KEY);
  UNIT_CHECK(tk_refused(token, "malformed token header"));
  free(token);
}

UNIT_TEST(token_bad_signature) {
  token_secret wrong = {(const unsigned char *)"wrong", 5};
  char *token = token_mint(&wrong, 7, TK_NOW + 60, NULL);
  UNIT_CHECK(token && tk_refused(token, "bad token signature"));
  free(token);
  token = token_mint(&tk_secret, 7, TK_NOW + 60, NULL);
  size_t n = strlen(token);
  /* Flip the first signature character (all 6 of its bits are used). */
  char *sig = strrchr(token, '.') + 1;
  sig[0] = sig[0] == 'A' ? 'B' : 'A';
  UNIT_CHECK(tk_refused(token, "bad token signature"));
  sig[0] = '\0'; /* no signature at all */
  UNIT_CHECK(tk_refused(token, "malformed"));
  free(token);
  token = token_mint(&tk_secret, 7, TK_NOW + 60, NULL);
  /* A 30-byte MAC, then a padded one. */
  token[n - 3] = '\0';
  UNIT_CHECK(tk_refused(token, "bad token signature"));
  free(token);
  token = token_mint(&tk_secret, 7, TK_NOW + 60, NULL);
  char *padded = malloc(n + 2);
  snprintf(padded, n + 2, "%s=", token);
  UNIT_CHECK(tk_refused(padded, "bad token signature"));
  free(padded);
  free(token);
}

UNIT_TEST(token_rotation_second_secret) {
  token_secret both[2] = {tk_secret, tk_old_secret};
  char *old_token = token_mint(&tk_old_secret, 5, TK_NOW + 60, NULL);
  char *new_token = token_mint(&tk_secret, 6, TK_NOW + 60, NULL);
  token_claims c;
  char err[128];
  UNIT_CHECK(token_verify(old_token, strlen(old_token), both, 2,
                          (time_t)TK_NOW, 0, &c, err, sizeof err) == 0 &&
             c.user_id == 5);
  token_claims_free(&c);
  UNIT_CHECK(token_verify(new_token, strlen(new_token), both, 2,
                          (time_t)TK_NOW, 0, &c, err, sizeof err) == 0 &&
             c.user_id == 6);
  token_claims_free(&c);
  /* Once the old secret is retired its tokens stop working. */
  UNIT_CHECK(tk_refused(old_token, "bad token signature"));
  /* An empty secret never verifies anything, nor mints. */
  token_secret empty_first[2] = {{(const unsigned char *)"", 0}, tk_secret};
  UNIT_CHECK(token_verify(new_token, strlen(new_token), empty_first, 2,
                          (time_t)TK_NOW, 0, &c, err, sizeof err) == 0);
  token_claims_free(&c);
  UNIT_CHECK(token_verify(new_token, strlen(new_token), empty_first, 1,
                          (time_t)TK_NOW, 0, &c, err, sizeof err) == -1);
  UNIT_CHECK(token_mint(&empty_first[0], 7, TK_NOW + 60, NULL) == NULL);
  UNIT_CHECK(token_verify(new_token, strlen(new_token), NULL, 0,
                          (time_t)TK_NOW, 0, &c, err, sizeof err) == -1);
  free(old_token);
  free(new_token);
}

UNIT_TEST(token_tampered_parts) {
  char *token = token_mint(&tk_secret, 7, TK_NOW + 60, NULL);
  char *dot1 = strchr(token, '.');
  char *dot2 = strchr(dot1 + 1, '.');
  /* Same header and signature, payload naming another user. */
  char payload[128];
  snprintf(payload, sizeof payload, "{\"sub\":\"1\",\"exp\":%lld}",
           TK_NOW + 60);
  char *p = b64_url_encode(payload, strlen(payload), NULL);
  char forged[512];
  snprintf(forged, sizeof forged, "%.*s.%s%s", (int)(dot1 - token), token, p,
           dot2);
  UNIT_CHECK(tk_refused(forged, "bad token signature"));
  free(p);
  /* Same payload and signature, header without typ. */
  char *h = b64_url_encode("{\"alg\":\"HS256\"}", 15, NULL);
  snprintf(forged, sizeof forged, "%s%s", h, dot1);
  UNIT_CHECK(tk_refused(forged, "bad token signature"));
  free(h);
  free(token);
}

UNIT_TEST(token_sub_rules) {
  const char *bad[] = {"\"sub\":\"abc\"", "\"sub\":\"7a\"", "\"sub\":\"\"",
                       "\"sub\":\"0\"", "\"sub\":\"007\"", "\"sub\":\"-7\"",
                       "\"sub\":\" 7\"", "\"sub\":\"1234567890123456789\"",
                       /* past 2^53 - 1: refused, not rounded (issue 12) */
                       "\"sub\":\"123456789012345678\"",
                       "\"sub\":\"9007199254740992\"",
                       "\"sub\":9007199254740993",
                       "\"sub\":-7", "\"sub\":0", "\"sub\":1.5",
                       "\"sub\":true", "\"sub\":null", "\"sub\":[7]",
                       "\"sub\":1e300", "\"sub\":9007199254740992"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char payload[128];
    snprintf(payload, sizeof payload, "{%s,\"exp\":%lld}", bad[i],
             TK_NOW + 60);
    char *token = tk_craft(TK_HS256, payload, TK_KEY);
    UNIT_CHECK(tk_refused(token, "sub is not a user id"));
    free(token);
  }
  char payload[128];
  snprintf(payload, sizeof payload, "{\"exp\":%lld}", TK_NOW + 60);
  char *token = tk_craft(TK_HS256, payload, TK_KEY);
  UNIT_CHECK(tk_refused(token, "sub is not a user id"));
  free(token);
  struct {
    const char *sub;
    long long want;
  } good[] = {{"42", 42},
              {"\"42\"", 42},
              {"\"9007199254740991\"", 9007199254740991LL},
              {"\"5000000000000001\"", 5000000000000001LL},
              {"5000000000000001", 5000000000000001LL},
              {"9007199254740991", 9007199254740991LL}};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    snprintf(payload, sizeof payload, "{\"sub\":%s,\"exp\":%lld}", good[i].sub,
             TK_NOW + 60);
    token = tk_craft(TK_HS256, payload, TK_KEY);
    token_claims c;
    char err[128];
    UNIT_CHECK(tk_verify(token, TK_NOW, 0, &c, err, sizeof err) == 0 &&
               c.user_id == good[i].want);
    token_claims_free(&c);
    free(token);
  }
}

UNIT_TEST(token_refuses_garbage) {
  const char *bad[] = {"abc", "a.b", "a.b.c.d", "..", "a..c", ".b.c", "a.b.",
                       "eyJ*.eyJ.abc", "not a token at all",
                       "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI3In0.c2ln.x"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    UNIT_CHECK(tk_refused(bad[i], "malformed"));
  }
  UNIT_CHECK(tk_refused("", "empty token"));
  token_claims c;
  char err[64];
  UNIT_CHECK(token_verify(NULL, 5, &tk_secret, 1, (time_t)TK_NOW, 0, &c, err,
                          sizeof err) == -1);
  UNIT_CHECK(token_verify("a.b.c", 5, &tk_secret, 1, (time_t)TK_NOW, 0, &c,
                          NULL, 0) == -1);
  /* Whitespace and NUL are not part of any token. */
  char *token = token_mint(&tk_secret, 7, TK_NOW + 60, NULL);
  char spaced[512];
  snprintf(spaced, sizeof spaced, " %s", token);
  UNIT_CHECK(tk_refused(spaced, "malformed"));
  snprintf(spaced, sizeof spaced, "%s\n", token);
  UNIT_CHECK(tk_refused(spaced, "bad token signature"));
  size_t n = strlen(token);
  UNIT_CHECK(token_verify(token, n + 1, &tk_secret, 1, (time_t)TK_NOW, 0, &c,
                          err, sizeof err) == -1);
  /* The counted length wins over the NUL: a prefix is not a token. */
  UNIT_CHECK(token_verify(token, n - 1, &tk_secret, 1, (time_t)TK_NOW, 0, &c,
                          err, sizeof err) == -1);
  free(token);
  /* Claims that are not an object, under a good signature. */
  token = tk_craft(TK_HS256, "[1,2]", TK_KEY);
  UNIT_CHECK(tk_refused(token, "malformed token claims"));
  free(token);
  token = tk_craft(TK_HS256, "{\"sub\":\"7\",", TK_KEY);
  UNIT_CHECK(tk_refused(token, "malformed token claims"));
  free(token);
}

UNIT_TEST(token_length_cap) {
  char *big = malloc(8194);
  memset(big, 'a', 8193);
  big[8193] = '\0';
  UNIT_CHECK(tk_refused(big, "too long"));
  free(big);
  /* Minting refuses what verifying would. */
  char *extra = malloc(8300);
  int off = snprintf(extra, 8300, "{\"pad\":\"");
  memset(extra + off, 'x', 7000);
  snprintf(extra + off + 7000, 100, "\"}");
  UNIT_CHECK(token_mint(&tk_secret, 7, TK_NOW + 60, extra) == NULL);
  extra[off + 5000] = '\0';
  strcat(extra, "\"}");
  char *token = token_mint(&tk_secret, 7, TK_NOW + 60, extra);
  UNIT_CHECK(token && strlen(token) <= 8192);
  UNIT_CHECK(token && tk_accepted_at(token, TK_NOW, 0));
  free(token);
  free(extra);
}

UNIT_TEST(token_mint_refuses) {
  UNIT_CHECK(token_mint(NULL, 7, TK_NOW, NULL) == NULL);
  UNIT_CHECK(token_mint(&tk_secret, 0, TK_NOW, NULL) == NULL);
  UNIT_CHECK(token_mint(&tk_secret, -7, TK_NOW, NULL) == NULL);
  UNIT_CHECK(token_mint(&tk_secret, 1000000000000000000LL, TK_NOW, NULL) ==
             NULL);
  UNIT_CHECK(token_mint(&tk_secret, TOKEN_USER_MAX + 1, TK_NOW, NULL) == NULL);
  UNIT_CHECK(token_mint(&tk_secret, 7, -1, NULL) == NULL);
  UNIT_CHECK(token_mint(&tk_secret, 7, TK_NOW, "[1]") == NULL);
  UNIT_CHECK(token_mint(&tk_secret, 7, TK_NOW, "{bad") == NULL);
  char *token = token_mint(&tk_secret, TOKEN_USER_MAX, TK_NOW + 1,
                           "{\"exp\": 1}");
  token_claims c;
  char err[128];
  /* The exp argument wins over one in extra_json. */
  UNIT_CHECK(token && tk_verify(token, TK_NOW, 0, &c, err, sizeof err) == 0 &&
             c.user_id == TOKEN_USER_MAX && c.exp == TK_NOW + 1);
  token_claims_free(&c);
  free(token);
}

UNIT_TEST(token_claims_free_is_safe) {
  token_claims c;
  memset(&c, 0, sizeof c);
  token_claims_free(&c);
  token_claims_free(&c);
  token_claims_free(NULL);
  UNIT_CHECK(c.objects_json == NULL);
}

/* Issue 12: an object id a double cannot hold exactly is refused, and the
 * ids that pass are printed as the digits they are. */
UNIT_TEST(token_objects_ids_exact_or_refused) {
  const char *bad[] = {"{\"job_events\":[9007199254740992]}",
                       "{\"job_events\":[9007199254740993]}",
                       "{\"job_events\":[1.5]}", "{\"job_events\":[-1]}",
                       "{\"job_events\":[1e300]}", "{\"a\":{\"b\":[2e16]}}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char extra[128];
    snprintf(extra, sizeof extra, "\"objects\":%s", bad[i]);
    char *token = tk_craft_claims(extra);
    UNIT_CHECK(tk_refused(token, "objects claim has an id"));
    free(token);
  }
  char *token = tk_craft_claims(
      "\"objects\":{\"job_events\":[5000000000000001,9007199254740991,42],"
      "\"jobs\":\"*\",\"x\":[\"5000000000000001\"]}");
  token_claims c;
  char err[128];
  UNIT_CHECK(tk_verify(token, TK_NOW, 0, &c, err, sizeof err) == 0);
  UNIT_CHECK_STR(c.objects_json,
                 "{\"job_events\":[5000000000000001,9007199254740991,42],"
                 "\"jobs\":\"*\",\"x\":[\"5000000000000001\"]}");
  token_claims_free(&c);
  free(token);
  /* Minting prints them exactly too. */
  token = token_mint(&tk_secret, 5000000000000001LL, TK_NOW + 60,
                     "{\"objects\":{\"job_events\":[5000000000000001]}}");
  UNIT_CHECK(token && tk_verify(token, TK_NOW, 0, &c, err, sizeof err) == 0);
  UNIT_CHECK(c.user_id == 5000000000000001LL);
  UNIT_CHECK_STR(c.objects_json, "{\"job_events\":[5000000000000001]}");
  token_claims_free(&c);
  free(token);
}
