/* test-socket-util.c: connecting to a UNIX socket by path with a deadline
 * (libvmuser/socket-util.c): short and over-long paths, refused and missing sockets, and a
 * listener whose backlog is full. */
#include <setjmp.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "socket-util.h"
#include "time-util.h"

static char scratch[64];

static int setup(void **state) {
        snprintf(scratch, sizeof(scratch), "/tmp/test-socket-util.XXXXXX");
        assert_non_null(mkdtemp(scratch));
        return 0;
}

static int teardown(void **state) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", scratch);
        return system(cmd) == 0 ? 0 : -1;
}

static int client(void) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        assert_true(fd >= 0);
        return fd;
}

static int listener(const char *path, int backlog) {
        struct sockaddr_un sa;
        int dir_fd = -1, fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_int_equal(sockaddr_un_from_path(path, &sa, &dir_fd), 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(fd, backlog), 0);
        if (dir_fd >= 0)
                close(dir_fd);
        return fd;
}

static int connect_path(const char *path, int timeout_ms, int *ret_fd) {
        struct sockaddr_un sa;
        int dir_fd = -1, fd, r;

        r = sockaddr_un_from_path(path, &sa, &dir_fd);
        if (r < 0)
                return r;
        fd = client();
        r = connect_unix_deadline(fd, &sa, now_ms() + timeout_ms);
        if (dir_fd >= 0)
                close(dir_fd);
        if (r < 0 || !ret_fd)
                close(fd);
        else
                *ret_fd = fd;
        return r;
}

static void test_short_path(void **state) {
        char path[PATH_MAX];
        struct sockaddr_un sa;
        int dir_fd = 7, fd = -1;

        snprintf(path, sizeof(path), "%s/s", scratch);
        assert_int_equal(sockaddr_un_from_path(path, &sa, &dir_fd), 0);
        assert_int_equal(dir_fd, -1);
        assert_string_equal(sa.sun_path, path);

        int l = listener(path, 4);
        assert_int_equal(connect_path(path, 1000, &fd), 0);
        close(fd);
        close(l);
        /* The file is there, nobody listens; and no file at all. */
        assert_int_equal(connect_path(path, 1000, NULL), -ECONNREFUSED);
        snprintf(path, sizeof(path), "%s/missing", scratch);
        assert_int_equal(connect_path(path, 1000, NULL), -ENOENT);
        assert_int_equal(sockaddr_un_from_path("", &sa, &dir_fd), -EINVAL);
}

static void test_long_path(void **state) {
        char dir[PATH_MAX], path[PATH_MAX], name[NAME_MAX + 2];
        struct sockaddr_un sa;
        int dir_fd = -1, fd = -1;

        /* A directory path longer than sun_path holds. */
        snprintf(dir, sizeof(dir), "%s/", scratch);
        while (strlen(dir) < sizeof(sa.sun_path) + 20)
                strcat(dir, "dddddddddd");
        assert_int_equal(mkdir(dir, 0700), 0);
        snprintf(path, sizeof(path), "%s/sock", dir);
        assert_int_equal(sockaddr_un_from_path(path, &sa, &dir_fd), 0);
        assert_true(dir_fd >= 0);
        assert_memory_equal(sa.sun_path, "/proc/self/fd/", 14);
        close(dir_fd);

        int l = listener(path, 4);
        assert_int_equal(connect_path(path, 1000, &fd), 0);
        close(fd);
        close(l);

        /* A name no directory entry can have; a directory that is not there. */
        memset(name, 'n', NAME_MAX + 1);
        name[NAME_MAX + 1] = '\0';
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        assert_int_equal(sockaddr_un_from_path(path, &sa, &dir_fd), -ENAMETOOLONG);
        snprintf(path, sizeof(path), "%s/absent/sock", dir);
        assert_int_equal(sockaddr_un_from_path(path, &sa, &dir_fd), -ENOENT);
}

static void test_full_backlog(void **state) {
        char path[PATH_MAX];
        int fds[16], n = 0, r = 0;

        snprintf(path, sizeof(path), "%s/busy", scratch);
        int l = listener(path, 0);
        /* Nobody accepts: after a connection or two the backlog is full, and the next connect
         * waits out its deadline instead of failing with EAGAIN. */
        while (n < (int) (sizeof(fds) / sizeof(fds[0]))) {
                r = connect_path(path, 20, &fds[n]);
                if (r < 0)
                        break;
                n++;
        }
        assert_int_equal(r, -ETIMEDOUT);
        assert_true(n >= 1);
        for (int i = 0; i < n; i++)
                close(fds[i]);
        close(l);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_short_path, setup, teardown),
                cmocka_unit_test_setup_teardown(test_long_path, setup, teardown),
                cmocka_unit_test_setup_teardown(test_full_backlog, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
