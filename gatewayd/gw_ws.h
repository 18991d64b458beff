/*
 * gw_ws.h - the websocket protocol of an upgraded connection, through wslay.
 *
 * Owns: the wslay event context, created when bytes arrive and freed again
 * as soon as the stream is between messages (gw_ws_track says when), so an
 * idle connection holds none of wslay's ~9 KiB; the callbacks that hand
 * complete client messages to gw_relay and wslay's control frames (pong,
 * close) to the send queue. Data frames do not go through wslay: it copies
 * every message it queues, and a group message is framed once for all.
 * Must not: talk to workers or touch the socket.
 */
#ifndef GW_WS_H
#define GW_WS_H

#include <stddef.h>

typedef struct gw_conn gw_conn;

/* Bytes from the client (decrypted under TLS). */
void gw_ws_feed(gw_conn *c, const char *data, size_t len);

/* Queues a close frame (code, reason) and moves the connection to CLOSING;
 * -1 when wslay cannot (out of memory). */
int gw_ws_close(gw_conn *c, int code, const char *reason);

/* Queues a ping (the keepalive). */
void gw_ws_ping(gw_conn *c);

/* 1 while the closing handshake waits for the client's close frame. */
int gw_ws_awaiting_close(gw_conn *c);

/* Releases the context (the connection's close callback). */
void gw_ws_free(gw_conn *c);

#endif
