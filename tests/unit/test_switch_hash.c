/*
 * Tests for src/switch/rendezvous.c and the hash step of the policy chain:
 * SipHash-2-4 against the reference vector, balance over three backends,
 * and the consistent-hash property the switch relies on ([0020] of the
 * patent): when one of three backends leaves, exactly the clients it had
 * move (about a third) and no other client moves; when one joins, only
 * clients that go to it move.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "switch/policy.h"
#include "switch/rendezvous.h"

#define NCLIENTS 30000

static void test_siphash_vector(void **state)
{
    /* The paper's vector: key 00..0f, message 00..0e. */
    struct sw_hash_key k = {0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};
    uint8_t msg[15];
    for (int i = 0; i < 15; i++)
        msg[i] = (uint8_t)i;
    assert_true(sw_siphash(&k, msg, 15) == 0xa129ca6149be45e5ull);
    /* Empty input, from the reference implementation's table. */
    assert_true(sw_siphash(&k, msg, 0) == 0x726fdb47dd0e0e31ull);
}

static void test_seed_changes_key(void **state)
{
    struct sw_hash_key a, b, c;
    sw_hash_key_from_seed("ferry", &a);
    sw_hash_key_from_seed("ferry", &b);
    sw_hash_key_from_seed("ferrz", &c);
    assert_memory_equal(&a, &b, sizeof(a));
    assert_memory_not_equal(&a, &c, sizeof(a));
}

struct fixture {
    struct sw_policy pol;
    struct sw_pool pool;
    struct sw_backend *b[4];
    _Atomic uint64_t rr;
};

static void setup(struct fixture *f, unsigned n)
{
    char err[128];
    char *steps[] = {"hash"};
    memset(f, 0, sizeof(*f));
    assert_int_equal(sw_policy_parse(&f->pol, steps, 1, 0, err, sizeof(err)), 0);
    sw_hash_key_from_seed("test", &f->pol.key);
    f->pool.b = f->b;
    for (unsigned i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof(name), "cache-%u", i + 1);
        f->b[i] = sw_backend_create(name, sw_siphash(&f->pol.key, name, strlen(name)));
    }
    f->pool.n = n;
}

static void teardown(struct fixture *f)
{
    for (unsigned i = 0; i < 4; i++)
        if (f->b[i])
            sw_backend_unref(f->b[i]);
}

static int pick(struct fixture *f, uint32_t client)
{
    uint8_t a[4] = {10, (uint8_t)(client >> 16), (uint8_t)(client >> 8), (uint8_t)client};
    struct sw_request r = {.client = a, .client_len = 4};
    struct sw_decision d;
    assert_int_equal(sw_policy_decide(&f->pol, &f->pool, NULL, &f->rr, 0, &r, &d), 0);
    for (int i = 0; i < 4; i++)
        if (f->b[i] == d.b)
            return i;
    fail();
    return -1;
}

static void test_balance(void **state)
{
    struct fixture f;
    unsigned count[3] = {0};
    setup(&f, 3);
    for (uint32_t c = 0; c < NCLIENTS; c++)
        count[pick(&f, c)]++;
    for (int i = 0; i < 3; i++) {
        assert_true(count[i] > NCLIENTS * 30 / 100);
        assert_true(count[i] < NCLIENTS * 37 / 100);
    }
    teardown(&f);
}

static void test_one_of_three_leaves(void **state)
{
    static int8_t before[NCLIENTS];
    struct fixture f;
    setup(&f, 3);
    for (uint32_t c = 0; c < NCLIENTS; c++)
        before[c] = (int8_t)pick(&f, c);
    for (int gone = 0; gone < 3; gone++) {
        atomic_store(&f.b[gone]->up, 0);
        unsigned moved = 0;
        for (uint32_t c = 0; c < NCLIENTS; c++) {
            int now = pick(&f, c);
            if (before[c] == gone) {
                assert_int_not_equal(now, gone);
                moved++;
            } else {
                /* No client of a surviving backend moves. */
                assert_int_equal(now, before[c]);
            }
        }
        assert_true(moved > NCLIENTS * 30 / 100 && moved < NCLIENTS * 37 / 100);
        atomic_store(&f.b[gone]->up, 1);
        /* It comes back: everyone returns to where they were. */
        for (uint32_t c = 0; c < NCLIENTS; c++)
            assert_int_equal(pick(&f, c), before[c]);
    }
    teardown(&f);
}

static void test_one_joins(void **state)
{
    static int8_t before[NCLIENTS];
    struct fixture f;
    setup(&f, 4);
    f.pool.n = 3;
    for (uint32_t c = 0; c < NCLIENTS; c++)
        before[c] = (int8_t)pick(&f, c);
    f.pool.n = 4;
    unsigned moved = 0;
    for (uint32_t c = 0; c < NCLIENTS; c++) {
        int now = pick(&f, c);
        if (now != before[c]) {
            assert_int_equal(now, 3);
            moved++;
        }
    }
    assert_true(moved > NCLIENTS * 22 / 100 && moved < NCLIENTS * 28 / 100);
    teardown(&f);
}

static void test_order_of_config_does_not_matter(void **state)
{
    struct fixture f;
    setup(&f, 3);
    int8_t first[1000];
    for (uint32_t c = 0; c < 1000; c++)
        first[c] = (int8_t)pick(&f, c);
    struct sw_backend *t = f.b[0];
    f.b[0] = f.b[2];
    f.b[2] = t;
    for (uint32_t c = 0; c < 1000; c++) {
        int now = pick(&f, c);
        /* Indexes 0 and 2 swapped places. */
        int expect = first[c] == 0 ? 2 : first[c] == 2 ? 0 : first[c];
        assert_int_equal(now, expect);
    }
    teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siphash_vector),
        cmocka_unit_test(test_seed_changes_key),
        cmocka_unit_test(test_balance),
        cmocka_unit_test(test_one_of_three_leaves),
        cmocka_unit_test(test_one_joins),
        cmocka_unit_test(test_order_of_config_does_not_matter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
