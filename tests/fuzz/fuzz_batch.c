/*
 * fuzz_batch.c - libFuzzer target: chan_batch_check and chan_batch_next,
 * how both daemons split a batch off the broker (untrusted: anything with
 * access to the vhost can publish one), then each item read as the reply
 * the gateway would apply.
 *
 * Input: the first byte is the header's count (0..255), the rest the body.
 * Properties: the check accepts exactly when the body is that many
 * non-empty items each ended by '\n' (an oracle written here, byte by
 * byte); an accepted body's walk gives those items, in order, covering
 * the body exactly; the walk of any body never reads past it.
 */
#include <string.h>

#include "chan_batch.h"
#include "chan_reply.h"
#include "fuzz.h"

/* The items of body by a plain scan, or -1 when it is not a batch. */
static int oracle(const uint8_t *b, size_t n) {
  int items = 0;
  size_t start = 0;
  for (size_t i = 0; i < n; i++) {
    if (b[i] != '\n') continue;
    if (i == start) return -1; /* empty item */
    items++;
    start = i + 1;
  }
  return start == n ? items : -1; /* a tail without its newline */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int count = data[0];
  const uint8_t *body = data + 1;
  size_t len = size - 1;
  char err[96];
  int ok = chan_batch_check(body, len, count, err, sizeof err) == 0;
  int want = oracle(body, len);
  FUZZ_CHECK(ok == (want >= 0 && want == count));
  size_t pos = 0, ilen, covered = 0;
  const char *item;
  int n = 0;
  while (chan_batch_next(body, len, &pos, &item, &ilen)) {
    FUZZ_CHECK((const uint8_t *)item >= body && (const uint8_t *)item + ilen < body + len);
    FUZZ_CHECK(item[ilen] == '\n' && memchr(item, '\n', ilen) == NULL);
    covered += ilen + 1;
    n++;
    if (ok) { /* what the gateway does with each */
      chan_reply r;
      if (chan_reply_decode(item, ilen, &r, err, sizeof err) == 0) chan_reply_free(&r);
    }
  }
  FUZZ_CHECK(pos <= len);
  if (ok) FUZZ_CHECK(n == count && covered == len);
  return 0;
}
