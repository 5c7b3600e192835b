/* test-records.c: vmuser-attach validation and record rendering (libvmuser/records.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "json-util.h"
#include "macro.h"
#include "records.h"

static const struct id_range range = { 60514, 60577 };

static int parse(const char *json, struct attach_request **ret, struct verr *e) {
        _cleanup_json_ json_object *obj = NULL;
        assert_int_equal(json_parse_strict(json, strlen(json), &obj), 0);
        return records_parse_attach(obj, &range, ret, e);
}

static void test_minimal(void **state) {
        _cleanup_(attach_request_freep) struct attach_request *req = NULL;
        struct verr e = {};
        assert_int_equal(parse("{\"user\":{\"userName\":\"alice\"}}", &req, &e), 0);
        assert_string_equal(req->user_name, "alice");
        assert_false(req->has_uid);
        assert_string_equal(req->home_directory, "/run/vmhost/home/alice");
        assert_false(req->has_home);
}

static void test_full_and_split(void **state) {
        _cleanup_(attach_request_freep) struct attach_request *req = NULL;
        _cleanup_(attach_files_done) struct attach_files f = {};
        struct verr e = {};
        assert_int_equal(parse("{\"user\":{\"userName\":\"alice\",\"realName\":\"Alice\",\"uid\":60520,"
                               "\"homeDirectory\":\"/home/alice\",\"shell\":\"/bin/zsh\",\"disposition\":\"regular\","
                               "\"memberOf\":[\"wheel\",\"audio\"],\"privileged\":{\"hashedPassword\":[\"$y$j9T$a$b\"],"
                               "\"sshAuthorizedKeys\":[\"ssh-ed25519 AAAA x\"]}},\"memberOf\":[\"audio\",\"video\"],"
                               "\"home\":{\"tag\":\"vmuser-alice\"}}",
                               &req, &e),
                         0);
        assert_true(req->has_uid);
        assert_int_equal(req->gid, 60520);
        assert_int_equal(req->n_member_of, 3); /* deduplicated and sorted */
        assert_string_equal(req->member_of[0], "audio");
        assert_string_equal(req->member_of[2], "wheel");
        assert_true(req->has_home);

        assert_int_equal(records_build_files(req, 60520, 60520, &f), 0);
        assert_null(strstr(f.user, "privileged"));
        assert_null(strstr(f.user, "$y$"));
        assert_non_null(strstr(f.user, "\"uid\":60520"));
        assert_non_null(f.privileged);
        assert_non_null(strstr(f.privileged, "{\"privileged\":{\"hashedPassword\":[\"$y$j9T$a$b\"]"));
        assert_non_null(strstr(f.group, "\"groupName\":\"alice\""));
        assert_int_equal(json_object_array_length(f.member_of), 3);
}

static void test_no_secret_no_privileged_file(void **state) {
        _cleanup_(attach_request_freep) struct attach_request *req = NULL;
        _cleanup_(attach_files_done) struct attach_files f = {};
        struct verr e = {};
        assert_int_equal(parse("{\"user\":{\"userName\":\"bob\",\"uid\":60515}}", &req, &e), 0);
        assert_int_equal(records_build_files(req, 60515, 60515, &f), 0);
        assert_null(f.privileged);
}

static void refused(const char *json, int expected, const char *needle) {
        _cleanup_(attach_request_freep) struct attach_request *req = NULL;
        struct verr e = {};
        int r = parse(json, &req, &e);
        if (r != expected || !strstr(e.text, needle))
                fail_msg("%s: got %d '%s', want %d containing '%s'", json, r, e.text, expected, needle);
}

static void test_refusals(void **state) {
        refused("{}", -EINVAL, "'user' is missing");
        refused("{\"user\":[]}", -EINVAL, "must be an object");
        refused("{\"user\":{}}", -EINVAL, "'userName' is missing");
        refused("{\"user\":{\"userName\":7}}", -EINVAL, "not a string");
        refused("{\"user\":{\"userName\":\"Alice\"}}", -EINVAL, "'Alice' is not valid");
        refused("{\"user\":{\"userName\":\"../x\"}}", -EINVAL, "not valid");
        refused("{\"user\":{\"userName\":\"root\"}}", -EPERM, "reserved");
        refused("{\"user\":{\"userName\":\"alice\",\"uid\":0}}", -EPERM, "reserved");
        refused("{\"user\":{\"userName\":\"alice\",\"uid\":1000}}", -ERANGE, "outside the agent's range 60514-60577");
        refused("{\"user\":{\"userName\":\"alice\",\"uid\":-5}}", -EINVAL, "must be an integer");
        refused("{\"user\":{\"userName\":\"alice\",\"uid\":\"60514\"}}", -EINVAL, "must be an integer");
        refused("{\"user\":{\"userName\":\"alice\",\"uid\":60514.5}}", -EINVAL, "must be an integer");
        refused("{\"user\":{\"userName\":\"alice\",\"homeDirectory\":\"/etc\"}}", -EINVAL, "home directory '/etc'");
        refused("{\"user\":{\"userName\":\"alice\",\"homeDirectory\":\"/home/../etc\"}}", -EINVAL, "home directory");
        refused("{\"user\":{\"userName\":\"alice\",\"homeDirectory\":\"/home/a/\"}}", -EINVAL, "home directory");
        refused("{\"user\":{\"userName\":\"alice\",\"shell\":\"bash\"}}", -EINVAL, "shell 'bash'");
        refused("{\"user\":{\"userName\":\"alice\",\"realName\":\"a:b\"}}", -EINVAL, "'realName'");
        refused("{\"user\":{\"userName\":\"alice\",\"realName\":\"a\\nb\"}}", -EINVAL, "'realName'");
        refused("{\"user\":{\"userName\":\"alice\",\"disposition\":\"system\"}}", -EINVAL, "disposition");
        refused("{\"user\":{\"userName\":\"alice\",\"secret\":{}}}", -EINVAL, "section 'secret'");
        refused("{\"user\":{\"userName\":\"alice\",\"perMachine\":[]}}", -EINVAL, "section 'perMachine'");
        refused("{\"user\":{\"userName\":\"alice\",\"favouriteColour\":1}}", -EINVAL, "unknown field 'favouriteColour'");
        refused("{\"user\":{\"userName\":\"alice\",\"privileged\":[]}}", -EINVAL, "must be an object");
        refused("{\"user\":{\"userName\":\"alice\",\"privileged\":{\"x\":1}}}", -EINVAL, "unknown field 'x'");
        refused("{\"user\":{\"userName\":\"alice\",\"privileged\":{\"hashedPassword\":\"x\"}}}", -EINVAL, "array");
        refused("{\"user\":{\"userName\":\"alice\",\"privileged\":{\"hashedPassword\":[\"a b\"]}}}", -EINVAL,
                "forbidden");
        refused("{\"user\":{\"userName\":\"alice\",\"privileged\":{\"sshAuthorizedKeys\":[\"a\\nb\"]}}}", -EINVAL,
                "forbidden");
        refused("{\"user\":{\"userName\":\"alice\"},\"privileged\":{}}", -EINVAL, "inside the user record");
        refused("{\"user\":{\"userName\":\"alice\"},\"group\":{\"groupName\":\"alice\",\"privileged\":{}}}",
                -EINVAL, "not accepted in a group record");
        refused("{\"user\":{\"userName\":\"alice\"},\"group\":{\"groupName\":\"bob\"}}", -EINVAL, "differs");
        refused("{\"user\":{\"userName\":\"alice\",\"uid\":60514},\"group\":{\"gid\":60515}}", -EINVAL, "differs");
        refused("{\"user\":{\"userName\":\"alice\"},\"memberOf\":[\"Wheel\"]}", -EINVAL, "'Wheel'");
        refused("{\"user\":{\"userName\":\"alice\"},\"memberOf\":\"wheel\"}", -EINVAL, "array");
        refused("{\"user\":{\"userName\":\"alice\"},\"replace\":\"yes\"}", -EINVAL, "boolean");
        refused("{\"user\":{\"userName\":\"alice\"},\"extra\":1}", -EINVAL, "unknown argument 'extra'");
        refused("{\"user\":{\"userName\":\"alice\"},\"home\":{\"tag\":\"a b\"}}", -EINVAL, "home tag");
        refused("{\"user\":{\"userName\":\"alice\"},\"home\":{\"tag\":\"t\",\"fstype\":\"nfs\"}}", -EINVAL, "nfs");
        refused("{\"user\":{\"userName\":\"alice\"},\"home\":{\"tag\":\"t\",\"options\":\"suid\"}}", -EINVAL,
                "'suid'");
}

static void test_member_of_cap(void **state) {
        char json[4096] = "{\"user\":{\"userName\":\"alice\"},\"memberOf\":[";
        for (int i = 0; i < RECORDS_MAX_MEMBER_OF + 1; i++)
                snprintf(json + strlen(json), sizeof(json) - strlen(json), "%s\"g%d\"", i ? "," : "", i);
        strcat(json, "]}");
        refused(json, -E2BIG, "more than 32 groups");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_minimal),
                cmocka_unit_test(test_full_and_split),
                cmocka_unit_test(test_no_secret_no_privileged_file),
                cmocka_unit_test(test_refusals),
                cmocka_unit_test(test_member_of_cap),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
