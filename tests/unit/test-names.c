/* test-names.c: user/group name and ID rules (libvmuser/names.c). */
#include <setjmp.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "names.h"

static void test_valid_names(void **state) {
        const char *good[] = { "alice", "_svc", "a", "bob-2", "x_y", "abcdefghijklmnopqrstuvwxyz01234" };
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                assert_true(name_is_valid(good[i]));
}

static void test_invalid_names(void **state) {
        const char *bad[] = { "", "Alice", "-bob", "1abc", "a/b", "..", ".", "a:b", "a b", "a.b", "al\nice",
                              "abcdefghijklmnopqrstuvwxyz012345", "é", "a$" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_false(name_is_valid(bad[i]));
        assert_false(name_is_valid(NULL));
}

static void test_reserved(void **state) {
        assert_true(name_is_reserved("root"));
        assert_true(name_is_reserved("nobody"));
        assert_true(name_is_reserved("sudo"));
        assert_false(name_is_reserved("alice"));
}

static void test_ids(void **state) {
        uint32_t v;
        assert_true(id_is_special(0));
        assert_true(id_is_special(65534));
        assert_true(id_is_special(65535));
        assert_true(id_is_special(UINT32_MAX));
        assert_false(id_is_special(60514));
        assert_int_equal(id_parse("60514", &v), 0);
        assert_int_equal(v, 60514);
        assert_int_equal(id_parse("0", &v), 0);
        assert_int_equal(v, 0);
        assert_int_equal(id_parse("4294967295", &v), 0);
        assert_int_equal(id_parse("4294967296", &v), -ERANGE);
        assert_int_equal(id_parse("012", &v), -EINVAL);
        assert_int_equal(id_parse("-1", &v), -EINVAL);
        assert_int_equal(id_parse("", &v), -EINVAL);
        assert_int_equal(id_parse("1x", &v), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_valid_names),
                cmocka_unit_test(test_invalid_names),
                cmocka_unit_test(test_reserved),
                cmocka_unit_test(test_ids),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
