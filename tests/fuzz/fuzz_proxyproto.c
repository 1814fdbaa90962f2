/*
 * Fuzz target for the PROXY v2 parser (src/lib/proxyproto.c). Invariants:
 * a complete header's length is within the input and PROXY_V2_MAX; every
 * shorter prefix of an accepted header says "need more"; an accepted
 * header with addresses writes back to the same addresses.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct net_addr s, d, s2, d2;
    int has, has2;
    int n = proxy_v2_parse(data, size, &s, &d, &has);
    if (n < -1 || n > (int)size || n > PROXY_V2_MAX)
        abort();
    if (n <= 0)
        return 0;
    for (int i = 0; i < n; i++)
        if (proxy_v2_parse(data, (size_t)i, &s2, &d2, &has2) != 0)
            abort();
    if (has) {
        uint8_t out[64];
        int w = proxy_v2_write(&s, &d, out, sizeof(out));
        if (w <= 0 || proxy_v2_parse(out, (size_t)w, &s2, &d2, &has2) != w || !has2 ||
            memcmp(&s2.ss, &s.ss, s.len) != 0 || memcmp(&d2.ss, &d.ss, d.len) != 0)
            abort();
    }
    return 0;
}
