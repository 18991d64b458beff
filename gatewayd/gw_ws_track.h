/*
 * gw_ws_track.h - where a client's byte stream stands between websocket
 * frames, from the frame headers alone (RFC 6455 section 5.2).
 *
 * Owns: 24 bytes of state per connection. It exists so that the gateway can
 * free a connection's wslay context (~9 KiB) whenever wslay holds nothing:
 * no partial frame and no fragmented message half received. wslay itself
 * cannot say so, and an idle connection is what a gateway mostly holds.
 * Must not: validate anything (wslay does, and fails the connection first:
 * the tracker is only trusted while the connection is healthy).
 */
#ifndef GW_WS_TRACK_H
#define GW_WS_TRACK_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw_ws_track {
  uint64_t payload_left; /* bytes of the current frame's payload still to come */
  uint8_t hdr[14];       /* the header being read */
  uint8_t hdr_have;
  uint8_t in_message;    /* a fragmented data message is open (no FIN yet) */
} gw_ws_track;

/* Follows len more bytes of the stream. */
void gw_ws_track_feed(gw_ws_track *t, const uint8_t *data, size_t len);

/* 1 when the stream is between messages: a frame parser would hold nothing. */
static inline int gw_ws_track_idle(const gw_ws_track *t) {
  return t->payload_left == 0 && t->hdr_have == 0 && !t->in_message;
}

#endif
