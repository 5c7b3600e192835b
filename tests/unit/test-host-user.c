/* test-host-user.c: the parsers and checks of libvmuser/host-user.c that need no host account:
 * UID_MIN from a login.defs file, the weakness of a password hash, admin-given SSH key files
 * (sshd's StrictModes along the whole path, every line a public key), the record built from a
 * host_user filled in here (its ~/.ssh/authorized_keys read from a scratch home), and erasing
 * the hashes of a record. host_user_lookup() goes through the machine's NSS: only its refusals
 * that hold on any Debian machine (root, a system user, a bad name, an unknown name) are tested
 * here; the host suite attaches real accounts.
 *
 * Scratch files live below $VMUSER_BUILD_ROOT (not /tmp: a key file below a world-writable
 * directory is refused, which is one of the things tested). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "host-user.h"
#include "macro.h"
#include "records.h"

#define ED25519 "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMNi5poGgfAWwdqhZ1KsqRSaNsg2YANNtC+ac2ioH0xj alice@host"
#define ECDSA "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBIxjvsXU5zGSSHqUh+HrHD8hSccD9rgFqRmRSuhiwOiNCZ3scpYsvx52sQBEGN8I2OaSCpT0/6o+Af3HQxSDEqY= e@h"
#define PRIVATE_KEY "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n"

static char scratch[1024];

/* ---- scratch files ---- */

static const char *scratch_path(const char *name) {
        static char path[sizeof(scratch) + 256];
        snprintf(path, sizeof(path), "%s/%s", scratch, name);
        return path;
}

static void write_scratch(const char *name, const char *text, mode_t mode) {
        const char *path = scratch_path(name);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        assert_int_equal(fchmod(fd, mode), 0);
}

static void mkdir_scratch(const char *name, mode_t mode) {
        assert_int_equal(mkdir(scratch_path(name), mode), 0);
        assert_int_equal(chmod(scratch_path(name), mode), 0);
}

static int group_setup(void **state) {
        const char *root = getenv("VMUSER_BUILD_ROOT");
        snprintf(scratch, sizeof(scratch), "%s/test-host-user.XXXXXX", root ? root : ".");
        if (!mkdtemp(scratch) || chmod(scratch, 0755) < 0)
                return -1;
        return 0;
}

static int group_teardown(void **state) {
        char *argv[] = { (char *) "rm", (char *) "-rf", (char *) "--", scratch, NULL };
        pid_t pid = fork();
        if (pid == 0) {
                execvp(argv[0], argv);
                _exit(127);
        }
        if (pid > 0)
                waitpid(pid, NULL, 0);
        return 0;
}

/* ---- UID_MIN ---- */

static void test_uid_min(void **state) {
        static const struct {
                const char *text; /* NULL: no such file */
                uid_t want;
        } cases[] = {
                { NULL, HOST_USER_UID_MIN_DEFAULT },
                { "", HOST_USER_UID_MIN_DEFAULT },
                { "UID_MIN 2000\n", 2000 },
                { "  UID_MIN\t 1500 # the first regular user\n", 1500 },
                { "UID_MIN\t\t1200\r\n", 1200 },
                { "UID_MIN 1200\nUID_MIN 1300\n", 1300 },  /* the last one wins */
                { "#UID_MIN 3000\n", HOST_USER_UID_MIN_DEFAULT },
                { "SYS_UID_MIN 100\nUID_MAX 60000\n", HOST_USER_UID_MIN_DEFAULT },
                { "UID_MIN_X 5\nUID_MIN=7\nUID_MIN5 7\n", HOST_USER_UID_MIN_DEFAULT },
                { "UID_MIN abc\n", HOST_USER_UID_MIN_DEFAULT },
                { "UID_MIN 12ab\n", HOST_USER_UID_MIN_DEFAULT },
                { "UID_MIN -5\n", HOST_USER_UID_MIN_DEFAULT },
                { "UID_MIN 1100\nUID_MIN junk\n", 1100 }, /* a bad line keeps what came before */
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uid_t got = 0;
                const char *path = "/nonexistent/login.defs";
                if (cases[i].text) {
                        write_scratch("login.defs", cases[i].text, 0644);
                        path = scratch_path("login.defs");
                }
                assert_int_equal(host_uid_min(path, &got), 0);
                if (got != cases[i].want)
                        fail_msg("login.defs '%s': UID_MIN %u, wanted %u", strempty(cases[i].text), (unsigned) got,
                                 (unsigned) cases[i].want);
        }
}

/* ---- password hashes ---- */

static void test_hash_weakness(void **state) {
        static const struct {
                const char *hash;
                const char *weakness; /* NULL: strong */
        } cases[] = {
                { "$y$j9T$salt$hash", NULL },
                { "$gy$j9T$salt$hash", NULL },
                { "$7$CU..../....salt$hash", NULL },
                { "$6$salt$hash", NULL },
                { "$2b$12$hash", NULL },
                { "$2y$12$hash", NULL },
                { "$2a$12$hash", NULL },
                { "$5$salt$hash", "sha256-crypt" },
                { "$1$salt$hash", "md5-crypt" },
                { "$sha1$40000$salt$hash", "sha1-crypt" },
                { "$md5$salt$hash", "SunMD5" },
                { "_J9..salthash", "BSDi extended DES" },
                { "abJnggxhB/yWI", "DES" },
                { "abJnggxhB/yW", "an unknown method" },
                { "$3$$hash", "an unknown method" },
                { "$6", "an unknown method" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const char *got = host_hash_weakness(cases[i].hash);
                if (!cases[i].weakness ? got != NULL : !got || strcmp(got, cases[i].weakness) != 0)
                        fail_msg("'%s': weakness '%s', wanted '%s'", cases[i].hash, strempty(got),
                                 strempty(cases[i].weakness));
        }
}

/* ---- admin-given key files ---- */

struct warnings {
        char text[2048];
        size_t n;
};

static void collect_warning(void *userdata, const char *text) {
        struct warnings *w = userdata;
        size_t len = strlen(w->text);
        snprintf(w->text + len, sizeof(w->text) - len, "%s\n", text);
        w->n++;
}

/* Adds the scratch file name with the current user as the only allowed owner besides root;
 * checks the result, the reason (NULL: none) and returns the keys read. */
static void expect_key_file(const char *name, int want, const char *want_error, size_t want_keys,
                            const char *want_warning) {
        struct host_user_keys k = {};
        struct warnings w = {};
        struct verr e = {};
        uid_t me = getuid();

        int r = host_user_keys_add_file(&k, scratch_path(name), &me, 1, collect_warning, &w, &e);
        if (r != want)
                fail_msg("key file %s: %d (%s), wanted %d", name, r, verr_text(&e, r), want);
        if (want_error && !strstr(e.text, want_error))
                fail_msg("key file %s: error '%s' lacks '%s'", name, e.text, want_error);
        if (want == 0)
                assert_string_equal(e.text, "");
        if (want == 0 && k.n != want_keys) /* a failed file fails the command: what it added is moot */
                fail_msg("key file %s: %zu keys, wanted %zu", name, k.n, want_keys);
        if (want_warning ? !strstr(w.text, want_warning) : w.n != 0)
                fail_msg("key file %s: warnings '%s', wanted '%s'", name, w.text, strempty(want_warning));
        host_user_keys_done(&k);
}

static void test_key_file_lines(void **state) {
        static const struct {
                const char *text;
                int want;
                const char *error;
                size_t keys;
                const char *warning;
        } cases[] = {
                /* comments, blank lines, CRLF, tabs, blanks around, a duplicate: two keys */
                { "# mine\n\n" ED25519 "\r\n\t" ECDSA "  \n" ED25519 "\n", 0, NULL, 2, NULL },
                { "ssh-ed25519\tAAAAC3NzaC1lZDI1NTE5AAAAIMNi5poGgfAWwdqhZ1KsqRSaNsg2YANNtC+ac2ioH0xj", 0, NULL, 1, NULL },
                { "restrict,command=\"/bin/true\" " ED25519 "\n", 0, NULL, 1, NULL },
                { "# nothing but a comment\n\n", 0, NULL, 0, "adds no key" },
                { "", 0, NULL, 0, "adds no key" },
                { ED25519 "\nnot a key\n", -EINVAL, "line 2: not an OpenSSH public key", 0, NULL },
                { ED25519 "\n" PRIVATE_KEY, -EINVAL, "line 2: this is a private key", 0, NULL },
                { "ssh-ed25519 AAAAC3Nz\x01" "aC1lZDI1NTE5 x\n", -EINVAL, "line 1: not an OpenSSH public key: control "
                  "characters or invalid UTF-8", 0, NULL },
                { ED25519 " caf\xc3\n", -EINVAL, "control characters or invalid UTF-8", 0, NULL },
                { "ssh-ed25519 AAAA\n", -EINVAL, "line 1: not an OpenSSH public key", 0, NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                write_scratch("keys", cases[i].text, 0644);
                expect_key_file("keys", cases[i].want, cases[i].error, cases[i].keys, cases[i].warning);
        }
}

static void test_key_file_too_long(void **state) {
        /* a line longer than the agent accepts, and a file larger than HOST_USER_KEY_FILE_MAX */
        size_t n = RECORDS_MAX_SSH_KEY_LEN + 64;
        _cleanup_free_ char *text = malloc(HOST_USER_KEY_FILE_MAX + 2);
        assert_non_null(text);
        memcpy(text, "ssh-ed25519 ", 12);
        memset(text + 12, 'A', n - 12);
        text[n] = '\0';
        write_scratch("long", text, 0644);
        expect_key_file("long", -EINVAL, "line 1: not an OpenSSH public key: longer than the agent accepts", 0, NULL);

        memset(text, '#', HOST_USER_KEY_FILE_MAX + 1);
        text[HOST_USER_KEY_FILE_MAX + 1] = '\0';
        write_scratch("big", text, 0644);
        expect_key_file("big", -EFBIG, "is larger than 262144 bytes", 0, NULL);
        text[HOST_USER_KEY_FILE_MAX] = '\0'; /* at the bound: read, and only a comment */
        write_scratch("big", text, 0644);
        expect_key_file("big", 0, NULL, 0, "adds no key");
}

static void test_key_file_path(void **state) {
        write_scratch("good.pub", ED25519 "\n", 0644);
        expect_key_file("good.pub", 0, NULL, 1, NULL);

        /* writable by group or others: the file, and a directory on the way */
        write_scratch("gw.pub", ED25519 "\n", 0664);
        expect_key_file("gw.pub", -EPERM, "is writable by group or others (mode 0664)", 0, NULL);
        mkdir_scratch("open", 0777);
        write_scratch("open/k.pub", ED25519 "\n", 0644);
        expect_key_file("open/k.pub", -EPERM, "/open' is writable by group or others (mode 0777)", 0, NULL);

        /* owned by someone else: as root, chown it to another UID; otherwise the file is the
         * caller's own, and the owners list below does not name the caller */
        write_scratch("other.pub", ED25519 "\n", 0644);
        struct host_user_keys k = {};
        struct verr e = {};
        int r;
        if (geteuid() == 0) {
                assert_int_equal(chown(scratch_path("other.pub"), 4711, 4711), 0);
                uid_t me = getuid();
                r = host_user_keys_add_file(&k, scratch_path("other.pub"), &me, 1, NULL, NULL, &e);
                if (r != -EPERM || !strstr(e.text, "other.pub' is owned by uid 4711, not by root or the user"))
                        fail_msg("a key file of uid 4711: %d %s", r, e.text);
        } else {
                r = host_user_keys_add_file(&k, scratch_path("other.pub"), NULL, 0, NULL, NULL, &e);
                if (r != -EPERM || !strstr(e.text, "not by root or the user"))
                        fail_msg("a key file of another user: %d %s", r, e.text);
        }
        assert_int_equal(k.n, 0);

        /* symlinks: the file, and a directory on the way */
        assert_int_equal(symlink("good.pub", scratch_path("link.pub")), 0);
        expect_key_file("link.pub", -ELOOP, "link.pub' is a symlink", 0, NULL);
        mkdir_scratch("real", 0755);
        write_scratch("real/k.pub", ED25519 "\n", 0644);
        assert_int_equal(symlink("real", scratch_path("linkdir")), 0);
        expect_key_file("linkdir/k.pub", -ELOOP, "linkdir' is a symlink", 0, NULL);
        expect_key_file("real/k.pub", 0, NULL, 1, NULL);

        /* '..', a directory, nothing there */
        expect_key_file("real/../good.pub", -EINVAL, "name it without '..'", 0, NULL);
        expect_key_file("real", -EBADFD, "is not a regular file", 0, NULL);
        expect_key_file("missing.pub", -ENOENT, "cannot open SSH key file", 0, NULL);

        /* a relative path is resolved against the working directory, checked all the same */
        _cleanup_free_ char *cwd = getcwd(NULL, 0);
        assert_non_null(cwd);
        assert_int_equal(chdir(scratch), 0);
        struct verr e2 = {};
        uid_t me = getuid();
        assert_int_equal(host_user_keys_add_file(&k, "good.pub", &me, 1, NULL, NULL, &e2), 0);
        assert_int_equal(host_user_keys_add_file(&k, "./real/k.pub", &me, 1, NULL, NULL, &e2), 0);
        assert_int_equal(k.n, 1); /* the same key twice */
        assert_int_equal(host_user_keys_add_file(&k, "gw.pub", &me, 1, NULL, NULL, &e2), -EPERM);
        assert_int_equal(chdir(cwd), 0);
        host_user_keys_done(&k);
}

/* ---- the record ---- */

/* A host user whose home is a scratch directory (owned by the caller, so the record builder's
 * switch to the user's file-system identity changes nothing). */
static struct host_user *scratch_user(const char *name) {
        struct host_user *u = calloc(1, sizeof(*u));
        assert_non_null(u);
        snprintf(u->name, sizeof(u->name), "%s", name);
        u->uid = getuid();
        u->gid = getgid();
        assert_non_null(u->home = strdup(scratch_path(name)));
        mkdir_scratch(name, 0755);
        return u;
}

static void write_authorized_keys(const char *user, const char *text, mode_t mode) {
        char name[128];
        snprintf(name, sizeof(name), "%s/.ssh", user);
        if (mkdir(scratch_path(name), 0700) < 0)
                assert_int_equal(errno, EEXIST);
        snprintf(name, sizeof(name), "%s/.ssh/authorized_keys", user);
        (void) unlink(scratch_path(name));
        write_scratch(name, text, mode);
}

static json_object *build(const struct host_user *u, const struct host_user_options *o, int want, const char *want_error,
                          struct warnings *w) {
        struct host_user_options opts = *o;
        json_object *record = NULL;
        struct verr e = {};

        opts.no_password = true; /* the shadow hash needs NSS and a real account */
        opts.warn = collect_warning;
        opts.warn_userdata = w;
        int r = host_user_build_record(u, &opts, &record, &e);
        if (r != want)
                fail_msg("record of %s: %d (%s), wanted %d", u->name, r, verr_text(&e, r), want);
        if (want_error && !strstr(e.text, want_error))
                fail_msg("record of %s: error '%s' lacks '%s'", u->name, e.text, want_error);
        if (want < 0)
                assert_null(record);
        return record;
}

static const char *jstr(json_object *o, const char *key) {
        json_object *v;
        return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

static size_t n_keys(json_object *record) {
        json_object *priv, *keys;
        if (!json_object_object_get_ex(record, "privileged", &priv))
                return 0;
        assert_true(json_object_object_get_ex(priv, "sshAuthorizedKeys", &keys));
        return json_object_array_length(keys);
}

static void test_record_fields(void **state) {
        _cleanup_(host_user_freep) struct host_user *u = scratch_user("alice");
        struct warnings w = {};
        json_object *v;

        /* the defaults: the guest's shell, an allocated UID, the home under /run/vmhost/home */
        json_object *rec = build(u, &(struct host_user_options) {}, 0, NULL, &w);
        assert_string_equal(jstr(rec, "userName"), "alice");
        assert_string_equal(jstr(rec, "homeDirectory"), "/run/vmhost/home/alice");
        assert_string_equal(jstr(rec, "disposition"), "regular");
        assert_string_equal(jstr(rec, "service"), HOST_USER_SERVICE);
        assert_null(jstr(rec, "shell"));
        assert_null(jstr(rec, "realName"));
        assert_false(json_object_object_get_ex(rec, "uid", &v));
        assert_false(json_object_object_get_ex(rec, "gid", &v));
        assert_false(json_object_object_get_ex(rec, "memberOf", &v));
        assert_false(json_object_object_get_ex(rec, "privileged", &v)); /* no keys, no hash */
        assert_int_equal(w.n, 0);
        json_object_put(rec);

        /* the admin's choices */
        char *groups[] = { (char *) "audio", (char *) "video", NULL };
        u->real_name = strdup("Alice Liddell");
        u->shell = strdup("/bin/zsh");
        rec = build(u,
                    &(struct host_user_options) { .home_directory = "/home/alice", .shell = HOST_USER_SHELL_FROM_HOST,
                                                  .has_uid = true, .uid = 60123, .groups = groups },
                    0, NULL, &w);
        assert_string_equal(jstr(rec, "realName"), "Alice Liddell");
        assert_string_equal(jstr(rec, "homeDirectory"), "/home/alice");
        assert_string_equal(jstr(rec, "shell"), "/bin/zsh");
        assert_true(json_object_object_get_ex(rec, "uid", &v));
        assert_int_equal(json_object_get_int64(v), 60123);
        assert_true(json_object_object_get_ex(rec, "gid", &v));
        assert_int_equal(json_object_get_int64(v), 60123);
        assert_true(json_object_object_get_ex(rec, "memberOf", &v));
        assert_int_equal(json_object_array_length(v), 2);
        assert_string_equal(json_object_get_string(json_object_array_get_idx(v, 1)), "video");
        json_object_put(rec);

        rec = build(u, &(struct host_user_options) { .shell = HOST_USER_SHELL_PATH, .shell_path = "/usr/bin/fish" }, 0,
                    NULL, &w);
        assert_string_equal(jstr(rec, "shell"), "/usr/bin/fish");
        json_object_put(rec);
        assert_int_equal(w.n, 0);

        /* no host shell: the guest's default, with a warning */
        free(u->shell);
        u->shell = NULL;
        rec = build(u, &(struct host_user_options) { .shell = HOST_USER_SHELL_FROM_HOST }, 0, NULL, &w);
        assert_null(jstr(rec, "shell"));
        assert_non_null(strstr(w.text, "'alice' has no login shell on the host"));
        json_object_put(rec);

        /* a GECOS name the agent would refuse is left out, with a warning */
        static const char *const bad_names[] = { "Alice:Liddell", "Alice\tL", "Alice \xc3\x28", "Alice\x7f" };
        for (size_t i = 0; i < ELEMENTSOF(bad_names); i++) {
                w = (struct warnings) {};
                free(u->real_name);
                u->real_name = strdup(bad_names[i]);
                rec = build(u, &(struct host_user_options) {}, 0, NULL, &w);
                if (jstr(rec, "realName"))
                        fail_msg("realName '%s' was sent", bad_names[i]);
                assert_non_null(strstr(w.text, "the GECOS name of 'alice' is not valid UTF-8"));
                json_object_put(rec);
        }
        char long_name[RECORDS_MAX_TEXT_LEN + 2];
        memset(long_name, 'a', sizeof(long_name) - 1);
        long_name[sizeof(long_name) - 1] = '\0';
        free(u->real_name);
        u->real_name = strdup(long_name);
        w = (struct warnings) {};
        rec = build(u, &(struct host_user_options) {}, 0, NULL, &w);
        assert_null(jstr(rec, "realName"));
        assert_int_equal(w.n, 1);
        json_object_put(rec);
        long_name[RECORDS_MAX_TEXT_LEN] = '\0'; /* at the bound: sent */
        free(u->real_name);
        u->real_name = strdup(long_name);
        w = (struct warnings) {};
        rec = build(u, &(struct host_user_options) {}, 0, NULL, &w);
        assert_string_equal(jstr(rec, "realName"), long_name);
        assert_int_equal(w.n, 0);
        json_object_put(rec);
}

static void test_record_refusals(void **state) {
        _cleanup_(host_user_freep) struct host_user *u = scratch_user("bob");
        struct warnings w = {};
        char *bad_group[] = { (char *) "audio", (char *) "Bad Group", NULL };
        char *many[RECORDS_MAX_MEMBER_OF + 2];
        char names[RECORDS_MAX_MEMBER_OF + 1][16];

        for (size_t i = 0; i < RECORDS_MAX_MEMBER_OF + 1; i++) {
                snprintf(names[i], sizeof(names[i]), "g%zu", i);
                many[i] = names[i];
        }
        many[RECORDS_MAX_MEMBER_OF + 1] = NULL;

        static const char *const bad_homes[] = { "/etc/bob", "home/bob", "/home/../etc", "/home//bob", "/home/bob/" };
        for (size_t i = 0; i < ELEMENTSOF(bad_homes); i++)
                build(u, &(struct host_user_options) { .home_directory = bad_homes[i] }, -EINVAL,
                      "is not a normalized absolute path under /home", &w);
        static const char *const bad_shells[] = { "bin/sh", "/bin/../sh", "/bin/s:h", "/bin/s\nh" };
        for (size_t i = 0; i < ELEMENTSOF(bad_shells); i++)
                build(u, &(struct host_user_options) { .shell = HOST_USER_SHELL_PATH, .shell_path = bad_shells[i] },
                      -EINVAL, "of 'bob' is not a normalized absolute path", &w);
        build(u, &(struct host_user_options) { .groups = bad_group }, -EINVAL, "group name 'Bad Group' is not valid", &w);
        build(u, &(struct host_user_options) { .groups = many }, -E2BIG, "33 groups given; the agent accepts at most 32",
              &w);
        many[RECORDS_MAX_MEMBER_OF] = NULL; /* at the bound */
        json_object_put(build(u, &(struct host_user_options) { .groups = many }, 0, NULL, &w));
        assert_int_equal(w.n, 0);
}

static void test_record_authorized_keys(void **state) {
        _cleanup_(host_user_freep) struct host_user *u = scratch_user("carol");
        struct host_user_keys extra = {};
        struct warnings w = {};
        struct verr e = {};
        uid_t me = getuid();
        json_object *rec;

        /* the user's own file: bad lines and a private key are skipped with a warning, not fatal */
        write_authorized_keys("carol", ED25519 "\nnot a key\n" PRIVATE_KEY "# c\n" ECDSA "\n", 0600);
        rec = build(u, &(struct host_user_options) {}, 0, NULL, &w);
        assert_int_equal(n_keys(rec), 2);
        assert_non_null(strstr(w.text, "authorized_keys, line 2: not an OpenSSH public key"));
        assert_non_null(strstr(w.text, "authorized_keys, line 3: a private key; skipped with its body"));
        assert_int_equal(w.n, 2);
        json_object_put(rec);

        /* --no-authorized-keys; extra keys from an admin's file, merged without duplicates */
        write_scratch("carol-extra.pub", ED25519 "\n", 0644);
        assert_int_equal(host_user_keys_add_file(&extra, scratch_path("carol-extra.pub"), &me, 1, NULL, NULL, &e), 0);
        w = (struct warnings) {};
        rec = build(u, &(struct host_user_options) { .no_authorized_keys = true }, 0, NULL, &w);
        assert_int_equal(n_keys(rec), 0);
        json_object_put(rec);
        rec = build(u, &(struct host_user_options) { .no_authorized_keys = true, .extra_keys = &extra }, 0, NULL, &w);
        assert_int_equal(n_keys(rec), 1);
        json_object_put(rec);
        assert_int_equal(w.n, 0);
        rec = build(u, &(struct host_user_options) { .extra_keys = &extra }, 0, NULL, &w);
        assert_int_equal(n_keys(rec), 2);
        json_object_put(rec);
        assert_int_equal(w.n, 2); /* the user's bad lines again */
        host_user_keys_done(&extra);

        /* files sshd would not trust are not read */
        static const struct {
                mode_t mode;
                const char *warning;
        } untrusted[] = {
                { 0620, "is writable by group or others (mode 620); its keys are not copied" },
                { 0602, "is writable by group or others (mode 602); its keys are not copied" },
        };
        for (size_t i = 0; i < ELEMENTSOF(untrusted); i++) {
                write_authorized_keys("carol", ED25519 "\n", untrusted[i].mode);
                w = (struct warnings) {};
                rec = build(u, &(struct host_user_options) {}, 0, NULL, &w);
                assert_int_equal(n_keys(rec), 0);
                if (!strstr(w.text, untrusted[i].warning))
                        fail_msg("mode %o: warnings '%s'", untrusted[i].mode, w.text);
                json_object_put(rec);
        }

        /* a symlink out of the home */
        write_scratch("outside", ED25519 "\n", 0644);
        assert_int_equal(unlink(scratch_path("carol/.ssh/authorized_keys")), 0);
        char target[PATH_MAX + 64];
        snprintf(target, sizeof(target), "%s", scratch_path("outside"));
        assert_int_equal(symlink(target, scratch_path("carol/.ssh/authorized_keys")), 0);
        w = (struct warnings) {};
        rec = build(u, &(struct host_user_options) {}, 0, NULL, &w);
        assert_int_equal(n_keys(rec), 0);
        assert_non_null(strstr(w.text, "leads outside the home of 'carol' (symlink)"));
        json_object_put(rec);

        /* no .ssh at all: no keys, no warning */
        _cleanup_(host_user_freep) struct host_user *d = scratch_user("dave");
        w = (struct warnings) {};
        rec = build(d, &(struct host_user_options) {}, 0, NULL, &w);
        assert_int_equal(n_keys(rec), 0);
        assert_int_equal(w.n, 0);
        json_object_put(rec);
}

static void test_record_erase(void **state) {
        json_object *rec = json_tokener_parse("{\"userName\": \"alice\", \"privileged\": {\"hashedPassword\": "
                                              "[\"$6$salt$secret\", \"$y$j9T$more\", 5], \"sshAuthorizedKeys\": [\"k\"]}}");
        assert_non_null(rec);
        json_object *priv = json_object_object_get(rec, "privileged");
        json_object *hashes = json_object_object_get(priv, "hashedPassword");
        host_user_record_erase(rec);
        for (size_t i = 0; i < 2; i++) {
                json_object *h = json_object_array_get_idx(hashes, i);
                const char *s = json_object_get_string(h);
                for (int k = 0; k < json_object_get_string_len(h); k++)
                        if (s[k] != '\0')
                                fail_msg("hash %zu not erased at byte %d", i, k);
                assert_true(json_object_get_string_len(h) > 0);
        }
        assert_int_equal(json_object_get_int(json_object_array_get_idx(hashes, 2)), 5);
        assert_string_equal(json_object_get_string(json_object_array_get_idx(
                                    json_object_object_get(priv, "sshAuthorizedKeys"), 0)),
                            "k");
        json_object_put(rec);

        /* records without hashes are left alone */
        host_user_record_erase(NULL);
        rec = json_tokener_parse("{\"userName\": \"alice\"}");
        host_user_record_erase(rec);
        json_object_put(rec);
        rec = json_tokener_parse("{\"privileged\": {\"hashedPassword\": \"$6$notalist\"}}");
        host_user_record_erase(rec);
        assert_string_equal(json_object_get_string(json_object_object_get(json_object_object_get(rec, "privileged"),
                                                                          "hashedPassword")),
                            "$6$notalist");
        json_object_put(rec);
}

/* ---- host_user_lookup() refusals that hold on any machine ---- */

static void test_lookup_refusals(void **state) {
        static const struct {
                const char *name;
                int want;
                const char *error;
        } cases[] = {
                { "root", -EPERM, "'root' is root (uid 0); root is never shared with a VM" },
                { "daemon", -EPERM, "'daemon' is a system user (uid 1 is below UID_MIN 1000 of" },
                { "Bad Name", -EPERM, "'Bad Name' is not a portable user name" },
                { "", -EPERM, "is not a portable user name" },
                { "vmuser-no-such-user", -ENOENT, "there is no user 'vmuser-no-such-user' on this host" },
        };
        write_scratch("login.defs", "UID_MIN 1000\n", 0644);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct host_user *u = NULL;
                struct verr e = {};
                int r = host_user_lookup(cases[i].name, scratch_path("login.defs"), &u, &e);
                if (r != cases[i].want || !strstr(e.text, cases[i].error))
                        fail_msg("'%s': %d '%s', wanted %d '%s'", cases[i].name, r, e.text, cases[i].want, cases[i].error);
                assert_null(u);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_uid_min),
                cmocka_unit_test(test_hash_weakness),
                cmocka_unit_test(test_key_file_lines),
                cmocka_unit_test(test_key_file_too_long),
                cmocka_unit_test(test_key_file_path),
                cmocka_unit_test(test_record_fields),
                cmocka_unit_test(test_record_refusals),
                cmocka_unit_test(test_record_authorized_keys),
                cmocka_unit_test(test_record_erase),
                cmocka_unit_test(test_lookup_refusals),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
