/* test-userdb-plan.c: userdb plans (libvmuser/userdb-plan.c): the journal form and back, the
 * undo of a first attach, a failed step undone or left to recovery, record-store steps. In a
 * scratch userdb (two directories under /tmp; root, as userdb_open() wants them root's). */
#include <setjmp.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "json-util.h"
#include "record-store.h"
#include "userdb-internal.h"

struct scratch {
        char root[64], userdb[96], state[96];
        struct userdb *db;
};

static int setup(void **state) {
        struct scratch *s = calloc(1, sizeof(*s));
        struct id_range range = { 60514, 60577 };
        assert_non_null(s);
        snprintf(s->root, sizeof(s->root), "/tmp/test-userdb-plan.XXXXXX");
        assert_non_null(mkdtemp(s->root));
        assert_int_equal(chmod(s->root, 0755), 0);
        snprintf(s->userdb, sizeof(s->userdb), "%s/userdb", s->root);
        snprintf(s->state, sizeof(s->state), "%s/vmuser", s->root);
        assert_int_equal(userdb_open(s->userdb, s->state, &range, &s->db), 0);
        *state = s;
        return 0;
}

static int teardown(void **state) {
        struct scratch *s = *state;
        char cmd[128];
        userdb_close(s->db);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->root);
        assert_int_equal(system(cmd), 0);
        free(s);
        return 0;
}

static bool exists(const struct scratch *s, const char *dir, const char *name) {
        char path[256];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s/%s", s->root, dir, name);
        return lstat(path, &st) == 0;
}

static int count_pending(const struct scratch *s) {
        char cmd[160];
        snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s/vmuser/pending')\"", s->root);
        return system(cmd) == 0 ? 0 : 1;
}

static void test_json_roundtrip(void **state) {
        struct plan p = {}, q = {};
        _cleanup_free_ char *text = NULL;
        _cleanup_json_ json_object *obj = NULL;
        (void) state;

        strcpy(p.user_name, "alice");
        assert_int_equal(plan_add(&p, PLAN_WRITE, PLAN_DIR_USERDB, "{}\n", 0644, "%s.group", "alice"), 0);
        assert_int_equal(plan_add(&p, PLAN_SYMLINK, PLAN_DIR_USERDB, "alice.group", 0, "%u.group", 60514u), 0);
        assert_int_equal(plan_add(&p, PLAN_REMOVE, PLAN_DIR_USERS, NULL, 0, "old.json"), 0);
        assert_int_equal(plan_add(&p, PLAN_WRITE, PLAN_DIR_STORE, "{\"userName\":\"alice\"}", 0600, "alice"), 0);
        assert_int_equal(plan_to_json(&p, &text), 0);
        assert_int_equal(json_parse_strict(text, strlen(text), &obj), 0);
        assert_int_equal(plan_from_json(obj, &q), 0);
        assert_string_equal(q.user_name, "alice");
        assert_int_equal(q.n_steps, p.n_steps);
        for (size_t i = 0; i < p.n_steps; i++) {
                assert_int_equal(q.steps[i].kind, p.steps[i].kind);
                assert_int_equal(q.steps[i].dir, p.steps[i].dir);
                assert_int_equal(q.steps[i].mode, p.steps[i].mode);
                assert_string_equal(q.steps[i].name, p.steps[i].name);
                if (p.steps[i].content)
                        assert_string_equal(q.steps[i].content, p.steps[i].content);
                else
                        assert_null(q.steps[i].content);
        }
        plan_done(&p);
        plan_done(&q);
}

/* A journal is applied as it says: one that is not a plan of ours must not parse. */
static void test_json_refused(void **state) {
        static const char *const bad[] = {
                "{\"userName\":\"../x\",\"steps\":[]}",
                "{\"userName\":\"a\",\"steps\":[{\"op\":\"write\",\"dir\":\"userdb\",\"name\":\"x/../../etc/passwd\",\"content\":\"x\",\"mode\":420}]}",
                "{\"userName\":\"a\",\"steps\":[{\"op\":\"write\",\"dir\":\"userdb\",\"name\":\".hidden\",\"content\":\"x\",\"mode\":420}]}",
                "{\"userName\":\"a\",\"steps\":[{\"op\":\"chmod\",\"dir\":\"userdb\",\"name\":\"a.user\",\"mode\":420}]}",
                "{\"userName\":\"a\",\"steps\":[{\"op\":\"remove\",\"dir\":\"etc\",\"name\":\"a.user\",\"mode\":0}]}",
                "{\"userName\":\"a\",\"steps\":[{\"op\":\"write\",\"dir\":\"userdb\",\"name\":\"a.user\",\"mode\":420}]}",
                "{\"userName\":\"a\",\"steps\":[{\"op\":\"write\",\"dir\":\"userdb\",\"name\":\"a.user\",\"content\":\"x\",\"mode\":4096}]}",
                "{\"userName\":\"a\",\"steps\":[{\"op\":\"symlink\",\"dir\":\"store\",\"name\":\"a\",\"content\":\"x\",\"mode\":0}]}",
                "{\"userName\":\"a\",\"steps\":[{\"op\":\"write\",\"dir\":\"store\",\"name\":\"a.user\",\"content\":\"x\",\"mode\":384}]}",
                "{\"userName\":\"a\"}",
        };
        (void) state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                _cleanup_json_ json_object *obj = NULL;
                struct plan p = {};
                assert_int_equal(json_parse_strict(bad[i], strlen(bad[i]), &obj), 0);
                if (plan_from_json(obj, &p) != -EBADMSG)
                        fail_msg("accepted: %s", bad[i]);
        }
}

/* The undo of a first attach removes what it created, last first, and nothing it removed. */
static void test_undo_order(void **state) {
        struct plan p = {}, u = {};
        (void) state;
        strcpy(p.user_name, "bob");
        assert_int_equal(plan_add(&p, PLAN_WRITE, PLAN_DIR_USERDB, "{}", 0644, "bob.group"), 0);
        assert_int_equal(plan_add(&p, PLAN_REMOVE, PLAN_DIR_USERDB, NULL, 0, "60514.user-privileged"), 0);
        assert_int_equal(plan_add(&p, PLAN_WRITE, PLAN_DIR_USERS, "{}", 0644, "bob.json"), 0);
        assert_int_equal(plan_add(&p, PLAN_WRITE, PLAN_DIR_STORE, "{}", 0600, "bob"), 0);
        assert_int_equal(plan_build_undo(&p, &u), 0);
        assert_int_equal(u.n_steps, 3);
        const char *want[] = { "bob", "bob.json", "bob.group" };
        const enum plan_dir dirs[] = { PLAN_DIR_STORE, PLAN_DIR_USERS, PLAN_DIR_USERDB };
        for (size_t i = 0; i < 3; i++) {
                assert_int_equal(u.steps[i].kind, PLAN_REMOVE);
                assert_int_equal(u.steps[i].dir, dirs[i]);
                assert_string_equal(u.steps[i].name, want[i]);
        }
        plan_done(&p);
        plan_done(&u);
}

/* A plan whose third step cannot be applied (a directory where a file goes). */
static void failing_plan(struct scratch *s, struct plan *p) {
        char blocker[160];
        snprintf(blocker, sizeof(blocker), "%s/vmuser/users/carl.json", s->root);
        assert_int_equal(mkdir(blocker, 0755), 0);
        assert_int_equal(mkdir(strcat(blocker, "/full"), 0755), 0);
        strcpy(p->user_name, "carl");
        assert_int_equal(plan_add(p, PLAN_WRITE, PLAN_DIR_USERDB, "{}\n", 0644, "carl.group"), 0);
        assert_int_equal(plan_add(p, PLAN_SYMLINK, PLAN_DIR_USERDB, "carl.group", 0, "60520.group"), 0);
        assert_int_equal(plan_add(p, PLAN_WRITE, PLAN_DIR_USERS, "{}\n", 0644, "carl.json"), 0);
        assert_int_equal(plan_add(p, PLAN_WRITE, PLAN_DIR_USERDB, "{}\n", 0644, "carl.user"), 0);
}

static void test_failed_step_undone(void **state) {
        struct scratch *s = *state;
        struct plan p = {}, u = {};
        /* The last step fails: a record-store line that does not check out. */
        assert_int_equal(userdb_use_store(s->db), 0);
        strcpy(p.user_name, "carl");
        assert_int_equal(plan_add(&p, PLAN_WRITE, PLAN_DIR_USERDB, "{}\n", 0644, "carl.group"), 0);
        assert_int_equal(plan_add(&p, PLAN_SYMLINK, PLAN_DIR_USERDB, "carl.group", 0, "60520.group"), 0);
        assert_int_equal(plan_add(&p, PLAN_WRITE, PLAN_DIR_USERS, "{}\n", 0644, "carl.json"), 0);
        assert_int_equal(plan_add(&p, PLAN_WRITE, PLAN_DIR_STORE, "{\"userName\":\"carl\"}", 0600, "carl"), 0);
        assert_int_equal(plan_build_undo(&p, &u), 0);
        assert_int_equal(plan_commit(s->db, &p, &u), -EBADMSG);
        assert_false(exists(s, "userdb", "carl.group"));
        assert_false(exists(s, "userdb", "60520.group"));
        assert_false(exists(s, "vmuser/users", "carl.json"));
        assert_null(record_store_get(userdb_store(s->db), "carl"));
        assert_int_equal(count_pending(s), 0);
        plan_done(&p);
        plan_done(&u);
}

/* Without an undo (a replace, a detach) the journal stays, and recovery finishes the plan. */
static void test_failed_step_left_to_recovery(void **state) {
        struct scratch *s = *state;
        struct plan p = {};
        char blocker[160];
        failing_plan(s, &p);
        assert_true(plan_commit(s->db, &p, NULL) < 0);
        assert_true(exists(s, "userdb", "carl.group"));
        assert_false(exists(s, "userdb", "carl.user"));
        assert_int_equal(count_pending(s), 1);
        snprintf(blocker, sizeof(blocker), "rm -r '%s/vmuser/users/carl.json'", s->root);
        assert_int_equal(system(blocker), 0);
        assert_int_equal(userdb_recover(s->db), 1);
        assert_true(exists(s, "userdb", "carl.user"));
        assert_true(exists(s, "vmuser/users", "carl.json"));
        assert_int_equal(count_pending(s), 0);
        plan_done(&p);
}

static void test_store_steps(void **state) {
        struct scratch *s = *state;
        _cleanup_free_ char *line = NULL;
        struct plan p = {}, r = {};
        assert_int_equal(userdb_use_store(s->db), 0);
        assert_int_equal(record_store_make_line("dora", "{\"userName\":\"dora\",\"uid\":60530}",
                                                "{\"groupName\":\"dora\",\"gid\":60530}", NULL, NULL, &line), 0);
        strcpy(p.user_name, "dora");
        assert_int_equal(plan_add(&p, PLAN_WRITE, PLAN_DIR_STORE, line, 0600, "dora"), 0);
        assert_int_equal(plan_is_noop(s->db, &p), 0);
        assert_int_equal(plan_commit(s->db, &p, NULL), 0);
        assert_string_equal(record_store_get(userdb_store(s->db), "dora"), line);
        assert_string_equal(record_store_owner_of(userdb_store(s->db), false, 60530), "dora");
        assert_int_equal(plan_is_noop(s->db, &p), 1);
        /* A line that does not check out is refused, and nothing changes. */
        struct plan bad = {};
        strcpy(bad.user_name, "dora");
        assert_int_equal(plan_add(&bad, PLAN_WRITE, PLAN_DIR_STORE, "{\"userName\":\"eve\"}", 0600, "dora"), 0);
        assert_int_equal(plan_commit(s->db, &bad, NULL), -EBADMSG);
        assert_string_equal(record_store_get(userdb_store(s->db), "dora"), line);
        strcpy(r.user_name, "dora");
        assert_int_equal(plan_add(&r, PLAN_REMOVE, PLAN_DIR_STORE, NULL, 0, "dora"), 0);
        assert_int_equal(plan_commit(s->db, &r, NULL), 0);
        assert_null(record_store_get(userdb_store(s->db), "dora"));
        assert_null(record_store_owner_of(userdb_store(s->db), false, 60530));
        /* Lines are read back from the file: they stay right across the rewrites that many
         * changes of one user bring (dead lines outnumbering live ones), and a reopen. */
        _cleanup_free_ char *l2 = NULL;
        struct record_store *store = (struct record_store *) userdb_store(s->db);
        assert_int_equal(record_store_make_line("dora", "{\"userName\":\"dora\",\"uid\":60531}",
                                                "{\"groupName\":\"dora\",\"gid\":60531}", NULL,
                                                "{\"userName\":\"dora\"}", &l2), 0);
        assert_int_equal(record_store_put(store, "eve", "{\"userName\":\"eve\",\"user\":{\"userName\":\"eve\","
                                                        "\"uid\":60540},\"group\":{\"groupName\":\"eve\",\"gid\":60540}}"), 0);
        for (int i = 0; i < 700; i++) {
                assert_int_equal(record_store_put(store, "dora", i % 2 ? line : l2), 0);
                assert_string_equal(record_store_get(store, "dora"), i % 2 ? line : l2);
        }
        assert_int_equal(record_store_equals(store, "dora", line), 1);
        assert_int_equal(record_store_equals(store, "dora", l2), 0);
        assert_non_null(strstr(record_store_get(store, "eve"), "60540"));
        struct record_store *again = NULL;
        assert_int_equal(record_store_open(userdb_state_fd(s->db), &again), 0);
        assert_string_equal(record_store_get(again, "dora"), line);
        assert_non_null(strstr(record_store_get(again, "eve"), "60540"));
        assert_int_equal(record_store_count(again), 2);
        record_store_free(again);
        plan_done(&p);
        plan_done(&bad);
        plan_done(&r);
}

/* The attach's line is joined from the records' compact texts without parsing them again: the
 * same bytes record_store_make_line() makes (else an unchanged re-attach would count as a change
 * against a line an older agent stored), with and without the optional parts. */
static void test_store_join_line(void **state) {
        static const char *const sources[] = {
                "{\"userName\":\"dora\",\"realName\":\"D\u00f6r\u00e4 \\\"Q\\\" / x\\u0001\\t\",\"uid\":60530,"
                "\"memberOf\":[\"a\",\"b\"],\"lastChangeUSec\":18446744073709551615}",
                "{\"groupName\":\"dora\",\"gid\":60530,\"members\":[]}",
                "{\"hashedPassword\":[\"$y$j9T$s$h/x\"],\"sshAuthorizedKeys\":[\"ssh-ed25519 AAAA k@h\"]}",
                "{\"uid\":60530,\"attachedUSec\":1700000000000000,\"home\":null,\"memberOf\":[\"users\"]}",
        };
        char *texts[4];
        for (size_t i = 0; i < 4; i++) {
                _cleanup_json_ json_object *o = NULL;
                assert_int_equal(json_parse_strict(sources[i], strlen(sources[i]), &o), 0);
                assert_int_not_equal(asprintf(&texts[i], "%s\n", json_to_compact(o)), -1);
        }
        for (int k = 0; k < 4; k++) {
                _cleanup_free_ char *made = NULL, *joined = NULL;
                const char *priv = k & 1 ? texts[2] : NULL, *st = k & 2 ? texts[3] : NULL;
                assert_int_equal(record_store_make_line("dora", texts[0], texts[1], priv, st, &made), 0);
                assert_int_equal(record_store_join_line("dora", texts[0], texts[1], priv, st, &joined), 0);
                assert_string_equal(joined, made);
        }
        _cleanup_free_ char *bad = NULL;
        assert_int_equal(record_store_join_line("Dora\"", texts[0], texts[1], NULL, NULL, &bad), -EINVAL);
        for (size_t i = 0; i < 4; i++)
                free(texts[i]);
}

static const char *store_line(const char *name, unsigned id, char *buf, size_t size) {
        snprintf(buf, size, "{\"userName\":\"%s\",\"user\":{\"userName\":\"%s\",\"uid\":%u},"
                 "\"group\":{\"groupName\":\"%s\",\"gid\":%u}}", name, name, id, name, id);
        return buf;
}

/* The line last read or put is kept (no pread for the re-index after a put); a rewrite moves
 * lines, so a kept line must never answer for another that now sits where it was. Lines of one
 * length; both orders of the first two users and both choices of the one read before the
 * rewrite, so that in one of them the other user lands where the kept one was. */
static void test_store_kept_line_after_rewrite(void **state) {
        char dir[] = "/tmp/vmuser-store-XXXXXX", la[256], lb[256], ld[256];
        assert_non_null(mkdtemp(dir));
        _cleanup_close_ int dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(dir_fd >= 0);
        for (int order = 0; order < 4; order++) {
                struct record_store *st = NULL;
                const char *first = order & 1 ? "ann" : "bob", *second = order & 1 ? "bob" : "ann";
                const char *kept = order & 2 ? "ann" : "bob", *other = order & 2 ? "bob" : "ann";
                (void) unlinkat(dir_fd, RECORD_STORE_FILE, 0);
                assert_int_equal(record_store_open(dir_fd, &st), 0);
                assert_int_equal(record_store_put(st, first, store_line(first, 60001 + (order & 1), la, sizeof(la))), 0);
                assert_int_equal(record_store_put(st, second, store_line(second, 60002 - (order & 1), lb, sizeof(lb))), 0);
                for (int i = 0; i < 200; i++) {
                        assert_int_equal(record_store_put(st, "cyd", store_line("cyd", 60003, ld, sizeof(ld))), 0);
                        assert_non_null(record_store_get(st, kept));
                        assert_int_equal(record_store_remove(st, "cyd"), 0);
                        const char *got = record_store_get(st, other);
                        assert_non_null(got);
                        char want[64];
                        snprintf(want, sizeof(want), "{\"userName\":\"%s\"", other);
                        if (strncmp(got, want, strlen(want)) != 0)
                                fail_msg("order %d, change %d: '%s' read as %s", order, i, other, got);
                }
                record_store_free(st);
        }
        (void) unlinkat(dir_fd, RECORD_STORE_FILE, 0);
        assert_int_equal(rmdir(dir), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_json_roundtrip),
                cmocka_unit_test(test_json_refused),
                cmocka_unit_test(test_undo_order),
                cmocka_unit_test_setup_teardown(test_failed_step_undone, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failed_step_left_to_recovery, setup, teardown),
                cmocka_unit_test_setup_teardown(test_store_steps, setup, teardown),
                cmocka_unit_test(test_store_kept_line_after_rewrite),
                cmocka_unit_test(test_store_join_line),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
