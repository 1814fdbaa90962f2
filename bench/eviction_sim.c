/*
 * eviction_sim -- replays synthetic traces through the eviction policies.
 *
 * The program generates Zipf-distributed request traces and feeds each one
 * to the LRU and S3-FIFO policies of src/cache/evict.c. It plays the store:
 * look up, touch on a hit, insert on a miss, then drain evict_victim. The
 * cache sizes are fractions of the trace's working set in bytes. It prints
 * request hit ratios as a table, or as CSV with byte hit ratios added. The
 * hit ratios count all requests of a trace, cold misses included.
 *
 * Two kinds of trace:
 *   zipf  R requests over N objects. The object of popularity rank k (1-based)
 *         is requested with probability proportional to 1 / k^alpha.
 *   scan  the same Zipf stream, with a burst of scan_len requests for new,
 *         never repeated keys after every scan_every Zipf requests. It models
 *         a crawler or a bulk fetch passing through the cache. For this
 *         trace the cache size is still a fraction of the Zipf working set,
 *         and the hit ratios count only the Zipf requests. Scan keys are
 *         never reused, so they are not part of what the cache could usefully
 *         hold, and every policy misses on them. The rows then compare
 *         directly with the zipf rows: the difference is what the scans cost.
 * Object sizes are either all 1 ("unit"; the byte budget then counts objects)
 * or drawn once per object from a log-normal distribution ("lognormal";
 * median 16 KiB, sigma 1.5, clamped to [128 B, 16 MiB]). The size does not
 * depend on the object's popularity.
 *
 * Everything is seeded, so the same command line prints the same figures.
 * The Zipf sampler inverts a precomputed CDF by binary search: exact for any
 * alpha, O(log N) per draw. The random numbers come from xoshiro256**,
 * seeded through splitmix64.
 *
 * Build (from the repository root):
 *   cc -std=gnu11 -D_GNU_SOURCE -O2 -Isrc bench/eviction_sim.c \
 *      src/cache/evict.c src/lib/util.c -lm -o eviction_sim
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/evict.h"
#include "lib/util.h"

#define SIM_MAX_LIST 16
#define SIM_MAX_OBJECTS 50000000u
#define SIM_MAX_REQUESTS 1000000000u

/* ---- random numbers ---------------------------------------------------- */

/* splitmix64 step: expands one seed into well-spread words (and mixes keys). */
static uint64_t sim_splitmix(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

struct sim_rng {
    uint64_t s[4];
};

static void sim_rng_seed(struct sim_rng *r, uint64_t seed)
{
    /* xoshiro must not start from all zeros; splitmix output never is four zeros. */
    for (int i = 0; i < 4; i++)
        r->s[i] = sim_splitmix(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256**: 256 bits of state, passes the usual statistical batteries. */
static uint64_t sim_rng_next(struct sim_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Uniform in [0, 1), from the top 53 bits. */
static double sim_rng_unit(struct sim_rng *r)
{
    return (double)(sim_rng_next(r) >> 11) * 0x1.0p-53;
}

/* Standard normal by Box-Muller; wasteful (one value per pair) but simple. */
static double sim_rng_normal(struct sim_rng *r)
{
    double u1 = 1.0 - sim_rng_unit(r); /* (0, 1], so log() is finite */
    double u2 = sim_rng_unit(r);

    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* ---- Zipf sampler ------------------------------------------------------ */

struct sim_zipf {
    double *cdf; /* owned: cdf[k] = P(rank <= k + 1), cdf[n - 1] = 1 */
    size_t n;
};

static void sim_zipf_init(struct sim_zipf *z, size_t n, double alpha)
{
    double sum = 0;

    z->n = n;
    z->cdf = xmalloc(n * sizeof *z->cdf);
    for (size_t k = 0; k < n; k++) {
        sum += pow((double)(k + 1), -alpha);
        z->cdf[k] = sum;
    }
    for (size_t k = 0; k < n; k++)
        z->cdf[k] /= sum;
    /* Rounding could leave the last value just below 1; a draw must always land. */
    z->cdf[n - 1] = 1.0;
}

/* Returns a 0-based rank: the first k with u < cdf[k]. */
static uint32_t sim_zipf_draw(const struct sim_zipf *z, struct sim_rng *r)
{
    double u = sim_rng_unit(r);
    size_t lo = 0, hi = z->n - 1;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (u < z->cdf[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return (uint32_t)lo;
}

static void sim_zipf_fini(struct sim_zipf *z)
{
    free(z->cdf);
    z->cdf = NULL;
}

/* ---- traces ------------------------------------------------------------ */

struct sim_params {
    uint32_t objects;
    uint64_t requests;
    uint64_t seed;
    bool lognormal;
    uint64_t scan_every; /* 0 disables the scan trace */
    uint32_t scan_len;
    double alpha[SIM_MAX_LIST];
    int nalpha;
    double cache_pct[SIM_MAX_LIST];
    int ncache;
    bool csv;
};

struct sim_trace {
    uint32_t *req;     /* owned: object ids in request order */
    uint64_t nreq;
    uint64_t *size;    /* owned: bytes per object id */
    uint32_t nobj;     /* ids 0..objects-1 are Zipf ranks; later ids are scan keys */
    uint64_t ws_bytes; /* bytes of the distinct Zipf objects requested */
};

static uint64_t sim_draw_size(struct sim_rng *r, bool lognormal)
{
    if (!lognormal)
        return 1;
    /* exp(N(ln 16384, 1.5)): median 16 KiB, a long tail like web objects. */
    double v = exp(log(16384.0) + 1.5 * sim_rng_normal(r));
    if (v < 128.0)
        v = 128.0;
    if (v > 16777216.0)
        v = 16777216.0;
    return (uint64_t)llround(v);
}

/*
 * Builds one trace. Sizes come from their own stream (seed only), so every
 * trace of a run gives an object the same size. The request stream is
 * seeded by the seed and alpha together, so adding an alpha to the list
 * leaves the other traces unchanged.
 */
static void sim_trace_build(struct sim_trace *t, const struct sim_params *p, double alpha, bool scan)
{
    uint64_t nscan = scan && p->scan_every ? (p->requests / p->scan_every) * p->scan_len : 0;
    uint64_t nobj = (uint64_t)p->objects + nscan;

    if (nobj > UINT32_MAX) {
        fprintf(stderr, "eviction_sim: too many objects with scans (%" PRIu64 ")\n", nobj);
        exit(2);
    }
    t->nobj = (uint32_t)nobj;
    t->nreq = p->requests + nscan;
    t->req = xmalloc(t->nreq * sizeof *t->req);
    t->size = xmalloc(nobj * sizeof *t->size);

    struct sim_rng rs;
    sim_rng_seed(&rs, p->seed ^ UINT64_C(0x5157e5));
    for (uint64_t i = 0; i < nobj; i++)
        t->size[i] = sim_draw_size(&rs, p->lognormal);

    struct sim_zipf z;
    struct sim_rng rq;
    sim_zipf_init(&z, p->objects, alpha);
    sim_rng_seed(&rq, p->seed + (uint64_t)llround(alpha * 1e6));
    uint64_t n = 0, zipf_done = 0;
    uint32_t next_scan = p->objects;
    while (zipf_done < p->requests) {
        t->req[n++] = sim_zipf_draw(&z, &rq);
        zipf_done++;
        if (nscan && zipf_done % p->scan_every == 0)
            for (uint32_t k = 0; k < p->scan_len; k++)
                t->req[n++] = next_scan++;
    }
    sim_zipf_fini(&z);

    unsigned char *seen = xcalloc(p->objects, 1);
    t->ws_bytes = 0;
    for (uint64_t i = 0; i < t->nreq; i++) {
        uint32_t id = t->req[i];
        if (id < p->objects && !seen[id]) {
            seen[id] = 1;
            t->ws_bytes += t->size[id];
        }
    }
    free(seen);
}

static void sim_trace_fini(struct sim_trace *t)
{
    free(t->req);
    free(t->size);
}

/* ---- replay ------------------------------------------------------------ */

struct sim_obj {
    struct evict_node node;
    bool cached;
};

struct sim_result {
    double hit_ratio;
    double byte_hit_ratio;
};

/*
 * Plays the store for one policy and budget; objs is scratch of t->nobj
 * entries. Only requests for Zipf objects (ids below zipf_objects) are
 * counted. Scan keys are still cached and evicted like any other key, but
 * they are misses for every policy by construction, so counting them would
 * only scale both columns down.
 */
static struct sim_result sim_replay(const struct sim_trace *t, uint32_t zipf_objects,
                                    enum evict_kind kind, uint64_t budget, struct sim_obj *objs)
{
    struct evict e;
    uint64_t reqs = 0, hits = 0, hit_bytes = 0, all_bytes = 0;
    uint64_t mix = 0;

    memset(objs, 0, (size_t)t->nobj * sizeof *objs);
    evict_init(&e, kind, budget);
    for (uint64_t i = 0; i < t->nreq; i++) {
        uint32_t id = t->req[i];
        struct sim_obj *o = &objs[id];
        bool counted = id < zipf_objects;

        reqs += counted;
        all_bytes += counted ? t->size[id] : 0;
        if (o->cached) {
            hits += counted;
            hit_bytes += counted ? t->size[id] : 0;
            evict_touch(&e, &o->node);
            continue;
        }
        /* A bijective mix of the id: distinct keys get distinct hashes. */
        mix = id;
        o->node.key_hash = sim_splitmix(&mix);
        o->node.size = t->size[id];
        evict_insert(&e, &o->node);
        o->cached = true;
        struct evict_node *v;
        while ((v = evict_victim(&e)) != NULL)
            container_of(v, struct sim_obj, node)->cached = false;
    }
    evict_fini(&e);

    struct sim_result r = {
        .hit_ratio = reqs ? (double)hits / (double)reqs : 0,
        .byte_hit_ratio = all_bytes ? (double)hit_bytes / (double)all_bytes : 0,
    };
    return r;
}

/* ---- command line ------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: eviction_sim [options]\n"
            "  --objects N       distinct Zipf objects (default 100000)\n"
            "  --requests R      Zipf requests per trace (default 2000000)\n"
            "  --alpha A[,A...]  Zipf exponents (default 0.7,0.8,0.9,1.0)\n"
            "  --cache P[,P...]  cache sizes, %% of working-set bytes (default 0.1,1,5,10)\n"
            "  --seed S          seed for sizes and requests (default 1)\n"
            "  --sizes unit|lognormal  object sizes (default unit)\n"
            "  --scan-every N    Zipf requests between scans (default 100000, 0 = no scan trace)\n"
            "  --scan-len L      new keys per scan (default 10000)\n"
            "  --csv             print CSV instead of a table\n");
}

static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;

    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* Parses a comma-separated list of numbers in [min, max]. */
static bool parse_list(const char *s, double min, double max, double *out, int *n)
{
    *n = 0;
    while (*s) {
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || end == s || !(v >= min && v <= max) || *n == SIM_MAX_LIST)
            return false;
        out[(*n)++] = v;
        if (*end == ',')
            end++;
        else if (*end)
            return false;
        s = end;
    }
    return *n > 0;
}

static bool parse_args(int argc, char **argv, struct sim_params *p)
{
    static const struct option opts[] = {
        {"objects", required_argument, NULL, 'n'},  {"requests", required_argument, NULL, 'r'},
        {"alpha", required_argument, NULL, 'a'},    {"cache", required_argument, NULL, 'c'},
        {"seed", required_argument, NULL, 's'},     {"sizes", required_argument, NULL, 'z'},
        {"scan-every", required_argument, NULL, 'e'}, {"scan-len", required_argument, NULL, 'l'},
        {"csv", no_argument, NULL, 'v'},            {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    int c;

    *p = (struct sim_params){
        .objects = 100000,
        .requests = 2000000,
        .seed = 1,
        .scan_every = 100000,
        .scan_len = 10000,
        .alpha = {0.7, 0.8, 0.9, 1.0},
        .nalpha = 4,
        .cache_pct = {0.1, 1, 5, 10},
        .ncache = 4,
    };
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            if (!parse_u64(optarg, 1, SIM_MAX_OBJECTS, &v))
                return false;
            p->objects = (uint32_t)v;
            break;
        case 'r':
            if (!parse_u64(optarg, 1, SIM_MAX_REQUESTS, &p->requests))
                return false;
            break;
        case 'a':
            if (!parse_list(optarg, 0, 5, p->alpha, &p->nalpha))
                return false;
            break;
        case 'c':
            if (!parse_list(optarg, 1e-6, 100, p->cache_pct, &p->ncache))
                return false;
            break;
        case 's':
            if (!parse_u64(optarg, 0, UINT64_MAX, &p->seed))
                return false;
            break;
        case 'z':
            if (strcmp(optarg, "unit") == 0)
                p->lognormal = false;
            else if (strcmp(optarg, "lognormal") == 0)
                p->lognormal = true;
            else
                return false;
            break;
        case 'e':
            if (!parse_u64(optarg, 0, SIM_MAX_REQUESTS, &p->scan_every))
                return false;
            break;
        case 'l':
            if (!parse_u64(optarg, 1, SIM_MAX_OBJECTS, &v))
                return false;
            p->scan_len = (uint32_t)v;
            break;
        case 'v':
            p->csv = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return false;
        }
    }
    return optind == argc;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    struct sim_params p;

    if (!parse_args(argc, argv, &p)) {
        usage(stderr);
        return 2;
    }

    double t0 = now_s();
    if (p.csv) {
        printf("trace,alpha,cache_pct,budget_bytes,lru_hit,s3fifo_hit,s3fifo_over_lru,"
               "lru_byte_hit,s3fifo_byte_hit\n");
    } else {
        printf("# objects=%" PRIu32 " requests=%" PRIu64 " sizes=%s seed=%" PRIu64 "\n",
               p.objects, p.requests, p.lognormal ? "lognormal" : "unit", p.seed);
        if (p.scan_every)
            printf("# scan: %" PRIu32 " new keys after every %" PRIu64
                   " Zipf requests; hit ratios count Zipf requests only\n",
                   p.scan_len, p.scan_every);
        printf("%-5s %5s %7s %8s %8s %8s\n", "trace", "alpha", "cache%", "LRU", "S3-FIFO", "S3/LRU");
    }

    for (int scan = 0; scan <= (p.scan_every ? 1 : 0); scan++) {
        for (int a = 0; a < p.nalpha; a++) {
            struct sim_trace t;
            sim_trace_build(&t, &p, p.alpha[a], scan);
            struct sim_obj *objs = xmalloc((size_t)t.nobj * sizeof *objs);

            for (int c = 0; c < p.ncache; c++) {
                uint64_t budget = (uint64_t)llround((double)t.ws_bytes * p.cache_pct[c] / 100.0);
                if (budget == 0)
                    budget = 1;
                struct sim_result lru = sim_replay(&t, p.objects, EVICT_LRU, budget, objs);
                struct sim_result s3 = sim_replay(&t, p.objects, EVICT_S3FIFO, budget, objs);
                double ratio = lru.hit_ratio > 0 ? s3.hit_ratio / lru.hit_ratio : 0;
                const char *name = scan ? "scan" : "zipf";

                if (p.csv)
                    printf("%s,%.2f,%g,%" PRIu64 ",%.6f,%.6f,%.4f,%.6f,%.6f\n", name, p.alpha[a],
                           p.cache_pct[c], budget, lru.hit_ratio, s3.hit_ratio, ratio,
                           lru.byte_hit_ratio, s3.byte_hit_ratio);
                else
                    printf("%-5s %5.2f %7g %8.4f %8.4f %8.3f\n", name, p.alpha[a], p.cache_pct[c],
                           lru.hit_ratio, s3.hit_ratio, ratio);
                fflush(stdout);
            }
            free(objs);
            sim_trace_fini(&t);
        }
    }
    fprintf(stderr, "eviction_sim: %.1f s\n", now_s() - t0);
    return 0;
}
