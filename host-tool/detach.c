/* detach.c: `vmuser detach [--force] VM USER...`, remove attached users from a running VM.
 *
 * Flow: check the names -> one agent connection for the batch (opened at the first valid name)
 * -> vmuser-detach {userName, force} per user -> check the reply -> one sentence or JSON object
 * per user. The host user database is not consulted: a user deleted on the host can still be
 * detached. Without --force the agent refuses a user with sessions (UserBusy); with it, the
 * agent ends the sessions and unmounts the home first.
 *
 * Then the host side: when the backend lists an export of the user, it is taken away
 * (vm_backend_unexport_home; bare QEMU: device_del, wait for the guest to release the device,
 * chardev-remove, virtiofsd stopped, staging mount and state removed; libvirt: detach of the
 * <filesystem> alias, libvirt's virtiofsd gone, staging mount and state removed). The guest has
 * unmounted the home by then. --force becomes VM_BACKEND_UNEXPORT_FORCE: the host side goes even
 * when the guest does not let go. A libvirt domain without the vmuser channel has no agent to
 * ask: the channel is not hot-plugged for a detach.
 * An export whose user the agent does not know (the guest rebooted and forgot it, `vmuser list`
 * shows it as an orphan) is removed too, so an admin can clean it up the same way; so is the
 * export of a VM that is not running any more (QEMU died or was stopped with users attached). */
#include <errno.h>
#include <string.h>

#include "agent-conn.h"
#include "audit.h"
#include "home-export.h"
#include "json-util.h"
#include "macro.h"
#include "names.h"
#include "output.h"
#include "qga-client.h"
#include "vm-backend.h"
#include "vm.h"
#include "vmuser.h"

static int check_reply(json_object *v, const char *name, uint32_t *ret_uid, struct verr *e) {
        const char *s;

        if (!json_object_is_type(v, json_type_object) || json_get_string(v, "userName", &s) < 0 || !streq(s, name) ||
            json_get_uint32(v, "uid", ret_uid) < 0)
                return verr_set(e, -EBADMSG, "the agent's reply to vmuser-detach lacks userName '%s' or a valid uid", name);
        return 0;
}

/* What the agent ended and removed of the UID (its "cleanup", doc/PROTOCOL.txt). Only the known
 * members are taken, numbers checked, at most UID_KEPT_SHOWN kept paths of bounded length: the
 * reply comes from the guest. NULL when the agent sent none (an older agent). */
#define UID_KEPT_SHOWN 16u
#define UID_KEPT_LEN_MAX 1024u
static json_object *cleanup_from_reply(json_object *v, char *text, size_t text_size) {
        static const char *const counts[] = { "processesEnded", "processesLeft", "ipcRemoved", "ipcLeft",
                                              "filesRemoved", "dirsRemoved", "keptCount" };
        uint32_t n[ELEMENTSOF(counts)];
        json_object *c, *kept, *q;
        size_t used;

        text[0] = '\0';
        if (!json_object_object_get_ex(v, "cleanup", &c) || !json_object_is_type(c, json_type_object))
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(counts); i++)
                if (json_get_uint32(c, counts[i], &n[i]) < 0)
                        return NULL;
        if (!json_object_object_get_ex(c, "kept", &kept) || !json_object_is_type(kept, json_type_array) ||
            !json_object_object_get_ex(c, "quarantined", &q) || !json_object_is_type(q, json_type_boolean))
                return NULL;

        json_object *o = json_object_new_object(), *k = json_object_new_array();
        if (!o || !k) {
                json_object_put(o);
                json_object_put(k);
                return NULL;
        }
        for (size_t i = 0; i < ELEMENTSOF(counts); i++)
                json_object_object_add(o, counts[i], json_object_new_int64(n[i]));
        json_object_object_add(o, "kept", k);
        json_object_object_add(o, "quarantined", json_object_new_boolean(json_object_get_boolean(q)));

        snprintf(text, text_size, "; ended %u process(es) of the UID, removed %u IPC object(s), %u file(s) and %u "
                 "director%s", n[0], n[2], n[4], n[5], n[5] == 1 ? "y" : "ies");
        for (size_t i = 0; i < json_object_array_length(kept) && i < UID_KEPT_SHOWN; i++) {
                json_object *item = json_object_array_get_idx(kept, i);
                char clean[256];
                if (!json_object_is_type(item, json_type_string) || json_object_get_string_len(item) > (int) UID_KEPT_LEN_MAX)
                        continue;
                const char *s = json_object_get_string(item);
                json_object_array_add(k, json_object_new_string(s));
                used = strlen(text);
                snprintf(text + used, text_size - used, "%s%s", i == 0 ? "; kept: " : ", ",
                         text_sanitize(s, clean, sizeof(clean)));
        }
        used = strlen(text);
        if (n[1] > 0 || n[3] > 0)
                snprintf(text + used, text_size - used, "; %u process(es) and %u IPC object(s) could not be removed",
                         n[1], n[3]);
        used = strlen(text);
        if (json_object_get_boolean(q))
                snprintf(text + used, text_size - used, "; the UID is in quarantine until that is gone");
        return o;
}

/* Whether the agent lists name; -errno when the list cannot be had. */
/* What a forced vmuser-detach may take in the guest beyond --timeout (see above). */
#define DETACH_FORCE_EXTRA_MS 35000

static int agent_knows(struct qga_client *agent, const char *name, int timeout_ms) {
        _cleanup_json_ json_object *list = NULL;
        struct qga_error qe = {};
        struct verr ignored = {};
        int r;

        r = agent_list_users(agent, timeout_ms, &list, &qe, &ignored);
        if (r < 0)
                return r;
        if (!json_object_is_type(list, json_type_array))
                return -EBADMSG;
        for (size_t i = 0; i < json_object_array_length(list); i++) {
                const char *s;
                if (json_get_string(json_object_array_get_idx(list, i), "userName", &s) == 0 && streq(s, name))
                        return 1;
        }
        return 0;
}

struct detach_batch {
        const struct detach_options *o;
        struct vm vm;
        struct qga_client *agent;
        int agent_r;
        struct verr agent_e;
        struct report rep;
};

/* Whether the backend lists an export of name: 1 yes, 0 no, -errno with e set. */
static int has_export(struct detach_batch *b, const char *name, struct verr *e) {
        _cleanup_free_ struct home_export_info *list = NULL;
        size_t n = 0;
        int r;

        r = vm_backend_list_exports(b->vm.backend, &list, &n, e);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if (streq(list[i].user, name))
                        return 1;
        return 0;
}

/* Takes the export of name away, if there is one. Returns 1 when one was removed, 0 when there
 * was none, -errno with e set when it failed. *ret_qemu_keeps: QEMU still has the device. */
static int unexport_home(struct detach_batch *b, const char *name, bool *ret_qemu_keeps, struct verr *e) {
        int r;

        *ret_qemu_keeps = false;
        r = has_export(b, name, e);
        if (r <= 0)
                return r;
        r = vm_backend_unexport_home(b->vm.backend, name, b->o->force ? VM_BACKEND_UNEXPORT_FORCE : 0, 0, e);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        *ret_qemu_keeps = r == 1;
        return 1;
}

/* How the user was found: attached in the guest, or only as a home export on this host. */
enum found {
        FOUND_IN_GUEST,
        FOUND_ORPHAN,         /* the agent does not know the user (the guest rebooted, say) */
        FOUND_VM_NOT_RUNNING, /* the VM is gone, and every user with it */
};

static void report_detached(struct detach_batch *b, const char *name, enum found found, uint32_t uid, int unexported,
                            bool qemu_keeps, json_object *reply) {
        bool in_guest = found == FOUND_IN_GUEST;
        _cleanup_json_ json_object *fields = json_object_new_object();
        const char *home = unexported > 0 ? (qemu_keeps ? "; its home export is gone from this host, but the guest has "
                                                          "not released the device yet (QEMU keeps it until then)"
                                                        : "; its home export was removed")
                                          : "";

        char cleanup_text[2048] = "";
        json_object *cleanup = reply ? cleanup_from_reply(reply, cleanup_text, sizeof(cleanup_text)) : NULL;

        if (fields) {
                if (in_guest)
                        json_object_object_add(fields, "uid", json_object_new_int64(uid));
                if (cleanup)
                        json_object_object_add(fields, "cleanup", cleanup);
                json_object_object_add(fields, "homeUnexported", json_object_new_boolean(unexported > 0));
                if (unexported > 0)
                        json_object_object_add(fields, "deviceReleased", json_object_new_boolean(!qemu_keeps));
                if (!in_guest)
                        json_object_object_add(fields, "orphan", json_object_new_boolean(true));
                if (found == FOUND_VM_NOT_RUNNING)
                        json_object_object_add(fields, "vmRunning", json_object_new_boolean(false));
        }
        if (!fields)
                json_object_put(cleanup);
        if (qemu_keeps)
                log_warning("QEMU of %s still holds the home device of '%s'; a new attach of '%s' is refused until the "
                            "guest releases it", b->vm.label, name, name);
        if (in_guest)
                report_success(&b->rep, name, fields, "Detached '%s' (uid %u) from %s%s%s.", name, uid, b->vm.label,
                               cleanup_text, home);
        else if (found == FOUND_VM_NOT_RUNNING)
                report_success(&b->rep, name, fields, "%s is not running; removed the home export of '%s' it left behind.",
                               b->vm.label, name);
        else
                report_success(&b->rep, name, fields, "'%s' was not attached in %s; removed its orphaned home export%s.",
                               name, b->vm.label, qemu_keeps ? " (QEMU keeps the device until the guest releases it)" : "");
}

static void detach_one(struct detach_batch *b, const char *name) {
        _cleanup_json_ json_object *args = NULL, *value = NULL;
        const struct detach_options *o = b->o;
        struct qga_error qe = {};
        struct verr e = {}, ue = {};
        bool qemu_keeps;
        uint32_t uid;
        int r, u;

        if (!name_is_valid(name)) {
                verr_set(&e, -EINVAL, "'%s' is not a valid user name", name);
                report_failure(&b->rep, name, OUTCOME_USAGE, NULL, e.text);
                return;
        }
        if (!b->agent && b->agent_r == 0)
                b->agent_r = agent_open(&b->vm, 0, o->common.timeout_ms, &b->agent, &b->agent_e);
        /* No channel: nobody attached since the domain started. No agent because there is no VM:
         * the guest went with every user in it. Either way an export of the name is all that is
         * left (a staging mount, maybe a virtiofsd), and it goes. */
        if ((b->agent_r == -ENOLINK || vm_is_gone(&b->vm, b->agent_r)) && has_export(b, name, &ue) > 0) {
                u = unexport_home(b, name, &qemu_keeps, &ue);
                if (u < 0)
                        report_failure(&b->rep, name, OUTCOME_FAILED, NULL, verr_text(&ue, u));
                else
                        report_detached(b, name, b->agent_r == -ENOLINK ? FOUND_ORPHAN : FOUND_VM_NOT_RUNNING, 0, u,
                                        qemu_keeps, NULL);
                return;
        }
        if (b->agent_r < 0) {
                report_failure(&b->rep, name, outcome_from_agent_error(b->agent_r, NULL), NULL,
                               verr_text(&b->agent_e, b->agent_r));
                return;
        }

        args = json_object_new_object();
        if (!args || json_object_object_add(args, "userName", json_object_new_string(name)) < 0 ||
            (o->force && json_object_object_add(args, "force", json_object_new_boolean(true)) < 0)) {
                report_failure(&b->rep, name, OUTCOME_FAILED, NULL, strerror(ENOMEM));
                return;
        }
        /* A forced detach waits in the guest for logind to end the sessions and the user's slice
         * (bounded by the agent: 10 s for the session lock, 10 s for the slice, once more after
         * ending the UID's processes): --timeout plus that. */
        r = qga_client_call(b->agent, "vmuser-detach", args,
                            o->force ? o->common.timeout_ms + DETACH_FORCE_EXTRA_MS : o->common.timeout_ms, &value,
                            &qe, &e);
        if (r == -EREMOTEIO && !streq(qe.error_class, "UserBusy")) {
                /* Refused: an orphaned export (the guest forgot the user) is still ours to remove. */
                struct verr ignored = {};
                if (has_export(b, name, &ignored) > 0 && agent_knows(b->agent, name, o->common.timeout_ms) == 0) {
                        u = unexport_home(b, name, &qemu_keeps, &ue);
                        if (u < 0)
                                report_failure(&b->rep, name, OUTCOME_FAILED, NULL, verr_text(&ue, u));
                        else
                                report_detached(b, name, FOUND_ORPHAN, 0, u, qemu_keeps, NULL);
                        return;
                }
        }
        if (r < 0) {
                report_failure(&b->rep, name, outcome_from_agent_error(r, &qe), r == -EREMOTEIO ? &qe : NULL,
                               verr_text(&e, r));
                return;
        }
        r = check_reply(value, name, &uid, &e);
        if (r < 0) {
                report_failure(&b->rep, name, OUTCOME_UNREACHABLE, NULL, verr_text(&e, r));
                return;
        }

        u = unexport_home(b, name, &qemu_keeps, &ue);
        if (u < 0) {
                char text[sizeof(ue.text) + 128];
                snprintf(text, sizeof(text), "its records are gone from the guest, but its home export is not: %s",
                         verr_text(&ue, u));
                report_failure(&b->rep, name, OUTCOME_FAILED, NULL, text);
                return;
        }
        report_detached(b, name, FOUND_IN_GUEST, uid, u, qemu_keeps, value);
}

/* The audit entry of each user's result (report.on_result). */
static void detach_audit(void *userdata, const char *user, const char *result, const char *reason, json_object *fields) {
        struct detach_batch *b = userdata;
        audit_host_result("detach", b->vm.label, user, result, reason, fields, NULL);
}

enum outcome detach_run(const struct detach_options *o) {
        struct detach_batch b = { .o = o };
        enum outcome result;

        result = vm_acquire(&o->common, &b.vm, &b.agent);
        if (result != OUTCOME_OK)
                return result;
        report_init(&b.rep, &o->common, "detach", "from", b.vm.label, detach_audit, &b);

        for (size_t i = 0; i < o->n_users; i++)
                detach_one(&b, o->users[i]);

        vm_release(&o->common, &b.vm, b.agent);
        return report_outcome(&b.rep);
}
