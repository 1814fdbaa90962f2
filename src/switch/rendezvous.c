/*
 * rendezvous -- see rendezvous.h. SipHash-2-4 as specified by Aumasson and
 * Bernstein ("SipHash: a fast short-input PRF", 2012), little-endian.
 */
#include "switch/rendezvous.h"

#include <string.h>

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

uint64_t sw_siphash(const struct sw_hash_key *k, const void *data, size_t n)
{
    const uint8_t *p = data;
    uint64_t v0 = 0x736f6d6570736575ull ^ k->k0;
    uint64_t v1 = 0x646f72616e646f6dull ^ k->k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ k->k0;
    uint64_t v3 = 0x7465646279746573ull ^ k->k1;
    uint64_t b = (uint64_t)n << 56;
    size_t i;

    for (i = 0; i + 8 <= n; i += 8) {
        uint64_t m = le64(p + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t j = 0; i + j < n; j++)
        b |= (uint64_t)p[i + j] << (8 * j);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

void sw_hash_key_from_seed(const char *seed, struct sw_hash_key *out)
{
    static const struct sw_hash_key fixed = {0x6665727279207377ull, 0x6974636820736565ull};
    size_t n = strlen(seed);
    out->k0 = sw_siphash(&fixed, seed, n);
    struct sw_hash_key k2 = {fixed.k1, fixed.k0};
    out->k1 = sw_siphash(&k2, seed, n);
}
