/*
 * libFuzzer target for the server side of src/dns/wire.c. Each input is
 * parsed as a query; whatever the parser reports is checked against its
 * contract, and every query that gets an answer is answered three times:
 * into a 512-byte buffer, into a 4096-byte one, and in place over a copy
 * of the query itself. The answers carry records of several types built
 * from the query's name (CNAME, A, AAAA, TXT and MX with raw input bytes,
 * NS and SOA for the parent, glue), the ECS echo and the path.
 *
 * Aborts when: a return value is outside its contract; a parsed field is
 * out of range (name length, labels, ECS, cookie, path); dns_msg_init fails
 * for a parsed query with cap >= 512; a message grows past its cap; an
 * answer does not parse back with dns_response_parse, does not iterate to
 * its end, returns a different number of records, rcode or ECS than was
 * written, or breaks the truncation rules; the in-place answer differs
 * from the one built in a separate buffer.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t out4096[4096];
static uint8_t inplace[4096];

static void require(int cond)
{
    if (!cond)
        abort();
}

static int is_upper(uint8_t c)
{
    return c >= 'A' && c <= 'Z';
}

/* The parsed query against the contract of dns_parse_query. */
static void check_query(const struct dns_query *q, const uint8_t *data, size_t size, int rc)
{
    unsigned i, k, labels = 0;

    require(rc == DNS_RC_NOERROR || rc == DNS_RC_FORMERR || rc == DNS_RC_NOTIMP
            || rc == DNS_RC_BADVERS);
    require(size >= DNS_HDR_LEN);
    if (q->question_end != 0) {
        require(q->qname == data + DNS_HDR_LEN);
        require(q->qname_len >= 1 && q->question_end == DNS_HDR_LEN + q->qname_len + 4u);
        require(q->question_end <= size);
        require(dns_name_len(q->lname) == q->qname_len);
        require(dns_name_equal(q->lname, q->qname));
        for (i = 0; q->lname[i] != 0; i += q->lname[i] + 1u) {
            for (k = 1; k <= q->lname[i]; k++)
                require(!is_upper(q->lname[i + k]));
            labels++;
        }
        require(labels == q->nlabels);
    } else {
        require(q->qname == NULL);
        require(rc == DNS_RC_FORMERR || rc == DNS_RC_NOTIMP);
    }
    if (!q->edns) {
        require(!q->has_ecs && !q->has_path && !q->has_cookie && rc != DNS_RC_BADVERS);
        return;
    }
    require(q->udp_size >= DNS_MIN_UDP);
    require((rc == DNS_RC_BADVERS) == (q->edns_version != 0 && rc != DNS_RC_FORMERR
                                       && rc != DNS_RC_NOTIMP));
    if (q->has_ecs) {
        unsigned width = q->ecs.family == 1 ? 32 : 128, alen = (q->ecs.source + 7u) / 8;

        require(q->ecs.family == 1 || q->ecs.family == 2);
        require(q->ecs.source <= width && q->ecs.scope == 0);
        for (i = alen; i < 16; i++)
            require(q->ecs.addr[i] == 0);
        if (q->ecs.source % 8 != 0)
            require((q->ecs.addr[alen - 1] & (0xffu >> (q->ecs.source % 8))) == 0);
    }
    if (q->has_cookie)
        require(q->cookie_len == 8 || (q->cookie_len >= 16 && q->cookie_len <= 40));
    if (q->has_path) {
        require(q->path.n >= 1 && q->path.n <= DNS_MAX_PATH);
        for (i = 0; i < q->path.n; i++) {
            require(q->path.len[i] >= 1 && q->path.len[i] <= DNS_MAX_CDN_ID);
            require(strlen(q->path.id[i]) == q->path.len[i]);
        }
    }
}

/* prefix (a wire name without its root) + name, or fallback when too long. */
static const uint8_t *join(uint8_t out[DNS_MAX_NAME], const char *prefix, size_t plen,
                           const uint8_t *name, const uint8_t *fallback)
{
    size_t n = dns_name_len(name);

    if (n == 0 || plen + n > DNS_MAX_NAME)
        return fallback;
    memcpy(out, prefix, plen);
    memcpy(out + plen, name, n);
    return out;
}

struct built {
    size_t len;
    size_t opt_at;      /* where the OPT record starts */
    unsigned records;   /* answer + authority + additional, OPT excluded */
    int truncated;
    int ecs_written;    /* the ECS echo was asked for and fits */
};

/* Answers q in buf[0..cap) with a fixed set of records built from its name. */
static void answer(struct built *b, uint8_t *buf, size_t cap, const struct dns_query *q, int rc,
                   const uint8_t *data, size_t size, const struct dns_path *path)
{
    static const uint8_t fallback[] = "\4edge\3cdn\4test";
    uint8_t edge_buf[DNS_MAX_NAME], ns_buf[DNS_MAX_NAME], rname_buf[DNS_MAX_NAME];
    uint8_t soa[2 * DNS_MAX_NAME + 20];
    const uint8_t *edge, *parent, *ns, *rname;
    struct dns_msg m;
    size_t raw = size < 300 ? size : 300, n1, n2;
    uint8_t scope = size > 0 ? data[size - 1] : 0;

    require(dns_msg_init(&m, buf, cap, q, rc, 1, 1232) == 0);
    require(m.len <= cap && m.opt_reserve <= cap - m.len);
    if (q->question_end != 0 && rc == DNS_RC_NOERROR) {
        edge = join(edge_buf, "\4edge", 5, q->lname, fallback);
        parent = q->nlabels > 0 ? q->lname + q->lname[0] + 1 : q->lname;
        ns = join(ns_buf, "\3ns1", 4, parent, fallback);
        rname = join(rname_buf, "\12hostmaster", 11, parent, fallback);
        n1 = dns_name_len(ns);
        n2 = dns_name_len(rname);
        memcpy(soa, ns, n1);
        memcpy(soa + n1, rname, n2);
        memset(soa + n1 + n2, 7, 20);

        (void)dns_msg_add(&m, DNS_SEC_AN, q->lname, DNS_T_CNAME, DNS_C_IN, 300, edge,
                          (uint16_t)dns_name_len(edge));
        (void)dns_msg_add(&m, DNS_SEC_AN, edge, DNS_T_A, DNS_C_IN, 30,
                          (const uint8_t *)"\xc0\0\2\1", 4);
        (void)dns_msg_add(&m, DNS_SEC_AN, edge, DNS_T_AAAA, DNS_C_IN, 30,
                          (const uint8_t *)"\x20\1\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\1", 16);
        (void)dns_msg_add(&m, DNS_SEC_AN, q->qname, DNS_T_TXT, DNS_C_IN, 30, data, (uint16_t)raw);
        (void)dns_msg_add(&m, DNS_SEC_NS, parent, DNS_T_NS, DNS_C_IN, 300, ns, (uint16_t)n1);
        (void)dns_msg_add(&m, DNS_SEC_NS, parent, DNS_T_SOA, DNS_C_IN, 300, soa,
                          (uint16_t)(n1 + n2 + 20));
        (void)dns_msg_add(&m, DNS_SEC_AR, ns, DNS_T_A, DNS_C_IN, 300,
                          (const uint8_t *)"\xc0\0\2\x35", 4);
        (void)dns_msg_add(&m, DNS_SEC_AR, rname, DNS_T_MX, DNS_C_IN, 300, data, (uint16_t)raw);
        require(m.len <= cap - m.opt_reserve);
    }
    b->truncated = m.truncated;
    b->opt_at = m.truncated ? q->question_end : m.len;
    if (q->question_end == 0)
        b->opt_at = DNS_HDR_LEN;
    b->ecs_written = q->edns && q->has_ecs && cap - b->opt_at >= 11 + 8 + (q->ecs.source + 7u) / 8;
    b->len = dns_msg_finish(&m, q->has_ecs ? &q->ecs : NULL, scope, path);
    require(b->len <= cap && b->len >= b->opt_at);
    b->records = m.count[0] + m.count[1] + m.count[2];
    if (b->truncated)
        require(b->records == 0 && (buf[2] & 0x02));
    else
        require(!(buf[2] & 0x02));
    require(q->edns ? b->len >= b->opt_at + 11 : b->len == b->opt_at);
}

/*
 * Finds option `code` in the OPT record at buf[opt_at..len); returns its
 * body and length in *olen, or NULL.
 */
static const uint8_t *find_opt(const uint8_t *buf, size_t len, size_t opt_at, uint16_t code,
                               size_t *olen)
{
    size_t rdlen, i;

    require(len - opt_at >= 11 && buf[opt_at] == 0 && buf[opt_at + 1] == 0
            && buf[opt_at + 2] == DNS_T_OPT);
    rdlen = (size_t)buf[opt_at + 9] << 8 | buf[opt_at + 10];
    require(opt_at + 11 + rdlen == len);
    for (i = opt_at + 11; i < len;) {
        size_t c = (size_t)buf[i] << 8 | buf[i + 1], l = (size_t)buf[i + 2] << 8 | buf[i + 3];

        require(len - i >= 4 + l);
        if (c == code) {
            *olen = l;
            return buf + i + 4;
        }
        i += 4 + l;
    }
    return NULL;
}

/* The path option written must be the path given, in the format of docs/dns.md. */
static void check_path(const struct built *b, const uint8_t *buf, const struct dns_path *path)
{
    const uint8_t *o;
    size_t olen, at = 0;
    unsigned i;

    o = find_opt(buf, b->len, b->opt_at, DNS_OPT_FERRY_PATH, &olen);
    require(o != NULL);
    for (i = 0; i < path->n; i++) {
        require(at < olen && o[at] == path->len[i]);
        require(olen - at - 1 >= path->len[i]);
        require(memcmp(o + at + 1, path->id[i], path->len[i]) == 0);
        at += 1u + path->len[i];
    }
    require(at == olen);
}

/* Reads the answer back with the client-side parser. */
static void read_back(const struct built *b, const uint8_t *buf, const struct dns_query *q, int rc,
                      uint8_t scope)
{
    static uint8_t copy[4096];
    struct dns_response r;
    struct dns_rr rr;
    unsigned n = 0, width;
    int got;

    require(b->len >= DNS_HDR_LEN);
    if (q->question_end == 0) {
        require(buf[4] == 0 && buf[5] == 0 && b->records == 0);
        return;
    }
    /*
     * The client parser wants opcode QUERY and class IN; the answer echoes
     * whatever the query had, so a copy is normalised first.
     */
    memcpy(copy, buf, b->len);
    copy[2] &= 0x87;
    copy[DNS_HDR_LEN + q->qname_len + 2] = 0;
    copy[DNS_HDR_LEN + q->qname_len + 3] = DNS_C_IN;
    require(dns_response_parse(&r, copy, b->len, q->id, q->lname, q->qtype) == 0);
    require(r.rcode == rc);
    while ((got = dns_response_next(&r, &rr)) == 1) {
        require(dns_name_len(rr.owner) > 0);
        require(rr.rdata >= copy && rr.rdata + rr.rdlen <= copy + b->len);
        if (n == 0)
            require(dns_name_equal(rr.owner, q->lname));
        n++;
    }
    require(got == 0 && n == b->records);
    require(r.has_ecs == b->ecs_written);
    if (r.has_ecs) {
        width = q->ecs.family == 1 ? 32 : 128;
        require(r.ecs.family == q->ecs.family && r.ecs.source == q->ecs.source);
        require(r.ecs.scope == (scope > width ? width : scope));
        require(memcmp(r.ecs.addr, q->ecs.addr, 16) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t out512[512];
    struct dns_query q, q2;
    struct dns_path path;
    struct built b512, b4096, bin;
    const struct dns_path *pp = NULL;
    uint8_t scope = size > 0 ? data[size - 1] : 0;
    int rc;

    rc = dns_parse_query(data, size, &q);
    if (rc == DNS_PARSE_DROP) {
        require(size < DNS_HDR_LEN || (data[2] & 0x80));
        return 0;
    }
    check_query(&q, data, size, rc);

    /* The path as a router would send it on: the query's, plus its own id. */
    if (q.has_path) {
        path = q.path;
        if (path.n < DNS_MAX_PATH) {
            memcpy(path.id[path.n], "fuzz-cdn", 9);
            path.len[path.n++] = 8;
        }
        pp = &path;
    }

    answer(&b512, out512, sizeof(out512), &q, rc, data, size, pp);
    read_back(&b512, out512, &q, rc, scope);
    answer(&b4096, out4096, sizeof(out4096), &q, rc, data, size, pp);
    read_back(&b4096, out4096, &q, rc, scope);
    /* 4096 bytes always hold the echoes: header and question take at most 271. */
    require(b4096.ecs_written == (q.edns && q.has_ecs));
    if (q.edns && pp != NULL)
        check_path(&b4096, out4096, pp);

    /* In place over a copy of the query: the same bytes as built apart. */
    if (size <= sizeof(inplace)) {
        memcpy(inplace, data, size);
        require(dns_parse_query(inplace, size, &q2) == rc);
        answer(&bin, inplace, sizeof(inplace), &q2, rc, data, size, pp);
        require(bin.len == b4096.len && memcmp(inplace, out4096, bin.len) == 0);
    }
    return 0;
}
