/*
 * log -- the daemon's error log: levels, one line per event, reopen on
 * SIGUSR1. Lines look like
 *   2026-11-23T12:00:00.123Z ferryd[412] warn: cache: origin 127.0.0.1:80: connect: Connection refused
 * log_warn and fatal append strerror(errno); the x variants do not.
 * Secrets (keys, tokens, session state) must never be passed to these.
 * Thread-safe: each line is formatted into a local buffer and written with
 * one write(2).
 */
#ifndef FERRY_LIB_LOG_H
#define FERRY_LIB_LOG_H

#include <stdarg.h>

enum log_level {
    LOG_LVL_ERROR = 0,
    LOG_LVL_WARN = 1,
    LOG_LVL_INFO = 2,
    LOG_LVL_DEBUG = 3,
};

/*
 * Sets where the log goes: path NULL or "stderr" means standard error.
 * Returns 0, or -errno when the file cannot be opened (the old target stays).
 */
int log_open(const char *path);
/* Reopens the current log file (after rotation). Returns 0 or -errno. */
int log_reopen(void);
void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
/* Parses "error", "warn", "info", "debug". Returns 0 or -1. */
int log_level_parse(const char *s, enum log_level *lvl);
/* Sets the program name printed on each line (default "ferry"). */
void log_set_ident(const char *ident);

void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
