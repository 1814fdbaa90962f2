/*
 * dns/wire -- parses DNS queries and writes responses for the router, and
 * writes queries to and reads responses from a peer's router.
 *
 * Data flow on the server side: dns_parse_query() reads the header, the one
 * question (RFC 1035 section 4.1.2; the name is copied lowercased into
 * q->lname as it is read) and walks every following record, which in a
 * query may only be the OPT pseudo-record of RFC 6891 (section 6.1) and
 * other additional data; the OPT's options ECS (RFC 7871 section 6),
 * cookie (RFC 7873 section 4) and the Ferry path are decoded into the
 * query. dns_msg_init() then writes the header and the question into the
 * caller's buffer and keeps room for the OPT record, dns_msg_add() appends
 * records, compressing names against the ones already written (RFC 1035
 * section 4.1.4), and dns_msg_finish() writes the counts and the OPT record,
 * or, when an answer did not fit, cuts the message back to its question and
 * sets TC (RFC 2181 section 9).
 *
 * The client side is the mirror image: dns_write_query() and
 * dns_response_parse()/dns_response_next().
 *
 * Safety. Every read is checked against the packet length before it is
 * made. A compression pointer must point strictly before the name (or the
 * part of a name) that holds it, so each jump goes further back and no
 * input can loop the reader; jumps and the decompressed length (255) are
 * bounded besides. Writers check room before every write and leave a
 * message as it was when a record does not fit.
 *
 * Speed. The query parser and the writers touch only the bytes they need:
 * no memset of the large structures, no allocation, loops over labels only.
 */
#include "dns/wire.h"

#include <stdio.h>
#include <string.h>

/* Pointers followed while reading one name; a valid name needs far fewer. */
#define MAX_JUMPS 128
/* Labels of a name: (255 - 1) / 2 one-byte labels at most. */
#define MAX_LABELS 127
/* The fixed part of an OPT record: root owner, type, class, TTL, rdlength. */
#define OPT_FIXED 11
/* The largest ECS option: code, length, family, two prefixes, 16 bytes. */
#define ECS_MAX_OPT (4 + 4 + 16)

/* ---- bytes ---- */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)get16(p) << 16 | get16(p + 2);
}

/* ASCII lowercase only (RFC 4343 section 3): other bytes compare exactly. */
static uint8_t lower(uint8_t c)
{
    return (unsigned)(c - 'A') < 26u ? (uint8_t)(c + 32) : c;
}

/* ---- names ---- */

/*
 * Reads the possibly compressed name at *pos of pkt[0..len). Writes it
 * decompressed and lowercased to out when out is not NULL, and moves *pos
 * just past the name as it sits at *pos. The first pointer must point
 * before the name's start and every further one before the previous
 * target, so the walk only ever goes back. Returns the decompressed wire
 * length, or -1.
 */
static int read_name(const uint8_t *pkt, size_t len, size_t *pos, uint8_t *out)
{
    size_t p = *pos, limit = *pos, end = 0;
    unsigned n = 0, jumps = 0, c, i;

    for (;;) {
        if (p >= len)
            return -1;
        c = pkt[p];
        if (c == 0)
            break;
        if (c > DNS_MAX_LABEL) {
            size_t target;

            /* 01 and 10 are reserved label types (RFC 6891 section 5). */
            if ((c & 0xc0) != 0xc0 || p + 1 >= len)
                return -1;
            target = (size_t)(c & 0x3f) << 8 | pkt[p + 1];
            if (end == 0)
                end = p + 2;
            if (target >= limit || ++jumps > MAX_JUMPS)
                return -1;
            limit = p = target;
            continue;
        }
        /* This label and at least the root label must fit in 255 bytes. */
        if (n + c + 2 > DNS_MAX_NAME || c >= len - p)
            return -1;
        if (out != NULL) {
            out[n] = (uint8_t)c;
            for (i = 1; i <= c; i++)
                out[n + i] = lower(pkt[p + i]);
        }
        n += c + 1;
        p += c + 1;
    }
    if (out != NULL)
        out[n] = 0;
    *pos = end != 0 ? end : p + 1;
    return (int)n + 1;
}

/*
 * Length of the uncompressed name at name[0..max), root included, or -1
 * when it is not a valid one (max is capped at 255).
 */
static int name_check(const uint8_t *name, size_t max)
{
    size_t n = 0;

    if (max > DNS_MAX_NAME)
        max = DNS_MAX_NAME;
    while (n < max) {
        unsigned c = name[n];

        if (c == 0)
            return (int)n + 1;
        if (c > DNS_MAX_LABEL)
            return -1;
        n += c + 1;
    }
    return -1;
}

/*
 * Offsets of the labels of a valid uncompressed name; returns their count
 * (0 for the root) and the name's length in *nlen, or -1.
 */
static int name_labels(const uint8_t *name, uint8_t off[MAX_LABELS], size_t *nlen)
{
    size_t n = 0;
    int k = 0;

    for (;;) {
        unsigned c = name[n];

        if (c == 0)
            break;
        if (c > DNS_MAX_LABEL || n + c + 2 > DNS_MAX_NAME)
            return -1;
        off[k++] = (uint8_t)n;
        n += c + 1;
    }
    *nlen = n + 1;
    return k;
}

static int label_equal(const uint8_t *a, const uint8_t *b)
{
    unsigned i;

    if (a[0] != b[0])
        return 0;
    for (i = 1; i <= a[0]; i++)
        if (lower(a[i]) != lower(b[i]))
            return 0;
    return 1;
}

size_t dns_name_len(const uint8_t *name)
{
    int n = name_check(name, DNS_MAX_NAME);

    return n < 0 ? 0 : (size_t)n;
}

int dns_name_equal(const uint8_t *a, const uint8_t *b)
{
    size_t n = 0;

    for (;;) {
        /* A label must leave room for the root label within 255 bytes. */
        if (a[n] > DNS_MAX_LABEL || (a[n] != 0 && n + a[n] + 2 > DNS_MAX_NAME)
            || !label_equal(a + n, b + n))
            return 0;
        if (a[n] == 0)
            return 1;
        n += (size_t)a[n] + 1;
    }
}

int dns_name_under(const uint8_t *name, const uint8_t *zone)
{
    uint8_t noff[MAX_LABELS], zoff[MAX_LABELS];
    size_t nlen, zlen;
    int nn = name_labels(name, noff, &nlen), nz = name_labels(zone, zoff, &zlen);

    if (nn < 0 || nz < 0 || nn < nz)
        return -1;
    /* The tail of name with as many labels as zone; the root label itself when zone is the root. */
    if (!dns_name_equal(name + (nn > nz ? (nz > 0 ? noff[nn - nz] : nlen - 1) : 0), zone))
        return -1;
    return nn - nz;
}

static int host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'
           || c == '_' || c == '*';
}

int dns_name_from_text(uint8_t out[DNS_MAX_NAME], const char *text)
{
    const char *s = text;
    size_t n = 0;

    if (text == NULL || text[0] == '\0')
        return -1;
    if (text[0] == '.' && text[1] == '\0') {
        out[0] = 0;
        return 1;
    }
    for (;;) {
        size_t lenpos = n, l = 0;

        /* Each byte written must leave room for the root label. */
        if (n >= DNS_MAX_NAME - 1)
            return -1;
        n++;
        while (*s != '\0' && *s != '.') {
            if (!host_char(*s) || l == DNS_MAX_LABEL || n >= DNS_MAX_NAME - 1)
                return -1;
            out[n++] = lower((uint8_t)*s++);
            l++;
        }
        if (l == 0)
            return -1;
        out[lenpos] = (uint8_t)l;
        if (*s == '\0')
            break;
        s++; /* the dot */
        if (*s == '\0')
            break;
    }
    out[n++] = 0;
    return (int)n;
}

int dns_name_to_text(char *out, size_t cap, const uint8_t *name)
{
    size_t n = 0, o = 0;

    if (cap == 0)
        return -1;
    if (name[0] == 0) {
        if (cap < 2)
            return -1;
        out[0] = '.';
        out[1] = '\0';
        return 1;
    }
    while (name[n] != 0) {
        unsigned l = name[n], i;

        if (l > DNS_MAX_LABEL || n + l + 2 > DNS_MAX_NAME)
            return -1;
        if (n > 0) {
            if (o + 1 >= cap)
                return -1;
            out[o++] = '.';
        }
        for (i = 1; i <= l; i++) {
            uint8_t b = name[n + i];

            if (b >= '!' && b <= '~' && b != '.' && b != '\\') {
                if (o + 1 >= cap)
                    return -1;
                out[o++] = (char)b;
            } else {
                if (o + 4 >= cap)
                    return -1;
                out[o++] = '\\';
                out[o++] = (char)('0' + b / 100);
                out[o++] = (char)('0' + b / 10 % 10);
                out[o++] = (char)('0' + b % 10);
            }
        }
        n += l + 1;
    }
    out[o] = '\0';
    return (int)o;
}

const char *dns_type_name(uint16_t type, char out[12])
{
    static const struct {
        uint16_t type;
        const char *name;
    } names[] = {
        { DNS_T_A, "A" },       { DNS_T_NS, "NS" },     { DNS_T_CNAME, "CNAME" },
        { DNS_T_SOA, "SOA" },   { DNS_T_PTR, "PTR" },   { DNS_T_MX, "MX" },
        { DNS_T_TXT, "TXT" },   { DNS_T_AAAA, "AAAA" }, { DNS_T_OPT, "OPT" },
        { DNS_T_IXFR, "IXFR" }, { DNS_T_AXFR, "AXFR" }, { DNS_T_ANY, "ANY" },
    };
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].type == type) {
            strcpy(out, names[i].name);
            return out;
        }
    snprintf(out, 12, "TYPE%u", (unsigned)type);
    return out;
}

/* ---- options ---- */

static unsigned ecs_width(uint16_t family)
{
    return family == 1 ? 32 : family == 2 ? 128 : 0;
}

/* Bits of the address's last byte that lie past the source prefix. */
static uint8_t ecs_tail_mask(unsigned source)
{
    return source % 8 == 0 ? 0 : (uint8_t)(0xffu >> (source % 8));
}

/*
 * Decodes an ECS option body. A query's scope must be 0 (RFC 7871 section
 * 7.1.1); a response's may be up to the family width. Returns 0 or -1.
 */
static int ecs_read(struct dns_ecs *e, const uint8_t *p, size_t n, int is_query)
{
    unsigned width, alen;

    if (n < 4)
        return -1;
    e->family = get16(p);
    e->source = p[2];
    e->scope = p[3];
    width = ecs_width(e->family);
    alen = (e->source + 7u) / 8;
    if (width == 0 || e->source > width || n - 4 != alen)
        return -1;
    if (is_query ? e->scope != 0 : e->scope > width)
        return -1;
    memset(e->addr, 0, sizeof(e->addr));
    if (alen > 0) {
        memcpy(e->addr, p + 4, alen);
        if (e->addr[alen - 1] & ecs_tail_mask(e->source)) {
            /* Section 7.1.2 makes this a FORMERR in a query; a response
             * gets the benefit of the doubt and the bits are cleared. */
            if (is_query)
                return -1;
            e->addr[alen - 1] &= (uint8_t)~ecs_tail_mask(e->source);
        }
    }
    return 0;
}

/* Bytes of the ECS option written for e with any scope, or 0 when e is invalid. */
static size_t ecs_opt_len(const struct dns_ecs *e)
{
    unsigned width = ecs_width(e->family);

    if (width == 0 || e->source > width)
        return 0;
    return 8 + (e->source + 7u) / 8;
}

/* Writes the ECS option (length from ecs_opt_len) with the address masked to source. */
static void ecs_write(uint8_t *p, const struct dns_ecs *e, uint8_t scope)
{
    unsigned alen = (e->source + 7u) / 8, width = ecs_width(e->family);

    put16(p, DNS_OPT_ECS);
    put16(p + 2, (uint16_t)(4 + alen));
    put16(p + 4, e->family);
    p[6] = e->source;
    p[7] = scope > width ? (uint8_t)width : scope;
    if (alen > 0) {
        memcpy(p + 8, e->addr, alen);
        p[8 + alen - 1] &= (uint8_t)~ecs_tail_mask(e->source);
    }
}

static int cdn_char(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* Decodes a path option body (docs/dns.md). Returns 0 or -1. */
static int path_read(struct dns_path *path, const uint8_t *p, size_t n)
{
    size_t i = 0;

    path->n = 0;
    if (n == 0)
        return -1;
    while (i < n) {
        unsigned l = p[i++], k;
        char *id;

        if (l == 0 || l > DNS_MAX_CDN_ID || l > n - i || path->n == DNS_MAX_PATH)
            return -1;
        id = path->id[path->n];
        for (k = 0; k < l; k++) {
            if (!cdn_char(p[i + k]))
                return -1;
            id[k] = (char)p[i + k];
        }
        id[l] = '\0';
        path->len[path->n++] = (uint8_t)l;
        i += l;
    }
    return 0;
}

/* Bytes of the path option for path, or 0 when it is empty or invalid. */
static size_t path_opt_len(const struct dns_path *path)
{
    size_t n = 4;
    unsigned i, k;

    if (path->n == 0 || path->n > DNS_MAX_PATH)
        return 0;
    for (i = 0; i < path->n; i++) {
        unsigned l = path->len[i];

        if (l == 0 || l > DNS_MAX_CDN_ID)
            return 0;
        for (k = 0; k < l; k++)
            if (!cdn_char((uint8_t)path->id[i][k]))
                return 0;
        n += 1 + l;
    }
    return n;
}

static void path_write(uint8_t *p, const struct dns_path *path, size_t optlen)
{
    size_t o = 4;
    unsigned i;

    put16(p, DNS_OPT_FERRY_PATH);
    put16(p + 2, (uint16_t)(optlen - 4));
    for (i = 0; i < path->n; i++) {
        p[o++] = path->len[i];
        memcpy(p + o, path->id[i], path->len[i]);
        o += path->len[i];
    }
}

/* ---- parsing a query ---- */

/*
 * Decodes the OPT record of a query: its fixed fields (class = payload
 * size, TTL = extended rcode, version, flags) and, for version 0, its
 * options. Returns 0, or -1 for FORMERR (q->edns stays set).
 */
static int query_opt(struct dns_query *q, uint16_t rclass, uint32_t ttl, const uint8_t *p,
                     size_t n)
{
    size_t i = 0;

    q->edns = 1;
    q->udp_size = rclass < DNS_MIN_UDP ? DNS_MIN_UDP : rclass;
    q->edns_version = (uint8_t)(ttl >> 16);
    q->dnssec_ok = (ttl & 0x8000u) != 0;
    /* RFC 6891 section 6.1.3: a later version's options may mean anything. */
    if (q->edns_version != 0)
        return 0;
    while (i < n) {
        uint16_t code, olen;
        const uint8_t *o;

        if (n - i < 4)
            return -1;
        code = get16(p + i);
        olen = get16(p + i + 2);
        i += 4;
        if (olen > n - i)
            return -1;
        o = p + i;
        i += olen;
        switch (code) {
        case DNS_OPT_ECS:
            if (q->has_ecs || ecs_read(&q->ecs, o, olen, 1) < 0)
                return -1;
            q->has_ecs = 1;
            break;
        case DNS_OPT_COOKIE:
            if (q->has_cookie || (olen != 8 && (olen < 16 || olen > 40)))
                return -1;
            memcpy(q->cookie, o, olen);
            q->cookie_len = (uint8_t)olen;
            q->has_cookie = 1;
            break;
        case DNS_OPT_FERRY_PATH:
            if (q->has_path || path_read(&q->path, o, olen) < 0)
                return -1;
            q->has_path = 1;
            break;
        default:
            break; /* RFC 6891 section 6.1.2: unknown options are ignored */
        }
    }
    return 0;
}

/* Forgets every option of a query whose OPT turned out unusable. */
static void query_drop_edns(struct dns_query *q)
{
    q->edns = 0;
    q->edns_version = 0;
    q->dnssec_ok = 0;
    q->udp_size = DNS_MIN_UDP;
    q->has_ecs = 0;
    q->has_path = 0;
    q->path.n = 0;
    q->has_cookie = 0;
    q->cookie_len = 0;
}

/*
 * Reads the question of a query at offset 12 into q: no compression is
 * allowed there. Returns the offset past it, or 0 when it is not whole.
 */
static size_t query_question(const uint8_t *pkt, size_t len, struct dns_query *q)
{
    size_t p = DNS_HDR_LEN, n = 0;
    unsigned labels = 0, c, i;

    for (;;) {
        if (p >= len)
            return 0;
        c = pkt[p];
        if (c == 0)
            break;
        if (c > DNS_MAX_LABEL || n + c + 2 > DNS_MAX_NAME || c >= len - p)
            return 0;
        q->lname[n] = (uint8_t)c;
        for (i = 1; i <= c; i++)
            q->lname[n + i] = lower(pkt[p + i]);
        n += c + 1;
        p += c + 1;
        labels++;
    }
    q->lname[n++] = 0;
    p++;
    if (len - p < 4)
        return 0;
    q->qname = pkt + DNS_HDR_LEN;
    q->qname_len = (uint8_t)n;
    q->nlabels = (uint8_t)labels;
    q->qtype = get16(pkt + p);
    q->qclass = get16(pkt + p + 2);
    q->question_end = p + 4;
    return p + 4;
}

int dns_parse_query(const uint8_t *pkt, size_t len, struct dns_query *q)
{
    unsigned qd, an, ns, ar, i, nrr, opts = 0;
    size_t pos;
    int formerr = 0, opt_bad = 0;

    if (len < DNS_HDR_LEN || (get16(pkt + 2) & DNS_F_QR))
        return DNS_PARSE_DROP;
    q->id = get16(pkt);
    q->flags = get16(pkt + 2);
    q->qtype = q->qclass = 0;
    q->qname = NULL;
    q->qname_len = 0;
    q->lname[0] = 0;
    q->nlabels = 0;
    q->question_end = 0;
    query_drop_edns(q);
    qd = get16(pkt + 4);
    an = get16(pkt + 6);
    ns = get16(pkt + 8);
    ar = get16(pkt + 10);

    /*
     * Walk the whole message even when it is already known to be a
     * FORMERR, so that a readable OPT record still gets its answer OPT.
     */
    pos = DNS_HDR_LEN;
    if (qd == 1) {
        pos = query_question(pkt, len, q);
        if (pos == 0)
            goto formerr; /* the records cannot be found */
    } else {
        formerr = 1;
        for (i = 0; i < qd; i++) {
            if (read_name(pkt, len, &pos, NULL) < 0 || len - pos < 4)
                goto formerr;
            pos += 4;
        }
    }
    if (an != 0 || ns != 0)
        formerr = 1;
    nrr = an + ns + ar;
    for (i = 0; i < nrr; i++) {
        uint16_t type, rdlen;
        int owner_len;

        owner_len = read_name(pkt, len, &pos, NULL);
        if (owner_len < 0 || len - pos < 10)
            goto formerr;
        type = get16(pkt + pos);
        rdlen = get16(pkt + pos + 8);
        if (rdlen > len - pos - 10)
            goto formerr;
        if (type == DNS_T_OPT) {
            /* RFC 6891 section 6.1.1: one OPT, in the additional section, owned by the root. */
            if (i < an + ns || owner_len != 1 || ++opts > 1) {
                opt_bad = 1;
            } else if (query_opt(q, get16(pkt + pos + 2), get32(pkt + pos + 4), pkt + pos + 10,
                                 rdlen) < 0) {
                formerr = 1;
            }
        }
        pos += 10 + (size_t)rdlen;
    }
    if (pos != len)
        formerr = 1;
    if (opt_bad) {
        query_drop_edns(q);
        formerr = 1;
    }
    if (DNS_OPCODE(q->flags) != 0)
        return DNS_RC_NOTIMP;
    if (formerr)
        return DNS_RC_FORMERR;
    if (q->edns && q->edns_version != 0)
        return DNS_RC_BADVERS;
    return DNS_RC_NOERROR;

formerr:
    /*
     * The records could not be walked to the end. An OPT read before the
     * break still gets its answer OPT, unless it was not the only one.
     */
    if (opt_bad)
        query_drop_edns(q);
    return DNS_OPCODE(q->flags) != 0 ? DNS_RC_NOTIMP : DNS_RC_FORMERR;
}

/* ---- writing a message ---- */

/*
 * Offsets of the labels of the name at off in the message written so far.
 * The bytes are our own, but the walk is bounded all the same. Returns the
 * label count, or -1.
 */
static int msg_labels(const struct dns_msg *m, size_t off, uint16_t pos[MAX_LABELS])
{
    unsigned jumps = 0;
    int n = 0;

    while (off < m->len) {
        unsigned c = m->buf[off];

        if (c == 0)
            return n;
        if (c > DNS_MAX_LABEL) {
            size_t target;

            if ((c & 0xc0) != 0xc0 || off + 1 >= m->len || ++jumps > MAX_JUMPS)
                return -1;
            target = (size_t)(c & 0x3f) << 8 | m->buf[off + 1];
            if (target >= off)
                return -1;
            off = target;
            continue;
        }
        if (n == MAX_LABELS)
            return -1;
        pos[n++] = (uint16_t)off;
        off += c + 1;
    }
    return -1;
}

/*
 * Appends a name, compressed: the longest suffix (whole labels, compared
 * case-insensitively) that some remembered name ends with becomes a
 * pointer to it. Remembers the name when it adds labels of its own.
 * Returns 0, -1 when it does not fit below limit, -2 for an invalid name.
 */
static int put_name(struct dns_msg *m, const uint8_t *name, size_t limit)
{
    uint8_t off[MAX_LABELS];
    uint16_t cpos[MAX_LABELS];
    size_t nlen, literal, start = m->len;
    int k = name_labels(name, off, &nlen), best = 0, i;
    uint16_t target = 0;

    if (k < 0)
        return -2;
    for (i = 0; i < m->ncomp && best < k; i++) {
        int n = msg_labels(m, m->comp[i], cpos), j = 0;

        while (j < k && j < n && label_equal(name + off[k - 1 - j], m->buf + cpos[n - 1 - j])) {
            j++;
            /* A pointer holds 14 bits: a suffix further on cannot be a target. */
            if (j > best && cpos[n - j] < 0x4000) {
                best = j;
                target = cpos[n - j];
            }
        }
    }
    literal = best > 0 ? off[k - best] : nlen - 1;
    if (m->len > limit || literal + (best > 0 ? 2 : 1) > limit - m->len)
        return -1;
    memcpy(m->buf + m->len, name, literal);
    m->len += literal;
    if (best > 0) {
        put16(m->buf + m->len, (uint16_t)(0xc000u | target));
        m->len += 2;
    } else {
        m->buf[m->len++] = 0;
    }
    if (literal > 0 && start < 0x4000 && m->ncomp < DNS_COMP_MAX)
        m->comp[m->ncomp++] = (uint16_t)start;
    return 0;
}

/* Room for the OPT record of a response to q, as dns_msg_init reserves it. */
static size_t opt_room(const struct dns_query *q)
{
    size_t n = OPT_FIXED;

    if (q->has_ecs)
        n += ECS_MAX_OPT;
    if (q->has_path) {
        n += path_opt_len(&q->path);
        if (q->path.n < DNS_MAX_PATH)
            n += 1 + DNS_MAX_CDN_ID;
    }
    return n;
}

int dns_msg_init(struct dns_msg *m, uint8_t *buf, size_t cap, const struct dns_query *q,
                 int rcode, int aa, uint16_t our_udp_size)
{
    size_t min_opt = q->edns ? OPT_FIXED : 0, room;
    uint16_t flags;

    if (cap > DNS_MAX_UDP)
        cap = DNS_MAX_UDP;
    if (rcode < 0 || rcode > 0xfff || (rcode > 15 && !q->edns))
        rcode = DNS_RC_SERVFAIL;
    m->buf = buf;
    m->cap = cap;
    m->len = DNS_HDR_LEN;
    m->count[0] = m->count[1] = m->count[2] = 0;
    m->truncated = 0;
    m->ncomp = 0;
    m->opt_reserve = 0;
    m->edns = q->edns;
    m->ext_rcode = (uint16_t)rcode;
    m->udp_size = our_udp_size < DNS_MIN_UDP ? DNS_MIN_UDP : our_udp_size;
    m->dnssec_ok = q->dnssec_ok;
    if (cap < DNS_HDR_LEN + min_opt)
        return -1;

    flags = (uint16_t)(DNS_F_QR | (q->flags & (0x7800u | DNS_F_RD | DNS_F_CD)) | (aa ? DNS_F_AA : 0)
                       | (rcode & 0xf));
    if (q->question_end != 0 && q->qname != NULL) {
        size_t qlen = q->qname_len;

        if (qlen + 4 > cap - DNS_HDR_LEN - min_opt)
            return -1;
        /* memmove: buf may be the query's own buffer, qname inside it. */
        memmove(buf + DNS_HDR_LEN, q->qname, qlen);
        put16(buf + DNS_HDR_LEN + qlen, q->qtype);
        put16(buf + DNS_HDR_LEN + qlen + 2, q->qclass);
        m->len = DNS_HDR_LEN + qlen + 4;
        m->comp[0] = DNS_HDR_LEN;
        m->ncomp = 1;
    }
    put16(buf, q->id);
    put16(buf + 2, flags);
    put16(buf + 4, m->ncomp);
    put16(buf + 6, 0);
    put16(buf + 8, 0);
    put16(buf + 10, 0);
    if (q->edns) {
        room = opt_room(q);
        m->opt_reserve = room < cap - m->len ? room : cap - m->len;
    }
    return 0;
}

int dns_msg_add(struct dns_msg *m, enum dns_section sec, const uint8_t *owner, uint16_t type,
                uint16_t rclass, uint32_t ttl, const uint8_t *rdata, uint16_t rdlen)
{
    size_t save_len = m->len, limit, rdpos;
    uint8_t save_ncomp = m->ncomp;
    int rc;

    if ((unsigned)sec > DNS_SEC_AR || m->truncated || type == DNS_T_OPT
        || m->count[sec] == 0xffff)
        return -1;
    if ((sec == DNS_SEC_AN && (m->count[DNS_SEC_NS] || m->count[DNS_SEC_AR]))
        || (sec == DNS_SEC_NS && m->count[DNS_SEC_AR]))
        return -1;
    if (m->opt_reserve > m->cap)
        goto full;
    limit = m->cap - m->opt_reserve;

    rc = put_name(m, owner, limit);
    if (rc < 0)
        goto fail;
    if (m->len > limit || limit - m->len < 10)
        goto full;
    put16(m->buf + m->len, type);
    put16(m->buf + m->len + 2, rclass);
    put32(m->buf + m->len + 4, ttl);
    rdpos = m->len + 8;
    m->len += 10;

    switch (type) {
    case DNS_T_NS:
    case DNS_T_CNAME:
    case DNS_T_PTR:
        if (rdata == NULL || name_check(rdata, rdlen) != (int)rdlen) {
            rc = -2;
            goto fail;
        }
        rc = put_name(m, rdata, limit);
        break;
    case DNS_T_SOA: {
        int n1 = rdata != NULL ? name_check(rdata, rdlen) : -1;
        int n2 = n1 > 0 ? name_check(rdata + n1, rdlen - (size_t)n1) : -1;

        if (n2 < 0 || rdlen - n1 - n2 != 20) {
            rc = -2;
            goto fail;
        }
        rc = put_name(m, rdata, limit);
        if (rc == 0)
            rc = put_name(m, rdata + n1, limit);
        if (rc == 0 && (m->len > limit || limit - m->len < 20))
            rc = -1;
        if (rc == 0) {
            memcpy(m->buf + m->len, rdata + n1 + n2, 20);
            m->len += 20;
        }
        break;
    }
    default:
        if (rdlen > 0 && rdata == NULL) {
            rc = -2;
            goto fail;
        }
        if (rdlen > limit - m->len)
            goto full;
        if (rdlen > 0)
            memcpy(m->buf + m->len, rdata, rdlen);
        m->len += rdlen;
        rc = 0;
        break;
    }
    if (rc < 0)
        goto fail;
    put16(m->buf + rdpos, (uint16_t)(m->len - rdpos - 2));
    m->count[sec]++;
    return 0;

full:
    rc = -1;
fail:
    m->len = save_len;
    m->ncomp = save_ncomp;
    /* Only a record that did not fit truncates; bad input is the caller's. */
    if (rc == -1 && sec != DNS_SEC_AR)
        m->truncated = 1;
    return -1;
}

size_t dns_msg_finish(struct dns_msg *m, const struct dns_ecs *ecs, uint8_t ecs_scope,
                      const struct dns_path *path)
{
    uint16_t flags = get16(m->buf + 2), ar;

    if (m->truncated) {
        /* Back to header and question: the client retries over TCP. */
        size_t qend = DNS_HDR_LEN;

        if (get16(m->buf + 4) == 1)
            qend += dns_name_len(m->buf + DNS_HDR_LEN) + 4;
        m->len = qend;
        m->count[0] = m->count[1] = m->count[2] = 0;
        m->ncomp = get16(m->buf + 4) == 1;
        flags |= DNS_F_TC;
    }
    ar = m->count[DNS_SEC_AR];
    if (m->edns && m->len <= m->cap && m->cap - m->len >= OPT_FIXED) {
        uint8_t *opt = m->buf + m->len;
        size_t rdstart = m->len + OPT_FIXED, n;

        opt[0] = 0;
        put16(opt + 1, DNS_T_OPT);
        put16(opt + 3, m->udp_size);
        put32(opt + 5, (uint32_t)(m->ext_rcode >> 4) << 24 | (m->dnssec_ok ? 0x8000u : 0));
        m->len = rdstart;
        if (ecs != NULL && (n = ecs_opt_len(ecs)) != 0 && n <= m->cap - m->len) {
            ecs_write(m->buf + m->len, ecs, ecs_scope);
            m->len += n;
        }
        if (path != NULL && (n = path_opt_len(path)) != 0 && n <= m->cap - m->len) {
            path_write(m->buf + m->len, path, n);
            m->len += n;
        }
        put16(opt + 9, (uint16_t)(m->len - rdstart));
        ar++;
    }
    put16(m->buf + 2, flags);
    put16(m->buf + 6, m->count[DNS_SEC_AN]);
    put16(m->buf + 8, m->count[DNS_SEC_NS]);
    put16(m->buf + 10, ar);
    return m->len;
}

/* ---- the client side ---- */

int dns_write_query(uint8_t *buf, size_t cap, uint16_t id, const uint8_t *name, uint16_t qtype,
                    uint16_t udp_size, const struct dns_ecs *ecs, const struct dns_path *path)
{
    int nlen = name_check(name, DNS_MAX_NAME);
    size_t ecs_len = 0, path_len = 0, need, p;

    if (nlen < 0)
        return -1;
    if (ecs != NULL && (ecs_len = ecs_opt_len(ecs)) == 0)
        return -1;
    if (path != NULL && (path_len = path_opt_len(path)) == 0)
        return -1;
    need = DNS_HDR_LEN + (size_t)nlen + 4 + OPT_FIXED + ecs_len + path_len;
    if (need > cap)
        return -1;
    put16(buf, id);
    put16(buf + 2, 0);
    put16(buf + 4, 1);
    put16(buf + 6, 0);
    put16(buf + 8, 0);
    put16(buf + 10, 1);
    memcpy(buf + DNS_HDR_LEN, name, (size_t)nlen);
    p = DNS_HDR_LEN + (size_t)nlen;
    put16(buf + p, qtype);
    put16(buf + p + 2, DNS_C_IN);
    p += 4;
    buf[p] = 0;
    put16(buf + p + 1, DNS_T_OPT);
    put16(buf + p + 3, udp_size);
    put32(buf + p + 5, 0);
    put16(buf + p + 9, (uint16_t)(ecs_len + path_len));
    p += OPT_FIXED;
    if (ecs != NULL) {
        ecs_write(buf + p, ecs, 0);
        p += ecs_len;
    }
    if (path != NULL) {
        path_write(buf + p, path, path_len);
        p += path_len;
    }
    return (int)p;
}

/*
 * Checks rdata that the client reads: names in NS/CNAME/PTR (decompressed
 * into target when it is not NULL) and the fixed sizes of IN A and AAAA.
 * Returns 0 or -1.
 */
static int check_rdata(const uint8_t *pkt, size_t len, size_t rdpos, uint16_t type,
                       uint16_t rclass, uint16_t rdlen, uint8_t *target)
{
    size_t p = rdpos;

    switch (type) {
    case DNS_T_NS:
    case DNS_T_CNAME:
    case DNS_T_PTR:
        if (read_name(pkt, len, &p, target) < 0 || p != rdpos + rdlen)
            return -1;
        return 0;
    case DNS_T_A:
        return rclass == DNS_C_IN && rdlen != 4 ? -1 : 0;
    case DNS_T_AAAA:
        return rclass == DNS_C_IN && rdlen != 16 ? -1 : 0;
    default:
        return 0;
    }
}

/* Decodes the options of a response's OPT: only ECS matters. */
static int response_opt(struct dns_response *r, const uint8_t *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        uint16_t code, olen;

        if (n - i < 4)
            return -1;
        code = get16(p + i);
        olen = get16(p + i + 2);
        i += 4;
        if (olen > n - i)
            return -1;
        if (code == DNS_OPT_ECS) {
            if (r->has_ecs || ecs_read(&r->ecs, p + i, olen, 0) < 0)
                return -1;
            r->has_ecs = 1;
        }
        i += olen;
    }
    return 0;
}

int dns_response_parse(struct dns_response *r, const uint8_t *pkt, size_t len, uint16_t id,
                       const uint8_t *qname, uint16_t qtype)
{
    uint8_t name[DNS_MAX_NAME];
    unsigned i, nrr;
    size_t pos = DNS_HDR_LEN, start;
    int opts = 0;

    r->pkt = pkt;
    r->len = len;
    r->has_ecs = 0;
    r->seen = 0;
    r->rr_start = r->pos = len;
    r->count[0] = r->count[1] = r->count[2] = 0;
    if (len < DNS_HDR_LEN)
        return -1;
    r->id = get16(pkt);
    r->flags = get16(pkt + 2);
    r->rcode = r->flags & 0xf;
    if (r->id != id || !(r->flags & DNS_F_QR) || DNS_OPCODE(r->flags) != 0
        || get16(pkt + 4) != 1)
        return -1;

    if (read_name(pkt, len, &pos, name) < 0 || !dns_name_equal(name, qname) || len - pos < 4
        || get16(pkt + pos) != qtype || get16(pkt + pos + 2) != DNS_C_IN)
        return -1;
    pos += 4;
    start = pos;

    /* The first pass: every record is checked, the OPT is read. */
    nrr = (unsigned)get16(pkt + 6) + get16(pkt + 8) + get16(pkt + 10);
    for (i = 0; i < nrr; i++) {
        uint16_t type, rclass, rdlen;
        int owner_len = read_name(pkt, len, &pos, NULL);

        if (owner_len < 0 || len - pos < 10)
            return -1;
        type = get16(pkt + pos);
        rclass = get16(pkt + pos + 2);
        rdlen = get16(pkt + pos + 8);
        if (rdlen > len - pos - 10)
            return -1;
        if (type == DNS_T_OPT) {
            if (i < (unsigned)get16(pkt + 6) + get16(pkt + 8) || owner_len != 1 || opts++ > 0
                || response_opt(r, pkt + pos + 10, rdlen) < 0)
                return -1;
            r->rcode |= (int)(pkt[pos + 4] << 4);
        } else if (check_rdata(pkt, len, pos + 10, type, rclass, rdlen, NULL) < 0) {
            return -1;
        }
        pos += 10 + (size_t)rdlen;
    }
    r->count[0] = get16(pkt + 6);
    r->count[1] = get16(pkt + 8);
    r->count[2] = get16(pkt + 10);
    r->rr_start = r->pos = start;
    return 0;
}

int dns_response_next(struct dns_response *r, struct dns_rr *rr)
{
    unsigned an = r->count[0], ns = r->count[1], total = an + ns + r->count[2];

    while (r->seen < total) {
        size_t pos = r->pos;
        uint16_t type, rclass, rdlen;

        if (read_name(r->pkt, r->len, &pos, rr->owner) < 0 || r->len - pos < 10)
            return -1;
        type = get16(r->pkt + pos);
        rclass = get16(r->pkt + pos + 2);
        rdlen = get16(r->pkt + pos + 8);
        if (rdlen > r->len - pos - 10)
            return -1;
        if (type != DNS_T_OPT) {
            rr->target[0] = 0;
            if (check_rdata(r->pkt, r->len, pos + 10, type, rclass, rdlen, rr->target) < 0)
                return -1;
            rr->sec = r->seen < an ? DNS_SEC_AN : r->seen < an + ns ? DNS_SEC_NS : DNS_SEC_AR;
            rr->type = type;
            rr->rclass = rclass;
            rr->ttl = get32(r->pkt + pos + 4);
            rr->rdlen = rdlen;
            rr->rdata = r->pkt + pos + 10;
        }
        r->seen++;
        r->pos = pos + 10 + rdlen;
        if (type != DNS_T_OPT)
            return 1;
    }
    return 0;
}
