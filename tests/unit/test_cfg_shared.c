/*
 * test_cfg_shared.c - the settings rows every program shares: [amqp]
 * (MQ_CFG_OPTS, mq_conn.h) and [log] (LOG_CFG_OPT, log.h). They load into
 * any struct that embeds an mq_settings, and gatewayd's table carries them
 * exactly (workerd's and chanctl's are built by the same macros).
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "gw_config.h"
#include "log.h"
#include "mq_conn.h"
#include "unit.h"

typedef struct shared_conf {
  long other;
  mq_settings amqp;
  char *level;
} shared_conf;

static const cfg_opt shared_opts[] = {
    {"worker", "other", CFG_INT, "1", 0, 10, 0, offsetof(shared_conf, other),
     "a row of the program's own"},
    MQ_CFG_OPTS(shared_conf, amqp)
    LOG_CFG_OPT(shared_conf, level)
};
#define N_SHARED (sizeof shared_opts / sizeof *shared_opts)

/* cfg_load with its messages (stderr) sent to /dev/null. */
static cfg_result shared_load(shared_conf *c, int argc, char **argv) {
  int saved = unit_stderr_mute();
  cfg_result r = cfg_load(shared_opts, N_SHARED, c, "unit", NULL, &argc, argv);
  unit_stderr_restore(saved);
  return r;
}

UNIT_TEST(cfg_shared_rows_defaults) {
  shared_conf c;
  char *argv[] = {"unit", NULL};
  UNIT_CHECK(N_SHARED == 8);
  UNIT_CHECK(shared_load(&c, 1, argv) == CFG_RUN);
  UNIT_CHECK_STR(c.amqp.url, "amqp://guest:guest@127.0.0.1:5672/");
  UNIT_CHECK(c.amqp.heartbeat == 10000 && c.amqp.queue_ttl == 60000);
  UNIT_CHECK(c.amqp.queue_max_length == 100000);
  UNIT_CHECK(c.amqp.queue_max_bytes == 128L * 1024 * 1024);
  UNIT_CHECK_STR(c.amqp.queue_type, "classic");
  UNIT_CHECK_STR(c.level, "info");
  mq_queue_limits lim = mq_queue_limits_of(&c.amqp); /* what both daemons declare */
  UNIT_CHECK(lim.message_ttl_ms == 60000 && lim.max_length == 100000);
  UNIT_CHECK(lim.max_bytes == 128L * 1024 * 1024 && lim.quorum == 0);
  UNIT_CHECK(c.other == 1);
  cfg_free(shared_opts, N_SHARED, &c);
}

UNIT_TEST(cfg_shared_rows_flags_and_ranges) {
  shared_conf c;
  char *argv[] = {"unit", "--amqp.heartbeat=0", "--amqp.queue_ttl=2s",
                  "--amqp.queue_type=quorum", "--log.level=debug", NULL};
  UNIT_CHECK(shared_load(&c, 5, argv) == CFG_RUN);
  UNIT_CHECK(c.amqp.heartbeat == 0 && c.amqp.queue_ttl == 2000);
  UNIT_CHECK_STR(c.amqp.queue_type, "quorum");
  UNIT_CHECK_STR(c.level, "debug");
  cfg_free(shared_opts, N_SHARED, &c);
  /* The ranges both daemons check: x-message-ttl of at least 1 s. */
  char *bad[] = {"unit", "--amqp.queue_ttl=500ms", NULL};
  UNIT_CHECK(shared_load(&c, 2, bad) == CFG_EXIT_ERROR);
  cfg_free(shared_opts, N_SHARED, &c);
}

static const cfg_opt *find_row(const cfg_opt *opts, size_t n,
                               const char *section, const char *key) {
  for (size_t i = 0; i < n; i++)
    if (!strcmp(opts[i].section, section) && !strcmp(opts[i].key, key))
      return &opts[i];
  return NULL;
}

/* Same key, type, default, range, flags and help, whatever the offset. */
static int same_row(const cfg_opt *a, const cfg_opt *b) {
  return a && b && a->type == b->type && !strcmp(a->def, b->def) &&
         a->min == b->min && a->max == b->max && a->flags == b->flags &&
         !strcmp(a->help, b->help);
}

UNIT_TEST(cfg_shared_rows_in_gatewayd) {
  for (size_t i = 1; i < N_SHARED; i++) {
    const cfg_opt *mine = &shared_opts[i];
    const cfg_opt *gw = find_row(gw_config_opts, gw_config_n_opts,
                                 mine->section, mine->key);
    UNIT_CHECK(same_row(mine, gw));
  }
  const cfg_opt *url = find_row(gw_config_opts, gw_config_n_opts, "amqp", "url");
  UNIT_CHECK(url && url->offset == offsetof(gw_config, amqp.url));
}

/* CFG_SHARED: workerd reads [gateway] allowed_origins from the file both
 * daemons share, without claiming [gateway] (whose other keys it skips). */
typedef struct foreign_conf {
  long other;
  char *origins;
} foreign_conf;

static const cfg_opt foreign_opts[] = {
    {"worker", "other", CFG_INT, "1", 0, 10, 0, offsetof(foreign_conf, other),
     "a row of the program's own"},
    {"gateway", "allowed_origins", CFG_STR, "", 0, 0, CFG_SHARED,
     offsetof(foreign_conf, origins), "another program's key, read too"},
};

UNIT_TEST(cfg_shared_row_reads_another_programs_key) {
  char path[] = "/tmp/wsgw-cfg-shared-XXXXXX";
  int fd = mkstemp(path);
  UNIT_CHECK(fd >= 0);
  const char ini[] = "[gateway]\nlisten = 127.0.0.1:8051\n"
                     "allowed_origins = https://ui.example\nmax_rate = 5\n"
                     "[worker]\nother = 3\n";
  UNIT_CHECK(write(fd, ini, sizeof ini - 1) == (ssize_t)(sizeof ini - 1));
  close(fd);
  foreign_conf c;
  char *argv[] = {"unit", "--config", path, NULL};
  int argc = 3, saved = unit_stderr_mute();
  cfg_result r = cfg_load(foreign_opts, 2, &c, "unit", NULL, &argc, argv);
  unit_stderr_restore(saved);
  UNIT_CHECK(r == CFG_RUN);
  UNIT_CHECK(c.other == 3);
  UNIT_CHECK_STR(c.origins, "https://ui.example");
  cfg_free(foreign_opts, 2, &c);
  /* A flag works as for any row. */
  char *argv2[] = {"unit", "--gateway.allowed_origins=https://x.example", NULL};
  argc = 2;
  saved = unit_stderr_mute();
  r = cfg_load(foreign_opts, 2, &c, "unit", NULL, &argc, argv2);
  unit_stderr_restore(saved);
  UNIT_CHECK(r == CFG_RUN);
  UNIT_CHECK_STR(c.origins, "https://x.example");
  cfg_free(foreign_opts, 2, &c);
  unlink(path);
}

/* [history] and [compression] are gatewayd's, in the file both daemons
 * share: a program without their rows (workerd, chanctl, emitd) skips the
 * sections. */
UNIT_TEST(cfg_shared_file_with_history_loads_in_other_programs) {
  char path[] = "/tmp/wsgw-cfg-history-XXXXXX";
  int fd = mkstemp(path);
  UNIT_CHECK(fd >= 0);
  const char ini[] = "[history]\nenabled = true\nmax_age = 1h\n"
                     "[compression]\nenabled = true\n"
                     "[worker]\nother = 4\n";
  UNIT_CHECK(write(fd, ini, sizeof ini - 1) == (ssize_t)(sizeof ini - 1));
  close(fd);
  foreign_conf c;
  char *argv[] = {"unit", "--config", path, NULL};
  int argc = 3, saved = unit_stderr_mute();
  cfg_result r = cfg_load(foreign_opts, 2, &c, "unit", NULL, &argc, argv);
  unit_stderr_restore(saved);
  UNIT_CHECK(r == CFG_RUN && c.other == 4);
  cfg_free(foreign_opts, 2, &c);
  unlink(path);
}
