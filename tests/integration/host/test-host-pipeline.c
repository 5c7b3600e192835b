/* test-host-pipeline.c: `vmuser attach` keeps a window of requests in flight on the one agent
 * connection, bounded, and every user gets its own outcome whatever order the replies come in.
 *
 * Same two views as the other host tests (see host-test.h); 150 host users appended to the host
 * root's files. The agent is fake-agent.py in mode "window": it holds every reply until no
 * request has come for 0.3 s, then sends them newest first, and writes the most requests it ever
 * held unanswered to a stats file; its uid for vmtpipeNNN is 5000 + NNN, so a reply matched to
 * the wrong request shows. A sequential client would never have more than one request held; the
 * window is 64 (attach.h, ATTACH_WINDOW), so exactly 64 must be. In mode "window-drop" the reply
 * to one user in the middle of a window never comes: that user alone fails, after --timeout,
 * and the users after it still get their own replies. In mode "close" the agent closes the
 * connection at the first request: every user, in flight or not yet sent, fails with a reason
 * of its own, and nothing waits for --timeout; in mode "close-after" it answers 5 requests
 * first: those 5 users are attached (their replies are read although sending a later request
 * failed), the others fail. A batch that exports homes keeps one user on its way at a time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "host-test.h"
#include "macro.h"
#include "test-util.h"

#define N_USERS 150
#define WINDOW 64 /* host-tool/attach.h */
#define DROPPED 10
#define STATS HT_BASE "/pipeline-stats"

static char names[N_USERS][HT_NAME_SIZE];

static void expect_seconds(const struct ht_result *r, double min, double max) {
        if (r->seconds < min || r->seconds > max)
                fail_msg("vmuser took %.2f s, wanted %.1f..%.1f s", r->seconds, min, max);
}

static int group_setup(void **state) {
        ht_setup();
        ht_append_users(names, N_USERS, "vmtpipe", 3, 30000, "!");
        return 0;
}

static void run_attach(const char *vm, const char *timeout, struct ht_result *r) {
        char *args[N_USERS + 8];
        size_t n = 0;

        args[n++] = (char *) "attach";
        args[n++] = (char *) "--json";
        args[n++] = (char *) "--timeout";
        args[n++] = (char *) timeout;
        args[n++] = (char *) "--no-home";
        args[n++] = (char *) vm;
        for (size_t i = 0; i < N_USERS; i++)
                args[n++] = names[i];
        args[n] = NULL;
        assert_int_equal(ht_vmuserv(r, args), 0);
}

static long read_stats(void) {
        _cleanup_fclose_ FILE *f = fopen(STATS, "re");
        long v = -1;
        assert_non_null(f);
        assert_int_equal(fscanf(f, "%ld", &v), 1);
        return v;
}

/* Lines from..to-1: each the user of its argv position with this result; an "ok" line with the
 * uid the fake gives exactly that user (a reply matched to the wrong request shows), any other
 * with a reason. */
static void expect_lines(const char *out, size_t from, size_t to, const char *result) {
        for (size_t i = from; i < to; i++) {
                json_object *o = ht_json_line(out, i);
                assert_string_equal(ht_jstr(o, "userName"), names[i]);
                assert_string_equal(ht_jstr(o, "result"), result);
                if (streq(result, "ok"))
                        assert_int_equal(ht_jint(o, "uid"), 5000 + (int64_t) i);
                else
                        assert_true(strlen(ht_jstr(o, "error")) > 0);
                json_object_put(o);
        }
}

static void test_window_out_of_order(void **state) {
        char *args[] = { (char *) "--stats", (char *) STATS, NULL };
        pid_t fake = ht_fake_start("pipe", "window", args);
        struct ht_result r = {};

        run_attach("pipe", "10", &r);
        ht_expect(&r, 0, NULL, NULL);
        assert_int_equal(ht_count_lines(r.out), N_USERS);
        expect_lines(r.out, 0, N_USERS, "ok");
        ht_result_done(&r);
        /* Pipelined, and bounded by the window. */
        assert_int_equal(read_stats(), WINDOW);
        ht_stop(fake);
}

static void test_reply_dropped_in_window(void **state) {
        char *args[] = { (char *) "--drop", names[DROPPED], NULL };
        pid_t fake = ht_fake_start("pipedrop", "window-drop", args);
        struct ht_result r = {};

        run_attach("pipedrop", "2", &r);
        ht_expect(&r, 6, NULL, "no reply to 'vmuser-attach' within 2 s; whether it took effect is unknown");
        /* One wait of --timeout for the lost reply, not one per user in flight. */
        expect_seconds(&r, 2.0, 12.0);
        assert_int_equal(ht_count_lines(r.out), N_USERS);
        expect_lines(r.out, 0, DROPPED, "ok");
        expect_lines(r.out, DROPPED, DROPPED + 1, "unreachable");
        expect_lines(r.out, DROPPED + 1, N_USERS, "ok");
        ht_result_done(&r);
        ht_stop(fake);
}

static void test_close_fails_each_user(void **state) {
        pid_t fake = ht_fake_start("pipeclose", "close", NULL);
        struct ht_result r = {};

        run_attach("pipeclose", "30", &r);
        ht_expect(&r, 3, NULL, "the agent channel was closed before the reply to 'vmuser-attach'");
        expect_seconds(&r, 0.0, 15.0);
        assert_int_equal(ht_count_lines(r.out), N_USERS);
        expect_lines(r.out, 0, N_USERS, "unreachable");
        ht_result_done(&r);
        ht_stop(fake);
}

static void test_replies_before_close_count(void **state) {
        char *args[] = { (char *) "--after", (char *) "5", NULL };
        pid_t fake = ht_fake_start("pipeafter", "close-after", args);
        struct ht_result r = {};

        run_attach("pipeafter", "30", &r);
        ht_expect(&r, 6, NULL, "the agent channel was closed");
        expect_seconds(&r, 0.0, 15.0);
        assert_int_equal(ht_count_lines(r.out), N_USERS);
        expect_lines(r.out, 0, 5, "ok");
        expect_lines(r.out, 5, N_USERS, "unreachable");
        ht_result_done(&r);
        ht_stop(fake);
}

/* A batch that exports homes has one user on its way at a time: an export takes long enough that
 * the replies of 63 users behind it would outlive their --timeout unread. The exports fail here
 * (a fake QEMU, homes that do not exist); what counts is that the agent never held two
 * requests at once. */
static void test_exporting_batch_one_at_a_time(void **state) {
        char *args[] = { (char *) "--stats", (char *) STATS, NULL };
        pid_t fake = ht_fake_start("pipeexp", "window", args);
        pid_t qmp = ht_fake_qmp_start("pipeexp", "qmp-events");
        char *argv[] = { (char *) "attach", (char *) "--json", (char *) "--timeout", (char *) "10",
                         (char *) "pipeexp", names[0], names[1], names[2], NULL };
        struct ht_result r = {};

        assert_int_equal(ht_vmuserv(&r, argv), 0);
        assert_int_equal(ht_count_lines(r.out), 3);
        ht_result_done(&r);
        assert_int_equal(read_stats(), 1);
        ht_stop(qmp);
        ht_stop(fake);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_window_out_of_order),
                cmocka_unit_test(test_reply_dropped_in_window),
                cmocka_unit_test(test_close_fails_each_user),
                cmocka_unit_test(test_replies_before_close_count),
                cmocka_unit_test(test_exporting_batch_one_at_a_time),
        };
        return cmocka_run_group_tests(tests, group_setup, NULL);
}
