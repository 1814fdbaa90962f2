/*
 * http1 -- strict, incremental, zero-copy HTTP/1.1 head parser and chunked
 * body decoder (RFC 9112 sections 2-7, RFC 9110 section 5.5 and 5.6).
 *
 * Data flow. The connection layer appends received bytes to its buffer and
 * calls http1_parse_request (or http1_parse_response on the origin side)
 * with everything it holds. The parser walks the buffer once, from the
 * first byte, filling a struct http1_msg whose strings point into that
 * buffer. It keeps no state between calls: "incomplete" (0) means "call me
 * again with the same bytes plus more". Once a head is complete the caller
 * drives the body from msg->body: for HTTP1_BODY_CHUNKED it hands the bytes
 * after the head to http1_chunked_feed, which returns the body data as
 * slices of its input and reports where the message ends.
 *
 * Strictness. Ferry sits at the edge and forwards requests to origins that
 * parse differently, so every ambiguity an attacker could use to make two
 * parsers disagree on where a message ends is an error here:
 *   - Every line must end in CRLF. A bare LF (accepted by RFC 9112 2.2 as a
 *     "MAY") is rejected, and so is a CR not followed by LF. There is no
 *     lenient mode.
 *   - Up to H1_MAX_EMPTY_LINES empty lines before a request line are skipped
 *     (RFC 9112 2.2); more is an error. Responses get no such allowance: an
 *     origin that sends stray CRLFs has miscounted its own body.
 *   - The request line is exactly method SP target SP version: single
 *     spaces, a token method, a non-empty target of visible ASCII
 *     (0x21-0x7e; raw non-ASCII bytes are refused because origins disagree
 *     on how to normalize them).
 *   - obs-fold, whitespace before the colon and non-token bytes in a field
 *     name are errors; a field value may hold SP, HTAB, VCHAR and obs-text,
 *     nothing else.
 *   - Content-Length must be one field of plain digits no larger than
 *     2^63-1. A second Content-Length field is an error even if it repeats
 *     the same value, and so is a list such as "5, 5".
 *   - Transfer-Encoding (all its fields taken as one list) must end in
 *     "chunked", name "chunked" exactly once and have no empty elements.
 *     A request failing that gets HTTP1_E_TE (501); a request with both
 *     Transfer-Encoding and Content-Length, or with Transfer-Encoding in
 *     HTTP/1.0 (RFC 9112 6.1 says such framing is faulty), gets
 *     HTTP1_E_SMUGGLE. A response failing it is read to EOF (RFC 9112 6.3
 *     rule 4); a response with both uses chunked and sets te_and_cl.
 *   - An HTTP/1.1 request needs exactly one Host field, an HTTP/1.0 request
 *     at most one; its value may only hold the characters of RFC 3986
 *     host [ ":" port ]. Whether an absolute-form target agrees with Host is
 *     left to the caller, which must prefer the target (RFC 9112 3.2.2).
 *
 * Cost. A call is one pass over the head with a 256-entry class table per
 * byte and no calls per byte. Because the interface carries no resume
 * state, a head that arrives in k pieces is scanned k times; callers should
 * read in large pieces and call again only after new bytes arrive. The
 * scan never looks past max_head_bytes, which bounds each pass.
 */
#include "http/http1.h"

#include <limits.h>
#include <string.h>

/* Empty lines tolerated before a request line; more smells of an attack. */
#define H1_MAX_EMPTY_LINES 8

/* Largest Content-Length or chunk size accepted: 2^63 - 1, so that any
 * length fits an off_t and a signed 64-bit counter in callers. */
#define H1_MAX_LENGTH UINT64_C(0x7fffffffffffffff)

/* Byte classes. A byte may be in several classes at once. */
enum {
    C_TOKEN = 0x01, /* tchar, RFC 9110 5.6.2: method, field name, coding */
    C_VCHAR = 0x02, /* visible ASCII 0x21-0x7e: request target */
    C_FIELD = 0x04, /* field-value byte: SP, HTAB, VCHAR, obs-text */
    C_HOST = 0x08,  /* RFC 3986 reg-name, IP-literal, ":" port */
    C_HEX = 0x10,   /* HEXDIG, chunk size */
};

#define ___ 0
#define FLD C_FIELD
#define VIS (C_VCHAR | C_FIELD)
#define TOK (C_TOKEN | C_VCHAR | C_FIELD)
#define HST (C_VCHAR | C_FIELD | C_HOST)
#define ALN (C_TOKEN | C_VCHAR | C_FIELD | C_HOST)
#define HEX (ALN | C_HEX)

static const unsigned char h1_class[256] = {
    /* 00 */ ___, ___, ___, ___, ___, ___, ___, ___,
    /* 08 */ ___, FLD, ___, ___, ___, ___, ___, ___,
    /* 10 */ ___, ___, ___, ___, ___, ___, ___, ___,
    /* 18 */ ___, ___, ___, ___, ___, ___, ___, ___,
    /* 20 */ FLD, ALN, VIS, TOK, ALN, ALN, ALN, ALN, /*  !"#$%&' */
    /* 28 */ HST, HST, ALN, ALN, HST, ALN, ALN, VIS, /* ()*+,-./ */
    /* 30 */ HEX, HEX, HEX, HEX, HEX, HEX, HEX, HEX, /* 01234567 */
    /* 38 */ HEX, HEX, HST, HST, VIS, HST, VIS, VIS, /* 89:;<=>? */
    /* 40 */ VIS, HEX, HEX, HEX, HEX, HEX, HEX, ALN, /* @ABCDEFG */
    /* 48 */ ALN, ALN, ALN, ALN, ALN, ALN, ALN, ALN, /* HIJKLMNO */
    /* 50 */ ALN, ALN, ALN, ALN, ALN, ALN, ALN, ALN, /* PQRSTUVW */
    /* 58 */ ALN, ALN, ALN, HST, VIS, HST, TOK, ALN, /* XYZ[\]^_ */
    /* 60 */ TOK, HEX, HEX, HEX, HEX, HEX, HEX, ALN, /* `abcdefg */
    /* 68 */ ALN, ALN, ALN, ALN, ALN, ALN, ALN, ALN, /* hijklmno */
    /* 70 */ ALN, ALN, ALN, ALN, ALN, ALN, ALN, ALN, /* pqrstuvw */
    /* 78 */ ALN, ALN, ALN, VIS, TOK, VIS, ALN, ___, /* xyz{|}~ DEL */
    /* 80 */ FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD,
    /* 90 */ FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD,
    /* a0 */ FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD,
    /* b0 */ FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD,
    /* c0 */ FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD,
    /* d0 */ FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD,
    /* e0 */ FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD,
    /* f0 */ FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD, FLD,
};

#undef ___
#undef FLD
#undef VIS
#undef TOK
#undef HST
#undef ALN
#undef HEX

static inline int h1_is(unsigned char ch, unsigned cls)
{
    return (h1_class[ch] & cls) != 0;
}

static inline unsigned char h1_lower(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') ? (unsigned char)(ch + ('a' - 'A')) : ch;
}

/* Case-insensitive compare of s[0..n) with lit[0..n). lit may be any case. */
static int h1_ieq(const char *s, const char *lit, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (h1_lower((unsigned char)s[i]) != h1_lower((unsigned char)lit[i]))
            return 0;
    return 1;
}

static inline int h1_ows(unsigned char ch)
{
    return ch == ' ' || ch == '\t';
}

/*
 * Word-at-a-time scanning. Field values and targets are most of a head's
 * bytes (cookies, user agents, long URLs), so they are checked eight bytes
 * per step with the classic SWAR tests, and only a word that may hold a
 * stop byte goes through the exact byte-by-byte class table. The tests
 * never miss a byte they look for; they may flag extra bytes above a real
 * hit, which only costs the byte loop a look.
 */
#define H1_ONES UINT64_C(0x0101010101010101)
#define H1_HIGHS UINT64_C(0x8080808080808080)

static inline uint64_t h1_load64(const unsigned char *p)
{
    uint64_t x;

    memcpy(&x, p, sizeof(x)); /* an unaligned load on every target we run on */
    return x;
}

/* Nonzero if some byte of x is below n (1 <= n <= 0x21 here). */
static inline uint64_t h1_has_below(uint64_t x, unsigned n)
{
    return (x - H1_ONES * n) & ~x & H1_HIGHS;
}

/* Nonzero if some byte of x equals b. */
static inline uint64_t h1_has_byte(uint64_t x, unsigned char b)
{
    uint64_t y = x ^ (H1_ONES * b);

    return (y - H1_ONES) & ~y & H1_HIGHS;
}

/*
 * Returns the first byte in [p, end) outside class cls, or end. cls is
 * C_FIELD (stop candidates: CTLs, which include HTAB, and DEL) or C_VCHAR
 * (stop candidates: CTLs, SP, DEL and bytes >= 0x80); the byte loop has the
 * final word, so HTAB in a value merely slows that word down.
 */
static inline const unsigned char *h1_span(const unsigned char *p, const unsigned char *end,
                                           unsigned cls)
{
    for (;;) {
        const unsigned char *stop;

        while (end - p >= 8) {
            uint64_t x = h1_load64(p);
            uint64_t hit = cls == C_FIELD ? h1_has_below(x, 0x20) | h1_has_byte(x, 0x7f)
                                          : h1_has_below(x, 0x21) | h1_has_byte(x, 0x7f) |
                                                (x & H1_HIGHS);

            if (hit)
                break;
            p += 8;
        }
        stop = end - p > 8 ? p + 8 : end;
        while (p < stop && h1_is(*p, cls))
            p++;
        if (p != stop || p == end)
            return p;
    }
}

void http1_limits_default(struct http1_limits *lim)
{
    lim->max_head_bytes = 16384;
    lim->max_headers = 100;
    lim->max_target_bytes = 8192;
}

/*
 * What the field lines said about framing and the connection, gathered
 * while the fields are parsed and turned into msg->body and friends once
 * the head is complete.
 */
struct h1_sem {
    unsigned n_cl;       /* Content-Length fields seen */
    unsigned te_seen;    /* any Transfer-Encoding field seen */
    unsigned te_chunked; /* "chunked" elements across all TE fields */
    unsigned te_last_chunked; /* the latest TE element was "chunked" */
    unsigned te_bad;     /* an empty TE element */
    unsigned conn_close; /* Connection lists "close" */
    unsigned conn_keep;  /* Connection lists "keep-alive" */
    unsigned expect_100; /* Expect lists "100-continue" */
};

/* Content-Length: 1*DIGIT, at most H1_MAX_LENGTH, and only once. */
static int h1_content_length(struct http1_msg *msg, struct h1_sem *sem, const unsigned char *v,
                             size_t n)
{
    uint64_t cl = 0;

    /* Two fields are refused even when they agree: the header allows a
     * recipient to merge identical values, but a front end that merges and
     * a back end that takes the last field disagree as soon as one of them
     * is altered in transit, and no honest client sends two. */
    if (sem->n_cl++ > 0 || n == 0)
        return HTTP1_E_SMUGGLE;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)v[i] - '0';

        if (d > 9 || cl > (H1_MAX_LENGTH - d) / 10)
            return HTTP1_E_SMUGGLE;
        cl = cl * 10 + d;
    }
    msg->content_length = cl;
    return 1;
}

/* Walks one Transfer-Encoding field's list of codings. The verdict is
 * drawn after the last field, since several fields form one list. */
static void h1_transfer_encoding(struct h1_sem *sem, const unsigned char *v, size_t n)
{
    const unsigned char *p = v, *end = v + n;

    sem->te_seen = 1;
    for (;;) {
        const unsigned char *s, *e;

        while (p < end && h1_ows(*p))
            p++;
        s = p;
        while (p < end && *p != ',')
            p++;
        e = p;
        while (e > s && h1_ows(e[-1]))
            e--;
        /* An empty element is legal list syntax but has no business in
         * framing: "chunked," read by a sloppy parser may not be chunked. */
        if (e == s)
            sem->te_bad = 1;
        /* Only the bare coding counts: "chunked;x=y" is some other
         * coding as far as framing goes and leaves the body undelimited. */
        sem->te_last_chunked = (e - s == 7 && h1_ieq((const char *)s, "chunked", 7));
        sem->te_chunked += sem->te_last_chunked;
        if (p == end)
            break;
        p++; /* the comma */
    }
}

/* A Transfer-Encoding list that frames a body with a single, final chunked. */
static int h1_te_is_chunked(const struct h1_sem *sem)
{
    return sem->te_seen && !sem->te_bad && sem->te_chunked == 1 && sem->te_last_chunked;
}

/*
 * Records the semantics of one field line. Field names are dispatched on
 * length first so the common, uninteresting fields cost one switch.
 * Returns 1, or a negative http1_err for a field that is wrong on its own.
 */
static int h1_field(struct http1_msg *msg, struct h1_sem *sem, int is_request,
                    const struct http1_hdr *h)
{
    const unsigned char *v = (const unsigned char *)h->value;

    switch (h->name_len) {
    case 4:
        if (h1_ieq(h->name, "host", 4)) {
            if (msg->n_host++ == 0) {
                msg->host = h->value;
                msg->host_len = h->value_len;
            }
            /* The host picks a cache key and an origin; refuse anything
             * that is not an authority so that "a/b", "a@b" or spaces
             * cannot steer either. */
            if (is_request)
                for (size_t i = 0; i < h->value_len; i++)
                    if (!h1_is(v[i], C_HOST))
                        return HTTP1_E_SYNTAX;
        }
        break;
    case 6:
        if (h1_ieq(h->name, "expect", 6) && http1_list_has(h->value, h->value_len, "100-continue"))
            sem->expect_100 = 1;
        break;
    case 10:
        if (h1_ieq(h->name, "connection", 10)) {
            if (http1_list_has(h->value, h->value_len, "close"))
                sem->conn_close = 1;
            if (http1_list_has(h->value, h->value_len, "keep-alive"))
                sem->conn_keep = 1;
        }
        break;
    case 14:
        if (h1_ieq(h->name, "content-length", 14))
            return h1_content_length(msg, sem, v, h->value_len);
        break;
    case 17:
        if (h1_ieq(h->name, "transfer-encoding", 17))
            h1_transfer_encoding(sem, v, h->value_len);
        break;
    default:
        break;
    }
    return 1;
}

/*
 * Parses "HTTP/" DIGIT "." DIGIT at p, which has end - p bytes available.
 * Returns 1 with *minor set, 0 if the bytes so far are a valid prefix,
 * HTTP1_E_SYNTAX if they cannot become a version, HTTP1_E_VERSION for a
 * well-formed version other than 1.0 and 1.1.
 */
static int h1_version(const unsigned char *p, const unsigned char *end, int *minor)
{
    static const char pat[] = "HTTP/1.1";
    size_t avail = (size_t)(end - p);
    size_t n = avail < 8 ? avail : 8;

    /* Check what we have so that a wrong protocol fails at once instead of
     * waiting for a line end that may never come. */
    for (size_t i = 0; i < n; i++) {
        if (i == 5 || i == 7) {
            if (p[i] < '0' || p[i] > '9')
                return HTTP1_E_SYNTAX;
        } else if (p[i] != (unsigned char)pat[i]) {
            return HTTP1_E_SYNTAX;
        }
    }
    if (avail < 8)
        return 0;
    if (p[5] != '1' || p[7] > '1')
        return HTTP1_E_VERSION;
    *minor = p[7] - '0';
    return 1;
}

/*
 * Expects CRLF at *pp. Returns 1 and steps over it, 0 if the buffer ends
 * first, HTTP1_E_SYNTAX for anything else (a bare CR or LF included).
 */
static int h1_crlf(const unsigned char **pp, const unsigned char *end)
{
    const unsigned char *p = *pp;

    if (p == end)
        return 0;
    if (*p != '\r')
        return HTTP1_E_SYNTAX;
    if (p + 1 == end)
        return 0;
    if (p[1] != '\n')
        return HTTP1_E_SYNTAX;
    *pp = p + 2;
    return 1;
}

/* Request line: method SP request-target SP HTTP-version CRLF (RFC 9112 3). */
static int h1_request_line(const unsigned char **pp, const unsigned char *end,
                           const struct http1_limits *lim, struct http1_msg *msg)
{
    const unsigned char *p = *pp, *s, *stop;
    int rc;

    /* RFC 9112 2.2: skip a few empty lines left over from a previous
     * message; a client sending many is probing, not recovering. */
    for (unsigned n = 0;; n++) {
        if (p == end)
            return 0;
        if (*p != '\r')
            break;
        if (n == H1_MAX_EMPTY_LINES)
            return HTTP1_E_SYNTAX;
        if ((rc = h1_crlf(&p, end)) <= 0)
            return rc;
    }

    s = p;
    while (p < end && h1_is(*p, C_TOKEN))
        p++;
    if (p == end)
        return 0;
    /* A line that stops after the method (or a stray LF) is a broken
     * request line; any other byte means the method is not a token. */
    if (*p == '\r' || *p == '\n')
        return HTTP1_E_SYNTAX;
    if (*p != ' ' || p == s)
        return HTTP1_E_METHOD;
    msg->method = (const char *)s;
    msg->method_len = (size_t)(p - s);
    p++;

    /* Scan at most one byte past the target limit so that a huge target
     * is refused with 414 as soon as it is known, not after the whole
     * head limit has been read. */
    s = p;
    stop = (size_t)(end - p) > lim->max_target_bytes ? p + lim->max_target_bytes + 1 : end;
    p = h1_span(p, stop, C_VCHAR);
    if ((size_t)(p - s) > lim->max_target_bytes)
        return HTTP1_E_URI_TOO_LONG;
    if (p == end)
        return 0;
    if (*p != ' ' || p == s)
        return HTTP1_E_SYNTAX;
    msg->target = (const char *)s;
    msg->target_len = (size_t)(p - s);
    p++;

    if ((rc = h1_version(p, end, &msg->minor_version)) <= 0)
        return rc;
    p += 8;
    if ((rc = h1_crlf(&p, end)) <= 0)
        return rc;
    *pp = p;
    return 1;
}

/* Status line: HTTP-version SP status-code SP [ reason-phrase ] CRLF
 * (RFC 9112 4). The SP before an empty reason is optional here, as some
 * origins omit it and the omission cannot change framing. */
static int h1_status_line(const unsigned char **pp, const unsigned char *end,
                          struct http1_msg *msg)
{
    const unsigned char *p = *pp, *s;
    int rc;

    if ((rc = h1_version(p, end, &msg->minor_version)) <= 0)
        return rc;
    p += 8;
    if (p == end)
        return 0;
    if (*p++ != ' ')
        return HTTP1_E_SYNTAX;
    s = p;
    for (int i = 0; i < 3; i++, p++) {
        if (p == end)
            return 0;
        if (*p < '0' || *p > '9')
            return HTTP1_E_SYNTAX;
    }
    msg->status = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    if (msg->status < 100 || msg->status > 599)
        return HTTP1_E_SYNTAX;
    if (p == end)
        return 0;
    if (*p == ' ')
        p++;
    else if (*p != '\r')
        return HTTP1_E_SYNTAX;
    s = p;
    p = h1_span(p, end, C_FIELD);
    msg->reason = (const char *)s;
    msg->reason_len = (size_t)(p - s);
    if ((rc = h1_crlf(&p, end)) <= 0)
        return rc;
    *pp = p;
    return 1;
}

/*
 * Field lines up to and including the empty line (RFC 9112 5). Stores each
 * field in msg->hdrs and feeds it to h1_field.
 */
static int h1_fields(const unsigned char **pp, const unsigned char *end, size_t max_headers,
                     int is_request, struct http1_msg *msg, struct h1_sem *sem)
{
    const unsigned char *p = *pp;

    for (;;) {
        const unsigned char *name, *val, *vend;
        struct http1_hdr *h;
        int rc;

        if (p == end)
            return 0;
        if (*p == '\r') {
            if ((rc = h1_crlf(&p, end)) <= 0)
                return rc;
            *pp = p;
            return 1;
        }
        /* This also refuses a line starting with SP or HTAB, which is
         * obs-fold (RFC 9112 5.2) or, on the first line, whitespace
         * between start line and fields (RFC 9112 2.2); a bare LF; and an
         * empty field name. */
        if (!h1_is(*p, C_TOKEN))
            return HTTP1_E_SYNTAX;
        if (msg->n_hdrs == max_headers)
            return HTTP1_E_TOO_LARGE;

        name = p;
        while (p < end && h1_is(*p, C_TOKEN))
            p++;
        if (p == end)
            return 0;
        /* RFC 9112 5.1: no whitespace between name and colon, ever. */
        if (*p != ':')
            return HTTP1_E_SYNTAX;
        h = &msg->hdrs[msg->n_hdrs];
        h->name = (const char *)name;
        h->name_len = (size_t)(p - name);
        p++;

        while (p < end && h1_ows(*p))
            p++;
        val = p;
        p = h1_span(p, end, C_FIELD);
        vend = p;
        if ((rc = h1_crlf(&p, end)) <= 0)
            return rc;
        while (vend > val && h1_ows(vend[-1]))
            vend--;
        h->value = (const char *)val;
        h->value_len = (size_t)(vend - val);
        msg->n_hdrs++;

        if ((rc = h1_field(msg, sem, is_request, h)) < 0)
            return rc;
    }
}

static void h1_msg_reset(struct http1_msg *msg)
{
    /* hdrs[] is left alone: only the first n_hdrs entries are meaningful,
     * and clearing 4 KiB per call would cost more than the parse. */
    msg->method = NULL;
    msg->method_len = 0;
    msg->target = NULL;
    msg->target_len = 0;
    msg->status = 0;
    msg->reason = NULL;
    msg->reason_len = 0;
    msg->minor_version = 0;
    msg->n_hdrs = 0;
    msg->body = HTTP1_BODY_NONE;
    msg->content_length = 0;
    msg->keep_alive = 0;
    msg->expect_continue = 0;
    msg->te_and_cl = 0;
    msg->host = NULL;
    msg->host_len = 0;
    msg->n_host = 0;
}

/* Shared driver for both directions; see the two public wrappers. */
static int h1_parse(const char *buf, size_t len, const struct http1_limits *lim_in,
                    int is_request, int head_request, struct http1_msg *msg)
{
    struct http1_limits lim;
    struct h1_sem sem;
    const unsigned char *p = (const unsigned char *)buf, *end;
    size_t max_headers;
    int rc;

    if (lim_in != NULL)
        lim = *lim_in;
    else
        http1_limits_default(&lim);
    max_headers = lim.max_headers < HTTP1_MAX_HEADERS ? lim.max_headers : HTTP1_MAX_HEADERS;
    /* The head length is returned as an int. */
    if (lim.max_head_bytes > INT_MAX)
        lim.max_head_bytes = INT_MAX;

    h1_msg_reset(msg);
    memset(&sem, 0, sizeof(sem));

    /* Never look past the head limit: a head that has not ended within it
     * is too large whatever follows. */
    end = p + (len < lim.max_head_bytes ? len : lim.max_head_bytes);

    rc = is_request ? h1_request_line(&p, end, &lim, msg) : h1_status_line(&p, end, msg);
    if (rc > 0)
        rc = h1_fields(&p, end, max_headers, is_request, msg, &sem);
    if (rc == 0)
        /* Incomplete. If the window was cut by the limit, more bytes
         * cannot help. */
        return len >= lim.max_head_bytes ? HTTP1_E_TOO_LARGE : 0;
    if (rc < 0)
        return rc;

    msg->keep_alive = msg->minor_version >= 1 ? !sem.conn_close : (sem.conn_keep && !sem.conn_close);

    if (is_request) {
        /* Framing first: these decide where the next request starts. */
        if (sem.te_seen) {
            if (sem.n_cl > 0 || msg->minor_version == 0)
                return HTTP1_E_SMUGGLE;
            if (!h1_te_is_chunked(&sem))
                return HTTP1_E_TE;
            msg->body = HTTP1_BODY_CHUNKED;
        } else if (sem.n_cl > 0) {
            msg->body = HTTP1_BODY_LENGTH;
        }
        /* RFC 9112 3.2: HTTP/1.1 needs exactly one Host; none may have two. */
        if (msg->n_host > 1 || (msg->minor_version >= 1 && msg->n_host == 0))
            return HTTP1_E_SYNTAX;
        /* RFC 9110 10.1.1: 100-continue from an HTTP/1.0 client is ignored. */
        msg->expect_continue = msg->minor_version >= 1 && sem.expect_100;
    } else {
        /* RFC 9112 6.3, in its order. */
        msg->te_and_cl = sem.te_seen && sem.n_cl > 0;
        if (head_request || msg->status < 200 || msg->status == 204 || msg->status == 304)
            msg->body = HTTP1_BODY_NONE;
        else if (sem.te_seen)
            msg->body = h1_te_is_chunked(&sem) && msg->minor_version >= 1 ? HTTP1_BODY_CHUNKED
                                                                            : HTTP1_BODY_EOF;
        else if (sem.n_cl > 0)
            msg->body = HTTP1_BODY_LENGTH;
        else
            msg->body = HTTP1_BODY_EOF;
        /* A body that ends at EOF ends the connection too, and HTTP/1.0
         * with Transfer-Encoding has faulty framing (RFC 9112 6.1), after
         * which the connection cannot be trusted. */
        if (msg->body == HTTP1_BODY_EOF || (sem.te_seen && msg->minor_version == 0))
            msg->keep_alive = 0;
    }
    if (msg->body != HTTP1_BODY_LENGTH)
        msg->content_length = 0;
    return (int)((const char *)p - buf);
}

int http1_parse_request(const char *buf, size_t len, const struct http1_limits *lim,
                        struct http1_msg *msg)
{
    return h1_parse(buf, len, lim, 1, 0, msg);
}

int http1_parse_response(const char *buf, size_t len, const struct http1_limits *lim,
                         int head_request, struct http1_msg *msg)
{
    return h1_parse(buf, len, lim, 0, head_request, msg);
}

int http1_err_status(int err)
{
    switch (err) {
    case HTTP1_E_TOO_LARGE:
        return 431;
    case HTTP1_E_URI_TOO_LONG:
        return 414;
    case HTTP1_E_VERSION:
        return 505;
    case HTTP1_E_TE:
        return 501;
    case HTTP1_E_SYNTAX:
    case HTTP1_E_SMUGGLE:
    case HTTP1_E_CHUNK:
    case HTTP1_E_METHOD:
    default:
        /* An unknown code still came from a bad message. */
        return 400;
    }
}

const char *http1_strerror(int err)
{
    switch (err) {
    case HTTP1_E_SYNTAX:
        return "malformed message head";
    case HTTP1_E_TOO_LARGE:
        return "message head too large";
    case HTTP1_E_URI_TOO_LONG:
        return "request target too long";
    case HTTP1_E_VERSION:
        return "unsupported HTTP version";
    case HTTP1_E_SMUGGLE:
        return "ambiguous message framing";
    case HTTP1_E_TE:
        return "unsupported transfer coding";
    case HTTP1_E_CHUNK:
        return "malformed chunked body";
    case HTTP1_E_METHOD:
        return "invalid method";
    default:
        return "unknown HTTP/1 error";
    }
}

const struct http1_hdr *http1_find(const struct http1_msg *msg, const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < msg->n_hdrs; i++) {
        const struct http1_hdr *h = &msg->hdrs[i];

        if (h->name_len == n && h1_ieq(h->name, name, n))
            return h;
    }
    return NULL;
}

int http1_list_has(const char *value, size_t len, const char *token)
{
    const unsigned char *p = (const unsigned char *)value, *end = p + len;
    size_t tlen = strlen(token);

    while (p < end) {
        const unsigned char *s, *q;

        /* Empty elements and OWS between elements are skipped (RFC 9110
         * 5.6.1). */
        while (p < end && (h1_ows(*p) || *p == ','))
            p++;
        s = p;
        while (p < end && *p != ',' && *p != ';' && *p != '"' && !h1_ows(*p))
            p++;
        q = p;
        while (q < end && h1_ows(*q))
            q++;
        /* The element matches only if nothing but OWS separates its first
         * word from a parameter or the next element: "close x" is not
         * "close". */
        if (tlen > 0 && (size_t)(p - s) == tlen && (q == end || *q == ',' || *q == ';') &&
            h1_ieq((const char *)s, token, tlen))
            return 1;
        /* Skip the rest of the element, stepping over quoted strings in
         * parameters, whose commas do not separate elements. */
        p = q;
        while (p < end && *p != ',') {
            if (*p++ != '"')
                continue;
            while (p < end && *p != '"') {
                if (*p == '\\' && p + 1 < end)
                    p++;
                p++;
            }
            if (p < end)
                p++;
        }
    }
    return 0;
}

/* Chunked decoder states (RFC 9112 7.1). CH_TR_NAME..CH_TR_LF must stay
 * contiguous: the trailer byte count tests the range. */
enum {
    CH_SIZE,     /* hex digits of chunk-size */
    CH_SIZE_WS,  /* BWS after the size, which must lead to ';' */
    CH_EXT,      /* chunk-ext, skipped up to CR */
    CH_SIZE_LF,  /* LF ending the size line */
    CH_DATA,     /* chunk-data */
    CH_DATA_CR,  /* CR after chunk-data */
    CH_DATA_LF,  /* LF after chunk-data */
    CH_TR_START, /* start of a trailer line, or of the final CRLF */
    CH_TR_NAME,  /* trailer field name */
    CH_TR_VALUE, /* trailer field value (with its leading OWS) */
    CH_TR_LF,    /* LF ending a trailer line */
    CH_END_LF,   /* LF of the final CRLF */
    CH_DONE,
    CH_ERROR,
};

void http1_chunked_init(struct http1_chunked *c)
{
    c->state = CH_SIZE;
    c->remaining = 0;
    c->line_len = 0;
    c->max_line = 4096;
    c->trailer_bytes = 0;
    c->max_trailer = 16384;
}

int http1_chunked_feed(struct http1_chunked *c, const char *in, size_t len, size_t *consumed,
                       const char **data, size_t *data_len)
{
    const unsigned char *p = (const unsigned char *)in, *end = p + len;

    *consumed = 0;
    *data = NULL;
    *data_len = 0;
    if (c->state == CH_DONE)
        return 2;
    if (c->state == CH_ERROR)
        return HTTP1_E_CHUNK;

    while (p < end) {
        unsigned char ch = *p;

        /* Chunk data is handed out whole, without looking at it. */
        if (c->state == CH_DATA) {
            size_t n = (size_t)(end - p);

            if (n > c->remaining)
                n = (size_t)c->remaining;
            *data = (const char *)p;
            *data_len = n;
            c->remaining -= n;
            if (c->remaining == 0)
                c->state = CH_DATA_CR;
            *consumed = (size_t)(p + n - (const unsigned char *)in);
            return 1;
        }

        /* Every framing byte except the LFs counts toward the line limit,
         * and every trailer field byte toward the trailer limit; both
         * stop a peer from feeding us framing forever. */
        if (c->state >= CH_TR_NAME && c->state <= CH_TR_LF)
            if (++c->trailer_bytes > c->max_trailer)
                goto fail;

        switch (c->state) {
        case CH_SIZE:
            if (h1_is(ch, C_HEX)) {
                unsigned d = ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10;

                if (c->remaining > (H1_MAX_LENGTH >> 4))
                    goto fail;
                c->remaining = (c->remaining << 4) | d;
            } else if (c->line_len == 0) {
                goto fail; /* no digits: empty size, "-1", "0x10" */
            } else if (ch == '\r') {
                c->state = CH_SIZE_LF;
            } else if (ch == ';') {
                c->state = CH_EXT;
            } else if (h1_ows(ch)) {
                c->state = CH_SIZE_WS;
            } else {
                goto fail;
            }
            break;
        case CH_SIZE_WS:
            /* BWS is only allowed before an extension (RFC 9112 7.1.1);
             * "5 \r\n" is refused because parsers disagree on it. */
            if (ch == ';')
                c->state = CH_EXT;
            else if (!h1_ows(ch))
                goto fail;
            break;
        case CH_EXT:
            /* Extensions are not interpreted, only bounded and kept free
             * of control bytes; a quoted value cannot hold CR or LF. */
            if (ch == '\r')
                c->state = CH_SIZE_LF;
            else if (!h1_is(ch, C_FIELD))
                goto fail;
            break;
        case CH_SIZE_LF:
            if (ch != '\n')
                goto fail;
            c->line_len = 0;
            c->state = c->remaining > 0 ? CH_DATA : CH_TR_START;
            p++;
            continue;
        case CH_DATA_CR:
            if (ch != '\r')
                goto fail;
            c->state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (ch != '\n')
                goto fail;
            c->state = CH_SIZE;
            c->line_len = 0;
            p++;
            continue;
        case CH_TR_START:
            if (ch == '\r') {
                c->state = CH_END_LF;
            } else if (h1_is(ch, C_TOKEN)) {
                c->state = CH_TR_NAME;
                if (++c->trailer_bytes > c->max_trailer)
                    goto fail;
            } else {
                goto fail; /* obs-fold, bare LF, empty name */
            }
            break;
        case CH_TR_NAME:
            if (ch == ':')
                c->state = CH_TR_VALUE;
            else if (!h1_is(ch, C_TOKEN))
                goto fail;
            break;
        case CH_TR_VALUE:
            if (ch == '\r')
                c->state = CH_TR_LF;
            else if (!h1_is(ch, C_FIELD))
                goto fail;
            break;
        case CH_TR_LF:
            if (ch != '\n')
                goto fail;
            c->state = CH_TR_START;
            c->line_len = 0;
            p++;
            continue;
        case CH_END_LF:
            if (ch != '\n')
                goto fail;
            c->state = CH_DONE;
            *consumed = (size_t)(p + 1 - (const unsigned char *)in);
            return 2;
        default:
            goto fail;
        }
        if (++c->line_len > c->max_line)
            goto fail;
        p++;
    }
    *consumed = len;
    return 0;

fail:
    c->state = CH_ERROR;
    *consumed = (size_t)(p - (const unsigned char *)in);
    return HTTP1_E_CHUNK;
}
