/*
 * json -- a small streaming JSON writer for the admin API (output only;
 * ferryctl prints what the daemon sends). Strings are escaped per RFC 8259
 * section 7; bytes that are not valid UTF-8 are replaced by U+FFFD.
 */
#ifndef FERRY_LIB_JSON_H
#define FERRY_LIB_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define JSON_MAX_DEPTH 32

struct json {
    struct buf *out;          /* not owned */
    int depth;
    unsigned char first[JSON_MAX_DEPTH]; /* no element yet at this depth */
    int after_key;
};

void json_init(struct json *j, struct buf *out);
void json_obj_begin(struct json *j);
void json_obj_end(struct json *j);
void json_arr_begin(struct json *j);
void json_arr_end(struct json *j);
void json_key(struct json *j, const char *key);
void json_str(struct json *j, const char *s);
void json_strn(struct json *j, const char *s, size_t n);
void json_int(struct json *j, int64_t v);
void json_bool(struct json *j, int v);
void json_null(struct json *j);
/* Shorthands for "key": value. */
void json_kv_str(struct json *j, const char *key, const char *v);
void json_kv_int(struct json *j, const char *key, int64_t v);

#endif
