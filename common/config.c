/*
 * config.c - settings from defaults, an INI file, the environment and flags.
 *
 * Owns: the four sources and their order, the value syntax of each type,
 * range checks, secret files, and the --help / --check-config output. Must
 * not: know what any setting means (the program's table says that), exit
 * the process, or print a secret (--help shows no secret default, and an
 * error names the setting, never a secret's value).
 *
 * The INI file is read by libinih through our own line reader, for three
 * reasons: inih does not tell its handler the line number (the reader
 * counts lines, so errors say FILE:LINE); inih would silently cut an
 * overlong line (the reader refuses it); and inih treats an indented line
 * as the continuation of the previous value, which here would silently
 * replace it (the reader strips the indentation, so such a line is a key or
 * a syntax error). Cost: lines are limited to inih's buffer (about 200
 * bytes); a longer secret belongs in a <key>_file anyway.
 */
#include "config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CFG_ENV_PREFIX "WSGW_"
#define CFG_NAME_MAX 128
#define CFG_REASON_MAX 256
#define CFG_SECRET_MAX 4096 /* first line of a secret file */

/* How a setting was given within one source; giving both forms of a secret
 * in the same source is refused rather than resolved by a hidden rule. */
enum { CFG_FORM_NONE = 0, CFG_FORM_VALUE = 1, CFG_FORM_FILE = 2 };

/* Sections some program of the project reads: a table that does not use one
 * of these skips it (so all programs can share one file); any other section
 * name is a typo. */
static const char *const cfg_known_sections[] = {
    "amqp", "log", "gateway", "worker", "auth", "groups", "metrics", "chanctl",
    "history", "emit", "compression"};

typedef struct cfg_ctx {
  const cfg_opt *opts;
  size_t n;
  void *conf;
  unsigned char *seen; /* per option: CFG_FORM_* in the current source */
  /* INI pass */
  FILE *fp;
  const char *path;
  int line;
  int first_handler_error; /* line of the first error the handler reported */
  int line_too_long;
  char bad_section[64]; /* last unknown section reported, to say it once */
} cfg_ctx;

static void cfg__err(const char *where, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void cfg__err(const char *where, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s: %s\n", where, msg);
}

static void *cfg__slot(const cfg_ctx *ctx, size_t i) {
  return (char *)ctx->conf + ctx->opts[i].offset;
}

/* Secrets are wiped before their memory goes back to the allocator, so a
 * later heap dump or reuse does not show them. */
static void cfg__free_str(char **p, unsigned flags) {
  if (!*p) return;
  if (flags & CFG_SECRET) explicit_bzero(*p, strlen(*p));
  free(*p);
  *p = NULL;
}

void cfg_free(const cfg_opt *opts, size_t n_opts, void *conf) {
  for (size_t i = 0; i < n_opts; i++) {
    if (opts[i].type != CFG_STR) continue;
    cfg__free_str((char **)((char *)conf + opts[i].offset), opts[i].flags);
  }
}

/* ---- value syntax ---------------------------------------------------- */

typedef struct cfg_unit {
  const char *suffix;
  long mult;
} cfg_unit;

/* Sizes are 1024-based whatever the spelling; "kb"/"mb" are refused rather
 * than guessed (1000 or 1024?). */
static const cfg_unit cfg_byte_units[] = {
    {"", 1},          {"k", 1L << 10}, {"kib", 1L << 10}, {"m", 1L << 20},
    {"mib", 1L << 20}, {"g", 1L << 30}, {"gib", 1L << 30}};
static const cfg_unit cfg_ms_units[] = {
    {"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};

/* A decimal integer, the whole text. */
static int cfg__parse_long(const char *s, long *out, char *why, size_t whylen) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (end == s || *end != '\0' || isspace((unsigned char)s[0])) {
    snprintf(why, whylen, "not an integer");
    return -1;
  }
  if (errno == ERANGE) {
    snprintf(why, whylen, "too large");
    return -1;
  }
  *out = v;
  return 0;
}

/* Digits followed by one of units' suffixes (case-insensitive). */
static int cfg__parse_unit(const char *s, const cfg_unit *units, size_t n_units,
                          long *out, char *why, size_t whylen) {
  size_t digits = strspn(s, "0123456789");
  if (digits == 0) {
    snprintf(why, whylen, "expected a number with an optional unit");
    return -1;
  }
  errno = 0;
  unsigned long long v = strtoull(s, NULL, 10);
  for (size_t i = 0; i < n_units; i++) {
    if (strcasecmp(s + digits, units[i].suffix) != 0) continue;
    if (errno == ERANGE || v > (unsigned long long)(LONG_MAX / units[i].mult)) {
      snprintf(why, whylen, "too large");
      return -1;
    }
    *out = (long)v * units[i].mult;
    return 0;
  }
  snprintf(why, whylen, "unknown unit '%s'", s + digits);
  return -1;
}

static int cfg__parse_bool(const char *s, int *out, char *why, size_t whylen) {
  static const char *const yes[] = {"true", "yes", "on", "1"};
  static const char *const no[] = {"false", "no", "off", "0"};
  for (size_t i = 0; i < 4; i++) {
    if (strcasecmp(s, yes[i]) == 0) return *out = 1, 0;
    if (strcasecmp(s, no[i]) == 0) return *out = 0, 0;
  }
  snprintf(why, whylen, "expected true/false, yes/no, on/off or 1/0");
  return -1;
}

/* The largest unit that divides v exactly: 60000 -> "1m", 1536 -> "1536". */
static void cfg__format_units(long v, const cfg_unit *units, size_t n_units,
                             long base, const char *base_suffix, char *buf,
                             size_t len) {
  const char *suffix = base_suffix;
  long mult = base;
  for (size_t i = 0; i < n_units; i++) {
    if (units[i].suffix[0] && units[i].mult > mult && v % units[i].mult == 0 &&
        v != 0) {
      mult = units[i].mult;
      suffix = units[i].suffix;
    }
  }
  snprintf(buf, len, "%ld%s", v / mult, suffix);
}

static void cfg__format_long(cfg_type type, long v, char *buf, size_t len) {
  static const cfg_unit bytes_shown[] = {{"KiB", 1L << 10},
                                         {"MiB", 1L << 20},
                                         {"GiB", 1L << 30}};
  static const cfg_unit ms_shown[] = {{"s", 1000}, {"m", 60000},
                                      {"h", 3600000}};
  if (type == CFG_BYTES) {
    cfg__format_units(v, bytes_shown, 3, 1, "", buf, len);
  } else if (type == CFG_MS) {
    cfg__format_units(v, ms_shown, 3, 1, "ms", buf, len);
  } else {
    snprintf(buf, len, "%ld", v);
  }
}

static int cfg__check_range(const cfg_opt *o, long v, char *why,
                           size_t whylen) {
  if ((o->min == 0 && o->max == 0) || (v >= o->min && v <= o->max)) return 0;
  char lo[32], hi[32];
  cfg__format_long(o->type, o->min, lo, sizeof lo);
  cfg__format_long(o->type, o->max, hi, sizeof hi);
  snprintf(why, whylen, "out of range (%s to %s)", lo, hi);
  return -1;
}

/* Parses text as option o's type and stores it; conf is untouched on
 * error. */
static int cfg__store(const cfg_opt *o, void *slot, const char *text,
                     char *why, size_t whylen) {
  long v = 0;
  int rc;
  switch (o->type) {
    case CFG_STR: {
      char *copy = strdup(text);
      if (!copy) {
        snprintf(why, whylen, "out of memory");
        return -1;
      }
      cfg__free_str(slot, o->flags);
      *(char **)slot = copy;
      return 0;
    }
    case CFG_BOOL:
      return cfg__parse_bool(text, (int *)slot, why, whylen);
    case CFG_INT:
      rc = cfg__parse_long(text, &v, why, whylen);
      break;
    case CFG_BYTES:
      rc = cfg__parse_unit(text, cfg_byte_units,
                          sizeof cfg_byte_units / sizeof *cfg_byte_units, &v,
                          why, whylen);
      break;
    case CFG_MS:
      rc = cfg__parse_unit(text, cfg_ms_units,
                          sizeof cfg_ms_units / sizeof *cfg_ms_units, &v, why,
                          whylen);
      break;
    default:
      snprintf(why, whylen, "unknown setting type");
      return -1;
  }
  if (rc < 0 || cfg__check_range(o, v, why, whylen) < 0) return -1;
  *(long *)slot = v;
  return 0;
}

/* ---- secret files ---------------------------------------------------- */

/* Reads until a newline, EOF or a full buffer; works on pipes too. */
static ssize_t cfg__read_line(int fd, char *buf, size_t cap) {
  size_t got = 0;
  while (got < cap && !memchr(buf, '\n', got)) {
    ssize_t n = read(fd, buf + got, cap - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (n == 0) break;
    got += (size_t)n;
  }
  return (ssize_t)got;
}

/*
 * Returns the first line of path (newline and a CR before it removed),
 * malloc'd, or NULL with a reason. A regular file readable by everyone is
 * refused: the point of a secret file is that other users cannot read it.
 * Group-readable is accepted (root:service 0640 is the usual deployment).
 * Devices and pipes (/dev/stdin, systemd credentials passed as fds) are not
 * checked: their mode says nothing useful.
 */
static char *cfg__read_secret(const char *path, char *why, size_t whylen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(why, whylen, "cannot open %s: %s", path, strerror(errno));
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & S_IROTH)) {
    close(fd);
    snprintf(why, whylen, "%s is readable by every user; chmod o-r it",
             path);
    return NULL;
  }
  char buf[CFG_SECRET_MAX + 1];
  ssize_t got = cfg__read_line(fd, buf, sizeof buf);
  int saved = errno;
  close(fd);
  char *out = NULL;
  if (got < 0) {
    snprintf(why, whylen, "cannot read %s: %s", path, strerror(saved));
  } else {
    char *nl = memchr(buf, '\n', (size_t)got);
    size_t len = nl ? (size_t)(nl - buf) : (size_t)got;
    if (len > 0 && buf[len - 1] == '\r') len--;
    if (!nl && (size_t)got == sizeof buf) {
      snprintf(why, whylen, "%s: first line longer than %d bytes", path,
               CFG_SECRET_MAX);
    } else if (len == 0) {
      snprintf(why, whylen, "%s: first line is empty", path);
    } else if (memchr(buf, '\0', len)) {
      snprintf(why, whylen, "%s: contains a NUL byte", path);
    } else if (!(out = strndup(buf, len))) {
      snprintf(why, whylen, "out of memory");
    }
  }
  explicit_bzero(buf, sizeof buf);
  return out;
}

/* ---- applying one setting -------------------------------------------- */

/* Index of section.key, or of a secret given as section.<key>_file
 * (*is_file set); -1 when the table has neither. */
static long cfg__find(const cfg_ctx *ctx, const char *sec, size_t seclen,
                     const char *key, size_t keylen, int *is_file) {
  static const char file_suffix[] = "_file";
  const size_t sfx = sizeof file_suffix - 1;
  for (size_t i = 0; i < ctx->n; i++) {
    const cfg_opt *o = &ctx->opts[i];
    if (strlen(o->section) != seclen || memcmp(o->section, sec, seclen) != 0)
      continue;
    size_t olen = strlen(o->key);
    if (olen == keylen && memcmp(o->key, key, keylen) == 0) {
      *is_file = 0;
      return (long)i;
    }
    if ((o->flags & CFG_SECRET) && keylen == olen + sfx &&
        memcmp(o->key, key, olen) == 0 &&
        memcmp(key + olen, file_suffix, sfx) == 0) {
      *is_file = 1;
      return (long)i;
    }
  }
  return -1;
}

/* Sets option i from text (or from the file text names, when is_file);
 * where is how the user gave it, for the message. */
static int cfg__set(cfg_ctx *ctx, size_t i, int is_file, const char *text,
                   const char *where) {
  const cfg_opt *o = &ctx->opts[i];
  int form = is_file ? CFG_FORM_FILE : CFG_FORM_VALUE;
  if (ctx->seen[i] && ctx->seen[i] != form) {
    cfg__err(where, "%s.%s and %s.%s_file both given; keep one", o->section,
            o->key, o->section, o->key);
    return -1;
  }
  ctx->seen[i] = (unsigned char)form;
  char why[CFG_REASON_MAX];
  if (!is_file) {
    if (cfg__store(o, cfg__slot(ctx, i), text, why, sizeof why) == 0) return 0;
    cfg__err(where, "invalid value for %s.%s: %s", o->section, o->key, why);
    return -1;
  }
  char *secret = cfg__read_secret(text, why, sizeof why);
  if (!secret) {
    cfg__err(where, "secret file for %s.%s: %s", o->section, o->key, why);
    return -1;
  }
  int rc = cfg__store(o, cfg__slot(ctx, i), secret, why, sizeof why);
  explicit_bzero(secret, strlen(secret));
  free(secret);
  if (rc < 0) cfg__err(where, "invalid value in %s: %s", text, why);
  return rc;
}

/* The caller's struct may hold garbage: every slot cleared makes cfg_free
 * safe whatever happens next. */
static void cfg__clear(const cfg_ctx *ctx) {
  for (size_t i = 0; i < ctx->n; i++) {
    void *slot = cfg__slot(ctx, i);
    switch (ctx->opts[i].type) {
      case CFG_STR: *(char **)slot = NULL; break;
      case CFG_BOOL: *(int *)slot = 0; break;
      default: *(long *)slot = 0; break;
    }
  }
}

static int cfg__apply_defaults(cfg_ctx *ctx, const char *prog) {
  cfg__clear(ctx);
  for (size_t i = 0; i < ctx->n; i++) {
    const cfg_opt *o = &ctx->opts[i];
    if (!o->def) continue; /* no default: NULL or 0 */
    char why[CFG_REASON_MAX];
    if (cfg__store(o, cfg__slot(ctx, i), o->def, why, sizeof why) < 0) {
      /* A bug in the program's table, not in the user's input. */
      fprintf(stderr, "%s: bad built-in default for %s.%s: %s\n", prog,
              o->section, o->key, why);
      return -1;
    }
  }
  return 0;
}

/* ---- the INI file ---------------------------------------------------- */

static int cfg__at_eof(FILE *fp) {
  int c = getc(fp);
  if (c == EOF) return 1;
  ungetc(c, fp);
  return 0;
}

/* inih's fgets: counts lines, refuses overlong ones, strips indentation
 * (see the top of this file). */
static char *cfg__ini_reader(char *str, int num, void *stream) {
  cfg_ctx *ctx = stream;
  if (ctx->line_too_long || !fgets(str, num, ctx->fp)) return NULL;
  ctx->line++;
  size_t len = strlen(str);
  if (len == (size_t)num - 1 && str[len - 1] != '\n' && !cfg__at_eof(ctx->fp)) {
    char where[PATH_MAX + 16];
    snprintf(where, sizeof where, "%s:%d", ctx->path, ctx->line);
    cfg__err(where, "line longer than %d bytes", num - 2);
    ctx->line_too_long = 1;
    return NULL;
  }
  size_t indent = strspn(str, " \t");
  if (indent) memmove(str, str + indent, len - indent + 1);
  return str;
}

static int cfg__section_used(const cfg_ctx *ctx, const char *section) {
  for (size_t i = 0; i < ctx->n; i++) {
    if (ctx->opts[i].flags & CFG_SHARED) continue;
    if (strcmp(ctx->opts[i].section, section) == 0) return 1;
  }
  return 0;
}

static int cfg__section_known(const char *section) {
  for (size_t i = 0; i < sizeof cfg_known_sections / sizeof *cfg_known_sections;
       i++) {
    if (strcmp(cfg_known_sections[i], section) == 0) return 1;
  }
  return 0;
}

/* One "key = value" line; returns 0 (inih's "error") after reporting. */
static int cfg__ini_key(cfg_ctx *ctx, const char *where, const char *section,
                       const char *name, const char *value) {
  if (!section[0]) {
    cfg__err(where, "key '%s' outside any [section]", name);
    return 0;
  }
  if (!cfg__section_used(ctx, section)) {
    if (cfg__section_known(section)) { /* another program's */
      int is_file;
      long i = cfg__find(ctx, section, strlen(section), name, strlen(name),
                        &is_file);
      if (i < 0 || !(ctx->opts[i].flags & CFG_SHARED)) return 1;
      return cfg__set(ctx, (size_t)i, is_file, value, where) == 0;
    }
    if (strcmp(ctx->bad_section, section) == 0) return 0; /* said once */
    snprintf(ctx->bad_section, sizeof ctx->bad_section, "%s", section);
    cfg__err(where, "unknown section [%s]", section);
    return 0;
  }
  int is_file;
  long i = cfg__find(ctx, section, strlen(section), name, strlen(name),
                    &is_file);
  if (i < 0) {
    cfg__err(where, "unknown key '%s' in [%s]", name, section);
    return 0;
  }
  return cfg__set(ctx, (size_t)i, is_file, value, where) == 0;
}

static int cfg__ini_handler(void *user, const char *section, const char *name,
                           const char *value) {
  cfg_ctx *ctx = user;
  char where[PATH_MAX + 16];
  snprintf(where, sizeof where, "%s:%d", ctx->path, ctx->line);
  int ok = cfg__ini_key(ctx, where, section, name, value);
  if (!ok && !ctx->first_handler_error) ctx->first_handler_error = ctx->line;
  return ok;
}

static int cfg__load_file(cfg_ctx *ctx, const char *path) {
  ctx->fp = fopen(path, "r");
  if (!ctx->fp) {
    cfg__err(path, "cannot read config file: %s", strerror(errno));
    return -1;
  }
  ctx->path = path;
  int rc = ini_parse_stream(cfg__ini_reader, ctx, cfg__ini_handler, ctx);
  int read_error = ferror(ctx->fp);
  fclose(ctx->fp);
  ctx->fp = NULL;
  if (read_error) {
    cfg__err(path, "read error");
    return -1;
  }
  /* inih returns the first bad line, ours or its own; a line the handler
   * did not report is one inih could not parse. */
  if (rc > 0 && rc != ctx->first_handler_error) {
    char where[PATH_MAX + 16];
    snprintf(where, sizeof where, "%s:%d", path, rc);
    cfg__err(where, "syntax error (expected [section] or key = value)");
  }
  return rc != 0 || ctx->line_too_long ? -1 : 0;
}

/* ---- the environment ------------------------------------------------- */

/* WSGW_<SECTION>_<KEY><suffix>, upper case, anything not alphanumeric
 * (dots, dashes) as '_'. */
static void cfg__env_name(const cfg_opt *o, const char *suffix, char *buf,
                         size_t len) {
  snprintf(buf, len, CFG_ENV_PREFIX "%s_%s%s", o->section, o->key, suffix);
  for (char *p = buf; *p; p++) {
    if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 'a' + 'A');
    else if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
      *p = '_';
  }
}

/* An empty variable counts as unset: service managers and compose files
 * commonly write "VAR=" to mean "not given". */
static int cfg__load_env(cfg_ctx *ctx) {
  for (size_t i = 0; i < ctx->n; i++) {
    const cfg_opt *o = &ctx->opts[i];
    char name[CFG_NAME_MAX];
    cfg__env_name(o, "", name, sizeof name);
    const char *v = getenv(name);
    if (v && *v && cfg__set(ctx, i, 0, v, name) < 0) return -1;
    if (!(o->flags & CFG_SECRET)) continue;
    cfg__env_name(o, "_FILE", name, sizeof name);
    v = getenv(name);
    if (v && *v && cfg__set(ctx, i, 1, v, name) < 0) return -1;
  }
  return 0;
}

/* ---- flags ----------------------------------------------------------- */

typedef struct cfg_flag {
  const char *name; /* after "--" */
  size_t namelen;
  const char *value; /* NULL: none */
  long opt;          /* table index, -1 for built-ins/unknown */
  int is_file;
} cfg_flag;

static int cfg__is_bool_word(const char *s) {
  int b;
  char why[8];
  return cfg__parse_bool(s, &b, why, sizeof why) == 0;
}

static int cfg__flag_is(const cfg_flag *f, const char *name) {
  return strlen(name) == f->namelen && memcmp(f->name, name, f->namelen) == 0;
}

/*
 * Parses the flag at argv[*i] (which starts with "--") and advances *i past
 * its value. A bool flag without "=" takes the next argument only when that
 * is a bool word, so "--x.enabled" alone means true. Returns -1 (reported
 * unless quiet) on an unknown flag or a missing value.
 */
static int cfg__next_flag(const cfg_ctx *ctx, int argc, char **argv, int *i,
                         int quiet, cfg_flag *f) {
  const char *arg = argv[*i];
  f->name = arg + 2;
  const char *eq = strchr(f->name, '=');
  f->namelen = eq ? (size_t)(eq - f->name) : strlen(f->name);
  f->value = eq ? eq + 1 : NULL;
  f->opt = -1;
  f->is_file = 0;
  char shown[CFG_NAME_MAX];
  snprintf(shown, sizeof shown, "--%.*s", (int)f->namelen, f->name);

  if (cfg__flag_is(f, "help") || cfg__flag_is(f, "check-config")) {
    if (f->value && !quiet) cfg__err(shown, "takes no value");
    return f->value ? -1 : 0;
  }
  int takes_value = 1;
  if (!cfg__flag_is(f, "config")) {
    const char *dot = memchr(f->name, '.', f->namelen);
    if (dot) {
      f->opt = cfg__find(ctx, f->name, (size_t)(dot - f->name), dot + 1,
                        f->namelen - (size_t)(dot - f->name) - 1, &f->is_file);
    }
    if (f->opt < 0) {
      if (!quiet) cfg__err(shown, "unknown flag");
      return -1;
    }
    if (ctx->opts[f->opt].type == CFG_BOOL && !f->is_file && !f->value &&
        (*i + 1 >= argc || !cfg__is_bool_word(argv[*i + 1]))) {
      f->value = "true";
      takes_value = 0;
    }
  }
  if (!f->value && takes_value) {
    if (*i + 1 >= argc) {
      if (!quiet) cfg__err(shown, "missing value");
      return -1;
    }
    f->value = argv[++*i];
  }
  return 0;
}

typedef struct cfg_special {
  int help, check;
  const char *config;
} cfg_special;

/* First pass: only --help, --check-config and --config matter before the
 * file and the environment are read; errors wait for the second pass. */
static void cfg__scan_special(const cfg_ctx *ctx, int argc, char **argv,
                             cfg_special *sp) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) break;
    if (strcmp(argv[i], "-h") == 0) sp->help = 1;
    if (strncmp(argv[i], "--", 2) != 0) continue;
    cfg_flag f;
    if (cfg__next_flag(ctx, argc, argv, &i, 1, &f) < 0) continue;
    if (cfg__flag_is(&f, "help")) sp->help = 1;
    if (cfg__flag_is(&f, "check-config")) sp->check = 1;
    if (cfg__flag_is(&f, "config")) sp->config = f.value;
  }
}

/* Second pass: applies setting flags and keeps positional arguments. */
static int cfg__load_flags(cfg_ctx *ctx, int *argc, char **argv) {
  int out = 1, i = 1, only_positional = 0;
  for (; i < *argc; i++) {
    const char *arg = argv[i];
    if (only_positional || strncmp(arg, "--", 2) != 0) {
      argv[out++] = argv[i];
      continue;
    }
    if (arg[2] == '\0') { /* "--": the rest is positional */
      only_positional = 1;
      continue;
    }
    cfg_flag f;
    if (cfg__next_flag(ctx, *argc, argv, &i, 0, &f) < 0) return -1;
    if (f.opt < 0) continue; /* --help, --config...: done in pass one */
    char where[CFG_NAME_MAX];
    snprintf(where, sizeof where, "--%.*s", (int)f.namelen, f.name);
    if (cfg__set(ctx, (size_t)f.opt, f.is_file, f.value, where) < 0) return -1;
  }
  argv[out] = NULL;
  *argc = out;
  return 0;
}

/* ---- --help ---------------------------------------------------------- */

static const char *cfg__type_meta(cfg_type t) {
  switch (t) {
    case CFG_INT: return "N";
    case CFG_BOOL: return "BOOL";
    case CFG_BYTES: return "SIZE";
    case CFG_MS: return "DURATION";
    default: return "TEXT";
  }
}

static void cfg__print_help(const cfg_opt *opts, size_t n, const char *prog,
                           const char *usage) {
  printf("usage: %s %s\n\n", prog, usage ? usage : "[SETTINGS]");
  printf("settings: default < --config FILE < environment WSGW_SECTION_KEY "
         "< flag\n");
  printf("  %-36s %s\n", "--config FILE", "read settings from an INI file");
  printf("  %-36s %s\n", "--check-config",
         "load and check every setting, print \"config ok\", exit");
  printf("  %-36s %s\n", "--help", "print this help, exit");
  for (size_t i = 0; i < n; i++) {
    const cfg_opt *o = &opts[i];
    char flag[CFG_NAME_MAX], def[160];
    snprintf(flag, sizeof flag, "--%s.%s=%s", o->section, o->key,
             cfg__type_meta(o->type));
    if (o->flags & CFG_SECRET) {
      snprintf(def, sizeof def, "[secret; or --%s.%s_file=PATH]", o->section,
               o->key);
    } else if (o->def) {
      snprintf(def, sizeof def, "[default: %s]", o->def[0] ? o->def : "\"\"");
    } else {
      snprintf(def, sizeof def, "[no default]");
    }
    printf("  %-36s %s %s\n", flag, def, o->help ? o->help : "");
  }
  printf("\nDURATION: 250ms, 20s, 5m, 1h; a bare number is seconds.\n"
         "SIZE: 1048576, 1024k, 1KiB, 16MiB, 1m, 1g (k, m, g are 1024-based).\n"
         "BOOL: true/false, yes/no, on/off, 1/0.\n");
}

/* ---- the saved command line ------------------------------------------- */

/* argv[0..argc) and a NULL after them, in a new array. */
static char **cfg__argv_copy(int argc, char *const *argv) {
  assert(argc >= 0);
  char **copy = malloc(((size_t)argc + 1) * sizeof *copy);
  if (!copy) return NULL;
  for (int i = 0; i < argc; i++) copy[i] = argv[i];
  copy[argc] = NULL;
  return copy;
}

int cfg_cmdline_save(cfg_cmdline *c, int argc, char *const *argv) {
  c->argv = cfg__argv_copy(argc, argv);
  c->argc = c->argv ? argc : 0;
  return c->argv ? 0 : -1;
}

cfg_result cfg_reload(const cfg_cmdline *c, const cfg_opt *opts,
                      size_t n_opts, void *conf, const char *prog) {
  char **argv = c->argv ? cfg__argv_copy(c->argc, c->argv) : NULL;
  if (!argv) {
    cfg_ctx ctx = {.opts = opts, .n = n_opts, .conf = conf};
    cfg__clear(&ctx); /* cfg_load's promise: conf is cfg_free-able */
    fprintf(stderr, "%s: %s\n", prog,
            c->argv ? "out of memory" : "no saved command line");
    return CFG_EXIT_ERROR;
  }
  int argc = c->argc;
  cfg_result r = cfg_load(opts, n_opts, conf, prog, NULL, &argc, argv);
  free(argv);
  return r;
}

void cfg_cmdline_free(cfg_cmdline *c) {
  free(c->argv);
  c->argv = NULL;
  c->argc = 0;
}

/* ---- cfg_load -------------------------------------------------------- */

cfg_result cfg_load(const cfg_opt *opts, size_t n_opts, void *conf,
                    const char *prog, const char *usage, int *argc,
                    char **argv) {
  cfg_ctx ctx = {.opts = opts, .n = n_opts, .conf = conf};
  if (cfg__apply_defaults(&ctx, prog) < 0) return CFG_EXIT_ERROR;
  cfg_special sp = {0, 0, NULL};
  cfg__scan_special(&ctx, *argc, argv, &sp);
  if (sp.help) {
    cfg__print_help(opts, n_opts, prog, usage);
    return CFG_EXIT_OK;
  }
  ctx.seen = calloc(n_opts ? n_opts : 1, 1);
  if (!ctx.seen) {
    fprintf(stderr, "%s: out of memory\n", prog);
    return CFG_EXIT_ERROR;
  }
  int rc = 0;
  if (sp.config) rc = cfg__load_file(&ctx, sp.config);
  if (rc == 0) {
    memset(ctx.seen, 0, n_opts);
    rc = cfg__load_env(&ctx);
  }
  if (rc == 0) {
    memset(ctx.seen, 0, n_opts);
    rc = cfg__load_flags(&ctx, argc, argv);
  }
  free(ctx.seen);
  if (rc < 0) return CFG_EXIT_ERROR;
  /* "config ok" is the program's to say: it has checks of its own that
   * come after these (address lists, policy files). */
  return sp.check ? CFG_CHECKED : CFG_RUN;
}
