/*
 * em_config.h - emitd's settings: the [emit] section, amqp.url and
 * amqp.heartbeat (read from the shared [amqp] section), log.level.
 *
 * Owns: the table (defaults, ranges, --help text, which `make docs` turns
 * into docs/OPERATIONS.md and deploy/wsgw.ini.example). Must not: act on a
 * setting.
 */
#ifndef EM_CONFIG_H
#define EM_CONFIG_H

#include <stddef.h>

#include "config.h"

typedef struct em_config {
  char *amqp_url;
  long amqp_heartbeat_ms;
  char *log_level;
  char *listen;
  char *key_file;
  long max_body;
  long max_events;
  long max_pending;
  long timeout_ms;
  long max_connections;
  long request_timeout_ms;
  long idle_timeout_ms;
} em_config;

extern const cfg_opt em_config_opts[];
extern const size_t em_config_n_opts;

#endif
