/*
 * peer/speaker -- the `peer` role: one speaker of the peering protocol for
 * this CDN (docs/peering-protocol.md, docs/peering.md).
 *
 * It holds the configuration, the RIB (rib.c), our own advertisements,
 * and it turns Loc-RIB changes into UPDATEs for every Established
 * neighbor and into a new learned-route snapshot for the router (lib/feed).
 * session.c carries the connections.
 *
 * Exports are batched: a Loc-RIB change queues the destination for every
 * neighbor with a session, and one deferred flush per loop iteration turns
 * the queue into as few UPDATEs as the attributes allow. A whole UPDATE of
 * 10,000 areas from one peer so becomes one UPDATE to each other peer,
 * not 10,000. The router's snapshot is rebuilt after feed_delay of quiet.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/feed.h"
#include "lib/json.h"
#include "lib/log.h"
#include "lib/util.h"
#include "peer/internal.h"
#include "peer/list.h"
#include "peer/peer.h"

#define ORIGIN_FILE_MAX (INT64_C(1) << 31)

static const struct conf_opt nbr_opts[] = {
    {.name = "address", .type = CONF_ADDR,
     .help = "Where the peer's speaker listens (host:port). Without it the peer is passive: we "
             "only accept its connections."},
    {.name = "ca", .type = CONF_PATH,
     .help = "Pin by CA: the peer's certificate must chain to this CA and carry the URI subject "
             "alternative name ferry-cdn:NAME."},
    {.name = "fingerprint", .type = CONF_STR,
     .help = "Pin by certificate: the SHA-256 of the peer's DER certificate, in hex (colons "
             "allowed). With ca too, both must match."},
    {.name = "hold_time", .type = CONF_DURATION, .min = 0, .max = INT64_C(65535000),
     .help = "Hold time offered to this peer (default: the speaker's)."},
    {.name = "local_pref", .type = CONF_INT, .min = 0, .max = 1000000, .def = "100",
     .help = "LOCAL-PREF of the routes learned from this peer: the highest wins."},
    {.name = "accept", .type = CONF_ARGS, .flags = CONF_MULTI, .min_args = 1, .max_args = 3,
     .help = "Import rule: PREFIX [le N] | publisher HOST|*.SUFFIX | uri PREFIX | any. Rules "
             "(accept and reject) are tried in order; the first that matches decides; no match "
             "accepts."},
    {.name = "reject", .type = CONF_ARGS, .flags = CONF_MULTI, .min_args = 1, .max_args = 3,
     .help = "Import rule that refuses what it matches (same forms as accept)."},
    {.name = "export", .type = CONF_ARGS, .flags = CONF_MULTI, .min_args = 2, .max_args = 4,
     .help = "Export rule: accept|reject, then a rule of the same forms as accept. Tried in "
             "order before anything is advertised to this peer; no match advertises."},
    {.name = "max_routes", .type = CONF_INT, .min = 0, .max = INT64_C(100000000), .def = "0",
     .help = "Routes this peer may have accepted at once; beyond, its session ends with cease 5 "
             "(0 = no limit)."},
    {.name = "content_types", .type = CONF_ARGS, .min_args = 1, .max_args = 2,
     .help = "Accept only routes for these content types: static, streaming (default: any agreed)."},
    {.name = "transit", .type = CONF_FLAG, .def = "off",
     .help = "Re-advertise to this peer what we learned from other peers (our id prepended to "
             "the PATH, our own hand-off). Off: it is sent only our own routes."},
    {0},
};

const struct conf_opt peer_opts[] = {
    {.name = "cdn", .type = CONF_STR, .flags = CONF_REQUIRED,
     .help = "This CDN's id (1-32 of a-z 0-9 -), sent in OPEN and written into every PATH."},
    {.name = "listen", .type = CONF_ADDR, .flags = CONF_MULTI,
     .help = "Address the speaker accepts peers on (the protocol's port is 7179)."},
    {.name = "source", .type = CONF_STR,
     .help = "Source address of connections to peers (what their firewalls and ours see). "
             "Default: the first listen address, unless it is a wildcard."},
    {.name = "cert", .type = CONF_PATH, .flags = CONF_REQUIRED,
     .help = "This CDN's certificate chain (PEM), shown to peers; it should carry the URI SAN "
             "ferry-cdn:CDN."},
    {.name = "key", .type = CONF_PATH, .flags = CONF_REQUIRED, .help = "Its private key (PEM)."},
    {.name = "hold_time", .type = CONF_DURATION, .min = 0, .max = INT64_C(65535000), .def = "90s",
     .help = "Hold time offered: 0 (no keepalives) or 3s-65535s. The session uses the smaller "
             "offer; keepalives go every third of it."},
    {.name = "connect_retry", .type = CONF_DURATION, .min = 100, .max = 3600000, .def = "1s",
     .help = "First delay before reconnecting to a peer; it doubles per failure."},
    {.name = "connect_retry_max", .type = CONF_DURATION, .min = 100, .max = 3600000, .def = "60s",
     .help = "Largest delay before reconnecting."},
    {.name = "connect_timeout", .type = CONF_DURATION, .min = 100, .max = 600000, .def = "10s",
     .help = "Time for TCP connect plus TLS handshake."},
    {.name = "routing_types", .type = CONF_ARGS, .min_args = 1, .max_args = 3, .def = "dns http",
     .help = "Request routing types offered: dns, http, intercept."},
    {.name = "content_types", .type = CONF_ARGS, .min_args = 1, .max_args = 2, .def = "static",
     .help = "Content types offered: static, streaming."},
    {.name = "families", .type = CONF_ARGS, .min_args = 1, .max_args = 2, .def = "areas content",
     .help = "Message families offered: areas, content."},
    {.name = "max_message", .type = CONF_SIZE, .min = 4096, .max = PEER_MAX_MSG_LIMIT, .def = "1m",
     .help = "Largest message accepted from a peer."},
    {.name = "feed_delay", .type = CONF_DURATION, .min = 0, .max = 60000, .def = "100ms",
     .help = "Quiet time after a route change before the router is given the new routes."},
    {.name = "area", .type = CONF_ARGS, .flags = CONF_MULTI, .min_args = 1, .max_args = 1,
     .help = "A client prefix this CDN serves, advertised to peers."},
    {.name = "aggregate", .type = CONF_FLAG, .def = "on",
     .help = "Advertise our areas aggregated: covered prefixes dropped, sibling prefixes merged "
             "(10.0.0.0/24 and 10.0.1.0/24 become 10.0.0.0/23)."},
    {.name = "area_file", .type = CONF_PATH, .flags = CONF_MULTI,
     .help = "A file of such prefixes, one per line (# comments)."},
    {.name = "publisher", .type = CONF_ARGS, .flags = CONF_MULTI, .min_args = 1, .max_args = 1,
     .help = "A publisher host name this CDN serves, advertised as a content unit."},
    {.name = "uri_prefix", .type = CONF_ARGS, .flags = CONF_MULTI, .min_args = 1, .max_args = 1,
     .help = "A URI prefix (http:// or https://) this CDN serves, advertised as a content unit."},
    {.name = "content_file", .type = CONF_PATH, .flags = CONF_MULTI,
     .help = "A file of content units: one publisher host name or URI prefix per line."},
    {.name = "handoff", .type = CONF_ARGS, .flags = CONF_MULTI | CONF_REQUIRED, .min_args = 2,
     .max_args = 1 + 8,
     .help = "METHOD TARGET: how a peer hands clients to us, advertised with every route: "
             "cname ZONE | ns NSNAME ADDR... | ecs ADDR:PORT | http BASE-URL."},
    {.name = "load", .type = CONF_INT, .min = 0, .max = 1000, .help = "Load metric advertised (per mille)."},
    {.name = "capacity", .type = CONF_INT, .min = 0, .max = INT64_C(4000000000),
     .help = "Capacity metric advertised (Mbit/s)."},
    {.name = "cost", .type = CONF_INT, .min = 0, .max = INT64_C(4000000000), .help = "Cost metric advertised."},
    {.name = "distribution", .type = CONF_ARGS, .min_args = 1, .max_args = 2,
     .help = "Distribution methods advertised: pull, push."},
    {.name = "authoritative", .type = CONF_STR,
     .help = "The CDN id whose request routing system is authoritative for the content we "
             "advertise (RR-req 3.2.2.2), sent with our routes as AUTHORITATIVE."},
    {.name = "neighbor", .type = CONF_BLOCK, .flags = CONF_MULTI | CONF_NAMED, .block = nbr_opts,
     .help = "A peer CDN, by its CDN id."},
    {0},
};

/* ---- config -------------------------------------------------------------- */

static int parse_bits(struct conf *c, const struct conf_node *n, const char *const *names, unsigned nnames,
                      uint8_t *out)
{
    *out = 0;
    for (int i = 0; i < n->nargs; i++) {
        unsigned k;
        for (k = 0; k < nnames; k++)
            if (strcmp(n->args[i], names[k]) == 0)
                break;
        if (k == nnames) {
            conf_error(c, n, "%s: unknown value \"%s\"", n->name, n->args[i]);
            return -1;
        }
        *out |= (uint8_t)(1u << k);
    }
    return 0;
}

static const char *const rt_names[] = {"dns", "http", "intercept"};
static const char *const ct_names[] = {"static", "streaming"};
static const char *const fam_names[] = {"areas", "content"};
static const char *const dist_names[] = {"pull", "push"};

/* Parses one import rule's arguments. */
/* Parses a rule from n's arguments starting at `first`: PREFIX [le N] | publisher H | uri U | any. */
static int parse_rule(struct conf *c, const struct conf_node *n, int first, int accept, struct rib_rule *r)
{
    memset(r, 0, sizeof(*r));
    r->accept = accept;
    char *const *args = n->args + first;
    int nargs = n->nargs - first;
    if (nargs < 1) {
        conf_error(c, n, "%s: expected a rule: PREFIX [le N], publisher HOST, uri PREFIX or any", n->name);
        return -1;
    }
    const char *a0 = args[0];
    if (strcmp(a0, "any") == 0 && nargs == 1)
        return 0;
    if ((strcmp(a0, "publisher") == 0 || strcmp(a0, "uri") == 0) && nargs == 2) {
        int pub = a0[0] == 'p';
        const char *t = args[1];
        const char *h = pub && strncmp(t, "*.", 2) == 0 ? t + 2 : t;
        if (pub ? !peer_host_valid(h) : !peer_uri_valid(t)) {
            conf_error(c, n, "%s: \"%s\" is not a %s", n->name, t, pub ? "host name or *.suffix" : "http(s) URI prefix");
            return -1;
        }
        r->kind = pub ? PEER_R_PUBLISHER : PEER_R_URI;
        r->text = xstrdup(t);
        return 0;
    }
    struct peer_route pr;
    if (peer_parse_prefix(a0, &pr) < 0) {
        conf_error(c, n, "%s: \"%s\" is not a prefix, publisher HOST, uri PREFIX or any", n->name, a0);
        return -1;
    }
    r->kind = (uint8_t)pr.kind;
    r->plen = pr.plen;
    r->le = pr.plen;
    memcpy(r->addr, pr.addr, 16);
    if (nargs == 3 && strcmp(args[1], "le") == 0) {
        int64_t le;
        unsigned max = pr.kind == PEER_R_AREA4 ? 32 : 128;
        if (conf_parse_int(args[2], &le) < 0 || le < pr.plen || le > max) {
            conf_error(c, n, "%s: le must be between %u and %u", n->name, pr.plen, max);
            return -1;
        }
        r->le = (uint8_t)le;
    } else if (nargs != 1) {
        conf_error(c, n, "%s: expected PREFIX [le N]", n->name);
        return -1;
    }
    return 0;
}

static int parse_nbr(struct conf *c, const struct conf_node *b, struct speaker *sp)
{
    const char *id = b->args[0];
    if (!peer_id_valid(id, strlen(id))) {
        conf_error(c, b, "neighbor: \"%s\" is not a CDN id (1-32 of a-z 0-9 -)", id);
        return 1;
    }
    if (strcmp(id, sp->id) == 0) {
        conf_error(c, b, "neighbor %s: that is this speaker's own cdn id", id);
        return 1;
    }
    for (struct nbr *o = sp->nbrs; o; o = o->next) {
        if (strcmp(o->id, id) == 0) {
            conf_error(c, b, "neighbor %s: configured twice", id);
            return 1;
        }
    }
    struct nbr *n = xcalloc(1, sizeof(*n));
    int errors = 0;
    n->sp = sp;
    snprintf(n->id, sizeof(n->id), "%s", id);
    snprintf(n->state_text, sizeof(n->state_text), "Idle");
    buf_init(&n->pending);
    n->rand_state = hash_fnv1a(id, strlen(id)) ^ (uint64_t)time_mono_ns();
    const char *addr = conf_str(b, "address");
    if (addr) {
        if (net_addr_parse(addr, &n->addr) < 0) {
            conf_error(c, conf_find(b, "address"), "address: \"%s\" is not a numeric host:port", addr);
            errors++;
        } else {
            n->has_addr = 1;
        }
    }
    const char *ca = conf_str(b, "ca"), *fp = conf_str(b, "fingerprint");
    if (!ca && !fp) {
        conf_error(c, b, "neighbor %s: pin it with ca FILE or fingerprint SHA256 (there is no unauthenticated mode)", id);
        errors++;
    } else {
        char err[200];
        if (pr__pin_load(n, ca, fp, err, sizeof(err)) < 0) {
            conf_error(c, conf_find(b, ca && !n->ca && !strstr(err, "fingerprint") ? "ca" : "fingerprint"), "%s", err);
            errors++;
        }
    }
    n->hold_time = conf_find(b, "hold_time") ? (uint16_t)(conf_int(b, "hold_time") / 1000) : sp->hold_time;
    if (n->hold_time == 1 || n->hold_time == 2) {
        conf_error(c, conf_find(b, "hold_time"), "hold_time: 0 or at least 3s");
        errors++;
    }
    n->policy.local_pref = (uint32_t)conf_int(b, "local_pref");
    n->policy.max_routes = (size_t)conf_int(b, "max_routes");
    n->policy.transit = (int)conf_int(b, "transit");
    const struct conf_node *ctn = conf_find(b, "content_types");
    if (ctn && parse_bits(c, ctn, ct_names, 2, &n->policy.content_types) < 0)
        errors++;
    for (const struct conf_node *r = b->child; r; r = r->next) {
        int exp = strcmp(r->name, "export") == 0;
        if (strcmp(r->name, "accept") != 0 && strcmp(r->name, "reject") != 0 && !exp)
            continue;
        struct rib_rule rule;
        struct rib_policy *pol = exp ? &n->export_pol : &n->policy;
        int accept = exp ? strcmp(r->args[0], "accept") == 0 : strcmp(r->name, "accept") == 0;
        if (exp && !accept && strcmp(r->args[0], "reject") != 0) {
            conf_error(c, r, "export: expected accept or reject, then a rule");
            errors++;
            continue;
        }
        if (parse_rule(c, r, exp, accept, &rule) < 0) {
            errors++;
            continue;
        }
        pol->rules = xrealloc(pol->rules, (pol->nrules + 1) * sizeof(rule));
        pol->rules[pol->nrules++] = rule;
    }
    /* append, keeping config order */
    struct nbr **tail = &sp->nbrs;
    while (*tail)
        tail = &(*tail)->next;
    *tail = n;
    return errors;
}

/* Encodes a route as its kind byte and key, for queues and the origin list. */
static void key_put(struct buf *out, const struct peer_route *r)
{
    uint8_t h[4] = {(uint8_t)r->kind, 0, 0, 0};
    if (r->kind == PEER_R_AREA4 || r->kind == PEER_R_AREA6) {
        h[1] = r->plen;
        buf_append(out, h, 2);
        buf_append(out, r->addr, (r->plen + 7u) / 8u);
    } else {
        h[1] = (uint8_t)(r->len >> 8);
        h[2] = (uint8_t)r->len;
        buf_append(out, h, 3);
        buf_append(out, r->text, r->len);
    }
}

/* Reads one key at *pos; returns 0 at the end. */
static int key_next(const struct buf *b, size_t *pos, struct peer_route *r)
{
    if (b->data == NULL || b->len < *pos + 2)
        return 0;
    const uint8_t *p = (const uint8_t *)b->data + *pos;
    memset(r, 0, sizeof(*r));
    r->kind = p[0];
    if (r->kind == PEER_R_AREA4 || r->kind == PEER_R_AREA6) {
        r->plen = p[1];
        size_t nb = (r->plen + 7u) / 8u;
        memcpy(r->addr, p + 2, nb);
        *pos += 2 + nb;
    } else {
        r->len = (uint16_t)(p[1] << 8 | p[2]);
        r->text = (const char *)p + 3;
        *pos += 3u + r->len;
    }
    return 1;
}

/* ---- aggregation of our own areas -------------------------------------------- */

struct agg {
    unsigned __int128 a;          /* the address, left-aligned in 128 bits */
    uint8_t plen;
};

static int agg_cmp(const void *x, const void *y)
{
    const struct agg *p = x, *q = y;
    if (p->a != q->a)
        return p->a < q->a ? -1 : 1;
    return (int)p->plen - (int)q->plen;
}

static unsigned __int128 agg_mask(unsigned plen)
{
    return plen == 0 ? 0 : ~(unsigned __int128)0 << (128 - plen);
}

/*
 * Aggregates one family's prefixes in place: drops prefixes covered by
 * another, and merges sibling pairs into their parent, repeatedly (so
 * 10.0.0.0/24 + 10.0.1.0/24 become 10.0.0.0/23). Returns the new count.
 */
static size_t aggregate(struct agg *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), agg_cmp);
    size_t top = 0; /* v[0..top) is the stack */
    for (size_t i = 0; i < n; i++) {
        struct agg cur = v[i];
        if (top && v[top - 1].plen <= cur.plen && ((cur.a ^ v[top - 1].a) & agg_mask(v[top - 1].plen)) == 0)
            continue; /* covered by the last kept */
        v[top++] = cur;
        while (top >= 2) {
            struct agg *x = &v[top - 2], *y = &v[top - 1];
            if (x->plen != y->plen || x->plen == 0)
                break;
            unsigned __int128 bit = (unsigned __int128)1 << (128 - x->plen);
            if ((x->a & bit) || y->a != (x->a | bit))
                break;
            x->plen--; /* sorted input: whatever is below x on the stack lies before it */
            top--;
        }
    }
    return top;
}

/* Rewrites the area keys of `keys` aggregated; content units are kept as they are. */
static void aggregate_keys(struct buf *keys)
{
    struct agg *v[2] = {NULL, NULL};
    size_t n[2] = {0, 0}, cap[2] = {0, 0};
    struct buf units;
    buf_init(&units);
    size_t pos = 0, at = 0;
    struct peer_route r;
    while (key_next(keys, &pos, &r)) {
        if (r.kind == PEER_R_AREA4 || r.kind == PEER_R_AREA6) {
            int f = r.kind == PEER_R_AREA6;
            if (n[f] == cap[f]) {
                cap[f] = cap[f] ? cap[f] * 2 : 64;
                v[f] = xrealloc(v[f], cap[f] * sizeof(*v[f]));
            }
            /* big-endian over all 16 bytes: an IPv4 address lands in the top 32 bits */
            unsigned __int128 a = 0;
            for (unsigned i = 0; i < 16; i++)
                a = a << 8 | r.addr[i];
            v[f][n[f]].a = a;
            v[f][n[f]++].plen = r.plen;
        } else {
            buf_append(&units, keys->data + at, pos - at);
        }
        at = pos;
    }
    buf_reset(keys);
    for (int f = 0; f < 2; f++) {
        size_t k = aggregate(v[f], n[f]);
        for (size_t i = 0; i < k; i++) {
            struct peer_route o = {.kind = f ? PEER_R_AREA6 : PEER_R_AREA4, .plen = v[f][i].plen};
            unsigned __int128 a = v[f][i].a;
            for (int b = 15; b >= 0; b--, a >>= 8)
                o.addr[b] = (uint8_t)a;
            key_put(keys, &o);
        }
        free(v[f]);
    }
    if (units.len)
        buf_append(keys, units.data, units.len);
    buf_fini(&units);
}

static int add_unit(struct speaker *sp, const char *t, struct buf *out)
{
    struct peer_route r;
    (void)sp;
    if (peer_parse_unit(t, &r) < 0)
        return -1;
    key_put(out, &r);
    return 0;
}

/* Reads an area or content file of one item per line into out (keys). */
static int read_list_file(struct conf *c, const struct conf_node *n, struct speaker *sp, int areas,
                          struct buf *out)
{
    const char *path = n->args[0];
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        conf_error(c, n, "%s %s: %s", n->name, path, strerror(errno));
        return 1;
    }
    char line[PEER_LIST_LINE_MAX];
    int lineno = 0, errors = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        struct peer_route r;
        int rc;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            /* Longer than any valid entry: skip the rest of the line. */
            int ch;
            while ((ch = fgetc(f)) != EOF && ch != '\n')
                ;
            rc = -1;
        } else {
            rc = peer_list_line(line, areas, &r);
        }
        if (rc > 0)
            key_put(out, &r);
        if (rc < 0 && errors < 10)
            conf_error(c, n, "%s %s:%d: \"%.80s\" is not %s", n->name, path, lineno, line,
                       areas ? "an IPv4 or IPv6 prefix" : "a host name or http(s) URI prefix");
        errors += rc < 0;
    }
    fclose(f);
    return errors;
}

static int parse_handoff(struct conf *c, const struct conf_node *n, struct speaker *sp)
{
    static const char *const names[] = {"cname", "ns", "ecs", "http"};
    unsigned i = sp->origin.nhandoff;
    if (i >= PEER_MAX_HANDOFFS) {
        conf_error(c, n, "handoff: at most %d", PEER_MAX_HANDOFFS);
        return 1;
    }
    unsigned m;
    for (m = 0; m < 4; m++)
        if (strcmp(n->args[0], names[m]) == 0)
            break;
    if (m == 4) {
        conf_error(c, n, "handoff: method \"%s\" is not cname, ns, ecs or http", n->args[0]);
        return 1;
    }
    struct buf t;
    buf_init(&t);
    for (int k = 1; k < n->nargs; k++)
        buf_printf(&t, "%s%s", k > 1 ? " " : "", n->args[k]);
    int bad = t.len == 0 || t.len > PEER_MAX_TARGET;
    struct net_addr a;
    if (!bad && m == 2)
        bad = n->nargs != 2 || net_addr_parse(n->args[1], &a) < 0;
    if (!bad && m == 3)
        bad = n->nargs != 2 || !peer_uri_valid(n->args[1]);
    if (!bad && (m == 0 || m == 1))
        bad = !peer_host_valid(n->args[1]) || (m == 0 && n->nargs != 2) || (m == 1 && n->nargs < 3);
    if (bad) {
        conf_error(c, n, "handoff %s: expected %s", names[m],
                   m == 0 ? "a zone name" : m == 1 ? "NSNAME ADDR [ADDR...]" : m == 2 ? "ADDR:PORT" : "an http(s) base URL");
        buf_fini(&t);
        return 1;
    }
    memcpy(sp->origin_text[i], t.data, t.len);
    sp->origin_text[i][t.len] = 0;
    sp->origin.handoff[i].method = (enum peer_handoff)(m + 1);
    sp->origin.handoff[i].len = (uint16_t)t.len;
    sp->origin.handoff[i].target = sp->origin_text[i];
    sp->origin.nhandoff++;
    buf_fini(&t);
    return 0;
}

static void speaker_free(struct speaker *sp);
static void feed_changed(struct speaker *sp);
static void on_change(void *arg, const struct rib_dest *d, const struct rib_route *old, const struct rib_route *now);

static void *peer_create(struct conf *c, const struct conf_node *blk)
{
    struct speaker *sp = xcalloc(1, sizeof(*sp));
    int errors = 0;
    buf_init(&sp->originated);
    const char *id = conf_str(blk, "cdn");
    if (!peer_id_valid(id, strlen(id))) {
        conf_error(c, conf_find(blk, "cdn"), "cdn: \"%s\" must be 1-32 of a-z 0-9 - (no leading, trailing or double -)", id);
        errors++;
    }
    snprintf(sp->id, sizeof(sp->id), "%s", id);
    for (const struct conf_node *n = conf_find(blk, "listen"); n; n = conf_next(n)) {
        sp->listen = xrealloc(sp->listen, (sp->nlisten + 1) * sizeof(*sp->listen));
        if (net_addr_parse(n->args[0], &sp->listen[sp->nlisten]) < 0) {
            conf_error(c, n, "listen: \"%s\" is not a numeric address:port", n->args[0]);
            errors++;
            continue;
        }
        sp->nlisten++;
    }
    const char *src = conf_str(blk, "source");
    if (src) {
        if (net_addr_from(src, 0, &sp->source) < 0) {
            conf_error(c, conf_find(blk, "source"), "source: \"%s\" is not a numeric address", src);
            errors++;
        } else {
            sp->has_source = 1;
        }
    } else if (sp->nlisten) {
        char h[64];
        net_addr_host(&sp->listen[0], h, sizeof(h));
        if (strcmp(h, "0.0.0.0") != 0 && strcmp(h, "::") != 0 && net_addr_from(h, 0, &sp->source) == 0)
            sp->has_source = 1;
    }
    int64_t hold = conf_int(blk, "hold_time");
    if (hold > 0 && hold < 3000) {
        conf_error(c, conf_find(blk, "hold_time"), "hold_time: 0 or at least 3s");
        errors++;
    }
    sp->hold_time = (uint16_t)(hold / 1000);
    sp->retry_min_ms = conf_int(blk, "connect_retry");
    sp->retry_max_ms = conf_int(blk, "connect_retry_max");
    if (sp->retry_max_ms < sp->retry_min_ms)
        sp->retry_max_ms = sp->retry_min_ms;
    sp->connect_timeout_ms = conf_int(blk, "connect_timeout");
    sp->max_message = (uint32_t)conf_int(blk, "max_message");
    sp->feed_delay_ms = conf_int(blk, "feed_delay");
    const struct conf_node *n;
    if ((n = conf_find(blk, "routing_types")) && parse_bits(c, n, rt_names, 3, &sp->routing_types) < 0)
        errors++;
    if (!n)
        sp->routing_types = PEER_RT_DNS | PEER_RT_HTTP;
    if ((n = conf_find(blk, "content_types")) && parse_bits(c, n, ct_names, 2, &sp->content_types) < 0)
        errors++;
    if (!n)
        sp->content_types = PEER_CT_STATIC;
    if ((n = conf_find(blk, "families")) && parse_bits(c, n, fam_names, 2, &sp->families) < 0)
        errors++;
    if (!n)
        sp->families = PEER_FAM_AREAS | PEER_FAM_CONTENT;
    for (n = conf_find(blk, "handoff"); n; n = conf_next(n))
        errors += parse_handoff(c, n, sp);
    sp->origin.content_types = sp->content_types;
    if ((n = conf_find(blk, "distribution")) && parse_bits(c, n, dist_names, 2, &sp->origin.distribution) < 0)
        errors++;
    const char *auth = conf_str(blk, "authoritative");
    if (auth) {
        if (!peer_id_valid(auth, strlen(auth))) {
            conf_error(c, conf_find(blk, "authoritative"), "authoritative: \"%s\" is not a CDN id", auth);
            errors++;
        } else {
            snprintf(sp->origin_auth, sizeof(sp->origin_auth), "%s", auth);
            sp->origin.authoritative = sp->origin_auth;
        }
    }
    sp->origin.load = sp->origin.capacity = sp->origin.cost = UINT32_MAX;
    if (conf_find(blk, "load") || conf_find(blk, "capacity") || conf_find(blk, "cost")) {
        sp->origin.has_metrics = 1;
        if (conf_find(blk, "load"))
            sp->origin.load = (uint32_t)conf_int(blk, "load");
        if (conf_find(blk, "capacity"))
            sp->origin.capacity = (uint32_t)conf_int(blk, "capacity");
        if (conf_find(blk, "cost"))
            sp->origin.cost = (uint32_t)conf_int(blk, "cost");
    }
    for (n = conf_find(blk, "area"); n; n = conf_next(n)) {
        struct peer_route r;
        if (peer_parse_prefix(n->args[0], &r) < 0) {
            conf_error(c, n, "area: \"%s\" is not an IPv4 or IPv6 prefix (host bits must be zero)", n->args[0]);
            errors++;
            continue;
        }
        key_put(&sp->originated, &r);
    }
    for (n = conf_find(blk, "area_file"); n; n = conf_next(n))
        errors += read_list_file(c, n, sp, 1, &sp->originated);
    for (n = conf_find(blk, "publisher"); n; n = conf_next(n)) {
        if (add_unit(sp, n->args[0], &sp->originated) < 0 || strncmp(n->args[0], "http", 4) == 0) {
            conf_error(c, n, "publisher: \"%s\" is not a lowercase host name", n->args[0]);
            errors++;
        }
    }
    for (n = conf_find(blk, "uri_prefix"); n; n = conf_next(n)) {
        if (!peer_uri_valid(n->args[0]) || add_unit(sp, n->args[0], &sp->originated) < 0) {
            conf_error(c, n, "uri_prefix: \"%s\" is not an http:// or https:// prefix", n->args[0]);
            errors++;
        }
    }
    for (n = conf_find(blk, "content_file"); n; n = conf_next(n))
        errors += read_list_file(c, n, sp, 0, &sp->originated);
    if (conf_int(blk, "aggregate"))
        aggregate_keys(&sp->originated);
    for (n = conf_find(blk, "neighbor"); n; n = conf_next(n))
        errors += parse_nbr(c, n, sp);
    char err[300];
    if (pr__tls_init(sp, conf_str(blk, "cert"), conf_str(blk, "key"), err, sizeof(err)) < 0) {
        conf_error(c, conf_find(blk, strncmp(err, "key", 3) == 0 ? "key" : "cert"), "%s", err);
        errors++;
    }
    if (errors) {
        speaker_free(sp);
        return NULL;
    }
    return sp;
}

/* ---- RIB glue and exports ----------------------------------------------------- */

static void flush_cb(void *arg);

static void queue_flush(struct speaker *sp)
{
    if (!sp->flush_queued && sp->loop) {
        sp->flush_queued = 1;
        loop_defer(sp->loop, flush_cb, sp);
    }
}

/* Could `n` have been sent rt, or be sent it now (the rules of batch_add)? */
static int nbr_may_hold(const struct nbr *n, const struct rib_dest *d, const struct rib_route *rt);

static void on_change(void *arg, const struct rib_dest *d, const struct rib_route *old, const struct rib_route *now)
{
    struct speaker *sp = arg;
    struct peer_route r;
    rib_dest_route(d, &r);
    for (struct nbr *n = sp->nbrs; n; n = n->next) {
        if (n->session == NULL || n->pending_full)
            continue;
        /* nothing to tell a peer that neither held the old best nor may hold the new one
         * (the routes it sent us itself, above all: a table learned is not echoed back) */
        if (!nbr_may_hold(n, d, old) && !nbr_may_hold(n, d, now))
            continue;
        if (n->pending.len > PR_PENDING_MAX) {
            n->pending_full = 1;
            buf_reset(&n->pending);
            continue;
        }
        key_put(&n->pending, &r);
    }
    if ((old && old->peer != RIB_LOCAL) || (now && now->peer != RIB_LOCAL)) {
        sp->feed_dirty = 1;
        feed_changed(sp);
        if (sp->loop && feed_has_subscribers())
            loop_timer_start(&sp->feed_timer, sp->feed_delay_ms);
    }
    queue_flush(sp);
}

/* May this session carry route r (family, content type)? */
static int session_carries(const struct pconn *c, const struct rib_dest *d, const struct rib_route *rt)
{
    int area = d->kind == PEER_R_AREA4 || d->kind == PEER_R_AREA6;
    if (!(c->fsm.families & (area ? PEER_FAM_AREAS : PEER_FAM_CONTENT)))
        return 0;
    return (rt->attrs->content_types & c->fsm.content_types) != 0;
}

/* May n hold route rt of d under export rules pol? */
static int nbr_may_hold_under(const struct nbr *n, const struct rib_policy *pol, const struct rib_dest *d,
                              const struct rib_route *rt)
{
    if (rt == NULL || n->session == NULL || !rib_exportable(n->sp->rib, n->rib_idx, rt) ||
        !session_carries(n->session, d, rt))
        return 0;
    return pol->nrules == 0 || rib_policy_allows(pol, d, rt->attrs->content_types);
}

static int nbr_may_hold(const struct nbr *n, const struct rib_dest *d, const struct rib_route *rt)
{
    return nbr_may_hold_under(n, &n->export_pol, d, rt);
}

/* Hand-offs we advertise on this session: ours, limited to the routing types agreed. */
static unsigned our_handoffs(const struct speaker *sp, const struct pconn *c, struct peer_handoff_target *ho)
{
    unsigned k = 0;
    for (unsigned i = 0; i < sp->origin.nhandoff; i++) {
        int http = sp->origin.handoff[i].method == PEER_HO_HTTP;
        if (c->fsm.routing_types & (http ? PEER_RT_HTTP : PEER_RT_DNS))
            ho[k++] = sp->origin.handoff[i];
    }
    return k;
}

struct bucket {
    const struct rib_route *rt;   /* whose attributes the routes share */
    const struct rib_dest **v;
    size_t n, cap;
};

struct out_batch {
    struct bucket b[32];
    unsigned nb;
    const struct rib_dest **wd;   /* withdrawals (by dest) */
    size_t nwd, capwd;
    struct peer_route *wr;        /* withdrawals of destinations gone from the RIB */
    size_t nwr, capwr;
};

static void write_bucket(struct nbr *n, struct pconn *c, struct bucket *bk)
{
    struct speaker *sp = n->sp;
    const struct rib_attrs *at = bk->rt->attrs;
    const char *path[PEER_MAX_PATH];
    unsigned np = 0;
    path[np++] = sp->id;
    if (bk->rt->peer != RIB_LOCAL)
        for (unsigned i = 0; i < at->npath && np < PEER_MAX_PATH; i++)
            path[np++] = at->path[i];
    if (bk->rt->peer != RIB_LOCAL && 1u + at->npath > PEER_MAX_PATH)
        return; /* the path would be too long: not advertised */
    struct peer_handoff_target ho[PEER_MAX_HANDOFFS];
    unsigned nho = our_handoffs(sp, c, ho);
    if (nho == 0)
        return;
    struct peer_attrs m = {0};
    m.has_metrics = at->has_metrics;
    m.load = at->load;
    m.capacity = at->capacity;
    m.cost = at->cost;
    m.content_types = at->content_types;
    m.distribution = at->distribution;
    if (at->authoritative) {
        m.authoritative = (const uint8_t *)at->authoritative;
        m.authoritative_len = (uint8_t)strlen(at->authoritative);
    }
    struct peer_update_writer w;
    size_t i = 0;
    while (i < bk->n) {
        peer_update_begin(&w, &c->out, c->fsm.peer_max_message);
        if (peer_update_attrs(&w, path, np, ho, nho, &m, at->carry, at->carry_len) < 0) {
            c->out.len = w.start; /* cannot fit even the attributes: drop */
            return;
        }
        size_t start = i;
        for (; i < bk->n; i++) {
            struct peer_route r;
            rib_dest_route(bk->v[i], &r);
            if (peer_update_announce(&w, &r) < 0)
                break;
        }
        if (i == start) {
            c->out.len = w.start;
            i++; /* a route too large for the peer: skip it */
            continue;
        }
        peer_update_end(&w);
        n->updates_out++;
        metric_inc(sp->m_updates_out);
    }
}

static void write_withdrawals(struct nbr *n, struct pconn *c, struct out_batch *ob)
{
    struct peer_update_writer w;
    size_t total = ob->nwd + ob->nwr, i = 0;
    while (i < total) {
        peer_update_begin(&w, &c->out, c->fsm.peer_max_message);
        size_t start = i;
        for (; i < total; i++) {
            struct peer_route r;
            if (i < ob->nwd)
                rib_dest_route(ob->wd[i], &r);
            else
                r = ob->wr[i - ob->nwd];
            if (peer_update_withdraw(&w, &r) < 0)
                break;
        }
        if (i == start) {
            c->out.len = w.start;
            i++;
            continue;
        }
        peer_update_end(&w);
        n->updates_out++;
        metric_inc(n->sp->m_updates_out);
    }
}

static void batch_flush(struct nbr *n, struct pconn *c, struct out_batch *ob)
{
    if (ob->nwd || ob->nwr)
        write_withdrawals(n, c, ob);
    for (unsigned i = 0; i < ob->nb; i++) {
        write_bucket(n, c, &ob->b[i]);
        ob->b[i].n = 0;
    }
    ob->nb = 0;
    ob->nwd = ob->nwr = 0;
}

static void batch_fini(struct out_batch *ob)
{
    for (unsigned i = 0; i < sizeof(ob->b) / sizeof(ob->b[0]); i++)
        free(ob->b[i].v);
    free(ob->wd);
    free(ob->wr);
}

/* Adds what `n` should hold for d (announce or withdraw) to the batch. */
static void batch_add(struct nbr *n, struct pconn *c, struct out_batch *ob, const struct rib_dest *d,
                      int withdraw_if_none)
{
    (void)c;
    const struct rib_route *rt = rib_best(d, NULL);
    if (!nbr_may_hold(n, d, rt))
        rt = NULL;
    if (rt == NULL) {
        if (withdraw_if_none) {
            if (ob->nwd == ob->capwd) {
                ob->capwd = ob->capwd ? ob->capwd * 2 : 256;
                ob->wd = xrealloc(ob->wd, ob->capwd * sizeof(*ob->wd));
            }
            ob->wd[ob->nwd++] = d;
        }
        return;
    }
    unsigned i;
    for (i = 0; i < ob->nb; i++)
        if (ob->b[i].rt->attrs == rt->attrs && (ob->b[i].rt->peer == RIB_LOCAL) == (rt->peer == RIB_LOCAL))
            break;
    if (i == ob->nb) {
        if (ob->nb == sizeof(ob->b) / sizeof(ob->b[0]))
            batch_flush(n, c, ob);
        i = ob->nb++;
        ob->b[i].rt = rt;
        ob->b[i].n = 0;
    }
    struct bucket *bk = &ob->b[i];
    if (bk->n == bk->cap) {
        bk->cap = bk->cap ? bk->cap * 2 : 256;
        bk->v = xrealloc(bk->v, bk->cap * sizeof(*bk->v));
    }
    bk->v[bk->n++] = d;
}

struct dump_ctx {
    struct nbr *n;
    struct pconn *c;
    struct out_batch *ob;
    int family;                   /* 0 all, else PEER_FAM_* */
    int withdraw;                 /* also withdraw what the peer must not hold (after a policy change) */
};

static int dump_one(void *arg, const struct rib_dest *d)
{
    struct dump_ctx *x = arg;
    int area = d->kind == PEER_R_AREA4 || d->kind == PEER_R_AREA6;
    if (x->family && !(x->family & (area ? PEER_FAM_AREAS : PEER_FAM_CONTENT)))
        return 0;
    if (x->n->dump_diff) {
        /* the peer holds the best route where the old rules allowed it: send
         * only where the new rules decide otherwise */
        const struct rib_route *rt = rib_best(d, NULL);
        if (nbr_may_hold_under(x->n, &x->n->dump_old, d, rt) == nbr_may_hold(x->n, d, rt))
            return 0;
    }
    batch_add(x->n, x->c, x->ob, d, x->withdraw);
    return 0;
}

/*
 * Sends n everything it should hold (withdrawing the rest when `withdraw`),
 * then End-of-RIB. A full table is millions of routes, so it goes out in
 * steps, each refilling the connection's output once the socket has taken
 * most of it (pull, don't push): the peer starts on the first UPDATEs while
 * we write the next, and our loop stays responsive. Changes during the walk
 * reach the peer through the change queue as usual.
 */
#define DUMP_STEP 20000          /* destinations per step */
#define DUMP_LOW (256u << 10)    /* the output is refilled below this many bytes */

static void dump_diff_end(struct nbr *n)
{
    if (!n->dump_diff)
        return;
    n->dump_diff = 0;
    rib_policy_free(&n->dump_old);
    memset(&n->dump_old, 0, sizeof(n->dump_old));
}

static void dump_pump(struct nbr *n)
{
    struct pconn *c = n->session;
    while (c && !c->closed && n->dump_active && buf_avail(&c->out) < DUMP_LOW) {
        struct out_batch ob;
        memset(&ob, 0, sizeof(ob));
        struct dump_ctx x = {.n = n, .c = c, .ob = &ob, .family = n->dump_family, .withdraw = n->dump_withdraw};
        int done = rib_walk(n->sp->rib, &n->dump_cur, dump_one, &x, DUMP_STEP);
        batch_flush(n, c, &ob);
        batch_fini(&ob);
        if (done) {
            n->dump_active = 0;
            dump_diff_end(n);
            struct peer_update_writer w;
            peer_update_begin(&w, &c->out, c->fsm.peer_max_message);
            peer_update_end(&w); /* End-of-RIB */
            n->updates_out++;
        }
        pr__conn_send(c); /* what the socket does not take waits for writability */
    }
}

/* As send_dump; with old (taken over) it sends only what differs from what
 * the peer was sent under the export rules old. */
static void send_dump_ex(struct nbr *n, struct pconn *c, int family, int withdraw, struct rib_policy *old)
{
    (void)c;
    dump_diff_end(n); /* a new dump sends what it must, whatever the one before did */
    if (old) {
        n->dump_old = *old;
        n->dump_diff = 1;
    }
    n->dump_active = 1;
    n->dump_family = family;
    n->dump_withdraw = withdraw;
    rib_walk_start(n->sp->rib, &n->dump_cur);
    dump_pump(n);
}

static void send_dump(struct nbr *n, struct pconn *c, int family, int withdraw)
{
    send_dump_ex(n, c, family, withdraw, NULL);
}

void pr__session_writable(struct nbr *n, struct pconn *c)
{
    if (n->session == c && n->dump_active)
        dump_pump(n);
}

static void flush_nbr(struct nbr *n)
{
    struct pconn *c = n->session;
    if (c == NULL) {
        buf_reset(&n->pending);
        n->pending_full = 0;
        return;
    }
    if (n->pending_full) {
        n->pending_full = 0;
        buf_reset(&n->pending);
        log_info("peer %s: too many changes queued; sending the whole table again", n->id);
        send_dump(n, c, 0, 1);
        return;
    }
    if (n->pending.len == 0)
        return;
    struct out_batch ob;
    memset(&ob, 0, sizeof(ob));
    size_t pos = 0;
    struct peer_route r;
    while (key_next(&n->pending, &pos, &r)) {
        const struct rib_dest *d = rib_find(n->sp->rib, &r);
        if (d) {
            batch_add(n, c, &ob, d, 1);
        } else {
            if (ob.nwr == ob.capwr) {
                ob.capwr = ob.capwr ? ob.capwr * 2 : 64;
                ob.wr = xrealloc(ob.wr, ob.capwr * sizeof(*ob.wr));
            }
            ob.wr[ob.nwr++] = r; /* text points into n->pending, alive until reset below */
        }
    }
    batch_flush(n, c, &ob);
    batch_fini(&ob);
    buf_reset(&n->pending);
    pr__conn_send(c);
}

static void flush_cb(void *arg)
{
    struct speaker *sp = arg;
    sp->flush_queued = 0;
    for (struct nbr *n = sp->nbrs; n; n = n->next)
        flush_nbr(n);
}

void pr__session_up(struct nbr *n, struct pconn *c)
{
    struct speaker *sp = n->sp;
    n->up_since_ms = (int64_t)time_wall_ms();
    n->up_mono_ms = time_mono_ms();
    n->established++;
    n->eor_received = 0;
    buf_reset(&n->pending);
    n->pending_full = 0;
    metric_add(sp->m_sessions_up, 1);
    n->last_error[0] = 0;
    send_dump(n, c, 0, 0);
}

void pr__session_down(struct nbr *n, struct pconn *c)
{
    struct speaker *sp = n->sp;
    (void)c;
    n->dump_active = 0;
    dump_diff_end(n);
    metric_add(sp->m_sessions_up, -1);
    n->up_since_ms = 0;
    n->eor_received = 0;
    struct rib_peer_stats st;
    rib_peer_stats(sp->rib, n->rib_idx, &st);
    rib_peer_down(sp->rib, n->rib_idx);
    if (st.routes)
        log_info("peer %s: session down: %zu route%s withdrawn", n->id, st.routes, st.routes == 1 ? "" : "s");
    buf_reset(&n->pending);
    n->pending_full = 0;
}

int pr__session_update(struct nbr *n, struct pconn *c, const struct peer_update *u)
{
    struct speaker *sp = n->sp;
    metric_inc(sp->m_updates_in);
    n->updates_in++;
    if (peer_update_is_eor(u)) {
        if (!n->eor_received)
            log_info("peer %s: End-of-RIB received", n->id);
        n->eor_received = 1;
        return 0;
    }
    struct rib_peer_stats before, after;
    rib_peer_stats(sp->rib, n->rib_idx, &before);
    int r = rib_update(sp->rib, n->rib_idx, u, c->fsm.content_types);
    rib_peer_stats(sp->rib, n->rib_idx, &after);
    metric_add(sp->m_routes_looped, (int64_t)(after.looped - before.looped));
    metric_add(sp->m_routes_rejected, (int64_t)(after.rejected - before.rejected + after.refused_type -
                                                before.refused_type));
    return r;
}

void pr__session_refresh(struct nbr *n, struct pconn *c, uint8_t family)
{
    log_info("peer %s: route refresh asked for family %u", n->id, family);
    int fam = family == 1 ? PEER_FAM_AREAS : family == 2 ? PEER_FAM_CONTENT : 0;
    if (n->dump_active && n->dump_family != fam)
        fam = 0; /* a table of another family is still being sent: send both again */
    send_dump(n, c, fam, 0);
}

/* ---- the feed to the router ----------------------------------------------------- */

struct feed_ctx {
    struct speaker *sp;
    struct feed_snapshot *s;
    const struct rib_attrs **keys; /* open addressing: attrs -> target index */
    uint32_t *vals;
    size_t cap;
    size_t capa, capu;
};

/*
 * A feed build in progress: the snapshot grows FEED_STEP destinations per
 * loop iteration, so that a million routes do not hold the loop (sessions,
 * admin API, a router's health polls) for a quarter of a second at once.
 * The RIB may change between steps; such a change marks the feed dirty, so
 * another build follows this one, and it may free route attributes whose
 * addresses key the target map, so the map is forgotten (map_stale) and
 * rebuilt from there (a target may then appear twice, which is harmless).
 * A resize of the RIB's table makes the walk start over, and the snapshot
 * with it.
 */
struct feed_job {
    struct feed_ctx x;
    struct rib_cursor cur;
    int64_t t0;
    int map_stale;
};

#define FEED_STEP 16384

static uint32_t feed_target(struct feed_ctx *x, const struct rib_attrs *at)
{
    size_t h = (size_t)(((uintptr_t)at >> 4) * UINT64_C(0x9e3779b97f4a7c15)) & (x->cap - 1);
    while (x->keys[h] && x->keys[h] != at)
        h = (h + 1) & (x->cap - 1);
    if (x->keys[h])
        return x->vals[h];
    struct feed_snapshot *s = x->s;
    if (s->ntargets * 2 + 2 > x->cap) {
        /* grow and rehash */
        size_t ncap = x->cap * 2;
        const struct rib_attrs **nk = xcalloc(ncap, sizeof(*nk));
        uint32_t *nv = xcalloc(ncap, sizeof(*nv));
        for (size_t i = 0; i < x->cap; i++) {
            if (!x->keys[i])
                continue;
            size_t k = (size_t)(((uintptr_t)x->keys[i] >> 4) * UINT64_C(0x9e3779b97f4a7c15)) & (ncap - 1);
            while (nk[k])
                k = (k + 1) & (ncap - 1);
            nk[k] = x->keys[i];
            nv[k] = x->vals[i];
        }
        free(x->keys);
        free(x->vals);
        x->keys = nk;
        x->vals = nv;
        x->cap = ncap;
        return feed_target(x, at);
    }
    uint32_t idx = (uint32_t)s->ntargets++;
    s->targets = xrealloc(s->targets, s->ntargets * sizeof(*s->targets));
    struct feed_target *t = &s->targets[idx];
    memset(t, 0, sizeof(*t));
    snprintf(t->cdn, sizeof(t->cdn), "%s", at->npath ? at->path[0] : "");
    t->npath = at->npath;
    for (unsigned i = 0; i < at->npath && i < 8; i++)
        snprintf(t->path[i], sizeof(t->path[i]), "%s", at->path[i]);
    t->nhandoff = at->nhandoff;
    for (unsigned i = 0; i < at->nhandoff && i < FEED_MAX_HANDOFFS; i++) {
        t->handoff[i].method = (enum feed_method)at->handoff[i].method;
        snprintf(t->handoff[i].target, sizeof(t->handoff[i].target), "%s", at->handoff[i].target);
    }
    t->load = at->has_metrics ? at->load : FEED_NO_METRIC;
    t->capacity = at->has_metrics ? at->capacity : FEED_NO_METRIC;
    t->cost = at->has_metrics ? at->cost : FEED_NO_METRIC;
    x->keys[h] = at;
    x->vals[h] = idx;
    return idx;
}

static int feed_one(void *arg, const struct rib_dest *d)
{
    struct feed_ctx *x = arg;
    const struct rib_route *b = rib_best(d, NULL);
    if (b == NULL || b->peer == RIB_LOCAL)
        return 0;
    uint32_t t = feed_target(x, b->attrs);
    struct feed_snapshot *s = x->s;
    if (d->kind == PEER_R_AREA4 || d->kind == PEER_R_AREA6) {
        if (s->nareas == x->capa) {
            x->capa = x->capa ? x->capa * 2 : 1024;
            s->areas = xrealloc(s->areas, x->capa * sizeof(*s->areas));
        }
        struct feed_area *a = &s->areas[s->nareas++];
        memset(a, 0, sizeof(*a));
        a->family = d->kind == PEER_R_AREA4 ? 4 : 6;
        a->plen = d->plen;
        memcpy(a->addr, d->key, d->len);
        a->target = t;
    } else {
        if (s->nunits == x->capu) {
            x->capu = x->capu ? x->capu * 2 : 256;
            s->units = xrealloc(s->units, x->capu * sizeof(*s->units));
        }
        struct feed_unit *u = &s->units[s->nunits++];
        u->uri = d->kind == PEER_R_URI;
        u->text = xstrdup((const char *)d->key);
        u->target = t;
    }
    return 0;
}

/* The RIB changed while a build may be running. */
static void feed_changed(struct speaker *sp)
{
    if (sp->feed_job)
        sp->feed_job->map_stale = 1;
}

static void feed_job_free(struct feed_job *job)
{
    if (job == NULL)
        return;
    free(job->x.keys);
    free(job->x.vals);
    feed_unref(job->x.s);
    free(job);
}

static void feed_job_reset(struct speaker *sp, struct feed_job *job)
{
    feed_unref(job->x.s);
    free(job->x.keys);
    free(job->x.vals);
    memset(&job->x, 0, sizeof(job->x));
    job->x.sp = sp;
    job->x.s = feed_snapshot_create();
    job->x.cap = 64;
    job->x.keys = xcalloc(job->x.cap, sizeof(*job->x.keys));
    job->x.vals = xcalloc(job->x.cap, sizeof(*job->x.vals));
    job->map_stale = 0;
    /* Room for every destination at once: growing by doubling would copy
     * (and fault in) the whole array again within one step. */
    job->x.capa = rib_dest_count(sp->rib) + 1;
    job->x.s->areas = xmalloc(job->x.capa * sizeof(*job->x.s->areas));
    rib_walk_start(sp->rib, &job->cur);
}

/* One step of the feed build (starting one when none runs). */
static void feed_step(struct speaker *sp)
{
    struct feed_job *job = sp->feed_job;
    if (job == NULL) {
        job = sp->feed_job = xcalloc(1, sizeof(*job));
        job->t0 = time_mono_ms();
        feed_job_reset(sp, job);
        sp->feed_dirty = 0; /* a change from now on is taken by the next build */
    } else if (rib_walk_restarts(sp->rib, &job->cur)) {
        feed_job_reset(sp, job);
    } else if (job->map_stale) {
        memset(job->x.keys, 0, job->x.cap * sizeof(*job->x.keys));
        job->map_stale = 0;
    }
    if (!rib_walk(sp->rib, &job->cur, feed_one, &job->x, FEED_STEP)) {
        loop_timer_start(&sp->feed_step_timer, 0);
        return;
    }
    struct feed_snapshot *snap = job->x.s;
    job->x.s = NULL;
    if (snap->nareas + 64 < job->x.capa) /* units and our own routes took no room */
        snap->areas = xrealloc(snap->areas, (snap->nareas ? snap->nareas : 1) * sizeof(*snap->areas));
    size_t na = snap->nareas, nu = snap->nunits, nt = snap->ntargets;
    sp->feed_built_ms = time_mono_ms() - job->t0;
    feed_job_free(job);
    sp->feed_job = NULL;
    feed_publish(snap);
    sp->feed_builds++;
    log_info("peer %s: router given %zu learned area%s and %zu content unit%s from %zu target%s (%lld ms)", sp->id,
             na, na == 1 ? "" : "s", nu, nu == 1 ? "" : "s", nt, nt == 1 ? "" : "s", (long long)sp->feed_built_ms);
    if (sp->feed_dirty)
        loop_timer_start(&sp->feed_timer, sp->feed_delay_ms);
}

static void feed_fire(struct loop_timer *t)
{
    struct speaker *sp = (struct speaker *)((char *)t - offsetof(struct speaker, feed_timer));
    /* while a build runs, its end looks at feed_dirty */
    if (sp->feed_dirty && sp->feed_job == NULL)
        feed_step(sp);
}

static void feed_step_fire(struct loop_timer *t)
{
    struct speaker *sp = (struct speaker *)((char *)t - offsetof(struct speaker, feed_step_timer));
    if (sp->feed_job)
        feed_step(sp);
}

/* ---- the admin API ---------------------------------------------------------- */

static void json_route_dest(struct json *j, const struct rib_dest *d)
{
    char s[INET6_ADDRSTRLEN + 8];
    if (d->kind == PEER_R_AREA4 || d->kind == PEER_R_AREA6) {
        uint8_t a[16] = {0};
        memcpy(a, d->key, d->len);
        char h[INET6_ADDRSTRLEN];
        inet_ntop(d->kind == PEER_R_AREA4 ? AF_INET : AF_INET6, a, h, sizeof(h));
        snprintf(s, sizeof(s), "%s/%u", h, d->plen);
        json_kv_str(j, "dest", s);
        json_kv_str(j, "kind", d->kind == PEER_R_AREA4 ? "ipv4" : "ipv6");
    } else {
        json_kv_str(j, "dest", (const char *)d->key);
        json_kv_str(j, "kind", d->kind == PEER_R_PUBLISHER ? "publisher" : "uri");
    }
}

static void json_route(struct json *j, const struct speaker *sp, const struct rib_route *rt)
{
    const struct rib_attrs *at = rt->attrs;
    json_obj_begin(j);
    json_kv_str(j, "from", rt->peer == RIB_LOCAL ? "local" : rib_peer_id(sp->rib, rt->peer));
    json_key(j, "path");
    json_arr_begin(j);
    for (unsigned i = 0; i < at->npath; i++)
        json_str(j, at->path[i]);
    json_arr_end(j);
    json_key(j, "handoff");
    json_arr_begin(j);
    static const char *const mn[] = {"?", "cname", "ns", "ecs", "http"};
    for (unsigned i = 0; i < at->nhandoff; i++) {
        json_obj_begin(j);
        json_kv_str(j, "method", at->handoff[i].method <= 4 ? mn[at->handoff[i].method] : "?");
        json_kv_str(j, "target", at->handoff[i].target);
        json_obj_end(j);
    }
    json_arr_end(j);
    if (rt->peer != RIB_LOCAL)
        json_kv_int(j, "local_pref", at->local_pref);
    if (at->authoritative)
        json_kv_str(j, "authoritative", at->authoritative);
    if (at->has_metrics) {
        if (at->load != UINT32_MAX)
            json_kv_int(j, "load", at->load);
        if (at->capacity != UINT32_MAX)
            json_kv_int(j, "capacity", at->capacity);
        if (at->cost != UINT32_MAX)
            json_kv_int(j, "cost", at->cost);
    }
    json_obj_end(j);
}

static void json_dest(struct json *j, const struct speaker *sp, const struct rib_dest *d)
{
    json_obj_begin(j);
    json_route_dest(j, d);
    enum rib_reason why = RIB_WHY_ONLY;
    const struct rib_route *b = rib_best(d, &why);
    json_kv_str(j, "reason", rib_reason_name(why));
    json_key(j, "routes");
    json_arr_begin(j);
    for (const struct rib_route *r = b; r; r = r->next)
        json_route(j, sp, r);
    json_arr_end(j);
    json_obj_end(j);
}

static int want_text(const struct admin_req *req)
{
    char f[16];
    return admin_param(req->query, "format", f, sizeof(f)) == 0 && strcmp(f, "text") == 0;
}

static void text_dest_name(const struct rib_dest *d, char *s, size_t n)
{
    if (d->kind == PEER_R_AREA4 || d->kind == PEER_R_AREA6) {
        uint8_t a[16] = {0};
        char h[INET6_ADDRSTRLEN];
        memcpy(a, d->key, d->len);
        inet_ntop(d->kind == PEER_R_AREA4 ? AF_INET : AF_INET6, a, h, sizeof(h));
        snprintf(s, n, "%s/%u", h, d->plen);
    } else {
        snprintf(s, n, "%s", (const char *)d->key);
    }
}

/* birdc-like: the destination, then one line per candidate, the best marked. */
static void text_dest(struct buf *out, const struct speaker *sp, const struct rib_dest *d)
{
    static const char *const mn[] = {"?", "cname", "ns", "ecs", "http"};
    static const char *const kn[] = {"?", "ipv4", "ipv6", "publisher", "uri"};
    char name[PEER_MAX_URI + 64];
    text_dest_name(d, name, sizeof(name));
    enum rib_reason why = RIB_WHY_ONLY;
    const struct rib_route *b = rib_best(d, &why);
    buf_printf(out, "%-24s %s\n", name, d->kind <= 4 ? kn[d->kind] : "?");
    for (const struct rib_route *r = b; r; r = r->next) {
        const struct rib_attrs *at = r->attrs;
        buf_printf(out, "  %s from %-10s path [", r == b ? "*" : " ",
                   r->peer == RIB_LOCAL ? "local" : rib_peer_id(sp->rib, r->peer));
        for (unsigned i = 0; i < at->npath; i++)
            buf_printf(out, "%s%s", i ? " " : "", at->path[i]);
        buf_puts(out, "]");
        if (r->peer != RIB_LOCAL)
            buf_printf(out, " pref %u", at->local_pref);
        if (at->has_metrics && at->cost != UINT32_MAX)
            buf_printf(out, " cost %u", at->cost);
        if (at->has_metrics && at->load != UINT32_MAX)
            buf_printf(out, " load %u", at->load);
        for (unsigned i = 0; i < at->nhandoff; i++)
            buf_printf(out, "%s%s %s", i ? ", " : " handoff ", at->handoff[i].method <= 4 ? mn[at->handoff[i].method] : "?",
                       at->handoff[i].target);
        if (r == b)
            buf_printf(out, " (best: %s)", rib_reason_name(why));
        buf_puts(out, "\n");
    }
}

static int api_peers(void *arg, const struct admin_req *req, struct buf *out, const char **ctype)
{
    struct speaker *sp = arg;
    if (want_text(req)) {
        *ctype = "text/plain; charset=utf-8";
        buf_printf(out, "speaker %s: %zu destinations, %zu attribute sets, %zu KiB\n", sp->id,
                   rib_dest_count(sp->rib), rib_attrs_count(sp->rib), rib_memory(sp->rib) / 1024);
        buf_printf(out, "%-16s %-22s %-12s %8s %8s %9s %7s  %s\n", "Neighbor", "Address", "State", "Routes", "Best",
                   "Rejected", "Looped", "Info");
        for (struct nbr *n = sp->nbrs; n; n = n->next) {
            char a[64];
            struct rib_peer_stats st;
            if (n->removed)
                continue;
            rib_peer_stats(sp->rib, n->rib_idx, &st);
            buf_printf(out, "%-16s %-22s %-12s %8zu %8zu %9llu %7llu  %s\n", n->id,
                       n->has_addr ? net_addr_str(&n->addr, a, sizeof(a)) : "passive",
                       n->session ? "Established" : n->state_text, st.routes, st.best,
                       (unsigned long long)(st.rejected + st.refused_type), (unsigned long long)st.looped,
                       n->session ? (n->eor_received ? "End-of-RIB received" : "initial table in progress")
                                  : n->last_error);
        }
        return 200;
    }
    struct json j;
    json_init(&j, out);
    json_obj_begin(&j);
    json_kv_str(&j, "cdn", sp->id);
    json_kv_int(&j, "destinations", (int64_t)rib_dest_count(sp->rib));
    json_kv_int(&j, "attribute_sets", (int64_t)rib_attrs_count(sp->rib));
    json_kv_int(&j, "rib_bytes", (int64_t)rib_memory(sp->rib));
    json_key(&j, "feed");
    json_obj_begin(&j);
    json_kv_int(&j, "builds", (int64_t)sp->feed_builds);
    json_kv_int(&j, "build_ms", sp->feed_built_ms);
    json_kv_int(&j, "pending", sp->feed_dirty);
    json_obj_end(&j);
    json_key(&j, "neighbors");
    json_arr_begin(&j);
    for (struct nbr *n = sp->nbrs; n; n = n->next) {
        char a[64];
        struct rib_peer_stats st;
        if (n->removed)
            continue; /* gone from the config at a reload */
        rib_peer_stats(sp->rib, n->rib_idx, &st);
        json_obj_begin(&j);
        json_kv_str(&j, "cdn", n->id);
        json_kv_str(&j, "address", n->has_addr ? net_addr_str(&n->addr, a, sizeof(a)) : "passive");
        json_kv_str(&j, "state", n->session ? "Established" : n->state_text);
        if (n->session) {
            json_kv_int(&j, "up_since_ms", n->up_since_ms);
            json_kv_int(&j, "hold_time", n->session->fsm.hold_time);
            json_kv_str(&j, "direction", n->session->outbound ? "outbound" : "inbound");
            json_kv_str(&j, "remote", n->session->remote);
        }
        json_kv_int(&j, "established", (int64_t)n->established);
        json_kv_int(&j, "connections", (int64_t)pr__nbr_nconns(n));
        json_kv_int(&j, "routes", (int64_t)st.routes);
        json_kv_int(&j, "best", (int64_t)st.best);
        json_kv_int(&j, "announced", (int64_t)st.announced);
        json_kv_int(&j, "withdrawn", (int64_t)st.withdrawn);
        json_kv_int(&j, "rejected", (int64_t)st.rejected);
        json_kv_int(&j, "looped", (int64_t)st.looped);
        json_kv_int(&j, "refused_type", (int64_t)st.refused_type);
        json_kv_int(&j, "updates_in", (int64_t)n->updates_in);
        json_kv_int(&j, "updates_out", (int64_t)n->updates_out);
        json_key(&j, "end_of_rib");
        json_bool(&j, n->eor_received);
        json_kv_str(&j, "last_error", n->last_error);
        json_kv_int(&j, "connect_failures", (int64_t)n->failures);
        json_obj_end(&j);
    }
    json_arr_end(&j);
    json_obj_end(&j);
    return 200;
}

struct list_ctx {
    const struct speaker *sp;
    struct json *j;
    struct buf *text;             /* text output instead of JSON */
    long limit, shown, total;
    const char *publisher;
};

static int list_one(void *arg, const struct rib_dest *d)
{
    struct list_ctx *x = arg;
    if (x->publisher) {
        if (d->kind != PEER_R_PUBLISHER && d->kind != PEER_R_URI)
            return 0;
        const char *t = (const char *)d->key;
        if (d->kind == PEER_R_URI) {
            const char *h = strstr(t, "://");
            t = h ? h + 3 : t;
            size_t pl = strlen(x->publisher);
            if (strncmp(t, x->publisher, pl) != 0 || (t[pl] && t[pl] != '/' && t[pl] != ':'))
                return 0;
        } else if (strcmp(t, x->publisher) != 0) {
            return 0;
        }
    }
    x->total++;
    if (x->shown < x->limit) {
        if (x->text)
            text_dest(x->text, x->sp, d);
        else
            json_dest(x->j, x->sp, d);
        x->shown++;
    }
    return 0;
}

static int api_routes(void *arg, const struct admin_req *req, struct buf *out, const char **ctype)
{
    struct speaker *sp = arg;
    char q[PEER_MAX_URI + 1] = "", lim[16] = "";
    struct json j;
    struct buf text;
    int as_text = want_text(req);
    buf_init(&text);
    json_init(&j, out);
    long limit = 100;
    if (admin_param(req->query, "limit", lim, sizeof(lim)) == 0)
        limit = strtol(lim, NULL, 10);
    if (limit < 0)
        limit = 0;
    json_obj_begin(&j);
    json_key(&j, "routes");
    json_arr_begin(&j);
    struct list_ctx x = {.sp = sp, .j = &j, .limit = limit, .text = as_text ? &text : NULL};
    if (admin_param(req->query, "dest", q, sizeof(q)) == 0 && q[0]) {
        struct peer_route r;
        const struct rib_dest *d = NULL;
        if (peer_parse_prefix(q, &r) == 0) {
            /* an exact prefix, else the longest match of an address */
            d = rib_find(sp->rib, &r);
            if (d == NULL && strchr(q, '/') == NULL)
                d = rib_match(sp->rib, r.kind == PEER_R_AREA4 ? 4 : 6, r.addr);
        } else if (peer_uri_valid(q)) {
            r = (struct peer_route){.kind = PEER_R_URI, .text = q, .len = (uint16_t)strlen(q)};
            d = rib_find(sp->rib, &r);
        } else if (peer_host_valid(q)) {
            x.publisher = q;
        } else {
            buf_fini(&text);
            json_arr_end(&j);
            json_kv_str(&j, "error", "dest: not a prefix, address, host name or URI prefix");
            json_obj_end(&j);
            return 400;
        }
        if (x.publisher) {
            rib_foreach(sp->rib, list_one, &x);
        } else if (d) {
            list_one(&x, d);
        }
    } else {
        rib_foreach(sp->rib, list_one, &x);
    }
    json_arr_end(&j);
    json_kv_int(&j, "total", x.total);
    json_kv_int(&j, "shown", x.shown);
    json_obj_end(&j);
    if (as_text) {
        buf_reset(out);
        buf_append(out, text.data, text.len);
        if (x.shown < x.total)
            buf_printf(out, "(%ld of %ld shown; give a prefix, address, publisher or URI)\n", x.shown, x.total);
        else if (x.total == 0)
            buf_puts(out, "no route\n");
        *ctype = "text/plain; charset=utf-8";
    }
    buf_fini(&text);
    return 200;
}

static int64_t gauge_loc_rib(void *arg)
{
    struct speaker *sp = arg;
    return sp->rib ? (int64_t)rib_dest_count(sp->rib) : 0;
}

/* ---- the role ----------------------------------------------------------- */

static void originate_all(struct speaker *sp)
{
    size_t pos = 0;
    struct peer_route r;
    char tmp[PEER_MAX_URI + 1];
    while (key_next(&sp->originated, &pos, &r)) {
        if (r.text) {
            memcpy(tmp, r.text, r.len);
            tmp[r.len] = 0;
            r.text = tmp;
        }
        rib_originate(sp->rib, &r, &sp->origin);
    }
}

/* Stops originating what `old` held and sp->originated does not. */
static void unoriginate_gone(struct speaker *sp, const struct buf *old)
{
    /* a set of the new keys: open addressing over their offsets */
    size_t nkeys = 0, pos = 0;
    struct peer_route r;
    while (key_next(&sp->originated, &pos, &r))
        nkeys++;
    size_t cap = 16;
    while (cap < nkeys * 2)
        cap *= 2;
    size_t *slot = xmalloc(cap * sizeof(*slot));
    for (size_t i = 0; i < cap; i++)
        slot[i] = SIZE_MAX;
    pos = 0;
    for (size_t at = 0; key_next(&sp->originated, &pos, &r); at = pos) {
        size_t h = hash_fnv1a(sp->originated.data + at, pos - at) & (cap - 1);
        while (slot[h] != SIZE_MAX)
            h = (h + 1) & (cap - 1);
        slot[h] = at;
    }
    char t[PEER_MAX_URI + 1];
    pos = 0;
    for (size_t at = 0; key_next(old, &pos, &r); at = pos) {
        size_t len = pos - at, h = hash_fnv1a(old->data + at, len) & (cap - 1);
        int found = 0;
        for (; slot[h] != SIZE_MAX && !found; h = (h + 1) & (cap - 1)) {
            size_t p2 = slot[h];
            struct peer_route r2;
            key_next(&sp->originated, &p2, &r2);
            found = p2 - slot[h] == len && memcmp(sp->originated.data + slot[h], old->data + at, len) == 0;
        }
        if (found)
            continue;
        if (r.text) {
            memcpy(t, r.text, r.len);
            t[r.len] = 0;
            r.text = t;
        }
        rib_unoriginate(sp->rib, &r);
    }
    free(slot);
}

static int peer_start(void *inst, const struct role_env *env)
{
    struct speaker *sp = inst;
    sp->loop = env->main_loop;
    /* every timer first: destroy stops them all, whatever fails below */
    loop_timer_init(sp->loop, &sp->feed_timer, feed_fire);
    loop_timer_init(sp->loop, &sp->feed_step_timer, feed_step_fire);
    for (struct nbr *n = sp->nbrs; n; n = n->next)
        pr__nbr_init(n);
    sp->rib = rib_create(sp->id, on_change, sp);
    for (struct nbr *n = sp->nbrs; n; n = n->next) {
        n->rib_idx = rib_peer_add(sp->rib, n->id, &n->policy);
        if (n->rib_idx < 0) {
            log_error("peer: too many neighbors");
            return -1;
        }
    }
    sp->m_sessions_up = metric_gauge("ferry_peer_sessions_established", NULL, "Peering sessions in Established.");
    sp->m_notif_sent = metric_counter("ferry_peer_notifications_total", "dir=\"sent\"", "NOTIFICATIONs, by direction.");
    sp->m_notif_recv = metric_counter("ferry_peer_notifications_total", "dir=\"received\"", "NOTIFICATIONs, by direction.");
    sp->m_updates_in = metric_counter("ferry_peer_updates_total", "dir=\"in\"", "UPDATE messages, by direction.");
    sp->m_updates_out = metric_counter("ferry_peer_updates_total", "dir=\"out\"", "UPDATE messages, by direction.");
    sp->m_routes_looped = metric_counter("ferry_peer_routes_looped_total", NULL,
                                         "Routes dropped because our id was on their PATH.");
    sp->m_routes_rejected = metric_counter("ferry_peer_routes_rejected_total", NULL,
                                           "Routes refused by import policy or content type.");
    sp->m_refused = metric_counter("ferry_peer_connections_refused_total", NULL,
                                   "Connections refused: TLS, ALPN or certificate pin.");
    metric_gauge_fn("ferry_peer_loc_rib_destinations", NULL, "Destinations in the Loc-RIB (ours and learned).",
                    gauge_loc_rib, sp);
    originate_all(sp);
    if (pr__listen(sp) < 0)
        return -1;
    feed_set_publisher(1);
    if (env->admin) {
        admin_route(env->admin, "GET", "/peers", api_peers, sp);
        admin_route(env->admin, "GET", "/routes", api_routes, sp);
    }
    size_t nn = 0;
    for (struct nbr *n = sp->nbrs; n; n = n->next, nn++)
        if (n->has_addr)
            pr__nbr_arm_retry(n);
    log_info("peer %s: %zu neighbor%s, %zu route%s of our own", sp->id, nn, nn == 1 ? "" : "s",
             rib_dest_count(sp->rib), rib_dest_count(sp->rib) == 1 ? "" : "s");
    /* an empty snapshot at once, so the router knows learned routes are (not yet) there;
     * with no router in this ferryd there is nobody to build snapshots for */
    sp->feed_dirty = 1;
    if (feed_has_subscribers())
        loop_timer_start(&sp->feed_timer, 0);
    return 0;
}

static int rule_equal(const struct rib_rule *a, const struct rib_rule *b)
{
    return a->accept == b->accept && a->kind == b->kind && a->plen == b->plen && a->le == b->le &&
           memcmp(a->addr, b->addr, sizeof(a->addr)) == 0 &&
           ((a->text == NULL && b->text == NULL) || (a->text && b->text && strcmp(a->text, b->text) == 0));
}

/* Same rules (and, unless rules_only, the same local pref, limit and content types)? */
static int policy_equal(const struct rib_policy *a, const struct rib_policy *b, int rules_only)
{
    if (a->nrules != b->nrules)
        return 0;
    if (!rules_only && (a->local_pref != b->local_pref || a->max_routes != b->max_routes ||
                        a->content_types != b->content_types))
        return 0;
    for (size_t i = 0; i < a->nrules; i++)
        if (!rule_equal(&a->rules[i], &b->rules[i]))
            return 0;
    return 1;
}

/* Whether the neighbor has a connection (in any phase). */
static int nbr_connected(const struct nbr *n)
{
    for (unsigned i = 0; i < PR_MAX_CONNS; i++)
        if (n->conns[i])
            return 1;
    return 0;
}

static int peer_reload(void *inst, void *fresh_inst, struct conf *c)
{
    struct speaker *sp = inst, *f = fresh_inst;
    (void)c;
    /* our own routes: add the new ones first (equal ones change nothing), then drop the gone */
    sp->origin = f->origin;
    memcpy(sp->origin_text, f->origin_text, sizeof(sp->origin_text));
    for (unsigned i = 0; i < sp->origin.nhandoff; i++)
        sp->origin.handoff[i].target = sp->origin_text[i];
    memcpy(sp->origin_auth, f->origin_auth, sizeof(sp->origin_auth));
    if (sp->origin.authoritative)
        sp->origin.authoritative = sp->origin_auth;
    struct buf old = sp->originated;
    sp->originated = f->originated;
    buf_init(&f->originated);
    originate_all(sp);
    unoriginate_gone(sp, &old);
    buf_fini(&old);
    /* the certificate and key may have changed: new connections use the new ones */
    SSL_CTX *t;
    t = sp->server_ctx, sp->server_ctx = f->server_ctx, f->server_ctx = t;
    t = sp->client_ctx, sp->client_ctx = f->client_ctx, f->client_ctx = t;
    /* Session parameters: what our OPEN offers. Sessions that would open
     * differently now are reset (cease 6) and come back with them. */
    int open_changed = sp->routing_types != f->routing_types || sp->content_types != f->content_types ||
                       sp->families != f->families || sp->max_message != f->max_message;
    sp->routing_types = f->routing_types;
    sp->content_types = f->content_types;
    sp->families = f->families;
    sp->max_message = f->max_message;
    sp->hold_time = f->hold_time;
    sp->retry_min_ms = f->retry_min_ms;
    sp->retry_max_ms = f->retry_max_ms;
    sp->connect_timeout_ms = f->connect_timeout_ms;
    sp->feed_delay_ms = f->feed_delay_ms;
    /* neighbors: policies of the ones kept; new ones added; removed ones stopped */
    for (struct nbr *n = sp->nbrs; n; n = n->next) {
        struct nbr *m;
        for (m = f->nbrs; m; m = m->next)
            if (strcmp(m->id, n->id) == 0)
                break;
        if (m == NULL) {
            log_info("peer %s: neighbor %s removed", sp->id, n->id);
            n->removed = 1;
            pr__nbr_stop(n, PEER_SUB_CONFIG);
            continue;
        }
        int import_changed = !policy_equal(&n->policy, &m->policy, 0);
        int export_changed = !policy_equal(&n->export_pol, &m->export_pol, 1) ||
                             n->policy.transit != m->policy.transit;
        rib_policy_free(&n->policy);
        n->policy = m->policy;
        memset(&m->policy, 0, sizeof(m->policy));
        rib_peer_policy(sp->rib, n->rib_idx, &n->policy);
        int transit_changed = n->policy.transit != m->policy.transit;
        struct rib_policy old_export = n->export_pol;
        n->export_pol = m->export_pol;
        memset(&m->export_pol, 0, sizeof(m->export_pol));
        /* what this peer may be sent changed: send what the change changes
         * (a dump in progress, or a change of transit, takes the whole table) */
        if (n->session && export_changed && !n->dump_active && !transit_changed &&
            !n->session->closed) {
            send_dump_ex(n, n->session, 0, 1, &old_export);
        } else {
            rib_policy_free(&old_export);
            if (n->session && export_changed)
                send_dump(n, n->session, 0, 1);
        }
        /* what we accept changed: routes refused before may now be wanted; ask again */
        if (n->session && import_changed && n->session->fsm.route_refresh) {
            for (uint8_t fam = 1; fam <= 2; fam++) {
                if (n->session->fsm.families & (fam == 1 ? PEER_FAM_AREAS : PEER_FAM_CONTENT)) {
                    peer_encode_route_refresh(&n->session->out, fam);
                    n->session->fsm.msgs_out++;
                }
            }
            log_info("peer %s: import policy changed: route refresh sent", n->id);
            pr__conn_send(n->session);
        }
        X509_STORE_free(n->ca);
        n->ca = m->ca;
        m->ca = NULL;
        n->has_fp = m->has_fp;
        memcpy(n->fp, m->fp, sizeof(n->fp));
        int reset = open_changed || n->hold_time != m->hold_time;
        n->hold_time = m->hold_time;
        int moved = n->has_addr != m->has_addr || memcmp(&n->addr, &m->addr, sizeof(n->addr)) != 0;
        n->has_addr = m->has_addr;
        n->addr = m->addr;
        if (reset && nbr_connected(n)) {
            log_info("peer %s: session parameters changed: resetting the session", n->id);
            pr__nbr_reset(n, PEER_SUB_CONFIG);
        } else if (moved && n->session == NULL && n->has_addr) {
            pr__nbr_arm_retry(n);
        }
    }
    for (struct nbr **pm = &f->nbrs; *pm;) {
        struct nbr *m = *pm;
        struct nbr *n;
        for (n = sp->nbrs; n; n = n->next)
            if (strcmp(m->id, n->id) == 0)
                break;
        if (n) {
            pm = &m->next;
            continue;
        }
        *pm = m->next;
        m->next = NULL;
        m->sp = sp;
        pr__nbr_init(m);
        m->rib_idx = rib_peer_add(sp->rib, m->id, &m->policy);
        struct nbr **tail = &sp->nbrs;
        while (*tail)
            tail = &(*tail)->next;
        *tail = m;
        log_info("peer %s: neighbor %s added", sp->id, m->id);
        if (m->has_addr)
            pr__nbr_arm_retry(m);
    }
    log_info("peer %s: reloaded", sp->id);
    return 0;
}

static void peer_drain(void *inst, void (*done)(void *), void *arg)
{
    struct speaker *sp = inst;
    sp->stopping = 1;
    pr__unlisten(sp);
    for (struct nbr *n = sp->nbrs; n; n = n->next)
        pr__nbr_stop(n, PEER_SUB_SHUTDOWN);
    loop_timer_stop(&sp->feed_timer);
    loop_timer_stop(&sp->feed_step_timer);
    feed_job_free(sp->feed_job);
    sp->feed_job = NULL;
    feed_publish(NULL);
    feed_set_publisher(0);
    loop_post(sp->loop, done, arg);
}

static void nbr_free(struct nbr *n)
{
    dump_diff_end(n);
    rib_policy_free(&n->policy);
    rib_policy_free(&n->export_pol);
    X509_STORE_free(n->ca);
    buf_fini(&n->pending);
    free(n);
}

static void speaker_free(struct speaker *sp)
{
    struct nbr *n = sp->nbrs;
    while (n) {
        struct nbr *next = n->next;
        nbr_free(n);
        n = next;
    }
    feed_job_free(sp->feed_job);
    buf_fini(&sp->originated);
    free(sp->listen);
    free(sp->listeners);
    if (sp->rib)
        rib_destroy(sp->rib);
    SSL_CTX_free(sp->server_ctx);
    SSL_CTX_free(sp->client_ctx);
    free(sp);
}

static void peer_destroy(void *inst)
{
    struct speaker *sp = inst;
    if (sp == NULL)
        return;
    sp->stopping = 1;
    if (sp->loop) {
        for (struct nbr *n = sp->nbrs; n; n = n->next) {
            pr__nbr_stop(n, PEER_SUB_SHUTDOWN);
            loop_timer_stop(&n->retry);
        }
        loop_timer_stop(&sp->feed_timer);
        loop_timer_stop(&sp->feed_step_timer);
        pr__unlisten(sp);
        metric_unbind(sp);
    }
    speaker_free(sp);
}

const struct role_ops peer_role = {
    .name = "peer",
    .schema = peer_opts,
    .create = peer_create,
    .start = peer_start,
    .reload = peer_reload,
    .drain = peer_drain,
    .destroy = peer_destroy,
};
