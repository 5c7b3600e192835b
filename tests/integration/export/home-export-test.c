/* home-export-test.c: what the two home-export test programs (test-home-export.c and
 * test-home-export-errors.c) share: the users alice, bob and carol and their homes, the export
 * parameters for them, what QEMU has, the check that nothing is left, a fresh VM, the q35 port
 * lists and the teardown. See home-export-test.h. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "export-test.h"
#include "home-export-test.h"
#include "home-export.h"
#include "idmap-mount.h"
#include "json-util.h"
#include "macro.h"
#include "qmp-client.h"
#include "server-id.h"
#include "test-util.h"
#include "virtiofsd.h"

struct user alice = { "alice", 4242, 4243, 60002, 60003, "" };
struct user bob = { "bob", 4244, 4245, 60004, 60005, "" };
struct user carol = { "carol", 4246, 4247, 60006, 60007, "" };

static void make_home(struct user *u) {
        char path[256];
        int fd;

        snprintf(u->home, sizeof(u->home), "/run/home/%s", u->name);
        (void) mkdir("/run/home", 0755);
        (void) mkdir(u->home, 0700);
        assert_int_equal(chown(u->home, u->host_uid, u->host_gid), 0);
        snprintf(path, sizeof(path), "%s/hello", u->home);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "hi\n", 3), 3);
        assert_int_equal(fchown(fd, u->host_uid, u->host_gid), 0);
        close(fd);
}

void home_export_test_setup(void) {
        test_require_qemu();
        test_enter_private_run();
        test_cleanup();
        make_home(&alice);
        make_home(&bob);
        make_home(&carol);
}

struct home_export_params params_for(const struct test_qemu *q, const struct user *u) {
        return (struct home_export_params){
                .vm_dir = q->vm_dir,
                .user = u->name,
                .host_uid = u->host_uid,
                .host_gid = u->host_gid,
                .guest_uid = u->guest_uid,
                .guest_gid = u->guest_gid,
                .source_dir = u->home,
                .supervisor = VIRTIOFSD_SUPERVISOR_DAEMON,
                .server = HOME_EXPORT_SERVER_ROOT,
                .qmp_timeout_ms = 5000,
        };
}

int unexport(const struct test_qemu *q, const struct user *u, unsigned flags, int unplug_ms, struct verr *e) {
        struct home_unexport_params p = {
                .vm_dir = q->vm_dir, .user = u->name, .flags = flags, .qmp_timeout_ms = 5000,
                .unplug_timeout_ms = unplug_ms,
        };
        return home_unexport(&p, e);
}

/* What QEMU has: 1 if the device (kind "device") or chardev (kind "chardev") with id exists. */
int qemu_has(const struct test_qemu *q, const char *kind, const char *id) {
        _cleanup_qmp_client_ struct qmp_client *c = NULL;
        _cleanup_json_ json_object *list = NULL, *args = json_object_new_object();
        const char *key = streq(kind, "device") ? "name" : "label";

        assert_int_equal(qmp_client_connect(q->qmp, 5000, &c, NULL), 0);
        if (streq(kind, "device")) {
                json_object_object_add(args, "path", json_object_new_string("/machine/peripheral"));
                assert_int_equal(qmp_client_execute(c, "qom-list", args, 5000, &list, NULL, NULL), 0);
        } else
                assert_int_equal(qmp_client_execute(c, "query-chardev", NULL, 5000, &list, NULL, NULL), 0);
        for (size_t i = 0; i < json_object_array_length(list); i++) {
                const char *name;
                if (json_get_string(json_object_array_get_idx(list, i), key, &name) == 0 && streq(name, id))
                        return 1;
        }
        return 0;
}

void qemu_command(const struct test_qemu *q, const char *command) {
        _cleanup_qmp_client_ struct qmp_client *c = NULL;
        assert_int_equal(qmp_client_connect(q->qmp, 5000, &c, NULL), 0);
        assert_int_equal(qmp_client_execute(c, command, NULL, 5000, NULL, NULL, NULL), 0);
}

char *parent_bus(const struct test_qemu *q, const char *id) {
        _cleanup_qmp_client_ struct qmp_client *c = NULL;
        _cleanup_json_ json_object *v = NULL, *args = json_object_new_object();
        char path[128];

        snprintf(path, sizeof(path), "/machine/peripheral/%s", id);
        json_object_object_add(args, "path", json_object_new_string(path));
        json_object_object_add(args, "property", json_object_new_string("parent_bus"));
        assert_int_equal(qmp_client_connect(q->qmp, 5000, &c, NULL), 0);
        assert_int_equal(qmp_client_execute(c, "qom-get", args, 5000, &v, NULL, NULL), 0);
        return strdup(json_object_get_string(v));
}

void socket_arg(const struct test_qemu *q, const struct user *u, char *buf, size_t size) {
        snprintf(buf, size, "--socket-path=%s/homes/%s/virtiofsd.sock", q->vm_dir, u->name);
}

/* Nothing of u's export may be left on the host or in QEMU. */
void assert_nothing_left(const struct test_qemu *q, const struct user *u, bool check_qemu) {
        char path[512], arg[512], id[64];
        struct home_export_info info;

        snprintf(path, sizeof(path), "%s/homes/%s", q->vm_dir, u->name);
        if (access(path, F_OK) == 0)
                fail_msg("%s is still there", path);
        socket_arg(q, u, arg, sizeof(arg));
        /* The supervisor may need a moment to reap a killed virtiofsd. */
        for (int i = 0; i < 100 && test_count_processes_with_arg(arg) > 0; i++)
                usleep(20 * 1000);
        assert_int_equal(test_count_processes_with_arg(arg), 0);
        for (int i = 0; i < 100 && test_count_processes_with_arg_prefix("source=" VIRTIOFSD_USERNS_ROOT "/") > 0; i++)
                usleep(20 * 1000);
        assert_int_equal(test_count_processes_with_arg_prefix("source=" VIRTIOFSD_USERNS_ROOT "/"), 0);
        assert_int_equal(home_export_get(q->vm_dir, u->name, &info, NULL), -ENOENT);
        if (check_qemu) {
                snprintf(id, sizeof(id), "vmuser-fs-%s", u->name);
                assert_int_equal(qemu_has(q, "device", id), 0);
                assert_int_equal(qemu_has(q, "chardev", id), 0);
        }
}

void start_vm(struct test_qemu *q, const char *name, const char *const extra[]) {
        char dir[256];
        test_make_vm_dir(name, dir, sizeof(dir));
        test_qemu_start(q, dir, extra);
}

/* Declared out of order: exports take the ports in natural order of their ids all the same. */
const char *const q35_two_ports[] = { TEST_Q35_SHARED, TEST_ROOT_PORT(2), TEST_ROOT_PORT(1), NULL };
const char *const q35_one_port[] = { TEST_Q35_SHARED, TEST_ROOT_PORT(1), NULL };

int teardown(void **state) {
        test_cleanup();
        return 0;
}
