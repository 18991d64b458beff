/*
 * em_json.h - a strict JSON scanner over bytes: where a value starts and
 * ends, without building it.
 *
 * emitd publishes an event's own bytes (docs/PROTOCOL.md, "Emitting over
 * HTTP": the text clients receive is the text the backend sent), so the
 * batch body must be read as spans of the request, which cJSON cannot give.
 * The grammar is RFC 8259's, exactly: no comments, no trailing commas, no
 * leading zeros, no control characters in strings, \u escapes of four hex
 * digits. UTF-8 is not checked here: the caller checks the whole body
 * (utf8_valid) first.
 *
 * Owns: that grammar and its nesting bound. Must not: allocate, or know
 * what a batch is (em_request).
 */
#ifndef EM_JSON_H
#define EM_JSON_H

#include <stddef.h>

/* Arrays and objects nested deeper than this are refused: the scanner
 * recurses once per level (about 64 bytes of stack each). */
#define EM_JSON_DEPTH_MAX 512

/* A scan position within one document; err gets "WHAT at byte N". */
typedef struct em_json {
  const char *base, *p, *end;
  char *err;
  size_t errlen;
} em_json;

void em_json_init(em_json *j, const char *s, size_t len, char *err,
                  size_t errlen);

/* Skips blanks (space, tab, CR, LF). */
void em_json_ws(em_json *j);

/* The value at the current position (after blanks): 0 with start and len its
 * bytes and the position after it; -1 with the reason in err. */
int em_json_value(em_json *j, const char **start, size_t *len);

/* A string at the current position: 0 with its raw contents (between the
 * quotes, escapes left as written) in s and len; -1 otherwise. */
int em_json_string(em_json *j, const char **s, size_t *len);

/* Expects the byte c (after blanks): 1 and consumed when there, else 0. */
int em_json_take(em_json *j, char c);

/* 0 when only blanks are left, else -1 with "unexpected data at byte N". */
int em_json_end(em_json *j);

/* Formats "WHAT at byte N" (N of the current position) into err; -1. */
int em_json_fail(em_json *j, const char *what);

/* Exactly one JSON value, blanks around it allowed. 0, or -1 with the
 * reason. */
int em_json_document(const char *s, size_t len, char *err, size_t errlen);

#endif
