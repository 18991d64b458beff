/*
 * test_b64.c - base64 and base64url: RFC 4648 vectors, round trips of every
 * byte value, and each way a text can be refused.
 */
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "unit.h"

/* 1 when text decodes (strictly) to exactly want[0..wlen). */
static int b64_test_decodes_to(int url, const char *text, const char *want,
                               size_t wlen) {
  char *out = NULL;
  size_t n = 0;
  int rc = url ? b64_url_decode(text, strlen(text), &out, &n)
               : b64_decode(text, strlen(text), &out, &n);
  int ok = rc == 0 && n == wlen && memcmp(out, want, wlen) == 0 &&
           out[n] == '\0';
  free(out);
  return ok;
}

static int b64_test_refused(int url, const char *text, size_t len) {
  char *out = (char *)1;
  size_t n = 0;
  int rc = url ? b64_url_decode(text, len, &out, &n)
               : b64_decode(text, len, &out, &n);
  return rc == -1 && out == NULL;
}

static const char *const b64_test_vectors[][3] = {
    /* plain, standard, url */
    {"", "", ""},
    {"f", "Zg==", "Zg"},
    {"fo", "Zm8=", "Zm8"},
    {"foo", "Zm9v", "Zm9v"},
    {"foob", "Zm9vYg==", "Zm9vYg"},
    {"fooba", "Zm9vYmE=", "Zm9vYmE"},
    {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
};

UNIT_TEST(b64_rfc4648_vectors) {
  size_t n = sizeof b64_test_vectors / sizeof b64_test_vectors[0];
  for (size_t i = 0; i < n; i++) {
    const char *plain = b64_test_vectors[i][0];
    size_t len;
    char *std = b64_encode(plain, strlen(plain), &len);
    UNIT_CHECK_STR(std, b64_test_vectors[i][1]);
    UNIT_CHECK(std && len == strlen(std));
    free(std);
    char *url = b64_url_encode(plain, strlen(plain), &len);
    UNIT_CHECK_STR(url, b64_test_vectors[i][2]);
    UNIT_CHECK(url && len == strlen(url));
    free(url);
    UNIT_CHECK(b64_test_decodes_to(0, b64_test_vectors[i][1], plain,
                                   strlen(plain)));
    UNIT_CHECK(b64_test_decodes_to(1, b64_test_vectors[i][2], plain,
                                   strlen(plain)));
  }
}

UNIT_TEST(b64_url_alphabet) {
  const unsigned char raw[] = {0xfb, 0xff, 0xbf};
  char *std = b64_encode(raw, sizeof raw, NULL);
  char *url = b64_url_encode(raw, 2, NULL);
  UNIT_CHECK_STR(std, "+/+/");
  UNIT_CHECK_STR(url, "-_8");
  free(std);
  free(url);
  UNIT_CHECK(b64_test_decodes_to(0, "+/+/", (const char *)raw, 3));
  UNIT_CHECK(b64_test_decodes_to(1, "-_-_", (const char *)raw, 3));
  UNIT_CHECK(b64_test_refused(0, "-_-_", 4));
  UNIT_CHECK(b64_test_refused(1, "+/+/", 4));
}

UNIT_TEST(b64_round_trip_every_byte_and_length) {
  unsigned char raw[300];
  for (size_t i = 0; i < sizeof raw; i++) raw[i] = (unsigned char)(i * 7 + 3);
  for (size_t len = 0; len <= sizeof raw; len++) {
    for (int url = 0; url <= 1; url++) {
      size_t tlen;
      char *text = url ? b64_url_encode(raw, len, &tlen)
                       : b64_encode(raw, len, &tlen);
      char *back = NULL;
      size_t blen = 0;
      int rc = text ? (url ? b64_url_decode(text, tlen, &back, &blen)
                           : b64_decode(text, tlen, &back, &blen))
                    : -1;
      UNIT_CHECK(rc == 0 && blen == len && memcmp(back, raw, len) == 0);
      free(text);
      free(back);
    }
  }
}

UNIT_TEST(b64_refuses_bad_standard_text) {
  const char *bad[] = {
      "Zm9",       /* length not a multiple of 4 */
      "Zm9*",      /* outside the alphabet */
      " Zm9v",     /* whitespace, which OpenSSL alone would skip */
      "Zm9v\n",
      "Zm9v ",
      "Zm9v    ", /* a multiple of 4, still refused */
      "    Zm9v",
      "Zg==Zm9v",  /* padding in the middle */
      "Z===",      /* too much padding */
      "====",
      "Zm=v",
      "Zh==",      /* unused bits set: not the canonical "Zg==" */
      "Zm9=",      /* canonical is "Zm8=" */
      "Zg",        /* padding required */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    UNIT_CHECK(b64_test_refused(0, bad[i], strlen(bad[i])));
  }
  UNIT_CHECK(b64_test_refused(0, "Zm\0v", 4)); /* embedded NUL */
  UNIT_CHECK(b64_test_refused(0, NULL, 0));
}

UNIT_TEST(b64_refuses_bad_url_text) {
  const char *bad[] = {
      "Zg==",  /* no padding in base64url */
      "Zm8=",
      "Z",     /* 4k+1 characters encode nothing */
      "Zm9vY",
      "Zh",    /* unused bits set */
      "Zm9",
      "Zm+v",  /* standard alphabet */
      "Zm/v",
      "Zm.v",
      "Zm9v ",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    UNIT_CHECK(b64_test_refused(1, bad[i], strlen(bad[i])));
  }
  UNIT_CHECK(b64_test_refused(1, "Zm\0v", 4));
  UNIT_CHECK(b64_test_refused(1, NULL, 0));
}

UNIT_TEST(b64_decode_honours_length_not_nul) {
  /* Only the first 4 characters count; the rest of the buffer is ignored. */
  UNIT_CHECK(b64_test_decodes_to(0, "Zm9v", "foo", 3));
  char *out = NULL;
  size_t n = 0;
  UNIT_CHECK(b64_decode("Zm9vYmFy", 4, &out, &n) == 0 && n == 3 &&
             memcmp(out, "foo", 3) == 0);
  free(out);
  UNIT_CHECK(b64_url_decode("Zm9vYmFy", 4, &out, &n) == 0 && n == 3 &&
             memcmp(out, "foo", 3) == 0);
  free(out);
}
