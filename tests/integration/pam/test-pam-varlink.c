/* test-pam-varlink.c: pam_vmuser against a running vmuser-agent with --userdb=varlink, where no
 * users/NAME.json exists and the module asks the agent (io.vmuser.GetAttachState) instead.
 *
 * The agent runs for the whole group on its default socket /run/systemd/userdb/io.vmuser (a
 * private /run: nss-systemd finds the users there too). Cases: a session mounts the home with no
 * state file; a user the agent does not know is ignored; a user being detached is refused; a
 * server that is not root is not believed; a server that answers nonsense fails the session,
 * naming the socket (but an account of /etc/passwd is never asked about); an agent killed
 * mid-session and started again serves the close. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <security/pam_appl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "attach-state-client.h"
#include "macro.h"
#include "pam-test.h"
#include "paths.h"
#include "session-track.h"
#include "test-util.h"

#define SERVICE "vmuser-test"

static struct test_agent agent;
static char *varlink_args[] = { (char *) "--userdb=varlink", NULL };

static char *agent_call(const char *request) {
        char *reply = NULL;
        assert_int_equal(test_agent_call(&agent, request, &reply), 0);
        if (!strstr(reply, "\"return\""))
                fail_msg("%s -> %s", request, reply);
        return reply;
}

static void attach(const char *name, unsigned uid) {
        char req[512];
        snprintf(req, sizeof(req),
                 "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"%s\",\"uid\":%u},"
                 "\"home\":{\"fstype\":\"tmpfs\",\"tag\":\"vmuser-%s\"}}}",
                 name, uid, name);
        free(agent_call(req));
}

static void detach(const char *name) {
        char req[256];
        snprintf(req, sizeof(req), "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"%s\"}}", name);
        free(agent_call(req));
}

static int query(const char *name, struct attach_state *ret) {
        struct verr e = {};
        return attach_state_query(VMUSER_VARLINK_SOCKET, name, 5000, ret, &e);
}

/* An attached user's session mounts its home, and its close unmounts it: no users/NAME.json. */
static void test_session_without_state_file(void **state) {
        struct pam_test_holder h;
        struct attach_state st;
        char msgs[1024] = "";
        (void) state;

        attach("vera", 60540);
        test_assert_absent("/run/vmuser/users/vera.json");
        assert_int_equal(query("vera", &st), 0);
        assert_int_equal(st.uid, 60540);
        assert_true(st.has_home);
        assert_string_equal(st.home.tag, "vmuser-vera");
        assert_false(st.detaching);
        assert_int_equal(pam_test_holder_open(&h, SERVICE, "vera", msgs, sizeof(msgs)), PAM_SUCCESS);
        pam_test_assert_home_mounted_once("/run/vmhost/home/vera");
        assert_int_equal(pam_test_session_entries("vera"), 1);
        assert_int_equal(pam_test_holder_close(&h), PAM_SUCCESS);
        assert_int_equal(pam_test_mount_count("/run/vmhost/home/vera", NULL, 0), 0);
        test_assert_absent("/run/vmuser/users/vera.json");
        detach("vera");
        assert_int_equal(query("vera", &st), -ENOENT);
}

/* A user the agent does not serve is none of ours: PAM_IGNORE, nothing logged at error level. */
static void test_unknown_user_ignored(void **state) {
        char msgs[256] = "";
        (void) state;
        assert_int_equal(pam_test_module_call("nobodyhere", true, "", msgs, sizeof(msgs)), PAM_IGNORE);
        assert_int_equal(pam_test_module_call("nobodyhere", false, "", msgs, sizeof(msgs)), PAM_IGNORE);
}

/* While a detach runs (here: held at the user's session lock), the agent says "detaching" and
 * sessions are refused; once it is done, the user is gone. */
static void test_detaching_refused(void **state) {
        struct session_lock *l = NULL;
        struct pam_test_holder h;
        struct attach_state st;
        char msgs[1024] = "";
        int state_fd;
        (void) state;

        attach("dora", 60541);
        state_fd = open("/run/vmuser", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(state_fd >= 0);
        assert_int_equal(session_lock_acquire(state_fd, "dora", true, &l), 0);
        const char *req = "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"dora\"}}\n";
        assert_int_equal(write(agent.in_fd, req, strlen(req)), (ssize_t) strlen(req));
        /* The mark is set before the agent waits for the session lock. */
        for (int i = 0; i < 500; i++) {
                assert_int_equal(query("dora", &st), 0);
                if (st.detaching)
                        break;
                usleep(10000);
        }
        assert_true(st.detaching);
        assert_int_equal(pam_test_holder_open(&h, SERVICE, "dora", msgs, sizeof(msgs)), PAM_SESSION_ERR);
        assert_non_null(strstr(msgs, "Your account is being removed from this machine"));
        assert_int_equal(pam_test_holder_open(&h, "vmuser-test-nofail", "dora", msgs, sizeof(msgs)), PAM_SESSION_ERR);
        assert_int_equal(pam_test_mount_count("/run/vmhost/home/dora", NULL, 0), 0);
        session_lock_release(l);
        _cleanup_free_ char *reply = test_read_until(agent.out_fd, "\"userName\":\"dora\"", 20000);
        if (!reply || !strstr(reply, "\"return\""))
                fail_msg("detach: %s", reply ? reply : "(no reply)");
        assert_int_equal(query("dora", &st), -ENOENT);
        close(state_fd);
}

/* A failed detach (a live session, no force) clears the mark: logins work again. */
static void test_failed_detach_clears_mark(void **state) {
        struct pam_test_holder h, h2;
        struct attach_state st;
        char msgs[1024] = "";
        _cleanup_free_ char *reply = NULL;
        (void) state;

        attach("fern", 60542);
        assert_int_equal(pam_test_holder_open(&h, SERVICE, "fern", msgs, sizeof(msgs)), PAM_SUCCESS);
        assert_int_equal(test_agent_call(&agent, "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"fern\"}}",
                                         &reply), 0);
        assert_non_null(strstr(reply, "session(s)"));
        assert_int_equal(query("fern", &st), 0);
        assert_false(st.detaching);
        assert_int_equal(pam_test_holder_open(&h2, SERVICE, "fern", msgs, sizeof(msgs)), PAM_SUCCESS);
        assert_int_equal(pam_test_holder_close(&h2), PAM_SUCCESS);
        assert_int_equal(pam_test_holder_close(&h), PAM_SUCCESS);
        assert_int_equal(pam_test_mount_count("/run/vmhost/home/fern", NULL, 0), 0);
        detach("fern");
}

/* The agent dies (SIGKILL) while a user has a session; started again, as systemd would, it
 * serves the state from the record store, and the close unmounts the home. */
static void test_agent_killed_mid_session(void **state) {
        struct pam_test_holder h;
        struct attach_state st;
        char msgs[1024] = "";
        int status;
        (void) state;

        attach("kurt", 60543);
        assert_int_equal(pam_test_holder_open(&h, SERVICE, "kurt", msgs, sizeof(msgs)), PAM_SUCCESS);
        pam_test_assert_home_mounted_once("/run/vmhost/home/kurt");
        assert_int_equal(kill(agent.pid, SIGKILL), 0);
        assert_int_equal(waitpid(agent.pid, &status, 0), agent.pid);
        close(agent.in_fd);
        close(agent.out_fd);
        /* Nobody listens: the user is not attached as far as anyone can tell (NSS neither). */
        assert_int_equal(query("kurt", &st), -ENOENT);
        assert_int_equal(test_agent_start(&agent, varlink_args), 0);
        free(agent_call("{\"execute\":\"guest-ping\"}"));
        assert_int_equal(query("kurt", &st), 0);
        assert_int_equal(st.uid, 60543);
        assert_int_equal(pam_test_holder_close(&h), PAM_SUCCESS);
        assert_int_equal(pam_test_mount_count("/run/vmhost/home/kurt", NULL, 0), 0);
        detach("kurt");
}

/* A fake server on path, run by uid (after dropping to it, before it listens), answering every
 * call with reply. Returns its pid; it serves until killed. */
static pid_t fake_server(const char *path, uid_t uid, const char *reply) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int ready[2];
        char c;

        assert_int_equal(pipe(ready), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                close(ready[0]);
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (uid != 0 && (setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0))
                        _exit(1);
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
                (void) unlink(path);
                if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || chmod(path, 0666) < 0 ||
                    listen(fd, 16) < 0)
                        _exit(2);
                (void) !write(ready[1], "r", 1);
                for (;;) {
                        char buf[4096];
                        int c_fd = accept(fd, NULL, NULL);
                        if (c_fd < 0)
                                continue;
                        ssize_t n = read(c_fd, buf, sizeof(buf));
                        if (n > 0)
                                (void) !write(c_fd, reply, strlen(reply) + 1);
                        close(c_fd);
                }
        }
        close(ready[1]);
        assert_int_equal(read(ready[0], &c, 1), 1);
        close(ready[0]);
        return pid;
}

static void stop_fake(pid_t pid) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
}

/* A socket whose listener is not root is not believed, however good its answer looks. */
static void test_non_root_server_not_believed(void **state) {
        const char *good = "{\"parameters\":{\"userName\":\"vera\",\"uid\":60540,\"gid\":60540,\"homeDirectory\":"
                           "\"/run/vmhost/home/vera\",\"home\":{\"fstype\":\"tmpfs\",\"tag\":\"vmuser-vera\"},"
                           "\"memberOf\":[],\"attachedAt\":1}}";
        struct attach_state st;
        struct verr e = {};
        (void) state;

        assert_int_equal(mkdir(PAM_TEST_DIR "/fake", 0777), 0);
        assert_int_equal(chmod(PAM_TEST_DIR "/fake", 0777), 0);
        pid_t pid = fake_server(PAM_TEST_DIR "/fake/io.vmuser", 65534, good);
        assert_int_equal(attach_state_query(PAM_TEST_DIR "/fake/io.vmuser", "vera", 5000, &st, &e), -EPERM);
        assert_non_null(strstr(e.text, "served by UID 65534, not root"));
        stop_fake(pid);
        /* The same answer from root is believed (the refusal above is about the UID alone). */
        pid = fake_server(PAM_TEST_DIR "/fake/io.vmuser", 0, good);
        assert_int_equal(attach_state_query(PAM_TEST_DIR "/fake/io.vmuser", "vera", 5000, &st, &e), 0);
        assert_int_equal(st.uid, 60540);
        stop_fake(pid);
        assert_int_equal(system("rm -rf " PAM_TEST_DIR "/fake"), 0);
}

/* An agent that answers something else than a state or NoSuchUser fails the session (nofail or
 * not: without the state nothing can be decided), and the message names the socket. */
static void test_bad_answer_fails_session(void **state) {
        char msgs[1024] = "";
        (void) state;

        assert_int_equal(test_agent_stop(&agent), 0);
        pid_t pid = fake_server(VMUSER_VARLINK_SOCKET, 0, "{\"error\":\"io.vmuser.Broken\"}");
        pam_test_log_mark();
        assert_int_equal(pam_test_module_call("ghost", true, "", msgs, sizeof(msgs)), PAM_SESSION_ERR);
        assert_logged("cannot ask vmuser-agent on '" VMUSER_VARLINK_SOCKET "' for the attach state: the agent "
                      "answered with the error io.vmuser.Broken");
        /* An account of /etc/passwd is never asked about: the same broken agent cannot fail
         * root's session. */
        assert_int_equal(pam_test_module_call("root", true, "", msgs, sizeof(msgs)), PAM_IGNORE);
        stop_fake(pid);
        pid = fake_server(VMUSER_VARLINK_SOCKET, 0, "{\"parameters\":{\"userName\":\"other\",\"uid\":1,\"gid\":1,"
                                                    "\"homeDirectory\":\"/home/other\"}}");
        pam_test_log_mark();
        assert_int_equal(pam_test_module_call("ghost", true, "", msgs, sizeof(msgs)), PAM_SESSION_ERR);
        assert_logged("the reply is about 'other', not 'ghost'");
        stop_fake(pid);
        assert_int_equal(unlink(VMUSER_VARLINK_SOCKET), 0);
        assert_int_equal(test_agent_start(&agent, varlink_args), 0);
        free(agent_call("{\"execute\":\"guest-ping\"}"));
}

static void test_exits_cleanly(void **state) {
        (void) state;
        assert_int_equal(test_agent_stop(&agent), 0);
}

static int group_setup(void **state) {
        pam_test_setup();
        if (test_agent_start(&agent, varlink_args) < 0)
                return -1;
        char *reply = NULL;
        if (test_agent_call(&agent, "{\"execute\":\"guest-ping\"}", &reply) < 0)
                return -1;
        free(reply);
        return 0;
}

static int group_teardown(void **state) {
        (void) test_agent_stop(&agent);
        pam_test_teardown();
        return 0;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_session_without_state_file),
                cmocka_unit_test(test_unknown_user_ignored),
                cmocka_unit_test(test_detaching_refused),
                cmocka_unit_test(test_failed_detach_clears_mark),
                cmocka_unit_test(test_agent_killed_mid_session),
                cmocka_unit_test(test_non_root_server_not_believed),
                cmocka_unit_test(test_bad_answer_fails_session),
                cmocka_unit_test(test_exits_cleanly),
        };
        test_enter_private_run();
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
