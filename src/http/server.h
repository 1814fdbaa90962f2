/*
 * server -- the HTTP/1.1 server side shared by the roles that answer HTTP
 * (cache, origin): listeners per worker, connections over plain TCP or
 * TLS, request heads (and bounded request bodies) read with the strict
 * parser, responses queued as segments and written with writev or
 * SSL_write, keep-alive and pipelining, timeouts, limits and graceful
 * drain.
 *
 * Flow: bytes arrive in c->in; once a complete head (and body) is there the
 * handler's on_request runs. The handler answers at once or later (from the
 * same loop), by queuing the head and body with hconn_send* and closing the
 * response with hconn_end. Only then is the next pipelined request parsed,
 * so responses leave in request order. A handler that streams a large body
 * sends some, and is called back in on_writable when the queue has drained
 * below HCONN_LOW_WATER (pull, don't push).
 *
 * Threading: a struct hsrv belongs to one worker loop; everything here runs
 * on that loop's thread.
 */
#ifndef FERRY_HTTP_SERVER_H
#define FERRY_HTTP_SERVER_H

#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "http/date.h"
#include "http/http1.h"
#include "lib/buf.h"
#include "lib/loop.h"
#include "lib/metrics.h"
#include "lib/net.h"

#define HCONN_LOW_WATER (64u * 1024)

struct hsrv;
struct hconn;

struct hsrv_handler {
    /* A complete request is in c->req (and c->body). Must eventually end
     * the response with hconn_end or hconn_abort. */
    void (*on_request)(struct hconn *c);
    /* The output queue drained below HCONN_LOW_WATER during a response. */
    void (*on_writable)(struct hconn *c);
    /* The connection is going away while a response was in progress: the
     * handler must drop every reference to c (it is freed after). */
    void (*on_abort)(struct hconn *c);
};

struct hsrv_limits {
    struct http1_limits http;  /* head limits */
    size_t max_body;           /* request body bytes buffered; larger gets 413 */
    int64_t header_timeout_ms; /* to receive a whole request head */
    int64_t idle_timeout_ms;   /* keep-alive idle between requests */
    int64_t send_timeout_ms;   /* no progress writing a response */
    unsigned max_conns;        /* per worker; more are closed at accept */
    unsigned max_requests;     /* per connection, then Connection: close */
};

void hsrv_limits_default(struct hsrv_limits *lim);

struct hconn {
    /* Public, read-only for handlers. */
    struct http1_msg req;      /* points into the connection's input buffer */
    const char *body;          /* request body (de-chunked), body_len bytes */
    size_t body_len;
    struct net_addr peer;
    struct net_addr local;
    int is_tls;
    const char *sni;           /* TLS server name or NULL */
    int tls_resumed;           /* this TLS connection resumed a session */
    uint64_t req_start_ns;     /* monotonic, when the head was complete */
    uint64_t resp_bytes;       /* bytes queued for the current response */
    unsigned nreq;             /* requests on this connection so far */
    struct loop *loop;
    struct hsrv *srv;
    void *ud;                  /* handler's per-request state */
    void *srv_ud;              /* the handler's server-wide argument */
    int closing;               /* response will end with Connection: close */
};

/*
 * Creates a server on loop with handler h (arg in each c->srv_ud). Listeners
 * are added with hsrv_listen. ssl_ctx NULL means plain HTTP.
 */
struct hsrv *hsrv_create(struct loop *loop, const struct hsrv_handler *h, void *arg,
                         const struct hsrv_limits *lim, const char *name);
/*
 * Listens on addr (SO_REUSEPORT, so each worker opens its own). ctx, if
 * not NULL, makes the listener TLS (the SSL_CTX must outlive the server;
 * it is up-referenced). proxy_protocol: every connection starts with a
 * PROXY v2 header (from a switch) whose source address becomes c->peer.
 * Returns 0 or -errno.
 */
int hsrv_listen(struct hsrv *s, const struct net_addr *addr, SSL_CTX *ctx, int proxy_protocol);
/*
 * Serves the client connections a switch hands over on fd, an accepted
 * hand-off connection (lib/handoff.h), which the server now owns: it
 * closes it when the switch does, or on drain. TLS ones use the server's
 * TLS listeners' context, and are refused without one; plain ones are
 * refused without a plain listener. ok and bad (either may be NULL) count
 * the hand-offs taken and refused. Worker loop thread.
 */
void hsrv_handoff(struct hsrv *s, int fd, struct metric *ok, struct metric *bad);
/*
 * Counts this server's open connections in *load too (an atomic shared by
 * the servers of one process, one per worker), so that the load reported
 * to switches on hand-off connections is the process's, not one worker's.
 * Set before the server has connections; worker loop thread.
 */
void hsrv_share_load(struct hsrv *s, _Atomic unsigned *load);
/*
 * Sets the Via value (e.g. "1.1 edge-1 (ferry/0.1)") that the server's own
 * error responses (parse errors, timeouts) carry; NULL for none. Copied.
 */
void hsrv_set_via(struct hsrv *s, const char *via);
/* Replaces the SSL_CTX of TLS listeners for new connections (reload). */
void hsrv_set_ssl_ctx(struct hsrv *s, SSL_CTX *ctx);
/*
 * Stops accepting (and taking hand-offs, after those already queued) and
 * closes connections idle between requests; busy ones, and ones that have
 * not had their first request yet, close after their current (or first)
 * response. done(arg) runs once no connection is left.
 */
void hsrv_drain(struct hsrv *s, void (*done)(void *arg), void *arg);
/*
 * Drains servers that live on different worker loops (hsrv_drain runs on
 * each one's own loop); done(arg) runs on main_loop once all are empty.
 * Thread-safe.
 */
void hsrv_drain_all(struct hsrv *const *srvs, unsigned n, struct loop *main_loop,
                    void (*done)(void *arg), void *arg);
/* Closes everything at once and frees the server. */
void hsrv_destroy(struct hsrv *s);
unsigned hsrv_nconns(const struct hsrv *s);

/* Queues bytes (copied). */
void hconn_send(struct hconn *c, const void *p, size_t n);
/* Queues a printf-formatted string (copied). */
void hconn_sendf(struct hconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Queues bytes without copying; release(arg) runs once they are written or dropped. */
void hconn_send_ref(struct hconn *c, const void *p, size_t n, void (*release)(void *), void *arg);
/* Bytes queued and not yet written. */
size_t hconn_pending(const struct hconn *c);
/*
 * Ends the current response. keep_alive 0 closes the connection after the
 * queued bytes are written.
 */
void hconn_end(struct hconn *c, int keep_alive);
/* Ends the response by closing the connection right away (a broken stream). */
void hconn_abort(struct hconn *c);
/*
 * Sends a small complete error response (text/plain) and ends it; close
 * decides whether the connection closes after.
 */
void hconn_error(struct hconn *c, int status, const char *msg, int close);
/* The reason phrase of a status code. */
const char *http_reason(int status);

#endif
