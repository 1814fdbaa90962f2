/*
 * sid_codec -- routable session identifiers (DESIGN.md contract 1).
 *
 * A cache server's TLS 1.2 session IDs, its stateful TLS 1.3 tickets (whose
 * PSK identity is the session ID) and the key names of its stateless tickets
 * (which start the ticket and so the PSK identity) all carry the server's
 * label, so the switch can route a resumption by reading the ClientHello.
 * The switch needs no secret to decode.
 *
 * Two codecs:
 *   mod-n   the patent's literal rule: label = (id as a big-endian integer)
 *           mod n + 1. Every id decodes to some label, so a random TLS 1.3
 *           legacy session ID is routed at random. The encoder draws one
 *           random id v and moves it to v - (v mod n) + label - 1 (stepping
 *           back n if that overflows): no retry loop, and within n / 256^len
 *           of uniform over the ids carrying the label.
 *   prefix  the last five bytes of the id (offset len-5) are a header:
 *           version (high nibble) and codec tag 0xA (low nibble); the
 *           label, big-endian (1..65535); a checksum over the length and
 *           every other byte (CRC-16, poly 0x1021, init 0xffff; keyless).
 *           The bytes before it are random: OpenSSL hashes server sessions
 *           by their first four bytes, which must therefore vary. Survives
 *           changes of n, and rejects random ids: one passes the tag byte
 *           (8 bits) and the checksum (16 bits) with probability about
 *           2^-24. A stateless ticket's 16-byte key_name carries it in its
 *           bytes 11-15, so decode a ticket or PSK identity by its first 16
 *           bytes, a session ID (or stateful TLS 1.3 ticket) whole.
 * See docs/session-ids.md for the trade-off.
 */
#ifndef FERRY_TLS_SID_CODEC_H
#define FERRY_TLS_SID_CODEC_H

#include <stddef.h>
#include <stdint.h>

#define SID_PREFIX_MIN_LEN 8   /* shortest id the prefix codec can carry */
#define SID_MAX_LABEL 65535

enum sid_codec_kind {
    SID_CODEC_MODN = 1,
    SID_CODEC_PREFIX = 2,
};

struct sid_codec {
    enum sid_codec_kind kind;
    unsigned n;          /* group size, for mod-n (1..SID_MAX_LABEL) */
    uint8_t version;     /* prefix codec version, 0..15 */
};

/*
 * Parses a codec name ("mod-n" or "prefix"). Returns 0 and sets *kind, or
 * -1 for an unknown name.
 */
int sid_codec_kind_parse(const char *name, enum sid_codec_kind *kind);

/*
 * Fills out[0..len) with fresh random bytes that carry label (1..n for
 * mod-n, 1..SID_MAX_LABEL for prefix). len is 1..32 for mod-n and
 * SID_PREFIX_MIN_LEN..32 for prefix (a 1-byte mod-n id can carry labels
 * 1..256 only). Uses OpenSSL's RAND_bytes.
 * Returns 0, or -1 when the arguments are out of range or RAND fails.
 */
int sid_encode(const struct sid_codec *c, unsigned label, uint8_t *out, size_t len);

/*
 * Returns the label carried by id[0..len), or 0 when the id carries none
 * (empty, too short, longer than 32 bytes, wrong version or tag, bad
 * checksum, label 0, or n outside 1..SID_MAX_LABEL for mod-n). Pure; never
 * reads outside id[0..len).
 */
unsigned sid_decode(const struct sid_codec *c, const uint8_t *id, size_t len);

#endif
