/*
 * area -- see area.h. The table is a sorted array of disjoint address
 * ranges per family, found by binary search behind a two-level index.
 *
 * Design. Every prefix set, however nested, cuts its address space into
 * at most 2n+1 ranges inside which the longest match is one and the same
 * prefix: a nested prefix splits its parent, and uncovered gaps become
 * ranges with the value AREA_NONE. Such ranges cover the whole space
 * without holes, so a range is stored only as its first address; it ends
 * where the next one starts. Adjacent ranges are merged when both their
 * value and their matched prefix length agree (sibling prefixes with the
 * same value, for instance). Per range the table holds the start (4 bytes
 * for IPv4, 16 for IPv6) and 8 bytes of data: the value, the matched
 * prefix length, and two bytes from which the ECS scope is computed (see
 * below). That is 12 bytes a range for IPv4 and 24 for IPv6, at most
 * 2n+1 ranges, plus an index of at most one 4-byte entry a range (and at
 * most 2^18 + 1 of them) and second-level blocks of about a byte a range,
 * so memory grows with the number of prefixes and nothing else: 27 MB for
 * a million (docs/benchmarks-router.md). The usual alternatives cost more
 * here: a DIR-24-8 array is 64 MiB even for ten prefixes, and a binary or
 * path-compressed trie spends 24-40 bytes a node on pointers, with about
 * 2n nodes, and touches a cache line per level on lookup.
 *
 * Lookup. The index maps up to 18 address bits (fewer for small tables:
 * 2^bits <= ranges) to the range holding the first address of each
 * slice. The bits are those right below the leading bits that all the
 * family's prefixes share: none for a typical IPv4 table, about 4 for
 * IPv6, which the RIRs allocate from 2000::/4. Real tables are lumpy,
 * IPv6 ones most (2001::/16 and 2a00::/12 are crowded, most of the space
 * is empty), so a slice whose ranges span more than 512 bytes of starts
 * gets a second-level block that cuts it into 2^S sub-slices of four to
 * eight ranges on average. A lookup reads one or two index words (or a block entry
 * pair) and binary-searches, branch-free, the few ranges between them.
 * On a million prefixes that is 10 ranges on average for IPv4 and 13 for
 * IPv6 (186 without the second level), and a lookup costs about 60-100 ns
 * for IPv4 and 90-150 ns for IPv6 on the shared test VM, almost all of it
 * cache misses. Nothing is written, so lookups are safe from any number
 * of threads.
 *
 * ECS scope (RFC 7871 section 7.2.1). The answer is the same for the whole
 * run of adjacent ranges with the same value (the prefix length may
 * differ inside it: a resolver caches the answer, not the matched prefix).
 * If that run is [rs, re], the block addr/L lies inside it exactly when it
 * contains neither rs-1 nor re+1, that is when L is greater than the
 * common prefix length (cpl) of addr and rs-1 and of addr and re+1. So the
 * scope is max(cpl(addr, rs-1), cpl(addr, re+1)) + 1, leaving out a side
 * where the run reaches the end of the address space; 0 when the run is
 * everything. It is exact: every shorter block holds rs-1 or re+1, whose
 * value differs. For x <= y <= z, cpl(x, z) = min(cpl(x, y), cpl(y, z)),
 * so with the range [s, e] holding addr inside the run,
 *   cpl(addr, rs-1) = min(cpl(rs-1, s), cpl(s, addr))
 *   cpl(addr, re+1) = min(cpl(addr, e), cpl(e, re+1)),
 * and the table stores the two per-range constants cpl(rs-1, s) and
 * cpl(e, re+1) (255 for "no bound") instead of the run's ends.
 *
 * Build. The builder appends prefixes to a growable array per family and
 * finds duplicates with an open-addressing hash of indices into it, so a
 * re-added prefix overwrites its value in place (the last add wins) and
 * area_builder_count is exact at any time. The hash is seeded at random:
 * area files may come from third-party data. area_builder_finish frees
 * the hash, sorts each family by (start, length) with an LSD radix sort
 * (stable, O(n) passes, digits that are the same for every prefix are
 * skipped), then sweeps the sorted prefixes once with a stack of the open
 * enclosing prefixes (at most width+1 deep, since nested prefixes have
 * strictly growing lengths), emitting ranges. The sweep runs twice: once
 * to count the ranges, so the final arrays are allocated at their exact
 * size, and once to fill them. Linear passes then fill in the index,
 * the second-level blocks and the scope bytes. At a million prefixes the
 * build takes about 0.4 s, and the builder peaks at about 30 MB above the
 * caller's own data.
 *
 * Memory runs out in the builder and in finish as an error, not a fatal
 * one (as area.h promises): a router reloading a large area file keeps
 * its old table when the new one cannot be built.
 */
#include "router/area.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Each family holds fewer prefixes than this, so range and record
 * indices (at most 2n+1) fit in 32 bits. */
#define AREA_MAX_PREFIXES (UINT32_C(1) << 30)
#define INDEX_BITS_MAX 18
/* A slice whose ranges' starts span more bytes than this gets a second
 * level of index; its sub-slices hold four to eight ranges on average. */
#define REFINE_BYTES 512
#define SUB_BITS_MAX 16
#define CPL_NONE 0xffu /* scope byte: the value run reaches the end of the space */

/* Layout of a range's data word. */
#define INFO_PLEN_SHIFT 32
#define INFO_LO_SHIFT 40
#define INFO_HI_SHIFT 48

/* A prefix in the builder. `start` has the bits past plen cleared. */
struct rec4 {
    uint32_t start;
    uint32_t value;
    uint8_t plen;
};

struct rec6 {
    uint64_t hi, lo; /* start, most significant half first */
    uint32_t value;
    uint8_t plen;
};

struct fam_builder {
    unsigned width;      /* 32 or 128 */
    void *recs;          /* owned; struct rec4 or rec6 [cap] */
    size_t n, cap;
    uint32_t *slots;     /* owned; hash of record index + 1, 0 = free */
    size_t nslots;       /* power of two, or 0 */
};

struct area_builder {
    struct fam_builder v4, v6;
    uint64_t seed;
};

/*
 * A first-level index entry is the number of the range holding the first
 * address of its slice, or, with IDX_SUB set, where the slice's
 * second-level block starts in `sub`. A block is S, then 2^S + 1 range
 * numbers: the range holding the first address of each of the 2^S
 * sub-slices, and of the next slice. Range numbers are below 2^31, since
 * a family has fewer than 2^30 prefixes.
 */
#define IDX_SUB UINT32_C(0x80000000)

struct fam_table {
    unsigned width;
    size_t nprefixes;
    size_t nranges;                /* >= 1: the ranges cover the whole space */
    uint32_t *keys4;               /* owned; range starts, IPv4 */
    unsigned __int128 *keys6;      /* owned; range starts, IPv6 */
    uint64_t *info;                /* owned; value | plen | cpl lo | cpl hi */
    uint32_t *index;               /* owned; [(1 << index_bits) + 1] */
    uint32_t *sub;                 /* owned; second-level blocks, [nsub]; sub[0] unused */
    size_t nsub;
    unsigned index_bits, index_shift;
    unsigned __int128 base_lo, base_hi; /* the slice of the space the index covers */
};

struct area_table {
    struct fam_table v4, v6;
    size_t memory;
};

/* ---- bit helpers ---- */

static unsigned __int128 space_max(unsigned width)
{
    return width == 32 ? (unsigned __int128)UINT32_MAX : ~(unsigned __int128)0;
}

/* The host bits of a prefix of length plen: all ones past plen. */
static unsigned __int128 host_mask(unsigned width, unsigned plen)
{
    return plen >= width ? 0 : space_max(width) >> plen;
}

/* Common leading bits of a and b, both below 2^width. */
static unsigned cpl128(unsigned width, unsigned __int128 a, unsigned __int128 b)
{
    unsigned __int128 x = a ^ b;
    uint64_t hi = (uint64_t)(x >> 64), lo = (uint64_t)x;
    unsigned z;
    if (hi)
        z = (unsigned)__builtin_clzll(hi);
    else if (lo)
        z = 64 + (unsigned)__builtin_clzll(lo);
    else
        z = 128;
    return z - (128 - width);
}

static unsigned cpl32(uint32_t a, uint32_t b)
{
    uint32_t x = a ^ b;
    return x ? (unsigned)__builtin_clz(x) : 32;
}

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static unsigned __int128 load6(const uint8_t a[16])
{
    unsigned __int128 k = 0;
    for (int i = 0; i < 16; i++)
        k = k << 8 | a[i];
    return k;
}

static uint32_t load4(const uint8_t a[4])
{
    return (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 | a[3];
}

/* ---- builder ---- */

static size_t rec_size(const struct fam_builder *fb)
{
    return fb->width == 32 ? sizeof(struct rec4) : sizeof(struct rec6);
}

static void fam_builder_fini(struct fam_builder *fb)
{
    free(fb->recs);
    free(fb->slots);
    fb->recs = NULL;
    fb->slots = NULL;
    fb->n = fb->cap = fb->nslots = 0;
}

static uint64_t rec_hash(const struct area_builder *b, const struct fam_builder *fb, size_t i)
{
    if (fb->width == 32) {
        const struct rec4 *r = (const struct rec4 *)fb->recs + i;
        return mix64(((uint64_t)r->start << 8 | r->plen) ^ b->seed);
    }
    const struct rec6 *r = (const struct rec6 *)fb->recs + i;
    return mix64(mix64(mix64(r->lo ^ b->seed) ^ r->hi) ^ r->plen);
}

/* Doubles the hash (or creates it) and reinserts every record. */
static int grow_slots(struct area_builder *b, struct fam_builder *fb)
{
    size_t nslots = fb->nslots ? fb->nslots * 2 : 1024;
    uint32_t *slots = calloc(nslots, sizeof(*slots));
    if (slots == NULL)
        return -1;
    for (size_t i = 0; i < fb->n; i++) {
        size_t s = (size_t)rec_hash(b, fb, i) & (nslots - 1);
        while (slots[s])
            s = (s + 1) & (nslots - 1);
        slots[s] = (uint32_t)(i + 1);
    }
    free(fb->slots);
    fb->slots = slots;
    fb->nslots = nslots;
    return 0;
}

struct area_builder *area_builder_new(void)
{
    struct area_builder *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->v4.width = 32;
    b->v6.width = 128;
    /* The seed only spreads the hash; without randomness the builder still
     * works, only chosen prefixes could then collide on purpose. */
    if (getrandom(&b->seed, sizeof(b->seed), GRND_NONBLOCK) != (ssize_t)sizeof(b->seed)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        b->seed = mix64((uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 32 ^ (uint64_t)(uintptr_t)b);
    }
    return b;
}

int area_builder_add(struct area_builder *b, int family, const uint8_t *addr, unsigned plen,
                     uint32_t value)
{
    if (b == NULL || addr == NULL || value == AREA_NONE || (family != 4 && family != 6))
        return -1;
    struct fam_builder *fb = family == 4 ? &b->v4 : &b->v6;
    if (plen > fb->width)
        return -1;
    /* Keep the hash at most half full; grow it before probing, so the free
     * slot found below is the one the record goes into. */
    if ((fb->n + 1) * 2 > fb->nslots && grow_slots(b, fb) < 0)
        return -1;

    /* The candidate record goes into the spare place at the end of the
     * array (made first), is hashed and compared there, and is kept only
     * when it is new. */
    if (fb->n == fb->cap) {
        if (fb->n >= AREA_MAX_PREFIXES)
            return -1;
        size_t cap = fb->cap ? fb->cap * 2 : 256;
        if (cap > SIZE_MAX / rec_size(fb))
            return -1;
        void *recs = realloc(fb->recs, cap * rec_size(fb));
        if (recs == NULL)
            return -1;
        fb->recs = recs;
        fb->cap = cap;
    }
    size_t n = fb->n;
    if (family == 4) {
        struct rec4 *r = (struct rec4 *)fb->recs + n;
        memset(r, 0, sizeof(*r));
        r->start = load4(addr) & ~(uint32_t)host_mask(32, plen);
        r->value = value;
        r->plen = (uint8_t)plen;
    } else {
        struct rec6 *r = (struct rec6 *)fb->recs + n;
        memset(r, 0, sizeof(*r));
        unsigned __int128 k = load6(addr) & ~host_mask(128, plen);
        r->hi = (uint64_t)(k >> 64);
        r->lo = (uint64_t)k;
        r->value = value;
        r->plen = (uint8_t)plen;
    }

    size_t mask = fb->nslots - 1;
    size_t s = (size_t)rec_hash(b, fb, n) & mask;
    for (; fb->slots[s]; s = (s + 1) & mask) {
        size_t i = fb->slots[s] - 1;
        if (family == 4) {
            struct rec4 *r = fb->recs, *old = &r[i], *cand = &r[n];
            if (old->start == cand->start && old->plen == cand->plen) {
                old->value = value;
                return 0;
            }
        } else {
            struct rec6 *r = fb->recs, *old = &r[i], *cand = &r[n];
            if (old->hi == cand->hi && old->lo == cand->lo && old->plen == cand->plen) {
                old->value = value;
                return 0;
            }
        }
    }
    fb->slots[s] = (uint32_t)(n + 1);
    fb->n = n + 1;
    return 0;
}

size_t area_builder_count(const struct area_builder *b)
{
    return b ? b->v4.n + b->v6.n : 0;
}

void area_builder_free(struct area_builder *b)
{
    if (b == NULL)
        return;
    fam_builder_fini(&b->v4);
    fam_builder_fini(&b->v6);
    free(b);
}

/* ---- sorting ---- */

/* Digit d (0 = least significant) of the sort key (start, plen). */
static unsigned digit4(const struct rec4 *r, unsigned d)
{
    return d == 0 ? r->plen : (r->start >> (8 * (d - 1))) & 0xff;
}

static unsigned digit6(const struct rec6 *r, unsigned d)
{
    if (d == 0)
        return r->plen;
    if (d <= 8)
        return (unsigned)(r->lo >> (8 * (d - 1))) & 0xff;
    return (unsigned)(r->hi >> (8 * (d - 9))) & 0xff;
}

/*
 * Sorts the records by (start, plen), least significant byte first. One
 * read pass counts every digit; a digit whose count puts all records in
 * one bucket needs no pass. Returns 0, or -1 when memory runs out (the
 * records are then unchanged).
 */
static int sort_recs(struct fam_builder *fb)
{
    size_t n = fb->n, rs = rec_size(fb);
    unsigned ndigits = fb->width == 32 ? 5 : 17;
    if (n < 2)
        return 0;
    size_t (*count)[256] = calloc(ndigits, sizeof(*count));
    void *tmp = malloc(n * rs);
    if (count == NULL || tmp == NULL) {
        free(count);
        free(tmp);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        for (unsigned d = 0; d < ndigits; d++) {
            if (fb->width == 32)
                count[d][digit4((const struct rec4 *)fb->recs + i, d)]++;
            else
                count[d][digit6((const struct rec6 *)fb->recs + i, d)]++;
        }
    void *src = fb->recs, *dst = tmp;
    for (unsigned d = 0; d < ndigits; d++) {
        size_t pos[256], sum = 0;
        bool trivial = false;
        for (unsigned v = 0; v < 256; v++) {
            if (count[d][v] == n)
                trivial = true;
            pos[v] = sum;
            sum += count[d][v];
        }
        if (trivial)
            continue;
        if (fb->width == 32) {
            const struct rec4 *s = src;
            struct rec4 *t = dst;
            for (size_t i = 0; i < n; i++)
                t[pos[digit4(&s[i], d)]++] = s[i];
        } else {
            const struct rec6 *s = src;
            struct rec6 *t = dst;
            for (size_t i = 0; i < n; i++)
                t[pos[digit6(&s[i], d)]++] = s[i];
        }
        void *x = src;
        src = dst;
        dst = x;
    }
    /* After an odd number of passes the sorted records are in tmp. */
    fb->recs = src;
    fb->cap = n;
    free(dst);
    free(count);
    return 0;
}

/* ---- the range sweep ---- */

struct sweep {
    struct fam_table *ft;
    bool fill;                  /* write the ranges, or only count them */
    size_t n;
    uint32_t last_value;
    unsigned last_plen;
};

static void emit(struct sweep *sw, unsigned __int128 start, uint32_t value, unsigned plen)
{
    if (sw->n > 0 && sw->last_value == value && sw->last_plen == plen)
        return;
    sw->last_value = value;
    sw->last_plen = plen;
    if (sw->fill) {
        struct fam_table *ft = sw->ft;
        if (ft->width == 32)
            ft->keys4[sw->n] = (uint32_t)start;
        else
            ft->keys6[sw->n] = start;
        ft->info[sw->n] = value | (uint64_t)plen << INFO_PLEN_SHIFT;
    }
    sw->n++;
}

static void rec_get(const struct fam_builder *fb, size_t i, unsigned __int128 *start,
                    unsigned *plen, uint32_t *value)
{
    if (fb->width == 32) {
        const struct rec4 *r = (const struct rec4 *)fb->recs + i;
        *start = r->start;
        *plen = r->plen;
        *value = r->value;
    } else {
        const struct rec6 *r = (const struct rec6 *)fb->recs + i;
        *start = (unsigned __int128)r->hi << 64 | r->lo;
        *plen = r->plen;
        *value = r->value;
    }
}

/*
 * Turns the sorted, duplicate-free prefixes into ranges (see the top of
 * the file). The stack holds the prefixes that contain `pos`, the first
 * address not yet emitted, outermost first. Returns the number of ranges.
 */
static size_t sweep(const struct fam_builder *fb, struct fam_table *ft, bool fill)
{
    struct {
        unsigned __int128 end;
        uint32_t value;
        unsigned plen;
    } stack[129];
    unsigned sp = 0;
    unsigned __int128 pos = 0, max = space_max(fb->width);
    bool done = false; /* everything up to max is emitted */
    struct sweep sw = {.ft = ft, .fill = fill};

    for (size_t i = 0; i < fb->n; i++) {
        unsigned __int128 start;
        unsigned plen;
        uint32_t value;
        rec_get(fb, i, &start, &plen, &value);
        /* Close the prefixes that end before this one starts; what is left
         * on the stack contains it (prefixes nest or are disjoint). */
        while (sp > 0 && stack[sp - 1].end < start) {
            if (pos <= stack[sp - 1].end)
                emit(&sw, pos, stack[sp - 1].value, stack[sp - 1].plen);
            pos = stack[sp - 1].end + 1; /* < start <= max: no wrap */
            sp--;
        }
        if (pos < start) {
            if (sp > 0)
                emit(&sw, pos, stack[sp - 1].value, stack[sp - 1].plen);
            else
                emit(&sw, pos, AREA_NONE, 0);
            pos = start;
        }
        /* Lengths grow strictly up the stack, so it holds at most
         * width + 1 entries. */
        stack[sp].end = start | host_mask(fb->width, plen);
        stack[sp].value = value;
        stack[sp].plen = plen;
        sp++;
    }
    while (sp > 0) {
        if (!done && pos <= stack[sp - 1].end) {
            emit(&sw, pos, stack[sp - 1].value, stack[sp - 1].plen);
        }
        if (stack[sp - 1].end == max)
            done = true;
        else if (!done)
            pos = stack[sp - 1].end + 1;
        sp--;
    }
    if (!done)
        emit(&sw, pos, AREA_NONE, 0);
    return sw.n;
}

static unsigned __int128 range_start(const struct fam_table *ft, size_t i)
{
    return ft->width == 32 ? ft->keys4[i] : ft->keys6[i];
}

/* Fills in the two scope bytes of every range (see the top of the file). */
static void fill_scope(struct fam_table *ft)
{
    size_t n = ft->nranges;
    size_t run = 0; /* first range of the current run of equal values */
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && (uint32_t)ft->info[i] != (uint32_t)ft->info[i - 1])
            run = i;
        uint64_t lo = CPL_NONE;
        if (run > 0)
            lo = cpl128(ft->width, range_start(ft, run) - 1, range_start(ft, i));
        ft->info[i] |= lo << INFO_LO_SHIFT;
    }
    size_t next = 0; /* first range of the next run, 0 for none */
    for (size_t i = n; i-- > 0;) {
        if (i + 1 < n && (uint32_t)ft->info[i] != (uint32_t)ft->info[i + 1])
            next = i + 1;
        uint64_t hi = CPL_NONE;
        if (next > 0)
            hi = cpl128(ft->width, range_start(ft, i + 1) - 1, range_start(ft, next));
        ft->info[i] |= hi << INFO_HI_SHIFT;
    }
}

/* Builds the first-level index over the slice base_lo..base_hi. */
static void fill_index(struct fam_table *ft)
{
    size_t nb = (size_t)1 << ft->index_bits, r = 0;
    for (size_t h = 0; h < nb; h++) {
        unsigned __int128 a = ft->base_lo + ((unsigned __int128)h << ft->index_shift);
        while (r + 1 < ft->nranges && range_start(ft, r + 1) <= a)
            r++;
        ft->index[h] = (uint32_t)r;
    }
    ft->index[nb] = (uint32_t)(ft->nranges - 1);
}

/* The range holding the first address of slice h. */
static uint32_t slice_range(const struct fam_table *ft, size_t h)
{
    uint32_t e = ft->index[h];
    return e & IDX_SUB ? ft->sub[(e & ~IDX_SUB) + 1] : e;
}

/* The sub-slice bits for slice h: 0 when the slice is small enough to
 * search as it is. 2^S is at most a quarter of the slice's ranges, so the
 * blocks take at most about one byte a range. */
static unsigned sub_bits(const struct fam_table *ft, size_t h)
{
    /* Slice h is not refined yet; h + 1 may be (fill_sub goes backwards). */
    size_t m = slice_range(ft, h + 1) - ft->index[h] + 1;
    size_t key = ft->width == 32 ? sizeof(*ft->keys4) : sizeof(*ft->keys6);
    if (m * key <= REFINE_BYTES || ft->index_shift == 0)
        return 0;
    unsigned bits = 0;
    while (((size_t)8 << bits) <= m)
        bits++;
    if (bits > ft->index_shift)
        bits = ft->index_shift;
    return bits > SUB_BITS_MAX ? SUB_BITS_MAX : bits;
}

/* Builds the second-level blocks of the crowded slices, from the last
 * slice to the first, so that each slice's plain entry is read before it
 * is replaced, and its successor's range through slice_range. Returns 0,
 * or -1 when memory runs out. */
static int fill_sub(struct fam_table *ft)
{
    size_t nb = (size_t)1 << ft->index_bits, total = 1;
    for (size_t h = 0; h < nb; h++) {
        unsigned bits = sub_bits(ft, h);
        if (bits)
            total += ((size_t)1 << bits) + 2;
    }
    if (total == 1)
        return 0;
    ft->sub = malloc(total * sizeof(*ft->sub));
    if (ft->sub == NULL)
        return -1;
    ft->nsub = total;
    ft->sub[0] = 0;
    size_t off = total;
    for (size_t h = nb; h-- > 0;) {
        unsigned bits = sub_bits(ft, h);
        if (bits == 0)
            continue;
        size_t ns = (size_t)1 << bits, r = ft->index[h];
        off -= ns + 2;
        unsigned sshift = ft->index_shift - bits;
        unsigned __int128 a0 = ft->base_lo + ((unsigned __int128)h << ft->index_shift);
        uint32_t *blk = ft->sub + off;
        blk[0] = bits;
        for (size_t j = 0; j < ns; j++) {
            unsigned __int128 a = a0 + ((unsigned __int128)j << sshift);
            while (r + 1 < ft->nranges && range_start(ft, r + 1) <= a)
                r++;
            blk[1 + j] = (uint32_t)r;
        }
        blk[1 + ns] = slice_range(ft, h + 1);
        ft->index[h] = IDX_SUB | (uint32_t)off;
    }
    return 0;
}

static void fam_table_fini(struct fam_table *ft)
{
    free(ft->keys4);
    free(ft->keys6);
    free(ft->info);
    free(ft->index);
    free(ft->sub);
}

/* Builds one family's table from its builder, which it empties. */
static int fam_table_build(struct fam_table *ft, struct fam_builder *fb)
{
    unsigned w = fb->width;
    ft->width = w;
    ft->nprefixes = fb->n;
    free(fb->slots);
    fb->slots = NULL;
    fb->nslots = 0;
    if (sort_recs(fb) < 0)
        return -1;

    size_t n = sweep(fb, ft, false);
    ft->nranges = n;
    if (w == 32)
        ft->keys4 = malloc(n * sizeof(*ft->keys4));
    else
        ft->keys6 = malloc(n * sizeof(*ft->keys6));
    ft->info = malloc(n * sizeof(*ft->info));
    if ((ft->keys4 == NULL && ft->keys6 == NULL) || ft->info == NULL)
        return -1;
    sweep(fb, ft, true);

    /* The index covers the addresses between the first prefix and the end
     * of the last one, widened to the prefix they share. Addresses below
     * it are in the first range (the gap before the first prefix), those
     * above it in the last (the gap after the last prefix). */
    unsigned c = 0;
    if (fb->n > 0) {
        unsigned __int128 first, last;
        unsigned plen;
        uint32_t v;
        rec_get(fb, 0, &first, &plen, &v);
        /* The last range that is not a trailing gap ends the last prefix. */
        size_t k = n - 1;
        if ((uint32_t)ft->info[k] == AREA_NONE && k > 0)
            k--;
        last = k + 1 < n ? range_start(ft, k + 1) - 1 : space_max(w);
        c = cpl128(w, first, last);
        ft->base_lo = first & ~host_mask(w, c);
    }
    ft->base_hi = ft->base_lo | host_mask(w, c);
    /* At most one index entry a range (2^bits <= n), and at least one bit
     * when there is a bit to index. */
    unsigned bits = 0;
    if (c < w) {
        while (bits < INDEX_BITS_MAX && bits < w - c && ((size_t)2 << bits) <= n)
            bits++;
        if (bits == 0)
            bits = 1;
    }
    ft->index_bits = bits;
    ft->index_shift = w - c - bits;
    ft->index = malloc((((size_t)1 << bits) + 1) * sizeof(*ft->index));
    if (ft->index == NULL)
        return -1;
    fill_index(ft);
    if (fill_sub(ft) < 0)
        return -1;
    fill_scope(ft);

    free(fb->recs);
    fb->recs = NULL;
    fb->n = fb->cap = 0;
    return 0;
}

static size_t fam_table_memory(const struct fam_table *ft)
{
    size_t key = ft->width == 32 ? sizeof(*ft->keys4) : sizeof(*ft->keys6);
    return ft->nranges * (key + sizeof(*ft->info)) +
           (((size_t)1 << ft->index_bits) + 1) * sizeof(*ft->index) +
           ft->nsub * sizeof(*ft->sub);
}

struct area_table *area_builder_finish(struct area_builder *b)
{
    if (b == NULL)
        return NULL;
    struct area_table *t = calloc(1, sizeof(*t));
    if (t == NULL)
        goto fail;
    if (fam_table_build(&t->v4, &b->v4) < 0 || fam_table_build(&t->v6, &b->v6) < 0)
        goto fail;
    t->memory = sizeof(*t) + fam_table_memory(&t->v4) + fam_table_memory(&t->v6);
    area_builder_free(b);
    return t;
fail:
    area_table_free(t);
    area_builder_free(b);
    return NULL;
}

void area_table_free(struct area_table *t)
{
    if (t == NULL)
        return;
    fam_table_fini(&t->v4);
    fam_table_fini(&t->v6);
    free(t);
}

size_t area_table_count(const struct area_table *t, int family)
{
    if (t == NULL)
        return 0;
    return family == 4 ? t->v4.nprefixes : family == 6 ? t->v6.nprefixes : 0;
}

size_t area_table_memory(const struct area_table *t)
{
    return t ? t->memory : 0;
}

/* ---- lookup ---- */

/* The scope of an address inside range i, from the range's data word:
 * cpl_s is cpl(start of range, addr), cpl_e is cpl(addr, end of range). */
static unsigned scope_of(uint64_t info, unsigned cpl_s, unsigned cpl_e)
{
    unsigned lo = (unsigned)(info >> INFO_LO_SHIFT) & 0xff;
    unsigned hi = (unsigned)(info >> INFO_HI_SHIFT) & 0xff;
    unsigned s = 0;
    if (lo != CPL_NONE)
        s = (lo < cpl_s ? lo : cpl_s) + 1;
    if (hi != CPL_NONE) {
        unsigned s2 = (hi < cpl_e ? hi : cpl_e) + 1;
        if (s2 > s)
            s = s2;
    }
    return s;
}

/* The range of the v4 table holding k (the last start <= k). */
static size_t find4(const struct fam_table *ft, uint32_t k)
{
    size_t lo, hi;
    /* Below the indexed slice is the gap before the first prefix, above
     * it the gap after the last. */
    if (k < (uint32_t)ft->base_lo) {
        lo = hi = 0;
    } else if (k > (uint32_t)ft->base_hi) {
        lo = hi = ft->nranges - 1;
    } else {
        uint32_t off = k - (uint32_t)ft->base_lo;
        size_t h = off >> ft->index_shift;
        uint32_t e = ft->index[h];
        if (e & IDX_SUB) {
            const uint32_t *blk = ft->sub + (e & ~IDX_SUB);
            size_t j = (off >> (ft->index_shift - blk[0])) & (((size_t)1 << blk[0]) - 1);
            lo = blk[1 + j];
            hi = blk[2 + j];
        } else {
            lo = e;
            hi = slice_range(ft, h + 1);
        }
    }
    /* keys4[lo] <= k; find the last start <= k in [lo, hi]. */
    const uint32_t *keys = ft->keys4;
    size_t n = hi - lo + 1;
    while (n > 1) {
        size_t half = n / 2;
        lo = keys[lo + half] <= k ? lo + half : lo;
        n -= half;
    }
    return lo;
}

static size_t find6(const struct fam_table *ft, unsigned __int128 k)
{
    size_t lo, hi;
    if (k < ft->base_lo) {
        lo = hi = 0;
    } else if (k > ft->base_hi) {
        lo = hi = ft->nranges - 1;
    } else {
        unsigned __int128 off = k - ft->base_lo;
        size_t h = (size_t)(off >> ft->index_shift);
        uint32_t e = ft->index[h];
        if (e & IDX_SUB) {
            const uint32_t *blk = ft->sub + (e & ~IDX_SUB);
            size_t j = (size_t)(off >> (ft->index_shift - blk[0])) & (((size_t)1 << blk[0]) - 1);
            lo = blk[1 + j];
            hi = blk[2 + j];
        } else {
            lo = e;
            hi = slice_range(ft, h + 1);
        }
    }
    const unsigned __int128 *keys = ft->keys6;
    size_t n = hi - lo + 1;
    while (n > 1) {
        size_t half = n / 2;
        lo = keys[lo + half] <= k ? lo + half : lo;
        n -= half;
    }
    return lo;
}

/*
 * The strict scope of k inside range i: the block k/L lies inside the
 * range [s, e] exactly when it holds neither s-1 nor e+1, so the scope is
 * max(cpl(k, s-1), cpl(k, e+1)) + 1, leaving out a side at the end of the
 * space. Ranges cover the space from address 0, so range 0 starts there.
 */
static unsigned strict_scope4(const struct fam_table *ft, size_t i, uint32_t k)
{
    unsigned s = 0;
    if (i > 0)
        s = cpl32(k, ft->keys4[i] - 1) + 1;
    if (i + 1 < ft->nranges) {
        unsigned s2 = cpl32(k, ft->keys4[i + 1]) + 1;
        if (s2 > s)
            s = s2;
    }
    return s;
}

static unsigned strict_scope6(const struct fam_table *ft, size_t i, unsigned __int128 k)
{
    unsigned s = 0;
    if (i > 0)
        s = cpl128(128, k, ft->keys6[i] - 1) + 1;
    if (i + 1 < ft->nranges) {
        unsigned s2 = cpl128(128, k, ft->keys6[i + 1]) + 1;
        if (s2 > s)
            s = s2;
    }
    return s;
}

static uint32_t lookup4(const struct area_table *t, const uint8_t addr4[4], unsigned *scope,
                        unsigned *plen, int strict)
{
    if (t == NULL) {
        if (scope)
            *scope = 0;
        if (plen)
            *plen = 0;
        return AREA_NONE;
    }
    const struct fam_table *ft = &t->v4;
    uint32_t k = load4(addr4);
    size_t lo = find4(ft, k);
    uint64_t info = ft->info[lo];
    if (plen)
        *plen = (unsigned)(info >> INFO_PLEN_SHIFT) & 0xff;
    if (scope && strict) {
        *scope = strict_scope4(ft, lo, k);
    } else if (scope) {
        const uint32_t *keys = ft->keys4;
        uint32_t end = lo + 1 < ft->nranges ? keys[lo + 1] - 1 : UINT32_MAX;
        *scope = scope_of(info, cpl32(keys[lo], k), cpl32(k, end));
    }
    return (uint32_t)info;
}

static uint32_t lookup6(const struct area_table *t, const uint8_t addr6[16], unsigned *scope,
                        unsigned *plen, int strict)
{
    if (t == NULL) {
        if (scope)
            *scope = 0;
        if (plen)
            *plen = 0;
        return AREA_NONE;
    }
    const struct fam_table *ft = &t->v6;
    unsigned __int128 k = load6(addr6);
    size_t lo = find6(ft, k);
    uint64_t info = ft->info[lo];
    if (plen)
        *plen = (unsigned)(info >> INFO_PLEN_SHIFT) & 0xff;
    if (scope && strict) {
        *scope = strict_scope6(ft, lo, k);
    } else if (scope) {
        const unsigned __int128 *keys = ft->keys6;
        unsigned __int128 end = lo + 1 < ft->nranges ? keys[lo + 1] - 1 : ~(unsigned __int128)0;
        *scope = scope_of(info, cpl128(128, keys[lo], k), cpl128(128, k, end));
    }
    return (uint32_t)info;
}

uint32_t area_lookup4(const struct area_table *t, const uint8_t addr4[4], unsigned *scope,
                      unsigned *plen)
{
    return lookup4(t, addr4, scope, plen, 0);
}

uint32_t area_lookup6(const struct area_table *t, const uint8_t addr6[16], unsigned *scope,
                      unsigned *plen)
{
    return lookup6(t, addr6, scope, plen, 0);
}

uint32_t area_lookup4_strict(const struct area_table *t, const uint8_t addr4[4], unsigned *scope,
                             unsigned *plen)
{
    return lookup4(t, addr4, scope, plen, 1);
}

uint32_t area_lookup6_strict(const struct area_table *t, const uint8_t addr6[16], unsigned *scope,
                             unsigned *plen)
{
    return lookup6(t, addr6, scope, plen, 1);
}

/* ---- text ---- */

int area_parse_prefix(const char *text, int *family, uint8_t addr[16], unsigned *plen)
{
    char buf[INET6_ADDRSTRLEN];
    if (text == NULL || family == NULL || addr == NULL || plen == NULL)
        return -1;
    const char *slash = strchr(text, '/');
    size_t alen = slash ? (size_t)(slash - text) : strlen(text);
    if (alen == 0 || alen >= sizeof(buf))
        return -1;
    memcpy(buf, text, alen);
    buf[alen] = '\0';

    uint8_t a[16] = {0};
    int fam;
    unsigned width;
    if (strchr(buf, ':') != NULL) {
        if (inet_pton(AF_INET6, buf, a) != 1)
            return -1;
        fam = 6;
        width = 128;
    } else {
        if (inet_pton(AF_INET, buf, a) != 1)
            return -1;
        fam = 4;
        width = 32;
    }

    unsigned len = width;
    if (slash) {
        /* One to three decimal digits, no sign, no leading zero, no
         * space: what strtoul would let through is wider than that. */
        const char *p = slash + 1;
        size_t nd = strlen(p);
        if (nd == 0 || nd > 3 || (nd > 1 && p[0] == '0'))
            return -1;
        len = 0;
        for (size_t i = 0; i < nd; i++) {
            if (p[i] < '0' || p[i] > '9')
                return -1;
            len = len * 10 + (unsigned)(p[i] - '0');
        }
        if (len > width)
            return -1;
    }

    /* Clear the bits past the length. */
    unsigned bytes = width / 8;
    for (unsigned i = 0; i < bytes; i++) {
        unsigned first = i * 8;
        if (first >= len)
            a[i] = 0;
        else if (len - first < 8)
            a[i] &= (uint8_t)(0xff00u >> (len - first));
    }
    memcpy(addr, a, 16);
    *family = fam;
    *plen = len;
    return 0;
}
