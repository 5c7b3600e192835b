/* test-home-export.c: export and unexport of a home (libvmuser/home-export.c) with a real QEMU
 * (no guest OS) and the real virtiofsd of this machine.
 *
 * Covered: a full export on q35 (idmapped staging mount, virtiofsd, chardev, device on a free
 * root port), a second user on the next port, no free port; the state kept for `vmuser list`;
 * virtiofsd outliving the process that exported; and unplug without a guest: device_del is
 * accepted but DEVICE_DELETED never comes, so unexport times out (and changes nothing), --force
 * cleans the host side, QEMU keeps the device, and a new export of the same user is refused
 * until the guest lets go. Rollback and refusals are in test-home-export-errors.c; what both
 * share is in home-export-test.c.
 *
 * Those run the root file server (the fallback where user namespaces are missing); the
 * unprivileged one (the default) has a test of its own: its host ID, its user namespace and
 * maps, its capabilities, the ID claimed and released, the supervisor's working directory. */
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

/* ---- the full cycle on q35 ------------------------------------------------------------------ */

/* One scenario against one QEMU, read top to bottom: export, live state, a second user on the
 * next port, no third port, unplug without a guest, --force, the user blocked until the guest
 * lets go. Over 100 lines on purpose: every step checks the state the previous one left,
 * and split up the steps would only hand the QEMU, the export and that state around. */
static void test_export_q35(void **state) {
        struct test_qemu q;
        struct home_export_params p;
        struct home_export_info info, *list = NULL;
        enum home_export_step step;
        struct verr e = {};
        struct stat st;
        char path[512];
        size_t n;
        int k;

        start_vm(&q, "q35", q35_two_ports);

        p = params_for(&q, &alice);
        k = home_export(&p, &info, &step, &e);
        if (k < 0)
                fail_msg("export failed: %s", e.text);
        assert_string_equal(info.tag, "vmuser-alice");
        assert_string_equal(info.bus, "rp1");
        assert_string_equal(info.device_id, "vmuser-fs-alice");
        assert_string_equal(info.phase, "exported");
        assert_int_equal(info.flavour, VIRTIOFSD_FLAVOUR_C);
        assert_false(info.translate_ids);

        /* Live state, as `vmuser list` shows it. */
        assert_int_equal(home_export_get(q.vm_dir, "alice", &info, &e), 0);
        assert_int_equal(info.virtiofsd_state, VIRTIOFSD_STATE_RUNNING);
        assert_true(info.staging_mounted);
        assert_int_equal(info.guest_uid, 60002);
        snprintf(path, sizeof(path), "%s/homes/alice/mnt/home/hello", q.vm_dir);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_uid, 60002);
        assert_int_equal(st.st_gid, 60003);
        snprintf(path, sizeof(path), "%s/homes/alice/mnt", q.vm_dir);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0700);

        /* QEMU's side. */
        assert_int_equal(qemu_has(&q, "device", "vmuser-fs-alice"), 1);
        assert_int_equal(qemu_has(&q, "chardev", "vmuser-fs-alice"), 1);
        _cleanup_free_ char *bus = parent_bus(&q, "vmuser-fs-alice");
        assert_string_equal(bus, "/machine/peripheral/rp1/rp1");

        /* A second user, read-only, takes the next port. */
        p = params_for(&q, &bob);
        p.read_only = true;
        assert_int_equal(home_export(&p, &info, &step, &e), 0);
        assert_string_equal(info.bus, "rp2");
        assert_true(info.read_only);
        struct statvfs sv;
        snprintf(path, sizeof(path), "%s/homes/bob/mnt/home", q.vm_dir);
        assert_int_equal(statvfs(path, &sv), 0);
        assert_true(sv.f_flag & ST_RDONLY);
        assert_true(sv.f_flag & ST_NOSUID);
        assert_true(sv.f_flag & ST_NODEV);

        assert_int_equal(home_export_list(q.vm_dir, &list, &n, &e), 0);
        assert_int_equal(n, 2);
        assert_string_equal(list[0].user, "alice");
        assert_string_equal(list[1].user, "bob");
        assert_int_equal(list[1].virtiofsd_state, VIRTIOFSD_STATE_RUNNING);
        free(list);

        /* No third port. */
        p = params_for(&q, &carol);
        memset(&e, 0, sizeof(e));
        assert_int_equal(home_export(&p, &info, &step, &e), -ENOSPC);
        assert_int_equal(step, HOME_EXPORT_STEP_CHECK);
        printf("# %s\n", e.text);
        assert_non_null(strstr(e.text, "pcie-root-port"));
        assert_nothing_left(&q, &carol, true);

        /* Twice: refused. */
        p = params_for(&q, &alice);
        memset(&e, 0, sizeof(e));
        assert_int_equal(home_export(&p, &info, &step, &e), -EEXIST);
        assert_non_null(strstr(e.text, "already exported"));

        /* Unplug without a guest: DEVICE_DELETED never comes. Nothing else changes. */
        memset(&e, 0, sizeof(e));
        long long t0 = test_now_ms();
        assert_int_equal(unexport(&q, &alice, 0, 1500, &e), -ETIMEDOUT);
        printf("# q35, no guest: unexport after %lld ms: %s\n", test_now_ms() - t0, e.text);
        assert_non_null(strstr(e.text, "did not release"));
        assert_int_equal(home_export_get(q.vm_dir, "alice", &info, &e), 0);
        assert_string_equal(info.phase, "unexporting");
        assert_int_equal(info.virtiofsd_state, VIRTIOFSD_STATE_RUNNING);
        assert_true(info.staging_mounted);
        /* Asking again is fine ("already in the process of unplug"); with the firmware running
         * (still no OS) nothing changes either. */
        qemu_command(&q, "cont");
        memset(&e, 0, sizeof(e));
        assert_int_equal(unexport(&q, &alice, 0, 2000, &e), -ETIMEDOUT);
        printf("# q35, firmware running, no OS: %s\n", e.text);

        /* --force: the host side goes, QEMU keeps the device (and its chardev) for the guest. */
        memset(&e, 0, sizeof(e));
        assert_int_equal(unexport(&q, &alice, HOME_UNEXPORT_FORCE, 500, &e), 1);
        assert_nothing_left(&q, &alice, false);
        assert_int_equal(qemu_has(&q, "device", "vmuser-fs-alice"), 1);

        /* Until the guest lets go, the same user cannot be exported again. */
        p = params_for(&q, &alice);
        memset(&e, 0, sizeof(e));
        assert_int_equal(home_export(&p, &info, &step, &e), -EBUSY);
        printf("# %s\n", e.text);
        assert_nothing_left(&q, &alice, false);

        assert_int_equal(unexport(&q, &bob, HOME_UNEXPORT_FORCE, 500, &e), 1);
        assert_nothing_left(&q, &bob, false);
        assert_int_equal(unexport(&q, &bob, 0, 500, &e), -ENOENT);
        test_qemu_stop(&q);
}

/* ---- the unprivileged file server ------------------------------------------------------------ */

/* The first read of a small file (not empty), NUL-terminated, into buf. */
static void read_small(const char *path, char *buf, size_t size) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                fail_msg("%s: %s", path, strerror(errno));
        ssize_t n = read(fd, buf, size - 1);
        assert_true(n > 0);
        buf[n] = '\0';
}

/* The four numbers of a "Uid:"/"Gid:" line of /proc/PID/status, or the hex value of a "Cap...:"
 * line in ret[0]. */
static void proc_status_field(pid_t pid, const char *key, unsigned long long ret[4]) {
        char path[64], line[512];
        FILE *f;
        bool found = false;

        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        f = fopen(path, "re");
        assert_non_null(f);
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, key, strlen(key)) == 0) {
                        const char *v = line + strlen(key);
                        if (strncmp(key, "Cap", 3) == 0)
                                found = sscanf(v, "%llx", &ret[0]) == 1;
                        else
                                found = sscanf(v, "%llu %llu %llu %llu", &ret[0], &ret[1], &ret[2], &ret[3]) == 4;
                        break;
                }
        fclose(f);
        if (!found)
                fail_msg("no '%s' in %s", key, path);
}

/* /proc/PID/NAME with runs of blanks made one space, lines joined with '|'. */
static void proc_map(pid_t pid, const char *name, char *buf, size_t size) {
        char path[64], raw[512];
        size_t o = 0;

        snprintf(path, sizeof(path), "/proc/%d/%s", (int) pid, name);
        read_small(path, raw, sizeof(raw));
        for (char *p = raw; *p && o + 2 < size; p++) {
                if (*p == ' ' || *p == '\t') {
                        if (o > 0 && buf[o - 1] != ' ' && buf[o - 1] != '|')
                                buf[o++] = ' ';
                } else if (*p == '\n') {
                        if (o > 0 && buf[o - 1] == ' ')
                                o--;
                        if (p[1])
                                buf[o++] = '|';
                } else
                        buf[o++] = *p;
        }
        buf[o] = '\0';
}

/* One scenario against one QEMU (as test_export_q35, and long for the same reason): the
 * unprivileged file server, its IDs and capabilities seen from the host, and its unexport. */
static void test_export_unprivileged(void **state) {
        struct home_export_params p;
        struct home_export_info info;
        enum home_export_step step;
        struct test_qemu q;
        struct verr e = {};
        unsigned long long ids[4], cap[4];
        char path[512], ns_ours[64], ns_theirs[64], map[256], cwd[64];
        struct stat st;
        uid_t sid;
        pid_t pid, sup = 0;
        ssize_t n;

        if (!virtiofsd_userns_available())
                skip();
        start_vm(&q, "userns", q35_one_port);
        p = params_for(&q, &alice);
        p.server = HOME_EXPORT_SERVER_UNPRIVILEGED;
        if (home_export(&p, &info, &step, &e) < 0)
                fail_msg("export failed: %s", e.text);
        assert_int_equal(info.server, HOME_EXPORT_SERVER_UNPRIVILEGED);
        assert_false(info.translate_ids);
        sid = info.server_uid;
        assert_true(sid >= SERVER_ID_BASE && sid - SERVER_ID_BASE < SERVER_ID_COUNT);
        assert_int_equal(server_id_is_usable(sid), 1);
        snprintf(path, sizeof(path), SERVER_ID_DIR "/%u", (unsigned) sid);
        assert_int_equal(access(path, F_OK), 0);
        /* QEMU's vhost-user handshake went through (device_add waits for it): it serves. */
        assert_int_equal(qemu_has(&q, "device", "vmuser-fs-alice"), 1);

        /* The state says so; virtiofsd runs as the server's ID, all four of them, no groups. */
        assert_int_equal(home_export_get(q.vm_dir, "alice", &info, &e), 0);
        assert_int_equal(info.server, HOME_EXPORT_SERVER_UNPRIVILEGED);
        assert_int_equal(info.server_uid, sid);
        assert_int_equal(info.virtiofsd_state, VIRTIOFSD_STATE_RUNNING);
        pid = info.virtiofsd.pid;
        assert_true(pid > 0);
        proc_status_field(pid, "Uid:", ids);
        for (int i = 0; i < 4; i++)
                assert_int_equal(ids[i], sid);
        proc_status_field(pid, "Gid:", ids);
        for (int i = 0; i < 4; i++)
                assert_int_equal(ids[i], sid);
        printf("# unprivileged virtiofsd: pid %d, host uid/gid %u\n", (int) pid, (unsigned) sid);

        /* In a user namespace of its own, which maps the user's IDs and its own, and not 0:
         * whatever capabilities it has are capabilities over that namespace, i.e. over files
         * owned by the user; in the host's namespace it has none. */
        n = readlink("/proc/self/ns/user", ns_ours, sizeof(ns_ours) - 1);
        assert_true(n > 0);
        ns_ours[n] = '\0';
        snprintf(path, sizeof(path), "/proc/%d/ns/user", (int) pid);
        n = readlink(path, ns_theirs, sizeof(ns_theirs) - 1);
        assert_true(n > 0);
        ns_theirs[n] = '\0';
        assert_string_not_equal(ns_ours, ns_theirs);
        char want[128];
        snprintf(want, sizeof(want), "%u %u 1|60002 4242 1", VIRTIOFSD_SERVER_INSIDE_ID, (unsigned) sid);
        proc_map(pid, "uid_map", map, sizeof(map));
        assert_string_equal(map, want);
        snprintf(want, sizeof(want), "%u %u 1|60003 4243 1", VIRTIOFSD_SERVER_INSIDE_ID, (unsigned) sid);
        proc_map(pid, "gid_map", map, sizeof(map));
        assert_string_equal(map, want);
        proc_map(pid, "setgroups", map, sizeof(map));
        assert_string_equal(map, "deny");
        /* Within it, no more than the documented set (no mknod, no setfcap, no net_admin...). */
        proc_status_field(pid, "CapEff:", cap);
        printf("# CapEff within its namespace: %016llx\n", cap[0]);
        assert_int_equal(cap[0] & ~(0ull | (1ull << 0) | (1ull << 1) | (1ull << 2) | (1ull << 3) | (1ull << 4) |
                                    (1ull << 6) | (1ull << 7) | (1ull << 8) | (1ull << 18) | (1ull << 21) |
                                    (1ull << 24)),
                         0);
        proc_status_field(pid, "CapBnd:", cap);
        assert_int_equal(cap[0] & ((1ull << 27) | (1ull << 31) | (1ull << 12)), 0); /* mknod, setfcap, net_admin */

        /* The staging mount maps the host IDs onto themselves (the namespace maps them). */
        snprintf(path, sizeof(path), "%s/homes/alice/mnt/home/hello", q.vm_dir);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_uid, 4242);

        /* The supervisor keeps no directory of ours busy. */
        {
                char line[128];
                long v, s;
                unsigned long long t;
                snprintf(path, sizeof(path), "%s/homes/alice/" VIRTIOFSD_PID_FILE, q.vm_dir);
                read_small(path, line, sizeof(line));
                assert_int_equal(sscanf(line, "%ld %llu %ld", &v, &t, &s), 3);
                sup = (pid_t) s;
        }
        snprintf(path, sizeof(path), "/proc/%d/cwd", (int) sup);
        n = readlink(path, cwd, sizeof(cwd) - 1);
        assert_true(n > 0);
        cwd[n] = '\0';
        assert_string_equal(cwd, "/");

        /* Gone with the export, and the ID with it. */
        assert_int_equal(unexport(&q, &alice, HOME_UNEXPORT_FORCE, 500, &e), 1);
        assert_nothing_left(&q, &alice, false);
        snprintf(path, sizeof(path), SERVER_ID_DIR "/%u", (unsigned) sid);
        assert_int_equal(access(path, F_OK), -1);
        test_qemu_stop(&q);
}

/* ---- virtiofsd outlives the exporting process; the VM goes away ----------------------------- */

static void test_outlives_caller_and_vm_gone(void **state) {
        struct test_qemu q;
        struct home_export_info info;
        struct verr e = {};
        int status;

        start_vm(&q, "outlive", q35_one_port);
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0) {
                struct home_export_params p = params_for(&q, &alice);
                struct verr ce = {};
                int k = home_export(&p, NULL, NULL, &ce);
                if (k < 0)
                        fprintf(stderr, "export in the child failed: %s\n", ce.text);
                _exit(k < 0 ? 1 : 0);
        }
        assert_int_equal(waitpid(child, &status, 0), child);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

        assert_int_equal(home_export_get(q.vm_dir, "alice", &info, &e), 0);
        assert_int_equal(info.virtiofsd_state, VIRTIOFSD_STATE_RUNNING);
        assert_true(info.virtiofsd.pid > 1);
        assert_int_equal(kill(info.virtiofsd.pid, 0), 0);

        /* QEMU goes away (the VM was shut down): detach cleans up the host side by itself. */
        test_qemu_stop(&q);
        memset(&e, 0, sizeof(e));
        assert_int_equal(unexport(&q, &alice, 0, 1000, &e), 0);
        assert_nothing_left(&q, &alice, false);
}

static void test_tag(void **state) {
        char tag[HOME_SPEC_TAG_MAX + 1], again[HOME_SPEC_TAG_MAX + 1];
        const char *fits = "a2345678901234567890123456789";      /* 29: "vmuser-" + 29 = 36 */
        const char *long_name = "a234567890123456789012345678901"; /* 31, the longest name */

        assert_int_equal(home_export_tag("alice", tag, sizeof(tag)), 0);
        assert_string_equal(tag, "vmuser-alice");
        assert_int_equal(home_export_tag(fits, tag, sizeof(tag)), 0);
        assert_int_equal(strlen(tag), HOME_SPEC_TAG_MAX);
        assert_string_equal(tag + 7, fits);
        assert_int_equal(home_export_tag(long_name, tag, sizeof(tag)), 0);
        assert_int_equal(strlen(tag), HOME_SPEC_TAG_MAX);
        assert_int_equal(strncmp(tag, "vmuser-a2345678901234567890-", 28), 0);
        assert_int_equal(home_export_tag(long_name, again, sizeof(again)), 0);
        assert_string_equal(tag, again);
        assert_int_equal(home_export_tag("a234567890123456789012345678909", again, sizeof(again)), 0);
        assert_string_not_equal(tag, again);
        assert_int_equal(home_export_tag("not valid", tag, sizeof(tag)), -EINVAL);
        assert_int_equal(home_export_tag("alice", tag, 5), -ENOBUFS);
}

int main(void) {
        home_export_test_setup();

        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_tag, teardown),
                cmocka_unit_test_teardown(test_export_q35, teardown),
                cmocka_unit_test_teardown(test_export_unprivileged, teardown),
                cmocka_unit_test_teardown(test_outlives_caller_and_vm_gone, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
