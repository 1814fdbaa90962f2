/*
 * util -- allocation that cannot fail, small string and time helpers.
 *
 * Out of memory is fatal: every x* allocator logs and aborts instead of
 * returning NULL, so callers never test for it. Anything sized by a peer
 * must be capped by the caller before it reaches these.
 */
#ifndef FERRY_LIB_UTIL_H
#define FERRY_LIB_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Formats like asprintf into a fresh string; never returns NULL. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Case-insensitive compare of s[0..len) with a NUL-terminated lit. */
static inline int str_ieq(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && strncasecmp(s, lit, len) == 0;
}

/* Wall clock in seconds and monotonic clock in milliseconds/nanoseconds. */
int64_t time_wall(void);
/* Wall-clock time in milliseconds (unix epoch). */
uint64_t time_wall_ms(void);
int64_t time_mono_ms(void);
uint64_t time_mono_ns(void);

/* Overwrites n bytes at p in a way the compiler cannot drop (key material). */
void mem_wipe(void *p, size_t n);

/* 64-bit FNV-1a; not for keys an attacker picks (use hash_keyed there). */
uint64_t hash_fnv1a(const void *p, size_t n);

/* The value of a hex digit, or -1. */
static inline int hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* xorshift64*: advances *state (never 0) and returns the next value. For jitter, not secrets. */
static inline uint64_t rand_xorshift(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * UINT64_C(2685821657736338717);
}

/* The splitmix64 finaliser: every input bit reaches every output bit (seeded tables). */
static inline uint64_t hash_mix64(uint64_t h)
{
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

#endif
