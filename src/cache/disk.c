/*
 * disk -- see disk.h; the file format is specified in docs/disk-format.md.
 *
 * Data flow. disk_put (any thread) takes a reference on the object and
 * queues a job for the writer thread, which numbers the object (its id),
 * writes "ab/<id>.tmp", renames it to "ab/<id>" and only then, under the
 * lock, puts the entry in the index, retires the variant it replaces and
 * picks LRU victims; the replaced and evicted files are unlinked after the
 * lock is dropped. disk_lookup (a loop thread) only looks at the index.
 * disk_read_async queues the id for one of the reader threads, which reads
 * and verifies the file and posts the record to the caller's loop.
 *
 * Names. An id is 64 bits: the top 8 bits come from a hash of key and
 * secondary key and name one of 256 subdirectories "00".."ff", the low 56
 * bits are a counter that only grows (it restarts above the highest id
 * found by the scan), so a name is never reused while the disk is open.
 * That is what makes replacement safe without holding the lock during I/O:
 * the new file never overwrites the old one, a reader that opened the old
 * file keeps reading a complete record, and a reader that comes later finds
 * the id gone from the index. Subdirectories keep each directory at 1/256
 * of the files, so creating, renaming and scanning do not serialise on one
 * huge directory.
 *
 * Locking. One mutex guards the index (both hash tables and the LRU), the
 * two job queues and the statistics. It is never held across file I/O or
 * loop_post. The only file written in place is the admin expiry, patched
 * by the writer (12 bytes: expires_at and the head checksum); a reader that
 * fails a checksum while a patch was in progress on that entry (a seqlock:
 * dent.gen is odd during the patch) retries instead of deleting the file.
 *
 * Length: this file is past the ~1500-line guide. The record codec (CRC-32C,
 * head encode/decode, disk_record_*) is self-contained and is what should
 * move to its own file next; the rest shares one lock and its invariants.
 */
#include "cache/disk.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

/* Bodies are read into one allocation of body_len bytes. */
_Static_assert(sizeof(size_t) >= 8, "the disk tier needs a 64-bit size_t");

/* ---------------------------------------------------------------------
 * The file format (docs/disk-format.md): a fixed 80-byte head, then key,
 * vary, vkey, fields, body. Integers are little-endian.
 */
#define DISK_MAGIC "FERRYOBJ"
#define DISK_VERSION 1u
#define DISK_HEAD 80u
#define DISK_FLAG_VARY 0x1u

#define OFF_VERSION 8
#define OFF_FLAGS 12
#define OFF_KEY_LEN 16
#define OFF_VARY_LEN 20
#define OFF_VKEY_LEN 24
#define OFF_FIELDS_LEN 28
#define OFF_BODY_LEN 32
#define OFF_STATUS 40
#define OFF_RESERVED 44
#define OFF_REQUEST_TIME 48
#define OFF_RESPONSE_TIME 56
#define OFF_EXPIRES 64
#define OFF_HEAD_CRC 72
#define OFF_BODY_CRC 76

/* Caps, checked before anything is allocated from a length on disk. */
#define DISK_MAX_KEY (64u << 10)
#define DISK_MAX_VARY (64u << 10)
#define DISK_MAX_VKEY (1u << 20)
#define DISK_MAX_FIELDS (1u << 20)
#define DISK_MAX_BODY ((uint64_t)64 << 30)

/* ---------------------------------------------------------------------
 * Tier parameters.
 */
#define DISK_BLOCK 4096u             /* files are charged in whole blocks */
#define DISK_PENDING_MAX (64u << 20) /* queued put bytes above which puts are dropped */
#define DISK_JOB_COST 256u           /* bytes charged per job for its bookkeeping */
#define DISK_READS_MAX 4096u         /* queued reads above which reads fail fast */
#define DISK_READERS 2
#define DISK_READ_TRIES 8            /* re-reads of a file being patched */
#define DISK_SEQ_BITS 56
#define DISK_SEQ_MASK ((UINT64_C(1) << DISK_SEQ_BITS) - 1)

/* Results of reading a file, beside 0. */
enum {
    R_GONE = -1,    /* no such file */
    R_CORRUPT = -2, /* the content is not a valid record */
    R_IOERR = -3,   /* the system failed; the file may be fine */
};

/* ---------------------------------------------------------------------
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), slicing by 8.
 * Tables are built once; crc_update works on the pre-inverted register.
 */
#define CRC_INIT 0xFFFFFFFFu

static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_build(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_tab[0][n] = c;
    }
    /* Table k gives the effect of a byte followed by k zero bytes. */
    for (int k = 1; k < 8; k++)
        for (int n = 0; n < 256; n++)
            crc_tab[k][n] = (crc_tab[k - 1][n] >> 8) ^ crc_tab[0][crc_tab[k - 1][n] & 0xff];
}

static uint32_t crc_update(uint32_t crc, const void *data, size_t n)
{
    const uint8_t *p = data;

    pthread_once(&crc_once, crc_build);
    while (n >= 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
                      (uint32_t)p[7] << 24;
        crc = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^
              crc_tab[5][(lo >> 16) & 0xff] ^ crc_tab[4][lo >> 24] ^ crc_tab[3][hi & 0xff] ^
              crc_tab[2][(hi >> 8) & 0xff] ^ crc_tab[1][(hi >> 16) & 0xff] ^ crc_tab[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = crc_tab[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

static uint32_t crc32c(const void *data, size_t n)
{
    return crc_update(CRC_INIT, data, n) ^ CRC_INIT;
}

/* ---------------------------------------------------------------------
 * Little-endian fields.
 */
static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/* Two's complement without relying on implementation-defined conversion. */
static int64_t u64_to_i64(uint64_t v)
{
    return v <= (uint64_t)INT64_MAX ? (int64_t)v : -(int64_t)(~v) - 1;
}

/* ---------------------------------------------------------------------
 * Records.
 */

/* The fixed head, decoded. */
struct dhead {
    uint32_t flags;
    uint32_t key_len, vary_len, vkey_len, fields_len;
    uint64_t body_len;
    int status;
    int64_t request_time, response_time, expires_at;
    uint32_t head_crc, body_crc;
    size_t head_len; /* DISK_HEAD + key, vary, vkey and fields: what head_crc covers */
};

/*
 * Decodes and checks the fixed head p[0..DISK_HEAD): magic, version, zero
 * reserved bits, every length within its cap. Nothing is allocated here,
 * so a hostile length costs nothing.
 */
static int head_decode(const uint8_t *p, struct dhead *h)
{
    uint32_t status;

    if (memcmp(p, DISK_MAGIC, 8) != 0 || get_le32(p + OFF_VERSION) != DISK_VERSION)
        return -1;
    h->flags = get_le32(p + OFF_FLAGS);
    h->key_len = get_le32(p + OFF_KEY_LEN);
    h->vary_len = get_le32(p + OFF_VARY_LEN);
    h->vkey_len = get_le32(p + OFF_VKEY_LEN);
    h->fields_len = get_le32(p + OFF_FIELDS_LEN);
    h->body_len = get_le64(p + OFF_BODY_LEN);
    status = get_le32(p + OFF_STATUS);
    if ((h->flags & ~DISK_FLAG_VARY) != 0 || get_le32(p + OFF_RESERVED) != 0)
        return -1;
    if (h->key_len > DISK_MAX_KEY || h->vary_len > DISK_MAX_VARY ||
        h->vkey_len > DISK_MAX_VKEY || h->fields_len > DISK_MAX_FIELDS ||
        h->body_len > DISK_MAX_BODY)
        return -1;
    /* Without Vary there is no secondary key: one encoding per record. */
    if (!(h->flags & DISK_FLAG_VARY) && (h->vary_len != 0 || h->vkey_len != 0))
        return -1;
    if (status < 100 || status > 999)
        return -1;
    h->status = (int)status;
    h->request_time = u64_to_i64(get_le64(p + OFF_REQUEST_TIME));
    h->response_time = u64_to_i64(get_le64(p + OFF_RESPONSE_TIME));
    h->expires_at = u64_to_i64(get_le64(p + OFF_EXPIRES));
    h->head_crc = get_le32(p + OFF_HEAD_CRC);
    h->body_crc = get_le32(p + OFF_BODY_CRC);
    h->head_len = (size_t)DISK_HEAD + h->key_len + h->vary_len + h->vkey_len + h->fields_len;
    return 0;
}

/* The head checksum over sec[0..head_len): all but the two checksum fields. */
static uint32_t head_crc(const uint8_t *sec, size_t head_len)
{
    uint32_t c = crc_update(CRC_INIT, sec, OFF_HEAD_CRC);
    c = crc_update(c, sec + DISK_HEAD, head_len - DISK_HEAD);
    return c ^ CRC_INIT;
}

/*
 * Checks the head section sec[0..h->head_len) (already decoded into h):
 * its checksum, and that vary, kept as a C string, holds no NUL.
 */
static int head_verify(const struct dhead *h, const uint8_t *sec)
{
    if (head_crc(sec, h->head_len) != h->head_crc)
        return -1;
    if (memchr(sec + DISK_HEAD + h->key_len, 0, h->vary_len) != NULL)
        return -1;
    return 0;
}

/* A NUL-terminated copy of p[0..n); p may hold NULs (keys are byte strings). */
static char *dupmem(const void *p, size_t n)
{
    char *s = xmalloc(n + 1);
    if (n > 0)
        memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* Fills rec's strings and metadata from a verified head section (body left alone). */
static void record_fill(const struct dhead *h, const uint8_t *sec, struct disk_record *rec)
{
    const uint8_t *p = sec + DISK_HEAD;

    rec->key = dupmem(p, h->key_len);
    rec->key_len = h->key_len;
    p += h->key_len;
    if (h->flags & DISK_FLAG_VARY) {
        rec->vary = dupmem(p, h->vary_len);
        rec->vkey = dupmem(p + h->vary_len, h->vkey_len);
        rec->vkey_len = h->vkey_len;
    }
    p += h->vary_len + h->vkey_len;
    rec->fields = dupmem(p, h->fields_len);
    rec->fields_len = h->fields_len;
    rec->status = h->status;
    rec->request_time = h->request_time;
    rec->response_time = h->response_time;
    rec->expires_at = h->expires_at;
}

static void append(struct buf *out, const void *p, size_t n)
{
    /* memcpy from NULL is undefined even for n == 0, and empty parts may be NULL. */
    if (n > 0)
        buf_append(out, p, n);
}

/*
 * Appends rec's head section (fixed head, key, vary, vkey, fields) to out,
 * with body_crc as the body checksum; the body itself is not appended, so
 * the writer can stream a large body from its own memory.
 */
static void head_encode(const struct disk_record *rec, uint32_t body_crc, struct buf *out)
{
    size_t vary_len = rec->vary ? strlen(rec->vary) : 0;
    size_t vkey_len = rec->vary ? rec->vkey_len : 0;
    uint64_t body_len = rec->body ? rec->body->len : 0;
    size_t start = out->len;
    uint8_t *p = (uint8_t *)buf_reserve(out, DISK_HEAD);

    memcpy(p, DISK_MAGIC, 8);
    put_le32(p + OFF_VERSION, DISK_VERSION);
    put_le32(p + OFF_FLAGS, rec->vary ? DISK_FLAG_VARY : 0);
    put_le32(p + OFF_KEY_LEN, (uint32_t)rec->key_len);
    put_le32(p + OFF_VARY_LEN, (uint32_t)vary_len);
    put_le32(p + OFF_VKEY_LEN, (uint32_t)vkey_len);
    put_le32(p + OFF_FIELDS_LEN, (uint32_t)rec->fields_len);
    put_le64(p + OFF_BODY_LEN, body_len);
    put_le32(p + OFF_STATUS, (uint32_t)rec->status);
    put_le32(p + OFF_RESERVED, 0);
    put_le64(p + OFF_REQUEST_TIME, (uint64_t)rec->request_time);
    put_le64(p + OFF_RESPONSE_TIME, (uint64_t)rec->response_time);
    put_le64(p + OFF_EXPIRES, (uint64_t)rec->expires_at);
    put_le32(p + OFF_HEAD_CRC, 0);
    put_le32(p + OFF_BODY_CRC, body_crc);
    buf_commit(out, DISK_HEAD);
    append(out, rec->key, rec->key_len);
    append(out, rec->vary, vary_len);
    append(out, rec->vkey, vkey_len);
    append(out, rec->fields, rec->fields_len);
    /* buf_append may have moved the storage: find the head again. */
    p = (uint8_t *)out->data + start;
    put_le32(p + OFF_HEAD_CRC, head_crc(p, out->len - start));
}

/*
 * Appends the file content for rec to out. rec must be within the format's
 * caps (key 64 KiB, vary 64 KiB, vkey 1 MiB, fields 1 MiB, body 64 GiB,
 * status 100..999); otherwise the output will not parse. A NULL body is
 * written as an empty one.
 */
void disk_record_write(const struct disk_record *rec, struct buf *out)
{
    const char *body = rec->body ? rec->body->data : NULL;
    size_t body_len = rec->body ? rec->body->len : 0;

    head_encode(rec, crc32c(body, body_len), out);
    append(out, body, body_len);
}

/*
 * Parses data[0..len) into rec; see disk.h. On success rec->key and
 * rec->fields are always allocated (possibly empty), rec->vary and
 * rec->vkey exactly when the record has Vary, and rec->body is always a
 * body (possibly of length 0).
 */
int disk_record_parse(const uint8_t *data, size_t len, struct disk_record *rec)
{
    struct dhead h;

    memset(rec, 0, sizeof(*rec));
    if (len < DISK_HEAD || head_decode(data, &h) < 0)
        return -1;
    /* The lengths must account for every byte: no overrun, no trailing garbage. */
    if (len < h.head_len || (uint64_t)(len - h.head_len) != h.body_len)
        return -1;
    if (head_verify(&h, data) < 0)
        return -1;
    if (crc32c(data + h.head_len, (size_t)h.body_len) != h.body_crc)
        return -1;
    record_fill(&h, data, rec);
    rec->body = cbody_create((size_t)h.body_len);
    if (h.body_len > 0)
        memcpy(rec->body->data, data + h.head_len, (size_t)h.body_len);
    return 0;
}

void disk_record_fini(struct disk_record *r)
{
    free(r->key);
    free(r->vary);
    free(r->vkey);
    free(r->fields);
    cbody_unref(r->body);
    memset(r, 0, sizeof(*r));
}

void disk_record_free(struct disk_record *r)
{
    if (r == NULL)
        return;
    disk_record_fini(r);
    free(r);
}

/* ---------------------------------------------------------------------
 * The index and the job queues.
 */

/* One file: one variant of one key. */
struct dent {
    struct evict_node ev;   /* LRU position and charged size; queued while indexed */
    struct dent *hnext;     /* key table chain */
    struct dent *inext;     /* id table chain */
    uint64_t hash;          /* seeded hash of key */
    uint64_t id;
    char *key;              /* owned */
    size_t key_len;
    char *vary;             /* owned, NULL without Vary */
    char *vkey;             /* owned, NULL without Vary */
    size_t vkey_len;
    int64_t expires_at;     /* admin override, -1 none; newer than the file until patched */
    unsigned gen;           /* odd while the writer patches the file */
    int patch_queued;
};

enum wjob_kind {
    JOB_PUT,   /* write obj to a new file and index it */
    JOB_PATCH, /* rewrite the expiry of file id in place */
};

struct wjob {
    struct wjob *next;      /* queue link, disk lock */
    enum wjob_kind kind;
    struct cobj *obj;       /* PUT: a reference, dropped when the job ends */
    uint64_t hash;          /* PUT: seeded hash of obj->key */
    int64_t expires_at;     /* PUT: expiry to record; disk_expire may change it, disk lock */
    int cancelled;          /* PUT: purged while being written, disk lock */
    uint64_t id;            /* PATCH: the file */
    uint64_t cost;          /* bytes counted in disk.pending */
};

struct rjob {
    struct rjob *next;      /* queue link, disk lock */
    uint64_t id;
    struct loop *loop;      /* where cb runs */
    disk_read_cb cb;
    void *arg;
    struct disk_record *rec; /* the result, handed to cb */
};

/* A list of file ids to unlink once the lock is released. */
struct idvec {
    uint64_t *v; /* owned */
    size_t n, cap;
};

struct disk {
    pthread_mutex_t lock;
    pthread_cond_t wcond;       /* the writer waits for jobs */
    pthread_cond_t rcond;       /* the readers wait for jobs */
    int dirfd;                  /* the cache directory; names are relative to it */
    int lockfd;                 /* holds the flock that keeps other processes out */
    char *dir;                  /* owned: the path, for log lines */
    uint64_t seed;              /* for key_hash; random so that clients cannot aim at a chain */
    uint64_t budget;            /* bytes; fixed after open */

    struct dent **kb;           /* owned: key table, chained by dent.hnext */
    size_t nkb;
    struct dent **ib;           /* owned: id table, chained by dent.inext */
    size_t nib;
    uint64_t nobjs;
    struct evict lru;           /* charged sizes and order; used == bytes indexed */
    uint64_t next_seq;          /* the low 56 bits of the next id */

    struct wjob *wq_head, *wq_tail; /* owned: writer queue */
    struct wjob *wcur;          /* the job the writer is on, or NULL */
    uint64_t pending;           /* sum of queued and current job costs */
    struct rjob *rq_head, *rq_tail; /* owned: reader queue */
    size_t nreads;              /* jobs in the reader queue */
    int stopping;

    pthread_t writer;
    pthread_t readers[DISK_READERS];
    int writer_started;
    int nreaders;
    int failing;                /* writer thread only: the last write failed */
    struct disk_stats stats;
};

static uint64_t key_hash(const struct disk *d, const char *key, size_t len)
{
    return hash_mix64(hash_fnv1a(key, len) ^ d->seed);
}

/* An object's secondary key length as stored: none without Vary. */
static size_t obj_vkey_len(const struct cobj *o)
{
    return o->vary && o->vkey ? o->vkey_len : 0;
}

/* A fresh id for a variant: its subdirectory from key and vkey, then the counter. */
static uint64_t new_id(struct disk *d, const struct cobj *o)
{
    uint64_t h = hash_mix64(key_hash(d, o->key, o->key_len) ^
                       hash_fnv1a(o->vkey ? o->vkey : "", obj_vkey_len(o)));
    uint64_t seq = d->next_seq++;
    return (h & ~DISK_SEQ_MASK) | seq;
}

/* "ab/ab0000000000002a" or the same with ".tmp"; out holds at least 32 bytes. */
static void id_name(uint64_t id, int tmp, char *out, size_t cap)
{
    snprintf(out, cap, "%02x/%016" PRIx64 "%s", (unsigned)(id >> DISK_SEQ_BITS), id,
             tmp ? ".tmp" : "");
}

/* Parses a file name of exactly 16 lowercase hex digits. */
static int parse_id(const char *name, uint64_t *id)
{
    uint64_t v = 0;
    size_t i;

    for (i = 0; name[i] != '\0'; i++) {
        char c = name[i];
        if (i == 16)
            return -1;
        if (c >= '0' && c <= '9')
            v = v << 4 | (uint64_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = v << 4 | (uint64_t)(c - 'a' + 10);
        else
            return -1;
    }
    if (i != 16)
        return -1;
    *id = v;
    return 0;
}

static uint64_t charge(uint64_t file_len)
{
    return (file_len + DISK_BLOCK - 1) / DISK_BLOCK * DISK_BLOCK;
}

static void idvec_push(struct idvec *iv, uint64_t id)
{
    if (iv->n == iv->cap) {
        iv->cap = iv->cap ? iv->cap * 2 : 16;
        iv->v = xrealloc(iv->v, iv->cap * sizeof(*iv->v));
    }
    iv->v[iv->n++] = id;
}

/* Unlinks the files in iv (no lock needed: names are never reused) and empties it. */
static void unlink_ids(struct disk *d, struct idvec *iv)
{
    char name[40];

    for (size_t i = 0; i < iv->n; i++) {
        id_name(iv->v[i], 0, name, sizeof(name));
        if (unlinkat(d->dirfd, name, 0) < 0 && errno != ENOENT)
            log_warn("disk: %s: unlink %s", d->dir, name);
    }
    iv->n = 0;
}

static void dent_free(struct dent *e)
{
    free(e->key);
    free(e->vary);
    free(e->vkey);
    free(e);
}

static int same_key(const struct dent *e, uint64_t h, const char *key, size_t len)
{
    return e->hash == h && e->key_len == len && memcmp(e->key, key, len) == 0;
}

static int same_variant(const struct dent *e, uint64_t h, const char *key, size_t len,
                        const char *vkey, size_t vkey_len)
{
    return same_key(e, h, key, len) && e->vkey_len == vkey_len &&
           (vkey_len == 0 || memcmp(e->vkey, vkey, vkey_len) == 0);
}

static int key_match(const char *k, size_t klen, const char *key, size_t len, int prefix)
{
    if (prefix)
        return klen >= len && memcmp(k, key, len) == 0;
    return klen == len && memcmp(k, key, len) == 0;
}

static struct dent *id_find(const struct disk *d, uint64_t id)
{
    struct dent *e = d->ib[hash_mix64(id) & (d->nib - 1)];
    while (e && e->id != id)
        e = e->inext;
    return e;
}

/* Doubles both tables; keeps the load at most 1. */
static void grow(struct disk *d)
{
    size_t n = d->nkb * 2;
    struct dent **kb = xcalloc(n, sizeof(*kb));
    struct dent **ib = xcalloc(n, sizeof(*ib));

    for (size_t i = 0; i < d->nkb; i++) {
        for (struct dent *e = d->kb[i], *next; e; e = next) {
            next = e->hnext;
            e->hnext = kb[e->hash & (n - 1)];
            kb[e->hash & (n - 1)] = e;
        }
        for (struct dent *e = d->ib[i], *next; e; e = next) {
            next = e->inext;
            e->inext = ib[hash_mix64(e->id) & (n - 1)];
            ib[hash_mix64(e->id) & (n - 1)] = e;
        }
    }
    free(d->kb);
    free(d->ib);
    d->kb = kb;
    d->ib = ib;
    d->nkb = d->nib = n;
}

/* Indexes e (hash, id, ev.size set) as the most recently used. */
static void index_add(struct disk *d, struct dent *e)
{
    struct dent **kp, **ip;

    if (d->nobjs >= d->nkb)
        grow(d);
    kp = &d->kb[e->hash & (d->nkb - 1)];
    e->hnext = *kp;
    *kp = e;
    ip = &d->ib[hash_mix64(e->id) & (d->nib - 1)];
    e->inext = *ip;
    *ip = e;
    e->ev.key_hash = e->hash;
    evict_insert(&d->lru, &e->ev);
    d->nobjs++;
}

/* Takes e out of the index (and the LRU, unless evict_victim already did). */
static void index_del(struct disk *d, struct dent *e)
{
    struct dent **pp = &d->kb[e->hash & (d->nkb - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    pp = &d->ib[hash_mix64(e->id) & (d->nib - 1)];
    while (*pp != e)
        pp = &(*pp)->inext;
    *pp = e->inext;
    evict_remove(&d->lru, &e->ev);
    d->nobjs--;
}

/* Removes e, queues its file for unlinking and frees it. */
static void drop_entry(struct disk *d, struct dent *e, struct idvec *gone)
{
    index_del(d, e);
    if (gone)
        idvec_push(gone, e->id);
    dent_free(e);
}

/* Evicts least recently used entries while over budget; their files go to gone. */
static void evict_over_budget(struct disk *d, struct idvec *gone)
{
    struct evict_node *v;

    while ((v = evict_victim(&d->lru)) != NULL) {
        d->stats.evictions++;
        drop_entry(d, container_of(v, struct dent, ev), gone);
    }
}

static void wq_push(struct disk *d, struct wjob *j)
{
    j->next = NULL;
    if (d->wq_tail)
        d->wq_tail->next = j;
    else
        d->wq_head = j;
    d->wq_tail = j;
    d->pending += j->cost;
    pthread_cond_signal(&d->wcond);
}

/* Queues a rewrite of e's expiry, once however many expiries arrive meanwhile. */
static void queue_patch(struct disk *d, struct dent *e)
{
    struct wjob *j;

    if (e->patch_queued)
        return;
    j = xcalloc(1, sizeof(*j));
    j->kind = JOB_PATCH;
    j->id = e->id;
    j->cost = DISK_JOB_COST;
    e->patch_queued = 1;
    wq_push(d, j);
}

static void wjob_free(struct wjob *j)
{
    if (j->obj)
        cobj_unref(j->obj);
    free(j);
}

/* ---------------------------------------------------------------------
 * File I/O. Every path is relative to d->dirfd.
 */

static int write_all(int fd, const void *p, size_t n)
{
    const char *s = p;

    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads up to n bytes at off; returns the count (short only at end of file) or -1. */
static ssize_t pread_all(int fd, void *p, size_t n, uint64_t off)
{
    char *s = p;
    size_t got = 0;

    while (got < n) {
        ssize_t r = pread(fd, s + got, n - got, (off_t)(off + got));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/*
 * Reads and verifies the head section of the open file fd of size bytes:
 * decoded into h, the bytes into *secp (xmalloc'd, h->head_len bytes). The
 * size must be exactly what the lengths say. Returns 0, R_CORRUPT or R_IOERR.
 */
static int read_head(int fd, uint64_t size, struct dhead *h, uint8_t **secp)
{
    uint8_t fixed[DISK_HEAD];
    uint8_t *sec;
    ssize_t r;

    *secp = NULL;
    if (size < DISK_HEAD)
        return R_CORRUPT;
    r = pread_all(fd, fixed, DISK_HEAD, 0);
    if (r < 0)
        return R_IOERR;
    if (r != DISK_HEAD || head_decode(fixed, h) < 0)
        return R_CORRUPT;
    if (size < h->head_len || size - h->head_len != h->body_len)
        return R_CORRUPT;
    sec = xmalloc(h->head_len);
    memcpy(sec, fixed, DISK_HEAD);
    r = pread_all(fd, sec + DISK_HEAD, h->head_len - DISK_HEAD, DISK_HEAD);
    if (r < 0 || (size_t)r != h->head_len - DISK_HEAD || head_verify(h, sec) < 0) {
        free(sec);
        return r < 0 ? R_IOERR : R_CORRUPT;
    }
    *secp = sec;
    return 0;
}

/* Opens file id (flags for openat) and stats it. Returns the fd, R_GONE or R_IOERR. */
static int open_id(struct disk *d, uint64_t id, int flags, struct stat *st)
{
    char name[40];
    int fd;

    id_name(id, 0, name, sizeof(name));
    fd = openat(d->dirfd, name, flags | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? R_GONE : R_IOERR;
    if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        return R_IOERR;
    }
    return fd;
}

/* Reads and verifies file id into a new record. Returns 0, R_GONE, R_CORRUPT or R_IOERR. */
static int read_record(struct disk *d, uint64_t id, struct disk_record **out)
{
    struct disk_record *rec = NULL;
    struct dhead h;
    struct stat st;
    uint8_t *sec = NULL;
    struct cbody *body = NULL;
    ssize_t r;
    int fd, rc, saved;

    *out = NULL;
    fd = open_id(d, id, O_RDONLY, &st);
    if (fd < 0)
        return fd;
    rc = read_head(fd, (uint64_t)st.st_size, &h, &sec);
    if (rc < 0)
        goto fail;
    /* read_head checked the body length against the file size: no hostile allocation. */
    body = cbody_create((size_t)h.body_len);
    r = pread_all(fd, body->data, body->len, h.head_len);
    if (r < 0 || (size_t)r != body->len) {
        rc = r < 0 ? R_IOERR : R_CORRUPT;
        goto fail;
    }
    if (crc32c(body->data, body->len) != h.body_crc) {
        rc = R_CORRUPT;
        goto fail;
    }
    rec = xcalloc(1, sizeof(*rec));
    record_fill(&h, sec, rec);
    rec->body = body;
    body = NULL;
    *out = rec;
    rc = 0;
fail:
    saved = errno; /* for the caller's log line */
    cbody_unref(body);
    free(sec);
    close(fd);
    errno = saved;
    return rc;
}

/*
 * Writes o as file id: "id.tmp" first, renamed into place once complete,
 * so that a name always holds a whole record. No fsync: after a crash a
 * recent file may be missing or damaged, and the checksums catch that.
 * Sets *file_len. Returns 0 or -1 (errno set; nothing left behind).
 */
static int write_file(struct disk *d, uint64_t id, const struct cobj *o, int64_t expires_at,
                      uint64_t *file_len)
{
    struct disk_record view = {
        .key = o->key,
        .key_len = o->key_len,
        .vary = o->vary,
        .vkey = o->vkey,
        .vkey_len = obj_vkey_len(o),
        .status = o->meta.status,
        .request_time = o->meta.request_time,
        .response_time = o->meta.response_time,
        .expires_at = expires_at,
        .fields = o->fields,
        .fields_len = o->fields_len,
        .body = o->body,
    };
    const char *body = o->body ? o->body->data : NULL;
    size_t body_len = o->body ? o->body->len : 0;
    char tmp[40], name[40];
    struct buf head;
    int fd = -1, saved;

    buf_init(&head);
    head_encode(&view, crc32c(body, body_len), &head);
    id_name(id, 1, tmp, sizeof(tmp));
    id_name(id, 0, name, sizeof(name));
    fd = openat(d->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        goto fail;
    if (write_all(fd, buf_head(&head), buf_avail(&head)) < 0 ||
        (body_len > 0 && write_all(fd, body, body_len) < 0))
        goto fail;
    /* close reports delayed write errors on some filesystems (NFS). */
    if (close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (renameat(d->dirfd, tmp, d->dirfd, name) < 0)
        goto fail;
    *file_len = buf_avail(&head) + body_len;
    buf_fini(&head);
    return 0;
fail:
    saved = errno;
    if (fd >= 0)
        close(fd);
    unlinkat(d->dirfd, tmp, 0);
    buf_fini(&head);
    errno = saved;
    return -1;
}

/*
 * Rewrites the expiry of file id in place: expires_at and the head
 * checksum are adjacent, so this is one 12-byte pwrite. A torn write leaves
 * a checksum mismatch, which makes the file count as corrupt later: the
 * object is lost, never served wrong. Returns 0, R_GONE, R_CORRUPT or R_IOERR.
 */
static int patch_file(struct disk *d, uint64_t id, int64_t expires_at)
{
    struct dhead h;
    struct stat st;
    uint8_t *sec = NULL;
    int fd, rc, saved;

    fd = open_id(d, id, O_RDWR, &st);
    if (fd < 0)
        return fd;
    rc = read_head(fd, (uint64_t)st.st_size, &h, &sec);
    if (rc < 0 || h.expires_at == expires_at)
        goto out;
    put_le64(sec + OFF_EXPIRES, (uint64_t)expires_at);
    put_le32(sec + OFF_HEAD_CRC, head_crc(sec, h.head_len));
    if (pwrite(fd, sec + OFF_EXPIRES, 12, OFF_EXPIRES) != 12)
        rc = R_IOERR;
out:
    saved = errno; /* for the caller's log line */
    free(sec);
    close(fd);
    errno = saved;
    return rc;
}

/* ---------------------------------------------------------------------
 * The writer thread.
 */

/* A new index entry for o (hash and id set by the caller). */
static struct dent *dent_from_obj(const struct cobj *o)
{
    struct dent *e = xcalloc(1, sizeof(*e));

    e->key = dupmem(o->key, o->key_len);
    e->key_len = o->key_len;
    if (o->vary) {
        e->vary = xstrdup(o->vary);
        e->vkey = dupmem(o->vkey ? o->vkey : "", obj_vkey_len(o));
        e->vkey_len = obj_vkey_len(o);
    }
    return e;
}

/* Runs a put; called and returns with the lock held, drops it for the I/O. */
static void run_put(struct disk *d, struct wjob *j, struct idvec *gone)
{
    const struct cobj *o = j->obj;
    int64_t written = j->expires_at;
    uint64_t id, file_len = 0;
    struct dent *e;
    int rc;

    if (d->next_seq > DISK_SEQ_MASK) {
        /* 2^56 files: unreachable in practice, but never reuse a name. */
        d->stats.dropped++;
        return;
    }
    id = new_id(d, o);
    pthread_mutex_unlock(&d->lock);
    e = dent_from_obj(o);
    e->hash = j->hash;
    e->id = id;
    rc = write_file(d, id, o, written, &file_len);
    if (rc < 0 && !d->failing) {
        /* Once per run of failures: a full disk would otherwise flood the log. */
        char name[40];
        id_name(id, 1, name, sizeof(name));
        log_warn("disk: %s: write %s", d->dir, name);
    }
    d->failing = rc < 0;
    pthread_mutex_lock(&d->lock);
    if (rc < 0) {
        d->stats.errors++;
        dent_free(e);
        return;
    }
    if (j->cancelled) {
        /* Purged while being written: the file must not outlive the purge. */
        idvec_push(gone, id);
        dent_free(e);
        return;
    }
    for (struct dent *c = d->kb[e->hash & (d->nkb - 1)], *next; c; c = next) {
        next = c->hnext;
        if (same_variant(c, e->hash, e->key, e->key_len, e->vkey, e->vkey_len))
            drop_entry(d, c, gone);
    }
    e->expires_at = j->expires_at;
    e->ev.size = charge(file_len);
    index_add(d, e);
    d->stats.writes++;
    /* disk_expire ran while the file was being written: bring the file up to date. */
    if (j->expires_at != written)
        queue_patch(d, e);
    evict_over_budget(d, gone);
}

/* Runs a patch; called and returns with the lock held, drops it for the I/O. */
static void run_patch(struct disk *d, struct wjob *j, struct idvec *gone)
{
    struct dent *e = id_find(d, j->id);
    int64_t expires_at;
    int rc;

    if (e == NULL)
        return;
    e->patch_queued = 0;
    e->gen++;
    expires_at = e->expires_at;
    pthread_mutex_unlock(&d->lock);
    rc = patch_file(d, j->id, expires_at);
    if (rc == R_IOERR)
        log_warn("disk: %s: patch expiry of %016" PRIx64, d->dir, j->id);
    pthread_mutex_lock(&d->lock);
    /* Ids are never reused, so finding it again means the same entry. */
    e = id_find(d, j->id);
    if (e)
        e->gen++;
    if (rc == R_IOERR) {
        d->stats.errors++;
    } else if (e && (rc == R_CORRUPT || rc == R_GONE)) {
        d->stats.errors++;
        drop_entry(d, e, rc == R_CORRUPT ? gone : NULL);
    }
}

static void *writer_main(void *arg)
{
    struct disk *d = arg;
    struct idvec gone = {0};

    pthread_mutex_lock(&d->lock);
    for (;;) {
        struct wjob *j;

        while (d->wq_head == NULL && !d->stopping)
            pthread_cond_wait(&d->wcond, &d->lock);
        /* On stop, the queue is drained first: disk_close finishes queued writes. */
        j = d->wq_head;
        if (j == NULL)
            break;
        d->wq_head = j->next;
        if (d->wq_head == NULL)
            d->wq_tail = NULL;
        d->wcur = j;
        if (j->kind == JOB_PUT)
            run_put(d, j, &gone);
        else
            run_patch(d, j, &gone);
        d->wcur = NULL;
        d->pending -= j->cost;
        pthread_mutex_unlock(&d->lock);
        unlink_ids(d, &gone);
        wjob_free(j);
        pthread_mutex_lock(&d->lock);
    }
    pthread_mutex_unlock(&d->lock);
    free(gone.v);
    return NULL;
}

/* ---------------------------------------------------------------------
 * The reader threads.
 */

static void read_deliver(void *arg)
{
    struct rjob *j = arg;
    j->cb(j->arg, j->rec);
    free(j);
}

/* Reads file id for a reader job; NULL when it is gone, corrupt or unreadable. */
static struct disk_record *do_read(struct disk *d, uint64_t id)
{
    struct disk_record *rec;
    struct dent *e;
    unsigned gen;
    char name[40];

    for (int attempt = 0; attempt < DISK_READ_TRIES; attempt++) {
        pthread_mutex_lock(&d->lock);
        e = id_find(d, id);
        if (e == NULL) {
            /* Purged, replaced or evicted since the lookup. */
            pthread_mutex_unlock(&d->lock);
            return NULL;
        }
        gen = e->gen;
        pthread_mutex_unlock(&d->lock);

        int rc = read_record(d, id, &rec);

        pthread_mutex_lock(&d->lock);
        e = id_find(d, id);
        if (rc == 0) {
            /* The index holds the newest admin expiry; the file may lag behind. */
            if (e)
                rec->expires_at = e->expires_at;
            d->stats.reads++;
            pthread_mutex_unlock(&d->lock);
            return rec;
        }
        if (rc == R_CORRUPT && e && (gen != e->gen || (gen & 1))) {
            /* The writer patched the file while we read it: not corruption. */
            pthread_mutex_unlock(&d->lock);
            nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
            continue;
        }
        if (rc == R_IOERR) {
            d->stats.errors++;
            pthread_mutex_unlock(&d->lock);
            id_name(id, 0, name, sizeof(name));
            log_warn("disk: %s: read %s", d->dir, name);
            return NULL;
        }
        if (e == NULL) {
            /* Removed meanwhile by someone who also unlinks the file. */
            pthread_mutex_unlock(&d->lock);
            return NULL;
        }
        /* Corrupt, or deleted behind our back: forget it; whoever removes the entry unlinks. */
        d->stats.errors++;
        index_del(d, e);
        dent_free(e);
        pthread_mutex_unlock(&d->lock);
        if (rc == R_CORRUPT) {
            id_name(id, 0, name, sizeof(name));
            log_warnx("disk: %s: %s is corrupt, removed", d->dir, name);
            unlinkat(d->dirfd, name, 0);
        }
        return NULL;
    }
    return NULL;
}

static void *reader_main(void *arg)
{
    struct disk *d = arg;

    pthread_mutex_lock(&d->lock);
    for (;;) {
        struct rjob *j;

        while (d->rq_head == NULL && !d->stopping)
            pthread_cond_wait(&d->rcond, &d->lock);
        j = d->rq_head;
        if (j == NULL)
            break;
        d->rq_head = j->next;
        if (d->rq_head == NULL)
            d->rq_tail = NULL;
        d->nreads--;
        pthread_mutex_unlock(&d->lock);
        j->rec = do_read(d, j->id);
        loop_post(j->loop, read_deliver, j);
        pthread_mutex_lock(&d->lock);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

/* ---------------------------------------------------------------------
 * Open: scan and rebuild the index.
 */

struct scan {
    struct dent **v; /* owned array; entries owned until indexed */
    size_t n, cap;
    uint64_t corrupt, tmp, foreign;
};

/* Looks at one directory entry of subdirectory sub (fd sfd). */
static void scan_entry(struct disk *d, struct scan *sc, unsigned sub, int sfd, const char *name)
{
    struct dhead h;
    struct stat st;
    struct dent *e;
    uint8_t *sec = NULL;
    uint64_t id;
    size_t len = strlen(name);
    int fd, rc;

    if (name[0] == '.')
        return;
    if (len > 4 && strcmp(name + len - 4, ".tmp") == 0) {
        /* Left by a crash mid-write; never complete, never renamed. */
        if (unlinkat(sfd, name, 0) == 0)
            sc->tmp++;
        return;
    }
    if (parse_id(name, &id) < 0 || (id >> DISK_SEQ_BITS) != sub || (id & DISK_SEQ_MASK) == 0) {
        /* Not a name we create: leave it alone rather than delete what we do not own. */
        sc->foreign++;
        return;
    }
    /* Even a file we fail to read keeps its number: a new file must never take its name. */
    if ((id & DISK_SEQ_MASK) >= d->next_seq)
        d->next_seq = (id & DISK_SEQ_MASK) + 1;
    fd = openat(sfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        log_warn("disk: %s: open %02x/%s", d->dir, sub, name);
        d->stats.errors++;
        return;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        sc->foreign++;
        return;
    }
    rc = read_head(fd, (uint64_t)st.st_size, &h, &sec);
    close(fd);
    if (rc == R_IOERR) {
        log_warn("disk: %s: read %02x/%s", d->dir, sub, name);
        d->stats.errors++;
        return;
    }
    if (rc == R_CORRUPT) {
        unlinkat(sfd, name, 0);
        sc->corrupt++;
        d->stats.errors++;
        return;
    }
    e = xcalloc(1, sizeof(*e));
    e->key = dupmem(sec + DISK_HEAD, h.key_len);
    e->key_len = h.key_len;
    if (h.flags & DISK_FLAG_VARY) {
        e->vary = dupmem(sec + DISK_HEAD + h.key_len, h.vary_len);
        e->vkey = dupmem(sec + DISK_HEAD + h.key_len + h.vary_len, h.vkey_len);
        e->vkey_len = h.vkey_len;
    }
    e->hash = key_hash(d, e->key, e->key_len);
    e->id = id;
    e->expires_at = h.expires_at;
    e->ev.size = charge((uint64_t)st.st_size);
    free(sec);
    if (sc->n == sc->cap) {
        sc->cap = sc->cap ? sc->cap * 2 : 1024;
        sc->v = xrealloc(sc->v, sc->cap * sizeof(*sc->v));
    }
    sc->v[sc->n++] = e;
}

static int by_seq(const void *a, const void *b)
{
    uint64_t x = (*(struct dent *const *)a)->id & DISK_SEQ_MASK;
    uint64_t y = (*(struct dent *const *)b)->id & DISK_SEQ_MASK;
    return x < y ? -1 : x > y;
}

/*
 * Creates the subdirectories, reads every file's head and indexes the good
 * ones, oldest first so that the LRU starts in write order, then evicts
 * down to the budget. Runs before the threads start, so the lock is not
 * needed. Returns 0, or -1 with a message in err.
 */
static int scan(struct disk *d, char *err, size_t errlen)
{
    struct scan sc = {0};
    struct idvec gone = {0};
    char sub[8];
    int rc = -1;

    for (unsigned i = 0; i < 256; i++) {
        DIR *dp;
        struct dirent *de;
        int sfd;

        snprintf(sub, sizeof(sub), "%02x", i);
        if (mkdirat(d->dirfd, sub, 0700) < 0 && errno != EEXIST) {
            snprintf(err, errlen, "disk: %s: mkdir %s: %s", d->dir, sub, strerror(errno));
            goto fail;
        }
        sfd = openat(d->dirfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (sfd < 0 || (dp = fdopendir(sfd)) == NULL) {
            snprintf(err, errlen, "disk: %s: open %s: %s", d->dir, sub, strerror(errno));
            if (sfd >= 0)
                close(sfd);
            goto fail;
        }
        while ((de = readdir(dp)) != NULL)
            scan_entry(d, &sc, i, sfd, de->d_name);
        closedir(dp);
    }
    if (sc.n > 0)
        qsort(sc.v, sc.n, sizeof(*sc.v), by_seq);
    for (size_t i = 0; i < sc.n; i++) {
        struct dent *e = sc.v[i];
        /* A crash between rename and unlink leaves two files for one variant: the newer wins. */
        for (struct dent *c = d->kb[e->hash & (d->nkb - 1)], *next; c; c = next) {
            next = c->hnext;
            if (same_variant(c, e->hash, e->key, e->key_len, e->vkey, e->vkey_len))
                drop_entry(d, c, &gone);
        }
        index_add(d, e);
        sc.v[i] = NULL;
    }
    evict_over_budget(d, &gone);
    unlink_ids(d, &gone);
    log_info("disk: %s: %" PRIu64 " objects, %" PRIu64 " bytes; removed %" PRIu64
             " corrupt and %" PRIu64 " temporary files; %" PRIu64 " unknown names ignored",
             d->dir, d->nobjs, d->lru.used, sc.corrupt, sc.tmp, sc.foreign);
    rc = 0;
fail:
    for (size_t i = 0; i < sc.n; i++)
        if (sc.v[i])
            dent_free(sc.v[i]);
    free(sc.v);
    free(gone.v);
    return rc;
}

/* Stops and joins the threads, then frees everything; handles a half-built d. */
static void disk_free(struct disk *d)
{
    pthread_mutex_lock(&d->lock);
    d->stopping = 1;
    pthread_cond_broadcast(&d->wcond);
    pthread_cond_broadcast(&d->rcond);
    pthread_mutex_unlock(&d->lock);
    if (d->writer_started)
        pthread_join(d->writer, NULL);
    for (int i = 0; i < d->nreaders; i++)
        pthread_join(d->readers[i], NULL);
    /* The threads drained both queues; nothing is left but the index. */
    for (size_t i = 0; i < d->nkb; i++) {
        for (struct dent *e = d->kb[i], *next; e; e = next) {
            next = e->hnext;
            dent_free(e);
        }
    }
    evict_fini(&d->lru);
    free(d->kb);
    free(d->ib);
    if (d->lockfd >= 0)
        close(d->lockfd);
    if (d->dirfd >= 0)
        close(d->dirfd);
    pthread_cond_destroy(&d->rcond);
    pthread_cond_destroy(&d->wcond);
    pthread_mutex_destroy(&d->lock);
    free(d->dir);
    free(d);
}

struct disk *disk_open(const char *dir, uint64_t budget, char *err, size_t errlen)
{
    struct disk *d = xcalloc(1, sizeof(*d));
    int rc;

    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->wcond, NULL);
    pthread_cond_init(&d->rcond, NULL);
    d->dirfd = d->lockfd = -1;
    d->dir = xstrdup(dir);
    d->budget = budget;
    d->nkb = d->nib = 1024;
    d->kb = xcalloc(d->nkb, sizeof(*d->kb));
    d->ib = xcalloc(d->nib, sizeof(*d->ib));
    evict_init(&d->lru, EVICT_LRU, budget);
    d->next_seq = 1;
    if (RAND_bytes((unsigned char *)&d->seed, sizeof(d->seed)) != 1)
        d->seed = time_mono_ns();

    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "disk: mkdir %s: %s", dir, strerror(errno));
        goto fail;
    }
    d->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d->dirfd < 0) {
        snprintf(err, errlen, "disk: open %s: %s", dir, strerror(errno));
        goto fail;
    }
    /* Two processes on one directory would delete each other's files as unindexed. */
    d->lockfd = openat(d->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (d->lockfd < 0 || flock(d->lockfd, LOCK_EX | LOCK_NB) < 0) {
        snprintf(err, errlen, "disk: %s: lock: %s", dir,
                 errno == EWOULDBLOCK ? "in use by another process" : strerror(errno));
        goto fail;
    }
    if (scan(d, err, errlen) < 0)
        goto fail;
    rc = pthread_create(&d->writer, NULL, writer_main, d);
    if (rc != 0) {
        snprintf(err, errlen, "disk: %s: start writer: %s", dir, strerror(rc));
        goto fail;
    }
    d->writer_started = 1;
    for (int i = 0; i < DISK_READERS; i++) {
        rc = pthread_create(&d->readers[i], NULL, reader_main, d);
        if (rc != 0) {
            snprintf(err, errlen, "disk: %s: start reader: %s", dir, strerror(rc));
            goto fail;
        }
        d->nreaders++;
    }
    return d;
fail:
    disk_free(d);
    return NULL;
}

void disk_close(struct disk *d)
{
    if (d)
        disk_free(d);
}

/*
 * Queues o for writing; see disk.h. Objects over a format cap or the whole
 * budget, and puts arriving while more than DISK_PENDING_MAX bytes are
 * queued, are dropped and counted in stats.dropped: the memory tier still
 * has the object, so a lost disk copy only costs a later origin fetch,
 * whereas blocking would stall a loop thread. The queue holds references,
 * not copies, so the limit bounds memory that eviction cannot free.
 */
void disk_put(struct disk *d, const struct cobj *o)
{
    size_t vary_len = o->vary ? strlen(o->vary) : 0;
    size_t vkey_len = obj_vkey_len(o);
    uint64_t body_len = o->body ? o->body->len : 0;
    struct wjob *j = NULL;
    int ok;

    ok = o->key_len <= DISK_MAX_KEY && vary_len <= DISK_MAX_VARY && vkey_len <= DISK_MAX_VKEY &&
         o->fields_len <= DISK_MAX_FIELDS && body_len <= DISK_MAX_BODY &&
         o->meta.status >= 100 && o->meta.status <= 999 &&
         charge(DISK_HEAD + o->key_len + vary_len + vkey_len + o->fields_len + body_len) <=
             d->budget;
    if (ok) {
        j = xcalloc(1, sizeof(*j));
        j->kind = JOB_PUT;
        j->hash = key_hash(d, o->key, o->key_len);
        j->expires_at = atomic_load(&o->expires_at);
        j->cost = DISK_JOB_COST + o->key_len + vary_len + vkey_len + o->fields_len + body_len;
    }
    pthread_mutex_lock(&d->lock);
    if (!ok || d->pending >= DISK_PENDING_MAX || d->stopping) {
        d->stats.dropped++;
        pthread_mutex_unlock(&d->lock);
        free(j);
        return;
    }
    /* The object is immutable and its count atomic: taking a reference does not modify it. */
    j->obj = cobj_ref((struct cobj *)o);
    wq_push(d, j);
    pthread_mutex_unlock(&d->lock);
}

uint64_t disk_lookup(struct disk *d, const char *key, size_t key_len,
                     const struct http1_msg *req)
{
    uint64_t h = key_hash(d, key, key_len);
    uint64_t found = 0;
    struct buf vk;

    buf_init(&vk);
    pthread_mutex_lock(&d->lock);
    for (struct dent *e = d->kb[h & (d->nkb - 1)]; e; e = e->hnext) {
        if (!same_key(e, h, key, key_len))
            continue;
        if (!cache_vary_matches(e->vary, e->vkey, e->vkey_len, req, &vk))
            continue;
        found = e->id;
        evict_touch(&d->lru, &e->ev);
        break;
    }
    pthread_mutex_unlock(&d->lock);
    buf_fini(&vk);
    return found;
}

void disk_read_async(struct disk *d, uint64_t id, struct loop *loop, disk_read_cb cb, void *arg)
{
    struct rjob *j = xcalloc(1, sizeof(*j));

    j->id = id;
    j->loop = loop;
    j->cb = cb;
    j->arg = arg;
    pthread_mutex_lock(&d->lock);
    if (d->nreads >= DISK_READS_MAX) {
        /* The disk is not keeping up: a miss now beats a long queue. */
        pthread_mutex_unlock(&d->lock);
        loop_post(loop, read_deliver, j);
        return;
    }
    j->next = NULL;
    if (d->rq_tail)
        d->rq_tail->next = j;
    else
        d->rq_head = j;
    d->rq_tail = j;
    d->nreads++;
    pthread_cond_signal(&d->rcond);
    pthread_mutex_unlock(&d->lock);
}

/*
 * Removes matching entries (their files are unlinked by the caller's
 * thread after the lock is released, which an admin operation can afford)
 * and cancels matching puts that are queued or being written, so that a
 * purge also covers objects on their way to disk.
 */
uint64_t disk_purge(struct disk *d, const char *key, size_t key_len, int prefix)
{
    struct idvec gone = {0};
    struct wjob *cancelled = NULL, **jp;
    uint64_t n = 0;

    pthread_mutex_lock(&d->lock);
    if (!prefix) {
        uint64_t h = key_hash(d, key, key_len);
        for (struct dent *e = d->kb[h & (d->nkb - 1)], *next; e; e = next) {
            next = e->hnext;
            if (same_key(e, h, key, key_len)) {
                drop_entry(d, e, &gone);
                n++;
            }
        }
    } else {
        for (size_t i = 0; i < d->nkb; i++) {
            for (struct dent *e = d->kb[i], *next; e; e = next) {
                next = e->hnext;
                if (key_match(e->key, e->key_len, key, key_len, 1)) {
                    drop_entry(d, e, &gone);
                    n++;
                }
            }
        }
    }
    d->wq_tail = NULL;
    for (jp = &d->wq_head; *jp;) {
        struct wjob *j = *jp;
        if (j->kind == JOB_PUT && key_match(j->obj->key, j->obj->key_len, key, key_len, prefix)) {
            *jp = j->next;
            d->pending -= j->cost;
            j->next = cancelled;
            cancelled = j;
        } else {
            d->wq_tail = j;
            jp = &j->next;
        }
    }
    if (d->wcur && d->wcur->kind == JOB_PUT &&
        key_match(d->wcur->obj->key, d->wcur->obj->key_len, key, key_len, prefix))
        d->wcur->cancelled = 1;
    pthread_mutex_unlock(&d->lock);
    unlink_ids(d, &gone);
    free(gone.v);
    while (cancelled) {
        struct wjob *j = cancelled;
        cancelled = j->next;
        wjob_free(j);
    }
    return n;
}

/*
 * Sets the expiry in the index at once (reads return it from there) and
 * queues an in-place patch of each file so that it survives a restart;
 * queued and in-flight puts of the same keys get it too.
 */
uint64_t disk_expire(struct disk *d, const char *key, size_t key_len, int prefix,
                     int64_t expires_at)
{
    uint64_t h = key_hash(d, key, key_len);
    uint64_t n = 0;
    size_t first, end;

    pthread_mutex_lock(&d->lock);
    /* An exact key lives in one bucket; a prefix needs them all. */
    first = prefix ? 0 : h & (d->nkb - 1);
    end = prefix ? d->nkb : first + 1;
    for (size_t i = first; i < end; i++) {
        for (struct dent *e = d->kb[i]; e; e = e->hnext) {
            if (key_match(e->key, e->key_len, key, key_len, prefix)) {
                e->expires_at = expires_at;
                queue_patch(d, e);
                n++;
            }
        }
    }
    for (struct wjob *j = d->wq_head; j; j = j->next)
        if (j->kind == JOB_PUT && key_match(j->obj->key, j->obj->key_len, key, key_len, prefix))
            j->expires_at = expires_at;
    if (d->wcur && d->wcur->kind == JOB_PUT &&
        key_match(d->wcur->obj->key, d->wcur->obj->key_len, key, key_len, prefix))
        d->wcur->expires_at = expires_at;
    pthread_mutex_unlock(&d->lock);
    return n;
}

void disk_get_stats(struct disk *d, struct disk_stats *st)
{
    pthread_mutex_lock(&d->lock);
    *st = d->stats;
    st->objects = d->nobjs;
    st->bytes = d->lru.used;
    pthread_mutex_unlock(&d->lock);
}
