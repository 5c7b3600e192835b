/* test-lock-util.c: the lock with a timeout (libvmuser/lock-util.c): taken when free, -ETIMEDOUT
 * while another open file description holds it, taken again once released. */
#include <setjmp.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>
#include <cmocka.h>

#include "lock-util.h"

static void test_lock(void **state) {
        char path[] = "/tmp/test-lock-util.XXXXXX";
        int a = mkstemp(path), b;

        assert_true(a >= 0);
        b = open(path, O_RDWR | O_CLOEXEC);
        assert_true(b >= 0);
        unlink(path);

        assert_int_equal(flock_timeout(a, LOCK_EX, 0, 1), 0);
        /* Held by a: b waits, then gives up, also with no time at all. */
        assert_int_equal(flock_timeout(b, LOCK_EX, 30, 5), -ETIMEDOUT);
        assert_int_equal(flock_timeout(b, LOCK_EX, 0, 5), -ETIMEDOUT);
        assert_int_equal(flock_timeout(b, LOCK_SH, 0, 5), -ETIMEDOUT);
        /* Released: b gets it at once. */
        assert_int_equal(flock(a, LOCK_UN), 0);
        assert_int_equal(flock_timeout(b, LOCK_EX, 0, 5), 0);
        assert_int_equal(flock_timeout(a, LOCK_EX, 0, 5), -ETIMEDOUT);

        /* Not a file descriptor at all. */
        assert_int_equal(flock_timeout(-1, LOCK_EX, 10, 5), -EBADF);
        close(a);
        close(b);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_lock),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
