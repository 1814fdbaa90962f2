/*
 * policy -- see policy.h.
 */
#include "switch/policy.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lib/util.h"

int sw_policy_parse(struct sw_policy *p, char *const *words, int nwords, int plain, char *err,
                    size_t errlen)
{
    p->nsteps = 0;
    p->has_sticky = 0;
    if (nwords < 1 || nwords > SW_MAX_STEPS) {
        snprintf(err, errlen, "a policy has 1 to %d steps", SW_MAX_STEPS);
        return -1;
    }
    for (int i = 0; i < nwords; i++) {
        enum sw_step s;
        if (sw_step_parse(words[i], &s) < 0) {
            snprintf(err, errlen, "unknown policy step \"%s\" (psk, ticket, session_id, sticky, "
                                  "hash, leastconn, roundrobin, url)", words[i]);
            return -1;
        }
        for (unsigned j = 0; j < p->nsteps; j++) {
            if (p->steps[j] == s) {
                snprintf(err, errlen, "policy step \"%s\" appears twice", words[i]);
                return -1;
            }
        }
        if (plain && (s == SW_STEP_PSK || s == SW_STEP_TICKET || s == SW_STEP_SESSION_ID)) {
            snprintf(err, errlen, "policy step \"%s\" needs TLS; plain HTTP cannot use it", words[i]);
            return -1;
        }
        if (!plain && s == SW_STEP_URL) {
            snprintf(err, errlen, "policy step \"url\" is for plain HTTP (http_policy) only");
            return -1;
        }
        if (s == SW_STEP_STICKY)
            p->has_sticky = 1;
        p->steps[p->nsteps++] = s;
    }
    return 0;
}

/* A PSK identity or ticket: a short one is a session ID, a long one a ticket. */
static unsigned ticket_label(const struct sid_codec *c, const uint8_t *id, size_t len)
{
    if (len == 0)
        return 0;
    return sid_decode(c, id, len <= 32 ? len : 16);
}

void sw_policy_keys(const struct sw_policy *p, const struct ch_info *ch, struct sw_hello_keys *k)
{
    memset(k, 0, sizeof(*k));
    if (ch->has_psk) {
        k->npsk = MIN(ch->n_psk_ids, CH_MAX_PSK_IDS);
        for (unsigned i = 0; i < k->npsk; i++)
            k->psk_label[i] = ticket_label(&p->codec, ch->psk_ids[i].id, ch->psk_ids[i].len);
    }
    /* An empty session_ticket extension only asks for a ticket. A TLS 1.2
     * ticket is never shorter than a key_name plus an IV and a MAC. */
    if (ch->has_ticket_ext && ch->ticket_len > 32)
        k->ticket_label = sid_decode(&p->codec, ch->ticket, 16);
    if (ch->session_id_len > 0)
        k->sid_label = sid_decode(&p->codec, ch->session_id, ch->session_id_len);
}

static int usable(const struct sw_backend *b, const struct sw_request *r, int need_up)
{
    if (need_up && !atomic_load_explicit(&b->up, memory_order_relaxed))
        return 0;
    if (r->plain && !b->has_http)
        return 0;
    for (unsigned i = 0; i < r->nexcluded; i++)
        if (r->excluded[i] == b)
            return 0;
    return 1;
}

static struct sw_backend *by_label(const struct sw_pool *pool, const struct sw_request *r,
                                   unsigned label)
{
    if (label == 0)
        return NULL;
    for (size_t i = 0; i < pool->n; i++)
        if (pool->b[i]->label == label)
            return usable(pool->b[i], r, 1) ? pool->b[i] : NULL;
    return NULL;
}

static unsigned weight(const struct sw_backend *b)
{
    return atomic_load_explicit(&b->weight, memory_order_relaxed);
}

/*
 * Weighted rendezvous: backend b scores w / -ln(u), u the (0,1) uniform
 * from its 64-bit score. The highest wins, and each backend wins a share
 * w / sum(w) of the keys; a change of one weight moves only keys to or
 * from that backend. With equal weights the order is that of u itself.
 * Weight 0 scores 0: such a backend wins only when no other is usable.
 */
static double rdv_weighted(uint64_t score, unsigned w)
{
    if (w == 0)
        return 0.0;
    double u = ((double)(score >> 11) + 0.5) * 0x1p-53;   /* in (0, 1) */
    return (double)w / -log(u);
}

static struct sw_backend *rendezvous(const struct sw_pool *pool, const struct sw_request *r,
                                     uint64_t h, int need_up)
{
    struct sw_backend *best = NULL;
    double best_score = 0;
    for (size_t i = 0; i < pool->n; i++) {
        struct sw_backend *b = pool->b[i];
        if (!usable(b, r, need_up))
            continue;
        double s = rdv_weighted(sw_rdv_score(h, b->id), weight(b));
        /* Ties (weight 0, or vanishingly rare) go to the smaller identity,
         * so the result does not depend on the order of the config. */
        if (best == NULL || s > best_score || (s == best_score && b->id < best->id)) {
            best = b;
            best_score = s;
        }
    }
    return best;
}

static struct sw_backend *least_conn(const struct sw_pool *pool, const struct sw_request *r,
                                     _Atomic uint64_t *rr)
{
    /* The fewest connections per unit of weight: n/w < best_n/best_w.
     * Weight 0 takes part only when every usable backend has it. */
    struct sw_backend *best = NULL;
    uint64_t best_n = 0, best_w = 0;
    size_t start = pool->n ? (size_t)(atomic_fetch_add(rr, 1) % pool->n) : 0;
    for (size_t k = 0; k < pool->n; k++) {
        struct sw_backend *b = pool->b[(start + k) % pool->n];
        if (!usable(b, r, 1))
            continue;
        uint64_t n = sw_backend_load(b);
        uint64_t w = weight(b);
        int better;
        if (best == NULL)
            better = 1;
        else if (w == 0 || best_w == 0)
            better = w > best_w || (w == best_w && n < best_n);
        else
            better = n * best_w < best_n * w;
        if (better) {
            best = b;
            best_n = n;
            best_w = w;
        }
    }
    return best;
}

static struct sw_backend *round_robin(const struct sw_pool *pool, const struct sw_request *r,
                                      _Atomic uint64_t *rr)
{
    /* Slot t of sum(w) over the usable backends, each holding w slots, so
     * that a down one does not give its turns to its neighbour. Turns
     * visit the slots with a prime stride (a permutation, since no sum of
     * weights reaches the prime), which interleaves heavy backends instead
     * of giving each its w turns in a row. Weight 0 gets turns only when
     * every usable backend has it. */
    uint64_t m = 0;
    size_t usable_n = 0;
    for (size_t i = 0; i < pool->n; i++) {
        if (usable(pool->b[i], r, 1)) {
            m += weight(pool->b[i]);
            usable_n++;
        }
    }
    if (usable_n == 0)
        return NULL;
    int equal = m == 0;   /* all drained: take turns anyway */
    if (equal)
        m = usable_n;
    uint64_t t = (atomic_fetch_add(rr, 1) % m) * 2654435761u % m;
    for (size_t i = 0; i < pool->n; i++) {
        if (!usable(pool->b[i], r, 1))
            continue;
        uint64_t w = equal ? 1 : weight(pool->b[i]);
        if (t < w)
            return pool->b[i];
        t -= w;
    }
    return NULL;
}

static struct sw_backend *run_step(const struct sw_policy *p, enum sw_step s,
                                   const struct sw_pool *pool, struct sw_sticky *st,
                                   _Atomic uint64_t *rr, int64_t now_ms, const struct sw_request *r)
{
    const struct sw_hello_keys *k = r->keys;
    switch (s) {
    case SW_STEP_PSK:
        for (unsigned i = 0; k && i < k->npsk; i++) {
            struct sw_backend *b = by_label(pool, r, k->psk_label[i]);
            if (b)
                return b;
        }
        return NULL;
    case SW_STEP_TICKET:
        return k ? by_label(pool, r, k->ticket_label) : NULL;
    case SW_STEP_SESSION_ID:
        return k ? by_label(pool, r, k->sid_label) : NULL;
    case SW_STEP_STICKY: {
        if (st == NULL)
            return NULL;
        uint64_t id = sw_sticky_get(st, r->client, r->client_len, now_ms);
        struct sw_backend *b = id ? sw_pool_by_id(pool, id) : NULL;
        return b && usable(b, r, 1) ? b : NULL;
    }
    case SW_STEP_HASH:
        return rendezvous(pool, r, sw_siphash(&p->key, r->client, r->client_len), 1);
    case SW_STEP_LEASTCONN:
        return least_conn(pool, r, rr);
    case SW_STEP_ROUNDROBIN:
        return round_robin(pool, r, rr);
    case SW_STEP_URL:
        return r->url ? rendezvous(pool, r, sw_siphash(&p->key, r->url, r->url_len), 1) : NULL;
    default:
        return NULL;
    }
}

int sw_policy_decide(const struct sw_policy *p, const struct sw_pool *pool, struct sw_sticky *st,
                     _Atomic uint64_t *rr, int64_t now_ms, const struct sw_request *r,
                     struct sw_decision *d)
{
    struct sw_backend *b = NULL;
    enum sw_step step = SW_STEP_FALLBACK;

    for (unsigned i = 0; i < p->nsteps && b == NULL; i++) {
        b = run_step(p, p->steps[i], pool, st, rr, now_ms, r);
        step = p->steps[i];
    }
    if (b == NULL) {
        uint64_t h = sw_siphash(&p->key, r->client, r->client_len);
        step = SW_STEP_FALLBACK;
        b = rendezvous(pool, r, h, 1);
        if (b == NULL)
            b = rendezvous(pool, r, h, 0);
    }
    if (b == NULL)
        return -1;
    if (p->has_sticky && st)
        sw_sticky_put(st, r->client, r->client_len, b->id, now_ms);
    d->b = b;
    d->step = step;
    return 0;
}
