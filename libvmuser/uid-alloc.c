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
#define QUARANTINE_DIR UID_QUARANTINE_DIR
#define RESERVED_DIR UID_RESERVED_DIR

int uid_highwater_open(int state_fd, int *ret_fd) {
        int fd = openat(state_fd, HIGHWATER_FILE, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0644);
        if (fd < 0)
                return negative_errno();
        *ret_fd = fd;
        return 0;
}

/* The file's text into buf (NUL-terminated); its length, or -errno. */
static int highwater_read(int fd, char *buf, size_t size) {
        ssize_t n;

        do
                n = pread(fd, buf, size - 1, 0);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return negative_errno();
        buf[n] = '\0';
        return (int) n;
}

static uint32_t highwater_parse(const char *buf, const struct id_range *range) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(buf, &end, 10);
        if (errno != 0 || end == buf || (*end && *end != '\n') || v < range->min || v > (unsigned long) range->max + 1)
                v = range->min;
        return (uint32_t) v;
}

int uid_highwater_get(int fd, const struct id_range *range, uint32_t *ret) {
        char buf[32];
        int r = highwater_read(fd, buf, sizeof(buf));

        if (r < 0)
                return r;
        *ret = highwater_parse(buf, range);
        return 0;
}

int uid_highwater_raise(int fd, uint32_t uid) {
        struct id_range all = { 0, UINT32_MAX - 1 };
        char buf[32];
        size_t len;
        ssize_t n;
        int old_len;

        old_len = highwater_read(fd, buf, sizeof(buf));
        if (old_len < 0)
                return old_len;
        uint32_t cur = highwater_parse(buf, &all);
        if (cur != 0 && cur > uid)
                return 0;
        /* One pwrite(2) at offset 0, no temporary file: the mark only rises, so its text never
         * gets shorter and the new text covers the old one whole; a SIGKILL cannot split a write
         * this small into one page (the old mark or the new one stays). A longer text that did
         * not parse is cut to the new one (what is left until then still parses). */
        len = (size_t) snprintf(buf, sizeof(buf), "%u\n", uid + 1);
        do
                n = pwrite(fd, buf, len, 0);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return negative_errno();
        if ((size_t) n != len)
                return -EIO;
        if ((size_t) old_len > len && ftruncate(fd, (off_t) len) < 0)
                return negative_errno();
        return 0;
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
