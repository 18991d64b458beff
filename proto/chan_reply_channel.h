/*
 * chan_reply_channel.h - the reply-channel name of one connection,
 * "websocket.send.<gateway queue>!<conn id>" (CHAN_REPLY_PREFIX).
 *
 * Owns: that syntax, both ways. Must not: know JSON or any message: it is
 * the layer under chan_json (which checks a message's "reply_channel" with
 * it) and chan_reply, so neither of those calls up into the other.
 */
#ifndef CHAN_REPLY_CHANNEL_H
#define CHAN_REPLY_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

/*
 * Builds "websocket.send.<queue>!<conn_id>" into buf. Returns the length, or
 * -1 when it does not fit or queue is not a valid name (1..255 printable
 * ASCII bytes, no '!'); buf is then "".
 */
int chan_reply_channel_format(char *buf, size_t buflen, const char *queue,
                              uint64_t conn_id);

/*
 * Splits a reply channel into the gateway's queue name and the connection id
 * (canonical decimal: no sign, no leading zero). Returns 0, or -1 when the
 * name is not a well-formed reply channel or the queue does not fit queuelen.
 */
int chan_reply_channel_parse(const char *channel, char *queue, size_t queuelen,
                             uint64_t *conn_id);

#endif
