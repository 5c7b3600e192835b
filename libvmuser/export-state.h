/* export-state.h: the per-user state directory of a home export, shared by both VM backends.
 *
 * Both the bare-QEMU export (home-export.c, DIR = the VM directory) and the libvirt backend
 * (vm-backend-libvirt.c, DIR = /run/vmuser/libvirt/UUID) keep the same tree:
 *   DIR/homes/                 0711 root; .lock (flock: serializes attaches and detaches)
 *   DIR/homes/NAME/            0711 root
 *       state.json             0600, what is exported and the phase (see export_state_write())
 *       mnt/home               0700 root, the idmapped staging mount
 * The callers run their own steps (QMP or libvirt); this file only checks what is to be
 * exported (export_source_open()) and makes, locks, records and removes that tree. */
#pragma once

#include <limits.h>
#include <sys/types.h>

#include "home-export.h"
#include "verr.h"

/* The checks both backends make before exporting: the IDs on both sides are neither root,
 * nobody nor -1, source_dir is absolute, is a directory (symlinks on the way are fine: an admin
 * may point at one) and belongs to host_uid. *ret_fd is an O_PATH fd of it, for the idmapped
 * mount. -EINVAL or -EPERM with the value at fault in e; -errno from open. */
int export_source_open(const char *user, uid_t host_uid, gid_t host_gid, uid_t guest_uid, gid_t guest_gid,
                       const char *source_dir, int *ret_fd, struct verr *e);

#define EXPORT_STATE_LOCK_FILE ".lock"
#define EXPORT_STATE_MNT_SUBDIR "mnt"
#define EXPORT_STATE_STAGING_NAME "home"

struct export_state_paths {
        char homes[PATH_MAX];    /* DIR/homes */
        char user_dir[PATH_MAX]; /* DIR/homes/NAME */
        char staging[PATH_MAX];  /* DIR/homes/NAME/mnt/home */
};

/* Builds the paths for user below dir. -EINVAL for an invalid user name, -ENAMETOOLONG when a
 * path does not fit. */
int export_state_paths_make(const char *dir, const char *user, struct export_state_paths *ret);

/* Creates (if missing) and opens a directory below dir_fd without following symlinks. It must
 * belong to root and not be writable by group or others, since paths below it are handed to
 * QEMU, libvirt, virtiofsd and umount; it gets exactly mode. */
int export_state_ensure_dir_at(int dir_fd, const char *name, mode_t mode, int *ret_fd);

/* flock() on homes/.lock, waiting up to timeout_ms; the fd is the lock. vm_word ("VM",
 * "domain") is what the messages call the machine: -EBUSY "another vmuser is attaching or
 * detaching on this VM". */
int export_state_lock(int homes_fd, const char *vm_word, int timeout_ms, int *ret_fd, struct verr *e);

enum {
        /* The export has no chardev and no virtiofsd of vmuser's own (libvirt runs them): the
         * fields about them (chardevId, virtiofsd, flavour, translateIds) are left out. */
        EXPORT_STATE_NO_VIRTIOFSD = 1u << 0,
};

/* Sets i->phase and writes i to NAME/state.json atomically (0600). flags: EXPORT_STATE_*. */
int export_state_write(int user_fd, struct home_export_info *i, const char *phase, unsigned flags);

/* Reads NAME/state.json. With defaults NULL every field is required; otherwise chardevId,
 * virtiofsd, flavour and translateIds may be absent and are then taken from *defaults. The live
 * state in *ret is zero. -ENOENT without a state file, -EBADMSG when a required field is
 * missing, has the wrong type or is too long. */
int export_state_read(int user_fd, const struct home_export_info *defaults, struct home_export_info *ret);

/* Removes what an export keeps in NAME/ (state file last but one, the directory last); 0 when
 * there is no NAME/. Refuses (-EBUSY) while the staging mount is still there: rmdir would fail
 * anyway, and nothing may be deleted through it. */
int export_state_remove_user_dir(int homes_fd, const char *user, const struct export_state_paths *paths,
                                 struct verr *e);
