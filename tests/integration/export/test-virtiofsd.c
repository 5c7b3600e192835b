/* test-virtiofsd.c: finding, starting and stopping virtiofsd (libvmuser/virtiofsd.c).
 *
 * Detection against the real C virtiofsd of this machine and against stand-in scripts that answer
 * --help like the Rust one (with and without ID translation) or like something else; the command
 * lines of both flavours; and the supervised daemon with the real virtiofsd: it listens, outlives
 * its starter, ignores nothing it should not (a caller ignoring SIGTERM), stops, and a failing
 * start reports virtiofsd's own words. The systemd path needs systemd as PID 1, which this machine
 * does not have: it is not exercised here. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "export-test.h"
#include "macro.h"
#include "test-util.h"
#include "virtiofsd.h"

#define C_VIRTIOFSD "/usr/lib/qemu/virtiofsd"
#define DIR "/run/vmuser-test-vfsd"

static bool have_c_virtiofsd(void) {
        return access(C_VIRTIOFSD, X_OK) == 0;
}

static void write_script(const char *path, const char *body) {
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        fprintf(f, "#!/bin/sh\n%s", body);
        fclose(f);
        assert_int_equal(chmod(path, 0755), 0);
}

static int teardown(void **state) {
        /* After a failed test: no virtiofsd of ours may stay behind. */
        test_kill_processes_with_arg("--socket-path=" DIR "/state/virtiofsd.sock", SIGKILL);
        return 0;
}

static int setup(void **state) {
        assert_int_equal(system("rm -rf " DIR " && mkdir -p " DIR "/state " DIR "/share && chmod 700 " DIR "/state"), 0);
        return 0;
}

static void test_detect_c(void **state) {
        struct virtiofsd_binary b;
        struct verr e = {};

        if (!have_c_virtiofsd())
                skip();
        assert_int_equal(virtiofsd_detect(C_VIRTIOFSD, &b, &e), 0);
        assert_int_equal(b.flavour, VIRTIOFSD_FLAVOUR_C);
        assert_false(b.translate_ids);
        assert_false(b.read_only);
        assert_non_null(strstr(b.version, "virtiofsd version"));
        printf("# %s: %s (%s)\n", b.path, b.version, virtiofsd_flavour_to_string(b.flavour));

        /* The search finds something on this machine (Debian 12: the C one). */
        assert_int_equal(virtiofsd_detect(NULL, &b, &e), 0);
}

static void test_detect_rust_like(void **state) {
        struct virtiofsd_binary b;
        struct verr e = {};

        write_script(DIR "/rust-new", "case \"$1\" in --version) echo 'virtiofsd 1.13.0';;\n"
                                      "*) echo 'Usage: virtiofsd --shared-dir <SHARED_DIR> --socket-path <PATH>'\n"
                                      "   echo '      --readonly  Prevent modifications'\n"
                                      "   echo '      --translate-uid <TRANSLATE_UID>'\n"
                                      "   echo '      --translate-gid <TRANSLATE_GID>';;\nesac\n");
        assert_int_equal(virtiofsd_detect(DIR "/rust-new", &b, &e), 0);
        assert_int_equal(b.flavour, VIRTIOFSD_FLAVOUR_RUST);
        assert_true(b.translate_ids);
        assert_true(b.read_only);
        assert_string_equal(b.version, "virtiofsd 1.13.0");

        write_script(DIR "/rust-old", "echo 'virtiofsd --shared-dir <SHARED_DIR> --socket-path <PATH> --sandbox'\n");
        assert_int_equal(virtiofsd_detect(DIR "/rust-old", &b, &e), 0);
        assert_int_equal(b.flavour, VIRTIOFSD_FLAVOUR_RUST);
        assert_false(b.translate_ids);
        assert_false(b.read_only);
}

static void test_detect_other(void **state) {
        struct virtiofsd_binary b;
        struct verr e = {};

        write_script(DIR "/other", "echo 'usage: something else'\n");
        assert_int_equal(virtiofsd_detect(DIR "/other", &b, &e), -ENOEXEC);
        assert_non_null(strstr(e.text, "does not look like virtiofsd"));
        write_script(DIR "/hangs", "sleep 60\n");
        memset(&e, 0, sizeof(e));
        long long t0 = test_now_ms();
        assert_true(virtiofsd_detect(DIR "/hangs", &b, &e) < 0);
        assert_true(test_now_ms() - t0 < 10000);
        assert_int_equal(virtiofsd_detect(DIR "/does-not-exist", &b, NULL), -ENOENT);
}

static bool argv_has(char **argv, const char *arg) {
        for (char **a = argv; *a; a++)
                if (streq(*a, arg))
                        return true;
        return false;
}

static void test_argv(void **state) {
        struct virtiofsd_binary c = { .path = "/c/virtiofsd", .flavour = VIRTIOFSD_FLAVOUR_C };
        struct virtiofsd_binary rust = {
                .path = "/r/virtiofsd", .flavour = VIRTIOFSD_FLAVOUR_RUST, .translate_ids = true, .read_only = true
        };
        struct virtiofsd_config cfg = {
                .shared_dir = "/run/vm/homes/alice/mnt/home",
                .socket_path = "/run/vm/homes/alice/virtiofsd.sock",
                .read_only = true,
                .host_uid = 4242, .host_gid = 4243, .guest_uid = 60002, .guest_gid = 60003,
        };
        _cleanup_(virtiofsd_argv_freep) char **a = NULL, **r = NULL;
        char **bad = NULL;

        assert_int_equal(virtiofsd_build_argv(&c, &cfg, &a, NULL), 0);
        assert_string_equal(a[0], "/c/virtiofsd");
        assert_true(argv_has(a, "--socket-path=/run/vm/homes/alice/virtiofsd.sock"));
        assert_true(argv_has(a, "source=/run/vm/homes/alice/mnt/home"));
        assert_true(argv_has(a, "sandbox=namespace"));
        assert_true(argv_has(a, "modcaps=" VIRTIOFSD_MODCAPS));
        assert_false(argv_has(a, "--readonly"));

        cfg.translate_ids = true;
        assert_int_equal(virtiofsd_build_argv(&c, &cfg, &bad, NULL), -EOPNOTSUPP);
        assert_int_equal(virtiofsd_build_argv(&rust, &cfg, &r, NULL), 0);
        assert_true(argv_has(r, "--shared-dir=/run/vm/homes/alice/mnt/home"));
        assert_true(argv_has(r, "--sandbox=namespace"));
        assert_true(argv_has(r, "--modcaps=" VIRTIOFSD_MODCAPS));
        assert_true(argv_has(r, "--readonly"));
        assert_true(argv_has(r, "--translate-uid=map:60002:4242:1"));
        assert_true(argv_has(r, "--translate-gid=map:60003:4243:1"));

        /* The C virtiofsd cannot escape ',' in -o values. */
        cfg.translate_ids = false;
        cfg.shared_dir = "/run/a,b";
        assert_int_equal(virtiofsd_build_argv(&c, &cfg, &bad, NULL), -EINVAL);
}

static const struct virtiofsd_config share_cfg = {
        .shared_dir = DIR "/share",
        .socket_path = DIR "/state/virtiofsd.sock",
};

static void test_daemon_start_stop(void **state) {
        struct virtiofsd_binary b;
        struct virtiofsd_process proc;
        enum virtiofsd_state st;
        struct verr e = {};
        int status;

        if (!have_c_virtiofsd())
                skip();
        assert_int_equal(virtiofsd_detect(C_VIRTIOFSD, &b, &e), 0);

        /* Started from a child that exits at once: virtiofsd must outlive it. A caller that
         * ignores SIGTERM must not pass that on. */
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0) {
                signal(SIGTERM, SIG_IGN);
                _exit(virtiofsd_start(&b, &share_cfg, DIR "/state", VIRTIOFSD_SUPERVISOR_DAEMON, NULL, 10000, &proc,
                                      &e) == 0
                              ? 0
                              : 1);
        }
        assert_int_equal(waitpid(child, &status, 0), child);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

        assert_int_equal(virtiofsd_get_state(DIR "/state", &st, &proc, &e), 0);
        assert_int_equal(st, VIRTIOFSD_STATE_RUNNING);
        assert_int_equal(proc.supervisor, VIRTIOFSD_SUPERVISOR_DAEMON);
        assert_true(proc.pid > 1);
        assert_int_equal(kill(proc.pid, 0), 0);
        assert_int_equal(test_count_processes_with_arg("--socket-path=" DIR "/state/virtiofsd.sock"), 1);
        /* ps shows the supervisor (third number in the pid file) for what it is, not as the
         * command that started it (without CAP_SYS_RESOURCE, the title is cut to the size of
         * this test's own command line, which is longer than the name). */
        {
                _cleanup_fclose_ FILE *f = fopen(DIR "/state/" VIRTIOFSD_PID_FILE, "re");
                int vpid = 0, spid = 0;
                unsigned long long t1, t2;
                char path[64], cmdline[256] = "";
                assert_non_null(f);
                assert_int_equal(fscanf(f, "%d %llu %d %llu", &vpid, &t1, &spid, &t2), 4);
                snprintf(path, sizeof(path), "/proc/%d/cmdline", spid);
                _cleanup_fclose_ FILE *c = fopen(path, "re");
                assert_non_null(c);
                assert_true(fread(cmdline, 1, sizeof(cmdline) - 1, c) > 0);
                if (strncmp(cmdline, VIRTIOFSD_SUPERVISOR_TITLE, strlen(VIRTIOFSD_SUPERVISOR_TITLE)) != 0)
                        fail_msg("supervisor %d shows '%s'", spid, cmdline);
        }
        struct stat sst;
        assert_int_equal(stat(share_cfg.socket_path, &sst), 0);
        assert_true(S_ISSOCK(sst.st_mode));

        long long t0 = test_now_ms();
        assert_int_equal(virtiofsd_stop(DIR "/state", share_cfg.socket_path, 3000, &e), 1);
        assert_true(test_now_ms() - t0 < 2500); /* SIGTERM did it, not the SIGKILL fallback */
        assert_int_equal(virtiofsd_get_state(DIR "/state", &st, NULL, &e), 0);
        assert_int_equal(st, VIRTIOFSD_STATE_NONE);
        assert_int_equal(test_count_processes_with_arg("--socket-path=" DIR "/state/virtiofsd.sock"), 0);
        assert_int_equal(test_count_processes_with_arg(DIR "/state/virtiofsd.sock"), 0);
        assert_int_equal(access(share_cfg.socket_path, F_OK), -1);
        assert_int_equal(access(DIR "/state/" VIRTIOFSD_PID_FILE, F_OK), -1);
        /* The supervisor noted how it ended. */
        assert_int_equal(system("grep -q 'vmuser: virtiofsd (pid [0-9]*) ' " DIR "/state/" VIRTIOFSD_LOG_FILE), 0);

        /* Nothing to stop: 0. */
        assert_int_equal(virtiofsd_stop(DIR "/state", share_cfg.socket_path, 1000, &e), 0);
}

static void test_daemon_dead(void **state) {
        struct virtiofsd_binary b;
        struct virtiofsd_process proc;
        enum virtiofsd_state st;
        struct verr e = {};

        if (!have_c_virtiofsd())
                skip();
        assert_int_equal(virtiofsd_detect(C_VIRTIOFSD, &b, &e), 0);
        assert_int_equal(virtiofsd_start(&b, &share_cfg, DIR "/state", VIRTIOFSD_SUPERVISOR_DAEMON, NULL, 10000, &proc, &e),
                         0);
        assert_int_equal(kill(proc.pid, SIGKILL), 0);
        for (int i = 0; i < 100; i++) {
                assert_int_equal(virtiofsd_get_state(DIR "/state", &st, NULL, &e), 0);
                if (st != VIRTIOFSD_STATE_RUNNING)
                        break;
                usleep(20 * 1000);
        }
        assert_int_equal(st, VIRTIOFSD_STATE_DEAD);
        assert_int_equal(virtiofsd_stop(DIR "/state", share_cfg.socket_path, 1000, &e), 0);
        assert_int_equal(virtiofsd_get_state(DIR "/state", &st, NULL, &e), 0);
        assert_int_equal(st, VIRTIOFSD_STATE_NONE);
}

static void test_daemon_start_fails(void **state) {
        struct virtiofsd_binary b;
        struct virtiofsd_config cfg = share_cfg;
        struct verr e = {};

        if (!have_c_virtiofsd())
                skip();
        assert_int_equal(virtiofsd_detect(C_VIRTIOFSD, &b, &e), 0);
        cfg.shared_dir = DIR "/no-such-directory";
        assert_int_equal(virtiofsd_start(&b, &cfg, DIR "/state", VIRTIOFSD_SUPERVISOR_DAEMON, NULL, 10000, NULL, &e),
                         -ECHILD);
        printf("# %s\n", e.text);
        assert_non_null(strstr(e.text, "virtiofsd exited during start-up"));
        assert_non_null(strstr(e.text, "no-such-directory"));
        assert_int_equal(access(DIR "/state/" VIRTIOFSD_PID_FILE, F_OK), -1);

        /* A binary that cannot be executed at all. */
        struct virtiofsd_binary missing = b;
        snprintf(missing.path, sizeof(missing.path), DIR "/gone");
        memset(&e, 0, sizeof(e));
        assert_int_equal(virtiofsd_start(&missing, &share_cfg, DIR "/state", VIRTIOFSD_SUPERVISOR_DAEMON, NULL, 5000,
                                         NULL, &e),
                         -ENOENT);
        assert_non_null(strstr(e.text, "cannot execute"));
}

int main(void) {
        test_enter_private_run();

        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_detect_c, setup, teardown),
                cmocka_unit_test_setup_teardown(test_detect_rust_like, setup, teardown),
                cmocka_unit_test_setup_teardown(test_detect_other, setup, teardown),
                cmocka_unit_test_setup_teardown(test_argv, setup, teardown),
                cmocka_unit_test_setup_teardown(test_daemon_start_stop, setup, teardown),
                cmocka_unit_test_setup_teardown(test_daemon_dead, setup, teardown),
                cmocka_unit_test_setup_teardown(test_daemon_start_fails, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
