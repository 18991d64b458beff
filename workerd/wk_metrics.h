/*
 * wk_metrics.h - workerd's counters and its admin endpoint: Prometheus
 * metrics (/metrics), liveness (/healthz) and readiness (/readyz) over
 * HTTP/1.1 on [worker] metrics_listen (empty, the default: off, since
 * several workers usually share a host; each instance gets its own port).
 *
 * The counters are process-wide (one worker, one registry) and atomic: the
 * consumer thread bumps them, the endpoint's thread reads them.
 *
 * Owns: the counters, the endpoint's thread and socket, and the text of
 * the worker's metrics (wk_redeliver's own counters included). Must not: block the consumer (an increment is one
 * relaxed atomic add), log or expose anything of a message's content, or
 * handle signals (its thread blocks them all; main's handler must run on
 * the consumer's thread to cut its sleeps short).
 */
#ifndef WK_METRICS_H
#define WK_METRICS_H

#include <stdint.h>

#include "chan_msg.h"
#include "prom.h"

typedef enum {
  WK_METRICS_ERR_UNKNOWN_QUEUE = 0, /* a delivery from an unexpected consumer */
  WK_METRICS_ERR_DECODE,            /* not a valid channel message: dropped */
  WK_METRICS_ERR_HANDLER,           /* out of memory while handling */
  WK_METRICS_ERR_REPLY_CHANNEL,     /* unusable reply_channel: reply dropped */
  WK_METRICS_ERR_PUBLISH,           /* publishing the reply failed */
  WK_METRICS_ERR_N
} wk_metrics_err;

/* Why a websocket.connect was refused, in classes a dashboard can show. */
typedef enum {
  WK_METRICS_AUTH_MISSING = 0, /* no token anywhere */
  WK_METRICS_AUTH_MALFORMED,   /* a token that cannot be read */
  WK_METRICS_AUTH_EXPIRED,
  WK_METRICS_AUTH_INVALID,     /* bad signature, unknown token, other claims */
  WK_METRICS_AUTH_POLICY,      /* authenticated but refused (echo off, csrf
                                  cookie, session too large) */
  WK_METRICS_AUTH_N
} wk_metrics_auth_reason;

/* The class of a refusal reason. The reasons are fixed phrases (wk_auth.h,
 * wk_handle.c); a phrase this does not know counts as invalid. */
wk_metrics_auth_reason wk_metrics_auth_class(const char *reason);

void wk_metrics_message(chan_msg_kind kind);
void wk_metrics_replies(unsigned n); /* n replies published (one AMQP message) */
/* A batch of n channel messages consumed; a batch of n replies published. */
void wk_metrics_batch(unsigned n);
void wk_metrics_reply_batch(unsigned n);
void wk_metrics_error(wk_metrics_err e);
void wk_metrics_auth_accepted(void);
void wk_metrics_auth_rejected(const char *reason);
void wk_metrics_subscription(int applied);
void wk_metrics_refresh(int accepted);

/* A re-check of a connection's application grants and how many object
 * groups it removed. */
typedef enum {
  WK_METRICS_RECHECK_KEPT = 0,
  WK_METRICS_RECHECK_REVOKED,
  WK_METRICS_RECHECK_UNAVAILABLE,
  WK_METRICS_RECHECK_N
} wk_metrics_recheck_result;
void wk_metrics_recheck(wk_metrics_recheck_result r, size_t removed);
/* Handling time of one delivery (decode, handle, publish), in us. */
void wk_metrics_handled(uint64_t us);
uint64_t wk_metrics_now_us(void);
/* 1: connected and consuming; 0: the connection is gone. */
void wk_metrics_amqp(int up);
void wk_metrics_connect_failed(void);

/* Ready = connected to the broker and consuming. */
int wk_metrics_ready(void);
void wk_metrics_render(strbuf *b);

/* Starts the endpoint's thread on spec ("" or NULL: off, returns 0).
 * -1 (logged) when the address is invalid or cannot be bound. */
int wk_metrics_start(const char *spec);
/* Stops and joins the thread (within a poll interval). Idempotent. */
void wk_metrics_stop(void);

#endif
