/*
 * chan_emit.h - the emit call for C backends: publish one event to a group.
 *
 * Owns: one blocking AMQP connection for emitting. Must not: be used from an
 * event loop that cannot block (it waits on the network). Not thread-safe:
 * one emitter per thread.
 */
#ifndef CHAN_EMIT_H
#define CHAN_EMIT_H

#include <stddef.h>

typedef struct chan_emitter chan_emitter;

/* Connects to amqp_url ("amqp://user:pass@host:port/vhost", or several
 * separated by commas: each is tried once, from a random one) and declares the
 * groups exchange. Returns NULL with a reason in err on failure. */
chan_emitter *chan_emit_open(const char *amqp_url, char *err, size_t errlen);

/* Publishes json (the exact text clients receive) to group. Returns 0, or -1
 * with a reason in err (invalid group name, invalid UTF-8, broker error). */
int chan_emit(chan_emitter *e, const char *group, const char *json, size_t len,
              char *err, size_t errlen);

void chan_emit_close(chan_emitter *e);

#endif
