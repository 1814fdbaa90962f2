/*
 * Tests for src/tls/sess_wire.c: the byte layout checked against an
 * independent AES-256-GCM construction written here with OpenSSL EVP;
 * round trips of each message type; packing as many sessions as fit;
 * every one-byte forgery and every truncation of a datagram; key ids and
 * rotation; the replay filter against a reference model; the timestamp
 * window; key file errors; payload limits.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "tls/sess_wire.h"

#define KEY1_HEX "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define KEY2_HEX "F0E1D2C3B4A5968778695A4B3C2D1E0FFEDCBA98765432100123456789ABCDEF"
#define KEY2_LOWER_HEX "f0e1d2c3b4a5968778695a4b3c2d1e0ffedcba98765432100123456789abcdef"
#define KEY9_HEX "9999999999999999999999999999999999999999999999999999999999999999"

#define NOW_MS UINT64_C(1790000000000)

static uint8_t dgram[SESS_WIRE_MAX_DGRAM + 1];
static uint8_t plain[SESS_WIRE_MAX_PLAIN];
static uint8_t payload[SESS_WIRE_MAX_PLAIN];

static struct sess_keyring *ring(const char *text)
{
    struct sess_keyring *kr = NULL;
    char err[256] = "";
    int rc = sess_keyring_parse(&kr, text, strlen(text), "test", err, sizeof(err));

    if (rc != 0)
        print_message("keyring: %s\n", err);
    assert_int_equal(rc, 0);
    assert_non_null(kr);
    return kr;
}

static void hex_to_key(const char *hex, uint8_t *key)
{
    size_t i;
    unsigned v;

    for (i = 0; i < 32; i++) {
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        key[i] = (uint8_t)v;
    }
}

static struct sess_wire_hdr hdr(uint8_t type, uint16_t sender, uint32_t epoch, uint32_t seq)
{
    struct sess_wire_hdr h;

    memset(&h, 0, sizeof(h));
    h.type = type;
    h.sender = sender;
    h.epoch = epoch;
    h.seq = seq;
    h.ts_ms = NOW_MS;
    return h;
}

/*
 * The layout of docs/session-wire.md built by hand: header bytes, then
 * AES-256-GCM with the header as AAD. Lets tests send what seal refuses.
 */
static size_t raw_seal(const char *keyhex, const uint8_t *magic, uint8_t version, uint8_t type,
                       uint16_t key_id, uint16_t sender, uint32_t epoch, uint32_t seq,
                       uint64_t ts_ms, const uint8_t *pl, size_t plen, uint8_t *out)
{
    uint8_t key[32];
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int l, i;

    hex_to_key(keyhex, key);
    memcpy(out, magic, 4);
    out[4] = version;
    out[5] = type;
    out[6] = (uint8_t)(key_id >> 8);
    out[7] = (uint8_t)key_id;
    out[8] = (uint8_t)(sender >> 8);
    out[9] = (uint8_t)sender;
    for (i = 0; i < 4; i++) {
        out[10 + i] = (uint8_t)(epoch >> (24 - 8 * i));
        out[14 + i] = (uint8_t)(seq >> (24 - 8 * i));
    }
    for (i = 0; i < 8; i++)
        out[18 + i] = (uint8_t)(ts_ms >> (56 - 8 * i));
    for (i = 0; i < 12; i++)
        out[26 + i] = (uint8_t)(0xA0 + i);
    assert_non_null(ctx);
    assert_int_equal(EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, out + 26), 1);
    assert_int_equal(EVP_EncryptUpdate(ctx, NULL, &l, out, 38), 1);
    if (plen > 0)
        assert_int_equal(EVP_EncryptUpdate(ctx, out + 38, &l, pl, (int)plen), 1);
    assert_int_equal(EVP_EncryptFinal_ex(ctx, out + 38 + plen, &l), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, out + 38 + plen), 1);
    EVP_CIPHER_CTX_free(ctx);
    return 38 + plen + 16;
}

static const uint8_t magic[4] = { 'F', 'R', 'S', 'W' };

static size_t raw_seal_simple(const char *keyhex, uint16_t key_id, uint8_t type, const uint8_t *pl,
                              size_t plen, uint8_t *out)
{
    return raw_seal(keyhex, magic, 1, type, key_id, 7, 100, 1, NOW_MS, pl, plen, out);
}

/* Independent decryption; returns 1 if the tag verifies. */
static int raw_open(const char *keyhex, const uint8_t *d, size_t len, uint8_t *out)
{
    uint8_t key[32], tag[16];
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int l, ok;

    hex_to_key(keyhex, key);
    memcpy(tag, d + len - 16, 16);
    assert_int_equal(EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, d + 26), 1);
    assert_int_equal(EVP_DecryptUpdate(ctx, NULL, &l, d, 38), 1);
    if (len > 54)
        assert_int_equal(EVP_DecryptUpdate(ctx, out, &l, d + 38, (int)(len - 54)), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, tag), 1);
    ok = EVP_DecryptFinal_ex(ctx, out + (len - 54), &l) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

/* A one-session payload into payload[]; returns its length. */
static size_t one_session(const char *id, uint64_t expiry, const char *sess)
{
    struct sess_wire_payload pl;

    sess_wire_payload_init(&pl, payload, sizeof(payload));
    assert_int_equal(sess_wire_put_session(&pl, (const uint8_t *)id, strlen(id), expiry,
                                           (const uint8_t *)sess, strlen(sess)),
                     0);
    return pl.len;
}

/* ---- layout ---- */

static void test_seal_layout(void **state)
{
    struct sess_keyring *kr = ring("1 " KEY1_HEX "\n");
    struct sess_wire_hdr h = hdr(SESS_T_SESSION, 0x0102, 0x03040506, 0x0708090a);
    static const uint8_t want[26] = { 'F', 'R', 'S', 'W', 1, 1, 0, 1, 0x01, 0x02, 3, 4, 5, 6,
                                      7, 8, 9, 10, 0, 0, 0x01, 0xa0, 0xc4, 0x50, 0x6c, 0x00 };
    static const uint8_t want_plain[] = { 0, 1, 3, 'a', 'b', 'c', 0, 0, 0, 0, 0x6a, 0x9b,
                                          0xc6, 0x40, 0, 2, 'x', 'y' };
    uint8_t first_nonce[12], out[64];
    size_t plen = one_session("abc", 0x6a9bc640, "xy");
    ssize_t n;

    h.key_id = 999; /* ignored by seal */
    assert_int_equal(plen, sizeof(want_plain));
    assert_memory_equal(payload, want_plain, plen);
    n = sess_wire_seal(kr, &h, payload, plen, dgram, sizeof(dgram));
    assert_int_equal(n, 38 + plen + 16);
    /* NOW_MS, 1790000000000, is 0x1a0c4506c00. */
    assert_memory_equal(dgram, want, sizeof(want));
    assert_true(raw_open(KEY1_HEX, dgram, (size_t)n, out));
    assert_memory_equal(out, want_plain, plen);
    /* The ciphertext is not the plaintext. */
    assert_memory_not_equal(dgram + 38, want_plain, plen);

    /* A fresh random nonce every time. */
    memcpy(first_nonce, dgram + 26, 12);
    assert_int_equal(sess_wire_seal(kr, &h, payload, plen, dgram, sizeof(dgram)), n);
    assert_memory_not_equal(first_nonce, dgram + 26, 12);
    sess_keyring_destroy(kr);
}

static void test_open_layout(void **state)
{
    struct sess_keyring *kr = ring("5 " KEY2_HEX "\n");
    static const uint8_t pl[] = { 5, 's', 'e', 's', 's', '1' };
    struct sess_wire_hdr h;
    size_t len, plen = 0;

    len = raw_seal(KEY2_HEX, magic, 1, SESS_T_DELETE, 5, 0xfffe, 0xdeadbeef, 0xfffffff0,
                   UINT64_C(0x0123456789abcdef), pl, sizeof(pl), dgram);
    assert_int_equal(sess_wire_open(kr, dgram, len, &h, plain, sizeof(plain), &plen), 0);
    assert_int_equal(h.type, SESS_T_DELETE);
    assert_int_equal(h.key_id, 5);
    assert_int_equal(h.sender, 0xfffe);
    assert_int_equal(h.epoch, 0xdeadbeef);
    assert_int_equal(h.seq, 0xfffffff0);
    assert_true(h.ts_ms == UINT64_C(0x0123456789abcdef));
    assert_int_equal(plen, sizeof(pl));
    assert_memory_equal(plain, pl, sizeof(pl));
    sess_keyring_destroy(kr);
}

/* ---- round trips ---- */

static void test_roundtrip_session(void **state)
{
    struct sess_keyring *kr = ring("1 " KEY1_HEX "\n");
    struct sess_wire_hdr h = hdr(SESS_T_SESSION, 3, 1700000000, 42), g;
    struct sess_wire_iter it;
    struct sess_wire_entry e;
    size_t plen = one_session("session-id-0123456789", UINT64_C(1790000300), "DER bytes"), got;
    ssize_t n = sess_wire_seal(kr, &h, payload, plen, dgram, sizeof(dgram));

    assert_true(n > 0);
    assert_int_equal(sess_wire_open(kr, dgram, (size_t)n, &g, plain, sizeof(plain), &got), 0);
    assert_int_equal(got, plen);
    assert_int_equal(g.type, SESS_T_SESSION);
    assert_int_equal(g.key_id, 1);
    assert_int_equal(g.sender, 3);
    assert_int_equal(g.epoch, 1700000000);
    assert_int_equal(g.seq, 42);
    assert_true(g.ts_ms == NOW_MS);
    assert_int_equal(sess_wire_iter_init(&it, plain, got), 0);
    assert_int_equal(sess_wire_next_session(&it, &e), 1);
    assert_int_equal(e.id_len, 21);
    assert_memory_equal(e.id, "session-id-0123456789", 21);
    assert_true(e.expiry == UINT64_C(1790000300));
    assert_int_equal(e.sess_len, 9);
    assert_memory_equal(e.sess, "DER bytes", 9);
    assert_int_equal(sess_wire_next_session(&it, &e), 0);
    assert_int_equal(sess_wire_next_session(&it, &e), 0);
    sess_keyring_destroy(kr);
}

static void test_roundtrip_sync_request(void **state)
{
    struct sess_keyring *kr = ring("1 " KEY1_HEX "\n");
    struct sess_wire_hdr h = hdr(SESS_T_SYNC_REQUEST, 65535, 1, 0), g;
    size_t got = 99;
    ssize_t n = sess_wire_seal(kr, &h, NULL, 0, dgram, sizeof(dgram));

    assert_int_equal(n, SESS_WIRE_OVERHEAD);
    assert_int_equal(sess_wire_open(kr, dgram, (size_t)n, &g, NULL, 0, &got), 0);
    assert_int_equal(got, 0);
    assert_int_equal(g.type, SESS_T_SYNC_REQUEST);
    assert_int_equal(g.sender, 65535);
    /* A SYNC_REQUEST carries nothing. */
    assert_int_equal(sess_wire_seal(kr, &h, payload, 1, dgram, sizeof(dgram)), SESS_E_PAYLOAD);
    sess_keyring_destroy(kr);
}

static void test_roundtrip_delete(void **state)
{
    struct sess_keyring *kr = ring("1 " KEY1_HEX "\n");
    struct sess_wire_hdr h = hdr(SESS_T_DELETE, 2, 1, 7), g;
    uint8_t id[64];
    const uint8_t *gid;
    size_t got, gid_len;
    ssize_t pl, n;

    memset(id, 0x5c, sizeof(id));
    pl = sess_wire_put_delete(payload, sizeof(payload), id, sizeof(id));
    assert_int_equal(pl, 65);
    n = sess_wire_seal(kr, &h, payload, (size_t)pl, dgram, sizeof(dgram));
    assert_int_equal(n, 65 + SESS_WIRE_OVERHEAD);
    assert_int_equal(sess_wire_open(kr, dgram, (size_t)n, &g, plain, sizeof(plain), &got), 0);
    assert_int_equal(g.type, SESS_T_DELETE);
    assert_int_equal(sess_wire_get_delete(plain, got, &gid, &gid_len), 0);
    assert_int_equal(gid_len, 64);
    assert_memory_equal(gid, id, 64);

    assert_int_equal(sess_wire_put_delete(payload, sizeof(payload), id, 0), SESS_E_ARG);
    assert_int_equal(sess_wire_put_delete(payload, sizeof(payload), id, 65), SESS_E_ARG);
    assert_int_equal(sess_wire_put_delete(payload, 64, id, 64), SESS_E_FULL);
    assert_int_equal(sess_wire_put_delete(payload, 2, id, 1), 2);
    sess_keyring_destroy(kr);
}

/* ---- packing ---- */

/* Session i's id and body, derived from i so they can be checked after the trip. */
static size_t fill_entry(unsigned i, uint8_t *id, size_t *id_len, uint8_t *sess)
{
    size_t sess_len = 1 + (i * 7919u) % SESS_WIRE_MAX_SESS, k;

    *id_len = 1 + i % SESS_WIRE_MAX_ID;
    for (k = 0; k < *id_len; k++)
        id[k] = (uint8_t)(i + k);
    for (k = 0; k < sess_len; k++)
        sess[k] = (uint8_t)(i * 31 + k);
    return sess_len;
}

/* Fill datagrams as a bulk sync would: put until FULL, seal, carry on in a new one. */
static void test_pack_many_sessions(void **state)
{
    struct sess_keyring *kr = ring("1 " KEY1_HEX "\n");
    static uint8_t sess[SESS_WIRE_MAX_SESS];
    uint8_t id[SESS_WIRE_MAX_ID];
    struct sess_wire_payload pl;
    struct sess_wire_iter it;
    struct sess_wire_entry e;
    struct sess_wire_hdr h = hdr(SESS_T_SESSION, 1, 1, 0), g;
    unsigned next = 0, checked = 0, dgrams = 0, total = 300;
    size_t id_len, sess_len, got, predicted;
    int rc;

    while (next < total) {
        unsigned first = next;

        sess_wire_payload_init(&pl, payload, sizeof(payload));
        predicted = 2;
        for (; next < total; next++) {
            sess_len = fill_entry(next, id, &id_len, sess);
            rc = sess_wire_put_session(&pl, id, id_len, 1000 + next, sess, sess_len);
            if (rc == SESS_E_FULL) {
                /* It really did not fit, by the published sizes. */
                assert_true(predicted + sess_wire_session_size(id_len, sess_len)
                            > SESS_WIRE_MAX_PLAIN);
                break;
            }
            assert_int_equal(rc, 0);
            predicted += sess_wire_session_size(id_len, sess_len);
        }
        assert_int_equal(pl.len, predicted);
        assert_int_equal(pl.count, next - first);
        assert_true(pl.count > 0);
        h.seq++;
        rc = (int)sess_wire_seal(kr, &h, payload, pl.len, dgram, sizeof(dgram));
        assert_true(rc > 0 && rc <= SESS_WIRE_MAX_DGRAM);
        dgrams++;

        assert_int_equal(sess_wire_open(kr, dgram, (size_t)rc, &g, plain, sizeof(plain), &got), 0);
        assert_int_equal(sess_wire_iter_init(&it, plain, got), 0);
        while ((rc = sess_wire_next_session(&it, &e)) == 1) {
            sess_len = fill_entry(checked, id, &id_len, sess);
            assert_int_equal(e.id_len, id_len);
            assert_memory_equal(e.id, id, id_len);
            assert_true(e.expiry == 1000 + checked);
            assert_int_equal(e.sess_len, sess_len);
            assert_memory_equal(e.sess, sess, sess_len);
            checked++;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(checked, next);
    }
    print_message("%u sessions in %u datagrams\n", total, dgrams);
    assert_int_equal(checked, total);
    /* About 4.1 KB a session on average, so about 16 per datagram. */
    assert_true(dgrams >= 15 && dgrams <= 25);
    sess_keyring_destroy(kr);
}

/* Largest sessions: 7 fit in one maximum datagram; small ones: thousands. */
static void test_pack_limits(void **state)
{
    static uint8_t sess[SESS_WIRE_MAX_SESS];
    uint8_t id[SESS_WIRE_MAX_ID];
    struct sess_wire_payload pl;
    unsigned n = 0;

    memset(sess, 1, sizeof(sess));
    memset(id, 2, sizeof(id));
    assert_int_equal(sess_wire_session_size(64, 8192), 8267);
    assert_int_equal(sess_wire_session_size(1, 1), 13);
    assert_int_equal(sess_wire_session_size(0, 1), 0);
    assert_int_equal(sess_wire_session_size(65, 1), 0);
    assert_int_equal(sess_wire_session_size(1, 0), 0);
    assert_int_equal(sess_wire_session_size(1, 8193), 0);

    sess_wire_payload_init(&pl, payload, sizeof(payload));
    assert_int_equal(pl.cap, SESS_WIRE_MAX_PLAIN);
    while (sess_wire_put_session(&pl, id, 64, 1, sess, 8192) == 0)
        n++;
    assert_int_equal(n, 7);
    assert_int_equal(pl.len, 2 + 7 * 8267);

    /* (65453 - 2) / 13 = 5034 of the smallest */
    sess_wire_payload_init(&pl, payload, sizeof(payload) + 1000);
    n = 0;
    while (sess_wire_put_session(&pl, id, 1, 1, sess, 1) == 0)
        n++;
    assert_int_equal(n, 5034);
    assert_int_equal(pl.count, 5034);
    assert_int_equal(payload[0] << 8 | payload[1], 5034);

    /* A 1400-byte datagram budget. */
    sess_wire_payload_init(&pl, payload, 1400 - SESS_WIRE_OVERHEAD);
    n = 0;
    while (sess_wire_put_session(&pl, id, 32, 1, sess, 200) == 0)
        n++;
    assert_int_equal(n, (1400 - SESS_WIRE_OVERHEAD - 2) / (1 + 32 + 8 + 2 + 200));

    /* Out-of-range entries are refused whatever the room, and change nothing. */
    sess_wire_payload_init(&pl, payload, sizeof(payload));
    assert_int_equal(sess_wire_put_session(&pl, id, 0, 1, sess, 1), SESS_E_ARG);
    assert_int_equal(sess_wire_put_session(&pl, id, 65, 1, sess, 1), SESS_E_ARG);
    assert_int_equal(sess_wire_put_session(&pl, id, 1, 1, sess, 0), SESS_E_ARG);
    assert_int_equal(sess_wire_put_session(&pl, id, 1, 1, sess, 8193), SESS_E_ARG);
    assert_int_equal(pl.len, 0);
    assert_int_equal(pl.count, 0);
    /* Too small for the count plus one entry. */
    sess_wire_payload_init(&pl, payload, 14);
    assert_int_equal(sess_wire_put_session(&pl, id, 1, 1, sess, 1), SESS_E_FULL);
    sess_wire_payload_init(&pl, payload, 15);
    assert_int_equal(sess_wire_put_session(&pl, id, 1, 1, sess, 1), 0);
    assert_int_equal(sess_wire_put_session(&pl, id, 1, 1, sess, 1), SESS_E_FULL);
    assert_int_equal(pl.len, 15);
}

/* ---- forgery, truncation ---- */

/* What opening must say when byte pos of a good datagram is XORed with flip. */
static int expected_forgery(const struct sess_keyring *kr, const uint8_t *d, size_t pos)
{
    if (pos < 4)
        return SESS_E_MAGIC;
    if (pos == 4)
        return SESS_E_VERSION;
    if (pos == 5)
        return d[5] >= 1 && d[5] <= 3 ? SESS_E_AUTH : SESS_E_TYPE;
    if (pos == 6 || pos == 7)
        return sess_keyring_has(kr, (uint16_t)(d[6] << 8 | d[7])) ? SESS_E_AUTH : SESS_E_KEY_ID;
    if (pos == 8 || pos == 9)
        return (d[8] | d[9]) == 0 ? SESS_E_SENDER : SESS_E_AUTH;
    return SESS_E_AUTH;
}

static void test_forged_every_byte(void **state)
{
    /* Keys 1, 2 and 3 so a flipped key id sometimes names another real key. */
    struct sess_keyring *kr = ring("1 " KEY1_HEX "\n2 " KEY9_HEX "\n3 " KEY2_HEX "\n");
    struct sess_wire_hdr h = hdr(SESS_T_SESSION, 0x0101, 1700000000, 5), g;
    size_t plen = one_session("id", 1, "session"), got, pos;
    ssize_t n = sess_wire_seal(kr, &h, payload, plen, dgram, sizeof(dgram));
    unsigned flip, auth = 0, header = 0;

    assert_true(n > 0);
    for (pos = 0; pos < (size_t)n; pos++)
        for (flip = 1; flip < 256; flip++) {
            int rc, want;

            dgram[pos] ^= (uint8_t)flip;
            want = expected_forgery(kr, dgram, pos);
            rc = sess_wire_open(kr, dgram, (size_t)n, &g, plain, sizeof(plain), &got);
            dgram[pos] ^= (uint8_t)flip;
            if (rc != want)
                print_message("byte %zu ^ 0x%02x: %d, want %d\n", pos, flip, rc, want);
            assert_int_equal(rc, want);
            if (rc == SESS_E_AUTH)
                auth++;
            else
                header++;
        }
    print_message("%zu bytes x 255 flips: %u auth failures, %u header errors\n", (size_t)n, auth,
                  header);
    assert_int_equal(sess_wire_open(kr, dgram, (size_t)n, &g, plain, sizeof(plain), &got), 0);
    sess_keyring_destroy(kr);
}

static void test_truncated_every_length(void **state)
{
    struct sess_keyring *kr = ring("1 " KEY1_HEX "\n");
    struct sess_wire_hdr h = hdr(SESS_T_SESSION, 1, 1, 1), g;
    size_t plen = one_session("id", 1, "a longer serialized session"), got, len;
    ssize_t n = sess_wire_seal(kr, &h, payload, plen, dgram, sizeof(dgram));

    for (len = 0; len < (size_t)n; len++) {
        int rc = sess_wire_open(kr, dgram, len, &g, plain, sizeof(plain), &got);

        assert_int_equal(rc, len < SESS_WIRE_OVERHEAD ? SESS_E_SHORT : SESS_E_AUTH);
    }
    /* One byte more is as wrong as one byte less. */
    dgram[n] = 0;
    assert_int_equal(sess_wire_open(kr, dgram, (size_t)n + 1, &g, plain, sizeof(plain), &got),
                     SESS_E_AUTH);
    assert_int_equal(sess_wire_open(kr, dgram, SESS_WIRE_MAX_DGRAM + 1, &g, plain, sizeof(plain),
                                    &got),
                     SESS_E_LONG);
    assert_int_equal(sess_wire_open(kr, NULL, 0, &g, plain, sizeof(plain), &got), SESS_E_SHORT);
    assert_int_equal(sess_wire_open(kr, dgram, (size_t)n, &g, plain, sizeof(plain), &got), 0);
    sess_keyring_destroy(kr);
}

/* Unverified plaintext never reaches the caller. */
static void test_auth_failure_wipes_plaintext(void **state)
{
    struct sess_keyring *kr = ring("1 " KEY1_HEX "\n");
    struct sess_wire_hdr h = hdr(SESS_T_SESSION, 1, 1, 1), g;
    size_t plen = one_session("id", 1, "secret master key material"), got = 12345, i;
    ssize_t n = sess_wire_seal(kr, &h, payload, plen, dgram, sizeof(dgram));

    memset(&g, 0x77, sizeof(g));
    memset(plain, 0xAA, sizeof(plain));
    dgram[n - 1] ^= 1;
    assert_int_equal(sess_wire_open(kr, dgram, (size_t)n, &g, plain, sizeof(plain), &got),
                     SESS_E_AUTH);
    for (i = 0; i < plen; i++)
        assert_int_equal(plain[i], 0);
    assert_int_equal(plain[plen], 0xAA);
    assert_int_equal(got, 12345);
    assert_int_equal(g.sender, 0x7777);
    sess_keyring_destroy(kr);
}

static void test_plain_buffer_too_small(void **state)
{
    struct sess_keyring *kr = ring("1 " KEY1_HEX "\n");
    struct sess_wire_hdr h = hdr(SESS_T_SESSION, 1, 1, 1), g;
    size_t plen = one_session("id", 1, "s"), got;
    ssize_t n = sess_wire_seal(kr, &h, payload, plen, dgram, sizeof(dgram));

    assert_int_equal(sess_wire_open(kr, dgram, (size_t)n, &g, plain, plen - 1, &got), SESS_E_FULL);
    assert_int_equal(sess_wire_open(kr, dgram, (size_t)n, &g, NULL, 0, &got), SESS_E_FULL);
    assert_int_equal(sess_wire_open(kr, dgram, (size_t)n, &g, plain, plen, &got), 0);
    assert_int_equal(sess_wire_seal(kr, &h, payload, plen, dgram, plen + SESS_WIRE_OVERHEAD - 1),
                     SESS_E_FULL);
    assert_int_equal(sess_wire_seal(kr, &h, payload, SESS_WIRE_MAX_PLAIN + 1, dgram,
                                    sizeof(dgram)),
                     SESS_E_FULL);
    sess_keyring_destroy(kr);
}

static void test_header_errors(void **state)
{
    struct sess_keyring *kr = ring("1 " KEY1_HEX "\n");
    static const uint8_t bad_magic[4] = { 'F', 'R', 'S', 'X' };
    struct sess_wire_hdr g;
    size_t plen = one_session("id", 1, "s"), got, len;

    len = raw_seal(KEY1_HEX, bad_magic, 1, 1, 1, 7, 1, 1, NOW_MS, payload, plen, dgram);
    assert_int_equal(sess_wire_open(kr, dgram, len, &g, plain, sizeof(plain), &got), SESS_E_MAGIC);
    len = raw_seal(KEY1_HEX, magic, 2, 1, 1, 7, 1, 1, NOW_MS, payload, plen, dgram);
    assert_int_equal(sess_wire_open(kr, dgram, len, &g, plain, sizeof(plain), &got),
                     SESS_E_VERSION);
    len = raw_seal(KEY1_HEX, magic, 0, 1, 1, 7, 1, 1, NOW_MS, payload, plen, dgram);
    assert_int_equal(sess_wire_open(kr, dgram, len, &g, plain, sizeof(plain), &got),
                     SESS_E_VERSION);
    len = raw_seal(KEY1_HEX, magic, 1, 0, 1, 7, 1, 1, NOW_MS, payload, plen, dgram);
    assert_int_equal(sess_wire_open(kr, dgram, len, &g, plain, sizeof(plain), &got), SESS_E_TYPE);
    len = raw_seal(KEY1_HEX, magic, 1, 4, 1, 7, 1, 1, NOW_MS, payload, plen, dgram);
    assert_int_equal(sess_wire_open(kr, dgram, len, &g, plain, sizeof(plain), &got), SESS_E_TYPE);
    len = raw_seal(KEY1_HEX, magic, 1, 1, 1, 0, 1, 1, NOW_MS, payload, plen, dgram);
    assert_int_equal(sess_wire_open(kr, dgram, len, &g, plain, sizeof(plain), &got),
                     SESS_E_SENDER);
    len = raw_seal(KEY1_HEX, magic, 1, 1, 0, 7, 1, 1, NOW_MS, payload, plen, dgram);
    assert_int_equal(sess_wire_open(kr, dgram, len, &g, plain, sizeof(plain), &got),
                     SESS_E_KEY_ID);
    /* The control: the same datagram, correct, opens. */
    len = raw_seal(KEY1_HEX, magic, 1, 1, 1, 7, 1, 1, NOW_MS, payload, plen, dgram);
    assert_int_equal(sess_wire_open(kr, dgram, len, &g, plain, sizeof(plain), &got), 0);
    sess_keyring_destroy(kr);
}

static void test_seal_refuses_bad_headers(void **state)
{
    struct sess_keyring *kr = ring("1 " KEY1_HEX "\n");
    struct sess_wire_hdr h = hdr(SESS_T_SESSION, 0, 1, 1);
    size_t plen = one_session("id", 1, "s");

    assert_int_equal(sess_wire_seal(kr, &h, payload, plen, dgram, sizeof(dgram)), SESS_E_ARG);
    h.sender = 1;
    h.type = 0;
    assert_int_equal(sess_wire_seal(kr, &h, payload, plen, dgram, sizeof(dgram)), SESS_E_ARG);
    h.type = 4;
    assert_int_equal(sess_wire_seal(kr, &h, payload, plen, dgram, sizeof(dgram)), SESS_E_ARG);
    h.type = SESS_T_SESSION;
    assert_int_equal(sess_wire_seal(NULL, &h, payload, plen, dgram, sizeof(dgram)), SESS_E_ARG);
    assert_int_equal(sess_wire_seal(kr, &h, NULL, plen, dgram, sizeof(dgram)), SESS_E_ARG);
    assert_int_equal(sess_wire_seal(kr, &h, payload, plen, dgram, sizeof(dgram)),
                     plen + SESS_WIRE_OVERHEAD);
    sess_keyring_destroy(kr);
}

/* ---- keys ---- */

static void test_wrong_or_unknown_key(void **state)
{
    struct sess_keyring *k1 = ring("1 " KEY1_HEX "\n");
    struct sess_keyring *other = ring("1 " KEY2_HEX "\n");
    struct sess_keyring *k7 = ring("7 " KEY1_HEX "\n");
    struct sess_wire_hdr h = hdr(SESS_T_SESSION, 1, 1, 1), g;
    size_t plen = one_session("id", 1, "s"), got;
    ssize_t n = sess_wire_seal(k1, &h, payload, plen, dgram, sizeof(dgram));

    /* Same id, other key bytes: the tag cannot verify. */
    assert_int_equal(sess_wire_open(other, dgram, (size_t)n, &g, plain, sizeof(plain), &got),
                     SESS_E_AUTH);
    /* Same key bytes under another id: the id is not in the ring. */
    assert_int_equal(sess_wire_open(k7, dgram, (size_t)n, &g, plain, sizeof(plain), &got),
                     SESS_E_KEY_ID);
    assert_int_equal(sess_wire_open(k1, dgram, (size_t)n, &g, plain, sizeof(plain), &got), 0);
    sess_keyring_destroy(k1);
    sess_keyring_destroy(other);
    sess_keyring_destroy(k7);
}

static void test_rotation(void **state)
{
    struct sess_keyring *old = ring("1 " KEY1_HEX "\n");
    struct sess_keyring *both = ring("# rotated in\n2 " KEY2_HEX "\n1 " KEY1_HEX "\n");
    struct sess_keyring *only2 = ring("2 " KEY2_HEX "\n");
    struct sess_wire_hdr h = hdr(SESS_T_SESSION, 1, 1, 1), g;
    size_t plen = one_session("id", 1, "s"), got;
    ssize_t n1, n2;

    n1 = sess_wire_seal(old, &h, payload, plen, dgram, sizeof(dgram));
    assert_int_equal(dgram[6] << 8 | dgram[7], 1);
    /* Key 1 still opens after key 2 is added. */
    assert_int_equal(sess_wire_open(both, dgram, (size_t)n1, &g, plain, sizeof(plain), &got), 0);
    assert_int_equal(g.key_id, 1);
    /* Once removed, it does not. */
    assert_int_equal(sess_wire_open(only2, dgram, (size_t)n1, &g, plain, sizeof(plain), &got),
                     SESS_E_KEY_ID);

    /* The highest id seals, wherever it is in the file. */
    assert_int_equal(sess_keyring_seal_id(both), 2);
    assert_int_equal(sess_keyring_count(both), 2);
    n2 = sess_wire_seal(both, &h, payload, plen, dgram, sizeof(dgram));
    assert_int_equal(dgram[6] << 8 | dgram[7], 2);
    assert_int_equal(sess_wire_open(only2, dgram, (size_t)n2, &g, plain, sizeof(plain), &got), 0);
    assert_int_equal(g.key_id, 2);
    /* A server still on the old ring cannot read it. */
    assert_int_equal(sess_wire_open(old, dgram, (size_t)n2, &g, plain, sizeof(plain), &got),
                     SESS_E_KEY_ID);
    sess_keyring_destroy(old);
    sess_keyring_destroy(both);
    sess_keyring_destroy(only2);
}

/* Staged rotation: an open-only key is accepted but not used to seal. */
static void test_open_only_key(void **state)
{
    struct sess_keyring *staged = ring("1 " KEY1_HEX "\n2 " KEY2_HEX " open-only\n");
    struct sess_keyring *next = ring("1 " KEY1_HEX "\n2 " KEY2_HEX "\n");
    struct sess_wire_hdr h = hdr(SESS_T_SESSION, 1, 1, 1), g;
    size_t plen = one_session("id", 1, "s"), got;
    ssize_t n;

    assert_int_equal(sess_keyring_seal_id(staged), 1);
    assert_true(sess_keyring_has(staged, 2));
    assert_false(sess_keyring_has(staged, 3));
    assert_false(sess_keyring_has(staged, 0));
    n = sess_wire_seal(staged, &h, payload, plen, dgram, sizeof(dgram));
    assert_int_equal(dgram[7], 1);
    assert_int_equal(sess_wire_open(next, dgram, (size_t)n, &g, plain, sizeof(plain), &got), 0);
    /* A server that already seals with 2 is read by one that only stages it. */
    n = sess_wire_seal(next, &h, payload, plen, dgram, sizeof(dgram));
    assert_int_equal(dgram[7], 2);
    assert_int_equal(sess_wire_open(staged, dgram, (size_t)n, &g, plain, sizeof(plain), &got), 0);
    sess_keyring_destroy(staged);
    sess_keyring_destroy(next);
}

static void test_keyfile_accepts(void **state)
{
    struct sess_keyring *kr;
    const char *text = "# group keys\r\n"
                       "\n"
                       "   \t\n"
                       "  3\t" KEY2_HEX "   # current\r\n"
                       "00010 " KEY1_HEX "\n"
                       "65535 " KEY9_HEX " open-only";

    kr = ring(text);
    assert_int_equal(sess_keyring_count(kr), 3);
    assert_int_equal(sess_keyring_seal_id(kr), 10);
    assert_true(sess_keyring_has(kr, 3));
    assert_true(sess_keyring_has(kr, 65535));
    sess_keyring_destroy(kr);

    /* The upper-case key parses to the same bytes as a lower-case one. */
    {
        struct sess_keyring *a = ring("1 " KEY2_HEX "\n");
        struct sess_keyring *b = ring("1 " KEY2_LOWER_HEX "\n");
        struct sess_wire_hdr h = hdr(SESS_T_SYNC_REQUEST, 1, 1, 1), g;
        size_t got;
        ssize_t n = sess_wire_seal(a, &h, NULL, 0, dgram, sizeof(dgram));

        assert_int_equal(sess_wire_open(b, dgram, (size_t)n, &g, NULL, 0, &got), 0);
        sess_keyring_destroy(a);
        sess_keyring_destroy(b);
    }
}

struct keyfile_case {
    const char *text;
    const char *want;  /* the whole message */
};

static void test_keyfile_errors(void **state)
{
    static char many[4096];
    static const struct keyfile_case cases[] = {
        { "1 " KEY1_HEX "\n2 " KEY1_HEX "x\n",
          "keys.conf:2: key must be 64 hex digits (32 bytes), not 65 characters" },
        { "\n\n1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e\n",
          "keys.conf:3: key must be 64 hex digits (32 bytes), not 62 characters" },
        { "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1eZZ\n",
          "keys.conf:1: key contains a character that is not a hex digit" },
        { "0 " KEY1_HEX "\n", "keys.conf:1: key id must be a number from 1 to 65535" },
        { "65536 " KEY1_HEX "\n", "keys.conf:1: key id must be a number from 1 to 65535" },
        { "-1 " KEY1_HEX "\n", "keys.conf:1: key id must be a number from 1 to 65535" },
        { "one " KEY1_HEX "\n", "keys.conf:1: key id must be a number from 1 to 65535" },
        { "# c\n4 " KEY1_HEX "\n\n4 " KEY2_HEX "\n",
          "keys.conf:4: duplicate key id 4 (first on line 2)" },
        { "1\n", "keys.conf:1: expected 'ID HEX' (a key id and 64 hex digits)" },
        { "1 " KEY1_HEX " open-only extra\n", "keys.conf:1: unexpected text after the key" },
        { "1 " KEY1_HEX " openonly\n",
          "keys.conf:1: unknown word after the key (only 'open-only' is allowed)" },
        { "1 0000000000000000000000000000000000000000000000000000000000000000\n",
          "keys.conf:1: key is all zeros" },
        { "", "keys.conf: no keys" },
        { "# nothing\n\n", "keys.conf: no keys" },
        { "1 " KEY1_HEX " open-only\n", "keys.conf: every key is open-only: none to seal with" },
        { many, "keys.conf:17: more than 16 keys" },
    };
    struct sess_keyring *kr;
    char err[256];
    size_t i, off = 0;

    for (i = 1; i <= 17; i++)
        off += (size_t)snprintf(many + off, sizeof(many) - off, "%zu %s\n", i, KEY1_HEX);

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kr = (struct sess_keyring *)&err; /* must be left alone */
        memset(err, 0, sizeof(err));
        assert_int_equal(sess_keyring_parse(&kr, cases[i].text, strlen(cases[i].text),
                                            "keys.conf", err, sizeof(err)),
                         SESS_E_KEYFILE);
        assert_ptr_equal(kr, (struct sess_keyring *)&err);
        assert_string_equal(err, cases[i].want);
        /* Never any key material, not even a part of it. */
        assert_null(strstr(err, "0102030405"));
        assert_null(strstr(err, "F0E1D2"));
    }
    /* An embedded NUL is just a bad character, not the end of the text. */
    {
        char text[80];

        snprintf(text, sizeof(text), "1 %s\n", KEY1_HEX);
        text[10] = '\0';
        assert_int_equal(sess_keyring_parse(&kr, text, strlen(KEY1_HEX) + 3, "k", err,
                                            sizeof(err)),
                         SESS_E_KEYFILE);
        assert_string_equal(err, "k:1: key contains a character that is not a hex digit");
    }
    /* No error buffer is fine, and a tiny one is truncated, not overrun. */
    assert_int_equal(sess_keyring_parse(&kr, "x", 1, "k", NULL, 0), SESS_E_KEYFILE);
    memset(err, 'Q', sizeof(err));
    assert_int_equal(sess_keyring_parse(&kr, "x", 1, "k", err, 4), SESS_E_KEYFILE);
    assert_string_equal(err, "k:1");
    assert_int_equal(err[4], 'Q');
}

static char tmpdir[64];

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_keyfile_load(void **state)
{
    struct sess_keyring *kr = NULL;
    char path[128], want[256], err[256];
    static char big[SESS_KEYFILE_MAX + 2];

    strcpy(tmpdir, "/tmp/test_sess_wire.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    snprintf(path, sizeof(path), "%s/keys", tmpdir);

    write_file(path, "1 " KEY1_HEX "\n2 " KEY2_HEX "\n", 0644);
    assert_int_equal(sess_keyring_load(&kr, path, err, sizeof(err)), SESS_E_KEYFILE);
    assert_null(kr);
    snprintf(want, sizeof(want),
             "%s: mode 644 gives group or others access to the keys; make it 600", path);
    assert_string_equal(err, want);
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(sess_keyring_load(&kr, path, err, sizeof(err)), SESS_E_KEYFILE);
    assert_int_equal(chmod(path, 0602), 0);
    assert_int_equal(sess_keyring_load(&kr, path, err, sizeof(err)), SESS_E_KEYFILE);

    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(sess_keyring_load(&kr, path, err, sizeof(err)), 0);
    assert_non_null(kr);
    assert_int_equal(sess_keyring_seal_id(kr), 2);
    sess_keyring_destroy(kr);
    kr = NULL;

    /* Errors inside the file are reported as PATH:LINE. */
    write_file(path, "1 " KEY1_HEX "\n1 " KEY2_HEX "\n", 0400);
    assert_int_equal(sess_keyring_load(&kr, path, err, sizeof(err)), SESS_E_KEYFILE);
    snprintf(want, sizeof(want), "%s:2: duplicate key id 1 (first on line 1)", path);
    assert_string_equal(err, want);
    assert_int_equal(unlink(path), 0);

    assert_int_equal(sess_keyring_load(&kr, path, err, sizeof(err)), SESS_E_KEYFILE);
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
    assert_string_equal(err, want);

    assert_int_equal(chmod(tmpdir, 0700), 0);
    assert_int_equal(sess_keyring_load(&kr, tmpdir, err, sizeof(err)), SESS_E_KEYFILE);
    snprintf(want, sizeof(want), "%s: not a regular file", tmpdir);
    assert_string_equal(err, want);

    /* A file past the size limit is refused before parsing. */
    memset(big, '#', sizeof(big) - 1);
    write_file(path, big, 0600);
    assert_int_equal(sess_keyring_load(&kr, path, err, sizeof(err)), SESS_E_KEYFILE);
    snprintf(want, sizeof(want), "%s: larger than 65536 bytes", path);
    assert_string_equal(err, want);
    assert_null(kr);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(tmpdir), 0);
}

/* ---- replay ---- */

static void test_replay_rules(void **state)
{
    struct sess_replay *r = sess_replay_create(0);
    struct sess_wire_hdr h = hdr(SESS_T_SESSION, 9, 1000, 100);

    /* First datagram from a sender; the same one again. */
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), 0);
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), SESS_E_REPLAY);
    /* Later ones; then an earlier one that was never seen, inside the window. */
    h.seq = 105;
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), 0);
    h.seq = 103;
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), 0);
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), SESS_E_REPLAY);
    h.seq = 101;
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), 0);
    h.seq = 105;
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), SESS_E_REPLAY);
    /* Jump ahead: the window now runs from 2000 - 1023 = 977 to 2000. */
    h.seq = 2000;
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), 0);
    h.seq = 976;
    assert_int_equal(sess_replay_check(r, &h, NOW_MS), SESS_E_REPLAY);
    h.seq = 977;
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), 0);
    h.seq = 106;
    assert_int_equal(sess_replay_check(r, &h, NOW_MS), SESS_E_REPLAY);
    h.seq = 0;
    assert_int_equal(sess_replay_check(r, &h, NOW_MS), SESS_E_REPLAY);

    /* An older epoch is a replay whatever its sequence number. */
    h.epoch = 999;
    h.seq = 5000;
    assert_int_equal(sess_replay_check(r, &h, NOW_MS), SESS_E_REPLAY);

    /* A newer epoch (the sender restarted) starts over at any number. */
    h.epoch = 1001;
    h.seq = 1;
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), 0);
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), SESS_E_REPLAY);
    h.seq = 0;
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), 0);
    /* The old epoch is now refused, even ahead of what it had reached. */
    h.epoch = 1000;
    h.seq = 3000;
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), SESS_E_REPLAY);

    /* Other senders are independent. */
    h.sender = 10;
    h.epoch = 1;
    h.seq = 100;
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), 0);

    /* Around the top of the sequence space. */
    h.sender = 11;
    h.seq = UINT32_MAX - 1;
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), 0);
    h.seq = UINT32_MAX;
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), 0);
    h.seq = UINT32_MAX - 1;
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), SESS_E_REPLAY);
    h.seq = UINT32_MAX - 1023;
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), 0);
    h.seq = UINT32_MAX - 1024;
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), SESS_E_REPLAY);
    sess_replay_destroy(r);
}

/* check alone changes nothing, so a forged header cannot poison the window. */
static void test_replay_check_is_pure(void **state)
{
    struct sess_replay *r = sess_replay_create(0);
    struct sess_wire_hdr h = hdr(SESS_T_SESSION, 9, 1000, 100), forged;

    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), 0);
    /* A forged header far ahead, and one with a newer epoch: checked, never committed. */
    forged = h;
    forged.seq = 5000000;
    assert_int_equal(sess_replay_check(r, &forged, NOW_MS), 0);
    forged.epoch = 0xffffffff;
    assert_int_equal(sess_replay_check(r, &forged, NOW_MS), 0);
    /* The genuine next datagrams still pass. */
    h.seq = 101;
    assert_int_equal(sess_replay_check(r, &h, NOW_MS), 0);
    assert_int_equal(sess_replay_check(r, &h, NOW_MS), 0);
    sess_replay_commit(r, &h);
    assert_int_equal(sess_replay_check(r, &h, NOW_MS), SESS_E_REPLAY);
    h.seq = 100;
    assert_int_equal(sess_replay_check(r, &h, NOW_MS), SESS_E_REPLAY);
    /* A commit of an older epoch (a misuse) does not move the sender back. */
    h.epoch = 5;
    h.seq = 5000;
    sess_replay_commit(r, &h);
    h.epoch = 1000;
    h.seq = 102;
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), 0);
    sess_replay_destroy(r);
}

/*
 * The window against a model that remembers every sequence number: seq is
 * fresh iff above the highest seen, or less than 1024 below it and not
 * seen. Random walks with small steps, big jumps and revisits.
 */
static void test_replay_window_model(void **state)
{
    enum { SPAN = 20000, STEPS = 200000 };
    static uint8_t seen[SPAN];
    struct sess_replay *r = sess_replay_create(0);
    struct sess_wire_hdr h = hdr(SESS_T_SESSION, 1, 1, 0);
    uint32_t top = 0, rnd[2], recent[16];
    int any = 0;
    unsigned i, accepted = 0, refused = 0;

    memset(seen, 0, sizeof(seen));
    memset(recent, 0, sizeof(recent));
    for (i = 0; i < STEPS; i++) {
        int want, got;
        uint32_t seq;

        assert_int_equal(RAND_bytes((uint8_t *)rnd, sizeof(rnd)), 1);
        switch (rnd[0] % 8) {
        case 0: /* jump ahead, sometimes past the whole window */
            seq = top + 1 + rnd[1] % 1500;
            break;
        case 1: case 2: /* next few */
            seq = top + 1 + rnd[1] % 3;
            break;
        case 3: case 4: /* one of the last accepted, sent again */
            seq = recent[rnd[1] % 16];
            break;
        default: /* behind, across the window's edge */
            seq = top >= rnd[1] % 1100 ? top - rnd[1] % 1100 : 0;
            break;
        }
        if (seq >= SPAN) {
            /* Restart the model at a new epoch rather than run off its end. */
            h.epoch++;
            memset(seen, 0, sizeof(seen));
            any = 0;
            top = 0;
            seq = rnd[1] % 64;
        }
        want = !any || seq > top || (top - seq < 1024 && !seen[seq]);
        h.seq = seq;
        got = sess_replay_accept(r, &h, NOW_MS);
        assert_int_equal(got, want ? 0 : SESS_E_REPLAY);
        if (want) {
            seen[seq] = 1;
            recent[accepted % 16] = seq;
            if (!any || seq > top)
                top = seq;
            any = 1;
            accepted++;
        } else {
            refused++;
        }
    }
    print_message("window model: %u accepted, %u refused\n", accepted, refused);
    assert_true(accepted > STEPS / 3 && refused > STEPS / 5);
    sess_replay_destroy(r);
}

static void test_replay_stale(void **state)
{
    struct sess_replay *r = sess_replay_create(0), *narrow = sess_replay_create(500);
    struct sess_wire_hdr h = hdr(SESS_T_SESSION, 1, 1, 1);

    h.ts_ms = NOW_MS - 30001;
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), SESS_E_STALE);
    h.ts_ms = NOW_MS + 30001;
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), SESS_E_STALE);
    /* A stale datagram is not recorded. */
    h.ts_ms = NOW_MS - 30000;
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), 0);
    h.seq = 2;
    h.ts_ms = NOW_MS + 30000;
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), 0);
    /* Staleness is tested before replay. */
    h.ts_ms = NOW_MS + 40000;
    assert_int_equal(sess_replay_check(r, &h, NOW_MS), SESS_E_STALE);
    /* Extremes do not wrap. */
    h.seq = 3;
    h.ts_ms = 0;
    assert_int_equal(sess_replay_check(r, &h, NOW_MS), SESS_E_STALE);
    h.ts_ms = UINT64_MAX;
    assert_int_equal(sess_replay_check(r, &h, NOW_MS), SESS_E_STALE);
    assert_int_equal(sess_replay_check(r, &h, 0), SESS_E_STALE);

    h.ts_ms = NOW_MS + 501;
    assert_int_equal(sess_replay_check(narrow, &h, NOW_MS), SESS_E_STALE);
    h.ts_ms = NOW_MS - 500;
    assert_int_equal(sess_replay_check(narrow, &h, NOW_MS), 0);
    sess_replay_destroy(r);
    sess_replay_destroy(narrow);
}

/* Full table: the sender heard from least recently is forgotten, no other. */
static void test_replay_eviction(void **state)
{
    struct sess_replay *r = sess_replay_create(0);
    struct sess_wire_hdr h = hdr(SESS_T_SESSION, 1, 1, 10);
    unsigned s;

    for (s = 1; s <= SESS_REPLAY_SENDERS; s++) {
        h.sender = (uint16_t)s;
        assert_int_equal(sess_replay_accept(r, &h, NOW_MS), 0);
    }
    /* Sender 1 speaks again, so sender 2 is now the least recently heard. */
    h.sender = 1;
    h.seq = 11;
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), 0);
    h.sender = 1000;
    h.seq = 10;
    assert_int_equal(sess_replay_accept(r, &h, NOW_MS), 0);
    /* Sender 2 was evicted: its old datagram is new again (the timestamp still bounds this). */
    h.sender = 2;
    assert_int_equal(sess_replay_check(r, &h, NOW_MS), 0);
    for (s = 3; s <= SESS_REPLAY_SENDERS; s++) {
        h.sender = (uint16_t)s;
        assert_int_equal(sess_replay_check(r, &h, NOW_MS), SESS_E_REPLAY);
    }
    h.sender = 1;
    h.seq = 11;
    assert_int_equal(sess_replay_check(r, &h, NOW_MS), SESS_E_REPLAY);
    h.sender = 1000;
    h.seq = 10;
    assert_int_equal(sess_replay_check(r, &h, NOW_MS), SESS_E_REPLAY);
    sess_replay_destroy(r);
}

/* The whole receive path on one datagram: open, then the filter. */
static void test_open_then_replay(void **state)
{
    struct sess_keyring *kr = ring("1 " KEY1_HEX "\n");
    struct sess_replay *r = sess_replay_create(0);
    struct sess_wire_hdr h = hdr(SESS_T_SESSION, 4, 1700000000, 1), g;
    size_t plen = one_session("id", 1, "s"), got;
    ssize_t n = sess_wire_seal(kr, &h, payload, plen, dgram, sizeof(dgram));

    assert_int_equal(sess_wire_open(kr, dgram, (size_t)n, &g, plain, sizeof(plain), &got), 0);
    assert_int_equal(sess_replay_accept(r, &g, NOW_MS + 10), 0);
    /* The captured datagram, sent again: opens fine, and is refused as a replay. */
    assert_int_equal(sess_wire_open(kr, dgram, (size_t)n, &g, plain, sizeof(plain), &got), 0);
    assert_int_equal(sess_replay_accept(r, &g, NOW_MS + 20), SESS_E_REPLAY);
    /* After the window it is stale. */
    assert_int_equal(sess_replay_accept(r, &g, NOW_MS + 60000), SESS_E_STALE);
    sess_replay_destroy(r);
    sess_keyring_destroy(kr);
}

/* ---- payload limits ---- */

struct payload_case {
    uint8_t type;
    uint8_t bytes[24];
    size_t len;
};

static void test_payload_limits(void **state)
{
    static const struct payload_case bad[] = {
        /* count 1, id length 0 */
        { SESS_T_SESSION, { 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 'x' }, 14 },
        /* count 1, id length 65, then not enough bytes for it */
        { SESS_T_SESSION, { 0, 1, 65, 'a', 'b' }, 5 },
        /* count 1, session length 0 */
        { SESS_T_SESSION, { 0, 1, 1, 'i', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0 }, 14 },
        /* count 1, session length 8193 (0x2001) */
        { SESS_T_SESSION, { 0, 1, 1, 'i', 0, 0, 0, 0, 0, 0, 0, 1, 0x20, 0x01, 'x' }, 15 },
        /* count 1, session length 5 but 1 byte there */
        { SESS_T_SESSION, { 0, 1, 1, 'i', 0, 0, 0, 0, 0, 0, 0, 1, 0, 5, 'x' }, 15 },
        /* count 2, one entry */
        { SESS_T_SESSION, { 0, 2, 1, 'i', 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 'x' }, 15 },
        /* count 0xffff, one entry */
        { SESS_T_SESSION, { 0xff, 0xff, 1, 'i', 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 'x' }, 15 },
        /* count 1, one entry and a trailing byte */
        { SESS_T_SESSION, { 0, 1, 1, 'i', 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 'x', 0 }, 16 },
        /* count 0 */
        { SESS_T_SESSION, { 0, 0 }, 2 },
        /* too short for the count; empty */
        { SESS_T_SESSION, { 0 }, 1 },
        { SESS_T_SESSION, { 0 }, 0 },
        /* entry cut inside the expiry */
        { SESS_T_SESSION, { 0, 1, 1, 'i', 0, 0, 0 }, 7 },
        /* SYNC_REQUEST with a byte */
        { SESS_T_SYNC_REQUEST, { 0 }, 1 },
        /* DELETE: empty, id length 0, 65, length disagreeing either way */
        { SESS_T_DELETE, { 0 }, 0 },
        { SESS_T_DELETE, { 0 }, 1 },
        { SESS_T_DELETE, { 65, 'a' }, 2 },
        { SESS_T_DELETE, { 2, 'a' }, 2 },
        { SESS_T_DELETE, { 1, 'a', 'b' }, 3 },
    };
    static const uint8_t good[] = { 0, 1, 1, 'i', 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 'x' };
    struct sess_keyring *kr = ring("1 " KEY1_HEX "\n");
    struct sess_wire_hdr h = hdr(SESS_T_SESSION, 1, 1, 1), g;
    struct sess_wire_iter it;
    struct sess_wire_entry e;
    size_t i, len, got;
    int rc;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* The receiver: authentic, so the header comes back with the error. */
        len = raw_seal_simple(KEY1_HEX, 1, bad[i].type, bad[i].bytes, bad[i].len, dgram);
        memset(&g, 0, sizeof(g));
        rc = sess_wire_open(kr, dgram, len, &g, plain, sizeof(plain), &got);
        if (rc != SESS_E_PAYLOAD)
            print_message("case %zu: %d\n", i, rc);
        assert_int_equal(rc, SESS_E_PAYLOAD);
        assert_int_equal(g.sender, 7);
        assert_int_equal(got, bad[i].len);
        /* The sender refuses to seal it at all. */
        h.type = bad[i].type;
        assert_int_equal(sess_wire_seal(kr, &h, bad[i].bytes, bad[i].len, dgram, sizeof(dgram)),
                         SESS_E_PAYLOAD);
        /* The iterator, used directly on SESSION payloads, reaches the same verdict. */
        if (bad[i].type == SESS_T_SESSION) {
            rc = sess_wire_iter_init(&it, bad[i].bytes, bad[i].len);
            while (rc == 0 && (rc = sess_wire_next_session(&it, &e)) == 1)
                rc = 0;
            assert_int_equal(rc, SESS_E_PAYLOAD);
            /* Sticky. */
            assert_int_equal(sess_wire_next_session(&it, &e), SESS_E_PAYLOAD);
        }
    }
    len = raw_seal_simple(KEY1_HEX, 1, SESS_T_SESSION, good, sizeof(good), dgram);
    assert_int_equal(sess_wire_open(kr, dgram, len, &g, plain, sizeof(plain), &got), 0);
    assert_int_equal(sess_wire_iter_init(&it, good, sizeof(good)), 0);
    assert_int_equal(sess_wire_next_session(&it, &e), 1);
    assert_true(e.expiry == 1);
    assert_int_equal(sess_wire_next_session(&it, &e), 0);
    assert_int_equal(sess_wire_iter_init(&it, NULL, 0), SESS_E_PAYLOAD);
    sess_keyring_destroy(kr);
}

/* Largest legal entry and the exact limits on both sides. */
static void test_payload_edges(void **state)
{
    static uint8_t big[2 + 1 + 64 + 8 + 2 + 8193];
    struct sess_wire_iter it;
    struct sess_wire_entry e;
    size_t len = 2 + 1 + 64 + 8 + 2 + 8192;

    memset(big, 0x41, sizeof(big));
    big[0] = 0;
    big[1] = 1;
    big[2] = 64;
    big[2 + 1 + 64 + 8] = 0x20;
    big[2 + 1 + 64 + 8 + 1] = 0x00;
    assert_int_equal(sess_wire_iter_init(&it, big, len), 0);
    assert_int_equal(sess_wire_next_session(&it, &e), 1);
    assert_int_equal(e.id_len, 64);
    assert_int_equal(e.sess_len, 8192);
    assert_true(e.expiry == UINT64_C(0x4141414141414141));
    assert_int_equal(sess_wire_next_session(&it, &e), 0);
    /* 8193 */
    big[2 + 1 + 64 + 8 + 1] = 0x01;
    assert_int_equal(sess_wire_iter_init(&it, big, len + 1), 0);
    assert_int_equal(sess_wire_next_session(&it, &e), SESS_E_PAYLOAD);
    /* id 65 */
    big[2 + 1 + 64 + 8 + 1] = 0x00;
    big[2] = 65;
    assert_int_equal(sess_wire_iter_init(&it, big, len), 0);
    assert_int_equal(sess_wire_next_session(&it, &e), SESS_E_PAYLOAD);
}

static void test_strerror(void **state)
{
    int e, f;

    assert_string_equal(sess_wire_strerror(0), "ok");
    assert_string_equal(sess_wire_strerror(SESS_E_AUTH), "authentication failed");
    assert_string_equal(sess_wire_strerror(SESS_E_REPLAY), "replayed datagram");
    assert_string_equal(sess_wire_strerror(-16), "unknown error");
    assert_string_equal(sess_wire_strerror(1), "unknown error");
    for (e = SESS_E_KEYFILE; e <= SESS_E_SHORT; e++) {
        assert_string_not_equal(sess_wire_strerror(e), "unknown error");
        for (f = e + 1; f <= SESS_E_SHORT; f++)
            assert_string_not_equal(sess_wire_strerror(e), sess_wire_strerror(f));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_layout),
        cmocka_unit_test(test_open_layout),
        cmocka_unit_test(test_roundtrip_session),
        cmocka_unit_test(test_roundtrip_sync_request),
        cmocka_unit_test(test_roundtrip_delete),
        cmocka_unit_test(test_pack_many_sessions),
        cmocka_unit_test(test_pack_limits),
        cmocka_unit_test(test_forged_every_byte),
        cmocka_unit_test(test_truncated_every_length),
        cmocka_unit_test(test_auth_failure_wipes_plaintext),
        cmocka_unit_test(test_plain_buffer_too_small),
        cmocka_unit_test(test_header_errors),
        cmocka_unit_test(test_seal_refuses_bad_headers),
        cmocka_unit_test(test_wrong_or_unknown_key),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_open_only_key),
        cmocka_unit_test(test_keyfile_accepts),
        cmocka_unit_test(test_keyfile_errors),
        cmocka_unit_test(test_keyfile_load),
        cmocka_unit_test(test_replay_rules),
        cmocka_unit_test(test_replay_check_is_pure),
        cmocka_unit_test(test_replay_window_model),
        cmocka_unit_test(test_replay_stale),
        cmocka_unit_test(test_replay_eviction),
        cmocka_unit_test(test_open_then_replay),
        cmocka_unit_test(test_payload_limits),
        cmocka_unit_test(test_payload_edges),
        cmocka_unit_test(test_strerror),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
