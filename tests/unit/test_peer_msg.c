/*
 * test_peer_msg -- the peering protocol's codec (src/peer/msg.c) against
 * docs/peering-protocol.md: byte layouts, round trips, and the
 * NOTIFICATION each malformed message must produce.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "peer/msg.h"

static struct peer_open sample_open(void)
{
    struct peer_open o = {.version = PEER_VERSION, .hold_time = 90, .routing_types = PEER_RT_DNS | PEER_RT_HTTP,
                          .content_types = PEER_CT_STATIC, .families = PEER_FAM_AREAS | PEER_FAM_CONTENT,
                          .route_refresh = 1, .max_message = 65536, .nmetrics = 2,
                          .metrics = {PEER_METRIC_LOAD, PEER_METRIC_COST}};
    strcpy(o.id, "alpha");
    return o;
}

static void test_frame(void **state)
{
    (void)state;
    struct peer_err err;
    uint8_t type;
    uint8_t ka[6] = {0, 0, 0, 6, PEER_KEEPALIVE, 0};
    assert_int_equal(peer_frame(ka, 5, 4096, &type, &err), 0);           /* need more */
    assert_int_equal(peer_frame(ka, 6, 4096, &type, &err), 6);
    assert_int_equal(type, PEER_KEEPALIVE);
    uint8_t big[6] = {0, 0, 0x10, 0x01, PEER_UPDATE, 0};                  /* 4097 bytes */
    assert_int_equal(peer_frame(big, 6, 4096, &type, &err), -1);
    assert_int_equal(err.code, PEER_ERR_HEADER);
    assert_int_equal(err.subcode, PEER_SUB_BAD_LENGTH);
    uint8_t small[6] = {0, 0, 0, 5, PEER_KEEPALIVE, 0};
    assert_int_equal(peer_frame(small, 6, 4096, &type, &err), -1);
    uint8_t badtype[6] = {0, 0, 0, 6, 9, 0};
    assert_int_equal(peer_frame(badtype, 6, 4096, &type, &err), -1);
    assert_int_equal(err.subcode, PEER_SUB_BAD_TYPE);
    uint8_t partial[10] = {0, 0, 0, 20, PEER_UPDATE, 0};                 /* header fine, body not yet here */
    assert_int_equal(peer_frame(partial, sizeof(partial), 4096, &type, &err), 0);
}

static void test_ids(void **state)
{
    (void)state;
    assert_true(peer_id_valid("alpha", 5));
    assert_true(peer_id_valid("cdn-2", 5));
    assert_false(peer_id_valid("", 0));
    assert_false(peer_id_valid("-a", 2));
    assert_false(peer_id_valid("a-", 2));
    assert_false(peer_id_valid("a--b", 4));
    assert_false(peer_id_valid("Alpha", 5));
    assert_false(peer_id_valid("a.b", 3));
    assert_false(peer_id_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 33));
}

static void test_open_round_trip_and_layout(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    struct peer_open o = sample_open(), d;
    peer_encode_open(&b, &o);
    const uint8_t *m = (const uint8_t *)b.data;
    /* header, version, hold time, id */
    assert_int_equal(m[0] << 24 | m[1] << 16 | m[2] << 8 | m[3], (int)b.len);
    assert_int_equal(m[4], PEER_OPEN);
    assert_int_equal(m[6], 1);
    assert_int_equal(m[7] << 8 | m[8], 90);
    assert_int_equal(m[9], 5);
    assert_memory_equal(m + 10, "alpha", 5);
    /* first capability: ROUTING-TYPES, well-known, 1 byte */
    assert_int_equal(m[15], 0);
    assert_int_equal(m[16], PEER_CAP_ROUTING_TYPES);
    assert_int_equal(m[17] << 8 | m[18], 1);
    assert_int_equal(m[19], PEER_RT_DNS | PEER_RT_HTTP);
    struct peer_err err;
    assert_int_equal(peer_decode_open(m, b.len, &d, &err), 0);
    assert_string_equal(d.id, "alpha");
    assert_int_equal(d.hold_time, 90);
    assert_int_equal(d.routing_types, PEER_RT_DNS | PEER_RT_HTTP);
    assert_int_equal(d.families, PEER_FAM_AREAS | PEER_FAM_CONTENT);
    assert_int_equal(d.route_refresh, 1);
    assert_int_equal(d.max_message, 65536);
    assert_int_equal(d.nmetrics, 2);
    assert_int_equal(d.metrics[1], PEER_METRIC_COST);
    buf_fini(&b);
}

static void open_err(struct peer_open o, void (*mutate)(uint8_t *, size_t *), uint8_t code, uint8_t sub)
{
    struct buf b;
    buf_init(&b);
    peer_encode_open(&b, &o);
    uint8_t m[512];
    size_t len = b.len;
    memcpy(m, b.data, len);
    if (mutate)
        mutate(m, &len);
    m[0] = (uint8_t)(len >> 24);
    m[1] = (uint8_t)(len >> 16);
    m[2] = (uint8_t)(len >> 8);
    m[3] = (uint8_t)len;
    struct peer_open d;
    struct peer_err err = {0};
    assert_int_equal(peer_decode_open(m, len, &d, &err), -1);
    assert_int_equal(err.code, code);
    assert_int_equal(err.subcode, sub);
    buf_fini(&b);
}

static void bad_version(uint8_t *m, size_t *len)
{
    (void)len;
    m[6] = 2;
}

static void hold_two(uint8_t *m, size_t *len)
{
    (void)len;
    m[7] = 0;
    m[8] = 2;
}

static void bad_id(uint8_t *m, size_t *len)
{
    (void)len;
    m[10] = 'A';
}

static void unknown_well_known_cap(uint8_t *m, size_t *len)
{
    uint8_t cap[5] = {0, 77, 0, 1, 1};
    memcpy(m + *len, cap, 5);
    *len += 5;
}

static void unknown_optional_cap(uint8_t *m, size_t *len)
{
    uint8_t cap[5] = {PEER_AF_OPTIONAL, 77, 0, 1, 1};
    memcpy(m + *len, cap, 5);
    *len += 5;
}

static void truncated_cap(uint8_t *m, size_t *len)
{
    uint8_t cap[4] = {PEER_AF_OPTIONAL, 77, 0, 9};
    memcpy(m + *len, cap, 4);
    *len += 4;
}

static void test_open_errors(void **state)
{
    (void)state;
    struct peer_open o = sample_open();
    open_err(o, bad_version, PEER_ERR_OPEN, PEER_SUB_VERSION);
    open_err(o, hold_two, PEER_ERR_OPEN, PEER_SUB_HOLD_TIME);
    open_err(o, bad_id, PEER_ERR_OPEN, PEER_SUB_BAD_ID);
    open_err(o, unknown_well_known_cap, PEER_ERR_OPEN, PEER_SUB_CAPABILITY);
    open_err(o, truncated_cap, PEER_ERR_OPEN, PEER_SUB_CAPABILITY);
    /* an unknown optional capability is ignored */
    struct buf b;
    buf_init(&b);
    peer_encode_open(&b, &o);
    uint8_t m[512];
    size_t len = b.len;
    memcpy(m, b.data, len);
    unknown_optional_cap(m, &len);
    m[3] = (uint8_t)len;
    struct peer_open d;
    struct peer_err err;
    assert_int_equal(peer_decode_open(m, len, &d, &err), 0);
    buf_fini(&b);
}

static struct peer_route area4(const char *a, unsigned plen)
{
    struct peer_route r = {.kind = PEER_R_AREA4, .plen = (uint8_t)plen};
    unsigned x[4];
    sscanf(a, "%u.%u.%u.%u", &x[0], &x[1], &x[2], &x[3]);
    for (int i = 0; i < 4; i++)
        r.addr[i] = (uint8_t)x[i];
    return r;
}

static size_t build_update(struct buf *b, int with_unknown)
{
    struct peer_update_writer w;
    peer_update_begin(&w, b, 65536);
    struct peer_route wd = area4("192.0.2.0", 24);
    assert_int_equal(peer_update_withdraw(&w, &wd), 0);
    const char *path[] = {"beta", "gamma"};
    struct peer_handoff_target ho[2] = {{PEER_HO_CNAME, 13, "cdn.beta.test"},
                                        {PEER_HO_ECS, 15, "192.0.2.53:5300"}};
    struct peer_attrs m = {.has_metrics = 1, .load = 250, .capacity = 10000, .cost = 5,
                           .content_types = PEER_CT_STATIC | PEER_CT_STREAMING};
    uint8_t unknown[7] = {PEER_AF_OPTIONAL | PEER_AF_TRANSITIVE, 200, 0, 3, 'x', 'y', 'z'};
    assert_int_equal(peer_update_attrs(&w, path, 2, ho, 2, &m, with_unknown ? unknown : NULL,
                                       with_unknown ? sizeof(unknown) : 0), 0);
    struct peer_route a = area4("198.51.100.0", 22);
    assert_int_equal(peer_update_announce(&w, &a), 0);
    struct peer_route v6 = {.kind = PEER_R_AREA6, .plen = 33, .addr = {0x20, 0x01, 0x0d, 0xb8, 0x80}};
    assert_int_equal(peer_update_announce(&w, &v6), 0);
    struct peer_route pub = {.kind = PEER_R_PUBLISHER, .len = 16, .text = "www.example.test"};
    assert_int_equal(peer_update_announce(&w, &pub), 0);
    struct peer_route uri = {.kind = PEER_R_URI, .len = 26, .text = "https://www.example.test/v"};
    assert_int_equal(peer_update_announce(&w, &uri), 0);
    return peer_update_end(&w);
}

static void test_update_round_trip(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    size_t len = build_update(&b, 1);
    assert_int_equal(len, b.len);
    struct peer_update u;
    struct peer_err err;
    assert_int_equal(peer_decode_update((const uint8_t *)b.data, len, &u, &err), 0);
    assert_false(peer_update_is_eor(&u));
    /* withdrawn: kind, plen, 3 bytes */
    assert_int_equal(u.withdrawn_len, 5);
    assert_int_equal(u.withdrawn[0], PEER_R_AREA4);
    assert_int_equal(u.withdrawn[1], 24);
    assert_int_equal(u.attrs.npath, 2);
    const uint8_t *id;
    uint8_t l;
    peer_path_id(&u.attrs, 1, &id, &l);
    assert_int_equal(l, 5);
    assert_memory_equal(id, "gamma", 5);
    assert_int_equal(u.attrs.nhandoff, 2);
    assert_int_equal(u.attrs.handoff[1].method, PEER_HO_ECS);
    assert_memory_equal(u.attrs.handoff[1].target, "192.0.2.53:5300", 15);
    assert_int_equal(u.attrs.load, 250);
    assert_int_equal(u.attrs.capacity, 10000);
    assert_int_equal(u.attrs.cost, 5);
    assert_int_equal(u.attrs.content_types, PEER_CT_STATIC | PEER_CT_STREAMING);
    assert_int_equal(u.attrs.nunknown, 1);
    struct buf carry;
    buf_init(&carry);
    peer_attrs_carry(u.attrs_raw, u.attrs_len, &carry);
    assert_int_equal(carry.len, 7);
    assert_int_equal((uint8_t)carry.data[0], PEER_AF_OPTIONAL | PEER_AF_TRANSITIVE | PEER_AF_PARTIAL);
    buf_fini(&carry);
    struct peer_route r;
    size_t pos = 0;
    int n = 0;
    while (peer_route_next(u.announced, u.announced_len, &pos, &r)) {
        if (n == 0) {
            assert_int_equal(r.kind, PEER_R_AREA4);
            assert_int_equal(r.plen, 22);
            assert_int_equal(r.addr[2], 100);
        } else if (n == 1) {
            assert_int_equal(r.kind, PEER_R_AREA6);
            assert_int_equal(r.plen, 33);
            assert_int_equal(r.addr[4], 0x80);
        } else if (n == 2) {
            assert_int_equal(r.kind, PEER_R_PUBLISHER);
            assert_memory_equal(r.text, "www.example.test", 16);
        } else {
            assert_int_equal(r.kind, PEER_R_URI);
            assert_int_equal(r.len, 26);
        }
        n++;
    }
    assert_int_equal(n, 4);
    buf_fini(&b);
}

static void test_end_of_rib_and_size_limit(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    struct peer_update_writer w;
    peer_update_begin(&w, &b, 65536);
    size_t len = peer_update_end(&w);
    assert_int_equal(len, 14); /* header + two zero lengths */
    struct peer_update u;
    struct peer_err err;
    assert_int_equal(peer_decode_update((const uint8_t *)b.data, len, &u, &err), 0);
    assert_true(peer_update_is_eor(&u));
    /* a writer with a small limit refuses the route that would not fit */
    buf_reset(&b);
    peer_update_begin(&w, &b, 40);
    const char *path[] = {"beta"};
    struct peer_handoff_target ho = {PEER_HO_CNAME, 5, "b.cdn"};
    assert_int_equal(peer_update_attrs(&w, path, 1, &ho, 1, NULL, NULL, 0), 0);
    struct peer_route a = area4("10.0.0.0", 8);
    int added = 0;
    while (peer_update_announce(&w, &a) == 0)
        added++;
    len = peer_update_end(&w);
    assert_true(len <= 40);
    assert_true(added >= 1);
    assert_int_equal(peer_decode_update((const uint8_t *)b.data, len, &u, &err), 0);
    buf_fini(&b);
}

/* Builds an UPDATE from raw parts. */
static size_t raw_update(uint8_t *m, const uint8_t *wd, size_t wl, const uint8_t *at, size_t al,
                         const uint8_t *an, size_t anl)
{
    size_t len = 6 + 4 + wl + 4 + al + anl;
    m[0] = (uint8_t)(len >> 24);
    m[1] = (uint8_t)(len >> 16);
    m[2] = (uint8_t)(len >> 8);
    m[3] = (uint8_t)len;
    m[4] = PEER_UPDATE;
    m[5] = 0;
    uint8_t *p = m + 6;
    p[0] = p[1] = 0;
    p[2] = (uint8_t)(wl >> 8);
    p[3] = (uint8_t)wl;
    if (wl)
        memcpy(p + 4, wd, wl);
    p += 4 + wl;
    p[0] = p[1] = 0;
    p[2] = (uint8_t)(al >> 8);
    p[3] = (uint8_t)al;
    if (al)
        memcpy(p + 4, at, al);
    if (anl)
        memcpy(p + 4 + al, an, anl);
    return len;
}

static void expect_update_err(const uint8_t *wd, size_t wl, const uint8_t *at, size_t al, const uint8_t *an,
                              size_t anl, uint8_t sub)
{
    uint8_t m[1024];
    size_t len = raw_update(m, wd, wl, at, al, an, anl);
    struct peer_update u;
    struct peer_err err = {0};
    assert_int_equal(peer_decode_update(m, len, &u, &err), -1);
    assert_int_equal(err.code, PEER_ERR_UPDATE);
    assert_int_equal(err.subcode, sub);
}

static const uint8_t good_attrs[] = {
    0, PEER_ATTR_PATH, 0, 6, 1, 4, 'b', 'e', 't', 'a',
    0, PEER_ATTR_HANDOFF, 0, 8, PEER_HO_CNAME, 0, 5, 'b', '.', 'c', 'd', 'n',
};

static void test_update_errors(void **state)
{
    (void)state;
    static const uint8_t area_ok[] = {PEER_R_AREA4, 8, 10};
    static const uint8_t plen33[] = {PEER_R_AREA4, 33, 1, 2, 3, 4, 5};
    static const uint8_t hostbits[] = {PEER_R_AREA4, 9, 10, 0xff};
    static const uint8_t trunc[] = {PEER_R_AREA4, 24, 10, 1};
    static const uint8_t kind9[] = {9, 1, 0};
    static const uint8_t badpub[] = {PEER_R_PUBLISHER, 3, 'W', 'w', 'w'};
    static const uint8_t ftp[] = {PEER_R_URI, 0, 9, 'f', 't', 'p', ':', '/', '/', 'x', '/', 'y'};
    expect_update_err(plen33, sizeof(plen33), NULL, 0, NULL, 0, PEER_SUB_BAD_AREA);
    expect_update_err(NULL, 0, good_attrs, sizeof(good_attrs), hostbits, sizeof(hostbits), PEER_SUB_BAD_AREA);
    expect_update_err(NULL, 0, good_attrs, sizeof(good_attrs), trunc, sizeof(trunc), PEER_SUB_BAD_AREA);
    expect_update_err(kind9, sizeof(kind9), NULL, 0, NULL, 0, PEER_SUB_BAD_CONTENT);
    expect_update_err(NULL, 0, good_attrs, sizeof(good_attrs), badpub, sizeof(badpub), PEER_SUB_BAD_CONTENT);
    expect_update_err(NULL, 0, good_attrs, sizeof(good_attrs), ftp, sizeof(ftp), PEER_SUB_BAD_CONTENT);
    /* announcements without PATH */
    expect_update_err(NULL, 0, good_attrs + 10, sizeof(good_attrs) - 10, area_ok, sizeof(area_ok),
                      PEER_SUB_MISSING_WELL_KNOWN);
    /* an unknown well-known attribute */
    static const uint8_t unk[] = {0, 99, 0, 1, 0};
    expect_update_err(NULL, 0, unk, sizeof(unk), NULL, 0, PEER_SUB_UNKNOWN_WELL_KNOWN);
    /* PATH flagged optional */
    uint8_t a2[sizeof(good_attrs)];
    memcpy(a2, good_attrs, sizeof(a2));
    a2[0] = PEER_AF_OPTIONAL;
    expect_update_err(NULL, 0, a2, sizeof(a2), area_ok, sizeof(area_ok), PEER_SUB_ATTR_FLAGS);
    /* a bad id in PATH, a PATH count past its ids */
    memcpy(a2, good_attrs, sizeof(a2));
    a2[6] = '-';
    expect_update_err(NULL, 0, a2, sizeof(a2), area_ok, sizeof(area_ok), PEER_SUB_BAD_PATH);
    memcpy(a2, good_attrs, sizeof(a2));
    a2[4] = 2;
    expect_update_err(NULL, 0, a2, sizeof(a2), area_ok, sizeof(area_ok), PEER_SUB_BAD_PATH);
    /* an attribute length past the block */
    memcpy(a2, good_attrs, sizeof(a2));
    a2[13] = 40;
    expect_update_err(NULL, 0, a2, sizeof(a2), area_ok, sizeof(area_ok), PEER_SUB_ATTR_LIST);
    /* a repeated attribute */
    uint8_t twice[2 * 10 + 12];
    memcpy(twice, good_attrs, 10);
    memcpy(twice + 10, good_attrs, 10);
    memcpy(twice + 20, good_attrs + 10, 12);
    expect_update_err(NULL, 0, twice, sizeof(twice), area_ok, sizeof(area_ok), PEER_SUB_ATTR_LIST);
    /* a withdrawn length beyond the message */
    uint8_t m[64];
    size_t len = raw_update(m, NULL, 0, NULL, 0, NULL, 0);
    m[9] = 50;
    struct peer_update u;
    struct peer_err err;
    assert_int_equal(peer_decode_update(m, len, &u, &err), -1);
    assert_int_equal(err.subcode, PEER_SUB_ATTR_LIST);
    /* the good one decodes */
    len = raw_update(m, NULL, 0, good_attrs, sizeof(good_attrs), area_ok, sizeof(area_ok));
    assert_int_equal(peer_decode_update(m, len, &u, &err), 0);
}

static void test_small_messages(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    struct peer_err err;
    peer_encode_keepalive(&b);
    assert_int_equal(b.len, 6);
    assert_int_equal(peer_decode_keepalive((const uint8_t *)b.data, b.len, &err), 0);
    buf_reset(&b);
    peer_encode_notification(&b, PEER_ERR_CEASE, PEER_SUB_SHUTDOWN, "bye", 3);
    uint8_t c, s;
    const uint8_t *d;
    size_t dl;
    assert_int_equal(peer_decode_notification((const uint8_t *)b.data, b.len, &c, &s, &d, &dl, &err), 0);
    assert_int_equal(c, PEER_ERR_CEASE);
    assert_int_equal(s, PEER_SUB_SHUTDOWN);
    assert_int_equal(dl, 3);
    assert_memory_equal(d, "bye", 3);
    assert_string_equal(peer_err_text(c, s), "cease: administrative shutdown");
    assert_string_equal(peer_err_text(PEER_ERR_HOLD, 0), "hold timer expired");
    buf_reset(&b);
    peer_encode_route_refresh(&b, 1);
    uint8_t fam;
    assert_int_equal(peer_decode_route_refresh((const uint8_t *)b.data, b.len, &fam, &err), 0);
    assert_int_equal(fam, 1);
    uint8_t ka_body[7] = {0, 0, 0, 7, PEER_KEEPALIVE, 0, 0};
    assert_int_equal(peer_decode_keepalive(ka_body, 7, &err), -1);
    buf_fini(&b);
}

/*
 * A connection's output buffer is partly sent (it has a read offset) when the
 * next UPDATE is written into it, and may then move its bytes as it grows.
 * The message written must still decode: a thousand routes after a consumed
 * front, so that the buffer both compacts and grows while the writer runs.
 */
static void test_update_into_a_partly_sent_buffer(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    char junk[300];
    memset(junk, 'j', sizeof(junk));
    buf_append(&b, junk, sizeof(junk));
    buf_consume(&b, 290);        /* 10 bytes still to send, 290 consumed in front */
    struct peer_update_writer w;
    peer_update_begin(&w, &b, 1u << 20);
    const char *path[] = {"beta"};
    struct peer_handoff_target ho = {PEER_HO_CNAME, 13, "cdn.beta.test"};
    assert_int_equal(peer_update_attrs(&w, path, 1, &ho, 1, NULL, NULL, 0), 0);
    for (unsigned i = 0; i < 1000; i++) {
        struct peer_route r = {.kind = PEER_R_AREA4, .plen = 24, .addr = {10, (uint8_t)(i >> 8), (uint8_t)i}};
        assert_int_equal(peer_update_announce(&w, &r), 0);
    }
    size_t n = peer_update_end(&w);
    assert_int_equal(buf_avail(&b), 10 + n);
    const uint8_t *msg = (const uint8_t *)buf_head(&b) + 10;
    assert_memory_equal(buf_head(&b), junk, 10);
    struct peer_update u;
    struct peer_err err;
    assert_int_equal(peer_decode_update(msg, n, &u, &err), 0);
    size_t pos = 0, k = 0;
    struct peer_route r;
    while (peer_route_next(u.announced, u.announced_len, &pos, &r)) {
        assert_int_equal(r.addr[1], (uint8_t)(k >> 8));
        assert_int_equal(r.addr[2], (uint8_t)k);
        k++;
    }
    assert_int_equal(k, 1000);
    buf_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame),
        cmocka_unit_test(test_update_into_a_partly_sent_buffer),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_open_round_trip_and_layout),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_update_round_trip),
        cmocka_unit_test(test_end_of_rib_and_size_limit),
        cmocka_unit_test(test_update_errors),
        cmocka_unit_test(test_small_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
