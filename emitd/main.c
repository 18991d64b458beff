/*
 * main.c - emitd, the HTTP emit daemon: backends POST events, emitd
 * publishes them to the groups exchange with publisher confirms and answers
 * once the broker has every one (docs/PROTOCOL.md, "Emitting over HTTP").
 *
 * Owns: settings, start-up order (settings, key file, listener, broker
 * thread), signals and the exit status (0 stopped by a signal, 1 fatal, 2
 * bad settings), telling systemd (READY=1 once listening, WATCHDOG=1 from
 * the loop, STOPPING=1). Must not: parse HTTP (em_http) or touch the broker
 * (em_broker).
 *
 * SIGHUP re-reads emit.key_file: a new key works and a removed one stops
 * working at once; a file that no longer parses changes nothing (logged).
 * SIGTERM/SIGINT: stop listening, close idle connections, wait for the
 * requests waiting for the broker (at most emit.timeout + 2 s), then exit.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <uv.h>

#include "config.h"
#include "em_broker.h"
#include "em_config.h"
#include "em_http.h"
#include "em_keys.h"
#include "hostport.h"
#include "log.h"
#include "mq_conn.h"

static const char em_usage[] =
    "usage: emitd [--config FILE] [--section.key=value ...]\n"
    "HTTP emit API for backends: POST /emit?group=G, POST /emit/batch\n"
    "(docs/PROTOCOL.md, \"Emitting over HTTP\").\n";

typedef struct em_main {
  em_config conf;
  em_server srv;
  uv_signal_t sigterm, sigint, sighup;
  uv_timer_t watchdog, drain;
  long long drain_until;
} em_main;

static void em_main__reload(uv_signal_t *h, int sig) {
  em_main *m = h->data;
  (void)sig;
  em_keys k;
  char err[256];
  if (em_keys_load(m->conf.key_file, &k, err, sizeof err) < 0) {
    log_error("reload_failed", "reason=\"%s\" keys_kept=%zu", err, m->srv.keys.n);
    return;
  }
  em_keys_free(&m->srv.keys);
  m->srv.keys = k;
  log_info("reloaded", "keys=%zu", k.n);
}

static void em_main__close_handle(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Waits for the requests with the broker, then stops everything. */
static void em_main__drain(uv_timer_t *t) {
  em_main *m = t->data;
  if (m->srv.waiting > 0 && em_now_ms() < m->drain_until) return;
  log_info("stopping", "requests_unanswered=%zu", m->srv.waiting);
  em_broker_stop(m->srv.broker); /* answers what is left (503) */
  m->srv.broker = NULL;
  em_http_close_all(&m->srv);
  uv_walk(m->srv.loop, em_main__close_handle, NULL); /* signals and timers */
}

static void em_main__stop(uv_signal_t *h, int sig) {
  em_main *m = h->data;
  if (m->srv.stopping) return;
  log_info("signal", "sig=%d action=drain", sig);
  sd_notify(0, "STOPPING=1");
  em_http_stop(&m->srv);
  m->drain_until = em_now_ms() + m->conf.timeout_ms + 2000;
  uv_timer_start(&m->drain, em_main__drain, 0, 50);
}

static void em_main__ping(uv_timer_t *t) {
  (void)t;
  sd_notify(0, "WATCHDOG=1");
}

/* Settings checks beyond types and ranges. 0, or -1 (printed). */
static int em_main__check(const em_config *c, em_keys *keys) {
  char err[256];
  struct sockaddr_storage ss;
  socklen_t sl;
  if (hostport_listen_addr(c->listen, &ss, &sl) < 0) {
    fprintf(stderr, "emit.listen: " HOSTPORT_EXPECTED "\n");
    return -1;
  }
  if (mq_settings_check(c->amqp_url, "classic", err, sizeof err) < 0) {
    fprintf(stderr, "%s\n", err);
    return -1;
  }
  if (!c->key_file || !c->key_file[0]) {
    fprintf(stderr, "emit.key_file: required (lines \"NAME KEY\")\n");
    return -1;
  }
  if (em_keys_load(c->key_file, keys, err, sizeof err) < 0) {
    fprintf(stderr, "emit.key_file: %s\n", err);
    return -1;
  }
  log_level lv;
  if (log_level_parse(c->log_level, &lv) < 0) {
    fprintf(stderr, "log.level: debug, info, warn or error\n");
    em_keys_free(keys);
    return -1;
  }
  return 0;
}

static int em_main__run(em_main *m) {
  uv_loop_t *loop = uv_default_loop();
  char err[256];
  em_server *s = &m->srv;
  if (em_http_start(s, loop, &m->conf, err, sizeof err) < 0) {
    log_error("listen_failed", "reason=\"%s\"", err);
    return 1;
  }
  em_broker_conf bc = {m->conf.amqp_url, m->conf.amqp_heartbeat_ms, m->conf.timeout_ms};
  s->broker = em_broker_start(loop, &bc, em_http_job_done, s, err, sizeof err);
  if (!s->broker) {
    log_error("broker_failed", "reason=\"%s\"", err);
    return 1;
  }
  uv_signal_init(loop, &m->sigterm);
  uv_signal_init(loop, &m->sigint);
  uv_signal_init(loop, &m->sighup);
  uv_timer_init(loop, &m->drain);
  uv_timer_init(loop, &m->watchdog);
  m->sigterm.data = m->sigint.data = m->sighup.data = m->drain.data = m;
  uv_signal_start(&m->sigterm, em_main__stop, SIGTERM);
  uv_signal_start(&m->sigint, em_main__stop, SIGINT);
  uv_signal_start(&m->sighup, em_main__reload, SIGHUP);
  uint64_t wd_us = 0;
  if (sd_watchdog_enabled(0, &wd_us) > 0 && wd_us >= 2000)
    uv_timer_start(&m->watchdog, em_main__ping, 0, wd_us / 2000);
  log_info("listening", "listen=%s keys=%zu max_body=%ld max_events=%ld max_pending=%ld",
           m->conf.listen, s->keys.n, m->conf.max_body, m->conf.max_events,
           m->conf.max_pending);
  sd_notify(0, "READY=1");
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return 0;
}

int main(int argc, char **argv) {
  static em_main m;
  signal(SIGPIPE, SIG_IGN);
  cfg_result r = cfg_load(em_config_opts, em_config_n_opts, &m.conf, "emitd", em_usage,
                          &argc, argv);
  if (r == CFG_EXIT_OK || r == CFG_EXIT_ERROR) {
    cfg_free(em_config_opts, em_config_n_opts, &m.conf);
    return r == CFG_EXIT_OK ? 0 : 2;
  }
  if (argc > 1) {
    fprintf(stderr, "emitd: unexpected argument '%s'\n", argv[1]);
    cfg_free(em_config_opts, em_config_n_opts, &m.conf);
    return 2;
  }
  if (em_main__check(&m.conf, &m.srv.keys) < 0) {
    cfg_free(em_config_opts, em_config_n_opts, &m.conf);
    return 2;
  }
  if (r == CFG_CHECKED) {
    printf("config ok\n");
    em_keys_free(&m.srv.keys);
    cfg_free(em_config_opts, em_config_n_opts, &m.conf);
    return 0;
  }
  log_level lv = LOG_LEVEL_INFO;
  (void)log_level_parse(m.conf.log_level, &lv);
  log_init("emitd", lv);
  int rc = em_main__run(&m);
  em_keys_free(&m.srv.keys);
  cfg_free(em_config_opts, em_config_n_opts, &m.conf);
  return rc;
}
