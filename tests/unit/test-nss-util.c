/* test-nss-util.c: NSS look-ups with the ERANGE retry (libvmuser/nss-util.c), against this
 * system's own databases (root exists everywhere) and a call that wants more room each time. */
#include <setjmp.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "nss-util.h"

static void test_root(void **state) {
        struct passwd *pw = NULL;
        struct group *gr = NULL;

        assert_int_equal(nss_getpwnam("root", &pw), 0);
        assert_int_equal(pw->pw_uid, 0);
        assert_string_equal(pw->pw_name, "root");
        free(pw);
        assert_int_equal(nss_getpwuid(0, &pw), 0);
        assert_string_equal(pw->pw_name, "root");
        free(pw);
        assert_int_equal(nss_getgrnam("root", &gr), 0);
        assert_int_equal(gr->gr_gid, 0);
        free(gr);
        assert_int_equal(nss_getgrgid(0, &gr), 0);
        assert_string_equal(gr->gr_name, "root");
        free(gr);
}

static void test_missing(void **state) {
        struct passwd *pw = NULL;
        struct group *gr = NULL;

        assert_int_equal(nss_getpwnam("no-such-user-vmuser-test", &pw), -ENOENT);
        assert_null(pw);
        assert_int_equal(nss_getgrnam("no-such-group-vmuser-test", &gr), -ENOENT);
        assert_int_equal(nss_getpwuid(4000000001u, &pw), -ENOENT);
        assert_int_equal(nss_getgrgid(4000000001u, &gr), -ENOENT);
}

/* Says ERANGE until the buffer holds *key bytes, then returns the entry with the buffer. */
static int call_wants(const void *key, void *entry, char *buf, size_t size, void **ret) {
        size_t want = *(const size_t *) key;

        if (size < want)
                return ERANGE;
        memset(buf, 'x', want);
        *(char **) entry = buf;
        *ret = entry;
        return 0;
}

static int call_fails(const void *key, void *entry, char *buf, size_t size, void **ret) {
        return *(const int *) key;
}

static void test_retry(void **state) {
        void *block = NULL;
        size_t size = 0, want = 100000;
        int err;

        /* 1 KiB, 4, 16, 64, 256 KiB: grown until it fits. */
        assert_int_equal(nss_retry(call_wants, &want, sizeof(char *), &block, &size), 0);
        assert_true(size >= want + sizeof(char *));
        assert_true(size < 4 * want + 64);
        free(block);

        /* Exactly the maximum still fits; one byte more is -ERANGE. */
        want = NSS_BUFFER_MAX;
        assert_int_equal(nss_retry(call_wants, &want, sizeof(char *), &block, NULL), 0);
        free(block);
        want = NSS_BUFFER_MAX + 1;
        block = NULL;
        assert_int_equal(nss_retry(call_wants, &want, sizeof(char *), &block, NULL), -ERANGE);
        assert_null(block);

        /* Modules that say "not found" as ENOENT or ESRCH; a real error passes through. */
        err = ENOENT;
        assert_int_equal(nss_retry(call_fails, &err, 16, &block, NULL), -ENOENT);
        err = ESRCH;
        assert_int_equal(nss_retry(call_fails, &err, 16, &block, NULL), -ENOENT);
        err = EIO;
        assert_int_equal(nss_retry(call_fails, &err, 16, &block, NULL), -EIO);
        err = 0;
        assert_int_equal(nss_retry(call_fails, &err, 16, &block, NULL), -ENOENT);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_root),
                cmocka_unit_test(test_missing),
                cmocka_unit_test(test_retry),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
