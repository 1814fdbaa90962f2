/*
 * router/decide -- the request-routing decision: which of our nodes, or
 * which peer CDN, serves a client.
 *
 *   1. The client's address (the ECS subnet when the resolver sent one) is
 *      matched by longest prefix in the area table.
 *   2. An area that names a peer CDN hands the client to it, unless that
 *      CDN is already on the request's path (arch-draft section 3.4: a
 *      redirection never cycles); then the client stays with us.
 *   3. An area that names nodes picks the best one that is up and in the
 *      wanted node set (the content type encoded in the name).
 *   4. Otherwise (no area, none of its nodes up or in the set, a loop) the
 *      best node of the set anywhere is the fallback; when none is up the
 *      least loaded one is still named, since an answer beats none.
 *
 * "Best" is the lowest utilization, load / capacity. Ties, common when the
 * nodes are idle, are broken by a rendezvous hash of `spread`, which the
 * caller derives from what should stick to one node: the client's prefix
 * inside the decision's ECS scope (so every address of that scope gets the
 * same answer, as the scope promises), or the URL for HTTP redirects.
 */
#include <string.h>

#include "lib/util.h"
#include "router/internal.h"

static const char *const reason_names[RT_NREASONS] = {
    "own", "peer_cname", "peer_ns", "peer_ecs", "peer_http", "fallback",
};

const char *rt__reason_name(enum rt_reason r)
{
    return (unsigned)r < RT_NREASONS ? reason_names[r] : "?";
}

int rt__path_has(const struct dns_path *p, const char *id)
{
    for (unsigned i = 0; p && i < p->n; i++)
        if (strcmp(p->id[i], id) == 0)
            return 1;
    return 0;
}

void rt__path_push(struct dns_path *out, const struct dns_path *in, const char *id)
{
    if (in)
        *out = *in;
    else
        out->n = 0;
    if (out->n < DNS_MAX_PATH && !rt__path_has(out, id)) {
        size_t l = strlen(id);
        out->len[out->n] = (uint8_t)l;
        memcpy(out->id[out->n], id, l + 1);
        out->n++;
    }
}

static int in_set(const struct rt_node *n, const char *set)
{
    if (set == NULL || set[0] == 0)
        return 1;
    for (unsigned i = 0; i < n->nsets; i++)
        if (strcmp(n->sets[i], set) == 0)
            return 1;
    return 0;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x *= UINT64_C(0xc4ceb9fe1a85ec53);
    x ^= x >> 33;
    return x;
}

/* Is a better than b for this spread? */
static int better(const struct rt_node *a, const struct rt_node *b, uint64_t spread, unsigned flags)
{
    if (flags & RT_DECIDE_AFFINITY)
        goto hash;
    /* compare load_a / cap_a with load_b / cap_b without division */
    unsigned __int128 ua = (unsigned __int128)(uint64_t)atomic_load_explicit(&a->load, memory_order_relaxed) * b->capacity;
    unsigned __int128 ub = (unsigned __int128)(uint64_t)atomic_load_explicit(&b->load, memory_order_relaxed) * a->capacity;
    if (ua != ub)
        return ua < ub;
hash:;
    uint64_t ha = mix(spread ^ hash_fnv1a(a->name, strlen(a->name)));
    uint64_t hb = mix(spread ^ hash_fnv1a(b->name, strlen(b->name)));
    return ha > hb;
}

static struct rt_node *best_of(struct rt_node *const *v, size_t n, const char *set, int need_up,
                               uint64_t spread, unsigned flags)
{
    struct rt_node *best = NULL;
    for (size_t i = 0; i < n; i++) {
        struct rt_node *c = v[i];
        if (!in_set(c, set) || (need_up && !atomic_load_explicit(&c->up, memory_order_relaxed)))
            continue;
        if (best == NULL || better(c, best, spread, flags))
            best = c;
    }
    return best;
}

static uint64_t prefix_hash(const struct rt_client *cl, unsigned bits)
{
    uint8_t a[17] = {0};
    unsigned nbytes = cl->family == 4 ? 4 : 16;
    memcpy(a, cl->addr, nbytes);
    for (unsigned i = 0; i < nbytes; i++) {
        unsigned lo = i * 8;
        if (bits <= lo)
            a[i] = 0;
        else if (bits < lo + 8)
            a[i] &= (uint8_t)(0xff << (8 - (bits - lo)));
    }
    a[16] = (uint8_t)bits;
    return hash_fnv1a(a, sizeof(a));
}

void rt__decide(const struct rt_settings *s, const char *set, const struct rt_client *cl,
                uint64_t spread, unsigned flags, struct rt_decision *d)
{
    memset(d, 0, sizeof(*d));
    uint32_t v = AREA_NONE;
    unsigned scope = 0;
    if (cl->family == 4)
        v = area_lookup4(s->table, cl->addr, &scope, NULL);
    else if (cl->family == 6)
        v = area_lookup6(s->table, cl->addr, &scope, NULL);
    d->scope = scope;
    if (spread == 0)
        spread = prefix_hash(cl, scope) | 1;

    if (v != AREA_NONE && v < s->nareas) {
        const struct rt_area *a = &s->areas[v];
        if (a->peer) {
            if (flags & RT_DECIDE_NO_PEER) {
                /* fall back below */
            } else if (!rt__path_has(cl->path, a->peer->name) && !(cl->path && cl->path->n >= DNS_MAX_PATH)) {
                d->peer = a->peer;
                d->reason = a->peer->handoff == RT_H_NS    ? RT_R_PEER_NS
                            : a->peer->handoff == RT_H_ECS ? RT_R_PEER_ECS
                                                           : RT_R_PEER_CNAME;
                return;
            } else {
                d->loop = 1;
            }
        } else {
            d->node = best_of(a->node, a->ntargets, set, 1, spread, flags);
            if (d->node) {
                d->reason = RT_R_OWN;
                return;
            }
        }
    }
    d->reason = RT_R_FALLBACK;
    d->node = best_of(s->nodes, s->nnodes, set, 1, spread, flags);
    if (d->node == NULL)
        d->node = best_of(s->nodes, s->nnodes, set, 0, spread, flags);
}
