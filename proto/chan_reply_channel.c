/*
 * chan_reply_channel.c - "websocket.send.<queue>!<conn id>", both ways.
 *
 * Owns: the queue-name and connection-id rules of a reply channel. Must
 * not: allocate, or accept two spellings of one channel (the id has one
 * canonical form, so a reply cannot reach a connection under another name).
 */
#include "chan_reply_channel.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "chan_names.h"

/* The gateway's queue name: 1..255 printable ASCII bytes, no '!' (it ends
 * the name). RabbitMQ's server-generated names ("amq.gen-...") fit. */
static int chan_reply_channel__queue_valid(const char *q, size_t len) {
  if (len == 0 || len > CHAN_QUEUE_NAME_MAX) return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)q[i];
    if (c < 0x21 || c > 0x7e || c == '!') return 0;
  }
  return 1;
}

/* A connection id in canonical decimal: no sign, no leading zero, no
 * overflow, so each id has exactly one channel name. */
static int chan_reply_channel__parse_id(const char *s, uint64_t *out) {
  if (s[0] == '\0' || (s[0] == '0' && s[1] != '\0')) return -1;
  uint64_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return -1;
    unsigned d = (unsigned)(*s - '0');
    if (v > (UINT64_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

int chan_reply_channel_format(char *buf, size_t buflen, const char *queue,
                              uint64_t conn_id) {
  if (!buf || buflen == 0 || !queue) return -1;
  buf[0] = '\0';
  size_t qlen = strnlen(queue, CHAN_QUEUE_NAME_MAX + 1);
  if (!chan_reply_channel__queue_valid(queue, qlen)) return -1;
  int n = snprintf(buf, buflen, "%s%s!%" PRIu64, CHAN_REPLY_PREFIX, queue,
                   conn_id);
  if (n < 0 || (size_t)n >= buflen) {
    buf[0] = '\0';
    return -1;
  }
  return n;
}

int chan_reply_channel_parse(const char *channel, char *queue, size_t queuelen,
                             uint64_t *conn_id) {
  if (!channel || !queue || !conn_id) return -1;
  size_t plen = strlen(CHAN_REPLY_PREFIX);
  if (strncmp(channel, CHAN_REPLY_PREFIX, plen) != 0) return -1;
  const char *q = channel + plen;
  const char *bang = strchr(q, '!');
  if (!bang) return -1;
  size_t qlen = (size_t)(bang - q);
  uint64_t id;
  if (!chan_reply_channel__queue_valid(q, qlen) || qlen >= queuelen ||
      chan_reply_channel__parse_id(bang + 1, &id) != 0) {
    return -1;
  }
  memcpy(queue, q, qlen);
  queue[qlen] = '\0';
  *conn_id = id;
  return 0;
}
