/*
 * area -- the router's area table: a longest-prefix-match map from IPv4 and
 * IPv6 client prefixes to a value (the router stores an index into its
 * list of area entries: which nodes or which peer CDN serve the prefix).
 *
 * Built for internet scale: a million prefixes or more. A table is built
 * once by an area_builder and is immutable afterwards, so any number of
 * threads may look up in it at once without locks. Replacing the table is
 * the caller's business: build a new one off the answering path, publish
 * the pointer atomically, and free the old one once no reader can hold it
 * (the router does this with its workers' quiescent points).
 *
 * Lookups also return the ECS scope: the shortest prefix length of the
 * client address for which every address inside gives the same result.
 * That is what RFC 7871 section 7.2.1 asks a server to put in SCOPE
 * PREFIX-LENGTH, so a resolver may reuse the answer for exactly the
 * addresses it is valid for.
 */
#ifndef FERRY_ROUTER_AREA_H
#define FERRY_ROUTER_AREA_H

#include <stddef.h>
#include <stdint.h>

#define AREA_NONE UINT32_MAX  /* lookup result when no prefix covers the address */

struct area_builder;
struct area_table;

struct area_builder *area_builder_new(void);

/*
 * Adds prefix addr/plen (family 4: addr is 4 bytes; family 6: 16 bytes;
 * bits past plen are ignored) with `value` (any value but AREA_NONE). When
 * the same prefix is added twice, the last value wins. Returns 0, or -1 on
 * a bad family or plen, or when memory runs out. (Also -1, leaving the
 * builder as it was: a NULL builder or addr, the value AREA_NONE, or a
 * family past 2^30 distinct prefixes.)
 */
int area_builder_add(struct area_builder *b, int family, const uint8_t *addr, unsigned plen,
                     uint32_t value);

/* Prefixes added so far (duplicates counted once). */
size_t area_builder_count(const struct area_builder *b);

/*
 * Builds the lookup structure and frees the builder (on failure too).
 * Returns NULL only when memory runs out.
 */
struct area_table *area_builder_finish(struct area_builder *b);
void area_builder_free(struct area_builder *b);

/*
 * Longest-prefix match. `addr4` is in network byte order as 4 bytes;
 * `addr6` is 16 bytes. Returns the value of the longest prefix covering
 * the address, or AREA_NONE. When `scope` is non-NULL it receives the ECS
 * scope described above (0..32 or 0..128). When `plen` is non-NULL it
 * receives the length of the matched prefix (0 when none).
 */
uint32_t area_lookup4(const struct area_table *t, const uint8_t addr4[4], unsigned *scope,
                      unsigned *plen);
uint32_t area_lookup6(const struct area_table *t, const uint8_t addr6[16], unsigned *scope,
                      unsigned *plen);

/*
 * The same lookups with a strict scope: the shortest prefix of the address
 * inside which every address gets the same value and the same matched
 * prefix length. It is never shorter than the scope above (which only
 * keeps the value). A caller that compares matched lengths across tables
 * (the router's static and learned areas) needs it, or the winner could
 * change inside the scope it promises.
 */
uint32_t area_lookup4_strict(const struct area_table *t, const uint8_t addr4[4], unsigned *scope,
                             unsigned *plen);
uint32_t area_lookup6_strict(const struct area_table *t, const uint8_t addr6[16], unsigned *scope,
                             unsigned *plen);

/* Prefixes in the table, per family. */
size_t area_table_count(const struct area_table *t, int family);

/* Bytes of memory the table holds. */
size_t area_table_memory(const struct area_table *t);

void area_table_free(struct area_table *t);

/*
 * Parses a prefix in text: "192.0.2.0/24", "2001:db8::/32", or a bare
 * address (a host prefix). Returns 0 and fills family (4 or 6), addr and
 * plen, or -1.
 */
int area_parse_prefix(const char *text, int *family, uint8_t addr[16], unsigned *plen);

#endif
