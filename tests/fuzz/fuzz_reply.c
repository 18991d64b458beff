/*
 * fuzz_reply.c - libFuzzer target: chan_reply_decode, the gateway's reading
 * of a worker's reply off the broker (untrusted: any process with access to
 * the vhost can publish to the gateway's queue).
 *
 * Whatever decodes must encode again (the decoder only lets through what
 * the gateway can act on, and the encoder enforces the same rules), and
 * decoding that encoding must give the same reply: one rule on both sides.
 * Positions (wsgw.2) come out sorted, unique, each one of the reply's
 * groups.
 */
#include <string.h>

#include "chan_group.h"
#include "chan_reply.h"
#include "fuzz.h"

static int same_str(const char *a, const char *b) {
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_same(const chan_reply *a, const chan_reply *b) {
  FUZZ_CHECK(strcmp(a->reply_channel, b->reply_channel) == 0);
  FUZZ_CHECK(a->order == b->order);
  FUZZ_CHECK(a->accept == b->accept && a->status == b->status);
  FUZZ_CHECK(a->n_texts == b->n_texts);
  for (size_t i = 0; i < a->n_texts; i++)
    FUZZ_CHECK(a->texts[i].len == b->texts[i].len &&
               memcmp(a->texts[i].data, b->texts[i].data, a->texts[i].len) == 0);
  FUZZ_CHECK(a->has_bytes == b->has_bytes && a->bytes_len == b->bytes_len);
  if (a->bytes_len) FUZZ_CHECK(memcmp(a->bytes, b->bytes, a->bytes_len) == 0);
  FUZZ_CHECK(a->close_code == b->close_code);
  FUZZ_CHECK(same_str(a->session_json, b->session_json));
  FUZZ_CHECK(a->has_groups == b->has_groups && a->n_groups == b->n_groups);
  for (size_t i = 0; i < a->n_groups; i++)
    FUZZ_CHECK(strcmp(a->groups[i], b->groups[i]) == 0);
  FUZZ_CHECK(a->user == b->user && a->expires == b->expires &&
             a->recheck == b->recheck);
  FUZZ_CHECK(a->has_positions == b->has_positions &&
             a->n_positions == b->n_positions);
  for (size_t i = 0; i < a->n_positions; i++)
    FUZZ_CHECK(strcmp(a->positions[i].group, b->positions[i].group) == 0 &&
               a->positions[i].offset == b->positions[i].offset &&
               a->positions[i].tag == b->positions[i].tag);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  chan_reply r, back;
  char err[160];
  if (chan_reply_decode((const char *)data, size, &r, err, sizeof(err)) != 0) {
    FUZZ_CHECK(r.reply_channel == NULL && r.texts == NULL && r.groups == NULL);
    return 0;
  }
  /* What the gateway relies on before applying it. */
  FUZZ_CHECK(r.reply_channel != NULL);
  FUZZ_CHECK(r.accept >= -1 && r.accept <= 1);
  FUZZ_CHECK(r.close_code == 0 || (r.close_code >= 1000 && r.close_code <= 4999));
  FUZZ_CHECK(r.session_json == NULL || strlen(r.session_json) <= 4096);
  /* Ids the gateway turns into a key and a deadline: exact, <= 2^53-1. */
  FUZZ_CHECK(r.user <= 9007199254740991ull && r.expires <= 9007199254740991ull &&
             r.recheck <= 9007199254740991ull);
  /* A text may hold NULs (U+0000), never a 0xFF (chan_json.h), and is
   * terminated after its length. */
  for (size_t i = 0; i < r.n_texts; i++)
    FUZZ_CHECK(r.texts[i].data[r.texts[i].len] == '\0' &&
               !memchr(r.texts[i].data, 0xff, r.texts[i].len));
  /* Positions: only with groups, valid names, sorted and unique, each a
   * group of the reply, offsets and tags as chan_pos_parse reads them. */
  FUZZ_CHECK(!r.has_positions || r.has_groups);
  FUZZ_CHECK(r.n_positions <= CHAN_GROUPS_MAX && (r.has_positions || !r.n_positions));
  for (size_t i = 0; i < r.n_positions; i++) {
    const chan_reply_pos *p = &r.positions[i];
    FUZZ_CHECK(chan_group_name_valid(p->group, strlen(p->group)));
    FUZZ_CHECK(i == 0 || strcmp(r.positions[i - 1].group, p->group) < 0);
    FUZZ_CHECK(p->offset <= (uint64_t)INT64_MAX && p->tag <= 0xffffffffffffull);
    int in = 0;
    for (size_t j = 0; j < r.n_groups && !in; j++) in = strcmp(r.groups[j], p->group) == 0;
    FUZZ_CHECK(in);
  }

  size_t len;
  char *json = chan_reply_encode(&r, &len);
  FUZZ_CHECK(json != NULL);
  FUZZ_CHECK(chan_reply_decode(json, len, &back, err, sizeof(err)) == 0);
  check_same(&r, &back);
  chan_reply_free(&back);
  free(json);
  chan_reply_free(&r);
  return 0;
}
