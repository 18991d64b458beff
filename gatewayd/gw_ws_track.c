/*
 * gw_ws_track.c - frame boundaries from headers (see gw_ws_track.h). The
 * payload is skipped, not read: the cost is a few compares per frame.
 */
#include "gw_ws_track.h"

/* Header length once its first two bytes are known. */
static uint8_t gw_ws_track__header_len(const uint8_t *h) {
  uint8_t len7 = h[1] & 0x7f;
  uint8_t n = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
  return (uint8_t)(n + ((h[1] & 0x80) ? 4 : 0));
}

static uint64_t gw_ws_track__payload_len(const uint8_t *h) {
  uint8_t len7 = h[1] & 0x7f;
  if (len7 < 126) return len7;
  if (len7 == 126) return (uint64_t)h[2] << 8 | h[3];
  uint64_t n = 0;
  for (int i = 0; i < 8; i++) n = n << 8 | h[2 + i];
  return n;
}

/* A whole header is in: note where the message stands. Control frames
 * (opcode 8 and up) may come between fragments and change nothing. */
static void gw_ws_track__header_done(gw_ws_track *t) {
  uint8_t fin = t->hdr[0] & 0x80, opcode = t->hdr[0] & 0x0f;
  if (opcode == 1 || opcode == 2) t->in_message = !fin; /* a data message starts */
  else if (opcode == 0 && fin) t->in_message = 0;       /* its last fragment */
  t->payload_left = gw_ws_track__payload_len(t->hdr);
  t->hdr_have = 0;
}

void gw_ws_track_feed(gw_ws_track *t, const uint8_t *data, size_t len) {
  while (len > 0) {
    if (t->payload_left > 0) {
      uint64_t n = t->payload_left < len ? t->payload_left : len;
      t->payload_left -= n;
      data += n;
      len -= (size_t)n;
      continue;
    }
    t->hdr[t->hdr_have++] = *data++;
    len--;
    if (t->hdr_have >= 2 && t->hdr_have == gw_ws_track__header_len(t->hdr))
      gw_ws_track__header_done(t);
  }
}
