/*
 * feed -- the learned-route hand-over between the peer and router roles
 * (see feed.h). A process-wide current snapshot and a small table of
 * subscribers, touched only from the main loop's thread.
 */
#include "lib/feed.h"

#include <stdlib.h>

#include "lib/util.h"

#define MAX_SUBS 8

static struct feed_snapshot *current;
static uint64_t next_version = 1;
static int publisher;
static struct {
    feed_cb cb;
    void *arg;
} subs[MAX_SUBS];

struct feed_snapshot *feed_snapshot_create(void)
{
    struct feed_snapshot *s = xcalloc(1, sizeof(*s));
    atomic_init(&s->refs, 1);
    return s;
}

struct feed_snapshot *feed_ref(struct feed_snapshot *s)
{
    if (s)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void feed_unref(struct feed_snapshot *s)
{
    if (s == NULL || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < s->nunits; i++)
        free(s->units[i].text);
    free(s->units);
    free(s->areas);
    free(s->targets);
    free(s);
}

void feed_publish(struct feed_snapshot *s)
{
    if (s)
        s->version = next_version++;
    struct feed_snapshot *old = current;
    current = s;
    feed_unref(old);
    for (unsigned i = 0; i < MAX_SUBS; i++)
        if (subs[i].cb)
            subs[i].cb(subs[i].arg);
}

struct feed_snapshot *feed_current(void)
{
    return feed_ref(current);
}

int feed_subscribe(feed_cb cb, void *arg)
{
    for (unsigned i = 0; i < MAX_SUBS; i++) {
        if (subs[i].cb == NULL) {
            subs[i].cb = cb;
            subs[i].arg = arg;
            return 0;
        }
    }
    return -1;
}

void feed_unsubscribe(feed_cb cb, void *arg)
{
    for (unsigned i = 0; i < MAX_SUBS; i++)
        if (subs[i].cb == cb && subs[i].arg == arg)
            subs[i].cb = NULL;
}

int feed_has_subscribers(void)
{
    for (unsigned i = 0; i < MAX_SUBS; i++)
        if (subs[i].cb)
            return 1;
    return 0;
}

void feed_set_publisher(int present)
{
    publisher = present;
}

int feed_has_publisher(void)
{
    return publisher;
}
