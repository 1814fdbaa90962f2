/*
 * dns/wire -- the DNS message format (RFC 1035, RFC 6891 EDNS0, RFC 7871
 * Client Subnet) as the router needs it: parse a query, write a response
 * with name compression and truncation, and the client side of "modified
 * DNS" hand-offs (write a query, read the answer of a peer's router).
 *
 * Pure and socket-free: every function works on caller-owned byte
 * buffers, allocates nothing and keeps no state between calls, so it is
 * safe from any thread. The parsers never read outside [pkt, pkt + len),
 * never follow more compression pointers than a message can legally hold,
 * and only ever point back to earlier bytes, so no input loops them.
 *
 * Names are kept in wire form (length-prefixed labels, ending with the
 * zero-length root label), lowercased when this module produced them.
 * Comparisons are case-insensitive for ASCII letters (RFC 4343); answers
 * echo the question's name exactly as the client wrote it.
 *
 * The Ferry path option (EDNS option code DNS_OPT_FERRY_PATH, from the
 * local/experimental range of RFC 6891 section 9) carries the CDN ids a
 * query has already passed through, so a router never hands a client back
 * to a CDN already in the chain. docs/router.md ("The Ferry path option") specifies it.
 */
#ifndef FERRY_DNS_WIRE_H
#define FERRY_DNS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define DNS_HDR_LEN 12
#define DNS_MAX_NAME 255        /* bytes of a wire name, root label included */
#define DNS_MAX_LABEL 63
#define DNS_MAX_UDP 65535
#define DNS_MIN_UDP 512         /* without EDNS, and the floor with it */
#define DNS_MAX_PATH 8          /* CDN ids in one path option */
#define DNS_MAX_CDN_ID 32       /* bytes of one CDN id */

/* Types, classes, rcodes, options. */
enum {
    DNS_T_A = 1, DNS_T_NS = 2, DNS_T_CNAME = 5, DNS_T_SOA = 6, DNS_T_PTR = 12,
    DNS_T_MX = 15, DNS_T_TXT = 16, DNS_T_AAAA = 28, DNS_T_OPT = 41,
    DNS_T_IXFR = 251, DNS_T_AXFR = 252, DNS_T_ANY = 255,
};
enum { DNS_C_IN = 1, DNS_C_CH = 3, DNS_C_ANY = 255 };
enum {
    DNS_RC_NOERROR = 0, DNS_RC_FORMERR = 1, DNS_RC_SERVFAIL = 2, DNS_RC_NXDOMAIN = 3,
    DNS_RC_NOTIMP = 4, DNS_RC_REFUSED = 5,
    DNS_RC_BADVERS = 16, /* extended: needs an OPT record to be expressed */
};
enum { DNS_OPT_ECS = 8, DNS_OPT_COOKIE = 10, DNS_OPT_FERRY_PATH = 65350 };

/* Header flag bits, in the 16-bit flags word after the id. */
#define DNS_F_QR 0x8000u
#define DNS_F_AA 0x0400u
#define DNS_F_TC 0x0200u
#define DNS_F_RD 0x0100u
#define DNS_F_RA 0x0080u
#define DNS_F_AD 0x0020u
#define DNS_F_CD 0x0010u
#define DNS_OPCODE(flags) (((flags) >> 11) & 0xfu)

/* Result of dns_parse_query() besides an rcode. */
#define DNS_PARSE_DROP (-1)  /* no answer at all: a response, or no whole header */

/* The client subnet of RFC 7871: family 1 (IPv4) or 2 (IPv6). */
struct dns_ecs {
    uint16_t family;
    uint8_t source;          /* SOURCE PREFIX-LENGTH */
    uint8_t scope;           /* SCOPE PREFIX-LENGTH */
    uint8_t addr[16];        /* the address, bits past `source` are zero */
};

/* The CDN ids a request has passed through, oldest first. */
struct dns_path {
    uint8_t n;
    uint8_t len[DNS_MAX_PATH];
    char id[DNS_MAX_PATH][DNS_MAX_CDN_ID + 1]; /* NUL-terminated */
};

struct dns_query {
    uint16_t id;
    uint16_t flags;          /* as received */
    uint16_t qtype, qclass;
    const uint8_t *qname;    /* points into the packet: the name as written */
    uint8_t qname_len;       /* bytes of the wire name, root label included */
    uint8_t lname[DNS_MAX_NAME]; /* the same name, lowercased */
    uint8_t nlabels;         /* labels before the root */
    size_t question_end;     /* offset just past the question; 0 (and qname
                                NULL) when the query had no whole question */

    /* EDNS0 */
    int edns;                /* an OPT record was present */
    uint8_t edns_version;
    int dnssec_ok;
    uint16_t udp_size;       /* requestor's payload size, clamped to >= 512 */
    int has_ecs;
    struct dns_ecs ecs;
    int has_path;
    struct dns_path path;
    int has_cookie;
    uint8_t cookie[40];      /* client cookie (8) + server cookie (8..32) */
    uint8_t cookie_len;
};

/*
 * Parses a query. Returns DNS_RC_NOERROR when `q` describes a well-formed
 * standard query to answer; DNS_RC_FORMERR, DNS_RC_NOTIMP (an opcode other
 * than QUERY) or DNS_RC_BADVERS (EDNS version above 0) when the caller
 * should answer with that rcode (dns_msg_init copies whatever of the query
 * was parsed: id, and the question if it was whole); DNS_PARSE_DROP when
 * nothing should be sent (QR set, or fewer than 12 bytes).
 * FORMERR cases: QDCOUNT != 1, a bad name (label > 63, name > 255 bytes,
 * a compression pointer in the question, a reserved label type), answer or
 * authority records in a query, more than one OPT, an OPT not owned by the
 * root, a malformed ECS (family other than 1/2, source beyond the family's
 * width, address bytes != ceil(source/8), non-zero bits past source, a
 * non-zero scope), a malformed path option, or trailing garbage.
 * Also FORMERR: a cookie option whose length is not 8 or 16..40 (RFC 7873
 * section 5.2.2), and an ECS, cookie or path option given twice.
 * `edns` is set whenever the query had exactly one OPT record, in the
 * additional section and owned by the root, even when the answer is
 * FORMERR because of its options, so the response carries an OPT as RFC
 * 6891 section 7 asks. The options of an OPT with a version above 0 are
 * not interpreted.
 */
int dns_parse_query(const uint8_t *pkt, size_t len, struct dns_query *q);

/* ---- writing a message ------------------------------------------------ */

enum dns_section { DNS_SEC_AN = 0, DNS_SEC_NS = 1, DNS_SEC_AR = 2 };

#define DNS_COMP_MAX 32          /* names remembered for compression */

struct dns_msg {
    uint8_t *buf;
    size_t cap;                  /* hard limit: the UDP payload size, or 65535 */
    size_t len;
    uint16_t count[3];           /* AN, NS, AR */
    int truncated;               /* an answer record did not fit: TC was set */
    uint8_t ncomp;
    uint16_t comp[DNS_COMP_MAX]; /* offsets of names written, for pointers */
    size_t opt_reserve;          /* bytes kept free for the OPT record; the
                                    caller may raise it before adding records */
    int edns;                    /* write an OPT record in dns_msg_finish */
    uint16_t ext_rcode;          /* rcode, possibly > 15 */
    uint16_t udp_size;           /* payload size the OPT record advertises */
    int dnssec_ok;               /* the query's DO bit, copied (RFC 3225) */
};

/*
 * Starts a response to `q` in buf[0..cap): copies the id, the RD and CD
 * bits and the opcode, sets QR, AA when `aa`, the rcode (its low 4 bits; the
 * rest goes to the OPT record), and copies the question as the client wrote
 * it when the query had a whole one. When the query had EDNS, the response
 * gets an OPT record (written by dns_msg_finish) whose room is reserved now,
 * advertising `our_udp_size`. cap must be >= 512. Returns 0, or -1 when even
 * the header and question do not fit (never for cap >= 512 and a parsed
 * query).
 * The caller picks cap: 512 over UDP without EDNS, the smaller of the
 * requestor's and our payload size with it, 65535 over TCP. The OPT room
 * reserved covers the fixed part, an echo of the query's ECS and the query's
 * path plus one more id, as far as cap allows. An rcode above 15 without
 * EDNS cannot be expressed and becomes SERVFAIL. buf may be the query's own
 * buffer (the question is moved, not copied).
 */
int dns_msg_init(struct dns_msg *m, uint8_t *buf, size_t cap, const struct dns_query *q,
                 int rcode, int aa, uint16_t our_udp_size);

/*
 * Appends a resource record. `owner` is a wire name; it is compressed
 * against names already written (case-insensitively). For NS, CNAME and
 * PTR, `rdata` is a wire name and is compressed too; for SOA, rdata is
 * MNAME, RNAME (wire names, compressed) and the five 32-bit fields; any
 * other type's rdata is copied as is.
 * Returns 0, or -1 when the record does not fit in cap (minus the OPT
 * reserve): the message is left as before the call. When that happens in
 * the answer or authority section, `truncated` is set and the TC bit will
 * be set by dns_msg_finish; records of the additional section are simply
 * left out (RFC 2181 section 9).
 * Records go in section order (answer, authority, additional). A record
 * for an earlier section than one already written, an OPT record, an
 * invalid owner, or NS/CNAME/PTR/SOA rdata that is not exactly the names
 * described, returns -1 without touching `truncated`; so does any add once
 * the message is truncated.
 */
int dns_msg_add(struct dns_msg *m, enum dns_section sec, const uint8_t *owner, uint16_t type,
                uint16_t rclass, uint32_t ttl, const uint8_t *rdata, uint16_t rdlen);

/*
 * Writes the section counts, the TC bit and the OPT record (payload size,
 * extended rcode, version 0, the query's DO bit copied as RFC 3225 section
 * 3 requires, and the options given: ECS echoed with `ecs_scope` when `ecs`
 * is non-NULL, the path when `path` is non-NULL and non-empty).
 * When a message was truncated the answer, authority and additional
 * sections are dropped entirely (only header, question and OPT stay), so a
 * client sees TC and retries over TCP. An option that is invalid or does not
 * fit in cap is left out. Call it once. Returns the message length.
 */
size_t dns_msg_finish(struct dns_msg *m, const struct dns_ecs *ecs, uint8_t ecs_scope,
                      const struct dns_path *path);

/* ---- the client side: asking a peer's router ---------------------------- */

/*
 * Writes a query for (name, qtype, IN) with RD clear, EDNS0 with payload
 * size `udp_size`, the given ECS (scope 0) and path options when non-NULL.
 * Returns the length, or -1 when cap is too small.
 */
int dns_write_query(uint8_t *buf, size_t cap, uint16_t id, const uint8_t *name, uint16_t qtype,
                    uint16_t udp_size, const struct dns_ecs *ecs, const struct dns_path *path);

/* One resource record of a parsed response; names are decompressed. */
struct dns_rr {
    enum dns_section sec;
    uint8_t owner[DNS_MAX_NAME]; /* lowercased wire name */
    uint16_t type, rclass;
    uint32_t ttl;
    uint16_t rdlen;              /* of rdata as in the packet */
    const uint8_t *rdata;        /* points into the packet */
    uint8_t target[DNS_MAX_NAME];/* NS/CNAME/PTR: the decompressed name; else empty */
};

struct dns_response {
    const uint8_t *pkt;
    size_t len;
    uint16_t id, flags;
    uint16_t count[3];
    int rcode;                   /* including the extended bits when OPT was present */
    int has_ecs;
    struct dns_ecs ecs;          /* from the response's OPT, scope included */
    size_t rr_start;             /* offset of the first answer record */
    size_t pos;                  /* iterator state */
    unsigned seen;               /* records returned so far */
};

/*
 * Parses a response header and question, and checks that it answers
 * (id, name, qtype): returns 0 or -1 (malformed, or not an answer to this
 * question). Then dns_response_next() returns each record of the answer,
 * authority and additional sections in turn (1), 0 at the end, -1 on a
 * malformed record. The OPT record is consumed and not returned.
 * dns_response_parse reads the OPT record in its first pass, so has_ecs
 * and the extended rcode are known before iterating.
 * That pass checks every record, so after a 0 from dns_response_parse
 * dns_response_next does not fail. Malformed: a record or name outside the
 * packet, a bad compression pointer, more than one OPT, an OPT outside the
 * additional section or not owned by the root, a malformed ECS option,
 * NS/CNAME/PTR rdata that is not exactly one name, IN A/AAAA rdata that is
 * not 4/16 bytes. Bytes after the last record are ignored.
 */
int dns_response_parse(struct dns_response *r, const uint8_t *pkt, size_t len, uint16_t id,
                       const uint8_t *qname, uint16_t qtype);
int dns_response_next(struct dns_response *r, struct dns_rr *rr);

/* ---- names --------------------------------------------------------------- */

/*
 * Text to lowercased wire form: "www.Example.test" or "www.example.test."
 * ("." alone is the root). No escapes are accepted; labels are 1..63 bytes
 * of letters, digits, '-', '_' and '*'. Returns the wire length, or -1.
 */
int dns_name_from_text(uint8_t out[DNS_MAX_NAME], const char *text);

/* Wire form to text without the final dot ("." for the root); returns the
 * text length or -1 when `cap` is too small. Bytes outside [!-~] and '.' or
 * '\\' inside labels are written as \DDD. */
int dns_name_to_text(char *out, size_t cap, const uint8_t *name);

/* Wire length of a valid uncompressed name (root label included); 0 when
 * name is not one (a compression pointer, a reserved label type, > 255). */
size_t dns_name_len(const uint8_t *name);

/* Case-insensitive equality of two wire names. */
int dns_name_equal(const uint8_t *a, const uint8_t *b);

/*
 * When `name` equals `zone` or lies below it, returns the number of labels
 * of `name` in front of the zone (0 for the apex); otherwise -1.
 */
int dns_name_under(const uint8_t *name, const uint8_t *zone);

/* Writes the textual name of a type ("A", "AAAA", or "TYPE65") into out. */
const char *dns_type_name(uint16_t type, char out[12]);

#endif
