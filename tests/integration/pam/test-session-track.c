/* test-session-track.c: libvmuser's session tracking (session-track.c) on its own, against a
 * scratch state directory: entries, pruning of dead, reused and malformed ones, the bounded
 * lock wait, session_foreach(), session_remove_all() racing with a waiting locker, and liveness
 * under a /proc mounted hidepid=2. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "macro.h"
#include "session-track.h"

static char state_dir[] = "/tmp/vmuser-session-track-XXXXXX";
static int state_fd = -1;

static int count_files(const char *user) {
        char cmd[256];
        _cleanup_(fclosep) FILE *f = NULL;
        int n = -1;

        snprintf(cmd, sizeof(cmd), "ls -A %s/sessions/%s 2>/dev/null | grep -vx lock | wc -l", state_dir,
                 user);
        f = popen(cmd, "r");
        assert_non_null(f);
        assert_int_equal(fscanf(f, "%d", &n), 1);
        pclose(TAKE_PTR(f));
        return n;
}

static void touch_entry(const char *user, const char *name) {
        char path[512];
        int fd;

        snprintf(path, sizeof(path), "%s/sessions/%s/%s", state_dir, user, name);
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
}

static void test_lock_create_and_refuse(void **state) {
        struct session_lock *l = NULL;
        char path[512];
        struct stat st;

        assert_int_equal(session_lock_acquire(state_fd, "nobody-here", false, &l), -ENOENT);
        assert_int_equal(session_lock_acquire(state_fd, "../etc", true, &l), -EINVAL);
        assert_int_equal(session_lock_acquire(state_fd, "", true, &l), -EINVAL);

        assert_int_equal(session_lock_acquire(state_fd, "alice", true, &l), 0);
        l = session_lock_release(l);
        snprintf(path, sizeof(path), "%s/sessions/alice", state_dir);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);

        /* A symlink where the directory should be, and a directory others may write to. */
        snprintf(path, sizeof(path), "%s/sessions/mallory", state_dir);
        assert_int_equal(symlink("/tmp", path), 0);
        assert_int_equal(session_lock_acquire(state_fd, "mallory", true, &l), -ENOTDIR);
        snprintf(path, sizeof(path), "%s/sessions/eve", state_dir);
        assert_int_equal(mkdir(path, 0700), 0);
        assert_int_equal(chmod(path, 0777), 0);
        assert_int_equal(session_lock_acquire(state_fd, "eve", true, &l), -EPERM);
}

static void test_add_remove_prune(void **state) {
        _cleanup_(session_lock_releasep) struct session_lock *l = NULL;
        char name[64], stat_path[64], buf[1024];
        pid_t child;
        int pipefd[2], fd;
        ssize_t n;

        assert_int_equal(session_lock_acquire(state_fd, "bob", true, &l), 0);
        assert_int_equal(session_add(l, getpid()), 1);
        assert_int_equal(session_add(l, getpid()), 0); /* one process, one entry */
        assert_int_equal(session_prune_and_count(l), 1);

        /* Malformed names, a PID that does not exist, and our PID with another start time. */
        touch_entry("bob", "garbage");
        touch_entry("bob", "123");
        touch_entry("bob", "0-5");
        touch_entry("bob", "01-5");
        touch_entry("bob", "4194999-1");
        snprintf(name, sizeof(name), "%d-1", (int) getpid());
        touch_entry("bob", name);
        assert_int_equal(count_files("bob"), 7);
        assert_int_equal(session_prune_and_count(l), 1);
        assert_int_equal(count_files("bob"), 1);

        /* A child that exits but is not reaped: a zombie's session is over. */
        assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
        child = fork();
        assert_true(child >= 0);
        if (child == 0) {
                char c;
                close(pipefd[1]);
                (void) !read(pipefd[0], &c, 1);
                _exit(0);
        }
        close(pipefd[0]);
        assert_int_equal(session_add(l, child), 1);
        assert_int_equal(session_prune_and_count(l), 2);
        close(pipefd[1]);
        snprintf(stat_path, sizeof(stat_path), "/proc/%d/stat", (int) child);
        for (int i = 0; i < 500; i++) {
                fd = open(stat_path, O_RDONLY | O_CLOEXEC);
                assert_true(fd >= 0);
                n = read(fd, buf, sizeof(buf) - 1);
                close(fd);
                buf[n > 0 ? n : 0] = '\0';
                if (strstr(buf, ") Z "))
                        break;
                nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
        }
        assert_int_equal(session_prune_and_count(l), 1);
        assert_int_equal(waitpid(child, NULL, 0), child);

        assert_int_equal(session_remove(l, getpid()), 1);
        assert_int_equal(session_remove(l, getpid()), 0);
        assert_int_equal(session_prune_and_count(l), 0);
        assert_int_equal(count_files("bob"), 0);
}

static int collect(pid_t pid, void *userdata) {
        pid_t *seen = userdata;
        *seen = pid;
        return 0;
}

static void test_foreach(void **state) {
        _cleanup_(session_lock_releasep) struct session_lock *l = NULL;
        pid_t seen = 0;

        assert_int_equal(session_lock_acquire(state_fd, "carol", true, &l), 0);
        touch_entry("carol", "4194999-1");
        assert_int_equal(session_add(l, getpid()), 1);
        assert_int_equal(session_foreach(l, collect, &seen), 0);
        assert_int_equal(seen, getpid());
        assert_int_equal(session_remove(l, getpid()), 1);
}

/* Another holder keeps the lock: the wait is bounded. */
static void test_lock_timeout(void **state) {
        _cleanup_(session_lock_releasep) struct session_lock *held = NULL;
        struct session_lock *l = NULL;
        struct timespec t0, t1;
        pid_t child;
        int status;

        assert_int_equal(session_lock_acquire(state_fd, "dave", true, &held), 0);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        child = fork();
        assert_true(child >= 0);
        if (child == 0)
                _exit(session_lock_acquire_timeout(state_fd, "dave", true, 300, &l) == -ETIMEDOUT ? 0 : 1);
        assert_int_equal(waitpid(child, &status, 0), child);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_true(t1.tv_sec - t0.tv_sec < 3);
}

/* session_remove_all() while someone waits for the lock: the waiter notices the lock file it
 * got is gone and starts over on a fresh directory. */
static void test_remove_all_with_waiter(void **state) {
        struct session_lock *held = NULL, *l = NULL;
        char path[512];
        pid_t child;
        int status;

        int go[2];

        /* Forked before the lock is taken: an inherited copy of the lock fd would hold the
         * flock in the child too. */
        assert_int_equal(pipe2(go, O_CLOEXEC), 0);
        child = fork();
        assert_true(child >= 0);
        if (child == 0) {
                char c;
                int r;

                close(go[1]);
                if (read(go[0], &c, 1) != 1)
                        _exit(3);
                r = session_lock_acquire_timeout(state_fd, "erin", true, 5000, &l);
                if (r < 0)
                        _exit(1);
                r = session_prune_and_count(l);
                _exit(r == 0 ? 0 : 2);
        }
        close(go[0]);
        assert_int_equal(session_lock_acquire(state_fd, "erin", true, &held), 0);
        assert_int_equal(session_add(held, getpid()), 1);
        assert_int_equal(write(go[1], "g", 1), 1);
        close(go[1]);
        nanosleep(&(struct timespec){.tv_nsec = 100 * 1000 * 1000}, NULL);

        /* What session_remove_all() does under the lock, done while the child waits. */
        snprintf(path, sizeof(path), "rm -f %s/sessions/erin/* && rmdir %s/sessions/erin", state_dir,
                 state_dir);
        assert_int_equal(system(path), 0);
        held = session_lock_release(held);

        assert_int_equal(waitpid(child, &status, 0), child);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        snprintf(path, sizeof(path), "%s/sessions/erin/lock", state_dir);
        assert_int_equal(access(path, F_OK), 0);

        /* And the real thing. */
        assert_int_equal(session_lock_acquire(state_fd, "erin", false, &held), 0);
        assert_int_equal(session_add(held, getpid()), 1);
        held = session_lock_release(held);
        assert_int_equal(session_remove_all(state_fd, "erin"), 0);
        snprintf(path, sizeof(path), "%s/sessions/erin", state_dir);
        assert_int_equal(access(path, F_OK), -1);
        assert_int_equal(session_remove_all(state_fd, "erin"), 0);
        assert_int_equal(session_lock_acquire(state_fd, "erin", false, &l), -ENOENT);
}

/* Under a /proc mounted hidepid=2, a reader without ptrace rights over another user's process
 * does not see it at all (/proc/PID is ENOENT): its session is still alive (the agent, root
 * without CAP_SYS_PTRACE, is such a reader). Only a PID that no longer exists is dead. Runs in a
 * child with a mount namespace of its own; returns what went wrong as its exit status. */
static int hidepid_worker(void) {
        char dir[] = "/tmp/vmuser-hidepid-XXXXXX", path[512], entry[64];
        struct session_lock *l = NULL;
        int go[2], fd, live;
        pid_t holder;

        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return 10;
        if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2") < 0)
                return 11;

        /* A session of another user (UID 60702), opened while we could still see it. */
        if (pipe2(go, O_CLOEXEC) < 0)
                return 12;
        holder = fork();
        if (holder < 0)
                return 12;
        if (holder == 0) {
                char c;
                close(go[1]);
                if (setresgid(60702, 60702, 60702) < 0 || setresuid(60702, 60702, 60702) < 0)
                        _exit(1);
                (void) !read(go[0], &c, 1);
                _exit(0);
        }
        close(go[0]);
        if (!mkdtemp(dir))
                return 13;
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || session_lock_acquire(fd, "hid", true, &l) < 0 || session_add(l, holder) != 1)
                return 14;
        l = session_lock_release(l);
        /* The tracking tree becomes the reader's (UID 60701), as it is root's for the agent. */
        snprintf(path, sizeof(path), "chown -R 60701:60701 %s", dir);
        if (system(path) != 0)
                return 15;
        snprintf(entry, sizeof(entry), "/proc/%d/stat", (int) holder);

        /* euid 60701 with the saved UID still 0: no capabilities in effect until seteuid(0).
         * No group 0 either: hidepid= lets the gid= group (0 by default) see everything. */
        if (setgroups(0, NULL) < 0 || setresgid((gid_t) -1, 60701, (gid_t) -1) < 0 ||
            setresuid((uid_t) -1, 60701, (uid_t) -1) < 0)
                return 16;
        struct stat st;
        if (stat(entry, &st) == 0 || errno != ENOENT)
                return 17; /* /proc does not hide it: the test would prove nothing */
        if (session_lock_acquire(fd, "hid", false, &l) < 0)
                return 18;
        live = session_prune_and_count(l);
        l = session_lock_release(l);
        if (live != 1)
                return 19; /* a live session called dead */

        /* Once the process is gone, its entry is pruned, hidepid or not. */
        if (seteuid(0) < 0)
                return 20;
        close(go[1]);
        if (waitpid(holder, NULL, 0) != holder || seteuid(60701) < 0)
                return 21;
        if (session_lock_acquire(fd, "hid", false, &l) < 0)
                return 22;
        live = session_prune_and_count(l);
        l = session_lock_release(l);
        if (live != 0)
                return 23;
        if (seteuid(0) < 0)
                return 24;
        snprintf(path, sizeof(path), "rm -rf %s", dir);
        close(fd);
        return system(path) == 0 ? 0 : 25;
}

static void test_hidepid_live_session_kept(void **state) {
        pid_t child;
        int status;

        if (geteuid() != 0)
                skip(); /* mounting a /proc needs root; the PAM suite runs as root */
        child = fork();
        assert_true(child >= 0);
        if (child == 0)
                _exit(hidepid_worker());
        assert_int_equal(waitpid(child, &status, 0), child);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

static int setup(void **state) {
        if (!mkdtemp(state_dir))
                return -1;
        state_fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        return state_fd < 0 ? -1 : 0;
}

static int teardown(void **state) {
        char cmd[256];

        closep(&state_fd);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", state_dir);
        return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_lock_create_and_refuse),
                cmocka_unit_test(test_add_remove_prune),
                cmocka_unit_test(test_foreach),
                cmocka_unit_test(test_lock_timeout),
                cmocka_unit_test(test_remove_all_with_waiter),
                cmocka_unit_test(test_hidepid_live_session_kept),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
