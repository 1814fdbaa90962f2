/*
 * tls -- see tls.h.
 */
#include "tls/tls.h"
#include "tls/sess_store.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/util.h"

#define TLS12_CIPHERS                                                                          \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                               \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                               \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

struct tls_cert {
    SSL_CTX *ctx;  /* owned reference */
    char **names;  /* owned */
    size_t nnames;
};

struct ticket_key {
    unsigned char name[16]; /* carries the label */
    unsigned char aes[32];
    unsigned char hmac[32];
};

struct tls_server {
    struct tls_cert *certs; /* owned */
    size_t ncerts;
    struct metric *hs_full, *hs_resumed;
    unsigned label;
    struct sid_codec codec;
    struct ticket_key key;  /* wiped on destroy */
    struct sess_store *store;   /* a reference */
    EVP_CIPHER *cipher;     /* fetched once */
};

static int ex_index = -1;     /* SSL_CTX ex data: the tls_server */
static int ssl_ex_index = -1; /* SSL ex data: set once the handshake was counted */

static void ssl_err(char *err, size_t errlen, const char *what, const char *path)
{
    unsigned long e = ERR_get_error();
    char ebuf[256] = "";
    if (e)
        ERR_error_string_n(e, ebuf, sizeof(ebuf));
    snprintf(err, errlen, "%s %s%s%s", what, path, e ? ": " : "", ebuf);
    ERR_clear_error();
}

static int name_match(const char *pattern, const char *name)
{
    if (strcasecmp(pattern, name) == 0)
        return 1;
    /* "*.example.test" matches exactly one label in front. */
    if (pattern[0] == '*' && pattern[1] == '.') {
        const char *dot = strchr(name, '.');
        return dot != NULL && dot != name && strcasecmp(pattern + 1, dot) == 0;
    }
    return 0;
}

static int sni_cb(SSL *ssl, int *alert, void *arg)
{
    struct tls_server *t = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (name == NULL || t == NULL)
        return SSL_TLSEXT_ERR_OK; /* stay on the default certificate */
    for (size_t i = 0; i < t->ncerts; i++) {
        for (size_t j = 0; j < t->certs[i].nnames; j++) {
            if (name_match(t->certs[i].names[j], name)) {
                if (SSL_get_SSL_CTX(ssl) != t->certs[i].ctx)
                    SSL_set_SSL_CTX(ssl, t->certs[i].ctx);
                return SSL_TLSEXT_ERR_OK;
            }
        }
    }
    /* Unknown name: answer with the default certificate; the client's
     * verification decides. */
    return SSL_TLSEXT_ERR_OK;
}

static void info_cb(const SSL *ssl, int where, int ret)
{
    if (!(where & SSL_CB_HANDSHAKE_DONE))
        return;
    struct tls_server *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ex_index);
    if (t == NULL)
        return;
    /* TLS 1.3 may report HANDSHAKE_DONE again after post-handshake
     * messages; count only the first. */
    if (SSL_get_ex_data(ssl, ssl_ex_index) != NULL)
        return;
    SSL_set_ex_data((SSL *)ssl, ssl_ex_index, t);
    metric_inc(SSL_session_reused((SSL *)ssl) ? t->hs_resumed : t->hs_full);
}

void tls_server_count(SSL *ssl)
{
    info_cb(ssl, SSL_CB_HANDSHAKE_DONE, 1);
}

static struct tls_server *server_of(const SSL *ssl)
{
    return SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ex_index);
}

/* Session IDs that carry the label (TLS 1.2 IDs, TLS 1.3 stateful tickets). */
static int gen_session_id(SSL *ssl, unsigned char *id, unsigned int *id_len)
{
    struct tls_server *t = server_of(ssl);
    if (t == NULL || t->label == 0)
        return 0;
    /* Random bits make a clash with a live session unlikely; retry a few times anyway. */
    for (int i = 0; i < 8; i++) {
        if (sid_encode(&t->codec, t->label, id, *id_len) < 0)
            return 0;
        if (!SSL_has_matching_session_id(ssl, id, *id_len))
            return 1;
    }
    return 0;
}

/*
 * Stateless tickets: one key per process whose name carries the label.
 * enc=1 seals a new ticket; enc=0 finds the key by name (0 = unknown, so
 * a full handshake follows).
 */
static int ticket_key_cb(SSL *ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                         EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    struct tls_server *t = server_of(ssl);
    OSSL_PARAM params[3];
    if (t == NULL)
        return -1;
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, t->key.hmac, sizeof(t->key.hmac));
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    if (enc) {
        memcpy(key_name, t->key.name, 16);
        if (RAND_bytes(iv, 16) != 1 ||
            EVP_EncryptInit_ex(cctx, t->cipher, NULL, t->key.aes, iv) != 1 ||
            EVP_MAC_CTX_set_params(hctx, params) != 1)
            return -1;
        return 1;
    }
    if (memcmp(key_name, t->key.name, 16) != 0)
        return 0;
    if (EVP_MAC_CTX_set_params(hctx, params) != 1 ||
        EVP_DecryptInit_ex(cctx, t->cipher, NULL, t->key.aes, iv) != 1)
        return -1;
    return 1;
}

static void load_names(struct tls_cert *tc, X509 *x)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_DNS)
            continue;
        const unsigned char *d = ASN1_STRING_get0_data(g->d.dNSName);
        int n = ASN1_STRING_length(g->d.dNSName);
        if (n <= 0 || memchr(d, 0, (size_t)n))
            continue;
        tc->names = xrealloc(tc->names, (tc->nnames + 1) * sizeof(char *));
        tc->names[tc->nnames++] = xstrndup((const char *)d, (size_t)n);
    }
    GENERAL_NAMES_free(gens);
}

static SSL_CTX *make_ctx(const struct tls_server_conf *conf, const struct tls_cert_conf *cc,
                         struct tls_server *t, struct tls_cert *tc, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        ssl_err(err, errlen, "cannot create an SSL_CTX for", cc->cert_path);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, conf->min_version ? conf->min_version : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 (conf->tickets ? 0 : SSL_OP_NO_TICKET));
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_cipher_list(ctx, conf->ciphers ? conf->ciphers : TLS12_CIPHERS) != 1) {
        ssl_err(err, errlen, "bad cipher list for", cc->cert_path);
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cc->cert_path) != 1) {
        ssl_err(err, errlen, "cannot load certificate", cc->cert_path);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cc->key_path, SSL_FILETYPE_PEM) != 1) {
        ssl_err(err, errlen, "cannot load private key", cc->key_path);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ssl_err(err, errlen, "private key does not match certificate", cc->cert_path);
        goto fail;
    }
    sess_store_attach(t->store, ctx);
    SSL_CTX_set_timeout(ctx, conf->session_timeout > 0 ? conf->session_timeout : 3600);
    /* All contexts of one server share a session-id context so that a
     * session resumes whichever certificate SNI selected. */
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"ferry", 5);
    SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, t);
    SSL_CTX_set_info_callback(ctx, info_cb);
    SSL_CTX_set_ex_data(ctx, ex_index, t);
    if (t->label != 0) {
        SSL_CTX_set_generate_session_id(ctx, gen_session_id);
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb);
    }
    load_names(tc, SSL_CTX_get0_certificate(ctx));
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

struct tls_server *tls_server_create(const struct tls_server_conf *conf, char *err,
                                     size_t errlen)
{
    if (ex_index < 0) {
        ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
        ssl_ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    }
    if (conf->ncerts == 0) {
        snprintf(err, errlen, "no certificate configured");
        return NULL;
    }
    struct tls_server *t = xcalloc(1, sizeof(*t));
    t->store = sess_store_create(conf->session_cache_size ? conf->session_cache_size : 100000);
    t->label = conf->label;
    t->codec = conf->codec;
    if (t->label != 0) {
        t->cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
        if (t->cipher == NULL || RAND_bytes(t->key.aes, sizeof(t->key.aes)) != 1 ||
            RAND_bytes(t->key.hmac, sizeof(t->key.hmac)) != 1 ||
            sid_encode(&t->codec, t->label, t->key.name, sizeof(t->key.name)) < 0) {
            snprintf(err, errlen, "cannot set up label %u session identifiers", t->label);
            EVP_CIPHER_free(t->cipher);
            mem_wipe(&t->key, sizeof(t->key));
            sess_store_unref(t->store);
            free(t);
            return NULL;
        }
    }
    t->certs = xcalloc(conf->ncerts, sizeof(*t->certs));
    for (size_t i = 0; i < conf->ncerts; i++) {
        t->certs[i].ctx = make_ctx(conf, &conf->certs[i], t, &t->certs[i], err, errlen);
        t->ncerts = i + 1;
        if (t->certs[i].ctx == NULL) {
            tls_server_destroy(t);
            return NULL;
        }
    }
    const char *labels = conf->metric_labels ? conf->metric_labels : "";
    char *l_full = xasprintf("%s%shandshake=\"full\"", labels, labels[0] ? "," : "");
    char *l_res = xasprintf("%s%shandshake=\"resumed\"", labels, labels[0] ? "," : "");
    t->hs_full = metric_counter("ferry_tls_handshakes_total", l_full, "Completed TLS handshakes");
    t->hs_resumed = metric_counter("ferry_tls_handshakes_total", l_res, "Completed TLS handshakes");
    free(l_full);
    free(l_res);
    return t;
}

void tls_server_destroy(struct tls_server *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->ncerts; i++) {
        /* Connections still open keep their SSL_CTX alive; make sure their
         * callbacks no longer reach this struct. */
        if (t->certs[i].ctx) {
            SSL_CTX_set_ex_data(t->certs[i].ctx, ex_index, NULL);
            sess_store_detach(t->certs[i].ctx);
            SSL_CTX_set_tlsext_servername_arg(t->certs[i].ctx, NULL);
            SSL_CTX_set_tlsext_servername_callback(t->certs[i].ctx, NULL);
            SSL_CTX_free(t->certs[i].ctx);
        }
        for (size_t j = 0; j < t->certs[i].nnames; j++)
            free(t->certs[i].names[j]);
        free(t->certs[i].names);
    }
    free(t->certs);
    EVP_CIPHER_free(t->cipher);
    mem_wipe(&t->key, sizeof(t->key));
    sess_store_unref(t->store);
    free(t);
}

void tls_server_keep_state(struct tls_server *fresh, struct tls_server *old)
{
    if (fresh == NULL || old == NULL || fresh == old)
        return;
    sess_store_unref(fresh->store);
    fresh->store = sess_store_ref(old->store);
    for (size_t i = 0; i < fresh->ncerts; i++)
        sess_store_attach(fresh->store, fresh->certs[i].ctx);
    if (fresh->label != 0 && fresh->label == old->label && fresh->codec.kind == old->codec.kind &&
        fresh->codec.n == old->codec.n)
        memcpy(&fresh->key, &old->key, sizeof(fresh->key));
}

struct sess_store *tls_server_store(struct tls_server *t)
{
    return t->store;
}

SSL_CTX *tls_server_ctx(struct tls_server *t)
{
    return t->certs[0].ctx;
}

size_t tls_server_ncerts(const struct tls_server *t)
{
    return t->ncerts;
}
