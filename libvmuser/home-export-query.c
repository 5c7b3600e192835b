/* home-export-query.c: where a bare-QEMU export's files are, and what state it is in.
 *
 * home_export_get() and home_export_list() open VM_DIR/homes (without its lock: a reader sees
 * the state file as atomic_write left it) -> per user: state.json via export-state.c, virtiofsd's
 * state via virtiofsd_get_state(), whether the staging mount is there. The path rules and the VM
 * directory check are shared with the export and the unexport. */
#include "home-export-query.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dir-util.h"
#include "idmap-mount.h"
#include "macro.h"
#include "names.h"
#include "virtiofsd.h"

int home_export_make_paths(const char *vm_dir, const char *qmp_socket, const char *user, struct export_paths *ret,
                           struct verr *e) {
        struct export_paths p = {};
        int k = 0;

        if (!vm_dir || vm_dir[0] != '/')
                return verr_set(e, -EINVAL, "VM directory '%s' is not an absolute path", strempty(vm_dir));
        if (!user || !name_is_valid(user))
                return verr_set(e, -EINVAL, "user name '%s' is not valid", strempty(user));
        if (qmp_socket && qmp_socket[0] != '/')
                return verr_set(e, -EINVAL, "QMP socket '%s' is not an absolute path", qmp_socket);

        k |= export_state_paths_make(vm_dir, user, &p.dirs) < 0;
        k |= snprintf(p.socket, sizeof(p.socket), "%s/" HOME_EXPORT_SOCKET, p.dirs.user_dir) >=
             (int) sizeof(p.socket);
        if (qmp_socket)
                k |= snprintf(p.qmp, sizeof(p.qmp), "%s", qmp_socket) >= (int) sizeof(p.qmp);
        else
                k |= snprintf(p.qmp, sizeof(p.qmp), "%s/" HOME_EXPORT_DEFAULT_QMP_SOCKET, vm_dir) >=
                     (int) sizeof(p.qmp);
        if (k)
                return verr_set(e, -ENAMETOOLONG, "VM directory '%s' is too long", vm_dir);
        *ret = p;
        return 0;
}

/* We hand paths below the VM directory to virtiofsd, QEMU and umount, so no other user may be
 * able to swap a component. */
int home_export_open_vm_dir(const char *vm_dir, int *ret_fd, struct verr *e) {
        _cleanup_close_ int fd = open(vm_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct stat st;

        if (fd < 0)
                return verr_set(e, negative_errno(), "cannot open VM directory '%s': %m", vm_dir);
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)))
                return verr_set(e, -EPERM, "VM directory '%s' must belong to root and not be writable by others",
                                vm_dir);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int get_one(int homes_fd, const char *vm_dir, const char *user, struct home_export_info *ret, struct verr *e) {
        _cleanup_close_ int user_fd = openat(homes_fd, user, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        struct export_paths paths;
        struct home_export_info info;
        int k;

        if (user_fd < 0)
                return errno == ENOENT ? -ENOENT : verr_set(e, negative_errno(), "cannot open the state of %s: %m", user);
        k = home_export_make_paths(vm_dir, NULL, user, &paths, e);
        if (k < 0)
                return k;
        k = export_state_read(user_fd, NULL, &info);
        if (k < 0)
                return k == -ENOENT ? -ENOENT
                                    : verr_set(e, k, "cannot read '%s/" HOME_EXPORT_STATE_FILE "': %s",
                                               paths.dirs.user_dir, strerror(-k));
        k = virtiofsd_get_state(paths.dirs.user_dir, &info.virtiofsd_state, &info.virtiofsd, e);
        if (k < 0)
                return k;
        k = idmap_mount_is_mounted(paths.dirs.staging);
        info.staging_mounted = k > 0;
        *ret = info;
        return 0;
}

static int open_homes(const char *vm_dir, int *ret_fd, struct verr *e) {
        _cleanup_close_ int vm_fd = -1;
        int k = home_export_open_vm_dir(vm_dir, &vm_fd, e);

        if (k < 0)
                return k;
        *ret_fd = openat(vm_fd, HOME_EXPORT_SUBDIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (*ret_fd < 0)
                return errno == ENOENT ? -ENOENT : verr_set(e, negative_errno(), "cannot open '%s/homes': %m", vm_dir);
        return 0;
}

int home_export_get(const char *vm_dir, const char *user, struct home_export_info *ret, struct verr *e) {
        _cleanup_close_ int homes_fd = -1;
        int k;

        if (!vm_dir || vm_dir[0] != '/')
                return verr_set(e, -EINVAL, "VM directory '%s' is not an absolute path", strempty(vm_dir));
        if (!user || !name_is_valid(user))
                return verr_set(e, -EINVAL, "user name '%s' is not valid", strempty(user));
        k = open_homes(vm_dir, &homes_fd, e);
        if (k == 0)
                k = get_one(homes_fd, vm_dir, user, ret, e);
        if (k == -ENOENT)
                return verr_set(e, -ENOENT, "no home of %s is exported to this VM", user);
        return k;
}

static int compare_info(const void *a, const void *b) {
        return strcmp(((const struct home_export_info *) a)->user, ((const struct home_export_info *) b)->user);
}

/* More than this many entries in VM_DIR/homes is not something vmuser made. */
#define HOME_EXPORT_LIST_MAX 4096

struct list_ctx {
        int homes_fd;
        const char *vm_dir;
        struct home_export_info *list;
        size_t n, cap;
        struct verr *e;
};

static int list_one(int dir_fd, const char *name, void *userdata) {
        struct list_ctx *c = userdata;
        int k;

        if (name[0] == '.' || !name_is_valid(name))
                return 0;
        if (c->n == HOME_EXPORT_LIST_MAX)
                return verr_set(c->e, -E2BIG, "more than %d entries in '%s/homes'", HOME_EXPORT_LIST_MAX, c->vm_dir);
        if (c->n == c->cap) {
                size_t ncap = c->cap ? c->cap * 2 : 8;
                struct home_export_info *l = reallocarray(c->list, ncap, sizeof(*c->list));
                if (!l)
                        return -ENOMEM;
                c->list = l, c->cap = ncap;
        }
        k = get_one(c->homes_fd, c->vm_dir, name, &c->list[c->n], c->e);
        if (k == -ENOENT)
                return 0;
        if (k < 0)
                return k;
        c->n++;
        return 0;
}

int home_export_list(const char *vm_dir, struct home_export_info **ret, size_t *ret_n, struct verr *e) {
        _cleanup_close_ int homes_fd = -1;
        struct list_ctx c = { .vm_dir = vm_dir, .e = e };
        int k;

        if (!vm_dir || vm_dir[0] != '/')
                return verr_set(e, -EINVAL, "VM directory '%s' is not an absolute path", strempty(vm_dir));
        k = open_homes(vm_dir, &homes_fd, e);
        if (k == -ENOENT) {
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        if (k < 0)
                return k;
        c.homes_fd = homes_fd;
        k = dir_foreach_at(homes_fd, list_one, &c);
        if (k < 0) {
                free(c.list);
                return k;
        }
        if (c.n > 1)
                qsort(c.list, c.n, sizeof(*c.list), compare_info);
        *ret = c.list;
        *ret_n = c.n;
        return 0;
}
