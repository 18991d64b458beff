/*
 * fuzz_emit_batch.c - libFuzzer target: emitd's request bodies, the batch
 * (em_request_batch) and the single event with its query string
 * (em_request_single), over the strict JSON scanner (em_json).
 *
 * Input: byte 0 = switches (bit 0: a single emit, whose query string is the
 * text up to the first '\n' and whose body is the rest; else the rest is a
 * batch body; bits 1-3: max_events 1 << n, 1 to 128); the rest as said.
 *
 * Besides the sanitizers, it checks docs/PROTOCOL.md's promises: an answer
 * is 0 (accepted), 400 or 413 with a reason; an accepted request has at
 * most max_events messages, each to a valid group name, each event a span
 * of the body (never a copy) that is one JSON value by itself; an accepted
 * body is one JSON value; one event names no group twice.
 */
#include <string.h>

#include "chan_group.h"
#include "em_json.h"
#include "em_request.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  unsigned sw = data[0];
  size_t max_events = (size_t)1 << ((sw >> 1) & 7);
  const char *text = (const char *)data + 1;
  size_t len = size - 1;
  const char *body = text, *query = "";
  size_t blen = len, qlen = 0;
  if (sw & 1) {
    const char *nl = memchr(text, '\n', len);
    if (nl) {
      query = text;
      qlen = (size_t)(nl - text);
      body = nl + 1;
      blen = len - qlen - 1;
    }
  }
  em_pubs p;
  char err[256] = "";
  int rc = (sw & 1) ? em_request_single(query, qlen, body, blen, max_events, &p, err, sizeof err)
                    : em_request_batch(body, blen, max_events, &p, err, sizeof err);
  FUZZ_CHECK(rc == 0 || rc == 400 || rc == 413);
  if (rc != 0) {
    FUZZ_CHECK(err[0] != '\0');
  } else {
    char jerr[96];
    FUZZ_CHECK(p.n <= max_events);
    FUZZ_CHECK(em_json_document(body, blen, jerr, sizeof jerr) == 0);
    for (size_t i = 0; i < p.n; i++) {
      const em_pub *m = &p.v[i];
      FUZZ_CHECK(chan_group_name_valid(m->group, m->glen));
      FUZZ_CHECK(m->text >= body && m->text + m->len <= body + blen);
      FUZZ_CHECK(em_json_document(m->text, m->len, jerr, sizeof jerr) == 0);
      /* the same event (same span) never goes twice to one group */
      for (size_t k = 0; k < i; k++)
        FUZZ_CHECK(!(p.v[k].text == m->text && p.v[k].len == m->len && p.v[k].glen == m->glen &&
                     memcmp(p.v[k].group, m->group, m->glen) == 0));
    }
    if (sw & 1) FUZZ_CHECK(p.n >= 1);
  }
  em_pubs_free(&p);
  return 0;
}
