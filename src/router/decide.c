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
 * Learned areas (routes from peer CDNs, in a derived snapshot) are looked
 * up too, and the longer matched prefix wins; on a tie the static area
 * does (docs/peering-protocol.md section 9). A learned area always names
 * one peer: the target that advertised it. Learned targets live in
 * several tables: one per kind of hand-off they can make (so a DNS query
 * never lands on a target with only an HTTP redirector, but on the next
 * shorter prefix that can take it), and one each for targets limited to
 * content units, asked only for a request for one of those units. The
 * loop guard also refuses a target whose route passed through a CDN
 * already on the request's path.
 *
 * ECS scope. One table's scope keeps its value; comparing two tables by
 * matched length needs the length to stay the same inside the scope too,
 * so once a learned area matched, every table asked is read with its
 * strict scope (area.h) and the decision's scope is the largest of them.
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

static uint32_t lookup(const struct area_table *t, const struct rt_client *cl, int strict,
                       unsigned *scope, unsigned *plen)
{
    if (cl->family == 4)
        return strict ? area_lookup4_strict(t, cl->addr, scope, plen) : area_lookup4(t, cl->addr, scope, plen);
    if (cl->family == 6)
        return strict ? area_lookup6_strict(t, cl->addr, scope, plen) : area_lookup6(t, cl->addr, scope, plen);
    *scope = *plen = 0;
    return AREA_NONE;
}

/* Asks one learned table; keeps the longest match in *best. */
static void learned_ask(const struct rt_learned *l, const struct area_table *t, const struct rt_client *cl,
                        unsigned *scope, const struct rt_ltarget **best, unsigned *best_plen)
{
    unsigned sc, pl;
    uint32_t v = lookup(t, cl, 1, &sc, &pl);
    if (sc > *scope)
        *scope = sc;
    if (v != AREA_NONE && v < l->ntargets && (*best == NULL || pl > *best_plen)) {
        *best = &l->targets[v];
        *best_plen = pl;
    }
}

/*
 * The learned target for this client and request, or NULL. *scope is the
 * largest strict scope of the tables asked, *plen the matched length.
 * Tables of targets limited to the request's content are asked first, so
 * they win a tie (a route for this content over one for all).
 */
static const struct rt_ltarget *learned_match(const struct rt_learned *l, const struct rt_client *cl,
                                              unsigned flags, unsigned *scope, unsigned *plen)
{
    const struct rt_ltarget *best = NULL;
    unsigned need = (flags & RT_DECIDE_HTTP) ? RT_L_HTTP : RT_L_DNS;
    const struct rt_content *ct = cl->content;
    *scope = *plen = 0;
    if (l->nunits && ct && ct->lname) {
        size_t len = dns_name_len(ct->lname);
        uint32_t i = l->buckets[hash_fnv1a(ct->lname, len) & (l->nbuckets - 1)];
        for (; i; i = l->units[i - 1].next) {
            const struct rt_lunit *u = &l->units[i - 1];
            if (dns_name_len(u->lname) != len || memcmp(u->lname, ct->lname, len) != 0)
                continue;
            /* a URI prefix is content of HTTP requests only: DNS never sees the path */
            if (u->path && (ct->path == NULL || strlen(u->path) > ct->path_len ||
                            memcmp(u->path, ct->path, strlen(u->path)) != 0))
                continue;
            const struct rt_ltarget *t = &l->targets[u->target];
            if ((t->caps & need) && t->table)
                learned_ask(l, t->table, cl, scope, &best, plen);
        }
    }
    for (unsigned caps = 1; caps <= 3; caps++)
        if ((caps & need) && l->table[caps - 1])
            learned_ask(l, l->table[caps - 1], cl, scope, &best, plen);
    return best;
}

/* Is the hand-off to a refused by the loop guard? */
static int on_path(const struct rt_client *cl, const struct rt_area *a, const struct rt_ltarget *lt)
{
    if (cl->path == NULL)
        return 0;
    if (cl->path->n >= DNS_MAX_PATH || rt__path_has(cl->path, a->peer->name))
        return 1;
    for (unsigned i = 0; lt && i < lt->npath; i++)
        if (rt__path_has(cl->path, lt->path[i]))
            return 1;
    return 0;
}

void rt__decide(const struct rt_settings *s, const char *set, const struct rt_client *cl,
                uint64_t spread, unsigned flags, struct rt_decision *d)
{
    memset(d, 0, sizeof(*d));
    unsigned scope = 0, plen = 0, lscope = 0, lplen = 0;
    uint32_t v = lookup(s->table, cl, 0, &scope, &plen);
    const struct rt_ltarget *lt = NULL;
    if (s->learned && s->learned->nprefixes && cl->family) {
        lt = learned_match(s->learned, cl, flags, &lscope, &lplen);
        if (lt) {
            /* the winner now depends on both matched lengths */
            v = lookup(s->table, cl, 1, &scope, &plen);
            if (v != AREA_NONE && plen >= lplen)
                lt = NULL;
        }
        if (lscope > scope)
            scope = lscope;
    }
    d->scope = scope;
    if (spread == 0)
        spread = prefix_hash(cl, scope) | 1;

    const struct rt_area *a = lt ? &lt->area : v != AREA_NONE && v < s->nareas ? &s->areas[v] : NULL;
    if (a) {
        d->learned = lt != NULL;
        if (a->peer) {
            if (flags & RT_DECIDE_NO_PEER) {
                /* fall back below */
            } else if (!on_path(cl, a, lt)) {
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
