/*
 * policy -- the switch's decision chain: which backend gets a new
 * connection. Pure logic over the pool, the sticky table and what the
 * switch read from the connection; no sockets, so unit tests drive it
 * directly.
 *
 * A chain is an ordered list of steps (`policy psk ticket session_id
 * sticky hash leastconn;`). Each step either picks a usable backend or
 * passes to the next:
 *   psk         a TLS 1.3 pre_shared_key identity carries a label (the
 *               whole identity if it is at most 32 bytes -- a stateful
 *               ticket is the session ID -- else its first 16 bytes, the
 *               stateless ticket's key_name);
 *   ticket      the TLS 1.2 session_ticket extension carries a label in
 *               its first 16 bytes (the key_name);
 *   session_id  the legacy session ID carries a label;
 *   sticky      the client address has a live entry in the sticky table;
 *   hash        rendezvous hash of the client address (pool.h, rendezvous.h);
 *   leastconn   fewest active connections (ties taken in turn);
 *   roundrobin  the next backend in turn (a baseline for benchmarks);
 *   url         plain HTTP only: rendezvous hash of Host and target.
 * A backend is usable when it is up, not excluded (it already failed this
 * connection) and, for plain HTTP, has an HTTP address. A label whose
 * backend is down therefore falls through to the next step: the session
 * gets a full handshake elsewhere. When no step decides, the decision is
 * "fallback": the hash over usable backends, or if none is up, over the
 * backends not excluded (health checks may be wrong; a connect will tell).
 *
 * If the chain has a sticky step, every decision refreshes the client's
 * sticky entry, so later connections without a routable identifier
 * follow it.
 */
#ifndef FERRY_SWITCH_POLICY_H
#define FERRY_SWITCH_POLICY_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "switch/pool.h"
#include "switch/rendezvous.h"
#include "switch/sticky.h"
#include "tls/clienthello.h"
#include "tls/sid_codec.h"

#define SW_MAX_STEPS 8
#define SW_MAX_EXCLUDED 8

struct sw_policy {
    enum sw_step steps[SW_MAX_STEPS];
    unsigned nsteps;
    int has_sticky;                  /* a sticky step is in the chain */
    struct sid_codec codec;          /* how the caches write labels */
    struct sw_hash_key key;          /* for hash and url */
};

/* What the label steps need from a ClientHello, decoded once per connection. */
struct sw_hello_keys {
    unsigned psk_label[CH_MAX_PSK_IDS]; /* per kept identity, 0 = none */
    unsigned npsk;
    unsigned ticket_label;
    unsigned sid_label;
};

/* One connection's inputs to the chain. */
struct sw_request {
    const struct sw_hello_keys *keys;   /* NULL on plain HTTP */
    const uint8_t *client;              /* client address bytes (4 or 16) */
    size_t client_len;
    const char *url;                    /* plain HTTP: Host then target, or NULL */
    size_t url_len;
    int plain;                          /* forward to the backends' HTTP address */
    struct sw_backend *const *excluded; /* backends that failed this connection */
    unsigned nexcluded;
};

struct sw_decision {
    struct sw_backend *b;               /* not a new reference */
    enum sw_step step;
};

/*
 * Parses a chain from words (config arguments). plain says which kind of
 * listener it is for (url only on plain HTTP; the label steps only on TLS).
 * Returns 0, or -1 with a message in err.
 */
int sw_policy_parse(struct sw_policy *p, char *const *words, int nwords, int plain, char *err,
                    size_t errlen);

/* Decodes the labels a ClientHello carries, under p's codec. */
void sw_policy_keys(const struct sw_policy *p, const struct ch_info *ch, struct sw_hello_keys *k);

/*
 * Runs the chain over pool for r. st may be NULL when the chain has no
 * sticky step; rr is the pool-wide turn counter of leastconn and
 * roundrobin. now_ms is the monotonic clock (sticky expiry). Returns 0 and
 * fills d, or -1 when every backend is excluded (or the pool is empty).
 */
int sw_policy_decide(const struct sw_policy *p, const struct sw_pool *pool, struct sw_sticky *st,
                     _Atomic uint64_t *rr, int64_t now_ms, const struct sw_request *r,
                     struct sw_decision *d);

#endif
