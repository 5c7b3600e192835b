/* virtiofsd-binary.c: which virtiofsd this host has, and the command line it takes (see
 * virtiofsd.h for the two flavours).
 *
 * Flow: virtiofsd_detect() -> each candidate in order (an explicit path, /usr/libexec, PATH,
 * /usr/lib/qemu) is run with --help, bounded in time and output, in a process group of its own
 * -> the flavour and its features are read from what it prints, the version from --version ->
 * virtiofsd_build_argv() turns a virtiofsd_config into that flavour's options. */
#include "virtiofsd-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "macro.h"
#include "proc-util.h"
#include "time-util.h"

#define DETECT_OUTPUT_MAX (64u * 1024u)

const char *virtiofsd_flavour_to_string(enum virtiofsd_flavour f) {
        return f == VIRTIOFSD_FLAVOUR_RUST ? "rust" : "c";
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
                virtiofsd_child_reset_signals();
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
