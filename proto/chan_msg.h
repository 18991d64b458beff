/*
 * chan_msg.h - channel messages, gateway -> worker (ASGI 1.x websocket
 * messages as JSON): websocket.connect, websocket.receive, websocket.disconnect.
 *
 * Owns: encoding and decoding of that JSON, and nothing else. Must not: do
 * I/O, know about sockets or AMQP. Wire format: docs/PROTOCOL.md.
 */
#ifndef CHAN_MSG_H
#define CHAN_MSG_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
  CHAN_MSG_CONNECT = 0,
  CHAN_MSG_RECEIVE = 1,
  CHAN_MSG_DISCONNECT = 2
} chan_msg_kind;

/* chan_msg.protocol (see there). */
#define CHAN_MSG_PROTOCOL_OLD 0
#define CHAN_MSG_PROTOCOL_WSGW2 1

typedef struct chan_header {
  char *name; /* lower case */
  char *value;
} chan_header;

typedef struct chan_addr {
  char host[64]; /* numeric address; "" when unknown */
  int port;
} chan_addr;

/*
 * One channel message. On encode nothing is owned by the struct (the caller
 * keeps its strings); on decode every pointer is malloc'd and released by
 * chan_msg_free().
 */
typedef struct chan_msg {
  chan_msg_kind kind;
  char *reply_channel;
  char *path;
  uint64_t order; /* 0 for connect, then 1, 2, ... per connection */

  /* connect only */
  char *query_string;
  chan_header *headers;
  size_t n_headers;
  chan_addr client;
  chan_addr server;

  /* receive: exactly one of text (is_binary = 0) or bytes (is_binary = 1).
   * data/data_len hold the payload; on the wire bytes are base64. */
  int is_binary;
  char *data;
  size_t data_len;
  /* receive only: 1 when the gateway asks the worker to re-check the
   * application's grants the connection holds ("recheck": true on the
   * wire, and then neither text nor bytes: data is NULL, data_len 0). The
   * gateway sends it when a reply's "recheck" time is due. */
  int recheck;
  /* receive only: the client protocol of the connection (issue 14).
   * CHAN_MSG_PROTOCOL_OLD (0): the original one, and no key on the wire,
   * so such a message is byte for byte what it was before;
   * CHAN_MSG_PROTOCOL_WSGW2: the client negotiated CHAN_POS_PROTOCOL
   * ("protocol": "wsgw.2"), so a subscription request may name positions
   * and its reply carries them. Decoding, a protocol string the worker does
   * not know reads as the old protocol. Ignored on connect and disconnect. */
  int protocol;

  /* disconnect only */
  int code;

  /* receive and disconnect: the session object the worker last set (raw JSON
   * text, NULL when none), and the connection's current groups. */
  char *session_json;
  char **groups;
  size_t n_groups;
} chan_msg;

/* Returns a malloc'd JSON text (NUL-terminated, length in *len) or NULL when
 * out of memory or when m breaks a wire rule (no reply_channel or path, a
 * cap of chan_names.h, a session_json that is not an object, an invalid
 * group name, an unknown protocol). The caller frees it. */
char *chan_msg_encode(const chan_msg *m, size_t *len);

/* Parses one message of the given kind. Returns 0, or -1 with a reason in err.
 * On success the caller owns *out and releases it with chan_msg_free(). */
int chan_msg_decode(chan_msg_kind kind, const char *json, size_t len,
                    chan_msg *out, char *err, size_t errlen);

void chan_msg_free(chan_msg *m);

/* A copy of a websocket.connect message (json, len) for keeping where
 * people read it (websocket.dead): the values of its credential headers
 * (cookie, authorization) and of every query-string parameter become
 * CHAN_MSG_REDACTED; the rest is as it came. A text that does not decode
 * is not kept at all: the copy is a small JSON object that says so and
 * how long it was. malloc'd, length in *out_len; NULL when out of memory. */
#define CHAN_MSG_REDACTED "(redacted)"
char *chan_msg_redact_connect(const char *json, size_t len, size_t *out_len);

/* A copy of any channel message for websocket.dead: a connect as
 * chan_msg_redact_connect; a receive or disconnect with the values of its
 * session's "credentials" object (the headers a connection was admitted
 * with, kept when the application decides subscriptions) and its
 * "csrftoken" as CHAN_MSG_REDACTED (a session that would then pass the
 * 4 KiB cap becomes CHAN_MSG_SESSION_TOO_LARGE). A text that does not
 * decode as kind becomes a small note, as for connect. malloc'd; NULL
 * when out of memory. */
#define CHAN_MSG_SESSION_TOO_LARGE "{\"redacted\":\"session over 4 KiB once redacted\"}"
char *chan_msg_redact(chan_msg_kind kind, const char *json, size_t len,
                      size_t *out_len);

/* Queue name for a kind ("websocket.connect", ...). */
const char *chan_msg_queue(chan_msg_kind kind);

/* Case-insensitive header lookup on a decoded message; NULL when absent. */
const char *chan_msg_header(const chan_msg *m, const char *name);

#endif
