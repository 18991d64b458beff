/*
 * token.c - HS256 JWTs (RFC 7519 in the compact JWS form of RFC 7515):
 * verified by the worker, minted by backends and tests.
 *
 * Owns: the one accepted header (alg "HS256", typ "JWT" or absent), the
 * signature check (constant time, against each rotation secret) and the
 * claims the project uses (sub, exp, nbf, objects), ids up to
 * TOKEN_USER_MAX and printed as exact digits. Must not: put the token
 * or a secret into an error, read the claims before the signature holds, or
 * let the header pick the algorithm.
 */
#include "token.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "b64.h"
#include "chan_json.h"

#define TOKEN_LEN_MAX 8192
#define TOKEN_MAC_LEN 32 /* HMAC-SHA256 */
#define TOKEN_SUB_DIGITS_MAX 16 /* TOKEN_USER_MAX has 16 digits */
/* base64url of {"alg":"HS256","typ":"JWT"}: the only header we mint. */
#define TOKEN_HEADER_B64 "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"

typedef struct token_part {
  const char *p;
  size_t len;
} token_part;

void token_claims_free(token_claims *c) {
  if (!c) return;
  free(c->objects_json);
  memset(c, 0, sizeof *c);
}

static int token__fail(char *err, size_t errlen, const char *reason) {
  if (err && errlen > 0) snprintf(err, errlen, "%s", reason);
  return -1;
}

/* header.payload.signature: exactly two dots, each part non-empty. */
static int token__split(const char *token, size_t len, token_part part[3]) {
  const char *end = token + len;
  const char *dot1 = memchr(token, '.', len);
  if (!dot1) return -1;
  const char *dot2 = memchr(dot1 + 1, '.', (size_t)(end - dot1 - 1));
  if (!dot2) return -1;
  part[0] = (token_part){token, (size_t)(dot1 - token)};
  part[1] = (token_part){dot1 + 1, (size_t)(dot2 - dot1 - 1)};
  part[2] = (token_part){dot2 + 1, (size_t)(end - dot2 - 1)};
  for (int i = 0; i < 3; i++) {
    if (part[i].len == 0) return -1;
  }
  return memchr(part[2].p, '.', part[2].len) ? -1 : 0;
}

/* A base64url part holding a JSON object; NULL when it is anything else. */
static cJSON *token__part_json(const token_part *part) {
  char *raw;
  size_t n;
  if (b64_url_decode(part->p, part->len, &raw, &n) != 0) return NULL;
  cJSON *obj = chan_json_parse(raw, n);
  free(raw);
  if (!cJSON_IsObject(obj)) {
    cJSON_Delete(obj);
    return NULL;
  }
  return obj;
}

/* NULL when the header is one we accept, else the reason. */
static const char *token__header_check(const token_part *part) {
  cJSON *hdr = token__part_json(part);
  if (!hdr) return "malformed token header";
  const cJSON *alg = cJSON_GetObjectItemCaseSensitive(hdr, "alg");
  const cJSON *typ = cJSON_GetObjectItemCaseSensitive(hdr, "typ");
  const char *reason = NULL;
  if (!cJSON_IsString(alg) || strcmp(alg->valuestring, "HS256") != 0) {
    reason = "token alg is not HS256";
  } else if (typ &&
             (!cJSON_IsString(typ) || strcmp(typ->valuestring, "JWT") != 0)) {
    reason = "token typ is not JWT";
  } else if (cJSON_GetObjectItemCaseSensitive(hdr, "crit")) {
    /* RFC 7515 4.1.11: a critical extension we do not implement. */
    reason = "token header has crit";
  }
  cJSON_Delete(hdr);
  return reason;
}

static int token__hmac(const token_secret *s, const char *data, size_t n,
                      unsigned char mac[EVP_MAX_MD_SIZE]) {
  /* An empty secret would let anyone mint. */
  if (!s->key || s->len == 0 || s->len > INT_MAX) return -1;
  unsigned int mac_len = 0;
  if (!HMAC(EVP_sha256(), s->key, (int)s->len, (const unsigned char *)data, n,
            mac, &mac_len)) {
    return -1;
  }
  return mac_len == TOKEN_MAC_LEN ? 0 : -1;
}

/* 1 when sig is the MAC of signed_part under any of the secrets. */
static int token__signature_ok(const char *signed_part, size_t n,
                              const token_part *sig,
                              const token_secret *secrets, size_t n_secrets) {
  char *mac;
  size_t mac_len;
  if (b64_url_decode(sig->p, sig->len, &mac, &mac_len) != 0) return 0;
  int ok = 0;
  for (size_t i = 0; mac_len == TOKEN_MAC_LEN && i < n_secrets; i++) {
    unsigned char expect[EVP_MAX_MD_SIZE];
    if (token__hmac(&secrets[i], signed_part, n, expect) == 0 &&
        CRYPTO_memcmp(expect, mac, TOKEN_MAC_LEN) == 0) {
      ok = 1;
    }
  }
  free(mac);
  return ok;
}

/*
 * A NumericDate claim: -1 invalid, 0 absent, 1 present. Fractions are
 * allowed (RFC 7519 2) and rounded toward the stricter side: exp down,
 * nbf up.
 */
static int token__read_time(const cJSON *claims, const char *key, int round_up,
                           long long *out) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(claims, key);
  if (!item) return 0;
  if (!cJSON_IsNumber(item)) return -1;
  double d = item->valuedouble;
  if (!(d >= 0 && d <= (double)CHAN_JSON_UINT_MAX)) return -1;
  *out = (long long)(round_up ? ceil(d) : floor(d));
  return 1;
}

/* "sub": a positive integer, or a string of 1..16 digits without a leading
 * zero (one spelling per user); at most TOKEN_USER_MAX either way. A number
 * sub is read as a double: 5000000000000001 arrives exact, and anything
 * past 2^53 - 1 is refused, since it may be a neighbour rounded. */
static int token__read_sub(const cJSON *claims, long long *out) {
  const cJSON *sub = cJSON_GetObjectItemCaseSensitive(claims, "sub");
  uint64_t v = 0;
  if (cJSON_IsNumber(sub)) {
    if (chan_json_uint(sub, TOKEN_USER_MAX, &v) != 0 || v == 0) return -1;
    *out = (long long)v;
    return 0;
  }
  if (!cJSON_IsString(sub)) return -1;
  const char *s = sub->valuestring;
  size_t n = strlen(s);
  if (n == 0 || n > TOKEN_SUB_DIGITS_MAX || s[0] == '0') return -1;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  if (v > (uint64_t)TOKEN_USER_MAX) return -1;
  *out = (long long)v;
  return 0;
}

/* 1 when every number under item (and its siblings) is an id. */
static int token__ids_fit(const cJSON *item) {
  for (; item; item = item->next) {
    uint64_t v;
    if (cJSON_IsNumber(item) && chan_json_uint(item, TOKEN_ID_MAX, &v) != 0)
      return 0;
    if (item->child && !token__ids_fit(item->child)) return 0;
  }
  return 1;
}

int token_objects_text(const void *objects_v, char **out) {
  const cJSON *objects = objects_v;
  *out = NULL;
  if (!cJSON_IsObject(objects) || !token__ids_fit(objects->child)) return -1;
  *out = chan_json_print_exact(objects);
  return *out ? 0 : -2;
}

static int token__read_objects(const cJSON *claims, token_claims *out,
                              char *err, size_t errlen) {
  const cJSON *objects = cJSON_GetObjectItemCaseSensitive(claims, "objects");
  if (!objects) return 0;
  if (!cJSON_IsObject(objects)) {
    return token__fail(err, errlen, "token objects claim is not an object");
  }
  int rc = token_objects_text(objects, &out->objects_json);
  if (rc == -1)
    return token__fail(err, errlen, "token objects claim has an id that is "
                                    "not an integer up to 2^53-1");
  return rc == 0 ? 0 : token__fail(err, errlen, "out of memory");
}

static int token__read_claims(const cJSON *claims, time_t now, int leeway,
                             token_claims *out, char *err, size_t errlen) {
  int has_exp = token__read_time(claims, "exp", 0, &out->exp);
  int has_nbf = token__read_time(claims, "nbf", 1, &out->nbf);
  if (has_exp < 0) return token__fail(err, errlen, "token exp is invalid");
  if (has_exp == 0) return token__fail(err, errlen, "token has no exp");
  if (has_nbf < 0) return token__fail(err, errlen, "token nbf is invalid");
  if (token__read_sub(claims, &out->user_id) != 0) {
    return token__fail(err, errlen, "token sub is not a user id");
  }
  /* Both sides stay far from overflow: exp and nbf are at most 2^53 and
   * leeway at most INT_MAX, while now is taken as is. */
  long long t = (long long)now;
  if (leeway < 0) leeway = 0;
  if (out->exp + leeway <= t) return token__fail(err, errlen, "token expired");
  if (has_nbf && out->nbf - leeway > t) {
    return token__fail(err, errlen, "token not yet valid");
  }
  return token__read_objects(claims, out, err, errlen);
}

int token_verify(const char *token, size_t len, const token_secret *secrets,
                 size_t n_secrets, time_t now, int leeway, token_claims *out,
                 char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (!token || len == 0) return token__fail(err, errlen, "empty token");
  if (len > TOKEN_LEN_MAX) return token__fail(err, errlen, "token too long");
  if (!secrets || n_secrets == 0) {
    return token__fail(err, errlen, "no token secret configured");
  }
  token_part part[3];
  if (token__split(token, len, part) != 0) {
    return token__fail(err, errlen, "malformed token");
  }
  const char *reason = token__header_check(&part[0]);
  if (reason) return token__fail(err, errlen, reason);
  /* What was signed: header and payload as sent, with their dot. */
  size_t signed_len = (size_t)(part[1].p + part[1].len - token);
  if (!token__signature_ok(token, signed_len, &part[2], secrets, n_secrets)) {
    return token__fail(err, errlen, "bad token signature");
  }
  cJSON *claims = token__part_json(&part[1]);
  if (!claims) return token__fail(err, errlen, "malformed token claims");
  int rc = token__read_claims(claims, now, leeway, out, err, errlen);
  cJSON_Delete(claims);
  if (rc != 0) token_claims_free(out);
  return rc;
}

/* ---- minting ---- */

static int token__replace(cJSON *claims, const char *key, cJSON *item) {
  /* Every copy goes: verify reads the first of duplicate keys. */
  while (cJSON_GetObjectItemCaseSensitive(claims, key)) {
    cJSON_DeleteItemFromObjectCaseSensitive(claims, key);
  }
  return chan_json_add(claims, key, item);
}

static cJSON *token__mint_claims(long long user_id, long long exp,
                                const char *extra_json) {
  cJSON *claims = extra_json ? chan_json_parse(extra_json, strlen(extra_json))
                             : cJSON_CreateObject();
  if (!cJSON_IsObject(claims)) {
    cJSON_Delete(claims);
    return NULL;
  }
  /* sub as a string: RFC 7519 makes it a StringOrURI, and PyJWT insists. */
  char sub[24];
  snprintf(sub, sizeof sub, "%lld", user_id);
  char exp_digits[24];
  snprintf(exp_digits, sizeof exp_digits, "%lld", exp);
  if (token__replace(claims, "sub", cJSON_CreateString(sub)) != 0 ||
      token__replace(claims, "exp", cJSON_CreateRaw(exp_digits)) != 0) {
    cJSON_Delete(claims);
    return NULL;
  }
  return claims;
}

/* "a.b", malloc'd. */
static char *token__join(const char *a, const char *b) {
  size_t n = strlen(a) + 1 + strlen(b) + 1;
  char *s = malloc(n);
  if (s) snprintf(s, n, "%s.%s", a, b);
  return s;
}

/* TOKEN_HEADER_B64 "." base64url(payload) "." base64url(mac). */
static char *token__sign(const token_secret *secret, const char *payload) {
  char *p64 = b64_url_encode(payload, strlen(payload), NULL);
  char *signed_part = p64 ? token__join(TOKEN_HEADER_B64, p64) : NULL;
  free(p64);
  if (!signed_part) return NULL;
  unsigned char mac[EVP_MAX_MD_SIZE];
  char *s64 = NULL;
  if (token__hmac(secret, signed_part, strlen(signed_part), mac) == 0) {
    s64 = b64_url_encode(mac, TOKEN_MAC_LEN, NULL);
  }
  char *token = s64 ? token__join(signed_part, s64) : NULL;
  free(signed_part);
  free(s64);
  if (token && strlen(token) > TOKEN_LEN_MAX) {
    free(token); /* token_verify would refuse it */
    token = NULL;
  }
  return token;
}

char *token_mint(const token_secret *secret, long long user_id, long long exp,
                 const char *extra_json) {
  if (!secret || user_id <= 0 || user_id > TOKEN_USER_MAX || exp < 0 ||
      (uint64_t)exp > CHAN_JSON_UINT_MAX) {
    return NULL;
  }
  cJSON *claims = token__mint_claims(user_id, exp, extra_json);
  if (!claims) return NULL;
  /* Exact digits: cJSON's own printing turns 5000000000000001 into 5e+15. */
  char *payload = chan_json_exact_numbers(claims->child) == 0
                      ? cJSON_PrintUnformatted(claims)
                      : NULL;
  cJSON_Delete(claims);
  if (!payload) return NULL;
  char *token = token__sign(secret, payload);
  free(payload);
  return token;
}
