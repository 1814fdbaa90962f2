/*
 * libFuzzer target for the client side of src/dns/wire.c. Each input is
 * read as the response of a peer's router, twice:
 *
 *   1. against a fixed question (www.example.test A, the id taken from
 *      the input so the fuzzer need not guess it), and
 *   2. against the input's own question, when it is uncompressed (found
 *      with dns_parse_query on a copy with QR cleared), which lets the
 *      fuzzer reach the records with any question it likes.
 *
 * A response that parses is iterated to the end, then its records are
 * written again with dns_msg_add into a new message, which is read back
 * and compared record by record: this runs the compressing writer over
 * every owner and target name the fuzzer can make.
 *
 * Aborts when: a return value is outside its contract; dns_response_next
 * fails after dns_response_parse succeeded; a record points outside the
 * input, has an invalid or not lowercased name, or comes in the wrong
 * section order; the rewritten message does not parse or differs.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fixed_qname[] = "\3www\7example\4test";

static uint8_t copy[DNS_MAX_UDP];
static uint8_t qbuf[512];
static uint8_t rebuilt[DNS_MAX_UDP];
/* Which records of the input went into the rebuilt message. */
static uint8_t added[DNS_MAX_UDP / 11 + 1];

static void require(int cond)
{
    if (!cond)
        abort();
}

static int name_ok(const uint8_t *name)
{
    size_t n = dns_name_len(name), i, k;

    if (n == 0)
        return 0;
    for (i = 0; name[i] != 0; i += name[i] + 1u)
        for (k = 1; k <= name[i]; k++)
            if (name[i + k] >= 'A' && name[i + k] <= 'Z')
                return 0;
    return 1;
}

static int is_name_type(uint16_t type)
{
    return type == DNS_T_NS || type == DNS_T_CNAME || type == DNS_T_PTR;
}

/* Iterates a parsed response to its end, checking each record; returns the count. */
static unsigned walk(struct dns_response *r, const uint8_t *pkt, size_t len)
{
    struct dns_rr rr;
    enum dns_section last = DNS_SEC_AN;
    unsigned n = 0;
    int rc;

    while ((rc = dns_response_next(r, &rr)) == 1) {
        require(rr.type != DNS_T_OPT);
        require(rr.sec >= last && rr.sec <= DNS_SEC_AR);
        last = rr.sec;
        require(name_ok(rr.owner));
        require(rr.rdata >= pkt && rr.rdlen <= len && rr.rdata - pkt <= (ptrdiff_t)(len - rr.rdlen));
        if (is_name_type(rr.type))
            require(name_ok(rr.target));
        else
            require(rr.target[0] == 0);
        if (rr.rclass == DNS_C_IN && rr.type == DNS_T_A)
            require(rr.rdlen == 4);
        if (rr.rclass == DNS_C_IN && rr.type == DNS_T_AAAA)
            require(rr.rdlen == 16);
        n++;
    }
    /* After a successful parse, iteration cannot fail, and the end is sticky. */
    require(rc == 0);
    require(dns_response_next(r, &rr) == 0);
    require(n <= (unsigned)r->count[0] + r->count[1] + r->count[2]);
    return n;
}

/*
 * Writes the records of a parsed response again, under the question
 * (qname, qtype), reads the result back and compares.
 */
static void rewrite(const uint8_t *pkt, size_t len, uint16_t id, const uint8_t *qname,
                    uint16_t qtype)
{
    struct dns_response r, r2;
    struct dns_rr rr, rr2;
    struct dns_query q;
    struct dns_msg m;
    unsigned i = 0, n;
    size_t out;
    int qlen, rc;

    qlen = dns_write_query(qbuf, sizeof(qbuf), id, qname, qtype, 1232, NULL, NULL);
    require(qlen > 0);
    require(dns_parse_query(qbuf, (size_t)qlen, &q) == DNS_RC_NOERROR);
    require(dns_msg_init(&m, rebuilt, sizeof(rebuilt), &q, 0, 0, 1232) == 0);

    require(dns_response_parse(&r, pkt, len, id, qname, qtype) == 0);
    while (dns_response_next(&r, &rr) == 1) {
        const uint8_t *rd = is_name_type(rr.type) ? rr.target : rr.rdata;
        uint16_t rdlen = is_name_type(rr.type) ? (uint16_t)dns_name_len(rr.target) : rr.rdlen;

        require(i < sizeof(added));
        rc = dns_msg_add(&m, rr.sec, rr.owner, rr.type, rr.rclass, rr.ttl, rd, rdlen);
        require(rc == 0 || rc == -1);
        /* Only an SOA with compressed names inside, or a lack of room, can refuse. */
        if (rc < 0)
            require(rr.type == DNS_T_SOA || m.truncated || rr.sec == DNS_SEC_AR);
        added[i++] = rc == 0;
    }
    n = i;
    out = dns_msg_finish(&m, NULL, 0, NULL);
    require(out <= sizeof(rebuilt));
    if (m.truncated)
        return;

    require(dns_response_parse(&r, pkt, len, id, qname, qtype) == 0);
    require(dns_response_parse(&r2, rebuilt, out, id, qname, qtype) == 0);
    for (i = 0; i < n; i++) {
        require(dns_response_next(&r, &rr) == 1);
        if (!added[i])
            continue;
        require(dns_response_next(&r2, &rr2) == 1);
        require(rr2.sec == rr.sec && rr2.type == rr.type && rr2.rclass == rr.rclass);
        require(rr2.ttl == rr.ttl);
        require(dns_name_len(rr2.owner) == dns_name_len(rr.owner));
        require(memcmp(rr2.owner, rr.owner, dns_name_len(rr.owner)) == 0);
        if (is_name_type(rr.type)) {
            require(memcmp(rr2.target, rr.target, dns_name_len(rr.target)) == 0);
        } else if (rr.type != DNS_T_SOA) {
            require(rr2.rdlen == rr.rdlen && memcmp(rr2.rdata, rr.rdata, rr.rdlen) == 0);
        }
    }
    require(dns_response_next(&r, &rr) == 0);
    require(dns_response_next(&r2, &rr2) == 0);
}

static void one(const uint8_t *data, size_t size, uint16_t id, const uint8_t *qname, uint16_t qtype)
{
    struct dns_response r;
    int rc;

    rc = dns_response_parse(&r, data, size, id, qname, qtype);
    require(rc == 0 || rc == -1);
    if (rc < 0)
        return;
    require(size >= DNS_HDR_LEN && (r.flags & DNS_F_QR) && r.id == id);
    require(r.rcode >= 0 && r.rcode <= 0xfff);
    require(r.rr_start <= size && r.pos == r.rr_start);
    if (r.has_ecs) {
        unsigned width = r.ecs.family == 1 ? 32 : 128, k;

        require(r.ecs.family == 1 || r.ecs.family == 2);
        require(r.ecs.source <= width && r.ecs.scope <= width);
        for (k = (r.ecs.source + 7u) / 8; k < 16; k++)
            require(r.ecs.addr[k] == 0);
    }
    walk(&r, data, size);
    rewrite(data, size, id, qname, qtype);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dns_query q;
    uint16_t id = size >= 2 ? (uint16_t)(data[0] << 8 | data[1]) : 0;
    int rc;

    if (size > sizeof(copy))
        return 0;
    one(data, size, id, fixed_qname, DNS_T_A);

    /* The input's own question, when it has a readable one. */
    if (size >= DNS_HDR_LEN) {
        memcpy(copy, data, size);
        copy[2] &= 0x7f;
        rc = dns_parse_query(copy, size, &q);
        if (rc != DNS_PARSE_DROP && q.question_end != 0
            && !dns_name_equal(q.lname, fixed_qname))
            one(data, size, id, q.lname, q.qtype);
    }
    return 0;
}
