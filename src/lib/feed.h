/*
 * feed -- routes learned from peer CDNs, handed from the `peer` role to the
 * `router` role of the same ferryd.
 *
 * DESIGN.md: roles do not include each other's headers; where two must
 * cooperate in one process they meet through an interface in the lower
 * layer. This is that interface. The peer role publishes its whole Loc-RIB
 * of learned routes (never our own) as one immutable, reference-counted
 * snapshot; the router subscribes, and on each new snapshot rebuilds its
 * learned-area table off to the side and swaps it in. Everything here runs
 * on the main loop's thread (publish, subscribe, the callbacks), except
 * feed_ref/feed_unref, which are atomic.
 *
 * A snapshot holds:
 *  - targets: one per distinct attribute set of the best routes (the
 *    advertising CDN, its path, hand-offs and metrics): where a client of
 *    that route is sent. A CDN advertises its areas and content units with
 *    one attribute set, so they meet in one target;
 *  - areas: IPv4 and IPv6 prefixes, each naming a target;
 *  - units: content units (publisher host names, URI prefixes), each
 *    naming a target.
 */
#ifndef FERRY_LIB_FEED_H
#define FERRY_LIB_FEED_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define FEED_MAX_ID 32
#define FEED_MAX_HANDOFFS 4
#define FEED_MAX_TARGET 512
#define FEED_NO_METRIC UINT32_MAX

/* Hand-off methods; the values are the peering protocol's (docs/peering-protocol.md 5.2). */
enum feed_method { FEED_CNAME = 1, FEED_NS = 2, FEED_ECS = 3, FEED_HTTP = 4 };

struct feed_target {
    char cdn[FEED_MAX_ID + 1];       /* the advertiser: the CDN a client is handed to */
    unsigned npath;                  /* CDNs on the route's path, the advertiser first */
    char path[8][FEED_MAX_ID + 1];   /* the first 8 of them (for loop guards and display) */
    unsigned nhandoff;
    struct {
        enum feed_method method;
        char target[FEED_MAX_TARGET + 1]; /* as advertised: CNAME zone, "NSNAME ADDR...",
                                             "ADDR:PORT", or a base URL */
    } handoff[FEED_MAX_HANDOFFS];
    uint32_t load, capacity, cost;   /* FEED_NO_METRIC when not advertised */
};

struct feed_area {
    uint8_t family;                  /* 4 or 6 */
    uint8_t plen;
    uint8_t addr[16];                /* bits past plen are zero */
    uint32_t target;                 /* index into targets */
};

struct feed_unit {
    uint8_t uri;                     /* 0: a publisher host name, 1: a URI prefix */
    char *text;                      /* owned by the snapshot */
    uint32_t target;
};

struct feed_snapshot {
    _Atomic int refs;
    uint64_t version;                /* set by feed_publish: 1, 2, ... */
    struct feed_target *targets;     /* owned */
    size_t ntargets;
    struct feed_area *areas;         /* owned */
    size_t nareas;
    struct feed_unit *units;         /* owned */
    size_t nunits;
};

/* An empty snapshot with one reference, to be filled by the publisher. */
struct feed_snapshot *feed_snapshot_create(void);
struct feed_snapshot *feed_ref(struct feed_snapshot *s);
void feed_unref(struct feed_snapshot *s);

/*
 * Publishes s (taking the caller's reference) as the current snapshot and
 * calls every subscriber. Publishing NULL withdraws everything (the peer
 * role stopped).
 */
void feed_publish(struct feed_snapshot *s);

/* The current snapshot with a new reference, or NULL when none. */
struct feed_snapshot *feed_current(void);

typedef void (*feed_cb)(void *arg);
/* Calls cb(arg) after each publish. Returns 0, or -1 when the table is full. */
int feed_subscribe(feed_cb cb, void *arg);
void feed_unsubscribe(feed_cb cb, void *arg);
/* Is anyone listening? A publisher with no subscriber need not build snapshots at all. */
int feed_has_subscribers(void);

/* Is any peer role publishing in this process? (It calls this at start.) */
void feed_set_publisher(int present);
int feed_has_publisher(void);

#endif
