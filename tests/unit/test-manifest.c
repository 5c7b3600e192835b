/* test-manifest.c: the apply manifest parser (libvmuser/manifest.c): what it accepts, what it
 * refuses and how the refusal names key and value, its bounds, and how defaults merge. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "macro.h"
#include "manifest.h"

static int parse(const char *text, struct manifest **ret, struct verr *e) {
        return manifest_parse(text, strlen(text), ret, e);
}

static void test_accepts(void **state) {
        struct manifest *m = NULL;
        struct verr e = {};
        const char *text =
                "{\"defaults\": {\"homeTag\": \"vmuser-%u\", \"groups\": [\"users\"]},\n"
                " \"vms\": [{\"vm\": \"web*\", \"users\": [\"alice\", {\"group\": \"webdev\", \"readOnly\": true},\n"
                "           {\"user\": \"bob\", \"shell\": \"/bin/zsh\", \"groups\": [], \"password\": false}]},\n"
                "          {\"vm\": \"libvirt:db01\", \"users\": []}]}";

        assert_int_equal(parse(text, &m, &e), 0);
        assert_int_equal(m->n_vms, 2);
        assert_string_equal(m->vms[0].pattern, "web*");
        assert_true(manifest_pattern_is_glob(m->vms[0].pattern));
        assert_false(manifest_pattern_is_glob(m->vms[1].pattern));
        assert_int_equal(m->vms[0].n_users, 3);
        assert_int_equal(m->vms[1].n_users, 0);

        struct manifest_user *alice = &m->vms[0].users[0], *grp = &m->vms[0].users[1], *bob = &m->vms[0].users[2];
        assert_string_equal(alice->name, "alice");
        assert_false(alice->is_group);
        assert_string_equal(grp->name, "webdev");
        assert_true(grp->is_group);
        assert_int_equal(grp->options.read_only, 1);
        assert_int_equal(bob->options.shell, MANIFEST_SHELL_PATH);
        assert_string_equal(bob->options.shell_path, "/bin/zsh");
        assert_int_equal(bob->options.no_password, 1);

        /* defaults fill what an entry leaves unset, and only that */
        struct manifest_user_options o = alice->options;
        manifest_options_merge(&o, &m->defaults);
        assert_string_equal(o.home_tag, "vmuser-%u");
        assert_string_equal(o.groups[0], "users");
        assert_null(o.groups[1]);
        assert_int_equal(o.read_only, -1);
        o = bob->options;
        manifest_options_merge(&o, &m->defaults);
        assert_null(o.groups[0]); /* an explicit empty list stays empty */
        manifest_free(m);
}

static void test_refuses(void **state) {
        static const struct {
                const char *text;
                const char *error;
        } cases[] = {
                { "", "not one valid JSON value" },
                { "{\"vms\": [1]} x", "not one valid JSON value" },
                { "[]", "is a JSON array, not an object" },
                { "{}", "has no \"vms\" list" },
                { "{\"vms\": {}}", "vms: is a object, not an array" },
                { "{\"vms\": [], \"vmz\": 1}", "unknown top-level key 'vmz'" },
                { "{\"vms\": [{\"users\": []}]}", "vms[0]: needs \"vm\"" },
                { "{\"vms\": [{\"vm\": \"a\"}]}", "vms[0] (\"a\"): needs \"users\"" },
                { "{\"vms\": [{\"vm\": \"\", \"users\": []}]}", "vms[0].vm: is empty" },
                { "{\"vms\": [{\"vm\": 7, \"users\": []}]}", "vms[0].vm: is a int, not a string" },
                { "{\"vms\": [{\"vm\": \"a\", \"users\": [\"root!\"]}]}", "vms[0].users[0]: 'root!' is not a valid user name" },
                { "{\"vms\": [{\"vm\": \"a\", \"users\": [{\"shell\": \"yes\"}]}]}", "vms[0].users[0]: needs \"user\" or \"group\"" },
                { "{\"vms\": [{\"vm\": \"a\", \"users\": [{\"user\": \"a\", \"group\": \"b\"}]}]}", "has both \"user\" and \"group\"" },
                { "{\"vms\": [{\"vm\": \"a\", \"users\": [{\"user\": \"a\", \"uid\": 5}]}]}", "vms[0].users[0]: unknown key 'uid'" },
                { "{\"vms\": [{\"vm\": \"a\", \"users\": [{\"user\": \"a\", \"groups\": [\"Bad Group\"]}]}]}",
                  "vms[0].users[0].groups[0]: 'Bad Group' is not a valid group name" },
                { "{\"vms\": [{\"vm\": \"a\", \"users\": [{\"user\": \"a\", \"readOnly\": \"yes\"}]}]}",
                  "vms[0].users[0].readOnly: '\"yes\"' is not true or false" },
                { "{\"vms\": [{\"vm\": \"a\", \"users\": [{\"user\": \"a\", \"homeDir\": \"home/%u\"}]}]}",
                  "vms[0].users[0].homeDir: 'home/%u' is not an absolute path" },
                { "{\"vms\": [{\"vm\": \"a\", \"users\": [{\"user\": \"a\", \"homeTag\": \"t-%x\"}]}]}",
                  "vms[0].users[0].homeTag: 't-%x' has a '%' that is not %u or %%" },
                { "{\"vms\": [{\"vm\": \"a\", \"users\": [{\"user\": \"a\", \"homeFstype\": \"nfs\", \"homeTag\": \"t\"}]}]}",
                  "homeFstype: 'nfs' is not virtiofs, tmpfs or bind" },
                { "{\"vms\": [{\"vm\": \"a\", \"users\": [{\"user\": \"a\", \"home\": false, \"readOnly\": true}]}]}",
                  "\"home\": false exports and sends no home; it cannot be combined with readOnly" },
                { "{\"defaults\": {\"homeTag\": \"t-%u\"}, \"vms\": [{\"vm\": \"a\", \"users\": [{\"user\": \"a\", "
                  "\"homeSource\": \"/srv/%u\"}]}]}",
                  "" /* a homeSource of its own replaces the default tag: accepted */ },
                { "{\"defaults\": {\"user\": \"a\"}, \"vms\": []}", "defaults: unknown key 'user'" },
                { "{\"vms\": [{\"vm\": \"a\", \"users\": [{\"user\": \"a\", \"sshKeyFiles\": [\"k\"]}]}]}",
                  "sshKeyFiles[0]: 'k' is not a normalized absolute path" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct manifest *m = NULL;
                struct verr e = {};
                int r = parse(cases[i].text, &m, &e);
                if (!cases[i].error[0]) {
                        if (r < 0)
                                fail_msg("case %zu refused: %s", i, e.text);
                        manifest_free(m);
                        continue;
                }
                if (r >= 0)
                        fail_msg("case %zu accepted: %s", i, cases[i].text);
                if (!strstr(e.text, cases[i].error))
                        fail_msg("case %zu: '%s' lacks '%s'", i, e.text, cases[i].error);
                assert_null(m);
        }
}

static void test_bounds(void **state) {
        struct manifest *m = NULL;
        struct verr e = {};
        size_t n = MANIFEST_USERS_MAX + 1, len = 64 + n * 8;
        _cleanup_free_ char *text = malloc(len);
        size_t off = 0;

        /* one entry too many users */
        off += (size_t) snprintf(text + off, len - off, "{\"vms\": [{\"vm\": \"a\", \"users\": [");
        for (size_t i = 0; i < n; i++)
                off += (size_t) snprintf(text + off, len - off, "%s\"u%zu\"", i ? "," : "", i % 10);
        snprintf(text + off, len - off, "]}]}");
        assert_int_equal(parse(text, &m, &e), -E2BIG);
        assert_non_null(strstr(e.text, "vms[0].users: has 4097 entries, at most 4096"));

        /* a string over the limit */
        char *long_name = malloc(MANIFEST_STRING_MAX + 64);
        memset(long_name, 'a', MANIFEST_STRING_MAX + 1);
        long_name[MANIFEST_STRING_MAX + 1] = '\0';
        free(text);
        assert_true(asprintf(&text, "{\"vms\": [{\"vm\": \"%s\", \"users\": []}]}", long_name) > 0);
        free(long_name);
        e = (struct verr) {};
        assert_int_equal(parse(text, &m, &e), -E2BIG);
        assert_non_null(strstr(e.text, "vms[0].vm: 'aaaa"));

        /* nesting deeper than the JSON limit */
        free(text);
        text = malloc(200);
        off = (size_t) snprintf(text, 200, "{\"vms\": ");
        for (int i = 0; i < 40; i++)
                text[off++] = '[';
        for (int i = 0; i < 40; i++)
                text[off++] = ']';
        text[off++] = '}';
        text[off] = '\0';
        e = (struct verr) {};
        assert_int_equal(parse(text, &m, &e) < 0, true);

        /* the size limit is checked before parsing */
        e = (struct verr) {};
        assert_int_equal(manifest_parse("{}", MANIFEST_SIZE_MAX + 1, &m, &e), -E2BIG);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_accepts),
                cmocka_unit_test(test_refuses),
                cmocka_unit_test(test_bounds),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
