/* test-agent-leftovers.c: what a detached UID leaves behind, attacked for real.
 *
 * The test runs in private mount, PID and IPC namespaces: the agent's /proc scan, its kills and
 * its IPC_RMID see only this test's processes and objects. The places the agent cleans live
 * below TEST_CLEANUP_ROOT (the --cleanup-root every test agent gets), with a proc mount of the
 * test's own PID namespace at ROOT/proc. A child that became the attached user's UID starts
 * processes that outlive it (one ignoring SIGTERM, one in a session of its own), creates SysV
 * shared memory, a semaphore set and a message queue, and writes in every place, including
 * tricks (a symlink to a root file, a set-UID file with a second link outside the places, a file
 * deep in another user's world-writable directory, a mount point). After the detach nothing of
 * the UID may be left but what the reply says it kept, and other users' things must be intact. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mount.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "attach-state.h"
#include "macro.h"
#include "test-util.h"

#define ROOT TEST_CLEANUP_ROOT
#define OTHER_UID 60999u

static struct test_agent agent;

static void die(const char *what) {
        fprintf(stderr, "set-up failed: %s: %s\n", what, strerror(errno));
        exit(99);
}

static char *call(const char *fmt, ...) _printf_(1, 2);
static char *call(const char *fmt, ...) {
        char req[2048];
        char *reply = NULL;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(req, sizeof(req), fmt, ap);
        va_end(ap);
        assert_int_equal(test_agent_call(&agent, req, &reply), 0);
        return reply;
}

static unsigned attach(const char *name, long uid) {
        _cleanup_free_ char *reply = uid > 0 ? call("{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"%s\","
                                                    "\"uid\":%ld}}}", name, uid)
                                             : call("{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"%s\"}}}",
                                                    name);
        const char *p = strstr(reply, "\"uid\":");
        if (!p)
                fail_msg("attach %s: %s", name, reply);
        return (unsigned) strtoul(p + 6, NULL, 10);
}

static void mkdir_owned(const char *path, mode_t mode, uid_t uid) {
        if (mkdir(path, mode) < 0 && errno != EEXIST)
                die(path);
        if (chmod(path, mode) < 0 || chown(path, uid, uid) < 0)
                die(path);
}

static void write_file(const char *path, mode_t mode) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0 || write(fd, "x\n", 2) != 2 || fchmod(fd, mode) < 0)
                _exit(10);
        close(fd);
}

/* Runs in a child with the user's UID: everything a user could leave behind. */
static void be_the_user(uid_t uid) {
        char path[256];

        /* Not the agent's pipes: a survivor must not keep the agent from seeing EOF. */
        close_range(3, ~0u, 0);
        if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)
                _exit(11);
        /* Processes that outlive the login: one ignoring SIGTERM, one in a new session. */
        for (int i = 0; i < 2; i++) {
                pid_t p = fork();
                if (p == 0) {
                        if (i == 0)
                                signal(SIGTERM, SIG_IGN);
                        else
                                setsid();
                        for (;;)
                                pause();
                }
        }
        /* SysV IPC of all three kinds. */
        if (shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600) < 0 || semget(IPC_PRIVATE, 1, IPC_CREAT | 0600) < 0 ||
            msgget(IPC_PRIVATE, IPC_CREAT | 0600) < 0)
                _exit(12);
        /* Files in each place. */
        write_file(ROOT "/tmp/alice-file", 0644);
        if (mkdir(ROOT "/tmp/alice-dir", 0755) < 0 || mkdir(ROOT "/tmp/alice-dir/sub", 0755) < 0)
                _exit(13);
        write_file(ROOT "/tmp/alice-dir/sub/deep", 0600);
        if (symlink("/etc/passwd", ROOT "/tmp/alice-link") < 0)
                _exit(14);
        write_file(ROOT "/tmp/shared/a/b/alice-in-shared", 0644);
        write_file(ROOT "/tmp/bobdir/alice-in-bobs", 0644);
        write_file(ROOT "/tmp/setuid-copy", 04755);
        if (link(ROOT "/tmp/setuid-copy", ROOT "/elsewhere/second-link") < 0)
                _exit(15);
        write_file(ROOT "/var/tmp/alice-vartmp", 0644);
        write_file(ROOT "/dev/shm/sem.alice", 0600);
        write_file(ROOT "/run/lock/alice.lock", 0644);
        snprintf(path, sizeof(path), ROOT "/run/user/%u/bus", (unsigned) uid);
        write_file(path, 0600);
        write_file(ROOT "/var/spool/cron/crontabs/alice", 0600);
        write_file(ROOT "/var/spool/cron/atjobs/a0000101a2b3c4", 0700);
        write_file(ROOT "/var/mail/alice", 0660);
        _exit(0);
}

static int owned_count;
static uid_t owned_uid;
static int count_owned(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        if (st->st_uid == owned_uid && strncmp(path, ROOT "/proc", strlen(ROOT "/proc")) != 0) {
                fprintf(stderr, "left: %s\n", path);
                owned_count++;
        }
        return 0;
}

static int processes_of(uid_t uid) {
        DIR *d = opendir(ROOT "/proc");
        struct dirent *de;
        int n = 0;
        assert_non_null(d);
        while ((de = readdir(d))) {
                char path[300], buf[4096];
                if (de->d_name[0] < '0' || de->d_name[0] > '9')
                        continue;
                snprintf(path, sizeof(path), ROOT "/proc/%s/status", de->d_name);
                int fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                ssize_t k = read(fd, buf, sizeof(buf) - 1);
                close(fd);
                if (k <= 0)
                        continue;
                buf[k] = '\0';
                char *s = strstr(buf, "\nUid:");
                char *z = strstr(buf, "\nState:\tZ");
                if (s && !z && strtoul(s + 5, NULL, 10) == uid)
                        n++;
        }
        closedir(d);
        return n;
}

static int ipc_lines_of(uid_t uid) {
        static const char *const files[] = { ROOT "/proc/sysvipc/shm", ROOT "/proc/sysvipc/sem", ROOT "/proc/sysvipc/msg" };
        char needle[32];
        int n = 0;
        snprintf(needle, sizeof(needle), " %u ", (unsigned) uid);
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                _cleanup_free_ char *text = NULL;
                FILE *f = fopen(files[i], "re");
                char line[512];
                assert_non_null(f);
                assert_non_null(fgets(line, sizeof(line), f)); /* header */
                while (fgets(line, sizeof(line), f))
                        n += strstr(line, needle) != NULL;
                fclose(f);
        }
        return n;
}

static void reap_all(void) {
        while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
}

static void test_detach_removes_leftovers(void **state) {
        char path[256];
        struct stat st;
        unsigned uid = attach("alice", 0);

        snprintf(path, sizeof(path), ROOT "/run/user/%u", uid);
        mkdir_owned(path, 0700, uid); /* as logind would */

        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                be_the_user(uid);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_int_equal(processes_of(uid), 2);
        assert_int_equal(ipc_lines_of(uid), 3);

        _cleanup_free_ char *reply = call("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"alice\"}}");
        fprintf(stderr, "detach reply: %s\n", reply);
        assert_non_null(strstr(reply, "\"processesEnded\":2,\"processesLeft\":0,\"ipcRemoved\":3,\"ipcLeft\":0,"));
        /* Files: alice-file, deep, alice-link, alice-in-shared, alice-in-bobs, setuid-copy,
         * alice-vartmp, sem.alice, alice.lock, bus, crontab, at job, mail = 13; directories:
         * alice-dir, sub, run/user/UID = 3. */
        assert_non_null(strstr(reply, "\"filesRemoved\":13,\"dirsRemoved\":3,\"keptCount\":0,\"kept\":[],\"quarantined\":false"));
        reap_all();

        assert_int_equal(processes_of(uid), 0);
        assert_int_equal(ipc_lines_of(uid), 0);
        owned_count = 0;
        owned_uid = uid;
        assert_int_equal(nftw(ROOT, count_owned, 16, FTW_PHYS | FTW_MOUNT), 0);
        /* The second link is outside the places; its inode must not stay a working set-UID file. */
        assert_int_equal(owned_count, 1);
        assert_int_equal(lstat(ROOT "/elsewhere/second-link", &st), 0);
        assert_int_equal(st.st_mode & 07777, 0);
        /* Other users' things, and what the symlink pointed to, are untouched. */
        assert_int_equal(lstat(ROOT "/tmp/bobdir", &st), 0);
        assert_int_equal(st.st_uid, OTHER_UID);
        assert_int_equal(lstat(ROOT "/tmp/other-file", &st), 0);
        assert_int_equal(lstat(ROOT "/tmp/shared/a/b", &st), 0);
        assert_int_equal(lstat("/etc/passwd", &st), 0);
        assert_int_equal(st.st_uid, 0);
        unlink(ROOT "/elsewhere/second-link");
}

/* A UID with a leftover is not handed out (quarantine), nor taken when the host asks for it. */
static void test_allocation_avoids_dirty_uids(void **state) {
        char path[256], qpath[64];
        unsigned uid = attach("carol", 0);
        _cleanup_free_ char *r1 = call("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"carol\"}}");

        /* Within a boot, the next user gets a never-used UID, not carol's. */
        unsigned next = attach("dave", 0);
        assert_int_equal(next, uid + 1);
        _cleanup_free_ char *r2 = call("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"dave\"}}");

        /* A file of UID next+1 (from an earlier boot, say) makes the allocator skip it. */
        snprintf(path, sizeof(path), ROOT "/var/tmp/old-%u", next + 1);
        assert_int_equal(mknod(path, S_IFREG | 0644, 0), 0);
        assert_int_equal(chown(path, next + 1, next + 1), 0);
        unsigned erin = attach("erin", 0);
        assert_int_equal(erin, next + 2);
        snprintf(qpath, sizeof(qpath), "/run/vmuser/quarantine/%u", next + 1);
        assert_int_equal(access(qpath, F_OK), 0);

        /* Asking for it by number is refused, with the reason. */
        _cleanup_free_ char *r3 = call("{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"frank\","
                                       "\"uid\":%u}}}", next + 1);
        if (!strstr(r3, "still owns 1 process(es), IPC object(s) or file(s) of an earlier user"))
                fail_msg("%s", r3);
        assert_non_null(strstr(r3, "UserBusy"));

        /* Once clean, it may go again and leaves quarantine. */
        assert_int_equal(unlink(path), 0);
        assert_int_equal(attach("frank", next + 1), next + 1);
        assert_int_equal(access(qpath, F_OK), -1);
        free(call("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"frank\"}}"));
        free(call("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"erin\"}}"));
}

/* The allocator's scan sees processes and SysV IPC objects too, not only files: a never-used
 * UID that owns a shared memory segment, or runs a process, is skipped (and quarantined). */
static void test_allocation_skips_ipc_and_processes(void **state) {
        unsigned base = attach("sam", 0);
        free(call("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"sam\"}}"));

        /* base + 1 owns a shared memory segment. */
        int shm = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
        struct shmid_ds ds;
        assert_true(shm >= 0);
        assert_int_equal(shmctl(shm, IPC_STAT, &ds), 0);
        ds.shm_perm.uid = base + 1;
        assert_int_equal(shmctl(shm, IPC_SET, &ds), 0);
        assert_int_equal(ipc_lines_of(base + 1), 1);
        /* base + 2 runs a process. */
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0) {
                if (setgid(base + 2) < 0 || setuid(base + 2) < 0)
                        _exit(1);
                pause();
                _exit(0);
        }
        for (int i = 0; i < 500 && processes_of(base + 2) == 0; i++)
                usleep(10 * 1000);
        assert_int_equal(processes_of(base + 2), 1);

        unsigned tom = attach("tom", 0);
        kill(child, SIGKILL);
        assert_int_equal(waitpid(child, NULL, 0), child);
        assert_int_equal(shmctl(shm, IPC_RMID, NULL), 0);
        free(call("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"tom\"}}"));
        if (tom != base + 3)
                fail_msg("tom got UID %u; %u owns a shm segment and %u a process: wanted %u", tom, base + 1, base + 2,
                         base + 3);
}

/* What cannot go is reported, and the UID is quarantined until it is gone. */
static void test_kept_paths_are_reported(void **state) {
        char mnt[128], qpath[64];
        unsigned uid = attach("gina", 0);

        snprintf(mnt, sizeof(mnt), ROOT "/tmp/gina-mnt");
        mkdir_owned(mnt, 0755, uid);
        assert_int_equal(mount("tmpfs", mnt, "tmpfs", 0, "mode=0755"), 0);
        assert_int_equal(chown(mnt, uid, uid), 0);

        _cleanup_free_ char *reply = call("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"gina\"}}");
        if (!strstr(reply, "\"keptCount\":1,\"kept\":[\"" ROOT "/tmp/gina-mnt: a mount point (another file system)\"],"
                           "\"quarantined\":true"))
                fail_msg("%s", reply);
        snprintf(qpath, sizeof(qpath), "/run/vmuser/quarantine/%u", uid);
        assert_int_equal(access(qpath, F_OK), 0);
        _cleanup_free_ char *r2 = call("{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"hank\","
                                       "\"uid\":%u}}}", uid);
        assert_non_null(strstr(r2, "it is in quarantine until they are gone"));
        assert_int_equal(umount(mnt), 0);
        assert_int_equal(rmdir(mnt), 0);
        assert_int_equal(attach("hank", uid), uid);
        free(call("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"hank\"}}"));
}

/* A UID the host keeps an export for is its user's: never allocated to, nor taken by, another. */
static void test_reserved_uids(void **state) {
        unsigned hw = attach("ivy", 0);
        free(call("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"ivy\"}}"));

        /* The next never-used UIDs, hw+1 and hw+2, are reserved for judy. */
        _cleanup_free_ char *r1 = call("{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"kim\"},"
                                       "\"reservedUids\":[{\"uid\":%u,\"userName\":\"judy\"},{\"uid\":%u,"
                                       "\"userName\":\"judy\"}]}}", hw + 1, hw + 2);
        if (!strstr(r1, "\"uid\":"))
                fail_msg("%s", r1);
        char want[32];
        snprintf(want, sizeof(want), "\"uid\":%u,", hw + 3);
        if (!strstr(r1, want))
                fail_msg("kim got %s, wanted %u", r1, hw + 3);
        _cleanup_free_ char *r2 = call("{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"lou\","
                                       "\"uid\":%u}}}", hw + 1);
        assert_non_null(strstr(r2, "is reserved for 'judy', whose home export the host keeps"));
        assert_int_equal(attach("judy", hw + 1), hw + 1);
        /* A bad list changes nothing. */
        _cleanup_free_ char *r3 = call("{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"max\"},"
                                       "\"reservedUids\":[{\"uid\":1,\"userName\":\"x\"}]}}");
        assert_non_null(strstr(r3, "entry 0 of 'reservedUids' is not"));
        free(call("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"kim\"}}"));
        free(call("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"judy\"}}"));
}

/* When the never-used UIDs are gone, freed ones are handed out again, the clean ones only. */
static void test_freed_uids_reused_when_clean(void **state) {
        struct test_agent narrow;
        char *args[] = { (char *) "--uid-min", (char *) "60600", (char *) "--uid-max", (char *) "60602", NULL };
        struct test_agent saved = agent;
        char path[128];

        assert_int_equal(test_agent_start(&narrow, args), 0);
        agent = narrow;
        for (unsigned uid = 60600; uid <= 60602; uid++) {
                assert_int_equal(attach("nina", 0), uid);
                free(call("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"nina\"}}"));
        }
        /* All used once: the first freed one comes back, unless it has a leftover. */
        snprintf(path, sizeof(path), ROOT "/dev/shm/left-by-60600");
        assert_int_equal(mknod(path, S_IFREG | 0600, 0), 0);
        assert_int_equal(chown(path, 60600, 60600), 0);
        assert_int_equal(attach("oscar", 0), 60601);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(attach("pia", 0), 60600);
        _cleanup_free_ char *full = call("{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"quin\"}}}");
        free(call("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"oscar\"}}"));
        free(call("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"pia\"}}"));
        free(call("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"quin\"}}"));
        agent = saved;
        assert_int_equal(test_agent_stop(&narrow), 0);
        assert_non_null(strstr(full, "\"uid\":60602"));
}

/* --userdb=dropin: a detach interrupted before the records went (the agent died) did not happen:
 * the next start clears the "detaching" mark of users/NAME.json, so the user can log in again.
 * (--userdb=varlink keeps the mark in the agent's memory: see test-pam-varlink.c.) */
static void test_interrupted_detach_cleared(void **state) {
        struct test_agent first, second;
        char *dropin[] = { (char *) "--userdb=dropin", NULL };
        _cleanup_free_ char *reply = NULL, *gone = NULL;
        (void) state;
        assert_int_equal(test_agent_start(&first, dropin), 0);
        assert_int_equal(test_agent_call(&first, "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":"
                                                 "{\"userName\":\"rita\"}}}", &reply), 0);
        assert_non_null(strstr(reply, "\"return\""));
        assert_int_equal(test_agent_stop(&first), 0);
        int users_fd = open("/run/vmuser/users", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(users_fd >= 0);
        assert_int_equal(attach_state_set_detaching(users_fd, "rita", true), 0);
        int state_fd = open("/run/vmuser", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct attach_state st;
        assert_true(state_fd >= 0);
        assert_int_equal(attach_state_read(state_fd, "rita", &st), 0);
        assert_true(st.detaching);
        assert_int_equal(test_agent_start(&second, dropin), 0);
        free(TAKE_PTR(reply));
        assert_int_equal(test_agent_call(&second, "{\"execute\":\"guest-ping\"}", &reply), 0);
        assert_int_equal(attach_state_read(state_fd, "rita", &st), 0);
        assert_false(st.detaching);
        assert_int_equal(test_agent_call(&second, "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"rita\"}}",
                                         &gone), 0);
        assert_non_null(strstr(gone, "\"return\""));
        assert_int_equal(test_agent_stop(&second), 0);
        close(state_fd);
        close(users_fd);
}

static void build_root(void) {
        static const char *const dirs[] = { "tmp", "var", "var/tmp", "dev", "dev/shm", "run", "run/user", "run/lock",
                                            "var/spool", "var/spool/cron", "var/spool/cron/crontabs",
                                            "var/spool/cron/atjobs", "var/mail", "elsewhere", "proc" };
        char path[256];

        if (mkdir(ROOT, 0755) < 0)
                die(ROOT);
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                snprintf(path, sizeof(path), ROOT "/%s", dirs[i]);
                if (mkdir(path, 0755) < 0)
                        die(path);
        }
        /* World-writable like the real ones (spools simplified: the user writes there directly). */
        static const char *const sticky[] = { "tmp", "var/tmp", "dev/shm", "run/lock", "var/spool/cron/crontabs",
                                              "var/spool/cron/atjobs", "var/mail", "elsewhere" };
        for (size_t i = 0; i < ELEMENTSOF(sticky); i++) {
                snprintf(path, sizeof(path), ROOT "/%s", sticky[i]);
                if (chmod(path, 01777) < 0)
                        die(path);
        }
        /* A root-owned world-writable tree, another user's open directory and file. */
        if (mkdir(ROOT "/tmp/shared", 0777) < 0 || mkdir(ROOT "/tmp/shared/a", 0777) < 0 ||
            mkdir(ROOT "/tmp/shared/a/b", 0777) < 0 || chmod(ROOT "/tmp/shared", 0777) < 0 ||
            chmod(ROOT "/tmp/shared/a", 0777) < 0 || chmod(ROOT "/tmp/shared/a/b", 0777) < 0)
                die("shared");
        mkdir_owned(ROOT "/tmp/bobdir", 0777, OTHER_UID);
        int fd = open(ROOT "/tmp/other-file", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0 || fchown(fd, OTHER_UID, OTHER_UID) < 0)
                die("other-file");
        close(fd);
        /* The proc of this PID namespace: what the agent scans, and /proc itself (sanitizers
         * find their threads through /proc/self, which must be of the namespace they run in). */
        if (mount("proc", ROOT "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 ||
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                die("mounting proc");
}

static int setup(void **state) {
        *state = &agent;
        return test_agent_start(&agent, NULL);
}

int main(void) {
        int status;

        test_enter_private_run();
        if (unshare(CLONE_NEWPID | CLONE_NEWIPC) < 0)
                die("unshare(CLONE_NEWPID|CLONE_NEWIPC)");
        pid_t pid = fork();
        if (pid < 0)
                die("fork");
        if (pid > 0) {
                if (waitpid(pid, &status, 0) < 0)
                        die("waitpid");
                /* _exit: a leak checker at exit would clone its helper into the new PID
                 * namespace, whose init is gone by now. The tests ran in the child. */
                _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
        }
        /* PID 1 of the new namespace. */
        build_root();
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_detach_removes_leftovers),
                cmocka_unit_test(test_allocation_avoids_dirty_uids),
                cmocka_unit_test(test_allocation_skips_ipc_and_processes),
                cmocka_unit_test(test_kept_paths_are_reported),
                cmocka_unit_test(test_reserved_uids),
                cmocka_unit_test(test_interrupted_detach_cleared),
                cmocka_unit_test(test_freed_uids_reused_when_clean),
                /* last: the agent's exit status (a failing group teardown does not fail the run) */
                cmocka_unit_test(test_agent_case_exits_cleanly),
        };
        return cmocka_run_group_tests(tests, setup, test_agent_group_teardown);
}
