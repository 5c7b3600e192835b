/* apply.h: what the files of `vmuser apply` share (see apply.c for the flow).
 *
 *   apply.c            the subcommand: load -> expand -> workers -> report
 *   apply-targets.c    step 2: manifest entries -> VMs, each with its declared users
 *   apply-worker.c     step 3: the worker processes (one per VM) and the parent that runs them
 *   apply-reconcile.c  step 3, in a worker: one VM's users reconciled through attach/detach
 *   apply-report.c     step 4: summaries, --diff lines, totals, the exit status */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "manifest.h"
#include "names.h"
#include "qga-client.h"
#include "vm.h"
#include "vmuser.h"

/* A worker's report is at most this big (4096 users with long reasons fit). */
#define APPLY_REPORT_MAX (8 * 1024 * 1024)
/* How many users one VM may be declared with after group expansion. */
#define APPLY_USERS_PER_VM_MAX 4096

struct desired {
        char name[VMUSER_NAME_MAX + 1];
        struct manifest_user_options options; /* merged with the defaults */
        char failed[256];                     /* set: the entry could not be resolved (group) */
};

struct target {
        char *vm;
        struct desired *users;
        size_t n_users;
        /* the worker */
        pid_t pid;
        int fd;
        char *buf;
        size_t len;
        int64_t deadline_ms;
        bool done;
        json_object *result;
};

/* One VM's worker: the VM and agent connection attach/detach borrow, the result being built. */
struct worker {
        const struct apply_options *o;
        struct vm vm;
        struct qga_client *agent;
        json_object *result;
        bool changes;
};

/* apply-targets.c: the manifest's VM patterns expanded; errors are logged. *ret is set even on
 * failure (what was built so far, for apply_targets_free()). */
int apply_expand(const struct apply_options *o, const struct manifest *m, struct target **ret, size_t *ret_n);

/* apply-worker.c: runs a worker per target, at most o->jobs at a time, until every target has
 * a result (a failed VM gets one saying why). 0, or -errno (logged) when the parent itself fails. */
int apply_run_workers(const struct apply_options *o, struct target *targets, size_t n);
/* Stops a worker still running (killed) and releases the targets. */
void apply_targets_free(struct target *targets, size_t n);

/* apply-reconcile.c, in the worker: the declared user d (l: as the agent lists it, or NULL) and
 * a listed user nobody declares. */
void apply_reconcile_user(struct worker *w, const struct desired *d, const struct listed_user *l);
void apply_prune_user(struct worker *w, const struct listed_user *l);
const struct listed_user *apply_find_listed(const struct listed_user *l, size_t n, const char *name);
bool apply_is_declared(const struct target *t, const char *name);

/* apply-report.c: "3 added, 1 removed, 16 unchanged" or the VM's error. */
void apply_summary(json_object *r, bool check, char *buf, size_t size);
/* Prints the results in manifest order; returns the exit status (see vmuser.h). */
int apply_report(const struct apply_options *o, const struct target *targets, size_t n);
