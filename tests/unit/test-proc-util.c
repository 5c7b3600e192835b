/* test-proc-util.c: the /proc/PID/stat reader (libvmuser/proc-util.c): the parser on crafted
 * lines (a command name with spaces and parentheses, short and malformed lines), and the
 * reader on this process, a zombie child and a reaped one. */
#include <setjmp.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "proc-util.h"

/* Fields 3..21 after the command name, then the start time and two more fields. */
#define MIDDLE "1 1 1 0 -1 4194304 100 0 0 0 5 3 0 0 20 0 1 0"

static void test_parse(void **state) {
        char st = '?';
        uint64_t start = 0;

        assert_int_equal(proc_stat_parse("42 (sleep) S " MIDDLE " 123456 1000 200\n", &st, &start), 0);
        assert_int_equal(st, 'S');
        assert_int_equal(start, 123456);

        /* The command name may hold ") R 1 2" itself: only the last ')' counts. */
        assert_int_equal(proc_stat_parse("7 (a) R 1 2 (b) c) Z " MIDDLE " 99 1 2\n", &st, &start), 0);
        assert_int_equal(st, 'Z');
        assert_int_equal(start, 99);

        /* The start time as the last field, no newline; NULL out-params. */
        assert_int_equal(proc_stat_parse("1 (x) D " MIDDLE " 18446744073709551615", NULL, NULL), 0);
        assert_int_equal(proc_stat_parse("1 (x) D " MIDDLE " 18446744073709551615", NULL, &start), 0);
        assert_true(start == UINT64_MAX);
}

static void test_parse_refuses(void **state) {
        char st = '?';
        uint64_t start = 7;

        assert_int_equal(proc_stat_parse("", &st, &start), -EBADMSG);
        assert_int_equal(proc_stat_parse("42 sleep S 1", &st, &start), -EBADMSG);
        assert_int_equal(proc_stat_parse("42 (sleep)", &st, &start), -EBADMSG);
        assert_int_equal(proc_stat_parse("42 (sleep) ", &st, &start), -EBADMSG);
        assert_int_equal(proc_stat_parse("42 (sleep)S " MIDDLE " 1 2", &st, &start), -EBADMSG);
        /* Too few fields, a start time that is no number, overflows, or has a leading zero. */
        assert_int_equal(proc_stat_parse("42 (sleep) S 1 1 1", &st, &start), -EBADMSG);
        assert_int_equal(proc_stat_parse("42 (sleep) S " MIDDLE " x12 1", &st, &start), -EBADMSG);
        assert_int_equal(proc_stat_parse("42 (sleep) S " MIDDLE " 18446744073709551616 1", &st, &start), -EBADMSG);
        assert_int_equal(proc_stat_parse("42 (sleep) S " MIDDLE " 0123 1", &st, &start), -EBADMSG);
        assert_int_equal(proc_stat_parse("42 (sleep) S " MIDDLE " ", &st, &start), -EBADMSG);
        /* Out-params untouched on failure. */
        assert_int_equal(st, '?');
        assert_int_equal(start, 7);
}

static void test_read(void **state) {
        char st = '?', st2 = '?';
        uint64_t start = 0, start2 = 0;
        int status;

        /* This process: running, and a start time that stays the same. */
        assert_int_equal(proc_stat_read(getpid(), &st, &start), 0);
        assert_int_equal(st, 'R');
        assert_true(start > 0);
        assert_int_equal(proc_stat_read(getpid(), NULL, &start2), 0);
        assert_true(start == start2);

        /* A child that exited: a zombie until reaped, then no such process. */
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                _exit(0);
        assert_int_equal(waitid(P_PID, (id_t) pid, NULL, WEXITED | WNOWAIT), 0);
        assert_int_equal(proc_stat_read(pid, &st2, NULL), 0);
        assert_true(proc_state_is_dead(st2));
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_int_equal(proc_stat_read(pid, &st2, NULL), -ENOENT);

        assert_int_equal(proc_stat_read(0, &st2, NULL), -EINVAL);
        assert_int_equal(proc_stat_read(-1, &st2, NULL), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse),
                cmocka_unit_test(test_parse_refuses),
                cmocka_unit_test(test_read),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
