/* test-host-keys.c: `vmuser attach --ssh-key FILE` opens FILE as sshd would trust it, and sends
 * only lines that are OpenSSH public keys (issue 11 §5).
 *
 * The real vmuser against the real agent (host-test.h). Each refused case must fail the attach
 * before anything reaches the guest (the user does not resolve there afterwards) and name the
 * file and the reason: the file a symlink (to a root-only file whose lines must not leak), a
 * directory on the path a symlink, the file or a directory owned by another user, writable by
 * group or others, a private key, a line that is not a key. Accepted: a file owned by the
 * attached user, by root, or by who invoked vmuser (SUDO_UID), with its key in the guest. An
 * authorized_keys with a bad line keeps its good keys and warns about the bad one. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "host-test.h"
#include "macro.h"
#include "test-util.h"

#define KEY_A "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMNi5poGgfAWwdqhZ1KsqRSaNsg2YANNtC+ac2ioH0xj vmtkeys@host"
#define KEY_B "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAK9X+HKDnUuaVvTQesSrvnQ5zRCayyCQIbXMeKwpGHq vmtkeys@laptop"
#define KEY_SECRET "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEkr3mYz5Hq313XTHeGBuhoMbb25UUyTnlcHP+uEkSUP root-only"
#define KEYS HT_BASE "/keys"
#define SECRET HT_BASE "/root-only"

static uid_t user_uid, other_uid;

static void write_owned(const char *path, const char *text, mode_t mode, uid_t uid) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        assert_int_equal(fchown(fd, uid, uid), 0);
        assert_int_equal(fchmod(fd, mode), 0);
}

static void make_dir(const char *path, mode_t mode, uid_t uid) {
        assert_true(mkdir(path, 0700) == 0 || errno == EEXIST);
        assert_int_equal(chown(path, uid, uid), 0);
        assert_int_equal(chmod(path, mode), 0);
}

static int group_setup(void **state) {
        char *plain[] = { NULL };
        gid_t gid;

        ht_setup();
        if (ht_useradd("vmtkeys", plain) != 0 || ht_useradd("vmtother", plain) != 0 ||
            ht_host_ids("vmtkeys", &user_uid, &gid) < 0 || ht_host_ids("vmtother", &other_uid, &gid) < 0)
                return -1;
        ht_make_home("vmtkeys", "# keys\n" KEY_A "\nthis is not a key\n");
        ht_make_home("vmtother", NULL);
        make_dir(KEYS, 0755, 0);
        write_owned(SECRET, KEY_SECRET "\n", 0600, 0);
        unsetenv("SUDO_UID");
        unsetenv("SUDO_USER");
        return ht_agent_start("web01", NULL) > 0 ? 0 : -1;
}

/* An attach with one --ssh-key file that must be refused: exit 1, the reason on stderr, and the
 * user not attached in the guest. */
static void expect_refused(const char *file, const char *reason) {
        struct ht_result r = {};
        char *argv[] = { (char *) "getent", (char *) "passwd", (char *) "vmtkeys", NULL };

        ht_vmuser(&r, "attach", "--no-home", "--ssh-key", file, "web01", "vmtkeys", NULL);
        ht_expect(&r, 1, NULL, reason);
        assert_true(ht_contains(r.err, file));
        ht_result_done(&r);
        assert_int_equal(ht_run_guest(argv, &r), 0);
        assert_int_equal(r.status, 2);
        ht_result_done(&r);
}

static void detach_user(void) {
        struct ht_result r = {};
        ht_vmuser(&r, "detach", "web01", "vmtkeys", NULL);
        ht_expect(&r, 0, NULL, NULL);
        ht_result_done(&r);
}

static void test_symlink_refused(void **state) {
        /* The user names her own link to a root-only file: its lines must not reach her record. */
        assert_int_equal(symlink(SECRET, KEYS "/link.pub"), 0);
        expect_refused(KEYS "/link.pub", "is a symlink");
}

static void test_symlinked_directory_refused(void **state) {
        make_dir(KEYS "/real", 0755, user_uid);
        write_owned(KEYS "/real/id.pub", KEY_B "\n", 0644, user_uid);
        assert_int_equal(symlink(KEYS "/real", KEYS "/dirlink"), 0);
        expect_refused(KEYS "/dirlink/id.pub", "'" KEYS "/dirlink' is a symlink");
}

static void test_owner_refused(void **state) {
        write_owned(KEYS "/other.pub", KEY_B "\n", 0644, other_uid);
        expect_refused(KEYS "/other.pub", "is owned by uid");
}

static void test_writable_refused(void **state) {
        write_owned(KEYS "/gw.pub", KEY_B "\n", 0664, user_uid);
        expect_refused(KEYS "/gw.pub", "writable by group or others (mode 0664)");
        write_owned(KEYS "/ow.pub", KEY_B "\n", 0646, 0);
        expect_refused(KEYS "/ow.pub", "writable by group or others");
}

static void test_directory_refused(void **state) {
        /* A directory another user owns, or anyone may write to, could have the file swapped. */
        make_dir(KEYS "/otherdir", 0755, other_uid);
        write_owned(KEYS "/otherdir/id.pub", KEY_B "\n", 0644, user_uid);
        expect_refused(KEYS "/otherdir/id.pub", "directory '" KEYS "/otherdir' is owned by uid");
        make_dir(KEYS "/sticky", 01777, 0);
        write_owned(KEYS "/sticky/id.pub", KEY_B "\n", 0644, user_uid);
        expect_refused(KEYS "/sticky/id.pub", "directory '" KEYS "/sticky' is writable by group or others");
}

static void test_private_key_refused(void **state) {
        write_owned(KEYS "/id_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n"
                                        "-----END OPENSSH PRIVATE KEY-----\n", 0600, user_uid);
        expect_refused(KEYS "/id_ed25519", "line 1: this is a private key; name the public key (the .pub file)");
}

static void test_bad_line_refused(void **state) {
        write_owned(KEYS "/bad.pub", KEY_B "\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5 truncated\n", 0644, user_uid);
        expect_refused(KEYS "/bad.pub", "line 2: not an OpenSSH public key: the key data is truncated");
        write_owned(KEYS "/junk.pub", "hello world\n", 0644, user_uid);
        expect_refused(KEYS "/junk.pub", "line 1: not an OpenSSH public key");
}

static void test_accepted(void **state) {
        struct ht_result r = {};
        char *keys[] = { (char *) "userdbctl", (char *) "ssh-authorized-keys", (char *) "vmtkeys", NULL };

        /* Owned by the attached user, mode 0644, real directories: accepted. authorized_keys's
         * bad line is skipped with a warning, its good key kept. */
        write_owned(KEYS "/mine.pub", "restrict " KEY_B "\n", 0644, user_uid);
        ht_vmuser(&r, "attach", "--no-home", "--ssh-key", KEYS "/mine.pub", "web01", "vmtkeys", NULL);
        ht_expect(&r, 0, "Attached 'vmtkeys'", "line 3: not an OpenSSH public key: unknown key type or unknown sshd option; skipped");
        ht_result_done(&r);
        assert_int_equal(ht_run_guest(keys, &r), 0);
        assert_int_equal(r.status, 0);
        assert_true(ht_contains(r.out, KEY_A "\n"));
        assert_true(ht_contains(r.out, "restrict " KEY_B "\n"));
        assert_int_equal(ht_count_lines(r.out), 2);
        ht_result_done(&r);
        detach_user();

        /* Owned by who ran vmuser (sudo's SUDO_UID): accepted, for this run only. */
        write_owned(KEYS "/admin.pub", KEY_B "\n", 0644, other_uid);
        char uid[16];
        snprintf(uid, sizeof(uid), "%u", (unsigned) other_uid);
        assert_int_equal(setenv("SUDO_UID", uid, 1), 0);
        ht_vmuser(&r, "attach", "--no-home", "--ssh-key", KEYS "/admin.pub", "web01", "vmtkeys", NULL);
        unsetenv("SUDO_UID");
        ht_expect(&r, 0, "Attached 'vmtkeys'", NULL);
        ht_result_done(&r);
        detach_user();
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_symlink_refused),
                cmocka_unit_test(test_symlinked_directory_refused),
                cmocka_unit_test(test_owner_refused),
                cmocka_unit_test(test_writable_refused),
                cmocka_unit_test(test_directory_refused),
                cmocka_unit_test(test_private_key_refused),
                cmocka_unit_test(test_bad_line_refused),
                cmocka_unit_test(test_accepted),
        };
        return cmocka_run_group_tests(tests, group_setup, NULL);
}
