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

#include "cache/internal.h"
#include "cache/policy.h"
#include "lib/log.h"
#include "lib/util.h"
#include "version.h"

#define CLIENT_HIGH_WATER (1u << 20) /* pause the origin above this much queued */

const char *const cache__xc_names[XC_COUNT] = {"HIT", "MISS", "STALE", "REVALIDATED", "BYPASS"};

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
const struct publisher *cache__find_publisher(const struct cache_settings *s, const char *host,
                                              size_t len);
static void lookup(struct creq *r);

struct cache_settings *cache__settings_ref(struct cache_settings *s)
{
    atomic_fetch_add(&s->refs, 1);
    return s;
}

static void target_fini(struct up_target *t)
{
    free(t->sni);
    free(t->label);
}

void cache__settings_unref(struct cache_settings *s)
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
               (uint64_t)r->c->resp_bytes, cache__xc_names[r->xc],
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

int cache__open_access_log(const char *path)
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


/* Responses. */

static void add_common(struct creq *r, struct buf *h)
{
    buf_printf(h, "Via: 1.1 %s (ferry/%s)\r\nX-Cache: %s\r\n", r->set->name, FERRY_VERSION,
               cache__xc_names[r->xc]);
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
    /* Ranges are served from stored 200s; say so unless the origin's own
     * Accept-Ranges is among the stored fields. */
    if (status == 200 && o->meta.status == 200 && !o->has_accept_ranges)
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
    cache__settings_unref(r->set);
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
    o->has_accept_ranges = http1_find(&m, "accept-ranges") != NULL;
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
            if (cache__find_publisher(r->set, host, hl) != r->pub)
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
    b->set = cache__settings_ref(r->set);
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

const struct publisher *cache__find_publisher(const struct cache_settings *s, const char *host,
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
    r->set = cache__settings_ref(w->set);
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
    r->pub = cache__find_publisher(r->set, m->host, m->host_len);
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

const struct hsrv_handler cache__handler = {
    .on_request = on_request,
    .on_writable = on_writable,
    .on_abort = on_abort,
};
