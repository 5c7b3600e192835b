/* home-export.c: the export steps and their rollback (see home-export.h).
 *
 * home_export() runs the step table in order on one struct export_ctx, which remembers what has
 * been done (directory made, state written, mounted, virtiofsd started, chardev added, device
 * added). When a step fails, or the progress callback says stop, export_rollback() undoes
 * exactly those things in reverse order and the error names the failed step; if undoing
 * something fails too, that is added to the message and the state file is kept so that
 * home_unexport() (home-unexport.c) can finish the job later.
 *
 * The check step is itself a sequence: the arguments and the source, the VM's lock and no
 * leftover, virtiofsd and QEMU (shared memory, no device or chardev of ours, a free bus), the file
 * server and its ID, then the state file ("exporting") before anything else happens.
 *
 * The state directory VM_DIR/homes/NAME (its lock, state.json, removal) is export-state.c's,
 * shared with the libvirt backend; the QMP questions are home-export-qmp.c's, the paths and the
 * state queries home-export-query.c's. */
#include "home-export.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "export-prepare.h"
#include "export-state.h"
#include "home-export-qmp.h"
#include "home-export-query.h"
#include "idmap-mount.h"
#include "json-util.h"
#include "macro.h"
#include "names.h"
#include "qmp-client.h"
#include "server-id.h"

const char *home_export_step_to_string(enum home_export_step step) {
        static const char *const names[_HOME_EXPORT_STEP_MAX] = {
                [HOME_EXPORT_STEP_CHECK] = "check",         [HOME_EXPORT_STEP_STAGING] = "staging",
                [HOME_EXPORT_STEP_VIRTIOFSD] = "virtiofsd", [HOME_EXPORT_STEP_CHARDEV] = "chardev",
                [HOME_EXPORT_STEP_DEVICE] = "device",       [HOME_EXPORT_STEP_RECORD] = "record",
        };
        return step < _HOME_EXPORT_STEP_MAX ? names[step] : "unknown";
}

const char *home_export_server_to_string(enum home_export_server s) {
        switch (s) {
        case HOME_EXPORT_SERVER_UNPRIVILEGED:
                return "unprivileged";
        case HOME_EXPORT_SERVER_ROOT:
                return "root";
        default:
                return "auto";
        }
}

int home_export_server_from_string(const char *s, enum home_export_server *ret) {
        for (enum home_export_server i = HOME_EXPORT_SERVER_AUTO; i <= HOME_EXPORT_SERVER_ROOT; i++)
                if (s && streq(s, home_export_server_to_string(i))) {
                        *ret = i;
                        return 0;
                }
        return -EINVAL;
}

/* What a step does, for "Cannot export ...: <what> failed: ...". */
static const char *step_description(enum home_export_step step) {
        static const char *const desc[_HOME_EXPORT_STEP_MAX] = {
                [HOME_EXPORT_STEP_CHECK] = "checking the VM and the arguments",
                [HOME_EXPORT_STEP_STAGING] = "making the idmapped staging mount",
                [HOME_EXPORT_STEP_VIRTIOFSD] = "starting virtiofsd",
                [HOME_EXPORT_STEP_CHARDEV] = "chardev-add",
                [HOME_EXPORT_STEP_DEVICE] = "device_add",
                [HOME_EXPORT_STEP_RECORD] = "recording the export",
        };
        return step < _HOME_EXPORT_STEP_MAX ? desc[step] : "an unknown step";
}

static uint32_t fnv1a(const char *s) {
        uint32_t h = 2166136261u;
        for (; *s; s++)
                h = (h ^ (unsigned char) *s) * 16777619u;
        return h;
}

int home_export_tag(const char *user, char *buf, size_t size) {
        size_t n;

        if (!user || !name_is_valid(user))
                return -EINVAL;
        n = strlen(HOME_EXPORT_TAG_PREFIX) + strlen(user);
        if (n <= HOME_SPEC_TAG_MAX) {
                if (size <= n)
                        return -ENOBUFS;
                snprintf(buf, size, HOME_EXPORT_TAG_PREFIX "%s", user);
                return 0;
        }
        if (size <= HOME_SPEC_TAG_MAX)
                return -ENOBUFS;
        snprintf(buf, size, HOME_EXPORT_TAG_PREFIX "%.20s-%08x", user, fnv1a(user));
        return 0;
}


/* ---- export --------------------------------------------------------------------------------- */

struct export_ctx {
        const struct home_export_params *p;
        struct export_paths paths;
        struct home_export_info info;
        struct virtiofsd_binary binary;
        struct qmp_client *qmp;
        int vm_fd, homes_fd, user_fd, lock_fd, source_fd;
        int qmp_timeout, start_timeout;
        char unit[256];
        bool dir_made, mounted, virtiofsd_started, chardev_added, device_added, id_claimed;
};

/* The paths, and the source: a directory of the host user, whatever symlinks led there. */
static int check_arguments(struct export_ctx *x, struct verr *e) {
        const struct home_export_params *p = x->p;
        struct sockaddr_un sa;
        int k;

        k = home_export_make_paths(p->vm_dir, p->qmp_socket, p->user, &x->paths, e);
        if (k < 0)
                return k;
        if (strlen(x->paths.socket) >= sizeof(sa.sun_path))
                return verr_set(e, -ENAMETOOLONG, "socket path '%s' is too long for QEMU (at most %zu bytes)",
                                x->paths.socket, sizeof(sa.sun_path) - 1);
        return export_source_open(p->user, p->host_uid, p->host_gid, p->guest_uid, p->guest_gid, p->source_dir,
                                  &x->source_fd, e);
}

/* The VM's lock, and nothing left over from an earlier attempt (export-prepare.c, the same for
 * libvirt). */
static int check_lock(struct export_ctx *x, struct verr *e) {
        const struct home_export_params *p = x->p;
        int k;

        k = home_export_open_vm_dir(p->vm_dir, &x->vm_fd, e);
        if (k < 0)
                return k;
        k = export_state_ensure_dir_at(x->vm_fd, HOME_EXPORT_SUBDIR, 0711, &x->homes_fd);
        if (k < 0)
                return verr_set(e, k, "cannot create '%s': %s", x->paths.dirs.homes, strerror(-k));
        k = export_state_lock(x->homes_fd, "VM", x->qmp_timeout, &x->lock_fd, e);
        if (k < 0)
                return k;
        return export_leftover_check(x->homes_fd, p->user, &x->paths.dirs, NULL, "VM", e);
}

/* QEMU: reachable, its RAM shared, no device of ours (an unplug the guest has not completed),
 * no chardev of ours (from a forced detach: removed), a free bus. Names the tag and the IDs. */
static int check_qemu(struct export_ctx *x, struct verr *e) {
        const struct home_export_params *p = x->p;
        struct home_export_info *i = &x->info;
        struct verr why = {};
        int k;

        k = qmp_client_connect(x->paths.qmp, x->qmp_timeout, &x->qmp, &why);
        if (k < 0)
                return verr_set(e, k, "%s (is the VM running?)", verr_text(&why, k));
        k = export_qmp_check_shared_memory(x->qmp, x->qmp_timeout, e);
        if (k < 0)
                return k;

        snprintf(i->user, sizeof(i->user), "%s", p->user);
        k = home_export_tag(p->user, i->tag, sizeof(i->tag));
        if (k < 0)
                return verr_set(e, k, "cannot make a tag for '%s'", p->user);
        snprintf(i->device_id, sizeof(i->device_id), HOME_EXPORT_ID_PREFIX "%s", p->user);
        snprintf(i->chardev_id, sizeof(i->chardev_id), HOME_EXPORT_ID_PREFIX "%s", p->user);

        k = export_qmp_device_exists(x->qmp, i->device_id, x->qmp_timeout, e);
        if (k < 0)
                return k;
        if (k > 0)
                return verr_set(e, -EBUSY,
                                "QEMU still has device %s: the guest has not completed an earlier unplug of %s's home",
                                i->device_id, p->user);
        k = export_qmp_chardev_exists(x->qmp, i->chardev_id, x->qmp_timeout, e);
        if (k < 0)
                return k;
        if (k > 0) {
                k = export_qmp_chardev_remove(x->qmp, i->chardev_id, x->qmp_timeout, e);
                if (k < 0)
                        return k;
        }
        return export_qmp_find_bus(x->qmp, x->qmp_timeout, i->bus, sizeof(i->bus), e);
}

/* What the export will be, and the file server: unprivileged unless the kernel cannot make user
 * namespaces, then with an ID of its own. */
static int check_server(struct export_ctx *x, struct verr *e) {
        const struct home_export_params *p = x->p;
        struct home_export_info *i = &x->info;
        int k;

        snprintf(i->source, sizeof(i->source), "%s", p->source_dir);
        i->read_only = p->read_only;
        i->host_uid = p->host_uid, i->host_gid = p->host_gid;
        i->guest_uid = p->guest_uid, i->guest_gid = p->guest_gid;
        snprintf(i->virtiofsd_path, sizeof(i->virtiofsd_path), "%s", x->binary.path);
        i->flavour = x->binary.flavour;
        i->translate_ids = x->binary.translate_ids && (p->host_uid != p->guest_uid || p->host_gid != p->guest_gid);

        k = export_server_choose(p->server, &i->server, e);
        if (k < 0)
                return k;
        if (i->server == HOME_EXPORT_SERVER_UNPRIVILEGED) {
                i->translate_ids = false; /* the user namespace maps the IDs */
                k = server_id_claim(x->paths.dirs.user_dir, &i->server_uid, e);
                if (k < 0)
                        return k;
                x->id_claimed = true;
        }
        return 0;
}

static int export_check(struct export_ctx *x, struct verr *e) {
        int k;

        k = check_arguments(x, e);
        if (k >= 0)
                k = check_lock(x, e);
        if (k >= 0)
                k = virtiofsd_detect(x->p->virtiofsd, &x->binary, e);
        if (k >= 0)
                k = check_qemu(x, e);
        if (k >= 0)
                k = check_server(x, e);
        if (k < 0)
                return k;

        /* The user's directory, and the state file before anything else happens. */
        k = export_state_ensure_dir_at(x->homes_fd, x->p->user, 0711, &x->user_fd);
        if (k < 0)
                return verr_set(e, k, "cannot create '%s': %s", x->paths.dirs.user_dir, strerror(-k));
        x->dir_made = true;
        k = export_state_write(x->user_fd, &x->info, "exporting", 0);
        if (k < 0)
                return verr_set(e, k, "cannot write '%s/" HOME_EXPORT_STATE_FILE "': %s", x->paths.dirs.user_dir,
                                strerror(-k));
        return 0;
}

static int export_staging(struct export_ctx *x, struct verr *e) {
        const struct home_export_params *p = x->p;
        bool unprivileged = x->info.server == HOME_EXPORT_SERVER_UNPRIVILEGED;
        struct idmap_mount_map map = {
                .disk_uid = p->host_uid,
                .disk_gid = p->host_gid,
                /* When virtiofsd translates, or its user namespace maps, the mount maps the host
                 * IDs onto themselves: it still confines what the guest can create to the user's
                 * own IDs, and carries nosuid, nodev and read-only. */
                .mount_uid = x->info.translate_ids || unprivileged ? p->host_uid : p->guest_uid,
                .mount_gid = x->info.translate_ids || unprivileged ? p->host_gid : p->guest_gid,
        };
        int k;

        k = export_staging_make(x->user_fd, &x->paths.dirs, x->source_fd, &map, p->read_only, e);
        if (k < 0)
                return k;
        x->mounted = true;
        return 0;
}

static void unit_name_for(const struct export_ctx *x, char *buf, size_t size) {
        snprintf(buf, size, "vmuser-virtiofsd-%s-%08x.service", x->p->user, fnv1a(x->p->vm_dir));
}

static int export_virtiofsd(struct export_ctx *x, struct verr *e) {
        const struct home_export_params *p = x->p;
        struct virtiofsd_config cfg = {
                .shared_dir = x->paths.dirs.staging,
                .socket_path = x->paths.socket,
                .read_only = p->read_only,
                .translate_ids = x->info.translate_ids,
                .host_uid = p->host_uid,
                .host_gid = p->host_gid,
                .guest_uid = p->guest_uid,
                .guest_gid = p->guest_gid,
                .unprivileged = x->info.server == HOME_EXPORT_SERVER_UNPRIVILEGED,
                .server_uid = x->info.server_uid,
                .server_gid = (gid_t) x->info.server_uid,
        };
        uid_t qemu_uid = qmp_client_peer_uid(x->qmp);
        int k;

        unit_name_for(x, x->unit, sizeof(x->unit));
        x->virtiofsd_started = true; /* from here on, rollback asks virtiofsd.c to stop whatever started */
        k = virtiofsd_start(&x->binary, &cfg, x->paths.dirs.user_dir, p->supervisor, x->unit, x->start_timeout, NULL,
                            e);
        if (k < 0)
                return k;
        /* QEMU has to connect to the socket; virtiofsd makes it root's, 0600. */
        if (qemu_uid != 0 &&
            fchownat(x->user_fd, HOME_EXPORT_SOCKET, qemu_uid, qmp_client_peer_gid(x->qmp), AT_SYMLINK_NOFOLLOW) < 0)
                return verr_set(e, negative_errno(), "cannot hand socket '%s' to QEMU's UID %u: %m", x->paths.socket,
                                (unsigned) qemu_uid);
        return 0;
}

static int export_chardev(struct export_ctx *x, struct verr *e) {
        _cleanup_json_ json_object *args = NULL;
        char json[PATH_MAX + 256];
        int k;

        /* Built as text and parsed back: the nesting is easier to read this way. */
        _cleanup_json_ json_object *path = json_object_new_string(x->paths.socket);
        if (!path)
                return -ENOMEM;
        snprintf(json, sizeof(json),
                 "{\"id\":\"%s\",\"backend\":{\"type\":\"socket\",\"data\":{\"addr\":{\"type\":\"unix\","
                 "\"data\":{\"path\":%s}},\"server\":false}}}",
                 x->info.chardev_id, json_to_compact(path));
        k = json_parse_strict(json, strlen(json), &args);
        if (k < 0)
                return verr_set(e, k, "cannot build the chardev-add arguments");
        /* Set before asking: a request that timed out may still have been carried out, so the
         * rollback looks whether the chardev exists (any of that name is ours, see export_check). */
        x->chardev_added = true;
        return qmp_client_execute(x->qmp, "chardev-add", args, x->qmp_timeout, NULL, NULL, e);
}

static int export_device(struct export_ctx *x, struct verr *e) {
        _cleanup_json_ json_object *args = json_object_new_object();

        if (!args || json_object_object_add(args, "driver", json_object_new_string("vhost-user-fs-pci")) < 0 ||
            json_object_object_add(args, "id", json_object_new_string(x->info.device_id)) < 0 ||
            json_object_object_add(args, "chardev", json_object_new_string(x->info.chardev_id)) < 0 ||
            json_object_object_add(args, "tag", json_object_new_string(x->info.tag)) < 0 ||
            json_object_object_add(args, "bus", json_object_new_string(x->info.bus)) < 0)
                return -ENOMEM;
        x->device_added = true; /* as for the chardev: the rollback looks */
        return qmp_client_execute(x->qmp, "device_add", args, x->qmp_timeout, NULL, NULL, e);
}

static int export_record(struct export_ctx *x, struct verr *e) {
        int k = export_state_write(x->user_fd, &x->info, "exported", 0);
        if (k < 0)
                return verr_set(e, k, "cannot write '%s/" HOME_EXPORT_STATE_FILE "': %s", x->paths.dirs.user_dir,
                                strerror(-k));
        return 0;
}

/* The QMP connection for the rollback: the one we have if it still works, else a new one (QEMU
 * may have closed ours). 0 with *ret_gone set when QEMU is not there any more: its devices are
 * gone with it. */
static int rollback_qmp(struct export_ctx *x, bool *ret_gone, struct verr *e) {
        int k;

        *ret_gone = false;
        if (x->qmp && !qmp_client_is_dead(x->qmp))
                return 0;
        struct verr why = {};
        x->qmp = qmp_client_free(x->qmp);
        k = qmp_client_connect(x->paths.qmp, x->qmp_timeout, &x->qmp, &why);
        if (k == -ENOENT || k == -ECONNREFUSED) {
                *ret_gone = true;
                return 0;
        }
        return k < 0 ? verr_set(e, k, "%s", verr_text(&why, k)) : 0;
}

/* Undoes what x says was done, in reverse order; reasons for what could not be undone go to e.
 * Anything that cannot be undone stops the rollback there, and the state file stays (phase
 * "exporting") so that home_unexport() can finish. */
static void export_rollback(struct export_ctx *x, struct verr *e) {
        bool keep_state = false, vm_gone = false;
        int k;

        if (x->device_added || x->chardev_added) {
                k = rollback_qmp(x, &vm_gone, e);
                if (k < 0)
                        keep_state = true;
        }
        if (x->device_added && !vm_gone && !keep_state) {
                k = export_qmp_device_exists(x->qmp, x->info.device_id, x->qmp_timeout, e);
                if (k > 0) {
                        k = export_qmp_unplug_device(x->qmp, x->info.device_id, x->qmp_timeout,
                                          HOME_EXPORT_DEFAULT_UNPLUG_TIMEOUT_MS, e);
                        if (k == 0)
                                k = verr_set(e, -ETIMEDOUT, "the guest did not release device %s",
                                             x->info.device_id);
                }
                if (k < 0)
                        keep_state = true;
        }
        if (x->chardev_added && !vm_gone && !keep_state) {
                k = export_qmp_chardev_exists(x->qmp, x->info.chardev_id, x->qmp_timeout, e);
                if (k > 0)
                        k = export_qmp_chardev_remove(x->qmp, x->info.chardev_id, x->qmp_timeout, e);
                if (k < 0)
                        keep_state = true;
        }
        if (x->virtiofsd_started && !keep_state) {
                k = virtiofsd_stop(x->paths.dirs.user_dir, x->paths.socket, VIRTIOFSD_STOP_TIMEOUT_MS, e);
                if (k < 0)
                        keep_state = true;
        }
        if (x->mounted && !keep_state) {
                k = idmap_mount_remove(x->paths.dirs.staging, e);
                if (k < 0)
                        keep_state = true;
        }
        if (x->dir_made && !keep_state) {
                k = export_state_remove_user_dir(x->homes_fd, x->p->user, &x->paths.dirs, e);
                if (k < 0)
                        keep_state = true;
        }
        if (x->id_claimed && !keep_state)
                (void) server_id_release(x->info.server_uid, x->paths.dirs.user_dir);
        if (keep_state && x->user_fd >= 0)
                (void) export_state_write(x->user_fd, &x->info, "exporting", 0);
}

static void export_ctx_done(struct export_ctx *x) {
        qmp_client_free(x->qmp);
        x->qmp = NULL;
        int *fds[] = { &x->source_fd, &x->user_fd, &x->homes_fd, &x->vm_fd, &x->lock_fd };
        /* The lock goes last, after everything it protects is settled. */
        for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                closep(fds[i]), *fds[i] = -1;
}

int home_export(const struct home_export_params *p, struct home_export_info *ret,
                enum home_export_step *ret_failed_step, struct verr *e) {
        static int (*const steps[_HOME_EXPORT_STEP_MAX])(struct export_ctx *, struct verr *) = {
                [HOME_EXPORT_STEP_CHECK] = export_check,         [HOME_EXPORT_STEP_STAGING] = export_staging,
                [HOME_EXPORT_STEP_VIRTIOFSD] = export_virtiofsd, [HOME_EXPORT_STEP_CHARDEV] = export_chardev,
                [HOME_EXPORT_STEP_DEVICE] = export_device,       [HOME_EXPORT_STEP_RECORD] = export_record,
        };
        struct export_ctx x = {
                .p = p,
                .vm_fd = -1, .homes_fd = -1, .user_fd = -1, .lock_fd = -1, .source_fd = -1,
                .qmp_timeout = p->qmp_timeout_ms > 0 ? p->qmp_timeout_ms : HOME_EXPORT_DEFAULT_QMP_TIMEOUT_MS,
                .start_timeout = p->start_timeout_ms > 0 ? p->start_timeout_ms : HOME_EXPORT_DEFAULT_START_TIMEOUT_MS,
        };
        struct verr cause = {}, rollback = {};
        enum home_export_step step;
        int k = 0;

        for (step = 0; step < _HOME_EXPORT_STEP_MAX; step++) {
                k = steps[step](&x, &cause);
                if (k < 0)
                        break;
                if (p->progress) {
                        k = p->progress(step, p->userdata);
                        if (k < 0) {
                                verr_set(&cause, k, "interrupted by the caller after step %s",
                                         home_export_step_to_string(step));
                                break;
                        }
                }
        }

        if (k >= 0) {
                if (ret)
                        *ret = x.info;
                export_ctx_done(&x);
                return 0;
        }

        export_rollback(&x, &rollback);
        export_ctx_done(&x);
        if (ret_failed_step)
                *ret_failed_step = step;
        if (rollback.text[0])
                return verr_set(e, k, "Cannot export the home of %s: %s failed: %s; the rollback is incomplete (%s), "
                                      "detach %s to finish it",
                                strempty(p->user), step_description(step), verr_text(&cause, k), rollback.text,
                                strempty(p->user));
        if (step == HOME_EXPORT_STEP_CHECK && !x.dir_made)
                return verr_set(e, k, "Cannot export the home of %s: %s", strempty(p->user), verr_text(&cause, k));
        return verr_set(e, k, "Cannot export the home of %s: %s failed: %s; everything done before was rolled back",
                        strempty(p->user), step_description(step), verr_text(&cause, k));
}
