/*
 * Unit tests for src/lib/conf.c: grammar, includes, schema checks with
 * file:line errors, defaults and value parsers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/conf.h"

static const struct conf_opt inner_opts[] = {
    {.name = "origin", .type = CONF_STR, .flags = CONF_REQUIRED},
    {.name = "alias", .type = CONF_STR, .flags = CONF_MULTI},
    {0},
};

static const struct conf_opt block_opts[] = {
    {.name = "listen", .type = CONF_ADDR, .flags = CONF_MULTI},
    {.name = "memory", .type = CONF_SIZE, .min = 1024, .max = INT64_C(1) << 40, .def = "256m"},
    {.name = "timeout", .type = CONF_DURATION, .min = 0, .max = 3600000, .def = "30s"},
    {.name = "eviction", .type = CONF_ENUM, .choices = "s3fifo|lru", .def = "s3fifo"},
    {.name = "tickets", .type = CONF_FLAG, .def = "on"},
    {.name = "root", .type = CONF_PATH},
    {.name = "certificate", .type = CONF_ARGS, .flags = CONF_MULTI, .min_args = 2, .max_args = 2},
    {.name = "publisher", .type = CONF_BLOCK, .flags = CONF_MULTI | CONF_NAMED, .block = inner_opts},
    {0},
};

static const struct conf_opt top_opts[] = {
    {.name = "workers", .type = CONF_INT, .min = 1, .max = 64, .def = "1"},
    {.name = "cache", .type = CONF_BLOCK, .block = block_opts},
    {0},
};

static struct conf *load(const char *text)
{
    return conf_load_string("/etc/ferry/test.conf", text, strlen(text), top_opts);
}

static void assert_error(const char *text, const char *expect)
{
    struct conf *c = load(text);
    assert_true(c->nerrors > 0);
    if (strstr(buf_head(&c->errors), expect) == NULL)
        fail_msg("expected \"%s\" in:\n%s", expect, buf_head(&c->errors));
    conf_destroy(c);
}

static void test_valid_and_defaults(void **state)
{
    struct conf *c = load("# comment\nworkers 4;\ncache {\n  listen 127.0.0.1:80;\n"
                          "  listen [::1]:8080;\n  memory 2m; timeout 1500ms;\n"
                          "  root 'www';\n  certificate \"a b.pem\" k.pem;\n"
                          "  publisher www.example.test { origin http://127.0.0.1:8080; alias x; alias y; }\n}\n");
    assert_int_equal(c->nerrors, 0);
    assert_int_equal(conf_int(&c->root, "workers"), 4);
    const struct conf_node *b = conf_find(&c->root, "cache");
    assert_non_null(b);
    assert_int_equal(conf_int(b, "memory"), 2 << 20);
    assert_int_equal(conf_int(b, "timeout"), 1500);
    assert_string_equal(conf_str(b, "eviction"), "s3fifo"); /* default */
    assert_int_equal(conf_int(b, "tickets"), 1);                 /* default */
    assert_string_equal(conf_str(b, "root"), "/etc/ferry/www");  /* made absolute */
    const struct conf_node *l = conf_find(b, "listen");
    assert_string_equal(l->args[0], "127.0.0.1:80");
    assert_string_equal(conf_next(l)->args[0], "[::1]:8080");
    assert_null(conf_next(conf_next(l)));
    const struct conf_node *cert = conf_find(b, "certificate");
    assert_string_equal(cert->args[0], "a b.pem");
    const struct conf_node *p = conf_find(b, "publisher");
    assert_string_equal(p->args[0], "www.example.test");
    assert_int_equal(p->line, 9);
    const struct conf_node *a = conf_find(p, "alias");
    assert_string_equal(conf_next(a)->args[0], "y");
    conf_destroy(c);
}

static void test_errors_have_file_line(void **state)
{
    assert_error("workers 0;", "/etc/ferry/test.conf:1: \"workers\": 0 is out of range [1, 64]");
    assert_error("\n\nbogus 1;", "/etc/ferry/test.conf:3: unknown directive \"bogus\"");
    assert_error("workers 1", "test.conf:1: \"workers\": expecting \";\" or \"{\"");
    assert_error("cache {\n", "unexpected end of file, expecting \"}\"");
    assert_error("}", "test.conf:1: unexpected \"}\"");
    assert_error("workers 1;\nworkers 2;", "test.conf:2: \"workers\" is duplicate (first at line 1)");
    assert_error("cache { memory 12q; }", "\"memory\": invalid size \"12q\"");
    assert_error("cache { timeout forever; }", "\"timeout\": invalid duration \"forever\"");
    assert_error("cache { eviction random; }", "\"eviction\": \"random\" is not one of s3fifo|lru");
    assert_error("cache { tickets yes; }", "\"tickets\": invalid on|off \"yes\"");
    assert_error("cache { listen localhost; }", "\"listen\": invalid address \"localhost\"");
    assert_error("cache { listen 1.2.3.4:70000; }", "invalid address");
    assert_error("cache { certificate a; }", "\"certificate\" takes 2 arguments");
    assert_error("cache { publisher { origin x; } }", "\"publisher\" takes one name before \"{\"");
    assert_error("cache { publisher p { } }", "\"origin\" is required in publisher");
    assert_error("workers { }", "\"workers\" does not take a block");
    assert_error("cache;", "\"cache\" needs a { } block");
    assert_error("workers \"unterminated;", "unterminated string");
    assert_error("workers 99999999999999999999;", "invalid integer");
    /* Found by fuzz_conf: a problem with an included file names the include line. */
    assert_error("\ninclude /;", "/etc/ferry/test.conf:2: include \"/\": not a regular file");
}

static void test_several_errors_reported(void **state)
{
    struct conf *c = load("workers 100;\ncache { memory 1; bogus x; }\n");
    assert_int_equal(c->nerrors, 3);
    conf_destroy(c);
}

static void test_nesting_limit(void **state)
{
    char text[4096] = "";
    for (int i = 0; i < 40; i++)
        strcat(text, "a { ");
    assert_error(text, "blocks nested deeper than 16");
}

static void test_include(void **state)
{
    char dir[] = "/tmp/ferry-conf-XXXXXX";
    char path[256], inc[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/main.conf", dir);
    snprintf(inc, sizeof(inc), "%s/part.conf", dir);
    FILE *f = fopen(inc, "w");
    fputs("workers 3;\n", f);
    fclose(f);
    f = fopen(path, "w");
    fputs("include part.conf;\ninclude \"none-*.conf\";\n", f);
    fclose(f);
    struct conf *c = conf_load(path, top_opts);
    assert_int_equal(c->nerrors, 0);
    assert_int_equal(conf_int(&c->root, "workers"), 3);
    conf_destroy(c);

    /* A missing plain file is an error; a self-include hits the depth limit. */
    f = fopen(path, "w");
    fputs("include missing.conf;\n", f);
    fclose(f);
    c = conf_load(path, top_opts);
    assert_true(c->nerrors > 0);
    assert_non_null(strstr(buf_head(&c->errors), "main.conf:1: include \"missing.conf\": no such file"));
    conf_destroy(c);
    f = fopen(path, "w");
    fputs("include main.conf;\n", f);
    fclose(f);
    c = conf_load(path, top_opts);
    assert_non_null(strstr(buf_head(&c->errors), "includes nested deeper than 16"));
    conf_destroy(c);
    unlink(path);
    unlink(inc);
    rmdir(dir);
}

static void test_value_parsers(void **state)
{
    int64_t v;
    assert_int_equal(conf_parse_size("1k", &v), 0);
    assert_int_equal(v, 1024);
    assert_int_equal(conf_parse_size("3G", &v), 0);
    assert_int_equal(v, INT64_C(3) << 30);
    assert_int_equal(conf_parse_size("-1", &v), -1);
    assert_int_equal(conf_parse_size("99999999999999999999t", &v), -1);
    assert_int_equal(conf_parse_duration("2", &v), 0);
    assert_int_equal(v, 2000);
    assert_int_equal(conf_parse_duration("5m", &v), 0);
    assert_int_equal(v, 300000);
    assert_int_equal(conf_parse_duration("1d", &v), 0);
    assert_int_equal(v, 86400000);
    assert_int_equal(conf_parse_duration("1w", &v), -1);
    assert_int_equal(conf_parse_int("-5", &v), 0);
    assert_int_equal(v, -5);
    assert_int_equal(conf_parse_int("5x", &v), -1);
}

static void test_schema_doc(void **state)
{
    struct buf b;
    buf_init(&b);
    conf_schema_doc(top_opts, "top level", &b);
    buf_append(&b, "", 1);
    assert_non_null(strstr(buf_head(&b), "| `workers` | integer | 1..64 | `1` |"));
    assert_non_null(strstr(buf_head(&b), "### cache > publisher"));
    buf_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_and_defaults),
        cmocka_unit_test(test_errors_have_file_line),
        cmocka_unit_test(test_several_errors_reported),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_include),
        cmocka_unit_test(test_value_parsers),
        cmocka_unit_test(test_schema_doc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
