/*
 * server -- see server.h.
 *
 * A connection moves through: TLS handshake (if TLS) -> reading a head ->
 * (reading a body) -> in a response (the handler owns it) -> back to
 * reading, or closing once the output is flushed. Input keeps arriving
 * while a response is in progress (pipelining) but reading pauses when the
 * buffered input exceeds one head plus one body, which bounds memory per
 * connection.
 */
#include "http/server.h"

#include <errno.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "http/date.h"
#include "lib/handoff.h"
#include "lib/proxyproto.h"
#include "lib/log.h"
#include "lib/util.h"

#define READ_CHUNK 16384
#define TLS_STAGE 16384
#define MAX_IOV 32

struct seg {
    struct seg *next;
    const char *p;
    size_t n;
    void (*release)(void *);
    void *arg;
    char inline_data[]; /* copied bytes when release is NULL */
};

struct listener {
    struct loop_io io;
    struct hsrv *srv;
    SSL_CTX *ctx; /* up-referenced, or NULL for plain */
    int proxy;    /* expects a PROXY v2 header first */
    /* A switch's hand-off connection (lib/handoff.h) instead of a TCP
     * listener: each message brings a client connection. */
    int handoff;
    uint8_t *hbuf;    /* owned: HANDOFF_BUF bytes */
    struct metric *m_handoff_ok, *m_handoff_bad;
    uint32_t reported; /* the load last reported to the switch */
    int has_reported;
    struct listener *next;
};

enum cstate {
    CS_PROXY,     /* reading the PROXY v2 header */
    CS_HANDSHAKE,
    CS_HEAD,
    CS_BODY,
    CS_RESPONSE,
    CS_CLOSING, /* flush the output, then close */
    CS_LINGER,  /* output done and write side shut: drain input briefly, then close */
};

#define LINGER_MS 2000
#define LINGER_MAX_BYTES (1u << 20)

struct conn {
    struct hconn pub;
    struct loop_io io;
    struct loop_timer timer;
    enum cstate state;
    SSL *ssl;
    struct buf in;
    size_t head_len;          /* bytes of c->in that belong to the request being served */
    struct buf head;          /* the current request head; c->pub.req points into it */
    struct http1_chunked chunked;
    struct buf body;          /* de-chunked request body */
    struct seg *out_head, **out_tail;
    size_t out_bytes;
    char *stage;              /* TLS: bytes handed to SSL_write, retried as-is */
    size_t stage_len, stage_off;
    size_t lingered;          /* bytes discarded while lingering */
    int flush_pending;        /* a deferred flush is queued */
    uint8_t *pbuf;            /* PROXY header being read (owned), then NULL */
    size_t plen;
    int prefixed;             /* TLS reads from a memory BIO holding bytes the switch read */
    int keep_alive_after;     /* the response ended with keep-alive */
    int resp_open;            /* handler owns a response */
    int read_eof;
    struct conn *next, *prev;
};

struct hsrv {
    struct loop *loop;
    struct hsrv_handler h;
    void *arg;
    struct hsrv_limits lim;
    char *name;
    char *via;      /* owned, or NULL */
    struct listener *listeners;
    struct conn *conns;
    unsigned nconns;
    _Atomic unsigned *load;     /* shared count of open connections (hsrv_share_load), or NULL */
    struct loop_timer report;   /* load reports to hand-off connections */
    int draining;
    void (*drain_done)(void *);
    void *drain_arg;
};

static void conn_process(struct conn *c);
static void conn_want(struct conn *c);
static void conn_close_now(struct conn *c);

void hsrv_limits_default(struct hsrv_limits *lim)
{
    http1_limits_default(&lim->http);
    lim->max_body = 1u << 20;
    lim->header_timeout_ms = 10000;
    lim->idle_timeout_ms = 60000;
    lim->send_timeout_ms = 60000;
    lim->max_conns = 10000;
    lim->max_requests = 10000;
}

const char *http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 416: return "Range Not Satisfiable";
    case 421: return "Misdirected Request";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* Output queue. */

static void seg_free(struct seg *s);
static void deferred_flush(void *arg);

static void seg_push(struct conn *c, struct seg *s)
{
    if (c->io.fd < 0) {
        /* The connection closed under the handler: drop the bytes. */
        seg_free(s);
        return;
    }
    s->next = NULL;
    *c->out_tail = s;
    c->out_tail = &s->next;
    c->out_bytes += s->n;
    c->pub.resp_bytes += s->n;
    /* Write at the end of this loop iteration instead of waiting for the
     * next epoll round to report writability: one round trip and two
     * epoll_ctl calls less per response, and the handler that queued the
     * bytes has returned by then. */
    if (!c->flush_pending && c->state != CS_HANDSHAKE && c->state != CS_PROXY) {
        c->flush_pending = 1;
        loop_defer(c->pub.loop, deferred_flush, c);
    }
}

void hconn_send(struct hconn *hc, const void *p, size_t n)
{
    struct conn *c = (struct conn *)hc;
    if (n == 0)
        return;
    struct seg *s = xmalloc(sizeof(*s) + n);
    memcpy(s->inline_data, p, n);
    s->p = s->inline_data;
    s->n = n;
    s->release = NULL;
    seg_push(c, s);
    conn_want(c);
}

void hconn_sendf(struct hconn *hc, const char *fmt, ...)
{
    struct buf b;
    va_list ap;
    buf_init(&b);
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    hconn_send(hc, buf_head(&b), buf_avail(&b));
    buf_fini(&b);
}

void hconn_send_ref(struct hconn *hc, const void *p, size_t n, void (*release)(void *), void *arg)
{
    struct conn *c = (struct conn *)hc;
    struct seg *s = xmalloc(sizeof(*s));
    s->p = p;
    s->n = n;
    s->release = release;
    s->arg = arg;
    seg_push(c, s);
    conn_want(c);
}

size_t hconn_pending(const struct hconn *hc)
{
    const struct conn *c = (const struct conn *)hc;
    return c->out_bytes + (c->stage_len - c->stage_off);
}

static void seg_free(struct seg *s)
{
    if (s->release)
        s->release(s->arg);
    free(s);
}

static void out_clear(struct conn *c)
{
    while (c->out_head) {
        struct seg *s = c->out_head;
        c->out_head = s->next;
        seg_free(s);
    }
    c->out_tail = &c->out_head;
    c->out_bytes = 0;
}

/* Drops n written bytes from the front of the queue. */
static void out_consume(struct conn *c, size_t n)
{
    c->out_bytes -= n;
    while (n > 0) {
        struct seg *s = c->out_head;
        if (n < s->n) {
            s->p += n;
            s->n -= n;
            return;
        }
        n -= s->n;
        c->out_head = s->next;
        if (c->out_head == NULL)
            c->out_tail = &c->out_head;
        seg_free(s);
    }
    while (c->out_head && c->out_head->n == 0) {
        struct seg *s = c->out_head;
        c->out_head = s->next;
        if (c->out_head == NULL)
            c->out_tail = &c->out_head;
        seg_free(s);
    }
}

/* Returns 1 if progress, 0 if blocked, -1 on a fatal error. */
static int flush_plain(struct conn *c)
{
    struct iovec iov[MAX_IOV];
    int progress = 0;
    while (c->out_bytes > 0) {
        int n = 0;
        for (struct seg *s = c->out_head; s && n < MAX_IOV; s = s->next) {
            if (s->n == 0)
                continue;
            iov[n].iov_base = (void *)s->p;
            iov[n].iov_len = s->n;
            n++;
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(c->io.fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return progress;
            return -1;
        }
        out_consume(c, (size_t)w);
        progress = 1;
    }
    return 1;
}

static int flush_tls(struct conn *c)
{
    int progress = 0;
    for (;;) {
        if (c->stage_off == c->stage_len) {
            c->stage_off = c->stage_len = 0;
            if (c->out_bytes == 0)
                return 1;
            if (c->stage == NULL)
                c->stage = xmalloc(TLS_STAGE);
            /* Gather small segments into one TLS record's worth. */
            while (c->out_head && c->stage_len < TLS_STAGE) {
                struct seg *s = c->out_head;
                size_t k = MIN(s->n, TLS_STAGE - c->stage_len);
                memcpy(c->stage + c->stage_len, s->p, k);
                c->stage_len += k;
                out_consume(c, k);
            }
        }
        ERR_clear_error();
        int w = SSL_write(c->ssl, c->stage + c->stage_off, (int)(c->stage_len - c->stage_off));
        if (w <= 0) {
            int e = SSL_get_error(c->ssl, w);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
                return progress;
            return -1;
        }
        c->stage_off += (size_t)w;
        progress = 1;
    }
}

/* Sets the epoll interest and the timer for the current state. */
static void conn_want(struct conn *c)
{
    unsigned ev = 0;
    int pending = hconn_pending(&c->pub) > 0;
    size_t cap = c->pub.srv->lim.http.max_head_bytes + c->pub.srv->lim.max_body + READ_CHUNK;

    if (c->io.fd < 0)
        return;
    if (pending)
        ev |= LOOP_WRITE;
    /* Input is read only while a head or body is expected (and the TLS
     * handshake, PROXY header and lingering close, which read on their
     * own). During a response nothing is read: the request's body may
     * point into c->in, and a pipelined request waits its turn. */
    if (c->state == CS_HANDSHAKE || c->state == CS_PROXY || c->state == CS_LINGER)
        ev |= LOOP_READ;
    else if ((c->state == CS_HEAD || c->state == CS_BODY) && !c->read_eof &&
             buf_avail(&c->in) < cap)
        ev |= LOOP_READ;
    if (c->ssl && SSL_want_write(c->ssl))
        ev |= LOOP_WRITE;
    loop_io_modify(&c->io, ev);
}

static void conn_free_cb(void *arg)
{
    struct conn *c = arg;
    buf_fini(&c->in);
    buf_fini(&c->head);
    buf_fini(&c->body);
    free(c->stage);
    free(c->pbuf);
    free(c);
}

static void conn_close_now(struct conn *c)
{
    struct hsrv *s = c->pub.srv;

    if (c->io.fd < 0)
        return;
    if (c->resp_open && s->h.on_abort) {
        c->resp_open = 0;
        s->h.on_abort(&c->pub);
    }
    loop_timer_stop(&c->timer);
    int fd = c->io.fd;
    loop_io_stop(&c->io);
    if (c->ssl) {
        /* A quiet shutdown keeps the session resumable (SSL_free alone
         * would mark it not resumable) without waiting for the peer. */
        if (SSL_is_init_finished(c->ssl))
            SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    close(fd);
    out_clear(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    if (s->load)
        atomic_fetch_sub_explicit(s->load, 1, memory_order_relaxed);
    loop_defer(s->loop, conn_free_cb, c);
    if (s->draining && s->nconns == 0 && s->drain_done) {
        void (*done)(void *) = s->drain_done;
        s->drain_done = NULL;
        done(s->drain_arg);
    }
}

/*
 * Closes after the last response of a connection. If the client may still
 * be sending (a request we refused mid-way, pipelined requests after a
 * Connection: close), closing at once would make the kernel answer its
 * unread bytes with a reset that can destroy our response before the
 * client reads it. So shut the write side and discard input for a short
 * while first (a lingering close).
 */
static void conn_finish_close(struct conn *c)
{
    if (c->read_eof) {
        conn_close_now(c);
        return;
    }
    if (c->ssl && SSL_is_init_finished(c->ssl))
        SSL_shutdown(c->ssl);
    shutdown(c->io.fd, SHUT_WR);
    c->state = CS_LINGER;
    loop_io_modify(&c->io, LOOP_READ);
    loop_timer_start(&c->timer, LINGER_MS);
}

static void conn_linger_read(struct conn *c)
{
    char tmp[16384];
    for (int i = 0; i < 4; i++) {
        ssize_t r = recv(c->io.fd, tmp, sizeof(tmp), 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (r <= 0 || (c->lingered += (size_t)r) > LINGER_MAX_BYTES) {
            conn_close_now(c);
            return;
        }
    }
}

static void conn_timeout(struct loop_timer *t)
{
    struct conn *c = t->data;
    if (c->state == CS_HEAD && buf_avail(&c->in) > 0 && !c->resp_open) {
        /* A partial head that never completed: tell the client. */
        c->state = CS_RESPONSE;
        c->resp_open = 1;
        hconn_error(&c->pub, 408, "request head not received in time", 1);
        return;
    }
    conn_close_now(c);
}

static void arm_timer(struct conn *c, int64_t ms)
{
    loop_timer_start(&c->timer, ms);
}

/* Reads what is there. Returns bytes read, 0 if nothing now, -1 on EOF/error. */
/*
 * A handed-off TLS connection reads the bytes the switch already read
 * from a memory BIO first. Once SSL wants more than it holds, reading
 * moves to the socket, where the client's next bytes are. Returns 1 when
 * it just moved (retry the call), 0 when there was nothing to move.
 */
static int prefix_done(struct conn *c)
{
    if (!c->prefixed)
        return 0;
    c->prefixed = 0;
    BIO *b = BIO_new_socket(c->io.fd, BIO_NOCLOSE);
    if (b == NULL)
        return 0;
    SSL_set0_rbio(c->ssl, b);
    return 1;
}

static ssize_t conn_read(struct conn *c)
{
    char *p = buf_reserve(&c->in, READ_CHUNK);
    if (c->ssl) {
        ERR_clear_error();
        int r = SSL_read(c->ssl, p, READ_CHUNK);
        if (r > 0) {
            buf_commit(&c->in, (size_t)r);
            return r;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ && prefix_done(c))
            return conn_read(c);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return 0;
        return -1;
    }
    ssize_t r = recv(c->io.fd, p, READ_CHUNK, 0);
    if (r > 0) {
        buf_commit(&c->in, (size_t)r);
        return r;
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    return -1;
}

/*
 * Reads the PROXY v2 header byte-exactly (never past it: what follows is
 * the client's TLS or HTTP and belongs to the next layer). Returns 1 when
 * done, 0 to wait, -1 on a bad header or EOF.
 */
static int read_proxy(struct conn *c)
{
    for (;;) {
        size_t need = c->plen < 16 ? 16 : 16 + ((size_t)c->pbuf[14] << 8 | c->pbuf[15]);
        if (need > PROXY_V2_MAX)
            return -1;
        if (c->plen < need) {
            ssize_t r = recv(c->io.fd, c->pbuf + c->plen, need - c->plen, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
            if (r <= 0)
                return -1;
            c->plen += (size_t)r;
        }
        struct net_addr src, dst;
        int has = 0;
        int rc = proxy_v2_parse(c->pbuf, c->plen, &src, &dst, &has);
        if (rc < 0)
            return -1;
        if (rc == 0)
            continue;
        if (has) {
            c->pub.peer = src;
            c->pub.local = dst;
        }
        free(c->pbuf);
        c->pbuf = NULL;
        return 1;
    }
}

static void handshake(struct conn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r != 1 && SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_READ && prefix_done(c)) {
        ERR_clear_error();
        r = SSL_do_handshake(c->ssl);
    }
    if (r == 1) {
        c->state = CS_HEAD;
        c->pub.sni = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
        c->pub.tls_resumed = SSL_session_reused(c->ssl);
        arm_timer(c, c->pub.srv->lim.header_timeout_ms);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return;
    log_debug("%s: TLS handshake with client failed", c->pub.srv->name);
    conn_close_now(c);
}

/* Starts the handler on a complete request. */
static void dispatch(struct conn *c)
{
    struct hsrv *s = c->pub.srv;
    c->state = CS_RESPONSE;
    c->resp_open = 1;
    c->pub.nreq++;
    c->pub.resp_bytes = 0;
    c->pub.ud = NULL;
    c->pub.closing = s->draining || !c->pub.req.keep_alive || c->pub.nreq >= s->lim.max_requests;
    loop_timer_stop(&c->timer);
    s->h.on_request(&c->pub);
}

static void fail_request(struct conn *c, int status, const char *msg)
{
    c->state = CS_RESPONSE;
    c->resp_open = 1;
    c->pub.closing = 1;
    hconn_error(&c->pub, status, msg, 1);
}

/* Parses as much of the input as the state allows. */
static void conn_process(struct conn *c)
{
    struct hsrv *s = c->pub.srv;

    while (c->io.fd >= 0) {
        if (c->state == CS_HEAD) {
            if (buf_avail(&c->in) == 0) {
                if (c->read_eof)
                    conn_close_now(c);
                return;
            }
            int r = http1_parse_request(buf_head(&c->in), buf_avail(&c->in), &s->lim.http,
                                        &c->pub.req);
            if (r == 0) {
                if (c->read_eof)
                    conn_close_now(c);
                return;
            }
            if (r < 0) {
                fail_request(c, http1_err_status(r), http1_strerror(r));
                return;
            }
            /* Pin the head in its own buffer: c->in keeps moving (body
             * bytes, pipelined requests, compaction) while handlers hold
             * pointers into the parsed request for its whole life. */
            buf_reset(&c->head);
            buf_append(&c->head, buf_head(&c->in), (size_t)r);
            buf_consume(&c->in, (size_t)r);
            if (http1_parse_request(buf_head(&c->head), buf_avail(&c->head), &s->lim.http,
                                    &c->pub.req) != r) {
                fail_request(c, 500, "request head changed when copied");
                return;
            }
            c->head_len = 0;
            c->pub.req_start_ns = time_mono_ns();
            c->pub.body = NULL;
            c->pub.body_len = 0;
            if (c->pub.req.body == HTTP1_BODY_NONE) {
                dispatch(c);
                return;
            }
            if (c->pub.req.body == HTTP1_BODY_LENGTH && c->pub.req.content_length > s->lim.max_body) {
                fail_request(c, 413, "request body too large");
                return;
            }
            http1_chunked_init(&c->chunked);
            buf_reset(&c->body);
            c->state = CS_BODY;
            /* The interim 100 lets a client that waits for it send the body. */
            if (c->pub.req.expect_continue && c->pub.req.minor_version == 1)
                hconn_send(&c->pub, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            continue;
        }
        if (c->state == CS_BODY) {
            const char *p = buf_head(&c->in) + c->head_len;
            size_t avail = buf_avail(&c->in) - c->head_len;
            if (c->pub.req.body == HTTP1_BODY_LENGTH) {
                if (avail < c->pub.req.content_length) {
                    if (c->read_eof)
                        conn_close_now(c);
                    return;
                }
                c->pub.body = p;
                c->pub.body_len = (size_t)c->pub.req.content_length;
                c->head_len += c->pub.body_len; /* consumed together after the response */
                dispatch(c);
                return;
            }
            /* Chunked: decode what is there into c->body. */
            for (;;) {
                size_t used = 0, dlen = 0;
                const char *d = NULL;
                int r = http1_chunked_feed(&c->chunked, p, avail, &used, &d, &dlen);
                p += used;
                avail -= used;
                c->head_len += used;
                if (r == 1) {
                    if (buf_avail(&c->body) + dlen > s->lim.max_body) {
                        fail_request(c, 413, "request body too large");
                        return;
                    }
                    buf_append(&c->body, d, dlen);
                    continue;
                }
                if (r == 2) {
                    c->pub.body = buf_head(&c->body);
                    c->pub.body_len = buf_avail(&c->body);
                    dispatch(c);
                    return;
                }
                if (r < 0) {
                    fail_request(c, 400, "bad chunked request body");
                    return;
                }
                /* r == 0: need more. Drop consumed framing to bound memory. */
                buf_consume(&c->in, c->head_len);
                c->head_len = 0;
                if (c->read_eof)
                    conn_close_now(c);
                return;
            }
        }
        return;
    }
}

static void next_request_cb(void *arg)
{
    struct conn *c = arg;
    if (c->io.fd < 0 || c->state != CS_HEAD)
        return;
    conn_process(c);
    conn_want(c);
}

void hconn_end(struct hconn *hc, int keep_alive)
{
    struct conn *c = (struct conn *)hc;
    struct hsrv *s = c->pub.srv;

    if (!c->resp_open)
        return;
    c->resp_open = 0;
    buf_consume(&c->in, c->head_len);
    c->head_len = 0;
    if (!keep_alive || c->pub.closing || s->draining) {
        c->state = CS_CLOSING;
        conn_want(c);
        if (hconn_pending(hc) == 0)
            conn_finish_close(c);
        return;
    }
    c->state = CS_HEAD;
    arm_timer(c, buf_avail(&c->in) > 0 ? s->lim.header_timeout_ms : s->lim.idle_timeout_ms);
    conn_want(c);
    /* Parse a pipelined request on the next turn, not from inside the
     * handler that just ended, which may still be on the stack. */
    if (buf_avail(&c->in) > 0)
        loop_defer(c->pub.loop, next_request_cb, c);
}

void hconn_abort(struct hconn *hc)
{
    struct conn *c = (struct conn *)hc;
    c->resp_open = 0;
    conn_close_now(c);
}

void hconn_error(struct hconn *hc, int status, const char *msg, int close)
{
    char date[32];
    size_t n = strlen(msg);
    const char *via = hc->srv->via;
    hconn_sendf(hc,
                "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                "Content-Length: %zu\r\nCache-Control: no-store\r\n%s%s%s%s\r\n%s\n",
                status, http_reason(status), http_date(time_wall(), date), n + 1,
                via ? "Via: " : "", via ? via : "", via ? "\r\n" : "",
                close ? "Connection: close\r\n" : "", msg);
    hconn_end(hc, !close);
}

/*
 * Writes what is queued. Returns -1 if the connection closed (an error, or
 * the last response of a closing connection went out), else 0.
 */
static int conn_flush(struct conn *c)
{
    struct hsrv *s = c->pub.srv;
    size_t before = hconn_pending(&c->pub);
    int r = c->ssl ? flush_tls(c) : flush_plain(c);
    if (r < 0) {
        conn_close_now(c);
        return -1;
    }
    if (hconn_pending(&c->pub) < before && c->state == CS_RESPONSE)
        arm_timer(c, s->lim.send_timeout_ms);
    if (hconn_pending(&c->pub) == 0 && c->state == CS_CLOSING) {
        conn_finish_close(c);
        return -1;
    }
    if (c->resp_open && hconn_pending(&c->pub) < HCONN_LOW_WATER && s->h.on_writable) {
        s->h.on_writable(&c->pub);
        if (c->io.fd < 0)
            return -1;
    }
    return 0;
}

static void deferred_flush(void *arg)
{
    struct conn *c = arg;
    c->flush_pending = 0;
    if (c->io.fd < 0 || c->state == CS_LINGER || hconn_pending(&c->pub) == 0)
        return;
    if (conn_flush(c) == 0)
        conn_want(c);
}

static void conn_io(struct loop_io *io, unsigned events)
{
    struct conn *c = io->data;
    struct hsrv *s = c->pub.srv;

    if (c->state == CS_LINGER) {
        conn_linger_read(c);
        return;
    }
    if (c->state == CS_PROXY) {
        int pr = read_proxy(c);
        if (pr < 0) {
            log_debug("%s: bad PROXY header from a client", s->name);
            conn_close_now(c);
            return;
        }
        if (pr == 0)
            return;
        c->state = c->ssl ? CS_HANDSHAKE : CS_HEAD;
        if (c->state == CS_HEAD) {
            conn_want(c);
            return;
        }
    }
    if (c->state == CS_HANDSHAKE) {
        handshake(c);
        if (c->io.fd < 0)
            return;
        if (c->state == CS_HANDSHAKE) {
            conn_want(c);
            return;
        }
    }
    if (hconn_pending(&c->pub) > 0 && conn_flush(c) < 0)
        return;
    if ((events & LOOP_ERROR) && c->state == CS_RESPONSE && hconn_pending(&c->pub) == 0) {
        /* The client is gone (reset or hung up) while we wait to answer. */
        conn_close_now(c);
        return;
    }
    if ((events & (LOOP_READ | LOOP_ERROR)) && (c->state == CS_HEAD || c->state == CS_BODY) &&
        !c->read_eof) {
        ssize_t r = conn_read(c);
        if (r < 0) {
            c->read_eof = 1;
            /* The client is gone or half-closed. An idle connection ends
             * here; one in a response finishes writing what it can. */
            if (!c->resp_open && c->state != CS_BODY &&
                (c->state != CS_HEAD || buf_avail(&c->in) == 0)) {
                conn_close_now(c);
                return;
            }
        }
        if (c->state == CS_HEAD || c->state == CS_BODY) {
            if (c->state == CS_HEAD && buf_avail(&c->in) > 0 && r > 0)
                arm_timer(c, s->lim.header_timeout_ms);
            conn_process(c);
            if (c->io.fd < 0)
                return;
        }
    }
    conn_want(c);
}

/*
 * Makes a connection of an accepted (or handed-off) socket and starts
 * watching it. Returns the connection, or NULL with fd closed.
 */
static struct conn *conn_new(struct hsrv *s, int fd, const struct net_addr *peer, SSL_CTX *ctx,
                             int proxy)
{
    struct conn *c = xcalloc(1, sizeof(*c));
    c->pub.peer = *peer;
    c->pub.local.len = sizeof(c->pub.local.ss);
    getsockname(fd, (struct sockaddr *)&c->pub.local.ss, &c->pub.local.len);
    c->pub.loop = s->loop;
    c->pub.srv = s;
    c->pub.srv_ud = s->arg;
    buf_init(&c->in);
    buf_init(&c->head);
    buf_init(&c->body);
    c->out_tail = &c->out_head;
    c->io.data = c;
    c->state = CS_HEAD;
    if (ctx) {
        c->ssl = SSL_new(ctx);
        if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1) {
            SSL_free(c->ssl);
            close(fd);
            free(c);
            return NULL;
        }
        SSL_set_accept_state(c->ssl);
        c->pub.is_tls = 1;
        c->state = CS_HANDSHAKE;
    }
    if (proxy) {
        c->pbuf = xmalloc(PROXY_V2_MAX);
        c->state = CS_PROXY;
    }
    if (loop_io_start(s->loop, &c->io, fd, LOOP_READ, conn_io) < 0) {
        SSL_free(c->ssl);
        close(fd);
        free(c->pbuf);
        free(c);
        return NULL;
    }
    loop_timer_init(s->loop, &c->timer, conn_timeout);
    c->timer.data = c;
    arm_timer(c, s->lim.header_timeout_ms);
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    if (s->load)
        atomic_fetch_add_explicit(s->load, 1, memory_order_relaxed);
    return c;
}

static void accept_cb(struct loop_io *io, unsigned events)
{
    struct listener *L = io->data;
    struct hsrv *s = L->srv;

    for (int i = 0; i < 64; i++) {
        struct net_addr peer = {.len = sizeof(peer.ss)};
        int fd = accept4(io->fd, (struct sockaddr *)&peer.ss, &peer.len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                log_warn("%s: accept", s->name);
            return;
        }
        if (s->nconns >= s->lim.max_conns || s->draining) {
            close(fd);
            continue;
        }
        net_nodelay(fd);
        conn_new(s, fd, &peer, L->ctx, L->proxy);
    }
}

/* Starts a handed-off connection with the bytes the switch read. */
static void handoff_one(struct hsrv *s, int fd, const struct handoff_msg *m, SSL_CTX *ctx)
{
    struct net_addr peer = {.len = sizeof(peer.ss)};
    if (getpeername(fd, (struct sockaddr *)&peer.ss, &peer.len) < 0) {
        /* The client left while its connection was in flight. */
        close(fd);
        return;
    }
    struct conn *c = conn_new(s, fd, &peer, ctx, 0);
    if (c == NULL)
        return;
    if (m->len > 0) {
        if (c->ssl) {
            BIO *mem = BIO_new(BIO_s_mem());
            BIO *sock = BIO_new_socket(fd, BIO_NOCLOSE);
            if (mem == NULL || sock == NULL || BIO_write(mem, m->bytes, (int)m->len) != (int)m->len) {
                BIO_free(mem);
                BIO_free(sock);
                conn_close_now(c);
                return;
            }
            /* Empty means "retry", not end of file. */
            BIO_set_mem_eof_return(mem, -1);
            SSL_set_bio(c->ssl, mem, sock);
            c->prefixed = 1;
        } else {
            buf_append(&c->in, m->bytes, m->len);
        }
    }
    /* The bytes are here already: run as if the socket had been readable. */
    conn_io(&c->io, LOOP_READ);
}

/* The server's TLS context for handed-off TLS connections: its TLS
 * listeners' (kept current by hsrv_set_ssl_ctx), or NULL. */
static SSL_CTX *server_ctx(const struct hsrv *s, int *has_plain)
{
    SSL_CTX *ctx = NULL;
    *has_plain = 0;
    for (const struct listener *L = s->listeners; L; L = L->next) {
        if (L->handoff)
            continue;
        if (L->ctx)
            ctx = L->ctx;
        else
            *has_plain = 1;
    }
    return ctx;
}

static void listener_free(struct hsrv *s, struct listener *L)
{
    struct listener **pp = &s->listeners;
    while (*pp && *pp != L)
        pp = &(*pp)->next;
    if (*pp)
        *pp = L->next;
    int fd = L->io.fd;
    loop_io_stop(&L->io);
    if (fd >= 0)
        close(fd);
    SSL_CTX_free(L->ctx);
    free(L->hbuf);
    free(L);
}

/*
 * Takes up to max hand-offs from L. Returns 1 when the switch closed the
 * connection (L is freed), else 0.
 */
static int handoff_take(struct listener *L, int max)
{
    struct hsrv *s = L->srv;

    for (int i = 0; i < max; i++) {
        int fd, has_plain;
        struct handoff_msg m;
        const char *why = NULL;
        int r = handoff_recv(L->io.fd, L->hbuf, &fd, &m, &why);
        if (r == 0)
            return 0;
        if (r == -2) {
            log_debug("%s: a switch closed its hand-off connection", s->name);
            listener_free(s, L);
            return 1;
        }
        SSL_CTX *ctx = server_ctx(s, &has_plain);
        if (r > 0 && ((m.tls && ctx == NULL) || (!m.tls && !has_plain))) {
            close(fd);
            r = -1;
            why = m.tls ? "TLS, but this server has no TLS listener"
                        : "plain HTTP, but this server has no plain listener";
        }
        if (r < 0) {
            if (L->m_handoff_bad)
                metric_inc(L->m_handoff_bad);
            log_warnx("%s: refused a connection hand-off: %s", s->name, why);
            continue;
        }
        if (L->m_handoff_ok)
            metric_inc(L->m_handoff_ok);
        if (s->nconns >= s->lim.max_conns || s->draining) {
            close(fd);
            continue;
        }
        handoff_one(s, fd, &m, m.tls ? ctx : NULL);
    }
    return 0;
}

static void handoff_cb(struct loop_io *io, unsigned events)
{
    handoff_take(io->data, 64);
}

/*
 * Tells the switches on our hand-off connections how many client
 * connections we have open, when it changed since the last report on that
 * connection (lib/handoff.h). A report that does not fit (the switch is
 * not reading) is sent again at the next round.
 */
static int report_load(struct hsrv *s)
{
    uint32_t load = s->load ? atomic_load_explicit(s->load, memory_order_relaxed) : s->nconns;
    int any = 0;
    for (struct listener *L = s->listeners; L; L = L->next) {
        if (!L->handoff)
            continue;
        any = 1;
        if (L->has_reported && L->reported == load)
            continue;
        if (handoff_report_send(L->io.fd, load) == 0) {
            L->reported = load;
            L->has_reported = 1;
        }
    }
    return any;
}

static void report_cb(struct loop_timer *t)
{
    struct hsrv *s = (struct hsrv *)((char *)t - offsetof(struct hsrv, report));
    if (report_load(s) && !s->draining)
        loop_timer_start(&s->report, HANDOFF_REPORT_MS);
}

struct hsrv *hsrv_create(struct loop *loop, const struct hsrv_handler *h, void *arg,
                         const struct hsrv_limits *lim, const char *name)
{
    struct hsrv *s = xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->h = *h;
    s->arg = arg;
    if (lim)
        s->lim = *lim;
    else
        hsrv_limits_default(&s->lim);
    s->name = xstrdup(name);
    loop_timer_init(loop, &s->report, report_cb);
    return s;
}

void hsrv_share_load(struct hsrv *s, _Atomic unsigned *load)
{
    s->load = load;
    if (load)
        atomic_fetch_add_explicit(load, s->nconns, memory_order_relaxed);
}

int hsrv_listen(struct hsrv *s, const struct net_addr *addr, SSL_CTX *ctx, int proxy_protocol)
{
    int fd = net_listen_tcp(addr, 1024);
    if (fd < 0)
        return fd;
    struct listener *L = xcalloc(1, sizeof(*L));
    L->srv = s;
    L->io.data = L;
    L->proxy = proxy_protocol;
    if (ctx) {
        SSL_CTX_up_ref(ctx);
        L->ctx = ctx;
    }
    int rc = loop_io_start(s->loop, &L->io, fd, LOOP_READ, accept_cb);
    if (rc < 0) {
        SSL_CTX_free(L->ctx);
        close(fd);
        free(L);
        return rc;
    }
    L->next = s->listeners;
    s->listeners = L;
    return 0;
}

void hsrv_handoff(struct hsrv *s, int fd, struct metric *ok, struct metric *bad)
{
    if (s->draining) {
        close(fd);
        return;
    }
    struct listener *L = xcalloc(1, sizeof(*L));
    L->srv = s;
    L->io.data = L;
    L->handoff = 1;
    L->m_handoff_ok = ok;
    L->m_handoff_bad = bad;
    L->hbuf = xmalloc(HANDOFF_BUF);
    if (loop_io_start(s->loop, &L->io, fd, LOOP_READ, handoff_cb) < 0) {
        log_warn("%s: epoll_ctl", s->name);
        close(fd);
        free(L->hbuf);
        free(L);
        return;
    }
    L->next = s->listeners;
    s->listeners = L;
    /* the switch learns our load at once, then as it changes */
    report_load(s);
    if (!loop_timer_active(&s->report))
        loop_timer_start(&s->report, HANDOFF_REPORT_MS);
}

void hsrv_set_via(struct hsrv *s, const char *via)
{
    free(s->via);
    s->via = via ? xstrdup(via) : NULL;
}

void hsrv_set_ssl_ctx(struct hsrv *s, SSL_CTX *ctx)
{
    for (struct listener *L = s->listeners; L; L = L->next) {
        if (L->ctx == NULL || L->ctx == ctx || L->handoff)
            continue;
        SSL_CTX_up_ref(ctx);
        SSL_CTX_free(L->ctx);
        L->ctx = ctx;
    }
}

static void close_listeners(struct hsrv *s)
{
    while (s->listeners)
        listener_free(s, s->listeners);
}

void hsrv_drain(struct hsrv *s, void (*done)(void *), void *arg)
{
    /* Connections a switch has handed over already are served: the switch
     * gets EPIPE for any further ones (and tries elsewhere), then what is
     * queued is taken. */
    for (struct listener *L = s->listeners, *next; L; L = next) {
        next = L->next;
        if (L->handoff) {
            /* Once shut for reading, the queue only empties, and then
             * reads as the end of the connection. */
            shutdown(L->io.fd, SHUT_RD);
            for (int round = 0; round < 1024 && !handoff_take(L, 64); round++)
                ;
        }
    }
    s->draining = 1;
    s->drain_done = done;
    s->drain_arg = arg;
    close_listeners(s);
    struct conn *c = s->conns;
    while (c) {
        struct conn *next = c->next;
        /* Idle between requests: closed. A connection that has not had its
         * first request yet (accepted or handed over just before the drain)
         * gets it, within header_timeout, and is closed after it. */
        if (!c->resp_open && c->state != CS_BODY && hconn_pending(&c->pub) == 0 && c->pub.nreq > 0)
            conn_close_now(c);
        else
            c->pub.closing = 1;
        c = next;
    }
    if (s->nconns == 0 && s->drain_done) {
        s->drain_done = NULL;
        done(arg);
    }
}

struct drain_all {
    _Atomic unsigned left;
    struct loop *main_loop;
    void (*done)(void *);
    void *arg;
};

static void drain_all_one(void *arg)
{
    struct drain_all *d = arg;
    if (atomic_fetch_sub(&d->left, 1) == 1) {
        loop_post(d->main_loop, d->done, d->arg);
        free(d);
    }
}

struct drain_start {
    struct drain_all *d;
    struct hsrv *s;
};

static void drain_all_start(void *arg)
{
    struct drain_start *ds = arg;
    hsrv_drain(ds->s, drain_all_one, ds->d);
    free(ds);
}

void hsrv_drain_all(struct hsrv *const *srvs, unsigned n, struct loop *main_loop,
                    void (*done)(void *), void *arg)
{
    if (n == 0) {
        loop_post(main_loop, done, arg);
        return;
    }
    struct drain_all *d = xcalloc(1, sizeof(*d));
    atomic_init(&d->left, n);
    d->main_loop = main_loop;
    d->done = done;
    d->arg = arg;
    for (unsigned i = 0; i < n; i++) {
        struct drain_start *ds = xmalloc(sizeof(*ds));
        ds->d = d;
        ds->s = srvs[i];
        loop_post(srvs[i]->loop, drain_all_start, ds);
    }
}

void hsrv_destroy(struct hsrv *s)
{
    if (s == NULL)
        return;
    s->drain_done = NULL;
    loop_timer_stop(&s->report);
    close_listeners(s);
    while (s->conns)
        conn_close_now(s->conns);
    free(s->name);
    free(s->via);
    free(s);
}

unsigned hsrv_nconns(const struct hsrv *s)
{
    return s->nconns;
}
