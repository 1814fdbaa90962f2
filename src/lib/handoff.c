/*
 * handoff -- see handoff.h.
 */
#include "lib/handoff.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FDS 8 /* room to see (and close) descriptors beyond the one expected */

int handoff_parse(const uint8_t *p, size_t n, struct handoff_msg *m, const char **why)
{
    if (n < HANDOFF_HDR) {
        *why = "shorter than its header";
        return -1;
    }
    if (memcmp(p, "FRHO", 4) != 0) {
        *why = "bad magic";
        return -1;
    }
    if (p[4] != 1) {
        *why = "unknown version";
        return -1;
    }
    if (p[5] & ~HANDOFF_F_TLS) {
        *why = "unknown flags";
        return -1;
    }
    size_t len = (size_t)p[6] << 8 | p[7];
    if (len != n - HANDOFF_HDR) {
        *why = "length does not match the datagram";
        return -1;
    }
    m->tls = (p[5] & HANDOFF_F_TLS) != 0;
    m->bytes = p + HANDOFF_HDR;
    m->len = len;
    return 0;
}

void handoff_header(uint8_t out[HANDOFF_HDR], int tls, size_t len)
{
    memcpy(out, "FRHO", 4);
    out[4] = 1;
    out[5] = tls ? HANDOFF_F_TLS : 0;
    out[6] = (uint8_t)(len >> 8);
    out[7] = (uint8_t)len;
}

int handoff_addr_parse(const char *path, struct handoff_addr *out)
{
    size_t n = strlen(path);
    memset(out, 0, sizeof(*out));
    if (n == 0 || path[0] != '/' || n >= sizeof(out->sun.sun_path))
        return -1;
    out->sun.sun_family = AF_UNIX;
    memcpy(out->sun.sun_path, path, n + 1);
    out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return 0;
}

int handoff_connect(const struct handoff_addr *to)
{
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (const struct sockaddr *)&to->sun, to->len) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

int handoff_send(int sock, int fd, int tls, const void *bytes, size_t len)
{
    uint8_t hdr[HANDOFF_HDR];
    if (len > HANDOFF_MAX_BYTES)
        return -EMSGSIZE;
    handoff_header(hdr, tls, len);
    struct iovec iov[2] = {{hdr, sizeof(hdr)}, {(void *)bytes, len}};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct msghdr mh = {
        .msg_iov = iov,
        .msg_iovlen = len ? 2 : 1,
        .msg_control = ctl.buf,
        .msg_controllen = sizeof(ctl.buf),
    };
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    for (;;) {
        ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

int handoff_listen(const char *path)
{
    struct handoff_addr a;
    if (handoff_addr_parse(path, &a) < 0)
        return -ENAMETOOLONG;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            close(fd);
            return -EEXIST;
        }
        /* A socket file: someone's, or left behind by a process that died.
         * Only a live listener accepts a connect. */
        int probe = handoff_connect(&a);
        if (probe >= 0) {
            close(probe);
            close(fd);
            return -EADDRINUSE;
        }
        unlink(path);
    }
    /* Created 0600: only our user (and root) can hand us connections. */
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&a.sun, a.len);
    int err = errno;
    umask(old);
    if (rc < 0 || listen(fd, 64) < 0) {
        if (rc == 0)
            err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

int handoff_accept(int lfd)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct ucred cred;
    socklen_t sl = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &sl) < 0 ||
        (cred.uid != 0 && cred.uid != geteuid())) {
        close(fd);
        return -EPERM;
    }
    return fd;
}

static void close_fds(const int *fds, int n)
{
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

/*
 * One message without waiting, and the descriptors that came with it (up
 * to MAX_FDS; close-on-exec). Returns its length, with *nfds and
 * *truncated set; -1 when nothing is queued; -2 at the end of the
 * connection (an empty message without descriptors) or on an error.
 */
static ssize_t recv_one(int sock, uint8_t *buf, size_t cap, int fds[MAX_FDS], int *nfds, int *truncated)
{
    union {
        char buf[CMSG_SPACE(MAX_FDS * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {buf, cap};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                        .msg_controllen = sizeof(ctl.buf)};
    ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? -1 : -2;
    *nfds = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k && *nfds < MAX_FDS; i++)
            memcpy(&fds[(*nfds)++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
    }
    if (n == 0 && *nfds == 0)
        return -2;
    *truncated = (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0;
    return n;
}

int handoff_recv(int sock, uint8_t *buf, int *fd, struct handoff_msg *m, const char **why)
{
    int fds[MAX_FDS];
    int nfds = 0, truncated = 0;
    ssize_t n = recv_one(sock, buf, HANDOFF_BUF, fds, &nfds, &truncated);
    if (n < 0)
        return n == -1 ? 0 : -2;
    if (truncated) {
        *why = "truncated";
        goto refuse;
    }
    if (nfds != 1) {
        *why = nfds == 0 ? "no connection in it" : "more than one descriptor";
        goto refuse;
    }
    if (handoff_parse(buf, (size_t)n, m, why) < 0)
        goto refuse;
    int type = 0, domain = 0, proto = 0;
    socklen_t sl = sizeof(type);
    if (getsockopt(fds[0], SOL_SOCKET, SO_TYPE, &type, &sl) < 0 || type != SOCK_STREAM) {
        *why = "not a stream socket";
        goto refuse;
    }
    sl = sizeof(domain);
    if (getsockopt(fds[0], SOL_SOCKET, SO_DOMAIN, &domain, &sl) < 0 ||
        (domain != AF_INET && domain != AF_INET6)) {
        *why = "not a TCP socket";
        goto refuse;
    }
    sl = sizeof(proto);
    if (getsockopt(fds[0], SOL_SOCKET, SO_PROTOCOL, &proto, &sl) < 0 || proto != IPPROTO_TCP) {
        *why = "not a TCP socket";
        goto refuse;
    }
    /* The sender's accept made the description non-blocking; make sure. */
    int fl = fcntl(fds[0], F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK))
        fcntl(fds[0], F_SETFL, fl | O_NONBLOCK);
    *fd = fds[0];
    return 1;
refuse:
    close_fds(fds, nfds);
    return -1;
}

void handoff_report(uint8_t out[HANDOFF_REPORT], uint32_t load)
{
    memcpy(out, "FRHL", 4);
    out[4] = 1;
    out[5] = 0;
    out[6] = 0;
    out[7] = 4;
    out[8] = (uint8_t)(load >> 24);
    out[9] = (uint8_t)(load >> 16);
    out[10] = (uint8_t)(load >> 8);
    out[11] = (uint8_t)load;
}

int handoff_report_parse(const uint8_t *p, size_t n, uint32_t *load, const char **why)
{
    if (n < HANDOFF_HDR) {
        *why = "shorter than its header";
        return -1;
    }
    if (memcmp(p, "FRHL", 4) != 0) {
        *why = "bad magic";
        return -1;
    }
    if (p[4] != 1) {
        *why = "unknown version";
        return -1;
    }
    if (p[5] != 0) {
        *why = "unknown flags";
        return -1;
    }
    if (((size_t)p[6] << 8 | p[7]) != 4 || n != HANDOFF_REPORT) {
        *why = "not the length of a report";
        return -1;
    }
    *load = (uint32_t)p[8] << 24 | (uint32_t)p[9] << 16 | (uint32_t)p[10] << 8 | p[11];
    return 0;
}

int handoff_report_send(int sock, uint32_t load)
{
    uint8_t msg[HANDOFF_REPORT];
    handoff_report(msg, load);
    for (;;) {
        if (send(sock, msg, sizeof(msg), MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

int handoff_report_recv(int sock, uint32_t *load, const char **why)
{
    uint8_t buf[64];
    int fds[MAX_FDS];
    int nfds = 0, truncated = 0;
    ssize_t n = recv_one(sock, buf, sizeof(buf), fds, &nfds, &truncated);
    if (n < 0)
        return n == -1 ? 0 : -2;
    close_fds(fds, nfds);
    if (nfds > 0) {
        *why = "a descriptor in a report";
        return -1;
    }
    if (truncated) {
        *why = "truncated";
        return -1;
    }
    return handoff_report_parse(buf, (size_t)n, load, why) < 0 ? -1 : 1;
}
