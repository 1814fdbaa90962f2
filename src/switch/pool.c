/*
 * pool -- see pool.h.
 *
 * The checker keeps one struct check per backend, each a small state
 * machine on the checker's loop: IDLE (timer until the next check) ->
 * CONNECTING -> (HTTP: SENDING -> READING; TLS: HANDSHAKE) -> IDLE. One
 * check at a time per backend; a check that has not finished within the
 * timeout fails. A TLS check is a full handshake (TLS 1.2 or newer, no
 * session reuse, the certificate not verified: it proves the server's TLS
 * stack answers, which a TCP connect to a wedged server does not).
 */
#include "switch/pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "lib/log.h"
#include "lib/util.h"

static const char *const step_names[SW_NSTEPS] = {
    "psk", "ticket", "session_id", "sticky", "hash", "leastconn", "roundrobin", "url", "fallback",
};

struct sw_backend *sw_backend_create(const char *name, uint64_t id)
{
    struct sw_backend *b = xcalloc(1, sizeof(*b));
    atomic_init(&b->refs, 1);
    b->name = xstrdup(name);
    b->id = id;
    atomic_init(&b->up, 1);
    atomic_init(&b->weight, 1);
    return b;
}

struct sw_backend *sw_backend_ref(struct sw_backend *b)
{
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

void sw_backend_unref(struct sw_backend *b)
{
    if (b == NULL || atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (b->hsock) {
        for (int i = 0; i < SW_MAX_WORKERS * SW_HANDOFF_STREAMS; i++)
            if (b->hsock[i] >= 0)
                close(b->hsock[i]);
        free(b->hsock);
    }
    free(b->name);
    free(b);
}

void sw_backend_bind_metrics(struct sw_backend *b)
{
    char labels[256];
    if (b->m_up)
        return;
    for (int s = 0; s < SW_NSTEPS; s++) {
        snprintf(labels, sizeof(labels), "backend=\"%s\",step=\"%s\"", b->name, step_names[s]);
        b->m_routed[s] = metric_counter("ferry_switch_connections_total", labels,
                                        "Connections routed, by backend and deciding policy step");
        for (int r = 0; r < 2; r++) {
            snprintf(labels, sizeof(labels), "backend=\"%s\",step=\"%s\",handshake=\"%s\"", b->name,
                     step_names[s], r == SW_HS_RESUMED ? "resumed" : "full");
            b->m_hs[s][r] = metric_counter("ferry_switch_handshakes_total", labels,
                                           "TLS handshakes seen in ServerHellos, by backend, step and kind");
        }
    }
    snprintf(labels, sizeof(labels), "backend=\"%s\"", b->name);
    b->m_up = metric_gauge("ferry_switch_backend_up", labels, "1 while the backend is in service");
    b->m_active = metric_gauge("ferry_switch_backend_active_connections", labels,
                               "Connections routed to the backend and still open");
    b->m_connect_fail = metric_counter("ferry_switch_backend_connect_failures_total", labels,
                                       "Connects to the backend that failed (passive detection)");
    b->m_check_fail = metric_counter("ferry_switch_backend_check_failures_total", labels,
                                     "Active health checks of the backend that failed");
    if (b->has_handoff) {
        b->m_handoff = metric_counter("ferry_switch_handoffs_total", labels,
                                      "Client connections handed over to the backend (not relayed)");
        b->m_handoff_fallback = metric_counter("ferry_switch_handoff_fallbacks_total", labels,
                                               "Hand-offs the backend's full queue refused, relayed instead");
        b->m_reported_load = metric_gauge("ferry_switch_backend_reported_load", labels,
                                          "Client connections the backend last reported open (hand-off)");
    }
    metric_set(b->m_up, atomic_load(&b->up));
}

int sw_backend_same(const struct sw_backend *a, const struct sw_backend *b)
{
    return strcmp(a->name, b->name) == 0 && a->label == b->label && a->has_http == b->has_http &&
           a->addr.len == b->addr.len && memcmp(&a->addr.ss, &b->addr.ss, a->addr.len) == 0 &&
           a->check.len == b->check.len && memcmp(&a->check.ss, &b->check.ss, a->check.len) == 0 &&
           (!a->has_http || (a->http.len == b->http.len &&
                             memcmp(&a->http.ss, &b->http.ss, a->http.len) == 0)) &&
           a->has_handoff == b->has_handoff &&
           (!a->has_handoff || strcmp(a->handoff.sun.sun_path, b->handoff.sun.sun_path) == 0);
}

void sw_backend_set_up(struct sw_backend *b, int up, const char *why)
{
    char as[80];
    if (atomic_exchange(&b->up, up) == up)
        return;
    if (b->m_up)
        metric_set(b->m_up, up);
    if (up)
        log_info("switch: backend %s (%s) is up: %s", b->name, net_addr_str(&b->addr, as, sizeof(as)), why);
    else
        log_warnx("switch: backend %s (%s) is down: %s", b->name, net_addr_str(&b->addr, as, sizeof(as)), why);
}

void sw_backend_passive(struct sw_backend *b, int ok, unsigned fall)
{
    if (ok) {
        atomic_store_explicit(&b->passive_fails, 0, memory_order_relaxed);
        return;
    }
    if (b->m_connect_fail)
        metric_inc(b->m_connect_fail);
    unsigned n = atomic_fetch_add(&b->passive_fails, 1) + 1;
    if (fall > 0 && n >= fall)
        sw_backend_set_up(b, 0, "connects failed");
}

void sw_pool_fini(struct sw_pool *p)
{
    for (size_t i = 0; i < p->n; i++)
        sw_backend_unref(p->b[i]);
    free(p->b);
    p->b = NULL;
    p->n = 0;
}

struct sw_backend *sw_pool_find(const struct sw_pool *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->b[i]->name, name) == 0)
            return p->b[i];
    return NULL;
}

struct sw_backend *sw_pool_by_id(const struct sw_pool *p, uint64_t id)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->b[i]->id == id)
            return p->b[i];
    return NULL;
}

/* The active checker. */

enum cstate { CK_IDLE, CK_CONNECTING, CK_SENDING, CK_READING, CK_HANDSHAKE };

struct check {
    struct sw_checker *ck;
    struct sw_backend *b;        /* a reference */
    struct loop_timer timer;     /* next check, or this check's deadline */
    struct loop_io io;
    int fd;
    enum cstate state;
    char req[384];
    size_t req_len, sent;
    char resp[64];
    size_t resp_len;
    SSL *ssl;                    /* TLS checks: this check's handshake */
    unsigned ok, bad;            /* consecutive results */
    int seen;                    /* checked at least once */
    struct check *next;
};

struct sw_checker {
    struct loop *loop;
    struct sw_check_conf conf;
    struct check *checks;
    SSL_CTX *tls;                /* client context for TLS checks, made on first use */
};

static void check_start(struct check *k);
static void check_tls(struct check *k);

static void check_close_fd(struct check *k)
{
    if (k->ssl) {
        SSL_free(k->ssl);
        k->ssl = NULL;
    }
    if (k->fd >= 0) {
        loop_io_stop(&k->io);
        close(k->fd);
        k->fd = -1;
    }
}

/* Ends the current check with a result and schedules the next one. */
static void check_done(struct check *k, int ok, const char *why)
{
    struct sw_checker *ck = k->ck;
    check_close_fd(k);
    k->state = CK_IDLE;
    if (ok) {
        k->bad = 0;
        k->ok++;
        if (!atomic_load(&k->b->up) && k->ok >= ck->conf.rise) {
            atomic_store(&k->b->passive_fails, 0);
            sw_backend_set_up(k->b, 1, "health checks pass");
        }
    } else {
        char as[80];
        k->ok = 0;
        k->bad++;
        if (k->b->m_check_fail)
            metric_inc(k->b->m_check_fail);
        log_debug("switch: health check of %s (%s) failed: %s", k->b->name,
                  net_addr_str(&k->b->check, as, sizeof(as)), why);
        if (atomic_load(&k->b->up) && k->bad >= ck->conf.fall)
            sw_backend_set_up(k->b, 0, why);
    }
    k->seen = 1;
    loop_timer_start(&k->timer, ck->conf.interval_ms);
}

static void check_io(struct loop_io *io, unsigned events)
{
    struct check *k = io->data;
    if (k->state == CK_CONNECTING) {
        int err = net_connect_result(k->fd);
        if (err < 0) {
            check_done(k, 0, strerror(-err));
            return;
        }
        if (k->ck->conf.type == SW_CHECK_TCP) {
            check_done(k, 1, "connected");
            return;
        }
        k->state = k->ck->conf.type == SW_CHECK_TLS ? CK_HANDSHAKE : CK_SENDING;
    }
    if (k->state == CK_HANDSHAKE) {
        check_tls(k);
        return;
    }
    if (k->state == CK_SENDING) {
        ssize_t w = send(k->fd, k->req + k->sent, k->req_len - k->sent, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            check_done(k, 0, strerror(errno));
            return;
        }
        if (w > 0)
            k->sent += (size_t)w;
        if (k->sent < k->req_len)
            return;
        k->state = CK_READING;
        loop_io_modify(&k->io, LOOP_READ);
        return;
    }
    if (k->state == CK_READING) {
        ssize_t r = recv(k->fd, k->resp + k->resp_len, sizeof(k->resp) - 1 - k->resp_len, 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (r > 0)
            k->resp_len += (size_t)r;
        k->resp[k->resp_len] = '\0';
        /* "HTTP/1.x 2xx" is all we need. */
        if (k->resp_len >= 12 || r <= 0) {
            int ok = k->resp_len >= 12 && strncmp(k->resp, "HTTP/1.", 7) == 0 && k->resp[9] == '2';
            check_done(k, ok, ok ? "2xx" : r < 0 ? strerror(errno) : "not a 2xx answer");
        }
    }
}

static SSL_CTX *check_tls_ctx(struct sw_checker *ck)
{
    if (ck->tls)
        return ck->tls;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    ck->tls = ctx;
    return ctx;
}

/* Drives the TLS handshake of a check; done when it completes or fails. */
static void check_tls(struct check *k)
{
    if (k->ssl == NULL) {
        SSL_CTX *ctx = check_tls_ctx(k->ck);
        k->ssl = ctx ? SSL_new(ctx) : NULL;
        if (k->ssl == NULL || SSL_set_fd(k->ssl, k->fd) != 1) {
            check_done(k, 0, "cannot set up TLS");
            return;
        }
        if (k->ck->conf.sni[0])
            SSL_set_tlsext_host_name(k->ssl, k->ck->conf.sni);
    }
    ERR_clear_error();
    int r = SSL_connect(k->ssl);
    if (r == 1) {
        /* One close_notify, so the server logs a clean close. */
        SSL_shutdown(k->ssl);
        check_done(k, 1, "TLS handshake");
        return;
    }
    int e = SSL_get_error(k->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        loop_io_modify(&k->io, LOOP_READ);
        return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        loop_io_modify(&k->io, LOOP_WRITE);
        return;
    }
    char why[160];
    unsigned long ee = ERR_peek_last_error();
    const char *reason = ee ? ERR_reason_error_string(ee) : NULL;
    if (reason)
        snprintf(why, sizeof(why), "TLS handshake failed: %s", reason);
    else
        snprintf(why, sizeof(why), "TLS handshake failed (%s)", e == SSL_ERROR_SYSCALL ? "connection closed" : "error");
    ERR_clear_error();
    check_done(k, 0, why);
}

static void check_timer(struct loop_timer *t)
{
    struct check *k = t->data;
    if (k->state == CK_IDLE)
        check_start(k);
    else
        check_done(k, 0, "timed out");
}

static void check_start(struct check *k)
{
    struct sw_checker *ck = k->ck;
    int fd = net_connect_tcp(&k->b->check);
    if (fd < 0) {
        check_done(k, 0, strerror(-fd));
        return;
    }
    k->fd = fd;
    k->io.data = k;
    if (loop_io_start(ck->loop, &k->io, fd, LOOP_WRITE, check_io) < 0) {
        close(fd);
        k->fd = -1;
        check_done(k, 0, "cannot watch the socket");
        return;
    }
    if (ck->conf.type == SW_CHECK_HTTP) {
        char host[64];
        net_addr_str(&k->b->check, host, sizeof(host));
        int n = snprintf(k->req, sizeof(k->req),
                         "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ferry-switch-check\r\n"
                         "Connection: close\r\n\r\n",
                         ck->conf.path, host);
        k->req_len = n > 0 && (size_t)n < sizeof(k->req) ? (size_t)n : 0;
    }
    k->sent = 0;
    k->resp_len = 0;
    k->state = CK_CONNECTING;
    loop_timer_start(&k->timer, ck->conf.timeout_ms);
}

static void check_free(struct check *k)
{
    check_close_fd(k);
    loop_timer_stop(&k->timer);
    sw_backend_unref(k->b);
    free(k);
}

struct sw_checker *sw_checker_create(struct loop *l)
{
    struct sw_checker *ck = xcalloc(1, sizeof(*ck));
    ck->loop = l;
    return ck;
}

void sw_checker_set(struct sw_checker *ck, const struct sw_pool *pool,
                    const struct sw_check_conf *conf)
{
    ck->conf = *conf;
    /* Drop checks whose backend left (or all, when checks are off). */
    for (struct check **pp = &ck->checks; *pp;) {
        struct check *k = *pp;
        int keep = 0;
        for (size_t i = 0; i < pool->n && conf->type != SW_CHECK_OFF; i++)
            keep |= pool->b[i] == k->b;
        if (keep) {
            pp = &k->next;
            continue;
        }
        *pp = k->next;
        check_free(k);
    }
    if (conf->type == SW_CHECK_OFF)
        return;
    for (size_t i = 0; i < pool->n; i++) {
        struct check *k;
        for (k = ck->checks; k; k = k->next)
            if (k->b == pool->b[i])
                break;
        if (k)
            continue;
        k = xcalloc(1, sizeof(*k));
        k->ck = ck;
        k->b = sw_backend_ref(pool->b[i]);
        k->fd = -1;
        loop_timer_init(ck->loop, &k->timer, check_timer);
        k->timer.data = k;
        k->next = ck->checks;
        ck->checks = k;
        /* Spread the first checks over a little time so that a pool of
         * many backends is not checked in one burst. */
        loop_timer_start(&k->timer, 10 + (int64_t)(i * 37 % 200));
    }
}

void sw_checker_destroy(struct sw_checker *ck)
{
    if (ck == NULL)
        return;
    while (ck->checks) {
        struct check *k = ck->checks;
        ck->checks = k->next;
        check_free(k);
    }
    SSL_CTX_free(ck->tls);
    free(ck);
}

const char *sw_step_name(enum sw_step s)
{
    return (unsigned)s < SW_NSTEPS ? step_names[s] : "?";
}

int sw_step_parse(const char *name, enum sw_step *out)
{
    for (int i = 0; i < SW_NSTEPS; i++) {
        if (i != SW_STEP_FALLBACK && strcmp(name, step_names[i]) == 0) {
            *out = (enum sw_step)i;
            return 0;
        }
    }
    return -1;
}
