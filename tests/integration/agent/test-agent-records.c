/* test-agent-records.c: the built vmuser-agent, driven over --stdio in a private mount
 * namespace with its own /run, checked through real NSS (nss-systemd) and the files it leaves.
 *
 * Flow per test: start an agent (fresh /run/userdb from the previous test is cleaned by
 * detaching), send requests, then look at getpwnam()/getspnam()/getgrouplist() and at modes,
 * owners and symlink targets under /run/userdb and /run/vmuser. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <setjmp.h>
#include <shadow.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "macro.h"
#include "session-track.h"
#include "test-util.h"

/* The drop-in path (--userdb=dropin): this file checks its files in /run/userdb. */
static char *dropin[] = { (char *) "--userdb=dropin", NULL };

static struct test_agent agent;

static void call_expect(const char *request, const char *needle) {
        _cleanup_free_ char *reply = NULL;
        assert_int_equal(test_agent_call(&agent, request, &reply), 0);
        if (!strstr(reply, needle))
                fail_msg("request %s\nreply   %s\nwanted  %s", request, reply, needle);
}

static void assert_mode(const char *path, mode_t type, mode_t mode) {
        struct stat st;
        if (lstat(path, &st) < 0)
                fail_msg("%s: %s", path, strerror(errno));
        assert_int_equal(st.st_mode & S_IFMT, type);
        if (type != S_IFLNK)
                assert_int_equal(st.st_mode & 07777, mode);
        assert_int_equal(st.st_uid, 0);
}

static void assert_link(const char *path, const char *target) {
        char buf[256];
        ssize_t n = readlink(path, buf, sizeof(buf) - 1);
        assert_true(n > 0);
        buf[n] = '\0';
        assert_string_equal(buf, target);
}

static int setup(void **state) {
        *state = &agent;
        return test_agent_start(&agent, dropin);
}


static void test_attach_resolves(void **state) {
        call_expect("{\"execute\":\"vmuser-attach\",\"id\":\"a1\",\"arguments\":{\"user\":{\"userName\":\"alice\","
                    "\"realName\":\"Alice Liddell\",\"privileged\":{\"hashedPassword\":[\"$y$j9T$salt$hash\"],"
                    "\"sshAuthorizedKeys\":[\"ssh-ed25519 AAAAC3 alice@host\"]}},\"memberOf\":[\"users\"]}}",
                    "{\"return\":{\"userName\":\"alice\",\"uid\":60514,\"gid\":60514,"
                    "\"homeDirectory\":\"/run/vmhost/home/alice\",\"changed\":true},\"id\":\"a1\"}");

        struct passwd *pw = getpwnam("alice");
        assert_non_null(pw);
        assert_int_equal(pw->pw_uid, 60514);
        assert_int_equal(pw->pw_gid, 60514);
        assert_string_equal(pw->pw_gecos, "Alice Liddell");
        assert_string_equal(pw->pw_dir, "/run/vmhost/home/alice");
        pw = getpwuid(60514);
        assert_non_null(pw);
        assert_string_equal(pw->pw_name, "alice");

        struct spwd *sp = getspnam("alice");
        assert_non_null(sp);
        assert_string_equal(sp->sp_pwdp, "$y$j9T$salt$hash");

        struct group *gr = getgrgid(60514);
        assert_non_null(gr);
        assert_string_equal(gr->gr_name, "alice");

        gid_t groups[16];
        int n = 16;
        assert_true(getgrouplist("alice", 60514, groups, &n) >= 0);
        bool in_users = false;
        for (int i = 0; i < n; i++)
                in_users = in_users || groups[i] == 100;
        assert_true(in_users);

        assert_mode("/run/userdb/alice.user", S_IFREG, 0644);
        assert_mode("/run/userdb/alice.user-privileged", S_IFREG, 0600);
        assert_mode("/run/userdb/alice.group", S_IFREG, 0644);
        assert_mode("/run/userdb/alice:users.membership", S_IFREG, 0644);
        assert_mode("/run/vmuser/users/alice.json", S_IFREG, 0644);
        assert_link("/run/userdb/60514.user", "alice.user");
        assert_link("/run/userdb/60514.user-privileged", "alice.user-privileged");
        assert_link("/run/userdb/60514.group", "alice.group");

        /* The public record must not carry the secret. */
        _cleanup_free_ char *snap = test_snapshot_dir("/run/userdb");
        char *pub = strstr(snap, "/run/userdb/alice.user mode");
        assert_non_null(pub);
        char *end = strchr(pub, '\n');
        assert_non_null(end);
        assert_null(memmem(pub, (size_t) (end - pub), "$y$", 3));
}

static void test_reattach_is_idempotent(void **state) {
        _cleanup_free_ char *before = test_snapshot_dir("/run");
        call_expect("{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"alice\","
                    "\"realName\":\"Alice Liddell\",\"privileged\":{\"hashedPassword\":[\"$y$j9T$salt$hash\"],"
                    "\"sshAuthorizedKeys\":[\"ssh-ed25519 AAAAC3 alice@host\"]}},\"memberOf\":[\"users\"]}}",
                    "\"changed\":false");
        _cleanup_free_ char *after = test_snapshot_dir("/run");
        assert_string_equal(before, after);
}

static void test_different_record_needs_replace(void **state) {
        call_expect("{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"alice\",\"realName\":\"Other\"}}}",
                    "already attached with a different record");
        call_expect("{\"execute\":\"vmuser-attach\",\"arguments\":{\"replace\":true,\"user\":{\"userName\":\"alice\","
                    "\"uid\":60530,\"realName\":\"Alice Two\"}}}",
                    "\"uid\":60530");
        struct passwd *pw = getpwnam("alice");
        assert_non_null(pw);
        assert_int_equal(pw->pw_uid, 60530);
        assert_string_equal(pw->pw_gecos, "Alice Two");
        /* Everything the old record had and the new one has not is gone. */
        test_assert_absent("/run/userdb/60514.user");
        test_assert_absent("/run/userdb/60514.group");
        test_assert_absent("/run/userdb/60514.user-privileged");
        test_assert_absent("/run/userdb/alice.user-privileged");
        test_assert_absent("/run/userdb/alice:users.membership");
        assert_null(getpwuid(60514));
}

static void test_allocation_and_conflicts(void **state) {
        /* 60514 is free again, but within a boot never-used IDs come first: above the highest
         * one handed out (60530, by the replace). */
        call_expect("{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"bob\"}}}", "\"uid\":60531");
        call_expect("{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"carol\"}}}", "\"uid\":60532");
        call_expect("{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"dave\",\"uid\":60532}}}",
                    "uid 60532 already belongs to user 'carol'");
        call_expect("{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"lp\"}}}",
                    "user 'lp' already exists in the guest (uid 7) and was not attached by vmuser");
        call_expect("{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"erin\"},\"memberOf\":[\"nosuchgroup\"]}}",
                    "group 'nosuchgroup' (memberOf) does not exist in the guest");
        assert_null(getpwnam("erin"));
}

static void test_list(void **state) {
        call_expect("{\"execute\":\"vmuser-list\"}",
                    "{\"return\":[{\"userName\":\"alice\",\"uid\":60530,\"gid\":60530,\"homeDirectory\":\"/run/vmhost/home/alice\","
                    "\"home\":null,\"homeMounted\":false,\"sessions\":0,");
        call_expect("{\"execute\":\"vmuser-list\"}", "{\"userName\":\"carol\",\"uid\":60532");
}

/* A user with a live session is not detached without force: UserBusy, and the user stays. The
 * session is this test process's, recorded as pam_vmuser records one. */
static void test_detach_refused_with_a_session(void **state) {
        struct session_lock *lock = NULL;
        _cleanup_close_ int state_fd = open("/run/vmuser", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        assert_true(state_fd >= 0);
        assert_int_equal(session_lock_acquire(state_fd, "alice", true, &lock), 0);
        assert_int_equal(session_add(lock, getpid()), 1);
        lock = session_lock_release(lock);

        call_expect("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"alice\"}}",
                    "\"class\":\"UserBusy\"");
        assert_non_null(getpwnam("alice"));

        assert_int_equal(session_lock_acquire(state_fd, "alice", false, &lock), 0);
        assert_int_equal(session_remove(lock, getpid()), 1);
        lock = session_lock_release(lock);
}

static void test_detach_removes_everything(void **state) {
        call_expect("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"alice\"}}",
                    "{\"return\":{\"userName\":\"alice\",\"uid\":60530,\"cleanup\":{\"processesEnded\":0,");
        call_expect("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"bob\"}}", "\"uid\":60531");
        call_expect("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"carol\"}}", "\"uid\":60532");
        call_expect("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"carol\"}}", "user 'carol' is not attached");
        call_expect("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"lp\"}}", "user 'lp' is not attached");
        assert_null(getpwnam("alice"));
        assert_null(getpwnam("bob"));
        assert_non_null(getpwnam("lp"));
        _cleanup_free_ char *userdb = test_snapshot_dir("/run/userdb");
        _cleanup_free_ char *users = test_snapshot_dir("/run/vmuser/users");
        _cleanup_free_ char *pending = test_snapshot_dir("/run/vmuser/pending");
        assert_string_equal(userdb, "");
        assert_string_equal(users, "");
        assert_string_equal(pending, "");
}

static void test_sync_and_info(void **state) {
        call_expect("{\"execute\":\"guest-sync\",\"arguments\":{\"id\":12345}}", "{\"return\":12345}");
        call_expect("{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":99}}", "{\"return\":99}");
        call_expect("{\"execute\":\"guest-info\"}", "{\"enabled\":true,\"name\":\"vmuser-attach\",\"success-response\":true}");
        call_expect("{\"execute\":\"guest-ping\",\"id\":[1,2]}", "{\"return\":{},\"id\":[1,2]}");
}

/* A journal left by a crash is finished at start-up, before the first request. */
static void test_journal_replay(void **state) {
        int fd = open("/run/vmuser/pending/zed.json", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        const char *journal =
                "{\"userName\":\"zed\",\"steps\":["
                "{\"op\":\"write\",\"dir\":\"userdb\",\"name\":\"zed.group\",\"content\":\"{\\\"groupName\\\":\\\"zed\\\",\\\"gid\\\":60540}\\n\",\"mode\":420},"
                "{\"op\":\"symlink\",\"dir\":\"userdb\",\"name\":\"60540.group\",\"content\":\"zed.group\",\"mode\":0},"
                "{\"op\":\"write\",\"dir\":\"users\",\"name\":\"zed.json\",\"content\":\"{\\\"userName\\\":\\\"zed\\\",\\\"uid\\\":60540,\\\"gid\\\":60540,\\\"homeDirectory\\\":\\\"/run/vmhost/home/zed\\\",\\\"home\\\":null,\\\"memberOf\\\":[],\\\"attachedAt\\\":1}\\n\",\"mode\":420},"
                "{\"op\":\"symlink\",\"dir\":\"userdb\",\"name\":\"60540.user\",\"content\":\"zed.user\",\"mode\":0},"
                "{\"op\":\"write\",\"dir\":\"userdb\",\"name\":\"zed.user\",\"content\":\"{\\\"userName\\\":\\\"zed\\\",\\\"uid\\\":60540,\\\"gid\\\":60540,\\\"homeDirectory\\\":\\\"/run/vmhost/home/zed\\\",\\\"disposition\\\":\\\"regular\\\"}\\n\",\"mode\":420}]}";
        assert_int_equal(write(fd, journal, strlen(journal)), (ssize_t) strlen(journal));
        close(fd);
        /* And a temporary file from a write that never got renamed. */
        fd = open("/run/userdb/.#vmuser-0123456789abcdef", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);

        struct test_agent second;
        assert_int_equal(test_agent_start(&second, dropin), 0);
        _cleanup_free_ char *reply = NULL;
        assert_int_equal(test_agent_call(&second, "{\"execute\":\"guest-ping\"}", &reply), 0);
        assert_int_equal(test_agent_stop(&second), 0);

        test_assert_absent("/run/vmuser/pending/zed.json");
        test_assert_absent("/run/userdb/.#vmuser-0123456789abcdef");
        struct passwd *pw = getpwnam("zed");
        assert_non_null(pw);
        assert_int_equal(pw->pw_uid, 60540);
        call_expect("{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"zed\"}}", "\"uid\":60540");
        assert_null(getpwnam("zed"));
}

static void test_allow_and_block_rpcs(void **state) {
        struct test_agent limited;
        char *args[] = { (char *) "--userdb=dropin", (char *) "--block-rpcs", (char *) "vmuser-detach,vmuser-list", NULL };
        _cleanup_free_ char *r1 = NULL, *r2 = NULL, *r3 = NULL, *r4 = NULL;

        assert_int_equal(test_agent_start(&limited, args), 0);
        assert_int_equal(test_agent_call(&limited, "{\"execute\":\"vmuser-list\"}", &r1), 0);
        assert_non_null(strstr(r1, "{\"error\":{\"class\":\"CommandDisabled\",\"desc\":\"the command 'vmuser-list' has been disabled"));
        assert_int_equal(test_agent_call(&limited, "{\"execute\":\"guest-info\"}", &r2), 0);
        assert_non_null(strstr(r2, "{\"enabled\":false,\"name\":\"vmuser-detach\""));
        assert_non_null(strstr(r2, "{\"enabled\":true,\"name\":\"vmuser-attach\""));
        assert_int_equal(test_agent_stop(&limited), 0);

        char *allow[] = { (char *) "--userdb=dropin", (char *) "--allow-rpcs", (char *) "guest-ping", NULL };
        assert_int_equal(test_agent_start(&limited, allow), 0);
        assert_int_equal(test_agent_call(&limited, "{\"execute\":\"vmuser-attach\",\"arguments\":{}}", &r3), 0);
        assert_non_null(strstr(r3, "CommandDisabled"));
        /* The sync verbs stay on, or no client could ever talk to this agent. */
        assert_int_equal(test_agent_call(&limited, "{\"execute\":\"guest-sync\",\"arguments\":{\"id\":5}}", &r4), 0);
        assert_string_equal(r4, "{\"return\":5}");
        assert_int_equal(test_agent_stop(&limited), 0);

        char *bad[] = { (char *) "--stdio", (char *) "--block-rpcs", (char *) "no-such-verb", NULL };
        int status;
        pid_t pid = test_agent_spawn(bad, -1, -1);
        assert_true(pid > 0);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 2);
}

int main(void) {
        test_enter_private_run();
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sync_and_info),
                cmocka_unit_test(test_attach_resolves),
                cmocka_unit_test(test_reattach_is_idempotent),
                cmocka_unit_test(test_different_record_needs_replace),
                cmocka_unit_test(test_allocation_and_conflicts),
                cmocka_unit_test(test_list),
                cmocka_unit_test(test_detach_refused_with_a_session),
                cmocka_unit_test(test_detach_removes_everything),
                cmocka_unit_test(test_journal_replay),
                cmocka_unit_test(test_allow_and_block_rpcs),
                cmocka_unit_test(test_agent_case_exits_cleanly), /* last: the agent's exit status */
        };
        return cmocka_run_group_tests(tests, setup, test_agent_group_teardown);
}
