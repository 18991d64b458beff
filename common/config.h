/*
 * config.h - settings for every binary, from one table per program.
 *
 * Each setting has a section and key in an INI file (parsed by libinih), an
 * environment variable and a command-line flag. Later sources win:
 *   built-in default < config file (--config FILE) < environment < flags.
 * Names: key "listen" in section [gateway] is the flag --gateway.listen and
 * the environment variable WSGW_GATEWAY_LISTEN. A CFG_SECRET setting may
 * instead be given as "<key>_file" (flag, env or INI) naming a file whose
 * first line is the value, so that secrets stay out of argv and unit files.
 *
 * Flags: "--section.key=value" or "--section.key value"; a CFG_BOOL flag
 * alone ("--section.key") means true unless the next argument is a bool
 * word. "--" ends the flags. Any other "--name" is an error ("unknown
 * flag"). Environment: "WSGW_" + section + "_" + key, upper case, with
 * '.' and '-' as '_'; an empty variable counts as unset.
 *
 * INI file: a key the table does not know in a section the table uses is
 * an error, and so is a section no program of the project reads (a known
 * one the table does not use, e.g. [groups] for the gateway, is skipped;
 * a CFG_SHARED row of the table still reads its one key from such a
 * section).
 * Indentation is ignored (no continuation lines); lines are limited to
 * about 200 bytes (libinih's buffer); "; comment" after whitespace.
 *
 * Secrets: "<key>_file" names a file whose first line (without "\n" or
 * "\r\n") is the value; a regular file readable by other users is refused,
 * group-readable is fine. Giving both <key> and <key>_file in one source
 * is an error; a later source still wins over an earlier one.
 *
 * Owns: parsing, validation and --help text. Must not: know what a setting
 * means beyond its type and range.
 */
#ifndef CONFIG_H
#define CONFIG_H

#include <stddef.h>

typedef enum {
  CFG_STR = 0,  /* char *, malloc'd */
  CFG_INT,      /* long, within [min, max] */
  CFG_BOOL,     /* int: true/false/yes/no/on/off/1/0 */
  CFG_BYTES,    /* long: 1048576, 1024k, 1KiB, 16MiB, 1m, 1g (k/m/g and
                   KiB/MiB/GiB, any case, all 1024-based; "kb" refused) */
  CFG_MS        /* long milliseconds: 250ms, 20s, 5m, 1h; a bare number is
                   seconds; integers only */
} cfg_type;

#define CFG_SECRET 1u /* value may come from <key>_file; never printed */
/* The row reads one key of another program's section (workerd reads
 * [gateway] allowed_origins, so that one setting serves both): the table
 * does not claim the section, whose other keys it skips. */
#define CFG_SHARED 2u

typedef struct cfg_opt {
  const char *section;
  const char *key;
  cfg_type type;
  const char *def; /* default, in the same text form as the file */
  long min, max;   /* range for INT/BYTES/MS; both 0: unchecked */
  unsigned flags;
  size_t offset; /* where the value goes in the program's settings struct */
  const char *help;
} cfg_opt;

typedef enum {
  CFG_RUN = 0,     /* loaded: run the program */
  CFG_EXIT_OK,     /* --help was printed: exit 0 */
  CFG_EXIT_ERROR,  /* invalid: a message was printed, exit 2 */
  CFG_CHECKED      /* --check-config and every setting is valid: the program
                      runs its own checks (lists, files, policy), then prints
                      "config ok" and exits 0, or reports and exits 2 */
} cfg_result;

/*
 * Fills conf (a struct the table's offsets point into) from defaults, the
 * file, the environment and argv, in that order. Handles --config FILE,
 * --help (prints usage and every setting with its default and help) and
 * --check-config (validate; the caller reports, see CFG_CHECKED). Errors are printed to stderr as
 * "FILE:LINE: reason" or "--flag: reason". Arguments that are not flags are
 * left in argv; *argc is updated to count them (argv[0] kept).
 * Whatever the result, conf then holds only NULL or malloc'd strings:
 * call cfg_free (which is safe to call twice).
 */
cfg_result cfg_load(const cfg_opt *opts, size_t n_opts, void *conf,
                    const char *prog, const char *usage, int *argc,
                    char **argv);

/* Releases every CFG_STR value of conf. */
void cfg_free(const cfg_opt *opts, size_t n_opts, void *conf);

/*
 * The command line as main received it, for whatever must parse it again:
 * a reload (SIGHUP) that reads the file and the environment afresh while
 * the flags still win, or gatewayd's supervisor passing the flags on to its
 * children. cfg_load reorders argv (flags out, positional arguments kept),
 * so save it first. Only the array is copied: the strings are main's, which
 * live as long as the process.
 */
typedef struct cfg_cmdline {
  int argc;
  char **argv; /* malloc'd, argv[argc] == NULL; NULL when not saved */
} cfg_cmdline;

/* Copies argv[0..argc]. 0, or -1 when out of memory (then c->argv is
 * NULL and cfg_reload refuses). */
int cfg_cmdline_save(cfg_cmdline *c, int argc, char *const *argv);

/* cfg_load over a copy of the saved command line, which itself stays as
 * saved, so every reload parses the same flags. No usage text (--help was
 * answered at start-up), positional arguments dropped. CFG_EXIT_ERROR, said
 * on stderr, when nothing was saved or out of memory. Either way conf is
 * then for cfg_free, as after cfg_load. */
cfg_result cfg_reload(const cfg_cmdline *c, const cfg_opt *opts,
                      size_t n_opts, void *conf, const char *prog);

/* Frees the saved array (safe to call twice). */
void cfg_cmdline_free(cfg_cmdline *c);

#endif
