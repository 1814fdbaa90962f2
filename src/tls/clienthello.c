/*
 * clienthello -- reads the first handshake message of a TLS connection
 * (ClientHello from a client, ServerHello from a server) out of the raw
 * bytes, without keys and without keeping state between calls.
 *
 * Data flow: the caller hands in every byte received so far. reassemble
 * walks the TLS records (RFC 8446 5.1, RFC 5246 6.2.1) from the first byte,
 * checks each record header, and copies the handshake fragments into the
 * caller's scratch buffer until the handshake message named by its 4-byte
 * header (RFC 8446 4) is complete. Only then is the message body decoded,
 * by parse_ch_body (RFC 8446 4.1.2, 4.2; RFC 5246 7.4.1.2) or
 * parse_sh_body (RFC 8446 4.1.3, 4.1.4). A call either finishes, asks for
 * more bytes, or fails; the next call starts over from byte 0, so no state
 * can go stale between calls. The cost of re-reading is bounded by
 * max_bytes, which the caller must keep small (a few tens of KiB).
 *
 * Extensions understood: server_name (RFC 6066 3), ALPN (RFC 7301 3.1),
 * session_ticket (RFC 5077 3.2), early_data, pre_shared_key and
 * supported_versions (RFC 8446 4.2.10, 4.2.11, 4.2.1). Every other
 * extension is skipped after its length is checked; every extension type is
 * checked for duplicates (RFC 8446 4.2).
 *
 * Limits on hostile input: a record may carry at most 2^14 bytes (RFC 8446
 * 5.1; we do not accept the 2^14+2048 of compressed TLS 1.2 records, since
 * nobody compresses a ClientHello), zero-length handshake records are
 * rejected (RFC 8446 5.1 forbids them), and the handshake message must fit
 * both scratch_len and max_bytes. TOO_LARGE is reported as soon as the
 * headers seen so far prove the message cannot fit, so a peer announcing a
 * 16 MiB ClientHello is refused at its 9th byte rather than after the
 * caller's timer fires.
 */
#include "tls/clienthello.h"

#include <limits.h>
#include <string.h>

/* TLS record layer constants (RFC 8446 5.1). */
#define TLS_REC_HANDSHAKE 22
#define TLS_REC_HDR_LEN 5
#define TLS_REC_MAX_FRAG 16384
#define TLS_HS_HDR_LEN 4
#define TLS_HS_CLIENT_HELLO 1
#define TLS_HS_SERVER_HELLO 2

/* Extension types (IANA TLS ExtensionType registry). */
#define EXT_SERVER_NAME 0
#define EXT_ALPN 16
#define EXT_SESSION_TICKET 35
#define EXT_PRE_SHARED_KEY 41
#define EXT_EARLY_DATA 42
#define EXT_SUPPORTED_VERSIONS 43

#define TLS_VERSION_13 0x0304
#define SNI_HOST_NAME 0

/*
 * ServerHello.random of a HelloRetryRequest: SHA-256("HelloRetryRequest"),
 * RFC 8446 4.1.3.
 */
static const uint8_t hrr_random[32] = {
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
};

/*
 * A bounds-checked cursor over a byte range. Every read either succeeds
 * completely or fails without moving, so parsers never index raw pointers.
 */
struct rd {
    const uint8_t *p;
    size_t left;
};

static int rd_u8(struct rd *r, uint8_t *v)
{
    if (r->left < 1)
        return -1;
    *v = r->p[0];
    r->p += 1;
    r->left -= 1;
    return 0;
}

static int rd_u16(struct rd *r, uint16_t *v)
{
    if (r->left < 2)
        return -1;
    *v = (uint16_t)(r->p[0] << 8 | r->p[1]);
    r->p += 2;
    r->left -= 2;
    return 0;
}

static int rd_u32(struct rd *r, uint32_t *v)
{
    if (r->left < 4)
        return -1;
    *v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
    r->p += 4;
    r->left -= 4;
    return 0;
}

static int rd_bytes(struct rd *r, size_t n, const uint8_t **out)
{
    if (r->left < n)
        return -1;
    *out = r->p;
    r->p += n;
    r->left -= n;
    return 0;
}

/* Reads an opaque vector with a 1-byte length into *sub. */
static int rd_vec8(struct rd *r, struct rd *sub)
{
    uint8_t n;
    struct rd save = *r;

    if (rd_u8(r, &n) < 0 || rd_bytes(r, n, &sub->p) < 0) {
        *r = save;
        return -1;
    }
    sub->left = n;
    return 0;
}

/* Reads an opaque vector with a 2-byte length into *sub. */
static int rd_vec16(struct rd *r, struct rd *sub)
{
    uint16_t n;
    struct rd save = *r;

    if (rd_u16(r, &n) < 0 || rd_bytes(r, n, &sub->p) < 0) {
        *r = save;
        return -1;
    }
    sub->left = n;
    return 0;
}

/*
 * Smallest number of raw bytes that can still carry `remaining` handshake
 * bytes when the next byte of input is a record header: each record adds 5
 * bytes of header and carries at most 2^14 bytes.
 */
static size_t min_raw_for(size_t remaining)
{
    size_t records = (remaining + TLS_REC_MAX_FRAG - 1) / TLS_REC_MAX_FRAG;

    return remaining + records * TLS_REC_HDR_LEN;
}

/*
 * Reassembles the first handshake message from data[0..len) into scratch.
 * want_type is the handshake type the message must have. When
 * allow_trailing is zero the record that completes the message must end
 * with it (a client sends nothing after its ClientHello in the same
 * record); otherwise the rest of that record is skipped, and the call waits
 * until the whole record has arrived so the return value is a record
 * boundary. On success *msg_len is the message body length (scratch holds
 * the 4-byte header, then the body) and *rec_version the first record's
 * version. Returns >0 raw bytes, 0 need more, or a CH_E* code.
 */
static int reassemble(const uint8_t *data, size_t len, size_t max_bytes, uint8_t *scratch,
                      size_t scratch_len, uint8_t want_type, int allow_trailing, size_t *msg_len,
                      uint16_t *rec_version)
{
    size_t pos = 0;       /* start of the current record header in data */
    size_t have = 0;      /* handshake bytes copied to scratch */
    size_t need = TLS_HS_HDR_LEN; /* handshake bytes wanted; grows once the header is read */
    int len_known = 0;

    /* The return value is an int; no legal message comes near this. */
    if (max_bytes > INT_MAX)
        max_bytes = INT_MAX;
    if (scratch_len < TLS_HS_HDR_LEN)
        return CH_E_TOO_LARGE;

    for (;;) {
        size_t avail = len - pos;
        size_t rlen, fav, off = 0;
        uint16_t ver;

        /*
         * A wrong first byte is decided on the first byte alone, so that an
         * HTTP request or an SSLv2-compatible hello (top bit of byte 0 set,
         * RFC 5246 E.2) is refused without waiting for a full header. After
         * the first record, a non-handshake record interrupts the message,
         * which is malformed rather than "not TLS".
         */
        if (avail == 0)
            return 0;
        if (data[pos] != TLS_REC_HANDSHAKE)
            return pos == 0 ? CH_E_NOT_TLS : CH_E_MALFORMED;
        if (avail >= 2 && data[pos + 1] != 3)
            return pos == 0 ? CH_E_NOT_TLS : CH_E_MALFORMED;
        if (pos + min_raw_for(need - have) > max_bytes)
            return CH_E_TOO_LARGE;
        if (avail < TLS_REC_HDR_LEN)
            return 0;

        ver = (uint16_t)(data[pos + 1] << 8 | data[pos + 2]);
        rlen = (size_t)data[pos + 3] << 8 | data[pos + 4];
        if (pos == 0)
            *rec_version = ver;
        if (rlen == 0 || rlen > TLS_REC_MAX_FRAG)
            return CH_E_MALFORMED;
        if (pos + TLS_REC_HDR_LEN + rlen > max_bytes)
            return CH_E_TOO_LARGE;

        fav = avail - TLS_REC_HDR_LEN;
        if (fav > rlen)
            fav = rlen;

        while (off < fav && have < need) {
            size_t n = fav - off;

            if (n > need - have)
                n = need - have;
            memcpy(scratch + have, data + pos + TLS_REC_HDR_LEN + off, n);
            have += n;
            off += n;

            /* The type is known from the first handshake byte; decide at once. */
            if (scratch[0] != want_type)
                return CH_E_NOT_HELLO;
            if (!len_known && have == TLS_HS_HDR_LEN) {
                size_t body = (size_t)scratch[1] << 16 | (size_t)scratch[2] << 8 | scratch[3];
                size_t rrem = rlen - off;

                need = TLS_HS_HDR_LEN + body;
                len_known = 1;
                if (need > scratch_len)
                    return CH_E_TOO_LARGE;
                /* Refuse now if the rest cannot fit in max_bytes. */
                if (body > rrem
                    && pos + TLS_REC_HDR_LEN + rlen + min_raw_for(body - rrem) > max_bytes)
                    return CH_E_TOO_LARGE;
            }
        }

        if (len_known && have == need) {
            /*
             * rlen is known even when the record has not fully arrived, so
             * stray bytes after a ClientHello are refused at once.
             */
            if (off < rlen && !allow_trailing)
                return CH_E_MALFORMED;
            if (fav < rlen)
                return 0;
            *msg_len = need - TLS_HS_HDR_LEN;
            return (int)(pos + TLS_REC_HDR_LEN + rlen);
        }
        if (fav < rlen)
            return 0;
        pos += TLS_REC_HDR_LEN + rlen;
    }
}

/*
 * Checks for a duplicate extension type with a 65536-bit map: linear in the
 * number of extensions even for a block of 16383 empty ones, which a
 * pairwise comparison would make quadratic. Returns 1 for a duplicate.
 */
static int ext_seen(uint8_t *map, uint16_t type)
{
    uint8_t bit = (uint8_t)(1u << (type & 7));

    if (map[type >> 3] & bit)
        return 1;
    map[type >> 3] |= bit;
    return 0;
}

/* server_name (RFC 6066 3): keeps the one host_name entry. */
static int parse_sni(struct rd ext, struct ch_info *out)
{
    struct rd list;

    if (rd_vec16(&ext, &list) < 0 || ext.left != 0 || list.left == 0)
        return CH_E_MALFORMED;
    while (list.left > 0) {
        uint8_t type;
        struct rd name;

        /*
         * RFC 6066 requires every NameType, known or future, to begin with
         * a 16-bit length, so unknown types can be skipped safely.
         */
        if (rd_u8(&list, &type) < 0 || rd_vec16(&list, &name) < 0)
            return CH_E_MALFORMED;
        if (type != SNI_HOST_NAME)
            continue;
        /* Two host names would let the switch and the server disagree. */
        if (out->has_sni)
            return CH_E_MALFORMED;
        if (name.left == 0 || name.left > CH_MAX_SNI)
            return CH_E_MALFORMED;
        /* A NUL would truncate the name for every C consumer after us. */
        if (memchr(name.p, 0, name.left) != NULL)
            return CH_E_MALFORMED;
        memcpy(out->sni, name.p, name.left);
        out->sni[name.left] = '\0';
        out->sni_len = name.left;
        out->has_sni = 1;
    }
    return 0;
}

/* application_layer_protocol_negotiation (RFC 7301 3.1): validated, kept raw. */
static int parse_alpn(struct rd ext, struct ch_info *out)
{
    struct rd list, walk;

    if (rd_vec16(&ext, &list) < 0 || ext.left != 0 || list.left == 0)
        return CH_E_MALFORMED;
    walk = list;
    while (walk.left > 0) {
        struct rd name;

        if (rd_vec8(&walk, &name) < 0 || name.left == 0)
            return CH_E_MALFORMED;
    }
    out->alpn = list.p;
    out->alpn_len = list.left;
    return 0;
}

/*
 * pre_shared_key in a ClientHello (RFC 8446 4.2.11): identities, then
 * binders, one binder per identity, each 32..255 bytes.
 */
static int parse_psk(struct rd ext, struct ch_info *out)
{
    struct rd ids, binders;
    unsigned n_ids = 0, n_binders = 0;

    if (rd_vec16(&ext, &ids) < 0 || ids.left == 0)
        return CH_E_MALFORMED;
    while (ids.left > 0) {
        struct rd id;
        uint32_t age;

        if (rd_vec16(&ids, &id) < 0 || id.left == 0 || rd_u32(&ids, &age) < 0)
            return CH_E_MALFORMED;
        if (n_ids < CH_MAX_PSK_IDS) {
            out->psk_ids[n_ids].id = id.p;
            out->psk_ids[n_ids].len = (uint16_t)id.left;
            out->psk_ids[n_ids].obfuscated_age = age;
        }
        n_ids++;
    }
    if (rd_vec16(&ext, &binders) < 0 || ext.left != 0 || binders.left == 0)
        return CH_E_MALFORMED;
    while (binders.left > 0) {
        struct rd b;

        if (rd_vec8(&binders, &b) < 0 || b.left < 32)
            return CH_E_MALFORMED;
        n_binders++;
    }
    if (n_binders != n_ids)
        return CH_E_MALFORMED;
    out->has_psk = 1;
    out->n_psk_ids = n_ids;
    return 0;
}

/* supported_versions in a ClientHello (RFC 8446 4.2.1): a list of 2..254 bytes. */
static int parse_versions(struct rd ext, struct ch_info *out)
{
    struct rd list;

    if (rd_vec8(&ext, &list) < 0 || ext.left != 0 || list.left < 2 || list.left % 2 != 0)
        return CH_E_MALFORMED;
    while (list.left > 0) {
        uint16_t v;

        if (rd_u16(&list, &v) < 0)
            return CH_E_MALFORMED;
        if (v == TLS_VERSION_13)
            out->offers_tls13 = 1;
    }
    return 0;
}

/* Decodes a ClientHello body (RFC 8446 4.1.2, RFC 5246 7.4.1.2). */
static int parse_ch_body(const uint8_t *body, size_t len, struct ch_info *out)
{
    struct rd r = { body, len }, sid, suites, comp, exts;
    uint8_t seen[65536 / 8];
    int psk_seen = 0;

    if (rd_u16(&r, &out->legacy_version) < 0 || rd_bytes(&r, 32, &out->random) < 0)
        return CH_E_MALFORMED;
    if (rd_vec8(&r, &sid) < 0 || sid.left > 32)
        return CH_E_MALFORMED;
    out->session_id = sid.p;
    out->session_id_len = (uint8_t)sid.left;
    if (rd_vec16(&r, &suites) < 0 || suites.left == 0 || suites.left % 2 != 0)
        return CH_E_MALFORMED;
    if (rd_vec8(&r, &comp) < 0 || comp.left == 0)
        return CH_E_MALFORMED;

    /*
     * A TLS 1.2 (or older) ClientHello may end right after the compression
     * methods (RFC 5246 7.4.1.2); otherwise the extensions block must fill
     * the rest of the message exactly.
     */
    if (r.left == 0)
        return 0;
    if (rd_vec16(&r, &exts) < 0 || r.left != 0)
        return CH_E_MALFORMED;

    memset(seen, 0, sizeof(seen));
    while (exts.left > 0) {
        uint16_t type;
        struct rd ext;
        int rc = 0;

        if (rd_u16(&exts, &type) < 0 || rd_vec16(&exts, &ext) < 0)
            return CH_E_MALFORMED;
        if (ext_seen(seen, type))
            return CH_E_DUPLICATE;
        /* The binders cover everything before them, so PSK must end the block. */
        if (psk_seen)
            return CH_E_PSK_NOT_LAST;
        out->n_extensions++;

        switch (type) {
        case EXT_SERVER_NAME:
            rc = parse_sni(ext, out);
            break;
        case EXT_ALPN:
            rc = parse_alpn(ext, out);
            break;
        case EXT_SESSION_TICKET:
            out->has_ticket_ext = 1;
            out->ticket = ext.p;
            out->ticket_len = ext.left;
            break;
        case EXT_PRE_SHARED_KEY:
            psk_seen = 1;
            rc = parse_psk(ext, out);
            break;
        case EXT_EARLY_DATA:
            /* In a ClientHello early_data is empty (RFC 8446 4.2.10). */
            if (ext.left != 0)
                return CH_E_MALFORMED;
            out->has_early_data = 1;
            break;
        case EXT_SUPPORTED_VERSIONS:
            rc = parse_versions(ext, out);
            break;
        default:
            break;
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

int ch_parse(const uint8_t *data, size_t len, size_t max_bytes, uint8_t *scratch,
             size_t scratch_len, struct ch_info *out)
{
    size_t body_len = 0;
    uint16_t rec_version = 0;
    int raw, rc;

    memset(out, 0, sizeof(*out));
    raw = reassemble(data, len, max_bytes, scratch, scratch_len, TLS_HS_CLIENT_HELLO, 0,
                     &body_len, &rec_version);
    if (raw <= 0)
        return raw;
    out->record_version = rec_version;
    rc = parse_ch_body(scratch + TLS_HS_HDR_LEN, body_len, out);
    if (rc < 0) {
        /* Leave nothing half-filled for a caller that ignores the code. */
        memset(out, 0, sizeof(*out));
        return rc;
    }
    return raw;
}

/* Decodes a ServerHello or HelloRetryRequest body (RFC 8446 4.1.3, 4.1.4). */
static int parse_sh_body(const uint8_t *body, size_t len, struct sh_info *out)
{
    struct rd r = { body, len }, sid, exts;
    const uint8_t *random;
    uint16_t legacy_version, suite, selected = 0;
    uint8_t comp;
    uint8_t seen[65536 / 8];
    int has_versions = 0;

    if (rd_u16(&r, &legacy_version) < 0 || rd_bytes(&r, 32, &random) < 0)
        return CH_E_MALFORMED;
    if (rd_vec8(&r, &sid) < 0 || sid.left > 32)
        return CH_E_MALFORMED;
    if (rd_u16(&r, &suite) < 0 || rd_u8(&r, &comp) < 0)
        return CH_E_MALFORMED;
    out->session_id = sid.p;
    out->session_id_len = (uint8_t)sid.left;
    out->is_hrr = memcmp(random, hrr_random, sizeof(hrr_random)) == 0;
    out->version = legacy_version;

    if (r.left > 0) {
        if (rd_vec16(&r, &exts) < 0 || r.left != 0)
            return CH_E_MALFORMED;
        memset(seen, 0, sizeof(seen));
        while (exts.left > 0) {
            uint16_t type, v;
            struct rd ext;

            if (rd_u16(&exts, &type) < 0 || rd_vec16(&exts, &ext) < 0)
                return CH_E_MALFORMED;
            if (ext_seen(seen, type))
                return CH_E_DUPLICATE;
            if (type == EXT_SUPPORTED_VERSIONS) {
                /*
                 * A server may only select TLS 1.3 or later here; an older
                 * version is negotiated through legacy_version alone
                 * (RFC 8446 4.2.1).
                 */
                if (rd_u16(&ext, &v) < 0 || ext.left != 0 || v < TLS_VERSION_13)
                    return CH_E_MALFORMED;
                selected = v;
                has_versions = 1;
            } else if (type == EXT_PRE_SHARED_KEY) {
                /* The server's form is the selected_identity index. */
                if (rd_u16(&ext, &v) < 0 || ext.left != 0)
                    return CH_E_MALFORMED;
                out->has_psk = 1;
            }
        }
    }
    if (has_versions)
        out->version = selected;

    /*
     * has_psk is read as "the handshake resumed", so it must not be set by a
     * message that cannot resume: a HelloRetryRequest never carries
     * pre_shared_key, and only TLS 1.3 defines the server's form of it. A
     * HelloRetryRequest exists only in TLS 1.3 and must say so.
     */
    if (out->is_hrr && (!has_versions || out->has_psk))
        return CH_E_MALFORMED;
    if (out->has_psk && !has_versions)
        return CH_E_MALFORMED;
    return 0;
}

int sh_parse(const uint8_t *data, size_t len, size_t max_bytes, uint8_t *scratch,
             size_t scratch_len, struct sh_info *out)
{
    size_t body_len = 0;
    uint16_t rec_version = 0;
    int raw, rc;

    memset(out, 0, sizeof(*out));
    /*
     * Servers routinely pack ServerHello, Certificate and more into one
     * record (TLS 1.2), so bytes after the ServerHello in its record are
     * normal here.
     */
    raw = reassemble(data, len, max_bytes, scratch, scratch_len, TLS_HS_SERVER_HELLO, 1,
                     &body_len, &rec_version);
    if (raw <= 0)
        return raw;
    rc = parse_sh_body(scratch + TLS_HS_HDR_LEN, body_len, out);
    if (rc < 0) {
        memset(out, 0, sizeof(*out));
        return rc;
    }
    return raw;
}

const char *ch_strerror(int err)
{
    switch (err) {
    case CH_E_NOT_TLS:
        return "not a TLS handshake record";
    case CH_E_MALFORMED:
        return "malformed TLS hello";
    case CH_E_TOO_LARGE:
        return "TLS hello exceeds the size limit";
    case CH_E_DUPLICATE:
        return "duplicate TLS extension";
    case CH_E_PSK_NOT_LAST:
        return "pre_shared_key is not the last extension";
    case CH_E_NOT_HELLO:
        return "first handshake message is not the expected hello";
    default:
        return err >= 0 ? "no error" : "unknown error";
    }
}
