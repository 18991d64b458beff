/*
 * origin.h - which web origins may open a websocket: one rule for gatewayd
 * (gateway.allowed_origins, every handshake) and workerd (a token that came
 * by cookie, docs/PROTOCOL.md "Connecting").
 *
 * An origin is "scheme://host[:port]" (RFC 6454), as browsers send it in the
 * Origin header. Two origins are the same when scheme and host are equal
 * ignoring case and their ports are equal, an omitted port being the
 * scheme's default (http and ws 80, https and wss 443); a trailing "/" is
 * ignored. "null" and anything with a path, query, user or no "://" is no
 * origin and matches nothing.
 *
 * Owns: parsing an origin, the list match, and the same-host rule. Must
 * not: know where the list comes from, or which token source needs it.
 */
#ifndef ORIGIN_H
#define ORIGIN_H

#include <stddef.h>

/* 1 when origin is one of list (comma-separated origins, spaces around an
 * entry ignored), else 0; an empty or NULL list holds nothing. */
int origin_in_list(const char *origin, const char *list);

/*
 * 1 when origin names the server the request was sent to: its host equals
 * the Host header's (ignoring case; an IPv6 host in brackets), and, when
 * the Host header carries a port, its port (explicit or the scheme's
 * default) equals that one. A Host without a port matches any port of the
 * same host: proxies (nginx's $host) drop the port, and cookies are not
 * isolated by port anyway (RFC 6265, 8.5). The scheme is not compared:
 * the Host header does not carry one, and non-TLS clients behind TLS
 * proxies name "http" (awxkit's websocket-client always does).
 */
int origin_same_host(const char *origin, const char *host);

/*
 * The rule for ambient credentials (a token in a cookie): 1 when origin is
 * present and, with a non-empty list, in it; with an empty list, the same
 * host as the request (origin_same_host). NULL origin: 0.
 */
int origin_allowed(const char *origin, const char *host, const char *list);

#endif
