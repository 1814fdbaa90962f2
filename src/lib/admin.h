/*
 * admin -- the admin HTTP endpoint of every ferryd (DESIGN.md contract 5).
 *
 *   GET  /healthz          200 "ok" while the process runs
 *   GET  /readyz           200 once every role is serving, else 503
 *   GET  /metrics          Prometheus text format
 *   *    /api/v1/...       routes registered by ferryd and the roles;
 *                          need "Authorization: Bearer TOKEN"
 *
 * The API is closed unless a token is configured: without one every
 * /api/v1 request gets 403. Tokens are compared in constant time and never
 * logged. The endpoint listens on 127.0.0.1 unless configured otherwise.
 * One request per connection (Connection: close), bodies up to 64 KiB,
 * 10 s to send a request. Runs on one loop (ferryd's main thread).
 */
#ifndef FERRY_LIB_ADMIN_H
#define FERRY_LIB_ADMIN_H

#include <stddef.h>

#include "lib/buf.h"
#include "lib/loop.h"
#include "lib/net.h"

struct admin;

struct admin_req {
    const char *method;   /* NUL-terminated */
    const char *path;     /* NUL-terminated, without the query */
    const char *query;    /* NUL-terminated, "" when absent */
    const char *body;     /* may contain NULs; body_len bytes */
    size_t body_len;
};

/*
 * A route handler: writes a JSON (or text) body into out and returns the
 * HTTP status. *ctype may be set to a static content type (default
 * application/json).
 */
typedef int (*admin_handler_cb)(void *arg, const struct admin_req *req, struct buf *out,
                                const char **ctype);

/*
 * Creates the endpoint listening on addr. token may be NULL (API closed);
 * it is copied and wiped on destroy. Returns NULL and logs on failure.
 */
struct admin *admin_create(struct loop *l, const struct net_addr *addr, const char *token);
void admin_destroy(struct admin *a);
/* Replaces the token (reload). */
void admin_set_token(struct admin *a, const char *token);
/* Marks the process ready (/readyz). */
void admin_set_ready(struct admin *a, int ready);
/*
 * Registers a handler for method + path under /api/v1 (path given without
 * the prefix, e.g. "/purge"). A path ending in '*' matches by prefix.
 */
void admin_route(struct admin *a, const char *method, const char *path, admin_handler_cb cb,
                 void *arg);

/* Helpers for handlers: value of a query or form parameter, "" if absent (URL-decoded into out). */
int admin_param(const char *query, const char *name, char *out, size_t outlen);

#endif
