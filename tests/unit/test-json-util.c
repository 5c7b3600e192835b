/* test-json-util.c: strict, bounded JSON and typed field access (libvmuser/json-util.c). */
#include <setjmp.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "json-util.h"

static int parse(const char *text) {
        json_object *obj = NULL;
        int r = json_parse_strict(text, strlen(text), &obj);
        if (r == 0)
                json_object_put(obj);
        else
                assert_null(obj);
        return r;
}

static void test_accepts_rfc8259(void **state) {
        assert_int_equal(parse("{\"a\":1,\"b\":[true,false,null],\"c\":\"x\\\"y\"}"), 0);
        assert_int_equal(parse("  {\"a\": -1.5e3}\n\t "), 0);
        assert_int_equal(parse("[1E2, 0.5e-1, 2e+3]"), 0);
        assert_int_equal(parse("\"caf\xc3\xa9\""), 0);
        assert_int_equal(parse("{\"with true inside\":\"NaN and 'quotes'\"}"), 0);
}

static void test_rejects_what_json_c_would_take(void **state) {
        assert_int_equal(parse("{'a':1}"), -EBADMSG);          /* single quotes */
        assert_int_equal(parse("[NaN]"), -EBADMSG);
        assert_int_equal(parse("[Infinity]"), -EBADMSG);
        assert_int_equal(parse("[-Infinity]"), -EBADMSG);
        assert_int_equal(parse("[True]"), -EBADMSG);
        assert_int_equal(parse("[truex]"), -EBADMSG);
        assert_int_equal(parse("[e5]"), -EBADMSG);             /* exponent without mantissa */
        assert_int_equal(parse("{\"a\":1} x"), -EBADMSG);      /* trailing garbage */
        assert_int_equal(parse("{\"a\":1}{}"), -EBADMSG);      /* two documents */
        assert_int_equal(parse("{\"a\":1"), -EBADMSG);         /* unfinished */
        assert_int_equal(parse(""), -EBADMSG);
        assert_int_equal(parse("   "), -EBADMSG);
        assert_int_equal(parse("\"\xc3\x28\""), -EBADMSG);     /* invalid UTF-8 */
        assert_int_equal(parse("\"\xff\""), -EBADMSG);
}

static void test_nul_after_value(void **state) {
        json_object *obj = NULL;
        static const char buf[] = "{}\0 ";
        assert_int_equal(json_parse_strict(buf, sizeof(buf) - 1, &obj), -EBADMSG);
        assert_null(obj);
        /* The length is what counts, not a terminating NUL: a prefix parses. */
        assert_int_equal(json_parse_strict(buf, 2, &obj), 0);
        json_object_put(obj);
}

/* depth arrays around a number, as the frame splitter counts levels (test-proto.c). */
static char *nested(unsigned depth) {
        char *s = malloc(2 * depth + 2);
        assert_non_null(s);
        memset(s, '[', depth);
        s[depth] = '1';
        memset(s + depth + 1, ']', depth);
        s[2 * depth + 1] = '\0';
        return s;
}

static void test_depth_limit(void **state) {
        char *ok = nested(VMUSER_JSON_MAX_DEPTH), *deep = nested(VMUSER_JSON_MAX_DEPTH + 1);
        assert_int_equal(parse(ok), 0);
        assert_int_equal(parse(deep), -ELOOP);
        free(ok);
        free(deep);

        /* Empty containers count alike: json-c alone let 17 of them through. */
        char empty[2 * (VMUSER_JSON_MAX_DEPTH + 1) + 1];
        memset(empty, '[', VMUSER_JSON_MAX_DEPTH);
        memset(empty + VMUSER_JSON_MAX_DEPTH, ']', VMUSER_JSON_MAX_DEPTH);
        empty[2 * VMUSER_JSON_MAX_DEPTH] = '\0';
        assert_int_equal(parse(empty), 0);
        memset(empty, '[', VMUSER_JSON_MAX_DEPTH + 1);
        memset(empty + VMUSER_JSON_MAX_DEPTH + 1, ']', VMUSER_JSON_MAX_DEPTH + 1);
        empty[2 * (VMUSER_JSON_MAX_DEPTH + 1)] = '\0';
        assert_int_equal(parse(empty), -ELOOP);
        /* Brackets inside strings are text, not levels. */
        assert_int_equal(parse("[\"[[[[[[[[[[[[[[[[[[[[\"]"), 0);
}

static void test_getters(void **state) {
        _cleanup_json_ json_object *obj = NULL;
        const char *s = NULL;
        bool b = false;
        uint32_t u = 0;
        json_object *o = NULL;
        static const char text[] = "{\"s\":\"x\",\"b\":true,\"u\":4294967295,\"big\":4294967296,\"neg\":-1,"
                                   "\"f\":1.5,\"o\":{},\"a\":[],\"n\":null}";

        assert_int_equal(json_parse_strict(text, strlen(text), &obj), 0);
        assert_int_equal(json_get_string(obj, "s", &s), 0);
        assert_string_equal(s, "x");
        assert_int_equal(json_get_bool(obj, "b", &b), 0);
        assert_true(b);
        assert_int_equal(json_get_uint32(obj, "u", &u), 0);
        assert_int_equal(u, UINT32_MAX);
        assert_int_equal(json_get_object(obj, "o", &o), 0);
        assert_int_equal(json_get_array(obj, "a", &o), 0);

        /* absent, or null, is -ENOENT; another type -EINVAL; out of range -ERANGE */
        assert_int_equal(json_get_string(obj, "missing", &s), -ENOENT);
        assert_int_equal(json_get_string(obj, "n", &s), -ENOENT);
        assert_int_equal(json_get_string(obj, "b", &s), -EINVAL);
        assert_int_equal(json_get_bool(obj, "s", &b), -EINVAL);
        assert_int_equal(json_get_uint32(obj, "f", &u), -EINVAL);
        assert_int_equal(json_get_uint32(obj, "s", &u), -EINVAL);
        assert_int_equal(json_get_uint32(obj, "big", &u), -ERANGE);
        assert_int_equal(json_get_uint32(obj, "neg", &u), -ERANGE);
        assert_int_equal(u, UINT32_MAX); /* untouched on error */
        assert_int_equal(json_get_object(obj, "a", &o), -EINVAL);
        assert_int_equal(json_get_array(obj, "o", &o), -EINVAL);

        /* a getter on something that is not an object */
        assert_int_equal(json_get_object(obj, "a", &o), -EINVAL);
        assert_int_equal(json_get_array(obj, "a", &o), 0);
        assert_int_equal(json_get_string(o, "s", &s), -EINVAL);
}

static void test_compact(void **state) {
        _cleanup_json_ json_object *obj = NULL;
        static const char text[] = "{ \"path\" : \"/run/userdb\" , \"n\" : [ 1 , 2 ] }";
        assert_int_equal(json_parse_strict(text, strlen(text), &obj), 0);
        assert_string_equal(json_to_compact(obj), "{\"path\":\"/run/userdb\",\"n\":[1,2]}");
}

static void write_file(int dir_fd, const char *name, const char *data) {
        int fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, strlen(data)), (ssize_t) strlen(data));
        close(fd);
}

static void test_read_file_at(void **state) {
        char dir[] = "/tmp/test-json-util.XXXXXX";
        json_object *obj = NULL;
        const char *s = NULL;
        int dir_fd;

        assert_non_null(mkdtemp(dir));
        dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(dir_fd >= 0);

        write_file(dir_fd, "ok.json", "{\"userName\":\"alice\"}\n");
        assert_int_equal(json_read_file_at(dir_fd, "ok.json", 1024, &obj), 0);
        assert_int_equal(json_get_string(obj, "userName", &s), 0);
        assert_string_equal(s, "alice");
        json_object_put(obj);
        obj = NULL;

        /* bounded: one byte over the limit is refused before reading */
        assert_int_equal(json_read_file_at(dir_fd, "ok.json", strlen("{\"userName\":\"alice\"}\n") - 1, &obj), -EFBIG);
        assert_int_equal(json_read_file_at(dir_fd, "ok.json", strlen("{\"userName\":\"alice\"}\n"), &obj), 0);
        json_object_put(obj);
        obj = NULL;

        write_file(dir_fd, "bad.json", "{\"userName\":'alice'}");
        assert_int_equal(json_read_file_at(dir_fd, "bad.json", 1024, &obj), -EBADMSG);
        assert_int_equal(json_read_file_at(dir_fd, "missing.json", 1024, &obj), -ENOENT);

        /* no symlinks followed, no directories read */
        assert_int_equal(symlinkat("ok.json", dir_fd, "link.json"), 0);
        assert_int_equal(json_read_file_at(dir_fd, "link.json", 1024, &obj), -ELOOP);
        assert_int_equal(mkdirat(dir_fd, "dir.json", 0700), 0);
        assert_int_equal(json_read_file_at(dir_fd, "dir.json", 1024, &obj), -EBADFD);
        assert_null(obj);

        unlinkat(dir_fd, "ok.json", 0);
        unlinkat(dir_fd, "bad.json", 0);
        unlinkat(dir_fd, "link.json", 0);
        unlinkat(dir_fd, "dir.json", AT_REMOVEDIR);
        close(dir_fd);
        assert_int_equal(rmdir(dir), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_accepts_rfc8259),
                cmocka_unit_test(test_rejects_what_json_c_would_take),
                cmocka_unit_test(test_nul_after_value),
                cmocka_unit_test(test_depth_limit),
                cmocka_unit_test(test_getters),
                cmocka_unit_test(test_compact),
                cmocka_unit_test(test_read_file_at),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
