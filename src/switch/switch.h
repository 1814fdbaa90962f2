/*
 * switch -- the switch role (the patent's content-aware switch, FIG 1 item
 * 135): the front of a CDN node. It accepts TCP connections, reads only
 * the TLS ClientHello (never decrypts; or, on a plain HTTP listener, at
 * most the request head), picks one cache server of its node group with a
 * configurable policy chain, and relays the connection to it with splice.
 * A resumption is sent back to the cache that holds its session: the
 * caches write their label into session IDs, stateful TLS 1.3 tickets and
 * stateless ticket key names (DESIGN.md contract 1), and the switch reads
 * it from the ClientHello without any secret.
 *
 * Files: switch.c (config, settings, role interface, admin API), relay.c
 * (connections), policy.c (the chain), rendezvous.c (consistent hash),
 * sticky.c (client table with expiry), pool.c (backends, health checks).
 * docs/switch.md is the user's guide.
 */
#ifndef FERRY_SWITCH_SWITCH_H
#define FERRY_SWITCH_SWITCH_H

#include "lib/role.h"

extern const struct role_ops switch_role;
extern const struct conf_opt switch_opts[];

#endif
