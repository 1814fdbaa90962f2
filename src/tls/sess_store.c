/*
 * sess_store -- see sess_store.h.
 */
#include "tls/sess_store.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "tls/sess_wire.h"

#define NSHARDS 16

struct entry {
    struct entry *hnext;          /* bucket chain */
    struct entry *older, *newer;  /* the shard's insertion order */
    uint64_t hash;
    int64_t expires;              /* unix seconds */
    size_t idlen, derlen;
    uint8_t id[SESS_MAX_ID];
    uint8_t der[];                /* holds the master secret: wiped on free */
};

struct shard {
    pthread_mutex_t mu;
    struct entry **buckets;       /* nbuckets, a power of two */
    size_t nbuckets;
    struct entry *oldest, *newest;
    size_t n, max;
};

struct sess_store {
    struct shard shards[NSHARDS];
    uint64_t seed;                /* keys the hash: IDs a client offers are its choice */
    _Atomic int refs;
    sess_store_hook hook;
    void *hook_arg;
    _Atomic uint64_t stored, received, hits, misses, removed, evicted, expired;
};

static int ex_index = -1;         /* SSL_CTX ex data: the store */
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;

static void ex_init(void)
{
    ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* FNV-1a over seed and ID, then a final mix so the low bits pick buckets well. */
static uint64_t id_hash(const struct sess_store *s, const uint8_t *id, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull ^ s->seed;
    for (size_t i = 0; i < len; i++) {
        h ^= id[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static struct shard *shard_of(struct sess_store *s, uint64_t h)
{
    return &s->shards[h >> 60 & (NSHARDS - 1)];
}

struct sess_store *sess_store_create(size_t max_entries)
{
    struct sess_store *s = xcalloc(1, sizeof(*s));
    atomic_init(&s->refs, 1);
    if (max_entries < NSHARDS)
        max_entries = NSHARDS;
    if (RAND_bytes((unsigned char *)&s->seed, sizeof(s->seed)) != 1)
        s->seed = (uint64_t)time_mono_ns();
    size_t per = (max_entries + NSHARDS - 1) / NSHARDS;
    size_t nb = 16;
    while (nb < per)
        nb <<= 1;
    for (int i = 0; i < NSHARDS; i++) {
        struct shard *sh = &s->shards[i];
        pthread_mutex_init(&sh->mu, NULL);
        sh->nbuckets = nb;
        sh->buckets = xcalloc(nb, sizeof(*sh->buckets));
        sh->max = per;
    }
    return s;
}

static void entry_free(struct entry *e)
{
    mem_wipe(e->der, e->derlen);
    free(e);
}

struct sess_store *sess_store_ref(struct sess_store *s)
{
    atomic_fetch_add(&s->refs, 1);
    return s;
}

void sess_store_unref(struct sess_store *s)
{
    if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    for (int i = 0; i < NSHARDS; i++) {
        struct shard *sh = &s->shards[i];
        for (struct entry *e = sh->oldest, *next; e; e = next) {
            next = e->newer;
            entry_free(e);
        }
        free(sh->buckets);
        pthread_mutex_destroy(&sh->mu);
    }
    free(s);
}

/* Shard locked. Unlinks e from its bucket and the order list (does not free). */
static void unlink_entry(struct shard *sh, struct entry *e)
{
    struct entry **pp = &sh->buckets[e->hash & (sh->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    if (e->older)
        e->older->newer = e->newer;
    else
        sh->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        sh->newest = e->older;
    sh->n--;
}

/* Shard locked. The entry for id, or NULL. */
static struct entry *find(struct shard *sh, uint64_t h, const uint8_t *id, size_t len)
{
    for (struct entry *e = sh->buckets[h & (sh->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && e->idlen == len && memcmp(e->id, id, len) == 0)
            return e;
    return NULL;
}

static int put(struct sess_store *s, const uint8_t *id, size_t idlen, const uint8_t *der, size_t derlen,
               int64_t expires)
{
    if (idlen == 0 || idlen > SESS_MAX_ID || derlen == 0 || derlen > SESS_MAX_DER)
        return -1;
    if (expires <= time_wall())
        return -1;
    struct entry *e = xmalloc(sizeof(*e) + derlen);
    e->hash = id_hash(s, id, idlen);
    e->expires = expires;
    e->idlen = idlen;
    e->derlen = derlen;
    memcpy(e->id, id, idlen);
    memcpy(e->der, der, derlen);
    e->older = e->newer = NULL;

    struct shard *sh = shard_of(s, e->hash);
    struct entry *gone = NULL, *old;
    pthread_mutex_lock(&sh->mu);
    old = find(sh, e->hash, id, idlen);
    if (old)
        unlink_entry(sh, old);
    else if (sh->n >= sh->max) {
        gone = sh->oldest;
        unlink_entry(sh, gone);
    }
    struct entry **b = &sh->buckets[e->hash & (sh->nbuckets - 1)];
    e->hnext = *b;
    *b = e;
    e->older = sh->newest;
    if (sh->newest)
        sh->newest->newer = e;
    else
        sh->oldest = e;
    sh->newest = e;
    sh->n++;
    pthread_mutex_unlock(&sh->mu);
    if (old)
        entry_free(old);
    if (gone) {
        atomic_fetch_add(gone->expires <= time_wall() ? &s->expired : &s->evicted, 1);
        entry_free(gone);
    }
    return 0;
}

int sess_store_put_der(struct sess_store *s, const uint8_t *id, size_t idlen, const uint8_t *der,
                       size_t derlen, int64_t expires)
{
    if (put(s, id, idlen, der, derlen, expires) < 0)
        return -1;
    atomic_fetch_add(&s->received, 1);
    return 0;
}

/*
 * Copies the live session under id into der (SESS_MAX_DER bytes). Returns
 * its length, or 0 if there is none (an expired one is dropped on the way).
 */
static size_t get(struct sess_store *s, const uint8_t *id, size_t idlen, uint8_t *der)
{
    if (idlen == 0 || idlen > SESS_MAX_ID)
        return 0;
    uint64_t h = id_hash(s, id, idlen);
    struct shard *sh = shard_of(s, h);
    struct entry *dead = NULL;
    size_t n = 0;
    pthread_mutex_lock(&sh->mu);
    struct entry *e = find(sh, h, id, idlen);
    if (e && e->expires <= time_wall()) {
        unlink_entry(sh, e);
        dead = e;
    } else if (e) {
        memcpy(der, e->der, e->derlen);
        n = e->derlen;
    }
    pthread_mutex_unlock(&sh->mu);
    if (dead) {
        atomic_fetch_add(&s->expired, 1);
        entry_free(dead);
    }
    return n;
}

void sess_store_remove(struct sess_store *s, const uint8_t *id, size_t idlen)
{
    if (idlen == 0 || idlen > SESS_MAX_ID)
        return;
    uint64_t h = id_hash(s, id, idlen);
    struct shard *sh = shard_of(s, h);
    pthread_mutex_lock(&sh->mu);
    struct entry *e = find(sh, h, id, idlen);
    if (e)
        unlink_entry(sh, e);
    pthread_mutex_unlock(&sh->mu);
    if (e) {
        atomic_fetch_add(&s->removed, 1);
        entry_free(e);
    }
}

void sess_store_foreach(struct sess_store *s,
                        int (*fn)(void *arg, const uint8_t *id, size_t idlen, const uint8_t *der,
                                  size_t derlen, int64_t expires),
                        void *arg)
{
    int64_t now = time_wall();
    for (int i = 0; i < NSHARDS; i++) {
        struct shard *sh = &s->shards[i];
        int stop = 0;
        pthread_mutex_lock(&sh->mu);
        for (struct entry *e = sh->oldest; e && !stop; e = e->newer)
            if (e->expires > now)
                stop = fn(arg, e->id, e->idlen, e->der, e->derlen, e->expires);
        pthread_mutex_unlock(&sh->mu);
        if (stop)
            return;
    }
}

void sess_store_stats(struct sess_store *s, struct sess_store_stats *out)
{
    out->stored = atomic_load(&s->stored);
    out->received = atomic_load(&s->received);
    out->hits = atomic_load(&s->hits);
    out->misses = atomic_load(&s->misses);
    out->removed = atomic_load(&s->removed);
    out->evicted = atomic_load(&s->evicted);
    out->expired = atomic_load(&s->expired);
    out->entries = 0;
    for (int i = 0; i < NSHARDS; i++) {
        pthread_mutex_lock(&s->shards[i].mu);
        out->entries += s->shards[i].n;
        pthread_mutex_unlock(&s->shards[i].mu);
    }
}

void sess_store_apply(struct sess_store *s, int type, const uint8_t *plain, size_t plen,
                      _Atomic uint64_t *received, _Atomic uint64_t *deleted)
{
    if (type == SESS_T_DELETE) {
        const uint8_t *id;
        size_t idlen;
        if (sess_wire_get_delete(plain, plen, &id, &idlen) == 0) {
            sess_store_remove(s, id, idlen);
            atomic_fetch_add(deleted, 1);
        }
    } else if (type == SESS_T_SESSION) {
        struct sess_wire_iter it;
        struct sess_wire_entry e;
        if (sess_wire_iter_init(&it, plain, plen) == 0)
            while (sess_wire_next_session(&it, &e) == 1)
                if (sess_store_put_der(s, e.id, e.id_len, e.sess, e.sess_len, (int64_t)e.expiry) == 0)
                    atomic_fetch_add(received, 1);
    }
}

void sess_store_set_hook(struct sess_store *s, sess_store_hook hook, void *arg)
{
    s->hook = hook;
    s->hook_arg = arg;
}

/* OpenSSL's callbacks. */

static struct sess_store *store_of_ctx(SSL_CTX *ctx)
{
    return ex_index >= 0 && ctx ? SSL_CTX_get_ex_data(ctx, ex_index) : NULL;
}

static int64_t session_expires(const SSL_SESSION *sess)
{
    return (int64_t)SSL_SESSION_get_time(sess) + (int64_t)SSL_SESSION_get_timeout(sess);
}

static int new_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct sess_store *s = store_of_ctx(SSL_get_SSL_CTX(ssl));
    unsigned int idlen;
    /* A TLS 1.3 server calls this for stateless tickets too (with a dummy
     * ID that no client will ever offer): the client carries the session,
     * so storing or replicating it is waste. Stateful tickets
     * (SSL_OP_NO_TICKET) are the ones looked up by ID. TLS 1.2 ticket
     * sessions have an empty ID and are refused by put(). */
    if (SSL_SESSION_get_protocol_version(sess) == TLS1_3_VERSION &&
        (SSL_get_options(ssl) & SSL_OP_NO_TICKET) == 0)
        return 0;
    const unsigned char *id = SSL_SESSION_get_id(sess, &idlen);
    int len = i2d_SSL_SESSION(sess, NULL);
    if (s == NULL || len <= 0 || len > SESS_MAX_DER)
        return 0;
    uint8_t der[SESS_MAX_DER];
    unsigned char *p = der;
    if (i2d_SSL_SESSION(sess, &p) != len)
        return 0;
    int64_t expires = session_expires(sess);
    if (put(s, id, idlen, der, (size_t)len, expires) == 0) {
        atomic_fetch_add(&s->stored, 1);
        if (s->hook)
            s->hook(s->hook_arg, SESS_HOOK_NEW, id, idlen, der, (size_t)len, expires);
    }
    mem_wipe(der, (size_t)len);
    return 0; /* no reference kept: the store holds a copy */
}

static SSL_SESSION *get_cb(SSL *ssl, const unsigned char *id, int idlen, int *copy)
{
    struct sess_store *s = store_of_ctx(SSL_get_SSL_CTX(ssl));
    *copy = 0; /* the session returned is new: OpenSSL owns it */
    if (s == NULL || idlen <= 0)
        return NULL;
    uint8_t der[SESS_MAX_DER];
    size_t n = get(s, id, (size_t)idlen, der);
    if (n == 0) {
        atomic_fetch_add(&s->misses, 1);
        return NULL;
    }
    const unsigned char *p = der;
    SSL_SESSION *sess = d2i_SSL_SESSION(NULL, &p, (long)n);
    mem_wipe(der, n);
    if (sess == NULL) {
        atomic_fetch_add(&s->misses, 1);
        return NULL;
    }
    atomic_fetch_add(&s->hits, 1);
    return sess;
}

static void remove_cb(SSL_CTX *ctx, SSL_SESSION *sess)
{
    struct sess_store *s = store_of_ctx(ctx);
    unsigned int idlen;
    const unsigned char *id = SSL_SESSION_get_id(sess, &idlen);
    if (s == NULL || idlen == 0)
        return;
    sess_store_remove(s, id, idlen);
    if (s->hook)
        s->hook(s->hook_arg, SESS_HOOK_REMOVE, id, idlen, NULL, 0, 0);
}

void sess_store_attach(struct sess_store *s, SSL_CTX *ctx)
{
    pthread_once(&ex_once, ex_init);
    SSL_CTX_set_ex_data(ctx, ex_index, s);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(ctx, new_cb);
    SSL_CTX_sess_set_get_cb(ctx, get_cb);
    SSL_CTX_sess_set_remove_cb(ctx, remove_cb);
}

void sess_store_detach(SSL_CTX *ctx)
{
    if (ex_index >= 0)
        SSL_CTX_set_ex_data(ctx, ex_index, NULL);
}
