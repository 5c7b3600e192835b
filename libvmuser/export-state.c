/* export-state.c: the per-user state directory of a home export (see export-state.h).
 *
 * An export, by either backend, runs: export_state_ensure_dir_at(DIR, "homes") ->
 * export_state_lock() -> export_state_read() to find a leftover -> ensure_dir_at(homes, NAME) ->
 * export_state_write("exporting") -> ensure_dir_at(mnt, home) and the backend's own steps ->
 * export_state_write("exported"). Unexport reads the state, writes "unexporting", undoes the
 * backend's steps and ends with export_state_remove_user_dir(). The lock fd is held throughout;
 * closing it is the unlock. */
#include "export-state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomic-file.h"
#include "idmap-mount.h"
#include "json-util.h"
#include "lock-util.h"
#include "macro.h"
#include "names.h"
#include "paths.h"
#include "server-id.h"
#include "virtiofsd.h"

int export_source_open(const char *user, uid_t host_uid, gid_t host_gid, uid_t guest_uid, gid_t guest_gid,
                       const char *source_dir, int *ret_fd, struct verr *e) {
        _cleanup_close_ int fd = -1;
        struct stat st;

        if (host_uid == 0 || guest_uid == 0 || id_is_special(host_uid) || id_is_special(guest_uid) ||
            id_is_special(host_gid) || id_is_special(guest_gid))
                return verr_set(e, -EINVAL, "refusing to export with host UID/GID %u/%u and guest UID/GID %u/%u "
                                            "(root, nobody and -1 are not allowed)",
                                (unsigned) host_uid, (unsigned) host_gid, (unsigned) guest_uid, (unsigned) guest_gid);
        if (!source_dir || source_dir[0] != '/')
                return verr_set(e, -EINVAL, "source directory '%s' is not an absolute path", strempty(source_dir));
        fd = open(source_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return verr_set(e, negative_errno(), "cannot open source directory '%s': %m", source_dir);
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (st.st_uid != host_uid)
                return verr_set(e, -EPERM, "source directory '%s' belongs to UID %u, not to %s (UID %u)", source_dir,
                                (unsigned) st.st_uid, user, (unsigned) host_uid);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int export_state_paths_make(const char *dir, const char *user, struct export_state_paths *ret) {
        struct export_state_paths p = {};
        int k = 0;

        if (!user || !name_is_valid(user))
                return -EINVAL;
        k |= snprintf(p.homes, sizeof(p.homes), "%s/" HOME_EXPORT_SUBDIR, dir) >= (int) sizeof(p.homes);
        k |= snprintf(p.user_dir, sizeof(p.user_dir), "%s/%s", p.homes, user) >= (int) sizeof(p.user_dir);
        k |= snprintf(p.staging, sizeof(p.staging), "%s/" EXPORT_STATE_MNT_SUBDIR "/" EXPORT_STATE_STAGING_NAME,
                      p.user_dir) >= (int) sizeof(p.staging);
        if (k)
                return -ENAMETOOLONG;
        *ret = p;
        return 0;
}

int export_state_ensure_dir_at(int dir_fd, const char *name, mode_t mode, int *ret_fd) {
        _cleanup_close_ int fd = -1;
        struct stat st;
        int k;

        k = open_private_dir_full_at(dir_fd, name, mode, PRIVATE_DIR_CREATE | PRIVATE_DIR_NO_GROUP_WRITE, &fd);
        if (k < 0)
                return k;
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if ((st.st_mode & 07777) != mode && fchmod(fd, mode) < 0)
                return negative_errno();
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int export_state_lock(int homes_fd, const char *vm_word, int timeout_ms, int *ret_fd, struct verr *e) {
        _cleanup_close_ int fd = openat(homes_fd, EXPORT_STATE_LOCK_FILE,
                                        O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
        int k;

        if (fd < 0)
                return verr_set(e, negative_errno(), "cannot open the lock file: %m");
        k = flock_timeout(fd, LOCK_EX, timeout_ms, 50);
        if (k == -ETIMEDOUT)
                return verr_set(e, -EBUSY, "another vmuser is attaching or detaching on this %s", vm_word);
        if (k < 0)
                return verr_set(e, k, "cannot lock the %s's home exports: %s", vm_word, strerror(-k));
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* ---- the state file ------------------------------------------------------------------------ */

static int info_to_json(const struct home_export_info *i, unsigned flags, char **ret) {
        _cleanup_json_ json_object *o = json_object_new_object();
        bool own_virtiofsd = !(flags & EXPORT_STATE_NO_VIRTIOFSD);
        const char *s;

        if (!o)
                return -ENOMEM;
        /* The order of the keys is the order of the file, which people read. */
        json_object_object_add(o, "user", json_object_new_string(i->user));
        json_object_object_add(o, "tag", json_object_new_string(i->tag));
        json_object_object_add(o, "deviceId", json_object_new_string(i->device_id));
        if (own_virtiofsd)
                json_object_object_add(o, "chardevId", json_object_new_string(i->chardev_id));
        json_object_object_add(o, "bus", json_object_new_string(i->bus));
        json_object_object_add(o, "source", json_object_new_string(i->source));
        json_object_object_add(o, "readOnly", json_object_new_boolean(i->read_only));
        json_object_object_add(o, "hostUid", json_object_new_int64(i->host_uid));
        json_object_object_add(o, "hostGid", json_object_new_int64(i->host_gid));
        json_object_object_add(o, "guestUid", json_object_new_int64(i->guest_uid));
        json_object_object_add(o, "guestGid", json_object_new_int64(i->guest_gid));
        if (own_virtiofsd) {
                json_object_object_add(o, "virtiofsd", json_object_new_string(i->virtiofsd_path));
                json_object_object_add(o, "flavour", json_object_new_string(virtiofsd_flavour_to_string(i->flavour)));
                json_object_object_add(o, "translateIds", json_object_new_boolean(i->translate_ids));
                json_object_object_add(o, "fileServer",
                                       json_object_new_string(home_export_server_to_string(i->server)));
                if (i->server == HOME_EXPORT_SERVER_UNPRIVILEGED)
                        json_object_object_add(o, "serverUid", json_object_new_int64(i->server_uid));
        }
        json_object_object_add(o, "phase", json_object_new_string(i->phase));
        s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!s || asprintf(ret, "%s\n", s) < 0)
                return -ENOMEM;
        return 0;
}

int export_state_write(int user_fd, struct home_export_info *i, const char *phase, unsigned flags) {
        _cleanup_free_ char *text = NULL;
        int k;

        snprintf(i->phase, sizeof(i->phase), "%s", phase);
        k = info_to_json(i, flags, &text);
        if (k < 0)
                return k;
        return atomic_write_at(user_fd, HOME_EXPORT_STATE_FILE, text, strlen(text), 0600);
}

static int copy_string(json_object *o, const char *key, char *buf, size_t size) {
        const char *s;
        int k = json_get_string(o, key, &s);

        if (k < 0)
                return k;
        if (strlen(s) >= size)
                return -ERANGE;
        memcpy(buf, s, strlen(s) + 1);
        return 0;
}

/* k of a field getter, where absence is fine when absent_ok (the default stays). */
static int optional(int k, bool absent_ok) {
        return k == -ENOENT && absent_ok ? 0 : k;
}

static int info_from_json(json_object *o, const struct home_export_info *defaults, struct home_export_info *ret) {
        struct home_export_info i = {};
        const char *flavour = NULL, *server = NULL;
        uint32_t hu, hg, gu, gg, su = 0;
        bool opt = defaults != NULL;
        int k = 0;

        if (defaults) {
                memcpy(i.chardev_id, defaults->chardev_id, sizeof(i.chardev_id));
                memcpy(i.virtiofsd_path, defaults->virtiofsd_path, sizeof(i.virtiofsd_path));
                i.flavour = defaults->flavour;
                i.translate_ids = defaults->translate_ids;
        }
        k = k < 0 ? k : copy_string(o, "user", i.user, sizeof(i.user));
        k = k < 0 ? k : copy_string(o, "tag", i.tag, sizeof(i.tag));
        k = k < 0 ? k : copy_string(o, "deviceId", i.device_id, sizeof(i.device_id));
        k = k < 0 ? k : optional(copy_string(o, "chardevId", i.chardev_id, sizeof(i.chardev_id)), opt);
        k = k < 0 ? k : copy_string(o, "bus", i.bus, sizeof(i.bus));
        k = k < 0 ? k : copy_string(o, "source", i.source, sizeof(i.source));
        k = k < 0 ? k : optional(copy_string(o, "virtiofsd", i.virtiofsd_path, sizeof(i.virtiofsd_path)), opt);
        k = k < 0 ? k : copy_string(o, "phase", i.phase, sizeof(i.phase));
        k = k < 0 ? k : json_get_bool(o, "readOnly", &i.read_only);
        k = k < 0 ? k : optional(json_get_bool(o, "translateIds", &i.translate_ids), opt);
        k = k < 0 ? k : json_get_uint32(o, "hostUid", &hu);
        k = k < 0 ? k : json_get_uint32(o, "hostGid", &hg);
        k = k < 0 ? k : json_get_uint32(o, "guestUid", &gu);
        k = k < 0 ? k : json_get_uint32(o, "guestGid", &gg);
        k = k < 0 ? k : optional(json_get_string(o, "flavour", &flavour), opt);
        /* Absent in states written before the unprivileged file server: those ran as root. */
        k = k < 0 ? k : optional(json_get_string(o, "fileServer", &server), true);
        k = k < 0 ? k : optional(json_get_uint32(o, "serverUid", &su), true);
        if (k < 0)
                return -EBADMSG;
        i.server = HOME_EXPORT_SERVER_ROOT;
        if (server && home_export_server_from_string(server, &i.server) < 0)
                return -EBADMSG;
        if (i.server == HOME_EXPORT_SERVER_UNPRIVILEGED && (su < SERVER_ID_BASE || su - SERVER_ID_BASE >= SERVER_ID_COUNT))
                return -EBADMSG;
        i.server_uid = su;
        i.host_uid = hu, i.host_gid = hg, i.guest_uid = gu, i.guest_gid = gg;
        if (flavour)
                i.flavour = streq(flavour, "rust") ? VIRTIOFSD_FLAVOUR_RUST : VIRTIOFSD_FLAVOUR_C;
        *ret = i;
        return 0;
}

int export_state_read(int user_fd, const struct home_export_info *defaults, struct home_export_info *ret) {
        _cleanup_json_ json_object *o = NULL;
        int k = json_read_file_at(user_fd, HOME_EXPORT_STATE_FILE, VMUSER_STATE_FILE_MAX, &o);

        if (k < 0)
                return k;
        return info_from_json(o, defaults, ret);
}

/* ---- removal ------------------------------------------------------------------------------- */

int export_state_remove_user_dir(int homes_fd, const char *user, const struct export_state_paths *paths,
                                 struct verr *e) {
        /* libvirt's exports have only the state file; unlinking the others is then a no-op. */
        static const char *const files[] = { HOME_EXPORT_STATE_FILE, HOME_EXPORT_SOCKET, VIRTIOFSD_LOG_FILE,
                                             VIRTIOFSD_PID_FILE, VIRTIOFSD_UNIT_FILE };
        _cleanup_close_ int user_fd = openat(homes_fd, user, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        _cleanup_close_ int mnt_fd = -1;
        int k;

        if (user_fd < 0)
                return errno == ENOENT ? 0 : verr_set(e, negative_errno(), "cannot open '%s': %m", paths->user_dir);
        k = idmap_mount_is_mounted(paths->staging);
        if (k != 0)
                return verr_set(e, k < 0 ? k : -EBUSY, "'%s' is still mounted", paths->staging);

        mnt_fd = openat(user_fd, EXPORT_STATE_MNT_SUBDIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (mnt_fd >= 0) {
                if (unlinkat(mnt_fd, EXPORT_STATE_STAGING_NAME, AT_REMOVEDIR) < 0 && errno != ENOENT)
                        return verr_set(e, negative_errno(), "cannot remove '%s': %m", paths->staging);
                if (unlinkat(user_fd, EXPORT_STATE_MNT_SUBDIR, AT_REMOVEDIR) < 0 && errno != ENOENT)
                        return verr_set(e, negative_errno(), "cannot remove '%s/" EXPORT_STATE_MNT_SUBDIR "': %m",
                                        paths->user_dir);
        }
        (void) atomic_clean_temporaries(user_fd);
        /* The state file goes last but one: as long as anything else is left, it says what. */
        for (size_t i = ELEMENTSOF(files); i > 0; i--) {
                k = unlink_if_exists_at(user_fd, files[i - 1]);
                if (k < 0)
                        return verr_set(e, k, "cannot remove '%s/%s': %s", paths->user_dir, files[i - 1], strerror(-k));
        }
        if (unlinkat(homes_fd, user, AT_REMOVEDIR) < 0 && errno != ENOENT)
                return verr_set(e, negative_errno(), "cannot remove '%s': %m", paths->user_dir);
        return 0;
}
