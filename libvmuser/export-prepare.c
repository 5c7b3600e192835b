/* export-prepare.c: the checks and steps both VM backends take before plugging a home in (see
 * export-prepare.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "export-prepare.h"
#include "macro.h"
#include "virtiofsd.h"

int export_leftover_check(int homes_fd, const char *user, const struct export_state_paths *paths,
                          const struct home_export_info *defaults, const char *vm_word, struct verr *e) {
        _cleanup_close_ int fd = openat(homes_fd, user, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        struct home_export_info old;
        int k;

        if (fd < 0) {
                if (errno == ENOENT)
                        return 0;
                return verr_set(e, negative_errno(), "cannot open '%s': %m", paths->user_dir);
        }
        k = export_state_read(fd, defaults, &old);
        if (k == 0 && streq(old.phase, "exported"))
                return verr_set(e, -EEXIST, "the home of %s is already exported to this %s (tag %s)", user, vm_word,
                                old.tag);
        if (k != -ENOENT)
                return verr_set(e, -EEXIST, "an earlier attach or detach of %s did not finish (phase %s); detach %s "
                                            "to clean up",
                                user, k == 0 ? old.phase : "unknown", user);
        /* No state file: the state is written before anything reaches the VM or starts. */
        closep(&fd);
        return export_state_remove_user_dir(homes_fd, user, paths, e);
}

int export_server_requested(enum home_export_server *ret, struct verr *e) {
        const char *s = getenv("VMUSER_FILE_SERVER");

        *ret = HOME_EXPORT_SERVER_AUTO;
        if (s && *s && home_export_server_from_string(s, ret) < 0)
                return verr_set(e, -EINVAL, "$VMUSER_FILE_SERVER is '%s', not auto, unprivileged or root", s);
        return 0;
}

int export_server_choose(enum home_export_server requested, enum home_export_server *ret, struct verr *e) {
        if (requested == HOME_EXPORT_SERVER_ROOT) {
                *ret = requested;
                return 0;
        }
        if (virtiofsd_userns_available() > 0) {
                *ret = HOME_EXPORT_SERVER_UNPRIVILEGED;
                return 0;
        }
        if (requested == HOME_EXPORT_SERVER_UNPRIVILEGED)
                return verr_set(e, -EOPNOTSUPP, "an unprivileged file server needs user namespaces, which this kernel "
                                                "does not allow (user.max_user_namespaces?)");
        *ret = HOME_EXPORT_SERVER_ROOT;
        return 0;
}

int export_staging_make(int user_fd, const struct export_state_paths *paths, int source_fd,
                        const struct idmap_mount_map *map, bool read_only, struct verr *e) {
        _cleanup_close_ int mnt_fd = -1, staging_fd = -1;
        int k;

        k = export_state_ensure_dir_at(user_fd, EXPORT_STATE_MNT_SUBDIR, 0700, &mnt_fd);
        if (k < 0)
                return verr_set(e, k, "cannot create '%s/" EXPORT_STATE_MNT_SUBDIR "': %s", paths->user_dir,
                                strerror(-k));
        k = export_state_ensure_dir_at(mnt_fd, EXPORT_STATE_STAGING_NAME, 0700, &staging_fd);
        if (k < 0)
                return verr_set(e, k, "cannot create '%s': %s", paths->staging, strerror(-k));
        return idmap_mount_make(source_fd, paths->staging, map, read_only ? IDMAP_MOUNT_READ_ONLY : 0, e);
}
