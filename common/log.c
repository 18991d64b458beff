/*
 * log.c - the logger: one key=value record per line on stderr.
 *
 * Owns: the record format (ts, level, prog, event, then the caller's tail),
 * the level filter and query-string redaction. Must not: allocate, take a
 * lock or write a record in pieces: a record is built on the stack and goes
 * out in one write(2), which is what keeps lines from several threads from
 * interleaving (stderr to a pipe or journald: writes up to PIPE_BUF are
 * atomic). Must not: decide what is secret in a caller's tail; callers
 * redact (log_redact_query) before logging.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* A record longer than this is cut and ends in "..." (a log line that long
 * is a bug in the caller, not something to allocate for). */
#define LOG_RECORD_MAX 2048
#define LOG_PROG_MAX 32

static char log_prog[LOG_PROG_MAX] = "-";
static atomic_int log_min = LOG_LEVEL_INFO;

static const char *const log_level_names[] = {"debug", "info", "warn",
                                              "error"};

/* Not thread-safe against concurrent log_event: call once at start-up,
 * before threads exist. */
void log_init(const char *prog, log_level min_level) {
  snprintf(log_prog, sizeof log_prog, "%s", prog ? prog : "-");
  atomic_store(&log_min, (int)min_level);
}

void log_set_level(log_level min_level) {
  atomic_store(&log_min, (int)min_level);
}

int log_level_parse(const char *s, log_level *out) {
  for (int i = LOG_LEVEL_DEBUG; i <= LOG_LEVEL_ERROR; i++) {
    if (strcasecmp(s, log_level_names[i]) == 0) {
      *out = (log_level)i;
      return 0;
    }
  }
  if (strcasecmp(s, "warning") == 0) {
    *out = LOG_LEVEL_WARN;
    return 0;
  }
  return -1;
}

int log_enabled(log_level level) {
  return (int)level >= atomic_load(&log_min);
}

/* "2026-11-28T00:00:00.123Z" into buf (at least 25 bytes). */
static void log__timestamp(char *buf, size_t len) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, len - n, ".%03dZ", (int)(ts.tv_nsec / 1000000L));
}

/* A value with a newline would split the record in two (and let a client
 * forge log lines through anything the caller logs): control bytes become
 * '?'. Costs one pass over the tail. */
static void log__scrub(char *s, size_t len) {
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f) s[i] = '?';
  }
}

static void log__write_all(const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(STDERR_FILENO, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return; /* nowhere left to report a failing stderr */
    }
    /* A short write only happens on a full pipe or a signal; finishing the
     * record is better than losing it, at the price of atomicity. */
    buf += n;
    len -= (size_t)n;
  }
}

void log_event(log_level level, const char *event, const char *fmt, ...) {
  if (!log_enabled(level)) return;
  char rec[LOG_RECORD_MAX];
  char ts[32];
  log__timestamp(ts, sizeof ts);
  int lvl = level >= LOG_LEVEL_DEBUG && level <= LOG_LEVEL_ERROR ? (int)level
                                                                 : 3;
  int head = snprintf(rec, sizeof rec, "ts=%s level=%s prog=%s event=%s", ts,
                      log_level_names[lvl], log_prog, event);
  if (head < 0) return;
  size_t used = (size_t)head < sizeof rec ? (size_t)head : sizeof rec - 1;

  if (fmt && fmt[0] && used < sizeof rec - 2) {
    rec[used++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(rec + used, sizeof rec - used, fmt, ap);
    va_end(ap);
    if (n > 0) {
      size_t tail = (size_t)n < sizeof rec - used ? (size_t)n
                                                  : sizeof rec - used - 1;
      log__scrub(rec + used, tail);
      used += tail;
    } else {
      used--; /* an empty tail: no trailing space */
    }
  }
  /* Room for the newline; a cut record says so. */
  if (used > sizeof rec - 2) {
    used = sizeof rec - 5;
    memcpy(rec + used, "...", 3);
    used += 3;
  }
  rec[used++] = '\n';
  log__write_all(rec, used);
}

/* Keys whose values never reach a log. Compared after percent-decoding the
 * key, so "%74oken=" does not slip through. */
static const char *const log_secret_keys[] = {"token", "access_token", "auth",
                                              "password", "secret"};

static int log__hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int log__key_is_secret(const char *key, size_t len) {
  char dec[32];
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    if (n == sizeof dec - 1) return 0; /* longer than any secret key */
    char c = key[i];
    if (c == '%' && i + 2 < len && log__hexval(key[i + 1]) >= 0 &&
        log__hexval(key[i + 2]) >= 0) {
      c = (char)(log__hexval(key[i + 1]) * 16 + log__hexval(key[i + 2]));
      i += 2;
    } else if (c == '+') {
      c = ' ';
    }
    dec[n++] = c;
  }
  dec[n] = '\0';
  for (size_t k = 0; k < sizeof log_secret_keys / sizeof *log_secret_keys;
       k++) {
    if (strcasecmp(dec, log_secret_keys[k]) == 0) return 1;
  }
  return 0;
}

/* Appends len bytes of s to out at *pos, keeping room for the NUL; what does
 * not fit is dropped (a cut log line is better than an unbounded one). */
static void log__append(char *out, size_t outlen, size_t *pos, const char *s,
                       size_t len) {
  size_t room = outlen - 1 - *pos;
  if (len > room) len = room;
  memcpy(out + *pos, s, len);
  *pos += len;
}

void log_redact_query(const char *query, char *out, size_t outlen) {
  if (!out || outlen == 0) return;
  size_t pos = 0;
  const char *p = query ? query : "";
  while (*p) {
    size_t plen = strcspn(p, "&;");
    const char *eq = memchr(p, '=', plen);
    size_t klen = eq ? (size_t)(eq - p) : plen;
    if (eq && log__key_is_secret(p, klen)) {
      log__append(out, outlen, &pos, p, klen + 1);
      log__append(out, outlen, &pos, "REDACTED", 8);
    } else {
      log__append(out, outlen, &pos, p, plen);
    }
    p += plen;
    if (*p) log__append(out, outlen, &pos, p++, 1); /* the separator */
  }
  out[pos] = '\0';
}
