/*
 * test_wk_redeliver.c - delivery counting of poison messages: the decision
 * and the header it is based on (wk_redeliver.h).
 */
#include <string.h>

#include "unit.h"
#include "wk_redeliver.h"

UNIT_TEST(wk_redeliver_fresh_delivery_is_handled) {
  long n = -1;
  UNIT_CHECK(wk_redeliver_decide(0, 0, 5, &n) == WK_REDELIVER_HANDLE);
  UNIT_CHECK(n == 1);
  /* A copy a worker put back: handled, and it knows its number. */
  UNIT_CHECK(wk_redeliver_decide(0, 4, 5, &n) == WK_REDELIVER_HANDLE);
  UNIT_CHECK(n == 4);
}

UNIT_TEST(wk_redeliver_redelivery_counts_up_then_dies) {
  long n = -1;
  /* The original crashed a worker once: delivery 2, put back. */
  UNIT_CHECK(wk_redeliver_decide(1, 0, 3, &n) == WK_REDELIVER_REQUEUE);
  UNIT_CHECK(n == 2);
  UNIT_CHECK(wk_redeliver_decide(1, 2, 3, &n) == WK_REDELIVER_REQUEUE);
  UNIT_CHECK(n == 3);
  /* Handled 3 times (the limit) and crashed each time: dead. */
  UNIT_CHECK(wk_redeliver_decide(1, 3, 3, &n) == WK_REDELIVER_DEAD);
  UNIT_CHECK(n == 4);
  /* max 1: never handled twice. */
  UNIT_CHECK(wk_redeliver_decide(1, 0, 1, &n) == WK_REDELIVER_DEAD);
}

static long wk_redeliver_t_count(amqp_field_value_t v) {
  amqp_table_entry_t e[2];
  amqp_basic_properties_t p;
  memset(&p, 0, sizeof p);
  e[0].key = amqp_cstring_bytes("x-other");
  e[0].value.kind = AMQP_FIELD_KIND_I32;
  e[0].value.value.i32 = 99;
  e[1].key = amqp_cstring_bytes(WK_REDELIVER_HEADER);
  e[1].value = v;
  p._flags = AMQP_BASIC_HEADERS_FLAG;
  p.headers.num_entries = 2;
  p.headers.entries = e;
  return wk_redeliver_count(&p);
}

UNIT_TEST(wk_redeliver_count_reads_any_integer_width) {
  amqp_field_value_t v;
  amqp_basic_properties_t none;
  memset(&none, 0, sizeof none);
  UNIT_CHECK(wk_redeliver_count(&none) == 0);
  v.kind = AMQP_FIELD_KIND_I64;
  v.value.i64 = 3;
  UNIT_CHECK(wk_redeliver_t_count(v) == 3);
  /* pika sends small ints as 'I' (32-bit), others as 'b' or 'l'. */
  v.kind = AMQP_FIELD_KIND_I32;
  v.value.i32 = 2;
  UNIT_CHECK(wk_redeliver_t_count(v) == 2);
  v.kind = AMQP_FIELD_KIND_I8;
  v.value.i8 = 4;
  UNIT_CHECK(wk_redeliver_t_count(v) == 4);
}

UNIT_TEST(wk_redeliver_count_ignores_nonsense) {
  amqp_field_value_t v;
  v.kind = AMQP_FIELD_KIND_I64;
  v.value.i64 = -7;
  UNIT_CHECK(wk_redeliver_t_count(v) == 0);
  v.kind = AMQP_FIELD_KIND_UTF8;
  v.value.bytes = amqp_cstring_bytes("3");
  UNIT_CHECK(wk_redeliver_t_count(v) == 0);
  v.kind = AMQP_FIELD_KIND_U64;
  v.value.u64 = (uint64_t)1 << 62;
  UNIT_CHECK(wk_redeliver_t_count(v) == 0);
}
