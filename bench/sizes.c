/*
 * bench-sizes - what one idle gateway connection costs in user-space memory,
 * field by field: the sizes of the gateway's structs (compiled against its
 * own headers, so they follow every change), the allocator's real chunk
 * sizes (malloc_usable_size + the 8-byte chunk header glibc adds), and
 * wslay's per-connection allocation, measured with mallinfo2() around
 * wslay_event_context_server_init (no LD_PRELOAD, no guessing at wslay's
 * private struct).
 *
 * Prints "name bytes" lines then a TOTAL; bench/run.sh puts them in
 * docs/BENCHMARKS.md. Kernel socket memory is not here: it is not in the
 * gateway's RSS either.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>
#include <wslay/wslay.h>

#include "gw_conn.h"
#include "gw_conntab.h"
#include "gw_group.h"
#include "gw_http.h"

/* What a malloc of n bytes really takes: its usable size plus the chunk
 * header. */
static size_t sizes__chunk(size_t n) {
  void *p = malloc(n);
  size_t u = p ? malloc_usable_size(p) + sizeof(size_t) : 0;
  free(p);
  return u;
}

static ssize_t sizes__recv(wslay_event_context_ptr c, uint8_t *b, size_t l, int f, void *u) {
  (void)c, (void)b, (void)l, (void)f, (void)u;
  return 0;
}

static ssize_t sizes__send(wslay_event_context_ptr c, const uint8_t *b, size_t l, int f,
                           void *u) {
  (void)c, (void)b, (void)f, (void)u;
  return (ssize_t)l;
}

/* Heap bytes one wslay server context takes, averaged over many (so the
 * allocator's top-of-heap effects wash out). */
static size_t sizes__wslay(void) {
  enum { N = 1000 };
  static wslay_event_context_ptr ctx[N];
  struct wslay_event_callbacks cb = {.recv_callback = sizes__recv,
                                     .send_callback = sizes__send};
  struct mallinfo2 before = mallinfo2();
  for (int i = 0; i < N; i++)
    if (wslay_event_context_server_init(&ctx[i], &cb, NULL) != 0) return 0;
  struct mallinfo2 after = mallinfo2();
  for (int i = 0; i < N; i++) wslay_event_context_free(ctx[i]);
  size_t used = (after.uordblks + after.hblkhd) - (before.uordblks + before.hblkhd);
  return used / N;
}

static void sizes__line(const char *name, size_t bytes, const char *why) {
  printf("%-34s %6zu  %s\n", name, bytes, why);
}

int main(void) {
  size_t conn = sizes__chunk(sizeof(gw_conn)), ws = sizes__wslay();
  size_t member = sizes__chunk(sizeof(gw_member)), members = sizes__chunk(sizeof(gw_member *));
  /* The table keeps its load under 1/2 (gw_conntab.c): two slots each. */
  size_t slot = 2 * sizeof(gw_conntab_slot);
  size_t session = sizes__chunk(sizeof("{\"user\": 1}"));
  printf("# struct sizes (sizeof)\n");
  sizes__line("sizeof(gw_conn)", sizeof(gw_conn), "one connection, calloc'd at accept");
  sizes__line("  of which sizeof(uv_tcp_t)", sizeof(uv_tcp_t), "libuv handle, embedded");
  sizes__line("  of which sizeof(gw_relay)", sizeof(gw_relay),
              "workers, memberships, session (c->relay)");
  sizes__line("  of which sizeof(gw_ws)", sizeof(gw_ws),
              "wslay context pointer and frame tracker (c->ws)");
  sizes__line("  of which sizeof(gw_send)", sizeof(gw_send), "send queue (c->send)");
  sizes__line("sizeof(gw_member)", sizeof(gw_member), "one group membership");
  sizes__line("sizeof(gw_send__node)", sizeof(gw_send__node),
              "one queued frame (malloc per delivery)");
  sizes__line("sizeof(gw_buf) header", sizeof(gw_buf), "shared frame header");
  sizes__line("sizeof(gw_http_req)", sizeof(gw_http_req), "until the upgrade only");
  sizes__line("sizeof(gw_conntab_slot)", sizeof(gw_conntab_slot), "id -> connection");
  printf("# only while a client message is on its way (gw_ws frees it between messages)\n");
  sizes__line("wslay context", ws, "mallinfo2 delta per wslay_event_context_server_init");
  printf("# heap per idle, subscribed connection (allocator chunks)\n");
  sizes__line("gw_conn chunk", conn, "malloc_usable_size + 8");
  sizes__line("gw_member chunk", member, "one group");
  sizes__line("members array chunk", members, "realloc'd to the group count");
  sizes__line("session chunk", session, "strdup of {\"user\": 1}");
  sizes__line("user key membership", member, "wsgw!user.<uid> (kicks by user)");
  sizes__line("expiry heap entry", sizeof(gw_expiry_entry),
              "a token with exp (up to 2x while the array has room)");
  sizes__line("conntab slots", slot, "open addressing, load <= 1/2");
  printf("TOTAL %zu\n", conn + member + members + session + slot + member +
                          sizeof(gw_expiry_entry));
  return 0;
}
