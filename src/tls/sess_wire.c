/*
 * sess_wire -- seals and opens the UDP datagrams that replicate TLS
 * sessions between the cache servers of a node group, parses the key file
 * that secures them, and filters replays (docs/session-wire.md is the
 * specification; this file follows its section order).
 *
 * Key ring. A key file lists up to 16 AES-256 keys by id. Every key opens;
 * the highest id not marked open-only seals. Rotation is therefore an
 * append: a new, higher id is first added open-only everywhere, then made
 * a sealing key everywhere, and the old one is removed once no datagram
 * under it can still be in flight. The parser builds a fresh keyring or
 * nothing, so a reload with a bad file keeps the old keys.
 *
 * Datagrams. seal writes the clear header (magic, version, type, key id,
 * sender id, sender epoch, sequence, timestamp, a random 96-bit nonce),
 * then AES-256-GCM over the payload with the whole header as additional
 * authenticated data (NIST SP 800-38D), then the 16-byte tag. open checks
 * the header fields that need no key, picks the key by id, verifies the tag
 * and only then validates the payload. Payloads are length-prefixed and
 * checked against hard limits, so a peer with the key but a bug (or a
 * stolen key) still cannot make the parser read out of bounds.
 *
 * Replay. The receiver keeps, per sender id, the newest sender epoch seen
 * and a 1024-bit window over the sequence numbers of that epoch below the
 * highest one seen; the idea is the anti-replay window of RFC 4303 section
 * 3.4.3, with a sender restart (a new epoch) taking the place of IPsec's
 * new security association. A timestamp window bounds what a receiver
 * that forgot a sender (restart, eviction) can be made to accept twice.
 */
#include "tls/sess_wire.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "lib/util.h"

/* ---- byte order ---- */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)get16(p) << 16 | get16(p + 2);
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

/* ---- errors ---- */

static const char *const err_text[] = {
    [1] = "datagram too short",
    [2] = "datagram too long",
    [3] = "bad magic",
    [4] = "unsupported version",
    [5] = "unknown message type",
    [6] = "sender id 0",
    [7] = "unknown key id",
    [8] = "authentication failed",
    [9] = "malformed payload",
    [10] = "timestamp outside the window",
    [11] = "replayed datagram",
    [12] = "does not fit",
    [13] = "invalid argument",
    [14] = "crypto library failure",
    [15] = "unusable key file",
};

const char *sess_wire_strerror(int err)
{
    if (err == 0)
        return "ok";
    if (err < 0 && -err < (int)ARRAY_SIZE(err_text) && err_text[-err] != NULL)
        return err_text[-err];
    return "unknown error";
}

/* ---- key ring ---- */

struct sess_key {
    uint16_t id;
    uint8_t open_only;          /* opens, never seals */
    uint8_t key[SESS_KEY_LEN];  /* wiped by sess_keyring_destroy */
};

struct sess_keyring {
    EVP_CIPHER *aead;           /* AES-256-GCM, fetched once; owned */
    unsigned n;
    uint16_t seal_id;
    struct sess_key keys[SESS_KEYRING_MAX];
};

/*
 * Formats an error. A line of 0 means a fault of the whole file. Callers
 * pass only fixed text and numbers, never key material.
 */
static void __attribute__((format(printf, 5, 6)))
kerr(char *err, size_t errlen, const char *name, unsigned line, const char *fmt, ...)
{
    char msg[192];
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (line > 0)
        snprintf(err, errlen, "%s:%u: %s", name, line, msg);
    else
        snprintf(err, errlen, "%s: %s", name, msg);
}

void sess_keyring_destroy(struct sess_keyring *kr)
{
    if (kr == NULL)
        return;
    EVP_CIPHER_free(kr->aead);
    OPENSSL_cleanse(kr, sizeof(*kr));
    free(kr);
}

static const struct sess_key *keyring_find(const struct sess_keyring *kr, uint16_t id)
{
    unsigned i;

    for (i = 0; i < kr->n; i++)
        if (kr->keys[i].id == id)
            return &kr->keys[i];
    return NULL;
}

uint16_t sess_keyring_seal_id(const struct sess_keyring *kr)
{
    return kr->seal_id;
}

unsigned sess_keyring_count(const struct sess_keyring *kr)
{
    return kr->n;
}

int sess_keyring_has(const struct sess_keyring *kr, uint16_t key_id)
{
    return key_id != 0 && keyring_find(kr, key_id) != NULL;
}

int sess_keyring_derive(const struct sess_keyring *kr, uint16_t key_id, const char *label,
                        const uint8_t *info, size_t infolen, uint8_t *out, size_t outlen)
{
    const struct sess_key *k = key_id ? keyring_find(kr, key_id) : NULL;
    if (k == NULL || outlen == 0 || outlen > 255 * 32)
        return -1;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM params[5];
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)k->key, SESS_KEY_LEN);
    params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)label, strlen(label));
    params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, infolen);
    params[4] = OSSL_PARAM_construct_end();
    int ok = kctx != NULL && EVP_KDF_derive(kctx, out, outlen, params) == 1;
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    if (!ok)
        OPENSSL_cleanse(out, outlen);
    return ok ? 0 : -1;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* One whitespace-separated word of a line. */
struct word {
    const char *s;
    size_t len;
};

/*
 * Splits line[0..len) into at most max words, dropping a '#' comment (hex
 * keys and ids never contain '#'). Returns the number of words found, which
 * may exceed max (only the first max are stored).
 */
static size_t split_words(const char *line, size_t len, struct word *w, size_t max)
{
    const char *hash = memchr(line, '#', len);
    size_t i = 0, n = 0;

    if (hash != NULL)
        len = (size_t)(hash - line);
    while (i < len) {
        size_t start;

        while (i < len && is_blank(line[i]))
            i++;
        if (i == len)
            break;
        start = i;
        while (i < len && !is_blank(line[i]))
            i++;
        if (n < max) {
            w[n].s = line + start;
            w[n].len = i - start;
        }
        n++;
    }
    return n;
}

/* A key id: 1..65535 in decimal digits. Returns it, or 0 if invalid. */
static unsigned parse_key_id(const struct word *w)
{
    unsigned v = 0;
    size_t i;

    if (w->len == 0 || w->len > 5)
        return 0;
    for (i = 0; i < w->len; i++) {
        if (w->s[i] < '0' || w->s[i] > '9')
            return 0;
        v = v * 10 + (unsigned)(w->s[i] - '0');
    }
    return v <= 65535 ? v : 0;
}

/*
 * Decodes 2 * SESS_KEY_LEN hex digits into key. Returns 0, or -1 leaving
 * key partly written (the caller wipes it).
 */
static int parse_key_hex(const struct word *w, uint8_t *key)
{
    size_t i;

    if (w->len != 2 * SESS_KEY_LEN)
        return -1;
    for (i = 0; i < SESS_KEY_LEN; i++) {
        int hi = hex_digit(w->s[2 * i]), lo = hex_digit(w->s[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return -1;
        key[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static int all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    size_t i;

    for (i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

/*
 * Parses one non-blank line into kr->keys[kr->n]. lines[] holds the line
 * number of each key so far, for the duplicate message. Returns 0, 1 for a
 * blank or comment line, or -1 with err set.
 */
static int parse_key_line(struct sess_keyring *kr, unsigned *lines, const char *line, size_t len,
                          const char *name, unsigned lineno, char *err, size_t errlen)
{
    struct word w[3];
    struct sess_key *k;
    size_t nw = split_words(line, len, w, 3);
    unsigned id, i;

    if (nw == 0)
        return 1;
    if (nw == 1) {
        kerr(err, errlen, name, lineno, "expected 'ID HEX' (a key id and 64 hex digits)");
        return -1;
    }
    if (nw > 3) {
        kerr(err, errlen, name, lineno, "unexpected text after the key");
        return -1;
    }
    id = parse_key_id(&w[0]);
    if (id == 0) {
        kerr(err, errlen, name, lineno, "key id must be a number from 1 to 65535");
        return -1;
    }
    for (i = 0; i < kr->n; i++)
        if (kr->keys[i].id == id) {
            kerr(err, errlen, name, lineno, "duplicate key id %u (first on line %u)", id, lines[i]);
            return -1;
        }
    if (kr->n == SESS_KEYRING_MAX) {
        kerr(err, errlen, name, lineno, "more than %d keys", SESS_KEYRING_MAX);
        return -1;
    }
    if (nw == 3 && !(w[2].len == 9 && memcmp(w[2].s, "open-only", 9) == 0)) {
        kerr(err, errlen, name, lineno, "unknown word after the key (only 'open-only' is allowed)");
        return -1;
    }
    k = &kr->keys[kr->n];
    /* Report the length, never the digits: a typo'd key is still mostly key. */
    if (parse_key_hex(&w[1], k->key) < 0) {
        OPENSSL_cleanse(k->key, sizeof(k->key));
        if (w[1].len != 2 * SESS_KEY_LEN)
            kerr(err, errlen, name, lineno,
                 "key must be %d hex digits (%d bytes), not %zu characters", 2 * SESS_KEY_LEN,
                 SESS_KEY_LEN, w[1].len);
        else
            kerr(err, errlen, name, lineno, "key contains a character that is not a hex digit");
        return -1;
    }
    /* An all-zero key is a template left unfilled, not a secret. */
    if (all_zero(k->key, sizeof(k->key))) {
        kerr(err, errlen, name, lineno, "key is all zeros");
        return -1;
    }
    k->id = (uint16_t)id;
    k->open_only = nw == 3;
    lines[kr->n++] = lineno;
    return 0;
}

int sess_keyring_parse(struct sess_keyring **krp, const char *text, size_t len, const char *name,
                       char *err, size_t errlen)
{
    struct sess_keyring *kr;
    unsigned lines[SESS_KEYRING_MAX], lineno = 0, i;
    size_t pos = 0;

    if (name == NULL)
        name = "(keys)";
    if (krp == NULL || (text == NULL && len > 0)) {
        kerr(err, errlen, name, 0, "invalid arguments");
        return SESS_E_ARG;
    }
    if (len > SESS_KEYFILE_MAX) {
        kerr(err, errlen, name, 0, "larger than %d bytes", SESS_KEYFILE_MAX);
        return SESS_E_KEYFILE;
    }
    kr = xcalloc(1, sizeof(*kr));
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl != NULL ? (size_t)(nl - text) : len;

        lineno++;
        if (parse_key_line(kr, lines, text + pos, end - pos, name, lineno, err, errlen) < 0)
            goto fail;
        pos = end + 1;
    }
    if (kr->n == 0) {
        kerr(err, errlen, name, 0, "no keys");
        goto fail;
    }
    for (i = 0; i < kr->n; i++)
        if (!kr->keys[i].open_only && kr->keys[i].id > kr->seal_id)
            kr->seal_id = kr->keys[i].id;
    if (kr->seal_id == 0) {
        kerr(err, errlen, name, 0, "every key is open-only: none to seal with");
        goto fail;
    }
    kr->aead = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    if (kr->aead == NULL) {
        kerr(err, errlen, name, 0, "AES-256-GCM is not available from OpenSSL");
        goto fail;
    }
    *krp = kr;
    return 0;

fail:
    sess_keyring_destroy(kr);
    return SESS_E_KEYFILE;
}

/*
 * Reads fd to the end into buf[0..cap). Returns the byte count, cap + 1
 * when there is more, or -errno.
 */
static ssize_t read_all(int fd, char *buf, size_t cap)
{
    size_t got = 0;
    char extra;

    for (;;) {
        ssize_t r = got < cap ? read(fd, buf + got, cap - got) : read(fd, &extra, 1);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return (ssize_t)got;
        if (got == cap)
            return (ssize_t)cap + 1;
        got += (size_t)r;
    }
}

int sess_keyring_load(struct sess_keyring **krp, const char *path, char *err, size_t errlen)
{
    struct stat st;
    char *buf = NULL;
    ssize_t n;
    int fd, rc = SESS_E_KEYFILE;

    if (krp == NULL || path == NULL) {
        kerr(err, errlen, path != NULL ? path : "(null)", 0, "invalid arguments");
        return SESS_E_ARG;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        kerr(err, errlen, path, 0, "cannot open: %s", strerror(errno));
        return SESS_E_KEYFILE;
    }
    if (fstat(fd, &st) < 0) {
        kerr(err, errlen, path, 0, "cannot stat: %s", strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        kerr(err, errlen, path, 0, "not a regular file");
        goto done;
    }
    /*
     * Checked on the open descriptor, so a rename between a stat and the
     * open cannot slip a different file past the check.
     */
    if ((st.st_mode & 077) != 0) {
        kerr(err, errlen, path, 0,
             "mode %03o gives group or others access to the keys; make it 600",
             (unsigned)(st.st_mode & 0777));
        goto done;
    }
    buf = xmalloc(SESS_KEYFILE_MAX);
    n = read_all(fd, buf, SESS_KEYFILE_MAX);
    if (n < 0) {
        kerr(err, errlen, path, 0, "cannot read: %s", strerror((int)-n));
        goto done;
    }
    if (n > SESS_KEYFILE_MAX) {
        kerr(err, errlen, path, 0, "larger than %d bytes", SESS_KEYFILE_MAX);
        goto done;
    }
    rc = sess_keyring_parse(krp, buf, (size_t)n, path, err, errlen);

done:
    if (buf != NULL) {
        OPENSSL_cleanse(buf, SESS_KEYFILE_MAX);
        free(buf);
    }
    close(fd);
    return rc;
}

/* ---- payloads ---- */

/* Bytes of an entry before its session: id length, id, expiry, session length. */
static size_t entry_head_len(size_t id_len)
{
    return 1 + id_len + 8 + 2;
}

size_t sess_wire_session_size(size_t id_len, size_t sess_len)
{
    if (id_len < 1 || id_len > SESS_WIRE_MAX_ID || sess_len < 1 || sess_len > SESS_WIRE_MAX_SESS)
        return 0;
    return entry_head_len(id_len) + sess_len;
}

void sess_wire_payload_init(struct sess_wire_payload *pl, uint8_t *buf, size_t cap)
{
    pl->buf = buf;
    pl->cap = buf != NULL ? MIN(cap, (size_t)SESS_WIRE_MAX_PLAIN) : 0;
    pl->len = 0;
    pl->count = 0;
}

int sess_wire_put_session(struct sess_wire_payload *pl, const uint8_t *id, size_t id_len,
                          uint64_t expiry, const uint8_t *sess, size_t sess_len)
{
    size_t size = sess_wire_session_size(id_len, sess_len);
    size_t need;
    uint8_t *p;

    if (pl == NULL || id == NULL || sess == NULL || size == 0)
        return SESS_E_ARG;
    /* The 2-byte count goes in front of the first entry. */
    need = size + (pl->len == 0 ? 2 : 0);
    if (pl->len > pl->cap || need > pl->cap - pl->len || pl->count >= 0xffff)
        return SESS_E_FULL;
    if (pl->len == 0)
        pl->len = 2;
    p = pl->buf + pl->len;
    p[0] = (uint8_t)id_len;
    memcpy(p + 1, id, id_len);
    put64(p + 1 + id_len, expiry);
    put16(p + 1 + id_len + 8, (uint16_t)sess_len);
    memcpy(p + entry_head_len(id_len), sess, sess_len);
    pl->len += size;
    pl->count++;
    put16(pl->buf, (uint16_t)pl->count);
    return 0;
}

ssize_t sess_wire_put_delete(uint8_t *out, size_t outlen, const uint8_t *id, size_t id_len)
{
    if (id == NULL || id_len < 1 || id_len > SESS_WIRE_MAX_ID)
        return SESS_E_ARG;
    if (out == NULL || outlen < 1 + id_len)
        return SESS_E_FULL;
    out[0] = (uint8_t)id_len;
    memcpy(out + 1, id, id_len);
    return (ssize_t)(1 + id_len);
}

int sess_wire_get_delete(const uint8_t *p, size_t len, const uint8_t **id, size_t *id_len)
{
    if (p == NULL || len < 1 || p[0] < 1 || p[0] > SESS_WIRE_MAX_ID || len != 1 + (size_t)p[0])
        return SESS_E_PAYLOAD;
    *id = p + 1;
    *id_len = p[0];
    return 0;
}

int sess_wire_iter_init(struct sess_wire_iter *it, const uint8_t *p, size_t len)
{
    memset(it, 0, sizeof(*it));
    it->p = p;
    it->len = len;
    if (p == NULL || len < 2 || get16(p) == 0) {
        it->err = SESS_E_PAYLOAD;
        return it->err;
    }
    it->left = get16(p);
    it->off = 2;
    return 0;
}

int sess_wire_next_session(struct sess_wire_iter *it, struct sess_wire_entry *e)
{
    const uint8_t *q;
    size_t rem, id_len, sess_len;

    if (it->err != 0)
        return it->err;
    rem = it->len - it->off;
    if (it->left == 0) {
        /* Every counted entry is read: any byte left is a lie about the count. */
        if (rem == 0)
            return 0;
        goto bad;
    }
    q = it->p + it->off;
    if (rem < 1)
        goto bad;
    id_len = q[0];
    if (id_len < 1 || id_len > SESS_WIRE_MAX_ID || rem < entry_head_len(id_len))
        goto bad;
    sess_len = get16(q + 1 + id_len + 8);
    if (sess_len < 1 || sess_len > SESS_WIRE_MAX_SESS || rem - entry_head_len(id_len) < sess_len)
        goto bad;
    e->id = q + 1;
    e->id_len = id_len;
    e->expiry = get64(q + 1 + id_len);
    e->sess = q + entry_head_len(id_len);
    e->sess_len = sess_len;
    it->off += entry_head_len(id_len) + sess_len;
    it->left--;
    return 1;

bad:
    it->err = SESS_E_PAYLOAD;
    return it->err;
}

/* Is p[0..len) a well-formed payload of this type? 0 or SESS_E_PAYLOAD. */
static int payload_check(uint8_t type, const uint8_t *p, size_t len)
{
    struct sess_wire_iter it;
    struct sess_wire_entry e;
    const uint8_t *id;
    size_t id_len;
    int rc;

    switch (type) {
    case SESS_T_SESSION:
        if (sess_wire_iter_init(&it, p, len) < 0)
            return SESS_E_PAYLOAD;
        while ((rc = sess_wire_next_session(&it, &e)) == 1)
            ;
        return rc;
    case SESS_T_SYNC_REQUEST:
        return len == 0 ? 0 : SESS_E_PAYLOAD;
    case SESS_T_DELETE:
        return sess_wire_get_delete(p, len, &id, &id_len);
    }
    return SESS_E_PAYLOAD;
}

/* ---- datagrams ---- */

static const uint8_t wire_magic[4] = { 'F', 'R', 'S', 'W' };

/* Header offsets (docs/session-wire.md, "Datagram layout"). */
#define OFF_MAGIC 0
#define OFF_VERSION 4
#define OFF_TYPE 5
#define OFF_KEY_ID 6
#define OFF_SENDER 8
#define OFF_EPOCH 10
#define OFF_SEQ 14
#define OFF_TS 18
#define OFF_NONCE 26

static int type_known(uint8_t type)
{
    return type == SESS_T_SESSION || type == SESS_T_SYNC_REQUEST || type == SESS_T_DELETE;
}

/*
 * Runs AES-256-GCM over in[0..n) into out with hdr (nonce included) as the
 * additional data. Encrypting writes the tag to tag; decrypting checks it
 * against tag. Returns 0, SESS_E_AUTH (decrypt only) or SESS_E_CRYPTO.
 * GCM's default IV length is the 12 bytes used here.
 */
static int aead(const struct sess_keyring *kr, const struct sess_key *k, int enc,
                const uint8_t *hdr, const uint8_t *in, size_t n, uint8_t *out, uint8_t *tag)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    uint8_t tail[32]; /* GCM's final step writes no bytes; room in case */
    int l, rc = SESS_E_CRYPTO;

    if (ctx == NULL)
        return SESS_E_CRYPTO;
    if (EVP_CipherInit_ex2(ctx, kr->aead, k->key, hdr + OFF_NONCE, enc, NULL) != 1)
        goto done;
    if (EVP_CipherUpdate(ctx, NULL, &l, hdr, SESS_WIRE_HDR_LEN) != 1)
        goto done;
    if (n > 0 && EVP_CipherUpdate(ctx, out, &l, in, (int)n) != 1)
        goto done;
    if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, SESS_WIRE_TAG_LEN, tag) != 1)
        goto done;
    if (EVP_CipherFinal_ex(ctx, tail, &l) != 1) {
        rc = enc ? SESS_E_CRYPTO : SESS_E_AUTH;
        goto done;
    }
    if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, SESS_WIRE_TAG_LEN, tag) != 1)
        goto done;
    rc = 0;

done:
    /* Frees and wipes the expanded key schedule. */
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

ssize_t sess_wire_seal(const struct sess_keyring *kr, const struct sess_wire_hdr *h,
                       const uint8_t *payload, size_t plen, uint8_t *out, size_t outlen)
{
    const struct sess_key *k;
    int rc;

    if (kr == NULL || h == NULL || out == NULL || (payload == NULL && plen > 0))
        return SESS_E_ARG;
    if (!type_known(h->type) || h->sender == 0)
        return SESS_E_ARG;
    if (plen > SESS_WIRE_MAX_PLAIN || outlen < plen + SESS_WIRE_OVERHEAD)
        return SESS_E_FULL;
    /* Refuse here what every receiver would refuse after paying for the decryption. */
    if (payload_check(h->type, payload, plen) < 0)
        return SESS_E_PAYLOAD;
    k = keyring_find(kr, kr->seal_id);
    if (k == NULL)
        return SESS_E_KEY_ID;

    memcpy(out + OFF_MAGIC, wire_magic, sizeof(wire_magic));
    out[OFF_VERSION] = SESS_WIRE_VERSION;
    out[OFF_TYPE] = h->type;
    put16(out + OFF_KEY_ID, k->id);
    put16(out + OFF_SENDER, h->sender);
    put32(out + OFF_EPOCH, h->epoch);
    put32(out + OFF_SEQ, h->seq);
    put64(out + OFF_TS, h->ts_ms);
    /*
     * A random nonce needs no state shared between restarts or threads.
     * Its cost is a collision bound: keep well under 2^32 datagrams per
     * key across the whole group (docs/session-wire.md, "Limits").
     */
    if (RAND_bytes(out + OFF_NONCE, SESS_WIRE_NONCE_LEN) != 1)
        return SESS_E_CRYPTO;
    rc = aead(kr, k, 1, out, payload, plen, out + SESS_WIRE_HDR_LEN,
              out + SESS_WIRE_HDR_LEN + plen);
    if (rc < 0)
        return rc;
    return (ssize_t)(plen + SESS_WIRE_OVERHEAD);
}

/* Checks and reads the fields that need no key. 0 or a header error. */
static int header_parse(const uint8_t *d, size_t len, struct sess_wire_hdr *h)
{
    if (len < SESS_WIRE_OVERHEAD)
        return SESS_E_SHORT;
    if (len > SESS_WIRE_MAX_DGRAM)
        return SESS_E_LONG;
    if (memcmp(d + OFF_MAGIC, wire_magic, sizeof(wire_magic)) != 0)
        return SESS_E_MAGIC;
    if (d[OFF_VERSION] != SESS_WIRE_VERSION)
        return SESS_E_VERSION;
    if (!type_known(d[OFF_TYPE]))
        return SESS_E_TYPE;
    h->type = d[OFF_TYPE];
    h->key_id = get16(d + OFF_KEY_ID);
    h->sender = get16(d + OFF_SENDER);
    h->epoch = get32(d + OFF_EPOCH);
    h->seq = get32(d + OFF_SEQ);
    h->ts_ms = get64(d + OFF_TS);
    if (h->sender == 0)
        return SESS_E_SENDER;
    return 0;
}

int sess_wire_open(const struct sess_keyring *kr, const uint8_t *dgram, size_t len,
                   struct sess_wire_hdr *h, uint8_t *plain, size_t plainlen, size_t *plen)
{
    struct sess_wire_hdr tmp;
    const struct sess_key *k;
    uint8_t tag[SESS_WIRE_TAG_LEN];
    size_t n;
    int rc;

    if (kr == NULL || h == NULL || plen == NULL || (dgram == NULL && len > 0))
        return SESS_E_ARG;
    rc = header_parse(dgram, len, &tmp);
    if (rc < 0)
        return rc;
    k = tmp.key_id != 0 ? keyring_find(kr, tmp.key_id) : NULL;
    if (k == NULL)
        return SESS_E_KEY_ID;
    n = len - SESS_WIRE_OVERHEAD;
    if (n > 0 && (plain == NULL || plainlen < n))
        return SESS_E_FULL;
    memcpy(tag, dgram + len - SESS_WIRE_TAG_LEN, sizeof(tag));
    rc = aead(kr, k, 0, dgram, dgram + SESS_WIRE_HDR_LEN, n, plain, tag);
    if (rc < 0) {
        /*
         * GCM decrypts before the tag is checked, so plain now holds bytes
         * nobody vouched for. Wipe them rather than trust every caller to
         * ignore them.
         */
        if (n > 0)
            OPENSSL_cleanse(plain, n);
        return rc;
    }
    *h = tmp;
    *plen = n;
    return payload_check(tmp.type, plain, n);
}

/* ---- anti-replay ---- */

#define WINDOW_WORDS (SESS_REPLAY_SEQ_WINDOW / 64)

/*
 * What a receiver remembers of one sender. seen[] is a bitmap over the
 * window: bit i (word i / 64, bit i % 64) says sequence number top - i has
 * been accepted, for i in 0..SESS_REPLAY_SEQ_WINDOW - 1.
 */
struct replay_sender {
    uint32_t epoch;
    uint32_t top;   /* highest sequence number accepted in epoch */
    uint64_t seen[WINDOW_WORDS];
};

struct sess_replay {
    uint64_t window_ms;
    uint64_t tick;                          /* bumped on every commit */
    unsigned used;                          /* slots 0..used-1 are in use */
    /*
     * Sender ids and last-heard ticks sit in their own small arrays so the
     * per-datagram lookup and the eviction scan touch 512 and 2048 bytes,
     * not every window.
     */
    uint16_t ids[SESS_REPLAY_SENDERS];
    uint64_t heard[SESS_REPLAY_SENDERS];
    struct replay_sender s[SESS_REPLAY_SENDERS];
};

struct sess_replay *sess_replay_create(uint32_t window_ms)
{
    struct sess_replay *r = xcalloc(1, sizeof(*r));

    r->window_ms = window_ms != 0 ? window_ms : SESS_REPLAY_WINDOW_MS;
    return r;
}

void sess_replay_destroy(struct sess_replay *r)
{
    free(r);
}

static int replay_find(const struct sess_replay *r, uint16_t sender)
{
    unsigned i;

    for (i = 0; i < r->used; i++)
        if (r->ids[i] == sender)
            return (int)i;
    return -1;
}

static int window_test(const struct replay_sender *s, uint32_t i)
{
    return (int)(s->seen[i / 64] >> (i % 64) & 1);
}

static void window_set(struct replay_sender *s, uint32_t i)
{
    s->seen[i / 64] |= (uint64_t)1 << (i % 64);
}

/* Moves every bit d places up (older), dropping those that leave the window. */
static void window_shift(struct replay_sender *s, uint32_t d)
{
    size_t words = d / 64, bits = d % 64, i;

    if (d >= SESS_REPLAY_SEQ_WINDOW) {
        memset(s->seen, 0, sizeof(s->seen));
        return;
    }
    for (i = WINDOW_WORDS; i-- > 0;) {
        uint64_t v = 0;

        if (i >= words) {
            v = s->seen[i - words] << bits;
            if (bits != 0 && i > words)
                v |= s->seen[i - words - 1] >> (64 - bits);
        }
        s->seen[i] = v;
    }
}

static void sender_reset(struct replay_sender *s, uint32_t epoch, uint32_t seq)
{
    s->epoch = epoch;
    s->top = seq;
    memset(s->seen, 0, sizeof(s->seen));
    window_set(s, 0);
}

int sess_replay_check(const struct sess_replay *r, const struct sess_wire_hdr *h, uint64_t now_ms)
{
    const struct replay_sender *s;
    uint64_t skew;
    uint32_t behind;
    int i;

    if (r == NULL || h == NULL)
        return SESS_E_ARG;
    skew = now_ms >= h->ts_ms ? now_ms - h->ts_ms : h->ts_ms - now_ms;
    if (skew > r->window_ms)
        return SESS_E_STALE;
    i = replay_find(r, h->sender);
    if (i < 0)
        return 0;
    s = &r->s[i];
    if (h->epoch != s->epoch)
        return h->epoch > s->epoch ? 0 : SESS_E_REPLAY;
    if (h->seq > s->top)
        return 0;
    behind = s->top - h->seq;
    if (behind >= SESS_REPLAY_SEQ_WINDOW || window_test(s, behind))
        return SESS_E_REPLAY;
    return 0;
}

/* A slot for a sender not tracked yet: a free one, else the least recently heard. */
static int replay_slot(struct sess_replay *r, uint16_t sender)
{
    unsigned i, oldest = 0;

    if (r->used < SESS_REPLAY_SENDERS) {
        i = r->used++;
    } else {
        for (i = 1; i < SESS_REPLAY_SENDERS; i++)
            if (r->heard[i] < r->heard[oldest])
                oldest = i;
        i = oldest;
    }
    r->ids[i] = sender;
    return (int)i;
}

void sess_replay_commit(struct sess_replay *r, const struct sess_wire_hdr *h)
{
    struct replay_sender *s;
    int i;

    if (r == NULL || h == NULL)
        return;
    i = replay_find(r, h->sender);
    if (i < 0) {
        i = replay_slot(r, h->sender);
        sender_reset(&r->s[i], h->epoch, h->seq);
    } else {
        s = &r->s[i];
        if (h->epoch > s->epoch) {
            /* The sender restarted: its old sequence numbers mean nothing now. */
            sender_reset(s, h->epoch, h->seq);
        } else if (h->epoch < s->epoch) {
            /* check refuses this; never let a misuse move a sender back in time. */
            return;
        } else if (h->seq > s->top) {
            window_shift(s, h->seq - s->top);
            s->top = h->seq;
            window_set(s, 0);
        } else if (s->top - h->seq < SESS_REPLAY_SEQ_WINDOW) {
            window_set(s, s->top - h->seq);
        }
    }
    r->heard[i] = ++r->tick;
}

int sess_replay_accept(struct sess_replay *r, const struct sess_wire_hdr *h, uint64_t now_ms)
{
    int rc = sess_replay_check(r, h, now_ms);

    if (rc == 0)
        sess_replay_commit(r, h);
    return rc;
}
