/*
 * sess_wire -- the datagrams in which the cache servers of a node group
 * replicate TLS sessions to each other, their key ring and the receiver's
 * anti-replay filter. The specification is docs/session-wire.md.
 *
 * Pure and socket-free: the caller owns the sockets and the clocks and
 * passes times in. Data flows like this:
 *
 *   sender:   sess_wire_put_session() x n  -> a SESSION payload
 *             sess_wire_seal(keyring, header, payload) -> one datagram
 *   receiver: sess_wire_open(keyring, datagram) -> header + plaintext
 *             sess_replay_check() / sess_replay_commit() on the header
 *             sess_wire_iter_init() + sess_wire_next_session() per entry
 *
 * A datagram is a 38-byte clear header, the AES-256-GCM ciphertext of the
 * payload and a 16-byte tag; the whole header is the additional
 * authenticated data, so no field of it can be changed unnoticed. The
 * sessions themselves (serialized by OpenSSL, master secret included) are
 * opaque bytes to this module and only ever travel encrypted.
 *
 * Threads: a keyring is read-only once built, so any number of threads may
 * seal and open with it at once. A sess_replay is not locked; use one per
 * receiving thread, or serialize calls on it.
 */
#ifndef FERRY_TLS_SESS_WIRE_H
#define FERRY_TLS_SESS_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Wire constants (docs/session-wire.md, "Datagram layout"). */
#define SESS_WIRE_VERSION 1
#define SESS_WIRE_HDR_LEN 38       /* clear header, nonce included */
#define SESS_WIRE_NONCE_LEN 12
#define SESS_WIRE_TAG_LEN 16
#define SESS_WIRE_OVERHEAD (SESS_WIRE_HDR_LEN + SESS_WIRE_TAG_LEN)
#define SESS_WIRE_MAX_DGRAM 65507  /* largest UDP payload over IPv4 */
#define SESS_WIRE_MAX_PLAIN (SESS_WIRE_MAX_DGRAM - SESS_WIRE_OVERHEAD) /* 65453 */

/* Payload limits. */
#define SESS_WIRE_MAX_ID 64        /* bytes of a session ID */
#define SESS_WIRE_MAX_SESS 8192    /* bytes of one serialized session */

/* Key ring limits. */
#define SESS_KEY_LEN 32            /* AES-256 */
#define SESS_KEYRING_MAX 16        /* keys in one key file */
#define SESS_KEYFILE_MAX 65536     /* bytes of one key file */

/* Anti-replay defaults. */
#define SESS_REPLAY_WINDOW_MS 30000 /* accepted clock difference, each way */
#define SESS_REPLAY_SENDERS 256     /* senders tracked at once */
#define SESS_REPLAY_SEQ_WINDOW 1024 /* sequence numbers remembered per sender */

enum sess_wire_type {
    SESS_T_SESSION = 1,      /* one or more sessions */
    SESS_T_SYNC_REQUEST = 2, /* "send me your live sessions"; empty payload */
    SESS_T_DELETE = 3,       /* one session ID to forget */
};

/*
 * Every error of the module; sess_wire_strerror() names them. The order in
 * which sess_wire_open() tests a datagram is the order of the first seven.
 */
enum sess_wire_err {
    SESS_E_SHORT = -1,   /* shorter than header + tag */
    SESS_E_LONG = -2,    /* longer than SESS_WIRE_MAX_DGRAM */
    SESS_E_MAGIC = -3,   /* not a session datagram at all */
    SESS_E_VERSION = -4, /* a version this code does not speak */
    SESS_E_TYPE = -5,    /* unknown message type */
    SESS_E_SENDER = -6,  /* sender id 0 */
    SESS_E_KEY_ID = -7,  /* key id not in the keyring (or 0) */
    SESS_E_AUTH = -8,    /* tag mismatch: forged, corrupted or wrong key bytes */
    SESS_E_PAYLOAD = -9, /* authentic but malformed payload */
    SESS_E_STALE = -10,  /* timestamp too far from the receiver's clock */
    SESS_E_REPLAY = -11, /* seen before, or from an older sender epoch */
    SESS_E_FULL = -12,   /* does not fit in the given buffer */
    SESS_E_ARG = -13,    /* the caller passed values out of range */
    SESS_E_CRYPTO = -14, /* OpenSSL failed (RAND_bytes, EVP) */
    SESS_E_KEYFILE = -15 /* the key file is unusable (see the err text) */
};

/*
 * The clear header minus magic, version and nonce, which seal writes and
 * open checks. Plain values, no pointers.
 */
struct sess_wire_hdr {
    uint8_t type;     /* enum sess_wire_type */
    uint16_t key_id;  /* open: the key that opened it; seal ignores it (see below) */
    uint16_t sender;  /* the sender's label in its group, 1..65535 */
    uint32_t epoch;   /* the sender's start time, unix seconds */
    uint32_t seq;     /* per sender and epoch, strictly increasing */
    uint64_t ts_ms;   /* when it was sealed, unix milliseconds */
};

/* One SESSION entry. The pointers point into the payload it came from. */
struct sess_wire_entry {
    const uint8_t *id;    /* session ID, 1..SESS_WIRE_MAX_ID bytes */
    size_t id_len;
    uint64_t expiry;      /* unix seconds */
    const uint8_t *sess;  /* serialized session, 1..SESS_WIRE_MAX_SESS bytes */
    size_t sess_len;
};

/* A SESSION payload being built in a caller's buffer. */
struct sess_wire_payload {
    uint8_t *buf;     /* the caller's buffer; not owned */
    size_t cap;       /* usable bytes of buf, at most SESS_WIRE_MAX_PLAIN */
    size_t len;       /* bytes written so far (0 until the first session) */
    unsigned count;   /* sessions written so far */
};

/* Walks the entries of a SESSION payload, validating as it goes. */
struct sess_wire_iter {
    const uint8_t *p;  /* the payload; not owned */
    size_t len;
    size_t off;        /* next entry starts here */
    unsigned left;     /* entries the count field promises beyond off */
    int err;           /* sticky: the first error returned */
};

struct sess_keyring; /* private */
struct sess_replay;  /* private */

/* Short, fixed text for a sess_wire_err (or "unknown error"). */
const char *sess_wire_strerror(int err);

/* ---- key ring ---- */

/*
 * Builds a keyring from key file text[0..len) (format in
 * docs/session-wire.md: "ID HEX [open-only]" lines, '#' comments). name is
 * used in messages only. On success returns 0 and sets *krp to a new
 * keyring the caller frees with sess_keyring_destroy(). On failure returns
 * SESS_E_KEYFILE, leaves *krp alone and writes "NAME:LINE: message" (or
 * "NAME: message" for file-wide faults) to err[0..errlen) when err is not
 * NULL. Messages never contain key bytes. The text is not modified; the
 * caller should wipe it when done.
 */
int sess_keyring_parse(struct sess_keyring **krp, const char *text, size_t len, const char *name,
                       char *err, size_t errlen);

/*
 * As sess_keyring_parse() on the contents of the file at path, which must
 * be a regular file of at most SESS_KEYFILE_MAX bytes that neither group
 * nor others may read or write (mode & 077 == 0). Messages start with the
 * path. The bytes read are wiped before return. Reloading = calling this
 * again and swapping keyrings only on success, so a bad edit leaves the old
 * keys in use.
 */
int sess_keyring_load(struct sess_keyring **krp, const char *path, char *err, size_t errlen);

/* Wipes the keys and frees kr. NULL is allowed. */
void sess_keyring_destroy(struct sess_keyring *kr);

/* The id of the key seal uses: the highest one not marked open-only. */
uint16_t sess_keyring_seal_id(const struct sess_keyring *kr);

/*
 * Derives outlen bytes (at most 255 * 32) from key key_id with HKDF-SHA256
 * (RFC 5869): salt = label, info = info[0..infolen). Other uses of the
 * group key (stateless ticket keys) get their own keys this way, and the
 * raw key bytes never leave this module. Returns 0, or -1 when key_id is
 * not in kr or OpenSSL fails (out is then wiped).
 */
int sess_keyring_derive(const struct sess_keyring *kr, uint16_t key_id, const char *label,
                        const uint8_t *info, size_t infolen, uint8_t *out, size_t outlen);

/* Number of keys in kr (1..SESS_KEYRING_MAX). */
unsigned sess_keyring_count(const struct sess_keyring *kr);

/* 1 if kr holds a key with this id (sealing or open-only), else 0. */
int sess_keyring_has(const struct sess_keyring *kr, uint16_t key_id);

/* ---- payloads ---- */

/*
 * Bytes one SESSION entry with these lengths takes in a payload, or 0 when
 * the lengths are out of range. A payload of n entries takes 2 + the sum
 * of its entries; the caller can budget with this before building.
 */
size_t sess_wire_session_size(size_t id_len, size_t sess_len);

/*
 * Starts an empty SESSION payload in buf[0..cap). cap is clipped to
 * SESS_WIRE_MAX_PLAIN, so the payload always seals into one datagram of at
 * most SESS_WIRE_MAX_DGRAM bytes; pass a smaller cap (datagram budget
 * minus SESS_WIRE_OVERHEAD) for smaller datagrams.
 */
void sess_wire_payload_init(struct sess_wire_payload *pl, uint8_t *buf, size_t cap);

/*
 * Appends one session to pl. The bytes are copied. Returns 0; SESS_E_FULL
 * when it does not fit in what is left of pl (seal pl, start another and
 * put the session there); SESS_E_ARG when id_len or sess_len is out of
 * range (the session can never be sent). pl is unchanged on error.
 */
int sess_wire_put_session(struct sess_wire_payload *pl, const uint8_t *id, size_t id_len,
                          uint64_t expiry, const uint8_t *sess, size_t sess_len);

/*
 * Writes the DELETE payload for id into out[0..outlen). Returns its length
 * (2..65), SESS_E_ARG for an id length out of range, or SESS_E_FULL.
 */
ssize_t sess_wire_put_delete(uint8_t *out, size_t outlen, const uint8_t *id, size_t id_len);

/*
 * Reads a DELETE payload: sets *id (pointing into p) and *id_len. Returns
 * 0 or SESS_E_PAYLOAD.
 */
int sess_wire_get_delete(const uint8_t *p, size_t len, const uint8_t **id, size_t *id_len);

/*
 * Starts walking the SESSION payload p[0..len), which is not copied and
 * must outlive the walk. Returns 0, or SESS_E_PAYLOAD when it is too short
 * for the count or the count is 0.
 */
int sess_wire_iter_init(struct sess_wire_iter *it, const uint8_t *p, size_t len);

/*
 * Fills *e with the next entry. Returns 1 for an entry, 0 at the end (all
 * counted entries read and no byte left over), or SESS_E_PAYLOAD for a
 * length out of range, an entry running past the end, fewer or more entries
 * than counted. Errors are sticky. Never reads outside p[0..len).
 */
int sess_wire_next_session(struct sess_wire_iter *it, struct sess_wire_entry *e);

/* ---- datagrams ---- */

/*
 * Seals one datagram into out[0..outlen) under the keyring's sealing key
 * with a fresh random nonce. h supplies type, sender, epoch, seq and ts_ms;
 * h->key_id is ignored. payload[0..plen) must be a well-formed payload of
 * h->type (it is validated as a receiver would, so this never sends what
 * peers refuse) and must not overlap out. Returns the datagram length
 * (plen + SESS_WIRE_OVERHEAD); SESS_E_ARG for a bad header field,
 * SESS_E_PAYLOAD for a malformed payload, SESS_E_FULL when outlen is too
 * small or plen > SESS_WIRE_MAX_PLAIN, SESS_E_CRYPTO if OpenSSL fails.
 */
ssize_t sess_wire_seal(const struct sess_keyring *kr, const struct sess_wire_hdr *h,
                       const uint8_t *payload, size_t plen, uint8_t *out, size_t outlen);

/*
 * Opens the datagram dgram[0..len): checks the header, verifies the tag
 * and decrypts into plain[0..plainlen) (which must not overlap dgram),
 * then validates the payload for its type. Returns 0 with *h and *plen
 * set, or a negative sess_wire_err: SESS_E_SHORT, SESS_E_LONG,
 * SESS_E_MAGIC, SESS_E_VERSION, SESS_E_TYPE, SESS_E_SENDER, SESS_E_KEY_ID
 * (header; tested in this order), SESS_E_FULL (plainlen < len -
 * SESS_WIRE_OVERHEAD), SESS_E_AUTH, SESS_E_PAYLOAD, SESS_E_CRYPTO. *h is
 * filled only on 0 and SESS_E_PAYLOAD (authentic, so the header is
 * trustworthy). On SESS_E_AUTH the plaintext buffer is wiped: unverified
 * plaintext never reaches the caller. Does not check time or replay; call
 * sess_replay_check() and sess_replay_commit() next.
 */
int sess_wire_open(const struct sess_keyring *kr, const uint8_t *dgram, size_t len,
                   struct sess_wire_hdr *h, uint8_t *plain, size_t plainlen, size_t *plen);

/* ---- anti-replay ---- */

/*
 * A replay filter accepting timestamps within window_ms of the receiver's
 * clock (0 = SESS_REPLAY_WINDOW_MS), tracking up to SESS_REPLAY_SENDERS
 * senders (about 40 KiB). Never returns NULL.
 */
struct sess_replay *sess_replay_create(uint32_t window_ms);
void sess_replay_destroy(struct sess_replay *r);

/*
 * Would the datagram with header h be fresh at receiver time now_ms (unix
 * milliseconds)? Returns 0, SESS_E_STALE (timestamp outside the window, in
 * either direction) or SESS_E_REPLAY (an epoch older than the newest seen
 * from that sender, or in the same epoch a sequence number already seen or
 * too far behind the newest). Changes nothing, so it is safe on an
 * unauthenticated header.
 */
int sess_replay_check(const struct sess_replay *r, const struct sess_wire_hdr *h, uint64_t now_ms);

/*
 * Records h as seen. Call it only for a header that sess_wire_open()
 * authenticated and sess_replay_check() passed: a forged datagram must
 * never move the window. A newer epoch replaces the sender's state (it
 * restarted); a sender not yet tracked takes a slot, evicting the one heard
 * from least recently when all are in use.
 */
void sess_replay_commit(struct sess_replay *r, const struct sess_wire_hdr *h);

/* sess_replay_check(), then sess_replay_commit() if it passed. Same rule. */
int sess_replay_accept(struct sess_replay *r, const struct sess_wire_hdr *h, uint64_t now_ms);

#endif
