/*
 * rendezvous -- keyed hashing and rendezvous (highest random weight)
 * hashing for the switch.
 *
 * Every backend gets a 64-bit identity from its name; a client (or a URL)
 * gets a 64-bit hash; the backend with the highest score(hash, identity)
 * among those allowed wins. Removing a backend moves exactly the keys that
 * had it as their winner (each to its second choice) and no others, and
 * adding one takes about 1/(n+1) of the keys, all from the others -- the
 * minimal disruption the patent's [0020] asks of a consistent hash. The
 * cost is O(n) per decision, which is nothing for a node group of caches.
 *
 * Hashes are SipHash-2-4 under a 128-bit key: the switch's config sets
 * the key (`hash_seed`) so that every switch of a node agrees, and a
 * client cannot pick addresses that collide without knowing it.
 */
#ifndef FERRY_SWITCH_RENDEZVOUS_H
#define FERRY_SWITCH_RENDEZVOUS_H

#include <stddef.h>
#include <stdint.h>

struct sw_hash_key {
    uint64_t k0, k1;
};

/* SipHash-2-4 of p[0..n) under key k. */
uint64_t sw_siphash(const struct sw_hash_key *k, const void *p, size_t n);

/* Derives a key from a seed string (SipHash of the seed under a fixed key, twice). */
void sw_hash_key_from_seed(const char *seed, struct sw_hash_key *out);

/* The rendezvous score of backend identity id for key hash h: higher wins. */
static inline uint64_t sw_rdv_score(uint64_t h, uint64_t id)
{
    /* splitmix64's finalizer over the pair: ids and hashes are already
     * uniform, the mix makes the order of backends independent per key. */
    uint64_t z = h ^ (id * 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#endif
