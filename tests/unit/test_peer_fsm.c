/*
 * test_peer_fsm -- the peering session state machine (src/peer/fsm.c):
 * two machines wired back to back through buffers reach Established, and
 * every way out of it (NOTIFICATION, hold timer, close, stop, a malformed
 * UPDATE) goes back to Idle with the right NOTIFICATION, DOWN and retry.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "peer/fsm.h"

static struct peer_fsm_config cfg(const char *me, const char *peer)
{
    struct peer_fsm_config c = {.hold_time = 90, .routing_types = PEER_RT_DNS, .content_types = PEER_CT_STATIC,
                                .families = PEER_FAM_AREAS, .retry_min_ms = 1000, .retry_max_ms = 60000};
    strcpy(c.my_id, me);
    strcpy(c.peer_id, peer);
    return c;
}

/* Delivers every whole message in `wire` to f; returns the union of the actions. */
static unsigned deliver(struct peer_fsm *f, struct buf *wire, struct buf *out, struct peer_actions *last)
{
    unsigned all = 0;
    size_t off = 0;
    while (off < wire->len) {
        uint8_t type;
        struct peer_err err;
        long n = peer_frame((const uint8_t *)wire->data + off, wire->len - off, 1u << 20, &type, &err);
        assert_true(n > 0);
        peer_fsm_event(f, PEER_EV_MESSAGE, (const uint8_t *)wire->data + off, (size_t)n, out, last);
        all |= last->what;
        off += (size_t)n;
    }
    buf_reset(wire);
    return all;
}

/* Brings a (connecting) and b (accepting) to Established. */
static void establish(struct peer_fsm *a, struct peer_fsm *b, struct buf *ab, struct buf *ba)
{
    struct peer_actions x;
    peer_fsm_event(a, PEER_EV_START, NULL, 0, ab, &x);
    assert_true(x.what & PEER_A_ARM_RETRY);
    peer_fsm_event(a, PEER_EV_RETRY_TIMER, NULL, 0, ab, &x);
    assert_true(x.what & PEER_A_CONNECT);
    assert_int_equal(a->state, PEER_S_CONNECT);
    peer_fsm_event(a, PEER_EV_CONNECTED, NULL, 0, ab, &x);
    assert_int_equal(a->state, PEER_S_OPENSENT);
    peer_fsm_event(b, PEER_EV_CONNECTED, NULL, 0, ba, &x);
    assert_int_equal(b->state, PEER_S_OPENSENT);
    unsigned wa = deliver(b, ab, ba, &x);  /* a's OPEN -> b: b sends KEEPALIVE */
    assert_true(wa & PEER_A_COLLISION);
    assert_int_equal(b->state, PEER_S_OPENCONFIRM);
    unsigned wb = deliver(a, ba, ab, &x);  /* b's OPEN + KEEPALIVE -> a */
    assert_true(wb & PEER_A_UP);
    assert_int_equal(a->state, PEER_S_ESTABLISHED);
    wa = deliver(b, ab, ba, &x);           /* a's KEEPALIVE -> b */
    assert_true(wa & PEER_A_UP);
    assert_int_equal(b->state, PEER_S_ESTABLISHED);
}

static void test_establish_and_negotiate(void **state)
{
    (void)state;
    struct peer_fsm a, b;
    struct peer_fsm_config ca = cfg("alpha", "beta"), cb = cfg("beta", "alpha");
    cb.hold_time = 30;
    cb.routing_types = PEER_RT_DNS | PEER_RT_HTTP;
    peer_fsm_init(&a, &ca, 1);
    peer_fsm_init(&b, &cb, 2);
    struct buf ab, ba;
    buf_init(&ab);
    buf_init(&ba);
    establish(&a, &b, &ab, &ba);
    assert_int_equal(a.hold_time, 30); /* the smaller offer */
    assert_int_equal(b.hold_time, 30);
    assert_int_equal(a.routing_types, PEER_RT_DNS);
    assert_int_equal(a.families, PEER_FAM_AREAS);
    /* keepalives every hold/3 */
    struct peer_actions x;
    peer_fsm_event(&a, PEER_EV_KEEPALIVE_TIMER, NULL, 0, &ab, &x);
    assert_true(x.what & PEER_A_SEND);
    assert_int_equal(x.keepalive_ms, 10000);
    /* an UPDATE reaches the RIB and re-arms the hold timer */
    struct peer_update_writer w;
    peer_update_begin(&w, &ab, 65536);
    const char *path[] = {"alpha"};
    struct peer_handoff_target ho = {PEER_HO_CNAME, 14, "cdn.alpha.test"};
    assert_int_equal(peer_update_attrs(&w, path, 1, &ho, 1, NULL, NULL, 0), 0);
    struct peer_route r = {.kind = PEER_R_AREA4, .plen = 8, .addr = {10}};
    assert_int_equal(peer_update_announce(&w, &r), 0);
    peer_update_end(&w);
    unsigned got = deliver(&b, &ab, &ba, &x);
    assert_true(got & PEER_A_UPDATE);
    assert_true(got & PEER_A_ARM_HOLD);
    assert_int_equal(x.hold_ms, 30000);
    assert_int_equal(b.updates_in, 1);
    buf_fini(&ab);
    buf_fini(&ba);
}

static void test_wrong_id_is_refused(void **state)
{
    (void)state;
    struct peer_fsm a, b;
    struct peer_fsm_config ca = cfg("mallory", "beta"), cb = cfg("beta", "alpha");
    peer_fsm_init(&a, &ca, 1);
    peer_fsm_init(&b, &cb, 2);
    struct buf ab, ba;
    buf_init(&ab);
    buf_init(&ba);
    struct peer_actions x;
    peer_fsm_event(&a, PEER_EV_CONNECTED, NULL, 0, &ab, &x);
    peer_fsm_event(&b, PEER_EV_CONNECTED, NULL, 0, &ba, &x);
    buf_reset(&ba);
    unsigned w = deliver(&b, &ab, &ba, &x);
    assert_true(w & PEER_A_CLOSE);
    assert_false(w & PEER_A_UP);
    assert_int_equal(b.state, PEER_S_IDLE);
    assert_int_equal(b.last_err_code, PEER_ERR_OPEN);
    assert_int_equal(b.last_err_sub, PEER_SUB_BAD_ID);
    /* the NOTIFICATION went out, and the connecting side sees it */
    w = deliver(&a, &ba, &ab, &x);
    assert_int_equal(a.state, PEER_S_IDLE);
    assert_int_equal(a.last_err_code, PEER_ERR_OPEN);
    assert_int_equal(a.last_err_sent, 0);
    assert_true(w & PEER_A_ARM_RETRY);
    buf_fini(&ab);
    buf_fini(&ba);
}

static void test_no_common_capability(void **state)
{
    (void)state;
    struct peer_fsm a, b;
    struct peer_fsm_config ca = cfg("alpha", "beta"), cb = cfg("beta", "alpha");
    cb.families = PEER_FAM_CONTENT; /* alpha offers areas only */
    peer_fsm_init(&a, &ca, 1);
    peer_fsm_init(&b, &cb, 2);
    struct buf ab, ba;
    buf_init(&ab);
    buf_init(&ba);
    struct peer_actions x;
    peer_fsm_event(&a, PEER_EV_CONNECTED, NULL, 0, &ab, &x);
    peer_fsm_event(&b, PEER_EV_CONNECTED, NULL, 0, &ba, &x);
    buf_reset(&ba);
    deliver(&b, &ab, &ba, &x);
    assert_int_equal(b.state, PEER_S_IDLE);
    assert_int_equal(b.last_err_sub, PEER_SUB_CAPABILITY);
    assert_non_null(x.log);
    buf_fini(&ab);
    buf_fini(&ba);
}

static void test_leaving_established(void **state)
{
    (void)state;
    struct peer_fsm a, b;
    struct peer_fsm_config ca = cfg("alpha", "beta"), cb = cfg("beta", "alpha");
    struct buf ab, ba;
    buf_init(&ab);
    buf_init(&ba);
    struct peer_actions x;

    /* hold timer: NOTIFICATION 4, DOWN, close, retry */
    peer_fsm_init(&a, &ca, 1);
    peer_fsm_init(&b, &cb, 2);
    establish(&a, &b, &ab, &ba);
    peer_fsm_event(&a, PEER_EV_HOLD_TIMER, NULL, 0, &ab, &x);
    assert_true(x.what & PEER_A_DOWN);
    assert_true(x.what & PEER_A_CLOSE);
    assert_true(x.what & PEER_A_ARM_RETRY);
    assert_int_equal(a.last_err_code, PEER_ERR_HOLD);
    deliver(&b, &ab, &ba, &x);
    assert_true(x.what & PEER_A_DOWN);
    assert_int_equal(b.state, PEER_S_IDLE);

    /* a malformed UPDATE: NOTIFICATION 3, DOWN */
    peer_fsm_init(&a, &ca, 1);
    peer_fsm_init(&b, &cb, 2);
    establish(&a, &b, &ab, &ba);
    uint8_t bad[] = {0, 0, 0, 17, PEER_UPDATE, 0, 0, 0, 0, 3, PEER_R_AREA4, 40, 1, 0, 0, 0, 0};
    peer_fsm_event(&b, PEER_EV_MESSAGE, bad, sizeof(bad), &ba, &x);
    assert_true(x.what & PEER_A_DOWN);
    assert_false(x.what & PEER_A_UPDATE);
    assert_int_equal(b.last_err_code, PEER_ERR_UPDATE);
    assert_int_equal(b.last_err_sub, PEER_SUB_BAD_AREA);

    /* administrative stop: cease 1, no retry */
    peer_fsm_init(&a, &ca, 1);
    peer_fsm_init(&b, &cb, 2);
    buf_reset(&ab);
    buf_reset(&ba);
    establish(&a, &b, &ab, &ba);
    peer_fsm_event(&a, PEER_EV_STOP, NULL, 0, &ab, &x);
    assert_true(x.what & PEER_A_DOWN);
    assert_false(x.what & PEER_A_ARM_RETRY);
    assert_int_equal(a.last_err_code, PEER_ERR_CEASE);

    /* the peer closes: DOWN and retry */
    peer_fsm_event(&b, PEER_EV_CLOSED, NULL, 0, &ba, &x);
    assert_true(x.what & PEER_A_DOWN);
    assert_true(x.what & PEER_A_ARM_RETRY);

    /* an OPEN in Established is a state machine error */
    peer_fsm_init(&a, &ca, 1);
    peer_fsm_init(&b, &cb, 2);
    buf_reset(&ab);
    buf_reset(&ba);
    establish(&a, &b, &ab, &ba);
    struct peer_fsm c;
    peer_fsm_init(&c, &ca, 3);
    peer_fsm_event(&c, PEER_EV_CONNECTED, NULL, 0, &ab, &x);
    deliver(&b, &ab, &ba, &x);
    assert_int_equal(b.last_err_code, PEER_ERR_FSM);
    assert_int_equal(b.last_err_sub, 3);
    buf_fini(&ab);
    buf_fini(&ba);
}

static void test_backoff_and_collision(void **state)
{
    (void)state;
    struct peer_fsm a;
    struct peer_fsm_config ca = cfg("alpha", "beta");
    peer_fsm_init(&a, &ca, 42);
    struct buf out;
    buf_init(&out);
    struct peer_actions x;
    int64_t prev = 0;
    for (int i = 0; i < 10; i++) {
        peer_fsm_event(&a, PEER_EV_RETRY_TIMER, NULL, 0, &out, &x);
        assert_true(x.what & PEER_A_CONNECT);
        peer_fsm_event(&a, PEER_EV_CONNECT_FAIL, NULL, 0, &out, &x);
        assert_true(x.what & PEER_A_ARM_RETRY);
        assert_false(x.what & PEER_A_CLOSE);
        assert_true(x.retry_ms >= 750 && x.retry_ms <= 60000);
        if (i > 0 && i < 5)
            assert_true(x.retry_ms > prev); /* doubles while below the cap (jitter is 25% at most) */
        prev = x.retry_ms;
    }
    assert_true(prev >= 45000);
    /* passive peers never connect */
    struct peer_fsm p;
    struct peer_fsm_config cp = cfg("alpha", "beta");
    cp.passive = 1;
    peer_fsm_init(&p, &cp, 1);
    peer_fsm_event(&p, PEER_EV_START, NULL, 0, &out, &x);
    assert_false(x.what & PEER_A_ARM_RETRY);
    /* collision: the connection initiated by the higher id stays */
    struct peer_fsm z;
    struct peer_fsm_config cz = cfg("zulu", "alpha");
    peer_fsm_init(&z, &cz, 1);
    assert_int_equal(peer_fsm_collision_loser(&a, 1), 1);  /* alpha < beta: alpha's own connection goes */
    assert_int_equal(peer_fsm_collision_loser(&a, 0), 0);
    assert_int_equal(peer_fsm_collision_loser(&z, 1), 0);
    assert_int_equal(peer_fsm_collision_loser(&z, 0), 1);
    assert_string_equal(peer_state_name(PEER_S_OPENCONFIRM), "OpenConfirm");
    buf_fini(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_establish_and_negotiate),
        cmocka_unit_test(test_wrong_id_is_refused),
        cmocka_unit_test(test_no_common_capability),
        cmocka_unit_test(test_leaving_established),
        cmocka_unit_test(test_backoff_and_collision),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
