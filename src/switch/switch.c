/*
 * switch -- the role: its config block, the settings a reload replaces,
 * start/reload/drain/destroy, the sticky expiry timer and the admin API
 * (GET /api/v1/switch). See switch.h for the whole and relay.c for the
 * connections.
 *
 * Reload keeps what it can: a backend with the same name, label and
 * addresses stays the same object (health, counters and the connections
 * through it untouched); a removed backend takes no new connections but
 * its relayed ones run to their end; a new one starts up and is checked.
 * Listener addresses take effect at restart.
 */
#include "switch/switch.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/json.h"
#include "lib/log.h"
#include "lib/util.h"
#include "switch/internal.h"

#define SWEEP_MIN_MS 100
#define SWEEP_MAX_MS 1000

const struct conf_opt switch_opts[] = {
    {.name = "listen", .type = CONF_ADDR, .flags = CONF_MULTI,
     .help = "Address for TLS clients: their ClientHello picks the backend."},
    {.name = "listen_http", .type = CONF_ADDR, .flags = CONF_MULTI,
     .help = "Address for plain HTTP clients (routed by http_policy to the backends' http address)."},
    {.name = "backend", .type = CONF_ARGS, .flags = CONF_MULTI | CONF_REQUIRED, .min_args = 2,
     .max_args = 12,
     .help = "NAME ADDR [label N] [http ADDR] [check ADDR] [weight W] [handoff PATH]: a cache server "
             "(TLS at ADDR, plain HTTP at http ADDR), its session-ID label, where to health-check it, "
             "its share of new clients (weight 0-1000, default 1; 0 drains it: label and sticky steps "
             "still send it the sessions it holds), and, for a cache on this host, the unix socket "
             "where it takes client connections handed over instead of relayed (its `handoff`)."},
    {.name = "policy", .type = CONF_ARGS, .min_args = 1, .max_args = SW_MAX_STEPS,
     .def = "psk ticket session_id hash",
     .help = "The chain for TLS connections, in order: psk ticket session_id sticky hash "
             "leastconn roundrobin."},
    {.name = "http_policy", .type = CONF_ARGS, .min_args = 1, .max_args = SW_MAX_STEPS,
     .def = "hash",
     .help = "The chain for plain HTTP connections: url sticky hash leastconn roundrobin."},
    {.name = "label_codec", .type = CONF_ENUM, .choices = "prefix|mod-n", .def = "prefix",
     .help = "How the caches write their label (their tls_label_codec)."},
    {.name = "group_size", .type = CONF_INT, .min = 0, .max = 65535, .def = "0",
     .help = "n of the mod-n codec (the caches' tls_group_size); 0 = the highest backend label."},
    {.name = "hash_seed", .type = CONF_STR, .def = "ferry",
     .help = "Key of the client-address and URL hashes; give every switch of a node the same one."},
    {.name = "hello_max_size", .type = CONF_SIZE, .min = 512, .max = 262144, .def = "16k",
     .help = "Largest ClientHello accepted (bytes, records included)."},
    {.name = "hello_timeout", .type = CONF_DURATION, .min = 10, .max = 600000, .def = "5s",
     .help = "Time a client has to send its ClientHello (or request head)."},
    {.name = "http_max_head", .type = CONF_SIZE, .min = 256, .max = 1048576, .def = "16k",
     .help = "Plain HTTP with a url step: most bytes read to find the request head."},
    {.name = "connect_timeout", .type = CONF_DURATION, .min = 10, .max = 600000, .def = "3s",
     .help = "Time to connect to a backend before trying another."},
    {.name = "idle_timeout", .type = CONF_DURATION, .min = 100, .max = INT64_C(86400000),
     .def = "10m", .help = "A relayed connection with no byte either way for this long is closed."},
    {.name = "max_connections", .type = CONF_INT, .min = 1, .max = 10000000, .def = "10000",
     .help = "Client connections open at once (all workers); more are closed at accept."},
    {.name = "retries", .type = CONF_INT, .min = 0, .max = SW_MAX_EXCLUDED - 1, .def = "2",
     .help = "Other backends tried after a failed connect."},
    {.name = "proxy_protocol", .type = CONF_FLAG, .def = "off",
     .help = "Send a PROXY v2 header with the client's address to the backends (their listeners "
             "need the proxy_protocol flag)."},
    {.name = "sticky_timeout", .type = CONF_DURATION, .min = 10, .max = INT64_C(86400000),
     .def = "5m", .help = "Life of a sticky entry after the client's last connection."},
    {.name = "sticky_max_entries", .type = CONF_INT, .min = 1, .max = 10000000, .def = "100000",
     .help = "Sticky table size; the oldest entry makes room."},
    {.name = "health_check", .type = CONF_ENUM, .choices = "off|tcp|http|tls", .def = "tcp",
     .help = "Active checks: TCP connect; HTTP GET health_check_path (2xx = healthy); or TCP "
             "connect plus a full TLS handshake (TLS 1.2+, certificate not verified)."},
    {.name = "health_check_sni", .type = CONF_STR, .def = "",
     .help = "Server name sent in TLS health checks (none when empty)."},
    {.name = "health_check_path", .type = CONF_STR, .def = "/healthz",
     .help = "Target of HTTP health checks."},
    {.name = "health_check_interval", .type = CONF_DURATION, .min = 10, .max = 3600000,
     .def = "2s", .help = "Time between checks of one backend."},
    {.name = "health_check_timeout", .type = CONF_DURATION, .min = 10, .max = 600000, .def = "1s",
     .help = "A check not done by then failed."},
    {.name = "health_check_rise", .type = CONF_INT, .min = 1, .max = 100, .def = "2",
     .help = "Passing checks in a row that bring a backend back."},
    {.name = "health_check_fall", .type = CONF_INT, .min = 1, .max = 100, .def = "2",
     .help = "Failing checks in a row that take a backend out."},
    {.name = "passive_fall", .type = CONF_INT, .min = 0, .max = 100, .def = "1",
     .help = "Failed connects in a row that take a backend out at once (0 = only active "
             "checks do); needs health checks to bring it back."},
    {0},
};

static const char *const reject_names[SW_NREJ] = {
    "not_tls", "malformed", "too_large", "timeout", "closed", "limit", "no_backend", "connect_failed",
};

const char *sw__reject_name(enum sw_reject r)
{
    return (unsigned)r < SW_NREJ ? reject_names[r] : "?";
}

struct sw_settings *sw__settings_ref(struct sw_settings *s)
{
    atomic_fetch_add(&s->refs, 1);
    return s;
}

void sw__settings_unref(struct sw_settings *s)
{
    if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    sw_pool_fini(&s->pool);
    free(s);
}

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            return 0;
    return 1;
}

/* Parses one `backend NAME ADDR [label N] [http ADDR] [check ADDR] [weight W] [handoff PATH]` line. */
static struct sw_backend *parse_backend(struct conf *c, const struct conf_node *n,
                                        const struct sw_hash_key *key)
{
    if (!name_ok(n->args[0])) {
        conf_error(c, n, "backend: name \"%s\" must be 1-64 of A-Z a-z 0-9 . _ -", n->args[0]);
        return NULL;
    }
    struct sw_backend *b = sw_backend_create(n->args[0], 0);
    b->id = sw_siphash(key, b->name, strlen(b->name));
    if (b->id == 0)
        b->id = 1; /* 0 means "none" in the sticky table */
    if (net_addr_parse(n->args[1], &b->addr) < 0) {
        conf_error(c, n, "backend %s: \"%s\" is not a numeric address:port", b->name, n->args[1]);
        goto fail;
    }
    b->check = b->addr;
    for (int i = 2; i < n->nargs; i += 2) {
        const char *k = n->args[i];
        const char *v = i + 1 < n->nargs ? n->args[i + 1] : NULL;
        if (v == NULL) {
            conf_error(c, n, "backend %s: \"%s\" needs a value", b->name, k);
            goto fail;
        }
        if (strcmp(k, "label") == 0) {
            int64_t l;
            if (conf_parse_int(v, &l) < 0 || l < 1 || l > SID_MAX_LABEL) {
                conf_error(c, n, "backend %s: label must be 1..%d", b->name, SID_MAX_LABEL);
                goto fail;
            }
            b->label = (unsigned)l;
        } else if (strcmp(k, "http") == 0) {
            if (net_addr_parse(v, &b->http) < 0) {
                conf_error(c, n, "backend %s: http \"%s\" is not a numeric address:port", b->name, v);
                goto fail;
            }
            b->has_http = 1;
        } else if (strcmp(k, "check") == 0) {
            if (net_addr_parse(v, &b->check) < 0) {
                conf_error(c, n, "backend %s: check \"%s\" is not a numeric address:port", b->name, v);
                goto fail;
            }
        } else if (strcmp(k, "handoff") == 0) {
            if (handoff_addr_parse(v, &b->handoff) < 0) {
                conf_error(c, n, "backend %s: handoff \"%s\" must be an absolute path of at most %zu bytes",
                           b->name, v, sizeof(b->handoff.sun.sun_path) - 1);
                goto fail;
            }
            if (!b->has_handoff) {
                b->hsock = xmalloc(SW_MAX_WORKERS * SW_HANDOFF_STREAMS * sizeof(int));
                for (int j = 0; j < SW_MAX_WORKERS * SW_HANDOFF_STREAMS; j++)
                    b->hsock[j] = -1;
            }
            b->has_handoff = 1;
        } else if (strcmp(k, "weight") == 0) {
            int64_t w;
            if (conf_parse_int(v, &w) < 0 || w < 0 || w > SW_MAX_WEIGHT) {
                conf_error(c, n, "backend %s: weight must be 0..%d", b->name, SW_MAX_WEIGHT);
                goto fail;
            }
            atomic_store(&b->weight, (unsigned)w);
        } else {
            conf_error(c, n, "backend %s: unknown parameter \"%s\" (label, http, check, weight, handoff)", b->name, k);
            goto fail;
        }
    }
    return b;
fail:
    sw_backend_unref(b);
    return NULL;
}

static int parse_policy(struct conf *c, const struct conf_node *b, const char *name, int plain,
                        struct sw_policy *p)
{
    char err[200];
    const struct conf_node *n = conf_find(b, name);
    static char *const tls_def[] = {"psk", "ticket", "session_id", "hash"};
    static char *const http_def[] = {"hash"};
    int rc = n ? sw_policy_parse(p, n->args, n->nargs, plain, err, sizeof(err))
               : plain ? sw_policy_parse(p, http_def, 1, 1, err, sizeof(err))
                       : sw_policy_parse(p, tls_def, 4, 0, err, sizeof(err));
    if (rc < 0) {
        conf_error(c, n, "%s: %s", name, err);
        return 1;
    }
    return 0;
}

static void *switch_create(struct conf *c, const struct conf_node *blk)
{
    struct sw *sw = xcalloc(1, sizeof(*sw));
    struct sw_settings *s = xcalloc(1, sizeof(*s));
    int errors = 0;

    atomic_init(&s->refs, 1);
    sw->set = s;

    struct sw_hash_key key;
    sw_hash_key_from_seed(conf_str(blk, "hash_seed"), &key);
    errors += parse_policy(c, blk, "policy", 0, &s->tls);
    errors += parse_policy(c, blk, "http_policy", 1, &s->http);
    s->tls.key = s->http.key = key;

    unsigned max_label = 0;
    for (const struct conf_node *n = conf_find(blk, "backend"); n; n = conf_next(n)) {
        struct sw_backend *b = parse_backend(c, n, &key);
        if (b == NULL) {
            errors++;
            continue;
        }
        struct sw_backend *dup = sw_pool_find(&s->pool, b->name);
        for (size_t i = 0; dup == NULL && b->label && i < s->pool.n; i++)
            if (s->pool.b[i]->label == b->label)
                dup = s->pool.b[i];
        if (dup) {
            conf_error(c, n, "backend %s: the name or label is already used by backend %s", b->name,
                       dup->name);
            sw_backend_unref(b);
            errors++;
            continue;
        }
        max_label = MAX(max_label, b->label);
        s->pool.b = xrealloc(s->pool.b, (s->pool.n + 1) * sizeof(*s->pool.b));
        s->pool.b[s->pool.n++] = b;
    }

    struct sid_codec codec = {.version = 0};
    sid_codec_kind_parse(conf_str(blk, "label_codec"), &codec.kind);
    codec.n = (unsigned)conf_int(blk, "group_size");
    if (codec.n == 0)
        codec.n = max_label ? max_label : 1;
    if (codec.kind == SID_CODEC_MODN && max_label > codec.n) {
        conf_error(c, conf_find(blk, "group_size"), "group_size %u is below the highest backend label %u",
                   codec.n, max_label);
        errors++;
    }
    s->tls.codec = s->http.codec = codec;

    s->hello_max = (size_t)conf_int(blk, "hello_max_size");
    s->http_max_head = (size_t)conf_int(blk, "http_max_head");
    s->hello_timeout_ms = conf_int(blk, "hello_timeout");
    s->connect_timeout_ms = conf_int(blk, "connect_timeout");
    s->idle_timeout_ms = conf_int(blk, "idle_timeout");
    s->max_connections = (unsigned)conf_int(blk, "max_connections");
    s->retries = (unsigned)conf_int(blk, "retries");
    s->passive_fall = (unsigned)conf_int(blk, "passive_fall");
    s->proxy_protocol = (int)conf_int(blk, "proxy_protocol");
    s->sticky_max = (size_t)conf_int(blk, "sticky_max_entries");
    s->sticky_timeout_ms = conf_int(blk, "sticky_timeout");
    const char *ct = conf_str(blk, "health_check");
    s->check.type = strcmp(ct, "off") == 0    ? SW_CHECK_OFF
                    : strcmp(ct, "http") == 0 ? SW_CHECK_HTTP
                    : strcmp(ct, "tls") == 0  ? SW_CHECK_TLS
                                              : SW_CHECK_TCP;
    const char *sni = conf_str(blk, "health_check_sni");
    if (strlen(sni) >= sizeof(s->check.sni) || strpbrk(sni, " \r\n\t")) {
        conf_error(c, conf_find(blk, "health_check_sni"),
                   "health_check_sni must be a host name without spaces (at most %zu bytes)",
                   sizeof(s->check.sni) - 1);
        errors++;
    } else {
        snprintf(s->check.sni, sizeof(s->check.sni), "%s", sni);
    }
    const char *path = conf_str(blk, "health_check_path");
    if (path[0] != '/' || strlen(path) >= sizeof(s->check.path) || strpbrk(path, " \r\n\t")) {
        conf_error(c, conf_find(blk, "health_check_path"),
                   "health_check_path must start with / and have no spaces (at most %zu bytes)",
                   sizeof(s->check.path) - 1);
        errors++;
    } else {
        snprintf(s->check.path, sizeof(s->check.path), "%s", path);
    }
    s->check.interval_ms = conf_int(blk, "health_check_interval");
    s->check.timeout_ms = conf_int(blk, "health_check_timeout");
    s->check.rise = (unsigned)conf_int(blk, "health_check_rise");
    s->check.fall = (unsigned)conf_int(blk, "health_check_fall");

    for (int plain = 0; plain <= 1; plain++) {
        const char *name = plain ? "listen_http" : "listen";
        for (const struct conf_node *n = conf_find(blk, name); n; n = conf_next(n)) {
            sw->listen = xrealloc(sw->listen, (sw->nlisten + 1) * sizeof(*sw->listen));
            struct sw_listen_conf *lc = &sw->listen[sw->nlisten];
            if (net_addr_parse(n->args[0], &lc->addr) < 0) {
                conf_error(c, n, "%s: \"%s\" is not a numeric address:port", name, n->args[0]);
                errors++;
                continue;
            }
            lc->plain = plain;
            sw->nlisten++;
        }
    }
    if (sw->nlisten == 0) {
        conf_error(c, blk, "switch: give at least one listen or listen_http");
        errors++;
    }
    int any_http = 0;
    for (size_t i = 0; i < s->pool.n; i++)
        any_http |= s->pool.b[i]->has_http;
    for (size_t i = 0; i < sw->nlisten; i++) {
        if (sw->listen[i].plain && !any_http) {
            conf_error(c, conf_find(blk, "listen_http"),
                       "listen_http: no backend has an http address to forward to");
            errors++;
            break;
        }
    }
    if (errors) {
        sw__settings_unref(sw->set);
        free(sw->listen);
        free(sw);
        return NULL;
    }
    return sw;
}

/* Admin API. */

static void json_policy(struct json *j, const char *key, const struct sw_policy *p)
{
    json_key(j, key);
    json_arr_begin(j);
    for (unsigned i = 0; i < p->nsteps; i++)
        json_str(j, sw_step_name(p->steps[i]));
    json_arr_end(j);
}

struct walk_ctx {
    struct json *j;
    const struct sw_pool *pool;
};

static void sticky_entry(void *arg, const uint8_t *addr, size_t len, uint64_t id, int64_t left_ms)
{
    struct walk_ctx *w = arg;
    char host[64];
    struct net_addr a = {0};
    if (len == 4) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, addr, 4);
        a.len = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.ss;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, addr, 16);
        a.len = sizeof(*sin6);
    }
    const struct sw_backend *b = sw_pool_by_id(w->pool, id);
    json_obj_begin(w->j);
    json_kv_str(w->j, "client", net_addr_host(&a, host, sizeof(host)));
    json_kv_str(w->j, "backend", b ? b->name : "(removed)");
    json_kv_int(w->j, "expires_in_ms", left_ms);
    json_obj_end(w->j);
}

static int api_switch(void *arg, const struct admin_req *req, struct buf *out, const char **ct)
{
    struct sw *sw = arg;
    const struct sw_settings *s = sw->set;
    char as[80];
    struct json j;

    json_init(&j, out);
    json_obj_begin(&j);
    json_key(&j, "listeners");
    json_arr_begin(&j);
    for (size_t i = 0; i < sw->nlisten; i++) {
        json_obj_begin(&j);
        json_kv_str(&j, "address", net_addr_str(&sw->listen[i].addr, as, sizeof(as)));
        json_kv_str(&j, "kind", sw->listen[i].plain ? "http" : "tls");
        json_obj_end(&j);
    }
    json_arr_end(&j);
    json_policy(&j, "policy", &s->tls);
    json_policy(&j, "http_policy", &s->http);
    json_kv_int(&j, "active_connections", atomic_load(&sw->nconns));
    json_key(&j, "backends");
    json_arr_begin(&j);
    for (size_t i = 0; i < s->pool.n; i++) {
        struct sw_backend *b = s->pool.b[i];
        int64_t routed = 0, hs[2] = {0, 0};
        for (int k = 0; k < SW_NSTEPS; k++) {
            routed += b->m_routed[k] ? metric_value(b->m_routed[k]) : 0;
            for (int r = 0; r < 2; r++)
                hs[r] += b->m_hs[k][r] ? metric_value(b->m_hs[k][r]) : 0;
        }
        json_obj_begin(&j);
        json_kv_str(&j, "name", b->name);
        json_kv_str(&j, "address", net_addr_str(&b->addr, as, sizeof(as)));
        if (b->has_http)
            json_kv_str(&j, "http", net_addr_str(&b->http, as, sizeof(as)));
        if (b->has_handoff) {
            json_kv_str(&j, "handoff", b->handoff.sun.sun_path);
            json_kv_int(&j, "handed_off", b->m_handoff ? metric_value(b->m_handoff) : 0);
            json_kv_int(&j, "handoff_fallbacks", b->m_handoff_fallback ? metric_value(b->m_handoff_fallback) : 0);
            if (atomic_load(&b->has_load))
                json_kv_int(&j, "reported_load", atomic_load(&b->load_reported));
        }
        json_kv_int(&j, "load", (int64_t)sw_backend_load(b));
        json_kv_str(&j, "check", net_addr_str(&b->check, as, sizeof(as)));
        json_kv_int(&j, "label", b->label);
        json_kv_int(&j, "weight", atomic_load(&b->weight));
        json_key(&j, "up");
        json_bool(&j, atomic_load(&b->up));
        json_kv_int(&j, "active", atomic_load(&b->active));
        json_kv_int(&j, "connections", routed);
        json_kv_int(&j, "resumed", hs[SW_HS_RESUMED]);
        json_kv_int(&j, "full", hs[SW_HS_FULL]);
        json_kv_int(&j, "connect_failures", b->m_connect_fail ? metric_value(b->m_connect_fail) : 0);
        json_kv_int(&j, "check_failures", b->m_check_fail ? metric_value(b->m_check_fail) : 0);
        json_obj_end(&j);
    }
    json_arr_end(&j);
    json_key(&j, "steps");
    json_obj_begin(&j);
    for (int k = 0; k < SW_NSTEPS; k++) {
        json_key(&j, sw_step_name((enum sw_step)k));
        json_obj_begin(&j);
        json_kv_int(&j, "connections", (int64_t)atomic_load(&sw->step_routed[k]));
        json_kv_int(&j, "resumed", (int64_t)atomic_load(&sw->step_hs[k][SW_HS_RESUMED]));
        json_kv_int(&j, "full", (int64_t)atomic_load(&sw->step_hs[k][SW_HS_FULL]));
        json_obj_end(&j);
    }
    json_obj_end(&j);
    json_key(&j, "rejected");
    json_obj_begin(&j);
    for (int r = 0; r < SW_NREJ; r++)
        json_kv_int(&j, reject_names[r], metric_value(sw->m_rejected[r]));
    json_obj_end(&j);
    json_key(&j, "sticky");
    json_obj_begin(&j);
    json_kv_int(&j, "entries", (int64_t)sw_sticky_count(sw->sticky));
    json_kv_int(&j, "expired", (int64_t)sw_sticky_expired(sw->sticky));
    json_kv_int(&j, "timeout_ms", s->sticky_timeout_ms);
    json_key(&j, "newest");
    json_arr_begin(&j);
    struct walk_ctx wc = {&j, &s->pool};
    sw_sticky_walk(sw->sticky, time_mono_ms(), 100, sticky_entry, &wc);
    json_arr_end(&j);
    json_obj_end(&j);
    json_obj_end(&j);
    return 200;
}

/* Sticky expiry. */

static int64_t sweep_interval(const struct sw_settings *s)
{
    int64_t t = s->sticky_timeout_ms / 4;
    return t < SWEEP_MIN_MS ? SWEEP_MIN_MS : t > SWEEP_MAX_MS ? SWEEP_MAX_MS : t;
}

static void sweep_cb(struct loop_timer *t)
{
    struct sw *sw = t->data;
    size_t n = sw_sticky_expire(sw->sticky, time_mono_ms());
    if (n)
        log_debug("switch: %zu sticky entr%s expired", n, n == 1 ? "y" : "ies");
    metric_set(sw->m_sticky_entries, (int64_t)sw_sticky_count(sw->sticky));
    metric_set(sw->m_sticky_expired, (int64_t)sw_sticky_expired(sw->sticky));
    loop_timer_start(t, sweep_interval(sw->set));
}

/* Role interface. */

static void bind_pool(struct sw_pool *p)
{
    for (size_t i = 0; i < p->n; i++)
        sw_backend_bind_metrics(p->b[i]);
}

static int switch_start(void *inst, const struct role_env *env)
{
    struct sw *sw = inst;
    struct sw_settings *s = sw->set;
    char as[80];

    sw->main_loop = env->main_loop;
    for (int r = 0; r < SW_NREJ; r++) {
        char labels[48];
        snprintf(labels, sizeof(labels), "reason=\"%s\"", reject_names[r]);
        sw->m_rejected[r] = metric_counter("ferry_switch_rejected_total", labels,
                                           "Client connections closed without being relayed, by reason");
    }
    sw->m_active = metric_gauge("ferry_switch_active_connections", NULL, "Client connections open");
    sw->m_bytes_up = metric_counter("ferry_switch_bytes_total", "direction=\"to_backend\"",
                                    "Bytes relayed, by direction");
    sw->m_bytes_down = metric_counter("ferry_switch_bytes_total", "direction=\"to_client\"",
                                      "Bytes relayed, by direction");
    sw->m_retries = metric_counter("ferry_switch_retries_total", NULL,
                                   "Connections sent to another backend after a failed connect");
    sw->m_sticky_entries = metric_gauge("ferry_switch_sticky_entries", NULL, "Entries in the sticky table");
    sw->m_sticky_expired = metric_counter("ferry_switch_sticky_expired_total", NULL,
                                          "Sticky entries expired or evicted");
    bind_pool(&s->pool);

    sw->sticky = sw_sticky_create(s->sticky_max, s->sticky_timeout_ms);
    loop_timer_init(sw->main_loop, &sw->sweep, sweep_cb);
    sw->sweep.data = sw;
    loop_timer_start(&sw->sweep, sweep_interval(s));
    sw->checker = sw_checker_create(sw->main_loop);
    sw_checker_set(sw->checker, &s->pool, &s->check);

    sw->nworkers = env->nworkers;
    sw->workers = sw__workers_alloc(env->nworkers);
    for (unsigned i = 0; i < env->nworkers; i++) {
        struct sw_worker *w = sw__worker_at(sw->workers, i);
        sw__worker_init(w, sw, env->workers[i], sw__settings_ref(s));
        for (size_t k = 0; k < sw->nlisten; k++) {
            int rc = sw__worker_listen(w, &sw->listen[k]);
            if (rc < 0) {
                errno = -rc;
                log_warn("switch: listen on %s", net_addr_str(&sw->listen[k].addr, as, sizeof(as)));
                return rc;
            }
        }
    }
    for (size_t k = 0; k < sw->nlisten; k++)
        log_info("switch: listening for %s on %s", sw->listen[k].plain ? "HTTP" : "TLS",
                 net_addr_str(&sw->listen[k].addr, as, sizeof(as)));
    log_info("switch: %zu backend%s", s->pool.n, s->pool.n == 1 ? "" : "s");
    if (env->admin)
        admin_route(env->admin, "GET", "/switch", api_switch, sw);
    return 0;
}

struct swap {
    struct sw_worker *w;
    struct sw_settings *set;
};

static void swap_cb(void *arg)
{
    struct swap *s = arg;
    sw__worker_set(s->w, s->set);
    free(s);
}

static int switch_reload(void *inst, void *fresh_inst, struct conf *c)
{
    struct sw *sw = inst, *f = fresh_inst;
    struct sw_settings *ns = f->set;
    struct sw_settings *os = sw->set;

    if (f->nlisten != sw->nlisten || memcmp(f->listen, sw->listen, sw->nlisten * sizeof(*sw->listen)) != 0)
        log_warnx("switch: listen addresses changed; they take effect at restart");
    /* Keep the backends that did not change, with their state. */
    for (size_t i = 0; i < ns->pool.n; i++) {
        struct sw_backend *old = sw_pool_find(&os->pool, ns->pool.b[i]->name);
        if (old && old->id == ns->pool.b[i]->id && sw_backend_same(old, ns->pool.b[i])) {
            unsigned ow = atomic_load(&old->weight), nw = atomic_load(&ns->pool.b[i]->weight);
            if (ow != nw) {
                log_info("switch: backend %s weight %u -> %u", old->name, ow, nw);
                atomic_store(&old->weight, nw);
            }
            sw_backend_unref(ns->pool.b[i]);
            ns->pool.b[i] = sw_backend_ref(old);
        } else {
            log_info("switch: backend %s %s", ns->pool.b[i]->name, old ? "changed" : "added");
        }
    }
    for (size_t i = 0; i < os->pool.n; i++)
        if (sw_pool_find(&ns->pool, os->pool.b[i]->name) == NULL)
            log_info("switch: backend %s removed; its connections run to their end", os->pool.b[i]->name);
    bind_pool(&ns->pool);
    if (sw->checker)
        sw_checker_set(sw->checker, &ns->pool, &ns->check);
    if (sw->sticky)
        sw_sticky_configure(sw->sticky, ns->sticky_max, ns->sticky_timeout_ms);
    for (unsigned i = 0; i < sw->nworkers; i++) {
        struct swap *s = xmalloc(sizeof(*s));
        s->w = sw__worker_at(sw->workers, i);
        s->set = sw__settings_ref(ns);
        loop_post(sw__worker_loop(s->w), swap_cb, s);
    }
    sw->set = sw__settings_ref(ns);
    sw__settings_unref(os);
    return 0;
}

static void drained_one(void *arg)
{
    struct sw *sw = arg;
    if (atomic_fetch_sub(&sw->draining, 1) == 1)
        loop_post(sw->main_loop, sw->drain_done, sw->drain_arg);
}

static void drain_worker(void *arg)
{
    struct sw_worker *w = arg;
    sw__worker_drain(w, drained_one, sw__worker_sw(w));
}

static void switch_drain(void *inst, void (*done)(void *), void *arg)
{
    struct sw *sw = inst;
    sw->drain_done = done;
    sw->drain_arg = arg;
    sw->draining = sw->nworkers;
    if (sw->nworkers == 0) {
        loop_post(sw->main_loop, done, arg);
        return;
    }
    for (unsigned i = 0; i < sw->nworkers; i++) {
        struct sw_worker *w = sw__worker_at(sw->workers, i);
        loop_post(sw__worker_loop(w), drain_worker, w);
    }
}

static void switch_destroy(void *inst)
{
    struct sw *sw = inst;
    if (sw == NULL)
        return;
    if (sw->main_loop)
        loop_timer_stop(&sw->sweep);
    sw_checker_destroy(sw->checker);
    for (unsigned i = 0; i < sw->nworkers; i++)
        sw__worker_fini(sw__worker_at(sw->workers, i));
    free(sw->workers);
    sw_sticky_destroy(sw->sticky);
    sw__settings_unref(sw->set);
    free(sw->listen);
    free(sw);
}

const struct role_ops switch_role = {
    .name = "switch",
    .schema = switch_opts,
    .create = switch_create,
    .start = switch_start,
    .reload = switch_reload,
    .drain = switch_drain,
    .destroy = switch_destroy,
};
