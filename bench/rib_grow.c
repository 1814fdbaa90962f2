/*
 * rib_grow -- how long single insertions into the peering RIB
 * (src/peer/rib.c) take while it grows to a full table: the longest one
 * is how long a table load holds the peer role's loop at once, whatever
 * the session's read slices. Each prefix is added as one of our own routes
 * (rib_originate), which goes through the same destination table as a
 * learned one.
 *
 *   rib_grow [NPREFIXES]      default 1,000,000 distinct IPv4 /24s
 *
 * Prints the total, the longest single insertion and where it happened,
 * and the longest run of 25,000 insertions (about what one 128 KiB read
 * slice of a session carries).
 *
 * Build (after the default build):
 *   gcc -std=gnu11 -O2 -D_GNU_SOURCE -Isrc -o build/rib_grow bench/rib_grow.c \
 *       build/libferry_roles.a build/libferry_proto.a build/libferry_lib.a \
 *       build/libferry_tls.a -lssl -lcrypto -lpthread -lm
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "peer/rib.h"

static void on_change(void *arg, const struct rib_dest *d, const struct rib_route *old,
                      const struct rib_route *now)
{
    (void)arg, (void)d, (void)old, (void)now;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    unsigned n = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 1000000u;
    if (n == 0 || n > (1u << 24)) {
        fprintf(stderr, "usage: rib_grow [NPREFIXES <= 16777216]\n");
        return 2;
    }
    struct rib *r = rib_create("bench", on_change, NULL);
    struct rib_origin o;
    memset(&o, 0, sizeof(o));
    o.nhandoff = 1;
    o.handoff[0].method = PEER_HO_CNAME;
    o.handoff[0].target = "cdn.bench.test";
    o.handoff[0].len = (uint16_t)strlen(o.handoff[0].target);
    o.content_types = PEER_CT_STATIC;
    double worst = 0, worst_run = 0, t0 = now_ms(), run0 = t0;
    unsigned worst_at = 0;
    for (unsigned i = 0; i < n; i++) {
        struct peer_route d;
        memset(&d, 0, sizeof(d));
        d.kind = PEER_R_AREA4;
        d.plen = 24;
        uint32_t v = 0x01000000u + (i << 8); /* 1.0.0.0/24 upwards */
        d.addr[0] = (uint8_t)(v >> 24);
        d.addr[1] = (uint8_t)(v >> 16);
        d.addr[2] = (uint8_t)(v >> 8);
        double a = now_ms();
        rib_originate(r, &d, &o);
        double took = now_ms() - a;
        if (took > worst) {
            worst = took;
            worst_at = i + 1;
        }
        if ((i + 1) % 25000 == 0 || i + 1 == n) {
            double run = now_ms() - run0;
            if (run > worst_run)
                worst_run = run;
            run0 = now_ms();
        }
    }
    printf("prefixes=%u total_ms=%.0f longest_insert_ms=%.1f at_destination=%u longest_25k_ms=%.1f\n", n,
           now_ms() - t0, worst, worst_at, worst_run);
    rib_destroy(r);
    return 0;
}
