/*
 * test_peer_rib -- the content topology database (src/peer/rib.c) against
 * docs/peering-protocol.md sections 5.3 and 9: real UPDATEs, written with
 * the msg.h writer and decoded by peer_decode_update, drive the RIB; the
 * tests check the Loc-RIB change callbacks, every step of best-route
 * selection, loop and content-type drops, import policy, route limits,
 * session loss, own routes, the export rules, longest-prefix lookup,
 * attribute interning, and memory per route at a million routes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "peer/rib.h"

#define ALL_CT (PEER_CT_STATIC | PEER_CT_STREAMING)

/* ---- helpers ------------------------------------------------------------- */

static struct peer_route v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint8_t plen)
{
    struct peer_route r = {.kind = PEER_R_AREA4, .plen = plen, .addr = {a, b, c, d}};
    return r;
}

static struct peer_route v6(uint16_t a, uint16_t b, uint16_t c, uint16_t d, uint8_t plen)
{
    struct peer_route r = {.kind = PEER_R_AREA6, .plen = plen};
    uint16_t w[4] = {a, b, c, d};
    for (int i = 0; i < 4; i++) {
        r.addr[2 * i] = (uint8_t)(w[i] >> 8);
        r.addr[2 * i + 1] = (uint8_t)w[i];
    }
    return r;
}

static struct peer_route pub(const char *host)
{
    struct peer_route r = {.kind = PEER_R_PUBLISHER, .len = (uint16_t)strlen(host), .text = host};
    return r;
}

static struct peer_route uri(const char *u)
{
    struct peer_route r = {.kind = PEER_R_URI, .len = (uint16_t)strlen(u), .text = u};
    return r;
}

/* The attributes of one test UPDATE. */
struct spec {
    const char *path[PEER_MAX_PATH + 1]; /* NULL-terminated, the advertiser first */
    const char *target;                  /* the HTTP hand-off target; "ho.test" when NULL */
    int has_metrics;
    uint32_t load, capacity, cost;
    uint8_t ct;                          /* CONTENT-TYPES; static when 0 */
    uint8_t distribution;
    const char *authoritative;
    const uint8_t *extra;                /* attributes to carry on */
    size_t extra_len;
};

/* Writes an UPDATE, decodes it as a receiver would, and feeds it to the RIB. */
static int update(struct rib *r, int peer, uint8_t session_ct, const struct spec *s, const struct peer_route *ann,
                  size_t nann, const struct peer_route *wd, size_t nwd)
{
    struct buf b;
    buf_init(&b);
    struct peer_update_writer w;
    peer_update_begin(&w, &b, PEER_MAX_MSG_LIMIT);
    for (size_t i = 0; i < nwd; i++)
        assert_int_equal(peer_update_withdraw(&w, &wd[i]), 0);
    if (nann) {
        unsigned np = 0;
        while (s->path[np])
            np++;
        const char *t = s->target ? s->target : "ho.test";
        struct peer_handoff_target ho = {PEER_HO_HTTP, (uint16_t)strlen(t), t};
        struct peer_attrs m = {.has_metrics = s->has_metrics, .load = s->load, .capacity = s->capacity,
                               .cost = s->cost, .content_types = s->ct ? s->ct : PEER_CT_STATIC,
                               .distribution = s->distribution};
        if (s->authoritative) {
            m.authoritative = (const uint8_t *)s->authoritative;
            m.authoritative_len = (uint8_t)strlen(s->authoritative);
        }
        assert_int_equal(peer_update_attrs(&w, s->path, np, &ho, 1, &m, s->extra, s->extra_len), 0);
        for (size_t i = 0; i < nann; i++)
            assert_int_equal(peer_update_announce(&w, &ann[i]), 0);
    }
    size_t n = peer_update_end(&w);
    struct peer_update u;
    struct peer_err err;
    assert_int_equal(peer_decode_update((const uint8_t *)b.data, n, &u, &err), 0);
    int rc = rib_update(r, peer, &u, session_ct);
    buf_fini(&b);
    return rc;
}

static int announce(struct rib *r, int peer, const struct spec *s, const struct peer_route *ann, size_t n)
{
    return update(r, peer, ALL_CT, s, ann, n, NULL, 0);
}

static int announce1(struct rib *r, int peer, const char *advertiser, struct peer_route rt)
{
    struct spec s = {.path = {advertiser}};
    return announce(r, peer, &s, &rt, 1);
}

static int withdraw(struct rib *r, int peer, const struct peer_route *wd, size_t n)
{
    return update(r, peer, ALL_CT, NULL, NULL, 0, wd, n);
}

/* What the change callback saw. Attribute pointers are for identity only: they may be
 * freed once the callback returns. */
struct log {
    int n, added, removed;
    int old_peer, now_peer;      /* of the last change; -1 for none */
    uint32_t old_cost, now_cost;
    const struct rib_attrs *old_attrs, *now_attrs;
};

static void on_change(void *arg, const struct rib_dest *d, const struct rib_route *old, const struct rib_route *now)
{
    struct log *l = arg;
    assert_non_null(d);
    assert_true(old != NULL || now != NULL);
    assert_ptr_equal(rib_best(d, NULL), now);
    if (old) {
        assert_null(old->next);
        assert_true(old->attrs->refs > 0);  /* still alive during the call (ASan checks the read) */
        assert_false(now && old->peer == now->peer && old->attrs == now->attrs);
    }
    l->n++;
    l->added += old == NULL;
    l->removed += now == NULL;
    l->old_peer = old ? old->peer : -1;
    l->now_peer = now ? now->peer : -1;
    l->old_cost = old ? old->attrs->cost : 0;
    l->now_cost = now ? now->attrs->cost : 0;
    l->old_attrs = old ? old->attrs : NULL;
    l->now_attrs = now ? now->attrs : NULL;
}

static const struct rib_route *best_of(const struct rib *r, struct peer_route p, enum rib_reason *why)
{
    const struct rib_dest *d = rib_find(r, &p);
    return d ? rib_best(d, why) : NULL;
}

static struct rib_peer_stats stats(const struct rib *r, int peer)
{
    struct rib_peer_stats st;
    rib_peer_stats(r, peer, &st);
    return st;
}

/* ---- tests ----------------------------------------------------------------- */

static void test_route_kinds(void **state)
{
    (void)state;
    struct log l = {0};
    struct rib *r = rib_create("alpha", on_change, &l);
    struct rib_policy pol = {.local_pref = 100};
    int beta = rib_peer_add(r, "beta", &pol);
    assert_int_equal(beta, 1);
    assert_string_equal(rib_peer_id(r, beta), "beta");
    struct peer_route rs[4] = {v4(10, 1, 0, 0, 16), v6(0x2001, 0xdb8, 0, 0, 32), pub("example.com"),
                               uri("https://example.com/videos/")};
    struct spec s = {.path = {"beta", "delta"}, .target = "https://redirect.beta.test/"};
    assert_int_equal(announce(r, beta, &s, rs, 4), 0);
    assert_int_equal(l.n, 4);
    assert_int_equal(l.added, 4);
    assert_int_equal(l.now_peer, beta);
    assert_int_equal(rib_dest_count(r), 4);
    assert_int_equal(rib_attrs_count(r), 1);
    for (int i = 0; i < 4; i++) {
        const struct rib_dest *d = rib_find(r, &rs[i]);
        assert_non_null(d);
        enum rib_reason why = RIB_WHY_COST;
        const struct rib_route *b = rib_best(d, &why);
        assert_int_equal(why, RIB_WHY_ONLY);
        assert_int_equal(b->peer, beta);
        assert_null(b->next);
        const struct rib_attrs *a = b->attrs;
        assert_int_equal(a->npath, 2);
        assert_string_equal(a->path[0], "beta");
        assert_string_equal(a->path[1], "delta");
        assert_int_equal(a->nhandoff, 1);
        assert_int_equal(a->handoff[0].method, PEER_HO_HTTP);
        assert_string_equal(a->handoff[0].target, "https://redirect.beta.test/");
        assert_int_equal(a->local_pref, 100);
        assert_int_equal(a->content_types, PEER_CT_STATIC);
        assert_int_equal(a->has_metrics, 0);
        assert_int_equal(a->cost, UINT32_MAX);
        assert_int_equal(a->load, UINT32_MAX);
        assert_null(a->authoritative);
        assert_null(a->carry);
        /* back to a peer_route */
        struct peer_route back;
        rib_dest_route(d, &back);
        assert_int_equal(back.kind, rs[i].kind);
        if (i < 2) {
            assert_int_equal(back.plen, rs[i].plen);
            assert_memory_equal(back.addr, rs[i].addr, 16);
        } else {
            assert_int_equal(back.len, rs[i].len);
            assert_memory_equal(back.text, rs[i].text, rs[i].len);
            assert_int_equal(back.text[back.len], 0);
        }
    }
    /* host bits past the prefix length are ignored on lookup */
    assert_ptr_equal(rib_find(r, &(struct peer_route){.kind = PEER_R_AREA4, .plen = 16, .addr = {10, 1, 2, 3}}),
                     rib_find(r, &rs[0]));
    assert_null(rib_find(r, &(struct peer_route){.kind = PEER_R_AREA4, .plen = 33}));
    struct rib_peer_stats st = stats(r, beta);
    assert_int_equal(st.announced, 4);
    assert_int_equal(st.routes, 4);
    assert_int_equal(st.best, 4);
    /* withdraw them all, plus one never announced (ignored) */
    struct peer_route wd[5] = {rs[0], rs[1], rs[2], rs[3], v4(192, 0, 2, 0, 24)};
    assert_int_equal(withdraw(r, beta, wd, 5), 0);
    assert_int_equal(l.n, 8);
    assert_int_equal(l.removed, 4);
    assert_int_equal(l.old_peer, beta);
    assert_int_equal(l.now_peer, -1);
    assert_int_equal(rib_dest_count(r), 0);
    assert_int_equal(rib_attrs_count(r), 0);
    st = stats(r, beta);
    assert_int_equal(st.withdrawn, 5);
    assert_int_equal(st.routes, 0);
    assert_int_equal(st.best, 0);
    rib_destroy(r);
}

/* Peers beta (1) and gamma (2) announce 10.0.0.0/8 with `a` and `b` under LOCAL-PREFs lpa
 * and lpb, in both orders; peer `want` must win for reason `why`. */
static void duel(const struct spec *a, uint32_t lpa, const struct spec *b, uint32_t lpb, int want,
                 enum rib_reason why)
{
    for (int order = 0; order < 2; order++) {
        struct log l = {0};
        struct rib *r = rib_create("alpha", on_change, &l);
        struct rib_policy pa = {.local_pref = lpa}, pb = {.local_pref = lpb};
        int beta = rib_peer_add(r, "beta", &pa), gamma = rib_peer_add(r, "gamma", &pb);
        struct peer_route p = v4(10, 0, 0, 0, 8);
        if (order == 0) {
            assert_int_equal(announce(r, beta, a, &p, 1), 0);
            assert_int_equal(announce(r, gamma, b, &p, 1), 0);
        } else {
            assert_int_equal(announce(r, gamma, b, &p, 1), 0);
            assert_int_equal(announce(r, beta, a, &p, 1), 0);
        }
        enum rib_reason w;
        const struct rib_route *best = best_of(r, p, &w);
        assert_int_equal(best->peer, want);
        assert_int_equal(w, why);
        assert_int_equal(best->next->peer, want == beta ? gamma : beta);
        assert_null(best->next->next);
        assert_int_equal(stats(r, want).best, 1);
        assert_int_equal(stats(r, want == beta ? gamma : beta).best, 0);
        assert_int_equal(l.now_peer, want);
        rib_destroy(r);
    }
}

static void test_best_route_steps(void **state)
{
    (void)state;
    /* 1. LOCAL-PREF beats a shorter PATH */
    struct spec a = {.path = {"beta", "x", "y"}}, b = {.path = {"gamma"}};
    duel(&a, 200, &b, 100, 1, RIB_WHY_LOCAL_PREF);
    duel(&a, 100, &b, 300, 2, RIB_WHY_LOCAL_PREF);
    /* 2. the shorter PATH beats a lower cost */
    struct spec c = {.path = {"beta", "x"}, .has_metrics = 1, .cost = 1};
    struct spec d = {.path = {"gamma"}, .has_metrics = 1, .cost = 100};
    duel(&c, 100, &d, 100, 2, RIB_WHY_PATH);
    /* 3. the lower cost beats a lower load */
    struct spec e = {.path = {"beta"}, .has_metrics = 1, .cost = 10, .load = 1};
    struct spec f = {.path = {"gamma"}, .has_metrics = 1, .cost = 5, .load = 900};
    duel(&e, 100, &f, 100, 2, RIB_WHY_COST);
    /* an absent cost is the worst cost */
    struct spec g = {.path = {"beta"}};
    struct spec h = {.path = {"gamma"}, .has_metrics = 1, .cost = 4000000000u, .load = 1000};
    duel(&g, 100, &h, 100, 2, RIB_WHY_COST);
    /* 4. equal cost: the lower load */
    struct spec i = {.path = {"beta"}, .has_metrics = 1, .cost = 5, .load = 300};
    struct spec j = {.path = {"gamma"}, .has_metrics = 1, .cost = 5, .load = 200};
    duel(&i, 100, &j, 100, 2, RIB_WHY_LOAD);
    /* 5. all equal: the lowest advertiser id, whatever the peer index */
    struct spec k = {.path = {"beta"}}, m = {.path = {"gamma"}};
    duel(&k, 100, &m, 100, 1, RIB_WHY_ID);
    struct spec n = {.path = {"zeta"}}, o = {.path = {"eta"}};
    duel(&n, 100, &o, 100, 2, RIB_WHY_ID);
    struct spec p = {.path = {"ab"}}, q = {.path = {"a"}};   /* a prefix sorts first */
    duel(&p, 100, &q, 100, 2, RIB_WHY_ID);
    /* 6. the same advertiser on two sessions: the lower peer index */
    struct spec s1 = {.path = {"same"}}, s2 = {.path = {"same"}};
    duel(&s1, 100, &s2, 100, 1, RIB_WHY_ID);
}

static void test_why_looks_at_the_runner_up(void **state)
{
    (void)state;
    struct rib *r = rib_create("alpha", NULL, NULL);
    struct rib_policy lp100 = {.local_pref = 100}, lp50 = {.local_pref = 50};
    int beta = rib_peer_add(r, "beta", &lp100), gamma = rib_peer_add(r, "gamma", &lp100);
    int delta = rib_peer_add(r, "delta", &lp50);
    struct peer_route p = v4(10, 0, 0, 0, 8);
    struct spec sd = {.path = {"delta"}, .has_metrics = 1, .cost = 0};
    struct spec sg = {.path = {"gamma"}, .has_metrics = 1, .cost = 2};
    struct spec sb = {.path = {"beta"}, .has_metrics = 1, .cost = 1};
    assert_int_equal(announce(r, delta, &sd, &p, 1), 0);
    assert_int_equal(announce(r, gamma, &sg, &p, 1), 0);
    assert_int_equal(announce(r, beta, &sb, &p, 1), 0);
    enum rib_reason why;
    const struct rib_route *best = best_of(r, p, &why);
    assert_int_equal(best->peer, beta);
    assert_int_equal(why, RIB_WHY_COST);         /* against gamma, not delta */
    assert_int_equal(best->next->peer, gamma);
    assert_int_equal(best->next->next->peer, delta);
    assert_string_equal(rib_reason_name(why), "cost");
    rib_destroy(r);
}

static void test_change_callbacks(void **state)
{
    (void)state;
    struct log l = {0};
    struct rib *r = rib_create("alpha", on_change, &l);
    int beta = rib_peer_add(r, "beta", NULL), gamma = rib_peer_add(r, "gamma", NULL);
    struct peer_route p = v4(198, 51, 100, 0, 24);
    struct spec b10 = {.path = {"beta"}, .has_metrics = 1, .cost = 10};
    assert_int_equal(announce(r, beta, &b10, &p, 1), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.old_peer, -1);
    assert_int_equal(l.now_peer, beta);
    assert_int_equal(l.now_cost, 10);
    /* the same attributes again: nothing changes */
    assert_int_equal(announce(r, beta, &b10, &p, 1), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(rib_attrs_count(r), 1);
    /* a worse route from gamma: the best stays */
    struct spec g20 = {.path = {"gamma"}, .has_metrics = 1, .cost = 20};
    assert_int_equal(announce(r, gamma, &g20, &p, 1), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(stats(r, gamma).routes, 1);
    assert_int_equal(stats(r, gamma).best, 0);
    /* gamma improves and wins */
    struct spec g5 = {.path = {"gamma"}, .has_metrics = 1, .cost = 5};
    assert_int_equal(announce(r, gamma, &g5, &p, 1), 0);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.old_peer, beta);
    assert_int_equal(l.now_peer, gamma);
    assert_int_equal(stats(r, beta).best, 0);
    assert_int_equal(stats(r, gamma).best, 1);
    /* the best peer changes its attributes: same peer, new set; the old set is readable in the call */
    struct spec g6 = {.path = {"gamma"}, .has_metrics = 1, .cost = 6};
    assert_int_equal(announce(r, gamma, &g6, &p, 1), 0);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.old_peer, gamma);
    assert_int_equal(l.now_peer, gamma);
    assert_int_equal(l.old_cost, 5);
    assert_int_equal(l.now_cost, 6);
    assert_ptr_not_equal(l.old_attrs, l.now_attrs);
    assert_int_equal(rib_attrs_count(r), 2);     /* b10 and g6; g5 was freed after the call */
    /* a change behind the best: silent */
    struct spec b8 = {.path = {"beta"}, .has_metrics = 1, .cost = 8};
    assert_int_equal(announce(r, beta, &b8, &p, 1), 0);
    assert_int_equal(l.n, 3);
    /* the best withdrawn: the runner-up takes over */
    assert_int_equal(withdraw(r, gamma, &p, 1), 0);
    assert_int_equal(l.n, 4);
    assert_int_equal(l.old_peer, gamma);
    assert_int_equal(l.old_cost, 6);
    assert_int_equal(l.now_peer, beta);
    assert_int_equal(l.now_cost, 8);
    /* a withdrawal of a peer with no route there: silent */
    assert_int_equal(withdraw(r, gamma, &p, 1), 0);
    assert_int_equal(l.n, 4);
    /* the last one: removed, and the destination freed */
    assert_int_equal(withdraw(r, beta, &p, 1), 0);
    assert_int_equal(l.n, 5);
    assert_int_equal(l.removed, 1);
    assert_int_equal(l.now_peer, -1);
    assert_null(rib_find(r, &p));
    assert_int_equal(stats(r, beta).best, 0);
    assert_int_equal(rib_attrs_count(r), 0);
    rib_destroy(r);
}

static void test_loop_drop(void **state)
{
    (void)state;
    struct log l = {0};
    struct rib *r = rib_create("alpha", on_change, &l);
    int beta = rib_peer_add(r, "beta", NULL);
    struct peer_route p = v4(10, 0, 0, 0, 8), q = pub("video.example");
    struct spec loop = {.path = {"beta", "alpha", "gamma"}};
    struct peer_route both[2] = {p, q};
    assert_int_equal(announce(r, beta, &loop, both, 2), 0);
    assert_int_equal(stats(r, beta).looped, 2);
    assert_int_equal(stats(r, beta).announced, 2);
    assert_int_equal(stats(r, beta).routes, 0);
    assert_int_equal(rib_dest_count(r), 0);
    assert_int_equal(rib_attrs_count(r), 0);
    assert_int_equal(l.n, 0);
    /* ids are compared whole: neither a longer nor a shorter id is ours */
    struct spec near = {.path = {"beta", "alphabet", "alph"}};
    assert_int_equal(announce(r, beta, &near, &p, 1), 0);
    assert_int_equal(stats(r, beta).looped, 2);
    assert_int_equal(l.n, 1);
    /* re-announced with our id on the PATH: acts as a withdrawal */
    struct spec loop2 = {.path = {"beta", "alpha"}};
    assert_int_equal(announce(r, beta, &loop2, &p, 1), 0);
    assert_int_equal(stats(r, beta).looped, 3);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.removed, 1);
    assert_null(rib_find(r, &p));
    assert_int_equal(stats(r, beta).routes, 0);
    rib_destroy(r);
}

static void test_import_rules(void **state)
{
    (void)state;
    struct rib *r = rib_create("alpha", NULL, NULL);
    struct rib_rule rules[] = {
        {.accept = 0, .kind = PEER_R_AREA4, .plen = 16, .le = 32, .addr = {10, 1}},
        {.accept = 1, .kind = PEER_R_AREA4, .plen = 8, .le = 24, .addr = {10}},
        {.accept = 1, .kind = PEER_R_AREA6, .plen = 32, .le = 48, .addr = {0x20, 0x01, 0x0d, 0xb8}},
        {.accept = 1, .kind = PEER_R_PUBLISHER, .text = "*.example.com"},
        {.accept = 1, .kind = PEER_R_PUBLISHER, .text = "cdn.test"},
        {.accept = 1, .kind = PEER_R_URI, .text = "https://media.example/"},
        {.accept = 0, .kind = 0},
    };
    struct rib_policy pol = {.local_pref = 100, .rules = rules, .nrules = 7};
    int beta = rib_peer_add(r, "beta", &pol);
    struct {
        struct peer_route rt;
        int ok;
    } cases[] = {
        {v4(10, 0, 0, 0, 8), 1},          /* the rule's own length */
        {v4(10, 2, 0, 0, 16), 1},
        {v4(10, 2, 3, 0, 24), 1},         /* le 24 */
        {v4(10, 2, 3, 128, 25), 0},       /* longer than le */
        {v4(10, 1, 0, 0, 16), 0},         /* the first match rejects */
        {v4(10, 1, 5, 0, 24), 0},
        {v4(11, 0, 0, 0, 8), 0},
        {v4(0, 0, 0, 0, 0), 0},           /* shorter than the rule */
        {v6(0x2001, 0xdb8, 0x1, 0, 48), 1},
        {v6(0x2001, 0xdb8, 0, 0, 32), 1},
        {v6(0x2001, 0xdb8, 0x1, 0x2, 64), 0},
        {v6(0x2001, 0xdb9, 0, 0, 32), 0},
        {v6(0x0a00, 0, 0, 0, 8), 0},      /* a v4 rule does not match a v6 route */
        {pub("www.example.com"), 1},
        {pub("a.b.example.com"), 1},
        {pub("example.com"), 0},          /* *.suffix needs a label before it */
        {pub("badexample.com"), 0},
        {pub("cdn.test"), 1},
        {pub("x.cdn.test"), 0},           /* an exact host matches only itself */
        {uri("https://media.example/"), 1},
        {uri("https://media.example/v/1"), 1},
        {uri("https://media.exampl/"), 0},
        {uri("http://media.example/"), 0},
    };
    size_t n = sizeof(cases) / sizeof(cases[0]), ok = 0;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(announce1(r, beta, "beta", cases[i].rt), 0);
    for (size_t i = 0; i < n; i++) {
        if (cases[i].ok)
            ok++;
        if (cases[i].ok != (rib_find(r, &cases[i].rt) != NULL))
            fail_msg("case %zu: expected %s", i, cases[i].ok ? "accepted" : "rejected");
    }
    struct rib_peer_stats st = stats(r, beta);
    assert_int_equal(st.routes, ok);
    assert_int_equal(st.rejected, n - ok);
    assert_int_equal(st.announced, n);
    rib_destroy(r);
}

static void test_rule_order_and_exact_length(void **state)
{
    (void)state;
    struct rib *r = rib_create("alpha", NULL, NULL);
    struct rib_rule rules[] = {
        {.accept = 1, .kind = PEER_R_AREA4, .plen = 8, .le = 32, .addr = {10}},
        {.accept = 0, .kind = PEER_R_AREA4, .plen = 16, .le = 32, .addr = {10, 1}}, /* shadowed */
        {.accept = 1, .kind = PEER_R_AREA4, .plen = 24, .addr = {192, 0, 2}},       /* le unset: exactly /24 */
        {.accept = 0, .kind = 0},
    };
    struct rib_policy pol = {.local_pref = 100, .rules = rules, .nrules = 4};
    int beta = rib_peer_add(r, "beta", &pol);
    rules[0].accept = 0; /* the RIB holds its own copy */
    struct peer_route a = v4(10, 1, 0, 0, 16), b = v4(192, 0, 2, 0, 24), c = v4(192, 0, 2, 0, 25);
    struct peer_route all[3] = {a, b, c};
    struct spec s = {.path = {"beta"}};
    assert_int_equal(announce(r, beta, &s, all, 3), 0);
    assert_non_null(rib_find(r, &a));
    assert_non_null(rib_find(r, &b));
    assert_null(rib_find(r, &c));
    assert_int_equal(stats(r, beta).rejected, 1);
    rib_destroy(r);
}

static void test_content_types(void **state)
{
    (void)state;
    struct log l = {0};
    struct rib *r = rib_create("alpha", on_change, &l);
    int beta = rib_peer_add(r, "beta", NULL);
    struct rib_policy streaming = {.local_pref = 100, .content_types = PEER_CT_STREAMING};
    int gamma = rib_peer_add(r, "gamma", &streaming);
    struct peer_route p = pub("live.example"), q = pub("vod.example");
    /* the session agreed on static content only */
    struct spec st = {.path = {"beta"}, .ct = PEER_CT_STREAMING};
    assert_int_equal(update(r, beta, PEER_CT_STATIC, &st, &p, 1, NULL, 0), 0);
    assert_int_equal(stats(r, beta).refused_type, 1);
    assert_null(rib_find(r, &p));
    struct spec both = {.path = {"beta"}, .ct = PEER_CT_STATIC | PEER_CT_STREAMING};
    assert_int_equal(update(r, beta, PEER_CT_STATIC, &both, &p, 1, NULL, 0), 0);
    assert_non_null(rib_find(r, &p));
    assert_int_equal(best_of(r, p, NULL)->attrs->content_types, PEER_CT_STATIC | PEER_CT_STREAMING);
    /* re-announced with streaming only: refused, and the route held before goes */
    assert_int_equal(update(r, beta, PEER_CT_STATIC, &st, &p, 1, NULL, 0), 0);
    assert_int_equal(stats(r, beta).refused_type, 2);
    assert_null(rib_find(r, &p));
    assert_int_equal(l.removed, 1);
    /* the import policy's content types: gamma takes streaming only */
    struct spec gs = {.path = {"gamma"}};
    assert_int_equal(announce(r, gamma, &gs, &q, 1), 0);
    assert_int_equal(stats(r, gamma).rejected, 1);
    assert_null(rib_find(r, &q));
    struct spec gl = {.path = {"gamma"}, .ct = PEER_CT_STREAMING};
    assert_int_equal(announce(r, gamma, &gl, &q, 1), 0);
    assert_non_null(rib_find(r, &q));
    assert_int_equal(announce(r, gamma, &gs, &q, 1), 0);
    assert_int_equal(stats(r, gamma).rejected, 2);
    assert_null(rib_find(r, &q));
    assert_int_equal(rib_attrs_count(r), 0);
    rib_destroy(r);
}

static void test_max_routes(void **state)
{
    (void)state;
    struct rib *r = rib_create("alpha", NULL, NULL);
    struct rib_policy pol = {.local_pref = 100, .max_routes = 3};
    int beta = rib_peer_add(r, "beta", &pol);
    int gamma = rib_peer_add(r, "gamma", NULL);
    struct peer_route rs[6];
    for (int i = 0; i < 6; i++)
        rs[i] = v4(10, (uint8_t)i, 0, 0, 16);
    struct spec s = {.path = {"beta"}};
    assert_int_equal(announce(r, beta, &s, rs, 5), RIB_TOO_MANY);
    assert_int_equal(stats(r, beta).routes, 3);
    assert_int_equal(rib_dest_count(r), 3);
    assert_non_null(rib_find(r, &rs[2]));
    assert_null(rib_find(r, &rs[3]));
    /* replacing held routes is fine at the limit */
    struct spec s2 = {.path = {"beta"}, .has_metrics = 1, .cost = 7};
    assert_int_equal(announce(r, beta, &s2, rs, 3), 0);
    assert_int_equal(best_of(r, rs[0], NULL)->attrs->cost, 7);
    assert_int_equal(rib_attrs_count(r), 1);
    /* a withdrawal makes room in the same UPDATE */
    assert_int_equal(update(r, beta, ALL_CT, &s2, &rs[3], 1, &rs[0], 1), 0);
    assert_int_equal(stats(r, beta).routes, 3);
    assert_non_null(rib_find(r, &rs[3]));
    assert_int_equal(announce(r, beta, &s2, &rs[5], 1), RIB_TOO_MANY);
    assert_null(rib_find(r, &rs[5]));
    /* the limit is per peer: gamma (no limit) may add a route where beta has one, and beyond */
    struct spec g = {.path = {"gamma"}};
    assert_int_equal(announce(r, gamma, &g, rs, 6), 0);
    assert_int_equal(stats(r, gamma).routes, 6);
    assert_int_equal(stats(r, beta).routes, 3);
    rib_destroy(r);
}

static void test_peer_down(void **state)
{
    (void)state;
    struct log l = {0};
    struct rib *r = rib_create("alpha", on_change, &l);
    int beta = rib_peer_add(r, "beta", NULL), gamma = rib_peer_add(r, "gamma", NULL);
    struct peer_route p1 = v4(10, 1, 0, 0, 16), p2 = v4(10, 2, 0, 0, 16), p3 = pub("p3.example"),
                      p4 = uri("https://p4.example/");
    struct spec bs = {.path = {"beta"}}, gl = {.path = {"gamma", "x"}}, gs = {.path = {"gamma"}};
    struct peer_route b_routes[3] = {p1, p2, p4};
    assert_int_equal(announce(r, beta, &bs, b_routes, 3), 0);
    assert_int_equal(announce(r, gamma, &gl, &p1, 1), 0);   /* behind beta (longer PATH) */
    struct peer_route g_routes[2] = {p3, p4};
    assert_int_equal(announce(r, gamma, &gs, g_routes, 2), 0); /* p4: behind beta on the id */
    assert_int_equal(best_of(r, p4, NULL)->peer, beta);
    assert_int_equal(stats(r, beta).best, 3);
    assert_int_equal(stats(r, gamma).best, 1);
    memset(&l, 0, sizeof(l));
    rib_peer_down(r, beta);
    assert_int_equal(l.n, 3);        /* p1 and p4 go to gamma, p2 is gone */
    assert_int_equal(l.removed, 1);
    assert_int_equal(rib_dest_count(r), 3);
    assert_null(rib_find(r, &p2));
    assert_int_equal(best_of(r, p1, NULL)->peer, gamma);
    assert_int_equal(best_of(r, p4, NULL)->peer, gamma);
    assert_int_equal(stats(r, beta).routes, 0);
    assert_int_equal(stats(r, beta).best, 0);
    assert_int_equal(stats(r, gamma).best, 3);
    assert_int_equal(rib_attrs_count(r), 2);
    rib_peer_down(r, beta);          /* nothing left: silent */
    assert_int_equal(l.n, 3);
    rib_peer_down(r, gamma);
    assert_int_equal(l.n, 6);
    assert_int_equal(l.removed, 4);
    assert_int_equal(rib_dest_count(r), 0);
    assert_int_equal(rib_attrs_count(r), 0);
    rib_peer_down(r, 77);            /* not a peer */
    rib_destroy(r);
}

static void test_peer_policy_change(void **state)
{
    (void)state;
    struct log l = {0};
    struct rib *r = rib_create("alpha", on_change, &l);
    int beta = rib_peer_add(r, "beta", NULL), gamma = rib_peer_add(r, "gamma", NULL);
    struct peer_route p1 = v4(10, 1, 0, 0, 16), p2 = v4(10, 2, 0, 0, 16), both[2] = {p1, p2};
    struct spec bs = {.path = {"beta"}}, gs = {.path = {"gamma", "x"}};
    assert_int_equal(announce(r, beta, &bs, both, 2), 0);
    assert_int_equal(announce(r, gamma, &gs, both, 2), 0);
    assert_int_equal(best_of(r, p1, NULL)->peer, beta);
    assert_int_equal(rib_attrs_count(r), 2);
    /* gamma's LOCAL-PREF goes up: it wins both, on LOCAL-PREF */
    memset(&l, 0, sizeof(l));
    struct rib_policy lp200 = {.local_pref = 200};
    rib_peer_policy(r, gamma, &lp200);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.old_peer, beta);
    assert_int_equal(l.now_peer, gamma);
    enum rib_reason why;
    const struct rib_route *b = best_of(r, p2, &why);
    assert_int_equal(b->peer, gamma);
    assert_int_equal(why, RIB_WHY_LOCAL_PREF);
    assert_int_equal(b->attrs->local_pref, 200);
    assert_string_equal(b->attrs->path[1], "x");
    assert_ptr_equal(best_of(r, p1, NULL)->attrs, b->attrs); /* one new set for both */
    assert_int_equal(rib_attrs_count(r), 2);
    assert_int_equal(stats(r, gamma).best, 2);
    assert_int_equal(stats(r, beta).best, 0);
    /* beta's new rules reject p2: removed behind gamma, silently */
    struct rib_rule rej = {.accept = 0, .kind = PEER_R_AREA4, .plen = 16, .le = 16, .addr = {10, 2}};
    struct rib_policy brules = {.local_pref = 100, .rules = &rej, .nrules = 1};
    rib_peer_policy(r, beta, &brules);
    assert_int_equal(l.n, 2);
    assert_int_equal(stats(r, beta).routes, 1);
    assert_int_equal(stats(r, beta).rejected, 1);
    assert_null(best_of(r, p2, NULL)->next);
    /* re-sent, it is still rejected */
    assert_int_equal(announce(r, beta, &bs, &p2, 1), 0);
    assert_int_equal(stats(r, beta).rejected, 2);
    /* gamma down to 50: beta wins p1 back */
    struct rib_policy lp50 = {.local_pref = 50};
    rib_peer_policy(r, gamma, &lp50);
    assert_int_equal(l.n, 4);        /* p1: gamma to beta; p2: gamma to gamma with the new set */
    assert_int_equal(best_of(r, p1, NULL)->peer, beta);
    assert_int_equal(best_of(r, p2, NULL)->attrs->local_pref, 50);
    assert_int_equal(rib_attrs_count(r), 2);
    /* gamma now takes streaming only: its static routes go (p2 had no other) */
    struct rib_policy st = {.local_pref = 50, .content_types = PEER_CT_STREAMING};
    rib_peer_policy(r, gamma, &st);
    assert_int_equal(l.n, 5);
    assert_int_equal(l.removed, 1);
    assert_null(rib_find(r, &p2));
    assert_int_equal(stats(r, gamma).routes, 0);
    assert_int_equal(rib_attrs_count(r), 1);
    rib_peer_policy(r, RIB_LOCAL, &st);  /* ignored */
    rib_peer_policy(r, 200, &st);        /* not a peer: ignored */
    rib_destroy(r);
}

static void test_own_routes(void **state)
{
    (void)state;
    struct log l = {0};
    struct rib *r = rib_create("alpha", on_change, &l);
    struct rib_policy top = {.local_pref = UINT32_MAX};
    int beta = rib_peer_add(r, "beta", &top);
    struct peer_route p = v4(203, 0, 113, 0, 24);
    struct spec bs = {.path = {"beta"}, .has_metrics = 1, .cost = 0, .load = 0};
    assert_int_equal(announce(r, beta, &bs, &p, 1), 0);
    char target[] = "cdn.alpha.testXXXX"; /* only the first 14 bytes are the target */
    struct rib_origin o = {.nhandoff = 1, .handoff = {{PEER_HO_CNAME, 14, target}},
                           .content_types = PEER_CT_STATIC, .distribution = 1};
    rib_originate(r, &p, &o);
    memset(target, 'Z', sizeof(target) - 1);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.old_peer, beta);
    assert_int_equal(l.now_peer, RIB_LOCAL);
    enum rib_reason why;
    const struct rib_route *b = best_of(r, p, &why);
    assert_int_equal(b->peer, RIB_LOCAL);
    assert_int_equal(why, RIB_WHY_OWN);  /* even against a LOCAL-PREF of UINT32_MAX */
    assert_int_equal(b->attrs->npath, 0);
    assert_int_equal(b->attrs->local_pref, UINT32_MAX);
    assert_int_equal(b->attrs->nhandoff, 1);
    assert_int_equal(b->attrs->handoff[0].method, PEER_HO_CNAME);
    assert_string_equal(b->attrs->handoff[0].target, "cdn.alpha.test");
    assert_int_equal(b->attrs->distribution, 1);
    assert_int_equal(b->attrs->cost, UINT32_MAX);
    assert_int_equal(b->next->peer, beta);
    assert_string_equal(rib_peer_id(r, RIB_LOCAL), "alpha");
    assert_int_equal(stats(r, RIB_LOCAL).routes, 1);
    assert_int_equal(stats(r, RIB_LOCAL).best, 1);
    /* the same again: silent; different hand-off: a change from us to us */
    const char *t2 = "cdn.alpha.test";
    o.handoff[0].target = t2;
    rib_originate(r, &p, &o);
    assert_int_equal(l.n, 2);
    o.handoff[0].method = PEER_HO_NS;
    o.has_metrics = 1;
    o.cost = 3;
    rib_originate(r, &p, &o);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.old_peer, RIB_LOCAL);
    assert_int_equal(l.now_peer, RIB_LOCAL);
    assert_int_equal(l.now_cost, 3);
    /* unoriginate: the learned route is back */
    rib_unoriginate(r, &p);
    assert_int_equal(l.n, 4);
    assert_int_equal(l.now_peer, beta);
    rib_unoriginate(r, &p);
    assert_int_equal(l.n, 4);
    /* an own content unit nobody else has; bad input is ignored */
    struct peer_route u = uri("https://alpha.example/");
    rib_originate(r, &u, &o);
    assert_int_equal(l.added, 2);
    assert_int_equal(rib_dest_count(r), 2);
    struct peer_route bad = {.kind = PEER_R_AREA6, .plen = 129};
    rib_originate(r, &bad, &o);
    struct rib_origin toomany = o;
    toomany.nhandoff = PEER_MAX_HANDOFFS + 1;
    rib_originate(r, &p, &toomany);
    struct rib_origin empty = o;
    empty.handoff[0].len = 0;
    rib_originate(r, &p, &empty);
    assert_int_equal(rib_dest_count(r), 2);
    assert_int_equal(best_of(r, p, NULL)->peer, beta);
    rib_destroy(r);
}

static void test_export(void **state)
{
    (void)state;
    struct rib *r = rib_create("alpha", NULL, NULL);
    struct rib_policy notransit = {.local_pref = 100}, transit = {.local_pref = 100, .transit = 1};
    int beta = rib_peer_add(r, "beta", &notransit), gamma = rib_peer_add(r, "gamma", &transit);
    int delta = rib_peer_add(r, "delta", &transit), eps = rib_peer_add(r, "epsilon", &notransit);
    struct peer_route p = v4(10, 0, 0, 0, 8), q = pub("q.example"), o = pub("own.example");
    assert_int_equal(announce1(r, beta, "beta", p), 0);
    struct spec gd = {.path = {"gamma", "delta"}};
    assert_int_equal(announce(r, gamma, &gd, &q, 1), 0);
    const struct rib_dest *dp = rib_find(r, &p), *dq = rib_find(r, &q);
    assert_null(rib_export(r, beta, dp));                    /* split horizon */
    assert_ptr_equal(rib_export(r, gamma, dp), dp->routes);  /* transit on */
    assert_ptr_equal(rib_export(r, delta, dp), dp->routes);
    assert_null(rib_export(r, eps, dp));                     /* learned, transit off */
    assert_null(rib_export(r, gamma, dq));                   /* split horizon */
    assert_null(rib_export(r, delta, dq));                   /* delta is on the PATH */
    assert_null(rib_export(r, beta, dq));
    /* own routes go to everyone, transit or not */
    struct rib_origin org = {.nhandoff = 1, .handoff = {{PEER_HO_HTTP, 17, "https://alpha.hop"}},
                             .content_types = PEER_CT_STATIC};
    rib_originate(r, &o, &org);
    const struct rib_dest *d_own = rib_find(r, &o);
    for (int peer = beta; peer <= eps; peer++)
        assert_ptr_equal(rib_export(r, peer, d_own), d_own->routes);
    /* nothing to export; not a peer */
    assert_null(rib_export(r, beta, NULL));
    assert_null(rib_export(r, 99, dp));
    assert_null(rib_export(r, -1, dp));
    rib_destroy(r);
}

static void test_longest_match(void **state)
{
    (void)state;
    struct rib *r = rib_create("alpha", NULL, NULL);
    int beta = rib_peer_add(r, "beta", NULL);
    struct peer_route rs[] = {v4(10, 0, 0, 0, 8), v4(10, 1, 0, 0, 16), v4(10, 1, 2, 0, 24),
                              v6(0x2001, 0xdb8, 0, 0, 32), v6(0x2001, 0xdb8, 1, 0, 48), pub("example.com")};
    struct spec s = {.path = {"beta"}};
    assert_int_equal(announce(r, beta, &s, rs, 6), 0);
    uint8_t a[16] = {10, 1, 2, 3};
    assert_ptr_equal(rib_match(r, 4, a), rib_find(r, &rs[2]));
    a[2] = 3;
    assert_ptr_equal(rib_match(r, 4, a), rib_find(r, &rs[1]));
    a[1] = 9;
    assert_ptr_equal(rib_match(r, 4, a), rib_find(r, &rs[0]));
    uint8_t other[16] = {11, 0, 0, 1};
    assert_null(rib_match(r, 4, other));
    uint8_t six[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 1, [15] = 5};
    assert_ptr_equal(rib_match(r, 6, six), rib_find(r, &rs[4]));
    six[5] = 2;
    assert_ptr_equal(rib_match(r, 6, six), rib_find(r, &rs[3]));
    six[3] = 0xb9;
    assert_null(rib_match(r, 6, six));
    /* a v4 default route matches every v4 address and no v6 one */
    assert_int_equal(announce1(r, beta, "beta", v4(0, 0, 0, 0, 0)), 0);
    const struct rib_dest *d = rib_match(r, 4, other);
    assert_non_null(d);
    assert_int_equal(d->plen, 0);
    assert_null(rib_match(r, 6, six));
    assert_null(rib_match(r, 5, a));
    rib_destroy(r);
}

static void test_interning(void **state)
{
    (void)state;
    struct rib *r = rib_create("alpha", NULL, NULL);
    struct rib_policy lp200 = {.local_pref = 200};
    int beta = rib_peer_add(r, "beta", NULL), gamma = rib_peer_add(r, "gamma", NULL);
    int delta = rib_peer_add(r, "delta", &lp200);
    size_t base = rib_memory(r);
    enum { N = 1000 };
    static struct peer_route rs[2 * N];
    for (int i = 0; i < 2 * N; i++)
        rs[i] = v4(100, (uint8_t)(i >> 8), (uint8_t)i, 0, 24);
    struct spec s = {.path = {"beta", "x"}, .has_metrics = 1, .cost = 1, .load = 2, .capacity = 3};
    assert_int_equal(announce(r, beta, &s, rs, N), 0);
    assert_int_equal(rib_attrs_count(r), 1);
    const struct rib_attrs *a = best_of(r, rs[0], NULL)->attrs;
    assert_int_equal(a->refs, N);
    assert_ptr_equal(best_of(r, rs[N - 1], NULL)->attrs, a);
    /* the same attributes in another UPDATE, and from another peer with the same LOCAL-PREF */
    assert_int_equal(announce(r, beta, &s, rs + N, N), 0);
    assert_int_equal(announce(r, gamma, &s, rs, 1), 0);
    assert_int_equal(rib_attrs_count(r), 1);
    assert_int_equal(a->refs, 2 * N + 1);
    /* every field tells sets apart: LOCAL-PREF, metrics, PATH, hand-off, content types,
     * distribution, authoritative, carried attributes */
    assert_int_equal(announce(r, delta, &s, rs, 1), 0);
    assert_int_equal(rib_attrs_count(r), 2);
    static const uint8_t extra[] = {PEER_AF_OPTIONAL | PEER_AF_TRANSITIVE, 99, 0, 2, 'h', 'i'};
    static const uint8_t extra2[] = {PEER_AF_OPTIONAL | PEER_AF_TRANSITIVE, 99, 0, 2, 'h', 'o'};
    struct spec v[] = {
        {.path = {"beta", "x"}, .has_metrics = 1, .cost = 1, .load = 2, .capacity = 4},
        {.path = {"beta", "y"}, .has_metrics = 1, .cost = 1, .load = 2, .capacity = 3},
        {.path = {"beta", "x"}, .has_metrics = 1, .cost = 1, .load = 2, .capacity = 3, .target = "other.test"},
        {.path = {"beta", "x"}, .has_metrics = 1, .cost = 1, .load = 2, .capacity = 3, .ct = ALL_CT},
        {.path = {"beta", "x"}, .has_metrics = 1, .cost = 1, .load = 2, .capacity = 3, .distribution = 2},
        {.path = {"beta", "x"}, .has_metrics = 1, .cost = 1, .load = 2, .capacity = 3, .authoritative = "pubcdn"},
        {.path = {"beta", "x"}, .has_metrics = 1, .cost = 1, .load = 2, .capacity = 3, .extra = extra,
         .extra_len = sizeof(extra)},
        {.path = {"beta", "x"}, .has_metrics = 1, .cost = 1, .load = 2, .capacity = 3, .extra = extra2,
         .extra_len = sizeof(extra2)},
        {.path = {"beta", "x"}},
    };
    size_t nv = sizeof(v) / sizeof(v[0]);
    for (size_t i = 0; i < nv; i++) {
        assert_int_equal(announce(r, beta, &v[i], &rs[i], 1), 0);
        assert_int_equal(rib_attrs_count(r), 3 + i);
    }
    const struct rib_attrs *x = best_of(r, rs[4], NULL)->attrs;
    assert_int_equal(x->distribution, 2);
    x = best_of(r, rs[5], NULL)->attrs;
    assert_string_equal(x->authoritative, "pubcdn");
    x = best_of(r, rs[6], NULL)->attrs;
    /* carried as received: the writer marked them PARTIAL */
    static const uint8_t want[] = {PEER_AF_OPTIONAL | PEER_AF_TRANSITIVE | PEER_AF_PARTIAL, 99, 0, 2, 'h', 'i'};
    assert_int_equal(x->carry_len, sizeof(want));
    assert_memory_equal(x->carry, want, sizeof(want));
    x = best_of(r, rs[8], NULL)->attrs;
    assert_int_equal(x->has_metrics, 0);
    assert_int_equal(x->capacity, UINT32_MAX);
    /* back to the common set: the variants are freed */
    assert_int_equal(announce(r, beta, &s, rs, nv), 0);
    assert_int_equal(rib_attrs_count(r), 2);
    /* all gone: no set and no byte left over */
    assert_int_equal(withdraw(r, beta, rs, 2 * N), 0);
    rib_peer_down(r, gamma);
    rib_peer_down(r, delta);
    assert_int_equal(rib_attrs_count(r), 0);
    assert_int_equal(rib_dest_count(r), 0);
    assert_int_equal(rib_memory(r), base);
    rib_destroy(r);
}

struct counter {
    size_t n, stop_at;
};

static int count_dest(void *arg, const struct rib_dest *d)
{
    struct counter *c = arg;
    assert_non_null(d->routes);
    return ++c->n == c->stop_at;
}

static void test_foreach_and_bad_input(void **state)
{
    (void)state;
    struct rib *r = rib_create("alpha", NULL, NULL);
    int beta = rib_peer_add(r, "beta", NULL);
    struct peer_route rs[10];
    for (int i = 0; i < 10; i++)
        rs[i] = v4(10, (uint8_t)i, 0, 0, 16);
    struct spec s = {.path = {"beta"}};
    assert_int_equal(announce(r, beta, &s, rs, 10), 0);
    struct counter c = {0, 0};
    rib_foreach(r, count_dest, &c);
    assert_int_equal(c.n, 10);
    c = (struct counter){0, 3};
    rib_foreach(r, count_dest, &c);
    assert_int_equal(c.n, 3);
    /* UPDATEs from ourselves or from no peer are refused */
    assert_true(update(r, RIB_LOCAL, ALL_CT, &s, rs, 1, NULL, 0) < 0);
    assert_true(update(r, 42, ALL_CT, &s, rs, 1, NULL, 0) < 0);
    assert_true(update(r, RIB_MAX_PEERS, ALL_CT, &s, rs, 1, NULL, 0) < 0);
    /* an empty UPDATE (End-of-RIB) changes nothing */
    assert_int_equal(update(r, beta, ALL_CT, NULL, NULL, 0, NULL, 0), 0);
    assert_int_equal(rib_dest_count(r), 10);
    struct rib_peer_stats st = stats(r, 42);
    assert_int_equal(st.routes + st.announced, 0);
    assert_null(rib_peer_id(r, 42));
    assert_null(rib_peer_id(r, -3));
    /* the peer table fills up */
    for (int i = 2; i < RIB_MAX_PEERS; i++)
        assert_int_equal(rib_peer_add(r, "many", NULL), i);
    assert_int_equal(rib_peer_add(r, "one-too-many", NULL), -1);
    assert_int_equal(rib_peer_add(r, NULL, NULL), -1);
    /* names */
    assert_string_equal(rib_reason_name(RIB_WHY_ONLY), "only");
    assert_string_equal(rib_reason_name(RIB_WHY_LOCAL_PREF), "local_pref");
    assert_string_equal(rib_reason_name(RIB_WHY_PATH), "path");
    assert_string_equal(rib_reason_name(RIB_WHY_LOAD), "load");
    assert_string_equal(rib_reason_name(RIB_WHY_ID), "id");
    assert_string_equal(rib_reason_name((enum rib_reason)77), "?");
    enum rib_reason why = RIB_WHY_COST;
    assert_null(rib_best(NULL, &why));
    assert_int_equal(why, RIB_WHY_ONLY);
    /* rib_policy_free frees what a config parser built */
    struct rib_policy pol = {.local_pref = 1, .nrules = 1};
    pol.rules = calloc(1, sizeof(*pol.rules));
    pol.rules[0].kind = PEER_R_URI;
    pol.rules[0].text = strdup("https://x/");
    rib_policy_free(&pol);
    assert_null(pol.rules);
    assert_int_equal(pol.nrules, 0);
    rib_destroy(r);
    rib_destroy(NULL);
}

static void test_destroy_with_routes(void **state)
{
    (void)state;
    struct log l = {0};
    struct rib *r = rib_create("alpha", on_change, &l);
    int beta = rib_peer_add(r, "beta", NULL);
    struct rib_rule rule = {.accept = 1, .kind = PEER_R_PUBLISHER, .text = "*.example"};
    struct rib_policy pol = {.local_pref = 100, .rules = &rule, .nrules = 1};
    int gamma = rib_peer_add(r, "gamma", &pol);
    struct peer_route rs[3] = {v4(10, 0, 0, 0, 8), pub("a.example"), uri("https://a.example/x")};
    static const uint8_t extra[] = {PEER_AF_OPTIONAL | PEER_AF_TRANSITIVE, 50, 0, 1, 7};
    struct spec s = {.path = {"beta"}, .authoritative = "beta", .extra = extra, .extra_len = sizeof(extra)};
    assert_int_equal(announce(r, beta, &s, rs, 3), 0);
    struct spec g = {.path = {"gamma", "beta"}};
    assert_int_equal(announce(r, gamma, &g, rs, 3), 0);
    struct rib_origin o = {.nhandoff = 2, .handoff = {{PEER_HO_CNAME, 3, "a.b"}, {PEER_HO_HTTP, 10, "http://a/b"}}};
    rib_originate(r, &rs[1], &o);
    int n = l.n;
    rib_destroy(r);                  /* ASan reports anything left behind */
    assert_int_equal(l.n, n);        /* and no callbacks on the way out */
}

static void test_million_routes(void **state)
{
    (void)state;
    enum { N = 1000000 };
    struct log l = {0};
    struct rib *r = rib_create("alpha", on_change, &l);
    int beta = rib_peer_add(r, "beta", NULL);
    struct peer_route *rs = malloc(N * sizeof(*rs));
    assert_non_null(rs);
    for (uint32_t i = 0; i < N; i++) {
        uint32_t a = 0x0a000000u + i;
        rs[i] = v4((uint8_t)(a >> 24), (uint8_t)(a >> 16), (uint8_t)(a >> 8), (uint8_t)a, 32);
    }
    struct spec s = {.path = {"beta", "delta"}, .has_metrics = 1, .cost = 10, .load = 100, .capacity = 1000};
    assert_int_equal(announce(r, beta, &s, rs, N), 0);
    assert_int_equal(rib_dest_count(r), N);
    assert_int_equal(stats(r, beta).routes, N);
    assert_int_equal(l.added, N);
    assert_int_equal(rib_attrs_count(r), 1);
    size_t per = rib_memory(r) / N;
    print_message("rib: %zu bytes per IPv4 area route at %d routes\n", per, N);
    assert_true(per < 100);
    uint8_t a[16] = {10, 1, 2, 3};
    const struct rib_dest *d = rib_match(r, 4, a);
    assert_non_null(d);
    assert_int_equal(d->plen, 32);
    rib_peer_down(r, beta);
    assert_int_equal(l.removed, N);
    assert_int_equal(rib_dest_count(r), 0);
    assert_int_equal(rib_attrs_count(r), 0);
    assert_true(rib_memory(r) < 16384);  /* the bucket array shrank back */
    free(rs);
    rib_destroy(r);
}

/* ---- growing while a walk is in progress --------------------------------- */

enum { WALK_MAX = 60000 };

struct walk_seen {
    unsigned char count[WALK_MAX];
    size_t visits;
};

static int count_visit(void *arg, const struct rib_dest *d)
{
    struct walk_seen *w = arg;
    assert_int_equal(d->kind, PEER_R_AREA4);
    uint32_t a = (uint32_t)d->key[0] << 24 | (uint32_t)d->key[1] << 16 | (uint32_t)d->key[2] << 8 | d->key[3];
    assert_true(a - 0x0a000000u < WALK_MAX);
    w->count[a - 0x0a000000u]++;
    w->visits++;
    return 0;
}

static struct peer_route host(uint32_t i)
{
    uint32_t a = 0x0a000000u + i;
    return v4((uint8_t)(a >> 24), (uint8_t)(a >> 16), (uint8_t)(a >> 8), (uint8_t)a, 32);
}

static void test_walk_across_growth(void **state)
{
    /* The table doubles several times while a walk goes on in small steps:
     * each doubling starts the walk over (rib_walk_restarts says so), so
     * every destination there at the start is visited at least once, and
     * the walk still ends; lookups find every destination throughout. */
    (void)state;
    struct log l = {0};
    struct rib *r = rib_create("alpha", on_change, &l);
    int beta = rib_peer_add(r, "beta", NULL);
    struct spec s = {.path = {"beta"}};
    struct peer_route rs[200];
    uint32_t next = 0;
    for (; next < 1000; next += 200) {
        for (uint32_t i = 0; i < 200; i++)
            rs[i] = host(next + i);
        assert_int_equal(announce(r, beta, &s, rs, 200), 0);
    }
    struct walk_seen *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    struct rib_cursor cur;
    rib_walk_start(r, &cur);
    int done = 0, steps = 0, restarts = 0;
    while (!done) {
        restarts += rib_walk_restarts(r, &cur);
        done = rib_walk(r, &cur, count_visit, w, 7);
        steps++;
        if (next + 200 <= WALK_MAX) {
            for (uint32_t i = 0; i < 200; i++)
                rs[i] = host(next + i);
            assert_int_equal(announce(r, beta, &s, rs, 200), 0);
            next += 200;
        }
        if (steps % 16 == 0)
            for (uint32_t i = 0; i < next; i += 97) {
                struct peer_route p = host(i);
                assert_non_null(rib_find(r, &p));
            }
    }
    assert_true(steps > 20);
    assert_int_equal(rib_dest_count(r), next);
    assert_true(next > 16 * 1000); /* several doublings happened during the walk */
    assert_true(restarts >= 4);
    for (uint32_t i = 0; i < 1000; i++)
        assert_true(w->count[i] >= 1);
    /* every destination, once, by a whole walk and by rib_foreach */
    memset(w, 0, sizeof(*w));
    rib_walk_start(r, &cur);
    while (!rib_walk(r, &cur, count_visit, w, 1000))
        ;
    for (uint32_t i = 0; i < next; i++)
        assert_int_equal(w->count[i], 1);
    memset(w, 0, sizeof(*w));
    rib_foreach(r, count_visit, w);
    assert_int_equal(w->visits, next);
    for (uint32_t i = 0; i < next; i++) {
        struct peer_route p = host(i);
        assert_non_null(rib_find(r, &p));
    }
    /* Shrinking (every route gone) starts a walk over too. */
    rib_walk_start(r, &cur);
    (void)rib_walk(r, &cur, count_visit, w, 10);
    rib_peer_down(r, beta);
    assert_true(rib_walk_restarts(r, &cur));
    assert_int_equal(rib_dest_count(r), 0);
    free(w);
    rib_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_kinds),
        cmocka_unit_test(test_best_route_steps),
        cmocka_unit_test(test_why_looks_at_the_runner_up),
        cmocka_unit_test(test_change_callbacks),
        cmocka_unit_test(test_loop_drop),
        cmocka_unit_test(test_import_rules),
        cmocka_unit_test(test_rule_order_and_exact_length),
        cmocka_unit_test(test_content_types),
        cmocka_unit_test(test_max_routes),
        cmocka_unit_test(test_peer_down),
        cmocka_unit_test(test_peer_policy_change),
        cmocka_unit_test(test_own_routes),
        cmocka_unit_test(test_export),
        cmocka_unit_test(test_longest_match),
        cmocka_unit_test(test_interning),
        cmocka_unit_test(test_foreach_and_bad_input),
        cmocka_unit_test(test_destroy_with_routes),
        cmocka_unit_test(test_million_routes),
        cmocka_unit_test(test_walk_across_growth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
