/*
 * origin -- see origin.h.
 *
 * Files up to ORIGIN_SMALL bytes are read whole and sent; larger ones are
 * streamed in ORIGIN_CHUNK pieces as the client drains them. Reads are
 * plain pread(2) on the loop thread: this role serves demos and tests
 * from a local directory (page cache or tmpfs), not production traffic.
 */
#include "origin/origin.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http/server.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/util.h"

#define ORIGIN_SMALL (256u * 1024)
#define ORIGIN_CHUNK (64u * 1024)
#define ORIGIN_MAX_PATH 4096

struct hdr_rule {
    char *prefix; /* owned */
    char *name;   /* owned */
    char *value;  /* owned */
};

/* Settings that a reload replaces; shared read-only by the workers. */
struct origin_settings {
    _Atomic int refs;
    char *root;              /* owned */
    char *name;              /* owned */
    struct hdr_rule *rules;  /* owned */
    size_t nrules;
};

struct origin_worker {
    struct origin *o;
    struct loop *loop;
    struct hsrv *srv;
    struct origin_settings *set; /* a reference; swapped on reload */
};

struct origin {
    struct origin_settings *set; /* reference held by the instance */
    struct net_addr *listen;     /* owned */
    size_t nlisten;
    struct hsrv_limits lim;
    struct origin_worker *workers; /* owned */
    unsigned nworkers;
    struct loop *main_loop;
    struct metric *m_requests, *m_304, *m_404, *m_bytes;
};

struct stream {
    int fd;
    uint64_t left;
    struct origin_settings *set;
};

const struct conf_opt origin_opts[] = {
    {.name = "listen", .type = CONF_ADDR, .flags = CONF_MULTI | CONF_REQUIRED,
     .help = "Address and port to serve plain HTTP on."},
    {.name = "root", .type = CONF_PATH, .flags = CONF_REQUIRED,
     .help = "Directory to serve."},
    {.name = "name", .type = CONF_STR, .def = "ferry-origin",
     .help = "Server name in the Server field."},
    {.name = "cache_control", .type = CONF_ARGS, .flags = CONF_MULTI, .min_args = 2,
     .max_args = 2, .help = "PREFIX VALUE: Cache-Control for paths under PREFIX (longest wins)."},
    {.name = "header", .type = CONF_ARGS, .flags = CONF_MULTI, .min_args = 3, .max_args = 3,
     .help = "PREFIX NAME VALUE: an extra response field for paths under PREFIX."},
    {.name = "idle_timeout", .type = CONF_DURATION, .min = 100, .max = 3600000, .def = "60s",
     .help = "Keep-alive idle timeout."},
    {0},
};

static void settings_unref(struct origin_settings *s)
{
    if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    for (size_t i = 0; i < s->nrules; i++) {
        free(s->rules[i].prefix);
        free(s->rules[i].name);
        free(s->rules[i].value);
    }
    free(s->rules);
    free(s->root);
    free(s->name);
    free(s);
}

static struct origin_settings *settings_ref(struct origin_settings *s)
{
    atomic_fetch_add(&s->refs, 1);
    return s;
}

static const char *mime_type(const char *path)
{
    static const struct { const char *ext, *type; } types[] = {
        {".html", "text/html; charset=utf-8"}, {".htm", "text/html; charset=utf-8"},
        {".css", "text/css"}, {".js", "text/javascript"}, {".json", "application/json"},
        {".txt", "text/plain; charset=utf-8"}, {".png", "image/png"}, {".jpg", "image/jpeg"},
        {".jpeg", "image/jpeg"}, {".gif", "image/gif"}, {".svg", "image/svg+xml"},
        {".webp", "image/webp"}, {".mp4", "video/mp4"}, {".m3u8", "application/vnd.apple.mpegurl"},
        {".ts", "video/mp2t"}, {".wasm", "application/wasm"}, {".xml", "application/xml"},
    };
    const char *dot = strrchr(path, '.');
    if (dot && !strchr(dot, '/'))
        for (size_t i = 0; i < ARRAY_SIZE(types); i++)
            if (strcasecmp(dot, types[i].ext) == 0)
                return types[i].type;
    return "application/octet-stream";
}

static int hexv(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/*
 * Decodes the path of a request target into out. Rejects NUL, "..", and
 * anything that is not an origin-form path. Returns 0 or -1.
 */
static int decode_path(const char *t, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    if (n == 0 || t[0] != '/')
        return -1;
    for (size_t i = 0; i < n && t[i] != '?' && t[i] != '#'; i++) {
        char ch = t[i];
        if (ch == '%') {
            if (i + 2 >= n || hexv(t[i + 1]) < 0 || hexv(t[i + 2]) < 0)
                return -1;
            ch = (char)(hexv(t[i + 1]) * 16 + hexv(t[i + 2]));
            i += 2;
        }
        if (ch == '\0' || o + 1 >= outlen)
            return -1;
        out[o++] = ch;
    }
    out[o] = '\0';
    /* Refuse any ".." segment rather than normalising it. */
    for (const char *p = out; (p = strstr(p, "..")) != NULL; p += 2)
        if ((p == out || p[-1] == '/') && (p[2] == '/' || p[2] == '\0'))
            return -1;
    return 0;
}

static int etag_match(const char *list, size_t n, const char *etag)
{
    /* If-None-Match uses the weak comparison (RFC 9110 13.1.2). */
    size_t elen = strlen(etag);
    size_t i = 0;
    while (i < n) {
        while (i < n && (list[i] == ' ' || list[i] == '\t' || list[i] == ','))
            i++;
        if (i < n && list[i] == '*')
            return 1;
        if (i + 2 <= n && list[i] == 'W' && list[i + 1] == '/')
            i += 2;
        size_t start = i;
        while (i < n && list[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (list[end - 1] == ' ' || list[end - 1] == '\t'))
            end--;
        if (end - start == elen && memcmp(list + start, etag, elen) == 0)
            return 1;
    }
    return 0;
}

static void stream_release(void *arg)
{
    free(arg);
}

static void stream_more(struct hconn *c)
{
    struct stream *st = c->ud;
    while (st->left > 0 && hconn_pending(c) < 2 * ORIGIN_CHUNK) {
        size_t want = st->left < ORIGIN_CHUNK ? (size_t)st->left : ORIGIN_CHUNK;
        char *p = xmalloc(want);
        ssize_t r = read(st->fd, p, want);
        if (r <= 0) {
            free(p);
            log_warn("origin: read while streaming");
            close(st->fd);
            settings_unref(st->set);
            free(st);
            c->ud = NULL;
            hconn_abort(c);
            return;
        }
        st->left -= (uint64_t)r;
        hconn_send_ref(c, p, (size_t)r, stream_release, p);
    }
    if (st->left == 0) {
        close(st->fd);
        settings_unref(st->set);
        free(st);
        c->ud = NULL;
        hconn_end(c, 1);
    }
}

static void on_abort(struct hconn *c)
{
    struct stream *st = c->ud;
    if (st) {
        close(st->fd);
        settings_unref(st->set);
        free(st);
        c->ud = NULL;
    }
}

static void on_request(struct hconn *c)
{
    struct origin_worker *w = c->srv_ud;
    struct origin *o = w->o;
    struct origin_settings *set = w->set;
    const struct http1_msg *r = &c->req;
    char path[ORIGIN_MAX_PATH], full[ORIGIN_MAX_PATH * 2], date[32], lm[32], etag[80];
    struct stat st;
    int head = str_ieq(r->method, r->method_len, "HEAD");

    metric_inc(o->m_requests);
    if (!head && !str_ieq(r->method, r->method_len, "GET")) {
        hconn_sendf(c, "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Length: 0\r\n\r\n");
        hconn_end(c, 1);
        return;
    }
    if (decode_path(r->target, r->target_len, path, sizeof(path)) < 0) {
        hconn_error(c, 400, "bad path", 0);
        return;
    }
    snprintf(full, sizeof(full), "%s%s%s", set->root, path,
             path[strlen(path) - 1] == '/' ? "index.html" : "");
    int fd = open(full, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        metric_inc(o->m_404);
        hconn_error(c, 404, "not found", 0);
        return;
    }
    snprintf(etag, sizeof(etag), "\"%" PRIx64 "-%" PRIx64 "-%" PRIx64 "\"", (uint64_t)st.st_ino,
             (uint64_t)st.st_size,
             (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec);
    http_date(st.st_mtim.tv_sec, lm);

    /* Per-path fields: for each name the longest matching prefix wins. */
    struct buf extra;
    buf_init(&extra);
    for (size_t i = 0; i < set->nrules; i++) {
        const struct hdr_rule *h = &set->rules[i];
        size_t pl = strlen(h->prefix);
        if (strncmp(path, h->prefix, pl) != 0)
            continue;
        int beaten = 0;
        for (size_t j = 0; j < set->nrules; j++) {
            const struct hdr_rule *g = &set->rules[j];
            if (j != i && strcasecmp(g->name, h->name) == 0 && strlen(g->prefix) > pl &&
                strncmp(path, g->prefix, strlen(g->prefix)) == 0)
                beaten = 1;
        }
        if (!beaten)
            buf_printf(&extra, "%s: %s\r\n", h->name, h->value);
    }

    const struct http1_hdr *inm = http1_find(r, "if-none-match");
    const struct http1_hdr *ims = http1_find(r, "if-modified-since");
    int not_modified = 0;
    if (inm)
        not_modified = etag_match(inm->value, inm->value_len, etag);
    else if (ims) {
        int64_t t = http_date_parse(ims->value, ims->value_len);
        not_modified = t >= 0 && st.st_mtim.tv_sec <= t;
    }
    http_date(time_wall(), date);
    if (not_modified) {
        metric_inc(o->m_304);
        hconn_sendf(c, "HTTP/1.1 304 Not Modified\r\nServer: %s\r\nDate: %s\r\nETag: %s\r\n"
                       "Last-Modified: %s\r\n%.*s\r\n",
                    set->name, date, etag, lm, (int)buf_avail(&extra), buf_head(&extra));
        buf_fini(&extra);
        close(fd);
        hconn_end(c, 1);
        return;
    }
    hconn_sendf(c, "HTTP/1.1 200 OK\r\nServer: %s\r\nDate: %s\r\nContent-Type: %s\r\n"
                   "Content-Length: %" PRIu64 "\r\nETag: %s\r\nLast-Modified: %s\r\n"
                   "Accept-Ranges: none\r\n%.*s\r\n",
                set->name, date, mime_type(full), (uint64_t)st.st_size, etag, lm,
                (int)buf_avail(&extra), buf_head(&extra));
    buf_fini(&extra);
    if (head || st.st_size == 0) {
        close(fd);
        hconn_end(c, 1);
        return;
    }
    metric_add(o->m_bytes, st.st_size);
    if ((uint64_t)st.st_size <= ORIGIN_SMALL) {
        char *p = xmalloc((size_t)st.st_size);
        ssize_t n = pread(fd, p, (size_t)st.st_size, 0);
        close(fd);
        if (n != st.st_size) {
            free(p);
            hconn_abort(c);
            return;
        }
        hconn_send_ref(c, p, (size_t)n, stream_release, p);
        hconn_end(c, 1);
        return;
    }
    struct stream *s = xcalloc(1, sizeof(*s));
    s->fd = fd;
    s->left = (uint64_t)st.st_size;
    s->set = settings_ref(set);
    c->ud = s;
    stream_more(c);
}

static void on_writable(struct hconn *c)
{
    if (c->ud)
        stream_more(c);
}

static const struct hsrv_handler origin_handler = {
    .on_request = on_request,
    .on_writable = on_writable,
    .on_abort = on_abort,
};

static void *origin_create(struct conf *c, const struct conf_node *b)
{
    struct origin *o = xcalloc(1, sizeof(*o));
    struct origin_settings *s = xcalloc(1, sizeof(*s));
    struct stat st;
    int errors = 0;

    s->refs = 1;
    o->set = s;
    s->root = xstrdup(conf_str(b, "root"));
    s->name = xstrdup(conf_str(b, "name"));
    if (stat(s->root, &st) < 0 || !S_ISDIR(st.st_mode)) {
        conf_error(c, conf_find(b, "root"), "root \"%s\" is not a directory", s->root);
        errors++;
    }
    size_t len = strlen(s->root);
    while (len > 1 && s->root[len - 1] == '/')
        s->root[--len] = '\0';
    for (const struct conf_node *n = conf_find(b, "listen"); n; n = conf_next(n)) {
        o->listen = xrealloc(o->listen, (o->nlisten + 1) * sizeof(*o->listen));
        if (net_addr_parse(n->args[0], &o->listen[o->nlisten]) < 0) {
            conf_error(c, n, "listen: \"%s\" is not a numeric address:port", n->args[0]);
            errors++;
            continue;
        }
        o->nlisten++;
    }
    for (const char *dname = "cache_control"; dname; dname = strcmp(dname, "header") ? "header" : NULL) {
        for (const struct conf_node *n = conf_find(b, dname); n; n = conf_next(n)) {
            int is_cc = n->nargs == 2;
            if (n->args[0][0] != '/') {
                conf_error(c, n, "%s: prefix \"%s\" must start with /", n->name, n->args[0]);
                errors++;
                continue;
            }
            const char *value = n->args[is_cc ? 1 : 2];
            if (strpbrk(value, "\r\n") || (!is_cc && strpbrk(n->args[1], " \t\r\n:"))) {
                conf_error(c, n, "%s: field name or value contains a forbidden character", n->name);
                errors++;
                continue;
            }
            s->rules = xrealloc(s->rules, (s->nrules + 1) * sizeof(*s->rules));
            s->rules[s->nrules++] = (struct hdr_rule){
                xstrdup(n->args[0]), xstrdup(is_cc ? "Cache-Control" : n->args[1]), xstrdup(value)};
        }
    }
    hsrv_limits_default(&o->lim);
    o->lim.idle_timeout_ms = conf_int(b, "idle_timeout");
    if (errors) {
        free(o->listen);
        settings_unref(o->set);
        free(o);
        return NULL;
    }
    return o;
}

static int origin_start(void *inst, const struct role_env *env)
{
    struct origin *o = inst;
    char as[80];

    o->main_loop = env->main_loop;
    o->nworkers = env->nworkers;
    o->workers = xcalloc(env->nworkers, sizeof(*o->workers));
    o->m_requests = metric_counter("ferry_origin_requests_total", NULL, "Requests to the built-in origin");
    o->m_304 = metric_counter("ferry_origin_not_modified_total", NULL, "304 answers of the built-in origin");
    o->m_404 = metric_counter("ferry_origin_not_found_total", NULL, "404 answers of the built-in origin");
    o->m_bytes = metric_counter("ferry_origin_body_bytes_total", NULL, "Body bytes served by the built-in origin");
    for (unsigned i = 0; i < env->nworkers; i++) {
        struct origin_worker *w = &o->workers[i];
        w->o = o;
        w->loop = env->workers[i];
        w->set = settings_ref(o->set);
        w->srv = hsrv_create(w->loop, &origin_handler, w, &o->lim, "origin");
        for (size_t j = 0; j < o->nlisten; j++) {
            int rc = hsrv_listen(w->srv, &o->listen[j], NULL, 0);
            if (rc < 0) {
                errno = -rc;
                log_warn("origin: listen on %s", net_addr_str(&o->listen[j], as, sizeof(as)));
                return rc;
            }
        }
    }
    for (size_t j = 0; j < o->nlisten; j++)
        log_info("origin: serving %s on http://%s", o->set->root,
                 net_addr_str(&o->listen[j], as, sizeof(as)));
    return 0;
}

struct swap {
    struct origin_worker *w;
    struct origin_settings *set;
};

static void swap_cb(void *arg)
{
    struct swap *s = arg;
    settings_unref(s->w->set);
    s->w->set = s->set;
    free(s);
}

static int origin_reload(void *inst, void *fresh_inst, struct conf *c)
{
    struct origin *o = inst, *f = fresh_inst;
    int changed = f->nlisten != o->nlisten ||
                  memcmp(f->listen, o->listen, o->nlisten * sizeof(*o->listen)) != 0;
    if (changed)
        log_warnx("origin: listen addresses changed; they take effect at restart");
    for (unsigned i = 0; i < o->nworkers; i++) {
        struct swap *s = xmalloc(sizeof(*s));
        s->w = &o->workers[i];
        s->set = settings_ref(f->set);
        loop_post(o->workers[i].loop, swap_cb, s);
    }
    settings_unref(o->set);
    o->set = settings_ref(f->set);
    return 0;
}

static void origin_drain(void *inst, void (*done)(void *), void *arg)
{
    struct origin *o = inst;
    struct hsrv **srvs = xcalloc(o->nworkers + 1, sizeof(*srvs));
    for (unsigned i = 0; i < o->nworkers; i++)
        srvs[i] = o->workers[i].srv;
    hsrv_drain_all(srvs, o->nworkers, o->main_loop, done, arg);
    free(srvs);
}

static void origin_destroy(void *inst)
{
    struct origin *o = inst;
    if (o == NULL)
        return;
    for (unsigned i = 0; i < o->nworkers; i++) {
        hsrv_destroy(o->workers[i].srv);
        settings_unref(o->workers[i].set);
    }
    free(o->workers);
    free(o->listen);
    settings_unref(o->set);
    free(o);
}

const struct role_ops origin_role = {
    .name = "origin",
    .schema = origin_opts,
    .create = origin_create,
    .start = origin_start,
    .reload = origin_reload,
    .drain = origin_drain,
    .destroy = origin_destroy,
};
