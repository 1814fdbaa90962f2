/*
 * Tests for src/dns/wire.c: queries captured from dig, kdig and dnspython
 * parsed field by field; every FORMERR case of dns_parse_query's contract;
 * responses checked byte for byte (header, echoed question, compression
 * pointers, the OPT record with ECS and path); compression of many records
 * and past offset 0x4000; truncation at 512 bytes with and without EDNS;
 * BADVERS; the client side (dns_write_query round trips, dns_response_parse
 * and _next, malformed and cut responses); the name helpers.
 *
 * Longer than the house limit of ~1500 lines: most of it is packet data
 * (fixtures, FORMERR tables, expected bytes) for the one module it mirrors,
 * and the tests read independently, in the order of dns/wire.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns/wire.h"

/* ---- fixtures captured from real tools ---- */

/*
 * /usr/bin/python3, dnspython 2.3.0:
 *   q = dns.message.make_query('www.Example.test', 'A', use_edns=0, payload=1232,
 *                              options=[dns.edns.ECSOption('192.0.2.0', 24)])
 *   q.id = 0x1234; q.to_wire()
 */
static const uint8_t q_py_ecs[] = {
    0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x77,
    0x77, 0x77, 0x07, 0x45, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x04, 0x74, 0x65, 0x73,
    0x74, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x0b, 0x00, 0x08, 0x00, 0x07, 0x00, 0x01, 0x18, 0x00, 0xc0, 0x00, 0x02,
};

/*
 * dnspython 2.3.0:
 *   q = dns.message.make_query('v6.example.test', 'AAAA', use_edns=0, payload=4096,
 *       want_dnssec=True, options=[dns.edns.ECSOption('2001:db8:abcd::', 56),
 *       dns.edns.GenericOption(65350, b'\x05akam1\x03fas')])
 *   q.id = 0xbeef; q.to_wire()
 */
static const uint8_t q_py_path[] = {
    0xbe, 0xef, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x76, 0x36,
    0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00,
    0x1c, 0x00, 0x01, 0x00, 0x00, 0x29, 0x10, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x1d, 0x00,
    0x08, 0x00, 0x0b, 0x00, 0x02, 0x38, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0xab, 0xcd, 0x00, 0xff,
    0x46, 0x00, 0x0a, 0x05, 0x61, 0x6b, 0x61, 0x6d, 0x31, 0x03, 0x66, 0x61, 0x73,
};

/*
 * dnspython 2.3.0, EDNS version 1:
 *   q = dns.message.make_query('example.test', 'TXT'); q.use_edns(edns=1, payload=1232)
 *   q.id = 7; q.to_wire()
 */
static const uint8_t q_py_v1[] = {
    0x00, 0x07, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x07, 0x65,
    0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x10,
    0x00, 0x01, 0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
};

/*
 * dig 9.18 (Debian 12), captured by a UDP listener on 127.0.0.1:
 *   dig @127.0.0.1 -p 15353 +subnet=198.51.100.0/24 +nocookie www.Example.TEST AAAA
 * (dig sets AD in queries.)
 */
static const uint8_t q_dig[] = {
    0x59, 0x51, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x77,
    0x77, 0x77, 0x07, 0x45, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x04, 0x54, 0x45, 0x53,
    0x54, 0x00, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x0b, 0x00, 0x08, 0x00, 0x07, 0x00, 0x01, 0x18, 0x00, 0xc6, 0x33, 0x64,
};

/* dig @127.0.0.1 -p 15353 +noedns img.example.test A */
static const uint8_t q_dig_noedns[] = {
    0xce, 0xb8, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x03, 0x69, 0x6d, 0x67, 0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65,
    0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x01, 0x00, 0x01,
};

/* kdig 3.2 (Knot DNS), same capture: kdig +cookie +bufsize=1400 cdn.example.test A */
static const uint8_t q_kdig[] = {
    0x36, 0xc8, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x63, 0x64,
    0x6e, 0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00,
    0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x29, 0x05, 0x78, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c,
    0x00, 0x0a, 0x00, 0x08, 0x94, 0x91, 0xb3, 0xda, 0xd3, 0x31, 0x69, 0x88,
};

/* ---- helpers ---- */

static uint8_t big[DNS_MAX_UDP];

/* A wire name from text, from a small rotating pool. */
static const uint8_t *N(const char *text)
{
    static uint8_t pool[16][DNS_MAX_NAME];
    static unsigned next;
    uint8_t *out = pool[next++ % 16];

    assert_true(dns_name_from_text(out, text) > 0);
    return out;
}

/* A packet built by hand, to send what the writers refuse to make. */
struct pk {
    uint8_t b[4096];
    size_t n;
};

static void pk_u8(struct pk *p, unsigned v)
{
    assert_true(p->n < sizeof(p->b));
    p->b[p->n++] = (uint8_t)v;
}

static void pk_u16(struct pk *p, unsigned v)
{
    pk_u8(p, v >> 8);
    pk_u8(p, v & 0xff);
}

static void pk_u32(struct pk *p, uint32_t v)
{
    pk_u16(p, v >> 16);
    pk_u16(p, v & 0xffff);
}

static void pk_raw(struct pk *p, const void *data, size_t n)
{
    assert_true(n <= sizeof(p->b) - p->n);
    memcpy(p->b + p->n, data, n);
    p->n += n;
}

static void pk_name(struct pk *p, const char *text)
{
    const uint8_t *w = N(text);

    pk_raw(p, w, dns_name_len(w));
}

static void pk_hdr(struct pk *p, uint16_t id, uint16_t flags, unsigned qd, unsigned an,
                   unsigned ns, unsigned ar)
{
    p->n = 0;
    pk_u16(p, id);
    pk_u16(p, flags);
    pk_u16(p, qd);
    pk_u16(p, an);
    pk_u16(p, ns);
    pk_u16(p, ar);
}

/* An OPT record: root owner, payload size, TTL word, rdata. */
static void pk_opt(struct pk *p, unsigned udp, uint32_t ttl, const uint8_t *rd, size_t n)
{
    pk_u8(p, 0);
    pk_u16(p, DNS_T_OPT);
    pk_u16(p, udp);
    pk_u32(p, ttl);
    pk_u16(p, (unsigned)n);
    if (n > 0)
        pk_raw(p, rd, n);
}

/* "www.example.test A" with one OPT record carrying opts[0..n). */
static void pk_query_opts(struct pk *p, const uint8_t *opts, size_t n)
{
    pk_hdr(p, 0x4242, DNS_F_RD, 1, 0, 0, 1);
    pk_name(p, "www.example.test");
    pk_u16(p, DNS_T_A);
    pk_u16(p, DNS_C_IN);
    pk_opt(p, 1232, 0, opts, n);
}

/* Parses www.example.test A with the given OPT options; checks rc and whether EDNS was kept. */
static void check_opts(const uint8_t *opts, size_t n, int want_rc, int want_edns)
{
    struct pk p;
    struct dns_query q;

    pk_query_opts(&p, opts, n);
    assert_int_equal(dns_parse_query(p.b, p.n, &q), want_rc);
    assert_int_equal(q.edns, want_edns);
    /* The question always survives an option error. */
    assert_int_equal(q.question_end, 12 + 18 + 4);
}

#define OPTS(rc, edns, ...)                                                    \
    check_opts((const uint8_t[]){ __VA_ARGS__ }, sizeof((const uint8_t[]){ __VA_ARGS__ }), rc, \
               edns)

static void check_raw(const struct pk *p, int want_rc)
{
    struct dns_query q;

    assert_int_equal(dns_parse_query(p->b, p->n, &q), want_rc);
}

/* A response parsed with dns_response_parse must walk cleanly; returns the record count. */
static unsigned walk(const uint8_t *pkt, size_t len, uint16_t id, const uint8_t *qname,
                     uint16_t qtype, struct dns_response *r)
{
    struct dns_rr rr;
    unsigned n = 0;
    int rc;

    assert_int_equal(dns_response_parse(r, pkt, len, id, qname, qtype), 0);
    while ((rc = dns_response_next(r, &rr)) == 1)
        n++;
    assert_int_equal(rc, 0);
    assert_int_equal(dns_response_next(r, &rr), 0);
    return n;
}

/* ---- parsing real queries ---- */

static void test_fixture_dnspython_ecs(void **state)
{
    struct dns_query q;

    memset(&q, 0xa5, sizeof(q)); /* the parser must set what it reports */
    assert_int_equal(dns_parse_query(q_py_ecs, sizeof(q_py_ecs), &q), DNS_RC_NOERROR);
    assert_int_equal(q.id, 0x1234);
    assert_int_equal(q.flags, DNS_F_RD);
    assert_int_equal(q.qtype, DNS_T_A);
    assert_int_equal(q.qclass, DNS_C_IN);
    assert_ptr_equal(q.qname, q_py_ecs + 12);
    assert_int_equal(q.qname_len, 18);
    assert_memory_equal(q.qname, "\3www\7Example\4test", 18);
    assert_memory_equal(q.lname, "\3www\7example\4test", 18);
    assert_int_equal(q.nlabels, 3);
    assert_int_equal(q.question_end, 34);
    assert_int_equal(q.edns, 1);
    assert_int_equal(q.edns_version, 0);
    assert_int_equal(q.dnssec_ok, 0);
    assert_int_equal(q.udp_size, 1232);
    assert_int_equal(q.has_ecs, 1);
    assert_int_equal(q.ecs.family, 1);
    assert_int_equal(q.ecs.source, 24);
    assert_int_equal(q.ecs.scope, 0);
    assert_memory_equal(q.ecs.addr, "\xc0\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 16);
    assert_int_equal(q.has_path, 0);
    assert_int_equal(q.has_cookie, 0);
}

static void test_fixture_dnspython_path(void **state)
{
    struct dns_query q;

    assert_int_equal(dns_parse_query(q_py_path, sizeof(q_py_path), &q), DNS_RC_NOERROR);
    assert_int_equal(q.id, 0xbeef);
    assert_int_equal(q.qtype, DNS_T_AAAA);
    assert_int_equal(q.nlabels, 3);
    assert_int_equal(q.udp_size, 4096);
    assert_int_equal(q.dnssec_ok, 1);
    assert_int_equal(q.has_ecs, 1);
    assert_int_equal(q.ecs.family, 2);
    assert_int_equal(q.ecs.source, 56);
    assert_memory_equal(q.ecs.addr, "\x20\x01\x0d\xb8\xab\xcd\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 16);
    assert_int_equal(q.has_path, 1);
    assert_int_equal(q.path.n, 2);
    assert_int_equal(q.path.len[0], 5);
    assert_string_equal(q.path.id[0], "akam1");
    assert_int_equal(q.path.len[1], 3);
    assert_string_equal(q.path.id[1], "fas");
}

static void test_fixture_dig(void **state)
{
    struct dns_query q;

    assert_int_equal(dns_parse_query(q_dig, sizeof(q_dig), &q), DNS_RC_NOERROR);
    assert_int_equal(q.id, 0x5951);
    assert_int_equal(q.flags, DNS_F_RD | DNS_F_AD);
    assert_int_equal(q.qtype, DNS_T_AAAA);
    assert_memory_equal(q.lname, "\3www\7example\4test", 18);
    assert_memory_equal(q.qname, "\3www\7Example\4TEST", 18);
    assert_int_equal(q.udp_size, 1232);
    assert_int_equal(q.has_ecs, 1);
    assert_int_equal(q.ecs.source, 24);
    assert_memory_equal(q.ecs.addr, "\xc6\x33\x64\x00", 4);
    assert_int_equal(q.has_cookie, 0);

    assert_int_equal(dns_parse_query(q_dig_noedns, sizeof(q_dig_noedns), &q), DNS_RC_NOERROR);
    assert_int_equal(q.edns, 0);
    assert_int_equal(q.udp_size, 512);
    assert_int_equal(q.has_ecs, 0);
    assert_int_equal(q.question_end, sizeof(q_dig_noedns));
}

static void test_fixture_kdig(void **state)
{
    struct dns_query q;

    assert_int_equal(dns_parse_query(q_kdig, sizeof(q_kdig), &q), DNS_RC_NOERROR);
    assert_int_equal(q.udp_size, 1400);
    assert_int_equal(q.has_cookie, 1);
    assert_int_equal(q.cookie_len, 8);
    assert_memory_equal(q.cookie, q_kdig + sizeof(q_kdig) - 8, 8);
    assert_int_equal(q.has_ecs, 0);
}

/* ---- parse results other than NOERROR ---- */

static void test_parse_drop(void **state)
{
    uint8_t pkt[sizeof(q_py_ecs)];
    struct dns_query q;
    size_t n;

    for (n = 0; n < DNS_HDR_LEN; n++)
        assert_int_equal(dns_parse_query(q_py_ecs, n, &q), DNS_PARSE_DROP);
    /* A response is never answered. */
    memcpy(pkt, q_py_ecs, sizeof(pkt));
    pkt[2] |= 0x80;
    assert_int_equal(dns_parse_query(pkt, sizeof(pkt), &q), DNS_PARSE_DROP);
    /* A bare header of a query is a FORMERR (no question). */
    assert_int_equal(dns_parse_query(q_py_ecs, DNS_HDR_LEN, &q), DNS_RC_FORMERR);
}

/* Every cut of a valid query is answered FORMERR, never read past. */
static void test_parse_every_cut(void **state)
{
    struct dns_query q;
    size_t n;

    for (n = DNS_HDR_LEN; n < sizeof(q_py_path); n++) {
        assert_int_equal(dns_parse_query(q_py_path, n, &q), DNS_RC_FORMERR);
        /* The question is whole from byte 33 on, and only then reported. */
        assert_int_equal(q.question_end != 0, n >= 33);
        assert_int_equal(q.qname != NULL, n >= 33);
    }
}

static void test_formerr_header_and_question(void **state)
{
    uint8_t label[62];
    struct pk p;
    struct dns_query q;
    unsigned i;

    /* QDCOUNT 0 and 2 */
    pk_hdr(&p, 1, 0, 0, 0, 0, 0);
    check_raw(&p, DNS_RC_FORMERR);
    pk_hdr(&p, 1, 0, 2, 0, 0, 0);
    pk_name(&p, "a.test");
    pk_u32(&p, 0x00010001);
    pk_name(&p, "b.test");
    pk_u32(&p, 0x00010001);
    check_raw(&p, DNS_RC_FORMERR);
    assert_int_equal(dns_parse_query(p.b, p.n, &q), DNS_RC_FORMERR);
    assert_int_equal(q.question_end, 0);

    /* QDCOUNT 0 with an OPT (a cookie-only query): FORMERR that keeps its OPT. */
    pk_hdr(&p, 1, 0, 0, 0, 0, 1);
    pk_opt(&p, 1232, 0, NULL, 0);
    assert_int_equal(dns_parse_query(p.b, p.n, &q), DNS_RC_FORMERR);
    assert_int_equal(q.edns, 1);

    /* Reserved label types 01 and 10, and a label longer than 63. */
    for (i = 0; i < 3; i++) {
        static const uint8_t first[3] = { 0x41, 0x81, 0x40 };

        pk_hdr(&p, 1, 0, 1, 0, 0, 0);
        pk_u8(&p, first[i]);
        pk_raw(&p, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 70);
        pk_u8(&p, 0);
        pk_u32(&p, 0x00010001);
        check_raw(&p, DNS_RC_FORMERR);
    }

    /* A compression pointer in the question, even to a valid name. */
    pk_hdr(&p, 1, 0, 1, 0, 0, 0);
    pk_u8(&p, 1);
    pk_u8(&p, 'a');
    pk_u16(&p, 0xc000 | 12);
    pk_u32(&p, 0x00010001);
    check_raw(&p, DNS_RC_FORMERR);

    /* 255 bytes of name is fine, 256 is not. */
    memset(label, 'x', sizeof(label));
    pk_hdr(&p, 1, 0, 1, 0, 0, 0);
    for (i = 0; i < 4; i++) {
        pk_u8(&p, 62);
        pk_raw(&p, label, 62);
    }
    pk_u8(&p, 1);
    pk_u8(&p, 'z');
    pk_u8(&p, 0); /* 4 * 63 + 2 + 1 = 255 */
    pk_u32(&p, 0x00010001);
    assert_int_equal(dns_parse_query(p.b, p.n, &q), DNS_RC_NOERROR);
    assert_int_equal(q.qname_len, 255);
    assert_int_equal(q.nlabels, 5);
    pk_hdr(&p, 1, 0, 1, 0, 0, 0);
    for (i = 0; i < 4; i++) {
        pk_u8(&p, 62);
        pk_raw(&p, label, 62);
    }
    pk_u8(&p, 2);
    pk_raw(&p, "zz", 2);
    pk_u8(&p, 0);
    pk_u32(&p, 0x00010001);
    check_raw(&p, DNS_RC_FORMERR);

    /* An answer record, an authority record. */
    pk_hdr(&p, 1, 0, 1, 1, 0, 0);
    pk_name(&p, "a.test");
    pk_u32(&p, 0x00010001);
    pk_u16(&p, 0xc00c);
    pk_u32(&p, 0x00010001);
    pk_u32(&p, 60);
    pk_u16(&p, 4);
    pk_u32(&p, 0x7f000001);
    check_raw(&p, DNS_RC_FORMERR);
    p.b[7] = 0;
    p.b[9] = 1;
    check_raw(&p, DNS_RC_FORMERR);
    /* The same record in the additional section is fine. */
    p.b[9] = 0;
    p.b[11] = 1;
    check_raw(&p, DNS_RC_NOERROR);

    /* Trailing garbage. */
    pk_hdr(&p, 1, 0, 1, 0, 0, 0);
    pk_name(&p, "a.test");
    pk_u32(&p, 0x00010001);
    pk_u8(&p, 0);
    check_raw(&p, DNS_RC_FORMERR);
}

static void test_formerr_opt_record(void **state)
{
    struct pk p;
    struct dns_query q;

    /* Two OPT records: FORMERR, and no OPT can be trusted for the answer. */
    pk_hdr(&p, 1, 0, 1, 0, 0, 2);
    pk_name(&p, "a.test");
    pk_u32(&p, 0x00010001);
    pk_opt(&p, 1232, 0, NULL, 0);
    pk_opt(&p, 1232, 0, NULL, 0);
    assert_int_equal(dns_parse_query(p.b, p.n, &q), DNS_RC_FORMERR);
    assert_int_equal(q.edns, 0);

    /* An OPT not owned by the root. */
    pk_hdr(&p, 1, 0, 1, 0, 0, 1);
    pk_name(&p, "a.test");
    pk_u32(&p, 0x00010001);
    pk_u16(&p, 0xc00c);
    pk_u16(&p, DNS_T_OPT);
    pk_u16(&p, 1232);
    pk_u32(&p, 0);
    pk_u16(&p, 0);
    assert_int_equal(dns_parse_query(p.b, p.n, &q), DNS_RC_FORMERR);
    assert_int_equal(q.edns, 0);

    /* An OPT whose rdata runs past the packet. */
    pk_hdr(&p, 1, 0, 1, 0, 0, 1);
    pk_name(&p, "a.test");
    pk_u32(&p, 0x00010001);
    pk_opt(&p, 1232, 0, (const uint8_t *)"\0\x08\0\x04", 4);
    p.b[p.n - 5] = 5;
    assert_int_equal(dns_parse_query(p.b, p.n, &q), DNS_RC_FORMERR);
    assert_int_equal(q.edns, 0);

    /* A compression loop in an additional record's owner. */
    pk_hdr(&p, 1, 0, 1, 0, 0, 1);
    pk_name(&p, "a.test");
    pk_u32(&p, 0x00010001);
    pk_u16(&p, 0xc000 | (unsigned)p.n);
    pk_u32(&p, 0x00010001);
    pk_u32(&p, 0);
    pk_u16(&p, 0);
    check_raw(&p, DNS_RC_FORMERR);

    /* A payload size under 512 counts as 512 (RFC 6891 section 6.2.5). */
    pk_hdr(&p, 1, 0, 1, 0, 0, 1);
    pk_name(&p, "a.test");
    pk_u32(&p, 0x00010001);
    pk_opt(&p, 100, 0x8000, NULL, 0);
    assert_int_equal(dns_parse_query(p.b, p.n, &q), DNS_RC_NOERROR);
    assert_int_equal(q.udp_size, 512);
    assert_int_equal(q.dnssec_ok, 1);
}

static void test_formerr_ecs(void **state)
{
    struct pk p;
    struct dns_query q;

    /* Valid: v4 /0, /24, /32; v6 /0, /56, /128. */
    OPTS(DNS_RC_NOERROR, 1, 0, 8, 0, 4, 0, 1, 0, 0);
    OPTS(DNS_RC_NOERROR, 1, 0, 8, 0, 7, 0, 1, 24, 0, 10, 1, 2);
    OPTS(DNS_RC_NOERROR, 1, 0, 8, 0, 8, 0, 1, 32, 0, 10, 1, 2, 3);
    OPTS(DNS_RC_NOERROR, 1, 0, 8, 0, 4, 0, 2, 0, 0);
    OPTS(DNS_RC_NOERROR, 1, 0, 8, 0, 11, 0, 2, 56, 0, 0x20, 1, 0xd, 0xb8, 0, 0, 0x12);
    OPTS(DNS_RC_NOERROR, 1, 0, 8, 0, 20, 0, 2, 128, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
         13, 14, 15, 16);
    /* v4 /25 with the 25th bit set is fine; bit 26 is not. */
    OPTS(DNS_RC_NOERROR, 1, 0, 8, 0, 8, 0, 1, 25, 0, 10, 1, 2, 0x80);
    OPTS(DNS_RC_FORMERR, 1, 0, 8, 0, 8, 0, 1, 25, 0, 10, 1, 2, 0x40);
    /* Family 0 and 3. */
    OPTS(DNS_RC_FORMERR, 1, 0, 8, 0, 4, 0, 0, 0, 0);
    OPTS(DNS_RC_FORMERR, 1, 0, 8, 0, 7, 0, 3, 24, 0, 10, 1, 2);
    /* Source beyond the family's width. */
    OPTS(DNS_RC_FORMERR, 1, 0, 8, 0, 9, 0, 1, 33, 0, 10, 1, 2, 3, 4);
    OPTS(DNS_RC_FORMERR, 1, 0, 8, 0, 21, 0, 2, 129, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
         13, 14, 15, 16, 17);
    /* Address bytes != ceil(source / 8), either way. */
    OPTS(DNS_RC_FORMERR, 1, 0, 8, 0, 8, 0, 1, 24, 0, 10, 1, 2, 0);
    OPTS(DNS_RC_FORMERR, 1, 0, 8, 0, 6, 0, 1, 24, 0, 10, 1);
    OPTS(DNS_RC_FORMERR, 1, 0, 8, 0, 5, 0, 1, 0, 0, 0);
    /* Bits set past source (RFC 7871 section 7.1.2). */
    OPTS(DNS_RC_FORMERR, 1, 0, 8, 0, 7, 0, 1, 23, 0, 10, 1, 3);
    OPTS(DNS_RC_FORMERR, 1, 0, 8, 0, 11, 0, 2, 52, 0, 0x20, 1, 0xd, 0xb8, 0, 0, 0x18);
    /* A non-zero scope in a query (section 7.1.1). */
    OPTS(DNS_RC_FORMERR, 1, 0, 8, 0, 7, 0, 1, 24, 24, 10, 1, 2);
    /* Shorter than its fixed part. */
    OPTS(DNS_RC_FORMERR, 1, 0, 8, 0, 3, 0, 1, 0);
    OPTS(DNS_RC_FORMERR, 1, 0, 8, 0, 0);
    /* Twice. */
    OPTS(DNS_RC_FORMERR, 1, 0, 8, 0, 4, 0, 1, 0, 0, 0, 8, 0, 4, 0, 1, 0, 0);
    /* An option running past the OPT rdata, and a stray byte after the options. */
    OPTS(DNS_RC_FORMERR, 1, 0, 8, 0, 8, 0, 1, 24, 0, 10, 1, 2);
    OPTS(DNS_RC_FORMERR, 1, 0, 8, 0, 4, 0, 1, 0, 0, 0);
    /* Unknown options are skipped. */
    OPTS(DNS_RC_NOERROR, 1, 0x12, 0x34, 0, 3, 1, 2, 3, 0, 8, 0, 4, 0, 1, 0, 0);

    /* The stored address of a valid option is zero past the source. */
    pk_query_opts(&p, (const uint8_t *)"\0\x08\0\x07\0\x01\x14\0\x0a\x0b\xc0", 11);
    assert_int_equal(dns_parse_query(p.b, p.n, &q), DNS_RC_NOERROR);
    assert_memory_equal(q.ecs.addr, "\x0a\x0b\xc0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
    assert_int_equal(q.ecs.source, 20);
}

static void test_formerr_cookie(void **state)
{
    struct pk p;
    struct dns_query q;
    uint8_t o[4 + 41];
    size_t n;

    for (n = 0; n <= 41; n++) {
        o[0] = 0;
        o[1] = DNS_OPT_COOKIE;
        o[2] = 0;
        o[3] = (uint8_t)n;
        memset(o + 4, (int)n, n);
        pk_query_opts(&p, o, 4 + n);
        if (n == 8 || (n >= 16 && n <= 40)) {
            assert_int_equal(dns_parse_query(p.b, p.n, &q), DNS_RC_NOERROR);
            assert_int_equal(q.has_cookie, 1);
            assert_int_equal(q.cookie_len, n);
            assert_memory_equal(q.cookie, o + 4, n);
        } else {
            assert_int_equal(dns_parse_query(p.b, p.n, &q), DNS_RC_FORMERR);
            assert_int_equal(q.edns, 1);
        }
    }
    /* Twice. */
    OPTS(DNS_RC_FORMERR, 1, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6,
         7, 8);
}

static void test_formerr_path(void **state)
{
    uint8_t o[4 + 8 * 33 + 40];
    struct pk p;
    struct dns_query q;
    size_t n = 4;
    unsigned i;

    /* The most the option may carry: 8 ids of 32 bytes. */
    for (i = 0; i < 8; i++) {
        o[n++] = 32;
        memset(o + n, 'a' + (int)i, 32);
        o[n + 31] = (uint8_t)('0' + i);
        o[n + 5] = '-';
        n += 32;
    }
    o[0] = DNS_OPT_FERRY_PATH >> 8;
    o[1] = DNS_OPT_FERRY_PATH & 0xff;
    o[2] = (uint8_t)((n - 4) >> 8);
    o[3] = (uint8_t)(n - 4);
    pk_query_opts(&p, o, n);
    assert_int_equal(dns_parse_query(p.b, p.n, &q), DNS_RC_NOERROR);
    assert_int_equal(q.has_path, 1);
    assert_int_equal(q.path.n, 8);
    for (i = 0; i < 8; i++) {
        assert_int_equal(q.path.len[i], 32);
        assert_int_equal(strlen(q.path.id[i]), 32);
        assert_int_equal(q.path.id[i][31], '0' + (int)i);
        assert_int_equal(q.path.id[i][5], '-');
    }
    /* A ninth entry. */
    o[n] = 1;
    o[n + 1] = 'z';
    o[3] = (uint8_t)(n + 2 - 4);
    o[2] = (uint8_t)((n + 2 - 4) >> 8);
    pk_query_opts(&p, o, n + 2);
    assert_int_equal(dns_parse_query(p.b, p.n, &q), DNS_RC_FORMERR);
    assert_int_equal(q.edns, 1);

    /* Valid single ids. */
    OPTS(DNS_RC_NOERROR, 1, 0xff, 0x46, 0, 2, 1, 'a');
    OPTS(DNS_RC_NOERROR, 1, 0xff, 0x46, 0, 6, 5, '0', '-', '9', 'z', 'a');
    /* Empty option, zero length entry, over-long entry, truncated entry. */
    OPTS(DNS_RC_FORMERR, 1, 0xff, 0x46, 0, 0);
    OPTS(DNS_RC_FORMERR, 1, 0xff, 0x46, 0, 3, 1, 'a', 0);
    o[0] = 0xff;
    o[1] = 0x46;
    o[2] = 0;
    o[3] = 34;
    o[4] = 33;
    memset(o + 5, 'a', 33);
    check_opts(o, 4 + 34, DNS_RC_FORMERR, 1);
    o[3] = 33;
    o[4] = 32;
    check_opts(o, 4 + 33, DNS_RC_NOERROR, 1);
    OPTS(DNS_RC_FORMERR, 1, 0xff, 0x46, 0, 3, 3, 'a', 'b');
    OPTS(DNS_RC_FORMERR, 1, 0xff, 0x46, 0, 4, 1, 'a', 3, 'b');
    /* Bad bytes: uppercase, dot, underscore, NUL, high bit. */
    OPTS(DNS_RC_FORMERR, 1, 0xff, 0x46, 0, 2, 1, 'A');
    OPTS(DNS_RC_FORMERR, 1, 0xff, 0x46, 0, 2, 1, '.');
    OPTS(DNS_RC_FORMERR, 1, 0xff, 0x46, 0, 2, 1, '_');
    OPTS(DNS_RC_FORMERR, 1, 0xff, 0x46, 0, 2, 1, 0);
    OPTS(DNS_RC_FORMERR, 1, 0xff, 0x46, 0, 2, 1, 0xe1);
    /* Twice. */
    OPTS(DNS_RC_FORMERR, 1, 0xff, 0x46, 0, 2, 1, 'a', 0xff, 0x46, 0, 2, 1, 'b');
}

static void test_notimp(void **state)
{
    struct pk p;
    struct dns_query q;
    struct dns_msg m;
    uint8_t out[512];
    size_t n;

    /* A NOTIFY (opcode 4) carrying an answer: not ours to judge, NOTIMP. */
    pk_hdr(&p, 9, 4 << 11, 1, 1, 0, 1);
    pk_name(&p, "example.test");
    pk_u16(&p, DNS_T_SOA);
    pk_u16(&p, DNS_C_IN);
    pk_u16(&p, 0xc00c);
    pk_u16(&p, DNS_T_A);
    pk_u16(&p, DNS_C_IN);
    pk_u32(&p, 1);
    pk_u16(&p, 4);
    pk_u32(&p, 1);
    pk_opt(&p, 1232, 0, NULL, 0);
    assert_int_equal(dns_parse_query(p.b, p.n, &q), DNS_RC_NOTIMP);
    assert_int_equal(q.question_end, 12 + 14 + 4);
    assert_int_equal(q.edns, 1);
    assert_int_equal(dns_msg_init(&m, out, sizeof(out), &q, DNS_RC_NOTIMP, 0, 1232), 0);
    n = dns_msg_finish(&m, NULL, 0, NULL);
    assert_int_equal(n, 12 + 14 + 4 + 11);
    /* QR, opcode 4 copied, rcode 4. */
    assert_int_equal(out[2], 0x80 | 4 << 3);
    assert_int_equal(out[3], 4);
    /* Even with a broken question. */
    pk_hdr(&p, 9, 2 << 11, 3, 0, 0, 0);
    assert_int_equal(dns_parse_query(p.b, p.n, &q), DNS_RC_NOTIMP);
    assert_int_equal(q.question_end, 0);
}

/* ---- building responses ---- */

static void test_response_bytes(void **state)
{
    /* The answer to q_py_ecs: two A records, the ECS echoed with scope 24. */
    static const uint8_t want[] = {
        0x12, 0x34, 0x85, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01,
        /* question, as the client wrote it */
        0x03, 'w', 'w', 'w', 0x07, 'E', 'x', 'a', 'm', 'p', 'l', 'e', 0x04, 't', 'e', 's', 't',
        0x00, 0x00, 0x01, 0x00, 0x01,
        /* answers: owner is a pointer to offset 12 */
        0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x04, 192, 0, 2, 1,
        0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x04, 192, 0, 2, 2,
        /* OPT: payload 1232, rcode 0, version 0, DO 0, ECS 1/24/24 192.0.2 */
        0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0b,
        0x00, 0x08, 0x00, 0x07, 0x00, 0x01, 0x18, 0x18, 0xc0, 0x00, 0x02,
    };
    struct dns_query q;
    struct dns_msg m;
    struct dns_response r;
    struct dns_rr rr;
    uint8_t out[512];
    size_t n;

    assert_int_equal(dns_parse_query(q_py_ecs, sizeof(q_py_ecs), &q), DNS_RC_NOERROR);
    assert_int_equal(dns_msg_init(&m, out, sizeof(out), &q, DNS_RC_NOERROR, 1, 1232), 0);
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, q.lname, DNS_T_A, DNS_C_IN, 60,
                                 (const uint8_t *)"\xc0\x00\x02\x01", 4),
                     0);
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, q.qname, DNS_T_A, DNS_C_IN, 60,
                                 (const uint8_t *)"\xc0\x00\x02\x02", 4),
                     0);
    n = dns_msg_finish(&m, &q.ecs, 24, NULL);
    assert_int_equal(n, sizeof(want));
    assert_memory_equal(out, want, sizeof(want));

    /* And it reads back, case-insensitively. */
    assert_int_equal(dns_response_parse(&r, out, n, 0x1234, N("WWW.example.TEST"), DNS_T_A), 0);
    assert_int_equal(r.rcode, 0);
    assert_int_equal(r.has_ecs, 1);
    assert_int_equal(r.ecs.family, 1);
    assert_int_equal(r.ecs.source, 24);
    assert_int_equal(r.ecs.scope, 24);
    assert_memory_equal(r.ecs.addr, "\xc0\x00\x02", 3);
    assert_int_equal(dns_response_next(&r, &rr), 1);
    assert_int_equal(rr.sec, DNS_SEC_AN);
    assert_memory_equal(rr.owner, "\3www\7example\4test", 18);
    assert_int_equal(rr.type, DNS_T_A);
    assert_int_equal(rr.rclass, DNS_C_IN);
    assert_int_equal(rr.ttl, 60);
    assert_int_equal(rr.rdlen, 4);
    assert_memory_equal(rr.rdata, "\xc0\x00\x02\x01", 4);
    assert_int_equal(rr.target[0], 0);
    assert_int_equal(dns_response_next(&r, &rr), 1);
    assert_memory_equal(rr.rdata, "\xc0\x00\x02\x02", 4);
    assert_int_equal(dns_response_next(&r, &rr), 0);
}

static void test_compression_bytes(void **state)
{
    struct dns_query q;
    struct dns_msg m;
    struct dns_response r;
    struct dns_rr rr;
    uint8_t out[1232];
    const uint8_t *ns1 = N("ns1.example.net");
    size_t n;

    /* www.Example.test: labels at 12 (www), 16 (Example), 24 (test), question ends at 34. */
    assert_int_equal(dns_parse_query(q_py_ecs, sizeof(q_py_ecs), &q), DNS_RC_NOERROR);
    assert_int_equal(dns_msg_init(&m, out, sizeof(out), &q, 0, 1, 1232), 0);

    /* www.example.test CNAME cdn.example.test: "cdn" + pointer to Example.test (16). */
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, N("www.example.test"), DNS_T_CNAME, DNS_C_IN,
                                 300, N("cdn.example.test"), 18),
                     0);
    assert_memory_equal(out + 34, "\xc0\x0c\x00\x05\x00\x01\x00\x00\x01\x2c\x00\x06", 12);
    assert_memory_equal(out + 46, "\x03" "cdn\xc0\x10", 6);
    /* cdn.EXAMPLE.test A: a pointer to the CNAME target (46 = 0x2e). */
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, (const uint8_t *)"\3cdn\7EXAMPLE\4test",
                                 DNS_T_A, DNS_C_IN, 300, (const uint8_t *)"\x0a\0\0\1", 4),
                     0);
    assert_memory_equal(out + 52, "\xc0\x2e\x00\x01", 4);
    /* example.test NS ns1.example.net: owner 16, the target shares nothing. */
    assert_int_equal(dns_msg_add(&m, DNS_SEC_NS, N("example.test"), DNS_T_NS, DNS_C_IN, 300,
                                 ns1, 17),
                     0);
    assert_memory_equal(out + 68, "\xc0\x10\x00\x02", 4);
    assert_memory_equal(out + 78, "\x00\x11\x03ns1\x07" "example\x03net\x00", 19);
    /* example.test NS ns2.EXAMPLE.net: "ns2" + pointer to example.net (84 = 0x54). */
    assert_int_equal(dns_msg_add(&m, DNS_SEC_NS, N("example.test"), DNS_T_NS, DNS_C_IN, 300,
                                 (const uint8_t *)"\3ns2\7EXAMPLE\3net", 17),
                     0);
    assert_memory_equal(out + 97, "\xc0\x10\x00\x02", 4);
    assert_memory_equal(out + 107, "\x00\x06\x03ns2\xc0\x54", 8);
    /* ns1.example.net A in the additional section: a pointer to 80 (0x50). */
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AR, ns1, DNS_T_A, DNS_C_IN, 300,
                                 (const uint8_t *)"\x0a\0\0\x35", 4),
                     0);
    assert_memory_equal(out + 115, "\xc0\x50\x00\x01", 4);
    n = dns_msg_finish(&m, NULL, 0, NULL);
    assert_int_equal(n, 115 + 16 + 11);
    assert_memory_equal(out + 6, "\x00\x02\x00\x02\x00\x02", 6);

    /* It reads back with every name decompressed. */
    assert_int_equal(dns_response_parse(&r, out, n, 0x1234, q.lname, DNS_T_A), 0);
    assert_int_equal(dns_response_next(&r, &rr), 1);
    assert_int_equal(rr.type, DNS_T_CNAME);
    assert_memory_equal(rr.target, "\3cdn\7example\4test", 18);
    assert_int_equal(dns_response_next(&r, &rr), 1);
    assert_memory_equal(rr.owner, "\3cdn\7example\4test", 18);
    assert_int_equal(dns_response_next(&r, &rr), 1);
    assert_int_equal(rr.sec, DNS_SEC_NS);
    assert_memory_equal(rr.owner, "\7example\4test", 14);
    assert_memory_equal(rr.target, ns1, 17);
    assert_int_equal(dns_response_next(&r, &rr), 1);
    assert_memory_equal(rr.target, "\3ns2\7example\3net", 17);
    assert_int_equal(dns_response_next(&r, &rr), 1);
    assert_int_equal(rr.sec, DNS_SEC_AR);
    assert_memory_equal(rr.owner, ns1, 17);
    assert_int_equal(dns_response_next(&r, &rr), 0);
}

/* Matches are whole labels: "bexample.test" shares only "test" with "example.test". */
static void test_compression_label_boundary(void **state)
{
    struct pk p;
    struct dns_query q;
    struct dns_msg m;
    uint8_t out[512];

    pk_hdr(&p, 5, 0, 1, 0, 0, 0);
    pk_name(&p, "a.bexample.test");
    pk_u32(&p, 0x00010001);
    assert_int_equal(dns_parse_query(p.b, p.n, &q), DNS_RC_NOERROR);
    assert_int_equal(dns_msg_init(&m, out, sizeof(out), &q, 0, 1, 0), 0);
    assert_int_equal(m.len, 12 + 17 + 4);
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, N("example.test"), DNS_T_A, DNS_C_IN, 1,
                                 (const uint8_t *)"\1\2\3\4", 4),
                     0);
    /* "test" of the question sits at 12 + 2 + 9 = 23. */
    assert_memory_equal(out + 33, "\x07" "example\xc0\x17", 10);
    /* The root alone is never a pointer. */
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, (const uint8_t *)"", DNS_T_A, DNS_C_IN, 1,
                                 (const uint8_t *)"\1\2\3\4", 4),
                     0);
    assert_int_equal(out[33 + 10 + 14], 0);
    assert_int_equal(out[33 + 10 + 15], 0);
    assert_int_equal(out[33 + 10 + 16], DNS_T_A);
}

static void test_compression_soa(void **state)
{
    uint8_t soa[DNS_MAX_NAME * 2 + 20], out[512];
    struct dns_query q;
    struct dns_msg m;
    size_t n1, n2;

    n1 = dns_name_len(N("ns1.example.test"));
    memcpy(soa, N("ns1.example.test"), n1);
    n2 = dns_name_len(N("hostmaster.example.test"));
    memcpy(soa + n1, N("hostmaster.example.test"), n2);
    memcpy(soa + n1 + n2, "\0\0\0\1\0\0\x0e\x10\0\0\x07\x08\0\x12\x75\0\0\0\x01\x2c", 20);

    assert_int_equal(dns_parse_query(q_py_ecs, sizeof(q_py_ecs), &q), DNS_RC_NOERROR);
    q.edns = 0;
    assert_int_equal(dns_msg_init(&m, out, sizeof(out), &q, DNS_RC_NXDOMAIN, 1, 0), 0);
    assert_int_equal(dns_msg_add(&m, DNS_SEC_NS, N("example.test"), DNS_T_SOA, DNS_C_IN, 300,
                                 soa, (uint16_t)(n1 + n2 + 20)),
                     0);
    assert_memory_equal(out + 34, "\xc0\x10\x00\x06\x00\x01\x00\x00\x01\x2c", 10);
    /* rdlength 6 + 13 + 20, then ns1 + ptr, hostmaster + ptr, the five numbers. */
    assert_memory_equal(out + 44, "\x00\x27\x03ns1\xc0\x10\x0ahostmaster\xc0\x10", 21);
    assert_memory_equal(out + 65, soa + n1 + n2, 20);
    assert_int_equal(dns_msg_finish(&m, NULL, 0, NULL), 85);
    assert_int_equal(out[3], DNS_RC_NXDOMAIN);

    /* Malformed SOA rdata: one byte short, one byte long, a single name. */
    assert_int_equal(dns_msg_init(&m, out, sizeof(out), &q, 0, 1, 0), 0);
    assert_int_equal(dns_msg_add(&m, DNS_SEC_NS, N("example.test"), DNS_T_SOA, DNS_C_IN, 1, soa,
                                 (uint16_t)(n1 + n2 + 19)),
                     -1);
    assert_int_equal(dns_msg_add(&m, DNS_SEC_NS, N("example.test"), DNS_T_SOA, DNS_C_IN, 1, soa,
                                 (uint16_t)(n1 + n2 + 21)),
                     -1);
    assert_int_equal(dns_msg_add(&m, DNS_SEC_NS, N("example.test"), DNS_T_SOA, DNS_C_IN, 1, soa,
                                 (uint16_t)n1),
                     -1);
    assert_int_equal(m.truncated, 0);
    assert_int_equal(m.len, 34);
}

/* Many records to the question's name cost 16 bytes each. */
static void test_compression_many_records(void **state)
{
    struct dns_query q;
    struct dns_msg m;
    struct dns_response r;
    uint8_t out[4096], rd[4];
    unsigned i;
    size_t n;

    assert_int_equal(dns_parse_query(q_py_ecs, sizeof(q_py_ecs), &q), DNS_RC_NOERROR);
    assert_int_equal(dns_msg_init(&m, out, sizeof(out), &q, 0, 1, 4096), 0);
    for (i = 0; i < 200; i++) {
        rd[0] = 10;
        rd[1] = 0;
        rd[2] = (uint8_t)(i >> 8);
        rd[3] = (uint8_t)i;
        assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, N("WWW.EXAMPLE.TEST"), DNS_T_A, DNS_C_IN,
                                     60, rd, 4),
                         0);
    }
    n = dns_msg_finish(&m, &q.ecs, 0, NULL);
    assert_int_equal(n, 34 + 200 * 16 + 11 + 11);
    assert_int_equal(walk(out, n, 0x1234, q.lname, DNS_T_A, &r), 200);
}

/* Past offset 0x4000 a name can be pointed from but no longer pointed to. */
static void test_compression_past_0x4000(void **state)
{
    static uint8_t txt[2 * (12 + 255)]; /* the filler before 0x3ffd is up to 522 bytes */
    struct dns_query q;
    struct dns_msg m;
    struct dns_response r;
    struct dns_rr rr;
    size_t at, at2, n;
    uint16_t rdlen;
    unsigned i, three;

    txt[0] = 254;
    memset(txt + 1, 't', sizeof(txt) - 1);
    assert_int_equal(dns_parse_query(q_py_ecs, sizeof(q_py_ecs), &q), DNS_RC_NOERROR);
    assert_int_equal(dns_msg_init(&m, big, sizeof(big), &q, 0, 1, 4096), 0);
    /* Fill up to 0x3ffd, so that a name written there straddles 0x4000. */
    for (i = 0; m.len + 2 * (12 + 255) < 0x3ffd; i++)
        assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, q.lname, DNS_T_TXT, DNS_C_IN, 1, txt, 255),
                         0);
    rdlen = (uint16_t)(0x3ffd - m.len - 12);
    assert_true(rdlen <= sizeof(txt));
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, q.lname, DNS_T_TXT, DNS_C_IN, 1, txt, rdlen), 0);
    i++;
    assert_int_equal(m.len, 0x3ffd);
    /* "aa" at 0x3ffd can be pointed to, "zzz" at 0x4000 cannot. */
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, N("aa.zzz.example.test"), DNS_T_A, DNS_C_IN, 1,
                                 (const uint8_t *)"\1\1\1\1", 4),
                     0);
    assert_memory_equal(big + 0x3ffd, "\x02" "aa\x03zzz\xc0\x10", 9);
    at = m.len;
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, N("bb.zzz.example.test"), DNS_T_A, DNS_C_IN, 1,
                                 (const uint8_t *)"\1\1\1\1", 4),
                     0);
    assert_memory_equal(big + at, "\x02" "bb\x03zzz\xc0\x10", 9);
    at = m.len;
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, N("aa.zzz.example.test"), DNS_T_A, DNS_C_IN, 1,
                                 (const uint8_t *)"\1\1\1\1", 4),
                     0);
    assert_memory_equal(big + at, "\xff\xfd\x00\x01", 4);
    three = i;
    i += 3;
    for (; i < 70; i++)
        assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, q.lname, DNS_T_TXT, DNS_C_IN, 1, txt, 255),
                         0);
    at = m.len;
    assert_true(at > 0x4000);
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, N("a.new.example.test"), DNS_T_A, DNS_C_IN, 1,
                                 (const uint8_t *)"\1\1\1\1", 4),
                     0);
    assert_memory_equal(big + at, "\x01" "a\x03" "new\xc0\x10", 8);
    at2 = m.len;
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, N("b.new.example.test"), DNS_T_A, DNS_C_IN, 1,
                                 (const uint8_t *)"\1\1\1\2", 4),
                     0);
    assert_memory_equal(big + at2, "\x01" "b\x03" "new\xc0\x10", 8);
    n = dns_msg_finish(&m, NULL, 0, NULL);
    assert_int_equal(walk(big, n, 0x1234, q.lname, DNS_T_A, &r), 72);
    assert_int_equal(dns_response_parse(&r, big, n, 0x1234, q.lname, DNS_T_A), 0);
    for (i = 0; i < 71; i++) {
        assert_int_equal(dns_response_next(&r, &rr), 1);
        if (i >= three && i < three + 3)
            assert_memory_equal(rr.owner, i == three + 1 ? "\2bb\3zzz\7example\4test"
                                                         : "\2aa\3zzz\7example\4test",
                                21);
    }
    assert_memory_equal(rr.owner, "\1a\3new\7example\4test", 20);
}

/* With more names than the table remembers, later ones are written in full but stay right. */
static void test_compression_table_full(void **state)
{
    struct dns_query q;
    struct dns_msg m;
    struct dns_response r;
    struct dns_rr rr;
    uint8_t out[8192];
    char text[64];
    unsigned i;
    size_t n;

    assert_int_equal(dns_parse_query(q_py_ecs, sizeof(q_py_ecs), &q), DNS_RC_NOERROR);
    assert_int_equal(dns_msg_init(&m, out, sizeof(out), &q, 0, 1, 4096), 0);
    for (i = 0; i < 2 * DNS_COMP_MAX; i++) {
        snprintf(text, sizeof(text), "h%u.zone%u.example.org", i, i % 5);
        assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, N(text), DNS_T_A, DNS_C_IN, 1,
                                     (const uint8_t *)"\1\2\3\4", 4),
                         0);
    }
    assert_int_equal(m.ncomp, DNS_COMP_MAX);
    n = dns_msg_finish(&m, NULL, 0, NULL);
    assert_int_equal(dns_response_parse(&r, out, n, 0x1234, q.lname, DNS_T_A), 0);
    for (i = 0; i < 2 * DNS_COMP_MAX; i++) {
        assert_int_equal(dns_response_next(&r, &rr), 1);
        snprintf(text, sizeof(text), "h%u.zone%u.example.org", i, i % 5);
        assert_true(dns_name_equal(rr.owner, N(text)));
    }
    assert_int_equal(dns_response_next(&r, &rr), 0);
}

/* ---- truncation ---- */

static void fill_a(struct dns_msg *m, const uint8_t *owner, unsigned *added)
{
    uint8_t rd[4] = { 10, 0, 0, 0 };

    *added = 0;
    for (;;) {
        rd[3] = (uint8_t)*added;
        if (dns_msg_add(m, DNS_SEC_AN, owner, DNS_T_A, DNS_C_IN, 1, rd, 4) < 0)
            break;
        (*added)++;
    }
}

static void test_truncation_512_no_edns(void **state)
{
    struct dns_query q;
    struct dns_msg m;
    struct dns_response r;
    uint8_t out[512];
    unsigned added;
    size_t n;

    assert_int_equal(dns_parse_query(q_dig_noedns, sizeof(q_dig_noedns), &q), DNS_RC_NOERROR);
    /* Room for exactly what fits: (512 - 34) / 16 = 29 records. */
    assert_int_equal(dns_msg_init(&m, out, sizeof(out), &q, 0, 1, 1232), 0);
    fill_a(&m, q.lname, &added);
    assert_int_equal(added, 29);
    assert_int_equal(m.truncated, 1);
    assert_int_equal(m.len, 34 + 29 * 16);
    /* Once truncated, nothing more goes in. */
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AR, q.lname, DNS_T_A, DNS_C_IN, 1,
                                 (const uint8_t *)"\1\2\3\4", 4),
                     -1);
    n = dns_msg_finish(&m, NULL, 0, NULL);
    assert_int_equal(n, 34);
    assert_int_equal(out[2], 0x84 | 0x01 | 0x02); /* QR AA RD TC */
    assert_memory_equal(out + 4, "\0\1\0\0\0\0\0\0", 8);
    assert_int_equal(walk(out, n, 0xceb8, q.lname, DNS_T_A, &r), 0);
    assert_true(r.flags & DNS_F_TC);

    /* 29 records exactly fill 498 bytes: no TC. */
    assert_int_equal(dns_msg_init(&m, out, sizeof(out), &q, 0, 1, 1232), 0);
    for (added = 0; added < 29; added++)
        assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, q.lname, DNS_T_A, DNS_C_IN, 1,
                                     (const uint8_t *)"\1\2\3\4", 4),
                         0);
    /* An additional record that does not fit is left out without TC (RFC 2181 section 9). */
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AR, q.lname, DNS_T_A, DNS_C_IN, 1,
                                 (const uint8_t *)"\1\2\3\4", 4),
                     -1);
    assert_int_equal(m.truncated, 0);
    n = dns_msg_finish(&m, NULL, 0, NULL);
    assert_int_equal(n, 498);
    assert_int_equal(out[2] & 0x02, 0);
    assert_int_equal(walk(out, n, 0xceb8, q.lname, DNS_T_A, &r), 29);

    /* An authority record that does not fit truncates. */
    assert_int_equal(dns_msg_init(&m, out, sizeof(out), &q, 0, 1, 1232), 0);
    assert_int_equal(dns_msg_add(&m, DNS_SEC_NS, q.lname, DNS_T_TXT, DNS_C_IN, 1, big, 480), -1);
    assert_int_equal(m.truncated, 1);
}

static void test_truncation_512_edns(void **state)
{
    struct dns_query q;
    struct dns_msg m;
    struct dns_response r;
    uint8_t out[512];
    unsigned added;
    size_t n;

    /* EDNS without options: the OPT's 11 bytes are kept: (512 - 34 - 11) / 16 = 29. */
    assert_int_equal(dns_parse_query(q_kdig, sizeof(q_kdig), &q), DNS_RC_NOERROR);
    assert_int_equal(dns_msg_init(&m, out, sizeof(out), &q, 0, 1, 1232), 0);
    assert_int_equal(m.opt_reserve, 11);
    fill_a(&m, q.lname, &added);
    assert_int_equal(added, 29);
    n = dns_msg_finish(&m, NULL, 0, NULL);
    assert_int_equal(n, 34 + 11);
    assert_true(out[2] & 0x02);
    assert_memory_equal(out + 4, "\0\1\0\0\0\0\0\1", 8);
    assert_int_equal(walk(out, n, 0x36c8, q.lname, DNS_T_A, &r), 0);

    /* With ECS the echo is kept free too: (512 - 34 - 35) / 16 = 27. */
    assert_int_equal(dns_parse_query(q_py_ecs, sizeof(q_py_ecs), &q), DNS_RC_NOERROR);
    assert_int_equal(dns_msg_init(&m, out, sizeof(out), &q, 0, 1, 1232), 0);
    assert_int_equal(m.opt_reserve, 35);
    fill_a(&m, q.lname, &added);
    assert_int_equal(added, 27);
    n = dns_msg_finish(&m, &q.ecs, 0, NULL);
    assert_int_equal(n, 34 + 11 + 11);
    assert_true(out[2] & 0x02);
    assert_int_equal(walk(out, n, 0x1234, q.lname, DNS_T_A, &r), 0);
    assert_int_equal(r.has_ecs, 1);
    assert_int_equal(r.ecs.scope, 0);

    /* Not truncated: 27 records and the OPT with ECS in 34 + 432 + 22 = 488 bytes. */
    assert_int_equal(dns_msg_init(&m, out, sizeof(out), &q, 0, 1, 1232), 0);
    for (added = 0; added < 27; added++)
        assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, q.lname, DNS_T_A, DNS_C_IN, 1,
                                     (const uint8_t *)"\1\2\3\4", 4),
                         0);
    n = dns_msg_finish(&m, &q.ecs, 24, NULL);
    assert_int_equal(n, 488);
    assert_int_equal(out[2] & 0x02, 0);
    assert_int_equal(walk(out, n, 0x1234, q.lname, DNS_T_A, &r), 27);
    assert_int_equal(r.ecs.scope, 24);
}

/* ---- EDNS in responses ---- */

static void test_badvers(void **state)
{
    static const uint8_t want_opt[] = { 0, 0, 0x29, 0x04, 0xd0, 0x01, 0x00, 0x00, 0x00, 0, 0 };
    struct dns_query q;
    struct dns_msg m;
    struct dns_response r;
    uint8_t out[512];
    size_t n;
    int rc;

    rc = dns_parse_query(q_py_v1, sizeof(q_py_v1), &q);
    assert_int_equal(rc, DNS_RC_BADVERS);
    assert_int_equal(q.edns, 1);
    assert_int_equal(q.edns_version, 1);
    assert_int_equal(dns_msg_init(&m, out, sizeof(out), &q, rc, 0, 1232), 0);
    n = dns_msg_finish(&m, NULL, 0, NULL);
    assert_int_equal(n, 12 + 14 + 4 + 11);
    /* Header rcode 0, extended rcode 1 (16 >> 4) and version 0 in the OPT. */
    assert_int_equal(out[3] & 0xf, 0);
    assert_memory_equal(out + 30, want_opt, sizeof(want_opt));
    assert_int_equal(walk(out, n, 7, N("example.test"), DNS_T_TXT, &r), 0);
    assert_int_equal(r.rcode, DNS_RC_BADVERS);

    /* The options of a later version are not read: a bad ECS does not turn it into FORMERR. */
    {
        struct pk p;

        pk_hdr(&p, 1, 0, 1, 0, 0, 1);
        pk_name(&p, "a.test");
        pk_u32(&p, 0x00010001);
        pk_opt(&p, 1232, 0x00010000, (const uint8_t *)"\0\x08\0\x01\x07", 5);
        assert_int_equal(dns_parse_query(p.b, p.n, &q), DNS_RC_BADVERS);
    }

    /* Without EDNS an extended rcode cannot be said: SERVFAIL. */
    assert_int_equal(dns_parse_query(q_dig_noedns, sizeof(q_dig_noedns), &q), DNS_RC_NOERROR);
    assert_int_equal(dns_msg_init(&m, out, sizeof(out), &q, DNS_RC_BADVERS, 0, 1232), 0);
    n = dns_msg_finish(&m, NULL, 0, NULL);
    assert_int_equal(n, 34);
    assert_int_equal(out[3] & 0xf, DNS_RC_SERVFAIL);
}

/* A FORMERR for a bad option still carries an OPT (RFC 6891 section 7). */
static void test_formerr_response_has_opt(void **state)
{
    struct pk p;
    struct dns_query q;
    struct dns_msg m;
    struct dns_response r;
    uint8_t out[512];
    size_t n;
    int rc;

    pk_query_opts(&p, (const uint8_t *)"\0\x08\0\x07\0\x01\x18\x18\x0a\x01\x02", 11);
    rc = dns_parse_query(p.b, p.n, &q);
    assert_int_equal(rc, DNS_RC_FORMERR);
    assert_int_equal(q.edns, 1);
    assert_int_equal(dns_msg_init(&m, out, sizeof(out), &q, rc, 0, 1232), 0);
    n = dns_msg_finish(&m, NULL, 0, NULL);
    assert_int_equal(n, 34 + 11);
    assert_int_equal(out[3], 0x01 | 0x00);
    assert_int_equal(out[2], 0x81); /* QR RD */
    assert_int_equal(walk(out, n, 0x4242, N("www.example.test"), DNS_T_A, &r), 0);
    assert_int_equal(r.rcode, DNS_RC_FORMERR);

    /* A FORMERR without a whole question is header + OPT only. */
    pk_hdr(&p, 77, 0, 2, 0, 0, 0);
    assert_int_equal(dns_parse_query(p.b, p.n, &q), DNS_RC_FORMERR);
    assert_int_equal(dns_msg_init(&m, out, sizeof(out), &q, DNS_RC_FORMERR, 0, 1232), 0);
    assert_int_equal(dns_msg_finish(&m, NULL, 0, NULL), 12);
    assert_memory_equal(out, "\0\x4d\x80\x01\0\0\0\0\0\0\0\0", 12);
}

static void test_do_bit_and_flags(void **state)
{
    struct dns_query q;
    struct dns_msg m;
    uint8_t out[512];
    size_t n;

    assert_int_equal(dns_parse_query(q_py_path, sizeof(q_py_path), &q), DNS_RC_NOERROR);
    q.flags |= DNS_F_CD | DNS_F_AD | DNS_F_TC;
    assert_int_equal(dns_msg_init(&m, out, sizeof(out), &q, 0, 0, 100), 0);
    n = dns_msg_finish(&m, NULL, 0, NULL);
    assert_int_equal(n, 12 + 17 + 4 + 11);
    /* QR and RD; CD copied; AD, TC and AA not. */
    assert_int_equal(out[2], 0x81);
    assert_int_equal(out[3], 0x10);
    /* Payload at least 512, DO copied (RFC 3225). */
    assert_memory_equal(out + 33, "\0\0\x29\x02\0\0\0\x80\0\0\0", 11);
}

static void test_path_in_response(void **state)
{
    struct dns_query q;
    struct dns_msg m;
    struct dns_path path;
    uint8_t out[512];
    size_t n;

    assert_int_equal(dns_parse_query(q_py_path, sizeof(q_py_path), &q), DNS_RC_NOERROR);
    assert_int_equal(dns_msg_init(&m, out, sizeof(out), &q, 0, 1, 1232), 0);
    /* Fixed part, the ECS echo, the path's 14 bytes and room for one more id. */
    assert_int_equal(m.opt_reserve, 11 + 24 + 14 + 33);
    path = q.path;
    memcpy(path.id[2], "ferry", 6);
    path.len[2] = 5;
    path.n = 3;
    n = dns_msg_finish(&m, &q.ecs, 48, &path);
    /* OPT at 33: ECS 2/56/48 with 7 bytes, then the path. */
    assert_int_equal(n, 33 + 11 + 15 + 20);
    assert_memory_equal(out + 33 + 9, "\0\x23", 2);
    assert_memory_equal(out + 44, "\0\x08\0\x0b\0\x02\x38\x30\x20\x01\x0d\xb8\xab\xcd\x00", 15);
    assert_memory_equal(out + 59, "\xff\x46\0\x10\x05" "akam1\x03" "fas\x05" "ferry", 20);
    /* Our own query parser reads it back. */
    out[2] &= 0x7f;
    {
        struct dns_query back;

        out[3] &= 0xf0;
        out[33 + 11 + 7] = 0; /* a query's scope must be 0 */
        assert_int_equal(dns_parse_query(out, n, &back), DNS_RC_NOERROR);
        assert_int_equal(back.path.n, 3);
        assert_string_equal(back.path.id[2], "ferry");
    }

    /* An invalid path or ECS is left out, not written. */
    assert_int_equal(dns_msg_init(&m, out, sizeof(out), &q, 0, 1, 1232), 0);
    path.id[1][0] = 'F';
    q.ecs.source = 200;
    assert_int_equal(dns_msg_finish(&m, &q.ecs, 0, &path), 33 + 11);
    /* An empty path is no option at all. */
    assert_int_equal(dns_msg_init(&m, out, sizeof(out), &q, 0, 1, 1232), 0);
    path.n = 0;
    assert_int_equal(dns_msg_finish(&m, NULL, 0, &path), 33 + 11);
}

/* A response written over the query in its own buffer. */
static void test_in_place(void **state)
{
    uint8_t buf[512];
    struct dns_query q;
    struct dns_msg m;
    struct dns_response r;
    size_t n;

    memcpy(buf, q_dig, sizeof(q_dig));
    assert_int_equal(dns_parse_query(buf, sizeof(q_dig), &q), DNS_RC_NOERROR);
    assert_int_equal(dns_msg_init(&m, buf, sizeof(buf), &q, 0, 1, 1232), 0);
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, q.lname, DNS_T_AAAA, DNS_C_IN, 5,
                                 (const uint8_t *)"\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\1", 16),
                     0);
    n = dns_msg_finish(&m, &q.ecs, 24, NULL);
    assert_memory_equal(buf + 12, q_dig + 12, 22);
    assert_int_equal(walk(buf, n, 0x5951, N("www.example.test"), DNS_T_AAAA, &r), 1);
    assert_int_equal(r.ecs.scope, 24);
}

static void test_msg_add_refusals(void **state)
{
    struct dns_query q;
    struct dns_msg m;
    uint8_t out[512];

    assert_int_equal(dns_parse_query(q_kdig, sizeof(q_kdig), &q), DNS_RC_NOERROR);
    assert_int_equal(dns_msg_init(&m, out, sizeof(out), &q, 0, 1, 1232), 0);
    /* A compressed or malformed owner. */
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, (const uint8_t *)"\xc0\x0c", DNS_T_A, DNS_C_IN,
                                 1, (const uint8_t *)"\1\2\3\4", 4),
                     -1);
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, (const uint8_t *)"\x41", DNS_T_A, DNS_C_IN, 1,
                                 (const uint8_t *)"\1\2\3\4", 4),
                     -1);
    /* CNAME rdata that is not exactly one name. */
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, q.lname, DNS_T_CNAME, DNS_C_IN, 1,
                                 N("a.test"), 9),
                     -1);
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, q.lname, DNS_T_CNAME, DNS_C_IN, 1,
                                 N("a.test"), 7),
                     -1);
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, q.lname, DNS_T_PTR, DNS_C_IN, 1,
                                 (const uint8_t *)"\xc0\x0c", 2),
                     -1);
    /* OPT is dns_msg_finish's job; sections out of range. */
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AR, (const uint8_t *)"", DNS_T_OPT, 512, 0, NULL, 0),
                     -1);
    assert_int_equal(dns_msg_add(&m, (enum dns_section)3, q.lname, DNS_T_A, DNS_C_IN, 1,
                                 (const uint8_t *)"\1\2\3\4", 4),
                     -1);
    assert_int_equal(m.truncated, 0);
    assert_int_equal(m.len, 34);
    assert_int_equal(m.ncomp, 1);

    /* Section order: after an authority record, no answer. */
    assert_int_equal(dns_msg_add(&m, DNS_SEC_NS, q.lname, DNS_T_NS, DNS_C_IN, 1, N("ns.test"), 9),
                     0);
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, q.lname, DNS_T_A, DNS_C_IN, 1,
                                 (const uint8_t *)"\1\2\3\4", 4),
                     -1);
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AR, q.lname, DNS_T_A, DNS_C_IN, 1,
                                 (const uint8_t *)"\1\2\3\4", 4),
                     0);
    assert_int_equal(dns_msg_add(&m, DNS_SEC_NS, q.lname, DNS_T_NS, DNS_C_IN, 1, N("ns.test"), 9),
                     -1);
    assert_int_equal(m.truncated, 0);
    /* Empty rdata is fine. */
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AR, q.lname, 65280, DNS_C_IN, 1, NULL, 0), 0);
}

/* A record that does not fit leaves the message exactly as it was. */
static void test_msg_add_rollback(void **state)
{
    struct dns_query q;
    struct dns_msg m;
    uint8_t out[600], copy[600];
    size_t len;

    assert_int_equal(dns_parse_query(q_py_ecs, sizeof(q_py_ecs), &q), DNS_RC_NOERROR);
    q.edns = 0;
    assert_int_equal(dns_msg_init(&m, out, 100, &q, 0, 1, 0), 0);
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, q.lname, DNS_T_CNAME, DNS_C_IN, 1,
                                 N("cdn.example.test"), 18),
                     0);
    len = m.len;
    memcpy(copy, out, sizeof(copy));
    /* The owner fits, the CNAME target's new labels do not. */
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AR, N("x.cdn.example.test"), DNS_T_CNAME, DNS_C_IN,
                                 1, N("long-long-long-label.other.example.net"), 40),
                     -1);
    assert_int_equal(m.len, len);
    assert_int_equal(m.ncomp, 2);
    assert_int_equal(m.count[DNS_SEC_AR], 0);
    assert_int_equal(m.truncated, 0);
    assert_memory_equal(out, copy, len);
}

/* ---- the client side ---- */

static void test_write_query(void **state)
{
    static const uint8_t want[] = {
        0xab, 0xcd, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        0x03, 'w', 'w', 'w', 0x07, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0x04, 't', 'e', 's', 't',
        0x00, 0x00, 0x1c, 0x00, 0x01,
        0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x17,
        0x00, 0x08, 0x00, 0x07, 0x00, 0x01, 0x14, 0x00, 0xc6, 0x33, 0x60,
        0xff, 0x46, 0x00, 0x08, 0x03, 'c', 'd', 'n', 0x03, 'f', 'o', 'o',
    };
    struct dns_ecs ecs = { 1, 20, 7, { 198, 51, 100, 77 } };
    struct dns_path path = { 2, { 3, 3 }, { "cdn", "foo" } };
    struct dns_query q;
    uint8_t out[512];
    int n;
    size_t cap;

    n = dns_write_query(out, sizeof(out), 0xabcd, N("www.example.test"), DNS_T_AAAA, 1232, &ecs,
                        &path);
    /* The address is cut to /20 and the scope written as 0. */
    assert_int_equal(n, sizeof(want));
    assert_memory_equal(out, want, sizeof(want));
    assert_int_equal(dns_parse_query(out, (size_t)n, &q), DNS_RC_NOERROR);
    assert_int_equal(q.id, 0xabcd);
    assert_int_equal(q.flags, 0);
    assert_int_equal(q.qtype, DNS_T_AAAA);
    assert_int_equal(q.qclass, DNS_C_IN);
    assert_int_equal(q.udp_size, 1232);
    assert_int_equal(q.has_ecs, 1);
    assert_int_equal(q.ecs.source, 20);
    assert_memory_equal(q.ecs.addr, "\xc6\x33\x60\x00", 4);
    assert_int_equal(q.has_path, 1);
    assert_int_equal(q.path.n, 2);
    assert_string_equal(q.path.id[1], "foo");

    /* Every cap below the length fails; the length itself works. */
    for (cap = 0; cap < sizeof(want); cap++)
        assert_int_equal(dns_write_query(out, cap, 1, N("www.example.test"), 1, 1232, &ecs,
                                         &path),
                         -1);
    assert_int_equal(dns_write_query(out, sizeof(want), 1, N("www.example.test"), 1, 1232, &ecs,
                                     &path),
                     sizeof(want));

    /* No options: 12 + 18 + 4 + 11. */
    n = dns_write_query(out, sizeof(out), 1, N("."), DNS_T_NS, 512, NULL, NULL);
    assert_int_equal(n, 12 + 1 + 4 + 11);
    assert_int_equal(dns_parse_query(out, (size_t)n, &q), DNS_RC_NOERROR);
    assert_int_equal(q.nlabels, 0);
    assert_int_equal(q.has_ecs + q.has_path + q.has_cookie, 0);

    /* Invalid ECS, invalid path, invalid name. */
    ecs.family = 3;
    assert_int_equal(dns_write_query(out, sizeof(out), 1, N("a.test"), 1, 1232, &ecs, NULL), -1);
    ecs.family = 1;
    ecs.source = 33;
    assert_int_equal(dns_write_query(out, sizeof(out), 1, N("a.test"), 1, 1232, &ecs, NULL), -1);
    path.n = 9;
    assert_int_equal(dns_write_query(out, sizeof(out), 1, N("a.test"), 1, 1232, NULL, &path), -1);
    path.n = 2;
    path.id[0][1] = 'D';
    assert_int_equal(dns_write_query(out, sizeof(out), 1, N("a.test"), 1, 1232, NULL, &path), -1);
    path.id[0][1] = 'd';
    path.len[0] = 0;
    assert_int_equal(dns_write_query(out, sizeof(out), 1, N("a.test"), 1, 1232, NULL, &path), -1);
    path.n = 0;
    assert_int_equal(dns_write_query(out, sizeof(out), 1, N("a.test"), 1, 1232, NULL, &path), -1);
    assert_int_equal(dns_write_query(out, sizeof(out), 1, (const uint8_t *)"\xc0\x0c", 1, 1232,
                                     NULL, NULL),
                     -1);
}

/* A query written by the client, answered by the server side, read by the client. */
static void test_full_round_trip(void **state)
{
    struct dns_ecs ecs = { 2, 48, 0, { 0x20, 0x01, 0x0d, 0xb8, 0x12, 0x34 } };
    struct dns_path path = { 1, { 4 }, { "edge" } };
    const uint8_t *name = N("video.cdn.example.test");
    struct dns_query q;
    struct dns_msg m;
    struct dns_response r;
    struct dns_rr rr;
    uint8_t qbuf[512], out[1232];
    size_t n;
    int qn;

    qn = dns_write_query(qbuf, sizeof(qbuf), 0x7777, name, DNS_T_AAAA, 1232, &ecs, &path);
    assert_true(qn > 0);
    assert_int_equal(dns_parse_query(qbuf, (size_t)qn, &q), DNS_RC_NOERROR);
    assert_int_equal(dns_msg_init(&m, out, q.udp_size, &q, 0, 1, 1232), 0);
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, q.lname, DNS_T_CNAME, DNS_C_IN, 30,
                                 N("edge7.pop.cdn.example.test"), 28),
                     0);
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, N("edge7.pop.cdn.example.test"), DNS_T_AAAA,
                                 DNS_C_IN, 30,
                                 (const uint8_t *)"\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\7", 16),
                     0);
    assert_int_equal(dns_msg_add(&m, DNS_SEC_NS, N("cdn.example.test"), DNS_T_NS, DNS_C_IN, 30,
                                 N("ns.cdn.example.test"), 21),
                     0);
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AR, N("ns.cdn.example.test"), DNS_T_A, DNS_C_IN, 30,
                                 (const uint8_t *)"\xc0\0\2\x35", 4),
                     0);
    n = dns_msg_finish(&m, &q.ecs, 40, &q.path);

    /* Wrong id, name, type, or not a response: not an answer to this question. */
    assert_int_equal(dns_response_parse(&r, out, n, 0x7778, name, DNS_T_AAAA), -1);
    assert_int_equal(dns_response_parse(&r, out, n, 0x7777, N("video.cdn.example.tes"),
                                        DNS_T_AAAA),
                     -1);
    assert_int_equal(dns_response_parse(&r, out, n, 0x7777, name, DNS_T_A), -1);
    assert_int_equal(dns_response_parse(&r, qbuf, (size_t)qn, 0x7777, name, DNS_T_AAAA), -1);

    assert_int_equal(dns_response_parse(&r, out, n, 0x7777, N("VIDEO.cdn.Example.test"),
                                        DNS_T_AAAA),
                     0);
    assert_true(r.flags & DNS_F_AA);
    assert_int_equal(r.count[0], 2);
    assert_int_equal(r.count[1], 1);
    assert_int_equal(r.count[2], 2);
    assert_int_equal(r.has_ecs, 1);
    assert_int_equal(r.ecs.family, 2);
    assert_int_equal(r.ecs.source, 48);
    assert_int_equal(r.ecs.scope, 40);
    assert_memory_equal(r.ecs.addr, ecs.addr, 16);
    assert_int_equal(dns_response_next(&r, &rr), 1);
    assert_int_equal(rr.type, DNS_T_CNAME);
    assert_int_equal(rr.ttl, 30);
    assert_memory_equal(rr.target, N("edge7.pop.cdn.example.test"), 28);
    assert_int_equal(dns_response_next(&r, &rr), 1);
    assert_int_equal(rr.type, DNS_T_AAAA);
    assert_memory_equal(rr.owner, N("edge7.pop.cdn.example.test"), 28);
    assert_int_equal(rr.rdlen, 16);
    assert_int_equal(rr.rdata[15], 7);
    assert_int_equal(dns_response_next(&r, &rr), 1);
    assert_int_equal(rr.sec, DNS_SEC_NS);
    assert_memory_equal(rr.target, N("ns.cdn.example.test"), 21);
    assert_int_equal(dns_response_next(&r, &rr), 1);
    assert_int_equal(rr.sec, DNS_SEC_AR);
    assert_int_equal(rr.type, DNS_T_A);
    /* The OPT is consumed, not returned. */
    assert_int_equal(dns_response_next(&r, &rr), 0);
}

/* Every cut of a valid response is refused, and nothing is read past the cut. */
static void test_response_every_cut(void **state)
{
    struct dns_query q;
    struct dns_msg m;
    struct dns_response r;
    uint8_t out[512], *copy;
    size_t n, cut;

    assert_int_equal(dns_parse_query(q_py_ecs, sizeof(q_py_ecs), &q), DNS_RC_NOERROR);
    assert_int_equal(dns_msg_init(&m, out, sizeof(out), &q, 0, 1, 1232), 0);
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, q.lname, DNS_T_CNAME, DNS_C_IN, 1,
                                 N("x.example.test"), 16),
                     0);
    assert_int_equal(dns_msg_add(&m, DNS_SEC_AN, N("x.example.test"), DNS_T_A, DNS_C_IN, 1,
                                 (const uint8_t *)"\1\2\3\4", 4),
                     0);
    n = dns_msg_finish(&m, &q.ecs, 24, NULL);
    for (cut = 0; cut < n; cut++) {
        /* A heap copy of exactly cut bytes, so a sanitizer sees any overread. */
        copy = malloc(cut + 1);
        assert_non_null(copy);
        memcpy(copy, out, cut);
        assert_int_equal(dns_response_parse(&r, copy, cut, 0x1234, q.lname, DNS_T_A), -1);
        free(copy);
    }
}

static void test_response_malformed(void **state)
{
    struct pk p;
    struct dns_response r;
    struct dns_rr rr;
    const uint8_t *qn = N("a.test");

    /* A good base: a.test A, one answer. */
    pk_hdr(&p, 3, 0x8180, 1, 1, 0, 0);
    pk_name(&p, "a.test");
    pk_u32(&p, 0x00010001);
    pk_u16(&p, 0xc00c);
    pk_u32(&p, 0x00010001);
    pk_u32(&p, 9);
    pk_u16(&p, 4);
    pk_u32(&p, 0x01020304);
    assert_int_equal(dns_response_parse(&r, p.b, p.n, 3, qn, DNS_T_A), 0);
    assert_int_equal(dns_response_next(&r, &rr), 1);

    /* Owner pointer to itself, forward, into the header */
    p.b[24] = 0xc0;
    p.b[25] = 24;
    assert_int_equal(dns_response_parse(&r, p.b, p.n, 3, qn, DNS_T_A), -1);
    p.b[25] = 30;
    assert_int_equal(dns_response_parse(&r, p.b, p.n, 3, qn, DNS_T_A), -1);
    p.b[25] = 4; /* header bytes 00 01 00 01 ... read as labels: "\0" is the root */
    assert_int_equal(dns_response_parse(&r, p.b, p.n, 3, qn, DNS_T_A), 0);
    /* A reserved label type */
    p.b[24] = 0x80;
    assert_int_equal(dns_response_parse(&r, p.b, p.n, 3, qn, DNS_T_A), -1);
    p.b[24] = 0xc0;
    p.b[25] = 12;
    /* A with 5 bytes of rdata (and the packet grown to match). */
    p.b[35] = 5;
    pk_u8(&p, 0);
    assert_int_equal(dns_response_parse(&r, p.b, p.n, 3, qn, DNS_T_A), -1);
    /* ...which is fine for class CH. */
    p.b[29] = DNS_C_CH;
    assert_int_equal(dns_response_parse(&r, p.b, p.n, 3, qn, DNS_T_A), 0);
    p.b[29] = DNS_C_IN;
    p.b[35] = 4;
    p.n--;
    /* Counts saying more records than there are. */
    p.b[7] = 2;
    assert_int_equal(dns_response_parse(&r, p.b, p.n, 3, qn, DNS_T_A), -1);
    p.b[7] = 1;
    /* Not a standard query response; no question; class not IN. */
    p.b[2] |= 0x08;
    assert_int_equal(dns_response_parse(&r, p.b, p.n, 3, qn, DNS_T_A), -1);
    p.b[2] &= (uint8_t)~0x08;
    p.b[5] = 0;
    assert_int_equal(dns_response_parse(&r, p.b, p.n, 3, qn, DNS_T_A), -1);
    p.b[5] = 1;
    p.b[23] = DNS_C_CH;
    assert_int_equal(dns_response_parse(&r, p.b, p.n, 3, qn, DNS_T_A), -1);
    p.b[23] = DNS_C_IN;
    /* Trailing bytes are ignored. */
    pk_u16(&p, 0xdead);
    assert_int_equal(dns_response_parse(&r, p.b, p.n, 3, qn, DNS_T_A), 0);
    p.n -= 2;

    /* A CNAME whose rdata holds more than the name. */
    pk_hdr(&p, 3, 0x8180, 1, 1, 0, 0);
    pk_name(&p, "a.test");
    pk_u32(&p, 0x00010001);
    pk_u16(&p, 0xc00c);
    pk_u16(&p, DNS_T_CNAME);
    pk_u16(&p, DNS_C_IN);
    pk_u32(&p, 9);
    pk_u16(&p, 4);
    pk_u16(&p, 0xc00c);
    pk_u16(&p, 0);
    assert_int_equal(dns_response_parse(&r, p.b, p.n, 3, qn, DNS_T_A), -1);
    p.b[35] = 2;
    p.n -= 2;
    assert_int_equal(dns_response_parse(&r, p.b, p.n, 3, qn, DNS_T_A), 0);
    assert_int_equal(dns_response_next(&r, &rr), 1);
    assert_memory_equal(rr.target, qn, 8);

    /* Two OPTs; an OPT in the answer section; an OPT with a bad ECS. */
    pk_hdr(&p, 3, 0x8180, 1, 0, 0, 2);
    pk_name(&p, "a.test");
    pk_u32(&p, 0x00010001);
    pk_opt(&p, 512, 0, NULL, 0);
    pk_opt(&p, 512, 0, NULL, 0);
    assert_int_equal(dns_response_parse(&r, p.b, p.n, 3, qn, DNS_T_A), -1);
    p.b[11] = 1;
    p.n -= 11;
    assert_int_equal(dns_response_parse(&r, p.b, p.n, 3, qn, DNS_T_A), 0);
    p.b[7] = 1;
    p.b[11] = 0;
    assert_int_equal(dns_response_parse(&r, p.b, p.n, 3, qn, DNS_T_A), -1);
    pk_hdr(&p, 3, 0x8180, 1, 0, 0, 1);
    pk_name(&p, "a.test");
    pk_u32(&p, 0x00010001);
    pk_opt(&p, 512, 0, (const uint8_t *)"\0\x08\0\x07\0\x01\x18\x21\1\2\3", 11);
    assert_int_equal(dns_response_parse(&r, p.b, p.n, 3, qn, DNS_T_A), -1);
    /* A scope wider than the source is fine in a response; bits past source are cleared. */
    pk_hdr(&p, 3, 0x8183, 1, 0, 0, 1);
    pk_name(&p, "a.test");
    pk_u32(&p, 0x00010001);
    pk_opt(&p, 512, 0x02000000, (const uint8_t *)"\0\x08\0\x06\0\x01\x0f\x20\1\3", 10);
    assert_int_equal(dns_response_parse(&r, p.b, p.n, 3, qn, DNS_T_A), 0);
    assert_int_equal(r.rcode, (2 << 4) | 3);
    assert_int_equal(r.ecs.scope, 32);
    assert_memory_equal(r.ecs.addr, "\1\2\0", 3);
    assert_int_equal(dns_response_next(&r, &rr), 0);
}

/* ---- names ---- */

static void test_name_from_text(void **state)
{
    uint8_t w[DNS_MAX_NAME];
    char text[400];
    size_t i;

    assert_int_equal(dns_name_from_text(w, "www.Example.test"), 18);
    assert_memory_equal(w, "\3www\7example\4test", 18);
    assert_int_equal(dns_name_from_text(w, "www.example.test."), 18);
    assert_int_equal(dns_name_from_text(w, "."), 1);
    assert_int_equal(w[0], 0);
    assert_int_equal(dns_name_from_text(w, "*._Tcp.a-1"), 12);
    assert_memory_equal(w, "\1*\4_tcp\3a-1", 12);

    assert_int_equal(dns_name_from_text(w, ""), -1);
    assert_int_equal(dns_name_from_text(w, ".."), -1);
    assert_int_equal(dns_name_from_text(w, ".a"), -1);
    assert_int_equal(dns_name_from_text(w, "a..b"), -1);
    assert_int_equal(dns_name_from_text(w, "a.b.."), -1);
    assert_int_equal(dns_name_from_text(w, "a b"), -1);
    assert_int_equal(dns_name_from_text(w, "a\\.b"), -1);
    assert_int_equal(dns_name_from_text(w, "caf\xc3\xa9"), -1);
    assert_int_equal(dns_name_from_text(w, NULL), -1);

    /* 63-byte labels are fine, 64 are not. */
    memset(text, 'a', 63);
    text[63] = '\0';
    assert_int_equal(dns_name_from_text(w, text), 65);
    text[63] = 'a';
    text[64] = '\0';
    assert_int_equal(dns_name_from_text(w, text), -1);

    /* 255 bytes of wire name exactly (63, 63, 63, 61), then one more. */
    for (i = 0; i < 3; i++) {
        memset(text + i * 64, 'b', 63);
        text[i * 64 + 63] = '.';
    }
    memset(text + 192, 'c', 61);
    text[253] = '\0';
    assert_int_equal(dns_name_from_text(w, text), 255);
    text[253] = '.';
    text[254] = '\0';
    assert_int_equal(dns_name_from_text(w, text), 255);
    text[253] = 'c';
    assert_int_equal(dns_name_from_text(w, text), -1);
}

static void test_name_to_text(void **state)
{
    char out[64];
    size_t cap;

    assert_int_equal(dns_name_to_text(out, sizeof(out), (const uint8_t *)"\3www\7Example\4test"),
                     16);
    assert_string_equal(out, "www.Example.test");
    assert_int_equal(dns_name_to_text(out, sizeof(out), (const uint8_t *)""), 1);
    assert_string_equal(out, ".");
    assert_int_equal(dns_name_to_text(out, sizeof(out), (const uint8_t *)"\4a.b\\\2\x20\xff"), 19);
    assert_string_equal(out, "a\\046b\\092.\\032\\255");
    /* Exactly enough room is text plus the NUL. */
    for (cap = 0; cap <= 16; cap++)
        assert_int_equal(dns_name_to_text(out, cap, (const uint8_t *)"\3www\7Example\4test"),
                         -1);
    assert_int_equal(dns_name_to_text(out, 17, (const uint8_t *)"\3www\7Example\4test"), 16);
    assert_int_equal(dns_name_to_text(out, 1, (const uint8_t *)""), -1);
    assert_int_equal(dns_name_to_text(out, sizeof(out), (const uint8_t *)"\1a\xc0\x0c"), -1);
}

static void test_name_compare(void **state)
{
    assert_int_equal(dns_name_len(N("www.example.test")), 18);
    assert_int_equal(dns_name_len((const uint8_t *)""), 1);
    assert_int_equal(dns_name_len((const uint8_t *)"\1a\xc0\x0c"), 0);
    assert_int_equal(dns_name_len((const uint8_t *)"\1a\x40"), 0);

    assert_true(dns_name_equal(N("www.example.test"), (const uint8_t *)"\3WwW\7EXAMPLE\4tEsT"));
    assert_true(dns_name_equal((const uint8_t *)"", (const uint8_t *)""));
    assert_false(dns_name_equal(N("www.example.test"), N("www.example.tes")));
    assert_false(dns_name_equal(N("a.b"), N("ab")));
    assert_false(dns_name_equal(N("a"), (const uint8_t *)""));
    /* Only ASCII letters fold (RFC 4343). */
    assert_false(dns_name_equal((const uint8_t *)"\1\xc9", (const uint8_t *)"\1\xe9"));
    assert_false(dns_name_equal((const uint8_t *)"\1@", (const uint8_t *)"\1`"));
    assert_false(dns_name_equal((const uint8_t *)"\1[", (const uint8_t *)"\1{"));

    assert_int_equal(dns_name_under(N("example.test"), N("Example.TEST")), 0);
    assert_int_equal(dns_name_under(N("a.b.example.test"), N("example.test")), 2);
    assert_int_equal(dns_name_under(N("a.bexample.test"), N("example.test")), -1);
    assert_int_equal(dns_name_under(N("test"), N("example.test")), -1);
    assert_int_equal(dns_name_under(N("a.other.test"), N("example.test")), -1);
    assert_int_equal(dns_name_under(N("a.b.c"), N(".")), 3);
    assert_int_equal(dns_name_under(N("."), N(".")), 0);
}

static void test_type_name(void **state)
{
    char buf[12];

    assert_string_equal(dns_type_name(DNS_T_A, buf), "A");
    assert_string_equal(dns_type_name(DNS_T_AAAA, buf), "AAAA");
    assert_string_equal(dns_type_name(DNS_T_CNAME, buf), "CNAME");
    assert_string_equal(dns_type_name(DNS_T_SOA, buf), "SOA");
    assert_string_equal(dns_type_name(DNS_T_ANY, buf), "ANY");
    assert_string_equal(dns_type_name(65, buf), "TYPE65");
    assert_string_equal(dns_type_name(0, buf), "TYPE0");
    assert_string_equal(dns_type_name(65535, buf), "TYPE65535");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_dnspython_ecs),
        cmocka_unit_test(test_fixture_dnspython_path),
        cmocka_unit_test(test_fixture_dig),
        cmocka_unit_test(test_fixture_kdig),
        cmocka_unit_test(test_parse_drop),
        cmocka_unit_test(test_parse_every_cut),
        cmocka_unit_test(test_formerr_header_and_question),
        cmocka_unit_test(test_formerr_opt_record),
        cmocka_unit_test(test_formerr_ecs),
        cmocka_unit_test(test_formerr_cookie),
        cmocka_unit_test(test_formerr_path),
        cmocka_unit_test(test_notimp),
        cmocka_unit_test(test_response_bytes),
        cmocka_unit_test(test_compression_bytes),
        cmocka_unit_test(test_compression_label_boundary),
        cmocka_unit_test(test_compression_soa),
        cmocka_unit_test(test_compression_many_records),
        cmocka_unit_test(test_compression_past_0x4000),
        cmocka_unit_test(test_compression_table_full),
        cmocka_unit_test(test_truncation_512_no_edns),
        cmocka_unit_test(test_truncation_512_edns),
        cmocka_unit_test(test_badvers),
        cmocka_unit_test(test_formerr_response_has_opt),
        cmocka_unit_test(test_do_bit_and_flags),
        cmocka_unit_test(test_path_in_response),
        cmocka_unit_test(test_in_place),
        cmocka_unit_test(test_msg_add_refusals),
        cmocka_unit_test(test_msg_add_rollback),
        cmocka_unit_test(test_write_query),
        cmocka_unit_test(test_full_round_trip),
        cmocka_unit_test(test_response_every_cut),
        cmocka_unit_test(test_response_malformed),
        cmocka_unit_test(test_name_from_text),
        cmocka_unit_test(test_name_to_text),
        cmocka_unit_test(test_name_compare),
        cmocka_unit_test(test_type_name),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
