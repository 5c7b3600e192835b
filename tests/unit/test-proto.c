/* test-proto.c: QGA framing (libvmuser/proto.c): frames, limits, resync, reply formatting. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "json-util.h"
#include "macro.h"
#include "proto.h"

struct seen {
        int n_objects;
        int n_errors;
        int last_error;
        char last[512];
};

static int collect(json_object *obj, int error, void *userdata) {
        struct seen *s = userdata;
        if (obj) {
                s->n_objects++;
                snprintf(s->last, sizeof(s->last), "%s", json_to_compact(obj));
        } else {
                s->n_errors++;
                s->last_error = error;
        }
        return 0;
}

static struct seen feed(size_t max, const char *data, size_t len) {
        _cleanup_(proto_reader_freep) struct proto_reader *r = NULL;
        struct seen s = {};
        assert_int_equal(proto_reader_new(max, &r), 0);
        assert_int_equal(proto_reader_feed(r, data, len, collect, &s), 0);
        return s;
}

#define FEED(max, str) feed(max, str, sizeof(str) - 1)

/* A reader with every limit given; the counts of the last frame go to *ret_counts. */
static struct seen feed_limited(const struct proto_limits *l, const char *data, struct proto_frame_counts *ret_counts) {
        _cleanup_(proto_reader_freep) struct proto_reader *r = NULL;
        struct seen s = {};
        assert_int_equal(proto_reader_new(l->max_bytes, &r), 0);
        assert_int_equal(proto_reader_set_limits(r, l), 0);
        assert_int_equal(proto_reader_feed(r, data, strlen(data), collect, &s), 0);
        if (ret_counts)
                *ret_counts = *proto_reader_frame_counts(r);
        return s;
}

static const struct proto_limits roomy = {
        .max_bytes = 4096, .max_values = 1000, .max_containers = 100, .max_token = 100, .max_depth = 16,
};

static void test_counts(void **state) {
        struct proto_frame_counts c;
        struct seen s;

        /* values = ',' + ':' + '{' + '[' + 1; brackets, commas and colons in strings do not count */
        s = feed_limited(&roomy, "{\"return\": [{}, 1, \"a,b:{[\"], \"id\": 7}", &c);
        assert_int_equal(s.n_objects, 1);
        assert_int_equal(c.values, 1 + 3 + 2 + 3);
        assert_int_equal(c.containers, 3);
        assert_int_equal(c.bytes, strlen("{\"return\": [{}, 1, \"a,b:{[\"], \"id\": 7}"));
        assert_true(proto_frame_cost(&c) > 3 * 800);
}

static void test_count_limits(void **state) {
        struct proto_limits l = roomy;
        char buf[128];
        struct seen s;

        /* {"a":[1,2,3]}: 1 + ':' + 2 ',' + '{' '[' = 6 values, 2 containers */
        l.max_values = 6;
        s = feed_limited(&l, "{\"a\":[1,2,3]}", NULL);
        assert_int_equal(s.n_objects, 1);
        l.max_values = 5;
        s = feed_limited(&l, "{\"a\":[1,2,3]}", NULL);
        assert_int_equal(s.n_objects, 0);
        assert_int_equal(s.last_error, -E2BIG);
        assert_string_equal(proto_limit_describe(-E2BIG, &l, buf, sizeof(buf)), "has more than 5 values");

        l = roomy;
        l.max_containers = 1;
        s = feed_limited(&l, "{\"a\":[1,2,3]}", NULL);
        assert_int_equal(s.last_error, -EOVERFLOW);
        assert_string_equal(proto_limit_describe(-EOVERFLOW, &l, buf, sizeof(buf)), "has more than 1 objects and arrays");

        /* token: a string with its quotes and escapes, or a bare number */
        l = roomy;
        l.max_token = 5;
        s = feed_limited(&l, "{\"abc\":123}", NULL);
        assert_int_equal(s.n_objects, 1);
        s = feed_limited(&l, "{\"a\\\"bc\":1}", NULL);
        assert_int_equal(s.last_error, -ERANGE);
        s = feed_limited(&l, "{\"a\":123456}", NULL);
        assert_int_equal(s.last_error, -ERANGE);

        l = roomy;
        l.max_depth = 2;
        s = feed_limited(&l, "[[[]]]", NULL);
        assert_int_equal(s.last_error, -ELOOP);
        assert_string_equal(proto_limit_describe(-ELOOP, &l, buf, sizeof(buf)), "nests deeper than 2 levels");

        /* A frame over a limit is skipped to the newline; the next one is read. */
        l = roomy;
        l.max_values = 3;
        s = feed_limited(&l, "[1,2,3,4,5]\n[1]", NULL);
        assert_int_equal(s.n_errors, 1);
        assert_int_equal(s.n_objects, 1);
        assert_string_equal(s.last, "[1]");
}

static void test_scan(void **state) {
        struct proto_frame_counts c;
        struct proto_limits l = roomy;

        assert_int_equal(proto_scan("{\"return\": {}}\n", 15, &l, &c), 0);
        assert_int_equal(c.containers, 2);
        /* not JSON-checked, only counted: that is json-c's job later */
        assert_int_equal(proto_scan("{1 2 3}", 7, &l, NULL), 0);
        assert_int_equal(proto_scan("{} {}", 5, &l, NULL), -EBADMSG);
        assert_int_equal(proto_scan("{\"a\": [", 7, &l, NULL), -EBADMSG);
        assert_int_equal(proto_scan("{}\xff", 3, &l, NULL), -EBADMSG);
        l.max_containers = 1;
        assert_int_equal(proto_scan("{\"return\": {}}", 14, &l, NULL), -EOVERFLOW);
}

static void test_two_frames(void **state) {
        struct seen s = FEED(1024, "{\"execute\":\"a\"}\n  {\"execute\":\"b\"}");
        assert_int_equal(s.n_objects, 2);
        assert_int_equal(s.n_errors, 0);
        assert_string_equal(s.last, "{\"execute\":\"b\"}");
}

static void test_split_across_feeds(void **state) {
        _cleanup_(proto_reader_freep) struct proto_reader *r = NULL;
        struct seen s = {};
        const char *msg = "{\"execute\":\"guest-ping\",\"id\":\"}{\"}";
        assert_int_equal(proto_reader_new(1024, &r), 0);
        for (size_t i = 0; msg[i]; i++)
                assert_int_equal(proto_reader_feed(r, msg + i, 1, collect, &s), 0);
        assert_int_equal(s.n_objects, 1);
        assert_string_equal(s.last, "{\"execute\":\"guest-ping\",\"id\":\"}{\"}");
}

static void test_brackets_in_strings(void **state) {
        struct seen s = FEED(1024, "{\"a\":\"{[\\\"]}\"}");
        assert_int_equal(s.n_objects, 1);
        assert_int_equal(s.n_errors, 0);
}

static void test_oversized(void **state) {
        char buf[300];
        memset(buf, ' ', sizeof(buf));
        memcpy(buf, "{\"a\":\"", 6);
        memcpy(buf + 200, "\"}\n{\"b\":1}", 10);
        /* 16-byte frames: the first frame overflows, then the reader skips to the newline. */
        struct seen s = feed(16, buf, 210);
        assert_int_equal(s.n_errors, 1);
        assert_int_equal(s.last_error, -EMSGSIZE);
        assert_int_equal(s.n_objects, 1);
        assert_string_equal(s.last, "{\"b\":1}");
}

static void test_exact_limit(void **state) {
        struct seen s = FEED(9, "{\"a\":123}");
        assert_int_equal(s.n_objects, 1);
        s = FEED(8, "{\"a\":123}");
        assert_int_equal(s.n_errors, 1);
        assert_int_equal(s.n_objects, 0);
}

static void test_depth(void **state) {
        struct seen s = FEED(1024, "[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]\n");
        assert_int_equal(s.n_objects, 1); /* 16 levels: accepted */
        s = FEED(1024, "[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]\n{\"ok\":1}");
        assert_int_equal(s.n_errors, 1);
        assert_int_equal(s.last_error, -ELOOP);
        assert_int_equal(s.n_objects, 1);
}

static void test_malformed_then_recovers(void **state) {
        struct seen s = FEED(1024, "{\"a\":tru}\n{\"b\":2}");
        assert_int_equal(s.n_errors, 1);
        assert_int_equal(s.last_error, -EBADMSG);
        assert_int_equal(s.n_objects, 1);
        s = FEED(1024, "garbage line\n{\"b\":2}");
        assert_int_equal(s.n_errors, 1);
        assert_int_equal(s.n_objects, 1);
}

static void test_reset_byte(void **state) {
        const char data[] = "{\"partial\":\xff{\"a\":1}\x01{\"b\":2}";
        struct seen s = feed(1024, data, sizeof(data) - 1);
        assert_int_equal(s.n_errors, 0);
        assert_int_equal(s.n_objects, 2);
        assert_string_equal(s.last, "{\"b\":2}");
}

static void test_invalid_utf8(void **state) {
        const char data[] = "{\"a\":\"\xc3\x28\"}";
        struct seen s = feed(1024, data, sizeof(data) - 1);
        assert_int_equal(s.n_errors, 1);
        assert_int_equal(s.n_objects, 0);
}

static void test_strict_json(void **state) {
        struct seen s = FEED(1024, "{'a':1}\n{\"a\":1,}\n{\"a\":NaN}\n{\"a\":1 /* c */}\n");
        assert_int_equal(s.n_errors, 4);
        assert_int_equal(s.n_objects, 0);
}

static void test_format(void **state) {
        _cleanup_free_ char *ok = NULL, *err = NULL;
        _cleanup_json_ json_object *id = json_object_new_int(7);
        assert_int_equal(proto_format_return(NULL, id, &ok), 0);
        assert_string_equal(ok, "{\"return\":{},\"id\":7}\n");
        assert_int_equal(proto_format_error("GenericError", "bad \"x\"", NULL, &err), 0);
        assert_string_equal(err, "{\"error\":{\"class\":\"GenericError\",\"desc\":\"bad \\\"x\\\"\"}}\n");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_counts),
                cmocka_unit_test(test_count_limits),
                cmocka_unit_test(test_scan),
                cmocka_unit_test(test_two_frames),
                cmocka_unit_test(test_split_across_feeds),
                cmocka_unit_test(test_brackets_in_strings),
                cmocka_unit_test(test_oversized),
                cmocka_unit_test(test_exact_limit),
                cmocka_unit_test(test_depth),
                cmocka_unit_test(test_malformed_then_recovers),
                cmocka_unit_test(test_reset_byte),
                cmocka_unit_test(test_invalid_utf8),
                cmocka_unit_test(test_strict_json),
                cmocka_unit_test(test_format),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
