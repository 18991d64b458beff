/*
 * unit_ws.h - building a client's websocket frames for the unit tests of
 * the gateway's websocket core (test_gw_ws.c, test_gw_deflate.c).
 */
#ifndef UNIT_WS_H
#define UNIT_WS_H

#include <stddef.h>
#include <stdint.h>

/* A client frame into buf: FIN, the RSV bits (RSV1 = 4, as wslay counts
 * them), opcode, a 7- or 16-bit length, masked with key 1 2 3 4. Returns
 * its length (payload + 2..8 bytes). */
static inline size_t unit_ws_frame(uint8_t *buf, int fin, int rsv, int opcode,
                                   const void *payload, size_t len) {
  static const uint8_t key[4] = {1, 2, 3, 4};
  size_t n = 0;
  buf[n++] = (uint8_t)((fin ? 0x80 : 0) | (rsv << 4) | opcode);
  if (len < 126) {
    buf[n++] = (uint8_t)(0x80 | len);
  } else {
    buf[n++] = 0x80 | 126;
    buf[n++] = (uint8_t)(len >> 8);
    buf[n++] = (uint8_t)len;
  }
  for (int i = 0; i < 4; i++) buf[n++] = key[i];
  for (size_t i = 0; i < len; i++) buf[n + i] = ((const uint8_t *)payload)[i] ^ key[i % 4];
  return n + len;
}

#endif
