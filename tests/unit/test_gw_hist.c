/*
 * test_gw_hist.c - the history ring (contiguity, the byte bound, positions)
 * and catch-up (exactly once, in order, across a full queue, a walk back
 * for a recovered group, and falling out of the ring).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chan_pos.h"
#include "gw_hist.h"
#include "unit.h"

static void gw_hist_test_add(gw_hist *h, uint64_t off, const char *group) {
  char body[64];
  snprintf(body, sizeof body, "{\"n\": %llu}", (unsigned long long)off);
  uint64_t d = chan_pos_digest(off, group, strlen(group), body, strlen(body));
  gw_buf *f = group[0] == 'w' ? NULL : gw_buf_frame(1, body, strlen(body));
  UNIT_CHECK(gw_hist_append(h, off, d, group, strlen(group), f) != NULL);
}

typedef struct {
  int n, cap;
  char got[64][160];
} gw_hist_test_sink;

static int gw_hist_test_push(void *arg, gw_buf *b) {
  gw_hist_test_sink *s = arg;
  if (s->n >= s->cap) return -1;
  size_t hdr = (b->data[1] & 0x7f) < 126 ? 2 : 4;
  snprintf(s->got[s->n++], sizeof s->got[0], "%.*s", (int)(b->len - hdr), b->data + hdr);
  return 0;
}

static int gw_hist_test_has(const gw_hist_test_sink *s, int i, const char *group, int n) {
  char want[64];
  snprintf(want, sizeof want, "\"text\":\"{\\\"n\\\": %d}\"", n);
  char g[64];
  snprintf(g, sizeof g, "{\"group\":\"%s\"", group);
  return i < s->n && strstr(s->got[i], want) && strncmp(s->got[i], g, strlen(g)) == 0;
}

UNIT_TEST(gw_hist_ring_is_contiguous_and_bounded) {
  gw_hist h;
  gw_hist_init(&h, 1u << 20);
  for (uint64_t o = 100; o < 3100; o++) gw_hist_test_add(&h, o, "g");
  UNIT_CHECK(h.n == 3000 && gw_hist_at(&h, 100) && gw_hist_at(&h, 3099));
  UNIT_CHECK(gw_hist_at(&h, 3100) == NULL && gw_hist_at(&h, 99) == NULL);
  UNIT_CHECK(gw_hist_at(&h, 2000)->offset == 2000);
  /* Offsets may skip (the broker's own chunks take some): no loss. */
  gw_hist_test_add(&h, 3101 + 1, "g");
  UNIT_CHECK(h.n == 3001 && gw_hist_at(&h, 3101) == NULL && gw_hist_at(&h, 3102));
  UNIT_CHECK(h.floor == 99 && gw_hist_check(&h, "g", 3101, 0) == GW_HIST_UNKNOWN);
  gw_hist_test_add(&h, 50, "g"); /* going back: never from the bridge; start over */
  UNIT_CHECK(h.n == 1 && gw_hist_last(&h)->offset == 50 && h.floor == 49);
  gw_hist_free(&h);
  gw_hist_init(&h, 20000); /* a small bound: the oldest go */
  for (uint64_t o = 0; o < 1000; o++) gw_hist_test_add(&h, o, "g");
  UNIT_CHECK(h.bytes <= 20000 && h.n > 10 && h.evicted > 0);
  UNIT_CHECK(gw_hist_last(&h)->offset == 999 && gw_hist_at(&h, 0) == NULL);
  UNIT_CHECK(h.floor + 1 == gw_hist_at(&h, 1000 - h.n)->offset); /* the last evicted */
  gw_hist_free(&h);
}

UNIT_TEST(gw_hist_positions_check) {
  gw_hist h;
  gw_hist_init(&h, 1u << 20);
  for (uint64_t o = 10; o < 20; o++) gw_hist_test_add(&h, o, o % 2 ? "a" : "b");
  char pos[CHAN_POS_MAX];
  uint64_t off, tag;
  UNIT_CHECK(gw_hist_position(&h, "a", 15, pos) == 0);
  UNIT_CHECK(chan_pos_parse(pos, strlen(pos), &off, &tag) == 0 && off == 15);
  UNIT_CHECK(gw_hist_check(&h, "a", off, tag) == GW_HIST_OK);
  UNIT_CHECK(gw_hist_check(&h, "b", off, tag) == GW_HIST_UNKNOWN); /* foreign */
  UNIT_CHECK(gw_hist_check(&h, "a", off, tag ^ 1) == GW_HIST_UNKNOWN); /* made up */
  UNIT_CHECK(gw_hist_check(&h, "a", 25, tag) == GW_HIST_UNKNOWN);  /* ahead */
  UNIT_CHECK(gw_hist_check(&h, "a", 3, tag) == GW_HIST_EXPIRED);   /* older */
  UNIT_CHECK(gw_hist_position(&h, "a", 30, pos) == -1);
  gw_hist_reset(&h); /* recreated: the same offsets, other messages */
  for (uint64_t o = 10; o < 20; o++) gw_hist_test_add(&h, o, "c");
  UNIT_CHECK(gw_hist_check(&h, "a", off, tag) == GW_HIST_UNKNOWN);
  gw_hist_free(&h);
}

UNIT_TEST(gw_hist_envelope_escapes) {
  gw_hist h;
  gw_hist_init(&h, 1u << 20);
  const char *body = "\"q\\\n\x01";
  gw_buf *f = gw_buf_frame(1, body, strlen(body));
  gw_hist_ev *e = gw_hist_append(&h, 7, 99, "g-1", 3, f);
  gw_buf *env = gw_hist_envelope(&h, e);
  UNIT_CHECK(env && gw_hist_envelope(&h, e) == env); /* built once */
  char pos[CHAN_POS_MAX];
  chan_pos_format(pos, 7, chan_pos_tag("g-1", 3, 99));
  char want[200];
  snprintf(want, sizeof want,
           "{\"group\":\"g-1\",\"position\":\"%s\",\"text\":\"\\\"q\\\\\\n\\u0001\"}", pos);
  UNIT_CHECK(env->len == 2 + strlen(want) && memcmp(env->data + 2, want, strlen(want)) == 0);
  gw_hist_free(&h);
}

/* Members of groups a and b, for the pump. */
static void gw_hist_test_members(gw_group_table *t, gw_member **m, int conn) {
  static int dummy;
  (void)conn;
  m[0] = gw_group_join(t, "a", &dummy);
  m[1] = gw_group_join(t, "b", &dummy);
}

UNIT_TEST(gw_hist_pump_exactly_once) {
  gw_hist h;
  gw_hist_init(&h, 1u << 20);
  gw_group_table t;
  UNIT_CHECK(gw_group_table_init(&t, NULL, NULL, NULL) == 0);
  gw_member *m[2];
  gw_hist_test_members(&t, m, 1);
  for (uint64_t o = 0; o < 20; o++) gw_hist_test_add(&h, o, o % 3 == 0 ? "a" : o % 3 == 1 ? "b" : "wsgw!x");
  /* Recover a from 3 (owed 6, 9, ...), b from 10 (owed 13, 16, 19); queue
   * takes 3 at a time. */
  gw_hist_lag *lag = gw_hist_lag_new(19);
  UNIT_CHECK(gw_hist_lag_owe(lag, "a", 3) == 0 && gw_hist_lag_owe(lag, "b", 10) == 0);
  UNIT_CHECK(lag->cursor == 3);
  gw_hist_test_sink s = {.cap = 3};
  UNIT_CHECK(gw_hist_pump(&h, lag, m, 2, NULL, gw_hist_test_push, &s) == GW_HIST_PUMP_FULL);
  s.cap = 64;
  UNIT_CHECK(gw_hist_pump(&h, lag, m, 2, NULL, gw_hist_test_push, &s) == GW_HIST_PUMP_CAUGHT_UP);
  int want[][2] = {{'a', 6}, {'a', 9}, {'a', 12}, {'b', 13}, {'a', 15}, {'b', 16},
                   {'a', 18}, {'b', 19}};
  UNIT_CHECK(s.n == 8);
  for (int i = 0; i < 8; i++)
    UNIT_CHECK(gw_hist_test_has(&s, i, want[i][0] == 'a' ? "a" : "b", want[i][1]));
  /* Walking back for a, while b is already served to 19: b's not resent. */
  gw_hist_test_add(&h, 20, "b");
  UNIT_CHECK(gw_hist_lag_owe(lag, "a", 14) == 0 && lag->cursor == 14);
  s.n = 0;
  UNIT_CHECK(gw_hist_pump(&h, lag, m, 2, NULL, gw_hist_test_push, &s) == GW_HIST_PUMP_CAUGHT_UP);
  UNIT_CHECK(s.n == 3 && gw_hist_test_has(&s, 0, "a", 15) && gw_hist_test_has(&s, 1, "a", 18) &&
             gw_hist_test_has(&s, 2, "b", 20));
  /* Skipped offsets are walked over. */
  gw_hist_test_add(&h, 25, "a");
  gw_hist_test_add(&h, 27, "b");
  s.n = 0;
  UNIT_CHECK(gw_hist_pump(&h, lag, m, 2, NULL, gw_hist_test_push, &s) == GW_HIST_PUMP_CAUGHT_UP);
  UNIT_CHECK(s.n == 2 && gw_hist_test_has(&s, 0, "a", 25) && gw_hist_test_has(&s, 1, "b", 27));
  gw_hist_lag_free(lag);
  /* Fallen out of the ring. */
  lag = gw_hist_lag_new(0);
  gw_hist_reset(&h);
  for (uint64_t o = 100; o < 110; o++) gw_hist_test_add(&h, o, "a");
  UNIT_CHECK(gw_hist_pump(&h, lag, m, 2, NULL, gw_hist_test_push, &s) == GW_HIST_PUMP_EXPIRED);
  gw_hist_lag_free(lag);
  gw_group_table_free(&t);
  gw_hist_free(&h);
}
