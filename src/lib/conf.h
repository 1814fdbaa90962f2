/*
 * conf -- the one configuration grammar of ferryd, for every role.
 *
 * nginx-style blocks:
 *     # a comment
 *     workers 2;
 *     include "sites.conf";
 *     cache {
 *         listen https 127.0.0.1:8443;
 *         publisher www.example.test {
 *             origin http://127.0.0.1:8080;
 *         }
 *     }
 * A directive is a name, zero or more arguments (bare words, or strings in
 * double or single quotes; double quotes know \" \\ \n \t), and either ';'
 * or a '{' ... '}' block. `include PATTERN;` splices the files matching a
 * glob pattern (relative to the including file) in place, up to 16 deep.
 *
 * Loading is two steps, both reporting every problem as "file:line: message":
 * the parser builds a tree of conf_node, then the tree is checked against a
 * schema (arrays of struct conf_opt, one per block kind) that declares each
 * option once with its type, range, default and help text; ferryd prints
 * the schema as documentation (`ferryd --options`). After a successful
 * check every getter below is infallible and applies defaults.
 *
 * The whole tree is owned by struct conf and freed in one conf_destroy.
 */
#ifndef FERRY_LIB_CONF_H
#define FERRY_LIB_CONF_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

enum conf_type {
    CONF_FLAG = 1, /* on | off */
    CONF_INT,      /* decimal integer in [min, max] */
    CONF_SIZE,     /* bytes, with optional k/m/g suffix (powers of 1024) */
    CONF_DURATION, /* ms, s, m, h, d suffix (bare number = seconds); stored in ms */
    CONF_STR,      /* one string */
    CONF_ENUM,     /* one of choices, "a|b|c" */
    CONF_PATH,     /* a file path; made absolute relative to the config file */
    CONF_ADDR,     /* host:port, [v6]:port or *:port */
    CONF_ARGS,     /* min_args..max_args free arguments, checked by the role */
    CONF_BLOCK,    /* a block; its options are in `block` */
};

#define CONF_MULTI 0x1u    /* may appear more than once */
#define CONF_REQUIRED 0x2u /* must appear */
#define CONF_NAMED 0x4u    /* CONF_BLOCK: takes one argument, e.g. publisher NAME { } */

struct conf_opt {
    const char *name;
    enum conf_type type;
    unsigned flags;
    int64_t min, max;            /* CONF_INT/SIZE/DURATION (DURATION in ms) */
    const char *def;             /* default as it would be written, or NULL */
    const char *choices;         /* CONF_ENUM */
    int min_args, max_args;      /* CONF_ARGS */
    const struct conf_opt *block;/* CONF_BLOCK: options, ended by a {NULL} entry */
    const char *help;
};

struct conf_node {
    char *name;                  /* owned */
    char **args;                 /* owned, nargs strings */
    int nargs;
    int is_block;
    struct conf_node *child;     /* owned: first child of a block */
    struct conf_node *next;      /* owned: next sibling */
    const char *file;            /* owned by struct conf */
    int line;
    const struct conf_opt *opt;  /* set by the check: this node's schema entry */
    const struct conf_opt *schema; /* blocks: the options allowed inside */
};

struct conf {
    struct conf_node root;       /* unnamed top-level block */
    char **files;                /* owned: every file read, for node->file */
    size_t nfiles;
    struct buf errors;           /* "file:line: message\n" lines */
    unsigned nerrors;
};

/*
 * Reads path (and its includes) and checks it against schema, the options
 * of the top level. Always returns a struct conf; conf->nerrors tells
 * whether it is usable. The caller owns it (conf_destroy). A NULL schema
 * only parses (for tools that read a few values, like ferryctl); getters
 * then return the raw first argument and no defaults.
 */
struct conf *conf_load(const char *path, const struct conf_opt *schema);
/* Same, from a string; name is used in messages. For tests and fuzzing. */
struct conf *conf_load_string(const char *name, const char *text, size_t len,
                              const struct conf_opt *schema);
void conf_destroy(struct conf *c);

/* Records a semantic error found by a role at node n (file:line of n). */
void conf_error(struct conf *c, const struct conf_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The first child of block named name, or NULL. */
const struct conf_node *conf_find(const struct conf_node *block, const char *name);
/* The next sibling of n with the same name, or NULL. */
const struct conf_node *conf_next(const struct conf_node *n);

/*
 * Values of a checked block's option, or its default when absent:
 * conf_int for FLAG (0/1), INT, SIZE (bytes) and DURATION (ms);
 * conf_str for STR, ENUM, PATH and ADDR (NULL if absent with no default).
 */
int64_t conf_int(const struct conf_node *block, const char *name);
const char *conf_str(const struct conf_node *block, const char *name);

/* Value parsers, shared with the schema check. Return 0 or -1. */
int conf_parse_size(const char *s, int64_t *out);
int conf_parse_duration(const char *s, int64_t *out_ms);
int conf_parse_int(const char *s, int64_t *out);

/*
 * Writes the schema as Markdown documentation (one table per block):
 * name, type, range, default, help. Used by `ferryd --options`.
 */
void conf_schema_doc(const struct conf_opt *schema, const char *title, struct buf *out);

#endif
