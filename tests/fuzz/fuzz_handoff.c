/*
 * Fuzz target for the hand-off message parsers (src/lib/handoff.c): the
 * hand-off that arrives on a cache's socket, and the load report that
 * arrives back at the switch. Invariants: an accepted message's bytes lie
 * inside the input and fill it after the header, and writing its header
 * back gives the same first 8 bytes; an accepted report is written back
 * byte for byte.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/handoff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t load;
    const char *why = NULL;
    if (handoff_report_parse(data, size, &load, &why) < 0) {
        if (why == NULL)
            abort();
    } else {
        uint8_t r[HANDOFF_REPORT];
        handoff_report(r, load);
        if (size != HANDOFF_REPORT || memcmp(r, data, HANDOFF_REPORT) != 0)
            abort();
    }
    struct handoff_msg m;
    why = NULL;
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
