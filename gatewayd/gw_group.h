/*
 * gw_group.h - the gateway's group table: which of its connections are in
 * which group.
 *
 * Owns: groups (by name, hashed), membership nodes and lingering groups. A
 * group exists while it has a member, and for `linger_ms` after its last
 * member left (a lingering group: still bound, so a re-join within that
 * time costs the broker nothing). The table calls on_first when a group is
 * created (the gateway binds its queue) and on_last when it is destroyed
 * (unbinds): when a lingering group expires, when more than max_lingering
 * linger (the oldest goes first), or at once with linger_ms 0. Must not:
 * own connections, or free a group while a fanout walks it (callers close
 * connections only after the walk).
 *
 * Invariants (asserted): a group is in the linger list exactly when it has
 * no member; n_lingering counts that list; every group is bound once
 * (on_first) and unbound once (on_last), so the broker's bindings are the
 * table's groups.
 */
#ifndef GW_GROUP_H
#define GW_GROUP_H

#include <stddef.h>
#include <stdint.h>

#include "gw_buf.h"

typedef struct gw_group gw_group;

typedef struct gw_member {
  struct gw_member *prev, *next; /* in the group's list */
  gw_group *group;
  void *conn;
} gw_member;

struct gw_group {
  gw_group *hnext; /* hash chain */
  gw_member *head;
  gw_group *lprev, *lnext; /* in the linger list while n_members == 0 */
  uint64_t idle_since_ms;  /* when the last member left (lingering only) */
  uint32_t n_members;
  uint32_t hash;
  /* Compression on: the frames of the group's last event fanned out, old
   * protocol and wsgw.2 (references; NULL: none), what the next event is
   * compressed after for the members whose window ends with them
   * (gw_conn_send_frame). One event's frames per group, most of them the
   * history ring's own. */
  gw_buf *zprev[2];
  char name[];
};

/* Replaces g's zprev[v] with b (a new reference; NULL clears). */
void gw_group_set_zprev(gw_group *g, int v, gw_buf *b);

typedef void (*gw_group_cb)(const char *name, void *arg);

typedef struct gw_group_table {
  gw_group **buckets;
  size_t cap; /* power of two */
  size_t n_groups;    /* including lingering ones: the bindings held */
  size_t n_members;
  gw_group_cb on_first, on_last;
  void *cb_arg;
  /* Lingering groups, oldest first (one linger time for all, so a FIFO is
   * sorted by expiry). */
  gw_group *linger_head, *linger_tail;
  size_t n_lingering;
  uint64_t linger_ms;    /* 0: unbind as soon as the last member leaves */
  size_t max_lingering;  /* over it the oldest lingering group goes */
  unsigned long lingering_rejoins; /* joins that found their group lingering */
} gw_group_table;

int gw_group_table_init(gw_group_table *t, gw_group_cb on_first,
                        gw_group_cb on_last, void *arg);
/* Frees every group and member (at exit; no callbacks). */
void gw_group_table_free(gw_group_table *t);

/* Keeps a group whose last member left for linger_ms (0: not at all), at
 * most max_lingering of them. Default: 0, 0 (no lingering). */
void gw_group_set_linger(gw_group_table *t, uint64_t linger_ms, size_t max_lingering);

/* Adds conn to the group `name`; NULL when out of memory. */
gw_member *gw_group_join(gw_group_table *t, const char *name, void *conn);
/* Removes m; a group left empty lingers from now_ms (loop time). */
void gw_group_leave(gw_group_table *t, gw_member *m, uint64_t now_ms);
/* Destroys (on_last) the lingering groups idle since before now_ms -
 * linger_ms. Called by the tick. */
void gw_group_expire(gw_group_table *t, uint64_t now_ms);
/* FNV-1a (32 bits) of a group name: gw_group.hash, and what the history
 * ring keeps per message to find a connection's groups fast. */
uint32_t gw_group_hash(const char *name, size_t len);

gw_group *gw_group_find(const gw_group_table *t, const char *name, size_t len);
/* Every group, lingering ones included (they are bound too). */
void gw_group_foreach(const gw_group_table *t, gw_group_cb fn, void *arg);

#endif
