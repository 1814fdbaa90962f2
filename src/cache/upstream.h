/*
 * upstream -- the cache's HTTP/1.1 client towards origins and parent
 * caches: a keep-alive connection pool per worker, plain or TLS, with
 * connect/response/read timeouts, one retry of idempotent requests that
 * failed before any response byte (a reused connection the server had
 * closed, or a refused connect), and back-pressure (pause reading while
 * the client is slow).
 *
 * Results reach the caller through callbacks, in order: on_head once, then
 * on_data zero or more times, then on_done once -- or on_done alone with
 * an error. After up_cancel no callback runs. Everything runs on the
 * pool's loop.
 */
#ifndef FERRY_CACHE_UPSTREAM_H
#define FERRY_CACHE_UPSTREAM_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "http/http1.h"
#include "lib/buf.h"
#include "lib/loop.h"
#include "lib/net.h"

enum up_err {
    UP_E_CONNECT = -1,  /* could not connect: 502 */
    UP_E_TIMEOUT = -2,  /* connect, response or read timeout: 504 */
    UP_E_PROTO = -3,    /* malformed response: 502 */
    UP_E_RESET = -4,    /* connection closed mid-response: 502 */
    UP_E_TLS = -5,      /* TLS handshake or verification failed: 502 */
};

/* Where to send requests. Owned by the caller; must outlive the requests. */
struct up_target {
    struct net_addr addr;
    int tls;
    char *sni;          /* owned by the caller: TLS server name and name to verify */
    SSL_CTX *ctx;       /* client context (with verification), when tls */
    char *label;        /* owned by the caller: "http://host:port" for logs */
};

struct up_timeouts {
    int64_t connect_ms;
    int64_t response_ms; /* from request sent to the end of the response head */
    int64_t read_ms;     /* between body reads */
    int64_t idle_ms;     /* a pooled connection is closed after this */
    unsigned max_idle;   /* pooled idle connections per worker */
};

struct up_cb {
    /* The head of the final response (1xx are skipped); valid during the call. */
    void (*on_head)(void *arg, const struct http1_msg *resp);
    void (*on_data)(void *arg, const char *p, size_t n);
    /* 0 when the whole response arrived, else an enum up_err. */
    void (*on_done)(void *arg, int err);
};

struct up_pool;
struct up_req;

struct up_pool *up_pool_create(struct loop *loop, const struct up_timeouts *t);
void up_pool_destroy(struct up_pool *p);

/*
 * Sends a request. head holds the request head (request line, fields and
 * the empty line); body/body_len an optional body, copied. idempotent
 * allows one retry; head_method tells that the response has no body.
 * Returns the request handle (never NULL). Callbacks run later, never
 * from inside this call.
 */
struct up_req *up_request(struct up_pool *p, const struct up_target *t, const struct buf *head,
                          const char *body, size_t body_len, int idempotent, int head_method,
                          const struct up_cb *cb, void *arg);
/* Stops (1) or resumes (0) reading the response body. */
void up_pause(struct up_req *r, int paused);
/* Abandons a request: no more callbacks; its connection is closed. */
void up_cancel(struct up_req *r);
/* A short description of an up_err. */
const char *up_strerror(int err);
/* HTTP status to answer a client with for an up_err (502 or 504). */
int up_err_status(int err);

#endif
