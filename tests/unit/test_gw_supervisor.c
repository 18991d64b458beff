/*
 * test_gw_supervisor.c - how many gateway processes a config asks for, and
 * the metrics address each one gets (port + index).
 */
#include <string.h>

#include "gw_supervisor.h"
#include "unit.h"
#include <uv.h>

UNIT_TEST(gw_supervisor_metrics_port_plus_index) {
  char out[64];
  UNIT_CHECK(gw_supervisor_metrics_addr("127.0.0.1:9151", 0, out, sizeof out) == 0);
  UNIT_CHECK_STR(out, "127.0.0.1:9151");
  UNIT_CHECK(gw_supervisor_metrics_addr("127.0.0.1:9151", 5, out, sizeof out) == 0);
  UNIT_CHECK_STR(out, "127.0.0.1:9156");
  UNIT_CHECK(gw_supervisor_metrics_addr("[::1]:9151", 2, out, sizeof out) == 0);
  UNIT_CHECK_STR(out, "[::1]:9153");
}

UNIT_TEST(gw_supervisor_metrics_off_and_ephemeral_stay_so) {
  char out[64] = "x";
  UNIT_CHECK(gw_supervisor_metrics_addr("", 3, out, sizeof out) == 0);
  UNIT_CHECK_STR(out, "");
  UNIT_CHECK(gw_supervisor_metrics_addr("0.0.0.0:0", 3, out, sizeof out) == 0);
  UNIT_CHECK_STR(out, "0.0.0.0:0");
}

UNIT_TEST(gw_supervisor_metrics_refuses_what_does_not_fit) {
  char out[64], tiny[8];
  UNIT_CHECK(gw_supervisor_metrics_addr("127.0.0.1:65535", 1, out, sizeof out) == -1);
  UNIT_CHECK(gw_supervisor_metrics_addr("127.0.0.1", 0, out, sizeof out) == -1);
  UNIT_CHECK(gw_supervisor_metrics_addr("127.0.0.1:x", 0, out, sizeof out) == -1);
  UNIT_CHECK(gw_supervisor_metrics_addr("127.0.0.1:9151", 0, tiny, sizeof tiny) == -1);
}

UNIT_TEST(gw_supervisor_count_by_setting) {
  gw_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.process_index = -1;
  cfg.processes = 6;
  UNIT_CHECK(gw_supervisor_count(&cfg) == 6);
  cfg.processes = 0; /* one per usable core */
  UNIT_CHECK(gw_supervisor_count(&cfg) >= 1);
  UNIT_CHECK(gw_supervisor_count(&cfg) == (int)uv_available_parallelism() ||
             uv_available_parallelism() > 64);
  cfg.processes = 6;
  cfg.process_index = 2; /* a child is one process, whatever it was told */
  UNIT_CHECK(gw_supervisor_count(&cfg) == 1);
}
