/*
 * libFuzzer target for the HTTP/1 head parser (src/http/http1.c).
 *
 * Input layout: byte 0 is a control byte, the rest is the message.
 *   bit 0     head_request for the response parse
 *   bit 1     use small limits (taken from bits 2-7) so that the 431 and
 *             414 paths are reached with short inputs
 * Both http1_parse_request and http1_parse_response run over the message.
 * Besides memory safety (ASan/UBSan) the target checks the contract and
 * aborts on a violation:
 *   - the return is a head length <= len and <= max_head_bytes, 0, or a
 *     known error code; 0 only while under the head limit;
 *   - every pointer in the result lies inside the head, with the lengths
 *     and character sets the header promises;
 *   - the parse is incremental: a prefix that already gives a verdict
 *     (length or error) gives the same verdict as the whole input, and the
 *     head alone parses to the same length while one byte less does not.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The result is large; one copy per role keeps it off the stack. */
static struct http1_msg msg, msg2;

#define CHECK(cond)      \
    do {                 \
        if (!(cond))     \
            abort();     \
    } while (0)

static int in_range(const char *p, size_t n, const char *lo, const char *hi)
{
    return p != NULL && p >= lo && n <= (size_t)(hi - p);
}

static int has_ows_edge(const char *v, size_t n)
{
    return n > 0 && (v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t');
}

static void check_rc(int rc, size_t len, const struct http1_limits *lim)
{
    if (rc > 0) {
        CHECK((size_t)rc <= len);
        CHECK((size_t)rc <= lim->max_head_bytes);
    } else if (rc == 0) {
        CHECK(len < lim->max_head_bytes);
    } else {
        CHECK(rc >= HTTP1_E_METHOD && rc <= HTTP1_E_SYNTAX);
        int st = http1_err_status(rc);
        CHECK(st == 400 || st == 414 || st == 431 || st == 501 || st == 505);
        CHECK(http1_strerror(rc) != NULL);
    }
}

/* Field invariants shared by requests and responses, for a head of rc bytes. */
static void check_fields(const struct http1_msg *m, const char *buf, int rc,
                         const struct http1_limits *lim)
{
    const char *end = buf + rc;
    size_t max_headers = lim->max_headers < HTTP1_MAX_HEADERS ? lim->max_headers : HTTP1_MAX_HEADERS;
    char name[256];

    CHECK(m->n_hdrs <= max_headers);
    CHECK(m->minor_version == 0 || m->minor_version == 1);
    for (size_t i = 0; i < m->n_hdrs; i++) {
        const struct http1_hdr *h = &m->hdrs[i];

        CHECK(h->name_len > 0 && in_range(h->name, h->name_len, buf, end));
        CHECK(in_range(h->value, h->value_len, buf, end));
        CHECK(memchr(h->name, ':', h->name_len) == NULL);
        CHECK(memchr(h->value, '\r', h->value_len) == NULL);
        CHECK(memchr(h->value, '\n', h->value_len) == NULL);
        CHECK(memchr(h->value, '\0', h->value_len) == NULL);
        CHECK(!has_ows_edge(h->value, h->value_len));
        /* http1_find by this name finds this field or an earlier one. */
        if (h->name_len < sizeof(name)) {
            const struct http1_hdr *f;

            memcpy(name, h->name, h->name_len);
            name[h->name_len] = '\0';
            f = http1_find(m, name);
            CHECK(f != NULL && f <= h && f->name_len == h->name_len);
        }
    }
    CHECK(http1_find(m, "\x01") == NULL);
    CHECK(m->body == HTTP1_BODY_NONE || m->body == HTTP1_BODY_LENGTH ||
          m->body == HTTP1_BODY_CHUNKED || m->body == HTTP1_BODY_EOF);
    CHECK(m->content_length <= UINT64_C(0x7fffffffffffffff));
    CHECK(m->body == HTTP1_BODY_LENGTH || m->content_length == 0);
    if (m->host != NULL)
        CHECK(in_range(m->host, m->host_len, buf, end));
    /* A Content-Length body needs a Content-Length field. */
    if (m->body == HTTP1_BODY_LENGTH)
        CHECK(http1_find(m, "content-length") != NULL);
    if (m->body == HTTP1_BODY_CHUNKED)
        CHECK(http1_find(m, "transfer-encoding") != NULL);
}

static int parse(int request, const char *buf, size_t len, const struct http1_limits *lim,
                 int head_request, struct http1_msg *m)
{
    return request ? http1_parse_request(buf, len, lim, m)
                   : http1_parse_response(buf, len, lim, head_request, m);
}

/* Runs one parser over buf and checks the incremental properties. */
static void run(int request, const char *buf, size_t len, const struct http1_limits *lim,
                int head_request)
{
    int rc = parse(request, buf, len, lim, head_request, &msg);

    check_rc(rc, len, lim);
    if (rc > 0) {
        const char *end = buf + rc;

        check_fields(&msg, buf, rc, lim);
        if (request) {
            CHECK(msg.method_len > 0 && in_range(msg.method, msg.method_len, buf, end));
            CHECK(msg.target_len > 0 && in_range(msg.target, msg.target_len, buf, end));
            CHECK(msg.target_len <= lim->max_target_bytes);
            CHECK(memchr(msg.target, ' ', msg.target_len) == NULL);
            CHECK(msg.body != HTTP1_BODY_EOF);
            CHECK(msg.n_host <= 1);
            CHECK(msg.minor_version == 0 || msg.n_host == 1);
            CHECK(!msg.te_and_cl);
        } else {
            CHECK(msg.status >= 100 && msg.status <= 599);
            CHECK(in_range(msg.reason, msg.reason_len, buf, end));
            if (head_request || msg.status == 204 || msg.status == 304 || msg.status < 200)
                CHECK(msg.body == HTTP1_BODY_NONE);
            if (msg.body == HTTP1_BODY_EOF)
                CHECK(!msg.keep_alive);
        }
        /* The head alone gives the same length; one byte less is short. */
        CHECK(parse(request, buf, (size_t)rc, lim, head_request, &msg2) == rc);
        CHECK(msg2.n_hdrs == msg.n_hdrs && msg2.body == msg.body);
        CHECK(parse(request, buf, (size_t)rc - 1, lim, head_request, &msg2) == 0);
    }

    /* A verdict reached on a prefix must not change with more bytes. */
    if (len > 1) {
        size_t half = len / 2;
        int rc_half = parse(request, buf, half, lim, head_request, &msg2);

        check_rc(rc_half, half, lim);
        if (rc_half != 0)
            CHECK(rc_half == rc);
        if (rc == 0)
            CHECK(rc_half == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct http1_limits lim;
    const char *buf;
    size_t len;
    int head_request;

    if (size < 1)
        return 0;
    head_request = data[0] & 1;
    http1_limits_default(&lim);
    if (data[0] & 2) {
        lim.max_head_bytes = 32 + (size_t)(data[0] >> 2) * 8; /* 32..536 */
        lim.max_headers = (data[0] >> 4) & 7;                 /* 0..7 */
        lim.max_target_bytes = 1 + ((data[0] >> 2) & 31);     /* 1..32 */
    }
    buf = (const char *)data + 1;
    len = size - 1;

    run(1, buf, len, &lim, 0);
    run(0, buf, len, &lim, head_request);
    return 0;
}
