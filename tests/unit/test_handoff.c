/*
 * Unit tests for src/lib/handoff.c: the message header round trip and its
 * rejections, and a whole hand-off over a real SEQPACKET socket: the
 * descriptor and bytes arrive, a stale socket file is replaced, a live one
 * and a non-socket are refused, and a message without a TCP socket is
 * refused with its descriptors closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/handoff.h"

static void test_header(void **state)
{
    uint8_t m[HANDOFF_HDR + 3];
    struct handoff_msg msg;
    const char *why = NULL;
    handoff_header(m, 1, 3);
    memcpy(m + HANDOFF_HDR, "abc", 3);
    assert_int_equal(handoff_parse(m, sizeof(m), &msg, &why), 0);
    assert_int_equal(msg.tls, 1);
    assert_int_equal(msg.len, 3);
    assert_memory_equal(msg.bytes, "abc", 3);
    handoff_header(m, 0, 0);
    assert_int_equal(handoff_parse(m, HANDOFF_HDR, &msg, &why), 0);
    assert_int_equal(msg.tls, 0);
    assert_int_equal(msg.len, 0);
    /* Every shorter input, and a longer one, mismatch the length. */
    handoff_header(m, 1, 3);
    for (size_t n = 0; n < sizeof(m); n++)
        assert_int_equal(handoff_parse(m, n, &msg, &why), -1);
    m[4] = 2;
    assert_int_equal(handoff_parse(m, sizeof(m), &msg, &why), -1);
    assert_string_equal(why, "unknown version");
    m[4] = 1;
    m[5] = 0x03;
    assert_int_equal(handoff_parse(m, sizeof(m), &msg, &why), -1);
    assert_string_equal(why, "unknown flags");
    m[5] = 0x01;
    m[0] = 'X';
    assert_int_equal(handoff_parse(m, sizeof(m), &msg, &why), -1);
    assert_string_equal(why, "bad magic");
}

static void test_addr(void **state)
{
    struct handoff_addr a;
    char longp[200];
    assert_int_equal(handoff_addr_parse("/run/ferry/c.sock", &a), 0);
    assert_int_equal(a.sun.sun_family, AF_UNIX);
    assert_int_equal(handoff_addr_parse("relative.sock", &a), -1);
    assert_int_equal(handoff_addr_parse("", &a), -1);
    memset(longp, 'x', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = '\0';
    assert_int_equal(handoff_addr_parse(longp, &a), -1);
}

/* A connected TCP pair on loopback: *c our end, *s the end handed over. */
static void tcp_pair(int *c, int *s)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    assert_int_equal(bind(l, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&sin, &sl), 0);
    *c = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(*c, (struct sockaddr *)&sin, sizeof(sin)), 0);
    *s = accept(l, NULL, NULL);
    assert_true(*s >= 0);
    close(l);
}

static void test_over_a_socket(void **state)
{
    char dir[] = "/tmp/ferry-handoff-XXXXXX";
    char path[128], notsock[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/c.sock", dir);
    snprintf(notsock, sizeof(notsock), "%s/file", dir);

    int lfd = handoff_listen(path);
    assert_true(lfd >= 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    uint8_t *buf = malloc(HANDOFF_BUF);
    int fd = -1;
    struct handoff_msg m;
    const char *why = NULL;
    /* A second listener on a live socket is refused. Its probe connection
     * reaches the live one, which sees it end at once. */
    assert_int_equal(handoff_listen(path), -EADDRINUSE);
    int probe = handoff_accept(lfd);
    assert_true(probe >= 0);
    assert_int_equal(handoff_recv(probe, buf, &fd, &m, &why), -2);
    close(probe);
    /* A file that is not a socket is left alone. */
    FILE *f = fopen(notsock, "w");
    fputs("x", f);
    fclose(f);
    assert_int_equal(handoff_listen(notsock), -EEXIST);

    struct handoff_addr a;
    assert_int_equal(handoff_addr_parse(path, &a), 0);
    int snd = handoff_connect(&a);
    assert_true(snd >= 0);
    int rcv = handoff_accept(lfd);
    assert_true(rcv >= 0);
    assert_int_equal(handoff_accept(lfd), -EAGAIN);
    assert_int_equal(handoff_recv(rcv, buf, &fd, &m, &why), 0);

    int cli, srv;
    tcp_pair(&cli, &srv);
    assert_int_equal(handoff_send(snd, srv, 1, "hello", 5), 0);
    close(srv);
    assert_int_equal(handoff_recv(rcv, buf, &fd, &m, &why), 1);
    assert_int_equal(m.tls, 1);
    assert_int_equal(m.len, 5);
    assert_memory_equal(m.bytes, "hello", 5);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    /* The descriptor is the connection: what we write, the client reads. */
    assert_int_equal(write(fd, "hi", 2), 2);
    char got[2];
    assert_int_equal(read(cli, got, 2), 2);
    assert_memory_equal(got, "hi", 2);
    close(fd);
    close(cli);

    /* A pipe is not a TCP socket: refused, and the receiver's copy closed. */
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(handoff_send(snd, p[0], 0, NULL, 0), 0);
    assert_int_equal(handoff_recv(rcv, buf, &fd, &m, &why), -1);
    assert_string_equal(why, "not a stream socket");
    close(p[0]);
    /* With every read end closed, writing to the pipe fails. */
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(write(p[1], "x", 1), -1);
    assert_int_equal(errno, EPIPE);
    close(p[1]);

    /* The switch closing its connection ends the stream. */
    close(snd);
    assert_int_equal(handoff_recv(rcv, buf, &fd, &m, &why), -2);
    close(rcv);

    /* A socket file left by a process that died is replaced. */
    close(lfd);
    lfd = handoff_listen(path);
    assert_true(lfd >= 0);
    close(lfd);
    unlink(path);
    unlink(notsock);
    rmdir(dir);
    free(buf);
}

static void test_report(void **state)
{
    uint8_t r[HANDOFF_REPORT];
    uint32_t load = 0;
    const char *why = NULL;
    handoff_report(r, 0x01020304u);
    assert_memory_equal(r, "FRHL\x01\x00\x00\x04\x01\x02\x03\x04", HANDOFF_REPORT);
    assert_int_equal(handoff_report_parse(r, sizeof(r), &load, &why), 0);
    assert_int_equal(load, 0x01020304u);
    for (size_t n = 0; n < sizeof(r); n++)
        assert_int_equal(handoff_report_parse(r, n, &load, &why), -1);
    r[7] = 5;
    assert_int_equal(handoff_report_parse(r, sizeof(r), &load, &why), -1);
    assert_string_equal(why, "not the length of a report");
    r[7] = 4;
    r[5] = 1;
    assert_int_equal(handoff_report_parse(r, sizeof(r), &load, &why), -1);
    assert_string_equal(why, "unknown flags");
    r[5] = 0;
    r[4] = 2;
    assert_int_equal(handoff_report_parse(r, sizeof(r), &load, &why), -1);
    assert_string_equal(why, "unknown version");
    r[4] = 1;
    memcpy(r, "FRHO", 4); /* a hand-off is not a report */
    assert_int_equal(handoff_report_parse(r, sizeof(r), &load, &why), -1);
    assert_string_equal(why, "bad magic");

    /* Over a SEQPACKET pair: reports arrive one by one, then nothing. */
    (void)state;
    int sp[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp), 0);
    assert_int_equal(handoff_report_send(sp[0], 7), 0);
    assert_int_equal(handoff_report_send(sp[0], 9), 0);
    assert_int_equal(handoff_report_recv(sp[1], &load, &why), 1);
    assert_int_equal(load, 7);
    assert_int_equal(handoff_report_recv(sp[1], &load, &why), 1);
    assert_int_equal(load, 9);
    assert_int_equal(handoff_report_recv(sp[1], &load, &why), 0);
    /* A hand-off message (with its descriptor) where a report belongs is
     * refused and the descriptor closed. */
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(handoff_send(sp[0], p[0], 1, "hi", 2), 0);
    close(p[0]);
    assert_int_equal(handoff_report_recv(sp[1], &load, &why), -1);
    assert_string_equal(why, "a descriptor in a report");
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(write(p[1], "x", 1), -1);
    assert_int_equal(errno, EPIPE);
    close(p[1]);
    /* the cache going away ends it */
    close(sp[0]);
    assert_int_equal(handoff_report_recv(sp[1], &load, &why), -2);
    close(sp[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_addr),
        cmocka_unit_test(test_over_a_socket),
        cmocka_unit_test(test_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
