/* test-agent-faults.c: nothing is lost or half-written when the agent dies or the disk fills.
 *
 * Crash: 200 times, a running agent gets a burst of attach/replace/detach requests and is
 * SIGKILLed right after a random one of the file events the burst makes (inotify), so inside an
 * attach or detach; at least half the rounds must leave a journal. A fresh agent then starts
 * (replaying it) and /run/userdb must be consistent: every user complete (record, UID link,
 * group, GID link, privileged part, state file), every entry owned by an attached user, every
 * link pointing at the right file, no journal or temporary file left.
 * ENOSPC: /run/userdb on a tiny tmpfs; an attach that does not fit fails with the reason and
 * leaves /run byte-for-byte as it was, and the agent goes on serving.
 * ENOSPC sweep: /run/userdb and /run/vmuser are made too small for each step of an attach in
 * turn (inodes and blocks); each failure is undone; a replace stopped by ENOSPC, and an attach
 * whose undo fails as well, keep their journal and the next start-up finishes them.
 * Reserve: a bulk attach stops while 5% of the blocks (or inodes) of /run are still free, but
 * within one user's need of that line, with the numbers in the reason, and the refused attach
 * writes nothing. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "macro.h"
#include "test-util.h"

/* The drop-in path (--userdb=dropin): this file checks its files in /run/userdb. */
static char *dropin[] = { (char *) "--userdb=dropin", NULL };

static int count_entries(const char *dir, const char *suffix) {
        DIR *d = opendir(dir);
        struct dirent *de;
        int n = 0;
        assert_non_null(d);
        while ((de = readdir(d))) {
                size_t l = strlen(de->d_name), s = strlen(suffix);
                if (de->d_name[0] != '.' && l > s && streq(de->d_name + l - s, suffix))
                        n++;
        }
        closedir(d);
        return n;
}

/* The state file of an attached user: uid, gid and memberOf text (for ".membership" owners). */
struct owner {
        bool found;
        long uid, gid;
        char member_of[1024];
};

static struct owner owner_of(const char *name) {
        struct owner o = {};
        char path[512];
        snprintf(path, sizeof(path), "/run/vmuser/users/%s.json", name);
        json_object *st = json_object_from_file(path), *v;
        if (!st)
                return o;
        o.found = true;
        o.uid = json_object_object_get_ex(st, "uid", &v) ? (long) json_object_get_int64(v) : -1;
        o.gid = json_object_object_get_ex(st, "gid", &v) ? (long) json_object_get_int64(v) : -1;
        if (json_object_object_get_ex(st, "memberOf", &v))
                snprintf(o.member_of, sizeof(o.member_of), "%s", json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
        json_object_put(st);
        return o;
}

/* readlink of /run/userdb/NAME equals target. */
static bool link_is(const char *name, const char *target) {
        char path[512], buf[512];
        snprintf(path, sizeof(path), "/run/userdb/%s", name);
        ssize_t n = readlink(path, buf, sizeof(buf) - 1);
        if (n < 0)
                return false;
        buf[n] = '\0';
        return streq(buf, target);
}

/* UID.user, GID.group, UID.user-privileged (path, stem bytes of n before suffix): a link to the
 * file of the user (group) whose state says that number. */
static void check_id_link(const char *n, size_t stem, const char *suffix, const char *path, const struct stat *st) {
        char num[32], owner[128], target[256];
        char *end;

        snprintf(num, sizeof(num), "%.*s", (int) stem, n);
        long id = strtol(num, &end, 10);
        if (*end || !S_ISLNK(st->st_mode))
                fail_msg("%s is not a link named by a number", n);
        ssize_t k = readlink(path, target, sizeof(target) - 1);
        assert_true(k > 0);
        target[k] = '\0';
        size_t tl = strlen(target), sl = strlen(suffix);
        if (tl <= sl || !streq(target + tl - sl, suffix) || strchr(target, '/'))
                fail_msg("%s points to %s", n, target);
        snprintf(owner, sizeof(owner), "%.*s", (int) (tl - sl), target);
        struct owner o = owner_of(owner);
        if (!o.found || !S_ISREG(test_path_type("/run/userdb/%s", target)))
                fail_msg("%s -> %s: no such user or file", n, target);
        if ((streq(suffix, ".group") ? o.gid : o.uid) != id)
                fail_msg("%s -> %s, but %s has uid %ld gid %ld", n, target, owner, o.uid, o.gid);
}

/* NAME:GROUP.membership: its user exists and lists GROUP in its memberOf. */
static void check_membership(const char *n, size_t stem) {
        char owner[128], group[130];
        const char *colon = memchr(n, ':', stem);

        if (!colon)
                fail_msg("membership %s names no user", n);
        snprintf(owner, sizeof(owner), "%.*s", (int) (colon - n), n);
        snprintf(group, sizeof(group), "\"%.*s\"", (int) (stem - (size_t) (colon + 1 - n)), colon + 1);
        struct owner o = owner_of(owner);
        if (!o.found || !S_ISREG(test_path_type("/run/userdb/%s.user", owner)) || !strstr(o.member_of, group))
                fail_msg("orphan membership %s (owner %s: %s)", n, owner, o.found ? o.member_of : "no state file");
}

/* NAME.user: the user is whole (group, privileged part, the three ID links) and resolves with
 * the numbers of its state. */
static void check_user_whole(const char *owner, const struct owner *o) {
        static const char *const parts[] = { ".user", ".group", ".user-privileged" };
        char name[160], want[160];

        struct passwd *pw = getpwnam(owner);
        if (!pw)
                fail_msg("%s does not resolve", owner);
        if ((long) pw->pw_uid != o->uid || (long) pw->pw_gid != o->gid)
                fail_msg("%s resolves to %u:%u, its state says %ld:%ld", owner, pw->pw_uid, pw->pw_gid, o->uid, o->gid);
        for (size_t i = 0; i < ELEMENTSOF(parts); i++) {
                snprintf(want, sizeof(want), "%s%s", owner, parts[i]);
                snprintf(name, sizeof(name), "%ld%s", streq(parts[i], ".group") ? o->gid : o->uid, parts[i]);
                if (!S_ISREG(test_path_type("/run/userdb/%s", want)) || !link_is(name, want))
                        fail_msg("user %s: no %s or %s is not a link to it", owner, want, name);
        }
}

/* One entry of /run/userdb checked: 1 when it is a whole user's NAME.user, else 0. */
static int check_userdb_entry(const char *n) {
        static const char *const suffixes[] = { ".user-privileged", ".user", ".group", ".membership" };
        const char *suffix = NULL;
        size_t l = strlen(n), stem = 0;
        char owner[128], path[512];
        struct stat st;

        if (n[0] == '.')
                fail_msg("temporary file left: %s", n);
        for (size_t i = 0; i < ELEMENTSOF(suffixes) && !suffix; i++) {
                size_t sl = strlen(suffixes[i]);
                if (l > sl && streq(n + l - sl, suffixes[i])) {
                        suffix = suffixes[i];
                        stem = l - sl;
                }
        }
        if (!suffix)
                fail_msg("unknown entry in /run/userdb: %s", n);
        snprintf(path, sizeof(path), "/run/userdb/%s", n);
        assert_int_equal(lstat(path, &st), 0);

        if (n[0] >= '0' && n[0] <= '9' && !streq(suffix, ".membership")) {
                check_id_link(n, stem, suffix, path, &st);
                return 0;
        }
        if (!S_ISREG(st.st_mode))
                fail_msg("%s is not a regular file", n);
        if (streq(suffix, ".membership")) {
                check_membership(n, stem);
                return 0;
        }
        snprintf(owner, sizeof(owner), "%.*s", (int) stem, n);
        struct owner o = owner_of(owner);
        if (!o.found || !S_ISREG(test_path_type("/run/userdb/%s.user", owner)))
                fail_msg("orphan %s: no user '%s'", n, owner);
        if (!streq(suffix, ".user"))
                return 0;
        check_user_whole(owner, &o);
        return 1;
}

/* Every entry of /run/userdb has its owner and every link its right target: NAME.user,
 * NAME.group, NAME.user-privileged and NAME:GROUP.membership belong to a user with a state
 * file (and GROUP is in its memberOf); UID.user, GID.group and UID.user-privileged are links
 * to NAME.user, NAME.group and NAME.user-privileged of the user with that UID/GID; each user
 * has all of them (every user of these tests has a privileged part); every state file has its
 * user; nothing is pending. Returns the number of users. */
static int check_consistent(void) {
        DIR *d = opendir("/run/userdb");
        struct dirent *de;
        int users = 0;

        assert_non_null(d);
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        users += check_userdb_entry(de->d_name);
        closedir(d);

        d = opendir("/run/vmuser/users");
        assert_non_null(d);
        while ((de = readdir(d))) {
                size_t l = strlen(de->d_name);
                if (de->d_name[0] == '.')
                        continue;
                if (l <= 5 || !streq(de->d_name + l - 5, ".json"))
                        fail_msg("unknown entry in /run/vmuser/users: %s", de->d_name);
                if (!S_ISREG(test_path_type("/run/userdb/%.*s.user", (int) (l - 5), de->d_name)))
                        fail_msg("state file %s without its user", de->d_name);
        }
        closedir(d);
        assert_int_equal(count_entries("/run/vmuser/users", ".json"), users);
        assert_int_equal(count_entries("/run/vmuser/pending", ".json"), 0);
        return users;
}

/* An inotify watch on every directory the agent changes during an attach: each file it creates,
 * renames into place or removes there is one event, so "the k-th event" is a point inside the
 * k-th step of some plan (journal, record, link, state file), not agent start-up. */
static int watch_agent_dirs(void) {
        int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        assert_true(fd >= 0);
        const uint32_t mask = IN_CREATE | IN_MOVED_TO | IN_DELETE;
        assert_true(inotify_add_watch(fd, "/run/userdb", mask) >= 0);
        assert_true(inotify_add_watch(fd, "/run/vmuser/users", mask) >= 0);
        assert_true(inotify_add_watch(fd, "/run/vmuser/pending", mask) >= 0);
        return fd;
}

/* Detaches PREFIX0..PREFIXn-1; with attached, each must have been attached (else an answer is
 * all that is asked: the crash rounds do not know which of them the dead agent got to). */
static void detach_numbered(struct test_agent *a, const char *prefix, int n, bool attached) {
        for (int u = 0; u < n; u++) {
                _cleanup_free_ char *reply = NULL;
                char req[256];
                snprintf(req, sizeof(req), "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"%s%d\"}}",
                         prefix, u);
                assert_int_equal(test_agent_call(a, req, &reply), 0);
                if (attached)
                        assert_non_null(strstr(reply, "\"return\""));
        }
}

static void test_sigkill_during_attaches(void **state) {
        char burst[16384] = "";
        unsigned seed = (unsigned) time(NULL);
        int max_users = 0;

        printf("seed %u\n", seed);
        srand(seed);
        for (int u = 0; u < 6; u++) {
                char line[512];
                snprintf(line, sizeof(line),
                         "{\"execute\":\"vmuser-attach\",\"arguments\":{\"replace\":true,\"user\":{\"userName\":\"u%d\","
                         "\"realName\":\"User %d\",\"privileged\":{\"hashedPassword\":[\"$y$j9T$s$h%d\"]}},"
                         "\"memberOf\":[\"users\"]}}\n"
                         "{\"execute\":\"vmuser-attach\",\"arguments\":{\"replace\":true,\"user\":{\"userName\":\"u%d\","
                         "\"uid\":%d,\"privileged\":{\"hashedPassword\":[\"$y$j9T$s$x\"]}}}}\n"
                         "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"u%d\"}}\n"
                         "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"v%d\","
                         "\"privileged\":{\"hashedPassword\":[\"$y$j9T$s$v\"]}}}}\n",
                         u, u, u, u, 60560 + u, u, u);
                strcat(burst, line);
        }

        /* How many file events the whole burst makes: each round kills the agent right at a
         * random one of them, i.e. inside an attach or detach, never during start-up. */
        int burst_events;
        {
                struct test_agent a;
                _cleanup_free_ char *last = NULL, *ready = NULL;
                assert_int_equal(test_agent_start(&a, dropin), 0);
                assert_int_equal(test_agent_call(&a, "{\"execute\":\"guest-ping\"}", &ready), 0);
                _cleanup_close_ int ifd = watch_agent_dirs();
                (void) !write(a.in_fd, burst, strlen(burst));
                /* 24 replies to the burst; the ping's comes last. */
                const char *ping = "{\"execute\":\"guest-ping\",\"id\":\"end\"}\n";
                assert_int_equal(write(a.in_fd, ping, strlen(ping)), (ssize_t) strlen(ping));
                last = test_read_until(a.out_fd, "\"id\":\"end\"", 60000);
                assert_non_null(last);
                assert_int_equal(test_agent_stop(&a), 0);
                burst_events = test_wait_inotify(ifd, INT32_MAX, 200);
                printf("a burst of %d requests makes %d file events\n", 24, burst_events);
                assert_true(burst_events > 24);
                /* Start from nothing again. */
                struct test_agent c;
                assert_int_equal(test_agent_start(&c, dropin), 0);
                detach_numbered(&c, "u", 6, false);
                detach_numbered(&c, "v", 6, false);
                assert_int_equal(test_agent_stop(&c), 0);
                assert_int_equal(check_consistent(), 0);
        }

        int replays = 0;
        for (int round = 0; round < 200; round++) {
                struct test_agent a;
                _cleanup_free_ char *ready = NULL;
                int status;
                assert_int_equal(test_agent_start(&a, dropin), 0);
                /* Started and recovered: from here on every event is the burst's. */
                assert_int_equal(test_agent_call(&a, "{\"execute\":\"guest-ping\"}", &ready), 0);
                _cleanup_close_ int ifd = watch_agent_dirs();
                (void) !write(a.in_fd, burst, strlen(burst));
                (void) test_wait_inotify(ifd, 1 + rand() % burst_events, 200);
                assert_int_equal(kill(a.pid, SIGKILL), 0);
                close(a.in_fd);
                close(a.out_fd);
                assert_int_equal(waitpid(a.pid, &status, 0), a.pid);
                if (!WIFSIGNALED(status))
                        fail_msg("round %d: the agent was not killed mid-burst (status %d)", round, status);
                if (count_entries("/run/vmuser/pending", ".json") > 0)
                        replays++;

                /* A fresh agent replays whatever the dead one journalled. */
                struct test_agent b;
                _cleanup_free_ char *reply = NULL;
                assert_int_equal(test_agent_start(&b, dropin), 0);
                assert_int_equal(test_agent_call(&b, "{\"execute\":\"guest-ping\"}", &reply), 0);
                int users = check_consistent();
                if (users > max_users)
                        max_users = users;
                if (round % 3 == 2) {
                        /* Start over now and then, so early crash points are hit again. */
                        detach_numbered(&b, "u", 6, false);
                        detach_numbered(&b, "v", 6, false);
                        assert_int_equal(check_consistent(), 0);
                }
                assert_int_equal(test_agent_stop(&b), 0);
        }
        printf("200 SIGKILLs: %d left a journal to replay; state consistent after every restart (up to %d users "
               "present)\n",
               replays, max_users);
        assert_true(max_users > 0);
        /* Most kills land inside a plan (between the journal and its removal). */
        if (replays < 100)
                fail_msg("only %d of 200 kills left a journal to replay: the kills missed the attaches", replays);
}

static void test_enospc_leaves_nothing(void **state) {
        struct test_agent a;
        _cleanup_free_ char *r1 = NULL, *r2 = NULL, *r3 = NULL;

        /* Two pages for records: a group and a user fit, a privileged part does not. No reserve:
         * the write itself must fail, and be undone. */
        char *no_reserve[] = { (char *) "--userdb=dropin", (char *) "--run-reserve", (char *) "0", NULL };
        assert_int_equal(mount("tmpfs", "/run/userdb", "tmpfs", MS_NOSUID | MS_NODEV, "size=8k,mode=0755"), 0);
        assert_int_equal(test_agent_start(&a, no_reserve), 0);
        assert_int_equal(test_agent_call(&a, "{\"execute\":\"guest-ping\"}", &r3), 0);
        free(TAKE_PTR(r3));
        _cleanup_free_ char *userdb_before = test_snapshot_dir("/run/userdb");
        _cleanup_free_ char *vmuser_before = test_snapshot_dir("/run/vmuser");

        assert_int_equal(test_agent_call(&a, "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"big\","
                                             "\"privileged\":{\"hashedPassword\":[\"$y$j9T$s$h\"]}},\"memberOf\":[\"users\"]}}",
                                         &r1),
                         0);
        if (!strstr(r1, "writing the records of 'big' failed: No space left on device"))
                fail_msg("unexpected reply: %s", r1);
        _cleanup_free_ char *userdb_after = test_snapshot_dir("/run/userdb");
        _cleanup_free_ char *vmuser_after = test_snapshot_dir("/run/vmuser");
        assert_string_equal(userdb_before, userdb_after);
        assert_string_equal(vmuser_before, vmuser_after);
        assert_null(getpwnam("big"));

        /* Still serving, and what fits is installed. */
        assert_int_equal(test_agent_call(&a, "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"small\"}}}", &r2), 0);
        assert_non_null(strstr(r2, "\"changed\":true"));
        assert_non_null(getpwnam("small"));
        assert_int_equal(test_agent_call(&a, "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"small\"}}", &r3), 0);
        assert_int_equal(test_agent_stop(&a), 0);
        assert_int_equal(umount("/run/userdb"), 0);
}

#define BIG_ATTACH(replace)                                                                                    \
        "{\"execute\":\"vmuser-attach\",\"arguments\":{\"replace\":" replace ",\"user\":{\"userName\":\"big\","      \
        "\"privileged\":{\"hashedPassword\":[\"$y$j9T$s$h\"]}},\"memberOf\":[\"users\"]}}"

/* After a failed test: no small tmpfs may stay over /run/userdb or /run/vmuser for the next, ... */
static int unmount_small(void **state) {
        (void) umount2("/run/userdb", MNT_DETACH);
        (void) umount2("/run/vmuser", MNT_DETACH);
        /* ... nor users a failed test left attached (their state lives on /run itself). */
        (void) !system("rm -rf /run/userdb/* /run/userdb/.#* /run/vmuser/users/* /run/vmuser/pending/*");
        return 0;
}

/* Mounts a tmpfs with opts on dir, starts an agent without reserve: false (and nothing
 * mounted) when the agent cannot even start on so little. */
static bool start_on_small(const char *dir, const char *opts, struct test_agent *a) {
        char *no_reserve[] = { (char *) "--userdb=dropin", (char *) "--run-reserve", (char *) "0", NULL };
        _cleanup_free_ char *ping = NULL;
        assert_int_equal(mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, opts), 0);
        assert_int_equal(test_agent_start(a, no_reserve), 0);
        if (test_agent_call(a, "{\"execute\":\"guest-ping\"}", &ping) == 0)
                return true;
        (void) test_agent_stop(a);
        assert_int_equal(umount(dir), 0);
        return false;
}

/* ENOSPC at every step: /run/userdb (each record and link: inodes; each file: blocks) and
 * /run/vmuser (the journal and the state file) are made just too small for each step of an
 * attach in turn. Every failed attach says why and leaves /run as it was (the undo removed what
 * was written), and the agent goes on serving; the first size that fits attaches the user. */
static void test_enospc_sweep(void **state) {
        static const struct {
                const char *dir, *key, *unit, *what;
                int first, step, min_failures;
        } sweeps[] = {
                /* group, GID link, privileged, UID link, membership, UID link, user */
                { "/run/userdb", "nr_inodes", "", "inodes of /run/userdb", 1, 1, 7 },
                /* group, privileged, membership, user: one page each */
                { "/run/userdb", "size", "k", "blocks of /run/userdb", 4, 4, 3 },
                /* the lock file, the journal, then the state file */
                { "/run/vmuser", "nr_inodes", "", "inodes of /run/vmuser", 1, 1, 3 },
                { "/run/vmuser", "size", "k", "blocks of /run/vmuser", 4, 4, 1 },
        };

        for (size_t i = 0; i < ELEMENTSOF(sweeps); i++) {
                int failures = 0, fitted = -1;
                for (int n = sweeps[i].first; n < sweeps[i].first + 40 * sweeps[i].step && fitted < 0; n += sweeps[i].step) {
                        struct test_agent a;
                        char opts[64];
                        _cleanup_free_ char *reply = NULL, *ping = NULL, *r2 = NULL;
                        snprintf(opts, sizeof(opts), "%s=%d%s,mode=0755", sweeps[i].key, n, sweeps[i].unit);
                        if (!start_on_small(sweeps[i].dir, opts, &a))
                                continue;
                        _cleanup_free_ char *userdb_before = test_snapshot_dir("/run/userdb");
                        _cleanup_free_ char *vmuser_before = test_snapshot_dir("/run/vmuser");
                        assert_int_equal(test_agent_call(&a, BIG_ATTACH("false"), &reply), 0);
                        if (strstr(reply, "\"return\"")) {
                                fitted = n;
                                assert_non_null(getpwnam("big"));
                                assert_int_equal(check_consistent(), 1);
                                assert_int_equal(
                                        test_agent_call(&a, "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"big\"}}", &r2),
                                        0);
                                if (!strstr(r2, "\"return\""))
                                        fail_msg("%s: the detach after a fitting attach failed: %s", opts, r2);
                        } else {
                                /* "writing the records of 'big' failed: ..." or, on /run/vmuser, "could
                                 * not take the lock ...": the reason, either way. */
                                if (!strstr(reply, "No space left on device"))
                                        fail_msg("%s: unexpected reply: %s", opts, reply);
                                _cleanup_free_ char *userdb_after = test_snapshot_dir("/run/userdb");
                                _cleanup_free_ char *vmuser_after = test_snapshot_dir("/run/vmuser");
                                if (!streq(userdb_before, userdb_after) || !streq(vmuser_before, vmuser_after))
                                        fail_msg("%s on %s: the failed attach left changes:\n%s\n%s\nwas\n%s\n%s", opts,
                                                 sweeps[i].dir, userdb_after, vmuser_after, userdb_before, vmuser_before);
                                assert_null(getpwnam("big"));
                                assert_int_equal(test_agent_call(&a, "{\"execute\":\"guest-ping\"}", &ping), 0);
                                assert_string_equal(ping, "{\"return\":{}}");
                                failures++;
                        }
                        assert_int_equal(test_agent_stop(&a), 0);
                        assert_int_equal(umount(sweeps[i].dir), 0);
                }
                printf("%s: %d sizes failed cleanly with ENOSPC, %s=%d%s fits\n", sweeps[i].what, failures,
                       sweeps[i].key, fitted, sweeps[i].unit);
                if (fitted < 0 || failures < sweeps[i].min_failures)
                        fail_msg("%s: %d ENOSPC steps (want %d), fits at %d", sweeps[i].what, failures,
                                 sweeps[i].min_failures, fitted);
        }
}

/* A replace has no undo (the old files are already overwritten): when ENOSPC stops it at any
 * step, the journal stays, and the next agent start-up (with room again) finishes it. */
static void test_enospc_replace_finished_by_replay(void **state) {
        int journals = 0;
        for (int extra = 0; extra < 40; extra++) {
                struct test_agent a;
                struct statvfs sv;
                char opts[64];
                _cleanup_free_ char *r1 = NULL, *r2 = NULL, *r3 = NULL, *ping = NULL;

                assert_true(start_on_small("/run/userdb", "nr_inodes=100,mode=0755", &a));
                assert_int_equal(test_agent_call(&a, "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"big\"}}}", &r1),
                                 0);
                assert_non_null(strstr(r1, "\"return\""));
                /* Room for `extra` more entries, then the replace adds a privileged part and a
                 * membership. */
                assert_int_equal(statvfs("/run/userdb", &sv), 0);
                snprintf(opts, sizeof(opts), "remount,nr_inodes=%llu", (unsigned long long) (sv.f_files - sv.f_ffree) + extra);
                assert_int_equal(mount(NULL, "/run/userdb", NULL, MS_REMOUNT | MS_NOSUID | MS_NODEV, opts + 8), 0);
                assert_int_equal(test_agent_call(&a, BIG_ATTACH("true"), &r2), 0);
                bool done = strstr(r2, "\"return\"") != NULL;
                if (!done) {
                        if (!strstr(r2, "writing the records of 'big' failed: No space left on device"))
                                fail_msg("extra=%d: unexpected reply: %s", extra, r2);
                        assert_int_equal(count_entries("/run/vmuser/pending", ".json"), 1);
                        journals++;
                }
                assert_int_equal(test_agent_stop(&a), 0);

                /* Room again: a fresh agent replays the journal to the new record. */
                assert_int_equal(mount(NULL, "/run/userdb", NULL, MS_REMOUNT | MS_NOSUID | MS_NODEV, "nr_inodes=100"), 0);
                assert_int_equal(test_agent_start(&a, dropin), 0);
                assert_int_equal(test_agent_call(&a, "{\"execute\":\"guest-ping\"}", &ping), 0);
                assert_int_equal(check_consistent(), 1);
                assert_true(access("/run/userdb/big:users.membership", F_OK) == 0);
                assert_int_equal(test_agent_call(&a, "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"big\"}}", &r3), 0);
                assert_int_equal(test_agent_stop(&a), 0);
                assert_int_equal(umount("/run/userdb"), 0);
                if (done)
                        break;
        }
        printf("replace stopped by ENOSPC at %d steps, each finished by the replay\n", journals);
        assert_true(journals >= 2);
}

/* A failing undo: a new user's attach stops on ENOSPC after some of its entries are written, and
 * removing them again fails too (an LD_PRELOAD shim, fail-unlink.c, makes unlinkat() of
 * big.group fail with EIO). The journal must stay, the agent go on serving, and the next
 * start-up (with room again) finish the plan: one whole user, nothing orphaned. */
static void test_enospc_failing_undo(void **state) {
        char shim[4096];
        int journals = 0;
        snprintf(shim, sizeof(shim), "%s/tests/integration/agent/libfail-unlink.so", test_env_path("VMUSER_BUILD_ROOT"));
        assert_int_equal(access(shim, R_OK), 0);

        for (int n = 2; n <= 7; n++) {
                struct test_agent a;
                char opts[64];
                _cleanup_free_ char *reply = NULL, *ping = NULL, *r2 = NULL;
                _cleanup_free_ char *asan = NULL;
                const char *old_asan = getenv("ASAN_OPTIONS");

                /* Only this agent gets the shim (an ASan agent must accept a library before its
                 * runtime). */
                assert_true(asprintf(&asan, "%s%sverify_asan_link_order=0", old_asan ? old_asan : "",
                                     old_asan ? ":" : "") > 0);
                setenv("LD_PRELOAD", shim, 1);
                setenv("VMUSER_TEST_FAIL_UNLINK", "big.group", 1);
                setenv("ASAN_OPTIONS", asan, 1);
                snprintf(opts, sizeof(opts), "nr_inodes=%d,mode=0755", n);
                bool started = start_on_small("/run/userdb", opts, &a);
                unsetenv("LD_PRELOAD");
                unsetenv("VMUSER_TEST_FAIL_UNLINK");
                if (old_asan)
                        setenv("ASAN_OPTIONS", old_asan, 1);
                else
                        unsetenv("ASAN_OPTIONS");
                assert_true(started);

                assert_int_equal(test_agent_call(&a, BIG_ATTACH("false"), &reply), 0);
                if (!strstr(reply, "writing the records of 'big' failed: No space left on device"))
                        fail_msg("%s: unexpected reply: %s", opts, reply);
                assert_int_equal(count_entries("/run/vmuser/pending", ".json"), 1);
                journals++;
                assert_int_equal(test_agent_call(&a, "{\"execute\":\"guest-ping\"}", &ping), 0);
                assert_string_equal(ping, "{\"return\":{}}");
                assert_int_equal(test_agent_stop(&a), 0);

                assert_int_equal(mount(NULL, "/run/userdb", NULL, MS_REMOUNT | MS_NOSUID | MS_NODEV, "nr_inodes=100"), 0);
                _cleanup_free_ char *ping2 = NULL;
                assert_int_equal(test_agent_start(&a, dropin), 0);
                assert_int_equal(test_agent_call(&a, "{\"execute\":\"guest-ping\"}", &ping2), 0);
                assert_int_equal(check_consistent(), 1);
                assert_non_null(getpwnam("big"));
                assert_int_equal(test_agent_call(&a, "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"big\"}}", &r2), 0);
                assert_non_null(strstr(r2, "\"return\""));
                assert_int_equal(check_consistent(), 0);
                assert_int_equal(test_agent_stop(&a), 0);
                assert_int_equal(umount("/run/userdb"), 0);
        }
        printf("undo failed after ENOSPC at %d steps: journal kept, finished by the next start-up\n", journals);
}

/* Attaches v0, v1, ... until the agent refuses one; returns how many it took. The refused
 * reply goes to *ret_refusal. */
static int attach_until_refused(struct test_agent *a, int max, char **ret_refusal) {
        for (int u = 0; u < max; u++) {
                _cleanup_free_ char *reply = NULL;
                char req[256];
                snprintf(req, sizeof(req),
                         "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"v%d\"}}}", u);
                assert_int_equal(test_agent_call(a, req, &reply), 0);
                if (!strstr(reply, "\"return\"")) {
                        *ret_refusal = TAKE_PTR(reply);
                        return u;
                }
        }
        fail_msg("%d attaches, none refused", max);
        return -1;
}

static void detach_all(struct test_agent *a, int n) {
        detach_numbered(a, "v", n, true);
}

/* Mounts a tmpfs with opts on /run/userdb, starts an agent there and attaches users until it
 * refuses: the refusal (to *ret_refusal) must say want. Returns how many were attached (some). */
static int fill_userdb(struct test_agent *a, const char *opts, const char *want, char **ret_refusal) {
        assert_int_equal(mount("tmpfs", "/run/userdb", "tmpfs", MS_NOSUID | MS_NODEV, opts), 0);
        assert_int_equal(test_agent_start(a, dropin), 0);
        int n = attach_until_refused(a, 200, ret_refusal);
        printf("%s: %d users attached, then: %s\n", opts, n, *ret_refusal);
        if (!strstr(*ret_refusal, want))
                fail_msg("unexpected refusal: %s", *ret_refusal);
        assert_true(n > 0);
        return n;
}

/* At least 5% of total is still free, and not much more: the refused user (per_user units)
 * would have crossed the 5% line. */
static void expect_at_reserve_line(unsigned long long avail, unsigned long long total, unsigned per_user,
                                   const char *units) {
        assert_true(avail >= total * 5 / 100);
        if (avail >= total * 5 / 100 + per_user)
                fail_msg("refused with %llu of %llu %s free: more than one user's %u above the 5%% line", avail, total,
                         units, per_user);
}

/* Detaches the n users, stops the agent (cleanly) and unmounts the small /run/userdb. */
static void empty_userdb(struct test_agent *a, int n) {
        detach_all(a, n);
        assert_int_equal(test_agent_stop(a), 0);
        assert_int_equal(umount("/run/userdb"), 0);
}

/* The agent keeps 5% of /run's blocks and inodes free by default: a bulk attach must not fill
 * the file system utmp, logind and every service also need. */
static void test_reserve_keeps_run_usable(void **state) {
        struct test_agent a;
        struct statvfs sv;
        _cleanup_free_ char *refusal = NULL, *ping = NULL;
        int n;

        /* Blocks: 256 KiB, 64 pages; each user takes two (user and group records). */
        n = fill_userdb(&a, "size=256k,mode=0755", "the guest's '/run/userdb' is nearly full (", &refusal);
        if (!strstr(refusal, "attaching 'v") || !strstr(refusal, "less than the 5% the agent keeps free"))
                fail_msg("unexpected refusal: %s", refusal);
        assert_int_equal(statvfs("/run/userdb", &sv), 0);
        expect_at_reserve_line(sv.f_bavail, sv.f_blocks, 2, "blocks");
        /* The refused attach wrote nothing: asking again changes nothing either. */
        _cleanup_free_ char *before = test_snapshot_dir("/run/userdb"), *again = NULL;
        char req[256];
        snprintf(req, sizeof(req), "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"v%d\"}}}", n);
        assert_int_equal(test_agent_call(&a, req, &again), 0);
        assert_non_null(strstr(again, "is nearly full"));
        _cleanup_free_ char *after = test_snapshot_dir("/run/userdb");
        assert_string_equal(before, after);
        assert_int_equal(test_agent_call(&a, "{\"execute\":\"guest-ping\"}", &ping), 0);
        assert_string_equal(ping, "{\"return\":{}}");
        empty_userdb(&a, n);

        /* Inodes: 60 on a roomy tmpfs; each user takes four (two records, two ID links). */
        free(TAKE_PTR(refusal));
        n = fill_userdb(&a, "size=4m,nr_inodes=60,mode=0755", "the guest's '/run/userdb' is nearly out of inodes (",
                        &refusal);
        assert_int_equal(statvfs("/run/userdb", &sv), 0);
        expect_at_reserve_line(sv.f_favail, sv.f_files, 4, "inodes");
        empty_userdb(&a, n);
}

int main(void) {
        test_enter_private_run();
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_enospc_leaves_nothing, unmount_small),
                cmocka_unit_test_teardown(test_enospc_sweep, unmount_small),
                cmocka_unit_test_teardown(test_enospc_replace_finished_by_replay, unmount_small),
                cmocka_unit_test_teardown(test_enospc_failing_undo, unmount_small),
                cmocka_unit_test_teardown(test_reserve_keeps_run_usable, unmount_small),
                cmocka_unit_test(test_sigkill_during_attaches),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
