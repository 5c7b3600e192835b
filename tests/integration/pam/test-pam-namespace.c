/* test-pam-namespace.c: polyinstantiated /tmp for attached users with Linux-PAM's pam_namespace,
 * as pam_vmuser(8) offers it, and the detach that removes the user's instance directory.
 *
 * In the test's private mount namespace, a namespace.conf polyinstantiates ROOT/tmp (ROOT is the
 * agent's --cleanup-root of every test agent) with instances below ROOT/tmp/tmp-inst/, and is
 * bound over /etc/security/namespace.conf (namespace.d over an empty directory). The service
 * vmuser-test-namespace is the example stack: pam_succeed_if on the agent's UID range, then
 * pam_namespace, then pam_vmuser. Sessions run in holder processes (pam_namespace unshares the
 * mount namespace of the process that opens the session). */
#include <errno.h>
#include <fcntl.h>
#include <security/pam_appl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "macro.h"
#include "pam-test.h"
#include "test-util.h"

#define SERVICE "vmuser-test-namespace"
#define ROOT TEST_CLEANUP_ROOT
#define INST ROOT "/tmp/tmp-inst"

static char *detach(const char *name) {
        struct test_agent agent;
        char req[256], *reply = NULL;

        snprintf(req, sizeof(req), "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"%s\"}}", name);
        assert_int_equal(test_agent_start(&agent, NULL), 0);
        assert_int_equal(test_agent_call(&agent, req, &reply), 0);
        assert_int_equal(test_agent_stop(&agent), 0);
        return reply;
}

static void put_file(const char *path, uid_t uid) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(fchown(fd, uid, uid), 0);
        close(fd);
}

static void test_instances_and_detach(void **state) {
        struct pam_test_holder a, b;
        char msgs[1024];
        struct stat st;

        pam_test_attach("polly", 60560, NULL, NULL);
        pam_test_attach("quinn", 60561, NULL, NULL);
        if (pam_test_holder_open(&a, SERVICE, "polly", msgs, sizeof(msgs)) != PAM_SUCCESS) {
                pam_test_log_dump();
                fail_msg("open polly: %s", msgs);
        }
        assert_int_equal(pam_test_holder_open(&b, SERVICE, "quinn", msgs, sizeof(msgs)), PAM_SUCCESS);

        /* pam_namespace made one instance per user, owned and moded like the polydir (root,
         * 1777): the agent takes it by its name. */
        assert_int_equal(lstat(INST "/polly", &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_uid, 0);
        assert_int_equal(lstat(INST "/quinn", &st), 0);
        /* What the users leave in their /tmp (files of theirs and one root put there). */
        put_file(INST "/polly/notes", 60560);
        assert_int_equal(mkdir(INST "/polly/.X11-unix", 01777), 0);
        put_file(INST "/polly/.X11-unix/root-owned", 0);
        put_file(INST "/quinn/keep", 60561);

        /* A local account (outside the agent's UID range) keeps the shared directory. */
        struct pam_test_holder n;
        assert_int_equal(pam_test_holder_open(&n, SERVICE, "nobody", msgs, sizeof(msgs)), PAM_SUCCESS);
        assert_int_equal(lstat(INST "/nobody", &st), -1);
        assert_int_equal(pam_test_holder_close(&n), PAM_SUCCESS);

        assert_int_equal(pam_test_holder_close(&a), PAM_SUCCESS);
        _cleanup_free_ char *reply = detach("polly");
        /* One directory per place: the instance went with all it held. */
        if (!strstr(reply, "\"filesRemoved\":2,\"dirsRemoved\":2,\"keptCount\":0"))
                fail_msg("%s", reply);
        assert_int_equal(lstat(INST "/polly", &st), -1);
        assert_int_equal(lstat(INST "/quinn/keep", &st), 0);
        assert_int_equal(pam_test_holder_close(&b), PAM_SUCCESS);
        free(detach("quinn"));
        assert_int_equal(lstat(INST "/quinn", &st), -1);
}

static void setup_namespace_conf(void) {
        const char *conf = ROOT "/tmp " ROOT "/tmp/tmp-inst/ user root\n";
        int fd;

        if (mkdir(ROOT, 0755) < 0 || mkdir(ROOT "/tmp", 01777) < 0 || chmod(ROOT "/tmp", 01777) < 0 ||
            mkdir(INST, 0) < 0 || chmod(INST, 0) < 0 || mkdir(PAM_TEST_DIR "/namespace.d", 0755) < 0) {
                perror("set-up");
                exit(99);
        }
        fd = open(PAM_TEST_DIR "/namespace.conf", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, conf, strlen(conf)) != (ssize_t) strlen(conf) ||
            mount(PAM_TEST_DIR "/namespace.conf", "/etc/security/namespace.conf", NULL, MS_BIND, NULL) < 0 ||
            mount(PAM_TEST_DIR "/namespace.d", "/etc/security/namespace.d", NULL, MS_BIND, NULL) < 0) {
                perror("binding namespace.conf");
                exit(99);
        }
        close(fd);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_instances_and_detach),
        };

        test_enter_private_run();
        pam_test_setup();
        setup_namespace_conf();
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        pam_test_teardown();
        return r;
}
