/*
 * handoff -- passing an accepted client connection from the switch to a
 * cache server on the same host, instead of relaying its bytes.
 *
 * The switch reads the client's first bytes (the ClientHello, or a plain
 * request head), decides, and sends the socket itself (SCM_RIGHTS) with
 * the bytes it has read, as one message on an AF_UNIX SOCK_SEQPACKET
 * connection to a path the cache listens on. The cache carries on as if
 * it had accepted the connection and read those bytes: it answers the
 * client directly, and the switch forgets the connection. No second TCP
 * connection, no relay, no PROXY header (the socket's own peer address is
 * the client's).
 *
 * Each message (docs/switch.md, "Connection hand-off"):
 *
 *   0  4  magic "FRHO"
 *   4  1  version, 1
 *   5  1  flags: 0x01 = TLS (else plain HTTP); other bits must be 0
 *   6  2  length of the bytes that follow, big-endian; must be exactly
 *         the rest of the message
 *   8  -  the client's bytes already read, in order
 *
 * with exactly one file descriptor in an SCM_RIGHTS message, which must
 * be a TCP socket (IPv4 or IPv6). The listening socket is created mode
 * 0600, and a connection is accepted only from a process of our own user
 * or root (SO_PEERCRED). A message that breaks a rule is refused and every
 * descriptor that came with it is closed; the connection stays.
 *
 * The other way, the cache reports its load: how many client connections
 * it has open, all sources together, so that a switch choosing by
 * `leastconn` counts the connections it handed over and no longer sees.
 *
 *   0  4  magic "FRHL"
 *   4  1  version, 1
 *   5  1  flags, 0
 *   6  2  length, 4
 *   8  4  open client connections, big-endian
 *
 * with no descriptor. The cache sends one when a switch connects and then
 * whenever the count has changed, at most every HANDOFF_REPORT_MS; the
 * switch reads them on a timer of its own.
 *
 * SEQPACKET rather than datagrams: an AF_UNIX datagram receiver queues
 * only net.unix.max_dgram_qlen messages (10 by default), which a burst of
 * new clients fills at once; a connection is bounded by its socket buffer.
 */
#ifndef FERRY_LIB_HANDOFF_H
#define FERRY_LIB_HANDOFF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#define HANDOFF_HDR 8
#define HANDOFF_MAX_BYTES 65535u
#define HANDOFF_F_TLS 0x01u

struct handoff_msg {
    int tls;
    const uint8_t *bytes; /* into the datagram */
    size_t len;
};

struct handoff_addr {
    struct sockaddr_un sun;
    socklen_t len;
};

/* Parses a datagram's payload. Returns 0, or -1 with *why set. Pure. */
int handoff_parse(const uint8_t *p, size_t n, struct handoff_msg *m, const char **why);
/* Writes the 8-byte header for len bytes (len <= HANDOFF_MAX_BYTES). */
void handoff_header(uint8_t out[HANDOFF_HDR], int tls, size_t len);

/* Fills a socket address for a filesystem path. Returns 0, or -1 when the
 * path is empty, not absolute, or too long for sun_path. */
int handoff_addr_parse(const char *path, struct handoff_addr *out);

/*
 * The cache's listening socket at path (mode 0600), non-blocking. A socket
 * file left by an earlier process is replaced; a path that is not a
 * socket, or a socket some live process listens on, is an error. Returns
 * an fd or -errno (-EADDRINUSE for a live one, -EEXIST for a non-socket).
 */
int handoff_listen(const char *path);
/*
 * Accepts one switch connection (non-blocking, close-on-exec). Returns an
 * fd; -EAGAIN when none is waiting; -EPERM (the connection closed) when
 * the peer is neither our user nor root; another -errno on failure.
 */
int handoff_accept(int lfd);
/* The switch's connection to a cache (non-blocking). Returns an fd or
 * -errno (-ENOENT or -ECONNREFUSED when nothing listens there). */
int handoff_connect(const struct handoff_addr *to);
/*
 * Sends fd and the bytes. Returns 0 when the cache has the connection (the
 * caller closes its own fd), or -errno: -EAGAIN when the connection's
 * buffer is full (the cache is behind; says nothing of its health),
 * -EPIPE or -ECONNRESET when the cache closed it.
 */
int handoff_send(int sock, int fd, int tls, const void *bytes, size_t len);

/* Room a receiver's buffer needs for any message. */
#define HANDOFF_BUF (HANDOFF_HDR + HANDOFF_MAX_BYTES)

/*
 * Receives one message into buf (HANDOFF_BUF bytes). Returns 1 with *fd
 * (close-on-exec, non-blocking) and *m (pointing into buf); 0 when nothing
 * is queued; -1 when the message was refused (*why says why; any
 * descriptor that came with it is closed); -2 when the switch closed the
 * connection or it failed.
 */
int handoff_recv(int sock, uint8_t *buf, int *fd, struct handoff_msg *m, const char **why);

#define HANDOFF_REPORT 12
#define HANDOFF_REPORT_MS 100

/* Writes a load report. */
void handoff_report(uint8_t out[HANDOFF_REPORT], uint32_t load);
/* Parses a load report. Returns 0, or -1 with *why set. Pure. */
int handoff_report_parse(const uint8_t *p, size_t n, uint32_t *load, const char **why);
/* Sends a load report without waiting. Returns 0 or -errno (-EAGAIN when
 * the switch has not read the earlier ones: this one is dropped). */
int handoff_report_send(int sock, uint32_t load);
/*
 * Receives one load report. Returns 1 with *load; 0 when nothing is
 * queued; -1 when the message was not a report (*why says why; any
 * descriptor that came with it is closed); -2 when the cache closed the
 * connection or it failed.
 */
int handoff_report_recv(int sock, uint32_t *load, const char **why);

#endif
