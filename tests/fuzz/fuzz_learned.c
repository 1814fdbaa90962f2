/*
 * fuzz_learned -- the router's reading of learned routes (rt__learned_create):
 * the hand-off targets a peer CDN advertised arrive as text over the peering
 * protocol and are parsed here (a CNAME zone, "NSNAME ADDR...", "ADDR:PORT",
 * a base URL). The input is split at NUL bytes into: the advertiser's CDN id,
 * then up to four hand-offs (a method byte, then the text), then content
 * units; each of the three hand-off preferences is tried.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/feed.h"
#include "lib/util.h"
#include "router/internal.h"

/* The next NUL-terminated piece of the input, or NULL at the end. */
static const char *piece(const uint8_t *data, size_t size, size_t *pos, size_t *len)
{
    if (*pos >= size)
        return NULL;
    const char *s = (const char *)data + *pos;
    const void *z = memchr(s, 0, size - *pos);
    *len = z ? (size_t)((const char *)z - s) : size - *pos;
    *pos += *len + 1;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct feed_snapshot *s = feed_snapshot_create();
    s->targets = xcalloc(1, sizeof(*s->targets));
    s->ntargets = 1;
    struct feed_target *t = &s->targets[0];
    size_t pos = 0, len;
    const char *p = piece(data, size, &pos, &len);
    if (p)
        memcpy(t->cdn, p, len < FEED_MAX_ID ? len : FEED_MAX_ID);
    t->npath = 1;
    memcpy(t->path[0], t->cdn, sizeof(t->path[0]));
    t->load = t->capacity = t->cost = FEED_NO_METRIC;
    while (t->nhandoff < FEED_MAX_HANDOFFS && (p = piece(data, size, &pos, &len)) && len > 0) {
        t->handoff[t->nhandoff].method = (enum feed_method)((uint8_t)p[0] % 6);
        size_t n = len - 1 < FEED_MAX_TARGET ? len - 1 : FEED_MAX_TARGET;
        memcpy(t->handoff[t->nhandoff].target, p + 1, n);
        t->nhandoff++;
    }
    while ((p = piece(data, size, &pos, &len)) && s->nunits < 8) {
        s->units = xrealloc(s->units, (s->nunits + 1) * sizeof(*s->units));
        s->units[s->nunits].uri = len && p[0] == 'h';
        s->units[s->nunits].text = xstrndup(p, len);
        s->units[s->nunits].target = 0;
        s->nunits++;
    }
    s->areas = xcalloc(2, sizeof(*s->areas));
    s->areas[0] = (struct feed_area){.family = 4, .plen = 24, .addr = {198, 51, 100}, .target = 0};
    s->areas[1] = (struct feed_area){.family = 6, .plen = 32, .addr = {0x20, 0x01, 0x0d, 0xb8}, .target = 0};
    s->nareas = 2;
    for (int prefer = RT_H_CNAME; prefer <= RT_H_ECS; prefer++) {
        struct rt_learned *l = NULL;
        if (rt__learned_create(s, "alpha", (enum rt_handoff)prefer, &l) == 0)
            rt__learned_unref(l);
    }
    feed_unref(s);
    return 0;
}
