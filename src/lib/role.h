/*
 * role -- the interface between ferryd and each role it can run (cache,
 * origin, and later switch, router, peer, accounting).
 *
 * Life of a role instance:
 *   create   from a checked config block (no sockets yet; semantic errors
 *            go to conf_error with file:line) -- also used by `ferryd -t`;
 *   start    open listeners on every worker loop and register admin routes,
 *            before the worker threads run;
 *   reload   take over the reloadable settings of a freshly created
 *            instance (publishers, certificates, rules); the fresh one is
 *            destroyed after. Runs on the main thread; the role hands new
 *            settings to its workers with loop_post;
 *   drain    stop accepting and call done(arg) once in-flight work ended;
 *   destroy  free everything (worker loops are stopped by then).
 */
#ifndef FERRY_LIB_ROLE_H
#define FERRY_LIB_ROLE_H

#include "lib/admin.h"
#include "lib/conf.h"
#include "lib/loop.h"

struct role_env {
    struct loop **workers;  /* not owned */
    unsigned nworkers;
    struct loop *main_loop; /* the admin endpoint's loop */
    struct admin *admin;    /* may be NULL when no admin block */
};

struct role_ops {
    const char *name;
    const struct conf_opt *schema;
    void *(*create)(struct conf *c, const struct conf_node *block);
    int (*start)(void *inst, const struct role_env *env);
    int (*reload)(void *inst, void *fresh, struct conf *c);
    void (*drain)(void *inst, void (*done)(void *arg), void *arg);
    void (*destroy)(void *inst);
};

#endif
