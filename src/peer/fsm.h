/*
 * peer/fsm -- the session state machine of the peering protocol
 * (docs/peering-protocol.md section 8): Idle, Connect, OpenSent,
 * OpenConfirm, Established, with connect-retry backoff, the hold timer and
 * keepalives, capability checks and NOTIFICATIONs.
 *
 * Pure: no sockets, no clocks, no timers of its own. The caller (the
 * session code) feeds it events and carries out the actions it returns:
 * bytes to send, timers to (re)arm, the connection to close, the session
 * coming up or going down, an UPDATE to hand to the RIB. One struct
 * peer_fsm per configured peer and connection; unit tests drive it
 * directly.
 *
 * Collision resolution (two connections to one peer) needs both: the
 * caller keeps one FSM per connection, and when a second one gets the
 * peer's OPEN, peer_fsm_collision_loser says which to close.
 */
#ifndef FERRY_PEER_FSM_H
#define FERRY_PEER_FSM_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "peer/msg.h"

enum peer_state {
    PEER_S_IDLE = 0,
    PEER_S_CONNECT,
    PEER_S_OPENSENT,
    PEER_S_OPENCONFIRM,
    PEER_S_ESTABLISHED,
};

enum peer_event {
    PEER_EV_START,        /* administrative start: leave Idle after the retry delay */
    PEER_EV_STOP,         /* administrative stop: cease 1, Idle, no retry */
    PEER_EV_RETRY_TIMER,  /* the connect-retry delay is over: the caller connects */
    PEER_EV_CONNECTED,    /* TCP + TLS up (either direction), peer certificate verified */
    PEER_EV_CONNECT_FAIL, /* connect, TLS or certificate check failed */
    PEER_EV_CLOSED,       /* the peer closed the connection */
    PEER_EV_MESSAGE,      /* a whole message (framed by peer_frame) */
    PEER_EV_HOLD_TIMER,   /* nothing received for the hold time */
    PEER_EV_KEEPALIVE_TIMER,
};

/* Actions, a bit set in struct peer_actions. */
#define PEER_A_SEND 0x01u          /* send out (bytes appended to the out buffer) */
#define PEER_A_CLOSE 0x02u         /* close the connection after sending */
#define PEER_A_CONNECT 0x04u       /* start a connection */
#define PEER_A_ARM_RETRY 0x08u     /* (re)arm the retry timer for retry_ms */
#define PEER_A_ARM_HOLD 0x10u      /* (re)arm the hold timer for hold_ms (0: stop it) */
#define PEER_A_ARM_KEEPALIVE 0x20u /* (re)arm the keepalive timer for keepalive_ms (0: stop it) */
#define PEER_A_UP 0x40u            /* the session reached Established */
#define PEER_A_DOWN 0x80u          /* the session left Established: withdraw its routes */
#define PEER_A_UPDATE 0x100u       /* `update` holds a checked UPDATE for the RIB */
#define PEER_A_REFRESH 0x200u      /* the peer asks for our routes again (family in refresh_family) */
#define PEER_A_COLLISION 0x400u    /* OPEN received: the caller checks for a second connection */

struct peer_actions {
    unsigned what;
    int64_t retry_ms, hold_ms, keepalive_ms;
    struct peer_update update;     /* PEER_A_UPDATE: points into the message given */
    uint8_t refresh_family;
    const char *log;               /* a line for the log, or NULL (static or in the fsm) */
};

struct peer_fsm_config {
    char my_id[PEER_MAX_ID + 1];
    char peer_id[PEER_MAX_ID + 1]; /* the pinned id the peer's OPEN must carry */
    uint16_t hold_time;            /* offered, seconds: 0 or 3..65535 */
    uint8_t routing_types, content_types, families;
    uint32_t max_message;          /* what we accept */
    int passive;                   /* never connect; only accept */
    int64_t retry_min_ms, retry_max_ms; /* backoff bounds: 1 s .. 60 s by default */
};

struct peer_fsm {
    enum peer_state state;
    struct peer_fsm_config cfg;
    /* negotiated in OpenConfirm/Established */
    uint16_t hold_time;
    uint8_t routing_types, content_types, families;
    int route_refresh;             /* both offered it */
    uint32_t peer_max_message;     /* the largest UPDATE we may send */
    /* backoff */
    int64_t retry_ms;
    unsigned failures;
    uint64_t rand_state;           /* jitter, seeded by the caller */
    /* for the admin API */
    uint8_t last_err_code, last_err_sub;
    int last_err_sent;             /* 1: we sent it, 0: we received it */
    char log[160];
    uint64_t msgs_in, msgs_out, updates_in, updates_out;
};

void peer_fsm_init(struct peer_fsm *f, const struct peer_fsm_config *cfg, uint64_t seed);

/*
 * Feeds one event. For PEER_EV_MESSAGE, msg/len is one whole message as
 * framed by peer_frame (a framing error is the caller's: it sends the
 * NOTIFICATION that peer_frame named via peer_fsm_protocol_error). Bytes to
 * send are appended to out. Returns the actions.
 */
void peer_fsm_event(struct peer_fsm *f, enum peer_event ev, const uint8_t *msg, size_t len,
                    struct buf *out, struct peer_actions *a);

/* Ends the session with this NOTIFICATION (a framing error, a RIB limit, ...). */
void peer_fsm_protocol_error(struct peer_fsm *f, const struct peer_err *err, struct buf *out,
                             struct peer_actions *a);

/*
 * Two connections to one peer both past OpenSent: returns 1 when this one
 * (initiated by us when `outbound`) must be closed, per section 8: the
 * connection initiated by the CDN with the higher id stays.
 */
int peer_fsm_collision_loser(const struct peer_fsm *f, int outbound);

const char *peer_state_name(enum peer_state s);

#endif
