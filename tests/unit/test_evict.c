/*
 * test_evict -- unit tests for src/cache/evict.c.
 *
 * The tests drive the interface the way the store does. Each test object
 * embeds a struct evict_node, and victims are mapped back to it with
 * container_of. The tests check byte accounting, when victims are handed
 * out, LRU order, S3-FIFO's filtering of one-hit wonders, the ghost, and
 * removal from every queue. They end with a randomised run of 100k
 * operations per policy that checks the structural invariants as it goes:
 * list links, per-queue totals, each node in at most one queue, and the
 * ghost index.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cache/evict.h"
#include "lib/util.h"

/* Mirrors the private queue ids in evict.c. The tests only compare against them. */
#define Q_NONE 0
#define Q_SMALL 1
#define Q_MAIN 2

struct tobj {
    struct evict_node node;
    bool cached; /* what the test believes; checked against the policy */
    int id;
};

static struct tobj *obj_of(struct evict_node *n)
{
    return n ? container_of(n, struct tobj, node) : NULL;
}

static void obj_init(struct tobj *o, int id, uint64_t key, uint64_t size)
{
    memset(o, 0, sizeof *o);
    o->id = id;
    o->node.key_hash = key;
    o->node.size = size;
}

/* Key hashes for small ids, spread out like real hashes. */
static uint64_t key_of(uint64_t id)
{
    uint64_t z = id + UINT64_C(0x9e3779b97f4a7c15);

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static void put(struct evict *e, struct tobj *o)
{
    evict_insert(e, &o->node);
    o->cached = true;
}

/* Drains evict_victim the way the store does; returns how many left. */
static int drain(struct evict *e)
{
    struct evict_node *v;
    int k = 0;

    while ((v = evict_victim(e)) != NULL) {
        struct tobj *o = obj_of(v);
        assert_true(o->cached);
        assert_int_equal(v->queue, Q_NONE);
        assert_null(v->prev);
        assert_null(v->next);
        o->cached = false;
        k++;
    }
    assert_true(e->used <= e->budget);
    return k;
}

static bool in_queue(const struct evict_queue *q, const struct evict_node *n)
{
    for (const struct evict_node *p = q->head.next; p != &q->head; p = p->next)
        if (p == n)
            return true;
    return false;
}

/* ---- invariant checker ------------------------------------------------- */

/*
 * Walks queue q and checks its links and totals, then marks each node in
 * seen[] (indexed by its position in objs[]). Returns the bytes it found.
 */
static uint64_t check_queue(const struct evict_queue *q, uint8_t id, struct tobj *objs, size_t nobj,
                            unsigned char *seen)
{
    uint64_t bytes = 0, count = 0;
    const struct evict_node *prev = &q->head;

    for (const struct evict_node *p = q->head.next; p != &q->head; p = p->next) {
        assert_ptr_equal(p->prev, prev);
        const struct tobj *o = container_of(p, struct tobj, node);
        assert_true(o >= objs && o < objs + nobj);
        size_t i = (size_t)(o - objs);
        assert_int_equal(seen[i], 0);
        seen[i] = 1;
        assert_int_equal(p->queue, id);
        assert_true(o->cached);
        assert_true(p->freq <= 3);
        bytes += p->size;
        count++;
        prev = p;
        assert_true(count <= nobj);
    }
    assert_ptr_equal(q->head.prev, prev);
    assert_int_equal(bytes, q->bytes);
    assert_int_equal(count, q->count);
    return bytes;
}

/*
 * Ghost structure: the ring is a power of two, every index entry points
 * into the live window of the ring and can be reached by probing from its
 * home slot, and no hash is indexed twice. The home slot formula is copied
 * from evict.c (Fibonacci hashing over 2 * ghost_cap slots).
 */
static void check_ghost(const struct evict *e)
{
    size_t cap = e->ghost_cap, slots = 2 * cap, live = 0;

    assert_true(cap >= 64 && (cap & (cap - 1)) == 0);
    assert_true(e->ghost_len <= cap);
    assert_true(e->ghost_head < cap);
    unsigned bits = (unsigned)__builtin_ctzll((unsigned long long)slots);
    for (size_t s = 0; s < slots; s++) {
        uint32_t v = e->ghost_index[s];
        if (v == 0)
            continue;
        live++;
        size_t pos = v - 1;
        assert_true(pos < cap);
        assert_true(((pos - e->ghost_head) & (cap - 1)) < e->ghost_len);
        uint64_t h = e->ghost_ring[pos];
        size_t home = (size_t)((h * UINT64_C(0x9e3779b97f4a7c15)) >> (64 - bits));
        for (size_t t = home; t != s; t = (t + 1) & (slots - 1)) {
            assert_int_not_equal(e->ghost_index[t], 0);
            assert_true(e->ghost_ring[e->ghost_index[t] - 1] != h);
        }
    }
    assert_true(live <= e->ghost_len);
    assert_true(live < slots); /* an empty slot always ends a probe */
}

static void check_invariants(const struct evict *e, struct tobj *objs, size_t nobj)
{
    unsigned char *seen = calloc(nobj, 1);
    assert_non_null(seen);

    uint64_t bytes = check_queue(&e->small, Q_SMALL, objs, nobj, seen);
    bytes += check_queue(&e->main, Q_MAIN, objs, nobj, seen);
    assert_int_equal(bytes, e->used);
    if (e->kind == EVICT_LRU)
        assert_int_equal(e->small.count, 0);
    for (size_t i = 0; i < nobj; i++) {
        if (!seen[i]) {
            assert_false(objs[i].cached);
            assert_int_equal(objs[i].node.queue, Q_NONE);
        }
    }
    if (e->kind == EVICT_S3FIFO)
        check_ghost(e);
    free(seen);
}

/* ---- tests ------------------------------------------------------------- */

static void test_kind_parse(void **state)
{
    enum evict_kind k = 0;

    assert_int_equal(evict_kind_parse("lru", &k), 0);
    assert_int_equal(k, EVICT_LRU);
    assert_int_equal(evict_kind_parse("s3fifo", &k), 0);
    assert_int_equal(k, EVICT_S3FIFO);
    assert_int_equal(evict_kind_parse("fifo", &k), -1);
    assert_int_equal(evict_kind_parse("", &k), -1);
    assert_int_equal(evict_kind_parse(NULL, &k), -1);
    assert_int_equal(k, EVICT_S3FIFO);
}

static void byte_accounting(enum evict_kind kind)
{
    struct evict e;
    struct tobj o[5];

    evict_init(&e, kind, 1000);
    for (int i = 0; i < 5; i++) {
        obj_init(&o[i], i, key_of((uint64_t)i), (uint64_t)(i + 1) * 10);
        put(&e, &o[i]);
    }
    assert_int_equal(e.used, 150);
    assert_int_equal(e.small.bytes + e.main.bytes, 150);
    assert_int_equal(e.small.count + e.main.count, 5);
    evict_touch(&e, &o[0].node);
    evict_touch(&e, &o[3].node);
    assert_int_equal(e.used, 150);
    evict_remove(&e, &o[2].node);
    o[2].cached = false;
    assert_int_equal(e.used, 120);
    /* A zero-size object is queued but charges nothing. */
    obj_init(&o[2], 2, key_of(2), 0);
    put(&e, &o[2]);
    assert_int_equal(e.used, 120);
    check_invariants(&e, o, 5);
    for (int i = 0; i < 5; i++) {
        evict_remove(&e, &o[i].node);
        o[i].cached = false;
    }
    assert_int_equal(e.used, 0);
    assert_int_equal(e.small.bytes + e.main.bytes, 0);
    check_invariants(&e, o, 5);
    evict_fini(&e);
}

static void test_byte_accounting(void **state)
{
    byte_accounting(EVICT_LRU);
    byte_accounting(EVICT_S3FIFO);
}

static void victims_only_over_budget(enum evict_kind kind)
{
    struct evict e;
    struct tobj o[20];

    evict_init(&e, kind, 100);
    for (int i = 0; i < 10; i++) {
        obj_init(&o[i], i, key_of((uint64_t)i), 10);
        put(&e, &o[i]);
        /* Exactly at budget is within budget. */
        assert_null(evict_victim(&e));
    }
    assert_int_equal(e.used, 100);
    obj_init(&o[10], 10, key_of(10), 25);
    put(&e, &o[10]);
    /* 125 bytes over a budget of 100: three 10-byte victims bring it to 95. */
    assert_int_equal(drain(&e), 3);
    assert_int_equal(e.used, 95);
    assert_null(evict_victim(&e));
    check_invariants(&e, o, 11);
    evict_fini(&e);
}

static void test_victims_only_over_budget(void **state)
{
    victims_only_over_budget(EVICT_LRU);
    victims_only_over_budget(EVICT_S3FIFO);
}

static void test_budget_zero(void **state)
{
    for (int kind = EVICT_LRU; kind <= EVICT_S3FIFO; kind++) {
        struct evict e;
        struct tobj o[3];

        evict_init(&e, (enum evict_kind)kind, 0);
        for (int i = 0; i < 3; i++) {
            obj_init(&o[i], i, key_of((uint64_t)i), 1);
            put(&e, &o[i]);
            assert_int_equal(drain(&e), 1);
        }
        assert_int_equal(e.used, 0);
        evict_fini(&e);
    }
}

/* The store sets only key_hash and size; the private fields may hold garbage. */
static void test_insert_uninitialised_node(void **state)
{
    for (int kind = EVICT_LRU; kind <= EVICT_S3FIFO; kind++) {
        struct evict e;
        struct tobj o[2];

        memset(o, 0xa5, sizeof o);
        evict_init(&e, (enum evict_kind)kind, 10);
        for (int i = 0; i < 2; i++) {
            o[i].id = i;
            o[i].node.key_hash = key_of((uint64_t)i);
            o[i].node.size = 4;
            put(&e, &o[i]);
        }
        assert_int_equal(e.used, 8);
        check_invariants(&e, o, 2);
        evict_remove(&e, &o[0].node);
        o[0].cached = false;
        assert_int_equal(e.used, 4);
        check_invariants(&e, o, 2);
        evict_fini(&e);
    }
}

static void test_lru_order(void **state)
{
    struct evict e;
    struct tobj o[5];

    evict_init(&e, EVICT_LRU, 4);
    for (int i = 0; i < 4; i++) {
        obj_init(&o[i], i, key_of((uint64_t)i), 1);
        put(&e, &o[i]);
    }
    /* Recency order, oldest first: 0 1 2 3. After the touches: 1 3 0 2. */
    evict_touch(&e, &o[0].node);
    evict_touch(&e, &o[2].node);
    obj_init(&o[4], 4, key_of(4), 4);
    put(&e, &o[4]);
    int expect[] = {1, 3, 0, 2};
    for (int i = 0; i < 4; i++) {
        struct tobj *v = obj_of(evict_victim(&e));
        assert_non_null(v);
        assert_int_equal(v->id, expect[i]);
        v->cached = false;
    }
    assert_null(evict_victim(&e));
    assert_true(o[4].cached);
    check_invariants(&e, o, 5);
    evict_fini(&e);
}

/*
 * A few hot objects are hit now and then, while a stream of keys that are
 * never requested again passes through. S3-FIFO must keep every hot object.
 * LRU, under the same sequence, loses them, which shows the scenario has
 * teeth.
 */
static int hot_survivors(enum evict_kind kind)
{
    enum { HOT = 10, COLD = 2000, BUDGET = 100 };
    struct evict e;
    struct tobj *o = calloc(HOT + COLD, sizeof *o);
    assert_non_null(o);

    evict_init(&e, kind, BUDGET);
    for (int i = 0; i < HOT; i++) {
        obj_init(&o[i], i, key_of((uint64_t)i), 1);
        put(&e, &o[i]);
        evict_touch(&e, &o[i].node);
        evict_touch(&e, &o[i].node);
    }
    for (int c = 0; c < COLD; c++) {
        struct tobj *x = &o[HOT + c];
        obj_init(x, HOT + c, key_of((uint64_t)(HOT + c)), 1);
        put(&e, x);
        struct evict_node *v;
        while ((v = evict_victim(&e)) != NULL) {
            struct tobj *vo = obj_of(v);
            if (kind == EVICT_S3FIFO)
                assert_true(vo->id >= HOT);
            vo->cached = false;
        }
        /* The hot set is hit once every 300 requests, more rarely than LRU's horizon. */
        if (c % 300 == 299)
            for (int i = 0; i < HOT; i++)
                if (o[i].cached)
                    evict_touch(&e, &o[i].node);
    }
    check_invariants(&e, o, HOT + COLD);
    int alive = 0;
    for (int i = 0; i < HOT; i++)
        alive += o[i].cached;
    evict_fini(&e);
    free(o);
    return alive;
}

static void test_s3fifo_one_hit_wonders_go_first(void **state)
{
    assert_int_equal(hot_survivors(EVICT_S3FIFO), 10);
    assert_int_equal(hot_survivors(EVICT_LRU), 0);
}

/* Under S3-FIFO a hit changes only the counter: list order stays as it was. */
static void test_s3fifo_touch_does_not_move(void **state)
{
    struct evict e;
    struct tobj o[4];
    struct evict_node *before[4];

    evict_init(&e, EVICT_S3FIFO, 100);
    for (int i = 0; i < 4; i++) {
        obj_init(&o[i], i, key_of((uint64_t)i), 1);
        put(&e, &o[i]);
    }
    int k = 0;
    for (struct evict_node *p = e.small.head.next; p != &e.small.head; p = p->next)
        before[k++] = p;
    for (int r = 0; r < 5; r++)
        evict_touch(&e, &o[r % 4].node);
    k = 0;
    for (struct evict_node *p = e.small.head.next; p != &e.small.head; p = p->next)
        assert_ptr_equal(p, before[k++]);
    /* Counter saturates at 3. */
    for (int r = 0; r < 10; r++)
        evict_touch(&e, &o[0].node);
    assert_int_equal(o[0].node.freq, 3);
    evict_fini(&e);
}

/*
 * A key evicted from S is remembered in G. When it is inserted again it goes
 * to M. The ghost entry is used up by that hit, so a third insert after a
 * remove goes to S again.
 */
static void test_s3fifo_ghost_hit_goes_to_main(void **state)
{
    enum { N = 30 };
    struct evict e;
    struct tobj o[N + 3];

    /* The loop below may stop early; unused slots must read as not cached. */
    memset(o, 0, sizeof o);
    evict_init(&e, EVICT_S3FIFO, 10);
    obj_init(&o[0], 0, key_of(1000), 1);
    put(&e, &o[0]);
    assert_true(in_queue(&e.small, &o[0].node));
    /* Push it out of S with never-touched objects. */
    bool out = false;
    for (int i = 1; i <= N && !out; i++) {
        obj_init(&o[i], i, key_of((uint64_t)i), 1);
        put(&e, &o[i]);
        drain(&e);
        out = !o[0].cached;
    }
    assert_true(out);

    obj_init(&o[N + 1], N + 1, key_of(1000), 1);
    put(&e, &o[N + 1]);
    assert_true(in_queue(&e.main, &o[N + 1].node));
    drain(&e);

    evict_remove(&e, &o[N + 1].node);
    o[N + 1].cached = false;
    obj_init(&o[N + 2], N + 2, key_of(1000), 1);
    put(&e, &o[N + 2]);
    assert_true(in_queue(&e.small, &o[N + 2].node));
    drain(&e);
    check_invariants(&e, o, N + 3);
    evict_fini(&e);
}

/* The ghost is FIFO and bounded: after enough other evictions a key is forgotten. */
static void test_s3fifo_ghost_forgets(void **state)
{
    enum { N = 5000 };
    struct evict e;
    struct tobj *o = calloc(N + 2, sizeof *o);
    assert_non_null(o);

    evict_init(&e, EVICT_S3FIFO, 10);
    obj_init(&o[0], 0, key_of(777777), 1);
    put(&e, &o[0]);
    for (int i = 1; i <= N; i++) {
        obj_init(&o[i], i, key_of((uint64_t)i), 1);
        put(&e, &o[i]);
        drain(&e);
    }
    assert_false(o[0].cached);
    /* M holds at most 10 objects, so G holds at most its floor of 64. */
    assert_true(e.ghost_len <= 64);
    obj_init(&o[N + 1], N + 1, key_of(777777), 1);
    put(&e, &o[N + 1]);
    assert_true(in_queue(&e.small, &o[N + 1].node));
    check_invariants(&e, o, N + 2);
    evict_fini(&e);
    free(o);
}

/*
 * The ghost grows with M. With 900 objects in M and 600 keys evicted from S
 * since, all 600 must still be in G, which takes several doublings past the
 * initial 64 entries.
 */
static void test_s3fifo_ghost_grows(void **state)
{
    enum { HOT = 900, COLD = 600, BUDGET = 1000 };
    struct evict e;
    struct tobj *o = calloc(HOT + 2 * COLD, sizeof *o);
    assert_non_null(o);

    evict_init(&e, EVICT_S3FIFO, BUDGET);
    for (int i = 0; i < HOT; i++) {
        obj_init(&o[i], i, key_of((uint64_t)i), 1);
        put(&e, &o[i]);
        evict_touch(&e, &o[i].node);
        evict_touch(&e, &o[i].node);
    }
    /* Keep the cold stream below the hot set's size, so M keeps all of it. */
    for (int c = 0; c < COLD; c++) {
        struct tobj *x = &o[HOT + c];
        obj_init(x, HOT + c, key_of((uint64_t)(HOT + c)), 1);
        put(&e, x);
        drain(&e);
    }
    assert_true(e.main.count >= HOT);
    assert_true(e.ghost_cap >= 512);
    int evicted = 0;
    for (int c = 0; c < COLD; c++)
        evicted += !o[HOT + c].cached;
    assert_true(evicted >= 400);
    check_invariants(&e, o, HOT + COLD);
    /* Reinsert them without draining: each one is a ghost hit. */
    for (int c = 0; c < COLD; c++) {
        if (o[HOT + c].cached)
            continue;
        struct tobj *x = &o[HOT + COLD + c];
        obj_init(x, HOT + COLD + c, key_of((uint64_t)(HOT + c)), 1);
        put(&e, x);
        assert_true(in_queue(&e.main, &x->node));
    }
    check_invariants(&e, o, HOT + 2 * COLD);
    drain(&e);
    check_invariants(&e, o, HOT + 2 * COLD);
    evict_fini(&e);
    free(o);
}

/* M rotates objects that were hit, one credit per pass, and evicts the first without credit. */
static void test_s3fifo_main_reinsertion(void **state)
{
    struct evict e;
    struct tobj o[5];

    evict_init(&e, EVICT_S3FIFO, 3);
    /* Three objects hit twice in S are promoted when a fourth overflows the budget. */
    for (int i = 0; i < 4; i++) {
        obj_init(&o[i], i, key_of((uint64_t)i), 1);
        put(&e, &o[i]);
        if (i < 3) {
            evict_touch(&e, &o[i].node);
            evict_touch(&e, &o[i].node);
        }
    }
    assert_ptr_equal(evict_victim(&e), &o[3].node);
    for (int i = 0; i < 3; i++) {
        assert_true(in_queue(&e.main, &o[i].node));
        assert_int_equal(o[i].node.freq, 0);
    }
    /* M, oldest first: 0 1 2. Credits after these touches: 0 has 2, 1 has 0, 2 has 1. */
    evict_touch(&e, &o[0].node);
    evict_touch(&e, &o[0].node);
    evict_touch(&e, &o[2].node);
    /* A new key in S: S's share of a 3-byte budget rounds to 0, so S goes first. */
    obj_init(&o[4], 4, key_of(4), 1);
    put(&e, &o[4]);
    assert_ptr_equal(evict_victim(&e), &o[4].node);
    assert_null(evict_victim(&e));
    /* Now only M: 0 rotates (credit 2 -> 1), then 1 has none and goes. */
    e.budget = 2;
    assert_ptr_equal(evict_victim(&e), &o[1].node);
    assert_int_equal(o[0].node.freq, 1);
    /* M, oldest first: 2 0. 2 rotates (1 -> 0), 0 rotates (1 -> 0), then 2 goes. */
    e.budget = 1;
    assert_ptr_equal(evict_victim(&e), &o[2].node);
    assert_int_equal(o[0].node.freq, 0);
    assert_null(evict_victim(&e));
    assert_true(in_queue(&e.main, &o[0].node));
    evict_fini(&e);
}

static void test_remove_from_each_queue(void **state)
{
    struct evict e;
    struct tobj o[40];

    evict_init(&e, EVICT_S3FIFO, 20);
    for (int i = 0; i < 40; i++) {
        obj_init(&o[i], i, key_of((uint64_t)i), 1);
        put(&e, &o[i]);
        if (i < 10) {
            evict_touch(&e, &o[i].node);
            evict_touch(&e, &o[i].node);
        }
        drain(&e);
    }
    struct tobj *s = NULL, *m = NULL;
    for (int i = 0; i < 40; i++) {
        if (o[i].cached && o[i].node.queue == Q_SMALL && !s)
            s = &o[i];
        if (o[i].cached && o[i].node.queue == Q_MAIN && !m)
            m = &o[i];
    }
    assert_non_null(s);
    assert_non_null(m);
    uint64_t used = e.used, sc = e.small.count, mc = e.main.count;
    evict_remove(&e, &s->node);
    s->cached = false;
    assert_int_equal(e.small.count, sc - 1);
    assert_int_equal(e.used, used - 1);
    evict_remove(&e, &m->node);
    m->cached = false;
    assert_int_equal(e.main.count, mc - 1);
    assert_int_equal(e.used, used - 2);
    assert_int_equal(s->node.queue, Q_NONE);
    assert_int_equal(m->node.queue, Q_NONE);
    check_invariants(&e, o, 40);
    /* A removed key leaves no ghost entry, so it comes back through S. */
    put(&e, m);
    assert_true(in_queue(&e.small, &m->node));
    /* Removing or touching a node that is not queued does no harm. */
    evict_remove(&e, &s->node);
    evict_touch(&e, &s->node);
    assert_int_equal(e.used, used - 1);
    check_invariants(&e, o, 40);
    evict_fini(&e);

    /* LRU: head, middle and tail. */
    evict_init(&e, EVICT_LRU, 100);
    for (int i = 0; i < 5; i++) {
        obj_init(&o[i], i, key_of((uint64_t)i), 1);
        put(&e, &o[i]);
    }
    int order[] = {4, 2, 0};
    for (int k = 0; k < 3; k++) {
        evict_remove(&e, &o[order[k]].node);
        o[order[k]].cached = false;
        check_invariants(&e, o, 5);
    }
    assert_int_equal(e.used, 2);
    evict_fini(&e);
}

/* An object bigger than the whole budget goes first and alone. */
static void test_oversize(void **state)
{
    for (int kind = EVICT_LRU; kind <= EVICT_S3FIFO; kind++) {
        struct evict e;
        struct tobj o[11];

        evict_init(&e, (enum evict_kind)kind, 100);
        for (int i = 0; i < 10; i++) {
            obj_init(&o[i], i, key_of((uint64_t)i), 10);
            put(&e, &o[i]);
        }
        obj_init(&o[10], 10, key_of(10), 1000);
        put(&e, &o[10]);
        evict_touch(&e, &o[10].node);
        assert_int_equal(drain(&e), 1);
        assert_false(o[10].cached);
        assert_int_equal(e.used, 100);
        check_invariants(&e, o, 11);
        evict_fini(&e);
    }
}

/* ---- randomised invariants -------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* splitmix64: enough for choosing test operations. */
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint64_t rnd_below(uint64_t n)
{
    return rnd() % n;
}

static void random_ops(enum evict_kind kind, uint64_t seed)
{
    enum { NOBJ = 1000, NKEYS = 1500, OPS = 100000 };
    struct evict e;
    struct tobj *o = calloc(NOBJ, sizeof *o);
    assert_non_null(o);

    rng_state = seed;
    for (int i = 0; i < NOBJ; i++)
        obj_init(&o[i], i, 0, 0);
    evict_init(&e, kind, 8000);
    uint64_t victims = 0;
    for (int op = 0; op < OPS; op++) {
        struct tobj *x = &o[rnd_below(NOBJ)];
        unsigned r = (unsigned)rnd_below(100);

        if (r < 45) {
            if (x->cached)
                continue;
            /* Mostly small, sometimes empty, rarely bigger than the budget. */
            unsigned z = (unsigned)rnd_below(1000);
            x->node.size = z == 0 ? 0 : z == 1 ? e.budget + 1 + rnd_below(100) : 1 + rnd_below(48);
            /* A small key space makes reinsertions of evicted keys, so ghost hits, common. */
            x->node.key_hash = key_of(rnd_below(NKEYS));
            put(&e, x);
            victims += (uint64_t)drain(&e);
        } else if (r < 85) {
            if (x->cached)
                evict_touch(&e, &x->node);
        } else if (r < 95) {
            if (x->cached) {
                evict_remove(&e, &x->node);
                x->cached = false;
            }
        } else if (r < 97) {
            /* The store may resize the budget at run time (config reload). */
            e.budget = 2000 + rnd_below(12000);
            victims += (uint64_t)drain(&e);
        } else {
            assert_null(evict_victim(&e));
        }
        if (op % 8 == 0)
            check_invariants(&e, o, NOBJ);
    }
    check_invariants(&e, o, NOBJ);
    /* The run must have exercised eviction (and, for S3-FIFO, a grown ghost). */
    assert_true(victims > 1000);
    if (kind == EVICT_S3FIFO)
        assert_true(e.ghost_cap > 64);
    evict_fini(&e);
    free(o);
}

static void test_random_invariants_lru(void **state)
{
    random_ops(EVICT_LRU, 1);
    random_ops(EVICT_LRU, 2);
}

static void test_random_invariants_s3fifo(void **state)
{
    random_ops(EVICT_S3FIFO, 1);
    random_ops(EVICT_S3FIFO, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kind_parse),
        cmocka_unit_test(test_byte_accounting),
        cmocka_unit_test(test_victims_only_over_budget),
        cmocka_unit_test(test_budget_zero),
        cmocka_unit_test(test_insert_uninitialised_node),
        cmocka_unit_test(test_lru_order),
        cmocka_unit_test(test_s3fifo_one_hit_wonders_go_first),
        cmocka_unit_test(test_s3fifo_touch_does_not_move),
        cmocka_unit_test(test_s3fifo_ghost_hit_goes_to_main),
        cmocka_unit_test(test_s3fifo_ghost_forgets),
        cmocka_unit_test(test_s3fifo_ghost_grows),
        cmocka_unit_test(test_s3fifo_main_reinsertion),
        cmocka_unit_test(test_remove_from_each_queue),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_random_invariants_lru),
        cmocka_unit_test(test_random_invariants_s3fifo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
