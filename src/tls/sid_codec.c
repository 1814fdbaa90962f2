/*
 * sid_codec -- puts a cache server's label into the session identifiers it
 * issues, and reads it back on the switch (DESIGN.md contract 1; the wire
 * layouts and their trade-off are in docs/session-ids.md).
 *
 * Both codecs are pure functions of their arguments plus, when encoding,
 * fresh bytes from OpenSSL's RAND_bytes. Identifiers are at most 32 bytes,
 * the longest legacy_session_id (RFC 8446 4.1.2, RFC 5246 7.4.1.2).
 *
 * mod-n treats the identifier as a big-endian integer v and routes it to
 * v mod n + 1. The encoder draws v at random and then moves it to the
 * nearest multiple of n below it plus (label - 1), instead of redrawing
 * until the residue matches: one RAND_bytes call and a fixed amount of
 * work for any n. The result is uniform over the identifiers carrying the
 * label except for the top, partial block of n values, which shifts the
 * distribution by at most n / 256^len in total variation (below 2^-240
 * for 32-byte identifiers), far too little to matter for identifiers whose
 * only job is to be unguessable and unique.
 *
 * prefix writes a version/tag byte, the label and a 16-bit check value in
 * clear, then random bytes. The check value is a keyless CRC: it catches
 * identifiers that were never made by this codec (random TLS 1.3 legacy
 * session IDs, other servers' formats), not forgeries, which need no
 * catching because a forged label only sends a client to a server that
 * does not know its session and does a full handshake.
 */
#include "tls/sid_codec.h"

#include <string.h>

#include <openssl/rand.h>

#define SID_MAX_LEN 32

/* Low nibble of byte 0 for the prefix codec; the high nibble is the version. */
#define SID_PREFIX_TAG 0xA
#define SID_PREFIX_HDR_LEN 5 /* version/tag, label (2), check (2) */

int sid_codec_kind_parse(const char *name, enum sid_codec_kind *kind)
{
    if (name == NULL)
        return -1;
    if (strcmp(name, "mod-n") == 0) {
        *kind = SID_CODEC_MODN;
        return 0;
    }
    if (strcmp(name, "prefix") == 0) {
        *kind = SID_CODEC_PREFIX;
        return 0;
    }
    return -1;
}

/* id[0..len) as a big-endian integer, mod n; n <= 65535 keeps r * 256 + 255 in 24 bits. */
static unsigned modn_residue(const uint8_t *id, size_t len, unsigned n)
{
    uint32_t r = 0;
    size_t i;

    for (i = 0; i < len; i++)
        r = (r * 256 + id[i]) % n;
    return (unsigned)r;
}

/* v += x modulo 256^len; returns the carry out of the top byte. */
static int be_add(uint8_t *v, size_t len, uint32_t x)
{
    uint32_t carry = x;
    size_t i = len;

    while (i > 0 && carry != 0) {
        i--;
        carry += v[i];
        v[i] = (uint8_t)carry;
        carry >>= 8;
    }
    return carry != 0;
}

/* v -= x modulo 256^len; returns the borrow out of the top byte. */
static int be_sub(uint8_t *v, size_t len, uint32_t x)
{
    uint32_t borrow = x;
    size_t i = len;

    while (i > 0 && borrow != 0) {
        uint32_t low = borrow & 0xff;

        i--;
        borrow >>= 8;
        if (v[i] < low)
            borrow++;
        v[i] = (uint8_t)(v[i] - low);
    }
    return borrow != 0;
}

static int modn_encode(unsigned n, unsigned label, uint8_t *out, size_t len)
{
    unsigned t = label - 1, r;

    if (n < 1 || n > SID_MAX_LABEL || label < 1 || label > n || len < 1 || len > SID_MAX_LEN)
        return -1;
    /*
     * A 1-byte identifier holds only 0..255, so labels above 256 cannot be
     * carried by it. Longer identifiers hold every residue of n <= 65535.
     */
    if (len == 1 && t > 255)
        return -1;
    if (RAND_bytes(out, (int)len) != 1)
        return -1;

    /*
     * Move v to v - (v mod n) + t. That can only pass 256^len when v sits
     * in the top, partial block of n values; then step back one block
     * (the wrap of the addition and the borrow of the subtraction cancel,
     * leaving the true value (v - r + t - n), which is >= 0 because the
     * block below exists whenever t fits at all).
     */
    r = modn_residue(out, len, n);
    (void)be_sub(out, len, r);
    if (be_add(out, len, t))
        (void)be_sub(out, len, n);
    return 0;
}

/*
 * One byte into a CRC-16 with polynomial x^16 + x^12 + x^5 + 1 (0x1021),
 * most significant bit first.
 */
static uint16_t crc16_byte(uint16_t crc, uint8_t b)
{
    int i;

    crc ^= (uint16_t)(b << 8);
    for (i = 0; i < 8; i++)
        crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    return crc;
}

/*
 * The prefix codec keeps its five header bytes at the END of the
 * identifier (offset len - 5): tag and version, the label (2 bytes), the
 * check value (2 bytes). The bytes in front are random. OpenSSL's server
 * session cache hashes a session by the first four bytes of its ID, so a
 * constant header in front would put every session of one cache in one
 * hash chain and make each lookup linear in the number of sessions
 * (measured: 384 -> 2,983 us of CPU per TLS 1.2 handshake after 30,000
 * sessions). Random leading bytes keep that table spread.
 */
#define PREFIX_HDR 5

/*
 * The check value: a CRC-16 (poly 0x1021, init 0xffff) over the identifier
 * length, then every byte but the check value itself. A CRC rather than a
 * hash because it has a guarantee a hash lacks: every error burst of up to
 * 16 bits, so every single damaged byte, is caught. On random input it is
 * as uniform as any 16-bit hash, which is all the false-accept figure
 * relies on. Mixing in the length means a truncated or extended identifier
 * is checked against a different value.
 */
static uint16_t prefix_check(const uint8_t *id, size_t len)
{
    uint16_t crc = 0xffff;
    size_t i, chk = len - PREFIX_HDR + 3;

    crc = crc16_byte(crc, (uint8_t)len);
    for (i = 0; i < len; i++) {
        if (i == chk || i == chk + 1)
            continue;
        crc = crc16_byte(crc, id[i]);
    }
    return crc;
}

static int prefix_encode(uint8_t version, unsigned label, uint8_t *out, size_t len)
{
    uint16_t check;
    uint8_t *h = out + len - PREFIX_HDR;

    if (version > 15 || label < 1 || label > SID_MAX_LABEL || len < SID_PREFIX_MIN_LEN
        || len > SID_MAX_LEN)
        return -1;
    if (RAND_bytes(out, (int)len) != 1)
        return -1;
    h[0] = (uint8_t)(version << 4 | SID_PREFIX_TAG);
    h[1] = (uint8_t)(label >> 8);
    h[2] = (uint8_t)label;
    check = prefix_check(out, len);
    h[3] = (uint8_t)(check >> 8);
    h[4] = (uint8_t)check;
    return 0;
}

int sid_encode(const struct sid_codec *c, unsigned label, uint8_t *out, size_t len)
{
    if (c == NULL || out == NULL)
        return -1;
    switch (c->kind) {
    case SID_CODEC_MODN:
        return modn_encode(c->n, label, out, len);
    case SID_CODEC_PREFIX:
        return prefix_encode(c->version, label, out, len);
    }
    return -1;
}

unsigned sid_decode(const struct sid_codec *c, const uint8_t *id, size_t len)
{
    unsigned label;

    if (c == NULL || id == NULL || len == 0 || len > SID_MAX_LEN)
        return 0;
    switch (c->kind) {
    case SID_CODEC_MODN:
        if (c->n < 1 || c->n > SID_MAX_LABEL)
            return 0;
        return modn_residue(id, len, c->n) + 1;
    case SID_CODEC_PREFIX:
        if (c->version > 15 || len < SID_PREFIX_MIN_LEN)
            return 0;
        {
            const uint8_t *h = id + len - PREFIX_HDR;
            if (h[0] != (uint8_t)(c->version << 4 | SID_PREFIX_TAG))
                return 0;
            label = (unsigned)h[1] << 8 | h[2];
            if (label == 0)
                return 0;
            if ((uint16_t)(h[3] << 8 | h[4]) != prefix_check(id, len))
                return 0;
            return label;
        }
    }
    return 0;
}
