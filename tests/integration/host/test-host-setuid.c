/* test-host-setuid.c: `vmuser attach` warns when the directory it exports is on a file system
 * that allows setuid programs (issue 11 §6): guest root can chmod 06755 a file it creates in the
 * export, and the host's own mount then honours it.
 *
 * No QEMU here: a socket file at web01/qmp.sock that nobody listens on lets the attach get past
 * its QMP check to the point where the warning is decided; the export itself then fails (exit 3)
 * and the record is taken out of the guest again. The export suite checks the --json field on a
 * real export. Cases: a tmpfs mounted without nosuid -> warning; the same with --read-only (guest
 * root cannot chmod) -> none; a source on the test's nosuid /run -> none. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "host-test.h"
#include "macro.h"
#include "test-util.h"

#define USER "vmtsuid"
#define SUID_FS HT_BASE "/suidfs"
#define WARNING "allows setuid programs"

static int group_setup(void **state) {
        char *plain[] = { NULL };
        struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = HT_VM_DIR "/web01/qmp.sock" };
        uid_t uid;
        gid_t gid;

        ht_setup();
        if (ht_useradd(USER, plain) != 0 || ht_host_ids(USER, &uid, &gid) < 0)
                return -1;
        ht_make_home(USER, NULL);
        if (mkdir(SUID_FS, 0755) < 0 || mount("tmpfs", SUID_FS, "tmpfs", MS_NODEV, "mode=0755") < 0 ||
            mkdir(SUID_FS "/" USER, 0700) < 0 || chown(SUID_FS "/" USER, uid, gid) < 0)
                return -1;
        if (ht_agent_start("web01", NULL) <= 0)
                return -1;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        return fd >= 0 && bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0 ? 0 : -1;
}

static void attach(const char *source, bool read_only, bool warned) {
        struct ht_result r = {};

        if (read_only)
                ht_vmuser(&r, "attach", "--read-only", "--home-source", source, "web01", USER, NULL);
        else
                ht_vmuser(&r, "attach", "--home-source", source, "web01", USER, NULL);
        ht_expect(&r, 3, NULL, "the user was detached from the guest again");
        if (ht_contains(r.err, WARNING) != warned)
                fail_msg("%s: warning %s, wanted %s:\n%s", source, warned ? "missing" : "given", warned ? "one" : "none",
                         r.err);
        if (warned) {
                assert_true(ht_contains(r.err, "'" SUID_FS "/" USER "'"));
                assert_true(ht_contains(r.err, "chmod 06755"));
        }
        ht_result_done(&r);
}

static void test_setuid_fs_warns(void **state) {
        attach(SUID_FS "/" USER, false, true);
}

static void test_read_only_does_not_warn(void **state) {
        attach(SUID_FS "/" USER, true, false);
}

static void test_nosuid_fs_does_not_warn(void **state) {
        attach(HT_HOMES "/" USER, false, false);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_setuid_fs_warns),
                cmocka_unit_test(test_read_only_does_not_warn),
                cmocka_unit_test(test_nosuid_fs_does_not_warn),
        };
        return cmocka_run_group_tests(tests, group_setup, NULL);
}
