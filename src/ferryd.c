/*
 * ferryd -- the Ferry daemon: runs the roles named in its config file.
 *
 *   ferryd -c FILE        run
 *   ferryd -t -c FILE     check the config, print errors as file:line: message
 *   ferryd --options      print every config option (Markdown)
 *
 * Threads: the main thread runs the admin endpoint and handles signals
 * through a signalfd; each worker thread runs one event loop with its own
 * SO_REUSEPORT listeners. Signals: SIGTERM/SIGINT drain gracefully (in-flight
 * requests finish, up to shutdown_timeout), SIGHUP reloads (a bad config
 * keeps the old one running), SIGUSR1 reopens log files.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "cache/cache.h"
#include "lib/admin.h"
#include "lib/conf.h"
#include "lib/json.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/role.h"
#include "peer/peer.h"
#include "router/router.h"
#include "lib/util.h"
#include "origin/origin.h"
#include "switch/switch.h"
#include "version.h"

static const struct conf_opt admin_opts[] = {
    {.name = "listen", .type = CONF_ADDR, .def = "127.0.0.1:9000",
     .help = "Address of the admin endpoint. Keep it on loopback unless a firewall guards it."},
    {.name = "token_file", .type = CONF_PATH,
     .help = "File holding the bearer token for /api/v1 (without it the API is closed)."},
    {0},
};

static const struct conf_opt top_opts[] = {
    {.name = "workers", .type = CONF_INT, .min = 1, .max = 64, .def = "1",
     .help = "Worker threads, each with its own event loop and listeners."},
    {.name = "log_level", .type = CONF_ENUM, .choices = "error|warn|info|debug", .def = "info",
     .help = "Least severe level written to the error log."},
    {.name = "error_log", .type = CONF_STR, .def = "stderr",
     .help = "Error log file, or stderr. Reopened on SIGUSR1."},
    {.name = "pid_file", .type = CONF_PATH, .help = "Write the process id here."},
    {.name = "shutdown_timeout", .type = CONF_DURATION, .min = 0, .max = 3600000, .def = "30s",
     .help = "How long SIGTERM waits for in-flight requests."},
    {.name = "admin", .type = CONF_BLOCK, .block = admin_opts, .help = "The admin endpoint."},
    {.name = "cache", .type = CONF_BLOCK, .block = cache_opts, .help = "The cache server role."},
    {.name = "origin", .type = CONF_BLOCK, .block = origin_opts,
     .help = "The built-in static origin role."},
    {.name = "switch", .type = CONF_BLOCK, .block = switch_opts,
     .help = "The switch role: routes TLS connections to the cache holding their session."},
    {.name = "router", .type = CONF_BLOCK, .block = router_opts,
     .help = "The router role: authoritative DNS and HTTP redirects to a node or a peer CDN."},
    {.name = "peer", .type = CONF_BLOCK, .block = peer_opts,
     .help = "The peer role: this CDN's speaker of the peering protocol with other CDNs."},
    {0},
};

static const struct role_ops *const roles[] = {&origin_role, &cache_role, &switch_role, &router_role, &peer_role};

struct running {
    struct conf *conf;
    void *inst[ARRAY_SIZE(roles)];
};

struct daemon {
    const char *conf_path;
    struct running run;
    struct loop *main_loop;
    struct loop **workers;
    pthread_t *threads;
    unsigned nworkers;
    struct admin *admin;
    struct loop_io sig_io;
    struct loop_timer stop_timer;
    unsigned draining;
    int stopping;
    int64_t started;
    struct metric *m_reloads, *m_reload_failures;
};

static char *read_token(const char *path, char *err, size_t errlen)
{
    char buf[512];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "token_file %s: %s", path, strerror(errno));
        return NULL;
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        snprintf(err, errlen, "token_file %s: empty or unreadable", path);
        return NULL;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    buf[n] = '\0';
    if (n < 16) {
        snprintf(err, errlen, "token_file %s: token shorter than 16 characters", path);
        mem_wipe(buf, sizeof(buf));
        return NULL;
    }
    char *t = xstrdup(buf);
    mem_wipe(buf, sizeof(buf));
    return t;
}

/*
 * Loads and checks a config, creating every role instance it names.
 * Returns 0, or -1 with the errors written to stderr-or-log.
 */
static int load(const char *path, struct running *out, int to_log)
{
    memset(out, 0, sizeof(*out));
    out->conf = conf_load(path, top_opts);
    struct conf *c = out->conf;
    if (c->nerrors == 0) {
        const struct conf_node *adm = conf_find(&c->root, "admin");
        const char *tf = adm ? conf_str(adm, "token_file") : NULL;
        if (tf) {
            char err[512];
            char *tok = read_token(tf, err, sizeof(err));
            if (tok == NULL)
                conf_error(c, conf_find(adm, "token_file"), "%s", err);
            else {
                mem_wipe(tok, strlen(tok));
                free(tok);
            }
        }
        int nroles = 0;
        for (size_t i = 0; i < ARRAY_SIZE(roles); i++) {
            const struct conf_node *b = conf_find(&c->root, roles[i]->name);
            if (b == NULL)
                continue;
            nroles++;
            out->inst[i] = roles[i]->create(c, b);
        }
        if (nroles == 0)
            conf_error(c, NULL, "%s: no role configured (add a cache, origin, switch, router or peer block)", path);
    }
    if (c->nerrors == 0)
        return 0;
    if (to_log) {
        char *p = buf_head(&c->errors);
        for (char *nl; (nl = strchr(p, '\n')) != NULL; p = nl + 1)
            log_error("config: %.*s", (int)(nl - p), p);
    } else {
        fputs(buf_head(&c->errors), stderr);
        if (c->nerrors > 50)
            fprintf(stderr, "%s: %u more errors not shown\n", path, c->nerrors - 50);
    }
    for (size_t i = 0; i < ARRAY_SIZE(roles); i++)
        if (out->inst[i])
            roles[i]->destroy(out->inst[i]);
    conf_destroy(c);
    memset(out, 0, sizeof(*out));
    return -1;
}

/* Destroys the role instances and the config of a loaded (not started) set. */
static void unload(struct running *r)
{
    for (size_t i = 0; i < ARRAY_SIZE(roles); i++)
        if (r->inst[i])
            roles[i]->destroy(r->inst[i]);
    conf_destroy(r->conf);
    memset(r, 0, sizeof(*r));
}

static void apply_logging(const struct conf *c)
{
    enum log_level lvl;
    if (log_level_parse(conf_str(&c->root, "log_level"), &lvl) == 0)
        log_set_level(lvl);
    const char *el = conf_str(&c->root, "error_log");
    if (log_open(el) < 0)
        log_warn("cannot open error_log %s", el);
}

static int reload(struct daemon *d, struct buf *msg)
{
    struct running fresh;
    metric_inc(d->m_reloads);
    log_info("reloading %s", d->conf_path);
    if (load(d->conf_path, &fresh, 1) < 0) {
        metric_inc(d->m_reload_failures);
        log_error("reload failed: the old configuration keeps running");
        if (msg)
            buf_puts(msg, "reload failed: configuration errors (see the error log); the old configuration keeps running");
        return -1;
    }
    for (size_t i = 0; i < ARRAY_SIZE(roles); i++) {
        if ((d->run.inst[i] == NULL) != (fresh.inst[i] == NULL))
            log_warnx("reload: adding or removing the %s role needs a restart", roles[i]->name);
        if (d->run.inst[i] && fresh.inst[i])
            roles[i]->reload(d->run.inst[i], fresh.inst[i], fresh.conf);
        if (fresh.inst[i])
            roles[i]->destroy(fresh.inst[i]);
    }
    apply_logging(fresh.conf);
    const struct conf_node *adm = conf_find(&fresh.conf->root, "admin");
    if (d->admin) {
        const char *tf = adm ? conf_str(adm, "token_file") : NULL;
        char err[256];
        char *tok = tf ? read_token(tf, err, sizeof(err)) : NULL;
        admin_set_token(d->admin, tok);
        if (tok) {
            mem_wipe(tok, strlen(tok));
            free(tok);
        }
    }
    conf_destroy(d->run.conf);
    d->run.conf = fresh.conf;
    log_info("reload done");
    if (msg)
        buf_puts(msg, "reloaded");
    return 0;
}

static void finish(struct daemon *d)
{
    for (unsigned i = 0; i < d->nworkers; i++)
        loop_stop(d->workers[i]);
    loop_stop(d->main_loop);
}

static void role_drained(void *arg)
{
    struct daemon *d = arg;
    if (d->draining > 0 && --d->draining == 0) {
        log_info("all roles drained");
        finish(d);
    }
}

static void stop_timeout(struct loop_timer *t)
{
    struct daemon *d = t->data;
    log_warnx("shutdown_timeout reached with work in flight; stopping now");
    finish(d);
}

static void begin_stop(struct daemon *d)
{
    if (d->stopping)
        return;
    d->stopping = 1;
    log_info("stopping: draining in-flight requests");
    if (d->admin)
        admin_set_ready(d->admin, 0);
    for (size_t i = 0; i < ARRAY_SIZE(roles); i++)
        if (d->run.inst[i])
            d->draining++;
    if (d->draining == 0) {
        finish(d);
        return;
    }
    loop_timer_start(&d->stop_timer, conf_int(&d->run.conf->root, "shutdown_timeout"));
    for (size_t i = 0; i < ARRAY_SIZE(roles); i++)
        if (d->run.inst[i])
            roles[i]->drain(d->run.inst[i], role_drained, d);
}

static void signal_cb(struct loop_io *io, unsigned events)
{
    struct daemon *d = io->data;
    struct signalfd_siginfo si;
    while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGTERM:
        case SIGINT:
            begin_stop(d);
            break;
        case SIGHUP:
            if (!d->stopping)
                reload(d, NULL);
            break;
        case SIGUSR1:
            if (log_reopen() < 0)
                log_warn("cannot reopen the error log");
            else
                log_info("log files reopened");
            for (size_t i = 0; i < ARRAY_SIZE(roles); i++)
                if (d->run.inst[i] && roles[i] == &cache_role)
                    cache_reopen_logs(d->run.inst[i]);
            break;
        default:
            break;
        }
    }
}

static int api_status(void *arg, const struct admin_req *req, struct buf *out, const char **ct)
{
    struct daemon *d = arg;
    struct json j;
    json_init(&j, out);
    json_obj_begin(&j);
    json_kv_str(&j, "version", FERRY_VERSION);
    json_kv_int(&j, "pid", getpid());
    json_kv_int(&j, "uptime_seconds", time_wall() - d->started);
    json_kv_int(&j, "workers", d->nworkers);
    json_kv_str(&j, "config", d->conf_path);
    json_kv_str(&j, "state", d->stopping ? "stopping" : "running");
    json_key(&j, "roles");
    json_arr_begin(&j);
    for (size_t i = 0; i < ARRAY_SIZE(roles); i++)
        if (d->run.inst[i])
            json_str(&j, roles[i]->name);
    json_arr_end(&j);
    json_kv_int(&j, "reloads", metric_value(d->m_reloads));
    json_kv_int(&j, "reload_failures", metric_value(d->m_reload_failures));
    json_obj_end(&j);
    return 200;
}

static int api_reload(void *arg, const struct admin_req *req, struct buf *out, const char **ct)
{
    struct daemon *d = arg;
    struct buf msg;
    struct json j;
    buf_init(&msg);
    int rc = reload(d, &msg);
    json_init(&j, out);
    json_obj_begin(&j);
    json_key(&j, "ok");
    json_bool(&j, rc == 0);
    json_key(&j, "message");
    json_strn(&j, buf_head(&msg), buf_avail(&msg));
    json_obj_end(&j);
    buf_fini(&msg);
    return rc == 0 ? 200 : 400;
}

static void *worker_main(void *arg)
{
    loop_run(arg);
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: ferryd [-t] -c FILE\n"
               "       ferryd --options | -h | -V\n\n"
               "  -c, --config FILE  configuration file\n"
               "  -t, --test         check the configuration and exit (1 on errors)\n"
               "      --options      print every configuration option as Markdown\n"
               "  -h, --help         this help\n"
               "  -V, --version      print the version\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'}, {"test", no_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},         {"version", no_argument, NULL, 'V'},
        {"options", no_argument, NULL, 'O'},      {NULL, 0, NULL, 0},
    };
    struct daemon d = {0};
    int test = 0, ch, rc = 0;
    unsigned nthreads = 0;
    char *pidf = NULL;

    log_set_ident("ferryd");
    while ((ch = getopt_long(argc, argv, "c:thV", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c': d.conf_path = optarg; break;
        case 't': test = 1; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("ferryd %s (%s)\n", FERRY_VERSION, OpenSSL_version(OPENSSL_VERSION)); return 0;
        case 'O': {
            struct buf b;
            buf_init(&b);
            buf_puts(&b, "# ferryd configuration options\n\nGenerated by `ferryd --options`.\n\n");
            conf_schema_doc(top_opts, "top level", &b);
            fwrite(buf_head(&b), 1, buf_avail(&b), stdout);
            buf_fini(&b);
            return 0;
        }
        default: usage(stderr); return 2;
        }
    }
    if (d.conf_path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (load(d.conf_path, &d.run, 0) < 0)
        return 1;
    if (test) {
        printf("%s: configuration OK\n", d.conf_path);
        unload(&d.run);
        return 0;
    }

    /* Block the signals in every thread; the main loop reads them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    apply_logging(d.run.conf);
    d.started = time_wall();
    d.main_loop = loop_create();
    loop_timer_init(d.main_loop, &d.stop_timer, stop_timeout);
    d.stop_timer.data = &d;
    d.m_reloads = metric_counter("ferry_config_reloads_total", NULL, "Configuration reloads attempted");
    d.m_reload_failures = metric_counter("ferry_config_reload_failures_total", NULL,
                                         "Configuration reloads rejected");
    int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0)
        fatal("signalfd");
    d.sig_io.data = &d;
    loop_io_start(d.main_loop, &d.sig_io, sfd, LOOP_READ, signal_cb);

    const struct conf_node *adm = conf_find(&d.run.conf->root, "admin");
    if (adm) {
        struct net_addr a;
        char err[256];
        char *tok = NULL;
        net_addr_parse(conf_str(adm, "listen"), &a);
        if (conf_str(adm, "token_file"))
            tok = read_token(conf_str(adm, "token_file"), err, sizeof(err));
        d.admin = admin_create(d.main_loop, &a, tok);
        if (tok) {
            mem_wipe(tok, strlen(tok));
            free(tok);
        }
        if (d.admin == NULL) {
            rc = 1;
            goto out;
        }
        admin_route(d.admin, "GET", "/status", api_status, &d);
        admin_route(d.admin, "POST", "/reload", api_reload, &d);
    }

    d.nworkers = (unsigned)conf_int(&d.run.conf->root, "workers");
    d.workers = xcalloc(d.nworkers, sizeof(*d.workers));
    d.threads = xcalloc(d.nworkers, sizeof(*d.threads));
    for (unsigned i = 0; i < d.nworkers; i++)
        d.workers[i] = loop_create();
    struct role_env env = {.workers = d.workers, .nworkers = d.nworkers,
                           .main_loop = d.main_loop, .admin = d.admin};
    for (size_t i = 0; i < ARRAY_SIZE(roles); i++) {
        if (d.run.inst[i] && roles[i]->start(d.run.inst[i], &env) < 0) {
            log_error("cannot start the %s role", roles[i]->name);
            rc = 1;
            goto out;
        }
    }
    pidf = conf_str(&d.run.conf->root, "pid_file") ? xstrdup(conf_str(&d.run.conf->root, "pid_file")) : NULL;
    if (pidf) {
        FILE *f = fopen(pidf, "w");
        if (f) {
            fprintf(f, "%d\n", (int)getpid());
            fclose(f);
        } else {
            log_warn("cannot write pid_file %s", pidf);
        }
    }
    for (unsigned i = 0; i < d.nworkers; i++) {
        if (pthread_create(&d.threads[i], NULL, worker_main, d.workers[i]) != 0)
            fatal("pthread_create");
        nthreads++;
    }
    if (d.admin)
        admin_set_ready(d.admin, 1);
    log_info("ferryd %s started with %u worker%s", FERRY_VERSION, d.nworkers,
             d.nworkers == 1 ? "" : "s");

    loop_run(d.main_loop);

out:
    /* One teardown path for a normal stop and for a failed start. */
    for (unsigned i = 0; i < nthreads; i++)
        pthread_join(d.threads[i], NULL);
    loop_timer_stop(&d.stop_timer);
    for (size_t i = 0; i < ARRAY_SIZE(roles); i++)
        if (d.run.inst[i])
            roles[i]->destroy(d.run.inst[i]);
    admin_destroy(d.admin);
    loop_io_stop(&d.sig_io);
    close(sfd);
    for (unsigned i = 0; i < d.nworkers; i++)
        loop_destroy(d.workers[i]);
    loop_destroy(d.main_loop);
    free(d.workers);
    free(d.threads);
    conf_destroy(d.run.conf);
    metrics_free_all();
    if (pidf)
        unlink(pidf);
    free(pidf);
    log_info(rc == 0 ? "stopped" : "not started");
    return rc;
}
