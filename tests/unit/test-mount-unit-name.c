/* test-mount-unit-name.c: mount_unit_name() (mount-home.c) names a mount point's unit exactly as
 * systemd does. Every path is checked against the real `systemd-escape --path --suffix=mount`,
 * so a rule that drifts from systemd's (the leading '.' of a later component, ':' and other
 * bytes systemd keeps) fails here, not when the agent asks systemd to stop a unit that does not
 * exist. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "macro.h"
#include "mount-home.h"
#include "test-util.h"

static void check_against_systemd(const char *path) {
        char *argv[] = {(char *) "systemd-escape", (char *) "--path", (char *) "--suffix=mount", (char *) path, NULL};
        _cleanup_free_ char *out = NULL;
        char ours[512];
        size_t n;

        assert_int_equal(test_run(argv, NULL, &out), 0);
        assert_non_null(out);
        n = strlen(out);
        if (n > 0 && out[n - 1] == '\n')
                out[n - 1] = '\0';
        assert_int_equal(mount_unit_name(path, ours, sizeof(ours)), 0);
        if (!streq(ours, out))
                fail_msg("'%s': ours '%s', systemd's '%s'", path, ours, out);
}

static void test_same_as_systemd_escape(void **state) {
        static const char *const paths[] = {
                "/run/vmhost/home/alice",
                "/run/vmhost/home/a-b",
                "/run/vmhost/home/a.b",
                "/run/vmhost/home/.alice",
                "/.hidden/home",
                "/home/x_y/.config",
                "/srv/a:b",
                "/srv/a b",
                "/srv/a\\b",
                "/srv/a..b",
                "/srv/a~b+c@d",
                "/srv/\xc3\xa9t\xc3\xa9",
                "/srv/...",
                "/srv/-",
                "/a",
                "/",
        };

        for (size_t i = 0; i < ELEMENTSOF(paths); i++)
                check_against_systemd(paths[i]);
}

static void test_refused(void **state) {
        char buf[512], small[8];
        char longpath[300];

        assert_int_equal(mount_unit_name("relative/path", buf, sizeof(buf)), -EINVAL);
        assert_int_equal(mount_unit_name("/a//b", buf, sizeof(buf)), -EINVAL);
        assert_int_equal(mount_unit_name("/a/b/", buf, sizeof(buf)), -EINVAL);
        assert_int_equal(mount_unit_name("/run/vmhost/home/alice", small, sizeof(small)), -ENAMETOOLONG);
        /* Past systemd's 255 characters systemd hashes the name; we do not guess it. */
        longpath[0] = '/';
        memset(longpath + 1, 'a', sizeof(longpath) - 2);
        longpath[sizeof(longpath) - 1] = '\0';
        assert_int_equal(mount_unit_name(longpath, buf, sizeof(buf)), -ENAMETOOLONG);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_same_as_systemd_escape),
                cmocka_unit_test(test_refused),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
