/* list.c: `vmuser list [--json] VM`, who is attached, whether the home is exported and mounted,
 * sessions.
 *
 * Flow: connect + sync -> vmuser-list -> every entry is checked (types, name rules, lengths)
 * before anything is printed, since the guest is not trusted -> the host's view is added:
 * vm_backend_list_exports() (tag, bus, virtiofsd state) per user, plus the exports
 * whose user the agent does not list (orphans: the guest rebooted, or an attach broke half-way;
 * `vmuser detach` removes them) -> a table, or with --json one object per user (JSON Lines;
 * nothing at all when nobody is attached and nothing is exported). A libvirt domain without the
 * vmuser channel has had nobody attached since it started: list says so and plugs nothing in.
 * list_run() is gather_users() + gather_exports(), then render_json() or render_table(). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent-conn.h"
#include "home-export.h"
#include "home-spec.h"
#include "json-util.h"
#include "macro.h"
#include "names.h"
#include "output.h"
#include "qga-client.h"
#include "vm-backend.h"
#include "vm.h"
#include "vmuser.h"

int list_check_entry(json_object *o, size_t i, struct listed_user *ret, struct verr *e) {
        struct listed_user u = {};
        json_object *v;

        if (!json_object_is_type(o, json_type_object))
                return verr_set(e, -EBADMSG, "vmuser-list entry %zu is not an object", i);
        if (json_get_string(o, "userName", &u.name) < 0 || !name_is_valid(u.name))
                return verr_set(e, -EBADMSG, "vmuser-list entry %zu has no valid userName", i);
        if (json_get_uint32(o, "uid", &u.uid) < 0 || json_get_uint32(o, "gid", &u.gid) < 0)
                return verr_set(e, -EBADMSG, "vmuser-list entry '%s' has no valid uid/gid", u.name);
        if (json_get_string(o, "homeDirectory", &u.home_directory) < 0 || strlen(u.home_directory) > HOME_PATH_MAX)
                return verr_set(e, -EBADMSG, "vmuser-list entry '%s' has no valid homeDirectory", u.name);
        if (json_get_bool(o, "homeMounted", &u.mounted) < 0 || json_get_uint32(o, "sessions", &u.sessions) < 0)
                return verr_set(e, -EBADMSG, "vmuser-list entry '%s' has no valid homeMounted/sessions", u.name);
        if (!json_object_object_get_ex(o, "attachedAt", &v) || !json_object_is_type(v, json_type_int))
                return verr_set(e, -EBADMSG, "vmuser-list entry '%s' has no valid attachedAt", u.name);
        u.attached_usec = json_object_get_int64(v);
        if (json_object_object_get_ex(o, "home", &v) && v) {
                struct home_spec spec;
                struct verr ignored = {};
                if (!json_object_is_type(v, json_type_object) || home_spec_from_json(v, &spec, &ignored) < 0)
                        return verr_set(e, -EBADMSG, "vmuser-list entry '%s' has an invalid home spec", u.name);
                u.home = v;
        }
        *ret = u;
        return 0;
}

static json_object *export_to_json(const struct home_export_info *x) {
        json_object *o;

        if (!x)
                return NULL;
        o = json_object_new_object();
        if (!o)
                return NULL;
        json_object_object_add(o, "tag", json_object_new_string(x->tag));
        json_object_object_add(o, "bus", json_object_new_string(x->bus));
        json_object_object_add(o, "source", json_object_new_string(x->source));
        json_object_object_add(o, "readOnly", json_object_new_boolean(x->read_only));
        json_object_object_add(o, "phase", json_object_new_string(x->phase));
        json_object_object_add(o, "virtiofsd", json_object_new_string(virtiofsd_state_to_string(x->virtiofsd_state)));
        json_object_object_add(o, "virtiofsdPid", x->virtiofsd.pid > 0 ? json_object_new_int64(x->virtiofsd.pid) : NULL);
        json_object_object_add(o, "stagingMounted", json_object_new_boolean(x->staging_mounted));
        json_object_object_add(o, "hostUid", json_object_new_int64(x->host_uid));
        json_object_object_add(o, "guestUid", json_object_new_int64(x->guest_uid));
        return o;
}

static void print_json(const struct listed_user *u) {
        _cleanup_json_ json_object *o = json_object_new_object();
        if (!o)
                return;
        json_object_object_add(o, "userName", json_object_new_string(u->name));
        json_object_object_add(o, "attached", json_object_new_boolean(true));
        json_object_object_add(o, "uid", json_object_new_int64(u->uid));
        json_object_object_add(o, "gid", json_object_new_int64(u->gid));
        json_object_object_add(o, "homeDirectory", json_object_new_string(u->home_directory));
        json_object_object_add(o, "home", u->home ? json_object_get(u->home) : NULL);
        json_object_object_add(o, "homeMounted", json_object_new_boolean(u->mounted));
        json_object_object_add(o, "sessions", json_object_new_int64(u->sessions));
        json_object_object_add(o, "attachedAt", json_object_new_int64(u->attached_usec));
        json_object_object_add(o, "export", export_to_json(u->export));
        json_print_line(o);
}

/* An export the agent does not know of. */
static void print_json_orphan(const struct home_export_info *x) {
        _cleanup_json_ json_object *o = json_object_new_object();
        if (!o)
                return;
        json_object_object_add(o, "userName", json_object_new_string(x->user));
        json_object_object_add(o, "attached", json_object_new_boolean(false));
        json_object_object_add(o, "export", export_to_json(x));
        json_print_line(o);
}

/* What the VIRTIOFSD column says: the virtiofsd state, or the phase of an unfinished export. */
static const char *export_state(const struct home_export_info *x) {
        if (!x)
                return "-";
        if (!streq(x->phase, "exported"))
                return x->phase;
        return virtiofsd_state_to_string(x->virtiofsd_state);
}

static void format_time(int64_t usec, char *buf, size_t size) {
        time_t t = (time_t) (usec / 1000000);
        struct tm tm;
        if (usec <= 0 || !localtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm) == 0)
                snprintf(buf, size, "-");
}

/* A VM that is not running cannot list users, but the home exports it left on this host are
 * worth a line: detach removes them. */
static void hint_left_behind(struct vm *vm) {
        _cleanup_free_ struct home_export_info *exports = NULL;
        struct verr ignored = {};
        size_t n = 0;

        if (vm_backend_list_exports(vm->backend, &exports, &n, &ignored) < 0 || n == 0)
                return;
        log_warning("%s is not running, but %zu home export%s of it %s left on this host (%s%s): 'vmuser detach %s USER' "
                    "removes %s", vm->label, n, n == 1 ? "" : "s", n == 1 ? "is" : "are", exports[0].user,
                    n > 1 ? ", ..." : "", vm->label, n == 1 ? "it" : "them");
}

/* What list found out: the agent's users (checked) and the host's exports, each export either
 * claimed by a listed user (users[i].export) or an orphan. */
struct list_facts {
        json_object *value; /* the agent's list; users[] borrows its strings */
        struct listed_user *users;
        size_t n;
        struct home_export_info *exports;
        size_t n_exports;
        bool *claimed;
        size_t n_orphans;
};

static void list_facts_done(struct list_facts *f) {
        free(f->claimed);
        free(f->exports);
        free(f->users);
        json_object_put(f->value);
}

/* The agent's list, every entry checked: OUTCOME_OK, or the failure (logged). */
static enum outcome gather_users(const struct common_options *o, struct vm *vm, struct list_facts *f) {
        _cleanup_qga_client_ struct qga_client *agent = NULL;
        struct qga_error qe = {};
        struct verr e = {};
        int r;

        r = agent_open(vm, 0, o->timeout_ms, &agent, &e);
        if (r == -ENOLINK) {
                /* No channel, no agent: nobody was attached; exports (if any) are orphans. */
                f->value = json_object_new_array();
                if (!f->value)
                        return OUTCOME_FAILED;
                r = 0;
        } else if (r >= 0)
                r = agent_list_users(agent, o->timeout_ms, &f->value, &qe, &e);
        if (r < 0) {
                char safe[2048];
                log_error("Failed to list the users of VM %s: %s", vm->label, text_sanitize(verr_text(&e, r), safe, sizeof(safe)));
                if (vm_is_gone(vm, r))
                        hint_left_behind(vm);
                return outcome_from_agent_error(r, &qe);
        }
        if (!json_object_is_type(f->value, json_type_array)) {
                log_error("Failed to list the users of VM %s: the reply to vmuser-list is not an array", vm->label);
                return OUTCOME_UNREACHABLE;
        }

        f->n = json_object_array_length(f->value);
        f->users = calloc(f->n ? f->n : 1, sizeof(*f->users));
        if (!f->users)
                return OUTCOME_FAILED;
        for (size_t i = 0; i < f->n; i++) {
                r = list_check_entry(json_object_array_get_idx(f->value, i), i, &f->users[i], &e);
                if (r < 0) {
                        log_error("Failed to list the users of VM %s: %s", vm->label, verr_text(&e, r));
                        return OUTCOME_UNREACHABLE;
                }
        }
        return OUTCOME_OK;
}

/* The host's side. Not being able to read it does not hide what the guest said. */
static enum outcome gather_exports(struct vm *vm, struct list_facts *f) {
        struct verr e = {};
        int r;

        r = vm_backend_list_exports(vm->backend, &f->exports, &f->n_exports, &e);
        if (r < 0) {
                log_warning("cannot read the home exports of VM %s: %s", vm->label, verr_text(&e, r));
                f->n_exports = 0;
        }
        f->claimed = calloc(f->n_exports ? f->n_exports : 1, sizeof(bool));
        if (!f->claimed)
                return OUTCOME_FAILED;
        for (size_t k = 0; k < f->n_exports; k++) {
                for (size_t i = 0; i < f->n; i++)
                        if (streq(f->users[i].name, f->exports[k].user)) {
                                f->users[i].export = &f->exports[k];
                                f->claimed[k] = true;
                        }
                f->n_orphans += !f->claimed[k];
        }
        return OUTCOME_OK;
}

static void render_json(const struct list_facts *f) {
        for (size_t i = 0; i < f->n; i++)
                print_json(&f->users[i]);
        for (size_t k = 0; k < f->n_exports; k++)
                if (!f->claimed[k])
                        print_json_orphan(&f->exports[k]);
}

static void render_table(const struct vm *vm, const struct list_facts *f) {
        const struct listed_user *users = f->users;
        const struct home_export_info *exports = f->exports;
        int name_w = 4, home_w = 4, tag_w = 6;

        if (f->n == 0 && f->n_orphans == 0) {
                printf("No users attached to %s.\n", vm->label);
                return;
        }
        for (size_t i = 0; i < f->n; i++) {
                int a = (int) strlen(users[i].name), b = (int) strlen(users[i].home_directory);
                name_w = a > name_w ? a : name_w;
                home_w = b > home_w ? b : home_w;
        }
        if (f->n_orphans > 0 && home_w < (int) strlen("(not attached)"))
                home_w = (int) strlen("(not attached)");
        for (size_t k = 0; k < f->n_exports; k++) {
                int a = (int) strlen(exports[k].user), t = (int) strlen(exports[k].tag);
                name_w = a > name_w ? a : name_w;
                tag_w = t > tag_w ? t : tag_w;
        }
        printf("%-*s %6s %6s %-*s %-7s %8s  %-19s  %-*s %s\n", name_w, "USER", "UID", "GID", home_w, "HOME", "MOUNTED",
               "SESSIONS", "ATTACHED", tag_w, "EXPORT", "VIRTIOFSD");
        for (size_t i = 0; i < f->n; i++) {
                char home[HOME_PATH_MAX + 1], when[64];
                format_time(users[i].attached_usec, when, sizeof(when));
                printf("%-*s %6" PRIu32 " %6" PRIu32 " %-*s %-7s %8" PRIu32 "  %-19s  %-*s %s\n", name_w, users[i].name,
                       users[i].uid, users[i].gid, home_w, text_sanitize(users[i].home_directory, home, sizeof(home)),
                       users[i].mounted ? "yes" : "no", users[i].sessions, when, tag_w,
                       users[i].export ? users[i].export->tag : "-", export_state(users[i].export));
        }
        for (size_t k = 0; k < f->n_exports; k++)
                if (!f->claimed[k])
                        printf("%-*s %6s %6s %-*s %-7s %8s  %-19s  %-*s %s\n", name_w, exports[k].user, "-", "-", home_w,
                               "(not attached)", "-", "-", "-", tag_w, exports[k].tag, export_state(&exports[k]));
        if (f->n_orphans > 0)
                printf("\n%zu home export%s without an attached user: 'vmuser detach %s USER' removes %s.\n", f->n_orphans,
                       f->n_orphans == 1 ? "" : "s", vm->label, f->n_orphans == 1 ? "it" : "them");
}

enum outcome list_run(const struct common_options *o) {
        struct list_facts f = {};
        struct verr e = {};
        struct vm vm = {};
        enum outcome result;
        int r;

        r = vm_open(o, &vm, &e);
        if (r < 0) {
                log_error("%s", verr_text(&e, r));
                return vm_open_outcome(r);
        }
        result = gather_users(o, &vm, &f);
        if (result == OUTCOME_OK)
                result = gather_exports(&vm, &f);
        if (result == OUTCOME_OK && o->json)
                render_json(&f);
        else if (result == OUTCOME_OK)
                render_table(&vm, &f);
        list_facts_done(&f);
        vm_close(&vm);
        return result;
}
