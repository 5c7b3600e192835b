/* test-agent-batch.c: the allocator's batch (userdb-batch.c) answers as the files would.
 *
 * With the record store (the default), what the allocator asks the file system about each
 * candidate UID (a drop-in N.user or N.group, reserved/N, quarantine/N) is listed once per batch
 * of attaches. These tests check that the listing is used (a drop-in nss-systemd refuses still
 * holds its UID; a stale quarantine mark of a clean UID is cleared when the UID goes) and that
 * the agent's own changes are seen at once within a batch (the host's reservedUids). Each runs
 * one agent in the test's private /run. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "macro.h"
#include "test-util.h"

static struct test_agent agent;

static unsigned attach_uid(const char *name, const char *extra) {
        char req[512];
        _cleanup_free_ char *reply = NULL;
        snprintf(req, sizeof(req), "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"%s\"}%s}}",
                 name, extra ? extra : "");
        assert_int_equal(test_agent_call(&agent, req, &reply), 0);
        const char *p = strstr(reply, "\"uid\":");
        if (!p)
                fail_msg("%s -> %s", req, reply);
        return (unsigned) strtoul(p + 6, NULL, 10);
}

static void write_file(const char *path, const char *text) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t) strlen(text));
}

static int setup(void **state) {
        assert_int_equal(system("rm -rf /run/userdb/* /run/vmuser/* /run/vmuser/.[!.]*"), 0);
        return test_agent_start(&agent, NULL);
}

static int teardown(void **state) {
        return test_agent_stop(&agent);
}

/* Reservations the host sends with an attach count for that very attach, although the batch's
 * listing was made by the attach before. */
static void test_own_reservation_seen(void **state) {
        char extra[128];
        unsigned a = attach_uid("ba", NULL);
        snprintf(extra, sizeof(extra), ",\"reservedUids\":[{\"uid\":%u,\"userName\":\"bz\"}]", a + 1);
        assert_int_equal(attach_uid("bb", extra), a + 2);
        assert_int_equal(attach_uid("bc", NULL), a + 3);
}

/* A drop-in nss-systemd refuses (not a record) and a quarantine mark of a clean UID, both there
 * before the batch starts: the first UID is skipped, the second handed out and its mark cleared. */
static void test_listing_used(void **state) {
        char path[64];
        unsigned a = attach_uid("ca", NULL);
        assert_int_equal(attach_uid("cdetach", NULL), a + 1);
        _cleanup_free_ char *reply = NULL;
        /* A detach ends the batch: the next attach lists the directories afresh. */
        assert_int_equal(test_agent_call(&agent, "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"cdetach\"}}",
                                         &reply), 0);
        snprintf(path, sizeof(path), "/run/userdb/%u.user", a + 2);
        write_file(path, "not a record\n");
        assert_int_equal(mkdir("/run/vmuser/quarantine", 0755) == 0 || errno == EEXIST, 1);
        snprintf(path, sizeof(path), "/run/vmuser/quarantine/%u", a + 3);
        write_file(path, "");
        assert_int_equal(attach_uid("cb", NULL), a + 3);
        assert_int_equal(access(path, F_OK), -1);
        assert_int_equal(attach_uid("cc", NULL), a + 4);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_own_reservation_seen, setup, teardown),
                cmocka_unit_test_setup_teardown(test_listing_used, setup, teardown),
        };
        test_enter_private_run();
        return cmocka_run_group_tests(tests, NULL, NULL);
}
