/*
 * Tests for src/router/area.c: longest-prefix match over nested, adjacent,
 * duplicate and default prefixes in both families, the matched length,
 * the ECS scope on hand-checked examples, the text parser, and a
 * randomized comparison with a brute-force oracle. The oracle scans every
 * prefix for each address, and checks the scope exactly: the block
 * addr/scope gives one answer everywhere, and addr/(scope-1) does not.
 * Seeds are fixed, so a failure repeats.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/area.h"

/* ---- helpers ---- */

static void add_text(struct area_builder *b, const char *text, uint32_t value)
{
    int family;
    uint8_t a[16];
    unsigned plen;
    assert_int_equal(area_parse_prefix(text, &family, a, &plen), 0);
    assert_int_equal(area_builder_add(b, family, a, plen, value), 0);
}

struct hit {
    uint32_t value;
    unsigned scope, plen;
};

static struct hit look(const struct area_table *t, const char *text)
{
    int family;
    uint8_t a[16];
    unsigned plen;
    struct hit h;
    assert_int_equal(area_parse_prefix(text, &family, a, &plen), 0);
    if (family == 4)
        h.value = area_lookup4(t, a, &h.scope, &h.plen);
    else
        h.value = area_lookup6(t, a, &h.scope, &h.plen);
    return h;
}

#define assert_hit(t, text, v, sc, pl)                                                   \
    do {                                                                                 \
        struct hit h_ = look((t), (text));                                               \
        if (h_.value != (uint32_t)(v) || h_.scope != (unsigned)(sc) ||                   \
            h_.plen != (unsigned)(pl)) {                                                 \
            print_error("%s: got value %u scope %u plen %u, want %u %u %u\n", (text),  \
                        (unsigned)h_.value, h_.scope, h_.plen, (unsigned)(v),            \
                        (unsigned)(sc), (unsigned)(pl));                                 \
            fail();                                                                      \
        }                                                                                \
    } while (0)

#define NONE AREA_NONE

/* ---- hand-made cases ---- */

static void test_empty(void **state)
{
    struct area_builder *b = area_builder_new();
    assert_int_equal(area_builder_count(b), 0);
    struct area_table *t = area_builder_finish(b);
    assert_non_null(t);
    assert_hit(t, "192.0.2.1", NONE, 0, 0);
    assert_hit(t, "0.0.0.0", NONE, 0, 0);
    assert_hit(t, "255.255.255.255", NONE, 0, 0);
    assert_hit(t, "2001:db8::1", NONE, 0, 0);
    assert_hit(t, "::", NONE, 0, 0);
    assert_int_equal(area_table_count(t, 4), 0);
    assert_int_equal(area_table_count(t, 6), 0);
    assert_true(area_table_memory(t) > 0 && area_table_memory(t) < 1024);
    area_table_free(t);

    /* A NULL table is an empty one. */
    uint8_t a[16] = {0};
    unsigned scope = 9, plen = 9;
    assert_true(area_lookup4(NULL, a, &scope, &plen) == NONE && scope == 0 && plen == 0);
    assert_true(area_lookup6(NULL, a, NULL, NULL) == NONE);
}

static void test_nested(void **state)
{
    struct area_builder *b = area_builder_new();
    add_text(b, "10.0.0.0/8", 1);
    add_text(b, "10.1.2.0/24", 3); /* before its parent: order does not matter */
    add_text(b, "10.1.0.0/16", 2);
    struct area_table *t = area_builder_finish(b);
    assert_non_null(t);
    assert_hit(t, "10.1.2.3", 3, 24, 24);
    assert_hit(t, "10.1.2.0", 3, 24, 24);
    assert_hit(t, "10.1.2.255", 3, 24, 24);
    /* 10.1.3.0/24 is all 2, 10.1.2.0/23 holds 10.1.2.x. */
    assert_hit(t, "10.1.3.3", 2, 24, 16);
    /* The run of 2 around it is 10.1.3.0-10.1.255.255: /17 fits, /16 not. */
    assert_hit(t, "10.1.128.1", 2, 17, 16);
    assert_hit(t, "10.1.1.255", 2, 23, 16);
    assert_hit(t, "10.1.0.0", 2, 23, 16);
    /* The run of 1 is 10.2.0.0-10.255.255.255. */
    assert_hit(t, "10.200.0.1", 1, 9, 8);
    assert_hit(t, "10.2.0.0", 1, 15, 8);
    assert_hit(t, "10.0.0.0", 1, 16, 8);
    /* Gaps: 11.0.0.0-255.255.255.255 and 0.0.0.0-9.255.255.255. */
    assert_hit(t, "11.0.0.1", NONE, 8, 0);
    assert_hit(t, "128.0.0.1", NONE, 1, 0);
    assert_hit(t, "0.0.0.1", NONE, 5, 0);
    assert_hit(t, "9.255.255.255", NONE, 7, 0);
    assert_int_equal(area_table_count(t, 4), 3);
    area_table_free(t);
}

/* The example of docs/router.md, "ECS scope". */
static void test_router_doc_example(void **state)
{
    struct area_builder *b = area_builder_new();
    add_text(b, "10.0.0.0/8", 1);
    add_text(b, "10.2.0.0/16", 2);
    struct area_table *t = area_builder_finish(b);
    assert_hit(t, "10.1.2.3", 1, 15, 8);
    assert_hit(t, "10.2.2.3", 2, 16, 16);
    area_table_free(t);
}

static void test_equal_values_merge(void **state)
{
    struct area_builder *b = area_builder_new();
    add_text(b, "10.0.0.0/8", 1);
    add_text(b, "10.1.0.0/16", 1);
    add_text(b, "10.128.0.0/24", 5);
    add_text(b, "10.128.1.0/24", 5);
    struct area_table *t = area_builder_finish(b);
    /* The /16 matches, but the answer is 1 for all of 10.0.0.0/9. */
    assert_hit(t, "10.1.2.3", 1, 9, 16);
    assert_hit(t, "10.200.2.3", 1, 10, 8);
    /* Two sibling /24 with the same value make one /23 for the scope. */
    assert_hit(t, "10.128.0.7", 5, 23, 24);
    assert_hit(t, "10.128.1.7", 5, 23, 24);
    assert_hit(t, "10.128.2.7", 1, 23, 8);
    area_table_free(t);
}

static void test_default_routes(void **state)
{
    struct area_builder *b = area_builder_new();
    add_text(b, "0.0.0.0/0", 7);
    add_text(b, "::/0", 9);
    struct area_table *t = area_builder_finish(b);
    assert_hit(t, "8.8.8.8", 7, 0, 0);
    assert_hit(t, "0.0.0.0", 7, 0, 0);
    assert_hit(t, "255.255.255.255", 7, 0, 0);
    assert_hit(t, "2001:db8::1", 9, 0, 0);
    assert_hit(t, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 9, 0, 0);
    area_table_free(t);

    b = area_builder_new();
    add_text(b, "0.0.0.0/0", 7);
    add_text(b, "192.0.2.0/24", 8);
    add_text(b, "::/0", 9);
    add_text(b, "2001:db8::/32", 10);
    t = area_builder_finish(b);
    assert_hit(t, "192.0.2.1", 8, 24, 24);
    assert_hit(t, "8.8.8.8", 7, 1, 0);        /* 0.0.0.0/1 is all 7 */
    assert_hit(t, "192.0.3.0", 7, 24, 0);
    assert_hit(t, "255.0.0.0", 7, 3, 0);      /* 224.0.0.0/3 */
    assert_hit(t, "2001:db8:1::", 10, 32, 32);
    assert_hit(t, "2001:db9::", 9, 32, 0);
    assert_hit(t, "8000::", 9, 1, 0);
    assert_hit(t, "::1", 9, 3, 0);            /* ::/3 is all 9, 2000::/3 is not */
    area_table_free(t);
}

static void test_hosts(void **state)
{
    struct area_builder *b = area_builder_new();
    add_text(b, "192.0.2.1/32", 1);
    add_text(b, "0.0.0.0/32", 2);
    add_text(b, "255.255.255.255", 3); /* a bare address is a host */
    add_text(b, "2001:db8::1", 4);
    add_text(b, "::/128", 5);
    add_text(b, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", 6);
    struct area_table *t = area_builder_finish(b);
    assert_hit(t, "192.0.2.1", 1, 32, 32);
    assert_hit(t, "192.0.2.0", NONE, 32, 0);
    assert_hit(t, "192.0.2.2", NONE, 31, 0);
    assert_hit(t, "0.0.0.0", 2, 32, 32);
    assert_hit(t, "0.0.0.1", NONE, 32, 0);
    assert_hit(t, "0.0.0.2", NONE, 31, 0);
    assert_hit(t, "255.255.255.255", 3, 32, 32);
    assert_hit(t, "255.255.255.254", NONE, 32, 0);
    assert_hit(t, "2001:db8::1", 4, 128, 128);
    assert_hit(t, "2001:db8::", NONE, 128, 0);
    assert_hit(t, "2001:db8::2", NONE, 127, 0);
    assert_hit(t, "::", 5, 128, 128);
    assert_hit(t, "::1", NONE, 128, 0);
    assert_hit(t, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 6, 128, 128);
    assert_hit(t, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", NONE, 128, 0);
    assert_hit(t, "4000::", NONE, 2, 0);
    area_table_free(t);
}

static void test_adjacent(void **state)
{
    struct area_builder *b = area_builder_new();
    add_text(b, "192.0.2.0/25", 1);
    add_text(b, "192.0.2.128/25", 2);
    add_text(b, "192.0.3.0/24", 2);
    add_text(b, "2001:db8::/33", 1);
    add_text(b, "2001:db8:8000::/33", 2);
    struct area_table *t = area_builder_finish(b);
    assert_hit(t, "192.0.2.127", 1, 25, 25);
    assert_hit(t, "192.0.2.128", 2, 25, 25);
    /* 192.0.2.128/25 and 192.0.3.0/24 are one run of 2, not aligned: a
     * /24 is the widest block inside it around 192.0.3.0. */
    assert_hit(t, "192.0.3.0", 2, 24, 24);
    assert_hit(t, "192.0.2.0", 1, 25, 25);
    assert_hit(t, "192.0.1.255", NONE, 23, 0);
    assert_hit(t, "2001:db8:7fff:ffff::", 1, 33, 33);
    assert_hit(t, "2001:db8:8000::", 2, 33, 33);
    assert_hit(t, "2001:db9::", NONE, 32, 0);
    area_table_free(t);
}

static void test_duplicates_last_wins(void **state)
{
    struct area_builder *b = area_builder_new();
    add_text(b, "10.0.0.0/8", 1);
    add_text(b, "2001:db8::/32", 1);
    add_text(b, "10.0.0.0/8", 2);
    add_text(b, "10.9.9.9/8", 3); /* the same prefix once masked */
    add_text(b, "10.0.0.0/9", 4);  /* another prefix */
    add_text(b, "2001:db8:ffff::/32", 5);
    assert_int_equal(area_builder_count(b), 3);
    struct area_table *t = area_builder_finish(b);
    assert_int_equal(area_table_count(t, 4), 2);
    assert_int_equal(area_table_count(t, 6), 1);
    assert_hit(t, "10.200.0.0", 3, 9, 8);
    assert_hit(t, "10.0.0.0", 4, 9, 9);
    assert_hit(t, "2001:db8::", 5, 32, 32);
    area_table_free(t);
}

static void test_families_independent(void **state)
{
    struct area_builder *b = area_builder_new();
    add_text(b, "0.0.0.0/0", 1);
    struct area_table *t = area_builder_finish(b);
    assert_hit(t, "::", NONE, 0, 0);
    assert_hit(t, "::ffff:10.0.0.1", NONE, 0, 0);
    area_table_free(t);

    b = area_builder_new();
    add_text(b, "::/0", 2);
    add_text(b, "::ffff:0:0/96", 3);
    t = area_builder_finish(b);
    assert_hit(t, "10.0.0.1", NONE, 0, 0);
    assert_hit(t, "::ffff:10.0.0.1", 3, 96, 96);
    area_table_free(t);
}

static void test_bad_adds(void **state)
{
    struct area_builder *b = area_builder_new();
    uint8_t a[16] = {10};
    assert_int_equal(area_builder_add(b, 5, a, 8, 1), -1);
    assert_int_equal(area_builder_add(b, 0, a, 8, 1), -1);
    assert_int_equal(area_builder_add(b, 4, a, 33, 1), -1);
    assert_int_equal(area_builder_add(b, 6, a, 129, 1), -1);
    assert_int_equal(area_builder_add(b, 4, a, UINT32_MAX / 2 + 40, 1), -1);
    assert_int_equal(area_builder_add(b, 4, a, 8, AREA_NONE), -1);
    assert_int_equal(area_builder_add(b, 4, NULL, 8, 1), -1);
    assert_int_equal(area_builder_add(NULL, 4, a, 8, 1), -1);
    assert_int_equal(area_builder_count(b), 0);
    assert_int_equal(area_builder_add(b, 4, a, 32, 0), 0);
    assert_int_equal(area_builder_add(b, 6, a, 128, UINT32_MAX - 1), 0);
    assert_int_equal(area_builder_count(b), 2);
    area_builder_free(b);
    area_builder_free(NULL);
    assert_null(area_builder_finish(NULL));
    assert_int_equal(area_table_count(NULL, 4), 0);
    assert_int_equal(area_table_memory(NULL), 0);
    area_table_free(NULL);
}

/* ---- area_parse_prefix ---- */

static void parse_ok(const char *text, int family, const char *norm, unsigned plen)
{
    int f = 0;
    uint8_t a[16], want[16] = {0};
    unsigned p = 999;
    assert_int_equal(area_parse_prefix(text, &f, a, &p), 0);
    assert_int_equal(f, family);
    assert_int_equal(p, plen);
    assert_int_equal(inet_pton(family == 4 ? AF_INET : AF_INET6, norm, want), 1);
    assert_memory_equal(a, want, family == 4 ? 4 : 16);
}

static void test_parse(void **state)
{
    parse_ok("192.0.2.0/24", 4, "192.0.2.0", 24);
    parse_ok("192.0.2.77/24", 4, "192.0.2.0", 24);
    parse_ok("192.0.2.77/25", 4, "192.0.2.0", 25);
    parse_ok("192.0.2.255/25", 4, "192.0.2.128", 25);
    parse_ok("192.0.2.77", 4, "192.0.2.77", 32);
    parse_ok("192.0.2.77/32", 4, "192.0.2.77", 32);
    parse_ok("255.255.255.255/0", 4, "0.0.0.0", 0);
    parse_ok("255.255.255.255/1", 4, "128.0.0.0", 1);
    parse_ok("255.255.255.255/13", 4, "255.248.0.0", 13);
    parse_ok("2001:db8::/32", 6, "2001:db8::", 32);
    parse_ok("2001:db8:f234:5678::1/35", 6, "2001:db8:e000::", 35);
    parse_ok("2001:db8::1", 6, "2001:db8::1", 128);
    parse_ok("::/0", 6, "::", 0);
    parse_ok("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/127", 6,
             "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 127);
    parse_ok("::ffff:192.0.2.1/120", 6, "::ffff:192.0.2.0", 120);
    parse_ok("0000:0000:0000:0000:0000:ffff:255.255.255.255/128", 6,
             "::ffff:255.255.255.255", 128);

    static const char *const bad[] = {
        "", "/", "/24", "192.0.2.0/", "192.0.2.0/33", "192.0.2.0/100", "192.0.2.0/-1",
        "192.0.2.0/+8", "192.0.2.0/ 8", "192.0.2.0/8 ", " 192.0.2.0/8", "192.0.2.0/8x",
        "192.0.2.0/08", "192.0.2.0/8/8", "192.0.2/24", "192.0.2.256/24", "192.0.2.0.1",
        "192.0.02.0/24", "1.2.3.4x", "2001:db8::/129", "2001:db8::/1280", "2001:db8:::/32",
        "2001:db8::g/32", "2001:db8::%eth0", "fe80::1%1/64", "hello", "::/",
        "0000:0000:0000:0000:0000:0000:0000:0000:0000/0",
        "0000:0000:0000:0000:0000:ffff:255.255.255.255x/128",
        "4294967296/0", "99999999999999999999/8",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int f = 0;
        uint8_t a[16];
        unsigned p;
        if (area_parse_prefix(bad[i], &f, a, &p) != -1) {
            print_error("accepted \"%s\"\n", bad[i]);
            fail();
        }
    }
    int f;
    uint8_t a[16];
    unsigned p;
    assert_int_equal(area_parse_prefix(NULL, &f, a, &p), -1);
    assert_int_equal(area_parse_prefix("10.0.0.0/8", NULL, a, &p), -1);
    /* Text longer than any address must not overflow anything. */
    char longtext[4096];
    memset(longtext, '1', sizeof(longtext) - 1);
    longtext[sizeof(longtext) - 1] = '\0';
    assert_int_equal(area_parse_prefix(longtext, &f, a, &p), -1);
    longtext[4] = '/';
    assert_int_equal(area_parse_prefix(longtext, &f, a, &p), -1);
}

/* ---- randomized comparison with a brute-force oracle ---- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static unsigned rndn(unsigned n)
{
    return (unsigned)(rnd() % n);
}

static unsigned __int128 rnd128(void)
{
    return (unsigned __int128)rnd() << 64 | rnd();
}

struct oracle_pfx {
    unsigned __int128 start, end;
    unsigned plen;
    uint32_t value;
};

struct oracle {
    unsigned width;
    unsigned __int128 max;
    struct oracle_pfx *p;
    size_t n;
    /* Elementary intervals: between consecutive prefix boundaries the
     * answer cannot change. */
    unsigned __int128 *bp; /* sorted starts of the intervals; bp[0] = 0 */
    uint32_t *bval;        /* brute-force value of each interval */
    size_t *changes;       /* changes[j]: intervals 1..j whose value differs from the one before */
    size_t nbp;
};

static unsigned __int128 mask_of(const struct oracle *o, unsigned plen)
{
    return plen >= o->width ? 0 : o->max >> plen;
}

/* The longest match, by scanning every prefix. */
static uint32_t brute(const struct oracle *o, unsigned __int128 a, unsigned *plen)
{
    uint32_t v = NONE;
    unsigned best = 0;
    bool found = false;
    for (size_t i = 0; i < o->n; i++) {
        const struct oracle_pfx *p = &o->p[i];
        if (a >= p->start && a <= p->end && (!found || p->plen > best)) {
            found = true;
            best = p->plen;
            v = p->value;
        }
    }
    if (plen)
        *plen = best;
    return v;
}

static void oracle_add(struct oracle *o, unsigned __int128 start, unsigned plen, uint32_t value)
{
    start &= ~mask_of(o, plen);
    for (size_t i = 0; i < o->n; i++)
        if (o->p[i].start == start && o->p[i].plen == plen) {
            o->p[i].value = value; /* last wins */
            return;
        }
    o->p[o->n].start = start;
    o->p[o->n].end = start | mask_of(o, plen);
    o->p[o->n].plen = plen;
    o->p[o->n].value = value;
    o->n++;
}

static int cmp128(const void *a, const void *b)
{
    unsigned __int128 x = *(const unsigned __int128 *)a, y = *(const unsigned __int128 *)b;
    return x < y ? -1 : x > y;
}

static void oracle_index(struct oracle *o)
{
    o->bp = malloc((2 * o->n + 1) * sizeof(*o->bp));
    size_t n = 0;
    o->bp[n++] = 0;
    for (size_t i = 0; i < o->n; i++) {
        o->bp[n++] = o->p[i].start;
        if (o->p[i].end != o->max)
            o->bp[n++] = o->p[i].end + 1;
    }
    qsort(o->bp, n, sizeof(*o->bp), cmp128);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || o->bp[i] != o->bp[u - 1])
            o->bp[u++] = o->bp[i];
    o->nbp = u;
    o->bval = malloc(u * sizeof(*o->bval));
    o->changes = malloc(u * sizeof(*o->changes));
    for (size_t j = 0; j < u; j++) {
        o->bval[j] = brute(o, o->bp[j], NULL);
        o->changes[j] = j == 0 ? 0 : o->changes[j - 1] + (o->bval[j] != o->bval[j - 1]);
    }
}

/* The elementary interval holding a. */
static size_t interval_of(const struct oracle *o, unsigned __int128 a)
{
    size_t lo = 0, hi = o->nbp - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo + 1) / 2;
        if (o->bp[mid] <= a)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Whether every address of [a, b] gets the same answer. */
static bool constant(const struct oracle *o, unsigned __int128 a, unsigned __int128 b)
{
    return o->changes[interval_of(o, a)] == o->changes[interval_of(o, b)];
}

static void oracle_free(struct oracle *o)
{
    free(o->p);
    free(o->bp);
    free(o->bval);
    free(o->changes);
}

static void to_bytes(const struct oracle *o, unsigned __int128 a, uint8_t out[16])
{
    unsigned nbytes = o->width / 8;
    for (unsigned i = nbytes; i-- > 0;) {
        out[i] = (uint8_t)a;
        a >>= 8;
    }
}

static size_t checked;

static void check_addr(const struct oracle *o, const struct area_table *t, unsigned __int128 a)
{
    uint8_t bytes[16];
    unsigned scope = 999, plen = 999, want_plen;
    to_bytes(o, a, bytes);
    uint32_t v = o->width == 32 ? area_lookup4(t, bytes, &scope, &plen)
                                : area_lookup6(t, bytes, &scope, &plen);
    uint32_t want = brute(o, a, &want_plen);
    checked++;
    if (v != want || plen != want_plen || scope > o->width) {
        print_error("width %u addr %016llx%016llx: got %u/%u scope %u, want %u/%u\n", o->width,
                    (unsigned long long)(a >> 64), (unsigned long long)a, (unsigned)v, plen,
                    scope, (unsigned)want, want_plen);
        fail();
    }
    /* The oracle's own intervals agree with the scan. */
    assert_true(o->bval[interval_of(o, a)] == want);
    /* The block addr/scope has one answer: at its ends (by the scan) and
     * across every boundary inside it. */
    unsigned __int128 lo = a & ~mask_of(o, scope), hi = a | mask_of(o, scope);
    if (!constant(o, lo, hi) || brute(o, lo, NULL) != want || brute(o, hi, NULL) != want) {
        print_error("width %u addr %016llx%016llx: scope %u too short\n", o->width,
                    (unsigned long long)(a >> 64), (unsigned long long)a, scope);
        fail();
    }
    /* And the block one bit wider has two answers. */
    if (scope > 0) {
        lo = a & ~mask_of(o, scope - 1);
        hi = a | mask_of(o, scope - 1);
        if (constant(o, lo, hi)) {
            print_error("width %u addr %016llx%016llx: scope %u too long\n", o->width,
                        (unsigned long long)(a >> 64), (unsigned long long)a, scope);
            fail();
        }
    }
}

/* A random prefix length for a fresh prefix of a region of length rlen. */
static unsigned fresh_plen(unsigned width, unsigned rlen)
{
    unsigned r = rndn(100);
    if (r < 3)
        return rndn(rlen + 1);             /* short, covering the region */
    if (r < 8)
        return width - rndn(3);            /* hosts and near-hosts */
    return rlen + rndn(width == 32 ? 14 : 30);
}

/*
 * One random table in one family, checked against the oracle. The
 * prefixes crowd into a few regions so that they nest, touch and repeat;
 * values come from a small set so that neighbours often agree.
 */
static void random_round(unsigned width, uint64_t seed, size_t nprefixes, bool with_default,
                         bool confined)
{
    struct oracle o = {.width = width};
    o.max = width == 32 ? (unsigned __int128)UINT32_MAX : ~(unsigned __int128)0;
    o.p = malloc((nprefixes + 1) * sizeof(*o.p));
    rng_state = seed;

    unsigned rlen = width == 32 ? 12 : 40;
    unsigned __int128 regions[4];
    for (int i = 0; i < 4; i++)
        regions[i] = rnd128() & o.max & ~mask_of(&o, rlen);
    /* Confined: every prefix inside one /6 (IPv4) or /20 (IPv6), so the
     * lookup index covers only part of the space and addresses fall on
     * both sides of it. */
    unsigned clen = width == 32 ? 6 : 20;
    if (confined)
        for (int i = 1; i < 4; i++)
            regions[i] = (regions[0] & ~mask_of(&o, clen)) | (regions[i] & mask_of(&o, clen));
    unsigned nvalues = 2 + rndn(4);

    struct area_builder *b = area_builder_new();
    if (with_default) {
        oracle_add(&o, 0, 0, 0);
        uint8_t z[16] = {0};
        assert_int_equal(area_builder_add(b, width == 32 ? 4 : 6, z, 0, 0), 0);
    }
    while (o.n < nprefixes + with_default) {
        unsigned __int128 start;
        unsigned plen;
        unsigned r = rndn(100);
        if (o.n > 0 && r < 35) {
            /* A child of a prefix we have. */
            const struct oracle_pfx *p = &o.p[rndn((unsigned)o.n)];
            if (p->plen == width)
                continue;
            plen = p->plen + 1 + rndn(width - p->plen < 10 ? width - p->plen : 10);
            start = p->start | (rnd128() & mask_of(&o, p->plen));
        } else if (o.n > 0 && r < 45) {
            /* Its sibling: adjacent, same length. */
            const struct oracle_pfx *p = &o.p[rndn((unsigned)o.n)];
            if (p->plen == 0)
                continue;
            plen = p->plen;
            start = p->start ^ ((unsigned __int128)1 << (width - plen));
        } else if (o.n > 0 && r < 50) {
            /* The same prefix again (with a new value, or the same). */
            const struct oracle_pfx *p = &o.p[rndn((unsigned)o.n)];
            plen = p->plen;
            start = p->start | (rnd128() & mask_of(&o, plen)); /* host bits ignored */
        } else {
            plen = fresh_plen(width, rlen);
            start = regions[rndn(4)] | (rnd128() & mask_of(&o, rlen));
            if (rndn(50) == 0 && !confined)
                start = rnd128() & o.max; /* anywhere */
            if (confined && plen < clen)
                plen = clen;
        }
        uint32_t value = rndn(nvalues) + (rndn(200) == 0 ? UINT32_MAX - 10 : 0);
        uint8_t bytes[16];
        to_bytes(&o, start, bytes);
        oracle_add(&o, start, plen, value);
        assert_int_equal(area_builder_add(b, width == 32 ? 4 : 6, bytes, plen, value), 0);
    }
    assert_int_equal(area_builder_count(b), o.n);
    struct area_table *t = area_builder_finish(b);
    assert_non_null(t);
    assert_int_equal(area_table_count(t, width == 32 ? 4 : 6), o.n);
    assert_int_equal(area_table_count(t, width == 32 ? 6 : 4), 0);
    oracle_index(&o);

    check_addr(&o, t, 0);
    check_addr(&o, t, o.max);
    for (size_t i = 0; i < o.n; i++) {
        const struct oracle_pfx *p = &o.p[i];
        check_addr(&o, t, p->start);
        check_addr(&o, t, p->end);
        if (p->start > 0)
            check_addr(&o, t, p->start - 1);
        if (p->end < o.max)
            check_addr(&o, t, p->end + 1);
        check_addr(&o, t, p->start | (rnd128() & mask_of(&o, p->plen)));
    }
    for (int i = 0; i < 2000; i++)
        check_addr(&o, t, regions[rndn(4)] | (rnd128() & mask_of(&o, rlen)));
    for (int i = 0; i < 500; i++)
        check_addr(&o, t, rnd128() & o.max);

    area_table_free(t);
    oracle_free(&o);
}

static void test_random_v4(void **state)
{
    for (uint64_t seed = 1; seed <= 6; seed++)
        random_round(32, seed, 2000, seed % 3 == 0, false);
    for (uint64_t seed = 7; seed <= 9; seed++)
        random_round(32, seed, 2000, false, true);
    random_round(32, 100, 20, false, false);
    random_round(32, 101, 1, false, false);
    random_round(32, 102, 1, false, true);
}

static void test_random_v6(void **state)
{
    for (uint64_t seed = 1; seed <= 6; seed++)
        random_round(128, seed, 2000, seed % 3 == 0, false);
    for (uint64_t seed = 7; seed <= 9; seed++)
        random_round(128, seed, 2000, false, true);
    random_round(128, 100, 20, false, false);
    random_round(128, 101, 1, false, false);
    random_round(128, 102, 1, false, true);
}

/* Both families in one table, checked against each other's absence. */
static void test_random_mixed(void **state)
{
    struct area_builder *b = area_builder_new();
    rng_state = 77;
    for (int i = 0; i < 3000; i++) {
        uint8_t a[16];
        for (int k = 0; k < 16; k++)
            a[k] = (uint8_t)rnd();
        int family = rndn(2) ? 4 : 6;
        assert_int_equal(area_builder_add(b, family, a, family == 4 ? 8 + rndn(25) : 16 + rndn(50),
                                          rndn(3)),
                         0);
    }
    size_t n = area_builder_count(b);
    struct area_table *t = area_builder_finish(b);
    assert_int_equal(area_table_count(t, 4) + area_table_count(t, 6), n);
    area_table_free(t);
}

/* Memory grows with the prefixes: at most 2n+1 ranges, an index of at
 * most 4 bytes a range, and second-level blocks of about one byte a range. */
static void test_memory_bound(void **state)
{
    struct area_builder *b = area_builder_new();
    rng_state = 5;
    size_t n4 = 100000, n6 = 20000;
    for (size_t i = 0; i < n4; i++) {
        uint8_t a[4] = {(uint8_t)rnd(), (uint8_t)rnd(), (uint8_t)rnd(), (uint8_t)rnd()};
        assert_int_equal(area_builder_add(b, 4, a, 16 + rndn(9), (uint32_t)i), 0);
    }
    for (size_t i = 0; i < n6; i++) {
        uint8_t a[16] = {0x20, 0x01};
        for (int k = 2; k < 8; k++)
            a[k] = (uint8_t)rnd();
        assert_int_equal(area_builder_add(b, 6, a, 29 + rndn(20), (uint32_t)i), 0);
    }
    size_t distinct = area_builder_count(b);
    struct area_table *t = area_builder_finish(b);
    size_t c4 = area_table_count(t, 4), c6 = area_table_count(t, 6);
    assert_int_equal(c4 + c6, distinct);
    size_t bound = (2 * c4 + 1) * (12 + 8) + (2 * c6 + 1) * (24 + 8) + 1024;
    assert_true(area_table_memory(t) <= bound);
    assert_true(area_table_memory(t) >= (c4 + c6) * 12);
    area_table_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_nested),
        cmocka_unit_test(test_router_doc_example),
        cmocka_unit_test(test_equal_values_merge),
        cmocka_unit_test(test_default_routes),
        cmocka_unit_test(test_hosts),
        cmocka_unit_test(test_adjacent),
        cmocka_unit_test(test_duplicates_last_wins),
        cmocka_unit_test(test_families_independent),
        cmocka_unit_test(test_bad_adds),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_random_v4),
        cmocka_unit_test(test_random_v6),
        cmocka_unit_test(test_random_mixed),
        cmocka_unit_test(test_memory_bound),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    printf("test_area: %zu addresses checked against the oracle\n", checked);
    return rc;
}
