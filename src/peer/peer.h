/*
 * peer -- the `peer` role: this CDN's speaker of the peering protocol
 * (docs/peering-protocol.md). The operator's guide is docs/peering.md;
 * internal.h says which file does what.
 */
#ifndef FERRY_PEER_PEER_H
#define FERRY_PEER_PEER_H

#include "lib/role.h"

extern const struct role_ops peer_role;
extern const struct conf_opt peer_opts[];

#endif
