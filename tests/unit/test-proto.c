/* test-proto.c: QGA framing (libvmuser/proto.c): frames, limits, resync, reply formatting, and
 * proto_write_all() on a socket (no SIGPIPE) and on a pipe. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
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
        enum { VALUES, CONTAINERS, TOKEN, DEPTH };
        static const struct {
                int limit;
                size_t value;
                const char *input;
                int objects, errors, error; /* frames read, frames refused, the last refusal */
                const char *described;      /* proto_limit_describe() of the refusal, or NULL */
        } cases[] = {
                /* {"a":[1,2,3]}: 1 + ':' + 2 ',' + '{' '[' = 6 values, 2 containers */
                { VALUES, 6, "{\"a\":[1,2,3]}", 1, 0, 0, NULL },
                { VALUES, 5, "{\"a\":[1,2,3]}", 0, 1, -E2BIG, "has more than 5 values" },
                { CONTAINERS, 1, "{\"a\":[1,2,3]}", 0, 1, -EOVERFLOW, "has more than 1 objects and arrays" },
                /* token: a string with its quotes and escapes, or a bare number */
                { TOKEN, 5, "{\"abc\":123}", 1, 0, 0, NULL },
                { TOKEN, 5, "{\"a\\\"bc\":1}", 0, 1, -ERANGE, NULL },
                { TOKEN, 5, "{\"a\":123456}", 0, 1, -ERANGE, NULL },
                { DEPTH, 2, "[[[]]]", 0, 1, -ELOOP, "nests deeper than 2 levels" },
                /* A frame over a limit is skipped to the newline; the next one is read. */
                { VALUES, 3, "[1,2,3,4,5]\n[1]", 1, 1, -E2BIG, NULL },
        };
        char buf[128];

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct proto_limits l = roomy;
                switch (cases[i].limit) {
                case VALUES: l.max_values = cases[i].value; break;
                case CONTAINERS: l.max_containers = cases[i].value; break;
                case TOKEN: l.max_token = cases[i].value; break;
                case DEPTH: l.max_depth = (unsigned) cases[i].value; break;
                }
                struct seen s = feed_limited(&l, cases[i].input, NULL);
                if (s.n_objects != cases[i].objects || s.n_errors != cases[i].errors ||
                    (cases[i].errors && s.last_error != cases[i].error))
                        fail_msg("'%s' (limit %d = %zu): %d read, %d refused (%d), wanted %d, %d (%d)", cases[i].input,
                                 cases[i].limit, cases[i].value, s.n_objects, s.n_errors, s.last_error, cases[i].objects,
                                 cases[i].errors, cases[i].error);
                if (cases[i].described)
                        assert_string_equal(proto_limit_describe(cases[i].error, &l, buf, sizeof(buf)),
                                            cases[i].described);
        }
        /* the frame after the refused one */
        struct proto_limits l = roomy;
        l.max_values = 3;
        assert_string_equal(feed_limited(&l, "[1,2,3,4,5]\n[1]", NULL).last, "[1]");
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

/* proto_write_all() to a socket whose peer has closed: -EPIPE, and no SIGPIPE (its default
 * action would end this test, as it would end the sshd or login that pam_vmuser runs in). */
static void test_write_to_closed_socket(void **state) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        close(sv[1]);
        assert_int_equal(proto_write_all(sv[0], "{}\n", 3, 1000), -EPIPE);
        close(sv[0]);
}

/* Not a socket (the agent's virtio-serial port): written with write(2). */
static void test_write_to_pipe(void **state) {
        int p[2];
        char buf[8] = {};
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        assert_int_equal(proto_write_all(p[1], "{}\n", 3, 1000), 0);
        assert_int_equal(read(p[0], buf, sizeof(buf)), 3);
        assert_string_equal(buf, "{}\n");
        close(p[0]);
        close(p[1]);
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
                cmocka_unit_test(test_write_to_closed_socket),
                cmocka_unit_test(test_write_to_pipe),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
