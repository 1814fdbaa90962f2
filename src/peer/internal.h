/*
 * peer/internal -- what the peer role's files share: the speaker (one per
 * `peer` block), its configured neighbors and their connections.
 *
 * Everything runs on the main loop's thread: sessions are few and the RIB
 * is single-threaded. session.c owns the sockets, TLS and the state
 * machine of each connection; speaker.c owns the configuration, the RIB,
 * exports, the feed to the router and the admin API.
 *
 * A neighbor may hold two connections for a moment (both sides connected
 * at once); the state machine's collision rule keeps one. Only an
 * Established connection is the neighbor's session (nbr->session), and
 * only it feeds the RIB.
 */
#ifndef FERRY_PEER_INTERNAL_H
#define FERRY_PEER_INTERNAL_H

#include <openssl/ssl.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/conf.h"
#include "lib/loop.h"
#include "lib/metrics.h"
#include "lib/net.h"
#include "peer/fsm.h"
#include "peer/rib.h"

#define PR_MAX_CONNS 2            /* connections of one neighbor at a time */
#define PR_PENDING_MAX (64u << 20) /* bytes of queued changes for one neighbor before a full re-send */

struct speaker;
struct nbr;

enum pconn_phase { PC_CONNECTING = 0, PC_TLS, PC_OPEN, PC_CLOSING };

/* One TCP + TLS connection, inbound or outbound. */
struct pconn {
    struct speaker *sp;
    struct nbr *nbr;              /* NULL while an inbound one is not identified yet */
    struct loop_io io;
    SSL *ssl;                     /* owned */
    int outbound;
    enum pconn_phase phase;
    struct peer_fsm fsm;
    struct buf in, out;           /* bytes received not yet framed; bytes to send */
    struct loop_timer hold, keepalive, deadline, resume; /* resume: reading goes on after a yield */
    int want_write;               /* SSL_write wants writability */
    int close_after_send;
    int closed;                   /* being freed */
    char remote[64];              /* address, for logs */
    struct pconn *next;           /* speaker's list of connections */
};

/* A configured neighbor: a peer CDN. */
struct nbr {
    struct speaker *sp;
    char id[PEER_MAX_ID + 1];
    int has_addr;
    struct net_addr addr;         /* where to connect; none = passive */
    /* pinning: a CA store and the URI SAN, or a certificate fingerprint */
    X509_STORE *ca;               /* owned, or NULL */
    int has_fp;
    uint8_t fp[32];               /* SHA-256 of the DER certificate */
    struct rib_policy policy;     /* import; owned (its rules) */
    struct rib_policy export_pol; /* export rules only; owned */
    uint16_t hold_time;
    int rib_idx;                  /* its index in the RIB */
    struct pconn *session;        /* the Established connection, or NULL */
    struct pconn *conns[PR_MAX_CONNS]; /* connections in progress or up */
    struct loop_timer retry;
    unsigned failures;            /* connects in a row that did not reach Established */
    int64_t retry_ms;             /* the next delay */
    uint64_t rand_state;
    /* export: changes queued for this neighbor, as encoded routes (kind + key) */
    struct buf pending;
    int pending_full;             /* too much queued: send everything again instead */
    /* a table being sent in steps (speaker.c, send_dump) */
    int dump_active, dump_family, dump_withdraw;
    struct rib_cursor dump_cur;
    /* A dump after a reload that changed only the export rules sends only
     * what they change: dump_old holds the rules the peer was sent under. */
    int dump_diff;
    struct rib_policy dump_old;
    int eor_received;
    int64_t up_since_ms;          /* wall clock; 0 when down */
    int64_t up_mono_ms;           /* monotonic, when the session came up */
    uint64_t established;         /* times the session came up */
    /* the last error, for the admin API */
    char last_error[160];
    char state_text[16];
    uint64_t msgs_in, msgs_out, updates_in, updates_out;
    int removed;                  /* gone from config after a reload: stop and free */
    struct nbr *next;
};

/* A session Established for less than this loses a collision by the id rule. */
#define PR_COLLISION_YOUNG_MS 3000

struct feed_job;

struct speaker {
    char id[PEER_MAX_ID + 1];
    struct loop *loop;
    SSL_CTX *server_ctx, *client_ctx; /* owned */
    struct net_addr *listen;      /* owned */
    size_t nlisten;
    int has_source;
    struct net_addr source;       /* outbound connections come from here (port 0) */
    void *listeners;              /* owned: nlisten listeners (session.c) */
    struct nbr *nbrs;             /* owned list */
    struct pconn *conns;          /* every live connection */
    struct rib *rib;              /* owned */
    /* session parameters */
    uint16_t hold_time;
    uint8_t routing_types, content_types, families;
    uint32_t max_message;
    int64_t retry_min_ms, retry_max_ms;
    int64_t connect_timeout_ms;
    /* our own routes and how we are reached */
    struct rib_origin origin;     /* targets point into origin_text */
    char origin_text[PEER_MAX_HANDOFFS][PEER_MAX_TARGET + 1];
    char origin_auth[PEER_MAX_ID + 1]; /* origin.authoritative points here when set */
    struct buf originated;        /* encoded routes we originate (kind + key), for reloads */
    /* the feed to the router */
    struct loop_timer feed_timer;     /* feed_delay after a change */
    struct loop_timer feed_step_timer; /* the next step of a build in progress */
    struct feed_job *feed_job;        /* a build in progress, or NULL */
    int64_t feed_delay_ms;
    int feed_dirty;
    uint64_t feed_builds;
    int64_t feed_built_ms;        /* how long the last build took */
    int flush_queued;             /* a deferred export flush is queued */
    /* counters */
    struct metric *m_sessions_up, *m_notif_sent, *m_notif_recv, *m_updates_in, *m_updates_out,
        *m_routes_looped, *m_routes_rejected, *m_loc_rib, *m_refused;
    char conf_file[256];          /* for logs */
    int stopping;
};

/* session.c */
int pr__tls_init(struct speaker *sp, const char *cert, const char *key, char *err, size_t errlen);
int pr__listen(struct speaker *sp);
void pr__unlisten(struct speaker *sp);
void pr__connect(struct nbr *n);
void pr__conn_send(struct pconn *c);            /* after appending to c->out */
void pr__conn_close(struct pconn *c, const char *why);
void pr__nbr_stop(struct nbr *n, uint8_t subcode); /* cease with this subcode, no retry */
void pr__nbr_reset(struct nbr *n, uint8_t subcode); /* cease with this subcode, then connect again */
void pr__nbr_init(struct nbr *n);               /* at start, before any other pr__nbr_ call */
void pr__nbr_arm_retry(struct nbr *n);
int pr__nbr_nconns(const struct nbr *n);  /* open connections, the session included (2 during a collision) */
int pr__pin_load(struct nbr *n, const char *ca_file, const char *fp_hex, char *err, size_t errlen);

/* speaker.c: called by session.c */
void pr__session_up(struct nbr *n, struct pconn *c);
void pr__session_down(struct nbr *n, struct pconn *c);
int pr__session_update(struct nbr *n, struct pconn *c, const struct peer_update *u);
void pr__session_refresh(struct nbr *n, struct pconn *c, uint8_t family);
void pr__session_writable(struct nbr *n, struct pconn *c); /* the output drained: send more */

#endif
