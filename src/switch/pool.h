/*
 * pool -- the switch's backends (the cache servers of its node group),
 * their health, and the active health checker.
 *
 * A backend is shared by every worker thread and outlives the config
 * generation that created it: a reload that keeps a backend (same name and
 * addresses) keeps the same object, with its health and counters, and one
 * that drops it leaves it alive until the last relayed connection through
 * it ends. So backends are reference counted: each sw_pool holds one
 * reference per backend, each connection holds one while it uses it.
 *
 * Health is one atomic flag per backend, read by workers on every
 * decision. It is written by the checker (active checks on one loop, the
 * main one: TCP connect, or an HTTP GET whose status must be 2xx, every
 * interval, `rise` successes to come back, `fall` failures to go) and by
 * workers (passive detection: `passive_fall` consecutive failed connects
 * take a backend out at once; only the checker brings it back).
 */
#ifndef FERRY_SWITCH_POOL_H
#define FERRY_SWITCH_POOL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/handoff.h"
#include "lib/loop.h"
#include "lib/metrics.h"
#include "lib/net.h"

/* The policy steps, also the label values of the routing metrics. */
enum sw_step {
    SW_STEP_PSK = 0,     /* TLS 1.3 pre_shared_key identity carries a label */
    SW_STEP_TICKET,      /* TLS 1.2 session ticket key_name carries a label */
    SW_STEP_SESSION_ID,  /* legacy session ID carries a label */
    SW_STEP_STICKY,      /* client address in the sticky table */
    SW_STEP_HASH,        /* rendezvous hash of the client address */
    SW_STEP_LEASTCONN,   /* fewest active connections */
    SW_STEP_ROUNDROBIN,  /* the next backend in turn (a baseline) */
    SW_STEP_URL,         /* plain HTTP: rendezvous hash of Host and target */
    SW_STEP_FALLBACK,    /* no step decided: any backend left */
    SW_NSTEPS
};

/* The name of a step ("psk", ...), as in configs and metric labels. */
const char *sw_step_name(enum sw_step s);
/* Parses a step name (not "fallback", which is implied). Returns 0 or -1. */
int sw_step_parse(const char *name, enum sw_step *out);

enum { SW_HS_FULL = 0, SW_HS_RESUMED = 1 };

#define SW_MAX_WEIGHT 1000
#define SW_MAX_WORKERS 64     /* the top-level `workers` limit */
#define SW_HANDOFF_STREAMS 4  /* hand-off connections per worker and backend */

struct sw_backend {
    _Atomic int refs;
    char *name;                  /* owned */
    uint64_t id;                 /* rendezvous identity: keyed hash of name */
    struct net_addr addr;        /* where TLS listeners forward */
    struct net_addr http;        /* where plain HTTP listeners forward (has_http) */
    struct net_addr check;       /* health-check target (default: addr) */
    int has_http;
    struct handoff_addr handoff; /* the cache's hand-off socket (has_handoff) */
    int has_handoff;
    /* Hand-off connections: SW_HANDOFF_STREAMS per worker, each slot used
     * only by its worker's thread; -1 = not connected. Owned (closed when
     * the backend is freed). */
    int *hsock;
    unsigned label;              /* 0 = none */
    _Atomic unsigned weight;     /* share of new clients (hash, leastconn, roundrobin); 0 = drain */
    _Atomic int up;              /* in service */
    _Atomic unsigned active;     /* connections routed here and not yet closed */
    /* A hand-off backend's own count of its open client connections, as
     * last reported (lib/handoff.h), and the connections routed here since
     * that report: leastconn's view of a backend whose connections leave
     * the switch. */
    _Atomic uint32_t load_reported;
    _Atomic unsigned load_since;
    _Atomic int has_load;
    _Atomic unsigned passive_fails; /* consecutive failed connects */
    /* Metrics, bound by sw_backend_bind_metrics (NULL before). */
    struct metric *m_routed[SW_NSTEPS];
    struct metric *m_hs[SW_NSTEPS][2];
    struct metric *m_up, *m_active, *m_connect_fail, *m_check_fail;
    struct metric *m_handoff, *m_handoff_fallback, *m_reported_load;
};

struct sw_pool {
    struct sw_backend **b;       /* owned array; one reference per entry */
    size_t n;
};

/* Creates a backend with one reference; up, no metrics yet. name is copied. */
struct sw_backend *sw_backend_create(const char *name, uint64_t id);
struct sw_backend *sw_backend_ref(struct sw_backend *b);
/* Drops a reference; the last one frees. Any thread. */
void sw_backend_unref(struct sw_backend *b);
/* The connections leastconn counts: the backend's own report plus those
 * routed since, when it reports (hand-off); else the ones open here. */
static inline uint64_t sw_backend_load(const struct sw_backend *b)
{
    if (atomic_load_explicit(&b->has_load, memory_order_relaxed))
        return (uint64_t)atomic_load_explicit(&b->load_reported, memory_order_relaxed) +
               atomic_load_explicit(&b->load_since, memory_order_relaxed);
    return atomic_load_explicit(&b->active, memory_order_relaxed);
}
/* A load report from the backend arrived (any thread). */
static inline void sw_backend_report(struct sw_backend *b, uint32_t load)
{
    atomic_store_explicit(&b->load_reported, load, memory_order_relaxed);
    atomic_store_explicit(&b->load_since, 0, memory_order_relaxed);
    atomic_store_explicit(&b->has_load, 1, memory_order_relaxed);
}
/* Registers b's metric series (main thread; idempotent per name). */
void sw_backend_bind_metrics(struct sw_backend *b);
/* Same name and addresses and label (so a reload may keep the old object;
 * a new weight is then stored into it). */
int sw_backend_same(const struct sw_backend *a, const struct sw_backend *b);
/* Marks up or down and logs the change (why: a short reason). Any thread. */
void sw_backend_set_up(struct sw_backend *b, int up, const char *why);
/*
 * Passive detection: a connect through b failed (or succeeded, ok=1).
 * After fall consecutive failures the backend goes down (fall 0 = never).
 */
void sw_backend_passive(struct sw_backend *b, int ok, unsigned fall);

/* Frees a pool's array after dropping its references. */
void sw_pool_fini(struct sw_pool *p);
/* The backend named name, or NULL. */
struct sw_backend *sw_pool_find(const struct sw_pool *p, const char *name);
/* The backend with identity id, or NULL. */
struct sw_backend *sw_pool_by_id(const struct sw_pool *p, uint64_t id);

enum sw_check_type { SW_CHECK_OFF = 0, SW_CHECK_TCP, SW_CHECK_HTTP, SW_CHECK_TLS };

struct sw_check_conf {
    enum sw_check_type type;
    char path[256];              /* HTTP: request target, e.g. /healthz */
    char sni[256];               /* TLS: server name to send, or "" */
    int64_t interval_ms;
    int64_t timeout_ms;
    unsigned rise, fall;
};

struct sw_checker;

/* Creates a checker on loop l (no checks until sw_checker_set). */
struct sw_checker *sw_checker_create(struct loop *l);
/*
 * Makes the checker check exactly the backends of pool with conf: checks
 * of backends no longer in the pool stop, new ones start (the first after
 * a short random delay). Loop thread only.
 */
void sw_checker_set(struct sw_checker *ck, const struct sw_pool *pool,
                    const struct sw_check_conf *conf);
/* Stops every check and frees the checker. Loop thread only. */
void sw_checker_destroy(struct sw_checker *ck);

#endif
