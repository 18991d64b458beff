/*
 * gw_server.c - the gateway process's loop-side state (see gw_server.h):
 * listener, periodic tick, flush phase, signals and orderly shutdown.
 */
#include "gw_server.h"

#include <assert.h>
#include <errno.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_conn.h"
#include "gw_dispatch.h"
#include "gw_http.h"
#include "gw_tls.h"
#include "hostport.h"
#include "log.h"
#include "mq_conn.h"

#define GW_TICK_MS 100

static void gw_server__on_connection(uv_stream_t *l, int status) {
  gw_server *s = l->data;
  if (status < 0) {
    log_warn("accept_failed", "error=%s", uv_strerror(status));
    return;
  }
  gw_conn_accept(s);
}

/* Tells the next slice of connections to go away: by time t into the
 * spread window, that fraction of them has been told. */
static void gw_server__drain(gw_server *s, uint64_t now) {
  if (!s->drain_ids || s->drain_done == s->drain_n) return;
  uint64_t spread = (uint64_t)s->cfg->shutdown_spread, elapsed = now - s->shutdown_start;
  size_t target = spread == 0 || elapsed >= spread
                      ? s->drain_n
                      : (size_t)((double)s->drain_n * (double)elapsed / (double)spread) + 1;
  if (target > s->drain_n) target = s->drain_n;
  for (; s->drain_done < target; s->drain_done++) {
    gw_conn *c = gw_conntab_get(&s->conns, s->drain_ids[s->drain_done]);
    if (c) gw_conn_go_away(c);
  }
}

static void gw_server__on_tick(uv_timer_t *t) {
  gw_server *s = t->data;
  uint64_t now = uv_now(s->loop);
  if (s->shutting_down) gw_server__drain(s, now);
  gw_conn_tick(s, now);
  gw_group_expire(&s->groups, now); /* lingering bindings past group_linger */
  if (s->shutting_down && (s->n_conns == 0 || now >= s->shutdown_deadline)) {
    log_info("shutdown", "open=%zu", s->n_conns);
    gw_server_close(s);
  }
}

/* Just before the loop blocks in poll: publishes made in timer callbacks
 * (the write_delay timer's writes that failed, say) or libuv's pending
 * phase would otherwise wait for the check phase after the poll, up to a
 * tick. */
static void gw_server__on_prepare(uv_prepare_t *h) {
  gw_server *s = h->data;
  if (s->bridge) gw_bridge_flush(s->bridge);
}

static void gw_server__on_check(uv_check_t *h) {
  gw_server *s = h->data;
  gw_conn_flush_dirty(s);
  if (s->bridge) gw_bridge_flush(s->bridge);
}

static void gw_server__on_signal(uv_signal_t *h, int signum) {
  gw_server *s = h->data;
  if (s->shutting_down) return;
  log_info("shutdown_begin", "signal=%d open=%zu", signum, s->n_conns);
  s->shutting_down = 1;
  s->shutdown_start = uv_now(s->loop);
  s->shutdown_deadline = s->shutdown_start + (uint64_t)s->cfg->shutdown_timeout;
  uv_close((uv_handle_t *)&s->listener, NULL);
  s->drain_ids = gw_conn_ids(s, &s->drain_n);
  s->drain_done = 0;
  gw_server__drain(s, s->shutdown_start);
}

/* ---- SIGHUP: reload -------------------------------------------------------- */

/* Reads the settings again into next; NULL when they are valid, else why
 * not (config.c prints the details to stderr). */
static const char *gw_server__reread(const gw_server *s, gw_config *next,
                                     log_level *level) {
  char why[160];
  /* The command line as main saved it: the flags still win over the file. */
  if (cfg_reload(s->cmdline, gw_config_opts, gw_config_n_opts, next, "gatewayd") !=
      CFG_RUN)
    return "invalid settings";
  if (log_level_parse(next->log_level, level) != 0) return "invalid log.level";
  if (gw_http_trusted_check(next->trusted_proxies, why, sizeof(why)) != 0)
    return "invalid gateway.trusted_proxies";
  return NULL;
}

static void gw_server__swap_str(char **a, char **b) {
  char *t = *a;
  *a = *b;
  *b = t;
}

/* Only what each request reads afresh is replaced: the log level, the
 * Origin list, the trusted proxies, the forwarded headers and cookies, the
 * message rate and the limits on subscription changes (an operator
 * throttles a churn without a restart). Sockets, limits
 * sized at start and the broker URL need a restart. Logs go to stderr,
 * which has nothing to reopen. Nothing is dropped either way. */
static void gw_server__on_hup(uv_signal_t *h, int signum) {
  (void)signum;
  gw_server *s = h->data;
  gw_config next;
  log_level level = LOG_LEVEL_INFO;
  memset(&next, 0, sizeof(next)); /* cfg_free-able whatever fails */
  const char *why = gw_server__reread(s, &next, &level);
  if (why) {
    log_warn("reload_failed", "reason=\"%s\" kept=running_settings", why);
  } else {
    log_set_level(level);
    gw_server__swap_str(&s->cfg->log_level, &next.log_level);
    gw_server__swap_str(&s->cfg->allowed_origins, &next.allowed_origins);
    gw_server__swap_str(&s->cfg->trusted_proxies, &next.trusted_proxies);
    gw_server__swap_str(&s->cfg->forward_headers, &next.forward_headers);
    gw_server__swap_str(&s->cfg->forward_cookies, &next.forward_cookies);
    s->cfg->max_rate = next.max_rate;
    s->cfg->group_changes_rate = next.group_changes_rate;
    s->cfg->group_changes_burst = next.group_changes_burst;
    s->cfg->max_bind_backlog = next.max_bind_backlog;
    log_info("reload", "level=%s allowed_origins=\"%s\" trusted_proxies=\"%s\" "
             "max_rate=%ld group_changes_rate=%ld group_changes_burst=%ld "
             "max_bind_backlog=%ld open=%zu forward_headers=\"%s\" forward_cookies=\"%s\"",
             s->cfg->log_level, s->cfg->allowed_origins, s->cfg->trusted_proxies,
             s->cfg->max_rate, s->cfg->group_changes_rate, s->cfg->group_changes_burst,
             s->cfg->max_bind_backlog, s->n_conns, s->cfg->forward_headers,
             s->cfg->forward_cookies);
  }
  cfg_free(gw_config_opts, gw_config_n_opts, &next);
}

/* The processes of one gatewayd (gw_supervisor.c) each listen on the same
 * port; the kernel spreads new connections over them by a hash of the
 * client's address and port. A standalone gatewayd does not set it, so a
 * second one started by mistake fails with EADDRINUSE instead of silently
 * taking half the clients. libuv 1.44 has no flag for it, hence by hand. */
static int gw_server__reuse_port(uv_tcp_t *t) {
  uv_os_fd_t fd;
  int on = 1;
  if (uv_fileno((uv_handle_t *)t, &fd) != 0) return UV_EBADF;
  return setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) == 0 ? 0 : -errno;
}

static int gw_server__listen(gw_server *s) {
  struct sockaddr_storage ss;
  socklen_t sslen;
  if (hostport_listen_addr(s->cfg->listen, &ss, &sslen) != 0) {
    log_error("listen_invalid", "listen=%s", s->cfg->listen);
    return -1;
  }
  int rc = uv_tcp_init_ex(s->loop, &s->listener, ss.ss_family);
  s->listener.data = s;
  if (rc == 0 && s->cfg->process_index >= 0) rc = gw_server__reuse_port(&s->listener);
  if (rc == 0) rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&s->listener, (int)s->cfg->backlog,
                   gw_server__on_connection);
  if (rc != 0) {
    log_error("listen_failed", "listen=%s error=%s", s->cfg->listen, uv_strerror(rc));
    return -1;
  }
  log_info("listening", "listen=%s", s->cfg->listen);
  return 0;
}

static int gw_server__tls(gw_server *s) {
  char err[256];
  if (!s->cfg->tls_key[0]) {
    log_error("tls_invalid", "reason=\"gateway.tls_cert needs gateway.tls_key\"");
    return -1;
  }
  s->tls = gw_tls_new(s->cfg->tls_cert, s->cfg->tls_key, err, sizeof(err));
  s->plain_buf = malloc(GW_CONN_READ_BUF);
  if (!s->tls || !s->plain_buf) {
    log_error("tls_invalid", "reason=\"%s\"", s->tls ? "out of memory" : err);
    return -1;
  }
  log_info("tls_enabled", "cert=%s", s->cfg->tls_cert);
  return 0;
}

int gw_server_init(gw_server *s, uv_loop_t *loop, gw_config *cfg,
                   const cfg_cmdline *cmdline) {
  memset(s, 0, sizeof(*s));
  s->loop = loop;
  s->cfg = cfg;
  s->cmdline = cmdline;
  s->stats.partial.limit = (uint64_t)cfg->max_partial_total;
  s->read_buf = malloc(GW_CONN_READ_BUF);
  if (cfg->tls_cert[0] && gw_server__tls(s) != 0) return -1;
  if (!s->read_buf || gw_conntab_init(&s->conns) != 0 ||
      gw_clients_init(&s->clients) != 0 ||
      gw_group_table_init(&s->groups, gw_dispatch_bind, gw_dispatch_unbind, s) != 0)
    return -1;
  gw_hist_init(&s->hist, (size_t)cfg->history.memory);
  if (cfg->compression.enabled &&
      gw_deflate_init(&s->deflate, (int)cfg->compression.level,
                      (size_t)cfg->compression.min_size) != 0)
    return -1;
  gw_group_set_linger(&s->groups, (uint64_t)cfg->group_linger,
                      (size_t)cfg->max_lingering_groups);
  gw_bridge_config bc = {
      .url = cfg->amqp.url,
      .heartbeat_s = (int)((cfg->amqp.heartbeat + 999) / 1000),
      .queue_ttl_ms = cfg->amqp.queue_ttl,
      .queue_max_length = cfg->amqp.queue_max_length,
      .queue_max_bytes = cfg->amqp.queue_max_bytes,
      .queue_quorum = mq_queue_type_parse(cfg->amqp.queue_type) == 1,
      .max_backlog = (size_t)cfg->amqp_max_backlog,
      .batch = (int)cfg->amqp_batch,
      .history = cfg->history.enabled,
      .stream = {.name = cfg->history.stream,
                 .max_age_s = (cfg->history.max_age + 999) / 1000,
                 .max_bytes = cfg->history.max_bytes,
                 .segment_bytes = cfg->history.segment_bytes,
                 .replicas = cfg->history.replicas},
      .preload_ms = cfg->history.preload,
      .prefetch = cfg->history.prefetch,
      .resume_timeout_ms = cfg->history.resume_timeout,
      .check_interval_ms = cfg->history.check_interval,
      .ring_fd = cfg->process_index >= 0 ? (int)cfg->history.shared_fd : -1,
      .ring_slot = (int)cfg->process_index,
  };
  s->bridge = gw_bridge_start(loop, &bc, gw_dispatch_events, s);
  if (!s->bridge) return -1;
  if (gw_server__listen(s) != 0) return -1;
  uv_timer_init(loop, &s->tick);
  s->tick.data = s;
  uv_timer_start(&s->tick, gw_server__on_tick, GW_TICK_MS, GW_TICK_MS);
  uv_timer_init(loop, &s->later_timer);
  s->later_timer.data = s;
  uv_prepare_init(loop, &s->before_poll);
  s->before_poll.data = s;
  uv_prepare_start(&s->before_poll, gw_server__on_prepare);
  uv_check_init(loop, &s->flush);
  s->flush.data = s;
  uv_check_start(&s->flush, gw_server__on_check);
  uv_signal_init(loop, &s->sigterm);
  uv_signal_init(loop, &s->sigint);
  s->sigterm.data = s->sigint.data = s;
  uv_signal_start(&s->sigterm, gw_server__on_signal, SIGTERM);
  uv_signal_start(&s->sigint, gw_server__on_signal, SIGINT);
  uv_signal_init(loop, &s->sighup);
  s->sighup.data = s;
  uv_signal_start(&s->sighup, gw_server__on_hup, SIGHUP);
  /* Last, so that a failure here finds every handle above initialized. */
  return gw_admin_start(&s->admin, s, cfg->metrics_listen);
}

/* Closes h if init got as far as setting it up (gw_server_init zeroes the
 * struct first, so an untouched handle has no type) and nobody closed it. */
static void gw_server__close_handle(void *handle) {
  uv_handle_t *h = handle;
  if (h->type != UV_UNKNOWN_HANDLE && !uv_is_closing(h)) uv_close(h, NULL);
}

/* Safe after a partial gw_server_init, and safe to call twice. */
void gw_server_close(gw_server *s) {
  if (s->closed) return;
  s->closed = 1;
  gw_server__close_handle(&s->tick);
  gw_server__close_handle(&s->flush);
  gw_server__close_handle(&s->later_timer);
  gw_server__close_handle(&s->before_poll);
  gw_server__close_handle(&s->sigterm);
  gw_server__close_handle(&s->sigint);
  gw_server__close_handle(&s->sighup);
  gw_admin_close(&s->admin);
  gw_server__close_handle(&s->listener);
  /* Whatever is still open at the deadline is cut off; its disconnect is
   * queued before the bridge's last flush. */
  gw_conn_destroy_all(s);
  if (s->bridge) gw_bridge_stop(s->bridge);
  s->bridge = NULL;
  free(s->drain_ids);
  s->drain_ids = NULL;
}

void gw_server_free(gw_server *s) {
  assert(s->closed && !s->bridge); /* gw_server_close ran */
  assert(s->n_conns == 0); /* gw_conn_destroy_all ran */
  /* Every connection's close callback gave its partial message back (the
   * loop ran them): the budget is the sum over connections, now none. */
  assert(s->stats.partial.used == 0);
  gw_group_table_free(&s->groups);
  gw_hist_free(&s->hist); /* before the deflater: nothing compresses after */
  gw_deflate_free(&s->deflate);
  gw_expiry_free(&s->expiries);
  gw_expiry_free(&s->rechecks);
  gw_conntab_free(&s->conns);
  gw_clients_free(&s->clients);
  free(s->read_buf);
  free(s->plain_buf);
  free(s->later);
  s->later = NULL;
  s->later_n = s->later_cap = 0;
  gw_tls_free(s->tls);
  s->read_buf = s->plain_buf = NULL;
  s->tls = NULL;
}
