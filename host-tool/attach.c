/* attach.c: `vmuser attach VM USER...`, push host users into a running VM.
 *
 * Each user runs through the steps below, in order; a failing step ends that user's run with an
 * outcome and a reason, the undo functions of the steps it passed run in reverse, and the batch
 * goes on with the next user. All users share one agent connection, opened when the first user
 * reaches "push" (a batch that fails on the host never touches the VM) and re-synchronized by
 * the client after any timeout.
 *
 *   1. resolve  the host user through NSS, and the policy checks (host-user.c)
 *   2. record   the minimized user record: shadow hash, SSH keys, options (host-user.c); the
 *               guest UID of a home export left from before a guest reboot, if there is one
 *               (--uid otherwise, or the agent allocates)
 *   3. home     the home spec sent with the record. By default {"tag": home_export_tag(),
 *               "fstype": "virtiofs"[, "options": "ro"]}, for the export of step 5; a bare
 *               QEMU's QMP socket must exist, else the user fails here, before the guest is
 *               touched (libvirt checks the domain in step 5).
 *               --home-tag sends a spec without exporting anything (tests, stand-ins);
 *               --no-home sends none.
 *   4. push     vmuser-attach over the batch's connection (qga-client.c; for a libvirt domain
 *               without the vmuser channel the backend hot-plugs one); the reply is checked
 *               before it is believed. Undo (a later step failed): vmuser-detach, but only when
 *               this push created the user; a re-attach of an identical record, or a --replace of
 *               a user attached before, is left as it was.
 *   5. export   vm_backend_export_home() with the guest UID/GID the agent just reported (bare
 *               QEMU: home-export.c, idmapped staging mount -> virtiofsd -> QMP hot-plug;
 *               libvirt: staging mount -> libvirt's <filesystem> live attach). An export that
 *               already exists for the same guest UID is an idempotent re-attach.
 *   6. report   one sentence or one JSON object per user (attach-report.c, output.c)
 *
 * The export comes after the push because the guest UID is only known from the agent's reply;
 * the guest mounts the tag at login (pam_vmuser), so a login in between waits for the tag.
 *
 * Files: this one runs the batch and its steps; attach-options.c checks and expands the
 * options, attach-report.c says what became of each user; attach.h has what they share. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "agent-conn.h"
#include "attach.h"
#include "audit.h"
#include "home-export.h"
#include "home-spec.h"
#include "host-user.h"
#include "json-util.h"
#include "macro.h"
#include "output.h"
#include "qga-client.h"
#include "vm-backend.h"
#include "vm.h"
#include "vmuser.h"

struct attach_step {
        const char *name;
        int (*run)(struct attach_batch *b, struct attach_job *j);
        void (*undo)(struct attach_batch *b, struct attach_job *j); /* may be NULL */
};

static void warn_cb(void *userdata, const char *text) {
        log_warning("%s", text);
}

/* ---- the steps ---- */

static int step_resolve(struct attach_batch *b, struct attach_job *j) {
        int r = host_user_lookup(j->name, NULL, &j->host, &j->e);
        if (r < 0)
                j->outcome = r == -ENOENT || r == -EPERM ? OUTCOME_HOST_USER : OUTCOME_FAILED;
        return r;
}

/* The guest UID of an export of name that is still there from an earlier attach, when the guest
 * has forgotten the user (it rebooted) or a re-attach is under way: 1 with *ret_uid set, 0 when
 * there is none. Asking the agent for that UID keeps the export (virtiofsd, QEMU's device, the
 * ID mapping) valid, so a reboot costs the user nothing but a new `vmuser attach`. */
static int leftover_export_uid(struct attach_batch *b, const char *name, uint32_t *ret_uid) {
        if (!b->exports_listed) {
                struct verr ignored = {};
                b->exports_listed = true;
                if (vm_backend_list_exports(b->vm.backend, &b->exports_before, &b->n_exports_before, &ignored) < 0)
                        b->n_exports_before = 0;
        }
        for (size_t i = 0; i < b->n_exports_before; i++) {
                const struct home_export_info *x = &b->exports_before[i];
                /* Only a live export is worth keeping: with virtiofsd gone (QEMU restarted, say)
                 * there is no share, and the attach must fail on it rather than fit it. */
                if (streq(x->user, name) && streq(x->phase, "exported") && x->guest_uid == x->guest_gid &&
                    x->virtiofsd_state == VIRTIOFSD_STATE_RUNNING) {
                        *ret_uid = x->guest_uid;
                        return 1;
                }
        }
        return 0;
}

static int step_record(struct attach_batch *b, struct attach_job *j) {
        const struct attach_options *o = b->o;
        _cleanup_free_ char *home = NULL;
        struct host_user_options uo = {
                .shell = o->shell,
                .shell_path = o->shell_path,
                .has_uid = o->has_uid,
                .uid = o->uid,
                .groups = o->groups,
                .extra_keys = &b->extra_keys,
                .no_password = o->no_password,
                .no_authorized_keys = o->no_authorized_keys,
                .warn = warn_cb,
        };
        int r;

        if (!o->has_uid && attach_exports(o) && leftover_export_uid(b, j->name, &uo.uid) > 0)
                uo.has_uid = true;
        if (o->home_dir) {
                r = template_expand(o->home_dir, j->name, &home);
                if (r < 0)
                        return r;
                uo.home_directory = home;
        }
        r = host_user_build_record(j->host, &uo, &j->record, &j->e);
        if (r < 0)
                j->outcome = r == -EINVAL || r == -E2BIG ? OUTCOME_HOST_USER : OUTCOME_FAILED;
        return r;
}

static int step_home(struct attach_batch *b, struct attach_job *j) {
        const struct attach_options *o = b->o;
        int r;

        r = attach_build_home_spec(o, j->name, &j->home, &j->e);
        if (r < 0) {
                j->outcome = r == -ENOMEM ? OUTCOME_FAILED : OUTCOME_USAGE;
                return r;
        }
        if (!attach_exports(o))
                return 0;

        /* Found out now, before the guest is touched: without QMP nothing can be hot-plugged. */
        struct vm_backend_monitor mon;
        vm_backend_probe_monitor(b->vm.backend, 0, &mon);
        r = !mon.socket[0] ? 0 : mon.exists < 0 ? mon.exists : mon.is_socket ? 0 : -ENOTSOCK;
        if (r < 0) {
                j->outcome = r == -ENOMEM ? OUTCOME_FAILED : OUTCOME_UNREACHABLE;
                return verr_set(&j->e, r, "the VM has no QMP socket '%s' (%s), which exporting the home "
                                                "needs: start QEMU with -qmp unix:%s,server=on,wait=off (see "
                                                "vmuser(1), QEMU), or attach with --no-home",
                                mon.socket, strerror(-r), mon.socket);
        }
        if (o->home_source)
                r = template_expand(o->home_source, j->name, &j->source);
        else {
                j->source = strdup(j->host->home);
                r = j->source ? 0 : -ENOMEM;
        }
        if (r < 0) {
                j->outcome = OUTCOME_FAILED;
                return r;
        }
        if (j->source[0] != '/') {
                j->outcome = OUTCOME_HOST_USER;
                return verr_set(&j->e, -EINVAL, "the home of '%s' on this host, '%s', is not an absolute path",
                                j->name, j->source);
        }
        /* Guest root can chmod 06755 a file it writes through virtiofsd (HOME-EXPORT.txt): on a
         * file system the host mounts without nosuid, that is a setuid-to-the-user program. */
        struct statvfs sv;
        if (!o->read_only && statvfs(j->source, &sv) == 0 && !(sv.f_flag & ST_NOSUID)) {
                j->source_allows_setuid = true;
                log_warning("the file system of '%s' allows setuid programs: root in %s can make a file in the "
                            "export setuid to '%s' (chmod 06755) that any user of this host could run as '%s'; "
                            "mount it nosuid, attach --read-only, or export a directory of a nosuid file system "
                            "(--home-source DIR); see vmuser(1), SECURITY",
                            j->source, b->vm.label, j->name, j->name);
        }
        return 0;
}

static int ensure_agent(struct attach_batch *b, struct attach_job *j) {
        if (b->agent)
                return 0;
        if (!b->agent_failed) {
                unsigned flags = VM_BACKEND_AGENT_HOTPLUG | (b->o->persistent ? VM_BACKEND_AGENT_PERSISTENT : 0);
                b->agent_error = agent_open(&b->vm, flags, b->o->common.timeout_ms, &b->agent, &b->agent_verr);
                b->agent_failed = b->agent_error < 0;
                /* With --replace, "changed" does not tell a new user from a replaced one; the list
                 * does. When it cannot be had, no push is undone (the safe side). */
                if (!b->agent_failed && b->o->replace && attach_exports(b->o)) {
                        struct qga_error qe = {};
                        struct verr ignored = {};
                        json_object *list = NULL;
                        if (agent_list_users(b->agent, b->o->common.timeout_ms, &list, &qe, &ignored) >= 0 &&
                            json_object_is_type(list, json_type_array))
                                b->attached_before = list;
                        else
                                json_object_put(list);
                }
        }
        if (b->agent_failed) {
                verr_set(&j->e, b->agent_error, "%s", verr_text(&b->agent_verr, b->agent_error));
                j->outcome = outcome_from_agent_error(b->agent_error, NULL);
                return b->agent_error;
        }
        return 0;
}

/* The agent is not trusted: its answer must be the one PROTOCOL.txt promises, for our user. */
static int check_reply(struct attach_job *j, json_object *v) {
        const char *name, *home;
        int r;

        if (!json_object_is_type(v, json_type_object))
                return verr_set(&j->e, -EBADMSG, "the agent's reply to vmuser-attach is not an object");
        r = json_get_string(v, "userName", &name);
        if (r < 0 || !streq(name, j->name))
                return verr_set(&j->e, -EBADMSG, "the agent's reply to vmuser-attach names another user");
        if (json_get_uint32(v, "uid", &j->uid) < 0 || json_get_uint32(v, "gid", &j->gid) < 0 ||
            json_get_bool(v, "changed", &j->changed) < 0 || json_get_string(v, "homeDirectory", &home) < 0 ||
            strlen(home) > HOME_PATH_MAX)
                return verr_set(&j->e, -EBADMSG, "the agent's reply to vmuser-attach lacks a valid uid, gid, "
                                                 "homeDirectory or changed");
        if (j->uid == 0 || j->gid == 0)
                return verr_set(&j->e, -EBADMSG, "the agent reports uid %u / gid %u for '%s'", j->uid, j->gid, j->name);
        strcpy(j->home_directory, home);
        return 0;
}

/* The guest UIDs of the live exports this host keeps for the VM, for the agent to reserve for
 * their users (doc/PROTOCOL.txt, section 10): after a guest reboot nobody else may get one. NULL
 * when there are none (then older agents, which refuse the argument, see no difference). */
static json_object *reserved_uids(struct attach_batch *b) {
        json_object *list = NULL;
        uint32_t ignored;

        if (!attach_exports(b->o))
                return NULL;
        (void) leftover_export_uid(b, "", &ignored); /* lists the exports once per batch */
        for (size_t i = 0; i < b->n_exports_before && i < 64; i++) {
                const struct home_export_info *x = &b->exports_before[i];
                if (!streq(x->phase, "exported") || x->guest_uid != x->guest_gid ||
                    x->virtiofsd_state != VIRTIOFSD_STATE_RUNNING || !name_is_valid(x->user))
                        continue;
                json_object *o = json_object_new_object();
                if (!list)
                        list = json_object_new_array();
                if (!o || !list || json_object_array_add(list, o) < 0) {
                        json_object_put(o);
                        json_object_put(list);
                        return NULL;
                }
                json_object_object_add(o, "uid", json_object_new_int64(x->guest_uid));
                json_object_object_add(o, "userName", json_object_new_string(x->user));
        }
        return list;
}

static int step_push(struct attach_batch *b, struct attach_job *j) {
        _cleanup_json_ json_object *args = NULL, *value = NULL;
        int r;

        r = ensure_agent(b, j);
        if (r < 0)
                return r;

        args = json_object_new_object();
        if (!args || json_object_object_add(args, "user", json_object_get(j->record)) < 0 ||
            (j->home && json_object_object_add(args, "home", json_object_get(j->home)) < 0) ||
            (b->o->replace && json_object_object_add(args, "replace", json_object_new_boolean(true)) < 0)) {
                j->outcome = OUTCOME_FAILED;
                return -ENOMEM;
        }
        json_object *reserved = reserved_uids(b);
        if (reserved && json_object_object_add(args, "reservedUids", reserved) < 0) {
                j->outcome = OUTCOME_FAILED;
                return -ENOMEM;
        }

        r = qga_client_call(b->agent, "vmuser-attach", args, b->o->common.timeout_ms, &value, &j->qerr, &j->e);
        if (r < 0) {
                j->remote = r == -EREMOTEIO;
                j->outcome = outcome_from_agent_error(r, &j->qerr);
                return r;
        }
        r = check_reply(j, value);
        if (r < 0) {
                j->outcome = OUTCOME_UNREACHABLE;
                return r;
        }
        j->created = j->changed && !b->o->replace;
        if (j->changed && b->o->replace && b->attached_before) {
                j->created = true;
                for (size_t i = 0; i < json_object_array_length(b->attached_before); i++) {
                        const char *s;
                        if (json_get_string(json_object_array_get_idx(b->attached_before, i), "userName", &s) == 0 &&
                            streq(s, j->name))
                                j->created = false;
                }
        }
        return 0;
}

/* A later step failed: take the user out again if this push put it in. The failure's reason
 * stays the step's own; what happened to the record goes into j->note. */
static void undo_push(struct attach_batch *b, struct attach_job *j) {
        _cleanup_json_ json_object *args = NULL, *value = NULL;
        struct qga_error qe = {};
        struct verr e = {};
        int r;

        if (!j->created) {
                snprintf(j->note, sizeof(j->note), "; the user record in the guest was attached before and is left as it is");
                return;
        }
        args = json_object_new_object();
        if (!args || json_object_object_add(args, "userName", json_object_new_string(j->name)) < 0)
                r = -ENOMEM;
        else
                r = qga_client_call(b->agent, "vmuser-detach", args, b->o->common.timeout_ms, &value, &qe, &e);
        if (r >= 0)
                snprintf(j->note, sizeof(j->note), "; the user was detached from the guest again");
        else
                snprintf(j->note, sizeof(j->note), "; detaching the user from the guest again failed too (%.200s): run "
                         "'vmuser detach %s%s%s%s %s'", r == -EREMOTEIO ? qe.desc : verr_text(&e, r),
                         b->o->common.connect_uri ? "--connect " : "", strempty(b->o->common.connect_uri),
                         b->o->common.connect_uri ? " " : "", b->vm.label, j->name);
}

/* Which outcome an export failure is: the VM (QEMU, libvirt) not reachable or not able to take
 * the share, the host user's directory unusable, or a local failure. */
static enum outcome export_outcome(int r, const struct vm *vm, const char *source) {
        struct vm_backend_monitor mon;
        struct stat st;

        switch (r) {
        case -ENOMEM:
                return OUTCOME_FAILED;
        case -ECONNREFUSED:
        case -ETIMEDOUT:
        case -ECONNRESET:
        case -ENOTCONN:
        case -EBADMSG:
        case -ESRCH:      /* libvirt: the domain is not running */
        case -EOPNOTSUPP: /* libvirt: no shared memory */
        case -ENOSPC:     /* libvirt: no free root port */
                return OUTCOME_UNREACHABLE;
        case -ENOENT:
                vm_backend_probe_monitor(vm->backend, 0, &mon);
                if (mon.socket[0] && mon.exists < 0)
                        return OUTCOME_UNREACHABLE;
                return stat(source, &st) < 0 ? OUTCOME_HOST_USER : OUTCOME_FAILED;
        case -EPERM:
        case -ENOTDIR:
                return OUTCOME_HOST_USER;
        default:
                return OUTCOME_FAILED;
        }
}

/* The export of the user on this VM, if there is one. */
static int find_export(struct vm *vm, const char *user, struct home_export_info *ret) {
        _cleanup_free_ struct home_export_info *list = NULL;
        struct verr ignored = {};
        size_t n = 0;
        int r;

        r = vm_backend_list_exports(vm->backend, &list, &n, &ignored);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if (streq(list[i].user, user)) {
                        *ret = list[i];
                        return 0;
                }
        return -ENOENT;
}

static int step_export(struct attach_batch *b, struct attach_job *j) {
        struct vm_home_params p = {
                .user = j->name,
                .host_uid = j->host->uid,
                .host_gid = j->host->gid,
                .guest_uid = j->uid,
                .guest_gid = j->gid,
                .source_dir = j->source,
                .read_only = b->o->read_only,
        };
        struct home_export_info existing;
        int r;

        if (!j->source || b->o->probe)
                return 0;
        /* The guest has the record now: wipe its hash before the export forks a long-lived
         * virtiofsd supervisor that would carry a copy of our memory. */
        host_user_record_erase(j->record);
        r = vm_backend_export_home(b->vm.backend, &p, &j->export, &j->e);
        if (r == -EEXIST && find_export(&b->vm, j->name, &existing) >= 0 && streq(existing.phase, "exported") &&
            existing.guest_uid == j->uid && existing.guest_gid == j->gid && existing.host_uid == j->host->uid &&
            existing.read_only == b->o->read_only && streq(existing.source, j->source)) {
                if (existing.virtiofsd_state != VIRTIOFSD_STATE_RUNNING) {
                        /* Recorded as exported, but nothing serves it: not a share to re-use. */
                        j->e.text[0] = '\0';
                        j->outcome = OUTCOME_FAILED;
                        return verr_set(&j->e, -ESTALE,
                                        "the earlier export of %s's home (tag %s) is stale: its virtiofsd is %s (QEMU "
                                        "restarted?); 'vmuser detach --force %s %s' removes it, then attach again",
                                        j->name, existing.tag, virtiofsd_state_to_string(existing.virtiofsd_state),
                                        b->vm.label, j->name);
                }
                /* The same export is there already: a re-attach. */
                j->export = existing;
                j->exported = j->export_existed = true;
                j->e.text[0] = '\0';
                return 0;
        }
        if (r < 0) {
                j->outcome = export_outcome(r, &b->vm, j->source);
                return r;
        }
        j->exported = true;
        return 0;
}

static const struct attach_step steps[] = {
        { "resolve", step_resolve, NULL },
        { "record", step_record, NULL },
        { "home", step_home, NULL },
        { "push", step_push, undo_push },
        { "export", step_export, NULL },
};

static void attach_job_done(struct attach_job *j) {
        host_user_free(j->host);
        host_user_record_erase(j->record);
        json_object_put(j->record);
        json_object_put(j->home);
        free(j->source);
}

static void attach_one(struct attach_batch *b, const char *name) {
        struct attach_job j = { .name = name };
        size_t i;
        int r = 0;

        b->current = &j;
        for (i = 0; i < ELEMENTSOF(steps); i++) {
                r = steps[i].run(b, &j);
                if (r < 0)
                        break;
        }

        if (r < 0) {
                while (i-- > 0)
                        if (steps[i].undo)
                                steps[i].undo(b, &j);
                char reason[sizeof(j.e.text) + sizeof(j.note)];
                snprintf(reason, sizeof(reason), "%s%s", verr_text(&j.e, r), j.note);
                report_failure(&b->report, name, j.outcome, j.remote ? &j.qerr : NULL, reason);
        } else
                attach_report_success(b, &j);
        b->current = NULL;
        attach_job_done(&j);
}

bool attach_refusal_is_difference(const char *desc) {
        /* libvmuser/userdb.c, userdb_attach(): the refusal of a different record without replace */
        return desc && strstr(desc, "is already attached with a different record");
}

enum outcome attach_run(const struct attach_options *o) {
        struct attach_batch b = { .o = o };
        uid_t owners[2] = { audit_invoker_uid(), 0 };
        size_t n_owners = 1;
        enum outcome result = OUTCOME_OK;
        struct verr e = {};
        int r;

        result = vm_acquire(&o->common, &b.vm, &b.agent);
        if (result != OUTCOME_OK)
                return result;
        report_init(&b.report, &o->common, "attach", "to", b.vm.label, attach_audit, &b);

        /* A key file may belong to root, to who runs vmuser, or (one user attached) to that user. */
        if (o->n_users == 1 && o->ssh_key_files) {
                _cleanup_free_ struct passwd *pw = NULL;
                if (host_getpwnam(o->users[0], &pw) >= 0)
                        owners[n_owners++] = pw->pw_uid;
        }
        for (char **f = o->ssh_key_files; f && *f; f++) {
                r = host_user_keys_add_file(&b.extra_keys, *f, owners, n_owners, warn_cb, NULL, &e);
                if (r < 0) {
                        log_error("%s", verr_text(&e, r));
                        for (size_t i = 0; i < o->n_users; i++)
                                audit_host_result(o->replace ? "replace" : "attach", b.vm.label, o->users[i],
                                                  outcome_to_string(OUTCOME_FAILED), verr_text(&e, r), NULL, NULL);
                        result = OUTCOME_FAILED;
                        goto finish;
                }
        }

        for (size_t i = 0; i < o->n_users; i++)
                attach_one(&b, o->users[i]);
        result = report_outcome(&b.report);

finish:
        json_object_put(b.attached_before);
        free(b.exports_before);
        host_user_keys_done(&b.extra_keys);
        vm_release(&o->common, &b.vm, b.agent);
        return result;
}
