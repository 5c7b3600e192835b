/* test-pam-programs.c: pam_vmuser.so driven by real PAM applications (pamtester, su -, runuser
 * -l, sudo -i) in a private mount namespace, where the service files generated in the build tree
 * are bound over /etc/pam.d. The session stack is the one pam-auth-update --enable vmuser gives
 * a Debian guest, so these tests also check that line (control flags included).
 *
 * In a sanitizer build the module needs the ASan runtime first in the process, so the
 * (uninstrumented) programs run with LD_PRELOAD=PAM_TEST_PRELOAD when meson sets it. */
#include <errno.h>
#include <fcntl.h>
#include <security/pam_appl.h>
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
#include "pam-test.h"
#include "test-util.h"

#define HOME "/run/vmhost/home/alice"

/* Runs a shell command line (stderr folded into stdout) with the sanitizer preload if any. */
static int run(const char *cmdline, char **ret_out) {
        const char *preload = getenv("PAM_TEST_PRELOAD");
        char *argv[] = {(char *) "/bin/sh", (char *) "-c", (char *) cmdline, NULL};
        int r;

        if (preload && *preload) {
                setenv("LD_PRELOAD", preload, 1);
                setenv("ASAN_OPTIONS", "detect_leaks=0:verify_asan_link_order=0", 1);
        }
        r = test_run(argv, NULL, ret_out);
        unsetenv("LD_PRELOAD");
        unsetenv("ASAN_OPTIONS");
        if (ret_out)
                fprintf(stderr, "$ %s\n%s[exit %d]\n", cmdline, *ret_out ? *ret_out : "", r);
        return r;
}

static void test_pamtester_open_close(void **state) {
        _cleanup_free_ char *out = NULL;
        char opts[256];

        assert_int_equal(run("pamtester -v vmuser-test alice open_session close_session 2>&1", &out), 0);
        assert_int_equal(pam_test_mount_count(HOME, NULL, 0), 0);
        assert_int_equal(pam_test_session_entries("alice"), 0);

        /* pamtester exits after open_session without a close: the home stays until the next
         * open or close of alice prunes its dead entry. */
        free(out);
        out = NULL;
        assert_int_equal(run("pamtester vmuser-test alice open_session 2>&1", &out), 0);
        assert_int_equal(pam_test_mount_count(HOME, opts, sizeof(opts)), 1);
        assert_non_null(strstr(opts, "nosuid"));
        assert_non_null(strstr(opts, "nodev"));
        assert_int_equal(pam_test_session_entries("alice"), 1);

        free(out);
        out = NULL;
        assert_int_equal(run("pamtester vmuser-test alice close_session 2>&1", &out), 0);
        assert_int_equal(pam_test_mount_count(HOME, NULL, 0), 0);
        assert_int_equal(pam_test_session_entries("alice"), 0);
}

static void test_pamtester_not_attached(void **state) {
        _cleanup_free_ char *out = NULL, *before = test_snapshot_dir("/run/vmuser"), *after = NULL;

        assert_int_equal(run("pamtester vmuser-test root open_session close_session 2>&1", &out), 0);
        free(out);
        out = NULL;
        assert_int_equal(run("pamtester vmuser-test nosuchuser open_session close_session 2>&1", &out), 0);
        after = test_snapshot_dir("/run/vmuser");
        assert_string_equal(before, after);
}

static void test_pamtester_mount_failure(void **state) {
        _cleanup_free_ char *out = NULL;

        pam_test_attach("carol", 60516, NULL, "{\"fstype\":\"virtiofs\",\"tag\":\"vmuser-no-such-tag\"}");
        assert_int_equal(run("pamtester vmuser-test carol open_session 2>&1", &out), 1);
        assert_non_null(strstr(
                out, "Cannot mount your home directory: Failed to mount virtiofs 'vmuser-no-such-tag'"));
        assert_int_equal(pam_test_session_entries("carol"), 0);

        free(out);
        out = NULL;
        assert_int_equal(run("pamtester vmuser-test-nofail carol open_session close_session 2>&1", &out), 0);
        assert_non_null(strstr(out, "Your home directory is not available"));
        assert_int_equal(pam_test_session_entries("carol"), 0);
}

/* su -, runuser -l and sudo -i: the home is there (and the user's) inside the session, and gone
 * once the program has closed it. */
static void run_switch_user(const char *cmdline) {
        _cleanup_free_ char *out = NULL;

        assert_int_equal(run(cmdline, &out), 0);
        if (!strstr(out, "60514 700\n") || !strstr(out, " " HOME " ") || !strstr(out, "nosuid,nodev"))
                fail_msg("'%s' did not see the mounted home:\n%s", cmdline, out);
        assert_int_equal(pam_test_mount_count(HOME, NULL, 0), 0);
        assert_int_equal(pam_test_session_entries("alice"), 0);
}

#define SHOW_HOME "stat -c \"%u %a\" ~; grep \" " HOME " \" /proc/self/mountinfo"

static void test_su_login(void **state) {
        run_switch_user("su - alice -s /bin/sh -c '" SHOW_HOME "' 2>&1");
}

static void test_runuser_login(void **state) {
        run_switch_user("runuser -l alice -s /bin/sh -c '" SHOW_HOME "' 2>&1");
}

static void test_sudo_login(void **state) {
        if (access("/usr/bin/sudo", X_OK) < 0)
                skip();
        run_switch_user("sudo -i -u alice /bin/sh -c '" SHOW_HOME "' 2>&1");
}

/* The sshd_config.d snippet's AuthorizedKeysCommand, run as its AuthorizedKeysCommandUser
 * (root), prints the keys of the user record (from the root-only privileged part) without
 * systemd-userdbd running. */
static void test_sshd_keys_command(void **state) {
        const char *key =
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB9x4b2mJt0Qz1l2tVvJYkq3a8cWmY9y8Zx0c7nq5eHh sam@host";
        _cleanup_free_ char *snippet = NULL, *out = NULL;
        char path[4096], user_json[512], cmd[1024];
        const char *line, *end;
        FILE *f;
        size_t n;

        /* The snippet as meson generates it (from sshd-vmuser.conf.in) and installs it. */
        snprintf(path, sizeof(path), "%s/pam_module/10-vmuser.conf", test_env_path("VMUSER_BUILD_ROOT"));
        f = fopen(path, "re");
        assert_non_null(f);
        snippet = calloc(1, 65536);
        assert_non_null(snippet);
        n = fread(snippet, 1, 65535, f);
        fclose(f);
        assert_true(n > 0);

        line = strstr(snippet, "\nAuthorizedKeysCommand ");
        assert_non_null(line);
        line += strlen("\nAuthorizedKeysCommand ");
        end = strchr(line, '\n');
        assert_non_null(end);
        assert_non_null(strstr(snippet, "\nAuthorizedKeysCommandUser root\n"));

        snprintf(user_json, sizeof(user_json), "\"privileged\":{\"sshAuthorizedKeys\":[\"%s\"]}", key);
        {
                /* pam_test_attach() takes no privileged part: talk to the agent here. */
                struct test_agent agent;
                _cleanup_free_ char *reply = NULL;
                char request[1024];

                snprintf(request, sizeof(request),
                         "{\"execute\":\"vmuser-attach\",\"arguments\":{\"replace\":true,\"user\":"
                         "{\"userName\":\"sam\",\"uid\":60530,%s}}}",
                         user_json);
                assert_int_equal(test_agent_start(&agent, NULL), 0);
                assert_int_equal(test_agent_call(&agent, request, &reply), 0);
                if (strncmp(reply, "{\"return\"", 9) != 0)
                        fail_msg("attaching sam failed: %s", reply);
                assert_int_equal(test_agent_stop(&agent), 0);
        }

        /* %u is the only token the snippet uses. */
        snprintf(cmd, sizeof(cmd), "%.*s", (int) (end - line), line);
        if (access(strndupa(cmd, strcspn(cmd, " ")), X_OK) < 0)
                skip(); /* userdbctl: Debian's systemd-userdbd package */
        char *u = strstr(cmd, "%u");
        assert_non_null(u);
        memmove(u + 3, u + 2, strlen(u + 2) + 1);
        memcpy(u, "sam", 3);
        assert_int_equal(run(cmd, &out), 0);
        assert_non_null(strstr(out, key));
}

static int group_setup(void **state) {
        pam_test_setup();
        if (mount(pam_test_confdir(), "/etc/pam.d", NULL, MS_BIND, NULL) < 0) {
                fprintf(stderr, "binding %s over /etc/pam.d: %s\n", pam_test_confdir(), strerror(errno));
                return -1;
        }
        return 0;
}

static int attach_alice(void **state) {
        pam_test_attach("alice", 60514, NULL, "{\"fstype\":\"tmpfs\",\"tag\":\"vmuser-alice\"}");
        return 0;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_pamtester_open_close, attach_alice),
                cmocka_unit_test_setup(test_pamtester_not_attached, attach_alice),
                cmocka_unit_test(test_pamtester_mount_failure),
                cmocka_unit_test_setup(test_su_login, attach_alice),
                cmocka_unit_test_setup(test_runuser_login, attach_alice),
                cmocka_unit_test_setup(test_sudo_login, attach_alice),
                cmocka_unit_test(test_sshd_keys_command),
        };

        test_enter_private_run();
        return cmocka_run_group_tests(tests, group_setup, pam_test_group_teardown);
}
