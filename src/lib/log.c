/*
 * log -- see log.h. The target fd is swapped atomically on reopen so
 * that writers in other threads never see a closed descriptor for long:
 * the old fd is closed only after the new one is published.
 */
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_fd = 2;
static _Atomic int log_level = LOG_LVL_INFO;
static char *log_path; /* owned; NULL when logging to stderr */
static char log_ident[32] = "ferry";
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static int open_target(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    return fd < 0 ? -errno : fd;
}

int log_open(const char *path)
{
    int fd = 2, old;

    if (path != NULL && strcmp(path, "stderr") != 0) {
        fd = open_target(path);
        if (fd < 0)
            return fd;
    }
    pthread_mutex_lock(&log_lock);
    free(log_path);
    log_path = (fd == 2) ? NULL : strdup(path);
    old = atomic_exchange(&log_fd, fd);
    pthread_mutex_unlock(&log_lock);
    if (old != 2 && old != fd)
        close(old);
    return 0;
}

int log_reopen(void)
{
    int fd, old;

    pthread_mutex_lock(&log_lock);
    if (log_path == NULL) {
        pthread_mutex_unlock(&log_lock);
        return 0;
    }
    fd = open_target(log_path);
    if (fd < 0) {
        pthread_mutex_unlock(&log_lock);
        return fd;
    }
    old = atomic_exchange(&log_fd, fd);
    pthread_mutex_unlock(&log_lock);
    if (old != 2)
        close(old);
    return 0;
}

void log_set_level(enum log_level lvl)
{
    atomic_store(&log_level, (int)lvl);
}

enum log_level log_get_level(void)
{
    return (enum log_level)atomic_load(&log_level);
}

int log_level_parse(const char *s, enum log_level *lvl)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *lvl = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

void log_set_ident(const char *ident)
{
    snprintf(log_ident, sizeof(log_ident), "%s", ident);
}

static void vlog(int lvl, int with_errno, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static void vlog(int lvl, int with_errno, const char *fmt, va_list ap)
{
    char line[2048];
    int saved = errno;
    struct timeval tv;
    struct tm tm;
    size_t n;
    int r;

    if (lvl > atomic_load(&log_level))
        return;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    r = snprintf(line + n, sizeof(line) - n, ".%03dZ %s[%d] %s: ", (int)(tv.tv_usec / 1000),
                 log_ident, (int)getpid(), level_names[lvl]);
    if (r > 0)
        n += (size_t)r;
    r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    if (r > 0)
        n = (n + (size_t)r < sizeof(line)) ? n + (size_t)r : sizeof(line) - 1;
    if (with_errno && n < sizeof(line) - 1) {
        r = snprintf(line + n, sizeof(line) - n, ": %s", strerror(saved));
        if (r > 0)
            n = (n + (size_t)r < sizeof(line)) ? n + (size_t)r : sizeof(line) - 1;
    }
    /* Make room for the newline even when the message was cut. */
    if (n >= sizeof(line) - 1)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    if (write(atomic_load(&log_fd), line, n) < 0) {
        /* Nowhere left to report it. */
    }
    errno = saved;
}

#define LOG_FN(fn, lvl, with_errno)                                                               \
    void fn(const char *fmt, ...)                                                                 \
    {                                                                                             \
        va_list ap;                                                                               \
        va_start(ap, fmt);                                                                        \
        vlog(lvl, with_errno, fmt, ap);                                                           \
        va_end(ap);                                                                               \
    }

LOG_FN(log_error, LOG_LVL_ERROR, 0)
LOG_FN(log_warn, LOG_LVL_WARN, 1)
LOG_FN(log_warnx, LOG_LVL_WARN, 0)
LOG_FN(log_info, LOG_LVL_INFO, 0)
LOG_FN(log_debug, LOG_LVL_DEBUG, 0)

void fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(LOG_LVL_ERROR, 1, fmt, ap);
    va_end(ap);
    abort();
}

void fatalx(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(LOG_LVL_ERROR, 0, fmt, ap);
    va_end(ap);
    abort();
}
