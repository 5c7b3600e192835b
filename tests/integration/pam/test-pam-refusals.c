/* test-pam-refusals.c: pam_vmuser.so through a real PAM stack (pam_start_confdir() with the
 * service files generated in the build tree), in a private mount namespace with a fresh /run:
 * what it refuses and how it copes with a hostile or broken state.
 *
 * Each test attaches its own user with the real vmuser-agent and checks that a failing mount
 * (and nofail), symlinks and untrusted parents on the way to the mount point, an invalid state
 * file, untrusted /run/vmuser directories, a busy home (detached), a session running as the user
 * and a held session lock give the right PAM code, messages and syslog lines, and leave no mount
 * behind. The sessions that work are in test-pam-session.c. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <security/pam_appl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "macro.h"
#include "pam-test.h"
#include "test-util.h"

#define SERVICE "vmuser-test"
#define SERVICE_NOFAIL "vmuser-test-nofail"
#define SERVICE_TIMEOUT "vmuser-test-timeout"
#define HOME_ROOT "/run/vmhost/home/"

/* A mount that fails fails the session, with the reason; nofail lets it go on without. */
static void test_mount_failure(void **state) {
        const char *home = HOME_ROOT "carol";
        char msgs[1024];
        struct pam_test_holder h;

        pam_test_attach("carol", 60516, NULL, "{\"fstype\":\"virtiofs\",\"tag\":\"vmuser-no-such-tag\"}");
        pam_test_log_mark();

        assert_int_equal(pam_test_holder_open(&h, SERVICE, "carol", msgs, sizeof(msgs)), PAM_SESSION_ERR);
        if (!strstr(msgs,
                    "Cannot mount your home directory: Failed to mount virtiofs 'vmuser-no-such-tag' on "
                    "'/run/vmhost/home/carol': "))
                fail_msg("unexpected message: %s", msgs);
        assert_logged("Cannot provide the home of carol: Failed to mount virtiofs "
                      "'vmuser-no-such-tag' on '/run/vmhost/home/carol'");
        assert_int_equal(pam_test_session_entries("carol"), 0);
        assert_int_equal(pam_test_mount_count(home, NULL, 0), 0);

        pam_test_log_mark();
        assert_int_equal(pam_test_holder_open(&h, SERVICE_NOFAIL, "carol", msgs, sizeof(msgs)), PAM_SUCCESS);
        assert_non_null(strstr(msgs, "Your home directory is not available: Failed to mount virtiofs"));
        assert_logged("(nofail: the session goes on without it)");
        assert_int_equal(pam_test_session_entries("carol"), 1);
        assert_int_equal(pam_test_holder_close(&h), PAM_SUCCESS);
        assert_int_equal(pam_test_session_entries("carol"), 0);
}

/* No symlink is followed on the way to the mount point, and no parent owned by someone else is
 * accepted. */
static void test_unsafe_mount_point_refused(void **state) {
        char msgs[1024];
        struct pam_test_holder h;
        struct stat st;

        assert_int_equal(mkdir("/run/vmhost", 0755) < 0 && errno != EEXIST, 0);
        assert_int_equal(mkdir(PAM_TEST_DIR "/elsewhere", 0755), 0);
        assert_int_equal(symlink(PAM_TEST_DIR "/elsewhere", "/run/vmhost/links"), 0);
        pam_test_attach("frank", 60519, "/run/vmhost/links/frank",
                        "{\"fstype\":\"tmpfs\",\"tag\":\"vmuser-frank\"}");

        assert_int_equal(pam_test_holder_open(&h, SERVICE, "frank", msgs, sizeof(msgs)), PAM_SESSION_ERR);
        assert_non_null(strstr(msgs, "'/run/vmhost/links' is a symbolic link"));
        assert_int_equal(lstat(PAM_TEST_DIR "/elsewhere/frank", &st), -1);
        assert_int_equal(pam_test_mount_count("/run/vmhost/links/frank", NULL, 0), 0);
        assert_int_equal(pam_test_mount_count(PAM_TEST_DIR "/elsewhere/frank", NULL, 0), 0);

        /* A parent the user could write to. */
        assert_int_equal(mkdir("/run/vmhost/mia-owned", 0755), 0);
        assert_int_equal(chown("/run/vmhost/mia-owned", 60526, 60526), 0);
        pam_test_attach("mia", 60526, "/run/vmhost/mia-owned/mia",
                        "{\"fstype\":\"tmpfs\",\"tag\":\"vmuser-mia\"}");
        assert_int_equal(pam_test_holder_open(&h, SERVICE, "mia", msgs, sizeof(msgs)), PAM_SESSION_ERR);
        assert_non_null(strstr(msgs, "'/run/vmhost/mia-owned' belongs to UID 60526, not root"));
        assert_int_equal(lstat("/run/vmhost/mia-owned/mia", &st), -1);

        /* The mount point itself a symlink. */
        assert_int_equal(mkdir("/run/vmhost/home", 0755) < 0 && errno != EEXIST, 0);
        assert_int_equal(symlink(PAM_TEST_DIR "/elsewhere", "/run/vmhost/home/nina"), 0);
        pam_test_attach("nina", 60527, NULL, "{\"fstype\":\"tmpfs\",\"tag\":\"vmuser-nina\"}");
        assert_int_equal(pam_test_holder_open(&h, SERVICE, "nina", msgs, sizeof(msgs)), PAM_SESSION_ERR);
        assert_non_null(strstr(msgs, "mount point '/run/vmhost/home/nina' is a symbolic link"));
        assert_int_equal(pam_test_mount_count(PAM_TEST_DIR "/elsewhere", NULL, 0), 0);
}

/* A state file that does not validate fails the session (nothing is mounted on a guess). */
static void test_invalid_state_fails(void **state) {
        char msgs[1024];
        int fd;

        pam_test_attach("olga", 60528, NULL, "{\"fstype\":\"tmpfs\",\"tag\":\"vmuser-olga\"}");
        fd = open("/run/vmuser/users/olga.json", O_WRONLY | O_TRUNC | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "{\"userName\":\"olga\"", 19), 19);
        close(fd);

        assert_int_equal(pam_test_run(SERVICE, "olga", true, false, msgs, sizeof(msgs)), PAM_SESSION_ERR);
        assert_non_null(strstr(msgs, "cannot read '/run/vmuser/users/olga.json': not a valid attach state"));
        assert_int_equal(pam_test_session_entries("olga"), -1);
        assert_int_equal(pam_test_mount_count(HOME_ROOT "olga", NULL, 0), 0);
        assert_int_equal(pam_test_run(SERVICE_NOFAIL, "olga", true, false, msgs, sizeof(msgs)), PAM_SUCCESS);
        assert_int_equal(pam_test_session_entries("olga"), -1);
}

/* The last close of a busy home detaches it lazily, logs it, and returns at once. */
static void test_busy_home_detached(void **state) {
        const char *home = HOME_ROOT "judy";
        struct pam_test_holder h;
        int fd;

        pam_test_attach("judy", 60523, NULL, "{\"fstype\":\"tmpfs\",\"tag\":\"vmuser-judy\"}");
        assert_int_equal(pam_test_holder_open(&h, SERVICE, "judy", NULL, 0), PAM_SUCCESS);
        fd = open(HOME_ROOT "judy/busy", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(fd >= 0);

        pam_test_log_mark();
        assert_int_equal(pam_test_holder_close(&h), PAM_SUCCESS);
        assert_int_equal(pam_test_mount_count(home, NULL, 0), 0);
        assert_logged("was busy; detached it lazily");
        /* The open file still works on the detached tmpfs. */
        assert_int_equal(write(fd, "x", 1), 1);
        close(fd);
}

/* open_session or close_session running as the user (privileges dropped) changes nothing. */
static void test_as_user_skipped(void **state) {
        _cleanup_free_ char *before = NULL, *after = NULL;
        struct pam_test_holder h;
        pid_t pid;
        int status;

        pam_test_attach("kim", 60524, NULL, "{\"fstype\":\"tmpfs\",\"tag\":\"vmuser-kim\"}");
        assert_int_equal(pam_test_holder_open(&h, SERVICE, "kim", NULL, 0), PAM_SUCCESS);
        before = pam_test_snapshot_state();
        pam_test_log_mark();

        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                if (setgroups(0, NULL) < 0 || setresgid(60524, 60524, 60524) < 0 ||
                    setresuid(60524, 60524, 60524) < 0)
                        _exit(20);
                /* Through the stack: the module's PAM_IGNORE leaves the result to pam_permit. */
                int r = pam_test_run(SERVICE, "kim", false, true, NULL, 0);
                _exit(r != PAM_SUCCESS ? r : pam_test_run(SERVICE, "kim", true, false, NULL, 0));
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), PAM_SUCCESS);

        after = pam_test_snapshot_state();
        assert_string_equal(before, after);
        assert_logged("Running as UID 60524, not root: leaving the session state and home of kim alone.");
        assert_logged("Running as UID 60524, not root: cannot mount the home of kim or track its session; "
                      "skipping.");

        assert_int_equal(pam_test_holder_close(&h), PAM_SUCCESS);
        assert_int_equal(pam_test_mount_count(HOME_ROOT "kim", NULL, 0), 0);
}

/* A session lock held too long fails the open after lock_timeout, with the reason. */
static void test_lock_timeout(void **state) {
        _cleanup_close_ int fd = -1;
        struct pam_test_holder h;
        struct timespec t0, t1;
        char msgs[1024];

        pam_test_attach("leo", 60525, NULL, "{\"fstype\":\"tmpfs\",\"tag\":\"vmuser-leo\"}");
        assert_int_equal(pam_test_holder_open(&h, SERVICE, "leo", NULL, 0), PAM_SUCCESS);
        fd = open("/run/vmuser/sessions/leo/lock", O_RDWR | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(flock(fd, LOCK_EX), 0);

        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(pam_test_run(SERVICE_TIMEOUT, "leo", true, false, msgs, sizeof(msgs)),
                         PAM_SESSION_ERR);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_non_null(strstr(msgs, "cannot lock '/run/vmuser/sessions/leo': another login or logout"));
        assert_true(t1.tv_sec - t0.tv_sec < 4);

        closep(&fd);
        assert_int_equal(pam_test_holder_close(&h), PAM_SUCCESS);
        assert_int_equal(pam_test_mount_count(HOME_ROOT "leo", NULL, 0), 0);
}

/* The attach state says what root mounts where: pam_vmuser refuses it from a /run/vmuser or
 * /run/vmuser/users that is not root's or that others can write to, and says why. A user who is
 * not attached is not refused for it (root on the console must still get in). */
static void test_untrusted_state_dirs_refused(void **state) {
        static const struct {
                const char *path;
                mode_t mode;
                uid_t uid;
                const char *why;
        } cases[] = {
                {"/run/vmuser", 0775, 0, "'/run/vmuser' belongs to UID 0 with mode 0775"},
                {"/run/vmuser", 0757, 0, "'/run/vmuser' belongs to UID 0 with mode 0757"},
                {"/run/vmuser", 0755, 60529, "'/run/vmuser' belongs to UID 60529 with mode 0755"},
                {"/run/vmuser/users", 0775, 0, "'/run/vmuser/users' belongs to UID 0 with mode 0775"},
                {"/run/vmuser/users", 0755, 60529, "'/run/vmuser/users' belongs to UID 60529 with mode 0755"},
        };
        char msgs[1024];

        pam_test_attach("pia", 60529, NULL, "{\"fstype\":\"tmpfs\",\"tag\":\"vmuser-pia\"}");
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct stat st;

                assert_int_equal(stat(cases[i].path, &st), 0);
                assert_int_equal(chmod(cases[i].path, cases[i].mode), 0);
                assert_int_equal(chown(cases[i].path, cases[i].uid, 0), 0);
                pam_test_log_mark();

                assert_int_equal(pam_test_run(SERVICE, "pia", true, false, msgs, sizeof(msgs)), PAM_SESSION_ERR);
                if (!strstr(msgs, cases[i].why) || !strstr(msgs, "refusing to trust it"))
                        fail_msg("%s: unexpected message: %s", cases[i].path, msgs);
                assert_logged(cases[i].why);
                assert_int_equal(pam_test_mount_count(HOME_ROOT "pia", NULL, 0), 0);
                assert_true(pam_test_session_entries("pia") <= 0);
                /* Not attached: ignored as ever. */
                assert_int_equal(pam_test_module_call("nobody-attached", true, "", NULL, 0), PAM_IGNORE);

                assert_int_equal(chown(cases[i].path, st.st_uid, st.st_gid), 0);
                assert_int_equal(chmod(cases[i].path, st.st_mode & 07777), 0);
        }
        /* Put right, the same login works. */
        assert_int_equal(pam_test_run(SERVICE, "pia", true, true, NULL, 0), PAM_SUCCESS);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_mount_failure),
                cmocka_unit_test(test_unsafe_mount_point_refused),
                cmocka_unit_test(test_invalid_state_fails),
                cmocka_unit_test(test_busy_home_detached),
                cmocka_unit_test(test_as_user_skipped),
                cmocka_unit_test(test_lock_timeout),
                cmocka_unit_test(test_untrusted_state_dirs_refused),
        };

        test_enter_private_run();
        return cmocka_run_group_tests(tests, pam_test_group_setup, pam_test_group_teardown);
}
