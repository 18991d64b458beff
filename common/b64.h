/*
 * b64.h - base64 (RFC 4648 section 4, padded) for binary payloads on the
 * channel, and base64url (section 5, unpadded) for JWTs.
 *
 * Decoding is strict: only the alphabet, padding only where the standard
 * form requires it, no whitespace, and unused trailing bits must be zero, so
 * every byte string has exactly one accepted encoding.
 */
#ifndef B64_H
#define B64_H

#include <stddef.h>

/* Encodes len bytes. Returns a malloc'd NUL-terminated text (length in
 * *outlen when outlen is not NULL), or NULL when out of memory or too big. */
char *b64_encode(const void *data, size_t len, size_t *outlen);
char *b64_url_encode(const void *data, size_t len, size_t *outlen);

/* Decodes len characters of text into a malloc'd buffer (*out, length in
 * *outlen; a NUL follows the data, not counted). Returns 0, or -1 when the
 * text is not valid or memory ran out (then *out is NULL). */
int b64_decode(const char *text, size_t len, char **out, size_t *outlen);
int b64_url_decode(const char *text, size_t len, char **out, size_t *outlen);

#endif
