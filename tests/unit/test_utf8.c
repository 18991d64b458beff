/*
 * test_utf8.c - utf8_valid against RFC 3629's edges: each sequence length,
 * overlongs, surrogates, code points past U+10FFFF, cut-off sequences, and
 * the ASCII fast path's word boundaries.
 */
#include <string.h>

#include "unit.h"
#include "utf8.h"

static int v(const char *s) { return utf8_valid(s, strlen(s)); }

UNIT_TEST(utf8_valid_one_to_four_bytes) {
  UNIT_CHECK(utf8_valid("", 0));
  UNIT_CHECK(utf8_valid(NULL, 0));
  UNIT_CHECK(v("plain ascii {\"a\": 1}"));
  UNIT_CHECK(v("\xC2\x80"));             /* U+0080 */
  UNIT_CHECK(v("\xDF\xBF"));             /* U+07FF */
  UNIT_CHECK(v("\xE0\xA0\x80"));         /* U+0800 */
  UNIT_CHECK(v("\xED\x9F\xBF"));         /* U+D7FF, last before surrogates */
  UNIT_CHECK(v("\xEE\x80\x80"));         /* U+E000, first after */
  UNIT_CHECK(v("\xEF\xBF\xBF"));         /* U+FFFF */
  UNIT_CHECK(v("\xF0\x90\x80\x80"));     /* U+10000 */
  UNIT_CHECK(v("\xF4\x8F\xBF\xBF"));     /* U+10FFFF */
  UNIT_CHECK(v("gr\xC3\xBC\xC3\x9F dich \xE2\x82\xAC \xF0\x9F\x98\x80"));
  UNIT_CHECK(utf8_valid("a\0b", 3)); /* NUL is a character */
}

UNIT_TEST(utf8_rejects_overlongs) {
  UNIT_CHECK(!v("\xC0\x80"));         /* NUL in 2 bytes */
  UNIT_CHECK(!v("\xC1\xBF"));
  UNIT_CHECK(!v("\xE0\x80\x80"));
  UNIT_CHECK(!v("\xE0\x9F\xBF"));     /* U+07FF in 3 bytes */
  UNIT_CHECK(!v("\xF0\x80\x80\x80"));
  UNIT_CHECK(!v("\xF0\x8F\xBF\xBF")); /* U+FFFF in 4 bytes */
}

UNIT_TEST(utf8_rejects_surrogates) {
  UNIT_CHECK(!v("\xED\xA0\x80")); /* U+D800 */
  UNIT_CHECK(!v("\xED\xAF\xBF")); /* U+DBFF */
  UNIT_CHECK(!v("\xED\xB0\x80")); /* U+DC00 */
  UNIT_CHECK(!v("\xED\xBF\xBF")); /* U+DFFF */
  UNIT_CHECK(!v("\xED\xA0\xBD\xED\xB8\x80")); /* CESU-8 pair */
}

UNIT_TEST(utf8_rejects_past_10ffff) {
  UNIT_CHECK(!v("\xF4\x90\x80\x80")); /* U+110000 */
  UNIT_CHECK(!v("\xF5\x80\x80\x80"));
  UNIT_CHECK(!v("\xF7\xBF\xBF\xBF"));
  UNIT_CHECK(!v("\xF8\x88\x80\x80\x80")); /* old 5-byte form */
  UNIT_CHECK(!v("\xFC\x84\x80\x80\x80\x80"));
  UNIT_CHECK(!v("\xFE"));
  UNIT_CHECK(!v("\xFF"));
}

UNIT_TEST(utf8_rejects_truncated_and_stray) {
  UNIT_CHECK(!v("\xC3"));
  UNIT_CHECK(!v("\xE2\x82"));
  UNIT_CHECK(!v("\xF0\x9F\x98"));
  UNIT_CHECK(!v("abc\xF0\x9F"));
  UNIT_CHECK(!v("\xE2\x82" "A"));     /* cut short by an ASCII byte */
  UNIT_CHECK(!v("\xF0\x9F\x98" "A"));
  UNIT_CHECK(!v("\x80"));             /* lone continuation bytes */
  UNIT_CHECK(!v("a\xBF"));
  UNIT_CHECK(!v("\xC3\xBC\x80"));
  /* a valid sequence cut by len */
  UNIT_CHECK(!utf8_valid("\xE2\x82\xAC", 2));
}

UNIT_TEST(utf8_fast_path_boundaries) {
  char buf[64];
  /* a bad byte at every offset of a long ASCII run is still found */
  for (size_t at = 0; at < 40; at++) {
    memset(buf, 'a', sizeof buf);
    buf[at] = (char)0x80;
    UNIT_CHECK(!utf8_valid(buf, 40));
    UNIT_CHECK(utf8_valid(buf, at)); /* everything before it is fine */
  }
  /* and a valid 4-byte sequence straddling an 8-byte word */
  for (size_t at = 0; at < 16; at++) {
    memset(buf, 'a', sizeof buf);
    memcpy(buf + at, "\xF0\x9F\x98\x80", 4);
    UNIT_CHECK(utf8_valid(buf, 32));
    UNIT_CHECK(!utf8_valid(buf, at + 3));
  }
}
