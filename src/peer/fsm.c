/*
 * peer/fsm -- the peering session's state machine (docs/peering-protocol.md
 * section 8). See fsm.h for how the caller drives it.
 *
 *   Idle --retry timer--> Connect --connected, OPEN sent--> OpenSent
 *   OpenSent --acceptable OPEN, KEEPALIVE sent--> OpenConfirm
 *   OpenConfirm --KEEPALIVE--> Established
 *   any state --error, NOTIFICATION, close, hold timer--> Idle (retry later)
 *
 * Before Established the hold timer guards the handshake with the larger of
 * the configured hold time and 30 s, so a silent peer cannot hold a
 * connection open forever even when hold time 0 (no keepalives) is agreed.
 */
#include "peer/fsm.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lib/util.h"

#define OPEN_HOLD_MS 30000

static const char *const state_names[] = {"Idle", "Connect", "OpenSent", "OpenConfirm", "Established"};

const char *peer_state_name(enum peer_state s)
{
    return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "?";
}

void peer_fsm_init(struct peer_fsm *f, const struct peer_fsm_config *cfg, uint64_t seed)
{
    memset(f, 0, sizeof(*f));
    f->cfg = *cfg;
    if (f->cfg.retry_min_ms <= 0)
        f->cfg.retry_min_ms = 1000;
    if (f->cfg.retry_max_ms < f->cfg.retry_min_ms)
        f->cfg.retry_max_ms = 60000;
    if (f->cfg.max_message == 0)
        f->cfg.max_message = PEER_MAX_MSG_DEFAULT;
    f->retry_ms = f->cfg.retry_min_ms;
    f->rand_state = seed | 1;
    f->state = PEER_S_IDLE;
}

static void logf_(struct peer_fsm *f, struct peer_actions *a, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void logf_(struct peer_fsm *f, struct peer_actions *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->log, sizeof(f->log), fmt, ap);
    va_end(ap);
    a->log = f->log;
}

/* Back to Idle; a retry is armed unless the peer is passive or stopped. */
static void to_idle(struct peer_fsm *f, struct peer_actions *a, int retry)
{
    if (f->state == PEER_S_ESTABLISHED)
        a->what |= PEER_A_DOWN;
    if (f->state != PEER_S_IDLE && f->state != PEER_S_CONNECT)
        a->what |= PEER_A_CLOSE;
    f->state = PEER_S_IDLE;
    a->what |= PEER_A_ARM_HOLD | PEER_A_ARM_KEEPALIVE;
    a->hold_ms = a->keepalive_ms = 0;
    if (retry && !f->cfg.passive) {
        f->failures++;
        int64_t base = f->cfg.retry_min_ms;
        for (unsigned i = 1; i < f->failures && base < f->cfg.retry_max_ms; i++)
            base *= 2;
        if (base > f->cfg.retry_max_ms)
            base = f->cfg.retry_max_ms;
        /* jitter: 75% to 100% of the delay, so two speakers do not retry in step */
        f->retry_ms = base - (int64_t)(rand_xorshift(&f->rand_state) % (uint64_t)(base / 4 + 1));
        a->what |= PEER_A_ARM_RETRY;
        a->retry_ms = f->retry_ms;
    }
}

static void notify(struct peer_fsm *f, struct buf *out, struct peer_actions *a, uint8_t code, uint8_t sub,
                   const void *data, size_t dlen)
{
    peer_encode_notification(out, code, sub, data, dlen);
    a->what |= PEER_A_SEND;
    f->msgs_out++;
    f->last_err_code = code;
    f->last_err_sub = sub;
    f->last_err_sent = 1;
}

void peer_fsm_protocol_error(struct peer_fsm *f, const struct peer_err *err, struct buf *out,
                             struct peer_actions *a)
{
    memset(a, 0, sizeof(*a));
    if (f->state != PEER_S_IDLE && f->state != PEER_S_CONNECT)
        notify(f, out, a, err->code, err->subcode, NULL, 0);
    logf_(f, a, "sent NOTIFICATION: %s", err->what ? err->what : peer_err_text(err->code, err->subcode));
    to_idle(f, a, 1);
}

static void send_open(struct peer_fsm *f, struct buf *out, struct peer_actions *a)
{
    struct peer_open o = {.version = PEER_VERSION, .hold_time = f->cfg.hold_time,
                          .routing_types = f->cfg.routing_types, .content_types = f->cfg.content_types,
                          .families = f->cfg.families, .route_refresh = 1, .max_message = f->cfg.max_message,
                          .nmetrics = 3, .metrics = {PEER_METRIC_LOAD, PEER_METRIC_CAPACITY, PEER_METRIC_COST}};
    memcpy(o.id, f->cfg.my_id, sizeof(o.id));
    peer_encode_open(out, &o);
    a->what |= PEER_A_SEND;
    f->msgs_out++;
}

static void send_keepalive(struct peer_fsm *f, struct buf *out, struct peer_actions *a)
{
    peer_encode_keepalive(out);
    a->what |= PEER_A_SEND;
    f->msgs_out++;
}

static void arm_hold(struct peer_fsm *f, struct peer_actions *a)
{
    a->what |= PEER_A_ARM_HOLD;
    if (f->state == PEER_S_ESTABLISHED || f->state == PEER_S_OPENCONFIRM)
        a->hold_ms = (int64_t)f->hold_time * 1000;
    else
        a->hold_ms = (int64_t)f->cfg.hold_time * 1000 > OPEN_HOLD_MS ? (int64_t)f->cfg.hold_time * 1000
                                                                     : OPEN_HOLD_MS;
}

/* The peer's OPEN in OpenSent. */
static void got_open(struct peer_fsm *f, const uint8_t *msg, size_t len, struct buf *out,
                     struct peer_actions *a)
{
    struct peer_open o;
    struct peer_err err;
    if (peer_decode_open(msg, len, &o, &err) < 0) {
        uint8_t ver = PEER_VERSION;
        notify(f, out, a, err.code, err.subcode, err.subcode == PEER_SUB_VERSION ? &ver : NULL,
               err.subcode == PEER_SUB_VERSION ? 1 : 0);
        logf_(f, a, "refused the peer's OPEN: %s", err.what);
        to_idle(f, a, 1);
        return;
    }
    if (strcmp(o.id, f->cfg.peer_id) != 0) {
        notify(f, out, a, PEER_ERR_OPEN, PEER_SUB_BAD_ID, o.id, strlen(o.id));
        logf_(f, a, "refused the peer's OPEN: it says it is CDN \"%s\", not the one configured", o.id);
        to_idle(f, a, 1);
        return;
    }
    uint8_t rt = o.routing_types & f->cfg.routing_types;
    uint8_t ct = o.content_types & f->cfg.content_types;
    uint8_t fam = o.families & f->cfg.families;
    if (!rt || !ct || !fam) {
        notify(f, out, a, PEER_ERR_OPEN, PEER_SUB_CAPABILITY, NULL, 0);
        logf_(f, a, "refused the peer's OPEN: %s",
              !fam  ? "no common message family"
              : !rt ? "no common routing type"
                    : "no common content type");
        to_idle(f, a, 1);
        return;
    }
    f->routing_types = rt;
    f->content_types = ct;
    f->families = fam;
    f->route_refresh = o.route_refresh;
    f->peer_max_message = o.max_message ? o.max_message : PEER_MAX_MSG_DEFAULT;
    if (f->peer_max_message > PEER_MAX_MSG_LIMIT)
        f->peer_max_message = PEER_MAX_MSG_LIMIT;
    f->hold_time = o.hold_time < f->cfg.hold_time ? o.hold_time : f->cfg.hold_time;
    send_keepalive(f, out, a);
    f->state = PEER_S_OPENCONFIRM;
    arm_hold(f, a);
    a->what |= PEER_A_ARM_KEEPALIVE | PEER_A_COLLISION;
    a->keepalive_ms = (int64_t)f->hold_time * 1000 / 3;
}

static void got_notification(struct peer_fsm *f, const uint8_t *msg, size_t len, struct peer_actions *a)
{
    uint8_t code = 0, sub = 0;
    const uint8_t *d;
    size_t dl;
    struct peer_err err;
    if (peer_decode_notification(msg, len, &code, &sub, &d, &dl, &err) == 0) {
        f->last_err_code = code;
        f->last_err_sub = sub;
        f->last_err_sent = 0;
    }
    logf_(f, a, "the peer sent NOTIFICATION: %s", peer_err_text(code, sub));
    /* the peer closes after a NOTIFICATION; so do we, without answering */
    to_idle(f, a, 1);
}

static void fsm_error(struct peer_fsm *f, struct buf *out, struct peer_actions *a, uint8_t sub, const char *why)
{
    notify(f, out, a, PEER_ERR_FSM, sub, NULL, 0);
    logf_(f, a, "state machine error: %s", why);
    to_idle(f, a, 1);
}

static void got_message(struct peer_fsm *f, const uint8_t *msg, size_t len, struct buf *out,
                        struct peer_actions *a)
{
    struct peer_err err;
    uint8_t type = len >= PEER_HDR_LEN ? msg[4] : 0;
    f->msgs_in++;
    if (type == PEER_NOTIFICATION) {
        got_notification(f, msg, len, a);
        return;
    }
    switch (f->state) {
    case PEER_S_OPENSENT:
        if (type != PEER_OPEN) {
            fsm_error(f, out, a, 1, "a message other than OPEN in OpenSent");
            return;
        }
        got_open(f, msg, len, out, a);
        return;
    case PEER_S_OPENCONFIRM:
        if (type != PEER_KEEPALIVE) {
            fsm_error(f, out, a, 2, "a message other than KEEPALIVE in OpenConfirm");
            return;
        }
        if (peer_decode_keepalive(msg, len, &err) < 0) {
            peer_fsm_protocol_error(f, &err, out, a);
            return;
        }
        f->state = PEER_S_ESTABLISHED;
        f->failures = 0;
        f->retry_ms = f->cfg.retry_min_ms;
        a->what |= PEER_A_UP;
        arm_hold(f, a);
        logf_(f, a, "session with %s established", f->cfg.peer_id);
        return;
    case PEER_S_ESTABLISHED:
        arm_hold(f, a);
        switch (type) {
        case PEER_KEEPALIVE:
            if (peer_decode_keepalive(msg, len, &err) < 0)
                peer_fsm_protocol_error(f, &err, out, a);
            return;
        case PEER_UPDATE:
            if (peer_decode_update(msg, len, &a->update, &err) < 0) {
                unsigned keep = a->what;
                peer_fsm_protocol_error(f, &err, out, a);
                a->what |= keep;
                return;
            }
            f->updates_in++;
            a->what |= PEER_A_UPDATE;
            return;
        case PEER_ROUTE_REFRESH:
            if (peer_decode_route_refresh(msg, len, &a->refresh_family, &err) < 0) {
                peer_fsm_protocol_error(f, &err, out, a);
                return;
            }
            if (f->route_refresh)
                a->what |= PEER_A_REFRESH;
            return;
        default:
            fsm_error(f, out, a, 3, "OPEN in Established");
            return;
        }
    default:
        /* no connection in Idle/Connect: a stray message from a closing socket */
        return;
    }
}

void peer_fsm_event(struct peer_fsm *f, enum peer_event ev, const uint8_t *msg, size_t len,
                    struct buf *out, struct peer_actions *a)
{
    memset(a, 0, sizeof(*a));
    switch (ev) {
    case PEER_EV_START:
        if (f->state == PEER_S_IDLE && !f->cfg.passive) {
            a->what |= PEER_A_ARM_RETRY;
            a->retry_ms = 0;
        }
        return;
    case PEER_EV_STOP:
        if (f->state != PEER_S_IDLE && f->state != PEER_S_CONNECT)
            notify(f, out, a, PEER_ERR_CEASE, PEER_SUB_SHUTDOWN, NULL, 0);
        logf_(f, a, "session with %s stopped", f->cfg.peer_id);
        to_idle(f, a, 0);
        return;
    case PEER_EV_RETRY_TIMER:
        if (f->state == PEER_S_IDLE && !f->cfg.passive) {
            f->state = PEER_S_CONNECT;
            a->what |= PEER_A_CONNECT;
        }
        return;
    case PEER_EV_CONNECTED:
        if (f->state != PEER_S_IDLE && f->state != PEER_S_CONNECT)
            return;
        send_open(f, out, a);
        f->state = PEER_S_OPENSENT;
        arm_hold(f, a);
        return;
    case PEER_EV_CONNECT_FAIL:
        if (f->state == PEER_S_CONNECT || f->state == PEER_S_IDLE) {
            logf_(f, a, "cannot connect to %s", f->cfg.peer_id);
            f->state = PEER_S_CONNECT; /* so to_idle closes nothing and retries */
            to_idle(f, a, 1);
        }
        return;
    case PEER_EV_CLOSED:
        if (f->state == PEER_S_IDLE)
            return;
        logf_(f, a, "%s closed the connection", f->cfg.peer_id);
        to_idle(f, a, 1);
        return;
    case PEER_EV_MESSAGE:
        got_message(f, msg, len, out, a);
        return;
    case PEER_EV_HOLD_TIMER:
        if (f->state == PEER_S_IDLE || f->state == PEER_S_CONNECT)
            return;
        notify(f, out, a, PEER_ERR_HOLD, 0, NULL, 0);
        logf_(f, a, "hold timer expired: nothing from %s", f->cfg.peer_id);
        to_idle(f, a, 1);
        return;
    case PEER_EV_KEEPALIVE_TIMER:
        if (f->state != PEER_S_OPENCONFIRM && f->state != PEER_S_ESTABLISHED)
            return;
        send_keepalive(f, out, a);
        a->what |= PEER_A_ARM_KEEPALIVE;
        a->keepalive_ms = (int64_t)f->hold_time * 1000 / 3;
        return;
    }
}

int peer_fsm_collision_loser(const struct peer_fsm *f, int outbound)
{
    /* the connection initiated by the higher id stays */
    int we_are_higher = strcmp(f->cfg.my_id, f->cfg.peer_id) > 0;
    return outbound ? !we_are_higher : we_are_higher;
}
