/*
 * store -- see store.h. The index is a chained hash table that doubles
 * when its load passes 1; keys are hashed with a per-process random seed
 * mixed into FNV-1a so that clients cannot aim requests at one chain.
 */
#include "cache/store.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"

#define OBJ_OVERHEAD 256 /* bytes charged per object for struct and index */

struct pending {
    struct pending *next;
    uint64_t hash;
    char *key; /* owned */
    size_t key_len;
    struct store_waiter *waiters;
};

struct store {
    pthread_mutex_t lock;
    struct cobj **buckets;
    size_t nbuckets;
    uint64_t nobjs;
    uint64_t seed;
    struct evict ev;
    struct pending *pending;
    struct store_stats stats;
};

static uint64_t key_hash(const struct store *s, const char *key, size_t len)
{
    /* a final avalanche spreads the seed over all bits */
    return hash_mix64(hash_fnv1a(key, len) ^ s->seed);
}

struct cbody *cbody_create(size_t len)
{
    struct cbody *b = xmalloc(sizeof(*b) + len);
    atomic_init(&b->refs, 1);
    b->len = len;
    return b;
}

struct cbody *cbody_ref(struct cbody *b)
{
    atomic_fetch_add(&b->refs, 1);
    return b;
}

void cbody_unref(struct cbody *b)
{
    if (b && atomic_fetch_sub(&b->refs, 1) == 1)
        free(b);
}

struct cobj *cobj_create(const char *key, size_t key_len)
{
    struct cobj *o = xcalloc(1, sizeof(*o));
    atomic_init(&o->refs, 1);
    atomic_init(&o->expires_at, -1);
    o->key = xstrndup(key, key_len);
    o->key_len = key_len;
    return o;
}

struct cobj *cobj_ref(struct cobj *o)
{
    atomic_fetch_add(&o->refs, 1);
    return o;
}

void cobj_unref(struct cobj *o)
{
    if (o == NULL || atomic_fetch_sub(&o->refs, 1) != 1)
        return;
    free(o->key);
    free(o->vary);
    free(o->vkey);
    free(o->etag);
    free(o->fields);
    cbody_unref(o->body);
    free(o);
}

void cobj_release(void *o)
{
    cobj_unref(o);
}

uint64_t cobj_size(const struct cobj *o)
{
    return OBJ_OVERHEAD + o->key_len + o->vkey_len + o->fields_len + (o->body ? o->body->len : 0);
}

struct store *store_create(uint64_t budget, enum evict_kind kind)
{
    struct store *s = xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->nbuckets = 1024;
    s->buckets = xcalloc(s->nbuckets, sizeof(*s->buckets));
    if (RAND_bytes((unsigned char *)&s->seed, sizeof(s->seed)) != 1)
        s->seed = (uint64_t)time_mono_ns();
    evict_init(&s->ev, kind, budget);
    return s;
}

void store_destroy(struct store *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nbuckets; i++) {
        struct cobj *o = s->buckets[i];
        while (o) {
            struct cobj *next = o->hnext;
            o->linked = 0;
            cobj_unref(o);
            o = next;
        }
    }
    while (s->pending) {
        struct pending *p = s->pending;
        s->pending = p->next;
        free(p->key);
        free(p);
    }
    evict_fini(&s->ev);
    free(s->buckets);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static void grow(struct store *s)
{
    size_t n = s->nbuckets * 2;
    struct cobj **b = xcalloc(n, sizeof(*b));
    for (size_t i = 0; i < s->nbuckets; i++) {
        struct cobj *o = s->buckets[i];
        while (o) {
            struct cobj *next = o->hnext;
            size_t j = o->hash & (n - 1);
            o->hnext = b[j];
            b[j] = o;
            o = next;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
}

/* Unlinks o from the index and the policy; drops the index's reference. */
static void unlink_locked(struct store *s, struct cobj *o, int from_policy)
{
    struct cobj **pp = &s->buckets[o->hash & (s->nbuckets - 1)];
    while (*pp && *pp != o)
        pp = &(*pp)->hnext;
    if (*pp == NULL)
        return;
    *pp = o->hnext;
    o->hnext = NULL;
    o->linked = 0;
    if (from_policy)
        evict_remove(&s->ev, &o->ev);
    s->nobjs--;
    s->stats.bytes -= o->ev.size;
    cobj_unref(o);
}

static int same_key(const struct cobj *o, uint64_t h, const char *key, size_t len)
{
    return o->hash == h && o->key_len == len && memcmp(o->key, key, len) == 0;
}

struct cobj *store_lookup(struct store *s, const char *key, size_t key_len,
                          const struct http1_msg *req)
{
    uint64_t h = key_hash(s, key, key_len);
    struct cobj *found = NULL;
    struct buf vk;

    buf_init(&vk);
    pthread_mutex_lock(&s->lock);
    for (struct cobj *o = s->buckets[h & (s->nbuckets - 1)]; o; o = o->hnext) {
        if (!same_key(o, h, key, key_len))
            continue;
        if (!cache_vary_matches(o->vary, o->vkey, o->vkey_len, req, &vk))
            continue;
        found = cobj_ref(o);
        evict_touch(&s->ev, &o->ev);
        break;
    }
    pthread_mutex_unlock(&s->lock);
    buf_fini(&vk);
    return found;
}

void store_insert(struct store *s, struct cobj *o)
{
    o->hash = key_hash(s, o->key, o->key_len);
    o->ev.key_hash = o->hash ^ hash_fnv1a(o->vkey ? o->vkey : "", o->vkey_len);
    o->ev.size = cobj_size(o);
    pthread_mutex_lock(&s->lock);
    /* Replace the same variant. */
    struct cobj *cur = s->buckets[o->hash & (s->nbuckets - 1)];
    while (cur) {
        struct cobj *next = cur->hnext;
        if (same_key(cur, o->hash, o->key, o->key_len) && cur->vkey_len == o->vkey_len &&
            (o->vkey_len == 0 || memcmp(cur->vkey, o->vkey, o->vkey_len) == 0))
            unlink_locked(s, cur, 1);
        cur = next;
    }
    if (s->nobjs >= s->nbuckets)
        grow(s);
    size_t i = o->hash & (s->nbuckets - 1);
    o->hnext = s->buckets[i];
    s->buckets[i] = cobj_ref(o);
    o->linked = 1;
    s->nobjs++;
    s->stats.inserts++;
    s->stats.bytes += o->ev.size;
    evict_insert(&s->ev, &o->ev);
    struct evict_node *v;
    while ((v = evict_victim(&s->ev)) != NULL) {
        struct cobj *victim = container_of(v, struct cobj, ev);
        s->stats.evictions++;
        unlink_locked(s, victim, 0);
    }
    pthread_mutex_unlock(&s->lock);
}

void store_remove(struct store *s, struct cobj *o)
{
    pthread_mutex_lock(&s->lock);
    if (o->linked)
        unlink_locked(s, o, 1);
    pthread_mutex_unlock(&s->lock);
}

static int key_match(const struct cobj *o, const char *key, size_t len, int prefix)
{
    if (prefix)
        return o->key_len >= len && memcmp(o->key, key, len) == 0;
    return o->key_len == len && memcmp(o->key, key, len) == 0;
}

uint64_t store_purge(struct store *s, const char *key, size_t key_len, int prefix)
{
    uint64_t n = 0;
    pthread_mutex_lock(&s->lock);
    if (!prefix) {
        uint64_t h = key_hash(s, key, key_len);
        struct cobj *o = s->buckets[h & (s->nbuckets - 1)];
        while (o) {
            struct cobj *next = o->hnext;
            if (same_key(o, h, key, key_len)) {
                unlink_locked(s, o, 1);
                n++;
            }
            o = next;
        }
    } else {
        for (size_t i = 0; i < s->nbuckets; i++) {
            struct cobj *o = s->buckets[i];
            while (o) {
                struct cobj *next = o->hnext;
                if (key_match(o, key, key_len, 1)) {
                    unlink_locked(s, o, 1);
                    n++;
                }
                o = next;
            }
        }
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

uint64_t store_expire(struct store *s, const char *key, size_t key_len, int prefix,
                      int64_t expires_at)
{
    uint64_t n = 0;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->nbuckets; i++) {
        for (struct cobj *o = s->buckets[i]; o; o = o->hnext) {
            if (key_match(o, key, key_len, prefix)) {
                atomic_store(&o->expires_at, expires_at);
                n++;
            }
        }
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

void store_get_stats(struct store *s, struct store_stats *st)
{
    pthread_mutex_lock(&s->lock);
    *st = s->stats;
    st->objects = s->nobjs;
    pthread_mutex_unlock(&s->lock);
}

static struct pending **pending_find(struct store *s, uint64_t h, const char *key, size_t len)
{
    struct pending **pp = &s->pending;
    while (*pp && !((*pp)->hash == h && (*pp)->key_len == len && !memcmp((*pp)->key, key, len)))
        pp = &(*pp)->next;
    return pp;
}

int store_pending_join(struct store *s, const char *key, size_t key_len,
                       struct store_waiter *w)
{
    uint64_t h = key_hash(s, key, key_len);
    pthread_mutex_lock(&s->lock);
    struct pending **pp = pending_find(s, h, key, key_len);
    if (*pp) {
        w->posted = 0;
        w->stored = 0;
        w->next = (*pp)->waiters;
        (*pp)->waiters = w;
        pthread_mutex_unlock(&s->lock);
        return 1;
    }
    struct pending *p = xcalloc(1, sizeof(*p));
    p->hash = h;
    p->key = xstrndup(key, key_len);
    p->key_len = key_len;
    p->next = s->pending;
    s->pending = p;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

void store_pending_done(struct store *s, const char *key, size_t key_len, int stored)
{
    uint64_t h = key_hash(s, key, key_len);
    pthread_mutex_lock(&s->lock);
    struct pending **pp = pending_find(s, h, key, key_len);
    struct pending *p = *pp;
    if (p == NULL) {
        pthread_mutex_unlock(&s->lock);
        return;
    }
    *pp = p->next;
    for (struct store_waiter *w = p->waiters; w;) {
        /* Read next before posting: once posted, w belongs to its loop. */
        struct store_waiter *next = w->next;
        w->posted = 1;
        w->stored = stored;
        loop_post(w->loop, w->wake, w->arg);
        w = next;
    }
    pthread_mutex_unlock(&s->lock);
    free(p->key);
    free(p);
}

int store_pending_leave(struct store *s, const char *key, size_t key_len,
                        struct store_waiter *w)
{
    uint64_t h = key_hash(s, key, key_len);
    int removed = 0;
    pthread_mutex_lock(&s->lock);
    if (!w->posted) {
        struct pending *p = *pending_find(s, h, key, key_len);
        for (struct store_waiter **wp = p ? &p->waiters : NULL; wp && *wp; wp = &(*wp)->next) {
            if (*wp == w) {
                *wp = w->next;
                removed = 1;
                break;
            }
        }
    }
    pthread_mutex_unlock(&s->lock);
    return removed;
}
