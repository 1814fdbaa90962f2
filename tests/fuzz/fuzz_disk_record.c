/*
 * libFuzzer target for disk_record_parse (src/cache/disk.c), the parser
 * of the disk tier's files (docs/disk-format.md). The input is a whole
 * file, parsed twice:
 *
 *   1. as it is, which mostly exercises the checksum checks;
 *   2. with both checksums recomputed here (when the declared lengths fit
 *      the input), so that mutations reach the structural checks behind
 *      them. The verdict must then equal that of an independent reading
 *      of the document's rules (valid_by_spec).
 *
 * Aborts when: a failed parse leaves anything in the record; the verdict
 * on the fixed-up copy differs from valid_by_spec; a successful parse
 * gives a record that disk_record_write does not turn back into exactly
 * the input bytes (the encoding is canonical), or whose re-serialisation
 * does not parse again to the same record. ASan catches reads outside the
 * input, UBSan overflow in the length arithmetic.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/disk.h"
#include "lib/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HEAD 80

static void require(int cond)
{
    if (!cond)
        abort();
}

static uint32_t crc32c_bitwise(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* The head section length the header declares, or 0 when it overruns size. */
static size_t head_len_of(const uint8_t *p, size_t size)
{
    uint64_t n;

    if (size < HEAD)
        return 0;
    n = HEAD + le(p + 16, 4) + le(p + 20, 4) + le(p + 24, 4) + le(p + 28, 4);
    return n <= size ? (size_t)n : 0;
}

/* The document's rules, given that both checksums are right. */
static int valid_by_spec(const uint8_t *p, size_t size)
{
    uint64_t flags, key_len, vary_len, vkey_len, fields_len, body_len, status;
    size_t head_len;

    if (size < HEAD || memcmp(p, "FERRYOBJ", 8) != 0 || le(p + 8, 4) != 1)
        return 0;
    flags = le(p + 12, 4);
    key_len = le(p + 16, 4);
    vary_len = le(p + 20, 4);
    vkey_len = le(p + 24, 4);
    fields_len = le(p + 28, 4);
    body_len = le(p + 32, 8);
    status = le(p + 40, 4);
    if (flags > 1 || le(p + 44, 4) != 0 || status < 100 || status > 999)
        return 0;
    if (key_len > 65536 || vary_len > 65536 || vkey_len > 1048576 || fields_len > 1048576 ||
        body_len > (UINT64_C(64) << 30))
        return 0;
    if (flags == 0 && (vary_len != 0 || vkey_len != 0))
        return 0;
    head_len = head_len_of(p, size);
    if (head_len == 0 || size - head_len != body_len)
        return 0;
    if (memchr(p + HEAD + key_len, 0, (size_t)vary_len) != NULL)
        return 0;
    return 1;
}

static void same_record(const struct disk_record *a, const struct disk_record *b)
{
    require(a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0);
    require((a->vary == NULL) == (b->vary == NULL));
    require((a->vkey == NULL) == (b->vkey == NULL));
    if (a->vary) {
        require(strcmp(a->vary, b->vary) == 0);
        require(a->vkey_len == b->vkey_len && memcmp(a->vkey, b->vkey, a->vkey_len) == 0);
    }
    require(a->status == b->status && a->request_time == b->request_time &&
            a->response_time == b->response_time && a->expires_at == b->expires_at);
    require(a->fields_len == b->fields_len && memcmp(a->fields, b->fields, a->fields_len) == 0);
    require(a->body != NULL && b->body != NULL && a->body->len == b->body->len);
    require(memcmp(a->body->data, b->body->data, a->body->len) == 0);
}

/* Parses data; on success checks the round trip. Returns the parser's verdict. */
static int check(const uint8_t *data, size_t size)
{
    struct disk_record rec, again;
    struct buf out;

    if (disk_record_parse(data, size, &rec) != 0) {
        require(rec.key == NULL && rec.vary == NULL && rec.vkey == NULL && rec.fields == NULL &&
                rec.body == NULL);
        return -1;
    }
    require(rec.status >= 100 && rec.status <= 999);
    require(rec.body->len <= size);
    buf_init(&out);
    disk_record_write(&rec, &out);
    require(buf_avail(&out) == size && memcmp(buf_head(&out), data, size) == 0);
    require(disk_record_parse((const uint8_t *)buf_head(&out), buf_avail(&out), &again) == 0);
    same_record(&rec, &again);
    disk_record_fini(&again);
    disk_record_fini(&rec);
    buf_fini(&out);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *fixed;
    size_t head_len;
    uint32_t c;

    check(data, size);

    head_len = head_len_of(data, size);
    if (head_len == 0)
        return 0;
    fixed = malloc(size);
    require(fixed != NULL);
    memcpy(fixed, data, size);
    c = crc32c_bitwise(0, fixed, 72);
    c = crc32c_bitwise(c, fixed + HEAD, head_len - HEAD);
    put_le32(fixed + 72, c);
    put_le32(fixed + 76, crc32c_bitwise(0, fixed + head_len, size - head_len));
    require((check(fixed, size) == 0) == valid_by_spec(fixed, size));
    free(fixed);
    return 0;
}
