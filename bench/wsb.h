/*
 * wsb.h - the load client's shared types: options, one client process, one
 * websocket connection, and the report a process sends its coordinator.
 *
 * Owns: nothing at run time; this is the contract between wsbench.c (the
 * phases of a process, the coordinator that forks processes and merges
 * their reports), wsb_conn.c (one connection's protocol) and wsb_proto2.c
 * (what a wsgw.2 connection keeps: positions, seen sequence numbers) and
 * wsb_inflate.c (permessage-deflate: the process's inflater, reset per
 * message, or a connection's own, kept across its messages).
 */
#ifndef WSB_H
#define WSB_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <zlib.h>

#include "wsb_hist.h"

typedef enum {
  WSB_MODE_NONE = 0, /* connect, subscribe, close: a probe or a handshake count */
  WSB_MODE_HOLD,     /* stay connected until SIGTERM (idle-connection memory) */
  WSB_MODE_EVENTS,   /* count events until --expect each, or silence */
  WSB_MODE_CHURN,    /* change subscriptions back and forth for --churn-ms */
  WSB_MODE_RECOVER   /* wsgw.2: set up, close all (AWAY), wait for SIGUSR1, reconnect
                        all with their positions (RESUMED), count as EVENTS */
} wsb_mode;

typedef struct wsb_opts {
  const char *host;
  int port;
  int sources;      /* bind to 127.0.0.1 .. 127.0.0.<sources> in turn */
  long conns;       /* all processes together */
  long per_proc;    /* at most this many sockets per process (open-file cap) */
  long window;      /* handshakes in flight, all processes together */
  const char *path; /* request target without the token */
  const char *token;
  char **tokens;    /* --tokens FILE: one per line; connection i uses i mod n */
  long n_tokens;
  char headers[2048]; /* --header lines, each ending in \r\n ("" none) */
  const char *sub, *sub2; /* subscription texts; churn alternates them */
  wsb_mode mode;
  long expect;      /* events each connection should get (EVENTS) */
  long idle_ms;     /* EVENTS: stop after this long without an event */
  long timeout_ms;  /* each phase's limit */
  long churn_ms;
  long linger_ms;   /* after RECEIVED, wait before closing: the runner samples
                       the gateway's CPU before the disconnects begin */
  int proto2;       /* speak wsgw.2 (wsb_proto2.c); 0: the old protocol, untouched */
  long reconnect_after; /* wsgw.2 EVENTS: after this many events a connection
                           drops and reconnects with its positions, once (0: never) */
  int deflate;      /* offer permessage-deflate; the 101 must accept it */
  int deflate_nct;  /* --deflate-no-takeover: the offer names server_no_context_takeover
                       and the 101 must answer it (each message inflated alone) */
} wsb_opts;

/* What a process tells its coordinator, three times: when every connection
 * is set up (READY), when it stopped counting (RECEIVED), after closing
 * (FINAL). Times are CLOCK_MONOTONIC ns unless named _rt (CLOCK_REALTIME). */
enum { WSB_REP_READY = 1, WSB_REP_RECEIVED, WSB_REP_FINAL,
       WSB_REP_AWAY,     /* RECOVER: every connection closed, waiting for SIGUSR1 */
       WSB_REP_RESUMED };/* RECOVER: every connection reconnected and answered */

typedef struct wsb_report {
  uint32_t kind;
  uint64_t conns, ready, errors;
  uint64_t hs_first_ns, hs_last_ns; /* first connect started, last accept seen */
  uint64_t events, lost, ooo;
  uint64_t emit_first_rt, recv_last_rt;
  uint64_t churn_reqs, churn_start_ns, churn_last_ns;
  wsb_hist hs;    /* connect -> accept message, us */
  wsb_hist lat;   /* emitter's stamp -> receipt, us */
  wsb_hist churn; /* subscription request -> reply, us */
  /* wsgw.2 only (zero otherwise) */
  uint64_t dups;            /* an event whose seq this connection already had */
  uint64_t replayed;        /* after a reconnect, stamped before its reply came */
  uint64_t early;           /* events before the subscription reply (tolerated) */
  uint64_t bytes;           /* event payload bytes (envelopes) */
  uint64_t rec_ok, rec_expired, rec_unknown; /* recovery statuses in replies */
  uint64_t notices;         /* unsolicited {"recovery": ...} messages */
  uint64_t resumed;         /* reconnections that got their reply */
  uint64_t resume_events, resume_bytes; /* new events after a reconnect started */
  uint64_t resume_first_ns, resume_last_ns; /* first reconnect started, last reply */
  uint64_t caught_last_ns;  /* last reconnected connection got all it expected */
  wsb_hist resume_hs;       /* reconnect start -> subscription reply, us */
  wsb_hist catchup;         /* reconnect start -> the last expected event, us */
  /* Bytes on the wire (frame headers and payloads as received, before any
   * inflating), of all frames and of the events' frames; the events'
   * payloads once inflated; how many event frames came compressed (RSV1)
   * and how many plain. */
  uint64_t wire_bytes, ev_wire_bytes, ev_bytes;
  uint64_t zframes, pframes;
  /* Connections that inflated with a kept context (the 101 left out
   * server_no_context_takeover and a compressed message came): inflaters
   * made, a reconnect's fresh one counted again. */
  uint64_t zctx;
  char first_error[160];
} wsb_report;

typedef struct wsb_proc wsb_proc;
typedef struct wsb_c2 wsb_c2; /* a wsgw.2 connection's positions (wsb_proto2.c) */

typedef enum {
  WSB_C_IDLE = 0,   /* not started */
  WSB_C_CONNECTING, /* TCP connect in flight */
  WSB_C_UPGRADING,  /* request sent, waiting for 101 */
  WSB_C_ACCEPTING,  /* 101 seen, waiting for {"accept": true, ...} */
  WSB_C_SUBSCRIBING,
  WSB_C_READY,
  WSB_C_CLOSED
} wsb_conn_state;

typedef struct wsb_conn {
  uv_tcp_t tcp;
  wsb_proc *p;
  uint32_t idx;
  uint8_t state;
  uint8_t churn_flip;   /* which of sub/sub2 goes next */
  uint8_t churn_busy;   /* a churn request is out */
  uint8_t complete;     /* got --expect events, or failed after setup */
  uint8_t was_ready;    /* reached READY once (counts towards lost) */
  uint8_t resuming;     /* set up again after a drop, with positions (wsgw.2) */
  uint8_t bounce;       /* closing on purpose: reconnect once the handle is closed */
  uint8_t pmd;          /* the 101 accepted permessage-deflate: RSV1 frames allowed */
  uint8_t pmd_kept;     /* ... without server_no_context_takeover: the server keeps its
                           context, so this connection keeps its own inflater (inf) */
  uint64_t t0_ns;       /* connect start, or churn request sent */
  uint64_t last_seq, received;
  char key[25];         /* Sec-WebSocket-Key, to check the server's accept */
  uint8_t *acc;         /* bytes of an incomplete frame, kept between reads */
  uint32_t acc_len, acc_cap;
  wsb_c2 *c2;           /* wsgw.2 only; NULL on the old protocol */
  z_stream *inf;        /* pmd_kept: made at the first compressed message, never reset,
                           freed with the handle (~40 KiB, wsb_inflate.c) */
} wsb_conn;

struct wsb_proc {
  uv_loop_t *loop;
  const wsb_opts *o;
  long n;             /* connections of this process */
  long source_base;   /* connection index offset (spreads source addresses) */
  wsb_conn *conns;
  long next, in_flight, settled, complete, open;
  long churn_out;     /* churn requests waiting for their reply */
  long window;
  int stopping;       /* closing everything; failures no longer count */
  int churning;
  int received;       /* RECEIVED was reported: only closing is left */
  int phase;          /* RECOVER: WSB_P_* */
  long resume_n, resume_settled; /* RECOVER: connections to reconnect, done */
  uint64_t last_event_ms, phase_start_ms;
  uv_timer_t timer;
  uv_signal_t sigterm;
  uv_signal_t sigusr1; /* RECOVER: the runner's "events are out, come back" */
  int report_fd;
  uint64_t rng;
  char rbuf[65536];   /* every read lands here and is consumed at once */
  z_stream inf;       /* --deflate: one inflater, reset per message, for connections
                         answered server_no_context_takeover (wsb_inflate.c) */
  int inf_ready;
  uint8_t *zbuf;      /* the message inflated last */
  size_t zbuf_cap;
  wsb_report rep;
};

/* RECOVER phases; other modes stay in SETUP. */
enum { WSB_P_SETUP = 0, WSB_P_AWAY, WSB_P_RESUMING, WSB_P_COUNTING };

uint64_t wsb_now_ns(void);    /* CLOCK_MONOTONIC */
uint64_t wsb_now_rt_ns(void); /* CLOCK_REALTIME */
uint64_t wsb_rand(wsb_proc *p);

/* wsb_conn.c */
int wsb_conn_start(wsb_conn *c);
void wsb_conn_send_text(wsb_conn *c, const char *text, size_t len);
void wsb_conn_churn_next(wsb_conn *c);
void wsb_conn_close(wsb_conn *c);
int wsb_conn_restart(wsb_conn *c); /* a closed connection, again, with positions */

/* wsb_proto2.c: the wsgw.2 side of a connection. Each returns 0, or -1 with
 * a reason in why (at most 96 bytes). */
int wsb2_attach(wsb_conn *c);  /* allocates c->c2 (once) */
void wsb2_detach(wsb_conn *c); /* frees it */
void wsb2_mark_resume(wsb_conn *c); /* reconnect starting: stamp it */
int wsb2_event(wsb_conn *c, const uint8_t *d, size_t len, uint64_t now_rt, char *why);
int wsb2_reply(wsb_conn *c, const uint8_t *d, size_t len, char *why); /* reply or notice */
/* The subscription to send: --sub with "positions" for every group known. */
int wsb2_sub_text(wsb_conn *c, char *out, size_t cap, size_t *len);
/* 1 once --reconnect-after events came (then never again): drop and reconnect. */
int wsb2_bounce_due(wsb_conn *c);
/* wsb_inflate.c: a compressed message's payload, inflated into the
 * process's buffer (*out valid until the next call). kept NULL: with the
 * process's stream, reset first (server_no_context_takeover); else with
 * that connection's stream, which must have inflated every earlier
 * compressed message of the connection, in order. 0, or -1 when it is not
 * a valid deflate message (or too big, or, kept, one that ends the stream). */
int wsb_inflate_init(wsb_proc *p);
void wsb_inflate_end(wsb_proc *p);
int wsb_inflate(wsb_proc *p, z_stream *kept, const uint8_t *in, size_t len,
                const uint8_t **out, size_t *out_len);
/* A connection's own inflater (counted in rep.zctx), NULL when out of
 * memory; wsb_inflate_free(NULL) does nothing. */
z_stream *wsb_inflate_new(wsb_proc *p);
void wsb_inflate_free(z_stream *zs);
/* wsbench.c: what a connection tells its process. */
void wsb_proc_error(wsb_proc *p, wsb_conn *c, const char *what);
void wsb_proc_settled(wsb_proc *p, wsb_conn *c); /* ready, or failed in setup */
void wsb_proc_complete(wsb_proc *p, wsb_conn *c); /* got --expect events */
void wsb_proc_closed(wsb_proc *p, wsb_conn *c);
void wsb_proc_resumed(wsb_proc *p, wsb_conn *c); /* a reconnect answered, or failed */
void wsb_proc_caught_up(wsb_proc *p, wsb_conn *c); /* a reconnected one has --expect */

#endif
