/*
 * sess_redis -- see sess_redis.h.
 */
#include "tls/sess_redis.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"
#include "lib/util.h"

#define RETRY_MIN_MS 1000
#define RETRY_MAX_MS 10000
#define SCAN_COUNT "500"
#define KEY_MAX (64 + 2 * SESS_WIRE_MAX_ID + 1)

/* One hiredis connection on our loop. */
struct rconn {
    struct sess_redis *r;
    redisAsyncContext *ac;        /* NULL when not connected */
    struct loop_io io;
    unsigned events;
    int sub;                      /* the subscription connection */
};

struct sess_redis {
    _Atomic int refs;             /* the owner and every message posted to the loop */
    struct loop *loop;
    struct sess_store *store;     /* a reference */
    pthread_rwlock_t lock;        /* guards keys */
    struct sess_redis_conf conf;  /* keys owned */
    char channel[80];
    uint32_t epoch;
    _Atomic uint32_t seq;
    struct rconn cmd, sub;
    struct loop_timer retry;
    struct loop_timer deadline;   /* hiredis has no connect timeout: ours */
    int64_t retry_ms;
    int stopped;
    int up;                       /* both connections up */
    int down_logged;              /* this outage was logged */
    uint8_t *plain;               /* loop thread: an opened value */
    _Atomic uint64_t written, unsent, received, deleted, rejected, connects;
};

/* A write for the loop thread, made on a handshake's thread. */
struct msg {
    struct sess_redis *r;
    int del;
    char key[KEY_MAX];
    int64_t ttl_ms;
    size_t len;
    uint8_t val[];                /* sealed SESSION or DELETE */
};

static void connect_all(struct sess_redis *r);

void sess_redis_conf_fini(struct sess_redis_conf *c)
{
    sess_keyring_destroy(c->keys);
    c->keys = NULL;
}

static void unref(struct sess_redis *r)
{
    if (atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    sess_store_unref(r->store);
    sess_redis_conf_fini(&r->conf);
    pthread_rwlock_destroy(&r->lock);
    free(r->plain);
    free(r);
}

static void key_of(const struct sess_redis *r, const uint8_t *id, size_t idlen, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(r->conf.prefix);
    memcpy(out, r->conf.prefix, n);
    for (size_t i = 0; i < idlen; i++) {
        out[n++] = hex[id[i] >> 4];
        out[n++] = hex[id[i] & 15];
    }
    out[n] = '\0';
}

/* ---- hiredis on our loop ---- */

static void rc_apply(struct rconn *c)
{
    if (c->io.fd >= 0)
        loop_io_modify(&c->io, c->events);
}
static void ev_add_read(void *p) { struct rconn *c = p; c->events |= LOOP_READ; rc_apply(c); }
static void ev_del_read(void *p) { struct rconn *c = p; c->events &= ~LOOP_READ; rc_apply(c); }
static void ev_add_write(void *p) { struct rconn *c = p; c->events |= LOOP_WRITE; rc_apply(c); }
static void ev_del_write(void *p) { struct rconn *c = p; c->events &= ~LOOP_WRITE; rc_apply(c); }

static void ev_cleanup(void *p)
{
    struct rconn *c = p;
    /* hiredis closes the fd itself. */
    loop_io_stop(&c->io);
    c->io.fd = -1;
    c->events = 0;
    c->ac = NULL;
}

static void on_io(struct loop_io *io, unsigned events)
{
    struct rconn *c = io->data;
    if (c->ac && (events & (LOOP_READ | LOOP_ERROR)))
        redisAsyncHandleRead(c->ac);
    if (c->ac && (events & (LOOP_WRITE | LOOP_ERROR)))
        redisAsyncHandleWrite(c->ac);
}

static void went_down(struct sess_redis *r, const char *why)
{
    char as[80];
    if (!r->down_logged)
        log_warnx("tls redis %s: %s; TLS sessions stay local until it is back",
                  net_addr_str(&r->conf.server, as, sizeof(as)), why);
    r->down_logged = 1;
    r->up = 0;
    if (!r->stopped && !loop_timer_active(&r->retry)) {
        loop_timer_start(&r->retry, r->retry_ms);
        r->retry_ms = r->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : r->retry_ms * 2;
    }
}

static void drop_conns(struct sess_redis *r)
{
    /* redisAsyncFree calls ev_cleanup, which clears ac. */
    if (r->cmd.ac)
        redisAsyncFree(r->cmd.ac);
    if (r->sub.ac)
        redisAsyncFree(r->sub.ac);
}

/* ---- receiving ---- */

/* Opens a sealed value and applies it. */
static void apply_value(struct sess_redis *r, const uint8_t *v, size_t len)
{
    struct sess_wire_hdr h;
    size_t plen = 0;
    int rc = sess_wire_open(r->conf.keys, v, len, &h, r->plain, SESS_WIRE_MAX_PLAIN, &plen);
    if (rc < 0) {
        atomic_fetch_add(&r->rejected, 1);
        log_debug("tls redis: value refused: %s", sess_wire_strerror(rc));
        return;
    }
    if (h.sender == r->conf.sender)
        goto out; /* our own */
    sess_store_apply(r->store, h.type, r->plain, plen, &r->received, &r->deleted);
out:
    mem_wipe(r->plain, plen);
}

static void on_message(redisAsyncContext *ac, void *reply, void *arg)
{
    struct sess_redis *r = arg;
    redisReply *m = reply;
    if (m == NULL || m->type != REDIS_REPLY_ARRAY || m->elements != 3)
        return;
    if (m->element[0]->type == REDIS_REPLY_STRING && strcmp(m->element[0]->str, "message") == 0 &&
        m->element[2]->type == REDIS_REPLY_STRING)
        apply_value(r, (const uint8_t *)m->element[2]->str, m->element[2]->len);
}

static void on_get(redisAsyncContext *ac, void *reply, void *arg)
{
    struct sess_redis *r = arg;
    redisReply *m = reply;
    if (m && m->type == REDIS_REPLY_STRING)
        apply_value(r, (const uint8_t *)m->str, m->len);
}

/* SCAN cursor MATCH prefix* : GET every key found, then go on with the next cursor. */
static void on_scan(redisAsyncContext *ac, void *reply, void *arg)
{
    struct sess_redis *r = arg;
    redisReply *m = reply;
    if (m == NULL || m->type != REDIS_REPLY_ARRAY || m->elements != 2 ||
        m->element[0]->type != REDIS_REPLY_STRING || m->element[1]->type != REDIS_REPLY_ARRAY)
        return;
    redisReply *keys = m->element[1];
    for (size_t i = 0; i < keys->elements; i++)
        if (keys->element[i]->type == REDIS_REPLY_STRING)
            redisAsyncCommand(ac, on_get, r, "GET %b", keys->element[i]->str, keys->element[i]->len);
    if (strcmp(m->element[0]->str, "0") != 0)
        redisAsyncCommand(ac, on_scan, r, "SCAN %s MATCH %s* COUNT " SCAN_COUNT, m->element[0]->str,
                          r->conf.prefix);
}

/* ---- connecting ---- */

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct rconn *c = ac->data;
    struct sess_redis *r = c->r;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this returns (ev_cleanup runs). */
        went_down(r, ac->errstr[0] ? ac->errstr : "cannot connect");
        if (c == &r->cmd && r->sub.ac)
            redisAsyncDisconnect(r->sub.ac);
        else if (c == &r->sub && r->cmd.ac)
            redisAsyncDisconnect(r->cmd.ac);
        return;
    }
    if (r->cmd.ac && r->sub.ac && (r->cmd.ac->c.flags & REDIS_CONNECTED) &&
        (r->sub.ac->c.flags & REDIS_CONNECTED)) {
        char as[80];
        atomic_fetch_add(&r->connects, 1);
        r->retry_ms = RETRY_MIN_MS;
        r->up = 1;
        log_info("tls redis %s: %s; sharing TLS sessions, catching up",
                 net_addr_str(&r->conf.server, as, sizeof(as)), r->down_logged ? "back" : "connected");
        r->down_logged = 0;
        redisAsyncCommand(r->cmd.ac, on_scan, r, "SCAN 0 MATCH %s* COUNT " SCAN_COUNT, r->conf.prefix);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct rconn *c = ac->data;
    struct sess_redis *r = c->r;
    if (r->stopped)
        return;
    went_down(r, status == REDIS_OK ? "disconnected" : (ac->errstr[0] ? ac->errstr : "connection lost"));
    /* Take the other connection down too; both come back together. */
    struct rconn *other = c == &r->cmd ? &r->sub : &r->cmd;
    if (other->ac)
        redisAsyncDisconnect(other->ac);
}

static int open_conn(struct sess_redis *r, struct rconn *c)
{
    char host[64];
    net_addr_host(&r->conf.server, host, sizeof(host));
    redisAsyncContext *ac = redisAsyncConnect(host, net_addr_port(&r->conf.server));
    if (ac == NULL)
        return -1;
    if (ac->err) {
        redisAsyncFree(ac);
        return -1;
    }
    c->r = r;
    c->ac = ac;
    c->events = 0;
    ac->data = c;
    c->io.data = c;
    if (loop_io_start(r->loop, &c->io, ac->c.fd, 0, on_io) < 0) {
        c->io.fd = -1;
        redisAsyncFree(ac);
        c->ac = NULL;
        return -1;
    }
    ac->ev.data = c;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* The connect is in progress: hiredis waits for writability. */
    ev_add_write(c);
    return 0;
}

static void connect_all(struct sess_redis *r)
{
    if (r->stopped || r->cmd.ac || r->sub.ac)
        return;
    if (open_conn(r, &r->cmd) < 0 || open_conn(r, &r->sub) < 0) {
        drop_conns(r);
        went_down(r, "cannot connect");
        return;
    }
    r->sub.sub = 1;
    redisAsyncCommand(r->sub.ac, on_message, r, "SUBSCRIBE %s", r->channel);
    loop_timer_start(&r->deadline, 3000);
}

static void on_retry(struct loop_timer *t)
{
    connect_all(t->data);
}

static void on_deadline(struct loop_timer *t)
{
    struct sess_redis *r = t->data;
    if (r->up || r->stopped)
        return;
    drop_conns(r);
    went_down(r, "connect timed out");
}

/* ---- sending ---- */

static void send_msg(void *arg)
{
    struct msg *m = arg;
    struct sess_redis *r = m->r;
    if (!r->stopped && r->up && r->cmd.ac) {
        if (m->del)
            redisAsyncCommand(r->cmd.ac, NULL, NULL, "DEL %s", m->key);
        else
            redisAsyncCommand(r->cmd.ac, NULL, NULL, "SET %s %b PX %lld", m->key, m->val, m->len,
                              (long long)m->ttl_ms);
        redisAsyncCommand(r->cmd.ac, NULL, NULL, "PUBLISH %s %b", r->channel, m->val, m->len);
        if (!m->del)
            atomic_fetch_add(&r->written, 1);
    } else if (!m->del) {
        atomic_fetch_add(&r->unsent, 1);
    }
    mem_wipe(m->val, m->len);
    free(m);
    unref(r);
}

/* The store's hook, on the handshake's thread: seal, then hand over to the loop. */
static void on_local(void *arg, enum sess_hook_op op, const uint8_t *id, size_t idlen, const uint8_t *der,
                     size_t derlen, int64_t expires)
{
    struct sess_redis *r = arg;
    uint8_t payload[SESS_WIRE_MAX_SESS + SESS_WIRE_MAX_ID + 64];
    size_t plen;
    struct sess_wire_hdr h = {.sender = r->conf.sender, .epoch = r->epoch, .ts_ms = time_wall_ms()};
    int64_t ttl_ms = 0;
    if (op == SESS_HOOK_NEW) {
        struct sess_wire_payload pl;
        sess_wire_payload_init(&pl, payload, sizeof(payload));
        if (sess_wire_put_session(&pl, id, idlen, (uint64_t)expires, der, derlen) < 0)
            return;
        plen = pl.len;
        h.type = SESS_T_SESSION;
        ttl_ms = expires * 1000 - (int64_t)h.ts_ms;
        if (ttl_ms <= 0)
            return;
    } else {
        ssize_t n = sess_wire_put_delete(payload, sizeof(payload), id, idlen);
        if (n < 0)
            return;
        plen = (size_t)n;
        h.type = SESS_T_DELETE;
    }
    struct msg *m = xmalloc(sizeof(*m) + plen + SESS_WIRE_OVERHEAD);
    h.seq = atomic_fetch_add(&r->seq, 1);
    pthread_rwlock_rdlock(&r->lock);
    ssize_t n = sess_wire_seal(r->conf.keys, &h, payload, plen, m->val, plen + SESS_WIRE_OVERHEAD);
    pthread_rwlock_unlock(&r->lock);
    mem_wipe(payload, plen);
    if (n < 0) {
        free(m);
        return;
    }
    m->r = r;
    m->del = op != SESS_HOOK_NEW;
    m->len = (size_t)n;
    m->ttl_ms = ttl_ms;
    key_of(r, id, idlen, m->key);
    atomic_fetch_add(&r->refs, 1);
    loop_post(r->loop, send_msg, m);
}

/* ---- lifecycle ---- */

struct sess_redis *sess_redis_start(struct loop *l, struct sess_store *store, struct sess_redis_conf *conf)
{
    struct sess_redis *r = xcalloc(1, sizeof(*r));
    atomic_init(&r->refs, 1);
    r->loop = l;
    r->store = sess_store_ref(store);
    pthread_rwlock_init(&r->lock, NULL);
    r->conf = *conf;
    conf->keys = NULL;
    snprintf(r->channel, sizeof(r->channel), "%sevents", r->conf.prefix);
    r->epoch = (uint32_t)time_wall();
    r->plain = xmalloc(SESS_WIRE_MAX_PLAIN);
    r->cmd.io.fd = r->sub.io.fd = -1;
    r->retry_ms = RETRY_MIN_MS;
    loop_timer_init(l, &r->retry, on_retry);
    r->retry.data = r;
    loop_timer_init(l, &r->deadline, on_deadline);
    r->deadline.data = r;
    sess_store_set_hook(store, on_local, r);
    connect_all(r);
    return r;
}

void sess_redis_update(struct sess_redis *r, struct sess_redis_conf *conf)
{
    pthread_rwlock_wrlock(&r->lock);
    sess_keyring_destroy(r->conf.keys);
    r->conf.keys = conf->keys;
    conf->keys = NULL;
    pthread_rwlock_unlock(&r->lock);
}

void sess_redis_stop(struct sess_redis *r)
{
    if (r == NULL)
        return;
    r->stopped = 1;
    sess_store_set_hook(r->store, NULL, NULL);
    loop_timer_stop(&r->retry);
    loop_timer_stop(&r->deadline);
    drop_conns(r);
    unref(r);
}

void sess_redis_stats(struct sess_redis *r, struct sess_redis_stats *out)
{
    out->written = atomic_load(&r->written);
    out->unsent = atomic_load(&r->unsent);
    out->received = atomic_load(&r->received);
    out->deleted = atomic_load(&r->deleted);
    out->rejected = atomic_load(&r->rejected);
    out->connects = atomic_load(&r->connects);
    out->up = r->up;
}
