/*
 * chan_group.c - the group-name rule: what a valid name is and how a
 * subscription entry (key, value) becomes "key-value".
 *
 * Owns: that character set and those lengths, for every party. Must not:
 * decide who may join a group (the worker's policy), or depend on the locale
 * (so no ctype.h: a name valid on one host is valid on all).
 */
#include "chan_group.h"

#include <string.h>

#include "chan_names.h"

#define CHAN_GROUP_PART_MAX 64

/* [A-Za-z0-9_.:]: the characters of a key or value. */
static int chan_group__part_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':';
}

int chan_group_name_valid(const char *name, size_t len) {
  if (!name || len == 0 || len > CHAN_GROUP_NAME_MAX) return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)name[i];
    if (!chan_group__part_char(c) && c != '-') return 0;
  }
  return 1;
}

int chan_group_part_valid(const char *part, size_t len) {
  if (!part || len == 0 || len > CHAN_GROUP_PART_MAX) return 0;
  for (size_t i = 0; i < len; i++) {
    if (!chan_group__part_char((unsigned char)part[i])) return 0;
  }
  return 1;
}

int chan_group_name_make(char *buf, size_t buflen, const char *key,
                         const char *value) {
  if (!buf || !key) return -1;
  /* strnlen: a part one byte too long is already invalid. */
  size_t klen = strnlen(key, CHAN_GROUP_PART_MAX + 1);
  size_t vlen = value ? strnlen(value, CHAN_GROUP_PART_MAX + 1) : 0;
  if (!chan_group_part_valid(key, klen)) return -1;
  if (value && !chan_group_part_valid(value, vlen)) return -1;
  size_t total = value ? klen + 1 + vlen : klen;
  /* Two 64-byte parts and the '-' can exceed the 128-byte name limit. */
  if (total > CHAN_GROUP_NAME_MAX || total >= buflen) return -1;
  memcpy(buf, key, klen);
  if (value) {
    buf[klen] = '-';
    memcpy(buf + klen + 1, value, vlen);
  }
  buf[total] = '\0';
  return (int)total;
}
