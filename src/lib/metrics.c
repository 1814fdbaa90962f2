/*
 * metrics -- see metrics.h. A singly linked registry in registration
 * order; rendering groups series of one name under one HELP/TYPE pair.
 */
#include "lib/metrics.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"

enum { M_COUNTER = 1, M_GAUGE = 2 };

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct metric *reg_head, **reg_tail = &reg_head;

static struct metric *reg(const char *name, const char *labels, const char *help, int kind,
                          metric_fn_cb fn, void *arg)
{
    struct metric *m;
    if (labels == NULL)
        labels = "";
    pthread_mutex_lock(&reg_lock);
    for (m = reg_head; m; m = m->next) {
        if (strcmp(m->name, name) == 0 && strcmp(m->labels, labels) == 0) {
            if (fn != NULL) {
                m->fn = fn;
                m->arg = arg;
            }
            pthread_mutex_unlock(&reg_lock);
            return m;
        }
    }
    m = xcalloc(1, sizeof(*m));
    m->name = xstrdup(name);
    m->labels = xstrdup(labels);
    m->help = xstrdup(help ? help : "");
    m->kind = kind;
    m->fn = fn;
    m->arg = arg;
    *reg_tail = m;
    reg_tail = &m->next;
    pthread_mutex_unlock(&reg_lock);
    return m;
}

struct metric *metric_counter(const char *name, const char *labels, const char *help)
{
    return reg(name, labels, help, M_COUNTER, NULL, NULL);
}

struct metric *metric_gauge(const char *name, const char *labels, const char *help)
{
    return reg(name, labels, help, M_GAUGE, NULL, NULL);
}

struct metric *metric_gauge_fn(const char *name, const char *labels, const char *help,
                               metric_fn_cb fn, void *arg)
{
    return reg(name, labels, help, M_GAUGE, fn, arg);
}

void metric_unbind(void *arg)
{
    pthread_mutex_lock(&reg_lock);
    for (struct metric *m = reg_head; m; m = m->next) {
        if (m->fn != NULL && m->arg == arg) {
            m->fn = NULL;
            m->arg = NULL;
        }
    }
    pthread_mutex_unlock(&reg_lock);
}

static int64_t value_of(struct metric *m)
{
    return m->fn ? m->fn(m->arg) : metric_value(m);
}

void metrics_render(struct buf *out)
{
    pthread_mutex_lock(&reg_lock);
    for (struct metric *m = reg_head; m; m = m->next) {
        /* Only the first series of a name prints the header and then all
         * series of that name, so later ones are skipped here. */
        int seen = 0;
        for (struct metric *p = reg_head; p != m; p = p->next)
            if (strcmp(p->name, m->name) == 0) {
                seen = 1;
                break;
            }
        if (seen)
            continue;
        buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name,
                   m->kind == M_COUNTER ? "counter" : "gauge");
        for (struct metric *s = m; s; s = s->next) {
            if (strcmp(s->name, m->name) != 0)
                continue;
            if (s->labels[0])
                buf_printf(out, "%s{%s} %" PRId64 "\n", s->name, s->labels, value_of(s));
            else
                buf_printf(out, "%s %" PRId64 "\n", s->name, value_of(s));
        }
    }
    pthread_mutex_unlock(&reg_lock);
}

int64_t metrics_sum(const char *name)
{
    int64_t sum = 0;
    pthread_mutex_lock(&reg_lock);
    for (struct metric *m = reg_head; m; m = m->next)
        if (strcmp(m->name, name) == 0)
            sum += value_of(m);
    pthread_mutex_unlock(&reg_lock);
    return sum;
}

void metrics_free_all(void)
{
    pthread_mutex_lock(&reg_lock);
    struct metric *m = reg_head;
    while (m) {
        struct metric *next = m->next;
        free(m->name);
        free(m->labels);
        free(m->help);
        free(m);
        m = next;
    }
    reg_head = NULL;
    reg_tail = &reg_head;
    pthread_mutex_unlock(&reg_lock);
}
