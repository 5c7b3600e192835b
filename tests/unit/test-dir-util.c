/* test-dir-util.c: the directory lister (libvmuser/dir-util.c) on a scratch directory: what it
 * lists and skips, its bounds, stopping early, and that the caller's fd is left as it was. */
#include <setjmp.h>
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

#include "dir-util.h"
#include "scratch-dir.h"
#include "strv.h"

static void touch(int dir_fd, const char *name) {
        int fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
}

static bool has(char **names, const char *name) {
        for (char **p = names; *p; p++)
                if (strcmp(*p, name) == 0)
                        return true;
        return false;
}

static void test_list_empty(void **state) {
        struct scratch *s = *state;
        char **names = NULL;
        size_t n = 99;

        assert_int_equal(dir_list_names_at(s->fd, SIZE_MAX, &names, &n), 0);
        assert_int_equal(n, 0);
        assert_non_null(names);
        assert_null(names[0]);
        strv_free(names);
}

static void test_list(void **state) {
        struct scratch *s = *state;
        char **names = NULL;
        size_t n = 0;

        touch(s->fd, "a");
        touch(s->fd, ".hidden");
        touch(s->fd, "..x");
        assert_int_equal(mkdirat(s->fd, "sub", 0700), 0);
        touch(s->fd, "sub/inner");
        assert_int_equal(symlinkat("nowhere", s->fd, "link"), 0);

        assert_int_equal(dir_list_names_at(s->fd, SIZE_MAX, &names, &n), 0);
        assert_int_equal(n, 5);
        assert_null(names[5]);
        assert_true(has(names, "a") && has(names, ".hidden") && has(names, "..x") && has(names, "sub") &&
                    has(names, "link"));
        assert_false(has(names, ".") || has(names, "..") || has(names, "inner"));
        strv_free(names);

        /* Exactly max entries is fine, one more is -E2BIG, and nothing is handed out. */
        names = NULL;
        assert_int_equal(dir_list_names_at(s->fd, 5, &names, &n), 0);
        strv_free(names);
        names = NULL;
        assert_int_equal(dir_list_names_at(s->fd, 4, &names, &n), -E2BIG);
        assert_null(names);

        /* Many entries: the vector grows past its first allocation. */
        char name[16];
        for (int i = 0; i < 100; i++) {
                snprintf(name, sizeof(name), "f%03d", i);
                touch(s->fd, name);
        }
        assert_int_equal(dir_list_names_at(s->fd, SIZE_MAX, &names, &n), 0);
        assert_int_equal(n, 105);
        assert_true(has(names, "f000") && has(names, "f099"));
        strv_free(names);
}

static int count_one(int dir_fd, const char *name, void *userdata) {
        unsigned *count = userdata;
        (*count)++;
        return 0;
}

static int stop_at_b(int dir_fd, const char *name, void *userdata) {
        unsigned *count = userdata;
        (*count)++;
        return strcmp(name, "b") == 0 ? -ECANCELED : 0;
}

static int remove_one(int dir_fd, const char *name, void *userdata) {
        return unlinkat(dir_fd, name, 0) < 0 ? -errno : 0;
}

static void test_foreach(void **state) {
        struct scratch *s = *state;
        unsigned count = 0;

        touch(s->fd, "a");
        touch(s->fd, "b");
        touch(s->fd, "c");

        /* The caller's fd: neither closed nor moved, usable again at once. */
        assert_int_equal(dir_foreach_at(s->fd, count_one, &count), 0);
        assert_int_equal(count, 3);
        assert_true(fcntl(s->fd, F_GETFD) >= 0);
        assert_int_equal(lseek(s->fd, 0, SEEK_CUR), 0);
        count = 0;
        assert_int_equal(dir_foreach_at(s->fd, count_one, &count), 0);
        assert_int_equal(count, 3);

        /* The first negative return stops the walk and is returned. */
        count = 0;
        assert_int_equal(dir_foreach_at(s->fd, stop_at_b, &count), -ECANCELED);
        assert_true(count >= 1 && count <= 3);

        /* visit() may remove the entry it is given. */
        assert_int_equal(dir_foreach_at(s->fd, remove_one, NULL), 0);
        count = 0;
        assert_int_equal(dir_foreach_at(s->fd, count_one, &count), 0);
        assert_int_equal(count, 0);
}

static void test_not_a_directory(void **state) {
        struct scratch *s = *state;
        char **names = NULL;
        size_t n = 0;
        unsigned count = 0;

        touch(s->fd, "file");
        int fd = openat(s->fd, "file", O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(dir_foreach_at(fd, count_one, &count), -ENOTDIR);
        assert_int_equal(dir_list_names_at(fd, SIZE_MAX, &names, &n), -ENOTDIR);
        assert_null(names);
        close(fd);
        assert_int_equal(dir_foreach_at(-1, count_one, &count), -EBADF);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_list_empty, scratch_setup, scratch_teardown),
                cmocka_unit_test_setup_teardown(test_list, scratch_setup, scratch_teardown),
                cmocka_unit_test_setup_teardown(test_foreach, scratch_setup, scratch_teardown),
                cmocka_unit_test_setup_teardown(test_not_a_directory, scratch_setup, scratch_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
