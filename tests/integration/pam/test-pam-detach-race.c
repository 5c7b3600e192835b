/* test-pam-detach-race.c: logins against a concurrent detach (issue 11 §3).
 *
 * Each of ROUNDS rounds attaches "racer" with a tmpfs home, starts a looper that opens sessions
 * through the real PAM stack (pam_start_confdir(), service vmuser-test, one child per session,
 * as sshd does) as fast as it can, and detaches the user with force through the real agent at a
 * varying moment. A login that pam_vmuser accepted (it logs "Session of racer in process PID
 * recorded") must not be alive after the detach returned, no session entry may be left and the
 * home must not be mounted. The module's refusals and the sessions the detach ended are counted
 * and printed: they show that the logins did land in the window.
 * Also: a user marked detaching is refused with a clear message, nofail or not, and a replace
 * that changes the UID or the home is refused while a session lasts. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <security/pam_appl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "attach-state.h"
#include "macro.h"
#include "pam-test.h"
#include "test-util.h"

#define SERVICE "vmuser-test"
#define ROUNDS 100
#define HOME "/run/vmhost/home/racer"
#define MAX_SESSIONS 256

static char *agent_call(const char *request) {
        struct test_agent agent;
        char *reply = NULL;

        assert_int_equal(test_agent_start(&agent, NULL), 0);
        assert_int_equal(test_agent_call(&agent, request, &reply), 0);
        assert_int_equal(test_agent_stop(&agent), 0);
        return reply;
}

/* The looper: opens sessions until told to stop (a byte on stop_fd), then writes the PIDs of the
 * sessions that opened successfully and are still alive to out_fd, kills them and exits. */
static void looper(int stop_fd, int out_fd) {
        pid_t ok[MAX_SESSIONS];
        size_t n_ok = 0;

        for (;;) {
                struct pollfd p = { .fd = stop_fd, .events = POLLIN };
                if (poll(&p, 1, 0) > 0)
                        break;
                int res[2];
                if (pipe2(res, O_CLOEXEC) < 0)
                        _exit(90);
                pid_t pid = fork();
                if (pid < 0)
                        _exit(91);
                if (pid == 0) {
                        close(res[0]);
                        int rc = pam_test_run(SERVICE, "racer", true, false, NULL, 0);
                        (void) !write(res[1], &rc, sizeof(rc));
                        if (rc == PAM_SUCCESS)
                                for (;;)
                                        pause();
                        _exit(0);
                }
                close(res[1]);
                int rc = -1;
                /* 0 bytes: the session process was killed during its open. */
                if (read(res[0], &rc, sizeof(rc)) == (ssize_t) sizeof(rc) && rc == PAM_SUCCESS && n_ok < MAX_SESSIONS)
                        ok[n_ok++] = pid;
                close(res[0]);
                while (waitpid(-1, NULL, WNOHANG) > 0)
                        ;
        }
        while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
        for (size_t i = 0; i < n_ok; i++) {
                /* Alive: not reaped above and still signalable. */
                if (waitpid(ok[i], NULL, WNOHANG) == 0) {
                        (void) !write(out_fd, &ok[i], sizeof(pid_t));
                        kill(ok[i], SIGKILL);
                        waitpid(ok[i], NULL, 0);
                }
        }
        _exit(0);
}

static unsigned count_in_log(const char *log, const char *needle) {
        unsigned n = 0;
        for (const char *p = log; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

static void test_logins_against_detach(void **state) {
        unsigned refused = 0, recorded = 0, survivors = 0;
        /* One agent for all rounds (as in a guest; and a checker wrapping it starts once). */
        struct test_agent agent;

        assert_int_equal(test_agent_start(&agent, NULL), 0);

        for (int round = 0; round < ROUNDS; round++) {
                int stop[2], out[2];
                pid_t alive[MAX_SESSIONS];
                ssize_t n;

                _cleanup_free_ char *attached = NULL;
                assert_int_equal(test_agent_call(&agent, "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":"
                                                 "{\"userName\":\"racer\",\"uid\":60570},\"home\":{\"fstype\":"
                                                 "\"tmpfs\",\"tag\":\"vmuser-racer\"}}}", &attached), 0);
                if (strncmp(attached, "{\"return\"", 9) != 0)
                        fail_msg("round %d: attach failed: %s", round, attached);
                _cleanup_free_ char *before = pam_test_log();
                assert_int_equal(pipe2(stop, O_CLOEXEC), 0);
                assert_int_equal(pipe2(out, O_CLOEXEC), 0);
                pid_t l = fork();
                assert_true(l >= 0);
                if (l == 0) {
                        /* Not the agent's pipes: its stdin must see EOF when the test ends. */
                        close(agent.in_fd);
                        close(agent.out_fd);
                        close(stop[1]);
                        close(out[0]);
                        looper(stop[0], out[1]);
                }
                close(stop[0]);
                close(out[1]);

                /* Let a few logins land first, a different number each round. */
                struct timespec ts = { .tv_nsec = (round % 10) * 3 * 1000 * 1000L };
                nanosleep(&ts, NULL);
                _cleanup_free_ char *reply = NULL;
                assert_int_equal(test_agent_call(&agent, "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":"
                                                 "\"racer\",\"force\":true}}", &reply), 0);
                if (strncmp(reply, "{\"return\"", 9) != 0)
                        fail_msg("round %d: detach failed: %s", round, reply);

                assert_int_equal(write(stop[1], "s", 1), 1);
                n = 0;
                for (ssize_t k; (k = read(out[0], (char *) alive + n, sizeof(alive) - (size_t) n)) > 0;)
                        n += k;
                assert_int_equal(waitpid(l, NULL, 0), l);
                close(stop[1]);
                close(out[0]);

                _cleanup_free_ char *log = pam_test_log();
                const char *since = strlen(log) >= strlen(before) ? log + strlen(before) : log;
                for (size_t i = 0; i < (size_t) n / sizeof(pid_t); i++) {
                        char needle[128];
                        snprintf(needle, sizeof(needle), "Session of racer in process %d recorded", (int) alive[i]);
                        if (strstr(since, needle)) {
                                fprintf(stderr, "log of the round:\n%s\nreply: %s\n", since, reply);
                                fail_msg("round %d: session %d that pam_vmuser accepted outlived the detach", round,
                                         (int) alive[i]);
                        }
                        survivors++; /* a login after the user was gone: pam_vmuser ignored it */
                }
                /* A login that survived must be one pam_vmuser found not attached at its look-up
                 * (the user was gone already: on a real guest NSS would not even know it). One
                 * that found it attached and then lost it must have failed. */
                unsigned not_attached = count_in_log(since, "racer is not attached by vmuser; ignoring.");
                if ((size_t) n / sizeof(pid_t) > not_attached) {
                        fprintf(stderr, "log of the round:\n%s", since);
                        fail_msg("round %d: %zu logins outlived the detach, only %u found the user gone at their "
                                 "look-up", round, (size_t) n / sizeof(pid_t), not_attached);
                }
                if (pam_test_mount_count(HOME, NULL, 0) != 0)
                        fail_msg("round %d: %s is still mounted after the detach", round, HOME);
                if (pam_test_session_entries("racer") > 0)
                        fail_msg("round %d: session entries of racer are left", round);
                refused += count_in_log(since, "Refusing a session of racer");
                recorded += count_in_log(since, "Session of racer in process");
        }
        assert_int_equal(test_agent_stop(&agent), 0);
        fprintf(stderr,
                "%d rounds: %u sessions accepted by pam_vmuser (all ended by the detach), %u refused while "
                "detaching, %u logins after the user was gone (not vmuser's)\n",
                ROUNDS, recorded, refused, survivors);
        /* The race was run, not dodged: logins landed both before and during the detaches. */
        assert_true(recorded > 0);
}

/* The "detaching" mark alone refuses sessions, even with nofail, and says why. */
static void test_detaching_refused(void **state) {
        struct pam_test_holder h;
        char msgs[1024];
        int users_fd;

        pam_test_attach("leaver", 60571, NULL, "{\"fstype\":\"tmpfs\",\"tag\":\"vmuser-leaver\"}");
        users_fd = open("/run/vmuser/users", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(users_fd >= 0);
        assert_int_equal(attach_state_set_detaching(users_fd, "leaver", true), 0);
        /* In holders: NSS look-ups in this process would leave nss-systemd state (fds) behind
         * that the holders' close_range() then pulls from under it. */
        assert_int_equal(pam_test_holder_open(&h, SERVICE, "leaver", msgs, sizeof(msgs)), PAM_SESSION_ERR);
        assert_non_null(strstr(msgs, "Your account is being removed from this machine"));
        assert_int_equal(pam_test_holder_open(&h, "vmuser-test-nofail", "leaver", msgs, sizeof(msgs)), PAM_SESSION_ERR);
        assert_int_equal(pam_test_mount_count("/run/vmhost/home/leaver", NULL, 0), 0);
        /* Clearing the mark restores the file byte for byte, and logins work again. */
        assert_int_equal(attach_state_set_detaching(users_fd, "leaver", false), 0);
        assert_int_equal(pam_test_holder_open(&h, SERVICE, "leaver", msgs, sizeof(msgs)), PAM_SUCCESS);
        assert_int_equal(pam_test_holder_close(&h), PAM_SUCCESS);
        close(users_fd);
        free(agent_call("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"leaver\"}}"));
}

/* A replace that moves a logged-in user to another UID or home is refused; one that does not is
 * fine. */
static void test_replace_under_session(void **state) {
        struct pam_test_holder h;
        char msgs[1024];

        pam_test_attach("stayer", 60572, NULL, "{\"fstype\":\"tmpfs\",\"tag\":\"vmuser-stayer\"}");
        pam_test_log_mark();
        if (pam_test_holder_open(&h, SERVICE, "stayer", msgs, sizeof(msgs)) != PAM_SUCCESS) {
                pam_test_log_dump();
                fail_msg("open: %s", msgs);
        }
        _cleanup_free_ char *r1 = agent_call("{\"execute\":\"vmuser-attach\",\"arguments\":{\"replace\":true,\"user\":"
                                             "{\"userName\":\"stayer\",\"uid\":60573},\"home\":{\"fstype\":\"tmpfs\","
                                             "\"tag\":\"vmuser-stayer\"}}}");
        if (!strstr(r1, "a replace that changes the UID or the home is refused while they last"))
                fail_msg("%s", r1);
        _cleanup_free_ char *r2 = agent_call("{\"execute\":\"vmuser-attach\",\"arguments\":{\"replace\":true,\"user\":"
                                             "{\"userName\":\"stayer\",\"uid\":60572},\"home\":{\"fstype\":\"tmpfs\","
                                             "\"tag\":\"vmuser-other\"}}}");
        assert_non_null(strstr(r2, "is refused while they last"));
        _cleanup_free_ char *r3 = agent_call("{\"execute\":\"vmuser-attach\",\"arguments\":{\"replace\":true,\"user\":"
                                             "{\"userName\":\"stayer\",\"uid\":60572,\"realName\":\"Still Here\"},"
                                             "\"home\":{\"fstype\":\"tmpfs\",\"tag\":\"vmuser-stayer\"}}}");
        assert_non_null(strstr(r3, "\"changed\":true"));
        assert_int_equal(pam_test_holder_close(&h), PAM_SUCCESS);
        free(agent_call("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"stayer\"}}"));
}

/* More sessions than the agent ends in one batch (64): a forced detach ends every one. */
static void test_many_sessions_all_ended(void **state) {
        struct pam_test_holder h[100];

        pam_test_attach("crowd", 60574, NULL, "{\"fstype\":\"tmpfs\",\"tag\":\"vmuser-crowd\"}");
        for (size_t i = 0; i < ELEMENTSOF(h); i++)
                assert_int_equal(pam_test_holder_open(&h[i], SERVICE, "crowd", NULL, 0), PAM_SUCCESS);
        assert_int_equal(pam_test_session_entries("crowd"), (int) ELEMENTSOF(h));
        _cleanup_free_ char *reply =
                agent_call("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"crowd\",\"force\":true}}");
        assert_non_null(strstr(reply, "{\"return\""));
        for (size_t i = 0; i < ELEMENTSOF(h); i++) {
                int status = 0;
                pid_t k = 0;
                /* Ended by the agent (the detach waited for it): reaped here without being told
                 * anything. A survivor is killed so the test cannot hang on it. */
                for (int t = 0; t < 100 && (k = waitpid(h[i].pid, &status, WNOHANG)) == 0; t++)
                        usleep(10 * 1000);
                if (k == 0) {
                        kill(h[i].pid, SIGKILL);
                        waitpid(h[i].pid, NULL, 0);
                        fail_msg("session %zu (process %d) outlived the detach", i, (int) h[i].pid);
                }
                assert_true(WIFSIGNALED(status));
                close(h[i].cmd_fd);
                close(h[i].res_fd);
        }
        assert_int_equal(pam_test_mount_count("/run/vmhost/home/crowd", NULL, 0), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_detaching_refused),
                cmocka_unit_test(test_replace_under_session),
                cmocka_unit_test(test_many_sessions_all_ended),
                cmocka_unit_test(test_logins_against_detach),
        };

        test_enter_private_run();
        pam_test_setup();
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        pam_test_teardown();
        return r;
}
