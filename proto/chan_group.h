/*
 * chan_group.h - group names: the rule for what a valid name is, and how a
 * subscription entry (key, value) becomes a name ("jobs" + "status_changed"
 * -> "jobs-status_changed").
 *
 * Owns: that naming rule, shared by worker, gateway and emitters. Must not:
 * decide who may join (that is the worker's policy).
 */
#ifndef CHAN_GROUP_H
#define CHAN_GROUP_H

#include <stddef.h>

/* 1 when name (len bytes) is 1..CHAN_GROUP_NAME_MAX of [A-Za-z0-9_.:-]. */
int chan_group_name_valid(const char *name, size_t len);

/* 1 when a subscription key or value part is 1..64 of [A-Za-z0-9_.:]
 * (no '-': it separates key from value). */
int chan_group_part_valid(const char *part, size_t len);

/* Writes "key-value" (or "key" when value is NULL) into buf. Returns the
 * length, or -1 when a part is invalid or the result does not fit. */
int chan_group_name_make(char *buf, size_t buflen, const char *key,
                         const char *value);

#endif
