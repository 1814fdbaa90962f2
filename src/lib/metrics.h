/*
 * metrics -- process-wide counters and gauges, rendered in the Prometheus
 * text exposition format (version 0.0.4).
 *
 * Metrics are registered at start-up or reload (under a mutex) and updated
 * from any thread with relaxed atomics. Registering the same name and
 * labels twice returns the same metric, so a reload does not duplicate
 * series. Gauges may also be computed at render time by a callback.
 */
#ifndef FERRY_LIB_METRICS_H
#define FERRY_LIB_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "lib/buf.h"

struct metric {
    _Atomic int64_t value;
    /* the rest is private */
    struct metric *next;
    char *name;    /* owned */
    char *labels;  /* owned: `a="b",c="d"` or "" */
    char *help;    /* owned */
    int kind;
    int64_t (*fn)(void *arg);
    void *arg;
};

typedef int64_t (*metric_fn_cb)(void *arg);

/*
 * Returns the counter (monotonic) or gauge with this name and label set,
 * creating it. labels is a Prometheus label list without braces, or NULL.
 * Never returns NULL; the metric lives until metrics_free_all.
 */
struct metric *metric_counter(const char *name, const char *labels, const char *help);
struct metric *metric_gauge(const char *name, const char *labels, const char *help);
/* A gauge whose value is fn(arg) at render time (fn runs under the registry lock). */
struct metric *metric_gauge_fn(const char *name, const char *labels, const char *help,
                               metric_fn_cb fn, void *arg);
/* Detaches the callback of every gauge whose arg is arg (before arg is freed). */
void metric_unbind(void *arg);

static inline void metric_add(struct metric *m, int64_t v)
{
    atomic_fetch_add_explicit(&m->value, v, memory_order_relaxed);
}
static inline void metric_inc(struct metric *m)
{
    metric_add(m, 1);
}
static inline void metric_set(struct metric *m, int64_t v)
{
    atomic_store_explicit(&m->value, v, memory_order_relaxed);
}
static inline int64_t metric_value(struct metric *m)
{
    return atomic_load_explicit(&m->value, memory_order_relaxed);
}

/* Appends every metric in the text format, grouped by name. */
void metrics_render(struct buf *out);
/* Sum over all label sets of name (for status summaries). */
int64_t metrics_sum(const char *name);
void metrics_free_all(void);

#endif
