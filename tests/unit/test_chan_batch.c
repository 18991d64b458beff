/*
 * test_chan_batch.c - batches of channel messages or replies: the header's
 * count (absent, good, out of range, not a number), a body checked whole
 * (count, empty items, a missing last newline) and walked, which items may
 * join, and the properties a batch is published with.
 */
#include <string.h>

#include "chan_batch.h"
#include "unit.h"

static amqp_basic_properties_t props_with(amqp_table_entry_t *e, amqp_field_value_kind_t kind,
                                          long v) {
  amqp_basic_properties_t p;
  memset(&p, 0, sizeof p);
  p._flags = AMQP_BASIC_HEADERS_FLAG;
  e->key = amqp_cstring_bytes(CHAN_BATCH_HEADER);
  e->value.kind = kind;
  if (kind == AMQP_FIELD_KIND_UTF8) e->value.value.bytes = amqp_cstring_bytes("3");
  else if (kind == AMQP_FIELD_KIND_U64) e->value.value.u64 = (uint64_t)v;
  else e->value.value.i64 = v;
  p.headers.num_entries = 1;
  p.headers.entries = e;
  return p;
}

UNIT_TEST(chan_batch_count_reads_the_header) {
  amqp_basic_properties_t none;
  memset(&none, 0, sizeof none);
  UNIT_CHECK(chan_batch_count(&none) == 0); /* a single message */
  amqp_table_entry_t e;
  amqp_basic_properties_t p = props_with(&e, AMQP_FIELD_KIND_I64, 3);
  UNIT_CHECK(chan_batch_count(&p) == 3);
  p = props_with(&e, AMQP_FIELD_KIND_I64, CHAN_BATCH_MAX);
  UNIT_CHECK(chan_batch_count(&p) == CHAN_BATCH_MAX);
  p = props_with(&e, AMQP_FIELD_KIND_I64, CHAN_BATCH_MAX + 1);
  UNIT_CHECK(chan_batch_count(&p) == -1);
  p = props_with(&e, AMQP_FIELD_KIND_I64, 1); /* one is sent alone, never as a batch */
  UNIT_CHECK(chan_batch_count(&p) == -1);
  p = props_with(&e, AMQP_FIELD_KIND_I64, -5);
  UNIT_CHECK(chan_batch_count(&p) == -1);
  p = props_with(&e, AMQP_FIELD_KIND_U64, 1000000000001L);
  UNIT_CHECK(chan_batch_count(&p) == -1);
  p = props_with(&e, AMQP_FIELD_KIND_UTF8, 0);
  UNIT_CHECK(chan_batch_count(&p) == -1);
  /* The properties a batch is published with read back as its count. */
  amqp_table_entry_t h;
  chan_batch_props(&p, &h, 7);
  UNIT_CHECK(chan_batch_count(&p) == 7);
  UNIT_CHECK(p.content_type.len == strlen(CHAN_BATCH_CONTENT_TYPE));
  UNIT_CHECK(p.delivery_mode == AMQP_DELIVERY_NONPERSISTENT);
}

UNIT_TEST(chan_batch_check_and_walk) {
  char err[96];
  const char good[] = "{\"a\":1}\n{\"b\":2}\n{\"c\":\"x\\ny\"}\n";
  size_t n = strlen(good);
  UNIT_CHECK(chan_batch_check(good, n, 3, err, sizeof err) == 0);
  size_t pos = 0, len;
  const char *item;
  UNIT_CHECK(chan_batch_next(good, n, &pos, &item, &len) == 1);
  UNIT_CHECK(len == 7 && memcmp(item, "{\"a\":1}", 7) == 0);
  UNIT_CHECK(chan_batch_next(good, n, &pos, &item, &len) == 1);
  UNIT_CHECK(chan_batch_next(good, n, &pos, &item, &len) == 1);
  UNIT_CHECK(len == 12 && item[len - 1] == '}'); /* an escaped newline stays in */
  UNIT_CHECK(chan_batch_next(good, n, &pos, &item, &len) == 0);
  /* The count must match, both ways. */
  UNIT_CHECK(chan_batch_check(good, n, 2, err, sizeof err) == -1);
  UNIT_CHECK(strstr(err, "more than 2") != NULL);
  UNIT_CHECK(chan_batch_check(good, n, 4, err, sizeof err) == -1);
  UNIT_CHECK(strstr(err, "3 items, header says 4") != NULL);
  /* No last newline; an empty item; an empty body. */
  UNIT_CHECK(chan_batch_check("{}\n{}", 5, 2, err, sizeof err) == -1);
  UNIT_CHECK(strstr(err, "item 2 has no newline") != NULL);
  UNIT_CHECK(chan_batch_check("{}\n\n{}\n", 7, 3, err, sizeof err) == -1);
  UNIT_CHECK(strstr(err, "item 2 is empty") != NULL);
  UNIT_CHECK(chan_batch_check("", 0, 2, err, sizeof err) == -1);
  /* The walk of an unchecked body stops at a missing newline. */
  pos = 0;
  UNIT_CHECK(chan_batch_next("{}\n{}", 5, &pos, &item, &len) == 1);
  UNIT_CHECK(chan_batch_next("{}\n{}", 5, &pos, &item, &len) == 0);
}

UNIT_TEST(chan_batch_items_with_a_newline_go_alone) {
  UNIT_CHECK(chan_batch_item_ok("{\"a\":1}", 7));
  UNIT_CHECK(!chan_batch_item_ok("{\"a\":\n1}", 8));
  UNIT_CHECK(!chan_batch_item_ok("", 0));
}
