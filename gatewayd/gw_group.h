/*
 * gw_group.h - the gateway's group table: which of its connections are in
 * which group.
 *
 * Owns: groups (by name, hashed) and membership nodes. A group exists while
 * it has a member; the table calls on_first when a group gains its first
 * member and on_last when it loses its last, which is when the gateway
 * binds and unbinds its queue. Must not: own connections, or free a group
 * while a fanout walks it (callers close connections only after the walk).
 */
#ifndef GW_GROUP_H
#define GW_GROUP_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw_group gw_group;

typedef struct gw_member {
  struct gw_member *prev, *next; /* in the group's list */
  gw_group *group;
  void *conn;
} gw_member;

struct gw_group {
  gw_group *hnext; /* hash chain */
  gw_member *head;
  uint32_t n_members;
  uint32_t hash;
  char name[];
};

typedef void (*gw_group_cb)(const char *name, void *arg);

typedef struct gw_group_table {
  gw_group **buckets;
  size_t cap; /* power of two */
  size_t n_groups;
  size_t n_members;
  gw_group_cb on_first, on_last;
  void *cb_arg;
} gw_group_table;

int gw_group_table_init(gw_group_table *t, gw_group_cb on_first,
                        gw_group_cb on_last, void *arg);
/* Frees every group and member (at exit; no callbacks). */
void gw_group_table_free(gw_group_table *t);

/* Adds conn to the group `name`; NULL when out of memory. */
gw_member *gw_group_join(gw_group_table *t, const char *name, void *conn);
void gw_group_leave(gw_group_table *t, gw_member *m);
gw_group *gw_group_find(const gw_group_table *t, const char *name, size_t len);
void gw_group_foreach(const gw_group_table *t, gw_group_cb fn, void *arg);

#endif
