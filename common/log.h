/*
 * log.h - one line per event on stderr, key=value, with a level:
 *   ts=2026-11-28T00:00:00.123Z level=info prog=gatewayd event=conn_open id=7
 * journald-friendly (no colours, no multi-line records).
 *
 * Owns: formatting and the level filter. Must not: be given tokens, secrets
 * or query strings (callers redact; see log_redact_query).
 */
#ifndef LOG_H
#define LOG_H

#include <stddef.h>

#include "config.h"

typedef enum {
  LOG_LEVEL_DEBUG = 0,
  LOG_LEVEL_INFO = 1,
  LOG_LEVEL_WARN = 2,
  LOG_LEVEL_ERROR = 3
} log_level;

/* The [log] row of every program's settings table, once: the log.level of
 * the settings struct T's member `field` (a char *). Expands to one
 * initializer with its trailing comma. */
#define LOG_CFG_OPT(T, field)                                          \
  {"log", "level", CFG_STR, "info", 0, 0, 0, offsetof(T, field),       \
   "debug, info, warn or error"},

void log_init(const char *prog, log_level min_level);
int log_level_parse(const char *s, log_level *out); /* "debug".."error" */
/* Changes the level filter at run time (a reload); safe from any thread. */
void log_set_level(log_level min_level);
int log_enabled(log_level level);

/* fmt builds the key=value tail, e.g. "id=%llu reason=%s". Thread-safe: each
 * record is written with one write(2). */
void log_event(log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(ev, ...) \
  do { if (log_enabled(LOG_LEVEL_DEBUG)) log_event(LOG_LEVEL_DEBUG, ev, __VA_ARGS__); } while (0)
#define log_info(ev, ...) log_event(LOG_LEVEL_INFO, ev, __VA_ARGS__)
#define log_warn(ev, ...) log_event(LOG_LEVEL_WARN, ev, __VA_ARGS__)
#define log_error(ev, ...) log_event(LOG_LEVEL_ERROR, ev, __VA_ARGS__)

/* Copies a query string into out with every value of token-like keys
 * (token, access_token, auth, password, secret) replaced by "REDACTED". */
void log_redact_query(const char *query, char *out, size_t outlen);

#endif
