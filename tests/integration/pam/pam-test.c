/* pam-test.c: helpers for the PAM suite (see pam-test.h).
 *
 * Syslog capture: a tmpfs goes over /dev in the test's private namespace (with the few device
 * nodes anything needs), a datagram socket is bound at /dev/log, and a reader process appends
 * every message to PAM_TEST_DIR/syslog. The reader keeps the socket drained, so 50 concurrent
 * sessions logging at debug level never block in syslog(3). To read the log, a marker message
 * is sent and the file is polled until it shows up: everything sent earlier is there then. */
#include "pam-test.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <security/pam_appl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "macro.h"
#include "test-util.h"

#define LOG_FILE PAM_TEST_DIR "/syslog"

static pid_t log_reader_pid = -1;
static size_t log_mark;
static unsigned sync_counter;

static void die(const char *what) {
        fprintf(stderr, "PAM test set-up failed: %s: %s\n", what, strerror(errno));
        exit(99);
}

static void make_dev(void) {
        static const struct {
                const char *name;
                unsigned major, minor;
        } nodes[] = {
                {"null", 1, 3},   {"zero", 1, 5},    {"full", 1, 7},
                {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
        };

        if (mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755") < 0)
                die("mounting a tmpfs on /dev");
        for (size_t i = 0; i < ELEMENTSOF(nodes); i++) {
                char path[64];
                snprintf(path, sizeof(path), "/dev/%s", nodes[i].name);
                if (mknod(path, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor)) < 0 ||
                    chmod(path, 0666) < 0)
                        die(path);
        }
        if (symlink("/proc/self/fd", "/dev/fd") < 0 || symlink("/proc/self/fd/0", "/dev/stdin") < 0 ||
            symlink("/proc/self/fd/1", "/dev/stdout") < 0 || symlink("/proc/self/fd/2", "/dev/stderr") < 0)
                die("creating /dev symlinks");
}

static void start_log_reader(void) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX, .sun_path = "/dev/log"};
        int fd, out;

        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || chmod("/dev/log", 0666) < 0)
                die("binding /dev/log");
        out = open(LOG_FILE, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (out < 0)
                die("creating " LOG_FILE);

        log_reader_pid = fork();
        if (log_reader_pid < 0)
                die("fork");
        if (log_reader_pid == 0) {
                pid_t parent = getppid();
                char buf[8192];

                prctl(PR_SET_PDEATHSIG, SIGKILL);
                for (;;) {
                        struct pollfd p = {.fd = fd, .events = POLLIN};
                        ssize_t n;

                        /* Belt and braces: never outlive the test. */
                        if (getppid() != parent)
                                _exit(0);
                        if (poll(&p, 1, 200) <= 0)
                                continue;
                        n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
                        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                                continue;
                        if (n < 0)
                                _exit(1);
                        /* glibc sends no newline; one message per line. */
                        while (n > 0 && buf[n - 1] == '\n')
                                n--;
                        buf[n++] = '\n';
                        (void) !write(out, buf, (size_t) n);
                }
        }
        close(fd);
        close(out);
}

void pam_test_setup(void) {
        /* test_enter_private_run() binds a mkstemp() file (mode 0600) over nsswitch.conf; a
         * process that dropped to the user's UID must be able to read it too. */
        if (chmod("/etc/nsswitch.conf", 0644) < 0)
                die("chmod /etc/nsswitch.conf");
        make_dev();
        if (mkdir(PAM_TEST_DIR, 0755) < 0)
                die("creating " PAM_TEST_DIR);
        start_log_reader();
        signal(SIGPIPE, SIG_IGN);
}

void pam_test_teardown(void) {
        if (log_reader_pid > 0) {
                kill(log_reader_pid, SIGKILL);
                waitpid(log_reader_pid, NULL, 0);
                log_reader_pid = -1;
        }
}

int pam_test_group_setup(void **state) {
        pam_test_setup();
        return 0;
}

int pam_test_group_teardown(void **state) {
        pam_test_teardown();
        return 0;
}

static char *read_file(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        size_t size = 0, cap = 65536;
        char *buf;

        if (fd < 0)
                return strdup("");
        buf = malloc(cap + 1);
        assert_non_null(buf);
        for (;;) {
                ssize_t n;
                if (size == cap) {
                        buf = realloc(buf, (cap *= 2) + 1);
                        assert_non_null(buf);
                }
                n = read(fd, buf + size, cap - size);
                if (n <= 0)
                        break;
                size += (size_t) n;
        }
        buf[size] = '\0';
        return buf;
}

/* Sends a marker through /dev/log and waits until the reader wrote it. */
static void log_sync(void) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX, .sun_path = "/dev/log"};
        char marker[64];
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        snprintf(marker, sizeof(marker), "<14>pam-test: sync %u.", ++sync_counter);
        assert_true(sendto(fd, marker, strlen(marker), 0, (struct sockaddr *) &sa, sizeof(sa)) >= 0);
        for (int i = 0; i < 500; i++) {
                _cleanup_free_ char *all = read_file(LOG_FILE);
                if (strstr(all, marker))
                        return;
                nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
        }
        fail_msg("the syslog reader did not catch up");
}

char *pam_test_log(void) {
        log_sync();
        return read_file(LOG_FILE);
}

void pam_test_log_mark(void) {
        _cleanup_free_ char *all = pam_test_log();
        log_mark = strlen(all);
}

bool pam_test_log_contains(const char *needle) {
        _cleanup_free_ char *all = pam_test_log();

        return strlen(all) >= log_mark && strstr(all + log_mark, needle);
}

void pam_test_log_dump(void) {
        _cleanup_free_ char *all = pam_test_log();

        fprintf(stderr, "log since the mark:\n%s", strlen(all) >= log_mark ? all + log_mark : all);
}

void pam_test_attach(const char *name, uint32_t uid, const char *home_dir, const char *home_json) {
        _cleanup_free_ char *reply = NULL;
        struct test_agent agent;
        char request[2048], dir_field[512] = "", home_field[1024] = "";

        if (home_dir)
                snprintf(dir_field, sizeof(dir_field), ",\"homeDirectory\":\"%s\"", home_dir);
        if (home_json)
                snprintf(home_field, sizeof(home_field), ",\"home\":%s", home_json);
        snprintf(request, sizeof(request),
                 "{\"execute\":\"vmuser-attach\",\"arguments\":{\"replace\":true,"
                 "\"user\":{\"userName\":\"%s\",\"uid\":%u%s}%s}}",
                 name, (unsigned) uid, dir_field, home_field);

        assert_int_equal(test_agent_start(&agent, NULL), 0);
        assert_int_equal(test_agent_call(&agent, request, &reply), 0);
        if (strncmp(reply, "{\"return\"", 9) != 0)
                fail_msg("attaching %s failed: %s", name, reply);
        assert_int_equal(test_agent_stop(&agent), 0);
}

int pam_test_mount_count(const char *path, char *opts, size_t opts_size) {
        _cleanup_free_ char *info = read_file("/proc/self/mountinfo");
        size_t n = strlen(path);
        int count = 0;

        for (char *line = info; line && *line;) {
                char *next = strchr(line, '\n'), *p = line;
                if (next)
                        *next++ = '\0';
                /* "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ..." */
                for (int field = 0; field < 4 && p; field++) {
                        p = strchr(p, ' ');
                        if (p)
                                p++;
                }
                if (p && strncmp(p, path, n) == 0 && p[n] == ' ') {
                        count++;
                        if (opts)
                                snprintf(opts, opts_size, "%.*s", (int) strcspn(p + n + 1, " "), p + n + 1);
                }
                line = next;
        }
        return count;
}

int pam_test_session_entries(const char *user) {
        char path[256];
        struct dirent *de;
        DIR *d;
        int count = 0;

        snprintf(path, sizeof(path), "/run/vmuser/sessions/%s", user);
        d = opendir(path);
        if (!d)
                return -1;
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, "..") && !streq(de->d_name, "lock"))
                        count++;
        closedir(d);
        return count;
}

void pam_test_assert_home_mounted_once(const char *path) {
        char opts[256] = "";

        assert_int_equal(pam_test_mount_count(path, opts, sizeof(opts)), 1);
        if (!strstr(opts, "nosuid") || !strstr(opts, "nodev"))
                fail_msg("'%s' is mounted with '%s', without nosuid,nodev", path, opts);
}

char *pam_test_snapshot_state(void) {
        _cleanup_free_ char *a = test_snapshot_dir("/run/vmuser"), *b = test_snapshot_dir("/run/userdb"),
                            *c = test_snapshot_dir("/run/vmhost");
        char *all = NULL;
        int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
        char buf[65536];
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

        if (fd >= 0)
                close(fd);
        buf[n > 0 ? n : 0] = '\0';
        assert_true(asprintf(&all, "%s--\n%s--\n%s--\n%s", a, b, c, buf) > 0);
        return all;
}

const char *pam_test_confdir(void) {
        return test_env_path("PAM_VMUSER_CONFDIR");
}

struct conv_buffer {
        char *text;
        size_t size;
};

static int conv(int n, const struct pam_message **msg, struct pam_response **resp, void *userdata) {
        struct conv_buffer *b = userdata;

        for (int i = 0; i < n; i++) {
                if (msg[i]->msg_style != PAM_ERROR_MSG && msg[i]->msg_style != PAM_TEXT_INFO)
                        return PAM_CONV_ERR; /* a session module must not prompt */
                if (b && b->text) {
                        size_t used = strlen(b->text);
                        snprintf(b->text + used, b->size - used, "%s\n", msg[i]->msg);
                }
        }
        *resp = NULL;
        return PAM_SUCCESS;
}

int pam_test_module_call(const char *user, bool open, const char *args, char *msgs, size_t msgs_size) {
        struct conv_buffer b = {msgs, msgs_size};
        struct pam_conv c = {conv, &b};
        pam_handle_t *pamh = NULL;
        const char *argv[8];
        char buf[256];
        int argc = 0, r;
        void *dl;
        int (*fn)(pam_handle_t *, int, int, const char **);

        if (msgs && msgs_size)
                msgs[0] = '\0';
        snprintf(buf, sizeof(buf), "%s", args ? args : "");
        for (char *save = NULL, *t = strtok_r(buf, " ", &save); t && argc < 8;
             t = strtok_r(NULL, " ", &save))
                argv[argc++] = t;

        dl = dlopen(test_env_path("PAM_VMUSER"), RTLD_NOW | RTLD_LOCAL);
        if (!dl) {
                fprintf(stderr, "dlopen: %s\n", dlerror());
                return -1;
        }
        *(void **) &fn = dlsym(dl, open ? "pam_sm_open_session" : "pam_sm_close_session");
        r = fn ? pam_start_confdir("vmuser-test", user, &c, pam_test_confdir(), &pamh) : -1;
        if (r == PAM_SUCCESS) {
                r = fn(pamh, 0, argc, argv);
                pam_end(pamh, r);
        }
        dlclose(dl);
        return r;
}

int pam_test_run(const char *service, const char *user, bool open, bool close, char *msgs,
                 size_t msgs_size) {
        struct conv_buffer b = {msgs, msgs_size};
        struct pam_conv c = {conv, &b};
        pam_handle_t *pamh = NULL;
        int r;

        if (msgs && msgs_size)
                msgs[0] = '\0';
        r = pam_start_confdir(service, user, &c, pam_test_confdir(), &pamh);
        if (r != PAM_SUCCESS)
                return r;
        if (open)
                r = pam_open_session(pamh, 0);
        if (r == PAM_SUCCESS && close)
                r = pam_close_session(pamh, 0);
        pam_end(pamh, r);
        return r;
}

struct holder_result {
        int rc;
        char msgs[1024];
};

static void holder_main(int cmd_fd, int res_fd, const char *service, const char *user) {
        struct holder_result res = {};
        struct conv_buffer b = {res.msgs, sizeof(res.msgs)};
        struct pam_conv c = {conv, &b};
        pam_handle_t *pamh = NULL;
        char cmd;

        res.rc = pam_start_confdir(service, user, &c, pam_test_confdir(), &pamh);
        if (res.rc == PAM_SUCCESS)
                res.rc = pam_open_session(pamh, 0);
        (void) !write(res_fd, &res, sizeof(res));
        if (res.rc != PAM_SUCCESS)
                _exit(0);

        if (read(cmd_fd, &cmd, 1) != 1)
                _exit(0); /* parent gone: die without closing, like a killed sshd */
        res.msgs[0] = '\0';
        res.rc = pam_close_session(pamh, 0);
        pam_end(pamh, res.rc);
        (void) !write(res_fd, &res, sizeof(res));
        _exit(0);
}

int pam_test_holder_open(struct pam_test_holder *h, const char *service, const char *user, char *msgs,
                         size_t msgs_size) {
        struct holder_result res;
        int cmd[2], out[2];

        assert_int_equal(pipe2(cmd, O_CLOEXEC), 0);
        assert_int_equal(pipe2(out, O_CLOEXEC), 0);
        h->pid = fork();
        assert_true(h->pid >= 0);
        if (h->pid == 0) {
                /* Only its own pipes: an inherited write end of another holder's command pipe
                 * would keep that holder from ever seeing EOF. */
                int c = fcntl(cmd[0], F_DUPFD, 100), o = fcntl(c, F_DUPFD, c + 1);
                if (c < 0 || o != c + 1 || dup2(out[1], o) < 0 || close_range(3, (unsigned) c - 1, 0) < 0 ||
                    close_range((unsigned) o + 1, ~0U, 0) < 0)
                        _exit(99);
                holder_main(c, o, service, user);
        }
        close(cmd[0]);
        close(out[1]);
        h->cmd_fd = cmd[1];
        h->res_fd = out[0];

        assert_int_equal(read(h->res_fd, &res, sizeof(res)), (ssize_t) sizeof(res));
        if (msgs)
                snprintf(msgs, msgs_size, "%s", res.msgs);
        if (res.rc != PAM_SUCCESS) {
                waitpid(h->pid, NULL, 0);
                close(h->cmd_fd);
                close(h->res_fd);
                h->pid = -1;
        }
        return res.rc;
}

int pam_test_holder_close(struct pam_test_holder *h) {
        struct holder_result res;

        assert_true(h->pid > 0);
        assert_int_equal(write(h->cmd_fd, "c", 1), 1);
        assert_int_equal(read(h->res_fd, &res, sizeof(res)), (ssize_t) sizeof(res));
        assert_int_equal(waitpid(h->pid, NULL, 0), h->pid);
        close(h->cmd_fd);
        close(h->res_fd);
        h->pid = -1;
        return res.rc;
}

void pam_test_holder_kill(struct pam_test_holder *h, bool reap) {
        assert_true(h->pid > 0);
        assert_int_equal(kill(h->pid, SIGKILL), 0);
        if (reap)
                assert_int_equal(waitpid(h->pid, NULL, 0), h->pid);
        close(h->cmd_fd);
        close(h->res_fd);
        if (reap)
                h->pid = -1;
}
