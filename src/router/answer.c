/*
 * router/answer -- the authoritative DNS engine: one query in, one response
 * out, from a settings snapshot. No sockets: server.c owns those.
 *
 * The order of the checks follows RFC 1034 section 4.3.2:
 *   - malformed queries get FORMERR, other opcodes NOTIMP, EDNS versions
 *     above 0 BADVERS (dns_parse_query decides);
 *   - a class other than IN, a zone transfer, or a name outside every zone
 *     gets REFUSED;
 *   - a delegation at or above the name gives a referral;
 *   - a name answered by decision (a service) gives a node's addresses, or
 *     hands the client to a peer CDN (CNAME, NS referral, or an ECS query to
 *     the peer's router, answered later by rt__answer_from_peer);
 *   - static data is answered as configured, following in-zone CNAMEs;
 *   - otherwise NXDOMAIN or NODATA, with the zone's SOA for negative
 *     caching (RFC 2308).
 *
 * Loop guard: a hand-off carries the CDN ids it has passed through. An ECS
 * query carries them in the Ferry path option; a CNAME target carries them
 * in a leading label "fp--ID--ID" that this engine strips before looking
 * the rest of the name up. A peer already on the path is never handed the
 * client again (decide.c), and an NS referral is only made for a request
 * that carries no path (a delegation cannot carry one), so a referral never
 * starts a cycle either.
 */
#include <string.h>

#include "lib/util.h"
#include "router/internal.h"

#define PATH_LABEL "fp--"
#define PATH_LABEL_LEN 4
#define MAX_CNAME_CHAIN 8

const char *const rt__type_names[8] = {"A", "AAAA", "NS", "SOA", "CNAME", "TXT", "ANY", "other"};
const char *const rt__ecs_fail_names[5] = {"timeout", "overflow", "send_error", "bad_answer", "reload"};
const char *const rt__rcode_names[6] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "REFUSED", "other"};

int rt__type_index(uint16_t t)
{
    switch (t) {
    case DNS_T_A: return 0;
    case DNS_T_AAAA: return 1;
    case DNS_T_NS: return 2;
    case DNS_T_SOA: return 3;
    case DNS_T_CNAME: return 4;
    case DNS_T_TXT: return 5;
    case DNS_T_ANY: return 6;
    default: return 7;
    }
}

int rt__rcode_index(int rc)
{
    switch (rc) {
    case DNS_RC_NOERROR: return 0;
    case DNS_RC_FORMERR: return 1;
    case DNS_RC_SERVFAIL: return 2;
    case DNS_RC_NXDOMAIN: return 3;
    case DNS_RC_REFUSED: return 4;
    default: return 5;
    }
}

struct ctx {
    const struct rt_settings *s;
    const struct rt_counters *ctr;
    struct dns_query q;
    struct dns_msg m;
    const struct rt_zone *zone;
    const uint8_t *ename;            /* the name looked up (path label stripped), lowercased */
    struct dns_path path;            /* the request's path: option and label merged */
    int has_path;
    struct rt_client cl;
    struct rt_content content;       /* the service decided for (cl.content points here) */
    int ecs_scope_set;
    unsigned ecs_scope;
};

static size_t finish(struct ctx *x, int rcode)
{
    (void)rcode;
    uint8_t scope = x->ecs_scope_set ? (uint8_t)x->ecs_scope : 0;
    if (x->q.has_ecs && x->q.ecs.source == 0)
        scope = 0;
    size_t n = dns_msg_finish(&x->m, x->q.has_ecs ? &x->q.ecs : NULL, scope,
                              x->q.has_path ? &x->q.path : NULL);
    if (x->m.truncated && x->ctr)
        metric_inc(x->ctr->truncated);
    return n;
}

static void count(struct ctx *x, int rcode)
{
    if (x->ctr)
        metric_inc(x->ctr->queries[rt__type_index(x->q.qtype)][rt__rcode_index(rcode)]);
}

/* Starts the response; on failure (cap too small) the query is dropped. */
static int begin(struct ctx *x, uint8_t *out, size_t cap, int rcode, int aa)
{
    count(x, rcode);
    return dns_msg_init(&x->m, out, cap, &x->q, rcode, aa, x->s->udp_size);
}

static void add_soa(struct ctx *x, enum dns_section sec)
{
    const struct rt_zone *z = x->zone;
    uint32_t ttl = sec == DNS_SEC_NS ? MIN(z->soa_ttl, z->minimum) : z->soa_ttl;
    dns_msg_add(&x->m, sec, z->apex, DNS_T_SOA, DNS_C_IN, ttl, z->soa_rdata, z->soa_len);
}

/* Additional-section addresses for a host name we hold data for. */
static void add_glue(struct ctx *x, const uint8_t *host)
{
    const struct rt_name *n = rt__name_find(x->s, host);
    for (const struct rt_rr *r = n ? n->rrs : NULL; r; r = r->next)
        if (r->type == DNS_T_A || r->type == DNS_T_AAAA)
            dns_msg_add(&x->m, DNS_SEC_AR, host, r->type, DNS_C_IN, r->ttl, r->rdata, r->rdlen);
}

static int type_match(uint16_t rrtype, uint16_t qtype)
{
    return qtype == DNS_T_ANY || rrtype == qtype;
}

/* Strips a leading path label of the looked-up name into x->path. */
static int strip_path_label(struct ctx *x, int depth)
{
    const uint8_t *l = x->ename;
    if (depth < 1 || l[0] <= PATH_LABEL_LEN || memcmp(l + 1, PATH_LABEL, PATH_LABEL_LEN) != 0)
        return 0;
    const char *p = (const char *)l + 1 + PATH_LABEL_LEN;
    const char *end = (const char *)l + 1 + l[0];
    struct dns_path lp = {0};
    while (p < end) {
        const char *sep = p;
        while (sep < end && !(sep + 1 < end && sep[0] == '-' && sep[1] == '-'))
            sep++;
        size_t n = (size_t)(sep - p);
        if (n == 0 || n > DNS_MAX_CDN_ID || lp.n == DNS_MAX_PATH)
            return -1;
        memcpy(lp.id[lp.n], p, n);
        lp.id[lp.n][n] = 0;
        lp.len[lp.n++] = (uint8_t)n;
        p = sep < end ? sep + 2 : end;
    }
    for (unsigned i = 0; i < lp.n; i++)
        rt__path_push(&x->path, x->has_path ? &x->path : NULL, lp.id[i]), x->has_path = 1;
    x->ename = l + 1 + l[0];
    return 1;
}

/* Writes "fp--A--B--US" + label + suffix as a wire name; -1 when too long. */
static int handoff_name(uint8_t out[DNS_MAX_NAME], const struct dns_path *path, const uint8_t *label,
                        const uint8_t *suffix)
{
    uint8_t lab[64];
    size_t n = PATH_LABEL_LEN;
    memcpy(lab + 1, PATH_LABEL, PATH_LABEL_LEN);
    for (unsigned i = 0; i < path->n; i++) {
        size_t need = (i ? 2 : 0) + path->len[i];
        if (n + need > DNS_MAX_LABEL)
            return -1;
        if (i) {
            memcpy(lab + 1 + n, "--", 2);
            n += 2;
        }
        memcpy(lab + 1 + n, path->id[i], path->len[i]);
        n += path->len[i];
    }
    lab[0] = (uint8_t)n;
    size_t ll = dns_name_len(label) - 1, sl = dns_name_len(suffix);
    if (1 + n + ll + sl > DNS_MAX_NAME)
        return -1;
    memcpy(out, lab, 1 + n);
    memcpy(out + 1 + n, label, ll);
    memcpy(out + 1 + n + ll, suffix, sl);
    return 0;
}

/* An own node's addresses of the asked type. Returns records added. */
static int answer_node(struct ctx *x, const struct rt_node *node, uint32_t ttl)
{
    uint8_t rd[16];
    int added = 0;
    for (unsigned i = 0; i < node->naddr; i++) {
        const struct net_addr *a = &node->addr[i];
        uint16_t t;
        uint16_t len;
        if (a->ss.ss_family == AF_INET) {
            t = DNS_T_A;
            len = 4;
            memcpy(rd, &((const struct sockaddr_in *)&a->ss)->sin_addr, 4);
        } else {
            t = DNS_T_AAAA;
            len = 16;
            memcpy(rd, &((const struct sockaddr_in6 *)&a->ss)->sin6_addr, 16);
        }
        if (!type_match(t, x->q.qtype))
            continue;
        dns_msg_add(&x->m, DNS_SEC_AN, x->q.qname, t, DNS_C_IN, ttl, rd, len);
        added++;
    }
    if (node->m_answers)
        metric_inc(node->m_answers);
    return added;
}

static void count_decision(struct ctx *x, const struct rt_decision *d)
{
    if (!x->ctr)
        return;
    metric_inc(x->ctr->decisions[d->reason]);
    if (d->loop)
        metric_inc(x->ctr->loops);
    if (d->peer && d->peer->m_handoffs)
        metric_inc(d->peer->m_handoffs);
}

/* A name answered by decision. Returns a response length or RT_ANSWER_ASYNC. */
static int answer_service(struct ctx *x, const struct rt_name *nm, uint8_t *out, size_t cap,
                          int no_handoff, struct rt_ecs_req *req)
{
    const struct rt_service *svc = nm->svc;
    struct rt_decision d;
    x->cl.path = x->has_path ? &x->path : NULL;
    x->content = (struct rt_content){.lname = nm->name};
    x->cl.content = &x->content;
    rt__decide(x->s, svc->set, &x->cl, 0, no_handoff ? RT_DECIDE_NO_PEER : 0, &d);
    x->ecs_scope_set = 1;
    x->ecs_scope = d.scope;

    if (d.peer && d.reason == RT_R_PEER_NS && (x->has_path || nm == x->zone->apex_name ||
                                               x->ename != x->q.lname)) {
        /* a referral cannot carry the path, nor cut the zone at its apex */
        d.loop = x->has_path;
        d.peer = NULL;
        d.node = NULL;
    }
    struct dns_path out_path;
    if (d.peer) {
        rt__path_push(&out_path, x->has_path ? &x->path : NULL, x->s->cdn);
        if (d.reason == RT_R_PEER_CNAME) {
            uint8_t target[DNS_MAX_NAME];
            if (handoff_name(target, &out_path, svc->label, d.peer->cname_suffix) == 0) {
                count_decision(x, &d);
                if (begin(x, out, cap, DNS_RC_NOERROR, 1) < 0)
                    return 0;
                dns_msg_add(&x->m, DNS_SEC_AN, x->q.qname, DNS_T_CNAME, DNS_C_IN, svc->ttl, target,
                            (uint16_t)dns_name_len(target));
                return (int)finish(x, DNS_RC_NOERROR);
            }
        } else if (d.reason == RT_R_PEER_NS) {
            count_decision(x, &d);
            if (begin(x, out, cap, DNS_RC_NOERROR, 0) < 0)
                return 0;
            const struct rt_peer *p = d.peer;
            dns_msg_add(&x->m, DNS_SEC_NS, x->q.qname, DNS_T_NS, DNS_C_IN, svc->ttl, p->ns_name,
                        (uint16_t)dns_name_len(p->ns_name));
            for (unsigned i = 0; i < p->nns_addr; i++) {
                const struct net_addr *a = &p->ns_addr[i];
                if (a->ss.ss_family == AF_INET)
                    dns_msg_add(&x->m, DNS_SEC_AR, p->ns_name, DNS_T_A, DNS_C_IN, svc->ttl,
                                (const uint8_t *)&((const struct sockaddr_in *)&a->ss)->sin_addr, 4);
                else
                    dns_msg_add(&x->m, DNS_SEC_AR, p->ns_name, DNS_T_AAAA, DNS_C_IN, svc->ttl,
                                (const uint8_t *)&((const struct sockaddr_in6 *)&a->ss)->sin6_addr, 16);
            }
            return (int)finish(x, DNS_RC_NOERROR);
        } else if (d.reason == RT_R_PEER_ECS && req &&
                   (x->q.qtype == DNS_T_A || x->q.qtype == DNS_T_AAAA)) {
            const struct rt_peer *p = d.peer;
            size_t ll = dns_name_len(svc->label) - 1;
            {
                const uint8_t *suffix = p->ecs_zone[0] ? p->ecs_zone : x->zone->apex;
                size_t sl = dns_name_len(suffix);
                if (ll + sl <= DNS_MAX_NAME) {
                    memcpy(req->qname, svc->label, ll);
                    memcpy(req->qname + ll, suffix, sl);
                    req->peer = d.peer;
                    req->qtype = x->q.qtype;
                    req->path = out_path;
                    req->scope = d.scope;
                    req->ttl = svc->ttl;
                    memset(&req->ecs, 0, sizeof(req->ecs));
                    if (x->q.has_ecs) {
                        req->ecs = x->q.ecs;
                        req->ecs.scope = 0;
                    } else {
                        /* RFC 7871 section 11.1: send no more than /24 or /56 */
                        unsigned bits = x->cl.family == 4 ? 24 : 56;
                        req->ecs.family = x->cl.family == 4 ? 1 : 2;
                        req->ecs.source = (uint8_t)bits;
                        memcpy(req->ecs.addr, x->cl.addr, bits / 8);
                    }
                    count_decision(x, &d);
                    if (x->ctr)
                        metric_inc(x->ctr->ecs_queries);
                    return RT_ANSWER_ASYNC;
                }
            }
        } else if (d.reason == RT_R_PEER_ECS) {
            /* other types: the peer's answer is addresses only; NODATA */
            count_decision(x, &d);
            if (begin(x, out, cap, DNS_RC_NOERROR, 1) < 0)
                return 0;
            add_soa(x, DNS_SEC_NS);
            return (int)finish(x, DNS_RC_NOERROR);
        }
        /* the hand-off could not be written: serve the client ourselves */
        d.node = NULL;
    }
    if (d.node == NULL) {
        int loop = d.loop;
        rt__decide(x->s, svc->set, &x->cl, 0, RT_DECIDE_NO_PEER, &d);
        d.reason = RT_R_FALLBACK;
        d.loop = loop;
    }
    count_decision(x, &d);
    if (begin(x, out, cap, DNS_RC_NOERROR, 1) < 0)
        return 0;
    if (d.node == NULL || answer_node(x, d.node, svc->ttl) == 0)
        add_soa(x, DNS_SEC_NS); /* NODATA: e.g. AAAA for a node with only IPv4 */
    return (int)finish(x, DNS_RC_NOERROR);
}

/* Static data at nm, following in-zone CNAMEs. */
static int answer_static(struct ctx *x, const struct rt_name *nm, uint8_t *out, size_t cap)
{
    if (begin(x, out, cap, DNS_RC_NOERROR, 1) < 0)
        return 0;
    const uint8_t *owner = x->q.qname;
    int rcode = DNS_RC_NOERROR, added = 0;
    for (int hop = 0; nm && hop < MAX_CNAME_CHAIN; hop++) {
        const struct rt_rr *cname = NULL;
        for (const struct rt_rr *r = nm->rrs; r; r = r->next) {
            if (r->type == DNS_T_CNAME)
                cname = r;
            if (type_match(r->type, x->q.qtype)) {
                dns_msg_add(&x->m, DNS_SEC_AN, owner, r->type, DNS_C_IN, r->ttl, r->rdata, r->rdlen);
                added++;
            }
        }
        if (x->q.qtype == DNS_T_SOA && nm == x->zone->apex_name) {
            add_soa(x, DNS_SEC_AN);
            added++;
        }
        if (x->q.qtype == DNS_T_NS && nm == x->zone->apex_name) {
            for (const struct rt_rr *r = nm->rrs; r; r = r->next)
                if (r->type == DNS_T_NS)
                    add_glue(x, r->rdata);
        }
        if (cname == NULL || x->q.qtype == DNS_T_CNAME || x->q.qtype == DNS_T_ANY)
            break;
        dns_msg_add(&x->m, DNS_SEC_AN, owner, DNS_T_CNAME, DNS_C_IN, cname->ttl, cname->rdata,
                    cname->rdlen);
        added++;
        /* follow the CNAME when its target is in one of our zones */
        owner = cname->rdata;
        nm = rt__name_find(x->s, cname->rdata);
        if (nm == NULL) {
            if (rt__zone_find(x->s, cname->rdata, NULL) != NULL)
                rcode = DNS_RC_NXDOMAIN; /* RFC 6604: the rcode of the last name */
            break;
        }
        if (nm->svc) {
            /* the decision for a service behind a CNAME: its addresses */
            struct rt_decision d;
            x->cl.path = x->has_path ? &x->path : NULL;
            x->content = (struct rt_content){.lname = nm->name};
            x->cl.content = &x->content;
            rt__decide(x->s, nm->svc->set, &x->cl, 0, RT_DECIDE_NO_PEER, &d);
            x->ecs_scope_set = 1;
            x->ecs_scope = d.scope;
            if (d.node) {
                const uint8_t *save = x->q.qname;
                x->q.qname = owner;
                added += answer_node(x, d.node, nm->svc->ttl);
                x->q.qname = save;
            }
            count_decision(x, &d);
            break;
        }
    }
    if (added == 0 || rcode == DNS_RC_NXDOMAIN)
        add_soa(x, DNS_SEC_NS);
    if (rcode != DNS_RC_NOERROR) {
        x->m.buf[3] = (uint8_t)((x->m.buf[3] & 0xf0) | rcode);
        x->m.ext_rcode = (uint16_t)rcode;
    }
    return (int)finish(x, rcode);
}

/* A referral to the delegation at `cut`. */
static int answer_referral(struct ctx *x, const struct rt_name *cut, uint8_t *out, size_t cap)
{
    if (begin(x, out, cap, DNS_RC_NOERROR, 0) < 0)
        return 0;
    for (const struct rt_rr *r = cut->rrs; r; r = r->next)
        if (r->type == DNS_T_NS)
            dns_msg_add(&x->m, DNS_SEC_NS, cut->name, DNS_T_NS, DNS_C_IN, r->ttl, r->rdata, r->rdlen);
    for (const struct rt_rr *r = cut->rrs; r; r = r->next)
        if (r->type == DNS_T_NS)
            add_glue(x, r->rdata);
    return (int)finish(x, DNS_RC_NOERROR);
}

static int answer_rcode(struct ctx *x, uint8_t *out, size_t cap, int rcode, int aa)
{
    if (begin(x, out, cap, rcode, aa) < 0)
        return 0;
    return (int)finish(x, rcode);
}

static int answer_query(const struct rt_settings *s, const struct rt_counters *ctr, const uint8_t *pkt,
                        size_t len, const struct net_addr *from, int tcp, uint8_t *out, size_t outcap,
                        struct rt_ecs_req *req, int no_handoff)
{
    struct ctx x;
    x.s = s;
    x.ctr = ctr;
    x.has_path = 0;
    x.path.n = 0;
    x.ecs_scope_set = 0;
    x.ecs_scope = 0;
    x.zone = NULL;
    int rc = dns_parse_query(pkt, len, &x.q);
    if (rc == DNS_PARSE_DROP)
        return 0;
    size_t cap = tcp ? MIN(outcap, (size_t)DNS_MAX_UDP) : DNS_MIN_UDP;
    if (!tcp && x.q.edns)
        cap = MIN(outcap, MAX((size_t)DNS_MIN_UDP, (size_t)MIN(x.q.udp_size, s->udp_size)));
    if (rc != DNS_RC_NOERROR)
        return answer_rcode(&x, out, cap, rc, 0);
    if (x.q.qclass != DNS_C_IN && x.q.qclass != DNS_C_ANY)
        return answer_rcode(&x, out, cap, DNS_RC_REFUSED, 0);
    if (x.q.qtype == DNS_T_AXFR || x.q.qtype == DNS_T_IXFR)
        return answer_rcode(&x, out, cap, DNS_RC_REFUSED, 0);
    int depth;
    x.zone = rt__zone_find(s, x.q.lname, &depth);
    if (x.zone == NULL)
        return answer_rcode(&x, out, cap, DNS_RC_REFUSED, 0);

    rt__client_from_sockaddr(&x.cl, from);
    if (x.q.has_ecs) {
        x.cl.family = x.q.ecs.family == 1 ? 4 : 6;
        memcpy(x.cl.addr, x.q.ecs.addr, 16);
        x.cl.source = x.q.ecs.source;
    }
    if (x.q.has_path) {
        x.path = x.q.path;
        x.has_path = 1;
    }
    x.ename = x.q.lname;
    int stripped = strip_path_label(&x, depth);
    if (stripped != 0) {
        /* hand-off names are fp--PATH.SERVICE: anything else with the label does not exist */
        const struct rt_name *svc = stripped > 0 ? rt__name_find(s, x.ename) : NULL;
        if (svc == NULL || svc->svc == NULL || svc->zone != x.zone) {
            if (begin(&x, out, cap, DNS_RC_NXDOMAIN, 1) < 0)
                return 0;
            add_soa(&x, DNS_SEC_NS);
            return (int)finish(&x, DNS_RC_NXDOMAIN);
        }
    }

    if (x.zone->has_delegations) {
        for (const uint8_t *p = x.ename; p[0] && !dns_name_equal(p, x.zone->apex); p += 1 + p[0]) {
            const struct rt_name *cut = rt__name_find(s, p);
            if (cut && cut->delegation)
                return answer_referral(&x, cut, out, cap);
        }
    }
    const struct rt_name *nm = rt__name_find(s, x.ename);
    if (nm == NULL || nm->zone != x.zone) {
        if (begin(&x, out, cap, DNS_RC_NXDOMAIN, 1) < 0)
            return 0;
        add_soa(&x, DNS_SEC_NS);
        return (int)finish(&x, DNS_RC_NXDOMAIN);
    }
    if (nm->svc)
        return answer_service(&x, nm, out, cap, no_handoff, req);
    return answer_static(&x, nm, out, cap);
}

int rt__answer(const struct rt_settings *s, const struct rt_counters *ctr, const uint8_t *pkt,
               size_t len, const struct net_addr *from, int tcp, uint8_t *out, size_t outcap,
               struct rt_ecs_req *req)
{
    return answer_query(s, ctr, pkt, len, from, tcp, out, outcap, req, 0);
}

int rt__answer_from_peer(const struct rt_settings *s, const struct rt_counters *ctr,
                         const uint8_t *pkt, size_t len, const struct net_addr *from, int tcp,
                         const struct rt_ecs_req *req, const uint8_t *resp, size_t resp_len,
                         uint16_t resp_id, enum rt_ecs_fail why, uint8_t *out, size_t outcap)
{
    struct dns_response r;
    struct dns_rr rr;
    struct ctx x;
    if (resp != NULL)
        why = RT_EF_BAD_ANSWER;
    if (resp == NULL || dns_response_parse(&r, resp, resp_len, resp_id, req->qname, req->qtype) < 0 ||
        r.rcode != DNS_RC_NOERROR)
        goto fallback;
    /* collect the peer's addresses (or its CNAME) for the asked name */
    int naddr = 0, ncname = 0, ok;
    while ((ok = dns_response_next(&r, &rr)) == 1) {
        if (rr.sec != DNS_SEC_AN)
            continue;
        if (rr.type == req->qtype)
            naddr++;
        else if (rr.type == DNS_T_CNAME && dns_name_equal(rr.owner, req->qname))
            ncname++;
    }
    if (ok < 0 || (naddr == 0 && ncname == 0))
        goto fallback;

    x.s = s;
    x.ctr = ctr;
    x.has_path = 0;
    x.ecs_scope_set = 1;
    x.ecs_scope = req->scope;
    if (r.has_ecs && r.ecs.scope > x.ecs_scope)
        x.ecs_scope = r.ecs.scope; /* valid only where both answers hold */
    if (dns_parse_query(pkt, len, &x.q) != DNS_RC_NOERROR)
        return 0;
    x.zone = rt__zone_find(s, x.q.lname, NULL);
    if (x.zone == NULL)
        return 0;
    size_t cap = tcp ? MIN(outcap, (size_t)DNS_MAX_UDP) : DNS_MIN_UDP;
    if (!tcp && x.q.edns)
        cap = MIN(outcap, MAX((size_t)DNS_MIN_UDP, (size_t)MIN(x.q.udp_size, s->udp_size)));
    if (dns_msg_init(&x.m, out, cap, &x.q, DNS_RC_NOERROR, 1, s->udp_size) < 0)
        return 0;
    if (ctr)
        metric_inc(ctr->queries[rt__type_index(x.q.qtype)][0]);
    dns_response_parse(&r, resp, resp_len, resp_id, req->qname, req->qtype);
    while (dns_response_next(&r, &rr) == 1) {
        if (rr.sec != DNS_SEC_AN)
            continue;
        uint32_t ttl = MIN(rr.ttl, req->ttl);
        if (naddr && rr.type == req->qtype)
            dns_msg_add(&x.m, DNS_SEC_AN, x.q.qname, rr.type, DNS_C_IN, ttl, rr.rdata, rr.rdlen);
        else if (!naddr && rr.type == DNS_T_CNAME && dns_name_equal(rr.owner, req->qname))
            dns_msg_add(&x.m, DNS_SEC_AN, x.q.qname, DNS_T_CNAME, DNS_C_IN, ttl, rr.target,
                        (uint16_t)dns_name_len(rr.target));
    }
    return (int)finish(&x, DNS_RC_NOERROR);

fallback:
    if (ctr)
        metric_inc(ctr->ecs_failures[why]);
    return answer_query(s, ctr, pkt, len, from, tcp, out, outcap, NULL, 1);
}
