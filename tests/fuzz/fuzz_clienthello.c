/*
 * libFuzzer target for src/tls/clienthello.c: feeds each input to ch_parse
 * and sh_parse and aborts when an invariant of their contracts breaks:
 *
 *   - the result is a known code, and a success never exceeds the input
 *     or max_bytes;
 *   - every pointer in the result lies inside the scratch buffer, lengths
 *     agree with the data they describe (SNI, ALPN, PSK identities);
 *   - the reader is stateless and prefix-consistent: every proper prefix
 *     of a complete hello needs more, the exact hello parses to the same
 *     facts with max_bytes equal to its length, one byte less is
 *     TOO_LARGE, and an error stays the same error when bytes are added.
 *
 * Seeds: the ClientHello fixtures plus three hand-built ServerHellos
 * (tests/fuzz/corpus/fuzz_clienthello/).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tls/clienthello.h"

#define LIMIT (1u << 17)

static uint8_t scratch[LIMIT];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int cond)
{
    if (!cond)
        abort();
}

static int in_scratch(const uint8_t *p, size_t n)
{
    return p != NULL && p >= scratch && n <= LIMIT && p + n <= scratch + LIMIT;
}

static void check_ch_info(const struct ch_info *ci)
{
    unsigned i;

    require(ci->session_id_len <= 32);
    require(in_scratch(ci->session_id, ci->session_id_len));
    require(in_scratch(ci->random, 32));
    if (ci->has_sni) {
        require(ci->sni_len >= 1 && ci->sni_len <= CH_MAX_SNI);
        require(strlen(ci->sni) == ci->sni_len);
    } else {
        require(ci->sni_len == 0 && ci->sni[0] == '\0');
    }
    if (ci->alpn_len > 0) {
        size_t p = 0;

        require(in_scratch(ci->alpn, ci->alpn_len));
        while (p < ci->alpn_len) {
            require(ci->alpn[p] != 0);
            p += 1 + (size_t)ci->alpn[p];
        }
        require(p == ci->alpn_len);
    }
    if (ci->has_ticket_ext)
        require(ci->ticket_len == 0 || in_scratch(ci->ticket, ci->ticket_len));
    else
        require(ci->ticket_len == 0);
    require(ci->has_psk == (ci->n_psk_ids > 0));
    for (i = 0; i < ci->n_psk_ids && i < CH_MAX_PSK_IDS; i++)
        require(ci->psk_ids[i].len >= 1 && in_scratch(ci->psk_ids[i].id, ci->psk_ids[i].len));
    /* Each extension takes at least 4 bytes of a block of at most 65535. */
    require(ci->n_extensions <= 65535 / 4);
}

static void fuzz_ch(const uint8_t *data, size_t size)
{
    struct ch_info ci, again;
    int rc = ch_parse(data, size, LIMIT, scratch, sizeof(scratch), &ci);

    require(rc >= CH_E_NOT_HELLO);
    require(ch_strerror(rc) != NULL);
    if (rc > 0) {
        size_t n = (size_t)rc;

        require(n <= size && n <= LIMIT);
        check_ch_info(&ci);
        require(ch_parse(data, n, n, scratch, sizeof(scratch), &again) == rc);
        require(again.has_sni == ci.has_sni && strcmp(again.sni, ci.sni) == 0);
        require(again.session_id_len == ci.session_id_len && again.n_psk_ids == ci.n_psk_ids);
        require(again.offers_tls13 == ci.offers_tls13);
        require(again.n_extensions == ci.n_extensions);
        require(ch_parse(data, n - 1, LIMIT, scratch, sizeof(scratch), &again) == 0);
        require(ch_parse(data, n / 2, LIMIT, scratch, sizeof(scratch), &again) == 0);
        require(ch_parse(data, size, n - 1, scratch, sizeof(scratch), &again) == CH_E_TOO_LARGE);
    } else if (rc == 0) {
        require(ch_parse(data, size / 2, LIMIT, scratch, sizeof(scratch), &again) == 0);
    } else if (size < 4096) {
        /* More bytes cannot cure an error already seen. */
        uint8_t more[4096 + 64];

        memcpy(more, data, size);
        memset(more + size, 0x16, 64);
        require(ch_parse(more, size + 64, LIMIT, scratch, sizeof(scratch), &again) == rc);
    }
}

static void fuzz_sh(const uint8_t *data, size_t size)
{
    struct sh_info si, again;
    int rc = sh_parse(data, size, LIMIT, scratch, sizeof(scratch), &si);

    require(rc >= CH_E_NOT_HELLO);
    if (rc > 0) {
        size_t n = (size_t)rc;

        require(n <= size);
        require(si.session_id_len <= 32 && in_scratch(si.session_id, si.session_id_len));
        require(!(si.is_hrr && si.has_psk));
        require(!si.has_psk || si.version >= 0x0304);
        require(sh_parse(data, n, n, scratch, sizeof(scratch), &again) == rc);
        require(again.version == si.version && again.has_psk == si.has_psk);
        require(again.is_hrr == si.is_hrr && again.session_id_len == si.session_id_len);
        require(sh_parse(data, n - 1, LIMIT, scratch, sizeof(scratch), &again) == 0);
    } else if (rc == 0) {
        require(sh_parse(data, size / 2, LIMIT, scratch, sizeof(scratch), &again) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_ch(data, size);
    fuzz_sh(data, size);
    return 0;
}
