/* test-vmuser-export.c: `vmuser attach` exporting a home for real, and `vmuser detach` and
 * `vmuser list` around it: the built vmuser against the built vmuser-agent (--listen, the two
 * views of tests/integration/host, see host-test.h) and a real QEMU q35 without a guest OS
 * (export-test.h) with QMP in the VM directory, and this machine's virtiofsd.
 *
 * What a guest OS would do is missing: nothing mounts the tag, and nothing releases a device on
 * unplug. So a detach without --force times out on the host side after the agent has already
 * removed the user: the export becomes an orphan, which `vmuser list` shows and
 * `vmuser detach --force` removes (host side only; QEMU keeps the device, as documented in
 * home-export.h). A new attach of that user is then refused by the export, and the push of its
 * record is undone.
 *
 * vmuser runs in its own mount namespace (the host view), and so does the virtiofsd it starts.
 * The VM directory is a shared bind mount, so the staging mount made there shows up in the
 * test's namespace too (and its unmount by a later vmuser propagates back): the test checks the
 * ID mapping through it. */
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
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "export-test.h"
#include "host-test.h"
#include "json-util.h"
#include "macro.h"
#include "qmp-client.h"
#include "test-util.h"
#include "virtiofsd.h"

#define VM "qvm"
#define VM_DIR HT_VM_DIR "/" VM
#define ALICE "vmtxalice"
#define BOB "vmtxbob"
#define CAROL "vmtxcarol"
#define SOCKET_ARG(user) "--socket-path=" VM_DIR "/homes/" user "/virtiofsd.sock"

/* The argument that tells the user's virtiofsd among all processes: the socket path of a root
 * one, or the directory an unprivileged one serves, named for its host ID (from state.json,
 * remembered for after the detach). */
static const char *vfsd_arg(const char *user) {
        static struct {
                const char *user;
                char arg[160];
        } known[] = { { ALICE, "" }, { BOB, "" }, { CAROL, "" } };
        for (size_t i = 0; i < ELEMENTSOF(known); i++) {
                char path[256];
                json_object *o, *v;
                if (!streq(known[i].user, user))
                        continue;
                snprintf(path, sizeof(path), VM_DIR "/homes/%s/state.json", user);
                o = json_object_from_file(path);
                if (o && json_object_object_get_ex(o, "serverUid", &v))
                        snprintf(known[i].arg, sizeof(known[i].arg), "source=" VIRTIOFSD_USERNS_ROOT "/%u",
                                 (unsigned) json_object_get_int64(v));
                else if (o)
                        snprintf(known[i].arg, sizeof(known[i].arg), SOCKET_ARG("%s"), user);
                json_object_put(o);
                if (!known[i].arg[0])
                        snprintf(known[i].arg, sizeof(known[i].arg), SOCKET_ARG("%s"), user);
                return known[i].arg;
        }
        fail_msg("unknown user %s", user);
        return NULL;
}

static struct test_qemu qemu;
static pid_t agent_pid;
static uint32_t alice_guest_uid;

/* Exit status of a command run in the guest view. */
static int guest_status(const char *arg, ...) __attribute__((sentinel));
static int guest_status(const char *arg, ...) {
        char *argv[8];
        size_t n = 0;
        struct ht_result r = {};
        va_list ap;

        va_start(ap, arg);
        for (const char *a = arg; a && n < 7; a = va_arg(ap, const char *))
                argv[n++] = (char *) a;
        va_end(ap);
        argv[n] = NULL;
        assert_int_equal(ht_run_guest(argv, &r), 0);
        int status = r.status;
        ht_result_done(&r);
        return status;
}

static bool exists(const char *path) {
        struct stat st;
        return lstat(path, &st) == 0;
}

static bool mounted(const char *path) {
        _cleanup_free_ char *info = NULL;
        char *argv[] = { (char *) "cat", (char *) "/proc/self/mountinfo", NULL };
        assert_true(test_run(argv, NULL, &info) == 0);
        char needle[512];
        snprintf(needle, sizeof(needle), " %s ", path);
        return ht_contains(info, needle);
}

/* No export of user is left on the host: no state directory, no staging mount, no virtiofsd. */
static void assert_no_export(const char *user) {
        char dir[256], mnt[300];
        snprintf(dir, sizeof(dir), VM_DIR "/homes/%s", user);
        snprintf(mnt, sizeof(mnt), "%s/mnt/home", dir);
        if (exists(dir) || mounted(mnt))
                fail_msg("the export of %s is still there", user);
        assert_int_equal(test_count_processes_with_arg(vfsd_arg(user)), 0);
}

/* A refused attach of user was undone: the user does not resolve in the guest, and its export
 * directory does not exist. */
static void assert_attach_undone(const char *user) {
        char dir[256];
        snprintf(dir, sizeof(dir), VM_DIR "/homes/%s", user);
        assert_int_equal(guest_status("getent", "passwd", user, NULL), 2);
        assert_false(exists(dir));
}

/* 1 if QEMU has a device with id under /machine/peripheral. */
static int qemu_has_device(const char *id) {
        _cleanup_qmp_client_ struct qmp_client *c = NULL;
        _cleanup_json_ json_object *list = NULL, *args = json_object_new_object();

        assert_int_equal(qmp_client_connect(qemu.qmp, 5000, &c, NULL), 0);
        json_object_object_add(args, "path", json_object_new_string("/machine/peripheral"));
        assert_int_equal(qmp_client_execute(c, "qom-list", args, 5000, &list, NULL, NULL), 0);
        for (size_t i = 0; i < json_object_array_length(list); i++) {
                const char *name;
                if (json_get_string(json_object_array_get_idx(list, i), "name", &name) == 0 && streq(name, id))
                        return 1;
        }
        return 0;
}

static void kill_leftovers(void) {
        (void) test_kill_processes_with_arg(vfsd_arg(ALICE), SIGKILL);
        (void) test_kill_processes_with_arg(vfsd_arg(BOB), SIGKILL);
        (void) test_kill_processes_with_arg(vfsd_arg(CAROL), SIGKILL);
}

static int group_setup(void **state) {
        struct virtiofsd_binary b;
        struct verr e = {};

        test_require_qemu();
        if (virtiofsd_detect(NULL, &b, &e) < 0) {
                fprintf(stderr, "no virtiofsd: %s; skipping\n", e.text);
                exit(77);
        }
        ht_setup();
        kill_leftovers();
        /* Shared, so the staging mounts vmuser makes in its namespace are seen here. */
        if (mount(HT_VM_DIR, HT_VM_DIR, NULL, MS_BIND, NULL) < 0 || mount(NULL, HT_VM_DIR, NULL, MS_SHARED, NULL) < 0 ||
            mkdir(VM_DIR, 0755) < 0)
                return -1;

        char *plain[] = { (char *) "-p", (char *) "!", NULL };
        if (ht_useradd(ALICE, plain) != 0 || ht_useradd(BOB, plain) != 0 || ht_useradd(CAROL, plain) != 0)
                return -1;
        ht_make_home(ALICE, NULL);
        ht_make_home(BOB, NULL);
        ht_make_home(CAROL, NULL);

        const char *const extra[] = { TEST_Q35_SHARED, TEST_ROOT_PORT(1), TEST_ROOT_PORT(2), TEST_ROOT_PORT(3), NULL };
        test_qemu_start(&qemu, VM_DIR, extra);
        agent_pid = ht_agent_start(VM, NULL);
        return 0;
}

static int group_teardown(void **state) {
        ht_stop(agent_pid);
        test_qemu_stop(&qemu);
        kill_leftovers();
        return 0;
}

static void test_status_sees_qmp(void **state) {
        struct ht_result r = {};

        ht_vmuser(&r, "status", VM, NULL);
        ht_expect(&r, 0, "QMP:      " VM_DIR "/qmp.sock: answers (QEMU ", NULL);
        ht_result_done(&r);
        ht_vmuser(&r, "status", "--json", VM, NULL);
        ht_expect(&r, 0, "\"qmpReachable\":true", NULL);
        ht_result_done(&r);
}

static void test_attach_exports(void **state) {
        struct ht_result r = {};
        uid_t host_uid;
        gid_t host_gid;
        struct stat st;

        assert_int_equal(ht_host_ids(ALICE, &host_uid, &host_gid), 0);
        ht_vmuser(&r, "attach", "--json", VM, ALICE, NULL);
        ht_expect(&r, 0, NULL, NULL);
        json_object *o = ht_json_line(r.out, 0);
        assert_string_equal(ht_jstr(o, "result"), "ok");
        assert_true(ht_jbool(o, "changed"));
        assert_string_equal(ht_jstr(o, "homeTag"), "vmuser-" ALICE);
        assert_string_equal(ht_jstr(o, "homeSource"), HT_HOMES "/" ALICE);
        assert_false(ht_jbool(o, "readOnly"));
        /* The test's /run is nosuid: no setuid warning (test-host-setuid has the other case). */
        assert_false(ht_jbool(o, "sourceAllowsSetuid"));
        assert_string_equal(ht_jstr(o, "fileServer"), "unprivileged");
        assert_true(json_object_get_int64(ht_jget(o, "fileServerUid")) >= 1879048192);
        alice_guest_uid = (uint32_t) json_object_get_int64(ht_jget(o, "uid"));
        json_object_put(o);
        ht_result_done(&r);

        /* QEMU has the device, virtiofsd serves, the state is kept. */
        assert_int_equal(qemu_has_device("vmuser-fs-" ALICE), 1);
        assert_true(test_count_processes_with_arg(vfsd_arg(ALICE)) >= 1);
        assert_true(exists(VM_DIR "/homes/" ALICE "/state.json"));
        /* The file server is the unprivileged one (this kernel has user namespaces): its user
         * namespace maps the IDs, the staging mount maps the host IDs onto themselves. */
        assert_true(mounted(VM_DIR "/homes/" ALICE "/mnt/home"));
        assert_int_equal(stat(VM_DIR "/homes/" ALICE "/mnt/home", &st), 0);
        assert_int_equal(st.st_uid, host_uid);
        assert_true(alice_guest_uid != host_uid);
        assert_int_equal(stat(HT_HOMES "/" ALICE, &st), 0);
        assert_int_equal(st.st_uid, host_uid);

        /* The guest got the record with the home spec for that tag. */
        assert_int_equal(guest_status("getent", "passwd", ALICE, NULL), 0);
        ht_vmuser(&r, "list", "--json", VM, NULL);
        ht_expect(&r, 0, "\"home\":{\"tag\":\"vmuser-" ALICE "\",\"fstype\":\"virtiofs\"", NULL);
        o = ht_json_line(r.out, 0);
        json_object *x = ht_jget(o, "export");
        assert_string_equal(ht_jstr(x, "tag"), "vmuser-" ALICE);
        assert_string_equal(ht_jstr(x, "virtiofsd"), "running");
        assert_string_equal(ht_jstr(x, "bus"), "rp1");
        assert_string_equal(ht_jstr(x, "phase"), "exported");
        assert_true(ht_jbool(x, "stagingMounted"));
        json_object_put(o);
        ht_result_done(&r);

        ht_vmuser(&r, "list", VM, NULL);
        ht_expect(&r, 0, "vmuser-" ALICE " running", NULL);
        ht_result_done(&r);

        /* status says which file server serves it, and which new exports get. */
        ht_vmuser(&r, "status", "--json", VM, NULL);
        ht_expect(&r, 0, "\"fileServer\":\"unprivileged\"", NULL);
        assert_true(ht_contains(r.out, "{\"user\":\"" ALICE "\",\"tag\":\"vmuser-" ALICE "\",\"fileServer\":\"unprivileged\""));
        ht_result_done(&r);
        ht_vmuser(&r, "status", VM, NULL);
        ht_expect(&r, 0, ALICE ": unprivileged, host uid ", NULL);
        ht_result_done(&r);
}

/* vmuser attach --json [option] VM USER: exit 0, and a result with the home tag vmuser-USER and
 * the boolean key as want. */
static void attach_json(const char *option, const char *user, const char *key, bool want) {
        struct ht_result r = {};
        char tag[64];
        char *args[] = { (char *) "attach", (char *) "--json", (char *) VM, (char *) user, NULL, NULL };

        if (option) {
                args[2] = (char *) option;
                args[3] = (char *) VM;
                args[4] = (char *) user;
        }
        snprintf(tag, sizeof(tag), "vmuser-%s", user);
        assert_int_equal(ht_vmuserv(&r, args), 0);
        ht_expect(&r, 0, NULL, NULL);
        json_object *o = ht_json_line(r.out, 0);
        if (ht_jbool(o, key) != want || !streq(ht_jstr(o, "homeTag"), tag))
                fail_msg("wanted %s %s and homeTag %s: %s", key, want ? "true" : "false", tag,
                         json_object_to_json_string(o));
        json_object_put(o);
        ht_result_done(&r);
}

static void test_reattach_is_idempotent(void **state) {
        struct ht_result r = {};

        attach_json(NULL, ALICE, "changed", false);

        ht_vmuser(&r, "attach", VM, ALICE, NULL);
        ht_expect(&r, 0, "already exported " HT_HOMES "/" ALICE " as virtio-fs tag vmuser-" ALICE "; nothing changed", NULL);
        ht_result_done(&r);
        assert_int_equal(test_count_processes_with_arg(vfsd_arg(ALICE)) >= 1, 1);
}

static void test_failed_export_undoes_push(void **state) {
        struct ht_result r = {};

        /* alice's home does not belong to bob: the export refuses, after the record was pushed;
         * the record goes again. */
        ht_vmuser(&r, "attach", "--home-source", HT_HOMES "/" ALICE, VM, BOB, NULL);
        ht_expect(&r, 7, NULL, "Cannot export the home of " BOB ": ");
        assert_true(ht_contains(r.err, "belongs to UID"));
        assert_true(ht_contains(r.err, "the user was detached from the guest again"));
        ht_result_done(&r);
        assert_attach_undone(BOB);
}

static void test_read_only_export(void **state) {
        struct ht_result r = {};

        attach_json("--read-only", BOB, "readOnly", true);
        assert_int_equal(qemu_has_device("vmuser-fs-" BOB), 1);

        ht_vmuser(&r, "list", "--json", VM, NULL);
        ht_expect(&r, 0, "\"options\":\"ro\"", NULL);
        assert_true(ht_contains(r.out, "\"bus\":\"rp2\""));
        ht_result_done(&r);

        /* Without a guest OS the device is never released: --force takes the host side away. */
        ht_vmuser(&r, "detach", "--json", "--force", VM, BOB, NULL);
        ht_expect(&r, 0, "\"homeUnexported\":true", NULL);
        assert_true(ht_contains(r.out, "\"deviceReleased\":false"));
        assert_true(ht_contains(r.err, "still holds the home device"));
        ht_result_done(&r);
        assert_no_export(BOB);
        assert_int_equal(guest_status("getent", "passwd", BOB, NULL), 2);
}

static void test_detach_timeout_leaves_orphan(void **state) {
        struct ht_result r = {};

        /* The agent removes the user; the unplug then times out, and the export stays. */
        ht_vmuser(&r, "detach", VM, ALICE, NULL);
        ht_expect(&r, 1, NULL, "its records are gone from the guest, but its home export is not");
        assert_true(ht_contains(r.err, "did not release device vmuser-fs-" ALICE));
        ht_result_done(&r);
        assert_int_equal(guest_status("getent", "passwd", ALICE, NULL), 2);
        assert_true(exists(VM_DIR "/homes/" ALICE "/state.json"));

        ht_vmuser(&r, "list", VM, NULL);
        ht_expect(&r, 0, "(not attached)", NULL);
        assert_true(ht_contains(r.out, "1 home export without an attached user"));
        ht_result_done(&r);
        ht_vmuser(&r, "list", "--json", VM, NULL);
        ht_expect(&r, 0, NULL, NULL);
        assert_int_equal(ht_count_lines(r.out), 1);
        json_object *o = ht_json_line(r.out, 0);
        assert_string_equal(ht_jstr(o, "userName"), ALICE);
        assert_false(ht_jbool(o, "attached"));
        assert_string_equal(ht_jstr(ht_jget(o, "export"), "phase"), "unexporting");
        json_object_put(o);
        ht_result_done(&r);
}

static void test_detach_orphan_force(void **state) {
        struct ht_result r = {};

        ht_vmuser(&r, "detach", "--json", "--force", VM, ALICE, NULL);
        ht_expect(&r, 0, "\"orphan\":true", NULL);
        assert_true(ht_contains(r.out, "\"homeUnexported\":true"));
        ht_result_done(&r);

        /* Nothing left on the host; QEMU keeps the device until a guest lets go of it. */
        assert_no_export(ALICE);
        assert_int_equal(qemu_has_device("vmuser-fs-" ALICE), 1);

        ht_vmuser(&r, "list", VM, NULL);
        ht_expect(&r, 0, "No users attached", NULL);
        ht_result_done(&r);
}

static void test_attach_refused_while_qemu_holds_device(void **state) {
        struct ht_result r = {};

        ht_vmuser(&r, "attach", VM, ALICE, NULL);
        ht_expect(&r, 1, NULL, "QEMU still has device vmuser-fs-" ALICE);
        assert_true(ht_contains(r.err, "the user was detached from the guest again"));
        ht_result_done(&r);
        assert_attach_undone(ALICE);
}

/* QEMU dies with a user attached (and its agent with it): detach cleans up what is left on the
 * host, without --force, and says why. */
static void test_detach_after_vm_died(void **state) {
        struct ht_result r = {};

        ht_vmuser(&r, "attach", VM, CAROL, NULL);
        ht_expect(&r, 0, NULL, NULL);
        ht_result_done(&r);
        assert_true(mounted(VM_DIR "/homes/" CAROL "/mnt/home"));

        /* The agent gone but QEMU alive: nothing says the guest forgot the user, so the export
         * stays. */
        assert_int_equal(ht_stop(agent_pid), 0); /* its exit status: a checker's verdict */
        agent_pid = 0;
        ht_vmuser(&r, "detach", VM, CAROL, NULL);
        ht_expect(&r, 3, NULL, "the agent socket");
        ht_result_done(&r);
        assert_true(exists(VM_DIR "/homes/" CAROL "/state.json"));
        assert_true(mounted(VM_DIR "/homes/" CAROL "/mnt/home"));
        assert_true(test_count_processes_with_arg(vfsd_arg(CAROL)) >= 1);

        test_qemu_kill(&qemu);
        assert_true(exists(qemu.qmp)); /* the stale socket stays */

        ht_vmuser(&r, "status", "--json", VM, NULL);
        ht_expect(&r, 3, "\"running\":false", NULL);
        ht_result_done(&r);
        ht_vmuser(&r, "list", VM, NULL);
        ht_expect(&r, 3, NULL, "is not running, but 1 home export of it is left on this host (" CAROL ")");
        ht_result_done(&r);

        ht_vmuser(&r, "detach", "--json", VM, CAROL, NULL);
        ht_expect(&r, 0, "\"vmRunning\":false", NULL);
        assert_true(ht_contains(r.out, "\"homeUnexported\":true"));
        ht_result_done(&r);
        assert_no_export(CAROL);

        /* Nothing left: the same command is now a plain failure to reach the agent. */
        ht_vmuser(&r, "detach", VM, CAROL, NULL);
        ht_expect(&r, 3, NULL, "the VM is not running");
        ht_result_done(&r);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_status_sees_qmp),
                cmocka_unit_test(test_attach_exports),
                cmocka_unit_test(test_reattach_is_idempotent),
                cmocka_unit_test(test_failed_export_undoes_push),
                cmocka_unit_test(test_read_only_export),
                cmocka_unit_test(test_detach_timeout_leaves_orphan),
                cmocka_unit_test(test_detach_orphan_force),
                cmocka_unit_test(test_attach_refused_while_qemu_holds_device),
                cmocka_unit_test(test_detach_after_vm_died),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
