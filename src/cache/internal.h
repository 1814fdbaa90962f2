/*
 * cache/internal.h -- what the cache role's two files share: the request
 * flow (cache.c) and the role's configuration, admin API and life cycle
 * (cache_role.c). Not an interface for other modules.
 */
#ifndef FERRY_CACHE_INTERNAL_H
#define FERRY_CACHE_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

#include "cache/disk.h"
#include "cache/store.h"
#include "cache/upstream.h"
#include "http/server.h"
#include "lib/metrics.h"
#include "tls/sess_group.h"
#include "tls/sess_redis.h"
#include "tls/sess_store.h"
#include "tls/tls.h"

#define MAX_KEY 8192 /* longest primary key (publisher + target) */

/* The cache result of a request, as sent in X-Cache and counted. */
enum xc { XC_HIT, XC_MISS, XC_STALE, XC_REVALIDATED, XC_BYPASS, XC_COUNT };
extern const char *const cache__xc_names[XC_COUNT];

struct publisher {
    char **hosts;              /* owned: lowercase names, first = the publisher */
    size_t nhosts;
    struct up_target origin;   /* label and sni owned */
    struct up_target parent;
    int has_parent;
    char *origin_host;         /* owned */
};

struct cache_settings {
    _Atomic int refs;
    char *name;                /* owned: Via pseudonym */
    struct publisher *pubs;    /* owned */
    size_t npubs;
    SSL_CTX *client_ctx;       /* owned reference, for https upstreams */
    struct tls_server *tls;    /* owned, or NULL without certificates */
    int heuristic_pct;
    int64_t heuristic_max;     /* seconds */
    int64_t default_sie;       /* seconds */
    char *targeted;            /* owned, or NULL */
    uint64_t max_object;
};

struct cache_worker {
    struct cache *cache;
    struct loop *loop;
    struct hsrv *srv;
    struct up_pool *pool;
    struct cache_settings *set; /* a reference, swapped on reload */
};

struct cache {
    struct cache_settings *set;  /* reference held by the instance */
    struct store *store;
    struct disk *disk;           /* owned, or NULL without a disk tier */
    char *disk_path;             /* owned */
    uint64_t disk_size;
    struct net_addr *listen, *listen_tls; /* owned */
    size_t nlisten, nlisten_tls;
    unsigned char *proxy, *proxy_tls;     /* owned: PROXY v2 flag per listener */
    char *handoff_path;          /* owned: where a switch hands connections over, or NULL */
    int handoff_fd;              /* its listening socket (on main_loop), or -1 */
    struct loop_io handoff_io;
    unsigned handoff_turn;       /* the worker that takes the next switch connection */
    _Atomic unsigned open_conns; /* client connections open, all workers (load reports) */
    struct metric *m_handoff_ok, *m_handoff_bad;
    struct hsrv_limits lim;
    struct up_timeouts upt;
    struct cache_worker *workers; /* owned */
    unsigned nworkers;
    struct loop *main_loop;
    char *access_path;           /* owned, or NULL */
    _Atomic int access_fd;
    struct metric *m_req[XC_COUNT], *m_bytes, *m_fetches, *m_fetch_err, *m_collapsed, *m_purged;
    struct metric *m_disk_hits;
    struct sess_group_conf *group_conf; /* owned: tls_session_store group, or NULL */
    struct sess_group *group;           /* running replication, or NULL */
    struct sess_redis_conf *redis_conf; /* owned: tls_session_store redis, or NULL */
    struct sess_redis *redis;           /* running, or NULL */
};

/* The HTTP handler of the cache (cache.c). */
extern const struct hsrv_handler cache__handler;

/* Settings are shared by the instance, each worker and each request. */
struct cache_settings *cache__settings_ref(struct cache_settings *s);
void cache__settings_unref(struct cache_settings *s);
/* The publisher serving host[0..len) (port and a final dot ignored), or NULL. */
const struct publisher *cache__find_publisher(const struct cache_settings *s, const char *host,
                                              size_t len);
/* Opens the access log, writing its directive lines if it is new. Returns the fd or -errno. */
int cache__open_access_log(const char *path);

#endif
