/*
 * em_keys.h - the API keys of emitd: emit.key_file, lines "NAME KEY".
 *
 * A backend sends "Authorization: Bearer KEY" on every POST. NAME only says
 * whose key it is (logs): one key per backend, so a key can be rotated or
 * revoked alone (edit the file, SIGHUP). Keys are at least EM_KEY_MIN bytes
 * of visible ASCII; blank lines and lines starting with '#' are skipped.
 * The file must not be readable by other users (it holds secrets).
 *
 * Owns: parsing the file and checking a presented key in constant time:
 * only SHA-256 digests are kept, and a check compares the digest of the
 * presented key with every stored one, without an early exit, so neither
 * the time nor the memory tells which byte or which key differed. Must
 * not: know about HTTP.
 */
#ifndef EM_KEYS_H
#define EM_KEYS_H

#include <stddef.h>

#define EM_KEY_MIN 32
#define EM_KEY_MAX 512  /* bytes of one key */
#define EM_KEY_NAME_MAX 64
#define EM_KEYS_MAX 1000 /* keys in one file */

typedef struct em_key {
  char name[EM_KEY_NAME_MAX + 1];
  unsigned char digest[32];
} em_key;

typedef struct em_keys {
  em_key *v;
  size_t n;
} em_keys;

/* Parses text (the file's contents). 0, or -1 with "line N: why" in err;
 * out is untouched on error. */
int em_keys_parse(const char *text, size_t len, em_keys *out, char *err,
                  size_t errlen);

/* Reads and parses path: refuses a file other users may read, or over
 * 1 MiB. 0, or -1 with "PATH: why" in err; out untouched on error. */
int em_keys_load(const char *path, em_keys *out, char *err, size_t errlen);

/* The name of the key equal to key[0..len), or NULL. Constant time in the
 * key's bytes (one SHA-256 and a compare with every key). */
const char *em_keys_check(const em_keys *k, const char *key, size_t len);

void em_keys_free(em_keys *k);

#endif
