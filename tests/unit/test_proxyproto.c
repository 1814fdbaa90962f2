/*
 * Unit tests for src/lib/proxyproto.c: round trips for IPv4 and IPv6,
 * every prefix is "need more", LOCAL and UNSPEC, and rejections.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/proxyproto.h"

static void roundtrip(const char *src_s, const char *dst_s)
{
    struct net_addr src, dst, s2, d2;
    uint8_t buf[64];
    char a[80], b[80];
    int has;
    assert_int_equal(net_addr_parse(src_s, &src), 0);
    assert_int_equal(net_addr_parse(dst_s, &dst), 0);
    int n = proxy_v2_write(&src, &dst, buf, sizeof(buf));
    assert_true(n == 28 || n == 52);
    for (int i = 0; i < n; i++)
        assert_int_equal(proxy_v2_parse(buf, (size_t)i, &s2, &d2, &has), 0);
    assert_int_equal(proxy_v2_parse(buf, (size_t)n, &s2, &d2, &has), n);
    assert_int_equal(has, 1);
    assert_string_equal(net_addr_str(&s2, a, sizeof(a)), src_s);
    assert_string_equal(net_addr_str(&d2, b, sizeof(b)), dst_s);
}

static void test_roundtrip(void **state)
{
    roundtrip("192.0.2.7:51000", "198.51.100.1:443");
    roundtrip("[2001:db8::1]:4000", "[2001:db8::2]:8443");
}

static void test_local_and_tlvs(void **state)
{
    struct net_addr s, d;
    int has = 7;
    /* LOCAL with no addresses. */
    uint8_t local[16] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
                         0x20, 0x00, 0x00, 0x00};
    assert_int_equal(proxy_v2_parse(local, 16, &s, &d, &has), 16);
    assert_int_equal(has, 0);
    /* PROXY TCP4 with a 5-byte TLV after the addresses is accepted whole. */
    uint8_t tlv[33] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
                       0x21, 0x11, 0x00, 17, 10, 0, 0, 1, 10, 0, 0, 2, 0x1f, 0x90, 0x01, 0xbb,
                       0x04, 0x00, 0x02, 'h', 'i'};
    assert_int_equal(proxy_v2_parse(tlv, sizeof(tlv), &s, &d, &has), 33);
    assert_int_equal(has, 1);
    assert_int_equal(net_addr_port(&s), 8080);
}

static void test_rejects(void **state)
{
    struct net_addr s, d;
    int has;
    uint8_t h[64];
    assert_int_equal(proxy_v2_parse((const uint8_t *)"GET / HTTP/1.1\r\n", 16, &s, &d, &has), -1);
    assert_int_equal(proxy_v2_parse((const uint8_t *)"\x16\x03\x01", 3, &s, &d, &has), -1);
    assert_int_equal(proxy_v2_parse((const uint8_t *)"PROXY TCP4 ", 11, &s, &d, &has), -1); /* v1 */
    struct net_addr a, b;
    net_addr_parse("10.0.0.1:1", &a);
    net_addr_parse("10.0.0.2:2", &b);
    int n = proxy_v2_write(&a, &b, h, sizeof(h));
    h[12] = 0x31; /* version 3 */
    assert_int_equal(proxy_v2_parse(h, (size_t)n, &s, &d, &has), -1);
    h[12] = 0x22; /* command 2 */
    assert_int_equal(proxy_v2_parse(h, (size_t)n, &s, &d, &has), -1);
    h[12] = 0x21;
    h[13] = 0x12; /* UDP */
    assert_int_equal(proxy_v2_parse(h, (size_t)n, &s, &d, &has), -1);
    h[13] = 0x11;
    h[15] = 4; /* too short for IPv4 addresses */
    assert_int_equal(proxy_v2_parse(h, (size_t)n, &s, &d, &has), -1);
    h[14] = 0xff; /* over PROXY_V2_MAX */
    assert_int_equal(proxy_v2_parse(h, (size_t)n, &s, &d, &has), -1);
    /* Mixed families cannot be written. */
    net_addr_parse("[::1]:2", &b);
    assert_int_equal(proxy_v2_write(&a, &b, h, sizeof(h)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_local_and_tlvs),
        cmocka_unit_test(test_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
