/*
 * em_request.h - what one emit request asks for: the list of (group, event
 * bytes) messages to publish, from POST /emit's query and body or from
 * POST /emit/batch's body (docs/PROTOCOL.md, "Emitting over HTTP").
 *
 * Owns: reading those requests strictly and wording every refusal (the
 * 400's "error" text, which names the group, the byte or the batch entry)
 * and the max_events bound (413). Must not: do I/O, or copy an event: a
 * message points into the request body, which the caller keeps alive.
 */
#ifndef EM_REQUEST_H
#define EM_REQUEST_H

#include <stddef.h>

/* One message: routing key (a valid group name) and body. */
typedef struct em_pub {
  const char *group;
  size_t glen;
  const char *text;
  size_t len;
} em_pub;

/* The messages of one request. v grows by doubling, at most max_events
 * entries; names holds group names decoded from a query string. */
typedef struct em_pubs {
  em_pub *v;
  size_t n, cap;
  char *names;
} em_pubs;

void em_pubs_free(em_pubs *p);

/* POST /emit?group=G[&group=G2...]: body is the event. Query values are
 * percent-decoded. 0 with out filled; else the HTTP status (400, 413) with
 * the reason in err. out is for em_pubs_free either way. */
int em_request_single(const char *query, size_t qlen, const char *body,
                      size_t blen, size_t max_events, em_pubs *out, char *err,
                      size_t errlen);

/* POST /emit/batch: {"events": [{"groups": [G, ...], "event": V}, ...]}
 * ("group": G for one group). Same results as em_request_single. */
int em_request_batch(const char *body, size_t blen, size_t max_events,
                     em_pubs *out, char *err, size_t errlen);

#endif
