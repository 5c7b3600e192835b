/* test-host-apply.c: `vmuser apply` at fleet scale: 50 simulated VMs x 20 users.
 *
 * Same host and guest views as the other host tests (host-test.h), but each of the 45 healthy
 * "VMs" is a real vmuser-agent --listen in a mount namespace of its own, with its own tmpfs on
 * /run/userdb and /run/vmuser (what the agent writes), so 45 guests keep 45 separate user
 * databases. Their sockets live in the shared VM directory, where vmuser finds them. The other
 * five are bad: two are down (a directory without a socket, a socket nobody accepts on), one
 * answers garbage, one never answers (slow), one nests its replies too deep.
 *
 * The homes are sent as --home-tag style specs (no export: no QEMU here). The guest side is
 * checked through `vmuser list --json` on every healthy VM and, for one VM, with getent inside
 * its agent's namespace (nss-systemd reading that agent's /run/userdb).
 *
 *   1. apply from empty: 45 VMs x 20 added, the five bad ones reported with their reason, exit 1
 *   2. apply again: 0 changes on the 45; on the healthy ones alone "Nothing changed", exit 0
 *   3. --check --diff of a manifest with one user removed and two changed (a shell, and a
 *      read-only home): exit 2, the diff names them, nothing changed in any guest
 *   4. apply of that manifest: removed/replaced as declared, the UID kept across the home change
 *   5. a logged-in user (a session file of a live process) whose home would change, and one no
 *      longer declared: both pending, untouched
 * Wall times are printed (bench/ reports the figures), never asserted. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "host-test.h"
#include "macro.h"
#include "test-util.h"

#define N_OK 45
#define N_USERS 20
#define HASH "$6$applysalt$Xq4C4mN3mY2oK0vQk7dF2rZ9wT1bL8sP5eR6yU3iO0aS4dF7gH2jK9lZ1xC5vB8nM3qW6eR9tY2uI5oP8aS1d."

static pid_t agents[N_OK];
static pid_t fakes[3];
static int refuse_fd = -1;
static char users[N_USERS][16];

static void die(const char *what) {
        fprintf(stderr, "apply test set-up failed: %s: %s\n", what, strerror(errno));
        exit(99);
}

static void wait_for_socket(const char *path) {
        for (int i = 0; i < 1000; i++) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                if (strlen(path) >= sizeof(sa.sun_path))
                        die(path);
                memcpy(sa.sun_path, path, strlen(path) + 1);
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0) {
                        close(fd);
                        return;
                }
                if (fd >= 0)
                        close(fd);
                usleep(10 * 1000);
        }
        fprintf(stderr, "nothing listens on %s\n", path);
        exit(99);
}

/* A real agent in a mount namespace of its own: its userdb and state are its own tmpfs. */
static pid_t start_private_agent(const char *vm) {
        char dir[256], sock[300];
        pid_t pid;

        snprintf(dir, sizeof(dir), HT_VM_DIR "/%s", vm);
        snprintf(sock, sizeof(sock), "%s/agent.sock", dir);
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                die(dir);
        pid = fork();
        if (pid < 0)
                die("fork");
        if (pid == 0) {
                int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0)
                        _exit(126);
                if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
                    mount("tmpfs", "/run/userdb", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0 ||
                    mount("tmpfs", "/run/vmuser", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0) {
                        perror("private agent namespace");
                        _exit(126);
                }
                /* --cleanup-root: a detach's clean-up stays below a scratch root, never touching
                 * the host's processes and files of the UID (see test_agent_argv_prefix()). */
                execl(test_env_path("VMUSER_AGENT"), "vmuser-agent", "--cleanup-root=" TEST_CLEANUP_ROOT, "--userdb=dropin", "--listen",
                      sock, (char *) NULL);
                _exit(127);
        }
        wait_for_socket(sock);
        return pid;
}

static void write_text(const char *path, const char *text) {
        _cleanup_fclose_ FILE *f = fopen(path, "we");
        if (!f || fputs(text, f) < 0)
                die(path);
}

/* The manifests: base declares all 20 (18 by name, two through the host group vmtpair);
 * changed drops vmtu03, gives vmtu04 the host's shell and vmtu05 a read-only home. */
static void write_manifest(const char *file, const char *pattern, bool changed) {
        char text[4096];
        size_t c = 0;

        c += (size_t) snprintf(text + c, sizeof(text) - c,
                               "{\"defaults\": {\"homeTag\": \"vmuser-%%u\"},\n \"vms\": [{\"vm\": \"%s\", \"users\": [",
                               pattern);
        for (int i = 0; i < 18; i++) {
                if (changed && i == 3)
                        continue;
                if (changed && i == 4)
                        c += (size_t) snprintf(text + c, sizeof(text) - c, "{\"user\": \"%s\", \"shell\": \"yes\"}, ",
                                               users[i]);
                else if (changed && i == 5)
                        c += (size_t) snprintf(text + c, sizeof(text) - c, "{\"user\": \"%s\", \"readOnly\": true}, ",
                                               users[i]);
                else
                        c += (size_t) snprintf(text + c, sizeof(text) - c, "\"%s\", ", users[i]);
        }
        snprintf(text + c, sizeof(text) - c, "{\"group\": \"vmtpair\"}]}]}\n");
        write_text(file, text);
}

static void write_manifests(void) {
        write_manifest(HT_BASE "/all.json", "vm-*", false);
        write_manifest(HT_BASE "/ok.json", "vm-ok-*", false);
        write_manifest(HT_BASE "/all-changed.json", "vm-*", true);
        write_manifest(HT_BASE "/ok-changed.json", "vm-ok-*", true);
}

static int group_setup(void **state) {
        ht_setup();

        _cleanup_fclose_ FILE *passwd = fopen(HT_ROOT "/etc/passwd", "ae");
        _cleanup_fclose_ FILE *shadow = fopen(HT_ROOT "/etc/shadow", "ae");
        _cleanup_fclose_ FILE *group = fopen(HT_ROOT "/etc/group", "ae");
        if (!passwd || !shadow || !group)
                return -1;
        for (unsigned i = 0; i < N_USERS; i++) {
                snprintf(users[i], sizeof(users[i]), "vmtu%02u", i);
                ht_append_user(passwd, shadow, group, users[i], 21000 + i, HASH);
        }
        fprintf(group, "vmtpair:x:21900:%s,%s\n", users[18], users[19]);
        fflush(passwd);
        fflush(shadow);
        fflush(group);
        write_manifests();

        for (int i = 0; i < N_OK; i++) {
                char vm[32];
                snprintf(vm, sizeof(vm), "vm-ok-%02d", i);
                agents[i] = start_private_agent(vm);
        }
        /* down: a VM directory without a socket; a socket nobody accepts on (a dead QEMU's) */
        if (mkdir(HT_VM_DIR "/vm-bad-45", 0755) < 0 || mkdir(HT_VM_DIR "/vm-bad-46", 0755) < 0)
                die("mkdir");
        struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = HT_VM_DIR "/vm-bad-46/agent.sock" };
        refuse_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (refuse_fd < 0 || bind(refuse_fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                die("bind");
        close(refuse_fd); /* bound, never listened on: connect is refused */
        refuse_fd = -1;
        fakes[0] = ht_fake_start("vm-bad-47", "garbage", NULL);
        fakes[1] = ht_fake_start("vm-bad-48", "silent", NULL);
        fakes[2] = ht_fake_start("vm-bad-49", "deep", NULL);
        return 0;
}

static int group_teardown(void **state) {
        for (int i = 0; i < N_OK; i++)
                if (agents[i] > 0) {
                        kill(agents[i], SIGTERM);
                        waitpid(agents[i], NULL, 0);
                }
        for (size_t i = 0; i < ELEMENTSOF(fakes); i++)
                ht_stop(fakes[i]);
        return 0;
}

/* --json output: the object of vm, or fail. */
static json_object *vm_result(const char *out, const char *vm) {
        size_t n = ht_count_lines(out);
        for (size_t i = 0; i < n; i++) {
                json_object *o = ht_json_line(out, i);
                if (strcmp(ht_jstr(o, "vm"), vm) == 0)
                        return o;
                json_object_put(o);
        }
        fail_msg("no result for VM %s in:\n%s", vm, out);
        return NULL;
}

static size_t jlen(json_object *o, const char *key) {
        return json_object_array_length(ht_jget(o, key));
}

static bool jlist_has(json_object *o, const char *key, const char *user) {
        json_object *a = ht_jget(o, key);
        for (size_t i = 0; i < json_object_array_length(a); i++) {
                json_object *item = json_object_array_get_idx(a, i);
                if (json_object_is_type(item, json_type_object))
                        item = ht_jget(item, "userName");
                if (strcmp(json_object_get_string(item), user) == 0)
                        return true;
        }
        return false;
}

static void expect_counts(json_object *o, size_t added, size_t replaced, size_t removed, size_t unchanged,
                          size_t pending) {
        if (jlen(o, "added") != added || jlen(o, "replaced") != replaced || jlen(o, "removed") != removed ||
            jlen(o, "unchanged") != unchanged || jlen(o, "pending") != pending || jlen(o, "failed") != 0 ||
            json_object_object_get(o, "error"))
                fail_msg("wanted %zu added, %zu replaced, %zu removed, %zu unchanged, %zu pending, none failed: %s", added,
                         replaced, removed, unchanged, pending, json_object_to_json_string(o));
}

/* The five bad VMs, each reported with its own reason. */
static void expect_bad(const char *out) {
        static const struct {
                const char *vm;
                const char *reason;
        } bad[] = {
                { "vm-bad-45", "does not exist" },
                { "vm-bad-46", "nobody is listening" },
                { "vm-bad-47", "" },
                { "vm-bad-48", "" },
                { "vm-bad-49", "" },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                json_object *o = vm_result(out, bad[i].vm);
                const char *err = ht_jstr(o, "error");
                if (!strstr(err, bad[i].reason) || !*err)
                        fail_msg("VM %s: error '%s' lacks '%s'", bad[i].vm, err, bad[i].reason);
                assert_false(ht_jbool(o, "changed"));
                json_object_put(o);
        }
}

/* `vmuser list --json VM`: the attached users, one JSON object per line. */
static char *list_vm(const char *vm) {
        struct ht_result r = {};
        assert_int_equal(ht_vmuser(&r, "list", "--json", vm, NULL), 0);
        ht_expect(&r, 0, NULL, NULL);
        char *out = TAKE_PTR(r.out);
        ht_result_done(&r);
        return out;
}

static json_object *listed(const char *out, const char *user) {
        size_t n = ht_count_lines(out);
        for (size_t i = 0; i < n; i++) {
                json_object *o = ht_json_line(out, i);
                if (strcmp(ht_jstr(o, "userName"), user) == 0)
                        return o;
                json_object_put(o);
        }
        return NULL;
}

static void expect_guest_has(const char *vm, bool removed_one) {
        _cleanup_free_ char *out = list_vm(vm);
        assert_int_equal(ht_count_lines(out), removed_one ? N_USERS - 1 : N_USERS);
        for (int u = 0; u < N_USERS; u++) {
                json_object *o = listed(out, users[u]);
                if ((o != NULL) != !(removed_one && u == 3))
                        fail_msg("VM %s: %s %s listed:\n%s", vm, users[u], o ? "is" : "is not", out);
                json_object_put(o);
        }
}

static uint32_t listed_uid(const char *vm, const char *user) {
        _cleanup_free_ char *out = list_vm(vm);
        json_object *o = listed(out, user);
        if (!o)
                fail_msg("%s not listed on %s", user, vm);
        uint32_t uid = (uint32_t) ht_jint(o, "uid");
        json_object_put(o);
        return uid;
}

/* getent passwd in the namespace of agent i: what nss-systemd in that "guest" resolves. */
static char *guest_getent(int i, const char *user) {
        char ns[64];
        snprintf(ns, sizeof(ns), "--mount=/proc/%d/ns/mnt", (int) agents[i]);
        char *argv[] = { (char *) "nsenter", ns, (char *) "getent", (char *) "passwd", (char *) user, NULL };
        struct ht_result r = {};
        ht_run_guest(argv, &r);
        char *out = r.status == 0 ? TAKE_PTR(r.out) : NULL;
        ht_result_done(&r);
        return out;
}

/* --timeout 10: the silent VMs cost that much per apply (in parallel), and 45 agents under
 * ASan on 2 busy CPUs have answered a request in more than 2 s. */
static struct ht_result apply(int want, const char *manifest, ...) {
        char *args[16] = { (char *) "apply", (char *) "--timeout", (char *) "10" };
        size_t n = 3;
        struct ht_result r = {};
        va_list ap;

        va_start(ap, manifest);
        for (const char *a; (a = va_arg(ap, const char *)) && n < 14;)
                args[n++] = (char *) a;
        va_end(ap);
        args[n++] = (char *) manifest;
        args[n] = NULL;
        assert_int_equal(ht_vmuserv(&r, args), 0);
        if (r.status != want)
                fail_msg("apply %s exited %d, wanted %d\nstdout: %.4000s\nstderr: %.4000s", manifest, r.status, want, r.out,
                         r.err);
        return r;
}

static void test_fleet(void **state) {
        char vm[32];

        /* 1. from empty */
        struct ht_result r = apply(1, HT_BASE "/all.json", "--json", NULL);
        assert_int_equal(ht_count_lines(r.out), N_OK + 5);
        for (int i = 0; i < N_OK; i++) {
                snprintf(vm, sizeof(vm), "vm-ok-%02d", i);
                json_object *o = vm_result(r.out, vm);
                expect_counts(o, N_USERS, 0, 0, 0, 0);
                assert_true(ht_jbool(o, "changed"));
                json_object_put(o);
        }
        expect_bad(r.out);
        double first = r.seconds;
        ht_result_done(&r);
        for (int i = 0; i < N_OK; i++) {
                snprintf(vm, sizeof(vm), "vm-ok-%02d", i);
                expect_guest_has(vm, false);
        }
        _cleanup_free_ char *pw = guest_getent(7, users[19]);
        if (!pw || !strstr(pw, "/run/vmhost/home/vmtu19"))
                fail_msg("vmtu19 does not resolve in the namespace of vm-ok-07: %s", strempty(pw));

        /* 2. again: nothing changes; on the healthy VMs alone it says so */
        r = apply(1, HT_BASE "/all.json", "--json", NULL);
        for (int i = 0; i < N_OK; i++) {
                snprintf(vm, sizeof(vm), "vm-ok-%02d", i);
                json_object *o = vm_result(r.out, vm);
                expect_counts(o, 0, 0, 0, N_USERS, 0);
                assert_false(ht_jbool(o, "changed"));
                json_object_put(o);
        }
        expect_bad(r.out);
        ht_result_done(&r);
        r = apply(0, HT_BASE "/ok.json", NULL);
        ht_expect(&r, 0, "Nothing changed on 45 VMs: 900 users as declared.", NULL);
        double again = r.seconds;
        ht_result_done(&r);

        /* 3. check + diff of the change: exit 2, and nothing changes */
        uint32_t uid5 = listed_uid("vm-ok-00", users[5]);
        r = apply(2, HT_BASE "/ok-changed.json", "--check", "--diff", NULL);
        ht_expect(&r, 2, "- vm-ok-00 vmtu03\n", NULL);
        ht_expect(&r, 2, "~ vm-ok-44 vmtu04\n", NULL);
        ht_expect(&r, 2, "~ vm-ok-17 vmtu05\n", NULL);
        assert_false(ht_contains(r.out, "vmtu06"));
        ht_result_done(&r);
        r = apply(2, HT_BASE "/ok-changed.json", "--check", "--json", NULL);
        for (int i = 0; i < N_OK; i++) {
                snprintf(vm, sizeof(vm), "vm-ok-%02d", i);
                json_object *o = vm_result(r.out, vm);
                expect_counts(o, 0, 2, 1, N_USERS - 3, 0);
                json_object_put(o);
        }
        ht_result_done(&r);
        for (int i = 0; i < N_OK; i++) {
                snprintf(vm, sizeof(vm), "vm-ok-%02d", i);
                expect_guest_has(vm, false);
        }

        /* 4. the change, with the bad VMs still in the manifest */
        r = apply(1, HT_BASE "/all-changed.json", "--json", NULL);
        for (int i = 0; i < N_OK; i++) {
                snprintf(vm, sizeof(vm), "vm-ok-%02d", i);
                json_object *o = vm_result(r.out, vm);
                expect_counts(o, 0, 2, 1, N_USERS - 3, 0);
                assert_true(jlist_has(o, "removed", users[3]));
                assert_true(jlist_has(o, "replaced", users[4]));
                assert_true(jlist_has(o, "replaced", users[5]));
                json_object_put(o);
        }
        expect_bad(r.out);
        double change = r.seconds;
        ht_result_done(&r);
        for (int i = 0; i < N_OK; i++) {
                snprintf(vm, sizeof(vm), "vm-ok-%02d", i);
                expect_guest_has(vm, true);
        }
        _cleanup_free_ char *out = list_vm("vm-ok-00");
        json_object *o = listed(out, users[5]);
        assert_non_null(o);
        assert_string_equal(ht_jstr(ht_jget(o, "home"), "options"), "ro");
        assert_int_equal(ht_jint(o, "uid"), uid5);
        json_object_put(o);
        _cleanup_free_ char *pw4 = guest_getent(0, users[4]);
        if (!pw4 || !strstr(pw4, ":/bin/sh\n"))
                fail_msg("vmtu04 has not got the host's shell in vm-ok-00: %s", strempty(pw4));
        _cleanup_free_ char *pw3 = guest_getent(0, users[3]);
        assert_null(pw3);

        /* and once more: converged */
        r = apply(0, HT_BASE "/ok-changed.json", NULL);
        ht_expect(&r, 0, "Nothing changed on 45 VMs: 855 users as declared.", NULL);
        ht_result_done(&r);

        printf("apply: 45 VMs x 20 users (+5 bad VMs): from empty %.2f s, no change (45 VMs) %.2f s, "
               "1 removed + 2 changed %.2f s\n", first, again, change);
        fflush(stdout);
}

/* A session of a live process for user in the namespace of agent i (what pam_vmuser records). */
static void fake_session(int i, const char *user) {
        char script[1024];
        snprintf(script, sizeof(script),
                 "set -e; d=/run/vmuser/sessions/%s; mkdir -p $d; chmod 700 $d; "
                 "start=$(cut -d' ' -f22 /proc/%d/stat); touch $d/lock $d/%d-$start",
                 user, (int) agents[i], (int) agents[i]);
        char ns[64];
        snprintf(ns, sizeof(ns), "--mount=/proc/%d/ns/mnt", (int) agents[i]);
        char *argv[] = { (char *) "nsenter", ns, (char *) "sh", (char *) "-c", script, NULL };
        struct ht_result r = {};
        ht_run_guest(argv, &r);
        if (r.status != 0)
                fail_msg("making a session: %s", r.err);
        ht_result_done(&r);
}

static void test_pending(void **state) {
        /* vm-ok-01: vmtu06 logged in, and the manifest makes its home read-only; vmtu07 logged
         * in, and the manifest drops it. */
        char manifest[1024];
        snprintf(manifest, sizeof(manifest),
                 "{\"defaults\": {\"homeTag\": \"vmuser-%%u\"}, \"vms\": [{\"vm\": \"vm-ok-01\", \"users\": "
                 "[{\"user\": \"vmtu06\", \"readOnly\": true}]}]}");
        write_text(HT_BASE "/pending.json", manifest);
        fake_session(1, "vmtu06");
        fake_session(1, "vmtu07");

        struct ht_result r = apply(0, HT_BASE "/pending.json", "--json", "--no-prune", NULL);
        json_object *o = vm_result(r.out, "vm-ok-01");
        expect_counts(o, 0, 0, 0, 0, 1);
        assert_true(jlist_has(o, "pending", "vmtu06"));
        json_object_put(o);
        ht_result_done(&r);

        r = apply(0, HT_BASE "/pending.json", "--json", NULL);
        o = vm_result(r.out, "vm-ok-01");
        assert_true(jlist_has(o, "pending", "vmtu06"));
        assert_true(jlist_has(o, "pending", "vmtu07"));
        assert_int_equal(jlen(o, "failed"), 0);
        json_object_put(o);
        ht_result_done(&r);

        _cleanup_free_ char *out = list_vm("vm-ok-01");
        o = listed(out, "vmtu06");
        assert_non_null(o);
        json_object *opts = json_object_object_get(ht_jget(o, "home"), "options");
        if (opts && strstr(json_object_get_string(opts), "ro"))
                fail_msg("the home of logged-in vmtu06 was changed: %s", json_object_to_json_string(o));
        json_object_put(o);
        o = listed(out, "vmtu07");
        assert_non_null(o);
        json_object_put(o);
}

static void test_bad_manifest(void **state) {
        static const struct {
                const char *text;
                const char *error;
        } cases[] = {
                { "{\"vms\": [{\"vm\": \"vm-ok-00\", \"users\": [{\"user\": \"a\", \"shell\": \"zsh\"}]}]}",
                  "vms[0].users[0].shell: 'zsh' is neither yes, no nor an absolute path" },
                { "{\"vms\": [{\"vm\": \"vm-ok-00\", \"users\": [\"Bad Name\"]}]}",
                  "vms[0].users[0]: 'Bad Name' is not a valid user name" },
                { "{\"vms\": [{\"vm\": \"vm-ok-00\", \"user\": []}]}", "vms[0]: unknown key 'user'" },
                { "{\"vms\": [], \"extra\": 1}", "unknown top-level key 'extra'" },
                { "[1, 2", "is not one valid JSON value" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct ht_result r = {};
                write_text(HT_BASE "/bad.json", cases[i].text);
                r = apply(1, HT_BASE "/bad.json", NULL);
                ht_expect(&r, 1, NULL, "manifest '" HT_BASE "/bad.json': ");
                ht_expect(&r, 1, NULL, cases[i].error);
                ht_result_done(&r);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fleet),
                cmocka_unit_test(test_pending),
                cmocka_unit_test(test_bad_manifest),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
