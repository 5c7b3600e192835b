/* test-host-hostile.c: a hostile guest (or QEMU) must not exhaust the host (issue 11, item 1).
 *
 * Same two views as the other host tests (host-test.h). Each case starts fake-agent.py in a
 * hostile mode (about 15 MiB of tiny values, deep nesting, a reply without end, a reply that
 * trickles in at one byte per second; the flood also arrives while vmuser waits for its sync
 * reply) and runs status, list, attach and detach against it with a short --timeout. Every run
 * must exit non-zero, end within the timeout (plus start-up slack), and stay below
 * RSS_LIMIT_KIB of peak RSS, measured by wait4() of the vmuser process (ru_maxrss). The hostile
 * QEMU cases put fake-agent.py --qmp on the QMP socket next to a well-behaved agent: status and
 * attach (whose home export talks to QMP) must report it and stay bounded the same way. The
 * figures are printed, one line per run ("RSS ..."). HT_ONLY=test_name runs one case.
 *
 * Without the limits of proto.c the flood cases take gigabytes (json-c builds ~260 bytes of
 * tree per byte of "{}," input) and fail here. */
#include <errno.h>
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

#include "host-test.h"
#include "macro.h"
#include "test-util.h"

#if defined(__SANITIZE_ADDRESS__)
/* ASan's shadow memory, redzones and allocator roughly triple what a run takes; its quarantine
 * of freed memory (256 MB by default) is kept small in main(): it is not vmuser's memory. */
#define RSS_LIMIT_KIB (3 * 64 * 1024L)
#else
#define RSS_LIMIT_KIB (64 * 1024L)
#endif

#define TIMEOUT "2"
#define TIMEOUT_SECONDS 2.0
/* Start-up, connecting, reading what the fake sends before the limit stops it, on a machine
 * busy with other suites (a run took 5+ s of wall time under load). The bound catches a
 * vmuser that waits on a hostile peer (the drip alone would take days), not a slow one: the
 * measured times are printed, not asserted closely. */
#define SLACK_SECONDS 15.0

#define USER "vmthost"

static int group_setup(void **state) {
        ht_setup();
        if (ht_useradd(USER, NULL) != 0)
                return -1;
        ht_make_home(USER, NULL);
        return 0;
}

static void run_case(const char *vm, const char *what, const char *verb, bool want_failure, const char *in_output) {
        struct ht_result r = {};
        char *args[8];
        size_t n = 0;

        args[n++] = (char *) verb;
        args[n++] = (char *) "--timeout";
        args[n++] = (char *) TIMEOUT;
        if (streq(verb, "attach") && !streq(what, "qmp-export"))
                args[n++] = (char *) "--no-home";
        args[n++] = (char *) vm;
        if (streq(verb, "attach") || streq(verb, "detach"))
                args[n++] = (char *) USER;
        args[n] = NULL;

        assert_int_equal(ht_vmuserv(&r, args), 0);
        printf("RSS %-14s %-7s %6ld KiB peak, %5.2f s, exit %d\n", what, verb, r.maxrss_kib, r.seconds, r.status);
        fflush(stdout);
        if (want_failure && r.status == 0)
                fail_msg("vmuser %s against %s succeeded:\n%s", verb, what, r.out);
        if (in_output && !ht_contains(r.err, in_output) && !ht_contains(r.out, in_output))
                fail_msg("vmuser %s against %s does not say '%s':\nstdout: %s\nstderr: %s", verb, what, in_output, r.out,
                         r.err);
        if (r.maxrss_kib >= RSS_LIMIT_KIB)
                fail_msg("vmuser %s against %s peaked at %ld KiB RSS (limit %ld KiB)", verb, what, r.maxrss_kib,
                         RSS_LIMIT_KIB);
        if (r.seconds > TIMEOUT_SECONDS + SLACK_SECONDS)
                fail_msg("vmuser %s against %s took %.2f s with --timeout " TIMEOUT, verb, what, r.seconds);
        ht_result_done(&r);
}

static const char *const verbs[] = { "status", "list", "attach", "detach" };

/* One hostile agent, all four commands; in_output: what each run must say (the limit). */
static void hostile_agent(const char *mode, const char *in_output) {
        pid_t fake = ht_fake_start(mode, mode, NULL);

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                run_case(mode, mode, verbs[i], true, in_output);
        ht_stop(fake);
}

static void test_huge_reply(void **state) {
        hostile_agent("hostile-huge", "(the limit for");
}

static void test_many_objects(void **state) {
        hostile_agent("hostile-objects", "(the limit for");
}

static void test_many_values(void **state) {
        hostile_agent("hostile-values", "(the limit for");
}

/* Within every limit, shaped for the most memory: this is the bound, not a rejection. list
 * parses it (and then refuses its entries); the other replies' smaller limits stop it. */
static void test_max_within_limits(void **state) {
        hostile_agent("hostile-max", NULL);
}

static void test_deep_nesting(void **state) {
        hostile_agent("hostile-deep", "nests deeper than 16 levels");
}

static void test_endless_reply(void **state) {
        hostile_agent("hostile-endless", "(the limit for");
}

static void test_drip(void **state) {
        struct ht_result r = {};

        hostile_agent("hostile-drip", "did not end within 2 s");

        /* A batch: the reply that trickled past its deadline ends the connection, so the second
         * user fails at once instead of after one more timeout. */
        pid_t fake = ht_fake_start("hostile-drip", "hostile-drip", NULL);
        assert_int_equal(ht_vmuser(&r, "detach", "--timeout", TIMEOUT, "hostile-drip", USER, "vmtother", NULL), 0);
        ht_expect(&r, 3, NULL, "'vmtother' from hostile-drip: the agent sent a reply that did not end in time earlier");
        ht_result_done(&r);
        ht_stop(fake);
}

/* The state of an export of USER's home (export-state.c), as an attach leaves it: detach then
 * asks QEMU over QMP whether the device is still there. */
static void plant_export(const char *vm) {
        char path[512];
        FILE *f;

        snprintf(path, sizeof(path), HT_VM_DIR "/%s/homes", vm);
        assert_true(mkdir(path, 0700) == 0 || errno == EEXIST);
        snprintf(path, sizeof(path), HT_VM_DIR "/%s/homes/" USER, vm);
        assert_true(mkdir(path, 0700) == 0 || errno == EEXIST);
        snprintf(path, sizeof(path), HT_VM_DIR "/%s/homes/" USER "/state.json", vm);
        f = fopen(path, "we");
        assert_non_null(f);
        fprintf(f, "{\"user\": \"" USER "\", \"tag\": \"vmuser-" USER "\", \"deviceId\": \"vmuser-fs-" USER "\", "
                   "\"chardevId\": \"vmuser-chr-" USER "\", \"bus\": \"rp1\", \"source\": \"" HT_HOMES "/" USER "\", "
                   "\"virtiofsd\": \"/usr/lib/qemu/virtiofsd\", \"phase\": \"exported\", \"readOnly\": false, "
                   "\"translateIds\": false, \"flavour\": \"c\", \"hostUid\": 1000, \"hostGid\": 1000, "
                   "\"guestUid\": 2222, \"guestGid\": 2222}\n");
        assert_int_equal(fclose(f), 0);
}

/* A hostile QEMU next to a good agent: status reports the QMP socket as not answering (and
 * still exits 0: QMP is not needed for what status checks), list never talks to QMP, attach
 * fails its home export, and detach fails to take away the export planted for it (QEMU must
 * say whether the device is gone). All stay bounded. */
static void hostile_qmp(const char *mode, const char *in_output) {
        char vm[64];
        snprintf(vm, sizeof(vm), "%s-vm", mode);
        pid_t agent = ht_fake_start(vm, "ok", NULL);
        pid_t qmp = ht_fake_qmp_start(vm, mode);

        run_case(vm, mode, "status", false, in_output);
        run_case(vm, mode, "list", false, NULL);
        run_case(vm, "qmp-export", "attach", true, in_output);
        plant_export(vm);
        run_case(vm, "qmp-unexport", "detach", true, in_output);
        ht_stop(qmp);
        ht_stop(agent);
}

static void test_qmp_objects(void **state) {
        hostile_qmp("qmp-objects", "(the limit for QMP)");
}

static void test_qmp_values(void **state) {
        hostile_qmp("qmp-values", "(the limit for QMP)");
}

static void test_qmp_deep(void **state) {
        hostile_qmp("qmp-deep", "nests deeper than 16 levels");
}

static void test_qmp_endless(void **state) {
        hostile_qmp("qmp-endless", "(the limit for QMP)");
}

static void test_qmp_drip(void **state) {
        hostile_qmp("qmp-drip", "did not send its QMP greeting");
}

static void test_qmp_events(void **state) {
        hostile_qmp("qmp-events", NULL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_huge_reply),   cmocka_unit_test(test_many_objects),
                cmocka_unit_test(test_many_values),  cmocka_unit_test(test_max_within_limits),
                cmocka_unit_test(test_deep_nesting),
                cmocka_unit_test(test_endless_reply), cmocka_unit_test(test_drip),
                cmocka_unit_test(test_qmp_objects),  cmocka_unit_test(test_qmp_values),
                cmocka_unit_test(test_qmp_deep),     cmocka_unit_test(test_qmp_endless),
                cmocka_unit_test(test_qmp_drip),     cmocka_unit_test(test_qmp_events),
        };
#if defined(__SANITIZE_ADDRESS__)
        {
                const char *o = getenv("ASAN_OPTIONS");
                char buf[1024];
                snprintf(buf, sizeof(buf), "%s%squarantine_size_mb=8", o ? o : "", o && *o ? ":" : "");
                setenv("ASAN_OPTIONS", buf, 1);
        }
#endif
        if (getenv("HT_ONLY"))
                cmocka_set_test_filter(getenv("HT_ONLY"));
        return cmocka_run_group_tests(tests, group_setup, NULL);
}
