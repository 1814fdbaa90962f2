/*
 * router -- the request routing role: authoritative DNS and HTTP redirects
 * that pick a node of this CDN or hand the client to a peer CDN. The
 * operator's guide is docs/router.md; router.c says which file does what.
 */
#ifndef FERRY_ROUTER_ROUTER_H
#define FERRY_ROUTER_ROUTER_H

#include "lib/role.h"

extern const struct role_ops router_role;
extern const struct conf_opt router_opts[];

#endif
