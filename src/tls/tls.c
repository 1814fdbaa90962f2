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
#include <pthread.h>
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

/* Group ticket keys derived for one (group key, period); see group_key(). */
#define GROUP_KEYS_CACHED 8
struct group_ticket_key {
    uint16_t key_id;
    uint64_t period;
    int valid;
    struct ticket_key k;
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
    /* Group ticket keys (tls_server_set_group_tickets), or NULL. */
    struct sess_keyring *group;         /* owned */
    int64_t rotation_s;                 /* period length */
    int64_t accept_periods;             /* past periods that still decrypt */
    int64_t session_timeout;            /* seconds */
    pthread_mutex_t gmu;                /* guards gkeys */
    struct group_ticket_key gkeys[GROUP_KEYS_CACHED]; /* wiped on destroy */
    unsigned gnext;                     /* next slot to replace */
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

/* Loads key k into OpenSSL's ticket contexts (enc: and a fresh IV). */
static int ticket_key_use(const struct tls_server *t, const struct ticket_key *k, unsigned char *iv,
                          EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof(k->hmac));
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    if (enc && RAND_bytes(iv, 16) != 1)
        return -1;
    if ((enc ? EVP_EncryptInit_ex(cctx, t->cipher, NULL, k->aes, iv)
             : EVP_DecryptInit_ex(cctx, t->cipher, NULL, k->aes, iv)) != 1 ||
        EVP_MAC_CTX_set_params(hctx, params) != 1)
        return -1;
    return 0;
}

/*
 * Group ticket keys: every server of the group derives the same key for
 * each period of rotation_s seconds from the group key, so keys rotate by
 * the clock and never travel. The key name, in clear at the start of
 * every ticket, is "FTK" 0x01, the group key id (2 bytes), the period
 * (8 bytes), 2 zero bytes: nothing secret. Derived keys are cached.
 */
static const unsigned char GROUP_TAG[4] = {'F', 'T', 'K', 1};

static int group_key(struct tls_server *t, uint16_t id, uint64_t period, struct ticket_key *out)
{
    int rc = 0;
    pthread_mutex_lock(&t->gmu);
    for (unsigned i = 0; i < GROUP_KEYS_CACHED; i++) {
        if (t->gkeys[i].valid && t->gkeys[i].key_id == id && t->gkeys[i].period == period) {
            *out = t->gkeys[i].k;
            goto done;
        }
    }
    uint8_t info[10], okm[64];
    info[0] = (uint8_t)(id >> 8);
    info[1] = (uint8_t)id;
    for (int i = 0; i < 8; i++)
        info[2 + i] = (uint8_t)(period >> (56 - 8 * i));
    if (sess_keyring_derive(t->group, id, "ferry ticket key", info, sizeof(info), okm, sizeof(okm)) < 0) {
        rc = -1;
        goto done;
    }
    struct group_ticket_key *g = &t->gkeys[t->gnext++ % GROUP_KEYS_CACHED];
    g->key_id = id;
    g->period = period;
    g->valid = 1;
    memcpy(g->k.name, GROUP_TAG, 4);
    memcpy(g->k.name + 4, info, 10);
    g->k.name[14] = g->k.name[15] = 0;
    memcpy(g->k.aes, okm, 32);
    memcpy(g->k.hmac, okm + 32, 32);
    mem_wipe(okm, sizeof(okm));
    *out = g->k;
done:
    pthread_mutex_unlock(&t->gmu);
    return rc;
}

static int group_ticket_cb(struct tls_server *t, unsigned char key_name[16], unsigned char *iv,
                           EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    struct ticket_key k;
    int64_t now_p = time_wall() / t->rotation_s;
    int rc;
    if (enc) {
        if (group_key(t, sess_keyring_seal_id(t->group), (uint64_t)now_p, &k) < 0)
            return -1;
        memcpy(key_name, k.name, 16);
        rc = ticket_key_use(t, &k, iv, cctx, hctx, 1) < 0 ? -1 : 1;
        mem_wipe(&k, sizeof(k));
        return rc;
    }
    if (memcmp(key_name, GROUP_TAG, 4) != 0 || key_name[14] != 0 || key_name[15] != 0)
        return 0;
    uint16_t id = (uint16_t)(key_name[4] << 8 | key_name[5]);
    uint64_t p = 0;
    for (int i = 0; i < 8; i++)
        p = p << 8 | key_name[6 + i];
    /* One period ahead is a peer whose clock runs a little fast; older
     * than the session lifetime allows is a dead ticket. */
    if (!sess_keyring_has(t->group, id) || (int64_t)p > now_p + 1 || (int64_t)p < now_p - t->accept_periods)
        return 0;
    if (group_key(t, id, p, &k) < 0)
        return 0;
    rc = ticket_key_use(t, &k, iv, cctx, hctx, 0) < 0 ? -1 : 1;
    mem_wipe(&k, sizeof(k));
    /* 2: valid, but issue a fresh ticket under the current key. */
    return rc == 1 && ((int64_t)p != now_p || id != sess_keyring_seal_id(t->group)) ? 2 : rc;
}

/*
 * Stateless tickets: group keys (above), or one key per process whose name
 * carries the label. enc=1 seals a new ticket; enc=0 finds the key by name
 * (0 = unknown, so a full handshake follows).
 *
 * A TLS 1.3 resumption always asks for renewal (2): OpenSSL then sends the
 * client a fresh ticket. Without it, a server whose callback says "valid"
 * (1) sends none, and a client that follows RFC 8446 (section 4.6.1: do
 * not reuse a ticket; OpenSSL's client cache, and so curl, drop it after
 * use) is left without one, so every second reconnection was a full
 * handshake. TLS 1.2 renews only when the key is not the current one.
 */
static int ticket_key_cb(SSL *ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                         EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    struct tls_server *t = server_of(ssl);
    int rc;
    if (t == NULL)
        return -1;
    if (t->group) {
        rc = group_ticket_cb(t, key_name, iv, cctx, hctx, enc);
    } else if (enc) {
        memcpy(key_name, t->key.name, 16);
        return ticket_key_use(t, &t->key, iv, cctx, hctx, 1) < 0 ? -1 : 1;
    } else if (memcmp(key_name, t->key.name, 16) != 0) {
        return 0;
    } else {
        rc = ticket_key_use(t, &t->key, iv, cctx, hctx, 0) < 0 ? -1 : 1;
    }
    if (!enc && rc == 1 && SSL_version(ssl) == TLS1_3_VERSION)
        rc = 2;
    return rc;
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
    pthread_mutex_init(&t->gmu, NULL);
    t->session_timeout = conf->session_timeout > 0 ? conf->session_timeout : 3600;
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
            pthread_mutex_destroy(&t->gmu);
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
    mem_wipe(t->gkeys, sizeof(t->gkeys));
    sess_keyring_destroy(t->group);
    pthread_mutex_destroy(&t->gmu);
    sess_store_unref(t->store);
    free(t);
}

int tls_server_set_group_tickets(struct tls_server *t, struct sess_keyring *keys, int64_t rotation_s)
{
    if (t->cipher == NULL)
        t->cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    if (t->cipher == NULL || rotation_s <= 0) {
        sess_keyring_destroy(keys);
        return -1;
    }
    t->group = keys;
    t->rotation_s = rotation_s;
    /* A ticket lives as long as its session: keys of the periods it may
     * have been issued in still decrypt. */
    t->accept_periods = (t->session_timeout + rotation_s - 1) / rotation_s;
    for (size_t i = 0; i < t->ncerts; i++)
        SSL_CTX_set_tlsext_ticket_key_evp_cb(t->certs[i].ctx, ticket_key_cb);
    return 0;
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

void tls_server_handshakes(const struct tls_server *t, int64_t *full, int64_t *resumed)
{
    *full = t->hs_full ? metric_value(t->hs_full) : 0;
    *resumed = t->hs_resumed ? metric_value(t->hs_resumed) : 0;
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
