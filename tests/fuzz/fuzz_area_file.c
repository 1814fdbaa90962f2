/*
 * fuzz_area_file -- the router's area file parser (rt__area_parse) and the
 * table built from what it accepts. Targets resolve when they are one of a
 * few known names, so both the error paths and the build get exercised;
 * every accepted address is then looked up again.
 */
#include <stdint.h>
#include <string.h>

#include "router/area.h"
#include "router/internal.h"

static int resolve(void *arg, const char *targets, uint32_t *value, char *err, size_t errlen)
{
    (void)arg;
    static const char *const known[] = {"a1", "a2", "a1,a2", "beta"};
    for (uint32_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strcmp(targets, known[i]) == 0) {
            *value = i;
            return 0;
        }
    }
    strncpy(err, "unknown", errlen);
    return -1;
}

static void error(void *arg, int line, const char *msg)
{
    (void)msg;
    (*(unsigned *)arg)++;
    if (line <= 0)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned errors = 0;
    struct area_builder *b = area_builder_new();
    unsigned n = rt__area_parse((const char *)data, size, b, resolve, error, &errors);
    if (n != errors)
        __builtin_trap();
    struct area_table *t = area_builder_finish(b);
    if (t == NULL)
        return 0;
    uint8_t a[16] = {0};
    memcpy(a, data, size < 16 ? size : 16);
    unsigned scope;
    uint32_t v4 = area_lookup4(t, a, &scope, NULL);
    if (v4 != AREA_NONE && (v4 > 3 || scope > 32))
        __builtin_trap();
    uint32_t v6 = area_lookup6(t, a, &scope, NULL);
    if (v6 != AREA_NONE && (v6 > 3 || scope > 128))
        __builtin_trap();
    area_table_free(t);
    return 0;
}
