/*
 * tls -- OpenSSL server contexts for the roles that terminate TLS.
 *
 * One SSL_CTX per certificate, built at load time (OpenSSL 3.0 fetches are
 * slow under contention, so nothing is built per connection). The first
 * certificate's context is the default; an SNI callback moves a
 * connection to the context whose certificate names (subjectAltName DNS
 * entries, with "*.example.test" wildcards) match the requested server
 * name. Defaults are modern: TLS 1.2 and 1.3 only, ECDHE with AEAD
 * ciphers for 1.2, server cipher preference, no renegotiation, no
 * compression. Handshakes are counted as full or resumed.
 *
 * Routable session identifiers (DESIGN.md contract 1): with a label set,
 * every TLS 1.2 session ID and stateful TLS 1.3 ticket (whose PSK identity
 * is the session ID) is drawn by the session-ID generation callback so
 * that it carries the label, and stateless tickets are sealed under a key
 * whose 16-byte key_name carries it (the key_name starts the ticket and so
 * the TLS 1.3 PSK identity). The switch reads them from ClientHellos.
 * Ticket keys are random per process for now (AES-256-CBC + HMAC-SHA256,
 * the RFC 5077 layout OpenSSL's callback expects).
 */
#ifndef FERRY_TLS_TLS_H
#define FERRY_TLS_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "tls/sess_wire.h"
#include "tls/sid_codec.h"

struct tls_cert_conf {
    const char *cert_path; /* PEM chain */
    const char *key_path;  /* PEM private key */
};

struct tls_server_conf {
    const struct tls_cert_conf *certs;
    size_t ncerts;
    int min_version;       /* TLS1_2_VERSION or TLS1_3_VERSION */
    const char *ciphers;   /* TLS 1.2 cipher list, NULL = default */
    long session_timeout;  /* seconds */
    int tickets;           /* issue session tickets */
    const char *metric_labels; /* labels for the handshake counters, e.g. role="cache" */
    size_t session_cache_size; /* sessions held by the store (0: 100000) */
    unsigned label;        /* this server's label in its node group, 0 = none */
    struct sid_codec codec;/* how the label is written (with label != 0) */
};

struct tls_server;

/*
 * Loads every certificate and key. On failure returns NULL and writes a
 * message naming the file into err.
 */
struct tls_server *tls_server_create(const struct tls_server_conf *conf, char *err,
                                     size_t errlen);
/* Drops a reference (connections hold the SSL_CTXs themselves). */
void tls_server_destroy(struct tls_server *t);
/*
 * After a reload: fresh takes over old's session store and, when the
 * label is unchanged, its ticket key, so sessions and tickets issued
 * before the reload still resume.
 */
void tls_server_keep_state(struct tls_server *fresh, struct tls_server *old);
/*
 * Seals stateless tickets under keys every server of the group derives
 * from the group key (keys, taken over) for each period of rotation_s
 * seconds: tickets resume on any server of the group, keys rotate by the
 * clock and never travel. Keys of the periods a live session may come
 * from still decrypt (and the ticket is renewed). Before serving only.
 * Returns 0, or -1 (keys freed).
 */
int tls_server_set_group_tickets(struct tls_server *t, struct sess_keyring *keys, int64_t rotation_s);
/* Handshakes completed since start, full and resumed (any context of t). */
void tls_server_handshakes(const struct tls_server *t, int64_t *full, int64_t *resumed);
/* The session store (sessions held, counters). */
struct sess_store *tls_server_store(struct tls_server *t);
/* The context new connections start on. */
SSL_CTX *tls_server_ctx(struct tls_server *t);
/* Returns the names (SAN DNS) found in certificate i, for logs and tests. */
size_t tls_server_ncerts(const struct tls_server *t);

/* Counts one completed handshake (full or resumed) on t's counters. */
void tls_server_count(SSL *ssl);

#endif
