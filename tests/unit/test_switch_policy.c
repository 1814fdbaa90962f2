/*
 * Tests for src/switch/policy.c: parsing chains, decoding the labels a
 * ClientHello carries (PSK identities as stateful session IDs or stateless
 * tickets, TLS 1.2 tickets, session IDs; prefix and mod-n codecs), and
 * running the chain: each step decides or passes, a down or excluded
 * backend falls through, sticky entries are written and followed,
 * leastconn and roundrobin, url affinity on plain HTTP, fallback, and
 * weights (shares, minimal movement, draining with weight 0).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "switch/policy.h"

struct fx {
    struct sw_policy pol;
    struct sw_backend *b[3];
    struct sw_pool pool;
    struct sw_sticky *st;
    _Atomic uint64_t rr;
};

static const uint8_t CLIENT[4] = {198, 51, 100, 7};

static void chain(struct fx *f, const char *words, int plain)
{
    char buf[128], err[200];
    char *w[SW_MAX_STEPS + 2];
    int n = 0;
    snprintf(buf, sizeof(buf), "%s", words);
    for (char *t = strtok(buf, " "); t; t = strtok(NULL, " "))
        w[n++] = t;
    assert_int_equal(sw_policy_parse(&f->pol, w, n, plain, err, sizeof(err)), 0);
}

static void fx_init(struct fx *f, const char *words)
{
    memset(f, 0, sizeof(*f));
    chain(f, words, 0);
    f->pol.codec.kind = SID_CODEC_PREFIX;
    f->pol.codec.n = 3;
    sw_hash_key_from_seed("t", &f->pol.key);
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof(name), "cache-%d", i + 1);
        f->b[i] = sw_backend_create(name, sw_siphash(&f->pol.key, name, strlen(name)));
        f->b[i]->label = (unsigned)i + 1;
    }
    f->pool.b = f->b;
    f->pool.n = 3;
    f->st = sw_sticky_create(100, 1000);
}

static void fx_fini(struct fx *f)
{
    for (int i = 0; i < 3; i++)
        sw_backend_unref(f->b[i]);
    sw_sticky_destroy(f->st);
}

static struct sw_decision decide_keys(struct fx *f, const struct sw_hello_keys *k, int64_t now)
{
    struct sw_request r = {.keys = k, .client = CLIENT, .client_len = 4};
    struct sw_decision d;
    assert_int_equal(sw_policy_decide(&f->pol, &f->pool, f->st, &f->rr, now, &r, &d), 0);
    return d;
}

static void test_parse(void **state)
{
    struct sw_policy p;
    char err[200];
    char *ok[] = {"psk", "ticket", "session_id", "sticky", "hash", "leastconn"};
    assert_int_equal(sw_policy_parse(&p, ok, 6, 0, err, sizeof(err)), 0);
    assert_int_equal(p.nsteps, 6);
    assert_int_equal(p.steps[0], SW_STEP_PSK);
    assert_int_equal(p.steps[5], SW_STEP_LEASTCONN);
    assert_true(p.has_sticky);
    char *unknown[] = {"psk", "magic"};
    assert_int_equal(sw_policy_parse(&p, unknown, 2, 0, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "magic"));
    char *twice[] = {"hash", "hash"};
    assert_int_equal(sw_policy_parse(&p, twice, 2, 0, err, sizeof(err)), -1);
    char *url[] = {"url"};
    assert_int_equal(sw_policy_parse(&p, url, 1, 0, err, sizeof(err)), -1);
    assert_int_equal(sw_policy_parse(&p, url, 1, 1, err, sizeof(err)), 0);
    char *psk[] = {"psk"};
    assert_int_equal(sw_policy_parse(&p, psk, 1, 1, err, sizeof(err)), -1);
    char *fallback[] = {"fallback"};
    assert_int_equal(sw_policy_parse(&p, fallback, 1, 0, err, sizeof(err)), -1);
    assert_int_equal(sw_policy_parse(&p, ok, 0, 0, err, sizeof(err)), -1);
}

static void test_keys_from_hello(void **state)
{
    struct fx f;
    fx_init(&f, "psk ticket session_id");
    struct ch_info ch;
    struct sw_hello_keys k;
    uint8_t sid[32], stateful[32], ticket[120], random_id[32];

    assert_int_equal(sid_encode(&f.pol.codec, 2, sid, 32), 0);
    assert_int_equal(sid_encode(&f.pol.codec, 3, stateful, 32), 0);
    assert_int_equal(sid_encode(&f.pol.codec, 1, ticket, 16), 0); /* key_name */
    memset(ticket + 16, 0xab, sizeof(ticket) - 16);
    memset(random_id, 0x5c, sizeof(random_id));

    memset(&ch, 0, sizeof(ch));
    ch.session_id = sid;
    ch.session_id_len = 32;
    ch.has_ticket_ext = 1;
    ch.ticket = ticket;
    ch.ticket_len = sizeof(ticket);
    ch.has_psk = 1;
    ch.n_psk_ids = 2;
    ch.psk_ids[0].id = stateful; /* a stateful TLS 1.3 ticket: the session ID */
    ch.psk_ids[0].len = 32;
    ch.psk_ids[1].id = ticket;   /* a stateless one: key_name first */
    ch.psk_ids[1].len = sizeof(ticket);
    sw_policy_keys(&f.pol, &ch, &k);
    assert_int_equal(k.npsk, 2);
    assert_int_equal(k.psk_label[0], 3);
    assert_int_equal(k.psk_label[1], 1);
    assert_int_equal(k.ticket_label, 1);
    assert_int_equal(k.sid_label, 2);

    /* A TLS 1.3 random legacy session ID and an empty ticket extension carry nothing. */
    ch.session_id = random_id;
    ch.ticket_len = 0;
    ch.has_psk = 0;
    sw_policy_keys(&f.pol, &ch, &k);
    assert_int_equal(k.npsk, 0);
    assert_int_equal(k.ticket_label, 0);
    assert_int_equal(k.sid_label, 0);
    fx_fini(&f);
}

static void test_keys_modn(void **state)
{
    struct fx f;
    fx_init(&f, "session_id");
    f.pol.codec.kind = SID_CODEC_MODN;
    f.pol.codec.n = 3;
    uint8_t sid[32] = {0};
    struct ch_info ch;
    struct sw_hello_keys k;
    memset(&ch, 0, sizeof(ch));
    ch.session_id = sid;
    ch.session_id_len = 32;
    for (unsigned v = 0; v < 9; v++) {
        sid[31] = (uint8_t)v;
        sw_policy_keys(&f.pol, &ch, &k);
        assert_int_equal(k.sid_label, v % 3 + 1);
    }
    fx_fini(&f);
}

static void test_label_steps_and_fall_through(void **state)
{
    struct fx f;
    fx_init(&f, "psk ticket session_id roundrobin");
    struct sw_hello_keys k = {.npsk = 1, .psk_label = {2}, .ticket_label = 3, .sid_label = 1};
    struct sw_decision d = decide_keys(&f, &k, 0);
    assert_ptr_equal(d.b, f.b[1]);
    assert_int_equal(d.step, SW_STEP_PSK);
    /* The PSK's server is down: its session cannot resume; the next step decides. */
    atomic_store(&f.b[1]->up, 0);
    d = decide_keys(&f, &k, 0);
    assert_ptr_equal(d.b, f.b[2]);
    assert_int_equal(d.step, SW_STEP_TICKET);
    k.ticket_label = 0;
    d = decide_keys(&f, &k, 0);
    assert_ptr_equal(d.b, f.b[0]);
    assert_int_equal(d.step, SW_STEP_SESSION_ID);
    /* A label no backend has passes too. */
    k.sid_label = 9;
    d = decide_keys(&f, &k, 0);
    assert_int_equal(d.step, SW_STEP_ROUNDROBIN);
    assert_ptr_not_equal(d.b, f.b[1]);
    /* Plain HTTP requests never use label steps (no keys). */
    struct sw_request r = {.client = CLIENT, .client_len = 4};
    assert_int_equal(sw_policy_decide(&f.pol, &f.pool, NULL, &f.rr, 0, &r, &d), 0);
    assert_int_equal(d.step, SW_STEP_ROUNDROBIN);
    fx_fini(&f);
}

static void test_second_psk_identity(void **state)
{
    struct fx f;
    fx_init(&f, "psk hash");
    struct sw_hello_keys k = {.npsk = 2, .psk_label = {0, 3}};
    struct sw_decision d = decide_keys(&f, &k, 0);
    assert_ptr_equal(d.b, f.b[2]);
    assert_int_equal(d.step, SW_STEP_PSK);
    fx_fini(&f);
}

static void test_sticky(void **state)
{
    struct fx f;
    fx_init(&f, "session_id sticky roundrobin");
    struct sw_hello_keys k = {.sid_label = 3};
    /* A resumption by label writes the sticky entry... */
    struct sw_decision d = decide_keys(&f, &k, 0);
    assert_int_equal(d.step, SW_STEP_SESSION_ID);
    k.sid_label = 0;
    /* ...so the client's next fresh connection follows it, within the timeout. */
    for (int i = 0; i < 5; i++) {
        d = decide_keys(&f, &k, 100 * i);
        assert_int_equal(d.step, SW_STEP_STICKY);
        assert_ptr_equal(d.b, f.b[2]);
    }
    /* Refreshed at 400: alive until 1400. */
    d = decide_keys(&f, &k, 1399);
    assert_int_equal(d.step, SW_STEP_STICKY);
    /* Expired: round robin decides, and writes a new entry. */
    d = decide_keys(&f, &k, 2399);
    assert_int_equal(d.step, SW_STEP_ROUNDROBIN);
    struct sw_backend *rr = d.b;
    d = decide_keys(&f, &k, 2400);
    assert_int_equal(d.step, SW_STEP_STICKY);
    assert_ptr_equal(d.b, rr);
    /* A down backend's entry is not followed. */
    atomic_store(&rr->up, 0);
    d = decide_keys(&f, &k, 2500);
    assert_int_equal(d.step, SW_STEP_ROUNDROBIN);
    assert_ptr_not_equal(d.b, rr);
    fx_fini(&f);
}

static void test_leastconn_and_roundrobin(void **state)
{
    struct fx f;
    fx_init(&f, "leastconn");
    atomic_store(&f.b[0]->active, 5);
    atomic_store(&f.b[1]->active, 2);
    atomic_store(&f.b[2]->active, 7);
    for (int i = 0; i < 4; i++)
        assert_ptr_equal(decide_keys(&f, NULL, 0).b, f.b[1]);
    /* Ties are taken in turn. */
    atomic_store(&f.b[0]->active, 2);
    int seen[3] = {0};
    for (int i = 0; i < 6; i++) {
        struct sw_decision d = decide_keys(&f, NULL, 0);
        assert_int_equal(d.step, SW_STEP_LEASTCONN);
        seen[d.b == f.b[0] ? 0 : d.b == f.b[1] ? 1 : 2]++;
    }
    assert_true(seen[0] > 0 && seen[1] > 0 && seen[2] == 0);
    fx_fini(&f);

    fx_init(&f, "roundrobin");
    atomic_store(&f.b[1]->up, 0);
    struct sw_backend *prev = NULL;
    for (int i = 0; i < 6; i++) {
        struct sw_decision d = decide_keys(&f, NULL, 0);
        assert_ptr_not_equal(d.b, f.b[1]);
        assert_ptr_not_equal(d.b, prev);
        prev = d.b;
    }
    fx_fini(&f);
}

static void test_fallback_and_exclusion(void **state)
{
    struct fx f;
    fx_init(&f, "session_id");
    struct sw_hello_keys k = {0};
    struct sw_decision d = decide_keys(&f, &k, 0);
    assert_int_equal(d.step, SW_STEP_FALLBACK);
    /* All down: still a backend (the connect will tell), unless excluded. */
    for (int i = 0; i < 3; i++)
        atomic_store(&f.b[i]->up, 0);
    d = decide_keys(&f, &k, 0);
    assert_int_equal(d.step, SW_STEP_FALLBACK);
    struct sw_backend *ex[3] = {f.b[0], f.b[1], NULL};
    struct sw_request r = {.keys = &k, .client = CLIENT, .client_len = 4, .excluded = ex, .nexcluded = 2};
    assert_int_equal(sw_policy_decide(&f.pol, &f.pool, NULL, &f.rr, 0, &r, &d), 0);
    assert_ptr_equal(d.b, f.b[2]);
    ex[2] = f.b[2];
    r.nexcluded = 3;
    assert_int_equal(sw_policy_decide(&f.pol, &f.pool, NULL, &f.rr, 0, &r, &d), -1);
    /* An excluded backend is skipped by label steps too. */
    atomic_store(&f.b[0]->up, 1);
    atomic_store(&f.b[1]->up, 1);
    k.sid_label = 1;
    r.nexcluded = 1;
    assert_int_equal(sw_policy_decide(&f.pol, &f.pool, NULL, &f.rr, 0, &r, &d), 0);
    assert_ptr_equal(d.b, f.b[1]);
    assert_int_equal(d.step, SW_STEP_FALLBACK);
    fx_fini(&f);
}

static void test_url_affinity(void **state)
{
    struct fx f;
    fx_init(&f, "hash");
    chain(&f, "url hash", 1);
    f.b[2]->has_http = 0; /* cache-3 serves TLS only */
    f.b[0]->has_http = f.b[1]->has_http = 1;
    int per[3] = {0};
    for (int i = 0; i < 200; i++) {
        char url[64];
        int n = snprintf(url, sizeof(url), "www.example.test/obj/%d", i);
        struct sw_request r = {.client = CLIENT, .client_len = 4, .url = url, .url_len = (size_t)n, .plain = 1};
        struct sw_decision d, d2;
        assert_int_equal(sw_policy_decide(&f.pol, &f.pool, NULL, &f.rr, 0, &r, &d), 0);
        assert_int_equal(d.step, SW_STEP_URL);
        /* The same URL from another client goes to the same cache. */
        const uint8_t other[4] = {203, 0, 113, (uint8_t)i};
        r.client = other;
        assert_int_equal(sw_policy_decide(&f.pol, &f.pool, NULL, &f.rr, 0, &r, &d2), 0);
        assert_ptr_equal(d.b, d2.b);
        per[d.b == f.b[0] ? 0 : d.b == f.b[1] ? 1 : 2]++;
    }
    assert_int_equal(per[2], 0);
    assert_true(per[0] > 60 && per[1] > 60);
    /* No URL (the head did not parse): the next step decides. */
    struct sw_request r = {.client = CLIENT, .client_len = 4, .plain = 1};
    struct sw_decision d;
    assert_int_equal(sw_policy_decide(&f.pol, &f.pool, NULL, &f.rr, 0, &r, &d), 0);
    assert_int_equal(d.step, SW_STEP_HASH);
    fx_fini(&f);
}

/* The backend index a decision picked. */
static int which(const struct fx *f, const struct sw_decision *d)
{
    for (int i = 0; i < 3; i++)
        if (f->b[i] == d->b)
            return i;
    fail_msg("decision outside the pool");
    return -1;
}

static int hash_pick(struct fx *f, uint32_t client)
{
    uint8_t a[4] = {(uint8_t)(client >> 24), (uint8_t)(client >> 16), (uint8_t)(client >> 8), (uint8_t)client};
    struct sw_request r = {.client = a, .client_len = 4};
    struct sw_decision d;
    assert_int_equal(sw_policy_decide(&f->pol, &f->pool, NULL, &f->rr, 0, &r, &d), 0);
    assert_int_equal(d.step, SW_STEP_HASH);
    return which(f, &d);
}

static void test_weighted_hash(void **state)
{
    enum { N = 60000 };
    static int8_t before[N];
    struct fx f;
    fx_init(&f, "hash");
    int count[3] = {0, 0, 0};
    /* Equal weights: thirds. */
    for (uint32_t c = 0; c < N; c++)
        count[before[c] = (int8_t)hash_pick(&f, 0x0a000000u + c)]++;
    for (int i = 0; i < 3; i++)
        assert_true(count[i] > N / 3 - N / 50 && count[i] < N / 3 + N / 50);
    /* Weight 2 on cache-2: it gets half, and only clients move to it. */
    atomic_store(&f.b[1]->weight, 2);
    memset(count, 0, sizeof(count));
    for (uint32_t c = 0; c < N; c++) {
        int now = hash_pick(&f, 0x0a000000u + c);
        count[now]++;
        if (now != before[c])
            assert_int_equal(now, 1);
    }
    assert_true(count[1] > N / 2 - N / 50 && count[1] < N / 2 + N / 50);
    assert_true(count[0] > N / 4 - N / 50 && count[0] < N / 4 + N / 50);
    /* Weight 0 drains cache-3: no client hashes there, the others stay. */
    atomic_store(&f.b[1]->weight, 1);
    atomic_store(&f.b[2]->weight, 0);
    for (uint32_t c = 0; c < N; c++) {
        int now = hash_pick(&f, 0x0a000000u + c);
        assert_int_not_equal(now, 2);
        if (before[c] != 2)
            assert_int_equal(now, before[c]);
    }
    /* ... but still resumes its own sessions. */
    struct sw_hello_keys k = {.sid_label = 3};
    fx_fini(&f);
    fx_init(&f, "session_id hash");
    atomic_store(&f.b[2]->weight, 0);
    struct sw_decision d = decide_keys(&f, &k, 0);
    assert_ptr_equal(d.b, f.b[2]);
    assert_int_equal(d.step, SW_STEP_SESSION_ID);
    /* When the drained one is all that is up, it serves. */
    atomic_store(&f.b[0]->up, 0);
    atomic_store(&f.b[1]->up, 0);
    k.sid_label = 0;
    d = decide_keys(&f, &k, 0);
    assert_ptr_equal(d.b, f.b[2]);
    fx_fini(&f);
}

static void test_weighted_roundrobin_and_leastconn(void **state)
{
    struct fx f;
    fx_init(&f, "roundrobin");
    atomic_store(&f.b[0]->weight, 3);
    atomic_store(&f.b[1]->weight, 1);
    atomic_store(&f.b[2]->weight, 0);
    int count[3] = {0, 0, 0}, run = 0, longest = 0, last = -1;
    struct sw_hello_keys k = {0};
    for (int i = 0; i < 400; i++) {
        struct sw_decision d = decide_keys(&f, &k, 0);
        int b = which(&f, &d);
        count[b]++;
        run = b == last ? run + 1 : 1;
        longest = run > longest ? run : longest;
        last = b;
    }
    assert_int_equal(count[0], 300);
    assert_int_equal(count[1], 100);
    assert_int_equal(count[2], 0);
    assert_true(longest <= 3);
    fx_fini(&f);

    fx_init(&f, "leastconn");
    atomic_store(&f.b[0]->weight, 4);
    atomic_store(&f.b[1]->weight, 1);
    atomic_store(&f.b[2]->weight, 0);
    atomic_store(&f.b[0]->active, 7);   /* 7/4 per unit of weight */
    atomic_store(&f.b[1]->active, 2);   /* 2/1 */
    atomic_store(&f.b[2]->active, 0);   /* drained: not a candidate */
    assert_ptr_equal(decide_keys(&f, &k, 0).b, f.b[0]);
    atomic_store(&f.b[0]->active, 9);   /* 9/4 > 2/1 */
    assert_ptr_equal(decide_keys(&f, &k, 0).b, f.b[1]);
    fx_fini(&f);
}

static void test_step_names(void **state)
{
    enum sw_step s;
    for (int i = 0; i < SW_STEP_FALLBACK; i++) {
        assert_int_equal(sw_step_parse(sw_step_name((enum sw_step)i), &s), 0);
        assert_int_equal(s, i);
    }
    assert_string_equal(sw_step_name(SW_STEP_FALLBACK), "fallback");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_keys_from_hello),
        cmocka_unit_test(test_keys_modn),
        cmocka_unit_test(test_label_steps_and_fall_through),
        cmocka_unit_test(test_second_psk_identity),
        cmocka_unit_test(test_sticky),
        cmocka_unit_test(test_leastconn_and_roundrobin),
        cmocka_unit_test(test_fallback_and_exclusion),
        cmocka_unit_test(test_url_affinity),
        cmocka_unit_test(test_weighted_hash),
        cmocka_unit_test(test_weighted_roundrobin_and_leastconn),
        cmocka_unit_test(test_step_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
