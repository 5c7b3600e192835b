/* test-server-id.c: a claim of a file server's host ID cleans up after itself
 * (libvmuser/server-id.c).
 *
 * A claim whose claimer is gone and whose ID runs no process (a crash, a virtiofsd that died and
 * was never detached: what VM suite runs used to leave in /run/vmuser/server-ids) is taken over
 * by the next claim; one whose claimer lives, or whose ID a process runs as, is not. Claims go to
 * a scratch directory; "no process runs as the ID" is the host's, so this runs in the export
 * suite (under its lock, no export runs meanwhile). Needs root (a child becomes the ID). */
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
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "atomic-file.h"
#include "macro.h"
#include "proc-util.h"
#include "server-id.h"
#include "uid-cleanup.h"

#define ID0 SERVER_ID_BASE
#define ID1 (SERVER_ID_BASE + 1)

struct fixture {
        char dir[64];
        int dir_fd;
};

static int setup(void **state) {
        static struct fixture f;

        if (geteuid() != 0)
                skip();
        /* The IDs the claims below compete for must be free on this host. */
        assert_int_equal(server_id_is_usable(ID0), 1);
        assert_int_equal(server_id_is_usable(ID1), 1);
        assert_int_equal(uid_count_processes("/", ID0), 0);
        snprintf(f.dir, sizeof(f.dir), "/tmp/vmuser-server-ids-XXXXXX");
        assert_non_null(mkdtemp(f.dir));
        f.dir_fd = open(f.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(f.dir_fd >= 0);
        *state = &f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        char name[16];

        for (uid_t id = ID0; id <= ID1; id++) {
                snprintf(name, sizeof(name), "%u", (unsigned) id);
                (void) unlinkat(f->dir_fd, name, 0);
        }
        close(f->dir_fd);
        assert_int_equal(rmdir(f->dir), 0);
        return 0;
}

static void write_claim(int dir_fd, uid_t id, const char *text) {
        char name[16];

        snprintf(name, sizeof(name), "%u", (unsigned) id);
        assert_int_equal(atomic_write_at(dir_fd, name, text, strlen(text), 0600), 0);
}

static void read_claim(int dir_fd, uid_t id, char *buf, size_t size) {
        char name[16];

        snprintf(name, sizeof(name), "%u", (unsigned) id);
        assert_true(read_small_file_at(dir_fd, name, buf, size) >= 0);
}

/* A child that runs as uid (when not 0) and waits until *ret_release_fd is closed; returns once
 * it runs so. */
static pid_t spawn_waiting(uid_t uid, int *ret_release_fd) {
        int ready[2], release[2];
        char c;

        assert_int_equal(pipe(ready), 0);
        assert_int_equal(pipe(release), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                close(ready[0]);
                close(release[1]);
                if (uid != 0 && (setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0))
                        _exit(1);
                (void) !write(ready[1], "x", 1);
                _exit(read(release[0], &c, 1) < 0);
        }
        close(ready[1]);
        close(release[0]);
        assert_int_equal(read(ready[0], &c, 1), 1);
        close(ready[0]);
        *ret_release_fd = release[1];
        return pid;
}

/* "PID STARTTIME" of a process that existed and is gone now. */
static void dead_claimer(char *buf, size_t size) {
        uint64_t start = 0;
        int release, status;
        pid_t pid = spawn_waiting(0, &release);

        assert_int_equal(proc_stat_read(pid, NULL, &start), 0);
        close(release);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_int_equal(proc_is_alive(pid, start), 0);
        snprintf(buf, size, "%d %llu", (int) pid, (unsigned long long) start);
}

static void test_stale_claim_reused(void **state) {
        struct fixture *f = *state;
        char dead[64], text[256], expect[64];
        uint64_t start = 0;
        uid_t id = 0;

        /* Its claimer is gone and nothing runs as the ID: taken over, with us as the claimer. */
        dead_claimer(dead, sizeof(dead));
        snprintf(text, sizeof(text), "/srv/vm/homes/old\n%s\n", dead);
        write_claim(f->dir_fd, ID0, text);
        assert_int_equal(server_id_claim_at(f->dir_fd, "/srv/vm/homes/new", &id, NULL), 0);
        assert_int_equal(id, ID0);
        assert_int_equal(proc_stat_read(getpid(), NULL, &start), 0);
        snprintf(expect, sizeof(expect), "/srv/vm/homes/new\n%d %llu\n", (int) getpid(), (unsigned long long) start);
        read_claim(f->dir_fd, ID0, text, sizeof(text));
        assert_string_equal(text, expect);

        /* A claim from before claimers were recorded, of an ID nothing runs as: stale too. */
        write_claim(f->dir_fd, ID0, "/srv/vm/homes/old");
        assert_int_equal(server_id_claim_at(f->dir_fd, "/srv/vm/homes/new", &id, NULL), 0);
        assert_int_equal(id, ID0);
}

static void test_live_claimer_kept(void **state) {
        struct fixture *f = *state;
        char text[256], after[256];
        uint64_t start = 0;
        uid_t id = 0;

        /* Claimed a moment ago by a process that is still exporting (here: us). */
        assert_int_equal(proc_stat_read(getpid(), NULL, &start), 0);
        snprintf(text, sizeof(text), "/srv/vm/homes/busy\n%d %llu\n", (int) getpid(), (unsigned long long) start);
        write_claim(f->dir_fd, ID0, text);
        assert_int_equal(server_id_claim_at(f->dir_fd, "/srv/vm/homes/new", &id, NULL), 0);
        assert_int_equal(id, ID1);
        read_claim(f->dir_fd, ID0, after, sizeof(after));
        assert_string_equal(after, text);
}

static void test_running_server_kept(void **state) {
        struct fixture *f = *state;
        char dead[64], text[256], after[256];
        int release, status;
        uid_t id = 0;

        /* The claimer is gone (the vmuser that exported), but a file server runs as the ID. */
        pid_t server = spawn_waiting(ID0, &release);
        assert_int_equal(uid_count_processes("/", ID0), 1);

        dead_claimer(dead, sizeof(dead));
        snprintf(text, sizeof(text), "/srv/vm/homes/running\n%s\n", dead);
        write_claim(f->dir_fd, ID0, text);
        assert_int_equal(server_id_claim_at(f->dir_fd, "/srv/vm/homes/new", &id, NULL), 0);
        close(release);
        assert_int_equal(waitpid(server, &status, 0), server);
        assert_int_equal(id, ID1);
        read_claim(f->dir_fd, ID0, after, sizeof(after));
        assert_string_equal(after, text);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_stale_claim_reused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_live_claimer_kept, setup, teardown),
                cmocka_unit_test_setup_teardown(test_running_server_kept, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
