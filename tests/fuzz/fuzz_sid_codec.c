/*
 * libFuzzer target for src/tls/sid_codec.c. Input layout:
 *
 *   byte 0      bit 0: codec (1 mod-n, 0 prefix); bits 3-7: version (0..31,
 *               so invalid versions are tried too)
 *   bytes 1-2   n, big-endian (0..65535)
 *   bytes 3-4   label to encode, big-endian
 *   bytes 5..   an identifier to decode
 *
 * Aborts when: mod-n decode differs from a second, independent computation
 * of id mod n + 1 (16 bits at a time); a prefix decode returns a label that
 * is not the one in bytes 1-2 or accepts a wrong byte 0; damaging any one
 * byte of an accepted prefix id does not make it rejected; encode succeeds
 * for arguments outside the contract or fails inside it; or an encoded id
 * does not decode to its label.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tls/sid_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int cond)
{
    if (!cond)
        abort();
}

/* id mod n + 1 computed 16 bits at a time, a different route from the codec's. */
static unsigned modn_reference(const uint8_t *id, size_t len, unsigned n)
{
    uint64_t r = 0;
    size_t i = 0;

    if (len % 2 == 1)
        r = id[i++] % n;
    for (; i < len; i += 2)
        r = (r * 65536 + ((unsigned)id[i] << 8 | id[i + 1])) % n;
    return (unsigned)r + 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sid_codec c;
    const uint8_t *id;
    size_t len, enc_len;
    unsigned label, got;
    uint8_t out[32], copy[32];
    int valid, rc;

    if (size < 5)
        return 0;
    memset(&c, 0, sizeof(c));
    c.kind = (data[0] & 1) ? SID_CODEC_MODN : SID_CODEC_PREFIX;
    c.version = (uint8_t)(data[0] >> 3);
    c.n = (unsigned)data[1] << 8 | data[2];
    label = (unsigned)data[3] << 8 | data[4];
    id = data + 5;
    len = size - 5;

    got = sid_decode(&c, id, len);
    if (c.kind == SID_CODEC_MODN) {
        if (c.n >= 1 && len >= 1 && len <= 32)
            require(got == modn_reference(id, len, c.n) && got >= 1 && got <= c.n);
        else
            require(got == 0);
    } else if (got != 0) {
        size_t pos = data[0] % len;

        require(c.version <= 15 && len >= SID_PREFIX_MIN_LEN && len <= 32);
        /* The five-byte header is at the end (docs/session-ids.md). */
        require(id[len - 5] == (uint8_t)(c.version << 4 | 0xA));
        require(got == ((unsigned)id[len - 4] << 8 | id[len - 3]));
        memcpy(copy, id, len);
        copy[pos] ^= (uint8_t)(data[3] | 1);
        require(sid_decode(&c, copy, len) == 0);
    }

    /* Encode with a length taken from the input; check the contract both ways. */
    enc_len = len % 33;
    if (c.kind == SID_CODEC_MODN)
        valid = c.n >= 1 && label >= 1 && label <= c.n && enc_len >= 1
                && !(enc_len == 1 && label > 256);
    else
        valid = c.version <= 15 && label >= 1 && label <= SID_MAX_LABEL
                && enc_len >= SID_PREFIX_MIN_LEN;
    rc = sid_encode(&c, label, out, enc_len);
    require((rc == 0) == valid);
    if (rc == 0)
        require(sid_decode(&c, out, enc_len) == label);
    require(sid_encode(&c, label, out, 33) == -1);
    return 0;
}
