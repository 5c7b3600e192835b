/* mount-home.h: mounting and unmounting an attached user's home in the guest.
 *
 * pam_vmuser calls mount_home() when a user's session opens and unmount_home() when the user's
 * last session closes; the agent uses mount_home_check() for vmuser-list and unmount_home() for a
 * forced detach. The mount point is reached from "/" one component at a time without following
 * symlinks; missing directories are created root-owned 0755, and every directory on the way must
 * be a root-owned directory nobody else can write to. Mounts always carry nosuid,nodev. Nothing
 * here prints: errors are -errno with the reason in struct verr. Needs Linux 5.8 (statx
 * STATX_MNT_ID and STATX_ATTR_MOUNT_ROOT) and /proc. */
#pragma once

#include <sys/types.h>

#include "home-spec.h"
#include "verr.h"

enum {
        MOUNT_HOME_MOUNTED = 0, /* mounted now */
        MOUNT_HOME_ALREADY = 1, /* the same home was mounted there already (nothing done) */
};

/* Mounts spec on path (an absolute, normalized directory path) for the user uid:gid, creating the
 * mount point if needed. A tmpfs gets uid=, gid= and (unless the spec says mode=) mode=0700, so
 * its root belongs to the user; a bind is made and then remounted with the spec's flags.
 * *ret_root_uid (if not NULL) receives the owner of the mounted root, which the caller should
 * compare with uid. Returns MOUNT_HOME_MOUNTED or MOUNT_HOME_ALREADY; -EEXIST when something else
 * is mounted on path; -ELOOP, -ENOTDIR, -EPERM when the way to path is unsafe; -ENXIO when a
 * virtiofs tag (mounted without options) is not (yet) there: the host plugs the share in after pushing the record, so a
 * caller may retry for a while. */
int mount_home(const char *path, const struct home_spec *spec, uid_t uid, gid_t gid, uid_t *ret_root_uid,
               struct verr *e);

enum {
        UNMOUNT_HOME_NOT_MOUNTED = 0, /* nothing of ours was mounted on path */
        UNMOUNT_HOME_UNMOUNTED = 1,
        UNMOUNT_HOME_DETACHED = 2, /* busy (or broken): detached lazily (MNT_DETACH) */
};

/* Unmounts the home spec mounted on path (never something else: -EEXIST then). A mount that
 * cannot be unmounted at once (busy, or a share whose host side is gone) is detached lazily
 * rather than waited for. Never creates anything. */
int unmount_home(const char *path, const struct home_spec *spec, struct verr *e);

/* 1 when spec is mounted on path, 0 when nothing is (or path does not exist), -EEXIST when
 * something else is mounted there. Never creates anything. */
int mount_home_check(const char *path, const struct home_spec *spec, struct verr *e);

/* systemd's name for the mount unit of path (absolute, normalized), the same as
 * `systemd-escape --path --suffix=mount PATH`: "/run/vmhost/home/a-b" ->
 * "run-vmhost-home-a\x2db.mount". The agent asks systemd to stop that unit to unmount a home in
 * the login namespace. -EINVAL for a path that is not absolute and normalized, -ENAMETOOLONG
 * when the name does not fit in size bytes or is longer than systemd's 255 characters. */
int mount_unit_name(const char *path, char *buf, size_t size);
