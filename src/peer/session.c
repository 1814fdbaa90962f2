/*
 * peer/session -- the connections of the peer role: TCP, mutually
 * authenticated TLS 1.3 with the ALPN id ferry-peer/1, pinning of the
 * peer's certificate (CA + URI SAN ferry-cdn:ID, or a SHA-256
 * fingerprint), framing, and one state machine (fsm.c) per connection
 * whose actions this file carries out (docs/peering-protocol.md 2, 8).
 *
 *   outbound: connect --writable--> TLS handshake --pin check--> OPEN ...
 *   inbound:  accept --> TLS handshake --which neighbor pins this cert?--> OPEN ...
 *
 * Every state machine here is passive (it never asks to connect):
 * reconnecting is the neighbor's business, with its own backoff, so that a
 * connection that lost a collision, or an inbound one, never starts a
 * second retry schedule. TLS verification is done after the handshake,
 * by hand, because each neighbor has its own pin: OpenSSL's verify
 * callback accepts any chain and this file decides.
 */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "peer/internal.h"

static const unsigned char alpn_wire[] = "\x0c" "ferry-peer/1";
#define ALPN_ID "ferry-peer/1"
#define READ_CHUNK 65536
#define READ_BUDGET (128u << 10)     /* bytes read per loop iteration before yielding (~25k routes) */
#define CLOSE_LINGER_MS 1000

static void conn_io(struct loop_io *io, unsigned events);
static void conn_free(void *arg);
static void read_more(struct loop_timer *t);

/* ---- TLS contexts ---------------------------------------------------- */

static int accept_any(int ok, X509_STORE_CTX *x)
{
    (void)ok;
    (void)x;
    return 1; /* checked after the handshake against the neighbor's pin */
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, alpn_wire, sizeof(alpn_wire) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *make_ctx(int server, const char *cert, const char *key, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(err, errlen, "cert %s: cannot load the certificate chain", cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "key %s: cannot load the key, or it does not match the certificate", key);
        goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, accept_any);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (server)
        SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    else
        SSL_CTX_set_alpn_protos(ctx, alpn_wire, sizeof(alpn_wire) - 1);
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

int pr__tls_init(struct speaker *sp, const char *cert, const char *key, char *err, size_t errlen)
{
    sp->server_ctx = make_ctx(1, cert, key, err, errlen);
    if (sp->server_ctx == NULL)
        return -1;
    sp->client_ctx = make_ctx(0, cert, key, err, errlen);
    if (sp->client_ctx == NULL) {
        SSL_CTX_free(sp->server_ctx);
        sp->server_ctx = NULL;
        return -1;
    }
    return 0;
}

int pr__pin_load(struct nbr *n, const char *ca_file, const char *fp_hex, char *err, size_t errlen)
{
    if (fp_hex) {
        /* 64 hex digits, colons allowed between pairs (as `openssl x509 -fingerprint` prints) */
        unsigned got = 0;
        for (const char *p = fp_hex; *p; p++) {
            if (*p == ':')
                continue;
            int hi = hex_digit(p[0]), lo = p[1] ? hex_digit(p[1]) : -1;
            if (hi < 0 || lo < 0 || got >= 32) {
                snprintf(err, errlen, "fingerprint: expected the SHA-256 of the certificate in hex");
                return -1;
            }
            n->fp[got++] = (uint8_t)(hi << 4 | lo);
            p++;
        }
        if (got != 32) {
            snprintf(err, errlen, "fingerprint: expected 32 bytes in hex, got %u", got);
            return -1;
        }
        n->has_fp = 1;
    }
    if (ca_file) {
        n->ca = X509_STORE_new();
        if (n->ca == NULL || X509_STORE_load_file(n->ca, ca_file) != 1) {
            ERR_clear_error();
            snprintf(err, errlen, "ca %s: cannot load the CA certificates", ca_file);
            X509_STORE_free(n->ca);
            n->ca = NULL;
            return -1;
        }
    }
    return 0;
}

/* Does the certificate carry the URI SAN ferry-cdn:ID? */
static int has_cdn_uri(X509 *cert, const char *id)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    if (gens == NULL)
        return 0;
    char want[PEER_MAX_ID + 16];
    int wl = snprintf(want, sizeof(want), "ferry-cdn:%s", id);
    int found = 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(gens) && !found; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_URI)
            continue;
        const ASN1_IA5STRING *s = g->d.uniformResourceIdentifier;
        found = ASN1_STRING_length(s) == wl && memcmp(ASN1_STRING_get0_data(s), want, (size_t)wl) == 0;
    }
    GENERAL_NAMES_free(gens);
    return found;
}

/* Does the peer's certificate on ssl satisfy n's pin? */
static int pin_match(const struct nbr *n, SSL *ssl)
{
    X509 *leaf = SSL_get0_peer_certificate(ssl);
    if (leaf == NULL)
        return 0;
    if (n->has_fp) {
        uint8_t md[EVP_MAX_MD_SIZE];
        unsigned mdlen = 0;
        if (X509_digest(leaf, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32)
            return 0;
        if (CRYPTO_memcmp(md, n->fp, 32) != 0)
            return 0;
        if (!n->ca)
            return 1;
    }
    if (n->ca) {
        X509_STORE_CTX *x = X509_STORE_CTX_new();
        if (x == NULL)
            return 0;
        int ok = X509_STORE_CTX_init(x, n->ca, leaf, SSL_get_peer_cert_chain(ssl)) == 1 &&
                 X509_verify_cert(x) == 1;
        X509_STORE_CTX_free(x);
        ERR_clear_error();
        return ok && has_cdn_uri(leaf, n->id);
    }
    return 0;
}

/* ---- connections ------------------------------------------------------- */

static struct pconn *conn_new(struct speaker *sp, int fd, int outbound, const char *remote)
{
    struct pconn *c = xcalloc(1, sizeof(*c));
    c->sp = sp;
    c->outbound = outbound;
    buf_init(&c->in);
    buf_init(&c->out);
    snprintf(c->remote, sizeof(c->remote), "%s", remote);
    c->io.fd = fd;
    loop_timer_init(sp->loop, &c->hold, NULL);
    loop_timer_init(sp->loop, &c->keepalive, NULL);
    loop_timer_init(sp->loop, &c->deadline, NULL);
    loop_timer_init(sp->loop, &c->resume, read_more);
    c->next = sp->conns;
    sp->conns = c;
    return c;
}

static const char *who(const struct pconn *c)
{
    return c->nbr ? c->nbr->id : c->remote;
}

static void nbr_detach(struct pconn *c)
{
    struct nbr *n = c->nbr;
    if (n == NULL)
        return;
    for (unsigned i = 0; i < PR_MAX_CONNS; i++)
        if (n->conns[i] == c)
            n->conns[i] = NULL;
}

int pr__nbr_nconns(const struct nbr *n)
{
    int k = 0;
    for (unsigned i = 0; i < PR_MAX_CONNS; i++)
        k += n->conns[i] != NULL;
    return k;
}

static void retry_fire(struct loop_timer *t)
{
    struct nbr *n = (struct nbr *)((char *)t - offsetof(struct nbr, retry));
    if (n->sp->stopping || n->removed || n->session || pr__nbr_nconns(n) > 0)
        return;
    pr__connect(n);
}

void pr__nbr_init(struct nbr *n)
{
    /* a zeroed timer looks armed (heap index 0): every timer is initialised before use */
    loop_timer_init(n->sp->loop, &n->retry, retry_fire);
}

void pr__nbr_arm_retry(struct nbr *n)
{
    if (!n->has_addr || n->sp->stopping || n->removed)
        return;
    int64_t base = n->sp->retry_min_ms;
    for (unsigned i = 1; i < n->failures && base < n->sp->retry_max_ms; i++)
        base *= 2;
    if (base > n->sp->retry_max_ms)
        base = n->sp->retry_max_ms;
    if (n->failures == 0)
        base = 0;
    /* jitter: 75% to 100% of the delay, so two speakers do not retry in step */
    n->retry_ms = base - (int64_t)(rand_xorshift(&n->rand_state) % (uint64_t)(base / 4 + 1));
    loop_timer_start(&n->retry, n->retry_ms);
}

/* Tries to write c->out; returns -1 on a fatal write error. */
static int flush_out(struct pconn *c)
{
    while (buf_avail(&c->out) > 0) {
        size_t n = buf_avail(&c->out);
        int w = SSL_write(c->ssl, buf_head(&c->out), (int)(n > (1u << 30) ? (1u << 30) : n));
        if (w > 0) {
            buf_consume(&c->out, (size_t)w);
            continue;
        }
        int e = SSL_get_error(c->ssl, w);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            c->want_write = 1;
            return 0;
        }
        ERR_clear_error();
        return -1;
    }
    c->want_write = 0;
    return 0;
}

static void update_interest(struct pconn *c)
{
    if (c->closed || c->io.loop == NULL)
        return;
    loop_io_modify(&c->io, LOOP_READ | (c->want_write ? LOOP_WRITE : 0));
}

void pr__conn_send(struct pconn *c)
{
    if (c->closed || c->ssl == NULL || c->phase != PC_OPEN)
        return;
    if (flush_out(c) < 0) {
        pr__conn_close(c, "write failed");
        return;
    }
    update_interest(c);
}

/*
 * Ends the connection now: the session (if it was the neighbor's) goes down
 * and its routes are withdrawn, and the neighbor's retry is armed when no
 * other connection is left. Bytes already queued (a NOTIFICATION) are given
 * one last try.
 */
void pr__conn_close(struct pconn *c, const char *why)
{
    if (c->closed)
        return;
    c->closed = 1;
    struct nbr *n = c->nbr;
    if (why)
        log_info("peer %s (%s): connection closed: %s", who(c), c->remote, why);
    if (c->ssl && c->phase == PC_OPEN && buf_avail(&c->out))
        (void)flush_out(c);
    if (c->ssl && c->phase >= PC_OPEN)
        (void)SSL_shutdown(c->ssl);
    ERR_clear_error();
    loop_timer_stop(&c->hold);
    loop_timer_stop(&c->keepalive);
    loop_timer_stop(&c->deadline);
    loop_timer_stop(&c->resume);
    loop_io_close(&c->io);
    if (n) {
        if (n->session == c) {
            n->session = NULL;
            pr__session_down(n, c);
        }
        n->msgs_in += c->fsm.msgs_in;
        n->msgs_out += c->fsm.msgs_out;
        nbr_detach(c);
        if (pr__nbr_nconns(n) == 0 && n->session == NULL) {
            snprintf(n->state_text, sizeof(n->state_text), "Idle");
            n->failures++;
            pr__nbr_arm_retry(n);
        }
    }
    /* unlink; free once the current loop iteration is over */
    for (struct pconn **p = &c->sp->conns; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    loop_defer(c->sp->loop, conn_free, c);
}

static void conn_free(void *arg)
{
    struct pconn *c = arg;
    if (c->ssl)
        SSL_free(c->ssl);
    buf_fini(&c->in);
    buf_fini(&c->out);
    free(c);
}

static void hold_fire(struct loop_timer *t);
static void keepalive_fire(struct loop_timer *t);
static void apply(struct pconn *c, struct peer_actions *a);

/* Ends the session on c with this NOTIFICATION. */
static void protocol_error(struct pconn *c, uint8_t code, uint8_t sub, const char *what)
{
    struct peer_err err = {.code = code, .subcode = sub, .what = what};
    struct peer_actions a;
    peer_fsm_protocol_error(&c->fsm, &err, &c->out, &a);
    apply(c, &a);
}

/* Ends every connection of n: cease with subcode on those in OPEN. */
static void nbr_close_all(struct nbr *n, uint8_t subcode, const char *why)
{
    for (unsigned i = 0; i < PR_MAX_CONNS; i++) {
        struct pconn *c = n->conns[i];
        if (c == NULL)
            continue;
        if (c->phase == PC_OPEN)
            protocol_error(c, PEER_ERR_CEASE, subcode, NULL);
        if (!c->closed)
            pr__conn_close(c, why);
    }
}

void pr__nbr_stop(struct nbr *n, uint8_t subcode)
{
    nbr_close_all(n, subcode, "stopped");
    loop_timer_stop(&n->retry);
}

void pr__nbr_reset(struct nbr *n, uint8_t subcode)
{
    /* closing the last connection arms the retry (with an address) */
    nbr_close_all(n, subcode, "reset");
}

/* A second connection of the same neighbor reached OpenConfirm. */
static void collision(struct pconn *c)
{
    struct nbr *n = c->nbr;
    struct pconn *o = NULL;
    for (unsigned i = 0; i < PR_MAX_CONNS; i++)
        if (n->conns[i] && n->conns[i] != c && n->conns[i]->fsm.state >= PEER_S_OPENCONFIRM)
            o = n->conns[i];
    if (o == NULL)
        return;
    struct pconn *loser;
    /*
     * A session that is up stays up. But one Established only just now is
     * treated as still opening: when both sides connect at once, each may
     * see a different connection reach Established first, and "keep the
     * Established one" would then close both. The id rule gives the same
     * answer on both sides.
     */
    if (o->fsm.state == PEER_S_ESTABLISHED && n->session == o &&
        time_mono_ms() - n->up_mono_ms >= PR_COLLISION_YOUNG_MS)
        loser = c;
    else
        loser = peer_fsm_collision_loser(&c->fsm, c->outbound) ? c : o;
    log_info("peer %s: both sides connected; closing the %s connection (collision resolution)", n->id,
             loser->outbound ? "outbound" : "inbound");
    protocol_error(loser, PEER_ERR_CEASE, PEER_SUB_COLLISION, "collision resolution");
}

/* Carries out the state machine's actions. */
static void apply(struct pconn *c, struct peer_actions *a)
{
    struct nbr *n = c->nbr;
    if (a->log)
        log_info("peer %s: %s", who(c), a->log);
    if (n && (a->what & PEER_A_CLOSE) && c->fsm.last_err_code && c->fsm.last_err_sent) {
        snprintf(n->last_error, sizeof(n->last_error), "sent: %s",
                 peer_err_text(c->fsm.last_err_code, c->fsm.last_err_sub));
        metric_inc(c->sp->m_notif_sent);
    }
    if (a->what & PEER_A_ARM_HOLD) {
        if (a->hold_ms > 0)
            loop_timer_start(&c->hold, a->hold_ms);
        else
            loop_timer_stop(&c->hold);
    }
    if (a->what & PEER_A_ARM_KEEPALIVE) {
        if (a->keepalive_ms > 0)
            loop_timer_start(&c->keepalive, a->keepalive_ms);
        else
            loop_timer_stop(&c->keepalive);
    }
    if (a->what & PEER_A_SEND)
        pr__conn_send(c);
    if (c->closed)
        return;
    if (a->what & PEER_A_CLOSE) {
        pr__conn_close(c, NULL);
        return;
    }
    if (n == NULL)
        return;
    snprintf(n->state_text, sizeof(n->state_text), "%s", peer_state_name(c->fsm.state));
    if (a->what & PEER_A_COLLISION) {
        collision(c);
        if (c->closed)
            return;
    }
    if (a->what & PEER_A_UP) {
        n->session = c;
        n->failures = 0;
        pr__session_up(n, c);
        if (c->closed)
            return;
    }
    if (a->what & PEER_A_UPDATE) {
        if (pr__session_update(n, c, &a->update) == RIB_TOO_MANY) {
            protocol_error(c, PEER_ERR_CEASE, PEER_SUB_TOO_MANY, "the peer sent more routes than its limit");
            return;
        }
    }
    if (a->what & PEER_A_REFRESH)
        pr__session_refresh(n, c, a->refresh_family);
}

static void hold_fire(struct loop_timer *t)
{
    struct pconn *c = (struct pconn *)((char *)t - offsetof(struct pconn, hold));
    struct peer_actions a;
    peer_fsm_event(&c->fsm, PEER_EV_HOLD_TIMER, NULL, 0, &c->out, &a);
    apply(c, &a);
}

static void keepalive_fire(struct loop_timer *t)
{
    struct pconn *c = (struct pconn *)((char *)t - offsetof(struct pconn, keepalive));
    struct peer_actions a;
    peer_fsm_event(&c->fsm, PEER_EV_KEEPALIVE_TIMER, NULL, 0, &c->out, &a);
    apply(c, &a);
}

static void deadline_fire(struct loop_timer *t)
{
    struct pconn *c = (struct pconn *)((char *)t - offsetof(struct pconn, deadline));
    const char *why = c->phase == PC_CONNECTING ? "connect timed out" : "TLS handshake timed out";
    if (c->nbr)
        snprintf(c->nbr->last_error, sizeof(c->nbr->last_error), "%s", why);
    pr__conn_close(c, why);
}

/* The TLS handshake is done: check ALPN and the pin, bind to the neighbor, send OPEN. */
static void tls_done(struct pconn *c)
{
    struct speaker *sp = c->sp;
    const unsigned char *alpn = NULL;
    unsigned alen = 0;
    SSL_get0_alpn_selected(c->ssl, &alpn, &alen);
    if (alen != sizeof(ALPN_ID) - 1 || memcmp(alpn, ALPN_ID, alen) != 0) {
        metric_inc(sp->m_refused);
        pr__conn_close(c, "refused: the peer did not negotiate ALPN " ALPN_ID);
        return;
    }
    if (c->nbr) {
        if (!pin_match(c->nbr, c->ssl)) {
            metric_inc(sp->m_refused);
            snprintf(c->nbr->last_error, sizeof(c->nbr->last_error),
                     "refused: its certificate does not match the configured pin");
            c->phase = PC_OPEN;
            peer_encode_notification(&c->out, PEER_ERR_OPEN, PEER_SUB_AUTH, NULL, 0);
            pr__conn_close(c, "refused: the certificate does not match the pin");
            return;
        }
    } else {
        struct nbr *m = NULL;
        for (struct nbr *n = sp->nbrs; n && !m; n = n->next)
            if (!n->removed && pin_match(n, c->ssl))
                m = n;
        if (m == NULL) {
            metric_inc(sp->m_refused);
            c->phase = PC_OPEN;
            peer_encode_notification(&c->out, PEER_ERR_OPEN, PEER_SUB_AUTH, NULL, 0);
            pr__conn_close(c, "refused: its certificate matches no configured peer");
            return;
        }
        unsigned slot = PR_MAX_CONNS;
        for (unsigned i = 0; i < PR_MAX_CONNS; i++)
            if (m->conns[i] == NULL)
                slot = i;
        if (slot == PR_MAX_CONNS) {
            c->phase = PC_OPEN;
            peer_encode_notification(&c->out, PEER_ERR_CEASE, PEER_SUB_REJECTED, NULL, 0);
            pr__conn_close(c, "refused: too many connections from this peer");
            return;
        }
        c->nbr = m;
        m->conns[slot] = c;
    }
    loop_timer_stop(&c->deadline);
    struct nbr *n = c->nbr;
    struct peer_fsm_config fc = {.hold_time = n->hold_time, .routing_types = sp->routing_types,
                                 .content_types = sp->content_types, .families = sp->families,
                                 .max_message = sp->max_message, .passive = 1};
    snprintf(fc.my_id, sizeof(fc.my_id), "%s", sp->id);
    snprintf(fc.peer_id, sizeof(fc.peer_id), "%s", n->id);
    peer_fsm_init(&c->fsm, &fc, (uint64_t)time_mono_ns());
    c->hold.cb = hold_fire;
    c->keepalive.cb = keepalive_fire;
    c->phase = PC_OPEN;
    struct peer_actions a;
    peer_fsm_event(&c->fsm, PEER_EV_CONNECTED, NULL, 0, &c->out, &a);
    apply(c, &a);
}

static void do_handshake(struct pconn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        tls_done(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        loop_io_modify(&c->io, LOOP_READ);
        return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        loop_io_modify(&c->io, LOOP_READ | LOOP_WRITE);
        return;
    }
    char msg[160];
    unsigned long code = ERR_peek_last_error();
    snprintf(msg, sizeof(msg), "TLS handshake failed: %s",
             code ? ERR_reason_error_string(code) ? ERR_reason_error_string(code) : "?" : "connection closed");
    ERR_clear_error();
    metric_inc(c->sp->m_refused);
    if (c->nbr)
        snprintf(c->nbr->last_error, sizeof(c->nbr->last_error), "%s", msg);
    pr__conn_close(c, msg);
}

static void start_tls(struct pconn *c)
{
    c->ssl = SSL_new(c->outbound ? c->sp->client_ctx : c->sp->server_ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->io.fd) != 1) {
        pr__conn_close(c, "cannot start TLS");
        return;
    }
    if (c->outbound)
        SSL_set_connect_state(c->ssl);
    else
        SSL_set_accept_state(c->ssl);
    c->phase = PC_TLS;
    do_handshake(c);
}

static void read_messages(struct pconn *c);

static void read_more(struct loop_timer *t)
{
    struct pconn *c = (struct pconn *)((char *)t - offsetof(struct pconn, resume));
    if (c->closed || c->phase != PC_OPEN)
        return;
    read_messages(c);
    if (!c->closed && c->want_write && buf_avail(&c->out))
        (void)flush_out(c);
    update_interest(c);
}

/*
 * Reads what TLS has, frames it and feeds each message to the state
 * machine. A peer sending a whole table could keep this busy for seconds:
 * after READ_BUDGET bytes it yields to the loop (other sessions, timers,
 * the admin API) and goes on from a timer due at once, which runs after
 * what the loop's next poll finds (not from epoll: TLS may hold decrypted
 * bytes the socket no longer shows).
 */
static void read_messages(struct pconn *c)
{
    size_t budget = READ_BUDGET;
    for (;;) {
        if (budget < READ_CHUNK) {
            if (!loop_timer_active(&c->resume))
                loop_timer_start(&c->resume, 0);
            return;
        }
        char *p = buf_reserve(&c->in, READ_CHUNK);
        ERR_clear_error();
        int r = SSL_read(c->ssl, p, READ_CHUNK);
        if (r <= 0) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ)
                break;
            if (e == SSL_ERROR_WANT_WRITE) {
                c->want_write = 1;
                break;
            }
            ERR_clear_error();
            struct peer_actions a;
            peer_fsm_event(&c->fsm, PEER_EV_CLOSED, NULL, 0, &c->out, &a);
            apply(c, &a);
            if (!c->closed)
                pr__conn_close(c, e == SSL_ERROR_ZERO_RETURN ? "closed by the peer" : "read failed");
            return;
        }
        buf_commit(&c->in, (size_t)r);
        budget -= (size_t)r;
        size_t off = 0;
        while (!c->closed) {
            uint8_t type;
            struct peer_err err;
            const uint8_t *head = (const uint8_t *)buf_head(&c->in);
            long m = peer_frame(head + off, buf_avail(&c->in) - off, c->fsm.cfg.max_message,
                                &type, &err);
            if (m == 0)
                break;
            if (m < 0) {
                struct peer_actions a;
                peer_fsm_protocol_error(&c->fsm, &err, &c->out, &a);
                apply(c, &a);
                return;
            }
            struct peer_actions a;
            peer_fsm_event(&c->fsm, PEER_EV_MESSAGE, head + off, (size_t)m, &c->out, &a);
            off += (size_t)m;
            if (type == PEER_NOTIFICATION && c->nbr) {
                snprintf(c->nbr->last_error, sizeof(c->nbr->last_error), "received: %s",
                         peer_err_text(c->fsm.last_err_code, c->fsm.last_err_sub));
                metric_inc(c->sp->m_notif_recv);
            }
            apply(c, &a);
        }
        if (c->closed)
            return;
        buf_consume(&c->in, off);
    }
}

static void conn_io(struct loop_io *io, unsigned events)
{
    struct pconn *c = (struct pconn *)((char *)io - offsetof(struct pconn, io));
    if (c->closed)
        return;
    switch (c->phase) {
    case PC_CONNECTING: {
        int r = net_connect_result(io->fd);
        if (r < 0) {
            char msg[128];
            snprintf(msg, sizeof(msg), "cannot connect: %s", strerror(-r));
            if (c->nbr)
                snprintf(c->nbr->last_error, sizeof(c->nbr->last_error), "%s", msg);
            pr__conn_close(c, msg);
            return;
        }
        net_nodelay(io->fd);
        start_tls(c);
        return;
    }
    case PC_TLS:
        do_handshake(c);
        return;
    case PC_OPEN:
        if (events & LOOP_WRITE) {
            if (flush_out(c) < 0) {
                pr__conn_close(c, "write failed");
                return;
            }
        }
        if (events & (LOOP_READ | LOOP_ERROR))
            read_messages(c);
        if (!c->closed && c->want_write && buf_avail(&c->out))
            (void)flush_out(c);
        if (!c->closed && c->nbr && c->nbr->session == c)
            pr__session_writable(c->nbr, c);
        update_interest(c);
        return;
    case PC_CLOSING:
        return;
    }
}

void pr__connect(struct nbr *n)
{
    struct speaker *sp = n->sp;
    unsigned slot = PR_MAX_CONNS;
    for (unsigned i = 0; i < PR_MAX_CONNS; i++)
        if (n->conns[i] == NULL)
            slot = i;
    if (slot == PR_MAX_CONNS)
        return;
    char remote[64];
    net_addr_str(&n->addr, remote, sizeof(remote));
    const struct net_addr *src = NULL;
    if (sp->has_source && sp->source.ss.ss_family == n->addr.ss.ss_family)
        src = &sp->source;
    int fd = net_connect_tcp_from(&n->addr, src);
    snprintf(n->state_text, sizeof(n->state_text), "Connect");
    if (fd < 0) {
        snprintf(n->last_error, sizeof(n->last_error), "cannot connect to %s: %s", remote, strerror(-fd));
        n->failures++;
        pr__nbr_arm_retry(n);
        return;
    }
    struct pconn *c = conn_new(sp, fd, 1, remote);
    c->nbr = n;
    n->conns[slot] = c;
    c->deadline.cb = deadline_fire;
    loop_timer_start(&c->deadline, sp->connect_timeout_ms);
    if (loop_io_start(sp->loop, &c->io, fd, LOOP_WRITE, conn_io) < 0) {
        pr__conn_close(c, "cannot watch the socket");
        return;
    }
}

/* A listener: the loop_io and its speaker. */
struct plisten {
    struct loop_io io;
    struct speaker *sp;
};

static void accept_io(struct loop_io *io, unsigned events)
{
    (void)events;
    struct speaker *sp = ((struct plisten *)((char *)io - offsetof(struct plisten, io)))->sp;
    for (int k = 0; k < 64; k++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(io->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct net_addr a = {.ss = ss, .len = sl};
        char remote[64];
        net_addr_str(&a, remote, sizeof(remote));
        if (sp->stopping) {
            close(fd);
            continue;
        }
        net_nodelay(fd);
        struct pconn *c = conn_new(sp, fd, 0, remote);
        c->deadline.cb = deadline_fire;
        loop_timer_start(&c->deadline, sp->connect_timeout_ms);
        if (loop_io_start(sp->loop, &c->io, fd, LOOP_READ, conn_io) < 0) {
            pr__conn_close(c, "cannot watch the socket");
            continue;
        }
        start_tls(c);
    }
}

int pr__listen(struct speaker *sp)
{
    struct plisten *v = xcalloc(sp->nlisten ? sp->nlisten : 1, sizeof(*v));
    sp->listeners = v;
    for (size_t i = 0; i < sp->nlisten; i++) {
        char a[64];
        int fd = net_listen_tcp(&sp->listen[i], 64);
        if (fd < 0) {
            log_error("peer: cannot listen on %s: %s", net_addr_str(&sp->listen[i], a, sizeof(a)), strerror(-fd));
            return -1;
        }
        v[i].sp = sp;
        if (loop_io_start(sp->loop, &v[i].io, fd, LOOP_READ, accept_io) < 0) {
            close(fd);
            return -1;
        }
        log_info("peer %s: listening on %s", sp->id, net_addr_str(&sp->listen[i], a, sizeof(a)));
    }
    return 0;
}

void pr__unlisten(struct speaker *sp)
{
    struct plisten *v = sp->listeners;
    for (size_t i = 0; v && i < sp->nlisten; i++)
        loop_io_close(&v[i].io);
}
