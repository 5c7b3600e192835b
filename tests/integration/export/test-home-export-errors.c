/* test-home-export-errors.c: export of a home (libvmuser/home-export.c) failing, with a real
 * QEMU (no guest OS) and the real virtiofsd of this machine.
 *
 * Covered: rollback when virtiofsd dies before chardev-add, when QEMU refuses device_add
 * (virtiofsd died after chardev-add), when QEMU itself dies, and when the caller aborts after
 * the staging mount; a port with hotplug=off skipped, pc (bus pci.0), a VM without shared
 * memory, bad arguments. After every failure, nothing may be left: no directory, mount,
 * virtiofsd, chardev or device. The successful cases are in test-home-export.c; what both share
 * is in home-export-test.c. */
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

/* ---- rollback -------------------------------------------------------------------------------- */

struct kill_at {
        struct test_qemu *q;
        const struct user *u;
        enum home_export_step step;
        int signal;     /* kill virtiofsd with this at step; 0: return -EINTR instead */
        bool kill_qemu; /* kill QEMU instead */
        int calls;
        bool mounted_when_called;
};

static int kill_virtiofsd_at(enum home_export_step done, void *userdata) {
        struct kill_at *k = userdata;
        char dir[512], staging[600], arg[512];
        struct virtiofsd_process proc;
        enum virtiofsd_state st;

        k->calls++;
        if (done != k->step)
                return 0;
        snprintf(dir, sizeof(dir), "%s/homes/%s", k->q->vm_dir, k->u->name);
        snprintf(staging, sizeof(staging), "%s/mnt/home", dir);
        k->mounted_when_called = idmap_mount_is_mounted(staging) == 1;
        if (k->kill_qemu) {
                test_qemu_kill(k->q);
                return 0;
        }
        if (k->signal == 0)
                return -EINTR;
        assert_int_equal(virtiofsd_get_state(dir, &st, &proc, NULL), 0);
        assert_int_equal(st, VIRTIOFSD_STATE_RUNNING);
        /* All of it: once QEMU is connected, virtiofsd serves from a sandboxed child process. */
        socket_arg(k->q, k->u, arg, sizeof(arg));
        assert_true(test_kill_processes_with_arg(arg, k->signal) >= 1);
        for (int i = 0; i < 200; i++) {
                assert_int_equal(virtiofsd_get_state(dir, &st, NULL, NULL), 0);
                if (st != VIRTIOFSD_STATE_RUNNING && test_count_processes_with_arg(arg) == 0)
                        return 0;
                usleep(10 * 1000);
        }
        fail_msg("virtiofsd did not die");
        return 0;
}

/* Exports alice on a fresh VM of machine (one-port q35 when NULL), broken by kill_virtiofsd_at()
 * as ka says (unless NULL): the export fails with want (any failure when 0), at want_step (unless
 * _HOME_EXPORT_STEP_MAX), saying said and also_said (each unless NULL), and leaves nothing behind
 * (in QEMU too, when qemu_alive). Returns the parameters, for a retry. */
static struct home_export_params export_fails(struct test_qemu *q, const char *vm, const char *const machine[],
                                              struct kill_at *ka, int want, enum home_export_step want_step,
                                              const char *said, const char *also_said, bool qemu_alive) {
        struct home_export_params p;
        enum home_export_step step = _HOME_EXPORT_STEP_MAX;
        struct verr e = {};

        start_vm(q, vm, machine ? machine : q35_one_port);
        p = params_for(q, &alice);
        if (ka) {
                ka->q = q;
                ka->u = &alice;
                p.progress = kill_virtiofsd_at;
                p.userdata = ka;
        }
        int r = home_export(&p, NULL, &step, &e);
        printf("# %s\n", e.text);
        if (want ? r != want : r >= 0)
                fail_msg("export on %s returned %d, wanted %d: %s", vm, r, want, e.text);
        if (want_step != _HOME_EXPORT_STEP_MAX)
                assert_int_equal(step, want_step);
        if (said)
                assert_non_null(strstr(e.text, said));
        if (also_said)
                assert_non_null(strstr(e.text, also_said));
        assert_nothing_left(q, &alice, qemu_alive);
        return p;
}

/* Exports with p, on the bus want_bus, and takes it back by force (no guest to release it). */
static void export_and_force_back(struct test_qemu *q, const struct home_export_params *p, const char *want_bus) {
        struct home_export_info info;
        struct verr e = {};

        if (home_export(p, &info, NULL, &e) < 0)
                fail_msg("export on %s failed: %s", q->vm_dir, e.text);
        assert_string_equal(info.bus, want_bus);
        assert_int_equal(unexport(q, &alice, HOME_UNEXPORT_FORCE, 300, &e), 1);
}

static void test_rollback_virtiofsd_dies_before_chardev(void **state) {
        struct test_qemu q;
        struct kill_at ka = { .step = HOME_EXPORT_STEP_VIRTIOFSD, .signal = SIGKILL };

        export_fails(&q, "rb1", NULL, &ka, 0, HOME_EXPORT_STEP_CHARDEV, "chardev-add failed", "rolled back",
                     true);
        test_qemu_stop(&q);
}

static void test_rollback_device_add_refused(void **state) {
        struct test_qemu q;
        struct kill_at ka = { .step = HOME_EXPORT_STEP_CHARDEV, .signal = SIGKILL };

        struct home_export_params p = export_fails(&q, "rb2", NULL, &ka, 0, HOME_EXPORT_STEP_DEVICE,
                                                   "QEMU refused device_add", "rolled back", true);

        /* The port is still free, and the same export now works. */
        p.progress = NULL;
        export_and_force_back(&q, &p, "rp1");
        test_qemu_stop(&q);
}

static void test_rollback_abort_after_staging(void **state) {
        struct test_qemu q;
        struct kill_at ka = { .step = HOME_EXPORT_STEP_STAGING, .signal = 0 };

        export_fails(&q, "rb3", NULL, &ka, -EINTR, HOME_EXPORT_STEP_STAGING, "interrupted by the caller", NULL, true);
        assert_true(ka.mounted_when_called);
        test_qemu_stop(&q);
}

static void test_rollback_qemu_dies(void **state) {
        struct test_qemu q;
        struct kill_at ka = { .step = HOME_EXPORT_STEP_CHARDEV, .kill_qemu = true };

        export_fails(&q, "rb4", NULL, &ka, 0, HOME_EXPORT_STEP_DEVICE, "rolled back", NULL, false);
}

/* ---- other machines, other VMs, bad arguments ----------------------------------------------- */

static void test_pc(void **state) {
        static const char *const pc[] = { TEST_PC_SHARED, NULL };
        struct test_qemu q;
        struct home_export_params p;
        struct home_export_info info;
        struct verr e = {};
        int k;

        start_vm(&q, "pc", pc);
        p = params_for(&q, &alice);
        if (home_export(&p, &info, NULL, &e) < 0)
                fail_msg("export on pc failed: %s", e.text);
        assert_string_equal(info.bus, "pci.0");
        _cleanup_free_ char *bus = parent_bus(&q, "vmuser-fs-alice");
        assert_string_equal(bus, "/machine/i440fx/pci.0");

        /* Paused before the firmware, and then running the firmware without an OS: ACPI hot-unplug
         * needs the guest's _EJ0, so the device stays either way. */
        assert_int_equal(unexport(&q, &alice, 0, 1000, &e), -ETIMEDOUT);
        qemu_command(&q, "cont");
        memset(&e, 0, sizeof(e));
        k = unexport(&q, &alice, 0, 3000, &e);
        printf("# pc, firmware running, no OS: unexport -> %d (%s)\n", k, k < 0 ? e.text : "released");
        assert_true(k == -ETIMEDOUT || k == 0);
        if (k < 0)
                assert_int_equal(unexport(&q, &alice, HOME_UNEXPORT_FORCE, 300, &e), 1);
        assert_nothing_left(&q, &alice, false);
        test_qemu_stop(&q);
}

static void test_hotplug_off_port_skipped(void **state) {
        static const char *const ports[] = {
                TEST_Q35_SHARED, "-device", "pcie-root-port,id=rp1,bus=pcie.0,chassis=1,slot=1,hotplug=off",
                TEST_ROOT_PORT(2), NULL
        };
        static const char *const no_ports[] = {
                TEST_Q35_SHARED, "-device", "pcie-root-port,id=rp1,bus=pcie.0,chassis=1,slot=1,hotplug=off", NULL
        };
        struct test_qemu q;

        start_vm(&q, "hotplug-off", ports);
        struct home_export_params p = params_for(&q, &alice);
        export_and_force_back(&q, &p, "rp2");
        test_qemu_stop(&q);

        export_fails(&q, "no-ports", no_ports, NULL, -ENOSPC, _HOME_EXPORT_STEP_MAX, NULL, NULL, true);
        test_qemu_stop(&q);
}

static void test_memory_not_shared(void **state) {
        static const char *const plain[] = { "-machine", "q35", "-m", "256M", TEST_ROOT_PORT(1), NULL };
        struct test_qemu q;

        export_fails(&q, "unshared", plain, NULL, -EOPNOTSUPP, HOME_EXPORT_STEP_CHECK, "share=on", NULL, true);
        test_qemu_stop(&q);
}

static void test_bad_arguments(void **state) {
        struct test_qemu q;
        struct home_export_params p;
        struct verr e = {};
        char dir[256];

        start_vm(&q, "args", q35_one_port);

        /* A directory of somebody else (root here). */
        p = params_for(&q, &alice);
        p.source_dir = "/run/home";
        assert_int_equal(home_export(&p, NULL, NULL, &e), -EPERM);
        assert_non_null(strstr(e.text, "belongs to UID 0"));
        p = params_for(&q, &alice);
        p.host_uid = 0;
        assert_int_equal(home_export(&p, NULL, NULL, NULL), -EINVAL);
        p = params_for(&q, &alice);
        p.guest_uid = 65534;
        assert_int_equal(home_export(&p, NULL, NULL, NULL), -EINVAL);
        p = params_for(&q, &alice);
        p.user = "Alice/..";
        assert_int_equal(home_export(&p, NULL, NULL, NULL), -EINVAL);
        p = params_for(&q, &alice);
        p.source_dir = "home/alice";
        assert_int_equal(home_export(&p, NULL, NULL, NULL), -EINVAL);
        p = params_for(&q, &alice);
        p.virtiofsd = "/bin/true";
        assert_int_equal(home_export(&p, NULL, NULL, NULL), -ENOEXEC);
        assert_nothing_left(&q, &alice, true);
        test_qemu_stop(&q);

        /* No QEMU behind the VM directory. */
        test_make_vm_dir("no-qemu", dir, sizeof(dir));
        snprintf(q.vm_dir, sizeof(q.vm_dir), "%s", dir);
        p = params_for(&q, &alice);
        memset(&e, 0, sizeof(e));
        assert_int_equal(home_export(&p, NULL, NULL, &e), -ENOENT);
        assert_non_null(strstr(e.text, "is the VM running?"));
        assert_nothing_left(&q, &alice, false);

        /* A VM directory others can write to. */
        assert_int_equal(chmod(dir, 0777), 0);
        memset(&e, 0, sizeof(e));
        assert_int_equal(home_export(&p, NULL, NULL, &e), -EPERM);
        assert_non_null(strstr(e.text, "must belong to root"));
}

int main(void) {
        home_export_test_setup();

        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_rollback_virtiofsd_dies_before_chardev, teardown),
                cmocka_unit_test_teardown(test_rollback_device_add_refused, teardown),
                cmocka_unit_test_teardown(test_rollback_abort_after_staging, teardown),
                cmocka_unit_test_teardown(test_rollback_qemu_dies, teardown),
                cmocka_unit_test_teardown(test_pc, teardown),
                cmocka_unit_test_teardown(test_hotplug_off_port_skipped, teardown),
                cmocka_unit_test_teardown(test_memory_not_shared, teardown),
                cmocka_unit_test_teardown(test_bad_arguments, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
