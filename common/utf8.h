/*
 * utf8.h - strict UTF-8 validation (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF), for text that the gateway or an emitter is about
 * to send as a websocket text frame.
 */
#ifndef UTF8_H
#define UTF8_H

#include <stddef.h>

int utf8_valid(const char *s, size_t len);

#endif
