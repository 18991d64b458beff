/*
 * main.c - gatewayd: settings, then the loop until shutdown.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "gw_config.h"
#include "gw_server.h"
#include "log.h"

static const char gw_usage[] =
    "usage: gatewayd [--config FILE] [--check-config] [--SECTION.KEY=VALUE ...]\n"
    "\n"
    "Terminates websockets on /websocket and /websocket/, relays each\n"
    "connection's life to workers over RabbitMQ (websocket.connect, .receive,\n"
    ".disconnect) and delivers group events to subscribed clients.\n";

int main(int argc, char **argv) {
  gw_config cfg;
  cfg_result r = cfg_load(gw_config_opts, gw_config_n_opts, &cfg, "gatewayd",
                          gw_usage, &argc, argv);
  if (r != CFG_RUN) {
    if (r == CFG_EXIT_OK) cfg_free(gw_config_opts, gw_config_n_opts, &cfg);
    return r == CFG_EXIT_OK ? 0 : 2;
  }
  if (argc > 1) {
    fprintf(stderr, "gatewayd: unexpected argument '%s' (see --help)\n", argv[1]);
    cfg_free(gw_config_opts, gw_config_n_opts, &cfg);
    return 2;
  }
  log_level level = LOG_LEVEL_INFO;
  if (log_level_parse(cfg.log_level, &level) != 0) {
    fprintf(stderr, "gatewayd: log.level: unknown level '%s'\n", cfg.log_level);
    cfg_free(gw_config_opts, gw_config_n_opts, &cfg);
    return 2;
  }
  log_init("gatewayd", level);
  /* A client that vanishes mid-write must not kill the process. */
  signal(SIGPIPE, SIG_IGN);

  uv_loop_t *loop = uv_default_loop();
  static gw_server srv;
  int rc = 0;
  if (gw_server_init(&srv, loop, &cfg) != 0) {
    log_error("startup_failed", "reason=\"see previous lines\"");
    rc = 1;
    gw_server_close(&srv);
  }
  uv_run(loop, UV_RUN_DEFAULT);
  gw_group_table_free(&srv.groups);
  gw_conntab_free(&srv.conns);
  gw_clients_free(&srv.clients);
  free(srv.read_buf);
  uv_loop_close(loop);
  cfg_free(gw_config_opts, gw_config_n_opts, &cfg);
  log_info("exit", "code=%d", rc);
  return rc;
}
