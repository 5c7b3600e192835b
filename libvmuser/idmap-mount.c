/* idmap-mount.c: the idmapped staging mount (see idmap-mount.h).
 *
 * The only subtle part is the user namespace: the kernel wants an fd of a user namespace whose
 * maps are already written, and maps can only be written for a namespace some process lives in.
 * A helper child does nothing but unshare(CLONE_NEWUSER), report back and block on a pipe until
 * the parent has written the maps and opened the namespace; the open fd keeps the namespace
 * alive after the child exits. The child only makes async-signal-safe calls, so this is safe in
 * a threaded caller too. */
#include "idmap-mount.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "macro.h"

/* Writes "inside outside 1\n" to /proc/PID/{uid,gid}_map. */
static int write_map(pid_t pid, const char *which, unsigned long inside, unsigned long outside) {
        char path[64], line[64];
        _cleanup_close_ int fd = -1;
        int n;

        snprintf(path, sizeof(path), "/proc/%d/%s", (int) pid, which);
        n = snprintf(line, sizeof(line), "%lu %lu 1\n", inside, outside);
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        if (write(fd, line, (size_t) n) != n)
                return negative_errno();
        return 0;
}

int idmap_userns_fd(const struct idmap_mount_map *map, int *ret_fd, struct verr *e) {
        _cleanup_close_ int ready_r = -1, ready_w = -1, hold_r = -1, hold_w = -1, ns_fd = -1;
        int p[2], k = 0, status;
        char byte;
        pid_t pid;

        if (pipe2(p, O_CLOEXEC) < 0)
                return negative_errno();
        ready_r = p[0], ready_w = p[1];
        if (pipe2(p, O_CLOEXEC) < 0)
                return negative_errno();
        hold_r = p[0], hold_w = p[1];

        pid = fork();
        if (pid < 0)
                return verr_set(e, negative_errno(), "cannot fork the user namespace helper: %m");
        if (pid == 0) {
                char ok = unshare(CLONE_NEWUSER) == 0 ? 'y' : 'n';
                if (write(ready_w, &ok, 1) != 1 || ok != 'y')
                        _exit(1);
                close(hold_w);
                /* Blocks until the parent closes its end (or dies). */
                (void) !read(hold_r, &byte, 1);
                _exit(0);
        }

        close(TAKE_FD(ready_w));
        close(TAKE_FD(hold_r));
        if (read(ready_r, &byte, 1) != 1 || byte != 'y') {
                k = verr_set(e, -EPERM, "the helper could not create a user namespace");
                goto finish;
        }
        k = write_map(pid, "uid_map", (unsigned long) map->disk_uid, (unsigned long) map->mount_uid);
        if (k < 0) {
                verr_set(e, k, "cannot write the uid_map of the helper's user namespace: %s", strerror(-k));
                goto finish;
        }
        k = write_map(pid, "gid_map", (unsigned long) map->disk_gid, (unsigned long) map->mount_gid);
        if (k < 0) {
                verr_set(e, k, "cannot write the gid_map of the helper's user namespace: %s", strerror(-k));
                goto finish;
        }
        {
                char path[64];
                snprintf(path, sizeof(path), "/proc/%d/ns/user", (int) pid);
                ns_fd = open(path, O_RDONLY | O_CLOEXEC);
                if (ns_fd < 0)
                        k = verr_set(e, negative_errno(), "cannot open the helper's user namespace: %m");
        }

finish:
        close(TAKE_FD(hold_w));
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        if (k < 0)
                return k;
        *ret_fd = TAKE_FD(ns_fd);
        return 0;
}

int idmap_mount_is_mounted(const char *target) {
        struct statx stx;

        if (statx(AT_FDCWD, target, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_TYPE, &stx) < 0)
                return errno == ENOENT || errno == ENOTDIR ? 0 : negative_errno();
        if (!(stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT))
                return -EOPNOTSUPP;
        return !!(stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

int idmap_mount_make(int source_fd, const char *target, const struct idmap_mount_map *map, unsigned flags,
                     struct verr *e) {
        _cleanup_close_ int userns_fd = -1, tree_fd = -1, target_fd = -1;
        struct stat st;
        int k;

        if (!target || target[0] != '/')
                return verr_set(e, -EINVAL, "staging mount point '%s' is not an absolute path", strempty(target));
        if (fstat(source_fd, &st) < 0)
                return verr_set(e, negative_errno(), "cannot stat the directory to export: %m");
        if (!S_ISDIR(st.st_mode))
                return verr_set(e, -ENOTDIR, "what should be exported is not a directory");

        target_fd = open(target, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (target_fd < 0)
                return verr_set(e, negative_errno(), "cannot open staging mount point '%s': %m", target);
        k = idmap_mount_is_mounted(target);
        if (k < 0)
                return verr_set(e, k, "cannot tell whether '%s' is a mount point: %s", target, strerror(-k));
        if (k > 0)
                return verr_set(e, -EBUSY, "something is mounted on '%s' already", target);

        k = idmap_userns_fd(map, &userns_fd, e);
        if (k < 0)
                return k;

        tree_fd = open_tree(source_fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
        if (tree_fd < 0)
                return verr_set(e, negative_errno(), "cannot clone the mount of the directory to export: %m");

        struct mount_attr attr = {
                .attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                            ((flags & IDMAP_MOUNT_READ_ONLY) ? MOUNT_ATTR_RDONLY : 0),
                .userns_fd = (uint64_t) userns_fd,
                .propagation = MS_PRIVATE,
        };
        if (mount_setattr(tree_fd, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0) {
                k = negative_errno();
                if (k == -EINVAL || k == -EOPNOTSUPP)
                        return verr_set(e, -EOPNOTSUPP,
                                        "the filesystem of the directory to export does not support idmapped "
                                        "mounts (mount_setattr: %s)",
                                        strerror(-k));
                return verr_set(e, k, "cannot make the idmapped mount (mount_setattr: %s)", strerror(-k));
        }

        if (move_mount(tree_fd, "", target_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
                return verr_set(e, negative_errno(), "cannot attach the idmapped mount on '%s': %m", target);
        return 0;
}

int idmap_mount_remove(const char *target, struct verr *e) {
        int k = idmap_mount_is_mounted(target);

        if (k < 0)
                return verr_set(e, k, "cannot tell whether '%s' is a mount point: %s", target, strerror(-k));
        if (k == 0)
                return 0;
        if (umount2(target, UMOUNT_NOFOLLOW) == 0)
                return 1;
        if (errno == EBUSY && umount2(target, UMOUNT_NOFOLLOW | MNT_DETACH) == 0)
                return 1;
        return verr_set(e, negative_errno(), "cannot unmount the staging mount '%s': %m", target);
}
