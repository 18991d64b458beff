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

/* {"user":7,"csrftoken":"abc","objects":{...}}: what later receives need.
 * Returned by cJSON_PrintUnformatted: release with cJSON_free. */
static char *wk_handle__session_new(long long user_id, const char *csrftoken,
                                   const char *objects_json) {
  char uid[32];
  char *text = NULL;
  cJSON *o = cJSON_CreateObject();
  snprintf(uid, sizeof uid, "%lld", user_id); /* exact, unlike a double */
  if (o && cJSON_AddRawToObject(o, "user", uid) &&
      (!csrftoken || cJSON_AddStringToObject(o, "csrftoken", csrftoken)) &&
      (!objects_json || cJSON_AddRawToObject(o, "objects", objects_json)))
    text = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return text;
}

/* Accepts id's user with session (and, outside echo, the greeting). The
 * reply names the user (the gateway joins the user's control key, which a
 * kick targets) and when the access ends (id->expires: the gateway closes
 * the connection a refresh window after it). */
static int wk_handle__accept(const chan_msg *m, const wk_auth_identity *id,
                            const char *session, int echo, char **reply,
                            size_t *len) {
  char greeting[64];
  chan_text t = {greeting, 0};
  chan_reply r;
  long long user_id = id->user_id;
  wk_handle__reply_init(&r, m);
  r.accept = 1;
  r.session_json = (char *)session;
  r.user = (uint64_t)user_id;
  r.expires = id->expires > 0 ? (uint64_t)id->expires : 0;
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

static int wk_handle__connect(const wk_handle_ctx *ctx, const chan_msg *m,
                             time_t now, char **reply, size_t *len) {
  int echo = wk_handle__is_echo(m);
  wk_auth_identity id;
  char reason[128], csrf[WK_HANDLE_CSRF_MAX];
  if (echo && !ctx->echo)
    return wk_handle__refuse(m, "echo is disabled", reply, len);
  if (wk_auth_check(ctx->auth, m, now, &id, reason, sizeof reason) != 0)
    return wk_handle__refuse(m, reason, reply, len);
  /* A cookie token is ambient: only pages of an allowed origin may use it. */
  if (wk_auth_origin_check(m, id.source, ctx->allowed_origins, reason,
                           sizeof reason) != 0) {
    wk_auth_identity_free(&id);
    return wk_handle__refuse(m, reason, reply, len);
  }
  int has_csrf = wk_auth_msg_cookie_unique(m, "csrftoken", csrf, sizeof csrf);
  if (has_csrf < 0) {
    wk_auth_identity_free(&id);
    return wk_handle__refuse(m, has_csrf == -2
                                    ? "conflicting csrftoken cookies"
                                    : "unusable csrftoken cookie",
                             reply, len);
  }
  char *session = wk_handle__session_new(id.user_id, has_csrf ? csrf : NULL,
                                        id.objects_json);
  if (!session) {
    wk_auth_identity_free(&id);
    return -1;
  }
  int rc;
  if (strlen(session) > CHAN_SESSION_MAX)
    rc = wk_handle__refuse(m, "session too large (objects claim)", reply, len);
  else
    rc = wk_handle__accept(m, &id, session, echo, reply, len);
  wk_auth_identity_free(&id);
  cJSON_free(session);
  return rc;
}

/* --- receive ------------------------------------------------------------ */

/* Reads the session the gateway sent back into s (borrowing from *root,
 * which the caller deletes). -1 when there is no authenticated user. */
static int wk_handle__session_read(const chan_msg *m, cJSON **root,
                                  wk_session *s) {
  const cJSON *user, *csrf, *objects;
  memset(s, 0, sizeof *s);
  *root = m->session_json ? cJSON_Parse(m->session_json) : NULL;
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

static int wk_handle__subscribe(const wk_handle_ctx *ctx, const chan_msg *m,
                               const wk_session *s, char **reply,
                               size_t *len) {
  wk_subscribe_result res;
  chan_reply r;
  if (wk_subscribe_apply(m->data ? m->data : "", m->data_len, m->groups,
                         m->n_groups, s, ctx->policy, ctx->max_groups,
                         &res) != 0)
    return -1;
  wk_metrics_subscription(res.has_groups);
  wk_handle__reply_init(&r, m);
  r.texts = res.texts;
  r.n_texts = res.n_texts;
  r.has_groups = res.has_groups;
  r.groups = res.groups;
  r.n_groups = res.n_groups;
  log_debug("subscribe", "user=%lld ok=%d groups=%zu texts=%zu", s->user_id,
            res.has_groups, res.n_groups, res.n_texts);
  int rc = wk_handle__encode(&r, reply, len);
  wk_subscribe_result_free(&res);
  return rc;
}

/* --- refresh ------------------------------------------------------------ */

/* {"token": "<new credential>"} on an open connection (docs/PROTOCOL.md,
 * "Refreshing the credential"): the same user's valid credential moves
 * the connection's expiry (the reply's "expires") and replaces its grants;
 * anything else is refused with an error text and changes nothing.
 * Returns 1 when the message is not a refresh (it goes on to the
 * subscription protocol, which refuses "token" as an unknown key there
 * was before), else what wk_handle__encode returns. */
static int wk_handle__refresh(const wk_handle_ctx *ctx, const chan_msg *m,
                              const wk_session *s, time_t now, char **reply,
                              size_t *len) {
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
  char text[192], reason[128];
  const char *error = NULL;
  wk_auth_identity id = {0};
  for (const cJSON *k = root->child; k && !error; k = k->next)
    if (strcmp(k->string, "token") != 0 && strcmp(k->string, "xrftoken") != 0)
      error = "a refresh takes only token (and xrftoken)";
  if (!error && !cJSON_IsString(tok)) error = "token must be a string";
  if (!error && wk_auth_check_token(ctx->auth, tok->valuestring, now, &id, reason,
                                    sizeof reason) != 0)
    error = reason;
  if (!error && id.user_id != s->user_id) error = "another user";
  cJSON_Delete(root);
  chan_reply r;
  chan_text t = {text, 0};
  wk_handle__reply_init(&r, m);
  r.texts = &t;
  r.n_texts = 1;
  char *session = NULL;
  if (error) {
    t.len = (size_t)snprintf(text, sizeof text, "{\"error\": \"token refused: %s\"}", error);
    log_info("refresh_refused", "user=%lld reason=\"%s\"", s->user_id, error);
    wk_metrics_refresh(0);
  } else {
    session = wk_handle__session_new(id.user_id, s->csrftoken, id.objects_json);
    if (!session || strlen(session) > CHAN_SESSION_MAX) {
      wk_auth_identity_free(&id);
      cJSON_free(session);
      return wk_handle__say(m, "{\"error\": \"token refused: session too large\"}", 0,
                            reply, len);
    }
    r.session_json = session;
    r.expires = id.expires > 0 ? (uint64_t)id.expires : 0;
    t.len = (size_t)snprintf(text, sizeof text, "{\"refreshed\": true, \"expires\": %lld}",
                             id.expires);
    log_info("refresh_accepted", "user=%lld expires=%lld", s->user_id, id.expires);
    wk_metrics_refresh(1);
  }
  wk_auth_identity_free(&id);
  int rc = wk_handle__encode(&r, reply, len);
  cJSON_free(session);
  return rc;
}

static int wk_handle__receive(const wk_handle_ctx *ctx, const chan_msg *m,
                             time_t now, char **reply, size_t *len) {
  cJSON *root;
  wk_session s;
  if (ctx->echo && wk_handle__is_echo(m)) return wk_handle__echo(m, reply, len);
  if (m->is_binary)
    return wk_handle__say(m, wk_handle_binary_error, 0, reply, len);
  if (wk_handle__session_read(m, &root, &s) != 0) {
    /* Only a gateway bug gets here: it never forwards a receive for a
     * connection the worker did not accept. */
    log_warn("receive_without_session", "order=%llu",
             (unsigned long long)m->order);
    cJSON_Delete(root);
    return wk_handle__say(m, NULL, WK_HANDLE_CLOSE_INTERNAL, reply, len);
  }
  int rc = wk_handle__refresh(ctx, m, &s, now, reply, len);
  if (rc == 1) rc = wk_handle__subscribe(ctx, m, &s, reply, len);
  cJSON_Delete(root);
  return rc;
}

/* --- entry point -------------------------------------------------------- */

int wk_handle_message(const wk_handle_ctx *ctx, const chan_msg *m, time_t now,
                      char **reply, size_t *reply_len) {
  *reply = NULL;
  *reply_len = 0;
  switch (m->kind) {
    case CHAN_MSG_CONNECT:
      return wk_handle__connect(ctx, m, now, reply, reply_len);
    case CHAN_MSG_RECEIVE:
      return wk_handle__receive(ctx, m, now, reply, reply_len);
    case CHAN_MSG_DISCONNECT:
      log_debug("disconnect", "code=%d", m->code);
      return 0; /* the gateway forgets the connection; nothing to say */
  }
  return 0;
}
