/*
 * Tests for src/tls/clienthello.c: every fixture in
 * shared/fixtures/clienthello (real captures and hostile variants), prefix
 * and size-limit behaviour on them, hand-built ClientHellos for the cases
 * the fixtures do not cover, and hand-built ServerHellos.
 *
 * The fixture directory is $FERRY_FIXTURES if set, else found from this
 * file's path: shared/ sits beside the repository clone, so it is
 * <repo>/tests/unit/../../../shared/fixtures/clienthello.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls/clienthello.h"

#define BIG (1u << 17) /* limits large enough for every fixture (the largest is 66080 bytes) */

static uint8_t scratch[BIG];

/* ---------------------------------------------------------------- fixtures */

/*
 * Facts about each real capture, from the README's real-captures table
 * (describe.py). These stay the same when capture.sh is re-run; sizes do
 * not (Chromium pads at random), so sizes are taken from the files.
 */
struct real_fact {
    const char *file;
    const char *sni;     /* NULL: no server_name */
    unsigned sid_len;
    int ticket_len;      /* -1: no session_ticket extension */
    unsigned n_psk;
    unsigned psk_len;    /* length of the first identity */
    int tls13;
    const char *alpn;    /* comma-separated, NULL: none */
    unsigned n_ext;
};

#define H "www.example.test"
#define A "h2,http/1.1"
static const struct real_fact real_facts[] = {
    { "openssl_tls12_fresh.bin", H, 0, 0, 0, 0, 0, NULL, 7 },
    { "openssl_tls12_resume_ticket.bin", H, 32, 176, 0, 0, 0, NULL, 7 },
    { "openssl_tls12_resume_sessionid.bin", H, 32, 0, 0, 0, 0, NULL, 7 },
    { "openssl_tls13_fresh.bin", H, 32, 0, 0, 0, 1, NULL, 10 },
    { "openssl_tls13_resume_stateless.bin", H, 32, 0, 1, 208, 1, NULL, 11 },
    { "openssl_tls13_resume_stateful.bin", H, 32, 0, 1, 32, 1, NULL, 11 },
    { "openssl_default_sni.bin", H, 32, 0, 0, 0, 1, NULL, 10 },
    { "openssl_default_resume_stateless.bin", H, 32, 0, 1, 208, 1, NULL, 11 },
    { "openssl_default_nosni.bin", NULL, 32, 0, 0, 0, 1, NULL, 9 },
    { "openssl_default_alpn.bin", H, 32, 0, 0, 0, 1, A, 11 },
    { "curl_default_fresh.bin", H, 32, -1, 0, 0, 1, A, 12 },
    { "curl_default_resume.bin", H, 32, -1, 1, 208, 1, A, 12 },
    { "curl_tls12_fresh.bin", H, 0, -1, 0, 0, 0, A, 7 },
    { "curl_tls12_resume_sessionid.bin", H, 32, -1, 0, 0, 0, A, 7 },
    { "gnutls_default_fresh.bin", H, 32, 0, 0, 0, 1, NULL, 13 },
    { "gnutls_default_resume.bin", H, 32, 0, 1, 208, 1, NULL, 14 },
    { "gnutls_tls12_fresh.bin", H, 0, 0, 0, 0, 0, NULL, 10 },
    { "gnutls_tls12_resume_ticket.bin", H, 32, 176, 0, 0, 0, NULL, 10 },
    { "python_default_fresh.bin", H, 32, 0, 0, 0, 1, NULL, 11 },
    { "python_default_resume.bin", H, 32, 0, 1, 208, 1, NULL, 11 },
    { "python_tls12_fresh.bin", H, 0, 0, 0, 0, 0, NULL, 7 },
    { "python_tls12_resume_ticket.bin", H, 32, 176, 0, 0, 0, NULL, 8 },
    { "chromium_fresh.bin", H, 32, 0, 0, 0, 1, A, 19 },
    { "chromium_resume_stateless.bin", H, 32, 0, 1, 192, 1, A, 20 },
    { "chromium_fresh_2.bin", H, 32, 0, 0, 0, 1, A, 19 },
    { "chromium_resume_stateful.bin", H, 32, 0, 1, 32, 1, A, 20 },
};

/* Verdicts for the hostile variants; EXP_ACCEPT means "returns the file size". */
#define EXP_NEED_MORE 0
#define EXP_ACCEPT 1

struct hostile_fact {
    const char *file;
    int expect;
};

static const struct hostile_fact hostile_facts[] = {
    { "hostile_trunc_record_header.bin", EXP_NEED_MORE },
    { "hostile_trunc_handshake_header.bin", EXP_NEED_MORE },
    { "hostile_trunc_random.bin", EXP_NEED_MORE },
    { "hostile_trunc_session_id.bin", EXP_NEED_MORE },
    { "hostile_trunc_sni.bin", EXP_NEED_MORE },
    { "hostile_trunc_key_share.bin", EXP_NEED_MORE },
    { "hostile_trunc_psk_identity.bin", EXP_NEED_MORE },
    { "hostile_trunc_last_byte.bin", EXP_NEED_MORE },
    { "hostile_split_1byte_records.bin", EXP_ACCEPT },
    { "hostile_split_2records_in_sni.bin", EXP_ACCEPT },
    { "hostile_zero_length_record.bin", CH_E_MALFORMED },
    { "hostile_sslv2_compat.bin", CH_E_NOT_TLS },
    { "hostile_hs_len_exceeds_record.bin", EXP_NEED_MORE },
    { "hostile_hs_len_short.bin", CH_E_MALFORMED },
    { "hostile_sid_len_33.bin", CH_E_MALFORMED },
    { "hostile_sid_len_255.bin", CH_E_MALFORMED },
    { "hostile_cipher_len_odd.bin", CH_E_MALFORMED },
    { "hostile_ext_block_len_short.bin", CH_E_MALFORMED },
    { "hostile_ext_block_len_long.bin", CH_E_MALFORMED },
    { "hostile_sni_list_len_overrun.bin", CH_E_MALFORMED },
    { "hostile_psk_identity_len_overrun.bin", CH_E_MALFORMED },
    { "hostile_ext_len_overflow.bin", CH_E_MALFORMED },
    { "hostile_dup_sni.bin", CH_E_DUPLICATE },
    { "hostile_dup_session_ticket.bin", CH_E_DUPLICATE },
    { "hostile_dup_pre_shared_key.bin", CH_E_DUPLICATE },
    { "hostile_psk_not_last.bin", CH_E_PSK_NOT_LAST },
    { "hostile_padding_64k_max_legal.bin", EXP_ACCEPT },
    { "hostile_padding_65535_ext_block_overflow.bin", CH_E_MALFORMED },
};

static const char *fixture_dir(void)
{
    static char dir[4096];
    const char *env = getenv("FERRY_FIXTURES");
    const char *slash;

    if (env != NULL && env[0] != '\0')
        return env;
    slash = strrchr(__FILE__, '/');
    if (slash != NULL)
        snprintf(dir, sizeof(dir), "%.*s/../../../shared/fixtures/clienthello",
                 (int)(slash - __FILE__), __FILE__);
    else
        snprintf(dir, sizeof(dir), "../../../shared/fixtures/clienthello");
    return dir;
}

/* Reads a fixture (or other file in the fixture dir) whole; fails the test if missing. */
static uint8_t *load(const char *name, size_t *len)
{
    char path[4608];
    FILE *f;
    uint8_t *p;
    long n;

    snprintf(path, sizeof(path), "%s/%s", fixture_dir(), name);
    f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s (set FERRY_FIXTURES)", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    p[n] = '\0';
    *len = (size_t)n;
    return p;
}

static const struct real_fact *find_real(const char *file)
{
    size_t i;

    for (i = 0; i < sizeof(real_facts) / sizeof(real_facts[0]); i++)
        if (strcmp(real_facts[i].file, file) == 0)
            return &real_facts[i];
    return NULL;
}

static const struct hostile_fact *find_hostile(const char *file)
{
    size_t i;

    for (i = 0; i < sizeof(hostile_facts) / sizeof(hostile_facts[0]); i++)
        if (strcmp(hostile_facts[i].file, file) == 0)
            return &hostile_facts[i];
    return NULL;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);

    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Formats the raw ALPN list as "a,b" for comparison. */
static void alpn_str(const struct ch_info *ci, char *out, size_t cap)
{
    size_t p = 0, o = 0;

    out[0] = '\0';
    while (p < ci->alpn_len) {
        size_t l = ci->alpn[p];

        assert_true(p + 1 + l <= ci->alpn_len);
        o += (size_t)snprintf(out + o, cap - o, "%s%.*s", o ? "," : "", (int)l,
                              (const char *)ci->alpn + p + 1);
        assert_true(o < cap);
        p += 1 + l;
    }
}

static int in_scratch(const uint8_t *p, size_t n)
{
    return p >= scratch && p + n <= scratch + sizeof(scratch);
}

static void check_real_facts(const struct real_fact *f, const struct ch_info *ci)
{
    char alpn[256];

    if (f->sni != NULL) {
        assert_true(ci->has_sni);
        assert_string_equal(ci->sni, f->sni);
        assert_int_equal(ci->sni_len, strlen(f->sni));
    } else {
        assert_false(ci->has_sni);
    }
    assert_int_equal(ci->session_id_len, f->sid_len);
    assert_true(in_scratch(ci->session_id, ci->session_id_len));
    assert_true(in_scratch(ci->random, 32));
    if (f->ticket_len < 0) {
        assert_false(ci->has_ticket_ext);
    } else {
        assert_true(ci->has_ticket_ext);
        assert_int_equal(ci->ticket_len, (size_t)f->ticket_len);
    }
    assert_int_equal(ci->has_psk, f->n_psk > 0);
    assert_int_equal(ci->n_psk_ids, f->n_psk);
    if (f->n_psk > 0) {
        assert_int_equal(ci->psk_ids[0].len, f->psk_len);
        assert_true(in_scratch(ci->psk_ids[0].id, ci->psk_ids[0].len));
    }
    assert_int_equal(ci->offers_tls13, f->tls13);
    alpn_str(ci, alpn, sizeof(alpn));
    assert_string_equal(alpn, f->alpn != NULL ? f->alpn : "");
    assert_int_equal(ci->n_extensions, f->n_ext);
    assert_int_equal(ci->legacy_version, 0x0303);
    assert_int_equal(ci->record_version >> 8, 3);
    assert_false(ci->has_early_data);
}

/* Lists the first column of a manifest, one malloc'd string per line. */
static size_t manifest_files(const char *name, char **files, char **rest, size_t cap)
{
    size_t len, n = 0;
    char *text = (char *)load(name, &len), *line, *save = NULL;

    for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        char *tab;

        if (line[0] == '#' || line[0] == '\0')
            continue;
        tab = strchr(line, '\t');
        assert_non_null(tab);
        assert_true(n < cap);
        files[n] = strndup(line, (size_t)(tab - line));
        rest[n] = strdup(tab + 1);
        n++;
    }
    free(text);
    return n;
}

/* Every .bin on disk is in a table, every table entry is on disk and in its manifest. */
static void test_fixture_set_matches_tables(void **state)
{
    char *files[128], *rest[128];
    size_t n, i, n_real = 0, n_hostile = 0;
    DIR *d = opendir(fixture_dir());
    struct dirent *e;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        if (!ends_with(e->d_name, ".bin"))
            continue;
        if (strncmp(e->d_name, "hostile_", 8) == 0) {
            if (find_hostile(e->d_name) == NULL)
                fail_msg("hostile fixture %s has no expected verdict here", e->d_name);
            n_hostile++;
        } else {
            if (find_real(e->d_name) == NULL)
                fail_msg("capture %s has no facts here", e->d_name);
            n_real++;
        }
    }
    closedir(d);
    assert_int_equal(n_real, sizeof(real_facts) / sizeof(real_facts[0]));
    assert_int_equal(n_hostile, sizeof(hostile_facts) / sizeof(hostile_facts[0]));

    n = manifest_files("manifest.tsv", files, rest, 128);
    assert_int_equal(n, n_real);
    for (i = 0; i < n; i++) {
        assert_non_null(find_real(files[i]));
        free(files[i]);
        free(rest[i]);
    }

    /* Our verdict must agree with the manifest's "Expected:" word. */
    n = manifest_files("hostile_manifest.tsv", files, rest, 128);
    assert_int_equal(n, n_hostile);
    for (i = 0; i < n; i++) {
        const struct hostile_fact *h = find_hostile(files[i]);
        const char *exp = strstr(rest[i], "Expected: ");

        assert_non_null(h);
        assert_non_null(exp);
        exp += strlen("Expected: ");
        if (h->expect == EXP_NEED_MORE)
            assert_true(strncmp(exp, "need more", 9) == 0);
        else if (h->expect == EXP_ACCEPT)
            assert_true(strncmp(exp, "accept", 6) == 0);
        else
            assert_true(strncmp(exp, "reject", 6) == 0);
        free(files[i]);
        free(rest[i]);
    }
}

/* Each real capture parses in full to exactly its length, with the facts above. */
static void test_real_captures(void **state)
{
    size_t i;

    for (i = 0; i < sizeof(real_facts) / sizeof(real_facts[0]); i++) {
        struct ch_info ci;
        size_t len;
        uint8_t *data = load(real_facts[i].file, &len);
        int rc = ch_parse(data, len, BIG, scratch, sizeof(scratch), &ci);

        if (rc != (int)len)
            fail_msg("%s: got %d, want %zu", real_facts[i].file, rc, len);
        check_real_facts(&real_facts[i], &ci);
        free(data);
    }
}

/* Every proper prefix of a capture needs more; the whole gives its length. */
static void check_prefixes(const char *file, const uint8_t *data, size_t len)
{
    struct ch_info ci;
    size_t k;

    for (k = 0; k < len; k++) {
        int rc = ch_parse(data, k, BIG, scratch, sizeof(scratch), &ci);

        if (rc != 0)
            fail_msg("%s: prefix of %zu bytes gave %d", file, k, rc);
    }
    assert_int_equal(ch_parse(data, len, len, scratch, sizeof(scratch), &ci), (int)len);
}

static void test_real_prefixes(void **state)
{
    size_t i;

    for (i = 0; i < sizeof(real_facts) / sizeof(real_facts[0]); i++) {
        size_t len;
        uint8_t *data = load(real_facts[i].file, &len);

        check_prefixes(real_facts[i].file, data, len);
        free(data);
    }
}

/*
 * max_bytes one short of the capture, or a scratch one short of the
 * handshake message, is TOO_LARGE, with or without all bytes present.
 */
static void test_real_limits(void **state)
{
    size_t i;

    for (i = 0; i < sizeof(real_facts) / sizeof(real_facts[0]); i++) {
        struct ch_info ci;
        size_t len, hs;
        uint8_t *data = load(real_facts[i].file, &len);

        assert_int_equal(ch_parse(data, len, len - 1, scratch, sizeof(scratch), &ci),
                         CH_E_TOO_LARGE);
        /* The handshake header alone (byte 9) already shows it cannot fit. */
        assert_int_equal(ch_parse(data, 9, len - 1, scratch, sizeof(scratch), &ci),
                         CH_E_TOO_LARGE);

        assert_int_equal(ch_parse(data, len, BIG, scratch, sizeof(scratch), &ci), (int)len);
        hs = 4 + ((size_t)scratch[1] << 16 | (size_t)scratch[2] << 8 | scratch[3]);
        assert_int_equal(ch_parse(data, len, BIG, scratch, hs - 1, &ci), CH_E_TOO_LARGE);
        assert_int_equal(ch_parse(data, len, BIG, scratch, hs, &ci), (int)len);
        assert_int_equal(ch_parse(data, len, BIG, scratch, 3, &ci), CH_E_TOO_LARGE);
        free(data);
    }
}

/* Bytes after the last record (early data, a second flight) are not read. */
static void test_real_followed_by_more(void **state)
{
    static const uint8_t ccs_and_data[] = { 20, 3, 3, 0, 1, 1, 23, 3, 3, 0, 3, 'a', 'b', 'c' };
    size_t len;
    uint8_t *data = load("openssl_tls13_resume_stateless.bin", &len);
    uint8_t *more = malloc(len + sizeof(ccs_and_data));
    struct ch_info ci;

    assert_non_null(more);
    memcpy(more, data, len);
    memcpy(more + len, ccs_and_data, sizeof(ccs_and_data));
    assert_int_equal(ch_parse(more, len + sizeof(ccs_and_data), BIG, scratch, sizeof(scratch), &ci),
                     (int)len);
    /* A max_bytes covering only the ClientHello is enough. */
    assert_int_equal(ch_parse(more, len + sizeof(ccs_and_data), len, scratch, sizeof(scratch), &ci),
                     (int)len);
    free(more);
    free(data);
}

static void test_hostile(void **state)
{
    size_t i;

    for (i = 0; i < sizeof(hostile_facts) / sizeof(hostile_facts[0]); i++) {
        const struct hostile_fact *h = &hostile_facts[i];
        struct ch_info ci;
        size_t len;
        uint8_t *data = load(h->file, &len);
        int rc = ch_parse(data, len, BIG, scratch, sizeof(scratch), &ci);
        int want = h->expect == EXP_ACCEPT ? (int)len : h->expect;

        if (rc != want)
            fail_msg("%s: got %d (%s), want %d", h->file, rc, ch_strerror(rc), want);
        if (rc < 0) {
            /* Nothing half-parsed is left for a careless caller to route on. */
            assert_false(ci.has_sni);
            assert_false(ci.has_psk);
        }
        free(data);
    }
}

/* The split variants carry chromium_resume_stateless's hello unchanged. */
static void test_hostile_splits(void **state)
{
    static const char *const files[] = { "hostile_split_1byte_records.bin",
                                         "hostile_split_2records_in_sni.bin" };
    size_t i;

    for (i = 0; i < 2; i++) {
        struct ch_info ci;
        size_t len;
        uint8_t *data = load(files[i], &len);

        assert_int_equal(ch_parse(data, len, BIG, scratch, sizeof(scratch), &ci), (int)len);
        check_real_facts(find_real("chromium_resume_stateless.bin"), &ci);
        check_prefixes(files[i], data, len);
        /* 2222 one-byte records cost 5 bytes each on top of the message. */
        assert_int_equal(ch_parse(data, len, len - 1, scratch, sizeof(scratch), &ci),
                         CH_E_TOO_LARGE);
        free(data);
    }
}

/* A 64 KiB hello is legal; a switch with a 16 KiB limit refuses it at byte 9. */
static void test_padding_64k(void **state)
{
    struct ch_info ci;
    size_t len;
    uint8_t *data = load("hostile_padding_64k_max_legal.bin", &len);

    assert_int_equal(ch_parse(data, len, BIG, scratch, sizeof(scratch), &ci), (int)len);
    assert_true(ci.has_psk);
    assert_int_equal(ci.psk_ids[0].len, 208);
    assert_string_equal(ci.sni, H);
    assert_int_equal(ch_parse(data, len, 16384, scratch, sizeof(scratch), &ci), CH_E_TOO_LARGE);
    assert_int_equal(ch_parse(data, 9, 16384, scratch, sizeof(scratch), &ci), CH_E_TOO_LARGE);
    assert_int_equal(ch_parse(data, len, BIG, scratch, 16384, &ci), CH_E_TOO_LARGE);
    assert_int_equal(ch_parse(data, 9, BIG, scratch, 16384, &ci), CH_E_TOO_LARGE);
    free(data);
}

/* ------------------------------------------------------- record layer */

static void test_not_tls(void **state)
{
    static const char http[] = "GET / HTTP/1.1\r\nHost: www.example.test\r\n\r\n";
    static const uint8_t ssl3_major_2[] = { 22, 2, 0, 0, 4 };
    static const uint8_t alert[] = { 21, 3, 3, 0, 2, 2, 40 };
    struct ch_info ci;

    assert_int_equal(ch_parse((const uint8_t *)http, strlen(http), BIG, scratch, sizeof(scratch),
                              &ci), CH_E_NOT_TLS);
    /* Decided on the first byte: no need to wait for a record header. */
    assert_int_equal(ch_parse((const uint8_t *)http, 1, BIG, scratch, sizeof(scratch), &ci),
                     CH_E_NOT_TLS);
    assert_int_equal(ch_parse(ssl3_major_2, sizeof(ssl3_major_2), BIG, scratch, sizeof(scratch),
                              &ci), CH_E_NOT_TLS);
    assert_int_equal(ch_parse(alert, sizeof(alert), BIG, scratch, sizeof(scratch), &ci),
                     CH_E_NOT_TLS);
    assert_int_equal(ch_parse(alert, 0, BIG, scratch, sizeof(scratch), &ci), 0);
}

/* Mutations of a real single-record capture at the record layer. */
static void test_record_errors(void **state)
{
    struct ch_info ci;
    size_t len, body;
    uint8_t *data = load("openssl_tls13_fresh.bin", &len);
    uint8_t *two = malloc(len + 5);

    assert_non_null(two);
    body = len - 5;

    /* Not a ClientHello: a ServerHello type, decided at the 6th byte. */
    data[5] = 2;
    assert_int_equal(ch_parse(data, 6, BIG, scratch, sizeof(scratch), &ci), CH_E_NOT_HELLO);
    data[5] = 1;

    /* A record longer than 2^14 is malformed even before it arrives. */
    data[3] = 0x40;
    data[4] = 0x01;
    assert_int_equal(ch_parse(data, 5, BIG, scratch, sizeof(scratch), &ci), CH_E_MALFORMED);
    data[3] = (uint8_t)(body >> 8);
    data[4] = (uint8_t)body;

    /* A handshake length of 2^24-1 is refused at the handshake header. */
    data[6] = data[7] = data[8] = 0xff;
    assert_int_equal(ch_parse(data, 9, BIG, scratch, sizeof(scratch), &ci), CH_E_TOO_LARGE);
    assert_int_equal(ch_parse(data, 9, SIZE_MAX, scratch, sizeof(scratch), &ci), CH_E_TOO_LARGE);

    free(data);
    data = load("openssl_tls13_fresh.bin", &len);

    /* Split in two records after 100 fragment bytes. */
    memcpy(two, data, 5 + 100);
    two[3] = 0;
    two[4] = 100;
    two[105] = 22;
    two[106] = 3;
    two[107] = 3;
    two[108] = (uint8_t)((body - 100) >> 8);
    two[109] = (uint8_t)(body - 100);
    memcpy(two + 110, data + 105, body - 100);
    assert_int_equal(ch_parse(two, len + 5, BIG, scratch, sizeof(scratch), &ci), (int)len + 5);
    assert_string_equal(ci.sni, H);

    /* Another record type before the message completes. */
    two[105] = 23;
    assert_int_equal(ch_parse(two, len + 5, BIG, scratch, sizeof(scratch), &ci), CH_E_MALFORMED);
    assert_int_equal(ch_parse(two, 106, BIG, scratch, sizeof(scratch), &ci), CH_E_MALFORMED);
    two[105] = 22;
    two[106] = 4;
    assert_int_equal(ch_parse(two, 107, BIG, scratch, sizeof(scratch), &ci), CH_E_MALFORMED);
    two[106] = 3;

    /* A zero-length second record. */
    two[108] = two[109] = 0;
    assert_int_equal(ch_parse(two, 110, BIG, scratch, sizeof(scratch), &ci), CH_E_MALFORMED);

    /* Record longer than the message: stray bytes after the ClientHello. */
    data[4] = (uint8_t)(data[4] + 1);
    assert_int_equal(ch_parse(data, len, BIG, scratch, sizeof(scratch), &ci), CH_E_MALFORMED);

    free(two);
    free(data);
}

/* ------------------------------------------------ hand-built ClientHellos */

struct bb {
    uint8_t b[4096];
    size_t n;
};

static void put8(struct bb *b, unsigned v)
{
    assert_true(b->n < sizeof(b->b));
    b->b[b->n++] = (uint8_t)v;
}

static void put16(struct bb *b, unsigned v)
{
    put8(b, v >> 8);
    put8(b, v);
}

static void putn(struct bb *b, const void *p, size_t n)
{
    assert_true(b->n + n <= sizeof(b->b));
    if (n == 0)
        return; /* p may be NULL for an empty extension body */
    memcpy(b->b + b->n, p, n);
    b->n += n;
}

static void putfill(struct bb *b, unsigned v, size_t n)
{
    while (n-- > 0)
        put8(b, v);
}

/* Appends one extension. */
static void ext(struct bb *e, unsigned type, const void *body, size_t n)
{
    put16(e, type);
    put16(e, (unsigned)n);
    putn(e, body, n);
}

/* An SNI extension body with one host_name of n bytes from name. */
static void sni_body(struct bb *s, const void *name, size_t n)
{
    s->n = 0;
    put16(s, (unsigned)n + 3);
    put8(s, 0);
    put16(s, (unsigned)n);
    putn(s, name, n);
}

/*
 * Wraps a ClientHello (type 1) or ServerHello (type 2) body with the given
 * extension block (NULL: no block at all) in a handshake header and one
 * record.
 */
static void hello(struct bb *out, unsigned type, const struct bb *body, const struct bb *exts)
{
    size_t hs = body->n + (exts != NULL ? 2 + exts->n : 0);

    out->n = 0;
    put8(out, 22);
    put16(out, 0x0301);
    put16(out, (unsigned)hs + 4);
    put8(out, type);
    put8(out, 0);
    put16(out, (unsigned)hs);
    putn(out, body->b, body->n);
    if (exts != NULL) {
        put16(out, (unsigned)exts->n);
        putn(out, exts->b, exts->n);
    }
}

/* A plain ClientHello body up to the extensions. */
static void ch_body(struct bb *b)
{
    b->n = 0;
    put16(b, 0x0303);
    putfill(b, 0x11, 32);
    put8(b, 32);
    putfill(b, 0x22, 32);
    put16(b, 4);
    put16(b, 0x1301);
    put16(b, 0x1302);
    put8(b, 1);
    put8(b, 0);
}

static int parse_built(const struct bb *exts, struct ch_info *ci)
{
    struct bb body, msg;

    ch_body(&body);
    hello(&msg, 1, &body, exts);
    return ch_parse(msg.b, msg.n, BIG, scratch, sizeof(scratch), ci);
}

static void test_built_no_extensions(void **state)
{
    struct bb body, msg;
    struct ch_info ci;

    /* TLS 1.2 allows a ClientHello that ends after the compression methods. */
    ch_body(&body);
    hello(&msg, 1, &body, NULL);
    assert_int_equal(ch_parse(msg.b, msg.n, BIG, scratch, sizeof(scratch), &ci), (int)msg.n);
    assert_int_equal(ci.n_extensions, 0);
    assert_false(ci.offers_tls13);
    assert_int_equal(ci.session_id_len, 32);
    assert_int_equal(ci.session_id[0], 0x22);
    assert_int_equal(ci.random[31], 0x11);

    /* One stray byte where the extensions length would start. */
    ch_body(&body);
    put8(&body, 0);
    hello(&msg, 1, &body, NULL);
    assert_int_equal(ch_parse(msg.b, msg.n, BIG, scratch, sizeof(scratch), &ci), CH_E_MALFORMED);

    /* Empty cipher suites, empty compression methods. */
    body.n = 0;
    put16(&body, 0x0303);
    putfill(&body, 0x11, 32);
    put8(&body, 0);
    put16(&body, 0);
    put8(&body, 1);
    put8(&body, 0);
    hello(&msg, 1, &body, NULL);
    assert_int_equal(ch_parse(msg.b, msg.n, BIG, scratch, sizeof(scratch), &ci), CH_E_MALFORMED);
    body.n = 0;
    put16(&body, 0x0303);
    putfill(&body, 0x11, 32);
    put8(&body, 0);
    put16(&body, 2);
    put16(&body, 0x1301);
    put8(&body, 0);
    hello(&msg, 1, &body, NULL);
    assert_int_equal(ch_parse(msg.b, msg.n, BIG, scratch, sizeof(scratch), &ci), CH_E_MALFORMED);

    /* Shorter than legacy_version + random. */
    body.n = 0;
    put16(&body, 0x0303);
    putfill(&body, 0x11, 20);
    hello(&msg, 1, &body, NULL);
    assert_int_equal(ch_parse(msg.b, msg.n, BIG, scratch, sizeof(scratch), &ci), CH_E_MALFORMED);
}

static void test_built_sni(void **state)
{
    char name[300];
    struct bb e, s;
    struct ch_info ci;

    memset(name, 'a', sizeof(name));

    /* 255 bytes is the longest accepted name, 256 is refused. */
    sni_body(&s, name, 255);
    e.n = 0;
    ext(&e, 0, s.b, s.n);
    assert_true(parse_built(&e, &ci) > 0);
    assert_int_equal(ci.sni_len, 255);
    assert_int_equal(strlen(ci.sni), 255);
    sni_body(&s, name, 256);
    e.n = 0;
    ext(&e, 0, s.b, s.n);
    assert_int_equal(parse_built(&e, &ci), CH_E_MALFORMED);

    /* Empty name, embedded NUL. */
    sni_body(&s, name, 0);
    e.n = 0;
    ext(&e, 0, s.b, s.n);
    assert_int_equal(parse_built(&e, &ci), CH_E_MALFORMED);
    sni_body(&s, "evil\0.example.test", 18);
    e.n = 0;
    ext(&e, 0, s.b, s.n);
    assert_int_equal(parse_built(&e, &ci), CH_E_MALFORMED);

    /* Empty list; list length short of the extension. */
    s.n = 0;
    put16(&s, 0);
    e.n = 0;
    ext(&e, 0, s.b, s.n);
    assert_int_equal(parse_built(&e, &ci), CH_E_MALFORMED);
    sni_body(&s, "a.test", 6);
    put8(&s, 0);
    e.n = 0;
    ext(&e, 0, s.b, s.n);
    assert_int_equal(parse_built(&e, &ci), CH_E_MALFORMED);

    /* Two host_name entries in one list. */
    s.n = 0;
    put16(&s, 2 * (3 + 6));
    put8(&s, 0);
    put16(&s, 6);
    putn(&s, "a.test", 6);
    put8(&s, 0);
    put16(&s, 6);
    putn(&s, "b.test", 6);
    e.n = 0;
    ext(&e, 0, s.b, s.n);
    assert_int_equal(parse_built(&e, &ci), CH_E_MALFORMED);

    /* An unknown name type is skipped; the host_name after it is used. */
    s.n = 0;
    put16(&s, 3 + 2 + 3 + 6);
    put8(&s, 7);
    put16(&s, 2);
    put16(&s, 0xbeef);
    put8(&s, 0);
    put16(&s, 6);
    putn(&s, "B.Test", 6);
    e.n = 0;
    ext(&e, 0, s.b, s.n);
    assert_true(parse_built(&e, &ci) > 0);
    assert_true(ci.has_sni);
    assert_string_equal(ci.sni, "B.Test");

    /* Only an unknown name type: no SNI. */
    s.n = 0;
    put16(&s, 3 + 2);
    put8(&s, 7);
    put16(&s, 2);
    put16(&s, 0xbeef);
    e.n = 0;
    ext(&e, 0, s.b, s.n);
    assert_true(parse_built(&e, &ci) > 0);
    assert_false(ci.has_sni);
}

static void test_built_alpn_versions_early_data(void **state)
{
    static const uint8_t alpn_ok[] = { 0, 12, 2, 'h', '2',
                                       8, 'h', 't', 't', 'p', '/', '1', '.', '1' };
    static const uint8_t alpn_empty_name[] = { 0, 4, 2, 'h', '2', 0 };
    static const uint8_t alpn_empty[] = { 0, 0 };
    static const uint8_t vers_12_13[] = { 4, 0x03, 0x03, 0x03, 0x04 };
    static const uint8_t vers_12[] = { 2, 0x03, 0x03 };
    static const uint8_t vers_odd[] = { 3, 0x03, 0x04, 0x03 };
    static const uint8_t one = 0;
    struct bb e;
    struct ch_info ci;

    e.n = 0;
    ext(&e, 16, alpn_ok, sizeof(alpn_ok));
    ext(&e, 43, vers_12_13, sizeof(vers_12_13));
    ext(&e, 42, NULL, 0);
    assert_true(parse_built(&e, &ci) > 0);
    assert_int_equal(ci.alpn_len, sizeof(alpn_ok) - 2);
    assert_memory_equal(ci.alpn, alpn_ok + 2, sizeof(alpn_ok) - 2);
    assert_true(ci.offers_tls13);
    assert_true(ci.has_early_data);
    assert_int_equal(ci.n_extensions, 3);

    e.n = 0;
    ext(&e, 43, vers_12, sizeof(vers_12));
    assert_true(parse_built(&e, &ci) > 0);
    assert_false(ci.offers_tls13);

    e.n = 0;
    ext(&e, 43, vers_odd, sizeof(vers_odd));
    assert_int_equal(parse_built(&e, &ci), CH_E_MALFORMED);
    e.n = 0;
    ext(&e, 16, alpn_empty_name, sizeof(alpn_empty_name));
    assert_int_equal(parse_built(&e, &ci), CH_E_MALFORMED);
    e.n = 0;
    ext(&e, 16, alpn_empty, sizeof(alpn_empty));
    assert_int_equal(parse_built(&e, &ci), CH_E_MALFORMED);
    e.n = 0;
    ext(&e, 42, &one, 1);
    assert_int_equal(parse_built(&e, &ci), CH_E_MALFORMED);

    /* Duplicates of an extension we do not otherwise read. */
    e.n = 0;
    ext(&e, 0x1a1a, NULL, 0);
    ext(&e, 0x1a1a, NULL, 0);
    assert_int_equal(parse_built(&e, &ci), CH_E_DUPLICATE);
    /* An extension header cut short inside the block. */
    e.n = 0;
    ext(&e, 0x1a1a, NULL, 0);
    put16(&e, 5);
    assert_int_equal(parse_built(&e, &ci), CH_E_MALFORMED);
}

/* A pre_shared_key body with n identities of id_len bytes and nb binders of bl bytes. */
static void psk_body(struct bb *p, unsigned n, unsigned id_len, unsigned nb, unsigned bl)
{
    unsigned i;

    p->n = 0;
    put16(p, n * (2 + id_len + 4));
    for (i = 0; i < n; i++) {
        put16(p, id_len);
        putfill(p, 0x30 + i, id_len);
        put16(p, 0x1234);
        put16(p, 0x5678 + i);
    }
    put16(p, nb * (1 + bl));
    for (i = 0; i < nb; i++) {
        put8(p, bl);
        putfill(p, 0xbb, bl);
    }
}

static void test_built_psk(void **state)
{
    struct bb e, p;
    struct ch_info ci;
    unsigned i;

    /* More identities than kept: all counted, the first 8 kept in order. */
    psk_body(&p, 10, 16, 10, 32);
    e.n = 0;
    ext(&e, 35, "tkt", 3);
    ext(&e, 41, p.b, p.n);
    assert_true(parse_built(&e, &ci) > 0);
    assert_true(ci.has_psk);
    assert_int_equal(ci.n_psk_ids, 10);
    for (i = 0; i < CH_MAX_PSK_IDS; i++) {
        assert_int_equal(ci.psk_ids[i].len, 16);
        assert_int_equal(ci.psk_ids[i].id[0], 0x30 + i);
        assert_int_equal(ci.psk_ids[i].obfuscated_age, 0x12345678u + i);
    }
    assert_true(ci.has_ticket_ext);
    assert_int_equal(ci.ticket_len, 3);
    assert_memory_equal(ci.ticket, "tkt", 3);

    /* Binder count differs from the identity count. */
    psk_body(&p, 2, 16, 1, 32);
    e.n = 0;
    ext(&e, 41, p.b, p.n);
    assert_int_equal(parse_built(&e, &ci), CH_E_MALFORMED);
    /* A binder shorter than 32 bytes. */
    psk_body(&p, 1, 16, 1, 31);
    e.n = 0;
    ext(&e, 41, p.b, p.n);
    assert_int_equal(parse_built(&e, &ci), CH_E_MALFORMED);
    /* An empty identity. */
    psk_body(&p, 1, 0, 1, 32);
    e.n = 0;
    ext(&e, 41, p.b, p.n);
    assert_int_equal(parse_built(&e, &ci), CH_E_MALFORMED);
    /* Trailing byte after the binders. */
    psk_body(&p, 1, 16, 1, 32);
    put8(&p, 0);
    e.n = 0;
    ext(&e, 41, p.b, p.n);
    assert_int_equal(parse_built(&e, &ci), CH_E_MALFORMED);
    /* No identities at all. */
    psk_body(&p, 0, 16, 0, 32);
    e.n = 0;
    ext(&e, 41, p.b, p.n);
    assert_int_equal(parse_built(&e, &ci), CH_E_MALFORMED);
    /* Not last, even when followed by an empty extension. */
    psk_body(&p, 1, 16, 1, 32);
    e.n = 0;
    ext(&e, 41, p.b, p.n);
    ext(&e, 21, NULL, 0);
    assert_int_equal(parse_built(&e, &ci), CH_E_PSK_NOT_LAST);
}

/* ------------------------------------------------------------ ServerHello */

static const uint8_t hrr_rand[32] = {
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
};

/* A ServerHello body up to the extensions. */
static void sh_body(struct bb *b, const uint8_t *random, unsigned sid_len, unsigned suite)
{
    b->n = 0;
    put16(b, 0x0303);
    if (random != NULL)
        putn(b, random, 32);
    else
        putfill(b, 0x44, 32);
    put8(b, sid_len);
    putfill(b, 0x22, sid_len);
    put16(b, suite);
    put8(b, 0);
}

static void test_sh_tls12_echo(void **state)
{
    static const uint8_t ems_reneg[] = { 0x00, 0x17, 0, 0, 0xff, 0x01, 0, 1, 0 };
    struct bb body, e, msg;
    struct sh_info si;
    size_t sh_end, k;

    sh_body(&body, NULL, 32, 0xc02f);
    e.n = 0;
    putn(&e, ems_reneg, sizeof(ems_reneg));
    hello(&msg, 2, &body, &e);
    sh_end = msg.n;

    /*
     * The record goes on with a Certificate message, as TLS 1.2 servers
     * send it: the whole record is counted, and waited for.
     */
    put8(&msg, 11);
    put8(&msg, 0);
    put16(&msg, 6);
    put8(&msg, 0);
    put16(&msg, 3);
    putfill(&msg, 0xcc, 3);
    msg.b[3] = (uint8_t)((msg.n - 5) >> 8);
    msg.b[4] = (uint8_t)(msg.n - 5);
    for (k = 0; k < msg.n; k++)
        assert_int_equal(sh_parse(msg.b, k, BIG, scratch, sizeof(scratch), &si), 0);
    assert_int_equal(sh_parse(msg.b, msg.n, BIG, scratch, sizeof(scratch), &si), (int)msg.n);
    assert_true(sh_end < msg.n);
    assert_int_equal(si.version, 0x0303);
    assert_int_equal(si.session_id_len, 32);
    assert_true(in_scratch(si.session_id, 32));
    assert_int_equal(si.session_id[0], 0x22);
    assert_false(si.has_psk);
    assert_false(si.is_hrr);

    /* No extensions at all is a legal TLS 1.2 ServerHello. */
    hello(&msg, 2, &body, NULL);
    assert_int_equal(sh_parse(msg.b, msg.n, BIG, scratch, sizeof(scratch), &si), (int)msg.n);
    assert_int_equal(si.session_id_len, 32);

    /* A ClientHello is not a ServerHello, and vice versa. */
    assert_int_equal(ch_parse(msg.b, msg.n, BIG, scratch, sizeof(scratch), &(struct ch_info){ 0 }),
                     CH_E_NOT_HELLO);
    sh_body(&body, NULL, 33, 0xc02f);
    hello(&msg, 2, &body, NULL);
    assert_int_equal(sh_parse(msg.b, msg.n, BIG, scratch, sizeof(scratch), &si), CH_E_MALFORMED);
    assert_int_equal(sh_parse(msg.b, msg.n, msg.n - 1, scratch, sizeof(scratch), &si),
                     CH_E_TOO_LARGE);
}

static void test_sh_tls13_psk(void **state)
{
    static const uint8_t sv13[] = { 0x03, 0x04 };
    static const uint8_t sv12[] = { 0x03, 0x03 };
    static const uint8_t psk0[] = { 0, 0 };
    static const uint8_t ccs[] = { 20, 3, 3, 0, 1, 1 };
    uint8_t ks[36];
    struct bb body, e, msg;
    struct sh_info si;
    size_t sh_len;

    memset(ks, 0x55, sizeof(ks));
    ks[0] = 0;
    ks[1] = 29;
    ks[2] = 0;
    ks[3] = 32;
    sh_body(&body, NULL, 32, 0x1301);
    e.n = 0;
    ext(&e, 43, sv13, 2);
    ext(&e, 51, ks, sizeof(ks));
    ext(&e, 41, psk0, 2);
    hello(&msg, 2, &body, &e);
    sh_len = msg.n;
    /* The middlebox-compatibility ChangeCipherSpec follows in its own record. */
    putn(&msg, ccs, sizeof(ccs));
    assert_int_equal(sh_parse(msg.b, msg.n, BIG, scratch, sizeof(scratch), &si), (int)sh_len);
    assert_int_equal(si.version, 0x0304);
    assert_true(si.has_psk);
    assert_false(si.is_hrr);
    assert_int_equal(si.session_id_len, 32);

    /* Full handshake: no pre_shared_key. */
    e.n = 0;
    ext(&e, 51, ks, sizeof(ks));
    ext(&e, 43, sv13, 2);
    hello(&msg, 2, &body, &e);
    assert_int_equal(sh_parse(msg.b, msg.n, BIG, scratch, sizeof(scratch), &si), (int)msg.n);
    assert_int_equal(si.version, 0x0304);
    assert_false(si.has_psk);

    /* pre_shared_key without TLS 1.3; supported_versions selecting 1.2. */
    e.n = 0;
    ext(&e, 41, psk0, 2);
    hello(&msg, 2, &body, &e);
    assert_int_equal(sh_parse(msg.b, msg.n, BIG, scratch, sizeof(scratch), &si), CH_E_MALFORMED);
    e.n = 0;
    ext(&e, 43, sv12, 2);
    hello(&msg, 2, &body, &e);
    assert_int_equal(sh_parse(msg.b, msg.n, BIG, scratch, sizeof(scratch), &si), CH_E_MALFORMED);
    /* Duplicate supported_versions. */
    e.n = 0;
    ext(&e, 43, sv13, 2);
    ext(&e, 43, sv13, 2);
    hello(&msg, 2, &body, &e);
    assert_int_equal(sh_parse(msg.b, msg.n, BIG, scratch, sizeof(scratch), &si), CH_E_DUPLICATE);
}

static void test_sh_hrr(void **state)
{
    static const uint8_t sv13[] = { 0x03, 0x04 };
    static const uint8_t ks_group[] = { 0x00, 0x17 };
    static const uint8_t psk0[] = { 0, 0 };
    struct bb body, e, msg;
    struct sh_info si;

    sh_body(&body, hrr_rand, 32, 0x1301);
    e.n = 0;
    ext(&e, 43, sv13, 2);
    ext(&e, 51, ks_group, 2);
    hello(&msg, 2, &body, &e);
    assert_int_equal(sh_parse(msg.b, msg.n, BIG, scratch, sizeof(scratch), &si), (int)msg.n);
    assert_true(si.is_hrr);
    assert_int_equal(si.version, 0x0304);
    assert_false(si.has_psk);

    /* One bit off the special random is an ordinary ServerHello. */
    body.b[2 + 31] ^= 1;
    hello(&msg, 2, &body, &e);
    assert_int_equal(sh_parse(msg.b, msg.n, BIG, scratch, sizeof(scratch), &si), (int)msg.n);
    assert_false(si.is_hrr);
    body.b[2 + 31] ^= 1;

    /* A HelloRetryRequest never resumes and always says TLS 1.3. */
    ext(&e, 41, psk0, 2);
    hello(&msg, 2, &body, &e);
    assert_int_equal(sh_parse(msg.b, msg.n, BIG, scratch, sizeof(scratch), &si), CH_E_MALFORMED);
    e.n = 0;
    ext(&e, 51, ks_group, 2);
    hello(&msg, 2, &body, &e);
    assert_int_equal(sh_parse(msg.b, msg.n, BIG, scratch, sizeof(scratch), &si), CH_E_MALFORMED);
}

static void test_strerror(void **state)
{
    int codes[] = { CH_E_NOT_TLS, CH_E_MALFORMED, CH_E_TOO_LARGE, CH_E_DUPLICATE,
                    CH_E_PSK_NOT_LAST, CH_E_NOT_HELLO };
    size_t i, j;

    for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        assert_non_null(ch_strerror(codes[i]));
        for (j = 0; j < i; j++)
            assert_string_not_equal(ch_strerror(codes[i]), ch_strerror(codes[j]));
    }
    assert_non_null(ch_strerror(-100));
    assert_non_null(ch_strerror(5));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_set_matches_tables),
        cmocka_unit_test(test_real_captures),
        cmocka_unit_test(test_real_prefixes),
        cmocka_unit_test(test_real_limits),
        cmocka_unit_test(test_real_followed_by_more),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_hostile_splits),
        cmocka_unit_test(test_padding_64k),
        cmocka_unit_test(test_not_tls),
        cmocka_unit_test(test_record_errors),
        cmocka_unit_test(test_built_no_extensions),
        cmocka_unit_test(test_built_sni),
        cmocka_unit_test(test_built_alpn_versions_early_data),
        cmocka_unit_test(test_built_psk),
        cmocka_unit_test(test_sh_tls12_echo),
        cmocka_unit_test(test_sh_tls13_psk),
        cmocka_unit_test(test_sh_hrr),
        cmocka_unit_test(test_strerror),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
