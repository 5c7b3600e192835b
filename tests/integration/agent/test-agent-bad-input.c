/* test-agent-bad-input.c: every bad request gets an error reply naming the problem, the agent
 * keeps serving, and nothing under /run/userdb or /run/vmuser changes, byte for byte.
 *
 * One agent serves the whole table. Before the table, two users are attached so that "nothing
 * changed" covers existing records too (no shadowing, no partial replace). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "macro.h"
#include "test-util.h"

struct bad_case {
        const char *request; /* NULL: built by the test (oversized, deep) */
        const char *error;   /* substring the error reply must contain */
};

#define ATTACH(u) "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":" u "}}"
#define ATTACH_ARGS(a) "{\"execute\":\"vmuser-attach\",\"arguments\":" a "}"

static const struct bad_case cases[] = {
        { "{\"execute\":}", "not valid JSON" },
        { "not json at all", "not valid JSON" },
        { "{\"execute\":\"guest-ping\",}", "not valid JSON" },
        { "{'execute':'guest-ping'}", "not valid JSON" },
        { "{\"execute\":\"guest-ping\" /* c */}", "not valid JSON" },
        { "[1,2,3]", "request is not a JSON object" },
        { "{\"execute\":42}", "'execute' is not a string" },
        { "{\"arguments\":{}}", "'execute' is missing" },
        { "{\"execute\":\"guest-ping\",\"bogus\":1}", "unknown request member 'bogus'" },
        { "{\"execute\":\"no-such-command\"}", "CommandNotFound" },
        { "{\"execute\":\"vmuser-attach\",\"arguments\":[]}", "'arguments' of 'vmuser-attach' must be an object" },
        { "{\"execute\":\"vmuser-attach\",\"arguments\":\"x\"}", "must be an object" },
        { "{\"execute\":\"vmuser-attach\"}", "vmuser-attach needs 'arguments'" },
        { "{\"execute\":\"guest-ping\",\"arguments\":{\"x\":1}}", "'guest-ping' takes no arguments" },
        { "{\"execute\":\"guest-sync\",\"arguments\":{}}", "guest-sync needs an integer argument 'id'" },
        { ATTACH("{\"userName\":\"Alice\"}"), "user name 'Alice' is not valid" },
        { ATTACH("{\"userName\":\"../etc\"}"), "user name '../etc' is not valid" },
        { ATTACH("{\"userName\":\"a/b\"}"), "user name 'a/b' is not valid" },
        { ATTACH("{\"userName\":\"a:b\"}"), "user name 'a:b' is not valid" },
        { ATTACH("{\"userName\":\"-bob\"}"), "user name '-bob' is not valid" },
        { ATTACH("{\"userName\":\"abcdefghijklmnopqrstuvwxyz0123456\"}"), "is not valid" },
        { ATTACH("{\"userName\":\"\"}"), "user name '' is not valid" },
        { ATTACH("{\"userName\":\"root\"}"), "user name 'root' is reserved" },
        { ATTACH("{\"userName\":\"nobody\"}"), "user name 'nobody' is reserved" },
        { ATTACH("{\"userName\":\"eve\",\"uid\":0}"), "user uid 0 is reserved" },
        { ATTACH("{\"userName\":\"eve\",\"uid\":65534}"), "user uid 65534 is reserved" },
        { ATTACH("{\"userName\":\"eve\",\"uid\":1000}"), "user uid 1000 is outside the agent's range 60514-60577" },
        { ATTACH("{\"userName\":\"eve\",\"uid\":4294967296}"), "must be an integer" },
        { ATTACH("{\"userName\":\"eve\",\"uid\":\"60520\"}"), "must be an integer" },
        { ATTACH("{\"userName\":\"eve\",\"uid\":60520,\"gid\":60521}"), "user gid 60521 differs from uid 60520" },
        { ATTACH_ARGS("{\"user\":{\"userName\":\"eve\",\"uid\":60520},\"group\":{\"gid\":60521}}"),
          "group gid 60521 differs from the user's gid 60520" },
        { ATTACH("{\"userName\":\"lp\"}"), "user 'lp' already exists in the guest (uid 7)" },
        { ATTACH("{\"userName\":\"news\",\"uid\":60520}"), "user 'news' already exists in the guest" },
        { ATTACH("{\"userName\":\"mallory\",\"uid\":60514}"), "uid 60514 already belongs to user 'alice'" },
        { ATTACH("{\"userName\":\"alice\",\"realName\":\"Impostor\"}"), "already attached with a different record" },
        { ATTACH_ARGS("{\"user\":{\"userName\":\"eve\"},\"privileged\":{}}"), "belongs inside the user record" },
        { ATTACH_ARGS("{\"user\":{\"userName\":\"eve\"},\"group\":{\"privileged\":{}}}"),
          "not accepted in a group record" },
        { ATTACH("{\"userName\":\"eve\",\"secret\":{}}"), "user record section 'secret' is not accepted" },
        { ATTACH("{\"userName\":\"eve\",\"signature\":[]}"), "section 'signature' is not accepted" },
        { ATTACH("{\"userName\":\"eve\",\"color\":\"red\"}"), "unknown field 'color' in user record" },
        { ATTACH("{\"userName\":\"eve\",\"homeDirectory\":\"/etc/eve\"}"), "home directory '/etc/eve'" },
        { ATTACH("{\"userName\":\"eve\",\"homeDirectory\":\"/home/../etc\"}"), "home directory '/home/../etc'" },
        { ATTACH("{\"userName\":\"eve\",\"homeDirectory\":\"/\"}"), "home directory '/'" },
        { ATTACH("{\"userName\":\"eve\",\"shell\":\"sh\"}"), "shell 'sh' is not a normalized absolute path" },
        { ATTACH("{\"userName\":\"eve\",\"realName\":\"E:ve\"}"), "field 'realName' contains a control character or ':'" },
        { ATTACH("{\"userName\":\"eve\",\"privileged\":{\"hashedPassword\":[\"a\\nb\"]}}"), "privileged.hashedPassword" },
        { ATTACH("{\"userName\":\"eve\",\"privileged\":{\"sshAuthorizedKeys\":[\"k\\nk\"]}}"),
          "privileged.sshAuthorizedKeys" },
        { ATTACH("{\"userName\":\"eve\",\"privileged\":{\"password\":[\"x\"]}}"), "unknown field 'password' in section 'privileged'" },
        { ATTACH_ARGS("{\"user\":{\"userName\":\"eve\"},\"home\":{\"tag\":\"t\",\"fstype\":\"nfs\"}}"),
          "home fstype 'nfs' is not one of virtiofs, tmpfs, bind" },
        { ATTACH_ARGS("{\"user\":{\"userName\":\"eve\"},\"home\":{\"tag\":\"t\",\"options\":\"suid\"}}"),
          "home option 'suid' is not accepted" },
        { ATTACH_ARGS("{\"user\":{\"userName\":\"eve\"},\"home\":{\"tag\":\"a/b\"}}"), "home tag 'a/b' is not valid" },
        { ATTACH_ARGS("{\"user\":{\"userName\":\"eve\"},\"home\":{\"tag\":\"rel\",\"fstype\":\"bind\"}}"),
          "home tag 'rel' is not valid for bind" },
        { ATTACH_ARGS("{\"user\":{\"userName\":\"eve\"},\"memberOf\":[\"nosuchgroup\"]}"),
          "group 'nosuchgroup' (memberOf) does not exist" },
        { ATTACH_ARGS("{\"user\":{\"userName\":\"eve\"},\"memberOf\":\"users\"}"), "must be an array" },
        { ATTACH_ARGS("{\"user\":{\"userName\":\"eve\"},\"replace\":1}"), "'replace' must be a boolean" },
        { "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"../alice\"}}", "user name '../alice' is not valid" },
        { "{\"execute\":\"vmuser-detach\",\"arguments\":{}}", "argument 'userName' is missing" },
        { "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"alice\",\"now\":true}}", "unknown argument 'now'" },
        { "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"lp\"}}", "user 'lp' is not attached" },
        { "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"alice\",\"force\":\"yes\"}}", "'force' must be a boolean" },
        { NULL, "request exceeds the limit of 65536 bytes" },
        { NULL, "request nests deeper than 16 levels" },
        { "{\"execute\":\"guest-ping\",\"id\":\"\xc3\x28\"}", "not valid JSON" },
};

static struct test_agent agent;

static int setup(void **state) {
        _cleanup_free_ char *r1 = NULL, *r2 = NULL;
        *state = &agent;
        if (test_agent_start(&agent, NULL) < 0)
                return -1;
        if (test_agent_call(&agent,
                            ATTACH("{\"userName\":\"alice\",\"privileged\":{\"hashedPassword\":[\"$y$j9T$s$h\"]}}"),
                            &r1) < 0 ||
            !strstr(r1, "\"uid\":60514"))
                return -1;
        if (test_agent_call(&agent, ATTACH_ARGS("{\"user\":{\"userName\":\"bob\"},\"memberOf\":[\"users\"]}"), &r2) < 0 ||
            !strstr(r2, "\"uid\":60515"))
                return -1;
        return 0;
}


static char *build_oversized(void) {
        size_t n = 70000;
        char *s = malloc(n + 64);
        strcpy(s, "{\"execute\":\"guest-ping\",\"id\":\"");
        size_t off = strlen(s);
        memset(s + off, 'x', n);
        strcpy(s + off + n, "\"}");
        return s;
}

static char *build_deep(void) {
        char *s = malloc(256);
        strcpy(s, "{\"execute\":\"guest-ping\",\"id\":");
        for (int i = 0; i < 20; i++)
                strcat(s, "[");
        for (int i = 0; i < 20; i++)
                strcat(s, "]");
        strcat(s, "}");
        return s;
}

static void test_bad_input_table(void **state) {
        _cleanup_free_ char *userdb_before = test_snapshot_dir("/run/userdb");
        _cleanup_free_ char *vmuser_before = test_snapshot_dir("/run/vmuser");
        size_t n = sizeof(cases) / sizeof(cases[0]);

        assert_true(n >= 40);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *built = NULL, *reply = NULL, *ping = NULL;
                const char *request = cases[i].request;

                if (!request)
                        request = built = strstr(cases[i].error, "exceeds") ? build_oversized() : build_deep();

                assert_int_equal(test_agent_call(&agent, request, &reply), 0);
                if (strncmp(reply, "{\"error\":{\"class\":", 18) != 0 || !strstr(reply, cases[i].error))
                        fail_msg("case %zu: %.200s\n  reply: %s\n  wanted an error containing: %s", i, request, reply,
                                 cases[i].error);

                assert_int_equal(test_agent_call(&agent, "{\"execute\":\"guest-ping\",\"id\":1}", &ping), 0);
                if (!streq(ping, "{\"return\":{},\"id\":1}"))
                        fail_msg("case %zu: agent stopped answering, got %s", i, ping);

                _cleanup_free_ char *userdb_after = test_snapshot_dir("/run/userdb");
                _cleanup_free_ char *vmuser_after = test_snapshot_dir("/run/vmuser");
                if (!streq(userdb_before, userdb_after) || !streq(vmuser_before, vmuser_after))
                        fail_msg("case %zu changed the state: %.200s", i, request);
        }
        printf("%zu bad requests refused, state unchanged after each\n", n);
}

int main(void) {
        test_enter_private_run();
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_bad_input_table),
                cmocka_unit_test(test_agent_case_exits_cleanly), /* last: the agent's exit status */
        };
        return cmocka_run_group_tests(tests, setup, test_agent_group_teardown);
}
