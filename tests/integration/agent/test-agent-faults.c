/* test-agent-faults.c: nothing is lost or half-written when the agent dies or the disk fills.
 *
 * Crash: 200 times, an agent gets a burst of attach/replace/detach requests and is SIGKILLed
 * after a random delay; a fresh agent then starts (replaying any journal) and the whole
 * /run/userdb must be consistent: every user complete (record, UID link, group, GID link,
 * privileged part, state file), nothing dangling, no journal or temporary file left.
 * ENOSPC: /run/userdb on a tiny tmpfs; an attach that does not fit fails with the reason and
 * leaves /run byte-for-byte as it was, and the agent goes on serving.
 * Reserve: a bulk attach stops while 5% of the blocks (or inodes) of /run are still free, with
 * the numbers in the reason, and the refused attach writes nothing. */
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
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "macro.h"
#include "test-util.h"

static bool exists(const char *fmt, ...) _printf_(1, 2);
static bool exists(const char *fmt, ...) {
        char path[512];
        struct stat st;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(path, sizeof(path), fmt, ap);
        va_end(ap);
        return stat(path, &st) == 0; /* follows symlinks: a dangling link does not count */
}

static int count_entries(const char *dir, const char *suffix) {
        DIR *d = opendir(dir);
        struct dirent *de;
        int n = 0;
        assert_non_null(d);
        while ((de = readdir(d))) {
                size_t l = strlen(de->d_name), s = strlen(suffix);
                if (de->d_name[0] != '.' && l > s && streq(de->d_name + l - s, suffix))
                        n++;
        }
        closedir(d);
        return n;
}

/* Every user is whole, every link resolves, nothing is pending. Returns the number of users. */
static int check_consistent(void) {
        DIR *d = opendir("/run/userdb");
        struct dirent *de;
        int users = 0;

        assert_non_null(d);
        while ((de = readdir(d))) {
                const char *n = de->d_name;
                size_t l = strlen(n);
                char path[512];
                struct stat st;

                if (streq(n, ".") || streq(n, ".."))
                        continue;
                if (n[0] == '.')
                        fail_msg("temporary file left: %s", n);
                snprintf(path, sizeof(path), "/run/userdb/%s", n);
                if (stat(path, &st) < 0)
                        fail_msg("dangling entry: %s", n);
                if (l > 5 && streq(n + l - 5, ".user") && !(n[0] >= '0' && n[0] <= '9')) {
                        char name[64];
                        snprintf(name, sizeof(name), "%.*s", (int) (l - 5), n);
                        struct passwd *pw = getpwnam(name);
                        if (!pw)
                                fail_msg("%s does not resolve", name);
                        if (!exists("/run/userdb/%u.user", pw->pw_uid) || !exists("/run/userdb/%s.group", name) ||
                            !exists("/run/userdb/%u.group", pw->pw_gid) ||
                            !exists("/run/userdb/%s.user-privileged", name) ||
                            !exists("/run/userdb/%u.user-privileged", pw->pw_uid) ||
                            !exists("/run/vmuser/users/%s.json", name))
                                fail_msg("user %s is incomplete", name);
                        users++;
                }
        }
        closedir(d);
        assert_int_equal(count_entries("/run/vmuser/users", ".json"), users);
        assert_int_equal(count_entries("/run/vmuser/pending", ".json"), 0);
        return users;
}

/* Reads fd until needle shows up (or timeout_ms passes): all of it, malloc'ed, or NULL. */
static char *read_until(int fd, const char *needle, int timeout_ms) {
        size_t size = 0, cap = 1u << 20;
        char *buf = malloc(cap + 1);

        while (buf && size < cap) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                if (poll(&p, 1, timeout_ms) <= 0)
                        break;
                ssize_t n = read(fd, buf + size, cap - size);
                if (n <= 0)
                        break;
                size += (size_t) n;
                buf[size] = '\0';
                if (strstr(buf, needle))
                        return buf;
        }
        free(buf);
        return NULL;
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

        /* How long this agent takes for the whole burst (much longer under valgrind): the kills
         * land anywhere in that window. */
        long window_us;
        {
                struct test_agent a;
                struct timespec t0, t1;
                _cleanup_free_ char *last = NULL;
                clock_gettime(CLOCK_MONOTONIC, &t0);
                assert_int_equal(test_agent_start(&a, NULL), 0);
                (void) !write(a.in_fd, burst, strlen(burst));
                /* 24 replies to the burst; the ping's comes last. */
                const char *ping = "{\"execute\":\"guest-ping\",\"id\":\"end\"}\n";
                assert_int_equal(write(a.in_fd, ping, strlen(ping)), (ssize_t) strlen(ping));
                last = read_until(a.out_fd, "\"id\":\"end\"", 60000);
                assert_non_null(last);
                clock_gettime(CLOCK_MONOTONIC, &t1);
                assert_int_equal(test_agent_stop(&a), 0);
                window_us = (t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000;
                printf("a burst of %d requests takes %ld ms\n", 24, window_us / 1000);
                /* Start from nothing again. */
                struct test_agent c;
                assert_int_equal(test_agent_start(&c, NULL), 0);
                for (int u = 0; u < 6; u++) {
                        char req[256];
                        _cleanup_free_ char *r1 = NULL, *r2 = NULL;
                        snprintf(req, sizeof(req), "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"u%d\"}}", u);
                        assert_int_equal(test_agent_call(&c, req, &r1), 0);
                        snprintf(req, sizeof(req), "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"v%d\"}}", u);
                        assert_int_equal(test_agent_call(&c, req, &r2), 0);
                }
                assert_int_equal(test_agent_stop(&c), 0);
                assert_int_equal(check_consistent(), 0);
        }

        for (int round = 0; round < 200; round++) {
                struct test_agent a;
                assert_int_equal(test_agent_start(&a, NULL), 0);
                (void) !write(a.in_fd, burst, strlen(burst));
                usleep((useconds_t) (rand() % (window_us + 1)));
                kill(a.pid, SIGKILL);
                close(a.in_fd);
                close(a.out_fd);
                waitpid(a.pid, NULL, 0);

                /* A fresh agent replays whatever the dead one journalled. */
                struct test_agent b;
                _cleanup_free_ char *reply = NULL;
                assert_int_equal(test_agent_start(&b, NULL), 0);
                assert_int_equal(test_agent_call(&b, "{\"execute\":\"guest-ping\"}", &reply), 0);
                int users = check_consistent();
                if (users > max_users)
                        max_users = users;
                if (round % 3 == 2) {
                        /* Start over now and then, so early crash points are hit again. */
                        for (int u = 0; u < 6; u++) {
                                char req[256];
                                _cleanup_free_ char *r1 = NULL, *r2 = NULL;
                                snprintf(req, sizeof(req), "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"u%d\"}}", u);
                                assert_int_equal(test_agent_call(&b, req, &r1), 0);
                                snprintf(req, sizeof(req), "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"v%d\"}}", u);
                                assert_int_equal(test_agent_call(&b, req, &r2), 0);
                        }
                        assert_int_equal(check_consistent(), 0);
                }
                assert_int_equal(test_agent_stop(&b), 0);
        }
        printf("200 SIGKILLs: state consistent after every restart (up to %d users present)\n", max_users);
        assert_true(max_users > 0);
}

static void test_enospc_leaves_nothing(void **state) {
        struct test_agent a;
        _cleanup_free_ char *r1 = NULL, *r2 = NULL, *r3 = NULL;

        /* Two pages for records: a group and a user fit, a privileged part does not. No reserve:
         * the write itself must fail, and be undone. */
        char *no_reserve[] = { (char *) "--run-reserve", (char *) "0", NULL };
        assert_int_equal(mount("tmpfs", "/run/userdb", "tmpfs", MS_NOSUID | MS_NODEV, "size=8k,mode=0755"), 0);
        assert_int_equal(test_agent_start(&a, no_reserve), 0);
        assert_int_equal(test_agent_call(&a, "{\"execute\":\"guest-ping\"}", &r3), 0);
        free(TAKE_PTR(r3));
        _cleanup_free_ char *userdb_before = test_snapshot_dir("/run/userdb");
        _cleanup_free_ char *vmuser_before = test_snapshot_dir("/run/vmuser");

        assert_int_equal(test_agent_call(&a, "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"big\","
                                             "\"privileged\":{\"hashedPassword\":[\"$y$j9T$s$h\"]}},\"memberOf\":[\"users\"]}}",
                                         &r1),
                         0);
        if (!strstr(r1, "writing the records of 'big' failed: No space left on device"))
                fail_msg("unexpected reply: %s", r1);
        _cleanup_free_ char *userdb_after = test_snapshot_dir("/run/userdb");
        _cleanup_free_ char *vmuser_after = test_snapshot_dir("/run/vmuser");
        assert_string_equal(userdb_before, userdb_after);
        assert_string_equal(vmuser_before, vmuser_after);
        assert_null(getpwnam("big"));

        /* Still serving, and what fits is installed. */
        assert_int_equal(test_agent_call(&a, "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"small\"}}}", &r2), 0);
        assert_non_null(strstr(r2, "\"changed\":true"));
        assert_non_null(getpwnam("small"));
        assert_int_equal(test_agent_call(&a, "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"small\"}}", &r3), 0);
        assert_int_equal(test_agent_stop(&a), 0);
        assert_int_equal(umount("/run/userdb"), 0);
}

/* Attaches v0, v1, ... until the agent refuses one; returns how many it took. The refused
 * reply goes to *ret_refusal. */
static int attach_until_refused(struct test_agent *a, int max, char **ret_refusal) {
        for (int u = 0; u < max; u++) {
                _cleanup_free_ char *reply = NULL;
                char req[256];
                snprintf(req, sizeof(req),
                         "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"v%d\"}}}", u);
                assert_int_equal(test_agent_call(a, req, &reply), 0);
                if (!strstr(reply, "\"return\"")) {
                        *ret_refusal = TAKE_PTR(reply);
                        return u;
                }
        }
        fail_msg("%d attaches, none refused", max);
        return -1;
}

static void detach_all(struct test_agent *a, int n) {
        for (int u = 0; u < n; u++) {
                _cleanup_free_ char *reply = NULL;
                char req[256];
                snprintf(req, sizeof(req), "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"v%d\"}}", u);
                assert_int_equal(test_agent_call(a, req, &reply), 0);
                assert_non_null(strstr(reply, "\"return\""));
        }
}

/* The agent keeps 5% of /run's blocks and inodes free by default: a bulk attach must not fill
 * the file system utmp, logind and every service also need. */
static void test_reserve_keeps_run_usable(void **state) {
        struct test_agent a;
        struct statvfs sv;
        _cleanup_free_ char *refusal = NULL, *ping = NULL;
        int n;

        /* Blocks: 256 KiB, 64 pages; each user takes two (user and group records). */
        assert_int_equal(mount("tmpfs", "/run/userdb", "tmpfs", MS_NOSUID | MS_NODEV, "size=256k,mode=0755"), 0);
        assert_int_equal(test_agent_start(&a, NULL), 0);
        n = attach_until_refused(&a, 200, &refusal);
        printf("size=256k: %d users attached, then: %s\n", n, refusal);
        if (!strstr(refusal, "the guest's '/run/userdb' is nearly full (") ||
            !strstr(refusal, "attaching 'v") || !strstr(refusal, "less than the 5% the agent keeps free"))
                fail_msg("unexpected refusal: %s", refusal);
        assert_int_equal(statvfs("/run/userdb", &sv), 0);
        assert_true(sv.f_bavail >= sv.f_blocks * 5 / 100);
        assert_true(n > 0);
        /* The refused attach wrote nothing: asking again changes nothing either. */
        _cleanup_free_ char *before = test_snapshot_dir("/run/userdb"), *again = NULL;
        char req[256];
        snprintf(req, sizeof(req), "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"v%d\"}}}", n);
        assert_int_equal(test_agent_call(&a, req, &again), 0);
        assert_non_null(strstr(again, "is nearly full"));
        _cleanup_free_ char *after = test_snapshot_dir("/run/userdb");
        assert_string_equal(before, after);
        assert_int_equal(test_agent_call(&a, "{\"execute\":\"guest-ping\"}", &ping), 0);
        assert_string_equal(ping, "{\"return\":{}}");
        detach_all(&a, n);
        assert_int_equal(test_agent_stop(&a), 0);
        assert_int_equal(umount("/run/userdb"), 0);

        /* Inodes: 60 on a roomy tmpfs; each user takes four (two records, two ID links). */
        free(TAKE_PTR(refusal));
        assert_int_equal(mount("tmpfs", "/run/userdb", "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,nr_inodes=60,mode=0755"), 0);
        assert_int_equal(test_agent_start(&a, NULL), 0);
        n = attach_until_refused(&a, 200, &refusal);
        printf("nr_inodes=60: %d users attached, then: %s\n", n, refusal);
        if (!strstr(refusal, "the guest's '/run/userdb' is nearly out of inodes ("))
                fail_msg("unexpected refusal: %s", refusal);
        assert_int_equal(statvfs("/run/userdb", &sv), 0);
        assert_true(sv.f_favail >= sv.f_files * 5 / 100);
        assert_true(n > 0);
        detach_all(&a, n);
        assert_int_equal(test_agent_stop(&a), 0);
        assert_int_equal(umount("/run/userdb"), 0);
}

int main(void) {
        test_enter_private_run();
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_enospc_leaves_nothing),
                cmocka_unit_test(test_reserve_keeps_run_usable),
                cmocka_unit_test(test_sigkill_during_attaches),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
