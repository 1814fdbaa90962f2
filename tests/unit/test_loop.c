/*
 * Unit tests for src/lib/loop.c: timers fire in order, stopped timers do
 * not fire, fd events, deferred calls and posts from another thread, and a
 * timer re-armed at 0 ms by its own callback lets fd events in between.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/loop.h"

static int order[16];
static int norder;

static void timer_cb(struct loop_timer *t)
{
    order[norder++] = (int)(intptr_t)t->data;
    if (norder == 3)
        loop_stop(t->loop);
}

static void test_timers(void **state)
{
    struct loop *l = loop_create();
    struct loop_timer t[5];
    norder = 0;
    for (int i = 0; i < 5; i++) {
        loop_timer_init(l, &t[i], timer_cb);
        t[i].data = (void *)(intptr_t)i;
    }
    loop_timer_start(&t[0], 30);
    loop_timer_start(&t[1], 10);
    loop_timer_start(&t[2], 20);
    loop_timer_start(&t[3], 5);
    loop_timer_start(&t[4], 1);
    loop_timer_stop(&t[3]);
    loop_timer_stop(&t[3]); /* twice is harmless */
    loop_timer_start(&t[4], 40); /* re-arming moves it */
    loop_run(l);
    assert_int_equal(norder, 3);
    assert_int_equal(order[0], 1);
    assert_int_equal(order[1], 2);
    assert_int_equal(order[2], 0);
    assert_true(loop_timer_active(&t[4]));
    loop_timer_stop(&t[4]);
    loop_destroy(l);
}

static int reads;

static void io_cb(struct loop_io *io, unsigned ev)
{
    char b[16];
    if (ev & LOOP_READ) {
        ssize_t n = read(io->fd, b, sizeof(b));
        if (n > 0)
            reads += (int)n;
    }
    loop_stop(io->loop);
}

static void test_io(void **state)
{
    int p[2];
    struct loop *l = loop_create();
    struct loop_io io = {0};
    assert_int_equal(pipe(p), 0);
    assert_int_equal(loop_io_start(l, &io, p[0], LOOP_READ, io_cb), 0);
    assert_int_equal(write(p[1], "abc", 3), 3);
    reads = 0;
    loop_run(l);
    assert_int_equal(reads, 3);
    loop_io_stop(&io);
    loop_io_stop(&io);
    close(p[0]);
    close(p[1]);
    loop_destroy(l);
}

static int deferred, posted;
static struct loop *post_loop;

static void defer_cb(void *arg)
{
    deferred++;
}

static void post_cb(void *arg)
{
    posted += (int)(intptr_t)arg;
    if (posted == 100 * 101 / 2)
        loop_stop(post_loop);
}

static void *poster(void *arg)
{
    for (int i = 1; i <= 100; i++)
        loop_post(post_loop, post_cb, (void *)(intptr_t)i);
    return NULL;
}

static void test_defer_and_post(void **state)
{
    pthread_t th;
    post_loop = loop_create();
    deferred = posted = 0;
    loop_defer(post_loop, defer_cb, NULL);
    loop_defer(post_loop, defer_cb, NULL);
    pthread_create(&th, NULL, poster, NULL);
    loop_run(post_loop);
    pthread_join(th, NULL);
    assert_int_equal(deferred, 2);
    assert_int_equal(posted, 5050);
    loop_destroy(post_loop);
}

/* A job going on in steps from a 0 ms timer, and a pipe that becomes
 * readable after its first step: the pipe is served before the job ends. */
static int steps, step_at_io;
static int job_pipe[2];

static void job_step(struct loop_timer *t)
{
    if (steps++ == 0)
        (void)!write(job_pipe[1], "x", 1);
    if (steps < 50)
        loop_timer_start(t, 0);
    else
        loop_stop(t->loop);
}

static void job_io(struct loop_io *io, unsigned events)
{
    char c;
    (void)!read(io->fd, &c, 1);
    if (step_at_io == 0)
        step_at_io = steps;
}

static void test_zero_timer_yields(void **state)
{
    struct loop *l = loop_create();
    struct loop_timer t;
    struct loop_io io = {0};
    steps = step_at_io = 0;
    assert_int_equal(pipe(job_pipe), 0);
    loop_timer_init(l, &t, job_step);
    assert_int_equal(loop_io_start(l, &io, job_pipe[0], LOOP_READ, job_io), 0);
    loop_timer_start(&t, 0);
    loop_run(l);
    assert_int_equal(steps, 50);
    /* Each step waits for the next iteration, so the pipe written in the
     * first one is read before the second step, not after the 50th. */
    assert_int_equal(step_at_io, 1);
    loop_io_stop(&io);
    close(job_pipe[0]);
    close(job_pipe[1]);
    loop_destroy(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers),
        cmocka_unit_test(test_io),
        cmocka_unit_test(test_defer_and_post),
        cmocka_unit_test(test_zero_timer_yields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
