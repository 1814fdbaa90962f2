/*
 * origin -- the built-in static origin for demos and tests: serves a
 * directory over HTTP/1.1 with Last-Modified and a strong ETag, answers
 * conditional requests (If-None-Match, If-Modified-Since) with 304, and
 * adds a configurable Cache-Control (and other fields) per path prefix.
 */
#ifndef FERRY_ORIGIN_ORIGIN_H
#define FERRY_ORIGIN_ORIGIN_H

#include "lib/role.h"

extern const struct role_ops origin_role;
extern const struct conf_opt origin_opts[];

#endif
