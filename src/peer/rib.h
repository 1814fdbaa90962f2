/*
 * peer/rib -- the content topology database of one speaker
 * (docs/peering-protocol.md section 9): the Adj-RIB-In of every peer,
 * import policy, best-route selection into the Loc-RIB, and the export
 * view each peer is sent.
 *
 * Pure and socket-free: the session code feeds it decoded UPDATEs and
 * session losses; the RIB reports Loc-RIB changes through a callback and
 * answers "what do I send this peer for this destination". Unit tests
 * drive it directly. Single-threaded: everything runs on the peer role's
 * loop.
 *
 * Memory is the design constraint (a million areas plus 100k content
 * units per session, and several sessions). So:
 *  - a destination (an area prefix or a content unit) is stored once,
 *    in one hash table, with the routes every peer sent for it in a
 *    short list hanging off it; the Adj-RIB-In of a peer is the set of
 *    routes carrying its index, not a second table;
 *  - attribute sets are interned: the million routes of one UPDATE
 *    stream share a handful of struct rib_attrs, reference-counted.
 *
 * Peers are small integers given by rib_peer_add; index 0 is the speaker
 * itself (its originated routes, added with rib_originate).
 */
#ifndef FERRY_PEER_RIB_H
#define FERRY_PEER_RIB_H

#include <stddef.h>
#include <stdint.h>

#include "peer/msg.h"

#define RIB_LOCAL 0              /* the peer index of our own routes */
#define RIB_MAX_PEERS 256

/* An interned attribute set. Never changed once interned. */
struct rib_attrs {
    uint32_t refs;
    uint32_t hash;
    uint32_t local_pref;         /* from import policy (own routes: UINT32_MAX) */
    uint8_t npath;
    uint8_t nhandoff;
    uint8_t content_types;       /* PEER_CT_* bit set */
    uint8_t distribution;
    int has_metrics;
    uint32_t load, capacity, cost; /* UINT32_MAX when absent */
    char *path[PEER_MAX_PATH];   /* CDN ids, [0] = the advertiser; owned */
    struct {
        enum peer_handoff method;
        char *target;            /* owned, NUL-terminated */
    } handoff[PEER_MAX_HANDOFFS];
    char *authoritative;         /* owned, or NULL */
    uint8_t *carry;              /* unknown optional transitive attributes, as received; or NULL */
    size_t carry_len;
    struct rib_attrs *next;      /* intern table chain */
};

/* A destination: what a route is for. Text is NUL-terminated. */
struct rib_dest {
    struct rib_dest *next;       /* hash chain */
    struct rib_route *routes;    /* every peer's route for it, best first */
    uint8_t kind;                /* enum peer_route_kind */
    uint8_t plen;                /* areas */
    uint16_t len;                /* bytes of key: areas ceil(plen/8), content units strlen */
    uint8_t key[];               /* areas: the address bytes up to plen; units: the text + NUL */
};

struct rib_route {
    struct rib_route *next;      /* next candidate, in preference order */
    struct rib_attrs *attrs;     /* a reference */
    uint16_t peer;               /* the peer index it came from */
};

/* Why the best route won over the runner-up (for `ferryctl routes`). */
enum rib_reason {
    RIB_WHY_ONLY = 0,            /* the only candidate */
    RIB_WHY_LOCAL_PREF,
    RIB_WHY_PATH,
    RIB_WHY_COST,
    RIB_WHY_LOAD,
    RIB_WHY_ID,                  /* the lowest advertiser id */
    RIB_WHY_OWN,                 /* our own route, over any learned one */
};
const char *rib_reason_name(enum rib_reason r);

/* Import policy for one peer. Rules are tried in order; the first whose
 * kind and pattern match decides. No match: accepted. */
struct rib_rule {
    int accept;                  /* 1 accept, 0 reject */
    uint8_t kind;                /* PEER_R_AREA4/6: prefix; PEER_R_PUBLISHER: host or *.suffix;
                                    PEER_R_URI: URI prefix; 0: any route */
    uint8_t plen;                /* areas: the rule's prefix */
    uint8_t le;                  /* areas: match routes with plen in [plen, le] (le < plen: exactly plen) */
    uint8_t addr[16];
    char *text;                  /* units; owned */
};

struct rib_policy {
    uint32_t local_pref;         /* default 100 */
    uint8_t content_types;       /* accept only routes offering one of these (PEER_CT_*) */
    size_t max_routes;           /* 0 = no limit; over it rib_update returns RIB_TOO_MANY */
    struct rib_rule *rules;      /* owned */
    size_t nrules;
    int transit;                 /* export: re-advertise learned routes to this peer */
};

/* A Loc-RIB change: the best route for `d` was `old` and is now `now`
 * (either may be NULL: added or removed). Called during rib_update,
 * rib_peer_down and rib_originate. `d` may be freed right after the call
 * when `now` is NULL. `old` is a copy (its next is NULL), valid during the
 * call only. The callback may read the RIB but must not change it. */
typedef void (*rib_change_cb)(void *arg, const struct rib_dest *d, const struct rib_route *old,
                              const struct rib_route *now);

struct rib;

struct rib *rib_create(const char *my_id, rib_change_cb cb, void *arg);
void rib_destroy(struct rib *r);

/* Adds a peer; returns its index (1..RIB_MAX_PEERS-1) or -1. The policy is copied. */
int rib_peer_add(struct rib *r, const char *id, const struct rib_policy *pol);
/* Replaces a peer's policy (a reload). Routes already held are re-checked: ones the new policy
 * rejects are removed, and LOCAL-PREF changes re-run the selection. Routes the old policy
 * rejected are not back until the peer re-sends them (the caller sends ROUTE-REFRESH). */
void rib_peer_policy(struct rib *r, int peer, const struct rib_policy *pol);
const char *rib_peer_id(const struct rib *r, int peer);
void rib_policy_free(struct rib_policy *pol);   /* frees rules and their text */

/* Counters of one peer. */
struct rib_peer_stats {
    size_t routes;               /* in its Adj-RIB-In now */
    size_t best;                 /* of those, the best */
    uint64_t announced, withdrawn;   /* received */
    uint64_t rejected;           /* by import policy */
    uint64_t looped;             /* our id on the PATH */
    uint64_t refused_type;       /* a content type the session did not agree on */
};
void rib_peer_stats(const struct rib *r, int peer, struct rib_peer_stats *out);

/*
 * Applies one decoded UPDATE from `peer` (checked by peer_decode_update).
 * `content_types` is the session's agreed set: a route offering none of
 * them is refused. Withdrawals of unknown routes are ignored. Returns 0, or
 * RIB_TOO_MANY when the peer's route limit is passed (the routes beyond it
 * are not stored; the caller ends the session with cease 5); -EINVAL for
 * a peer index that was not added, or RIB_LOCAL.
 */
#define RIB_TOO_MANY (-5)
int rib_update(struct rib *r, int peer, const struct peer_update *u, uint8_t content_types);

/* Removes every route of `peer` (its session left Established). */
void rib_peer_down(struct rib *r, int peer);

/*
 * Our own routes. rib_originate adds (or replaces) one route of the
 * speaker itself with the given hand-offs and metrics; rib_unoriginate
 * removes it. The speaker's own routes win over any learned one.
 */
struct rib_origin {
    unsigned nhandoff;
    struct peer_handoff_target handoff[PEER_MAX_HANDOFFS]; /* target need not outlive the call */
    uint8_t content_types, distribution;
    int has_metrics;
    uint32_t load, capacity, cost;
    const char *authoritative;   /* AUTHORITATIVE: a CDN id, or NULL; need not outlive the call */
};
void rib_originate(struct rib *r, const struct peer_route *dst, const struct rib_origin *o);
void rib_unoriginate(struct rib *r, const struct peer_route *dst);

/* Lookups. */
const struct rib_dest *rib_find(const struct rib *r, const struct peer_route *dst);
/* The best route, and why it beat the second (RIB_WHY_ONLY when alone). */
const struct rib_route *rib_best(const struct rib_dest *d, enum rib_reason *why);
/* Walks every destination (any order); stop by returning non-zero. */
void rib_foreach(const struct rib *r, int (*fn)(void *arg, const struct rib_dest *d), void *arg);
size_t rib_dest_count(const struct rib *r);
/*
 * A walk in steps, for sending a big table while the loop goes on: each
 * call visits about `max` destinations (whole hash chains) from where the
 * cursor stopped, and returns 1 once every destination was visited. The
 * RIB may change between steps: a destination added or removed behind the
 * cursor is not visited (the caller learns of it through the change
 * callback); when the table was resized in between, the walk starts over,
 * so some destinations may be visited twice, none missed. Start with a
 * zeroed cursor whose `resizes` is rib_walk_start's.
 */
struct rib_cursor {
    size_t bucket;
    uint64_t resizes;
};
void rib_walk_start(const struct rib *r, struct rib_cursor *cur);
int rib_walk(const struct rib *r, struct rib_cursor *cur, int (*fn)(void *arg, const struct rib_dest *d),
             void *arg, size_t max);
/* Whether the next rib_walk with cur starts over (the table was resized). */
int rib_walk_restarts(const struct rib *r, const struct rib_cursor *cur);
/* Longest-prefix lookup among area destinations (for `ferryctl routes ADDR`);
 * family is 4 or 6, as in router/area.h. */
const struct rib_dest *rib_match(const struct rib *r, int family, const uint8_t addr[16]);
/* Converts a destination back to a peer_route (text points into d). */
void rib_dest_route(const struct rib_dest *d, struct peer_route *out);

/*
 * Export: what `peer` should hold for destination `d` now. Returns the
 * route to announce (its attributes are what we learned or originated; the
 * caller writes PATH = our id + that path, HANDOFF = our own), or NULL when
 * the peer must not hold it (withdraw): no best route, the best came from
 * that peer, it is learned and the peer's policy has no transit, or its
 * PATH already holds the peer's id.
 */
const struct rib_route *rib_export(const struct rib *r, int peer, const struct rib_dest *d);
/* The same test for any route (the `old` of a change callback, say): may `peer` be sent rt? */
int rib_exportable(const struct rib *r, int peer, const struct rib_route *rt);

/*
 * Does `pol` (its rules and content types, as import applies them) allow
 * destination d with these content types? For export policies, which the
 * caller keeps.
 */
int rib_policy_allows(const struct rib_policy *pol, const struct rib_dest *d, uint8_t content_types);

/* Memory held, in bytes (destinations, routes, attribute sets, tables). */
size_t rib_memory(const struct rib *r);
size_t rib_attrs_count(const struct rib *r);

#endif
