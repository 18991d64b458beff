/*
 * wk_handle.c - what the worker answers to each channel message.
 *
 * Owns: connect (authenticate, greet, build the session the gateway keeps),
 * receive (subscription or echo; session and groups arrive with the
 * message), disconnect (nothing to answer), and building the reply. Must
 * not: do AMQP I/O, keep per-connection state (any worker may get the next
 * message of a connection), or log tokens, query strings or message bodies.
 */
#include "wk_handle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "chan_names.h"
#include "chan_reply.h"
#include "log.h"
#include "wk_metrics.h"
#include "wk_subscribe.h"

/* Django's csrftoken is 32 or 64 characters; anything far longer is not
 * one, and it would eat the session's 4 KiB. */
#define WK_HANDLE_CSRF_MAX 256
#define WK_HANDLE_CLOSE_INTERNAL 1011

static const char wk_handle_binary_error[] =
    "{\"error\": \"binary messages are not supported\"}";

static void wk_handle__reply_init(chan_reply *r, const chan_msg *m) {
  memset(r, 0, sizeof *r);
  r->reply_channel = m->reply_channel;
  r->order = m->order;
  r->accept = -1;
}

static int wk_handle__encode(const chan_reply *r, char **reply, size_t *len) {
  *reply = chan_reply_encode(r, len);
  if (!*reply) {
    log_error("reply_encode_failed", "order=%llu",
              (unsigned long long)r->order);
    return -1;
  }
  return 0;
}

static int wk_handle__is_echo(const chan_msg *m) {
  return m->path && strcmp(m->path, WK_HANDLE_ECHO_PATH) == 0;
}

/* --- connect ------------------------------------------------------------ */

static int wk_handle__refuse(const chan_msg *m, const char *reason,
                            char **reply, size_t *len) {
  chan_reply r;
  wk_metrics_auth_rejected(reason);
  log_info("connect_refused", "reason=\"%s\" client=%s path=%s", reason,
           m->client.host[0] ? m->client.host : "-", m->path ? m->path : "-");
  wk_handle__reply_init(&r, m);
  r.accept = 0;
  return wk_handle__encode(&r, reply, len);
}

/* The credential headers a connection was admitted with, kept in its
 * session when the application decides subscriptions (it gets them back
 * with every subscribe hook call). Any member may be NULL. */
typedef struct wk_handle_creds {
  char *cookie, *authorization, *origin, *client;
} wk_handle_creds;

static void wk_handle__creds_free(wk_handle_creds *c) {
  free(c->cookie);
  free(c->authorization);
  free(c->origin);
  free(c->client);
  memset(c, 0, sizeof *c);
}

/* From a connect message: every cookie header joined with "; " (the
 * gateway forwarded only the cookies named in forward_cookies), the first
 * Authorization and Origin, the client address. 0 or -1 (no memory). */
static int wk_handle__creds_from_msg(const chan_msg *m, wk_handle_creds *c) {
  size_t n = 0;
  memset(c, 0, sizeof *c);
  for (size_t i = 0; i < m->n_headers; i++)
    if (strcmp(m->headers[i].name, "cookie") == 0)
      n += strlen(m->headers[i].value) + 2;
  if (n) {
    c->cookie = malloc(n + 1);
    if (!c->cookie) return -1;
    c->cookie[0] = '\0';
    for (size_t i = 0; i < m->n_headers; i++) {
      if (strcmp(m->headers[i].name, "cookie") != 0) continue;
      if (c->cookie[0]) strcat(c->cookie, "; ");
      strcat(c->cookie, m->headers[i].value);
    }
  }
  const char *a = chan_msg_header(m, "authorization");
  const char *o = chan_msg_header(m, "origin");
  if ((a && !(c->authorization = strdup(a))) || (o && !(c->origin = strdup(o))) ||
      (m->client.host[0] && !(c->client = strdup(m->client.host)))) {
    wk_handle__creds_free(c);
    return -1;
  }
  return 0;
}

/* What the session holds. Every member but user_id may be 0/NULL. */
typedef struct wk_handle_session_in {
  long long user_id;
  const char *csrftoken;
  const char *objects_json;     /* token claim or hook grants, exact */
  const char *app_session_json; /* the connect hook's "session" */
  long long expires;
  const wk_handle_creds *creds;
} wk_handle_session_in;

/* {"user":7,"csrftoken":"abc","objects":{...},"app":{...},"expires":N,
 *  "credentials":{"cookie":...}}: what later receives need.
 * Returned by cJSON_PrintUnformatted: release with cJSON_free. */
static char *wk_handle__session_new(const wk_handle_session_in *in) {
  char uid[32], exp[32];
  char *text = NULL;
  cJSON *o = cJSON_CreateObject();
  snprintf(uid, sizeof uid, "%lld", in->user_id); /* exact, unlike a double */
  snprintf(exp, sizeof exp, "%lld", in->expires);
  int ok = o && cJSON_AddRawToObject(o, "user", uid) &&
           (!in->csrftoken ||
            cJSON_AddStringToObject(o, "csrftoken", in->csrftoken)) &&
           (!in->objects_json ||
            cJSON_AddRawToObject(o, "objects", in->objects_json)) &&
           (!in->app_session_json ||
            cJSON_AddRawToObject(o, "app", in->app_session_json)) &&
           (!in->expires || cJSON_AddRawToObject(o, "expires", exp));
  if (ok && in->creds) {
    const wk_handle_creds *c = in->creds;
    cJSON *cr = cJSON_AddObjectToObject(o, "credentials");
    ok = cr && (!c->cookie || cJSON_AddStringToObject(cr, "cookie", c->cookie)) &&
         (!c->authorization ||
          cJSON_AddStringToObject(cr, "authorization", c->authorization)) &&
         (!c->origin || cJSON_AddStringToObject(cr, "origin", c->origin)) &&
         (!c->client || cJSON_AddStringToObject(cr, "client", c->client));
  }
  if (ok) text = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return text;
}

/* Accepts user_id with session (and, outside echo, the greeting). The
 * reply names the user (the gateway joins the user's control key, which a
 * kick targets) and when the access ends (expires, unix seconds, 0: never;
 * the gateway closes the connection a refresh window after it). */
static int wk_handle__accept(const chan_msg *m, long long user_id,
                            long long expires, const char *session, int echo,
                            char **reply, size_t *len) {
  char greeting[64];
  chan_text t = {greeting, 0};
  chan_reply r;
  wk_handle__reply_init(&r, m);
  r.accept = 1;
  r.session_json = (char *)session;
  r.user = (uint64_t)user_id;
  r.expires = expires > 0 ? (uint64_t)expires : 0;
  /* An echo client (a conformance test) must see only its own messages. */
  if (!echo) {
    t.len = (size_t)snprintf(greeting, sizeof greeting,
                             "{\"accept\": true, \"user\": %lld}", user_id);
    r.texts = &t;
    r.n_texts = 1;
  }
  wk_metrics_auth_accepted();
  log_debug("connect_accepted", "user=%lld path=%s", user_id, m->path);
  return wk_handle__encode(&r, reply, len);
}

/* Builds the session and accepts, or refuses with too_large when it does
 * not fit the gateway's max_session. */
static int wk_handle__admit(const chan_msg *m, const wk_handle_session_in *in,
                            int echo, const char *too_large, char **reply,
                            size_t *len) {
  char *session = wk_handle__session_new(in);
  if (!session) return -1;
  int rc;
  if (strlen(session) > CHAN_SESSION_MAX)
    rc = wk_handle__refuse(m, too_large, reply, len);
  else
    rc = wk_handle__accept(m, in->user_id, in->expires, session, echo, reply, len);
  cJSON_free(session);
  return rc;
}

/* The application could not be asked or did not answer usably: 503, so
 * that the client retries later (never 403: the user may well be fine). */
static int wk_handle__unavailable(const chan_msg *m, const char *why,
                                  char **reply, size_t *len) {
  chan_reply r;
  log_info("connect_unavailable", "reason=\"%s\" client=%s", why,
           m->client.host[0] ? m->client.host : "-");
  wk_handle__reply_init(&r, m);
  r.accept = 0;
  r.status = 503;
  return wk_handle__encode(&r, reply, len);
}

static int wk_handle__hooks_on(const char *url) { return url && url[0]; }

/* A request of a call. */
typedef struct wk_handle_req {
  char *body;
  size_t body_len;
  wk_hook_header headers[5];
  size_t n_headers;
  /* subscribe: the channel and the ids asked about */
  char key[65];
  uint64_t *ids;
  size_t n_ids;
  /* the answer */
  enum { WK_REQ_WAITING = 0, WK_REQ_ANSWERED, WK_REQ_DENIED, WK_REQ_FAILED } state;
  uint64_t *allowed;
  size_t n_allowed;
  wk_hook_connect_answer connect;
} wk_handle_req;

/* A subscription's verdict on one (channel, id) before the application
 * was asked: -1 ask, 0 refused, 1 allowed (from the cache). */
typedef struct wk_handle_verdict {
  char key[65];
  uint64_t id;
  int v;
} wk_handle_verdict;

typedef enum {
  WK_CALL_CONNECT = 0,
  WK_CALL_SUBSCRIBE,
  WK_CALL_RECHECK, /* the subscribe hook, about the ids a connection holds */
  WK_CALL_REFRESH  /* the connect hook, about a refresh's new credential */
} wk_handle_call_kind;

struct wk_handle_call {
  wk_handle_call_kind kind;
  chan_msg m; /* the fields the reply needs, owned (a partial copy) */
  char *url;
  wk_handle_req *reqs;
  size_t n_reqs;
  char xff[80];
  /* connect */
  int echo;
  char *csrftoken;
  wk_handle_creds creds;
  /* subscribe */
  long long user_id;
  wk_handle_verdict *verdicts;
  size_t n_verdicts, cap_verdicts;
};

void wk_handle_call_free(wk_handle_call *c) {
  if (!c) return;
  chan_msg_free(&c->m);
  free(c->url);
  for (size_t i = 0; i < c->n_reqs; i++) {
    free(c->reqs[i].body);
    free(c->reqs[i].ids);
    free(c->reqs[i].allowed);
    wk_hook_connect_answer_free(&c->reqs[i].connect);
  }
  free(c->reqs);
  free(c->csrftoken);
  wk_handle__creds_free(&c->creds);
  free(c->verdicts);
  free(c);
}

size_t wk_handle_call_requests(const wk_handle_call *c) { return c->n_reqs; }

const char *wk_handle_call_reply_channel(const wk_handle_call *c) {
  return c->m.reply_channel;
}

void wk_handle_call_request(const wk_handle_call *c, size_t i,
                            wk_handle_request *out) {
  const wk_handle_req *r = &c->reqs[i];
  out->url = c->url;
  out->headers = r->headers;
  out->n_headers = r->n_headers;
  out->body = r->body;
  out->body_len = r->body_len;
}

int wk_handle_call_done(const wk_handle_call *c) {
  for (size_t i = 0; i < c->n_reqs; i++)
    if (c->reqs[i].state == WK_REQ_WAITING) return 0;
  return 1;
}

/* The credential headers of a request, pointing into creds. */
static void wk_handle__req_headers(wk_handle_call *c, wk_handle_req *r,
                                   const wk_handle_creds *creds,
                                   const char *hook) {
  size_t n = 0;
  if (creds->cookie) r->headers[n++] = (wk_hook_header){"Cookie", creds->cookie};
  if (creds->authorization)
    r->headers[n++] = (wk_hook_header){"Authorization", creds->authorization};
  if (creds->origin) r->headers[n++] = (wk_hook_header){"Origin", creds->origin};
  if (creds->client) {
    snprintf(c->xff, sizeof c->xff, "%s", creds->client);
    r->headers[n++] = (wk_hook_header){"X-Forwarded-For", c->xff};
  }
  r->headers[n++] = (wk_hook_header){"X-Wsgw-Hook", hook};
  r->n_headers = n;
}

/* Copies what a reply to m needs into c->m. 0 or -1. */
static int wk_handle__call_msg(wk_handle_call *c, const chan_msg *m) {
  c->m.kind = m->kind;
  c->m.order = m->order;
  c->m.client = m->client;
  /* A subscription's reply, built when the application has answered,
   * carries positions on wsgw.2 as the immediate one does. */
  c->m.protocol = m->protocol;
  c->m.reply_channel = strdup(m->reply_channel);
  c->m.path = strdup(m->path ? m->path : "");
  return c->m.reply_channel && c->m.path ? 0 : -1;
}

static char *wk_handle__print(cJSON *o, size_t *len) {
  char *text = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  if (text && len) *len = strlen(text);
  return text;
}

/* Asks the application who connects: a call of one request, or a refusal
 * when the request may not be made. */
static int wk_handle__connect_hook(const wk_handle_ctx *ctx, const chan_msg *m,
                                  int echo, const char *csrf, char **reply,
                                  size_t *len, wk_handle_call **call) {
  char reason[128];
  /* Cookies are ambient: the browser sends them to any page's websocket.
   * Without an Authorization header the cookie is the credential, so the
   * Origin rule of a cookie token applies before anyone is asked. */
  if (!chan_msg_header(m, "authorization") &&
      wk_auth_origin_check(m, WK_AUTH_COOKIE, ctx->allowed_origins, reason,
                           sizeof reason) != 0) {
    return wk_handle__refuse(m,
                             chan_msg_header(m, "origin")
                                 ? "cookie credentials from a disallowed Origin"
                                 : "cookie credentials without Origin",
                             reply, len);
  }
  if (!call) return wk_handle__unavailable(m, "no hook client", reply, len);
  wk_handle_call *c = calloc(1, sizeof *c);
  if (!c) return -1;
  c->kind = WK_CALL_CONNECT;
  c->echo = echo;
  c->n_reqs = 1;
  c->reqs = calloc(1, sizeof *c->reqs);
  cJSON *body = cJSON_CreateObject();
  if (!c->reqs || wk_handle__call_msg(c, m) != 0 ||
      wk_handle__creds_from_msg(m, &c->creds) != 0 ||
      !(c->url = strdup(ctx->connect_url)) ||
      (csrf && !(c->csrftoken = strdup(csrf))) || !body ||
      !cJSON_AddStringToObject(body, "path", m->path ? m->path : "") ||
      !cJSON_AddStringToObject(body, "client", m->client.host)) {
    cJSON_Delete(body);
    wk_handle_call_free(c);
    return -1;
  }
  c->reqs[0].body = wk_handle__print(body, &c->reqs[0].body_len);
  if (!c->reqs[0].body) {
    wk_handle_call_free(c);
    return -1;
  }
  wk_handle__req_headers(c, &c->reqs[0], &c->creds, "connect");
  *call = c;
  return 0;
}

/* The connect hook's answer into the reply. */
static int wk_handle__connect_reply(const wk_handle_ctx *ctx, wk_handle_call *c,
                                   time_t now, char **reply, size_t *len) {
  wk_handle_req *r = &c->reqs[0];
  const chan_msg *m = &c->m;
  if (r->state == WK_REQ_FAILED)
    return wk_handle__unavailable(m, "application unavailable", reply, len);
  if (r->state == WK_REQ_DENIED)
    return wk_handle__refuse(m, "refused by the application", reply, len);
  if (r->connect.expires && r->connect.expires <= (long long)now)
    return wk_handle__refuse(m, "application session expired", reply, len);
  wk_handle_session_in in = {
      .user_id = r->connect.user_id,
      .csrftoken = c->csrftoken,
      .objects_json = r->connect.grants_json,
      .app_session_json = r->connect.session_json,
      .expires = r->connect.expires,
      .creds = wk_handle__hooks_on(ctx->subscribe_url) ? &c->creds : NULL};
  return wk_handle__admit(m, &in, c->echo,
                          "session too large (credential headers, grants "
                          "or application session)",
                          reply, len);
}

static int wk_handle__connect(const wk_handle_ctx *ctx, const chan_msg *m,
                             time_t now, char **reply, size_t *len,
                             wk_handle_call **call) {
  int echo = wk_handle__is_echo(m);
  int app = wk_handle__hooks_on(ctx->connect_url);
  wk_auth_identity id;
  char reason[128], csrf[WK_HANDLE_CSRF_MAX];
  if (echo && !ctx->echo)
    return wk_handle__refuse(m, "echo is disabled", reply, len);
  int token_ok = ctx->auth && wk_auth_check(ctx->auth, m, now, &id, reason,
                                            sizeof reason) == 0;
  if (!token_ok && !app)
    return wk_handle__refuse(m, ctx->auth ? reason : "no token", reply, len);
  /* A cookie token is ambient: only pages of an allowed origin may use it. */
  if (token_ok && wk_auth_origin_check(m, id.source, ctx->allowed_origins,
                                       reason, sizeof reason) != 0) {
    wk_auth_identity_free(&id);
    return wk_handle__refuse(m, reason, reply, len);
  }
  int has_csrf = wk_auth_msg_cookie_unique(m, "csrftoken", csrf, sizeof csrf);
  if (has_csrf < 0) {
    if (token_ok) wk_auth_identity_free(&id);
    return wk_handle__refuse(m, has_csrf == -2
                                    ? "conflicting csrftoken cookies"
                                    : "unusable csrftoken cookie",
                             reply, len);
  }
  /* No valid token: the application decides (combined mode, or app only). */
  if (!token_ok)
    return wk_handle__connect_hook(ctx, m, echo, has_csrf ? csrf : NULL, reply,
                                   len, call);
  wk_handle_creds creds = {0};
  int keep_creds = wk_handle__hooks_on(ctx->subscribe_url);
  if (keep_creds && wk_handle__creds_from_msg(m, &creds) != 0) {
    wk_auth_identity_free(&id);
    return -1;
  }
  wk_handle_session_in in = {.user_id = id.user_id,
                             .csrftoken = has_csrf ? csrf : NULL,
                             .objects_json = id.objects_json,
                             .expires = id.expires,
                             .creds = keep_creds ? &creds : NULL};
  int rc = wk_handle__admit(m, &in, echo,
                            keep_creds ? "session too large (objects claim or "
                                         "credential headers)"
                                       : "session too large (objects claim)",
                            reply, len);
  wk_handle__creds_free(&creds);
  wk_auth_identity_free(&id);
  return rc;
}

/* --- receive ------------------------------------------------------------ */

/* Reads the session the gateway sent back into s (borrowing from *root,
 * which the caller deletes). -1 when there is no authenticated user. */
static int wk_handle__session_read(const char *session_json, cJSON **root,
                                  wk_session *s) {
  const cJSON *user, *csrf, *objects;
  memset(s, 0, sizeof *s);
  *root = session_json ? cJSON_Parse(session_json) : NULL;
  user = cJSON_GetObjectItemCaseSensitive(*root, "user");
  /* Written as exact digits by connect and kept exact by the gateway
   * (chan_json_print_exact in proto/); at most TOKEN_USER_MAX, a double's exact
   * range, so the number read here is the id itself. */
  if (!cJSON_IsNumber(user) || !(user->valuedouble >= 1 &&
                                 user->valuedouble <= (double)TOKEN_USER_MAX))
    return -1;
  s->user_id = (long long)user->valuedouble;
  if ((double)s->user_id != user->valuedouble) return -1; /* a fraction */
  csrf = cJSON_GetObjectItemCaseSensitive(*root, "csrftoken");
  if (cJSON_IsString(csrf)) s->csrftoken = csrf->valuestring;
  objects = cJSON_GetObjectItemCaseSensitive(*root, "objects");
  if (cJSON_IsObject(objects)) s->objects = objects;
  return 0;
}

/* The session's "credentials" (kept at connect) into c. 0 or -1. */
static int wk_handle__creds_from_session(const cJSON *root,
                                         wk_handle_creds *c) {
  const cJSON *cr = cJSON_GetObjectItemCaseSensitive(root, "credentials");
  static const char *const keys[4] = {"cookie", "authorization", "origin",
                                      "client"};
  char **dst[4] = {&c->cookie, &c->authorization, &c->origin, &c->client};
  memset(c, 0, sizeof *c);
  for (int i = 0; i < 4 && cJSON_IsObject(cr); i++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cr, keys[i]);
    if (cJSON_IsString(v) && !(*dst[i] = strdup(v->valuestring))) {
      wk_handle__creds_free(c);
      return -1;
    }
  }
  return 0;
}

/* Sends the message straight back: text as text, bytes as bytes. */
static int wk_handle__echo(const chan_msg *m, char **reply, size_t *len) {
  chan_reply r;
  chan_text t = {m->data ? m->data : "", m->data_len};
  wk_handle__reply_init(&r, m);
  if (m->is_binary) {
    r.has_bytes = 1;
    r.bytes = m->data;
    r.bytes_len = m->data_len;
  } else {
    r.texts = &t;
    r.n_texts = 1;
  }
  return wk_handle__encode(&r, reply, len);
}

/* One fixed text, membership untouched; close_code 0 keeps the socket. */
static int wk_handle__say(const chan_msg *m, const char *text, int close_code,
                         char **reply, size_t *len) {
  chan_reply r;
  chan_text t = {(char *)text, text ? strlen(text) : 0};
  wk_handle__reply_init(&r, m);
  if (text) {
    r.texts = &t;
    r.n_texts = 1;
  }
  r.close_code = close_code;
  return wk_handle__encode(&r, reply, len);
}

/* A group name "<key>-<id>" of an "object" channel: key (65 bytes) and
 * id out, 1; anything else 0. */
static int wk_handle__object_group(const wk_policy *p, const char *name,
                                   char *key, uint64_t *id) {
  const char *dash = strrchr(name, '-');
  wk_policy_kind kind;
  if (!dash || dash == name || (size_t)(dash - name) > 64) return 0;
  memcpy(key, name, (size_t)(dash - name));
  key[dash - name] = '\0';
  return wk_policy_find(p, key, &kind) && kind == WK_POLICY_OBJECT &&
         wk_hook_id_parse(dash + 1, id);
}

/* 1 when the group is held by the subscribe hook's grant: an "object"
 * channel's id that the session's objects (a JWT's claim, the connect
 * hook's grants) do not grant. Those are re-checked; the session's are
 * not (the credential is the grant, and its expiry ends it). */
static int wk_handle__hook_held(const wk_handle_ctx *ctx, const wk_session *s,
                                const char *name, char *key, uint64_t *id) {
  if (!wk_handle__object_group(ctx->policy, name, key, id)) return 0;
  return !wk_policy_allows(WK_POLICY_OBJECT, key, strrchr(name, '-') + 1,
                           s->user_id, s->objects);
}

/* The reply's "recheck": now + auth.recheck_interval when the membership
 * holds a group the subscribe hook granted, else 0 (none). */
static uint64_t wk_handle__recheck_at(const wk_handle_ctx *ctx,
                                      const wk_session *s, char *const *groups,
                                      size_t n, time_t now) {
  char key[65];
  uint64_t id;
  if (!ctx || ctx->recheck_s <= 0 || !wk_handle__hooks_on(ctx->subscribe_url))
    return 0;
  for (size_t i = 0; i < n; i++)
    if (wk_handle__hook_held(ctx, s, groups[i], key, &id))
      return (uint64_t)now + (uint64_t)ctx->recheck_s;
  return 0;
}

/* The reply of a subscription result. */
static int wk_handle__sub_reply(const wk_handle_ctx *ctx, const chan_msg *m,
                                const wk_session *s, wk_subscribe_result *res,
                                time_t now, char **reply, size_t *len) {
  chan_reply r;
  wk_metrics_subscription(res->has_groups);
  wk_handle__reply_init(&r, m);
  r.recheck = res->has_groups
                  ? wk_handle__recheck_at(ctx, s, res->groups, res->n_groups, now)
                  : wk_handle__recheck_at(ctx, s, m->groups, m->n_groups, now);
  r.texts = res->texts;
  r.n_texts = res->n_texts;
  r.has_groups = res->has_groups;
  r.groups = res->groups;
  r.n_groups = res->n_groups;
  /* wsgw.2: the positions named for the new membership, {} when none;
   * none on an error (the gateway then keeps the membership as it was). */
  r.has_positions = res->has_positions;
  r.positions = res->positions;
  r.n_positions = res->n_positions;
  log_debug("subscribe", "user=%lld ok=%d groups=%zu texts=%zu", s->user_id,
            res->has_groups, res->n_groups, res->n_texts);
  return wk_handle__encode(&r, reply, len);
}

/* wk_session's decide for "object" ids the grants do not cover. First
 * pass (the call's verdicts being collected): the cache's answer, or
 * "ask" recorded; second pass: the recorded verdicts, the application's
 * answers for the asked ones. */
typedef struct wk_handle_decider {
  wk_handle_call *c;
  wk_cache *cache;
  uint64_t now_ms;
  int second;
  int failed; /* out of memory while recording */
} wk_handle_decider;

static wk_handle_verdict *wk_handle__verdict_find(wk_handle_call *c,
                                                  const char *key,
                                                  uint64_t id) {
  for (size_t i = 0; i < c->n_verdicts; i++)
    if (c->verdicts[i].id == id && strcmp(c->verdicts[i].key, key) == 0)
      return &c->verdicts[i];
  return NULL;
}

static int wk_handle__answered(const wk_handle_call *c, const char *key,
                               uint64_t id) {
  for (size_t i = 0; i < c->n_reqs; i++) {
    const wk_handle_req *r = &c->reqs[i];
    if (strcmp(r->key, key) != 0) continue;
    if (r->state != WK_REQ_ANSWERED) return 0;
    for (size_t j = 0; j < r->n_allowed; j++)
      if (r->allowed[j] == id) return 1;
    return 0;
  }
  return 0;
}

static int wk_handle__decide(void *arg, const char *key, const char *value) {
  wk_handle_decider *d = arg;
  wk_handle_call *c = d->c;
  uint64_t id;
  /* Only ids go to the application; "abc" or "042" is refused unasked. */
  if (strlen(key) > 64 || !wk_hook_id_parse(value, &id)) return 0;
  wk_handle_verdict *v = wk_handle__verdict_find(c, key, id);
  if (d->second) {
    if (!v) return 0;
    return v->v >= 0 ? v->v : wk_handle__answered(c, key, id);
  }
  if (v) return v->v == 1;
  if (c->n_verdicts == c->cap_verdicts) {
    size_t cap = c->cap_verdicts ? c->cap_verdicts * 2 : 8;
    wk_handle_verdict *nv = realloc(c->verdicts, cap * sizeof *nv);
    if (!nv) {
      d->failed = 1;
      return 0;
    }
    c->verdicts = nv;
    c->cap_verdicts = cap;
  }
  v = &c->verdicts[c->n_verdicts++];
  snprintf(v->key, sizeof v->key, "%s", key);
  v->id = id;
  v->v = wk_cache_get(d->cache, (uint64_t)c->user_id, key, id, d->now_ms);
  wk_hook_metrics_cache(v->v >= 0);
  return v->v == 1;
}

/* One request per channel with ids to ask about, into c->reqs. 0 or -1. */
static int wk_handle__sub_requests(wk_handle_call *c, const char *url) {
  size_t n = 0;
  c->reqs = calloc(c->n_verdicts, sizeof *c->reqs);
  if (!c->reqs || !(c->url = strdup(url))) return -1;
  for (size_t i = 0; i < c->n_verdicts; i++) {
    const wk_handle_verdict *v = &c->verdicts[i];
    if (v->v >= 0) continue;
    size_t k = 0;
    while (k < n && strcmp(c->reqs[k].key, v->key) != 0) k++;
    wk_handle_req *r = &c->reqs[k];
    if (k == n) {
      n++;
      snprintf(r->key, sizeof r->key, "%s", v->key);
      r->ids = malloc(c->n_verdicts * sizeof *r->ids);
      if (!r->ids) return -1;
    }
    r->ids[r->n_ids++] = v->id;
  }
  c->n_reqs = n;
  for (size_t k = 0; k < n; k++) {
    wk_handle_req *r = &c->reqs[k];
    /* {"user": 7, "channel": "job_events", "ids": [42, 43]}: exact digits. */
    size_t cap = 96 + strlen(r->key) + r->n_ids * 18;
    char *b = malloc(cap);
    if (!b) return -1;
    size_t o = (size_t)snprintf(b, cap, "{\"user\": %lld, \"channel\": \"%s\", \"ids\": [",
                                c->user_id, r->key);
    for (size_t j = 0; j < r->n_ids; j++)
      o += (size_t)snprintf(b + o, cap - o, "%s%llu", j ? ", " : "",
                            (unsigned long long)r->ids[j]);
    o += (size_t)snprintf(b + o, cap - o, "]}");
    r->body = b;
    r->body_len = o;
    wk_handle__req_headers(c, r, &c->creds, "subscribe");
  }
  return 0;
}

/* The subscription as a call: what the reply needs, copied from m. */
static int wk_handle__sub_call_fill(wk_handle_call *c, const chan_msg *m,
                                    const cJSON *root) {
  if (wk_handle__call_msg(c, m) != 0 ||
      wk_handle__creds_from_session(root, &c->creds) != 0)
    return -1;
  c->m.is_binary = 0;
  c->m.data = malloc(m->data_len + 1);
  c->m.session_json = strdup(m->session_json);
  c->m.groups = calloc(m->n_groups + 1, sizeof *c->m.groups);
  if (!c->m.data || !c->m.session_json || !c->m.groups) return -1;
  memcpy(c->m.data, m->data ? m->data : "", m->data_len);
  c->m.data[m->data_len] = '\0';
  c->m.data_len = m->data_len;
  for (size_t i = 0; i < m->n_groups; i++) {
    if (!(c->m.groups[i] = strdup(m->groups[i]))) return -1;
    c->m.n_groups = i + 1;
  }
  return 0;
}

static int wk_handle__subscribe(const wk_handle_ctx *ctx, const chan_msg *m,
                               wk_session *s, const cJSON *root, time_t now,
                               char **reply, size_t *len, wk_handle_call **call) {
  wk_subscribe_result res;
  wk_handle_call *c = NULL;
  wk_handle_decider d = {0};
  if (wk_handle__hooks_on(ctx->subscribe_url)) {
    c = calloc(1, sizeof *c);
    if (!c) return -1;
    c->kind = WK_CALL_SUBSCRIBE;
    c->user_id = s->user_id;
    d.c = c;
    d.cache = ctx->cache;
    d.now_ms = wk_metrics_now_us() / 1000u;
    s->decide = wk_handle__decide;
    s->decide_arg = &d;
  }
  if (wk_subscribe_apply(m->data ? m->data : "", m->data_len, m->groups,
                         m->n_groups, s, ctx->policy, ctx->max_groups,
                         &res) != 0 || d.failed) {
    wk_subscribe_result_free(&res);
    wk_handle_call_free(c);
    return -1;
  }
  int ask = 0;
  for (size_t i = 0; c && i < c->n_verdicts; i++) ask |= c->verdicts[i].v < 0;
  if (!ask) { /* the grants and the cache answered everything */
    int rc = wk_handle__sub_reply(ctx, m, s, &res, now, reply, len);
    wk_subscribe_result_free(&res);
    wk_handle_call_free(c);
    return rc;
  }
  wk_subscribe_result_free(&res);
  if (!call) {
    wk_handle_call_free(c);
    return wk_handle__say(m, WK_HANDLE_HOOK_UNAVAILABLE, 0, reply, len);
  }
  if (wk_handle__sub_call_fill(c, m, root) != 0 ||
      wk_handle__sub_requests(c, ctx->subscribe_url) != 0) {
    wk_handle_call_free(c);
    return -1;
  }
  *call = c;
  return 0;
}

/* The application's answers into the subscription's reply; the answers
 * go to the cache first. */
static int wk_handle__subscribe_reply(const wk_handle_ctx *ctx,
                                      wk_handle_call *c, time_t now,
                                      char **reply, size_t *len) {
  uint64_t now_ms = wk_metrics_now_us() / 1000u;
  for (size_t i = 0; i < c->n_reqs; i++) {
    const wk_handle_req *r = &c->reqs[i];
    if (r->state == WK_REQ_FAILED) {
      log_info("subscribe_unavailable", "user=%lld channel=%s",
               c->user_id, r->key);
      wk_metrics_subscription(0);
      return wk_handle__say(&c->m, WK_HANDLE_HOOK_UNAVAILABLE, 0, reply, len);
    }
  }
  for (size_t i = 0; i < c->n_reqs; i++) {
    const wk_handle_req *r = &c->reqs[i];
    if (r->state != WK_REQ_ANSWERED) continue; /* 401/403: not cached */
    for (size_t j = 0; j < r->n_ids; j++)
      wk_cache_put(ctx->cache, (uint64_t)c->user_id, r->key, r->ids[j],
                   wk_handle__answered(c, r->key, r->ids[j]), now_ms);
  }
  cJSON *root;
  wk_session s;
  wk_subscribe_result res;
  wk_handle_decider d = {.c = c, .cache = ctx->cache, .now_ms = now_ms,
                         .second = 1};
  if (wk_handle__session_read(c->m.session_json, &root, &s) != 0) {
    cJSON_Delete(root);
    return wk_handle__say(&c->m, NULL, WK_HANDLE_CLOSE_INTERNAL, reply, len);
  }
  s.decide = wk_handle__decide;
  s.decide_arg = &d;
  s.positions = c->m.protocol == CHAN_MSG_PROTOCOL_WSGW2;
  int rc = wk_subscribe_apply(c->m.data, c->m.data_len, c->m.groups,
                              c->m.n_groups, &s, ctx->policy, ctx->max_groups,
                              &res);
  if (rc == 0) rc = wk_handle__sub_reply(ctx, &c->m, &s, &res, now, reply, len);
  wk_subscribe_result_free(&res);
  cJSON_Delete(root);
  return rc;
}

/* --- refresh ------------------------------------------------------------ */

/* The session after a refresh: the new token's user, grants and expiry;
 * the csrftoken, application data and kept credentials as they were. */
static char *wk_handle__refreshed_session(const wk_session *s,
                                          const cJSON *session_root,
                                          const wk_auth_identity *id) {
  wk_handle_creds creds;
  if (wk_handle__creds_from_session(session_root, &creds) != 0) return NULL;
  const cJSON *cr = cJSON_GetObjectItemCaseSensitive(session_root, "credentials");
  const cJSON *app = cJSON_GetObjectItemCaseSensitive(session_root, "app");
  char *app_json = cJSON_IsObject(app) ? cJSON_PrintUnformatted(app) : NULL;
  wk_handle_session_in in = {.user_id = id->user_id,
                             .csrftoken = s->csrftoken,
                             .objects_json = id->objects_json,
                             .app_session_json = app_json,
                             .expires = id->expires,
                             .creds = cJSON_IsObject(cr) ? &creds : NULL};
  char *session = wk_handle__session_new(&in);
  cJSON_free(app_json);
  wk_handle__creds_free(&creds);
  return session;
}

/* The answer to a refresh: an error text and nothing changed, or the new
 * session and expiry and {"refreshed": true, "expires": N}. */
static int wk_handle__refresh_answer(const chan_msg *m, long long user_id,
                                     const char *error, const char *session,
                                     long long expires, char **reply, size_t *len) {
  char text[192];
  chan_reply r;
  chan_text t = {text, 0};
  wk_handle__reply_init(&r, m);
  r.texts = &t;
  r.n_texts = 1;
  if (!error && (!session || strlen(session) > CHAN_SESSION_MAX))
    error = "session too large";
  if (error) {
    t.len = (size_t)snprintf(text, sizeof text, "{\"error\": \"token refused: %s\"}", error);
    log_info("refresh_refused", "user=%lld reason=\"%s\"", user_id, error);
    wk_metrics_refresh(0);
  } else {
    r.session_json = (char *)session;
    r.expires = expires > 0 ? (uint64_t)expires : 0;
    t.len = (size_t)snprintf(text, sizeof text, "{\"refreshed\": true, \"expires\": %lld}",
                             expires);
    log_info("refresh_accepted", "user=%lld expires=%lld", user_id, expires);
    wk_metrics_refresh(1);
  }
  return wk_handle__encode(&r, reply, len);
}

/* A refresh the application decides: the connect hook asked about the new
 * credential alone (as `Authorization: Bearer <it>`, without the
 * connection's cookie, so that the answer is about it), with the kept
 * Origin and client address. The connection's later hook calls carry it. */
static int wk_handle__refresh_hook(const wk_handle_ctx *ctx, const chan_msg *m,
                                   const wk_session *s, const cJSON *session_root,
                                   const char *token, wk_handle_call **call) {
  wk_handle_call *c = calloc(1, sizeof *c);
  if (!c) return -1;
  c->kind = WK_CALL_REFRESH;
  c->user_id = s->user_id;
  c->n_reqs = 1;
  c->reqs = calloc(1, sizeof *c->reqs);
  size_t alen = strlen("Bearer ") + strlen(token) + 1;
  char *auth = malloc(alen);
  cJSON *body = cJSON_CreateObject();
  int ok = c->reqs && auth && body && wk_handle__call_msg(c, m) == 0 &&
           (c->m.session_json = strdup(m->session_json)) &&
           wk_handle__creds_from_session(session_root, &c->creds) == 0 &&
           (c->url = strdup(ctx->connect_url)) &&
           cJSON_AddStringToObject(body, "path", m->path ? m->path : "") &&
           cJSON_AddStringToObject(body, "client", c->creds.client ? c->creds.client : "");
  if (ok) {
    snprintf(auth, alen, "Bearer %s", token);
    free(c->creds.cookie);
    c->creds.cookie = NULL;
    free(c->creds.authorization);
    c->creds.authorization = auth;
    auth = NULL;
    c->reqs[0].body = wk_handle__print(body, &c->reqs[0].body_len);
    body = NULL;
    ok = c->reqs[0].body != NULL;
  }
  free(auth);
  cJSON_Delete(body);
  if (!ok) {
    wk_handle_call_free(c);
    return -1;
  }
  wk_handle__req_headers(c, &c->reqs[0], &c->creds, "connect");
  *call = c;
  return 0;
}

/* The connect hook's answer about a refresh's credential. */
static int wk_handle__refresh_reply(wk_handle_call *c, time_t now, char **reply,
                                    size_t *len) {
  const wk_handle_req *r = &c->reqs[0];
  const char *error = NULL;
  if (r->state == WK_REQ_FAILED) error = "application unavailable, try again later";
  else if (r->state == WK_REQ_DENIED) error = "refused by the application";
  else if (r->connect.user_id != c->user_id) error = "another user";
  else if (r->connect.expires && r->connect.expires <= (long long)now) error = "expired";
  if (error) return wk_handle__refresh_answer(&c->m, c->user_id, error, NULL, 0, reply, len);
  cJSON *root;
  wk_session s;
  if (wk_handle__session_read(c->m.session_json, &root, &s) != 0) {
    cJSON_Delete(root);
    return wk_handle__say(&c->m, NULL, WK_HANDLE_CLOSE_INTERNAL, reply, len);
  }
  /* The application's answer replaces grants and data when it gives them. */
  const cJSON *app = cJSON_GetObjectItemCaseSensitive(root, "app");
  char *old_app = cJSON_IsObject(app) ? cJSON_PrintUnformatted(app) : NULL;
  char *old_objects = s.objects ? cJSON_PrintUnformatted(s.objects) : NULL;
  wk_handle_session_in in = {
      .user_id = c->user_id,
      .csrftoken = s.csrftoken,
      .objects_json = r->connect.grants_json ? r->connect.grants_json : old_objects,
      .app_session_json = r->connect.session_json ? r->connect.session_json : old_app,
      .expires = r->connect.expires,
      .creds = &c->creds};
  char *session = wk_handle__session_new(&in);
  int rc = wk_handle__refresh_answer(&c->m, c->user_id, NULL, session, r->connect.expires,
                                     reply, len);
  cJSON_free(session);
  cJSON_free(old_app);
  cJSON_free(old_objects);
  cJSON_Delete(root);
  return rc;
}

/* {"token": "<new credential>"} on an open connection (docs/PROTOCOL.md,
 * "Refreshing the credential"): the same user's valid credential moves
 * the connection's expiry (the reply's "expires") and replaces its grants;
 * anything else is refused with an error text and changes nothing. A
 * valid token of this worker's secrets decides at once; otherwise, with
 * the connect hook on, the application decides (a call in *call).
 * Returns 1 when the message is not a refresh (it goes on to the
 * subscription protocol, which refuses "token" as an unknown key there
 * was before), else what wk_handle__encode returns. */
static int wk_handle__refresh(const wk_handle_ctx *ctx, const chan_msg *m,
                              const wk_session *s, const cJSON *session_root,
                              time_t now, char **reply, size_t *len,
                              wk_handle_call **call) {
  static const char tag[] = "\"token\"";
  const char *data = m->data ? m->data : "";
  /* Cheap test first: a subscription never holds "token" in quotes (group
   * names have no quotes; "xrftoken" is not it). */
  int found = 0;
  for (size_t i = 0; !found && i + sizeof tag - 1 <= m->data_len; i++)
    found = data[i] == '"' && memcmp(data + i, tag, sizeof tag - 1) == 0;
  if (!found) return 1;
  cJSON *root = cJSON_ParseWithLength(data, m->data_len);
  const cJSON *tok = cJSON_GetObjectItemCaseSensitive(root, "token");
  if (!cJSON_IsObject(root) || !tok) {
    cJSON_Delete(root);
    return 1;
  }
  char reason[128];
  const char *error = NULL;
  wk_auth_identity id = {0};
  for (const cJSON *k = root->child; k && !error; k = k->next)
    if (strcmp(k->string, "token") != 0 && strcmp(k->string, "xrftoken") != 0)
      error = "a refresh takes only token (and xrftoken)";
  if (!error && !cJSON_IsString(tok)) error = "token must be a string";
  if (!error && !tok->valuestring[0]) error = "token is empty";
  int token_ok = !error && ctx->auth &&
                 wk_auth_check_token(ctx->auth, tok->valuestring, now, &id, reason,
                                     sizeof reason) == 0;
  /* Not one of our tokens: the application's credential, when it decides. */
  if (!error && !token_ok && wk_handle__hooks_on(ctx->connect_url)) {
    int rc = call ? wk_handle__refresh_hook(ctx, m, s, session_root, tok->valuestring, call)
                  : -1;
    cJSON_Delete(root);
    if (rc == 0) return 0;
    return wk_handle__refresh_answer(m, s->user_id,
                                     "application unavailable, try again later", NULL, 0,
                                     reply, len);
  }
  if (!error && !token_ok) error = ctx->auth ? reason : "this server takes no tokens";
  if (!error && id.user_id != s->user_id) error = "another user";
  cJSON_Delete(root);
  char *session = error ? NULL : wk_handle__refreshed_session(s, session_root, &id);
  int rc = wk_handle__refresh_answer(m, s->user_id, error, session, id.expires, reply, len);
  cJSON_free(session);
  wk_auth_identity_free(&id);
  return rc;
}

/* --- re-check ----------------------------------------------------------- */

/* The reply to a re-check: the membership without the removed groups
 * (has_groups only when some were), one refusal text per removed entry
 * (what a refused entry of a subscription gets), the next "recheck" when
 * hook-granted groups remain. removed[i] != 0: groups[i] goes. */
static int wk_handle__recheck_answer(const wk_handle_ctx *ctx, const chan_msg *m,
                                     const unsigned char *removed, size_t n_removed,
                                     int held_left, time_t now, char **reply,
                                     size_t *len) {
  chan_reply r;
  wk_handle__reply_init(&r, m);
  char **keep = calloc(m->n_groups + 1, sizeof *keep);
  chan_text *texts = calloc(n_removed + 1, sizeof *texts);
  int rc = -1;
  if (!keep || !texts) goto out;
  for (size_t i = 0; i < m->n_groups; i++) {
    if (!removed || !removed[i]) {
      keep[r.n_groups++] = m->groups[i];
      continue;
    }
    char key[65];
    uint64_t id;
    if (!wk_handle__object_group(ctx->policy, m->groups[i], key, &id)) continue;
    char *t = malloc(160);
    if (!t) goto out;
    texts[r.n_texts].data = t;
    texts[r.n_texts++].len = (size_t)snprintf(
        t, 160, "{\"error\": \"access denied to channel %s for resource id %llu\"}",
        key, (unsigned long long)id);
  }
  r.has_groups = n_removed > 0;
  r.groups = keep;
  r.texts = texts;
  if (held_left && ctx->recheck_s > 0)
    r.recheck = (uint64_t)now + (uint64_t)ctx->recheck_s;
  rc = wk_handle__encode(&r, reply, len);
out:
  for (size_t i = 0; texts && i < r.n_texts; i++) free(texts[i].data);
  free(texts);
  free(keep);
  return rc;
}

/* A websocket.receive with "recheck": true. The ids of "object" groups
 * the connection holds by the subscribe hook's grant go to the hook again
 * (the cache is not asked, and gets the answers): a call, or a reply
 * when there is nothing to ask (no "recheck": the gateway stops). */
static int wk_handle__recheck(const wk_handle_ctx *ctx, const chan_msg *m,
                              time_t now, char **reply, size_t *len,
                              wk_handle_call **call) {
  cJSON *root;
  wk_session s;
  if (wk_handle__session_read(m->session_json, &root, &s) != 0) {
    cJSON_Delete(root);
    return wk_handle__say(m, NULL, 0, reply, len);
  }
  int rc;
  wk_handle_call *c = calloc(1, sizeof *c);
  if (!c || !(c->verdicts = calloc(m->n_groups + 1, sizeof *c->verdicts))) {
    rc = -1;
    goto out;
  }
  c->kind = WK_CALL_RECHECK;
  c->user_id = s.user_id;
  c->cap_verdicts = m->n_groups + 1;
  for (size_t i = 0; i < m->n_groups; i++) {
    wk_handle_verdict *v = &c->verdicts[c->n_verdicts];
    if (!wk_handle__hook_held(ctx, &s, m->groups[i], v->key, &v->id)) continue;
    v->v = -1;
    c->n_verdicts++;
  }
  if (!c->n_verdicts || ctx->recheck_s <= 0 ||
      !wk_handle__hooks_on(ctx->subscribe_url)) {
    rc = wk_handle__say(m, NULL, 0, reply, len);
    goto out;
  }
  if (!call) { /* no hook client: kept, asked again next time */
    wk_metrics_recheck(WK_METRICS_RECHECK_UNAVAILABLE, 0);
    rc = wk_handle__recheck_answer(ctx, m, NULL, 0, 1, now, reply, len);
    goto out;
  }
  if (wk_handle__sub_call_fill(c, m, root) != 0 ||
      wk_handle__sub_requests(c, ctx->subscribe_url) != 0) {
    rc = -1;
    goto out;
  }
  *call = c;
  c = NULL;
  rc = 0;
out:
  wk_handle_call_free(c);
  cJSON_Delete(root);
  return rc;
}

/* The hook's answers to a re-check. Per channel: answered, the ids not in
 * "allowed" go (and the cache learns every answer); 401/403 (the
 * credential is no longer accepted, e.g. after logout), all its ids go;
 * failed (down, slow, breaker open, invalid answer), all are kept: the
 * application being down must not cut open connections off, as events
 * keep flowing to them (issue 13, part 1); the next re-check asks again. */
static int wk_handle__recheck_reply(const wk_handle_ctx *ctx, wk_handle_call *c,
                                    time_t now, char **reply, size_t *len) {
  uint64_t now_ms = wk_metrics_now_us() / 1000u;
  const chan_msg *m = &c->m;
  unsigned char *removed = calloc(m->n_groups + 1, 1);
  if (!removed) return -1;
  size_t n_removed = 0;
  int failed = 0, held_left = 0;
  for (size_t i = 0; i < c->n_reqs; i++) {
    const wk_handle_req *r = &c->reqs[i];
    failed |= r->state == WK_REQ_FAILED;
    /* 401/403: the answer is about this credential, not the user's grants
     * (another session of the user may be fine), so nothing is cached; but
     * what the cache allowed goes, or this connection's next subscription
     * would rejoin from it. */
    for (size_t j = 0; r->state == WK_REQ_DENIED && j < r->n_ids; j++)
      wk_cache_forget(ctx->cache, (uint64_t)c->user_id, r->key, r->ids[j]);
    if (r->state != WK_REQ_ANSWERED) continue;
    for (size_t j = 0; j < r->n_ids; j++)
      wk_cache_put(ctx->cache, (uint64_t)c->user_id, r->key, r->ids[j],
                   wk_handle__answered(c, r->key, r->ids[j]), now_ms);
  }
  for (size_t i = 0; i < m->n_groups; i++) {
    char key[65];
    uint64_t id;
    if (!wk_handle__object_group(ctx->policy, m->groups[i], key, &id) ||
        !wk_handle__verdict_find(c, key, id))
      continue;
    const wk_handle_req *r = NULL;
    for (size_t k = 0; k < c->n_reqs && !r; k++)
      if (strcmp(c->reqs[k].key, key) == 0) r = &c->reqs[k];
    int gone = r && (r->state == WK_REQ_DENIED ||
                     (r->state == WK_REQ_ANSWERED && !wk_handle__answered(c, key, id)));
    if (gone) {
      removed[i] = 1;
      n_removed++;
    } else {
      held_left = 1;
    }
  }
  wk_metrics_recheck(n_removed ? WK_METRICS_RECHECK_REVOKED
                     : failed  ? WK_METRICS_RECHECK_UNAVAILABLE
                               : WK_METRICS_RECHECK_KEPT,
                     n_removed);
  /* Every connection holding hook grants does one per interval: only a
   * removal is worth a line at info. */
  if (n_removed)
    log_info("recheck_revoked", "user=%lld held=%zu removed=%zu unavailable=%d",
             c->user_id, c->n_verdicts, n_removed, failed);
  else
    log_debug("recheck", "user=%lld held=%zu unavailable=%d", c->user_id,
              c->n_verdicts, failed);
  int rc = wk_handle__recheck_answer(ctx, m, removed, n_removed, held_left, now,
                                     reply, len);
  free(removed);
  return rc;
}

static int wk_handle__receive(const wk_handle_ctx *ctx, const chan_msg *m,
                             time_t now, char **reply, size_t *len,
                             wk_handle_call **call) {
  cJSON *root;
  wk_session s;
  if (m->recheck) return wk_handle__recheck(ctx, m, now, reply, len, call);
  if (ctx->echo && wk_handle__is_echo(m)) return wk_handle__echo(m, reply, len);
  if (m->is_binary)
    return wk_handle__say(m, wk_handle_binary_error, 0, reply, len);
  if (wk_handle__session_read(m->session_json, &root, &s) != 0) {
    /* Only a gateway bug gets here: it never forwards a receive for a
     * connection the worker did not accept. */
    log_warn("receive_without_session", "order=%llu",
             (unsigned long long)m->order);
    cJSON_Delete(root);
    return wk_handle__say(m, NULL, WK_HANDLE_CLOSE_INTERNAL, reply, len);
  }
  s.positions = m->protocol == CHAN_MSG_PROTOCOL_WSGW2;
  int rc = wk_handle__refresh(ctx, m, &s, root, now, reply, len, call);
  if (rc == 1) rc = wk_handle__subscribe(ctx, m, &s, root, now, reply, len, call);
  cJSON_Delete(root);
  return rc;
}

/* --- calls to the application ------------------------------------------- */

int wk_handle_call_answer(wk_handle_call *c, size_t i, wk_hook_outcome outcome,
                          wk_hook_err kind, long status, const char *body,
                          size_t len) {
  wk_handle_req *r = &c->reqs[i];
  char err[128];
  if (outcome != WK_HOOK_ANSWERED) {
    r->state = WK_REQ_FAILED;
    return kind;
  }
  if (status == 401 || status == 403) {
    r->state = WK_REQ_DENIED;
    return 0;
  }
  if (status != 200) {
    r->state = WK_REQ_FAILED;
    return WK_HOOK_ERR_STATUS;
  }
  int connect = c->kind == WK_CALL_CONNECT || c->kind == WK_CALL_REFRESH;
  int rc = connect
               ? wk_hook_parse_connect(body, len, &r->connect, err, sizeof err)
               : wk_hook_parse_subscribe(body, len, CHAN_GROUPS_MAX,
                                         &r->allowed, &r->n_allowed, err,
                                         sizeof err);
  /* An id in "allowed" that was not asked for grants nothing: the
   * second pass looks up only the ids asked. */
  if (rc != 0) {
    log_warn("hook_answer_invalid", "hook=%s reason=\"%s\"",
             connect ? "connect" : "subscribe", err);
    r->state = WK_REQ_FAILED;
    return WK_HOOK_ERR_INVALID;
  }
  r->state = WK_REQ_ANSWERED;
  return 0;
}

int wk_handle_call_reply(const wk_handle_ctx *ctx, wk_handle_call *c,
                         time_t now, char **reply, size_t *reply_len) {
  *reply = NULL;
  *reply_len = 0;
  if (c->kind == WK_CALL_CONNECT)
    return wk_handle__connect_reply(ctx, c, now, reply, reply_len);
  if (c->kind == WK_CALL_RECHECK)
    return wk_handle__recheck_reply(ctx, c, now, reply, reply_len);
  if (c->kind == WK_CALL_REFRESH) return wk_handle__refresh_reply(c, now, reply, reply_len);
  return wk_handle__subscribe_reply(ctx, c, now, reply, reply_len);
}

/* --- entry point -------------------------------------------------------- */

int wk_handle_message(const wk_handle_ctx *ctx, const chan_msg *m, time_t now,
                      char **reply, size_t *reply_len, wk_handle_call **call) {
  *reply = NULL;
  *reply_len = 0;
  if (call) *call = NULL;
  switch (m->kind) {
    case CHAN_MSG_CONNECT:
      return wk_handle__connect(ctx, m, now, reply, reply_len, call);
    case CHAN_MSG_RECEIVE:
      return wk_handle__receive(ctx, m, now, reply, reply_len, call);
    case CHAN_MSG_DISCONNECT:
      log_debug("disconnect", "code=%d", m->code);
      return 0; /* the gateway forgets the connection; nothing to say */
  }
  return 0;
}
