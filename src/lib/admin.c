/*
 * admin -- see admin.h. Each connection reads one request head (and a body
 * if Content-Length says so), dispatches it, writes the whole response and
 * closes. The HTTP parser is the same strict one the cache uses.
 */
#include "lib/admin.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http1.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/util.h"

#define ADMIN_MAX_BODY (64u * 1024)
#define ADMIN_TIMEOUT_MS 10000
#define ADMIN_MAX_CONNS 64

struct route {
    char *method; /* owned */
    char *path;   /* owned */
    admin_handler_cb cb;
    void *arg;
};

struct admin_conn {
    struct admin *a;
    struct loop_io io;
    struct loop_timer timer;
    struct buf in, out;
    int writing;
    struct admin_conn *next, *prev;
};

struct admin {
    struct loop *loop;
    struct loop_io lio;
    char *token;        /* owned, wiped on free */
    int ready;
    struct route *routes;
    size_t nroutes;
    struct admin_conn *conns;
    unsigned nconns;
};

static void conn_io(struct loop_io *io, unsigned events);

static void conn_free_cb(void *arg)
{
    struct admin_conn *c = arg;
    buf_fini(&c->in);
    buf_fini(&c->out);
    free(c);
}

static void conn_close(struct admin_conn *c)
{
    struct admin *a = c->a;
    loop_timer_stop(&c->timer);
    if (c->io.fd >= 0) {
        int fd = c->io.fd;
        loop_io_stop(&c->io);
        close(fd);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    a->nconns--;
    loop_defer(a->loop, conn_free_cb, c);
}

static void respond(struct admin_conn *c, int status, const char *ctype, const struct buf *body)
{
    const char *reason = status == 200 ? "OK" : status == 202 ? "Accepted" :
                         status == 400 ? "Bad Request" : status == 401 ? "Unauthorized" :
                         status == 403 ? "Forbidden" : status == 404 ? "Not Found" :
                         status == 405 ? "Method Not Allowed" : status == 413 ? "Content Too Large" :
                         status == 503 ? "Service Unavailable" : "Error";
    size_t n = body ? buf_avail(body) : 0;
    buf_printf(&c->out,
               "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
               "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
               status, reason, ctype, n,
               status == 401 ? "WWW-Authenticate: Bearer realm=\"ferry\"\r\n" : "");
    if (n)
        buf_append(&c->out, buf_head(body), n);
    c->writing = 1;
    loop_io_modify(&c->io, LOOP_WRITE);
    /* Most answers fit the socket buffer: send now rather than one loop
     * iteration later, which matters when the loop is busy (a table load
     * on the main loop makes each iteration tens of ms). */
    conn_io(&c->io, LOOP_WRITE);
}

static void respond_text(struct admin_conn *c, int status, const char *text)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, text);
    respond(c, status, "text/plain; charset=utf-8", &b);
    buf_fini(&b);
}

static void respond_error(struct admin_conn *c, int status, const char *msg)
{
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "{\"error\": \"%s\"}\n", msg);
    respond(c, status, "application/json", &b);
    buf_fini(&b);
}

static int token_ok(const struct admin *a, const struct http1_msg *m)
{
    const struct http1_hdr *h = http1_find(m, "authorization");
    size_t tlen;
    if (a->token == NULL || h == NULL || h->value_len < 7 || strncasecmp(h->value, "Bearer ", 7))
        return 0;
    tlen = strlen(a->token);
    if (h->value_len - 7 != tlen)
        return 0;
    return CRYPTO_memcmp(h->value + 7, a->token, tlen) == 0;
}

static int path_match(const char *pattern, const char *path)
{
    size_t n = strlen(pattern);
    if (n > 0 && pattern[n - 1] == '*')
        return strncmp(pattern, path, n - 1) == 0;
    return strcmp(pattern, path) == 0;
}

static void dispatch(struct admin_conn *c, const struct http1_msg *m, const char *body,
                     size_t body_len)
{
    struct admin *a = c->a;
    char *method = xstrndup(m->method, m->method_len);
    char *target = xstrndup(m->target, m->target_len);
    char *q = strchr(target, '?');
    struct buf out;

    buf_init(&out);
    if (q)
        *q++ = '\0';
    if (strcmp(target, "/healthz") == 0) {
        respond_text(c, 200, "ok\n");
    } else if (strcmp(target, "/readyz") == 0) {
        respond_text(c, a->ready ? 200 : 503, a->ready ? "ready\n" : "not ready\n");
    } else if (strcmp(target, "/metrics") == 0) {
        metrics_render(&out);
        respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", &out);
    } else if (strncmp(target, "/api/v1/", 8) == 0) {
        if (a->token == NULL) {
            respond_error(c, 403, "the admin API is closed: no api token configured");
            goto out;
        }
        if (!token_ok(a, m)) {
            respond_error(c, 401, "missing or wrong bearer token");
            goto out;
        }
        int path_found = 0;
        for (size_t i = 0; i < a->nroutes; i++) {
            struct route *r = &a->routes[i];
            if (!path_match(r->path, target + 7))
                continue;
            path_found = 1;
            if (strcmp(r->method, method) != 0)
                continue;
            struct admin_req req = {.method = method, .path = target, .query = q ? q : "",
                                    .body = body, .body_len = body_len};
            const char *ctype = "application/json";
            int status = r->cb(r->arg, &req, &out, &ctype);
            respond(c, status, ctype, &out);
            goto out;
        }
        respond_error(c, path_found ? 405 : 404, path_found ? "method not allowed" : "no such endpoint");
    } else {
        respond_error(c, 404, "no such endpoint");
    }
out:
    buf_fini(&out);
    free(method);
    free(target);
}

static void conn_io(struct loop_io *io, unsigned events)
{
    struct admin_conn *c = io->data;
    struct http1_limits lim;
    struct http1_msg m;

    if (c->writing) {
        ssize_t n = send(io->fd, buf_head(&c->out), buf_avail(&c->out), MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n > 0)
            buf_consume(&c->out, (size_t)n);
        if (n <= 0 || buf_avail(&c->out) == 0)
            conn_close(c);
        return;
    }
    char *p = buf_reserve(&c->in, 4096);
    ssize_t n = recv(io->fd, p, 4096, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(c);
        return;
    }
    buf_commit(&c->in, (size_t)n);
    http1_limits_default(&lim);
    int r = http1_parse_request(buf_head(&c->in), buf_avail(&c->in), &lim, &m);
    if (r == 0)
        return;
    if (r < 0) {
        respond_error(c, http1_err_status(r), http1_strerror(r));
        return;
    }
    size_t body_len = 0;
    if (m.body == HTTP1_BODY_CHUNKED) {
        respond_error(c, 411, "send a Content-Length");
        return;
    }
    if (m.body == HTTP1_BODY_LENGTH) {
        if (m.content_length > ADMIN_MAX_BODY) {
            respond_error(c, 413, "body too large");
            return;
        }
        body_len = (size_t)m.content_length;
        if (buf_avail(&c->in) < (size_t)r + body_len)
            return; /* wait for the rest of the body */
    }
    dispatch(c, &m, buf_head(&c->in) + r, body_len);
}

static void conn_timeout(struct loop_timer *t)
{
    conn_close(t->data);
}

static void accept_cb(struct loop_io *io, unsigned events)
{
    struct admin *a = io->data;
    for (int i = 0; i < 16; i++) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR)
                log_warn("admin: accept");
            return;
        }
        if (a->nconns >= ADMIN_MAX_CONNS) {
            close(fd);
            continue;
        }
        struct admin_conn *c = xcalloc(1, sizeof(*c));
        c->a = a;
        buf_init(&c->in);
        buf_init(&c->out);
        c->io.data = c;
        if (loop_io_start(a->loop, &c->io, fd, LOOP_READ, conn_io) < 0) {
            close(fd);
            free(c);
            continue;
        }
        loop_timer_init(a->loop, &c->timer, conn_timeout);
        c->timer.data = c;
        loop_timer_start(&c->timer, ADMIN_TIMEOUT_MS);
        c->next = a->conns;
        if (a->conns)
            a->conns->prev = c;
        a->conns = c;
        a->nconns++;
        /* The request is usually there already (loopback, curl): read it
         * now, not after the next poll. */
        conn_io(&c->io, LOOP_READ);
    }
}

struct admin *admin_create(struct loop *l, const struct net_addr *addr, const char *token)
{
    char as[80];
    int fd = net_listen_tcp(addr, 64);
    if (fd < 0) {
        errno = -fd;
        log_warn("admin: listen on %s", net_addr_str(addr, as, sizeof(as)));
        return NULL;
    }
    struct admin *a = xcalloc(1, sizeof(*a));
    a->loop = l;
    a->lio.data = a;
    if (loop_io_start(l, &a->lio, fd, LOOP_READ, accept_cb) < 0)
        fatal("admin: watch listener");
    admin_set_token(a, token);
    log_info("admin: listening on %s%s", net_addr_str(addr, as, sizeof(as)),
             token ? "" : " (API closed: no token configured)");
    return a;
}

void admin_set_token(struct admin *a, const char *token)
{
    if (a->token) {
        mem_wipe(a->token, strlen(a->token));
        free(a->token);
    }
    a->token = token && token[0] ? xstrdup(token) : NULL;
}

void admin_set_ready(struct admin *a, int ready)
{
    a->ready = ready;
}

void admin_route(struct admin *a, const char *method, const char *path, admin_handler_cb cb,
                 void *arg)
{
    a->routes = xrealloc(a->routes, (a->nroutes + 1) * sizeof(*a->routes));
    a->routes[a->nroutes++] = (struct route){xstrdup(method), xstrdup(path), cb, arg};
}

void admin_destroy(struct admin *a)
{
    if (a == NULL)
        return;
    while (a->conns)
        conn_close(a->conns);
    int fd = a->lio.fd;
    loop_io_stop(&a->lio);
    if (fd >= 0)
        close(fd);
    for (size_t i = 0; i < a->nroutes; i++) {
        free(a->routes[i].method);
        free(a->routes[i].path);
    }
    free(a->routes);
    admin_set_token(a, NULL);
    free(a);
}

int admin_param(const char *query, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    const char *p = query;
    out[0] = '\0';
    while (p && *p) {
        const char *amp = strchr(p, '&');
        const char *end = amp ? amp : p + strlen(p);
        if ((size_t)(end - p) > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            size_t o = 0;
            for (const char *s = p + nlen + 1; s < end; s++) {
                char ch = *s;
                if (ch == '+') {
                    ch = ' ';
                } else if (ch == '%' && end - s >= 3 && hex_digit(s[1]) >= 0 && hex_digit(s[2]) >= 0) {
                    ch = (char)(hex_digit(s[1]) * 16 + hex_digit(s[2]));
                    s += 2;
                }
                if (o + 1 >= outlen)
                    return -1;
                out[o++] = ch;
            }
            out[o] = '\0';
            return 0;
        }
        p = amp ? amp + 1 : NULL;
    }
    return -1;
}
