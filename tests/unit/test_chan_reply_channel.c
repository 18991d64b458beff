/*
 * test_chan_reply_channel.c - reply-channel names
 * "websocket.send.<queue>!<conn id>": round trips, and what either
 * direction refuses.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "chan_names.h"
#include "chan_reply_channel.h"
#include "unit.h"

#define CR_RC "websocket.send.amq.gen-JzTY20BRgKO-HjmUJj0wLg!17"

UNIT_TEST(chan_reply_channel_round_trip) {
  char buf[300], queue[CHAN_QUEUE_NAME_MAX + 1];
  uint64_t id = 0;
  UNIT_CHECK(chan_reply_channel_format(buf, sizeof buf, "amq.gen-JzTY20BRgKO-"
                                       "HjmUJj0wLg", 17) == (int)strlen(CR_RC));
  UNIT_CHECK_STR(buf, CR_RC);
  UNIT_CHECK(chan_reply_channel_parse(buf, queue, sizeof queue, &id) == 0);
  UNIT_CHECK_STR(queue, "amq.gen-JzTY20BRgKO-HjmUJj0wLg");
  UNIT_CHECK(id == 17);
  UNIT_CHECK(chan_reply_channel_format(buf, sizeof buf, "q", 0) > 0);
  UNIT_CHECK_STR(buf, "websocket.send.q!0");
  UNIT_CHECK(chan_reply_channel_parse(buf, queue, sizeof queue, &id) == 0 &&
             id == 0);
  UNIT_CHECK(chan_reply_channel_format(buf, sizeof buf, "q", UINT64_MAX) > 0);
  UNIT_CHECK_STR(buf, "websocket.send.q!18446744073709551615");
  UNIT_CHECK(chan_reply_channel_parse(buf, queue, sizeof queue, &id) == 0 &&
             id == UINT64_MAX);
  /* The longest queue name AMQP allows. */
  char longq[CHAN_QUEUE_NAME_MAX + 2];
  memset(longq, 'q', CHAN_QUEUE_NAME_MAX);
  longq[CHAN_QUEUE_NAME_MAX] = '\0';
  UNIT_CHECK(chan_reply_channel_format(buf, sizeof buf, longq, 5) > 0);
  UNIT_CHECK(chan_reply_channel_parse(buf, queue, sizeof queue, &id) == 0);
  UNIT_CHECK_STR(queue, longq);
}

UNIT_TEST(chan_reply_channel_format_refuses) {
  char buf[64];
  UNIT_CHECK(chan_reply_channel_format(buf, sizeof buf, "", 1) == -1);
  UNIT_CHECK(chan_reply_channel_format(buf, sizeof buf, "a!b", 1) == -1);
  UNIT_CHECK(chan_reply_channel_format(buf, sizeof buf, "a b", 1) == -1);
  UNIT_CHECK(chan_reply_channel_format(buf, sizeof buf, NULL, 1) == -1);
  UNIT_CHECK(chan_reply_channel_format(NULL, 10, "q", 1) == -1);
  /* "websocket.send.q!1" is 18 bytes: 19 fit with the NUL, 18 do not. */
  UNIT_CHECK(chan_reply_channel_format(buf, 18, "q", 1) == -1);
  UNIT_CHECK(buf[0] == '\0');
  UNIT_CHECK(chan_reply_channel_format(buf, 19, "q", 1) == 18);
  char longq[CHAN_QUEUE_NAME_MAX + 2];
  memset(longq, 'q', CHAN_QUEUE_NAME_MAX + 1);
  longq[CHAN_QUEUE_NAME_MAX + 1] = '\0';
  char big[400];
  UNIT_CHECK(chan_reply_channel_format(big, sizeof big, longq, 1) == -1);
}

UNIT_TEST(chan_reply_channel_parse_refuses) {
  const char *bad[] = {
      "",
      "websocket.send.",
      "websocket.send.q",          /* no '!' */
      "websocket.send.q!",         /* no id */
      "websocket.send.!5",         /* no queue */
      "websocket.receive.q!5",     /* wrong prefix */
      "Websocket.send.q!5",
      "websocket.send.q!05",       /* leading zero */
      "websocket.send.q!+5",
      "websocket.send.q!-5",
      "websocket.send.q! 5",
      "websocket.send.q!5 ",
      "websocket.send.q!5x",
      "websocket.send.q!5!6",
      "websocket.send.q!18446744073709551616", /* UINT64_MAX + 1 */
      "websocket.send.q!99999999999999999999",
      "websocket.send.a b!5",
      "websocket.send.a\tb!5",
  };
  char queue[CHAN_QUEUE_NAME_MAX + 1];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint64_t id = 42;
    UNIT_CHECK(chan_reply_channel_parse(bad[i], queue, sizeof queue, &id) ==
                   -1 &&
               id == 42);
  }
  uint64_t id;
  UNIT_CHECK(chan_reply_channel_parse(NULL, queue, sizeof queue, &id) == -1);
  /* The queue must fit the caller's buffer. */
  char small[4];
  UNIT_CHECK(chan_reply_channel_parse("websocket.send.abcd!1", small,
                                      sizeof small, &id) == -1);
  UNIT_CHECK(chan_reply_channel_parse("websocket.send.abc!1", small,
                                      sizeof small, &id) == 0);
  UNIT_CHECK_STR(small, "abc");
  /* A queue name over 255 bytes. */
  char chan[300];
  int off = snprintf(chan, sizeof chan, "websocket.send.");
  memset(chan + off, 'q', CHAN_QUEUE_NAME_MAX + 1);
  snprintf(chan + off + CHAN_QUEUE_NAME_MAX + 1, 8, "!1");
  char bigq[400];
  UNIT_CHECK(chan_reply_channel_parse(chan, bigq, sizeof bigq, &id) == -1);
}
