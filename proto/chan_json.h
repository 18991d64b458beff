/*
 * chan_json.h - the JSON pieces that channel messages and replies share
 * (strict parsing, "reply_channel", "order", "session", "groups") so that
 * both formats read them by one rule. Internal to proto/.
 *
 * Owns: those rules and their caps (chan_names.h), and printing numbers as
 * exact digits (never cJSON's 15-digit form). Must not: know which message
 * a piece belongs to.
 *
 * cJSON allocates with the C library's malloc (nobody calls
 * cJSON_InitHooks), so text it prints is released with free().
 */
#ifndef CHAN_JSON_H
#define CHAN_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

/* 2^53 - 1: above it a double no longer tells neighbouring integers apart
 * (9007199254740993 parses as 2^53), so the wire stops here. */
#define CHAN_JSON_UINT_MAX 9007199254740991ull

/* Parses exactly one JSON value from json[0..len), which need not be
 * NUL-terminated; trailing non-space data is refused. NULL when invalid.
 * A \u0000 escape cuts its string there: for JSON that is not channel JSON
 * (tokens). */
cJSON *chan_json_parse(const char *json, size_t len);

/*
 * U+0000 in texts. A websocket text may hold U+0000 (valid UTF-8, and JSON
 * writes it as \u0000), but cJSON strings end at a NUL. So in channel JSON
 * (messages and replies) a NUL inside a text is carried through cJSON as
 * the byte 0xFF, the "mark": no UTF-8 text holds that byte, and texts are
 * UTF-8 (wslay checks clients' texts, workers write UTF-8). The mark exists
 * only between the functions below; on the wire it is always \u0000.
 *
 * Only the root's "text" member (a string, or an array of strings) may hold
 * marks. Anywhere else a 0xFF would be a U+0000 that the C strings of that
 * value cannot carry, or a real byte that \u0000 would misstate: both
 * directions refuse it.
 */
#define CHAN_JSON_NUL_MARK 0xFF

/* As chan_json_parse, but each \u0000 escape decodes to a mark. NULL also
 * when the input holds a raw 0xFF (not UTF-8, and it would read as a NUL). */
cJSON *chan_json_parse_marked(const char *json, size_t len);

/* 1 when a member of root other than "text" holds a mark (in a key or a
 * string, at any depth), else 0. */
int chan_json_marked_outside_text(const cJSON *root);

/* How a channel message or a reply is read: chan_json_parse_marked, then
 * it must be an object with no mark outside "text". The object (the caller
 * deletes it), or NULL with the reason in err: "invalid JSON", "WHAT must
 * be a JSON object" or "U+0000 outside text". */
cJSON *chan_json_parse_object(const char *json, size_t len, const char *what, char *err,
                              size_t errlen);

/* A cJSON string of data[0..len) with each NUL as a mark. NULL when out of
 * memory or when data holds a 0xFF (not UTF-8; it would read back as NUL). */
cJSON *chan_json_text_create(const char *data, size_t len);

/* Copies the string item (from chan_json_parse_marked) to *data (malloc'd,
 * NUL-terminated) with each mark back to a NUL; *len counts them in. 0, or
 * -1 when out of memory. */
int chan_json_text_copy(const cJSON *item, char **data, size_t *len);

/* Formats a reason into err (when err is not NULL) and returns -1. */
int chan_json_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* 0 and *out when item is an integral JSON number in [0, max], max at most
 * CHAN_JSON_UINT_MAX; else -1. */
int chan_json_uint(const cJSON *item, uint64_t max, uint64_t *out);

/* Member key of obj, a string, copied to *out (malloc'd). Absent: *out is
 * NULL, which is an error only when required. */
int chan_json_string(const cJSON *obj, const char *key, int required,
                     char **out, char *err, size_t errlen);

/* The required "reply_channel" (well-formed, see chan_reply_channel.h)
 * and "order". */
int chan_json_reply_channel(const cJSON *obj, char **out, char *err,
                            size_t errlen);
int chan_json_order(const cJSON *obj, uint64_t *out, char *err, size_t errlen);

/* The optional "session": an object whose compact text (*out, malloc'd) is at
 * most CHAN_SESSION_MAX bytes. Absent: *out is NULL. */
int chan_json_session(const cJSON *obj, char **out, char *err, size_t errlen);

/* The optional "groups": at most CHAN_GROUPS_MAX valid group names, copied
 * to *out (malloc'd, free with chan_json_strings_free). *present says
 * whether the key was there. */
int chan_json_groups(const cJSON *obj, int *present, char ***out, size_t *n,
                     char *err, size_t errlen);
void chan_json_strings_free(char **v, size_t n);

/* Encoding. Each returns 0, or -1 when out of memory or when the value
 * breaks a rule above (then obj may hold part of what was added). */
int chan_json_add(cJSON *obj, const char *key, cJSON *item); /* takes item */
int chan_json_add_uint(cJSON *obj, const char *key, uint64_t v);
int chan_json_add_session(cJSON *obj, const char *session_json);
int chan_json_add_groups(cJSON *obj, char *const *groups, size_t n);

/*
 * Numbers as exact text. cJSON prints a double with 15 significant digits
 * whenever that reads back within its relative epsilon, so an id such as
 * 5000000000000001 went out as 5e+15, which is 5000000000000000: another
 * user's id. chan_json_exact_numbers turns every number under item into a
 * raw item holding digits that read back as the same double: an integer
 * of at most 2^53 as plain digits, anything else with 17 significant
 * digits, a non-finite value as null. 0, or -1 when out of memory (the
 * tree is then partly converted, still valid). chan_json_print_exact
 * prints a converted copy of item compactly (NULL when out of memory);
 * release with free().
 */
int chan_json_exact_numbers(cJSON *item);
char *chan_json_print_exact(const cJSON *item);

/* Prints obj compactly with each mark written as \u0000; *len (when not
 * NULL) gets the length. NULL when out of memory, or when a mark sits outside
 * the "text" member (chan_json_marked_outside_text). */
char *chan_json_print_marked(const cJSON *obj, size_t *len);

#endif
