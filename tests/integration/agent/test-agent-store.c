/* test-agent-store.c: the agent's record store (--userdb=varlink, the default): one file, no
 * record file per user, crash safe, and users attached as drop-ins before an upgrade moved in.
 *
 * Each test runs agents in the test's private /run (nsswitch.conf "files systemd"), so every
 * lookup that succeeds went through nss-systemd -> the agent's varlink socket -> its index,
 * built from /run/vmuser/records.journal at start. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "attach-state-client.h"
#include "json-util.h"
#include "macro.h"
#include "paths.h"
#include "test-util.h"

#define JOURNAL "/run/vmuser/records.journal"

static char *dropin[] = { (char *) "--userdb=dropin", NULL };

static void call_ok(struct test_agent *a, const char *request) {
        _cleanup_free_ char *reply = NULL;
        assert_int_equal(test_agent_call(a, request, &reply), 0);
        if (strncmp(reply, "{\"return\"", 9) != 0)
                fail_msg("%s -> %s", request, reply);
}

static void attach(struct test_agent *a, const char *name) {
        char req[512];
        snprintf(req, sizeof(req),
                 "{\"execute\":\"vmuser-attach\",\"arguments\":{\"replace\":true,\"user\":{\"userName\":\"%s\","
                 "\"privileged\":{\"hashedPassword\":[\"$y$j9T$s$%s\"]}},\"memberOf\":[\"users\"]}}",
                 name, name);
        call_ok(a, req);
}

static void detach(struct test_agent *a, const char *name) {
        char req[256];
        snprintf(req, sizeof(req), "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"%s\"}}", name);
        call_ok(a, req);
}

/* 0 when name resolves through NSS (id), else id's status. */
static int resolves(const char *name) {
        _cleanup_free_ char *out = NULL;
        return test_run_capture(&out, "id", name, NULL);
}

static int count_files(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;
        int n = 0;
        if (!d)
                return errno == ENOENT ? 0 : -errno;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

static void reset(void) {
        /* No agent runs between tests: start each from nothing. */
        assert_int_equal(system("rm -rf /run/userdb/* /run/vmuser/* /run/vmuser/.[!.]*"), 0);
}

/* No file per user: records and attach state in one journal. */
static void test_one_file(void **state) {
        struct test_agent a;
        struct stat st;
        (void) state;
        reset();
        assert_int_equal(test_agent_start(&a, NULL), 0);
        for (int i = 0; i < 20; i++) {
                char name[16];
                snprintf(name, sizeof(name), "s%d", i);
                attach(&a, name);
        }
        assert_int_equal(resolves("s7"), 0);
        assert_int_equal(count_files("/run/userdb"), 0);
        /* vmuser-list pages: sorted by name, "limit" users after "after". */
        _cleanup_free_ char *page = NULL, *bad1 = NULL, *bad2 = NULL, *bad3 = NULL;
        assert_int_equal(test_agent_call(&a, "{\"execute\":\"vmuser-list\",\"arguments\":{\"after\":\"s1\",\"limit\":2}}",
                                         &page), 0);
        if (!strstr(page, "\"userName\":\"s10\"") || !strstr(page, "\"userName\":\"s11\"") || strstr(page, "\"s12\"") ||
            strstr(page, "\"s1\""))
                fail_msg("page: %s", page);
        assert_int_equal(test_agent_call(&a, "{\"execute\":\"vmuser-list\",\"arguments\":{\"limit\":0}}", &bad1), 0);
        assert_non_null(strstr(bad1, "argument 'limit' must be a number from 1 to 4096"));
        assert_int_equal(test_agent_call(&a, "{\"execute\":\"vmuser-list\",\"arguments\":{\"after\":\"../x\"}}", &bad2), 0);
        assert_non_null(strstr(bad2, "argument 'after' must be a user name"));
        assert_int_equal(test_agent_call(&a, "{\"execute\":\"vmuser-list\",\"arguments\":{\"page\":1}}", &bad3), 0);
        assert_non_null(strstr(bad3, "unknown argument 'page' for vmuser-list"));
        /* The state is in the journal's lines too: no file per user at all. */
        assert_int_equal(count_files("/run/vmuser/users"), 0);
        assert_int_equal(count_files("/run/vmuser/pending"), 0);
        assert_int_equal(stat(JOURNAL, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        /* A replace that changes nothing writes nothing; a detach appends one line. */
        off_t before = st.st_size;
        attach(&a, "s3");
        assert_int_equal(stat(JOURNAL, &st), 0);
        assert_int_equal(st.st_size, before);
        detach(&a, "s3");
        assert_true(resolves("s3") != 0);
        assert_int_equal(test_agent_stop(&a), 0);

        /* The next agent serves what the journal says, from a rewritten (compacted) file. */
        assert_int_equal(test_agent_start(&a, NULL), 0);
        call_ok(&a, "{\"execute\":\"guest-ping\"}");
        assert_int_equal(resolves("s7"), 0);
        assert_true(resolves("s3") != 0);
        _cleanup_free_ char *list = NULL;
        assert_int_equal(test_agent_call(&a, "{\"execute\":\"vmuser-list\"}", &list), 0);
        assert_null(strstr(list, "\"s3\""));
        assert_non_null(strstr(list, "\"s19\""));
        assert_int_equal(test_agent_stop(&a), 0);
        assert_int_equal(stat(JOURNAL, &st), 0);
        assert_true(st.st_size < before);
}

/* A line whose write never returned (no newline) is cut off; what came before stays. */
static void test_torn_tail(void **state) {
        struct test_agent a;
        (void) state;
        reset();
        assert_int_equal(test_agent_start(&a, NULL), 0);
        attach(&a, "whole");
        assert_int_equal(test_agent_stop(&a), 0);
        int fd = open(JOURNAL, O_WRONLY | O_APPEND | O_CLOEXEC);
        assert_true(fd >= 0);
        const char *torn = "{\"userName\":\"torn\",\"user\":{\"userName\":\"torn\",\"uid\":60600}";
        assert_int_equal(write(fd, torn, strlen(torn)), (ssize_t) strlen(torn));
        close(fd);

        assert_int_equal(test_agent_start(&a, NULL), 0);
        call_ok(&a, "{\"execute\":\"guest-ping\"}");
        assert_int_equal(resolves("whole"), 0);
        assert_true(resolves("torn") != 0);
        attach(&a, "after");
        assert_int_equal(test_agent_stop(&a), 0);
        assert_int_equal(test_agent_start(&a, NULL), 0);
        call_ok(&a, "{\"execute\":\"guest-ping\"}");
        assert_int_equal(resolves("whole"), 0);
        assert_int_equal(resolves("after"), 0);
        assert_int_equal(test_agent_stop(&a), 0);
}

/* Users attached as drop-ins by an older agent are found after the upgrade, served over
 * varlink, and their drop-ins are gone; a detach removes them for good. */
static void test_upgrade_from_dropins(void **state) {
        struct test_agent a;
        _cleanup_free_ char *out = NULL;
        (void) state;
        reset();
        assert_int_equal(test_agent_start(&a, dropin), 0);
        attach(&a, "olda");
        attach(&a, "oldb");
        assert_int_equal(test_agent_stop(&a), 0);
        assert_true(count_files("/run/userdb") > 0);

        assert_int_equal(test_agent_start(&a, NULL), 0);
        call_ok(&a, "{\"execute\":\"guest-ping\"}");
        assert_int_equal(count_files("/run/userdb"), 0);
        assert_int_equal(test_run_capture(&out, "userdbctl", "user", "olda", NULL), 0);
        assert_non_null(strstr(out, "Service: io.vmuser"));
        free(out);
        out = NULL;
        assert_int_equal(test_run_capture(&out, "getent", "shadow", "oldb", NULL), 0);
        assert_non_null(strstr(out, "$y$j9T$s$oldb"));
        free(out);
        out = NULL;
        assert_int_equal(test_run_capture(&out, "id", "olda", NULL), 0);
        assert_non_null(strstr(out, "(users)"));
        detach(&a, "olda");
        attach(&a, "newc");
        assert_int_equal(test_agent_stop(&a), 0);

        assert_int_equal(test_agent_start(&a, NULL), 0);
        call_ok(&a, "{\"execute\":\"guest-ping\"}");
        assert_true(resolves("olda") != 0);
        assert_int_equal(resolves("oldb"), 0);
        assert_int_equal(resolves("newc"), 0);
        assert_int_equal(count_files("/run/userdb"), 0);
        assert_int_equal(test_agent_stop(&a), 0);
}

/* A store written by an agent that kept the state in users/NAME.json (its lines have no "state"),
 * with a detach of that agent interrupted ("detaching" in the file): the next agent moves the
 * state into the line, without the mark, and removes the file. */
static void test_upgrade_from_state_files(void **state) {
        struct test_agent a;
        struct attach_state st;
        struct verr e = {};
        _cleanup_json_ json_object *line = NULL;
        json_object *st_obj;
        (void) state;
        reset();
        assert_int_equal(test_agent_start(&a, NULL), 0);
        attach(&a, "olds");
        assert_int_equal(test_agent_stop(&a), 0);
        /* Make the old agent's files out of the new one's. */
        _cleanup_fclose_ FILE *f = fopen(JOURNAL, "re");
        char buf[4096];
        assert_non_null(f);
        assert_non_null(fgets(buf, sizeof(buf), f));
        buf[strcspn(buf, "\n")] = '\0';
        assert_int_equal(json_parse_strict(buf, strlen(buf), &line), 0);
        assert_true(json_object_object_get_ex(line, "state", &st_obj));
        json_object_object_add(st_obj, "detaching", json_object_new_boolean(true));
        _cleanup_fclose_ FILE *sf = fopen("/run/vmuser/users/olds.json", "we");
        assert_non_null(sf);
        fprintf(sf, "%s\n", json_to_compact(st_obj));
        fflush(sf);
        json_object_object_del(line, "state");
        _cleanup_fclose_ FILE *jf = fopen(JOURNAL, "we");
        assert_non_null(jf);
        fprintf(jf, "%s\n", json_to_compact(line));
        fflush(jf);

        assert_int_equal(test_agent_start(&a, NULL), 0);
        call_ok(&a, "{\"execute\":\"guest-ping\"}");
        assert_int_equal(count_files("/run/vmuser/users"), 0);
        assert_int_equal(attach_state_query(VMUSER_VARLINK_SOCKET, "olds", 5000, &st, &e), 0);
        assert_false(st.detaching);
        assert_string_equal(st.user_name, "olds");
        assert_int_equal(resolves("olds"), 0);
        _cleanup_free_ char *list = NULL;
        assert_int_equal(test_agent_call(&a, "{\"execute\":\"vmuser-list\"}", &list), 0);
        assert_non_null(strstr(list, "\"userName\":\"olds\""));
        assert_int_equal(test_agent_stop(&a), 0);
        _cleanup_fclose_ FILE *f2 = fopen(JOURNAL, "re");
        assert_non_null(f2);
        /* The last line counts (the old one stays until the file is compacted). */
        char last[4096] = "";
        while (fgets(buf, sizeof(buf), f2))
                strcpy(last, buf);
        assert_non_null(strstr(last, "\"state\":{\"userName\":\"olds\""));
        assert_null(strstr(last, "detaching"));
}

static char *call(struct test_agent *a, const char *request) {
        char *reply = NULL;
        assert_int_equal(test_agent_call(a, request, &reply), 0);
        return reply;
}

/* Attaches in a row share one NSS view and one leftovers scan; neither hides a conflict: a
 * user added to /etc/passwd meanwhile, a UID another attached user holds (the agent's own NSS
 * lookups skip its service), a UID with leftovers seen by the batch's scan. */
static void test_batch_sees_conflicts(void **state) {
        struct test_agent a;
        char *args[] = { (char *) "--uid-min", (char *) "60700", (char *) "--uid-max", (char *) "60799", NULL };
        (void) state;
        reset();
        /* A copy of /etc/passwd in this namespace, to add a user to. */
        assert_int_equal(system("cp /etc/passwd /run/passwd-copy && mount --bind /run/passwd-copy /etc/passwd"), 0);
        /* A leftover of 60701 (the second UID a batch would hand out) before the batch starts. */
        assert_int_equal(system("mkdir -p " TEST_CLEANUP_ROOT "/tmp && touch " TEST_CLEANUP_ROOT "/tmp/left && "
                                "chown 60701 " TEST_CLEANUP_ROOT "/tmp/left"), 0);

        assert_int_equal(test_agent_start(&a, args), 0);
        _cleanup_free_ char *r1 = call(&a, "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"b1\"}}}");
        assert_non_null(strstr(r1, "\"uid\":60700"));
        _cleanup_free_ char *r2 = call(&a, "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"b2\"}}}");
        if (!strstr(r2, "\"uid\":60702"))
                fail_msg("b2 got %s, wanted 60702 (60701 has a leftover)", r2);
        assert_int_equal(system("echo 'clash:x:60750:60750::/:/bin/false' >>/etc/passwd"), 0);
        _cleanup_free_ char *r3 = call(&a, "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"b3\","
                                           "\"uid\":60750}}}");
        if (!strstr(r3, "uid 60750 already belongs to user 'clash'"))
                fail_msg("b3: %s", r3);
        _cleanup_free_ char *r4 = call(&a, "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"clash\"}}}");
        if (!strstr(r4, "user 'clash' already exists in the guest"))
                fail_msg("clash: %s", r4);
        _cleanup_free_ char *r5 = call(&a, "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"b4\","
                                           "\"uid\":60700}}}");
        if (!strstr(r5, "uid 60700 already belongs to user 'b1'"))
                fail_msg("b4: %s", r5);
        assert_int_equal(test_agent_stop(&a), 0);
        assert_int_equal(umount("/etc/passwd"), 0);
        assert_int_equal(unlink(TEST_CLEANUP_ROOT "/tmp/left"), 0);
}


/* Lookups are answered while the agent's main thread is busy: here an attach waits for the
 * lock the test holds (a detach waiting for logind is the case in a guest). */
static void test_lookups_while_busy(void **state) {
        struct test_agent a;
        (void) state;
        reset();
        assert_int_equal(test_agent_start(&a, NULL), 0);
        attach(&a, "busy1");
        int lock = open("/run/vmuser/lock", O_RDWR | O_CLOEXEC);
        assert_true(lock >= 0);
        assert_int_equal(flock(lock, LOCK_EX), 0);
        const char *req = "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"busy2\"}}}\n";
        assert_int_equal(write(a.in_fd, req, strlen(req)), (ssize_t) strlen(req));
        /* The attach is under way (it reads the request at once) and cannot finish. */
        assert_int_equal(resolves("busy1"), 0);
        struct pollfd p = { .fd = a.out_fd, .events = POLLIN };
        if (poll(&p, 1, 0) != 0)
                fail_msg("the attach finished (or failed) before the lookup was answered: lookups waited for it");
        assert_int_equal(flock(lock, LOCK_UN), 0);
        close(lock);
        _cleanup_free_ char *busy2 = test_read_until(a.out_fd, "\"busy2\"", 10000);
        assert_non_null(busy2);
        assert_int_equal(test_agent_stop(&a), 0);
}

/* The names the journal holds after replaying it, in names (n of them). */
static int journal_names(char names[][32], int max) {
        _cleanup_fclose_ FILE *f = fopen(JOURNAL, "re");
        char *line = NULL;
        size_t cap = 0;
        int n = 0;
        assert_non_null(f);
        while (getline(&line, &cap, f) > 0) {
                char name[32];
                bool remove = sscanf(line, "{\"remove\":\"%31[^\"]\"", name) == 1;
                if (!remove && sscanf(line, "{\"userName\":\"%31[^\"]\"", name) != 1)
                        fail_msg("journal line not understood: %s", line);
                int at = -1;
                for (int i = 0; i < n; i++)
                        if (streq(names[i], name))
                                at = i;
                if (remove && at >= 0)
                        memmove(names[at], names[at + 1], (size_t) (--n - at) * sizeof(names[0]));
                else if (!remove && at < 0 && n < max)
                        strcpy(names[n++], name);
        }
        free(line);
        return n;
}

/* Every user of the journal resolves and has its attach state (vmuser-list reads it from the
 * line); nothing is left half-done, and no file per user appears. Needs a running agent. */
static int check_consistent(struct test_agent *b) {
        char names[64][32];
        int n = journal_names(names, 64);
        _cleanup_free_ char *list = NULL;
        assert_int_equal(test_agent_call(b, "{\"execute\":\"vmuser-list\"}", &list), 0);
        for (int i = 0; i < n; i++) {
                char needle[64];
                snprintf(needle, sizeof(needle), "\"userName\":\"%.31s\"", names[i]);
                if (!strstr(list, needle))
                        fail_msg("%s is in the journal without its attach state: %s", names[i], list);
                struct passwd *pw = getpwnam(names[i]);
                if (!pw)
                        fail_msg("%s does not resolve", names[i]);
        }
        assert_int_equal(count_files("/run/vmuser/users"), 0);
        assert_int_equal(count_files("/run/vmuser/pending"), 0);
        assert_int_equal(count_files("/run/userdb"), 0);
        return n;
}

/* Lines in the journal. */
static int journal_lines(void) {
        _cleanup_fclose_ FILE *f = fopen(JOURNAL, "re");
        int n = 0, c;
        assert_non_null(f);
        while ((c = fgetc(f)) != EOF)
                n += c == '\n';
        return n;
}

/* Every file event of an attach or detach: the record line (IN_MODIFY), the UID mark, and
 * whatever a journal or state file would make (none are expected). */
static int watch(void) {
        int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        assert_true(fd >= 0);
        assert_true(inotify_add_watch(fd, "/run/vmuser", IN_MODIFY | IN_MOVED_TO) >= 0);
        assert_true(inotify_add_watch(fd, "/run/vmuser/users", IN_CREATE | IN_MOVED_TO | IN_DELETE) >= 0);
        assert_true(inotify_add_watch(fd, "/run/vmuser/pending", IN_CREATE | IN_MOVED_TO | IN_DELETE) >= 0);
        return fd;
}

/* The uid of a reply ({"return":{"userName":..,"uid":N,..}}). */
static unsigned reply_uid(const char *reply) {
        const char *p = strstr(reply, "\"uid\":");
        if (!p)
                fail_msg("no uid in %s", reply);
        return (unsigned) strtoul(p + 6, NULL, 10);
}

static unsigned attach_uid(struct test_agent *a, const char *name) {
        char req[256];
        _cleanup_free_ char *reply = NULL;
        snprintf(req, sizeof(req), "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"%s\"}}}", name);
        assert_int_equal(test_agent_call(a, req, &reply), 0);
        return reply_uid(reply);
}

static void read_highwater(char *buf, size_t size) {
        _cleanup_close_ int fd = open("/run/vmuser/uid-highwater", O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        ssize_t n = read(fd, buf, size - 1);
        assert_true(n >= 0);
        buf[n] = '\0';
}

/* The high-water mark (rewritten in place, not replaced) outlives a SIGKILL: the UID of a user
 * attached and detached before the kill is not handed out again first; a mark that does not
 * parse is rewritten whole. */
static void test_highwater_survives_sigkill(void **state) {
        struct test_agent a;
        char buf[64], want[32];
        int status;
        (void) state;

        reset();
        assert_int_equal(mkdir("/run/vmuser", 0755) == 0 || errno == EEXIST, 1);
        _cleanup_close_ int fd = open("/run/vmuser/uid-highwater", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        const char *junk = "no number here, and longer than any mark\n";
        assert_int_equal(write(fd, junk, strlen(junk)), (ssize_t) strlen(junk));
        assert_int_equal(test_agent_start(&a, NULL), 0);
        unsigned first = attach_uid(&a, "hw1");
        snprintf(want, sizeof(want), "%u\n", first + 1);
        read_highwater(buf, sizeof(buf));
        assert_string_equal(buf, want);
        unsigned second = attach_uid(&a, "hw2");
        assert_int_equal(second, first + 1);
        detach(&a, "hw2");
        assert_int_equal(kill(a.pid, SIGKILL), 0);
        close(a.in_fd);
        close(a.out_fd);
        assert_int_equal(waitpid(a.pid, &status, 0), a.pid);

        assert_int_equal(test_agent_start(&a, NULL), 0);
        assert_int_equal(attach_uid(&a, "hw3"), second + 1);
        assert_int_equal(test_agent_stop(&a), 0);
}

static void test_sigkill_anywhere(void **state) {
        char burst[8192] = "";
        unsigned seed = (unsigned) time(NULL);
        int burst_events = 0, burst_lines = 0, max_users = 0, mid_burst = 0;
        (void) state;

        reset();
        printf("seed %u\n", seed);
        srand(seed);
        for (int u = 0; u < 4; u++) {
                char line[768];
                snprintf(line, sizeof(line),
                         "{\"execute\":\"vmuser-attach\",\"arguments\":{\"replace\":true,\"user\":{\"userName\":\"k%d\","
                         "\"privileged\":{\"hashedPassword\":[\"$y$j9T$s$h%d\"]}},\"memberOf\":[\"users\"]}}\n"
                         "{\"execute\":\"vmuser-attach\",\"arguments\":{\"replace\":true,\"user\":{\"userName\":\"k%d\","
                         "\"realName\":\"K %d\"}}}\n"
                         "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"k%d\"}}\n"
                         "{\"execute\":\"vmuser-attach\",\"arguments\":{\"replace\":true,\"user\":{\"userName\":\"w%d\"}}}\n",
                         u, u, u, u, u, u);
                strcat(burst, line);
        }
        for (int round = -1; round < 100; round++) {
                struct test_agent a, b;
                int status;
                assert_int_equal(test_agent_start(&a, NULL), 0);
                call_ok(&a, "{\"execute\":\"guest-ping\"}");
                int lines_before = journal_lines();
                _cleanup_close_ int ifd = watch();
                (void) !write(a.in_fd, burst, strlen(burst));
                if (round < 0) {
                        /* Count the events of a whole burst first: its replies end with the ping's. */
                        const char *ping = "{\"execute\":\"guest-ping\",\"id\":\"end\"}\n";
                        assert_int_equal(write(a.in_fd, ping, strlen(ping)), (ssize_t) strlen(ping));
                        _cleanup_free_ char *end_reply = test_read_until(a.out_fd, "\"end\"", 60000);
                        assert_non_null(end_reply);
                        burst_events = test_wait_inotify(ifd, INT32_MAX, 200);
                        burst_lines = journal_lines() - lines_before;
                        printf("one burst makes %d file events, %d journal lines\n", burst_events, burst_lines);
                        assert_true(burst_lines >= 12);
                        assert_true(burst_events >= burst_lines);
                        assert_int_equal(test_agent_stop(&a), 0);
                } else {
                        (void) test_wait_inotify(ifd, 1 + rand() % burst_events, 200);
                        assert_int_equal(kill(a.pid, SIGKILL), 0);
                        close(a.in_fd);
                        close(a.out_fd);
                        assert_int_equal(waitpid(a.pid, &status, 0), a.pid);
                        if (!WIFSIGNALED(status))
                                fail_msg("round %d: the agent finished before the kill (status %d)", round, status);
                        int lines = journal_lines() - lines_before;
                        if (lines > 0 && lines < burst_lines)
                                mid_burst++;
                }
                assert_int_equal(test_agent_start(&b, NULL), 0);
                call_ok(&b, "{\"execute\":\"guest-ping\"}");
                int users = check_consistent(&b);
                if (users > max_users)
                        max_users = users;
                if (round % 3 == 2)
                        for (int u = 0; u < 4; u++) {
                                char name[8];
                                snprintf(name, sizeof(name), "w%d", u);
                                _cleanup_free_ char *r = NULL;
                                char req[128];
                                snprintf(req, sizeof(req),
                                         "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"%s\"}}", name);
                                assert_int_equal(test_agent_call(&b, req, &r), 0);
                        }
                assert_int_equal(test_agent_stop(&b), 0);
        }
        printf("100 SIGKILLs: %d in the middle of a burst; consistent after every restart (up to %d users)\n",
               mid_burst, max_users);
        assert_true(max_users > 0);
        if (mid_burst < 15)
                fail_msg("only %d of 100 kills came in the middle of a burst: the kills missed the attaches", mid_burst);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_one_file),
                cmocka_unit_test(test_torn_tail),
                cmocka_unit_test(test_upgrade_from_dropins),
                cmocka_unit_test(test_upgrade_from_state_files),
                cmocka_unit_test(test_batch_sees_conflicts),
                cmocka_unit_test(test_lookups_while_busy),
                cmocka_unit_test(test_highwater_survives_sigkill),
                cmocka_unit_test(test_sigkill_anywhere),
        };
        test_enter_private_run();
        return cmocka_run_group_tests(tests, NULL, NULL);
}
