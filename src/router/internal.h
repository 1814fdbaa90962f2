/*
 * router/internal -- what the router's files share: the settings snapshot
 * (zones, names, nodes, peers, areas) and the answering engine.
 *
 * A struct rt_settings is built by the config code, never changed after,
 * and reference-counted: each worker holds a reference to the snapshot it
 * answers from, and a reload posts the new one to every worker, which drops
 * the old one. So a reload (a new million-prefix area table included) never
 * stops the answers.
 *
 * Nodes and peers belong to a snapshot (reference-counted, as a worker may
 * still answer from an old snapshot); a node that survives a reload under
 * the same name and status address starts with the old one's health. The
 * health poller (poll.c, main loop) writes node->up and node->load with
 * relaxed atomics; workers read them.
 *
 * Learned routes (from peer CDNs, through lib/feed.h) are a second layer,
 * struct rt_learned, just as immutable and reference-counted. The
 * snapshot the workers answer from is then a derived one: a shallow copy
 * of the static snapshot that holds a reference to it and to the layer
 * (rt__settings_derive). A new set of learned routes makes a new derived
 * snapshot from the same static one; a reload makes a new static one and
 * derives from it with the current layer.
 */
#ifndef FERRY_ROUTER_INTERNAL_H
#define FERRY_ROUTER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "dns/wire.h"
#include "lib/conf.h"
#include "lib/feed.h"
#include "lib/metrics.h"
#include "lib/net.h"
#include "router/area.h"

#define RT_MAX_ADDRS 8        /* switch addresses of one node */
#define RT_MAX_SETS 8         /* sets a node belongs to */
#define RT_MAX_TARGETS 16     /* targets of one area line */
#define RT_MAX_PATHS 16       /* path rules of one service */
#define RT_NAME_MAX 64        /* node, peer and set names */

enum rt_reason {
    RT_R_OWN = 0,      /* one of our nodes, chosen by area */
    RT_R_PEER_CNAME,   /* handed to a peer CDN by CNAME */
    RT_R_PEER_NS,      /* by NS delegation */
    RT_R_PEER_ECS,     /* by asking the peer's router ("modified DNS") */
    RT_R_PEER_HTTP,    /* by HTTP redirect to the peer's redirector */
    RT_R_FALLBACK,     /* no area, no healthy node in it, a loop, or a failed peer */
    RT_NREASONS
};

enum rt_handoff { RT_H_CNAME = 0, RT_H_NS, RT_H_ECS };

struct rt_node {
    _Atomic int refs;
    char name[RT_NAME_MAX + 1];
    struct net_addr addr[RT_MAX_ADDRS]; /* the node's switch addresses (port unused in DNS) */
    unsigned naddr;
    char sets[RT_MAX_SETS][RT_NAME_MAX + 1];
    unsigned nsets;
    unsigned capacity;                  /* relative; 1..1000000 */
    char redirect[256];                 /* base URL of HTTP redirects: "https://host:port" */
    int has_status;
    struct net_addr status;             /* the node's admin endpoint, polled */
    /* health, written by the poller */
    _Atomic int up;
    _Atomic int64_t load;               /* the node's load metric, summed */
    _Atomic int64_t last_poll_ms;       /* wall clock of the last completed poll */
    unsigned fails, oks;                /* poller-private */
    char last_error[96];                /* poller-private, for the admin API */
    struct metric *m_answers;           /* answers naming this node */
};

struct rt_peer {
    _Atomic int refs;
    char name[RT_NAME_MAX + 1];         /* the peer's CDN id */
    enum rt_handoff handoff;
    uint8_t cname_suffix[DNS_MAX_NAME]; /* wire; CNAME targets end with it */
    uint8_t ns_name[DNS_MAX_NAME];      /* wire; NS hand-off */
    struct net_addr ns_addr[RT_MAX_ADDRS]; /* its glue */
    unsigned nns_addr;
    struct net_addr ecs_server;         /* the peer router, for ECS hand-off */
    uint8_t ecs_zone[DNS_MAX_NAME];     /* wire; when set, asked name = service label + this */
    char redirect[256];                 /* base URL for HTTP hand-offs */
    struct metric *m_handoffs;
};

/* One area line (deduplicated): where clients of its prefixes go. */
struct rt_area {
    unsigned ntargets;
    struct rt_node *node[RT_MAX_TARGETS]; /* not owned (the settings hold references) */
    struct rt_peer *peer;                 /* a peer target instead of nodes, or NULL */
};

/* A static resource record. */
struct rt_rr {
    struct rt_rr *next;
    uint16_t type;
    uint32_t ttl;
    uint16_t rdlen;
    uint8_t rdata[];
};

struct rt_path_rule {
    char prefix[128];                   /* URL path prefix */
    char set[RT_NAME_MAX + 1];          /* node set for it */
};

/* A name answered by decision: "service NAME [set SET]" in a zone. */
struct rt_service {
    char set[RT_NAME_MAX + 1];          /* "" = every node */
    uint8_t label[DNS_MAX_NAME];        /* the name relative to its zone, wire form, for hand-offs */
    uint32_t ttl;
    struct rt_path_rule paths[RT_MAX_PATHS];
    unsigned npaths;
};

struct rt_zone;

/* An owner name in a zone. */
struct rt_name {
    uint8_t name[DNS_MAX_NAME];         /* lowercased wire form */
    uint8_t len;                        /* its length, root label included */
    struct rt_zone *zone;
    struct rt_rr *rrs;                  /* owned */
    struct rt_service *svc;             /* owned, or NULL */
    int delegation;                     /* has NS records and is not the apex */
};

struct rt_zone {
    uint8_t apex[DNS_MAX_NAME];
    char text[DNS_MAX_NAME + 1];
    uint8_t soa_rdata[2 * DNS_MAX_NAME + 20];
    uint16_t soa_len;
    uint32_t soa_ttl, minimum;
    int has_delegations;
    struct rt_name *apex_name;          /* not owned (in the name table) */
};

struct rt_learned;

struct rt_settings {
    _Atomic int refs;
    /* derived snapshots only (rt__settings_derive); NULL in a static one */
    struct rt_settings *base;           /* reference: the static snapshot this copies */
    struct rt_learned *learned;         /* reference: the learned layer, or NULL */
    char cdn[DNS_MAX_CDN_ID + 1];
    uint32_t ttl;                       /* default TTL of decided answers */
    uint16_t udp_size;                  /* our EDNS payload size */
    /* zones and names: open-addressing tables keyed by the lowercased wire name */
    struct rt_zone **zones;
    size_t nzones;
    struct rt_name **names;             /* owned entries */
    size_t names_cap;                   /* power of two */
    size_t nnames;
    /* nodes and peers: references */
    struct rt_node **nodes;
    size_t nnodes;
    struct rt_peer **peers;
    size_t npeers;
    /* areas */
    struct rt_area *areas;              /* owned array */
    size_t nareas;
    struct area_table *table;           /* owned */
    size_t area_prefixes;
    /* limits */
    unsigned rrl_rate;                  /* responses per second per client prefix, 0 = off */
    unsigned rrl_slip;
    unsigned rrl_v4_prefix, rrl_v6_prefix;
    int64_t ecs_timeout_ms;
    unsigned ecs_max_pending;
    int redirect_code;                  /* 302 or 307 */
    /* learned routes */
    enum rt_handoff learned_handoff;    /* DNS hand-off preferred when a target offers it */
    int64_t learned_delay_ms;           /* from a new feed snapshot to its rebuild */
};

/*
 * Learned routes (settings.c builds them, decide.c looks them up). A
 * target is where clients of its areas go: one per target of the feed
 * snapshot that could be used, with an rt_peer built from the hand-offs
 * it offers.
 */
#define RT_L_DNS 0x1u   /* the target has a DNS hand-off (CNAME, NS or ECS) */
#define RT_L_HTTP 0x2u  /* it has an HTTP redirector */
#define RT_L_PATH 8     /* CDN ids of a route's path kept for the loop guard */

struct rt_ltarget {
    struct rt_area area;                /* .peer only; the reference is the layer's */
    unsigned caps;                      /* RT_L_DNS | RT_L_HTTP, never 0 */
    unsigned npath;
    char path[RT_L_PATH][DNS_MAX_CDN_ID + 1]; /* the route's path, advertiser first */
    struct area_table *table;           /* owned: its areas when it has content units, else NULL */
    size_t nunits;                      /* content units naming it */
};

/* A content unit: a publisher host, or a host and a URL path prefix. */
struct rt_lunit {
    uint32_t next;                      /* next unit of the hash bucket, index + 1; 0 ends */
    uint32_t target;                    /* index into targets */
    uint8_t *lname;                     /* owned: the host, lowercased wire form */
    char *path;                         /* owned: a URI unit's path prefix ("" = every path); NULL
                                           for a publisher */
};

struct rt_learned {
    _Atomic int refs;
    uint64_t version;                   /* the feed snapshot's */
    struct rt_ltarget *targets;         /* owned */
    size_t ntargets;
    struct area_table *table[3];        /* owned: areas of targets without units, by caps - 1 */
    struct rt_lunit *units;             /* owned */
    size_t nunits;
    uint32_t *buckets;                  /* owned: first unit + 1 by host hash */
    size_t nbuckets;                    /* a power of two, or 0 */
    size_t nprefixes;                   /* areas in all the tables */
    size_t nskipped;                    /* feed targets not used: bad hand-offs, our own id */
    size_t nbad;                        /* areas and units not used: bad target index or prefix */
    char skip_reason[192];              /* why the first target was skipped */
    int64_t built_ms;                   /* how long the build took (the router sets it) */
};

/* What a request asks for: learned targets limited to content units apply only to them. */
struct rt_content {
    const uint8_t *lname;               /* the publisher host (service name), lowercased wire form */
    const char *path;                   /* HTTP: the URL path, without the query; NULL for DNS */
    size_t path_len;
};
/* The result of a decision. */
struct rt_decision {
    enum rt_reason reason;
    struct rt_node *node;               /* own node chosen, or NULL */
    struct rt_peer *peer;               /* peer handed to, or NULL */
    unsigned scope;                     /* ECS scope of the decision */
    int loop;                           /* a peer was skipped because it is on the path */
    int learned;                        /* the area that applied is a learned one */
};

/* The client a decision is for. */
struct rt_client {
    int family;                         /* 4 or 6, 0 = unknown */
    uint8_t addr[16];
    unsigned source;                    /* prefix bits known (ECS source, or 32/128) */
    const struct dns_path *path;        /* CDNs already passed, or NULL */
    const struct rt_content *content;   /* what is asked for, or NULL (unknown) */
};

/* settings.c */
struct rt_settings *rt__settings_create(struct conf *c, const struct conf_node *blk,
                                        struct rt_node **old_nodes, size_t nold_nodes);
struct rt_settings *rt__settings_ref(struct rt_settings *s);
void rt__settings_unref(struct rt_settings *s);
const struct rt_name *rt__name_find(const struct rt_settings *s, const uint8_t *lname);
/* The same when the caller knows the name's wire length (the hot path). */
const struct rt_name *rt__name_find_len(const struct rt_settings *s, const uint8_t *lname, size_t len);
const struct rt_zone *rt__zone_find(const struct rt_settings *s, const uint8_t *lname, int *depth);
void rt__node_unref(struct rt_node *n);
void rt__peer_unref(struct rt_peer *p);
int rt__client_from_sockaddr(struct rt_client *cl, const struct net_addr *a);
/* Is u a base URL for redirects: http(s)://host[:port], no trailing /, query or space? */
int rt__url_ok(const char *u);

/*
 * A snapshot that answers from base's static data and from the learned
 * layer `learned`: a shallow copy of base (of base's own static snapshot
 * when base is itself derived) holding a reference to that and to
 * learned. Returns it with one reference for the caller; when learned is
 * NULL, that is simply a new reference to the static snapshot.
 * Unreferencing a derived snapshot drops only those two references.
 */
struct rt_settings *rt__settings_derive(struct rt_settings *base, struct rt_learned *learned);
/* The static snapshot behind s (s itself when it is static). */
static inline struct rt_settings *rt__settings_static(struct rt_settings *s)
{
    return s->base ? s->base : s;
}

/*
 * Builds a learned layer from a feed snapshot (main thread; about 0.5 s at
 * a million prefixes). Targets are made into peers with one DNS hand-off,
 * `prefer` when offered, else the first offered of CNAME, NS, ECS, and
 * the HTTP redirector when offered. A target naming own_cdn, with a bad
 * CDN id, with a hand-off text that does not parse, or with neither a DNS
 * nor an HTTP hand-off is skipped and counted (nskipped, skip_reason).
 * snap is only read. Sets *out to the layer (one reference), or to NULL
 * when snap is NULL. Returns 0, or -ENOMEM when a table could not be
 * built (*out NULL).
 */
int rt__learned_create(const struct feed_snapshot *snap, const char *own_cdn,
                       enum rt_handoff prefer, struct rt_learned **out);
struct rt_learned *rt__learned_ref(struct rt_learned *l);
void rt__learned_unref(struct rt_learned *l);

/*
 * The area file parser (also the fuzz target's entry): lines of
 * "PREFIX TARGET[,TARGET...]"; `#` starts a comment. resolve(arg, name)
 * returns 0 when the target list is known and sets *value; errors are
 * reported through err(arg, line, message). Returns the number of errors.
 */
typedef int (*rt_area_resolve_cb)(void *arg, const char *targets, uint32_t *value, char *err,
                                  size_t errlen);
typedef void (*rt_area_error_cb)(void *arg, int line, const char *msg);
unsigned rt__area_parse(const char *text, size_t len, struct area_builder *b,
                        rt_area_resolve_cb resolve, rt_area_error_cb error, void *arg);

/* decide.c */
#define RT_DECIDE_NO_PEER 0x1u   /* the client must stay with us: a peer area falls back */
#define RT_DECIDE_AFFINITY 0x2u  /* pick by the spread's rendezvous hash alone, not by load */
#define RT_DECIDE_HTTP 0x4u      /* for the HTTP redirector: learned targets apply only when
                                    they have one (otherwise: when they have a DNS hand-off) */
/*
 * The decision for client cl asking for a name of node set `set` (""
 * every node), from the static areas of s and, in a derived snapshot, the
 * learned ones: the longer matched prefix wins, the static area on a tie.
 * A learned target limited to content units applies only when
 * cl->content names one of them. spread 0: derived from the client's
 * prefix inside the scope. Fills *d; never fails.
 */
void rt__decide(const struct rt_settings *s, const char *set, const struct rt_client *cl,
                uint64_t spread, unsigned flags, struct rt_decision *d);
int rt__path_has(const struct dns_path *p, const char *id);
void rt__path_push(struct dns_path *out, const struct dns_path *in, const char *id);
const char *rt__reason_name(enum rt_reason r);

/*
 * answer.c: the DNS engine. Answers one query from a settings snapshot.
 * Returns the response length (> 0), 0 when nothing must be sent, or
 * RT_ANSWER_ASYNC when the answer needs the peer `ecs->peer` to be asked
 * first (the caller sends the query and later calls rt__answer_from_peer).
 */
#define RT_ANSWER_ASYNC (-2)

struct rt_counters {
    struct metric *queries[8][6];       /* [type index][rcode index] */
    struct metric *decisions[RT_NREASONS];
    struct metric *loops;
    struct metric *truncated;
    struct metric *ecs_queries;
    struct metric *ecs_failures[5];     /* by enum rt_ecs_fail */
};

struct rt_ecs_req {                     /* filled when the answer is RT_ANSWER_ASYNC */
    struct rt_peer *peer;
    uint8_t qname[DNS_MAX_NAME];        /* the name to ask the peer */
    uint16_t qtype;
    struct dns_ecs ecs;                 /* the client subnet to send */
    struct dns_path path;               /* our path, us appended */
    unsigned scope;                     /* our decision's scope */
    uint32_t ttl;                       /* the service's TTL, the most we pass on */
};

int rt__answer(const struct rt_settings *s, const struct rt_counters *ctr, const uint8_t *pkt,
               size_t len, const struct net_addr *from, int tcp, uint8_t *out, size_t outcap,
               struct rt_ecs_req *ecs);
/*
 * Builds the answer to the query `pkt` once the peer answered. When `resp`
 * is NULL (the hand-off failed for `why`) or unusable, the own-node
 * fallback is answered and the failure counted.
 */
/* Why an ECS hand-off ended with our own node. */
enum rt_ecs_fail { RT_EF_TIMEOUT = 0, RT_EF_OVERFLOW, RT_EF_SEND, RT_EF_BAD_ANSWER, RT_EF_RELOAD };
extern const char *const rt__ecs_fail_names[5];

int rt__answer_from_peer(const struct rt_settings *s, const struct rt_counters *ctr,
                         const uint8_t *pkt, size_t len, const struct net_addr *from, int tcp,
                         const struct rt_ecs_req *req, const uint8_t *resp, size_t resp_len,
                         uint16_t resp_id, enum rt_ecs_fail why, uint8_t *out, size_t outcap);
int rt__type_index(uint16_t qtype);
int rt__rcode_index(int rcode);
extern const char *const rt__type_names[8];
extern const char *const rt__rcode_names[6];

/* ---- the role and its workers (router.c, server.c, http.c, poll.c) ---- */

#include <stdatomic.h>

#include "lib/admin.h"
#include "lib/loop.h"

struct rt_listen {
    struct net_addr addr;
    int http;                           /* the HTTP redirector, else DNS (UDP and TCP) */
};

struct rt_worker;
struct rt_poller;

struct router {
    struct rt_settings *set;            /* the current snapshot (main thread's reference) */
    struct rt_listen *listen;           /* owned */
    size_t nlisten;
    struct loop *main_loop;
    struct rt_worker **workers;         /* owned */
    unsigned nworkers;
    struct rt_poller *poller;
    struct rt_counters ctr;
    /* limits fixed at start */
    unsigned tcp_max;                   /* TCP connections per worker */
    int64_t tcp_idle_ms;
    size_t http_max_head;
    struct metric *m_rrl_dropped, *m_rrl_slipped, *m_tcp_refused, *m_http[4];
    _Atomic int64_t tcp_open;
    int64_t poll_interval_ms, poll_timeout_ms;
    unsigned poll_rise, poll_fall;
    char load_metric[128];
    _Atomic int draining;               /* set by the main thread, read by workers */
    _Atomic unsigned drain_left;        /* workers that have not closed their listeners yet */
    void (*drain_done)(void *arg);
    void *drain_arg;
    /* learned routes (router.c, main thread) */
    struct rt_learned *learned;         /* reference: the current layer, or NULL */
    struct loop_timer learned_timer;    /* from a feed publish to the rebuild */
    int subscribed;                     /* to the feed; the timer is initialized */
    int64_t skip_logged_ms;             /* when skipped targets were last logged */
    /* The build thread: one build at a time, off the main loop. Its inputs
     * and result belong to it from build_start until build_collect joins it. */
    pthread_t builder;
    int building;                       /* a build runs; it signals build_efd when done */
    int build_again;                    /* a publish came during the build: build again */
    int build_efd;                      /* eventfd watched by build_io, or -1 */
    struct loop_io build_io;
    struct feed_snapshot *build_snap;   /* input: references */
    struct rt_settings *build_st;
    struct rt_learned *built;           /* output */
    int build_rc;
    uint64_t build_ns;
    struct metric *m_learned_areas, *m_learned_targets, *m_learned_skipped, *m_learned_rebuilds;
};

/* server.c: the DNS listeners of one worker, its ECS client and RRL. */
struct rt_worker *rt__worker_create(struct router *rt, struct loop *l, struct rt_settings *s);
int rt__worker_listen(struct rt_worker *w, const struct rt_listen *lc);
void rt__worker_set(struct rt_worker *w, struct rt_settings *s); /* takes the reference */
void rt__worker_drain(struct rt_worker *w);
void rt__worker_destroy(struct rt_worker *w);
struct rt_settings *rt__worker_settings(struct rt_worker *w);
struct loop *rt__worker_loop(struct rt_worker *w);
struct router *rt__worker_router(struct rt_worker *w);
void **rt__worker_http_slot(struct rt_worker *w);
void rt__http_close(struct rt_worker *w);

/* http.c: the HTTP redirector's listener on a worker. */
int rt__http_listen(struct rt_worker *w, const struct net_addr *a);
/*
 * Builds the redirect for a request (pure, for tests): host is the Host
 * field, target the request target. Returns the status (302/307, 400, 404,
 * 503) and writes the Location value into loc.
 */
int rt__redirect(const struct rt_settings *s, const char *host, size_t host_len, const char *target,
                 size_t target_len, const struct rt_client *cl, char *loc, size_t loccap,
                 struct rt_decision *d);

/* poll.c: node health and load. */
struct rt_poller *rt__poller_create(struct router *rt);
void rt__poller_set(struct rt_poller *p, struct rt_settings *s);
void rt__poller_destroy(struct rt_poller *p);

#endif
