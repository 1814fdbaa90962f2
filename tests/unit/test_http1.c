/*
 * Unit tests for src/http/http1.c: request and response heads, the
 * smuggling rules with their exact error codes, limits, connection
 * persistence, and the chunked decoder fed whole and byte by byte.
 *
 * Prefix tests copy each prefix into a heap block of exactly that size so
 * that AddressSanitizer catches any read past the length handed in.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http1.h"

/* struct http1_msg holds 128 fields; keep it off the stack. */
static struct http1_msg msg;

static int parse_req(const char *s)
{
    return http1_parse_request(s, strlen(s), NULL, &msg);
}

static int parse_resp(const char *s, int head_request)
{
    return http1_parse_response(s, strlen(s), NULL, head_request, &msg);
}

/* Parses s[0..len) from a heap copy of exactly len bytes. */
static int parse_req_exact(const char *s, size_t len, const struct http1_limits *lim)
{
    char *copy = malloc(len ? len : 1);
    int rc;

    assert_non_null(copy);
    memcpy(copy, s, len);
    rc = http1_parse_request(copy, len, lim, &msg);
    free(copy);
    return rc;
}

static void assert_str(const char *p, size_t n, const char *want)
{
    assert_non_null(p);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(p, want, n);
}

/* ---- requests -------------------------------------------------------- */

static void test_simple_get(void **state)
{
    static const char req[] = "GET /index.html?q=1 HTTP/1.1\r\n"
                              "Host:   example.com \t\r\n"
                              "User-Agent: t/1.0\r\n"
                              "X-Empty:\r\n"
                              "\r\n";
    const char *end = req + sizeof(req) - 1;

    assert_int_equal(parse_req(req), (int)(sizeof(req) - 1));
    assert_str(msg.method, msg.method_len, "GET");
    assert_str(msg.target, msg.target_len, "/index.html?q=1");
    assert_int_equal(msg.minor_version, 1);
    assert_int_equal(msg.n_hdrs, 3);
    assert_str(msg.hdrs[0].name, msg.hdrs[0].name_len, "Host");
    assert_str(msg.hdrs[0].value, msg.hdrs[0].value_len, "example.com");
    assert_str(msg.hdrs[1].value, msg.hdrs[1].value_len, "t/1.0");
    assert_int_equal(msg.hdrs[2].value_len, 0);
    assert_str(msg.host, msg.host_len, "example.com");
    assert_int_equal(msg.n_host, 1);
    assert_int_equal(msg.body, HTTP1_BODY_NONE);
    assert_int_equal(msg.keep_alive, 1);
    assert_int_equal(msg.expect_continue, 0);
    assert_null(msg.reason);
    /* Zero-copy: every string lies inside the buffer. */
    for (size_t i = 0; i < msg.n_hdrs; i++) {
        assert_true(msg.hdrs[i].name >= req && msg.hdrs[i].name + msg.hdrs[i].name_len <= end);
        assert_true(msg.hdrs[i].value >= req && msg.hdrs[i].value + msg.hdrs[i].value_len <= end);
    }
}

static void test_null_limits_and_obs_text(void **state)
{
    static const char req[] = "OPTIONS * HTTP/1.1\r\nHost: a\r\nX-Utf8: caf\xc3\xa9\r\n\r\n";

    assert_int_equal(http1_parse_request(req, sizeof(req) - 1, NULL, &msg), (int)sizeof(req) - 1);
    assert_str(msg.target, msg.target_len, "*");
    assert_str(msg.hdrs[1].value, msg.hdrs[1].value_len, "caf\xc3\xa9");

    /* Absurd limits are clamped, not trusted: the length must fit an int. */
    {
        struct http1_limits lim = {SIZE_MAX, SIZE_MAX, SIZE_MAX};

        assert_int_equal(http1_parse_request(req, sizeof(req) - 1, &lim, &msg), (int)sizeof(req) - 1);
        assert_int_equal(http1_parse_request(req, 10, &lim, &msg), 0);
    }
}

static void test_pipelined(void **state)
{
    static const char two[] = "GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
                              "POST /b HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n\r\nxyz";
    size_t first = strlen("GET /a HTTP/1.1\r\nHost: a\r\n\r\n");
    size_t len = sizeof(two) - 1;
    int rc;

    rc = http1_parse_request(two, len, NULL, &msg);
    assert_int_equal(rc, (int)first);
    assert_str(msg.target, msg.target_len, "/a");
    assert_int_equal(msg.body, HTTP1_BODY_NONE);

    rc = http1_parse_request(two + first, len - first, NULL, &msg);
    assert_int_equal(rc, (int)(len - first - 3));
    assert_str(msg.method, msg.method_len, "POST");
    assert_str(msg.target, msg.target_len, "/b");
    assert_str(msg.host, msg.host_len, "b");
    assert_int_equal(msg.body, HTTP1_BODY_LENGTH);
    assert_int_equal(msg.content_length, 3);
    assert_memory_equal(two + first + rc, "xyz", 3);

    assert_int_equal(http1_parse_request(two + len, 0, NULL, &msg), 0);
}

static void test_incomplete_every_prefix(void **state)
{
    static const char req[] = "\r\nPOST /upload?x=1 HTTP/1.1\r\n"
                              "Host: example.com:8080\r\n"
                              "Transfer-Encoding: chunked\r\n"
                              "Connection: keep-alive\r\n"
                              "Expect: 100-continue\r\n"
                              "\r\n";
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: x\r\n\r\n";
    size_t len = sizeof(req) - 1;

    for (size_t i = 0; i < len; i++) {
        int rc = parse_req_exact(req, i, NULL);

        if (rc != 0) {
            print_error("request prefix of %zu bytes returned %d\n", i, rc);
            fail();
        }
    }
    assert_int_equal(parse_req_exact(req, len, NULL), (int)len);
    assert_int_equal(msg.body, HTTP1_BODY_CHUNKED);
    assert_int_equal(msg.expect_continue, 1);

    len = sizeof(resp) - 1;
    for (size_t i = 0; i < len; i++) {
        char *copy = malloc(i ? i : 1);
        int rc;

        assert_non_null(copy);
        memcpy(copy, resp, i);
        rc = http1_parse_response(copy, i, NULL, 0, &msg);
        free(copy);
        if (rc != 0) {
            print_error("response prefix of %zu bytes returned %d\n", i, rc);
            fail();
        }
    }
    assert_int_equal(parse_resp(resp, 0), (int)len);
}

static void test_leading_empty_lines(void **state)
{
    char buf[256];
    const char *line = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";

    for (int n = 1; n <= 9; n++) {
        buf[0] = '\0';
        for (int i = 0; i < n; i++)
            strcat(buf, "\r\n");
        strcat(buf, line);
        if (n <= 8) {
            assert_int_equal(parse_req(buf), (int)strlen(buf));
            assert_str(msg.method, msg.method_len, "GET");
        } else {
            assert_int_equal(parse_req(buf), HTTP1_E_SYNTAX);
        }
    }
    assert_int_equal(parse_req("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP1_E_SYNTAX);
    assert_int_equal(parse_req("\r\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP1_E_SYNTAX);
    assert_int_equal(parse_req("\r\n\r\n"), 0);
}

/* One input with the error it must produce (0 < want means success). */
struct vector {
    const char *name;
    const char *in;
    int want;
};

static void run_request_vectors(const struct vector *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc = parse_req(v[i].in);
        int want = v[i].want > 0 ? (int)strlen(v[i].in) : v[i].want;

        if (rc != want) {
            print_error("vector '%s': got %d, want %d\n", v[i].name, rc, want);
            fail();
        }
    }
}

#define HOST "Host: a\r\n"

static void test_smuggling_vectors(void **state)
{
    static const struct vector v[] = {
        {"cl+te", "POST / HTTP/1.1\r\n" HOST "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
         HTTP1_E_SMUGGLE},
        {"te+cl", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
         HTTP1_E_SMUGGLE},
        {"te+cl bad te", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n",
         HTTP1_E_SMUGGLE},
        {"cl duplicate same", "POST / HTTP/1.1\r\n" HOST "Content-Length: 5\r\nContent-Length: 5\r\n\r\n",
         HTTP1_E_SMUGGLE},
        {"cl duplicate differ", "POST / HTTP/1.1\r\n" HOST "Content-Length: 5\r\ncontent-length: 6\r\n\r\n",
         HTTP1_E_SMUGGLE},
        {"cl list", "POST / HTTP/1.1\r\n" HOST "Content-Length: 5, 5\r\n\r\n", HTTP1_E_SMUGGLE},
        {"cl plus", "POST / HTTP/1.1\r\n" HOST "Content-Length: +5\r\n\r\n", HTTP1_E_SMUGGLE},
        {"cl negative", "POST / HTTP/1.1\r\n" HOST "Content-Length: -1\r\n\r\n", HTTP1_E_SMUGGLE},
        {"cl hex", "POST / HTTP/1.1\r\n" HOST "Content-Length: 0x10\r\n\r\n", HTTP1_E_SMUGGLE},
        {"cl inner space", "POST / HTTP/1.1\r\n" HOST "Content-Length: 1 0\r\n\r\n", HTTP1_E_SMUGGLE},
        {"cl empty", "POST / HTTP/1.1\r\n" HOST "Content-Length:\r\n\r\n", HTTP1_E_SMUGGLE},
        {"cl 2^63", "POST / HTTP/1.1\r\n" HOST "Content-Length: 9223372036854775808\r\n\r\n",
         HTTP1_E_SMUGGLE},
        {"cl 2^64", "POST / HTTP/1.1\r\n" HOST "Content-Length: 18446744073709551616\r\n\r\n",
         HTTP1_E_SMUGGLE},
        {"cl huge", "POST / HTTP/1.1\r\n" HOST "Content-Length: 99999999999999999999999999\r\n\r\n",
         HTTP1_E_SMUGGLE},
        {"cl 2^63-1", "POST / HTTP/1.1\r\n" HOST "Content-Length: 9223372036854775807\r\n\r\n", 1},
        {"cl leading zeros", "POST / HTTP/1.1\r\n" HOST "Content-Length: 007\r\n\r\n", 1},
        {"te gzip", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: gzip\r\n\r\n", HTTP1_E_TE},
        {"te chunked,gzip", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked, gzip\r\n\r\n",
         HTTP1_E_TE},
        {"te chunked twice", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked, chunked\r\n\r\n",
         HTTP1_E_TE},
        {"te chunked twice in fields",
         "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
         HTTP1_E_TE},
        {"te chunked then gzip field",
         "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
         HTTP1_E_TE},
        {"te trailing comma", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked,\r\n\r\n", HTTP1_E_TE},
        {"te empty element", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: gzip,,chunked\r\n\r\n",
         HTTP1_E_TE},
        {"te params", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked;q=1\r\n\r\n", HTTP1_E_TE},
        {"te xchunked", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: xchunked\r\n\r\n", HTTP1_E_TE},
        {"te chunked-x", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked-x\r\n\r\n", HTTP1_E_TE},
        {"te quoted", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: \"chunked\"\r\n\r\n", HTTP1_E_TE},
        {"te empty", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding:\r\n\r\n", HTTP1_E_TE},
        {"te identity", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: identity\r\n\r\n", HTTP1_E_TE},
        {"te in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP1_E_SMUGGLE},
        {"te vertical tab", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: \x0b" "chunked\r\n\r\n",
         HTTP1_E_SYNTAX},
        {"te upper + OWS", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding:  CHUNKED \t\r\n\r\n", 1},
        {"te gzip,chunked", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: gzip , chunked\r\n\r\n", 1},
        {"te split fields",
         "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 1},
        {"obs-fold", "GET / HTTP/1.1\r\n" HOST "X-A: 1\r\n  folded\r\n\r\n", HTTP1_E_SYNTAX},
        {"obs-fold tab", "GET / HTTP/1.1\r\n" HOST "X-A: 1\r\n\tfolded\r\n\r\n", HTTP1_E_SYNTAX},
        {"ws before first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", HTTP1_E_SYNTAX},
        {"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", HTTP1_E_SYNTAX},
        {"tab before colon", "POST / HTTP/1.1\r\n" HOST "Content-Length\t: 5\r\n\r\n", HTTP1_E_SYNTAX},
        {"te space before colon",
         "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n",
         HTTP1_E_SYNTAX},
        {"empty name", "GET / HTTP/1.1\r\n" HOST ": x\r\n\r\n", HTTP1_E_SYNTAX},
        {"no colon", "GET / HTTP/1.1\r\n" HOST "X-A\r\n\r\n", HTTP1_E_SYNTAX},
        {"name with @", "GET / HTTP/1.1\r\n" HOST "X@A: 1\r\n\r\n", HTTP1_E_SYNTAX},
        {"name with DEL", "GET / HTTP/1.1\r\n" HOST "X\x7f" "A: 1\r\n\r\n", HTTP1_E_SYNTAX},
        {"name with high byte", "GET / HTTP/1.1\r\n" HOST "X\xc3\xa9: 1\r\n\r\n", HTTP1_E_SYNTAX},
        {"bare CR in value", "GET / HTTP/1.1\r\n" HOST "X-A: 1\r2\r\n\r\n", HTTP1_E_SYNTAX},
        {"bare CR line end", "GET / HTTP/1.1\r\n" HOST "X-A: 1\rX-B: 2\r\n\r\n", HTTP1_E_SYNTAX},
        {"bare LF field end", "GET / HTTP/1.1\r\n" HOST "X-A: 1\n\r\n", HTTP1_E_SYNTAX},
        {"bare LF head end", "GET / HTTP/1.1\r\n" HOST "\n", HTTP1_E_SYNTAX},
        {"bare LF request line", "GET / HTTP/1.1\n" HOST "\r\n", HTTP1_E_SYNTAX},
        {"all bare LF", "GET / HTTP/1.1\nHost: a\n\n", HTTP1_E_SYNTAX},
        {"CR in request line", "GET / HTTP/1.1\r\r\n" HOST "\r\n", HTTP1_E_SYNTAX},
        {"SOH in value", "GET / HTTP/1.1\r\n" HOST "X-A: a\x01" "b\r\n\r\n", HTTP1_E_SYNTAX},
        {"DEL in value", "GET / HTTP/1.1\r\n" HOST "X-A: a\x7f" "b\r\n\r\n", HTTP1_E_SYNTAX},
        {"HTAB in value ok", "GET / HTTP/1.1\r\n" HOST "X-A: a\tb\r\n\r\n", 1},
        {"method bad char", "G(ET / HTTP/1.1\r\n" HOST "\r\n", HTTP1_E_METHOD},
        {"method empty", " / HTTP/1.1\r\n" HOST "\r\n", HTTP1_E_METHOD},
        {"method tab", "GET\t/ HTTP/1.1\r\n" HOST "\r\n", HTTP1_E_METHOD},
        {"method tls", "\x16\x03\x01\x02", HTTP1_E_METHOD},
        {"method only", "GET\r\n" HOST "\r\n", HTTP1_E_SYNTAX},
        {"method custom token", "M-SEARCH! / HTTP/1.1\r\n" HOST "\r\n", 1},
        {"target empty", "GET  HTTP/1.1\r\n" HOST "\r\n", HTTP1_E_SYNTAX},
        {"two spaces", "GET /  HTTP/1.1\r\n" HOST "\r\n", HTTP1_E_SYNTAX},
        {"target tab", "GET /a\tb HTTP/1.1\r\n" HOST "\r\n", HTTP1_E_SYNTAX},
        {"target CTL", "GET /a\x01" "b HTTP/1.1\r\n" HOST "\r\n", HTTP1_E_SYNTAX},
        {"target DEL", "GET /a\x7f HTTP/1.1\r\n" HOST "\r\n", HTTP1_E_SYNTAX},
        {"target high byte", "GET /caf\xc3\xa9 HTTP/1.1\r\n" HOST "\r\n", HTTP1_E_SYNTAX},
        {"http/0.9 line", "GET /\r\n\r\n", HTTP1_E_SYNTAX},
        {"trailing space", "GET / HTTP/1.1 \r\n" HOST "\r\n", HTTP1_E_SYNTAX},
        {"version lower", "GET / http/1.1\r\n" HOST "\r\n", HTTP1_E_SYNTAX},
        {"version long", "GET / HTTP/1.10\r\n" HOST "\r\n", HTTP1_E_SYNTAX},
        {"version 11", "GET / HTTP/11\r\n" HOST "\r\n", HTTP1_E_SYNTAX},
        {"version letter major", "GET / HTTP/a.1\r\n" HOST "\r\n", HTTP1_E_SYNTAX},
        {"version letter minor", "GET / HTTP/1.x\r\n" HOST "\r\n", HTTP1_E_SYNTAX},
        {"version 1.2", "GET / HTTP/1.2\r\n" HOST "\r\n", HTTP1_E_VERSION},
        {"version 2.0", "GET / HTTP/2.0\r\n" HOST "\r\n", HTTP1_E_VERSION},
        {"version 0.9", "GET / HTTP/0.9\r\n" HOST "\r\n", HTTP1_E_VERSION},
        {"no host 1.1", "GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", HTTP1_E_SYNTAX},
        {"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", HTTP1_E_SYNTAX},
        {"two hosts 1.0", "GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n", HTTP1_E_SYNTAX},
        {"host slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", HTTP1_E_SYNTAX},
        {"host at", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", HTTP1_E_SYNTAX},
        {"host space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", HTTP1_E_SYNTAX},
        {"host ipv6 port", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 1},
        {"host empty", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 1},
        {"no host 1.0", "GET / HTTP/1.0\r\n\r\n", 1},
    };

    /* NUL cannot sit in a C string literal's strlen, so these take sizeof. */
    static const char nul_value[] = "GET / HTTP/1.1\r\n" HOST "X-A: a\0b\r\n\r\n";
    static const char nul_name[] = "GET / HTTP/1.1\r\n" HOST "X\0A: b\r\n\r\n";
    static const char nul_target[] = "GET /\0 HTTP/1.1\r\n" HOST "\r\n";
    static const char tls_hello[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";

    run_request_vectors(v, sizeof(v) / sizeof(v[0]));
    assert_int_equal(http1_parse_request(nul_value, sizeof(nul_value) - 1, NULL, &msg), HTTP1_E_SYNTAX);
    assert_int_equal(http1_parse_request(nul_name, sizeof(nul_name) - 1, NULL, &msg), HTTP1_E_SYNTAX);
    assert_int_equal(http1_parse_request(nul_target, sizeof(nul_target) - 1, NULL, &msg),
                     HTTP1_E_SYNTAX);
    assert_int_equal(http1_parse_request(tls_hello, sizeof(tls_hello) - 1, NULL, &msg), HTTP1_E_METHOD);
}

static void test_te_gzip_chunked_is_chunked(void **state)
{
    assert_true(parse_req("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: gzip, chunked\r\n\r\n") > 0);
    assert_int_equal(msg.body, HTTP1_BODY_CHUNKED);
    assert_true(parse_req("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: Chunked\r\n\r\n") > 0);
    assert_int_equal(msg.body, HTTP1_BODY_CHUNKED);
    assert_int_equal(msg.content_length, 0);
}

static void test_err_status(void **state)
{
    static const struct {
        int err;
        int status;
    } map[] = {
        {HTTP1_E_SYNTAX, 400}, {HTTP1_E_TOO_LARGE, 431}, {HTTP1_E_URI_TOO_LONG, 414},
        {HTTP1_E_VERSION, 505}, {HTTP1_E_SMUGGLE, 400},  {HTTP1_E_TE, 501},
        {HTTP1_E_CHUNK, 400},   {HTTP1_E_METHOD, 400},   {-1000, 400},
    };

    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        assert_int_equal(http1_err_status(map[i].err), map[i].status);
        assert_non_null(http1_strerror(map[i].err));
        assert_true(strlen(http1_strerror(map[i].err)) > 0);
    }
    /* Every known code has its own message, distinct from the fallback. */
    for (int e = HTTP1_E_METHOD; e <= HTTP1_E_SYNTAX; e++) {
        assert_string_not_equal(http1_strerror(e), http1_strerror(-1000));
        for (int f = HTTP1_E_METHOD; f < e; f++)
            assert_string_not_equal(http1_strerror(e), http1_strerror(f));
    }

    /* The codes as the parser produces them map to the right status. */
    assert_int_equal(http1_err_status(parse_req("POST / HTTP/1.1\r\n" HOST
                                                "Transfer-Encoding: gzip\r\n\r\n")),
                     501);
    assert_int_equal(http1_err_status(parse_req("GET / HTTP/2.0\r\n\r\n")), 505);
    assert_int_equal(http1_err_status(parse_req("POST / HTTP/1.1\r\n" HOST
                                                "Content-Length: 1\r\nContent-Length: 1\r\n\r\n")),
                     400);
}

/* Values and targets are scanned a word at a time; put each kind of stop
 * byte at every offset of a long value so every lane of every word is hit. */
static void test_bad_byte_every_offset(void **state)
{
    static const struct {
        char byte;
        int in_value; /* expected rc class in a value: 1 ok, else error */
        int in_target;
    } v[] = {
        {'\t', 1, HTTP1_E_SYNTAX},    {'\x01', HTTP1_E_SYNTAX, HTTP1_E_SYNTAX},
        {'\x1f', HTTP1_E_SYNTAX, HTTP1_E_SYNTAX}, {'\x7f', HTTP1_E_SYNTAX, HTTP1_E_SYNTAX},
        {'\x80', 1, HTTP1_E_SYNTAX},  {'\xff', 1, HTTP1_E_SYNTAX},
        {' ', 1, HTTP1_E_SYNTAX},     {'\0', HTTP1_E_SYNTAX, HTTP1_E_SYNTAX},
        {'~', 1, 1},                  {'!', 1, 1},
    };
    char buf[256];

    for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++) {
        for (size_t off = 0; off < 40; off++) {
            char val[41];
            size_t n;
            int rc;

            memset(val, 'v', 40);
            val[40] = '\0';
            /* Field value: a leading or trailing SP/HTAB would be OWS. */
            n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX-V: %s\r\n\r\n", val);
            buf[strlen("GET / HTTP/1.1\r\nHost: a\r\nX-V: ") + off] = v[k].byte;
            rc = parse_req_exact(buf, n, NULL);
            if (v[k].in_value > 0) {
                int ows = (v[k].byte == ' ' || v[k].byte == '\t') && (off == 0 || off == 39);

                if (rc != (int)n || msg.hdrs[1].value_len != (ows ? 39u : 40u)) {
                    print_error("value byte %02x at %zu: rc %d\n", (unsigned char)v[k].byte, off, rc);
                    fail();
                }
            } else if (rc != v[k].in_value) {
                print_error("value byte %02x at %zu: rc %d\n", (unsigned char)v[k].byte, off, rc);
                fail();
            }

            /* Target (a SP inside it ends it early and breaks the line). */
            n = (size_t)snprintf(buf, sizeof(buf), "GET /%s HTTP/1.1\r\nHost: a\r\n\r\n", val);
            buf[5 + off] = v[k].byte;
            rc = parse_req_exact(buf, n, NULL);
            if (v[k].in_target > 0 ? (rc != (int)n || msg.target_len != 41) : rc != v[k].in_target) {
                print_error("target byte %02x at %zu: rc %d\n", (unsigned char)v[k].byte, off, rc);
                fail();
            }
        }
    }
}

/* ---- limits ------------------------------------------------------------ */

/* Builds "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ppp...\r\n\r\n" of exactly total bytes. */
static size_t build_padded(char *buf, size_t total)
{
    const char *pre = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ";
    const char *post = "\r\n\r\n";
    size_t pad = total - strlen(pre) - strlen(post);

    strcpy(buf, pre);
    memset(buf + strlen(pre), 'p', pad);
    strcpy(buf + strlen(pre) + pad, post);
    assert_int_equal(strlen(buf), total);
    return total;
}

static void test_limit_head_bytes(void **state)
{
    struct http1_limits lim;
    char buf[512];
    size_t n;

    http1_limits_default(&lim);
    assert_int_equal(lim.max_head_bytes, 16384);
    assert_int_equal(lim.max_headers, 100);
    assert_int_equal(lim.max_target_bytes, 8192);
    lim.max_head_bytes = 200;

    n = build_padded(buf, 200);
    assert_int_equal(parse_req_exact(buf, n, &lim), 200);
    /* Extra bytes after a head that fits do not count against it. */
    buf[n] = 'G';
    assert_int_equal(parse_req_exact(buf, n + 1, &lim), 200);

    n = build_padded(buf, 201);
    assert_int_equal(parse_req_exact(buf, n, &lim), HTTP1_E_TOO_LARGE);
    assert_int_equal(http1_err_status(HTTP1_E_TOO_LARGE), 431);
    /* Refused as soon as the limit is reached without an end in sight. */
    assert_int_equal(parse_req_exact(buf, 200, &lim), HTTP1_E_TOO_LARGE);
    assert_int_equal(parse_req_exact(buf, 199, &lim), 0);

    /* The same holds for responses. */
    memcpy(buf, "HTTP/1.1 200 OK\r\nX: ", 20);
    memset(buf + 20, 'x', 300);
    assert_int_equal(http1_parse_response(buf, 320, &lim, 0, &msg), HTTP1_E_TOO_LARGE);
    assert_int_equal(http1_parse_response(buf, 150, &lim, 0, &msg), 0);
}

static void test_limit_target(void **state)
{
    struct http1_limits lim;
    char buf[256];
    char target[64];

    http1_limits_default(&lim);
    lim.max_target_bytes = 50;

    target[0] = '/';
    memset(target + 1, 'a', 49);
    target[50] = '\0';
    snprintf(buf, sizeof(buf), "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", target);
    assert_int_equal(parse_req_exact(buf, strlen(buf), &lim), (int)strlen(buf));
    assert_int_equal(msg.target_len, 50);

    target[50] = 'a';
    target[51] = '\0';
    snprintf(buf, sizeof(buf), "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", target);
    assert_int_equal(parse_req_exact(buf, strlen(buf), &lim), HTTP1_E_URI_TOO_LONG);
    assert_int_equal(http1_err_status(HTTP1_E_URI_TOO_LONG), 414);
    /* Known before the line is complete: 4 + 51 bytes of target. */
    assert_int_equal(parse_req_exact(buf, 4 + 51, &lim), HTTP1_E_URI_TOO_LONG);
    assert_int_equal(parse_req_exact(buf, 4 + 50, &lim), 0);
}

static void test_limit_headers(void **state)
{
    struct http1_limits lim;
    char buf[1024];

    http1_limits_default(&lim);
    lim.max_headers = 4;

    strcpy(buf, "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n");
    assert_int_equal(parse_req_exact(buf, strlen(buf), &lim), (int)strlen(buf));
    assert_int_equal(msg.n_hdrs, 4);

    strcpy(buf, "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n");
    assert_int_equal(parse_req_exact(buf, strlen(buf), &lim), HTTP1_E_TOO_LARGE);

    /* max_headers above the array size is clamped to HTTP1_MAX_HEADERS. */
    lim.max_headers = 100000;
    lim.max_head_bytes = 100000;
    {
        static char big[8192];
        size_t off = (size_t)sprintf(big, "GET / HTTP/1.1\r\nHost: a\r\n");

        for (int i = 1; i < HTTP1_MAX_HEADERS; i++)
            off += (size_t)sprintf(big + off, "X%d: v\r\n", i);
        strcpy(big + off, "\r\n");
        assert_int_equal(parse_req_exact(big, strlen(big), &lim), (int)strlen(big));
        assert_int_equal(msg.n_hdrs, HTTP1_MAX_HEADERS);
        strcpy(big + off, "Y: v\r\n\r\n");
        assert_int_equal(parse_req_exact(big, strlen(big), &lim), HTTP1_E_TOO_LARGE);
    }
}

/* ---- persistence and expectations ---------------------------------------- */

static void test_keep_alive(void **state)
{
    static const struct {
        const char *in;
        unsigned keep_alive;
    } v[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", 1},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", 1},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: x\r\nConnection: close\r\n\r\n", 0},
        {"GET / HTTP/1.0\r\n\r\n", 0},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1},
        {"GET / HTTP/1.0\r\nConnection: foo, Keep-Alive\r\n\r\n", 1},
        {"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", 0},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", 0},
        {"GET / HTTP/1.0\r\nConnection: keep-alived\r\n\r\n", 0},
        {"GET / HTTP/1.0\r\nKeep-Alive: timeout=5\r\n\r\n", 0},
    };

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        int rc = parse_req(v[i].in);

        if (rc <= 0 || msg.keep_alive != v[i].keep_alive) {
            print_error("keep-alive case %zu: rc %d keep_alive %u\n", i, rc, msg.keep_alive);
            fail();
        }
    }
    assert_true(parse_req("GET / HTTP/1.0\r\n\r\n") > 0);
    assert_int_equal(msg.minor_version, 0);
}

static void test_expect_continue(void **state)
{
    assert_true(parse_req("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                          "Expect: 100-Continue\r\n\r\n") > 0);
    assert_int_equal(msg.expect_continue, 1);
    assert_true(parse_req("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n") > 0);
    assert_int_equal(msg.expect_continue, 0);
    assert_true(parse_req("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n") > 0);
    assert_int_equal(msg.expect_continue, 0);
    /* RFC 9110 10.1.1: ignored from an HTTP/1.0 client. */
    assert_true(parse_req("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n") > 0);
    assert_int_equal(msg.expect_continue, 0);
}

static void test_request_bodies(void **state)
{
    assert_true(parse_req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n") > 0);
    assert_int_equal(msg.body, HTTP1_BODY_LENGTH);
    assert_int_equal(msg.content_length, 42);
    assert_true(parse_req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n") > 0);
    assert_int_equal(msg.body, HTTP1_BODY_LENGTH);
    assert_int_equal(msg.content_length, 0);
    assert_true(parse_req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n") > 0);
    assert_true(msg.content_length == UINT64_C(9223372036854775807));
    assert_true(parse_req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n") > 0);
    assert_int_equal(msg.body, HTTP1_BODY_CHUNKED);
    assert_true(parse_req("POST / HTTP/1.1\r\nHost: a\r\n\r\n") > 0);
    assert_int_equal(msg.body, HTTP1_BODY_NONE);
}

/* ---- responses --------------------------------------------------------- */

static void test_response_basic(void **state)
{
    static const char r[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: t\r\n\r\nhello";

    assert_int_equal(parse_resp(r, 0), (int)(sizeof(r) - 1 - 5));
    assert_int_equal(msg.status, 200);
    assert_str(msg.reason, msg.reason_len, "OK");
    assert_int_equal(msg.minor_version, 1);
    assert_int_equal(msg.body, HTTP1_BODY_LENGTH);
    assert_int_equal(msg.content_length, 5);
    assert_int_equal(msg.keep_alive, 1);
    assert_null(msg.method);
    assert_null(msg.target);

    assert_true(parse_resp("HTTP/1.1 404 Not  Found \xff\r\nContent-Length: 0\r\n\r\n", 0) > 0);
    assert_int_equal(msg.status, 404);
    assert_str(msg.reason, msg.reason_len, "Not  Found \xff");

    /* Empty reason, with and without its space. */
    assert_true(parse_resp("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", 0) > 0);
    assert_int_equal(msg.reason_len, 0);
    assert_true(parse_resp("HTTP/1.1 299\r\nContent-Length: 0\r\n\r\n", 0) > 0);
    assert_int_equal(msg.status, 299);
    assert_int_equal(msg.reason_len, 0);
}

static void test_response_no_body(void **state)
{
    /* HEAD: fields describe the GET body, but there is none. */
    assert_true(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", 1) > 0);
    assert_int_equal(msg.body, HTTP1_BODY_NONE);
    assert_int_equal(msg.keep_alive, 1);
    assert_true(parse_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 1) > 0);
    assert_int_equal(msg.body, HTTP1_BODY_NONE);
    assert_true(parse_resp("HTTP/1.1 200 OK\r\n\r\n", 1) > 0);
    assert_int_equal(msg.body, HTTP1_BODY_NONE);
    assert_int_equal(msg.keep_alive, 1);

    assert_true(parse_resp("HTTP/1.1 204 No Content\r\n\r\n", 0) > 0);
    assert_int_equal(msg.body, HTTP1_BODY_NONE);
    assert_int_equal(msg.keep_alive, 1);
    assert_true(parse_resp("HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n", 0) > 0);
    assert_int_equal(msg.body, HTTP1_BODY_NONE);
    assert_int_equal(msg.content_length, 0);
    assert_true(parse_resp("HTTP/1.1 100 Continue\r\n\r\n", 0) > 0);
    assert_int_equal(msg.body, HTTP1_BODY_NONE);
    assert_true(parse_resp("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", 0) > 0);
    assert_int_equal(msg.body, HTTP1_BODY_NONE);
}

static void test_response_eof_and_te(void **state)
{
    assert_true(parse_resp("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", 0) > 0);
    assert_int_equal(msg.body, HTTP1_BODY_EOF);
    assert_int_equal(msg.keep_alive, 0);
    assert_true(parse_resp("HTTP/1.0 200 OK\r\n\r\n", 0) > 0);
    assert_int_equal(msg.body, HTTP1_BODY_EOF);

    /* TE wins over CL and the conflict is reported. */
    assert_true(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n", 0) > 0);
    assert_int_equal(msg.body, HTTP1_BODY_CHUNKED);
    assert_int_equal(msg.te_and_cl, 1);
    assert_int_equal(msg.keep_alive, 1);
    assert_true(parse_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0) > 0);
    assert_int_equal(msg.body, HTTP1_BODY_CHUNKED);
    assert_int_equal(msg.te_and_cl, 0);

    /* A coding that does not end in chunked leaves the body to EOF. */
    assert_true(parse_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 0) > 0);
    assert_int_equal(msg.body, HTTP1_BODY_EOF);
    assert_int_equal(msg.keep_alive, 0);
    assert_true(parse_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n"
                           "Content-Length: 3\r\n\r\n", 0) > 0);
    assert_int_equal(msg.body, HTTP1_BODY_EOF);
    assert_int_equal(msg.te_and_cl, 1);
    assert_true(parse_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 0) > 0);
    assert_int_equal(msg.body, HTTP1_BODY_EOF);
    /* HTTP/1.0 with TE is faulty framing: read to EOF, then close. */
    assert_true(parse_resp("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n"
                           "Connection: keep-alive\r\n\r\n", 0) > 0);
    assert_int_equal(msg.body, HTTP1_BODY_EOF);
    assert_int_equal(msg.keep_alive, 0);
    /* ... even when the request was HEAD and no body follows. */
    assert_true(parse_resp("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n"
                           "Connection: keep-alive\r\n\r\n", 1) > 0);
    assert_int_equal(msg.body, HTTP1_BODY_NONE);
    assert_int_equal(msg.keep_alive, 0);
    /* HTTP/1.0 with CL and keep-alive stays open. */
    assert_true(parse_resp("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n"
                           "Connection: keep-alive\r\n\r\n", 0) > 0);
    assert_int_equal(msg.body, HTTP1_BODY_LENGTH);
    assert_int_equal(msg.keep_alive, 1);
}

static void test_response_errors(void **state)
{
    static const struct vector v[] = {
        {"status 099", "HTTP/1.1 099 X\r\n\r\n", HTTP1_E_SYNTAX},
        {"status 600", "HTTP/1.1 600 X\r\n\r\n", HTTP1_E_SYNTAX},
        {"status 2 digits", "HTTP/1.1 20 X\r\n\r\n", HTTP1_E_SYNTAX},
        {"status 4 digits", "HTTP/1.1 2000 X\r\n\r\n", HTTP1_E_SYNTAX},
        {"status letters", "HTTP/1.1 2x0 X\r\n\r\n", HTTP1_E_SYNTAX},
        {"no space", "HTTP/1.1200 OK\r\n\r\n", HTTP1_E_SYNTAX},
        {"reason CTL", "HTTP/1.1 200 O\x01K\r\n\r\n", HTTP1_E_SYNTAX},
        {"reason bare LF", "HTTP/1.1 200 OK\n\r\n", HTTP1_E_SYNTAX},
        {"version", "HTTP/2.0 200 OK\r\n\r\n", HTTP1_E_VERSION},
        {"version junk", "HTTQ/1.1 200 OK\r\n\r\n", HTTP1_E_SYNTAX},
        {"leading CRLF", "\r\nHTTP/1.1 200 OK\r\n\r\n", HTTP1_E_SYNTAX},
        {"dup CL", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
         HTTP1_E_SMUGGLE},
        {"bad CL", "HTTP/1.1 200 OK\r\nContent-Length: 1a\r\n\r\n", HTTP1_E_SMUGGLE},
        {"obs-fold", "HTTP/1.1 200 OK\r\nX: 1\r\n 2\r\n\r\n", HTTP1_E_SYNTAX},
        {"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n", HTTP1_E_SYNTAX},
        {"ok", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", 1},
    };

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        int rc = parse_resp(v[i].in, 0);
        int want = v[i].want > 0 ? (int)strlen(v[i].in) : v[i].want;

        if (rc != want) {
            print_error("response vector '%s': got %d, want %d\n", v[i].name, rc, want);
            fail();
        }
    }
}

/* ---- chunked ---------------------------------------------------------- */

/*
 * Feeds in[0..len) in pieces of at most step bytes (0: all at once) and
 * collects the data into out. Returns the final feed result; *end_at is
 * where in the input the message ended (for result 2).
 */
static int feed_all(struct http1_chunked *c, const char *in, size_t len, size_t step, char *out,
                    size_t *out_len, size_t *end_at)
{
    size_t pos = 0;

    *out_len = 0;
    *end_at = 0;
    for (;;) {
        size_t avail = len - pos, consumed;
        size_t piece = step == 0 || step > avail ? avail : step;
        const char *data;
        size_t dlen;
        int rc;

        /* Each piece is its own heap block so overreads are caught. */
        char *copy = malloc(piece ? piece : 1);

        assert_non_null(copy);
        memcpy(copy, in + pos, piece);
        rc = http1_chunked_feed(c, copy, piece, &consumed, &data, &dlen);
        assert_true(consumed <= piece);
        if (rc == 1) {
            assert_true(dlen > 0);
            assert_true(data >= copy && data + dlen <= copy + consumed);
            memcpy(out + *out_len, data, dlen);
            *out_len += dlen;
        }
        free(copy);
        pos += consumed;
        if (rc == 2) {
            *end_at = pos;
            return 2;
        }
        if (rc < 0)
            return rc;
        if (rc == 0) {
            assert_int_equal(consumed, piece);
            if (pos == len)
                return 0;
        }
    }
}

static const char chunked_body[] = "5;name=value;q=\"a;b\"\r\nhello\r\n"
                                   "6 ; ext\r\n world\r\n"
                                   "000A\r\n, chunked!\r\n"
                                   "0\r\n"
                                   "X-Trailer: 1\r\n"
                                   "Checksum:\tabc \r\n"
                                   "\r\n"
                                   "GET /next";

static void test_chunked_whole(void **state)
{
    struct http1_chunked c;
    char out[128];
    size_t out_len, end_at;
    size_t len = sizeof(chunked_body) - 1;

    http1_chunked_init(&c);
    assert_int_equal(c.max_line, 4096);
    assert_int_equal(c.max_trailer, 16384);
    assert_int_equal(feed_all(&c, chunked_body, len, 0, out, &out_len, &end_at), 2);
    assert_int_equal(out_len, strlen("hello world, chunked!"));
    assert_memory_equal(out, "hello world, chunked!", out_len);
    assert_string_equal(chunked_body + end_at, "GET /next");

    /* After the end, the decoder consumes nothing more. */
    {
        size_t consumed = 99;
        const char *data;
        size_t dlen;

        assert_int_equal(http1_chunked_feed(&c, "0\r\n\r\n", 5, &consumed, &data, &dlen), 2);
        assert_int_equal(consumed, 0);
    }
}

static void test_chunked_zero_copy(void **state)
{
    static const char in[] = "3\r\nabc\r\n0\r\n\r\n";
    struct http1_chunked c;
    const char *data;
    size_t consumed, dlen;

    http1_chunked_init(&c);
    assert_int_equal(http1_chunked_feed(&c, in, sizeof(in) - 1, &consumed, &data, &dlen), 1);
    assert_ptr_equal(data, in + 3);
    assert_int_equal(dlen, 3);
    assert_int_equal(consumed, 6);
    assert_int_equal(http1_chunked_feed(&c, in + 6, sizeof(in) - 7, &consumed, &data, &dlen), 2);
    assert_int_equal(consumed, sizeof(in) - 7);
    assert_null(data);

    /* A chunk split across feeds comes out in pieces. */
    http1_chunked_init(&c);
    assert_int_equal(http1_chunked_feed(&c, "a\r\n01234", 8, &consumed, &data, &dlen), 1);
    assert_int_equal(dlen, 5);
    assert_int_equal(consumed, 8);
    assert_int_equal(http1_chunked_feed(&c, "56789\r\n", 7, &consumed, &data, &dlen), 1);
    assert_int_equal(dlen, 5);
    assert_int_equal(consumed, 5);
    assert_int_equal(http1_chunked_feed(&c, "\r\n", 2, &consumed, &data, &dlen), 0);
    assert_int_equal(consumed, 2);
}

static void test_chunked_byte_by_byte(void **state)
{
    struct http1_chunked c;
    char out[128];
    size_t out_len, end_at;
    size_t len = sizeof(chunked_body) - 1;

    for (size_t step = 1; step <= 7; step++) {
        http1_chunked_init(&c);
        assert_int_equal(feed_all(&c, chunked_body, len, step, out, &out_len, &end_at), 2);
        assert_int_equal(out_len, strlen("hello world, chunked!"));
        assert_memory_equal(out, "hello world, chunked!", out_len);
        assert_string_equal(chunked_body + end_at, "GET /next");
    }

    /* Every strict prefix of the message is "need more", never done. */
    for (size_t i = 0; i < len - strlen("GET /next"); i++) {
        http1_chunked_init(&c);
        assert_int_equal(feed_all(&c, chunked_body, i, 1, out, &out_len, &end_at), 0);
    }
}

static void test_chunked_errors(void **state)
{
    static const struct {
        const char *name;
        const char *in;
    } v[] = {
        {"empty size", "\r\nabc\r\n0\r\n\r\n"},
        {"non-hex", "g\r\n"},
        {"negative", "-1\r\n"},
        {"0x prefix", "0x5\r\nhello\r\n"},
        {"plus", "+5\r\nhello\r\n"},
        {"overflow", "ffffffffffffffffff\r\n"},
        {"2^63", "8000000000000000\r\n"},
        {"missing CRLF after data", "5\r\nhelloX\r\n0\r\n\r\n"},
        {"junk instead of CR", "5\r\nhelloX\n0\r\n\r\n"},
        {"LF only after data", "5\r\nhello\n0\r\n\r\n"},
        {"CR only after data", "5\r\nhello\r0\r\n\r\n"},
        {"bare LF after size", "5\nhello\r\n"},
        {"bare CR after size", "5\rhello\r\n"},
        {"space after size", "5 \r\nhello\r\n"},
        {"space in size", "5 5\r\n"},
        {"ext with CTL", "5;a=\x01\r\nhello\r\n"},
        {"ext with bare LF", "5;a\nhello\r\n"},
        {"trailer obs-fold", "0\r\nX: 1\r\n 2\r\n\r\n"},
        {"trailer no colon", "0\r\nX\r\n\r\n"},
        {"trailer space before colon", "0\r\nX : 1\r\n\r\n"},
        {"trailer bare LF", "0\r\nX: 1\n\r\n"},
        {"trailer bare CR", "0\r\nX: 1\rY\r\n\r\n"},
        {"trailer bad name byte", "0\r\nX@Y: 1\r\n\r\n"},
        {"trailer CTL", "0\r\nX: \x01\r\n\r\n"},
        {"end bare LF", "0\r\n\n"},
        {"end CR junk", "0\r\n\rx"},
    };

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        struct http1_chunked c;
        const char *data;
        size_t consumed, dlen, pos = 0, len = strlen(v[i].in);
        int rc;

        http1_chunked_init(&c);
        do {
            rc = http1_chunked_feed(&c, v[i].in + pos, len - pos, &consumed, &data, &dlen);
            pos += consumed;
        } while (rc == 1);
        if (rc != HTTP1_E_CHUNK) {
            print_error("chunk vector '%s': got %d\n", v[i].name, rc);
            fail();
        }
        /* The error sticks. */
        assert_int_equal(http1_chunked_feed(&c, "0\r\n\r\n", 5, &consumed, &data, &dlen),
                         HTTP1_E_CHUNK);
    }
}

static void test_chunked_limits(void **state)
{
    struct http1_chunked c;
    const char *data;
    size_t consumed, dlen;
    char buf[256];

    /* The largest size is accepted (the data just never comes). */
    http1_chunked_init(&c);
    assert_int_equal(http1_chunked_feed(&c, "7fffffffffffffff\r\n", 18, &consumed, &data, &dlen), 0);
    assert_int_equal(consumed, 18);
    /* Leading zeros do not overflow. */
    http1_chunked_init(&c);
    assert_int_equal(http1_chunked_feed(&c, "000000000000000000000001\r\nx", 27, &consumed, &data,
                                        &dlen),
                     1);
    assert_int_equal(dlen, 1);

    /* A size line of max_line bytes is fine, one more is not. */
    http1_chunked_init(&c);
    c.max_line = 20;
    memcpy(buf, "1;", 2);
    memset(buf + 2, 'e', 17);
    memcpy(buf + 19, "\r\nx", 3); /* 19 bytes + CR = 20 */
    assert_int_equal(http1_chunked_feed(&c, buf, 22, &consumed, &data, &dlen), 1);
    http1_chunked_init(&c);
    c.max_line = 20;
    memset(buf + 2, 'e', 18);
    memcpy(buf + 20, "\r\nx", 3);
    assert_int_equal(http1_chunked_feed(&c, buf, 23, &consumed, &data, &dlen), HTTP1_E_CHUNK);
    /* An endless extension is stopped without seeing a line end. */
    http1_chunked_init(&c);
    memset(buf + 2, 'e', 250);
    c.max_line = 100;
    assert_int_equal(http1_chunked_feed(&c, buf, 252, &consumed, &data, &dlen), HTTP1_E_CHUNK);

    /* Trailers: the total of field lines is bounded, counting from the
     * first byte of a line. */
    http1_chunked_init(&c);
    c.max_trailer = 17;
    strcpy(buf, "0\r\nA: 123456789012\r\nB: 1\r\n\r\n");
    assert_int_equal(http1_chunked_feed(&c, buf, strlen(buf), &consumed, &data, &dlen), HTTP1_E_CHUNK);
    assert_int_equal(consumed, strlen("0\r\nA: 123456789012\r\n"));

    http1_chunked_init(&c);
    c.max_trailer = 20;
    strcpy(buf, "0\r\nA: 123456789012\r\n\r\n"); /* one 17-byte field line */
    assert_int_equal(http1_chunked_feed(&c, buf, strlen(buf), &consumed, &data, &dlen), 2);
    http1_chunked_init(&c);
    c.max_trailer = 20;
    strcpy(buf, "0\r\nA: 123456789012\r\nB: 1\r\n\r\n"); /* 17 + 6 bytes */
    assert_int_equal(http1_chunked_feed(&c, buf, strlen(buf), &consumed, &data, &dlen), HTTP1_E_CHUNK);
    /* A single trailer line is bounded by max_line as well. */
    http1_chunked_init(&c);
    c.max_line = 10;
    strcpy(buf, "0\r\nA: 123456789012\r\n\r\n");
    assert_int_equal(http1_chunked_feed(&c, buf, strlen(buf), &consumed, &data, &dlen), HTTP1_E_CHUNK);
}

/* ---- helpers ------------------------------------------------------------ */

static void test_list_has(void **state)
{
    static const struct {
        const char *value;
        const char *token;
        int want;
    } v[] = {
        {"close", "close", 1},
        {"Close", "close", 1},
        {"keep-alive, Upgrade", "upgrade", 1},
        {"  keep-alive ,\tclose  ", "close", 1},
        {",,close,,", "close", 1},
        {"closed", "close", 0},
        {"xclose", "close", 0},
        {"clos", "close", 0},
        {"", "close", 0},
        {"close x", "close", 0},
        {"gzip;q=1.0, deflate ; q=0.5", "deflate", 1},
        {"gzip;q=1.0", "q=1.0", 0},
        {"foo;bar=\"close, x\", y", "close", 0},
        {"foo;bar=\"a\\\"close, x\", y", "x", 0},
        {"foo;bar=\"a\\\"close, x\", y", "y", 1},
        {"\"close\"", "close", 0},
        {"100-continue", "100-continue", 1},
        {"close", "", 0},
    };

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        int got = http1_list_has(v[i].value, strlen(v[i].value), v[i].token);

        if (got != v[i].want) {
            print_error("list_has('%s', '%s') = %d\n", v[i].value, v[i].token, got);
            fail();
        }
    }
    /* Only value[0..len) is looked at. */
    assert_int_equal(http1_list_has("a, close", 3, "close"), 0);
    assert_int_equal(http1_list_has("a, clos", 7, "clos"), 1);
}

static void test_find(void **state)
{
    const struct http1_hdr *h;

    assert_true(parse_req("GET / HTTP/1.1\r\nHost: a\r\nX-Dup: one\r\ncontent-TYPE: t/x\r\n"
                          "x-dup: two\r\n\r\n") > 0);
    h = http1_find(&msg, "Content-Type");
    assert_non_null(h);
    assert_str(h->value, h->value_len, "t/x");
    assert_ptr_equal(http1_find(&msg, "CONTENT-TYPE"), h);
    h = http1_find(&msg, "X-DUP");
    assert_non_null(h);
    assert_str(h->value, h->value_len, "one");
    assert_ptr_equal(http1_find(&msg, "host"), &msg.hdrs[0]);
    assert_null(http1_find(&msg, "Content-Typ"));
    assert_null(http1_find(&msg, "Content-Types"));
    assert_null(http1_find(&msg, "X-Missing"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_null_limits_and_obs_text),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_incomplete_every_prefix),
        cmocka_unit_test(test_leading_empty_lines),
        cmocka_unit_test(test_smuggling_vectors),
        cmocka_unit_test(test_te_gzip_chunked_is_chunked),
        cmocka_unit_test(test_err_status),
        cmocka_unit_test(test_bad_byte_every_offset),
        cmocka_unit_test(test_limit_head_bytes),
        cmocka_unit_test(test_limit_target),
        cmocka_unit_test(test_limit_headers),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_request_bodies),
        cmocka_unit_test(test_response_basic),
        cmocka_unit_test(test_response_no_body),
        cmocka_unit_test(test_response_eof_and_te),
        cmocka_unit_test(test_response_errors),
        cmocka_unit_test(test_chunked_whole),
        cmocka_unit_test(test_chunked_zero_copy),
        cmocka_unit_test(test_chunked_byte_by_byte),
        cmocka_unit_test(test_chunked_errors),
        cmocka_unit_test(test_chunked_limits),
        cmocka_unit_test(test_list_has),
        cmocka_unit_test(test_find),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
