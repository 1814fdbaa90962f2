/*
 * disk -- the cache's disk tier: complete responses written to files
 * under one directory, indexed in memory, found again after a restart.
 *
 * Write-through: every object the memory tier stores is handed to
 * disk_put; a writer thread serialises it to a temporary file, fsyncs
 * nothing (a crash may lose the newest objects, never corrupt old ones)
 * and renames it into place. At open, the directory is scanned and each
 * file's header read to rebuild the index; files that do not parse are
 * deleted and counted.
 *
 * Lookups are two steps so that no loop thread ever blocks on the disk:
 * disk_lookup consults the in-memory index (which variant of a key, by its
 * Vary secondary key) and disk_read_async reads the file on a reader
 * thread and posts the result to the caller's loop.
 *
 * The byte budget is enforced by deleting the least recently used files.
 * Thread-safe: one mutex guards the index; file I/O runs on the disk's own
 * threads. The file format is specified in docs/disk-format.md and its
 * parser (disk_record_parse) has a fuzz target.
 */
#ifndef FERRY_CACHE_DISK_H
#define FERRY_CACHE_DISK_H

#include <stddef.h>
#include <stdint.h>

#include "cache/store.h"
#include "http/http1.h"
#include "lib/loop.h"

struct disk;

/* What a file holds: enough to rebuild a struct cobj. */
struct disk_record {
    char *key;            /* owned */
    size_t key_len;
    char *vary;           /* owned, NULL when the response had no Vary */
    char *vkey;           /* owned, NULL with vary */
    size_t vkey_len;
    int status;
    int64_t request_time;
    int64_t response_time;
    int64_t expires_at;   /* admin override, -1 none */
    char *fields;         /* owned: "Name: value\r\n" lines */
    size_t fields_len;
    struct cbody *body;   /* a reference */
};

/* Releases what rec holds (strings, body reference) and zeroes it; the
 * struct itself stays (use after disk_record_parse on a caller's struct). */
void disk_record_fini(struct disk_record *r);
/* disk_record_fini, then free(r): for a record from disk_read_async. NULL is ignored. */
void disk_record_free(struct disk_record *r);

/*
 * Serialises rec into out (the file's whole content). Pure.
 */
void disk_record_write(const struct disk_record *rec, struct buf *out);
/*
 * Parses a file's content data[0..len) into rec (allocating its fields).
 * Returns 0, or -1 when the data is not a complete, valid record (bad
 * magic or version, lengths that overrun, trailing garbage, checksum
 * mismatch). Never reads outside data[0..len). On 0 the caller releases
 * rec with disk_record_fini; on -1 rec is zeroed and holds nothing.
 */
int disk_record_parse(const uint8_t *data, size_t len, struct disk_record *rec);

struct disk_stats {
    uint64_t objects;
    uint64_t bytes;
    uint64_t writes;
    uint64_t reads;
    uint64_t evictions;
    uint64_t errors;     /* I/O failures and corrupt files removed */
    uint64_t dropped;    /* puts not written: queue full, over a limit or the budget */
};

/*
 * Opens (creating if needed) the directory dir with a byte budget, scans
 * it and starts the writer/reader threads. Blocks during the scan.
 * Returns NULL and a message in err on failure.
 */
struct disk *disk_open(const char *dir, uint64_t budget, char *err, size_t errlen);
/*
 * Stops the threads (pending writes are finished; pending reads complete
 * and their callbacks are posted, so their loops must outlive this call)
 * and frees the index.
 */
void disk_close(struct disk *d);

/*
 * Queues a record built from o for writing (takes a reference on o and its
 * body; never blocks). Replaces the same key and secondary key.
 */
void disk_put(struct disk *d, const struct cobj *o);

/*
 * Finds the variant of key that matches req. Returns an opaque file id
 * (> 0) or 0 when the disk has none. In-memory only; never blocks.
 */
uint64_t disk_lookup(struct disk *d, const char *key, size_t key_len,
                     const struct http1_msg *req);

typedef void (*disk_read_cb)(void *arg, struct disk_record *rec);

/*
 * Reads file id on a reader thread, then calls cb(arg, rec) on loop
 * (rec is NULL if the file vanished or is corrupt, or too many reads are
 * queued; otherwise the callee owns rec and frees it with disk_record_free).
 * cb always runs exactly once, never from within this call.
 */
void disk_read_async(struct disk *d, uint64_t id, struct loop *loop, disk_read_cb cb, void *arg);

/* Removes the variants of key, or every key with that prefix. Returns how many. */
uint64_t disk_purge(struct disk *d, const char *key, size_t key_len, int prefix);
/* Records an admin expiry on the same entries (kept in the index and rewritten lazily). */
uint64_t disk_expire(struct disk *d, const char *key, size_t key_len, int prefix,
                     int64_t expires_at);
void disk_get_stats(struct disk *d, struct disk_stats *st);

#endif
