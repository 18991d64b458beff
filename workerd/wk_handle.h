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
#include "wk_cache.h"
#include "wk_hook.h"
#include "wk_policy.h"

/* With [worker] echo on, connections to this path get their messages back
 * unchanged (conformance tests). */
#define WK_HANDLE_ECHO_PATH "/websocket/echo"

typedef struct wk_handle_ctx {
  const wk_auth *auth; /* NULL: no tokens (the application admits) */
  const wk_policy *policy;
  size_t max_groups; /* entries per subscription request */
  int echo;          /* 1: serve WK_HANDLE_ECHO_PATH */
  /* gateway.allowed_origins: where a token that came by cookie may be used
   * from (wk_auth_origin_check); NULL or "": the Host's own origin only. */
  const char *allowed_origins;
  /* auth.connect_url: ask the application who connects (after a token,
   * when auth is set too); NULL or "": off. */
  const char *connect_url;
  /* auth.subscribe_url: ask the application about "object" ids that the
   * session's grants do not cover; NULL or "": off. */
  const char *subscribe_url;
  wk_cache *cache; /* the application's subscribe answers; NULL: none */
  /* auth.recheck_interval, seconds: a reply that leaves the connection
   * holding groups the subscribe hook granted carries "recheck" (now +
   * this), and the gateway sends a re-check then; 0: never. */
  long long recheck_s;
} wk_handle_ctx;

/* A message waiting for the application: one or more HTTP requests (a
 * connect: one; a subscription: one per "object" channel with ids to ask
 * about), whose answers make the reply. Holds copies of everything it
 * needs: the message it came from may be freed at once. */
typedef struct wk_handle_call wk_handle_call;

/* One request of a call; pointers borrowed from the call. */
typedef struct wk_handle_request {
  const char *url;
  const wk_hook_header *headers;
  size_t n_headers;
  const char *body;
  size_t body_len;
} wk_handle_request;

/*
 * Handles m at time now. Returns 0 with *reply set to the malloc'd reply JSON
 * (caller frees) or to NULL when m wants no reply (disconnect); -1 when out
 * of memory (nothing to publish). When call is not NULL and the answer
 * needs the application, *call is set instead (and *reply stays NULL): the
 * caller makes its requests and finishes it with wk_handle_call_reply.
 * With call NULL such a message is answered as if the application could
 * not be reached.
 */
int wk_handle_message(const wk_handle_ctx *ctx, const chan_msg *m, time_t now,
                      char **reply, size_t *reply_len, wk_handle_call **call);

size_t wk_handle_call_requests(const wk_handle_call *c);
/* Where the reply goes (the message's reply_channel). */
const char *wk_handle_call_reply_channel(const wk_handle_call *c);
void wk_handle_call_request(const wk_handle_call *c, size_t i,
                            wk_handle_request *out);
/* The answer to request i (wk_hook_done_fn's arguments). Returns what the
 * done function returns: 0 when usable, else the error kind. */
int wk_handle_call_answer(wk_handle_call *c, size_t i, wk_hook_outcome outcome,
                          wk_hook_err kind, long status, const char *body,
                          size_t len);
/* 1 once every request was answered (or failed). */
int wk_handle_call_done(const wk_handle_call *c);
/* The reply, once done (as wk_handle_message's *reply); 0 or -1. */
int wk_handle_call_reply(const wk_handle_ctx *ctx, wk_handle_call *c,
                         time_t now, char **reply, size_t *reply_len);
void wk_handle_call_free(wk_handle_call *c);

/* The text a client gets when a subscription needed the application and
 * it could not answer (docs/PROTOCOL.md). */
#define WK_HANDLE_HOOK_UNAVAILABLE \
  "{\"error\": \"access check unavailable, try again later\"}"

#endif
