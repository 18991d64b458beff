/*
 * wk_policy.c - the group policy: which channel keys exist and who may join
 * their groups.
 *
 * Owns: the [groups] section of the config file (read here with its own inih
 * handler, so config.c stays a generic settings table), the three access
 * rules and the value lists of open channels. Must not: read other sections, or do anything per request beyond a
 * lookup and a comparison (it runs for every subscription entry).
 */
#include "wk_policy.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chan_group.h"

/* Without value lists, as before: a deployment that had no [groups]
 * section keeps accepting what it did (deploy/wsgw.ini.example lists AWX's
 * values). */
static const wk_policy_entry wk_policy_awx[] = {
    {"jobs", WK_POLICY_OPEN, NULL},
    {"schedules", WK_POLICY_OPEN, NULL},
    {"inventories", WK_POLICY_OPEN, NULL},
    {"ad_hoc_command_events", WK_POLICY_OBJECT, NULL},
    {"job_events", WK_POLICY_OBJECT, NULL},
    {"workflow_events", WK_POLICY_OBJECT, NULL},
    {"project_update_events", WK_POLICY_OBJECT, NULL},
    {"inventory_update_events", WK_POLICY_OBJECT, NULL},
    {"system_job_events", WK_POLICY_OBJECT, NULL},
    {"control", WK_POLICY_USER, NULL},
};

int wk_policy_default(wk_policy *p) {
  size_t n = sizeof wk_policy_awx / sizeof wk_policy_awx[0];
  p->entries = malloc(sizeof wk_policy_awx);
  p->n = 0;
  if (!p->entries) return -1;
  memcpy(p->entries, wk_policy_awx, sizeof wk_policy_awx);
  p->n = n;
  return 0;
}

void wk_policy_free(wk_policy *p) {
  for (size_t i = 0; i < p->n; i++) free(p->entries[i].values);
  free(p->entries);
  p->entries = NULL;
  p->n = 0;
}

const char *wk_policy_kind_name(wk_policy_kind kind) {
  switch (kind) {
    case WK_POLICY_OPEN: return "open";
    case WK_POLICY_OBJECT: return "object";
    case WK_POLICY_USER: return "user";
  }
  return "?";
}

static int wk_policy__kind_parse(const char *s, wk_policy_kind *out) {
  static const wk_policy_kind kinds[] = {WK_POLICY_OPEN, WK_POLICY_OBJECT,
                                         WK_POLICY_USER};
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    if (strcmp(s, wk_policy_kind_name(kinds[i])) == 0) {
      *out = kinds[i];
      return 0;
    }
  }
  return -1;
}

int wk_policy_find(const wk_policy *p, const char *key, wk_policy_kind *kind) {
  for (size_t i = 0; i < p->n; i++) {
    if (strcmp(p->entries[i].key, key) == 0) {
      *kind = p->entries[i].kind;
      return 1;
    }
  }
  return 0;
}

int wk_policy_value_allowed(const wk_policy *p, const char *key, const char *value) {
  char needle[70];
  for (size_t i = 0; i < p->n; i++) {
    if (strcmp(p->entries[i].key, key) != 0) continue;
    if (!p->entries[i].values) return 1;
    if (!value || strlen(value) > 64 || strchr(value, ',')) return 0;
    snprintf(needle, sizeof needle, ",%s,", value);
    return strstr(p->entries[i].values, needle) != NULL;
  }
  return 1;
}

/* --- loading ------------------------------------------------------------ */

/* State of one ini_parse run. The first error wins: inih reports its line. */
typedef struct wk_policy_load_ctx {
  wk_policy *p;
  size_t cap;
  FILE *fp;
  int line_too_long;
  char reason[160];
} wk_policy_load_ctx;

static int wk_policy__load_fail(wk_policy_load_ctx *ctx, const char *reason,
                               const char *name) {
  if (!ctx->reason[0])
    snprintf(ctx->reason, sizeof ctx->reason, "%s: %s", reason, name);
  return 0;
}

static int wk_policy__add(wk_policy_load_ctx *ctx, const char *key,
                         wk_policy_kind kind, char *values) {
  wk_policy *p = ctx->p;
  if (p->n == ctx->cap) {
    size_t cap = ctx->cap ? ctx->cap * 2 : 16;
    wk_policy_entry *e = realloc(p->entries, cap * sizeof *e);
    if (!e) return -1;
    p->entries = e;
    ctx->cap = cap;
  }
  snprintf(p->entries[p->n].key, sizeof p->entries[p->n].key, "%s", key);
  p->entries[p->n].kind = kind;
  p->entries[p->n].values = values;
  p->n++;
  return 0;
}

static char *wk_policy__trim(char *s) {
  s += strspn(s, " \t");
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = '\0';
  return s;
}

/* "a, b,c" -> ",a,b,c," in *out (malloc'd). NULL, or the reason. */
static const char *wk_policy__values_parse(char *list, char **out) {
  size_t cap = strlen(list) + 3, used = 1;
  char *v = malloc(cap), *save = NULL;
  if (!v) return "out of memory";
  v[0] = ',';
  v[1] = '\0';
  for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    tok = wk_policy__trim(tok);
    size_t n = strlen(tok);
    if (!chan_group_part_valid(tok, n)) {
      free(v);
      return "invalid value (1-64 of A-Z a-z 0-9 _ . :)";
    }
    memcpy(v + used, tok, n);
    used += n;
    v[used++] = ',';
    v[used] = '\0';
  }
  if (used == 1) {
    free(v);
    return "empty value list";
  }
  *out = v;
  return NULL;
}

/* "open", "object", "user", or "open: v1, v2" (the values an open channel
 * takes). NULL, or the reason. */
static const char *wk_policy__value_parse(const char *value, wk_policy_kind *kind,
                                          char **values) {
  char buf[4096];
  *values = NULL;
  if (snprintf(buf, sizeof buf, "%s", value) >= (int)sizeof buf) return "line too long";
  char *colon = strchr(buf, ':');
  if (colon) *colon = '\0';
  if (wk_policy__kind_parse(wk_policy__trim(buf), kind) != 0)
    return "policy must be open, object or user";
  if (!colon) return NULL;
  if (*kind != WK_POLICY_OPEN) return "a value list is for open channels only";
  return wk_policy__values_parse(colon + 1, values);
}

static int wk_policy__on_ini(void *user, const char *section, const char *name,
                            const char *value) {
  wk_policy_load_ctx *ctx = user;
  wk_policy_kind kind, seen;
  char *values;
  const char *why;
  if (strcmp(section, "groups") != 0) return 1; /* config.c's business */
  if (!chan_group_part_valid(name, strlen(name)))
    return wk_policy__load_fail(ctx, "invalid channel name", name);
  if (wk_policy_find(ctx->p, name, &seen))
    return wk_policy__load_fail(ctx, "duplicate channel", name);
  if ((why = wk_policy__value_parse(value, &kind, &values)) != NULL)
    return wk_policy__load_fail(ctx, why, name);
  if (wk_policy__add(ctx, name, kind, values) != 0) {
    free(values);
    return wk_policy__load_fail(ctx, "out of memory", name);
  }
  return 1;
}

/* Reads lines as config.c does, so both agree on the file: indentation is
 * stripped (inih would take an indented line as the continuation of the
 * previous value) and an overlong line is an error, not silently cut. */
static char *wk_policy__reader(char *str, int num, void *stream) {
  wk_policy_load_ctx *ctx = stream;
  if (ctx->line_too_long || !fgets(str, num, ctx->fp)) return NULL;
  size_t len = strlen(str);
  if (len == (size_t)num - 1 && str[len - 1] != '\n' && !feof(ctx->fp)) {
    int c = getc(ctx->fp);
    if (c != EOF) {
      ctx->line_too_long = 1;
      snprintf(ctx->reason, sizeof ctx->reason, "line too long");
      return NULL;
    }
  }
  size_t indent = strspn(str, " \t");
  if (indent) memmove(str, str + indent, len - indent + 1);
  return str;
}

/* Parses fp (where names it in errors) into p, or the default when it has
 * no [groups] entries. */
static int wk_policy__load_fp(wk_policy *p, FILE *fp, const char *where,
                             char *err, size_t errlen) {
  wk_policy_load_ctx ctx = {.p = p, .fp = fp};
  int rc = ini_parse_stream(wk_policy__reader, &ctx, wk_policy__on_ini, &ctx);
  if (rc != 0 || ctx.line_too_long) {
    if (rc > 0)
      snprintf(err, errlen, "%s:%d: %s", where, rc,
               ctx.reason[0] ? ctx.reason : "syntax error");
    else
      snprintf(err, errlen, "%s: %s", where,
               ctx.reason[0] ? ctx.reason : "out of memory");
    wk_policy_free(p);
    return -1;
  }
  if (p->n > 0) return 0;
  if (wk_policy_default(p) != 0) {
    snprintf(err, errlen, "%s: out of memory", where);
    return -1;
  }
  return 0;
}

int wk_policy_load(wk_policy *p, const char *path, char *err, size_t errlen) {
  p->entries = NULL;
  p->n = 0;
  if (!path) {
    if (wk_policy_default(p) == 0) return 0;
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  FILE *fp = fopen(path, "r");
  if (!fp) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return -1;
  }
  int rc = wk_policy__load_fp(p, fp, path, err, errlen);
  fclose(fp);
  return rc;
}

int wk_policy_load_string(wk_policy *p, const char *ini, char *err,
                          size_t errlen) {
  p->entries = NULL;
  p->n = 0;
  /* fmemopen may refuse a zero-length buffer; empty means the default. */
  if (!ini[0]) return wk_policy_load(p, NULL, err, errlen);
  FILE *fp = fmemopen((void *)ini, strlen(ini), "r");
  if (!fp) {
    snprintf(err, errlen, "<string>: %s", strerror(errno));
    return -1;
  }
  int rc = wk_policy__load_fp(p, fp, "<string>", err, errlen);
  fclose(fp);
  return rc;
}

/* --- access rules ------------------------------------------------------- */

/* "limit_reached_7" belongs to user 7: a non-empty suffix, '_', the uid. */
static int wk_policy__user_owns(const char *value, long long user_id) {
  char tail[32];
  int n = snprintf(tail, sizeof tail, "_%lld", user_id);
  size_t vlen = strlen(value);
  if (user_id <= 0 || n <= 0 || vlen <= (size_t)n) return 0;
  return strcmp(value + vlen - (size_t)n, tail) == 0;
}

/* One grant element against the requested id text: numbers compare as
 * integers (the claim may say 42 or "42"), strings as text. */
static int wk_policy__grant_matches(const cJSON *g, const char *value) {
  if (cJSON_IsString(g)) return strcmp(g->valuestring, value) == 0;
  if (cJSON_IsNumber(g)) {
    /* Only the canonical spelling: "042" is another group than "42". */
    char *end, canon[32];
    long long v = strtoll(value, &end, 10);
    if (*end != '\0' || end == value || (double)v != g->valuedouble) return 0;
    snprintf(canon, sizeof canon, "%lld", v);
    return strcmp(canon, value) == 0;
  }
  return 0;
}

/* Linear in the grant list: a claim rides in a token of a few KiB at most,
 * so a few hundred ids, and sorting it per request would cost more. */
static int wk_policy__object_allows(const char *key, const char *value,
                                   const cJSON *objects) {
  const cJSON *grant, *g;
  if (!cJSON_IsObject(objects)) return 0;
  grant = cJSON_GetObjectItemCaseSensitive(objects, key);
  if (cJSON_IsString(grant)) return strcmp(grant->valuestring, "*") == 0;
  if (!value || !cJSON_IsArray(grant)) return 0;
  cJSON_ArrayForEach(g, grant) {
    if (wk_policy__grant_matches(g, value)) return 1;
  }
  return 0;
}

int wk_policy_allows(wk_policy_kind kind, const char *key, const char *value,
                     long long user_id, const cJSON *objects) {
  switch (kind) {
    case WK_POLICY_OPEN: return 1;
    case WK_POLICY_OBJECT: return wk_policy__object_allows(key, value, objects);
    case WK_POLICY_USER: return value && wk_policy__user_owns(value, user_id);
  }
  return 0;
}
