/* test-util.c: private-namespace set-up and process helpers for integration tests (see
 * test-util.h). */
#include "test-util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "macro.h"

static void die(const char *what) {
        fprintf(stderr, "test set-up failed: %s: %s\n", what, strerror(errno));
        exit(99);
}

void test_enter_private_run(void) {
        char nss[] = "/tmp/vmuser-test-nsswitch-XXXXXX";
        int fd;

        if (geteuid() != 0) {
                fprintf(stderr, "integration tests need root (mount namespaces); skipping\n");
                exit(77);
        }
        if (unshare(CLONE_NEWNS) < 0)
                die("unshare(CLONE_NEWNS)");
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                die("making / private");
        if (mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)
                die("mounting tmpfs on /run");
        if (mkdir("/run/userdb", 0755) < 0 || mkdir("/run/vmuser", 0755) < 0)
                die("creating /run/userdb and /run/vmuser");

        fd = mkstemp(nss);
        if (fd < 0)
                die("mkstemp for nsswitch.conf");
        const char *conf = "passwd: files systemd\ngroup: files systemd\nshadow: files systemd\n"
                           "gshadow: files systemd\nhosts: files\n";
        /* Readable by processes that dropped to a user's UID. */
        if (fchmod(fd, 0644) < 0 || write(fd, conf, strlen(conf)) != (ssize_t) strlen(conf))
                die("writing nsswitch.conf");
        close(fd);
        if (mount(nss, "/etc/nsswitch.conf", NULL, MS_BIND, NULL) < 0)
                die("bind-mounting nsswitch.conf");
        /* The bind keeps the inode alive; the name can go. */
        unlink(nss);
}

const char *test_env_path(const char *var) {
        const char *v = getenv(var);
        if (!v || !*v) {
                fprintf(stderr, "environment variable %s is not set (run through meson test)\n", var);
                abort();
        }
        return v;
}

static int read_all(int fd, char **ret) {
        size_t size = 0, cap = 4096;
        char *buf = malloc(cap);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                if (size + 1 >= cap) {
                        char *n = realloc(buf, cap *= 2);
                        if (!n) {
                                free(buf);
                                return -ENOMEM;
                        }
                        buf = n;
                }
                ssize_t k = read(fd, buf + size, cap - size - 1);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                size += (size_t) k;
        }
        buf[size] = '\0';
        *ret = buf;
        return 0;
}

int test_run(char *const argv[], const char *input, char **ret_out) {
        int in[2], out[2], status;
        pid_t pid;

        if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0)
                return -errno;
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                dup2(in[0], 0);
                dup2(out[1], 1);
                execvp(argv[0], argv);
                _exit(127);
        }
        close(in[0]);
        close(out[1]);
        if (input) {
                signal(SIGPIPE, SIG_IGN);
                (void) !write(in[1], input, strlen(input));
        }
        close(in[1]);
        _cleanup_free_ char *out_text = NULL;
        read_all(out[0], &out_text);
        close(out[0]);
        if (waitpid(pid, &status, 0) < 0)
                return -errno;
        if (ret_out)
                *ret_out = TAKE_PTR(out_text);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

size_t test_agent_argv_prefix(char *argv[], char **ret_words) {
        size_t n = 0;

        /* VMUSER_AGENT_WRAPPER (e.g. "valgrind -q --error-exitcode=99") runs the agent under a
         * checker; words are split on spaces. */
        char *wrapper = getenv("VMUSER_AGENT_WRAPPER") ? strdup(getenv("VMUSER_AGENT_WRAPPER")) : NULL;
        char *save = NULL;
        for (char *w = wrapper ? strtok_r(wrapper, " ", &save) : NULL; w && n < 15; w = strtok_r(NULL, " ", &save))
                argv[n++] = w;
        argv[n++] = (char *) test_env_path("VMUSER_AGENT");
        /* A detach ends every process of the UID and removes its files: in tests only those below
         * this scratch root (inside the test's private /run; absent unless a test builds it), never
         * another test's that happens to use the same UID. A later --cleanup-root wins. */
        argv[n++] = (char *) "--cleanup-root=" TEST_CLEANUP_ROOT;
        /* Suites whose agents do not keep running while the test looks the users up (or that
         * check the drop-in files) set VMUSER_TEST_AGENT_USERDB=dropin; a later --userdb wins. */
        if (getenv("VMUSER_TEST_AGENT_USERDB") && streq(getenv("VMUSER_TEST_AGENT_USERDB"), "dropin"))
                argv[n++] = (char *) "--userdb=dropin";
        *ret_words = wrapper;
        return n;
}

pid_t test_agent_spawn(char *const args[], int in_fd, int out_fd) {
        char *argv[64];
        _cleanup_free_ char *words = NULL;
        size_t n = test_agent_argv_prefix(argv, &words);
        pid_t pid;

        for (size_t i = 0; args && args[i] && n < 62; i++)
                argv[n++] = args[i];
        argv[n] = NULL;

        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);
                dup2(in_fd >= 0 ? in_fd : null, 0);
                dup2(out_fd >= 0 ? out_fd : null, 1);
                execvp(argv[0], argv);
                _exit(127);
        }
        return pid;
}

int test_agent_start(struct test_agent *a, char *const extra_args[]) {
        int in[2], out[2];
        char *args[64];
        size_t n = 0;

        args[n++] = (char *) "--stdio";
        for (size_t i = 0; extra_args && extra_args[i] && n < 62; i++)
                args[n++] = extra_args[i];
        args[n] = NULL;

        if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0)
                return -errno;
        a->pid = test_agent_spawn(args, in[0], out[1]);
        if (a->pid < 0)
                return a->pid;
        close(in[0]);
        close(out[1]);
        a->in_fd = in[1];
        a->out_fd = out[0];
        signal(SIGPIPE, SIG_IGN);
        return 0;
}

int test_agent_call(struct test_agent *a, const char *request, char **ret_reply) {
        size_t len = strlen(request), size = 0, cap = 1u << 20;
        _cleanup_free_ char *buf = malloc(cap + 1);

        if (!buf)
                return -ENOMEM;
        if (write(a->in_fd, request, len) != (ssize_t) len)
                return -EIO;
        if (len == 0 || request[len - 1] != '\n')
                if (write(a->in_fd, "\n", 1) != 1)
                        return -EIO;

        for (;;) {
                struct pollfd p = { .fd = a->out_fd, .events = POLLIN };
                int k = poll(&p, 1, 10000);
                if (k == 0)
                        return -ETIMEDOUT;
                if (k < 0)
                        return -errno;
                ssize_t n = read(a->out_fd, buf + size, cap - size);
                if (n <= 0)
                        return n == 0 ? -EPIPE : -errno;
                size += (size_t) n;
                char *nl = memchr(buf, '\n', size);
                if (nl) {
                        *nl = '\0';
                        char *start = buf;
                        while (*start == (char) 0xFF)
                                start++;
                        *ret_reply = strdup(start);
                        return *ret_reply ? 0 : -ENOMEM;
                }
                if (size == cap)
                        return -EMSGSIZE;
        }
}

int test_agent_stop(struct test_agent *a) {
        int status;
        if (a->pid <= 0)
                return -ECHILD;
        close(a->in_fd);
        if (waitpid(a->pid, &status, 0) < 0)
                return -errno;
        a->pid = 0;
        close(a->out_fd);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int test_agent_group_teardown(void **state) {
        struct test_agent *a = *state;
        if (a && a->pid > 0)
                (void) test_agent_stop(a);
        return 0;
}

void test_agent_case_exits_cleanly(void **state) {
        struct test_agent *a = *state;
        assert_non_null(a);
        assert_int_equal(test_agent_stop(a), 0);
}

static mode_t path_type(const char *fmt, va_list ap, char *path, size_t size) _printf_(1, 0);
static mode_t path_type(const char *fmt, va_list ap, char *path, size_t size) {
        struct stat st;
        vsnprintf(path, size, fmt, ap);
        return lstat(path, &st) == 0 ? st.st_mode & S_IFMT : 0;
}

mode_t test_path_type(const char *fmt, ...) {
        char path[PATH_MAX];
        va_list ap;
        va_start(ap, fmt);
        mode_t type = path_type(fmt, ap, path, sizeof(path));
        va_end(ap);
        return type;
}

void test_assert_absent(const char *fmt, ...) {
        char path[PATH_MAX];
        va_list ap;
        va_start(ap, fmt);
        mode_t type = path_type(fmt, ap, path, sizeof(path));
        va_end(ap);
        if (type != 0)
                fail_msg("%s still exists", path);
}

static void snapshot_append(char **buf, size_t *len, const char *fmt, ...) _printf_(3, 4);
static void snapshot_append(char **buf, size_t *len, const char *fmt, ...) {
        va_list ap;
        char *piece = NULL;
        va_start(ap, fmt);
        int n = vasprintf(&piece, fmt, ap);
        va_end(ap);
        if (n < 0)
                abort();
        *buf = realloc(*buf, *len + (size_t) n + 1);
        memcpy(*buf + *len, piece, (size_t) n + 1);
        *len += (size_t) n;
        free(piece);
}

static int name_cmp(const struct dirent **a, const struct dirent **b) {
        return strcmp((*a)->d_name, (*b)->d_name);
}

static void snapshot_walk(const char *path, char **buf, size_t *len) {
        struct dirent **list = NULL;
        int n = scandir(path, &list, NULL, name_cmp);
        for (int i = 0; i < n; i++) {
                const char *name = list[i]->d_name;
                char child[4096];
                struct stat st;
                if (streq(name, ".") || streq(name, "..")) {
                        free(list[i]);
                        continue;
                }
                snprintf(child, sizeof(child), "%s/%s", path, name);
                if (lstat(child, &st) < 0) {
                        free(list[i]);
                        continue;
                }
                snapshot_append(buf, len, "%s mode=%o uid=%u gid=%u", child, st.st_mode, st.st_uid, st.st_gid);
                if (S_ISLNK(st.st_mode)) {
                        char target[4096];
                        ssize_t k = readlink(child, target, sizeof(target) - 1);
                        target[k < 0 ? 0 : k] = '\0';
                        snapshot_append(buf, len, " -> %s\n", target);
                } else if (S_ISREG(st.st_mode)) {
                        _cleanup_free_ char *content = NULL;
                        int fd = open(child, O_RDONLY | O_CLOEXEC);
                        if (fd >= 0) {
                                read_all(fd, &content);
                                close(fd);
                        }
                        snapshot_append(buf, len, " [%s]\n", content ? content : "?");
                } else {
                        snapshot_append(buf, len, "\n");
                        if (S_ISDIR(st.st_mode))
                                snapshot_walk(child, buf, len);
                }
                free(list[i]);
        }
        free(list);
}

char *test_snapshot_dir(const char *path) {
        char *buf = strdup("");
        size_t len = 0;
        snapshot_walk(path, &buf, &len);
        return buf;
}

int test_run_capture(char **ret_out, const char *arg0, ...) {
        char *argv[16];
        size_t n = 0;
        va_list ap;

        argv[n++] = (char *) arg0;
        va_start(ap, arg0);
        while (n < 15 && (argv[n] = va_arg(ap, char *)))
                n++;
        va_end(ap);
        argv[n] = NULL;
        return test_run(argv, NULL, ret_out);
}

char *test_read_until(int fd, const char *needle, int timeout_ms) {
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

int test_wait_inotify(int fd, int want, int quiet_ms) {
        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        int n = 0;

        while (n < want) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                if (poll(&p, 1, quiet_ms) <= 0)
                        break;
                ssize_t k = read(fd, buf, sizeof(buf));
                if (k <= 0)
                        continue;
                for (char *e = buf; e < buf + k; e += sizeof(struct inotify_event) + ((struct inotify_event *) e)->len)
                        n++;
        }
        return n;
}
