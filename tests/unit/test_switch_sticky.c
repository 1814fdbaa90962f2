/*
 * Tests for src/switch/sticky.c: entries live exactly `timeout` after
 * their last refresh, expiry by sweep and by lookup, eviction of the
 * oldest entry at the size limit, shrinking on reconfigure, IPv6 keys,
 * and the walk used by the admin API. Time is passed in, so nothing
 * sleeps.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "switch/sticky.h"

static const uint8_t A[4] = {192, 0, 2, 1};
static const uint8_t B[4] = {192, 0, 2, 2};
static const uint8_t C[4] = {192, 0, 2, 3};

static void test_put_get_expire(void **state)
{
    struct sw_sticky *st = sw_sticky_create(100, 1000);
    assert_true(sw_sticky_get(st, A, 4, 0) == 0);
    sw_sticky_put(st, A, 4, 7, 0);
    assert_true(sw_sticky_get(st, A, 4, 999) == 7);
    assert_true(sw_sticky_get(st, B, 4, 999) == 0);
    assert_int_equal(sw_sticky_count(st), 1);
    /* At the deadline it is gone, and the lookup removed it. */
    assert_true(sw_sticky_get(st, A, 4, 1000) == 0);
    assert_int_equal(sw_sticky_count(st), 0);
    assert_true(sw_sticky_expired(st) == 1);
    sw_sticky_destroy(st);
}

static void test_refresh_extends(void **state)
{
    struct sw_sticky *st = sw_sticky_create(100, 1000);
    sw_sticky_put(st, A, 4, 7, 0);
    sw_sticky_put(st, A, 4, 8, 900); /* refreshed, and now to another backend */
    assert_int_equal(sw_sticky_count(st), 1);
    assert_true(sw_sticky_get(st, A, 4, 1899) == 8);
    assert_true(sw_sticky_get(st, A, 4, 1900) == 0);
    sw_sticky_destroy(st);
}

static void test_sweep(void **state)
{
    struct sw_sticky *st = sw_sticky_create(100, 1000);
    sw_sticky_put(st, A, 4, 1, 0);
    sw_sticky_put(st, B, 4, 2, 100);
    sw_sticky_put(st, C, 4, 3, 200);
    sw_sticky_put(st, A, 4, 1, 300); /* A is now the newest */
    assert_int_equal(sw_sticky_expire(st, 1099), 0);
    assert_int_equal(sw_sticky_expire(st, 1100), 1); /* B */
    assert_int_equal(sw_sticky_count(st), 2);
    assert_int_equal(sw_sticky_expire(st, 1250), 1); /* C */
    assert_true(sw_sticky_get(st, A, 4, 1250) == 1);
    assert_int_equal(sw_sticky_expire(st, 5000), 1);
    assert_int_equal(sw_sticky_count(st), 0);
    assert_true(sw_sticky_expired(st) == 3);
    sw_sticky_destroy(st);
}

static void test_limit_evicts_oldest(void **state)
{
    struct sw_sticky *st = sw_sticky_create(2, 1000);
    sw_sticky_put(st, A, 4, 1, 0);
    sw_sticky_put(st, B, 4, 2, 1);
    sw_sticky_put(st, A, 4, 1, 2); /* B is now the oldest */
    sw_sticky_put(st, C, 4, 3, 3);
    assert_int_equal(sw_sticky_count(st), 2);
    assert_true(sw_sticky_get(st, B, 4, 4) == 0);
    assert_true(sw_sticky_get(st, A, 4, 4) == 1);
    assert_true(sw_sticky_get(st, C, 4, 4) == 3);
    /* Shrinking keeps the newest. */
    sw_sticky_configure(st, 1, 1000);
    assert_int_equal(sw_sticky_count(st), 1);
    assert_true(sw_sticky_get(st, C, 4, 4) == 3);
    sw_sticky_destroy(st);
}

static void test_many_and_remove(void **state)
{
    struct sw_sticky *st = sw_sticky_create(50000, 60000);
    for (uint32_t i = 0; i < 50000; i++) {
        uint8_t a[4] = {10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i};
        sw_sticky_put(st, a, 4, i + 1, 0);
    }
    assert_int_equal(sw_sticky_count(st), 50000);
    for (uint32_t i = 0; i < 50000; i += 7) {
        uint8_t a[4] = {10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i};
        assert_true(sw_sticky_get(st, a, 4, 1) == i + 1);
        sw_sticky_remove(st, a, 4);
        assert_true(sw_sticky_get(st, a, 4, 1) == 0);
    }
    sw_sticky_destroy(st);
}

static void test_ipv6_and_bad_keys(void **state)
{
    struct sw_sticky *st = sw_sticky_create(10, 1000);
    uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8};
    uint8_t v6b[16] = {0x20, 0x01, 0x0d, 0xb8, 1};
    uint8_t big[17] = {0};
    sw_sticky_put(st, v6, 16, 5, 0);
    assert_true(sw_sticky_get(st, v6, 16, 1) == 5);
    assert_true(sw_sticky_get(st, v6b, 16, 1) == 0);
    /* The same first four bytes as an IPv4 key are another key. */
    assert_true(sw_sticky_get(st, v6, 4, 1) == 0);
    sw_sticky_put(st, big, 17, 1, 0);
    sw_sticky_put(st, big, 0, 1, 0);
    sw_sticky_put(st, A, 4, 0, 0); /* id 0 means none */
    assert_int_equal(sw_sticky_count(st), 1);
    sw_sticky_destroy(st);
}

struct seen {
    int n;
    uint64_t ids[4];
    int64_t left[4];
};

static void walk_cb(void *arg, const uint8_t *addr, size_t len, uint64_t id, int64_t left_ms)
{
    struct seen *s = arg;
    assert_int_equal(len, 4);
    s->ids[s->n] = id;
    s->left[s->n] = left_ms;
    s->n++;
}

static void test_walk(void **state)
{
    struct sw_sticky *st = sw_sticky_create(10, 1000);
    struct seen s = {0};
    sw_sticky_put(st, A, 4, 1, 0);
    sw_sticky_put(st, B, 4, 2, 500);
    sw_sticky_walk(st, 600, 10, walk_cb, &s);
    assert_int_equal(s.n, 2);
    assert_true(s.ids[0] == 2 && s.left[0] == 900); /* newest first */
    assert_true(s.ids[1] == 1 && s.left[1] == 400);
    sw_sticky_destroy(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_expire),
        cmocka_unit_test(test_refresh_extends),
        cmocka_unit_test(test_sweep),
        cmocka_unit_test(test_limit_evicts_oldest),
        cmocka_unit_test(test_many_and_remove),
        cmocka_unit_test(test_ipv6_and_bad_keys),
        cmocka_unit_test(test_walk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
