/*
 * internal -- what switch.c (the role: config, settings, admin API) and
 * relay.c (connections on the worker loops) share. Not an interface for
 * anything outside src/switch/.
 *
 * Ownership: struct sw is the role instance (main thread). Its settings
 * are refcounted and read-only once built; each worker and each
 * connection holds a reference, and a reload publishes new settings to the
 * workers with loop_post. The sticky table, the turn counter and the
 * counters are shared by every worker (their own locking or atomics).
 */
#ifndef FERRY_SWITCH_INTERNAL_H
#define FERRY_SWITCH_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/loop.h"
#include "lib/metrics.h"
#include "lib/net.h"
#include "switch/policy.h"
#include "switch/pool.h"
#include "switch/sticky.h"

/* Why a connection was closed without being relayed. */
enum sw_reject {
    SW_REJ_NOT_TLS = 0,  /* not a TLS handshake record (plain HTTP, SSLv2, garbage) */
    SW_REJ_MALFORMED,    /* a ClientHello with bad lengths or fields */
    SW_REJ_TOO_LARGE,    /* ClientHello over hello_max_size */
    SW_REJ_TIMEOUT,      /* ClientHello (or request head) not received in time */
    SW_REJ_CLOSED,       /* client closed before its first bytes were complete */
    SW_REJ_LIMIT,        /* max_connections reached */
    SW_REJ_NO_BACKEND,   /* no backend left to try */
    SW_REJ_CONNECT,      /* every connect attempt failed */
    SW_NREJ
};

struct sw_settings {
    _Atomic int refs;
    struct sw_policy tls;        /* chain of TLS listeners */
    struct sw_policy http;       /* chain of plain HTTP listeners */
    struct sw_pool pool;
    struct sw_check_conf check;
    size_t hello_max;
    size_t http_max_head;
    int64_t hello_timeout_ms, connect_timeout_ms, idle_timeout_ms;
    unsigned max_connections, retries, passive_fall;
    int proxy_protocol;
    size_t sticky_max;
    int64_t sticky_timeout_ms;
};

struct sw_listen_conf {
    struct net_addr addr;
    int plain;
};

struct sw_worker;

struct sw {
    struct sw_settings *set;       /* the main thread's reference */
    struct sw_listen_conf *listen; /* owned */
    size_t nlisten;
    struct sw_worker *workers;     /* owned */
    unsigned nworkers;
    struct loop *main_loop;
    struct sw_sticky *sticky;      /* owned; shared by the workers */
    struct sw_checker *checker;    /* owned; runs on main_loop */
    struct loop_timer sweep;       /* sticky expiry, on main_loop */
    _Atomic uint64_t rr;           /* turn counter of leastconn and roundrobin */
    _Atomic unsigned nconns;       /* open client connections, all workers */
    _Atomic unsigned draining;     /* workers still draining */
    void (*drain_done)(void *);
    void *drain_arg;
    /* Totals per step for the admin API (metrics carry them per backend). */
    _Atomic uint64_t step_routed[SW_NSTEPS];
    _Atomic uint64_t step_hs[SW_NSTEPS][2];
    struct metric *m_rejected[SW_NREJ];
    struct metric *m_active, *m_bytes_up, *m_bytes_down, *m_retries;
    struct metric *m_sticky_entries, *m_sticky_expired;
};

struct sw_settings *sw__settings_ref(struct sw_settings *s);
void sw__settings_unref(struct sw_settings *s);
const char *sw__reject_name(enum sw_reject r);

/* Creates worker w's state on loop l with settings s (a new reference). */
void sw__worker_init(struct sw_worker *w, struct sw *sw, struct loop *l, struct sw_settings *s);
/* Opens a listener on the worker's loop. Returns 0 or -errno. */
int sw__worker_listen(struct sw_worker *w, const struct sw_listen_conf *lc);
/* Swaps in new settings (a reference passed in). Worker loop thread. */
void sw__worker_set(struct sw_worker *w, struct sw_settings *s);
/* Stops accepting, closes connections still reading their first bytes, and
 * calls done(arg) once the relayed ones have ended. Worker loop thread. */
void sw__worker_drain(struct sw_worker *w, void (*done)(void *), void *arg);
/* Closes everything and frees the worker's state (loops stopped). */
void sw__worker_fini(struct sw_worker *w);
/* Allocates an array of n workers (opaque outside relay.c). */
struct sw_worker *sw__workers_alloc(unsigned n);
struct sw_worker *sw__worker_at(struct sw_worker *ws, unsigned i);
struct loop *sw__worker_loop(struct sw_worker *w);
struct sw *sw__worker_sw(struct sw_worker *w);

#endif
