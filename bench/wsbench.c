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
 * --protocol wsgw.2 speaks the protocol with positions (wsb_proto2.c); then
 * --reconnect-after E drops each connection after E events and sets it up
 * again with its positions (events: the seam between replay and live), and
 * --mode recover sets everything up, closes every connection, prints AWAY,
 * waits for SIGUSR1 (the runner emits meanwhile), reconnects them all at
 * once with their positions (RESUMED once all are answered) and counts
 * events as events mode does. A sequence number seen twice is a duplicate
 * (dups=), one never seen is lost, a recovery status other than ok counts.
 *
 * --deflate offers permessage-deflate and inflates compressed messages
 * (wsb_inflate.c) before the same checks; RECEIVED and RESULT then count
 * the bytes received on the wire (wire_bytes: every frame and the 101;
 * ev_wire_bytes: the events' frames), the events' payload bytes once
 * inflated (ev_bytes), and their frames that came compressed (zframes) or
 * plain (pframes), with or without --deflate. The offer leaves the server
 * free to keep its context; when the 101 takes that freedom (no
 * server_no_context_takeover) each connection keeps an inflater of its own,
 * ~40 KiB (zctx= counts them). --deflate-no-takeover offers
 * server_no_context_takeover too: one inflater per process, reset per
 * message.
 *
 * One process holds at most --per-proc sockets (the open-file limit is
 * 20,000 per process and cannot be raised here), so the coordinator forks
 * as many client processes as needed and merges their reports. It prints
 * three lines on stdout, which the runner waits for:
 *   READY ...     every connection is set up (handshake figures)
 *   AWAY ...      recover: every connection closed (emit, then SIGUSR1)
 *   RESUMED ...   recover: every connection reconnected and answered
 *   RECEIVED ...  counting is over (the runner samples the gateway's CPU)
 *   RESULT ...    everything, after the sockets are closed
 * Exit status: 0 when nothing was lost, out of order or in error; 1 when
 * something was; 2 on bad usage.
 */
#define _GNU_SOURCE /* getopt_long, prctl */
#include <assert.h>
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
static void wsb_proc__received(wsb_proc *p);
static void wsb_proc__report(wsb_proc *p, uint32_t kind);

/* Starts connections until the window is full (in RECOVER's second set-up:
 * those that were dropped, again). */
static void wsb_proc__fill(wsb_proc *p) {
  while (!p->stopping && p->in_flight < p->window && p->next < p->n) {
    wsb_conn *c = &p->conns[p->next++];
    if (p->phase == WSB_P_RESUMING) {
      if (!c->resuming) continue; /* failed the first set-up: not resumed */
      p->in_flight++;
      int rc = wsb_conn_restart(c);
      if (rc != 0) {
        wsb_proc_error(p, c, uv_strerror(rc));
        wsb_proc_resumed(p, c);
      }
      continue;
    }
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
  /* RECOVER: not before every connection is back (one that caught up
   * early must not end the count for those still reconnecting). */
  if (p->o->mode == WSB_MODE_RECOVER && p->phase != WSB_P_COUNTING) return;
  if (!c || p->complete >= (long)p->rep.ready) wsb_proc__received(p);
}

void wsb_proc_closed(wsb_proc *p, wsb_conn *c) {
  (void)c;
  p->open--;
  if (p->phase == WSB_P_AWAY && p->open == 0 && !p->stopping)
    wsb_proc__report(p, WSB_REP_AWAY); /* the runner emits now, then SIGUSR1 */
}

static void wsb_proc__counting(wsb_proc *p) {
  wsb_proc__report(p, WSB_REP_RESUMED);
  p->phase = WSB_P_COUNTING;
  p->phase_start_ms = uv_now(p->loop);
  if (p->o->expect == 0 || p->complete >= (long)p->rep.ready) wsb_proc__received(p);
}

/* A reconnect got its reply (state READY) or failed; a failed one is done
 * counting (what it did not get is lost). */
void wsb_proc_resumed(wsb_proc *p, wsb_conn *c) {
  uint64_t now = wsb_now_ns();
  if (c->state == WSB_C_READY) {
    p->rep.resumed++;
    wsb_hist_add(&p->rep.resume_hs, (now - c->t0_ns) / 1000);
    if (now > p->rep.resume_last_ns) p->rep.resume_last_ns = now;
  } else if (!c->complete) {
    c->complete = 1;
    wsb_proc_complete(p, c);
  }
  if (p->phase != WSB_P_RESUMING) return; /* a --reconnect-after drop */
  p->in_flight--;
  p->resume_settled++;
  assert(p->resume_settled <= p->resume_n);
  if (p->resume_settled == p->resume_n) wsb_proc__counting(p);
  else wsb_proc__fill(p);
}

/* RECOVER: drop every connection that is set up; AWAY once all are closed. */
static void wsb_proc__away(wsb_proc *p) {
  p->phase = WSB_P_AWAY;
  for (long i = 0; i < p->n; i++) {
    wsb_conn *c = &p->conns[i];
    if (c->state != WSB_C_READY) continue;
    c->resuming = 1; /* marks it for the second set-up */
    p->resume_n++;
    wsb_conn_close(c);
  }
  if (p->open == 0) wsb_proc__report(p, WSB_REP_AWAY);
}

/* SIGUSR1 in AWAY: reconnect everything at once (the window allowing). */
static void wsb_proc__resume(wsb_proc *p) {
  p->phase = WSB_P_RESUMING;
  p->phase_start_ms = uv_now(p->loop);
  p->last_event_ms = 0;
  p->next = 0;
  p->in_flight = 0;
  if (p->resume_n == 0) wsb_proc__counting(p);
  else wsb_proc__fill(p);
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
  wsb_proc__close_handle((uv_handle_t *)&p->sigusr1);
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
    case WSB_MODE_RECOVER:
      if (nobody) wsb_proc__received(p);
      else wsb_proc__away(p);
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

/* Reconnects still in flight when the second set-up ran out of time. */
static void wsb_proc__resume_timeout(wsb_proc *p) {
  long started = p->next;
  p->next = p->n; /* start no more */
  for (long i = 0; i < p->n && p->phase == WSB_P_RESUMING; i++) {
    wsb_conn *c = &p->conns[i];
    if (!c->resuming) continue;
    if (i >= started) { /* never started */
      p->in_flight++;
      wsb_proc_error(p, c, "reconnect timed out before start");
      wsb_proc_resumed(p, c);
    } else if (c->state != WSB_C_READY && c->state != WSB_C_CLOSED) {
      wsb_proc_error(p, c, "reconnect timed out");
      wsb_conn_close(c);
      wsb_proc_resumed(p, c);
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
  if (o->mode == WSB_MODE_RECOVER && p->phase == WSB_P_RESUMING) {
    if (since > (uint64_t)o->timeout_ms) wsb_proc__resume_timeout(p);
    return;
  }
  if (o->mode == WSB_MODE_EVENTS ||
      (o->mode == WSB_MODE_RECOVER && p->phase == WSB_P_COUNTING)) {
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

static void wsb_proc__on_usr1(uv_signal_t *h, int signum) {
  (void)signum;
  wsb_proc *p = h->data;
  if (p->phase == WSB_P_AWAY && p->open == 0 && !p->stopping) wsb_proc__resume(p);
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
  uv_signal_init(p->loop, &p->sigusr1);
  p->sigusr1.data = p;
  uv_signal_start(&p->sigusr1, wsb_proc__on_usr1, SIGUSR1);
  if (p->o->deflate && wsb_inflate_init(p) != 0) return 1;
  p->phase_start_ms = uv_now(p->loop);
  if (p->n == 0) wsb_proc__ready(p);
  else wsb_proc__fill(p);
  uv_run(p->loop, UV_RUN_DEFAULT);
  wsb_proc__report(p, WSB_REP_FINAL);
  for (long i = 0; i < p->n; i++) wsb2_detach(&p->conns[i]);
  free(p->conns);
  wsb_inflate_end(p);
  return 0;
}

/* ---- the coordinator ------------------------------------------------------- */

static pid_t wsb_kids[WSB_MAX_PROCS];
static int wsb_nkids;

static void wsb__forward(int sig) {
  for (int i = 0; i < wsb_nkids; i++) kill(wsb_kids[i], sig == SIGUSR1 ? SIGUSR1 : SIGTERM);
}

static void wsb__merge(wsb_report *into, const wsb_report *r) {
  into->conns += r->conns;
  into->ready += r->ready;
  into->errors += r->errors;
  into->events += r->events;
  into->lost += r->lost;
  into->ooo += r->ooo;
  into->churn_reqs += r->churn_reqs;
  into->dups += r->dups;
  into->replayed += r->replayed;
  into->early += r->early;
  into->bytes += r->bytes;
  into->rec_ok += r->rec_ok;
  into->rec_expired += r->rec_expired;
  into->rec_unknown += r->rec_unknown;
  into->notices += r->notices;
  into->resumed += r->resumed;
  into->resume_events += r->resume_events;
  into->resume_bytes += r->resume_bytes;
  into->wire_bytes += r->wire_bytes;
  into->ev_wire_bytes += r->ev_wire_bytes;
  into->ev_bytes += r->ev_bytes;
  into->zframes += r->zframes;
  into->pframes += r->pframes;
  into->zctx += r->zctx;
#define WSB_MIN(f) if (r->f && (!into->f || r->f < into->f)) into->f = r->f
#define WSB_MAX(f) if (r->f > into->f) into->f = r->f
  WSB_MIN(hs_first_ns);
  WSB_MAX(hs_last_ns);
  WSB_MIN(emit_first_rt);
  WSB_MAX(recv_last_rt);
  WSB_MIN(churn_start_ns);
  WSB_MAX(churn_last_ns);
  WSB_MIN(resume_first_ns);
  WSB_MAX(resume_last_ns);
  WSB_MAX(caught_last_ns);
#undef WSB_MIN
#undef WSB_MAX
  wsb_hist_merge(&into->hs, &r->hs);
  wsb_hist_merge(&into->lat, &r->lat);
  wsb_hist_merge(&into->churn, &r->churn);
  wsb_hist_merge(&into->resume_hs, &r->resume_hs);
  wsb_hist_merge(&into->catchup, &r->catchup);
  if (!into->first_error[0] && r->first_error[0])
    memcpy(into->first_error, r->first_error, sizeof(into->first_error));
}

static double wsb__rate(uint64_t n, uint64_t from_ns, uint64_t to_ns) {
  return to_ns > from_ns ? (double)n * 1e9 / (double)(to_ns - from_ns) : 0.0;
}

/* The wsgw.2 figures (--protocol wsgw.2 only: the old lines stay as they
 * were). Replay rates run from the first reconnect to the last connection
 * that got all it expected. */
static void wsb__print2(const wsb_report *m) {
  uint64_t span = m->caught_last_ns > m->resume_first_ns && m->resume_first_ns
                      ? m->caught_last_ns - m->resume_first_ns : 0;
  printf(" dups=%llu early=%llu bytes=%llu notices=%llu rec_ok=%llu rec_expired=%llu"
         " rec_unknown=%llu resumed=%llu resume_per_s=%.0f resume_p50_us=%llu"
         " resume_p99_us=%llu replayed=%llu resume_events=%llu catchup_ms=%.1f"
         " catchup_p50_us=%llu catchup_p99_us=%llu replay_ev_per_s=%.0f replay_mb_per_s=%.1f",
         (unsigned long long)m->dups, (unsigned long long)m->early,
         (unsigned long long)m->bytes, (unsigned long long)m->notices,
         (unsigned long long)m->rec_ok, (unsigned long long)m->rec_expired,
         (unsigned long long)m->rec_unknown, (unsigned long long)m->resumed,
         wsb__rate(m->resumed, m->resume_first_ns, m->resume_last_ns),
         (unsigned long long)wsb_hist_quantile(&m->resume_hs, 0.5),
         (unsigned long long)wsb_hist_quantile(&m->resume_hs, 0.99),
         (unsigned long long)m->replayed, (unsigned long long)m->resume_events,
         (double)span / 1e6, (unsigned long long)wsb_hist_quantile(&m->catchup, 0.5),
         (unsigned long long)wsb_hist_quantile(&m->catchup, 0.99),
         span ? (double)m->resume_events * 1e9 / (double)span : 0.0,
         span ? (double)m->resume_bytes * 1e3 / (double)span : 0.0);
}

static void wsb__print(const char *what, const wsb_report *m, int proto2) {
  printf("%s conns=%llu ready=%llu errors=%llu hs=%llu hs_per_s=%.0f hs_p50_us=%llu "
         "hs_p99_us=%llu", what, (unsigned long long)m->conns, (unsigned long long)m->ready,
         (unsigned long long)m->errors, (unsigned long long)m->hs.count,
         wsb__rate(m->hs.count, m->hs_first_ns, m->hs_last_ns),
         (unsigned long long)wsb_hist_quantile(&m->hs, 0.5),
         (unsigned long long)wsb_hist_quantile(&m->hs, 0.99));
  if (strcmp(what, "READY") != 0 && strcmp(what, "AWAY") != 0) {
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
    printf(" wire_bytes=%llu ev_wire_bytes=%llu ev_bytes=%llu zframes=%llu pframes=%llu"
           " zctx=%llu",
           (unsigned long long)m->wire_bytes, (unsigned long long)m->ev_wire_bytes,
           (unsigned long long)m->ev_bytes, (unsigned long long)m->zframes,
           (unsigned long long)m->pframes, (unsigned long long)m->zctx);
  }
  if (proto2 && strcmp(what, "READY") != 0 && strcmp(what, "AWAY") != 0) wsb__print2(m);
  printf(" first_error=\"%s\"\n", m->first_error);
  fflush(stdout);
}

/* Reads one report of `kind` from every process and prints the merge. */
static int wsb__collect(const int *fds, int n, uint32_t kind, const char *what,
                        wsb_report *m, wsb_report *tmp, int proto2) {
  memset(m, 0, sizeof(*m));
  for (int i = 0; i < n; i++) {
    if (wsb__read_all(fds[i], tmp, sizeof(*tmp)) != 0 || tmp->kind != kind) {
      fprintf(stderr, "wsbench: client process %d ended without its %s report\n", i, what);
      return -1;
    }
    wsb__merge(m, tmp);
  }
  wsb__print(what, m, proto2);
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
  wsb_nkids = 0; /* the coordinator's handlers, inherited, must reach no sibling */
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
  sigaction(SIGUSR1, &sa, NULL);
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
  int p2 = o->proto2, rec = o->mode == WSB_MODE_RECOVER;
  int rc = wsb__collect(fds, nprocs, WSB_REP_READY, "READY", &merged, &tmp, p2) ||
           (rec && wsb__collect(fds, nprocs, WSB_REP_AWAY, "AWAY", &merged, &tmp, p2)) ||
           (rec && wsb__collect(fds, nprocs, WSB_REP_RESUMED, "RESUMED", &merged, &tmp, p2)) ||
           wsb__collect(fds, nprocs, WSB_REP_RECEIVED, "RECEIVED", &merged, &tmp, p2) ||
           wsb__collect(fds, nprocs, WSB_REP_FINAL, "RESULT", &merged, &tmp, p2);
  /* Closing first: a process still writing a report (bigger than a pipe
   * holds) after a failed collect gets EPIPE instead of blocking the wait. */
  for (int i = 0; i < nprocs; i++) {
    close(fds[i]);
    while (waitpid(wsb_kids[i], NULL, 0) < 0 && errno == EINTR) {}
  }
  if (rc) return 1;
  int bad = merged.errors || merged.lost || merged.ooo || merged.ready != merged.conns;
  if (p2) bad |= merged.dups || merged.rec_expired || merged.rec_unknown || merged.notices;
  if (rec) bad |= merged.resumed != merged.ready;
  return bad ? 1 : 0;
}

/* ---- options ---------------------------------------------------------------- */

static const char wsb_usage[] =
    "usage: wsbench --port P --token T [options]\n"
    "  --tokens FILE     one token per line instead of --token: connection i\n"
    "                    uses line i mod n (distinct users)\n"
    "  --host H          gateway address (127.0.0.1)\n"
    "  --path P          request path (/websocket/)\n"
    "  --conns N         connections (100)\n"
    "  --sources K       source addresses 127.0.0.1..127.0.0.K (4)\n"
    "  --per-proc N      sockets per client process (15000)\n"
    "  --window W        handshakes in flight (256)\n"
    "  --header 'N: V'   one more request header (Cookie, Origin); repeatable\n"
    "  --sub TEXT        subscription sent after the accept ('' for none)\n"
    "  --sub2 TEXT       the other subscription churn alternates with\n"
    "  --mode M          none | hold | events | churn | recover (none)\n"
    "  --expect E        events: each connection should get E events\n"
    "  --idle-ms MS      events: stop after MS without an event (3000)\n"
    "  --churn-ms MS     churn: how long (5000)\n"
    "  --timeout-ms MS   limit of each phase (60000)\n"
    "  --linger-ms MS    events, churn: wait MS after RECEIVED before closing (500)\n"
    "  --protocol wsgw.2 speak wsgw.2: envelopes, positions, recovery\n"
    "  --reconnect-after E  wsgw.2 events: drop after E events, reconnect with positions\n"
    "  --deflate         offer permessage-deflate (the 101 must accept it), inflate;\n"
    "                    a connection whose 101 lacks server_no_context_takeover\n"
    "                    keeps its own inflater (~40 KiB; counted as zctx=)\n"
    "  --deflate-no-takeover  the same, offering server_no_context_takeover (the\n"
    "                    101 must answer it): one inflater per process\n"
    "  recover mode (wsgw.2): set up, close all, print AWAY, wait for SIGUSR1,\n"
    "    reconnect all with positions, print RESUMED, count events as events mode\n";

/* --tokens FILE: every non-empty line a token (a storm of distinct users).
 * The file is read once, before the fork; its lines live as long as the
 * process. */
static int wsb__read_tokens(const char *path, wsb_opts *o) {
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  char line[4096];
  long cap = 0;
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = '\0';
    if (!line[0]) continue;
    if (o->n_tokens == cap) {
      cap = cap ? cap * 2 : 1024;
      char **t = realloc(o->tokens, (size_t)cap * sizeof *t);
      if (!t) break;
      o->tokens = t;
    }
    if (!(o->tokens[o->n_tokens] = strdup(line))) break;
    o->n_tokens++;
  }
  int bad = ferror(f) || !feof(f);
  fclose(f);
  return bad || o->n_tokens == 0 ? -1 : 0;
}

static int wsb__mode(const char *s, wsb_mode *m) {
  static const char *names[] = {"none", "hold", "events", "churn", "recover"};
  for (int i = 0; i < 5; i++)
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
      {"protocol", 1, 0, 'v'}, {"reconnect-after", 1, 0, 'r'}, {"deflate", 0, 0, 'z'},
      {"deflate-no-takeover", 0, 0, 'Z'}, {"tokens", 1, 0, 'k'},
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
      case 'k':
        if (wsb__read_tokens(optarg, o) != 0) return -1;
        break;
      case 'a': o->sub = optarg; break;
      case 'b': o->sub2 = optarg; break;
      case 'm': if (wsb__mode(optarg, &o->mode)) return -1; break;
      case 'e': o->expect = atol(optarg); break;
      case 'i': o->idle_ms = atol(optarg); break;
      case 'c': o->churn_ms = atol(optarg); break;
      case 'T': o->timeout_ms = atol(optarg); break;
      case 'l': o->linger_ms = atol(optarg); break;
      case 'v':
        if (strcmp(optarg, "wsgw.2") != 0) return -1;
        o->proto2 = 1;
        break;
      case 'r': o->reconnect_after = atol(optarg); break;
      case 'z': o->deflate = 1; break;
      case 'Z': o->deflate = o->deflate_nct = 1; break;
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
  if (optind != argc || o->port <= 0 || (!o->token && !o->n_tokens) || o->conns < 1 || o->sources < 1 ||
      o->sources > 254 || o->per_proc < 1 || o->window < 1)
    return -1;
  if (o->mode == WSB_MODE_CHURN && (!o->sub[0] || !o->sub2[0])) return -1;
  /* Recovery needs positions, and a subscription to name them in. */
  if ((o->mode == WSB_MODE_RECOVER || o->reconnect_after) && (!o->proto2 || !o->sub[0]))
    return -1;
  if (o->reconnect_after < 0 || (o->reconnect_after && o->mode != WSB_MODE_EVENTS))
    return -1;
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
