/*
 * gw_supervisor.c - gatewayd with gateway.processes > 1: starts that many
 * copies of this program, each a complete gateway with its own loop, AMQP
 * connection, reply queue, connections and groups, all accepting on one
 * port through SO_REUSEPORT (gw_server.c). Nothing is shared between them,
 * so nothing is locked; the broker does the fanout across processes, since
 * each one binds its own queue to the groups its clients joined. Processes
 * rather than threads because the open-file limit is per process: six
 * children hold six times the sockets one process may.
 *
 * Owns: the children (start, restart after a crash or a stuck loop, stop),
 * forwarding SIGTERM/SIGINT/SIGHUP to them, and speaking for them to
 * systemd: READY=1 once every child is ready, WATCHDOG=1 while this loop
 * turns, STOPPING=1. Children report on a private notify socket with the
 * same sd_notify protocol they would use under systemd (main.c), so a child
 * runs exactly as a standalone gatewayd does.
 * Must not: accept connections, talk to the broker or hold client state; a
 * child's crash must not take the supervisor or its siblings down.
 *
 * With the history shared (history.shared, gw_ring.h) it also owns the
 * ring: made before the first child, handed to every child (restarted ones
 * too) at fd GW_RING_FD with the eventfds after it, and orphaned when child
 * 0, its writer, exits, so that the others leave it at once.
 *
 * Costs: a crashed child's clients are dropped and reconnect (to any
 * process: the kernel spreads new connections over the live listeners).
 * Metrics are per process (child i on the metrics port + i); nothing adds
 * them up here.
 */
#define _GNU_SOURCE /* struct ucred */
#include "gw_supervisor.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>
#include <uv.h>

#include "backoff.h"
#include "gw_ring.h"
#include "hostport.h"
#include "log.h"

extern char **environ;

#define GW_SUP_TICK_MS 250
#define GW_SUP_STR_(x) #x
#define GW_SUP_STR(x) GW_SUP_STR_(x)
/* Restart waits (common/backoff): the first is 250-500 ms, each next one
 * up to twice as long, never over 30 s. */
#define GW_SUP_BACKOFF_MIN_MS 500
#define GW_SUP_BACKOFF_MAX_MS 30000
/* A child that ran this long since it last started gets the short backoff
 * again: it was a crash, not a crash loop. */
#define GW_SUP_STABLE_MS 10000

typedef struct gw_supervisor gw_supervisor;

typedef struct gw_child {
  gw_supervisor *sup;
  int index;
  uv_process_t proc;
  uv_timer_t restart;  /* waits out the backoff before the next start */
  int running;         /* proc is a process we have not reaped */
  int ready;           /* said READY=1 since its last start */
  int ever_ready;      /* said it once, in any generation */
  int64_t exit_status;
  int term_signal;
  uint64_t started_at, last_ping;
  backoff restart_wait; /* between restarts; reset once it runs stably */
} gw_child;

struct gw_supervisor {
  uv_loop_t *loop;
  const gw_config *cfg;
  int n;
  gw_child *children;
  char **child_argv;    /* built once; slot index_arg is rewritten per child */
  int index_arg, metrics_arg;
  gw_ring ring;         /* history.shared: the children's shared stream (memfd -1: none) */
  char exe[PATH_MAX];
  char **env;           /* environ with our notify socket instead of systemd's */
  char notify_env[128], watchdog_env[48];
  int notify_fd;
  uv_poll_t notify_poll;
  uv_timer_t tick;
  uv_signal_t sigterm, sigint, sighup;
  int stopping, finished, ready_sent, rc;
};

static void gw_supervisor__start(gw_child *c);
static void gw_supervisor__on_restart(uv_timer_t *t) { gw_supervisor__start(t->data); }

int gw_supervisor_count(const gw_config *cfg) {
  if (cfg->process_index >= 0) return 1;
  if (cfg->processes > 0) return (int)cfg->processes;
  unsigned cores = uv_available_parallelism();
  return cores > 64 ? 64 : cores < 1 ? 1 : (int)cores;
}

int gw_supervisor_metrics_addr(const char *spec, int i, char *out, size_t n) {
  hostport hp;
  assert(i >= 0 && i < 65536);
  if (!spec[0]) {
    if (n) out[0] = '\0';
    return 0;
  }
  if (hostport_parse(spec, &hp) != 0) return -1;
  if (hp.port > 0) hp.port += (unsigned)i;
  if (hp.port > 65535) return -1;
  return hostport_format(&hp, out, n) < 0 ? -1 : 0;
}

/* ---- the children's command line and environment ------------------------ */

/* exe, the original flags, then ours: last, so that they win over a
 * --gateway.metrics_listen the operator gave. A bare "--" is dropped: it
 * would turn our flags into positional arguments. */
static int gw_supervisor__argv(gw_supervisor *s, int argc, char **argv) {
  s->child_argv = calloc((size_t)argc + 4, sizeof(char *));
  if (!s->child_argv) return -1;
  int k = 0;
  s->child_argv[k++] = s->exe;
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--") != 0) s->child_argv[k++] = argv[i];
  s->index_arg = k++;
  s->metrics_arg = s->cfg->metrics_listen[0] ? k++ : -1;
  if (s->ring.memfd >= 0) s->child_argv[k++] = "--history.shared_fd=" GW_SUP_STR(GW_RING_FD);
  s->child_argv[k] = NULL;
  for (int i = 0; i < k; i++)
    if ((i == s->index_arg || i == s->metrics_arg) &&
        !(s->child_argv[i] = calloc(1, 160)))
      return -1;
  return 0;
}

static int gw_supervisor__is_notify_var(const char *v) {
  return strncmp(v, "NOTIFY_SOCKET=", 14) == 0 || strncmp(v, "WATCHDOG_USEC=", 14) == 0 ||
         strncmp(v, "WATCHDOG_PID=", 13) == 0;
}

static int gw_supervisor__env(gw_supervisor *s) {
  size_t n = 0;
  while (environ[n]) n++;
  s->env = calloc(n + 3, sizeof(char *));
  if (!s->env) return -1;
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (!gw_supervisor__is_notify_var(environ[i])) s->env[k++] = environ[i];
  s->env[k++] = s->notify_env;
  /* A child pings from its loop every 250 ms whatever this says; the value
   * only makes sd_watchdog_enabled() true there. */
  snprintf(s->watchdog_env, sizeof s->watchdog_env, "WATCHDOG_USEC=%llu",
           (unsigned long long)(s->cfg->process_watchdog > 0 ? s->cfg->process_watchdog
                                                               : 600000) * 1000ull);
  s->env[k++] = s->watchdog_env;
  s->env[k] = NULL;
  return 0;
}

/* ---- the private notify socket ------------------------------------------- */

/* An abstract socket: no file to clean up, and nothing to make writable in
 * the systemd sandbox. Messages are trusted only from our children's pids
 * (SO_PASSCRED). */
static int gw_supervisor__notify_open(gw_supervisor *s) {
  s->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s->notify_fd < 0) return -1;
  int on = 1;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  int len = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "wsgw-gatewayd-%d-%u",
                     (int)getpid(), (unsigned)uv_hrtime());
  socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len);
  if (setsockopt(s->notify_fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0 ||
      bind(s->notify_fd, (struct sockaddr *)&sa, salen) != 0)
    return -1;
  snprintf(s->notify_env, sizeof s->notify_env, "NOTIFY_SOCKET=@%s", sa.sun_path + 1);
  return 0;
}

static gw_child *gw_supervisor__child_by_pid(gw_supervisor *s, pid_t pid) {
  for (int i = 0; i < s->n; i++)
    if (s->children[i].running && s->children[i].proc.pid == pid) return &s->children[i];
  return NULL;
}

static void gw_supervisor__on_message(gw_supervisor *s, gw_child *c, char *msg) {
  uint64_t now = uv_now(s->loop);
  char *save = NULL;
  for (char *line = strtok_r(msg, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    if (strcmp(line, "WATCHDOG=1") == 0) {
      c->last_ping = now;
    } else if (strcmp(line, "READY=1") == 0 && !c->ready) {
      c->ready = c->ever_ready = 1;
      c->last_ping = now;
      log_info("process_ready", "index=%d pid=%d", c->index, c->proc.pid);
    }
  }
}

static void gw_supervisor__on_notify(uv_poll_t *h, int status, int events) {
  (void)events;
  gw_supervisor *s = h->data;
  if (status < 0) return;
  for (;;) {
    char buf[512];
    union {
      struct cmsghdr align;
      char space[CMSG_SPACE(sizeof(struct ucred))];
    } ctl;
    struct iovec iov = {buf, sizeof(buf) - 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl,
                        .msg_controllen = sizeof ctl};
    ssize_t got = recvmsg(s->notify_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (got < 0) return; /* EAGAIN: drained */
    buf[got] = '\0';
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    if (!cm || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_CREDENTIALS) continue;
    struct ucred cred;
    memcpy(&cred, CMSG_DATA(cm), sizeof cred);
    gw_child *c = gw_supervisor__child_by_pid(s, cred.pid);
    if (c) gw_supervisor__on_message(s, c, buf);
  }
}

/* ---- children: start, exit, restart -------------------------------------- */

static void gw_supervisor__finish(gw_supervisor *s);

static int gw_supervisor__running(const gw_supervisor *s) {
  int n = 0;
  for (int i = 0; s->children && i < s->n; i++) n += s->children[i].running;
  return n;
}

static void gw_supervisor__stop(gw_supervisor *s, int signum, int rc) {
  if (rc) s->rc = rc;
  if (s->stopping) return;
  s->stopping = 1;
  sd_notify(0, "STOPPING=1");
  log_info("processes_stopping", "signal=%d running=%d", signum, gw_supervisor__running(s));
  for (int i = 0; i < s->n; i++) {
    gw_child *c = &s->children[i];
    uv_timer_stop(&c->restart);
    if (c->running) uv_process_kill(&c->proc, signum);
  }
  gw_supervisor__finish(s);
}

static void gw_supervisor__on_closed(uv_handle_t *h) {
  gw_child *c = h->data;
  gw_supervisor *s = c->sup;
  c->running = 0;
  c->ready = 0;
  if (s->stopping) {
    if (c->exit_status != 0 || c->term_signal != 0) s->rc = 1;
    gw_supervisor__finish(s);
    return;
  }
  if (!c->ever_ready) {
    /* Never served: a setting, the port or the binary is wrong, and
     * starting it again would fail the same way. */
    log_error("process_failed_to_start", "index=%d status=%lld signal=%d", c->index,
              (long long)c->exit_status, c->term_signal);
    gw_supervisor__stop(s, SIGTERM, 1);
    return;
  }
  unsigned wait = backoff_next(&c->restart_wait);
  log_info("process_restart_scheduled", "index=%d in_ms=%u", c->index, wait);
  uv_timer_start(&c->restart, gw_supervisor__on_restart, wait, 0);
}

static void gw_supervisor__on_exit(uv_process_t *p, int64_t status, int signum) {
  gw_child *c = p->data;
  c->exit_status = status;
  c->term_signal = signum;
  if (c->sup->stopping && status == 0 && signum == 0)
    log_info("process_exit", "index=%d pid=%d status=0", c->index, p->pid);
  else
    log_warn("process_exit", "index=%d pid=%d status=%lld signal=%d", c->index, p->pid,
             (long long)status, signum);
  /* The writer of the shared stream is gone: its readers go to the broker
   * now rather than when their watch notices the silence. */
  if (c->index == 0 && c->sup->ring.memfd >= 0) gw_ring_orphan(&c->sup->ring);
  uv_close((uv_handle_t *)p, gw_supervisor__on_closed);
}

static void gw_supervisor__start(gw_child *c) {
  gw_supervisor *s = c->sup;
  if (s->stopping) return;
  snprintf(s->child_argv[s->index_arg], 160, "--gateway.process_index=%d", c->index);
  if (s->metrics_arg >= 0) {
    char addr[128];
    /* main.c refused a base port without room for every index. */
    gw_supervisor_metrics_addr(s->cfg->metrics_listen, c->index, addr, sizeof addr);
    snprintf(s->child_argv[s->metrics_arg], 160, "--gateway.metrics_listen=%s", addr);
  }
  /* stdin closed, stdout and stderr ours; then the ring and its eventfds
   * at the descriptors gw_ring_attach expects. */
  uv_stdio_container_t stdio[GW_RING_FD + 1 + GW_RING_MAX_SLOTS] = {
      {.flags = UV_IGNORE},
      {.flags = UV_INHERIT_FD, .data.fd = 1},
      {.flags = UV_INHERIT_FD, .data.fd = 2}};
  int count = 3;
  if (s->ring.memfd >= 0) {
    stdio[GW_RING_FD] = (uv_stdio_container_t){.flags = UV_INHERIT_FD, .data.fd = s->ring.memfd};
    for (int i = 0; i < s->ring.nslots; i++)
      stdio[GW_RING_FD + 1 + i] =
          (uv_stdio_container_t){.flags = UV_INHERIT_FD, .data.fd = s->ring.efd[i]};
    count = GW_RING_FD + 1 + s->ring.nslots;
  }
  uv_process_options_t o = {.exit_cb = gw_supervisor__on_exit, .file = s->exe,
                            .args = s->child_argv, .env = s->env,
                            .stdio_count = count, .stdio = stdio};
  c->proc.data = c;
  int rc = uv_spawn(s->loop, &c->proc, &o);
  if (rc != 0) {
    /* uv_spawn leaves an initialized handle behind even when it fails. */
    log_error("process_spawn_failed", "index=%d error=%s", c->index, uv_strerror(rc));
    c->running = 1;
    c->exit_status = 127;
    uv_close((uv_handle_t *)&c->proc, gw_supervisor__on_closed);
    return;
  }
  c->running = 1;
  c->started_at = c->last_ping = uv_now(s->loop);
  log_info("process_started", "index=%d pid=%d", c->index, c->proc.pid);
}

/* ---- the tick: readiness, watchdogs --------------------------------------- */

static void gw_supervisor__watch(gw_supervisor *s, gw_child *c, uint64_t now) {
  if (!c->running) return;
  if (c->ready && now - c->started_at >= GW_SUP_STABLE_MS)
    backoff_reset(&c->restart_wait);
  uint64_t limit = (uint64_t)s->cfg->process_watchdog;
  if (limit && now - c->last_ping > limit) {
    log_error("process_stuck", "index=%d pid=%d silent_ms=%llu action=kill", c->index,
              c->proc.pid, (unsigned long long)(now - c->last_ping));
    c->last_ping = now; /* one kill per silence; the exit restarts it */
    uv_process_kill(&c->proc, SIGKILL);
  }
}

static void gw_supervisor__on_tick(uv_timer_t *t) {
  gw_supervisor *s = t->data;
  uint64_t now = uv_now(s->loop);
  int ready = 0;
  for (int i = 0; i < s->n; i++) {
    gw_supervisor__watch(s, &s->children[i], now);
    ready += s->children[i].ready;
  }
  if (!s->ready_sent && !s->stopping && ready == s->n) {
    s->ready_sent = 1;
    log_info("processes_ready", "n=%d listen=%s", s->n, s->cfg->listen);
    sd_notifyf(0, "READY=1\nSTATUS=%d gateway processes on %s", s->n, s->cfg->listen);
  }
  /* From this loop: it proves the supervisor turns. The children's loops
   * are watched above, by their pings. */
  sd_notify(0, "WATCHDOG=1");
}

/* ---- signals -------------------------------------------------------------- */

static void gw_supervisor__on_stop_signal(uv_signal_t *h, int signum) {
  gw_supervisor__stop(h->data, signum, 0);
}

static void gw_supervisor__on_hup(uv_signal_t *h, int signum) {
  gw_supervisor *s = h->data;
  log_info("reload_forwarded", "running=%d", gw_supervisor__running(s));
  for (int i = 0; i < s->n; i++)
    if (s->children[i].running) uv_process_kill(&s->children[i].proc, signum);
}

/* ---- set-up and the one close path ----------------------------------------- */

static void gw_supervisor__close(void *handle) {
  uv_handle_t *h = handle;
  if (h->type != UV_UNKNOWN_HANDLE && !uv_is_closing(h)) uv_close(h, NULL);
}

/* Once stopping and every child is reaped: close the rest, and uv_run ends. */
static void gw_supervisor__finish(gw_supervisor *s) {
  if (s->finished || gw_supervisor__running(s) > 0) return;
  s->finished = 1;
  gw_supervisor__close(&s->tick);
  gw_supervisor__close(&s->notify_poll);
  gw_supervisor__close(&s->sigterm);
  gw_supervisor__close(&s->sigint);
  gw_supervisor__close(&s->sighup);
  for (int i = 0; s->children && i < s->n; i++) gw_supervisor__close(&s->children[i].restart);
  log_info("processes_stopped", "n=%d rc=%d", s->n, s->rc);
}

static int gw_supervisor__init(gw_supervisor *s, int argc, char **argv) {
  size_t len = sizeof s->exe;
  if (uv_exepath(s->exe, &len) != 0) {
    log_error("supervisor_failed", "reason=\"cannot find our own executable\"");
    return -1;
  }
  if (gw_supervisor__notify_open(s) != 0) {
    log_error("supervisor_failed", "reason=\"notify socket: %s\"", strerror(errno));
    return -1;
  }
  if (s->cfg->history.enabled && s->cfg->history.shared > 0 &&
      gw_ring_create(&s->ring, (size_t)s->cfg->history.shared, s->n) != 0) {
    log_error("supervisor_failed", "reason=\"shared history ring: %s\"", strerror(errno));
    return -1;
  }
  s->children = calloc((size_t)s->n, sizeof(gw_child));
  if (!s->children || gw_supervisor__argv(s, argc, argv) != 0 || gw_supervisor__env(s) != 0) {
    log_error("supervisor_failed", "reason=\"out of memory\"");
    return -1;
  }
  uv_poll_init(s->loop, &s->notify_poll, s->notify_fd);
  uv_timer_init(s->loop, &s->tick);
  uv_signal_init(s->loop, &s->sigterm);
  uv_signal_init(s->loop, &s->sigint);
  uv_signal_init(s->loop, &s->sighup);
  s->notify_poll.data = s->tick.data = s;
  s->sigterm.data = s->sigint.data = s->sighup.data = s;
  uint64_t usec = 0, every = GW_SUP_TICK_MS;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec / 2000 < every) every = usec / 2000;
  uv_poll_start(&s->notify_poll, UV_READABLE, gw_supervisor__on_notify);
  uv_timer_start(&s->tick, gw_supervisor__on_tick, every ? every : 1, every ? every : 1);
  uv_signal_start(&s->sigterm, gw_supervisor__on_stop_signal, SIGTERM);
  uv_signal_start(&s->sigint, gw_supervisor__on_stop_signal, SIGINT);
  uv_signal_start(&s->sighup, gw_supervisor__on_hup, SIGHUP);
  for (int i = 0; i < s->n; i++) {
    gw_child *c = &s->children[i];
    c->sup = s;
    c->index = i;
    /* Jittered, so children that crashed together (a shared cause) do not
     * all start again in the same tick. */
    backoff_init(&c->restart_wait, GW_SUP_BACKOFF_MIN_MS, GW_SUP_BACKOFF_MAX_MS,
                 backoff_seed() + (uint32_t)i);
    uv_timer_init(s->loop, &c->restart);
    c->restart.data = c;
  }
  return 0;
}

static void gw_supervisor__free(gw_supervisor *s) {
  if (s->child_argv) {
    if (s->index_arg > 0) free(s->child_argv[s->index_arg]);
    if (s->metrics_arg > 0) free(s->child_argv[s->metrics_arg]);
  }
  free(s->child_argv);
  free(s->env);
  free(s->children);
  if (s->notify_fd >= 0) close(s->notify_fd);
  gw_ring_close(&s->ring);
}

int gw_supervisor_run(const gw_config *cfg, int n, int argc, char **argv) {
  static gw_supervisor s; /* handles must outlive uv_run; one per process */
  memset(&s, 0, sizeof s);
  s.loop = uv_default_loop();
  s.cfg = cfg;
  s.n = n;
  s.notify_fd = -1;
  s.index_arg = s.metrics_arg = -1;
  s.ring.memfd = -1;
  if (gw_supervisor__init(&s, argc, argv) != 0) {
    s.stopping = 1;
    s.rc = 1;
    gw_supervisor__finish(&s);
  } else {
    log_info("processes_starting", "n=%d listen=%s", n, cfg->listen);
    for (int i = 0; i < n; i++) gw_supervisor__start(&s.children[i]);
  }
  uv_run(s.loop, UV_RUN_DEFAULT);
  uv_loop_close(s.loop);
  gw_supervisor__free(&s);
  return s.rc;
}
