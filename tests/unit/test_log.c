/*
 * test_log.c - query redaction, level names, and the shape of one record.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "unit.h"

static const char *redact(const char *q) {
  static char out[256];
  log_redact_query(q, out, sizeof out);
  return out;
}

UNIT_TEST(log_redact_token_like_keys) {
  UNIT_CHECK_STR(redact("token=eyJabc.def"), "token=REDACTED");
  UNIT_CHECK_STR(redact("a=1&token=x&b=2"), "a=1&token=REDACTED&b=2");
  UNIT_CHECK_STR(redact("access_token=x;auth=y&password=z&secret=w"),
                 "access_token=REDACTED;auth=REDACTED&password=REDACTED&"
                 "secret=REDACTED");
  UNIT_CHECK_STR(redact("TOKEN=x"), "TOKEN=REDACTED");
  UNIT_CHECK_STR(redact("%74oken=x"), "%74oken=REDACTED"); /* encoded key */
  UNIT_CHECK_STR(redact("token=a=b"), "token=REDACTED");
  UNIT_CHECK_STR(redact("token="), "token=REDACTED");
}

UNIT_TEST(log_redact_leaves_the_rest) {
  UNIT_CHECK_STR(redact(""), "");
  UNIT_CHECK_STR(redact(NULL), "");
  UNIT_CHECK_STR(redact("page=2&order=name"), "page=2&order=name");
  UNIT_CHECK_STR(redact("tokens=1&mytoken=2"), "tokens=1&mytoken=2");
  UNIT_CHECK_STR(redact("token"), "token"); /* no value to hide */
  UNIT_CHECK_STR(redact("&&a=1&"), "&&a=1&");
}

UNIT_TEST(log_redact_truncates_safely) {
  char out[12];
  log_redact_query("x=1&token=abcdefghijkl", out, sizeof out);
  UNIT_CHECK(strlen(out) == sizeof out - 1);
  UNIT_CHECK(strstr(out, "abc") == NULL);
  char one[1] = {'z'};
  log_redact_query("a=1", one, sizeof one);
  UNIT_CHECK(one[0] == '\0');
  log_redact_query("a=1", NULL, 0); /* no crash */
}

UNIT_TEST(log_level_names) {
  log_level l;
  UNIT_CHECK(log_level_parse("debug", &l) == 0 && l == LOG_LEVEL_DEBUG);
  UNIT_CHECK(log_level_parse("info", &l) == 0 && l == LOG_LEVEL_INFO);
  UNIT_CHECK(log_level_parse("WARN", &l) == 0 && l == LOG_LEVEL_WARN);
  UNIT_CHECK(log_level_parse("warning", &l) == 0 && l == LOG_LEVEL_WARN);
  UNIT_CHECK(log_level_parse("error", &l) == 0 && l == LOG_LEVEL_ERROR);
  UNIT_CHECK(log_level_parse("loud", &l) < 0);
}

/* Captures what log_event writes to fd 2. */
static void capture(char *buf, size_t len, void (*fn)(void)) {
  char path[] = "/tmp/unit-log.XXXXXX";
  int fd = mkstemp(path);
  unlink(path);
  int save = dup(2);
  dup2(fd, 2);
  fn();
  dup2(save, 2);
  close(save);
  ssize_t n = pread(fd, buf, len - 1, 0);
  buf[n > 0 ? n : 0] = '\0';
  close(fd);
}

static void emit_some(void) {
  log_init("unit", LOG_LEVEL_INFO);
  log_debug("hidden", "x=%d", 1);
  log_info("conn_open", "id=%d peer=%s", 7, "a\nb");
  log_error("bare", "%s", "");
}

UNIT_TEST(log_record_shape) {
  char out[1024];
  capture(out, sizeof out, emit_some);
  UNIT_CHECK(strncmp(out, "ts=", 3) == 0);
  /* ts=YYYY-MM-DDTHH:MM:SS.mmmZ */
  UNIT_CHECK(strlen(out) > 27 && out[13] == 'T' && out[26] == 'Z' &&
             out[22] == '.');
  UNIT_CHECK(strstr(out, " level=info prog=unit event=conn_open id=7 "
                         "peer=a?b\n") != NULL);
  UNIT_CHECK(strstr(out, "level=error prog=unit event=bare\n") != NULL);
  UNIT_CHECK(strstr(out, "hidden") == NULL);
  int lines = 0;
  for (const char *p = out; *p; p++) lines += *p == '\n';
  UNIT_CHECK(lines == 2);
  log_init("unit", LOG_LEVEL_INFO);
}

static void emit_long(void) {
  char big[5000];
  memset(big, 'v', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  log_init("unit", LOG_LEVEL_DEBUG);
  log_warn("long", "v=%s", big);
  log_init("unit", LOG_LEVEL_INFO);
}

UNIT_TEST(log_long_record_is_cut_to_one_line) {
  char out[8192];
  capture(out, sizeof out, emit_long);
  size_t n = strlen(out);
  UNIT_CHECK(n > 100 && n < 4096);
  UNIT_CHECK(n >= 4 && strcmp(out + n - 4, "...\n") == 0);
  UNIT_CHECK(strchr(out, '\n') == out + n - 1);
}
