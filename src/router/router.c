/*
 * router -- the request routing role (arch-draft section 3, RR-req
 * sections 1-2): an authoritative DNS server and an HTTP redirector that
 * send each client to the best node of this CDN, or hand it to a peer CDN.
 *
 * Files: settings.c (config -> an immutable snapshot), area.c (the
 * longest-prefix-match table), decide.c (the choice), answer.c (the DNS
 * engine), server.c (sockets, RRL, ECS queries to peers), http.c (the
 * redirector), poll.c (node health and load), this file (the role and the
 * admin API). docs/router.md is the operator's guide.
 *
 * Reload builds a whole new snapshot on the main thread, the area table
 * included, while the workers go on answering from the old one; then each
 * worker is handed the new one and drops the old (see internal.h).
 *
 * Learned routes arrive the same way. The peer role publishes each new
 * Loc-RIB through lib/feed.h; the router waits learned_delay (so a burst
 * of updates costs one rebuild), builds the learned layer from the newest
 * snapshot, derives a snapshot from the current static one and that
 * layer, and installs it as a reload does (install()). A reload derives
 * its new static snapshot with the current layer.
 */
#include "router/router.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lib/json.h"
#include "lib/log.h"
#include "lib/util.h"
#include "router/internal.h"

static const struct conf_opt zone_opts[] = {
    {.name = "ns", .type = CONF_ARGS, .flags = CONF_MULTI | CONF_REQUIRED, .min_args = 1, .max_args = 1,
     .help = "A name server of the zone (NS record at the apex; the first is the SOA's MNAME). "
             "Give its address with a record when it lies inside the zone."},
    {.name = "soa_email", .type = CONF_STR,
     .help = "The SOA's RNAME, written as a name (hostmaster.example.test); default hostmaster.ZONE."},
    {.name = "serial", .type = CONF_INT, .min = 0, .max = UINT32_MAX, .def = "1",
     .help = "SOA serial."},
    {.name = "refresh", .type = CONF_DURATION, .min = 0, .max = INT64_C(2147483000), .def = "1h",
     .help = "SOA refresh."},
    {.name = "retry", .type = CONF_DURATION, .min = 0, .max = INT64_C(2147483000), .def = "10m",
     .help = "SOA retry."},
    {.name = "expire", .type = CONF_DURATION, .min = 0, .max = INT64_C(2147483000), .def = "7d",
     .help = "SOA expire."},
    {.name = "negative_ttl", .type = CONF_DURATION, .min = 0, .max = INT64_C(86400000), .def = "60s",
     .help = "SOA minimum: how long resolvers cache NXDOMAIN and NODATA (RFC 2308)."},
    {.name = "ttl", .type = CONF_DURATION, .min = 0, .max = INT64_C(2147483000), .def = "1h",
     .help = "TTL of the zone's static records, SOA and NS."},
    {.name = "record", .type = CONF_ARGS, .flags = CONF_MULTI, .min_args = 3, .max_args = 32,
     .help = "NAME TYPE VALUE...: a static record (A, AAAA, CNAME, NS, TXT, MX). NAME is relative "
             "to the zone, @ for the apex, or absolute with a final dot. An NS record below the "
             "apex delegates that name."},
    {.name = "service", .type = CONF_ARGS, .flags = CONF_MULTI, .min_args = 1, .max_args = 64,
     .help = "NAME [set SET] [ttl DURATION] [path /PREFIX SET]...: a name answered by decision, "
             "with the node set serving it (a content type, RR-req 2.2.1) and, for the HTTP "
             "redirector, node sets by URL path prefix."},
    {0},
};

static const struct conf_opt node_opts[] = {
    {.name = "address", .type = CONF_ARGS, .flags = CONF_MULTI | CONF_REQUIRED, .min_args = 1,
     .max_args = 1, .help = "An IPv4 or IPv6 address of the node's switch, answered in A/AAAA."},
    {.name = "status", .type = CONF_ADDR,
     .help = "The node's admin endpoint (host:port), polled for /readyz and /metrics. Without it "
             "the node is always taken as up and idle."},
    {.name = "capacity", .type = CONF_INT, .min = 1, .max = 1000000, .def = "100",
     .help = "Relative capacity: the node with the lowest load / capacity wins."},
    {.name = "sets", .type = CONF_ARGS, .min_args = 1, .max_args = RT_MAX_SETS,
     .help = "Node sets (content types) the node serves, for services with a set."},
    {.name = "redirect", .type = CONF_STR,
     .help = "Base URL of HTTP redirects to this node, e.g. https://n1.cdn.example:8443 "
             "(default https://ADDRESS)."},
    {0},
};

static const struct conf_opt peer_opts[] = {
    {.name = "handoff", .type = CONF_ENUM, .choices = "cname|ns|ecs", .def = "cname",
     .help = "How DNS clients of the peer's areas are handed over: a CNAME into the peer's name "
             "space, an NS referral to the peer's router, or a query to the peer's router with "
             "the client's subnet in ECS whose answer is passed on (\"modified DNS\")."},
    {.name = "cname", .type = CONF_STR,
     .help = "The peer's zone for CNAME hand-offs: the target is fp--PATH.SERVICE.CNAME."},
    {.name = "ns", .type = CONF_ARGS, .min_args = 1, .max_args = 1 + RT_MAX_ADDRS,
     .help = "NSNAME [ADDR...]: the peer's name server for NS hand-offs, with glue addresses."},
    {.name = "ecs_server", .type = CONF_ADDR,
     .help = "The peer router's DNS address (host:port) for ECS hand-offs."},
    {.name = "ecs_zone", .type = CONF_STR,
     .help = "The zone asked at the peer for ECS hand-offs (SERVICE.ECS_ZONE); default the "
             "service's own name."},
    {.name = "redirect", .type = CONF_STR,
     .help = "Base URL of the peer's HTTP redirector, for HTTP hand-offs (none: HTTP clients of "
             "its areas are served here)."},
    {0},
};

const struct conf_opt router_opts[] = {
    {.name = "cdn", .type = CONF_STR, .flags = CONF_REQUIRED,
     .help = "This CDN's id (a-z 0-9 -): written into the loop guard of every hand-off."},
    {.name = "listen", .type = CONF_ADDR, .flags = CONF_MULTI,
     .help = "DNS address, served over UDP and TCP."},
    {.name = "listen_http", .type = CONF_ADDR, .flags = CONF_MULTI,
     .help = "Address of the HTTP redirector."},
    {.name = "ttl", .type = CONF_DURATION, .min = 0, .max = INT64_C(86400000), .def = "20s",
     .help = "TTL of decided answers (a service may set its own)."},
    {.name = "udp_size", .type = CONF_INT, .min = 512, .max = 4096, .def = "1232",
     .help = "Largest UDP response (EDNS payload size advertised); larger answers are truncated "
             "(TC) and retried over TCP."},
    {.name = "tcp_max_connections", .type = CONF_INT, .min = 1, .max = 1000000, .def = "1000",
     .help = "DNS-over-TCP connections per worker; more are closed at accept."},
    {.name = "tcp_idle_timeout", .type = CONF_DURATION, .min = 100, .max = 3600000, .def = "10s",
     .help = "A DNS-over-TCP connection idle this long is closed (RFC 7766 6.2.3)."},
    {.name = "http_max_head", .type = CONF_SIZE, .min = 1024, .max = 1048576, .def = "16k",
     .help = "Largest request head of the HTTP redirector."},
    {.name = "redirect_code", .type = CONF_INT, .min = 300, .max = 399, .def = "302",
     .help = "Status of HTTP redirects: 302 or 307."},
    {.name = "rrl_rate", .type = CONF_INT, .min = 0, .max = 10000000, .def = "0",
     .help = "Response rate limit: UDP responses per second per client prefix and worker "
             "(0 = off). Against reflection attacks; real resolvers may need thousands."},
    {.name = "rrl_slip", .type = CONF_INT, .min = 0, .max = 100, .def = "2",
     .help = "Every Nth limited response is sent truncated instead of dropped (0 = drop all)."},
    {.name = "rrl_ipv4_prefix", .type = CONF_INT, .min = 8, .max = 32, .def = "24",
     .help = "Client prefix length the rate limit counts by, IPv4."},
    {.name = "rrl_ipv6_prefix", .type = CONF_INT, .min = 16, .max = 128, .def = "56",
     .help = "Client prefix length the rate limit counts by, IPv6."},
    {.name = "ecs_timeout", .type = CONF_DURATION, .min = 10, .max = 10000, .def = "800ms",
     .help = "How long to wait for a peer router in an ECS hand-off before answering with our "
             "own node."},
    {.name = "ecs_max_pending", .type = CONF_INT, .min = 1, .max = 65000, .def = "4096",
     .help = "ECS hand-offs in flight per worker; beyond, clients get our own node."},
    {.name = "poll_interval", .type = CONF_DURATION, .min = 100, .max = 3600000, .def = "2s",
     .help = "Time between polls of a node's status."},
    {.name = "poll_timeout", .type = CONF_DURATION, .min = 50, .max = 600000, .def = "1s",
     .help = "A poll not answered by then failed."},
    {.name = "poll_rise", .type = CONF_INT, .min = 1, .max = 100, .def = "1",
     .help = "Good polls in a row that bring a node back."},
    {.name = "poll_fall", .type = CONF_INT, .min = 1, .max = 100, .def = "1",
     .help = "Failed polls in a row that take a node out."},
    {.name = "load_metric", .type = CONF_STR, .def = "ferry_switch_active_connections",
     .help = "The metric read from each node's /metrics as its load (samples summed)."},
    {.name = "learned_handoff", .type = CONF_ENUM, .choices = "cname|ns|ecs", .def = "cname",
     .help = "The DNS hand-off used for routes learned from peer CDNs when the peer offers it; "
             "otherwise the first it offers of cname, ns, ecs."},
    {.name = "learned_delay", .type = CONF_DURATION, .min = 0, .max = 60000, .def = "200ms",
     .help = "How long after a change of the learned routes the router rebuilds its learned "
             "areas from the newest ones (changes meanwhile wait for the same rebuild)."},
    {.name = "zone", .type = CONF_BLOCK, .flags = CONF_MULTI | CONF_NAMED, .block = zone_opts,
     .help = "A zone this router is authoritative for."},
    {.name = "node", .type = CONF_BLOCK, .flags = CONF_MULTI | CONF_NAMED, .block = node_opts,
     .help = "A node of this CDN (its switch)."},
    {.name = "peer", .type = CONF_BLOCK, .flags = CONF_MULTI | CONF_NAMED, .block = peer_opts,
     .help = "A peer CDN, named by its CDN id, and how clients are handed to it."},
    {.name = "area", .type = CONF_ARGS, .flags = CONF_MULTI, .min_args = 2,
     .max_args = 1 + RT_MAX_TARGETS,
     .help = "PREFIX TARGET...: clients in PREFIX go to these nodes, or to one peer CDN."},
    {.name = "area_file", .type = CONF_PATH, .flags = CONF_MULTI,
     .help = "A file of area lines, \"PREFIX TARGET[,TARGET...]\" (# comments), for tables of "
             "millions of prefixes."},
    {0},
};

static void *router_create(struct conf *c, const struct conf_node *blk)
{
    struct router *rt = xcalloc(1, sizeof(*rt));
    rt->build_efd = -1;
    int errors = 0;
    rt->set = rt__settings_create(c, blk, NULL, 0);
    if (rt->set == NULL)
        errors++;
    for (int http = 0; http <= 1; http++) {
        const char *name = http ? "listen_http" : "listen";
        for (const struct conf_node *n = conf_find(blk, name); n; n = conf_next(n)) {
            rt->listen = xrealloc(rt->listen, (rt->nlisten + 1) * sizeof(*rt->listen));
            struct rt_listen *lc = &rt->listen[rt->nlisten];
            memset(lc, 0, sizeof(*lc));
            if (net_addr_parse(n->args[0], &lc->addr) < 0) {
                conf_error(c, n, "%s: \"%s\" is not a numeric address:port", name, n->args[0]);
                errors++;
                continue;
            }
            lc->http = http;
            rt->nlisten++;
        }
    }
    if (rt->nlisten == 0) {
        conf_error(c, blk, "router: give at least one listen or listen_http");
        errors++;
    }
    rt->tcp_max = (unsigned)conf_int(blk, "tcp_max_connections");
    rt->tcp_idle_ms = conf_int(blk, "tcp_idle_timeout");
    rt->http_max_head = (size_t)conf_int(blk, "http_max_head");
    rt->poll_interval_ms = conf_int(blk, "poll_interval");
    rt->poll_timeout_ms = conf_int(blk, "poll_timeout");
    rt->poll_rise = (unsigned)conf_int(blk, "poll_rise");
    rt->poll_fall = (unsigned)conf_int(blk, "poll_fall");
    const char *lm = conf_str(blk, "load_metric");
    if (strlen(lm) == 0 || strlen(lm) >= sizeof(rt->load_metric) || strpbrk(lm, " {}\r\n\t")) {
        conf_error(c, conf_find(blk, "load_metric"), "load_metric: \"%s\" is not a metric name", lm);
        errors++;
    }
    snprintf(rt->load_metric, sizeof(rt->load_metric), "%s", lm);
    if (errors) {
        rt__settings_unref(rt->set);
        free(rt->listen);
        free(rt);
        return NULL;
    }
    return rt;
}

/* Metrics. */

static void bind_metrics(struct router *rt, struct rt_settings *s)
{
    char labels[160];
    for (size_t i = 0; i < s->nnodes; i++) {
        snprintf(labels, sizeof(labels), "node=\"%s\"", s->nodes[i]->name);
        s->nodes[i]->m_answers = metric_counter("ferry_router_answers_total", labels,
                                                "Answers and redirects naming each node");
    }
    for (size_t i = 0; i < s->npeers; i++) {
        snprintf(labels, sizeof(labels), "peer=\"%s\"", s->peers[i]->name);
        s->peers[i]->m_handoffs = metric_counter("ferry_router_handoffs_total", labels,
                                                 "Clients handed to each peer CDN");
    }
    (void)rt;
}

static void make_counters(struct router *rt)
{
    char labels[96];
    for (int t = 0; t < 8; t++)
        for (int r = 0; r < 6; r++) {
            snprintf(labels, sizeof(labels), "type=\"%s\",rcode=\"%s\"", rt__type_names[t], rt__rcode_names[r]);
            rt->ctr.queries[t][r] = metric_counter("ferry_router_queries_total", labels,
                                                   "DNS queries answered, by type and rcode");
        }
    for (int k = 0; k < RT_NREASONS; k++) {
        snprintf(labels, sizeof(labels), "reason=\"%s\"", rt__reason_name((enum rt_reason)k));
        rt->ctr.decisions[k] = metric_counter("ferry_router_decisions_total", labels,
                                              "Routing decisions (DNS and HTTP), by reason");
    }
    rt->ctr.loops = metric_counter("ferry_router_loops_prevented_total", NULL,
                                   "Hand-offs not made because the peer was already on the path");
    rt->ctr.truncated = metric_counter("ferry_router_truncated_total", NULL,
                                       "UDP answers truncated (TC) for size");
    rt->ctr.ecs_queries = metric_counter("ferry_router_ecs_queries_total", NULL,
                                         "Queries sent to peer routers for ECS hand-offs");
    for (int k = 0; k < 5; k++) {
        snprintf(labels, sizeof(labels), "reason=\"%s\"", rt__ecs_fail_names[k]);
        rt->ctr.ecs_failures[k] = metric_counter("ferry_router_ecs_failures_total", labels,
                                                 "ECS hand-offs answered with our own node, by reason");
    }
    rt->m_rrl_dropped = metric_counter("ferry_router_rrl_total", "action=\"dropped\"",
                                       "Responses held back by the rate limit");
    rt->m_rrl_slipped = metric_counter("ferry_router_rrl_total", "action=\"slipped\"",
                                       "Responses held back by the rate limit");
    rt->m_tcp_refused = metric_counter("ferry_router_tcp_refused_total", NULL,
                                       "DNS-over-TCP connections closed at accept (limit)");
    static const char *const hk[4] = {"redirect", "unused", "client_error", "server_error"};
    for (int i = 0; i < 4; i++) {
        snprintf(labels, sizeof(labels), "result=\"%s\"", hk[i]);
        rt->m_http[i] = metric_counter("ferry_router_http_requests_total", labels,
                                       "HTTP redirector requests, by result");
    }
    rt->m_learned_areas = metric_gauge("ferry_router_learned_areas", NULL,
                                       "Area prefixes learned from peer CDNs in use");
    rt->m_learned_targets = metric_gauge("ferry_router_learned_targets", NULL,
                                         "Peer CDN hand-off targets of learned routes in use");
    rt->m_learned_skipped = metric_gauge("ferry_router_learned_targets_skipped", NULL,
                                         "Hand-off targets of learned routes that cannot be used");
    rt->m_learned_rebuilds = metric_counter("ferry_router_learned_rebuilds_total", NULL,
                                            "Rebuilds of the learned areas");
}

static void bind_learned_metrics(struct rt_learned *l)
{
    char labels[96];
    for (size_t i = 0; l && i < l->ntargets; i++) {
        struct rt_peer *p = l->targets[i].area.peer;
        snprintf(labels, sizeof(labels), "peer=\"%s\"", p->name);
        p->m_handoffs = metric_counter("ferry_router_handoffs_total", labels,
                                       "Clients handed to each peer CDN");
    }
}

/* Admin API. */

static void json_addr_list(struct json *j, const char *key, const struct net_addr *a, unsigned n)
{
    char h[64];
    json_key(j, key);
    json_arr_begin(j);
    for (unsigned i = 0; i < n; i++)
        json_str(j, net_addr_host(&a[i], h, sizeof(h)));
    json_arr_end(j);
}

static int api_router(void *arg, const struct admin_req *req, struct buf *out, const char **ct)
{
    struct router *rt = arg;
    const struct rt_settings *s = rt->set;
    char as[80];
    struct json j;
    json_init(&j, out);
    json_obj_begin(&j);
    json_kv_str(&j, "cdn", s->cdn);
    json_key(&j, "listeners");
    json_arr_begin(&j);
    for (size_t i = 0; i < rt->nlisten; i++) {
        json_obj_begin(&j);
        json_kv_str(&j, "address", net_addr_str(&rt->listen[i].addr, as, sizeof(as)));
        json_kv_str(&j, "kind", rt->listen[i].http ? "http" : "dns");
        json_obj_end(&j);
    }
    json_arr_end(&j);
    json_key(&j, "zones");
    json_arr_begin(&j);
    for (size_t i = 0; i < s->nzones; i++)
        json_str(&j, s->zones[i]->text);
    json_arr_end(&j);
    json_key(&j, "nodes");
    json_arr_begin(&j);
    for (size_t i = 0; i < s->nnodes; i++) {
        const struct rt_node *n = s->nodes[i];
        json_obj_begin(&j);
        json_kv_str(&j, "name", n->name);
        json_addr_list(&j, "addresses", n->addr, n->naddr);
        json_key(&j, "up");
        json_bool(&j, atomic_load(&n->up));
        json_kv_int(&j, "load", atomic_load(&n->load));
        json_kv_int(&j, "capacity", n->capacity);
        if (n->has_status)
            json_kv_str(&j, "status", net_addr_str(&n->status, as, sizeof(as)));
        json_kv_int(&j, "last_poll_ms", atomic_load(&n->last_poll_ms));
        if (n->last_error[0])
            json_kv_str(&j, "last_error", n->last_error);
        json_kv_int(&j, "answers", n->m_answers ? metric_value(n->m_answers) : 0);
        json_obj_end(&j);
    }
    json_arr_end(&j);
    json_key(&j, "peers");
    json_arr_begin(&j);
    static const char *const hn[] = {"cname", "ns", "ecs"};
    for (size_t i = 0; i < s->npeers; i++) {
        const struct rt_peer *p = s->peers[i];
        json_obj_begin(&j);
        json_kv_str(&j, "cdn", p->name);
        json_kv_str(&j, "handoff", hn[p->handoff]);
        json_kv_int(&j, "handoffs", p->m_handoffs ? metric_value(p->m_handoffs) : 0);
        json_obj_end(&j);
    }
    json_arr_end(&j);
    json_key(&j, "areas");
    json_obj_begin(&j);
    json_kv_int(&j, "prefixes", (int64_t)s->area_prefixes);
    json_kv_int(&j, "ipv4", (int64_t)area_table_count(s->table, 4));
    json_kv_int(&j, "ipv6", (int64_t)area_table_count(s->table, 6));
    json_kv_int(&j, "target_lists", (int64_t)s->nareas);
    json_kv_int(&j, "memory_bytes", (int64_t)area_table_memory(s->table));
    json_obj_end(&j);
    const struct rt_learned *l = rt->learned;
    json_key(&j, "learned");
    json_obj_begin(&j);
    json_kv_int(&j, "version", l ? (int64_t)l->version : 0);
    json_kv_int(&j, "areas", l ? (int64_t)l->nprefixes : 0);
    json_kv_int(&j, "targets", l ? (int64_t)l->ntargets : 0);
    json_kv_int(&j, "targets_skipped", l ? (int64_t)l->nskipped : 0);
    json_kv_int(&j, "units", l ? (int64_t)l->nunits : 0);
    json_kv_int(&j, "built_ms", l ? l->built_ms : 0);
    json_kv_int(&j, "rebuilds", metric_value(rt->m_learned_rebuilds));
    json_obj_end(&j);
    json_key(&j, "decisions");
    json_obj_begin(&j);
    for (int k = 0; k < RT_NREASONS; k++)
        json_kv_int(&j, rt__reason_name((enum rt_reason)k), metric_value(rt->ctr.decisions[k]));
    json_obj_end(&j);
    json_kv_int(&j, "loops_prevented", metric_value(rt->ctr.loops));
    json_key(&j, "rrl");
    json_obj_begin(&j);
    json_kv_int(&j, "rate", s->rrl_rate);
    json_kv_int(&j, "dropped", metric_value(rt->m_rrl_dropped));
    json_kv_int(&j, "slipped", metric_value(rt->m_rrl_slipped));
    json_obj_end(&j);
    json_kv_int(&j, "tcp_connections", atomic_load(&rt->tcp_open));
    json_obj_end(&j);
    return 200;
}

/* GET /api/v1/router/lookup?addr=A[&name=N]: the decision for a client, with its reason. */
static int api_lookup(void *arg, const struct admin_req *req, struct buf *out, const char **ct)
{
    struct router *rt = arg;
    const struct rt_settings *s = rt->set;
    char addr[64], name[DNS_MAX_NAME + 1];
    struct json j;
    json_init(&j, out);
    admin_param(req->query, "addr", addr, sizeof(addr));
    admin_param(req->query, "name", name, sizeof(name));
    struct rt_client cl = {0};
    if (inet_pton(AF_INET, addr, cl.addr) == 1) {
        cl.family = 4;
        cl.source = 32;
    } else if (inet_pton(AF_INET6, addr, cl.addr) == 1) {
        cl.family = 6;
        cl.source = 128;
    } else {
        json_obj_begin(&j);
        json_kv_str(&j, "error", "addr must be an IPv4 or IPv6 address");
        json_obj_end(&j);
        return 400;
    }
    const char *set = "";
    struct rt_content content = {0};
    uint8_t lname[DNS_MAX_NAME];
    if (name[0]) {
        const struct rt_name *nm = dns_name_from_text(lname, name) < 0 ? NULL : rt__name_find(s, lname);
        if (nm == NULL || nm->svc == NULL) {
            json_obj_begin(&j);
            json_kv_str(&j, "error", "name is not a service of this router");
            json_obj_end(&j);
            return 404;
        }
        set = nm->svc->set;
        content.lname = nm->name;
        cl.content = &content;
    }
    struct rt_decision d;
    rt__decide(s, set, &cl, 0, 0, &d);
    json_obj_begin(&j);
    json_kv_str(&j, "addr", addr);
    json_kv_str(&j, "reason", rt__reason_name(d.reason));
    json_kv_int(&j, "scope", d.scope);
    json_key(&j, "loop");
    json_bool(&j, d.loop);
    if (d.learned) { /* only then, so the answer for static areas keeps its shape */
        json_key(&j, "learned");
        json_bool(&j, 1);
    }
    if (d.node)
        json_kv_str(&j, "node", d.node->name);
    if (d.peer)
        json_kv_str(&j, "peer", d.peer->name);
    json_obj_end(&j);
    return 200;
}

/* Installing a snapshot, and learned routes. */

struct swap {
    struct rt_worker *w;
    struct rt_settings *set;
};

static void swap_cb(void *arg)
{
    struct swap *s = arg;
    rt__worker_set(s->w, s->set);
    free(s);
}

/*
 * Makes ns (the caller's reference, taken over) the snapshot of the main
 * thread and of every worker; each worker drops its old one when it takes
 * the new. When the static snapshot changed (a reload), the node metrics
 * and the health poller follow it too.
 */
static void install(struct router *rt, struct rt_settings *ns)
{
    struct rt_settings *os = rt->set;
    if (rt__settings_static(ns) != rt__settings_static(os)) {
        bind_metrics(rt, ns);
        rt__poller_set(rt->poller, ns);
    }
    for (unsigned i = 0; i < rt->nworkers; i++) {
        struct swap *s = xmalloc(sizeof(*s));
        s->w = rt->workers[i];
        s->set = rt__settings_ref(ns);
        loop_post(rt__worker_loop(s->w), swap_cb, s);
    }
    rt->set = ns;
    rt__settings_unref(os);
}

static void learned_gauges(struct router *rt)
{
    const struct rt_learned *l = rt->learned;
    metric_set(rt->m_learned_areas, l ? (int64_t)l->nprefixes : 0);
    metric_set(rt->m_learned_targets, l ? (int64_t)l->ntargets : 0);
    metric_set(rt->m_learned_skipped, l ? (int64_t)l->nskipped : 0);
}

/* Times, counts and logs a layer just built (NULL: nothing is published). */
static void learned_built(struct router *rt, struct rt_learned *l, uint64_t ns)
{
    if (l == NULL)
        return;
    l->built_ms = (int64_t)(ns / 1000000);
    bind_learned_metrics(l);
    /* a peer that keeps advertising something unusable is logged once a minute, not per rebuild */
    int64_t now = time_mono_ms();
    if ((l->nskipped || l->nbad) && (rt->skip_logged_ms == 0 || now - rt->skip_logged_ms >= 60000)) {
        rt->skip_logged_ms = now;
        if (l->nskipped)
            log_warnx("router: learned routes (version %llu): %zu target%s skipped, the first because %s",
                      (unsigned long long)l->version, l->nskipped, l->nskipped == 1 ? "" : "s",
                      l->skip_reason);
        if (l->nbad)
            log_warnx("router: learned routes (version %llu): %zu areas or content units not usable "
                      "(bad target or prefix)", (unsigned long long)l->version, l->nbad);
    }
    log_debug("router: learned routes version %llu: %zu area prefixes, %zu targets, %zu units, "
              "built in %lld ms", (unsigned long long)l->version, l->nprefixes, l->ntargets,
              l->nunits, (long long)l->built_ms);
}

/* Makes l (a reference, taken over; NULL for none) the learned layer. */
static void learned_install(struct router *rt, struct rt_learned *l)
{
    rt__learned_unref(rt->learned);
    rt->learned = l;
    install(rt, rt__settings_derive(rt__settings_static(rt->set), l));
    learned_gauges(rt);
}

/*
 * Builds the learned layer from the feed's current snapshot, for the
 * static snapshot st, on the calling (main) thread: for a reload, which
 * must apply at once. Returns 0 and sets *out (NULL when nothing is
 * published), or -ENOMEM.
 */
static int learned_build(struct router *rt, const struct rt_settings *st, struct rt_learned **out)
{
    struct feed_snapshot *snap = feed_current();
    uint64_t t0 = time_mono_ns();
    int rc = rt__learned_create(snap, st->cdn, st->learned_handoff, out);
    feed_unref(snap);
    metric_inc(rt->m_learned_rebuilds);
    if (rc < 0) {
        log_warnx("router: learned routes: cannot build their areas (out of memory); the old ones stay");
        return rc;
    }
    learned_built(rt, *out, time_mono_ns() - t0);
    return 0;
}

/*
 * Rebuilds after a publish run on a thread of their own: at a million
 * learned prefixes a build takes about half a second, which the main loop
 * (admin API, health polls, and the peer role's sessions when they share
 * it) should not wait for. The workers answer from the old layer until the
 * new one is posted to them, as before. One build at a time; a publish
 * during a build is taken by another build after it, from the newest
 * snapshot. The thread reads only its inputs (a snapshot and a static
 * settings reference, both immutable) and writes only its result; the
 * eventfd tells the main loop, which joins it before reading the result.
 */
static void *build_main(void *arg)
{
    struct router *rt = arg;
    uint64_t t0 = time_mono_ns();
    rt->build_rc = rt__learned_create(rt->build_snap, rt->build_st->cdn, rt->build_st->learned_handoff,
                                      &rt->built);
    rt->build_ns = time_mono_ns() - t0;
    uint64_t one = 1;
    if (write(rt->build_efd, &one, sizeof(one)) < 0)
        log_warn("router: eventfd");
    return NULL;
}

static void build_start(struct router *rt)
{
    if (rt->building) {
        rt->build_again = 1;
        return;
    }
    rt->build_snap = feed_current();
    rt->build_st = rt__settings_ref(rt__settings_static(rt->set));
    rt->built = NULL;
    if (rt->build_efd >= 0 && pthread_create(&rt->builder, NULL, build_main, rt) == 0) {
        rt->building = 1;
        return;
    }
    /* No thread: build here. */
    feed_unref(rt->build_snap);
    rt->build_snap = NULL;
    rt__settings_unref(rt->build_st);
    rt->build_st = NULL;
    struct rt_learned *l;
    if (learned_build(rt, rt__settings_static(rt->set), &l) == 0)
        learned_install(rt, l);
}

/*
 * Joins the build thread and takes its result: installed when `use`, and
 * when it is still right (built for the CDN id and hand-off preference the
 * router has now, and not older than the installed layer); dropped when
 * the router is going away.
 */
static void build_collect(struct router *rt, int use)
{
    pthread_join(rt->builder, NULL);
    rt->building = 0;
    uint64_t v;
    if (read(rt->build_efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        log_warn("router: eventfd");
    feed_unref(rt->build_snap);
    rt->build_snap = NULL;
    struct rt_settings *bst = rt->build_st, *st = rt__settings_static(rt->set);
    rt->build_st = NULL;
    struct rt_learned *l = rt->built;
    rt->built = NULL;
    metric_inc(rt->m_learned_rebuilds);
    if (!use) {
        rt__learned_unref(l);
    } else if (rt->build_rc < 0) {
        log_warnx("router: learned routes: cannot build their areas (out of memory); the old ones stay");
    } else if (strcmp(bst->cdn, st->cdn) != 0 || bst->learned_handoff != st->learned_handoff) {
        /* a reload changed what the layer depends on meanwhile */
        rt__learned_unref(l);
        rt->build_again = 1;
    } else if (l && rt->learned && l->version <= rt->learned->version) {
        rt__learned_unref(l); /* a reload installed this version or a newer one meanwhile */
    } else {
        learned_built(rt, l, rt->build_ns);
        learned_install(rt, l);
    }
    rt__settings_unref(bst);
    if (use && rt->build_again && !atomic_load(&rt->draining)) {
        rt->build_again = 0;
        build_start(rt);
    }
}

static void build_io_cb(struct loop_io *io, unsigned events)
{
    struct router *rt = io->data;
    (void)events;
    if (rt->building)
        build_collect(rt, 1);
}

static void learned_timer_cb(struct loop_timer *t)
{
    struct router *rt = t->data;
    if (atomic_load(&rt->draining))
        return;
    build_start(rt);
}

/*
 * A new feed snapshot. The rebuild waits learned_delay: the timer is not
 * re-armed by later publishes, so a steady stream of updates still gets a
 * rebuild every learned_delay, each from the newest snapshot.
 */
static void learned_cb(void *arg)
{
    struct router *rt = arg;
    if (!loop_timer_active(&rt->learned_timer) && !atomic_load(&rt->draining))
        loop_timer_start(&rt->learned_timer, rt->set->learned_delay_ms);
}

static void learned_stop(struct router *rt)
{
    if (rt->building)
        build_collect(rt, 0);
    if (rt->build_efd >= 0) {
        loop_io_stop(&rt->build_io);
        close(rt->build_efd);
        rt->build_efd = -1;
    }
    if (!rt->subscribed)
        return;
    feed_unsubscribe(learned_cb, rt);
    loop_timer_stop(&rt->learned_timer);
    rt->subscribed = 0;
}

/* Role interface. */

static int router_start(void *inst, const struct role_env *env)
{
    struct router *rt = inst;
    char as[80];
    rt->main_loop = env->main_loop;
    make_counters(rt);
    bind_metrics(rt, rt->set);
    rt->poller = rt__poller_create(rt);
    rt__poller_set(rt->poller, rt->set);
    rt->nworkers = env->nworkers;
    rt->workers = xcalloc(env->nworkers, sizeof(*rt->workers));
    for (unsigned i = 0; i < env->nworkers; i++) {
        rt->workers[i] = rt__worker_create(rt, env->workers[i], rt__settings_ref(rt->set));
        for (size_t k = 0; k < rt->nlisten; k++) {
            int rc = rt__worker_listen(rt->workers[i], &rt->listen[k]);
            if (rc < 0) {
                errno = -rc;
                log_warn("router: listen on %s", net_addr_str(&rt->listen[k].addr, as, sizeof(as)));
                return rc;
            }
        }
    }
    for (size_t k = 0; k < rt->nlisten; k++)
        log_info("router: listening for %s on %s", rt->listen[k].http ? "HTTP" : "DNS (UDP and TCP)",
                 net_addr_str(&rt->listen[k].addr, as, sizeof(as)));
    log_info("router: cdn %s, %zu zone%s, %zu node%s, %zu peer%s, %zu area prefixes", rt->set->cdn,
             rt->set->nzones, rt->set->nzones == 1 ? "" : "s", rt->set->nnodes,
             rt->set->nnodes == 1 ? "" : "s", rt->set->npeers, rt->set->npeers == 1 ? "" : "s",
             rt->set->area_prefixes);
    if (env->admin) {
        admin_route(env->admin, "GET", "/router", api_router, rt);
        admin_route(env->admin, "GET", "/router/lookup", api_lookup, rt);
    }
    loop_timer_init(rt->main_loop, &rt->learned_timer, learned_timer_cb);
    rt->learned_timer.data = rt;
    rt->build_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    rt->build_io.data = rt;
    if (rt->build_efd >= 0 && loop_io_start(rt->main_loop, &rt->build_io, rt->build_efd, LOOP_READ, build_io_cb) < 0) {
        close(rt->build_efd);
        rt->build_efd = -1;
    }
    if (rt->build_efd < 0)
        log_warnx("router: no build thread for learned routes: they are built on the main thread");
    if (feed_subscribe(learned_cb, rt) < 0) {
        log_warnx("router: cannot subscribe to learned routes (too many subscribers)");
        return -1;
    }
    rt->subscribed = 1;
    /* a peer role that started first has published already */
    struct feed_snapshot *now = feed_current();
    if (now)
        learned_cb(rt);
    feed_unref(now);
    return 0;
}

static int router_reload(void *inst, void *fresh_inst, struct conf *c)
{
    struct router *rt = inst, *f = fresh_inst;
    /* the fresh snapshot was built without the old nodes' health: rebuild it with it */
    (void)c;
    struct rt_settings *ns = f->set;
    struct rt_settings *os = rt__settings_static(rt->set);
    for (size_t i = 0; i < ns->nnodes; i++) {
        struct rt_node *n = ns->nodes[i];
        for (size_t k = 0; k < os->nnodes; k++) {
            struct rt_node *o = os->nodes[k];
            if (strcmp(o->name, n->name) == 0 && o->has_status == n->has_status &&
                memcmp(&o->status, &n->status, sizeof(n->status)) == 0) {
                atomic_store(&n->up, atomic_load(&o->up));
                atomic_store(&n->load, atomic_load(&o->load));
                atomic_store(&n->last_poll_ms, atomic_load(&o->last_poll_ms));
            }
        }
    }
    if (f->nlisten != rt->nlisten || memcmp(f->listen, rt->listen, rt->nlisten * sizeof(*rt->listen)) != 0)
        log_warnx("router: listen addresses changed; they take effect at restart");
    /* the learned layer depends on our CDN id and the preferred hand-off */
    if (rt->learned && (strcmp(ns->cdn, os->cdn) != 0 || ns->learned_handoff != os->learned_handoff)) {
        struct rt_learned *l;
        if (learned_build(rt, ns, &l) == 0) {
            rt__learned_unref(rt->learned);
            rt->learned = l;
            learned_gauges(rt);
        }
    }
    install(rt, rt__settings_derive(ns, rt->learned));
    /* (a build running now was started for the old snapshot: build_collect
     * sees that and builds again) */
    log_info("router: reloaded: %zu zone%s, %zu node%s, %zu area prefixes", ns->nzones,
             ns->nzones == 1 ? "" : "s", ns->nnodes, ns->nnodes == 1 ? "" : "s", ns->area_prefixes);
    return 0;
}

static void drain_worker(void *arg)
{
    struct rt_worker *w = arg;
    struct router *rt = rt__worker_router(w);
    rt__worker_drain(w);
    /* the last worker tells ferryd: only then may it stop the loops, so no
     * posted drain is left to run after the workers are gone */
    if (atomic_fetch_sub(&rt->drain_left, 1) == 1)
        loop_post(rt->main_loop, rt->drain_done, rt->drain_arg);
}

static void router_drain(void *inst, void (*done)(void *), void *arg)
{
    struct router *rt = inst;
    atomic_store(&rt->draining, 1);
    /* nothing may be posted to the workers once they drain */
    learned_stop(rt);
    rt->drain_done = done;
    rt->drain_arg = arg;
    atomic_store(&rt->drain_left, rt->nworkers);
    if (rt->nworkers == 0) {
        loop_post(rt->main_loop, done, arg);
        return;
    }
    /* DNS has no long requests: answers owed by peers end within ecs_timeout */
    for (unsigned i = 0; i < rt->nworkers; i++)
        loop_post(rt__worker_loop(rt->workers[i]), drain_worker, rt->workers[i]);
}

static void router_destroy(void *inst)
{
    struct router *rt = inst;
    if (rt == NULL)
        return;
    learned_stop(rt);
    rt__poller_destroy(rt->poller);
    for (unsigned i = 0; i < rt->nworkers; i++)
        rt__worker_destroy(rt->workers[i]);
    free(rt->workers);
    rt__settings_unref(rt->set);
    rt__learned_unref(rt->learned);
    free(rt->listen);
    free(rt);
}

const struct role_ops router_role = {
    .name = "router",
    .schema = router_opts,
    .create = router_create,
    .start = router_start,
    .reload = router_reload,
    .drain = router_drain,
    .destroy = router_destroy,
};
