/*
 * gw_tls.c - TLS through memory BIOs (see gw_tls.h).
 *
 * Costs admitted: under TLS a group message is encrypted once per member
 * (each connection has its own keys), so the frame-once saving of the
 * plaintext path does not carry over; and each connection holds an SSL
 * object. SSL_MODE_RELEASE_BUFFERS lets an idle connection give its record
 * buffers back (~34 KiB otherwise).
 */
#include "gw_tls.h"

#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>

struct gw_tls {
  SSL_CTX *ctx;
};

static void gw_tls__error(char *err, size_t errlen, const char *what) {
  unsigned long e = ERR_get_error();
  char buf[200] = "";
  if (e) ERR_error_string_n(e, buf, sizeof(buf));
  snprintf(err, errlen, "%s: %s", what, e ? buf : "unknown error");
  ERR_clear_error();
}

/* ALPN: websockets are HTTP/1.1 upgrades, so that is all we speak. */
static int gw_tls__alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                        const unsigned char *in, unsigned int inlen, void *arg) {
  (void)ssl;
  (void)arg;
  static const unsigned char http11[] = "\x08http/1.1";
  unsigned char *sel = NULL;
  if (SSL_select_next_proto(&sel, outlen, http11, sizeof(http11) - 1, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

gw_tls *gw_tls_new(const char *cert_file, const char *key_file, char *err,
                   size_t errlen) {
  gw_tls *t = calloc(1, sizeof(*t));
  if (!t) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  t->ctx = SSL_CTX_new(TLS_server_method());
  if (!t->ctx) {
    gw_tls__error(err, errlen, "SSL_CTX_new");
    free(t);
    return NULL;
  }
  SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                  SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(t->ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_alpn_select_cb(t->ctx, gw_tls__alpn, NULL);
  const char *what = NULL;
  if (SSL_CTX_set_cipher_list(t->ctx, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1)
    what = "cipher list";
  else if (SSL_CTX_use_certificate_chain_file(t->ctx, cert_file) != 1)
    what = "certificate";
  else if (SSL_CTX_use_PrivateKey_file(t->ctx, key_file, SSL_FILETYPE_PEM) != 1)
    what = "private key";
  else if (SSL_CTX_check_private_key(t->ctx) != 1)
    what = "key does not match certificate";
  if (what) {
    gw_tls__error(err, errlen, what);
    gw_tls_free(t);
    return NULL;
  }
  return t;
}

void gw_tls_free(gw_tls *t) {
  if (!t) return;
  SSL_CTX_free(t->ctx);
  free(t);
}

SSL *gw_tls_session(gw_tls *t) {
  SSL *ssl = SSL_new(t->ctx);
  if (!ssl) return NULL;
  BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_mem());
  if (!in || !out) {
    BIO_free(in);
    BIO_free(out);
    SSL_free(ssl);
    return NULL;
  }
  /* An empty memory BIO reads as "retry", not EOF. */
  BIO_set_mem_eof_return(in, -1);
  SSL_set_bio(ssl, in, out); /* the SSL owns both from here */
  SSL_set_accept_state(ssl);
  return ssl;
}

gw_buf *gw_tls_take_output(SSL *ssl) {
  BIO *out = SSL_get_wbio(ssl);
  size_t pending = BIO_ctrl_pending(out);
  if (pending == 0) return NULL;
  gw_buf *b = gw_buf_new(pending);
  if (!b) return NULL;
  int n = BIO_read(out, b->data, (int)pending);
  if (n <= 0) {
    gw_buf_unref(b);
    return NULL;
  }
  b->len = (uint32_t)n;
  return b;
}

int gw_tls_feed(SSL *ssl, const char *data, size_t len, char *plain,
                size_t plain_cap, gw_tls_plain_cb cb, void *arg) {
  if (len && BIO_write(SSL_get_rbio(ssl), data, (int)len) != (int)len) return -1;
  for (;;) {
    int n = SSL_read(ssl, plain, (int)plain_cap);
    if (n > 0) {
      if (cb(arg, plain, (size_t)n)) return 0;
      continue;
    }
    int e = SSL_get_error(ssl, n);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
    if (e == SSL_ERROR_ZERO_RETURN) return -1; /* close_notify: the peer is done */
    return -1;
  }
}

gw_buf *gw_tls_encrypt(SSL *ssl, const void *data, size_t len) {
  if (len > INT32_MAX) return NULL;
  if (len && SSL_write(ssl, data, (int)len) != (int)len) {
    ERR_clear_error();
    return NULL;
  }
  return gw_tls_take_output(ssl);
}
