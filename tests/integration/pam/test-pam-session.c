/* test-pam-session.c: pam_vmuser.so through a real PAM stack (pam_start_confdir() with the
 * service files generated in the build tree), in a private mount namespace with a fresh /run.
 *
 * Each test attaches its own user with the real vmuser-agent, opens and closes sessions in
 * holder processes (one process per session, as login, su and sshd do), and checks the mount
 * table, the tracking directory /run/vmuser/sessions/NAME and the syslog lines of the module.
 * The sessions that work here: mounting, counting, pruning, reaping, concurrency; the refusals
 * and hostile states (unsafe paths, bad state, failing mounts, dropped privileges, lock
 * timeouts) are in test-pam-refusals.c. */
#include <errno.h>
#include <fcntl.h>
#include <security/pam_appl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
#define HOME_ROOT "/run/vmhost/home/"

/* A user the agent did not attach gets PAM_IGNORE, and nothing changes anywhere. */
static void test_not_attached_ignored(void **state) {
        _cleanup_free_ char *before = NULL, *after = NULL;
        struct pam_test_holder h;

        pam_test_attach("alice", 60514, NULL, "{\"fstype\":\"tmpfs\",\"tag\":\"vmuser-alice\"}");
        before = pam_test_snapshot_state();

        /* The module's own answer... */
        assert_int_equal(pam_test_module_call("bob", true, "debug", NULL, 0), PAM_IGNORE);
        assert_int_equal(pam_test_module_call("bob", false, "debug", NULL, 0), PAM_IGNORE);
        assert_int_equal(pam_test_module_call("root", true, "debug", NULL, 0), PAM_IGNORE);
        assert_int_equal(pam_test_module_call("root", false, "debug", NULL, 0), PAM_IGNORE);
        assert_int_equal(pam_test_module_call("Not.A.Vmuser.Name", true, "debug", NULL, 0), PAM_IGNORE);
        /* ...and what the stack makes of it. */
        assert_int_equal(pam_test_run(SERVICE, "bob", true, true, NULL, 0), PAM_SUCCESS);
        assert_int_equal(pam_test_holder_open(&h, SERVICE, "root", NULL, 0), PAM_SUCCESS);
        assert_int_equal(pam_test_holder_close(&h), PAM_SUCCESS);

        after = pam_test_snapshot_state();
        assert_string_equal(before, after);
        assert_int_equal(pam_test_session_entries("bob"), -1);
        assert_int_equal(pam_test_session_entries("root"), -1);
}

/* open -> mounted nosuid,nodev and owned by the user; second open -> still one mount; close,
 * close -> unmounted, no entries. */
static void test_open_open_close_close(void **state) {
        const char *home = HOME_ROOT "alice";
        struct pam_test_holder h1, h2;
        struct stat st;

        pam_test_attach("alice", 60514, NULL,
                        "{\"fstype\":\"tmpfs\",\"tag\":\"vmuser-alice\",\"options\":\"size=1m\"}");
        pam_test_log_mark();

        assert_int_equal(pam_test_holder_open(&h1, SERVICE, "alice", NULL, 0), PAM_SUCCESS);
        pam_test_assert_home_mounted_once(home);
        assert_int_equal(stat(home, &st), 0);
        assert_int_equal(st.st_uid, 60514);
        assert_int_equal(st.st_gid, 60514);
        assert_int_equal(st.st_mode & 07777, 0700);
        assert_int_equal(pam_test_session_entries("alice"), 1);
        assert_logged("Mounted tmpfs 'vmuser-alice' on '/run/vmhost/home/alice' for alice.");

        assert_int_equal(pam_test_holder_open(&h2, SERVICE, "alice", NULL, 0), PAM_SUCCESS);
        pam_test_assert_home_mounted_once(home);
        assert_int_equal(pam_test_session_entries("alice"), 2);

        assert_int_equal(pam_test_holder_close(&h1), PAM_SUCCESS);
        pam_test_assert_home_mounted_once(home);
        assert_int_equal(pam_test_session_entries("alice"), 1);

        assert_int_equal(pam_test_holder_close(&h2), PAM_SUCCESS);
        assert_int_equal(pam_test_mount_count(home, NULL, 0), 0);
        assert_int_equal(pam_test_session_entries("alice"), 0);
        assert_logged("Last session of alice closed; unmounted '/run/vmhost/home/alice'.");

        /* The parents were created root-owned 0755. */
        assert_int_equal(lstat("/run/vmhost/home", &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_uid, 0);
        assert_int_equal(st.st_mode & 07777, 0755);
}

/* systemd's user manager opens a session under the service name "systemd-user": it is not a
 * login and must neither mount nor count (found on a real guest: counted, it kept the home
 * mounted after the last logout). */
static void test_user_manager_ignored(void **state) {
        const char *home = HOME_ROOT "alice";
        struct pam_test_holder h, m;

        pam_test_attach("alice", 60514, NULL, "{\"fstype\":\"tmpfs\",\"tag\":\"vmuser-alice\"}");
        assert_int_equal(pam_test_holder_open(&m, "systemd-user", "alice", NULL, 0), PAM_SUCCESS);
        assert_int_equal(pam_test_mount_count(home, NULL, 0), 0);
        assert_true(pam_test_session_entries("alice") <= 0);

        assert_int_equal(pam_test_holder_open(&h, SERVICE, "alice", NULL, 0), PAM_SUCCESS);
        pam_test_assert_home_mounted_once(home);
        assert_int_equal(pam_test_session_entries("alice"), 1);
        /* The login ends while the user manager still runs: the home goes. */
        assert_int_equal(pam_test_holder_close(&h), PAM_SUCCESS);
        assert_int_equal(pam_test_mount_count(home, NULL, 0), 0);
        assert_int_equal(pam_test_session_entries("alice"), 0);
        assert_int_equal(pam_test_holder_close(&m), PAM_SUCCESS);
}

/* One process, one session entry: opening twice in the same process does not count twice. */
static void test_same_process_twice(void **state) {
        assert_int_equal(pam_test_run(SERVICE, "alice", true, false, NULL, 0), PAM_SUCCESS);
        assert_int_equal(pam_test_run(SERVICE, "alice", true, false, NULL, 0), PAM_SUCCESS);
        assert_int_equal(pam_test_session_entries("alice"), 1);
        pam_test_assert_home_mounted_once(HOME_ROOT "alice");
        assert_int_equal(pam_test_run(SERVICE, "alice", false, true, NULL, 0), PAM_SUCCESS);
        assert_int_equal(pam_test_session_entries("alice"), 0);
        assert_int_equal(pam_test_mount_count(HOME_ROOT "alice", NULL, 0), 0);
}

/* A session whose process was SIGKILLed (no close) is pruned by the next open or close. */
static void test_killed_session_pruned(void **state) {
        const char *home = HOME_ROOT "henry";
        struct pam_test_holder dead, zombie, h;

        pam_test_attach("henry", 60521, NULL, "{\"fstype\":\"tmpfs\",\"tag\":\"vmuser-henry\"}");

        /* Killed and reaped. */
        assert_int_equal(pam_test_holder_open(&dead, SERVICE, "henry", NULL, 0), PAM_SUCCESS);
        pam_test_holder_kill(&dead, true);
        assert_int_equal(pam_test_session_entries("henry"), 1);
        pam_test_assert_home_mounted_once(home);

        /* Killed, not reaped yet: a zombie's session is over too. */
        assert_int_equal(pam_test_holder_open(&zombie, SERVICE, "henry", NULL, 0), PAM_SUCCESS);
        assert_int_equal(pam_test_session_entries("henry"), 1);
        pam_test_holder_kill(&zombie, false);
        for (int i = 0; i < 200; i++) {
                char path[64], buf[512], *p;
                int fd;
                ssize_t n;

                snprintf(path, sizeof(path), "/proc/%d/stat", (int) zombie.pid);
                fd = open(path, O_RDONLY | O_CLOEXEC);
                assert_true(fd >= 0);
                n = read(fd, buf, sizeof(buf) - 1);
                close(fd);
                buf[n > 0 ? n : 0] = '\0';
                p = strrchr(buf, ')');
                if (p && p[2] == 'Z')
                        break;
                nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
        }

        /* The next open prunes both, reuses the mount, and counts one session. */
        assert_int_equal(pam_test_holder_open(&h, SERVICE, "henry", NULL, 0), PAM_SUCCESS);
        assert_int_equal(pam_test_session_entries("henry"), 1);
        pam_test_assert_home_mounted_once(home);
        assert_int_equal(waitpid(zombie.pid, NULL, 0), zombie.pid);

        /* Its close is the last one. */
        assert_int_equal(pam_test_holder_close(&h), PAM_SUCCESS);
        assert_int_equal(pam_test_session_entries("henry"), 0);
        assert_int_equal(pam_test_mount_count(home, NULL, 0), 0);

        /* A dead session alone: the next close (of a process that had none) unmounts. */
        assert_int_equal(pam_test_holder_open(&dead, SERVICE, "henry", NULL, 0), PAM_SUCCESS);
        pam_test_holder_kill(&dead, true);
        pam_test_assert_home_mounted_once(home);
        assert_int_equal(pam_test_run(SERVICE, "henry", false, true, NULL, 0), PAM_SUCCESS);
        assert_int_equal(pam_test_session_entries("henry"), 0);
        assert_int_equal(pam_test_mount_count(home, NULL, 0), 0);
}

/* 50 processes open and close at once: zero mounts and zero entries afterwards. */
static void test_concurrent_sessions(void **state) {
        enum { N = 50 };
        const char *home = HOME_ROOT "ivan";
        pid_t pids[N];
        int go[2], failures = 0;

        pam_test_attach("ivan", 60522, NULL, "{\"fstype\":\"tmpfs\",\"tag\":\"vmuser-ivan\"}");
        assert_int_equal(pipe2(go, O_CLOEXEC), 0);

        for (int i = 0; i < N; i++) {
                pids[i] = fork();
                assert_true(pids[i] >= 0);
                if (pids[i] == 0) {
                        char c;
                        int r;

                        close(go[1]);
                        (void) !read(go[0], &c, 1); /* everybody starts together */
                        r = pam_test_run(SERVICE, "ivan", true, false, NULL, 0);
                        if (r != PAM_SUCCESS)
                                _exit(10);
                        nanosleep(&(struct timespec){.tv_nsec = (i % 7) * 1000 * 1000}, NULL);
                        if (access(home, F_OK) < 0 || pam_test_mount_count(home, NULL, 0) != 1)
                                _exit(11); /* the home must be there while the session is open */
                        r = pam_test_run(SERVICE, "ivan", false, true, NULL, 0);
                        _exit(r == PAM_SUCCESS ? 0 : 12);
                }
        }
        close(go[0]);
        close(go[1]);

        for (int i = 0; i < N; i++) {
                int status;
                assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                        fprintf(stderr, "session process %d: status %d\n", i, status);
                        failures++;
                }
        }
        assert_int_equal(failures, 0);
        assert_int_equal(pam_test_mount_count(home, NULL, 0), 0);
        assert_int_equal(pam_test_session_entries("ivan"), 0);
}

/* Fault test: 100 logins whose processes are SIGKILLed at random points (before, during or
 * after open, during close, or while the session is open), with the agent running as it does in
 * a guest. Once all are gone, and without any further login, the agent's reaper must have left
 * no tracking entry and no mount. Every process that was not killed must have exited 0 (its
 * open and close succeeded); a kill counts only when the process died of it. */
static void test_random_kills(void **state) {
        enum { N = 100, CLEANUP_WAIT_MSEC = 10000 };
        const char *home = HOME_ROOT "kara";
        _cleanup_free_ char *reply = NULL;
        struct test_agent agent;
        struct timespec t0, t1;
        pid_t pids[N];
        bool held[N];
        int statuses[N];
        unsigned seed = (unsigned) time(NULL);
        int killed = 0, held_killed = 0, failures = 0, entries, mounts;

        pam_test_attach("kara", 60560, NULL, "{\"fstype\":\"tmpfs\",\"tag\":\"vmuser-kara\"}");
        /* The agent's reaper is set up before it serves: an answer means it watches. */
        assert_int_equal(test_agent_start(&agent, NULL), 0);
        assert_int_equal(test_agent_call(&agent, "{\"execute\":\"guest-ping\"}", &reply), 0);
        assert_string_equal(reply, "{\"return\":{}}");

        srand(seed);
        for (int i = 0; i < N; i++) {
                int ready[2];

                /* One in four holds its session open until it is killed: those leave a mount
                 * that only the reaper can take away, unless a later login's open or close prunes
                 * it. The last one is held and starts alone, once every other login is over, so
                 * nothing but the reaper can clean up after it. */
                held[i] = i == N - 1 || rand() % 4 == 0;
                if (i == N - 1)
                        for (int j = 0; j < N - 1; j++)
                                assert_int_equal(waitpid(pids[j], &statuses[j], 0), pids[j]);
                assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
                pids[i] = fork();
                assert_true(pids[i] >= 0);
                if (pids[i] == 0) {
                        close(ready[0]);
                        if (pam_test_run(SERVICE, "kara", true, false, NULL, 0) != PAM_SUCCESS)
                                _exit(10);
                        if (held[i]) {
                                (void) !write(ready[1], "o", 1);
                                for (;;)
                                        pause();
                        }
                        nanosleep(&(struct timespec){.tv_nsec = (rand() % 5) * 1000 * 1000}, NULL);
                        _exit(pam_test_run(SERVICE, "kara", false, true, NULL, 0) == PAM_SUCCESS ? 0 : 12);
                }
                close(ready[1]);
                if (held[i]) {
                        char c;
                        /* Open (or failed: then the status check below says so). */
                        (void) !read(ready[0], &c, 1);
                        assert_int_equal(kill(pids[i], SIGKILL), 0);
                } else if (rand() % 3 == 0) {
                        /* Some get killed at once, some a little later, some not at all. */
                        nanosleep(&(struct timespec){.tv_nsec = (rand() % 4000) * 1000}, NULL);
                        (void) kill(pids[i], SIGKILL);
                }
                close(ready[0]);
        }
        assert_int_equal(waitpid(pids[N - 1], &statuses[N - 1], 0), pids[N - 1]);
        for (int i = 0; i < N; i++) {
                int status = statuses[i];

                if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
                        killed++;
                        held_killed += held[i];
                } else if (held[i] || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                        fprintf(stderr, "login %d (%s): status 0x%x\n", i, held[i] ? "held" : "not killed",
                                (unsigned) status);
                        failures++;
                }
        }
        assert_int_equal(failures, 0);
        assert_true(held_killed > 0);

        /* No further login: what is left now is what the reaper has to clean. Bounded wait. */
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int waited = 0;; waited += 20) {
                entries = pam_test_session_entries("kara");
                mounts = pam_test_mount_count(home, NULL, 0);
                if ((entries == 0 && mounts == 0) || waited >= CLEANUP_WAIT_MSEC)
                        break;
                nanosleep(&(struct timespec){.tv_nsec = 20 * 1000 * 1000}, NULL);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("seed %u: %d of %d logins SIGKILLed (%d while open); %.2f s later %d entries, %d mounts\n", seed,
               killed, N, held_killed, (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, entries, mounts);
        assert_int_equal(entries, 0);
        assert_int_equal(mounts, 0);
        assert_int_equal(test_agent_stop(&agent), 0);
}

/* A session killed while no agent ran (an agent restart, a guest where it started late) is
 * reaped when the agent starts; a live session next to it keeps the home. */
static void test_reaped_at_agent_start(void **state) {
        const char *home = HOME_ROOT "quin";
        _cleanup_free_ char *reply = NULL;
        struct pam_test_holder dead, alive;
        struct test_agent agent;
        int entries = -1, mounts = -1;

        pam_test_attach("quin", 60531, NULL, "{\"fstype\":\"tmpfs\",\"tag\":\"vmuser-quin\"}");
        assert_int_equal(pam_test_holder_open(&dead, SERVICE, "quin", NULL, 0), PAM_SUCCESS);
        assert_int_equal(pam_test_holder_open(&alive, SERVICE, "quin", NULL, 0), PAM_SUCCESS);
        pam_test_holder_kill(&dead, true);
        assert_int_equal(pam_test_session_entries("quin"), 2);

        /* The live one keeps the home; only the dead entry goes. */
        assert_int_equal(test_agent_start(&agent, NULL), 0);
        assert_int_equal(test_agent_call(&agent, "{\"execute\":\"guest-ping\"}", &reply), 0);
        for (int waited = 0; waited < 5000 && pam_test_session_entries("quin") != 1; waited += 20)
                nanosleep(&(struct timespec){.tv_nsec = 20 * 1000 * 1000}, NULL);
        assert_int_equal(pam_test_session_entries("quin"), 1);
        pam_test_assert_home_mounted_once(home);

        /* Killed while the agent runs: gone without any further login. */
        pam_test_holder_kill(&alive, true);
        for (int waited = 0; waited < 10000; waited += 20) {
                entries = pam_test_session_entries("quin");
                mounts = pam_test_mount_count(home, NULL, 0);
                if (entries == 0 && mounts == 0)
                        break;
                nanosleep(&(struct timespec){.tv_nsec = 20 * 1000 * 1000}, NULL);
        }
        assert_int_equal(entries, 0);
        assert_int_equal(mounts, 0);
        assert_int_equal(test_agent_stop(&agent), 0);
}

/* fstype "bind": bound and remounted with nosuid,nodev plus the spec's options. */
static void test_bind_home(void **state) {
        const char *home = HOME_ROOT "dave", *share = PAM_TEST_DIR "/share-dave";
        char opts[256];
        struct pam_test_holder h;
        struct stat st;
        int fd;

        assert_int_equal(mkdir(share, 0700), 0);
        assert_int_equal(chown(share, 60517, 60517), 0);
        fd = open(PAM_TEST_DIR "/share-dave/marker", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        close(fd);

        pam_test_attach("dave", 60517, NULL,
                        "{\"fstype\":\"bind\",\"tag\":\"" PAM_TEST_DIR
                        "/share-dave\",\"options\":\"noexec,ro\"}");
        pam_test_log_mark();
        assert_int_equal(pam_test_holder_open(&h, SERVICE, "dave", NULL, 0), PAM_SUCCESS);
        assert_int_equal(pam_test_mount_count(home, opts, sizeof(opts)), 1);
        if (!strstr(opts, "nosuid") || !strstr(opts, "nodev") || !strstr(opts, "noexec") ||
            strncmp(opts, "ro,", 3) != 0)
                fail_msg("bind mounted with '%s'", opts);
        assert_int_equal(access(HOME_ROOT "dave/marker", F_OK), 0);
        assert_int_equal(stat(home, &st), 0);
        assert_int_equal(st.st_uid, 60517);
        assert_false(pam_test_log_contains("belongs to UID"));

        assert_int_equal(pam_test_holder_close(&h), PAM_SUCCESS);
        assert_int_equal(pam_test_mount_count(home, NULL, 0), 0);
        assert_int_equal(access(HOME_ROOT "dave/marker", F_OK), -1);
}

/* A mounted root that is not the user's is mounted anyway, with a warning naming both UIDs. */
static void test_owner_mismatch_warns(void **state) {
        struct pam_test_holder h;

        assert_int_equal(mkdir(PAM_TEST_DIR "/share-erin", 0755), 0);
        pam_test_attach("erin", 60518, NULL,
                        "{\"fstype\":\"bind\",\"tag\":\"" PAM_TEST_DIR "/share-erin\"}");
        pam_test_log_mark();
        assert_int_equal(pam_test_holder_open(&h, SERVICE, "erin", NULL, 0), PAM_SUCCESS);
        pam_test_assert_home_mounted_once(HOME_ROOT "erin");
        assert_logged(
                "The root of the home '/run/vmhost/home/erin' belongs to UID 0, but erin has UID 60518");
        assert_int_equal(pam_test_holder_close(&h), PAM_SUCCESS);
        assert_int_equal(pam_test_mount_count(HOME_ROOT "erin", NULL, 0), 0);
}

/* Attached without a home spec: sessions are tracked, nothing is mounted. */
static void test_no_home_tracked(void **state) {
        struct pam_test_holder h;

        pam_test_attach("gina", 60520, NULL, NULL);
        assert_int_equal(pam_test_holder_open(&h, SERVICE, "gina", NULL, 0), PAM_SUCCESS);
        assert_int_equal(pam_test_session_entries("gina"), 1);
        assert_int_equal(pam_test_mount_count(HOME_ROOT "gina", NULL, 0), 0);
        assert_int_equal(pam_test_holder_close(&h), PAM_SUCCESS);
        assert_int_equal(pam_test_session_entries("gina"), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_user_manager_ignored),
                cmocka_unit_test(test_random_kills),
                cmocka_unit_test(test_reaped_at_agent_start),
                cmocka_unit_test(test_not_attached_ignored),
                cmocka_unit_test(test_open_open_close_close),
                cmocka_unit_test(test_same_process_twice),
                cmocka_unit_test(test_killed_session_pruned),
                cmocka_unit_test(test_concurrent_sessions),
                cmocka_unit_test(test_bind_home),
                cmocka_unit_test(test_owner_mismatch_warns),
                cmocka_unit_test(test_no_home_tracked),
        };

        test_enter_private_run();
        return cmocka_run_group_tests(tests, pam_test_group_setup, pam_test_group_teardown);
}
