/*
 * test_config.c - cfg_load: source order, value syntax, ranges, error
 * messages with FILE:LINE, secret files, --help and --check-config.
 *
 * Each case runs cfg_load with stdout and stderr sent to a file, and checks
 * what was printed as well as what was stored.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "unit.h"

typedef struct tconf {
  char *name;
  long port;
  int tls;
  long max_message;
  long ping;
  long read_timeout;
  char *secret;
} tconf;

static const cfg_opt topts[] = {
    {"gateway", "name", CFG_STR, "gw", 0, 0, 0, offsetof(tconf, name),
     "a name"},
    {"gateway", "port", CFG_INT, "8051", 1, 65535, 0, offsetof(tconf, port),
     "TCP port"},
    {"gateway", "tls", CFG_BOOL, "false", 0, 0, 0, offsetof(tconf, tls), "TLS"},
    {"gateway", "max_message", CFG_BYTES, "1MiB", 1024, 1L << 30, 0,
     offsetof(tconf, max_message), "size limit"},
    {"gateway", "ping_interval", CFG_MS, "20s", 100, 3600000, 0,
     offsetof(tconf, ping), "idle ping"},
    {"gateway", "read-timeout", CFG_MS, "5", 0, 0, 0,
     offsetof(tconf, read_timeout), "dashed key"},
    {"auth", "secret", CFG_STR, "dontshowme", 0, 0, CFG_SECRET,
     offsetof(tconf, secret), "signing key"},
};
#define N_TOPTS (sizeof topts / sizeof *topts)

static char t_out[8192]; /* what cfg_load printed on stdout and stderr */
static char t_dir[64];

/* Paths live in a ring big enough for every path one test holds. */
static const char *t_path(const char *name) {
  static char buf[64][128];
  static int k;
  if (!t_dir[0]) {
    snprintf(t_dir, sizeof t_dir, "/tmp/unit-cfg.XXXXXX");
    if (!mkdtemp(t_dir)) abort();
  }
  k = (k + 1) % 64;
  snprintf(buf[k], sizeof buf[k], "%s/%s", t_dir, name);
  return buf[k];
}

/* The test binary leaves no files behind. */
__attribute__((destructor)) static void t_cleanup(void) {
  if (!t_dir[0]) return;
  DIR *d = opendir(t_dir);
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL) {
    if (e->d_name[0] != '.') unlinkat(dirfd(d), e->d_name, 0);
  }
  if (d) closedir(d);
  rmdir(t_dir);
}

static const char *t_write(const char *name, const char *text, mode_t mode) {
  const char *p = t_path(name);
  unlink(p);
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (fd < 0) abort();
  if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) abort();
  fchmod(fd, mode); /* umask would otherwise decide */
  close(fd);
  return p;
}

/* Runs cfg_load on a NULL-terminated argument list (after "prog"). */
static cfg_result t_load(tconf *c, int *argc_out, char **argv_out, ...) {
  char *argv[32];
  int argc = 0;
  argv[argc++] = "prog";
  va_list ap;
  va_start(ap, argv_out);
  char *a;
  while ((a = va_arg(ap, char *)) != NULL && argc < 31) argv[argc++] = a;
  va_end(ap);
  argv[argc] = NULL;

  static char cap[128];
  if (!cap[0]) snprintf(cap, sizeof cap, "%s", t_path("captured"));
  fflush(stdout);
  fflush(stderr);
  int save1 = dup(1), save2 = dup(2);
  int fd = open(cap, O_RDWR | O_CREAT | O_TRUNC, 0600);
  dup2(fd, 1);
  dup2(fd, 2);
  cfg_result r = cfg_load(topts, N_TOPTS, c, "prog", "[SETTINGS]", &argc, argv);
  fflush(stdout);
  fflush(stderr);
  dup2(save1, 1);
  dup2(save2, 2);
  close(save1);
  close(save2);
  ssize_t n = pread(fd, t_out, sizeof t_out - 1, 0);
  t_out[n > 0 ? n : 0] = '\0';
  close(fd);
  if (argc_out) *argc_out = argc;
  for (int i = 0; argv_out && i <= argc; i++) argv_out[i] = argv[i];
  return r;
}

static int t_said(const char *needle) { return strstr(t_out, needle) != NULL; }

static void t_clear_env(void) {
  unsetenv("WSGW_GATEWAY_PORT");
  unsetenv("WSGW_GATEWAY_READ_TIMEOUT");
  unsetenv("WSGW_AUTH_SECRET");
  unsetenv("WSGW_AUTH_SECRET_FILE");
}

UNIT_TEST(cfg_defaults) {
  tconf c;
  t_clear_env();
  UNIT_CHECK(t_load(&c, NULL, NULL, NULL) == CFG_RUN);
  UNIT_CHECK_STR(c.name, "gw");
  UNIT_CHECK(c.port == 8051);
  UNIT_CHECK(c.tls == 0);
  UNIT_CHECK(c.max_message == 1048576);
  UNIT_CHECK(c.ping == 20000);
  UNIT_CHECK(c.read_timeout == 5000);
  UNIT_CHECK_STR(c.secret, "dontshowme");
  cfg_free(topts, N_TOPTS, &c);
  UNIT_CHECK(c.name == NULL && c.secret == NULL);
  cfg_free(topts, N_TOPTS, &c); /* twice is harmless */
}

UNIT_TEST(cfg_precedence_file_env_flag) {
  tconf c;
  t_clear_env();
  const char *f = t_write("prec.ini", "[gateway]\nport = 1000\nname = file\n",
                          0600);
  UNIT_CHECK(t_load(&c, NULL, NULL, "--config", f, NULL) == CFG_RUN);
  UNIT_CHECK(c.port == 1000);
  UNIT_CHECK_STR(c.name, "file");
  cfg_free(topts, N_TOPTS, &c);

  setenv("WSGW_GATEWAY_PORT", "2000", 1);
  UNIT_CHECK(t_load(&c, NULL, NULL, "--config", f, NULL) == CFG_RUN);
  UNIT_CHECK(c.port == 2000);
  UNIT_CHECK_STR(c.name, "file");
  cfg_free(topts, N_TOPTS, &c);

  /* flags win, wherever --config sits */
  UNIT_CHECK(t_load(&c, NULL, NULL, "--gateway.port=3000", "--config", f,
                    NULL) == CFG_RUN);
  UNIT_CHECK(c.port == 3000);
  cfg_free(topts, N_TOPTS, &c);

  /* an empty variable counts as unset */
  setenv("WSGW_GATEWAY_PORT", "", 1);
  UNIT_CHECK(t_load(&c, NULL, NULL, "--config", f, NULL) == CFG_RUN);
  UNIT_CHECK(c.port == 1000);
  cfg_free(topts, N_TOPTS, &c);
  t_clear_env();
}

UNIT_TEST(cfg_env_name_maps_dashes) {
  tconf c;
  t_clear_env();
  setenv("WSGW_GATEWAY_READ_TIMEOUT", "250ms", 1);
  UNIT_CHECK(t_load(&c, NULL, NULL, NULL) == CFG_RUN);
  UNIT_CHECK(c.read_timeout == 250);
  cfg_free(topts, N_TOPTS, &c);
  setenv("WSGW_GATEWAY_READ_TIMEOUT", "soon", 1);
  UNIT_CHECK(t_load(&c, NULL, NULL, NULL) == CFG_EXIT_ERROR);
  UNIT_CHECK(t_said("WSGW_GATEWAY_READ_TIMEOUT: invalid value for "
                    "gateway.read-timeout: "));
  cfg_free(topts, N_TOPTS, &c);
  t_clear_env();
}

UNIT_TEST(cfg_flag_forms_and_positionals) {
  tconf c;
  int argc;
  char *argv[32];
  t_clear_env();
  UNIT_CHECK(t_load(&c, &argc, argv, "emit", "--gateway.port", "7", "grp",
                    "--gateway.name=x=y", NULL) == CFG_RUN);
  UNIT_CHECK(c.port == 7);
  UNIT_CHECK_STR(c.name, "x=y");
  UNIT_CHECK(argc == 3);
  UNIT_CHECK_STR(argv[1], "emit");
  UNIT_CHECK_STR(argv[2], "grp");
  UNIT_CHECK(argv[3] == NULL);
  cfg_free(topts, N_TOPTS, &c);

  /* "--" ends the flags; a single dash is an argument */
  UNIT_CHECK(t_load(&c, &argc, argv, "-", "--", "--gateway.port=9", NULL) ==
             CFG_RUN);
  UNIT_CHECK(c.port == 8051);
  UNIT_CHECK(argc == 3);
  UNIT_CHECK_STR(argv[1], "-");
  UNIT_CHECK_STR(argv[2], "--gateway.port=9");
  cfg_free(topts, N_TOPTS, &c);
}

UNIT_TEST(cfg_flag_errors) {
  tconf c;
  t_clear_env();
  UNIT_CHECK(t_load(&c, NULL, NULL, "--gateway.foo=1", NULL) ==
             CFG_EXIT_ERROR);
  UNIT_CHECK(t_said("--gateway.foo: unknown flag"));
  cfg_free(topts, N_TOPTS, &c);
  UNIT_CHECK(t_load(&c, NULL, NULL, "--verbose", NULL) == CFG_EXIT_ERROR);
  UNIT_CHECK(t_said("--verbose: unknown flag"));
  cfg_free(topts, N_TOPTS, &c);
  UNIT_CHECK(t_load(&c, NULL, NULL, "--gateway.port", NULL) ==
             CFG_EXIT_ERROR);
  UNIT_CHECK(t_said("--gateway.port: missing value"));
  cfg_free(topts, N_TOPTS, &c);
  UNIT_CHECK(t_load(&c, NULL, NULL, "--gateway.port=0", NULL) ==
             CFG_EXIT_ERROR);
  UNIT_CHECK(t_said("--gateway.port: invalid value for gateway.port: out of "
                    "range (1 to 65535)"));
  cfg_free(topts, N_TOPTS, &c);
  UNIT_CHECK(t_load(&c, NULL, NULL, "--config", NULL) == CFG_EXIT_ERROR);
  UNIT_CHECK(t_said("--config: missing value"));
  cfg_free(topts, N_TOPTS, &c);
}

UNIT_TEST(cfg_bool_values) {
  static const char *const yes[] = {"true", "YES", "on", "1"};
  static const char *const no[] = {"false", "No", "off", "0"};
  tconf c;
  char arg[64];
  t_clear_env();
  for (int i = 0; i < 4; i++) {
    snprintf(arg, sizeof arg, "--gateway.tls=%s", yes[i]);
    UNIT_CHECK(t_load(&c, NULL, NULL, arg, NULL) == CFG_RUN && c.tls == 1);
    cfg_free(topts, N_TOPTS, &c);
    snprintf(arg, sizeof arg, "--gateway.tls=%s", no[i]);
    UNIT_CHECK(t_load(&c, NULL, NULL, arg, NULL) == CFG_RUN && c.tls == 0);
    cfg_free(topts, N_TOPTS, &c);
  }
  UNIT_CHECK(t_load(&c, NULL, NULL, "--gateway.tls=maybe", NULL) ==
             CFG_EXIT_ERROR);
  cfg_free(topts, N_TOPTS, &c);
  /* bare: true; a following bool word is its value; anything else is not */
  int argc;
  char *argv[32];
  UNIT_CHECK(t_load(&c, &argc, argv, "--gateway.tls", "run", NULL) ==
             CFG_RUN);
  UNIT_CHECK(c.tls == 1 && argc == 2);
  cfg_free(topts, N_TOPTS, &c);
  UNIT_CHECK(t_load(&c, &argc, argv, "--gateway.tls", "off", NULL) ==
             CFG_RUN);
  UNIT_CHECK(c.tls == 0 && argc == 1);
  cfg_free(topts, N_TOPTS, &c);
}

static long t_bytes(const char *v, cfg_result *r) {
  tconf c;
  char arg[64];
  snprintf(arg, sizeof arg, "--gateway.max_message=%s", v);
  *r = t_load(&c, NULL, NULL, arg, NULL);
  long out = c.max_message;
  cfg_free(topts, N_TOPTS, &c);
  return out;
}

UNIT_TEST(cfg_bytes_values) {
  cfg_result r;
  t_clear_env();
  UNIT_CHECK(t_bytes("1048576", &r) == 1048576 && r == CFG_RUN);
  UNIT_CHECK(t_bytes("1024k", &r) == 1048576 && r == CFG_RUN);
  UNIT_CHECK(t_bytes("1KiB", &r) == 1024 && r == CFG_RUN);
  UNIT_CHECK(t_bytes("16MiB", &r) == 16L << 20 && r == CFG_RUN);
  UNIT_CHECK(t_bytes("1m", &r) == 1L << 20 && r == CFG_RUN);
  UNIT_CHECK(t_bytes("1g", &r) == 1L << 30 && r == CFG_RUN);
  UNIT_CHECK(t_bytes("1G", &r) == 1L << 30 && r == CFG_RUN);
  const char *bad[] = {"1kb", "-1", "", "k", "1.5m", "1 k", "99999999999g",
                       "99999999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    t_bytes(bad[i], &r);
    UNIT_CHECK(r == CFG_EXIT_ERROR);
  }
  t_bytes("2g", &r); /* past max */
  UNIT_CHECK(r == CFG_EXIT_ERROR);
  UNIT_CHECK(t_said("out of range (1KiB to 1GiB)"));
  t_bytes("1kb", &r);
  UNIT_CHECK(t_said("unknown unit 'kb'"));
}

static long t_ms(const char *v, cfg_result *r) {
  tconf c;
  char arg[64];
  snprintf(arg, sizeof arg, "--gateway.ping_interval=%s", v);
  *r = t_load(&c, NULL, NULL, arg, NULL);
  long out = c.ping;
  cfg_free(topts, N_TOPTS, &c);
  return out;
}

UNIT_TEST(cfg_duration_values) {
  cfg_result r;
  t_clear_env();
  UNIT_CHECK(t_ms("250ms", &r) == 250 && r == CFG_RUN);
  UNIT_CHECK(t_ms("20s", &r) == 20000 && r == CFG_RUN);
  UNIT_CHECK(t_ms("5m", &r) == 300000 && r == CFG_RUN);
  UNIT_CHECK(t_ms("1h", &r) == 3600000 && r == CFG_RUN);
  UNIT_CHECK(t_ms("7", &r) == 7000 && r == CFG_RUN); /* bare: seconds */
  UNIT_CHECK(t_ms("20S", &r) == 20000 && r == CFG_RUN);
  const char *bad[] = {"1.5s", "s", "10d", "", "-1s", "5 s"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    t_ms(bad[i], &r);
    UNIT_CHECK(r == CFG_EXIT_ERROR);
  }
  t_ms("50ms", &r);
  UNIT_CHECK(r == CFG_EXIT_ERROR);
  UNIT_CHECK(t_said("invalid value for gateway.ping_interval: out of range "
                    "(100ms to 1h)"));
}

UNIT_TEST(cfg_int_values) {
  tconf c;
  t_clear_env();
  const char *bad[] = {"--gateway.port=12x", "--gateway.port=",
                       "--gateway.port= 1", "--gateway.port=1e3",
                       "--gateway.port=99999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    UNIT_CHECK(t_load(&c, NULL, NULL, bad[i], NULL) == CFG_EXIT_ERROR);
    cfg_free(topts, N_TOPTS, &c);
  }
  UNIT_CHECK(t_said("invalid value for gateway.port: too large"));
  UNIT_CHECK(t_load(&c, NULL, NULL, "--gateway.port=+65535", NULL) ==
             CFG_RUN);
  UNIT_CHECK(c.port == 65535);
  cfg_free(topts, N_TOPTS, &c);
}

/* Loads an INI text; returns the result, t_out holds the messages. */
static cfg_result t_ini(const char *text, tconf *c, const char **path) {
  const char *f = t_write("t.ini", text, 0600);
  if (path) *path = f;
  return t_load(c, NULL, NULL, "--config", f, NULL);
}

static int t_said_at(const char *path, int line, const char *msg) {
  char want[512];
  snprintf(want, sizeof want, "%s:%d: %s", path, line, msg);
  return t_said(want);
}

UNIT_TEST(cfg_ini_errors_have_line_numbers) {
  tconf c;
  const char *f;
  t_clear_env();
  UNIT_CHECK(t_ini("; comment\n[gateway]\nport = 1\nfoo = 2\n", &c, &f) ==
             CFG_EXIT_ERROR);
  UNIT_CHECK(t_said_at(f, 4, "unknown key 'foo' in [gateway]"));
  cfg_free(topts, N_TOPTS, &c);

  UNIT_CHECK(t_ini("[gateway]\n\nping_interval = soon\n", &c, &f) ==
             CFG_EXIT_ERROR);
  UNIT_CHECK(t_said_at(f, 3, "invalid value for gateway.ping_interval: "));
  cfg_free(topts, N_TOPTS, &c);

  UNIT_CHECK(t_ini("[gateway]\nport = 70000\n", &c, &f) == CFG_EXIT_ERROR);
  UNIT_CHECK(t_said_at(f, 2, "invalid value for gateway.port: out of range"));
  cfg_free(topts, N_TOPTS, &c);

  UNIT_CHECK(t_ini("[gateway]\nport 5\n", &c, &f) == CFG_EXIT_ERROR);
  UNIT_CHECK(t_said_at(f, 2, "syntax error"));
  cfg_free(topts, N_TOPTS, &c);

  UNIT_CHECK(t_ini("port = 5\n", &c, &f) == CFG_EXIT_ERROR);
  UNIT_CHECK(t_said_at(f, 1, "key 'port' outside any [section]"));
  cfg_free(topts, N_TOPTS, &c);

  UNIT_CHECK(t_load(&c, NULL, NULL, "--config", "/nonexistent/x.ini", NULL) ==
             CFG_EXIT_ERROR);
  UNIT_CHECK(t_said("/nonexistent/x.ini: cannot read config file"));
  cfg_free(topts, N_TOPTS, &c);
}

UNIT_TEST(cfg_ini_sections) {
  tconf c;
  const char *f;
  t_clear_env();
  /* sections of other programs are skipped, whatever their keys */
  UNIT_CHECK(t_ini("[groups]\njobs = open\n[worker]\nanything = 1\n"
                   "[gateway]\nport = 9\n",
                   &c, &f) == CFG_RUN);
  UNIT_CHECK(c.port == 9);
  cfg_free(topts, N_TOPTS, &c);
  /* a typo is not; said once per section */
  UNIT_CHECK(t_ini("[gateway]\nport = 9\n[gatewya]\na = 1\nb = 2\n", &c,
                   &f) == CFG_EXIT_ERROR);
  UNIT_CHECK(t_said_at(f, 4, "unknown section [gatewya]"));
  UNIT_CHECK(!t_said_at(f, 5, "unknown section"));
  cfg_free(topts, N_TOPTS, &c);
}

UNIT_TEST(cfg_ini_layout) {
  tconf c;
  const char *f;
  t_clear_env();
  /* indented keys are keys; inline comments after whitespace go */
  UNIT_CHECK(t_ini("[gateway]\n  port = 42 ; the answer\n\tname=a;b\n", &c,
                   &f) == CFG_RUN);
  UNIT_CHECK(c.port == 42);
  UNIT_CHECK_STR(c.name, "a;b");
  cfg_free(topts, N_TOPTS, &c);
  /* a continuation line would silently replace the value: refused */
  UNIT_CHECK(t_ini("[gateway]\nname = a\n   b\n", &c, &f) == CFG_EXIT_ERROR);
  UNIT_CHECK(t_said_at(f, 3, "syntax error"));
  cfg_free(topts, N_TOPTS, &c);
  /* an overlong line is refused, not cut */
  char big[400];
  memset(big, 'x', sizeof big);
  memcpy(big, "[gateway]\nname = ", 17);
  memcpy(big + sizeof big - 2, "\n", 2);
  UNIT_CHECK(t_ini(big, &c, &f) == CFG_EXIT_ERROR);
  UNIT_CHECK(t_said_at(f, 2, "line longer than"));
  cfg_free(topts, N_TOPTS, &c);
}

UNIT_TEST(cfg_secret_files) {
  tconf c;
  const char *f;
  t_clear_env();
  const char *s600 = t_write("s600", "s3cret\nsecond line\n", 0600);
  const char *s640 = t_write("s640", "crlf\r\n", 0640);
  const char *s644 = t_write("s644", "open\n", 0644);
  const char *empty = t_write("empty", "\nx\n", 0600);
  char arg[256];

  snprintf(arg, sizeof arg, "--auth.secret_file=%s", s600);
  UNIT_CHECK(t_load(&c, NULL, NULL, arg, NULL) == CFG_RUN);
  UNIT_CHECK_STR(c.secret, "s3cret");
  cfg_free(topts, N_TOPTS, &c);

  setenv("WSGW_AUTH_SECRET_FILE", s640, 1);
  UNIT_CHECK(t_load(&c, NULL, NULL, NULL) == CFG_RUN);
  UNIT_CHECK_STR(c.secret, "crlf");
  cfg_free(topts, N_TOPTS, &c);
  /* the value in the same source as the file: refused */
  setenv("WSGW_AUTH_SECRET", "inline", 1);
  UNIT_CHECK(t_load(&c, NULL, NULL, NULL) == CFG_EXIT_ERROR);
  UNIT_CHECK(t_said("auth.secret and auth.secret_file both given"));
  cfg_free(topts, N_TOPTS, &c);
  /* ... but a later source wins over an earlier one */
  unsetenv("WSGW_AUTH_SECRET_FILE");
  UNIT_CHECK(t_load(&c, NULL, NULL, "--auth.secret_file", s600, NULL) ==
             CFG_RUN);
  UNIT_CHECK_STR(c.secret, "s3cret");
  cfg_free(topts, N_TOPTS, &c);
  t_clear_env();

  char ini[512];
  snprintf(ini, sizeof ini, "[auth]\nsecret_file = %s\n", s644);
  UNIT_CHECK(t_ini(ini, &c, &f) == CFG_EXIT_ERROR);
  UNIT_CHECK(t_said_at(f, 2, "secret file for auth.secret: "));
  UNIT_CHECK(t_said("is readable by every user"));
  UNIT_CHECK(!t_said("open\n")); /* the content is never echoed */
  cfg_free(topts, N_TOPTS, &c);

  snprintf(arg, sizeof arg, "--auth.secret_file=%s", empty);
  UNIT_CHECK(t_load(&c, NULL, NULL, arg, NULL) == CFG_EXIT_ERROR);
  UNIT_CHECK(t_said("first line is empty"));
  cfg_free(topts, N_TOPTS, &c);

  UNIT_CHECK(t_load(&c, NULL, NULL, "--auth.secret_file=/nonexistent/s",
                    NULL) == CFG_EXIT_ERROR);
  UNIT_CHECK(t_said("--auth.secret_file: secret file for auth.secret: "
                    "cannot open /nonexistent/s"));
  cfg_free(topts, N_TOPTS, &c);

  /* only secrets have a _file form */
  UNIT_CHECK(t_load(&c, NULL, NULL, "--gateway.name_file=/etc/hostname",
                    NULL) == CFG_EXIT_ERROR);
  UNIT_CHECK(t_said("--gateway.name_file: unknown flag"));
  cfg_free(topts, N_TOPTS, &c);
}

UNIT_TEST(cfg_check_config) {
  tconf c;
  t_clear_env();
  UNIT_CHECK(t_load(&c, NULL, NULL, "--check-config", NULL) == CFG_CHECKED);
  UNIT_CHECK(!t_said("config ok")); /* the program says it, after its own checks */
  cfg_free(topts, N_TOPTS, &c);
  UNIT_CHECK(t_load(&c, NULL, NULL, "--check-config", "--gateway.port=0",
                    NULL) == CFG_EXIT_ERROR);
  UNIT_CHECK(!t_said("config ok"));
  cfg_free(topts, N_TOPTS, &c);
}

UNIT_TEST(cfg_help_lists_settings_but_no_secret) {
  tconf c;
  t_clear_env();
  UNIT_CHECK(t_load(&c, NULL, NULL, "--gateway.port=0", "--help", NULL) ==
             CFG_EXIT_OK);
  UNIT_CHECK(t_said("usage: prog [SETTINGS]"));
  UNIT_CHECK(t_said("--gateway.port=N"));
  UNIT_CHECK(t_said("[default: 8051] TCP port"));
  UNIT_CHECK(t_said("--gateway.ping_interval=DURATION"));
  UNIT_CHECK(t_said("--auth.secret_file=PATH"));
  UNIT_CHECK(!t_said("dontshowme"));
  cfg_free(topts, N_TOPTS, &c);
}
