/* test-atomic-file.c: replacing directory entries atomically under a directory fd
 * (libvmuser/atomic-file.c), in a scratch directory. */
#include <setjmp.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "atomic-file.h"
#include "scratch-dir.h"

static char *read_at(int dir_fd, const char *name) {
        static char buf[256];
        int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        assert_true(fd >= 0);
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        assert_true(n >= 0);
        buf[n] = '\0';
        return buf;
}

static unsigned count_temporaries(int dir_fd) {
        unsigned n = 0;
        int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = fdopendir(fd);
        struct dirent *de;
        assert_non_null(d);
        while ((de = readdir(d)))
                if (strncmp(de->d_name, ATOMIC_TEMP_PREFIX, strlen(ATOMIC_TEMP_PREFIX)) == 0)
                        n++;
        closedir(d);
        return n;
}

static mode_t mode_at(int dir_fd, const char *name) {
        struct stat st;
        assert_int_equal(fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW), 0);
        return st.st_mode;
}

static void test_write_creates_and_replaces(void **state) {
        struct scratch *s = *state;
        mode_t old_umask = umask(0077);

        assert_int_equal(atomic_write_at(s->fd, "a.user", "one\n", 4, 0644), 0);
        umask(old_umask);
        /* the mode asked for, whatever the umask */
        assert_int_equal(mode_at(s->fd, "a.user"), S_IFREG | 0644);
        assert_string_equal(read_at(s->fd, "a.user"), "one\n");

        assert_int_equal(atomic_write_at(s->fd, "a.user", "two, longer\n", 12, 0600), 0);
        assert_int_equal(mode_at(s->fd, "a.user"), S_IFREG | 0600);
        assert_string_equal(read_at(s->fd, "a.user"), "two, longer\n");

        assert_int_equal(atomic_write_at(s->fd, "empty", "", 0, 0644), 0);
        assert_string_equal(read_at(s->fd, "empty"), "");
        assert_int_equal(count_temporaries(s->fd), 0);
}

static void test_write_replaces_a_symlink_not_its_target(void **state) {
        struct scratch *s = *state;

        assert_int_equal(atomic_write_at(s->fd, "target", "keep\n", 5, 0644), 0);
        assert_int_equal(symlinkat("target", s->fd, "link"), 0);
        assert_int_equal(atomic_write_at(s->fd, "link", "new\n", 4, 0644), 0);
        assert_true(S_ISREG(mode_at(s->fd, "link")));
        assert_string_equal(read_at(s->fd, "link"), "new\n");
        assert_string_equal(read_at(s->fd, "target"), "keep\n");
}

static void test_write_failure_leaves_no_temporary(void **state) {
        struct scratch *s = *state;

        assert_int_equal(mkdirat(s->fd, "dir", 0755), 0);
        assert_int_equal(mkdirat(s->fd, "dir/sub", 0755), 0);
        /* rename over a non-empty directory fails: the error comes back, the temp file goes */
        int r = atomic_write_at(s->fd, "dir", "x", 1, 0644);
        assert_true(r == -EISDIR || r == -ENOTEMPTY || r == -EEXIST);
        assert_int_equal(count_temporaries(s->fd), 0);
        assert_true(S_ISDIR(mode_at(s->fd, "dir")));
}

static void test_equals(void **state) {
        struct scratch *s = *state;

        assert_int_equal(atomic_write_at(s->fd, "f", "abc", 3, 0600), 0);
        assert_int_equal(file_equals_at(s->fd, "f", "abc", 3, 0600), 1);
        assert_int_equal(file_equals_at(s->fd, "f", "abd", 3, 0600), 0);
        assert_int_equal(file_equals_at(s->fd, "f", "abcd", 4, 0600), 0);
        assert_int_equal(file_equals_at(s->fd, "f", "abc", 3, 0644), 0);
        assert_int_equal(file_equals_at(s->fd, "missing", "abc", 3, 0600), 0);
        /* a symlink to an equal file is not equal: it is not what atomic_write_at() makes */
        assert_int_equal(symlinkat("f", s->fd, "lf"), 0);
        assert_int_equal(file_equals_at(s->fd, "lf", "abc", 3, 0600), 0);

        assert_int_equal(atomic_symlink_at(s->fd, "10.user", "alice.user"), 0);
        assert_int_equal(symlink_equals_at(s->fd, "10.user", "alice.user"), 1);
        assert_int_equal(symlink_equals_at(s->fd, "10.user", "bob.user"), 0);
        assert_int_equal(symlink_equals_at(s->fd, "f", "alice.user"), 0);      /* not a symlink */
        assert_int_equal(symlink_equals_at(s->fd, "missing", "alice.user"), 0);
        /* replaced atomically */
        assert_int_equal(atomic_symlink_at(s->fd, "10.user", "bob.user"), 0);
        assert_int_equal(symlink_equals_at(s->fd, "10.user", "bob.user"), 1);
        assert_int_equal(count_temporaries(s->fd), 0);
}

static void test_unlink_if_exists(void **state) {
        struct scratch *s = *state;

        assert_int_equal(unlink_if_exists_at(s->fd, "missing"), 0);
        assert_int_equal(atomic_write_at(s->fd, "f", "x", 1, 0644), 0);
        assert_int_equal(unlink_if_exists_at(s->fd, "f"), 0);
        assert_int_equal(faccessat(s->fd, "f", F_OK, AT_SYMLINK_NOFOLLOW), -1);
        assert_int_equal(mkdirat(s->fd, "d", 0755), 0);
        assert_int_equal(unlink_if_exists_at(s->fd, "d"), -EISDIR);
}

static void test_clean_temporaries(void **state) {
        struct scratch *s = *state;
        int fd;

        fd = openat(s->fd, ATOMIC_TEMP_PREFIX "-0123456789abcdef", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(symlinkat("x", s->fd, ATOMIC_TEMP_PREFIX "-fedcba9876543210"), 0);
        assert_int_equal(atomic_write_at(s->fd, "alice.user", "{}", 2, 0644), 0);
        assert_int_equal(atomic_write_at(s->fd, ".#other", "{}", 2, 0644), 0);
        assert_int_equal(count_temporaries(s->fd), 2);
        assert_int_equal(atomic_clean_temporaries(s->fd), 0);
        assert_int_equal(count_temporaries(s->fd), 0);
        assert_string_equal(read_at(s->fd, "alice.user"), "{}");
        assert_string_equal(read_at(s->fd, ".#other"), "{}");
}

static void test_read_small(void **state) {
        struct scratch *s = *state;
        char buf[8];

        /* Fits: all of it, NUL-terminated, its length returned. */
        assert_int_equal(atomic_write_at(s->fd, "short", "12 34\n", 6, 0644), 0);
        memset(buf, 'x', sizeof(buf));
        assert_int_equal(read_small_file_at(s->fd, "short", buf, sizeof(buf)), 6);
        assert_string_equal(buf, "12 34\n");

        /* Longer than the buffer: cut at size - 1, never written past the end. */
        char big[16];
        memset(big, '#', sizeof(big));
        assert_int_equal(atomic_write_at(s->fd, "long", "0123456789abcdef", 16, 0644), 0);
        assert_int_equal(read_small_file_at(s->fd, "long", big, 8), 7);
        assert_string_equal(big, "0123456");
        assert_int_equal(big[8], '#');

        /* Exactly size - 1 bytes, and an empty file. */
        assert_int_equal(atomic_write_at(s->fd, "seven", "1234567", 7, 0644), 0);
        assert_int_equal(read_small_file_at(s->fd, "seven", buf, sizeof(buf)), 7);
        assert_string_equal(buf, "1234567");
        assert_int_equal(atomic_write_at(s->fd, "empty", "", 0, 0644), 0);
        assert_int_equal(read_small_file_at(s->fd, "empty", buf, sizeof(buf)), 0);
        assert_string_equal(buf, "");

        /* No room even for the NUL, a missing file, a symlink (not followed), a directory. */
        assert_int_equal(read_small_file_at(s->fd, "short", buf, 0), -EINVAL);
        assert_int_equal(read_small_file_at(s->fd, "missing", buf, sizeof(buf)), -ENOENT);
        assert_int_equal(symlinkat("short", s->fd, "link"), 0);
        assert_int_equal(read_small_file_at(s->fd, "link", buf, sizeof(buf)), -ELOOP);
        assert_int_equal(mkdirat(s->fd, "dir", 0755), 0);
        assert_int_equal(read_small_file_at(s->fd, "dir", buf, sizeof(buf)), -EISDIR);
}

static void test_open_private_dir(void **state) {
        struct scratch *s = *state;
        int fd = -1;

        if (geteuid() != 0)
                skip(); /* the directories must be root's */

        assert_int_equal(open_private_dir_at(s->fd, "users", 0700, &fd), 0);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(mode_at(s->fd, "users"), S_IFDIR | 0700);
        /* existing: opened again as it is */
        fd = -1;
        assert_int_equal(open_private_dir_at(s->fd, "users", 0755, &fd), 0);
        close(fd);

        /* writable by others, or owned by someone else: refused */
        assert_int_equal(mkdirat(s->fd, "open", 0755), 0);
        assert_int_equal(fchmodat(s->fd, "open", 0777, 0), 0);
        fd = -1;
        assert_int_equal(open_private_dir_at(s->fd, "open", 0755, &fd), -EPERM);
        assert_int_equal(fd, -1);
        assert_int_equal(mkdirat(s->fd, "theirs", 0755), 0);
        assert_int_equal(fchownat(s->fd, "theirs", 1000, 1000, 0), 0);
        assert_int_equal(open_private_dir_at(s->fd, "theirs", 0755, &fd), -EPERM);

        /* a symlink to a good directory is not followed */
        assert_int_equal(symlinkat("users", s->fd, "link"), 0);
        int r = open_private_dir_at(s->fd, "link", 0755, &fd);
        assert_true(r == -ELOOP || r == -ENOTDIR);
        /* nor is a file taken for a directory */
        assert_int_equal(atomic_write_at(s->fd, "file", "x", 1, 0644), 0);
        assert_int_equal(open_private_dir_at(s->fd, "file", 0755, &fd), -ENOTDIR);
        assert_int_equal(fd, -1);

        /* The full form: not made without PRIVATE_DIR_CREATE; group-writable refused on request. */
        assert_int_equal(open_private_dir_full_at(s->fd, "absent", 0700, 0, &fd), -ENOENT);
        assert_int_equal(faccessat(s->fd, "absent", F_OK, AT_SYMLINK_NOFOLLOW), -1);
        assert_int_equal(mkdirat(s->fd, "group", 0755), 0);
        assert_int_equal(fchmodat(s->fd, "group", 0775, 0), 0);
        assert_int_equal(open_private_dir_full_at(s->fd, "group", 0755, 0, &fd), 0);
        close(fd);
        fd = -1;
        assert_int_equal(open_private_dir_full_at(s->fd, "group", 0755, PRIVATE_DIR_NO_GROUP_WRITE, &fd), -EPERM);
        assert_int_equal(fd, -1);
        /* PRIVATE_DIR_OWNER_EUID: ours (root here) is taken, another's refused as before. */
        assert_int_equal(open_private_dir_full_at(s->fd, "users", 0700, PRIVATE_DIR_OWNER_EUID, &fd), 0);
        close(fd);
        fd = -1;
        assert_int_equal(open_private_dir_full_at(s->fd, "theirs", 0755, PRIVATE_DIR_OWNER_EUID, &fd), -EPERM);
        assert_int_equal(open_private_dir_full_at(s->fd, "link", 0755, PRIVATE_DIR_OWNER_EUID, &fd), -ENOTDIR);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_write_creates_and_replaces, scratch_setup, scratch_teardown),
                cmocka_unit_test_setup_teardown(test_write_replaces_a_symlink_not_its_target, scratch_setup, scratch_teardown),
                cmocka_unit_test_setup_teardown(test_write_failure_leaves_no_temporary, scratch_setup, scratch_teardown),
                cmocka_unit_test_setup_teardown(test_equals, scratch_setup, scratch_teardown),
                cmocka_unit_test_setup_teardown(test_unlink_if_exists, scratch_setup, scratch_teardown),
                cmocka_unit_test_setup_teardown(test_clean_temporaries, scratch_setup, scratch_teardown),
                cmocka_unit_test_setup_teardown(test_open_private_dir, scratch_setup, scratch_teardown),
                cmocka_unit_test_setup_teardown(test_read_small, scratch_setup, scratch_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
