/*
 * ferryctl -- talks to a ferryd's admin endpoint (DESIGN.md contract 5).
 *
 *   ferryctl [-c FERRYD_CONF | -a ADDR [-T TOKEN_FILE]] COMMAND [ARGS]
 *
 * The address and token come from, in order: -a/-T, the admin block of the
 * ferryd config given with -c, the environment (FERRY_ADMIN,
 * FERRY_TOKEN_FILE), and 127.0.0.1:9000. The token is read from a file so
 * that it never appears in a process list. Replies are printed as the
 * daemon sends them (JSON or text); the exit status is 0 for a 2xx reply,
 * 1 for any other reply or a connection failure, 2 for a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http1.h"
#include "lib/buf.h"
#include "lib/conf.h"
#include "lib/net.h"
#include "lib/util.h"
#include "version.h"

#define CTL_TIMEOUT_MS 15000
#define CTL_MAX_REPLY (16u << 20)

struct ctl {
    const char *addr;
    char *token; /* owned */
};

struct cmd {
    const char *name;
    const char *args;
    const char *help;
    int min_args, max_args;
    int (*run)(struct ctl *ctl, int argc, char **argv);
};

static int request(struct ctl *ctl, const char *method, const char *path)
{
    struct net_addr a;
    struct buf req, rep;
    int rc = 1;

    if (net_addr_parse(ctl->addr, &a) < 0) {
        fprintf(stderr, "ferryctl: bad admin address \"%s\"\n", ctl->addr);
        return 1;
    }
    int fd = net_connect_tcp(&a);
    if (fd < 0) {
        fprintf(stderr, "ferryctl: connect %s: %s\n", ctl->addr, strerror(-fd));
        return 1;
    }
    buf_init(&req);
    buf_init(&rep);
    buf_printf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ferryctl/%s\r\n"
                     "Content-Length: 0\r\nConnection: close\r\n",
               method, path, ctl->addr, FERRY_VERSION);
    if (ctl->token)
        buf_printf(&req, "Authorization: Bearer %s\r\n", ctl->token);
    buf_puts(&req, "\r\n");
    size_t off = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = off < buf_avail(&req) ? POLLOUT : POLLIN};
        int n = poll(&p, 1, CTL_TIMEOUT_MS);
        if (n <= 0) {
            fprintf(stderr, "ferryctl: %s: no answer in %d s\n", ctl->addr, CTL_TIMEOUT_MS / 1000);
            goto out;
        }
        if (off < buf_avail(&req)) {
            ssize_t w = send(fd, buf_head(&req) + off, buf_avail(&req) - off, MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN && errno != EINTR) {
                fprintf(stderr, "ferryctl: connect %s: %s\n", ctl->addr, strerror(errno));
                goto out;
            }
            if (w > 0)
                off += (size_t)w;
            continue;
        }
        char *dst = buf_reserve(&rep, 65536);
        ssize_t r = recv(fd, dst, 65536, 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (r <= 0)
            break;
        buf_commit(&rep, (size_t)r);
        if (buf_avail(&rep) > CTL_MAX_REPLY) {
            fprintf(stderr, "ferryctl: reply too large\n");
            goto out;
        }
    }
    struct http1_limits lim;
    struct http1_msg m;
    http1_limits_default(&lim);
    lim.max_head_bytes = 65536;
    int hl = http1_parse_response(buf_head(&rep), buf_avail(&rep), &lim, 0, &m);
    if (hl <= 0) {
        fprintf(stderr, "ferryctl: malformed reply from %s\n", ctl->addr);
        goto out;
    }
    fwrite(buf_head(&rep) + hl, 1, buf_avail(&rep) - (size_t)hl, stdout);
    if (m.status < 200 || m.status > 299)
        fprintf(stderr, "ferryctl: %s %s: HTTP %d\n", method, path, m.status);
    else
        rc = 0;
out:
    close(fd);
    if (ctl->token)
        mem_wipe(req.data, req.cap);
    buf_fini(&req);
    buf_fini(&rep);
    return rc;
}

/* Percent-encodes s for a query parameter. */
static char *qenc(const char *s)
{
    struct buf b;
    buf_init(&b);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            strchr("-._~/", ch))
            buf_append(&b, &ch, 1);
        else
            buf_printf(&b, "%%%02X", ch);
    }
    buf_append(&b, "", 1);
    char *r = xstrdup(buf_head(&b));
    buf_fini(&b);
    return r;
}

static int cmd_status(struct ctl *ctl, int argc, char **argv)
{
    return request(ctl, "GET", "/api/v1/status");
}

static int cmd_stats(struct ctl *ctl, int argc, char **argv)
{
    return request(ctl, "GET", "/api/v1/stats");
}

static int cmd_sessions(struct ctl *ctl, int argc, char **argv)
{
    return request(ctl, "GET", "/api/v1/sessions");
}

static int cmd_switch(struct ctl *ctl, int argc, char **argv)
{
    return request(ctl, "GET", "/api/v1/switch");
}

static int cmd_router(struct ctl *ctl, int argc, char **argv)
{
    return request(ctl, "GET", "/api/v1/router");
}

static int cmd_route(struct ctl *ctl, int argc, char **argv)
{
    char *a = qenc(argv[0]);
    char *n = argc > 1 ? qenc(argv[1]) : NULL;
    char *path = xasprintf("/api/v1/router/lookup?addr=%s%s%s", a, n ? "&name=" : "", n ? n : "");
    int rc = request(ctl, "GET", path);
    free(a);
    free(n);
    free(path);
    return rc;
}

static int cmd_peers(struct ctl *ctl, int argc, char **argv)
{
    int json = argc == 1 && strcmp(argv[0], "--json") == 0;
    if (argc == 1 && !json)
        return 2;
    return request(ctl, "GET", json ? "/api/v1/peers" : "/api/v1/peers?format=text");
}

static int cmd_routes(struct ctl *ctl, int argc, char **argv)
{
    int json = argc >= 1 && strcmp(argv[0], "--json") == 0;
    const char *dest = argc > json ? argv[json] : NULL;
    if (argc > json + 1)
        return 2;
    char *d = dest ? qenc(dest) : NULL;
    char *path = xasprintf("/api/v1/routes?%s%s%s", json ? "" : "format=text", d ? "&dest=" : "", d ? d : "");
    int rc = request(ctl, "GET", path);
    free(d);
    free(path);
    return rc;
}

static int cmd_metrics(struct ctl *ctl, int argc, char **argv)
{
    return request(ctl, "GET", "/metrics");
}

static int cmd_health(struct ctl *ctl, int argc, char **argv)
{
    return request(ctl, "GET", "/healthz");
}

static int cmd_reload(struct ctl *ctl, int argc, char **argv)
{
    return request(ctl, "POST", "/api/v1/reload");
}

static int url_cmd(struct ctl *ctl, const char *what, const char *url, const char *ttl, int prefix)
{
    char *u = qenc(url);
    char *t = ttl ? qenc(ttl) : NULL;
    char *path = xasprintf("/api/v1/%s?url=%s%s%s%s", what, u, prefix ? "&prefix=1" : "",
                           t ? "&ttl=" : "", t ? t : "");
    int rc = request(ctl, "POST", path);
    free(u);
    free(t);
    free(path);
    return rc;
}

static int cmd_purge(struct ctl *ctl, int argc, char **argv)
{
    int prefix = argc == 2 && strcmp(argv[0], "--prefix") == 0;
    if (argc == 2 && !prefix)
        return 2;
    return url_cmd(ctl, "purge", argv[argc - 1], NULL, prefix);
}

static int cmd_expire(struct ctl *ctl, int argc, char **argv)
{
    int prefix = argc == 3 && strcmp(argv[0], "--prefix") == 0;
    if (argc == 3 && !prefix)
        return 2;
    return url_cmd(ctl, "expire", argv[argc - 2], argv[argc - 1], prefix);
}

static const struct cmd cmds[] = {
    {"status", "", "daemon version, uptime, roles", 0, 0, cmd_status},
    {"stats", "", "role counters (cache hits, misses, objects, ...)", 0, 0, cmd_stats},
    {"metrics", "", "all metrics in Prometheus text format", 0, 0, cmd_metrics},
    {"sessions", "", "a cache's TLS session store: held, stored, received, resumed; the group's replication and refusals", 0, 0, cmd_sessions},
    {"switch", "", "switch backends (health, connections, resumptions), policy steps, sticky table", 0, 0, cmd_switch},
    {"router", "", "a router's nodes (health, load, answers), peers, areas, decisions by reason", 0, 0, cmd_router},
    {"route", "ADDR [NAME]", "the router's decision for a client address (and service name), with its reason", 1, 2, cmd_route},
    {"peers", "[--json]", "a peer speaker's sessions with other CDNs: state, routes, last error", 0, 1, cmd_peers},
    {"routes", "[--json] [PREFIX|ADDR|PUBLISHER|URI]", "the peering RIB: every candidate route, the best first, and why it won", 0, 2, cmd_routes},
    {"health", "", "liveness (/healthz)", 0, 0, cmd_health},
    {"reload", "", "reload the configuration (a bad one is refused)", 0, 0, cmd_reload},
    {"purge", "[--prefix] URL", "flush cached objects by URL or URL prefix", 1, 2, cmd_purge},
    {"expire", "[--prefix] URL TTL", "set a new expiry (TTL from now, 0 = stale now)", 2, 3, cmd_expire},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: ferryctl [-c FERRYD_CONF | -a ADDR [-T TOKEN_FILE]] COMMAND [ARGS]\n\n"
               "commands:\n");
    for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
        fprintf(f, "  %-8s %-20s %s\n", cmds[i].name, cmds[i].args, cmds[i].help);
    fprintf(f, "\noptions:\n"
               "  -a ADDR        admin endpoint (default 127.0.0.1:9000, or $FERRY_ADMIN)\n"
               "  -T FILE        file holding the API token (or $FERRY_TOKEN_FILE)\n"
               "  -c FILE        take both from the admin block of a ferryd config\n"
               "  -h, -V         help, version\n");
}

static char *read_token_file(const char *path)
{
    char b[512];
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "ferryctl: token file %s: %s\n", path, strerror(errno));
        exit(1);
    }
    size_t n = fread(b, 1, sizeof(b) - 1, f);
    fclose(f);
    while (n > 0 && (b[n - 1] == '\n' || b[n - 1] == '\r' || b[n - 1] == ' '))
        n--;
    b[n] = '\0';
    char *t = xstrdup(b);
    mem_wipe(b, sizeof(b));
    return t;
}

int main(int argc, char **argv)
{
    struct ctl ctl = {0};
    const char *conf_path = NULL, *token_file = NULL;
    char *conf_addr = NULL, *conf_token = NULL;
    int ch;

    while ((ch = getopt(argc, argv, "+a:T:c:hV")) != -1) {
        switch (ch) {
        case 'a': ctl.addr = optarg; break;
        case 'T': token_file = optarg; break;
        case 'c': conf_path = optarg; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("ferryctl %s\n", FERRY_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    if (conf_path) {
        struct conf *c = conf_load(conf_path, NULL);
        if (c->nerrors) {
            fputs(buf_head(&c->errors), stderr);
            conf_destroy(c);
            return 1;
        }
        const struct conf_node *adm = conf_find(&c->root, "admin");
        if (adm == NULL) {
            fprintf(stderr, "ferryctl: %s has no admin block\n", conf_path);
            conf_destroy(c);
            return 1;
        }
        const char *l = conf_str(adm, "listen");
        conf_addr = xstrdup(l ? l : "127.0.0.1:9000");
        const struct conf_node *tf = conf_find(adm, "token_file");
        if (tf && tf->nargs == 1) {
            const char *slash = strrchr(tf->file, '/');
            conf_token = (tf->args[0][0] == '/' || slash == NULL)
                             ? xstrdup(tf->args[0])
                             : xasprintf("%.*s/%s", (int)(slash - tf->file), tf->file, tf->args[0]);
        }
        conf_destroy(c);
    }
    if (ctl.addr == NULL)
        ctl.addr = conf_addr ? conf_addr : getenv("FERRY_ADMIN") ? getenv("FERRY_ADMIN") : "127.0.0.1:9000";
    if (token_file == NULL)
        token_file = conf_token ? conf_token : getenv("FERRY_TOKEN_FILE");
    if (token_file)
        ctl.token = read_token_file(token_file);

    const char *name = argv[optind];
    int nargs = argc - optind - 1;
    for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
        if (strcmp(cmds[i].name, name) != 0)
            continue;
        if (nargs < cmds[i].min_args || nargs > cmds[i].max_args) {
            fprintf(stderr, "usage: ferryctl %s %s\n", cmds[i].name, cmds[i].args);
            return 2;
        }
        int rc = cmds[i].run(&ctl, nargs, argv + optind + 1);
        if (rc == 2)
            fprintf(stderr, "usage: ferryctl %s %s\n", cmds[i].name, cmds[i].args);
        if (ctl.token) {
            mem_wipe(ctl.token, strlen(ctl.token));
            free(ctl.token);
        }
        free(conf_addr);
        free(conf_token);
        return rc;
    }
    fprintf(stderr, "ferryctl: unknown command \"%s\"\n", name);
    usage(stderr);
    return 2;
}
