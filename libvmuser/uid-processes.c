/* uid-processes.c: the processes of a UID, from ROOT/proc (see uid-cleanup-internal.h): ended,
 * counted or marked.
 *
 * A process is the UID's when its real, effective, saved or file-system UID is (the Uid: line
 * of /proc/PID/status); zombies do not count, as they can do nothing and their parents reap
 * them. uid_processes_end() makes passes over /proc, 20 ms apart and at most KILL_ROUNDS, each
 * sending SIGKILL to every process of the UID it finds, until a pass finds none. Each pass opens
 * a pidfd before it reads the process's UIDs, so a PID reused between the read and the signal is
 * never hit. uid_count_processes() is one pass that only counts, uid_processes_mark() one that
 * marks the UIDs of every process. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "uid-cleanup-internal.h"

/* The kill loop's rounds (20 ms apart) and how many PIDs it remembers as signalled. */
#define KILL_ROUNDS 250
#define SEEN_MAX 4096u

/* The four UIDs of a process from /proc/PID/status ("Uid:\treal\teffective\tsaved\tfs") and
 * whether it is a zombie. 0 or -errno (-EBADMSG: no Uid line). */
static int proc_status_uids(int proc_fd, const char *pid, unsigned long uids[static 4], bool *ret_zombie) {
        char path[NAME_MAX + 16], buf[4096];
        ssize_t n;

        snprintf(path, sizeof(path), "%s/status", pid);
        _cleanup_close_ int fd = openat(proc_fd, path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        n = read(fd, buf, sizeof(buf) - 1);
        if (n < 0)
                return negative_errno();
        buf[n] = '\0';
        const char *s = strstr(buf, "\nState:\t");
        *ret_zombie = s && s[8] == 'Z';
        s = strstr(buf, "\nUid:");
        if (!s)
                return -EBADMSG;
        s += 5;
        for (int i = 0; i < 4; i++) {
                char *end;
                uids[i] = strtoul(s, &end, 10);
                if (end == s)
                        return -EBADMSG;
                s = end;
        }
        return 0;
}

/* 1 if any of the process's four UIDs is uid, 0 if none (or the process is a zombie: it can do
 * nothing, and its parent reaps it), -errno. */
static int proc_has_uid(int proc_fd, const char *pid, uid_t uid) {
        unsigned long uids[4];
        bool zombie;
        int r = proc_status_uids(proc_fd, pid, uids, &zombie);

        if (r < 0)
                return r;
        for (int i = 0; i < 4; i++)
                if (uids[i] == uid)
                        return zombie ? 0 : 1;
        return 0;
}

struct proc_pass {
        uid_t uid;
        bool kill_them;
        pid_t *seen;
        size_t seen_max, *n_seen;
        int found;
};

static int proc_pass_one(int proc_fd, const char *name, void *userdata) {
        struct proc_pass *p = userdata;

        if (!uid_name_is_number(name))
                return 0;
        long pid = strtol(name, NULL, 10);
        if (pid <= 1 || pid == getpid())
                return 0;
        /* The pidfd first: the UIDs read after it are those of the process it names.
         * Without pidfds (old kernels, valgrind) plain kill() after the check has to do. */
        _cleanup_close_ int pidfd = p->kill_them ? (int) syscall(SYS_pidfd_open, (pid_t) pid, 0) : -1;
        if (p->kill_them && pidfd < 0 && errno == ESRCH)
                return 0;
        if (proc_has_uid(proc_fd, name, p->uid) > 0) {
                p->found++;
                int k = !p->kill_them ? -1
                        : pidfd >= 0 ? (int) syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0)
                                     : kill((pid_t) pid, SIGKILL);
                if (k == 0) {
                        bool known = false;
                        for (size_t i = 0; i < *p->n_seen; i++)
                                known = known || p->seen[i] == (pid_t) pid;
                        if (!known && *p->n_seen < p->seen_max)
                                p->seen[(*p->n_seen)++] = (pid_t) pid;
                }
        }
        return 0;
}

/* One pass over /proc: signals (when kill) or counts every process of the UID. Returns the number
 * found, -errno if /proc cannot be read. */
static int proc_pass(const char *root, uid_t uid, bool kill_them, pid_t *seen, size_t seen_max, size_t *n_seen) {
        struct proc_pass p = { uid, kill_them, seen, seen_max, n_seen, 0 };
        int r;

        r = uid_foreach_entry(root, "proc", proc_pass_one, &p);
        if (r < 0 && p.found == 0)
                return r;
        return p.found;
}

int uid_count_processes(const char *root, uid_t uid) {
        size_t n_seen = 0;

        return proc_pass(root, uid, false, NULL, 0, &n_seen);
}

int uid_processes_end(const char *root, uid_t uid, struct uid_cleanup_report *report) {
        _cleanup_free_ pid_t *seen = calloc(SEEN_MAX, sizeof(pid_t));
        size_t n_seen = 0;
        int found = 0;

        if (!seen)
                return -ENOMEM;
        for (int round = 0; round < KILL_ROUNDS; round++) {
                found = proc_pass(root, uid, true, seen, SEEN_MAX, &n_seen);
                if (found <= 0)
                        break;
                struct timespec ts = { .tv_nsec = 20 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        if (found < 0)
                return found;
        report->processes_ended = (unsigned) n_seen;
        report->processes_left = (unsigned) found;
        if (found > 0 && report->processes_ended >= (unsigned) found)
                report->processes_ended -= (unsigned) found;
        return 0;
}

/* One /proc entry: the process's four UIDs marked (zombies skipped, as above). */
static int mark_process(int proc_fd, const char *name, void *userdata) {
        struct uid_marks *m = userdata;
        unsigned long uids[4];
        bool zombie;

        if (!uid_name_is_number(name) || proc_status_uids(proc_fd, name, uids, &zombie) < 0 || zombie)
                return 0;
        for (int i = 0; i < 4; i++)
                uid_mark(m, uids[i]);
        return 0;
}

int uid_processes_mark(const char *root, struct uid_marks *m) {
        return uid_foreach_entry(root, "proc", mark_process, m);
}
