/*
 * gw_clients.h - connections per client address, for the max_per_client
 * and max_handshakes_per_client limits.
 *
 * Owns: one entry per address that has a connection, counting its
 * connections in two kinds: handshaking (the request head is being read,
 * or a worker is deciding) and open (a worker accepted). Must not: decide
 * which address is the client's (gw_conn does, honouring trusted proxies),
 * or answer the client.
 *
 * Handshakes get a bound of their own because they are what one address
 * can make cost the most: each holds a slot for up to handshake_timeout
 * without authenticating, and each asks a worker (websocket.connect), so a
 * flood of them delays everyone's handshake.
 */
#ifndef GW_CLIENTS_H
#define GW_CLIENTS_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw_client {
  struct gw_client *next;
  uint32_t open;        /* accepted by a worker */
  uint32_t handshaking; /* not yet */
  uint32_t hash;
  char addr[];
} gw_client;

typedef struct gw_clients {
  gw_client **buckets;
  size_t cap; /* power of two */
  size_t n;
} gw_clients;

/* 0 means no limit. */
typedef struct gw_clients_limits {
  uint32_t total;      /* open + handshaking */
  uint32_t handshakes; /* handshaking */
} gw_clients_limits;

typedef enum {
  GW_CLIENTS_OK = 0,
  GW_CLIENTS_TOTAL,      /* addr is at limits->total */
  GW_CLIENTS_HANDSHAKES, /* addr is at limits->handshakes */
  GW_CLIENTS_NOMEM
} gw_clients_refusal;

int gw_clients_init(gw_clients *t);
void gw_clients_free(gw_clients *t);

/* 1 when either limit is set (otherwise nothing needs counting). */
int gw_clients_limited(const gw_clients_limits *lim);

/* Counts one more handshake from addr; NULL (and *why) at a limit or on no
 * memory. The caller keeps the entry for gw_clients_opened/release. */
gw_client *gw_clients_acquire(gw_clients *t, const char *addr,
                              const gw_clients_limits *lim,
                              gw_clients_refusal *why);

/* The handshake became an open connection. */
void gw_clients_opened(gw_client *e);

/* One connection less; `opened`: whether gw_clients_opened was called for
 * it. NULL e is a no-op. */
void gw_clients_release(gw_clients *t, gw_client *e, int opened);

const char *gw_clients_refusal_name(gw_clients_refusal why);

#endif
