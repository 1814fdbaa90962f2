/*
 * router/http -- the HTTP redirector (RR-req section 2.2, the layer-7
 * model): a request for a publisher's name gets a 302 (or 307) to the
 * chosen surrogate's URL, or to a peer CDN's redirector.
 *
 * The choice uses the client's address (the area table, as for DNS) and
 * the full URL: the longest `path` rule of the service picks the node set
 * (content-aware routing), and among the healthy nodes of the set the URL's
 * rendezvous hash picks one, so a given object is always fetched from the
 * same surrogate and cached once. A hand-off to a peer goes to
 * PEER_REDIRECT/HOST/PATH (the Host field then names the peer, so the
 * publisher's name travels in the path) and carries the loop guard in a
 * query parameter, ferry_path=ID--ID, which a Ferry redirector strips (and
 * honours) before redirecting again.
 *
 * One request per connection (Connection: close); the head must arrive
 * within http_timeout and fit in http_max_head.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http1.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/util.h"
#include "router/internal.h"

#define PATH_PARAM "ferry_path="
#define HTTP_TIMEOUT_MS 10000


struct http_lsock {
    struct loop_io io;
    struct rt_worker *w;
    struct http_lsock *next;
};

struct http_conn {
    struct http_conn *next, *prev;
    struct loop_io io;
    struct loop_timer timer;
    struct rt_worker *w;
    struct net_addr peer;
    struct buf in, out;
    int replied;
};

/* A worker's redirector: its listeners and open connections. */
struct http_side {
    struct http_lsock *ls;
    struct http_conn *conns;
};

static struct http_side *side_of(struct rt_worker *w)
{
    void **slot = rt__worker_http_slot(w);
    if (*slot == NULL)
        *slot = xcalloc(1, sizeof(struct http_side));
    return *slot;
}

static const char *status_text(int code)
{
    switch (code) {
    case 302: return "Found";
    case 307: return "Temporary Redirect";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

/* Parses ferry_path=a--b out of a query string into path; writes the rest to rest. */
static int take_path_param(const char *q, size_t qlen, struct dns_path *path, char *rest, size_t restcap)
{
    size_t rl = 0;
    path->n = 0;
    const char *p = q, *end = q + qlen;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        size_t l = (size_t)(e - p);
        if (l > strlen(PATH_PARAM) && memcmp(p, PATH_PARAM, strlen(PATH_PARAM)) == 0) {
            const char *v = p + strlen(PATH_PARAM);
            while (v < e) {
                const char *sep = v;
                while (sep < e && !(sep + 1 < e && sep[0] == '-' && sep[1] == '-'))
                    sep++;
                size_t n = (size_t)(sep - v);
                if (n == 0 || n > DNS_MAX_CDN_ID || path->n == DNS_MAX_PATH)
                    return -1;
                for (size_t i = 0; i < n; i++)
                    if (!((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= '0' && v[i] <= '9') || v[i] == '-'))
                        return -1;
                memcpy(path->id[path->n], v, n);
                path->id[path->n][n] = 0;
                path->len[path->n++] = (uint8_t)n;
                v = sep < e ? sep + 2 : e;
            }
        } else if (l) {
            if (rl + l + 2 > restcap)
                return -1;
            if (rl)
                rest[rl++] = '&';
            memcpy(rest + rl, p, l);
            rl += l;
        }
        p = amp ? amp + 1 : end;
    }
    rest[rl] = 0;
    return 0;
}

static uint64_t url_hash(const char *host, size_t hl, const char *path, size_t pl)
{
    uint64_t h = hash_fnv1a(host, hl);
    return (h * UINT64_C(0x100000001b3)) ^ hash_fnv1a(path, pl);
}

int rt__redirect(const struct rt_settings *s, const char *host, size_t host_len, const char *target,
                 size_t target_len, const struct rt_client *cl0, char *loc, size_t loccap,
                 struct rt_decision *d)
{
    char h[DNS_MAX_NAME + 1];
    uint8_t lname[DNS_MAX_NAME];
    memset(d, 0, sizeof(*d));
    loc[0] = 0;
    /* the host without its port */
    size_t hl = host_len;
    const char *colon = memchr(host, ':', host_len);
    if (colon)
        hl = (size_t)(colon - host);
    if (hl == 0 || hl >= sizeof(h))
        return 400;
    for (size_t i = 0; i < hl; i++) /* host names are case-insensitive: hash them so */
        h[i] = (char)((host[i] >= 'A' && host[i] <= 'Z') ? host[i] + 32 : host[i]);
    h[hl] = 0;
    if (dns_name_from_text(lname, h) < 0)
        return 400;
    /* absolute-form (RFC 9112 3.2.2): the authority was given in Host too; keep the path */
    if (target_len > 8 && (strncasecmp(target, "http://", 7) == 0 || strncasecmp(target, "https://", 8) == 0)) {
        size_t skip = target[4] == ':' ? 7 : 8;
        const char *path = memchr(target + skip, '/', target_len - skip);
        const char *q = memchr(target + skip, '?', target_len - skip);
        if (path == NULL || (q && q < path))
            return 400;
        target_len -= (size_t)(path - target);
        target = path;
    }
    if (target_len == 0 || target[0] != '/')
        return 400;
    const struct rt_name *nm = rt__name_find(s, lname);
    if (nm == NULL || nm->svc == NULL) {
        /* a hand-off from a peer's redirector: /HOST/PATH, since Host names the peer */
        const char *seg = target + 1, *end = target + target_len;
        const char *slash = memchr(seg, '/', (size_t)(end - seg));
        size_t sl = slash ? (size_t)(slash - seg) : 0;
        if (slash == NULL || sl == 0 || sl >= sizeof(h))
            return 404;
        for (size_t i = 0; i < sl; i++)
            h[i] = (char)((seg[i] >= 'A' && seg[i] <= 'Z') ? seg[i] + 32 : seg[i]);
        h[sl] = 0;
        hl = sl;
        nm = dns_name_from_text(lname, h) < 0 ? NULL : rt__name_find(s, lname);
        if (nm == NULL || nm->svc == NULL)
            return 404;
        target_len -= (size_t)(slash - target);
        target = slash;
    }
    const char *qm = memchr(target, '?', target_len);
    size_t pl = qm ? (size_t)(qm - target) : target_len;
    char rest[4096];
    struct dns_path path;
    if (take_path_param(qm ? qm + 1 : "", qm ? target_len - pl - 1 : 0, &path, rest, sizeof(rest)) < 0)
        return 400;
    const struct rt_service *svc = nm->svc;
    const char *set = svc->set;
    size_t best = 0;
    for (unsigned i = 0; i < svc->npaths; i++) {
        size_t l = strlen(svc->paths[i].prefix);
        if (l > best && l <= pl && memcmp(target, svc->paths[i].prefix, l) == 0) {
            best = l;
            set = svc->paths[i].set;
        }
    }
    struct rt_client cl = *cl0;
    struct rt_content content = {.lname = nm->name, .path = target, .path_len = pl};
    cl.path = path.n ? &path : NULL;
    cl.content = &content;
    uint64_t spread = url_hash(h, hl, target, pl) | 1;
    rt__decide(s, set, &cl, spread, RT_DECIDE_AFFINITY | RT_DECIDE_HTTP, d);
    if (d->peer && d->peer->redirect[0] == 0) {
        /* no HTTP hand-off configured for this peer: serve the client ourselves (a
         * learned target without a redirector never gets here: it does not apply) */
        rt__decide(s, set, &cl, spread, RT_DECIDE_AFFINITY | RT_DECIDE_HTTP | RT_DECIDE_NO_PEER, d);
    }
    int n;
    if (d->peer) {
        struct dns_path out;
        rt__path_push(&out, path.n ? &path : NULL, s->cdn);
        char pv[DNS_MAX_PATH * (DNS_MAX_CDN_ID + 2) + 1];
        size_t pvl = 0;
        for (unsigned i = 0; i < out.n; i++)
            pvl += (size_t)snprintf(pv + pvl, sizeof(pv) - pvl, "%s%s", i ? "--" : "", out.id[i]);
        d->reason = RT_R_PEER_HTTP;
        n = snprintf(loc, loccap, "%s/%s%.*s?%s%s%s%s", d->peer->redirect, h, (int)pl, target, rest,
                     rest[0] ? "&" : "", PATH_PARAM, pv);
    } else {
        if (d->node == NULL)
            return 503;
        char base[300];
        if (d->node->redirect[0]) {
            snprintf(base, sizeof(base), "%s", d->node->redirect);
        } else {
            char a[64];
            const struct net_addr *na = &d->node->addr[0];
            net_addr_host(na, a, sizeof(a));
            snprintf(base, sizeof(base), na->ss.ss_family == AF_INET6 ? "https://[%s]" : "https://%s", a);
        }
        n = snprintf(loc, loccap, "%s%.*s%s%s", base, (int)pl, target, rest[0] ? "?" : "", rest);
    }
    if (n < 0 || (size_t)n >= loccap)
        return 414;
    return s->redirect_code;
}

/* Connections. */

static void conn_free_cb(void *arg)
{
    struct http_conn *c = arg;
    buf_fini(&c->in);
    buf_fini(&c->out);
    free(c);
}

static void conn_close(struct http_conn *c)
{
    if (c->io.loop == NULL && c->io.fd < 0)
        return;
    loop_io_close(&c->io);
    c->io.fd = -1;
    loop_timer_stop(&c->timer);
    struct http_side *hs = side_of(c->w);
    if (c->prev)
        c->prev->next = c->next;
    else
        hs->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    loop_defer(rt__worker_loop(c->w), conn_free_cb, c);
}

static void conn_flush(struct http_conn *c)
{
    while (buf_avail(&c->out)) {
        ssize_t n = send(c->io.fd, buf_head(&c->out), buf_avail(&c->out), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                loop_io_modify(&c->io, LOOP_WRITE);
                return;
            }
            break;
        }
        buf_consume(&c->out, (size_t)n);
    }
    conn_close(c);
}

static void reply(struct http_conn *c, int code, const char *loc)
{
    struct router *rt = rt__worker_router(c->w);
    c->replied = 1;
    metric_inc(rt->m_http[code < 400 ? 0 : code < 500 ? 2 : 3]);
    buf_printf(&c->out, "HTTP/1.1 %d %s\r\n", code, status_text(code));
    if (loc)
        buf_printf(&c->out, "Location: %s\r\n", loc);
    buf_printf(&c->out, "Content-Length: 0\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n");
    loop_io_modify(&c->io, LOOP_WRITE);
    conn_flush(c);
}

static void handle(struct http_conn *c, const struct http1_msg *m)
{
    struct rt_worker *w = c->w;
    struct router *rt = rt__worker_router(w);
    if (!str_ieq(m->method, m->method_len, "GET") && !str_ieq(m->method, m->method_len, "HEAD")) {
        reply(c, 405, NULL);
        return;
    }
    if (m->host == NULL) {
        reply(c, 400, NULL);
        return;
    }
    struct rt_client cl;
    rt__client_from_sockaddr(&cl, &c->peer);
    char loc[8192];
    struct rt_decision d;
    const struct rt_settings *s = rt__worker_settings(w);
    int code = rt__redirect(s, m->host, m->host_len, m->target, m->target_len, &cl, loc, sizeof(loc), &d);
    if (code == 302 || code == 307) {
        metric_inc(rt->ctr.decisions[d.reason]);
        if (d.loop)
            metric_inc(rt->ctr.loops);
        if (d.node && d.node->m_answers)
            metric_inc(d.node->m_answers);
        if (d.peer && d.peer->m_handoffs)
            metric_inc(d.peer->m_handoffs);
        reply(c, code, loc);
        return;
    }
    reply(c, code, NULL);
}

static void conn_cb(struct loop_io *io, unsigned events)
{
    struct http_conn *c = io->data;
    if (c->replied) {
        conn_flush(c);
        return;
    }
    struct router *rt = rt__worker_router(c->w);
    char *p = buf_reserve(&c->in, 4096);
    ssize_t n = recv(io->fd, p, 4096, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        conn_close(c);
        return;
    }
    if (n < 0)
        return;
    buf_commit(&c->in, (size_t)n);
    struct http1_limits lim;
    http1_limits_default(&lim);
    lim.max_head_bytes = rt->http_max_head;
    struct http1_msg m;
    int rc = http1_parse_request(buf_head(&c->in), buf_avail(&c->in), &lim, &m);
    if (rc < 0) {
        reply(c, http1_err_status(rc), NULL);
        return;
    }
    if (rc == 0) {
        if (buf_avail(&c->in) >= rt->http_max_head)
            reply(c, 431, NULL);
        return;
    }
    handle(c, &m);
}

static void conn_timeout_cb(struct loop_timer *t)
{
    conn_close(t->data);
}

static void accept_cb(struct loop_io *io, unsigned events)
{
    struct http_lsock *L = io->data;
    struct rt_worker *w = L->w;
    for (int k = 0; k < 16; k++) {
        struct net_addr peer;
        peer.len = sizeof(peer.ss);
        int fd = accept4(io->fd, (struct sockaddr *)&peer.ss, &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct http_conn *c = xcalloc(1, sizeof(*c));
        c->w = w;
        c->peer = peer;
        buf_init(&c->in);
        buf_init(&c->out);
        c->io.data = c;
        if (loop_io_start(rt__worker_loop(w), &c->io, fd, LOOP_READ, conn_cb) < 0) {
            close(fd);
            conn_free_cb(c);
            continue;
        }
        loop_timer_init(rt__worker_loop(w), &c->timer, conn_timeout_cb);
        c->timer.data = c;
        loop_timer_start(&c->timer, HTTP_TIMEOUT_MS);
        struct http_side *hs = side_of(w);
        c->next = hs->conns;
        if (hs->conns)
            hs->conns->prev = c;
        hs->conns = c;
    }
}

int rt__http_listen(struct rt_worker *w, const struct net_addr *a)
{
    int fd = net_listen_tcp(a, 1024);
    if (fd < 0)
        return fd;
    struct http_lsock *L = xcalloc(1, sizeof(*L));
    L->w = w;
    L->io.data = L;
    int rc = loop_io_start(rt__worker_loop(w), &L->io, fd, LOOP_READ, accept_cb);
    if (rc < 0) {
        close(fd);
        free(L);
        return rc;
    }
    struct http_side *hs = side_of(w);
    L->next = hs->ls;
    hs->ls = L;
    return 0;
}

void rt__http_close(struct rt_worker *w)
{
    void **slot = rt__worker_http_slot(w);
    struct http_side *hs = *slot;
    if (hs == NULL)
        return;
    while (hs->ls) {
        struct http_lsock *L = hs->ls;
        hs->ls = L->next;
        loop_io_close(&L->io);
        free(L);
    }
    while (hs->conns)
        conn_close(hs->conns);
    free(hs);
    *slot = NULL;
}
