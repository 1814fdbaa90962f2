/*
 * upstream -- see upstream.h.
 *
 * A connection is either idle in its target's pool list or bound to one
 * request. Response framing follows RFC 9112 section 6.3: no body for HEAD,
 * 1xx, 204 and 304; chunked; Content-Length; else until close (and then
 * the connection is not reused).
 */
#include "cache/upstream.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

#define UP_READ_CHUNK 65536
#define UP_MAX_HEAD 65536

enum ustate { U_CONNECT, U_HANDSHAKE, U_SEND, U_HEAD, U_BODY, U_IDLE };

struct up_conn {
    struct loop_io io;
    struct loop_timer timer;
    struct up_pool *pool;
    const struct up_target *target; /* not owned */
    SSL *ssl;
    enum ustate state;
    struct buf in;
    struct up_req *req;
    int reused;
    struct up_conn *next, *prev; /* pool idle list */
};

struct up_req {
    struct up_pool *pool;
    const struct up_target *target;
    struct up_cb cb;
    void *arg;
    struct buf out;       /* request bytes */
    size_t out_off;
    int idempotent, head_method;
    int tries;
    int got_bytes;        /* some response bytes arrived: no retry */
    int paused;
    int done;
    struct up_conn *conn;
    enum http1_body body;
    uint64_t left;        /* Content-Length bytes left */
    struct http1_chunked chunked;
    int keep_alive;
    int pending_err;      /* for a deferred on_done */
};

struct up_pool {
    struct loop *loop;
    struct up_timeouts t;
    struct up_conn *idle; /* all targets; few enough to scan */
    unsigned nidle;
};

static void conn_io(struct loop_io *io, unsigned events);
static void conn_timeout(struct loop_timer *t);
static void req_fail(struct up_req *r, int err);

const char *up_strerror(int err)
{
    switch (err) {
    case UP_E_CONNECT: return "connect failed";
    case UP_E_TIMEOUT: return "timed out";
    case UP_E_PROTO: return "malformed response";
    case UP_E_RESET: return "connection closed before the response ended";
    case UP_E_TLS: return "TLS handshake failed";
    default: return "error";
    }
}

int up_err_status(int err)
{
    return err == UP_E_TIMEOUT ? 504 : 502;
}

struct up_pool *up_pool_create(struct loop *loop, const struct up_timeouts *t)
{
    struct up_pool *p = xcalloc(1, sizeof(*p));
    p->loop = loop;
    p->t = *t;
    return p;
}

static void conn_free_cb(void *arg)
{
    struct up_conn *c = arg;
    buf_fini(&c->in);
    free(c);
}

static void idle_unlink(struct up_conn *c)
{
    struct up_pool *p = c->pool;
    if (c->prev)
        c->prev->next = c->next;
    else if (p->idle == c)
        p->idle = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
    p->nidle--;
}

static void conn_close(struct up_conn *c)
{
    if (c->state == U_IDLE)
        idle_unlink(c);
    loop_timer_stop(&c->timer);
    int fd = c->io.fd;
    loop_io_stop(&c->io);
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (fd >= 0)
        close(fd);
    if (c->req)
        c->req->conn = NULL;
    c->req = NULL;
    loop_defer(c->pool->loop, conn_free_cb, c);
}

void up_pool_destroy(struct up_pool *p)
{
    if (p == NULL)
        return;
    while (p->idle)
        conn_close(p->idle);
    free(p);
}

static void req_free(struct up_req *r)
{
    buf_fini(&r->out);
    free(r);
}

static void req_free_cb(void *arg)
{
    req_free(arg);
}

/* Finishes a request; the connection goes back to the pool when it can. */
static void req_finish(struct up_req *r, int err)
{
    struct up_conn *c = r->conn;
    r->done = 1;
    if (c) {
        c->req = NULL;
        r->conn = NULL;
        struct up_pool *p = c->pool;
        if (err == 0 && r->keep_alive && p->nidle < p->t.max_idle &&
            buf_avail(&c->in) == 0) {
            c->state = U_IDLE;
            c->reused = 1;
            c->next = p->idle;
            c->prev = NULL;
            if (p->idle)
                p->idle->prev = c;
            p->idle = c;
            p->nidle++;
            loop_io_modify(&c->io, LOOP_READ);
            loop_timer_start(&c->timer, p->t.idle_ms);
        } else {
            conn_close(c);
        }
    }
    r->cb.on_done(r->arg, err);
    loop_defer(r->pool->loop, req_free_cb, r);
}

static void deferred_fail(void *arg)
{
    struct up_req *r = arg;
    if (r->done)
        return; /* cancelled meanwhile */
    req_fail(r, r->pending_err);
}

static int conn_start(struct up_req *r);

static void req_fail(struct up_req *r, int err)
{
    struct up_conn *c = r->conn;
    int reused = c ? c->reused : 0;
    if (c) {
        c->req = NULL;
        r->conn = NULL;
        conn_close(c);
    }
    /* One retry for idempotent requests that saw no response byte: the
     * usual case is a pooled connection the origin closed meanwhile. */
    if (r->idempotent && !r->got_bytes && r->tries < 2 && (reused || err == UP_E_CONNECT)) {
        log_debug("upstream %s: %s, retrying", r->target->label, up_strerror(err));
        if (conn_start(r) == 0)
            return;
    }
    log_warnx("upstream %s: %s", r->target->label, up_strerror(err));
    r->done = 1;
    r->cb.on_done(r->arg, err);
    loop_defer(r->pool->loop, req_free_cb, r);
}

static struct up_conn *pool_take(struct up_pool *p, const struct up_target *t)
{
    for (struct up_conn *c = p->idle; c; c = c->next) {
        if (c->target == t) {
            idle_unlink(c);
            loop_timer_stop(&c->timer);
            return c;
        }
    }
    return NULL;
}

static void conn_send(struct up_conn *c);

/* Binds r to a pooled or new connection. Returns 0, or -1 (r not failed). */
static int conn_start(struct up_req *r)
{
    struct up_pool *p = r->pool;
    struct up_conn *c = r->tries == 0 ? pool_take(p, r->target) : NULL;

    r->tries++;
    r->out_off = 0;
    if (c) {
        c->req = r;
        r->conn = c;
        c->state = U_SEND;
        buf_reset(&c->in);
        loop_timer_start(&c->timer, p->t.response_ms);
        loop_io_modify(&c->io, LOOP_WRITE);
        return 0;
    }
    int fd = net_connect_tcp(&r->target->addr);
    if (fd < 0) {
        r->pending_err = UP_E_CONNECT;
        loop_defer(p->loop, deferred_fail, r);
        return 0;
    }
    net_nodelay(fd);
    c = xcalloc(1, sizeof(*c));
    c->pool = p;
    c->target = r->target;
    c->state = U_CONNECT;
    buf_init(&c->in);
    c->io.data = c;
    loop_timer_init(p->loop, &c->timer, conn_timeout);
    c->timer.data = c;
    if (loop_io_start(p->loop, &c->io, fd, LOOP_WRITE, conn_io) < 0) {
        close(fd);
        buf_fini(&c->in);
        free(c);
        r->pending_err = UP_E_CONNECT;
        loop_defer(p->loop, deferred_fail, r);
        return 0;
    }
    c->req = r;
    r->conn = c;
    loop_timer_start(&c->timer, p->t.connect_ms);
    return 0;
}

struct up_req *up_request(struct up_pool *p, const struct up_target *t, const struct buf *head,
                          const char *body, size_t body_len, int idempotent, int head_method,
                          const struct up_cb *cb, void *arg)
{
    struct up_req *r = xcalloc(1, sizeof(*r));
    r->pool = p;
    r->target = t;
    r->cb = *cb;
    r->arg = arg;
    r->idempotent = idempotent;
    r->head_method = head_method;
    buf_init(&r->out);
    buf_append(&r->out, buf_head(head), buf_avail(head));
    if (body_len)
        buf_append(&r->out, body, body_len);
    conn_start(r);
    return r;
}

void up_cancel(struct up_req *r)
{
    if (r == NULL || r->done)
        return;
    r->done = 1;
    if (r->conn) {
        r->conn->req = NULL;
        conn_close(r->conn);
        r->conn = NULL;
    }
    loop_defer(r->pool->loop, req_free_cb, r);
}

void up_pause(struct up_req *r, int paused)
{
    if (r->done || r->paused == paused)
        return;
    r->paused = paused;
    if (r->conn && r->conn->state == U_BODY) {
        loop_io_modify(&r->conn->io, paused ? 0 : LOOP_READ);
        if (paused)
            loop_timer_stop(&r->conn->timer);
        else
            loop_timer_start(&r->conn->timer, r->pool->t.read_ms);
    }
}

static void conn_timeout(struct loop_timer *t)
{
    struct up_conn *c = t->data;
    if (c->state == U_IDLE || c->req == NULL) {
        conn_close(c);
        return;
    }
    req_fail(c->req, UP_E_TIMEOUT);
}

static int start_tls(struct up_conn *c)
{
    c->ssl = SSL_new(c->target->ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->io.fd) != 1)
        return -1;
    SSL_set_connect_state(c->ssl);
    if (c->target->sni) {
        SSL_set_tlsext_host_name(c->ssl, c->target->sni);
        SSL_set1_host(c->ssl, c->target->sni);
    }
    c->state = U_HANDSHAKE;
    return 0;
}

static ssize_t conn_read(struct up_conn *c, char *p, size_t n)
{
    if (c->ssl) {
        ERR_clear_error();
        int r = SSL_read(c->ssl, p, (int)n);
        if (r > 0)
            return r;
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return -EAGAIN;
        return 0; /* treat TLS errors and close_notify as EOF */
    }
    ssize_t r = recv(c->io.fd, p, n, 0);
    if (r < 0)
        return (errno == EAGAIN || errno == EINTR) ? -EAGAIN : 0;
    return r;
}

/* Delivers body bytes from c->in. Returns 1 when the body ended. */
static int deliver_body(struct up_req *r, struct up_conn *c)
{
    while (buf_avail(&c->in) > 0 && !r->done) {
        const char *p = buf_head(&c->in);
        size_t n = buf_avail(&c->in);
        if (r->body == HTTP1_BODY_LENGTH) {
            size_t k = n < r->left ? n : (size_t)r->left;
            r->left -= k;
            buf_consume(&c->in, k);
            r->cb.on_data(r->arg, p, k);
            if (r->left == 0)
                return 1;
        } else if (r->body == HTTP1_BODY_CHUNKED) {
            size_t used = 0, dlen = 0;
            const char *d = NULL;
            int rc = http1_chunked_feed(&r->chunked, p, n, &used, &d, &dlen);
            if (rc < 0)
                return -1;
            /* Copy out before consuming: on_data may not keep d. */
            if (rc == 1)
                r->cb.on_data(r->arg, d, dlen);
            buf_consume(&c->in, used);
            if (rc == 2)
                return 1;
            if (rc == 0)
                return 0;
        } else {
            buf_consume(&c->in, n);
            r->cb.on_data(r->arg, p, n);
        }
    }
    return 0;
}

static void handle_readable(struct up_conn *c)
{
    struct up_req *r = c->req;
    struct up_pool *p = c->pool;

    if (c->state == U_IDLE) {
        /* An idle connection that becomes readable was closed by the server
         * (or sent garbage): drop it. */
        conn_close(c);
        return;
    }
    for (int rounds = 0; rounds < 16 && c->req == r && r && !r->done && !r->paused; rounds++) {
        char *dst = buf_reserve(&c->in, UP_READ_CHUNK);
        ssize_t n = conn_read(c, dst, UP_READ_CHUNK);
        if (n == -EAGAIN)
            return;
        if (n == 0) {
            if (c->state == U_BODY && r->body == HTTP1_BODY_EOF) {
                r->keep_alive = 0;
                req_finish(r, 0);
            } else {
                req_fail(r, UP_E_RESET);
            }
            return;
        }
        buf_commit(&c->in, (size_t)n);
        r->got_bytes = 1;
        if (c->state == U_HEAD) {
            struct http1_limits lim;
            struct http1_msg m;
            http1_limits_default(&lim);
            lim.max_head_bytes = UP_MAX_HEAD;
            for (;;) {
                int hl = http1_parse_response(buf_head(&c->in), buf_avail(&c->in), &lim,
                                              r->head_method, &m);
                if (hl == 0) {
                    if (buf_avail(&c->in) > UP_MAX_HEAD) {
                        req_fail(r, UP_E_PROTO);
                        return;
                    }
                    break;
                }
                if (hl < 0) {
                    req_fail(r, UP_E_PROTO);
                    return;
                }
                if (m.status >= 100 && m.status < 200) {
                    buf_consume(&c->in, (size_t)hl);
                    continue; /* interim responses are not forwarded */
                }
                r->body = m.body;
                r->left = m.content_length;
                r->keep_alive = m.keep_alive && m.body != HTTP1_BODY_EOF;
                http1_chunked_init(&r->chunked);
                c->state = U_BODY;
                r->cb.on_head(r->arg, &m);
                buf_consume(&c->in, (size_t)hl);
                if (r->done || c->req != r)
                    return;
                if (r->body == HTTP1_BODY_NONE ||
                    (r->body == HTTP1_BODY_LENGTH && r->left == 0)) {
                    req_finish(r, 0);
                    return;
                }
                loop_timer_start(&c->timer, p->t.read_ms);
                break;
            }
        }
        if (c->state == U_BODY) {
            int rc = deliver_body(r, c);
            if (r->done || c->req != r)
                return;
            if (rc < 0) {
                req_fail(r, UP_E_PROTO);
                return;
            }
            if (rc == 1) {
                req_finish(r, 0);
                return;
            }
            loop_timer_start(&c->timer, p->t.read_ms);
        }
    }
}

static void conn_send(struct up_conn *c)
{
    struct up_req *r = c->req;
    while (r->out_off < buf_avail(&r->out)) {
        const char *p = buf_head(&r->out) + r->out_off;
        size_t n = buf_avail(&r->out) - r->out_off;
        ssize_t w;
        if (c->ssl) {
            ERR_clear_error();
            int k = SSL_write(c->ssl, p, (int)n);
            if (k <= 0) {
                int e = SSL_get_error(c->ssl, k);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
                    return;
                req_fail(r, UP_E_RESET);
                return;
            }
            w = k;
        } else {
            w = send(c->io.fd, p, n, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    return;
                req_fail(r, UP_E_RESET);
                return;
            }
        }
        r->out_off += (size_t)w;
    }
    c->state = U_HEAD;
    loop_io_modify(&c->io, LOOP_READ);
    loop_timer_start(&c->timer, c->pool->t.response_ms);
}

static void conn_io(struct loop_io *io, unsigned events)
{
    struct up_conn *c = io->data;
    struct up_req *r = c->req;

    if (c->state == U_IDLE || r == NULL) {
        conn_close(c);
        return;
    }
    if (c->state == U_CONNECT) {
        int err = net_connect_result(io->fd);
        if (err < 0) {
            req_fail(r, UP_E_CONNECT);
            return;
        }
        if (c->target->tls) {
            if (start_tls(c) < 0) {
                req_fail(r, UP_E_TLS);
                return;
            }
        } else {
            c->state = U_SEND;
        }
        loop_timer_start(&c->timer, c->pool->t.response_ms);
    }
    if (c->state == U_HANDSHAKE) {
        ERR_clear_error();
        int k = SSL_do_handshake(c->ssl);
        if (k != 1) {
            int e = SSL_get_error(c->ssl, k);
            if (e == SSL_ERROR_WANT_READ) {
                loop_io_modify(&c->io, LOOP_READ);
                return;
            }
            if (e == SSL_ERROR_WANT_WRITE) {
                loop_io_modify(&c->io, LOOP_WRITE);
                return;
            }
            long v = SSL_get_verify_result(c->ssl);
            log_warnx("upstream %s: TLS handshake failed%s%s", c->target->label,
                      v != X509_V_OK ? ": " : "",
                      v != X509_V_OK ? X509_verify_cert_error_string(v) : "");
            req_fail(r, UP_E_TLS);
            return;
        }
        c->state = U_SEND;
        loop_io_modify(&c->io, LOOP_WRITE);
    }
    if (c->state == U_SEND) {
        conn_send(c);
        return;
    }
    if (c->state == U_HEAD || c->state == U_BODY)
        handle_readable(c);
}
