/*
 * http1 -- strict, incremental, zero-copy HTTP/1.1 message head parser and
 * chunked-body decoder (RFC 9112).
 *
 * The parser never touches a socket and never allocates. It is handed the
 * bytes received so far and either reports "incomplete" (0), the length of
 * a complete head (>0), or an error (<0, an HTTP1_E* code). All string
 * fields of the result point into the caller's buffer, which must stay
 * unchanged for as long as the result is used.
 *
 * It is strict on purpose, to close request-smuggling vectors (RFC 9112
 * sections 2.2, 5.2, 6.1, 6.3, 7.1; RFC 9110 section 5.5):
 *   - a bare CR anywhere in the head, or a bare LF as line end, is an
 *     error (there is no lenient mode);
 *   - obs-fold (a header line starting with SP/HTAB) is an error;
 *   - whitespace between field name and colon is an error;
 *   - Content-Length and Transfer-Encoding together is an error in a
 *     request (a response with both uses chunked, per 6.3, and is marked);
 *   - several Content-Length fields or values that differ, or that are not
 *     plain digits, or that overflow, are an error;
 *   - Transfer-Encoding other than exactly "chunked" as the final coding
 *     is an error (501 for a request);
 *   - a field value containing NUL/CR/LF or other CTLs except HTAB is an
 *     error;
 *   - heads larger than max_head_bytes give HTTP1_E_TOO_LARGE (431), more
 *     than max_headers fields too, a request target longer than
 *     max_target_bytes gives HTTP1_E_URI_TOO_LONG (414);
 *   - HTTP versions other than 1.0/1.1 give HTTP1_E_VERSION (505).
 * Leading empty lines before a request line (RFC 9112 2.2) are skipped.
 */
#ifndef FERRY_HTTP_HTTP1_H
#define FERRY_HTTP_HTTP1_H

#include <stddef.h>
#include <stdint.h>

#define HTTP1_MAX_HEADERS 128 /* hard cap on fields stored in a head */

enum http1_err {
    HTTP1_E_SYNTAX = -1,      /* malformed request/status line or field: 400 */
    HTTP1_E_TOO_LARGE = -2,   /* head over max_head_bytes or max_headers: 431 */
    HTTP1_E_URI_TOO_LONG = -3,/* request target over max_target_bytes: 414 */
    HTTP1_E_VERSION = -4,     /* unsupported HTTP version: 505 */
    HTTP1_E_SMUGGLE = -5,     /* CL/TE conflict, duplicate CL, bad CL: 400 */
    HTTP1_E_TE = -6,          /* unsupported transfer coding: 501 */
    HTTP1_E_CHUNK = -7,       /* bad chunk size line / framing: 400 */
    HTTP1_E_METHOD = -8,      /* method token invalid: 400 */
};

/* A field as it appears in the head; name and value point into the buffer.
 * value has leading and trailing OWS removed. */
struct http1_hdr {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

enum http1_body {
    HTTP1_BODY_NONE,    /* no body (no CL/TE in a request; 1xx/204/304/HEAD response) */
    HTTP1_BODY_LENGTH,  /* Content-Length bytes follow */
    HTTP1_BODY_CHUNKED, /* chunked transfer coding */
    HTTP1_BODY_EOF,     /* response delimited by connection close */
};

struct http1_limits {
    size_t max_head_bytes;   /* whole head incl. request line; default 16384 */
    size_t max_headers;      /* fields; default 100, never above HTTP1_MAX_HEADERS */
    size_t max_target_bytes; /* request target; default 8192 */
};

/* Fills *lim with the defaults named above. */
void http1_limits_default(struct http1_limits *lim);

struct http1_msg {
    /* request line (requests only) */
    const char *method;
    size_t method_len;
    const char *target;
    size_t target_len;
    /* status line (responses only) */
    int status;
    const char *reason;
    size_t reason_len;

    int minor_version;       /* 0 for HTTP/1.0, 1 for HTTP/1.1 */
    struct http1_hdr hdrs[HTTP1_MAX_HEADERS];
    size_t n_hdrs;

    enum http1_body body;
    uint64_t content_length; /* valid when body == HTTP1_BODY_LENGTH */
    unsigned keep_alive : 1; /* persistent per version + Connection field */
    unsigned expect_continue : 1; /* request has Expect: 100-continue */
    unsigned te_and_cl : 1;  /* response had both TE and CL (CL ignored) */
    const char *host;        /* first Host field value, or NULL */
    size_t host_len;
    unsigned n_host;         /* number of Host fields (a request with >1 is rejected) */
};

/*
 * Parses a request head from buf[0..len).
 * Returns the number of bytes of the head (through the empty line) on
 * success, 0 if the head is incomplete and more bytes are needed (and it is
 * not yet over the limits), or a negative enum http1_err.
 * Requests with HTTP/1.1 and no Host field, or more than one Host field,
 * are HTTP1_E_SYNTAX. A request with TE: chunked is HTTP1_BODY_CHUNKED;
 * with Content-Length: n it is HTTP1_BODY_LENGTH; otherwise NONE.
 */
int http1_parse_request(const char *buf, size_t len, const struct http1_limits *lim,
                        struct http1_msg *msg);

/*
 * Parses a response head from buf[0..len). head_request tells that the
 * request was HEAD (so the response has no body whatever its fields say).
 * Same return convention as http1_parse_request. 1xx, 204 and 304 have no
 * body; without CL or TE the body runs to EOF (HTTP1_BODY_EOF).
 */
int http1_parse_response(const char *buf, size_t len, const struct http1_limits *lim,
                         int head_request, struct http1_msg *msg);

/* Returns the HTTP status code to answer a parse error with (400, 414, 431, 501, 505). */
int http1_err_status(int err);
/* Returns a short static description of an http1_err. */
const char *http1_strerror(int err);

/* Case-insensitive field lookup; returns the first match or NULL. */
const struct http1_hdr *http1_find(const struct http1_msg *msg, const char *name);

/*
 * Returns 1 if the comma-separated list in value[0..len) contains token
 * (case-insensitive, OWS around elements ignored, parameters after ';'
 * ignored), else 0.
 */
int http1_list_has(const char *value, size_t len, const char *token);

/* Chunked transfer-coding decoder (RFC 9112 section 7.1). */
struct http1_chunked {
    int state;             /* private */
    uint64_t remaining;    /* private: bytes left in the current chunk */
    size_t line_len;       /* private: bytes of the current size/trailer line */
    size_t max_line;       /* limit for a chunk-size or trailer line; default 4096 */
    size_t trailer_bytes;  /* private: total trailer bytes seen */
    size_t max_trailer;    /* limit on all trailer fields; default 16384 */
};

/* Initializes a decoder with default limits. */
void http1_chunked_init(struct http1_chunked *c);

/*
 * Feeds in[0..len) to the decoder. Zero-copy: data is returned as a
 * pointer into in.
 *   *consumed  always set: how many input bytes were used (framing + data).
 *   *data, *data_len set when the return is 1.
 * Returns 1 when a piece of body data is returned (call again with the rest
 * of the input), 0 when all input was consumed and more is needed, 2 when
 * the last chunk and trailers have been consumed (the message is complete;
 * bytes after *consumed belong to the next message), or HTTP1_E_CHUNK on a
 * malformed size (non-hex, empty, overflowing 2^63, line over max_line),
 * a missing CRLF after chunk data, bad trailer syntax or too many trailer
 * bytes.
 */
int http1_chunked_feed(struct http1_chunked *c, const char *in, size_t len, size_t *consumed,
                       const char **data, size_t *data_len);

#endif
