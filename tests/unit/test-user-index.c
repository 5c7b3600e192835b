/* test-user-index.c: the index entry an attach makes without parsing its line
 * (user-index-line.c) is, byte for byte, the entry the parse makes (user_index_entry_parse), for
 * the lines the record store holds: joined from json-c's compact texts (the attach path) and
 * serialized whole (the migration), the line of a real attach request (records.c), with and
 * without a privileged section, with strings that
 * hold braces, brackets, quotes and backslashes, records that name the service already (as
 * records.c writes them) or not. Lines it must not take apart (a part that names another
 * service, a user with "privileged", a state with "detaching", no state, anything after the
 * line's object) are refused with -EPROTO, and user_index_refresh_attached() then indexes
 * them as the parse does. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "json-util.h"
#include "macro.h"
#include "attach-state.h"
#include "record-line.h"
#include "records.h"
#include "user-index-internal.h"

#define SERVICE "io.vmuser"

/* The texts of an attach: json-c's compact form of each, as records.c renders them. */
#define USER "{\"userName\":\"alice\",\"uid\":60001,\"gid\":60001,\"realName\":\"A. {\\\"Brace\\\"} [x] \\\\ /\"," \
             "\"homeDirectory\":\"/home/alice\",\"shell\":\"/bin/bash\",\"memberOf\":[\"users\",\"wheel\"]," \
             "\"location\":\"x\\\"}\",\"disposition\":\"regular\",\"perMachine\":[{\"matchHostname\":[\"a}\"]}]}"
#define GROUP "{\"groupName\":\"alice\",\"gid\":60001,\"disposition\":\"regular\"}"
#define PRIVILEGED "{\"privileged\":{\"hashedPassword\":[\"$y$j9T$salt$hash}{\"]," \
                   "\"sshAuthorizedKeys\":[\"ssh-ed25519 AAAAC3Nza alice@host\"]}}"
#define STATE "{\"userName\":\"alice\",\"uid\":60001,\"gid\":60001,\"homeDirectory\":\"/home/alice\"," \
              "\"home\":{\"tag\":\"vmuser-60001\",\"fstype\":\"virtiofs\"},\"memberOf\":[\"users\",\"wheel\"]," \
              "\"attachedAt\":1733371200000000}"

static struct user_index *idx;

static char *compact(const char *text) {
        _cleanup_json_ json_object *o = NULL;
        assert_int_equal(json_parse_strict(text, strlen(text), &o), 0);
        char *s = strdup(json_to_compact(o));
        assert_non_null(s);
        return s;
}

static void expect_same_text(const char *what, const char *a, const char *b) {
        if (!a && !b)
                return;
        if (!a || !b || !streq(a, b))
                fail_msg("%s differs:\n  without parsing: %s\n  parsed:          %s", what, a ? a : "(null)",
                         b ? b : "(null)");
}

static void expect_same_entry(const struct user_entry *fast, const struct user_entry *parsed) {
        assert_string_equal(fast->name, parsed->name);
        assert_int_equal(fast->uid, parsed->uid);
        assert_int_equal(fast->gid, parsed->gid);
        expect_same_text("user", fast->user_text, parsed->user_text);
        expect_same_text("group", fast->group_text, parsed->group_text);
        expect_same_text("privileged", fast->privileged_text, parsed->privileged_text);
        expect_same_text("state", fast->state_text, parsed->state_text);
        assert_int_equal(fast->n_member_of, parsed->n_member_of);
        for (size_t i = 0; i < fast->n_member_of; i++)
                assert_string_equal(fast->member_of[i], parsed->member_of[i]);
}

/* Both ways of line; the one without parsing must take it. */
static void expect_equivalent(const char *line) {
        _cleanup_(user_index_entry_freep) struct user_entry *fast = NULL, *parsed = NULL;
        int r = user_index_entry_from_line(idx, line, "alice", 60001, 60001, &fast);
        if (r < 0)
                fail_msg("not taken apart (%s): %s", strerror(-r), line);
        assert_int_equal(user_index_entry_parse(idx, line, AT_FDCWD, "alice", &parsed), 0);
        expect_same_entry(fast, parsed);
}

static void joined(const char *user, const char *group, const char *privileged, const char *state, char **ret) {
        _cleanup_free_ char *u = compact(user), *g = compact(group), *p = privileged ? compact(privileged) : NULL,
                            *s = state ? compact(state) : NULL;
        assert_int_equal(record_store_join_line("alice", u, g, p, s, ret), 0);
}

static void test_joined_line(void **state) {
        _cleanup_free_ char *line = NULL;
        joined(USER, GROUP, PRIVILEGED, STATE, &line);
        expect_equivalent(line);
}

static void test_joined_line_without_privileged(void **state) {
        _cleanup_free_ char *line = NULL;
        joined(USER, GROUP, NULL, STATE, &line);
        expect_equivalent(line);
}

static void test_serialized_line(void **state) {
        _cleanup_free_ char *line = NULL;
        assert_int_equal(record_store_make_line("alice", USER, GROUP, PRIVILEGED, STATE, &line), 0);
        expect_equivalent(line);
}

/* As records.c writes them: "service" named in the user and the group already. A "service" or
 * "privileged" key further down (here in perMachine) is not the record's. */
static void test_records_naming_the_service(void **state) {
        _cleanup_free_ char *line = NULL;
        joined("{\"userName\":\"alice\",\"uid\":60001,\"service\":\"" SERVICE "\",\"memberOf\":[\"users\"],"
               "\"perMachine\":[{\"service\":\"x\",\"privileged\":{}}]}",
               "{\"groupName\":\"alice\",\"gid\":60001,\"service\":\"" SERVICE "\"}", PRIVILEGED, STATE, &line);
        expect_equivalent(line);
}

static void test_state_without_member_of(void **state) {
        _cleanup_free_ char *line = NULL;
        joined(USER, GROUP, PRIVILEGED, "{\"userName\":\"alice\",\"uid\":60001,\"attachedAt\":1}", &line);
        expect_equivalent(line);
}

/* The line as an attach writes it: the host's request through records.c and attach-state.c,
 * joined by record-line.c, as userdb.c's build_attach_plan() does. */
static void test_line_of_an_attach(void **state) {
        static const char *request =
                "{\"user\":{\"userName\":\"alice\",\"realName\":\"Al \\\"{x}\\\" [\\\\] \\u00e9 \\u2603 service privileged\","
                "\"shell\":\"/bin/bash\",\"privileged\":{\"hashedPassword\":[\"$y$j9T$s$h}{][\\\"\"],"
                "\"sshAuthorizedKeys\":[\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMNi5poGgfAWwdqhZ1KsqRSaNsg2YANNtC+ac2ioH0xj a@b\"]}},"
                "\"memberOf\":[\"users\",\"sudo\"],\"home\":{\"tag\":\"vmuser-60001\",\"fstype\":\"virtiofs\"}}";
        _cleanup_json_ json_object *args = NULL, *state_obj = NULL;
        _cleanup_(attach_request_freep) struct attach_request *req = NULL;
        _cleanup_(attach_files_done) struct attach_files files = {};
        _cleanup_free_ char *line = NULL;
        struct id_range range = { 60000, 60999 };
        struct verr e = {};

        assert_int_equal(json_parse_strict(request, strlen(request), &args), 0);
        if (records_parse_attach(args, &range, &req, &e) < 0)
                fail_msg("%s", e.text);
        assert_int_equal(records_build_files(req, 60001, 60001, &files), 0);
        assert_non_null(files.privileged);
        struct attach_state st = { .uid = 60001, .gid = 60001, .has_home = req->has_home, .home = req->home,
                                   .attached_usec = 1733371200000000 };
        strcpy(st.user_name, "alice");
        strcpy(st.home_directory, req->home_directory);
        assert_int_equal(attach_state_to_json(&st, files.member_of, &state_obj), 0);
        assert_int_equal(record_store_join_line("alice", files.user, files.group, files.privileged,
                                                json_to_compact(state_obj), &line),
                         0);
        expect_equivalent(line);
        /* Nothing of the privileged section outside it. */
        _cleanup_(user_index_entry_freep) struct user_entry *fast = NULL;
        assert_int_equal(user_index_entry_from_line(idx, line, "alice", 60001, 60001, &fast), 0);
        assert_non_null(strstr(fast->privileged_text, "AAAAC3Nza"));
        assert_null(strstr(fast->user_text, "AAAAC3Nza"));
        assert_null(strstr(fast->user_text, "$y$"));
        assert_null(strstr(fast->group_text, "$y$"));
        assert_null(strstr(fast->state_text, "$y$"));
        assert_int_equal(fast->n_member_of, 2);
}

/* Refused without parsing, and indexed by the parse: as user_index_refresh() would. */
static void expect_refused(const char *line) {
        _cleanup_(user_index_entry_freep) struct user_entry *fast = NULL, *parsed = NULL;
        assert_int_equal(user_index_entry_from_line(idx, line, "alice", 60001, 60001, &fast), -EPROTO);
        assert_null(fast);
        if (user_index_entry_parse(idx, line, AT_FDCWD, "alice", &parsed) < 0) {
                assert_true(user_index_refresh_attached(idx, line, AT_FDCWD, "alice", 60001, 60001) < 0);
                return;
        }
        assert_int_equal(user_index_refresh_attached(idx, line, AT_FDCWD, "alice", 60001, 60001), 1);
        expect_same_entry(user_index_find_by_name(idx, "alice"), parsed);
        assert_int_equal(user_index_refresh(idx, NULL, AT_FDCWD, "alice"), 0);
}

static void test_refused_lines(void **state) {
        _cleanup_free_ char *service = NULL, *group_service = NULL, *priv = NULL, *detaching = NULL,
                            *no_state = NULL, *trailing = NULL, *other = NULL;

        joined("{\"userName\":\"alice\",\"uid\":60001,\"service\":\"other\"}", GROUP, NULL, STATE, &service);
        expect_refused(service);
        joined(USER, "{\"groupName\":\"alice\",\"gid\":60001,\"service\":\"x\"}", NULL, STATE, &group_service);
        expect_refused(group_service);
        joined("{\"userName\":\"alice\",\"uid\":60001,\"privileged\":{\"hashedPassword\":[\"x\"]}}", GROUP, NULL,
               STATE, &priv);
        expect_refused(priv);
        joined(USER, GROUP, NULL, "{\"userName\":\"alice\",\"detaching\":true,\"memberOf\":[\"users\"]}", &detaching);
        expect_refused(detaching);
        /* A group with a privileged section (records.c never writes one): the parse drops it. */
        _cleanup_free_ char *group_priv = NULL;
        joined(USER, "{\"groupName\":\"alice\",\"gid\":60001,\"privileged\":{\"hashedPassword\":[\"x\"]}}", NULL,
               STATE, &group_priv);
        expect_refused(group_priv);
        /* Brackets closed by the other kind: not a line the agent writes, and not JSON. */
        expect_refused("{\"userName\":\"alice\",\"user\":{\"userName\":\"alice\",\"memberOf\":[\"a\"}],"
                       "\"group\":{\"groupName\":\"alice\",\"gid\":60001},\"state\":{\"userName\":\"alice\"}}");
        joined(USER, GROUP, PRIVILEGED, NULL, &no_state);
        expect_refused(no_state);
        joined(USER, GROUP, NULL, STATE, &trailing);
        trailing = realloc(trailing, strlen(trailing) + 8);
        strcat(trailing, "{}");
        expect_refused(trailing);
        /* Another user's line. */
        _cleanup_free_ char *u = compact(USER), *g = compact(GROUP), *s = compact(STATE);
        assert_int_equal(record_store_join_line("alicf", u, g, NULL, s, &other), 0);
        expect_refused(other);
}

static int setup(void **state) {
        return user_index_new(SERVICE, &idx);
}

static int teardown(void **state) {
        idx = user_index_free(idx);
        return 0;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_joined_line),
                cmocka_unit_test(test_joined_line_without_privileged),
                cmocka_unit_test(test_serialized_line),
                cmocka_unit_test(test_records_naming_the_service),
                cmocka_unit_test(test_state_without_member_of),
                cmocka_unit_test(test_line_of_an_attach),
                cmocka_unit_test(test_refused_lines),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
