/*
 * Unit tests for src/lib/buf.c and src/lib/json.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "lib/json.h"

static void test_append_consume(void **state)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "hello ");
    buf_printf(&b, "%s %d", "world", 42);
    assert_int_equal(buf_avail(&b), 14);
    assert_memory_equal(buf_head(&b), "hello world 42", 14);
    buf_consume(&b, 6);
    assert_memory_equal(buf_head(&b), "world 42", 8);
    buf_consume(&b, 8);
    assert_int_equal(buf_avail(&b), 0);
    assert_int_equal(b.off, 0); /* emptied buffers restart at the front */
    buf_fini(&b);
}

static void test_growth_and_long_printf(void **state)
{
    struct buf b;
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    buf_init(&b);
    buf_printf(&b, "<%s>", big);
    assert_int_equal(buf_avail(&b), sizeof(big) + 1);
    assert_int_equal(buf_head(&b)[0], '<');
    assert_int_equal(buf_head(&b)[sizeof(big)], '>');
    buf_fini(&b);
}

static void test_reserve_reuses_consumed_space(void **state)
{
    struct buf b;
    buf_init(&b);
    buf_reserve(&b, 1000);
    size_t cap = b.cap;
    buf_commit(&b, 900);
    buf_consume(&b, 800);
    buf_reserve(&b, 600); /* fits after compaction: no growth */
    assert_int_equal(b.cap, cap);
    assert_int_equal(buf_avail(&b), 100);
    buf_fini(&b);
}

static void test_json(void **state)
{
    struct buf b;
    struct json j;
    buf_init(&b);
    json_init(&j, &b);
    json_obj_begin(&j);
    json_kv_str(&j, "a", "q\"\\\n\x01");
    json_kv_int(&j, "n", -3);
    json_key(&j, "list");
    json_arr_begin(&j);
    json_bool(&j, 1);
    json_null(&j);
    json_strn(&j, "\xff", 1);
    json_arr_end(&j);
    json_key(&j, "empty");
    json_obj_begin(&j);
    json_obj_end(&j);
    json_obj_end(&j);
    buf_append(&b, "", 1);
    assert_string_equal(buf_head(&b),
                        "{\n  \"a\": \"q\\\"\\\\\\u000a\\u0001\",\n  \"n\": -3,\n  \"list\": [\n"
                        "    true,\n    null,\n    \"\\ufffd\"\n  ],\n  \"empty\": {}\n}\n");
    buf_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_consume),
        cmocka_unit_test(test_growth_and_long_printf),
        cmocka_unit_test(test_reserve_reuses_consumed_space),
        cmocka_unit_test(test_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
