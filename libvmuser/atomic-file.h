/* atomic-file.h: replacing one directory entry at a time, atomically.
 *
 * All writers go through here: a temporary file in the same directory (O_CLOEXEC|O_NOFOLLOW|
 * O_EXCL, mode set before any content), then renameat() over the target. Readers see the old
 * file or the new one, never a prefix. Everything is relative to a directory fd so another user
 * cannot swap a path component under us. Temporary names start with ".#vmuser" and are what
 * atomic_clean_temporaries() removes after a crash. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define ATOMIC_TEMP_PREFIX ".#vmuser"

int atomic_write_at(int dir_fd, const char *name, const void *data, size_t len, mode_t mode);
int atomic_symlink_at(int dir_fd, const char *name, const char *target);
/* unlinkat() that treats a missing entry as success. */
int unlink_if_exists_at(int dir_fd, const char *name);

/* Compares the entry with what atomic_write_at()/atomic_symlink_at() would produce: 1 if equal
 * (same type, mode, content or target), 0 if not or absent, -errno on error. */
int file_equals_at(int dir_fd, const char *name, const void *data, size_t len, mode_t mode);
int symlink_equals_at(int dir_fd, const char *name, const char *target);

/* The one way to open a directory that must be ours: below dir_fd, never through a symlink
 * (-ENOTDIR for one, as for a file), refused with -EPERM when another owner has it or others
 * may write to it. */
enum {
        PRIVATE_DIR_CREATE = 1 << 0,         /* mkdirat() it with mode when missing */
        PRIVATE_DIR_OWNER_EUID = 1 << 1,     /* owned by the effective UID (default: by root) */
        PRIVATE_DIR_NO_GROUP_WRITE = 1 << 2, /* refuse group-writable too */
};
int open_private_dir_full_at(int dir_fd, const char *name, mode_t mode, unsigned flags, int *ret_fd);

/* open_private_dir_full_at() with PRIVATE_DIR_CREATE: root's, created when missing. */
int open_private_dir_at(int dir_fd, const char *name, mode_t mode, int *ret_fd);

/* Reads up to size - 1 bytes of a small file below dir_fd (not following a symlink) into buf
 * and NUL-terminates it; a longer file is cut at size - 1 bytes. Returns the number of bytes
 * read, or -errno (-EINVAL when size is 0). For state files of a line or two: pid files, unit
 * names, counters. */
int read_small_file_at(int dir_fd, const char *name, char *buf, size_t size);

/* Removes leftover temporary files in a directory. */
int atomic_clean_temporaries(int dir_fd);
