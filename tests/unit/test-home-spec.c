/* test-home-spec.c: home paths, home specs and their mount arguments (libvmuser/home-spec.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mount.h>
#include <cmocka.h>

#include "home-spec.h"
#include "json-util.h"
#include "macro.h"

static void test_home_paths(void **state) {
        assert_true(home_path_is_valid("/run/vmhost/home/alice"));
        assert_true(home_path_is_valid("/home/alice"));
        assert_false(home_path_is_valid("/home"));
        assert_false(home_path_is_valid("/home/"));
        assert_false(home_path_is_valid("/etc/alice"));
        assert_false(home_path_is_valid("/home/../etc"));
        assert_false(home_path_is_valid("/home/./alice"));
        assert_false(home_path_is_valid("/home//alice"));
        assert_false(home_path_is_valid("home/alice"));
        assert_false(home_path_is_valid("/home/al ice"));
        assert_false(home_path_is_valid("/home/al:ice"));
        assert_false(home_path_is_valid("/homeX/alice"));
        assert_false(home_path_is_valid(NULL));
}

static int spec(const char *json, struct home_spec *ret) {
        _cleanup_json_ json_object *obj = NULL;
        assert_int_equal(json_parse_strict(json, strlen(json), &obj), 0);
        return home_spec_from_json(obj, ret, NULL);
}

static void test_specs(void **state) {
        struct home_spec s;
        const char *source, *fstype;
        unsigned long flags;
        char data[HOME_SPEC_OPTIONS_MAX + 1];

        assert_int_equal(spec("{\"tag\":\"vmuser-alice\"}", &s), 0);
        assert_int_equal(s.fstype, HOME_FSTYPE_VIRTIOFS);
        assert_int_equal(home_spec_mount_args(&s, &source, &fstype, &flags, data), 0);
        assert_string_equal(source, "vmuser-alice");
        assert_string_equal(fstype, "virtiofs");
        assert_int_equal(flags & (MS_NOSUID | MS_NODEV), MS_NOSUID | MS_NODEV);
        assert_string_equal(data, "");

        assert_int_equal(spec("{\"tag\":\"x\",\"fstype\":\"tmpfs\",\"options\":\"ro,noexec,size=1m,mode=0700\"}", &s), 0);
        assert_int_equal(home_spec_mount_args(&s, &source, &fstype, &flags, data), 0);
        assert_true(flags & MS_RDONLY);
        assert_true(flags & MS_NOEXEC);
        assert_string_equal(data, "size=1m,mode=0700");

        assert_int_equal(spec("{\"tag\":\"/srv/homes/alice\",\"fstype\":\"bind\"}", &s), 0);
        assert_int_equal(home_spec_mount_args(&s, &source, &fstype, &flags, data), 0);
        assert_null(fstype);
        assert_true(flags & MS_BIND);

        assert_int_equal(spec("{\"tag\":\"relative\",\"fstype\":\"bind\"}", &s), -EINVAL);
        assert_int_equal(spec("{\"tag\":\"x\",\"options\":\"size=1m\"}", &s), -EINVAL); /* tmpfs only */
        assert_int_equal(spec("{\"tag\":\"x\",\"options\":\"ro,,rw\"}", &s), -EINVAL);
        assert_int_equal(spec("{\"tag\":\"x\",\"options\":\"dev\"}", &s), -EINVAL);
        assert_int_equal(spec("{\"tag\":\"0123456789012345678901234567890123456\"}", &s), -EINVAL);
        assert_int_equal(spec("{\"tag\":\"x\",\"other\":1}", &s), -EINVAL);
        assert_int_equal(spec("{\"fstype\":\"virtiofs\"}", &s), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_home_paths),
                cmocka_unit_test(test_specs),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
