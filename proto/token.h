/*
 * token.h - the auth token backends mint and workers check: a JWT signed
 * with HS256 and a shared secret (RFC 7519 / RFC 7515 compact form).
 *
 * Owns: minting and verifying that token. Must not: log the token or the
 * secret, or accept any algorithm but HS256.
 */
#ifndef TOKEN_H
#define TOKEN_H

#include <stddef.h>
#include <time.h>

typedef struct token_secret {
  const unsigned char *key;
  size_t len;
} token_secret;

/* The largest user or object id: 2^53 - 1, the largest integer every
 * party (the gateway's JSON, JavaScript clients) reads exactly. A "sub" or
 * an "objects" id beyond it is refused by token_verify. */
#define TOKEN_USER_MAX 9007199254740991ll
#define TOKEN_ID_MAX TOKEN_USER_MAX

/* Shortest secret the programs accept (workerd at start and on reload,
 * chanctl token): an HS256 key of at least the hash's 256 bits (RFC 7518,
 * 3.2). token_verify and token_mint themselves take any non-empty key. */
#define TOKEN_SECRET_MIN 32

typedef struct token_claims {
  long long user_id; /* from "sub": a positive integer or a string of digits,
                        1 .. TOKEN_USER_MAX */
  long long exp;     /* 0 when absent */
  long long nbf;     /* 0 when absent */
  char *objects_json; /* raw JSON of the "objects" claim (object-level
                         grants, see docs/PROTOCOL.md), NULL when absent;
                         its numbers printed exactly (token_objects_text) */
} token_claims;

/*
 * The compact text of an "objects" claim (a JSON object) into *out
 * (malloc'd), every number in it an integer id from 0 to TOKEN_ID_MAX,
 * printed as exact digits. 0; -1 when objects is not an object or holds
 * another number (a fraction, a negative, one past 2^53 - 1, which a
 * double cannot tell from its neighbour); -2 when out of memory.
 */
int token_objects_text(const void *objects /* const cJSON * */, char **out);

/*
 * Verifies token against any of the secrets (two during rotation), at time
 * now, allowing leeway seconds of clock skew on exp/nbf. Tokens without exp
 * are refused. Returns 0 and fills *out (free with token_claims_free), or -1
 * with a short reason in err that never contains the token.
 */
int token_verify(const char *token, size_t len, const token_secret *secrets,
                 size_t n_secrets, time_t now, int leeway, token_claims *out,
                 char *err, size_t errlen);

void token_claims_free(token_claims *c);

/*
 * Mints a token for user_id that expires at exp. extra_json, when not NULL,
 * is a JSON object whose members are added to the claims (e.g. "objects").
 * Returns a malloc'd NUL-terminated token, or NULL.
 */
char *token_mint(const token_secret *secret, long long user_id, long long exp,
                 const char *extra_json);

#endif
