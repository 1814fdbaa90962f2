/*
 * sess_redis -- the `redis` session store: the local sess_store, shared
 * through a Redis server by every cache server that names it, for fleets
 * larger than one node group.
 *
 * Each new session is sealed exactly like a group datagram (sess_wire:
 * AES-256-GCM under the key file's key, header authenticated), so no
 * master secret is ever in Redis or on its wire in clear. The sealed value
 * is written with SET PREFIX<hex id> PX <time left> (Redis drops it when
 * the session expires) and announced with PUBLISH PREFIX"events". Every
 * server subscribes to that channel and puts what it hears into its local
 * store; lookups are therefore always local and never wait for Redis. A
 * server that connects (at start or after Redis was away) catches up with
 * SCAN PREFIX* and GET. A removed session is deleted and announced too.
 *
 * Redis runs on the role's main loop through hiredis' asynchronous API,
 * two connections (commands; the subscription). When Redis is down or
 * goes away, the store degrades to local behaviour with one log line,
 * reconnects by itself (1 s, backing off to 10 s), logs when it is back,
 * and catches up. Sessions made meanwhile stay local.
 */
#ifndef FERRY_TLS_SESS_REDIS_H
#define FERRY_TLS_SESS_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "lib/loop.h"
#include "lib/net.h"
#include "tls/sess_store.h"
#include "tls/sess_wire.h"

struct sess_redis_conf {
    struct net_addr server;       /* Redis, numeric address:port */
    char prefix[64];              /* key prefix; the channel is prefix + "events" */
    struct sess_keyring *keys;    /* owned until given to sess_redis_start/update */
    uint16_t sender;              /* this server's id, nonzero: own announcements are skipped */
};

struct sess_redis_stats {
    uint64_t written;        /* sessions SET and published */
    uint64_t unsent;         /* new sessions not written: Redis was away */
    uint64_t received;       /* sessions taken from Redis (announced or caught up) */
    uint64_t deleted;        /* deletions applied */
    uint64_t rejected;       /* values that did not open (wrong key, forged, malformed) */
    uint64_t connects;       /* successful connections */
    int up;                  /* connected now */
};

struct sess_redis;

void sess_redis_conf_fini(struct sess_redis_conf *c);
/* Starts on loop l (connecting in the background); takes conf->keys. Never NULL. */
struct sess_redis *sess_redis_start(struct loop *l, struct sess_store *store, struct sess_redis_conf *conf);
/* A reload: new keys (the server and prefix change only at restart). */
void sess_redis_update(struct sess_redis *r, struct sess_redis_conf *conf);
void sess_redis_stop(struct sess_redis *r);
void sess_redis_stats(struct sess_redis *r, struct sess_redis_stats *out);

#endif
