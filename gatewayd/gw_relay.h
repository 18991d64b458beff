/*
 * gw_relay.h - a connection's conversation with the workers.
 *
 * Owns: building and publishing websocket.connect/.receive/.disconnect, the
 * rule "one message per connection with a worker at a time" (later client
 * messages wait in a bounded queue), the per-connection message rate, and
 * applying a worker's reply: groups, session, accept, texts, bytes, close.
 * Must not: parse frames or write to the socket itself.
 */
#ifndef GW_RELAY_H
#define GW_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "chan_reply.h"
#include "gw_http.h"

typedef struct gw_conn gw_conn;

/* The request head is valid: publish websocket.connect (or answer 503). */
void gw_relay_connect(gw_conn *c, const gw_http_upgrade *up);

/* A complete client message from wslay. */
void gw_relay_client_message(gw_conn *c, int binary, const uint8_t *msg, size_t len);

/* The worker's reply to the message in flight (others are dropped). */
void gw_relay_apply_reply(gw_conn *c, const chan_reply *r);

/* The broker refused or lost the message in flight: 503 before the
 * upgrade, close 1013 after. */
void gw_relay_refused(gw_conn *c);

/* No reply within reply_timeout: the client gets an error text and the
 * next queued message goes out. */
void gw_relay_timeout(gw_conn *c);

/* websocket.disconnect with the close code (no reply expected). */
void gw_relay_disconnect(gw_conn *c, int code);

#endif
