/* test-host-bulk.c: 1,000 users in one vmuser invocation, in and out again.
 *
 * Same two views as the other host tests (see host-test.h). The 1,000 host users are appended
 * straight to the host root's passwd/shadow/group copies (useradd would take longer than what
 * is measured), each with a private group and a sha512-crypt hash. The real agent runs with a
 * 2,000-ID range (its default range has 64). One `vmuser attach --json` pushes all of them over
 * one connection; the test checks every result line and that every user and group resolves in
 * the guest view with a distinct UID from the range, lists them, detaches them all in one
 * `vmuser detach`, and checks that none resolves any more. The rates are printed, not asserted. */
#include <grp.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "host-test.h"
#include "macro.h"
#include "test-util.h"

#define N_USERS 1000
#define UID_MIN 100000
#define UID_MAX 101999
#define HASH "$6$bulksalt$Xq4C4mN3mY2oK0vQk7dF2rZ9wT1bL8sP5eR6yU3iO0aS4dF7gH2jK9lZ1xC5vB8nM3qW6eR9tY2uI5oP8aS1d."

static char names[N_USERS][HT_NAME_SIZE];
static pid_t agent_pid;

static int group_setup(void **state) {
        ht_setup();
        ht_append_users(names, N_USERS, "vmtbulk", 4, 20000, HASH);

        char *range[] = { (char *) "--uid-min", (char *) "100000", (char *) "--uid-max", (char *) "101999", NULL };
        agent_pid = ht_agent_start("bulk", range);
        return 0;
}

static int group_teardown(void **state) {
        ht_stop(agent_pid);
        return 0;
}

static int run_batch(const char *verb, struct ht_result *r) {
        char *args[N_USERS + 8];
        size_t n = 0;

        args[n++] = (char *) verb;
        args[n++] = (char *) "--json";
        args[n++] = (char *) "--timeout";
        args[n++] = (char *) "30";
        if (strcmp(verb, "attach") == 0)
                args[n++] = (char *) "--no-home"; /* the records alone: no QEMU here */
        args[n++] = (char *) "bulk";
        for (size_t i = 0; i < N_USERS; i++)
                args[n++] = names[i];
        args[n] = NULL;
        return ht_vmuserv(r, args);
}

static void check_result_lines(const char *out) {
        const char *p = out;
        size_t i = 0;

        assert_int_equal(ht_count_lines(out), N_USERS);
        for (; i < N_USERS; i++) {
                const char *end = strchr(p, '\n');
                assert_non_null(end);
                _cleanup_free_ char *line = strndup(p, (size_t) (end - p));
                json_object *o = json_tokener_parse(line), *v;
                assert_non_null(o);
                assert_true(json_object_object_get_ex(o, "userName", &v));
                assert_string_equal(json_object_get_string(v), names[i]);
                assert_true(json_object_object_get_ex(o, "result", &v));
                if (strcmp(json_object_get_string(v), "ok") != 0)
                        fail_msg("%s", line);
                json_object_put(o);
                p = end + 1;
        }
}

/* One attach or detach of all the users: exit 0 and an "ok" line for each; returns the seconds. */
static double batch(const char *verb) {
        struct ht_result r = {};

        assert_int_equal(run_batch(verb, &r), 0);
        if (r.status != 0)
                fail_msg("%s exited %d\n%.2000s", verb, r.status, r.err);
        check_result_lines(r.out);
        double seconds = r.seconds;
        ht_result_done(&r);
        return seconds;
}

static void test_bulk(void **state) {
        static bool seen[UID_MAX - UID_MIN + 1];
        struct ht_result r = {};

        double attach_seconds = batch("attach");

        for (size_t i = 0; i < N_USERS; i++) {
                struct passwd *pw = getpwnam(names[i]);
                if (!pw)
                        fail_msg("%s does not resolve in the guest", names[i]);
                assert_in_range(pw->pw_uid, UID_MIN, UID_MAX);
                assert_false(seen[pw->pw_uid - UID_MIN]);
                seen[pw->pw_uid - UID_MIN] = true;
                assert_int_equal(pw->pw_gid, pw->pw_uid);
                struct group *gr = getgrgid(pw->pw_gid);
                assert_non_null(gr);
                assert_string_equal(gr->gr_name, names[i]);
        }

        assert_int_equal(ht_vmuser(&r, "list", "--json", "bulk", NULL), 0);
        assert_int_equal(r.status, 0);
        assert_int_equal(ht_count_lines(r.out), N_USERS);
        ht_result_done(&r);

        double detach_seconds = batch("detach");

        for (size_t i = 0; i < N_USERS; i++)
                if (getpwnam(names[i]))
                        fail_msg("%s still resolves after detach", names[i]);

        printf("bulk: attached %d users in %.2f s (%.0f users/s), detached them in %.2f s (%.0f users/s)\n", N_USERS,
               attach_seconds, N_USERS / attach_seconds, detach_seconds, N_USERS / detach_seconds);
        fflush(stdout);
}

/* Last: the agent's exit status (a memory checker's verdict under VMUSER_AGENT_WRAPPER); the
 * group teardown only stops what a failed run left behind. */
static void test_agent_exits_cleanly(void **state) {
        assert_int_equal(ht_stop(agent_pid), 0);
        agent_pid = 0;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_bulk),
                cmocka_unit_test(test_agent_exits_cleanly),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
