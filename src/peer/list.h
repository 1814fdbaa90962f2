/*
 * list -- the text forms of a speaker's own routes: IP prefixes (`area`,
 * `area_file`), publisher host names and URI prefixes (`publisher`,
 * `uri_prefix`, `content_file`), and the lines of an area or content
 * file. Pure functions, no allocation; the fuzz target fuzz_peer_list
 * runs them on arbitrary text.
 */
#ifndef FERRY_PEER_LIST_H
#define FERRY_PEER_LIST_H

#include "peer/msg.h"

/* The longest line of an area or content file (a URI prefix, blanks and a
 * comment); a longer one is an error. */
#define PEER_LIST_LINE_MAX (PEER_MAX_URI + 64)

/* "a.b.c.d[/n]" or "v6[/n]" (no /n: a host route). Host bits past n must be
 * zero. Returns 0, or -1. */
int peer_parse_prefix(const char *s, struct peer_route *r);
/* A lowercase DNS host name (a-z 0-9 - .), at most PEER_MAX_HOST bytes. */
int peer_host_valid(const char *h);
/* An http:// or https:// prefix without blanks, at most PEER_MAX_URI bytes. */
int peer_uri_valid(const char *u);
/* A content unit: a URI prefix (http:// or https://) or else a publisher
 * host name. r->text points to t. Returns 0, or -1. */
int peer_parse_unit(const char *t, struct peer_route *r);
/*
 * One line of an area file (areas) or a content file: '#' starts a
 * comment, blanks around the entry are ignored. The line (NUL-terminated)
 * is trimmed in place and r->text may point into it. Returns 1 with *r
 * for an entry, 0 for a blank or comment line, -1 for a bad entry.
 */
int peer_list_line(char *line, int areas, struct peer_route *r);

#endif
