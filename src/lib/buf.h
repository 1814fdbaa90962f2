/*
 * buf -- a growable byte buffer with a read offset, and iov slices.
 *
 * Invariant: off <= len <= cap; the readable bytes are data[off..len).
 * Appends grow the buffer (xrealloc); buf_consume advances off, and the
 * space before off is reclaimed by buf_compact or when the buffer
 * empties. A peer-sized amount must be capped by the caller before it
 * reaches buf_reserve.
 */
#ifndef FERRY_LIB_BUF_H
#define FERRY_LIB_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data; /* owned */
    size_t off;
    size_t len;
    size_t cap;
};

/* A non-owning slice. */
struct slice {
    const char *p;
    size_t n;
};

void buf_init(struct buf *b);
void buf_fini(struct buf *b);
/* Ensures at least n writable bytes after len; returns data + len. */
char *buf_reserve(struct buf *b, size_t n);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Marks n more bytes after len as written (after buf_reserve). */
void buf_commit(struct buf *b, size_t n);
/* Drops n readable bytes from the front. */
void buf_consume(struct buf *b, size_t n);
/* Moves the readable bytes to the start of the storage. */
void buf_compact(struct buf *b);
void buf_reset(struct buf *b);

static inline size_t buf_avail(const struct buf *b)
{
    return b->len - b->off;
}

/* An empty, NUL-terminated head for buffers that never allocated. */
extern char buf__empty[1];

static inline char *buf_head(const struct buf *b)
{
    return b->data ? b->data + b->off : buf__empty;
}

#endif
