/*
 * gw_clients.h - open connections per client address, for the
 * max_per_client limit.
 *
 * Owns: one counter per address that has a connection. Must not: decide
 * which address is the client's (gw_conn does, honouring trusted proxies).
 */
#ifndef GW_CLIENTS_H
#define GW_CLIENTS_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw_client {
  struct gw_client *next;
  uint32_t count;
  uint32_t hash;
  char addr[];
} gw_client;

typedef struct gw_clients {
  gw_client **buckets;
  size_t cap; /* power of two */
  size_t n;
} gw_clients;

int gw_clients_init(gw_clients *t);
void gw_clients_free(gw_clients *t);

/* Counts one more connection from addr; NULL when addr already has `limit`
 * (or on no memory). The caller keeps the entry for gw_clients_release. */
gw_client *gw_clients_acquire(gw_clients *t, const char *addr, uint32_t limit);
void gw_clients_release(gw_clients *t, gw_client *e);

#endif
