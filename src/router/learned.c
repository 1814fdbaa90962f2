/*
 * router/learned -- the layer of a router's snapshot made of the routes
 * learned from peer CDNs (a struct rt_learned, built from a lib/feed.h
 * snapshot; settings.c joins it with the static settings, see internal.h).
 * A learned layer has one peer per usable feed target, built from its
 * advertised hand-off texts as a `peer` block's options are; an area table
 * per kind of target (DNS hand-off only, HTTP redirector only, both), with
 * the target's index as the value; a table of its own for each target
 * limited to content units, found through a hash of the units' host names.
 * rt__learned_create is pure (its inputs are read-only), so the router
 * runs it on a build thread.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/util.h"
#include "router/internal.h"

/* A CDN id of the peering protocol: 1-32 of a-z 0-9 -, no leading, trailing or double '-'. */
static int cdn_id_ok(const char *id, size_t cap)
{
    size_t n = strnlen(id, cap);
    if (n == 0 || n == cap || n > DNS_MAX_CDN_ID || id[0] == '-' || id[n - 1] == '-' ||
        strstr(id, "--"))
        return 0;
    for (; *id; id++)
        if (!((*id >= 'a' && *id <= 'z') || (*id >= '0' && *id <= '9') || *id == '-'))
            return 0;
    return 1;
}

static const char *method_name(enum feed_method m)
{
    switch (m) {
    case FEED_CNAME: return "CNAME";
    case FEED_NS: return "NS";
    case FEED_ECS: return "ECS";
    case FEED_HTTP: return "HTTP";
    }
    return "?";
}

/*
 * Fills p from one advertised hand-off, as parse_peer does from a peer
 * block: CNAME "ZONE", NS "NSNAME [ADDR...]", ECS "ADDR:PORT", HTTP a base
 * URL. Returns 0, or -1 with the reason in why.
 */
static int learned_handoff(struct rt_peer *p, enum feed_method m, const char *text, char *why,
                           size_t whylen)
{
    char buf[FEED_MAX_TARGET + 1];
    switch (m) {
    case FEED_CNAME:
        if (dns_name_from_text(p->cname_suffix, text) < 0)
            goto bad;
        return 0;
    case FEED_NS: {
        snprintf(buf, sizeof(buf), "%s", text);
        char *save = NULL, *tok = strtok_r(buf, " \t", &save);
        if (tok == NULL || dns_name_from_text(p->ns_name, tok) < 0)
            goto bad;
        while ((tok = strtok_r(NULL, " \t", &save)) != NULL) {
            if (p->nns_addr == RT_MAX_ADDRS || net_addr_from(tok, 0, &p->ns_addr[p->nns_addr]) < 0)
                goto bad;
            p->nns_addr++;
        }
        return 0;
    }
    case FEED_ECS:
        /* a wildcard is a listening address, not one to send to */
        if (text[0] == '*' || net_addr_parse(text, &p->ecs_server) < 0)
            goto bad;
        return 0;
    case FEED_HTTP:
        if (!rt__url_ok(text))
            goto bad;
        snprintf(p->redirect, sizeof(p->redirect), "%s", text);
        return 0;
    }
bad:
    snprintf(why, whylen, "its %s hand-off \"%.64s\" does not parse", method_name(m), text);
    return -1;
}

/* Makes a target of the feed into lt; -1 with the reason in why when it cannot be used. */
static int learned_target(const struct feed_target *ft, const char *own_cdn, enum rt_handoff prefer,
                          struct rt_ltarget *lt, char *why, size_t whylen)
{
    if (!cdn_id_ok(ft->cdn, sizeof(ft->cdn))) {
        snprintf(why, whylen, "its CDN id is not one");
        return -1;
    }
    if (strcmp(ft->cdn, own_cdn) == 0) {
        snprintf(why, whylen, "it is this CDN");
        return -1;
    }
    struct rt_peer *p = xcalloc(1, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", ft->cdn);
    unsigned dns = 0; /* bit 1 << enum rt_handoff per DNS hand-off offered */
    for (unsigned i = 0; i < ft->nhandoff && i < FEED_MAX_HANDOFFS; i++) {
        enum feed_method m = ft->handoff[i].method;
        const char *text = ft->handoff[i].target;
        unsigned bit = m == FEED_CNAME ? 1u << RT_H_CNAME
                     : m == FEED_NS    ? 1u << RT_H_NS
                     : m == FEED_ECS   ? 1u << RT_H_ECS
                                       : 0;
        /* methods this router does not know are not an error (a newer peer);
         * when one is offered twice, the first counts */
        if ((bit == 0 && m != FEED_HTTP) || (dns & bit) || (m == FEED_HTTP && p->redirect[0]))
            continue;
        if (memchr(text, 0, sizeof(ft->handoff[i].target)) == NULL) {
            snprintf(why, whylen, "its %s hand-off is not a string", method_name(m));
            goto fail;
        }
        if (learned_handoff(p, m, text, why, whylen) < 0)
            goto fail;
        dns |= bit;
    }
    lt->caps = (dns ? RT_L_DNS : 0) | (p->redirect[0] ? RT_L_HTTP : 0);
    if (lt->caps == 0) {
        snprintf(why, whylen, "it offers no hand-off this router can make");
        goto fail;
    }
    if (dns & (1u << prefer))
        p->handoff = prefer;
    else
        p->handoff = (dns & (1u << RT_H_CNAME)) ? RT_H_CNAME : (dns & (1u << RT_H_NS)) ? RT_H_NS : RT_H_ECS;
    atomic_init(&p->refs, 1);
    lt->area.peer = p;
    for (unsigned i = 0; i < ft->npath && i < RT_L_PATH; i++) {
        if (!cdn_id_ok(ft->path[i], sizeof(ft->path[i])))
            continue;
        snprintf(lt->path[lt->npath++], sizeof(lt->path[0]), "%s", ft->path[i]);
    }
    return 0;
fail:
    free(p);
    return -1;
}

/*
 * A content unit's host (lowercased wire form) and, for a URI prefix, the
 * path part ("" when the prefix ends with the host). The scheme and a port
 * are not kept: the redirector only sees plain HTTP, and hosts are matched
 * without their port. Returns 0 or -1.
 */
static int unit_parse(const struct feed_unit *u, uint8_t lname[DNS_MAX_NAME], const char **path)
{
    char host[DNS_MAX_NAME + 1];
    *path = NULL;
    if (u->text == NULL)
        return -1;
    if (!u->uri)
        return dns_name_from_text(lname, u->text) < 0 ? -1 : 0;
    const char *t = u->text;
    if (strncasecmp(t, "http://", 7) == 0)
        t += 7;
    else if (strncasecmp(t, "https://", 8) == 0)
        t += 8;
    else
        return -1;
    size_t hl = strcspn(t, "/?#");
    const char *colon = memchr(t, ':', hl);
    size_t nl = colon ? (size_t)(colon - t) : hl;
    if (nl == 0 || nl >= sizeof(host))
        return -1;
    memcpy(host, t, nl);
    host[nl] = 0;
    if (dns_name_from_text(lname, host) < 0)
        return -1;
    *path = t + hl;
    return 0;
}

struct rt_learned *rt__learned_ref(struct rt_learned *l)
{
    if (l)
        atomic_fetch_add(&l->refs, 1);
    return l;
}

void rt__learned_unref(struct rt_learned *l)
{
    if (l == NULL || atomic_fetch_sub(&l->refs, 1) != 1)
        return;
    for (size_t i = 0; i < l->ntargets; i++) {
        rt__peer_unref(l->targets[i].area.peer);
        area_table_free(l->targets[i].table);
    }
    free(l->targets);
    for (int c = 0; c < 3; c++)
        area_table_free(l->table[c]);
    for (size_t i = 0; i < l->nunits; i++) {
        free(l->units[i].lname);
        free(l->units[i].path);
    }
    free(l->units);
    free(l->buckets);
    free(l);
}

int rt__learned_create(const struct feed_snapshot *snap, const char *own_cdn,
                       enum rt_handoff prefer, struct rt_learned **out)
{
    *out = NULL;
    if (snap == NULL)
        return 0;
    struct rt_learned *l = xcalloc(1, sizeof(*l));
    atomic_init(&l->refs, 1);
    l->version = snap->version;
    size_t nt = snap->ntargets;
    uint32_t *map = xmalloc((nt ? nt : 1) * sizeof(*map));        /* feed target -> ours */
    struct area_builder **tb = xcalloc(nt ? nt : 1, sizeof(*tb)); /* ours with units */
    struct area_builder *cb[3] = {NULL, NULL, NULL};              /* the others, by caps - 1 */
    int rc = 0;

    l->targets = xcalloc(nt ? nt : 1, sizeof(*l->targets));
    for (size_t i = 0; i < nt; i++) {
        char why[128];
        map[i] = UINT32_MAX;
        struct rt_ltarget *lt = &l->targets[l->ntargets];
        if (learned_target(&snap->targets[i], own_cdn, prefer, lt, why, sizeof(why)) < 0) {
            memset(lt, 0, sizeof(*lt));
            if (l->nskipped++ == 0)
                snprintf(l->skip_reason, sizeof(l->skip_reason), "cdn %.32s: %s",
                         memchr(snap->targets[i].cdn, 0, sizeof(snap->targets[i].cdn)) ? snap->targets[i].cdn : "?",
                         why);
            continue;
        }
        map[i] = (uint32_t)l->ntargets++;
    }

    /* Units first: a target with units gets a table of its own. */
    if (snap->nunits) {
        l->units = xcalloc(snap->nunits, sizeof(*l->units));
        for (l->nbuckets = 16; l->nbuckets < 2 * snap->nunits; l->nbuckets *= 2)
            ;
        l->buckets = xcalloc(l->nbuckets, sizeof(*l->buckets));
    }
    for (size_t i = 0; i < snap->nunits; i++) {
        const struct feed_unit *u = &snap->units[i];
        uint8_t lname[DNS_MAX_NAME];
        const char *path;
        if (u->target >= nt || unit_parse(u, lname, &path) < 0) {
            l->nbad++;
            continue;
        }
        if (map[u->target] == UINT32_MAX)
            continue; /* its target was skipped, and counted */
        struct rt_lunit *lu = &l->units[l->nunits];
        size_t len = dns_name_len(lname);
        lu->target = map[u->target];
        lu->lname = xmalloc(len);
        memcpy(lu->lname, lname, len);
        lu->path = path ? xstrdup(path) : NULL;
        size_t b = (size_t)hash_fnv1a(lname, len) & (l->nbuckets - 1);
        lu->next = l->buckets[b];
        l->buckets[b] = (uint32_t)++l->nunits;
        l->targets[lu->target].nunits++;
    }

    for (size_t i = 0; i < snap->nareas; i++) {
        const struct feed_area *a = &snap->areas[i];
        uint32_t t = a->target < nt ? map[a->target] : UINT32_MAX;
        if (a->target >= nt || (a->family != 4 && a->family != 6)) {
            l->nbad++;
            continue;
        }
        if (t == UINT32_MAX)
            continue;
        struct rt_ltarget *lt = &l->targets[t];
        struct area_builder **b = lt->nunits ? &tb[t] : &cb[lt->caps - 1];
        if (*b == NULL)
            *b = area_builder_new();
        if (*b == NULL || area_builder_add(*b, a->family, a->addr, a->plen, t) < 0)
            l->nbad++;
    }

    for (int c = 0; c < 3; c++) {
        if (cb[c] == NULL)
            continue;
        l->nprefixes += area_builder_count(cb[c]);
        l->table[c] = area_builder_finish(cb[c]); /* frees the builder */
        cb[c] = NULL;
        if (l->table[c] == NULL)
            rc = -ENOMEM;
    }
    for (size_t t = 0; t < l->ntargets; t++) {
        if (tb[t] == NULL)
            continue;
        l->nprefixes += area_builder_count(tb[t]);
        l->targets[t].table = area_builder_finish(tb[t]);
        tb[t] = NULL;
        if (l->targets[t].table == NULL)
            rc = -ENOMEM;
    }
    free(tb);
    free(map);
    if (rc < 0) {
        rt__learned_unref(l);
        return rc;
    }
    *out = l;
    return 0;
}
