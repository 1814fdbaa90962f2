/*
 * proxyproto -- the PROXY protocol version 2 header (HAProxy's spec,
 * "The PROXY protocol", section 2.2): a binary preamble a relay sends
 * before the client's bytes so that the server learns the client's real
 * address. The switch writes it; the cache's listeners marked
 * proxy_protocol read it.
 *
 * Layout: 12-byte signature, version/command byte (0x21 PROXY, 0x20
 * LOCAL), family/transport byte (0x11 TCP over IPv4, 0x21 TCP over IPv6,
 * 0x00 UNSPEC), 16-bit big-endian length of what follows, then the
 * addresses (IPv4: src, dst, sport, dport = 12 bytes; IPv6: 36 bytes) and
 * optional TLVs, which are skipped. Pure functions; no allocation.
 */
#ifndef FERRY_LIB_PROXYPROTO_H
#define FERRY_LIB_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "lib/net.h"

#define PROXY_V2_MAX 536 /* 16-byte header + the largest body we accept */

/*
 * Parses a header from data[0..len). Returns the header's length (>0) when
 * complete, 0 when more bytes are needed, -1 when the bytes are not a valid
 * v2 header (wrong signature, version, command, family, or a length that
 * cannot hold the addresses or exceeds PROXY_V2_MAX). For PROXY over
 * TCP4/TCP6, *src and *dst get the addresses and *has_addr is 1; for LOCAL
 * or UNSPEC *has_addr is 0 (keep the connection's own addresses).
 */
int proxy_v2_parse(const uint8_t *data, size_t len, struct net_addr *src, struct net_addr *dst,
                   int *has_addr);

/*
 * Writes a PROXY header for a TCP connection from src to dst into out
 * (at least 52 bytes). src and dst must be the same family. Returns the
 * length written, or -1 for an unsupported family.
 */
int proxy_v2_write(const struct net_addr *src, const struct net_addr *dst, uint8_t *out,
                   size_t outlen);

#endif
