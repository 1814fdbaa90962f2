/*
 * clienthello -- reads a TLS ClientHello (and a ServerHello) from the raw
 * bytes of a connection, without decrypting anything (RFC 8446 4.1.2,
 * 4.2; RFC 5246 7.4.1.2; RFC 6066 3; RFC 7301; RFC 5077).
 *
 * The switch keeps every byte it has received from a client (it must send
 * them on to the chosen cache server), so the reader is stateless: it is
 * called with all bytes received so far and reassembles the handshake
 * message from however many TLS records it spans into a caller-supplied
 * scratch buffer. It reports "need more" (0), "done" (>0, the number of
 * raw bytes up to and including the record that completed the
 * ClientHello) or an error (<0, a CH_E* code).
 *
 * Pointers in struct ch_info point into the scratch buffer, which must
 * outlive their use.
 */
#ifndef FERRY_TLS_CLIENTHELLO_H
#define FERRY_TLS_CLIENTHELLO_H

#include <stddef.h>
#include <stdint.h>

#define CH_MAX_PSK_IDS 8   /* identities kept; more are counted, not kept */
#define CH_MAX_SNI 255     /* longest host name accepted (RFC 1035 limit is 253) */

enum ch_err {
    CH_E_NOT_TLS = -1,    /* first record is not a TLS handshake (HTTP, SSLv2, garbage) */
    CH_E_MALFORMED = -2,  /* a length or field is inconsistent */
    CH_E_TOO_LARGE = -3,  /* the ClientHello needs more than max_bytes raw bytes or the scratch */
    CH_E_DUPLICATE = -4,  /* an extension type appears twice (RFC 8446 4.2) */
    CH_E_PSK_NOT_LAST = -5, /* pre_shared_key is not the last extension (RFC 8446 4.2.11) */
    CH_E_NOT_HELLO = -6,  /* first handshake message is not a ClientHello */
};

struct ch_psk_id {
    const uint8_t *id;  /* identity bytes */
    uint16_t len;
    uint32_t obfuscated_age;
};

struct ch_info {
    uint16_t record_version;      /* version of the first record */
    uint16_t legacy_version;      /* ClientHello.legacy_version */
    const uint8_t *random;        /* 32 bytes */
    const uint8_t *session_id;    /* legacy_session_id, may be empty */
    uint8_t session_id_len;       /* 0..32 */

    int has_sni;
    char sni[CH_MAX_SNI + 1];     /* host_name, NUL-terminated, as sent (not lowercased) */
    size_t sni_len;

    const uint8_t *alpn;          /* raw ProtocolNameList (without its 2-byte length) */
    size_t alpn_len;              /* 0 when absent */

    int has_ticket_ext;           /* session_ticket (35) present */
    const uint8_t *ticket;        /* its body, may be empty (asks for a new ticket) */
    size_t ticket_len;

    int has_psk;                  /* pre_shared_key (41) present */
    unsigned n_psk_ids;           /* identities in the extension (may exceed CH_MAX_PSK_IDS) */
    struct ch_psk_id psk_ids[CH_MAX_PSK_IDS];

    int offers_tls13;             /* supported_versions (43) lists 0x0304 */
    int has_early_data;           /* early_data (42) present */
    unsigned n_extensions;
};

/*
 * Parses a ClientHello from data[0..len), the first bytes a client sent.
 * scratch[0..scratch_len) receives the reassembled handshake message.
 * max_bytes caps the raw bytes the ClientHello may take (records included).
 * Returns >0 (raw bytes consumed) when complete, 0 when more bytes are
 * needed, or a negative enum ch_err. Never reads outside data[0..len).
 * *out is cleared on entry and filled only when >0 is returned. Records
 * must be handshake records of 1..2^14 bytes (a zero-length one, another
 * record type before the message completes, or bytes after the
 * ClientHello in the record that completes it are CH_E_MALFORMED).
 * CH_E_TOO_LARGE comes as soon as the headers show the message cannot fit
 * max_bytes or scratch_len, even before all bytes have arrived.
 */
int ch_parse(const uint8_t *data, size_t len, size_t max_bytes, uint8_t *scratch,
             size_t scratch_len, struct ch_info *out);

struct sh_info {
    uint16_t version;          /* negotiated: 0x0304 if supported_versions says so, else legacy_version */
    const uint8_t *session_id; /* echoed legacy_session_id */
    uint8_t session_id_len;
    int has_psk;               /* pre_shared_key extension present: TLS 1.3 resumption */
    int is_hrr;                /* this is a HelloRetryRequest (special random) */
};

/*
 * Parses the ServerHello from the first bytes a server sent (same
 * conventions as ch_parse). Used by the switch to observe whether a
 * handshake resumed: TLS 1.2 echoes the client's session ID (non-empty and
 * equal), TLS 1.3 carries pre_shared_key. Unlike a ClientHello, the record
 * that completes the ServerHello may go on with more handshake messages
 * (TLS 1.2 servers pack Certificate and ServerHelloDone into it); the
 * return value then counts that whole record, and is 0 until it has
 * arrived, so max_bytes must allow for it. pre_shared_key without a
 * TLS 1.3 supported_versions, or in a HelloRetryRequest, is
 * CH_E_MALFORMED, as is a HelloRetryRequest without supported_versions.
 */
int sh_parse(const uint8_t *data, size_t len, size_t max_bytes, uint8_t *scratch,
             size_t scratch_len, struct sh_info *out);

/* Returns a short static description of a ch_err code. */
const char *ch_strerror(int err);

#endif
