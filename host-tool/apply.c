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
 * on in parallel. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent-conn.h"
#include "home-export.h"
#include "home-spec.h"
#include "json-util.h"
#include "macro.h"
#include "manifest.h"
#include "names.h"
#include "output.h"
#include "qga-client.h"
#include "vm-match.h"
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

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- step 2: VMs and their declared users ---- */

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

static int expand(const struct apply_options *o, const struct manifest *m, struct target **ret, size_t *ret_n) {
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

/* ---- step 3: one VM, in its worker ---- */

/* What the last attach/detach call reported through the sink. */
struct sink_result {
        bool got;
        enum outcome o;
        bool changed;
        char reason[1024];
        char error_class[64];
};

static void sink(void *userdata, const char *user, enum outcome o, json_object *fields, const char *reason,
                 const char *error_class) {
        struct sink_result *s = userdata;
        json_object *v;

        *s = (struct sink_result) { .got = true, .o = o };
        if (fields && json_object_object_get_ex(fields, "changed", &v) && json_object_is_type(v, json_type_boolean))
                s->changed = json_object_get_boolean(v);
        snprintf(s->reason, sizeof(s->reason), "%s", strempty(reason));
        snprintf(s->error_class, sizeof(s->error_class), "%s", strempty(error_class));
}

struct worker {
        const struct apply_options *o;
        struct vm vm;
        struct qga_client *agent;
        json_object *result;
        bool changes;
};

static void result_add(struct worker *w, const char *list, const char *user, const char *reason) {
        json_object *a, *item;

        if (!json_object_object_get_ex(w->result, list, &a))
                return;
        if (reason) {
                item = json_object_new_object();
                if (!item)
                        return;
                json_object_object_add(item, "userName", json_object_new_string(user));
                json_object_object_add(item, "reason", json_object_new_string(reason));
        } else
                item = json_object_new_string(user);
        json_object_array_add(a, item);
}

static void common_init(struct worker *w, struct common_options *c, struct sink_result *s) {
        *c = (struct common_options) {
                .vm = w->vm.label,
                .connect_uri = w->o->connect_uri,
                .timeout_ms = w->o->timeout_ms,
                .opened_vm = &w->vm,
                .shared_agent = &w->agent,
                .sink = sink,
                .sink_userdata = s,
        };
        *s = (struct sink_result) {};
}

static struct sink_result do_attach(struct worker *w, const struct desired *d, bool replace, bool probe,
                                    const uint32_t *uid) {
        const struct manifest_user_options *mo = &d->options;
        char *users[] = { (char *) d->name, NULL };
        struct attach_options a = {
                .users = users,
                .n_users = 1,
                .home_dir = mo->home_dir,
                .shell = mo->shell == MANIFEST_SHELL_FROM_HOST ? HOST_USER_SHELL_FROM_HOST :
                         mo->shell == MANIFEST_SHELL_PATH      ? HOST_USER_SHELL_PATH :
                                                                 HOST_USER_SHELL_GUEST_DEFAULT,
                .shell_path = mo->shell_path,
                .has_uid = uid != NULL,
                .uid = uid ? *uid : 0,
                .groups = (char **) mo->groups,
                .ssh_key_files = (char **) mo->ssh_key_files,
                .no_password = mo->no_password == 1,
                .no_authorized_keys = mo->no_authorized_keys == 1,
                .home_tag = mo->home_tag,
                .home_fstype = mo->home_fstype,
                .home_source = mo->home_source,
                .read_only = mo->read_only == 1,
                .no_home = mo->no_home == 1,
                .replace = replace,
                .probe = probe,
        };
        struct sink_result s;
        struct verr e = {};
        int r;

        common_init(w, &a.common, &s);
        r = attach_check_options(&a, &e);
        if (r < 0) {
                s = (struct sink_result) { .got = true, .o = OUTCOME_USAGE };
                snprintf(s.reason, sizeof(s.reason), "%s", verr_text(&e, r));
                return s;
        }
        enum outcome o = attach_run(&a);
        if (!s.got) { /* failed before any user was tried (an --ssh-key file) */
                s = (struct sink_result) { .got = true, .o = o };
                snprintf(s.reason, sizeof(s.reason), "attach failed before '%s' was tried (see the messages above)", d->name);
        }
        return s;
}

static struct sink_result do_detach(struct worker *w, const char *name) {
        char *users[] = { (char *) name, NULL };
        struct detach_options dopt = { .users = users, .n_users = 1 };
        struct sink_result s;

        common_init(w, &dopt.common, &s);
        enum outcome o = detach_run(&dopt);
        if (!s.got)
                s = (struct sink_result) { .got = true, .o = o, .reason = "detach failed" };
        return s;
}

/* The home spec the manifest's options make attach send, in the form vmuser-list reports. */
static int desired_home(const struct desired *d, json_object **ret) {
        const struct manifest_user_options *mo = &d->options;
        _cleanup_free_ char *tag = NULL;
        json_object *spec;
        int r;

        *ret = NULL;
        if (mo->no_home == 1)
                return 0;
        if (mo->home_tag) {
                r = template_expand(mo->home_tag, d->name, &tag);
                if (r < 0)
                        return r;
        } else {
                tag = malloc(HOME_SPEC_TAG_MAX + 1);
                if (!tag)
                        return -ENOMEM;
                r = home_export_tag(d->name, tag, HOME_SPEC_TAG_MAX + 1);
                if (r < 0)
                        return r;
        }
        spec = json_object_new_object();
        if (!spec)
                return -ENOMEM;
        json_object_object_add(spec, "tag", json_object_new_string(tag));
        json_object_object_add(spec, "fstype", json_object_new_string(mo->home_fstype ? mo->home_fstype : "virtiofs"));
        if (mo->read_only == 1)
                json_object_object_add(spec, "options", json_object_new_string("ro"));
        *ret = spec;
        return 0;
}

/* Whether the declared home differs from the listed one (tag, type, options): then the change
 * reaches the mount, and a logged-in user keeps the old one until the next apply. */
static bool home_differs(const struct desired *d, const struct listed_user *l) {
        _cleanup_json_ json_object *want = NULL;
        struct home_spec a, b;
        struct verr ignored = {};

        if (desired_home(d, &want) < 0)
                return true;
        if (!want || !l->home)
                return !want != !l->home;
        if (home_spec_from_json(want, &a, &ignored) < 0 || home_spec_from_json(l->home, &b, &ignored) < 0)
                return true;
        return a.fstype != b.fstype || !streq(a.tag, b.tag) || !streq(a.options, b.options);
}

static const struct listed_user *find_listed(const struct listed_user *l, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (streq(l[i].name, name))
                        return &l[i];
        return NULL;
}

static bool is_declared(const struct target *t, const char *name) {
        for (size_t i = 0; i < t->n_users; i++)
                if (streq(t->users[i].name, name))
                        return true;
        return false;
}

static void fail_user(struct worker *w, const char *name, const struct sink_result *s) {
        char text[1200];
        snprintf(text, sizeof(text), "%s%s%s", outcome_to_string(s->o), s->reason[0] ? ": " : "", s->reason);
        result_add(w, "failed", name, text);
}

static void reconcile_user(struct worker *w, const struct desired *d, const struct listed_user *l) {
        bool check = w->o->check;
        struct sink_result s;

        if (d->failed[0]) {
                result_add(w, "failed", d->name, d->failed);
                return;
        }
        if (!l) {
                if (check) {
                        _cleanup_(host_user_freep) struct host_user *hu = NULL;
                        struct verr e = {};
                        int r = host_user_lookup(d->name, NULL, &hu, &e);
                        if (r < 0)
                                result_add(w, "failed", d->name, verr_text(&e, r));
                        else {
                                result_add(w, "added", d->name, NULL);
                                w->changes = true;
                        }
                        return;
                }
                s = do_attach(w, d, false, false, NULL);
                if (s.o != OUTCOME_OK)
                        fail_user(w, d->name, &s);
                else {
                        result_add(w, s.changed ? "added" : "unchanged", d->name, NULL);
                        w->changes |= s.changed;
                }
                return;
        }

        /* Listed: an identical record is a no-op for the agent, a different one is refused. */
        s = do_attach(w, d, false, check, NULL);
        if (s.o == OUTCOME_OK) {
                result_add(w, s.changed ? "replaced" : "unchanged", d->name, NULL);
                w->changes |= s.changed;
                return;
        }
        if (s.o != OUTCOME_REFUSED || !attach_refusal_is_difference(s.reason)) {
                fail_user(w, d->name, &s);
                return;
        }

        bool home = home_differs(d, l);
        if (home && (l->sessions > 0 || l->mounted)) {
                char why[256];
                snprintf(why, sizeof(why), "the home changes, and the user is logged in (%u session%s, home %smounted): "
                         "applied once they log out", l->sessions, l->sessions == 1 ? "" : "s", l->mounted ? "" : "not ");
                result_add(w, "pending", d->name, why);
                return;
        }
        if (check) {
                result_add(w, "replaced", d->name, NULL);
                w->changes = true;
                return;
        }
        if (home) {
                /* The user is logged out: the old export goes (host side; the guest has nothing
                 * mounted), the replace keeps the UID, and attach exports the new home. */
                struct verr ue = {};
                int u = vm_backend_unexport_home(w->vm.backend, d->name, 0, 0, &ue);
                if (u < 0 && u != -ENOENT) {
                        s = (struct sink_result) { .got = true, .o = OUTCOME_FAILED };
                        snprintf(s.reason, sizeof(s.reason), "cannot remove the old home export: %s", verr_text(&ue, u));
                        fail_user(w, d->name, &s);
                        return;
                }
        }
        s = do_attach(w, d, true, false, NULL);
        if (s.o != OUTCOME_OK)
                fail_user(w, d->name, &s);
        else {
                result_add(w, "replaced", d->name, NULL);
                w->changes = true;
        }
}

static void prune_user(struct worker *w, const struct listed_user *l) {
        struct sink_result s;

        if (w->o->check) {
                if (l->sessions > 0) {
                        char why[128];
                        snprintf(why, sizeof(why), "not declared, but logged in (%u session%s): removed once they log out",
                                 l->sessions, l->sessions == 1 ? "" : "s");
                        result_add(w, "pending", l->name, why);
                } else {
                        result_add(w, "removed", l->name, NULL);
                        w->changes = true;
                }
                return;
        }
        s = do_detach(w, l->name);
        if (s.o == OUTCOME_OK) {
                result_add(w, "removed", l->name, NULL);
                w->changes = true;
        } else if (s.o == OUTCOME_BUSY) {
                char why[1200];
                snprintf(why, sizeof(why), "not declared, but logged in: removed once they log out (%s)", s.reason);
                result_add(w, "pending", l->name, why);
        } else
                fail_user(w, l->name, &s);
}

static int worker_list(struct worker *w, json_object **ret_list, struct verr *e) {
        struct qga_error qe = {};
        int r;

        r = agent_open(&w->vm, 0, w->o->timeout_ms, &w->agent, e);
        if (r == -ENOLINK) {
                /* A libvirt domain without the vmuser channel: nobody attached yet. */
                *ret_list = json_object_new_array();
                return *ret_list ? 0 : -ENOMEM;
        }
        if (r < 0)
                return r;
        r = agent_list_users(w->agent, w->o->timeout_ms, ret_list, &qe, e);
        if (r == -EREMOTEIO)
                return verr_set(e, r, "the agent refused vmuser-list: %s", qe.desc);
        if (r < 0)
                return r;
        if (!json_object_is_type(*ret_list, json_type_array))
                return verr_set(e, -EBADMSG, "the reply to vmuser-list is not an array");
        return 0;
}

static json_object *worker_run(const struct apply_options *o, const struct target *t) {
        struct worker w = { .o = o };
        static const char *const lists[] = { "added", "replaced", "removed", "unchanged", "pending", "failed" };
        _cleanup_json_ json_object *list = NULL;
        _cleanup_free_ struct listed_user *listed = NULL;
        struct common_options c = { .vm = t->vm, .connect_uri = o->connect_uri, .timeout_ms = o->timeout_ms };
        struct verr e = {};
        size_t n = 0;
        int r;

        w.result = json_object_new_object();
        if (!w.result)
                return NULL;
        json_object_object_add(w.result, "vm", json_object_new_string(t->vm));
        for (size_t i = 0; i < ELEMENTSOF(lists); i++)
                json_object_object_add(w.result, lists[i], json_object_new_array());

        r = vm_open(&c, &w.vm, &e);
        if (r < 0)
                goto vm_failed;
        json_object_object_add(w.result, "vm", json_object_new_string(w.vm.label));
        r = worker_list(&w, &list, &e);
        if (r < 0)
                goto vm_failed;
        n = json_object_array_length(list);
        listed = calloc(n ? n : 1, sizeof(*listed));
        if (!listed) {
                r = -ENOMEM;
                goto vm_failed;
        }
        for (size_t i = 0; i < n; i++) {
                r = list_check_entry(json_object_array_get_idx(list, i), i, &listed[i], &e);
                if (r < 0)
                        goto vm_failed;
        }

        for (size_t i = 0; i < t->n_users; i++)
                reconcile_user(&w, &t->users[i], find_listed(listed, n, t->users[i].name));
        if (!o->no_prune)
                for (size_t i = 0; i < n; i++)
                        if (!is_declared(t, listed[i].name))
                                prune_user(&w, &listed[i]);
        goto finish;

vm_failed:
        json_object_object_add(w.result, "error", json_object_new_string(verr_text(&e, r)));
finish:
        json_object_object_add(w.result, "changed", json_object_new_boolean(w.changes));
        qga_client_free(w.agent);
        if (w.vm.backend)
                vm_close(&w.vm);
        return w.result;
}

static _Noreturn void worker_main(const struct apply_options *o, const struct target *t, int fd) {
        json_object *result = worker_run(o, t);
        const char *s = result ? json_object_to_json_string_ext(result, JSON_C_TO_STRING_PLAIN) : "";
        size_t len = strlen(s), off = 0;

        while (off < len) {
                ssize_t k = write(fd, s + off, len - off);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        _exit(1);
                off += (size_t) k;
        }
        json_object_put(result);
        _exit(0);
}

/* ---- step 3, the parent: workers at most --jobs at a time ---- */

static int start_worker(const struct apply_options *o, struct target *t) {
        int p[2];

        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        fflush(stdout);
        fflush(stderr);
        t->pid = fork();
        if (t->pid < 0) {
                close(p[0]);
                close(p[1]);
                return -errno;
        }
        if (t->pid == 0) {
                close(p[0]);
                worker_main(o, t, p[1]);
        }
        close(p[1]);
        t->fd = p[0];
        /* Per request at most the timeout; a user takes up to three requests (probe, detach,
         * attach) plus the export; the list and the connection two more. */
        t->deadline_ms = now_ms() + (int64_t) o->timeout_ms * (4 + 4 * (int64_t) t->n_users) + 30000;
        return 0;
}

static void vm_failed_result(struct target *t, const char *fmt, ...) _printf_(2, 3);
static void vm_failed_result(struct target *t, const char *fmt, ...) {
        char text[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        json_object_put(t->result);
        t->result = json_object_new_object();
        if (!t->result)
                return;
        json_object_object_add(t->result, "vm", json_object_new_string(t->vm));
        static const char *const lists[] = { "added", "replaced", "removed", "unchanged", "pending", "failed" };
        for (size_t i = 0; i < ELEMENTSOF(lists); i++)
                json_object_object_add(t->result, lists[i], json_object_new_array());
        json_object_object_add(t->result, "error", json_object_new_string(text));
        json_object_object_add(t->result, "changed", json_object_new_boolean(false));
}

static void finish_worker(struct target *t, bool killed) {
        int status = 0;

        if (t->fd >= 0)
                close(t->fd);
        t->fd = -1;
        if (killed)
                kill(t->pid, SIGKILL);
        while (waitpid(t->pid, &status, 0) < 0 && errno == EINTR)
                ;
        t->done = true;
        if (killed)
                vm_failed_result(t, "no answer within the deadline of the whole VM; stopped");
        else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                vm_failed_result(t, "the worker for this VM %s %d", WIFSIGNALED(status) ? "was killed by signal" : "exited",
                                 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        else if (json_parse_strict(t->buf ? t->buf : "", t->len, &t->result) < 0 ||
                 !json_object_is_type(t->result, json_type_object))
                vm_failed_result(t, "the worker for this VM reported nothing readable");
        free(t->buf);
        t->buf = NULL;
}

static size_t list_len(json_object *r, const char *key) {
        json_object *a;
        return json_object_object_get_ex(r, key, &a) && json_object_is_type(a, json_type_array) ?
                       json_object_array_length(a) :
                       0;
}

static const char *result_error(json_object *r) {
        json_object *v;
        return json_object_object_get_ex(r, "error", &v) && json_object_is_type(v, json_type_string) ?
                       json_object_get_string(v) :
                       NULL;
}

/* "3 added, 1 removed, 16 unchanged" or the VM's error. */
static void summary(json_object *r, bool check, char *buf, size_t size) {
        static const char *const keys[] = { "added", "replaced", "removed", "pending", "failed", "unchanged" };
        const char *err = result_error(r);
        size_t off = 0;
        char safe[600];

        if (err) {
                snprintf(buf, size, "FAILED: %s", text_sanitize(err, safe, sizeof(safe)));
                return;
        }
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                size_t k = list_len(r, keys[i]);
                if (k == 0 || off >= size)
                        continue;
                off += (size_t) snprintf(buf + off, size - off, "%s%zu %s%s", off ? ", " : "", k,
                                         check && i < 3 ? "would be " : "", keys[i]);
        }
        if (off == 0)
                snprintf(buf, size, "no users declared or attached");
}

static void print_diff(json_object *r) {
        static const struct {
                const char *key;
                char mark;
        } kinds[] = { { "added", '+' }, { "replaced", '~' }, { "removed", '-' }, { "pending", '!' }, { "failed", 'x' } };
        const char *vm = json_object_get_string(json_object_object_get(r, "vm"));
        char safe_vm[300], safe[1300];

        text_sanitize(vm, safe_vm, sizeof(safe_vm));
        for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
                json_object *a;
                if (!json_object_object_get_ex(r, kinds[k].key, &a))
                        continue;
                for (size_t i = 0; i < json_object_array_length(a); i++) {
                        json_object *item = json_object_array_get_idx(a, i), *name = item, *reason = NULL;
                        if (json_object_is_type(item, json_type_object)) {
                                name = json_object_object_get(item, "userName");
                                reason = json_object_object_get(item, "reason");
                        }
                        printf("%c %s %s%s%s%s\n", kinds[k].mark, safe_vm, json_object_get_string(name),
                               reason ? " (" : "", reason ? text_sanitize(json_object_get_string(reason), safe, sizeof(safe)) : "",
                               reason ? ")" : "");
                }
        }
}

int apply_run(const struct apply_options *o) {
        struct manifest *m = NULL;
        struct target *targets = NULL;
        size_t n = 0, next = 0, running = 0, finished = 0;
        bool progress = isatty(STDERR_FILENO) && !o->json;
        size_t n_failed_vms = 0, n_failed_users = 0, n_changed_vms = 0;
        size_t totals[6] = {};
        static const char *const keys[] = { "added", "replaced", "removed", "pending", "failed", "unchanged" };
        struct verr e = {};
        int r, status = 0;

        r = manifest_load(o->manifest, &m, &e);
        if (r < 0) {
                log_error("%s", verr_text(&e, r));
                return 1;
        }
        r = expand(o, m, &targets, &n);
        if (r < 0) {
                status = 1;
                goto finish;
        }

        while (finished < n) {
                while (running < o->jobs && next < n) {
                        r = start_worker(o, &targets[next]);
                        if (r < 0) {
                                vm_failed_result(&targets[next], "cannot start a worker: %s", strerror(-r));
                                targets[next].done = true;
                                finished++;
                        } else
                                running++;
                        next++;
                }
                if (running == 0)
                        continue;

                struct pollfd *p = calloc(running, sizeof(*p));
                size_t *idx = calloc(running, sizeof(*idx));
                size_t np = 0;
                int64_t now = now_ms(), wait_ms = INT32_MAX;
                if (!p || !idx) {
                        free(p);
                        free(idx);
                        log_error("out of memory");
                        status = 1;
                        goto finish;
                }
                for (size_t i = 0; i < next; i++)
                        if (targets[i].fd >= 0 && !targets[i].done) {
                                p[np] = (struct pollfd) { .fd = targets[i].fd, .events = POLLIN };
                                idx[np++] = i;
                                if (targets[i].deadline_ms - now < wait_ms)
                                        wait_ms = targets[i].deadline_ms - now;
                        }
                if (poll(p, np, wait_ms < 0 ? 0 : (int) wait_ms) < 0 && errno != EINTR) {
                        free(p);
                        free(idx);
                        log_error("poll: %m");
                        status = 1;
                        goto finish;
                }
                now = now_ms();
                for (size_t k = 0; k < np; k++) {
                        struct target *t = &targets[idx[k]];
                        bool over = now >= t->deadline_ms, eof = false;
                        if (p[k].revents) {
                                if (t->len + 65536 + 1 > APPLY_REPORT_MAX)
                                        over = true;
                                else {
                                        char *b = realloc(t->buf, t->len + 65536 + 1);
                                        ssize_t got = b ? read(t->fd, b + t->len, 65536) : -1;
                                        if (b)
                                                t->buf = b;
                                        if (got > 0)
                                                t->len += (size_t) got;
                                        else if (got == 0 || (errno != EINTR && errno != EAGAIN))
                                                eof = true;
                                        if (t->buf)
                                                t->buf[t->len] = '\0';
                                }
                        }
                        if (!eof && !over)
                                continue;
                        finish_worker(t, !eof);
                        running--;
                        finished++;
                        if (progress && t->result) {
                                char line[1024], safe_vm[300];
                                summary(t->result, o->check, line, sizeof(line));
                                fprintf(stderr, "[%zu/%zu] %s: %s\n", finished, n,
                                        text_sanitize(json_object_get_string(json_object_object_get(t->result, "vm")),
                                                      safe_vm, sizeof(safe_vm)),
                                        line);
                        }
                }
                free(p);
                free(idx);
        }

        /* ---- step 4: the report, in manifest order ---- */
        for (size_t i = 0; i < n; i++) {
                json_object *res = targets[i].result;
                char line[1024], safe_vm[300];
                bool changed = false, failed;

                if (!res)
                        continue;
                failed = result_error(res) || list_len(res, "failed") > 0;
                for (size_t k = 0; k < ELEMENTSOF(keys); k++)
                        totals[k] += list_len(res, keys[k]);
                changed = list_len(res, "added") + list_len(res, "replaced") + list_len(res, "removed") > 0;
                n_failed_vms += failed;
                n_failed_users += list_len(res, "failed");
                n_changed_vms += changed;
                if (o->json) {
                        json_print_line(res);
                        continue;
                }
                if (result_error(res)) {
                        char safe[600];
                        log_error("VM %s: %s", text_sanitize(targets[i].vm, safe_vm, sizeof(safe_vm)),
                                  text_sanitize(result_error(res), safe, sizeof(safe)));
                }
                if (o->diff)
                        print_diff(res);
                else if (changed || failed || list_len(res, "pending") > 0) {
                        summary(res, o->check, line, sizeof(line));
                        printf("%s: %s\n",
                               text_sanitize(json_object_get_string(json_object_object_get(res, "vm")), safe_vm,
                                             sizeof(safe_vm)),
                               line);
                }
        }
        if (!o->json) {
                if (n == 0)
                        printf("The manifest names no VM: nothing to do.\n");
                else if (n_changed_vms == 0 && n_failed_vms == 0 && totals[3] == 0)
                        printf("Nothing %s on %zu VM%s: %zu user%s as declared.\n", o->check ? "would change" : "changed", n,
                               n == 1 ? "" : "s", totals[5], totals[5] == 1 ? "" : "s");
                else
                        printf("%zu VM%s: %zu %sadded, %zu %sreplaced, %zu %sremoved, %zu pending, %zu unchanged; %zu VM%s "
                               "failed (%zu user%s).\n",
                               n, n == 1 ? "" : "s", totals[0], o->check ? "to be " : "", totals[1],
                               o->check ? "to be " : "", totals[2], o->check ? "to be " : "", totals[3], totals[5],
                               n_failed_vms, n_failed_vms == 1 ? "" : "s", n_failed_users, n_failed_users == 1 ? "" : "s");
        }
        fflush(stdout);
        status = n_failed_vms > 0 ? 1 : o->check && n_changed_vms > 0 ? 2 : 0;

finish:
        for (size_t i = 0; i < n; i++) {
                if (targets[i].fd >= 0 && !targets[i].done)
                        finish_worker(&targets[i], true);
                free(targets[i].vm);
                free(targets[i].users);
                free(targets[i].buf);
                json_object_put(targets[i].result);
        }
        free(targets);
        manifest_free(m);
        return status;
}
