/* test-qmp-client.c: the QMP client (libvmuser/qmp-client.c) against a real QEMU and a fake one.
 *
 * Real QEMU (-machine none, paused): handshake and version, return values, CommandNotFound and
 * GenericError replies, STOP/RESUME events queued while a command runs, event timeouts, a second
 * client while the monitor is busy (QEMU serves one at a time: the greeting never comes).
 * A fake QEMU (a forked process on a socket) for what a real one never does: no greeting,
 * garbage, a closed connection, frames too large or too deep, stale replies and events mixed in
 * before the reply, an event flood beyond the queue limit, a malformed error reply. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "export-test.h"
#include "json-util.h"
#include "macro.h"
#include "proto.h"
#include "qmp-client.h"
#include "test-util.h"

#define FAKE_SOCK "/run/vmuser-test-fake-qmp.sock"
#define GREETING                                                                                              \
        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 1, \"minor\": 2, \"major\": 9}, \"package\": \"\"}, " \
        "\"capabilities\": [\"oob\"]}}\r\n"

static struct test_qemu qemu;

/* ---- real QEMU ------------------------------------------------------------------------------ */

static int setup_qemu(void **state) {
        static const char *const extra[] = { "-machine", "none", NULL };
        char dir[256];

        test_make_vm_dir("qmp-none", dir, sizeof(dir));
        test_qemu_start(&qemu, dir, extra);
        return 0;
}

static int teardown_qemu(void **state) {
        test_qemu_stop(&qemu);
        test_cleanup();
        return 0;
}

static void test_handshake(void **state) {
        _cleanup_qmp_client_ struct qmp_client *c = NULL;
        struct verr e = {};

        assert_int_equal(qmp_client_connect(qemu.qmp, 5000, &c, &e), 0);
        assert_false(qmp_client_is_dead(c));
        assert_true(strncmp(qmp_client_qemu_version(c), "7.", 2) == 0 || qmp_client_qemu_version(c)[0] != '\0');
        assert_int_equal(qmp_client_peer_uid(c), 0);
        printf("# QEMU %s on %s\n", qmp_client_qemu_version(c), qemu.qmp);
}

static void test_return_value(void **state) {
        _cleanup_qmp_client_ struct qmp_client *c = NULL;
        _cleanup_json_ json_object *v = NULL;
        const char *status;
        bool running = true;
        struct verr e = {};

        assert_int_equal(qmp_client_connect(qemu.qmp, 5000, &c, &e), 0);
        assert_int_equal(qmp_client_execute(c, "query-status", NULL, 5000, &v, NULL, &e), 0);
        assert_int_equal(json_get_string(v, "status", &status), 0);
        assert_string_equal(status, "prelaunch");
        assert_int_equal(json_get_bool(v, "running", &running), 0);
        assert_false(running);
}

static void test_command_not_found(void **state) {
        _cleanup_qmp_client_ struct qmp_client *c = NULL;
        struct qmp_error qe = {};
        struct verr e = {};

        assert_int_equal(qmp_client_connect(qemu.qmp, 5000, &c, &e), 0);
        assert_int_equal(qmp_client_execute(c, "no-such-command", NULL, 5000, NULL, &qe, &e), -EREMOTEIO);
        assert_string_equal(qe.error_class, "CommandNotFound");
        assert_non_null(strstr(e.text, "QEMU refused no-such-command"));
        /* The connection stays usable. */
        assert_false(qmp_client_is_dead(c));
        assert_int_equal(qmp_client_execute(c, "query-status", NULL, 5000, NULL, NULL, NULL), 0);
}

static void test_bad_arguments(void **state) {
        _cleanup_qmp_client_ struct qmp_client *c = NULL;
        _cleanup_json_ json_object *args = json_object_new_object();
        struct qmp_error qe = {};
        struct verr e = {};

        assert_int_equal(qmp_client_connect(qemu.qmp, 5000, &c, &e), 0);
        json_object_object_add(args, "id", json_object_new_string("nothing-here"));
        assert_int_equal(qmp_client_execute(c, "device_del", args, 5000, NULL, &qe, &e), -EREMOTEIO);
        assert_string_equal(qe.error_class, "DeviceNotFound");
        json_object_object_add(args, "bogus", json_object_new_int(1));
        memset(&e, 0, sizeof(e));
        assert_int_equal(qmp_client_execute(c, "device_del", args, 5000, NULL, &qe, &e), -EREMOTEIO);
        assert_string_equal(qe.error_class, "GenericError");
        /* Arguments that are not an object never leave the client. */
        _cleanup_json_ json_object *array = json_object_new_array();
        assert_int_equal(qmp_client_execute(c, "query-status", array, 5000, NULL, NULL, NULL), -EINVAL);
}

static void test_events(void **state) {
        _cleanup_qmp_client_ struct qmp_client *c = NULL;
        _cleanup_json_ json_object *event = NULL;
        struct verr e = {};
        long long t0;

        assert_int_equal(qmp_client_connect(qemu.qmp, 5000, &c, &e), 0);
        assert_int_equal(qmp_client_execute(c, "cont", NULL, 5000, NULL, NULL, &e), 0);
        assert_int_equal(qmp_client_execute(c, "stop", NULL, 5000, NULL, NULL, &e), 0);
        /* Both events came while the commands ran; waiting for the second first must not lose the
         * first. */
        assert_int_equal(qmp_client_wait_event(c, "STOP", NULL, NULL, 5000, &event, &e), 0);
        assert_non_null(event);
        assert_int_equal(qmp_client_wait_event(c, "RESUME", NULL, NULL, 5000, NULL, &e), 0);
        assert_int_equal(qmp_client_queued_events(c), 0);

        /* Nothing more comes: a timeout, on time. */
        t0 = test_now_ms();
        memset(&e, 0, sizeof(e));
        assert_int_equal(qmp_client_wait_event(c, "DEVICE_DELETED", NULL, NULL, 300, NULL, &e), -ETIMEDOUT);
        assert_true(test_now_ms() - t0 >= 290);
        assert_true(test_now_ms() - t0 < 3000);
        assert_non_null(strstr(e.text, "DEVICE_DELETED"));
        assert_false(qmp_client_is_dead(c));
}

static void test_monitor_busy(void **state) {
        _cleanup_qmp_client_ struct qmp_client *a = NULL, *b = NULL;
        struct verr e = {};

        assert_int_equal(qmp_client_connect(qemu.qmp, 5000, &a, &e), 0);
        assert_int_equal(qmp_client_connect(qemu.qmp, 500, &b, &e), -ETIMEDOUT);
        assert_non_null(strstr(e.text, "greeting"));
        qmp_client_free(TAKE_PTR(a));
        memset(&e, 0, sizeof(e));
        assert_int_equal(qmp_client_connect(qemu.qmp, 5000, &b, &e), 0);
}

static void test_no_socket(void **state) {
        struct qmp_client *c = NULL;
        struct verr e = {};

        assert_int_equal(qmp_client_connect("/run/vmuser/no-such-vm/qmp.sock", 1000, &c, &e), -ENOENT);
        assert_null(c);
        assert_int_equal(qmp_client_connect("relative.sock", 1000, &c, NULL), -EINVAL);
}

/* ---- a fake QEMU ---------------------------------------------------------------------------- */

typedef void (*fake_script)(int fd);

static void fake_write(int fd, const char *s) {
        (void) !write(fd, s, strlen(s));
}

/* Reads one request line; returns its "id" as JSON text (malloc'ed) or NULL at EOF. */
static char *fake_read_request(int fd) {
        char buf[4096];
        size_t n = 0;
        while (n < sizeof(buf) - 1) {
                ssize_t k = read(fd, buf + n, 1);
                if (k <= 0)
                        return NULL;
                if (buf[n++] == '\n')
                        break;
        }
        buf[n] = '\0';
        _cleanup_json_ json_object *req = NULL;
        json_object *id;
        if (json_parse_strict(buf, n, &req) < 0 || !json_object_object_get_ex(req, "id", &id))
                return NULL;
        return strdup(json_to_compact(id));
}

static void fake_reply(int fd, const char *value, const char *id) {
        char buf[512];
        snprintf(buf, sizeof(buf), "{\"return\": %s, \"id\": %s}\r\n", value, id);
        fake_write(fd, buf);
}

/* Greeting and the capabilities negotiation, as QEMU does them. */
static void fake_handshake(int fd) {
        fake_write(fd, GREETING);
        _cleanup_free_ char *id = fake_read_request(fd);
        if (id)
                fake_reply(fd, "{}", id);
}

static pid_t fake_start(fake_script script) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        pid_t pid;

        unlink(FAKE_SOCK);
        strcpy(sa.sun_path, FAKE_SOCK);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(fd, 4), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                signal(SIGPIPE, SIG_IGN);
                int c = accept(fd, NULL, NULL);
                if (c >= 0)
                        script(c);
                _exit(0);
        }
        close(fd);
        return pid;
}

static void fake_stop(pid_t pid) {
        int status;
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        unlink(FAKE_SOCK);
}

static void script_silent(int fd) {
        sleep(5);
}

static void script_garbage(int fd) {
        fake_write(fd, "hello, I am not QEMU\n");
        sleep(5);
}

static void script_event_first(int fd) {
        fake_write(fd, "{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\n" GREETING);
        sleep(5);
}

static void script_close_after_greeting(int fd) {
        fake_write(fd, GREETING);
        free(fake_read_request(fd));
        close(fd);
}

static void script_deep(int fd) {
        char buf[256] = "{\"QMP\":";
        for (int i = 0; i < 20; i++)
                strcat(buf, "[");
        for (int i = 0; i < 20; i++)
                strcat(buf, "]");
        strcat(buf, "}\n");
        fake_write(fd, buf);
        sleep(5);
}

static void script_huge(int fd) {
        size_t chunk = 1 << 20;
        char *a = malloc(chunk);
        memset(a, 'a', chunk);
        fake_write(fd, "{\"QMP\": {\"junk\": \"");
        for (size_t i = 0; i < QMP_MAX_FRAME_SIZE / chunk + 2; i++)
                if (write(fd, a, chunk) < 0)
                        break;
        free(a);
        sleep(5);
}

static void script_mixed(int fd) {
        fake_handshake(fd);
        _cleanup_free_ char *id = fake_read_request(fd);
        if (!id)
                return;
        fake_write(fd, "{\"return\": 1, \"id\": \"vmuser-999\"}\r\n"
                       "{\"event\": \"FOO\", \"data\": {\"device\": \"x\"}, \"timestamp\": {\"seconds\": 1, "
                       "\"microseconds\": 2}}\r\n"
                       "{\"event\": \"FOO\", \"data\": {\"device\": \"y\"}, \"timestamp\": {\"seconds\": 1, "
                       "\"microseconds\": 3}}\r\n");
        fake_reply(fd, "42", id);
        sleep(5);
}

static void script_flood(int fd) {
        fake_handshake(fd);
        _cleanup_free_ char *id = fake_read_request(fd);
        if (!id)
                return;
        for (int i = 0; i < QMP_MAX_QUEUED_EVENTS + 44; i++) {
                char buf[256];
                snprintf(buf, sizeof(buf),
                         "{\"event\": \"E\", \"data\": {\"n\": %d}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\n",
                         i);
                fake_write(fd, buf);
        }
        fake_reply(fd, "{}", id);
        sleep(5);
}

static void script_bad_error(int fd) {
        fake_handshake(fd);
        _cleanup_free_ char *id = fake_read_request(fd);
        if (!id)
                return;
        char buf[256];
        snprintf(buf, sizeof(buf), "{\"error\": {\"desc\": \"no class\"}, \"id\": %s}\n", id);
        fake_write(fd, buf);
        sleep(5);
}

static void script_slow_reply(int fd) {
        fake_handshake(fd);
        _cleanup_free_ char *id1 = fake_read_request(fd);
        _cleanup_free_ char *id2 = fake_read_request(fd);
        if (!id1 || !id2)
                return;
        /* The first request timed out at the client: its reply now comes late, then the second's. */
        fake_reply(fd, "\"late\"", id1);
        fake_reply(fd, "\"second\"", id2);
        sleep(5);
}

static int fake_connect(fake_script script, pid_t *pid, struct qmp_client **c, int timeout_ms, struct verr *e) {
        *pid = fake_start(script);
        return qmp_client_connect(FAKE_SOCK, timeout_ms, c, e);
}

static void test_fake_no_greeting(void **state) {
        struct qmp_client *c = NULL;
        struct verr e = {};
        pid_t pid;
        long long t0 = test_now_ms();

        assert_int_equal(fake_connect(script_silent, &pid, &c, 400, &e), -ETIMEDOUT);
        assert_true(test_now_ms() - t0 < 3000);
        fake_stop(pid);
}

static void test_fake_garbage(void **state) {
        struct qmp_client *c = NULL;
        struct verr e = {};
        pid_t pid;

        assert_int_equal(fake_connect(script_garbage, &pid, &c, 2000, &e), -EBADMSG);
        assert_non_null(strstr(e.text, "malformed"));
        fake_stop(pid);
        memset(&e, 0, sizeof(e));
        assert_int_equal(fake_connect(script_event_first, &pid, &c, 2000, &e), -EBADMSG);
        fake_stop(pid);
}

static void test_fake_closed(void **state) {
        struct qmp_client *c = NULL;
        struct verr e = {};
        pid_t pid;

        assert_int_equal(fake_connect(script_close_after_greeting, &pid, &c, 2000, &e), -ECONNRESET);
        assert_non_null(strstr(e.text, "closed"));
        fake_stop(pid);
}

static void test_fake_limits(void **state) {
        struct qmp_client *c = NULL;
        struct verr e = {};
        pid_t pid;

        /* Every limit is -EMSGSIZE, and the message names it (doc/PROTOCOL.txt, section 8). */
        assert_int_equal(fake_connect(script_deep, &pid, &c, 2000, &e), -EMSGSIZE);
        assert_non_null(strstr(e.text, "nests deeper than 16 levels"));
        fake_stop(pid);
        memset(&e, 0, sizeof(e));
        assert_int_equal(fake_connect(script_huge, &pid, &c, 10000, &e), -EMSGSIZE);
        assert_non_null(strstr(e.text, "(the limit for QMP)"));
        fake_stop(pid);
}

static void test_fake_stale_reply_and_events(void **state) {
        _cleanup_qmp_client_ struct qmp_client *c = NULL;
        _cleanup_json_ json_object *v = NULL, *event = NULL;
        struct qmp_match_string want_y = { .key = "device", .value = "y" };
        json_object *data;
        const char *device;
        struct verr e = {};
        pid_t pid;

        assert_int_equal(fake_connect(script_mixed, &pid, &c, 2000, &e), 0);
        assert_string_equal(qmp_client_qemu_version(c), "9.2.1");
        assert_int_equal(qmp_client_execute(c, "x", NULL, 2000, &v, NULL, &e), 0);
        assert_int_equal(json_object_get_int(v), 42);
        assert_int_equal(qmp_client_queued_events(c), 2);
        /* The second FOO matches; the first stays queued. */
        assert_int_equal(qmp_client_wait_event(c, "FOO", qmp_match_data_string, &want_y, 0, &event, &e), 0);
        assert_int_equal(json_get_object(event, "data", &data), 0);
        assert_int_equal(json_get_string(data, "device", &device), 0);
        assert_string_equal(device, "y");
        assert_int_equal(qmp_client_queued_events(c), 1);
        fake_stop(pid);
}

static void test_fake_flood(void **state) {
        _cleanup_qmp_client_ struct qmp_client *c = NULL;
        struct verr e = {};
        pid_t pid;

        assert_int_equal(fake_connect(script_flood, &pid, &c, 2000, &e), 0);
        assert_int_equal(qmp_client_execute(c, "y", NULL, 5000, NULL, NULL, &e), 0);
        assert_int_equal(qmp_client_queued_events(c), QMP_MAX_QUEUED_EVENTS);
        assert_int_equal(qmp_client_dropped_events(c), 44);
        fake_stop(pid);
}

static void test_fake_bad_error(void **state) {
        _cleanup_qmp_client_ struct qmp_client *c = NULL;
        struct verr e = {};
        pid_t pid;

        assert_int_equal(fake_connect(script_bad_error, &pid, &c, 2000, &e), 0);
        assert_int_equal(qmp_client_execute(c, "z", NULL, 2000, NULL, NULL, &e), -EBADMSG);
        fake_stop(pid);
}

static void test_fake_late_reply_dropped(void **state) {
        _cleanup_qmp_client_ struct qmp_client *c = NULL;
        _cleanup_json_ json_object *v = NULL;
        struct verr e = {};
        pid_t pid;

        assert_int_equal(fake_connect(script_slow_reply, &pid, &c, 2000, &e), 0);
        assert_int_equal(qmp_client_execute(c, "first", NULL, 200, NULL, NULL, &e), -ETIMEDOUT);
        assert_false(qmp_client_is_dead(c));
        assert_int_equal(qmp_client_execute(c, "second", NULL, 2000, &v, NULL, NULL), 0);
        assert_string_equal(json_object_get_string(v), "second");
        fake_stop(pid);
}

int main(void) {
        test_require_qemu();
        test_enter_private_run();
        /* SIGPIPE is not ignored: a QEMU that goes away must give errors, not kill us. */

        const struct CMUnitTest real[] = {
                cmocka_unit_test(test_handshake),
                cmocka_unit_test(test_return_value),
                cmocka_unit_test(test_command_not_found),
                cmocka_unit_test(test_bad_arguments),
                cmocka_unit_test(test_events),
                cmocka_unit_test(test_monitor_busy),
                cmocka_unit_test(test_no_socket),
        };
        const struct CMUnitTest fake[] = {
                cmocka_unit_test(test_fake_no_greeting),
                cmocka_unit_test(test_fake_garbage),
                cmocka_unit_test(test_fake_closed),
                cmocka_unit_test(test_fake_limits),
                cmocka_unit_test(test_fake_stale_reply_and_events),
                cmocka_unit_test(test_fake_flood),
                cmocka_unit_test(test_fake_bad_error),
                cmocka_unit_test(test_fake_late_reply_dropped),
        };
        int failed = cmocka_run_group_tests_name("qmp-client, real QEMU", real, setup_qemu, teardown_qemu);
        failed += cmocka_run_group_tests_name("qmp-client, fake QEMU", fake, NULL, NULL);
        return failed ? 1 : 0;
}
