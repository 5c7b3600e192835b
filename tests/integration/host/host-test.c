/* host-test.c: the guest and host views of the host suite, and process helpers (see
 * host-test.h for the design). */
#include "host-test.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "macro.h"
#include "test-util.h"

#define RUN_LIMIT_SECONDS 600

static void die(const char *what) {
        fprintf(stderr, "host test set-up failed: %s: %s\n", what, strerror(errno));
        exit(99);
}

static void copy_file(const char *from, const char *to, mode_t mode) {
        _cleanup_close_ int in = open(from, O_RDONLY | O_CLOEXEC);
        _cleanup_close_ int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        char buf[65536];
        ssize_t n;

        if (in < 0 || out < 0)
                die(from);
        while ((n = read(in, buf, sizeof(buf))) > 0)
                if (write(out, buf, (size_t) n) != n)
                        die(to);
        if (n < 0)
                die(from);
        if (fchmod(out, mode) < 0)
                die(to);
}

void ht_setup(void) {
        static const struct {
                const char *name;
                mode_t mode;
        } files[] = {
                { "passwd", 0644 }, { "shadow", 0640 }, { "group", 0644 }, { "gshadow", 0640 }, { "login.defs", 0644 },
        };

        test_enter_private_run();
        if (mkdir(HT_BASE, 0755) < 0 || mkdir(HT_ROOT, 0755) < 0 || mkdir(HT_ROOT "/etc", 0755) < 0 ||
            mkdir(HT_HOMES, 0755) < 0 || mkdir(HT_VM_DIR, 0755) < 0)
                die("creating " HT_BASE);
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                char from[64], to[128];
                snprintf(from, sizeof(from), "/etc/%s", files[i].name);
                snprintf(to, sizeof(to), HT_ROOT "/etc/%s", files[i].name);
                copy_file(from, to, files[i].mode);
        }
        if (setenv("VMUSER_VM_DIR", HT_VM_DIR, 1) < 0)
                die("setenv");
        signal(SIGPIPE, SIG_IGN);
}

int ht_useradd(const char *name, char *const extra_args[]) {
        char home[256];
        char *argv[32];
        size_t n = 0;
        struct ht_result r = {};
        int status;

        snprintf(home, sizeof(home), HT_HOMES "/%s", name);
        argv[n++] = (char *) "useradd";
        argv[n++] = (char *) "--prefix";
        argv[n++] = (char *) HT_ROOT;
        argv[n++] = (char *) "-M";
        argv[n++] = (char *) "-d";
        argv[n++] = home;
        for (size_t i = 0; extra_args && extra_args[i] && n < 30; i++)
                argv[n++] = extra_args[i];
        argv[n++] = (char *) name;
        argv[n] = NULL;
        /* useradd works on HT_ROOT's copies only; it runs in the guest view, where /etc is the
         * machine's, and never touches it. */
        ht_run_guest(argv, &r);
        status = r.status;
        if (status != 0)
                fprintf(stderr, "useradd %s failed (%d): %s\n", name, status, strempty(r.err));
        ht_result_done(&r);
        return status;
}

int ht_host_ids(const char *name, uid_t *ret_uid, gid_t *ret_gid) {
        _cleanup_fclose_ FILE *f = fopen(HT_ROOT "/etc/passwd", "re");
        char line[1024];
        size_t len = strlen(name);

        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f)) {
                unsigned uid, gid;
                if (strncmp(line, name, len) != 0 || line[len] != ':')
                        continue;
                if (sscanf(line + len, ":%*[^:]:%u:%u:", &uid, &gid) != 2)
                        return -EINVAL;
                if (ret_uid)
                        *ret_uid = uid;
                if (ret_gid)
                        *ret_gid = gid;
                return 0;
        }
        return -ENOENT;
}

static void write_file(const char *path, const char *text, mode_t mode, uid_t uid, gid_t gid) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t) strlen(text) || fchmod(fd, mode) < 0 ||
            fchown(fd, uid, gid) < 0)
                die(path);
}

void ht_make_home(const char *name, const char *authorized_keys) {
        char path[512];
        uid_t uid;
        gid_t gid;

        if (ht_host_ids(name, &uid, &gid) < 0)
                die("looking up a test user in " HT_ROOT "/etc/passwd");
        snprintf(path, sizeof(path), HT_HOMES "/%s", name);
        if ((mkdir(path, 0700) < 0 && errno != EEXIST) || chown(path, uid, gid) < 0)
                die(path);
        if (!authorized_keys)
                return;
        snprintf(path, sizeof(path), HT_HOMES "/%s/.ssh", name);
        if ((mkdir(path, 0700) < 0 && errno != EEXIST) || chown(path, uid, gid) < 0)
                die(path);
        snprintf(path, sizeof(path), HT_HOMES "/%s/.ssh/authorized_keys", name);
        write_file(path, authorized_keys, 0600, uid, gid);
}

void ht_append_users(char (*ret_names)[HT_NAME_SIZE], size_t n, const char *prefix, int digits, unsigned first_id,
                     const char *hash) {
        _cleanup_fclose_ FILE *passwd = fopen(HT_ROOT "/etc/passwd", "ae");
        _cleanup_fclose_ FILE *shadow = fopen(HT_ROOT "/etc/shadow", "ae");
        _cleanup_fclose_ FILE *group = fopen(HT_ROOT "/etc/group", "ae");

        if (!passwd || !shadow || !group)
                die("opening " HT_ROOT "/etc/passwd, shadow and group");
        for (size_t i = 0; i < n; i++) {
                const char *name = ret_names[i];
                unsigned id = first_id + (unsigned) i;

                if ((size_t) snprintf(ret_names[i], HT_NAME_SIZE, "%s%0*zu", prefix, digits, i) >= HT_NAME_SIZE)
                        die("a bulk user name too long");
                fprintf(passwd, "%s:x:%u:%u:Bulk user %u:" HT_HOMES "/%s:/bin/sh\n", name, id, id, id, name);
                fprintf(shadow, "%s:%s:19000:0:99999:7:::\n", name, hash);
                fprintf(group, "%s:x:%u:\n", name, id);
        }
        if (fflush(passwd) != 0 || fflush(shadow) != 0 || fflush(group) != 0)
                die("appending to " HT_ROOT "/etc/passwd, shadow and group");
}

void ht_append_line(const char *file, const char *line) {
        _cleanup_fclose_ FILE *f = fopen(file, "ae");
        if (!f || fputs(line, f) < 0 || fflush(f) != 0)
                die(file);
}

static void drop_in(const char *name, unsigned id, bool group) {
        char path[256], target[128], text[256];

        snprintf(path, sizeof(path), "/run/userdb/%s.%s", name, group ? "group" : "user");
        if (group)
                snprintf(text, sizeof(text), "{\"groupName\":\"%s\",\"gid\":%u,\"disposition\":\"regular\"}\n", name, id);
        else
                snprintf(text, sizeof(text),
                         "{\"userName\":\"%s\",\"uid\":%u,\"gid\":%u,\"disposition\":\"regular\","
                         "\"homeDirectory\":\"/home/%s\"}\n",
                         name, id, id, name);
        write_file(path, text, 0644, 0, 0);
        snprintf(target, sizeof(target), "%s.%s", name, group ? "group" : "user");
        snprintf(path, sizeof(path), "/run/userdb/%u.%s", id, group ? "group" : "user");
        if (symlink(target, path) < 0)
                die(path);
}

void ht_guest_drop_in_user(const char *name, unsigned uid) {
        drop_in(name, uid, false);
        drop_in(name, uid, true);
}

void ht_guest_drop_in_group(const char *name, unsigned gid) {
        drop_in(name, gid, true);
}

void ht_result_done(struct ht_result *r) {
        free(r->out);
        free(r->err);
        *r = (struct ht_result) {};
}

static double now_seconds(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

struct buffer {
        char *data;
        size_t size;
        size_t cap;
};

static int buffer_read(struct buffer *b, int fd) {
        if (b->size + 65536 + 1 > b->cap) {
                size_t cap = b->cap ? b->cap * 2 : 131072;
                while (cap < b->size + 65536 + 1)
                        cap *= 2;
                char *d = realloc(b->data, cap);
                if (!d)
                        return -ENOMEM;
                b->data = d;
                b->cap = cap;
        }
        ssize_t n = read(fd, b->data + b->size, 65536);
        if (n < 0)
                return errno == EINTR || errno == EAGAIN ? 1 : -errno;
        b->size += (size_t) n;
        b->data[b->size] = '\0';
        return n > 0;
}

/* Forks; the child calls enter_host_view when set, then execs argv. Both outputs are read at
 * once (a big output must not block the child). */
static int run(char *const argv[], bool host_view, struct ht_result *ret) {
        int out[2], err[2], status;
        struct buffer bo = {}, be = {};
        double start = now_seconds();
        pid_t pid;

        *ret = (struct ht_result) {};
        if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
                return -errno;
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0)
                        _exit(126);
                if (host_view) {
                        static const char *const files[] = { "passwd", "shadow", "group", "gshadow" };
                        if (unshare(CLONE_NEWNS) < 0) {
                                perror("unshare");
                                _exit(126);
                        }
                        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                                char from[128], to[64];
                                snprintf(from, sizeof(from), HT_ROOT "/etc/%s", files[i]);
                                snprintf(to, sizeof(to), "/etc/%s", files[i]);
                                if (mount(from, to, NULL, MS_BIND, NULL) < 0) {
                                        perror(to);
                                        _exit(126);
                                }
                        }
                        if (mount("tmpfs", "/run/userdb", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0) {
                                perror("/run/userdb");
                                _exit(126);
                        }
                }
                execvp(argv[0], argv);
                fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
                _exit(127);
        }
        close(out[1]);
        close(err[1]);

        bool out_open = true, err_open = true;
        while (out_open || err_open) {
                struct pollfd p[2] = { { .fd = out_open ? out[0] : -1, .events = POLLIN },
                                       { .fd = err_open ? err[0] : -1, .events = POLLIN } };
                double left = RUN_LIMIT_SECONDS - (now_seconds() - start);
                if (left <= 0) {
                        kill(pid, SIGKILL);
                        break;
                }
                if (poll(p, 2, (int) (left * 1000)) < 0 && errno != EINTR)
                        break;
                if (out_open && p[0].revents && buffer_read(&bo, out[0]) == 0)
                        out_open = false;
                if (err_open && p[1].revents && buffer_read(&be, err[0]) == 0)
                        err_open = false;
        }
        close(out[0]);
        close(err[0]);
        struct rusage ru = {};
        if (wait4(pid, &status, 0, &ru) < 0)
                return -errno;
        ret->seconds = now_seconds() - start;
        ret->maxrss_kib = ru.ru_maxrss;
        ret->out = bo.data ? bo.data : strdup("");
        ret->err = be.data ? be.data : strdup("");
        ret->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return 0;
}

int ht_run_host(char *const argv[], struct ht_result *ret) {
        return run(argv, true, ret);
}

int ht_run_guest(char *const argv[], struct ht_result *ret) {
        return run(argv, false, ret);
}

int ht_vmuserv(struct ht_result *ret, char *const args[]) {
        size_t n = 0;
        while (args[n])
                n++;
        _cleanup_free_ char **argv = calloc(n + 2, sizeof(char *));
        if (!argv)
                return -ENOMEM;
        argv[0] = (char *) test_env_path("VMUSER_TOOL");
        memcpy(argv + 1, args, n * sizeof(char *));
        int r = ht_run_host(argv, ret);
        if (r < 0)
                return r;
        if (ret->err && ret->err[0] && n < 16) {
                fprintf(stderr, "--- vmuser");
                for (size_t i = 0; i < n; i++)
                        fprintf(stderr, " %s", args[i]);
                fprintf(stderr, " -> %d\n%s", ret->status, ret->err);
        }
        return 0;
}

int ht_vmuser(struct ht_result *ret, const char *arg, ...) {
        char *args[64];
        size_t n = 0;
        va_list ap;

        va_start(ap, arg);
        for (const char *a = arg; a && n < 63; a = va_arg(ap, const char *))
                args[n++] = (char *) a;
        va_end(ap);
        args[n] = NULL;
        return ht_vmuserv(ret, args);
}

/* Up to 10 s: 45 agents of the apply test start one after the other on 2 busy CPUs. */
static void wait_for_socket(const char *path, pid_t pid) {
        if (strlen(path) >= sizeof(((struct sockaddr_un *) NULL)->sun_path)) {
                fprintf(stderr, "socket path too long: %s\n", path);
                exit(99);
        }
        for (int i = 0; i < 1000; i++) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                int status;
                memcpy(sa.sun_path, path, strlen(path) + 1);
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0) {
                        close(fd);
                        return;
                }
                if (fd >= 0)
                        close(fd);
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        fprintf(stderr, "the agent on %s exited during start-up\n", path);
                        exit(99);
                }
                usleep(10 * 1000);
        }
        fprintf(stderr, "nothing listens on %s after 10 s\n", path);
        exit(99);
}

/* Listeners still running; killed at exit (the apply test's 45 agents and 3 fakes fit). */
static pid_t listeners[64];

static void kill_listeners(void) {
        for (size_t i = 0; i < ELEMENTSOF(listeners); i++)
                if (listeners[i] > 0) {
                        kill(listeners[i], SIGKILL);
                        waitpid(listeners[i], NULL, 0);
                }
}

static void track_listener(pid_t pid, bool add) {
        static bool registered;
        if (!registered) {
                atexit(kill_listeners);
                registered = true;
        }
        for (size_t i = 0; i < ELEMENTSOF(listeners); i++)
                if (add ? listeners[i] == 0 : listeners[i] == pid) {
                        listeners[i] = add ? pid : 0;
                        return;
                }
}

/* With private_state, the listener gets a mount namespace of its own with its own tmpfs on
 * /run/userdb and /run/vmuser: one "guest" of many. */
static pid_t start_listener_at(const char *vm, const char *socket_name, char *const prefix[],
                               char *const extra_args[], bool private_state) {
        char dir[256], sock[300];
        char *argv[64];
        size_t n = 0;
        pid_t pid;

        snprintf(dir, sizeof(dir), HT_VM_DIR "/%s", vm);
        snprintf(sock, sizeof(sock), "%s/%s", dir, socket_name);
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                die(dir);
        (void) unlink(sock);
        for (size_t i = 0; prefix[i]; i++)
                argv[n++] = prefix[i];
        argv[n++] = sock;
        for (size_t i = 0; extra_args && extra_args[i] && n < 62; i++)
                argv[n++] = extra_args[i];
        argv[n] = NULL;

        pid = fork();
        if (pid < 0)
                die("fork");
        if (pid == 0) {
                int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (devnull >= 0) {
                        dup2(devnull, 0);
                        dup2(devnull, 1);
                }
                if (private_state &&
                    (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
                     mount("tmpfs", "/run/userdb", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0 ||
                     mount("tmpfs", "/run/vmuser", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)) {
                        perror("private agent namespace");
                        _exit(126);
                }
                execvp(argv[0], argv);
                _exit(127);
        }
        track_listener(pid, true);
        wait_for_socket(sock, pid);
        return pid;
}

static pid_t start_listener(const char *vm, char *const prefix[], char *const extra_args[]) {
        return start_listener_at(vm, "agent.sock", prefix, extra_args, false);
}

pid_t ht_agent_start(const char *vm, char *const extra_args[]) {
        char *prefix[20];
        _cleanup_free_ char *words = NULL;
        size_t n = test_agent_argv_prefix(prefix, &words); /* under VMUSER_AGENT_WRAPPER too */
        prefix[n++] = (char *) "--listen";
        prefix[n] = NULL;
        return start_listener(vm, prefix, extra_args);
}

pid_t ht_fake_start(const char *vm, const char *mode, char *const extra_args[]) {
        char script[512];
        snprintf(script, sizeof(script), "%s/fake-agent.py", test_env_path("VMUSER_HOST_TEST_DIR"));
        char *prefix[] = { (char *) test_env_path("PYTHON3"), script, (char *) "--mode", (char *) mode,
                           (char *) "--listen", NULL };
        return start_listener(vm, prefix, extra_args);
}

pid_t ht_fake_qmp_start(const char *vm, const char *mode) {
        char script[512];
        snprintf(script, sizeof(script), "%s/fake-agent.py", test_env_path("VMUSER_HOST_TEST_DIR"));
        char *prefix[] = { (char *) test_env_path("PYTHON3"), script, (char *) "--qmp", (char *) "--mode",
                           (char *) mode, (char *) "--listen", NULL };
        return start_listener_at(vm, "qmp.sock", prefix, NULL, false);
}

pid_t ht_private_agent_start(const char *vm) {
        /* --cleanup-root: a detach's clean-up stays below a scratch root, never touching the
         * host's processes and files of the UID (see test_agent_argv_prefix()). --userdb=dropin:
         * only /run/userdb is private to it, and a varlink agent would bind the host's
         * /run/systemd/userdb/io.vmuser. */
        char *prefix[] = { (char *) test_env_path("VMUSER_AGENT"), (char *) "--cleanup-root=" TEST_CLEANUP_ROOT,
                           (char *) "--userdb=dropin", (char *) "--listen", NULL };
        return start_listener_at(vm, "agent.sock", prefix, NULL, true);
}

int ht_stop(pid_t pid) {
        int status;
        if (pid <= 0)
                return -ECHILD;
        kill(pid, SIGTERM);
        if (waitpid(pid, &status, 0) < 0)
                return -errno;
        track_listener(pid, false);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

size_t ht_count_lines(const char *s) {
        size_t n = 0;
        for (; s && *s; s++)
                n += *s == '\n';
        return n;
}

bool ht_contains(const char *haystack, const char *needle) {
        return haystack && strstr(haystack, needle);
}

void ht_expect(const struct ht_result *r, int status, const char *in_out, const char *in_err) {
        if (r->status != status)
                fail_msg("vmuser exited %d, wanted %d\nstdout: %s\nstderr: %s", r->status, status, r->out, r->err);
        if (in_out && !ht_contains(r->out, in_out))
                fail_msg("stdout lacks '%s':\n%s", in_out, r->out);
        if (in_err && !ht_contains(r->err, in_err))
                fail_msg("stderr lacks '%s':\n%s", in_err, r->err);
}

json_object *ht_json_line(const char *out, size_t i) {
        const char *p = out;
        for (size_t k = 0; k < i && p; k++) {
                p = strchr(p, '\n');
                if (p)
                        p++;
        }
        if (!p || !*p)
                fail_msg("no JSON line %zu in:\n%s", i, out);
        const char *end = strchr(p, '\n');
        _cleanup_free_ char *line = strndup(p, end ? (size_t) (end - p) : strlen(p));
        json_object *o = json_tokener_parse(line);
        if (!o)
                fail_msg("not JSON: %s", line);
        return o;
}

json_object *ht_json_find(const char *out, const char *key, const char *value) {
        size_t n = ht_count_lines(out);
        for (size_t i = 0; i < n; i++) {
                json_object *o = ht_json_line(out, i);
                if (streq(ht_jstr(o, key), value))
                        return o;
                json_object_put(o);
        }
        return NULL;
}

void ht_expect_results(const char *out, size_t n, const char *result, const char *in_error) {
        if (ht_count_lines(out) != n)
                fail_msg("wanted %zu result lines:\n%s", n, out);
        for (size_t i = 0; i < n; i++) {
                json_object *o = ht_json_line(out, i);
                if (!streq(ht_jstr(o, "result"), result) || (in_error && !ht_contains(ht_jstr(o, "error"), in_error)))
                        fail_msg("wanted result '%s' (error with '%s'): %s", result, strempty(in_error),
                                 json_object_to_json_string(o));
                json_object_put(o);
        }
}

json_object *ht_jget(json_object *o, const char *key) {
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v))
                fail_msg("no '%s' in %s", key, json_object_to_json_string(o));
        return v;
}

static json_object *jget_type(json_object *o, const char *key, json_type type) {
        json_object *v = ht_jget(o, key);
        if (!json_object_is_type(v, type))
                fail_msg("'%s' is not a %s in %s", key, json_type_to_name(type), json_object_to_json_string(o));
        return v;
}

const char *ht_jstr(json_object *o, const char *key) {
        return json_object_get_string(jget_type(o, key, json_type_string));
}

int64_t ht_jint(json_object *o, const char *key) {
        return json_object_get_int64(jget_type(o, key, json_type_int));
}

bool ht_jbool(json_object *o, const char *key) {
        return json_object_get_boolean(jget_type(o, key, json_type_boolean));
}
