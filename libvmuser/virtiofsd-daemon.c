/* virtiofsd-daemon.c: virtiofsd under vmuser's own supervisor, where systemd is not used (see
 * virtiofsd.h).
 *
 * Start: virtiofsd_daemon_start() prepares everything before the fork (the title ps shows, the
 * log, for an unprivileged start the socket and the namespace plan) -> fork -> the child starts a
 * new session and forks the supervisor, then exits (so the supervisor is nobody's child but
 * init's and outlives us) -> supervisor_main() makes itself a child subreaper, points stdin at
 * /dev/null and stdout/stderr at the log, forks and execs virtiofsd (through
 * virtiofsd_userns_enter() when unprivileged), reports "PID, failed stage, errno" back over a
 * pipe, and then reaps until no child is left (virtiofsd's namespace sandbox forks an inner
 * process, which ends up with us too) -> the caller writes the pid file. Everything between fork
 * and exec is async-signal-safe, so a threaded caller is fine.
 *
 * Stop: virtiofsd_daemon_stop() reads the pid file, opens pidfds for virtiofsd and the
 * supervisor (checked against their start times), SIGTERM then SIGKILL to virtiofsd, then waits
 * for the supervisor to run out of children. */
#include "virtiofsd-internal.h"

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
#include <unistd.h>

#include "atomic-file.h"
#include "macro.h"
#include "proc-util.h"
#include "time-util.h"

static const char *launch_stage_to_string(int stage) {
        switch (stage) {
        case LAUNCH_CHDIR:
                return "mounting the shared directory below " VIRTIOFSD_USERNS_ROOT;
        case LAUNCH_DROP_IDS:
                return "dropping to the file server's host ID";
        case LAUNCH_UNSHARE:
                return "making its user namespace";
        case LAUNCH_MAPS:
                return "writing its UID/GID maps";
        case LAUNCH_CAPS:
                return "setting its capabilities";
        default:
                return "executing it";
        }
}

struct supervisor_report {
        pid_t supervisor;
        pid_t pid;
        struct launch_error failed; /* stage LAUNCH_OK: it runs */
};

/* Async-signal-safe decimal formatting for the supervisor. */
size_t virtiofsd_fmt_ulong(char *buf, unsigned long v) {
        char tmp[24];
        size_t n = 0, i = 0;
        do {
                tmp[n++] = (char) ('0' + v % 10);
                v /= 10;
        } while (v);
        while (n)
                buf[i++] = tmp[--n];
        return i;
}

static void supervisor_note_exit(pid_t pid, int status) {
        char msg[128];
        size_t n = 0;
        const char *a = "vmuser: virtiofsd (pid ";
        const char *b = WIFSIGNALED(status) ? ") was killed by signal " : ") exited with status ";

        memcpy(msg + n, a, strlen(a)), n += strlen(a);
        n += virtiofsd_fmt_ulong(msg + n, (unsigned long) pid);
        memcpy(msg + n, b, strlen(b)), n += strlen(b);
        n += virtiofsd_fmt_ulong(msg + n, (unsigned long) (WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status)));
        msg[n++] = '\n';
        (void) !write(2, msg, n);
}

/* What ps shows as a process's command line: the bytes from arg_start to arg_end of its memory
 * (fields 48 and 49 of /proc/PID/stat), where the kernel put argv. */
struct command_line {
        const char *title; /* NUL-separated, like argv */
        size_t title_size;
        char *args;        /* our own argv area, or NULL when unknown */
        size_t args_size;
};

/* Reads where this process's argv area is. Runs before the fork: it may allocate. */
static void command_line_find(struct command_line *c) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/stat", "re");
        char buf[2048], *p;
        unsigned long long start = 0, end = 0;
        int field = 2;

        c->args = NULL;
        c->args_size = 0;
        if (!f || !fgets(buf, sizeof(buf), f) || !(p = strrchr(buf, ')')))
                return;
        /* Field 2 (comm) ends at the last ')'; count the fields after it. */
        for (char *save = NULL, *tok = strtok_r(p + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
                field++;
                if (field == 48)
                        start = strtoull(tok, NULL, 10);
                else if (field == 49) {
                        end = strtoull(tok, NULL, 10);
                        break;
                }
        }
        if (start == 0 || end <= start)
                return;
        c->args = (char *) (uintptr_t) start;
        c->args_size = (size_t) (end - start);
}

/* Makes ps show the title instead of the command line of the vmuser that forked us ("vmuser
 * attach web01 alice bob", for as long as the export lasts). With CAP_SYS_RESOURCE the kernel
 * is pointed at the title itself (its start is below the stack, so ARG_START goes first to keep
 * start < end); without it (containers often drop it) the title is written over our own argv
 * area, cut to its size, which is what setproctitle() does. Only memcpy/memset after the fork. */
static void command_line_set(const struct command_line *c) {
        if (prctl(PR_SET_MM, PR_SET_MM_ARG_START, (unsigned long) c->title, 0, 0) == 0) {
                if (prctl(PR_SET_MM, PR_SET_MM_ARG_END, (unsigned long) c->title + c->title_size, 0, 0) == 0)
                        return;
                /* Half moved, the command line would span from the title to the stack: undo. */
                if (!c->args || prctl(PR_SET_MM, PR_SET_MM_ARG_START, (unsigned long) c->args, 0, 0) < 0)
                        return;
        }
        if (!c->args || c->args_size < 2)
                return;
        memset(c->args, 0, c->args_size);
        memcpy(c->args, c->title, c->title_size < c->args_size - 1 ? c->title_size : c->args_size - 1);
}

/* The supervisor: fds 0-2 are set, the report pipe is fd 3, for an unprivileged start the
 * listening socket is fd 4, nothing else is open. cl is what ps is to show for it (see
 * command_line_set()). */
_Noreturn static void supervisor_main(const char *path, char *const argv[], const struct command_line *cl,
                                      const struct userns_launch *u) {
        struct supervisor_report r = {};
        int errpipe[2], sync[2] = { -1, -1 }, go[2] = { -1, -1 }, status;
        pid_t pid;

        /* Keep no directory of the caller's busy (an unmount of it would fail for as long as the
         * export lasts). */
        (void) !chdir("/");
        (void) prctl(PR_SET_CHILD_SUBREAPER, 1);
        (void) prctl(PR_SET_NAME, "vmuser-vfs-sup");
        command_line_set(cl);
        if (pipe2(errpipe, O_CLOEXEC) < 0)
                _exit(1);
        if (u->enabled && (pipe2(sync, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0))
                _exit(1);
        pid = fork();
        if (pid < 0)
                _exit(1);
        if (pid == 0) {
                struct launch_error le = {};
                close(3);
                if (u->enabled) {
                        le.stage = virtiofsd_userns_enter(u, sync[1], go[0]);
                        if (le.stage == LAUNCH_OK &&
                            (dup2(SUPERVISOR_LISTEN_FD, VIRTIOFSD_LISTEN_FD) < 0 || close(SUPERVISOR_LISTEN_FD) < 0))
                                le.stage = LAUNCH_EXEC;
                }
                if (le.stage == LAUNCH_OK) {
                        execv(path, argv);
                        le.stage = LAUNCH_EXEC;
                }
                le.err = errno;
                (void) !write(errpipe[1], &le, sizeof(le));
                _exit(127);
        }
        close(errpipe[1]);
        if (u->enabled) {
                char c;
                close(sync[1]);
                close(go[0]);
                close(SUPERVISOR_LISTEN_FD); /* virtiofsd alone holds it: if it dies, QEMU's connect fails */
                if (read(sync[0], &c, 1) == 1) {
                        int err = virtiofsd_userns_write_maps(pid, u);
                        if (err) {
                                r.failed = (struct launch_error){ LAUNCH_MAPS, err };
                                (void) kill(pid, SIGKILL);
                        } else
                                (void) !write(go[1], &c, 1);
                }
                close(sync[0]);
                close(go[1]);
        }
        r.supervisor = getpid();
        r.pid = pid;
        if (r.failed.stage == LAUNCH_OK &&
            read(errpipe[0], &r.failed, sizeof(r.failed)) != (ssize_t) sizeof(r.failed))
                r.failed = (struct launch_error){};
        close(errpipe[0]);
        (void) !write(3, &r, sizeof(r));
        close(3);

        for (;;) {
                pid_t w = waitpid(-1, &status, 0);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        break; /* ECHILD: everybody is gone */
                }
                if (w == pid)
                        supervisor_note_exit(pid, status);
        }
        _exit(0);
}

/* What the supervisor reported over rd: virtiofsd's PID, or the stage where starting it failed.
 * *ret gets both PIDs with their start times. */
static int supervisor_report_read(int rd, const char *path, const struct virtiofsd_config *cfg, struct daemon_ids *ret,
                                  struct verr *e) {
        struct pollfd pfd = { .fd = rd, .events = POLLIN };
        struct supervisor_report r = {};

        if (poll(&pfd, 1, DETECT_TIMEOUT_MS) <= 0 || read(rd, &r, sizeof(r)) != (ssize_t) sizeof(r) || r.pid <= 0)
                return verr_set(e, -ECHILD, "the virtiofsd supervisor did not report back");
        if (r.failed.stage != LAUNCH_OK) {
                int err = r.failed.err > 0 ? r.failed.err : EIO;
                if (r.failed.stage == LAUNCH_EXEC)
                        return verr_set(e, -err, "cannot execute '%s': %s", path, strerror(err));
                return verr_set(e, -err, "cannot start virtiofsd as host ID %u: %s failed: %s",
                                (unsigned) cfg->server_uid, launch_stage_to_string(r.failed.stage), strerror(err));
        }

        struct daemon_ids ids = { .pid = r.pid, .supervisor = r.supervisor };
        uint64_t t;
        /* Either may be gone already: wait_for_socket() then reports it, with the log. */
        if (proc_stat_read(ids.pid, NULL, &t) >= 0)
                ids.starttime = t;
        if (proc_stat_read(ids.supervisor, NULL, &t) >= 0)
                ids.supervisor_starttime = t;
        *ret = ids;
        return 0;
}

int virtiofsd_daemon_start(const char *path, char **argv, const struct virtiofsd_config *cfg, int state_fd,
                        struct daemon_ids *ret, struct verr *e) {
        _cleanup_close_ int log_fd = -1, null_fd = -1, rd = -1, wr = -1, listen_fd = -1, hi_listen = -1;
        const char *socket_path = cfg->socket_path;
        struct userns_launch u = {};
        _cleanup_free_ char *title = NULL;
        int p[2], status, title_len;
        pid_t pid;

        /* Made before the fork: the children may not allocate. "NAME\0SOCKET\0", as an argv. */
        title_len = asprintf(&title, VIRTIOFSD_SUPERVISOR_TITLE "%c%s", '\0', socket_path);
        if (title_len < 0)
                return -ENOMEM;
        struct command_line cl = { .title = title, .title_size = (size_t) title_len + 1 };
        command_line_find(&cl);

        log_fd = openat(state_fd, VIRTIOFSD_LOG_FILE, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY,
                        0600);
        if (log_fd < 0)
                return verr_set(e, negative_errno(), "cannot open the virtiofsd log: %m");
        null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null_fd < 0)
                return verr_set(e, negative_errno(), "cannot open /dev/null: %m");
        if (pipe2(p, O_CLOEXEC) < 0)
                return negative_errno();
        rd = p[0], wr = p[1];

        /* Move what the children need above the standard fds, so the dup2()s below cannot clobber
         * one another even if the caller runs with stdin/stdout/stderr closed. */
        _cleanup_close_ int hi_log = fcntl(log_fd, F_DUPFD_CLOEXEC, 10), hi_null = fcntl(null_fd, F_DUPFD_CLOEXEC, 10),
                            hi_wr = fcntl(wr, F_DUPFD_CLOEXEC, 10);
        if (hi_log < 0 || hi_null < 0 || hi_wr < 0)
                return negative_errno();
        if (cfg->unprivileged) {
                int k = virtiofsd_listen_socket(socket_path, &listen_fd, e);
                if (k < 0)
                        return k;
                hi_listen = fcntl(listen_fd, F_DUPFD_CLOEXEC, 10);
                if (hi_listen < 0)
                        return negative_errno();
                virtiofsd_userns_prepare(cfg, &u);
                (void) mkdir("/run/vmuser", 0755);
                if ((mkdir(VIRTIOFSD_USERNS_ROOT, 0755) < 0 && errno != EEXIST) || (mkdir(u.root, 0755) < 0 && errno != EEXIST))
                        return verr_set(e, negative_errno(), "cannot create '%s': %m", u.root);
        }

        pid = fork();
        if (pid < 0)
                return verr_set(e, negative_errno(), "cannot fork: %m");
        if (pid == 0) {
                /* The intermediate child: new session, fork the supervisor, go away. */
                virtiofsd_child_reset_signals();
                if (setsid() < 0)
                        _exit(1);
                pid_t s = fork();
                if (s != 0)
                        _exit(s < 0 ? 1 : 0);
                if (dup2(hi_null, 0) < 0 || dup2(hi_log, 1) < 0 || dup2(hi_log, 2) < 0 || dup2(hi_wr, 3) < 0)
                        _exit(1);
                if (u.enabled && dup2(hi_listen, SUPERVISOR_LISTEN_FD) < 0)
                        _exit(1);
                close_range(u.enabled ? SUPERVISOR_LISTEN_FD + 1 : SUPERVISOR_LISTEN_FD, ~0U, 0);
                supervisor_main(path, argv, &cl, &u);
        }
        close(TAKE_FD(wr));
        close(TAKE_FD(hi_wr));
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return negative_errno();
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return verr_set(e, -ECHILD, "could not start the virtiofsd supervisor");

        return supervisor_report_read(rd, path, cfg, ret, e);
}

/* The last lines of the log (at most ~300 bytes), on one line, for an error message. */
void virtiofsd_daemon_log_tail(int state_fd, char *buf, size_t size) {
        _cleanup_close_ int fd = openat(state_fd, VIRTIOFSD_LOG_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        char raw[320];
        off_t end;
        ssize_t n;
        size_t o = 0;

        buf[0] = '\0';
        if (fd < 0)
                return;
        end = lseek(fd, 0, SEEK_END);
        if (end < 0)
                return;
        n = pread(fd, raw, sizeof(raw) - 1, end > (off_t) sizeof(raw) - 1 ? end - (off_t) sizeof(raw) + 1 : 0);
        if (n <= 0)
                return;
        raw[n] = '\0';
        for (char *p = raw; *p && o + 4 < size; p++) {
                unsigned char c = (unsigned char) *p;
                if (c == '\n') {
                        if (o > 0 && p[1])
                                buf[o++] = ' ', buf[o++] = '/', buf[o++] = ' ';
                } else if (c >= 0x20 && c < 0x7f)
                        buf[o++] = (char) c;
        }
        buf[o] = '\0';
}

/* "PID STARTTIME SUPERVISOR_PID SUPERVISOR_STARTTIME" */
int virtiofsd_daemon_read_pid_file(int state_fd, struct daemon_ids *ret) {
        char buf[128];
        long pid, sup = 0;
        unsigned long long starttime, sup_starttime = 0;
        int k = read_small_file_at(state_fd, VIRTIOFSD_PID_FILE, buf, sizeof(buf));

        if (k < 0)
                return k;
        buf[strcspn(buf, "\n")] = '\0';
        k = sscanf(buf, "%ld %llu %ld %llu", &pid, &starttime, &sup, &sup_starttime);
        if ((k != 2 && k != 4) || pid <= 1 || pid > INT32_MAX || sup < 0 || sup > INT32_MAX || sup == 1)
                return -EBADMSG;
        *ret = (struct daemon_ids){ (pid_t) pid, starttime, (pid_t) sup, sup_starttime };
        return 0;
}

/* Waits for a pidfd to become readable (the process exited). */
static bool pidfd_wait(int pidfd, int timeout_ms) {
        int64_t deadline = now_ms() + timeout_ms;
        for (;;) {
                struct pollfd pfd = { .fd = pidfd, .events = POLLIN };
                int k = poll(&pfd, 1, ms_left(deadline));
                if (k > 0)
                        return true;
                if (k == 0 || errno != EINTR)
                        return false;
        }
}

/* A pidfd for pid, if pid is still the process that started at starttime (-ESRCH if not). The
 * pidfd is opened first and the identity checked after: if the PID was recycled in between, the
 * start time tells, and the pidfd never points at a process we did not check. */
static int pidfd_open_checked(pid_t pid, unsigned long long starttime, int *ret) {
        _cleanup_close_ int fd = pidfd_open(pid, 0);
        int k;

        if (fd < 0)
                return errno == ESRCH ? -ESRCH : negative_errno();
        k = proc_is_alive(pid, starttime);
        if (k < 0)
                return k;
        if (k == 0)
                return -ESRCH;
        *ret = TAKE_FD(fd);
        return 0;
}

/* SIGTERM, then SIGKILL when it has not exited after timeout_ms. */
static int terminate(int pidfd, pid_t pid, int timeout_ms, struct verr *e) {
        if (pidfd_send_signal(pidfd, SIGTERM, NULL, 0) < 0 && errno != ESRCH)
                return verr_set(e, negative_errno(), "cannot signal virtiofsd (pid %d): %m", (int) pid);
        if (pidfd_wait(pidfd, timeout_ms))
                return 0;
        if (pidfd_send_signal(pidfd, SIGKILL, NULL, 0) < 0 && errno != ESRCH)
                return verr_set(e, negative_errno(), "cannot kill virtiofsd (pid %d): %m", (int) pid);
        if (pidfd_wait(pidfd, STOP_KILL_WAIT_MS))
                return 0;
        return verr_set(e, -ETIMEDOUT, "virtiofsd (pid %d) did not exit after SIGKILL", (int) pid);
}

/* SIGKILL to the supervisor's children: what is left of virtiofsd once its main process is gone. */
static void kill_children(pid_t supervisor) {
        char path[80];
        _cleanup_fclose_ FILE *f = NULL;
        long child;

        snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int) supervisor, (int) supervisor);
        f = fopen(path, "re");
        if (!f)
                return;
        while (fscanf(f, "%ld", &child) == 1)
                if (child > 1 && child <= INT32_MAX)
                        (void) kill((pid_t) child, SIGKILL);
}

int virtiofsd_daemon_stop(int state_fd, int timeout_ms, struct verr *e) {
        _cleanup_close_ int pidfd = -1, supervisor_fd = -1;
        struct daemon_ids ids;
        int k, stopped = 0;

        k = virtiofsd_daemon_read_pid_file(state_fd, &ids);
        if (k == -ENOENT)
                return 0;
        if (k < 0)
                return verr_set(e, k, "cannot read the virtiofsd pid file: %s", strerror(-k));
        k = pidfd_open_checked(ids.pid, ids.starttime, &pidfd);
        if (k < 0 && k != -ESRCH)
                return verr_set(e, k, "cannot open process %d: %s", (int) ids.pid, strerror(-k));
        if (ids.supervisor > 0) {
                k = pidfd_open_checked(ids.supervisor, ids.supervisor_starttime, &supervisor_fd);
                if (k < 0 && k != -ESRCH)
                        return verr_set(e, k, "cannot open process %d: %s", (int) ids.supervisor, strerror(-k));
        }

        if (pidfd >= 0) {
                k = terminate(pidfd, ids.pid, timeout_ms, e);
                if (k < 0)
                        return k;
                stopped = 1;
        }
        /* In its namespace sandbox virtiofsd serves from a child process, which gets SIGTERM only
         * when the main process is gone (PR_SET_PDEATHSIG) and may take a moment; it ends up with
         * the supervisor, which exits once no child is left. Wait for that, so nothing outlives
         * the stop. */
        if (supervisor_fd >= 0 && !pidfd_wait(supervisor_fd, timeout_ms)) {
                kill_children(ids.supervisor);
                if (!pidfd_wait(supervisor_fd, STOP_KILL_WAIT_MS))
                        return verr_set(e, -ETIMEDOUT, "the virtiofsd supervisor (pid %d) did not finish",
                                        (int) ids.supervisor);
                stopped = 1;
        }
        return stopped;
}
