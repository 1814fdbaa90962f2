/*
 * libFuzzer target for src/tls/sess_wire.c. Each input is used three ways:
 *
 *   1. as a datagram, opened under a fixed keyring (ids 1 and 7, the keys
 *      below; the seeds in corpus/fuzz_sess_wire/ are sealed under them).
 *      An opened datagram must reseal and reopen to the same header and
 *      plaintext, its payload must walk cleanly, and the replay filter
 *      must accept it once and refuse it the second time.
 *   2. as a payload in clear, because the tag would otherwise hide the
 *      payload parsers from the fuzzer: the SESSION iterator and the
 *      DELETE reader. A payload they accept must be rebuilt byte for byte
 *      by the builders, and must seal and open.
 *   3. as key file text for the keyring parser.
 *
 * Aborts when: a return value is outside its contract; an entry points
 * outside the input or has a length out of range; an accepted payload is
 * not the canonical encoding of what was read from it; a round trip
 * changes anything; an error message is not "fuzz:..." or is unterminated.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tls/sess_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fixed test keys: the seeds were sealed under them. Never use them for real. */
#define FUZZ_KEYS                                                          \
    "1 4675a7d6e3f1b2c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081920a1b2\n" \
    "7 0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0\n"

static uint8_t plain[SESS_WIRE_MAX_PLAIN];
static uint8_t plain2[SESS_WIRE_MAX_PLAIN];
static uint8_t out[SESS_WIRE_MAX_DGRAM];

static void require(int cond)
{
    if (!cond)
        abort();
}

static const struct sess_keyring *fuzz_keyring(void)
{
    static struct sess_keyring *kr;

    if (kr == NULL)
        require(sess_keyring_parse(&kr, FUZZ_KEYS, strlen(FUZZ_KEYS), "fuzz", NULL, 0) == 0);
    return kr;
}

static int in_input(const uint8_t *p, size_t n, const uint8_t *data, size_t size)
{
    return p >= data && n <= size && (size_t)(p - data) <= size - n;
}

/* Walks a SESSION payload; returns the walk's final code (0 = valid). */
static int walk_sessions(const uint8_t *p, size_t len, unsigned *count)
{
    struct sess_wire_iter it;
    struct sess_wire_entry e;
    int rc;

    *count = 0;
    rc = sess_wire_iter_init(&it, p, len);
    if (rc < 0) {
        require(rc == SESS_E_PAYLOAD);
        return rc;
    }
    while ((rc = sess_wire_next_session(&it, &e)) == 1) {
        require(e.id_len >= 1 && e.id_len <= SESS_WIRE_MAX_ID);
        require(e.sess_len >= 1 && e.sess_len <= SESS_WIRE_MAX_SESS);
        require(in_input(e.id, e.id_len, p, len));
        require(in_input(e.sess, e.sess_len, p, len));
        (*count)++;
    }
    require(rc == 0 || rc == SESS_E_PAYLOAD);
    require(sess_wire_next_session(&it, &e) == rc);
    return rc;
}

/* A valid SESSION payload must be exactly what the builder makes of its entries. */
static void rebuild_sessions(const uint8_t *p, size_t len, unsigned count)
{
    struct sess_wire_payload pl;
    struct sess_wire_iter it;
    struct sess_wire_entry e;

    sess_wire_payload_init(&pl, plain2, sizeof(plain2));
    require(sess_wire_iter_init(&it, p, len) == 0);
    while (sess_wire_next_session(&it, &e) == 1)
        require(sess_wire_put_session(&pl, e.id, e.id_len, e.expiry, e.sess, e.sess_len) == 0);
    require(pl.count == count && pl.len == len && memcmp(plain2, p, len) == 0);
}

/* The payload parsers on the raw input, then seal and open what they accept. */
static void fuzz_payload(const uint8_t *data, size_t size)
{
    const struct sess_keyring *kr = fuzz_keyring();
    struct sess_wire_hdr h = { SESS_T_SESSION, 0, 1, 2, 3, 4 }, g;
    const uint8_t *id;
    size_t id_len, got;
    unsigned count;
    ssize_t n;
    int rc;

    if (walk_sessions(data, size, &count) == 0) {
        require(count >= 1 && size <= 2 + (size_t)count * sess_wire_session_size(64, 8192));
        if (size <= SESS_WIRE_MAX_PLAIN) {
            rebuild_sessions(data, size, count);
            n = sess_wire_seal(kr, &h, data, size, out, sizeof(out));
            require(n == (ssize_t)(size + SESS_WIRE_OVERHEAD));
            require(sess_wire_open(kr, out, (size_t)n, &g, plain2, sizeof(plain2), &got) == 0);
            require(got == size && memcmp(plain2, data, size) == 0 && g.key_id == 7);
        }
    }

    rc = sess_wire_get_delete(data, size, &id, &id_len);
    require(rc == 0 || rc == SESS_E_PAYLOAD);
    if (rc == 0) {
        require(id_len >= 1 && id_len <= SESS_WIRE_MAX_ID && in_input(id, id_len, data, size));
        require(sess_wire_put_delete(plain2, sizeof(plain2), id, id_len) == (ssize_t)size);
        require(memcmp(plain2, data, size) == 0);
    }
}

/* The input as a datagram. */
static void fuzz_open(const uint8_t *data, size_t size)
{
    const struct sess_keyring *kr = fuzz_keyring();
    struct sess_wire_hdr h, g;
    struct sess_replay *r;
    const uint8_t *id;
    size_t plen = 0, plen2 = 0, id_len;
    unsigned count;
    ssize_t n;
    int rc;

    rc = sess_wire_open(kr, data, size, &h, plain, sizeof(plain), &plen);
    require(rc <= 0 && rc >= SESS_E_KEYFILE && rc != SESS_E_FULL && rc != SESS_E_ARG);
    require((rc == SESS_E_SHORT) == (size < SESS_WIRE_OVERHEAD));
    if (rc != 0 && rc != SESS_E_PAYLOAD)
        return;
    require(plen == size - SESS_WIRE_OVERHEAD);
    require(h.sender != 0 && (h.key_id == 1 || h.key_id == 7));
    require(h.type >= SESS_T_SESSION && h.type <= SESS_T_DELETE);
    if (rc == SESS_E_PAYLOAD)
        return;

    switch (h.type) {
    case SESS_T_SESSION:
        require(walk_sessions(plain, plen, &count) == 0 && count >= 1);
        break;
    case SESS_T_SYNC_REQUEST:
        require(plen == 0);
        break;
    case SESS_T_DELETE:
        require(sess_wire_get_delete(plain, plen, &id, &id_len) == 0);
        break;
    }

    /* Reseal (now under key 7, with a new nonce) and reopen. */
    n = sess_wire_seal(kr, &h, plain, plen, out, sizeof(out));
    require(n == (ssize_t)size);
    require(sess_wire_open(kr, out, (size_t)n, &g, plain2, sizeof(plain2), &plen2) == 0);
    require(plen2 == plen && memcmp(plain, plain2, plen) == 0);
    require(g.type == h.type && g.sender == h.sender && g.epoch == h.epoch && g.seq == h.seq
            && g.ts_ms == h.ts_ms && g.key_id == 7);

    /* Fresh once at its own time, a replay the second time. */
    r = sess_replay_create(0);
    require(sess_replay_accept(r, &h, h.ts_ms) == 0);
    require(sess_replay_accept(r, &h, h.ts_ms) == SESS_E_REPLAY);
    sess_replay_destroy(r);
}

/* The input as a key file. */
static void fuzz_keyfile(const uint8_t *data, size_t size)
{
    struct sess_keyring *kr = NULL;
    char err[128];
    unsigned n;
    int rc;

    memset(err, 'X', sizeof(err));
    rc = sess_keyring_parse(&kr, (const char *)data, size, "fuzz", err, sizeof(err));
    if (rc != 0) {
        require(rc == SESS_E_KEYFILE && kr == NULL);
        require(memchr(err, '\0', sizeof(err)) != NULL && strncmp(err, "fuzz", 4) == 0);
        return;
    }
    n = sess_keyring_count(kr);
    require(n >= 1 && n <= SESS_KEYRING_MAX);
    require(sess_keyring_seal_id(kr) != 0 && sess_keyring_has(kr, sess_keyring_seal_id(kr)));
    sess_keyring_destroy(kr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_open(data, size);
    fuzz_payload(data, size);
    fuzz_keyfile(data, size);
    return 0;
}
