/*
 * wsbench - websocket load client for the gateway benchmarks (bench/run.sh).
 *
 *   wsbench --port P --token T [--conns N] [--sources K] [--window W]
 *           [--mode none|hold|events|churn] [--expect E] [--churn-ms MS] ...
 *
 * Opens N connections (from 127.0.0.1 .. 127.0.0.K), upgrades each with the
 * token, subscribes each with --sub, then by mode: closes at once (none),
 * holds them until SIGTERM (hold), counts events until every connection has
 * --expect of them or none came for --idle-ms (events), or sends
 * subscription changes back and forth for --churn-ms (churn).
 *
 * One process holds at most --per-proc sockets (the open-file limit is
 * 20,000 per process and cannot be raised here), so the coordinator forks
 * as many client processes as needed and merges their reports. It prints
 * three lines on stdout, which the runner waits for:
 *   READY ...     every connection is set up (handshake figures)
 *   RECEIVED ...  counting is over (the runner samples the gateway's CPU)
 *   RESULT ...    everything, after the sockets are closed
 * Exit status: 0 when nothing was lost, out of order or in error; 1 when
 * something was; 2 on bad usage.
 */
#define _GNU_SOURCE /* getopt_long, prctl */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "wsb.h"

#define WSB_TICK_MS 100
#define WSB_MAX_PROCS 16

/* ---- clocks and randomness ----------------------------------------------- */

static uint64_t wsb__clock(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t wsb_now_ns(void) { return wsb__clock(CLOCK_MONOTONIC); }
uint64_t wsb_now_rt_ns(void) { return wsb__clock(CLOCK_REALTIME); }

/* xorshift64*: masks and keys need to differ, not to be secret (wsb_conn.c). */
uint64_t wsb_rand(wsb_proc *p) {
  p->rng ^= p->rng >> 12;
  p->rng ^= p->rng << 25;
  p->rng ^= p->rng >> 27;
  return p->rng * 0x2545F4914F6CDD1DULL;
}

/* ---- reports to the coordinator ------------------------------------------ */

static int wsb__write_all(int fd, const void *data, size_t len) {
  const char *d = data;
  while (len > 0) {
    ssize_t n = write(fd, d, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    d += n;
    len -= (size_t)n;
  }
  return 0;
}

static int wsb__read_all(int fd, void *data, size_t len) {
  char *d = data;
  while (len > 0) {
    ssize_t n = read(fd, d, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    d += n;
    len -= (size_t)n;
  }
  return 0;
}

static void wsb_proc__report(wsb_proc *p, uint32_t kind) {
  p->rep.kind = kind;
  if (wsb__write_all(p->report_fd, &p->rep, sizeof(p->rep)) != 0) _exit(3);
}

/* ---- one client process: callbacks from the connections ------------------ */

void wsb_proc_error(wsb_proc *p, wsb_conn *c, const char *what) {
  p->rep.errors++;
  if (!p->rep.first_error[0])
    snprintf(p->rep.first_error, sizeof(p->rep.first_error), "conn %u: %s",
             c ? c->idx : 0, what);
}

static void wsb_proc__stop(wsb_proc *p);
static void wsb_proc__ready(wsb_proc *p);

/* Starts connections until the window is full. */
static void wsb_proc__fill(wsb_proc *p) {
  while (!p->stopping && p->in_flight < p->window && p->next < p->n) {
    wsb_conn *c = &p->conns[p->next++];
    p->in_flight++;
    int rc = wsb_conn_start(c);
    if (rc != 0) {
      wsb_proc_error(p, c, uv_strerror(rc));
      wsb_proc_settled(p, c);
    }
  }
}

void wsb_proc_settled(wsb_proc *p, wsb_conn *c) {
  p->in_flight--;
  p->settled++;
  if (c->state == WSB_C_READY) p->rep.ready++;
  if (p->settled == p->n) wsb_proc__ready(p);
  else wsb_proc__fill(p);
}

static void wsb_proc__on_linger(uv_timer_t *t) { wsb_proc__stop(t->data); }

static void wsb_proc__received(wsb_proc *p) {
  if (p->stopping || p->received) return;
  for (long i = 0; i < p->n; i++) {
    wsb_conn *c = &p->conns[i];
    if (c->was_ready && p->o->expect && c->received < (uint64_t)p->o->expect)
      p->rep.lost += (uint64_t)p->o->expect - c->received;
  }
  wsb_proc__report(p, WSB_REP_RECEIVED);
  p->received = 1;
  if (p->o->linger_ms > 0 && p->o->mode != WSB_MODE_NONE) {
    p->churning = 0;
    uv_timer_start(&p->timer, wsb_proc__on_linger, (uint64_t)p->o->linger_ms, 0);
  } else {
    wsb_proc__stop(p);
  }
}

void wsb_proc_complete(wsb_proc *p, wsb_conn *c) {
  if (c) p->complete++;
  if (!c || p->complete >= (long)p->rep.ready) wsb_proc__received(p);
}

void wsb_proc_closed(wsb_proc *p, wsb_conn *c) {
  (void)c;
  p->open--;
}

/* ---- one client process: phases ------------------------------------------- */

static void wsb_proc__close_handle(uv_handle_t *h) {
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Closes every socket and handle; uv_run returns once they are gone. */
static void wsb_proc__stop(wsb_proc *p) {
  if (p->stopping) return;
  p->stopping = 1;
  p->churning = 0;
  for (long i = 0; i < p->n; i++) wsb_conn_close(&p->conns[i]);
  wsb_proc__close_handle((uv_handle_t *)&p->timer);
  wsb_proc__close_handle((uv_handle_t *)&p->sigterm);
}

static void wsb_proc__start_churn(wsb_proc *p) {
  p->churning = 1;
  p->rep.churn_start_ns = wsb_now_ns();
  for (long i = 0; i < p->n; i++)
    if (p->conns[i].state == WSB_C_READY) wsb_conn_churn_next(&p->conns[i]);
}

static void wsb_proc__ready(wsb_proc *p) {
  wsb_proc__report(p, WSB_REP_READY);
  p->phase_start_ms = uv_now(p->loop);
  int nobody = p->rep.ready == 0;
  switch (p->o->mode) {
    case WSB_MODE_NONE: wsb_proc__received(p); break;
    case WSB_MODE_HOLD: if (nobody) wsb_proc__received(p); break;
    case WSB_MODE_EVENTS:
      if (nobody || p->o->expect == 0) wsb_proc__received(p);
      break;
    case WSB_MODE_CHURN:
      if (nobody) wsb_proc__received(p);
      else wsb_proc__start_churn(p);
      break;
  }
}

/* Connections still being set up when the setup phase ran out of time. */
static void wsb_proc__setup_timeout(wsb_proc *p) {
  for (long i = 0; i < p->n && !p->stopping; i++) {
    wsb_conn *c = &p->conns[i];
    if (c->state == WSB_C_IDLE) {
      c->state = WSB_C_CLOSED; /* never started: settle it here */
      p->in_flight++;
      wsb_proc_error(p, c, "setup timed out before start");
      wsb_proc_settled(p, c);
    } else if (c->state != WSB_C_READY && c->state != WSB_C_CLOSED) {
      wsb_proc_error(p, c, "setup timed out");
      wsb_conn_close(c);
      wsb_proc_settled(p, c);
    }
  }
}

static void wsb_proc__on_tick(uv_timer_t *t) {
  wsb_proc *p = t->data;
  uint64_t now = uv_now(p->loop), since = now - p->phase_start_ms;
  const wsb_opts *o = p->o;
  if (p->settled < p->n) {
    if (since > (uint64_t)o->timeout_ms) wsb_proc__setup_timeout(p);
    return;
  }
  if (o->mode == WSB_MODE_EVENTS) {
    int silent = p->last_event_ms && now - p->last_event_ms > (uint64_t)o->idle_ms;
    if (silent || since > (uint64_t)o->timeout_ms) wsb_proc__received(p);
  } else if (o->mode == WSB_MODE_CHURN) {
    if (p->churning && since >= (uint64_t)o->churn_ms) {
      p->churning = 0;
      if (p->churn_out == 0) wsb_proc__received(p);
    } else if (!p->churning && since > (uint64_t)(o->churn_ms + o->timeout_ms)) {
      wsb_proc_error(p, NULL, "churn replies missing");
      wsb_proc__received(p);
    }
  }
}

static void wsb_proc__on_signal(uv_signal_t *h, int signum) {
  (void)signum;
  wsb_proc *p = h->data;
  if (p->received) {
    wsb_proc__stop(p); /* lingering: stop now */
    return;
  }
  if (p->settled < p->n) wsb_proc__setup_timeout(p); /* stopped mid-setup */
  wsb_proc__received(p);
}

static int wsb_proc_run(wsb_proc *p) {
  p->loop = uv_default_loop();
  p->conns = calloc((size_t)p->n, sizeof(*p->conns));
  if (!p->conns) return 1;
  for (long i = 0; i < p->n; i++) {
    p->conns[i].p = p;
    p->conns[i].idx = (uint32_t)i;
  }
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed)) seed = wsb_now_ns();
  p->rng = seed | 1;
  uv_timer_init(p->loop, &p->timer);
  p->timer.data = p;
  uv_timer_start(&p->timer, wsb_proc__on_tick, WSB_TICK_MS, WSB_TICK_MS);
  uv_signal_init(p->loop, &p->sigterm);
  p->sigterm.data = p;
  uv_signal_start(&p->sigterm, wsb_proc__on_signal, SIGTERM);
  p->phase_start_ms = uv_now(p->loop);
  if (p->n == 0) wsb_proc__ready(p);
  else wsb_proc__fill(p);
  uv_run(p->loop, UV_RUN_DEFAULT);
  wsb_proc__report(p, WSB_REP_FINAL);
  return 0;
}

/* ---- the coordinator ------------------------------------------------------- */

static pid_t wsb_kids[WSB_MAX_PROCS];
static int wsb_nkids;

static void wsb__forward(int sig) {
  (void)sig;
  for (int i = 0; i < wsb_nkids; i++) kill(wsb_kids[i], SIGTERM);
}

static void wsb__merge(wsb_report *into, const wsb_report *r) {
  into->conns += r->conns;
  into->ready += r->ready;
  into->errors += r->errors;
  into->events += r->events;
  into->lost += r->lost;
  into->ooo += r->ooo;
  into->churn_reqs += r->churn_reqs;
#define WSB_MIN(f) if (r->f && (!into->f || r->f < into->f)) into->f = r->f
#define WSB_MAX(f) if (r->f > into->f) into->f = r->f
  WSB_MIN(hs_first_ns);
  WSB_MAX(hs_last_ns);
  WSB_MIN(emit_first_rt);
  WSB_MAX(recv_last_rt);
  WSB_MIN(churn_start_ns);
  WSB_MAX(churn_last_ns);
#undef WSB_MIN
#undef WSB_MAX
  wsb_hist_merge(&into->hs, &r->hs);
  wsb_hist_merge(&into->lat, &r->lat);
  wsb_hist_merge(&into->churn, &r->churn);
  if (!into->first_error[0] && r->first_error[0])
    memcpy(into->first_error, r->first_error, sizeof(into->first_error));
}

static double wsb__rate(uint64_t n, uint64_t from_ns, uint64_t to_ns) {
  return to_ns > from_ns ? (double)n * 1e9 / (double)(to_ns - from_ns) : 0.0;
}

static void wsb__print(const char *what, const wsb_report *m) {
  printf("%s conns=%llu ready=%llu errors=%llu hs=%llu hs_per_s=%.0f hs_p50_us=%llu "
         "hs_p99_us=%llu", what, (unsigned long long)m->conns, (unsigned long long)m->ready,
         (unsigned long long)m->errors, (unsigned long long)m->hs.count,
         wsb__rate(m->hs.count, m->hs_first_ns, m->hs_last_ns),
         (unsigned long long)wsb_hist_quantile(&m->hs, 0.5),
         (unsigned long long)wsb_hist_quantile(&m->hs, 0.99));
  if (strcmp(what, "READY") != 0) {
    printf(" events=%llu lost=%llu ooo=%llu lat_p50_us=%llu lat_p99_us=%llu lat_max_us=%llu"
           " deliv_per_s=%.0f churn_reqs=%llu churn_per_s=%.0f churn_p50_us=%llu"
           " churn_p99_us=%llu churn_max_us=%llu",
           (unsigned long long)m->events, (unsigned long long)m->lost,
           (unsigned long long)m->ooo, (unsigned long long)wsb_hist_quantile(&m->lat, 0.5),
           (unsigned long long)wsb_hist_quantile(&m->lat, 0.99),
           (unsigned long long)m->lat.max,
           wsb__rate(m->events, m->emit_first_rt, m->recv_last_rt),
           (unsigned long long)m->churn_reqs,
           wsb__rate(m->churn_reqs, m->churn_start_ns, m->churn_last_ns),
           (unsigned long long)wsb_hist_quantile(&m->churn, 0.5),
           (unsigned long long)wsb_hist_quantile(&m->churn, 0.99),
           (unsigned long long)m->churn.max);
  }
  printf(" first_error=\"%s\"\n", m->first_error);
  fflush(stdout);
}

/* Reads one report of `kind` from every process and prints the merge. */
static int wsb__collect(const int *fds, int n, uint32_t kind, const char *what,
                        wsb_report *m, wsb_report *tmp) {
  memset(m, 0, sizeof(*m));
  for (int i = 0; i < n; i++) {
    if (wsb__read_all(fds[i], tmp, sizeof(*tmp)) != 0 || tmp->kind != kind) {
      fprintf(stderr, "wsbench: client process %d ended without its %s report\n", i, what);
      return -1;
    }
    wsb__merge(m, tmp);
  }
  wsb__print(what, m);
  return 0;
}

static pid_t wsb__spawn(const wsb_opts *o, long n, long base, int *fd_out) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  pid_t pid = fork();
  if (pid != 0) {
    close(fds[1]);
    *fd_out = fds[0];
    return pid;
  }
  close(fds[0]);
  prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the coordinator */
  static wsb_proc p; /* large (read buffer, histograms): not on the stack */
  p.o = o;
  p.n = n;
  p.source_base = base;
  p.window = o->window * n / o->conns > 0 ? o->window * n / o->conns : 1;
  p.report_fd = fds[1];
  p.rep.conns = (uint64_t)n;
  _exit(wsb_proc_run(&p));
}

static int wsb_coordinate(const wsb_opts *o) {
  int nprocs = (int)((o->conns + o->per_proc - 1) / o->per_proc);
  if (nprocs < 1) nprocs = 1;
  if (nprocs > WSB_MAX_PROCS) {
    fprintf(stderr, "wsbench: %ld connections need more than %d processes\n", o->conns,
            WSB_MAX_PROCS);
    return 2;
  }
  struct sigaction sa = {.sa_handler = wsb__forward};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  int fds[WSB_MAX_PROCS];
  long base = 0;
  for (int i = 0; i < nprocs; i++) {
    long n = o->conns / nprocs + (i < o->conns % nprocs ? 1 : 0);
    pid_t pid = wsb__spawn(o, n, base, &fds[i]);
    if (pid < 0) return 1;
    wsb_kids[wsb_nkids++] = pid;
    base += n;
  }
  static wsb_report merged, tmp;
  int rc = wsb__collect(fds, nprocs, WSB_REP_READY, "READY", &merged, &tmp) ||
           wsb__collect(fds, nprocs, WSB_REP_RECEIVED, "RECEIVED", &merged, &tmp) ||
           wsb__collect(fds, nprocs, WSB_REP_FINAL, "RESULT", &merged, &tmp);
  for (int i = 0; i < nprocs; i++) {
    while (waitpid(wsb_kids[i], NULL, 0) < 0 && errno == EINTR) {}
    close(fds[i]);
  }
  if (rc) return 1;
  int bad = merged.errors || merged.lost || merged.ooo || merged.ready != merged.conns;
  return bad ? 1 : 0;
}

/* ---- options ---------------------------------------------------------------- */

static const char wsb_usage[] =
    "usage: wsbench --port P --token T [options]\n"
    "  --host H          gateway address (127.0.0.1)\n"
    "  --path P          request path (/websocket/)\n"
    "  --conns N         connections (100)\n"
    "  --sources K       source addresses 127.0.0.1..127.0.0.K (4)\n"
    "  --per-proc N      sockets per client process (15000)\n"
    "  --window W        handshakes in flight (256)\n"
    "  --header 'N: V'   one more request header (Cookie, Origin); repeatable\n"
    "  --sub TEXT        subscription sent after the accept ('' for none)\n"
    "  --sub2 TEXT       the other subscription churn alternates with\n"
    "  --mode M          none | hold | events | churn (none)\n"
    "  --expect E        events: each connection should get E events\n"
    "  --idle-ms MS      events: stop after MS without an event (3000)\n"
    "  --churn-ms MS     churn: how long (5000)\n"
    "  --timeout-ms MS   limit of each phase (60000)\n"
    "  --linger-ms MS    events, churn: wait MS after RECEIVED before closing (500)\n";

static int wsb__mode(const char *s, wsb_mode *m) {
  static const char *names[] = {"none", "hold", "events", "churn"};
  for (int i = 0; i < 4; i++)
    if (strcmp(s, names[i]) == 0) return *m = (wsb_mode)i, 0;
  return -1;
}

static int wsb__parse(int argc, char **argv, wsb_opts *o) {
  static const struct option opts[] = {
      {"host", 1, 0, 'H'},     {"port", 1, 0, 'p'},    {"path", 1, 0, 'P'},
      {"conns", 1, 0, 'n'},    {"sources", 1, 0, 's'}, {"per-proc", 1, 0, 'q'},
      {"window", 1, 0, 'w'},   {"token", 1, 0, 't'},   {"sub", 1, 0, 'a'},
      {"sub2", 1, 0, 'b'},     {"mode", 1, 0, 'm'},    {"expect", 1, 0, 'e'},
      {"idle-ms", 1, 0, 'i'},  {"churn-ms", 1, 0, 'c'}, {"timeout-ms", 1, 0, 'T'},
      {"linger-ms", 1, 0, 'l'}, {"header", 1, 0, 'x'},
      {"help", 0, 0, 'h'},     {0, 0, 0, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (ch) {
      case 'H': o->host = optarg; break;
      case 'p': o->port = atoi(optarg); break;
      case 'P': o->path = optarg; break;
      case 'n': o->conns = atol(optarg); break;
      case 's': o->sources = atoi(optarg); break;
      case 'q': o->per_proc = atol(optarg); break;
      case 'w': o->window = atol(optarg); break;
      case 't': o->token = optarg; break;
      case 'a': o->sub = optarg; break;
      case 'b': o->sub2 = optarg; break;
      case 'm': if (wsb__mode(optarg, &o->mode)) return -1; break;
      case 'e': o->expect = atol(optarg); break;
      case 'i': o->idle_ms = atol(optarg); break;
      case 'c': o->churn_ms = atol(optarg); break;
      case 'T': o->timeout_ms = atol(optarg); break;
      case 'l': o->linger_ms = atol(optarg); break;
      case 'x': {
        size_t used = strlen(o->headers);
        if (strpbrk(optarg, "\r\n") ||
            used + strlen(optarg) + 3 > sizeof o->headers)
          return -1;
        snprintf(o->headers + used, sizeof o->headers - used, "%s\r\n", optarg);
        break;
      }
      default: return -1;
    }
  }
  if (optind != argc || o->port <= 0 || !o->token || o->conns < 1 || o->sources < 1 ||
      o->sources > 254 || o->per_proc < 1 || o->window < 1)
    return -1;
  if (o->mode == WSB_MODE_CHURN && (!o->sub[0] || !o->sub2[0])) return -1;
  return 0;
}

int main(int argc, char **argv) {
  wsb_opts o = {.host = "127.0.0.1", .path = "/websocket/", .conns = 100, .sources = 4,
                .per_proc = 15000, .window = 256,
                .sub = "{\"groups\": {\"jobs\": [\"bench\"]}}",
                .sub2 = "{\"groups\": {\"schedules\": [\"bench\"]}}",
                .mode = WSB_MODE_NONE, .idle_ms = 3000, .churn_ms = 5000,
                .timeout_ms = 60000, .linger_ms = 500};
  if (wsb__parse(argc, argv, &o) != 0) {
    fputs(wsb_usage, stderr);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  return wsb_coordinate(&o);
}
