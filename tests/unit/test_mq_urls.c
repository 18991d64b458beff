/*
 * test_mq_urls.c - amqp.url as a list of brokers: splitting, where a client
 * starts, the order it tries the nodes in, when it backs off, and that no
 * log text carries a password.
 */
#include <stdio.h>

#include "mq_conn.h"
#include "unit.h"

#define A "amqp://u:secret@10.0.0.1:5672/v"
#define B "amqp://u:secret@10.0.0.2:5673/v"
#define C "amqp://u:secret@node3:5674/v"

UNIT_TEST(mq_urls_single_kept_as_is) {
  mq_url_list l;
  /* Blanks are kept: one address behaves exactly as before lists. */
  UNIT_CHECK(mq_url_list_parse(&l, " " A, 7, NULL, 0) == 0);
  UNIT_CHECK(l.n == 1);
  UNIT_CHECK_STR(mq_url_list_current(&l), " " A);
  mq_url_list_free(&l);
}

UNIT_TEST(mq_urls_split_and_trim) {
  mq_url_list l;
  UNIT_CHECK(mq_url_list_parse(&l, A ", " B " ,\t" C, 0, NULL, 0) == 0);
  UNIT_CHECK(l.n == 3);
  UNIT_CHECK_STR(l.urls[0], A);
  UNIT_CHECK_STR(l.urls[1], B);
  UNIT_CHECK_STR(l.urls[2], C);
  UNIT_CHECK_STR(mq_url_list_current(&l), A);
  mq_url_list_free(&l);
  UNIT_CHECK(l.n == 0);
}

UNIT_TEST(mq_urls_escaped_comma_stays_in_its_url) {
  mq_url_list l;
  UNIT_CHECK(mq_url_list_parse(&l, "amqp://u:p%2Cw@h1:1/," B, 0, NULL, 0) == 0);
  UNIT_CHECK(l.n == 2);
  UNIT_CHECK_STR(l.urls[0], "amqp://u:p%2Cw@h1:1/");
  mq_url_list_free(&l);
}

UNIT_TEST(mq_urls_empty_item_refused_without_quoting) {
  mq_url_list l;
  char err[128];
  UNIT_CHECK(mq_url_list_parse(&l, A ",," B, 0, err, sizeof err) == -1);
  UNIT_CHECK(strstr(err, "empty") != NULL);
  UNIT_CHECK(strstr(err, "secret") == NULL);
  UNIT_CHECK(mq_url_list_parse(&l, A ",", 0, err, sizeof err) == -1);
  UNIT_CHECK(mq_url_list_parse(&l, " , " A, 0, err, sizeof err) == -1);
}

UNIT_TEST(mq_urls_too_many_refused) {
  char spec[MQ_URL_LIST_MAX * 32 + 64] = "";
  for (int i = 0; i <= MQ_URL_LIST_MAX; i++) {
    char one[32];
    snprintf(one, sizeof one, "%samqp://h%d/", i ? "," : "", i);
    strcat(spec, one);
  }
  mq_url_list l;
  char err[128];
  UNIT_CHECK(mq_url_list_parse(&l, spec, 0, err, sizeof err) == -1);
  UNIT_CHECK(strstr(err, "more than") != NULL);
}

UNIT_TEST(mq_urls_start_follows_seed) {
  mq_url_list l;
  /* Different seeds start on different nodes: gateways spread. */
  UNIT_CHECK(mq_url_list_parse(&l, A "," B "," C, 4, NULL, 0) == 0);
  UNIT_CHECK_STR(mq_url_list_current(&l), B);
  mq_url_list_free(&l);
  UNIT_CHECK(mq_url_list_parse(&l, A "," B "," C, 5, NULL, 0) == 0);
  UNIT_CHECK_STR(mq_url_list_current(&l), C);
  mq_url_list_free(&l);
}

UNIT_TEST(mq_urls_rotation_backs_off_once_per_round) {
  mq_url_list l;
  UNIT_CHECK(mq_url_list_parse(&l, A "," B "," C, 1, NULL, 0) == 0);
  /* B fails, C fails: try on at once; A fails: the round is over. */
  UNIT_CHECK(mq_url_list_next(&l) == 0);
  UNIT_CHECK_STR(mq_url_list_current(&l), C);
  UNIT_CHECK(mq_url_list_next(&l) == 0);
  UNIT_CHECK_STR(mq_url_list_current(&l), A);
  UNIT_CHECK(mq_url_list_next(&l) == 1);
  UNIT_CHECK_STR(mq_url_list_current(&l), B);
  /* A second round counts afresh. */
  UNIT_CHECK(mq_url_list_next(&l) == 0);
  /* C connects; losing it later moves on to A without backing off. */
  mq_url_list_connected(&l);
  UNIT_CHECK_STR(mq_url_list_current(&l), C);
  UNIT_CHECK(mq_url_list_next(&l) == 0);
  UNIT_CHECK_STR(mq_url_list_current(&l), A);
  mq_url_list_free(&l);
}

UNIT_TEST(mq_urls_single_backs_off_every_failure) {
  mq_url_list l;
  UNIT_CHECK(mq_url_list_parse(&l, A, 3, NULL, 0) == 0);
  UNIT_CHECK(mq_url_list_next(&l) == 1);
  UNIT_CHECK(mq_url_list_next(&l) == 1);
  UNIT_CHECK_STR(mq_url_list_current(&l), A);
  mq_url_list_free(&l);
}

UNIT_TEST(mq_urls_host_port_hides_credentials) {
  char hp[64];
  mq_url_host_port(B, hp, sizeof hp);
  UNIT_CHECK_STR(hp, "10.0.0.2:5673");
  mq_url_host_port("amqp://node3/", hp, sizeof hp);
  UNIT_CHECK_STR(hp, "node3:5672");
  mq_url_host_port("http://x/", hp, sizeof hp);
  UNIT_CHECK_STR(hp, "?");
}

UNIT_TEST(mq_urls_settings_check) {
  char err[128];
  UNIT_CHECK(mq_settings_check(A "," B, "classic", err, sizeof err) == 0);
  UNIT_CHECK(mq_settings_check(A, "quorum", err, sizeof err) == 0);
  UNIT_CHECK(mq_settings_check(A, "stream", err, sizeof err) == -1);
  UNIT_CHECK(strstr(err, "amqp.queue_type") != NULL);
  UNIT_CHECK(mq_settings_check(A ",", "classic", err, sizeof err) == -1);
  UNIT_CHECK(strstr(err, "amqp.url") != NULL);
  UNIT_CHECK(mq_queue_type_parse("classic") == 0);
  UNIT_CHECK(mq_queue_type_parse("quorum") == 1);
  UNIT_CHECK(mq_queue_type_parse(NULL) == -1);
}
