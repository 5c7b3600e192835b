/* virtiofsd.c: starting, watching and stopping virtiofsd (see virtiofsd.h).
 *
 * Start: virtiofsd_start() builds the command line (virtiofsd-binary.c), removes a stale
 * socket, picks the supervisor and starts the process: a transient unit (virtiofsd-systemd.c;
 * its name goes to virtiofsd.unit first) or vmuser's own supervisor (virtiofsd-daemon.c; then
 * this writes virtiofsd.pid) -> wait_for_socket() polls until the socket listens or the process
 * is gone (the error then quotes the log, or names the unit's journal) -> on failure, stops what
 * it started. State: virtiofsd.unit means ask systemd, virtiofsd.pid means check the PID and
 * its start time. Stop: the same choice, then the state file and the socket go. */
#include "virtiofsd-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "atomic-file.h"
#include "macro.h"
#include "proc-util.h"
#include "time-util.h"

const char *virtiofsd_state_to_string(enum virtiofsd_state s) {
        switch (s) {
        case VIRTIOFSD_STATE_RUNNING:
                return "running";
        case VIRTIOFSD_STATE_DEAD:
                return "dead";
        default:
                return "none";
        }
}

/* In a child between fork and exec: default signal dispositions and an empty mask, so that a
 * caller ignoring SIGTERM or SIGPIPE does not pass that on to virtiofsd. */
void virtiofsd_child_reset_signals(void) {
        static const int sigs[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM };
        sigset_t none;

        for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
                signal(sigs[i], SIG_DFL);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Whether a listening UNIX socket is bound to path in the network namespace of pid (ours when
 * pid is 0; a systemd unit's may be private): 1 listening, 0 bound but not (yet) listening,
 * -ENOENT not listed at all (or the list unreadable). Only 1 means ready. */
static int socket_listening(const char *path, pid_t pid) {
        _cleanup_fclose_ FILE *f = NULL;
        _cleanup_free_ char *line = NULL;
        size_t cap = 0, plen = strlen(path);
        int found = -ENOENT;
        char list[64];

        if (pid > 0)
                snprintf(list, sizeof(list), "/proc/%d/net/unix", (int) pid);
        else
                snprintf(list, sizeof(list), "/proc/net/unix");
        f = fopen(list, "re");
        if (!f)
                return -ENOENT;
        while (getline(&line, &cap, f) > 0) {
                size_t len = strcspn(line, "\n");
                unsigned long flags;
                if (len < plen + 1 || memcmp(line + len - plen, path, plen) != 0 || line[len - plen - 1] != ' ')
                        continue;
                /* "Num: RefCount Protocol Flags Type St Inode Path"; __SO_ACCEPTCON = 1 << 16. */
                if (sscanf(line, "%*s %*s %*s %lx", &flags) != 1)
                        continue;
                if (flags & (1ul << 16))
                        return 1;
                found = 0;
        }
        return found;
}

/* Polls until the socket listens, or the process is gone, or the deadline passes. */
static int wait_for_socket(const char *socket_path, bool unprivileged, int state_fd, const struct virtiofsd_process *proc,
                           unsigned long long starttime, int64_t deadline, struct verr *e) {
        int64_t started = now_ms();

        for (;;) {
                struct stat st;
                int alive;

                /* Unprivileged, vmuser made the socket and it listens already; virtiofsd is ready
                 * once it has been executed in its namespace (the supervisor reported that), and
                 * stays so while it lives (see below). */
                if (stat(socket_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
                    (unprivileged || (proc->supervisor != VIRTIOFSD_SUPERVISOR_SYSTEMD &&
                                      socket_listening(socket_path, proc->pid) == 1)))
                        return 0;

                if (proc->supervisor == VIRTIOFSD_SUPERVISOR_SYSTEMD) {
                        char state[32];
                        pid_t pid;
                        int k = virtiofsd_unit_state(proc->unit, state, sizeof(state), &pid, e);
                        if (k < 0)
                                return k;
                        /* The unit has PrivateNetwork=: its socket is listed in its own network
                         * namespace, which /proc/MAINPID/net/unix shows. */
                        if (pid > 0 && stat(socket_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
                            socket_listening(socket_path, pid) == 1)
                                return 0;
                        /* Right after StartTransientUnit the job may not have run yet: only
                         * "failed", or "inactive"/unknown after a grace second, means it died. */
                        alive = !(streq(state, "failed") ||
                                  ((streq(state, "inactive") || !state[0]) && now_ms() - started > 1000));
                        if (!alive)
                                return verr_set(e, -ECHILD,
                                                "virtiofsd (unit %s) stopped during start-up; see journalctl -u %s",
                                                proc->unit, proc->unit);
                } else {
                        alive = proc_is_alive(proc->pid, starttime);
                        if (alive == 0) {
                                char tail[320];
                                sleep_ms(POLL_STEP_MS); /* give the supervisor a moment to log the status */
                                virtiofsd_daemon_log_tail(state_fd, tail, sizeof(tail));
                                return verr_set(e, -ECHILD, "virtiofsd exited during start-up: %s",
                                                tail[0] ? tail : "(nothing in its log)");
                        }
                }
                if (ms_left(deadline) == 0)
                        return verr_set(e, -ETIMEDOUT, "virtiofsd did not create its socket '%s' in time",
                                        socket_path);
                sleep_ms(POLL_STEP_MS);
        }
}

int virtiofsd_start(const struct virtiofsd_binary *b, const struct virtiofsd_config *cfg, const char *state_dir,
                    enum virtiofsd_supervisor supervisor, const char *unit_name, int timeout_ms,
                    struct virtiofsd_process *ret, struct verr *e) {
        _cleanup_(virtiofsd_argv_freep) char **argv = NULL;
        _cleanup_close_ int state_fd = -1;
        struct virtiofsd_process proc = {};
        int64_t deadline = now_ms() + timeout_ms;
        unsigned long long starttime = 0;
        char line[128];
        int k;

        k = virtiofsd_build_argv(b, cfg, &argv, e);
        if (k < 0)
                return k;
        state_fd = open(state_dir, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (state_fd < 0)
                return verr_set(e, negative_errno(), "cannot open directory '%s': %m", state_dir);
        /* Descriptors opened with O_PATH cannot be used for openat() writes below; reopen. */
        close(state_fd);
        state_fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (state_fd < 0)
                return verr_set(e, negative_errno(), "cannot open directory '%s': %m", state_dir);

        if (supervisor == VIRTIOFSD_SUPERVISOR_AUTO)
                supervisor = sd_booted() > 0 ? VIRTIOFSD_SUPERVISOR_SYSTEMD : VIRTIOFSD_SUPERVISOR_DAEMON;
        if (cfg->unprivileged)
                supervisor = VIRTIOFSD_SUPERVISOR_DAEMON; /* systemd cannot write the maps (see virtiofsd.h) */
        proc.supervisor = supervisor;

        if (unlink(cfg->socket_path) < 0 && errno != ENOENT)
                return verr_set(e, negative_errno(), "cannot remove stale socket '%s': %m", cfg->socket_path);

        if (supervisor == VIRTIOFSD_SUPERVISOR_SYSTEMD) {
                if (!unit_name || !virtiofsd_unit_name_is_valid(unit_name))
                        return verr_set(e, -EINVAL, "'%s' is not a valid service unit name", strempty(unit_name));
                snprintf(proc.unit, sizeof(proc.unit), "%s", unit_name);
                /* Written first: a stop after a crash right after the start must find the unit. */
                k = atomic_write_at(state_fd, VIRTIOFSD_UNIT_FILE, unit_name, strlen(unit_name), 0644);
                if (k < 0)
                        return verr_set(e, k, "cannot write %s/%s: %s", state_dir, VIRTIOFSD_UNIT_FILE, strerror(-k));
                k = virtiofsd_unit_start(unit_name, argv, e);
                if (k < 0) {
                        (void) unlinkat(state_fd, VIRTIOFSD_UNIT_FILE, 0);
                        return k;
                }
        } else {
                struct daemon_ids ids = {};
                k = virtiofsd_daemon_start(argv[0], argv, cfg, state_fd, &ids, e);
                if (k < 0)
                        return k;
                proc.pid = ids.pid;
                starttime = ids.starttime;
                snprintf(line, sizeof(line), "%d %llu %d %llu\n", (int) ids.pid, ids.starttime, (int) ids.supervisor,
                         ids.supervisor_starttime);
                k = atomic_write_at(state_fd, VIRTIOFSD_PID_FILE, line, strlen(line), 0644);
                if (k < 0) {
                        kill(proc.pid, SIGKILL);
                        return verr_set(e, k, "cannot write %s/%s: %s", state_dir, VIRTIOFSD_PID_FILE, strerror(-k));
                }
        }

        k = wait_for_socket(cfg->socket_path, cfg->unprivileged, state_fd, &proc, starttime, deadline, e);
        if (k < 0) {
                (void) virtiofsd_stop(state_dir, cfg->socket_path, 1000, NULL);
                return k;
        }
        if (ret)
                *ret = proc;
        return 0;
}

int virtiofsd_get_state(const char *state_dir, enum virtiofsd_state *ret_state, struct virtiofsd_process *ret,
                        struct verr *e) {
        _cleanup_close_ int state_fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        struct virtiofsd_process proc = {};
        enum virtiofsd_state state = VIRTIOFSD_STATE_NONE;
        struct daemon_ids ids;
        int k;

        if (state_fd < 0) {
                if (errno == ENOENT)
                        goto done;
                return verr_set(e, negative_errno(), "cannot open directory '%s': %m", state_dir);
        }

        k = read_small_file_at(state_fd, VIRTIOFSD_UNIT_FILE, proc.unit, sizeof(proc.unit));
        if (k >= 0) {
                char active[32];

                proc.unit[strcspn(proc.unit, "\n")] = '\0';
                proc.supervisor = VIRTIOFSD_SUPERVISOR_SYSTEMD;
                k = virtiofsd_unit_state(proc.unit, active, sizeof(active), &proc.pid, e);
                if (k < 0)
                        return k;
                state = streq(active, "active") || streq(active, "activating") || streq(active, "reloading")
                                ? VIRTIOFSD_STATE_RUNNING
                                : VIRTIOFSD_STATE_DEAD;
                goto done;
        }
        if (k != -ENOENT)
                return verr_set(e, k, "cannot read %s/%s: %s", state_dir, VIRTIOFSD_UNIT_FILE, strerror(-k));

        proc.supervisor = VIRTIOFSD_SUPERVISOR_DAEMON;
        k = virtiofsd_daemon_read_pid_file(state_fd, &ids);
        if (k == -ENOENT)
                goto done;
        if (k < 0)
                return verr_set(e, k, "cannot read %s/%s: %s", state_dir, VIRTIOFSD_PID_FILE, strerror(-k));
        proc.pid = ids.pid;
        k = proc_is_alive(ids.pid, ids.starttime);
        if (k < 0)
                return verr_set(e, k, "cannot check process %d: %s", (int) proc.pid, strerror(-k));
        state = k ? VIRTIOFSD_STATE_RUNNING : VIRTIOFSD_STATE_DEAD;

done:
        if (ret_state)
                *ret_state = state;
        if (ret)
                *ret = proc;
        return 0;
}

int virtiofsd_stop(const char *state_dir, const char *socket_path, int timeout_ms, struct verr *e) {
        _cleanup_close_ int state_fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        char unit[256];
        int k, stopped;

        if (state_fd < 0) {
                if (errno == ENOENT)
                        return 0;
                return verr_set(e, negative_errno(), "cannot open directory '%s': %m", state_dir);
        }

        k = read_small_file_at(state_fd, VIRTIOFSD_UNIT_FILE, unit, sizeof(unit));
        if (k >= 0) {
                unit[strcspn(unit, "\n")] = '\0';
                stopped = virtiofsd_unit_stop(unit, timeout_ms, e);
                if (stopped < 0)
                        return stopped;
                k = unlink_if_exists_at(state_fd, VIRTIOFSD_UNIT_FILE);
        } else if (k == -ENOENT) {
                stopped = virtiofsd_daemon_stop(state_fd, timeout_ms, e);
                if (stopped < 0)
                        return stopped;
                k = unlink_if_exists_at(state_fd, VIRTIOFSD_PID_FILE);
        } else
                return verr_set(e, k, "cannot read %s/%s: %s", state_dir, VIRTIOFSD_UNIT_FILE, strerror(-k));
        if (k < 0)
                return verr_set(e, k, "cannot remove virtiofsd's state file in '%s': %s", state_dir, strerror(-k));

        if (socket_path && unlink(socket_path) < 0 && errno != ENOENT)
                return verr_set(e, negative_errno(), "cannot remove socket '%s': %m", socket_path);
        return stopped;
}
