/* test-mount-home.c: libvmuser's mount-home.c on its own, in a private mount namespace: what
 * mount_home_check() reports, that unmount_home() never touches a mount it did not make and
 * clears stacked copies, and that bind sources and mount points are never reached through a
 * symlink. The PAM-level behaviour is in test-pam-session.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "macro.h"
#include "mount-home.h"
#include "pam-test.h"
#include "test-util.h"

static struct home_spec tmpfs_spec(const char *tag, const char *options) {
        struct home_spec s = {.fstype = HOME_FSTYPE_TMPFS};

        snprintf(s.tag, sizeof(s.tag), "%s", tag);
        snprintf(s.options, sizeof(s.options), "%s", options);
        return s;
}

static void test_check_mount_unmount(void **state) {
        const char *home = "/run/vmhost/home/alice";
        struct home_spec spec = tmpfs_spec("vmuser-alice", "mode=0750,noexec");
        struct verr e = {};
        char opts[256];
        struct stat st;
        uid_t root_uid = 12345;

        assert_int_equal(mount_home_check(home, &spec, &e), 0);
        assert_int_equal(unmount_home(home, &spec, &e), UNMOUNT_HOME_NOT_MOUNTED);
        assert_int_equal(access("/run/vmhost", F_OK), -1); /* neither creates anything */

        assert_int_equal(mount_home(home, &spec, 60514, 60514, &root_uid, &e), MOUNT_HOME_MOUNTED);
        assert_int_equal(root_uid, 60514);
        assert_int_equal(stat(home, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0750);
        assert_int_equal(pam_test_mount_count(home, opts, sizeof(opts)), 1);
        assert_non_null(strstr(opts, "nosuid,nodev,noexec"));
        assert_int_equal(mount_home_check(home, &spec, &e), 1);
        assert_int_equal(mount_home(home, &spec, 60514, 60514, &root_uid, &e), MOUNT_HOME_ALREADY);
        assert_int_equal(pam_test_mount_count(home, NULL, 0), 1);

        /* Another tag is another home. */
        struct home_spec other = tmpfs_spec("vmuser-other", "");
        memset(&e, 0, sizeof(e));
        assert_int_equal(mount_home_check(home, &other, &e), -EEXIST);
        assert_non_null(strstr(e.text, "already has a mount (tmpfs 'vmuser-alice')"));
        memset(&e, 0, sizeof(e));
        assert_int_equal(mount_home(home, &other, 60514, 60514, NULL, &e), -EEXIST);
        assert_int_equal(unmount_home(home, &other, &e), -EEXIST);
        assert_int_equal(pam_test_mount_count(home, NULL, 0), 1);

        assert_int_equal(unmount_home(home, &spec, &e), UNMOUNT_HOME_UNMOUNTED);
        assert_int_equal(pam_test_mount_count(home, NULL, 0), 0);
        assert_int_equal(mount_home_check(home, &spec, &e), 0);
}

/* Copies stacked by hand are all removed; what they covered is left alone. */
static void test_unmount_stacked(void **state) {
        const char *home = "/run/vmhost/home/bob";
        struct home_spec spec = tmpfs_spec("vmuser-bob", "");
        struct verr e = {};

        assert_int_equal(mkdir("/run/vmhost/home/bob", 0755), 0);
        assert_int_equal(mount("admin", home, "tmpfs", 0, NULL), 0);
        assert_int_equal(mount_home(home, &spec, 60515, 60515, NULL, &e), -EEXIST);
        assert_int_equal(mount("vmuser-bob", home, "tmpfs", 0, NULL), 0);
        assert_int_equal(mount("vmuser-bob", home, "tmpfs", 0, NULL), 0);
        assert_int_equal(pam_test_mount_count(home, NULL, 0), 3);

        assert_int_equal(unmount_home(home, &spec, &e), UNMOUNT_HOME_UNMOUNTED);
        assert_int_equal(pam_test_mount_count(home, NULL, 0), 1);
        assert_int_equal(mount_home_check(home, &spec, &e), -EEXIST);
        assert_int_equal(umount(home), 0);
}

static void test_bind_source_symlink_refused(void **state) {
        struct home_spec spec = {.fstype = HOME_FSTYPE_BIND};
        struct verr e = {};

        assert_int_equal(mkdir(PAM_TEST_DIR "/real", 0755), 0);
        assert_int_equal(symlink(PAM_TEST_DIR "/real", PAM_TEST_DIR "/link"), 0);
        assert_int_equal(mkdir(PAM_TEST_DIR "/real/sub", 0755), 0);

        snprintf(spec.tag, sizeof(spec.tag), PAM_TEST_DIR "/link/sub");
        assert_int_equal(mount_home("/run/vmhost/home/carol", &spec, 60516, 60516, NULL, &e), -ELOOP);
        assert_non_null(strstr(e.text, "Cannot open bind source '" PAM_TEST_DIR "/link/sub'"));
        assert_int_equal(pam_test_mount_count("/run/vmhost/home/carol", NULL, 0), 0);

        snprintf(spec.tag, sizeof(spec.tag), PAM_TEST_DIR "/real/sub");
        memset(&e, 0, sizeof(e));
        assert_int_equal(mount_home("/run/vmhost/home/carol", &spec, 60516, 60516, NULL, &e),
                         MOUNT_HOME_MOUNTED);
        assert_int_equal(mount_home_check("/run/vmhost/home/carol", &spec, &e), 1);
        assert_int_equal(unmount_home("/run/vmhost/home/carol", &spec, &e), UNMOUNT_HOME_UNMOUNTED);
}

static void test_bad_paths(void **state) {
        struct home_spec spec = tmpfs_spec("vmuser-dave", "");
        struct verr e = {};

        assert_int_equal(mount_home("relative/path", &spec, 1, 1, NULL, &e), -EINVAL);
        memset(&e, 0, sizeof(e));
        assert_int_equal(mount_home("/toplevel", &spec, 1, 1, NULL, &e), -EINVAL);
        memset(&e, 0, sizeof(e));
        assert_int_equal(mount_home("/run/vmhost/../etc/x", &spec, 1, 1, NULL, &e), -EINVAL);

        /* A file where a directory should be. */
        int fd = open("/run/vmhost/file", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        close(fd);
        memset(&e, 0, sizeof(e));
        assert_int_equal(mount_home("/run/vmhost/file/dave", &spec, 1, 1, NULL, &e), -ENOTDIR);
        memset(&e, 0, sizeof(e));
        assert_int_equal(mount_home("/run/vmhost/file", &spec, 1, 1, NULL, &e), -ENOTDIR);
        assert_non_null(strstr(e.text, "mount point '/run/vmhost/file' is not a directory"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_check_mount_unmount),
                cmocka_unit_test(test_unmount_stacked),
                cmocka_unit_test(test_bind_source_symlink_refused),
                cmocka_unit_test(test_bad_paths),
        };

        test_enter_private_run();
        return cmocka_run_group_tests(tests, pam_test_group_setup, pam_test_group_teardown);
}
