/*
 * sess_group -- the `group` session store: a sess_store whose new sessions
 * are sent to the other cache servers of the node group over UDP, sealed
 * with the group key (src/tls/sess_wire.h, docs/session-wire.md), so that
 * any server of the group resumes a session another one issued.
 *
 * Sending happens on the thread that finished the handshake (the store's
 * hook): one sealed datagram per new session, sent to every peer. A
 * session OpenSSL removes is sent as a DELETE. Receiving happens on one
 * loop (the role's main loop): each datagram is opened, checked against
 * the replay filter, and its sessions are put into the local store. A
 * server that starts asks one peer for its live sessions (SYNC_REQUEST),
 * and the next one every two seconds while nothing has arrived; a peer
 * answers with as many datagrams of at most sync_datagram bytes as it
 * takes. Sync requests are
 * answered only to configured peer addresses, so a forged source address
 * cannot turn a server into a reflector (and a request must be sealed with
 * the group key anyway).
 *
 * UDP may lose datagrams: a session that does not arrive only costs a
 * full handshake if its client lands on that server. Nothing waits for an
 * answer, so a dead or unreachable peer costs nothing but the sends.
 */
#ifndef FERRY_TLS_SESS_GROUP_H
#define FERRY_TLS_SESS_GROUP_H

#include <stddef.h>
#include <stdint.h>

#include "lib/loop.h"
#include "lib/net.h"
#include "tls/sess_store.h"
#include "tls/sess_wire.h"

#define SESS_GROUP_MAX_PEERS 64

struct sess_group_conf {
    struct net_addr listen;               /* UDP address to bind */
    struct net_addr peers[SESS_GROUP_MAX_PEERS];
    size_t npeers;
    struct sess_keyring *keys;            /* owned until given to sess_group_start/update */
    uint16_t sender;                      /* this server's id in the group, nonzero */
    uint32_t window_ms;                   /* replay filter clock window */
    size_t sync_datagram;                 /* largest datagram of a sync answer */
};

struct sess_group_stats {
    uint64_t sent;           /* sessions sent (new, to each peer counted once) */
    uint64_t datagrams_out;  /* datagrams sent, all peers and kinds */
    uint64_t send_errors;    /* sendto failures (buffer full, unreachable) */
    uint64_t received;       /* sessions accepted from peers */
    uint64_t deleted;        /* DELETEs applied */
    uint64_t rejected;       /* datagrams refused, all reasons */
    uint64_t rejected_by[16];/* by -sess_wire_err (1..15); [0]: a sync request from a non-peer */
    uint64_t sync_requests;  /* SYNC_REQUESTs answered */
    uint64_t sync_sent;      /* sessions sent in sync answers */
};

struct sess_group;

/* Frees what a conf owns (its keyring). */
void sess_group_conf_fini(struct sess_group_conf *c);

/*
 * Binds conf->listen on loop l, hooks into store (keeping a reference) and
 * asks the peers for their sessions. Takes conf->keys (set to NULL).
 * Returns NULL with a message in err on failure.
 */
struct sess_group *sess_group_start(struct loop *l, struct sess_store *store,
                                    struct sess_group_conf *conf, char *err, size_t errlen);
/*
 * A reload: new keys, peers, window and sync size (the listen address
 * changes only at restart). Takes conf->keys. Loop thread.
 */
void sess_group_update(struct sess_group *g, struct sess_group_conf *conf);
/* Unhooks from the store, closes the socket and frees g. Loop thread,
 * with no handshake running on another thread. */
void sess_group_stop(struct sess_group *g);

void sess_group_stats(struct sess_group *g, struct sess_group_stats *out);

#endif
