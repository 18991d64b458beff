/*
 * fuzz_http_upgrade.c - libFuzzer target: the upgrade request, as gw_conn
 * feeds it (gw_http_req_feed per socket read, then gw_http_req_check, then
 * the header list of websocket.connect and our responses).
 *
 * Input: byte 0 picks where the stream is split (reads rarely align with
 * header boundaries, and llhttp hands pieces over across them); byte 1 holds
 * switches (echo route on, the smallest configurable limits, one byte per
 * read); the rest is what the client sent.
 */
#include <ctype.h>
#include <string.h>

#include "fuzz.h"
#include "gw_http.h"

/* gw_config's defaults, and the smallest values it accepts. */
#define DEF_HEAD 8192
#define DEF_HEADERS 64
#define MIN_HEAD 512
#define MIN_HEADERS 4

/* Checks what a complete, accepted head promises its users. */
static void check_upgrade(const gw_http_req *r, const gw_http_upgrade *up) {
  FUZZ_CHECK(up->path && up->query && up->key);
  FUZZ_CHECK(strncmp(up->path, "/websocket", 10) == 0);
  FUZZ_CHECK(strlen(up->key) == 24);
  char resp[256];
  const char *proto = gw_http_wants_protocol(r, "wsgw.2") ? "wsgw.2" : NULL;
  size_t n = gw_http_switching(up->key, proto, NULL, resp, sizeof(resp));
  FUZZ_CHECK(n > 0 && n < sizeof(resp));
  FUZZ_CHECK(memcmp(resp, "HTTP/1.1 101 ", 13) == 0);
  FUZZ_CHECK((strstr(resp, "Sec-WebSocket-Protocol: wsgw.2\r\n") != NULL) == (proto != NULL));
  FUZZ_CHECK(gw_http_req_header(r, "sec-websocket-key") == up->key);

  chan_header *hdrs = NULL;
  size_t n_hdrs = 0;
  char *scratch = NULL;
  FUZZ_CHECK(gw_http_req_forward(r, "authorization,cookie,origin,host,x-a", "token,csrftoken",
                                 &hdrs, &n_hdrs, &scratch) == 0);
  FUZZ_CHECK(n_hdrs <= r->n_hdrs && n_hdrs <= r->max_hdrs);
  for (size_t i = 0; i < n_hdrs; i++) {
    /* Names inside the head buffer, NUL-terminated there, lower case
     * (websocket.connect promises workers lower-case names); values there
     * too, or for a filtered Cookie in the scratch buffer, never longer
     * than the header they came from. */
    FUZZ_CHECK(hdrs[i].name >= r->head && hdrs[i].name < r->head + r->used);
    size_t nl = strlen(hdrs[i].name);
    FUZZ_CHECK(hdrs[i].name + nl < r->head + r->used);
    for (size_t j = 0; j < nl; j++)
      FUZZ_CHECK(!isupper((unsigned char)hdrs[i].name[j]));
    if (strcmp(hdrs[i].name, "cookie") == 0) {
      FUZZ_CHECK(scratch && hdrs[i].value >= scratch && strlen(hdrs[i].value) > 0);
      FUZZ_CHECK(strlen(hdrs[i].value) <= r->used);
    } else {
      FUZZ_CHECK(hdrs[i].value >= r->head && hdrs[i].value < r->head + r->used);
      FUZZ_CHECK(hdrs[i].value + strlen(hdrs[i].value) < r->head + r->used);
    }
  }
  free(hdrs);
  free(scratch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  const int echo = data[1] & 1;
  const int small = data[1] & 2;
  const int bytewise = data[1] & 4;
  const char *in = (const char *)data + 2;
  size_t len = size - 2;
  size_t split = len * data[0] / 255;

  gw_http_req *r = small ? gw_http_req_new(MIN_HEAD, MIN_HEADERS)
                         : gw_http_req_new(DEF_HEAD, DEF_HEADERS);
  FUZZ_CHECK(r != NULL);

  /* As gw_conn__on_http: feed each read until the parser stops asking. */
  int rc = GW_HTTP_MORE;
  size_t off = 0;
  while (rc == GW_HTTP_MORE && off < len) {
    size_t n = bytewise ? 1 : off < split ? split - off : len - off;
    rc = gw_http_req_feed(r, in + off, n);
    off += n;
    FUZZ_CHECK(r->used <= r->max);
    FUZZ_CHECK(r->n_hdrs <= r->max_hdrs);
  }

  if (rc == GW_HTTP_DONE) {
    FUZZ_CHECK(r->complete);
    FUZZ_CHECK(r->early_len <= r->max);
    FUZZ_CHECK(r->early_len == 0 || r->early != NULL);
    /* What the head and the early bytes came from adds up. */
    FUZZ_CHECK((size_t)r->fed + r->early_len <= off);
    gw_http_upgrade up;
    rc = gw_http_req_check(r, echo, &up);
    if (rc == 0) check_upgrade(r, &up);
    else FUZZ_CHECK(rc == 400 || rc == 404 || rc == 405 || rc == 426);
    /* Bytes fed after the head (TLS records already decrypted) are kept
     * as early data, up to max_head in all, never parsed. */
    size_t before = r->early_len;
    int again = gw_http_req_feed(r, "x", 1);
    FUZZ_CHECK(again == GW_HTTP_DONE ? r->early_len == before + 1
                                     : again == 400 && before == r->max);
    FUZZ_CHECK(r->early_len <= r->max);
  } else if (rc != GW_HTTP_MORE) {
    FUZZ_CHECK(rc >= 400 && rc <= 599);
    char resp[512];
    size_t n = gw_http_error(rc, resp, sizeof(resp));
    FUZZ_CHECK(n > 0 && n < sizeof(resp));
  }
  gw_http_req_free(r);
  return 0;
}
