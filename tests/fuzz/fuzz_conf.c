/*
 * Fuzz target for the config grammar and schema check (src/lib/conf.c).
 * Inputs that use include are skipped (see below). Invariants: loading
 * never crashes; an accepted config has no errors and
 * its getters return values within the schema's ranges; a rejected one has
 * at least one "name:line: " message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/conf.h"

static const struct conf_opt inner[] = {
    {.name = "origin", .type = CONF_STR, .flags = CONF_REQUIRED},
    {.name = "alias", .type = CONF_STR, .flags = CONF_MULTI},
    {.name = "timeout", .type = CONF_DURATION, .min = 0, .max = 60000, .def = "5s"},
    {0},
};

static const struct conf_opt block[] = {
    {.name = "listen", .type = CONF_ADDR, .flags = CONF_MULTI},
    {.name = "memory", .type = CONF_SIZE, .min = 1024, .max = INT64_C(1) << 40, .def = "1m"},
    {.name = "mode", .type = CONF_ENUM, .choices = "a|bb|ccc", .def = "a"},
    {.name = "flag", .type = CONF_FLAG, .def = "off"},
    {.name = "root", .type = CONF_PATH},
    {.name = "pair", .type = CONF_ARGS, .flags = CONF_MULTI, .min_args = 2, .max_args = 3},
    {.name = "publisher", .type = CONF_BLOCK, .flags = CONF_MULTI | CONF_NAMED, .block = inner},
    {0},
};

static const struct conf_opt top[] = {
    {.name = "workers", .type = CONF_INT, .min = 1, .max = 64, .def = "1"},
    {.name = "name", .type = CONF_STR},
    {.name = "cache", .type = CONF_BLOCK, .flags = CONF_MULTI, .block = block},
    {0},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* include reads the real file system, which makes runs depend on the
     * current directory; includes are covered by tests/unit/test_conf.c. */
    if (memmem(data, size, "include", 7) != NULL)
        return 0;
    struct conf *c = conf_load_string("fuzz.conf", (const char *)data, size, top);
    if (c->nerrors == 0) {
        int64_t w = conf_int(&c->root, "workers");
        if (w < 1 || w > 64)
            abort();
        for (const struct conf_node *b = conf_find(&c->root, "cache"); b; b = conf_next(b)) {
            int64_t m = conf_int(b, "memory");
            if (m < 1024 || m > (INT64_C(1) << 40))
                abort();
            const char *mode = conf_str(b, "mode");
            if (strcmp(mode, "a") && strcmp(mode, "bb") && strcmp(mode, "ccc"))
                abort();
            for (const struct conf_node *p = conf_find(b, "publisher"); p; p = conf_next(p))
                if (p->nargs != 1 || conf_str(p, "origin") == NULL)
                    abort();
        }
    } else if (strncmp(buf_head(&c->errors), "fuzz.conf:", 10) != 0) {
        abort();
    }
    conf_destroy(c);
    return 0;
}
