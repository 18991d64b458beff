/*
 * test_chan_group.c - the group-name rule and "key-value" names.
 */
#include <string.h>

#include "chan_group.h"
#include "chan_names.h"
#include "unit.h"

static int chan_group_test_valid(const char *s) {
  return chan_group_name_valid(s, strlen(s));
}

UNIT_TEST(chan_group_accepts_names) {
  UNIT_CHECK(chan_group_test_valid("jobs-status_changed"));
  UNIT_CHECK(chan_group_test_valid("job_events-42"));
  UNIT_CHECK(chan_group_test_valid("control-limit_reached_7"));
  UNIT_CHECK(chan_group_test_valid("a"));
  UNIT_CHECK(chan_group_test_valid("A.b:c-D_9"));
  char name[CHAN_GROUP_NAME_MAX + 1];
  memset(name, 'x', CHAN_GROUP_NAME_MAX);
  UNIT_CHECK(chan_group_name_valid(name, CHAN_GROUP_NAME_MAX));
}

UNIT_TEST(chan_group_rejects_names) {
  UNIT_CHECK(!chan_group_name_valid("", 0));
  UNIT_CHECK(!chan_group_name_valid(NULL, 3));
  UNIT_CHECK(!chan_group_test_valid("jobs status"));
  UNIT_CHECK(!chan_group_test_valid("jobs/1"));
  UNIT_CHECK(!chan_group_test_valid("jobs*"));
  UNIT_CHECK(!chan_group_test_valid("jobs#"));
  UNIT_CHECK(!chan_group_test_valid("caf\xc3\xa9"));
  UNIT_CHECK(!chan_group_name_valid("jo\0bs", 5));
  char name[CHAN_GROUP_NAME_MAX + 2];
  memset(name, 'x', sizeof name);
  UNIT_CHECK(!chan_group_name_valid(name, CHAN_GROUP_NAME_MAX + 1));
}

UNIT_TEST(chan_group_parts) {
  UNIT_CHECK(chan_group_part_valid("status_changed", 14));
  UNIT_CHECK(chan_group_part_valid("42", 2));
  UNIT_CHECK(chan_group_part_valid("a.b:c", 5));
  UNIT_CHECK(!chan_group_part_valid("a-b", 3)); /* '-' joins key and value */
  UNIT_CHECK(!chan_group_part_valid("", 0));
  UNIT_CHECK(!chan_group_part_valid(NULL, 1));
  UNIT_CHECK(!chan_group_part_valid("a b", 3));
  char part[65];
  memset(part, 'p', sizeof part);
  UNIT_CHECK(chan_group_part_valid(part, 64));
  UNIT_CHECK(!chan_group_part_valid(part, 65));
}

UNIT_TEST(chan_group_make) {
  char buf[CHAN_GROUP_NAME_MAX + 1];
  UNIT_CHECK(chan_group_name_make(buf, sizeof buf, "jobs", "status_changed") ==
             19);
  UNIT_CHECK_STR(buf, "jobs-status_changed");
  UNIT_CHECK(chan_group_name_make(buf, sizeof buf, "job_events", "42") == 13);
  UNIT_CHECK_STR(buf, "job_events-42");
  UNIT_CHECK(chan_group_name_make(buf, sizeof buf, "schedules", NULL) == 9);
  UNIT_CHECK_STR(buf, "schedules");
}

UNIT_TEST(chan_group_make_rejects) {
  char buf[CHAN_GROUP_NAME_MAX + 1];
  UNIT_CHECK(chan_group_name_make(buf, sizeof buf, "jobs", "a-b") == -1);
  UNIT_CHECK(chan_group_name_make(buf, sizeof buf, "jo-bs", "a") == -1);
  UNIT_CHECK(chan_group_name_make(buf, sizeof buf, "", "a") == -1);
  UNIT_CHECK(chan_group_name_make(buf, sizeof buf, "jobs", "") == -1);
  UNIT_CHECK(chan_group_name_make(buf, sizeof buf, NULL, "a") == -1);
  UNIT_CHECK(chan_group_name_make(NULL, 10, "jobs", "a") == -1);
  /* Exactly fitting needs room for the NUL. */
  char small[7];
  UNIT_CHECK(chan_group_name_make(small, 6, "jobs", "a") == -1);
  UNIT_CHECK(chan_group_name_make(small, 7, "jobs", "a") == 6);
  UNIT_CHECK_STR(small, "jobs-a");
  /* Two 64-byte parts make 129 bytes: over the name limit. */
  char key[65], value[65], big[200];
  memset(key, 'k', 64);
  key[64] = '\0';
  memset(value, 'v', 64);
  value[64] = '\0';
  UNIT_CHECK(chan_group_name_make(big, sizeof big, key, value) == -1);
  value[63] = '\0';
  UNIT_CHECK(chan_group_name_make(big, sizeof big, key, value) == 128);
  UNIT_CHECK(chan_group_name_valid(big, 128));
}
