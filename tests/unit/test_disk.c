/*
 * test_disk -- unit tests for src/cache/disk.c.
 *
 * Two halves. The record tests pin the file format of docs/disk-format.md:
 * an encoder written here from the document (with its own bit-at-a-time
 * CRC-32C) must produce exactly what disk_record_write produces, and
 * disk_record_parse must reject every truncation, every single-byte change
 * and every header value outside the specification, each built with valid
 * checksums so that the check under test is the one that fires.
 *
 * The tier tests run the real thing in a fresh directory under /tmp with
 * its threads and a real event loop: put, wait for the writer (by polling
 * the statistics), look up, read through disk_read_async on a loop, and
 * inspect the files themselves. Restart is a close and an open of the same
 * directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache/disk.h"
#include "cache/policy.h"
#include "http/http1.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/util.h"

#define T0 INT64_C(1700000000)
#define HEAD 80
#define BLOCK 4096

/* ---------------------------------------------------------------------
 * A reference encoder, from docs/disk-format.md.
 */

static uint32_t ref_crc(uint32_t crc, const void *data, size_t n)
{
    const uint8_t *p = data;

    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
}

/* Every header field, settable to invalid values; lengths as declared. */
struct ref {
    char magic[8];
    uint32_t version, flags, reserved, status;
    int64_t request_time, response_time, expires_at;
    const char *key, *vary, *vkey, *fields, *body;
    uint32_t key_len, vary_len, vkey_len, fields_len;
    uint64_t body_len;   /* declared */
    size_t body_have;    /* bytes of body actually appended */
};

static void ref_default(struct ref *r)
{
    memset(r, 0, sizeof(*r));
    memcpy(r->magic, "FERRYOBJ", 8);
    r->version = 1;
    r->status = 200;
    r->request_time = T0;
    r->response_time = T0 + 2;
    r->expires_at = -1;
    r->key = "example.com /a";
    r->key_len = 14;
    r->fields = "Content-Type: text/plain\r\n";
    r->fields_len = 26;
    r->body = "hello";
    r->body_len = r->body_have = 5;
}

static void le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Encodes r with correct checksums into a malloc'd buffer; *len set. */
static uint8_t *ref_encode(const struct ref *r, size_t *len)
{
    size_t head_len = HEAD + (size_t)r->key_len + r->vary_len + r->vkey_len + r->fields_len;
    uint8_t *p = malloc(head_len + r->body_have);
    size_t o = HEAD;
    uint32_t c;

    assert_non_null(p);
    memcpy(p, r->magic, 8);
    le(p + 8, r->version, 4);
    le(p + 12, r->flags, 4);
    le(p + 16, r->key_len, 4);
    le(p + 20, r->vary_len, 4);
    le(p + 24, r->vkey_len, 4);
    le(p + 28, r->fields_len, 4);
    le(p + 32, r->body_len, 8);
    le(p + 40, r->status, 4);
    le(p + 44, r->reserved, 4);
    le(p + 48, (uint64_t)r->request_time, 8);
    le(p + 56, (uint64_t)r->response_time, 8);
    le(p + 64, (uint64_t)r->expires_at, 8);
    memcpy(p + o, r->key, r->key_len);
    o += r->key_len;
    if (r->vary_len)
        memcpy(p + o, r->vary, r->vary_len);
    o += r->vary_len;
    if (r->vkey_len)
        memcpy(p + o, r->vkey, r->vkey_len);
    o += r->vkey_len;
    memcpy(p + o, r->fields, r->fields_len);
    o += r->fields_len;
    if (r->body_have)
        memcpy(p + o, r->body, r->body_have);
    c = ref_crc(0, p, 72);
    c = ref_crc(c, p + HEAD, head_len - HEAD);
    le(p + 72, c, 4);
    le(p + 76, ref_crc(0, p + head_len, r->body_have), 4);
    *len = head_len + r->body_have;
    return p;
}

static int ref_parses(const struct ref *r)
{
    struct disk_record rec;
    size_t len;
    uint8_t *p = ref_encode(r, &len);
    int rc = disk_record_parse(p, len, &rec);

    if (rc == 0)
        disk_record_fini(&rec);
    else
        assert_null(rec.key);
    free(p);
    return rc;
}

/* A record with the given parts; body copied into a new cbody. */
static void rec_make(struct disk_record *r, const char *key, size_t key_len, const char *vary,
                     const char *vkey, size_t vkey_len, const char *body, size_t body_len)
{
    memset(r, 0, sizeof(*r));
    r->key = xmalloc(key_len + 1);
    memcpy(r->key, key, key_len);
    r->key[key_len] = '\0';
    r->key_len = key_len;
    if (vary) {
        r->vary = xstrdup(vary);
        r->vkey = xmalloc(vkey_len + 1);
        memcpy(r->vkey, vkey, vkey_len);
        r->vkey_len = vkey_len;
    }
    r->status = 200;
    r->request_time = T0;
    r->response_time = T0 + 2;
    r->expires_at = -1;
    r->fields = xstrdup("Content-Type: text/plain\r\n");
    r->fields_len = strlen(r->fields);
    r->body = cbody_create(body_len);
    if (body_len)
        memcpy(r->body->data, body, body_len);
}

static void rec_equal(const struct disk_record *a, const struct disk_record *b)
{
    assert_int_equal(a->key_len, b->key_len);
    assert_memory_equal(a->key, b->key, a->key_len);
    assert_int_equal(a->vary == NULL, b->vary == NULL);
    if (a->vary) {
        assert_string_equal(a->vary, b->vary);
        assert_int_equal(a->vkey_len, b->vkey_len);
        if (a->vkey_len)
            assert_memory_equal(a->vkey, b->vkey, a->vkey_len);
    }
    assert_int_equal(a->status, b->status);
    assert_true(a->request_time == b->request_time);
    assert_true(a->response_time == b->response_time);
    assert_true(a->expires_at == b->expires_at);
    assert_int_equal(a->fields_len, b->fields_len);
    assert_memory_equal(a->fields, b->fields, a->fields_len);
    assert_int_equal(a->body->len, b->body->len);
    if (a->body->len)
        assert_memory_equal(a->body->data, b->body->data, a->body->len);
}

/* Serialises r into a malloc'd buffer. */
static uint8_t *rec_bytes(const struct disk_record *r, size_t *len)
{
    struct buf b;
    uint8_t *p;

    buf_init(&b);
    disk_record_write(r, &b);
    *len = buf_avail(&b);
    p = malloc(*len);
    assert_non_null(p);
    memcpy(p, buf_head(&b), *len);
    buf_fini(&b);
    return p;
}

/* ---------------------------------------------------------------------
 * Record tests.
 */

static void test_crc_reference(void **state)
{
    /* The CRC-32C check value (RFC 3720 B.4 lists the same polynomial). */
    assert_int_equal(ref_crc(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(ref_crc(ref_crc(0, "1234", 4), "56789", 5), 0xE3069283u);
}

/* disk_record_write emits exactly the bytes the document describes. */
static void test_write_matches_spec(void **state)
{
    struct disk_record r;
    struct ref ref;
    uint8_t *got, *want;
    size_t got_len, want_len;

    rec_make(&r, "example.com /a", 14, NULL, NULL, 0, "hello", 5);
    got = rec_bytes(&r, &got_len);
    ref_default(&ref);
    want = ref_encode(&ref, &want_len);
    assert_int_equal(got_len, want_len);
    assert_memory_equal(got, want, want_len);
    free(got);
    free(want);
    disk_record_fini(&r);

    rec_make(&r, "example.com /a", 14, "accept-encoding", "accept-encoding:gzip\n", 21, "hello", 5);
    r.expires_at = T0 + 60;
    got = rec_bytes(&r, &got_len);
    ref.flags = 1;
    ref.vary = "accept-encoding";
    ref.vary_len = 15;
    ref.vkey = "accept-encoding:gzip\n";
    ref.vkey_len = 21;
    ref.expires_at = T0 + 60;
    want = ref_encode(&ref, &want_len);
    assert_int_equal(got_len, want_len);
    assert_memory_equal(got, want, want_len);
    /* Spot-check the layout by hand too: magic, version, body length, status. */
    assert_memory_equal(got, "FERRYOBJ", 8);
    assert_int_equal(got[8], 1);
    assert_int_equal(got[32], 5);
    assert_int_equal(got[40], 200);
    assert_int_equal(got[41], 0);
    free(got);
    free(want);
    disk_record_fini(&r);
}

static void roundtrip(struct disk_record *r)
{
    struct disk_record back;
    struct buf again;
    size_t len;
    uint8_t *p = rec_bytes(r, &len);

    assert_int_equal(disk_record_parse(p, len, &back), 0);
    rec_equal(r, &back);
    /* The encoding is canonical: writing what was parsed gives the same bytes. */
    buf_init(&again);
    disk_record_write(&back, &again);
    assert_int_equal(buf_avail(&again), len);
    assert_memory_equal(buf_head(&again), p, len);
    buf_fini(&again);
    disk_record_fini(&back);
    assert_null(back.key);
    disk_record_fini(r);
    free(p);
}

static void test_roundtrip(void **state)
{
    struct disk_record r;
    size_t big = 1 << 20;
    char *body = malloc(big);

    assert_non_null(body);
    for (size_t i = 0; i < big; i++)
        body[i] = (char)(i * 131 + (i >> 9));

    rec_make(&r, "example.com /a", 14, NULL, NULL, 0, "hello", 5);
    roundtrip(&r);
    rec_make(&r, "example.com /a", 14, "accept-encoding", "accept-encoding:br\n", 19, "", 0);
    roundtrip(&r);
    /* An empty Vary list is not the same as no Vary. */
    rec_make(&r, "k", 1, "", "", 0, "x", 1);
    roundtrip(&r);
    /* Keys are byte strings. */
    rec_make(&r, "a\0b\xff", 4, NULL, NULL, 0, body, big);
    r.request_time = INT64_MIN;
    r.response_time = -5;
    r.expires_at = INT64_MAX;
    r.status = 999;
    roundtrip(&r);
    rec_make(&r, "", 0, NULL, NULL, 0, body, 7);
    r.status = 100;
    free(r.fields);
    r.fields = xstrdup("");
    r.fields_len = 0;
    roundtrip(&r);
    free(body);
}

/* A NULL body is written as an empty one and parses as an empty body. */
static void test_null_body(void **state)
{
    struct disk_record r, back;
    size_t len;
    uint8_t *p;

    rec_make(&r, "k", 1, NULL, NULL, 0, "", 0);
    cbody_unref(r.body);
    r.body = NULL;
    p = rec_bytes(&r, &len);
    assert_int_equal(disk_record_parse(p, len, &back), 0);
    assert_non_null(back.body);
    assert_int_equal(back.body->len, 0);
    disk_record_fini(&back);
    disk_record_fini(&r);
    free(p);
    disk_record_free(NULL);
}

static void test_parse_truncations(void **state)
{
    struct disk_record r, back;
    size_t len;
    uint8_t *p, *longer;

    rec_make(&r, "example.com /a", 14, "accept", "accept:*/*\n", 11, "hello, world", 12);
    p = rec_bytes(&r, &len);
    for (size_t n = 0; n < len; n++) {
        /* A copy of exactly n bytes so that ASan sees any read past the end. */
        uint8_t *t = malloc(n ? n : 1);
        assert_non_null(t);
        memcpy(t, p, n);
        assert_int_equal(disk_record_parse(t, n, &back), -1);
        assert_null(back.key);
        assert_null(back.body);
        free(t);
    }
    /* Trailing garbage. */
    longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, p, len);
    longer[len] = 0;
    assert_int_equal(disk_record_parse(longer, len + 1, &back), -1);
    assert_int_equal(disk_record_parse(longer, len, &back), 0);
    disk_record_fini(&back);
    free(longer);
    free(p);
    disk_record_fini(&r);
}

static void test_parse_single_byte_corruption(void **state)
{
    static const uint8_t masks[] = {0x01, 0x80, 0xff, 0x5a};
    struct disk_record r, back;
    size_t len;
    uint8_t *p;

    rec_make(&r, "example.com /a", 14, "accept", "accept:*/*\n", 11, "hello, world", 12);
    r.expires_at = T0;
    p = rec_bytes(&r, &len);
    for (size_t i = 0; i < len; i++) {
        for (size_t m = 0; m < sizeof(masks); m++) {
            p[i] ^= masks[m];
            if (disk_record_parse(p, len, &back) != -1)
                fail_msg("byte %zu ^ 0x%02x accepted", i, masks[m]);
            p[i] ^= masks[m];
        }
    }
    assert_int_equal(disk_record_parse(p, len, &back), 0);
    disk_record_fini(&back);
    free(p);
    disk_record_fini(&r);
}

static void test_parse_bad_header(void **state)
{
    struct ref r;

    ref_default(&r);
    assert_int_equal(ref_parses(&r), 0);

    memcpy(r.magic, "FERRYOBK", 8);
    assert_int_equal(ref_parses(&r), -1);
    memcpy(r.magic, "ferryobj", 8);
    assert_int_equal(ref_parses(&r), -1);
    ref_default(&r);
    r.version = 0;
    assert_int_equal(ref_parses(&r), -1);
    r.version = 2;
    assert_int_equal(ref_parses(&r), -1);
    r.version = 0x101;
    assert_int_equal(ref_parses(&r), -1);
    ref_default(&r);
    r.flags = 2;
    assert_int_equal(ref_parses(&r), -1);
    r.flags = 0x80000000u;
    assert_int_equal(ref_parses(&r), -1);
    ref_default(&r);
    r.reserved = 1;
    assert_int_equal(ref_parses(&r), -1);
    ref_default(&r);
    r.status = 99;
    assert_int_equal(ref_parses(&r), -1);
    r.status = 1000;
    assert_int_equal(ref_parses(&r), -1);
    r.status = 100;
    assert_int_equal(ref_parses(&r), 0);
    r.status = 999;
    assert_int_equal(ref_parses(&r), 0);

    /* Vary parts without the Vary flag. */
    ref_default(&r);
    r.vary = "accept";
    r.vary_len = 6;
    assert_int_equal(ref_parses(&r), -1);
    ref_default(&r);
    r.vkey = "x";
    r.vkey_len = 1;
    assert_int_equal(ref_parses(&r), -1);
    r.flags = 1;
    assert_int_equal(ref_parses(&r), 0);
    /* A NUL inside the Vary names. */
    ref_default(&r);
    r.flags = 1;
    r.vary = "acc\0pt";
    r.vary_len = 6;
    assert_int_equal(ref_parses(&r), -1);

    /* Declared body longer or shorter than what follows. */
    ref_default(&r);
    r.body_len = 6;
    assert_int_equal(ref_parses(&r), -1);
    r.body_len = 4;
    assert_int_equal(ref_parses(&r), -1);
    /* A key length that runs past the end. */
    ref_default(&r);
    r.body_have = 0;
    r.body_len = 0;
    {
        size_t len;
        struct disk_record rec;
        uint8_t *p = ref_encode(&r, &len);
        le(p + 16, 0xffffffffu, 4);
        assert_int_equal(disk_record_parse(p, len, &rec), -1);
        le(p + 16, 1000, 4);
        assert_int_equal(disk_record_parse(p, len, &rec), -1);
        free(p);
    }
}

/* Each cap: accepted at the limit, rejected one byte above (with valid checksums). */
static void test_parse_caps(void **state)
{
    size_t mib = 1 << 20, kib64 = 64 << 10;
    char *big = calloc(1, mib + 1);
    struct ref r;

    assert_non_null(big);
    memset(big, 'a', mib + 1);

    ref_default(&r);
    r.key = big;
    r.key_len = (uint32_t)kib64;
    assert_int_equal(ref_parses(&r), 0);
    r.key_len = (uint32_t)kib64 + 1;
    assert_int_equal(ref_parses(&r), -1);

    ref_default(&r);
    r.flags = 1;
    r.vary = big;
    r.vary_len = (uint32_t)kib64;
    assert_int_equal(ref_parses(&r), 0);
    r.vary_len = (uint32_t)kib64 + 1;
    assert_int_equal(ref_parses(&r), -1);

    ref_default(&r);
    r.flags = 1;
    r.vkey = big;
    r.vkey_len = (uint32_t)mib;
    assert_int_equal(ref_parses(&r), 0);
    r.vkey_len = (uint32_t)mib + 1;
    assert_int_equal(ref_parses(&r), -1);

    ref_default(&r);
    r.fields = big;
    r.fields_len = (uint32_t)mib;
    assert_int_equal(ref_parses(&r), 0);
    r.fields_len = (uint32_t)mib + 1;
    assert_int_equal(ref_parses(&r), -1);

    /* Body: only the declaration can be that large here. */
    ref_default(&r);
    r.body_have = 0;
    r.body_len = (UINT64_C(64) << 30) + 1;
    assert_int_equal(ref_parses(&r), -1);
    r.body_len = UINT64_MAX;
    assert_int_equal(ref_parses(&r), -1);
    free(big);
}

/* ---------------------------------------------------------------------
 * Tier helpers.
 */

struct tdir {
    char path[96];
};

static void tdir_make(struct tdir *t)
{
    snprintf(t->path, sizeof(t->path), "/tmp/ferry_disk_XXXXXX");
    assert_non_null(mkdtemp(t->path));
}

/* Calls fn(dirpath, name) for each file in the 256 subdirectories. */
static size_t each_file(const char *dir, void (*fn)(const char *, const char *, void *), void *arg)
{
    size_t n = 0;
    char sub[128];

    for (int i = 0; i < 256; i++) {
        DIR *dp;
        struct dirent *de;

        snprintf(sub, sizeof(sub), "%s/%02x", dir, i);
        dp = opendir(sub);
        if (dp == NULL)
            continue;
        while ((de = readdir(dp)) != NULL) {
            if (de->d_name[0] == '.')
                continue;
            n++;
            if (fn)
                fn(sub, de->d_name, arg);
        }
        closedir(dp);
    }
    return n;
}

static void unlink_one(const char *sub, const char *name, void *arg)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", sub, name);
    unlink(p);
}

static void tdir_remove(struct tdir *t)
{
    char p[128];

    each_file(t->path, unlink_one, NULL);
    for (int i = 0; i < 256; i++) {
        snprintf(p, sizeof(p), "%s/%02x", t->path, i);
        rmdir(p);
    }
    snprintf(p, sizeof(p), "%s/lock", t->path);
    unlink(p);
    snprintf(p, sizeof(p), "%s/notes.txt", t->path);
    unlink(p);
    assert_int_equal(rmdir(t->path), 0);
}

static size_t count_files(const struct tdir *t)
{
    return each_file(t->path, NULL, NULL);
}

static void id_path(const struct tdir *t, uint64_t id, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%02x/%016" PRIx64, t->path, (unsigned)(id >> 56), id);
}

static int id_exists(const struct tdir *t, uint64_t id)
{
    char p[128];
    struct stat st;
    id_path(t, id, p, sizeof(p));
    return stat(p, &st) == 0;
}

/*
 * Waits until file id is gone (10 s at most). The writer unlinks replaced
 * and evicted files just after it has released the lock, so the stats
 * already show the write while the old file is still there.
 */
static void wait_gone(const struct tdir *t, uint64_t id)
{
    for (int i = 0; i < 10000 && id_exists(t, id); i++)
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    assert_false(id_exists(t, id));
}

static struct disk *open_ok(const struct tdir *t, uint64_t budget)
{
    char err[256] = "";
    struct disk *d = disk_open(t->path, budget, err, sizeof(err));
    if (d == NULL)
        fail_msg("disk_open: %s", err);
    return d;
}

static struct disk_stats stats(struct disk *d)
{
    struct disk_stats st;
    disk_get_stats(d, &st);
    return st;
}

/* Waits until the writer has committed n files in total (10 s at most). */
static void wait_writes(struct disk *d, uint64_t n)
{
    for (int i = 0; i < 10000; i++) {
        if (stats(d).writes >= n)
            return;
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    fail_msg("writer did not reach %" PRIu64 " writes", n);
}

/* Requests, parsed by the real parser; a ring so that a few can be alive. */
static struct {
    char text[1024];
    struct http1_msg msg;
} slots[8];
static unsigned next_slot;

static const struct http1_msg *req(const char *fields)
{
    unsigned i = next_slot++ % 8;
    struct http1_limits lim;
    int n;

    n = snprintf(slots[i].text, sizeof(slots[i].text), "GET /a HTTP/1.1\r\nHost: example.com\r\n%s\r\n",
                 fields);
    http1_limits_default(&lim);
    assert_int_equal(http1_parse_request(slots[i].text, (size_t)n, &lim, &slots[i].msg), n);
    return &slots[i].msg;
}

/* An object as the cache would store it; vkey built from rq as store.c does. */
static struct cobj *obj(const char *key, const char *vary, const struct http1_msg *rq,
                        const char *body)
{
    struct cobj *o = cobj_create(key, strlen(key));
    size_t blen = strlen(body);

    o->meta.status = 200;
    o->meta.request_time = T0;
    o->meta.response_time = T0 + 1;
    o->fields = xstrdup("Content-Type: text/plain\r\nETag: \"1\"\r\n");
    o->fields_len = strlen(o->fields);
    o->body = cbody_create(blen);
    memcpy(o->body->data, body, blen);
    if (vary) {
        struct buf vk;
        buf_init(&vk);
        assert_int_equal(cache_vary_key_from(vary, strlen(vary), rq, &vk), 0);
        o->vary = xstrdup(vary);
        o->vkey = xstrndup(buf_head(&vk), buf_avail(&vk));
        o->vkey_len = buf_avail(&vk);
        buf_fini(&vk);
    }
    return o;
}

/* Puts a fresh object and drops the caller's reference. */
static void put(struct disk *d, const char *key, const char *vary, const struct http1_msg *rq,
                const char *body)
{
    struct cobj *o = obj(key, vary, rq, body);
    disk_put(d, o);
    cobj_unref(o);
}

struct read_ctx {
    struct loop *loop;
    struct disk_record *rec;
    int called;
    int timed_out;
};

static void on_read(void *arg, struct disk_record *rec)
{
    struct read_ctx *c = arg;
    c->rec = rec;
    c->called++;
    loop_stop(c->loop);
}

static void on_timeout(struct loop_timer *t)
{
    struct read_ctx *c = t->data;
    c->timed_out = 1;
    loop_stop(t->loop);
}

/* Reads id through disk_read_async on a real loop. */
static struct disk_record *read_sync(struct disk *d, uint64_t id)
{
    struct read_ctx c = {0};
    struct loop_timer t;

    c.loop = loop_create();
    loop_timer_init(c.loop, &t, on_timeout);
    t.data = &c;
    loop_timer_start(&t, 10000);
    disk_read_async(d, id, c.loop, on_read, &c);
    /* The callback never runs inside disk_read_async. */
    assert_int_equal(c.called, 0);
    loop_run(c.loop);
    loop_timer_stop(&t);
    loop_destroy(c.loop);
    assert_false(c.timed_out);
    assert_int_equal(c.called, 1);
    return c.rec;
}

static void expect_body(struct disk *d, uint64_t id, const char *key, const char *body)
{
    struct disk_record *r;

    assert_true(id > 0);
    r = read_sync(d, id);
    assert_non_null(r);
    assert_int_equal(r->key_len, strlen(key));
    assert_memory_equal(r->key, key, r->key_len);
    assert_int_equal(r->body->len, strlen(body));
    assert_memory_equal(r->body->data, body, r->body->len);
    disk_record_free(r);
}

/* ---------------------------------------------------------------------
 * Tier tests.
 */

static void test_put_lookup_read(void **state)
{
    struct tdir t;
    struct disk *d;
    struct disk_record *r;
    struct cobj *o;
    uint64_t id;

    tdir_make(&t);
    d = open_ok(&t, 1 << 20);
    assert_int_equal(disk_lookup(d, "example.com /a", 14, req("")), 0);
    o = obj("example.com /a", NULL, NULL, "hello, disk");
    atomic_store(&o->expires_at, T0 + 5);
    disk_put(d, o);
    wait_writes(d, 1);
    id = disk_lookup(d, "example.com /a", 14, req(""));
    assert_true(id > 0);
    assert_true(id_exists(&t, id));
    assert_int_equal(disk_lookup(d, "example.com /b", 14, req("")), 0);
    assert_int_equal(disk_lookup(d, "example.com /", 13, req("")), 0);

    r = read_sync(d, id);
    assert_non_null(r);
    assert_int_equal(r->key_len, 14);
    assert_memory_equal(r->key, "example.com /a", 14);
    assert_null(r->vary);
    assert_null(r->vkey);
    assert_int_equal(r->status, 200);
    assert_true(r->request_time == T0);
    assert_true(r->response_time == T0 + 1);
    assert_true(r->expires_at == T0 + 5);
    assert_int_equal(r->fields_len, o->fields_len);
    assert_memory_equal(r->fields, o->fields, o->fields_len);
    assert_int_equal(r->body->len, 11);
    assert_memory_equal(r->body->data, "hello, disk", 11);
    disk_record_free(r);

    /* An id that was never issued. */
    assert_null(read_sync(d, id + 1000));
    assert_int_equal(stats(d).objects, 1);
    assert_int_equal(stats(d).bytes, BLOCK);
    assert_int_equal(stats(d).reads, 1);
    assert_int_equal(stats(d).errors, 0);
    cobj_unref(o);
    disk_close(d);
    tdir_remove(&t);
}

static void test_vary_variants(void **state)
{
    const char *key = "example.com /v";
    struct tdir t;
    struct disk *d;
    uint64_t gz, br, none;

    tdir_make(&t);
    d = open_ok(&t, 1 << 20);
    put(d, key, "Accept-Encoding", req("Accept-Encoding: gzip\r\n"), "gzip body");
    put(d, key, "Accept-Encoding", req("Accept-Encoding: br\r\n"), "br body");
    put(d, key, "Accept-Encoding", req(""), "identity body");
    wait_writes(d, 3);
    assert_int_equal(stats(d).objects, 3);

    gz = disk_lookup(d, key, strlen(key), req("Accept-Encoding: gzip\r\n"));
    br = disk_lookup(d, key, strlen(key), req("accept-encoding:   br\r\n"));
    none = disk_lookup(d, key, strlen(key), req("User-Agent: x\r\n"));
    assert_true(gz && br && none);
    assert_true(gz != br && br != none && gz != none);
    assert_int_equal(disk_lookup(d, key, strlen(key), req("Accept-Encoding: zstd\r\n")), 0);
    expect_body(d, gz, key, "gzip body");
    expect_body(d, br, key, "br body");
    expect_body(d, none, key, "identity body");
    {
        struct disk_record *r = read_sync(d, gz);
        assert_non_null(r);
        assert_string_equal(r->vary, "Accept-Encoding");
        assert_int_equal(r->vkey_len, strlen("accept-encoding:gzip\n"));
        assert_memory_equal(r->vkey, "accept-encoding:gzip\n", r->vkey_len);
        disk_record_free(r);
    }
    disk_close(d);
    tdir_remove(&t);
}

/* A second put of the same key and secondary key replaces the first and its file. */
static void test_replace(void **state)
{
    const char *key = "example.com /r";
    struct tdir t;
    struct disk *d;
    uint64_t old_id, new_id;

    tdir_make(&t);
    d = open_ok(&t, 1 << 20);
    put(d, key, NULL, NULL, "v1");
    wait_writes(d, 1);
    old_id = disk_lookup(d, key, strlen(key), req(""));
    put(d, key, NULL, NULL, "v2");
    wait_writes(d, 2);
    new_id = disk_lookup(d, key, strlen(key), req(""));
    assert_true(old_id && new_id && old_id != new_id);
    wait_gone(&t, old_id);
    assert_true(id_exists(&t, new_id));
    assert_int_equal(count_files(&t), 1);
    assert_int_equal(stats(d).objects, 1);
    assert_null(read_sync(d, old_id));
    expect_body(d, new_id, key, "v2");
    /* A different variant of the same key does not replace. */
    put(d, key, "Accept", req("Accept: a\r\n"), "v3");
    wait_writes(d, 3);
    assert_int_equal(stats(d).objects, 2);
    assert_int_equal(count_files(&t), 2);
    disk_close(d);
    tdir_remove(&t);
}

/* The restart case: what was written is found again after close and open. */
static void test_reopen(void **state)
{
    struct tdir t;
    struct disk *d;
    uint64_t a, b, gz, c;
    char key[32];

    tdir_make(&t);
    d = open_ok(&t, 1 << 20);
    put(d, "example.com /a", NULL, NULL, "A");
    put(d, "example.com /b", NULL, NULL, "B");
    put(d, "example.com /v", "Accept-Encoding", req("Accept-Encoding: gzip\r\n"), "GZ");
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "example.com /n%d", i);
        put(d, key, NULL, NULL, key);
    }
    /* close finishes queued writes: no wait here on purpose. */
    disk_close(d);
    assert_int_equal(count_files(&t), 53);

    d = open_ok(&t, 1 << 20);
    assert_int_equal(stats(d).objects, 53);
    assert_int_equal(stats(d).bytes, 53 * BLOCK);
    assert_int_equal(stats(d).errors, 0);
    a = disk_lookup(d, "example.com /a", 14, req(""));
    b = disk_lookup(d, "example.com /b", 14, req(""));
    gz = disk_lookup(d, "example.com /v", 14, req("Accept-Encoding: gzip\r\n"));
    assert_int_equal(disk_lookup(d, "example.com /v", 14, req("")), 0);
    expect_body(d, a, "example.com /a", "A");
    expect_body(d, b, "example.com /b", "B");
    expect_body(d, gz, "example.com /v", "GZ");
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "example.com /n%d", i);
        expect_body(d, disk_lookup(d, key, strlen(key), req("")), key, key);
    }
    /* New ids continue above the old ones, so a replacement survives the next restart. */
    put(d, "example.com /a", NULL, NULL, "A2");
    wait_writes(d, 1);
    c = disk_lookup(d, "example.com /a", 14, req(""));
    assert_true((c & ((UINT64_C(1) << 56) - 1)) > (a & ((UINT64_C(1) << 56) - 1)));
    wait_gone(&t, a);
    disk_close(d);

    d = open_ok(&t, 1 << 20);
    assert_int_equal(stats(d).objects, 53);
    expect_body(d, disk_lookup(d, "example.com /a", 14, req("")), "example.com /a", "A2");
    disk_close(d);
    tdir_remove(&t);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    struct stat st;
    uint8_t *p;
    int fd = open(path, O_RDONLY);

    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    p = malloc((size_t)st.st_size + 1);
    assert_non_null(p);
    assert_int_equal(read(fd, p, (size_t)st.st_size), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return p;
}

static void spill(const char *path, const void *p, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, p, len), (ssize_t)len);
    close(fd);
}

/* A crash between the rename of a replacement and the unlink of the old file. */
static void test_crash_leftover_duplicate(void **state)
{
    const char *key = "example.com /dup";
    struct tdir t;
    struct disk *d;
    uint64_t old_id, new_id;
    char path[128];
    uint8_t *old;
    size_t old_len;

    tdir_make(&t);
    d = open_ok(&t, 1 << 20);
    put(d, key, NULL, NULL, "old");
    wait_writes(d, 1);
    old_id = disk_lookup(d, key, strlen(key), req(""));
    id_path(&t, old_id, path, sizeof(path));
    old = slurp(path, &old_len);
    put(d, key, NULL, NULL, "new");
    wait_writes(d, 2);
    new_id = disk_lookup(d, key, strlen(key), req(""));
    disk_close(d);
    /* Put the old file back, as if the unlink had not happened. */
    spill(path, old, old_len);
    free(old);
    assert_int_equal(count_files(&t), 2);

    d = open_ok(&t, 1 << 20);
    assert_int_equal(stats(d).objects, 1);
    assert_int_equal(disk_lookup(d, key, strlen(key), req("")), new_id);
    assert_false(id_exists(&t, old_id));
    expect_body(d, new_id, key, "new");
    disk_close(d);
    tdir_remove(&t);
}

static void test_budget_eviction(void **state)
{
    struct tdir t;
    struct disk *d;
    uint64_t a, b, c, dd;

    tdir_make(&t);
    /* Each small object is charged one block. */
    d = open_ok(&t, 3 * BLOCK);
    put(d, "k /a", NULL, NULL, "a");
    wait_writes(d, 1);
    put(d, "k /b", NULL, NULL, "b");
    wait_writes(d, 2);
    put(d, "k /c", NULL, NULL, "c");
    wait_writes(d, 3);
    a = disk_lookup(d, "k /a", 4, req(""));  /* a is now the most recently used */
    b = disk_lookup(d, "k /b", 4, req(""));
    c = disk_lookup(d, "k /c", 4, req(""));
    a = disk_lookup(d, "k /a", 4, req(""));
    assert_true(a && b && c);
    put(d, "k /d", NULL, NULL, "d");
    wait_writes(d, 4);
    dd = disk_lookup(d, "k /d", 4, req(""));
    assert_true(dd > 0);
    /* b was the least recently used. */
    assert_int_equal(disk_lookup(d, "k /b", 4, req("")), 0);
    wait_gone(&t, b);
    assert_true(id_exists(&t, a) && id_exists(&t, c) && id_exists(&t, dd));
    assert_int_equal(count_files(&t), 3);
    assert_int_equal(stats(d).evictions, 1);
    assert_int_equal(stats(d).bytes, 3 * BLOCK);
    disk_close(d);

    /* At open the order is the write order: a, c, d; a budget of two keeps c and d. */
    d = open_ok(&t, 2 * BLOCK);
    assert_int_equal(stats(d).objects, 2);
    assert_int_equal(stats(d).evictions, 1);
    assert_int_equal(disk_lookup(d, "k /a", 4, req("")), 0);
    assert_false(id_exists(&t, a));
    assert_int_equal(count_files(&t), 2);
    expect_body(d, disk_lookup(d, "k /c", 4, req("")), "k /c", "c");
    disk_close(d);
    tdir_remove(&t);
}

static void test_purge(void **state)
{
    struct tdir t;
    struct disk *d;

    tdir_make(&t);
    d = open_ok(&t, 1 << 20);
    put(d, "h /a", "Accept", req("Accept: x\r\n"), "ax");
    put(d, "h /a", "Accept", req("Accept: y\r\n"), "ay");
    put(d, "h /a/b", NULL, NULL, "ab");
    put(d, "h /b", NULL, NULL, "b");
    put(d, "g /a", NULL, NULL, "g");
    wait_writes(d, 5);
    assert_int_equal(count_files(&t), 5);

    /* Exact: both variants of "h /a", not "h /a/b". */
    assert_int_equal(disk_purge(d, "h /a", 4, 0), 2);
    assert_int_equal(disk_lookup(d, "h /a", 4, req("Accept: x\r\n")), 0);
    assert_int_equal(disk_lookup(d, "h /a", 4, req("Accept: y\r\n")), 0);
    assert_true(disk_lookup(d, "h /a/b", 6, req("")) > 0);
    assert_int_equal(count_files(&t), 3);
    assert_int_equal(disk_purge(d, "h /a", 4, 0), 0);

    /* Prefix. */
    assert_int_equal(disk_purge(d, "h /", 3, 1), 2);
    assert_int_equal(disk_lookup(d, "h /b", 4, req("")), 0);
    assert_true(disk_lookup(d, "g /a", 4, req("")) > 0);
    assert_int_equal(count_files(&t), 1);
    assert_int_equal(stats(d).objects, 1);

    /* A purge right after a put wins, whether the write was queued, running or done. */
    for (int i = 0; i < 20; i++) {
        put(d, "h /late", NULL, NULL, "late");
        disk_purge(d, "h /late", 7, i & 1);
    }
    disk_close(d);
    d = open_ok(&t, 1 << 20);
    assert_int_equal(disk_lookup(d, "h /late", 7, req("")), 0);
    assert_int_equal(stats(d).objects, 1);
    assert_int_equal(count_files(&t), 1);
    disk_close(d);
    tdir_remove(&t);
}

static void test_expire(void **state)
{
    struct tdir t;
    struct disk *d;
    struct disk_record *r, onfile;
    uint64_t a, ab;
    char path[128];
    uint8_t *p;
    size_t len;

    tdir_make(&t);
    d = open_ok(&t, 1 << 20);
    put(d, "h /a", NULL, NULL, "a");
    put(d, "h /a/b", NULL, NULL, "ab");
    put(d, "h /c", NULL, NULL, "c");
    wait_writes(d, 3);
    assert_int_equal(disk_expire(d, "h /a", 4, 0, T0 + 100), 1);
    assert_int_equal(disk_expire(d, "h /zz", 5, 0, T0 + 100), 0);
    a = disk_lookup(d, "h /a", 4, req(""));
    ab = disk_lookup(d, "h /a/b", 6, req(""));
    /* The index value comes back with the record at once. */
    r = read_sync(d, a);
    assert_non_null(r);
    assert_true(r->expires_at == T0 + 100);
    disk_record_free(r);
    r = read_sync(d, ab);
    assert_non_null(r);
    assert_true(r->expires_at == -1);
    disk_record_free(r);
    assert_int_equal(disk_expire(d, "h /a", 4, 1, T0 + 200), 2);
    disk_close(d);

    /* The file was patched in place and still parses. */
    id_path(&t, a, path, sizeof(path));
    p = slurp(path, &len);
    assert_int_equal(disk_record_parse(p, len, &onfile), 0);
    assert_true(onfile.expires_at == T0 + 200);
    disk_record_fini(&onfile);
    free(p);

    d = open_ok(&t, 1 << 20);
    assert_int_equal(stats(d).errors, 0);
    r = read_sync(d, disk_lookup(d, "h /a/b", 6, req("")));
    assert_non_null(r);
    assert_true(r->expires_at == T0 + 200);
    disk_record_free(r);
    r = read_sync(d, disk_lookup(d, "h /c", 4, req("")));
    assert_non_null(r);
    assert_true(r->expires_at == -1);
    disk_record_free(r);
    disk_close(d);
    tdir_remove(&t);
}

static void test_corrupt_files_at_open(void **state)
{
    struct tdir t;
    struct disk *d;
    uint64_t a;
    char path[128], p2[160];
    uint8_t *good;
    size_t len;

    tdir_make(&t);
    d = open_ok(&t, 1 << 20);
    put(d, "h /a", NULL, NULL, "a body");
    wait_writes(d, 1);
    a = disk_lookup(d, "h /a", 4, req(""));
    disk_close(d);
    id_path(&t, a, path, sizeof(path));
    good = slurp(path, &len);

    /* Garbage under a valid name. */
    snprintf(p2, sizeof(p2), "%s/07/0700000000000100", t.path);
    spill(p2, "hello", 5);
    /* A truncated record. */
    snprintf(p2, sizeof(p2), "%s/08/0800000000000101", t.path);
    spill(p2, good, len - 1);
    /* A damaged head (one byte of the key). */
    good[HEAD + 1] ^= 0x20;
    snprintf(p2, sizeof(p2), "%s/09/0900000000000102", t.path);
    spill(p2, good, len);
    good[HEAD + 1] ^= 0x20;
    /* A temporary file left by a crash. */
    snprintf(p2, sizeof(p2), "%s/0a/0a00000000000103.tmp", t.path);
    spill(p2, good, len);
    /* Names we never create are left alone. */
    snprintf(p2, sizeof(p2), "%s/0b/0c00000000000104", t.path);
    spill(p2, good, len);
    snprintf(p2, sizeof(p2), "%s/0b/README", t.path);
    spill(p2, "x", 1);
    snprintf(p2, sizeof(p2), "%s/notes.txt", t.path);
    spill(p2, "x", 1);
    free(good);
    assert_int_equal(count_files(&t), 7);

    d = open_ok(&t, 1 << 20);
    assert_int_equal(stats(d).objects, 1);
    assert_int_equal(stats(d).errors, 3);
    assert_int_equal(count_files(&t), 3);
    snprintf(p2, sizeof(p2), "%s/0b/README", t.path);
    assert_int_equal(access(p2, F_OK), 0);
    snprintf(p2, sizeof(p2), "%s/0b/0c00000000000104", t.path);
    assert_int_equal(access(p2, F_OK), 0);
    unlink(p2);
    snprintf(p2, sizeof(p2), "%s/0b/README", t.path);
    unlink(p2);
    expect_body(d, disk_lookup(d, "h /a", 4, req("")), "h /a", "a body");
    disk_close(d);
    tdir_remove(&t);
}

/* A damaged body passes the scan (only heads are read) and is caught on read. */
static void test_corrupt_body_on_read(void **state)
{
    struct tdir t;
    struct disk *d;
    uint64_t a;
    char path[128];
    uint8_t byte;
    off_t at = HEAD + 4 + 37 + 2; /* key "h /a", the fields obj() sets, 2 bytes into the body */
    int fd;

    tdir_make(&t);
    d = open_ok(&t, 1 << 20);
    put(d, "h /a", NULL, NULL, "a body");
    put(d, "h /b", NULL, NULL, "b body");
    wait_writes(d, 2);
    a = disk_lookup(d, "h /a", 4, req(""));
    id_path(&t, a, path, sizeof(path));
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &byte, 1, at), 1);
    byte ^= 1;
    assert_int_equal(pwrite(fd, &byte, 1, at), 1);
    close(fd);

    assert_null(read_sync(d, a));
    assert_false(id_exists(&t, a));
    assert_int_equal(disk_lookup(d, "h /a", 4, req("")), 0);
    assert_int_equal(stats(d).errors, 1);
    assert_int_equal(stats(d).objects, 1);
    /* A file removed behind the tier's back: the entry goes too. */
    a = disk_lookup(d, "h /b", 4, req(""));
    id_path(&t, a, path, sizeof(path));
    assert_int_equal(unlink(path), 0);
    assert_null(read_sync(d, a));
    assert_int_equal(disk_lookup(d, "h /b", 4, req("")), 0);
    assert_int_equal(stats(d).objects, 0);
    disk_close(d);
    tdir_remove(&t);
}

static void test_drops(void **state)
{
    struct tdir t;
    struct disk *d;
    struct cobj *o;
    char *bigkey;

    tdir_make(&t);
    d = open_ok(&t, 2 * BLOCK);
    /* Larger than the whole budget. */
    o = obj("h /big", NULL, NULL, "");
    cbody_unref(o->body);
    o->body = cbody_create(2 * BLOCK);
    memset(o->body->data, 'x', o->body->len);
    disk_put(d, o);
    cobj_unref(o);
    /* A key over the format's cap. */
    bigkey = malloc((64 << 10) + 2);
    assert_non_null(bigkey);
    memset(bigkey, 'k', (64 << 10) + 1);
    bigkey[(64 << 10) + 1] = '\0';
    put(d, bigkey, NULL, NULL, "x");
    free(bigkey);
    /* A status the format cannot hold. */
    o = obj("h /s", NULL, NULL, "x");
    o->meta.status = 42;
    disk_put(d, o);
    cobj_unref(o);
    assert_int_equal(stats(d).dropped, 3);
    disk_close(d);
    assert_int_equal(count_files(&t), 0);
    tdir_remove(&t);
}

/*
 * The queue limit: while an 80 MiB body is being written, further puts are
 * dropped instead of waiting. The writer needs tens of milliseconds for
 * that body; the ten puts take microseconds.
 */
static void test_drop_counted(void **state)
{
    struct tdir t;
    struct disk *d;
    struct cobj *o;
    struct disk_stats st;

    tdir_make(&t);
    d = open_ok(&t, UINT64_C(1) << 30);
    o = obj("h /huge", NULL, NULL, "");
    cbody_unref(o->body);
    o->body = cbody_create(80 << 20);
    memset(o->body->data, 'h', o->body->len);
    disk_put(d, o);
    cobj_unref(o);
    for (int i = 0; i < 10; i++)
        put(d, "h /small", NULL, NULL, "s");
    st = stats(d);
    assert_true(st.dropped >= 1);
    /* Every put is either written or dropped, never lost otherwise. */
    for (int i = 0; i < 10000 && st.writes + st.dropped < 11; i++) {
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
        st = stats(d);
    }
    assert_int_equal(st.writes + st.dropped, 11);
    disk_close(d);
    /* The big one made it, complete. */
    d = open_ok(&t, UINT64_C(1) << 30);
    assert_int_equal(stats(d).errors, 0);
    assert_true(disk_lookup(d, "h /huge", 7, req("")) > 0);
    disk_close(d);
    tdir_remove(&t);
}

static void test_open_errors(void **state)
{
    struct tdir t;
    struct disk *d, *d2;
    char err[256] = "", path[128];

    tdir_make(&t);
    d = open_ok(&t, 1 << 20);
    /* One directory, one user. */
    d2 = disk_open(t.path, 1 << 20, err, sizeof(err));
    assert_null(d2);
    assert_non_null(strstr(err, "in use"));
    disk_close(d);
    /* Not a directory. */
    snprintf(path, sizeof(path), "%s/notes.txt", t.path);
    spill(path, "x", 1);
    err[0] = '\0';
    assert_null(disk_open(path, 1 << 20, err, sizeof(err)));
    assert_true(err[0] != '\0');
    tdir_remove(&t);
}

static void test_open_creates(void **state)
{
    struct tdir t, sub;
    struct disk *d;

    tdir_make(&t);
    assert_true(strlen(t.path) + 3 <= sizeof(sub.path));
    memcpy(sub.path, t.path, strlen(t.path));
    memcpy(sub.path + strlen(t.path), "/c", 3);
    d = open_ok(&sub, 1 << 20);
    put(d, "h /a", NULL, NULL, "a");
    wait_writes(d, 1);
    disk_close(d);
    assert_int_equal(count_files(&sub), 1);
    tdir_remove(&sub);
    assert_int_equal(rmdir(t.path), 0);
}

/* Turns each subdirectory into a plain file (away = 1) and back (away = 0). */
static void hide_subdirs(const struct tdir *t, int away)
{
    char sub[128], moved[140];

    for (int i = 0; i < 256; i++) {
        snprintf(sub, sizeof(sub), "%s/%02x", t->path, i);
        snprintf(moved, sizeof(moved), "%s/%02x.away", t->path, i);
        if (away) {
            assert_int_equal(rename(sub, moved), 0);
            spill(sub, "", 0);
        } else {
            assert_int_equal(unlink(sub), 0);
            assert_int_equal(rename(moved, sub), 0);
        }
    }
}

/* A write that fails is counted, leaves nothing behind, and the next one works. */
static void test_write_failure(void **state)
{
    struct tdir t;
    struct disk *d;
    struct disk_stats st;

    tdir_make(&t);
    d = open_ok(&t, 1 << 20);
    hide_subdirs(&t, 1);
    put(d, "h /a", NULL, NULL, "a");
    for (int i = 0; i < 10000 && stats(d).errors == 0; i++)
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    hide_subdirs(&t, 0);
    st = stats(d);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.writes, 0);
    assert_int_equal(st.objects, 0);
    assert_int_equal(disk_lookup(d, "h /a", 4, req("")), 0);
    assert_int_equal(count_files(&t), 0);
    put(d, "h /a", NULL, NULL, "a");
    wait_writes(d, 1);
    expect_body(d, disk_lookup(d, "h /a", 4, req("")), "h /a", "a");
    disk_close(d);
    tdir_remove(&t);
}

/* Patches racing reads are never mistaken for corruption. */
struct race {
    struct disk *d;
    int rounds;
};

static void *expirer(void *arg)
{
    struct race *r = arg;
    for (int i = 0; i < r->rounds; i++) {
        disk_expire(r->d, "r /", 3, 1, T0 + i);
        nanosleep(&(struct timespec){.tv_nsec = 100000}, NULL);
    }
    return NULL;
}

static void test_expire_races_reads(void **state)
{
    struct tdir t;
    struct disk *d;
    struct race r;
    pthread_t th;
    uint64_t ids[20];
    char key[32];

    tdir_make(&t);
    d = open_ok(&t, 1 << 20);
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "r /%d", i);
        put(d, key, NULL, NULL, key);
    }
    wait_writes(d, 20);
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "r /%d", i);
        ids[i] = disk_lookup(d, key, strlen(key), req(""));
        assert_true(ids[i] > 0);
    }
    r.d = d;
    r.rounds = 200;
    assert_int_equal(pthread_create(&th, NULL, expirer, &r), 0);
    for (int i = 0; i < 200; i++) {
        struct disk_record *rec = read_sync(d, ids[i % 20]);
        if (rec) {
            snprintf(key, sizeof(key), "r /%d", i % 20);
            assert_int_equal(rec->body->len, strlen(key));
            assert_memory_equal(rec->body->data, key, rec->body->len);
            disk_record_free(rec);
        }
    }
    pthread_join(th, NULL);
    assert_int_equal(stats(d).errors, 0);
    assert_int_equal(stats(d).objects, 20);
    disk_close(d);

    d = open_ok(&t, 1 << 20);
    assert_int_equal(stats(d).objects, 20);
    assert_int_equal(stats(d).errors, 0);
    for (int i = 0; i < 20; i++) {
        struct disk_record *rec = read_sync(d, ids[i]);
        assert_non_null(rec);
        assert_true(rec->expires_at == T0 + 199);
        disk_record_free(rec);
    }
    disk_close(d);
    tdir_remove(&t);
}

int main(void)
{
    /* The tier logs a line per open; only warnings matter here. */
    log_set_level(LOG_LVL_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc_reference),
        cmocka_unit_test(test_write_matches_spec),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_null_body),
        cmocka_unit_test(test_parse_truncations),
        cmocka_unit_test(test_parse_single_byte_corruption),
        cmocka_unit_test(test_parse_bad_header),
        cmocka_unit_test(test_parse_caps),
        cmocka_unit_test(test_put_lookup_read),
        cmocka_unit_test(test_vary_variants),
        cmocka_unit_test(test_replace),
        cmocka_unit_test(test_reopen),
        cmocka_unit_test(test_crash_leftover_duplicate),
        cmocka_unit_test(test_budget_eviction),
        cmocka_unit_test(test_purge),
        cmocka_unit_test(test_expire),
        cmocka_unit_test(test_corrupt_files_at_open),
        cmocka_unit_test(test_corrupt_body_on_read),
        cmocka_unit_test(test_drops),
        cmocka_unit_test(test_drop_counted),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_open_creates),
        cmocka_unit_test(test_write_failure),
        cmocka_unit_test(test_expire_races_reads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
