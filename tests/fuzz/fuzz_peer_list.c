/*
 * Fuzz target for the speaker's area and content lists (src/peer/list.c):
 * the lines of area_file and content_file, and the prefixes, host names
 * and URI prefixes of the config. The input is split into lines; each is
 * read both as an area line and as a content line. Invariants: an
 * accepted prefix has no bits past its length and survives a round trip
 * through its text form; an accepted unit is the trimmed line, without
 * comment or blanks, and parses again to the same kind.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer/list.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_area(const struct peer_route *r)
{
    unsigned max = r->kind == PEER_R_AREA4 ? 32 : 128;
    if ((r->kind != PEER_R_AREA4 && r->kind != PEER_R_AREA6) || r->plen > max)
        abort();
    for (unsigned b = r->plen; b < max; b++)
        if (r->addr[b / 8] & (0x80u >> (b % 8)))
            abort();
    char host[64], text[80];
    inet_ntop(r->kind == PEER_R_AREA4 ? AF_INET : AF_INET6, r->addr, host, sizeof(host));
    snprintf(text, sizeof(text), "%s/%u", host, r->plen);
    struct peer_route again;
    if (peer_parse_prefix(text, &again) < 0 || again.kind != r->kind || again.plen != r->plen ||
        memcmp(again.addr, r->addr, sizeof(r->addr)) != 0)
        abort();
}

static void check_unit(const char *line, const struct peer_route *r)
{
    if (r->text != line || r->len != strlen(line) || strchr(line, '#') || line[0] == ' ' ||
        line[0] == '\t' || r->len == 0 || line[r->len - 1] == ' ' || line[r->len - 1] == '\t')
        abort();
    struct peer_route again;
    if (peer_parse_unit(line, &again) < 0 || again.kind != r->kind)
        abort();
    if (r->kind == PEER_R_URI ? !peer_uri_valid(line) : !peer_host_valid(line))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char line[PEER_LIST_LINE_MAX];
    size_t i = 0;
    while (i < size) {
        size_t j = i;
        while (j < size && data[j] != '\n')
            j++;
        size_t n = j - i;
        if (n >= sizeof(line))
            n = sizeof(line) - 1;
        for (int areas = 0; areas < 2; areas++) {
            memcpy(line, data + i, n);
            line[n] = 0;
            struct peer_route r;
            int rc = peer_list_line(line, areas, &r);
            if (rc < -1 || rc > 1)
                abort();
            if (rc == 1 && areas)
                check_area(&r);
            else if (rc == 1)
                check_unit(line, &r);
        }
        i = j + 1;
    }
    return 0;
}
