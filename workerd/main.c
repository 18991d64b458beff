/*
 * main.c - workerd, the runworker: settings, start-up checks, signals, then
 * wk_consumer_run until SIGTERM or SIGINT.
 *
 * Owns: the settings table, the order of start-up (settings, group policy,
 * auth, broker) and the exit status (0 stopped by a signal, 1 fatal, 2 bad
 * settings). Must not: handle messages (wk_handle) or touch the broker
 * (wk_consumer).
 *
 * Also owns telling systemd how the process is doing (sd_notify; a no-op
 * without NOTIFY_SOCKET): READY=1 once consuming for the first time,
 * WATCHDOG=1 from the consume loop (through wk_consumer's alive hook, so a
 * stuck loop stops the pings), STOPPING=1 on the way out.
 *
 * SIGHUP reloads: the command line is parsed again (the config file and the
 * environment are read afresh; flags still win), and the group policy, the
 * secrets, the token file, the allowed origins, max_groups, echo and the
 * log level are replaced
 * between two messages. An invalid new configuration changes nothing: the
 * reason is logged and the running settings stay. The broker URL, queue
 * limits, prefetch and metrics address need a restart.
 */
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "chan_names.h"
#include "config.h"
#include "hostport.h"
#include "log.h"
#include "mq_conn.h"
#include "wk_auth.h"
#include "wk_cache.h"
#include "wk_hook.h"
#include "wk_consumer.h"
#include "wk_handle.h"
#include "wk_metrics.h"
#include "wk_policy.h"

typedef struct wk_main_conf {
  mq_settings amqp;
  char *log_level;
  char *secret;
  char *secret_previous;
  char *token_file;
  long leeway_ms;
  long prefetch;
  long max_groups;
  int echo;
  char *metrics_listen;
  long max_deliveries;
  char *allowed_origins;
  char *connect_url;
  char *subscribe_url;
  long hook_timeout_ms;
  long hook_connect_timeout_ms;
  long hook_max_in_flight;
  long hook_max_response;
  long hook_breaker_failures;
  long hook_breaker_cooldown_ms;
  long grant_cache_max;
  long grant_cache_ttl_ms;
  long grant_cache_deny_ttl_ms;
  long recheck_interval_ms;
} wk_main_conf;

#define WK_OPT(sec, key, type, def, lo, hi, fl, field, help) \
  {sec, key, type, def, lo, hi, fl, offsetof(wk_main_conf, field), help}

/* [amqp] and [log] are the rows every program shares (mq_conn.h, log.h). */
static const cfg_opt wk_main_opts[] = {
    MQ_CFG_OPTS(wk_main_conf, amqp)
    LOG_CFG_OPT(wk_main_conf, log_level)
    WK_OPT("auth", "secret", CFG_STR, NULL, 0, 0, CFG_SECRET, secret,
           "HS256 key the backend signs tokens with, at least 32 bytes"),
    WK_OPT("auth", "secret_previous", CFG_STR, NULL, 0, 0, CFG_SECRET,
           secret_previous, "the key before the last rotation, still accepted"),
    WK_OPT("auth", "token_file", CFG_STR, NULL, 0, 0, 0, token_file,
           "development: static tokens, lines \"TOKEN USERID [OBJECTS-JSON]\""),
    /* gatewayd's key, read here too: one list for both programs. */
    WK_OPT("gateway", "allowed_origins", CFG_STR, "", 0, 0, CFG_SHARED,
           allowed_origins,
           "comma-separated origins a token sent as a cookie may be used "
           "from (the same key as gatewayd's); empty: the Host's own"),
    WK_OPT("auth", "leeway", CFG_MS, "30s", 0, 3600000, 0, leeway_ms,
           "clock skew allowed on a token's exp and nbf"),
    WK_OPT("worker", "prefetch", CFG_INT, "64", 1, 65535, 0, prefetch,
           "unacked deliveries the broker may push, per websocket.* queue"),
    WK_OPT("worker", "max_groups", CFG_INT, "100", 1, CHAN_GROUPS_MAX, 0,
           max_groups, "entries one subscription request may name"),
    WK_OPT("worker", "echo", CFG_BOOL, "false", 0, 0, 0, echo,
           "echo messages on " WK_HANDLE_ECHO_PATH
           " back unchanged (conformance tests)"),
    /* Off by default: several workers usually share a host, and each needs
     * its own port (docs/OPERATIONS.md, "Metrics", shows one per instance). */
    WK_OPT("worker", "metrics_listen", CFG_STR, "", 0, 0, 0, metrics_listen,
           "address:port of /metrics, /healthz, /readyz (empty: off)"),
    WK_OPT("worker", "max_deliveries", CFG_INT, "5", 1, 1000, 0,
           max_deliveries,
           "deliveries of one message (a worker crashed on it) before it "
           "goes to " CHAN_QUEUE_DEAD),
    WK_OPT("auth", "connect_url", CFG_STR, "", 0, 0, 0, connect_url,
           "http(s) URL of the application's connect hook: who connects "
           "(after a token, when secrets are set too); empty: tokens only"),
    WK_OPT("auth", "subscribe_url", CFG_STR, "", 0, 0, 0, subscribe_url,
           "http(s) URL of the application's subscribe hook: which object "
           "ids a user may see; empty: the grants alone"),
    WK_OPT("auth", "hook_timeout", CFG_MS, "2s", 10, 60000, 0,
           hook_timeout_ms,
           "a hook call's whole time; past it: 503, or an error reply"),
    WK_OPT("auth", "hook_connect_timeout", CFG_MS, "1500ms", 10, 60000, 0,
           hook_connect_timeout_ms,
           "time to open a connection (TCP, TLS) to the application; over "
           "1 s, so that one lost SYN (a full listen backlog) is retried"),
    WK_OPT("auth", "hook_max_in_flight", CFG_INT, "32", 1, 10000, 0,
           hook_max_in_flight,
           "hook calls out at once; past it a delivery needing one is answered "
           "as if the application had failed (503, or the unavailable error)"),
    WK_OPT("auth", "hook_max_response", CFG_BYTES, "64KiB", 256, 16777216, 0,
           hook_max_response, "bytes of a hook answer; longer ones fail"),
    WK_OPT("auth", "hook_breaker_failures", CFG_INT, "5", 1, 1000, 0,
           hook_breaker_failures,
           "failed hook calls in a row that open the circuit breaker"),
    WK_OPT("auth", "hook_breaker_cooldown", CFG_MS, "5s", 100, 600000, 0,
           hook_breaker_cooldown_ms,
           "an open breaker fails calls at once for this long, then lets "
           "one probe through"),
    WK_OPT("auth", "grant_cache_max", CFG_INT, "100000", 0, 10000000, 0,
           grant_cache_max,
           "(user, channel, id) answers of the subscribe hook kept; 0: no "
           "cache"),
    WK_OPT("auth", "grant_cache_ttl", CFG_MS, "60s", 0, 86400000, 0,
           grant_cache_ttl_ms, "how long an allowed id is kept"),
    WK_OPT("auth", "recheck_interval", CFG_MS, "60s", 0, 86400000, 0,
           recheck_interval_ms,
           "how often the subscribe hook is asked again about the ids an "
           "open connection holds by its grant (a revoked one is left); "
           "whole seconds, 0: never"),
    WK_OPT("auth", "grant_cache_deny_ttl", CFG_MS, "10s", 0, 86400000, 0,
           grant_cache_deny_ttl_ms,
           "how long a refused id is kept (shorter: a new grant shows "
           "sooner)"),
};
#define WK_MAIN_N_OPTS (sizeof wk_main_opts / sizeof wk_main_opts[0])

static const char wk_main_usage[] =
    "[SETTINGS]\n\n"
    "Consumes websocket.connect/receive/disconnect, authenticates, applies "
    "the\ngroup policy and replies to the gateway. The config file's "
    "[groups] section\nmaps each channel to open, object or user "
    "(docs/PROTOCOL.md); without one,\nAWX's channels apply.";

static volatile sig_atomic_t wk_main_stop;
static volatile sig_atomic_t wk_main_reload;

static void wk_main__on_signal(int sig) {
  (void)sig;
  wk_main_stop = 1;
}

static void wk_main__on_hup(int sig) {
  (void)sig;
  wk_main_reload = 1;
}

/* No SA_RESTART: a signal must cut the backoff sleep short. */
static void wk_main__signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = wk_main__on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sa.sa_handler = wk_main__on_hup;
  sigaction(SIGHUP, &sa, NULL);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL);
}

/*
 * The --config FILE (or --config=FILE) that cfg_load will read, found the
 * same way: flags before a "--". wk_policy reads its [groups] section from
 * the same file, so config.c needs no knowledge of the policy.
 */
static const char *wk_main__config_path(int argc, char **argv) {
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) break;
    if (strncmp(argv[i], "--config=", 9) == 0) path = argv[i] + 9;
    else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
      path = argv[++i];
  }
  return path;
}

/* Builds what wk_handle needs; 2 on bad settings (reported), else 0. */
static int wk_main__prepare(const wk_main_conf *conf, const char *path,
                           wk_policy *policy, wk_auth **auth) {
  char err[512];
  struct sockaddr_storage ss;
  socklen_t sslen;
  if (conf->metrics_listen[0] &&
      hostport_listen_addr(conf->metrics_listen, &ss, &sslen) != 0) {
    fprintf(stderr, "workerd: worker.metrics_listen: " HOSTPORT_EXPECTED
                    ", got '%s'\n", conf->metrics_listen);
    return 2;
  }
  if (mq_settings_check(conf->amqp.url, conf->amqp.queue_type, err,
                        sizeof err) != 0) {
    fprintf(stderr, "workerd: %s\n", err);
    return 2;
  }
  const char *urls[2] = {conf->connect_url, conf->subscribe_url};
  for (int i = 0; i < 2; i++) {
    if (urls[i][0] && strncmp(urls[i], "http://", 7) != 0 &&
        strncmp(urls[i], "https://", 8) != 0) {
      fprintf(stderr, "workerd: auth.%s: expected an http:// or https:// "
                      "URL\n", i ? "subscribe_url" : "connect_url");
      return 2;
    }
  }
  if (wk_policy_load(policy, path, err, sizeof err) != 0) {
    fprintf(stderr, "workerd: %s\n", err);
    return 2;
  }
  /* With a connect hook, tokens are optional: no secret and no token
   * file means the application alone admits. */
  int tokens = (conf->secret && conf->secret[0]) ||
               (conf->secret_previous && conf->secret_previous[0]) ||
               (conf->token_file && conf->token_file[0]);
  *auth = NULL;
  if (!tokens && conf->connect_url[0]) return 0;
  *auth = wk_auth_new(conf->secret, conf->secret_previous, conf->token_file,
                      (int)(conf->leeway_ms / 1000), err, sizeof err);
  if (!*auth) {
    fprintf(stderr, "workerd: %s\n", err);
    wk_policy_free(policy);
    return 2;
  }
  return 0;
}

static wk_hook_conf wk_main__hook_conf(const wk_main_conf *c) {
  wk_hook_conf h = {
      .timeout_ms = c->hook_timeout_ms,
      .connect_timeout_ms = c->hook_connect_timeout_ms,
      .max_in_flight = (unsigned)c->hook_max_in_flight,
      .max_response = (size_t)c->hook_max_response,
      .breaker_threshold = (unsigned)c->hook_breaker_failures,
      .breaker_cooldown_ms = c->hook_breaker_cooldown_ms};
  return h;
}

static wk_cache *wk_main__cache(const wk_main_conf *c) {
  return wk_cache_new((size_t)c->grant_cache_max,
                      (uint64_t)c->grant_cache_ttl_ms,
                      (uint64_t)c->grant_cache_deny_ttl_ms);
}

/* systemd notification state; enabled only under systemd. */
typedef struct wk_notify {
  int enabled, ready;
  uint64_t every_ms; /* least time between watchdog pings, 0: no watchdog */
  uint64_t last_ms;
} wk_notify;

static uint64_t wk_main_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* wk_consumer's alive hook. Busy workers call it per message: it costs a
 * clock read, and a notify only once per half watchdog period. */
static void wk_main__alive(void *arg, int consuming) {
  wk_notify *n = arg;
  if (!n->enabled) return;
  if (consuming && !n->ready) {
    n->ready = 1;
    sd_notify(0, "READY=1\nSTATUS=consuming websocket.connect/receive/disconnect");
  }
  if (!n->every_ms) return;
  uint64_t now = wk_main_now_ms();
  if (now - n->last_ms < n->every_ms) return;
  n->last_ms = now;
  sd_notify(0, "WATCHDOG=1");
}

static void wk_main__notify_init(wk_notify *n) {
  const char *sock = getenv("NOTIFY_SOCKET");
  uint64_t usec = 0;
  memset(n, 0, sizeof *n);
  if (!sock || !*sock) return;
  n->enabled = 1;
  /* A quarter of the period: the loop calls us only every poll interval
   * (up to 500 ms), so a ping can come that much after it is due, and
   * sd_watchdog_enabled(3) wants one at least every half period. */
  if (sd_watchdog_enabled(0, &usec) > 0) n->every_ms = usec / 4000 ? usec / 4000 : 1;
}

/* auth.recheck_interval in whole seconds (the reply's "recheck" is Unix
 * seconds): rounded up, so 500ms is 1 s, not never. */
static long long wk_main__recheck_s(const wk_main_conf *c) {
  return (c->recheck_interval_ms + 999) / 1000;
}

/* What a reload replaces. ctx points at *policy and *auth, which are
 * main()'s, so main frees whatever is current at exit. */
typedef struct wk_main_live {
  wk_handle_ctx ctx;
  wk_policy *policy;
  wk_auth **auth;
  const char *path;
  const cfg_cmdline *cmdline; /* main's, as started: parsed again */
  char *origins; /* ctx.allowed_origins after a reload (owned), else NULL */
  char *connect_url, *subscribe_url; /* likewise */
  wk_hook *hook;                     /* owned */
  wk_cache *cache;                   /* owned, ctx.cache */
} wk_main_live;

/* Parses the saved command line into next (caller cfg_frees it) and builds
 * its policy and auth. NULL on success, else why not (details on stderr,
 * where config.c and wk_main__prepare print them). */
static const char *wk_main__reread(const wk_main_live *live, wk_main_conf *next,
                                  wk_policy *policy, wk_auth **auth,
                                  log_level *level) {
  if (cfg_reload(live->cmdline, wk_main_opts, WK_MAIN_N_OPTS, next,
                 "workerd") != CFG_RUN)
    return "invalid settings";
  if (log_level_parse(next->log_level, level) != 0) return "invalid log.level";
  if (wk_main__prepare(next, live->path, policy, auth) != 0)
    return "invalid group policy, secrets or token file";
  return NULL;
}

/* wk_consumer's reload hook (SIGHUP), run between two messages. */
static void wk_main__reload_now(void *arg) {
  wk_main_live *live = arg;
  wk_main_conf next;
  wk_policy policy;
  wk_auth *auth = NULL;
  log_level level = LOG_LEVEL_INFO;
  memset(&next, 0, sizeof next); /* cfg_free-able whatever fails */
  const char *why = wk_main__reread(live, &next, &policy, &auth, &level);
  if (why) {
    log_warn("reload_failed", "reason=\"%s\" kept=running_settings", why);
    cfg_free(wk_main_opts, WK_MAIN_N_OPTS, &next);
    return;
  }
  char *origins = strdup(next.allowed_origins ? next.allowed_origins : "");
  char *curl = strdup(next.connect_url), *surl = strdup(next.subscribe_url);
  wk_cache *cache = wk_main__cache(&next);
  if (!origins || !curl || !surl || !cache) {
    free(origins);
    free(curl);
    free(surl);
    wk_cache_free(cache);
    log_warn("reload_failed", "reason=\"out of memory\" kept=running_settings");
    wk_policy_free(&policy);
    wk_auth_free(auth);
    cfg_free(wk_main_opts, WK_MAIN_N_OPTS, &next);
    return;
  }
  free(live->origins);
  live->origins = origins;
  live->ctx.allowed_origins = origins;
  free(live->connect_url);
  free(live->subscribe_url);
  live->ctx.connect_url = live->connect_url = curl;
  live->ctx.subscribe_url = live->subscribe_url = surl;
  /* Calls in flight copied what they need; the cache starts empty. */
  wk_cache_free(live->cache);
  live->ctx.cache = live->cache = cache;
  wk_hook_conf hc = wk_main__hook_conf(&next);
  wk_hook_set_conf(live->hook, &hc);
  wk_policy_free(live->policy);
  *live->policy = policy;
  wk_auth_free(*live->auth);
  *live->auth = auth;
  live->ctx.auth = auth;
  live->ctx.max_groups = (size_t)next.max_groups;
  live->ctx.echo = next.echo;
  live->ctx.recheck_s = wk_main__recheck_s(&next);
  log_set_level(level);
  log_info("reload", "channels=%zu max_groups=%ld echo=%d level=%s "
           "allowed_origins=\"%s\" secret=%d secret_previous=%d token_file=%d "
           "connect_hook=%d subscribe_hook=%d",
           policy.n, next.max_groups, next.echo, next.log_level, origins,
           next.secret && next.secret[0], next.secret_previous &&
           next.secret_previous[0], next.token_file && next.token_file[0],
           curl[0] != 0, surl[0] != 0);
  cfg_free(wk_main_opts, WK_MAIN_N_OPTS, &next);
}

static int wk_main__run(const wk_main_conf *conf, const char *path,
                       const cfg_cmdline *cmdline, wk_policy *policy,
                       wk_auth **auth) {
  wk_hook_conf hc = wk_main__hook_conf(conf);
  wk_main_live live = {
      .ctx = {*auth, policy, (size_t)conf->max_groups, conf->echo,
              conf->allowed_origins, conf->connect_url, conf->subscribe_url,
              NULL},
      .policy = policy, .auth = auth, .path = path, .cmdline = cmdline};
  live.ctx.recheck_s = wk_main__recheck_s(conf);
  live.hook = wk_hook_new(&hc);
  live.ctx.cache = live.cache = wk_main__cache(conf);
  if (!live.hook || !live.cache) {
    wk_hook_free(live.hook);
    wk_cache_free(live.cache);
    fprintf(stderr, "workerd: cannot start the hook client\n");
    return 1;
  }
  wk_notify notify;
  wk_main__notify_init(&notify);
  wk_consumer_conf cc = {
      .url = conf->amqp.url,
      .heartbeat_s = (int)((conf->amqp.heartbeat + 999) / 1000),
      .limits = mq_queue_limits_of(&conf->amqp),
      .prefetch = (int)conf->prefetch,
      .alive = wk_main__alive,
      .alive_arg = &notify,
      .max_deliveries = conf->max_deliveries,
      .reload = &wk_main_reload,
      .on_reload = wk_main__reload_now,
      .reload_arg = &live,
      .hook = live.hook,
  };
  log_info("worker_start", "channels=%zu prefetch=%ld max_groups=%ld echo=%d "
           "tokens=%d connect_hook=%d subscribe_hook=%d",
           policy->n, conf->prefetch, conf->max_groups, conf->echo,
           *auth != NULL, conf->connect_url[0] != 0,
           conf->subscribe_url[0] != 0);
  wk_main__signals();
  if (wk_metrics_start(conf->metrics_listen) != 0) return 1;
  wk_consumer_run(&cc, &live.ctx, &wk_main_stop);
  wk_metrics_stop();
  free(live.origins);
  free(live.connect_url);
  free(live.subscribe_url);
  wk_hook_free(live.hook);
  wk_cache_free(live.cache);
  if (notify.enabled) sd_notify(0, "STOPPING=1");
  log_info("worker_stop", "reason=signal");
  return 0;
}

int main(int argc, char **argv) {
  wk_main_conf conf;
  wk_policy policy;
  wk_auth *auth = NULL;
  log_level level;
  /* Read before cfg_load, which removes the flags from argv. */
  const char *path = wk_main__config_path(argc, argv);
  cfg_cmdline cmdline;
  if (cfg_cmdline_save(&cmdline, argc, argv) != 0) return 1;
  cfg_result cr = cfg_load(wk_main_opts, WK_MAIN_N_OPTS, &conf, "workerd",
                           wk_main_usage, &argc, argv);
  if (cr == CFG_EXIT_OK) { /* --help */
    cfg_free(wk_main_opts, WK_MAIN_N_OPTS, &conf);
    cfg_cmdline_free(&cmdline);
    return 0;
  }
  int rc = cr == CFG_EXIT_ERROR ? 2 : 0;
  if (rc == 0 && argc > 1) {
    fprintf(stderr, "workerd: unexpected argument: %s\n", argv[1]);
    rc = 2;
  }
  if (rc == 0 && log_level_parse(conf.log_level, &level) != 0) {
    fprintf(stderr, "workerd: --log.level: expected debug, info, warn or "
                    "error\n");
    rc = 2;
  }
  /* --check-config also checks the policy and the token file. */
  int prepared = 0;
  if (rc == 0) {
    rc = wk_main__prepare(&conf, path, &policy, &auth);
    prepared = rc == 0;
  }
  if (rc == 0 && cr == CFG_CHECKED) printf("config ok\n");
  if (rc == 0 && cr == CFG_RUN) {
    log_init("workerd", level);
    rc = wk_main__run(&conf, path, &cmdline, &policy, &auth);
  }
  if (prepared) { /* prepare succeeded: both were built (auth may be
                     NULL: the connect hook alone admits) */
    wk_auth_free(auth);
    wk_policy_free(&policy);
  }
  cfg_free(wk_main_opts, WK_MAIN_N_OPTS, &conf);
  cfg_cmdline_free(&cmdline);
  return rc;
}
