/*
 * test_emit_keys.c - emitd's key file (em_keys): syntax, the bounds on
 * names and keys, a check that finds the right name and no other.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "em_keys.h"
#include "unit.h"

#define K1 "0123456789abcdef0123456789abcdef"
#define K2 "fedcba9876543210fedcba9876543210-x"

UNIT_TEST(emit_keys_parse_and_check) {
  const char *text = "# backends\n\nbilling " K1 "\r\n  jobs\t" K2 "  \n";
  em_keys k;
  char err[128];
  UNIT_CHECK(em_keys_parse(text, strlen(text), &k, err, sizeof err) == 0);
  UNIT_CHECK(k.n == 2);
  UNIT_CHECK_STR(em_keys_check(&k, K1, strlen(K1)), "billing");
  UNIT_CHECK_STR(em_keys_check(&k, K2, strlen(K2)), "jobs");
  UNIT_CHECK(em_keys_check(&k, K1, strlen(K1) - 1) == NULL);
  UNIT_CHECK(em_keys_check(&k, "", 0) == NULL);
  UNIT_CHECK(em_keys_check(&k, "billing", 7) == NULL); /* a name is no key */
  em_keys_free(&k);
}

UNIT_TEST(emit_keys_refusals) {
  struct {
    const char *text, *err;
  } cases[] = {
      {"", "no keys (lines \"NAME KEY\")"},
      {"# only a comment\n", "no keys (lines \"NAME KEY\")"},
      {"a short\n", "line 1: key shorter than 32 characters"},
      {"\nlonelyname\n", "line 2: expected NAME KEY"},
      {"a " K1 " extra\n", "line 1: expected NAME KEY (a key holds no blanks)"},
      {"a " K1 "\na " K2 "\n", "line 2: name a given twice"},
      {"a " K1 "\xc3\xa9\n", "line 1: key: 32-512 visible ASCII characters"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    em_keys k = {0};
    char err[128] = "";
    UNIT_CHECK(em_keys_parse(cases[i].text, strlen(cases[i].text), &k, err, sizeof err) < 0);
    UNIT_CHECK_STR(err, cases[i].err);
    UNIT_CHECK(k.n == 0 && k.v == NULL);
  }
}

UNIT_TEST(emit_keys_load_refuses_a_world_readable_file) {
  char path[] = "/tmp/emit-keys-XXXXXX";
  int fd = mkstemp(path);
  UNIT_CHECK(fd >= 0);
  if (fd < 0) return;
  const char *line = "a " K1 "\n";
  UNIT_CHECK(write(fd, line, strlen(line)) == (ssize_t)strlen(line));
  close(fd);
  em_keys k = {0};
  char err[256];
  chmod(path, 0640);
  UNIT_CHECK(em_keys_load(path, &k, err, sizeof err) == 0 && k.n == 1);
  em_keys_free(&k);
  chmod(path, 0644);
  UNIT_CHECK(em_keys_load(path, &k, err, sizeof err) < 0);
  UNIT_CHECK(strstr(err, "readable by other users") != NULL);
  unlink(path);
  UNIT_CHECK(em_keys_load(path, &k, err, sizeof err) < 0);
  UNIT_CHECK(strstr(err, "No such file") != NULL);
}
