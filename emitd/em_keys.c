/*
 * em_keys.c - the API key file (see em_keys.h).
 *
 * Owns: its syntax and the digest compare. Must not: log a key, or keep one
 * in memory longer than the parse (buffers holding the file are wiped).
 */
#include "em_keys.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EM_KEYS_FILE_MAX (1024 * 1024)

static int em_keys__visible(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f) return 0;
  return 1;
}

/* Splits one line (no newline) into name and key. 1 when it holds a key, 0
 * when blank or a comment, -1 with why. */
static int em_keys__line(const char *s, size_t n, const char **name, size_t *nl,
                         const char **key, size_t *kl, const char **why) {
  while (n && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
  while (n && (*s == ' ' || *s == '\t')) s++, n--;
  if (n == 0 || *s == '#') return 0;
  size_t i = 0;
  while (i < n && s[i] != ' ' && s[i] != '\t') i++;
  *name = s;
  *nl = i;
  while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
  *key = s + i;
  *kl = n - i;
  if (*kl == 0) return *why = "expected NAME KEY", -1;
  if (memchr(*key, ' ', *kl) || memchr(*key, '\t', *kl))
    return *why = "expected NAME KEY (a key holds no blanks)", -1;
  if (*nl > EM_KEY_NAME_MAX || !em_keys__visible(*name, *nl))
    return *why = "NAME: 1-64 visible ASCII characters", -1;
  if (*kl < EM_KEY_MIN) return *why = "key shorter than 32 characters", -1;
  if (*kl > EM_KEY_MAX || !em_keys__visible(*key, *kl))
    return *why = "key: 32-512 visible ASCII characters", -1;
  return 1;
}

int em_keys_parse(const char *text, size_t len, em_keys *out, char *err,
                  size_t errlen) {
  em_keys k = {0};
  const char *p = text, *end = text + len;
  for (int line = 1; p < end; line++) {
    const char *nlp = memchr(p, '\n', (size_t)(end - p));
    const char *e = nlp ? nlp : end;
    const char *name, *key, *why = NULL;
    size_t nl, kl;
    int r = em_keys__line(p, (size_t)(e - p), &name, &nl, &key, &kl, &why);
    p = nlp ? nlp + 1 : end;
    if (r == 0) continue;
    if (r < 0 || k.n == EM_KEYS_MAX) {
      snprintf(err, errlen, "line %d: %s", line, r < 0 ? why : "more than 1000 keys");
      em_keys_free(&k);
      return -1;
    }
    for (size_t i = 0; i < k.n; i++)
      if (strlen(k.v[i].name) == nl && memcmp(k.v[i].name, name, nl) == 0) {
        snprintf(err, errlen, "line %d: name %.*s given twice", line, (int)nl, name);
        em_keys_free(&k);
        return -1;
      }
    em_key *v = realloc(k.v, (k.n + 1) * sizeof *v);
    if (!v) {
      snprintf(err, errlen, "out of memory");
      em_keys_free(&k);
      return -1;
    }
    k.v = v;
    memcpy(v[k.n].name, name, nl);
    v[k.n].name[nl] = '\0';
    SHA256((const unsigned char *)key, kl, v[k.n].digest);
    k.n++;
  }
  if (k.n == 0) {
    snprintf(err, errlen, "no keys (lines \"NAME KEY\")");
    return -1;
  }
  *out = k;
  return 0;
}

int em_keys_load(const char *path, em_keys *out, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  const char *why = NULL;
  if (!S_ISREG(st.st_mode)) why = "not a regular file";
  else if (st.st_mode & S_IROTH) why = "readable by other users (chmod o-r)";
  else if (st.st_size > EM_KEYS_FILE_MAX) why = "larger than 1 MiB";
  char *buf = why ? NULL : malloc((size_t)st.st_size + 1);
  if (!why && !buf) why = "out of memory";
  size_t got = 0;
  while (!why && got < (size_t)st.st_size) {
    ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) why = r < 0 ? strerror(errno) : "shorter than its size";
    else got += (size_t)r;
  }
  close(fd);
  int rc = -1;
  if (why) {
    snprintf(err, errlen, "%s: %s", path, why);
  } else {
    char perr[128];
    rc = em_keys_parse(buf, got, out, perr, sizeof perr);
    if (rc < 0) snprintf(err, errlen, "%s: %s", path, perr);
  }
  if (buf) {
    OPENSSL_cleanse(buf, got);
    free(buf);
  }
  return rc;
}

const char *em_keys_check(const em_keys *k, const char *key, size_t len) {
  unsigned char d[32];
  SHA256((const unsigned char *)key, len, d);
  const char *match = NULL;
  for (size_t i = 0; i < k->n; i++) {
    /* No early exit: every key is compared whatever matched before. */
    int same = CRYPTO_memcmp(d, k->v[i].digest, sizeof d) == 0;
    if (same && !match) match = k->v[i].name;
  }
  return match;
}

void em_keys_free(em_keys *k) {
  if (k->v) OPENSSL_cleanse(k->v, k->n * sizeof *k->v);
  free(k->v);
  k->v = NULL;
  k->n = 0;
}
