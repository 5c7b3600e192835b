/* apply-reconcile.c: step 3 of `vmuser apply` inside one VM's worker (see apply.c for the
 * decision table): each declared user against what the agent lists, then the listed users
 * nobody declares. The changes go through attach_run() and detach_run() on the worker's VM and
 * agent connection; their per-user reports come back through sink() instead of stdout, and end
 * up in the worker's result lists (added, replaced, removed, unchanged, pending, failed). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apply.h"
#include "home-export.h"
#include "home-spec.h"
#include "json-util.h"
#include "macro.h"
#include "output.h"

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

const struct listed_user *apply_find_listed(const struct listed_user *l, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (streq(l[i].name, name))
                        return &l[i];
        return NULL;
}

bool apply_is_declared(const struct target *t, const char *name) {
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

void apply_reconcile_user(struct worker *w, const struct desired *d, const struct listed_user *l) {
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

void apply_prune_user(struct worker *w, const struct listed_user *l) {
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
