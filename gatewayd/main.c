/*
 * main.c - gatewayd: settings, then the loop until shutdown.
 *
 * Also owns telling systemd how the process is doing (sd_notify; a no-op
 * when NOTIFY_SOCKET is unset, so the daemon runs the same without systemd):
 * READY=1 once the listener is open and the broker connected for the first
 * time, WATCHDOG=1 from a loop timer (a stuck loop stops the pings and
 * systemd restarts us), STOPPING=1 when shutdown begins.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <systemd/sd-daemon.h>

#include "gw_config.h"
#include "gw_http.h"
#include "gw_ring.h"
#include "gw_server.h"
#include "gw_supervisor.h"
#include "gw_tls.h"
#include "hostport.h"
#include "log.h"
#include "mq_conn.h"

/* How often the notify timer runs without a watchdog: only to notice
 * readiness and the start of shutdown. */
#define GW_NOTIFY_MS 250

typedef struct gw_notify {
  uv_timer_t timer;
  gw_server *srv;
  int ready, stopping;
} gw_notify;

static void gw_notify__on_timer(uv_timer_t *t) {
  gw_notify *n = t->data;
  if (!n->ready && n->srv->bridge && gw_bridge_is_up(n->srv->bridge)) {
    n->ready = 1;
    sd_notifyf(0, "READY=1\nSTATUS=listening on %s", n->srv->cfg->listen);
  }
  if (!n->stopping && n->srv->shutting_down) {
    n->stopping = 1;
    sd_notify(0, "STOPPING=1");
  }
  /* Sent from the loop itself, so it proves the loop turns. */
  sd_notify(0, "WATCHDOG=1");
}

/* Starts the notify timer when systemd listens. It is unreferenced: it
 * must not keep the loop alive once the server has closed its handles. */
static void gw_notify__start(gw_notify *n, uv_loop_t *loop, gw_server *srv) {
  const char *sock = getenv("NOTIFY_SOCKET");
  n->srv = srv;
  if (!sock || !*sock) return;
  uint64_t usec = 0, every = GW_NOTIFY_MS;
  /* Ping at half the watchdog period, as sd_watchdog_enabled(3) advises. */
  if (sd_watchdog_enabled(0, &usec) > 0 && usec / 2000 < every) every = usec / 2000;
  if (every == 0) every = 1;
  uv_timer_init(loop, &n->timer);
  n->timer.data = n;
  uv_timer_start(&n->timer, gw_notify__on_timer, 0, every);
  uv_unref((uv_handle_t *)&n->timer);
}

static void gw_notify__stop(gw_notify *n, uv_loop_t *loop) {
  if (!n->timer.data) return;
  if (!n->stopping) sd_notify(0, "STOPPING=1");
  uv_close((uv_handle_t *)&n->timer, NULL);
  uv_run(loop, UV_RUN_DEFAULT); /* runs the close callback */
}

static const char gw_usage[] =
    "[--config FILE] [--check-config] [--SECTION.KEY=VALUE ...]\n"
    "\n"
    "Terminates websockets on /websocket and /websocket/, relays each\n"
    "connection's life to workers over RabbitMQ (websocket.connect, .receive,\n"
    ".disconnect) and delivers group events to subscribed clients.\n";

/* One gateway process: the loop until shutdown. A child of gw_supervisor
 * (process_index >= 0) is the same thing with a shared port. */
static int gw_main__serve(gw_config *cfg, const cfg_cmdline *cmdline) {
  if (cfg->process_index >= 0) {
    /* If the supervisor is killed outright, drain and exit rather than
     * hold the port as an orphan nobody restarts. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
  }
  uv_loop_t *loop = uv_default_loop();
  static gw_server srv;
  static gw_notify notify;
  int rc = 0;
  if (gw_server_init(&srv, loop, cfg, cmdline) != 0) {
    log_error("startup_failed", "reason=\"see previous lines\"");
    rc = 1;
    gw_server_close(&srv);
  } else {
    gw_notify__start(&notify, loop, &srv);
  }
  uv_run(loop, UV_RUN_DEFAULT);
  gw_notify__stop(&notify, loop);
  gw_server_free(&srv);
  uv_loop_close(loop);
  return rc;
}

/* gateway.slow_client and history.stream, which config.c checks only as
 * strings. */
static int gw_main__history_check(const gw_config *cfg) {
  if (strcmp(cfg->slow_client, "catch_up") != 0 && strcmp(cfg->slow_client, "close") != 0) {
    fprintf(stderr, "gatewayd: gateway.slow_client: expected catch_up or close, not '%s'\n",
            cfg->slow_client);
    return -1;
  }
  size_t n = strlen(cfg->history.stream);
  if (n == 0 || n > CHAN_QUEUE_NAME_MAX || strncmp(cfg->history.stream, "amq.", 4) == 0) {
    fprintf(stderr, "gatewayd: history.stream: a queue name of 1 to %d bytes not "
            "starting with amq.\n", CHAN_QUEUE_NAME_MAX);
    return -1;
  }
  if (cfg->history.shared > 0 && cfg->history.shared < GW_RING_MIN_BYTES) {
    fprintf(stderr, "gatewayd: history.shared: 0 (off) or at least %u bytes\n",
            GW_RING_MIN_BYTES);
    return -1;
  }
  return 0;
}

/* The listen addresses, checked before anything opens so that
 * --check-config refuses a typo too (workerd does the same). */
static int gw_main__addrs_check(const gw_config *cfg) {
  struct sockaddr_storage ss;
  socklen_t len;
  if (hostport_listen_addr(cfg->listen, &ss, &len) != 0) {
    fprintf(stderr, "gatewayd: gateway.listen: " HOSTPORT_EXPECTED ", got '%s'\n",
            cfg->listen);
    return -1;
  }
  if (cfg->metrics_listen[0] && hostport_listen_addr(cfg->metrics_listen, &ss, &len) != 0) {
    fprintf(stderr, "gatewayd: gateway.metrics_listen: " HOSTPORT_EXPECTED ", got '%s'\n",
            cfg->metrics_listen);
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  /* cfg_load reorders argv; the supervisor passes the flags on as given,
   * and a reload (gw_server.c) parses them again. */
  cfg_cmdline cmdline;
  if (cfg_cmdline_save(&cmdline, argc, argv) != 0) return 1;
  gw_config cfg;
  cfg_result r = cfg_load(gw_config_opts, gw_config_n_opts, &cfg, "gatewayd",
                          gw_usage, &argc, argv);
  /* A list config.c cannot check by type alone; checked here so that
   * --check-config and start-up both refuse a typo. */
  char why[160];
  if (r != CFG_EXIT_ERROR && gw_http_trusted_check(cfg.trusted_proxies, why, sizeof why) != 0) {
    fprintf(stderr, "gatewayd: --gateway.trusted_proxies: %s\n", why);
    r = CFG_EXIT_ERROR;
  }
  if (r != CFG_EXIT_ERROR &&
      mq_settings_check(cfg.amqp.url, cfg.amqp.queue_type, why, sizeof why) != 0) {
    fprintf(stderr, "gatewayd: %s\n", why);
    r = CFG_EXIT_ERROR;
  }
  if (r != CFG_EXIT_ERROR && gw_main__addrs_check(&cfg) != 0) r = CFG_EXIT_ERROR;
  if (r != CFG_EXIT_ERROR && gw_main__history_check(&cfg) != 0) r = CFG_EXIT_ERROR;
  char addr[128];
  int n_procs = r != CFG_EXIT_ERROR ? gw_supervisor_count(&cfg) : 1;
  if (n_procs > 1 &&
      gw_supervisor_metrics_addr(cfg.metrics_listen, n_procs - 1, addr, sizeof addr) != 0) {
    fprintf(stderr, "gatewayd: gateway.metrics_listen: '%s' leaves no room for %d "
            "processes' ports (process I uses the port + I)\n", cfg.metrics_listen, n_procs);
    r = CFG_EXIT_ERROR;
  }
  log_level level = LOG_LEVEL_INFO;
  if ((r == CFG_RUN || r == CFG_CHECKED) && log_level_parse(cfg.log_level, &level) != 0) {
    fprintf(stderr, "gatewayd: log.level: unknown level '%s'\n", cfg.log_level);
    r = CFG_EXIT_ERROR;
  }
  if ((r == CFG_RUN || r == CFG_CHECKED) && argc > 1) {
    fprintf(stderr, "gatewayd: unexpected argument '%s' (see --help)\n", argv[1]);
    r = CFG_EXIT_ERROR;
  }
  if (r == CFG_CHECKED) printf("config ok\n"); /* every check above passed */
  if (r != CFG_RUN) {
    cfg_free(gw_config_opts, gw_config_n_opts, &cfg);
    cfg_cmdline_free(&cmdline);
    return r == CFG_EXIT_ERROR ? 2 : 0;
  }
  char prog[32] = "gatewayd";
  if (cfg.process_index >= 0) snprintf(prog, sizeof prog, "gatewayd.%ld", cfg.process_index);
  log_init(prog, level);
  /* A client that vanishes mid-write must not kill the process. */
  signal(SIGPIPE, SIG_IGN);

  int rc = n_procs > 1 ? gw_supervisor_run(&cfg, n_procs, cmdline.argc, cmdline.argv)
                       : gw_main__serve(&cfg, &cmdline);
  cfg_cmdline_free(&cmdline);
  cfg_free(gw_config_opts, gw_config_n_opts, &cfg);
  log_info("exit", "code=%d", rc);
  return rc;
}
