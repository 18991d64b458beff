/*
 * gw_dispatch.h - what the loop does with each event from the AMQP bridge.
 *
 * Owns: routing replies to their connection (by id), fanning group messages
 * out to members, and reacting to the broker going up (rebind every group)
 * or down. Must not: touch sockets directly (gw_conn does).
 */
#ifndef GW_DISPATCH_H
#define GW_DISPATCH_H

#include "gw_bridge.h"

/* The gw_bridge_cb; arg is the gw_server. */
void gw_dispatch_events(gw_bridge_event *events, void *arg);

/* gw_group_table callbacks: bind on a group's first member, unbind after
 * its last. arg is the gw_server. */
void gw_dispatch_bind(const char *group, void *arg);
void gw_dispatch_unbind(const char *group, void *arg);

#endif
