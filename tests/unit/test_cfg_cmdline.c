/*
 * test_cfg_cmdline.c - the command line saved before cfg_load reorders
 * argv, and cfg_reload parsing it again: the file is read afresh while the
 * flags still win, the saved copy never changes, and a missing copy is
 * refused with conf left for cfg_free.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "unit.h"

typedef struct cmd_conf {
  char *name;
  long port;
} cmd_conf;

static const cfg_opt cmd_opts[] = {
    {"gateway", "name", CFG_STR, "gw", 0, 0, 0, offsetof(cmd_conf, name), ""},
    {"gateway", "port", CFG_INT, "8051", 1, 65535, 0, offsetof(cmd_conf, port),
     ""},
};
#define N_CMD (sizeof cmd_opts / sizeof *cmd_opts)

/* A config file holding text; the path is static (one at a time). */
static const char *cmd_file(const char *text) {
  static char path[64];
  if (!path[0]) {
    snprintf(path, sizeof path, "/tmp/unit-cmdline.XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) abort();
    close(fd);
  }
  FILE *f = fopen(path, "w");
  if (!f) abort();
  fputs(text, f);
  fclose(f);
  return path;
}

/* cfg_reload with its messages (stderr) sent to /dev/null. */
static cfg_result cmd_quiet_reload(const cfg_cmdline *c, cmd_conf *conf) {
  int saved = unit_stderr_mute();
  cfg_result r = cfg_reload(c, cmd_opts, N_CMD, conf, "unit");
  unit_stderr_restore(saved);
  return r;
}

UNIT_TEST(cfg_cmdline_reload_reads_the_file_again_flags_win) {
  unsetenv("WSGW_GATEWAY_NAME"); /* the environment would win over the file */
  unsetenv("WSGW_GATEWAY_PORT");
  const char *path = cmd_file("[gateway]\nname = first\nport = 1\n");
  char *argv[] = {"prog", "pos", "--config", (char *)path, "--gateway.port=7",
                  NULL};
  int argc = 5;
  cfg_cmdline saved;
  UNIT_CHECK(cfg_cmdline_save(&saved, argc, argv) == 0);
  cmd_conf c;
  UNIT_CHECK(cfg_load(cmd_opts, N_CMD, &c, "unit", NULL, &argc, argv) == CFG_RUN);
  UNIT_CHECK(argc == 2 && strcmp(argv[1], "pos") == 0); /* argv reordered */
  UNIT_CHECK_STR(c.name, "first");
  UNIT_CHECK(c.port == 7);
  cfg_free(cmd_opts, N_CMD, &c);

  cmd_file("[gateway]\nname = second\nport = 2\n");
  for (int round = 0; round < 2; round++) {
    UNIT_CHECK(cfg_reload(&saved, cmd_opts, N_CMD, &c, "unit") == CFG_RUN);
    UNIT_CHECK_STR(c.name, "second");
    UNIT_CHECK(c.port == 7);
    cfg_free(cmd_opts, N_CMD, &c);
  }
  UNIT_CHECK(saved.argc == 5 && saved.argv[5] == NULL);
  UNIT_CHECK_STR(saved.argv[1], "pos");
  UNIT_CHECK_STR(saved.argv[2], "--config");
  UNIT_CHECK_STR(saved.argv[4], "--gateway.port=7");
  cfg_cmdline_free(&saved);
  cfg_cmdline_free(&saved); /* twice is safe */
  unlink(path);
}

UNIT_TEST(cfg_cmdline_reload_refuses_invalid_or_unsaved) {
  unsetenv("WSGW_GATEWAY_PORT");
  const char *path = cmd_file("[gateway]\nport = 0\n");
  char *argv[] = {"prog", "--config", (char *)path, NULL};
  cfg_cmdline saved;
  UNIT_CHECK(cfg_cmdline_save(&saved, 3, argv) == 0);
  cmd_conf c;
  UNIT_CHECK(cmd_quiet_reload(&saved, &c) == CFG_EXIT_ERROR);
  cfg_free(cmd_opts, N_CMD, &c);
  cfg_cmdline_free(&saved);
  /* Nothing saved: refused, and conf holds no garbage for cfg_free. */
  memset(&c, 0x5A, sizeof c);
  UNIT_CHECK(cmd_quiet_reload(&saved, &c) == CFG_EXIT_ERROR);
  UNIT_CHECK(c.name == NULL && c.port == 0);
  cfg_free(cmd_opts, N_CMD, &c);
  unlink(path);
}
