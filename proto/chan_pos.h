/*
 * chan_pos.h - positions in the event history (docs/PROTOCOL.md, "Positions").
 *
 * A position is what a client on the wsgw.2 protocol keeps per group and
 * names when it reconnects: "<offset>-<tag>", where offset is the stream
 * offset (decimal, at most 19 digits) of the last message of the history
 * the client has accounted for, and tag is 12 lowercase hex digits (48 bits)
 * binding that offset to the group and to the message stored there. The
 * offset need not be one of the group's own events (a subscription reply
 * gives the history's latest offset): the tag is what makes a position
 * checkable. A gateway accepts a position when the history holds, at that
 * offset, the very message the tag was computed from, for that group; a
 * position from another group, from a history since recreated, or made up,
 * fails that check (1 in 2^48 by chance).
 *
 * Owns: the format, the parse, the digest of a stored message and the tag.
 * Shared by the gateway (which computes and checks positions) and the
 * worker (which checks the syntax of what a client sends). Must not: know
 * where the history lives.
 *
 * Not a secret: a client that forges a valid position for a group it may
 * join gets that group's events, which it may read anyway.
 */
#ifndef CHAN_POS_H
#define CHAN_POS_H

#include <stddef.h>
#include <stdint.h>

/* "18446744073709551615-ffffffffffff" plus the NUL. */
#define CHAN_POS_MAX 33

/* The subprotocol a client names in Sec-WebSocket-Protocol to get
 * positions (docs/PROTOCOL.md, "Protocol wsgw.2"). */
#define CHAN_POS_PROTOCOL "wsgw.2"
/* The old protocol by name (docs/PROTOCOL.md, "Connecting"). A browser that
 * offers subprotocols fails the handshake when the 101 names none, so a
 * client that offers wsgw.2 also offers this one, and a gateway that cannot
 * serve wsgw.2 (history off) answers it: the same connection as without
 * any subprotocol, byte for byte. */
#define CHAN_OLD_PROTOCOL "wsgw.1"

/* The digest of the message stored at offset under routing key `key`: FNV-1a
 * (64 bits) over the offset's 8 bytes (little-endian), the key, a 0 byte and
 * the body. Computed once per message, by whoever reads the stream. */
uint64_t chan_pos_digest(uint64_t offset, const char *key, size_t klen,
                         const void *body, size_t blen);

/* The tag of a position of `group` at a message whose digest is `digest`:
 * the low 48 bits of FNV-1a over the digest's 8 bytes and the group name. */
uint64_t chan_pos_tag(const char *group, size_t glen, uint64_t digest);

/* Writes "<offset>-<tag>" into out (at least CHAN_POS_MAX bytes). Returns
 * the length. */
int chan_pos_format(char *out, uint64_t offset, uint64_t tag);

/* Reads "<offset>-<tag>" (exactly; len bytes, no NUL needed): 1 to 19
 * decimal digits without a leading zero (except "0") that fit 63 bits, a
 * '-', 12 lowercase hex digits. 0 on success, -1 otherwise. */
int chan_pos_parse(const char *s, size_t len, uint64_t *offset, uint64_t *tag);

#endif
