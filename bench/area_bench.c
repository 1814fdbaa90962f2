/*
 * area_bench -- build time, memory and lookup rate of the router's area
 * table (src/router/area.c) on a synthetic internet-sized table. Run by
 * bench/area.sh, which also runs the python3-radix anchor on the same
 * files and compares the answers; see docs/benchmarks-router.md.
 *
 *   area_bench gen DIR [NPREFIXES [SEED]]
 *       Writes DIR/prefixes.txt ("prefix value" a line, NPREFIXES distinct
 *       prefixes, default 1,000,000) and DIR/addrs4.txt, DIR/addrs6.txt
 *       (1,000,000 addresses each, one a line).
 *   area_bench run DIR [LOOKUPS]
 *       Reads those files, builds the table (timed: the adds and finish;
 *       the text was parsed before), looks up LOOKUPS addresses a family
 *       (default 10,000,000: the file's addresses in turn) with scope and
 *       matched length, then the same from text (inet_pton and lookup, as
 *       the anchor has to), and writes the answers for the first 100,000
 *       addresses of each file to DIR/area_answers.txt. Before the lookups
 *       it times a random memory load over as many bytes as the table
 *       holds (skipped when AREA_BENCH_NO_CHASE is set). Prints key=value
 *       lines.
 *
 * The synthetic table (seeded, so every run has the same one): 85% IPv4,
 * 15% IPv6. IPv4: 60% /24, 30% /19-/23, 9% /16-/18, 1% /8-/15, spread over
 * 1.0.0.0-223.255.255.255 without 10/8 and 127/8; a third of all prefixes
 * are more-specifics of a shorter prefix already in the table, and half of
 * those have their parent's value. IPv6: /29-/48 (peaks at /32 and /48) in
 * the regions the RIRs allocate from (2001::/16, 2400::/12, 2600::/12,
 * 2800::/12, 2a00::/12, 2c00::/12), also a third nested. Values are area
 * indices 0-999. Lookup addresses: 80% inside a random table prefix,
 * 20% uniform (IPv4 in 1.0.0.0-223.255.255.255, IPv6 in 2000::/3).
 *
 * Build: gcc -std=gnu11 -O2 -D_GNU_SOURCE -Isrc bench/area_bench.c src/router/area.c
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "router/area.h"

#define NADDRS 1000000
#define NSAMPLE 100000

static uint64_t rng = 0x5eed;

static uint64_t rnd(void)
{
    uint64_t z = (rng += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static unsigned rndn(unsigned n)
{
    return (unsigned)(rnd() % n);
}

static double now_s(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10);
    fclose(f);
    return v;
}

static void *xalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) {
        fprintf(stderr, "area_bench: out of memory\n");
        exit(1);
    }
    return p;
}

/* A prefix as generated and as read back. */
struct pfx {
    uint8_t addr[16];
    uint8_t family, plen;
    uint32_t value;
};

static void set_bits_random(uint8_t *a, unsigned from, unsigned width)
{
    for (unsigned bit = from; bit < width; bit++)
        if (rnd() & 1)
            a[bit / 8] |= (uint8_t)(0x80 >> (bit % 8));
        else
            a[bit / 8] &= (uint8_t)~(0x80 >> (bit % 8));
}

static void clear_host_bits(uint8_t *a, unsigned plen, unsigned width)
{
    for (unsigned bit = plen; bit < width; bit++)
        a[bit / 8] &= (uint8_t)~(0x80 >> (bit % 8));
}

static unsigned v4_plen(void)
{
    unsigned r = rndn(100);
    if (r < 60)
        return 24;
    if (r < 90)
        return 19 + rndn(5);
    if (r < 99)
        return 16 + rndn(3);
    return 8 + rndn(8);
}

static unsigned v6_plen(void)
{
    unsigned r = rndn(100);
    if (r < 35)
        return 48;
    if (r < 60)
        return 32;
    return 29 + rndn(20);
}

static void v4_fresh(struct pfx *p)
{
    unsigned first;
    do
        first = 1 + rndn(223);
    while (first == 10 || first == 127);
    memset(p->addr, 0, sizeof(p->addr));
    p->addr[0] = (uint8_t)first;
    set_bits_random(p->addr, 8, 32);
    p->family = 4;
    p->plen = (uint8_t)v4_plen();
    clear_host_bits(p->addr, p->plen, 32);
    p->value = rndn(1000);
}

static void v6_fresh(struct pfx *p)
{
    static const uint16_t region[] = {0x2001, 0x2400, 0x2600, 0x2800, 0x2a00, 0x2c00};
    unsigned r = rndn(6);
    memset(p->addr, 0, sizeof(p->addr));
    p->addr[0] = (uint8_t)(region[r] >> 8);
    p->addr[1] = (uint8_t)region[r];
    set_bits_random(p->addr, r == 0 ? 16 : 12, 64);
    p->family = 6;
    p->plen = (uint8_t)v6_plen();
    clear_host_bits(p->addr, p->plen, 128);
    p->value = rndn(1000);
}

static void print_prefix(FILE *f, const struct pfx *p)
{
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(p->family == 4 ? AF_INET : AF_INET6, p->addr, buf, sizeof(buf));
    fprintf(f, "%s/%u %u\n", buf, p->plen, (unsigned)p->value);
}

/* An address for the lookups: 80% inside a table prefix. */
static void pick_addr(const struct pfx *tab, size_t n, int family, uint8_t out[16])
{
    memset(out, 0, 16);
    unsigned width = family == 4 ? 32 : 128;
    if (rndn(100) < 80) {
        const struct pfx *p;
        do
            p = &tab[rnd() % n];
        while (p->family != family);
        memcpy(out, p->addr, 16);
        set_bits_random(out, p->plen, width);
    } else if (family == 4) {
        out[0] = (uint8_t)(1 + rndn(223));
        set_bits_random(out, 8, 32);
    } else {
        out[0] = 0x20;
        set_bits_random(out, 3, 128);
    }
}

static int gen(const char *dir, size_t n, uint64_t seed)
{
    char path[4096];
    rng = seed;
    struct pfx *tab = xalloc(n * sizeof(*tab));
    /* The area builder itself tells which prefixes are new. */
    struct area_builder *b = area_builder_new();
    size_t have = 0;
    while (have < n) {
        struct pfx *p = &tab[have];
        int v6 = rndn(100) < 15;
        if (have > 0 && rndn(3) == 0) {
            /* A more-specific of a prefix we have. */
            const struct pfx *parent = &tab[rnd() % have];
            unsigned width = parent->family == 4 ? 32 : 128;
            unsigned maxlen = parent->family == 4 ? 24 : 48;
            if (parent->plen >= maxlen)
                continue;
            *p = *parent;
            p->plen = (uint8_t)(parent->plen + 1 + rndn(maxlen - parent->plen));
            set_bits_random(p->addr, parent->plen, p->plen);
            clear_host_bits(p->addr, p->plen, width);
            if (rndn(2))
                p->value = rndn(1000);
        } else if (v6) {
            v6_fresh(p);
        } else {
            v4_fresh(p);
        }
        size_t before = area_builder_count(b);
        if (area_builder_add(b, p->family, p->addr, p->plen, p->value) < 0)
            return 1;
        if (area_builder_count(b) > before)
            have++;
    }
    area_builder_free(b);

    snprintf(path, sizeof(path), "%s/prefixes.txt", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return 1;
    for (size_t i = 0; i < n; i++)
        print_prefix(f, &tab[i]);
    fclose(f);
    for (int family = 4; family <= 6; family += 2) {
        snprintf(path, sizeof(path), "%s/addrs%d.txt", dir, family);
        f = fopen(path, "w");
        if (f == NULL)
            return 1;
        for (size_t i = 0; i < NADDRS; i++) {
            uint8_t a[16];
            char buf[INET6_ADDRSTRLEN];
            pick_addr(tab, n, family, a);
            inet_ntop(family == 4 ? AF_INET : AF_INET6, a, buf, sizeof(buf));
            fprintf(f, "%s\n", buf);
        }
        fclose(f);
    }
    free(tab);
    return 0;
}

/* Reads one address file: the binary addresses and the text lines. */
static size_t read_addrs(const char *dir, int family, uint8_t **bin, char ***text)
{
    char path[4096], line[128];
    snprintf(path, sizeof(path), "%s/addrs%d.txt", dir, family);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        perror(path);
        exit(1);
    }
    size_t w = family == 4 ? 4 : 16, n = 0;
    *bin = xalloc(NADDRS * w);
    *text = xalloc(NADDRS * sizeof(**text));
    while (n < NADDRS && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        if (inet_pton(family == 4 ? AF_INET : AF_INET6, line, *bin + n * w) != 1) {
            fprintf(stderr, "%s: bad address %s\n", path, line);
            exit(1);
        }
        (*text)[n] = strdup(line);
        n++;
    }
    fclose(f);
    return n;
}


/*
 * The machine's latency for one random memory load, for reading the lookup
 * figures (which are a few dependent loads each) on a shared VM whose
 * memory speed varies: a pointer chase through a random cycle over `bytes`
 * of memory, the size of the table.
 */
static double chase_ns(size_t bytes)
{
    size_t n = bytes / sizeof(uint32_t);
    uint32_t *next = xalloc(n * sizeof(*next)), *perm = xalloc(n * sizeof(*perm));
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = rnd() % (i + 1);
        uint32_t x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
    }
    for (size_t i = 0; i < n; i++)
        next[perm[i]] = perm[(i + 1) % n];
    free(perm);
    size_t steps = 5000000;
    uint32_t at = 0;
    double c0 = now_s(CLOCK_THREAD_CPUTIME_ID);
    for (size_t i = 0; i < steps; i++)
        at = next[at];
    double ns = (now_s(CLOCK_THREAD_CPUTIME_ID) - c0) * 1e9 / steps;
    free(next);
    return at == UINT32_MAX ? 0 : ns;
}

static int run(const char *dir, size_t lookups)
{
    char path[4096], line[256];
    snprintf(path, sizeof(path), "%s/prefixes.txt", dir);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        perror(path);
        return 1;
    }
    size_t cap = 1 << 20, n = 0;
    struct pfx *tab = xalloc(cap * sizeof(*tab));
    double t0 = now_s(CLOCK_MONOTONIC);
    while (fgets(line, sizeof(line), f)) {
        char *sp = strchr(line, ' ');
        int family;
        unsigned plen;
        if (sp == NULL)
            return 1;
        *sp = '\0';
        if (n == cap) {
            cap *= 2;
            tab = realloc(tab, cap * sizeof(*tab));
            if (tab == NULL)
                return 1;
        }
        if (area_parse_prefix(line, &family, tab[n].addr, &plen) < 0) {
            fprintf(stderr, "bad prefix %s\n", line);
            return 1;
        }
        tab[n].family = (uint8_t)family;
        tab[n].plen = (uint8_t)plen;
        tab[n].value = (uint32_t)strtoul(sp + 1, NULL, 10);
        n++;
    }
    fclose(f);
    double parse_s = now_s(CLOCK_MONOTONIC) - t0;

    long rss_before = rss_kib("VmRSS");
    double c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    t0 = now_s(CLOCK_MONOTONIC);
    struct area_builder *b = area_builder_new();
    for (size_t i = 0; i < n; i++)
        if (area_builder_add(b, tab[i].family, tab[i].addr, tab[i].plen, tab[i].value) < 0)
            return 1;
    double add_s = now_s(CLOCK_MONOTONIC) - t0;
    long rss_builder = rss_kib("VmRSS");
    struct area_table *t = area_builder_finish(b);
    double build_s = now_s(CLOCK_MONOTONIC) - t0;
    double build_cpu = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    if (t == NULL)
        return 1;
    long rss_after = rss_kib("VmRSS");
    long hwm = rss_kib("VmHWM");
    free(tab);

    printf("prefixes=%zu v4=%zu v6=%zu\n", n, area_table_count(t, 4), area_table_count(t, 6));
    printf("parse_s=%.3f add_s=%.3f build_s=%.3f build_cpu_s=%.3f\n", parse_s, add_s, build_s,
           build_cpu);
    printf("table_memory_bytes=%zu\n", area_table_memory(t));
    printf("rss_before_kib=%ld rss_builder_kib=%ld rss_after_kib=%ld vmhwm_kib=%ld\n",
           rss_before, rss_builder, rss_after, hwm);

    if (getenv("AREA_BENCH_NO_CHASE") == NULL)
        printf("mem_latency_ns=%.1f\n", chase_ns(area_table_memory(t)));

    snprintf(path, sizeof(path), "%s/area_answers.txt", dir);
    FILE *ans = fopen(path, "w");
    if (ans == NULL)
        return 1;
    for (int family = 4; family <= 6; family += 2) {
        uint8_t *bin;
        char **text;
        size_t na = read_addrs(dir, family, &bin, &text), w = family == 4 ? 4 : 16;
        uint64_t sum = 0;
        /* Binary addresses, as the router has them from the ECS option or
         * the socket. */
        double w0 = now_s(CLOCK_MONOTONIC), p0 = now_s(CLOCK_THREAD_CPUTIME_ID);
        for (size_t i = 0, j = 0; i < lookups; i++, j = j + 1 == na ? 0 : j + 1) {
            unsigned scope, plen;
            uint32_t v = family == 4 ? area_lookup4(t, bin + j * w, &scope, &plen)
                                     : area_lookup6(t, bin + j * w, &scope, &plen);
            sum += v + scope + plen;
        }
        double wall = now_s(CLOCK_MONOTONIC) - w0, cpu = now_s(CLOCK_THREAD_CPUTIME_ID) - p0;
        printf("v%d_lookups=%zu v%d_lookup_s=%.3f v%d_lookups_per_s=%.0f "
               "v%d_cpu_ns_per_lookup=%.1f checksum=%llu\n",
               family, lookups, family, wall, family, lookups / wall, family, cpu * 1e9 / lookups,
               (unsigned long long)sum);
        /* From text, as the anchor has to: inet_pton, then the lookup. */
        w0 = now_s(CLOCK_MONOTONIC);
        sum = 0;
        for (size_t i = 0; i < na; i++) {
            uint8_t a[16];
            unsigned scope, plen;
            inet_pton(family == 4 ? AF_INET : AF_INET6, text[i], a);
            sum += (family == 4 ? area_lookup4(t, a, &scope, &plen)
                                : area_lookup6(t, a, &scope, &plen)) + scope;
        }
        wall = now_s(CLOCK_MONOTONIC) - w0;
        printf("v%d_text_lookups=%zu v%d_text_lookups_per_s=%.0f checksum=%llu\n", family, na,
               family, na / wall, (unsigned long long)sum);
        for (size_t i = 0; i < na && i < NSAMPLE; i++) {
            uint32_t v = family == 4 ? area_lookup4(t, bin + i * w, NULL, NULL)
                                     : area_lookup6(t, bin + i * w, NULL, NULL);
            if (v == AREA_NONE)
                fprintf(ans, "%s -\n", text[i]);
            else
                fprintf(ans, "%s %u\n", text[i], (unsigned)v);
        }
        for (size_t i = 0; i < na; i++)
            free(text[i]);
        free(text);
        free(bin);
    }
    fclose(ans);
    area_table_free(t);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "gen") == 0)
        return gen(argv[2], argc > 3 ? strtoul(argv[3], NULL, 10) : 1000000,
                   argc > 4 ? strtoull(argv[4], NULL, 10) : 0x5eed);
    if (argc >= 3 && strcmp(argv[1], "run") == 0)
        return run(argv[2], argc > 3 ? strtoul(argv[3], NULL, 10) : 10000000);
    fprintf(stderr, "usage: area_bench gen DIR [NPREFIXES [SEED]] | run DIR [LOOKUPS]\n");
    return 2;
}
