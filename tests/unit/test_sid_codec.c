/*
 * Tests for src/tls/sid_codec.c: round trips of both codecs, mod-n against
 * hand-computed residues, the prefix codec's layout, its rejection of
 * random and damaged identifiers, and argument checking.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <openssl/rand.h>

#include "tls/sid_codec.h"

static const unsigned group_sizes[] = { 1, 2, 3, 8, 255 };
static const size_t id_lens[] = { 8, 16, 32 };

#define N_SIZES (sizeof(group_sizes) / sizeof(group_sizes[0]))
#define N_LENS (sizeof(id_lens) / sizeof(id_lens[0]))

static void test_kind_parse(void **state)
{
    enum sid_codec_kind k = 0;

    assert_int_equal(sid_codec_kind_parse("mod-n", &k), 0);
    assert_int_equal(k, SID_CODEC_MODN);
    assert_int_equal(sid_codec_kind_parse("prefix", &k), 0);
    assert_int_equal(k, SID_CODEC_PREFIX);
    assert_int_equal(sid_codec_kind_parse("modn", &k), -1);
    assert_int_equal(sid_codec_kind_parse("Prefix", &k), -1);
    assert_int_equal(sid_codec_kind_parse("", &k), -1);
    assert_int_equal(sid_codec_kind_parse(NULL, &k), -1);
}

/* Every label of every group size survives encode then decode, several draws each. */
static void test_modn_roundtrip(void **state)
{
    size_t i, j;
    unsigned label, rep;
    uint8_t id[32];

    for (i = 0; i < N_SIZES; i++) {
        struct sid_codec c = { SID_CODEC_MODN, group_sizes[i], 0 };

        for (j = 0; j < N_LENS; j++)
            for (label = 1; label <= c.n; label++)
                for (rep = 0; rep < 4; rep++) {
                    assert_int_equal(sid_encode(&c, label, id, id_lens[j]), 0);
                    assert_int_equal(sid_decode(&c, id, id_lens[j]), label);
                }
    }
}

static void test_prefix_roundtrip(void **state)
{
    static const unsigned big_labels[] = { 256, 4096, 65534, SID_MAX_LABEL };
    static const uint8_t versions[] = { 0, 1, 15 };
    size_t i, j, v;
    unsigned label, rep;
    uint8_t id[32];

    for (v = 0; v < sizeof(versions); v++) {
        struct sid_codec c = { SID_CODEC_PREFIX, 0, versions[v] };

        for (i = 0; i < N_SIZES; i++)
            for (j = 0; j < N_LENS; j++)
                for (label = 1; label <= group_sizes[i]; label++)
                    for (rep = 0; rep < 2; rep++) {
                        assert_int_equal(sid_encode(&c, label, id, id_lens[j]), 0);
                        assert_int_equal(sid_decode(&c, id, id_lens[j]), label);
                    }
        for (i = 0; i < sizeof(big_labels) / sizeof(big_labels[0]); i++) {
            assert_int_equal(sid_encode(&c, big_labels[i], id, 32), 0);
            assert_int_equal(sid_decode(&c, id, 32), big_labels[i]);
        }
    }
}

/* The prefix codec does not care about n: a label outlives a resize. */
static void test_prefix_ignores_n(void **state)
{
    struct sid_codec c3 = { SID_CODEC_PREFIX, 3, 2 }, c4 = { SID_CODEC_PREFIX, 4, 2 };
    uint8_t id[32];
    unsigned label;

    for (label = 1; label <= 3; label++) {
        assert_int_equal(sid_encode(&c3, label, id, 32), 0);
        assert_int_equal(sid_decode(&c4, id, 32), label);
    }
}

/* label = id as a big-endian integer mod n, plus 1, on values worked out by hand. */
static void test_modn_hand_values(void **state)
{
    static const uint8_t zero[] = { 0x00 };
    static const uint8_t five[] = { 0x05 };
    static const uint8_t v256[] = { 0x01, 0x00 };
    static const uint8_t v65535[] = { 0xff, 0xff };
    static const uint8_t v01020304[] = { 0x01, 0x02, 0x03, 0x04 }; /* 16909060 */
    uint8_t ones[32];
    struct sid_codec c = { SID_CODEC_MODN, 3, 0 };

    memset(ones, 0xff, sizeof(ones)); /* 2^256 - 1 */

    c.n = 3;
    assert_int_equal(sid_decode(&c, zero, 1), 1);
    assert_int_equal(sid_decode(&c, five, 1), 3);  /* 5 mod 3 = 2 */
    assert_int_equal(sid_decode(&c, v256, 2), 2);  /* 256 mod 3 = 1 */
    assert_int_equal(sid_decode(&c, ones, 32), 1); /* 4^128 - 1 = 0 mod 3 */
    c.n = 8;
    assert_int_equal(sid_decode(&c, v65535, 2), 8); /* 65535 mod 8 = 7 */
    assert_int_equal(sid_decode(&c, ones, 32), 8);
    c.n = 7;
    assert_int_equal(sid_decode(&c, ones, 32), 2); /* 2^256 = 2^(3*85+1) = 2 mod 7 */
    c.n = 255;
    /* 256 = 1 mod 255, so the residue is the byte sum mod 255. */
    assert_int_equal(sid_decode(&c, v256, 2), 2);
    assert_int_equal(sid_decode(&c, v65535, 2), 1);
    assert_int_equal(sid_decode(&c, v01020304, 4), 11);
    assert_int_equal(sid_decode(&c, ones, 32), 1);
    c.n = 1000;
    assert_int_equal(sid_decode(&c, v01020304, 4), 61); /* 16909060 mod 1000 = 60 */
    c.n = 65535;
    /* 65536 = 1 mod 65535: the sum of 16-bit words, 0x0102 + 0x0304 = 1030. */
    assert_int_equal(sid_decode(&c, v01020304, 4), 1031);
    c.n = 1;
    assert_int_equal(sid_decode(&c, ones, 32), 1);
    assert_int_equal(sid_decode(&c, five, 1), 1);
}

/* A 1-byte mod-n id holds 0..255, so with n > 256 only labels 1..256 fit. */
static void test_modn_short_ids(void **state)
{
    struct sid_codec c = { SID_CODEC_MODN, 300, 0 };
    uint8_t id[1];
    unsigned label, rep;

    assert_int_equal(sid_encode(&c, 256, id, 1), 0);
    assert_int_equal(id[0], 255);
    assert_int_equal(sid_encode(&c, 1, id, 1), 0);
    assert_int_equal(id[0], 0);
    assert_int_equal(sid_encode(&c, 257, id, 1), -1);
    assert_int_equal(sid_encode(&c, 300, id, 1), -1);

    c.n = 255;
    for (label = 1; label <= 255; label++) {
        for (rep = 0; rep < 20; rep++) {
            assert_int_equal(sid_encode(&c, label, id, 1), 0);
            assert_int_equal(sid_decode(&c, id, 1), label);
        }
    }
}

/* The encoder keeps the random bits: ids for one label are not one value. */
static void test_modn_ids_stay_random(void **state)
{
    struct sid_codec c = { SID_CODEC_MODN, 3, 0 };
    uint8_t id[32], seen[256];
    unsigned distinct = 0, i;

    memset(seen, 0, sizeof(seen));
    for (i = 0; i < 2000; i++) {
        assert_int_equal(sid_encode(&c, 2, id, 32), 0);
        if (!seen[id[0]]++)
            distinct++;
    }
    /* 2000 uniform draws miss a given first-byte value with probability e^-7.8. */
    assert_true(distinct > 240);
}

/*
 * Regression (bug: prefix IDs made OpenSSL's session cache one hash chain):
 * OpenSSL hashes server sessions by the first four bytes of the ID, so
 * prefix IDs for one label must start with random bytes.
 */
static void test_prefix_ids_start_random(void **state)
{
    struct sid_codec c = { SID_CODEC_PREFIX, 0, 0 };
    uint8_t id[32], seen[256];
    unsigned distinct = 0, i;

    memset(seen, 0, sizeof(seen));
    for (i = 0; i < 2000; i++) {
        assert_int_equal(sid_encode(&c, 2, id, 32), 0);
        if (!seen[id[0]]++)
            distinct++;
    }
    assert_true(distinct > 240);
}

static void test_prefix_layout(void **state)
{
    struct sid_codec c = { SID_CODEC_PREFIX, 0, 5 };
    uint8_t id[32];

    assert_int_equal(sid_encode(&c, 0x1234, id, 32), 0);
    assert_int_equal(id[27], 0x5a);
    assert_int_equal(id[28], 0x12);
    assert_int_equal(id[29], 0x34);
    assert_int_equal(sid_decode(&c, id, 32), 0x1234);
}

/* Any one damaged byte is rejected: CRC-16 catches every burst of <= 16 bits. */
static void test_prefix_rejects_damage(void **state)
{
    struct sid_codec c = { SID_CODEC_PREFIX, 0, 1 };
    uint8_t id[32];
    size_t j, pos;
    unsigned flip, rep;

    for (rep = 0; rep < 20; rep++)
        for (j = 0; j < N_LENS; j++) {
            assert_int_equal(sid_encode(&c, 7, id, id_lens[j]), 0);
            for (pos = 0; pos < id_lens[j]; pos++)
                for (flip = 1; flip < 256; flip++) {
                    id[pos] ^= (uint8_t)flip;
                    assert_int_equal(sid_decode(&c, id, id_lens[j]), 0);
                    id[pos] ^= (uint8_t)flip;
                }
            assert_int_equal(sid_decode(&c, id, id_lens[j]), 7);
        }
}

/*
 * Truncated ids fail the check (the length is part of it); each passes by
 * chance with probability 2^-16, so allow a few in 3000.
 */
static void test_prefix_rejects_truncation(void **state)
{
    struct sid_codec c = { SID_CODEC_PREFIX, 0, 1 };
    uint8_t id[32];
    unsigned rep, passed = 0;

    for (rep = 0; rep < 1000; rep++) {
        assert_int_equal(sid_encode(&c, 9, id, 32), 0);
        passed += sid_decode(&c, id, 31) != 0;
        passed += sid_decode(&c, id, 16) != 0;
        passed += sid_decode(&c, id, 8) != 0;
    }
    assert_true(passed <= 3);
}

/*
 * A TLS 1.3 client sends a random 32-byte legacy session ID on every
 * connection. The prefix codec must pass about 2^-24 of them (byte 0 is 8
 * bits, the check 16): 1e6 draws expect 0.06 false accepts, and 6 or more
 * happen with probability below 1e-10. mod-n accepts all of them.
 */
static void test_random_ids(void **state)
{
    enum { DRAWS = 1000000, BATCH = 4096 };
    static uint8_t buf[32 * BATCH];
    struct sid_codec prefix = { SID_CODEC_PREFIX, 0, 0 };
    struct sid_codec modn = { SID_CODEC_MODN, 3, 0 };
    unsigned false_accepts = 0, modn_labelled = 0, i, done = 0;

    while (done < DRAWS) {
        assert_int_equal(RAND_bytes(buf, sizeof(buf)), 1);
        for (i = 0; i < BATCH && done < DRAWS; i++, done++) {
            false_accepts += sid_decode(&prefix, buf + 32 * i, 32) != 0;
            modn_labelled += sid_decode(&modn, buf + 32 * i, 32) != 0;
        }
    }
    print_message("prefix false accepts: %u of %u random ids\n", false_accepts, DRAWS);
    assert_true(false_accepts <= 5);
    assert_int_equal(modn_labelled, DRAWS);
}

static void test_wrong_version(void **state)
{
    struct sid_codec c3 = { SID_CODEC_PREFIX, 0, 3 }, c2 = { SID_CODEC_PREFIX, 0, 2 };
    struct sid_codec c16 = { SID_CODEC_PREFIX, 0, 16 };
    uint8_t id[16];

    assert_int_equal(sid_encode(&c3, 42, id, sizeof(id)), 0);
    assert_int_equal(sid_decode(&c3, id, sizeof(id)), 42);
    assert_int_equal(sid_decode(&c2, id, sizeof(id)), 0);
    assert_int_equal(sid_decode(&c16, id, sizeof(id)), 0);
    assert_int_equal(sid_encode(&c16, 42, id, sizeof(id)), -1);
}

static void test_too_short_or_long(void **state)
{
    struct sid_codec p = { SID_CODEC_PREFIX, 0, 0 }, m = { SID_CODEC_MODN, 8, 0 };
    uint8_t id[33];
    size_t len;

    memset(id, 0, sizeof(id));
    assert_int_equal(sid_encode(&p, 1, id, SID_PREFIX_MIN_LEN - 1), -1);
    assert_int_equal(sid_encode(&p, 1, id, 33), -1);
    assert_int_equal(sid_encode(&m, 1, id, 0), -1);
    assert_int_equal(sid_encode(&m, 1, id, 33), -1);

    assert_int_equal(sid_encode(&p, 1, id, SID_PREFIX_MIN_LEN), 0);
    for (len = 0; len < SID_PREFIX_MIN_LEN; len++)
        assert_int_equal(sid_decode(&p, id, len), 0);
    assert_int_equal(sid_decode(&p, id, SID_PREFIX_MIN_LEN), 1);
    assert_int_equal(sid_decode(&m, id, 0), 0);
    assert_int_equal(sid_decode(&m, id, 33), 0);
    assert_int_equal(sid_decode(&p, id, 33), 0);
    assert_int_equal(sid_decode(&p, NULL, 0), 0);
}

static void test_encode_rejects_bad_labels(void **state)
{
    struct sid_codec m = { SID_CODEC_MODN, 3, 0 }, p = { SID_CODEC_PREFIX, 0, 0 };
    struct sid_codec m0 = { SID_CODEC_MODN, 0, 0 }, mbig = { SID_CODEC_MODN, 65536, 0 };
    struct sid_codec bad = { (enum sid_codec_kind)7, 3, 0 };
    uint8_t id[32];
    size_t i;

    assert_int_equal(sid_encode(&m, 0, id, 32), -1);
    assert_int_equal(sid_encode(&m, 4, id, 32), -1);
    assert_int_equal(sid_encode(&m, 3, id, 32), 0);
    for (i = 0; i < N_SIZES; i++) {
        m.n = group_sizes[i];
        assert_int_equal(sid_encode(&m, m.n + 1, id, 32), -1);
    }
    assert_int_equal(sid_encode(&p, 0, id, 32), -1);
    assert_int_equal(sid_encode(&p, SID_MAX_LABEL + 1, id, 32), -1);
    assert_int_equal(sid_encode(&m0, 1, id, 32), -1);
    assert_int_equal(sid_encode(&mbig, 1, id, 32), -1);
    assert_int_equal(sid_decode(&m0, id, 32), 0);
    assert_int_equal(sid_decode(&mbig, id, 32), 0);
    assert_int_equal(sid_encode(&bad, 1, id, 32), -1);
    assert_int_equal(sid_decode(&bad, id, 32), 0);
    assert_int_equal(sid_encode(NULL, 1, id, 32), -1);
    assert_int_equal(sid_decode(NULL, id, 32), 0);
}

/* Label 0 is never valid: an id with label bytes 0 is rejected even with a correct check. */
static void test_prefix_label_zero(void **state)
{
    struct sid_codec c = { SID_CODEC_PREFIX, 0, 0 };
    uint8_t id[32], probe[32];
    unsigned hi;

    /*
     * Build a well-checked id for label 0 by searching the check bytes: the
     * encoder refuses label 0, so take a label-1 id, zero the label and try
     * all 65536 check values; none may decode.
     */
    assert_int_equal(sid_encode(&c, 1, id, 32), 0);
    memcpy(probe, id, sizeof(probe));
    probe[28] = probe[29] = 0;
    for (hi = 0; hi < 65536; hi++) {
        probe[30] = (uint8_t)(hi >> 8);
        probe[31] = (uint8_t)hi;
        assert_int_equal(sid_decode(&c, probe, 32), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kind_parse),
        cmocka_unit_test(test_modn_roundtrip),
        cmocka_unit_test(test_prefix_roundtrip),
        cmocka_unit_test(test_prefix_ignores_n),
        cmocka_unit_test(test_modn_hand_values),
        cmocka_unit_test(test_modn_short_ids),
        cmocka_unit_test(test_modn_ids_stay_random),
        cmocka_unit_test(test_prefix_layout),
        cmocka_unit_test(test_prefix_rejects_damage),
        cmocka_unit_test(test_prefix_rejects_truncation),
        cmocka_unit_test(test_random_ids),
        cmocka_unit_test(test_wrong_version),
        cmocka_unit_test(test_prefix_ids_start_random),
        cmocka_unit_test(test_too_short_or_long),
        cmocka_unit_test(test_encode_rejects_bad_labels),
        cmocka_unit_test(test_prefix_label_zero),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
