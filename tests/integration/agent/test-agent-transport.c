/* test-agent-transport.c: the agent's --listen and --device transports.
 *
 * --listen: one client at a time (a second one waits, never interleaves), a client that
 * vanishes mid-request leaves no partial state behind for the next one, and 0xFF + guest-sync-
 * delimited resynchronizes a channel full of stale bytes; pipelined requests get all their
 * replies, in order.
 * --device on a pty whose other end is closed stands in for a virtio-serial port with no host:
 * the agent must stay alive and idle (CPU time is measured over 10 s and printed; a busy loop
 * would burn the whole 10 s). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "macro.h"
#include "test-util.h"

#define SOCK "/run/vmuser-test-agent.sock"

/* Through test_agent_spawn(), so VMUSER_AGENT_WRAPPER (valgrind) covers these transports too;
 * stop() asserts the exit status, which carries the checker's verdict. */
static pid_t spawn_agent(const char *mode, const char *path) {
        char *args[] = { (char *) mode, (char *) path, NULL };
        pid_t pid = test_agent_spawn(args, -1, -1);
        assert_true(pid > 0);
        return pid;
}

static int connect_retry(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        strcpy(sa.sun_path, path);
        for (int i = 0; i < 200; i++) {
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0)
                        return fd;
                close(fd);
                usleep(20 * 1000);
        }
        fail_msg("could not connect to %s", path);
        return -1;
}

/* Reads one reply line within timeout_ms; returns NULL on timeout. Strips 0xFF. */
static char *read_line(int fd, int timeout_ms) {
        char buf[65536];
        size_t n = 0;
        while (n < sizeof(buf) - 1) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                if (poll(&p, 1, timeout_ms) <= 0)
                        return NULL;
                ssize_t k = read(fd, buf + n, 1);
                if (k <= 0)
                        return NULL;
                if (buf[n] == '\n') {
                        buf[n] = '\0';
                        char *s = buf;
                        while (*s == (char) 0xFF)
                                s++;
                        return strdup(s);
                }
                n++;
        }
        return NULL;
}

static void send_str(int fd, const char *s) {
        assert_int_equal(write(fd, s, strlen(s)), (ssize_t) strlen(s));
}

static void stop(pid_t pid) {
        int status;
        kill(pid, SIGTERM);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_listen_one_client_at_a_time(void **state) {
        pid_t pid = spawn_agent("--listen", SOCK);
        int a = connect_retry(SOCK);
        _cleanup_free_ char *r1 = NULL, *r2 = NULL, *r3 = NULL;

        send_str(a, "{\"execute\":\"guest-ping\",\"id\":\"a\"}\n");
        r1 = read_line(a, 5000);
        assert_non_null(r1);
        assert_string_equal(r1, "{\"return\":{},\"id\":\"a\"}");

        /* Second client: connected (backlog) but not served while the first is there. */
        int b = connect_retry(SOCK);
        send_str(b, "{\"execute\":\"guest-ping\",\"id\":\"b\"}\n");
        assert_null(read_line(b, 500));

        /* The first one leaves in the middle of a request. */
        send_str(a, "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"half");
        close(a);

        /* Now b is served, and the half request did not leak into its stream. */
        r2 = read_line(b, 5000);
        assert_non_null(r2);
        assert_string_equal(r2, "{\"return\":{},\"id\":\"b\"}");

        /* Stale garbage, then 0xFF + guest-sync-delimited: the reply to the sync comes back. */
        send_str(b, "{\"execute\":\"vmuser-att");
        send_str(b, "\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":4242}}\n");
        r3 = read_line(b, 5000);
        assert_non_null(r3);
        assert_string_equal(r3, "{\"return\":4242}");
        close(b);

        _cleanup_free_ char *userdb = test_snapshot_dir("/run/userdb");
        assert_string_equal(userdb, "");
        stop(pid);
        struct stat st;
        assert_int_equal(lstat(SOCK, &st), -1); /* socket removed on exit */
}

static long cpu_ticks(pid_t pid) {
        char path[64], buf[1024];
        snprintf(path, sizeof(path), "/proc/%d/stat", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        assert_true(n > 0);
        buf[n] = '\0';
        char *p = strrchr(buf, ')');
        long utime = 0, stime = 0;
        /* fields after ")": state(3) ... utime(14) stime(15) */
        assert_int_equal(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &utime, &stime), 2);
        return utime + stime;
}

static void test_device_without_host_is_idle(void **state) {
        int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        assert_true(master >= 0);
        assert_int_equal(grantpt(master), 0);
        assert_int_equal(unlockpt(master), 0);
        char slave[128];
        assert_int_equal(ptsname_r(master, slave, sizeof(slave)), 0);
        struct termios t;
        assert_int_equal(tcgetattr(master, &t), 0);
        cfmakeraw(&t);
        assert_int_equal(tcsetattr(master, TCSANOW, &t), 0);

        pid_t pid = spawn_agent("--device", slave);
        /* The host side talks first: the device transport works. */
        usleep(300 * 1000);
        send_str(master, "{\"execute\":\"guest-ping\",\"id\":7}\n");
        _cleanup_free_ char *r = read_line(master, 5000);
        assert_non_null(r);
        assert_string_equal(r, "{\"return\":{},\"id\":7}");

        /* The host goes away: the device now reports hang-up forever. */
        close(master);
        usleep(200 * 1000);
        long before = cpu_ticks(pid);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        sleep(10);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long after = cpu_ticks(pid);
        long hz = sysconf(_SC_CLK_TCK);
        double seconds = (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9;
        double cpu = (double) (after - before) / (double) hz;
        printf("agent CPU with no host on the device: %.3f s over %.1f s (%.2f%%)\n", cpu, seconds,
               100.0 * cpu / seconds);

        /* Still alive, and nowhere near a busy loop (which would be ~100%). */
        assert_int_equal(kill(pid, 0), 0);
        assert_true(cpu < 0.5);
        stop(pid);
}

/* Pipelined requests (many per read) get every reply, in order, although the agent writes them
 * several at a time: none waits for a request that has not arrived (the half one at the end). */
static void test_pipelined_replies(void **state) {
        pid_t pid = spawn_agent("--listen", SOCK);
        int c = connect_retry(SOCK);
        char burst[4096] = "", req[64];

        for (int i = 0; i < 40; i++) {
                snprintf(req, sizeof(req), "{\"execute\":\"guest-ping\",\"id\":\"p%d\"}\n", i);
                strcat(burst, req);
        }
        strcat(burst, "{\"execute\":\"guest-ping\",\"id\":\"half");
        send_str(c, burst);
        for (int i = 0; i < 40; i++) {
                _cleanup_free_ char *r = read_line(c, 5000);
                char want[64];
                snprintf(want, sizeof(want), "{\"return\":{},\"id\":\"p%d\"}", i);
                if (!r)
                        fail_msg("no reply to request %d of 40", i);
                assert_string_equal(r, want);
        }
        close(c);
        stop(pid);
}

int main(void) {
        test_enter_private_run();
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_listen_one_client_at_a_time),
                cmocka_unit_test(test_pipelined_replies),
                cmocka_unit_test(test_device_without_host_is_idle),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
