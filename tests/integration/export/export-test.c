/* export-test.c: shared set-up for the home-export tests (see export-test.h). */
#include "export-test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"

long long test_now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void test_require_qemu(void) {
        if (geteuid() != 0) {
                fprintf(stderr, "the export tests need root (mounts, virtiofsd); skipping\n");
                exit(77);
        }
        if (system("command -v " TEST_QEMU " >/dev/null 2>&1") != 0) {
                fprintf(stderr, TEST_QEMU " is not installed; skipping\n");
                exit(77);
        }
}

void test_make_vm_dir(const char *name, char *buf, size_t size) {
        char cmd[512];

        snprintf(buf, size, "/run/vmuser/vm/" TEST_VM_PREFIX "%s", name);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", buf);
        if (system(cmd) != 0 || (mkdir("/run/vmuser", 0755) < 0 && errno != EEXIST) ||
            (mkdir("/run/vmuser/vm", 0755) < 0 && errno != EEXIST) || mkdir(buf, 0700) < 0) {
                fprintf(stderr, "cannot make VM directory %s: %m\n", buf);
                abort();
        }
}

/* Every QEMU started and not yet stopped, for test_cleanup(). */
static pid_t started[32];

void test_qemu_start(struct test_qemu *q, const char *vm_dir, const char *const extra[]) {
        char qmp_arg[400], log[300];
        const char *argv[64];
        size_t n = 0;

        memset(q, 0, sizeof(*q));
        snprintf(q->vm_dir, sizeof(q->vm_dir), "%s", vm_dir);
        snprintf(q->qmp, sizeof(q->qmp), "%s/qmp.sock", vm_dir);
        snprintf(qmp_arg, sizeof(qmp_arg), "unix:%s,server=on,wait=off", q->qmp);
        snprintf(log, sizeof(log), "%s/qemu.log", vm_dir);

        argv[n++] = TEST_QEMU;
        argv[n++] = "-nodefaults";
        argv[n++] = "-display";
        argv[n++] = "none";
        argv[n++] = "-accel";
        argv[n++] = "tcg";
        argv[n++] = "-S";
        argv[n++] = "-qmp";
        argv[n++] = qmp_arg;
        for (size_t i = 0; extra && extra[i] && n < ELEMENTSOF(argv) - 1; i++)
                argv[n++] = extra[i];
        argv[n] = NULL;

        pid_t parent = getpid();
        q->pid = fork();
        if (q->pid < 0)
                abort();
        if (q->pid == 0) {
                /* QEMU goes when the test goes, even when the test crashes. */
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
                        _exit(127);
                int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
                dup2(null, 0);
                dup2(fd, 1);
                dup2(fd, 2);
                execvp(argv[0], (char *const *) argv);
                _exit(127);
        }
        for (size_t i = 0; i < ELEMENTSOF(started); i++)
                if (started[i] <= 0) {
                        started[i] = q->pid;
                        break;
                }
        for (int i = 0; i < 500; i++) {
                struct stat st;
                int status;
                if (stat(q->qmp, &st) == 0 && S_ISSOCK(st.st_mode))
                        return;
                if (waitpid(q->pid, &status, WNOHANG) == q->pid) {
                        char cmd[400];
                        snprintf(cmd, sizeof(cmd), "cat '%s' >&2", log);
                        (void) !system(cmd);
                        fprintf(stderr, "QEMU exited during start-up\n");
                        abort();
                }
                usleep(20 * 1000);
        }
        fprintf(stderr, "QEMU did not create %s\n", q->qmp);
        abort();
}

static void forget(pid_t pid) {
        for (size_t i = 0; i < ELEMENTSOF(started); i++)
                if (started[i] == pid)
                        started[i] = 0;
}

void test_qemu_stop(struct test_qemu *q) {
        int status;

        if (q->pid <= 0)
                return;
        forget(q->pid);
        kill(q->pid, SIGTERM);
        for (int i = 0; i < 250; i++) {
                if (waitpid(q->pid, &status, WNOHANG) == q->pid) {
                        q->pid = 0;
                        return;
                }
                usleep(20 * 1000);
        }
        kill(q->pid, SIGKILL);
        waitpid(q->pid, &status, 0);
        q->pid = 0;
}

/* Collects the PIDs of processes with an argument equal to arg, or with prefix, starting with
 * it (at most n). */
static size_t pids_with_arg(const char *arg, bool prefix, pid_t *pids, size_t n) {
        DIR *d = opendir("/proc");
        struct dirent *de;
        size_t count = 0;

        if (!d)
                return 0;
        while ((de = readdir(d)) && count < n) {
                char path[300], buf[8192];
                ssize_t len;
                int fd;
                if (de->d_name[0] < '0' || de->d_name[0] > '9')
                        continue;
                snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                len = read(fd, buf, sizeof(buf) - 1);
                close(fd);
                if (len <= 0)
                        continue;
                buf[len] = '\0';
                for (char *p = buf; p < buf + len; p += strlen(p) + 1)
                        if (prefix ? strncmp(p, arg, strlen(arg)) == 0 : streq(p, arg)) {
                                pids[count++] = (pid_t) atoi(de->d_name);
                                break;
                        }
        }
        closedir(d);
        return count;
}

int test_kill_processes_with_arg(const char *arg, int sig) {
        int total = 0;

        /* A dying process loses its command line before it closes its files, and a process that
         * forks while being killed may leave a child behind: so signal through pidfds, wait until
         * each has really exited, and look again until nobody is left. */
        for (int round = 0; round < 50; round++) {
                pid_t pids[64];
                size_t n = pids_with_arg(arg, false, pids, ELEMENTSOF(pids));
                if (n == 0)
                        return total;
                for (size_t i = 0; i < n; i++) {
                        int fd = pidfd_open(pids[i], 0);
                        if (fd < 0)
                                continue;
                        if (pidfd_send_signal(fd, sig, NULL, 0) == 0)
                                total++;
                        struct pollfd pfd = { .fd = fd, .events = POLLIN };
                        (void) poll(&pfd, 1, 5000);
                        close(fd);
                }
        }
        return total;
}

void test_qemu_kill(struct test_qemu *q) {
        int status;

        if (q->pid <= 0)
                return;
        forget(q->pid);
        kill(q->pid, SIGKILL);
        waitpid(q->pid, &status, 0);
        q->pid = 0;
}

int test_count_processes_with_arg(const char *arg) {
        pid_t pids[256];
        return (int) pids_with_arg(arg, false, pids, ELEMENTSOF(pids));
}

int test_count_processes_with_arg_prefix(const char *prefix) {
        pid_t pids[256];
        return (int) pids_with_arg(prefix, true, pids, ELEMENTSOF(pids));
}

void test_cleanup(void) {
        pid_t pids[64];
        size_t n;
        int status;

        for (size_t i = 0; i < ELEMENTSOF(started); i++)
                if (started[i] > 0) {
                        kill(started[i], SIGKILL);
                        waitpid(started[i], &status, 0);
                        started[i] = 0;
                }
        /* virtiofsd outlives its starter by design; a failed test must not leave one behind. */
        n = pids_with_arg("--socket-path=/run/vmuser/vm/" TEST_VM_PREFIX, true, pids, ELEMENTSOF(pids));
        for (size_t i = 0; i < n; i++)
                kill(pids[i], SIGKILL);
        /* Unprivileged ones serve VIRTIOFSD_USERNS_ROOT/ID (the tests run under the VM lock). */
        n = pids_with_arg("source=/run/vmuser/server-root/", true, pids, ELEMENTSOF(pids));
        for (size_t i = 0; i < n; i++)
                kill(pids[i], SIGKILL);
}
