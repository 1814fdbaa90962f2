/*
 * cache_role -- the cache role's configuration (schema and checks), its
 * admin API (purge, expire, stats), and its life cycle: start (listeners
 * and the disk tier), reload (settings swapped into each worker with
 * loop_post), drain and destroy. The request flow is in cache.c.
 */
#include "cache/cache.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/internal.h"
#include "lib/handoff.h"
#include "lib/json.h"
#include "lib/log.h"
#include "lib/util.h"
#include "version.h"

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

const struct conf_opt cache_tls_group_opts[] = {
    {.name = "listen", .type = CONF_STR, .flags = CONF_REQUIRED,
     .help = "UDP ADDR:PORT where this server receives its peers' sessions."},
    {.name = "peer", .type = CONF_STR, .flags = CONF_MULTI,
     .help = "UDP ADDR:PORT of another server of the node group (sessions are sent to each)."},
    {.name = "key_file", .type = CONF_PATH, .flags = CONF_REQUIRED,
     .help = "Group keys, `ID HEX` lines (docs/session-wire.md); mode 0600. Reloaded on SIGHUP."},
    {.name = "sender", .type = CONF_INT, .min = 0, .max = 65535, .def = "0",
     .help = "This server's id in the group (default: tls_label); unique in the group, nonzero."},
    {.name = "replay_window", .type = CONF_DURATION, .min = 1000, .max = 3600000, .def = "30s",
     .help = "Datagrams stamped further than this from the local clock are refused."},
    {.name = "sync_datagram_size", .type = CONF_SIZE, .min = 512, .max = 65507, .def = "1400",
     .help = "Largest datagram of a sync answer to a restarted peer (stay under the path MTU)."},
    {0},
};

const struct conf_opt cache_tls_redis_opts[] = {
    {.name = "server", .type = CONF_STR, .flags = CONF_REQUIRED,
     .help = "Redis ADDR:PORT (numeric)."},
    {.name = "key_file", .type = CONF_PATH, .flags = CONF_REQUIRED,
     .help = "Keys sealing the sessions kept in Redis, `ID HEX` lines (docs/session-wire.md); mode 0600."},
    {.name = "prefix", .type = CONF_STR, .def = "ferry:tls:",
     .help = "Key prefix; the announcement channel is PREFIX + \"events\"."},
    {.name = "sender", .type = CONF_INT, .min = 0, .max = 65535, .def = "0",
     .help = "This server's id among those sharing the Redis (default: tls_label); nonzero, unique."},
    {0},
};

const struct conf_opt cache_opts[] = {
    {.name = "name", .type = CONF_STR, .def = "ferry",
     .help = "This server's name in Via and logs."},
    {.name = "listen", .type = CONF_ARGS, .flags = CONF_MULTI, .min_args = 1, .max_args = 2,
     .help = "ADDR:PORT [proxy_protocol]: plain HTTP listener; proxy_protocol = connections start with a PROXY v2 header (behind a switch)."},
    {.name = "listen_tls", .type = CONF_ARGS, .flags = CONF_MULTI, .min_args = 1, .max_args = 2,
     .help = "ADDR:PORT [proxy_protocol]: HTTPS listener."},
    {.name = "handoff", .type = CONF_PATH,
     .help = "Unix socket path where a switch on this host hands client connections over instead of relaying them (docs/switch.md); mode 0600. Restart to change."},
    {.name = "certificate", .type = CONF_ARGS, .flags = CONF_MULTI, .min_args = 2, .max_args = 2,
     .help = "CERT_PEM KEY_PEM; chosen by SNI against the certificate's names (first = default)."},
    {.name = "tls_min_version", .type = CONF_ENUM, .choices = "TLSv1.2|TLSv1.3", .def = "TLSv1.2",
     .help = "Oldest TLS version accepted."},
    {.name = "tls_session_timeout", .type = CONF_DURATION, .min = 1000, .max = 604800000,
     .def = "1h", .help = "Lifetime of TLS sessions for resumption."},
    {.name = "tls_session_cache_size", .type = CONF_INT, .min = 16, .max = 100000000, .def = "100000",
     .help = "TLS sessions held for resumption by session ID or stateful ticket (shared by the workers; the oldest go first)."},
    {.name = "tls_session_store", .type = CONF_ENUM, .choices = "local|group|redis", .def = "local",
     .help = "Where TLS sessions live: local (this server's workers), group (also sent to the tls_group peers, sealed with the group key) or redis (also kept in and announced through tls_redis, sealed)."},
    {.name = "tls_redis", .type = CONF_BLOCK, .block = cache_tls_redis_opts,
     .help = "The Redis server sharing sessions (tls_session_store redis)."},
    {.name = "tls_ticket_keys", .type = CONF_ENUM, .choices = "local|group", .def = "local",
     .help = "Stateless ticket keys: local (random per process; names carry tls_label) or group (derived by every server of the tls_group from the group key, per rotation period: tickets resume on any of them)."},
    {.name = "tls_ticket_key_rotation", .type = CONF_DURATION, .min = 60000, .max = 604800000, .def = "1h",
     .help = "Period of group ticket keys; keys of the periods a live session may come from still decrypt."},
    {.name = "tls_group", .type = CONF_BLOCK, .block = cache_tls_group_opts,
     .help = "The node group sharing sessions (tls_session_store group)."},
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

void cache_reopen_logs(void *inst)
{
    struct cache *ca = inst;
    if (ca->access_path == NULL)
        return;
    int fd = cache__open_access_log(ca->access_path);
    if (fd < 0) {
        errno = -fd;
        log_warn("cache: reopen access_log %s", ca->access_path);
        return;
    }
    int old = atomic_exchange(&ca->access_fd, fd);
    if (old >= 0)
        close(old);
}

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

static void redis_conf_free(struct sess_redis_conf *r)
{
    if (r == NULL)
        return;
    sess_redis_conf_fini(r);
    free(r);
}

/* tls_session_store redis and the tls_redis block. Returns the number of errors. */
static int parse_tls_redis(struct conf *c, const struct conf_node *b, struct cache *ca)
{
    const struct conf_node *rb = conf_find(b, "tls_redis");
    if (strcmp(conf_str(b, "tls_session_store"), "redis") != 0) {
        if (rb) {
            conf_error(c, rb, "tls_redis needs tls_session_store redis");
            return 1;
        }
        return 0;
    }
    if (rb == NULL) {
        conf_error(c, conf_find(b, "tls_session_store"), "tls_session_store redis needs a tls_redis block");
        return 1;
    }
    if (ca->set->tls == NULL) {
        conf_error(c, rb, "tls_redis: no certificate, so no TLS sessions to share");
        return 1;
    }
    int errors = 0;
    char err[512];
    struct sess_redis_conf *r = xcalloc(1, sizeof(*r));
    if (net_addr_parse(conf_str(rb, "server"), &r->server) < 0) {
        conf_error(c, conf_find(rb, "server"), "tls_redis: server \"%s\" is not a numeric address:port",
                   conf_str(rb, "server"));
        errors++;
    }
    const char *prefix = conf_str(rb, "prefix");
    if (strlen(prefix) >= sizeof(r->prefix) || strpbrk(prefix, " \r\n\t*?[")) {
        conf_error(c, conf_find(rb, "prefix"), "tls_redis: prefix must be under %zu bytes, without spaces or * ? [",
                   sizeof(r->prefix));
        errors++;
    } else {
        snprintf(r->prefix, sizeof(r->prefix), "%s", prefix);
    }
    if (sess_keyring_load(&r->keys, conf_str(rb, "key_file"), err, sizeof(err)) < 0) {
        conf_error(c, conf_find(rb, "key_file"), "tls_redis: %s", err);
        errors++;
    }
    int64_t sender = conf_int(rb, "sender");
    if (sender == 0)
        sender = conf_int(b, "tls_label");
    if (sender == 0) {
        conf_error(c, rb, "tls_redis: needs a sender id (sender, or tls_label)");
        errors++;
    }
    r->sender = (uint16_t)sender;
    if (errors) {
        redis_conf_free(r);
        return errors;
    }
    ca->redis_conf = r;
    return 0;
}

static void group_conf_free(struct sess_group_conf *g)
{
    if (g == NULL)
        return;
    sess_group_conf_fini(g);
    free(g);
}

/* tls_session_store and the tls_group block. Returns the number of errors. */
static int parse_tls_group(struct conf *c, const struct conf_node *b, struct cache *ca)
{
    const struct conf_node *gb = conf_find(b, "tls_group");
    int tickets = strcmp(conf_str(b, "tls_ticket_keys"), "group") == 0;
    if (strcmp(conf_str(b, "tls_session_store"), "group") != 0) {
        if (gb || tickets) {
            conf_error(c, gb ? gb : conf_find(b, "tls_ticket_keys"),
                       "%s needs tls_session_store group", gb ? "tls_group" : "tls_ticket_keys group");
            return 1;
        }
        return 0;
    }
    if (gb == NULL) {
        conf_error(c, conf_find(b, "tls_session_store"), "tls_session_store group needs a tls_group block");
        return 1;
    }
    if (ca->set->tls == NULL) {
        conf_error(c, gb, "tls_group: no certificate, so no TLS sessions to share");
        return 1;
    }
    int errors = 0;
    char err[512];
    struct sess_group_conf *g = xcalloc(1, sizeof(*g));
    if (net_addr_parse(conf_str(gb, "listen"), &g->listen) < 0) {
        conf_error(c, conf_find(gb, "listen"), "tls_group: listen \"%s\" is not a numeric address:port",
                   conf_str(gb, "listen"));
        errors++;
    }
    for (const struct conf_node *n = conf_find(gb, "peer"); n; n = conf_next(n)) {
        if (g->npeers == SESS_GROUP_MAX_PEERS) {
            conf_error(c, n, "tls_group: at most %d peers", SESS_GROUP_MAX_PEERS);
            errors++;
            break;
        }
        if (net_addr_parse(n->args[0], &g->peers[g->npeers]) < 0) {
            conf_error(c, n, "tls_group: peer \"%s\" is not a numeric address:port", n->args[0]);
            errors++;
            continue;
        }
        g->npeers++;
    }
    if (sess_keyring_load(&g->keys, conf_str(gb, "key_file"), err, sizeof(err)) < 0) {
        conf_error(c, conf_find(gb, "key_file"), "tls_group: %s", err);
        errors++;
    }
    int64_t sender = conf_int(gb, "sender");
    if (sender == 0)
        sender = conf_int(b, "tls_label");
    if (sender == 0) {
        conf_error(c, gb, "tls_group: needs a sender id (sender, or tls_label)");
        errors++;
    }
    g->sender = (uint16_t)sender;
    g->window_ms = (uint32_t)conf_int(gb, "replay_window");
    g->sync_datagram = (size_t)conf_int(gb, "sync_datagram_size");
    if (errors) {
        group_conf_free(g);
        return errors;
    }
    if (tickets) {
        /* The TLS contexts get their own copy of the keys (their lifetime
         * is that of the settings, not of the replication). */
        struct sess_keyring *kr = NULL;
        if (sess_keyring_load(&kr, conf_str(gb, "key_file"), err, sizeof(err)) < 0 ||
            tls_server_set_group_tickets(ca->set->tls, kr, conf_int(b, "tls_ticket_key_rotation") / 1000) < 0) {
            conf_error(c, conf_find(b, "tls_ticket_keys"), "tls_ticket_keys group: cannot set up the keys");
            group_conf_free(g);
            return 1;
        }
    }
    ca->group_conf = g;
    return 0;
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
            .session_cache_size = (size_t)conf_int(b, "tls_session_cache_size"),
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
                if (cache__find_publisher(s, p->hosts[j], strlen(p->hosts[j])) != p &&
                    cache__find_publisher(s, p->hosts[j], strlen(p->hosts[j])) != NULL) {
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
    ca->handoff_fd = -1;
    if (conf_str(b, "handoff")) {
        struct handoff_addr ha;
        if (handoff_addr_parse(conf_str(b, "handoff"), &ha) < 0) {
            conf_error(c, conf_find(b, "handoff"), "handoff: \"%s\" must be an absolute path of at most %zu bytes",
                       conf_str(b, "handoff"), sizeof(ha.sun.sun_path) - 1);
            errors++;
        } else {
            ca->handoff_path = xstrdup(conf_str(b, "handoff"));
        }
    }
    errors += parse_tls_group(c, b, ca);
    errors += parse_tls_redis(c, b, ca);
    if (conf_str(b, "disk_path"))
        ca->disk_path = xstrdup(conf_str(b, "disk_path"));
    ca->disk_size = (uint64_t)conf_int(b, "disk_size");
    enum evict_kind ek = EVICT_S3FIFO;
    evict_kind_parse(conf_str(b, "eviction"), &ek);
    if (errors) {
        group_conf_free(ca->group_conf);
        redis_conf_free(ca->redis_conf);
        free(ca->listen);
        free(ca->listen_tls);
        free(ca->proxy);
        free(ca->proxy_tls);
        free(ca->disk_path);
        free(ca->access_path);
        free(ca->handoff_path);
        cache__settings_unref(ca->set);
        free(ca);
        return NULL;
    }
    ca->store = store_create((uint64_t)conf_int(b, "memory"), ek);
    return ca;
}

/* Hand-off: switch connections are accepted on the main loop and spread
 * over the workers, each of which then serves what comes through its own. */

struct handoff_start {
    struct cache *ca;
    struct cache_worker *w;
    int fd;
};

static void handoff_start_cb(void *arg)
{
    struct handoff_start *hs = arg;
    hsrv_handoff(hs->w->srv, hs->fd, hs->ca->m_handoff_ok, hs->ca->m_handoff_bad);
    free(hs);
}

/* Accepts up to max switch connections. Returns 0 once none is waiting. */
static int handoff_accept_some(struct cache *ca, int max)
{
    for (int i = 0; i < max; i++) {
        int fd = handoff_accept(ca->handoff_fd);
        if (fd == -EAGAIN || fd == -EINTR)
            return 0;
        if (fd == -EPERM) {
            log_warn("cache: refused a hand-off connection from another user");
            continue;
        }
        if (fd < 0) {
            log_warn("cache: accept on %s: %s", ca->handoff_path, strerror(-fd));
            return 0;
        }
        struct handoff_start *hs = xmalloc(sizeof(*hs));
        hs->ca = ca;
        hs->w = &ca->workers[ca->handoff_turn++ % ca->nworkers];
        hs->fd = fd;
        loop_post(hs->w->loop, handoff_start_cb, hs);
    }
    return 1;
}

static void handoff_accept_cb(struct loop_io *io, unsigned events)
{
    (void)handoff_accept_some(io->data, 16);
}

/*
 * Stops taking switch connections (drain, or the end). On a drain, the
 * connections a switch opened that we have not accepted yet may already
 * carry hand-offs (a switch connects and sends at once): refuse new ones
 * first (the switch then tries another cache), take the waiting ones,
 * and only then close. Their workers get them before the drain (posts
 * run in order), so it serves what they carry.
 */
static void handoff_close(struct cache *ca, int take_waiting)
{
    if (ca->handoff_fd < 0)
        return;
    if (take_waiting) {
        shutdown(ca->handoff_fd, SHUT_RD);
        for (int round = 0; round < 1024 && handoff_accept_some(ca, 64); round++)
            ;
    }
    loop_io_stop(&ca->handoff_io);
    close(ca->handoff_fd);
    ca->handoff_fd = -1;
    unlink(ca->handoff_path);
}

static int64_t gauge_client_connections(void *arg)
{
    struct cache *ca = arg;
    return (int64_t)atomic_load_explicit(&ca->open_conns, memory_order_relaxed);
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
    const struct publisher *p = cache__find_publisher(ca->set, rest, hl);
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

/* The session store's counters (and the group's), for /stats and /sessions. */
static void write_sessions(struct json *j, struct cache *ca)
{
    if (ca->set->tls) {
        int64_t full = 0, resumed = 0;
        tls_server_handshakes(ca->set->tls, &full, &resumed);
        json_kv_int(j, "tls_full_handshakes", full);
        json_kv_int(j, "tls_resumed_handshakes", resumed);
        struct sess_store_stats ss;
        sess_store_stats(tls_server_store(ca->set->tls), &ss);
        json_key(j, "tls_sessions");
        json_obj_begin(j);
        json_kv_int(j, "entries", (int64_t)ss.entries);
        json_kv_int(j, "stored", (int64_t)ss.stored);
        json_kv_int(j, "received", (int64_t)ss.received);
        json_kv_int(j, "hits", (int64_t)ss.hits);
        json_kv_int(j, "misses", (int64_t)ss.misses);
        json_kv_int(j, "removed", (int64_t)ss.removed);
        json_kv_int(j, "evicted", (int64_t)ss.evicted);
        json_kv_int(j, "expired", (int64_t)ss.expired);
        json_obj_end(j);
    }
    if (ca->group) {
        struct sess_group_stats gs;
        sess_group_stats(ca->group, &gs);
        json_key(j, "tls_group");
        json_obj_begin(j);
        json_kv_int(j, "replicated", (int64_t)gs.sent);
        json_kv_int(j, "datagrams_out", (int64_t)gs.datagrams_out);
        json_kv_int(j, "send_errors", (int64_t)gs.send_errors);
        json_kv_int(j, "received", (int64_t)gs.received);
        json_kv_int(j, "deleted", (int64_t)gs.deleted);
        json_kv_int(j, "rejected", (int64_t)gs.rejected);
        json_key(j, "rejected_by");
        json_obj_begin(j);
        static const char *const why[16] = {"not_peer", "short", "long", "magic", "version", "type",
                                            "sender", "key_id", "auth", "payload", "stale", "replay"};
        for (int i = 0; i < 16; i++)
            if (gs.rejected_by[i] && why[i])
                json_kv_int(j, why[i], (int64_t)gs.rejected_by[i]);
        json_obj_end(j);
        json_kv_int(j, "sync_requests", (int64_t)gs.sync_requests);
        json_kv_int(j, "sync_sent", (int64_t)gs.sync_sent);
        json_obj_end(j);
    }
    if (ca->redis) {
        struct sess_redis_stats rs;
        sess_redis_stats(ca->redis, &rs);
        json_key(j, "tls_redis");
        json_obj_begin(j);
        json_key(j, "up");
        json_bool(j, rs.up);
        json_kv_int(j, "written", (int64_t)rs.written);
        json_kv_int(j, "unsent", (int64_t)rs.unsent);
        json_kv_int(j, "received", (int64_t)rs.received);
        json_kv_int(j, "deleted", (int64_t)rs.deleted);
        json_kv_int(j, "rejected", (int64_t)rs.rejected);
        json_kv_int(j, "connects", (int64_t)rs.connects);
        json_obj_end(j);
    }
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
    for (int i = 0; i < XC_COUNT; i++) {
        char name[16];
        snprintf(name, sizeof(name), "%s", cache__xc_names[i]);
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
    write_sessions(&j, ca);
    json_obj_end(&j);
    json_obj_end(&j);
    return 200;
}

static int api_sessions(void *arg, const struct admin_req *req, struct buf *out, const char **ct)
{
    struct cache *ca = arg;
    struct json j;
    json_init(&j, out);
    json_obj_begin(&j);
    json_kv_str(&j, "session_store", ca->group ? "group" : ca->redis ? "redis" : "local");
    write_sessions(&j, ca);
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
    for (int i = 0; i < XC_COUNT; i++) {
        char labels[32];
        char lower[16];
        snprintf(lower, sizeof(lower), "%s", cache__xc_names[i]);
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
    metric_gauge_fn("ferry_cache_client_connections", NULL,
                    "Client connections open, all workers and sources (what hand-off load reports say)",
                    gauge_client_connections, ca);
    metric_gauge_fn("ferry_cache_objects", NULL, "Objects in the memory tier", gauge_objects, ca->store);
    metric_gauge_fn("ferry_cache_memory_bytes", NULL, "Bytes charged in the memory tier", gauge_bytes, ca->store);
    metric_gauge_fn("ferry_cache_evictions", NULL, "Objects evicted from the memory tier", gauge_evictions, ca->store);
    if (ca->access_path) {
        int fd = cache__open_access_log(ca->access_path);
        if (fd < 0) {
            errno = -fd;
            log_warn("cache: open access_log %s", ca->access_path);
            return fd;
        }
        atomic_store(&ca->access_fd, fd);
    }
    if (ca->handoff_path) {
        int fd = handoff_listen(ca->handoff_path);
        if (fd < 0) {
            log_error("cache: handoff %s: %s", ca->handoff_path,
                      fd == -EADDRINUSE ? "another process listens on it"
                      : fd == -EEXIST  ? "exists and is not a socket"
                                       : strerror(-fd));
            return fd;
        }
        ca->handoff_fd = fd;
        ca->handoff_io.data = ca;
        int rc = loop_io_start(env->main_loop, &ca->handoff_io, fd, LOOP_READ, handoff_accept_cb);
        if (rc < 0) {
            close(fd);
            ca->handoff_fd = -1;
            return rc;
        }
        ca->m_handoff_ok = metric_counter("ferry_cache_handoffs_total", "result=\"accepted\"",
                                          "Client connections a switch handed over");
        ca->m_handoff_bad = metric_counter("ferry_cache_handoffs_total", "result=\"refused\"",
                                           "Client connections a switch handed over");
    }
    ca->nworkers = env->nworkers;
    ca->workers = xcalloc(env->nworkers, sizeof(*ca->workers));
    for (unsigned i = 0; i < env->nworkers; i++) {
        struct cache_worker *w = &ca->workers[i];
        w->cache = ca;
        w->loop = env->workers[i];
        w->set = cache__settings_ref(ca->set);
        w->srv = hsrv_create(w->loop, &cache__handler, w, &ca->lim, "cache");
        hsrv_share_load(w->srv, &ca->open_conns);
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
    if (ca->handoff_fd >= 0)
        log_info("cache %s: taking connections handed off at %s", ca->set->name, ca->handoff_path);
    for (size_t j = 0; j < ca->nlisten; j++)
        log_info("cache %s: listening on http://%s", ca->set->name,
                 net_addr_str(&ca->listen[j], as, sizeof(as)));
    for (size_t j = 0; j < ca->nlisten_tls; j++)
        log_info("cache %s: listening on https://%s", ca->set->name,
                 net_addr_str(&ca->listen_tls[j], as, sizeof(as)));
    if (ca->group_conf) {
        char err[256];
        ca->group = sess_group_start(env->main_loop, tls_server_store(ca->set->tls), ca->group_conf, err,
                                     sizeof(err));
        if (ca->group == NULL) {
            log_error("cache: tls_group: %s", err);
            return -1;
        }
    }
    if (ca->redis_conf)
        ca->redis = sess_redis_start(env->main_loop, tls_server_store(ca->set->tls), ca->redis_conf);
    if (env->admin) {
        admin_route(env->admin, "POST", "/purge", api_purge, ca);
        admin_route(env->admin, "POST", "/expire", api_expire, ca);
        admin_route(env->admin, "GET", "/stats", api_stats, ca);
        admin_route(env->admin, "GET", "/sessions", api_sessions, ca);
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
    cache__settings_unref(s->w->set);
    s->w->set = s->set;
    set_via(s->w->srv, s->set);
    if (s->set->tls)
        hsrv_set_ssl_ctx(s->w->srv, tls_server_ctx(s->set->tls));
    free(s);
}

static int cache_reload(void *inst, void *fresh_inst, struct conf *c)
{
    struct cache *ca = inst, *f = fresh_inst;
    /* (memcmp only with something to compare: the arrays are NULL when empty) */
    if (f->nlisten != ca->nlisten || f->nlisten_tls != ca->nlisten_tls ||
        (ca->nlisten && memcmp(f->listen, ca->listen, ca->nlisten * sizeof(*ca->listen)) != 0) ||
        (ca->nlisten_tls &&
         memcmp(f->listen_tls, ca->listen_tls, ca->nlisten_tls * sizeof(*ca->listen_tls)) != 0))
        log_warnx("cache: listen addresses changed; they take effect at restart");
    if (ca->nlisten_tls > 0 && f->set->tls == NULL)
        log_warnx("cache: no certificate in the new configuration; keeping TLS listeners on the old ones");
    /* Sessions and tickets issued before the reload keep resuming. */
    tls_server_keep_state(f->set->tls, ca->set->tls);
    if (ca->group && f->group_conf)
        sess_group_update(ca->group, f->group_conf); /* new keys and peers */
    if (ca->redis && f->redis_conf)
        sess_redis_update(ca->redis, f->redis_conf); /* new keys */
    if ((ca->group != NULL) != (f->group_conf != NULL) || (ca->redis != NULL) != (f->redis_conf != NULL))
        log_warnx("cache: tls_session_store changed; it takes effect at restart");
    for (unsigned i = 0; i < ca->nworkers; i++) {
        struct swap *s = xmalloc(sizeof(*s));
        s->w = &ca->workers[i];
        s->set = cache__settings_ref(f->set);
        loop_post(ca->workers[i].loop, swap_cb, s);
    }
    cache__settings_unref(ca->set);
    ca->set = cache__settings_ref(f->set);
    return 0;
}

static void cache_drain(void *inst, void (*done)(void *), void *arg)
{
    struct cache *ca = inst;
    /* A switch that hands over connections finds nothing listening now,
     * and tries another cache. */
    handoff_close(ca, 1);
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
    metric_unbind(ca);
    metric_unbind(ca->store);
    if (ca->disk) {
        metric_unbind(ca->disk);
        disk_close(ca->disk);
    }
    free(ca->disk_path);
    sess_group_stop(ca->group);
    group_conf_free(ca->group_conf);
    sess_redis_stop(ca->redis);
    redis_conf_free(ca->redis_conf);
    for (unsigned i = 0; i < ca->nworkers; i++) {
        hsrv_destroy(ca->workers[i].srv);
        up_pool_destroy(ca->workers[i].pool);
        cache__settings_unref(ca->workers[i].set);
    }
    free(ca->workers);
    handoff_close(ca, 0);
    free(ca->handoff_path);
    store_destroy(ca->store);
    int fd = atomic_load(&ca->access_fd);
    if (fd >= 0)
        close(fd);
    free(ca->access_path);
    free(ca->listen);
    free(ca->listen_tls);
    free(ca->proxy);
    free(ca->proxy_tls);
    cache__settings_unref(ca->set);
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

