/*
 * sess_group -- see sess_group.h.
 */
#include "tls/sess_group.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

#define SYNC_RETRY_MS 2000
#define SOCK_BUF (4 << 20)   /* a sync answer is a burst of datagrams */

struct sess_group {
    struct loop *loop;
    struct loop_io io;
    struct loop_timer retry;
    struct sess_store *store;         /* a reference */
    pthread_rwlock_t lock;            /* guards what a reload replaces: keys, peers */
    struct sess_keyring *keys;        /* owned */
    struct net_addr peers[SESS_GROUP_MAX_PEERS];
    size_t npeers;
    size_t sync_datagram;
    uint16_t sender;
    uint32_t epoch;
    _Atomic uint32_t seq;
    struct sess_replay *replay;       /* loop thread only */
    size_t sync_next, sync_first;     /* catch-up: the next peer to ask, and the first asked */
    uint8_t *rbuf, *plain;            /* loop thread: one datagram in, its plaintext */
    _Atomic uint64_t sent, datagrams_out, send_errors, received, deleted, rejected, sync_requests,
        sync_sent;
    _Atomic uint64_t rejected_by[16];
};

void sess_group_conf_fini(struct sess_group_conf *c)
{
    sess_keyring_destroy(c->keys);
    c->keys = NULL;
}

/* Seals payload as one datagram of type and sends it to `to` (or every peer). Lock held (read). */
static void send_sealed(struct sess_group *g, uint8_t type, const uint8_t *payload, size_t plen,
                        const struct net_addr *to)
{
    static _Thread_local uint8_t out[SESS_WIRE_MAX_DGRAM];
    struct sess_wire_hdr h = {
        .type = type,
        .sender = g->sender,
        .epoch = g->epoch,
        .seq = atomic_fetch_add(&g->seq, 1),
        .ts_ms = time_wall_ms(),
    };
    ssize_t n = sess_wire_seal(g->keys, &h, payload, plen, out, sizeof(out));
    if (n < 0) {
        log_warnx("tls group: cannot seal a datagram: %s", sess_wire_strerror((int)n));
        return;
    }
    for (size_t i = 0; i < (to ? 1 : g->npeers); i++) {
        const struct net_addr *a = to ? to : &g->peers[i];
        if (sendto(g->io.fd, out, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)&a->ss,
                   a->len) < 0)
            atomic_fetch_add(&g->send_errors, 1);
        else
            atomic_fetch_add(&g->datagrams_out, 1);
    }
    mem_wipe(out, (size_t)n);
}

/* The store's hook: runs on the thread whose handshake made or dropped the session. */
static void on_local(void *arg, enum sess_hook_op op, const uint8_t *id, size_t idlen, const uint8_t *der,
                     size_t derlen, int64_t expires)
{
    struct sess_group *g = arg;
    uint8_t payload[SESS_WIRE_MAX_SESS + SESS_WIRE_MAX_ID + 64];
    size_t plen;
    uint8_t type;
    if (op == SESS_HOOK_NEW) {
        struct sess_wire_payload pl;
        sess_wire_payload_init(&pl, payload, sizeof(payload));
        if (sess_wire_put_session(&pl, id, idlen, (uint64_t)expires, der, derlen) < 0)
            return;
        plen = pl.len;
        type = SESS_T_SESSION;
    } else {
        ssize_t n = sess_wire_put_delete(payload, sizeof(payload), id, idlen);
        if (n < 0)
            return;
        plen = (size_t)n;
        type = SESS_T_DELETE;
    }
    pthread_rwlock_rdlock(&g->lock);
    if (g->npeers > 0) {
        send_sealed(g, type, payload, plen, NULL);
        if (type == SESS_T_SESSION)
            atomic_fetch_add(&g->sent, 1);
    }
    pthread_rwlock_unlock(&g->lock);
    mem_wipe(payload, plen);
}

/* Sync answers: sessions packed into datagrams of at most sync_datagram bytes. */
struct sync_ctx {
    struct sess_group *g;
    const struct net_addr *to;
    struct sess_wire_payload pl;
    uint8_t buf[SESS_WIRE_MAX_PLAIN];
    uint64_t n;
};

static void sync_flush(struct sync_ctx *s)
{
    if (s->pl.count == 0)
        return;
    send_sealed(s->g, SESS_T_SESSION, s->buf, s->pl.len, s->to);
    mem_wipe(s->buf, s->pl.len);
    size_t cap = s->g->sync_datagram > SESS_WIRE_OVERHEAD ? s->g->sync_datagram - SESS_WIRE_OVERHEAD : 0;
    sess_wire_payload_init(&s->pl, s->buf, cap);
}

static int sync_one(void *arg, const uint8_t *id, size_t idlen, const uint8_t *der, size_t derlen,
                    int64_t expires)
{
    struct sync_ctx *s = arg;
    int r = sess_wire_put_session(&s->pl, id, idlen, (uint64_t)expires, der, derlen);
    if (r == SESS_E_FULL) {
        sync_flush(s);
        r = sess_wire_put_session(&s->pl, id, idlen, (uint64_t)expires, der, derlen);
        if (r == SESS_E_FULL) {
            /* Larger than sync_datagram on its own: send it alone. */
            sess_wire_payload_init(&s->pl, s->buf, sizeof(s->buf));
            r = sess_wire_put_session(&s->pl, id, idlen, (uint64_t)expires, der, derlen);
        }
    }
    if (r == 0)
        s->n++;
    return 0;
}

static const struct net_addr *peer_of(struct sess_group *g, const struct sockaddr_storage *ss, socklen_t len)
{
    for (size_t i = 0; i < g->npeers; i++)
        if (g->peers[i].len == len && memcmp(&g->peers[i].ss, ss, len) == 0)
            return &g->peers[i];
    return NULL;
}

static void answer_sync(struct sess_group *g, const struct net_addr *to)
{
    struct sync_ctx *s = xmalloc(sizeof(*s));
    s->g = g;
    s->to = to;
    s->n = 0;
    size_t cap = g->sync_datagram > SESS_WIRE_OVERHEAD ? g->sync_datagram - SESS_WIRE_OVERHEAD : 0;
    sess_wire_payload_init(&s->pl, s->buf, cap);
    sess_store_foreach(g->store, sync_one, s);
    sync_flush(s);
    atomic_fetch_add(&g->sync_requests, 1);
    atomic_fetch_add(&g->sync_sent, s->n);
    char as[80];
    log_info("tls group: sent %" PRIu64 " sessions to %s", s->n, net_addr_str(to, as, sizeof(as)));
    free(s);
}

static void reject(struct sess_group *g, int err, const struct sockaddr_storage *from, socklen_t fromlen)
{
    atomic_fetch_add(&g->rejected, 1);
    if (err <= 0 && -err < 16)
        atomic_fetch_add(&g->rejected_by[-err], 1);
    struct net_addr a = {.len = fromlen};
    memcpy(&a.ss, from, fromlen);
    char as[80];
    log_debug("tls group: datagram from %s refused: %s", net_addr_str(&a, as, sizeof(as)),
              err == 0 ? "sync request from an address that is not a peer" : sess_wire_strerror(err));
}

static void handle(struct sess_group *g, const uint8_t *d, size_t len, const struct sockaddr_storage *from,
                   socklen_t fromlen)
{
    struct sess_wire_hdr h;
    size_t plen = 0;
    int r = sess_wire_open(g->keys, d, len, &h, g->plain, SESS_WIRE_MAX_PLAIN, &plen);
    if (r == 0 && h.sender == g->sender)
        return; /* our own, back through a peer list that names us */
    if (r == 0)
        r = sess_replay_accept(g->replay, &h, time_wall_ms());
    if (r < 0) {
        reject(g, r, from, fromlen);
        goto out;
    }
    if (h.type == SESS_T_SYNC_REQUEST) {
        const struct net_addr *to = peer_of(g, from, fromlen);
        if (to == NULL) {
            reject(g, 0, from, fromlen);
            goto out;
        }
        answer_sync(g, to);
    } else {
        sess_store_apply(g->store, h.type, g->plain, plen, &g->received, &g->deleted);
    }
out:
    mem_wipe(g->plain, plen);
}

static void on_readable(struct loop_io *io, unsigned events)
{
    struct sess_group *g = io->data;
    pthread_rwlock_rdlock(&g->lock);
    for (int i = 0; i < 256; i++) {
        struct sockaddr_storage from;
        socklen_t fromlen = sizeof(from);
        ssize_t n = recvfrom(io->fd, g->rbuf, SESS_WIRE_MAX_DGRAM + 1, MSG_DONTWAIT,
                             (struct sockaddr *)&from, &fromlen);
        if (n < 0)
            break;
        handle(g, g->rbuf, (size_t)n, &from, fromlen);
    }
    pthread_rwlock_unlock(&g->lock);
}

/*
 * Catch-up asks one peer at a time: every peer holds (nearly) every live
 * session of the group, so answers from all of them at once would only
 * bring n - 1 copies in one burst, enough to overflow the socket buffer of
 * a server joining a large group. The next peer is asked after
 * SYNC_RETRY_MS while nothing at all has arrived (the first one may be the
 * dead peer this server replaces).
 */
static void ask_next_peer(struct sess_group *g)
{
    pthread_rwlock_rdlock(&g->lock);
    if (g->npeers > 0) {
        send_sealed(g, SESS_T_SYNC_REQUEST, NULL, 0, &g->peers[g->sync_next % g->npeers]);
        g->sync_next++;
    }
    pthread_rwlock_unlock(&g->lock);
}

static void on_retry(struct loop_timer *t)
{
    struct sess_group *g = t->data;
    if (atomic_load(&g->received) > 0 || g->sync_next - g->sync_first >= g->npeers)
        return;
    ask_next_peer(g);
    loop_timer_start(&g->retry, SYNC_RETRY_MS);
}

static void take_conf(struct sess_group *g, struct sess_group_conf *c)
{
    sess_keyring_destroy(g->keys);
    g->keys = c->keys;
    c->keys = NULL;
    memcpy(g->peers, c->peers, c->npeers * sizeof(c->peers[0]));
    g->npeers = c->npeers;
    g->sync_datagram = c->sync_datagram ? c->sync_datagram : 1400;
    g->sender = c->sender;
}

struct sess_group *sess_group_start(struct loop *l, struct sess_store *store,
                                    struct sess_group_conf *conf, char *err, size_t errlen)
{
    char as[80];
    int fd = net_bind_udp(&conf->listen);
    if (fd < 0) {
        snprintf(err, errlen, "cannot bind UDP %s: %s", net_addr_str(&conf->listen, as, sizeof(as)),
                 strerror(-fd));
        return NULL;
    }
    int sz = SOCK_BUF;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    struct sess_group *g = xcalloc(1, sizeof(*g));
    g->loop = l;
    loop_timer_init(l, &g->retry, on_retry);
    g->retry.data = g;
    g->store = sess_store_ref(store);
    pthread_rwlock_init(&g->lock, NULL);
    take_conf(g, conf);
    g->epoch = (uint32_t)time_wall();
    g->replay = sess_replay_create(conf->window_ms);
    g->rbuf = xmalloc(SESS_WIRE_MAX_DGRAM + 1);
    g->plain = xmalloc(SESS_WIRE_MAX_PLAIN);
    g->io.data = g;
    int rc = loop_io_start(l, &g->io, fd, LOOP_READ, on_readable);
    if (rc < 0) {
        close(fd);
        snprintf(err, errlen, "cannot watch the UDP socket: %s", strerror(-rc));
        g->io.fd = -1;
        sess_group_stop(g);
        return NULL;
    }
    sess_store_set_hook(store, on_local, g);
    /* Start at a different peer on each server, to spread the answers. */
    g->sync_next = g->npeers ? g->sender % g->npeers : 0;
    g->sync_first = g->sync_next;
    ask_next_peer(g);
    loop_timer_start(&g->retry, SYNC_RETRY_MS);
    log_info("tls group: sender %u on udp %s, %zu peers, sealing with key %u", g->sender,
             net_addr_str(&conf->listen, as, sizeof(as)), g->npeers, sess_keyring_seal_id(g->keys));
    return g;
}

void sess_group_update(struct sess_group *g, struct sess_group_conf *conf)
{
    pthread_rwlock_wrlock(&g->lock);
    take_conf(g, conf);
    pthread_rwlock_unlock(&g->lock);
    log_info("tls group: %zu peers, sealing with key %u", g->npeers, sess_keyring_seal_id(g->keys));
}

void sess_group_stop(struct sess_group *g)
{
    if (g == NULL)
        return;
    sess_store_set_hook(g->store, NULL, NULL);
    loop_timer_stop(&g->retry);
    loop_io_close(&g->io);
    sess_store_unref(g->store);
    sess_keyring_destroy(g->keys);
    sess_replay_destroy(g->replay);
    free(g->rbuf);
    free(g->plain);
    pthread_rwlock_destroy(&g->lock);
    free(g);
}

void sess_group_stats(struct sess_group *g, struct sess_group_stats *out)
{
    out->sent = atomic_load(&g->sent);
    out->datagrams_out = atomic_load(&g->datagrams_out);
    out->send_errors = atomic_load(&g->send_errors);
    out->received = atomic_load(&g->received);
    out->deleted = atomic_load(&g->deleted);
    out->rejected = atomic_load(&g->rejected);
    for (int i = 0; i < 16; i++)
        out->rejected_by[i] = atomic_load(&g->rejected_by[i]);
    out->sync_requests = atomic_load(&g->sync_requests);
    out->sync_sent = atomic_load(&g->sync_sent);
}
