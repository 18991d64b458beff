/*
 * test_chan_pos.c - positions: the round trip, what the parse refuses, and
 * that the tag depends on the group and the message.
 */
#include <string.h>

#include "chan_pos.h"
#include "unit.h"

static int chan_pos_test_parse(const char *s, uint64_t *off, uint64_t *tag) {
  return chan_pos_parse(s, strlen(s), off, tag);
}

UNIT_TEST(chan_pos_round_trip) {
  char buf[CHAN_POS_MAX];
  uint64_t off = 0, tag = 0;
  UNIT_CHECK(chan_pos_format(buf, 0, 0) == 14);
  UNIT_CHECK(strcmp(buf, "0-000000000000") == 0);
  UNIT_CHECK(chan_pos_test_parse(buf, &off, &tag) == 0 && off == 0 && tag == 0);
  chan_pos_format(buf, 123456789, 0xabcdef012345ull);
  UNIT_CHECK(strcmp(buf, "123456789-abcdef012345") == 0);
  UNIT_CHECK(chan_pos_test_parse(buf, &off, &tag) == 0);
  UNIT_CHECK(off == 123456789 && tag == 0xabcdef012345ull);
  int n = chan_pos_format(buf, INT64_MAX, 0xffffffffffffull);
  UNIT_CHECK(n == 32 && (size_t)n < CHAN_POS_MAX);
  UNIT_CHECK(chan_pos_test_parse(buf, &off, &tag) == 0 && off == INT64_MAX);
}

UNIT_TEST(chan_pos_refuses_garbage) {
  uint64_t off = 7, tag = 7;
  const char *bad[] = {"", "-", "12", "12-", "-abcdef012345", "12-abcdef01234",
                       "12-abcdef0123456", "12-ABCDEF012345", "012-abcdef012345",
                       "1 2-abcdef012345", "+12-abcdef012345", "12-abcdef01234g",
                       "9223372036854775808-abcdef012345",
                       "99999999999999999999-abcdef012345", "12_abcdef012345",
                       "12-abcdef012345 "};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    UNIT_CHECK(chan_pos_test_parse(bad[i], &off, &tag) == -1);
  UNIT_CHECK(off == 7 && tag == 7); /* untouched on failure */
  UNIT_CHECK(chan_pos_parse("12-abcdef012345", 5, &off, &tag) == -1);
}

UNIT_TEST(chan_pos_tag_binds_group_and_message) {
  uint64_t d1 = chan_pos_digest(10, "jobs-x", 6, "{}", 2);
  uint64_t d2 = chan_pos_digest(10, "jobs-x", 6, "{ }", 3);
  uint64_t d3 = chan_pos_digest(11, "jobs-x", 6, "{}", 2);
  uint64_t d4 = chan_pos_digest(10, "jobs-y", 6, "{}", 2);
  UNIT_CHECK(d1 != d2 && d1 != d3 && d1 != d4);
  /* the key and body are separated: "ab"+"c" is not "a"+"bc" */
  UNIT_CHECK(chan_pos_digest(1, "ab", 2, "c", 1) != chan_pos_digest(1, "a", 1, "bc", 2));
  UNIT_CHECK(chan_pos_tag("g1", 2, d1) != chan_pos_tag("g2", 2, d1));
  UNIT_CHECK(chan_pos_tag("g1", 2, d1) != chan_pos_tag("g1", 2, d2));
  UNIT_CHECK(chan_pos_tag("g1", 2, d1) <= 0xffffffffffffull);
  UNIT_CHECK(chan_pos_tag("g1", 2, d1) == chan_pos_tag("g1", 2, d1));
}
