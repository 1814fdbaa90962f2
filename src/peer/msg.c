/*
 * peer/msg -- encoding and decoding of the peering protocol's messages
 * (docs/peering-protocol.md sections 3-7). See msg.h.
 *
 * Decoders validate everything before returning success, so code walking a
 * decoded UPDATE with peer_route_next/peer_attr_next needs no checks of its
 * own. Every failure names the NOTIFICATION the receiver sends.
 */
#include "peer/msg.h"

#include <string.h>

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static int fail(struct peer_err *err, uint8_t code, uint8_t sub, const char *what)
{
    if (err) {
        err->code = code;
        err->subcode = sub;
        err->what = what;
    }
    return -1;
}

/*
 * Appends the 6-byte header with a zero length; returns its offset. The
 * encoders remember offsets into out->data while they write a message, and
 * a buf with a read offset may move its bytes when it grows (buf_reserve
 * reclaims the consumed front). So the buffer is compacted first: with its
 * read offset at 0 it only ever grows in place until the message is done.
 * (A connection's output buffer, partly sent, has such an offset.)
 */
static size_t begin_msg(struct buf *out, uint8_t type)
{
    buf_compact(out);
    size_t at = out->len;
    uint8_t h[PEER_HDR_LEN] = {0, 0, 0, 0, type, 0};
    buf_append(out, h, sizeof(h));
    return at;
}

static void end_msg(struct buf *out, size_t at)
{
    put32((uint8_t *)out->data + at, (uint32_t)(out->len - at));
}

static void put_attr(struct buf *out, uint8_t flags, uint8_t type, const void *val, uint16_t len)
{
    uint8_t h[4] = {flags, type, (uint8_t)(len >> 8), (uint8_t)len};
    buf_append(out, h, 4);
    if (len)
        buf_append(out, val, len);
}

/* Framing. */

long peer_frame(const uint8_t *buf, size_t len, uint32_t max, uint8_t *type, struct peer_err *err)
{
    if (len < PEER_HDR_LEN)
        return 0;
    uint32_t ml = get32(buf);
    if (ml < PEER_HDR_LEN || ml > max)
        return fail(err, PEER_ERR_HEADER, PEER_SUB_BAD_LENGTH, "message length out of range");
    if (buf[4] < PEER_OPEN || buf[4] > PEER_ROUTE_REFRESH)
        return fail(err, PEER_ERR_HEADER, PEER_SUB_BAD_TYPE, "unknown message type");
    if (type)
        *type = buf[4];
    return len < ml ? 0 : (long)ml;
}

/* CDN ids. */

int peer_id_valid(const char *id, size_t len)
{
    if (len == 0 || len > PEER_MAX_ID || id[0] == '-' || id[len - 1] == '-')
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return 0;
        if (c == '-' && i + 1 < len && id[i + 1] == '-')
            return 0;
    }
    return 1;
}

/* OPEN. */

static const uint8_t fam_numbers[] = {1, 2}; /* wire family numbers of PEER_FAM_AREAS, PEER_FAM_CONTENT */

void peer_encode_open(struct buf *out, const struct peer_open *o)
{
    size_t at = begin_msg(out, PEER_OPEN);
    size_t idl = strlen(o->id);
    uint8_t h[4] = {PEER_VERSION, (uint8_t)(o->hold_time >> 8), (uint8_t)o->hold_time, (uint8_t)idl};
    buf_append(out, h, 4);
    buf_append(out, o->id, idl);
    put_attr(out, 0, PEER_CAP_ROUTING_TYPES, &o->routing_types, 1);
    put_attr(out, 0, PEER_CAP_CONTENT_TYPES, &o->content_types, 1);
    uint8_t fams[2];
    uint16_t nf = 0;
    for (unsigned i = 0; i < 2; i++)
        if (o->families & (1u << i))
            fams[nf++] = fam_numbers[i];
    put_attr(out, 0, PEER_CAP_FAMILIES, fams, nf);
    if (o->nmetrics) {
        uint8_t m[32];
        for (unsigned i = 0; i < o->nmetrics && i < 16; i++)
            put16(m + 2 * i, o->metrics[i]);
        put_attr(out, PEER_AF_OPTIONAL, PEER_CAP_METRICS, m, (uint16_t)(2 * (o->nmetrics < 16 ? o->nmetrics : 16)));
    }
    if (o->route_refresh)
        put_attr(out, PEER_AF_OPTIONAL, PEER_CAP_ROUTE_REFRESH, NULL, 0);
    if (o->max_message) {
        uint8_t m[4];
        put32(m, o->max_message);
        put_attr(out, PEER_AF_OPTIONAL, PEER_CAP_MAX_MESSAGE, m, 4);
    }
    end_msg(out, at);
}

/* Walks a TLV block, checking each header fits. Returns 1 (one attribute), 0 (end) or -1. */
static int tlv_next(const uint8_t *blk, size_t len, size_t *pos, uint8_t *flags, uint8_t *type,
                    const uint8_t **val, uint16_t *vlen)
{
    if (*pos == len)
        return 0;
    if (len - *pos < 4)
        return -1;
    const uint8_t *p = blk + *pos;
    uint16_t l = get16(p + 2);
    if (len - *pos - 4 < l)
        return -1;
    *flags = p[0];
    *type = p[1];
    *val = p + 4;
    *vlen = l;
    *pos += 4u + l;
    return 1;
}

int peer_attr_next(const uint8_t *blk, size_t len, size_t *pos, uint8_t *flags, uint8_t *type,
                   const uint8_t **val, uint16_t *vlen)
{
    return tlv_next(blk, len, pos, flags, type, val, vlen) == 1;
}

int peer_decode_open(const uint8_t *msg, size_t len, struct peer_open *o, struct peer_err *err)
{
    memset(o, 0, sizeof(*o));
    if (len < PEER_HDR_LEN + 4 || get32(msg) != len || msg[4] != PEER_OPEN)
        return fail(err, PEER_ERR_HEADER, PEER_SUB_BAD_LENGTH, "OPEN too short");
    const uint8_t *p = msg + PEER_HDR_LEN;
    size_t n = len - PEER_HDR_LEN;
    o->version = p[0];
    if (o->version != PEER_VERSION)
        return fail(err, PEER_ERR_OPEN, PEER_SUB_VERSION, "unsupported protocol version");
    o->hold_time = get16(p + 1);
    if (o->hold_time == 1 || o->hold_time == 2)
        return fail(err, PEER_ERR_OPEN, PEER_SUB_HOLD_TIME, "hold time of 1 or 2 seconds");
    size_t idl = p[3];
    if (4 + idl > n || !peer_id_valid((const char *)p + 4, idl))
        return fail(err, PEER_ERR_OPEN, PEER_SUB_BAD_ID, "bad CDN id");
    memcpy(o->id, p + 4, idl);
    o->id[idl] = 0;
    const uint8_t *caps = p + 4 + idl;
    size_t cl = n - 4 - idl, pos = 0;
    uint8_t flags, type;
    const uint8_t *v;
    uint16_t vl;
    int rc, seen_rt = 0, seen_ct = 0, seen_fam = 0;
    while ((rc = tlv_next(caps, cl, &pos, &flags, &type, &v, &vl)) == 1) {
        switch (type) {
        case PEER_CAP_ROUTING_TYPES:
        case PEER_CAP_CONTENT_TYPES:
            if (vl != 1)
                return fail(err, PEER_ERR_OPEN, PEER_SUB_CAPABILITY, "bad capability length");
            if (type == PEER_CAP_ROUTING_TYPES) {
                o->routing_types = v[0];
                seen_rt = 1;
            } else {
                o->content_types = v[0];
                seen_ct = 1;
            }
            break;
        case PEER_CAP_FAMILIES:
            for (unsigned i = 0; i < vl; i++)
                for (unsigned k = 0; k < sizeof(fam_numbers); k++)
                    if (v[i] == fam_numbers[k])
                        o->families |= (uint8_t)(1u << k);
            seen_fam = 1;
            break;
        case PEER_CAP_METRICS:
            if (vl % 2)
                return fail(err, PEER_ERR_OPEN, PEER_SUB_CAPABILITY, "bad capability length");
            for (unsigned i = 0; i + 1 < vl && o->nmetrics < 16; i += 2)
                o->metrics[o->nmetrics++] = get16(v + i);
            break;
        case PEER_CAP_ROUTE_REFRESH:
            o->route_refresh = 1;
            break;
        case PEER_CAP_MAX_MESSAGE:
            if (vl != 4)
                return fail(err, PEER_ERR_OPEN, PEER_SUB_CAPABILITY, "bad capability length");
            o->max_message = get32(v);
            break;
        default:
            if (!(flags & PEER_AF_OPTIONAL))
                return fail(err, PEER_ERR_OPEN, PEER_SUB_CAPABILITY, "unknown well-known capability");
            break;
        }
    }
    if (rc < 0)
        return fail(err, PEER_ERR_OPEN, PEER_SUB_CAPABILITY, "malformed capability list");
    if (!seen_rt || !seen_ct || !seen_fam)
        return fail(err, PEER_ERR_OPEN, PEER_SUB_CAPABILITY, "a well-known capability is missing");
    return 0;
}

/* Routes. */

/* Checks one encoded route at list[*pos]; advances. Returns 0 or -1 with *err. */
static int route_check(const uint8_t *list, size_t len, size_t *pos, struct peer_route *r,
                       struct peer_err *err)
{
    size_t left = len - *pos;
    const uint8_t *p = list + *pos;
    if (left < 2)
        return fail(err, PEER_ERR_UPDATE, PEER_SUB_BAD_AREA, "truncated route");
    memset(r, 0, sizeof(*r));
    r->kind = (enum peer_route_kind)p[0];
    switch (p[0]) {
    case PEER_R_AREA4:
    case PEER_R_AREA6: {
        unsigned width = p[0] == PEER_R_AREA4 ? 32 : 128;
        unsigned plen = p[1];
        if (plen > width)
            return fail(err, PEER_ERR_UPDATE, PEER_SUB_BAD_AREA, "prefix length out of range");
        size_t nb = (plen + 7) / 8;
        if (left < 2 + nb)
            return fail(err, PEER_ERR_UPDATE, PEER_SUB_BAD_AREA, "truncated prefix");
        memcpy(r->addr, p + 2, nb);
        if (plen % 8 && (r->addr[nb - 1] & (uint8_t)(0xff >> (plen % 8))))
            return fail(err, PEER_ERR_UPDATE, PEER_SUB_BAD_AREA, "bits set past the prefix length");
        r->plen = (uint8_t)plen;
        *pos += 2 + nb;
        return 0;
    }
    case PEER_R_PUBLISHER: {
        size_t n = p[1];
        if (n == 0 || n > PEER_MAX_HOST || left < 2 + n)
            return fail(err, PEER_ERR_UPDATE, PEER_SUB_BAD_CONTENT, "bad publisher name");
        for (size_t i = 0; i < n; i++) {
            uint8_t c = p[2 + i];
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'))
                return fail(err, PEER_ERR_UPDATE, PEER_SUB_BAD_CONTENT, "bad publisher name");
        }
        r->len = (uint16_t)n;
        r->text = (const char *)p + 2;
        *pos += 2 + n;
        return 0;
    }
    case PEER_R_URI: {
        if (left < 3)
            return fail(err, PEER_ERR_UPDATE, PEER_SUB_BAD_CONTENT, "truncated URI prefix");
        size_t n = get16(p + 1);
        if (n == 0 || n > PEER_MAX_URI || left < 3 + n)
            return fail(err, PEER_ERR_UPDATE, PEER_SUB_BAD_CONTENT, "bad URI prefix length");
        const char *t = (const char *)p + 3;
        if (!((n > 7 && memcmp(t, "http://", 7) == 0) || (n > 8 && memcmp(t, "https://", 8) == 0)))
            return fail(err, PEER_ERR_UPDATE, PEER_SUB_BAD_CONTENT, "URI prefix is not http(s)://");
        for (size_t i = 0; i < n; i++)
            if ((uint8_t)t[i] <= 0x20 || (uint8_t)t[i] >= 0x7f)
                return fail(err, PEER_ERR_UPDATE, PEER_SUB_BAD_CONTENT, "bad byte in URI prefix");
        r->len = (uint16_t)n;
        r->text = t;
        *pos += 3 + n;
        return 0;
    }
    default:
        return fail(err, PEER_ERR_UPDATE, PEER_SUB_BAD_CONTENT, "unknown route kind");
    }
}

int peer_route_next(const uint8_t *list, size_t len, size_t *pos, struct peer_route *r)
{
    if (*pos >= len)
        return 0;
    return route_check(list, len, pos, r, NULL) == 0;
}

static void route_put(struct buf *out, const struct peer_route *r)
{
    uint8_t h[3];
    switch (r->kind) {
    case PEER_R_AREA4:
    case PEER_R_AREA6:
        h[0] = (uint8_t)r->kind;
        h[1] = r->plen;
        buf_append(out, h, 2);
        buf_append(out, r->addr, (r->plen + 7u) / 8u);
        break;
    case PEER_R_PUBLISHER:
        h[0] = PEER_R_PUBLISHER;
        h[1] = (uint8_t)r->len;
        buf_append(out, h, 2);
        buf_append(out, r->text, r->len);
        break;
    case PEER_R_URI:
        h[0] = PEER_R_URI;
        put16(h + 1, r->len);
        buf_append(out, h, 3);
        buf_append(out, r->text, r->len);
        break;
    }
}

static size_t route_size(const struct peer_route *r)
{
    switch (r->kind) {
    case PEER_R_AREA4:
    case PEER_R_AREA6:
        return 2 + (r->plen + 7u) / 8u;
    case PEER_R_PUBLISHER:
        return 2 + r->len;
    case PEER_R_URI:
        return 3 + (size_t)r->len;
    }
    return 0;
}

/* UPDATE. */

/* Checks and decodes the attribute block. */
static int attrs_decode(const uint8_t *blk, size_t len, struct peer_attrs *a, struct peer_err *err)
{
    size_t pos = 0;
    uint8_t flags, type;
    const uint8_t *v;
    uint16_t vl;
    int rc;
    unsigned seen = 0;
    memset(a, 0, sizeof(*a));
    a->content_types = PEER_CT_STATIC;
    a->load = a->capacity = a->cost = UINT32_MAX; /* absent until a METRICS entry says */
    while ((rc = tlv_next(blk, len, &pos, &flags, &type, &v, &vl)) == 1) {
        if (type >= 1 && type <= 6) {
            if (seen & (1u << type))
                return fail(err, PEER_ERR_UPDATE, PEER_SUB_ATTR_LIST, "attribute repeated");
            seen |= 1u << type;
        }
        int optional = (flags & PEER_AF_OPTIONAL) != 0;
        switch (type) {
        case PEER_ATTR_PATH: {
            if (optional)
                return fail(err, PEER_ERR_UPDATE, PEER_SUB_ATTR_FLAGS, "PATH marked optional");
            if (vl < 1 || v[0] == 0 || v[0] > PEER_MAX_PATH)
                return fail(err, PEER_ERR_UPDATE, PEER_SUB_BAD_PATH, "PATH length");
            size_t off = 1;
            for (unsigned i = 0; i < v[0]; i++) {
                if (off >= vl || off + 1 + v[off] > vl || !peer_id_valid((const char *)v + off + 1, v[off]))
                    return fail(err, PEER_ERR_UPDATE, PEER_SUB_BAD_PATH, "bad CDN id in PATH");
                off += 1u + v[off];
            }
            if (off != vl)
                return fail(err, PEER_ERR_UPDATE, PEER_SUB_BAD_PATH, "trailing bytes in PATH");
            a->npath = v[0];
            a->path = v + 1;
            break;
        }
        case PEER_ATTR_HANDOFF: {
            if (optional)
                return fail(err, PEER_ERR_UPDATE, PEER_SUB_ATTR_FLAGS, "HANDOFF marked optional");
            size_t off = 0;
            while (off < vl) {
                if (vl - off < 3 || a->nhandoff == PEER_MAX_HANDOFFS)
                    return fail(err, PEER_ERR_UPDATE, PEER_SUB_ATTR_LENGTH, "bad HANDOFF");
                uint8_t m = v[off];
                uint16_t tl = get16(v + off + 1);
                if (m < PEER_HO_CNAME || m > PEER_HO_HTTP || tl == 0 || tl > PEER_MAX_TARGET ||
                    vl - off - 3 < tl)
                    return fail(err, PEER_ERR_UPDATE, PEER_SUB_ATTR_LENGTH, "bad HANDOFF entry");
                const char *t = (const char *)v + off + 3;
                for (unsigned i = 0; i < tl; i++)
                    if ((uint8_t)t[i] < 0x20 || (uint8_t)t[i] >= 0x7f)
                        return fail(err, PEER_ERR_UPDATE, PEER_SUB_ATTR_LENGTH, "bad byte in HANDOFF");
                struct peer_handoff_target *h = &a->handoff[a->nhandoff++];
                h->method = (enum peer_handoff)m;
                h->len = tl;
                h->target = t;
                off += 3u + tl;
            }
            if (a->nhandoff == 0)
                return fail(err, PEER_ERR_UPDATE, PEER_SUB_ATTR_LENGTH, "empty HANDOFF");
            break;
        }
        case PEER_ATTR_METRICS:
            if (vl % 6)
                return fail(err, PEER_ERR_UPDATE, PEER_SUB_ATTR_LENGTH, "METRICS length");
            a->has_metrics = 1; /* an id not sent stays absent (UINT32_MAX), not 0 */
            for (unsigned i = 0; i < vl; i += 6) {
                uint32_t val = get32(v + i + 2);
                switch (get16(v + i)) {
                case PEER_METRIC_LOAD: a->load = val; break;
                case PEER_METRIC_CAPACITY: a->capacity = val; break;
                case PEER_METRIC_COST: a->cost = val; break;
                default: break; /* unknown metrics are ignored (and the block is carried as is) */
                }
            }
            break;
        case PEER_ATTR_CONTENT_TYPES:
            if (optional)
                return fail(err, PEER_ERR_UPDATE, PEER_SUB_ATTR_FLAGS, "CONTENT-TYPES marked optional");
            if (vl != 1)
                return fail(err, PEER_ERR_UPDATE, PEER_SUB_ATTR_LENGTH, "CONTENT-TYPES length");
            a->content_types = v[0];
            break;
        case PEER_ATTR_DISTRIBUTION:
            if (vl != 1)
                return fail(err, PEER_ERR_UPDATE, PEER_SUB_ATTR_LENGTH, "DISTRIBUTION length");
            a->distribution = v[0];
            break;
        case PEER_ATTR_AUTHORITATIVE:
            if (!peer_id_valid((const char *)v, vl))
                return fail(err, PEER_ERR_UPDATE, PEER_SUB_ATTR_LENGTH, "bad AUTHORITATIVE id");
            a->authoritative = v;
            a->authoritative_len = (uint8_t)vl;
            break;
        default:
            if (!optional)
                return fail(err, PEER_ERR_UPDATE, PEER_SUB_UNKNOWN_WELL_KNOWN, "unknown well-known attribute");
            if (flags & PEER_AF_TRANSITIVE)
                a->nunknown++;
            break;
        }
    }
    if (rc < 0)
        return fail(err, PEER_ERR_UPDATE, PEER_SUB_ATTR_LIST, "malformed attribute list");
    return 0;
}

int peer_decode_update(const uint8_t *msg, size_t len, struct peer_update *u, struct peer_err *err)
{
    memset(u, 0, sizeof(*u));
    if (len < PEER_HDR_LEN + 8 || get32(msg) != len || msg[4] != PEER_UPDATE)
        return fail(err, PEER_ERR_HEADER, PEER_SUB_BAD_LENGTH, "UPDATE too short");
    const uint8_t *p = msg + PEER_HDR_LEN;
    size_t n = len - PEER_HDR_LEN;
    uint32_t wl = get32(p);
    if (wl > n - 8)
        return fail(err, PEER_ERR_UPDATE, PEER_SUB_ATTR_LIST, "withdrawn length beyond the message");
    uint32_t al = get32(p + 4 + wl);
    if (al > n - 8 - wl)
        return fail(err, PEER_ERR_UPDATE, PEER_SUB_ATTR_LIST, "attribute length beyond the message");
    u->withdrawn = p + 4;
    u->withdrawn_len = wl;
    u->attrs_raw = p + 8 + wl;
    u->attrs_len = al;
    u->announced = p + 8 + wl + al;
    u->announced_len = n - 8 - wl - al;
    struct peer_route r;
    for (size_t pos = 0; pos < u->withdrawn_len;)
        if (route_check(u->withdrawn, u->withdrawn_len, &pos, &r, err) < 0)
            return -1;
    for (size_t pos = 0; pos < u->announced_len;)
        if (route_check(u->announced, u->announced_len, &pos, &r, err) < 0)
            return -1;
    if (attrs_decode(u->attrs_raw, u->attrs_len, &u->attrs, err) < 0)
        return -1;
    if (u->announced_len && (u->attrs.npath == 0 || u->attrs.nhandoff == 0))
        return fail(err, PEER_ERR_UPDATE, PEER_SUB_MISSING_WELL_KNOWN, "announcement without PATH or HANDOFF");
    return 0;
}

void peer_attrs_carry(const uint8_t *blk, size_t len, struct buf *out)
{
    size_t pos = 0;
    uint8_t flags, type;
    const uint8_t *v;
    uint16_t vl;
    while (tlv_next(blk, len, &pos, &flags, &type, &v, &vl) == 1)
        if ((type < 1 || type > 6) && (flags & PEER_AF_OPTIONAL) && (flags & PEER_AF_TRANSITIVE))
            buf_append(out, v - 4, 4u + vl);
}

int peer_update_is_eor(const struct peer_update *u)
{
    return u->withdrawn_len == 0 && u->attrs_len == 0 && u->announced_len == 0;
}

void peer_path_id(const struct peer_attrs *a, unsigned i, const uint8_t **id, uint8_t *len)
{
    const uint8_t *p = a->path;
    for (unsigned k = 0; k < i; k++)
        p += 1 + p[0];
    *len = p[0];
    *id = p + 1;
}

void peer_update_begin(struct peer_update_writer *w, struct buf *out, uint32_t max)
{
    w->out = out;
    w->max = max;
    w->start = begin_msg(out, PEER_UPDATE);
    w->wlen_at = out->len;
    uint8_t z[4] = {0};
    buf_append(out, z, 4);
    w->alen_at = 0;
    w->stage = 0;
}

static int fits(const struct peer_update_writer *w, size_t more)
{
    /* the attribute length field is still to come while in stage 0 */
    size_t pending = w->stage == 0 ? 4 : 0;
    return w->out->len - w->start + more + pending <= w->max;
}

int peer_update_withdraw(struct peer_update_writer *w, const struct peer_route *r)
{
    if (w->stage != 0 || !fits(w, route_size(r)))
        return -1;
    route_put(w->out, r);
    return 0;
}

static void close_withdrawn(struct peer_update_writer *w)
{
    if (w->stage != 0)
        return;
    put32((uint8_t *)w->out->data + w->wlen_at, (uint32_t)(w->out->len - w->wlen_at - 4));
    w->alen_at = w->out->len;
    uint8_t z[4] = {0};
    buf_append(w->out, z, 4);
    w->stage = 1;
}

int peer_update_attrs(struct peer_update_writer *w, const char *const *path, unsigned npath,
                      const struct peer_handoff_target *ho, unsigned nho, const struct peer_attrs *m,
                      const uint8_t *extra, size_t extra_len)
{
    if (w->stage > 1 || npath == 0 || npath > PEER_MAX_PATH || nho == 0 || nho > PEER_MAX_HANDOFFS)
        return -1;
    close_withdrawn(w);
    size_t before = w->out->len;
    uint8_t tmp[1 + PEER_MAX_PATH * (1 + PEER_MAX_ID)];
    size_t off = 1;
    tmp[0] = (uint8_t)npath;
    for (unsigned i = 0; i < npath; i++) {
        size_t l = strlen(path[i]);
        if (l == 0 || l > PEER_MAX_ID)
            goto undo;
        tmp[off++] = (uint8_t)l;
        memcpy(tmp + off, path[i], l);
        off += l;
    }
    put_attr(w->out, 0, PEER_ATTR_PATH, tmp, (uint16_t)off);
    uint8_t hb[PEER_MAX_HANDOFFS * (3 + PEER_MAX_TARGET)];
    off = 0;
    for (unsigned i = 0; i < nho; i++) {
        if (ho[i].len == 0 || ho[i].len > PEER_MAX_TARGET)
            goto undo;
        hb[off] = (uint8_t)ho[i].method;
        put16(hb + off + 1, ho[i].len);
        memcpy(hb + off + 3, ho[i].target, ho[i].len);
        off += 3u + ho[i].len;
    }
    put_attr(w->out, 0, PEER_ATTR_HANDOFF, hb, (uint16_t)off);
    if (m && m->has_metrics) {
        /* only the metrics we have: UINT32_MAX means absent */
        uint8_t mb[18];
        size_t ml = 0;
        const uint32_t vals[3] = {m->load, m->capacity, m->cost};
        for (unsigned i = 0; i < 3; i++) {
            if (vals[i] == UINT32_MAX)
                continue;
            put16(mb + ml, (uint16_t)(PEER_METRIC_LOAD + i));
            put32(mb + ml + 2, vals[i]);
            ml += 6;
        }
        if (ml)
            put_attr(w->out, PEER_AF_OPTIONAL | PEER_AF_TRANSITIVE, PEER_ATTR_METRICS, mb, (uint16_t)ml);
    }
    if (m && m->content_types != PEER_CT_STATIC)
        put_attr(w->out, 0, PEER_ATTR_CONTENT_TYPES, &m->content_types, 1);
    if (m && m->distribution)
        put_attr(w->out, PEER_AF_OPTIONAL | PEER_AF_TRANSITIVE, PEER_ATTR_DISTRIBUTION, &m->distribution, 1);
    if (m && m->authoritative)
        put_attr(w->out, PEER_AF_OPTIONAL | PEER_AF_TRANSITIVE, PEER_ATTR_AUTHORITATIVE, m->authoritative,
                 m->authoritative_len);
    if (extra_len) {
        /* carried-on attributes are marked PARTIAL: a CDN on the path did not understand them */
        size_t at = w->out->len;
        buf_append(w->out, extra, extra_len);
        for (size_t pos = 0; pos + 4 <= extra_len;) {
            uint8_t *a = (uint8_t *)w->out->data + at + pos;
            a[0] |= PEER_AF_PARTIAL;
            pos += 4u + get16(a + 2);
        }
    }
    if (!fits(w, 0))
        goto undo;
    put32((uint8_t *)w->out->data + w->alen_at, (uint32_t)(w->out->len - w->alen_at - 4));
    w->stage = 2;
    return 0;
undo:
    w->out->len = before;
    return -1;
}

int peer_update_announce(struct peer_update_writer *w, const struct peer_route *r)
{
    if (w->stage != 2 || !fits(w, route_size(r)))
        return -1;
    route_put(w->out, r);
    return 0;
}

size_t peer_update_end(struct peer_update_writer *w)
{
    close_withdrawn(w);
    end_msg(w->out, w->start);
    return w->out->len - w->start;
}

/* The small ones. */

void peer_encode_keepalive(struct buf *out)
{
    size_t at = begin_msg(out, PEER_KEEPALIVE);
    end_msg(out, at);
}

int peer_decode_keepalive(const uint8_t *msg, size_t len, struct peer_err *err)
{
    if (len != PEER_HDR_LEN || get32(msg) != len || msg[4] != PEER_KEEPALIVE)
        return fail(err, PEER_ERR_HEADER, PEER_SUB_BAD_LENGTH, "KEEPALIVE with a body");
    return 0;
}

void peer_encode_notification(struct buf *out, uint8_t code, uint8_t subcode, const void *data,
                              size_t len)
{
    size_t at = begin_msg(out, PEER_NOTIFICATION);
    uint8_t h[2] = {code, subcode};
    buf_append(out, h, 2);
    if (len > 1024)
        len = 1024;
    if (len)
        buf_append(out, data, len);
    end_msg(out, at);
}

int peer_decode_notification(const uint8_t *msg, size_t len, uint8_t *code, uint8_t *subcode,
                             const uint8_t **data, size_t *dlen, struct peer_err *err)
{
    if (len < PEER_HDR_LEN + 2 || get32(msg) != len || msg[4] != PEER_NOTIFICATION)
        return fail(err, PEER_ERR_HEADER, PEER_SUB_BAD_LENGTH, "NOTIFICATION too short");
    *code = msg[6];
    *subcode = msg[7];
    *data = msg + 8;
    *dlen = len - 8;
    return 0;
}

void peer_encode_route_refresh(struct buf *out, uint8_t family)
{
    size_t at = begin_msg(out, PEER_ROUTE_REFRESH);
    buf_append(out, &family, 1);
    end_msg(out, at);
}

int peer_decode_route_refresh(const uint8_t *msg, size_t len, uint8_t *family, struct peer_err *err)
{
    if (len != PEER_HDR_LEN + 1 || get32(msg) != len || msg[4] != PEER_ROUTE_REFRESH)
        return fail(err, PEER_ERR_HEADER, PEER_SUB_BAD_LENGTH, "ROUTE-REFRESH length");
    *family = msg[6];
    return 0;
}

const char *peer_err_text(uint8_t code, uint8_t subcode)
{
    switch (code) {
    case PEER_ERR_HEADER:
        return subcode == PEER_SUB_BAD_TYPE ? "header error: bad type" : "header error: bad length";
    case PEER_ERR_OPEN:
        switch (subcode) {
        case PEER_SUB_VERSION: return "OPEN error: unsupported version";
        case PEER_SUB_BAD_ID: return "OPEN error: bad CDN id";
        case PEER_SUB_HOLD_TIME: return "OPEN error: unacceptable hold time";
        case PEER_SUB_CAPABILITY: return "OPEN error: unsupported or no common capability";
        case PEER_SUB_AUTH: return "OPEN error: authentication failure";
        default: return "OPEN error";
        }
    case PEER_ERR_UPDATE:
        switch (subcode) {
        case PEER_SUB_ATTR_LIST: return "UPDATE error: malformed attribute list";
        case PEER_SUB_UNKNOWN_WELL_KNOWN: return "UPDATE error: unrecognized well-known attribute";
        case PEER_SUB_MISSING_WELL_KNOWN: return "UPDATE error: missing well-known attribute";
        case PEER_SUB_ATTR_FLAGS: return "UPDATE error: attribute flags";
        case PEER_SUB_ATTR_LENGTH: return "UPDATE error: attribute length";
        case PEER_SUB_BAD_AREA: return "UPDATE error: invalid area";
        case PEER_SUB_BAD_PATH: return "UPDATE error: malformed PATH";
        case PEER_SUB_BAD_CONTENT: return "UPDATE error: invalid content unit";
        default: return "UPDATE error";
        }
    case PEER_ERR_HOLD:
        return "hold timer expired";
    case PEER_ERR_FSM:
        return "state machine error";
    case PEER_ERR_CEASE:
        switch (subcode) {
        case PEER_SUB_SHUTDOWN: return "cease: administrative shutdown";
        case PEER_SUB_RESET: return "cease: administrative reset";
        case PEER_SUB_REJECTED: return "cease: connection rejected";
        case PEER_SUB_COLLISION: return "cease: connection collision resolution";
        case PEER_SUB_TOO_MANY: return "cease: too many routes";
        case PEER_SUB_CONFIG: return "cease: configuration change";
        default: return "cease";
        }
    default:
        return "unknown error";
    }
}
