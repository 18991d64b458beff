/*
 * gw_tls.h - TLS for deployments without nginx in front (wss:// direct).
 *
 * Owns: the server SSL_CTX (certificate, key, protocol and cipher policy)
 * and each connection's SSL object, driven through memory BIOs so that the
 * socket stays libuv's: ciphertext read from the socket goes in, plaintext
 * comes out to the HTTP/websocket code, and plaintext to send comes back as
 * ciphertext buffers for the same send queue. Must not: touch sockets.
 *
 * Policy: TLS 1.2 and 1.3 only; for 1.2 only ECDHE with AES-GCM or
 * ChaCha20-Poly1305; no renegotiation, no compression; ALPN answers
 * http/1.1 (websockets are HTTP/1.1 upgrades).
 */
#ifndef GW_TLS_H
#define GW_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "gw_buf.h"

typedef struct gw_tls gw_tls;

/* Loads cert (PEM chain) and key. NULL with a reason in err on failure. */
gw_tls *gw_tls_new(const char *cert_file, const char *key_file, char *err,
                   size_t errlen);
void gw_tls_free(gw_tls *t);

/* A server-side session for one connection; NULL when out of memory. */
SSL *gw_tls_session(gw_tls *t);

/* Takes one plaintext piece; returns non-zero to stop (the connection
 * ended: nothing more may be decrypted for it). */
typedef int (*gw_tls_plain_cb)(void *arg, const char *data, size_t len);

/* Decrypts `len` bytes read from the socket, handing each plaintext piece
 * to cb until it says stop. Returns 0, or -1 when the peer broke TLS (bad
 * handshake, bad record): close it. */
int gw_tls_feed(SSL *ssl, const char *data, size_t len, char *plain,
                size_t plain_cap, gw_tls_plain_cb cb, void *arg);

/* Encrypts len bytes into one new buffer of ciphertext (NULL: no memory or
 * TLS error). Also carries any record TLS had pending. */
gw_buf *gw_tls_encrypt(SSL *ssl, const void *data, size_t len);

/* Ciphertext TLS produced on its own (handshake, alerts), or NULL. */
gw_buf *gw_tls_take_output(SSL *ssl);

#endif
