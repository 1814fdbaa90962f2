/*
 * libFuzzer target for the chunked body decoder (http1_chunked_feed in
 * src/http/http1.c).
 *
 * Input layout:
 *   byte 0        low 3 bits + 1: how many piece-size bytes follow (1-8);
 *                 bit 3: small max_line/max_trailer so the limits are hit
 *   next k bytes  piece sizes, used in turn (0 means 1)
 *   rest          the chunked stream
 * The stream is fed in pieces of those sizes, each piece copied into a
 * heap block of exactly its size so ASan sees any read past it. Invariants
 * (abort on violation):
 *   - consumed <= piece length; data, when returned, is non-empty and lies
 *     inside the consumed part of the piece; a "need more" return used the
 *     whole piece;
 *   - once done (2) or failed (<0) the decoder stays so and consumes
 *     nothing more;
 *   - feeding the whole stream at once gives the same verdict, the same
 *     body bytes and the same end position as feeding it in pieces.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)      \
    do {                 \
        if (!(cond))     \
            abort();     \
    } while (0)

struct outcome {
    int rc;        /* last result: 0 (ran out), 2 (done) or an error */
    size_t end_at; /* stream offset where the message ended (rc 2) */
    size_t out_len;
};

static void init(struct http1_chunked *c, int small)
{
    http1_chunked_init(c);
    if (small) {
        c->max_line = 16;
        c->max_trailer = 32;
    }
}

/* Feeds stream[0..len) in pieces; sizes == NULL means all at once. */
static struct outcome decode(const char *stream, size_t len, const uint8_t *sizes, size_t n_sizes,
                             int small, char *out)
{
    struct http1_chunked c;
    struct outcome o = {0, 0, 0};
    size_t pos = 0, turn = 0;

    init(&c, small);
    for (;;) {
        size_t want = sizes != NULL ? sizes[turn++ % n_sizes] : len;
        size_t piece, consumed = (size_t)-1, dlen = 0;
        const char *d = NULL;
        char *copy;
        int rc;

        if (want == 0)
            want = 1;
        piece = want < len - pos ? want : len - pos;
        copy = malloc(piece ? piece : 1);
        CHECK(copy != NULL);
        memcpy(copy, stream + pos, piece);
        rc = http1_chunked_feed(&c, copy, piece, &consumed, &d, &dlen);
        CHECK(consumed <= piece);
        if (rc == 1) {
            CHECK(dlen > 0 && d != NULL);
            CHECK(d >= copy && dlen <= (size_t)(copy + consumed - d));
            memcpy(out + o.out_len, d, dlen);
            o.out_len += dlen;
            CHECK(o.out_len <= len);
        } else if (rc == 0) {
            CHECK(consumed == piece);
        } else if (rc == 2 || rc < 0) {
            size_t again = (size_t)-1;

            CHECK(rc == 2 || rc == HTTP1_E_CHUNK);
            /* The verdict sticks; a finished decoder takes no more bytes. */
            CHECK(http1_chunked_feed(&c, copy, piece, &again, &d, &dlen) == rc);
            if (rc == 2)
                CHECK(again == 0);
        } else {
            abort();
        }
        free(copy);
        pos += consumed;
        if (rc == 2 || rc < 0) {
            o.rc = rc;
            o.end_at = pos;
            return o;
        }
        if (rc == 0 && pos == len) {
            o.rc = 0;
            return o;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t k;
    int small;
    const char *stream;
    size_t len;
    char *out_pieces, *out_whole;
    struct outcome a, b;

    if (size < 1)
        return 0;
    k = (size_t)(data[0] & 7) + 1;
    small = (data[0] & 8) != 0;
    if (size < 1 + k)
        return 0;
    stream = (const char *)data + 1 + k;
    len = size - 1 - k;

    out_pieces = malloc(len + 1);
    out_whole = malloc(len + 1);
    CHECK(out_pieces != NULL && out_whole != NULL);

    a = decode(stream, len, data + 1, k, small, out_pieces);
    b = decode(stream, len, NULL, 0, small, out_whole);

    CHECK(a.rc == b.rc);
    CHECK(a.out_len == b.out_len);
    CHECK(memcmp(out_pieces, out_whole, a.out_len) == 0);
    /* Where the message ended, or the bad byte sits, is the same too. */
    if (a.rc != 0)
        CHECK(a.end_at == b.end_at);

    free(out_pieces);
    free(out_whole);
    return 0;
}
