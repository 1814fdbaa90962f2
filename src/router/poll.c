/*
 * router/poll -- node health and load, polled over HTTP from the main loop.
 *
 * Every poll_interval, each node with a `status` address (the admin
 * endpoint of the ferryd in front of the node, usually its switch) is
 * asked GET /readyz, then GET /metrics. The node is healthy when /readyz
 * says 200 (poll_rise successes in a row bring it up, poll_fall failures
 * take it down), and its load is the sum of the samples of `load_metric`
 * in the metrics (by default the switch's open client connections). Both
 * endpoints are open on every ferryd without a token, and read-only.
 * A node without a status address is always up with load 0.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/util.h"
#include "router/internal.h"

#define POLL_MAX_BODY (4u << 20) /* bytes of /metrics read at most */

struct probe {
    struct rt_poller *p;
    struct rt_node *node;     /* reference */
    struct loop_io io;
    struct loop_timer timer;  /* next poll, or the deadline of the current one */
    struct buf in;
    int stage;                /* 0 idle, 1 /readyz, 2 /metrics */
};

struct rt_poller {
    struct router *rt;
    struct probe *probes;
    size_t n;
};

static void probe_next(struct probe *pr, int ok, const char *why);

static void probe_stop_io(struct probe *pr)
{
    loop_io_close(&pr->io);
    pr->io.fd = -1;
    buf_reset(&pr->in);
}

static int64_t parse_load(const char *body, size_t len, const char *metric)
{
    int64_t sum = 0;
    size_t ml = strlen(metric);
    const char *p = body, *end = body + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        if ((size_t)(e - p) > ml && memcmp(p, metric, ml) == 0 && (p[ml] == ' ' || p[ml] == '{')) {
            const char *v = p + ml;
            if (*v == '{') {
                v = memchr(v, '}', (size_t)(e - v));
                v = v ? v + 1 : e;
            }
            char num[32];
            size_t l = MIN((size_t)(e - v), sizeof(num) - 1);
            memcpy(num, v, l);
            num[l] = 0;
            sum += (int64_t)strtod(num, NULL);
        }
        p = e + 1;
    }
    return sum < 0 ? 0 : sum;
}

static int status_of(const struct buf *b)
{
    int code;
    const char *h = buf_head(b);
    if (buf_avail(b) < 12 || memcmp(h, "HTTP/1.", 7) != 0 || sscanf(h + 9, "%3d", &code) != 1)
        return -1;
    return code;
}

static void send_request(struct probe *pr);

static void io_cb(struct loop_io *io, unsigned events)
{
    struct probe *pr = io->data;
    if (events & LOOP_WRITE) {
        loop_io_modify(io, LOOP_READ);
        if (net_connect_result(io->fd) < 0) {
            probe_next(pr, 0, "connect failed");
            return;
        }
        send_request(pr);
        return;
    }
    char *p = buf_reserve(&pr->in, 16384);
    ssize_t n = recv(io->fd, p, 16384, MSG_DONTWAIT);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            probe_next(pr, 0, "read failed");
        return;
    }
    if (n > 0) {
        buf_commit(&pr->in, (size_t)n);
        if (buf_avail(&pr->in) > POLL_MAX_BODY)
            probe_next(pr, 0, "response too large");
        return;
    }
    /* the server closed: the response is whole */
    int code = status_of(&pr->in);
    if (pr->stage == 1) {
        if (code != 200) {
            probe_next(pr, 0, code < 0 ? "not an HTTP response" : "/readyz is not 200");
            return;
        }
        probe_stop_io(pr);
        pr->stage = 2;
        int fd = net_connect_tcp(&pr->node->status);
        if (fd < 0 || loop_io_start(pr->p->rt->main_loop, &pr->io, fd, LOOP_WRITE, io_cb) < 0) {
            if (fd >= 0)
                close(fd);
            probe_next(pr, 0, "connect failed");
        }
        return;
    }
    if (code == 200) {
        const char *body = memmem(buf_head(&pr->in), buf_avail(&pr->in), "\r\n\r\n", 4);
        if (body) {
            body += 4;
            size_t bl = buf_avail(&pr->in) - (size_t)(body - buf_head(&pr->in));
            atomic_store(&pr->node->load, parse_load(body, bl, pr->p->rt->load_metric));
        }
    }
    probe_next(pr, 1, NULL);
}

static void send_request(struct probe *pr)
{
    char req[160];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: ferry\r\nConnection: close\r\n\r\n",
                     pr->stage == 1 ? "/readyz" : "/metrics");
    if (send(pr->io.fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        probe_next(pr, 0, "send failed");
}

static void timer_cb(struct loop_timer *t)
{
    struct probe *pr = t->data;
    if (pr->stage) {
        probe_next(pr, 0, "timed out");
        return;
    }
    pr->stage = 1;
    buf_reset(&pr->in);
    int fd = net_connect_tcp(&pr->node->status);
    if (fd < 0 || loop_io_start(pr->p->rt->main_loop, &pr->io, fd, LOOP_WRITE, io_cb) < 0) {
        if (fd >= 0)
            close(fd);
        probe_next(pr, 0, "connect failed");
        return;
    }
    loop_timer_start(&pr->timer, pr->p->rt->poll_timeout_ms);
}

/* Ends the current poll with its verdict and schedules the next. */
static void probe_next(struct probe *pr, int ok, const char *why)
{
    struct router *rt = pr->p->rt;
    struct rt_node *n = pr->node;
    probe_stop_io(pr);
    pr->stage = 0;
    atomic_store(&n->last_poll_ms, (int64_t)time_wall_ms());
    int up = atomic_load(&n->up);
    if (ok) {
        n->fails = 0;
        n->oks++;
        n->last_error[0] = 0;
        if (!up && n->oks >= rt->poll_rise) {
            atomic_store(&n->up, 1);
            log_info("router: node %s is up", n->name);
        }
    } else {
        n->oks = 0;
        n->fails++;
        snprintf(n->last_error, sizeof(n->last_error), "%s", why);
        if (up && n->fails >= rt->poll_fall) {
            atomic_store(&n->up, 0);
            log_warnx("router: node %s is down: %s", n->name, why);
        }
    }
    loop_timer_start(&pr->timer, rt->poll_interval_ms);
}

struct rt_poller *rt__poller_create(struct router *rt)
{
    struct rt_poller *p = xcalloc(1, sizeof(*p));
    p->rt = rt;
    return p;
}

static void clear(struct rt_poller *p)
{
    for (size_t i = 0; i < p->n; i++) {
        struct probe *pr = &p->probes[i];
        probe_stop_io(pr);
        loop_timer_stop(&pr->timer);
        buf_fini(&pr->in);
        rt__node_unref(pr->node);
    }
    free(p->probes);
    p->probes = NULL;
    p->n = 0;
}

void rt__poller_set(struct rt_poller *p, struct rt_settings *s)
{
    clear(p);
    p->probes = xcalloc(s->nnodes ? s->nnodes : 1, sizeof(*p->probes));
    for (size_t i = 0; i < s->nnodes; i++) {
        struct rt_node *n = s->nodes[i];
        if (!n->has_status)
            continue;
        struct probe *pr = &p->probes[p->n++];
        pr->p = p;
        pr->node = n;
        atomic_fetch_add(&n->refs, 1);
        pr->io.fd = -1;
        pr->io.data = pr;
        buf_init(&pr->in);
        loop_timer_init(p->rt->main_loop, &pr->timer, timer_cb);
        pr->timer.data = pr;
        loop_timer_start(&pr->timer, 0);
    }
}

void rt__poller_destroy(struct rt_poller *p)
{
    if (p == NULL)
        return;
    clear(p);
    free(p);
}
