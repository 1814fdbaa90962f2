/*
 * loop -- see loop.h. epoll in level-triggered mode: a watcher that does
 * not drain its fd is simply called again next iteration, which keeps
 * each callback simple and fair (one read per connection per turn).
 */
#include "lib/loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

#define LOOP_MAX_EVENTS 256

struct call {
    loop_call_cb fn;
    void *arg;
};

struct callq {
    struct call *v; /* owned */
    size_t len, cap;
};

struct loop {
    int epfd;
    int wakefd;
    struct loop_io wake_io;
    _Atomic int stopping;
    int64_t now_ms;

    struct loop_timer **heap; /* owned array; timers owned by their owners */
    size_t heap_len, heap_cap;
    uint64_t timer_round;      /* bumped at each run of the due timers */

    struct loop_io *dirty;     /* watchers whose events changed this iteration */
    struct callq deferred;     /* loop thread only */
    pthread_mutex_t post_lock; /* guards posted */
    struct callq posted;
};

static void callq_push(struct callq *q, loop_call_cb fn, void *arg)
{
    if (q->len == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 16;
        q->v = xrealloc(q->v, q->cap * sizeof(*q->v));
    }
    q->v[q->len].fn = fn;
    q->v[q->len].arg = arg;
    q->len++;
}

static void wake_cb(struct loop_io *io, unsigned events)
{
    uint64_t v;
    if (read(io->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        log_warn("loop: read eventfd");
}

struct loop *loop_create(void)
{
    struct loop *l = xcalloc(1, sizeof(*l));

    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0)
        fatal("loop: epoll_create1");
    l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->wakefd < 0)
        fatal("loop: eventfd");
    pthread_mutex_init(&l->post_lock, NULL);
    l->now_ms = time_mono_ms();
    if (loop_io_start(l, &l->wake_io, l->wakefd, LOOP_READ, wake_cb) < 0)
        fatal("loop: watch eventfd");
    return l;
}

static void run_calls(struct loop *l);

void loop_destroy(struct loop *l)
{
    if (l == NULL)
        return;
    /* Objects closed after the loop stopped wait in the deferred queue for
     * their free; run it (and anything posted) so nothing leaks. */
    for (int i = 0; i < 16 && (l->deferred.len > 0 || l->posted.len > 0); i++)
        run_calls(l);
    loop_io_stop(&l->wake_io);
    close(l->wakefd);
    close(l->epfd);
    pthread_mutex_destroy(&l->post_lock);
    free(l->heap);
    free(l->deferred.v);
    free(l->posted.v);
    free(l);
}

int64_t loop_now_ms(const struct loop *l)
{
    return l->now_ms;
}

static uint32_t to_epoll(unsigned ev)
{
    uint32_t e = 0;
    if (ev & LOOP_READ)
        e |= EPOLLIN | EPOLLRDHUP;
    if (ev & LOOP_WRITE)
        e |= EPOLLOUT;
    return e;
}

int loop_io_start(struct loop *l, struct loop_io *io, int fd, unsigned events, loop_io_cb cb)
{
    struct epoll_event ev = {.events = to_epoll(events), .data.ptr = io};

    io->fd = fd;
    io->events = events;
    io->kevents = events;
    io->cb = cb;
    io->loop = l;
    io->dirty = 0;
    io->dnext = io->dprev = NULL;
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        io->fd = -1;
        return -errno;
    }
    return 0;
}

static void dirty_unlink(struct loop_io *io)
{
    struct loop *l = io->loop;
    if (!io->dirty)
        return;
    if (io->dprev)
        io->dprev->dnext = io->dnext;
    else
        l->dirty = io->dnext;
    if (io->dnext)
        io->dnext->dprev = io->dprev;
    io->dnext = io->dprev = NULL;
    io->dirty = 0;
}

int loop_io_modify(struct loop_io *io, unsigned events)
{
    struct loop *l = io->loop;
    if (io->fd < 0)
        return 0;
    io->events = events;
    if (!io->dirty && events != io->kevents) {
        io->dirty = 1;
        io->dprev = NULL;
        io->dnext = l->dirty;
        if (l->dirty)
            l->dirty->dprev = io;
        l->dirty = io;
    }
    return 0;
}

/* Hands the iteration's interest changes to epoll. */
static void apply_dirty(struct loop *l)
{
    while (l->dirty) {
        struct loop_io *io = l->dirty;
        dirty_unlink(io);
        if (io->fd < 0 || io->events == io->kevents)
            continue;
        struct epoll_event ev = {.events = to_epoll(io->events), .data.ptr = io};
        if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
            log_warn("loop: epoll_ctl(MOD) fd %d", io->fd);
        else
            io->kevents = io->events;
    }
}

void loop_io_close(struct loop_io *io)
{
    int fd = io->fd;
    if (fd < 0)
        return;
    if (io->loop != NULL) {
        /* Closing the last reference removes the fd from epoll, so no
         * EPOLL_CTL_DEL: Ferry never duplicates or inherits these fds. */
        dirty_unlink(io);
        io->cb = NULL;
        io->loop = NULL;
    }
    io->fd = -1;
    close(fd);
}

void loop_io_stop(struct loop_io *io)
{
    if (io->fd < 0 || io->loop == NULL)
        return;
    dirty_unlink(io);
    epoll_ctl(io->loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->fd = -1;
    io->cb = NULL;
}

/* Timer heap: a binary min-heap of timer pointers ordered by due_ms. */

static void heap_set(struct loop *l, size_t i, struct loop_timer *t)
{
    l->heap[i] = t;
    t->heap_idx = i;
}

static void heap_up(struct loop *l, size_t i)
{
    struct loop_timer *t = l->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (l->heap[p]->due_ms <= t->due_ms)
            break;
        heap_set(l, i, l->heap[p]);
        i = p;
    }
    heap_set(l, i, t);
}

static void heap_down(struct loop *l, size_t i)
{
    struct loop_timer *t = l->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= l->heap_len)
            break;
        if (c + 1 < l->heap_len && l->heap[c + 1]->due_ms < l->heap[c]->due_ms)
            c++;
        if (t->due_ms <= l->heap[c]->due_ms)
            break;
        heap_set(l, i, l->heap[c]);
        i = c;
    }
    heap_set(l, i, t);
}

void loop_timer_init(struct loop *l, struct loop_timer *t, loop_timer_cb cb)
{
    t->loop = l;
    t->cb = cb;
    t->due_ms = 0;
    t->heap_idx = (size_t)-1;
}

void loop_timer_stop(struct loop_timer *t)
{
    struct loop *l = t->loop;
    size_t i = t->heap_idx;

    if (i == (size_t)-1)
        return;
    t->heap_idx = (size_t)-1;
    l->heap_len--;
    if (i == l->heap_len)
        return;
    struct loop_timer *m = l->heap[l->heap_len];
    heap_set(l, i, m);
    heap_up(l, i);
    heap_down(l, m->heap_idx);
}

void loop_timer_start(struct loop_timer *t, int64_t ms)
{
    struct loop *l = t->loop;

    loop_timer_stop(t);
    t->due_ms = time_mono_ms() + (ms < 0 ? 0 : ms);
    t->round = l->timer_round;
    if (l->heap_len == l->heap_cap) {
        l->heap_cap = l->heap_cap ? l->heap_cap * 2 : 64;
        l->heap = xrealloc(l->heap, l->heap_cap * sizeof(*l->heap));
    }
    l->heap_len++;
    heap_set(l, l->heap_len - 1, t);
    heap_up(l, l->heap_len - 1);
}

void loop_defer(struct loop *l, loop_call_cb fn, void *arg)
{
    callq_push(&l->deferred, fn, arg);
}

void loop_post(struct loop *l, loop_call_cb fn, void *arg)
{
    uint64_t one = 1;

    pthread_mutex_lock(&l->post_lock);
    callq_push(&l->posted, fn, arg);
    pthread_mutex_unlock(&l->post_lock);
    if (write(l->wakefd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn("loop: write eventfd");
}

void loop_stop(struct loop *l)
{
    uint64_t one = 1;
    atomic_store(&l->stopping, 1);
    if (write(l->wakefd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn("loop: write eventfd");
}

/*
 * Runs the timers due. One started by a timer callback of this run waits
 * for the next iteration, even when it is due at once: a job that goes on
 * in steps from a timer of 0 ms then lets the next poll's events in
 * between its steps instead of running them all here.
 */
static void run_timers(struct loop *l)
{
    uint64_t round = ++l->timer_round;
    while (l->heap_len > 0 && l->heap[0]->due_ms <= l->now_ms && l->heap[0]->round != round) {
        struct loop_timer *t = l->heap[0];
        loop_timer_stop(t);
        t->cb(t);
    }
}

static void run_calls(struct loop *l)
{
    /* Deferred calls may defer more; run until the queue stays empty but
     * bound the rounds so a callback that re-defers itself cannot spin. */
    for (int round = 0; round < 16 && l->deferred.len > 0; round++) {
        struct callq q = l->deferred;
        l->deferred = (struct callq){0};
        for (size_t i = 0; i < q.len; i++)
            q.v[i].fn(q.v[i].arg);
        if (l->deferred.len == 0) {
            l->deferred = q;
            l->deferred.len = 0;
        } else {
            free(q.v);
        }
    }

    pthread_mutex_lock(&l->post_lock);
    struct callq q = l->posted;
    l->posted = (struct callq){0};
    pthread_mutex_unlock(&l->post_lock);
    for (size_t i = 0; i < q.len; i++)
        q.v[i].fn(q.v[i].arg);
    free(q.v);
}

int loop_run(struct loop *l)
{
    struct epoll_event evs[LOOP_MAX_EVENTS];

    atomic_store(&l->stopping, 0);
    while (!atomic_load(&l->stopping)) {
        int timeout = -1;
        apply_dirty(l);
        l->now_ms = time_mono_ms();
        if (l->deferred.len > 0) {
            timeout = 0;
        } else if (l->heap_len > 0) {
            int64_t d = l->heap[0]->due_ms - l->now_ms;
            timeout = d < 0 ? 0 : (d > 60000 ? 60000 : (int)d);
        }
        int n = epoll_wait(l->epfd, evs, LOOP_MAX_EVENTS, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fatal("loop: epoll_wait");
        }
        l->now_ms = time_mono_ms();
        for (int i = 0; i < n; i++) {
            struct loop_io *io = evs[i].data.ptr;
            unsigned ev = 0;
            /* A watcher stopped earlier in this batch has fd -1. */
            if (io->fd < 0 || io->cb == NULL)
                continue;
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP))
                ev |= LOOP_READ;
            if (evs[i].events & EPOLLOUT)
                ev |= LOOP_WRITE;
            if (evs[i].events & (EPOLLERR | EPOLLHUP))
                ev |= LOOP_ERROR | (io->events & (LOOP_READ | LOOP_WRITE));
            io->cb(io, ev);
        }
        run_timers(l);
        run_calls(l);
    }
    return 0;
}
