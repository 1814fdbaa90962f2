/*
 * loop -- one non-blocking event loop per thread: fd watchers (epoll,
 * level-triggered), timers (a binary min-heap on the monotonic clock),
 * deferred calls, and calls posted from other threads (an eventfd wakes
 * the loop).
 *
 * One iteration has four phases, in this order:
 *   1. wait in epoll_wait until an fd is ready, the next timer is due, or
 *      another thread posts;
 *   2. run the callbacks of ready fds;
 *   3. run due timers;
 *   4. run deferred and posted calls (this is where objects are freed, so
 *      a watcher stopped in phase 2 is never called again in the same
 *      batch with freed memory).
 * Interest changes (loop_io_modify) are applied in one batch just before
 * phase 1. Everything but loop_post and loop_stop must be called from the
 * loop's own thread.
 */
#ifndef FERRY_LIB_LOOP_H
#define FERRY_LIB_LOOP_H

#include <stddef.h>
#include <stdint.h>

struct loop;
struct loop_io;
struct loop_timer;

#define LOOP_READ 0x1u
#define LOOP_WRITE 0x2u
#define LOOP_ERROR 0x4u /* reported, never requested: EPOLLERR/EPOLLHUP */

typedef void (*loop_io_cb)(struct loop_io *io, unsigned events);
typedef void (*loop_timer_cb)(struct loop_timer *t);
typedef void (*loop_call_cb)(void *arg);

struct loop_io {
    int fd;
    unsigned events;   /* requested: LOOP_READ | LOOP_WRITE */
    loop_io_cb cb;
    struct loop *loop;
    void *data;        /* for the owner */
    /* private: changes of events reach the kernel once per iteration */
    unsigned kevents;  /* what epoll has */
    struct loop_io *dnext, *dprev;
    int dirty;
};

struct loop_timer {
    int64_t due_ms;    /* monotonic */
    size_t heap_idx;   /* position in the heap, or SIZE_MAX when stopped */
    uint64_t round;    /* the timer round it was started in (see run_timers) */
    loop_timer_cb cb;
    struct loop *loop;
    void *data;        /* for the owner */
};

/* Creates a loop; fatal on failure to create epoll/eventfd. */
struct loop *loop_create(void);
/* Destroys a loop that is not running, after running its pending deferred
 * and posted calls. Watchers must be stopped first. */
void loop_destroy(struct loop *l);

/*
 * Runs until loop_stop. Returns 0. Each iteration also updates the loop's
 * cached clock (loop_now_ms).
 */
int loop_run(struct loop *l);
/* Makes loop_run return after the current iteration. Thread-safe. */
void loop_stop(struct loop *l);
/* The monotonic time at the start of the current iteration, in ms. */
int64_t loop_now_ms(const struct loop *l);

/*
 * Starts watching fd for events (LOOP_READ/LOOP_WRITE). io is embedded in
 * its owner and must stay valid until loop_io_stop. Returns 0 or -errno.
 */
int loop_io_start(struct loop *l, struct loop_io *io, int fd, unsigned events, loop_io_cb cb);
/*
 * Changes the requested events. The change reaches epoll just before the
 * loop next waits, so a watcher may change its mind several times in one
 * iteration for the price of at most one epoll_ctl. Returns 0.
 */
int loop_io_modify(struct loop_io *io, unsigned events);
/* Stops watching; the callback is not called again. Safe to call twice. */
void loop_io_stop(struct loop_io *io);
/*
 * Stops watching and closes io->fd, one system call cheaper than
 * loop_io_stop + close (closing removes the fd from epoll; valid because
 * the fd is not shared with another process or a dup). Also closes an fd
 * stored in io->fd that was never started (io->loop NULL). Afterwards
 * io->loop is NULL and io may be started again. Safe to call twice.
 */
void loop_io_close(struct loop_io *io);

void loop_timer_init(struct loop *l, struct loop_timer *t, loop_timer_cb cb);
/* (Re)arms t to fire once after ms milliseconds. */
void loop_timer_start(struct loop_timer *t, int64_t ms);
void loop_timer_stop(struct loop_timer *t);
static inline int loop_timer_active(const struct loop_timer *t)
{
    return t->heap_idx != (size_t)-1;
}

/* Calls fn(arg) in phase 4 of the current or next iteration. Loop thread only. */
void loop_defer(struct loop *l, loop_call_cb fn, void *arg);
/* Calls fn(arg) on l's thread soon. Safe from any thread. */
void loop_post(struct loop *l, loop_call_cb fn, void *arg);

#endif
