/* home-unexport.c: taking a home export down again (home_unexport(), see home-export.h).
 *
 * It works from the state file but trusts only what it finds. Flow: unexport_open() takes the
 * VM's lock and reads state.json (none: only an early part of an export was made, and
 * unexport_unfinished() removes what there is) -> phase "unexporting" -> unexport_qemu() asks
 * QEMU whether the device and chardev exist and removes them, device first (skipped when the VM
 * is gone; with HOME_UNEXPORT_FORCE a QEMU that refuses or does not answer is left as it is) ->
 * unexport_host() stops virtiofsd, removes the staging mount and the state directory, and
 * releases the file server's ID. */
#include "home-export.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "export-state.h"
#include "home-export-qmp.h"
#include "home-export-query.h"
#include "idmap-mount.h"
#include "macro.h"
#include "server-id.h"
#include "virtiofsd.h"

struct unexport_ctx {
        const struct home_unexport_params *p;
        struct export_paths paths;
        struct home_export_info info;
        int vm_fd, homes_fd, lock_fd, user_fd;
        int qmp_timeout, unplug_timeout;
        bool force, qemu_keeps;
};

static void unexport_ctx_done(struct unexport_ctx *x) {
        int *fds[] = { &x->user_fd, &x->homes_fd, &x->vm_fd, &x->lock_fd };
        /* The lock goes last, after everything it protects is settled. */
        for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                closep(fds[i]), *fds[i] = -1;
}

/* The VM's lock, then the user's state directory and state.json: 1 read, 0 no state file. */
static int unexport_open(struct unexport_ctx *x, struct verr *e) {
        const struct home_unexport_params *p = x->p;
        int k;

        k = home_export_make_paths(p->vm_dir, p->qmp_socket, p->user, &x->paths, e);
        if (k < 0)
                return k;
        k = home_export_open_vm_dir(p->vm_dir, &x->vm_fd, e);
        if (k < 0)
                return k;
        x->homes_fd = openat(x->vm_fd, HOME_EXPORT_SUBDIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (x->homes_fd < 0) {
                if (errno == ENOENT)
                        return verr_set(e, -ENOENT, "no home of %s is exported to this VM", p->user);
                return verr_set(e, negative_errno(), "cannot open '%s': %m", x->paths.dirs.homes);
        }
        k = export_state_lock(x->homes_fd, "VM", x->qmp_timeout, &x->lock_fd, e);
        if (k < 0)
                return k;
        x->user_fd = openat(x->homes_fd, p->user, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (x->user_fd < 0) {
                if (errno == ENOENT)
                        return verr_set(e, -ENOENT, "no home of %s is exported to this VM", p->user);
                return verr_set(e, negative_errno(), "cannot open '%s': %m", x->paths.dirs.user_dir);
        }
        k = export_state_read(x->user_fd, NULL, &x->info);
        if (k == -ENOENT)
                return 0;
        if (k < 0)
                return verr_set(e, k, "cannot read '%s/" HOME_EXPORT_STATE_FILE "': %s", x->paths.dirs.user_dir,
                                strerror(-k));
        if (!streq(x->info.user, p->user))
                return verr_set(e, -EBADMSG, "'%s/" HOME_EXPORT_STATE_FILE "' is about user '%s'",
                                x->paths.dirs.user_dir, x->info.user);
        return 1;
}

/* Only an early part of an export was made (no state file): no QEMU object can exist. */
static int unexport_unfinished(struct unexport_ctx *x, struct verr *e) {
        int k = virtiofsd_stop(x->paths.dirs.user_dir, x->paths.socket, VIRTIOFSD_STOP_TIMEOUT_MS, e);

        if (k >= 0)
                k = idmap_mount_remove(x->paths.dirs.staging, e);
        if (k >= 0)
                k = export_state_remove_user_dir(x->homes_fd, x->p->user, &x->paths.dirs, e);
        return k < 0 ? k : 0;
}

/* Device, then chardev, on an open connection. */
static int unexport_qemu_objects(struct unexport_ctx *x, struct qmp_client *qmp, struct verr *e) {
        const char *user = x->p->user;
        struct verr why = {};
        int k;

        k = export_qmp_device_exists(qmp, x->info.device_id, x->qmp_timeout, &why);
        if (k > 0) {
                k = export_qmp_unplug_device(qmp, x->info.device_id, x->qmp_timeout, x->unplug_timeout, &why);
                if (k == 0) {
                        if (!x->force)
                                return verr_set(e, -ETIMEDOUT,
                                                "Cannot detach the home of %s: the guest did not release device %s "
                                                "within %.1f s (is the tag still mounted, is the guest running?); "
                                                "nothing else was changed: detach again, or with --force to stop "
                                                "virtiofsd anyway",
                                                user, x->info.device_id, x->unplug_timeout / 1000.0);
                        x->qemu_keeps = true;
                }
        }
        if (k < 0)
                return verr_set(e, k, "Cannot detach the home of %s: %s", user, verr_text(&why, k));
        if (x->qemu_keeps)
                return 0;

        why.text[0] = '\0';
        k = export_qmp_chardev_exists(qmp, x->info.chardev_id, x->qmp_timeout, &why);
        if (k > 0)
                k = export_qmp_chardev_remove(qmp, x->info.chardev_id, x->qmp_timeout, &why);
        if (k < 0 && !x->force)
                return verr_set(e, k, "Cannot detach the home of %s: %s", user, verr_text(&why, k));
        if (k < 0)
                x->qemu_keeps = true;
        return 0;
}

/* QEMU's side; nothing to do when the VM is gone (its devices went with it). */
static int unexport_qemu(struct unexport_ctx *x, struct verr *e) {
        _cleanup_qmp_client_ struct qmp_client *qmp = NULL;
        struct verr why = {};
        int k;

        k = qmp_client_connect(x->paths.qmp, x->qmp_timeout, &qmp, &why);
        if (k == -ENOENT || k == -ECONNREFUSED)
                return 0;
        if (k < 0) {
                if (!x->force)
                        return verr_set(e, k, "Cannot detach the home of %s: %s (nothing was changed; --force "
                                              "removes the host side anyway)",
                                        x->p->user, verr_text(&why, k));
                x->qemu_keeps = true;
                return 0;
        }
        return unexport_qemu_objects(x, qmp, e);
}

/* The host's side: virtiofsd, the staging mount, the state directory, the server's ID. */
static int unexport_host(struct unexport_ctx *x, struct verr *e) {
        const char *user = x->p->user;
        struct verr why = {};
        int k;

        k = virtiofsd_stop(x->paths.dirs.user_dir, x->paths.socket, VIRTIOFSD_STOP_TIMEOUT_MS, &why);
        if (k < 0)
                return verr_set(e, k, "Cannot detach the home of %s: stopping virtiofsd failed: %s", user,
                                verr_text(&why, k));
        why.text[0] = '\0';
        k = idmap_mount_remove(x->paths.dirs.staging, &why);
        if (k < 0)
                return verr_set(e, k, "Cannot detach the home of %s: %s", user, verr_text(&why, k));
        closep(&x->user_fd), x->user_fd = -1;
        why.text[0] = '\0';
        k = export_state_remove_user_dir(x->homes_fd, user, &x->paths.dirs, &why);
        if (k < 0)
                return verr_set(e, k, "Cannot detach the home of %s: %s", user, verr_text(&why, k));
        if (x->info.server == HOME_EXPORT_SERVER_UNPRIVILEGED)
                (void) server_id_release(x->info.server_uid, x->paths.dirs.user_dir);
        return 0;
}

static int unexport_run(struct unexport_ctx *x, struct verr *e) {
        int k = unexport_open(x, e);

        if (k < 0)
                return k;
        if (k == 0)
                return unexport_unfinished(x, e);
        k = export_state_write(x->user_fd, &x->info, "unexporting", 0);
        if (k < 0)
                return verr_set(e, k, "cannot write '%s/" HOME_EXPORT_STATE_FILE "': %s", x->paths.dirs.user_dir,
                                strerror(-k));
        k = unexport_qemu(x, e);
        if (k < 0)
                return k;
        k = unexport_host(x, e);
        if (k < 0)
                return k;
        return x->qemu_keeps ? 1 : 0;
}

int home_unexport(const struct home_unexport_params *p, struct verr *e) {
        struct unexport_ctx x = {
                .p = p,
                .vm_fd = -1, .homes_fd = -1, .lock_fd = -1, .user_fd = -1,
                .qmp_timeout = p->qmp_timeout_ms > 0 ? p->qmp_timeout_ms : HOME_EXPORT_DEFAULT_QMP_TIMEOUT_MS,
                .unplug_timeout = p->unplug_timeout_ms > 0 ? p->unplug_timeout_ms
                                                           : HOME_EXPORT_DEFAULT_UNPLUG_TIMEOUT_MS,
                .force = p->flags & HOME_UNEXPORT_FORCE,
        };
        int k = unexport_run(&x, e);

        unexport_ctx_done(&x);
        return k;
}
