/* agent-faults-test.c: what test-agent-faults and test-agent-enospc share: the drop-in
 * arguments, counting entries of a directory, the consistency check of /run/userdb and
 * /run/vmuser, and detaching numbered users. */
#include <dirent.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "agent-faults-test.h"
#include "macro.h"
#include "test-util.h"

/* The drop-in path (--userdb=dropin): this file checks its files in /run/userdb. */
char *dropin[] = { (char *) "--userdb=dropin", NULL };

int count_entries(const char *dir, const char *suffix) {
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
int check_consistent(void) {
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

/* Detaches PREFIX0..PREFIXn-1; with attached, each must have been attached (else an answer is
 * all that is asked: the crash rounds do not know which of them the dead agent got to). */
void detach_numbered(struct test_agent *a, const char *prefix, int n, bool attached) {
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
