/*
 * test_gw_pmd.c - permessage-deflate negotiation (RFC 7692 7.1): which
 * offers are accepted and how they are answered, which are declined, and
 * that a declined offer lets the next one be read.
 */
#include <stdio.h>
#include <string.h>

#include "gw_pmd.h"
#include "unit.h"

#define ANSWER "permessage-deflate; client_no_context_takeover"
#define ALONE "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
#define ALL (GW_PMD_RECV | GW_PMD_SEND | GW_PMD_CHAIN)

/* The flags for value, and the answer into out ("" when declined). */
static int negotiate(const char *value, char out[GW_PMD_ANSWER_MAX]) {
  memset(out, 0, GW_PMD_ANSWER_MAX);
  return gw_pmd_negotiate(value, out);
}

UNIT_TEST(gw_pmd_accepts_browser_offers_keeping_the_servers_context_unless_asked) {
  char a[GW_PMD_ANSWER_MAX];
  static const char *const offers[] = {
      "permessage-deflate",
      "permessage-deflate; client_max_window_bits", /* Chromium, Firefox */
      "permessage-deflate; client_max_window_bits=12",
      "permessage-deflate;client_max_window_bits=\"12\"",
      "permessage-deflate; client_no_context_takeover",
      "permessage-deflate ; client_max_window_bits = 15",
  };
  for (size_t i = 0; i < sizeof offers / sizeof *offers; i++) {
    UNIT_CHECK(negotiate(offers[i], a) == ALL);
    UNIT_CHECK_STR(a, ANSWER); /* client_max_window_bits is never answered */
  }
  UNIT_CHECK(negotiate("permessage-deflate; server_max_window_bits=15", a) == ALL);
  UNIT_CHECK_STR(a, ANSWER "; server_max_window_bits=15");
  /* asked for: every message alone, nothing chained */
  UNIT_CHECK(negotiate("permessage-deflate; server_no_context_takeover; "
                       "client_no_context_takeover", a) == (GW_PMD_RECV | GW_PMD_SEND));
  UNIT_CHECK_STR(a, ALONE);
  UNIT_CHECK(negotiate("PerMessage-Deflate; Server_No_Context_Takeover", a) ==
             (GW_PMD_RECV | GW_PMD_SEND));
  UNIT_CHECK_STR(a, ALONE);
}

UNIT_TEST(gw_pmd_smaller_server_window_is_accepted_but_sent_plain) {
  char a[GW_PMD_ANSWER_MAX];
  UNIT_CHECK(negotiate("permessage-deflate; server_max_window_bits=10", a) == GW_PMD_RECV);
  UNIT_CHECK_STR(a, ANSWER "; server_max_window_bits=10");
  UNIT_CHECK(negotiate("permessage-deflate; server_max_window_bits=8; "
                       "server_no_context_takeover", a) == GW_PMD_RECV);
  UNIT_CHECK_STR(a, ALONE "; server_max_window_bits=8");
}

UNIT_TEST(gw_pmd_declines_offers_that_break_a_rule) {
  char a[GW_PMD_ANSWER_MAX];
  static const char *const bad[] = {
      "permessage-deflate; server_max_window_bits",    /* a value is required */
      "permessage-deflate; server_max_window_bits=7",  /* 8..15 */
      "permessage-deflate; server_max_window_bits=16",
      "permessage-deflate; server_max_window_bits=010", /* no leading zero */
      "permessage-deflate; client_max_window_bits=0",
      "permessage-deflate; client_max_window_bits=",
      "permessage-deflate; server_no_context_takeover=1", /* no value belongs */
      "permessage-deflate; client_no_context_takeover=\"\"",
      "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
      "permessage-deflate; mystery",
      "permessage-deflate; client_max_window_bits=\"1 2\"", /* not a token inside */
      "x-webkit-deflate-frame",
      "deflate-frame; permessage-deflate",
      "",
      "permessage-deflate; ;;==", /* breaks the grammar */
      "permessage-deflate; client_max_window_bits=\"12", /* unclosed quote */
      "permessage-deflate@",
      "permessage-deflate-x",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    UNIT_CHECK(negotiate(bad[i], a) == 0);
    UNIT_CHECK(a[0] == '\0');
  }
  UNIT_CHECK(gw_pmd_negotiate(NULL, a) == 0);
}

UNIT_TEST(gw_pmd_a_declined_offer_lets_the_next_one_be_read) {
  char a[GW_PMD_ANSWER_MAX];
  UNIT_CHECK(negotiate("permessage-deflate; server_max_window_bits=7, permessage-deflate", a) ==
             ALL);
  UNIT_CHECK_STR(a, ANSWER);
  UNIT_CHECK(negotiate("foo; bar=\"a,b\", , permessage-deflate; server_max_window_bits=9", a) ==
             GW_PMD_RECV);
  UNIT_CHECK_STR(a, ANSWER "; server_max_window_bits=9");
  /* the first acceptable one wins */
  UNIT_CHECK(negotiate("permessage-deflate; server_max_window_bits=12, permessage-deflate", a) ==
             GW_PMD_RECV);
  /* after a break in the grammar nothing more is read */
  UNIT_CHECK(negotiate("permessage-deflate; =x, permessage-deflate", a) == 0);
}

UNIT_TEST(gw_pmd_long_names_and_values_stay_bounded) {
  char a[GW_PMD_ANSWER_MAX], big[4096];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  UNIT_CHECK(negotiate(big, a) == 0);
  char offer[4200] = "permessage-deflate; client_max_window_bits=";
  strcat(offer, big);
  UNIT_CHECK(negotiate(offer, a) == 0);
  /* a long prefix of the right name is not the name */
  char name[64] = "server_max_window_bits";
  memset(name + 22, 's', 20);
  snprintf(offer, sizeof offer, "permessage-deflate; %s=9", name);
  UNIT_CHECK(negotiate(offer, a) == 0);
}
