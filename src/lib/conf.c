/*
 * conf -- see conf.h. A hand-written lexer feeds a recursive-descent
 * parser (blocks nest, so recursion depth is bounded by CONF_MAX_DEPTH);
 * the check then walks the tree against the schema.
 */
#include "lib/conf.h"

#include <ctype.h>
#include <errno.h>
#include <glob.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/util.h"

#define CONF_MAX_DEPTH 16          /* nesting of blocks and of includes, each */
#define CONF_MAX_FILE (4u << 20)   /* bytes in one config file */
#define CONF_MAX_ARGS 64
#define CONF_MAX_TOKEN 4096
#define CONF_MAX_ERRORS 50

struct lexer {
    struct conf *c;
    const char *file; /* owned by c */
    const char *p, *end;
    int line;
    int include_depth;
};

enum tok { T_EOF, T_WORD, T_LBRACE, T_RBRACE, T_SEMI, T_ERR };

static void verror(struct conf *c, const char *file, int line, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
static void verror(struct conf *c, const char *file, int line, const char *fmt, va_list ap)
{
    if (c->nerrors++ >= CONF_MAX_ERRORS)
        return;
    if (file != NULL)
        buf_printf(&c->errors, "%s:%d: ", file, line);
    buf_vprintf(&c->errors, fmt, ap);
    buf_puts(&c->errors, "\n");
    /* Keep the text NUL-terminated so callers can print it as a string. */
    *buf_reserve(&c->errors, 1) = '\0';
}

static void lex_error(struct lexer *lx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void lex_error(struct lexer *lx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(lx->c, lx->file, lx->line, fmt, ap);
    va_end(ap);
}

void conf_error(struct conf *c, const struct conf_node *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(c, n ? n->file : NULL, n ? n->line : 0, fmt, ap);
    va_end(ap);
}

static const char *intern_file(struct conf *c, const char *name)
{
    c->files = xrealloc(c->files, (c->nfiles + 1) * sizeof(*c->files));
    c->files[c->nfiles] = xstrdup(name);
    return c->files[c->nfiles++];
}

/* Reads the next token. A word's text goes to tok (NUL-terminated). */
static enum tok lex(struct lexer *lx, struct buf *tok)
{
    buf_reset(tok);
    for (;;) {
        while (lx->p < lx->end && (*lx->p == ' ' || *lx->p == '\t' || *lx->p == '\r' ||
                                   *lx->p == '\n')) {
            if (*lx->p == '\n')
                lx->line++;
            lx->p++;
        }
        if (lx->p < lx->end && *lx->p == '#') {
            while (lx->p < lx->end && *lx->p != '\n')
                lx->p++;
            continue;
        }
        break;
    }
    if (lx->p >= lx->end)
        return T_EOF;
    char ch = *lx->p;
    if (ch == '{' || ch == '}' || ch == ';') {
        lx->p++;
        return ch == '{' ? T_LBRACE : ch == '}' ? T_RBRACE : T_SEMI;
    }
    if (ch == '"' || ch == '\'') {
        char q = ch;
        int start_line = lx->line;
        lx->p++;
        while (lx->p < lx->end && *lx->p != q) {
            char v = *lx->p++;
            if (v == '\n')
                lx->line++;
            if (v == '\\' && q == '"' && lx->p < lx->end) {
                char e = *lx->p++;
                v = e == 'n' ? '\n' : e == 't' ? '\t' : e;
            }
            if (v == '\0') {
                lex_error(lx, "NUL byte in string");
                return T_ERR;
            }
            if (buf_avail(tok) >= CONF_MAX_TOKEN) {
                lex_error(lx, "string longer than %d bytes", CONF_MAX_TOKEN);
                return T_ERR;
            }
            buf_append(tok, &v, 1);
        }
        if (lx->p >= lx->end) {
            lx->line = start_line;
            lex_error(lx, "unterminated string");
            return T_ERR;
        }
        lx->p++;
        buf_append(tok, "", 1);
        tok->len--;
        return T_WORD;
    }
    while (lx->p < lx->end) {
        ch = *lx->p;
        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '{' || ch == '}' ||
            ch == ';' || ch == '"' || ch == '\'' || ch == '#')
            break;
        if ((unsigned char)ch < 0x20 || ch == 0x7f) {
            lex_error(lx, "control character 0x%02x", (unsigned char)ch);
            return T_ERR;
        }
        if (buf_avail(tok) >= CONF_MAX_TOKEN) {
            lex_error(lx, "word longer than %d bytes", CONF_MAX_TOKEN);
            return T_ERR;
        }
        buf_append(tok, &ch, 1);
        lx->p++;
    }
    buf_append(tok, "", 1);
    tok->len--;
    return T_WORD;
}

static void node_free(struct conf_node *n)
{
    while (n != NULL) {
        struct conf_node *next = n->next;
        node_free(n->child);
        for (int i = 0; i < n->nargs; i++)
            free(n->args[i]);
        free(n->args);
        free(n->name);
        free(n);
        n = next;
    }
}

static int parse_file(struct conf *c, const char *path, int depth, struct conf_node ***tail,
                      int block_depth, struct lexer *from);

/* Splices `include` matches at *tail. */
static int do_include(struct lexer *lx, const char *pattern, struct conf_node ***tail,
                      int block_depth)
{
    char *full;
    glob_t g;
    int rc = 0;

    if (pattern[0] == '/') {
        full = xstrdup(pattern);
    } else {
        const char *slash = strrchr(lx->file, '/');
        full = slash ? xasprintf("%.*s/%s", (int)(slash - lx->file), lx->file, pattern)
                     : xstrdup(pattern);
    }
    int g_rc = glob(full, GLOB_ERR, NULL, &g);
    if (g_rc == GLOB_NOMATCH) {
        /* A pattern with wildcards may match nothing; a plain file must exist. */
        if (strpbrk(pattern, "*?[") == NULL) {
            lex_error(lx, "include \"%s\": no such file", pattern);
            rc = -1;
        }
    } else if (g_rc != 0) {
        lex_error(lx, "include \"%s\": cannot read", pattern);
        rc = -1;
    } else {
        for (size_t i = 0; i < g.gl_pathc && rc == 0; i++)
            rc = parse_file(lx->c, g.gl_pathv[i], lx->include_depth + 1, tail, block_depth, lx);
    }
    if (g_rc != GLOB_NOMATCH && g_rc != GLOB_NOSPACE && g_rc != GLOB_ABORTED)
        globfree(&g);
    free(full);
    return rc;
}

/*
 * Parses directives until '}' (inside a block) or EOF (top level) and
 * links them at *tail. Returns 0 or -1 after a syntax error.
 */
static int parse_body(struct lexer *lx, struct conf_node ***tail, int block_depth, int in_block)
{
    struct buf tok;
    int rc = -1;

    buf_init(&tok);
    for (;;) {
        enum tok t = lex(lx, &tok);
        if (t == T_ERR)
            goto out;
        if (t == T_EOF) {
            if (in_block) {
                lex_error(lx, "unexpected end of file, expecting \"}\"");
                goto out;
            }
            break;
        }
        if (t == T_RBRACE) {
            if (!in_block) {
                lex_error(lx, "unexpected \"}\"");
                goto out;
            }
            break;
        }
        if (t != T_WORD) {
            lex_error(lx, "unexpected \"%c\", expecting a directive name", lx->p[-1]);
            goto out;
        }
        struct conf_node *n = xcalloc(1, sizeof(*n));
        n->name = xstrdup(tok.data);
        n->file = lx->file;
        n->line = lx->line;
        for (;;) {
            t = lex(lx, &tok);
            if (t == T_WORD) {
                if (n->nargs >= CONF_MAX_ARGS) {
                    lex_error(lx, "\"%s\": more than %d arguments", n->name, CONF_MAX_ARGS);
                    node_free(n);
                    goto out;
                }
                n->args = xrealloc(n->args, (size_t)(n->nargs + 1) * sizeof(char *));
                n->args[n->nargs++] = xstrdup(tok.data);
                continue;
            }
            break;
        }
        if (t == T_SEMI) {
            if (strcmp(n->name, "include") == 0) {
                if (n->nargs != 1) {
                    lex_error(lx, "\"include\" takes one file name or pattern");
                    node_free(n);
                    goto out;
                }
                if (lx->include_depth + 1 >= CONF_MAX_DEPTH) {
                    lex_error(lx, "includes nested deeper than %d", CONF_MAX_DEPTH);
                    node_free(n);
                    goto out;
                }
                int irc = do_include(lx, n->args[0], tail, block_depth);
                node_free(n);
                if (irc < 0)
                    goto out;
                continue;
            }
            **tail = n;
            *tail = &n->next;
            continue;
        }
        if (t == T_LBRACE) {
            if (block_depth + 1 >= CONF_MAX_DEPTH) {
                lex_error(lx, "blocks nested deeper than %d", CONF_MAX_DEPTH);
                node_free(n);
                goto out;
            }
            n->is_block = 1;
            **tail = n;
            *tail = &n->next;
            struct conf_node **ctail = &n->child;
            if (parse_body(lx, &ctail, block_depth + 1, 1) < 0)
                goto out;
            continue;
        }
        if (t == T_ERR) {
            node_free(n);
            goto out;
        }
        lex_error(lx, "\"%s\": expecting \";\" or \"{\"", n->name);
        node_free(n);
        goto out;
    }
    rc = 0;
out:
    buf_fini(&tok);
    return rc;
}

static int parse_text(struct conf *c, const char *file, const char *text, size_t len, int depth,
                      struct conf_node ***tail, int block_depth)
{
    struct lexer lx = {.c = c, .file = intern_file(c, file), .p = text, .end = text + len,
                       .line = 1, .include_depth = depth};
    return parse_body(&lx, tail, block_depth, 0);
}

/*
 * Reads one file. Problems with the file itself are reported at the
 * include line that named it (from), or without a location for the main
 * file.
 */
static int parse_file(struct conf *c, const char *path, int depth, struct conf_node ***tail,
                      int block_depth, struct lexer *from)
{
    FILE *f = fopen(path, "r");
    struct stat st;
    char *text;
    int rc;
    const char *problem = NULL;

    if (f == NULL)
        problem = strerror(errno);
    else if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode))
        problem = "not a regular file";
    else if ((uint64_t)st.st_size > CONF_MAX_FILE)
        problem = "larger than 4 MiB";
    if (problem) {
        if (from)
            lex_error(from, "include \"%s\": %s", path, problem);
        else
            conf_error(c, NULL, "%s: %s", path, problem);
        if (f)
            fclose(f);
        return -1;
    }
    text = xmalloc((size_t)st.st_size + 1);
    size_t n = fread(text, 1, (size_t)st.st_size, f);
    fclose(f);
    rc = parse_text(c, path, text, n, depth, tail, block_depth);
    free(text);
    return rc;
}

/* Value parsers. */

int conf_parse_int(const char *s, int64_t *out)
{
    char *end;
    if (!isdigit((unsigned char)s[0]) && !(s[0] == '-' && isdigit((unsigned char)s[1])))
        return -1;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

static int parse_scaled(const char *s, int64_t *out, const char *const *suf,
                        const int64_t *mult, size_t nsuf, int64_t bare)
{
    char *end;
    if (!isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || v > INT64_MAX)
        return -1;
    int64_t m = bare;
    if (*end != '\0') {
        size_t i;
        for (i = 0; i < nsuf; i++)
            if (strcasecmp(end, suf[i]) == 0)
                break;
        if (i == nsuf)
            return -1;
        m = mult[i];
    }
    if (v != 0 && (int64_t)v > INT64_MAX / m)
        return -1;
    *out = (int64_t)v * m;
    return 0;
}

int conf_parse_size(const char *s, int64_t *out)
{
    static const char *const suf[] = {"k", "m", "g", "t", "kb", "mb", "gb", "tb", "b"};
    static const int64_t mult[] = {1LL << 10, 1LL << 20, 1LL << 30, 1LL << 40, 1LL << 10,
                                   1LL << 20, 1LL << 30, 1LL << 40, 1};
    return parse_scaled(s, out, suf, mult, ARRAY_SIZE(suf), 1);
}

int conf_parse_duration(const char *s, int64_t *out_ms)
{
    static const char *const suf[] = {"ms", "s", "m", "h", "d"};
    static const int64_t mult[] = {1, 1000, 60000, 3600000, 86400000};
    return parse_scaled(s, out_ms, suf, mult, ARRAY_SIZE(suf), 1000);
}

static int enum_has(const char *choices, const char *v)
{
    size_t n = strlen(v);
    const char *p = choices;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0)
            return 1;
        if (!bar)
            break;
        p = bar + 1;
    }
    return 0;
}

static int addr_ok(const char *s)
{
    const char *colon;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (rb == NULL || rb[1] != ':')
            return 0;
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || colon == s)
            return 0;
    }
    int64_t port;
    return conf_parse_int(colon + 1, &port) == 0 && port >= 0 && port <= 65535;
}

static const char *type_name(enum conf_type t)
{
    switch (t) {
    case CONF_FLAG: return "on|off";
    case CONF_INT: return "integer";
    case CONF_SIZE: return "size";
    case CONF_DURATION: return "duration";
    case CONF_STR: return "string";
    case CONF_ENUM: return "enum";
    case CONF_PATH: return "path";
    case CONF_ADDR: return "address";
    case CONF_ARGS: return "arguments";
    case CONF_BLOCK: return "block";
    }
    return "?";
}

/* Checks one value of a scalar option; returns 0 or -1 after reporting. */
static int check_value(struct conf *c, const struct conf_node *n, const struct conf_opt *o,
                       const char *v)
{
    int64_t x;
    switch (o->type) {
    case CONF_FLAG:
        if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0)
            goto bad;
        return 0;
    case CONF_INT:
        if (conf_parse_int(v, &x) < 0)
            goto bad;
        goto range;
    case CONF_SIZE:
        if (conf_parse_size(v, &x) < 0)
            goto bad;
        goto range;
    case CONF_DURATION:
        if (conf_parse_duration(v, &x) < 0)
            goto bad;
        goto range;
    case CONF_ENUM:
        if (!enum_has(o->choices, v)) {
            conf_error(c, n, "\"%s\": \"%s\" is not one of %s", o->name, v, o->choices);
            return -1;
        }
        return 0;
    case CONF_ADDR:
        if (!addr_ok(v))
            goto bad;
        return 0;
    case CONF_STR:
    case CONF_PATH:
        if (v[0] == '\0')
            goto bad;
        return 0;
    default:
        return 0;
    }
range:
    if (x < o->min || x > o->max) {
        conf_error(c, n, "\"%s\": %s is out of range [%" PRId64 ", %" PRId64 "]", o->name, v,
                   o->min, o->max);
        return -1;
    }
    return 0;
bad:
    conf_error(c, n, "\"%s\": invalid %s \"%s\"", o->name, type_name(o->type), v);
    return -1;
}

static const struct conf_opt *find_opt(const struct conf_opt *schema, const char *name)
{
    for (const struct conf_opt *o = schema; o && o->name; o++)
        if (strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

static void check_block(struct conf *c, struct conf_node *block, const struct conf_opt *schema)
{
    block->schema = schema;
    for (struct conf_node *n = block->child; n; n = n->next) {
        const struct conf_opt *o = find_opt(schema, n->name);
        if (o == NULL) {
            conf_error(c, n, "unknown directive \"%s\"", n->name);
            continue;
        }
        n->opt = o;
        if (!(o->flags & CONF_MULTI)) {
            for (struct conf_node *m = block->child; m != n; m = m->next) {
                if (strcmp(m->name, n->name) == 0) {
                    conf_error(c, n, "\"%s\" is duplicate (first at line %d)", n->name, m->line);
                    break;
                }
            }
        }
        if (o->type == CONF_BLOCK) {
            if (!n->is_block) {
                conf_error(c, n, "\"%s\" needs a { } block", n->name);
                continue;
            }
            int want = (o->flags & CONF_NAMED) ? 1 : 0;
            if (n->nargs != want) {
                conf_error(c, n, "\"%s\" takes %s", n->name,
                           want ? "one name before \"{\"" : "no arguments before \"{\"");
                continue;
            }
            check_block(c, n, o->block);
            continue;
        }
        if (n->is_block) {
            conf_error(c, n, "\"%s\" does not take a block", n->name);
            continue;
        }
        if (o->type == CONF_ARGS) {
            if (n->nargs < o->min_args || n->nargs > o->max_args) {
                if (o->min_args == o->max_args)
                    conf_error(c, n, "\"%s\" takes %d argument%s", n->name, o->min_args,
                               o->min_args == 1 ? "" : "s");
                else
                    conf_error(c, n, "\"%s\" takes %d to %d arguments", n->name, o->min_args,
                               o->max_args);
            }
            continue;
        }
        if (n->nargs != 1) {
            conf_error(c, n, "\"%s\" takes one argument", n->name);
            continue;
        }
        if (check_value(c, n, o, n->args[0]) < 0)
            continue;
        if (o->type == CONF_PATH && n->args[0][0] != '/') {
            const char *slash = strrchr(n->file, '/');
            if (slash != NULL) {
                char *abs = xasprintf("%.*s/%s", (int)(slash - n->file), n->file, n->args[0]);
                free(n->args[0]);
                n->args[0] = abs;
            }
        }
    }
    for (const struct conf_opt *o = schema; o && o->name; o++) {
        if ((o->flags & CONF_REQUIRED) && conf_find(block, o->name) == NULL)
            conf_error(c, block->file ? block : NULL, "\"%s\" is required%s%s", o->name,
                       block->name ? " in " : "", block->name ? block->name : "");
    }
}

static struct conf *conf_new(void)
{
    struct conf *c = xcalloc(1, sizeof(*c));
    buf_init(&c->errors);
    *buf_reserve(&c->errors, 1) = '\0';
    c->root.is_block = 1;
    return c;
}

struct conf *conf_load(const char *path, const struct conf_opt *schema)
{
    struct conf *c = conf_new();
    struct conf_node **tail = &c->root.child;
    if (parse_file(c, path, 0, &tail, 0, NULL) == 0 && schema != NULL)
        check_block(c, &c->root, schema);
    return c;
}

struct conf *conf_load_string(const char *name, const char *text, size_t len,
                              const struct conf_opt *schema)
{
    struct conf *c = conf_new();
    struct conf_node **tail = &c->root.child;
    if (parse_text(c, name, text, len, 0, &tail, 0) == 0 && schema != NULL)
        check_block(c, &c->root, schema);
    return c;
}

void conf_destroy(struct conf *c)
{
    if (c == NULL)
        return;
    node_free(c->root.child);
    for (size_t i = 0; i < c->nfiles; i++)
        free(c->files[i]);
    free(c->files);
    buf_fini(&c->errors);
    free(c);
}

const struct conf_node *conf_find(const struct conf_node *block, const char *name)
{
    for (const struct conf_node *n = block ? block->child : NULL; n; n = n->next)
        if (strcmp(n->name, name) == 0)
            return n;
    return NULL;
}

const struct conf_node *conf_next(const struct conf_node *n)
{
    for (const struct conf_node *m = n->next; m; m = m->next)
        if (strcmp(m->name, n->name) == 0)
            return m;
    return NULL;
}

static const char *value_text(const struct conf_node *block, const char *name,
                              const struct conf_opt **opt)
{
    const struct conf_node *n = conf_find(block, name);
    *opt = block ? find_opt(block->schema, name) : NULL;
    if (n != NULL && n->nargs > 0)
        return n->args[0];
    return *opt ? (*opt)->def : NULL;
}

int64_t conf_int(const struct conf_node *block, const char *name)
{
    const struct conf_opt *o;
    const char *v = value_text(block, name, &o);
    int64_t x = 0;

    if (v == NULL || o == NULL)
        return 0;
    switch (o->type) {
    case CONF_FLAG:
        return strcmp(v, "on") == 0;
    case CONF_SIZE:
        conf_parse_size(v, &x);
        return x;
    case CONF_DURATION:
        conf_parse_duration(v, &x);
        return x;
    default:
        conf_parse_int(v, &x);
        return x;
    }
}

const char *conf_str(const struct conf_node *block, const char *name)
{
    const struct conf_opt *o;
    return value_text(block, name, &o);
}

static void doc_range(const struct conf_opt *o, struct buf *out)
{
    switch (o->type) {
    case CONF_INT:
        buf_printf(out, "%" PRId64 "..%" PRId64, o->min, o->max);
        break;
    case CONF_SIZE:
        buf_printf(out, "%" PRId64 "..%" PRId64 " bytes", o->min, o->max);
        break;
    case CONF_DURATION:
        buf_printf(out, "%" PRId64 "..%" PRId64 " ms", o->min, o->max);
        break;
    case CONF_ENUM:
        buf_printf(out, "%s", o->choices);
        break;
    case CONF_ARGS:
        buf_printf(out, "%d..%d args", o->min_args, o->max_args);
        break;
    default:
        break;
    }
}

void conf_schema_doc(const struct conf_opt *schema, const char *title, struct buf *out)
{
    buf_printf(out, "### %s\n\n| option | type | range | default | repeat | description |\n"
                    "| --- | --- | --- | --- | --- | --- |\n", title);
    for (const struct conf_opt *o = schema; o->name; o++) {
        buf_printf(out, "| `%s` | %s | ", o->name, type_name(o->type));
        doc_range(o, out);
        buf_printf(out, " | %s%s%s | %s | %s |\n", o->def ? "`" : "",
                   o->def ? o->def : ((o->flags & CONF_REQUIRED) ? "required" : "—"),
                   o->def ? "`" : "", (o->flags & CONF_MULTI) ? "yes" : "no",
                   o->help ? o->help : "");
    }
    buf_puts(out, "\n");
    for (const struct conf_opt *o = schema; o->name; o++) {
        if (o->type == CONF_BLOCK && o->block) {
            char *t = xasprintf("%s%s%s", strcmp(title, "top level") == 0 ? "" : title,
                                strcmp(title, "top level") == 0 ? "" : " > ", o->name);
            conf_schema_doc(o->block, t, out);
            free(t);
        }
    }
}
