/*
 * net -- see net.h.
 */
#include "lib/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int net_addr_from(const char *host, int port, struct net_addr *out)
{
    memset(out, 0, sizeof(*out));
    if (port < 0 || port > 65535)
        return -EINVAL;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->ss;
    if (strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0) {
        v4->sin_family = AF_INET;
        v4->sin_addr.s_addr = htonl(INADDR_ANY);
        v4->sin_port = htons((uint16_t)port);
        out->len = sizeof(*v4);
        return 0;
    }
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        out->len = sizeof(*v4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        out->len = sizeof(*v6);
        return 0;
    }
    return -EINVAL;
}

int net_addr_parse(const char *s, struct net_addr *out)
{
    char host[64];
    const char *colon;
    const char *h = s;
    size_t hlen;

    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (rb == NULL || rb[1] != ':')
            return -EINVAL;
        h = s + 1;
        hlen = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -EINVAL;
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= sizeof(host))
        return -EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535)
        return -EINVAL;
    return net_addr_from(host, (int)port, out);
}

const char *net_addr_host(const struct net_addr *a, char *out, size_t outlen)
{
    if (a->ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a->ss)->sin6_addr, out,
                  (socklen_t)outlen);
    else if (a->ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->ss)->sin_addr, out,
                  (socklen_t)outlen);
    else
        snprintf(out, outlen, "-");
    return out;
}

int net_addr_port(const struct net_addr *a)
{
    if (a->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    return 0;
}

const char *net_addr_str(const struct net_addr *a, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN];
    net_addr_host(a, host, sizeof(host));
    if (a->ss.ss_family == AF_INET6)
        snprintf(out, outlen, "[%s]:%d", host, net_addr_port(a));
    else
        snprintf(out, outlen, "%s:%d", host, net_addr_port(a));
    return out;
}

static int sock_open(const struct net_addr *a, int type)
{
    int fd = socket(a->ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    return fd < 0 ? -errno : fd;
}

/* Opens and binds a non-blocking socket; `shared` adds SO_REUSEPORT (one per worker). */
static int sock_bind(const struct net_addr *a, int type, int shared)
{
    int one = 1, err;
    int fd = sock_open(a, type);
    if (fd < 0)
        return fd;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        (shared && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0))
        goto fail;
    if (a->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
        goto fail;
    return fd;
fail:
    err = -errno;
    close(fd);
    return err;
}

int net_listen_tcp(const struct net_addr *a, int backlog)
{
    int fd = sock_bind(a, SOCK_STREAM, 1);
    if (fd >= 0 && listen(fd, backlog) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

int net_bind_udp(const struct net_addr *a)
{
    return sock_bind(a, SOCK_DGRAM, 0);
}

int net_bind_udp_shared(const struct net_addr *a)
{
    return sock_bind(a, SOCK_DGRAM, 1);
}

int net_connect_tcp(const struct net_addr *a)
{
    return net_connect_tcp_from(a, NULL);
}

int net_connect_tcp_from(const struct net_addr *a, const struct net_addr *src)
{
    int fd = sock_open(a, SOCK_STREAM);
    if (fd < 0)
        return fd;
    if (src && bind(fd, (const struct sockaddr *)&src->ss, src->len) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0 && errno != EINPROGRESS) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

int net_connect_result(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    return -err;
}

void net_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}
