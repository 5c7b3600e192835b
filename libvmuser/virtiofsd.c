/* virtiofsd.c: detecting, starting, watching and stopping virtiofsd (see virtiofsd.h).
 *
 * Start, without systemd: fork -> the child starts a new session and forks the supervisor, then
 * exits (so the supervisor is nobody's child but init's and outlives us) -> the supervisor makes
 * itself a child subreaper, points stdin at /dev/null and stdout/stderr at the log, forks and
 * execs virtiofsd, reports "PID, exec errno" back over a pipe, and then reaps until no child is
 * left (virtiofsd's namespace sandbox forks an inner process, which ends up with us too) ->
 * the caller writes the pid file and polls until the socket listens or the process is gone.
 * Everything between fork and exec is async-signal-safe, so a threaded caller is fine.
 *
 * Start, with systemd: StartTransientUnit with ExecStart= and sandboxing properties; the unit
 * name goes to virtiofsd.unit; readiness is the same socket poll, liveness is ActiveState. */
#include "virtiofsd.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <grp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "atomic-file.h"
#include "macro.h"
#include "proc-util.h"
#include "time-util.h"

#define DETECT_TIMEOUT_MS 5000
#define DETECT_OUTPUT_MAX (64u * 1024u)
#define STOP_KILL_WAIT_MS 5000
#define POLL_STEP_MS 20

static void sleep_ms(int ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
}

const char *virtiofsd_flavour_to_string(enum virtiofsd_flavour f) {
        return f == VIRTIOFSD_FLAVOUR_RUST ? "rust" : "c";
}

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
static void child_reset_signals(void) {
        static const int sigs[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM };
        sigset_t none;

        for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
                signal(sigs[i], SIG_DFL);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Runs path with one argument, collecting up to DETECT_OUTPUT_MAX bytes of stdout+stderr. */
static int run_capture(const char *path, const char *arg, char **ret_out) {
        _cleanup_close_ int rd = -1, wr = -1, null_fd = -1;
        _cleanup_free_ char *out = NULL;
        int64_t deadline = now_ms() + DETECT_TIMEOUT_MS;
        size_t size = 0;
        int p[2], status;
        pid_t pid;

        out = malloc(DETECT_OUTPUT_MAX + 1);
        null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (!out || null_fd < 0 || pipe2(p, O_CLOEXEC) < 0)
                return out ? negative_errno() : -ENOMEM;
        rd = p[0], wr = p[1];

        pid = fork();
        if (pid < 0)
                return negative_errno();
        if (pid == 0) {
                char *argv[] = { (char *) path, (char *) arg, NULL };
                (void) setpgid(0, 0);
                child_reset_signals();
                if (dup2(null_fd, 0) < 0 || dup2(wr, 1) < 0 || dup2(wr, 2) < 0)
                        _exit(127);
                execv(path, argv);
                _exit(127);
        }
        close(TAKE_FD(wr));

        for (;;) {
                struct pollfd pfd = { .fd = rd, .events = POLLIN };
                char sink[4096];
                int left = ms_left(deadline);
                ssize_t n;

                int r;

                if (left == 0) {
                        /* Its own process group: whatever it started goes too. */
                        kill(-pid, SIGKILL);
                        break;
                }
                r = poll(&pfd, 1, left);
                if (r < 0 && errno != EINTR) {
                        kill(-pid, SIGKILL);
                        break;
                }
                if (r <= 0)
                        continue;
                if (size < DETECT_OUTPUT_MAX)
                        n = read(rd, out + size, DETECT_OUTPUT_MAX - size);
                else
                        n = read(rd, sink, sizeof(sink));
                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (n <= 0)
                        break;
                if (size < DETECT_OUTPUT_MAX)
                        size += (size_t) n;
        }
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return negative_errno();
        out[size] = '\0';
        *ret_out = TAKE_PTR(out);
        if (WIFSIGNALED(status))
                return -ETIMEDOUT;
        return WEXITSTATUS(status);
}

static int detect_one(const char *path, struct virtiofsd_binary *ret, struct verr *e) {
        _cleanup_free_ char *help = NULL, *version = NULL;
        struct virtiofsd_binary b = {};
        int k;

        if (strlen(path) >= sizeof(b.path))
                return verr_set(e, -ENAMETOOLONG, "virtiofsd path '%s' is too long", path);
        if (access(path, X_OK) < 0)
                return verr_set(e, negative_errno(), "cannot execute virtiofsd '%s': %m", path);

        k = run_capture(path, "--help", &help);
        if (k < 0)
                return verr_set(e, k, "running '%s --help' failed: %s", path, strerror(-k));
        if (k == 127)
                return verr_set(e, -ENOEXEC, "'%s' could not be executed", path);

        if (strstr(help, "--shared-dir")) {
                b.flavour = VIRTIOFSD_FLAVOUR_RUST;
                b.translate_ids = strstr(help, "--translate-uid") && strstr(help, "--translate-gid");
                b.read_only = strstr(help, "--readonly") != NULL;
        } else if (strstr(help, "source=") && strstr(help, "--socket-path") && strstr(help, "sandbox=")) {
                b.flavour = VIRTIOFSD_FLAVOUR_C;
        } else
                return verr_set(e, -ENOEXEC, "'%s' does not look like virtiofsd (no --shared-dir or -o source= in "
                                             "its --help)",
                                path);

        if (run_capture(path, "--version", &version) >= 0) {
                size_t n = strcspn(version, "\r\n");
                snprintf(b.version, sizeof(b.version), "%.*s", (int) n, version);
        }
        memcpy(b.path, path, strlen(path) + 1);
        *ret = b;
        return 0;
}

int virtiofsd_detect(const char *path, struct virtiofsd_binary *ret, struct verr *e) {
        _cleanup_free_ char *search = NULL;
        const char *env_path;
        char *save = NULL;

        if (path)
                return detect_one(path, ret, e);

        if (detect_one("/usr/libexec/virtiofsd", ret, NULL) == 0)
                return 0;
        env_path = getenv("PATH");
        search = strdup(env_path && *env_path ? env_path : "/usr/local/bin:/usr/bin:/bin");
        if (!search)
                return -ENOMEM;
        for (char *dir = strtok_r(search, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
                char candidate[PATH_MAX];
                if (dir[0] != '/')
                        continue; /* never run something relative to the current directory as root */
                if (snprintf(candidate, sizeof(candidate), "%s/virtiofsd", dir) >= (int) sizeof(candidate))
                        continue;
                if (access(candidate, X_OK) == 0 && detect_one(candidate, ret, NULL) == 0)
                        return 0;
        }
        if (detect_one("/usr/lib/qemu/virtiofsd", ret, NULL) == 0)
                return 0;
        return verr_set(e, -ENOENT, "no virtiofsd found (looked for /usr/libexec/virtiofsd, virtiofsd in PATH and "
                                    "/usr/lib/qemu/virtiofsd; on Debian 12 it comes with qemu-system-common)");
}

void virtiofsd_argv_free(char **argv) {
        for (char **a = argv; a && *a; a++)
                free(*a);
        free(argv);
}

void virtiofsd_argv_freep(char ***argv) {
        virtiofsd_argv_free(*argv);
}

struct argv_builder {
        char **v;
        size_t n;
        int error;
};

#define ARGV_MAX 24

static void argv_add(struct argv_builder *a, const char *fmt, ...) _printf_(2, 3);
static void argv_add(struct argv_builder *a, const char *fmt, ...) {
        va_list ap;
        char *s;

        if (a->error)
                return;
        if (a->n + 1 >= ARGV_MAX) {
                a->error = -E2BIG;
                return;
        }
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0) {
                a->error = -ENOMEM;
                s = NULL;
        }
        va_end(ap);
        if (s)
                a->v[a->n++] = s;
}

static bool option_value_is_safe(const char *s) {
        /* The C virtiofsd splits -o values at ',' and has no way to escape one. */
        return s && s[0] == '/' && !strchr(s, ',') && !strchr(s, '\n');
}

int virtiofsd_build_argv(const struct virtiofsd_binary *b, const struct virtiofsd_config *cfg, char ***ret,
                         struct verr *e) {
        struct argv_builder a = {};
        char userns_root[64];
        const char *source;

        if (!option_value_is_safe(cfg->shared_dir))
                return verr_set(e, -EINVAL, "shared directory '%s' must be an absolute path without ','",
                                strempty(cfg->shared_dir));
        if (!option_value_is_safe(cfg->socket_path))
                return verr_set(e, -EINVAL, "socket path '%s' must be an absolute path without ','",
                                strempty(cfg->socket_path));
        if (cfg->translate_ids && !b->translate_ids)
                return verr_set(e, -EOPNOTSUPP, "virtiofsd '%s' cannot translate IDs", b->path);

        /* Unprivileged, virtiofsd serves the directory its launcher mounted and gets the socket as a
         * descriptor (see virtiofsd.h); the namespace, not virtiofsd, maps the IDs. */
        snprintf(userns_root, sizeof(userns_root), VIRTIOFSD_USERNS_ROOT "/%u", (unsigned) cfg->server_uid);
        source = cfg->unprivileged ? userns_root : cfg->shared_dir;
        if (cfg->unprivileged && cfg->translate_ids)
                return verr_set(e, -EINVAL, "an unprivileged virtiofsd gets its IDs mapped by its user namespace");
        if (cfg->unprivileged && (cfg->server_uid == 0 || cfg->server_gid == 0))
                return verr_set(e, -EINVAL, "an unprivileged virtiofsd needs a host ID other than 0");

        a.v = calloc(ARGV_MAX, sizeof(char *));
        if (!a.v)
                return -ENOMEM;
        argv_add(&a, "%s", b->path);
        if (cfg->unprivileged)
                argv_add(&a, "--fd=%d", VIRTIOFSD_LISTEN_FD);
        else
                argv_add(&a, "--socket-path=%s", cfg->socket_path);
        if (b->flavour == VIRTIOFSD_FLAVOUR_C) {
                /* Read-only comes from the staging mount: this virtiofsd has no switch for it. */
                argv_add(&a, "-o");
                argv_add(&a, "source=%s", source);
                argv_add(&a, "-o");
                argv_add(&a, "sandbox=namespace");
                argv_add(&a, "-o");
                argv_add(&a, "cache=auto");
                argv_add(&a, "-o");
                argv_add(&a, "modcaps=%s", VIRTIOFSD_MODCAPS);
                argv_add(&a, "-o");
                argv_add(&a, "no_xattr");
                argv_add(&a, "-o");
                argv_add(&a, "log_level=warn");
        } else {
                argv_add(&a, "--shared-dir=%s", source);
                argv_add(&a, "--sandbox=namespace");
                argv_add(&a, "--cache=auto");
                argv_add(&a, "--modcaps=%s", VIRTIOFSD_MODCAPS);
                argv_add(&a, "--log-level=warn");
                if (cfg->read_only && b->read_only)
                        argv_add(&a, "--readonly");
                if (cfg->translate_ids) {
                        argv_add(&a, "--translate-uid=map:%lu:%lu:1", (unsigned long) cfg->guest_uid,
                                 (unsigned long) cfg->host_uid);
                        argv_add(&a, "--translate-gid=map:%lu:%lu:1", (unsigned long) cfg->guest_gid,
                                 (unsigned long) cfg->host_gid);
                }
        }
        if (a.error) {
                virtiofsd_argv_free(a.v);
                return a.error;
        }
        *ret = a.v;
        return 0;
}

int virtiofsd_userns_available(void) {
        int status;
        pid_t pid = fork();

        if (pid < 0)
                return 0;
        if (pid == 0)
                _exit(unshare(CLONE_NEWUSER) < 0 ? 1 : 0);
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return 0;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* ---- /proc helpers ------------------------------------------------------------------------ */

/* 1: a live process with that pid and start time; 0: gone (or a zombie, or another process). */
static int pid_is_alive(pid_t pid, unsigned long long starttime) {
        uint64_t t;
        char state;
        int k = proc_stat_read(pid, &state, &t);

        /* -ENOMEDIUM: without /proc, as before, nothing counts as alive. */
        if (k == -ENOENT || k == -ENOMEDIUM)
                return 0;
        if (k < 0)
                return k;
        return t == starttime && !proc_state_is_dead(state);
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

/* The last lines of the log (at most ~300 bytes), on one line, for an error message. */
static void log_tail(int state_fd, char *buf, size_t size) {
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

/* ---- the supervised daemon ---------------------------------------------------------------- */

/* Where starting virtiofsd failed, with errno: reported by the child (or, for the maps, by the
 * supervisor) over a pipe. */
enum launch_stage {
        LAUNCH_OK,
        LAUNCH_EXEC,
        LAUNCH_CHDIR,
        LAUNCH_DROP_IDS,
        LAUNCH_UNSHARE,
        LAUNCH_MAPS,
        LAUNCH_CAPS,
};

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

struct launch_error {
        int stage;
        int err;
};

struct supervisor_report {
        pid_t supervisor;
        pid_t pid;
        struct launch_error failed; /* stage LAUNCH_OK: it runs */
};

/* An unprivileged start, everything prepared before the fork (the children may not allocate). */
struct userns_launch {
        bool enabled;
        const char *dir;          /* bind-mounted on root while still root */
        char root[64];            /* VIRTIOFSD_USERNS_ROOT/UID */
        uid_t uid;                /* the file server's host IDs */
        gid_t gid;
        char uid_map[64], gid_map[64];
        uint64_t caps;            /* what virtiofsd keeps, in its namespace */
};

/* In the supervisor and its child, the listening socket of an unprivileged start. */
#define SUPERVISOR_LISTEN_FD 4

/* What the pid file holds: virtiofsd and its supervisor, each with its start time. */
struct daemon_ids {
        pid_t pid;
        unsigned long long starttime;
        pid_t supervisor;
        unsigned long long supervisor_starttime;
};

/* Async-signal-safe decimal formatting for the supervisor. */
static size_t fmt_ulong(char *buf, unsigned long v) {
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
        n += fmt_ulong(msg + n, (unsigned long) pid);
        memcpy(msg + n, b, strlen(b)), n += strlen(b);
        n += fmt_ulong(msg + n, (unsigned long) (WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status)));
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

/* Writes s to /proc/PID/NAME; 0 or errno. Async-signal-safe. */
static int write_proc_file(pid_t pid, const char *name, const char *s) {
        char path[64];
        size_t n = 0, len = strlen(s);
        int fd, err = 0;

        memcpy(path, "/proc/", 6), n = 6;
        n += fmt_ulong(path + n, (unsigned long) pid);
        path[n++] = '/';
        memcpy(path + n, name, strlen(name) + 1);
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return errno;
        if (write(fd, s, len) != (ssize_t) len)
                err = errno ? errno : EIO;
        close(fd);
        return err;
}

static int capset_raw(uint64_t permitted, uint64_t effective, uint64_t inheritable) {
        struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct d[2] = {
                { (uint32_t) effective, (uint32_t) permitted, (uint32_t) inheritable },
                { (uint32_t) (effective >> 32), (uint32_t) (permitted >> 32), (uint32_t) (inheritable >> 32) },
        };
        return (int) syscall(SYS_capset, &h, d);
}

/* The child of an unprivileged start, still root on the host: mount the directory where the
 * server can reach it, in a mount namespace of its own, make the user namespace, let the
 * supervisor write the maps, become the server's ID inside (its host ID outside; all
 * capabilities in the host's namespace go), then keep only u->caps (bounding set, and ambient so
 * they survive the exec of a binary run by an ID that is not 0 in its namespace). Returns the
 * failed stage (errno set) or LAUNCH_OK. */
static int child_enter_userns(const struct userns_launch *u, int sync_wr, int go_rd) {
        struct rlimit nofile = { 1048576, 1048576 };
        char c = 0;

        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0 ||
            mount(u->dir, u->root, NULL, MS_BIND, NULL) < 0 || chdir("/") < 0)
                return LAUNCH_CHDIR;
        /* virtiofsd wants many descriptors; only here can the hard limit still be raised. */
        (void) setrlimit(RLIMIT_NOFILE, &nofile);
        if (setgroups(0, NULL) < 0)
                return LAUNCH_DROP_IDS;
        /* Made while still root: the namespace's owner is root, so no host process running as
         * the server's ID has any capability in it. */
        if (unshare(CLONE_NEWUSER) < 0)
                return LAUNCH_UNSHARE;
        if (write(sync_wr, &c, 1) != 1 || read(go_rd, &c, 1) != 1) {
                errno = EPROTO;
                return LAUNCH_MAPS; /* the supervisor reports why */
        }
        /* VIRTIOFSD_SERVER_INSIDE_ID is the server's host ID: everything of ours goes. */
        if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0 ||
            setresgid(VIRTIOFSD_SERVER_INSIDE_ID, VIRTIOFSD_SERVER_INSIDE_ID, VIRTIOFSD_SERVER_INSIDE_ID) < 0 ||
            setresuid(VIRTIOFSD_SERVER_INSIDE_ID, VIRTIOFSD_SERVER_INSIDE_ID, VIRTIOFSD_SERVER_INSIDE_ID) < 0 ||
            prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
                return LAUNCH_DROP_IDS;
        for (int cap = 0; cap < 64; cap++)
                if (!(u->caps & (UINT64_C(1) << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
                        return LAUNCH_CAPS;
        if (capset_raw(u->caps, u->caps, u->caps) < 0)
                return LAUNCH_CAPS;
        for (int cap = 0; cap < 64; cap++)
                if ((u->caps & (UINT64_C(1) << cap)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
                        return LAUNCH_CAPS;
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return LAUNCH_CAPS;
        return LAUNCH_OK;
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
                        le.stage = child_enter_userns(u, sync[1], go[0]);
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
                        int err = write_proc_file(pid, "setgroups", "deny");
                        if (!err)
                                err = write_proc_file(pid, "uid_map", u->uid_map);
                        if (!err)
                                err = write_proc_file(pid, "gid_map", u->gid_map);
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

/* A listening socket bound to path, for an unprivileged virtiofsd (which could not create one in
 * a root-only directory). QEMU's connection waits in the backlog until virtiofsd accepts it. */
static int listen_socket(const char *path, int *ret_fd, struct verr *e) {
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        if (fd < 0)
                return verr_set(e, negative_errno(), "cannot make a socket: %m");
        if (strlen(path) >= sizeof(sa.sun_path))
                return verr_set(e, -ENAMETOOLONG, "socket path '%s' is too long", path);
        memcpy(sa.sun_path, path, strlen(path) + 1);
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return verr_set(e, negative_errno(), "cannot bind socket '%s': %m", path);
        if (chmod(path, 0600) < 0 || listen(fd, 1) < 0) {
                int k = negative_errno();
                (void) unlink(path);
                return verr_set(e, k, "cannot listen on socket '%s': %s", path, strerror(-k));
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static uint64_t virtiofsd_capability_bounding_set(void);

static void userns_launch_prepare(const struct virtiofsd_config *cfg, struct userns_launch *u) {
        *u = (struct userns_launch){
                .enabled = true,
                .dir = cfg->shared_dir,
                .uid = cfg->server_uid,
                .gid = cfg->server_gid,
                .caps = virtiofsd_capability_bounding_set(),
        };
        snprintf(u->root, sizeof(u->root), VIRTIOFSD_USERNS_ROOT "/%u", (unsigned) cfg->server_uid);
        snprintf(u->uid_map, sizeof(u->uid_map), "%lu %lu 1\n%lu %lu 1\n", (unsigned long) VIRTIOFSD_SERVER_INSIDE_ID,
                 (unsigned long) cfg->server_uid, (unsigned long) cfg->guest_uid, (unsigned long) cfg->host_uid);
        snprintf(u->gid_map, sizeof(u->gid_map), "%lu %lu 1\n%lu %lu 1\n", (unsigned long) VIRTIOFSD_SERVER_INSIDE_ID,
                 (unsigned long) cfg->server_gid, (unsigned long) cfg->guest_gid, (unsigned long) cfg->host_gid);
}

static int start_daemon(const char *path, char **argv, const struct virtiofsd_config *cfg, int state_fd,
                        struct daemon_ids *ret, struct verr *e) {
        _cleanup_close_ int log_fd = -1, null_fd = -1, rd = -1, wr = -1, listen_fd = -1, hi_listen = -1;
        const char *socket_path = cfg->socket_path;
        struct userns_launch u = {};
        _cleanup_free_ char *title = NULL;
        struct supervisor_report r = {};
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
                int k = listen_socket(socket_path, &listen_fd, e);
                if (k < 0)
                        return k;
                hi_listen = fcntl(listen_fd, F_DUPFD_CLOEXEC, 10);
                if (hi_listen < 0)
                        return negative_errno();
                userns_launch_prepare(cfg, &u);
                (void) mkdir("/run/vmuser", 0755);
                if ((mkdir(VIRTIOFSD_USERNS_ROOT, 0755) < 0 && errno != EEXIST) || (mkdir(u.root, 0755) < 0 && errno != EEXIST))
                        return verr_set(e, negative_errno(), "cannot create '%s': %m", u.root);
        }

        pid = fork();
        if (pid < 0)
                return verr_set(e, negative_errno(), "cannot fork: %m");
        if (pid == 0) {
                /* The intermediate child: new session, fork the supervisor, go away. */
                child_reset_signals();
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

        struct pollfd pfd = { .fd = rd, .events = POLLIN };
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

/* ---- systemd ------------------------------------------------------------------------------ */

#define SD_DEST "org.freedesktop.systemd1"
#define SD_PATH "/org/freedesktop/systemd1"
#define SD_MANAGER "org.freedesktop.systemd1.Manager"
#define SD_BUS_TIMEOUT_USEC (25ull * 1000000ull)

static int bus_error(struct verr *e, int r, const sd_bus_error *error, const char *what) {
        if (error && sd_bus_error_is_set(error))
                return verr_set(e, r, "%s: %s", what, error->message ? error->message : error->name);
        return verr_set(e, r, "%s: %s", what, strerror(-r));
}

/* Capabilities virtiofsd may ever need: file access on behalf of the guest, its namespace
 * sandbox (sys_admin, sys_chroot, setpcap to drop the rest) and raising its fd limit. */
static uint64_t virtiofsd_capability_bounding_set(void) {
        static const int caps[] = { CAP_CHOWN,  CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER,
                                    CAP_FSETID, CAP_SETGID,       CAP_SETUID,          CAP_SETPCAP,
                                    CAP_SYS_ADMIN, CAP_SYS_CHROOT, CAP_SYS_RESOURCE };
        uint64_t mask = 0;
        for (size_t i = 0; i < ELEMENTSOF(caps); i++)
                mask |= UINT64_C(1) << caps[i];
        return mask;
}

static int systemd_start(const char *unit, char **argv, struct verr *e) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        char description[256];
        int r;

        r = sd_bus_open_system(&bus);
        if (r < 0)
                return bus_error(e, r, NULL, "cannot connect to the system bus");
        r = sd_bus_message_new_method_call(bus, &m, SD_DEST, SD_PATH, SD_MANAGER, "StartTransientUnit");
        if (r < 0)
                return bus_error(e, r, NULL, "cannot build StartTransientUnit");
        snprintf(description, sizeof(description), "vmuser virtiofsd (%s)", argv[1]);

        r = sd_bus_message_append(m, "ss", unit, "fail");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(sv)");
        if (r >= 0)
                r = sd_bus_message_append(
                        m, "(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)",
                        "Description", "s", description,
                        "Type", "s", "exec",
                        "CollectMode", "s", "inactive-or-failed",
                        "StandardInput", "s", "null",
                        "StandardOutput", "s", "journal",
                        "StandardError", "s", "journal",
                        "UMask", "u", (uint32_t) 0077,
                        "NoNewPrivileges", "b", 1,
                        "PrivateNetwork", "b", 1,
                        "PrivateDevices", "b", 1,
                        "ProtectKernelModules", "b", 1,
                        "ProtectKernelLogs", "b", 1,
                        "ProtectClock", "b", 1,
                        "ProtectHostname", "b", 1,
                        "RestrictRealtime", "b", 1,
                        "LockPersonality", "b", 1,
                        "MemoryDenyWriteExecute", "b", 1,
                        "CapabilityBoundingSet", "t", virtiofsd_capability_bounding_set());
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)(sv)", "RestrictAddressFamilies", "(bas)", 1, 1, "AF_UNIX",
                                          "SystemCallArchitectures", "as", 1, "native");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'r', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "ExecStart");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "a(sasb)");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(sasb)");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'r', "sasb");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", argv[0]);
        if (r >= 0)
                r = sd_bus_message_append_strv(m, argv);
        if (r >= 0)
                r = sd_bus_message_append(m, "b", 0);
        for (int i = 0; i < 4 && r >= 0; i++)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_close_container(m); /* the a(sv) */
        if (r >= 0)
                r = sd_bus_message_append(m, "a(sa(sv))", 0);
        if (r < 0)
                return bus_error(e, r, NULL, "cannot build StartTransientUnit");

        r = sd_bus_call(bus, m, SD_BUS_TIMEOUT_USEC, &error, &reply);
        if (r < 0)
                return bus_error(e, r, &error, "systemd refused to start virtiofsd");
        return 0;
}

/* The unit's ActiveState ("" when systemd does not know it) and main PID. */
static int systemd_unit_state(const char *unit, char *state, size_t size, pid_t *ret_pid, struct verr *e) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *active = NULL;
        const char *object;
        uint32_t pid = 0;
        int r;

        state[0] = '\0';
        *ret_pid = 0;
        r = sd_bus_open_system(&bus);
        if (r < 0)
                return bus_error(e, r, NULL, "cannot connect to the system bus");
        r = sd_bus_call_method(bus, SD_DEST, SD_PATH, SD_MANAGER, "GetUnit", &error, &reply, "s", unit);
        if (r < 0) {
                if (sd_bus_error_has_name(&error, "org.freedesktop.systemd1.NoSuchUnit"))
                        return 0;
                return bus_error(e, r, &error, "cannot look up the virtiofsd unit");
        }
        r = sd_bus_message_read(reply, "o", &object);
        if (r < 0)
                return bus_error(e, r, NULL, "cannot read GetUnit's reply");
        r = sd_bus_get_property_string(bus, SD_DEST, object, "org.freedesktop.systemd1.Unit", "ActiveState", &error,
                                       &active);
        if (r < 0)
                return bus_error(e, r, &error, "cannot read the virtiofsd unit's state");
        (void) sd_bus_get_property_trivial(bus, SD_DEST, object, "org.freedesktop.systemd1.Service", "MainPID", NULL,
                                           'u', &pid);
        snprintf(state, size, "%s", active);
        *ret_pid = (pid_t) pid;
        return 0;
}

static int systemd_stop(const char *unit, int timeout_ms, struct verr *e) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int64_t deadline = now_ms() + timeout_ms + STOP_KILL_WAIT_MS;
        char state[32];
        pid_t pid;
        int r;

        r = systemd_unit_state(unit, state, sizeof(state), &pid, e);
        if (r < 0)
                return r;
        if (!state[0] || streq(state, "inactive") || streq(state, "failed")) {
                if (streq(state, "failed") && sd_bus_open_system(&bus) >= 0)
                        (void) sd_bus_call_method(bus, SD_DEST, SD_PATH, SD_MANAGER, "ResetFailedUnit", NULL, NULL, "s",
                                                  unit);
                return 0;
        }
        r = sd_bus_open_system(&bus);
        if (r < 0)
                return bus_error(e, r, NULL, "cannot connect to the system bus");
        r = sd_bus_call_method(bus, SD_DEST, SD_PATH, SD_MANAGER, "StopUnit", &error, NULL, "ss", unit, "replace");
        if (r < 0 && !sd_bus_error_has_name(&error, "org.freedesktop.systemd1.NoSuchUnit"))
                return bus_error(e, r, &error, "systemd refused to stop virtiofsd");
        /* StopUnit only queues a job (TimeoutStopSec= ends in SIGKILL); wait for it to finish. */
        for (;;) {
                r = systemd_unit_state(unit, state, sizeof(state), &pid, e);
                if (r < 0)
                        return r;
                if (!state[0] || streq(state, "inactive") || streq(state, "failed"))
                        return 1;
                if (ms_left(deadline) == 0)
                        return verr_set(e, -ETIMEDOUT, "virtiofsd unit %s did not stop in time", unit);
                sleep_ms(POLL_STEP_MS * 5);
        }
}

/* ---- start, state, stop ------------------------------------------------------------------- */

/* "PID STARTTIME SUPERVISOR_PID SUPERVISOR_STARTTIME" */
static int read_pid_file(int state_fd, struct daemon_ids *ret) {
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

static bool unit_name_is_valid(const char *unit) {
        size_t n = strlen(unit);
        if (n < 9 || n >= 256 || strcmp(unit + n - 8, ".service") != 0)
                return false;
        for (const char *p = unit; *p; p++)
                if (!(((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')) ||
                      strchr(":-_.", *p)))
                        return false;
        return true;
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
                        int k = systemd_unit_state(proc->unit, state, sizeof(state), &pid, e);
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
                        alive = pid_is_alive(proc->pid, starttime);
                        if (alive == 0) {
                                char tail[320];
                                sleep_ms(POLL_STEP_MS); /* give the supervisor a moment to log the status */
                                log_tail(state_fd, tail, sizeof(tail));
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
                if (!unit_name || !unit_name_is_valid(unit_name))
                        return verr_set(e, -EINVAL, "'%s' is not a valid service unit name", strempty(unit_name));
                snprintf(proc.unit, sizeof(proc.unit), "%s", unit_name);
                /* Written first: a stop after a crash right after the start must find the unit. */
                k = atomic_write_at(state_fd, VIRTIOFSD_UNIT_FILE, unit_name, strlen(unit_name), 0644);
                if (k < 0)
                        return verr_set(e, k, "cannot write %s/%s: %s", state_dir, VIRTIOFSD_UNIT_FILE, strerror(-k));
                k = systemd_start(unit_name, argv, e);
                if (k < 0) {
                        (void) unlinkat(state_fd, VIRTIOFSD_UNIT_FILE, 0);
                        return k;
                }
        } else {
                struct daemon_ids ids = {};
                k = start_daemon(argv[0], argv, cfg, state_fd, &ids, e);
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
                k = systemd_unit_state(proc.unit, active, sizeof(active), &proc.pid, e);
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
        k = read_pid_file(state_fd, &ids);
        if (k == -ENOENT)
                goto done;
        if (k < 0)
                return verr_set(e, k, "cannot read %s/%s: %s", state_dir, VIRTIOFSD_PID_FILE, strerror(-k));
        proc.pid = ids.pid;
        k = pid_is_alive(ids.pid, ids.starttime);
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
        k = pid_is_alive(pid, starttime);
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

static int daemon_stop(int state_fd, int timeout_ms, struct verr *e) {
        _cleanup_close_ int pidfd = -1, supervisor_fd = -1;
        struct daemon_ids ids;
        int k, stopped = 0;

        k = read_pid_file(state_fd, &ids);
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
                stopped = systemd_stop(unit, timeout_ms, e);
                if (stopped < 0)
                        return stopped;
                k = unlink_if_exists_at(state_fd, VIRTIOFSD_UNIT_FILE);
        } else if (k == -ENOENT) {
                stopped = daemon_stop(state_fd, timeout_ms, e);
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
