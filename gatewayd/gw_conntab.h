/*
 * gw_conntab.h - connections by id, for dispatching worker replies.
 *
 * Owns: an open-addressing hash table of (id, pointer). Must not: own the
 * connections. Ids are never reused (64-bit counter), so a late reply to a
 * closed connection finds nothing instead of a stranger.
 */
#ifndef GW_CONNTAB_H
#define GW_CONNTAB_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw_conntab_slot {
  uint64_t id; /* 0: empty */
  void *conn;
} gw_conntab_slot;

typedef struct gw_conntab {
  gw_conntab_slot *slots;
  size_t cap; /* power of two */
  size_t used;
} gw_conntab;

int gw_conntab_init(gw_conntab *t);
void gw_conntab_free(gw_conntab *t);
int gw_conntab_put(gw_conntab *t, uint64_t id, void *conn); /* id != 0 */
void *gw_conntab_get(const gw_conntab *t, uint64_t id);
void gw_conntab_del(gw_conntab *t, uint64_t id);

#endif
