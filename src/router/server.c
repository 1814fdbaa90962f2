/*
 * router/server -- the DNS side of one worker: UDP sockets (one per listen
 * address per worker, SO_REUSEPORT, read and answered in batches with
 * recvmmsg/sendmmsg), TCP connections (RFC 7766: length-prefixed messages,
 * pipelined, an idle timeout), response rate limiting, and the client side
 * of ECS hand-offs (a query to a peer's router and its pending answer).
 *
 * Response rate limiting: each worker counts responses per client prefix
 * (/24 for IPv4, /56 for IPv6 by default) per second in a fixed table.
 * Above rrl_rate, responses are dropped, except every rrl_slip-th, which is
 * sent truncated (TC set, no records) so a real client behind a spoofed
 * neighbour retries over TCP, where a source address cannot be forged.
 * TCP is never limited. The counts are per worker (the kernel spreads a
 * client's datagrams over workers by address), so the limit a client sees
 * is at most rrl_rate times the number of workers.
 *
 * An ECS hand-off in flight holds a reference to its peer: the peer may
 * be a learned one, whose snapshot is replaced whenever the learned
 * routes change, and the answer owed is still taken from it then. A
 * reload of the configuration settles every hand-off in flight with the
 * fallback instead (reason "reload").
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/util.h"
#include "router/internal.h"

#define BATCH 32
#define QBUF 4096            /* largest UDP query read */
#define RBUF 4096            /* largest UDP response (udp_size is capped at this) */
#define PEND_QMAX 1024       /* largest query kept while a peer is asked */
#define RRL_BUCKETS 16384
#define TCP_MSG_MAX 65535

struct udp_sock {
    struct loop_io io;
    struct rt_worker *w;
    struct udp_sock *next;
};

struct tcp_conn {
    struct loop_io io;
    struct loop_timer idle;
    struct rt_worker *w;
    struct net_addr peer;
    struct buf in, out;
    unsigned npending;        /* answers a peer router still owes */
    int dead;                 /* closed while answers were pending */
    struct tcp_conn *next, *prev;
};

struct tcp_lsock {
    struct loop_io io;
    struct rt_worker *w;
    struct tcp_lsock *next;
};

struct pending {
    int used;
    uint16_t id;              /* the id of our query to the peer */
    int64_t deadline_ms;
    struct net_addr client;
    int fd;                   /* UDP: the socket to answer from; -1 for TCP */
    struct tcp_conn *conn;    /* TCP: the connection to answer on */
    struct rt_ecs_req req;    /* req.peer: a reference */
    size_t qlen;
    uint8_t query[PEND_QMAX];
};

struct rrl_bucket {
    uint64_t key;
    int64_t second;
    uint32_t count;
};

struct rt_worker {
    struct router *rt;
    struct loop *loop;
    struct rt_settings *set;            /* reference */
    struct udp_sock *udp;
    struct tcp_lsock *tcpl;
    struct tcp_conn *conns;
    unsigned nconns;
    struct loop_io ecs_io[2];           /* our queries to peers: IPv4, IPv6 */
    struct pending *pend;               /* ecs_max_pending entries */
    unsigned npend_cap, npend;
    uint16_t *pend_by_id;               /* 65536 entries: index + 1 */
    struct loop_timer tick;
    struct rrl_bucket *rrl;
    /* batch buffers */
    struct mmsghdr rmsg[BATCH], smsg[BATCH];
    struct iovec riov[BATCH], siov[BATCH];
    struct sockaddr_storage raddr[BATCH];
    uint8_t (*qbuf)[QBUF];
    uint8_t (*rbuf)[RBUF];
    void *http;                         /* http.c's listeners */
};

struct rt_settings *rt__worker_settings(struct rt_worker *w)
{
    return w->set;
}

/* Rate limiting. */

static uint64_t rrl_key(const struct rt_settings *s, const struct net_addr *a)
{
    struct rt_client cl;
    if (rt__client_from_sockaddr(&cl, a) < 0)
        return 0;
    unsigned bits = cl.family == 4 ? s->rrl_v4_prefix : s->rrl_v6_prefix;
    uint8_t k[17] = {0};
    unsigned nb = cl.family == 4 ? 4 : 16;
    for (unsigned i = 0; i < nb; i++) {
        unsigned lo = i * 8;
        k[i] = bits >= lo + 8 ? cl.addr[i] : bits > lo ? (uint8_t)(cl.addr[i] & (0xff << (8 - (bits - lo)))) : 0;
    }
    k[16] = (uint8_t)cl.family;
    return hash_fnv1a(k, sizeof(k)) | 1;
}

/* 1: send as is, 0: drop, 2: send truncated. */
static int rrl_check(struct rt_worker *w, const struct net_addr *a)
{
    const struct rt_settings *s = w->set;
    if (s->rrl_rate == 0)
        return 1;
    if (w->rrl == NULL)
        w->rrl = xcalloc(RRL_BUCKETS, sizeof(*w->rrl));
    uint64_t key = rrl_key(s, a);
    int64_t sec = loop_now_ms(w->loop) / 1000;
    struct rrl_bucket *b = &w->rrl[key % RRL_BUCKETS];
    if (b->key != key || b->second != sec) {
        b->key = key;
        b->second = sec;
        b->count = 0;
    }
    if (++b->count <= s->rrl_rate)
        return 1;
    if (s->rrl_slip && (b->count - s->rrl_rate) % s->rrl_slip == 0) {
        metric_inc(w->rt->m_rrl_slipped);
        return 2;
    }
    metric_inc(w->rt->m_rrl_dropped);
    return 0;
}

/* Cuts a response to header + question with TC set (for RRL slips). */
static size_t truncate_response(uint8_t *r, size_t len)
{
    size_t p = DNS_HDR_LEN;
    if (len < DNS_HDR_LEN)
        return 0;
    if (r[4] == 0 && r[5] == 1) {
        while (p < len && r[p] != 0 && r[p] < 64)
            p += 1 + r[p];
        p += 1 + 4;
        if (p > len)
            return 0;
    } else {
        p = DNS_HDR_LEN;
        r[4] = r[5] = 0;
    }
    r[2] |= DNS_F_TC >> 8;
    memset(r + 6, 0, 6);
    return p;
}

/* ECS hand-offs: the pending table. */

static struct pending *pend_alloc(struct rt_worker *w)
{
    const struct rt_settings *s = w->set;
    if (w->pend == NULL) {
        w->npend_cap = s->ecs_max_pending;
        w->pend = xcalloc(w->npend_cap, sizeof(*w->pend));
        w->pend_by_id = xcalloc(65536, sizeof(*w->pend_by_id));
    }
    if (w->npend >= w->npend_cap)
        return NULL;
    for (unsigned i = 0; i < w->npend_cap; i++) {
        struct pending *p = &w->pend[i];
        if (p->used)
            continue;
        uint16_t id;
        int tries = 0;
        do {
            RAND_bytes((unsigned char *)&id, sizeof(id));
        } while (w->pend_by_id[id] && ++tries < 16);
        if (w->pend_by_id[id])
            return NULL;
        p->used = 1;
        p->id = id;
        w->pend_by_id[id] = (uint16_t)(i + 1);
        w->npend++;
        return p;
    }
    return NULL;
}

static void pend_free(struct rt_worker *w, struct pending *p)
{
    w->pend_by_id[p->id] = 0;
    p->used = 0;
    p->conn = NULL;
    rt__peer_unref(p->req.peer);
    p->req.peer = NULL;
    w->npend--;
}

static void tcp_send(struct tcp_conn *c, const uint8_t *msg, size_t len);
static void tcp_unpend(struct tcp_conn *c);

static void udp_reply(int fd, const uint8_t *r, size_t n, const struct net_addr *to)
{
    if (n && sendto(fd, r, n, MSG_DONTWAIT, (const struct sockaddr *)&to->ss, to->len) < 0 &&
        errno != EAGAIN && errno != EWOULDBLOCK)
        log_debug("router: sendto: %s", strerror(errno));
}

/* Answers the client of p (from the peer's response, or the fallback) and frees p. */
static void pend_answer(struct rt_worker *w, struct pending *p, const uint8_t *resp, size_t len,
                        enum rt_ecs_fail why)
{
    uint8_t out[TCP_MSG_MAX];
    int tcp = p->fd < 0;
    int n = rt__answer_from_peer(w->set, &w->rt->ctr, p->query, p->qlen, &p->client, tcp, &p->req,
                                 resp, len, p->id, why, out, tcp ? sizeof(out) : RBUF);
    if (tcp) {
        struct tcp_conn *c = p->conn;
        if (n > 0 && !c->dead)
            tcp_send(c, out, (size_t)n);
        pend_free(w, p);
        tcp_unpend(c);
        return;
    }
    if (n > 0)
        udp_reply(p->fd, out, (size_t)n, &p->client);
    pend_free(w, p);
}

static void ecs_read_cb(struct loop_io *io, unsigned events)
{
    struct rt_worker *w = io->data;
    uint8_t buf[RBUF];
    for (int k = 0; k < BATCH; k++) {
        struct sockaddr_storage from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(io->fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
        if (n < 0)
            return;
        if (n < DNS_HDR_LEN || w->pend_by_id == NULL)
            continue;
        uint16_t id = (uint16_t)(buf[0] << 8 | buf[1]);
        unsigned idx = w->pend_by_id[id];
        if (idx == 0)
            continue;
        struct pending *p = &w->pend[idx - 1];
        const struct net_addr *peer = &p->req.peer->ecs_server;
        /* only the peer we asked may answer (RFC 5452 section 9.1) */
        if (fl != peer->len || memcmp(&from, &peer->ss, fl) != 0)
            continue;
        pend_answer(w, p, buf, (size_t)n, RT_EF_BAD_ANSWER);
    }
}

static int ecs_socket(struct rt_worker *w, int family)
{
    struct loop_io *io = &w->ecs_io[family == AF_INET6];
    if (io->loop)
        return io->fd;
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    io->data = w;
    if (loop_io_start(w->loop, io, fd, LOOP_READ, ecs_read_cb) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Starts asking a peer; on any failure the client gets the fallback at once. */
static void ecs_start(struct rt_worker *w, const uint8_t *q, size_t qlen, const struct net_addr *client,
                      int fd, struct tcp_conn *conn, const struct rt_ecs_req *req)
{
    struct pending *p = qlen <= PEND_QMAX ? pend_alloc(w) : NULL;
    if (p == NULL) {
        uint8_t out[TCP_MSG_MAX];
        int n = rt__answer_from_peer(w->set, &w->rt->ctr, q, qlen, client, fd < 0, req, NULL, 0, 0,
                                     RT_EF_OVERFLOW, out, fd < 0 ? sizeof(out) : RBUF);
        if (n > 0 && fd >= 0)
            udp_reply(fd, out, (size_t)n, client);
        else if (n > 0)
            tcp_send(conn, out, (size_t)n);
        return;
    }
    p->deadline_ms = loop_now_ms(w->loop) + w->set->ecs_timeout_ms;
    p->client = *client;
    p->fd = fd;
    p->conn = conn;
    p->req = *req;
    atomic_fetch_add(&p->req.peer->refs, 1);
    p->qlen = qlen;
    memcpy(p->query, q, qlen);
    if (conn)
        conn->npending++;
    uint8_t msg[512];
    const struct net_addr *peer = &req->peer->ecs_server;
    int n = dns_write_query(msg, sizeof(msg), p->id, req->qname, req->qtype, 1232, &req->ecs, &req->path);
    int sfd = ecs_socket(w, peer->ss.ss_family);
    if (n < 0 || sfd < 0 ||
        sendto(sfd, msg, (size_t)n, MSG_DONTWAIT, (const struct sockaddr *)&peer->ss, peer->len) < 0)
        pend_answer(w, p, NULL, 0, RT_EF_SEND);
}

/* UDP. */

static int udp_batch(struct loop_io *io);

/* Batches while they come back full (up to 8), saving an epoll_wait per batch under load. */
static void udp_cb(struct loop_io *io, unsigned events)
{
    (void)events;
    for (int round = 0; round < 8 && udp_batch(io) == BATCH; round++)
        ;
}

/* Reads, answers and sends one batch; returns the datagrams read. */
static int udp_batch(struct loop_io *io)
{
    struct udp_sock *u = io->data;
    struct rt_worker *w = u->w;
    for (int i = 0; i < BATCH; i++) {
        w->riov[i].iov_base = w->qbuf[i];
        w->riov[i].iov_len = QBUF;
        memset(&w->rmsg[i].msg_hdr, 0, sizeof(w->rmsg[i].msg_hdr));
        w->rmsg[i].msg_hdr.msg_iov = &w->riov[i];
        w->rmsg[i].msg_hdr.msg_iovlen = 1;
        w->rmsg[i].msg_hdr.msg_name = &w->raddr[i];
        w->rmsg[i].msg_hdr.msg_namelen = sizeof(w->raddr[i]);
    }
    int n = recvmmsg(io->fd, w->rmsg, BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0)
        return 0;
    int ns = 0;
    for (int i = 0; i < n; i++) {
        struct net_addr from;
        memcpy(&from.ss, &w->raddr[i], sizeof(from.ss));
        from.len = w->rmsg[i].msg_hdr.msg_namelen;
        if (w->rmsg[i].msg_hdr.msg_flags & MSG_TRUNC)
            continue; /* larger than any query we answer: drop */
        struct rt_ecs_req req;
        int len = rt__answer(w->set, &w->rt->ctr, w->qbuf[i], w->rmsg[i].msg_len, &from, 0,
                             w->rbuf[ns], RBUF, &req);
        if (len == RT_ANSWER_ASYNC) {
            ecs_start(w, w->qbuf[i], w->rmsg[i].msg_len, &from, io->fd, NULL, &req);
            continue;
        }
        if (len <= 0)
            continue;
        int verdict = rrl_check(w, &from);
        if (verdict == 0)
            continue;
        if (verdict == 2 && (len = (int)truncate_response(w->rbuf[ns], (size_t)len)) == 0)
            continue;
        w->siov[ns].iov_base = w->rbuf[ns];
        w->siov[ns].iov_len = (size_t)len;
        memset(&w->smsg[ns].msg_hdr, 0, sizeof(w->smsg[ns].msg_hdr));
        w->smsg[ns].msg_hdr.msg_iov = &w->siov[ns];
        w->smsg[ns].msg_hdr.msg_iovlen = 1;
        memmove(&w->raddr[ns], &from.ss, from.len); /* ns <= i: already read */
        w->smsg[ns].msg_hdr.msg_name = &w->raddr[ns];
        w->smsg[ns].msg_hdr.msg_namelen = from.len;
        ns++;
    }
    for (int off = 0; off < ns;) {
        int sent = sendmmsg(io->fd, w->smsg + off, (unsigned)(ns - off), MSG_DONTWAIT);
        if (sent <= 0)
            break; /* a full socket buffer: the rest is lost, as on any loaded UDP server */
        off += sent;
    }
    return n;
}

/* TCP (RFC 7766). */

static void tcp_free_cb(void *arg)
{
    struct tcp_conn *c = arg;
    buf_fini(&c->in);
    buf_fini(&c->out);
    free(c);
}

/* Freed in the loop's last phase, so a callback still running on c is safe. */
static void tcp_free(struct tcp_conn *c)
{
    loop_defer(c->w->loop, tcp_free_cb, c);
}

static void tcp_close(struct tcp_conn *c)
{
    struct rt_worker *w = c->w;
    if (c->dead)
        return;
    loop_io_close(&c->io);
    loop_timer_stop(&c->idle);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nconns--;
    atomic_fetch_sub(&w->rt->tcp_open, 1);
    c->dead = 1;
    if (c->npending == 0)
        tcp_free(c);
}

static void tcp_unpend(struct tcp_conn *c)
{
    c->npending--;
    if (c->dead && c->npending == 0)
        tcp_free(c);
}

static void tcp_flush(struct tcp_conn *c)
{
    while (buf_avail(&c->out)) {
        ssize_t n = send(c->io.fd, buf_head(&c->out), buf_avail(&c->out), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                break;
            tcp_close(c);
            return;
        }
        buf_consume(&c->out, (size_t)n);
    }
    loop_io_modify(&c->io, LOOP_READ | (buf_avail(&c->out) ? LOOP_WRITE : 0));
}

static void tcp_send(struct tcp_conn *c, const uint8_t *msg, size_t len)
{
    uint8_t hdr[2] = {(uint8_t)(len >> 8), (uint8_t)len};
    buf_append(&c->out, hdr, 2);
    buf_append(&c->out, msg, len);
    tcp_flush(c);
}

static void tcp_answer(struct tcp_conn *c, const uint8_t *q, size_t len)
{
    struct rt_worker *w = c->w;
    static __thread uint8_t out[TCP_MSG_MAX];
    struct rt_ecs_req req;
    int n = rt__answer(w->set, &w->rt->ctr, q, len, &c->peer, 1, out, sizeof(out), &req);
    if (n == RT_ANSWER_ASYNC)
        ecs_start(w, q, len, &c->peer, -1, c, &req);
    else if (n > 0)
        tcp_send(c, out, (size_t)n);
    else if (n == 0 && len < DNS_HDR_LEN)
        tcp_close(c); /* not DNS at all */
}

static void tcp_cb(struct loop_io *io, unsigned events)
{
    struct tcp_conn *c = io->data;
    if (events & LOOP_WRITE) {
        tcp_flush(c);
        if (c->dead)
            return;
    }
    if (!(events & (LOOP_READ | LOOP_ERROR)))
        return;
    char *p = buf_reserve(&c->in, 16384);
    ssize_t n = recv(io->fd, p, 16384, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        tcp_close(c);
        return;
    }
    if (n < 0)
        return;
    buf_commit(&c->in, (size_t)n);
    loop_timer_start(&c->idle, c->w->rt->tcp_idle_ms);
    while (!c->dead && buf_avail(&c->in) >= 2) {
        const uint8_t *h = (const uint8_t *)buf_head(&c->in);
        size_t ml = (size_t)h[0] << 8 | h[1];
        if (buf_avail(&c->in) < 2 + ml)
            break;
        tcp_answer(c, h + 2, ml);
        if (!c->dead)
            buf_consume(&c->in, 2 + ml);
    }
    if (!c->dead) {
        buf_compact(&c->in);
        /* a client that sends faster than it reads its answers is stopped */
        if (buf_avail(&c->out) > 4 * TCP_MSG_MAX)
            tcp_close(c);
    }
}

static void tcp_idle_cb(struct loop_timer *t)
{
    tcp_close(t->data);
}

static void tcp_accept_cb(struct loop_io *io, unsigned events)
{
    struct tcp_lsock *L = io->data;
    struct rt_worker *w = L->w;
    for (int k = 0; k < 16; k++) {
        struct net_addr peer;
        peer.len = sizeof(peer.ss);
        int fd = accept4(io->fd, (struct sockaddr *)&peer.ss, &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (w->nconns >= w->rt->tcp_max || atomic_load_explicit(&w->rt->draining, memory_order_relaxed)) {
            metric_inc(w->rt->m_tcp_refused);
            close(fd);
            continue;
        }
        struct tcp_conn *c = xcalloc(1, sizeof(*c));
        c->w = w;
        c->peer = peer;
        buf_init(&c->in);
        buf_init(&c->out);
        c->io.data = c;
        if (loop_io_start(w->loop, &c->io, fd, LOOP_READ, tcp_cb) < 0) {
            close(fd);
            tcp_free(c);
            continue;
        }
        loop_timer_init(w->loop, &c->idle, tcp_idle_cb);
        c->idle.data = c;
        loop_timer_start(&c->idle, w->rt->tcp_idle_ms);
        c->next = w->conns;
        if (w->conns)
            w->conns->prev = c;
        w->conns = c;
        w->nconns++;
        atomic_fetch_add(&w->rt->tcp_open, 1);
    }
}

/* Ticks: expire pending peer queries. */

static void tick_cb(struct loop_timer *t)
{
    struct rt_worker *w = t->data;
    int64_t now = loop_now_ms(w->loop);
    for (unsigned i = 0; w->pend && i < w->npend_cap && w->npend; i++)
        if (w->pend[i].used && w->pend[i].deadline_ms <= now)
            pend_answer(w, &w->pend[i], NULL, 0, RT_EF_TIMEOUT);
    loop_timer_start(t, 50);
}

/* Worker life. */

struct rt_worker *rt__worker_create(struct router *rt, struct loop *l, struct rt_settings *s)
{
    struct rt_worker *w = xcalloc(1, sizeof(*w));
    w->rt = rt;
    w->loop = l;
    w->set = s;
    w->qbuf = xmalloc(BATCH * sizeof(*w->qbuf));
    w->rbuf = xmalloc(BATCH * sizeof(*w->rbuf));
    w->ecs_io[0].fd = w->ecs_io[1].fd = -1;
    loop_timer_init(l, &w->tick, tick_cb);
    w->tick.data = w;
    loop_timer_start(&w->tick, 50);
    return w;
}

int rt__worker_listen(struct rt_worker *w, const struct rt_listen *lc)
{
    if (lc->http)
        return rt__http_listen(w, &lc->addr);
    int fd = net_bind_udp_shared(&lc->addr);
    if (fd < 0)
        return fd;
    struct udp_sock *u = xcalloc(1, sizeof(*u));
    u->w = w;
    u->io.data = u;
    int rc = loop_io_start(w->loop, &u->io, fd, LOOP_READ, udp_cb);
    if (rc < 0) {
        close(fd);
        free(u);
        return rc;
    }
    u->next = w->udp;
    w->udp = u;
    fd = net_listen_tcp(&lc->addr, 1024);
    if (fd < 0)
        return fd;
    struct tcp_lsock *L = xcalloc(1, sizeof(*L));
    L->w = w;
    L->io.data = L;
    rc = loop_io_start(w->loop, &L->io, fd, LOOP_READ, tcp_accept_cb);
    if (rc < 0) {
        close(fd);
        free(L);
        return rc;
    }
    L->next = w->tcpl;
    w->tcpl = L;
    return 0;
}

void rt__worker_set(struct rt_worker *w, struct rt_settings *s)
{
    /* A reload settles the answers owed by peers (the configuration they were
     * asked under is gone); new learned routes alone leave them running. */
    if (rt__settings_static(s) != rt__settings_static(w->set))
        for (unsigned i = 0; w->pend && i < w->npend_cap && w->npend; i++)
            if (w->pend[i].used)
                pend_answer(w, &w->pend[i], NULL, 0, RT_EF_RELOAD);
    rt__settings_unref(w->set);
    w->set = s;
}

static void close_listeners(struct rt_worker *w)
{
    while (w->udp) {
        struct udp_sock *u = w->udp;
        w->udp = u->next;
        loop_io_close(&u->io);
        free(u);
    }
    while (w->tcpl) {
        struct tcp_lsock *L = w->tcpl;
        w->tcpl = L->next;
        loop_io_close(&L->io);
        free(L);
    }
}


void rt__worker_drain(struct rt_worker *w)
{
    close_listeners(w);
    rt__http_close(w);
}

void rt__worker_destroy(struct rt_worker *w)
{
    if (w == NULL)
        return;
    close_listeners(w);
    rt__http_close(w);
    for (unsigned i = 0; w->pend && i < w->npend_cap; i++)
        if (w->pend[i].used)
            pend_free(w, &w->pend[i]);
    while (w->conns) {
        struct tcp_conn *c = w->conns;
        c->npending = 0;
        tcp_close(c);
    }
    for (int i = 0; i < 2; i++)
        loop_io_close(&w->ecs_io[i]);
    loop_timer_stop(&w->tick);
    rt__settings_unref(w->set);
    free(w->pend);
    free(w->pend_by_id);
    free(w->rrl);
    free(w->qbuf);
    free(w->rbuf);
    free(w);
}

void **rt__worker_http_slot(struct rt_worker *w)
{
    return &w->http;
}

struct loop *rt__worker_loop(struct rt_worker *w)
{
    return w->loop;
}

struct router *rt__worker_router(struct rt_worker *w)
{
    return w->rt;
}
