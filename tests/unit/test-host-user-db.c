/* test-host-user-db.c: a batch's look-ups of host users (host_user_db_*, host-user.c) through
 * one NSS view (nss-view.c) against single look-ups (host_user_lookup()).
 *
 * In a private mount namespace (test_enter_private_run()), scratch passwd, group and shadow
 * files are bind-mounted over /etc's; the nsswitch.conf that decides whether a view is taken is
 * a scratch file too (host_user_db_init()'s argument; NSS itself reads the one that
 * test_enter_private_run() mounts, "files systemd"). Checked: the batch gives the same results,
 * messages and records as single look-ups for every kind of user (good, system, root, no private
 * group, unknown, bad name); a user in the view is answered from it (it still resolves after it
 * is removed from the file); one missing from the view is asked of NSS (appended after the view
 * was taken); an nsswitch.conf naming another source for passwd takes no view, one for shadow
 * keeps no shadow entries; the view holds no shadow entry the batch did not ask for. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "host-user.h"
#include "json-util.h"
#include "macro.h"
#include "nss-view.h"
#include "test-util.h"

#define DIR "/run/test-host-user-db"
#define LOGIN_DEFS DIR "/login.defs"
#define NSS_FILES DIR "/nsswitch-files"
#define NSS_LDAP DIR "/nsswitch-ldap"
#define NSS_SHADOW_LDAP DIR "/nsswitch-shadow-ldap"
#define N_BATCH 10

static char batch[N_BATCH][32];
static char *batch_names[N_BATCH + 1];

static void write_file(const char *path, const char *text) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t) strlen(text));
}

static void append_file(const char *path, const char *text) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t) strlen(text));
}

/* The scratch databases, written in place (the bind mounts stay). */
static void write_databases(void) {
        char passwd[8192], group[4096], shadow[8192];
        size_t p, g, s;

        p = (size_t) snprintf(passwd, sizeof(passwd),
                              "root:x:0:0:root:/root:/bin/bash\n"
                              "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
                              "vmtsys:x:500:500::/home/vmtsys:/bin/sh\n"
                              "vmtwrong:x:41100:41000:Wrong,group:/home/vmtwrong:/bin/sh\n"
                              "vmtnogrp:x:41101:49999::/home/vmtnogrp:\n");
        g = (size_t) snprintf(group, sizeof(group), "root:x:0:\ndaemon:x:1:\nvmtsys:x:500:\n");
        s = (size_t) snprintf(shadow, sizeof(shadow), "root:$6$rootsalt$roothash:19000:0:99999:7:::\n");
        for (int i = 0; i < N_BATCH; i++) {
                p += (size_t) snprintf(passwd + p, sizeof(passwd) - p,
                                       "vmtdb%d:x:%d:%d:DB user %d,room %d:/home/vmtdb%d:/bin/sh\n", i, 41000 + i,
                                       41000 + i, i, i, i);
                g += (size_t) snprintf(group + g, sizeof(group) - g, "vmtdb%d:x:%d:\n", i, 41000 + i);
                s += (size_t) snprintf(shadow + s, sizeof(shadow) - s, "vmtdb%d:$6$salt%d$hash%d:19000:0:99999:7:::\n",
                                       i, i, i);
        }
        /* A second line for a name: getpwnam() answers with the first, so must the view. */
        p += (size_t) snprintf(passwd + p, sizeof(passwd) - p, "vmtdb1:x:42001:42001:Shadowed:/nowhere:/bin/false\n");
        write_file(DIR "/passwd", passwd);
        write_file(DIR "/group", group);
        write_file(DIR "/shadow", shadow);
}

static void bind_file(const char *source, const char *target) {
        assert_int_equal(mount(source, target, NULL, MS_BIND, NULL), 0);
}

static int group_setup(void **state) {
        test_enter_private_run();
        assert_int_equal(mkdir(DIR, 0755), 0);
        write_databases();
        write_file(LOGIN_DEFS, "UID_MIN 40000\n");
        write_file(NSS_FILES, "passwd: files systemd\ngroup: files\nshadow: files\n");
        write_file(NSS_LDAP, "passwd: files ldap\ngroup: files\nshadow: files\n");
        write_file(NSS_SHADOW_LDAP, "passwd: files\ngroup: files\nshadow: files ldap\n");
        bind_file(DIR "/passwd", "/etc/passwd");
        bind_file(DIR "/group", "/etc/group");
        bind_file(DIR "/shadow", "/etc/shadow");
        for (int i = 0; i < N_BATCH; i++) {
                snprintf(batch[i], sizeof(batch[i]), "vmtdb%d", i);
                batch_names[i] = batch[i];
        }
        return 0;
}

static int case_setup(void **state) {
        write_databases();
        return 0;
}

/* The record of name as the batch builds it, and as a single look-up does: both as JSON text
 * (NULL on failure, with the message in text). */
static char *record_text(const struct host_user_db *db, const char *name, int *ret_r, char text[static 1024]) {
        _cleanup_(host_user_freep) struct host_user *u = NULL;
        _cleanup_json_ json_object *record = NULL;
        struct host_user_options o = { .no_authorized_keys = true, .db = db };
        struct verr e = {};
        int r;

        r = db ? host_user_db_lookup(db, name, &u, &e) : host_user_lookup(name, LOGIN_DEFS, &u, &e);
        if (r >= 0) {
                r = host_user_build_record(u, &o, &record, &e);
                /* the host's own fields too: they are not in the record */
                if (r >= 0)
                        json_object_object_add(record, "test-host", json_object_new_string(u->home));
                if (r >= 0)
                        json_object_object_add(record, "test-uid", json_object_new_int64(u->uid));
        }
        *ret_r = r;
        snprintf(text, 1024, "%s", r < 0 ? verr_text(&e, r) : "");
        return r < 0 ? NULL : strdup(json_object_to_json_string_ext(record, JSON_C_TO_STRING_PLAIN));
}

static void expect_same(const struct host_user_db *db, const char *name) {
        char text_db[1024], text_one[1024];
        int r_db, r_one;
        _cleanup_free_ char *a = record_text(db, name, &r_db, text_db);
        _cleanup_free_ char *b = record_text(NULL, name, &r_one, text_one);

        if (r_db != r_one || !streq(text_db, text_one) || !streq(strempty(a), strempty(b)))
                fail_msg("%s: batch %d '%s' %s, single %d '%s' %s", name, r_db, text_db, strempty(a), r_one, text_one,
                         strempty(b));
}

static void test_view_matches_single_lookups(void **state) {
        static const char *const others[] = { "vmtwrong", "vmtnogrp", "vmtsys", "root", "daemon", "nosuchuser",
                                              "Bad Name", "vmtdb1" };
        struct host_user_db db;

        assert_int_equal(host_user_db_init(&db, batch_names, N_BATCH, true, NSS_FILES, LOGIN_DEFS), 0);
        assert_non_null(db.view);
        for (int i = 0; i < N_BATCH; i++)
                expect_same(&db, batch[i]);
        for (size_t i = 0; i < ELEMENTSOF(others); i++)
                expect_same(&db, others[i]);
        /* Only the batch's hashes are in memory. */
        assert_non_null(nss_view_getspnam(db.view, "vmtdb3"));
        assert_null(nss_view_getspnam(db.view, "root"));
        /* The first of two lines wins, as for getpwnam(). */
        assert_int_equal(nss_view_getpwnam(db.view, "vmtdb1")->pw_uid, 41001);
        host_user_db_done(&db);
}

static void test_user_in_view_answered_from_it(void **state) {
        struct host_user_db db;
        char text[1024];
        int r;

        assert_int_equal(host_user_db_init(&db, batch_names, N_BATCH, true, NSS_FILES, LOGIN_DEFS), 0);
        assert_non_null(db.view);
        /* Gone from the files after the view was taken: the batch still has it. */
        write_file(DIR "/passwd", "root:x:0:0:root:/root:/bin/bash\n");
        write_file(DIR "/shadow", "root:!:19000:0:99999:7:::\n");
        _cleanup_free_ char *rec = record_text(&db, "vmtdb5", &r, text);
        assert_int_equal(r, 0);
        assert_non_null(strstr(rec, "$6$salt5$hash5"));
        _cleanup_free_ char *single = record_text(NULL, "vmtdb5", &r, text);
        assert_int_equal(r, -ENOENT);
        host_user_db_done(&db);
}

static void test_user_missing_from_view_asks_nss(void **state) {
        struct host_user_db db;
        char text[1024];
        int r;

        assert_int_equal(host_user_db_init(&db, batch_names, N_BATCH, true, NSS_FILES, LOGIN_DEFS), 0);
        assert_non_null(db.view);
        append_file(DIR "/passwd", "vmtlate:x:41050:41050:Late:/home/vmtlate:/bin/sh\n");
        append_file(DIR "/group", "vmtlate:x:41050:\n");
        append_file(DIR "/shadow", "vmtlate:$6$latesalt$latehash:19000:0:99999:7:::\n");
        assert_null(nss_view_getpwnam(db.view, "vmtlate"));
        _cleanup_free_ char *rec = record_text(&db, "vmtlate", &r, text);
        assert_int_equal(r, 0);
        assert_non_null(strstr(rec, "$6$latesalt$latehash"));
        assert_non_null(strstr(rec, "\"test-uid\":41050"));
        expect_same(&db, "vmtlate");
        host_user_db_done(&db);
}

static void test_other_sources_fall_back(void **state) {
        struct host_user_db db;
        char text[1024];
        int r;

        /* passwd names ldap: no view at all, every look-up asks NSS. */
        assert_int_equal(host_user_db_init(&db, batch_names, N_BATCH, true, NSS_LDAP, LOGIN_DEFS), 0);
        assert_null(db.view);
        for (int i = 0; i < N_BATCH; i++)
                expect_same(&db, batch[i]);
        expect_same(&db, "vmtwrong");
        host_user_db_done(&db);

        /* shadow names ldap: a view, but the hashes come from getspnam (a change shows). */
        assert_int_equal(host_user_db_init(&db, batch_names, N_BATCH, true, NSS_SHADOW_LDAP, LOGIN_DEFS), 0);
        assert_non_null(db.view);
        assert_null(nss_view_getspnam(db.view, "vmtdb2"));
        write_file(DIR "/shadow", "vmtdb2:$6$newsalt$newhash:19000:0:99999:7:::\n");
        _cleanup_free_ char *rec = record_text(&db, "vmtdb2", &r, text);
        assert_int_equal(r, 0);
        assert_non_null(strstr(rec, "$6$newsalt$newhash"));
        host_user_db_done(&db);

        /* Without shadow asked for (a batch that exports), none is kept. */
        assert_int_equal(host_user_db_init(&db, batch_names, N_BATCH, false, NSS_FILES, LOGIN_DEFS), 0);
        assert_non_null(db.view);
        assert_null(nss_view_getspnam(db.view, "vmtdb2"));
        host_user_db_done(&db);
}

static void test_small_batch_takes_no_view(void **state) {
        struct host_user_db db;

        assert_int_equal(host_user_db_init(&db, batch_names, HOST_USER_VIEW_MIN, true, NSS_FILES, LOGIN_DEFS), 0);
        assert_null(db.view);
        expect_same(&db, "vmtdb0");
        host_user_db_done(&db);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_view_matches_single_lookups, case_setup),
                cmocka_unit_test_setup(test_user_in_view_answered_from_it, case_setup),
                cmocka_unit_test_setup(test_user_missing_from_view_asks_nss, case_setup),
                cmocka_unit_test_setup(test_other_sources_fall_back, case_setup),
                cmocka_unit_test_setup(test_small_batch_takes_no_view, case_setup),
        };
        return cmocka_run_group_tests(tests, group_setup, NULL);
}
