/* test-agent-varlink.c: the agent with --userdb=varlink, looked up through real NSS.
 *
 * One agent in a private mount namespace (fresh /run, nsswitch.conf "files systemd") serves its
 * users only over /run/systemd/userdb/io.vmuser: nothing is written to /run/userdb, so every
 * lookup that succeeds went through nss-systemd -> varlink -> the agent's index. Then hostile
 * clients (no NUL, oversized, too deep, bad envelope, a flood of connections from one UID, a
 * trickle) each must leave the agent serving everyone else. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "macro.h"
#include "test-util.h"

#define SOCKET_PATH "/run/systemd/userdb/io.vmuser"
#define ALT_SOCKET_PATH "/run/systemd/userdb/org.example.vmuser"
#define HASH "$y$j9T$saltsalt$hashhashhash"

static struct test_agent agent;

static int vl_connect(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = SOCKET_PATH };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

/* Reads one NUL-terminated message (5 s). -EPIPE: the agent closed the connection. */
static int vl_read(int fd, char **ret) {
        size_t size = 0, cap = 1u << 16;
        _cleanup_free_ char *buf = malloc(cap);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                int k = poll(&p, 1, 5000);
                if (k <= 0)
                        return k == 0 ? -ETIMEDOUT : -errno;
                ssize_t n = read(fd, buf + size, 1);
                if (n < 0)
                        return errno == ECONNRESET ? -EPIPE : -errno;
                if (n == 0)
                        return -EPIPE;
                if (buf[size] == '\0') {
                        *ret = strdup(buf);
                        return 0;
                }
                if (++size == cap)
                        return -EMSGSIZE;
        }
}

static int vl_call(int fd, const char *msg, char **ret) {
        size_t len = strlen(msg) + 1;
        if (send(fd, msg, len, MSG_NOSIGNAL) != (ssize_t) len)
                return -errno;
        return vl_read(fd, ret);
}

/* The agent closes a connection that broke the protocol: reading gives EOF, not a reply. */
static void assert_closed_after(const void *data, size_t len) {
        _cleanup_close_ int fd = vl_connect();
        _cleanup_free_ char *reply = NULL;
        assert_true(fd >= 0);
        /* The agent may close while we still send (EPIPE/ECONNRESET): that is fine too. */
        size_t off = 0;
        while (off < len) {
                ssize_t n = send(fd, (const char *) data + off, len - off, MSG_NOSIGNAL);
                if (n < 0)
                        break;
                off += (size_t) n;
        }
        assert_int_equal(vl_read(fd, &reply), -EPIPE);
}

static void assert_alice_resolves(void) {
        _cleanup_free_ char *out = NULL;
        assert_int_equal(test_run_capture(&out, "getent", "passwd", "alice", NULL), 0);
        assert_non_null(strstr(out, "alice:x:60514:60514:"));
}

static int agent_fd_count(void) {
        char path[64];
        int n = 0;
        snprintf(path, sizeof(path), "/proc/%d/fd", (int) agent.pid);
        DIR *d = opendir(path);
        if (!d)
                return -1;
        while (readdir(d))
                n++;
        closedir(d);
        return n - 2;
}

static int setup(void **state) {
        _cleanup_free_ char *r1 = NULL, *r2 = NULL;
        char *args[] = { (char *) "--userdb=varlink", (char *) "--uid-max", (char *) "61000", NULL };
        (void) state;
        if (test_agent_start(&agent, args) < 0)
                return -1;
        if (test_agent_call(&agent,
                            "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"alice\","
                            "\"privileged\":{\"hashedPassword\":[\"" HASH "\"]}},\"memberOf\":[\"users\"]}}",
                            &r1) < 0 ||
            !strstr(r1, "\"uid\":60514"))
                return -1;
        if (test_agent_call(&agent, "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"bob\"}}}",
                            &r2) < 0 ||
            !strstr(r2, "\"uid\":60515"))
                return -1;
        return 0;
}

/* cmocka 1.1.5 exits 0 when a group teardown fails: the agent's exit status (a memory
 * checker's verdict under VMUSER_AGENT_WRAPPER) is asserted in test_agent_exits_cleanly; this
 * only stops an agent a failed run left behind. */
static int teardown(void **state) {
        (void) state;
        if (agent.pid > 0)
                (void) test_agent_stop(&agent);
        return 0;
}

static void test_agent_exits_cleanly(void **state) {
        (void) state;
        assert_int_equal(test_agent_stop(&agent), 0);
}

static void test_no_dropins(void **state) {
        (void) state;
        /* Whatever resolves below came over varlink. */
        _cleanup_free_ char *snap = test_snapshot_dir("/run/userdb");
        assert_string_equal(snap, "");
        assert_int_equal(access(SOCKET_PATH, F_OK), 0);
}

static void test_getent_and_id(void **state) {
        _cleanup_free_ char *pw = NULL, *pwid = NULL, *gr = NULL, *grid = NULL, *id = NULL, *none = NULL;
        (void) state;
        assert_alice_resolves();
        assert_int_equal(test_run_capture(&pw, "getent", "passwd", "bob", NULL), 0);
        assert_non_null(strstr(pw, "bob:x:60515:60515:"));
        assert_int_equal(test_run_capture(&pwid, "getent", "passwd", "60514", NULL), 0);
        assert_non_null(strstr(pwid, "alice:x:60514:"));
        assert_int_equal(test_run_capture(&gr, "getent", "group", "alice", NULL), 0);
        assert_non_null(strstr(gr, "alice:x:60514:"));
        assert_int_equal(test_run_capture(&grid, "getent", "group", "60515", NULL), 0);
        assert_non_null(strstr(grid, "bob:x:60515:"));
        assert_int_equal(test_run_capture(&id, "id", "alice", NULL), 0);
        assert_non_null(strstr(id, "uid=60514(alice) gid=60514(alice) groups=60514(alice),100(users)"));
        assert_int_equal(test_run_capture(&none, "getent", "passwd", "nosuchuser", NULL), 2);
        free(none);
        none = NULL;
        assert_int_equal(test_run_capture(&none, "getent", "group", "nosuchgroup", NULL), 2);
}

static void test_userdbctl(void **state) {
        _cleanup_free_ char *out = NULL;
        (void) state;
        assert_int_equal(test_run_capture(&out, "userdbctl", "user", "alice", NULL), 0);
        assert_non_null(strstr(out, "Service: io.vmuser"));
        assert_non_null(strstr(out, "Aux. Groups: users"));
}

/* The hash reaches root (getent shadow, a root varlink peer) and nobody else. */
static void test_privileged_root_only(void **state) {
        _cleanup_free_ char *shadow = NULL, *reply = NULL;
        _cleanup_close_ int fd = -1;
        int pipefd[2], status;
        const char *q = "{\"method\":\"io.systemd.UserDatabase.GetUserRecord\",\"parameters\":{\"userName\":\"alice\","
                        "\"service\":\"io.vmuser\"}}";
        (void) state;

        assert_int_equal(test_run_capture(&shadow, "getent", "shadow", "alice", NULL), 0);
        assert_non_null(strstr(shadow, "alice:" HASH ":"));

        fd = vl_connect();
        assert_true(fd >= 0);
        assert_int_equal(vl_call(fd, q, &reply), 0);
        assert_non_null(strstr(reply, HASH));
        assert_non_null(strstr(reply, "\"incomplete\":false"));
        assert_non_null(strstr(reply, "\"service\":\"io.vmuser\""));

        assert_int_equal(pipe(pipefd), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                char *r = NULL;
                close(pipefd[0]);
                if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
                        _exit(3);
                int c = vl_connect();
                if (c < 0 || vl_call(c, q, &r) < 0)
                        _exit(4);
                (void) !write(pipefd[1], r, strlen(r));
                _exit(0);
        }
        close(pipefd[1]);
        char buf[4096] = "";
        size_t got = 0;
        ssize_t n;
        while ((n = read(pipefd[0], buf + got, sizeof(buf) - 1 - got)) > 0)
                got += (size_t) n;
        close(pipefd[0]);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_non_null(strstr(buf, "\"userName\":\"alice\""));
        assert_null(strstr(buf, "hashedPassword"));
        assert_null(strstr(buf, "privileged"));
        assert_non_null(strstr(buf, "\"incomplete\":true"));
}

static void test_memberships_and_errors(void **state) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL, *f = NULL;
        _cleanup_close_ int fd = vl_connect();
        (void) state;
        assert_true(fd >= 0);
        assert_int_equal(vl_call(fd, "{\"method\":\"io.systemd.UserDatabase.GetMemberships\",\"parameters\":"
                                     "{\"groupName\":\"users\"},\"more\":true}", &a), 0);
        assert_string_equal(a, "{\"parameters\":{\"userName\":\"alice\",\"groupName\":\"users\"}}");
        assert_int_equal(vl_call(fd, "{\"method\":\"io.systemd.UserDatabase.GetMemberships\",\"parameters\":"
                                     "{\"groupName\":\"nosuch\"},\"more\":true}", &b), 0);
        assert_non_null(strstr(b, "io.systemd.UserDatabase.NoRecordFound"));
        assert_int_equal(vl_call(fd, "{\"method\":\"io.systemd.UserDatabase.GetUserRecord\",\"parameters\":"
                                     "{\"userName\":\"alice\",\"service\":\"io.systemd.Other\"}}", &c), 0);
        assert_non_null(strstr(c, "io.systemd.UserDatabase.BadService"));
        assert_int_equal(vl_call(fd, "{\"method\":\"io.systemd.UserDatabase.GetUserRecord\",\"parameters\":"
                                     "{\"userName\":\"alice\",\"uid\":60515}}", &d), 0);
        assert_non_null(strstr(d, "io.systemd.UserDatabase.ConflictingRecordFound"));
        assert_int_equal(vl_call(fd, "{\"method\":\"io.systemd.UserDatabase.GetUserRecord\",\"parameters\":"
                                     "{\"userName\":42}}", &e), 0);
        assert_string_equal(e, "{\"error\":\"org.varlink.service.InvalidParameter\",\"parameters\":{\"parameter\":\"userName\"}}");
        assert_int_equal(vl_call(fd, "{\"method\":\"io.systemd.Nope.Get\"}", &f), 0);
        assert_non_null(strstr(f, "org.varlink.service.MethodNotFound"));
        /* The same connection still answers. */
        free(a);
        a = NULL;
        assert_int_equal(vl_call(fd, "{\"method\":\"io.systemd.UserDatabase.GetGroupRecord\",\"parameters\":"
                                     "{\"gid\":60515}}", &a), 0);
        assert_non_null(strstr(a, "\"groupName\":\"bob\""));
}

static void test_hostile_framing(void **state) {
        (void) state;
        /* No NUL at all, more than a message may hold. */
        size_t big = 64 * 1024;
        _cleanup_free_ char *junk = malloc(big);
        assert_non_null(junk);
        memset(junk, ' ', big);
        assert_closed_after(junk, big);
        /* An oversized but well-formed call, NUL-terminated. */
        const char *head = "{\"method\":\"io.systemd.UserDatabase.GetUserRecord\",\"parameters\":{\"userName\":\"";
        memset(junk, 'a', big);
        memcpy(junk, head, strlen(head));
        memcpy(junk + big - 5, "\"}}", 3);
        junk[big - 1] = '\0';
        assert_closed_after(junk, big);
        /* Deeper than the limit. */
        char deep[256];
        int n = snprintf(deep, sizeof(deep), "{\"method\":\"io.systemd.UserDatabase.GetUserRecord\",\"parameters\":{\"x\":"
                                             "[[[[[[[[[[[[1]]]]]]]]]]]]}}");
        assert_closed_after(deep, (size_t) n + 1);
        /* Not JSON; not an object; a bad envelope; more and oneway together. */
        assert_closed_after("{\"method\":", sizeof("{\"method\":"));
        assert_closed_after("[1,2]", sizeof("[1,2]"));
        assert_closed_after("{\"method\":\"x\",\"upgrade\":true}", sizeof("{\"method\":\"x\",\"upgrade\":true}"));
        assert_closed_after("{\"method\":\"io.systemd.UserDatabase.GetUserRecord\",\"more\":true,\"oneway\":true}",
                            sizeof("{\"method\":\"io.systemd.UserDatabase.GetUserRecord\",\"more\":true,\"oneway\":true}"));
        assert_alice_resolves();
}

/* A client that keeps a half message open does not hold up anybody else. */
static void test_hostile_trickle(void **state) {
        _cleanup_close_ int fd = vl_connect();
        (void) state;
        assert_true(fd >= 0);
        assert_int_equal(send(fd, "{\"method\":\"io.sys", 17, MSG_NOSIGNAL), 17);
        assert_alice_resolves();
        assert_int_equal(send(fd, "temd.UserDatabase.GetUserRecord\",\"parameters\":{\"uid\":60515}}", 61, MSG_NOSIGNAL), 61);
        _cleanup_free_ char *reply = NULL;
        assert_int_equal(send(fd, "", 1, MSG_NOSIGNAL), 1);
        assert_int_equal(vl_read(fd, &reply), 0);
        assert_non_null(strstr(reply, "\"userName\":\"bob\""));
}

/* One UID opens many connections and keeps them: the agent holds a bounded number, and root's
 * lookups still go through while they are open. */
static void test_hostile_many_connections(void **state) {
        int ready[2], release[2], status;
        (void) state;
        assert_int_equal(pipe(ready), 0);
        assert_int_equal(pipe(release), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                char c;
                close(ready[0]);
                close(release[1]);
                if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
                        _exit(3);
                for (int i = 0; i < 200; i++)
                        if (vl_connect() < 0)
                                break;
                (void) !write(ready[1], "x", 1);
                (void) !read(release[0], &c, 1);
                _exit(0);
        }
        close(ready[1]);
        close(release[0]);
        char c;
        assert_int_equal(read(ready[0], &c, 1), 1);
        assert_alice_resolves();
        _cleanup_free_ char *id = NULL;
        assert_int_equal(test_run_capture(&id, "id", "bob", NULL), 0);
        assert_non_null(strstr(id, "uid=60515(bob)"));
        /* 200 connections offered; at most the per-UID limit (32) held, plus the agent's own fds
         * (about 15 today; the margin leaves room for more without hiding 200). */
        int fds = agent_fd_count();
        assert_true(fds > 0);
        assert_true(fds < 32 + 40);
        close(release[1]);
        close(ready[0]);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_alice_resolves();
}

static void test_detach_and_reattach(void **state) {
        _cleanup_free_ char *r = NULL, *r2 = NULL, *out = NULL;
        (void) state;
        assert_int_equal(test_agent_call(&agent, "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"bob\"}}", &r),
                         0);
        assert_null(strstr(r, "\"error\""));
        assert_int_equal(test_run_capture(&out, "getent", "passwd", "bob", NULL), 2);
        free(out);
        out = NULL;
        assert_int_equal(test_run_capture(&out, "getent", "group", "60515", NULL), 2);
        assert_int_equal(test_agent_call(&agent,
                                         "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"bob\","
                                         "\"realName\":\"Bob Again\"}}}",
                                         &r2),
                         0);
        free(out);
        out = NULL;
        assert_int_equal(test_run_capture(&out, "getent", "passwd", "bob", NULL), 0);
        assert_non_null(strstr(out, ":Bob Again:"));
}

/* Counts the replies to one call with "more" (the last one has no "continues"). */
static int count_replies(int fd, const char *call, const char *must_contain) {
        _cleanup_free_ char *first = NULL;
        int n = 0;
        if (vl_call(fd, call, &first) < 0)
                return -1;
        char *reply = TAKE_PTR(first);
        for (;;) {
                bool more = strstr(reply, "\"continues\":true") != NULL;
                if (strstr(reply, "\"error\"")) {
                        free(reply);
                        return n;
                }
                if (!strstr(reply, must_contain)) {
                        free(reply);
                        return -1;
                }
                n++;
                free(reply);
                if (!more)
                        return n;
                if (vl_read(fd, &reply) < 0)
                        return -1;
        }
}

/* Enough users to grow every hash table, half of them detached again: each is found by name
 * and ID exactly while attached, and the memberships follow. (The groups are picked so that
 * some hash into the upper half of each table size their links pass through.) */
static void test_many_users(void **state) {
        enum { N = 150 };
        char req[512], name[32];
        _cleanup_close_ int fd = -1;
        (void) state;
        for (int i = 0; i < N; i++) {
                _cleanup_free_ char *r = NULL;
                snprintf(req, sizeof(req),
                         "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"m%03d\","
                         "\"uid\":%d},\"memberOf\":[\"users\",\"audio\",\"cdrom\"]}}", i, 60600 + i);
                assert_int_equal(test_agent_call(&agent, req, &r), 0);
                assert_null(strstr(r, "\"error\""));
        }
        for (int i = 0; i < N; i += 2) {
                _cleanup_free_ char *r = NULL;
                snprintf(req, sizeof(req), "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"m%03d\"}}", i);
                assert_int_equal(test_agent_call(&agent, req, &r), 0);
                assert_null(strstr(r, "\"error\""));
        }
        fd = vl_connect();
        assert_true(fd >= 0);
        for (int i = 0; i < N; i++) {
                _cleanup_free_ char *by_name = NULL, *by_uid = NULL, *by_gid = NULL;
                bool attached = i % 2 == 1;
                snprintf(name, sizeof(name), "\"userName\":\"m%03d\"", i);
                snprintf(req, sizeof(req), "{\"method\":\"io.systemd.UserDatabase.GetUserRecord\",\"parameters\":{%s}}", name);
                assert_int_equal(vl_call(fd, req, &by_name), 0);
                snprintf(req, sizeof(req), "{\"method\":\"io.systemd.UserDatabase.GetUserRecord\",\"parameters\":{\"uid\":%d}}",
                         60600 + i);
                assert_int_equal(vl_call(fd, req, &by_uid), 0);
                snprintf(req, sizeof(req), "{\"method\":\"io.systemd.UserDatabase.GetGroupRecord\",\"parameters\":{\"gid\":%d}}",
                         60600 + i);
                assert_int_equal(vl_call(fd, req, &by_gid), 0);
                if (attached) {
                        assert_non_null(strstr(by_name, name));
                        assert_non_null(strstr(by_uid, name));
                        snprintf(name, sizeof(name), "\"groupName\":\"m%03d\"", i);
                        assert_non_null(strstr(by_gid, name));
                } else {
                        assert_non_null(strstr(by_name, "NoRecordFound"));
                        assert_non_null(strstr(by_uid, "NoRecordFound"));
                        assert_non_null(strstr(by_gid, "NoRecordFound"));
                }
        }
        /* alice is in users too; the detached half is gone from both groups. */
        assert_int_equal(count_replies(fd, "{\"method\":\"io.systemd.UserDatabase.GetMemberships\",\"parameters\":"
                                           "{\"groupName\":\"audio\"},\"more\":true}", "\"groupName\":\"audio\""),
                         N / 2);
        assert_int_equal(count_replies(fd, "{\"method\":\"io.systemd.UserDatabase.GetMemberships\",\"parameters\":"
                                           "{\"groupName\":\"users\"},\"more\":true}", "\"groupName\":\"users\""),
                         N / 2 + 1);
        assert_int_equal(count_replies(fd, "{\"method\":\"io.systemd.UserDatabase.GetMemberships\",\"parameters\":"
                                           "{\"groupName\":\"cdrom\"},\"more\":true}", "\"groupName\":\"cdrom\""),
                         N / 2);
        assert_int_equal(count_replies(fd, "{\"method\":\"io.systemd.UserDatabase.GetMemberships\",\"parameters\":"
                                           "{\"userName\":\"m001\"},\"more\":true}", "\"userName\":\"m001\""),
                         3);
        /* Enumeration: alice, bob and the attached half. */
        assert_int_equal(count_replies(fd, "{\"method\":\"io.systemd.UserDatabase.GetUserRecord\",\"more\":true}",
                                       "\"record\":"),
                         N / 2 + 2);
        for (int i = 1; i < N; i += 2) {
                _cleanup_free_ char *r = NULL;
                snprintf(req, sizeof(req), "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"m%03d\"}}", i);
                assert_int_equal(test_agent_call(&agent, req, &r), 0);
                assert_null(strstr(r, "\"error\""));
        }
        assert_int_equal(count_replies(fd, "{\"method\":\"io.systemd.UserDatabase.GetMemberships\",\"parameters\":"
                                           "{\"groupName\":\"audio\"},\"more\":true}", "audio"),
                         0);
}

/* A restarted agent builds its index from the records the first one left. It serves them
 * under another name: every record's "service" must follow the socket's name, or userdbctl
 * refuses it. */
static void test_restart_rebuilds_index(void **state) {
        _cleanup_free_ char *out = NULL;
        char *args[] = { (char *) "--userdb=varlink", (char *) "--varlink-socket", (char *) ALT_SOCKET_PATH, NULL };
        _cleanup_free_ char *bob_before = NULL;
        char want[64];
        (void) state;
        /* Whatever UID bob holds now (a re-attach takes a never-used one: PROTOCOL.txt 10.). */
        assert_int_equal(test_run_capture(&bob_before, "getent", "passwd", "bob", NULL), 0);
        const char *uid_field = strchr(bob_before, ':') ? strchr(strchr(bob_before, ':') + 1, ':') : NULL;
        assert_non_null(uid_field);
        snprintf(want, sizeof(want), "uid=%u(bob)", (unsigned) strtoul(uid_field + 1, NULL, 10));
        assert_int_equal(test_agent_stop(&agent), 0);
        assert_int_equal(access(SOCKET_PATH, F_OK), -1);
        assert_int_equal(test_agent_start(&agent, args), 0);
        _cleanup_free_ char *pong = NULL;
        assert_int_equal(test_agent_call(&agent, "{\"execute\":\"guest-ping\"}", &pong), 0);
        assert_int_equal(test_run_capture(&out, "getent", "shadow", "alice", NULL), 0);
        assert_non_null(strstr(out, HASH));
        free(out);
        out = NULL;
        assert_int_equal(test_run_capture(&out, "id", "bob", NULL), 0);
        assert_non_null(strstr(out, want));
        free(out);
        out = NULL;
        assert_int_equal(test_run_capture(&out, "userdbctl", "user", "alice", NULL), 0);
        assert_non_null(strstr(out, "Service: org.example.vmuser"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_no_dropins),
                cmocka_unit_test(test_getent_and_id),
                cmocka_unit_test(test_userdbctl),
                cmocka_unit_test(test_privileged_root_only),
                cmocka_unit_test(test_memberships_and_errors),
                cmocka_unit_test(test_hostile_framing),
                cmocka_unit_test(test_hostile_trickle),
                cmocka_unit_test(test_hostile_many_connections),
                cmocka_unit_test(test_detach_and_reattach),
                cmocka_unit_test(test_many_users),
                cmocka_unit_test(test_restart_rebuilds_index),
                cmocka_unit_test(test_agent_exits_cleanly), /* last: the agent's exit status */
        };
        test_enter_private_run();
        return cmocka_run_group_tests(tests, setup, teardown);
}
