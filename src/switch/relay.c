/*
 * relay -- the switch's connections, on each worker loop.
 *
 * A connection moves through three states:
 *   HELLO       read the client's first bytes: on a TLS listener until
 *               ch_parse has a whole ClientHello (bounded by
 *               hello_max_size and hello_timeout); on a plain HTTP
 *               listener whose chain has a url step, until the end of the
 *               request head (bounded by http_max_head). Nothing is sent
 *               to the client. A plain listener without a url step skips
 *               this state.
 *   CONNECTING  the policy chain picked a backend; a non-blocking connect
 *               runs under connect_timeout. A failure counts against the
 *               backend (passive detection), excludes it, and the chain
 *               runs again, up to `retries` times: the client never sees
 *               a failed cache as long as the bytes we hold are all it
 *               sent.
 *   RELAY       first the optional PROXY v2 header and the bytes read so
 *               far go to the backend; then each direction moves bytes on
 *               its own. It starts in copy mode: recv into the worker's
 *               buffer and send at once, which for the few small records
 *               of a handshake and a short response costs two calls per
 *               flight and no pipe. The first read that fills the buffer
 *               switches the direction to splice(2) through its own pipe,
 *               socket to pipe to socket, never through user space. Each
 *               direction ends on its own: EOF from one side is passed on
 *               as shutdown(SHUT_WR) to the other once everything read is
 *               written (half-close), and the connection closes when both
 *               have ended, on an error, or after idle_timeout without a
 *               byte either way.
 *
 * System calls are the switch's main cost per connection, so the common
 * path avoids the ones it can: the ClientHello is read right after accept
 * (it has usually arrived), the first bytes are sent right after connect
 * (on a near backend the connection is usually up; EAGAIN means wait for
 * writability), a read that returns less than asked is taken to have
 * drained the socket (level-triggered epoll reports anything newer), the
 * client's socket joins epoll only once there is something to wait for,
 * accepted sockets inherit TCP_NODELAY from the listener, and closing a
 * socket is its removal from epoll.
 * On TLS connections the backend's first bytes are read with recv instead
 * of splice until sh_parse has the ServerHello (one record), so the switch
 * can count resumed and full handshakes (TLS 1.2: the session ID is
 * echoed; TLS 1.3: pre_shared_key is present); then they are sent on and
 * splicing starts.
 *
 * Everything here runs on the worker's loop thread; the only shared state
 * is in struct sw (atomics, the sticky table) and the backends (atomics).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http1.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/proxyproto.h"
#include "lib/util.h"
#include "switch/internal.h"
#include "tls/clienthello.h"

#define PIPE_CHUNK (64u * 1024)   /* bytes asked of one splice into an empty pipe (the
                                     default pipe size; 256 KiB pipes measured no faster) */
#define COPY_CHUNK (16u * 1024)   /* copy-mode buffer; a read that fills it starts splicing */
#define PUMP_BUDGET (1u << 20)    /* bytes one direction moves per wakeup, for fairness */
#define PIPE_CACHE 64             /* empty pipes kept per worker */
#define OBSERVE_MAX (40u * 1024)  /* backend bytes held while looking for the ServerHello */
#define ACCEPT_BATCH 64

enum cstate { C_HELLO, C_CONNECTING, C_RELAY };

/* One direction of the relay. */
struct dir {
    int pipe[2];         /* -1 until first used */
    size_t in_pipe;      /* bytes sitting in the pipe */
    struct buf pre;      /* bytes to write before splicing (PROXY header, hello, ServerHello) */
    int bulk;            /* splicing; else copy mode */
    int eof;             /* read EOF from the source */
    int shut;            /* shut the destination's write side */
    int want_read, want_write;
};

struct conn {
    struct sw_worker *w;
    struct sw_settings *set;     /* a reference */
    struct loop_io cio, sio;     /* client and backend sockets */
    struct loop_timer timer;     /* hello, connect or idle deadline */
    enum cstate state;
    int plain;
    struct net_addr peer, local;
    uint8_t client[16];          /* the client's address bytes, the hash and sticky key */
    size_t client_len;
    struct buf head;             /* client bytes read before the decision */
    struct sw_hello_keys keys;
    int has_keys;
    char *url;                   /* owned: Host + target of a plain request, or NULL */
    size_t url_len;
    uint8_t sid[32];             /* the ClientHello's legacy session ID */
    uint8_t sid_len;
    struct sw_backend *b;        /* a reference: the chosen backend */
    enum sw_step step;
    struct sw_backend *excluded[SW_MAX_EXCLUDED]; /* references */
    unsigned nexcluded;
    struct dir c2s, s2c;
    int observing;               /* still looking for the ServerHello */
    struct buf obs;              /* backend bytes received while observing */
    size_t obs_off;              /* where the next ServerHello starts (after an HRR) */
    size_t obs_fwd;              /* obs bytes already queued for the client */
    int64_t last_ms;             /* last byte moved (idle timeout) */
    struct conn *next, *prev;
};

struct lsock {
    struct loop_io io;
    struct sw_worker *w;
    int plain;
    struct lsock *next;
};

struct sw_worker {
    struct sw *sw;
    struct loop *loop;
    struct sw_settings *set;     /* a reference; swapped on reload */
    struct lsock *lsocks;
    struct conn *conns;
    unsigned nconns;
    uint8_t *scratch;            /* owned: ch_parse/sh_parse reassembly */
    uint8_t *iobuf;              /* owned: COPY_CHUNK bytes for copy mode */
    size_t scratch_len;
    int pipes[PIPE_CACHE][2];    /* empty pipes for reuse */
    unsigned idx;                /* this worker's index, for its hand-off slots */
    unsigned hturn;              /* the hand-off connection used next */
    struct loop_timer reports;   /* reads the caches' load reports on this worker's slots */
    unsigned npipes;
    int draining;
    void (*drain_done)(void *);
    void *drain_arg;
};

static void conn_close(struct conn *c);
static void conn_route(struct conn *c);
static void relay_update(struct conn *c);

struct sw_worker *sw__workers_alloc(unsigned n)
{
    return xcalloc(n ? n : 1, sizeof(struct sw_worker));
}

struct sw_worker *sw__worker_at(struct sw_worker *ws, unsigned i)
{
    return &ws[i];
}

struct loop *sw__worker_loop(struct sw_worker *w)
{
    return w->loop;
}

struct sw *sw__worker_sw(struct sw_worker *w)
{
    return w->sw;
}

static void reject(struct conn *c, enum sw_reject why)
{
    metric_inc(c->w->sw->m_rejected[why]);
    log_debug("switch: closing a client connection: %s", sw__reject_name(why));
    conn_close(c);
}

static uint8_t *scratch(struct sw_worker *w, size_t need)
{
    if (w->scratch_len < need) {
        free(w->scratch);
        w->scratch = xmalloc(need);
        w->scratch_len = need;
    }
    return w->scratch;
}

/* Pipes. */

static int pipe_get(struct sw_worker *w, int p[2])
{
    if (w->npipes > 0) {
        w->npipes--;
        p[0] = w->pipes[w->npipes][0];
        p[1] = w->pipes[w->npipes][1];
        return 0;
    }
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) {
        log_warn("switch: pipe2");
        return -1;
    }
    return 0;
}

static void pipe_put(struct sw_worker *w, struct dir *d)
{
    if (d->pipe[0] < 0)
        return;
    /* A pipe with bytes left in it cannot be reused by another connection. */
    if (d->in_pipe == 0 && w->npipes < PIPE_CACHE) {
        w->pipes[w->npipes][0] = d->pipe[0];
        w->pipes[w->npipes][1] = d->pipe[1];
        w->npipes++;
    } else {
        close(d->pipe[0]);
        close(d->pipe[1]);
    }
    d->pipe[0] = d->pipe[1] = -1;
    d->in_pipe = 0;
}

/* Connection lifecycle. */

static void conn_free_cb(void *arg)
{
    struct conn *c = arg;
    buf_fini(&c->head);
    buf_fini(&c->obs);
    buf_fini(&c->c2s.pre);
    buf_fini(&c->s2c.pre);
    free(c->url);
    free(c);
}

static void release_backend(struct conn *c)
{
    if (c->b == NULL)
        return;
    atomic_fetch_sub(&c->b->active, 1);
    if (c->b->m_active)
        metric_add(c->b->m_active, -1);
    sw_backend_unref(c->b);
    c->b = NULL;
}

static void close_server(struct conn *c)
{
    loop_io_close(&c->sio);
}

static void conn_close(struct conn *c)
{
    struct sw_worker *w = c->w;

    if (c->cio.fd < 0)
        return;
    loop_timer_stop(&c->timer);
    loop_io_close(&c->cio);
    close_server(c);
    pipe_put(w, &c->c2s);
    pipe_put(w, &c->s2c);
    release_backend(c);
    for (unsigned i = 0; i < c->nexcluded; i++)
        sw_backend_unref(c->excluded[i]);
    c->nexcluded = 0;
    sw__settings_unref(c->set);
    c->set = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nconns--;
    atomic_fetch_sub(&w->sw->nconns, 1);
    metric_add(w->sw->m_active, -1);
    loop_defer(w->loop, conn_free_cb, c);
    if (w->draining && w->nconns == 0 && w->drain_done) {
        void (*done)(void *) = w->drain_done;
        w->drain_done = NULL;
        done(w->drain_arg);
    }
}

/* The relay. */

static void moved(struct conn *c, int to_client, size_t n)
{
    c->last_ms = loop_now_ms(c->w->loop);
    metric_add(to_client ? c->w->sw->m_bytes_down : c->w->sw->m_bytes_up, (int64_t)n);
}

/* Counts the handshake the ServerHello shows. */
static void observed(struct conn *c, const struct sh_info *sh)
{
    int resumed;
    if (sh->version == 0x0304)
        resumed = sh->has_psk;
    else
        resumed = c->sid_len > 0 && sh->session_id_len == c->sid_len &&
                  memcmp(sh->session_id, c->sid, c->sid_len) == 0;
    if (c->b && c->b->m_hs[c->step][resumed])
        metric_inc(c->b->m_hs[c->step][resumed]);
    atomic_fetch_add(&c->w->sw->step_hs[c->step][resumed], 1);
}

/* Queues obs[obs_fwd..) for the client. */
static void obs_forward(struct conn *c)
{
    buf_append(&c->s2c.pre, buf_head(&c->obs) + c->obs_fwd, buf_avail(&c->obs) - c->obs_fwd);
    c->obs_fwd = buf_avail(&c->obs);
}

static void obs_end(struct conn *c)
{
    obs_forward(c);
    c->observing = 0;
    buf_fini(&c->obs);
    buf_init(&c->obs);
}

/*
 * Reads backend bytes while looking for the ServerHello. Returns 1 to go on
 * pumping (bytes were queued or observation ended), 0 to wait for more,
 * -1 on a fatal error. Sets *drained when the read took less than asked.
 */
static int observe(struct conn *c, int src, int *drained)
{
    struct dir *d = &c->s2c;
    size_t room = OBSERVE_MAX - buf_avail(&c->obs);
    if (room == 0) {
        obs_end(c);
        return 1;
    }
    char *p = buf_reserve(&c->obs, MIN(room, 16384u));
    ssize_t n = recv(src, p, MIN(room, 16384u), 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) {
            d->want_read = 1;
            return 0;
        }
        return -1;
    }
    if (n == 0) {
        d->eof = 1;
        obs_end(c);
        return 1;
    }
    buf_commit(&c->obs, (size_t)n);
    *drained = (size_t)n < MIN(room, 16384u);
    c->last_ms = loop_now_ms(c->w->loop);
    for (;;) {
        const uint8_t *o = (const uint8_t *)buf_head(&c->obs);
        size_t len = buf_avail(&c->obs);
        /* After a HelloRetryRequest, TLS 1.3 servers may send a dummy
         * ChangeCipherSpec record; the real ServerHello follows later. */
        while (c->obs_off + 5 <= len && o[c->obs_off] == 0x14) {
            size_t rl = 5 + ((size_t)o[c->obs_off + 3] << 8 | o[c->obs_off + 4]);
            if (c->obs_off + rl > len)
                break;
            c->obs_off += rl;
        }
        struct sh_info sh;
        size_t max = OBSERVE_MAX - c->obs_off;
        int r = sh_parse(o + c->obs_off, len - c->obs_off, max, scratch(c->w, 8192), 8192, &sh);
        if (r == 0)
            return 1;
        if (r < 0) {
            /* Not a ServerHello we understand: relay it blind. */
            obs_end(c);
            return 1;
        }
        if (sh.is_hrr) {
            /* The client must see the HRR to send its second ClientHello. */
            c->obs_off += (size_t)r;
            obs_forward(c);
            continue;
        }
        observed(c, &sh);
        obs_end(c);
        return 1;
    }
}

static uint8_t *iobuf(struct sw_worker *w)
{
    if (w->iobuf == NULL)
        w->iobuf = xmalloc(COPY_CHUNK);
    return w->iobuf;
}

/*
 * Copy mode: one recv into the worker's buffer, sent on at once; what the
 * destination does not take waits in d->pre. Returns 1 to go on, 0 to wait
 * (want_read or want_write set), -1 on a fatal error. Sets *drained after
 * a short read, and switches the direction to splicing after a full one.
 */
static int copy_once(struct conn *c, struct dir *d, int src, int dst, int to_client, int *drained)
{
    uint8_t *b = iobuf(c->w);
    ssize_t n = recv(src, b, COPY_CHUNK, 0);
    if (n == 0) {
        d->eof = 1;
        return 1;
    }
    if (n < 0) {
        if (errno == EINTR)
            return 1;
        if (errno == EAGAIN) {
            d->want_read = 1;
            return 0;
        }
        return -1;
    }
    ssize_t m = send(dst, b, (size_t)n, MSG_NOSIGNAL);
    if (m < 0) {
        if (errno != EAGAIN && errno != EINTR)
            return -1;
        m = 0;
    }
    if (m > 0)
        moved(c, to_client, (size_t)m);
    if ((size_t)n == COPY_CHUNK)
        d->bulk = 1;
    else
        *drained = 1;
    if (m < n) {
        buf_append(&d->pre, b + m, (size_t)(n - m));
        d->want_write = 1;
        return 0;
    }
    return 1;
}

/*
 * Moves bytes of one direction (src -> dst) until it would block or has
 * used its budget. Returns 0, or -1 when the connection must close.
 */
static int pump(struct conn *c, struct dir *d, int src, int dst, int to_client)
{
    size_t budget = PUMP_BUDGET;
    int drained = 0;   /* the last read took less than asked: the socket was empty */
    d->want_read = d->want_write = 0;
    for (;;) {
        if (buf_avail(&d->pre) > 0) {
            ssize_t n = send(dst, buf_head(&d->pre), buf_avail(&d->pre), MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) {
                    d->want_write = 1;
                    return 0;
                }
                return -1;
            }
            buf_consume(&d->pre, (size_t)n);
            moved(c, to_client, (size_t)n);
            if (buf_avail(&d->pre) == 0) {
                /* Copy mode holds no memory between flights. */
                buf_fini(&d->pre);
                buf_init(&d->pre);
            }
            continue;
        }
        if (d->in_pipe > 0) {
            ssize_t n = splice(d->pipe[0], NULL, dst, NULL, d->in_pipe,
                               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) {
                    d->want_write = 1;
                    return 0;
                }
                return -1;
            }
            if (n == 0)
                return -1;
            d->in_pipe -= (size_t)n;
            moved(c, to_client, (size_t)n);
            continue;
        }
        if (d->eof) {
            if (!d->shut) {
                /* When the other direction has ended too, the connection
                 * closes next, and close() sends the FIN. */
                const struct dir *o = to_client ? &c->c2s : &c->s2c;
                if (!o->shut)
                    shutdown(dst, SHUT_WR);
                d->shut = 1;
            }
            return 0;
        }
        if (budget == 0 || drained) {
            /* Let other connections run, or wait for more: level-triggered
             * epoll calls back. */
            d->want_read = 1;
            return 0;
        }
        if (to_client && c->observing) {
            int r = observe(c, src, &drained);
            if (r <= 0)
                return r;
            continue;
        }
        if (!d->bulk) {
            int r = copy_once(c, d, src, dst, to_client, &drained);
            if (r <= 0)
                return r;
            budget = budget > COPY_CHUNK ? budget - COPY_CHUNK : 0;
            continue;
        }
        if (d->pipe[0] < 0 && pipe_get(c->w, d->pipe) < 0)
            return -1;
        /* Read only into an empty pipe: then EAGAIN can only mean the
         * socket has nothing, never that the pipe is out of slots. */
        ssize_t n = splice(src, NULL, d->pipe[1], NULL, PIPE_CHUNK, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            d->in_pipe = (size_t)n;
            budget = (size_t)n >= budget ? 0 : budget - (size_t)n;
            continue;
        }
        if (n == 0) {
            d->eof = 1;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            d->want_read = 1;
            return 0;
        }
        return -1;
    }
}

/*
 * Watches io for events: starts it when it is not in epoll yet (and there
 * is something to wait for), else changes its interest. Returns 0 or
 * -errno; on failure io->fd is kept, for conn_close.
 */
static int io_watch(struct conn *c, struct loop_io *io, unsigned events, loop_io_cb cb)
{
    if (io->loop != NULL)
        return loop_io_modify(io, events);
    if (events == 0)
        return 0;
    int fd = io->fd;
    int rc = loop_io_start(c->w->loop, io, fd, events, cb);
    if (rc < 0)
        io->fd = fd;
    return rc;
}

static void client_io(struct loop_io *io, unsigned events);
static void server_io(struct loop_io *io, unsigned events);

static void relay_update(struct conn *c)
{
    if (c->c2s.shut && c->s2c.shut) {
        conn_close(c);
        return;
    }
    if (io_watch(c, &c->cio, (c->c2s.want_read ? LOOP_READ : 0) | (c->s2c.want_write ? LOOP_WRITE : 0),
                 client_io) < 0 ||
        io_watch(c, &c->sio, (c->s2c.want_read ? LOOP_READ : 0) | (c->c2s.want_write ? LOOP_WRITE : 0),
                 server_io) < 0) {
        log_warn("switch: epoll_ctl: %s", strerror(errno));
        conn_close(c);
    }
}

static void relay_client_io(struct conn *c, unsigned events)
{
    int cfd = c->cio.fd, sfd = c->sio.fd;
    if ((events & (LOOP_READ | LOOP_ERROR)) && pump(c, &c->c2s, cfd, sfd, 0) < 0)
        goto fail;
    if ((events & (LOOP_WRITE | LOOP_ERROR)) && pump(c, &c->s2c, sfd, cfd, 1) < 0)
        goto fail;
    relay_update(c);
    return;
fail:
    conn_close(c);
}

static void relay_server_io(struct conn *c, unsigned events)
{
    int cfd = c->cio.fd, sfd = c->sio.fd;
    if ((events & (LOOP_READ | LOOP_ERROR)) && pump(c, &c->s2c, sfd, cfd, 1) < 0)
        goto fail;
    if ((events & (LOOP_WRITE | LOOP_ERROR)) && pump(c, &c->c2s, cfd, sfd, 0) < 0)
        goto fail;
    relay_update(c);
    return;
fail:
    conn_close(c);
}

/* Connecting. */

static void connect_failed(struct conn *c, int err)
{
    char as[80];
    struct sw_backend *b = c->b;
    log_debug("switch: connect to backend %s (%s) failed: %s", b->name,
              net_addr_str(c->plain ? &b->http : &b->addr, as, sizeof(as)), strerror(-err));
    sw_backend_passive(b, 0, c->set->check.type != SW_CHECK_OFF ? c->set->passive_fall : 0);
    close_server(c);
    c->excluded[c->nexcluded++] = sw_backend_ref(b);
    release_backend(c);
    if (c->nexcluded > c->set->retries || c->nexcluded >= SW_MAX_EXCLUDED) {
        reject(c, SW_REJ_CONNECT);
        return;
    }
    metric_inc(c->w->sw->m_retries);
    conn_route(c);
}

/*
 * Sends the optional PROXY v2 header and the bytes read from the client
 * so far, in one call; what the socket does not take is queued. Returns 0
 * when the connection is up, -EAGAIN while it is still connecting (or,
 * with nothing to send, until writability says it is up), another -errno
 * when the connect failed.
 */
static int send_first(struct conn *c, int up)
{
    uint8_t hdr[PROXY_V2_MAX];
    size_t hl = 0;
    if (c->set->proxy_protocol) {
        c->local.len = sizeof(c->local.ss);
        getsockname(c->cio.fd, (struct sockaddr *)&c->local.ss, &c->local.len);
        int n = proxy_v2_write(&c->peer, &c->local, hdr, sizeof(hdr));
        if (n > 0)
            hl = (size_t)n;
    }
    size_t hlen = buf_avail(&c->head);
    if (hl + hlen == 0)
        return up ? 0 : -EAGAIN;
    struct iovec iov[2] = {{hdr, hl}, {buf_head(&c->head), hlen}};
    struct msghdr mh = {.msg_iov = hl ? iov : iov + 1, .msg_iovlen = hl ? 2 : 1};
    ssize_t n = sendmsg(c->sio.fd, &mh, MSG_NOSIGNAL);
    if (n < 0) {
        /* A socket still connecting says EAGAIN (ENOTCONN on some paths). */
        if ((errno == EAGAIN || errno == ENOTCONN) && !up)
            return -EAGAIN;
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
        n = 0;
    }
    moved(c, 0, (size_t)n);
    if ((size_t)n < hl) {
        buf_append(&c->c2s.pre, hdr + n, hl - (size_t)n);
        n = (ssize_t)hl;
    }
    size_t off = (size_t)n - hl;
    buf_append(&c->c2s.pre, buf_head(&c->head) + off, hlen - off);
    return 0;
}

/* The backend connection is up and the first bytes are on their way. */
static void connected(struct conn *c)
{
    struct sw *sw = c->w->sw;
    struct sw_backend *b = c->b;

    sw_backend_passive(b, 1, 0);
    if (b->m_routed[c->step])
        metric_inc(b->m_routed[c->step]);
    atomic_fetch_add(&sw->step_routed[c->step], 1);
    buf_fini(&c->head);
    buf_init(&c->head);
    c->state = C_RELAY;
    c->observing = !c->plain;
    c->last_ms = loop_now_ms(c->w->loop);
    loop_timer_start(&c->timer, c->set->idle_timeout_ms);
    /* Neither side is read now: the client was read until it had nothing
     * more (or sent a whole head), and the backend has only just received
     * the first bytes. Epoll says when either has something. */
    c->c2s.want_write = buf_avail(&c->c2s.pre) > 0;
    c->c2s.want_read = !c->c2s.want_write;
    c->s2c.want_read = 1;
    relay_update(c);
}

static void server_io(struct loop_io *io, unsigned events)
{
    struct conn *c = io->data;
    if (c->state == C_RELAY) {
        relay_server_io(c, events);
        return;
    }
    if (c->state != C_CONNECTING)
        return;
    int err = (events & LOOP_ERROR) ? net_connect_result(io->fd) : 0;
    if (err == 0)
        err = send_first(c, 1);
    if (err < 0) {
        connect_failed(c, err == -EAGAIN ? -ECONNREFUSED : err);
        return;
    }
    connected(c);
}

static void conn_connect(struct conn *c)
{
    struct sw_backend *b = c->b;
    const struct net_addr *a = c->plain ? &b->http : &b->addr;
    int fd = net_connect_tcp(a);
    if (fd < 0) {
        connect_failed(c, fd);
        return;
    }
    c->sio.fd = fd;
    net_nodelay(fd);
    /* On a near backend the connection is usually up already. */
    int err = send_first(c, 0);
    if (err == 0) {
        connected(c);
        return;
    }
    if (err != -EAGAIN) {
        connect_failed(c, err);
        return;
    }
    int rc = io_watch(c, &c->sio, LOOP_WRITE, server_io);
    if (rc < 0) {
        connect_failed(c, rc);
        return;
    }
    c->state = C_CONNECTING;
    loop_timer_start(&c->timer, c->set->connect_timeout_ms);
}

/*
 * The backend took the client's socket: it answers the client itself from
 * now on. Nothing of the connection stays here.
 */
static void handed_off(struct conn *c)
{
    struct sw_backend *b = c->b;
    sw_backend_passive(b, 1, 0);
    if (b->m_routed[c->step])
        metric_inc(b->m_routed[c->step]);
    atomic_fetch_add(&c->w->sw->step_routed[c->step], 1);
    if (b->m_handoff)
        metric_inc(b->m_handoff);
    /* The socket's description lives on in the cache, so closing our fd
     * would not take it out of this loop's epoll: remove it first. */
    if (c->cio.loop != NULL) {
        int fd = c->cio.fd;
        loop_io_stop(&c->cio);
        c->cio.fd = fd;
    }
    conn_close(c);
}

/*
 * Hands the connection to a backend on this host, on one of this worker's
 * connections to it (taken in turn; one closed by a restarted cache is
 * opened again, once). Returns 1 when it is done (handed off, or failed
 * over to the next backend), 0 to relay it over TCP instead: the hand-off
 * connection is full, which means the cache is behind, not down.
 */
static int try_handoff(struct conn *c)
{
    struct sw_worker *w = c->w;
    struct sw_backend *b = c->b;
    int *slot = &b->hsock[w->idx * SW_HANDOFF_STREAMS + w->hturn++ % SW_HANDOFF_STREAMS];
    int r = -EPIPE;
    for (int attempt = 0; attempt < 2 && (r == -EPIPE || r == -ECONNRESET || r == -ENOTCONN); attempt++) {
        if (*slot < 0) {
            *slot = handoff_connect(&b->handoff);
            if (*slot < 0) {
                r = *slot;
                *slot = -1;
                break;
            }
        }
        r = handoff_send(*slot, c->cio.fd, !c->plain, buf_head(&c->head), buf_avail(&c->head));
        if (r < 0 && r != -EAGAIN) {
            close(*slot);
            *slot = -1;
        }
    }
    if (r == 0) {
        if (!loop_timer_active(&w->reports))
            loop_timer_start(&w->reports, HANDOFF_REPORT_MS);
        handed_off(c);
        return 1;
    }
    if (r == -EAGAIN || r == -ENOBUFS || r == -ENOMEM || r == -ETOOMANYREFS || r == -EMSGSIZE) {
        if (b->m_handoff_fallback)
            metric_inc(b->m_handoff_fallback);
        return 0;
    }
    connect_failed(c, r);
    return 1;
}

/*
 * Reads the load reports that arrived on this worker's hand-off
 * connections (lib/handoff.h). A connection the cache closed is closed
 * here too (the next hand-off opens a new one), and the backend's report
 * is forgotten until a new one comes: a restarted cache starts empty.
 */
static void read_reports(struct loop_timer *t)
{
    struct sw_worker *w = (struct sw_worker *)((char *)t - offsetof(struct sw_worker, reports));
    const struct sw_pool *pool = &w->set->pool;
    int open = 0;
    for (size_t i = 0; i < pool->n; i++) {
        struct sw_backend *b = pool->b[i];
        if (!b->has_handoff)
            continue;
        for (unsigned k = 0; k < SW_HANDOFF_STREAMS; k++) {
            int *slot = &b->hsock[w->idx * SW_HANDOFF_STREAMS + k];
            for (int m = 0; *slot >= 0 && m < 64; m++) {
                uint32_t load;
                const char *why = NULL;
                int r = handoff_report_recv(*slot, &load, &why);
                if (r == 1) {
                    sw_backend_report(b, load);
                    if (b->m_reported_load)
                        metric_set(b->m_reported_load, load);
                    continue;
                }
                if (r == 0)
                    break;
                if (r == -1)
                    log_warn("switch: backend %s: hand-off connection: %s; closing it", b->name, why);
                close(*slot);
                *slot = -1;
                atomic_store_explicit(&b->has_load, 0, memory_order_relaxed);
            }
            open += *slot >= 0;
        }
    }
    if (open > 0 && !w->draining)
        loop_timer_start(&w->reports, HANDOFF_REPORT_MS);
}

/* Runs the chain (again, after a failed connect) and connects. */
static void conn_route(struct conn *c)
{
    struct sw *sw = c->w->sw;
    struct sw_request r = {
        .keys = c->has_keys ? &c->keys : NULL,
        .client = c->client,
        .client_len = c->client_len,
        .url = c->url,
        .url_len = c->url_len,
        .plain = c->plain,
        .excluded = c->excluded,
        .nexcluded = c->nexcluded,
    };
    struct sw_decision d;
    const struct sw_policy *p = c->plain ? &c->set->http : &c->set->tls;
    if (sw_policy_decide(p, &c->set->pool, sw->sticky, &sw->rr, loop_now_ms(c->w->loop), &r, &d) < 0) {
        reject(c, SW_REJ_NO_BACKEND);
        return;
    }
    c->b = sw_backend_ref(d.b);
    c->step = d.step;
    atomic_fetch_add(&d.b->active, 1);
    atomic_fetch_add_explicit(&d.b->load_since, 1, memory_order_relaxed);
    if (d.b->m_active)
        metric_add(d.b->m_active, 1);
    if (d.b->has_handoff && try_handoff(c))
        return;
    conn_connect(c);
}

/* Reading the first bytes. */

/*
 * Whether ch_parse is worth calling: the bytes so far end on a record
 * boundary, or show something that is not a sane handshake record. This
 * keeps a client that sends one byte at a time from costing a full parse
 * per byte.
 */
static int hello_parse_now(const uint8_t *p, size_t len, size_t max)
{
    size_t i = 0;
    if (len > 0 && p[0] != 0x16)
        return 1;
    /* A handshake header announcing more than max bytes is refused now,
     * not after the client has sent them (or the timeout). */
    if (len >= 9 && ((size_t)p[6] << 16 | (size_t)p[7] << 8 | p[8]) + 9 > max)
        return 1;
    while (i + 5 <= len) {
        size_t rl = (size_t)p[i + 3] << 8 | p[i + 4];
        if (p[i] != 0x16 || rl == 0 || rl > 16384)
            return 1;
        if (i + 5 + rl > len)
            return 0;
        i += 5 + rl;
    }
    return i == len && len > 0;
}

static void hello_tls(struct conn *c)
{
    const uint8_t *p = (const uint8_t *)buf_head(&c->head);
    size_t len = buf_avail(&c->head);
    struct ch_info ch;

    if (!hello_parse_now(p, len, c->set->hello_max)) {
        if (len >= c->set->hello_max)
            reject(c, SW_REJ_TOO_LARGE);
        return;
    }
    int r = ch_parse(p, len, c->set->hello_max, scratch(c->w, c->set->hello_max),
                     c->set->hello_max, &ch);
    if (r == 0) {
        if (len >= c->set->hello_max)
            reject(c, SW_REJ_TOO_LARGE);
        return;
    }
    if (r < 0) {
        reject(c, r == CH_E_NOT_TLS ? SW_REJ_NOT_TLS : r == CH_E_TOO_LARGE ? SW_REJ_TOO_LARGE
                                                                           : SW_REJ_MALFORMED);
        return;
    }
    sw_policy_keys(&c->set->tls, &ch, &c->keys);
    c->has_keys = 1;
    c->sid_len = ch.session_id_len <= 32 ? ch.session_id_len : 0;
    memcpy(c->sid, ch.session_id, c->sid_len);
    conn_route(c);
}

static void hello_http(struct conn *c)
{
    const char *p = buf_head(&c->head);
    size_t len = buf_avail(&c->head);
    if (len < c->set->http_max_head && memmem(p, len, "\r\n\r\n", 4) == NULL)
        return;
    struct http1_limits lim;
    struct http1_msg *m = xmalloc(sizeof(*m));
    http1_limits_default(&lim);
    lim.max_head_bytes = c->set->http_max_head;
    int r = http1_parse_request(p, len, &lim, m);
    if (r > 0) {
        /* Host and target, so that two sites' "/" do not share a cache. */
        size_t hl = m->host ? m->host_len : 0;
        c->url_len = hl + m->target_len;
        c->url = xmalloc(c->url_len + 1);
        if (hl)
            memcpy(c->url, m->host, hl);
        memcpy(c->url + hl, m->target, m->target_len);
        c->url[c->url_len] = '\0';
    }
    /* A head the parser refuses is still forwarded: the cache answers it
     * (400, 431, ...) better than a silent close would; the url step just
     * passes. */
    free(m);
    conn_route(c);
}

/* Reads what the client has sent so far, and decides once it is enough. */
static void hello_read(struct conn *c)
{
    size_t cap = c->plain ? c->set->http_max_head : c->set->hello_max;
    size_t room = cap - buf_avail(&c->head);
    if (room == 0) {
        reject(c, SW_REJ_TOO_LARGE);
        return;
    }
    char *p = buf_reserve(&c->head, room);
    ssize_t n = recv(c->cio.fd, p, room, 0);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            reject(c, SW_REJ_CLOSED);
            return;
        }
        int rc = io_watch(c, &c->cio, LOOP_READ, client_io);
        if (rc < 0) {
            log_warn("switch: epoll_ctl: %s", strerror(-rc));
            conn_close(c);
        }
        return;
    }
    if (n == 0) {
        reject(c, SW_REJ_CLOSED);
        return;
    }
    buf_commit(&c->head, (size_t)n);
    if (c->plain)
        hello_http(c);
    else
        hello_tls(c);
    /* Still in C_HELLO: wait for more. */
    if (c->cio.fd >= 0 && c->state == C_HELLO && io_watch(c, &c->cio, LOOP_READ, client_io) < 0)
        conn_close(c);
}

static void client_io(struct loop_io *io, unsigned events)
{
    struct conn *c = io->data;

    if (c->state == C_RELAY) {
        relay_client_io(c, events);
        return;
    }
    if (c->state == C_CONNECTING) {
        /* A hang-up or error: the client left. Bytes it sent wait in the
         * kernel until the relay starts. */
        if (events & LOOP_ERROR)
            reject(c, SW_REJ_CLOSED);
        else
            loop_io_modify(io, 0);
        return;
    }
    hello_read(c);
}

static void conn_timer(struct loop_timer *t)
{
    struct conn *c = t->data;
    switch (c->state) {
    case C_HELLO:
        reject(c, SW_REJ_TIMEOUT);
        return;
    case C_CONNECTING:
        connect_failed(c, -ETIMEDOUT);
        return;
    case C_RELAY: {
        int64_t idle = loop_now_ms(c->w->loop) - c->last_ms;
        if (idle >= c->set->idle_timeout_ms) {
            log_debug("switch: closing a relayed connection idle for %lld ms", (long long)idle);
            conn_close(c);
            return;
        }
        loop_timer_start(t, c->set->idle_timeout_ms - idle);
        return;
    }
    }
}

static void client_key(struct conn *c)
{
    const struct sockaddr_storage *ss = &c->peer.ss;
    if (ss->ss_family == AF_INET) {
        memcpy(c->client, &((const struct sockaddr_in *)ss)->sin_addr, 4);
        c->client_len = 4;
    } else if (ss->ss_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, mapped, 12) == 0) {
            memcpy(c->client, a + 12, 4);
            c->client_len = 4;
        } else {
            memcpy(c->client, a, 16);
            c->client_len = 16;
        }
    }
}

static void accept_one(struct lsock *L, int fd, const struct net_addr *peer)
{
    struct sw_worker *w = L->w;
    struct sw *sw = w->sw;
    struct sw_settings *s = w->set;

    if (w->draining) {
        close(fd);
        return;
    }
    if (atomic_fetch_add(&sw->nconns, 1) >= s->max_connections) {
        atomic_fetch_sub(&sw->nconns, 1);
        metric_inc(sw->m_rejected[SW_REJ_LIMIT]);
        close(fd);
        return;
    }
    struct conn *c = xcalloc(1, sizeof(*c));
    c->w = w;
    c->set = sw__settings_ref(s);
    c->plain = L->plain;
    c->peer = *peer;
    client_key(c);
    buf_init(&c->head);
    buf_init(&c->obs);
    buf_init(&c->c2s.pre);
    buf_init(&c->s2c.pre);
    c->c2s.pipe[0] = c->c2s.pipe[1] = c->s2c.pipe[0] = c->s2c.pipe[1] = -1;
    c->sio.fd = -1;
    c->sio.data = c;
    /* Not in epoll yet: hello_read or relay_update adds it when there is
     * something to wait for. TCP_NODELAY comes from the listener. */
    c->cio.fd = fd;
    c->cio.data = c;
    loop_timer_init(w->loop, &c->timer, conn_timer);
    c->timer.data = c;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    metric_add(sw->m_active, 1);
    c->state = C_HELLO;
    int need_head = !c->plain;
    for (unsigned i = 0; c->plain && i < s->http.nsteps; i++)
        need_head |= s->http.steps[i] == SW_STEP_URL;
    if (!need_head) {
        /* Nothing to read before deciding: connect right away. */
        conn_route(c);
        return;
    }
    loop_timer_start(&c->timer, s->hello_timeout_ms);
    /* The ClientHello (or request head) has usually arrived by now. */
    hello_read(c);
}

static void accept_cb(struct loop_io *io, unsigned events)
{
    struct lsock *L = io->data;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct net_addr peer = {.len = sizeof(peer.ss)};
        int fd = accept4(io->fd, (struct sockaddr *)&peer.ss, &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                log_warn("switch: accept");
            return;
        }
        accept_one(L, fd, &peer);
        if (io->fd < 0)
            return;
    }
}

/* Worker. */

void sw__worker_init(struct sw_worker *w, struct sw *sw, struct loop *l, struct sw_settings *s)
{
    w->sw = sw;
    w->loop = l;
    w->set = s;
    w->idx = (unsigned)(w - sw->workers);
    loop_timer_init(l, &w->reports, read_reports);
}

int sw__worker_listen(struct sw_worker *w, const struct sw_listen_conf *lc)
{
    int fd = net_listen_tcp(&lc->addr, 1024);
    if (fd < 0)
        return fd;
    /* Accepted sockets inherit it: one setsockopt per listener, not per
     * connection. */
    net_nodelay(fd);
    struct lsock *L = xcalloc(1, sizeof(*L));
    L->w = w;
    L->plain = lc->plain;
    L->io.data = L;
    int rc = loop_io_start(w->loop, &L->io, fd, LOOP_READ, accept_cb);
    if (rc < 0) {
        close(fd);
        free(L);
        return rc;
    }
    L->next = w->lsocks;
    w->lsocks = L;
    return 0;
}

void sw__worker_set(struct sw_worker *w, struct sw_settings *s)
{
    sw__settings_unref(w->set);
    w->set = s;
}

static void close_listeners(struct sw_worker *w)
{
    while (w->lsocks) {
        struct lsock *L = w->lsocks;
        w->lsocks = L->next;
        int fd = L->io.fd;
        loop_io_stop(&L->io);
        if (fd >= 0)
            close(fd);
        free(L);
    }
}

void sw__worker_drain(struct sw_worker *w, void (*done)(void *), void *arg)
{
    w->draining = 1;
    w->drain_done = done;
    w->drain_arg = arg;
    close_listeners(w);
    /* Connections that have not been relayed yet hold nothing of value:
     * the client has sent a ClientHello at most, and will retry. */
    struct conn *c = w->conns;
    while (c) {
        struct conn *next = c->next;
        if (c->state == C_HELLO)
            conn_close(c);
        c = next;
    }
    if (w->nconns == 0 && w->drain_done) {
        w->drain_done = NULL;
        done(arg);
    }
}

void sw__worker_fini(struct sw_worker *w)
{
    if (w->sw == NULL)
        return;
    w->drain_done = NULL;
    loop_timer_stop(&w->reports);
    close_listeners(w);
    while (w->conns)
        conn_close(w->conns);
    for (unsigned i = 0; i < w->npipes; i++) {
        close(w->pipes[i][0]);
        close(w->pipes[i][1]);
    }
    w->npipes = 0;
    free(w->scratch);
    w->scratch = NULL;
    free(w->iobuf);
    w->iobuf = NULL;
    sw__settings_unref(w->set);
    w->set = NULL;
}
