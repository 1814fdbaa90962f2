/*
 * json -- see json.h. Output is indented by two spaces per level so that
 * ferryctl can print it as it comes.
 */
#include "lib/json.h"

#include <inttypes.h>
#include <string.h>

void json_init(struct json *j, struct buf *out)
{
    memset(j, 0, sizeof(*j));
    j->out = out;
    j->first[0] = 1;
}

static void indent(struct json *j)
{
    buf_puts(j->out, "\n");
    for (int i = 0; i < j->depth; i++)
        buf_puts(j->out, "  ");
}

/* Writes the separator before a value or key at the current depth. */
static void sep(struct json *j)
{
    if (j->after_key) {
        j->after_key = 0;
        return;
    }
    if (j->depth > 0) {
        if (!j->first[j->depth])
            buf_puts(j->out, ",");
        indent(j);
    }
    j->first[j->depth] = 0;
}

static void open(struct json *j, const char *c)
{
    sep(j);
    buf_puts(j->out, c);
    if (j->depth < JSON_MAX_DEPTH - 1)
        j->depth++;
    j->first[j->depth] = 1;
}

static void close_(struct json *j, const char *c)
{
    int empty = j->first[j->depth];
    if (j->depth > 0)
        j->depth--;
    if (!empty)
        indent(j);
    buf_puts(j->out, c);
    if (j->depth == 0)
        buf_puts(j->out, "\n");
}

void json_obj_begin(struct json *j) { open(j, "{"); }
void json_obj_end(struct json *j) { close_(j, "}"); }
void json_arr_begin(struct json *j) { open(j, "["); }
void json_arr_end(struct json *j) { close_(j, "]"); }

/* Length of a valid UTF-8 sequence at p (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    size_t len;
    uint32_t cp;
    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xe0) == 0xc0) { len = 2; cp = p[0] & 0x1f; }
    else if ((p[0] & 0xf0) == 0xe0) { len = 3; cp = p[0] & 0x0f; }
    else if ((p[0] & 0xf8) == 0xf0) { len = 4; cp = p[0] & 0x07; }
    else return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

static void put_string(struct json *j, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    buf_puts(j->out, "\"");
    for (size_t i = 0; i < n;) {
        unsigned char ch = p[i];
        if (ch == '"' || ch == '\\') {
            buf_printf(j->out, "\\%c", ch);
            i++;
        } else if (ch < 0x20) {
            buf_printf(j->out, "\\u%04x", ch);
            i++;
        } else {
            size_t l = utf8_len(p + i, n - i);
            if (l == 0) {
                buf_puts(j->out, "\\ufffd");
                i++;
            } else {
                buf_append(j->out, p + i, l);
                i += l;
            }
        }
    }
    buf_puts(j->out, "\"");
}

void json_key(struct json *j, const char *key)
{
    sep(j);
    put_string(j, key, strlen(key));
    buf_puts(j->out, ": ");
    j->after_key = 1;
}

void json_strn(struct json *j, const char *s, size_t n)
{
    sep(j);
    put_string(j, s, n);
}

void json_str(struct json *j, const char *s)
{
    if (s == NULL) {
        json_null(j);
        return;
    }
    json_strn(j, s, strlen(s));
}

void json_int(struct json *j, int64_t v)
{
    sep(j);
    buf_printf(j->out, "%" PRId64, v);
}

void json_bool(struct json *j, int v)
{
    sep(j);
    buf_puts(j->out, v ? "true" : "false");
}

void json_null(struct json *j)
{
    sep(j);
    buf_puts(j->out, "null");
}

void json_kv_str(struct json *j, const char *key, const char *v)
{
    json_key(j, key);
    json_str(j, v);
}

void json_kv_int(struct json *j, const char *key, int64_t v)
{
    json_key(j, key);
    json_int(j, v);
}
