/*
 * router/settings -- builds the router's settings snapshot from its config
 * block: zones with their SOA, NS and static records, the names answered
 * by decision (services), the nodes and peers, and the area table from
 * `area` lines and area files. Every problem is a file:line error; a
 * snapshot is only returned when there were none.
 *
 * Names live in one open-addressing table keyed by the lowercased wire
 * name. Every ancestor of a configured name down to its zone's apex is in
 * the table too (an empty non-terminal, RFC 8020 and RFC 4592 section
 * 2.2.2), so "no such name" and "name without that type" are told apart by
 * one lookup.
 *
 * It also makes the derived snapshots that join the static settings with
 * the routes learned from peer CDNs (router/learned.c; see internal.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/log.h"
#include "lib/util.h"
#include "router/internal.h"

#define AREA_FILE_MAX (INT64_C(1) << 31) /* bytes of one area file */

static uint64_t name_hash(const uint8_t *lname, size_t len)
{
    return hash_fnv1a(lname, len);
}

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > RT_NAME_MAX)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
            return 0;
    return 1;
}

/* Name table. */

static struct rt_name **slot_of(const struct rt_settings *s, const uint8_t *lname, size_t len)
{
    size_t mask = s->names_cap - 1;
    for (size_t i = (size_t)name_hash(lname, len) & mask;; i = (i + 1) & mask) {
        struct rt_name *n = s->names[i];
        if (n == NULL || (n->len == len && memcmp(n->name, lname, len) == 0))
            return &s->names[i];
    }
}

const struct rt_name *rt__name_find(const struct rt_settings *s, const uint8_t *lname)
{
    return *slot_of(s, lname, dns_name_len(lname));
}

const struct rt_name *rt__name_find_len(const struct rt_settings *s, const uint8_t *lname, size_t len)
{
    return *slot_of(s, lname, len);
}

static void names_grow(struct rt_settings *s)
{
    struct rt_name **old = s->names;
    size_t oldcap = s->names_cap;
    s->names_cap = oldcap ? oldcap * 2 : 64;
    s->names = xcalloc(s->names_cap, sizeof(*s->names));
    for (size_t i = 0; i < oldcap; i++)
        if (old[i])
            *slot_of(s, old[i]->name, old[i]->len) = old[i];
    free(old);
}

/* The entry for lname, created (with its ancestors up to the zone apex) if needed. */
static struct rt_name *name_get(struct rt_settings *s, struct rt_zone *z, const uint8_t *lname)
{
    if ((s->nnames + 1) * 2 > s->names_cap)
        names_grow(s);
    size_t len = dns_name_len(lname);
    struct rt_name **slot = slot_of(s, lname, len);
    if (*slot)
        return *slot;
    struct rt_name *n = xcalloc(1, sizeof(*n));
    memcpy(n->name, lname, len);
    n->len = (uint8_t)len;
    n->zone = z;
    *slot = n;
    s->nnames++;
    if (!dns_name_equal(lname, z->apex))
        name_get(s, z, lname + 1 + lname[0]); /* the parent: an empty non-terminal at worst */
    return n;
}

const struct rt_zone *rt__zone_find(const struct rt_settings *s, const uint8_t *lname, int *depth)
{
    int d = 0;
    size_t len = dns_name_len(lname);
    for (const uint8_t *p = lname; len; len -= 1u + p[0], p += 1 + p[0], d++) {
        const struct rt_name *n = *slot_of(s, p, len);
        if (n && n->zone->apex_name == n) {
            if (depth)
                *depth = d;
            return n->zone;
        }
        if (p[0] == 0)
            return NULL;
    }
    return NULL;
}

/* Nodes and peers. */

void rt__node_unref(struct rt_node *n)
{
    if (n && atomic_fetch_sub(&n->refs, 1) == 1)
        free(n);
}

void rt__peer_unref(struct rt_peer *p)
{
    if (p && atomic_fetch_sub(&p->refs, 1) == 1)
        free(p);
}

static int parse_host(const char *text, struct net_addr *out)
{
    return net_addr_from(text, 0, out);
}

/*
 * A name in zone z to lowercased wire form: "@" is the apex; a name with a
 * final dot, or one that ends with the zone's name, is absolute; any other
 * is relative to the zone.
 */
static int zone_name(const struct rt_zone *z, const char *text, uint8_t out[DNS_MAX_NAME])
{
    size_t tl = strlen(text);
    if (strcmp(text, "@") == 0) {
        memcpy(out, z->apex, dns_name_len(z->apex));
        return 0;
    }
    if (tl > 0 && text[tl - 1] == '.')
        return dns_name_from_text(out, text) < 0 ? -1 : 0;
    if (dns_name_from_text(out, text) >= 0 && dns_name_under(out, z->apex) >= 0)
        return 0;
    char full[2 * DNS_MAX_NAME + 2];
    if (snprintf(full, sizeof(full), "%s.%s", text, z->text) >= (int)sizeof(full))
        return -1;
    return dns_name_from_text(out, full) < 0 ? -1 : 0;
}

static struct rt_rr *rr_new(uint16_t type, uint32_t ttl, const void *rdata, size_t rdlen)
{
    struct rt_rr *rr = xmalloc(sizeof(*rr) + rdlen);
    rr->next = NULL;
    rr->type = type;
    rr->ttl = ttl;
    rr->rdlen = (uint16_t)rdlen;
    memcpy(rr->rdata, rdata, rdlen);
    return rr;
}

static void rr_append(struct rt_name *n, struct rt_rr *rr)
{
    struct rt_rr **pp = &n->rrs;
    while (*pp)
        pp = &(*pp)->next;
    *pp = rr;
}

static int rr_has(const struct rt_name *n, uint16_t type)
{
    for (const struct rt_rr *r = n->rrs; r; r = r->next)
        if (r->type == type)
            return 1;
    return 0;
}

static const char *const record_types = "A, AAAA, CNAME, NS, TXT, MX";

/* `record NAME TYPE VALUE...` */
static int parse_record(struct conf *c, const struct conf_node *n, struct rt_settings *s,
                        struct rt_zone *z, uint32_t ttl)
{
    uint8_t owner[DNS_MAX_NAME], rdata[1024];
    size_t rdlen = 0;
    uint16_t type;
    const char *t = n->args[1];

    if (zone_name(z, n->args[0], owner) < 0 || dns_name_under(owner, z->apex) < 0) {
        conf_error(c, n, "record: \"%s\" is not a name in zone %s", n->args[0], z->text);
        return 1;
    }
    if (strcasecmp(t, "A") == 0 || strcasecmp(t, "AAAA") == 0) {
        int v6 = strcasecmp(t, "AAAA") == 0;
        type = v6 ? DNS_T_AAAA : DNS_T_A;
        if (n->nargs != 3 || inet_pton(v6 ? AF_INET6 : AF_INET, n->args[2], rdata) != 1) {
            conf_error(c, n, "record %s %s: needs one IPv%d address", n->args[0], t, v6 ? 6 : 4);
            return 1;
        }
        rdlen = v6 ? 16 : 4;
    } else if (strcasecmp(t, "CNAME") == 0 || strcasecmp(t, "NS") == 0) {
        type = strcasecmp(t, "NS") == 0 ? DNS_T_NS : DNS_T_CNAME;
        if (n->nargs != 3 || zone_name(z, n->args[2], rdata) < 0) {
            conf_error(c, n, "record %s %s: needs one host name", n->args[0], t);
            return 1;
        }
        rdlen = dns_name_len(rdata);
    } else if (strcasecmp(t, "MX") == 0) {
        type = DNS_T_MX;
        int64_t pref;
        if (n->nargs != 4 || conf_parse_int(n->args[2], &pref) < 0 || pref < 0 || pref > 65535 ||
            zone_name(z, n->args[3], rdata + 2) < 0) {
            conf_error(c, n, "record %s MX: needs a preference (0-65535) and a host name", n->args[0]);
            return 1;
        }
        rdata[0] = (uint8_t)(pref >> 8);
        rdata[1] = (uint8_t)pref;
        rdlen = 2 + dns_name_len(rdata + 2);
    } else if (strcasecmp(t, "TXT") == 0) {
        type = DNS_T_TXT;
        if (n->nargs < 3) {
            conf_error(c, n, "record %s TXT: needs at least one string", n->args[0]);
            return 1;
        }
        for (int i = 2; i < n->nargs; i++) {
            size_t l = strlen(n->args[i]);
            if (l > 255 || rdlen + 1 + l > sizeof(rdata)) {
                conf_error(c, n, "record %s TXT: strings are at most 255 bytes, %zu in all",
                           n->args[0], sizeof(rdata));
                return 1;
            }
            rdata[rdlen++] = (uint8_t)l;
            memcpy(rdata + rdlen, n->args[i], l);
            rdlen += l;
        }
    } else {
        conf_error(c, n, "record %s: type \"%s\" is not one of %s", n->args[0], t, record_types);
        return 1;
    }
    struct rt_name *nm = name_get(s, z, owner);
    if (nm->svc || (type == DNS_T_CNAME && nm->rrs) || rr_has(nm, DNS_T_CNAME)) {
        conf_error(c, n, "record %s: a CNAME or service name can have no other data (RFC 1034 3.6.2)",
                   n->args[0]);
        return 1;
    }
    if (type == DNS_T_CNAME && nm == z->apex_name) {
        conf_error(c, n, "record %s: the zone apex cannot be a CNAME", n->args[0]);
        return 1;
    }
    if (type == DNS_T_NS && nm != z->apex_name) {
        nm->delegation = 1;
        z->has_delegations = 1;
    }
    rr_append(nm, rr_new(type, ttl, rdata, rdlen));
    return 0;
}

/* `service NAME [set SET] [ttl T] [path PREFIX SET]...` */
static int parse_service(struct conf *c, const struct conf_node *n, struct rt_settings *s,
                         struct rt_zone *z)
{
    uint8_t owner[DNS_MAX_NAME];
    if (zone_name(z, n->args[0], owner) < 0 || dns_name_under(owner, z->apex) < 0) {
        conf_error(c, n, "service: \"%s\" is not a name in zone %s", n->args[0], z->text);
        return 1;
    }
    struct rt_service *svc = xcalloc(1, sizeof(*svc));
    svc->ttl = s->ttl;
    int depth = dns_name_under(owner, z->apex);
    /* the labels in front of the apex, as a wire name of their own */
    size_t off = 0;
    const uint8_t *p = owner;
    for (int i = 0; i < depth; i++) {
        memcpy(svc->label + off, p, 1 + p[0]);
        off += 1 + p[0];
        p += 1 + p[0];
    }
    svc->label[off] = 0;
    for (int i = 1; i < n->nargs; i++) {
        const char *k = n->args[i];
        if (strcmp(k, "set") == 0 && i + 1 < n->nargs) {
            if (!name_ok(n->args[i + 1]))
                goto bad;
            snprintf(svc->set, sizeof(svc->set), "%s", n->args[++i]);
        } else if (strcmp(k, "ttl") == 0 && i + 1 < n->nargs) {
            int64_t ms;
            if (conf_parse_duration(n->args[++i], &ms) < 0 || ms < 0 || ms > INT64_C(86400000))
                goto bad;
            svc->ttl = (uint32_t)(ms / 1000);
        } else if (strcmp(k, "path") == 0 && i + 2 < n->nargs) {
            if (svc->npaths == RT_MAX_PATHS || n->args[i + 1][0] != '/' ||
                strlen(n->args[i + 1]) >= sizeof(svc->paths[0].prefix) || !name_ok(n->args[i + 2]))
                goto bad;
            struct rt_path_rule *r = &svc->paths[svc->npaths++];
            snprintf(r->prefix, sizeof(r->prefix), "%s", n->args[i + 1]);
            snprintf(r->set, sizeof(r->set), "%s", n->args[i + 2]);
            i += 2;
        } else {
            goto bad;
        }
    }
    struct rt_name *nm = name_get(s, z, owner);
    if (nm->rrs || nm->svc) {
        conf_error(c, n, "service %s: the name already has records or a service", n->args[0]);
        free(svc);
        return 1;
    }
    nm->svc = svc;
    return 0;
bad:
    conf_error(c, n, "service %s: expected [set SET] [ttl DURATION] [path /PREFIX SET]... "
                     "(set names: a-z 0-9 -; at most %d paths)", n->args[0], RT_MAX_PATHS);
    free(svc);
    return 1;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static int parse_zone(struct conf *c, const struct conf_node *zb, struct rt_settings *s)
{
    int errors = 0;
    struct rt_zone *z = xcalloc(1, sizeof(*z));
    if (dns_name_from_text(z->apex, zb->args[0]) < 0) {
        conf_error(c, zb, "zone: \"%s\" is not a domain name", zb->args[0]);
        free(z);
        return 1;
    }
    dns_name_to_text(z->text, sizeof(z->text), z->apex);
    for (size_t i = 0; i < s->nzones; i++) {
        if (dns_name_equal(s->zones[i]->apex, z->apex)) {
            conf_error(c, zb, "zone %s: configured twice", z->text);
            free(z);
            return 1;
        }
    }
    s->zones = xrealloc(s->zones, (s->nzones + 1) * sizeof(*s->zones));
    s->zones[s->nzones++] = z;
    uint32_t ttl = (uint32_t)(conf_int(zb, "ttl") / 1000);
    z->soa_ttl = ttl;
    z->minimum = (uint32_t)(conf_int(zb, "negative_ttl") / 1000);
    struct rt_name *apex = name_get(s, z, z->apex);
    if (apex->zone != z) {
        conf_error(c, zb, "zone %s: the name is already inside another zone's data", z->text);
        return 1;
    }
    z->apex_name = apex;

    /* NS records at the apex; the first is the SOA's MNAME. */
    uint8_t mname[DNS_MAX_NAME] = {0};
    for (const struct conf_node *n = conf_find(zb, "ns"); n; n = conf_next(n)) {
        uint8_t ns[DNS_MAX_NAME];
        if (zone_name(z, n->args[0], ns) < 0) {
            conf_error(c, n, "ns: \"%s\" is not a host name", n->args[0]);
            errors++;
            continue;
        }
        if (mname[0] == 0)
            memcpy(mname, ns, dns_name_len(ns));
        rr_append(apex, rr_new(DNS_T_NS, ttl, ns, dns_name_len(ns)));
    }
    uint8_t rname[DNS_MAX_NAME];
    const char *email = conf_str(zb, "soa_email");
    char buf[DNS_MAX_NAME + 16];
    if (email == NULL) {
        snprintf(buf, sizeof(buf), "hostmaster.%s", z->text);
        email = buf;
    }
    if (dns_name_from_text(rname, email) < 0) {
        conf_error(c, conf_find(zb, "soa_email"), "soa_email: \"%s\" is not a name (write user.domain)",
                   email);
        errors++;
        rname[0] = 0;
    }
    if (mname[0] == 0)
        memcpy(mname, z->apex, dns_name_len(z->apex));
    size_t off = 0;
    memcpy(z->soa_rdata, mname, dns_name_len(mname));
    off += dns_name_len(mname);
    memcpy(z->soa_rdata + off, rname, dns_name_len(rname));
    off += dns_name_len(rname);
    put32(z->soa_rdata + off, (uint32_t)conf_int(zb, "serial"));
    put32(z->soa_rdata + off + 4, (uint32_t)(conf_int(zb, "refresh") / 1000));
    put32(z->soa_rdata + off + 8, (uint32_t)(conf_int(zb, "retry") / 1000));
    put32(z->soa_rdata + off + 12, (uint32_t)(conf_int(zb, "expire") / 1000));
    put32(z->soa_rdata + off + 16, z->minimum);
    z->soa_len = (uint16_t)(off + 20);

    for (const struct conf_node *n = conf_find(zb, "record"); n; n = conf_next(n))
        errors += parse_record(c, n, s, z, ttl);
    for (const struct conf_node *n = conf_find(zb, "service"); n; n = conf_next(n))
        errors += parse_service(c, n, s, z);
    return errors;
}

static struct rt_node *find_node(struct rt_node **v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i]->name, name) == 0)
            return v[i];
    return NULL;
}

static struct rt_peer *find_peer(struct rt_peer **v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i]->name, name) == 0)
            return v[i];
    return NULL;
}

int rt__url_ok(const char *u)
{
    return (strncmp(u, "http://", 7) == 0 || strncmp(u, "https://", 8) == 0) && strlen(u) < 256 &&
           strpbrk(u, " \r\n\t?#") == NULL && u[strlen(u) - 1] != '/';
}

static int parse_node(struct conf *c, const struct conf_node *nb, struct rt_settings *s,
                      struct rt_node **old, size_t nold)
{
    int errors = 0;
    const char *name = nb->args[0];
    if (!name_ok(name)) {
        conf_error(c, nb, "node: name \"%s\" must be 1-%d of a-z 0-9 -", name, RT_NAME_MAX);
        return 1;
    }
    if (find_node(s->nodes, s->nnodes, name) || find_peer(s->peers, s->npeers, name)) {
        conf_error(c, nb, "node %s: the name is already used by a node or peer", name);
        return 1;
    }
    struct rt_node *n = xcalloc(1, sizeof(*n));
    snprintf(n->name, sizeof(n->name), "%s", name);
    for (const struct conf_node *a = conf_find(nb, "address"); a; a = conf_next(a)) {
        if (n->naddr == RT_MAX_ADDRS || parse_host(a->args[0], &n->addr[n->naddr]) < 0) {
            conf_error(c, a, "address: \"%s\" is not a numeric IPv4 or IPv6 address (at most %d)",
                       a->args[0], RT_MAX_ADDRS);
            errors++;
            continue;
        }
        n->naddr++;
    }
    if (n->naddr == 0 && !errors) {
        conf_error(c, nb, "node %s: give at least one address", name);
        errors++;
    }
    const struct conf_node *st = conf_find(nb, "sets");
    for (int i = 0; st && i < st->nargs; i++) {
        if (!name_ok(st->args[i]) || n->nsets == RT_MAX_SETS) {
            conf_error(c, st, "sets: \"%s\": set names are a-z 0-9 -, at most %d sets", st->args[i],
                       RT_MAX_SETS);
            errors++;
            break;
        }
        snprintf(n->sets[n->nsets++], RT_NAME_MAX + 1, "%s", st->args[i]);
    }
    n->capacity = (unsigned)conf_int(nb, "capacity");
    const char *status = conf_str(nb, "status");
    if (status) {
        if (net_addr_parse(status, &n->status) < 0) {
            conf_error(c, conf_find(nb, "status"), "status: \"%s\" is not a numeric address:port", status);
            errors++;
        }
        n->has_status = 1;
    }
    const char *redir = conf_str(nb, "redirect");
    if (redir) {
        if (!rt__url_ok(redir)) {
            conf_error(c, conf_find(nb, "redirect"),
                       "redirect: \"%s\" must be http(s)://host[:port] without a trailing / or query", redir);
            errors++;
        }
        snprintf(n->redirect, sizeof(n->redirect), "%s", redir);
    }
    if (errors) {
        free(n);
        return errors;
    }
    /* a node that survives a reload keeps its health (a fresh object, so workers
     * reading the old snapshot never see its settings change under them) */
    atomic_init(&n->refs, 1);
    atomic_init(&n->up, n->has_status ? 0 : 1);
    atomic_init(&n->load, 0);
    atomic_init(&n->last_poll_ms, 0);
    struct rt_node *o = find_node(old, nold, name);
    if (o && o->has_status == n->has_status &&
        memcmp(&o->status, &n->status, sizeof(n->status)) == 0) {
        atomic_store(&n->up, atomic_load(&o->up));
        atomic_store(&n->load, atomic_load(&o->load));
        atomic_store(&n->last_poll_ms, atomic_load(&o->last_poll_ms));
        n->fails = o->fails;
        n->oks = o->oks;
        memcpy(n->last_error, o->last_error, sizeof(n->last_error));
    }
    s->nodes = xrealloc(s->nodes, (s->nnodes + 1) * sizeof(*s->nodes));
    s->nodes[s->nnodes++] = n;
    return 0;
}

static int parse_peer(struct conf *c, const struct conf_node *pb, struct rt_settings *s)
{
    int errors = 0;
    const char *name = pb->args[0];
    if (!name_ok(name) || strlen(name) > DNS_MAX_CDN_ID) {
        conf_error(c, pb, "peer: the CDN id \"%s\" must be 1-%d of a-z 0-9 -", name, DNS_MAX_CDN_ID);
        return 1;
    }
    if (strcmp(name, s->cdn) == 0) {
        conf_error(c, pb, "peer %s: that is this router's own cdn id", name);
        return 1;
    }
    if (find_node(s->nodes, s->nnodes, name) || find_peer(s->peers, s->npeers, name)) {
        conf_error(c, pb, "peer %s: the name is already used by a node or peer", name);
        return 1;
    }
    struct rt_peer *p = xcalloc(1, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", name);
    const char *h = conf_str(pb, "handoff");
    p->handoff = strcmp(h, "ns") == 0 ? RT_H_NS : strcmp(h, "ecs") == 0 ? RT_H_ECS : RT_H_CNAME;
    const char *cn = conf_str(pb, "cname");
    if (cn && dns_name_from_text(p->cname_suffix, cn) < 0) {
        conf_error(c, conf_find(pb, "cname"), "cname: \"%s\" is not a domain name", cn);
        errors++;
    }
    const struct conf_node *ns = conf_find(pb, "ns");
    if (ns) {
        if (dns_name_from_text(p->ns_name, ns->args[0]) < 0) {
            conf_error(c, ns, "ns: \"%s\" is not a host name", ns->args[0]);
            errors++;
        }
        for (int i = 1; i < ns->nargs; i++) {
            if (p->nns_addr == RT_MAX_ADDRS || parse_host(ns->args[i], &p->ns_addr[p->nns_addr]) < 0) {
                conf_error(c, ns, "ns: glue \"%s\" is not a numeric address", ns->args[i]);
                errors++;
                continue;
            }
            p->nns_addr++;
        }
    }
    const char *es = conf_str(pb, "ecs_server");
    if (es && net_addr_parse(es, &p->ecs_server) < 0) {
        conf_error(c, conf_find(pb, "ecs_server"), "ecs_server: \"%s\" is not a numeric address:port", es);
        errors++;
    }
    const char *ez = conf_str(pb, "ecs_zone");
    if (ez && dns_name_from_text(p->ecs_zone, ez) < 0) {
        conf_error(c, conf_find(pb, "ecs_zone"), "ecs_zone: \"%s\" is not a domain name", ez);
        errors++;
    }
    const char *redir = conf_str(pb, "redirect");
    if (redir) {
        if (!rt__url_ok(redir)) {
            conf_error(c, conf_find(pb, "redirect"),
                       "redirect: \"%s\" must be http(s)://host[:port] without a trailing / or query", redir);
            errors++;
        }
        snprintf(p->redirect, sizeof(p->redirect), "%s", redir);
    }
    if (!errors && ((p->handoff == RT_H_CNAME && !cn) || (p->handoff == RT_H_NS && !ns) ||
                    (p->handoff == RT_H_ECS && !es))) {
        conf_error(c, pb, "peer %s: handoff %s needs the %s option", name, h,
                   p->handoff == RT_H_CNAME ? "cname" : p->handoff == RT_H_NS ? "ns" : "ecs_server");
        errors++;
    }
    if (errors) {
        free(p);
        return errors;
    }
    atomic_init(&p->refs, 1);
    s->peers = xrealloc(s->peers, (s->npeers + 1) * sizeof(*s->peers));
    s->peers[s->npeers++] = p;
    return 0;
}

/* Areas. */

struct area_ctx {
    struct rt_settings *s;
    struct conf *c;
    const struct conf_node *at;    /* for errors in config lines */
    const char *file;              /* for errors in area files */
    unsigned errors;
};

/* Finds or creates the area for a comma- or space-separated target list. */
static int area_resolve(void *arg, const char *targets, uint32_t *value, char *err, size_t errlen)
{
    struct area_ctx *ax = arg;
    struct rt_settings *s = ax->s;
    struct rt_area a = {0};
    char name[RT_NAME_MAX + 2];
    const char *p = targets;
    while (*p) {
        size_t l = strcspn(p, ", \t");
        if (l == 0) {
            p++;
            continue;
        }
        if (l > RT_NAME_MAX) {
            snprintf(err, errlen, "target name too long");
            return -1;
        }
        memcpy(name, p, l);
        name[l] = 0;
        p += l;
        struct rt_node *n = find_node(s->nodes, s->nnodes, name);
        struct rt_peer *pe = n ? NULL : find_peer(s->peers, s->npeers, name);
        if (!n && !pe) {
            snprintf(err, errlen, "\"%s\" is neither a node nor a peer", name);
            return -1;
        }
        if (pe) {
            if (a.peer || a.ntargets) {
                snprintf(err, errlen, "a peer must be the only target of its area");
                return -1;
            }
            a.peer = pe;
            continue;
        }
        if (a.peer) {
            snprintf(err, errlen, "a peer must be the only target of its area");
            return -1;
        }
        if (a.ntargets == RT_MAX_TARGETS) {
            snprintf(err, errlen, "at most %d targets", RT_MAX_TARGETS);
            return -1;
        }
        a.node[a.ntargets++] = n;
    }
    if (!a.peer && a.ntargets == 0) {
        snprintf(err, errlen, "no target");
        return -1;
    }
    for (size_t i = 0; i < s->nareas; i++) {
        if (memcmp(&s->areas[i], &a, sizeof(a)) == 0) {
            *value = (uint32_t)i;
            return 0;
        }
    }
    s->areas = xrealloc(s->areas, (s->nareas + 1) * sizeof(*s->areas));
    s->areas[s->nareas] = a;
    *value = (uint32_t)s->nareas++;
    return 0;
}

static void area_file_error(void *arg, int line, const char *msg)
{
    struct area_ctx *ax = arg;
    ax->errors++;
    if (ax->errors <= 20)
        conf_error(ax->c, NULL, "%s:%d: %s", ax->file, line, msg);
}

unsigned rt__area_parse(const char *text, size_t len, struct area_builder *b,
                        rt_area_resolve_cb resolve, rt_area_error_cb error, void *arg)
{
    unsigned errors = 0;
    int line = 0;
    char buf[512], err[160];
    size_t pos = 0;
    while (pos < len) {
        line++;
        const char *ls = text + pos;
        const char *nl = memchr(ls, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - ls) : len - pos;
        pos += ll + (nl != NULL);
        const char *hash = memchr(ls, '#', ll);
        if (hash)
            ll = (size_t)(hash - ls);
        while (ll && (ls[ll - 1] == ' ' || ls[ll - 1] == '\t' || ls[ll - 1] == '\r'))
            ll--;
        while (ll && (*ls == ' ' || *ls == '\t')) {
            ls++;
            ll--;
        }
        if (ll == 0)
            continue;
        if (ll >= sizeof(buf) || memchr(ls, 0, ll)) {
            error(arg, line, ll >= sizeof(buf) ? "line too long" : "NUL byte in line");
            errors++;
            continue;
        }
        memcpy(buf, ls, ll);
        buf[ll] = 0;
        char *sp = buf + strcspn(buf, " \t");
        if (*sp == 0) {
            error(arg, line, "expected PREFIX TARGET[,TARGET...]");
            errors++;
            continue;
        }
        *sp++ = 0;
        sp += strspn(sp, " \t");
        int fam;
        uint8_t addr[16];
        unsigned plen;
        uint32_t value;
        if (area_parse_prefix(buf, &fam, addr, &plen) < 0) {
            snprintf(err, sizeof(err), "\"%.60s\" is not an IPv4 or IPv6 prefix", buf);
            error(arg, line, err);
            errors++;
            continue;
        }
        if (resolve(arg, sp, &value, err, sizeof(err)) < 0) {
            error(arg, line, err);
            errors++;
            continue;
        }
        if (area_builder_add(b, fam, addr, plen, value) < 0) {
            error(arg, line, "cannot add the prefix");
            errors++;
        }
    }
    return errors;
}

static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s", strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) < 0 || st.st_size > AREA_FILE_MAX) {
        snprintf(err, errlen, "larger than %lld bytes", (long long)AREA_FILE_MAX);
        fclose(f);
        return NULL;
    }
    char *buf = xmalloc((size_t)st.st_size + 1);
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    *len = n;
    return buf;
}

static int build_areas(struct conf *c, const struct conf_node *blk, struct rt_settings *s)
{
    struct area_builder *b = area_builder_new();
    struct area_ctx ax = {.s = s, .c = c};
    unsigned errors = 0;
    char err[160];

    for (const struct conf_node *n = conf_find(blk, "area"); n; n = conf_next(n)) {
        int fam;
        uint8_t addr[16];
        unsigned plen;
        uint32_t value;
        char targets[RT_MAX_TARGETS * (RT_NAME_MAX + 1) + 1] = "";
        for (int i = 1; i < n->nargs; i++) {
            strncat(targets, n->args[i], sizeof(targets) - strlen(targets) - 2);
            strcat(targets, " ");
        }
        if (area_parse_prefix(n->args[0], &fam, addr, &plen) < 0) {
            conf_error(c, n, "area: \"%s\" is not an IPv4 or IPv6 prefix", n->args[0]);
            errors++;
            continue;
        }
        if (area_resolve(&ax, targets, &value, err, sizeof(err)) < 0) {
            conf_error(c, n, "area %s: %s", n->args[0], err);
            errors++;
            continue;
        }
        area_builder_add(b, fam, addr, plen, value);
    }
    for (const struct conf_node *n = conf_find(blk, "area_file"); n; n = conf_next(n)) {
        size_t len;
        const char *path = n->args[0];
        char *text = read_file(path, &len, err, sizeof(err));
        if (text == NULL) {
            conf_error(c, n, "area_file %s: %s", path, err);
            errors++;
            continue;
        }
        ax.file = path;
        ax.errors = 0;
        unsigned e = rt__area_parse(text, len, b, area_resolve, area_file_error, &ax);
        free(text);
        if (e > 20)
            conf_error(c, n, "area_file %s: %u errors in all", path, e);
        errors += e;
    }
    s->area_prefixes = area_builder_count(b);
    s->table = area_builder_finish(b);
    return (int)errors;
}

struct rt_settings *rt__settings_ref(struct rt_settings *s)
{
    atomic_fetch_add(&s->refs, 1);
    return s;
}

struct rt_settings *rt__settings_derive(struct rt_settings *base, struct rt_learned *learned)
{
    struct rt_settings *st = rt__settings_static(base);
    if (learned == NULL)
        return rt__settings_ref(st);
    struct rt_settings *d = xmalloc(sizeof(*d));
    /* Everything after the count: workers may change st->refs meanwhile,
     * so it must not be read here, not even by memcpy. */
    size_t off = offsetof(struct rt_settings, base);
    memcpy((char *)d + off, (const char *)st + off, sizeof(*d) - off);
    atomic_init(&d->refs, 1);
    d->base = rt__settings_ref(st);
    d->learned = rt__learned_ref(learned);
    return d;
}

void rt__settings_unref(struct rt_settings *s)
{
    if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    if (s->base) {
        /* a derived snapshot: the rest belongs to its static snapshot */
        rt__learned_unref(s->learned);
        rt__settings_unref(s->base);
        free(s);
        return;
    }
    for (size_t i = 0; i < s->names_cap; i++) {
        struct rt_name *n = s->names[i];
        if (n == NULL)
            continue;
        for (struct rt_rr *r = n->rrs, *next; r; r = next) {
            next = r->next;
            free(r);
        }
        free(n->svc);
        free(n);
    }
    free(s->names);
    for (size_t i = 0; i < s->nzones; i++)
        free(s->zones[i]);
    free(s->zones);
    for (size_t i = 0; i < s->nnodes; i++)
        rt__node_unref(s->nodes[i]);
    free(s->nodes);
    for (size_t i = 0; i < s->npeers; i++)
        rt__peer_unref(s->peers[i]);
    free(s->peers);
    free(s->areas);
    if (s->table)
        area_table_free(s->table);
    free(s);
}

struct rt_settings *rt__settings_create(struct conf *c, const struct conf_node *blk,
                                        struct rt_node **old_nodes, size_t nold_nodes)
{
    struct rt_settings *s = xcalloc(1, sizeof(*s));
    int errors = 0;
    atomic_init(&s->refs, 1);
    names_grow(s);

    const char *cdn = conf_str(blk, "cdn");
    if (!name_ok(cdn) || strlen(cdn) > DNS_MAX_CDN_ID) {
        conf_error(c, conf_find(blk, "cdn"), "cdn: \"%s\" must be 1-%d of a-z 0-9 -", cdn, DNS_MAX_CDN_ID);
        errors++;
    }
    snprintf(s->cdn, sizeof(s->cdn), "%s", cdn);
    s->ttl = (uint32_t)(conf_int(blk, "ttl") / 1000);
    s->udp_size = (uint16_t)conf_int(blk, "udp_size");
    s->rrl_rate = (unsigned)conf_int(blk, "rrl_rate");
    s->rrl_slip = (unsigned)conf_int(blk, "rrl_slip");
    s->rrl_v4_prefix = (unsigned)conf_int(blk, "rrl_ipv4_prefix");
    s->rrl_v6_prefix = (unsigned)conf_int(blk, "rrl_ipv6_prefix");
    s->ecs_timeout_ms = conf_int(blk, "ecs_timeout");
    s->ecs_max_pending = (unsigned)conf_int(blk, "ecs_max_pending");
    s->redirect_code = (int)conf_int(blk, "redirect_code");
    const char *lh = conf_str(blk, "learned_handoff");
    s->learned_handoff = strcmp(lh, "ns") == 0 ? RT_H_NS : strcmp(lh, "ecs") == 0 ? RT_H_ECS : RT_H_CNAME;
    s->learned_delay_ms = conf_int(blk, "learned_delay");
    if (s->redirect_code != 302 && s->redirect_code != 307) {
        conf_error(c, conf_find(blk, "redirect_code"), "redirect_code must be 302 or 307");
        errors++;
    }

    for (const struct conf_node *n = conf_find(blk, "node"); n; n = conf_next(n))
        errors += parse_node(c, n, s, old_nodes, nold_nodes);
    for (const struct conf_node *n = conf_find(blk, "peer"); n; n = conf_next(n))
        errors += parse_peer(c, n, s);
    for (const struct conf_node *n = conf_find(blk, "zone"); n; n = conf_next(n))
        errors += parse_zone(c, n, s);
    if (s->nzones == 0) {
        conf_error(c, blk, "router: give at least one zone");
        errors++;
    }
    /* a service's set, and path sets, must name nodes */
    for (size_t i = 0; i < s->names_cap; i++) {
        struct rt_name *nm = s->names[i];
        if (nm == NULL || nm->svc == NULL)
            continue;
        const char *sets[RT_MAX_PATHS + 1];
        unsigned ns = 0;
        if (nm->svc->set[0])
            sets[ns++] = nm->svc->set;
        for (unsigned k = 0; k < nm->svc->npaths; k++)
            sets[ns++] = nm->svc->paths[k].set;
        for (unsigned k = 0; k < ns; k++) {
            int found = 0;
            for (size_t j = 0; j < s->nnodes && !found; j++)
                for (unsigned m = 0; m < s->nodes[j]->nsets; m++)
                    found |= strcmp(s->nodes[j]->sets[m], sets[k]) == 0;
            if (!found) {
                char text[DNS_MAX_NAME + 1];
                dns_name_to_text(text, sizeof(text), nm->name);
                conf_error(c, blk, "service %s: no node is in set \"%s\"", text, sets[k]);
                errors++;
            }
        }
    }
    if (s->nnodes == 0) {
        conf_error(c, blk, "router: give at least one node");
        errors++;
    }
    if (!errors)
        errors += build_areas(c, blk, s);
    if (errors || s->table == NULL) {
        rt__settings_unref(s);
        return NULL;
    }
    return s;
}

int rt__client_from_sockaddr(struct rt_client *cl, const struct net_addr *a)
{
    memset(cl, 0, sizeof(*cl));
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;
        cl->family = 4;
        memcpy(cl->addr, &sin->sin_addr, 4);
        cl->source = 32;
        return 0;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;
        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            cl->family = 4;
            memcpy(cl->addr, (const uint8_t *)&sin6->sin6_addr + 12, 4);
            cl->source = 32;
        } else {
            cl->family = 6;
            memcpy(cl->addr, &sin6->sin6_addr, 16);
            cl->source = 128;
        }
        return 0;
    }
    return -1;
}
