/* apply-targets.c: step 2 of `vmuser apply` (see apply.c): each manifest entry's VM pattern
 * expanded (vm-match.c) into VMs; per VM, the declared users in entry order. A host group
 * ("@group" in the manifest) stands for its members and the users whose primary group it is; a
 * later entry's options for a user win. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apply.h"
#include "macro.h"
#include "output.h"
#include "vm-match.h"

static int add_desired(struct target *t, const char *name, const struct manifest_user_options *opts, const char *failed) {
        struct desired *d;

        for (size_t i = 0; i < t->n_users; i++)
                if (streq(t->users[i].name, name)) {
                        t->users[i].options = *opts; /* a later entry wins */
                        snprintf(t->users[i].failed, sizeof(t->users[i].failed), "%s", strempty(failed));
                        return 0;
                }
        if (t->n_users >= APPLY_USERS_PER_VM_MAX)
                return -E2BIG;
        d = realloc(t->users, (t->n_users + 1) * sizeof(*d));
        if (!d)
                return -ENOMEM;
        t->users = d;
        d = &t->users[t->n_users++];
        *d = (struct desired) { .options = *opts };
        snprintf(d->name, sizeof(d->name), "%s", name);
        snprintf(d->failed, sizeof(d->failed), "%s", strempty(failed));
        return 0;
}

/* The members of host group name: its member list and the users whose primary group it is. */
static int add_group(struct target *t, const char *group, const struct manifest_user_options *opts) {
        struct group *gr;
        struct passwd *pw;
        int r = 0;

        errno = 0;
        gr = getgrnam(group);
        if (!gr) {
                char label[VMUSER_NAME_MAX + 2], why[256];
                snprintf(label, sizeof(label), "@%s", group);
                snprintf(why, sizeof(why), "host group '%s' does not exist", group);
                return add_desired(t, label, opts, why);
        }
        gid_t gid = gr->gr_gid;
        for (char **m = gr->gr_mem; m && *m && r >= 0; m++)
                if (name_is_valid(*m))
                        r = add_desired(t, *m, opts, NULL);
        setpwent();
        while (r >= 0 && (pw = getpwent()))
                if (pw->pw_gid == gid && name_is_valid(pw->pw_name))
                        r = add_desired(t, pw->pw_name, opts, NULL);
        endpwent();
        return r;
}

static struct target *find_or_add_target(struct target **targets, size_t *n, const char *vm) {
        struct target *t;

        for (size_t i = 0; i < *n; i++)
                if (streq((*targets)[i].vm, vm))
                        return &(*targets)[i];
        t = realloc(*targets, (*n + 1) * sizeof(*t));
        if (!t)
                return NULL;
        *targets = t;
        t = &t[(*n)++];
        *t = (struct target) { .fd = -1, .vm = strdup(vm) };
        return t->vm ? t : NULL;
}

int apply_expand(const struct apply_options *o, const struct manifest *m, struct target **ret, size_t *ret_n) {
        struct target *targets = NULL;
        size_t n = 0;
        int r = 0;

        for (size_t i = 0; i < m->n_vms && r >= 0; i++) {
                const struct manifest_vm *mv = &m->vms[i];
                _cleanup_free_ char **vms = NULL;
                size_t n_vms = 0;
                struct verr e = {};

                r = vm_match(mv->pattern, o->connect_uri, &vms, &n_vms, &e);
                if (r < 0) {
                        log_error("vms[%zu] (\"%s\"): %s", i, mv->pattern, verr_text(&e, r));
                        break;
                }
                if (n_vms == 0)
                        log_warning("vms[%zu]: the pattern '%s' matches no VM", i, mv->pattern);
                for (size_t k = 0; k < n_vms; k++) {
                        struct target *t = r >= 0 ? find_or_add_target(&targets, &n, vms[k]) : NULL;
                        if (r >= 0 && !t)
                                r = -ENOMEM;
                        for (size_t u = 0; r >= 0 && u < mv->n_users; u++) {
                                struct manifest_user_options opts = mv->users[u].options;
                                manifest_options_merge(&opts, &m->defaults);
                                r = mv->users[u].is_group ? add_group(t, mv->users[u].name, &opts) :
                                                            add_desired(t, mv->users[u].name, &opts, NULL);
                        }
                        if (r == -E2BIG)
                                log_error("VM %s: more than %d users declared", vms[k], APPLY_USERS_PER_VM_MAX);
                        free(vms[k]);
                }
        }
        if (r == -ENOMEM)
                log_error("out of memory");
        *ret = targets;
        *ret_n = n;
        return r;
}
