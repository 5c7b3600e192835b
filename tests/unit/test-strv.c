/* test-strv.c: string vectors (libvmuser/strv.c), including every allocation failing in turn:
 * the split must then fail (-ENOMEM, nothing leaked), never return a shorter or empty list (for
 * --allow-rpcs an empty or missing list would change what is allowed). malloc and calloc are
 * wrapped at link time (-Wl,--wrap), so strv.c's own calls can be made to fail. */
#include <setjmp.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "strv.h"

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);

/* Allocation number fail_at (1-based) fails; 0: none. */
static unsigned n_allocs, fail_at;

void *__wrap_malloc(size_t size) {
        return ++n_allocs == fail_at ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size) {
        return ++n_allocs == fail_at ? NULL : __real_calloc(n, size);
}

static void test_split(void **state) {
        char **v = NULL;

        assert_int_equal(strv_split_commas("guest-ping,vmuser-list", &v), 0);
        assert_string_equal(v[0], "guest-ping");
        assert_string_equal(v[1], "vmuser-list");
        assert_null(v[2]);
        strv_free(v);

        assert_int_equal(strv_split_commas(",a,,b,", &v), 0);
        assert_string_equal(v[0], "a");
        assert_string_equal(v[1], "b");
        assert_null(v[2]);
        strv_free(v);

        /* An empty list is a list: nothing allowed, not "no list". */
        assert_int_equal(strv_split_commas("", &v), 0);
        assert_non_null(v);
        assert_null(v[0]);
        strv_free(v);
}

static void test_allocation_failures(void **state) {
        unsigned total;
        char **v = NULL;

        n_allocs = fail_at = 0;
        assert_int_equal(strv_split_commas("guest-ping,vmuser-list,vmuser-attach", &v), 0);
        total = n_allocs;
        strv_free(v);
        assert_int_equal(total, 4); /* the vector and three items */

        for (fail_at = 1; fail_at <= total; fail_at++) {
                char **w = (char **) (uintptr_t) 0x1;
                n_allocs = 0;
                assert_int_equal(strv_split_commas("guest-ping,vmuser-list,vmuser-attach", &w), -ENOMEM);
                assert_ptr_equal(w, (char **) (uintptr_t) 0x1); /* untouched */
        }
        fail_at = 0;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_split),
                cmocka_unit_test(test_allocation_failures),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
