/*
 * fuzz_token.c - libFuzzer target: token_verify with a fixed secret pair
 * (current and previous, as during a rotation) at a fixed time.
 *
 * A random token almost never carries a valid signature, so the claims
 * would stay unexplored; the input's first byte picks a mode:
 *   0: the rest is a token, verified as it is;
 *   1: the rest is "HEADER\xffCLAIMS" (JSON texts), encoded and signed here
 *      with the current secret, then verified: the header and claim rules
 *      run on every input;
 *   2: the rest is the extra claims of token_mint, whose token must verify.
 * Invariants: a verified token had an HS256 header, a positive user, an exp
 * within the leeway and an "objects" that is a JSON object whose numbers
 * are ids (0 to 2^53-1); an error never quotes the token.
 */
#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "b64.h"
#include "fuzz.h"
#include "token.h"

#define NOW 1700000000
#define LEEWAY 30

static const char key_now[] = "fuzz-secret-current-0123456789ab";
static const char key_old[] = "fuzz-secret-previous-0123456789ab";
static const token_secret secrets[2] = {
    {(const unsigned char *)key_now, sizeof(key_now) - 1},
    {(const unsigned char *)key_old, sizeof(key_old) - 1},
};

/* Verifies; checks the invariants. Returns token_verify's result. */
/* 1 when every number under item (and its siblings) is an id. */
static int ids_only(const cJSON *item) {
  for (; item; item = item->next) {
    if (cJSON_IsNumber(item) &&
        !(item->valuedouble >= 0 && item->valuedouble <= (double)TOKEN_ID_MAX &&
          item->valuedouble == (double)(long long)item->valuedouble))
      return 0;
    if (item->child && !ids_only(item->child)) return 0;
  }
  return 1;
}

static int verify(const char *tok, size_t len, token_claims *c, char *err,
                  size_t errlen) {
  err[0] = '\0';
  int rc = token_verify(tok, len, secrets, 2, NOW, LEEWAY, c, err, errlen);
  if (rc == 0) {
    FUZZ_CHECK(c->user_id > 0 && c->user_id <= TOKEN_USER_MAX);
    FUZZ_CHECK(c->exp + LEEWAY > NOW);
    FUZZ_CHECK(c->nbf - LEEWAY <= NOW);
    if (c->objects_json) {
      cJSON *o = cJSON_Parse(c->objects_json);
      FUZZ_CHECK(cJSON_IsObject(o) && ids_only(o->child));
      cJSON_Delete(o);
    }
    /* The header said HS256: decode it independently of token.c. */
    const char *dot = memchr(tok, '.', len);
    FUZZ_CHECK(dot != NULL);
    char *hdr;
    size_t hlen;
    FUZZ_CHECK(b64_url_decode(tok, (size_t)(dot - tok), &hdr, &hlen) == 0);
    cJSON *h = cJSON_ParseWithLength(hdr, hlen);
    const cJSON *alg = cJSON_GetObjectItemCaseSensitive(h, "alg");
    FUZZ_CHECK(cJSON_IsString(alg) && strcmp(alg->valuestring, "HS256") == 0);
    cJSON_Delete(h);
    free(hdr);
    token_claims_free(c);
  } else {
    FUZZ_CHECK(rc == -1);
    FUZZ_CHECK(c->objects_json == NULL && c->user_id == 0);
    FUZZ_CHECK(err[0] != '\0' && strlen(err) < errlen);
    /* Reasons are fixed phrases: none holds a token's three parts. */
    FUZZ_CHECK(strchr(err, '.') == NULL);
  }
  return rc;
}

/* base64url(header) "." base64url(claims) "." base64url(HMAC). */
static char *sign(const char *header, size_t hlen, const char *claims,
                  size_t clen) {
  char *h64 = b64_url_encode(header, hlen, NULL);
  char *c64 = b64_url_encode(claims, clen, NULL);
  FUZZ_CHECK(h64 && c64);
  size_t n = strlen(h64) + 1 + strlen(c64);
  char *tok = malloc(n + 1 + 64);
  FUZZ_CHECK(tok != NULL);
  snprintf(tok, n + 1, "%s.%s", h64, c64);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  FUZZ_CHECK(HMAC(EVP_sha256(), key_now, (int)sizeof(key_now) - 1,
                  (const unsigned char *)tok, n, mac, &mac_len) != NULL);
  char *s64 = b64_url_encode(mac, mac_len, NULL);
  FUZZ_CHECK(s64 != NULL);
  snprintf(tok + n, 1 + 64, ".%s", s64);
  free(h64);
  free(c64);
  free(s64);
  return tok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const char *in = (const char *)data + 1;
  size_t len = size - 1;
  token_claims c;
  char err[128];

  switch (data[0] % 3) {
    case 0:
      verify(in, len, &c, err, sizeof(err));
      break;
    case 1: {
      const char *sep = memchr(in, 0xff, len);
      if (!sep) return 0;
      char *tok = sign(in, (size_t)(sep - in), sep + 1,
                       len - (size_t)(sep - in) - 1);
      verify(tok, strlen(tok), &c, err, sizeof(err));
      free(tok);
      break;
    }
    default: {
      char *extra = malloc(len + 1);
      FUZZ_CHECK(extra != NULL);
      memcpy(extra, in, len);
      extra[len] = '\0';
      char *tok = token_mint(&secrets[1], 7, NOW + 3600, extra);
      if (tok) {
        /* Minted under the previous secret: rotation must accept it. Only
         * claims the minter copies from extra may fail it. */
        if (verify(tok, strlen(tok), &c, err, sizeof(err)) != 0) {
          FUZZ_CHECK(strcmp(err, "token not yet valid") == 0 ||
                     strcmp(err, "token nbf is invalid") == 0 ||
                     strcmp(err, "token objects claim is not an object") == 0 ||
                     strncmp(err, "token objects claim has an id", 29) == 0);
        }
        free(tok);
      }
      free(extra);
      break;
    }
  }
  return 0;
}
