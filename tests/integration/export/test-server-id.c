/* test-server-id.c: a claim of a file server's host ID cleans up after itself
 * (libvmuser/server-id.c).
 *
 * A claim whose claimer is gone and whose ID runs no process (a crash, a virtiofsd that died and
 * was never detached: what VM suite runs used to leave in /run/vmuser/server-ids) is taken over
 * by the next claim; one whose claimer lives, or whose ID a process runs as, is not; the old
 * export's release then leaves the new owner's claim alone. Claims go to
 * a scratch directory, on IDs no process of the host runs as (an export may be running); the
 * export suite's lock keeps new ones from starting meanwhile. Needs root (a child becomes the
 * ID). */
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

struct fixture {
        char dir[64];
        int dir_fd;
        uid_t id0, id1; /* the IDs the claims below compete for */
};

#define ID0 (f->id0)
#define ID1 (f->id1)

static void write_claim(int dir_fd, uid_t id, const char *text);

/* A live claim of ours ("PID STARTTIME" of this process). */
static void live_claim_text(const char *owner, char *buf, size_t size) {
        uint64_t start = 0;

        assert_int_equal(proc_stat_read(getpid(), NULL, &start), 0);
        snprintf(buf, size, "%s\n%d %llu\n", owner, (int) getpid(), (unsigned long long) start);
}

/* The first two free IDs of the range that no process runs as (an export of the host may use
 * the first ones); those before them get a live claim of ours in the scratch directory, so that
 * the claims below start at id0. */
static void pick_ids(struct fixture *f) {
        char text[256];
        uid_t id = SERVER_ID_BASE;

        live_claim_text("/srv/vm/homes/other", text, sizeof(text));
        for (;; id++) {
                assert_true(id - SERVER_ID_BASE < 64);
                if (server_id_is_usable(id) != 1)
                        continue;
                if (uid_count_processes("/", id) == 0 && server_id_is_usable(id + 1) == 1 &&
                    uid_count_processes("/", id + 1) == 0)
                        break;
                write_claim(f->dir_fd, id, text);
        }
        f->id0 = id;
        f->id1 = id + 1;
}

static int setup(void **state) {
        static struct fixture f;

        if (geteuid() != 0)
                skip();
        snprintf(f.dir, sizeof(f.dir), "/tmp/vmuser-server-ids-XXXXXX");
        assert_non_null(mkdtemp(f.dir));
        f.dir_fd = open(f.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(f.dir_fd >= 0);
        pick_ids(&f);
        *state = &f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        char name[16];

        for (uid_t id = SERVER_ID_BASE; id <= ID1; id++) {
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
        char dead[64], text[256], expect[256];
        uid_t id = 0;

        /* Its claimer is gone and nothing runs as the ID: taken over, with us as the claimer. */
        dead_claimer(dead, sizeof(dead));
        snprintf(text, sizeof(text), "/srv/vm/homes/old\n%s\n", dead);
        write_claim(f->dir_fd, ID0, text);
        assert_int_equal(server_id_claim_at(f->dir_fd, "/srv/vm/homes/new", &id, NULL), 0);
        assert_int_equal(id, ID0);
        live_claim_text("/srv/vm/homes/new", expect, sizeof(expect));
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
        uid_t id = 0;

        /* Claimed a moment ago by a process that is still exporting (here: us). */
        live_claim_text("/srv/vm/homes/busy", text, sizeof(text));
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

static void test_release_owned(void **state) {
        struct fixture *f = *state;
        char text[256], name[16];
        uid_t id = 0;

        snprintf(name, sizeof(name), "%u", (unsigned) ID0);
        assert_int_equal(server_id_claim_at(f->dir_fd, "/srv/vm/homes/old", &id, NULL), 0);
        assert_int_equal(id, ID0);
        /* Taken over as stale by another export: the old one's detach leaves it alone. */
        live_claim_text("/srv/vm/homes/new", text, sizeof(text));
        write_claim(f->dir_fd, ID0, text);
        assert_int_equal(server_id_release_at(f->dir_fd, ID0, "/srv/vm/homes/old"), 0);
        assert_int_equal(faccessat(f->dir_fd, name, F_OK, 0), 0);
        /* Its owner's release removes it; so does one that names no owner. */
        assert_int_equal(server_id_release_at(f->dir_fd, ID0, "/srv/vm/homes/new"), 0);
        assert_int_equal(faccessat(f->dir_fd, name, F_OK, 0), -1);
        write_claim(f->dir_fd, ID0, text);
        assert_int_equal(server_id_release_at(f->dir_fd, ID0, NULL), 0);
        assert_int_equal(faccessat(f->dir_fd, name, F_OK, 0), -1);
        assert_int_equal(server_id_release_at(f->dir_fd, ID0, NULL), 0);
        assert_int_equal(server_id_release_at(f->dir_fd, SERVER_ID_BASE - 1, NULL), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_stale_claim_reused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_live_claimer_kept, setup, teardown),
                cmocka_unit_test_setup_teardown(test_running_server_kept, setup, teardown),
                cmocka_unit_test_setup_teardown(test_release_owned, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
