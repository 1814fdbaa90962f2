/*
 * resume_clients -- a TLS load generator for the switch benchmarks
 * (bench/switch.sh) and the resumption study (bench/resumption.sh).
 * OpenSSL, blocking sockets, one thread per concurrent connection. Every
 * client has its own source address 127.A.B.C (bound before connect,
 * IP_BIND_ADDRESS_NO_PORT), so a front that hashes or sticks on the client
 * address sees many clients, and keeps its own TLS session, which it offers
 * again with SSL_set_session when it reconnects.
 *
 * Each connection sends one HTTP/1.1 request and reads the whole response
 * (status, Content-Length, the Via field that names the cache) and the
 * server's close; in TLS 1.3 the NewSessionTickets arrive before the
 * response, so the session saved after it is resumable.
 *
 * Modes (-m):
 *   resume   N clients (-n) connect once each (phase 1, no session: a full
 *            handshake), save the session, then every client reconnects once
 *            offering it (phase 2, the clients in a random order). Reports
 *            how many phase-2 connections were
 *            resumed (SSL_session_reused), how many landed on the cache that
 *            served phase 1 (Via), and errors. With -b B, phase 2 comes from
 *            127.B.x.y instead of 127.A.x.y: clients that changed address.
 *            With -E PATH, the run pauses between the phases so that a
 *            script can act on the servers (kill one, reload or restart the
 *            switch): after phase 1 it creates PATH (holding the phase-1
 *            key=value pairs), then waits until PATH.go exists, at most
 *            until the deadline (-D), before phase 2. p2_secs (the phase-2
 *            wall time) does not include the wait; p1_wait_secs reports it.
 *            p1_cpu_secs and p2_cpu_secs: this process's own CPU time in
 *            each phase (so a script can tell the other load apart).
 *   rate     -k clients connect once each (untimed warm-up, a full
 *            handshake each), then reconnect in turn for -d seconds, each
 *            offering its latest session (one request per connection). Reports
 *            connections/s, the resumed fraction, latency percentiles.
 *   latency  -n connections one after another per thread (use -t 1), each a
 *            fresh connection without a session (or with -r the session of
 *            the previous one). Reports p50/p90/p99 of connect start to the
 *            last byte of the response.
 *   bulk     one keep-alive connection per thread, GET -p -n times. Reports
 *            bytes/s.
 *
 * Output: one line of key=value pairs on stdout; errors (the first few) on
 * stderr. Exit status 0 if it ran (errors are counted, not fatal), 2 on bad
 * usage or setup failure.
 *
 * Build: cc -O2 -Wall -pthread -o build/resume_clients bench/resume_clients.c -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_BACKENDS 16
#define NAME_LEN 48

static const char *opt_mode = "resume";
static struct sockaddr_in opt_target;
static const char *opt_sni = "bench.test";
static const char *opt_host = NULL;
static const char *opt_path = "/1k";
static int opt_version = 0; /* 0 = any (1.2..1.3), else TLS1_2_VERSION / TLS1_3_VERSION */
static long opt_n = 1000;
static int opt_threads = 16;
static double opt_duration = 10;
static long opt_k = 1000;
static int opt_src_a = 100;    /* clients bind 127.A.B.C, A = opt_src_a + i / 62500 */
static int opt_src_a2 = -1;    /* resume phase 2 from this A instead: clients that changed address */
static int opt_bind = 1;
static int opt_reuse = 0;      /* latency: offer the previous session */
static int opt_client_tickets = 1;
static double opt_timeout = 10; /* per socket operation */
static double opt_deadline = 300; /* whole run */
static const char *opt_pause = NULL; /* resume: -E PATH, pause between the phases */

static SSL_CTX *ctx;
static double t_start;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* CPU seconds (user + system) of this process so far, all threads. */
static double cpu_secs(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static atomic_int errors_printed;

static void report_error(const char *what, long client)
{
    if (atomic_fetch_add(&errors_printed, 1) >= 10)
        return;
    char buf[256] = "";
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    fprintf(stderr, "resume_clients: client %ld: %s%s%s (errno %d %s)\n", client, what, buf[0] ? ": " : "",
            buf, errno, strerror(errno));
}

/* Backend names seen in Via, shared by all threads (few, so a linear table). */
static pthread_mutex_t names_mu = PTHREAD_MUTEX_INITIALIZER;
static char names[MAX_BACKENDS][NAME_LEN];
static int nnames;

static int backend_index(const char *name)
{
    pthread_mutex_lock(&names_mu);
    int i;
    for (i = 0; i < nnames; i++)
        if (strcmp(names[i], name) == 0)
            break;
    if (i == nnames) {
        if (nnames == MAX_BACKENDS) {
            i = MAX_BACKENDS - 1;
        } else {
            snprintf(names[i], NAME_LEN, "%s", name);
            nnames++;
        }
    }
    pthread_mutex_unlock(&names_mu);
    return i;
}

static void client_addr(long i, struct sockaddr_in *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    long a = opt_src_a + i / 62500, r = i % 62500;
    uint32_t ip = (127u << 24) | ((uint32_t)a << 16) | ((uint32_t)(r / 250) << 8) | (uint32_t)(1 + r % 250);
    sa->sin_addr.s_addr = htonl(ip);
}

struct result {
    int ok;        /* complete 200 response */
    int reused;    /* SSL_session_reused */
    int backend;   /* index from Via, -1 if none */
    int version;   /* negotiated */
    long bytes;    /* body bytes */
    double secs;   /* connect start to last byte */
};

/* Reads one HTTP/1.1 response. Returns body bytes or -1. */
static long read_response(SSL *ssl, char *buf, size_t cap, int *status, int *backend, int want_eof)
{
    size_t have = 0;
    char *end = NULL;
    while (!end) {
        if (have == cap - 1)
            return -1;
        int r = SSL_read(ssl, buf + have, (int)(cap - 1 - have));
        if (r <= 0)
            return -1;
        have += (size_t)r;
        buf[have] = 0;
        end = strstr(buf, "\r\n\r\n");
    }
    size_t head = (size_t)(end - buf) + 4;
    *status = 0;
    sscanf(buf, "HTTP/1.%*d %d", status);
    long clen = -1;
    *backend = -1;
    for (char *line = strstr(buf, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n")) {
        char *l = line + 2;
        if (strncasecmp(l, "Content-Length:", 15) == 0)
            clen = strtol(l + 15, NULL, 10);
        else if (strncasecmp(l, "Via:", 4) == 0) {
            /* Via: 1.1 NAME (...) */
            char name[NAME_LEN] = "";
            if (sscanf(l + 4, " %*s %47[^ \r\n(]", name) == 1)
                *backend = backend_index(name);
        }
    }
    long body = (long)(have - head);
    for (;;) {
        if (clen >= 0 && body >= clen && !want_eof)
            break;
        int r = SSL_read(ssl, buf, (int)cap);
        if (r <= 0) {
            if (clen >= 0 && body >= clen)
                break; /* the server's close after a complete response */
            if (clen < 0 && SSL_get_error(ssl, r) == SSL_ERROR_ZERO_RETURN)
                break;
            return -1;
        }
        body += r;
    }
    if (clen >= 0 && body != clen)
        return -1;
    return body;
}

static int connect_client(long client, int *fdp)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct timeval tv = {.tv_sec = (time_t)opt_timeout,
                         .tv_usec = (suseconds_t)((opt_timeout - (long)opt_timeout) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (opt_bind) {
        struct sockaddr_in src;
        client_addr(client, &src);
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
            close(fd);
            return -1;
        }
    }
    if (connect(fd, (struct sockaddr *)&opt_target, sizeof(opt_target)) != 0) {
        close(fd);
        return -1;
    }
    *fdp = fd;
    return 0;
}

/* One connection: handshake (offering sess if any), one request, the whole
 * response, the server's close. *sess_out gets the session to offer next. */
static void one_connection(long client, SSL_SESSION *sess, SSL_SESSION **sess_out, struct result *res,
                           char *buf, size_t cap)
{
    memset(res, 0, sizeof(*res));
    res->backend = -1;
    if (sess_out)
        *sess_out = NULL;
    double t0 = now();
    int fd;
    if (connect_client(client, &fd) != 0) {
        report_error("connect", client);
        return;
    }
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, opt_sni);
    if (sess)
        SSL_set_session(ssl, sess);
    ERR_clear_error();
    if (SSL_connect(ssl) != 1) {
        report_error("handshake", client);
        goto out;
    }
    res->reused = SSL_session_reused(ssl);
    res->version = SSL_version(ssl);
    char req[512];
    int len = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", opt_path,
                       opt_host ? opt_host : opt_sni);
    if (SSL_write(ssl, req, len) != len) {
        report_error("write", client);
        goto out;
    }
    int status;
    long body = read_response(ssl, buf, cap, &status, &res->backend, 1);
    if (body < 0 || status != 200) {
        if (body < 0)
            report_error("read response", client);
        else {
            errno = 0;
            char what[64];
            snprintf(what, sizeof(what), "status %d", status);
            report_error(what, client);
        }
        goto out;
    }
    res->bytes = body;
    res->ok = 1;
    res->secs = now() - t0;
    if (sess_out) {
        SSL_SESSION *s = SSL_get1_session(ssl);
        if (s && SSL_SESSION_is_resumable(s))
            *sess_out = s;
        else if (s)
            SSL_SESSION_free(s);
    }
out:
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
}

/* ---- shared state of a run ---- */

static SSL_SESSION **sessions;  /* per client */
static long *perm;              /* resume phase 2: the clients in a random order */
static signed char *first_backend; /* per client, phase 1 */
static atomic_long next_client;
static atomic_long c_ok, c_err, c_reused, c_same, c_moved_resumed, c_tls12, c_tls13, c_bytes;
static atomic_long per_backend[MAX_BACKENDS];
static double *lat;            /* latencies */
static atomic_long nlat;
static long lat_cap;
static int phase;

static void record_lat(double s)
{
    long i = atomic_fetch_add(&nlat, 1);
    if (i < lat_cap)
        lat[i] = s;
}

static void count(const struct result *r)
{
    if (!r->ok) {
        atomic_fetch_add(&c_err, 1);
        return;
    }
    atomic_fetch_add(&c_ok, 1);
    if (r->reused)
        atomic_fetch_add(&c_reused, 1);
    if (r->version == TLS1_3_VERSION)
        atomic_fetch_add(&c_tls13, 1);
    else if (r->version == TLS1_2_VERSION)
        atomic_fetch_add(&c_tls12, 1);
    if (r->backend >= 0)
        atomic_fetch_add(&per_backend[r->backend], 1);
    atomic_fetch_add(&c_bytes, r->bytes);
}

static void *resume_thread(void *arg)
{
    char *buf = malloc(65536);
    (void)arg;
    for (;;) {
        long i = atomic_fetch_add(&next_client, 1);
        if (i >= opt_n || now() - t_start > opt_deadline)
            break;
        struct result r;
        if (phase == 1) {
            one_connection(i, NULL, &sessions[i], &r, buf, 65536);
            first_backend[i] = (signed char)r.backend;
        } else {
            i = perm[i];
            if (!sessions[i]) { /* phase 1 failed: nothing to offer */
                continue;
            }
            one_connection(i, sessions[i], NULL, &r, buf, 65536);
            if (r.ok && r.backend >= 0 && r.backend == first_backend[i])
                atomic_fetch_add(&c_same, 1);
            if (r.ok && r.reused && r.backend != first_backend[i])
                atomic_fetch_add(&c_moved_resumed, 1);
        }
        count(&r);
        if (r.ok)
            record_lat(r.secs);
    }
    free(buf);
    return NULL;
}

static void shuffle(long *v, long n, unsigned *seed)
{
    for (long j = n - 1; j > 0; j--) {
        long k = (long)(((unsigned long)rand_r(seed) << 16 ^ (unsigned long)rand_r(seed)) % (unsigned long)(j + 1));
        long t = v[j];
        v[j] = v[k];
        v[k] = t;
    }
}

struct rate_arg {
    long first, count; /* clients of this thread */
};

static int rate_warm; /* the untimed first pass: every client connects once */

static void *rate_thread(void *arg)
{
    struct rate_arg *ra = arg;
    char *buf = malloc(65536);
    double end = rate_warm ? t_start + opt_deadline : now() + opt_duration;
    /* Each pass visits this thread's clients in a new random order, so a
     * round-robin front does not see the same client sequence every pass. */
    long *order = malloc((size_t)ra->count * sizeof(long));
    unsigned seed = (unsigned)ra->first * 2654435761u + 1;
    for (long j = 0; j < ra->count; j++)
        order[j] = j;
    for (long j = 0; now() < end && !(rate_warm && j == ra->count); j = rate_warm ? j + 1 : (j + 1) % ra->count) {
        if (!rate_warm && j == 0)
            shuffle(order, ra->count, &seed);
        long i = ra->first + order[j];
        struct result r;
        SSL_SESSION *next = NULL;
        one_connection(i, sessions[i], &next, &r, buf, 65536);
        if (next) {
            if (sessions[i])
                SSL_SESSION_free(sessions[i]);
            sessions[i] = next;
        }
        count(&r);
        if (r.ok)
            record_lat(r.secs);
    }
    free(order);
    free(buf);
    return NULL;
}

static void *latency_thread(void *arg)
{
    char *buf = malloc(65536);
    long client = (long)(intptr_t)arg;
    SSL_SESSION *sess = NULL;
    for (;;) {
        long i = atomic_fetch_add(&next_client, 1);
        if (i >= opt_n || now() - t_start > opt_deadline)
            break;
        struct result r;
        SSL_SESSION *next = NULL;
        one_connection(client, opt_reuse ? sess : NULL, opt_reuse ? &next : NULL, &r, buf, 65536);
        if (next) {
            if (sess)
                SSL_SESSION_free(sess);
            sess = next;
        }
        count(&r);
        if (r.ok)
            record_lat(r.secs);
    }
    if (sess)
        SSL_SESSION_free(sess);
    free(buf);
    return NULL;
}

static void *bulk_thread(void *arg)
{
    size_t cap = 1 << 18;
    char *buf = malloc(cap);
    long client = (long)(intptr_t)arg;
    int fd;
    if (connect_client(client, &fd) != 0) {
        report_error("connect", client);
        atomic_fetch_add(&c_err, 1);
        free(buf);
        return NULL;
    }
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, opt_sni);
    if (SSL_connect(ssl) != 1) {
        report_error("handshake", client);
        atomic_fetch_add(&c_err, 1);
        goto out;
    }
    for (long k = 0; k < opt_n && now() - t_start < opt_deadline; k++) {
        char req[512];
        int len = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", opt_path,
                           opt_host ? opt_host : opt_sni);
        double t0 = now();
        if (SSL_write(ssl, req, len) != len) {
            report_error("write", client);
            atomic_fetch_add(&c_err, 1);
            break;
        }
        int status, backend;
        long body = read_response(ssl, buf, cap, &status, &backend, 0);
        if (body < 0 || status != 200) {
            report_error(body < 0 ? "read response" : "status", client);
            atomic_fetch_add(&c_err, 1);
            break;
        }
        atomic_fetch_add(&c_ok, 1);
        atomic_fetch_add(&c_bytes, body);
        if (backend >= 0)
            atomic_fetch_add(&per_backend[backend], 1);
        record_lat(now() - t0);
    }
out:
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
    free(buf);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, long n, double p)
{
    if (n <= 0)
        return 0;
    long i = (long)(p * (double)(n - 1) + 0.5);
    return v[i];
}

static void reset_counts(void)
{
    atomic_store(&c_ok, 0);
    atomic_store(&c_err, 0);
    atomic_store(&c_reused, 0);
    atomic_store(&c_same, 0);
    atomic_store(&c_moved_resumed, 0);
    atomic_store(&c_tls12, 0);
    atomic_store(&c_tls13, 0);
    atomic_store(&c_bytes, 0);
    for (int i = 0; i < MAX_BACKENDS; i++)
        atomic_store(&per_backend[i], 0);
    atomic_store(&nlat, 0);
    atomic_store(&next_client, 0);
}

static void print_counts(const char *prefix, double secs)
{
    long n = atomic_load(&nlat);
    if (n > lat_cap)
        n = lat_cap;
    qsort(lat, (size_t)n, sizeof(double), cmp_double);
    printf(" %sok=%ld %serr=%ld %sresumed=%ld %sfull=%ld %ssecs=%.3f %srate=%.1f %sp50_ms=%.3f %sp90_ms=%.3f "
           "%sp99_ms=%.3f %stls12=%ld %stls13=%ld %sbytes=%ld",
           prefix, atomic_load(&c_ok), prefix, atomic_load(&c_err), prefix, atomic_load(&c_reused), prefix,
           atomic_load(&c_ok) - atomic_load(&c_reused), prefix, secs, prefix,
           secs > 0 ? (double)atomic_load(&c_ok) / secs : 0, prefix, pct(lat, n, 0.5) * 1e3, prefix,
           pct(lat, n, 0.9) * 1e3, prefix, pct(lat, n, 0.99) * 1e3, prefix, atomic_load(&c_tls12), prefix,
           atomic_load(&c_tls13), prefix, atomic_load(&c_bytes));
    printf(" %sbackends=", prefix);
    for (int i = 0; i < nnames; i++)
        printf("%s%s:%ld", i ? "," : "", names[i], atomic_load(&per_backend[i]));
    if (!nnames)
        printf("-");
}

static void run_threads(void *(*fn)(void *), void **args, int n)
{
    pthread_t *th = calloc((size_t)n, sizeof(*th));
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (int i = 0; i < n; i++)
        if (pthread_create(&th[i], &attr, fn, args ? args[i] : NULL) != 0) {
            fprintf(stderr, "resume_clients: pthread_create failed\n");
            exit(2);
        }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    free(th);
}

/* -E PATH: tells the script that phase 1 is done by creating PATH (with the
 * phase-1 summary in it), then waits until PATH.go exists or the deadline
 * passes. Returns the seconds waited. */
static double pause_between_phases(const char *summary)
{
    double t0 = now();
    char tmp[4096], go[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", opt_pause);
    snprintf(go, sizeof(go), "%s.go", opt_pause);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%s\n", summary) < 0 || fclose(f) != 0 || rename(tmp, opt_pause) != 0) {
        fprintf(stderr, "resume_clients: cannot create %s: %s\n", opt_pause, strerror(errno));
        return now() - t0;
    }
    while (access(go, F_OK) != 0) {
        if (now() - t_start > opt_deadline) {
            fprintf(stderr, "resume_clients: deadline reached waiting for %s\n", go);
            break;
        }
        usleep(10000);
    }
    return now() - t0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: resume_clients -c ADDR:PORT [-m resume|rate|latency|bulk] [-v 1.2|1.3] [-n N] [-t THREADS]\n"
            "       [-k CLIENTS] [-d SECONDS] [-s SNI] [-H HOST] [-p PATH] [-a SRC_A|-a none] [-b SRC_A2] [-r] [-x]\n"
            "       [-o OP_TIMEOUT] [-D DEADLINE] [-E PAUSE_PATH]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *target = NULL;
    int c;
    while ((c = getopt(argc, argv, "c:m:v:n:t:k:d:s:H:p:a:b:rxo:D:E:")) != -1) {
        switch (c) {
        case 'c': target = optarg; break;
        case 'm': opt_mode = optarg; break;
        case 'v':
            opt_version = strcmp(optarg, "1.2") == 0 ? TLS1_2_VERSION
                          : strcmp(optarg, "1.3") == 0 ? TLS1_3_VERSION
                                                       : (usage(), 0);
            break;
        case 'n': opt_n = atol(optarg); break;
        case 't': opt_threads = atoi(optarg); break;
        case 'k': opt_k = atol(optarg); break;
        case 'd': opt_duration = atof(optarg); break;
        case 's': opt_sni = optarg; break;
        case 'H': opt_host = optarg; break;
        case 'p': opt_path = optarg; break;
        case 'a':
            if (strcmp(optarg, "none") == 0)
                opt_bind = 0;
            else
                opt_src_a = atoi(optarg);
            break;
        case 'b': opt_src_a2 = atoi(optarg); break;
        case 'r': opt_reuse = 1; break;
        case 'x': opt_client_tickets = 0; break;
        case 'o': opt_timeout = atof(optarg); break;
        case 'D': opt_deadline = atof(optarg); break;
        case 'E': opt_pause = optarg; break;
        default: usage();
        }
    }
    if (!target || opt_threads < 1 || opt_n < 1 || opt_k < 1)
        usage();
    char host[64];
    int port;
    if (sscanf(target, "%63[0-9.]:%d", host, &port) != 2 || inet_pton(AF_INET, host, &opt_target.sin_addr) != 1)
        usage();
    opt_target.sin_family = AF_INET;
    opt_target.sin_port = htons((uint16_t)port);
    if (opt_bind && (opt_src_a > opt_src_a2 ? opt_src_a : opt_src_a2) + (opt_n > opt_k ? opt_n : opt_k) / 62500 > 255) {
        fprintf(stderr, "resume_clients: too many clients for source addresses from 127.%d\n", opt_src_a);
        return 2;
    }

    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return 2;
    SSL_CTX_set_min_proto_version(ctx, opt_version ? opt_version : TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, opt_version ? opt_version : TLS1_3_VERSION);
    /* The server's work is the same with or without verification; skipping it
     * keeps the load generator's CPU per full handshake down. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (!opt_client_tickets)
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);

    lat_cap = (strcmp(opt_mode, "rate") == 0) ? 4000000 : opt_n + 16;
    lat = calloc((size_t)lat_cap, sizeof(double));
    t_start = now();

    if (strcmp(opt_mode, "resume") == 0) {
        sessions = calloc((size_t)opt_n, sizeof(*sessions));
        first_backend = calloc((size_t)opt_n, 1);
        printf("mode=resume clients=%ld threads=%d", opt_n, opt_threads);
        phase = 1;
        reset_counts();
        double t0 = now(), c0 = cpu_secs();
        run_threads(resume_thread, NULL, opt_threads);
        long saved = 0;
        for (long i = 0; i < opt_n; i++)
            saved += sessions[i] != NULL;
        double p1_secs = now() - t0;
        print_counts("p1_", p1_secs);
        printf(" p1_sessions=%ld p1_cpu_secs=%.3f", saved, cpu_secs() - c0);
        if (opt_pause) {
            char summary[256];
            snprintf(summary, sizeof(summary), "p1_ok=%ld p1_err=%ld p1_resumed=%ld p1_sessions=%ld p1_secs=%.3f",
                     atomic_load(&c_ok), atomic_load(&c_err), atomic_load(&c_reused), saved, p1_secs);
            fflush(stdout);
            printf(" p1_wait_secs=%.3f", pause_between_phases(summary));
        }
        /* Phase 2 visits the clients in a random order: in the same order as
         * phase 1, a round-robin front would hand most clients the backend
         * they had before, by accident. */
        perm = malloc((size_t)opt_n * sizeof(long));
        for (long i = 0; i < opt_n; i++)
            perm[i] = i;
        unsigned seed = (unsigned)time(NULL);
        shuffle(perm, opt_n, &seed);
        phase = 2;
        if (opt_src_a2 >= 0)
            opt_src_a = opt_src_a2;
        reset_counts();
        t0 = now();
        c0 = cpu_secs();
        run_threads(resume_thread, NULL, opt_threads);
        print_counts("p2_", now() - t0);
        printf(" p2_cpu_secs=%.3f", cpu_secs() - c0);
        printf(" p2_same_backend=%ld p2_resumed_elsewhere=%ld", atomic_load(&c_same),
               atomic_load(&c_moved_resumed));
        printf(" deadline_hit=%d\n", now() - t_start > opt_deadline);
    } else if (strcmp(opt_mode, "rate") == 0) {
        sessions = calloc((size_t)opt_k, sizeof(*sessions));
        if (opt_k < opt_threads)
            opt_k = opt_threads;
        struct rate_arg *ra = calloc((size_t)opt_threads, sizeof(*ra));
        void **args = calloc((size_t)opt_threads, sizeof(void *));
        for (int i = 0; i < opt_threads; i++) {
            ra[i].first = opt_k * i / opt_threads;
            ra[i].count = opt_k * (i + 1) / opt_threads - ra[i].first;
            args[i] = &ra[i];
        }
        printf("mode=rate clients=%ld threads=%d", opt_k, opt_threads);
        reset_counts();
        rate_warm = 1; /* each client's first connection (a full handshake) is not counted */
        run_threads(rate_thread, args, opt_threads);
        printf(" warm_ok=%ld warm_err=%ld", atomic_load(&c_ok), atomic_load(&c_err));
        rate_warm = 0;
        reset_counts();
        double t0 = now();
        run_threads(rate_thread, args, opt_threads);
        print_counts("", now() - t0);
        printf("\n");
    } else if (strcmp(opt_mode, "latency") == 0) {
        void **args = calloc((size_t)opt_threads, sizeof(void *));
        for (int i = 0; i < opt_threads; i++)
            args[i] = (void *)(intptr_t)i;
        printf("mode=latency conns=%ld threads=%d reuse=%d", opt_n, opt_threads, opt_reuse);
        reset_counts();
        double t0 = now();
        run_threads(latency_thread, args, opt_threads);
        print_counts("", now() - t0);
        printf("\n");
    } else if (strcmp(opt_mode, "bulk") == 0) {
        void **args = calloc((size_t)opt_threads, sizeof(void *));
        for (int i = 0; i < opt_threads; i++)
            args[i] = (void *)(intptr_t)i;
        printf("mode=bulk requests=%ld threads=%d", opt_n, opt_threads);
        reset_counts();
        double t0 = now();
        run_threads(bulk_thread, args, opt_threads);
        double secs = now() - t0;
        print_counts("", secs);
        printf(" mib_per_s=%.1f\n", (double)atomic_load(&c_bytes) / secs / 1048576.0);
    } else {
        usage();
    }
    fflush(stdout);
    return 0;
}
