/*
 * chanctl - the operator's and the shell's tool: emit events to groups,
 * mint tokens for testing.
 *
 *   chanctl emit GROUP JSON          one event
 *   chanctl emit --stdin GROUP       one event per input line
 *                                    (--timeout SECONDS: longest wait for
 *                                    the broker's confirms, default 30)
 *   chanctl token --user ID [--ttl SECONDS] [--objects JSON]
 *   chanctl kick --user ID           close every connection of user ID on
 *                                    every gateway (4403)
 *   chanctl kick --conn CHANNEL      close one: websocket.send.QUEUE!ID as
 *                                    the gateway logs it (conn_open)
 *
 * Owns: command-line handling of its commands and the line reader for
 * --stdin. Must not: print the secret or the broker URL, or connect more
 * than once per run (a bulk emit of thousands of lines shares one
 * connection). Exit status: 0 ok (every event confirmed by the broker),
 * 1 runtime failure (some event may not have arrived), 2 usage or
 * settings, 3 kick: no gateway holds what was named.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chan_emit.h"
#include "chan_group.h"
#include "chan_names.h"
#include "chan_reply_channel.h"
#include "config.h"
#include "log.h"
#include "mq_conn.h"
#include "token.h"

#define CHANCTL_OK 0
#define CHANCTL_FAIL 1
#define CHANCTL_USAGE 2
#define CHANCTL_NOBODY 3

#define CHANCTL_LINE_MAX (1024 * 1024) /* one --stdin event */
#define CHANCTL_TTL_DEFAULT 3600
#define CHANCTL_TTL_MAX (10LL * 365 * 24 * 3600)

typedef struct chanctl_conf {
  mq_settings amqp; /* only url is read (and filled) */
  char *log_level;
  char *auth_secret;
  /* Read by the daemons; listed so that one file (or one environment)
   * serves every program without "unknown key" errors here. The [amqp]
   * ones all land in amqp_not_read, each value freeing the last. */
  char *amqp_not_read;
  char *auth_secret_previous, *auth_token_file, *auth_leeway;
} chanctl_conf;

#define SHARED "read by the daemons; accepted here so one file serves all"
/* A daemons' [amqp] row (MQ_CFG_QUEUE_ROWS) as chanctl has it: any text. */
#define CHANCTL_ACCEPT(T, m, key, type, def, lo, hi, fl, help) \
  {"amqp", #key, CFG_STR, NULL, 0, 0, 0, offsetof(T, amqp_not_read), SHARED},

static const cfg_opt chanctl_opts[] = {
    MQ_CFG_URL_ROW(MQ_CFG_OPT, chanctl_conf, amqp)
    MQ_CFG_QUEUE_ROWS(CHANCTL_ACCEPT, chanctl_conf, amqp)
    LOG_CFG_OPT(chanctl_conf, log_level)
    {"auth", "secret", CFG_STR, NULL, 0, 0, CFG_SECRET,
     offsetof(chanctl_conf, auth_secret),
     "HS256 key that signs tokens (needed by `token`)"},
    {"auth", "secret_previous", CFG_STR, NULL, 0, 0, CFG_SECRET,
     offsetof(chanctl_conf, auth_secret_previous), SHARED},
    {"auth", "token_file", CFG_STR, NULL, 0, 0, 0,
     offsetof(chanctl_conf, auth_token_file), SHARED},
    {"auth", "leeway", CFG_STR, NULL, 0, 0, 0,
     offsetof(chanctl_conf, auth_leeway), SHARED},
};
#define CHANCTL_N_OPTS (sizeof chanctl_opts / sizeof *chanctl_opts)

static const char chanctl_usage[] =
    "[SETTINGS] COMMAND ...\n"
    "\n"
    "commands:\n"
    "  emit GROUP JSON       publish one event (JSON text) to GROUP\n"
    "  emit --stdin GROUP    publish each line of standard input as one event\n"
    "                        (blank lines skipped, lines up to 1 MiB; stops\n"
    "                        at the first failure and names its line)\n"
    "  emit ... --timeout S  wait up to S seconds (default 30) for the broker\n"
    "                        to confirm the events; exit 0 only when it\n"
    "                        confirmed every one\n"
    "  token --user ID [--ttl SECONDS] [--objects JSON]\n"
    "                        print a token for user ID signed with [auth]\n"
    "                        secret; --ttl defaults to 3600, --objects is\n"
    "                        the object grants, e.g. '{\"job_events\": [42]}'\n"
    "  kick --user ID        close every connection of user ID on every gateway\n"
    "                        (close code 4403)\n"
    "  kick --conn CHANNEL   close one connection: CHANNEL is its reply channel,\n"
    "                        websocket.send.QUEUE!ID (gatewayd logs it: conn_open)\n"
    "\n"
    "exit status: 0 ok, 1 failure, 2 usage or settings error, 3 kick: no\n"
    "gateway holds that user's connections, or that connection's gateway is gone";

/* The commands' own options; taken out of argv before cfg_load sees it. */
typedef struct chanctl_args {
  int use_stdin;
  const char *user, *ttl, *objects, *timeout, *conn;
} chanctl_args;

/* Matches "--name", "--name=V" or "--name V" at argv[*i]; *val gets V (NULL
 * for a valueless option). Returns 1 on a match, -1 on a missing value. */
static int chanctl__match(int argc, char **argv, int *i, const char *name,
                         int has_value, const char **val) {
  size_t n = strlen(name);
  const char *a = argv[*i];
  if (strncmp(a, name, n) != 0 || (a[n] != '\0' && a[n] != '=')) return 0;
  if (!has_value) {
    if (a[n] == '=') return -1;
    *val = NULL;
    return 1;
  }
  if (a[n] == '=') {
    *val = a + n + 1;
  } else if (*i + 1 < argc) {
    *val = argv[++*i];
  } else {
    return -1;
  }
  return 1;
}

static int chanctl__take_args(int *argc, char **argv, chanctl_args *out) {
  int keep = 1;
  for (int i = 1; i < *argc; i++) {
    const char *v = NULL;
    int m;
    if (strcmp(argv[i], "--") == 0) { /* the rest is cfg_load's to split */
      while (i < *argc) argv[keep++] = argv[i++];
      break;
    }
    if ((m = chanctl__match(*argc, argv, &i, "--stdin", 0, &v)) != 0) {
      out->use_stdin = 1;
    } else if ((m = chanctl__match(*argc, argv, &i, "--user", 1, &v)) != 0) {
      out->user = v;
    } else if ((m = chanctl__match(*argc, argv, &i, "--conn", 1, &v)) != 0) {
      out->conn = v;
    } else if ((m = chanctl__match(*argc, argv, &i, "--ttl", 1, &v)) != 0) {
      out->ttl = v;
    } else if ((m = chanctl__match(*argc, argv, &i, "--objects", 1, &v)) !=
               0) {
      out->objects = v;
    } else if ((m = chanctl__match(*argc, argv, &i, "--timeout", 1, &v)) !=
               0) {
      out->timeout = v;
    } else {
      argv[keep++] = argv[i];
      continue;
    }
    if (m < 0) {
      fprintf(stderr, "chanctl: %s: missing value or bad syntax\n", argv[i]);
      return -1;
    }
  }
  argv[keep] = NULL;
  *argc = keep;
  return 0;
}

/* A positive integer up to max (--ttl, --user, --timeout). */
static int chanctl__parse_ll(const char *s, long long max, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (end == s || *end || errno || v <= 0 || v > max) return -1;
  *out = v;
  return 0;
}

/* ---- emit ------------------------------------------------------------ */

/* cJSON lets raw control bytes through inside strings; JSON.parse does
 * not. */
static int chanctl__raw_control_in_string(const char *s, size_t len) {
  int in_str = 0, esc = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (in_str && c < 0x20) return 1;
    if (esc) esc = 0;
    else if (in_str && c == '\\') esc = 1;
    else if (c == '"') in_str = !in_str;
  }
  return 0;
}

/* The body goes to browsers that JSON.parse every message: refuse what
 * would break them here, once, instead of in every tab. */
static int chanctl__json_ok(const char *s, size_t len) {
  if (chanctl__raw_control_in_string(s, len)) return 0;
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithLengthOpts(s, len, &end, 0);
  if (!j) return 0;
  cJSON_Delete(j);
  /* cJSON stops after the first value; what follows must be whitespace. */
  for (; end < s + len; end++) {
    if (!strchr(" \t\r\n", *end) || *end == '\0') return 0;
  }
  return 1;
}

/* Publishes one event without waiting for its confirm: chan_emit_close()
 * waits for all of them at the end, so a bulk emit runs at full speed. */
static int chanctl__emit_one(chan_emitter *e, const char *group,
                            const char *json, size_t len, const char *what) {
  char err[512];
  if (!chanctl__json_ok(json, len)) {
    fprintf(stderr, "chanctl: %snot valid JSON\n", what);
    return -1;
  }
  if (chan_emit_nowait(e, group, json, len, err, sizeof err) < 0) {
    fprintf(stderr, "chanctl: %s%s\n", what, err);
    return -1;
  }
  return 0;
}

/* Reads one line without its "\n" (or "\r\n"). Returns 1, 0 at EOF, -1 when
 * longer than max. getc_unlocked keeps the NUL bytes strlen would lose and
 * costs little next to a publish. */
static int chanctl__read_line(FILE *in, char *buf, size_t max, size_t *len) {
  size_t n = 0;
  int c;
  while ((c = getc_unlocked(in)) != EOF && c != '\n') {
    if (n == max) return -1;
    buf[n++] = (char)c;
  }
  if (c == EOF && n == 0) return 0;
  if (n > 0 && buf[n - 1] == '\r') n--;
  *len = n;
  return 1;
}

static int chanctl__blank(const char *s, size_t len) {
  for (size_t i = 0; i < len; i++) {
    if (s[i] != ' ' && s[i] != '\t') return 0;
  }
  return 1;
}

static int chanctl__emit_stdin(chan_emitter *e, const char *group) {
  char *line = malloc(CHANCTL_LINE_MAX); /* owner: this function */
  if (!line) {
    fprintf(stderr, "chanctl: out of memory\n");
    return CHANCTL_FAIL;
  }
  unsigned long lineno = 0, sent = 0;
  size_t len;
  int r, rc = CHANCTL_OK;
  while ((r = chanctl__read_line(stdin, line, CHANCTL_LINE_MAX, &len)) != 0) {
    char what[48];
    snprintf(what, sizeof what, "line %lu: ", ++lineno);
    if (r < 0) {
      fprintf(stderr, "chanctl: %slonger than 1 MiB\n", what);
      rc = CHANCTL_FAIL;
      break;
    }
    if (chanctl__blank(line, len)) continue;
    if (chanctl__emit_one(e, group, line, len, what) < 0) {
      rc = CHANCTL_FAIL;
      break;
    }
    sent++;
  }
  if (rc == CHANCTL_OK && ferror(stdin)) {
    fprintf(stderr, "chanctl: reading standard input: %s\n", strerror(errno));
    rc = CHANCTL_FAIL;
  }
  free(line);
  log_debug("emit_done", "group=%s events=%lu lines=%lu", group, sent, lineno);
  return rc;
}

static int chanctl__emit(const chanctl_conf *conf, const chanctl_args *a,
                        int argc, char **argv) {
  int want = a->use_stdin ? 3 : 4;
  if (argc != want) {
    fprintf(stderr, a->use_stdin ? "usage: chanctl emit --stdin GROUP\n"
                                 : "usage: chanctl emit GROUP JSON\n");
    return CHANCTL_USAGE;
  }
  const char *group = argv[2];
  if (!chan_group_name_valid(group, strlen(group))) {
    fprintf(stderr, "chanctl: invalid group name '%s'\n", group);
    return CHANCTL_USAGE;
  }
  long long timeout_s = CHAN_EMIT_TIMEOUT_MS / 1000;
  if (a->timeout && chanctl__parse_ll(a->timeout, 24 * 3600, &timeout_s) < 0) {
    fprintf(stderr, "chanctl: --timeout: expected seconds, 1 to 86400\n");
    return CHANCTL_USAGE;
  }
  char err[512];
  chan_emitter *e = chan_emit_open(conf->amqp.url, err, sizeof err);
  if (!e) {
    fprintf(stderr, "chanctl: %s\n", err);
    return CHANCTL_FAIL;
  }
  chan_emit_set_timeout(e, (int)(timeout_s * 1000));
  int rc;
  if (a->use_stdin) {
    rc = chanctl__emit_stdin(e, group);
  } else {
    rc = chanctl__emit_one(e, group, argv[3], strlen(argv[3]), "") < 0
             ? CHANCTL_FAIL
             : CHANCTL_OK;
  }
  /* Waits for the broker's confirms: only they say the events arrived. */
  if (chan_emit_close(e, err, sizeof err) < 0) {
    fprintf(stderr, "chanctl: %s\n", err);
    rc = CHANCTL_FAIL;
  }
  return rc;
}

/* ---- token ----------------------------------------------------------- */


/* {"objects": OBJECTS} for token_mint, malloc'd; NULL when objects is not a
 * JSON object. */
static char *chanctl__objects_claim(const char *objects) {
  cJSON *j = cJSON_Parse(objects);
  char *text = NULL; /* ids checked and printed exactly, as workerd reads them */
  int ok = token_objects_text(j, &text) == 0;
  cJSON_Delete(j);
  if (!ok) return NULL;
  size_t n = strlen(text) + sizeof "{\"objects\":}";
  char *out = malloc(n);
  if (out) snprintf(out, n, "{\"objects\":%s}", text);
  free(text);
  return out;
}

static int chanctl__token(const chanctl_conf *conf, const chanctl_args *a,
                         int argc) {
  long long user, ttl = CHANCTL_TTL_DEFAULT;
  if (argc != 2 || !a->user) {
    fprintf(stderr, "usage: chanctl token --user ID [--ttl SECONDS] "
                    "[--objects JSON]\n");
    return CHANCTL_USAGE;
  }
  if (chanctl__parse_ll(a->user, TOKEN_USER_MAX, &user) < 0) {
    fprintf(stderr, "chanctl: --user: expected a positive integer up to "
                    "2^53-1\n");
    return CHANCTL_USAGE;
  }
  if (a->ttl && chanctl__parse_ll(a->ttl, CHANCTL_TTL_MAX, &ttl) < 0) {
    fprintf(stderr, "chanctl: --ttl: expected seconds, 1 to %lld\n",
            CHANCTL_TTL_MAX);
    return CHANCTL_USAGE;
  }
  if (!conf->auth_secret || !conf->auth_secret[0]) {
    fprintf(stderr, "chanctl: token: no secret; set [auth] secret_file, "
                    "WSGW_AUTH_SECRET_FILE or --auth.secret_file\n");
    return CHANCTL_USAGE;
  }
  if (strlen(conf->auth_secret) < TOKEN_SECRET_MIN) {
    fprintf(stderr, "chanctl: token: auth.secret is %zu bytes; an HS256 "
                    "secret needs at least %d (make one with: head -c 32 "
                    "/dev/urandom | base64)\n", strlen(conf->auth_secret), TOKEN_SECRET_MIN);
    return CHANCTL_USAGE;
  }
  char *extra = NULL; /* owner: this function */
  if (a->objects && !(extra = chanctl__objects_claim(a->objects))) {
    fprintf(stderr, "chanctl: --objects: expected a JSON object whose ids "
                    "are integers from 0 to 2^53-1\n");
    return CHANCTL_USAGE;
  }
  token_secret secret = {(const unsigned char *)conf->auth_secret,
                         strlen(conf->auth_secret)};
  char *tok = token_mint(&secret, user, (long long)time(NULL) + ttl, extra);
  free(extra);
  if (!tok) {
    fprintf(stderr, "chanctl: token: could not mint the token\n");
    return CHANCTL_FAIL;
  }
  puts(tok);
  free(tok);
  return fflush(stdout) == 0 ? CHANCTL_OK : CHANCTL_FAIL;
}

/* ---- kick ------------------------------------------------------------ */

/* A kick goes to a control key on websocket.control (chan_names.h), with
 * mandatory: the same message an application publishes with the emitter's
 * permissions. A basic.return then means no gateway holds the key. */
static int chanctl__kick(const chanctl_conf *conf, const chanctl_args *a, int argc) {
  if (argc != 2 || !a->user == !a->conn) {
    fprintf(stderr, "usage: chanctl kick --user ID | --conn CHANNEL\n");
    return CHANCTL_USAGE;
  }
  char key[sizeof CHAN_GATEWAY_KEY_PREFIX + CHAN_QUEUE_NAME_MAX + 24];
  char body[sizeof CHAN_REPLY_PREFIX + CHAN_QUEUE_NAME_MAX + 24] = "";
  char what[sizeof body + 32];
  if (a->user) {
    long long user;
    if (chanctl__parse_ll(a->user, TOKEN_USER_MAX, &user) < 0) {
      fprintf(stderr, "chanctl: --user: expected a positive integer up to 2^53-1\n");
      return CHANCTL_USAGE;
    }
    snprintf(key, sizeof key, CHAN_USER_KEY_PREFIX "%lld", user);
    snprintf(what, sizeof what, "user %lld", user);
  } else {
    char queue[CHAN_QUEUE_NAME_MAX + 1];
    uint64_t id;
    /* Accepted with or without the websocket.send. prefix. */
    if (strncmp(a->conn, CHAN_REPLY_PREFIX, strlen(CHAN_REPLY_PREFIX)) == 0)
      snprintf(body, sizeof body, "%s", a->conn);
    else
      snprintf(body, sizeof body, CHAN_REPLY_PREFIX "%s", a->conn);
    if (chan_reply_channel_parse(body, queue, sizeof queue, &id) != 0) {
      fprintf(stderr, "chanctl: --conn: expected websocket.send.QUEUE!ID (the "
                      "channel gatewayd logs as conn_open)\n");
      return CHANCTL_USAGE;
    }
    snprintf(key, sizeof key, CHAN_GATEWAY_KEY_PREFIX "%s", queue);
    snprintf(what, sizeof what, "connection %s", body);
  }
  char err[512];
  chan_emitter *e = chan_emit_open(conf->amqp.url, err, sizeof err);
  if (!e) {
    fprintf(stderr, "chanctl: %s\n", err);
    return CHANCTL_FAIL;
  }
  int routed = 0, rc = CHANCTL_OK;
  if (chan_emit_kick(e, key, body, &routed, err, sizeof err) < 0) {
    fprintf(stderr, "chanctl: kick %s: %s\n", what, err);
    rc = CHANCTL_FAIL;
  } else if (!routed) {
    fprintf(stderr, "chanctl: kick %s: no gateway holds %s\n", what,
            a->user ? "a connection of that user"
                   : "that connection (it is closed, or its gateway is gone)");
    rc = CHANCTL_NOBODY;
  } else {
    printf("kicked %s (its gateways close %s with 4403)\n", what,
           a->user ? "every connection of it" : "it");
  }
  if (chan_emit_close(e, err, sizeof err) < 0 && rc == CHANCTL_OK) {
    fprintf(stderr, "chanctl: %s\n", err);
    rc = CHANCTL_FAIL;
  }
  return rc;
}

/* ---- main ------------------------------------------------------------ */

static int chanctl__run(const chanctl_conf *conf, const chanctl_args *a,
                       int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: chanctl %s\n(chanctl --help for more)\n",
            "[SETTINGS] emit|token|kick ...");
    return CHANCTL_USAGE;
  }
  const char *cmd = argv[1];
  int is_emit = strcmp(cmd, "emit") == 0, is_token = strcmp(cmd, "token") == 0;
  int is_kick = strcmp(cmd, "kick") == 0;
  if (!is_emit && !is_token && !is_kick) {
    fprintf(stderr, "chanctl: unknown command '%s' (emit, token, kick)\n", cmd);
    return CHANCTL_USAGE;
  }
  if ((is_emit && (a->user || a->ttl || a->objects || a->conn)) ||
      (is_token && (a->use_stdin || a->timeout || a->conn)) ||
      (is_kick && (a->use_stdin || a->timeout || a->ttl || a->objects))) {
    fprintf(stderr, "chanctl: %s: option not valid for this command\n", cmd);
    return CHANCTL_USAGE;
  }
  if (is_kick) return chanctl__kick(conf, a, argc);
  return is_emit ? chanctl__emit(conf, a, argc, argv)
                 : chanctl__token(conf, a, argc);
}

int main(int argc, char **argv) {
  chanctl_args args = {0, NULL, NULL, NULL, NULL, NULL};
  if (chanctl__take_args(&argc, argv, &args) < 0) return CHANCTL_USAGE;
  chanctl_conf conf;
  memset(&conf, 0, sizeof conf); /* amqp's members outside the table too */
  cfg_result r = cfg_load(chanctl_opts, CHANCTL_N_OPTS, &conf, "chanctl",
                          chanctl_usage, &argc, argv);
  if (r == CFG_CHECKED) printf("config ok\n"); /* chanctl has no checks of its own */
  int rc = r == CFG_EXIT_OK || r == CFG_CHECKED ? CHANCTL_OK : CHANCTL_USAGE;
  if (r == CFG_RUN) {
    log_level level;
    if (log_level_parse(conf.log_level, &level) < 0) {
      fprintf(stderr, "chanctl: log.level: expected debug, info, warn or "
                      "error\n");
    } else {
      log_init("chanctl", level);
      rc = chanctl__run(&conf, &args, argc, argv);
    }
  }
  cfg_free(chanctl_opts, CHANCTL_N_OPTS, &conf);
  return rc;
}
