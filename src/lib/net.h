/*
 * net -- socket addresses, listeners and non-blocking connects.
 */
#ifndef FERRY_LIB_NET_H
#define FERRY_LIB_NET_H

#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>

struct net_addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

/*
 * Parses "host:port", "[v6]:port" or "*:port" (host must be a numeric
 * address; "*" means all IPv4 addresses). Returns 0 or -EINVAL.
 */
int net_addr_parse(const char *s, struct net_addr *out);
/* Parses a numeric host and a port. Returns 0 or -EINVAL. */
int net_addr_from(const char *host, int port, struct net_addr *out);
/* Formats as "a.b.c.d:port" or "[v6]:port" into out (at least 64 bytes). */
const char *net_addr_str(const struct net_addr *a, char *out, size_t outlen);
/* Formats only the host part. */
const char *net_addr_host(const struct net_addr *a, char *out, size_t outlen);
int net_addr_port(const struct net_addr *a);

/*
 * Opens a non-blocking listening TCP socket with SO_REUSEADDR and
 * SO_REUSEPORT (so each worker thread can open its own). Returns the fd
 * or -errno.
 */
int net_listen_tcp(const struct net_addr *a, int backlog);
/* A bound non-blocking UDP socket (SO_REUSEADDR only: one owner). */
int net_bind_udp(const struct net_addr *a);
/* The same with SO_REUSEPORT, so each worker thread can bind its own. */
int net_bind_udp_shared(const struct net_addr *a);
/*
 * Starts a non-blocking connect. Returns the fd (the connect may still be
 * in progress: wait for writability, then net_connect_result) or -errno.
 */
int net_connect_tcp(const struct net_addr *a);
/* The same from a source address (its port 0: any), when src is not NULL. */
int net_connect_tcp_from(const struct net_addr *a, const struct net_addr *src);
/* After writability: 0 if connected, else -errno of the failure. */
int net_connect_result(int fd);
/* Sets TCP_NODELAY. */
void net_nodelay(int fd);

#endif
