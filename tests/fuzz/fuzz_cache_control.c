/*
 * libFuzzer target for the cache policy (src/cache/policy.c): cc_parse and
 * everything that reads parsed message heads.
 *
 * Input layout: 4 control bytes, then field lines.
 *   byte 0    bits 0-1 pick the request method (GET, HEAD, POST, GET),
 *             bits 2-5 the response status from a table
 *   bytes 1-2 the representation size for cache_range (little-endian)
 *   byte 3    clock offsets: response delay (bits 0-3) and how long after
 *             that "now" is (all 8 bits, times 7 s)
 * The field lines are used three ways: raw, as a Cache-Control value for
 * cc_parse; behind "GET / HTTP/1.1\r\nHost: a\r\n" as a request; behind
 * "HTTP/1.1 <status> X\r\n" as a response. Both messages get "\r\n\r\n"
 * appended, so plain "Name: value\r\n..." inputs parse.
 *
 * Besides memory safety (ASan/UBSan) the target aborts when a contract of
 * policy.h is broken:
 *   - cc: delta values are -1 or within [0, 2^31] (max-stale may be
 *     INT64_MAX); a cc with no directive is exactly cc_init's; parsing a
 *     value twice into one cc changes nothing (first occurrence wins);
 *   - cache_range: returns -1, 0 or 1; 1 means first <= last < total and
 *     only then are the outputs written; only GET gets ranges;
 *   - cache_not_modified: 0 or 1; 0 for methods other than GET/HEAD and
 *     for requests without If-None-Match/If-Modified-Since;
 *   - meta: Age within [0, 2^31], Expires/Last-Modified >= -1, use_tcc only
 *     for a present and valid targeted field;
 *   - ages are never negative and never decrease with time; lifetimes are
 *     never negative; verdicts are within their enums; a fresh verdict
 *     without request max-stale means lifetime > age; stale-if-error holds
 *     while fresh;
 *   - cache_vary_key and cache_vary_key_from over the joined Vary values
 *     agree byte for byte, and -1 exactly for Vary: *;
 *   - the fixed hop-by-hop names are always hop-by-hop.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache/policy.h"
#include "http/http1.h"
#include "lib/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)      \
    do {                 \
        if (!(cond))     \
            abort();     \
    } while (0)

#define T0 INT64_C(1700000000)
#define CAP INT64_C(2147483648)

/* The results are large; static keeps them off the stack. */
static struct http1_msg req, resp;

static int delta_ok(int64_t v)
{
    return v == -1 || (v >= 0 && v <= CAP);
}

static int cc_equal(const struct cc *a, const struct cc *b)
{
    return a->max_age == b->max_age && a->s_maxage == b->s_maxage &&
           a->max_stale == b->max_stale && a->min_fresh == b->min_fresh &&
           a->stale_while_revalidate == b->stale_while_revalidate &&
           a->stale_if_error == b->stale_if_error && a->no_store == b->no_store &&
           a->no_cache == b->no_cache && a->private_ == b->private_ &&
           a->public_ == b->public_ && a->must_revalidate == b->must_revalidate &&
           a->proxy_revalidate == b->proxy_revalidate &&
           a->must_understand == b->must_understand && a->only_if_cached == b->only_if_cached &&
           a->no_transform == b->no_transform && a->immutable == b->immutable &&
           a->present == b->present && a->invalid == b->invalid;
}

static void check_cc(const struct cc *c)
{
    struct cc empty;

    CHECK(delta_ok(c->max_age));
    CHECK(delta_ok(c->s_maxage));
    CHECK(delta_ok(c->min_fresh));
    CHECK(delta_ok(c->stale_while_revalidate));
    CHECK(delta_ok(c->stale_if_error));
    CHECK(delta_ok(c->max_stale) || c->max_stale == INT64_MAX);
    if (!c->present) {
        cc_init(&empty);
        CHECK(cc_equal(c, &empty));
    }
}

/* cc_parse over arbitrary bytes, and its idempotence. */
static void fuzz_cc(const char *v, size_t n)
{
    struct cc once, twice;

    cc_init(&once);
    cc_parse(&once, v, n);
    check_cc(&once);
    twice = once;
    cc_parse(&twice, v, n);
    CHECK(cc_equal(&once, &twice));
}

/* Builds prefix + body + "\r\n\r\n" in a fresh allocation. */
static char *build(const char *prefix, const char *body, size_t n, size_t *len)
{
    size_t pl = strlen(prefix);
    char *t = malloc(pl + n + 4);

    CHECK(t != NULL);
    memcpy(t, prefix, pl);
    memcpy(t + pl, body, n);
    memcpy(t + pl + n, "\r\n\r\n", 4);
    *len = pl + n + 4;
    return t;
}

static int method_is(const struct http1_msg *m, const char *s)
{
    return m->method_len == strlen(s) && memcmp(m->method, s, m->method_len) == 0;
}

static void fuzz_request(uint64_t total, const char *etag, size_t etag_len, int64_t lm)
{
    uint64_t first = 77, last = 77;
    struct cc c;
    int rc;

    cc_from_msg(&c, &req, "cache-control");
    check_cc(&c);

    rc = cache_range(&req, total, &first, &last);
    CHECK(rc >= -1 && rc <= 1);
    if (rc == 1) {
        CHECK(first <= last);
        CHECK(last < total);
    } else {
        CHECK(first == 77 && last == 77);
    }
    if (!method_is(&req, "GET"))
        CHECK(rc == 0);
    if (http1_find(&req, "range") == NULL)
        CHECK(rc == 0);

    rc = cache_not_modified(&req, etag, etag_len, lm);
    CHECK(rc == 0 || rc == 1);
    if (!method_is(&req, "GET") && !method_is(&req, "HEAD"))
        CHECK(rc == 0);
    if (http1_find(&req, "if-none-match") == NULL && http1_find(&req, "if-modified-since") == NULL)
        CHECK(rc == 0);
    /* The same request with no stored validators can only match "*". */
    rc = cache_not_modified(&req, NULL, 0, -1);
    CHECK(rc == 0 || http1_find(&req, "if-none-match") != NULL);
}

/* Both Vary key builders must agree. */
static void fuzz_vary(const struct cache_meta *m, const struct http1_msg *q)
{
    struct buf k1, k2, joined;
    int r1, r2;

    buf_init(&k1);
    buf_init(&k2);
    buf_init(&joined);
    for (size_t i = 0; i < resp.n_hdrs; i++) {
        const struct http1_hdr *h = &resp.hdrs[i];

        if (h->name_len == 4 && strncasecmp(h->name, "vary", 4) == 0) {
            if (buf_avail(&joined) > 0)
                buf_append(&joined, ", ", 2);
            buf_append(&joined, h->value, h->value_len);
        }
    }
    r1 = cache_vary_key(&resp, q, &k1);
    r2 = cache_vary_key_from(buf_avail(&joined) ? buf_head(&joined) : "", buf_avail(&joined), q, &k2);
    CHECK(r1 == 0 || r1 == -1);
    CHECK(r1 == r2);
    CHECK((r1 == -1) == (m->vary_star != 0));
    if (r1 == -1)
        CHECK(buf_avail(&k1) == 0);
    CHECK(buf_avail(&k1) == buf_avail(&k2));
    CHECK(buf_avail(&k1) == 0 || memcmp(buf_head(&k1), buf_head(&k2), buf_avail(&k1)) == 0);
    if (!m->has_vary)
        CHECK(buf_avail(&k1) == 0);
    buf_fini(&k1);
    buf_fini(&k2);
    buf_fini(&joined);
}

static void fuzz_response(int have_req, uint8_t clock)
{
    static const char *const fixed[] = {"connection", "TE", "Upgrade", "proxy-authorization"};
    struct cache_meta m;
    struct cc req_cc;
    const struct cc *c;
    int64_t rt = T0 + (clock & 15), now = rt + (int64_t)clock * 7;
    int64_t lifetime, age, age2;
    enum store_verdict sv;
    enum serve_verdict v;
    const struct http1_hdr *conn = http1_find(&resp, "connection");

    cache_meta_from_response(&m, &resp, T0, rt, "CDN-Cache-Control");
    check_cc(&m.cc);
    check_cc(&m.tcc);
    CHECK(m.age_value >= 0 && m.age_value <= CAP);
    CHECK(m.expires >= -1);
    CHECK(m.last_modified >= -1);
    CHECK(!m.use_tcc || (m.tcc.present && !m.tcc.invalid));
    CHECK(!m.vary_star || m.has_vary);
    c = cache_meta_cc(&m);
    CHECK(c == (m.use_tcc ? &m.tcc : &m.cc));

    if (have_req)
        cc_from_msg(&req_cc, &req, "cache-control");
    else
        cc_init(&req_cc);

    sv = cache_storable(&m, &req_cc, have_req && http1_find(&req, "authorization") != NULL, 1);
    CHECK(sv >= STORE_OK && sv <= STORE_SET_COOKIE);
    CHECK(cache_verdict_str(sv) != NULL);
    CHECK(cache_storable(&m, &req_cc, 0, 0) == STORE_NO_METHOD);
    if (sv == STORE_OK) {
        CHECK(m.status >= 200 && m.status != 206 && m.status != 304);
        CHECK(!m.vary_star && !c->private_ && !req_cc.no_store);
    }

    lifetime = cache_lifetime(&m, 10, 86400);
    CHECK(lifetime >= 0);
    if (c->s_maxage < 0 && c->max_age < 0 && (m.use_tcc || m.expires < 0))
        CHECK(lifetime <= 86400);

    age = cache_age(&m, now);
    age2 = cache_age(&m, now + 5);
    CHECK(age >= 0 && age2 >= age);
    CHECK(cache_age(&m, INT64_MAX) >= 0 && cache_age(&m, INT64_MIN) >= 0);

    v = cache_serve(&m, lifetime, now, &req_cc);
    CHECK(v == SERVE_FRESH || v == SERVE_REVALIDATE || v == SERVE_STALE_REVALIDATE);
    if (v == SERVE_FRESH && req_cc.max_stale < 0)
        CHECK(lifetime > age);
    v = cache_serve(&m, lifetime, now, NULL);
    if (v == SERVE_FRESH)
        CHECK(lifetime > age);
    if (lifetime > age)
        CHECK(cache_stale_if_error_ok(&m, lifetime, now, 0) == 1);
    CHECK(cache_stale_if_error_ok(&m, lifetime, now, 100) <= 1);

    for (size_t i = 0; i < resp.n_hdrs; i++) {
        const struct http1_hdr *h = &resp.hdrs[i];

        CHECK(http_hop_by_hop(h->name, h->name_len, conn ? conn->value : NULL,
                              conn ? conn->value_len : 0) <= 1);
    }
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        CHECK(http_hop_by_hop(fixed[i], strlen(fixed[i]), conn ? conn->value : NULL,
                              conn ? conn->value_len : 0) == 1);

    if (have_req)
        fuzz_vary(&m, &req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const methods[] = {"GET", "HEAD", "POST", "GET"};
    static const int statuses[] = {200, 203, 204, 206, 300, 301, 302, 304,
                                   308, 404, 410, 500, 501, 299, 599, 103};
    struct http1_limits lim;
    const struct http1_hdr *etag;
    const char *body;
    char prefix[64];
    char *rq, *rs;
    size_t n, rq_len, rs_len;
    uint64_t total;
    int have_req;

    if (size < 4)
        return 0;
    body = (const char *)data + 4;
    n = size - 4;
    total = (uint64_t)data[1] | ((uint64_t)data[2] << 8);
    http1_limits_default(&lim);

    fuzz_cc(body, n);

    strcpy(prefix, methods[data[0] & 3]);
    strcat(prefix, " / HTTP/1.1\r\nHost: a\r\n");
    rq = build(prefix, body, n, &rq_len);
    have_req = http1_parse_request(rq, rq_len, &lim, &req) > 0;

    memcpy(prefix, "HTTP/1.1 ", 9);
    prefix[9] = (char)('0' + statuses[(data[0] >> 2) & 15] / 100);
    prefix[10] = (char)('0' + statuses[(data[0] >> 2) & 15] / 10 % 10);
    prefix[11] = (char)('0' + statuses[(data[0] >> 2) & 15] % 10);
    strcpy(prefix + 12, " X\r\n");
    rs = build(prefix, body, n, &rs_len);
    if (http1_parse_response(rs, rs_len, &lim, 0, &resp) > 0) {
        etag = http1_find(&resp, "etag");
        if (have_req) {
            int64_t lm = -1;
            struct cache_meta m;

            cache_meta_from_response(&m, &resp, T0, T0, NULL);
            lm = m.last_modified;
            fuzz_request(total, etag ? etag->value : NULL, etag ? etag->value_len : 0, lm);
        }
        fuzz_response(have_req, data[3]);
    } else if (have_req) {
        fuzz_request(total, NULL, 0, -1);
    }

    free(rq);
    free(rs);
    return 0;
}
