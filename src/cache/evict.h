/*
 * evict -- the memory tier's eviction policy, over intrusive nodes.
 *
 * Two policies behind one interface:
 *   EVICT_LRU      plain least-recently-used, the baseline;
 *   EVICT_S3FIFO   S3-FIFO (Yang et al., SOSP 2023): a small FIFO queue
 *                  (10% of the budget) that filters one-hit wonders, a main
 *                  FIFO with 2-bit frequency counters and reinsertion, and a
 *                  ghost queue of key hashes (as many entries as the main
 *                  queue holds objects) that sends returning keys straight
 *                  to main.
 * The policy owns no objects: the store embeds a struct evict_node in each
 * cached object, inserts it, reports hits, and asks for victims while over
 * budget. Not thread-safe: the caller serialises access (the store lock).
 */
#ifndef FERRY_CACHE_EVICT_H
#define FERRY_CACHE_EVICT_H

#include <stddef.h>
#include <stdint.h>

enum evict_kind {
    EVICT_LRU = 1,
    EVICT_S3FIFO = 2,
};

struct evict_node {
    struct evict_node *prev, *next; /* queue links, owned by the policy */
    uint64_t key_hash;              /* set by the caller before insert */
    uint64_t size;                  /* bytes charged, set by the caller before insert */
    uint8_t freq;                   /* private */
    uint8_t queue;                  /* private: which queue holds it, 0 = none */
};

struct evict_queue {
    struct evict_node head;         /* sentinel of a circular list */
    uint64_t bytes;
    uint64_t count;
};

struct evict {
    enum evict_kind kind;
    uint64_t budget;                /* bytes */
    uint64_t used;                  /* bytes in all queues */
    struct evict_queue small, main; /* LRU uses main only */
    /*
     * ghost (S3-FIFO only): key hashes in FIFO order in a ring of
     * ghost_cap slots (a power of two), found through an open-addressing
     * index of 2 * ghost_cap slots holding ring positions plus one.
     */
    uint64_t *ghost_ring;           /* owned: key hashes, oldest at ghost_head */
    uint32_t *ghost_index;          /* owned: 0 = empty, else ring position + 1 */
    size_t ghost_cap, ghost_len, ghost_head;
};

/* Parses "lru" or "s3fifo". Returns 0 or -1. */
int evict_kind_parse(const char *name, enum evict_kind *kind);

/* Initialises e for a byte budget. Allocates the ghost table (xmalloc). */
void evict_init(struct evict *e, enum evict_kind kind, uint64_t budget);
/* Frees what evict_init allocated. Nodes still queued are simply forgotten. */
void evict_fini(struct evict *e);

/* Queues a new node (n->key_hash and n->size set, n not queued). */
void evict_insert(struct evict *e, struct evict_node *n);
/* Records a hit on a queued node. O(1). */
void evict_touch(struct evict *e, struct evict_node *n);
/* Takes a queued node out (purge, replacement). Not recorded as a ghost. */
void evict_remove(struct evict *e, struct evict_node *n);
/*
 * While e->used > e->budget, picks the next victim, takes it out of the
 * queues and returns it (the caller frees the object); returns NULL when
 * within budget. S3-FIFO may move nodes between queues before choosing.
 */
struct evict_node *evict_victim(struct evict *e);

#endif
