/*
 * cache -- the cache server role (the documents' surrogate): terminates
 * HTTP and HTTPS, serves publishers' content from an RFC 9111 cache, and
 * pulls misses from the publisher's origin or a parent cache.
 *
 * Request flow (cache.c): find the publisher by Host; look the key up in
 * the store; serve a fresh object (HIT), serve stale while revalidating in
 * the background (STALE), revalidate with a conditional request
 * (REVALIDATED on 304), or fetch (MISS; concurrent misses collapse into
 * one fetch). Requests that cannot use the cache are forwarded as they are
 * (BYPASS); unsafe methods invalidate what they touch. Every response gets
 * Via and X-Cache; every request writes one access record (docs/access-log.md).
 */
#ifndef FERRY_CACHE_CACHE_H
#define FERRY_CACHE_CACHE_H

#include "lib/role.h"

extern const struct role_ops cache_role;
extern const struct conf_opt cache_opts[];

/* Reopens the access log (SIGUSR1). */
void cache_reopen_logs(void *inst);

#endif
