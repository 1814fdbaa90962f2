/*
 * cache -- see cache.h.
 *
 * Data flow of one request (struct creq, owned by the client connection
 * through c->ud):
 *
 *   on_request ──► lookup ──fresh──► serve_obj (HIT)
 *        │            ├─stale, swr──► serve_obj (STALE) + background revalidation
 *        │            ├─stale──────► fetch with validators ──304──► serve_obj (REVALIDATED)
 *        │            └─none───────► join a fetch in flight ─────► lookup again
 *        │                           or fetch ──► stream to the client and store (MISS)
 *        └─ not cacheable (method, Range miss, ...) ──► forward as is (BYPASS)
 *
 * Settings a reload may change (publishers, certificates, policy knobs)
 * live in struct cache_settings, reference-counted: each worker holds one
 * and each request holds the one it started with, so a reload never pulls
 * a target out from under a request.
 */
#include "cache/cache.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/disk.h"
#include "cache/policy.h"
#include "cache/store.h"
#include "cache/upstream.h"
#include "http/server.h"
#include "lib/json.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/util.h"
#include "tls/tls.h"
#include "version.h"

#define CLIENT_HIGH_WATER (1u << 20) /* pause the origin above this much queued */
#define MAX_KEY 8192

const struct conf_opt cache_publisher_opts[] = {
    {.name = "origin", .type = CONF_STR, .flags = CONF_REQUIRED,
     .help = "Origin URL, http://ADDR:PORT or https://ADDR:PORT (numeric address)."},
    {.name = "origin_host", .type = CONF_STR,
     .help = "Host field sent to the origin (default: the publisher name)."},
    {.name = "origin_sni", .type = CONF_STR,
     .help = "TLS server name for an https origin, also the name verified (default: origin_host)."},
    {.name = "parent", .type = CONF_STR,
     .help = "Parent cache URL; misses are pulled through it instead of the origin."},
    {.name = "alias", .type = CONF_STR, .flags = CONF_MULTI,
     .help = "Another host name served as this publisher."},
    {0},
};

const struct conf_opt cache_opts[] = {
    {.name = "name", .type = CONF_STR, .def = "ferry",
     .help = "This server's name in Via and logs."},
    {.name = "listen", .type = CONF_ARGS, .flags = CONF_MULTI, .min_args = 1, .max_args = 2,
     .help = "ADDR:PORT [proxy_protocol]: plain HTTP listener; proxy_protocol = connections start with a PROXY v2 header (behind a switch)."},
    {.name = "listen_tls", .type = CONF_ARGS, .flags = CONF_MULTI, .min_args = 1, .max_args = 2,
     .help = "ADDR:PORT [proxy_protocol]: HTTPS listener."},
    {.name = "certificate", .type = CONF_ARGS, .flags = CONF_MULTI, .min_args = 2, .max_args = 2,
     .help = "CERT_PEM KEY_PEM; chosen by SNI against the certificate's names (first = default)."},
    {.name = "tls_min_version", .type = CONF_ENUM, .choices = "TLSv1.2|TLSv1.3", .def = "TLSv1.2",
     .help = "Oldest TLS version accepted."},
    {.name = "tls_session_timeout", .type = CONF_DURATION, .min = 1000, .max = 604800000,
     .def = "1h", .help = "Lifetime of TLS sessions for resumption."},
    {.name = "tls_tickets", .type = CONF_FLAG, .def = "on",
     .help = "Stateless session tickets; off = stateful TLS 1.3 tickets (PSK identity = session ID)."},
    {.name = "tls_label", .type = CONF_INT, .min = 0, .max = 65535, .def = "0",
     .help = "This server's label in its node group (1..n); session IDs and ticket key names carry it so a switch can route resumptions. 0 = off."},
    {.name = "tls_label_codec", .type = CONF_ENUM, .choices = "prefix|mod-n", .def = "prefix",
     .help = "How the label is written: prefix (survives changes of n, rejects random IDs) or mod-n (label = ID mod n + 1)."},
    {.name = "tls_group_size", .type = CONF_INT, .min = 1, .max = 65535, .def = "1",
     .help = "n, the number of servers in the node group (mod-n codec)."},
    {.name = "memory", .type = CONF_SIZE, .min = 1 << 20, .max = INT64_C(1) << 40, .def = "256m",
     .help = "Byte budget of the memory tier."},
    {.name = "disk_path", .type = CONF_PATH,
     .help = "Directory of the disk tier (write-through, survives restarts); no disk tier without it."},
    {.name = "disk_size", .type = CONF_SIZE, .min = 1 << 20, .max = INT64_C(1) << 50, .def = "1g",
     .help = "Byte budget of the disk tier (least recently used files go first)."},
    {.name = "eviction", .type = CONF_ENUM, .choices = "s3fifo|lru", .def = "s3fifo",
     .help = "Eviction policy of the memory tier."},
    {.name = "max_object_size", .type = CONF_SIZE, .min = 0, .max = INT64_C(1) << 36, .def = "16m",
     .help = "Larger responses are streamed through, not stored."},
    {.name = "heuristic_percent", .type = CONF_INT, .min = 0, .max = 100, .def = "10",
     .help = "Heuristic freshness: this percent of (Date - Last-Modified)."},
    {.name = "heuristic_max", .type = CONF_DURATION, .min = 0, .max = INT64_C(31536000000),
     .def = "1d", .help = "Upper bound of heuristic freshness."},
    {.name = "stale_if_error", .type = CONF_DURATION, .min = 0, .max = INT64_C(31536000000),
     .def = "0s", .help = "Serve stale this long when the origin fails, even if the response does not say so."},
    {.name = "targeted_field", .type = CONF_STR, .def = "CDN-Cache-Control",
     .help = "Targeted cache-control field honoured over Cache-Control (RFC 9213), or \"off\"."},
    {.name = "access_log", .type = CONF_STR, .def = "off",
     .help = "Access record file (docs/access-log.md), or off."},
    {.name = "origin_ca", .type = CONF_PATH,
     .help = "CA bundle to verify https origins (default: the system store)."},
    {.name = "connect_timeout", .type = CONF_DURATION, .min = 10, .max = 600000, .def = "5s",
     .help = "Connecting to an origin."},
    {.name = "response_timeout", .type = CONF_DURATION, .min = 10, .max = 3600000, .def = "30s",
     .help = "From request sent to the origin's response head."},
    {.name = "read_timeout", .type = CONF_DURATION, .min = 10, .max = 3600000, .def = "30s",
     .help = "Between reads of an origin's body."},
    {.name = "header_timeout", .type = CONF_DURATION, .min = 10, .max = 3600000, .def = "10s",
     .help = "For a client to send a whole request head (408 after)."},
    {.name = "idle_timeout", .type = CONF_DURATION, .min = 10, .max = 3600000, .def = "60s",
     .help = "Keep-alive idle time of client connections."},
    {.name = "max_connections", .type = CONF_INT, .min = 1, .max = 1000000, .def = "10000",
     .help = "Client connections per worker."},
    {.name = "max_header_size", .type = CONF_SIZE, .min = 1024, .max = 1 << 20, .def = "16k",
     .help = "Largest request head (431 above)."},
    {.name = "max_headers", .type = CONF_INT, .min = 8, .max = 128, .def = "100",
     .help = "Most request fields (431 above)."},
    {.name = "max_uri_size", .type = CONF_SIZE, .min = 256, .max = 1 << 20, .def = "8k",
     .help = "Longest request target (414 above)."},
    {.name = "max_body_size", .type = CONF_SIZE, .min = 0, .max = 1 << 30, .def = "1m",
     .help = "Largest request body forwarded (413 above)."},
    {.name = "publisher", .type = CONF_BLOCK, .flags = CONF_MULTI | CONF_NAMED | CONF_REQUIRED,
     .block = cache_publisher_opts, .help = "A publisher host name and where its content comes from."},
    {0},
};

struct publisher {
    char **hosts;              /* owned: lowercase names, first = the publisher */
    size_t nhosts;
    struct up_target origin;   /* label and sni owned */
    struct up_target parent;
    int has_parent;
    char *origin_host;         /* owned */
};

struct cache_settings {
    _Atomic int refs;
    char *name;                /* owned: Via pseudonym */
    struct publisher *pubs;    /* owned */
    size_t npubs;
    SSL_CTX *client_ctx;       /* owned reference, for https upstreams */
    struct tls_server *tls;    /* owned, or NULL without certificates */
    int heuristic_pct;
    int64_t heuristic_max;     /* seconds */
    int64_t default_sie;       /* seconds */
    char *targeted;            /* owned, or NULL */
    uint64_t max_object;
};

struct cache_worker {
    struct cache *cache;
    struct loop *loop;
    struct hsrv *srv;
    struct up_pool *pool;
    struct cache_settings *set; /* a reference, swapped on reload */
};

struct cache {
    struct cache_settings *set;  /* reference held by the instance */
    struct store *store;
    struct disk *disk;           /* owned, or NULL without a disk tier */
    char *disk_path;             /* owned */
    uint64_t disk_size;
    struct net_addr *listen, *listen_tls; /* owned */
    size_t nlisten, nlisten_tls;
    unsigned char *proxy, *proxy_tls;     /* owned: PROXY v2 flag per listener */
    struct hsrv_limits lim;
    struct up_timeouts upt;
    struct cache_worker *workers; /* owned */
    unsigned nworkers;
    struct loop *main_loop;
    char *access_path;           /* owned, or NULL */
    _Atomic int access_fd;
    struct metric *m_req[5], *m_bytes, *m_fetches, *m_fetch_err, *m_collapsed, *m_purged;
    struct metric *m_disk_hits;
};

enum xc { XC_HIT, XC_MISS, XC_STALE, XC_REVALIDATED, XC_BYPASS };
static const char *const xc_names[] = {"HIT", "MISS", "STALE", "REVALIDATED", "BYPASS"};

/* One client request, or one background revalidation (c == NULL). */
struct creq {
    struct hconn *c;
    struct cache_worker *w;
    struct cache_settings *set;   /* a reference */
    const struct publisher *pub;  /* inside set */
    char *key;                    /* owned */
    size_t key_len;
    int is_get, is_head, has_auth, has_range, is_cond, unsafe;
    struct cc req_cc;
    enum xc xc;
    struct cobj *stale;           /* a reference: the object being revalidated */
    struct up_req *up;
    int fetcher;                  /* registered in the pending table */
    int disk_reading;             /* a disk read will call back */
    int disk_checked;             /* the disk tier was consulted */
    int waiting;                  /* queued behind another fetch */
    struct store_waiter waiter;
    int64_t request_time;
    /* response from upstream */
    struct cache_meta meta;
    int status;
    int storing;                  /* building an object from the response */
    int buffered;                 /* client answer waits for the whole object */
    int streaming;                /* response head sent, body follows */
    int chunked_out;              /* client framing is chunked */
    int ignore_body;              /* upstream body is not wanted */
    int sent_any;
    struct buf fields;            /* filtered fields of the upstream response */
    char *vary;                   /* owned: the response's Vary list */
    struct buf body;              /* stored body being built */
    int status_sent;              /* for the access log */
    char *target_copy;            /* owned: for the access log */
    char *method_copy;
    char *inval[2];               /* owned: keys of Location, Content-Location to invalidate */
};

static void creq_finish(struct creq *r);
static void fetch(struct creq *r, int collapse);
static const struct publisher *find_publisher(const struct cache_settings *s, const char *host,
                                              size_t len);
static void lookup(struct creq *r);

static struct cache_settings *settings_ref(struct cache_settings *s)
{
    atomic_fetch_add(&s->refs, 1);
    return s;
}

static void target_fini(struct up_target *t)
{
    free(t->sni);
    free(t->label);
}

static void settings_unref(struct cache_settings *s)
{
    if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    for (size_t i = 0; i < s->npubs; i++) {
        struct publisher *p = &s->pubs[i];
        for (size_t j = 0; j < p->nhosts; j++)
            free(p->hosts[j]);
        free(p->hosts);
        target_fini(&p->origin);
        target_fini(&p->parent);
        free(p->origin_host);
    }
    free(s->pubs);
    SSL_CTX_free(s->client_ctx);
    tls_server_destroy(s->tls);
    free(s->name);
    free(s->targeted);
    free(s);
}

/* Access records. */

static void access_record(struct creq *r)
{
    struct cache *ca = r->w->cache;
    int fd = atomic_load(&ca->access_fd);
    char date[32], host[64], shost[64];
    struct buf line;
    if (fd < 0 || r->c == NULL)
        return;
    int64_t now = time_wall();
    struct tm tm;
    time_t tt = (time_t)now;
    gmtime_r(&tt, &tm);
    strftime(date, sizeof(date), "%Y-%m-%d\t%H:%M:%S", &tm);
    double taken = (double)(time_mono_ns() - r->c->req_start_ns) / 1e9;
    const struct http1_hdr *ua = http1_find(&r->c->req, "user-agent");
    buf_init(&line);
    buf_printf(&line, "%s\t%.6f\t%s\t%d\t%s\t%d\t%s\t%s://%.*s%s\t%s\t%d\t%" PRIu64 "\t%s\t%s\t",
               date, taken, net_addr_host(&r->c->peer, host, sizeof(host)),
               net_addr_port(&r->c->peer), net_addr_host(&r->c->local, shost, sizeof(shost)),
               net_addr_port(&r->c->local), r->method_copy ? r->method_copy : "-",
               r->c->is_tls ? "https" : "http", r->c->req.host ? (int)r->c->req.host_len : 1,
               r->c->req.host ? r->c->req.host : "-", r->target_copy ? r->target_copy : "",
               r->c->req.minor_version ? "HTTP/1.1" : "HTTP/1.0", r->status_sent,
               (uint64_t)r->c->resp_bytes, xc_names[r->xc],
               r->pub ? r->pub->hosts[0] : "-");
    /* User-Agent is client-controlled: keep only printable ASCII, no tabs. */
    if (ua) {
        buf_puts(&line, "\"");
        for (size_t i = 0; i < ua->value_len && i < 512; i++) {
            char ch = ua->value[i];
            if (ch < 0x20 || ch > 0x7e || ch == '"' || ch == '\\')
                buf_printf(&line, "\\x%02x", (unsigned char)ch);
            else
                buf_append(&line, &ch, 1);
        }
        buf_puts(&line, "\"");
    } else {
        buf_puts(&line, "-");
    }
    buf_puts(&line, "\n");
    if (write(fd, buf_head(&line), buf_avail(&line)) < 0) {
        /* A full disk must not stop serving; the error log says it once per reopen. */
    }
    buf_fini(&line);
}

static int open_access_log(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    off_t end = lseek(fd, 0, SEEK_END);
    if (end == 0) {
        static const char hdr[] =
            "#Version: ferry-access/1\n"
            "#Fields: date\ttime\ttime-taken\tc-ip\tc-port\ts-ip\ts-port\tcs-method\tcs-uri\t"
            "protocol\tsc-status\tsc-total-bytes\ts-cache-status\ts-publisher\tcs(User-Agent)\n";
        if (write(fd, hdr, sizeof(hdr) - 1) < 0) {
            /* reported by the caller's next write failing too */
        }
    }
    return fd;
}

void cache_reopen_logs(void *inst)
{
    struct cache *ca = inst;
    if (ca->access_path == NULL)
        return;
    int fd = open_access_log(ca->access_path);
    if (fd < 0) {
        errno = -fd;
        log_warn("cache: reopen access_log %s", ca->access_path);
        return;
    }
    int old = atomic_exchange(&ca->access_fd, fd);
    if (old >= 0)
        close(old);
}

/* Responses. */

static void add_common(struct creq *r, struct buf *h)
{
    buf_printf(h, "Via: 1.1 %s (ferry/%s)\r\nX-Cache: %s\r\n", r->set->name, FERRY_VERSION,
               xc_names[r->xc]);
}

static void count(struct creq *r)
{
    metric_inc(r->w->cache->m_req[r->xc]);
}

static void send_head(struct creq *r, struct buf *h)
{
    hconn_send(r->c, buf_head(h), buf_avail(h));
}

/* Answers with a small error; used before any byte of a response left. */
static void respond_error(struct creq *r, int status, const char *msg)
{
    struct hconn *c = r->c;
    r->status_sent = status;
    r->sent_any = 1;
    if (c == NULL) {
        creq_finish(r);
        return;
    }
    char date[32];
    struct buf h;
    buf_init(&h);
    buf_printf(&h, "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   "Content-Length: %zu\r\nCache-Control: no-store\r\n",
               status, http_reason(status), http_date(time_wall(), date), strlen(msg) + 1);
    add_common(r, &h);
    buf_puts(&h, c->closing ? "Connection: close\r\n\r\n" : "\r\n");
    send_head(r, &h);
    buf_fini(&h);
    if (!r->is_head)
        hconn_sendf(c, "%s\n", msg);
    creq_finish(r);
}

/* Serves a stored object: 200, 206, 304 or 416, with HEAD handled. */
static void serve_obj(struct creq *r, struct cobj *o, enum xc xc)
{
    struct hconn *c = r->c;
    int64_t now = time_wall();
    struct buf h;
    uint64_t first = 0, last = 0;
    size_t len = o->body ? o->body->len : 0;
    int status = o->meta.status;

    r->xc = xc;
    count(r);
    if (c == NULL)
        return;
    buf_init(&h);
    int range = 0;
    /* Conditionals apply to 2xx representations only (RFC 9110 13.2.1); without
     * Last-Modified the stored Date stands in for it (RFC 9111 4.3.2). */
    int64_t lm = o->meta.last_modified >= 0 ? o->meta.last_modified : o->meta.date;
    if (r->is_cond && status >= 200 && status < 300 &&
        cache_not_modified(&c->req, o->etag, o->etag_len, lm)) {
        status = 304;
    } else if (r->has_range && status == 200) {
        range = cache_range(&c->req, len, &first, &last);
        if (range == 1)
            status = 206;
        else if (range < 0)
            status = 416;
    }
    r->status_sent = status;
    r->sent_any = 1;
    buf_printf(&h, "HTTP/1.1 %d %s\r\n", status, status == o->meta.status ? http_reason(status)
                                                                          : http_reason(status));
    if (status == 304) {
        /* RFC 9110 15.4.5: the fields a 200 would carry that matter for caches. */
        for (const char *p = o->fields, *end = o->fields + o->fields_len; p < end;) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t n = nl ? (size_t)(nl - p + 1) : (size_t)(end - p);
            static const char *const keep[] = {"cache-control:", "content-location:", "date:",
                                               "etag:", "expires:", "vary:", "last-modified:"};
            for (size_t i = 0; i < ARRAY_SIZE(keep); i++)
                if (n > strlen(keep[i]) && strncasecmp(p, keep[i], strlen(keep[i])) == 0)
                    buf_append(&h, p, n);
            p += n;
        }
    } else {
        buf_append(&h, o->fields, o->fields_len);
    }
    int64_t age = cache_age(&o->meta, now);
    if (age > 0)
        buf_printf(&h, "Age: %" PRId64 "\r\n", age);
    if (xc == XC_STALE)
        buf_puts(&h, "Warning: 110 - \"Response is Stale\"\r\n");
    add_common(r, &h);
    if (status == 206) {
        buf_printf(&h, "Content-Range: bytes %" PRIu64 "-%" PRIu64 "/%zu\r\nContent-Length: %" PRIu64 "\r\n",
                   first, last, len, last - first + 1);
    } else if (status == 416) {
        buf_printf(&h, "Content-Range: bytes */%zu\r\nContent-Length: 0\r\n", len);
    } else if (status != 304 && status != 204) {
        buf_printf(&h, "Content-Length: %zu\r\n", len);
    }
    if (status == 200 && o->meta.status == 200)
        buf_puts(&h, "Accept-Ranges: bytes\r\n");
    buf_puts(&h, c->closing ? "Connection: close\r\n\r\n" : "\r\n");
    send_head(r, &h);
    buf_fini(&h);
    if (!r->is_head && o->body && len > 0) {
        if (status == 200 || (status != 304 && status != 206 && status != 416 && status != 204)) {
            hconn_send_ref(c, o->body->data, len, cobj_release, cobj_ref(o));
        } else if (status == 206) {
            hconn_send_ref(c, o->body->data + first, (size_t)(last - first + 1), cobj_release,
                           cobj_ref(o));
        }
    }
    metric_add(r->w->cache->m_bytes, (int64_t)c->resp_bytes);
    creq_finish(r);
}

/* Ends the request: access record, connection state, memory. */
static void creq_finish(struct creq *r)
{
    struct hconn *c = r->c;
    if (r->up) {
        up_cancel(r->up);
        r->up = NULL;
    }
    if (r->fetcher) {
        store_pending_done(r->w->cache->store, r->key, r->key_len, 0);
        r->fetcher = 0;
    }
    if (c) {
        access_record(r);
        c->ud = NULL;
        hconn_end(c, !c->closing);
    }
    cobj_unref(r->stale);
    buf_fini(&r->fields);
    buf_fini(&r->body);
    settings_unref(r->set);
    free(r->vary);
    free(r->key);
    free(r->target_copy);
    free(r->method_copy);
    free(r->inval[0]);
    free(r->inval[1]);
    free(r);
}

/* Upstream requests. */

static int skip_request_field(const struct http1_hdr *h, const struct http1_msg *m, int filling)
{
    const struct http1_hdr *conn = http1_find(m, "connection");
    if (http_hop_by_hop(h->name, h->name_len, conn ? conn->value : NULL, conn ? conn->value_len : 0))
        return 1;
    if (str_ieq(h->name, h->name_len, "host") || str_ieq(h->name, h->name_len, "content-length") ||
        str_ieq(h->name, h->name_len, "expect"))
        return 1;
    /* When the response is meant for the cache, the client's own
     * conditions and ranges are evaluated here against the full response. */
    if (filling && (str_ieq(h->name, h->name_len, "if-none-match") ||
                    str_ieq(h->name, h->name_len, "if-modified-since") ||
                    str_ieq(h->name, h->name_len, "if-match") ||
                    str_ieq(h->name, h->name_len, "if-unmodified-since") ||
                    str_ieq(h->name, h->name_len, "if-range") ||
                    str_ieq(h->name, h->name_len, "range")))
        return 1;
    return 0;
}

static void build_upstream_head(struct creq *r, struct buf *h, int filling, const char *method)
{
    const struct http1_msg *m = &r->c->req;
    char host[64];
    buf_printf(h, "%s %.*s HTTP/1.1\r\nHost: %s\r\n", method, (int)m->target_len, m->target,
               r->pub->origin_host);
    for (size_t i = 0; i < m->n_hdrs; i++) {
        const struct http1_hdr *f = &m->hdrs[i];
        if (skip_request_field(f, m, filling))
            continue;
        buf_printf(h, "%.*s: %.*s\r\n", (int)f->name_len, f->name, (int)f->value_len, f->value);
    }
    buf_printf(h, "Via: 1.%d %s\r\nX-Forwarded-For: %s\r\n", m->minor_version, r->set->name,
               net_addr_host(&r->c->peer, host, sizeof(host)));
    if (r->c->req.body != HTTP1_BODY_NONE)
        buf_printf(h, "Content-Length: %zu\r\n", r->c->body_len);
    if (r->stale) {
        if (r->stale->etag)
            buf_printf(h, "If-None-Match: %.*s\r\n", (int)r->stale->etag_len, r->stale->etag);
        if (r->stale->meta.last_modified >= 0) {
            char d[32];
            buf_printf(h, "If-Modified-Since: %s\r\n", http_date(r->stale->meta.last_modified, d));
        }
    }
    buf_puts(h, "\r\n");
}

/* Copies the fields of resp that a cache keeps and forwards. */
static void filter_fields(const struct http1_msg *resp, struct buf *out)
{
    const struct http1_hdr *conn = http1_find(resp, "connection");
    for (size_t i = 0; i < resp->n_hdrs; i++) {
        const struct http1_hdr *f = &resp->hdrs[i];
        if (http_hop_by_hop(f->name, f->name_len, conn ? conn->value : NULL,
                            conn ? conn->value_len : 0))
            continue;
        if (str_ieq(f->name, f->name_len, "age") || str_ieq(f->name, f->name_len, "content-length") ||
            str_ieq(f->name, f->name_len, "x-cache"))
            continue;
        buf_printf(out, "%.*s: %.*s\r\n", (int)f->name_len, f->name, (int)f->value_len, f->value);
    }
}

static void join_vary(const struct http1_msg *resp, struct creq *r)
{
    struct buf v;
    buf_init(&v);
    for (size_t i = 0; i < resp->n_hdrs; i++) {
        const struct http1_hdr *f = &resp->hdrs[i];
        if (!str_ieq(f->name, f->name_len, "vary"))
            continue;
        if (buf_avail(&v))
            buf_puts(&v, ",");
        buf_append(&v, f->value, f->value_len);
    }
    if (buf_avail(&v)) {
        buf_append(&v, "", 1);
        r->vary = xstrdup(buf_head(&v));
    }
    buf_fini(&v);
}

/*
 * Builds a stored object from a response head (fields already filtered)
 * and a body. Re-parses the head so that the metadata comes from exactly
 * what is stored.
 */
static struct cobj *make_obj(struct creq *r, int status, const char *fields, size_t flen,
                             struct cbody *body, const char *vary, const char *vkey,
                             size_t vkey_len, int64_t request_time, int64_t response_time)
{
    struct buf raw;
    struct http1_limits lim;
    struct http1_msg m;
    buf_init(&raw);
    buf_printf(&raw, "HTTP/1.1 %d X\r\n", status);
    buf_append(&raw, fields, flen);
    buf_puts(&raw, "\r\n");
    http1_limits_default(&lim);
    lim.max_head_bytes = buf_avail(&raw) + 1;
    lim.max_headers = HTTP1_MAX_HEADERS;
    if (http1_parse_response(buf_head(&raw), buf_avail(&raw), &lim, 0, &m) <= 0) {
        buf_fini(&raw);
        return NULL;
    }
    struct cobj *o = cobj_create(r->key, r->key_len);
    cache_meta_from_response(&o->meta, &m, request_time, response_time, r->set->targeted);
    o->lifetime = cache_lifetime(&o->meta, r->set->heuristic_pct, r->set->heuristic_max);
    const struct http1_hdr *et = http1_find(&m, "etag");
    if (et) {
        o->etag = xstrndup(et->value, et->value_len);
        o->etag_len = et->value_len;
    }
    buf_fini(&raw);
    o->fields = xstrndup(fields, flen);
    o->fields_len = flen;
    o->body = body;
    if (vary) {
        o->vary = xstrdup(vary);
        o->vkey = xstrndup(vkey, vkey_len);
        o->vkey_len = vkey_len;
    }
    return o;
}

/*
 * RFC 9111 4.4: an unsafe request also invalidates the URIs in Location and
 * Content-Location when they have the same origin. Records their keys.
 */
static void note_invalidations(struct creq *r, const struct http1_msg *resp)
{
    static const char *const names[2] = {"location", "content-location"};
    for (int i = 0; i < 2; i++) {
        const struct http1_hdr *h = http1_find(resp, names[i]);
        if (h == NULL || h->value_len == 0 || h->value_len > MAX_KEY)
            continue;
        const char *v = h->value;
        size_t n = h->value_len;
        const char *path = NULL;
        size_t plen = 0;
        if (v[0] == '/' && (n < 2 || v[1] != '/')) {
            path = v;
            plen = n;
        } else {
            size_t skip = n > 7 && strncasecmp(v, "http://", 7) == 0    ? 7
                          : n > 8 && strncasecmp(v, "https://", 8) == 0 ? 8
                                                                         : 0;
            if (skip == 0)
                continue;
            const char *host = v + skip;
            const char *slash = memchr(host, '/', n - skip);
            size_t hl = slash ? (size_t)(slash - host) : n - skip;
            if (find_publisher(r->set, host, hl) != r->pub)
                continue; /* another origin: not ours to invalidate */
            path = slash ? slash : "/";
            plen = slash ? n - skip - hl : 1;
        }
        r->inval[i] = xasprintf("%s %.*s", r->pub->hosts[0], (int)plen, path);
    }
}

static void on_writable(struct hconn *c)
{
    struct creq *r = c->ud;
    if (r && r->up && hconn_pending(c) < CLIENT_HIGH_WATER / 2)
        up_pause(r->up, 0);
}

static void up_head(void *arg, const struct http1_msg *resp)
{
    struct creq *r = arg;
    struct cache *ca = r->w->cache;
    struct hconn *c = r->c;
    int64_t now = time_wall();

    r->status = resp->status;
    if (r->unsafe)
        note_invalidations(r, resp);
    cache_meta_from_response(&r->meta, resp, r->request_time, now, r->set->targeted);

    if (r->stale && resp->status == 304) {
        /* RFC 9111 4.3.4: freshen the stored response with the 304's fields. */
        struct buf merged, fresh;
        buf_init(&merged);
        buf_init(&fresh);
        filter_fields(resp, &fresh);
        const char *p = r->stale->fields, *end = p + r->stale->fields_len;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t n = nl ? (size_t)(nl - p + 1) : (size_t)(end - p);
            const char *colon = memchr(p, ':', n);
            int replaced = 0;
            if (colon) {
                size_t nlen = (size_t)(colon - p);
                for (size_t i = 0; i < resp->n_hdrs && !replaced; i++)
                    if (resp->hdrs[i].name_len == nlen &&
                        strncasecmp(resp->hdrs[i].name, p, nlen) == 0 &&
                        !str_ieq(p, nlen, "content-length") && !str_ieq(p, nlen, "content-encoding"))
                        replaced = 1;
            }
            if (!replaced)
                buf_append(&merged, p, n);
            p += n;
        }
        /* Append the 304's fields that may replace stored ones. */
        const struct http1_hdr *conn = http1_find(resp, "connection");
        for (size_t i = 0; i < resp->n_hdrs; i++) {
            const struct http1_hdr *f = &resp->hdrs[i];
            if (http_hop_by_hop(f->name, f->name_len, conn ? conn->value : NULL,
                                conn ? conn->value_len : 0) ||
                str_ieq(f->name, f->name_len, "age") ||
                str_ieq(f->name, f->name_len, "content-length") ||
                str_ieq(f->name, f->name_len, "content-encoding"))
                continue;
            buf_printf(&merged, "%.*s: %.*s\r\n", (int)f->name_len, f->name, (int)f->value_len,
                       f->value);
        }
        cbody_ref(r->stale->body);
        struct cobj *o = make_obj(r, r->stale->meta.status, buf_head(&merged), buf_avail(&merged),
                                  r->stale->body, r->stale->vary, r->stale->vkey,
                                  r->stale->vkey_len, r->request_time, now);
        buf_fini(&merged);
        buf_fini(&fresh);
        r->ignore_body = 1;
        if (o == NULL) {
            respond_error(r, 502, "could not merge the origin's 304");
            return;
        }
        store_insert(ca->store, o);
        if (ca->disk)
            disk_put(ca->disk, o);
        if (c) {
            struct up_req *up = r->up;
            r->up = NULL; /* serve_obj finishes r; the 304 has no body to wait for */
            up_cancel(up);
            serve_obj(r, o, XC_REVALIDATED);
        } else {
            metric_inc(ca->m_req[XC_REVALIDATED]);
        }
        cobj_unref(o);
        return;
    }
    if (r->stale && resp->status >= 500 &&
        cache_stale_if_error_ok(&r->stale->meta, r->stale->lifetime, now, r->set->default_sie)) {
        r->ignore_body = 1;
        struct up_req *up = r->up;
        r->up = NULL;
        up_cancel(up);
        if (c)
            serve_obj(r, r->stale, XC_STALE);
        else
            creq_finish(r);
        return;
    }
    if (c == NULL && r->stale) {
        /* Background revalidation got a full response: store it if allowed. */
        r->xc = XC_MISS;
    }

    /* Decide whether to store. */
    enum store_verdict v = STORE_NO_METHOD;
    if (r->is_get && !r->unsafe && r->xc != XC_BYPASS)
        v = cache_storable(&r->meta, &r->req_cc, r->has_auth, 1);
    if (v == STORE_OK && resp->body == HTTP1_BODY_LENGTH && resp->content_length > r->set->max_object)
        v = STORE_NO_FRESHNESS;
    r->storing = v == STORE_OK;
    buf_reset(&r->fields);
    filter_fields(resp, &r->fields);
    if (r->storing)
        join_vary(resp, r);

    if (c == NULL) {
        r->ignore_body = !r->storing;
        return;
    }
    /* A conditional or ranged client request whose response is being
     * stored is answered from the stored object once it is complete. */
    if (r->storing && (r->is_cond || r->has_range) && resp->body == HTTP1_BODY_LENGTH) {
        r->buffered = 1;
        return;
    }
    struct buf h;
    buf_init(&h);
    buf_printf(&h, "HTTP/1.1 %d %s\r\n", resp->status, http_reason(resp->status));
    buf_append(&h, buf_head(&r->fields), buf_avail(&r->fields));
    int64_t age = cache_age(&r->meta, now);
    if (age > 0 && r->storing)
        buf_printf(&h, "Age: %" PRId64 "\r\n", age);
    add_common(r, &h);
    count(r);
    int no_body = r->is_head || resp->status == 204 || resp->status == 304 ||
                  (resp->status >= 100 && resp->status < 200);
    if (resp->body == HTTP1_BODY_LENGTH) {
        buf_printf(&h, "Content-Length: %" PRIu64 "\r\n", resp->content_length);
    } else if (r->is_head && http1_find(resp, "content-length")) {
        const struct http1_hdr *cl = http1_find(resp, "content-length");
        buf_printf(&h, "Content-Length: %.*s\r\n", (int)cl->value_len, cl->value);
    } else if (!no_body) {
        if (c->req.minor_version >= 1) {
            buf_puts(&h, "Transfer-Encoding: chunked\r\n");
            r->chunked_out = 1;
        } else {
            c->closing = 1;
        }
    }
    buf_puts(&h, c->closing ? "Connection: close\r\n\r\n" : "\r\n");
    r->status_sent = resp->status;
    r->sent_any = 1;
    r->streaming = 1;
    send_head(r, &h);
    buf_fini(&h);
}

static void up_data(void *arg, const char *p, size_t n)
{
    struct creq *r = arg;
    if (r->ignore_body)
        return;
    if (r->storing) {
        if (buf_avail(&r->body) + n > r->set->max_object) {
            /* Too big after all (no Content-Length): stream only. */
            r->storing = 0;
            buf_fini(&r->body);
            if (r->buffered) {
                /* Cannot happen: buffered needs a Content-Length within max_object. */
                r->buffered = 0;
            }
        } else {
            buf_append(&r->body, p, n);
        }
    }
    if (r->c && r->streaming && !r->is_head) {
        if (r->chunked_out)
            hconn_sendf(r->c, "%zx\r\n", n);
        hconn_send(r->c, p, n);
        if (r->chunked_out)
            hconn_send(r->c, "\r\n", 2);
        if (hconn_pending(r->c) > CLIENT_HIGH_WATER && r->up)
            up_pause(r->up, 1);
    }
}

static void up_done(void *arg, int err)
{
    struct creq *r = arg;
    struct cache *ca = r->w->cache;
    int64_t now = time_wall();
    r->up = NULL;

    if (err < 0) {
        metric_inc(ca->m_fetch_err);
        if (r->c && r->sent_any && r->streaming) {
            /* Part of the body left already: the client must see a broken
             * response, not a truncated one that looks whole. */
            struct hconn *c = r->c;
            access_record(r);
            r->c = NULL;
            c->ud = NULL;
            hconn_abort(c);
            creq_finish(r);
            return;
        }
        if (r->stale &&
            cache_stale_if_error_ok(&r->stale->meta, r->stale->lifetime, now, r->set->default_sie)) {
            if (r->c) {
                serve_obj(r, r->stale, XC_STALE);
                return;
            }
            creq_finish(r);
            return;
        }
        if (r->c)
            count(r);
        respond_error(r, up_err_status(err), err == UP_E_TIMEOUT ? "origin timed out"
                                                                 : "origin unreachable or broken");
        return;
    }
    int stored = 0;
    struct cobj *o = NULL;
    if (r->storing && !r->ignore_body) {
        struct buf vk;
        buf_init(&vk);
        int vary_ok = 1;
        if (r->vary && r->c)
            vary_ok = cache_vary_key_from(r->vary, strlen(r->vary), &r->c->req, &vk) == 0;
        else if (r->vary)
            vary_ok = 0; /* a background fetch has no request to key on */
        if (vary_ok) {
            struct cbody *b = cbody_create(buf_avail(&r->body));
            memcpy(b->data, buf_head(&r->body), buf_avail(&r->body));
            o = make_obj(r, r->status, buf_head(&r->fields), buf_avail(&r->fields), b, r->vary,
                         buf_head(&vk), buf_avail(&vk), r->request_time, now);
            if (o == NULL)
                cbody_unref(b);
        }
        buf_fini(&vk);
        if (o) {
            store_insert(ca->store, o);
            if (ca->disk)
                disk_put(ca->disk, o);
            stored = 1;
        }
    }
    if (r->fetcher) {
        store_pending_done(ca->store, r->key, r->key_len, stored);
        r->fetcher = 0;
    }
    if (r->unsafe && r->status < 400) {
        /* RFC 9111 4.4: a successful unsafe request invalidates the target. */
        uint64_t n = store_purge(ca->store, r->key, r->key_len, 0);
        if (ca->disk)
            disk_purge(ca->disk, r->key, r->key_len, 0);
        for (int i = 0; i < 2; i++) {
            if (r->inval[i] == NULL)
                continue;
            n += store_purge(ca->store, r->inval[i], strlen(r->inval[i]), 0);
            if (ca->disk)
                disk_purge(ca->disk, r->inval[i], strlen(r->inval[i]), 0);
        }
        metric_add(ca->m_purged, (int64_t)n);
    }
    if (r->c && r->buffered) {
        if (o) {
            serve_obj(r, o, XC_MISS);
            cobj_unref(o);
            return;
        }
        respond_error(r, 502, "response could not be stored");
        return;
    }
    cobj_unref(o);
    if (r->c && r->chunked_out && !r->is_head)
        hconn_send(r->c, "0\r\n\r\n", 5);
    if (r->c)
        metric_add(ca->m_bytes, (int64_t)r->c->resp_bytes);
    creq_finish(r);
}

static const struct up_cb up_callbacks = {up_head, up_data, up_done};

static void waiter_wake(void *arg)
{
    struct creq *r = arg;
    r->waiting = 0;
    if (r->c == NULL) {
        /* The client left while the wake was already on its way. */
        creq_finish(r);
        return;
    }
    if (r->waiter.stored) {
        lookup(r);
        return;
    }
    /* The fetch stored nothing (uncacheable, error): fetch alone. */
    fetch(r, 0);
}

/* Sends r upstream. collapse: join or register in the pending table. */
static void fetch(struct creq *r, int collapse)
{
    struct cache *ca = r->w->cache;
    if (collapse && r->stale == NULL) {
        r->waiter.loop = r->w->loop;
        r->waiter.wake = waiter_wake;
        r->waiter.arg = r;
        if (store_pending_join(ca->store, r->key, r->key_len, &r->waiter)) {
            metric_inc(ca->m_collapsed);
            r->waiting = 1;
            return;
        }
        r->fetcher = 1;
    }
    struct buf h;
    buf_init(&h);
    int filling = r->is_get && r->xc != XC_BYPASS;
    build_upstream_head(r, &h, filling, r->is_get && filling ? "GET" : r->method_copy);
    const struct up_target *t = r->pub->has_parent ? &r->pub->parent : &r->pub->origin;
    r->request_time = time_wall();
    metric_inc(ca->m_fetches);
    int idempotent = r->is_get || r->is_head;
    r->up = up_request(r->w->pool, t, &h, r->c ? r->c->body : NULL, r->c ? r->c->body_len : 0,
                       idempotent, r->is_head, &up_callbacks, r);
    buf_fini(&h);
}

static int64_t obj_lifetime(const struct cobj *o, int64_t now)
{
    int64_t ex = atomic_load(&o->expires_at);
    if (ex >= 0) {
        /* An admin expiry update: express it as a lifetime from now. */
        int64_t age = cache_age(&o->meta, now);
        return ex - now + age;
    }
    return o->lifetime;
}

static void revalidate_in_background(struct creq *r, struct cobj *o)
{
    struct creq *b = xcalloc(1, sizeof(*b));
    b->w = r->w;
    b->set = settings_ref(r->set);
    b->pub = r->pub;
    b->key = xstrndup(r->key, r->key_len);
    b->key_len = r->key_len;
    b->is_get = 1;
    b->stale = cobj_ref(o);
    b->method_copy = xstrdup("GET");
    cc_init(&b->req_cc);
    buf_init(&b->fields);
    buf_init(&b->body);
    /* Only one background revalidation per key at a time. */
    if (store_pending_join(r->w->cache->store, b->key, b->key_len, &b->waiter)) {
        store_pending_leave(r->w->cache->store, b->key, b->key_len, &b->waiter);
        creq_finish(b);
        return;
    }
    b->fetcher = 1;
    struct buf h;
    buf_init(&h);
    /* Build the head from the client's request, then detach from it. */
    b->c = r->c;
    build_upstream_head(b, &h, 1, "GET");
    b->c = NULL;
    b->request_time = time_wall();
    metric_inc(r->w->cache->m_fetches);
    const struct up_target *t = b->pub->has_parent ? &b->pub->parent : &b->pub->origin;
    b->up = up_request(b->w->pool, t, &h, NULL, 0, 1, 0, &up_callbacks, b);
    buf_fini(&h);
}

/*
 * A disk read finished: put the object back in the memory tier and look
 * again (it may be stale and need revalidation like any stored object).
 */
static void disk_read_done(void *arg, struct disk_record *rec)
{
    struct creq *r = arg;
    struct cache *ca = r->w->cache;
    r->disk_reading = 0;
    if (r->c == NULL) {
        disk_record_free(rec);
        creq_finish(r);
        return;
    }
    if (rec && rec->key_len == r->key_len && memcmp(rec->key, r->key, r->key_len) == 0) {
        cbody_ref(rec->body);
        struct cobj *o = make_obj(r, rec->status, rec->fields, rec->fields_len, rec->body, rec->vary,
                                  rec->vkey, rec->vkey_len, rec->request_time, rec->response_time);
        if (o) {
            atomic_store(&o->expires_at, rec->expires_at);
            store_insert(ca->store, o);
            cobj_unref(o);
            metric_inc(ca->m_disk_hits);
        } else {
            cbody_unref(rec->body);
        }
    }
    disk_record_free(rec);
    lookup(r);
}

static void lookup(struct creq *r)
{
    struct cache *ca = r->w->cache;
    int64_t now = time_wall();
    struct cobj *o = store_lookup(ca->store, r->key, r->key_len, &r->c->req);
    if (o) {
        int64_t life = obj_lifetime(o, now);
        enum serve_verdict v = cache_serve(&o->meta, life, now, &r->req_cc);
        if (v == SERVE_FRESH) {
            serve_obj(r, o, XC_HIT);
            cobj_unref(o);
            return;
        }
        if (v == SERVE_STALE_REVALIDATE) {
            revalidate_in_background(r, o);
            serve_obj(r, o, XC_STALE);
            cobj_unref(o);
            return;
        }
        if (r->req_cc.only_if_cached) {
            cobj_unref(o);
            r->xc = XC_MISS;
            count(r);
            respond_error(r, 504, "not fresh in cache (only-if-cached)");
            return;
        }
        /* Revalidate: a conditional request with the stored validators,
         * or a plain one when it has none. */
        r->stale = o;
        r->xc = XC_MISS;
        fetch(r, 0);
        return;
    }
    if (ca->disk && !r->disk_checked) {
        r->disk_checked = 1;
        uint64_t id = disk_lookup(ca->disk, r->key, r->key_len, &r->c->req);
        if (id != 0) {
            r->disk_reading = 1;
            disk_read_async(ca->disk, id, r->w->loop, disk_read_done, r);
            return;
        }
    }
    if (r->req_cc.only_if_cached) {
        r->xc = XC_MISS;
        count(r);
        respond_error(r, 504, "not in cache (only-if-cached)");
        return;
    }
    r->xc = XC_MISS;
    fetch(r, !r->has_auth && !r->is_head);
}

static const struct publisher *find_publisher(const struct cache_settings *s, const char *host,
                                              size_t len)
{
    /* Host without port, compared case-insensitively. */
    if (len > 0 && host[0] != '[') {
        const char *colon = memchr(host, ':', len);
        if (colon)
            len = (size_t)(colon - host);
    }
    if (len > 0 && host[len - 1] == '.')
        len--;
    for (size_t i = 0; i < s->npubs; i++)
        for (size_t j = 0; j < s->pubs[i].nhosts; j++)
            if (str_ieq(host, len, s->pubs[i].hosts[j]))
                return &s->pubs[i];
    return NULL;
}

static void on_request(struct hconn *c)
{
    struct cache_worker *w = c->srv_ud;
    const struct http1_msg *m = &c->req;
    struct creq *r = xcalloc(1, sizeof(*r));

    r->c = c;
    r->w = w;
    r->set = settings_ref(w->set);
    buf_init(&r->fields);
    buf_init(&r->body);
    c->ud = r;
    r->method_copy = xstrndup(m->method, m->method_len);
    r->target_copy = xstrndup(m->target, m->target_len);
    r->is_get = str_ieq(m->method, m->method_len, "GET");
    r->is_head = str_ieq(m->method, m->method_len, "HEAD");
    r->xc = XC_BYPASS;
    cc_init(&r->req_cc);
    cc_from_msg(&r->req_cc, m, "cache-control");
    /* Pragma: no-cache is the HTTP/1.0 spelling (RFC 9111 5.4). */
    const struct http1_hdr *pragma = http1_find(m, "pragma");
    if (!r->req_cc.present && pragma && http1_list_has(pragma->value, pragma->value_len, "no-cache"))
        r->req_cc.no_cache = 1;

    if (m->host == NULL || m->host_len == 0) {
        respond_error(r, 400, "missing Host");
        return;
    }
    r->pub = find_publisher(r->set, m->host, m->host_len);
    if (r->pub == NULL) {
        respond_error(r, 421, "this CDN does not serve that host");
        return;
    }
    if (m->target[0] != '/') {
        /* Absolute-form and authority-form are proxy requests; a CDN edge
         * only answers origin-form (and OPTIONS *). */
        respond_error(r, 400, "request target must be a path");
        return;
    }
    const struct http1_hdr *via = http1_find(m, "via");
    if (via) {
        size_t nlen = strlen(r->set->name);
        for (size_t i = 0; i + nlen <= via->value_len; i++) {
            if (memcmp(via->value + i, r->set->name, nlen) == 0 &&
                (i == 0 || via->value[i - 1] == ' ') &&
                (i + nlen == via->value_len || via->value[i + nlen] == ' ' ||
                 via->value[i + nlen] == ',')) {
                respond_error(r, 508, "request loop: this cache is already in Via");
                return;
            }
        }
    }
    if (m->host_len + 1 + m->target_len > MAX_KEY) {
        respond_error(r, 414, "URI too long for a cache key");
        return;
    }
    /* Primary key: publisher name and request target. */
    r->key = xasprintf("%s %.*s", r->pub->hosts[0], (int)m->target_len, m->target);
    r->key_len = strlen(r->key);
    r->has_auth = http1_find(m, "authorization") != NULL;
    r->has_range = http1_find(m, "range") != NULL;
    r->is_cond = http1_find(m, "if-none-match") || http1_find(m, "if-modified-since");

    if (!r->is_get && !r->is_head) {
        static const char *const safe[] = {"OPTIONS", "TRACE"};
        r->unsafe = 1;
        for (size_t i = 0; i < ARRAY_SIZE(safe); i++)
            if (str_ieq(m->method, m->method_len, safe[i]))
                r->unsafe = 0;
        r->xc = XC_BYPASS;
        count(r);
        fetch(r, 0);
        return;
    }
    if (r->has_auth) {
        /* RFC 9111 3.5: never answer an authorised request from the
         * shared cache; its response may still be stored if it says so. */
        r->xc = XC_MISS;
        fetch(r, 0);
        return;
    }
    if (r->has_range) {
        /* A stored full response can answer; a miss is forwarded as is. */
        struct cobj *o = store_lookup(r->w->cache->store, r->key, r->key_len, m);
        if (o) {
            int64_t now = time_wall();
            if (cache_serve(&o->meta, obj_lifetime(o, now), now, &r->req_cc) == SERVE_FRESH &&
                o->meta.status == 200) {
                serve_obj(r, o, XC_HIT);
                cobj_unref(o);
                return;
            }
            cobj_unref(o);
        }
        r->xc = XC_BYPASS;
        fetch(r, 0);
        return;
    }
    lookup(r);
}

static void on_abort(struct hconn *c)
{
    struct creq *r = c->ud;
    if (r == NULL)
        return;
    c->ud = NULL;
    r->c = NULL;
    if (r->waiting) {
        if (store_pending_leave(r->w->cache->store, r->key, r->key_len, &r->waiter))
            creq_finish(r);
        /* else waiter_wake will run and finish r */
        return;
    }
    if (r->disk_reading)
        return; /* disk_read_done will finish r */
    if (r->up && r->storing && r->fetcher) {
        /* Keep filling the cache for the others waiting on this fetch. */
        r->streaming = 0;
        up_pause(r->up, 0);
        return;
    }
    creq_finish(r);
}

static const struct hsrv_handler cache_handler = {
    .on_request = on_request,
    .on_writable = on_writable,
    .on_abort = on_abort,
};

/* Configuration. */

static int parse_url(const char *url, struct up_target *t, const char *sni, SSL_CTX *ctx,
                     char *err, size_t errlen)
{
    const char *rest;
    memset(t, 0, sizeof(*t));
    if (strncmp(url, "http://", 7) == 0) {
        rest = url + 7;
    } else if (strncmp(url, "https://", 8) == 0) {
        rest = url + 8;
        t->tls = 1;
    } else {
        snprintf(err, errlen, "\"%s\": scheme must be http:// or https://", url);
        return -1;
    }
    char hp[160];
    size_t n = strcspn(rest, "/");
    if (n == 0 || n >= 128 || (rest[n] == '/' && rest[n + 1] != '\0')) {
        snprintf(err, errlen, "\"%s\": expected scheme://ADDRESS:PORT with no path", url);
        return -1;
    }
    memcpy(hp, rest, n);
    hp[n] = '\0';
    if (strchr(hp, ':') == NULL || hp[strlen(hp) - 1] == ']') {
        size_t len = strlen(hp);
        snprintf(hp + len, sizeof(hp) - len, ":%d", t->tls ? 443 : 80);
    }
    if (net_addr_parse(hp, &t->addr) < 0) {
        snprintf(err, errlen, "\"%s\": address must be numeric (host names are not resolved)", url);
        return -1;
    }
    t->label = xasprintf("%s://%s", t->tls ? "https" : "http", hp);
    if (t->tls) {
        t->sni = xstrdup(sni);
        t->ctx = ctx;
    }
    return 0;
}

static SSL_CTX *client_ctx(const char *ca, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = ca ? SSL_CTX_load_verify_locations(ctx, ca, NULL) : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        snprintf(err, errlen, "cannot load CA bundle %s", ca ? ca : "(system)");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* Reads `NAME ADDR [proxy_protocol]` lines. Returns the number of errors. */
static int parse_listeners(struct conf *c, const struct conf_node *b, const char *name,
                           struct net_addr **addrs, unsigned char **proxy, size_t *n)
{
    int errors = 0;
    for (const struct conf_node *l = conf_find(b, name); l; l = conf_next(l)) {
        *addrs = xrealloc(*addrs, (*n + 1) * sizeof(**addrs));
        *proxy = xrealloc(*proxy, *n + 1);
        if (net_addr_parse(l->args[0], &(*addrs)[*n]) < 0) {
            conf_error(c, l, "%s: \"%s\" is not a numeric address:port", name, l->args[0]);
            errors++;
            continue;
        }
        (*proxy)[*n] = 0;
        if (l->nargs == 2) {
            if (strcmp(l->args[1], "proxy_protocol") != 0) {
                conf_error(c, l, "%s: unknown flag \"%s\" (expected proxy_protocol)", name, l->args[1]);
                errors++;
                continue;
            }
            (*proxy)[*n] = 1;
        }
        (*n)++;
    }
    return errors;
}

static int tls_version(const char *s)
{
    return strcmp(s, "TLSv1.3") == 0 ? TLS1_3_VERSION : TLS1_2_VERSION;
}

static void *cache_create(struct conf *c, const struct conf_node *b)
{
    struct cache *ca = xcalloc(1, sizeof(*ca));
    struct cache_settings *s = xcalloc(1, sizeof(*s));
    char err[512];
    int errors = 0;

    atomic_init(&s->refs, 1);
    atomic_init(&ca->access_fd, -1);
    ca->set = s;
    s->name = xstrdup(conf_str(b, "name"));
    if (strpbrk(s->name, " \t\r\n,()")) {
        conf_error(c, conf_find(b, "name"), "name must be a single token");
        errors++;
    }
    s->heuristic_pct = (int)conf_int(b, "heuristic_percent");
    s->heuristic_max = conf_int(b, "heuristic_max") / 1000;
    s->default_sie = conf_int(b, "stale_if_error") / 1000;
    const char *tf = conf_str(b, "targeted_field");
    s->targeted = strcmp(tf, "off") == 0 ? NULL : xstrdup(tf);
    s->max_object = (uint64_t)conf_int(b, "max_object_size");

    s->client_ctx = client_ctx(conf_str(b, "origin_ca"), err, sizeof(err));
    if (s->client_ctx == NULL) {
        conf_error(c, conf_find(b, "origin_ca") ? conf_find(b, "origin_ca") : b, "%s", err);
        errors++;
    }

    /* Listeners. */
    errors += parse_listeners(c, b, "listen", &ca->listen, &ca->proxy, &ca->nlisten);
    errors += parse_listeners(c, b, "listen_tls", &ca->listen_tls, &ca->proxy_tls, &ca->nlisten_tls);
    if (conf_find(b, "listen") == NULL && conf_find(b, "listen_tls") == NULL) {
        conf_error(c, b, "cache: needs at least one listen or listen_tls");
        errors++;
    }

    /* Certificates. */
    size_t ncerts = 0;
    struct tls_cert_conf *certs = NULL;
    for (const struct conf_node *n = conf_find(b, "certificate"); n; n = conf_next(n)) {
        certs = xrealloc(certs, (ncerts + 1) * sizeof(*certs));
        certs[ncerts].cert_path = n->args[0];
        certs[ncerts].key_path = n->args[1];
        ncerts++;
    }
    if (ca->nlisten_tls > 0 && ncerts == 0) {
        conf_error(c, conf_find(b, "listen_tls"), "listen_tls needs at least one certificate");
        errors++;
    }
    if (ncerts > 0) {
        /* Resolve relative paths against the config file like CONF_PATH does. */
        const struct conf_node *first = conf_find(b, "certificate");
        char **abs = xcalloc(ncerts * 2, sizeof(char *));
        size_t k = 0;
        for (const struct conf_node *n = first; n; n = conf_next(n), k++) {
            const char *slash = strrchr(n->file, '/');
            for (int a = 0; a < 2; a++) {
                const char *p = n->args[a];
                abs[k * 2 + (size_t)a] = (p[0] == '/' || slash == NULL)
                                              ? xstrdup(p)
                                              : xasprintf("%.*s/%s", (int)(slash - n->file), n->file, p);
            }
            certs[k].cert_path = abs[k * 2];
            certs[k].key_path = abs[k * 2 + 1];
        }
        struct tls_server_conf tc = {
            .certs = certs, .ncerts = ncerts,
            .min_version = tls_version(conf_str(b, "tls_min_version")),
            .session_timeout = (long)(conf_int(b, "tls_session_timeout") / 1000),
            .tickets = (int)conf_int(b, "tls_tickets"),
            .metric_labels = "role=\"cache\"",
            .label = (unsigned)conf_int(b, "tls_label"),
        };
        sid_codec_kind_parse(conf_str(b, "tls_label_codec"), &tc.codec.kind);
        tc.codec.n = (unsigned)conf_int(b, "tls_group_size");
        if (tc.label && tc.codec.kind == SID_CODEC_MODN && tc.label > tc.codec.n) {
            conf_error(c, conf_find(b, "tls_label"), "tls_label %u is above tls_group_size %u (mod-n)",
                       tc.label, tc.codec.n);
            errors++;
        }
        s->tls = tls_server_create(&tc, err, sizeof(err));
        if (s->tls == NULL) {
            conf_error(c, first, "%s", err);
            errors++;
        }
        for (size_t i = 0; i < ncerts * 2; i++)
            free(abs[i]);
        free(abs);
    }
    free(certs);

    /* Publishers. */
    for (const struct conf_node *n = conf_find(b, "publisher"); n; n = conf_next(n)) {
        s->pubs = xrealloc(s->pubs, (s->npubs + 1) * sizeof(*s->pubs));
        struct publisher *p = &s->pubs[s->npubs];
        memset(p, 0, sizeof(*p));
        p->hosts = xcalloc(1, sizeof(char *));
        p->hosts[0] = xstrdup(n->args[0]);
        p->nhosts = 1;
        for (const struct conf_node *a = conf_find(n, "alias"); a; a = conf_next(a)) {
            p->hosts = xrealloc(p->hosts, (p->nhosts + 1) * sizeof(char *));
            p->hosts[p->nhosts++] = xstrdup(a->args[0]);
        }
        for (size_t j = 0; j < p->nhosts; j++)
            for (char *q = p->hosts[j]; *q; q++)
                *q = (char)((*q >= 'A' && *q <= 'Z') ? *q + 32 : *q);
        const char *oh = conf_str(n, "origin_host");
        p->origin_host = xstrdup(oh ? oh : n->args[0]);
        const char *sni = conf_str(n, "origin_sni") ? conf_str(n, "origin_sni") : p->origin_host;
        s->npubs++;
        if (parse_url(conf_str(n, "origin"), &p->origin, sni, s->client_ctx, err, sizeof(err)) < 0) {
            conf_error(c, conf_find(n, "origin"), "origin: %s", err);
            errors++;
        }
        if (conf_str(n, "parent")) {
            if (parse_url(conf_str(n, "parent"), &p->parent, sni, s->client_ctx, err, sizeof(err)) < 0) {
                conf_error(c, conf_find(n, "parent"), "parent: %s", err);
                errors++;
            } else {
                p->has_parent = 1;
            }
        }
        for (size_t i = 0; i + 1 < s->npubs; i++)
            for (size_t j = 0; j < p->nhosts; j++)
                if (find_publisher(s, p->hosts[j], strlen(p->hosts[j])) != p &&
                    find_publisher(s, p->hosts[j], strlen(p->hosts[j])) != NULL) {
                    conf_error(c, n, "host \"%s\" belongs to two publishers", p->hosts[j]);
                    errors++;
                    i = s->npubs;
                    break;
                }
    }

    hsrv_limits_default(&ca->lim);
    ca->lim.header_timeout_ms = conf_int(b, "header_timeout");
    ca->lim.idle_timeout_ms = conf_int(b, "idle_timeout");
    ca->lim.max_conns = (unsigned)conf_int(b, "max_connections");
    ca->lim.http.max_head_bytes = (size_t)conf_int(b, "max_header_size");
    ca->lim.http.max_headers = (size_t)conf_int(b, "max_headers");
    ca->lim.http.max_target_bytes = (size_t)conf_int(b, "max_uri_size");
    ca->lim.max_body = (size_t)conf_int(b, "max_body_size");
    ca->upt.connect_ms = conf_int(b, "connect_timeout");
    ca->upt.response_ms = conf_int(b, "response_timeout");
    ca->upt.read_ms = conf_int(b, "read_timeout");
    ca->upt.idle_ms = 30000;
    ca->upt.max_idle = 256;

    const char *al = conf_str(b, "access_log");
    if (strcmp(al, "off") != 0) {
        const char *slash = strrchr(conf_find(b, "access_log")->file, '/');
        ca->access_path = (al[0] == '/' || slash == NULL)
                              ? xstrdup(al)
                              : xasprintf("%.*s/%s", (int)(slash - conf_find(b, "access_log")->file),
                                          conf_find(b, "access_log")->file, al);
    }
    if (conf_str(b, "disk_path"))
        ca->disk_path = xstrdup(conf_str(b, "disk_path"));
    ca->disk_size = (uint64_t)conf_int(b, "disk_size");
    enum evict_kind ek = EVICT_S3FIFO;
    evict_kind_parse(conf_str(b, "eviction"), &ek);
    if (errors) {
        free(ca->listen);
        free(ca->listen_tls);
        free(ca->proxy);
        free(ca->proxy_tls);
        free(ca->disk_path);
        free(ca->access_path);
        settings_unref(ca->set);
        free(ca);
        return NULL;
    }
    ca->store = store_create((uint64_t)conf_int(b, "memory"), ek);
    return ca;
}

static int64_t gauge_objects(void *arg)
{
    struct store_stats st;
    store_get_stats(arg, &st);
    return (int64_t)st.objects;
}

static int64_t gauge_bytes(void *arg)
{
    struct store_stats st;
    store_get_stats(arg, &st);
    return (int64_t)st.bytes;
}

static int64_t gauge_disk_objects(void *arg)
{
    struct disk_stats st;
    disk_get_stats(arg, &st);
    return (int64_t)st.objects;
}

static int64_t gauge_disk_bytes(void *arg)
{
    struct disk_stats st;
    disk_get_stats(arg, &st);
    return (int64_t)st.bytes;
}

static int64_t gauge_evictions(void *arg)
{
    struct store_stats st;
    store_get_stats(arg, &st);
    return (int64_t)st.evictions;
}

/* Admin API: purge and expire by URL or prefix. */

static int target_key(struct cache *ca, const struct admin_req *req, struct buf *out,
                      char **key, int *prefix)
{
    char url[MAX_KEY], pfx[8];
    const char *q = req->query[0] ? req->query : "";
    /* Parameters may come in the query or a form body. */
    char *body = req->body_len ? xstrndup(req->body, req->body_len) : NULL;
    if (body && strchr(q, '=') == NULL)
        q = body;
    if (admin_param(q, "url", url, sizeof(url)) < 0 || url[0] == '\0') {
        buf_puts(out, "{\"error\": \"give url=http://HOST/PATH (and prefix=1 for a prefix)\"}\n");
        free(body);
        return 400;
    }
    *prefix = admin_param(q, "prefix", pfx, sizeof(pfx)) == 0 && strcmp(pfx, "1") == 0;
    free(body);
    const char *rest = strncmp(url, "http://", 7) == 0 ? url + 7 : strncmp(url, "https://", 8) == 0 ? url + 8 : NULL;
    if (rest == NULL) {
        buf_puts(out, "{\"error\": \"url must start with http:// or https://\"}\n");
        return 400;
    }
    size_t hl = strcspn(rest, "/");
    const struct publisher *p = find_publisher(ca->set, rest, hl);
    if (p == NULL) {
        buf_puts(out, "{\"error\": \"no publisher serves that host\"}\n");
        return 404;
    }
    *key = xasprintf("%s %s", p->hosts[0], rest[hl] ? rest + hl : "/");
    return 0;
}

static int api_purge(void *arg, const struct admin_req *req, struct buf *out, const char **ct)
{
    struct cache *ca = arg;
    char *key = NULL;
    int prefix = 0;
    int rc = target_key(ca, req, out, &key, &prefix);
    if (rc)
        return rc;
    uint64_t n = store_purge(ca->store, key, strlen(key), prefix);
    uint64_t nd = ca->disk ? disk_purge(ca->disk, key, strlen(key), prefix) : 0;
    metric_add(ca->m_purged, (int64_t)n);
    log_info("cache: purged %" PRIu64 " object%s for %s%s", n, n == 1 ? "" : "s", key,
             prefix ? " (prefix)" : "");
    struct json j;
    json_init(&j, out);
    json_obj_begin(&j);
    json_kv_str(&j, "key", key);
    json_key(&j, "prefix");
    json_bool(&j, prefix);
    json_kv_int(&j, "purged", (int64_t)n);
    json_kv_int(&j, "purged_disk", (int64_t)nd);
    json_obj_end(&j);
    free(key);
    return 200;
}

static int api_expire(void *arg, const struct admin_req *req, struct buf *out, const char **ct)
{
    struct cache *ca = arg;
    char *key = NULL, ttl_s[32];
    int prefix = 0;
    int64_t ttl;
    int rc = target_key(ca, req, out, &key, &prefix);
    if (rc)
        return rc;
    const char *q = req->query[0] ? req->query : "";
    char *body = req->body_len ? xstrndup(req->body, req->body_len) : NULL;
    if (body && strchr(q, '=') == NULL)
        q = body;
    int bad = admin_param(q, "ttl", ttl_s, sizeof(ttl_s)) < 0 ||
              conf_parse_duration(ttl_s, &ttl) < 0;
    free(body);
    if (bad) {
        buf_puts(out, "{\"error\": \"give ttl=DURATION (e.g. 0, 30s, 5m): the new time to expiry\"}\n");
        free(key);
        return 400;
    }
    int64_t at = time_wall() + ttl / 1000;
    uint64_t n = store_expire(ca->store, key, strlen(key), prefix, ttl == 0 ? 0 : at);
    if (ca->disk)
        disk_expire(ca->disk, key, strlen(key), prefix, ttl == 0 ? 0 : at);
    log_info("cache: expiry of %" PRIu64 " object%s for %s%s set to %s from now", n,
             n == 1 ? "" : "s", key, prefix ? " (prefix)" : "", ttl_s);
    struct json j;
    json_init(&j, out);
    json_obj_begin(&j);
    json_kv_str(&j, "key", key);
    json_key(&j, "prefix");
    json_bool(&j, prefix);
    json_kv_int(&j, "expires_at", ttl == 0 ? 0 : at);
    json_kv_int(&j, "updated", (int64_t)n);
    json_obj_end(&j);
    free(key);
    return 200;
}

static int api_stats(void *arg, const struct admin_req *req, struct buf *out, const char **ct)
{
    struct cache *ca = arg;
    struct store_stats st;
    struct json j;
    store_get_stats(ca->store, &st);
    json_init(&j, out);
    json_obj_begin(&j);
    json_key(&j, "cache");
    json_obj_begin(&j);
    json_key(&j, "requests");
    json_obj_begin(&j);
    for (int i = 0; i < 5; i++) {
        char name[16];
        snprintf(name, sizeof(name), "%s", xc_names[i]);
        for (char *p = name; *p; p++)
            *p = (char)(*p + 32 * (*p >= 'A' && *p <= 'Z'));
        json_kv_int(&j, name, metric_value(ca->m_req[i]));
    }
    json_obj_end(&j);
    json_kv_int(&j, "objects", (int64_t)st.objects);
    json_kv_int(&j, "memory_bytes", (int64_t)st.bytes);
    json_kv_int(&j, "evictions", (int64_t)st.evictions);
    json_kv_int(&j, "origin_fetches", metric_value(ca->m_fetches));
    json_kv_int(&j, "origin_errors", metric_value(ca->m_fetch_err));
    json_kv_int(&j, "collapsed", metric_value(ca->m_collapsed));
    json_kv_int(&j, "purged", metric_value(ca->m_purged));
    json_kv_int(&j, "body_bytes", metric_value(ca->m_bytes));
    if (ca->disk) {
        struct disk_stats ds;
        disk_get_stats(ca->disk, &ds);
        json_key(&j, "disk");
        json_obj_begin(&j);
        json_kv_int(&j, "objects", (int64_t)ds.objects);
        json_kv_int(&j, "bytes", (int64_t)ds.bytes);
        json_kv_int(&j, "writes", (int64_t)ds.writes);
        json_kv_int(&j, "reads", (int64_t)ds.reads);
        json_kv_int(&j, "evictions", (int64_t)ds.evictions);
        json_kv_int(&j, "dropped", (int64_t)ds.dropped);
        json_kv_int(&j, "errors", (int64_t)ds.errors);
        json_obj_end(&j);
    }
    json_kv_int(&j, "tls_handshakes", metrics_sum("ferry_tls_handshakes_total"));
    json_obj_end(&j);
    json_obj_end(&j);
    return 200;
}

static void set_via(struct hsrv *srv, const struct cache_settings *set)
{
    char *via = xasprintf("1.1 %s (ferry/%s)", set->name, FERRY_VERSION);
    hsrv_set_via(srv, via);
    free(via);
}

static int cache_start(void *inst, const struct role_env *env)
{
    struct cache *ca = inst;
    char as[80];

    ca->main_loop = env->main_loop;
    for (int i = 0; i < 5; i++) {
        char labels[32];
        char lower[16];
        snprintf(lower, sizeof(lower), "%s", xc_names[i]);
        for (char *p = lower; *p; p++)
            *p = (char)(*p + 32 * (*p >= 'A' && *p <= 'Z'));
        snprintf(labels, sizeof(labels), "result=\"%s\"", lower);
        ca->m_req[i] = metric_counter("ferry_cache_requests_total", labels,
                                      "Requests by cache result (X-Cache)");
    }
    ca->m_bytes = metric_counter("ferry_cache_response_bytes_total", NULL, "Bytes sent to clients");
    ca->m_fetches = metric_counter("ferry_cache_origin_fetches_total", NULL, "Requests sent to origins or parents");
    ca->m_fetch_err = metric_counter("ferry_cache_origin_errors_total", NULL, "Origin requests that failed");
    ca->m_collapsed = metric_counter("ferry_cache_collapsed_total", NULL, "Misses that waited for another fetch");
    ca->m_purged = metric_counter("ferry_cache_purged_total", NULL, "Objects removed by purge or invalidation");
    ca->m_disk_hits = metric_counter("ferry_cache_disk_reads_total", NULL, "Objects read back from the disk tier");
    if (ca->disk_path) {
        char err[512];
        ca->disk = disk_open(ca->disk_path, ca->disk_size, err, sizeof(err));
        if (ca->disk == NULL) {
            log_error("cache: disk tier: %s", err);
            return -1;
        }
        metric_gauge_fn("ferry_cache_disk_objects", NULL, "Objects in the disk tier", gauge_disk_objects, ca->disk);
        metric_gauge_fn("ferry_cache_disk_bytes", NULL, "Bytes charged in the disk tier", gauge_disk_bytes, ca->disk);
        struct disk_stats ds;
        disk_get_stats(ca->disk, &ds);
        log_info("cache: disk tier %s: %" PRIu64 " objects, %" PRIu64 " bytes", ca->disk_path,
                 ds.objects, ds.bytes);
    }
    metric_gauge_fn("ferry_cache_objects", NULL, "Objects in the memory tier", gauge_objects, ca->store);
    metric_gauge_fn("ferry_cache_memory_bytes", NULL, "Bytes charged in the memory tier", gauge_bytes, ca->store);
    metric_gauge_fn("ferry_cache_evictions", NULL, "Objects evicted from the memory tier", gauge_evictions, ca->store);
    if (ca->access_path) {
        int fd = open_access_log(ca->access_path);
        if (fd < 0) {
            errno = -fd;
            log_warn("cache: open access_log %s", ca->access_path);
            return fd;
        }
        atomic_store(&ca->access_fd, fd);
    }
    ca->nworkers = env->nworkers;
    ca->workers = xcalloc(env->nworkers, sizeof(*ca->workers));
    for (unsigned i = 0; i < env->nworkers; i++) {
        struct cache_worker *w = &ca->workers[i];
        w->cache = ca;
        w->loop = env->workers[i];
        w->set = settings_ref(ca->set);
        w->srv = hsrv_create(w->loop, &cache_handler, w, &ca->lim, "cache");
        set_via(w->srv, ca->set);
        w->pool = up_pool_create(w->loop, &ca->upt);
        for (size_t j = 0; j < ca->nlisten; j++) {
            int rc = hsrv_listen(w->srv, &ca->listen[j], NULL, ca->proxy[j]);
            if (rc < 0) {
                errno = -rc;
                log_warn("cache: listen on %s", net_addr_str(&ca->listen[j], as, sizeof(as)));
                return rc;
            }
        }
        for (size_t j = 0; j < ca->nlisten_tls; j++) {
            int rc = hsrv_listen(w->srv, &ca->listen_tls[j], tls_server_ctx(ca->set->tls),
                                  ca->proxy_tls[j]);
            if (rc < 0) {
                errno = -rc;
                log_warn("cache: listen on %s", net_addr_str(&ca->listen_tls[j], as, sizeof(as)));
                return rc;
            }
        }
    }
    for (size_t j = 0; j < ca->nlisten; j++)
        log_info("cache %s: listening on http://%s", ca->set->name,
                 net_addr_str(&ca->listen[j], as, sizeof(as)));
    for (size_t j = 0; j < ca->nlisten_tls; j++)
        log_info("cache %s: listening on https://%s", ca->set->name,
                 net_addr_str(&ca->listen_tls[j], as, sizeof(as)));
    if (env->admin) {
        admin_route(env->admin, "POST", "/purge", api_purge, ca);
        admin_route(env->admin, "POST", "/expire", api_expire, ca);
        admin_route(env->admin, "GET", "/stats", api_stats, ca);
    }
    return 0;
}

struct swap {
    struct cache_worker *w;
    struct cache_settings *set;
};

static void swap_cb(void *arg)
{
    struct swap *s = arg;
    settings_unref(s->w->set);
    s->w->set = s->set;
    set_via(s->w->srv, s->set);
    if (s->set->tls)
        hsrv_set_ssl_ctx(s->w->srv, tls_server_ctx(s->set->tls));
    free(s);
}

static int cache_reload(void *inst, void *fresh_inst, struct conf *c)
{
    struct cache *ca = inst, *f = fresh_inst;
    if (f->nlisten != ca->nlisten || f->nlisten_tls != ca->nlisten_tls ||
        memcmp(f->listen, ca->listen, ca->nlisten * sizeof(*ca->listen)) != 0 ||
        memcmp(f->listen_tls, ca->listen_tls, ca->nlisten_tls * sizeof(*ca->listen_tls)) != 0)
        log_warnx("cache: listen addresses changed; they take effect at restart");
    if (ca->nlisten_tls > 0 && f->set->tls == NULL)
        log_warnx("cache: no certificate in the new configuration; keeping TLS listeners on the old ones");
    for (unsigned i = 0; i < ca->nworkers; i++) {
        struct swap *s = xmalloc(sizeof(*s));
        s->w = &ca->workers[i];
        s->set = settings_ref(f->set);
        loop_post(ca->workers[i].loop, swap_cb, s);
    }
    settings_unref(ca->set);
    ca->set = settings_ref(f->set);
    return 0;
}

static void cache_drain(void *inst, void (*done)(void *), void *arg)
{
    struct cache *ca = inst;
    struct hsrv **srvs = xcalloc(ca->nworkers + 1, sizeof(*srvs));
    for (unsigned i = 0; i < ca->nworkers; i++)
        srvs[i] = ca->workers[i].srv;
    hsrv_drain_all(srvs, ca->nworkers, ca->main_loop, done, arg);
    free(srvs);
}

static void cache_destroy(void *inst)
{
    struct cache *ca = inst;
    if (ca == NULL)
        return;
    metric_unbind(ca->store);
    if (ca->disk) {
        metric_unbind(ca->disk);
        disk_close(ca->disk);
    }
    free(ca->disk_path);
    for (unsigned i = 0; i < ca->nworkers; i++) {
        hsrv_destroy(ca->workers[i].srv);
        up_pool_destroy(ca->workers[i].pool);
        settings_unref(ca->workers[i].set);
    }
    free(ca->workers);
    store_destroy(ca->store);
    int fd = atomic_load(&ca->access_fd);
    if (fd >= 0)
        close(fd);
    free(ca->access_path);
    free(ca->listen);
    free(ca->listen_tls);
    free(ca->proxy);
    free(ca->proxy_tls);
    settings_unref(ca->set);
    free(ca);
}

const struct role_ops cache_role = {
    .name = "cache",
    .schema = cache_opts,
    .create = cache_create,
    .start = cache_start,
    .reload = cache_reload,
    .drain = cache_drain,
    .destroy = cache_destroy,
};
