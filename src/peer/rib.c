/*
 * peer/rib -- the content topology database (docs/peering-protocol.md
 * sections 5.3 and 9). See rib.h for the interface.
 *
 * Data flow. rib_update walks a decoded UPDATE: each withdrawal removes
 * that peer's route; the announcements share one attribute set, so the
 * loop check (5.3), the session's content types and the interning of the
 * attributes happen once per UPDATE, and only the import rules, the route
 * limit and the insertion run per route. Every change to a destination's
 * route list goes through route_set or route_drop, which keep the list in
 * preference order (section 9) and report a Loc-RIB change when the head
 * of the list is a different route than before.
 *
 * Storage. Destinations live in one chained hash table that doubles when
 * it holds more destinations than buckets (and halves down after mass
 * withdrawals), keyed by kind, prefix length and key bytes with FNV-1a
 * plus a splitmix64 finaliser and a per-RIB seed. A destination is one
 * allocation with its key inline; each route is 24 bytes (next, attrs,
 * peer). An IPv4 area route held by one peer costs two 32-byte malloc
 * chunks plus 8-16 bytes of bucket array: 72 bytes at a million.
 * Attribute sets are interned in a second chained table and shared by
 * reference count; the strings they own are copied once per set.
 *
 * Callbacks. The change callback gets a copy of the old best route (its
 * `next` is NULL): the route itself may be gone or changed by then. The
 * attributes it points to stay valid until the callback returns, because
 * references are dropped only after it. The callback must not change the
 * RIB; it may read it (rib_export, rib_best, rib_find).
 *
 * Memory accounting (rib_memory) follows every allocation with the size
 * glibc's malloc would round it to (16-byte steps, 8 bytes of header,
 * 32 at least), so the figure is close to the heap the RIB really holds.
 */
#include "peer/rib.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/util.h"

#define DEST_MIN_BUCKETS 64u
#define ATTRS_MIN_BUCKETS 16u

#define POOL_SLAB (64u << 10)

struct slab {
    struct slab *next;
    /* slots follow */
};

struct pool {
    size_t size;                 /* bytes per slot, a multiple of 8 */
    void *free;                  /* free slots, linked through their first word */
    char *bump;                  /* the next never-used slot of the newest slab */
    size_t left;                 /* bytes left there */
    size_t live;                 /* slots in use */
    struct slab *slabs;          /* owned */
};

struct rib_peer {
    char *id;                    /* owned */
    struct rib_policy pol;       /* a deep copy; owned */
    struct rib_peer_stats st;
};

struct rib {
    char *my_id;                 /* owned */
    size_t my_id_len;
    rib_change_cb cb;
    void *arg;
    uint64_t seed;               /* hash seed, so a peer cannot precompute collisions */
    struct rib_dest **dtab;      /* destination buckets; owned, as are the chains */
    size_t dmask;                /* buckets - 1, a power of two minus one */
    size_t ndests;
    uint64_t resizes;            /* bumped by every dest_resize, for rib_walk's cursors */
    struct rib_attrs **atab;     /* interned attribute sets; owned */
    size_t amask;
    size_t nattrs;
    struct rib_peer *peers[RIB_MAX_PEERS]; /* [RIB_LOCAL] is the speaker; owned */
    struct pool pools[2];        /* 24-byte slots (routes, IPv4 destinations), 40-byte (IPv6) */
    size_t mem;                  /* bytes allocated for tables, destinations, routes, attributes */
};

/* A destination key in lookup form. */
struct dkey {
    uint8_t kind, plen;
    uint16_t len;
    const uint8_t *key;          /* areas: addr below; units: the caller's text */
    uint8_t addr[16];
};

/* An attribute set being built, with room for its strings (all bounded by msg.h limits). */
struct attrs_tmpl {
    struct rib_attrs a;
    char text[PEER_MAX_PATH * (PEER_MAX_ID + 1) + PEER_MAX_HANDOFFS * (PEER_MAX_TARGET + 1) + PEER_MAX_ID + 1];
};

static const char *const reason_names[] = {"only", "local_pref", "path", "cost", "load", "id", "own"};

const char *rib_reason_name(enum rib_reason why)
{
    return (unsigned)why < ARRAY_SIZE(reason_names) ? reason_names[why] : "?";
}

/* ---- allocation with accounting ----------------------------------------- */

static size_t chunk(size_t n)
{
    n = (n + 8 + 15) & ~(size_t)15;
    return n < 32 ? 32 : n;
}

static void *rib_alloc(struct rib *r, size_t n)
{
    r->mem += chunk(n);
    return xmalloc(n);
}

static void *rib_zalloc(struct rib *r, size_t n, size_t size)
{
    r->mem += chunk(n * size);
    return xcalloc(n, size);
}

static void rib_free(struct rib *r, void *p, size_t n)
{
    if (p == NULL)
        return;
    r->mem -= chunk(n);
    free(p);
}

/*
 * Pools for the small fixed-size objects there is one of per route: route
 * entries (24 bytes) and IPv4 and IPv6 destinations (24 and 40). Slots are
 * carved from 64 KiB slabs and recycled through a free list, so a million
 * routes cost neither a million malloc calls nor malloc's 8-byte header
 * and 16-byte rounding each. Slabs go back when their pool empties (a
 * session's whole table withdrawn, say), or with the RIB.
 */
static void *pool_get(struct rib *r, struct pool *p)
{
    p->live++;
    if (p->free) {
        void *o = p->free;
        p->free = *(void **)o;
        return o;
    }
    if (p->left < p->size) {
        struct slab *sl = xmalloc(POOL_SLAB);
        r->mem += chunk(POOL_SLAB);
        sl->next = p->slabs;
        p->slabs = sl;
        p->bump = (char *)(sl + 1);
        p->left = POOL_SLAB - sizeof(*sl);
    }
    void *o = p->bump;
    p->bump += p->size;
    p->left -= p->size;
    return o;
}

static void pool_fini(struct rib *r, struct pool *p)
{
    while (p->slabs) {
        struct slab *next = p->slabs->next;
        free(p->slabs);
        r->mem -= chunk(POOL_SLAB);
        p->slabs = next;
    }
    p->free = NULL;
    p->bump = NULL;
    p->left = 0;
    p->live = 0;
}

static void pool_put(struct rib *r, struct pool *p, void *o)
{
    *(void **)o = p->free;
    p->free = o;
    if (--p->live == 0)
        pool_fini(r, p); /* nothing left: give every slab back */
}

static struct pool *pool_for(struct rib *r, size_t n)
{
    return n <= 24 ? &r->pools[0] : n <= 40 ? &r->pools[1] : NULL;
}

/* Objects of the pooled sizes come from a pool, larger ones from malloc. */
static void *obj_alloc(struct rib *r, size_t n)
{
    struct pool *p = pool_for(r, n);
    return p ? pool_get(r, p) : rib_alloc(r, n);
}

static void obj_free(struct rib *r, void *o, size_t n)
{
    struct pool *p = pool_for(r, n);
    if (p)
        pool_put(r, p, o);
    else
        rib_free(r, o, n);
}

static char *str_copy(struct rib *r, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = rib_alloc(r, n);
    memcpy(p, s, n);
    return p;
}

static void str_free(struct rib *r, char *s)
{
    if (s)
        rib_free(r, s, strlen(s) + 1);
}

/* ---- hashing ------------------------------------------------------------- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static size_t dest_hash(const struct rib *r, uint8_t kind, uint8_t plen, const uint8_t *key, size_t len)
{
    uint64_t h = hash_fnv1a(key, len) ^ r->seed ^ ((uint64_t)kind << 56 | (uint64_t)plen << 48);
    return (size_t)hash_mix64(h);
}

/* ---- peers and policy ---------------------------------------------------- */

static struct rib_peer *peer_get(const struct rib *r, int peer)
{
    if (r == NULL || peer < 0 || peer >= RIB_MAX_PEERS)
        return NULL;
    return r->peers[peer];
}

static void policy_copy(struct rib_policy *dst, const struct rib_policy *src)
{
    *dst = *src;
    dst->rules = NULL;
    dst->nrules = 0;
    if (src->rules == NULL || src->nrules == 0)
        return;
    dst->rules = xcalloc(src->nrules, sizeof(*dst->rules));
    dst->nrules = src->nrules;
    for (size_t i = 0; i < src->nrules; i++) {
        dst->rules[i] = src->rules[i];
        if (src->rules[i].text)
            dst->rules[i].text = xstrdup(src->rules[i].text);
    }
}

void rib_policy_free(struct rib_policy *pol)
{
    if (pol == NULL)
        return;
    for (size_t i = 0; i < pol->nrules; i++)
        free(pol->rules[i].text);
    free(pol->rules);
    pol->rules = NULL;
    pol->nrules = 0;
}

static size_t policy_bytes(const struct rib_policy *pol)
{
    size_t n = pol->nrules ? chunk(pol->nrules * sizeof(*pol->rules)) : 0;
    for (size_t i = 0; i < pol->nrules; i++)
        if (pol->rules[i].text)
            n += chunk(strlen(pol->rules[i].text) + 1);
    return n;
}

/* Does an area rule's prefix cover the route's first `plen` bits? */
static int prefix_covers(const uint8_t *rule, const uint8_t *route, unsigned plen)
{
    unsigned full = plen / 8, rest = plen % 8;
    if (memcmp(rule, route, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff00u >> rest);
    return ((rule[full] ^ route[full]) & mask) == 0;
}

static int rule_match(const struct rib_rule *ru, const struct dkey *k)
{
    if (ru->kind == 0)
        return 1;
    if (ru->kind != k->kind)
        return 0;
    switch (ru->kind) {
    case PEER_R_AREA4:
    case PEER_R_AREA6: {
        /* An `le` below the rule's own length (left unset) means the exact length. */
        unsigned le = ru->le < ru->plen ? ru->plen : ru->le;
        if (k->plen < ru->plen || k->plen > le)
            return 0;
        return prefix_covers(ru->addr, k->key, ru->plen);
    }
    case PEER_R_PUBLISHER: {
        if (ru->text == NULL)
            return 0;
        size_t tl = strlen(ru->text);
        const char *host = (const char *)k->key;
        if (tl >= 2 && ru->text[0] == '*' && ru->text[1] == '.') {
            /* "*.suffix": any host ending in ".suffix" (names compare case-insensitively) */
            size_t sl = tl - 1;
            return k->len > sl && strncasecmp(host + k->len - sl, ru->text + 1, sl) == 0;
        }
        return k->len == tl && strncasecmp(host, ru->text, tl) == 0;
    }
    case PEER_R_URI: {
        if (ru->text == NULL)
            return 0;
        size_t tl = strlen(ru->text);
        return k->len >= tl && memcmp(k->key, ru->text, tl) == 0;
    }
    default:
        return 0;
    }
}

/* Import policy for a route to `k` offering content types `ct`: 1 accepted, 0 rejected. */
static int policy_accepts(const struct rib_policy *pol, const struct dkey *k, uint8_t ct)
{
    if (pol->content_types && (pol->content_types & ct) == 0)
        return 0;
    for (size_t i = 0; i < pol->nrules; i++)
        if (rule_match(&pol->rules[i], k))
            return pol->rules[i].accept != 0;
    return 1;
}

/* ---- destinations ---------------------------------------------------------- */

static int dkey_make(const struct peer_route *p, struct dkey *k);

int rib_policy_allows(const struct rib_policy *pol, const struct rib_dest *d, uint8_t content_types)
{
    struct peer_route p;
    struct dkey k;
    rib_dest_route(d, &p);
    if (dkey_make(&p, &k) < 0)
        return 0;
    return policy_accepts(pol, &k, content_types);
}

/* Builds the lookup key of a route; -1 when it is not a valid destination. */
static int dkey_make(const struct peer_route *p, struct dkey *k)
{
    memset(k, 0, sizeof(*k));
    k->kind = (uint8_t)p->kind;
    switch (p->kind) {
    case PEER_R_AREA4:
    case PEER_R_AREA6: {
        unsigned width = p->kind == PEER_R_AREA4 ? 32 : 128;
        if (p->plen > width)
            return -1;
        k->plen = p->plen;
        k->len = (uint16_t)((p->plen + 7u) / 8u);
        memcpy(k->addr, p->addr, k->len);
        if (p->plen % 8)
            k->addr[k->len - 1] &= (uint8_t)(0xff00u >> (p->plen % 8));
        k->key = k->addr;
        return 0;
    }
    case PEER_R_PUBLISHER:
    case PEER_R_URI:
        if (p->text == NULL || p->len == 0 || p->len > (p->kind == PEER_R_URI ? PEER_MAX_URI : PEER_MAX_HOST))
            return -1;
        k->len = p->len;
        k->key = (const uint8_t *)p->text;
        return 0;
    }
    return -1;
}

static size_t dest_size(uint8_t kind, uint16_t len)
{
    size_t n = offsetof(struct rib_dest, key) + len;
    if (kind == PEER_R_PUBLISHER || kind == PEER_R_URI)
        n++;                     /* the NUL */
    return n < sizeof(struct rib_dest) ? sizeof(struct rib_dest) : n;
}

/* The link holding k's destination, or the empty link at the end of its chain. */
static struct rib_dest **dest_slot_h(const struct rib *r, const struct dkey *k, size_t h)
{
    struct rib_dest **link = &r->dtab[h & r->dmask];
    for (; *link; link = &(*link)->next) {
        const struct rib_dest *d = *link;
        if (d->kind == k->kind && d->plen == k->plen && d->len == k->len && memcmp(d->key, k->key, k->len) == 0)
            break;
    }
    return link;
}

static struct rib_dest **dest_slot(const struct rib *r, const struct dkey *k)
{
    struct rib_dest **link = &r->dtab[dest_hash(r, k->kind, k->plen, k->key, k->len) & r->dmask];
    for (; *link; link = &(*link)->next) {
        const struct rib_dest *d = *link;
        if (d->kind == k->kind && d->plen == k->plen && d->len == k->len && memcmp(d->key, k->key, k->len) == 0)
            break;
    }
    return link;
}

static void dest_resize(struct rib *r, size_t nb)
{
    r->resizes++;
    struct rib_dest **t = rib_zalloc(r, nb, sizeof(*t));
    for (size_t i = 0; i <= r->dmask; i++) {
        if (i + 8 <= r->dmask && r->dtab[i + 8])
            __builtin_prefetch(r->dtab[i + 8]); /* the chains are scattered: fetch ahead */
        struct rib_dest *d, *next;
        for (d = r->dtab[i]; d; d = next) {
            next = d->next;
            size_t h = dest_hash(r, d->kind, d->plen, d->key, d->len) & (nb - 1);
            d->next = t[h];
            t[h] = d;
        }
    }
    rib_free(r, r->dtab, (r->dmask + 1) * sizeof(*t));
    r->dtab = t;
    r->dmask = nb - 1;
}

/* Shrinks the bucket array after mass removals; it never drops below twice the count. */
static void dest_fit(struct rib *r)
{
    size_t nb = r->dmask + 1;
    if (nb <= DEST_MIN_BUCKETS || r->ndests >= nb / 8)
        return;
    size_t want = DEST_MIN_BUCKETS;
    while (want < 2 * r->ndests)
        want *= 2;
    dest_resize(r, want);
}

/* Creates k's destination at `link` (from dest_slot). May grow the table: the link is stale after. */
static struct rib_dest *dest_new(struct rib *r, const struct dkey *k, struct rib_dest **link)
{
    struct rib_dest *d = obj_alloc(r, dest_size(k->kind, k->len));
    d->next = NULL;
    d->routes = NULL;
    d->kind = k->kind;
    d->plen = k->plen;
    d->len = k->len;
    memcpy(d->key, k->key, k->len);
    if (k->kind == PEER_R_PUBLISHER || k->kind == PEER_R_URI)
        d->key[k->len] = 0;
    *link = d;
    if (++r->ndests > r->dmask + 1)
        dest_resize(r, 2 * (r->dmask + 1));
    return d;
}

static void dest_free(struct rib *r, struct rib_dest **link)
{
    struct rib_dest *d = *link;
    *link = d->next;
    r->ndests--;
    obj_free(r, d, dest_size(d->kind, d->len));
}

/* ---- attribute sets -------------------------------------------------------- */

static uint32_t attrs_hash(const struct rib *r, const struct rib_attrs *a)
{
    uint32_t v[9] = {a->local_pref, a->npath, a->nhandoff, a->content_types, a->distribution,
                     a->has_metrics != 0, a->load, a->capacity, a->cost};
    uint64_t h = fnv(0xcbf29ce484222325ull ^ r->seed, v, sizeof(v));
    for (unsigned i = 0; i < a->npath; i++)
        h = fnv(h, a->path[i], strlen(a->path[i]) + 1);
    for (unsigned i = 0; i < a->nhandoff; i++) {
        uint8_t m = (uint8_t)a->handoff[i].method;
        h = fnv(h, &m, 1);
        h = fnv(h, a->handoff[i].target, strlen(a->handoff[i].target) + 1);
    }
    uint8_t has_auth = a->authoritative != NULL;
    h = fnv(h, &has_auth, 1);
    if (has_auth)
        h = fnv(h, a->authoritative, strlen(a->authoritative) + 1);
    uint64_t cl = a->carry_len;
    h = fnv(h, &cl, sizeof(cl));
    if (a->carry_len)
        h = fnv(h, a->carry, a->carry_len);
    return (uint32_t)(hash_mix64(h) >> 32);
}

static int str_same(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static int attrs_equal(const struct rib_attrs *a, const struct rib_attrs *b)
{
    if (a->local_pref != b->local_pref || a->npath != b->npath || a->nhandoff != b->nhandoff ||
        a->content_types != b->content_types || a->distribution != b->distribution ||
        (a->has_metrics != 0) != (b->has_metrics != 0) || a->load != b->load || a->capacity != b->capacity ||
        a->cost != b->cost || a->carry_len != b->carry_len || !str_same(a->authoritative, b->authoritative))
        return 0;
    for (unsigned i = 0; i < a->npath; i++)
        if (strcmp(a->path[i], b->path[i]) != 0)
            return 0;
    for (unsigned i = 0; i < a->nhandoff; i++)
        if (a->handoff[i].method != b->handoff[i].method || strcmp(a->handoff[i].target, b->handoff[i].target) != 0)
            return 0;
    return a->carry_len == 0 || memcmp(a->carry, b->carry, a->carry_len) == 0;
}

static void attrs_resize(struct rib *r, size_t nb)
{
    struct rib_attrs **t = rib_zalloc(r, nb, sizeof(*t));
    for (size_t i = 0; i <= r->amask; i++) {
        struct rib_attrs *a, *next;
        for (a = r->atab[i]; a; a = next) {
            next = a->next;
            a->next = t[a->hash & (nb - 1)];
            t[a->hash & (nb - 1)] = a;
        }
    }
    rib_free(r, r->atab, (r->amask + 1) * sizeof(*t));
    r->atab = t;
    r->amask = nb - 1;
}

/* Returns a reference to the interned copy of `t` (whose refs, hash and next are ignored). */
static struct rib_attrs *attrs_intern(struct rib *r, const struct rib_attrs *t)
{
    uint32_t h = attrs_hash(r, t);
    struct rib_attrs *a;
    for (a = r->atab[h & r->amask]; a; a = a->next)
        if (a->hash == h && attrs_equal(a, t)) {
            a->refs++;
            return a;
        }
    a = rib_alloc(r, sizeof(*a));
    *a = *t;
    a->refs = 1;
    a->hash = h;
    for (unsigned i = 0; i < a->npath; i++)
        a->path[i] = str_copy(r, t->path[i]);
    for (unsigned i = 0; i < a->nhandoff; i++)
        a->handoff[i].target = str_copy(r, t->handoff[i].target);
    if (t->authoritative)
        a->authoritative = str_copy(r, t->authoritative);
    a->carry = NULL;
    if (t->carry_len) {
        a->carry = rib_alloc(r, t->carry_len);
        memcpy(a->carry, t->carry, t->carry_len);
    }
    a->next = r->atab[h & r->amask];
    r->atab[h & r->amask] = a;
    if (++r->nattrs > r->amask + 1)
        attrs_resize(r, 2 * (r->amask + 1));
    return a;
}

static void attrs_unref(struct rib *r, struct rib_attrs *a)
{
    if (--a->refs > 0)
        return;
    struct rib_attrs **link = &r->atab[a->hash & r->amask];
    while (*link != a)
        link = &(*link)->next;
    *link = a->next;
    r->nattrs--;
    for (unsigned i = 0; i < a->npath; i++)
        str_free(r, a->path[i]);
    for (unsigned i = 0; i < a->nhandoff; i++)
        str_free(r, a->handoff[i].target);
    str_free(r, a->authoritative);
    rib_free(r, a->carry, a->carry_len);
    rib_free(r, a, sizeof(*a));
}

/* Absent metrics are the worst values. */
static void tmpl_metrics(struct rib_attrs *a, int has, uint32_t load, uint32_t capacity, uint32_t cost)
{
    a->has_metrics = has != 0;
    a->load = has ? load : UINT32_MAX;
    a->capacity = has ? capacity : UINT32_MAX;
    a->cost = has ? cost : UINT32_MAX;
}

/* Copies n bytes of text to *s as a NUL-terminated string; returns it and advances *s. */
static char *tmpl_str(char **s, const void *p, size_t n)
{
    char *out = *s;
    memcpy(out, p, n);
    out[n] = 0;
    *s += n + 1;
    return out;
}

/* The attribute set of a decoded UPDATE. Lengths are clamped to msg.h's limits, which the
 * decoder has already enforced, so an unchecked UPDATE cannot overrun the template. */
static void tmpl_from_update(struct attrs_tmpl *t, const struct peer_attrs *pa, uint32_t local_pref,
                             const struct buf *carry)
{
    struct rib_attrs *a = &t->a;
    char *s = t->text;
    memset(a, 0, sizeof(*a));
    a->local_pref = local_pref;
    a->npath = (uint8_t)MIN(pa->npath, PEER_MAX_PATH);
    const uint8_t *p = pa->path;
    for (unsigned i = 0; i < a->npath; i++) {
        a->path[i] = tmpl_str(&s, p + 1, MIN(p[0], PEER_MAX_ID));
        p += 1u + p[0];
    }
    a->nhandoff = (uint8_t)MIN(pa->nhandoff, PEER_MAX_HANDOFFS);
    for (unsigned i = 0; i < a->nhandoff; i++) {
        a->handoff[i].method = pa->handoff[i].method;
        a->handoff[i].target = tmpl_str(&s, pa->handoff[i].target, MIN(pa->handoff[i].len, PEER_MAX_TARGET));
    }
    if (pa->authoritative)
        a->authoritative = tmpl_str(&s, pa->authoritative, MIN(pa->authoritative_len, PEER_MAX_ID));
    a->content_types = pa->content_types;
    a->distribution = pa->distribution;
    tmpl_metrics(a, pa->has_metrics, pa->load, pa->capacity, pa->cost);
    if (carry->len) {
        a->carry = (uint8_t *)buf_head(carry);
        a->carry_len = buf_avail(carry);
    }
}

/* ---- route lists ----------------------------------------------------------- */

/*
 * Compares two candidates for one destination (never of the same peer):
 * < 0 when a is preferred, > 0 when b is, with the deciding step in *why.
 * Own routes come first whatever LOCAL-PREF an import policy gave a learned
 * one. The id step never sees an own route (at most one per destination),
 * so the advertiser is always path[0].
 */
static int route_cmp(const struct rib_route *ra, const struct rib_route *rb, enum rib_reason *why)
{
    static const enum rib_reason step[5] = {RIB_WHY_OWN, RIB_WHY_LOCAL_PREF, RIB_WHY_PATH,
                                            RIB_WHY_COST, RIB_WHY_LOAD};
    const struct rib_attrs *a = ra->attrs, *b = rb->attrs;
    /* lower is better in every column */
    uint32_t ka[5] = {ra->peer != RIB_LOCAL, UINT32_MAX - a->local_pref, a->npath, a->cost, a->load};
    uint32_t kb[5] = {rb->peer != RIB_LOCAL, UINT32_MAX - b->local_pref, b->npath, b->cost, b->load};
    for (int i = 0; i < 5; i++)
        if (ka[i] != kb[i]) {
            *why = step[i];
            return ka[i] < kb[i] ? -1 : 1;
        }
    *why = RIB_WHY_ID;
    int c = strcmp(a->npath ? a->path[0] : "", b->npath ? b->path[0] : "");
    if (c != 0)
        return c;
    /* The same advertiser through two sessions: the lower peer index, still an id tie-break. */
    return ra->peer < rb->peer ? -1 : 1;
}

static struct rib_route **route_link(struct rib_dest *d, int peer)
{
    struct rib_route **pp = &d->routes;
    while (*pp && (*pp)->peer != peer)
        pp = &(*pp)->next;
    return pp;
}

static void route_insert(struct rib_dest *d, struct rib_route *rt)
{
    enum rib_reason why;
    struct rib_route **pp = &d->routes;
    while (*pp && route_cmp(*pp, rt, &why) < 0)
        pp = &(*pp)->next;
    rt->next = *pp;
    *pp = rt;
}

/* Copies the current best route (for the change callback), or returns NULL when there is none. */
static const struct rib_route *best_snapshot(const struct rib_dest *d, struct rib_route *s)
{
    if (d->routes == NULL)
        return NULL;
    *s = *d->routes;
    s->next = NULL;
    return s;
}

/* Reports a Loc-RIB change if the best route is no longer `before`. */
static void changed(struct rib *r, const struct rib_dest *d, const struct rib_route *before)
{
    const struct rib_route *now = d->routes;
    if (before == NULL && now == NULL)
        return;
    if (before && now && before->peer == now->peer && before->attrs == now->attrs)
        return;
    if (before)
        r->peers[before->peer]->st.best--;
    if (now)
        r->peers[now->peer]->st.best++;
    if (r->cb)
        r->cb(r->arg, d, before, now);
}

/* Gives `peer`'s route to `d` the attributes `a`, taking over the caller's reference to `a`. */
static void route_set(struct rib *r, struct rib_dest *d, int peer, struct rib_attrs *a)
{
    struct rib_route **pp = route_link(d, peer), *rt = *pp, saved;
    struct rib_attrs *old = NULL;
    if (rt && rt->attrs == a) {
        attrs_unref(r, a);
        return;
    }
    const struct rib_route *before = best_snapshot(d, &saved);
    if (rt) {
        *pp = rt->next;
        old = rt->attrs;
    } else {
        rt = obj_alloc(r, sizeof(*rt));
        rt->peer = (uint16_t)peer;
        r->peers[peer]->st.routes++;
    }
    rt->attrs = a;
    route_insert(d, rt);
    changed(r, d, before);
    if (old)
        attrs_unref(r, old);     /* only now: `before` may point at it */
}

/*
 * Removes `peer`'s route from the destination at *link; frees the destination
 * when no route is left. Returns 0 (no such route), 1 (removed) or 2 (removed,
 * and the destination freed: *link now holds the next one of the chain).
 */
static int route_drop(struct rib *r, struct rib_dest **link, int peer)
{
    struct rib_dest *d = *link;
    struct rib_route **pp = route_link(d, peer), *rt = *pp, saved;
    if (rt == NULL)
        return 0;
    const struct rib_route *before = best_snapshot(d, &saved);
    *pp = rt->next;
    r->peers[peer]->st.routes--;
    changed(r, d, before);
    attrs_unref(r, rt->attrs);
    obj_free(r, rt, sizeof(*rt));
    if (d->routes)
        return 1;
    dest_free(r, link);
    return 2;
}

static void withdraw(struct rib *r, const struct dkey *k, int peer)
{
    struct rib_dest **link = dest_slot(r, k);
    if (*link)
        route_drop(r, link, peer);
}

/*
 * Visits every route of `peer`: removes it (all = 1), or re-checks it against
 * the peer's policy (all = 0), removing the rejected ones and moving the rest
 * to sets with the policy's LOCAL-PREF. Stops early once the peer holds none.
 */
static void peer_walk(struct rib *r, int peer, int all)
{
    struct rib_peer *p = r->peers[peer];
    for (size_t i = 0; i <= r->dmask && p->st.routes; i++) {
        struct rib_dest **link = &r->dtab[i];
        while (*link) {
            struct rib_dest *d = *link;
            struct rib_route *rt = *route_link(d, peer);
            struct dkey k = {.kind = d->kind, .plen = d->plen, .len = d->len, .key = d->key};
            if (rt && (all || !policy_accepts(&p->pol, &k, rt->attrs->content_types))) {
                p->st.rejected += !all;
                if (route_drop(r, link, peer) == 2)
                    continue;
            } else if (rt && rt->attrs->local_pref != p->pol.local_pref) {
                struct rib_attrs t = *rt->attrs;
                t.local_pref = p->pol.local_pref;
                route_set(r, d, peer, attrs_intern(r, &t));
            }
            link = &d->next;
        }
    }
    dest_fit(r);
}

/* ---- the interface ----------------------------------------------------------- */

static struct rib_peer *peer_new(const char *id, const struct rib_policy *pol)
{
    struct rib_peer *p = xcalloc(1, sizeof(*p));
    p->id = xstrdup(id);
    policy_copy(&p->pol, pol);
    return p;
}

static void peer_free(struct rib_peer *p)
{
    if (p == NULL)
        return;
    rib_policy_free(&p->pol);
    free(p->id);
    free(p);
}

struct rib *rib_create(const char *my_id, rib_change_cb cb, void *arg)
{
    struct rib *r = xcalloc(1, sizeof(*r));
    r->my_id = xstrdup(my_id ? my_id : "");
    r->my_id_len = strlen(r->my_id);
    r->cb = cb;
    r->arg = arg;
    r->seed = hash_mix64(time_mono_ns() ^ (uint64_t)(uintptr_t)r);
    r->dtab = rib_zalloc(r, DEST_MIN_BUCKETS, sizeof(*r->dtab));
    r->dmask = DEST_MIN_BUCKETS - 1;
    r->atab = rib_zalloc(r, ATTRS_MIN_BUCKETS, sizeof(*r->atab));
    r->amask = ATTRS_MIN_BUCKETS - 1;
    r->pools[0].size = 24;
    r->pools[1].size = 40;
    struct rib_policy own = {.local_pref = UINT32_MAX};
    r->peers[RIB_LOCAL] = peer_new(r->my_id, &own);
    return r;
}

void rib_destroy(struct rib *r)
{
    if (r == NULL)
        return;
    r->cb = NULL;                /* the owner is going away with the RIB */
    for (int i = 0; i < RIB_MAX_PEERS; i++)
        if (r->peers[i])
            peer_walk(r, i, 1);
    rib_free(r, r->dtab, (r->dmask + 1) * sizeof(*r->dtab));
    rib_free(r, r->atab, (r->amask + 1) * sizeof(*r->atab));
    pool_fini(r, &r->pools[0]);
    pool_fini(r, &r->pools[1]);
    for (int i = 0; i < RIB_MAX_PEERS; i++)
        peer_free(r->peers[i]);
    free(r->my_id);
    free(r);
}

int rib_peer_add(struct rib *r, const char *id, const struct rib_policy *pol)
{
    if (r == NULL || id == NULL)
        return -1;
    struct rib_policy def = {.local_pref = 100};
    for (int i = 1; i < RIB_MAX_PEERS; i++)
        if (r->peers[i] == NULL) {
            r->peers[i] = peer_new(id, pol ? pol : &def);
            return i;
        }
    return -1;
}

const char *rib_peer_id(const struct rib *r, int peer)
{
    const struct rib_peer *p = peer_get(r, peer);
    return p ? p->id : NULL;
}

void rib_peer_stats(const struct rib *r, int peer, struct rib_peer_stats *out)
{
    const struct rib_peer *p = peer_get(r, peer);
    if (p)
        *out = p->st;
    else
        memset(out, 0, sizeof(*out));
}

/* Does a decoded PATH hold `id`? */
static int path_has(const struct peer_attrs *pa, const char *id, size_t len)
{
    const uint8_t *p = pa->path;
    for (unsigned i = 0; i < pa->npath; i++) {
        if (p[0] == len && memcmp(p + 1, id, len) == 0)
            return 1;
        p += 1u + p[0];
    }
    return 0;
}

int rib_update(struct rib *r, int peer, const struct peer_update *u, uint8_t content_types)
{
    struct rib_peer *p = peer_get(r, peer);
    if (p == NULL || peer == RIB_LOCAL || u == NULL)
        return -EINVAL;
    struct peer_route pr;
    struct dkey k;
    size_t pos = 0;
    while (peer_route_next(u->withdrawn, u->withdrawn_len, &pos, &pr)) {
        p->st.withdrawn++;
        if (dkey_make(&pr, &k) == 0)
            withdraw(r, &k, peer);
    }
    if (u->announced_len == 0) {
        dest_fit(r);
        return 0;
    }

    /* The PATH and the content types are the UPDATE's, so their verdict is too:
     * `drop` is the counter of routes it may not place, whatever the destination. */
    const struct peer_attrs *pa = &u->attrs;
    uint64_t *drop = NULL;
    if (path_has(pa, r->my_id, r->my_id_len))
        drop = &p->st.looped;
    else if ((pa->content_types & content_types) == 0)
        drop = &p->st.refused_type;
    struct buf carry;
    buf_init(&carry);
    struct attrs_tmpl t;
    struct rib_attrs *a = NULL;  /* interned at the first route stored; our reference */
    int too_many = 0;
    if (drop == NULL) {
        if (pa->nunknown)
            peer_attrs_carry(u->attrs_raw, u->attrs_len, &carry);
        tmpl_from_update(&t, pa, p->pol.local_pref, &carry);
    }
    /*
     * A table load is one cache miss after another (the bucket, then the
     * chain): a second cursor runs AHEAD routes in front, hashing each route
     * and prefetching its bucket, and halfway there the bucket's first node,
     * so the memory is on its way when the route's turn comes.
     */
    enum { AHEAD = 16 };
    size_t ring[AHEAD];
    size_t apos = 0, ai = 0, i = 0;
    struct peer_route ar;
    struct dkey ak;
    for (pos = 0; peer_route_next(u->announced, u->announced_len, &pos, &pr); i++) {
        while (ai < i + AHEAD && peer_route_next(u->announced, u->announced_len, &apos, &ar)) {
            size_t h = 0;
            if (dkey_make(&ar, &ak) == 0) {
                h = dest_hash(r, ak.kind, ak.plen, ak.key, ak.len);
                __builtin_prefetch(&r->dtab[h & r->dmask]);
            }
            ring[ai++ % AHEAD] = h;
        }
        if (i + AHEAD / 2 < ai) {
            const struct rib_dest *b = r->dtab[ring[(i + AHEAD / 2) % AHEAD] & r->dmask];
            if (b)
                __builtin_prefetch(b);
        }
        size_t hash = ring[i % AHEAD];
        p->st.announced++;
        if (dkey_make(&pr, &k) < 0)
            continue;
        /* A route we may not hold replaces the one held before: it acts as a withdrawal. */
        if (drop || !policy_accepts(&p->pol, &k, pa->content_types)) {
            (*(drop ? drop : &p->st.rejected))++;
            withdraw(r, &k, peer);
            continue;
        }
        struct rib_dest **link = dest_slot_h(r, &k, hash), *d = *link;
        if ((d == NULL || *route_link(d, peer) == NULL) && p->pol.max_routes &&
            p->st.routes >= p->pol.max_routes) {
            too_many = 1;
            continue;
        }
        if (a == NULL)
            a = attrs_intern(r, &t.a);
        if (d == NULL)
            d = dest_new(r, &k, link);
        a->refs++;
        route_set(r, d, peer, a);
    }
    if (a)
        attrs_unref(r, a);
    buf_fini(&carry);
    dest_fit(r);
    return too_many ? RIB_TOO_MANY : 0;
}

void rib_peer_down(struct rib *r, int peer)
{
    if (peer_get(r, peer))
        peer_walk(r, peer, 1);
}

void rib_peer_policy(struct rib *r, int peer, const struct rib_policy *pol)
{
    struct rib_peer *p = peer_get(r, peer);
    if (p == NULL || peer == RIB_LOCAL)
        return;
    struct rib_policy old = p->pol, def = {.local_pref = 100};
    policy_copy(&p->pol, pol ? pol : &def);
    rib_policy_free(&old);
    peer_walk(r, peer, 0);
}

void rib_originate(struct rib *r, const struct peer_route *dst, const struct rib_origin *o)
{
    struct dkey k;
    if (r == NULL || o == NULL || dkey_make(dst, &k) < 0 || o->nhandoff > PEER_MAX_HANDOFFS)
        return;
    struct attrs_tmpl t;
    struct rib_attrs *a = &t.a;
    char *s = t.text;
    memset(a, 0, sizeof(*a));
    a->local_pref = UINT32_MAX;
    a->nhandoff = (uint8_t)o->nhandoff;
    for (unsigned i = 0; i < o->nhandoff; i++) {
        /* Our own configuration; a target too long for the wire cannot be advertised. */
        if (o->handoff[i].len == 0 || o->handoff[i].len > PEER_MAX_TARGET || o->handoff[i].target == NULL)
            return;
        a->handoff[i].method = o->handoff[i].method;
        a->handoff[i].target = tmpl_str(&s, o->handoff[i].target, o->handoff[i].len);
    }
    a->content_types = o->content_types;
    a->distribution = o->distribution;
    if (o->authoritative && o->authoritative[0])
        a->authoritative = tmpl_str(&s, o->authoritative, MIN(strlen(o->authoritative), PEER_MAX_ID));
    tmpl_metrics(a, o->has_metrics, o->load, o->capacity, o->cost);
    a = attrs_intern(r, a);
    struct rib_dest **link = dest_slot(r, &k), *d = *link;
    if (d == NULL)
        d = dest_new(r, &k, link);
    route_set(r, d, RIB_LOCAL, a);
}

void rib_unoriginate(struct rib *r, const struct peer_route *dst)
{
    struct dkey k;
    if (r == NULL || dkey_make(dst, &k) < 0)
        return;
    withdraw(r, &k, RIB_LOCAL);
}

const struct rib_dest *rib_find(const struct rib *r, const struct peer_route *dst)
{
    struct dkey k;
    if (r == NULL || dst == NULL || dkey_make(dst, &k) < 0)
        return NULL;
    return *dest_slot(r, &k);
}

const struct rib_route *rib_best(const struct rib_dest *d, enum rib_reason *why)
{
    enum rib_reason w = RIB_WHY_ONLY;
    const struct rib_route *best = d ? d->routes : NULL;
    if (best && best->next)
        route_cmp(best, best->next, &w);
    if (why)
        *why = w;
    return best;
}

void rib_foreach(const struct rib *r, int (*fn)(void *arg, const struct rib_dest *d), void *arg)
{
    for (size_t i = 0; i <= r->dmask; i++)
        for (const struct rib_dest *d = r->dtab[i]; d; d = d->next)
            if (fn(arg, d))
                return;
}

int rib_walk_restarts(const struct rib *r, const struct rib_cursor *cur)
{
    return cur->resizes != r->resizes;
}

void rib_walk_start(const struct rib *r, struct rib_cursor *cur)
{
    cur->bucket = 0;
    cur->resizes = r->resizes;
}

int rib_walk(const struct rib *r, struct rib_cursor *cur, int (*fn)(void *arg, const struct rib_dest *d),
             void *arg, size_t max)
{
    if (cur->resizes != r->resizes) {
        cur->resizes = r->resizes; /* the buckets moved: start again */
        cur->bucket = 0;
    }
    size_t seen = 0;
    while (cur->bucket <= r->dmask && seen < max) {
        for (const struct rib_dest *d = r->dtab[cur->bucket]; d; d = d->next, seen++)
            fn(arg, d);
        cur->bucket++;
    }
    return cur->bucket > r->dmask;
}

size_t rib_dest_count(const struct rib *r)
{
    return r->ndests;
}

const struct rib_dest *rib_match(const struct rib *r, int family, const uint8_t addr[16])
{
    struct peer_route p = {.kind = family == 4 ? PEER_R_AREA4 : PEER_R_AREA6};
    unsigned width = family == 4 ? 32 : 128;
    if (family != 4 && family != 6)
        return NULL;
    memcpy(p.addr, addr, width / 8);
    for (int plen = (int)width; plen >= 0; plen--) {
        p.plen = (uint8_t)plen;
        const struct rib_dest *d = rib_find(r, &p);
        if (d)
            return d;
    }
    return NULL;
}

void rib_dest_route(const struct rib_dest *d, struct peer_route *out)
{
    memset(out, 0, sizeof(*out));
    out->kind = (enum peer_route_kind)d->kind;
    if (d->kind == PEER_R_AREA4 || d->kind == PEER_R_AREA6) {
        out->plen = d->plen;
        memcpy(out->addr, d->key, MIN(d->len, sizeof(out->addr)));
    } else {
        out->len = d->len;
        out->text = (const char *)d->key;
    }
}

int rib_exportable(const struct rib *r, int peer, const struct rib_route *rt)
{
    const struct rib_peer *p = peer_get(r, peer);
    if (p == NULL || rt == NULL || rt->peer == peer)
        return 0;
    if (rt->peer != RIB_LOCAL && !p->pol.transit)
        return 0;
    for (unsigned i = 0; i < rt->attrs->npath; i++)
        if (strcmp(rt->attrs->path[i], p->id) == 0)
            return 0;
    return 1;
}

const struct rib_route *rib_export(const struct rib *r, int peer, const struct rib_dest *d)
{
    const struct rib_route *best = d ? d->routes : NULL;
    return rib_exportable(r, peer, best) ? best : NULL;
}

size_t rib_memory(const struct rib *r)
{
    size_t n = chunk(sizeof(*r)) + chunk(r->my_id_len + 1) + r->mem;
    for (int i = 0; i < RIB_MAX_PEERS; i++) {
        const struct rib_peer *p = r->peers[i];
        if (p)
            n += chunk(sizeof(*p)) + chunk(strlen(p->id) + 1) + policy_bytes(&p->pol);
    }
    return n;
}

size_t rib_attrs_count(const struct rib *r)
{
    return r->nattrs;
}
