/* uid-alloc.c: the high-water mark, quarantine and reservations of transient UIDs (see
 * uid-alloc.h).
 *
 * Each is a file per UID (or one small file) written with atomic-file.c below /run/vmuser; a
 * missing file means "none". Files that do not parse are treated as absent for the high-water
 * mark (the allocator then only loses its preference) and as present for quarantine (a
 * quarantined UID is checked again before reuse anyway). */
#include "uid-alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic-file.h"
#include "json-util.h"
#include "macro.h"
#include "names.h"

#define HIGHWATER_FILE "uid-highwater"
#define QUARANTINE_DIR "quarantine"
#define RESERVED_DIR "reserved"

int uid_highwater_get(int state_fd, const struct id_range *range, uint32_t *ret) {
        char buf[32], *end;
        unsigned long v;
        int r;

        r = read_small_file_at(state_fd, HIGHWATER_FILE, buf, sizeof(buf));
        if (r == -ENOENT) {
                *ret = range->min;
                return 0;
        }
        if (r < 0)
                return r;
        errno = 0;
        v = strtoul(buf, &end, 10);
        if (errno != 0 || end == buf || (*end && *end != '\n') || v < range->min || v > (unsigned long) range->max + 1)
                v = range->min;
        *ret = (uint32_t) v;
        return 0;
}

int uid_highwater_raise(int state_fd, uint32_t uid) {
        struct id_range all = { 0, UINT32_MAX - 1 };
        uint32_t cur;
        char buf[32];
        int r;

        r = uid_highwater_get(state_fd, &all, &cur);
        if (r < 0)
                return r;
        if (cur != 0 && cur > uid)
                return 0;
        snprintf(buf, sizeof(buf), "%u\n", uid + 1);
        return atomic_write_at(state_fd, HIGHWATER_FILE, buf, strlen(buf), 0644);
}

static int open_subdir(int state_fd, const char *name, bool create, int *ret_fd) {
        if (!create) {
                int fd = openat(state_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0)
                        return negative_errno();
                *ret_fd = fd;
                return 0;
        }
        return open_private_dir_at(state_fd, name, 0755, ret_fd);
}

int uid_quarantine_set(int state_fd, uint32_t uid, bool on) {
        _cleanup_close_ int fd = -1;
        char name[16];
        int r;

        r = open_subdir(state_fd, QUARANTINE_DIR, on, &fd);
        if (r == -ENOENT && !on)
                return 0;
        if (r < 0)
                return r;
        snprintf(name, sizeof(name), "%u", uid);
        return on ? atomic_write_at(fd, name, "", 0, 0644) : unlink_if_exists_at(fd, name);
}

int uid_quarantine_has(int state_fd, uint32_t uid) {
        char name[16];

        snprintf(name, sizeof(name), QUARANTINE_DIR "/%u", uid);
        if (faccessat(state_fd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
                return 1;
        return errno == ENOENT || errno == ENOTDIR ? 0 : negative_errno();
}

int uid_reserve_set(int state_fd, uint32_t uid, const char *user_name) {
        _cleanup_close_ int fd = -1;
        char name[16], line[VMUSER_NAME_MAX + 2];
        int r;

        if (!name_is_valid(user_name))
                return -EINVAL;
        r = open_subdir(state_fd, RESERVED_DIR, true, &fd);
        if (r < 0)
                return r;
        snprintf(name, sizeof(name), "%u", uid);
        snprintf(line, sizeof(line), "%s\n", user_name);
        return atomic_write_at(fd, name, line, strlen(line), 0644);
}

int uid_reserved_for(int state_fd, uint32_t uid, char *ret_name, size_t size) {
        char path[32], buf[VMUSER_NAME_MAX + 2];
        int r;

        snprintf(path, sizeof(path), RESERVED_DIR "/%u", uid);
        r = read_small_file_at(state_fd, path, buf, sizeof(buf));
        if (r == -ENOENT || r == -ENOTDIR)
                return 0;
        if (r < 0)
                return r;
        buf[strcspn(buf, "\n")] = '\0';
        if (!name_is_valid(buf))
                return 0;
        snprintf(ret_name, size, "%s", buf);
        return 1;
}

int uid_reservations_from_json(int state_fd, json_object *array, const struct id_range *range, struct verr *e) {
        size_t n;
        int r;

        if (!json_object_is_type(array, json_type_array))
                return verr_set(e, -EINVAL, "argument 'reservedUids' must be an array");
        n = json_object_array_length(array);
        if (n > UID_RESERVED_MAX)
                return verr_set(e, -EINVAL, "argument 'reservedUids' has more than %u entries", UID_RESERVED_MAX);
        /* Check all, then write: a bad entry changes nothing. */
        for (int pass = 0; pass < 2; pass++)
                for (size_t i = 0; i < n; i++) {
                        json_object *o = json_object_array_get_idx(array, i);
                        const char *name;
                        uint32_t uid;

                        if (!json_object_is_type(o, json_type_object) || json_object_object_length(o) != 2 ||
                            json_get_uint32(o, "uid", &uid) < 0 || json_get_string(o, "userName", &name) < 0 ||
                            !name_is_valid(name) || uid < range->min || uid > range->max)
                                return verr_set(e, -EINVAL, "entry %zu of 'reservedUids' is not {\"uid\": N in %u-%u, "
                                                "\"userName\": S}", i, range->min, range->max);
                        if (pass == 1 && (r = uid_reserve_set(state_fd, uid, name)) < 0)
                                return verr_set(e, r, "cannot reserve uid %u for '%s': %s", uid, name, strerror(-r));
                }
        return 0;
}
