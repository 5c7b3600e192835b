/* test-agent-faults.c: nothing is lost or half-written when the agent dies.
 *
 * Crash: 200 times, a running agent gets a burst of attach/replace/detach requests and is
 * SIGKILLed right after a random one of the file events the burst makes (inotify), so inside an
 * attach or detach; at least half the rounds must leave a journal. A fresh agent then starts
 * (replaying it) and /run/userdb must be consistent: every user complete (record, UID link,
 * group, GID link, privileged part, state file), every entry owned by an attached user, every
 * link pointing at the right file, no journal or temporary file left.
 * The ENOSPC and /run reserve cases are in test-agent-enospc.c; the consistency check is in
 * agent-faults-test.c. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "macro.h"
#include "test-util.h"

#include "agent-faults-test.h"

/* An inotify watch on every directory the agent changes during an attach: each file it creates,
 * renames into place or removes there is one event, so "the k-th event" is a point inside the
 * k-th step of some plan (journal, record, link, state file), not agent start-up. */
static int watch_agent_dirs(void) {
        int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        assert_true(fd >= 0);
        const uint32_t mask = IN_CREATE | IN_MOVED_TO | IN_DELETE;
        assert_true(inotify_add_watch(fd, "/run/userdb", mask) >= 0);
        assert_true(inotify_add_watch(fd, "/run/vmuser/users", mask) >= 0);
        assert_true(inotify_add_watch(fd, "/run/vmuser/pending", mask) >= 0);
        return fd;
}

static void test_sigkill_during_attaches(void **state) {
        char burst[16384] = "";
        unsigned seed = (unsigned) time(NULL);
        int max_users = 0;

        printf("seed %u\n", seed);
        srand(seed);
        for (int u = 0; u < 6; u++) {
                char line[512];
                snprintf(line, sizeof(line),
                         "{\"execute\":\"vmuser-attach\",\"arguments\":{\"replace\":true,\"user\":{\"userName\":\"u%d\","
                         "\"realName\":\"User %d\",\"privileged\":{\"hashedPassword\":[\"$y$j9T$s$h%d\"]}},"
                         "\"memberOf\":[\"users\"]}}\n"
                         "{\"execute\":\"vmuser-attach\",\"arguments\":{\"replace\":true,\"user\":{\"userName\":\"u%d\","
                         "\"uid\":%d,\"privileged\":{\"hashedPassword\":[\"$y$j9T$s$x\"]}}}}\n"
                         "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"u%d\"}}\n"
                         "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"v%d\","
                         "\"privileged\":{\"hashedPassword\":[\"$y$j9T$s$v\"]}}}}\n",
                         u, u, u, u, 60560 + u, u, u);
                strcat(burst, line);
        }

        /* How many file events the whole burst makes: each round kills the agent right at a
         * random one of them, i.e. inside an attach or detach, never during start-up. */
        int burst_events;
        {
                struct test_agent a;
                _cleanup_free_ char *last = NULL, *ready = NULL;
                assert_int_equal(test_agent_start(&a, dropin), 0);
                assert_int_equal(test_agent_call(&a, "{\"execute\":\"guest-ping\"}", &ready), 0);
                _cleanup_close_ int ifd = watch_agent_dirs();
                (void) !write(a.in_fd, burst, strlen(burst));
                /* 24 replies to the burst; the ping's comes last. */
                const char *ping = "{\"execute\":\"guest-ping\",\"id\":\"end\"}\n";
                assert_int_equal(write(a.in_fd, ping, strlen(ping)), (ssize_t) strlen(ping));
                last = test_read_until(a.out_fd, "\"id\":\"end\"", 60000);
                assert_non_null(last);
                assert_int_equal(test_agent_stop(&a), 0);
                burst_events = test_wait_inotify(ifd, INT32_MAX, 200);
                printf("a burst of %d requests makes %d file events\n", 24, burst_events);
                assert_true(burst_events > 24);
                /* Start from nothing again. */
                struct test_agent c;
                assert_int_equal(test_agent_start(&c, dropin), 0);
                detach_numbered(&c, "u", 6, false);
                detach_numbered(&c, "v", 6, false);
                assert_int_equal(test_agent_stop(&c), 0);
                assert_int_equal(check_consistent(), 0);
        }

        int replays = 0;
        for (int round = 0; round < 200; round++) {
                struct test_agent a;
                _cleanup_free_ char *ready = NULL;
                int status;
                assert_int_equal(test_agent_start(&a, dropin), 0);
                /* Started and recovered: from here on every event is the burst's. */
                assert_int_equal(test_agent_call(&a, "{\"execute\":\"guest-ping\"}", &ready), 0);
                _cleanup_close_ int ifd = watch_agent_dirs();
                (void) !write(a.in_fd, burst, strlen(burst));
                (void) test_wait_inotify(ifd, 1 + rand() % burst_events, 200);
                assert_int_equal(kill(a.pid, SIGKILL), 0);
                close(a.in_fd);
                close(a.out_fd);
                assert_int_equal(waitpid(a.pid, &status, 0), a.pid);
                if (!WIFSIGNALED(status))
                        fail_msg("round %d: the agent was not killed mid-burst (status %d)", round, status);
                if (count_entries("/run/vmuser/pending", ".json") > 0)
                        replays++;

                /* A fresh agent replays whatever the dead one journalled. */
                struct test_agent b;
                _cleanup_free_ char *reply = NULL;
                assert_int_equal(test_agent_start(&b, dropin), 0);
                assert_int_equal(test_agent_call(&b, "{\"execute\":\"guest-ping\"}", &reply), 0);
                int users = check_consistent();
                if (users > max_users)
                        max_users = users;
                if (round % 3 == 2) {
                        /* Start over now and then, so early crash points are hit again. */
                        detach_numbered(&b, "u", 6, false);
                        detach_numbered(&b, "v", 6, false);
                        assert_int_equal(check_consistent(), 0);
                }
                assert_int_equal(test_agent_stop(&b), 0);
        }
        printf("200 SIGKILLs: %d left a journal to replay; state consistent after every restart (up to %d users "
               "present)\n",
               replays, max_users);
        assert_true(max_users > 0);
        /* Most kills land inside a plan (between the journal and its removal). */
        if (replays < 100)
                fail_msg("only %d of 200 kills left a journal to replay: the kills missed the attaches", replays);
}

int main(void) {
        test_enter_private_run();
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sigkill_during_attaches),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
