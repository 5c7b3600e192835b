/* test-agent-enospc.c: nothing is half-written when the disk fills, and /run stays usable.
 *
 * ENOSPC: /run/userdb on a tiny tmpfs; an attach that does not fit fails with the reason and
 * leaves /run byte-for-byte as it was, and the agent goes on serving.
 * ENOSPC sweep: /run/userdb and /run/vmuser are made too small for each step of an attach in
 * turn (inodes and blocks); each failure is undone; a replace stopped by ENOSPC, and an attach
 * whose undo fails as well, keep their journal and the next start-up finishes them.
 * Reserve: a bulk attach stops while 5% of the blocks (or inodes) of /run are still free, but
 * within one user's need of that line, with the numbers in the reason, and the refused attach
 * writes nothing. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "macro.h"
#include "test-util.h"

#include "agent-faults-test.h"

static void test_enospc_leaves_nothing(void **state) {
        struct test_agent a;
        _cleanup_free_ char *r1 = NULL, *r2 = NULL, *r3 = NULL;

        /* Two pages for records: a group and a user fit, a privileged part does not. No reserve:
         * the write itself must fail, and be undone. */
        char *no_reserve[] = { (char *) "--userdb=dropin", (char *) "--run-reserve", (char *) "0", NULL };
        assert_int_equal(mount("tmpfs", "/run/userdb", "tmpfs", MS_NOSUID | MS_NODEV, "size=8k,mode=0755"), 0);
        assert_int_equal(test_agent_start(&a, no_reserve), 0);
        assert_int_equal(test_agent_call(&a, "{\"execute\":\"guest-ping\"}", &r3), 0);
        free(TAKE_PTR(r3));
        _cleanup_free_ char *userdb_before = test_snapshot_dir("/run/userdb");
        _cleanup_free_ char *vmuser_before = test_snapshot_dir("/run/vmuser");

        assert_int_equal(test_agent_call(&a, "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"big\","
                                             "\"privileged\":{\"hashedPassword\":[\"$y$j9T$s$h\"]}},\"memberOf\":[\"users\"]}}",
                                         &r1),
                         0);
        if (!strstr(r1, "writing the records of 'big' failed: No space left on device"))
                fail_msg("unexpected reply: %s", r1);
        _cleanup_free_ char *userdb_after = test_snapshot_dir("/run/userdb");
        _cleanup_free_ char *vmuser_after = test_snapshot_dir("/run/vmuser");
        assert_string_equal(userdb_before, userdb_after);
        assert_string_equal(vmuser_before, vmuser_after);
        assert_null(getpwnam("big"));

        /* Still serving, and what fits is installed. */
        assert_int_equal(test_agent_call(&a, "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"small\"}}}", &r2), 0);
        assert_non_null(strstr(r2, "\"changed\":true"));
        assert_non_null(getpwnam("small"));
        assert_int_equal(test_agent_call(&a, "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"small\"}}", &r3), 0);
        assert_int_equal(test_agent_stop(&a), 0);
        assert_int_equal(umount("/run/userdb"), 0);
}

#define BIG_ATTACH(replace)                                                                                    \
        "{\"execute\":\"vmuser-attach\",\"arguments\":{\"replace\":" replace ",\"user\":{\"userName\":\"big\","      \
        "\"privileged\":{\"hashedPassword\":[\"$y$j9T$s$h\"]}},\"memberOf\":[\"users\"]}}"

/* After a failed test: no small tmpfs may stay over /run/userdb or /run/vmuser for the next, ... */
static int unmount_small(void **state) {
        (void) umount2("/run/userdb", MNT_DETACH);
        (void) umount2("/run/vmuser", MNT_DETACH);
        /* ... nor users a failed test left attached (their state lives on /run itself). */
        (void) !system("rm -rf /run/userdb/* /run/userdb/.#* /run/vmuser/users/* /run/vmuser/pending/*");
        return 0;
}

/* Mounts a tmpfs with opts on dir, starts an agent without reserve: false (and nothing
 * mounted) when the agent cannot even start on so little. */
static bool start_on_small(const char *dir, const char *opts, struct test_agent *a) {
        char *no_reserve[] = { (char *) "--userdb=dropin", (char *) "--run-reserve", (char *) "0", NULL };
        _cleanup_free_ char *ping = NULL;
        assert_int_equal(mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, opts), 0);
        assert_int_equal(test_agent_start(a, no_reserve), 0);
        if (test_agent_call(a, "{\"execute\":\"guest-ping\"}", &ping) == 0)
                return true;
        (void) test_agent_stop(a);
        assert_int_equal(umount(dir), 0);
        return false;
}

/* ENOSPC at every step: /run/userdb (each record and link: inodes; each file: blocks) and
 * /run/vmuser (the journal and the state file) are made just too small for each step of an
 * attach in turn. Every failed attach says why and leaves /run as it was (the undo removed what
 * was written), and the agent goes on serving; the first size that fits attaches the user. */
static void test_enospc_sweep(void **state) {
        static const struct {
                const char *dir, *key, *unit, *what;
                int first, step, min_failures;
        } sweeps[] = {
                /* group, GID link, privileged, UID link, membership, UID link, user */
                { "/run/userdb", "nr_inodes", "", "inodes of /run/userdb", 1, 1, 7 },
                /* group, privileged, membership, user: one page each */
                { "/run/userdb", "size", "k", "blocks of /run/userdb", 4, 4, 3 },
                /* the lock file, the journal, then the state file */
                { "/run/vmuser", "nr_inodes", "", "inodes of /run/vmuser", 1, 1, 3 },
                { "/run/vmuser", "size", "k", "blocks of /run/vmuser", 4, 4, 1 },
        };

        for (size_t i = 0; i < ELEMENTSOF(sweeps); i++) {
                int failures = 0, fitted = -1;
                for (int n = sweeps[i].first; n < sweeps[i].first + 40 * sweeps[i].step && fitted < 0; n += sweeps[i].step) {
                        struct test_agent a;
                        char opts[64];
                        _cleanup_free_ char *reply = NULL, *ping = NULL, *r2 = NULL;
                        snprintf(opts, sizeof(opts), "%s=%d%s,mode=0755", sweeps[i].key, n, sweeps[i].unit);
                        if (!start_on_small(sweeps[i].dir, opts, &a))
                                continue;
                        _cleanup_free_ char *userdb_before = test_snapshot_dir("/run/userdb");
                        _cleanup_free_ char *vmuser_before = test_snapshot_dir("/run/vmuser");
                        assert_int_equal(test_agent_call(&a, BIG_ATTACH("false"), &reply), 0);
                        if (strstr(reply, "\"return\"")) {
                                fitted = n;
                                assert_non_null(getpwnam("big"));
                                assert_int_equal(check_consistent(), 1);
                                assert_int_equal(
                                        test_agent_call(&a, "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"big\"}}", &r2),
                                        0);
                                if (!strstr(r2, "\"return\""))
                                        fail_msg("%s: the detach after a fitting attach failed: %s", opts, r2);
                        } else {
                                /* "writing the records of 'big' failed: ..." or, on /run/vmuser, "could
                                 * not take the lock ...": the reason, either way. */
                                if (!strstr(reply, "No space left on device"))
                                        fail_msg("%s: unexpected reply: %s", opts, reply);
                                _cleanup_free_ char *userdb_after = test_snapshot_dir("/run/userdb");
                                _cleanup_free_ char *vmuser_after = test_snapshot_dir("/run/vmuser");
                                if (!streq(userdb_before, userdb_after) || !streq(vmuser_before, vmuser_after))
                                        fail_msg("%s on %s: the failed attach left changes:\n%s\n%s\nwas\n%s\n%s", opts,
                                                 sweeps[i].dir, userdb_after, vmuser_after, userdb_before, vmuser_before);
                                assert_null(getpwnam("big"));
                                assert_int_equal(test_agent_call(&a, "{\"execute\":\"guest-ping\"}", &ping), 0);
                                assert_string_equal(ping, "{\"return\":{}}");
                                failures++;
                        }
                        assert_int_equal(test_agent_stop(&a), 0);
                        assert_int_equal(umount(sweeps[i].dir), 0);
                }
                printf("%s: %d sizes failed cleanly with ENOSPC, %s=%d%s fits\n", sweeps[i].what, failures,
                       sweeps[i].key, fitted, sweeps[i].unit);
                if (fitted < 0 || failures < sweeps[i].min_failures)
                        fail_msg("%s: %d ENOSPC steps (want %d), fits at %d", sweeps[i].what, failures,
                                 sweeps[i].min_failures, fitted);
        }
}

/* A replace has no undo (the old files are already overwritten): when ENOSPC stops it at any
 * step, the journal stays, and the next agent start-up (with room again) finishes it. */
static void test_enospc_replace_finished_by_replay(void **state) {
        int journals = 0;
        for (int extra = 0; extra < 40; extra++) {
                struct test_agent a;
                struct statvfs sv;
                char opts[64];
                _cleanup_free_ char *r1 = NULL, *r2 = NULL, *r3 = NULL, *ping = NULL;

                assert_true(start_on_small("/run/userdb", "nr_inodes=100,mode=0755", &a));
                assert_int_equal(test_agent_call(&a, "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"big\"}}}", &r1),
                                 0);
                assert_non_null(strstr(r1, "\"return\""));
                /* Room for `extra` more entries, then the replace adds a privileged part and a
                 * membership. */
                assert_int_equal(statvfs("/run/userdb", &sv), 0);
                snprintf(opts, sizeof(opts), "remount,nr_inodes=%llu", (unsigned long long) (sv.f_files - sv.f_ffree) + extra);
                assert_int_equal(mount(NULL, "/run/userdb", NULL, MS_REMOUNT | MS_NOSUID | MS_NODEV, opts + 8), 0);
                assert_int_equal(test_agent_call(&a, BIG_ATTACH("true"), &r2), 0);
                bool done = strstr(r2, "\"return\"") != NULL;
                if (!done) {
                        if (!strstr(r2, "writing the records of 'big' failed: No space left on device"))
                                fail_msg("extra=%d: unexpected reply: %s", extra, r2);
                        assert_int_equal(count_entries("/run/vmuser/pending", ".json"), 1);
                        journals++;
                }
                assert_int_equal(test_agent_stop(&a), 0);

                /* Room again: a fresh agent replays the journal to the new record. */
                assert_int_equal(mount(NULL, "/run/userdb", NULL, MS_REMOUNT | MS_NOSUID | MS_NODEV, "nr_inodes=100"), 0);
                assert_int_equal(test_agent_start(&a, dropin), 0);
                assert_int_equal(test_agent_call(&a, "{\"execute\":\"guest-ping\"}", &ping), 0);
                assert_int_equal(check_consistent(), 1);
                assert_true(access("/run/userdb/big:users.membership", F_OK) == 0);
                assert_int_equal(test_agent_call(&a, "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"big\"}}", &r3), 0);
                assert_int_equal(test_agent_stop(&a), 0);
                assert_int_equal(umount("/run/userdb"), 0);
                if (done)
                        break;
        }
        printf("replace stopped by ENOSPC at %d steps, each finished by the replay\n", journals);
        assert_true(journals >= 2);
}

/* A failing undo: a new user's attach stops on ENOSPC after some of its entries are written, and
 * removing them again fails too (an LD_PRELOAD shim, fail-unlink.c, makes unlinkat() of
 * big.group fail with EIO). The journal must stay, the agent go on serving, and the next
 * start-up (with room again) finish the plan: one whole user, nothing orphaned. */
static void test_enospc_failing_undo(void **state) {
        char shim[4096];
        int journals = 0;
        snprintf(shim, sizeof(shim), "%s/tests/integration/agent/libfail-unlink.so", test_env_path("VMUSER_BUILD_ROOT"));
        assert_int_equal(access(shim, R_OK), 0);

        for (int n = 2; n <= 7; n++) {
                struct test_agent a;
                char opts[64];
                _cleanup_free_ char *reply = NULL, *ping = NULL, *r2 = NULL;
                _cleanup_free_ char *asan = NULL;
                const char *old_asan = getenv("ASAN_OPTIONS");

                /* Only this agent gets the shim (an ASan agent must accept a library before its
                 * runtime). */
                assert_true(asprintf(&asan, "%s%sverify_asan_link_order=0", old_asan ? old_asan : "",
                                     old_asan ? ":" : "") > 0);
                setenv("LD_PRELOAD", shim, 1);
                setenv("VMUSER_TEST_FAIL_UNLINK", "big.group", 1);
                setenv("ASAN_OPTIONS", asan, 1);
                snprintf(opts, sizeof(opts), "nr_inodes=%d,mode=0755", n);
                bool started = start_on_small("/run/userdb", opts, &a);
                unsetenv("LD_PRELOAD");
                unsetenv("VMUSER_TEST_FAIL_UNLINK");
                if (old_asan)
                        setenv("ASAN_OPTIONS", old_asan, 1);
                else
                        unsetenv("ASAN_OPTIONS");
                assert_true(started);

                assert_int_equal(test_agent_call(&a, BIG_ATTACH("false"), &reply), 0);
                if (!strstr(reply, "writing the records of 'big' failed: No space left on device"))
                        fail_msg("%s: unexpected reply: %s", opts, reply);
                assert_int_equal(count_entries("/run/vmuser/pending", ".json"), 1);
                journals++;
                assert_int_equal(test_agent_call(&a, "{\"execute\":\"guest-ping\"}", &ping), 0);
                assert_string_equal(ping, "{\"return\":{}}");
                assert_int_equal(test_agent_stop(&a), 0);

                assert_int_equal(mount(NULL, "/run/userdb", NULL, MS_REMOUNT | MS_NOSUID | MS_NODEV, "nr_inodes=100"), 0);
                _cleanup_free_ char *ping2 = NULL;
                assert_int_equal(test_agent_start(&a, dropin), 0);
                assert_int_equal(test_agent_call(&a, "{\"execute\":\"guest-ping\"}", &ping2), 0);
                assert_int_equal(check_consistent(), 1);
                assert_non_null(getpwnam("big"));
                assert_int_equal(test_agent_call(&a, "{\"execute\":\"vmuser-detach\",\"arguments\":{\"userName\":\"big\"}}", &r2), 0);
                assert_non_null(strstr(r2, "\"return\""));
                assert_int_equal(check_consistent(), 0);
                assert_int_equal(test_agent_stop(&a), 0);
                assert_int_equal(umount("/run/userdb"), 0);
        }
        printf("undo failed after ENOSPC at %d steps: journal kept, finished by the next start-up\n", journals);
}

/* Attaches v0, v1, ... until the agent refuses one; returns how many it took. The refused
 * reply goes to *ret_refusal. */
static int attach_until_refused(struct test_agent *a, int max, char **ret_refusal) {
        for (int u = 0; u < max; u++) {
                _cleanup_free_ char *reply = NULL;
                char req[256];
                snprintf(req, sizeof(req),
                         "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"v%d\"}}}", u);
                assert_int_equal(test_agent_call(a, req, &reply), 0);
                if (!strstr(reply, "\"return\"")) {
                        *ret_refusal = TAKE_PTR(reply);
                        return u;
                }
        }
        fail_msg("%d attaches, none refused", max);
        return -1;
}

static void detach_all(struct test_agent *a, int n) {
        detach_numbered(a, "v", n, true);
}

/* Mounts a tmpfs with opts on /run/userdb, starts an agent there and attaches users until it
 * refuses: the refusal (to *ret_refusal) must say want. Returns how many were attached (some). */
static int fill_userdb(struct test_agent *a, const char *opts, const char *want, char **ret_refusal) {
        assert_int_equal(mount("tmpfs", "/run/userdb", "tmpfs", MS_NOSUID | MS_NODEV, opts), 0);
        assert_int_equal(test_agent_start(a, dropin), 0);
        int n = attach_until_refused(a, 200, ret_refusal);
        printf("%s: %d users attached, then: %s\n", opts, n, *ret_refusal);
        if (!strstr(*ret_refusal, want))
                fail_msg("unexpected refusal: %s", *ret_refusal);
        assert_true(n > 0);
        return n;
}

/* At least 5% of total is still free, and not much more: the refused user (per_user units)
 * would have crossed the 5% line. */
static void expect_at_reserve_line(unsigned long long avail, unsigned long long total, unsigned per_user,
                                   const char *units) {
        assert_true(avail >= total * 5 / 100);
        if (avail >= total * 5 / 100 + per_user)
                fail_msg("refused with %llu of %llu %s free: more than one user's %u above the 5%% line", avail, total,
                         units, per_user);
}

/* Detaches the n users, stops the agent (cleanly) and unmounts the small /run/userdb. */
static void empty_userdb(struct test_agent *a, int n) {
        detach_all(a, n);
        assert_int_equal(test_agent_stop(a), 0);
        assert_int_equal(umount("/run/userdb"), 0);
}

/* The agent keeps 5% of /run's blocks and inodes free by default: a bulk attach must not fill
 * the file system utmp, logind and every service also need. */
static void test_reserve_keeps_run_usable(void **state) {
        struct test_agent a;
        struct statvfs sv;
        _cleanup_free_ char *refusal = NULL, *ping = NULL;
        int n;

        /* Blocks: 256 KiB, 64 pages; each user takes two (user and group records). */
        n = fill_userdb(&a, "size=256k,mode=0755", "the guest's '/run/userdb' is nearly full (", &refusal);
        if (!strstr(refusal, "attaching 'v") || !strstr(refusal, "less than the 5% the agent keeps free"))
                fail_msg("unexpected refusal: %s", refusal);
        assert_int_equal(statvfs("/run/userdb", &sv), 0);
        expect_at_reserve_line(sv.f_bavail, sv.f_blocks, 2, "blocks");
        /* The refused attach wrote nothing: asking again changes nothing either. */
        _cleanup_free_ char *before = test_snapshot_dir("/run/userdb"), *again = NULL;
        char req[256];
        snprintf(req, sizeof(req), "{\"execute\":\"vmuser-attach\",\"arguments\":{\"user\":{\"userName\":\"v%d\"}}}", n);
        assert_int_equal(test_agent_call(&a, req, &again), 0);
        assert_non_null(strstr(again, "is nearly full"));
        _cleanup_free_ char *after = test_snapshot_dir("/run/userdb");
        assert_string_equal(before, after);
        assert_int_equal(test_agent_call(&a, "{\"execute\":\"guest-ping\"}", &ping), 0);
        assert_string_equal(ping, "{\"return\":{}}");
        empty_userdb(&a, n);

        /* Inodes: 60 on a roomy tmpfs; each user takes four (two records, two ID links). */
        free(TAKE_PTR(refusal));
        n = fill_userdb(&a, "size=4m,nr_inodes=60,mode=0755", "the guest's '/run/userdb' is nearly out of inodes (",
                        &refusal);
        assert_int_equal(statvfs("/run/userdb", &sv), 0);
        expect_at_reserve_line(sv.f_favail, sv.f_files, 4, "inodes");
        empty_userdb(&a, n);
}

int main(void) {
        test_enter_private_run();
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_enospc_leaves_nothing, unmount_small),
                cmocka_unit_test_teardown(test_enospc_sweep, unmount_small),
                cmocka_unit_test_teardown(test_enospc_replace_finished_by_replay, unmount_small),
                cmocka_unit_test_teardown(test_enospc_failing_undo, unmount_small),
                cmocka_unit_test_teardown(test_reserve_keeps_run_usable, unmount_small),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
