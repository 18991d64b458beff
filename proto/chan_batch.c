/*
 * chan_batch.c - batches of channel messages or replies (see chan_batch.h).
 *
 * Costs: a batch is scanned twice (the check, then the walk), memchr for
 * '\n' each time; the items are never copied here.
 */
#include "chan_batch.h"

#include <stdio.h>
#include <string.h>

#include "mq_conn.h"

int chan_batch_count(const amqp_basic_properties_t *p) {
  long n;
  int rc = mq_header_int(p, CHAN_BATCH_HEADER, &n);
  if (rc == 0) return 0;
  if (rc < 0 || n < 2 || n > CHAN_BATCH_MAX) return -1;
  return (int)n;
}

int chan_batch_check(const void *body, size_t len, int count, char *err,
                     size_t errlen) {
  const char *p = body, *end = p + len;
  int n = 0;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) {
      snprintf(err, errlen, "item %d has no newline at its end", n + 1);
      return -1;
    }
    if (nl == p) {
      snprintf(err, errlen, "item %d is empty", n + 1);
      return -1;
    }
    if (++n > count) break;
    p = nl + 1;
  }
  if (n != count) {
    snprintf(err, errlen, "%s%d items, header says %d", n > count ? "more than " : "",
             n > count ? count : n, count);
    return -1;
  }
  return 0;
}

int chan_batch_next(const void *body, size_t len, size_t *pos,
                    const char **item, size_t *item_len) {
  const char *b = body;
  if (*pos >= len) return 0;
  const char *nl = memchr(b + *pos, '\n', len - *pos);
  if (!nl) return 0; /* not a checked body: stop rather than overrun */
  *item = b + *pos;
  *item_len = (size_t)(nl - *item);
  *pos = (size_t)(nl - b) + 1;
  return 1;
}

int chan_batch_item_ok(const void *item, size_t len) {
  return len > 0 && memchr(item, '\n', len) == NULL;
}

void chan_batch_props(amqp_basic_properties_t *p, amqp_table_entry_t *entry,
                      int n) {
  mq_json_props(p, 0);
  p->content_type = amqp_cstring_bytes(CHAN_BATCH_CONTENT_TYPE);
  p->_flags |= AMQP_BASIC_HEADERS_FLAG;
  entry->key = amqp_cstring_bytes(CHAN_BATCH_HEADER);
  entry->value.kind = AMQP_FIELD_KIND_I32;
  entry->value.value.i32 = n;
  p->headers.num_entries = 1;
  p->headers.entries = entry;
}
