/* attach.c: `vmuser attach VM USER...`, push host users into a running VM.
 *
 * Each user runs through the steps below, in order; a failing step ends that user's run with an
 * outcome and a reason, the undo functions of the steps it passed run in reverse, and the batch
 * goes on with the next user. All users share one agent connection, opened when the first user
 * reaches "send" (a batch that fails on the host never touches the VM) and re-synchronized by
 * the client after any timeout. Up to ATTACH_WINDOW users are on their way at once (one when
 * the batch exports homes: see window_max in attach.h): a user's steps up to "send" run when it
 * enters the window, the rest (from "reply") when it leaves it, in argv order, so the agent
 * works on the next requests while the host waits for and reports the oldest (attach-push.c
 * says how a request flows). A full window is left by ATTACH_SEND_CHUNK users at once, and the
 * requests of the users that take their places leave in one write (the connection is corked:
 * qga_client_cork), so the agent in the guest reads several per read(2) of its virtio-serial
 * port instead of one: its per-read costs (wake-up, lock, reply write) are shared.
 *
 *   1. resolve  the host user through NSS, and the policy checks (host-user.c; a batch of more
 *               than 8 users resolves from one view of passwd, group and shadow: host_user_db)
 *   2. record   the minimized user record: shadow hash, SSH keys, options (host-user.c); the
 *               guest UID of a home export left from before a guest reboot, if there is one
 *               (--uid otherwise, or the agent allocates)
 *   3. home     the home spec sent with the record. By default {"tag": home_export_tag(),
 *               "fstype": "virtiofs"[, "options": "ro"]}, for the export of step 5; a bare
 *               QEMU's QMP socket must exist, else the user fails here, before the guest is
 *               touched (libvirt checks the domain in step 5).
 *               --home-tag sends a spec without exporting anything (tests, stand-ins);
 *               --no-home sends none.
 *   4. send,    vmuser-attach over the batch's connection (attach-push.c, qga-client.c; for a
 *      reply    libvirt domain without the vmuser channel the backend hot-plugs one); the reply is
 *               checked before it is believed. Undo (a later step failed): vmuser-detach, but
 *               only when this push created the user; a re-attach of an identical record, or a
 *               --replace of a user attached before, is left as it was.
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
        bool sends; /* a request to the agent is out: the rest waits for its reply */
};

static void warn_cb(void *userdata, const char *text) {
        log_warning("%s", text);
}

/* ---- the steps ---- */

static int step_resolve(struct attach_batch *b, struct attach_job *j) {
        int r = host_user_db_lookup(&b->db, j->name, &j->host, &j->e);
        if (r < 0)
                j->outcome = r == -ENOENT || r == -EPERM ? OUTCOME_HOST_USER : OUTCOME_FAILED;
        return r;
}

/* The guest UID of an export of name that is still there from an earlier attach, when the guest
 * has forgotten the user (it rebooted) or a re-attach is under way: 1 with *ret_uid set, 0 when
 * there is none. Asking the agent for that UID keeps the export (virtiofsd, QEMU's device, the
 * ID mapping) valid, so a reboot costs the user nothing but a new `vmuser attach`. */
int attach_leftover_export_uid(struct attach_batch *b, const char *name, uint32_t *ret_uid) {
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
                .db = &b->db,
        };
        int r;

        if (!o->has_uid && attach_exports(o) && attach_leftover_export_uid(b, j->name, &uo.uid) > 0)
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
        host_user_record_erase(j->record); /* done at the send already; kept for clarity */
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
        { "resolve", step_resolve, NULL, false },
        { "record", step_record, NULL, false },
        { "home", step_home, NULL, false },
        { "send", attach_step_send, NULL, true },
        { "reply", attach_step_reply, attach_undo_push, false },
        { "export", step_export, NULL, false },
};

static void attach_job_done(struct attach_job *j) {
        host_user_free(j->host);
        host_user_record_erase(j->record);
        json_object_put(j->record);
        json_object_put(j->home);
        free(j->source);
}

/* Runs steps until one fails or one has sent a request (j->step: the next to run). */
static void job_run(struct attach_batch *b, struct attach_job *j) {
        while (j->r >= 0 && j->step < ELEMENTSOF(steps)) {
                const struct attach_step *s = &steps[j->step];
                j->r = s->run(b, j);
                if (j->r < 0)
                        return;
                j->step++;
                if (s->sends)
                        return;
        }
}

/* The rest of the steps of the oldest user in the window, its undo and its report. */
static void job_finish(struct attach_batch *b) {
        struct attach_job *j = &b->window[b->window_first];

        b->current = j;
        job_run(b, j);
        if (j->r < 0) {
                size_t i = j->step;
                while (i-- > 0)
                        if (steps[i].undo)
                                steps[i].undo(b, j);
                char reason[sizeof(j->e.text) + sizeof(j->note)];
                snprintf(reason, sizeof(reason), "%s%s", verr_text(&j->e, j->r), j->note);
                report_failure(&b->report, j->name, j->outcome, j->remote ? &j->qerr : NULL, reason);
        } else
                attach_report_success(b, j);
        b->current = NULL;
        attach_job_done(j);
        b->window_first = (b->window_first + 1) % ATTACH_WINDOW;
        b->window_n--;
}

/* A user enters the window: its steps up to the request to the agent. */
static void job_start(struct attach_batch *b, const char *name) {
        /* A full window makes room for a chunk of users at once, whose requests then go out in
         * one write (corked: see attach_run): the guest reads them together. */
        if (b->window_n == b->window_max) {
                size_t chunk = b->window_max < ATTACH_SEND_CHUNK ? b->window_max : ATTACH_SEND_CHUNK;
                while (b->window_n > b->window_max - chunk)
                        job_finish(b);
        }
        /* A sync discards the replies in flight: they are waited for first. */
        if (b->agent && qga_client_needs_sync(b->agent))
                while (b->window_n > 0)
                        job_finish(b);
        struct attach_job *j = &b->window[(b->window_first + b->window_n++) % ATTACH_WINDOW];
        *j = (struct attach_job) { .name = name };
        job_run(b, j);
}

bool attach_corks(const struct attach_batch *b) {
        /* One user: its request goes out when it is sent, as it always did. */
        return b->window_max > 1 && b->o->n_users > 1;
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

        b.window_max = attach_exports(o) ? 1 : ATTACH_WINDOW;
        b.window = calloc(ATTACH_WINDOW, sizeof(*b.window));
        if (!b.window) {
                log_error("%s", strerror(ENOMEM));
                result = OUTCOME_FAILED;
                goto finish;
        }
        /* The shadow entries of the batch stay in memory until it ends: not when an export
         * forks a virtiofsd supervisor that would keep a copy. */
        (void) host_user_db_init(&b.db, o->users, o->n_users, !attach_exports(o) || o->probe, NULL, NULL);
        /* Pipelined: the requests of a chunk leave in one write (attach-push.c corks a
         * connection it opens itself). */
        if (b.agent && attach_corks(&b))
                qga_client_cork(b.agent, true);
        for (size_t i = 0; i < o->n_users; i++)
                job_start(&b, o->users[i]);
        while (b.window_n > 0)
                job_finish(&b);
        result = report_outcome(&b.report);

finish:
        free(b.window);
        host_user_db_done(&b.db);
        json_object_put(b.attached_before);
        free(b.exports_before);
        host_user_keys_done(&b.extra_keys);
        if (b.agent)
                qga_client_cork(b.agent, false); /* nothing is queued: every request was received */
        vm_release(&o->common, &b.vm, b.agent);
        return result;
}
