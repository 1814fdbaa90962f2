/*
 * evict -- LRU and S3-FIFO eviction over intrusive nodes.
 *
 * The store embeds a struct evict_node in every cached object, sets its key
 * hash and size, and hands it to evict_insert. Hits go to evict_touch. After
 * an insert the store calls evict_victim until it returns NULL; every node it
 * returns has already left the queues, and the store frees the object.
 * evict_remove takes a node out for purges and replacements. The policy
 * never allocates or frees a node; the only memory it owns is the S3-FIFO
 * ghost.
 *
 * LRU keeps one list in e->main, most recent at the head. A hit moves the
 * node to the head, and the victim is the tail.
 *
 * S3-FIFO follows Yang et al., "FIFO queues are all you need for cache
 * eviction", SOSP 2023, Algorithm 1. It uses three queues:
 *   S  small FIFO, about 10% of the byte budget. New objects go here. It
 *      filters out one-hit wonders, the objects that are never asked for
 *      again and that make up a large share of a CDN's distinct keys.
 *   M  main FIFO, the rest of the budget. Objects that proved themselves
 *      in S, or came back after they were evicted from S, go here. An object
 *      at the tail of M is reinserted at the head while its counter is above
 *      zero, and the counter drops by one each time.
 *   G  ghost, the key hashes of objects recently evicted from S, with no
 *      data. A key inserted while it is in G goes straight to M.
 * A hit only bumps a 2-bit counter (freq = min(freq + 1, 3)) and never
 * relinks the node. That is why S3-FIFO was chosen: a hit writes one byte in
 * the object and touches no list. Under LRU, each hit is a write to a shared
 * list head.
 *
 * Objects larger than the whole budget are queued at the tail, not the head,
 * so that the next evict_victim returns them at once and does not flush the
 * cache to make room for something that cannot fit anyway.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cache/evict.h"
#include "lib/util.h"

/* Values of evict_node.queue. */
enum {
    EVICT_Q_NONE = 0,
    EVICT_Q_SMALL = 1,
    EVICT_Q_MAIN = 2,
};

/* The counter has two bits, as in the paper: 0..3. */
#define EVICT_FREQ_MAX 3

/*
 * Smallest counter value that promotes an object from S to M. The paper's
 * pseudocode promotes on freq > 1, i.e. at least two hits while the object
 * sits in S. Some later implementations promote on any hit (freq > 0), and
 * so do we. The rule S needs is "reused while still in S": one hit inside
 * that short window already shows reuse. Under the stricter rule, an object
 * reused exactly once is dropped to the ghost and must miss once more before
 * it reaches M. A one-hit wonder gets no hit in S, so either rule keeps it
 * out of M. The stricter rule would also filter correlated pairs, such as a
 * retry or a second range request right after the first. That is its real
 * advantage, and a trace with such pairs could change the choice. On the
 * synthetic traces of docs/eviction.md the two rules are within 0.2
 * percentage points of hit ratio everywhere, with freq > 0 slightly ahead at
 * 5-10% cache sizes. To measure the paper's rule, build bench/eviction_sim.c
 * with -DEVICT_S3_PROMOTE_MIN=2.
 */
#ifndef EVICT_S3_PROMOTE_MIN
#define EVICT_S3_PROMOTE_MIN 1
#endif

/*
 * Ghost size, in entries. The paper gives G as many entries as M holds
 * objects, so the target follows e->main.count. The ring grows by doubling
 * toward that target and never shrinks. When M shrinks, the oldest entries
 * are dropped. The floor keeps a nearly empty M from disabling the ghost. The
 * cap bounds the memory to 16 bytes per entry (8 in the ring, 2 x 4 in the
 * index), 64 MiB in all. The cap must stay below 2^32 - 1 because the index
 * stores ring positions plus one in 32 bits.
 */
#define EVICT_GHOST_MIN 64u
#define EVICT_GHOST_MAX (1u << 22)

/* Returned by ghost_find when the hash is absent. */
#define EVICT_GHOST_NONE SIZE_MAX

/* ---- intrusive circular lists ------------------------------------------ */

static void queue_init(struct evict_queue *q)
{
    q->head.prev = &q->head;
    q->head.next = &q->head;
    q->bytes = 0;
    q->count = 0;
}

static struct evict_queue *queue_of(struct evict *e, uint8_t id)
{
    return id == EVICT_Q_SMALL ? &e->small : &e->main;
}

/* The head is head.next (newest). The tail is head.prev (oldest, next to go). */
static void queue_push_head(struct evict_queue *q, struct evict_node *n)
{
    n->prev = &q->head;
    n->next = q->head.next;
    q->head.next->prev = n;
    q->head.next = n;
    q->bytes += n->size;
    q->count++;
}

static void queue_push_tail(struct evict_queue *q, struct evict_node *n)
{
    n->next = &q->head;
    n->prev = q->head.prev;
    q->head.prev->next = n;
    q->head.prev = n;
    q->bytes += n->size;
    q->count++;
}

static void queue_unlink(struct evict_queue *q, struct evict_node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = NULL;
    n->next = NULL;
    q->bytes -= n->size;
    q->count--;
}

static struct evict_node *queue_tail(struct evict_queue *q)
{
    return q->head.prev == &q->head ? NULL : q->head.prev;
}

/*
 * Moves a queued node to the head of queue `to`. The node stays charged to
 * e->used, so only the per-queue totals change.
 */
static void node_move_head(struct evict *e, struct evict_node *n, uint8_t to)
{
    queue_unlink(queue_of(e, n->queue), n);
    queue_push_head(queue_of(e, to), n);
    n->queue = to;
}

/* Takes a queued node out of the policy entirely and uncharges its bytes. */
static void node_detach(struct evict *e, struct evict_node *n)
{
    queue_unlink(queue_of(e, n->queue), n);
    e->used -= n->size;
    n->queue = EVICT_Q_NONE;
    n->freq = 0;
}

/* ---- ghost: FIFO ring of key hashes plus a linear-probing index -------- */

/*
 * How the ghost works. A key hash is added at the back of the ring, and the
 * oldest entry, at ghost_head, is the first to be dropped. Lookups go
 * through ghost_index, an open-addressing table twice the ring's size (load
 * at most 1/2, so probe runs stay short and an empty slot always ends
 * them). Each index slot holds a ring position plus one. A ghost hit deletes
 * the index slot but leaves the ring entry in place. The entry is then
 * stale, and we detect that when it reaches the front: the hash is either
 * no longer indexed, or its index entry points at a newer ring position.
 * This avoids removing entries from the middle of the ring. Deletion shifts
 * later probe-run entries backwards (no tombstones), so the table never
 * fills up with deleted markers.
 */

static size_t ghost_mask(const struct evict *e)
{
    return 2 * e->ghost_cap - 1;
}

/*
 * Home slot of a hash. The key hashes come from the store, and we do not
 * rely on their low bits being well mixed. Multiplying by 2^64 / phi and
 * keeping the top bits (Fibonacci hashing) spreads them well enough for
 * linear probing.
 */
static size_t ghost_home(const struct evict *e, uint64_t h)
{
    unsigned bits = (unsigned)__builtin_ctzll((unsigned long long)(2 * e->ghost_cap));

    return (size_t)((h * UINT64_C(0x9e3779b97f4a7c15)) >> (64 - bits));
}

/* Index slot holding h, or EVICT_GHOST_NONE. */
static size_t ghost_find(const struct evict *e, uint64_t h)
{
    size_t mask = ghost_mask(e);

    for (size_t s = ghost_home(e, h);; s = (s + 1) & mask) {
        uint32_t v = e->ghost_index[s];

        if (v == 0)
            return EVICT_GHOST_NONE;
        if (e->ghost_ring[v - 1] == h)
            return s;
    }
}

/* Indexes ring position pos, whose hash must not be indexed yet. */
static void ghost_index_add(struct evict *e, size_t pos)
{
    size_t mask = ghost_mask(e);
    size_t s = ghost_home(e, e->ghost_ring[pos]);

    while (e->ghost_index[s] != 0)
        s = (s + 1) & mask;
    e->ghost_index[s] = (uint32_t)(pos + 1);
}

/*
 * Empties index slot s. Each later entry in the same probe run moves back
 * into the hole, unless its home slot lies cyclically in (hole, entry]:
 * such an entry would then sit before its home, and lookups would miss it.
 */
static void ghost_index_del(struct evict *e, size_t s)
{
    size_t mask = ghost_mask(e);
    size_t hole = s;
    size_t j = s;

    for (;;) {
        j = (j + 1) & mask;
        uint32_t v = e->ghost_index[j];
        if (v == 0)
            break;
        size_t home = ghost_home(e, e->ghost_ring[v - 1]);
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (stays)
            continue;
        e->ghost_index[hole] = v;
        hole = j;
    }
    e->ghost_index[hole] = 0;
}

/* Drops the oldest ring entry, and its index slot if it is still live. */
static void ghost_pop(struct evict *e)
{
    size_t pos = e->ghost_head;
    size_t s = ghost_find(e, e->ghost_ring[pos]);

    if (s != EVICT_GHOST_NONE && e->ghost_index[s] - 1 == pos)
        ghost_index_del(e, s);
    e->ghost_head = (pos + 1) & (e->ghost_cap - 1);
    e->ghost_len--;
}

/*
 * Doubles the ring and index. Copies the live entries in FIFO order and
 * leaves the stale ones behind, because index positions change anyway.
 */
static void ghost_grow(struct evict *e)
{
    size_t ncap = 2 * e->ghost_cap;
    uint64_t *nring = xmalloc(ncap * sizeof *nring);
    size_t live = 0;

    for (size_t i = 0; i < e->ghost_len; i++) {
        size_t pos = (e->ghost_head + i) & (e->ghost_cap - 1);
        size_t s = ghost_find(e, e->ghost_ring[pos]);

        if (s != EVICT_GHOST_NONE && e->ghost_index[s] - 1 == pos)
            nring[live++] = e->ghost_ring[pos];
    }
    free(e->ghost_ring);
    free(e->ghost_index);
    e->ghost_ring = nring;
    e->ghost_index = xcalloc(2 * ncap, sizeof *e->ghost_index);
    e->ghost_cap = ncap;
    e->ghost_head = 0;
    e->ghost_len = live;
    for (size_t pos = 0; pos < live; pos++)
        ghost_index_add(e, pos);
}

/* Remembers h as recently evicted from S. */
static void ghost_add(struct evict *e, uint64_t h)
{
    size_t target = (size_t)MIN(MAX(e->main.count, (uint64_t)EVICT_GHOST_MIN), (uint64_t)EVICT_GHOST_MAX);

    while (e->ghost_len >= target)
        ghost_pop(e);
    /*
     * The loop leaves len < target. A full ring therefore means that
     * cap < target <= EVICT_GHOST_MAX, and both caps are powers of two, so
     * doubling cannot overshoot the maximum.
     */
    if (e->ghost_len == e->ghost_cap)
        ghost_grow(e);

    /* A hash is indexed at most once. An older copy becomes stale. */
    size_t s = ghost_find(e, h);
    if (s != EVICT_GHOST_NONE)
        ghost_index_del(e, s);

    size_t pos = (e->ghost_head + e->ghost_len) & (e->ghost_cap - 1);
    e->ghost_ring[pos] = h;
    e->ghost_len++;
    ghost_index_add(e, pos);
}

/* Reports whether h is in the ghost. If so, consumes it: a ghost hit counts once. */
static bool ghost_take(struct evict *e, uint64_t h)
{
    size_t s = ghost_find(e, h);

    if (s == EVICT_GHOST_NONE)
        return false;
    ghost_index_del(e, s);
    return true;
}

/* ---- interface --------------------------------------------------------- */

/*
 * Maps a configuration word to a policy. name is "lru" or "s3fifo" (exact,
 * lower case). Returns 0 and sets *kind, or -1 and leaves *kind alone for any
 * other word or a NULL name.
 */
int evict_kind_parse(const char *name, enum evict_kind *kind)
{
    if (name == NULL)
        return -1;
    if (strcmp(name, "lru") == 0) {
        *kind = EVICT_LRU;
        return 0;
    }
    if (strcmp(name, "s3fifo") == 0) {
        *kind = EVICT_S3FIFO;
        return 0;
    }
    return -1;
}

/*
 * Sets up e, empty, with a budget in bytes. An unknown kind falls back to
 * LRU. For S3-FIFO the first ghost table is allocated here; running out of
 * memory is fatal (xmalloc). The queue heads are sentinels that point into
 * e, so e must not be moved or copied after this call. The caller may
 * change e->budget later. The small queue's share is recomputed from it on
 * every eviction.
 */
void evict_init(struct evict *e, enum evict_kind kind, uint64_t budget)
{
    memset(e, 0, sizeof *e);
    e->kind = kind == EVICT_S3FIFO ? EVICT_S3FIFO : EVICT_LRU;
    e->budget = budget;
    queue_init(&e->small);
    queue_init(&e->main);
    if (e->kind == EVICT_S3FIFO) {
        e->ghost_cap = EVICT_GHOST_MIN;
        e->ghost_ring = xmalloc(e->ghost_cap * sizeof *e->ghost_ring);
        e->ghost_index = xcalloc(2 * e->ghost_cap, sizeof *e->ghost_index);
    }
}

/*
 * Frees the ghost. Nodes still queued are not touched; they belong to the
 * store, which frees them its own way. e must be initialised again before
 * it is reused.
 */
void evict_fini(struct evict *e)
{
    free(e->ghost_ring);
    free(e->ghost_index);
    e->ghost_ring = NULL;
    e->ghost_index = NULL;
    e->ghost_cap = e->ghost_len = e->ghost_head = 0;
    queue_init(&e->small);
    queue_init(&e->main);
    e->used = 0;
}

/*
 * Queues n, which the caller owns and must keep alive until it comes back
 * from evict_victim or is passed to evict_remove. n->key_hash and n->size
 * must be set. Its links, freq and queue are overwritten, so a node fresh
 * from an allocator that does not zero memory is fine. For the same reason,
 * n must not be queued already: the queue field of a fresh node may hold
 * garbage, so this function cannot tell a second insert from a first one.
 * Charges n->size to e->used and never evicts anything itself: the caller
 * then drains evict_victim.
 */
void evict_insert(struct evict *e, struct evict_node *n)
{
    n->freq = 0;
    e->used += n->size;

    /* Put it where the next evict_victim will find it first; see the top. */
    bool oversize = n->size > e->budget;

    if (e->kind == EVICT_LRU) {
        n->queue = EVICT_Q_MAIN;
        if (oversize)
            queue_push_tail(&e->main, n);
        else
            queue_push_head(&e->main, n);
        return;
    }
    if (oversize) {
        n->queue = EVICT_Q_SMALL;
        queue_push_tail(&e->small, n);
        return;
    }
    if (ghost_take(e, n->key_hash)) {
        /* It was evicted from S recently and came back: it is not a one-hit wonder. */
        n->queue = EVICT_Q_MAIN;
        queue_push_head(&e->main, n);
    } else {
        n->queue = EVICT_Q_SMALL;
        queue_push_head(&e->small, n);
    }
}

/*
 * Records a hit on n, in O(1). A node that is not queued is ignored. Under
 * S3-FIFO only n->freq changes and no list is touched. Under LRU, n moves to
 * the head, except an oversize node, which stays at the tail so it remains
 * the next victim.
 */
void evict_touch(struct evict *e, struct evict_node *n)
{
    if (n->queue == EVICT_Q_NONE)
        return;
    if (e->kind == EVICT_LRU) {
        if (n->size <= e->budget)
            node_move_head(e, n, EVICT_Q_MAIN);
        return;
    }
    if (n->freq < EVICT_FREQ_MAX)
        n->freq++;
}

/*
 * Takes n out of whichever queue holds it and uncharges its size. Ownership
 * stays with the caller as before. Unlike an eviction, this records no
 * ghost entry: a purged or replaced object says nothing about how popular
 * its key is. A node that is not queued is ignored.
 */
void evict_remove(struct evict *e, struct evict_node *n)
{
    if (n->queue == EVICT_Q_NONE)
        return;
    node_detach(e, n);
}

/*
 * While e->used > e->budget, returns the next victim, already unlinked and
 * uncharged, for the caller to free. Returns NULL once the cache is within
 * budget. Under S3-FIFO the choice may first promote nodes from S to M, or
 * rotate M, which is amortised O(1): each rotation uses up a hit or an
 * insert.
 */
struct evict_node *evict_victim(struct evict *e)
{
    struct evict_node *t;

    if (e->used <= e->budget)
        return NULL;

    if (e->kind == EVICT_LRU) {
        t = queue_tail(&e->main);
        if (t != NULL)
            node_detach(e, t);
        return t;
    }

    /*
     * The paper evicts from S while S holds at least its 10% share (and
     * from S anyway when M is empty, since there is nothing else). Once it
     * has chosen S, it keeps scanning S until one object actually leaves,
     * promoting the ones that earned it on the way. If every object in S
     * earned promotion, S is empty and we fall through to M.
     */
    if (e->small.count > 0 && (e->small.bytes >= e->budget / 10 || e->main.count == 0)) {
        while ((t = queue_tail(&e->small)) != NULL) {
            if (t->freq >= EVICT_S3_PROMOTE_MIN && t->size <= e->budget) {
                node_move_head(e, t, EVICT_Q_MAIN);
                t->freq = 0;
                continue;
            }
            node_detach(e, t);
            if (t->size <= e->budget)
                ghost_add(e, t->key_hash);
            return t;
        }
    }

    /* M is a CLOCK written as a FIFO: a used object goes round again, one credit fewer. */
    while ((t = queue_tail(&e->main)) != NULL) {
        if (t->freq > 0) {
            t->freq--;
            node_move_head(e, t, EVICT_Q_MAIN);
            continue;
        }
        node_detach(e, t);
        return t;
    }
    return NULL;
}
