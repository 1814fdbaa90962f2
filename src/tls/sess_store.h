/*
 * sess_store -- server-side TLS session state, shared by every worker
 * thread of a server (and, through the replication hooks, by the servers
 * of a node group).
 *
 * OpenSSL's own session cache is turned off (SSL_SESS_CACHE_NO_INTERNAL)
 * and its three callbacks are pointed here: a new session is serialized
 * (i2d_SSL_SESSION: the ID, the cipher, the master secret or resumption
 * secret, the times) and stored under its session ID; a resumption looks
 * the ID up and deserializes it; a session OpenSSL drops is removed. This
 * covers TLS 1.2 session IDs and TLS 1.3 stateful tickets alike, because
 * with stateful tickets OpenSSL sends the session ID as the PSK identity
 * and resolves it through the same callbacks. Stateless tickets never
 * reach the store: the client carries them.
 *
 * The table is split in shards, each under its own mutex, with entries in
 * insertion order per shard: a full shard drops its oldest entry, and an
 * entry past its expiry (the session's own time + timeout, kept in the
 * serialized session, so a replicated copy never lives longer than the
 * original) is dropped when met. Memory is bounded by max_entries times
 * the largest session (SESS_MAX_DER bytes).
 *
 * A hook (sess_store_set_hook) sees every session stored or removed by a
 * local handshake, which is where the `group` store sends it to the peers;
 * sessions received from peers enter with sess_store_put_der, which does
 * not call the hook (no echo).
 */
#ifndef FERRY_TLS_SESS_STORE_H
#define FERRY_TLS_SESS_STORE_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

#define SESS_MAX_ID 64      /* bytes of a session ID (TLS: 32; room for more) */
#define SESS_MAX_DER 8192   /* bytes of one serialized session */

struct sess_store;

struct sess_store_stats {
    uint64_t stored;        /* sessions stored by local handshakes */
    uint64_t received;      /* sessions stored from elsewhere (peers, a bulk sync) */
    uint64_t hits;          /* lookups that found a live session */
    uint64_t misses;        /* lookups that found nothing (or an expired one) */
    uint64_t removed;       /* removed by OpenSSL or a peer */
    uint64_t evicted;       /* dropped because the shard was full */
    uint64_t expired;       /* dropped because they were past their expiry */
    uint64_t entries;       /* held now */
};

/* What a hook sees: op is SESS_HOOK_NEW (der set) or SESS_HOOK_REMOVE. */
enum sess_hook_op { SESS_HOOK_NEW, SESS_HOOK_REMOVE };
typedef void (*sess_store_hook)(void *arg, enum sess_hook_op op, const uint8_t *id, size_t idlen,
                                const uint8_t *der, size_t derlen, int64_t expires);

/* A store for at most max_entries sessions (at least 16), with one reference. */
struct sess_store *sess_store_create(size_t max_entries);
struct sess_store *sess_store_ref(struct sess_store *s);
/* Drops a reference; the last one frees (and wipes) every session. */
void sess_store_unref(struct sess_store *s);

/*
 * Points ctx's session cache at s: server mode, no internal cache, the
 * new/get/remove callbacks. s must outlive ctx's handshakes (see
 * sess_store_detach).
 */
void sess_store_attach(struct sess_store *s, SSL_CTX *ctx);
/* Makes ctx's callbacks find no store (connections may outlive it). */
void sess_store_detach(SSL_CTX *ctx);

/* Called (from any worker thread) for each local new or removed session. */
void sess_store_set_hook(struct sess_store *s, sess_store_hook hook, void *arg);

/*
 * Stores a serialized session under id, expiring at `expires` (unix
 * seconds). An existing entry with the same ID is replaced. Returns 0, or
 * -1 if the sizes are out of range or it has already expired. Does not
 * call the hook.
 */
int sess_store_put_der(struct sess_store *s, const uint8_t *id, size_t idlen, const uint8_t *der,
                       size_t derlen, int64_t expires);
/* Removes id if present (no hook). */
void sess_store_remove(struct sess_store *s, const uint8_t *id, size_t idlen);

/*
 * Calls fn for every live entry, shard by shard (each shard locked while
 * it is walked, so fn must not call back into the store); stops when fn
 * returns nonzero. For a bulk sync to a restarted peer.
 */
void sess_store_foreach(struct sess_store *s,
                        int (*fn)(void *arg, const uint8_t *id, size_t idlen, const uint8_t *der,
                                  size_t derlen, int64_t expires),
                        void *arg);

void sess_store_stats(struct sess_store *s, struct sess_store_stats *out);

/*
 * Applies an opened, authentic SESSION or DELETE payload (sess_wire) from
 * another server: its sessions are put, or its ID removed. Adds the
 * sessions stored to *received and the deletions to *deleted.
 */
void sess_store_apply(struct sess_store *s, int type, const uint8_t *plain, size_t plen,
                      _Atomic uint64_t *received, _Atomic uint64_t *deleted);

#endif
