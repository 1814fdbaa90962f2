/*
 * sticky -- see sticky.h. A chained hash table (power-of-two buckets,
 * about one entry per bucket at the limit) plus a doubly linked list in
 * refresh order: the head is the newest entry, the tail the oldest, so
 * both expiry and eviction take from the tail.
 */
#include "switch/sticky.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "switch/rendezvous.h"

struct entry {
    struct entry *hnext;          /* bucket chain */
    struct entry *newer, *older;  /* refresh order */
    int64_t expires_ms;
    uint64_t id;
    uint8_t len;
    uint8_t addr[SW_STICKY_KEY_MAX];
};

struct sw_sticky {
    pthread_mutex_t lock;
    struct entry **buckets;       /* owned */
    size_t nbuckets;              /* power of two */
    size_t count, max;
    int64_t timeout_ms;
    uint64_t expired;
    struct entry *newest, *oldest;
    struct sw_hash_key key;
};

static size_t bucket_of(const struct sw_sticky *st, const void *addr, size_t len)
{
    return (size_t)sw_siphash(&st->key, addr, len) & (st->nbuckets - 1);
}

struct sw_sticky *sw_sticky_create(size_t max_entries, int64_t timeout_ms)
{
    struct sw_sticky *st = xcalloc(1, sizeof(*st));
    pthread_mutex_init(&st->lock, NULL);
    /* Buckets for the largest table we would accept (1M entries); a reload
     * may raise max_entries without rehashing. */
    st->nbuckets = 1024;
    while (st->nbuckets < max_entries && st->nbuckets < (1u << 20))
        st->nbuckets <<= 1;
    st->buckets = xcalloc(st->nbuckets, sizeof(*st->buckets));
    st->max = max_entries ? max_entries : 1;
    st->timeout_ms = timeout_ms;
    if (RAND_bytes((unsigned char *)&st->key, sizeof(st->key)) != 1) {
        /* Without randomness the table still works; only collision
         * resistance against chosen addresses is weaker. */
        st->key.k0 = (uint64_t)time_mono_ns();
        st->key.k1 = (uint64_t)(uintptr_t)st;
    }
    return st;
}

static void unlink_entry(struct sw_sticky *st, struct entry *e)
{
    struct entry **pp = &st->buckets[bucket_of(st, e->addr, e->len)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    if (e->newer)
        e->newer->older = e->older;
    else
        st->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        st->oldest = e->newer;
    st->count--;
    free(e);
}

void sw_sticky_destroy(struct sw_sticky *st)
{
    if (st == NULL)
        return;
    while (st->oldest)
        unlink_entry(st, st->oldest);
    free(st->buckets);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

void sw_sticky_configure(struct sw_sticky *st, size_t max_entries, int64_t timeout_ms)
{
    pthread_mutex_lock(&st->lock);
    st->max = max_entries ? max_entries : 1;
    st->timeout_ms = timeout_ms;
    while (st->count > st->max) {
        unlink_entry(st, st->oldest);
        st->expired++;
    }
    pthread_mutex_unlock(&st->lock);
}

static struct entry *find(struct sw_sticky *st, const void *addr, size_t len)
{
    for (struct entry *e = st->buckets[bucket_of(st, addr, len)]; e; e = e->hnext)
        if (e->len == len && memcmp(e->addr, addr, len) == 0)
            return e;
    return NULL;
}

uint64_t sw_sticky_get(struct sw_sticky *st, const void *addr, size_t len, int64_t now_ms)
{
    uint64_t id = 0;
    if (len == 0 || len > SW_STICKY_KEY_MAX)
        return 0;
    pthread_mutex_lock(&st->lock);
    struct entry *e = find(st, addr, len);
    if (e && e->expires_ms <= now_ms) {
        unlink_entry(st, e);
        st->expired++;
    } else if (e) {
        id = e->id;
    }
    pthread_mutex_unlock(&st->lock);
    return id;
}

void sw_sticky_put(struct sw_sticky *st, const void *addr, size_t len, uint64_t id, int64_t now_ms)
{
    if (len == 0 || len > SW_STICKY_KEY_MAX || id == 0)
        return;
    pthread_mutex_lock(&st->lock);
    struct entry *e = find(st, addr, len);
    if (e == NULL) {
        if (st->count >= st->max) {
            unlink_entry(st, st->oldest);
            st->expired++;
        }
        e = xcalloc(1, sizeof(*e));
        memcpy(e->addr, addr, len);
        e->len = (uint8_t)len;
        size_t bi = bucket_of(st, addr, len);
        e->hnext = st->buckets[bi];
        st->buckets[bi] = e;
        st->count++;
    } else {
        /* Take it out of the refresh order; it goes back at the head. */
        if (e->newer)
            e->newer->older = e->older;
        else
            st->newest = e->older;
        if (e->older)
            e->older->newer = e->newer;
        else
            st->oldest = e->newer;
    }
    e->id = id;
    e->expires_ms = now_ms + st->timeout_ms;
    e->newer = NULL;
    e->older = st->newest;
    if (st->newest)
        st->newest->newer = e;
    st->newest = e;
    if (st->oldest == NULL)
        st->oldest = e;
    pthread_mutex_unlock(&st->lock);
}

void sw_sticky_remove(struct sw_sticky *st, const void *addr, size_t len)
{
    if (len == 0 || len > SW_STICKY_KEY_MAX)
        return;
    pthread_mutex_lock(&st->lock);
    struct entry *e = find(st, addr, len);
    if (e)
        unlink_entry(st, e);
    pthread_mutex_unlock(&st->lock);
}

size_t sw_sticky_expire(struct sw_sticky *st, int64_t now_ms)
{
    size_t n = 0;
    pthread_mutex_lock(&st->lock);
    /* Refresh order is expiry order while the timeout stays the same. After
     * a reload that shortened it, newer entries may expire before the
     * oldest one; they are then dropped a little late here, but never
     * served late, because sw_sticky_get checks each entry's own time. */
    while (st->oldest && st->oldest->expires_ms <= now_ms) {
        unlink_entry(st, st->oldest);
        n++;
    }
    st->expired += n;
    pthread_mutex_unlock(&st->lock);
    return n;
}

size_t sw_sticky_count(struct sw_sticky *st)
{
    pthread_mutex_lock(&st->lock);
    size_t n = st->count;
    pthread_mutex_unlock(&st->lock);
    return n;
}

uint64_t sw_sticky_expired(struct sw_sticky *st)
{
    pthread_mutex_lock(&st->lock);
    uint64_t n = st->expired;
    pthread_mutex_unlock(&st->lock);
    return n;
}

void sw_sticky_walk(struct sw_sticky *st, int64_t now_ms, size_t max,
                    void (*fn)(void *arg, const uint8_t *addr, size_t len, uint64_t id,
                               int64_t left_ms),
                    void *arg)
{
    pthread_mutex_lock(&st->lock);
    size_t i = 0;
    for (struct entry *e = st->newest; e && i < max; e = e->older, i++)
        if (e->expires_ms > now_ms)
            fn(arg, e->addr, e->len, e->id, e->expires_ms - now_ms);
    pthread_mutex_unlock(&st->lock);
}
