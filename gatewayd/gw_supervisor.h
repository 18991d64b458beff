/*
 * gw_supervisor.h - gatewayd as N processes on one port (gateway.processes).
 *
 * Owns: the child gateway processes and speaking for them to systemd (see
 * gw_supervisor.c). Must not: serve clients itself.
 */
#ifndef GW_SUPERVISOR_H
#define GW_SUPERVISOR_H

#include <stddef.h>

#include "gw_config.h"

/* How many gateway processes cfg asks for (gateway.processes, 0 meaning
 * one per usable core). A child (process_index >= 0) is always one. */
int gw_supervisor_count(const gw_config *cfg);

/* Starts n children running this program with the command line argv (as
 * main received it, before cfg_load reordered it) plus their index, and
 * supervises them until SIGTERM/SIGINT or a child that cannot start.
 * Returns the process exit status. */
int gw_supervisor_run(const gw_config *cfg, int n, int argc, char **argv);

/* Child i's metrics address: spec's port plus i ("" stays "", a port of 0
 * stays 0). -1 when spec is not ADDRESS:PORT (hostport.h), the port would
 * pass 65535, or the result does not fit in n. */
int gw_supervisor_metrics_addr(const char *spec, int i, char *out, size_t n);

#endif
