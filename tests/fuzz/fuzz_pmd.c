/*
 * fuzz_pmd.c - libFuzzer target: a Sec-WebSocket-Extensions header value
 * through the gateway's permessage-deflate negotiation (gatewayd/gw_pmd.c).
 * Checks what an answer promises: it is one of the few the gateway ever
 * gives, its flags agree with it (compressed messages only with the full
 * window; chained ones only without server_no_context_takeover), and
 * declining writes nothing.
 *
 * Input: the header value (NUL-terminated here; llhttp never hands over a
 * NUL inside a value).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "gw_pmd.h"

#define BASE "permessage-deflate; client_no_context_takeover"
#define ALONE "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *value = malloc(size + 1);
  FUZZ_CHECK(value != NULL);
  memcpy(value, data, size);
  value[size] = '\0';
  char answer[GW_PMD_ANSWER_MAX];
  memset(answer, 0, sizeof answer);
  int flags = gw_pmd_negotiate(value, answer);
  if (!flags) {
    FUZZ_CHECK(answer[0] == '\0');
  } else {
    FUZZ_CHECK(flags & GW_PMD_RECV);
    int alone = strncmp(answer, ALONE, strlen(ALONE)) == 0;
    FUZZ_CHECK(alone || strncmp(answer, BASE, strlen(BASE)) == 0);
    const char *rest = answer + strlen(alone ? ALONE : BASE);
    int bits = 0;
    if (*rest) {
      char tail[8] = "";
      FUZZ_CHECK(sscanf(rest, "; server_max_window_bits=%d%7s", &bits, tail) == 1);
      FUZZ_CHECK(bits >= 8 && bits <= 15);
    }
    /* compressed messages go only to a client with the full window */
    FUZZ_CHECK(!!(flags & GW_PMD_SEND) == (bits == 0 || bits == 15));
    /* messages may refer to earlier ones only when the answer lets the
     * client keep its window */
    FUZZ_CHECK(!!(flags & GW_PMD_CHAIN) == (!alone && (flags & GW_PMD_SEND)));
    /* the offer named the extension (any case) */
    char *lower = strdup(value);
    for (char *p = lower; *p; p++) *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    FUZZ_CHECK(strstr(lower, "permessage-deflate") != NULL);
    free(lower);
  }
  free(value);
  return 0;
}
