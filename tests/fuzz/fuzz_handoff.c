/*
 * Fuzz target for the hand-off message parser (src/lib/handoff.c), which
 * reads what arrives on a cache's hand-off socket. Invariants: an accepted
 * message's bytes lie inside the input and fill it after the header, and
 * writing its header back gives the same first 8 bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/handoff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct handoff_msg m;
    const char *why = NULL;
    if (handoff_parse(data, size, &m, &why) < 0) {
        if (why == NULL)
            abort();
        return 0;
    }
    if (m.bytes != data + HANDOFF_HDR || m.len != size - HANDOFF_HDR)
        abort();
    uint8_t h[HANDOFF_HDR];
    handoff_header(h, m.tls, m.len);
    if (memcmp(h, data, HANDOFF_HDR) != 0)
        abort();
    return 0;
}
