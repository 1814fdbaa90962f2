/*
 * test_router_learned -- routes learned from peer CDNs in the router
 * (src/router/settings.c builds the learned layer and derived snapshots,
 * src/router/decide.c uses them): a static snapshot from config text, a
 * feed snapshot made by hand, the layer built from it, and the decisions
 * of the derived snapshot. Checked: the hand-off per advertised method and
 * the learned_handoff preference, bad targets skipped, static over learned
 * on the same prefix and longer learned inside static, the ECS scope
 * promise (randomized, against lookups inside the scope), the loop guard,
 * content units, the DNS engine and the HTTP redirector with learned
 * peers, re-deriving, and releasing in any order (leaks show under ASan).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/feed.h"
#include "lib/util.h"
#include "router/internal.h"
#include "router/router.h"

/* ---- helpers ---- */

static const struct conf_opt top_opts[] = {
    {.name = "router", .type = CONF_BLOCK, .block = router_opts},
    {0},
};

/* A static snapshot: the zone and nodes below, then `extra` (areas, peers, options). */
static struct rt_settings *settings(const char *extra)
{
    char text[4096];
    snprintf(text, sizeof(text),
             "router {\n"
             "    cdn alpha;\n"
             "    listen 127.0.0.1:5300;\n"
             "    zone example.test {\n"
             "        ns ns1.example.test;\n"
             "        record ns1 A 192.0.2.53;\n"
             "        service www;\n"
             "        service pub1;\n"
             "        service pub2;\n"
             "    }\n"
             "    node a1 { address 192.0.2.1; }\n"
             "    node a2 { address 192.0.2.2; }\n"
             "    node a3 { address 192.0.2.3; }\n"
             "    peer beta { handoff cname; cname cdn.beta.test; redirect http://beta.test; }\n"
             "%s\n"
             "}\n",
             extra);
    struct conf *c = conf_load_string("test.conf", text, strlen(text), top_opts);
    if (c->nerrors)
        print_error("%.*s", (int)c->errors.len, c->errors.data);
    assert_int_equal(c->nerrors, 0);
    struct rt_settings *s = rt__settings_create(c, conf_find(&c->root, "router"), NULL, 0);
    if (s == NULL)
        print_error("%.*s", (int)c->errors.len, c->errors.data);
    assert_non_null(s);
    conf_destroy(c);
    return s;
}

/* Adds a target with up to three hand-offs (method, text; 0 ends). Returns its index. */
static uint32_t target(struct feed_snapshot *s, const char *cdn, int m1, const char *t1, int m2,
                       const char *t2, int m3, const char *t3)
{
    s->targets = xrealloc(s->targets, (s->ntargets + 1) * sizeof(*s->targets));
    struct feed_target *t = &s->targets[s->ntargets];
    memset(t, 0, sizeof(*t));
    snprintf(t->cdn, sizeof(t->cdn), "%s", cdn);
    t->npath = 1;
    snprintf(t->path[0], sizeof(t->path[0]), "%s", cdn);
    int m[3] = {m1, m2, m3};
    const char *tx[3] = {t1, t2, t3};
    for (int i = 0; i < 3 && m[i]; i++) {
        t->handoff[t->nhandoff].method = (enum feed_method)m[i];
        snprintf(t->handoff[t->nhandoff].target, sizeof(t->handoff[0].target), "%s", tx[i]);
        t->nhandoff++;
    }
    t->load = t->capacity = t->cost = FEED_NO_METRIC;
    return (uint32_t)s->ntargets++;
}

static void area(struct feed_snapshot *s, const char *prefix, uint32_t t)
{
    int fam;
    uint8_t a[16];
    unsigned plen;
    assert_int_equal(area_parse_prefix(prefix, &fam, a, &plen), 0);
    s->areas = xrealloc(s->areas, (s->nareas + 1) * sizeof(*s->areas));
    struct feed_area *fa = &s->areas[s->nareas++];
    memset(fa, 0, sizeof(*fa));
    fa->family = (uint8_t)fam;
    fa->plen = (uint8_t)plen;
    memcpy(fa->addr, a, 16);
    fa->target = t;
}

static void unit(struct feed_snapshot *s, int uri, const char *text, uint32_t t)
{
    s->units = xrealloc(s->units, (s->nunits + 1) * sizeof(*s->units));
    s->units[s->nunits].uri = (uint8_t)uri;
    s->units[s->nunits].text = xstrdup(text);
    s->units[s->nunits].target = t;
    s->nunits++;
}

static struct rt_learned *layer(const struct feed_snapshot *snap, enum rt_handoff prefer)
{
    struct rt_learned *l = NULL;
    assert_int_equal(rt__learned_create(snap, "alpha", prefer, &l), 0);
    assert_non_null(l);
    return l;
}

static void client(struct rt_client *cl, const char *addr)
{
    memset(cl, 0, sizeof(*cl));
    if (inet_pton(AF_INET, addr, cl->addr) == 1) {
        cl->family = 4;
        cl->source = 32;
    } else {
        assert_int_equal(inet_pton(AF_INET6, addr, cl->addr), 1);
        cl->family = 6;
        cl->source = 128;
    }
}

/* The DNS decision for a client address and a service name (NULL: none). */
static struct rt_decision decide(const struct rt_settings *s, const char *addr, const char *name,
                                 const struct dns_path *path)
{
    struct rt_client cl;
    struct rt_content ct = {0};
    uint8_t lname[DNS_MAX_NAME];
    struct rt_decision d;
    client(&cl, addr);
    cl.path = path;
    if (name) {
        assert_true(dns_name_from_text(lname, name) > 0);
        ct.lname = lname;
        cl.content = &ct;
    }
    rt__decide(s, "", &cl, 0, 0, &d);
    return d;
}

static const char *who(const struct rt_decision *d)
{
    return d->peer ? d->peer->name : d->node ? d->node->name : "-";
}

#define assert_decision(d, reason_, who_, learned_)                                              \
    do {                                                                                         \
        struct rt_decision d_ = (d);                                                             \
        if (d_.reason != (reason_) || strcmp(who(&d_), (who_)) != 0 || d_.learned != (learned_)) \
            print_error("got %s %s learned %d, want %s %s learned %d\n", rt__reason_name(d_.reason), \
                        who(&d_), d_.learned, rt__reason_name(reason_), (who_), (learned_));     \
        assert_int_equal(d_.reason, (reason_));                                                  \
        assert_string_equal(who(&d_), (who_));                                                   \
        assert_int_equal(d_.learned, (learned_));                                                \
    } while (0)

static void path_of(struct dns_path *p, int n, ...)
{
    va_list ap;
    va_start(ap, n);
    memset(p, 0, sizeof(*p));
    for (int i = 0; i < n; i++) {
        const char *id = va_arg(ap, const char *);
        snprintf(p->id[i], sizeof(p->id[i]), "%s", id);
        p->len[i] = (uint8_t)strlen(id);
    }
    p->n = (uint8_t)n;
    va_end(ap);
}

/* ---- tests ---- */

/* Every hand-off method, each target's texts parsed; unusable targets skipped and counted. */
static void test_handoff_methods(void **state)
{
    (void)state;
    struct rt_settings *base = settings("area 0.0.0.0/0 a1;");
    struct feed_snapshot *snap = feed_snapshot_create();
    uint32_t g = target(snap, "gamma", FEED_CNAME, "cdn.gamma.test", 0, NULL, 0, NULL);
    uint32_t dl = target(snap, "delta", FEED_NS, "ns1.delta.test 192.0.2.99 2001:db8::99", 0, NULL, 0, NULL);
    uint32_t e = target(snap, "eps", FEED_ECS, "127.0.0.1:5399", 0, NULL, 0, NULL);
    uint32_t z = target(snap, "zeta", FEED_HTTP, "http://zeta.test:8080", 0, NULL, 0, NULL);
    uint32_t b1 = target(snap, "bad1", FEED_CNAME, "not a name!", 0, NULL, 0, NULL);
    uint32_t b2 = target(snap, "alpha", FEED_CNAME, "cdn.alpha.test", 0, NULL, 0, NULL);
    uint32_t b3 = target(snap, "bad3", 9, "future", 0, NULL, 0, NULL);
    uint32_t b4 = target(snap, "bad4", FEED_NS, "ns1.bad4.test notanaddress", 0, NULL, 0, NULL);
    uint32_t b5 = target(snap, "bad--5", FEED_CNAME, "cdn.bad5.test", 0, NULL, 0, NULL);
    uint32_t b6 = target(snap, "bad6", FEED_HTTP, "http://bad6.test/", 0, NULL, 0, NULL);
    uint32_t b7 = target(snap, "bad7", FEED_ECS, "*:53", 0, NULL, 0, NULL);
    area(snap, "20.0.0.0/8", g);
    area(snap, "21.0.0.0/8", dl);
    area(snap, "22.0.0.0/8", e);
    area(snap, "23.0.0.0/8", z);
    uint32_t bad[] = {b1, b2, b3, b4, b5, b6, b7};
    for (unsigned i = 0; i < 7; i++) {
        char p[32];
        snprintf(p, sizeof(p), "%u.0.0.0/8", 24 + i);
        area(snap, p, bad[i]);
    }
    area(snap, "99.0.0.0/8", 77); /* no such target */
    snap->version = 7;

    struct rt_learned *l = layer(snap, RT_H_CNAME);
    feed_unref(snap);
    assert_int_equal(l->version, 7);
    assert_int_equal(l->ntargets, 4);
    assert_int_equal(l->nskipped, 7);
    assert_int_equal(l->nbad, 1);
    assert_int_equal(l->nprefixes, 4);
    assert_non_null(strstr(l->skip_reason, "bad1"));
    assert_non_null(strstr(l->skip_reason, "CNAME"));

    struct rt_settings *s = rt__settings_derive(base, l);
    assert_ptr_equal(s->base, base);
    assert_ptr_equal(s->learned, l);

    struct rt_decision d = decide(s, "20.1.2.3", "www.example.test", NULL);
    assert_decision(d, RT_R_PEER_CNAME, "gamma", 1);
    uint8_t want[DNS_MAX_NAME];
    dns_name_from_text(want, "cdn.gamma.test");
    assert_true(dns_name_equal(d.peer->cname_suffix, want));

    d = decide(s, "21.1.2.3", "www.example.test", NULL);
    assert_decision(d, RT_R_PEER_NS, "delta", 1);
    dns_name_from_text(want, "ns1.delta.test");
    assert_true(dns_name_equal(d.peer->ns_name, want));
    assert_int_equal(d.peer->nns_addr, 2);

    d = decide(s, "22.1.2.3", "www.example.test", NULL);
    assert_decision(d, RT_R_PEER_ECS, "eps", 1);
    assert_int_equal(ntohs(((const struct sockaddr_in *)&d.peer->ecs_server.ss)->sin_port), 5399);

    /* zeta has only an HTTP redirector: DNS clients of its area get the static one */
    d = decide(s, "23.1.2.3", "www.example.test", NULL);
    assert_decision(d, RT_R_OWN, "a1", 0);
    for (unsigned i = 0; i < 7; i++) {
        char a[32];
        snprintf(a, sizeof(a), "%u.1.2.3", 24 + i);
        d = decide(s, a, "www.example.test", NULL);
        assert_decision(d, RT_R_OWN, "a1", 0);
    }

    rt__settings_unref(s);
    rt__learned_unref(l);
    rt__settings_unref(base);
}

/* learned_handoff, when the target offers it; else the first of cname, ns, ecs. */
static void test_handoff_preference(void **state)
{
    (void)state;
    struct rt_settings *base = settings("area 0.0.0.0/0 a1;\nlearned_handoff ns;\nlearned_delay 0;");
    assert_int_equal(base->learned_handoff, RT_H_NS);
    assert_int_equal(base->learned_delay_ms, 0);
    struct feed_snapshot *snap = feed_snapshot_create();
    uint32_t all = target(snap, "all", FEED_ECS, "127.0.0.1:53", FEED_CNAME, "cdn.all.test", FEED_NS,
                          "ns.all.test");
    uint32_t ce = target(snap, "ce", FEED_ECS, "127.0.0.1:53", FEED_CNAME, "cdn.ce.test", 0, NULL);
    uint32_t eo = target(snap, "eo", FEED_HTTP, "https://eo.test", FEED_ECS, "[::1]:5353", 0, NULL);
    uint32_t en = target(snap, "en", FEED_ECS, "127.0.0.1:53", FEED_NS, "ns.en.test 192.0.2.7", 0, NULL);
    area(snap, "20.0.0.0/8", all);
    area(snap, "21.0.0.0/8", ce);
    area(snap, "22.0.0.0/8", eo);
    area(snap, "23.0.0.0/8", en);

    struct rt_learned *l = layer(snap, base->learned_handoff);
    struct rt_settings *s = rt__settings_derive(base, l);
    assert_decision(decide(s, "20.0.0.1", NULL, NULL), RT_R_PEER_NS, "all", 1);
    assert_decision(decide(s, "21.0.0.1", NULL, NULL), RT_R_PEER_CNAME, "ce", 1);
    assert_decision(decide(s, "22.0.0.1", NULL, NULL), RT_R_PEER_ECS, "eo", 1);
    assert_decision(decide(s, "23.0.0.1", NULL, NULL), RT_R_PEER_NS, "en", 1);
    rt__settings_unref(s);
    rt__learned_unref(l);

    /* the default preference, cname */
    l = layer(snap, RT_H_CNAME);
    s = rt__settings_derive(base, l);
    rt__learned_unref(l); /* the snapshot holds it */
    assert_decision(decide(s, "20.0.0.1", NULL, NULL), RT_R_PEER_CNAME, "all", 1);
    assert_decision(decide(s, "23.0.0.1", NULL, NULL), RT_R_PEER_NS, "en", 1);
    rt__settings_unref(base); /* and the static one */
    rt__settings_unref(s);
    feed_unref(snap);
}

/* Static wins on the same prefix; the longer prefix wins otherwise, whichever side. */
static void test_precedence(void **state)
{
    (void)state;
    struct rt_settings *base = settings("area 0.0.0.0/0 a1;\n"
                                        "area 10.0.0.0/8 a2;\n"
                                        "area 10.1.0.0/16 beta;\n"
                                        "area 10.3.3.0/24 a3;\n"
                                        "area 2001:db8::/32 a2;");
    struct feed_snapshot *snap = feed_snapshot_create();
    uint32_t g = target(snap, "gamma", FEED_CNAME, "cdn.gamma.test", 0, NULL, 0, NULL);
    uint32_t dl = target(snap, "delta", FEED_NS, "ns1.delta.test 192.0.2.99", 0, NULL, 0, NULL);
    area(snap, "0.0.0.0/0", dl);
    area(snap, "10.0.0.0/8", g);
    area(snap, "10.2.0.0/16", g);
    area(snap, "10.3.0.0/16", dl);
    area(snap, "10.1.0.0/16", dl);
    area(snap, "10.1.2.0/24", dl);
    area(snap, "::/0", g);
    area(snap, "2001:db8:1::/48", dl);
    struct rt_learned *l = layer(snap, RT_H_CNAME);
    feed_unref(snap);
    struct rt_settings *s = rt__settings_derive(base, l);
    rt__learned_unref(l);

    assert_decision(decide(s, "192.0.2.200", NULL, NULL), RT_R_OWN, "a1", 0);   /* /0 tie */
    assert_decision(decide(s, "10.9.0.1", NULL, NULL), RT_R_OWN, "a2", 0);      /* /8 tie */
    assert_decision(decide(s, "10.2.0.1", NULL, NULL), RT_R_PEER_CNAME, "gamma", 1);
    assert_decision(decide(s, "10.1.9.1", NULL, NULL), RT_R_PEER_CNAME, "beta", 0); /* /16 tie */
    assert_decision(decide(s, "10.1.2.1", NULL, NULL), RT_R_PEER_NS, "delta", 1);
    assert_decision(decide(s, "10.3.9.9", NULL, NULL), RT_R_PEER_NS, "delta", 1);
    assert_decision(decide(s, "10.3.3.3", NULL, NULL), RT_R_OWN, "a3", 0);      /* static /24 inside */
    assert_decision(decide(s, "2001:db8::1", NULL, NULL), RT_R_OWN, "a2", 0);
    assert_decision(decide(s, "2001:db8:1::1", NULL, NULL), RT_R_PEER_NS, "delta", 1);
    assert_decision(decide(s, "2001:db9::1", NULL, NULL), RT_R_PEER_CNAME, "gamma", 1); /* no static */

    /* a client that must stay (a failed hand-off) falls back, as with a static peer */
    struct rt_client cl;
    struct rt_decision d;
    client(&cl, "10.2.0.1");
    rt__decide(s, "", &cl, 0, RT_DECIDE_NO_PEER, &d);
    assert_int_equal(d.reason, RT_R_FALLBACK);
    assert_null(d.peer);
    assert_non_null(d.node);

    /* the static snapshot alone knows nothing learned */
    assert_decision(decide(base, "10.2.0.1", NULL, NULL), RT_R_OWN, "a2", 0);
    rt__settings_unref(base);
    rt__settings_unref(s);
}

/* The scope is the larger of the two tables', and strict once a learned area matched. */
static void test_scope(void **state)
{
    (void)state;
    struct rt_settings *base = settings("area 10.0.0.0/8 a2;\narea 10.1.0.0/16 a2;\narea 12.0.0.0/8 a2;");
    struct feed_snapshot *snap = feed_snapshot_create();
    uint32_t g = target(snap, "gamma", FEED_CNAME, "cdn.gamma.test", 0, NULL, 0, NULL);
    area(snap, "10.0.0.0/12", g);
    area(snap, "12.2.0.0/16", g);
    struct rt_learned *l = layer(snap, RT_H_CNAME);
    feed_unref(snap);
    struct rt_settings *s = rt__settings_derive(base, l);
    rt__learned_unref(l);

    /* static 10.1/16 (16) beats learned 10.0/12: the answer holds for 10.1/16 only, not
     * for the /12 the learned area spans (10.2.0.0 there goes to gamma) */
    struct rt_decision d = decide(s, "10.1.2.3", NULL, NULL);
    assert_decision(d, RT_R_OWN, "a2", 0);
    assert_int_equal(d.scope, 16);
    assert_decision(decide(s, "10.2.0.0", NULL, NULL), RT_R_PEER_CNAME, "gamma", 1);
    /* without the learned layer the static value is a2 in all of 10/8 */
    assert_int_equal(decide(base, "10.1.2.3", NULL, NULL).scope, 8);
    /* no learned match: the static scope, or the learned gap's when larger */
    d = decide(s, "12.1.2.3", NULL, NULL);
    assert_decision(d, RT_R_OWN, "a2", 0);
    assert_int_equal(d.scope, 15); /* 12.0.0.0/15 holds no learned prefix */
    d = decide(s, "12.2.2.3", NULL, NULL);
    assert_decision(d, RT_R_PEER_CNAME, "gamma", 1);
    assert_int_equal(d.scope, 16);
    rt__settings_unref(s);
    rt__settings_unref(base);
}

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

/* The scope's promise, randomized: every address inside it gets the same decision. */
static void test_scope_promise_random(void **state)
{
    (void)state;
    static const char *const targets[] = {"a1", "a2", "a3", "a1 a2", "a2 a3", "beta"};
    for (int round = 0; round < 20; round++) {
        char extra[8192];
        size_t n = 0;
        /* prefixes inside 10.0.0.0/14, so they nest and touch */
        for (int i = 0; i < 30; i++) {
            unsigned plen = 8 + rnd() % 17;
            uint32_t a = (10u << 24) | (rnd() & 0x3ffffu);
            a &= plen ? ~0u << (32 - plen) : 0;
            n += (size_t)snprintf(extra + n, sizeof(extra) - n, "area %u.%u.%u.%u/%u %s;\n", a >> 24,
                                  (a >> 16) & 255, (a >> 8) & 255, a & 255, plen, targets[rnd() % 6]);
        }
        struct rt_settings *base = settings(extra);
        struct feed_snapshot *snap = feed_snapshot_create();
        uint32_t t[3];
        t[0] = target(snap, "gamma", FEED_CNAME, "cdn.gamma.test", 0, NULL, 0, NULL);
        t[1] = target(snap, "delta", FEED_NS, "ns.delta.test", 0, NULL, 0, NULL);
        t[2] = target(snap, "eps", FEED_CNAME, "cdn.eps.test", 0, NULL, 0, NULL);
        for (int i = 0; i < 30; i++) {
            char p[40];
            unsigned plen = 8 + rnd() % 17;
            uint32_t a = (10u << 24) | (rnd() & 0x3ffffu);
            a &= ~0u << (32 - plen);
            snprintf(p, sizeof(p), "%u.%u.%u.%u/%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255, plen);
            area(snap, p, t[rnd() % 3]);
        }
        struct rt_learned *l = layer(snap, RT_H_CNAME);
        feed_unref(snap);
        struct rt_settings *s = rt__settings_derive(base, l);
        for (int q = 0; q < 300; q++) {
            struct rt_client cl;
            struct rt_decision d, e;
            memset(&cl, 0, sizeof(cl));
            cl.family = 4;
            cl.source = 32;
            uint32_t a = (10u << 24) | (rnd() & 0x3ffffu);
            uint32_t na = htonl(a);
            memcpy(cl.addr, &na, 4);
            rt__decide(s, "", &cl, 0, 0, &d);
            assert_true(d.scope <= 32);
            for (int k = 0; k < 40; k++) {
                uint32_t mask = d.scope ? ~0u << (32 - d.scope) : 0;
                uint32_t b = (a & mask) | (rnd() & ~mask);
                uint32_t nb = htonl(b);
                memcpy(cl.addr, &nb, 4);
                rt__decide(s, "", &cl, 0, 0, &e);
                if (e.reason != d.reason || e.node != d.node || e.peer != d.peer) {
                    print_error("round %d: %08x scope %u: %s %s, but %08x: %s %s\n", round, a, d.scope,
                                rt__reason_name(d.reason), who(&d), b, rt__reason_name(e.reason), who(&e));
                    fail();
                }
            }
        }
        rt__settings_unref(s);
        rt__learned_unref(l);
        rt__settings_unref(base);
    }
}

/* A learned peer already on the path, or a CDN its route passed through, is not handed to. */
static void test_loop_guard(void **state)
{
    (void)state;
    struct rt_settings *base = settings("area 0.0.0.0/0 a1;");
    struct feed_snapshot *snap = feed_snapshot_create();
    uint32_t g = target(snap, "gamma", FEED_CNAME, "cdn.gamma.test", 0, NULL, 0, NULL);
    snap->targets[g].npath = 2;
    snprintf(snap->targets[g].path[1], sizeof(snap->targets[g].path[1]), "omega");
    area(snap, "20.0.0.0/8", g);
    struct rt_learned *l = layer(snap, RT_H_CNAME);
    feed_unref(snap);
    struct rt_settings *s = rt__settings_derive(base, l);
    rt__learned_unref(l);

    struct dns_path p;
    path_of(&p, 1, "kappa");
    assert_decision(decide(s, "20.0.0.1", NULL, &p), RT_R_PEER_CNAME, "gamma", 1);
    path_of(&p, 2, "kappa", "gamma");
    struct rt_decision d = decide(s, "20.0.0.1", NULL, &p);
    assert_int_equal(d.reason, RT_R_FALLBACK); /* the best node anywhere, as for a static peer */
    assert_null(d.peer);
    assert_non_null(d.node);
    assert_int_equal(d.learned, 1);
    assert_int_equal(d.loop, 1);
    path_of(&p, 1, "omega");
    d = decide(s, "20.0.0.1", NULL, &p);
    assert_int_equal(d.reason, RT_R_FALLBACK);
    assert_int_equal(d.loop, 1);
    path_of(&p, 8, "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8");
    d = decide(s, "20.0.0.1", NULL, &p);
    assert_int_equal(d.reason, RT_R_FALLBACK);
    assert_int_equal(d.loop, 1);
    rt__settings_unref(base);
    rt__settings_unref(s);
}

/* A second snapshot: a new layer derived from the same static one; releases in any order. */
static void test_rederive(void **state)
{
    (void)state;
    struct rt_settings *base = settings("area 0.0.0.0/0 a1;");
    struct feed_snapshot *s1 = feed_snapshot_create();
    area(s1, "20.0.0.0/8", target(s1, "gamma", FEED_CNAME, "cdn.gamma.test", 0, NULL, 0, NULL));
    struct feed_snapshot *s2 = feed_snapshot_create();
    area(s2, "21.0.0.0/8", target(s2, "delta", FEED_NS, "ns.delta.test", 0, NULL, 0, NULL));
    struct rt_learned *l1 = layer(s1, RT_H_CNAME), *l2 = layer(s2, RT_H_CNAME);
    feed_unref(s1);
    feed_unref(s2);

    struct rt_settings *d1 = rt__settings_derive(base, l1);
    struct rt_settings *d2 = rt__settings_derive(d1, l2); /* from the derived one: same static */
    assert_ptr_equal(d2->base, base);
    assert_ptr_equal(rt__settings_static(d2), base);
    assert_decision(decide(d1, "20.0.0.1", NULL, NULL), RT_R_PEER_CNAME, "gamma", 1);
    assert_decision(decide(d1, "21.0.0.1", NULL, NULL), RT_R_OWN, "a1", 0);
    assert_decision(decide(d2, "20.0.0.1", NULL, NULL), RT_R_OWN, "a1", 0);
    assert_decision(decide(d2, "21.0.0.1", NULL, NULL), RT_R_PEER_NS, "delta", 1);

    /* no learned routes: the static snapshot itself */
    struct rt_settings *d3 = rt__settings_derive(d2, NULL);
    assert_ptr_equal(d3, base);
    /* a reload: a new static snapshot derived with the current layer */
    struct rt_settings *base2 = settings("area 0.0.0.0/0 a2;");
    struct rt_settings *d4 = rt__settings_derive(base2, d2->learned);
    assert_decision(decide(d4, "21.0.0.1", NULL, NULL), RT_R_PEER_NS, "delta", 1);
    assert_decision(decide(d4, "22.0.0.1", NULL, NULL), RT_R_OWN, "a2", 0);

    /* any order: everything goes with its last reference */
    rt__learned_unref(l2);
    rt__settings_unref(base);
    rt__settings_unref(base2);
    rt__learned_unref(l1);
    rt__settings_unref(d2);
    rt__settings_unref(d3);
    rt__settings_unref(d1);
    rt__settings_unref(d4);
    /* a NULL snapshot is no layer at all */
    struct rt_learned *none = (struct rt_learned *)1;
    assert_int_equal(rt__learned_create(NULL, "alpha", RT_H_CNAME, &none), 0);
    assert_null(none);
}

/* Content units: a limited target's areas apply to its units only. */
static void test_content_units(void **state)
{
    (void)state;
    struct rt_settings *base = settings("area 0.0.0.0/0 a1;");
    struct feed_snapshot *snap = feed_snapshot_create();
    uint32_t dl = target(snap, "delta", FEED_CNAME, "cdn.delta.test", 0, NULL, 0, NULL);
    uint32_t g = target(snap, "gamma", FEED_CNAME, "cdn.gamma.test", FEED_HTTP, "http://gamma.test", 0, NULL);
    uint32_t k = target(snap, "kappa", FEED_NS, "ns.kappa.test", 0, NULL, 0, NULL);
    area(snap, "40.0.0.0/8", dl);
    area(snap, "40.1.0.0/16", g);
    area(snap, "40.1.0.0/16", k); /* the same prefix, for other content: both tables hold it */
    area(snap, "41.0.0.0/8", g);
    unit(snap, 0, "pub1.example.test", g);
    unit(snap, 1, "http://pub2.example.test:8080/videos/", g);
    unit(snap, 0, "www.example.test", k);
    unit(snap, 1, "ftp://nope.test/", g);  /* not a URI prefix */
    unit(snap, 0, "x", 99);                 /* no such target */
    struct rt_learned *l = layer(snap, RT_H_CNAME);
    feed_unref(snap);
    assert_int_equal(l->nunits, 3);
    assert_int_equal(l->nbad, 2);
    struct rt_settings *s = rt__settings_derive(base, l);
    rt__learned_unref(l);

    assert_decision(decide(s, "40.1.2.3", "pub1.example.test", NULL), RT_R_PEER_CNAME, "gamma", 1);
    assert_decision(decide(s, "40.1.2.3", "PUB1.example.test", NULL), RT_R_PEER_CNAME, "gamma", 1);
    assert_decision(decide(s, "40.1.2.3", "pub2.example.test", NULL), RT_R_PEER_CNAME, "delta", 1);
    assert_decision(decide(s, "40.1.2.3", "www.example.test", NULL), RT_R_PEER_NS, "kappa", 1);
    assert_decision(decide(s, "40.1.2.3", NULL, NULL), RT_R_PEER_CNAME, "delta", 1);
    assert_decision(decide(s, "41.1.2.3", "www.example.test", NULL), RT_R_OWN, "a1", 0);
    assert_decision(decide(s, "41.1.2.3", "pub1.example.test", NULL), RT_R_PEER_CNAME, "gamma", 1);

    /* HTTP: publisher units by host, URI units by host and path prefix */
    struct rt_client cl;
    struct rt_decision d;
    char loc[1024];
    client(&cl, "40.1.2.3");
    int code = rt__redirect(s, "pub2.example.test", 17, "/videos/a.mp4?x=1", 17, &cl, loc, sizeof(loc), &d);
    assert_int_equal(code, 302);
    assert_int_equal(d.reason, RT_R_PEER_HTTP);
    assert_string_equal(loc, "http://gamma.test/pub2.example.test/videos/a.mp4?x=1&ferry_path=alpha");
    code = rt__redirect(s, "pub2.example.test", 17, "/images/a.png", 13, &cl, loc, sizeof(loc), &d);
    assert_int_equal(code, 302);
    assert_decision(d, RT_R_OWN, "a1", 0); /* delta has no redirector: the static area */
    assert_string_equal(loc, "https://192.0.2.1/images/a.png");
    code = rt__redirect(s, "pub1.example.test:80", 20, "/a", 2, &cl, loc, sizeof(loc), &d);
    assert_int_equal(code, 302);
    assert_int_equal(d.reason, RT_R_PEER_HTTP);
    assert_true(d.learned);
    assert_string_equal(loc, "http://gamma.test/pub1.example.test/a?ferry_path=alpha");
    /* the path rides on to the next redirector, and the loop guard reads it */
    code = rt__redirect(s, "gamma.test", 10, "/pub1.example.test/a?ferry_path=gamma", 37, &cl, loc,
                        sizeof(loc), &d);
    assert_int_equal(code, 302);
    assert_int_equal(d.reason, RT_R_FALLBACK);
    assert_int_equal(d.loop, 1);
    rt__settings_unref(s);
    rt__settings_unref(base);
}

/* Runs a query through the DNS engine; returns the response length. */
static int ask(const struct rt_settings *s, const char *name, uint16_t qtype, const char *subnet,
               uint8_t *out, size_t cap, struct rt_ecs_req *req, uint8_t qname[DNS_MAX_NAME])
{
    uint8_t q[512];
    struct dns_ecs ecs = {.family = 1, .source = 24};
    assert_int_equal(inet_pton(AF_INET, subnet, ecs.addr), 1);
    assert_true(dns_name_from_text(qname, name) > 0);
    int n = dns_write_query(q, sizeof(q), 0x1234, qname, qtype, 1232, &ecs, NULL);
    assert_true(n > 0);
    struct net_addr from;
    assert_int_equal(net_addr_from("127.0.0.1", 5000, &from), 0);
    return rt__answer(s, NULL, q, (size_t)n, &from, 0, out, cap, req);
}

/* The DNS engine hands clients to learned peers as to static ones. */
static void test_dns_engine(void **state)
{
    (void)state;
    struct rt_settings *base = settings("area 0.0.0.0/0 a1;");
    struct feed_snapshot *snap = feed_snapshot_create();
    area(snap, "20.0.0.0/8", target(snap, "gamma", FEED_CNAME, "cdn.gamma.test", 0, NULL, 0, NULL));
    area(snap, "21.0.0.0/8", target(snap, "delta", FEED_NS, "ns1.delta.test 192.0.2.99", 0, NULL, 0, NULL));
    area(snap, "22.0.0.0/8", target(snap, "eps", FEED_ECS, "127.0.0.1:5399", 0, NULL, 0, NULL));
    struct rt_learned *l = layer(snap, RT_H_CNAME);
    feed_unref(snap);
    struct rt_settings *s = rt__settings_derive(base, l);
    rt__settings_unref(base);

    uint8_t out[1232], qname[DNS_MAX_NAME], want[DNS_MAX_NAME];
    struct rt_ecs_req req;
    struct dns_response r;
    struct dns_rr rr;
    int n = ask(s, "www.example.test", DNS_T_A, "20.1.2.0", out, sizeof(out), &req, qname);
    assert_true(n > 0);
    assert_int_equal(dns_response_parse(&r, out, (size_t)n, 0x1234, qname, DNS_T_A), 0);
    assert_int_equal(r.rcode, DNS_RC_NOERROR);
    assert_int_equal(dns_response_next(&r, &rr), 1);
    assert_int_equal(rr.type, DNS_T_CNAME);
    dns_name_from_text(want, "fp--alpha.www.cdn.gamma.test");
    assert_true(dns_name_equal(rr.target, want));
    assert_true(r.has_ecs);
    assert_int_equal(r.ecs.scope, 8);

    n = ask(s, "www.example.test", DNS_T_A, "21.1.2.0", out, sizeof(out), &req, qname);
    assert_true(n > 0);
    assert_int_equal(dns_response_parse(&r, out, (size_t)n, 0x1234, qname, DNS_T_A), 0);
    int ns = 0, glue = 0;
    while (dns_response_next(&r, &rr) == 1) {
        dns_name_from_text(want, "ns1.delta.test");
        if (rr.sec == DNS_SEC_NS && rr.type == DNS_T_NS && dns_name_equal(rr.target, want))
            ns++;
        if (rr.sec == DNS_SEC_AR && rr.type == DNS_T_A && dns_name_equal(rr.owner, want))
            glue++;
    }
    assert_int_equal(ns, 1);
    assert_int_equal(glue, 1);

    n = ask(s, "www.example.test", DNS_T_A, "22.1.2.0", out, sizeof(out), &req, qname);
    assert_int_equal(n, RT_ANSWER_ASYNC);
    assert_non_null(req.peer);
    assert_string_equal(req.peer->name, "eps");
    assert_int_equal(req.scope, 8);
    /* the layer may go (new routes) while the answer is owed: a reference keeps the peer */
    atomic_fetch_add(&req.peer->refs, 1);
    struct rt_peer *p = req.peer;
    rt__settings_unref(s);
    rt__learned_unref(l);
    assert_int_equal(ntohs(((const struct sockaddr_in *)&p->ecs_server.ss)->sin_port), 5399);
    rt__peer_unref(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handoff_methods),
        cmocka_unit_test(test_handoff_preference),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_scope),
        cmocka_unit_test(test_scope_promise_random),
        cmocka_unit_test(test_loop_guard),
        cmocka_unit_test(test_rederive),
        cmocka_unit_test(test_content_units),
        cmocka_unit_test(test_dns_engine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
