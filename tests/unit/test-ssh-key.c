/* test-ssh-key.c: OpenSSH public key lines and fingerprints (libvmuser/ssh-key.c). The keys were
 * made with ssh-keygen; the fingerprints are what `ssh-keygen -l` printed for them. */
#include <setjmp.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ssh-key.h"

#define ED25519_B64 "AAAAC3NzaC1lZDI1NTE5AAAAIMNi5poGgfAWwdqhZ1KsqRSaNsg2YANNtC+ac2ioH0xj"
#define ED25519 "ssh-ed25519 " ED25519_B64 " alice@host"
#define ED25519_FP "SHA256:kfhb3kmVXPDGKnP/ZoLN3Y5GkJBzFh2cKYrIDVOCEN0"
#define RSA "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDQ/fpdsLGuO2WAtME/OLJGmlV4OhpLC5jdiV9Fw2knXnN80nGEOgDyXoN0hmHoX8IA/" \
            "yYv8yxb+QFuP/RO81LhOj7zyJ8xeNnpK1AaK3rbwbJ0cVWDa4QNCN1hIK+wMZBJKsxszjMMA6/c8ARtIEH+4FpqlUXZm51oCV8j8ut2UQ== r@h"
#define RSA_FP "SHA256:MI8FvWlK7bwAw+sicejOP+V0s/Qcf+sOJWT1DcfOib0"
#define ECDSA "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBIxjvsXU5zGSSHqUh+HrHD8hSccD9rgFqRmRSuhiwOiNCZ3scpYsvx52sQBEGN8I2OaSCpT0/6o+Af3HQxSDEqY= e@h"
#define ECDSA_FP "SHA256:Qz4h05PRUPUnX8csdXwelfG3MKkN8fNryegMn5lVD6c"

static void expect_valid(const char *line, const char *type, const char *fp) {
        struct ssh_key k = {};
        const char *reason = NULL;
        char buf[SSH_KEY_FINGERPRINT_MAX];

        if (ssh_key_parse(line, &k, &reason) != SSH_KEY_VALID)
                fail_msg("refused '%s': %s", line, reason);
        assert_string_equal(k.type, type);
        ssh_key_fingerprint(&k, buf);
        assert_string_equal(buf, fp);
        ssh_key_done(&k);
        assert_int_equal(ssh_key_line_fingerprint(line, buf), 0);
        assert_string_equal(buf, fp);
}

static void expect_invalid(const char *line, const char *reason_part) {
        const char *reason = NULL;
        char buf[SSH_KEY_FINGERPRINT_MAX];

        if (ssh_key_parse(line, NULL, &reason) != SSH_KEY_INVALID)
                fail_msg("accepted '%s'", line);
        if (!strstr(reason, reason_part))
                fail_msg("'%s': reason '%s', wanted '%s'", line, reason, reason_part);
        assert_int_equal(ssh_key_line_fingerprint(line, buf), -EINVAL);
}

static void test_valid_keys(void **state) {
        expect_valid(ED25519, "ssh-ed25519", ED25519_FP);
        expect_valid(RSA, "ssh-rsa", RSA_FP);
        expect_valid(ECDSA, "ecdsa-sha2-nistp256", ECDSA_FP);
        /* no comment, blanks around */
        expect_valid("  ssh-ed25519 " ED25519_B64 "  ", "ssh-ed25519", ED25519_FP);
        expect_valid("ssh-ed25519\t" ED25519_B64, "ssh-ed25519", ED25519_FP);
}

static void test_options(void **state) {
        expect_valid("restrict " ED25519, "ssh-ed25519", ED25519_FP);
        expect_valid("no-pty,from=\"10.0.0.0/8,192.168.1.1\" " ED25519, "ssh-ed25519", ED25519_FP);
        expect_valid("command=\"echo \\\"hi there\\\"\",no-X11-forwarding " ED25519, "ssh-ed25519", ED25519_FP);
        expect_valid("NO-PTY " ED25519, "ssh-ed25519", ED25519_FP);
        expect_valid("environment=\"A=b c\" " RSA, "ssh-rsa", RSA_FP);

        expect_invalid("frobnicate " ED25519, "unknown");
        expect_invalid("no-pty,,restrict " ED25519, "unknown");
        expect_invalid("command=\"unterminated " ED25519, "unterminated quote");
        expect_invalid("pty=yes " ED25519, "unknown");   /* a flag given a value */
        expect_invalid("command " ED25519, "unknown");   /* a value option without one */
        expect_invalid("restrict", "options without a key");
        expect_invalid("restrict ssh-foo " ED25519_B64, "unknown key type");
}

static void test_bad_data(void **state) {
        expect_invalid("", "no key");
        expect_invalid("# ssh-ed25519 " ED25519_B64, "no key");
        expect_invalid("ssh-ed25519", "no key data");
        expect_invalid("ssh-ed25519   ", "no key data");
        /* base64: unpadded, bad characters, padding in the middle */
        expect_invalid("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHZtdGFsaWNlLWtleS1vbmUtZm9yLXRlc3RzLW9ubHk x", "base64");
        expect_invalid("ssh-ed25519 AAAA*3NzaC1lZDI1NTE5 x", "base64");
        expect_invalid("ssh-ed25519 AA==AAAA x", "base64");
        /* the blob is of another type than the line says */
        expect_invalid("ssh-rsa " ED25519_B64 " x", "another key type");
        expect_invalid("ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBIxjvsXU5zGSSHqUh+HrHD8hSccD9rgF"
                       "qRmRSuhiwOiNCZ3scpYsvx52sQBEGN8I2OaSCpT0/6o+Af3HQxSDEqY=", "another key type");
        /* truncated: the last quad of the ed25519 key dropped */
        expect_invalid("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMNi5poGgfAWwdqhZ1KsqRSaNsg2YANNtC+ac2ioH0x=", "truncated");
        /* the type string only */
        expect_invalid("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", "truncated");
        /* the right type with a 31-byte public key (the length field says 31) */
        expect_invalid("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAH3Z2dnZ2dnZ2dnZ2dnZ2dnZ2dnZ2dnZ2dnZ2dnZ2dnY=", "wrong length");
        /* blob followed by extra bytes: the ed25519 blob + 3 zero bytes */
        expect_invalid("ssh-ed25519 " ED25519_B64 "AAAA", "trailing bytes");
        expect_invalid("ssh-dss-foo " ED25519_B64, "unknown");
        expect_invalid("rsa-sha2-256 " RSA, "unknown");
}

static void test_private_key(void **state) {
        const char *reason = NULL;

        assert_int_equal(ssh_key_parse("-----BEGIN OPENSSH PRIVATE KEY-----", NULL, &reason), SSH_KEY_PRIVATE);
        assert_int_equal(ssh_key_parse("-----BEGIN RSA PRIVATE KEY-----", NULL, &reason), SSH_KEY_PRIVATE);
        assert_int_equal(ssh_key_parse("  -----BEGIN EC PRIVATE KEY-----", NULL, &reason), SSH_KEY_PRIVATE);
        assert_int_equal(ssh_key_parse("PuTTY-User-Key-File-3: ssh-ed25519", NULL, &reason), SSH_KEY_PRIVATE);
        assert_true(ssh_key_line_is_private("-----BEGIN PRIVATE KEY-----"));
        assert_false(ssh_key_line_is_private("-----BEGIN PUBLIC KEY-----"));
        assert_false(ssh_key_line_is_private(ED25519));
}

static void test_long_line(void **state) {
        size_t n = SSH_KEY_LINE_MAX + 10;
        char *line = malloc(n + 1);
        assert_non_null(line);
        memset(line, 'A', n);
        memcpy(line, "ssh-rsa ", 8);
        line[n] = '\0';
        expect_invalid(line, "too long");
        free(line);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_valid_keys),
                cmocka_unit_test(test_options),
                cmocka_unit_test(test_bad_data),
                cmocka_unit_test(test_private_key),
                cmocka_unit_test(test_long_line),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
