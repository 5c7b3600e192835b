/* atomic-file.c: see atomic-file.h. */
#include "atomic-file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dir-util.h"
#include "macro.h"

static void temp_name(char *buf, size_t size) {
        uint64_t rnd = 0;
        if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
                rnd = (uint64_t) getpid() << 32 ^ (uint64_t) rand();
        snprintf(buf, size, ATOMIC_TEMP_PREFIX "-%016llx", (unsigned long long) rnd);
}

static int write_full(int fd, const void *data, size_t len) {
        const char *p = data;
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

int atomic_write_at(int dir_fd, const char *name, const void *data, size_t len, mode_t mode) {
        char tmp[64];
        _cleanup_close_ int fd = -1;
        int r;

        temp_name(tmp, sizeof(tmp));
        fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
        if (fd < 0)
                return negative_errno();
        if (fchmod(fd, mode) < 0) {
                r = negative_errno();
                goto fail;
        }
        r = write_full(fd, data, len);
        if (r < 0)
                goto fail;
        if (renameat(dir_fd, tmp, dir_fd, name) < 0) {
                r = negative_errno();
                goto fail;
        }
        return 0;

fail:
        (void) unlinkat(dir_fd, tmp, 0);
        return r;
}

int atomic_symlink_at(int dir_fd, const char *name, const char *target) {
        char tmp[64];

        temp_name(tmp, sizeof(tmp));
        if (symlinkat(target, dir_fd, tmp) < 0)
                return negative_errno();
        if (renameat(dir_fd, tmp, dir_fd, name) < 0) {
                int r = negative_errno();
                (void) unlinkat(dir_fd, tmp, 0);
                return r;
        }
        return 0;
}

int unlink_if_exists_at(int dir_fd, const char *name) {
        if (unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT)
                return negative_errno();
        return 0;
}

int file_equals_at(int dir_fd, const char *name, const void *data, size_t len, mode_t mode) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        size_t done = 0;

        fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return errno == ENOENT || errno == ELOOP ? 0 : negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode) || (st.st_mode & 07777) != mode || (size_t) st.st_size != len)
                return 0;
        buf = malloc(len + 1);
        if (!buf)
                return -ENOMEM;
        while (done < len) {
                ssize_t n = read(fd, buf + done, len - done);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? negative_errno() : 0;
                done += (size_t) n;
        }
        int equal = memcmp(buf, data, len) == 0;
        explicit_bzero(buf, len);
        return equal;
}

int read_small_file_at(int dir_fd, const char *name, char *buf, size_t size) {
        _cleanup_close_ int fd = -1;
        size_t done = 0;

        if (size == 0)
                return -EINVAL;
        fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        while (done < size - 1) {
                ssize_t n = read(fd, buf + done, size - 1 - done);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                if (n == 0)
                        break;
                done += (size_t) n;
        }
        buf[done] = '\0';
        return done > INT32_MAX ? INT32_MAX : (int) done;
}

int symlink_equals_at(int dir_fd, const char *name, const char *target) {
        char buf[4096];
        ssize_t n = readlinkat(dir_fd, name, buf, sizeof(buf) - 1);
        if (n < 0)
                return errno == ENOENT || errno == EINVAL ? 0 : negative_errno();
        buf[n] = '\0';
        return streq(buf, target);
}

int open_private_dir_full_at(int dir_fd, const char *name, mode_t mode, unsigned flags, int *ret_fd) {
        _cleanup_close_ int fd = -1;
        struct stat st;

        for (int attempt = 0;; attempt++) {
                fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd >= 0)
                        break;
                if (errno != ENOENT || !(flags & PRIVATE_DIR_CREATE) || attempt > 0)
                        return errno == ELOOP ? -ENOTDIR : negative_errno();
                if (mkdirat(dir_fd, name, mode) < 0 && errno != EEXIST)
                        return negative_errno();
        }
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (st.st_uid != ((flags & PRIVATE_DIR_OWNER_EUID) ? geteuid() : 0) || (st.st_mode & S_IWOTH) ||
            ((flags & PRIVATE_DIR_NO_GROUP_WRITE) && (st.st_mode & S_IWGRP)))
                return -EPERM;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int open_private_dir_at(int dir_fd, const char *name, mode_t mode, int *ret_fd) {
        return open_private_dir_full_at(dir_fd, name, mode, PRIVATE_DIR_CREATE, ret_fd);
}

static int clean_one(int dir_fd, const char *name, void *userdata) {
        if (strncmp(name, ATOMIC_TEMP_PREFIX, strlen(ATOMIC_TEMP_PREFIX)) == 0)
                (void) unlinkat(dir_fd, name, 0);
        return 0;
}

int atomic_clean_temporaries(int dir_fd) {
        return dir_foreach_at(dir_fd, clean_one, NULL);
}
