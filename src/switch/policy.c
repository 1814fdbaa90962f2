/*
 * policy -- see policy.h.
 */
#include "switch/policy.h"

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

static struct sw_backend *rendezvous(const struct sw_pool *pool, const struct sw_request *r,
                                     uint64_t h, int need_up)
{
    struct sw_backend *best = NULL;
    uint64_t best_score = 0;
    for (size_t i = 0; i < pool->n; i++) {
        struct sw_backend *b = pool->b[i];
        if (!usable(b, r, need_up))
            continue;
        uint64_t s = sw_rdv_score(h, b->id);
        /* Ties (vanishingly rare) go to the smaller identity, so the
         * result does not depend on the order of the config. */
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
    struct sw_backend *best = NULL;
    unsigned best_n = 0;
    size_t start = pool->n ? (size_t)(atomic_fetch_add(rr, 1) % pool->n) : 0;
    for (size_t k = 0; k < pool->n; k++) {
        struct sw_backend *b = pool->b[(start + k) % pool->n];
        if (!usable(b, r, 1))
            continue;
        unsigned n = atomic_load_explicit(&b->active, memory_order_relaxed);
        if (best == NULL || n < best_n) {
            best = b;
            best_n = n;
        }
    }
    return best;
}

static struct sw_backend *round_robin(const struct sw_pool *pool, const struct sw_request *r,
                                      _Atomic uint64_t *rr)
{
    /* The t-th usable backend, so that a down one does not give its turn
     * to its neighbour twice in a row. */
    size_t m = 0;
    for (size_t i = 0; i < pool->n; i++)
        m += usable(pool->b[i], r, 1);
    if (m == 0)
        return NULL;
    size_t t = (size_t)(atomic_fetch_add(rr, 1) % m);
    for (size_t i = 0; i < pool->n; i++)
        if (usable(pool->b[i], r, 1) && t-- == 0)
            return pool->b[i];
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
