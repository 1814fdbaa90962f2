/*
 * fuzz_peer_msg -- the peering protocol's message decoders on arbitrary
 * bytes. Whatever decodes must re-encode to a message that decodes to the
 * same routes and attributes (the round trip the speaker relies on when it
 * re-advertises what it learned); whatever fails must name a NOTIFICATION.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "peer/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_update(const uint8_t *data, size_t size)
{
    struct peer_update u;
    struct peer_err err;
    if (peer_decode_update(data, size, &u, &err) < 0) {
        if (err.code != PEER_ERR_HEADER && err.code != PEER_ERR_UPDATE)
            abort();
        return;
    }
    /* re-encode: withdrawals, attributes (with the carried ones), announcements */
    struct buf out, carry;
    buf_init(&out);
    buf_init(&carry);
    struct peer_update_writer w;
    peer_update_begin(&w, &out, PEER_MAX_MSG_LIMIT);
    struct peer_route r;
    size_t pos = 0, nw = 0, na = 0;
    while (peer_route_next(u.withdrawn, u.withdrawn_len, &pos, &r)) {
        if (peer_update_withdraw(&w, &r) < 0)
            abort();
        nw++;
    }
    if (u.announced_len) {
        char ids[PEER_MAX_PATH][PEER_MAX_ID + 1];
        const char *path[PEER_MAX_PATH];
        for (unsigned i = 0; i < u.attrs.npath; i++) {
            const uint8_t *id;
            uint8_t l;
            peer_path_id(&u.attrs, i, &id, &l);
            memcpy(ids[i], id, l);
            ids[i][l] = 0;
            path[i] = ids[i];
        }
        peer_attrs_carry(u.attrs_raw, u.attrs_len, &carry);
        if (peer_update_attrs(&w, path, u.attrs.npath, u.attrs.handoff, u.attrs.nhandoff, &u.attrs,
                              (const uint8_t *)carry.data, carry.len) < 0)
            abort();
        pos = 0;
        while (peer_route_next(u.announced, u.announced_len, &pos, &r)) {
            if (peer_update_announce(&w, &r) < 0)
                abort();
            na++;
        }
    }
    size_t len = peer_update_end(&w);
    struct peer_update v;
    if (peer_decode_update((const uint8_t *)out.data, len, &v, &err) < 0)
        abort();
    if (v.withdrawn_len != u.withdrawn_len || v.announced_len != u.announced_len ||
        memcmp(v.withdrawn, u.withdrawn, u.withdrawn_len) != 0 ||
        memcmp(v.announced, u.announced, u.announced_len) != 0)
        abort();
    if (u.announced_len && (v.attrs.npath != u.attrs.npath || v.attrs.nhandoff != u.attrs.nhandoff ||
                            v.attrs.nunknown != u.attrs.nunknown || v.attrs.load != u.attrs.load ||
                            v.attrs.content_types != u.attrs.content_types))
        abort();
    (void)nw;
    (void)na;
    buf_fini(&out);
    buf_fini(&carry);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t type;
    struct peer_err err;
    long n = peer_frame(data, size, PEER_MAX_MSG_LIMIT, &type, &err);
    if (n <= 0)
        return 0;
    switch (type) {
    case PEER_OPEN: {
        struct peer_open o;
        if (peer_decode_open(data, (size_t)n, &o, &err) == 0) {
            struct buf out;
            buf_init(&out);
            peer_encode_open(&out, &o);
            struct peer_open o2;
            if (peer_decode_open((const uint8_t *)out.data, out.len, &o2, &err) < 0 ||
                strcmp(o.id, o2.id) != 0 || o.hold_time != o2.hold_time || o.families != o2.families)
                abort();
            buf_fini(&out);
        }
        break;
    }
    case PEER_UPDATE:
        check_update(data, (size_t)n);
        break;
    case PEER_NOTIFICATION: {
        uint8_t c, s;
        const uint8_t *d;
        size_t dl;
        if (peer_decode_notification(data, (size_t)n, &c, &s, &d, &dl, &err) == 0)
            (void)peer_err_text(c, s);
        break;
    }
    case PEER_KEEPALIVE:
        peer_decode_keepalive(data, (size_t)n, &err);
        break;
    case PEER_ROUTE_REFRESH: {
        uint8_t fam;
        peer_decode_route_refresh(data, (size_t)n, &fam, &err);
        break;
    }
    default:
        abort();
    }
    return 0;
}
