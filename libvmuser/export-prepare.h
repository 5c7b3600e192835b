/* export-prepare.h: the host-side checks and steps both VM backends take before a home is
 * plugged in, in one place (issue 12 §4): the bare-QEMU export (home-export.c) and the libvirt
 * backend (vm-backend-libvirt.c) call the same functions, so a leftover export, the choice of
 * the file server and the staging mount behave and read alike whichever runs the VM.
 *
 *   export_leftover_check()   what an earlier export of the user left in DIR/homes/USER: an
 *                             export in phase "exported" is -EEXIST "already exported", any
 *                             other recorded phase (or an unreadable state file) is -EEXIST
 *                             "did not finish ... detach to clean up"; a directory without a
 *                             state file (nothing ever reached the VM) is removed.
 *   export_server_requested() what $VMUSER_FILE_SERVER asks for (vmuser(1)).
 *   export_server_choose()    the file server an export gets: unprivileged where the kernel
 *                             makes user namespaces, root otherwise (HOME-EXPORT.txt 4.1).
 *   export_staging_make()     DIR/homes/USER/mnt (0700) and mnt/home (0700), and on it the
 *                             idmapped staging mount of the source. */
#pragma once

#include <stdbool.h>

#include "export-state.h"
#include "home-export.h"
#include "idmap-mount.h"
#include "verr.h"

/* 0 when homes_fd has nothing of user's (any directory without a state file was removed);
 * -EEXIST as above; -EBUSY when a directory without state still has its staging mount.
 * defaults: as for export_state_read(); vm_word: what messages call the machine ("VM"). */
int export_leftover_check(int homes_fd, const char *user, const struct export_state_paths *paths,
                          const struct home_export_info *defaults, const char *vm_word, struct verr *e);

/* $VMUSER_FILE_SERVER: "auto" (also when unset or empty), "unprivileged" or "root". */
int export_server_requested(enum home_export_server *ret, struct verr *e);

/* requested AUTO: UNPRIVILEGED where user namespaces are available, else ROOT; UNPRIVILEGED
 * where they are not: -EOPNOTSUPP. */
int export_server_choose(enum home_export_server requested, enum home_export_server *ret, struct verr *e);

/* Makes mnt/ and mnt/home below user_fd (root's, 0700: through the mount the files look like
 * map->mount_uid's, which on the host may be an unrelated user) and mounts source_fd there as
 * map says, read-only when read_only. */
int export_staging_make(int user_fd, const struct export_state_paths *paths, int source_fd,
                        const struct idmap_mount_map *map, bool read_only, struct verr *e);
