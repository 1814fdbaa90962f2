/*
 * store -- the cache's memory tier: an index of stored responses shared by
 * all worker threads, with a byte budget enforced by the eviction policy
 * (evict.h), and the table of fetches in flight used to collapse
 * concurrent misses into one origin request.
 *
 * Objects are immutable once inserted and reference-counted: a response
 * being written to a client holds a reference, so eviction or purge never
 * frees bytes in flight. Updating an object (a 304 that refreshes its
 * header fields) inserts a new object that shares the old body.
 *
 * Locking: one mutex guards the index, the policy and the pending table;
 * it is held only for O(1) work per call except purge/expire by prefix,
 * which scan (admin operations). Reference counts are atomic.
 */
#ifndef FERRY_CACHE_STORE_H
#define FERRY_CACHE_STORE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/evict.h"
#include "cache/policy.h"
#include "lib/loop.h"

/* A body shared by the objects that carry it. */
struct cbody {
    _Atomic int refs;
    size_t len;
    char data[];
};

struct cobj {
    _Atomic int refs;
    uint64_t hash;              /* of key */
    char *key;                  /* owned: primary key "host target" */
    size_t key_len;
    char *vary;                 /* owned: the response's Vary names, comma-joined, or NULL */
    char *vkey;                 /* owned: secondary key built from the request, or NULL */
    size_t vkey_len;
    struct cache_meta meta;
    int64_t lifetime;           /* seconds of freshness from meta */
    _Atomic int64_t expires_at; /* admin override: fresh until then; -1 none */
    char *etag;                 /* owned, or NULL */
    size_t etag_len;
    char *fields;               /* owned: "Name: value\r\n" lines to send */
    int has_accept_ranges;      /* fields carry the origin's Accept-Ranges */
    size_t fields_len;
    struct cbody *body;         /* a reference */
    struct evict_node ev;       /* owned by the store while linked */
    struct cobj *hnext;         /* bucket chain, store lock */
    int linked;                 /* in the index, store lock */
};

struct store;

struct store_stats {
    uint64_t objects;
    uint64_t bytes;
    uint64_t inserts;
    uint64_t evictions;
};

/* Creates a store with a byte budget. */
struct store *store_create(uint64_t budget, enum evict_kind kind);
void store_destroy(struct store *s);

/* Allocates a body of len bytes with one reference (data uninitialised). */
struct cbody *cbody_create(size_t len);
void cbody_unref(struct cbody *b);
struct cbody *cbody_ref(struct cbody *b);

/* Allocates an object with one reference; the caller fills it in. */
struct cobj *cobj_create(const char *key, size_t key_len);
struct cobj *cobj_ref(struct cobj *o);
void cobj_unref(struct cobj *o);
/* Suits hconn_send_ref's release callback. */
void cobj_release(void *o);
/* Bytes an object is charged for. */
uint64_t cobj_size(const struct cobj *o);

/*
 * Finds the variant of key that matches req (by its Vary). Returns a new
 * reference, or NULL. Counts as a hit for the eviction policy.
 */
struct cobj *store_lookup(struct store *s, const char *key, size_t key_len,
                          const struct http1_msg *req);
/*
 * Inserts o (the store takes a new reference), replacing any variant with
 * the same key and secondary key, then evicts while over budget.
 */
void store_insert(struct store *s, struct cobj *o);
/* Removes o if it is still linked. */
void store_remove(struct store *s, struct cobj *o);

/*
 * Removes every object whose key equals key (all variants), or starts with
 * key when prefix is set. Returns the number removed.
 */
uint64_t store_purge(struct store *s, const char *key, size_t key_len, int prefix);
/*
 * Sets a new expiry time (epoch seconds) on the same objects; an expiry in
 * the past makes them stale, so the next request revalidates. Returns the
 * number updated.
 */
uint64_t store_expire(struct store *s, const char *key, size_t key_len, int prefix,
                      int64_t expires_at);
void store_get_stats(struct store *s, struct store_stats *st);

/* Collapsing of concurrent misses. */
struct store_waiter {
    struct store_waiter *next;  /* store lock */
    struct loop *loop;          /* where wake runs */
    loop_call_cb wake;          /* called with arg on loop once the fetch ended */
    void *arg;
    int posted;                 /* store lock: wake is on its way */
    int stored;                 /* the fetch stored a response */
};

/*
 * If a fetch of key is in flight, queues w and returns 1 (w->wake will run
 * on w->loop). Otherwise records the caller as the fetcher and returns 0;
 * the caller must later call store_pending_done.
 */
int store_pending_join(struct store *s, const char *key, size_t key_len,
                       struct store_waiter *w);
/* Ends the fetch of key and wakes its waiters; stored tells them whether to look again. */
void store_pending_done(struct store *s, const char *key, size_t key_len, int stored);
/*
 * Takes w off the queue of key. Returns 1 if it was removed, 0 if its wake
 * was already posted (it will still run; the waiter must stay valid until then).
 */
int store_pending_leave(struct store *s, const char *key, size_t key_len,
                        struct store_waiter *w);

#endif
