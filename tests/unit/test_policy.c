/*
 * test_policy -- unit tests for src/cache/policy.c.
 *
 * Messages are written as raw HTTP/1.1 text and run through the real
 * parser (http1_parse_request/http1_parse_response), so the tests see
 * exactly what the cache role will hand to the policy functions. The
 * helpers keep a small ring of parsed messages so that a test can hold a
 * few at once.
 *
 * Each group pins one rule of RFC 9111, RFC 9213, RFC 5861 or RFC 9110
 * (cited at the test), including the boundary on both sides where there is
 * one, so that an off-by-one or a dropped rule fails a test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "cache/policy.h"
#include "http/date.h"
#include "http/http1.h"
#include "lib/buf.h"

/* A fixed "now" for the tests: Tue, 14 Nov 2023 22:13:20 GMT. */
#define T0 INT64_C(1700000000)

/* ---------------------------------------------------------------------
 * Helpers.
 */

#define N_SLOTS 8

struct slot {
    char text[8192];
    struct http1_msg msg;
};

static struct slot slots[N_SLOTS];
static unsigned next_slot;

static struct slot *take_slot(void)
{
    return &slots[next_slot++ % N_SLOTS];
}

/* Copies fields (lines separated by '\n') to out with CRLF line ends. */
static size_t put_fields(char *out, size_t cap, const char *fields)
{
    size_t o = 0;

    for (const char *p = fields; *p; p++) {
        if (*p == '\n') {
            assert_true(o + 2 < cap);
            out[o++] = '\r';
            out[o++] = '\n';
        } else {
            assert_true(o + 1 < cap);
            out[o++] = *p;
        }
    }
    if (o > 0) {
        assert_true(o + 2 < cap);
        out[o++] = '\r';
        out[o++] = '\n';
    }
    return o;
}

/* Parses a response with the given status and fields ('\n'-separated, printf format). */
__attribute__((format(printf, 2, 3))) static const struct http1_msg *resp(int status,
                                                                          const char *fmt, ...)
{
    struct slot *s = take_slot();
    struct http1_limits lim;
    char fields[4096];
    size_t n;
    va_list ap;
    int rc;

    va_start(ap, fmt);
    vsnprintf(fields, sizeof(fields), fmt, ap);
    va_end(ap);
    n = (size_t)snprintf(s->text, sizeof(s->text), "HTTP/1.1 %d X\r\n", status);
    n += put_fields(s->text + n, sizeof(s->text) - n, fields);
    n += (size_t)snprintf(s->text + n, sizeof(s->text) - n, "Content-Length: 0\r\n\r\n");
    http1_limits_default(&lim);
    rc = http1_parse_response(s->text, n, &lim, 0, &s->msg);
    assert_int_equal(rc, (int)n);
    return &s->msg;
}

/* Parses a request with the given method and fields (printf format). */
__attribute__((format(printf, 2, 3))) static const struct http1_msg *req(const char *method,
                                                                         const char *fmt, ...)
{
    struct slot *s = take_slot();
    struct http1_limits lim;
    char fields[4096];
    size_t n;
    va_list ap;
    int rc;

    va_start(ap, fmt);
    vsnprintf(fields, sizeof(fields), fmt, ap);
    va_end(ap);
    http1_limits_default(&lim);
    n = (size_t)snprintf(s->text, sizeof(s->text), "%s / HTTP/1.1\r\nHost: example.com\r\n", method);
    n += put_fields(s->text + n, sizeof(s->text) - n, fields);
    n += (size_t)snprintf(s->text + n, sizeof(s->text) - n, "\r\n");
    rc = http1_parse_request(s->text, n, &lim, &s->msg);
    assert_int_equal(rc, (int)n);
    return &s->msg;
}

/* An IMF-fixdate for t, from a small ring of buffers. */
static const char *D(int64_t t)
{
    static char bufs[8][32];
    static unsigned i;

    return http_date(t, bufs[i++ % 8]);
}

/* Metadata of a response received at T0 for a request sent at T0. */
static void meta(struct cache_meta *m, const struct http1_msg *r)
{
    cache_meta_from_response(m, r, T0, T0, "CDN-Cache-Control");
}

static struct cc parse_cc(const char *s)
{
    struct cc c;

    cc_init(&c);
    cc_parse(&c, s, strlen(s));
    return c;
}

/* ---------------------------------------------------------------------
 * cc_parse (RFC 9111 5.2).
 */

static void test_cc_init(void **state)
{
    struct cc c;

    memset(&c, 0xff, sizeof(c));
    cc_init(&c);
    assert_int_equal(c.max_age, -1);
    assert_int_equal(c.s_maxage, -1);
    assert_int_equal(c.max_stale, -1);
    assert_int_equal(c.min_fresh, -1);
    assert_int_equal(c.stale_while_revalidate, -1);
    assert_int_equal(c.stale_if_error, -1);
    assert_false(c.no_store || c.no_cache || c.private_ || c.public_ || c.present || c.invalid);
}

static void test_cc_basic(void **state)
{
    struct cc c = parse_cc("max-age=60, no-cache, public");

    assert_int_equal(c.max_age, 60);
    assert_true(c.no_cache);
    assert_true(c.public_);
    assert_false(c.no_store);
    assert_false(c.private_);
    assert_true(c.present);
    assert_false(c.invalid);

    c = parse_cc("must-revalidate,proxy-revalidate,must-understand,only-if-cached,"
                 "no-transform,immutable,stale-if-error=5,stale-while-revalidate=6,"
                 "min-fresh=7,s-maxage=8,max-stale=9,no-store,private");
    assert_true(c.must_revalidate && c.proxy_revalidate && c.must_understand);
    assert_true(c.only_if_cached && c.no_transform && c.immutable);
    assert_true(c.no_store && c.private_);
    assert_int_equal(c.stale_if_error, 5);
    assert_int_equal(c.stale_while_revalidate, 6);
    assert_int_equal(c.min_fresh, 7);
    assert_int_equal(c.s_maxage, 8);
    assert_int_equal(c.max_stale, 9);
    assert_int_equal(c.max_age, -1);
    assert_false(c.invalid);
}

static void test_cc_case(void **state)
{
    struct cc c = parse_cc("MAX-AGE=60, No-Store, PRIVATE, S-MaxAge=5");

    assert_int_equal(c.max_age, 60);
    assert_int_equal(c.s_maxage, 5);
    assert_true(c.no_store);
    assert_true(c.private_);
}

static void test_cc_quoted(void **state)
{
    struct cc c = parse_cc("max-age=\"120\", s-maxage=\"1\\2\"");

    assert_int_equal(c.max_age, 120);
    assert_int_equal(c.s_maxage, 12); /* quoted-pair unescaped */
    assert_false(c.invalid);

    /* A comma inside a quoted string does not split directives. */
    c = parse_cc("private=\"X-A, X-B\", max-age=5");
    assert_true(c.private_);
    assert_int_equal(c.max_age, 5);
    assert_false(c.invalid);

    c = parse_cc("max-age=\"\"");
    assert_int_equal(c.max_age, 0);
    assert_true(c.invalid);
}

static void test_cc_no_cache_field(void **state)
{
    struct cc c = parse_cc("no-cache=\"Set-Cookie\"");

    assert_true(c.no_cache);
    c = parse_cc("no-cache=\"Set-Cookie, X-Other\", public");
    assert_true(c.no_cache);
    assert_true(c.public_);
    c = parse_cc("private=Set-Cookie");
    assert_true(c.private_);
}

static void test_cc_multiple_lines(void **state)
{
    const struct http1_msg *r =
        resp(200, "Cache-Control: max-age=10\ncache-control: no-store\nCACHE-CONTROL: max-age=20, public");
    struct cc c;

    memset(&c, 0xff, sizeof(c)); /* cc_from_msg must reset */
    cc_from_msg(&c, r, "cache-control");
    assert_true(c.present);
    assert_true(c.no_store);
    assert_true(c.public_);
    assert_int_equal(c.max_age, 10); /* first occurrence wins (4.2.1) */
    assert_int_equal(c.s_maxage, -1);

    r = resp(200, "X: y");
    cc_from_msg(&c, r, "cache-control");
    assert_false(c.present);
    assert_int_equal(c.max_age, -1);

    /* Several directives of one line and repeats within it. */
    c = parse_cc("max-age=30, max-age=5");
    assert_int_equal(c.max_age, 30);
}

static void test_cc_bad_args(void **state)
{
    struct cc c;

    /* A malformed max-age/s-maxage is stale (4.2.1). */
    c = parse_cc("max-age=abc");
    assert_int_equal(c.max_age, 0);
    assert_true(c.invalid);
    c = parse_cc("s-maxage=-1");
    assert_int_equal(c.s_maxage, 0);
    assert_true(c.invalid);
    c = parse_cc("max-age=");
    assert_int_equal(c.max_age, 0);
    assert_true(c.invalid);
    c = parse_cc("max-age");
    assert_int_equal(c.max_age, 0);
    assert_true(c.invalid);
    c = parse_cc("max-age=5 6");
    assert_int_equal(c.max_age, 0);
    assert_true(c.invalid);
    c = parse_cc("max-age = 60");
    assert_int_equal(c.max_age, 0);
    assert_true(c.invalid);
    c = parse_cc("max-age=\"60");
    assert_int_equal(c.max_age, 0);
    assert_true(c.invalid);
    c = parse_cc("max-age=1.5");
    assert_int_equal(c.max_age, 0);
    assert_true(c.invalid);

    /* Other delta directives count as absent. */
    c = parse_cc("min-fresh=x");
    assert_int_equal(c.min_fresh, -1);
    assert_true(c.invalid);
    c = parse_cc("stale-while-revalidate");
    assert_int_equal(c.stale_while_revalidate, -1);
    assert_true(c.invalid);
    c = parse_cc("stale-if-error=+5");
    assert_int_equal(c.stale_if_error, -1);
    assert_true(c.invalid);
    c = parse_cc("max-stale=x");
    assert_int_equal(c.max_stale, -1);
    assert_true(c.invalid);

    /* A bare max-stale is valid: any staleness. */
    c = parse_cc("max-stale");
    assert_true(c.max_stale == INT64_MAX);
    assert_false(c.invalid);

    /* An element without a name is skipped; the rest still counts. */
    c = parse_cc("=5, public, \"x\"");
    assert_true(c.invalid);
    assert_true(c.public_);
}

static void test_cc_caps(void **state)
{
    struct cc c;

    c = parse_cc("max-age=2147483647");
    assert_int_equal(c.max_age, INT64_C(2147483647));
    c = parse_cc("max-age=2147483648");
    assert_int_equal(c.max_age, INT64_C(2147483648));
    c = parse_cc("max-age=2147483649");
    assert_int_equal(c.max_age, INT64_C(2147483648));
    c = parse_cc("s-maxage=999999999999999999999999999999");
    assert_int_equal(c.s_maxage, INT64_C(2147483648));
    assert_false(c.invalid);
    c = parse_cc("max-age=0000000000000000000000000000000000000060");
    assert_int_equal(c.max_age, 60);
}

static void test_cc_unknown_and_empty(void **state)
{
    struct cc c = parse_cc("foo=bar, baz, qux=\"a,b\", max-age=5");

    assert_int_equal(c.max_age, 5);
    assert_false(c.invalid);
    c = parse_cc("");
    assert_false(c.present);
    c = parse_cc(" , ,, ");
    assert_false(c.present);
    assert_false(c.invalid);
    c = parse_cc(",,max-age=7,,");
    assert_int_equal(c.max_age, 7);
    assert_true(c.present);
}

/* ---------------------------------------------------------------------
 * Freshness lifetime (RFC 9111 4.2.1, 4.2.2).
 */

static void test_lifetime_precedence(void **state)
{
    struct cache_meta m;

    meta(&m, resp(200, "Date: %s\nExpires: %s\nLast-Modified: %s\n"
                       "Cache-Control: max-age=50, s-maxage=100",
                  D(T0), D(T0 + 200), D(T0 - 1000)));
    assert_int_equal(cache_lifetime(&m, 10, 86400), 100);

    meta(&m, resp(200, "Date: %s\nExpires: %s\nLast-Modified: %s\nCache-Control: max-age=50",
                  D(T0), D(T0 + 200), D(T0 - 1000)));
    assert_int_equal(cache_lifetime(&m, 10, 86400), 50);

    /* max-age=0 is explicit and beats a later Expires. */
    meta(&m, resp(200, "Date: %s\nExpires: %s\nCache-Control: max-age=0", D(T0), D(T0 + 200)));
    assert_int_equal(cache_lifetime(&m, 10, 86400), 0);

    meta(&m, resp(200, "Date: %s\nExpires: %s\nLast-Modified: %s", D(T0), D(T0 + 200),
                  D(T0 - 1000)));
    assert_int_equal(cache_lifetime(&m, 10, 86400), 200);

    /* Heuristic: 10% of Date - Last-Modified ... */
    meta(&m, resp(200, "Date: %s\nLast-Modified: %s", D(T0), D(T0 - 1000)));
    assert_int_equal(cache_lifetime(&m, 10, 86400), 100);
    assert_int_equal(cache_lifetime(&m, 20, 86400), 200);
    /* ... capped. */
    meta(&m, resp(200, "Date: %s\nLast-Modified: %s", D(T0), D(T0 - 10000000)));
    assert_int_equal(cache_lifetime(&m, 10, 86400), 86400);
    assert_int_equal(cache_lifetime(&m, 10, 3600), 3600);
    assert_int_equal(cache_lifetime(&m, 0, 3600), 0);

    /* Nothing to go on. */
    meta(&m, resp(200, "Date: %s", D(T0)));
    assert_int_equal(cache_lifetime(&m, 10, 86400), 0);
    /* Last-Modified after Date gives nothing. */
    meta(&m, resp(200, "Date: %s\nLast-Modified: %s", D(T0), D(T0 + 50)));
    assert_int_equal(cache_lifetime(&m, 10, 86400), 0);
}

static void test_lifetime_heuristic_status(void **state)
{
    static const int yes[] = {200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501};
    static const int no[] = {201, 302, 303, 307, 400, 403, 500, 502, 503};
    struct cache_meta m;

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        meta(&m, resp(yes[i], "Date: %s\nLast-Modified: %s", D(T0), D(T0 - 1000)));
        assert_int_equal(cache_lifetime(&m, 10, 86400), 100);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        meta(&m, resp(no[i], "Date: %s\nLast-Modified: %s", D(T0), D(T0 - 1000)));
        assert_int_equal(cache_lifetime(&m, 10, 86400), 0);
    }
    /* public makes any status heuristically cacheable (4.2.2, 5.2.2.9). */
    meta(&m, resp(302, "Date: %s\nLast-Modified: %s\nCache-Control: public", D(T0), D(T0 - 1000)));
    assert_int_equal(cache_lifetime(&m, 10, 86400), 100);
}

static void test_expires_invalid(void **state)
{
    struct cache_meta m;

    meta(&m, resp(200, "Date: %s\nExpires: 0\nLast-Modified: %s", D(T0), D(T0 - 1000)));
    assert_int_equal(m.expires, 0);
    /* Already expired: no heuristic either. */
    assert_int_equal(cache_lifetime(&m, 10, 86400), 0);
    assert_int_equal(cache_storable(&m, NULL, 0, 1), STORE_OK);

    meta(&m, resp(200, "Date: %s\nExpires: tomorrow", D(T0)));
    assert_int_equal(m.expires, 0);
    assert_int_equal(cache_lifetime(&m, 10, 86400), 0);

    /* Expires in the past is expired, not negative. */
    meta(&m, resp(200, "Date: %s\nExpires: %s", D(T0), D(T0 - 500)));
    assert_int_equal(cache_lifetime(&m, 10, 86400), 0);

    /* Absent is -1. */
    meta(&m, resp(200, "Date: %s", D(T0)));
    assert_int_equal(m.expires, -1);
}

static void test_expires_relative_to_date(void **state)
{
    struct cache_meta m;

    /* Lifetime is Expires - Date, whatever our own clock says (4.2.1). */
    meta(&m, resp(200, "Date: %s\nExpires: %s", D(T0 - 100), D(T0 + 100)));
    assert_int_equal(m.date, T0 - 100);
    assert_int_equal(cache_lifetime(&m, 10, 86400), 200);

    /* Without Date, the response time stands in. */
    meta(&m, resp(200, "Expires: %s", D(T0 + 100)));
    assert_int_equal(m.date, T0);
    assert_int_equal(cache_lifetime(&m, 10, 86400), 100);
    meta(&m, resp(200, "Date: yesterday\nExpires: %s", D(T0 + 100)));
    assert_int_equal(m.date, T0);
}

/* ---------------------------------------------------------------------
 * Age (RFC 9111 4.2.3, 5.1).
 */

static void test_age(void **state)
{
    struct cache_meta m;

    /* request at T0, response at T0+2, Date ten seconds behind, Age 5:
     * apparent_age = 12, corrected_age_value = 5 + 2 = 7, initial = 12. */
    cache_meta_from_response(&m, resp(200, "Date: %s\nAge: 5", D(T0 - 10)), T0, T0 + 2, NULL);
    assert_int_equal(m.age_value, 5);
    assert_int_equal(cache_age(&m, T0 + 2), 12);
    assert_int_equal(cache_age(&m, T0 + 32), 42);

    /* A large Age from upstream dominates. */
    cache_meta_from_response(&m, resp(200, "Date: %s\nAge: 100", D(T0 + 2)), T0, T0 + 2, NULL);
    assert_int_equal(cache_age(&m, T0 + 2), 102);
    assert_int_equal(cache_age(&m, T0 + 12), 112);

    /* A Date in the future gives no negative apparent age. */
    cache_meta_from_response(&m, resp(200, "Date: %s", D(T0 + 100)), T0, T0 + 1, NULL);
    assert_int_equal(cache_age(&m, T0 + 1), 1);

    /* Never negative, even when now is before the response time. */
    cache_meta_from_response(&m, resp(200, "Date: %s", D(T0)), T0, T0, NULL);
    assert_int_equal(cache_age(&m, T0 - 1000), 0);
    assert_int_equal(cache_age(&m, T0), 0);

    /* Invalid Age is ignored; a list uses its first member (5.1). */
    cache_meta_from_response(&m, resp(200, "Date: %s\nAge: abc", D(T0)), T0, T0, NULL);
    assert_int_equal(m.age_value, 0);
    cache_meta_from_response(&m, resp(200, "Date: %s\nAge: -5", D(T0)), T0, T0, NULL);
    assert_int_equal(m.age_value, 0);
    cache_meta_from_response(&m, resp(200, "Date: %s\nAge: 10, 20", D(T0)), T0, T0, NULL);
    assert_int_equal(m.age_value, 10);
    cache_meta_from_response(&m, resp(200, "Date: %s\nAge: 99999999999999999999", D(T0)), T0, T0,
                             NULL);
    assert_int_equal(m.age_value, INT64_C(2147483648));

    /* Extreme times saturate instead of wrapping. */
    m.response_time = INT64_MIN;
    m.request_time = INT64_MAX;
    m.date = INT64_MAX;
    assert_true(cache_age(&m, INT64_MAX) >= 0);
}

/* ---------------------------------------------------------------------
 * Storing (RFC 9111 3, 3.5; Ferry policy).
 */

static enum store_verdict storable(const struct http1_msg *r, const char *req_cc, int has_auth)
{
    struct cache_meta m;
    struct cc rc = parse_cc(req_cc);

    meta(&m, r);
    return cache_storable(&m, &rc, has_auth, 1);
}

static void test_store_ok(void **state)
{
    assert_int_equal(storable(resp(200, "Cache-Control: max-age=60"), "", 0), STORE_OK);
    assert_int_equal(storable(resp(301, "Cache-Control: max-age=60"), "", 0), STORE_OK);
    /* Explicit freshness makes any final status storable (3). */
    assert_int_equal(storable(resp(302, "Cache-Control: max-age=60"), "", 0), STORE_OK);
    assert_int_equal(storable(resp(599, "Cache-Control: max-age=60"), "", 0), STORE_OK);
    /* no-cache is storable: it only forces revalidation. */
    assert_int_equal(storable(resp(200, "Cache-Control: no-cache, max-age=60"), "", 0), STORE_OK);
}

static void test_store_method(void **state)
{
    struct cache_meta m;

    meta(&m, resp(200, "Cache-Control: max-age=60, public"));
    assert_int_equal(cache_storable(&m, NULL, 0, 0), STORE_NO_METHOD);
    assert_int_equal(cache_storable(&m, NULL, 0, 1), STORE_OK);
}

static void test_store_status(void **state)
{
    struct cache_meta m;

    assert_int_equal(storable(resp(206, "Cache-Control: max-age=60"), "", 0), STORE_NO_STATUS);
    assert_int_equal(storable(resp(304, "Cache-Control: max-age=60"), "", 0), STORE_NO_STATUS);
    /* A 1xx is not final; set by hand since it has no body framing here. */
    meta(&m, resp(200, "Cache-Control: max-age=60"));
    m.status = 103;
    assert_int_equal(cache_storable(&m, NULL, 0, 1), STORE_NO_STATUS);
    m.status = 199;
    assert_int_equal(cache_storable(&m, NULL, 0, 1), STORE_NO_STATUS);
    m.status = 200;
    assert_int_equal(cache_storable(&m, NULL, 0, 1), STORE_OK);
}

static void test_store_must_understand(void **state)
{
    /* Understood status: no-store is ignored (5.2.2.3). */
    assert_int_equal(storable(resp(200, "Cache-Control: must-understand, no-store, max-age=60"), "", 0),
                     STORE_OK);
    assert_int_equal(storable(resp(404, "Cache-Control: no-store, must-understand, max-age=60"), "", 0),
                     STORE_OK);
    /* Status not understood: not stored. */
    assert_int_equal(storable(resp(299, "Cache-Control: must-understand, no-store, max-age=60"), "", 0),
                     STORE_NO_STATUS);
    assert_int_equal(storable(resp(299, "Cache-Control: must-understand, max-age=60"), "", 0),
                     STORE_NO_STATUS);
    /* Without must-understand the same 299 is fine. */
    assert_int_equal(storable(resp(299, "Cache-Control: max-age=60"), "", 0), STORE_OK);
    /* A request no-store still wins. */
    assert_int_equal(storable(resp(200, "Cache-Control: must-understand, no-store, max-age=60"),
                              "no-store", 0),
                     STORE_NO_STORE);
}

static void test_store_no_store(void **state)
{
    assert_int_equal(storable(resp(200, "Cache-Control: no-store, max-age=60"), "", 0),
                     STORE_NO_STORE);
    assert_int_equal(storable(resp(200, "Cache-Control: max-age=60\nCache-Control: NO-STORE"), "", 0),
                     STORE_NO_STORE);
    assert_int_equal(storable(resp(200, "Cache-Control: max-age=60, public"), "no-store", 0),
                     STORE_NO_STORE);
    assert_int_equal(storable(resp(200, "Cache-Control: max-age=60, public"), "no-cache", 0),
                     STORE_OK);
}

static void test_store_private(void **state)
{
    assert_int_equal(storable(resp(200, "Cache-Control: private, max-age=60"), "", 0), STORE_PRIVATE);
    assert_int_equal(storable(resp(200, "Cache-Control: private=\"Set-Cookie\", max-age=60"), "", 0),
                     STORE_PRIVATE);
    assert_int_equal(storable(resp(200, "Cache-Control: private, public, s-maxage=60"), "", 0),
                     STORE_PRIVATE);
}

static void test_store_authorization(void **state)
{
    assert_int_equal(storable(resp(200, "Cache-Control: max-age=60"), "", 1), STORE_AUTHORIZATION);
    assert_int_equal(storable(resp(200, "Cache-Control: max-age=60"), "", 0), STORE_OK);
    assert_int_equal(storable(resp(200, "Cache-Control: max-age=60, public"), "", 1), STORE_OK);
    assert_int_equal(storable(resp(200, "Cache-Control: s-maxage=60"), "", 1), STORE_OK);
    assert_int_equal(storable(resp(200, "Cache-Control: max-age=60, must-revalidate"), "", 1),
                     STORE_OK);
    assert_int_equal(storable(resp(200, "Cache-Control: max-age=60, proxy-revalidate"), "", 1),
                     STORE_AUTHORIZATION);
}

static void test_store_vary_star(void **state)
{
    assert_int_equal(storable(resp(200, "Cache-Control: max-age=60\nVary: Accept, *"), "", 0),
                     STORE_VARY_STAR);
    assert_int_equal(storable(resp(200, "Cache-Control: max-age=60\nVary: Accept\nVary: *"), "", 0),
                     STORE_VARY_STAR);
    assert_int_equal(storable(resp(200, "Cache-Control: max-age=60\nVary: Accept"), "", 0), STORE_OK);
}

static void test_store_set_cookie(void **state)
{
    assert_int_equal(storable(resp(200, "Cache-Control: max-age=60\nSet-Cookie: a=b"), "", 0),
                     STORE_SET_COOKIE);
    assert_int_equal(storable(resp(200, "Cache-Control: max-age=60, public\nSet-Cookie: a=b"), "", 0),
                     STORE_OK);
    assert_int_equal(storable(resp(200, "Cache-Control: s-maxage=60\nSet-Cookie: a=b"), "", 0),
                     STORE_OK);
    assert_int_equal(storable(resp(200, "Last-Modified: %s\nset-cookie: a=b", D(T0 - 100)), "", 0),
                     STORE_SET_COOKIE);
}

static void test_store_no_freshness(void **state)
{
    assert_int_equal(storable(resp(200, "Date: %s", D(T0)), "", 0), STORE_NO_FRESHNESS);
    /* Heuristically cacheable and revalidatable. */
    assert_int_equal(storable(resp(200, "ETag: \"x\""), "", 0), STORE_OK);
    assert_int_equal(storable(resp(404, "Last-Modified: %s", D(T0 - 100)), "", 0), STORE_OK);
    /* Not heuristically cacheable: a validator does not help. */
    assert_int_equal(storable(resp(302, "ETag: \"x\""), "", 0), STORE_NO_FRESHNESS);
    assert_int_equal(storable(resp(500, "Last-Modified: %s", D(T0 - 100)), "", 0),
                     STORE_NO_FRESHNESS);
    /* Explicit freshness of any kind. */
    assert_int_equal(storable(resp(302, "Expires: %s", D(T0 + 100)), "", 0), STORE_OK);
    assert_int_equal(storable(resp(302, "Cache-Control: s-maxage=0"), "", 0), STORE_OK);
    /* public extends heuristics to any status. */
    assert_int_equal(storable(resp(500, "Cache-Control: public\nETag: \"x\""), "", 0), STORE_OK);
    assert_int_equal(storable(resp(500, "Cache-Control: public"), "", 0), STORE_NO_FRESHNESS);
}

static void test_verdict_str(void **state)
{
    static const enum store_verdict all[] = {
        STORE_OK, STORE_NO_METHOD, STORE_NO_STATUS, STORE_NO_STORE, STORE_PRIVATE,
        STORE_AUTHORIZATION, STORE_NO_FRESHNESS, STORE_VARY_STAR, STORE_SET_COOKIE,
    };
    size_t n = sizeof(all) / sizeof(all[0]);

    for (size_t i = 0; i < n; i++) {
        assert_non_null(cache_verdict_str(all[i]));
        assert_string_not_equal(cache_verdict_str(all[i]), "unknown");
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(cache_verdict_str(all[i]), cache_verdict_str(all[j]));
    }
    assert_string_equal(cache_verdict_str(STORE_OK), "ok");
    assert_string_equal(cache_verdict_str((enum store_verdict)99), "unknown");
}

/* ---------------------------------------------------------------------
 * CDN-Cache-Control (RFC 9213).
 */

static void test_tcc_overrides(void **state)
{
    struct cache_meta m;

    meta(&m, resp(200, "Cache-Control: no-store\nCDN-Cache-Control: max-age=60"));
    assert_true(m.use_tcc);
    assert_ptr_equal(cache_meta_cc(&m), &m.tcc);
    assert_int_equal(cache_storable(&m, NULL, 0, 1), STORE_OK);
    assert_int_equal(cache_lifetime(&m, 10, 86400), 60);

    meta(&m, resp(200, "Cache-Control: max-age=60\nCDN-Cache-Control: no-store"));
    assert_int_equal(cache_storable(&m, NULL, 0, 1), STORE_NO_STORE);

    meta(&m, resp(200, "Cache-Control: max-age=60, public\ncdn-cache-control: private"));
    assert_int_equal(cache_storable(&m, NULL, 0, 1), STORE_PRIVATE);

    /* CDN-CC max-age beats CC s-maxage: CC is not looked at. */
    meta(&m, resp(200, "Cache-Control: s-maxage=600\nCDN-Cache-Control: max-age=60"));
    assert_int_equal(cache_lifetime(&m, 10, 86400), 60);

    /* Without the targeted field, Cache-Control governs. */
    meta(&m, resp(200, "Cache-Control: no-store"));
    assert_false(m.use_tcc);
    assert_ptr_equal(cache_meta_cc(&m), &m.cc);
    assert_int_equal(cache_storable(&m, NULL, 0, 1), STORE_NO_STORE);
}

static void test_tcc_invalid_falls_back(void **state)
{
    struct cache_meta m;

    meta(&m, resp(200, "Cache-Control: max-age=30\nCDN-Cache-Control: max-age=abc"));
    assert_true(m.tcc.present);
    assert_true(m.tcc.invalid);
    assert_false(m.use_tcc);
    assert_int_equal(cache_lifetime(&m, 10, 86400), 30);

    /* An empty targeted field does not switch Cache-Control off. */
    meta(&m, resp(200, "Cache-Control: no-store\nCDN-Cache-Control: "));
    assert_false(m.use_tcc);
    assert_int_equal(cache_storable(&m, NULL, 0, 1), STORE_NO_STORE);

    /* A cache that names no targeted field ignores CDN-Cache-Control. */
    cache_meta_from_response(&m, resp(200, "Cache-Control: no-store\nCDN-Cache-Control: max-age=60"),
                             T0, T0, NULL);
    assert_false(m.use_tcc);
    assert_int_equal(cache_storable(&m, NULL, 0, 1), STORE_NO_STORE);

    /* Another target name selects another field. */
    cache_meta_from_response(&m, resp(200, "Cache-Control: no-store\nFerry-Cache-Control: max-age=9"),
                             T0, T0, "ferry-cache-control");
    assert_true(m.use_tcc);
    assert_int_equal(cache_lifetime(&m, 10, 86400), 9);
}

static void test_tcc_ignores_expires(void **state)
{
    struct cache_meta m;

    /* RFC 9213 2.2: with a valid targeted field, Expires is ignored too. */
    meta(&m, resp(200, "Date: %s\nExpires: %s\nCDN-Cache-Control: must-revalidate", D(T0),
                  D(T0 + 100)));
    assert_true(m.use_tcc);
    assert_int_equal(cache_lifetime(&m, 10, 86400), 0);
    assert_int_equal(cache_storable(&m, NULL, 0, 1), STORE_NO_FRESHNESS);

    /* Heuristics still apply under the targeted field. */
    meta(&m, resp(200, "Date: %s\nExpires: %s\nLast-Modified: %s\nCDN-Cache-Control: public", D(T0),
                  D(T0 + 5000), D(T0 - 1000)));
    assert_int_equal(cache_lifetime(&m, 10, 86400), 100);

    /* Without it, the same Expires counts. */
    meta(&m, resp(200, "Date: %s\nExpires: %s\nCache-Control: must-revalidate", D(T0), D(T0 + 100)));
    assert_int_equal(cache_lifetime(&m, 10, 86400), 100);
}

/* ---------------------------------------------------------------------
 * Serving (RFC 9111 4, 4.2.4, 5.2.1; RFC 5861 3).
 */

/* Response received at T0 with the given Cache-Control; returns its lifetime. */
static int64_t stored(struct cache_meta *m, const char *cc)
{
    meta(m, resp(200, "Date: %s\nCache-Control: %s", D(T0), cc));
    return cache_lifetime(m, 10, 86400);
}

static enum serve_verdict serve_at(const struct cache_meta *m, int64_t lifetime, int64_t age,
                                   const char *req_cc)
{
    struct cc rc = parse_cc(req_cc);

    return cache_serve(m, lifetime, T0 + age, &rc);
}

static void test_serve_fresh_stale(void **state)
{
    struct cache_meta m;
    int64_t lt = stored(&m, "max-age=60");

    assert_int_equal(lt, 60);
    assert_int_equal(serve_at(&m, lt, 0, ""), SERVE_FRESH);
    assert_int_equal(serve_at(&m, lt, 59, ""), SERVE_FRESH);
    /* Fresh means lifetime > age: at 60 it is stale (4.2). */
    assert_int_equal(serve_at(&m, lt, 60, ""), SERVE_REVALIDATE);
    assert_int_equal(serve_at(&m, lt, 1000, ""), SERVE_REVALIDATE);
    assert_int_equal(cache_serve(&m, lt, T0 + 10, NULL), SERVE_FRESH);
    assert_int_equal(cache_serve(&m, lt, T0 + 100, NULL), SERVE_REVALIDATE);
}

static void test_serve_no_cache(void **state)
{
    struct cache_meta m;
    int64_t lt = stored(&m, "no-cache, max-age=60");

    assert_int_equal(serve_at(&m, lt, 1, ""), SERVE_REVALIDATE);
    lt = stored(&m, "no-cache=\"Set-Cookie\", max-age=60");
    assert_int_equal(serve_at(&m, lt, 1, ""), SERVE_REVALIDATE);
    lt = stored(&m, "max-age=60");
    assert_int_equal(serve_at(&m, lt, 1, "no-cache"), SERVE_REVALIDATE);
    assert_int_equal(serve_at(&m, lt, 1, "no-store"), SERVE_FRESH);
}

static void test_serve_req_max_age(void **state)
{
    struct cache_meta m;
    int64_t lt = stored(&m, "max-age=60");

    assert_int_equal(serve_at(&m, lt, 0, "max-age=0"), SERVE_REVALIDATE);
    assert_int_equal(serve_at(&m, lt, 10, "max-age=5"), SERVE_REVALIDATE);
    assert_int_equal(serve_at(&m, lt, 10, "max-age=10"), SERVE_FRESH);
    assert_int_equal(serve_at(&m, lt, 10, "max-age=20"), SERVE_FRESH);
    /* A request max-age does not make a stale response fresh. */
    assert_int_equal(serve_at(&m, lt, 70, "max-age=100"), SERVE_REVALIDATE);
}

static void test_serve_min_fresh(void **state)
{
    struct cache_meta m;
    int64_t lt = stored(&m, "max-age=60");

    /* At age 10, 50 seconds of freshness are left. */
    assert_int_equal(serve_at(&m, lt, 10, "min-fresh=40"), SERVE_FRESH);
    assert_int_equal(serve_at(&m, lt, 10, "min-fresh=50"), SERVE_FRESH);
    assert_int_equal(serve_at(&m, lt, 10, "min-fresh=51"), SERVE_REVALIDATE);
    assert_int_equal(serve_at(&m, lt, 10, "min-fresh=0"), SERVE_FRESH);
}

static void test_serve_max_stale(void **state)
{
    struct cache_meta m;
    int64_t lt = stored(&m, "max-age=60");

    /* Age 70: ten seconds stale. */
    assert_int_equal(serve_at(&m, lt, 70, "max-stale=20"), SERVE_FRESH);
    assert_int_equal(serve_at(&m, lt, 70, "max-stale=10"), SERVE_FRESH);
    assert_int_equal(serve_at(&m, lt, 70, "max-stale=9"), SERVE_REVALIDATE);
    assert_int_equal(serve_at(&m, lt, 100000, "max-stale"), SERVE_FRESH);
    assert_int_equal(serve_at(&m, lt, 70, ""), SERVE_REVALIDATE);

    /* The response can forbid stale serving (5.2.2.2, 5.2.2.8, 5.2.2.10). */
    lt = stored(&m, "max-age=60, must-revalidate");
    assert_int_equal(serve_at(&m, lt, 70, "max-stale=20"), SERVE_REVALIDATE);
    assert_int_equal(serve_at(&m, lt, 30, "max-stale=20"), SERVE_FRESH);
    lt = stored(&m, "max-age=60, proxy-revalidate");
    assert_int_equal(serve_at(&m, lt, 70, "max-stale"), SERVE_REVALIDATE);
    lt = stored(&m, "s-maxage=60");
    assert_int_equal(lt, 60);
    assert_int_equal(serve_at(&m, lt, 70, "max-stale"), SERVE_REVALIDATE);
}

static void test_serve_swr(void **state)
{
    struct cache_meta m;
    int64_t lt = stored(&m, "max-age=60, stale-while-revalidate=30");

    assert_int_equal(serve_at(&m, lt, 30, ""), SERVE_FRESH);
    assert_int_equal(serve_at(&m, lt, 60, ""), SERVE_STALE_REVALIDATE);
    assert_int_equal(serve_at(&m, lt, 90, ""), SERVE_STALE_REVALIDATE);
    assert_int_equal(serve_at(&m, lt, 91, ""), SERVE_REVALIDATE);
    /* The client's own refusals come first. */
    assert_int_equal(serve_at(&m, lt, 70, "no-cache"), SERVE_REVALIDATE);
    assert_int_equal(serve_at(&m, lt, 70, "max-age=0"), SERVE_REVALIDATE);
    /* Past the window, a client max-stale can still allow it. */
    assert_int_equal(serve_at(&m, lt, 100, "max-stale=50"), SERVE_FRESH);

    lt = stored(&m, "max-age=60, stale-while-revalidate=30, must-revalidate");
    assert_int_equal(serve_at(&m, lt, 70, ""), SERVE_REVALIDATE);
    lt = stored(&m, "s-maxage=60, stale-while-revalidate=30");
    assert_int_equal(serve_at(&m, lt, 70, ""), SERVE_REVALIDATE);

    /* The targeted field carries swr for the CDN alone. */
    meta(&m, resp(200, "Date: %s\nCache-Control: max-age=60\n"
                       "CDN-Cache-Control: max-age=60, stale-while-revalidate=30",
                  D(T0)));
    lt = cache_lifetime(&m, 10, 86400);
    assert_int_equal(serve_at(&m, lt, 70, ""), SERVE_STALE_REVALIDATE);
}

/* ---------------------------------------------------------------------
 * stale-if-error (RFC 5861 4).
 */

static void test_sie_response(void **state)
{
    struct cache_meta m;
    int64_t lt = stored(&m, "max-age=60, stale-if-error=100");

    assert_true(cache_stale_if_error_ok(&m, lt, T0 + 10, 0));  /* fresh */
    assert_true(cache_stale_if_error_ok(&m, lt, T0 + 100, 0)); /* 40 stale */
    assert_true(cache_stale_if_error_ok(&m, lt, T0 + 160, 0)); /* 100 stale */
    assert_false(cache_stale_if_error_ok(&m, lt, T0 + 161, 0));
    /* The response's window overrides the default. */
    assert_false(cache_stale_if_error_ok(&m, lt, T0 + 500, 1000));

    lt = stored(&m, "max-age=60, stale-if-error=100, must-revalidate");
    assert_false(cache_stale_if_error_ok(&m, lt, T0 + 100, 0));
    assert_true(cache_stale_if_error_ok(&m, lt, T0 + 10, 0));
    lt = stored(&m, "s-maxage=60, stale-if-error=100");
    assert_false(cache_stale_if_error_ok(&m, lt, T0 + 100, 0));
    lt = stored(&m, "max-age=60, stale-if-error=100, no-cache");
    assert_false(cache_stale_if_error_ok(&m, lt, T0 + 100, 0));
}

static void test_sie_default(void **state)
{
    struct cache_meta m;
    int64_t lt = stored(&m, "max-age=60");

    assert_false(cache_stale_if_error_ok(&m, lt, T0 + 61, 0));
    assert_true(cache_stale_if_error_ok(&m, lt, T0 + 61, 300));
    assert_true(cache_stale_if_error_ok(&m, lt, T0 + 360, 300));
    assert_false(cache_stale_if_error_ok(&m, lt, T0 + 361, 300));

    lt = stored(&m, "max-age=60, stale-if-error=10");
    assert_false(cache_stale_if_error_ok(&m, lt, T0 + 100, 300));

    lt = stored(&m, "max-age=60, proxy-revalidate");
    assert_false(cache_stale_if_error_ok(&m, lt, T0 + 61, 300));
}

/* ---------------------------------------------------------------------
 * Vary (RFC 9111 4.1).
 */

/* Builds the key of r against q into a fresh string compared by the caller. */
static int key_of(const struct http1_msg *r, const struct http1_msg *q, char *out, size_t cap)
{
    struct buf b;
    int rc;

    buf_init(&b);
    rc = cache_vary_key(r, q, &b);
    assert_true(buf_avail(&b) < cap);
    memcpy(out, buf_head(&b), buf_avail(&b));
    out[buf_avail(&b)] = '\0';
    buf_fini(&b);
    return rc;
}

static int key_from(const char *vary, const struct http1_msg *q, char *out, size_t cap)
{
    struct buf b;
    int rc;

    buf_init(&b);
    rc = cache_vary_key_from(vary, strlen(vary), q, &b);
    assert_true(buf_avail(&b) < cap);
    memcpy(out, buf_head(&b), buf_avail(&b));
    out[buf_avail(&b)] = '\0';
    buf_fini(&b);
    return rc;
}

static void test_vary_match(void **state)
{
    const struct http1_msg *r = resp(200, "Vary: Accept-Encoding");
    char k1[512], k2[512], k3[512];

    assert_int_equal(key_of(r, req("GET", "Accept-Encoding: gzip\nX-A: 1"), k1, sizeof(k1)), 0);
    assert_int_equal(key_of(r, req("GET", "X-B: 2\nAccept-Encoding: gzip"), k2, sizeof(k2)), 0);
    assert_string_equal(k1, "accept-encoding:gzip\n");
    assert_string_equal(k1, k2);
    /* The stored form yields the same key. */
    assert_int_equal(key_from("Accept-Encoding", req("GET", "accept-encoding: gzip"), k3, sizeof(k3)),
                     0);
    assert_string_equal(k1, k3);
}

static void test_vary_differ(void **state)
{
    const struct http1_msg *r = resp(200, "Vary: Accept-Encoding, Accept-Language");
    char k1[512], k2[512], k3[512];

    key_of(r, req("GET", "Accept-Encoding: gzip\nAccept-Language: en"), k1, sizeof(k1));
    key_of(r, req("GET", "Accept-Encoding: br\nAccept-Language: en"), k2, sizeof(k2));
    key_of(r, req("GET", "Accept-Encoding: gzip\nAccept-Language: fr"), k3, sizeof(k3));
    assert_string_equal(k1, "accept-encoding:gzip\naccept-language:en\n");
    assert_string_not_equal(k1, k2);
    assert_string_not_equal(k1, k3);
    /* Values are case-sensitive in general. */
    key_of(r, req("GET", "Accept-Encoding: GZIP\nAccept-Language: en"), k2, sizeof(k2));
    assert_string_not_equal(k1, k2);
    /* Unvaried fields do not matter. */
    key_of(r, req("GET", "Accept-Encoding: gzip\nAccept-Language: en\nCookie: x"), k2, sizeof(k2));
    assert_string_equal(k1, k2);
}

static void test_vary_normalisation(void **state)
{
    const struct http1_msg *r = resp(200, "vary: ACCEPT-ENCODING ,  ,Accept");
    char k1[512], k2[512], k3[512];

    key_of(r, req("GET", "Accept-Encoding: gzip, br\nAccept: text/html"), k1, sizeof(k1));
    key_of(r, req("GET", "Accept: text/html\naccept-encoding: gzip ,br"), k2, sizeof(k2));
    key_of(r, req("GET", "Accept-Encoding: gzip\nAccept: text/html\nAccept-Encoding: br"), k3,
           sizeof(k3));
    assert_string_equal(k1, "accept-encoding:gzip,br\naccept:text/html\n");
    assert_string_equal(k1, k2);
    assert_string_equal(k1, k3);
    /* Order of list members is significant and kept. */
    key_of(r, req("GET", "Accept-Encoding: br, gzip\nAccept: text/html"), k2, sizeof(k2));
    assert_string_not_equal(k1, k2);
    /* Whitespace inside a member and inside quotes is data. */
    key_of(r, req("GET", "Accept-Encoding: a b,  \"x , y\" ,c\nAccept: q"), k2, sizeof(k2));
    assert_string_equal(k2, "accept-encoding:a b,\"x , y\",c\naccept:q\n");
    /* Several Vary lines combine in order. */
    r = resp(200, "Vary: Accept\nVary: X-Y");
    key_of(r, req("GET", "X-Y: 1\nAccept: a"), k1, sizeof(k1));
    assert_string_equal(k1, "accept:a\nx-y:1\n");
    key_from("Accept, X-Y", req("GET", "X-Y: 1\nAccept: a"), k2, sizeof(k2));
    assert_string_equal(k1, k2);
}

static void test_vary_missing_vs_empty(void **state)
{
    const struct http1_msg *r = resp(200, "Vary: Accept");
    char k1[512], k2[512], k3[512];

    key_of(r, req("GET", "X: 1"), k1, sizeof(k1));
    key_of(r, req("GET", "Accept:"), k2, sizeof(k2));
    key_of(r, req("GET", "Accept: \nAccept: a"), k3, sizeof(k3));
    assert_string_equal(k1, "accept\n");
    assert_string_equal(k2, "accept:\n");
    assert_string_not_equal(k1, k2);
    assert_string_equal(k3, "accept:a\n");
}

static void test_vary_star(void **state)
{
    struct buf b;

    buf_init(&b);
    assert_int_equal(cache_vary_key(resp(200, "Vary: Accept, *"), req("GET", "Accept: a"), &b), -1);
    assert_int_equal(cache_vary_key(resp(200, "Vary: Accept\nVary: *"), req("GET", "Accept: a"), &b),
                     -1);
    assert_int_equal(buf_avail(&b), 0);
    assert_int_equal(cache_vary_key_from("a, *", 4, req("GET", "A: 1"), &b), -1);
    assert_int_equal(cache_vary_key_from("*", 1, req("GET", "A: 1"), &b), -1);
    assert_int_equal(buf_avail(&b), 0);
    /* "*" as part of a name is not Vary: *. */
    assert_int_equal(cache_vary_key_from("a*", 2, req("GET", "A: 1"), &b), 0);
    /* No Vary at all: empty key. */
    buf_reset(&b);
    assert_int_equal(cache_vary_key(resp(200, "X: y"), req("GET", "Accept: a"), &b), 0);
    assert_int_equal(buf_avail(&b), 0);
    buf_fini(&b);
}

static void test_vary_meta(void **state)
{
    struct cache_meta m;

    meta(&m, resp(200, "Vary: Accept"));
    assert_true(m.has_vary);
    assert_false(m.vary_star);
    meta(&m, resp(200, "Vary:"));
    assert_false(m.has_vary);
    meta(&m, resp(200, "Vary: *"));
    assert_true(m.has_vary);
    assert_true(m.vary_star);
    meta(&m, resp(200, "ETag: \"a\"\nSet-Cookie: x=y\nLast-Modified: %s", D(T0 - 5)));
    assert_true(m.has_etag);
    assert_true(m.has_set_cookie);
    assert_int_equal(m.last_modified, T0 - 5);
    assert_false(m.has_vary);
    meta(&m, resp(200, "Last-Modified: never"));
    assert_int_equal(m.last_modified, -1);
}

/* ---------------------------------------------------------------------
 * Hop-by-hop (RFC 9110 7.6.1).
 */

static int hbh(const char *name, const char *conn)
{
    return http_hop_by_hop(name, strlen(name), conn, conn ? strlen(conn) : 0);
}

static void test_hop_by_hop(void **state)
{
    static const char *const yes[] = {
        "Connection", "keep-alive", "Proxy-Connection", "TE", "Transfer-Encoding",
        "UPGRADE", "Trailer", "Proxy-Authenticate", "proxy-authorization",
    };
    static const char *const no[] = {
        "Content-Type", "Content-Length", "Trailers", "T", "", "Cache-Control", "Keep-Alive2",
    };

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        assert_true(hbh(yes[i], NULL));
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        assert_false(hbh(no[i], NULL));
    assert_true(hbh("X-Foo", "close, X-Foo"));
    assert_true(hbh("x-foo", "X-FOO"));
    assert_true(hbh("X-Bar", " x-foo ,, X-Bar "));
    assert_false(hbh("X-Foo", "close"));
    assert_false(hbh("X-Fo", "X-Foo"));
    assert_false(hbh("X-Foo", "X-Fo"));
    assert_false(hbh("X-Foo", ""));
}

/* ---------------------------------------------------------------------
 * Conditional requests (RFC 9110 13).
 */

static int nm(const struct http1_msg *q, const char *etag, int64_t lm)
{
    return cache_not_modified(q, etag, etag ? strlen(etag) : 0, lm);
}

static void test_inm_weak(void **state)
{
    assert_true(nm(req("GET", "If-None-Match: \"abc\""), "\"abc\"", -1));
    assert_true(nm(req("GET", "If-None-Match: W/\"abc\""), "\"abc\"", -1));
    assert_true(nm(req("GET", "If-None-Match: \"abc\""), "W/\"abc\"", -1));
    assert_true(nm(req("GET", "If-None-Match: W/\"abc\""), "W/\"abc\"", -1));
    assert_false(nm(req("GET", "If-None-Match: \"abd\""), "\"abc\"", -1));
    assert_false(nm(req("GET", "If-None-Match: \"abc\""), "\"abcd\"", -1));
    /* The weak prefix is case-sensitive; "w/" is not an entity-tag. */
    assert_false(nm(req("GET", "If-None-Match: w/\"abc\""), "\"abc\"", -1));
    /* Unquoted is not an entity-tag. */
    assert_false(nm(req("GET", "If-None-Match: abc"), "\"abc\"", -1));
    /* No stored ETag: only "*" matches. */
    assert_false(nm(req("GET", "If-None-Match: \"abc\""), NULL, -1));
}

static void test_inm_star_list(void **state)
{
    assert_true(nm(req("GET", "If-None-Match: *"), "\"abc\"", -1));
    assert_true(nm(req("GET", "If-None-Match: *"), NULL, -1));
    assert_true(nm(req("GET", "If-None-Match: \"x\", \"abc\""), "\"abc\"", -1));
    assert_true(nm(req("GET", "If-None-Match: \"x\",W/\"abc\" , \"y\""), "\"abc\"", -1));
    assert_false(nm(req("GET", "If-None-Match: \"x\", \"y\""), "\"abc\"", -1));
    /* Commas belong to an opaque-tag when quoted. */
    assert_true(nm(req("GET", "If-None-Match: \"a,b\""), "\"a,b\"", -1));
    assert_false(nm(req("GET", "If-None-Match: \"a,b\""), "\"a\"", -1));
    /* Several lines form one list; garbage members are skipped. */
    assert_true(nm(req("GET", "If-None-Match: \"x\"\nIf-None-Match: junk, \"abc\""), "\"abc\"", -1));
}

static void test_inm_precedence(void **state)
{
    /* If-None-Match decides alone, even against a matching date (13.2.2). */
    assert_false(nm(req("GET", "If-None-Match: \"x\"\nIf-Modified-Since: %s", D(T0 + 100)),
                    "\"abc\"", T0));
    assert_true(nm(req("GET", "If-Modified-Since: %s\nIf-None-Match: \"abc\"", D(T0 - 100)),
                   "\"abc\"", T0));
    assert_true(nm(req("GET", "If-Modified-Since: %s", D(T0 + 100)), "\"abc\"", T0));
}

static void test_ims(void **state)
{
    assert_true(nm(req("GET", "If-Modified-Since: %s", D(T0)), NULL, T0));
    assert_true(nm(req("GET", "If-Modified-Since: %s", D(T0 + 10)), NULL, T0));
    assert_false(nm(req("GET", "If-Modified-Since: %s", D(T0 - 10)), NULL, T0));
    assert_true(nm(req("HEAD", "If-Modified-Since: %s", D(T0)), NULL, T0));
    /* Ignored: other methods, bad dates, several dates, unknown Last-Modified. */
    assert_false(nm(req("POST", "If-Modified-Since: %s", D(T0)), NULL, T0));
    assert_false(nm(req("POST", "If-None-Match: *"), "\"a\"", T0));
    assert_false(nm(req("GET", "If-Modified-Since: yesterday"), NULL, T0));
    assert_false(nm(req("GET", "If-Modified-Since: %s\nIf-Modified-Since: %s", D(T0), D(T0)), NULL,
                    T0));
    assert_false(nm(req("GET", "If-Modified-Since: %s", D(T0)), NULL, -1));
    assert_false(nm(req("GET", "X: y"), "\"a\"", T0));
    /* Other date formats are accepted (RFC 9110 5.6.7). */
    assert_true(nm(req("GET", "If-Modified-Since: Tuesday, 14-Nov-23 22:13:20 GMT"), NULL, T0));
    assert_true(nm(req("GET", "If-Modified-Since: Tue Nov 14 22:13:20 2023"), NULL, T0));
}

/* ---------------------------------------------------------------------
 * Range (RFC 9110 14).
 */

static int range(const char *method, const char *fields, uint64_t total, uint64_t *a, uint64_t *b)
{
    *a = *b = 12345;
    return cache_range(req(method, "%s", fields), total, a, b);
}

static void test_range_single(void **state)
{
    uint64_t a, b;

    assert_int_equal(range("GET", "Range: bytes=0-99", 1000, &a, &b), 1);
    assert_int_equal(a, 0);
    assert_int_equal(b, 99);
    assert_int_equal(range("GET", "Range: bytes=-10", 1000, &a, &b), 1);
    assert_int_equal(a, 990);
    assert_int_equal(b, 999);
    assert_int_equal(range("GET", "Range: bytes=10-", 1000, &a, &b), 1);
    assert_int_equal(a, 10);
    assert_int_equal(b, 999);
    assert_int_equal(range("GET", "Range: bytes=999-999", 1000, &a, &b), 1);
    assert_int_equal(a, 999);
    assert_int_equal(b, 999);
    /* Beyond the end clamps. */
    assert_int_equal(range("GET", "Range: bytes=990-2000", 1000, &a, &b), 1);
    assert_int_equal(a, 990);
    assert_int_equal(b, 999);
    assert_int_equal(range("GET", "Range: bytes=-2000", 1000, &a, &b), 1);
    assert_int_equal(a, 0);
    assert_int_equal(b, 999);
    assert_int_equal(range("GET", "Range: bytes=0-99999999999999999999999", 1000, &a, &b), 1);
    assert_int_equal(b, 999);
    /* Unit case and empty list members (RFC 9110 5.6.1, 14.1). */
    assert_int_equal(range("GET", "Range: BYTES=5-6", 1000, &a, &b), 1);
    assert_int_equal(a, 5);
    assert_int_equal(b, 6);
    assert_int_equal(range("GET", "Range: bytes=, 5-6 ,", 1000, &a, &b), 1);
    assert_int_equal(a, 5);
}

static void test_range_unsatisfiable(void **state)
{
    uint64_t a, b;

    assert_int_equal(range("GET", "Range: bytes=1000-", 1000, &a, &b), -1);
    assert_int_equal(range("GET", "Range: bytes=1001-1002", 1000, &a, &b), -1);
    assert_int_equal(range("GET", "Range: bytes=-0", 1000, &a, &b), -1);
    assert_int_equal(range("GET", "Range: bytes=99999999999999999999999-", 1000, &a, &b), -1);
    assert_int_equal(range("GET", "Range: bytes=0-", 0, &a, &b), -1);
    assert_int_equal(a, 12345); /* untouched */
}

static void test_range_ignored(void **state)
{
    uint64_t a, b;

    assert_int_equal(range("GET", "X: y", 1000, &a, &b), 0);
    assert_int_equal(range("GET", "Range: bytes=0-1,5-6", 1000, &a, &b), 0);
    assert_int_equal(range("GET", "Range: bytes=0-1, 1000-2000", 1000, &a, &b), 0);
    assert_int_equal(range("GET", "Range: items=0-5", 1000, &a, &b), 0);
    assert_int_equal(range("GET", "Range: bytes=abc", 1000, &a, &b), 0);
    assert_int_equal(range("GET", "Range: bytes=5-1", 1000, &a, &b), 0);
    assert_int_equal(range("GET", "Range: bytes=", 1000, &a, &b), 0);
    assert_int_equal(range("GET", "Range: bytes 0-5", 1000, &a, &b), 0);
    assert_int_equal(range("GET", "Range: bytes=0-5x", 1000, &a, &b), 0);
    assert_int_equal(range("GET", "Range: bytes=0 - 5", 1000, &a, &b), 0);
    assert_int_equal(range("GET", "Range: bytes=--5", 1000, &a, &b), 0);
    assert_int_equal(range("GET", "Range: bytes=0-5\nRange: bytes=0-5", 1000, &a, &b), 0);
    assert_int_equal(range("POST", "Range: bytes=0-5", 1000, &a, &b), 0);
    assert_int_equal(range("HEAD", "Range: bytes=0-5", 1000, &a, &b), 0);
    assert_int_equal(range("GET", "Range: bytes=0-5\nIf-Range: \"x\"", 1000, &a, &b), 0);
    /* A suffix of an empty representation: send the (empty) whole. */
    assert_int_equal(range("GET", "Range: bytes=-5", 0, &a, &b), 0);
    assert_int_equal(a, 12345);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cc_init),
        cmocka_unit_test(test_cc_basic),
        cmocka_unit_test(test_cc_case),
        cmocka_unit_test(test_cc_quoted),
        cmocka_unit_test(test_cc_no_cache_field),
        cmocka_unit_test(test_cc_multiple_lines),
        cmocka_unit_test(test_cc_bad_args),
        cmocka_unit_test(test_cc_caps),
        cmocka_unit_test(test_cc_unknown_and_empty),
        cmocka_unit_test(test_lifetime_precedence),
        cmocka_unit_test(test_lifetime_heuristic_status),
        cmocka_unit_test(test_expires_invalid),
        cmocka_unit_test(test_expires_relative_to_date),
        cmocka_unit_test(test_age),
        cmocka_unit_test(test_store_ok),
        cmocka_unit_test(test_store_method),
        cmocka_unit_test(test_store_status),
        cmocka_unit_test(test_store_must_understand),
        cmocka_unit_test(test_store_no_store),
        cmocka_unit_test(test_store_private),
        cmocka_unit_test(test_store_authorization),
        cmocka_unit_test(test_store_vary_star),
        cmocka_unit_test(test_store_set_cookie),
        cmocka_unit_test(test_store_no_freshness),
        cmocka_unit_test(test_verdict_str),
        cmocka_unit_test(test_tcc_overrides),
        cmocka_unit_test(test_tcc_invalid_falls_back),
        cmocka_unit_test(test_tcc_ignores_expires),
        cmocka_unit_test(test_serve_fresh_stale),
        cmocka_unit_test(test_serve_no_cache),
        cmocka_unit_test(test_serve_req_max_age),
        cmocka_unit_test(test_serve_min_fresh),
        cmocka_unit_test(test_serve_max_stale),
        cmocka_unit_test(test_serve_swr),
        cmocka_unit_test(test_sie_response),
        cmocka_unit_test(test_sie_default),
        cmocka_unit_test(test_vary_match),
        cmocka_unit_test(test_vary_differ),
        cmocka_unit_test(test_vary_normalisation),
        cmocka_unit_test(test_vary_missing_vs_empty),
        cmocka_unit_test(test_vary_star),
        cmocka_unit_test(test_vary_meta),
        cmocka_unit_test(test_hop_by_hop),
        cmocka_unit_test(test_inm_weak),
        cmocka_unit_test(test_inm_star_list),
        cmocka_unit_test(test_inm_precedence),
        cmocka_unit_test(test_ims),
        cmocka_unit_test(test_range_single),
        cmocka_unit_test(test_range_unsatisfiable),
        cmocka_unit_test(test_range_ignored),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
