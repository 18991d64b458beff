/*
 * test_mq_publish.c - what every party's AMQP code shares around a
 * publish: the JSON message properties (mq_json_props) and the reason
 * given for a frame that ends the channel (mq_frame_close_reason).
 */
#include <stdio.h>
#include <string.h>

#include "mq_confirm.h"
#include "mq_conn.h"
#include "unit.h"

static int bytes_are(amqp_bytes_t b, const char *s) {
  return b.len == strlen(s) && memcmp(b.bytes, s, b.len) == 0;
}

UNIT_TEST(mq_json_props_transient_and_persistent) {
  amqp_basic_properties_t p;
  memset(&p, 0xA5, sizeof p); /* whatever was there before is cleared */
  mq_json_props(&p, 0);
  UNIT_CHECK(p._flags ==
             (AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG));
  UNIT_CHECK(bytes_are(p.content_type, "application/json"));
  UNIT_CHECK(p.delivery_mode == 1);
  UNIT_CHECK(p.headers.num_entries == 0 && p.priority == 0);
  mq_json_props(&p, 1);
  UNIT_CHECK(p.delivery_mode == 2);
  UNIT_CHECK(bytes_are(p.content_type, "application/json"));
}

static amqp_frame_t method_frame(amqp_method_number_t id, void *decoded) {
  amqp_frame_t f;
  memset(&f, 0, sizeof f);
  f.frame_type = AMQP_FRAME_METHOD;
  f.channel = 1;
  f.payload.method.id = id;
  f.payload.method.decoded = decoded;
  return f;
}

UNIT_TEST(mq_frame_close_reason_channel_and_connection) {
  char err[160];
  amqp_channel_close_t cc;
  memset(&cc, 0, sizeof cc);
  cc.reply_code = 404;
  cc.reply_text = amqp_cstring_bytes("NOT_FOUND - no queue 'x'");
  amqp_frame_t f = method_frame(AMQP_CHANNEL_CLOSE_METHOD, &cc);
  UNIT_CHECK(mq_frame_close_reason(&f, "consume", err, sizeof err) == 1);
  UNIT_CHECK_STR(err, "consume: broker closed the channel: 404 NOT_FOUND - "
                      "no queue 'x'");
  amqp_connection_close_t xc;
  memset(&xc, 0, sizeof xc);
  xc.reply_code = 320;
  xc.reply_text = amqp_cstring_bytes("CONNECTION_FORCED - shutdown");
  f = method_frame(AMQP_CONNECTION_CLOSE_METHOD, &xc);
  UNIT_CHECK(mq_frame_close_reason(&f, "publish", err, sizeof err) == 1);
  UNIT_CHECK_STR(err, "publish: broker closed the connection: 320 "
                      "CONNECTION_FORCED - shutdown");
}

UNIT_TEST(mq_frame_close_reason_cancel_and_others) {
  char err[160] = "untouched";
  amqp_frame_t f = method_frame(AMQP_BASIC_CANCEL_METHOD, NULL);
  UNIT_CHECK(mq_frame_close_reason(&f, "consume", err, sizeof err) == 1);
  UNIT_CHECK_STR(err, "consume: consumer cancelled by the broker");
  snprintf(err, sizeof err, "untouched");
  f = method_frame(AMQP_CONNECTION_BLOCKED_METHOD, NULL);
  UNIT_CHECK(mq_frame_close_reason(&f, "consume", err, sizeof err) == 0);
  f.frame_type = AMQP_FRAME_HEARTBEAT;
  UNIT_CHECK(mq_frame_close_reason(&f, "consume", err, sizeof err) == 0);
  UNIT_CHECK_STR(err, "untouched");
  /* No buffer: still the answer. */
  f = method_frame(AMQP_BASIC_CANCEL_METHOD, NULL);
  UNIT_CHECK(mq_frame_close_reason(&f, "consume", NULL, 0) == 1);
}
