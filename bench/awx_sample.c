/*
 * awx_sample.c - AWX job events for the benchmarks (see awx_sample.h).
 *
 * An event is what AWX's job event serializer sends a browser watching a
 * job: the event's own fields, its summary_fields, and event_data with the
 * module's result (res). The bulk of a big event is command output, which
 * AWX carries twice (res.stdout and res.stdout_lines, as Ansible returns
 * it); a failure also carries the result once more, escaped, in the stdout
 * shown to the user. UUIDs and checksums are random hex (they do not
 * compress); the rest is drawn from small vocabularies, as job output is.
 *
 * Every choice comes from a splitmix64 stream seeded by (seed, seq), and a
 * line of output from its own stream (seed, seq, line number), so an event
 * grown by more lines keeps the ones it had. No generated text holds a
 * quote or a backslash, so it goes into JSON strings unescaped (and into a
 * string in a string, for failures).
 */
#include "awx_sample.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define AWX_LINES_MAX 80
#define AWX_HOSTS 40
#define AWX_TASK_EVENTS 25 /* events per task, before the next task starts */

/* ---- randomness --------------------------------------------------------- */

static uint64_t awx__next(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static uint64_t awx__stream(uint64_t seed, uint64_t a, uint64_t b) {
  uint64_t s = seed * 0xD1342543DE82EF95ull ^ a * 0x9E3779B97F4A7C15ull ^ b * 0xC2B2AE3D27D4EB4Full;
  awx__next(&s);
  return s;
}

static unsigned awx__pick(uint64_t *s, unsigned n) { return (unsigned)(awx__next(s) % n); }

#define AWX_ONE(s, arr) ((arr)[awx__pick((s), sizeof(arr) / sizeof *(arr))])

/* ---- a bounded writer into the caller's buffer --------------------------- */

typedef struct awx_w {
  char *d;
  size_t len, cap;
  int over; /* something did not fit: the event is refused */
} awx_w;

static void awx__put(awx_w *w, const char *s) {
  size_t n = strlen(s);
  if (w->over || w->len + n + 1 > w->cap) {
    w->over = 1;
    return;
  }
  memcpy(w->d + w->len, s, n + 1);
  w->len += n;
}

__attribute__((format(printf, 2, 3))) static void awx__pf(awx_w *w, const char *fmt, ...) {
  if (w->over) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(w->d + w->len, w->cap - w->len, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= w->cap - w->len) w->over = 1;
  else w->len += (size_t)n;
}

static void awx__hex(awx_w *w, uint64_t *s, int n) {
  static const char digits[] = "0123456789abcdef";
  char h[72];
  for (int i = 0; i < n && i < 71; i++) h[i] = digits[awx__next(s) & 15];
  h[n < 71 ? n : 71] = 0;
  awx__put(w, h);
}

static void awx__uuid(awx_w *w, uint64_t s) {
  awx__hex(w, &s, 8);
  awx__put(w, "-");
  awx__hex(w, &s, 4);
  awx__put(w, "-4");
  awx__hex(w, &s, 3);
  awx__put(w, "-a");
  awx__hex(w, &s, 3);
  awx__put(w, "-");
  awx__hex(w, &s, 12);
}

/* "2026-12-07T10:00:12.345678Z", ms_after the job's start. */
static void awx__time(awx_w *w, uint64_t ms_after) {
  time_t secs = (time_t)1796637600 + (time_t)(ms_after / 1000); /* 2026-12-07 10:00 UTC */
  struct tm tm;
  gmtime_r(&secs, &tm);
  awx__pf(w, "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ", tm.tm_year + 1900, tm.tm_mon + 1,
          tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
          (unsigned)(ms_after % 1000) * 1000 + (unsigned)(ms_after * 7 % 1000));
}

/* ---- the job: plays, tasks, hosts ---------------------------------------- */

typedef enum { AWX_K_COMMAND, AWX_K_DEBUG, AWX_K_PACKAGE, AWX_K_FILE } awx_kind;

typedef struct awx_task {
  const char *role, *name, *action, *args;
  awx_kind kind;
} awx_task;

static const awx_task awx_tasks[] = {
    {"common", "Gather package facts", "ansible.builtin.package_facts", "", AWX_K_FILE},
    {"common", "Install base packages", "ansible.builtin.apt", "name={{ item }} state=present",
     AWX_K_PACKAGE},
    {"common", "Show kernel and uptime", "ansible.builtin.shell", "uname -a; uptime",
     AWX_K_COMMAND},
    {"webserver", "Render nginx site", "ansible.builtin.template",
     "src=site.conf.j2 dest=/etc/nginx/sites-enabled/app.conf", AWX_K_FILE},
    {"webserver", "Check nginx configuration", "ansible.builtin.command", "nginx -t",
     AWX_K_COMMAND},
    {"app", "Run database migrations", "ansible.builtin.command",
     "/opt/app/venv/bin/python manage.py migrate --noinput", AWX_K_COMMAND},
    {"app", "Collect static files", "ansible.builtin.command",
     "/opt/app/venv/bin/python manage.py collectstatic --noinput", AWX_K_COMMAND},
    {"app", "Print release notes", "ansible.builtin.debug", "var=release_notes", AWX_K_DEBUG},
    {"app", "Restart application workers", "ansible.builtin.systemd",
     "name=app-worker state=restarted", AWX_K_COMMAND},
    {"monitoring", "Show service status", "ansible.builtin.debug",
     "msg={{ status.stdout_lines }}", AWX_K_DEBUG},
};
#define AWX_NTASKS (sizeof awx_tasks / sizeof *awx_tasks)

static const char *const awx_plays[] = {"Prepare hosts", "Deploy web tier",
                                        "Deploy application", "Verify deployment"};

static const char *const awx_pkgs[] = {
    "nginx", "nginx-common", "libssl3", "python3-django", "postgresql-client-15",
    "redis-tools", "git", "curl", "rsync", "libpq5", "python3-psycopg2", "ca-certificates",
    "openssh-client", "logrotate", "chrony", "jq"};
static const char *const awx_comps[] = {"api", "dispatcher", "callback", "scheduler",
                                        "worker", "db", "cache", "auth", "receptor"};
static const char *const awx_verbs[] = {"started", "finished", "loaded", "checked",
                                        "synced", "skipped", "applied", "reloaded"};
static const char *const awx_objs[] = {"config", "inventory", "project", "credentials",
                                       "schedule", "migrations", "static files", "templates",
                                       "cache", "partitions"};
static const char *const awx_apps[] = {"main", "auth", "contenttypes", "sessions", "sso",
                                       "conf", "oauth2_provider", "social_django"};
static const char *const awx_levels[] = {"INFO ", "INFO ", "INFO ", "DEBUG", "WARN "};

/* ---- lines of output (no quotes, no backslashes) -------------------------- */

static void awx__log_line(awx_w *w, uint64_t *s, uint64_t seq) {
  unsigned ms = awx__pick(s, 1000);
  awx__pf(w, "2026-12-07 10:%02u:%02u,%03u %s [%s] %s %s in %u ms (%s-%u)",
          (unsigned)(seq / 1500 % 60), (unsigned)(seq / 25 % 60), ms, AWX_ONE(s, awx_levels),
          AWX_ONE(s, awx_comps), AWX_ONE(s, awx_objs), AWX_ONE(s, awx_verbs),
          awx__pick(s, 900) + 3, AWX_ONE(s, awx_comps), awx__pick(s, 64));
}

static void awx__migrate_line(awx_w *w, uint64_t *s) {
  awx__pf(w, "  Applying %s.%04u_auto_%u... OK", AWX_ONE(s, awx_apps), awx__pick(s, 200),
          20250000 + awx__pick(s, 9999));
}

static void awx__apt_line(awx_w *w, uint64_t *s) {
  static const char *const fmts[] = {"Setting up %s (%u.%u.%u-%u) ...",
                                     "Unpacking %s (%u.%u.%u-%u) over (%u.%u.%u-%u) ...",
                                     "Selecting previously unselected package %s.",
                                     "Preparing to unpack .../%s_%u.%u.%u-%u_amd64.deb ..."};
  unsigned f = awx__pick(s, 4), a = awx__pick(s, 4), b = awx__pick(s, 30), c = awx__pick(s, 12),
           d = awx__pick(s, 9) + 1;
  const char *pkg = AWX_ONE(s, awx_pkgs);
  if (f == 1) awx__pf(w, fmts[1], pkg, a, b, c, d, a, b, c ? c - 1 : 0, d);
  else if (f == 2) awx__pf(w, fmts[2], pkg);
  else awx__pf(w, fmts[f], pkg, a, b, c, d);
}

static void awx__static_line(awx_w *w, uint64_t *s) {
  awx__pf(w, "Copying '/opt/app/src/%s/static/%s/%s-%u.%s'", AWX_ONE(s, awx_apps),
          AWX_ONE(s, awx_comps), AWX_ONE(s, awx_objs), awx__pick(s, 500),
          awx__pick(s, 2) ? "js" : "css");
}

/* Line n of event seq's output, for task t. The apostrophes of the static
 * line are allowed: JSON needs no escape for them. */
static void awx__line(awx_w *w, uint64_t seed, uint64_t seq, unsigned task, unsigned n) {
  uint64_t s = awx__stream(seed, seq, 1000 + n);
  switch (task) {
    case 1: awx__apt_line(w, &s); break;
    case 5: awx__migrate_line(w, &s); break;
    case 6: awx__static_line(w, &s); break;
    default: awx__log_line(w, &s, seq); break;
  }
}

/* ---- one event --------------------------------------------------------------- */

typedef enum {
  AWX_E_START, AWX_E_OK, AWX_E_ITEM, AWX_E_SKIPPED, AWX_E_FAILED, AWX_E_VERBOSE
} awx_ev;

typedef struct awx_ctx {
  uint64_t seed, seq, t_ns, s;
  unsigned task, host, play, item;
  awx_ev ev;
  int changed;
  unsigned nlines;
} awx_ctx;

static const char *awx__ev_name(awx_ev e) {
  static const char *const n[] = {"playbook_on_task_start", "runner_on_ok", "runner_item_on_ok",
                                  "runner_on_skipped", "runner_on_failed", "verbose"};
  return n[e];
}

/* The lines joined, separated by sep (a JSON escape: "\\n", or "\\\\n"
 * inside a string in a string), or as a list of strings (list = 1; q is
 * the quote, "\"" or "\\\"" inside a string in a string). */
static void awx__lines(awx_w *w, const awx_ctx *x, const char *sep, int list, const char *q) {
  for (unsigned i = 0; i < x->nlines; i++) {
    if (i) awx__put(w, list ? ", " : sep);
    if (list) awx__put(w, q);
    awx__line(w, x->seed, x->seq, x->task, i);
    if (list) awx__put(w, q);
  }
}

/* The colour AWX's stdout uses for a status. */
static const char *awx__colour(const awx_ctx *x) {
  switch (x->ev) {
    case AWX_E_SKIPPED: return "0;36";
    case AWX_E_FAILED: return "0;31";
    default: return x->changed ? "0;33" : "0;32";
  }
}

/* A failure's stdout: the result once more, as Ansible prints it. */
static void awx__stdout_failed(awx_w *w, const awx_ctx *x) {
  const awx_task *t = &awx_tasks[x->task];
  awx__pf(w, "\\u001b[0;31mfatal: [host-%u]: FAILED! => {\\\"changed\\\": true, "
             "\\\"cmd\\\": \\\"%s\\\", \\\"delta\\\": \\\"0:00:0%u.%06u\\\", "
             "\\\"msg\\\": \\\"non-zero return code\\\", \\\"rc\\\": %u, \\\"stderr\\\": \\\"",
          x->host, t->args, x->item % 10, (unsigned)(x->t_ns / 1000 % 1000000), x->item % 3 + 1);
  awx__lines(w, x, "\\\\n", 0, NULL);
  awx__put(w, "\\\", \\\"stderr_lines\\\": [");
  awx__lines(w, x, NULL, 1, "\\\"");
  awx__put(w, "], \\\"stdout\\\": \\\"\\\", \\\"stdout_lines\\\": []}\\u001b[0m");
}

/* A debug task's stdout: one coloured line per line of its message. */
static void awx__stdout_debug(awx_w *w, const awx_ctx *x) {
  awx__pf(w, "\\u001b[0;32mok: [host-%u] => {\\u001b[0m\\r\\n"
             "\\u001b[0;32m    \\\"msg\\\": [\\u001b[0m\\r\\n", x->host);
  for (unsigned i = 0; i < x->nlines; i++) {
    awx__put(w, "\\u001b[0;32m        \\\"");
    awx__line(w, x->seed, x->seq, x->task, i);
    awx__pf(w, "\\\"%s\\u001b[0m\\r\\n", i + 1 < x->nlines ? "," : "");
  }
  awx__put(w, "\\u001b[0;32m    ]\\u001b[0m\\r\\n\\u001b[0;32m}\\u001b[0m");
}

/* A verbose line (-vvv): what the connection plugin does, in blue. */
static void awx__stdout_verbose(awx_w *w, const awx_ctx *x) {
  uint64_t s = awx__stream(x->seed, x->seq, 5);
  unsigned h = x->host;
  awx__put(w, "\\u001b[0;34m");
  switch (awx__pick(&s, 4)) {
    case 0: awx__pf(w, "<host-%u> ESTABLISH SSH CONNECTION FOR USER: deploy", h); break;
    case 1:
      awx__pf(w, "<host-%u> SSH: EXEC ssh -C -o ControlMaster=auto -o ControlPersist=60s -o "
                 "KbdInteractiveAuthentication=no -o User=deploy -o ConnectTimeout=10 "
                 "10.20.%u.%u /bin/sh -c echo ~deploy && sleep 0", h, h / 8, 10 + h);
      break;
    case 2:
      awx__pf(w, "<host-%u> PUT /runner/.ansible/tmp/ansible-local-%u/tmp%u TO "
                 "/home/deploy/.ansible/tmp/ansible-tmp-%u.%u-%u/AnsiballZ_command.py", h,
              31 + x->play, awx__pick(&s, 100000), 1796637600 + (unsigned)(x->seq / 27),
              awx__pick(&s, 1000000), awx__pick(&s, 100000));
      break;
    default:
      awx__pf(w, "Using module file /usr/lib/python3/dist-packages/ansible/modules/%s.py",
              strrchr(awx_tasks[x->task].action, '.') + 1);
  }
  awx__put(w, "\\u001b[0m");
}

static void awx__stdout(awx_w *w, const awx_ctx *x) {
  const awx_task *t = &awx_tasks[x->task];
  if (x->ev == AWX_E_VERBOSE) {
    awx__stdout_verbose(w, x);
    return;
  }
  if (x->ev == AWX_E_START) {
    char head[160];
    int n = snprintf(head, sizeof head, "TASK [%s : %s] ", t->role, t->name);
    awx__pf(w, "\\r\\n%s", head);
    for (int i = n; i < 80; i++) awx__put(w, "*");
    return;
  }
  if (x->ev == AWX_E_FAILED) {
    awx__stdout_failed(w, x);
    return;
  }
  if (x->ev == AWX_E_OK && t->kind == AWX_K_DEBUG) {
    awx__stdout_debug(w, x);
    return;
  }
  const char *status = x->ev == AWX_E_SKIPPED ? "skipping" : x->changed ? "changed" : "ok";
  awx__pf(w, "\\u001b[%sm%s: [host-%u]", awx__colour(x), status, x->host);
  if (x->ev == AWX_E_ITEM) awx__pf(w, " => (item=%s)", awx_pkgs[x->item % 16]);
  awx__put(w, "\\u001b[0m");
}

static void awx__res_command(awx_w *w, const awx_ctx *x) {
  const awx_task *t = &awx_tasks[x->task];
  int failed = x->ev == AWX_E_FAILED;
  awx__pf(w, "{\"changed\": %s, \"cmd\": \"%s\", \"rc\": %u, \"start\": \"", x->changed || failed
          ? "true" : "false", t->args, failed ? x->item % 3 + 1 : 0);
  awx__time(w, x->seq * 37);
  awx__put(w, "\", \"end\": \"");
  awx__time(w, x->seq * 37 + 500 + x->item);
  awx__pf(w, "\", \"delta\": \"0:00:00.%06u\", \"msg\": \"%s\", \"%s\": \"", 500000 + x->item,
          failed ? "non-zero return code" : "", failed ? "stderr" : "stdout");
  awx__lines(w, x, "\\n", 0, NULL);
  awx__pf(w, "\", \"%s\": \"\", \"%s_lines\": [", failed ? "stdout" : "stderr",
          failed ? "stderr" : "stdout");
  awx__lines(w, x, NULL, 1, "\"");
  awx__pf(w, "], \"%s_lines\": [], \"invocation\": {\"module_args\": {\"_raw_params\": \"%s\", "
             "\"_uses_shell\": %s, \"chdir\": \"/opt/app\", \"creates\": null, \"removes\": "
             "null, \"stdin\": null, \"warn\": false}}, \"_ansible_no_log\": false}",
          failed ? "stdout" : "stderr", t->args,
          strcmp(t->action, "ansible.builtin.shell") == 0 ? "true" : "false");
}

static void awx__res(awx_w *w, const awx_ctx *x) {
  const awx_task *t = &awx_tasks[x->task];
  uint64_t s = awx__stream(x->seed, x->seq, 7);
  if (x->ev == AWX_E_SKIPPED) {
    awx__put(w, "{\"changed\": false, \"skip_reason\": \"Conditional result was False\", "
                "\"false_condition\": \"ansible_distribution == 'RedHat'\", "
                "\"_ansible_no_log\": false}");
  } else if (x->ev == AWX_E_FAILED || t->kind == AWX_K_COMMAND) {
    awx__res_command(w, x);
  } else if (t->kind == AWX_K_DEBUG) {
    awx__put(w, "{\"msg\": [");
    awx__lines(w, x, NULL, 1, "\"");
    awx__put(w, "], \"_ansible_verbose_always\": true, \"_ansible_no_log\": false, "
                "\"changed\": false}");
  } else if (t->kind == AWX_K_PACKAGE) {
    awx__pf(w, "{\"item\": \"%s\", \"changed\": %s, \"cache_updated\": false, "
               "\"cache_update_time\": %u, \"stdout\": \"", awx_pkgs[x->item % 16],
            x->changed ? "true" : "false", 1796630000 + x->item);
    awx__lines(w, x, "\\n", 0, NULL);
    awx__put(w, "\", \"stderr\": \"\", \"stdout_lines\": [");
    awx__lines(w, x, NULL, 1, "\"");
    awx__pf(w, "], \"stderr_lines\": [], \"ansible_loop_var\": \"item\", "
               "\"_ansible_item_label\": \"%s\", \"_ansible_no_log\": false}",
            awx_pkgs[x->item % 16]);
  } else {
    awx__pf(w, "{\"changed\": %s, \"path\": \"/etc/app/conf.d/%s.conf\", \"mode\": \"0644\", "
               "\"owner\": \"root\", \"group\": \"root\", \"uid\": 0, \"gid\": 0, \"size\": %u, "
               "\"state\": \"file\", \"checksum\": \"", x->changed ? "true" : "false",
            AWX_ONE(&s, awx_comps), awx__pick(&s, 8000) + 200);
    awx__hex(w, &s, 40);
    awx__put(w, "\", \"md5sum\": \"");
    awx__hex(w, &s, 32);
    awx__put(w, "\", \"_ansible_no_log\": false}");
  }
}

static void awx__uuid_of(awx_w *w, const awx_ctx *x, uint64_t a, uint64_t b) {
  awx__uuid(w, awx__stream(x->seed, a, b));
}

static void awx__event_data(awx_w *w, const awx_ctx *x) {
  const awx_task *t = &awx_tasks[x->task];
  if (x->ev == AWX_E_VERBOSE) { /* runner's verbose lines belong to no task */
    awx__pf(w, "\"event_data\": {\"pid\": %u, \"uuid\": \"", 31 + x->play);
    awx__uuid_of(w, x, x->seq, 3);
    awx__put(w, "\"}");
    return;
  }
  awx__put(w, "\"event_data\": {\"playbook\": \"site.yml\", \"playbook_uuid\": \"");
  awx__uuid_of(w, x, 0, 1);
  awx__pf(w, "\", \"play\": \"%s\", \"play_uuid\": \"", awx_plays[x->play]);
  awx__uuid_of(w, x, 0, 2 + x->play);
  awx__pf(w, "\", \"play_pattern\": \"all\", \"task\": \"%s\", \"task_uuid\": \"", t->name);
  awx__uuid_of(w, x, x->seq / AWX_TASK_EVENTS, 9);
  awx__pf(w, "\", \"task_action\": \"%s\", \"resolved_action\": \"%s\", \"task_args\": \"\", "
             "\"task_path\": \"/runner/project/roles/%s/tasks/main.yml:%u\", \"role\": \"%s\", ",
          t->action, t->action, t->role, 10 + x->task * 7, t->role);
  if (x->ev == AWX_E_START) {
    awx__pf(w, "\"name\": \"%s\", \"is_conditional\": false, ", t->name);
  } else {
    awx__pf(w, "\"host\": \"host-%u\", \"remote_addr\": \"10.20.%u.%u\", \"res\": ", x->host,
            x->host / 8, 10 + x->host);
    awx__res(w, x);
    awx__pf(w, ", \"start\": \"");
    awx__time(w, x->seq * 37);
    awx__pf(w, "\", \"end\": \"");
    awx__time(w, x->seq * 37 + 500 + x->item);
    awx__pf(w, "\", \"duration\": 0.%03u, ", 500 + x->item % 500);
  }
  awx__pf(w, "\"pid\": %u, \"uuid\": \"", 31 + x->play);
  awx__uuid_of(w, x, x->seq, 3);
  awx__put(w, "\"}");
}

static void awx__build(awx_w *w, const awx_ctx *x) {
  const awx_task *t = &awx_tasks[x->task];
  int host = x->ev != AWX_E_START && x->ev != AWX_E_VERBOSE;
  w->len = 0;
  w->over = 0;
  awx__pf(w, "{\"seq\":%llu,\"t\":%llu,\"type\": \"job_event\", \"id\": %llu, \"job\": 42, "
             "\"url\": \"/api/v2/job_events/%llu\", \"group_name\": \"job_events\", "
             "\"created\": \"", (unsigned long long)x->seq, (unsigned long long)x->t_ns,
          (unsigned long long)(1000000 + x->seq), (unsigned long long)(1000000 + x->seq));
  awx__time(w, x->seq * 37);
  awx__put(w, "\", \"modified\": \"");
  awx__time(w, x->seq * 37);
  awx__pf(w, "\", \"event\": \"%s\", \"counter\": %llu, \"uuid\": \"", awx__ev_name(x->ev),
          (unsigned long long)x->seq);
  awx__uuid_of(w, x, x->seq, 3);
  awx__put(w, "\", \"parent_uuid\": \"");
  if (x->ev != AWX_E_VERBOSE) awx__uuid_of(w, x, x->seq / AWX_TASK_EVENTS, 9);
  awx__pf(w, "\", \"host_name\": \"");
  if (host) awx__pf(w, "host-%u", x->host);
  awx__put(w, "\", \"stdout\": \"");
  awx__stdout(w, x);
  awx__pf(w, "\", \"start_line\": %llu, \"end_line\": %llu, ", (unsigned long long)(x->seq * 3),
          (unsigned long long)(x->seq * 3 + x->nlines + 1));
  awx__event_data(w, x);
  awx__pf(w, ", \"failed\": %s, \"changed\": %s, \"event_level\": %d, ",
          x->ev == AWX_E_FAILED ? "true" : "false", x->changed ? "true" : "false",
          x->ev == AWX_E_VERBOSE ? 0 : host ? 3 : 2);
  if (x->ev == AWX_E_VERBOSE) awx__put(w, "\"play\": \"\", \"role\": \"\", \"task\": \"\"}");
  else awx__pf(w, "\"play\": \"%s\", \"role\": \"%s\", \"task\": \"%s\"}", awx_plays[x->play],
               t->role, t->name);
}

/* Which event seq is: the first of each task's run starts it; then results
 * of its hosts: mostly ok, some skipped, a few failed. */
static void awx__choose(awx_ctx *x) {
  uint64_t s = x->s;
  unsigned roll = awx__pick(&s, 100);
  x->task = (unsigned)(x->seq / AWX_TASK_EVENTS % AWX_NTASKS);
  x->play = x->task * 4 / AWX_NTASKS;
  x->host = (unsigned)(x->seq % AWX_HOSTS) + 1;
  x->item = awx__pick(&s, 1000);
  if (x->seq % AWX_TASK_EVENTS == 0 || roll < 8) x->ev = AWX_E_START;
  else if (roll < 16) x->ev = AWX_E_VERBOSE;
  else if (roll < 26) x->ev = AWX_E_SKIPPED;
  else if (roll < 32) x->ev = AWX_E_FAILED;
  else x->ev = awx_tasks[x->task].kind == AWX_K_PACKAGE ? AWX_E_ITEM : AWX_E_OK;
  x->changed = x->ev <= AWX_E_ITEM && x->ev != AWX_E_START && awx__pick(&s, 3) != 0;
  x->s = s;
}

/* Whether event x carries lines of output (and so grows to its size). */
static int awx__has_lines(const awx_ctx *x) {
  if (x->ev == AWX_E_START || x->ev == AWX_E_SKIPPED || x->ev == AWX_E_VERBOSE) return 0;
  return x->ev == AWX_E_FAILED || awx_tasks[x->task].kind != AWX_K_FILE;
}

size_t awx_event(char *buf, size_t cap, uint64_t seed, uint64_t seq, uint64_t t_ns) {
  awx_ctx x = {.seed = seed, .seq = seq, .t_ns = t_ns, .s = awx__stream(seed, seq, 0)};
  awx_w w = {.d = buf, .cap = cap};
  awx__choose(&x);
  /* Sizes: an event with output grows to a target drawn evenly from 0.5-4
   * KB (never below what its fields take, ~1.1 KB); the others are the size
   * their fields make (verbose lines ~0.5 KB, task starts and skips ~1 KB). */
  size_t target = 512 + (size_t)awx__pick(&x.s, 4096 - 512 + 1);
  awx__build(&w, &x);
  if (awx__has_lines(&x) && !w.over && w.len < target) {
    size_t base = w.len;
    x.nlines = 1;
    awx__build(&w, &x);
    size_t per = w.len > base ? w.len - base : 1;
    x.nlines = (unsigned)((target - base) / per);
    if (x.nlines < 1) x.nlines = 1;
    if (x.nlines > AWX_LINES_MAX) x.nlines = AWX_LINES_MAX;
    /* Lines differ in length: step to the last count that stays within it. */
    for (awx__build(&w, &x); !w.over && w.len < target && x.nlines < AWX_LINES_MAX;
         awx__build(&w, &x))
      x.nlines++;
    while (!w.over && x.nlines > 1 && w.len > target) {
      x.nlines--;
      awx__build(&w, &x);
    }
  }
  return w.over ? 0 : w.len;
}
