/*
 * list -- see list.h.
 */
#include "peer/list.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int peer_parse_prefix(const char *s, struct peer_route *r)
{
    char host[64];
    const char *slash = strchr(s, '/');
    size_t hl = slash ? (size_t)(slash - s) : strlen(s);
    if (hl == 0 || hl >= sizeof(host))
        return -1;
    memcpy(host, s, hl);
    host[hl] = 0;
    memset(r, 0, sizeof(*r));
    unsigned max;
    if (inet_pton(AF_INET, host, r->addr) == 1) {
        r->kind = PEER_R_AREA4;
        max = 32;
    } else if (inet_pton(AF_INET6, host, r->addr) == 1) {
        r->kind = PEER_R_AREA6;
        max = 128;
    } else {
        return -1;
    }
    unsigned plen = max;
    if (slash) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(slash + 1, &end, 10);
        if (*end || end == slash + 1 || errno || v > max)
            return -1;
        plen = (unsigned)v;
    }
    for (unsigned b = plen; b < max; b++)
        if (r->addr[b / 8] & (0x80u >> (b % 8)))
            return -1; /* host bits set: say so rather than guess */
    r->plen = (uint8_t)plen;
    return 0;
}

int peer_host_valid(const char *h)
{
    size_t l = strlen(h);
    if (l == 0 || l > PEER_MAX_HOST || h[0] == '.' || h[l - 1] == '.')
        return 0;
    for (const char *p = h; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
            return 0;
    return strstr(h, "..") == NULL;
}

int peer_uri_valid(const char *u)
{
    size_t l = strlen(u);
    return l > 0 && l <= PEER_MAX_URI &&
           (strncmp(u, "http://", 7) == 0 || strncmp(u, "https://", 8) == 0) && !strpbrk(u, " \t\r\n");
}

int peer_parse_unit(const char *t, struct peer_route *r)
{
    memset(r, 0, sizeof(*r));
    if (strncmp(t, "http://", 7) == 0 || strncmp(t, "https://", 8) == 0) {
        if (!peer_uri_valid(t))
            return -1;
        r->kind = PEER_R_URI;
    } else {
        if (!peer_host_valid(t))
            return -1;
        r->kind = PEER_R_PUBLISHER;
    }
    r->text = t;
    r->len = (uint16_t)strlen(t);
    return 0;
}

int peer_list_line(char *line, int areas, struct peer_route *r)
{
    char *h = strchr(line, '#');
    if (h)
        *h = 0;
    char *s = line;
    while (*s == ' ' || *s == '\t')
        s++;
    size_t l = strlen(s);
    while (l && (s[l - 1] == '\n' || s[l - 1] == '\r' || s[l - 1] == ' ' || s[l - 1] == '\t'))
        s[--l] = 0;
    if (l == 0)
        return 0;
    if (s != line)
        memmove(line, s, l + 1);
    if (areas)
        return peer_parse_prefix(line, r) < 0 ? -1 : 1;
    return peer_parse_unit(line, r) < 0 ? -1 : 1;
}
