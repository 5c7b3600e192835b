/* test-host-errors.c: vmuser's error paths, against missing, dead and misbehaving agents.
 *
 * Same two views as test-host-attach.c (see host-test.h). Most agents here are
 * fake-agent.py in one of its modes, each on its own VM directory under $VMUSER_VM_DIR; the
 * stale-bytes test puts the fake as a proxy in front of the real agent, so the real agent's
 * records are checked through NSS afterwards. Every test asserts the exit status, the message,
 * and where it matters the time taken (a timeout must end within its limit) and that a wrong
 * answer was not believed (the uids the fakes plant must never show up as a result). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "host-test.h"
#include "macro.h"
#include "test-util.h"

static void expect_seconds(const struct ht_result *r, double min, double max) {
        if (r->seconds < min || r->seconds > max)
                fail_msg("vmuser took %.2f s, wanted %.1f..%.1f s", r->seconds, min, max);
}

static int group_setup(void **state) {
        char *plain[] = { (char *) "-p", (char *) "$6$saltsalt$M0Ck0Vn9T6QqXKZtVQ0U7T1nq4F7H0d8cC5A0Xl2s3nqV5mT8s7tQ4f1nZ0m3Z6k8P4a2e1S9R0q7j5u3W1y./", NULL };

        ht_setup();
        if (ht_useradd("vmtstale", plain) != 0)
                return -1;
        ht_make_home("vmtstale", NULL);
        return 0;
}

static void test_missing_socket(void **state) {
        struct ht_result r = {};

        ht_vmuser(&r, "status", "nowhere", NULL);
        ht_expect(&r, 3, NULL, "the VM directory '" HT_VM_DIR "/nowhere' does not exist");
        ht_result_done(&r);

        assert_int_equal(mkdir(HT_VM_DIR "/empty", 0755), 0);
        ht_vmuser(&r, "list", "empty", NULL);
        ht_expect(&r, 3, NULL, "the agent socket '" HT_VM_DIR "/empty/agent.sock' does not exist");
        ht_result_done(&r);

        /* A batch fails as a whole with the same reason, and never hangs. */
        ht_vmuser(&r, "detach", "--json", "empty", "vmta", "vmtb", NULL);
        ht_expect(&r, 3, "\"result\":\"unreachable\"", NULL);
        assert_int_equal(ht_count_lines(r.out), 2);
        ht_result_done(&r);
}

static void test_dead_socket(void **state) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = HT_VM_DIR "/dead/agent.sock" };
        struct ht_result r = {};
        int fd;

        /* A socket file nobody listens on: what a crashed QEMU leaves behind. */
        assert_int_equal(mkdir(HT_VM_DIR "/dead", 0755), 0);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        close(fd);

        ht_vmuser(&r, "status", "dead", NULL);
        ht_expect(&r, 3, "unreachable", "nobody is listening on '" HT_VM_DIR "/dead/agent.sock'");
        ht_result_done(&r);

        ht_vmuser(&r, "status", "--json", "dead", NULL);
        ht_expect(&r, 3, "\"reachable\":false", NULL);
        ht_result_done(&r);
}

static void test_silent_agent(void **state) {
        pid_t fake = ht_fake_start("silent", "silent", NULL);
        struct ht_result r = {};

        ht_vmuser(&r, "status", "--timeout", "1", "silent", NULL);
        ht_expect(&r, 3, NULL, "no reply to guest-sync-delimited within 1 s: is vmuser-agent running in the guest");
        expect_seconds(&r, 0.9, 2.5);
        ht_result_done(&r);

        /* One timeout for the whole batch, not one per user. */
        ht_vmuser(&r, "detach", "--json", "--timeout", "1", "silent", "vmta", "vmtb", "vmtc", NULL);
        ht_expect(&r, 3, NULL, "no reply to guest-sync-delimited within 1 s");
        assert_int_equal(ht_count_lines(r.out), 3);
        expect_seconds(&r, 0.9, 2.5);
        ht_result_done(&r);
        ht_stop(fake);
}

static void test_agent_goes_mute(void **state) {
        pid_t fake = ht_fake_start("mute", "mute", NULL);
        struct ht_result r = {};

        /* The first request times out, the re-sync before the second times out too: the client
         * gives up, and the third user fails at once instead of after a third timeout. */
        ht_vmuser(&r, "detach", "--json", "--timeout", "1", "mute", "vmta", "vmtb", "vmtc", NULL);
        ht_expect(&r, 3, NULL, "no reply to 'vmuser-detach' within 1 s");
        assert_true(ht_contains(r.err, "'vmtb' from mute: no reply to guest-sync-delimited within 1 s"));
        assert_true(ht_contains(r.err, "'vmtc' from mute: the agent did not answer guest-sync-delimited earlier; "
                                       "no further requests are sent"));
        assert_int_equal(ht_count_lines(r.out), 3);
        expect_seconds(&r, 1.9, 3.5);
        ht_result_done(&r);
        ht_stop(fake);
}

static void test_sync_without_delimiter(void **state) {
        pid_t fake = ht_fake_start("nodelim", "nodelim", NULL);
        struct ht_result r = {};

        /* {"return": id} without the 0xFF in front is not a sync reply. */
        ht_vmuser(&r, "status", "--timeout", "0.5", "nodelim", NULL);
        ht_expect(&r, 3, NULL, "no reply to guest-sync-delimited within 500 ms");
        ht_result_done(&r);
        ht_stop(fake);
}

static void test_garbage_reply(void **state) {
        pid_t fake = ht_fake_start("garbage", "garbage", NULL);
        struct ht_result r = {};

        ht_vmuser(&r, "list", "garbage", NULL);
        ht_expect(&r, 3, NULL, "the reply to 'vmuser-list' is not valid JSON");
        ht_result_done(&r);
        ht_stop(fake);
}

static void test_huge_reply(void **state) {
        pid_t fake = ht_fake_start("huge", "huge", NULL);
        struct ht_result r = {};

        ht_vmuser(&r, "list", "--timeout", "30", "huge", NULL);
        ht_expect(&r, 3, NULL, "the reply to 'vmuser-list' has a string or number longer than 4096 bytes");
        expect_seconds(&r, 0, 15);
        ht_result_done(&r);
        ht_stop(fake);
}

static void test_deep_reply(void **state) {
        pid_t fake = ht_fake_start("deep", "deep", NULL);
        struct ht_result r = {};

        ht_vmuser(&r, "list", "deep", NULL);
        ht_expect(&r, 3, NULL, "nests deeper than 16 levels");
        ht_result_done(&r);
        ht_stop(fake);
}

static void test_agent_closes(void **state) {
        pid_t fake = ht_fake_start("close", "close", NULL);
        struct ht_result r = {};

        ht_vmuser(&r, "detach", "--json", "close", "vmta", "vmtb", NULL);
        ht_expect(&r, 3, NULL, "the agent channel was closed before the reply to 'vmuser-detach'");
        assert_int_equal(ht_count_lines(r.out), 2);
        json_object *second = ht_json_line(r.out, 1);
        assert_string_equal(ht_jstr(second, "result"), "unreachable");
        assert_true(ht_contains(ht_jstr(second, "error"), "was closed earlier"));
        json_object_put(second);
        ht_result_done(&r);
        ht_stop(fake);
}

static void test_refusal_shown_verbatim(void **state) {
        pid_t fake = ht_fake_start("refuse", "refuse", NULL);
        struct ht_result r = {};

        ht_vmuser(&r, "detach", "refuse", "vmta", NULL);
        /* The desc as sent, except that terminal escapes are defused. */
        ht_expect(&r, 4, NULL, "refused by the guest (GenericError): fake refusal ?[31mred?[0m of 'vmuser-detach'");
        assert_null(strchr(r.err, '\x1b'));
        ht_result_done(&r);

        ht_vmuser(&r, "detach", "--json", "refuse", "vmta", NULL);
        ht_expect(&r, 4, NULL, NULL);
        json_object *o = ht_json_line(r.out, 0);
        assert_string_equal(ht_jstr(o, "result"), "refused");
        assert_string_equal(ht_jstr(o, "error"), "fake refusal \x1b[31mred\x1b[0m of 'vmuser-detach'");
        json_object_put(o);
        ht_result_done(&r);
        ht_stop(fake);
}

static void test_answer_for_someone_else(void **state) {
        pid_t fake = ht_fake_start("wrong", "wrong-user", NULL);
        struct ht_result r = {};

        ht_vmuser(&r, "detach", "wrong", "vmta", NULL);
        ht_expect(&r, 3, NULL, "lacks userName 'vmta'");
        assert_false(ht_contains(r.out, "Detached"));
        ht_result_done(&r);
        ht_stop(fake);
}

static void test_one_connection_per_batch(void **state) {
        char *args[] = { (char *) "--one-connection", NULL };
        pid_t fake = ht_fake_start("single", "ok", args);
        struct ht_result r = {};

        ht_vmuser(&r, "detach", "--json", "single", "vmta", "vmtb", "vmtc", "vmtd", NULL);
        ht_expect(&r, 0, NULL, NULL);
        assert_int_equal(ht_count_lines(r.out), 4);
        ht_result_done(&r);
        /* And the fake really refuses a second connection. */
        ht_vmuser(&r, "status", "single", NULL);
        ht_expect(&r, 3, NULL, NULL);
        ht_result_done(&r);
        ht_stop(fake);
}

static void test_reply_ids_checked(void **state) {
        pid_t fake = ht_fake_start("foreign", "foreign-id", NULL);
        struct ht_result r = {};
        json_object *uid;

        /* Frames with another id are stale answers and skipped; only ours counts. */
        ht_vmuser(&r, "detach", "--json", "foreign", "vmta", "vmtb", NULL);
        ht_expect(&r, 0, NULL, NULL);
        for (size_t i = 0; i < 2; i++) {
                json_object *o = ht_json_line(r.out, i);
                assert_true(json_object_object_get_ex(o, "uid", &uid));
                assert_int_equal(json_object_get_int64(uid), 2222);
                json_object_put(o);
        }
        ht_result_done(&r);
        ht_stop(fake);
}

static void test_late_reply_and_resync(void **state) {
        char *args[] = { (char *) "--delay", (char *) "1.6", NULL };
        pid_t fake = ht_fake_start("late", "late", args);
        struct ht_result r = {};

        /* The first request times out; its reply arrives during the re-sync for the second and
         * must be discarded there, not taken for the second user's answer. */
        ht_vmuser(&r, "detach", "--json", "--timeout", "1", "late", "vmtfirst", "vmtsecond", NULL);
        ht_expect(&r, 6, NULL, "no reply to 'vmuser-detach' within 1 s; whether it took effect is unknown");
        assert_int_equal(ht_count_lines(r.out), 2);
        json_object *first = ht_json_line(r.out, 0), *second = ht_json_line(r.out, 1), *uid;
        assert_string_equal(ht_jstr(first, "result"), "unreachable");
        assert_string_equal(ht_jstr(second, "userName"), "vmtsecond");
        assert_string_equal(ht_jstr(second, "result"), "ok");
        assert_true(json_object_object_get_ex(second, "uid", &uid));
        assert_int_equal(json_object_get_int64(uid), 2222);
        json_object_put(first);
        json_object_put(second);
        ht_result_done(&r);
        ht_stop(fake);
}

static void test_stale_bytes_before_sync(void **state) {
        pid_t agent = ht_agent_start("web01", NULL);
        char *args[] = { (char *) "--upstream", (char *) HT_VM_DIR "/web01/agent.sock", NULL };
        pid_t proxy = ht_fake_start("stale", "stale-proxy", args);
        struct ht_result r = {};
        char expected[64];
        json_object *uid;

        /* Stale replies and a half frame towards vmuser, a half request towards the agent. */
        ht_vmuser(&r, "attach", "--json", "--no-home", "stale", "vmtstale", NULL);
        ht_expect(&r, 0, NULL, NULL);
        json_object *o = ht_json_line(r.out, 0);
        assert_true(json_object_object_get_ex(o, "uid", &uid));
        int64_t guest_uid = json_object_get_int64(uid);
        json_object_put(o);
        ht_result_done(&r);
        assert_int_not_equal(guest_uid, 4242);
        assert_in_range(guest_uid, 60514, 60577);

        char *getent[] = { (char *) "getent", (char *) "passwd", (char *) "vmtstale", NULL };
        ht_run_guest(getent, &r);
        snprintf(expected, sizeof(expected), "vmtstale:x:%u:%u:", (unsigned) guest_uid, (unsigned) guest_uid);
        ht_expect(&r, 0, expected, NULL);
        ht_result_done(&r);

        ht_vmuser(&r, "detach", "stale", "vmtstale", NULL);
        ht_expect(&r, 0, "Detached 'vmtstale'", NULL);
        ht_result_done(&r);
        ht_run_guest(getent, &r);
        ht_expect(&r, 2, NULL, NULL);
        ht_result_done(&r);

        ht_stop(proxy);
        assert_int_equal(ht_stop(agent), 0);
}

static void test_usage(void **state) {
        static const char *const helps[] = { "attach", "detach", "list", "status" };
        struct ht_result r = {};

        ht_vmuser(&r, "--version", NULL);
        ht_expect(&r, 0, "vmuser 0.1", NULL);
        ht_result_done(&r);
        ht_vmuser(&r, "--help", NULL);
        ht_expect(&r, 0, "attach", NULL);
        ht_result_done(&r);
        for (size_t i = 0; i < ELEMENTSOF(helps); i++) {
                ht_vmuser(&r, helps[i], "--help", NULL);
                ht_expect(&r, 0, "Usage: vmuser", NULL);
                ht_result_done(&r);
        }

        char *bad[][6] = {
                { NULL },
                { (char *) "frobnicate", NULL },
                { (char *) "status", NULL },
                { (char *) "status", (char *) "a", (char *) "b", NULL },
                { (char *) "status", (char *) "--timeout", (char *) "0", (char *) "web01", NULL },
                { (char *) "status", (char *) "--timeout", (char *) "soon", (char *) "web01", NULL },
                { (char *) "status", (char *) "bad name", NULL },
                { (char *) "detach", (char *) "web01", (char *) "Not-Valid", NULL },
                { (char *) "attach", (char *) "--shell", (char *) "bash", (char *) "web01", (char *) "vmta", NULL },
                { (char *) "attach", (char *) "--home-dir", (char *) "/home/same", (char *) "web01", (char *) "vmta",
                  (char *) "vmtb" },
                { (char *) "attach", (char *) "--no-such-option", (char *) "web01", (char *) "vmta", NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *args[8] = {};
                memcpy(args, bad[i], sizeof(bad[i]));
                ht_vmuserv(&r, args);
                if (r.status != 2)
                        fail_msg("case %zu (%s %s): exit %d, wanted 2; stderr: %s", i, strempty(args[0]),
                                 strempty(args[1]), r.status, r.err);
                ht_result_done(&r);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_missing_socket),
                cmocka_unit_test(test_dead_socket),
                cmocka_unit_test(test_silent_agent),
                cmocka_unit_test(test_agent_goes_mute),
                cmocka_unit_test(test_sync_without_delimiter),
                cmocka_unit_test(test_garbage_reply),
                cmocka_unit_test(test_huge_reply),
                cmocka_unit_test(test_deep_reply),
                cmocka_unit_test(test_agent_closes),
                cmocka_unit_test(test_refusal_shown_verbatim),
                cmocka_unit_test(test_answer_for_someone_else),
                cmocka_unit_test(test_one_connection_per_batch),
                cmocka_unit_test(test_reply_ids_checked),
                cmocka_unit_test(test_late_reply_and_resync),
                cmocka_unit_test(test_stale_bytes_before_sync),
                cmocka_unit_test(test_usage),
        };
        return cmocka_run_group_tests(tests, group_setup, NULL);
}
