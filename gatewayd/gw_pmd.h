/*
 * gw_pmd.h - negotiating permessage-deflate (RFC 7692 section 7.1) from a
 * client's Sec-WebSocket-Extensions offers.
 *
 * The gateway's terms are what makes compressing once per event possible.
 * It answers client_no_context_takeover, always (every message from a
 * client is decompressed alone, so no connection holds an inflater: ~40
 * KiB each otherwise; the server's to add to any offer, section 7.1.1.2).
 * It answers server_no_context_takeover only when the offer asks for it:
 * otherwise the client keeps its window, and an event may be compressed
 * once more against its group's previous event, for every client whose
 * last compressed message that was (gw_deflate_twin_after): still once per
 * event, not per client. An event compressed alone is valid either way.
 *
 * An offer asking server_max_window_bits below 15 is accepted with that
 * value, and that client is then sent plain messages only (a message need
 * not be compressed, section 6): compressing for it would mean a smaller
 * window and a compression per delivery, which a crowd of such clients
 * could make the gateway's whole cost. client_max_window_bits, with or
 * without a value, is accepted and left out of the answer (our inflater's
 * 32 KiB window reads any smaller one).
 *
 * Owns: the parsing of the header's grammar (RFC 6455 section 9.1: offers
 * separated by commas, parameters by semicolons, values a token or a
 * quoted string) and the rules for each parameter; an offer breaking one
 * (unknown or repeated parameter, a value where none belongs, a window
 * size not 8..15) is declined and the next one tried. Must not: do I/O or
 * know connections.
 */
#ifndef GW_PMD_H
#define GW_PMD_H

#include <stddef.h>
#include <stdint.h>

enum {
  GW_PMD_RECV = 1, /* the client may send compressed messages (RSV1) */
  GW_PMD_SEND = 2, /* and is sent compressed ones (window of 15 bits) */
  GW_PMD_CHAIN = 4 /* and keeps its window: a message may refer to the last
                      one it decompressed (no server_no_context_takeover) */
};

/* Longest answer gw_pmd_negotiate writes, with its NUL. */
#define GW_PMD_ANSWER_MAX 128

/* Reads one Sec-WebSocket-Extensions header value. When it holds a
 * permessage-deflate offer the gateway accepts (the first one), writes the
 * answer's value (without the header name) into answer and returns the
 * GW_PMD_* flags for the connection; else 0 (nothing written). A request
 * with several such headers is read header by header, in order. */
int gw_pmd_negotiate(const char *value, char answer[GW_PMD_ANSWER_MAX]);

#endif
