/*
 * test_gw_ws_track.c - the frame-boundary tracker agrees with the framing
 * of RFC 6455 for every length encoding, fragmentation with control frames
 * in between, and any split of the stream into reads.
 */
#include <stdlib.h>
#include <string.h>

#include "gw_ws_track.h"
#include "unit.h"

/* A masked client frame into out; returns its length. */
static size_t client_frame(uint8_t *out, int fin, int opcode, size_t len) {
  size_t n = 0;
  out[n++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
  if (len < 126) {
    out[n++] = (uint8_t)(0x80 | len);
  } else if (len <= 0xffff) {
    out[n++] = 0x80 | 126;
    out[n++] = (uint8_t)(len >> 8);
    out[n++] = (uint8_t)len;
  } else {
    out[n++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--) out[n++] = (uint8_t)((uint64_t)len >> (8 * i));
  }
  memcpy(out + n, "\x11\x22\x33\x44", 4);
  n += 4;
  memset(out + n, 0x5a, len);
  return n + len;
}

UNIT_TEST(gw_ws_track_whole_frames_of_every_length_encoding) {
  size_t lens[] = {0, 1, 125, 126, 65535, 65536, 70000};
  uint8_t *buf = malloc(80000);
  for (size_t i = 0; i < sizeof(lens) / sizeof(*lens); i++) {
    gw_ws_track t = {0};
    size_t n = client_frame(buf, 1, 1, lens[i]);
    gw_ws_track_feed(&t, buf, n - 1);
    UNIT_CHECK(!gw_ws_track_idle(&t) || (n - 1 == 0));
    gw_ws_track_feed(&t, buf + n - 1, 1);
    UNIT_CHECK(gw_ws_track_idle(&t));
  }
  free(buf);
}

UNIT_TEST(gw_ws_track_fragmented_message_with_ping_between) {
  uint8_t buf[4096];
  size_t n = 0;
  n += client_frame(buf + n, 0, 1, 10); /* text, not final */
  size_t after_first = n;
  n += client_frame(buf + n, 1, 9, 3);  /* ping in between */
  size_t after_ping = n;
  n += client_frame(buf + n, 0, 0, 200); /* continuation */
  n += client_frame(buf + n, 1, 0, 5);   /* final continuation */
  gw_ws_track t = {0};
  gw_ws_track_feed(&t, buf, after_first);
  UNIT_CHECK(!gw_ws_track_idle(&t)); /* message open */
  gw_ws_track_feed(&t, buf + after_first, after_ping - after_first);
  UNIT_CHECK(!gw_ws_track_idle(&t)); /* still open after the ping */
  gw_ws_track_feed(&t, buf + after_ping, n - after_ping);
  UNIT_CHECK(gw_ws_track_idle(&t));
}

UNIT_TEST(gw_ws_track_any_split_gives_the_same_answer) {
  uint8_t buf[1024];
  size_t n = 0;
  n += client_frame(buf + n, 1, 2, 130);
  n += client_frame(buf + n, 0, 1, 7);
  n += client_frame(buf + n, 1, 10, 0); /* pong */
  n += client_frame(buf + n, 1, 0, 300);
  n += client_frame(buf + n, 1, 1, 0);
  int ok = 1;
  for (size_t cut = 0; cut <= n; cut++) {
    gw_ws_track t = {0};
    gw_ws_track_feed(&t, buf, cut);
    for (size_t i = cut; i < n; i++) gw_ws_track_feed(&t, buf + i, 1);
    ok &= gw_ws_track_idle(&t);
  }
  UNIT_CHECK(ok);
  /* and the idle points seen byte by byte are exactly the message ends */
  gw_ws_track t = {0};
  int idle_points = 0;
  for (size_t i = 0; i < n; i++) {
    gw_ws_track_feed(&t, buf + i, 1);
    idle_points += gw_ws_track_idle(&t);
  }
  /* the binary frame, the fragmented text (the pong inside it does not
   * count), the empty text: three message ends, nothing in between */
  UNIT_CHECK(idle_points == 3);
}
