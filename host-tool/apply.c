/* apply.c: `vmuser apply [--check] [--diff] [--jobs N] [--json] [--no-prune] MANIFEST`, converge
 * many VMs to the users a manifest declares (vmuser-apply(5)).
 *
 * Flow:
 *   1. load    the manifest (libvmuser/manifest.c: strict, bounded; errors name key and value)
 *   2. expand  each entry's VM pattern (libvmuser/vm-match.c) into VMs; per VM, the declared
 *              users in entry order (a host group stands for its members; a later entry's
 *              options for a user win), each with its attach options
 *   3. run     one worker process per VM, at most --jobs at a time. A worker opens the VM and
 *              one agent connection, asks vmuser-list, and reconciles through attach.c and
 *              detach.c on that connection (their reports go to a sink here, not to stdout):
 *                declared, not listed      attach                         -> added
 *                declared, listed          attach without replace: the agent answers
 *                                          changed=false for an identical record -> unchanged;
 *                                          a different record is refused -> replace
 *                  replace, home unchanged attach --replace               -> replaced
 *                  replace, home changed   the old export removed, attach --replace (the
 *                                          UID stays) exports the new one -> replaced; but not
 *                                          while the user is logged in (sessions, home
 *                                          mounted)                       -> pending
 *                listed, not declared      detach without force (unless --no-prune) -> removed;
 *                                          refused for sessions           -> pending
 *              --check runs the same decisions without a change: listed users are probed with
 *              attach_options.probe (nothing written, nothing exported), the rest is predicted.
 *              The worker writes one JSON object to a pipe and exits. Only users the agent
 *              lists are ever replaced or detached: those are the ones vmuser attached.
 *   4. report  as workers finish: a progress line per VM on a terminal; then per VM a summary
 *              line (with --diff the users, +added ~replaced -removed !pending), or with
 *              --json one object per VM; the exit status (0, 1 some VM failed, 2 --check found
 *              changes).
 * A VM that is down, slow or answers garbage costs one worker its per-request timeouts (and at
 * most a deadline proportional to its users, after which the worker is killed); the others go
 * on in parallel.
 *
 * Files: apply-targets.c (2), apply-worker.c and apply-reconcile.c (3), apply-report.c (4);
 * apply.h has what they share. */
#include "apply.h"
#include "macro.h"
#include "manifest.h"
#include "output.h"

int apply_run(const struct apply_options *o) {
        struct manifest *m = NULL;
        struct target *targets = NULL;
        size_t n = 0;
        struct verr e = {};
        int r, status;

        r = manifest_load(o->manifest, &m, &e);
        if (r < 0) {
                log_error("%s", verr_text(&e, r));
                return 1;
        }
        r = apply_expand(o, m, &targets, &n);
        if (r >= 0)
                r = apply_run_workers(o, targets, n);
        status = r < 0 ? 1 : apply_report(o, targets, n);

        apply_targets_free(targets, n);
        manifest_free(m);
        return status;
}
