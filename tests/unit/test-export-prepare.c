/* test-export-prepare.c: what both VM backends check before plugging a home in
 * (libvmuser/export-prepare.c), in a scratch directory: a leftover export of the user in each of
 * its forms, the file server choice and $VMUSER_FILE_SERVER. The staging mount itself is
 * exercised by the export and libvirt suites (it needs a real idmapped mount). */
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

#include "export-prepare.h"
#include "virtiofsd.h"

struct scratch {
        char path[64];
        int homes_fd;
        struct export_state_paths paths;
};

static int setup(void **state) {
        struct scratch *s = calloc(1, sizeof(*s));
        assert_non_null(s);
        snprintf(s->path, sizeof(s->path), "/tmp/test-export-prepare.XXXXXX");
        assert_non_null(mkdtemp(s->path));
        assert_int_equal(export_state_paths_make(s->path, "alice", &s->paths), 0);
        assert_int_equal(mkdir(s->paths.homes, 0711), 0);
        s->homes_fd = open(s->paths.homes, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(s->homes_fd >= 0);
        *state = s;
        return 0;
}

static int teardown(void **state) {
        struct scratch *s = *state;
        char cmd[128];
        close(s->homes_fd);
        snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", s->path);
        assert_int_equal(system(cmd), 0);
        free(s);
        return 0;
}

/* homes/alice with a state file in phase (NULL: none; "garbage": not JSON). */
static void make_user_dir(struct scratch *s, const char *phase) {
        int fd;

        assert_int_equal(export_state_ensure_dir_at(s->homes_fd, "alice", 0711, &fd), 0);
        if (phase && strcmp(phase, "garbage") == 0) {
                int f = openat(fd, HOME_EXPORT_STATE_FILE, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
                assert_true(f >= 0);
                assert_int_equal(write(f, "{no", 3), 3);
                close(f);
        } else if (phase) {
                struct home_export_info i = {
                        .user = "alice", .tag = "vmuser-alice", .device_id = "ua-vmuser-fs-alice",
                        .source = "/home/alice", .host_uid = 1000, .host_gid = 1000,
                        .guest_uid = 60001, .guest_gid = 60001, .server = HOME_EXPORT_SERVER_ROOT,
                };
                assert_int_equal(export_state_write(fd, &i, phase, EXPORT_STATE_NO_VIRTIOFSD), 0);
        }
        close(fd);
}

static const struct home_export_info defaults = {
        .virtiofsd_path = "(libvirt)",
        .server = HOME_EXPORT_SERVER_ROOT,
};

static void test_nothing_left(void **state) {
        struct scratch *s = *state;
        struct verr e = {};

        assert_int_equal(export_leftover_check(s->homes_fd, "alice", &s->paths, &defaults, "domain", &e), 0);
}

static void test_exported(void **state) {
        struct scratch *s = *state;
        struct verr e = {};

        make_user_dir(s, "exported");
        assert_int_equal(export_leftover_check(s->homes_fd, "alice", &s->paths, &defaults, "domain", &e), -EEXIST);
        assert_string_equal(e.text, "the home of alice is already exported to this domain (tag vmuser-alice)");
        assert_int_equal(faccessat(s->homes_fd, "alice/" HOME_EXPORT_STATE_FILE, F_OK, 0), 0);
}

static void test_unfinished(void **state) {
        struct scratch *s = *state;
        struct verr e = {};

        make_user_dir(s, "unexporting");
        assert_int_equal(export_leftover_check(s->homes_fd, "alice", &s->paths, &defaults, "VM", &e), -EEXIST);
        assert_string_equal(e.text, "an earlier attach or detach of alice did not finish (phase unexporting); "
                                    "detach alice to clean up");
        assert_int_equal(faccessat(s->homes_fd, "alice/" HOME_EXPORT_STATE_FILE, F_OK, 0), 0);
}

static void test_unreadable_state(void **state) {
        struct scratch *s = *state;
        struct verr e = {};

        make_user_dir(s, "garbage");
        assert_int_equal(export_leftover_check(s->homes_fd, "alice", &s->paths, &defaults, "VM", &e), -EEXIST);
        assert_non_null(strstr(e.text, "(phase unknown)"));
        assert_int_equal(faccessat(s->homes_fd, "alice", F_OK, 0), 0);
}

/* No state file: nothing ever reached the VM; the directory (and an empty mnt/home) goes. */
static void test_no_state_tidied(void **state) {
        struct scratch *s = *state;
        struct verr e = {};
        int fd, mnt;

        make_user_dir(s, NULL);
        fd = openat(s->homes_fd, "alice", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(export_state_ensure_dir_at(fd, EXPORT_STATE_MNT_SUBDIR, 0700, &mnt), 0);
        assert_int_equal(mkdirat(mnt, EXPORT_STATE_STAGING_NAME, 0700), 0);
        close(mnt);
        close(fd);
        assert_int_equal(export_leftover_check(s->homes_fd, "alice", &s->paths, NULL, "VM", &e), 0);
        assert_int_equal(faccessat(s->homes_fd, "alice", F_OK, 0), -1);
        assert_int_equal(errno, ENOENT);
}

static void test_server_choice(void **state) {
        struct verr e = {};
        enum home_export_server r = HOME_EXPORT_SERVER_AUTO;
        int userns = virtiofsd_userns_available();

        assert_int_equal(export_server_choose(HOME_EXPORT_SERVER_ROOT, &r, &e), 0);
        assert_int_equal(r, HOME_EXPORT_SERVER_ROOT);
        assert_int_equal(export_server_choose(HOME_EXPORT_SERVER_AUTO, &r, &e), 0);
        assert_int_equal(r, userns > 0 ? HOME_EXPORT_SERVER_UNPRIVILEGED : HOME_EXPORT_SERVER_ROOT);
        assert_int_equal(export_server_choose(HOME_EXPORT_SERVER_UNPRIVILEGED, &r, &e), userns > 0 ? 0 : -EOPNOTSUPP);

        unsetenv("VMUSER_FILE_SERVER");
        assert_int_equal(export_server_requested(&r, &e), 0);
        assert_int_equal(r, HOME_EXPORT_SERVER_AUTO);
        setenv("VMUSER_FILE_SERVER", "", 1);
        assert_int_equal(export_server_requested(&r, &e), 0);
        assert_int_equal(r, HOME_EXPORT_SERVER_AUTO);
        setenv("VMUSER_FILE_SERVER", "root", 1);
        assert_int_equal(export_server_requested(&r, &e), 0);
        assert_int_equal(r, HOME_EXPORT_SERVER_ROOT);
        setenv("VMUSER_FILE_SERVER", "unprivileged", 1);
        assert_int_equal(export_server_requested(&r, &e), 0);
        assert_int_equal(r, HOME_EXPORT_SERVER_UNPRIVILEGED);
        setenv("VMUSER_FILE_SERVER", "Root", 1);
        assert_int_equal(export_server_requested(&r, &e), -EINVAL);
        assert_string_equal(e.text, "$VMUSER_FILE_SERVER is 'Root', not auto, unprivileged or root");
        unsetenv("VMUSER_FILE_SERVER");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_nothing_left, setup, teardown),
                cmocka_unit_test_setup_teardown(test_exported, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unfinished, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unreadable_state, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_state_tidied, setup, teardown),
                cmocka_unit_test(test_server_choice),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
