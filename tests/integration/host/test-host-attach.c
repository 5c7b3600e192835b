/* test-host-attach.c: the real vmuser against the real vmuser-agent, end to end.
 *
 * Two views of this machine (see host-test.h): vmuser runs in a "host" mount namespace whose
 * /etc/passwd, shadow and group are scratch copies holding the test users (made with
 * `useradd --prefix`, never in the machine's files); the agent runs in the test's own "guest"
 * namespace, where those users do not exist, listening on $VMUSER_VM_DIR/web01/agent.sock. The
 * checks run in the guest view, through real NSS: getent passwd/shadow, id, and
 * userdbctl ssh-authorized-keys, plus the modes of the files the agent wrote.
 *
 * The VM here has no QEMU, so attaches that reach the guest say --no-home (or --home-tag, which
 * sends a spec without exporting); the default, exporting the home, is checked for what it does
 * without a QMP socket (exit 3, nothing sent), and for its option rules. The export itself, with
 * a real QEMU, is tests/integration/export/test-vmuser-export.c.
 *
 * Order matters (the tests share one agent): status -> attach vmtalice with a hash, an
 * authorized key, an extra --ssh-key file and --group -> re-attach is a no-op -> list ->
 * refusals by the guest (range, changed record without --replace, unknown group) -> refusals on
 * the host (root, system user, no private group, unknown) -> a partial batch (one user clashes
 * with a local guest account) -> warnings (weak hash, authorized_keys symlinked out of the home)
 * and --no-password/--home-tag -> detach refused while a session is open, then --force -> the
 * rest detached in one batch, and nothing of them is left. */
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
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "host-test.h"
#include "macro.h"
#include "paths.h"
#include "session-track.h"
#include "test-util.h"

#define YESCRYPT "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7"
#define MD5CRYPT "$1$saltsalt$qjXMvbEw8oaL.CzflDugX/"
#define KEY_ALICE "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMNi5poGgfAWwdqhZ1KsqRSaNsg2YANNtC+ac2ioH0xj vmtalice@host"
#define KEY_EXTRA "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAK9X+HKDnUuaVvTQesSrvnQ5zRCayyCQIbXMeKwpGHq vmtalice@laptop"
#define KEY_OUTSIDE "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEkr3mYz5Hq313XTHeGBuhoMbb25UUyTnlcHP+uEkSUP outside"
#define EXTRA_KEY_FILE HT_BASE "/extra.pub"
#define OUTSIDE_FILE HT_BASE "/outside-keys"

static pid_t agent_pid;
static char *userdb_before;
static uint32_t alice_uid;

static void write_text(const char *path, const char *text, mode_t mode) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t) strlen(text));
}

/* Runs a command in the guest view; returns its stdout (caller frees) and checks the status. */
static char *guest(int expect_status, const char *arg, ...) __attribute__((sentinel));
static char *guest(int expect_status, const char *arg, ...) {
        char *argv[16];
        size_t n = 0;
        struct ht_result r = {};
        va_list ap;

        va_start(ap, arg);
        for (const char *a = arg; a && n < 15; a = va_arg(ap, const char *))
                argv[n++] = (char *) a;
        va_end(ap);
        argv[n] = NULL;
        assert_int_equal(ht_run_guest(argv, &r), 0);
        if (r.status != expect_status)
                fail_msg("%s %s: status %d, wanted %d\nstdout: %s\nstderr: %s", argv[0], strempty(argv[1]), r.status,
                         expect_status, r.out, r.err);
        char *out = TAKE_PTR(r.out);
        ht_result_done(&r);
        return out;
}

static void assert_file_mode(const char *path, mode_t mode) {
        struct stat st;
        if (lstat(path, &st) < 0)
                fail_msg("%s: %s", path, strerror(errno));
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_mode & 07777, mode);
        assert_int_equal(st.st_uid, 0);
}

static int group_setup(void **state) {
        ht_setup();

        /* The guest has a group to join and a local account that a host user's name clashes with. */
        ht_guest_drop_in_group("vmtgrp", 4242);
        ht_guest_drop_in_user("vmtclash", 4343);

        char *alice[] = { (char *) "-c", (char *) "Alice Example", (char *) "-p", (char *) YESCRYPT, NULL };
        char *plain[] = { (char *) "-p", (char *) YESCRYPT, NULL };
        char *weak[] = { (char *) "-p", (char *) MD5CRYPT, NULL };
        char *sys[] = { (char *) "-r", NULL };
        char *shared[] = { (char *) "-N", (char *) "-g", (char *) "vmtshared", NULL };
        char *groupadd[] = { (char *) "groupadd", (char *) "--prefix", (char *) HT_ROOT, (char *) "vmtshared", NULL };
        struct ht_result r = {};

        if (ht_useradd("vmtalice", alice) != 0 || ht_useradd("vmtbob", plain) != 0 || ht_useradd("vmtcarol", weak) != 0 ||
            ht_useradd("vmtdave", plain) != 0 || ht_useradd("vmtclash", plain) != 0 || ht_useradd("vmtsys", sys) != 0)
                return -1;
        if (ht_run_guest(groupadd, &r) < 0 || r.status != 0 || ht_useradd("vmtnogrp", shared) != 0)
                return -1;
        ht_result_done(&r);

        ht_make_home("vmtalice", "# the laptop key\n\n" KEY_ALICE "\r\n");
        ht_make_home("vmtbob", NULL);
        ht_make_home("vmtdave", NULL);
        /* carol's authorized_keys is a symlink out of her home: it must not be followed. */
        ht_make_home("vmtcarol", "placeholder\n");
        write_text(OUTSIDE_FILE, KEY_OUTSIDE "\n", 0644);
        if (unlink(HT_HOMES "/vmtcarol/.ssh/authorized_keys") < 0 ||
            symlink(OUTSIDE_FILE, HT_HOMES "/vmtcarol/.ssh/authorized_keys") < 0)
                return -1;
        write_text(EXTRA_KEY_FILE, KEY_EXTRA "\n", 0644);

        userdb_before = test_snapshot_dir("/run/userdb");
        agent_pid = ht_agent_start("web01", NULL);
        return 0;
}

static int group_teardown(void **state) {
        ht_stop(agent_pid);
        free(userdb_before);
        return 0;
}

static void test_status(void **state) {
        struct ht_result r = {};

        ht_vmuser(&r, "status", "web01", NULL);
        ht_expect(&r, 0, "reachable", NULL);
        assert_true(ht_contains(r.out, "vmuser-attach"));
        assert_true(ht_contains(r.out, "QMP:      " HT_VM_DIR "/web01/qmp.sock: missing"));
        ht_result_done(&r);

        ht_vmuser(&r, "status", "--json", "web01", NULL);
        ht_expect(&r, 0, NULL, NULL);
        assert_int_equal(ht_count_lines(r.out), 1);
        json_object *o = ht_json_line(r.out, 0);
        assert_true(ht_jbool(o, "reachable"));
        assert_string_equal(ht_jstr(o, "version"), "0.1");
        assert_string_equal(ht_jstr(o, "agentSocket"), HT_VM_DIR "/web01/agent.sock");
        assert_false(ht_jbool(o, "qmpSocketPresent"));
        assert_false(ht_jbool(o, "qmpReachable"));
        json_object_put(o);
        ht_result_done(&r);
}

static void test_export_needs_qmp(void **state) {
        struct ht_result r = {};

        /* The default exports the home: without a QMP socket that is impossible, and the user
         * fails before anything is sent to the guest. */
        ht_vmuser(&r, "attach", "web01", "vmtbob", NULL);
        ht_expect(&r, 3, NULL, "the VM has no QMP socket '" HT_VM_DIR "/web01/qmp.sock'");
        assert_true(ht_contains(r.err, "--no-home"));
        ht_result_done(&r);
        free(guest(2, "getent", "passwd", "vmtbob", NULL));

        ht_vmuser(&r, "attach", "--json", "--read-only", "web01", "vmtbob", "vmtdave", NULL);
        ht_expect(&r, 3, NULL, NULL);
        ht_expect_results(r.out, 2, "unreachable", "QMP socket");
        ht_result_done(&r);
        free(guest(2, "getent", "passwd", "vmtdave", NULL));
        test_assert_absent(HT_VM_DIR "/web01/homes");
}

static void test_export_options(void **state) {
        static const struct {
                const char *args[6];
                const char *reason;
        } cases[] = {
                { { "--no-home", "--read-only" }, "--no-home exports and sends no home" },
                { { "--no-home", "--home-source", "/srv/x" }, "cannot be combined with --home-source" },
                { { "--no-home", "--home-tag", "t" }, "--no-home and --home-tag exclude each other" },
                { { "--home-tag", "t-%u", "--home-source", "/srv/%u" }, "use one of them" },
                { { "--home-source", "srv/x" }, "--home-source 'srv/x' is not an absolute path" },
                { { "--home-source", "/srv/../x" }, "not a normalized absolute path" },
                { { "--home-source", "/srv/same", "web01", "vmtbob" }, "one directory for 2 users" },
        };
        struct ht_result r = {};

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *args[12] = { (char *) "attach" };
                size_t n = 1;
                bool has_vm = false;
                for (size_t k = 0; k < ELEMENTSOF(cases[i].args) && cases[i].args[k]; k++) {
                        args[n++] = (char *) cases[i].args[k];
                        has_vm = has_vm || streq(cases[i].args[k], "web01");
                }
                if (!has_vm)
                        args[n++] = (char *) "web01";
                args[n++] = (char *) "vmtdave";
                ht_vmuserv(&r, args);
                ht_expect(&r, 2, NULL, cases[i].reason);
                ht_result_done(&r);
        }
        free(guest(2, "getent", "passwd", "vmtdave", NULL));

        /* The option exists under the name the VM suite looks for. */
        ht_vmuser(&r, "attach", "--help", NULL);
        ht_expect(&r, 0, "--home-source DIR", NULL);
        assert_true(ht_contains(r.out, "--read-only"));
        ht_result_done(&r);
}

static void test_attach(void **state) {
        struct ht_result r = {};
        uid_t host_uid;
        char expected[256], *out;

        assert_int_equal(ht_host_ids("vmtalice", &host_uid, NULL), 0);
        ht_vmuser(&r, "attach", "--no-home", "--json", "--group", "vmtgrp", "--ssh-key", EXTRA_KEY_FILE, "web01",
                  "vmtalice", NULL);
        ht_expect(&r, 0, NULL, NULL);
        assert_int_equal(ht_count_lines(r.out), 1);
        json_object *o = ht_json_line(r.out, 0);
        assert_string_equal(ht_jstr(o, "userName"), "vmtalice");
        assert_string_equal(ht_jstr(o, "result"), "ok");
        assert_true(ht_jbool(o, "changed"));
        alice_uid = (uint32_t) ht_jint(o, "uid");
        assert_int_equal(ht_jint(o, "gid"), alice_uid);
        assert_int_equal(ht_jint(o, "hostUid"), host_uid);
        assert_string_equal(ht_jstr(o, "homeDirectory"), "/run/vmhost/home/vmtalice");
        json_object_put(o);
        ht_result_done(&r);
        /* Allocated by the agent from its default range; not the host UID. */
        assert_in_range(alice_uid, 60514, 60577);
        assert_int_not_equal(alice_uid, host_uid);

        /* What the guest sees, through NSS. */
        out = guest(0, "getent", "passwd", "vmtalice", NULL);
        snprintf(expected, sizeof(expected), "vmtalice:x:%u:%u:Alice Example:/run/vmhost/home/vmtalice:", alice_uid,
                 alice_uid);
        if (strncmp(out, expected, strlen(expected)) != 0)
                fail_msg("getent passwd: %s, wanted %s...", out, expected);
        free(out);

        out = guest(0, "getent", "shadow", "vmtalice", NULL);
        assert_true(ht_contains(out, "vmtalice:" YESCRYPT ":"));
        free(out);
        assert_file_mode("/run/userdb/vmtalice.user-privileged", 0600);
        assert_file_mode("/run/userdb/vmtalice.user", 0644);
        _cleanup_free_ char *snapshot = test_snapshot_dir("/run/userdb");
        char *public_part = strstr(snapshot, "/run/userdb/vmtalice.user mode=");
        assert_non_null(public_part);
        _cleanup_free_ char *public_line = strndup(public_part, strcspn(public_part, "\n"));
        assert_null(strstr(public_line, "$y$"));

        out = guest(0, "id", "vmtalice", NULL);
        snprintf(expected, sizeof(expected), "uid=%u(vmtalice) gid=%u(vmtalice) groups=%u(vmtalice),4242(vmtgrp)\n",
                 alice_uid, alice_uid, alice_uid);
        assert_string_equal(out, expected);
        free(out);

        out = guest(0, "userdbctl", "ssh-authorized-keys", "vmtalice", NULL);
        assert_true(ht_contains(out, KEY_ALICE "\n"));
        assert_true(ht_contains(out, KEY_EXTRA "\n"));
        assert_false(ht_contains(out, "laptop key"));
        assert_int_equal(ht_count_lines(out), 2);
        free(out);
}

static void test_reattach_is_noop(void **state) {
        struct ht_result r = {};

        ht_vmuser(&r, "attach", "--no-home", "--json", "--group", "vmtgrp", "--ssh-key", EXTRA_KEY_FILE, "web01",
                  "vmtalice", NULL);
        ht_expect(&r, 0, NULL, NULL);
        json_object *o = ht_json_line(r.out, 0);
        assert_false(ht_jbool(o, "changed"));
        assert_int_equal(ht_jint(o, "uid"), alice_uid);
        json_object_put(o);
        ht_result_done(&r);

        ht_vmuser(&r, "attach", "--no-home", "--group", "vmtgrp", "--ssh-key", EXTRA_KEY_FILE, "web01", "vmtalice",
                  NULL);
        ht_expect(&r, 0, "nothing changed", NULL);
        ht_result_done(&r);
}

static void test_list(void **state) {
        struct ht_result r = {};
        char uid[32];

        snprintf(uid, sizeof(uid), " %u ", alice_uid);
        ht_vmuser(&r, "list", "web01", NULL);
        ht_expect(&r, 0, "vmtalice", NULL);
        assert_true(ht_contains(r.out, uid));
        assert_true(ht_contains(r.out, "MOUNTED"));
        assert_true(ht_contains(r.out, "EXPORT"));
        assert_true(ht_contains(r.out, "VIRTIOFSD"));
        ht_result_done(&r);

        /* The same VM by directory, and by socket override with a name that has no directory. */
        char *by_dir[] = { (char *) "list", (char *) "--json", (char *) HT_VM_DIR "/web01/", NULL };
        char *by_sock[] = { (char *) "list", (char *) "--json", (char *) "--agent", (char *) HT_VM_DIR "/web01/agent.sock",
                            (char *) "elsewhere", NULL };
        char *const *variants[] = { by_dir, by_sock };
        for (size_t i = 0; i < ELEMENTSOF(variants); i++) {
                ht_vmuserv(&r, variants[i]);
                ht_expect(&r, 0, NULL, NULL);
                assert_int_equal(ht_count_lines(r.out), 1);
                json_object *o = ht_json_line(r.out, 0), *home;
                assert_string_equal(ht_jstr(o, "userName"), "vmtalice");
                assert_int_equal(ht_jint(o, "uid"), alice_uid);
                assert_int_equal(ht_jint(o, "sessions"), 0);
                assert_false(ht_jbool(o, "homeMounted"));
                assert_true(ht_jbool(o, "attached"));
                assert_true(json_object_object_get_ex(o, "home", &home) && home == NULL);
                assert_true(json_object_object_get_ex(o, "export", &home) && home == NULL);
                json_object_put(o);
                ht_result_done(&r);
        }
}

static void test_refused_by_guest(void **state) {
        struct ht_result r = {};
        _cleanup_free_ char *out = NULL;

        /* The agent's reason is shown as it sent it. */
        ht_vmuser(&r, "attach", "--no-home", "--uid", "5", "web01", "vmtbob", NULL);
        ht_expect(&r, 4, NULL, "refused by the guest (GenericError): user uid 5 is outside the agent's range 60514-60577");
        ht_result_done(&r);

        ht_vmuser(&r, "attach", "--no-home", "--shell", "/bin/sh", "web01", "vmtalice", NULL);
        ht_expect(&r, 4, NULL, "pass replace to overwrite it");
        ht_result_done(&r);
        ht_vmuser(&r, "attach", "--no-home", "--replace", "--shell", "/bin/sh", "--group", "vmtgrp", "--ssh-key",
                  EXTRA_KEY_FILE, "web01", "vmtalice", NULL);
        ht_expect(&r, 0, "Attached 'vmtalice'", NULL);
        ht_result_done(&r);
        out = guest(0, "getent", "passwd", "vmtalice", NULL);
        assert_true(ht_contains(out, ":/bin/sh\n"));

        ht_vmuser(&r, "attach", "--no-home", "--group", "vmtnosuch", "web01", "vmtbob", NULL);
        ht_expect(&r, 4, NULL, "group 'vmtnosuch' (memberOf) does not exist in the guest");
        ht_result_done(&r);
        free(guest(2, "getent", "passwd", "vmtbob", NULL));

        /* Caught on the host before anything is sent. */
        ht_vmuser(&r, "attach", "--home-tag", "bad/tag", "web01", "vmtbob", NULL);
        ht_expect(&r, 2, NULL, "bad/tag");
        ht_result_done(&r);
        ht_vmuser(&r, "attach", "--no-home", "--uid", "60530", "web01", "vmtbob", "vmtdave", NULL);
        ht_expect(&r, 2, NULL, "--uid");
        ht_result_done(&r);
        ht_vmuser(&r, "attach", "--no-home", "web01", NULL);
        ht_expect(&r, 2, NULL, NULL);
        ht_result_done(&r);
}

static void test_refused_on_host(void **state) {
        static const struct {
                const char *user;
                const char *reason;
        } cases[] = {
                { "root", "is root" },
                { "vmtsys", "is a system user" },
                { "vmtnogrp", "not a private group named 'vmtnogrp'" },
                { "vmtnosuch", "there is no user 'vmtnosuch' on this host" },
                { "Vmt_Upper", "not a portable user name" },
        };
        struct ht_result r = {};

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                ht_vmuser(&r, "attach", "--no-home", "web01", cases[i].user, NULL);
                ht_expect(&r, 7, NULL, cases[i].reason);
                ht_result_done(&r);
        }

        ht_vmuser(&r, "attach", "--no-home", "--json", "web01", "root", "vmtsys", NULL);
        ht_expect(&r, 7, NULL, NULL);
        ht_expect_results(r.out, 2, "host-user", NULL);
        ht_result_done(&r);
}

static void test_partial_batch(void **state) {
        struct ht_result r = {};
        char expected[64];

        ht_vmuser(&r, "attach", "--no-home", "--json", "web01", "vmtbob", "vmtclash", NULL);
        ht_expect(&r, 6, NULL, NULL);
        assert_int_equal(ht_count_lines(r.out), 2);
        json_object *bob = ht_json_line(r.out, 0), *clash = ht_json_line(r.out, 1);
        assert_string_equal(ht_jstr(bob, "userName"), "vmtbob");
        assert_string_equal(ht_jstr(bob, "result"), "ok");
        assert_string_equal(ht_jstr(clash, "userName"), "vmtclash");
        assert_string_equal(ht_jstr(clash, "result"), "refused");
        assert_string_equal(ht_jstr(clash, "errorClass"), "GenericError");
        assert_true(ht_contains(ht_jstr(clash, "error"), "already exists in the guest"));
        snprintf(expected, sizeof(expected), "vmtbob:x:%u:", (unsigned) ht_jint(bob, "uid"));
        json_object_put(bob);
        json_object_put(clash);
        ht_result_done(&r);

        _cleanup_free_ char *out = guest(0, "getent", "passwd", "vmtbob", NULL);
        assert_true(ht_contains(out, expected));
        /* The guest's own account is untouched. */
        _cleanup_free_ char *local = guest(0, "getent", "passwd", "vmtclash", NULL);
        assert_true(ht_contains(local, "vmtclash:x:4343:4343:"));
}

static void test_warnings_and_options(void **state) {
        struct ht_result r = {};
        _cleanup_free_ char *shadow = NULL, *keys = NULL, *dave_shadow = NULL;

        ht_vmuser(&r, "attach", "--no-home", "web01", "vmtcarol", NULL);
        ht_expect(&r, 0, NULL, "md5-crypt, weaker than yescrypt or sha512-crypt");
        assert_true(ht_contains(r.err, "leads outside the home of 'vmtcarol'"));
        ht_result_done(&r);
        shadow = guest(0, "getent", "shadow", "vmtcarol", NULL);
        assert_true(ht_contains(shadow, MD5CRYPT));
        keys = guest(0, "userdbctl", "ssh-authorized-keys", "vmtcarol", NULL);
        assert_false(ht_contains(keys, "outside"));

        /* No secret at all: no privileged file. A home spec per user with %u, read-only. */
        ht_vmuser(&r, "attach", "--no-password", "--read-only", "--home-tag", "vmuser-%u", "--home-dir", "/home/%u",
                  "web01", "vmtdave", NULL);
        ht_expect(&r, 0, "home /home/vmtdave", NULL);
        ht_result_done(&r);
        dave_shadow = guest(0, "getent", "shadow", "vmtdave", NULL);
        assert_false(ht_contains(dave_shadow, "$y$"));
        test_assert_absent("/run/userdb/vmtdave.user-privileged");

        ht_vmuser(&r, "list", "--json", "web01", NULL);
        ht_expect(&r, 0, "\"home\":{\"tag\":\"vmuser-vmtdave\",\"fstype\":\"virtiofs\"", NULL);
        assert_true(ht_contains(r.out, "\"options\":\"ro\""));
        /* --home-tag exports nothing. */
        assert_true(ht_contains(r.out, "\"export\":null"));
        ht_result_done(&r);
        test_assert_absent(HT_VM_DIR "/web01/homes");
}

static void test_detach_busy_then_force(void **state) {
        _cleanup_(session_lock_releasep) struct session_lock *l = NULL;
        _cleanup_close_ int state_fd = open(VMUSER_STATE_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct ht_result r = {};
        char uid_user[64], uid_priv[64];
        int status;

        /* A live login session of vmtalice, as pam_vmuser would record it. */
        pid_t session = fork();
        assert_true(session >= 0);
        if (session == 0) {
                pause();
                _exit(0);
        }
        assert_true(state_fd >= 0);
        assert_int_equal(session_lock_acquire(state_fd, "vmtalice", true, &l), 0);
        assert_int_equal(session_add(l, session), 1);
        l = session_lock_release(l);

        ht_vmuser(&r, "detach", "web01", "vmtalice", NULL);
        ht_expect(&r, 5, NULL, "refused by the guest (UserBusy)");
        ht_result_done(&r);
        ht_vmuser(&r, "detach", "--json", "web01", "vmtalice", NULL);
        ht_expect(&r, 5, "\"result\":\"busy\"", NULL);
        ht_result_done(&r);
        free(guest(0, "getent", "passwd", "vmtalice", NULL));

        ht_vmuser(&r, "detach", "--force", "--timeout", "20", "web01", "vmtalice", NULL);
        ht_expect(&r, 0, "Detached 'vmtalice'", NULL);
        /* What the agent ended and removed of the UID is said (nothing here: the agent's
         * clean-up root is the test's empty scratch tree). */
        ht_expect(&r, 0, "; ended 0 process(es) of the UID, removed 0 IPC object(s), 0 file(s) and 0 directories.",
                  NULL);
        ht_result_done(&r);
        assert_int_equal(waitpid(session, &status, 0), session);
        assert_true(WIFSIGNALED(status));

        /* Everything of vmtalice is gone. */
        free(guest(2, "getent", "passwd", "vmtalice", NULL));
        free(guest(2, "getent", "shadow", "vmtalice", NULL));
        free(guest(1, "id", "vmtalice", NULL));
        _cleanup_free_ char *keys = guest(1, "userdbctl", "ssh-authorized-keys", "vmtalice", NULL);
        assert_string_equal(keys, "");
        snprintf(uid_user, sizeof(uid_user), "/run/userdb/%u.user", alice_uid);
        snprintf(uid_priv, sizeof(uid_priv), "/run/userdb/%u.user-privileged", alice_uid);
        test_assert_absent("%s", uid_user);
        test_assert_absent("%s", uid_priv);
        test_assert_absent("/run/userdb/vmtalice.user");
        test_assert_absent("/run/userdb/vmtalice.user-privileged");
        test_assert_absent("/run/userdb/vmtalice.group");
        test_assert_absent("/run/userdb/vmtalice:vmtgrp.membership");
        test_assert_absent("/run/vmuser/users/vmtalice.json");
        test_assert_absent("/run/vmuser/sessions/vmtalice");
}

static void test_detach_batch(void **state) {
        struct ht_result r = {};

        ht_vmuser(&r, "detach", "--json", "web01", "vmtbob", "vmtcarol", "vmtdave", NULL);
        ht_expect(&r, 0, NULL, NULL);
        assert_int_equal(ht_count_lines(r.out), 3);
        for (size_t i = 0; i < 3; i++) {
                json_object *o = ht_json_line(r.out, i);
                assert_string_equal(ht_jstr(o, "result"), "ok");
                /* Nothing was exported, so nothing is taken away on the host. */
                assert_false(ht_jbool(o, "homeUnexported"));
                json_object *c = NULL;
                assert_true(json_object_object_get_ex(o, "cleanup", &c));
                assert_string_equal(json_object_to_json_string_ext(c, JSON_C_TO_STRING_PLAIN),
                                    "{\"processesEnded\":0,\"processesLeft\":0,\"ipcRemoved\":0,\"ipcLeft\":0,"
                                    "\"filesRemoved\":0,\"dirsRemoved\":0,\"keptCount\":0,\"kept\":[],"
                                    "\"quarantined\":false}");
                json_object_put(o);
        }
        ht_result_done(&r);
        test_assert_absent(HT_VM_DIR "/web01/homes");

        ht_vmuser(&r, "detach", "web01", "vmtbob", NULL);
        ht_expect(&r, 4, NULL, "user 'vmtbob' is not attached");
        ht_result_done(&r);

        ht_vmuser(&r, "list", "web01", NULL);
        ht_expect(&r, 0, "No users attached", NULL);
        ht_result_done(&r);

        /* Back to what the guest had before the first attach. */
        _cleanup_free_ char *after = test_snapshot_dir("/run/userdb");
        assert_string_equal(after, userdb_before);
        _cleanup_free_ char *users = test_snapshot_dir("/run/vmuser/users");
        assert_string_equal(users, "");
}

/* Last: the agent's exit status (a memory checker's verdict under VMUSER_AGENT_WRAPPER); the
 * group teardown only stops what a failed run left behind. */
static void test_agent_exits_cleanly(void **state) {
        assert_int_equal(ht_stop(agent_pid), 0);
        agent_pid = 0;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_status),
                cmocka_unit_test(test_export_needs_qmp),
                cmocka_unit_test(test_export_options),
                cmocka_unit_test(test_attach),
                cmocka_unit_test(test_reattach_is_noop),
                cmocka_unit_test(test_list),
                cmocka_unit_test(test_refused_by_guest),
                cmocka_unit_test(test_refused_on_host),
                cmocka_unit_test(test_partial_batch),
                cmocka_unit_test(test_warnings_and_options),
                cmocka_unit_test(test_detach_busy_then_force),
                cmocka_unit_test(test_detach_batch),
                cmocka_unit_test(test_agent_exits_cleanly),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
