/* idmap-mount.h: the host-side staging mount through which virtiofsd serves a user's home.
 *
 * A guest user usually has another UID than the same user on the host. The C virtiofsd of
 * Debian 12 cannot translate IDs, so the mapping happens in the kernel: the home is cloned with
 * open_tree(OPEN_TREE_CLONE), given an ID mapping with mount_setattr(MOUNT_ATTR_IDMAP) and
 * attached below the VM's runtime directory with move_mount(). Through that mount the host
 * user's files show as owned by the guest UID/GID, and what the guest UID creates lands on disk
 * as the host UID. Only that one UID and GID are mapped: everything else shows as the overflow
 * ID and cannot be created or chowned to, so a guest root cannot plant root-owned files in the
 * home. The mount is always nosuid,nodev, private (no propagation), optionally read-only, and
 * not recursive (mounts below the home are not exported).
 *
 * Flow: idmap_mount_make() -> a helper child unshares a user namespace and waits -> the parent
 * writes "HOSTID MOUNTID 1" into its uid_map and gid_map (inside = on-disk ID, outside = the ID
 * seen through the mount), opens /proc/CHILD/ns/user and lets the child go -> open_tree ->
 * mount_setattr (idmap, nosuid, nodev[, rdonly], private) -> move_mount onto the target.
 * Needs root (CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID), Linux 5.12 and a filesystem that supports
 * idmapped mounts (ext4, xfs, btrfs; tmpfs since 6.3). */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "verr.h"

struct idmap_mount_map {
        uid_t disk_uid;  /* the ID on disk (the host user) */
        gid_t disk_gid;
        uid_t mount_uid; /* the ID seen through the mount (the guest user); may equal disk_uid */
        gid_t mount_gid;
};

enum {
        IDMAP_MOUNT_READ_ONLY = 1u << 0,
};

/* A user namespace whose uid_map/gid_map map disk_* (inside) to mount_* (outside), as an fd
 * for mount_setattr(). */
int idmap_userns_fd(const struct idmap_mount_map *map, int *ret_fd, struct verr *e);

/* Clones the directory source_fd refers to (any fd of a directory, O_PATH is fine) and mounts
 * it, idmapped as map says, on target: an absolute path to an existing directory, which should
 * be reachable by root only (the mount shows the files as owned by mount_uid, which may belong
 * to an unrelated host user). The last component is not followed if it is a symlink.
 * -EOPNOTSUPP when the filesystem cannot be idmapped, -EBUSY when something is mounted on
 * target already. */
int idmap_mount_make(int source_fd, const char *target, const struct idmap_mount_map *map, unsigned flags,
                     struct verr *e);

/* 1 when a mount is attached at target (target is a mount root), 0 when not or when target
 * does not exist, -errno on other errors. */
int idmap_mount_is_mounted(const char *target);

/* Unmounts target (lazily if it is busy). Returns 1 when it unmounted something, 0 when
 * nothing was mounted there (or target does not exist). */
int idmap_mount_remove(const char *target, struct verr *e);
