/*
 * wk_handle.h - one channel message in, one reply out: what the runworker
 * does for websocket.connect, websocket.receive and websocket.disconnect.
 *
 * Owns: the decisions (accept or refuse, the greeting, the session object,
 * subscriptions, echo) and turning them into a reply. Must not: do AMQP I/O
 * (wk_consumer publishes) or keep anything between messages: the session and
 * the groups come back from the gateway with every message.
 */
#ifndef WK_HANDLE_H
#define WK_HANDLE_H

#include <stddef.h>
#include <time.h>

#include "chan_msg.h"
#include "wk_auth.h"
#include "wk_policy.h"

/* With [worker] echo on, connections to this path get their messages back
 * unchanged (conformance tests). */
#define WK_HANDLE_ECHO_PATH "/websocket/echo"

typedef struct wk_handle_ctx {
  const wk_auth *auth;
  const wk_policy *policy;
  size_t max_groups; /* entries per subscription request */
  int echo;          /* 1: serve WK_HANDLE_ECHO_PATH */
  /* gateway.allowed_origins: where a token that came by cookie may be used
   * from (wk_auth_origin_check); NULL or "": the Host's own origin only. */
  const char *allowed_origins;
} wk_handle_ctx;

/*
 * Handles m at time now. Returns 0 with *reply set to the malloc'd reply JSON
 * (caller frees) or to NULL when m wants no reply (disconnect); -1 when out
 * of memory (nothing to publish).
 */
int wk_handle_message(const wk_handle_ctx *ctx, const chan_msg *m, time_t now,
                      char **reply, size_t *reply_len);

#endif
