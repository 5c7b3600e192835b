/* test-util.h: shared set-up for vmuser's integration tests.
 *
 * Integration tests run real binaries against a real /run: each test process first moves into
 * a private mount namespace, where /run is a fresh tmpfs and nsswitch.conf is known to consult
 * nss-systemd, so getpwnam() and friends see exactly what the agent wrote and nothing leaks to
 * the machine running the tests. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "macro.h"

/* Unshares the mount namespace, makes every mount private, mounts a tmpfs on /run (and creates
 * /run/userdb and /run/vmuser) and bind-mounts an nsswitch.conf with "files systemd". Must run
 * before any thread starts. Exits the process (status 77: skipped) when not root. */
void test_enter_private_run(void);

/* Path of a built binary, from the environment meson sets (VMUSER_AGENT etc.). Aborts if unset. */
const char *test_env_path(const char *var);

/* Runs argv (NULL-terminated), stdin from /dev/null unless input is given; collects stdout into
 * *ret_out (malloc'ed, may be NULL) and returns the exit status (or -errno). */
int test_run(char *const argv[], const char *input, char **ret_out);

/* Every test agent gets --cleanup-root=TEST_CLEANUP_ROOT (a detach's clean-up of the UID's
 * processes and files stays below it: see test_agent_argv_prefix()). */
#define TEST_CLEANUP_ROOT "/run/test-cleanup-root"

/* Starts the agent (VMUSER_AGENT) with args (NULL-terminated, after the program name), stdin
 * from in_fd and stdout to out_fd (-1: /dev/null); returns its pid or -errno. Every test that
 * starts an agent goes through here, so VMUSER_AGENT_WRAPPER ("valgrind -q --error-exitcode=99
 * ...", split on spaces) runs each of them under the checker; the checker's verdict is the
 * agent's exit status, which the caller must assert. */
pid_t test_agent_spawn(char *const args[], int in_fd, int out_fd);
/* The first words of an agent command line: VMUSER_AGENT_WRAPPER's words, VMUSER_AGENT, then
 * --cleanup-root=TEST_CLEANUP_ROOT (and --userdb=dropin with $VMUSER_TEST_AGENT_USERDB=dropin).
 * Fills argv (room for 19) and returns the count; *ret_words
 * is the storage of the words (free it once argv is no longer needed). For helpers that build
 * their own command line. */
size_t test_agent_argv_prefix(char *argv[], char **ret_words);

/* Starts the agent on --stdio with extra arguments; returns pipes to talk to it. */
struct test_agent {
        pid_t pid;
        int in_fd;  /* write requests here */
        int out_fd; /* read replies here */
};
int test_agent_start(struct test_agent *a, char *const extra_args[]);
/* Sends one request line and reads one reply line (up to 1 MiB), with a 10 s timeout. The
 * returned string is malloc'ed and has no trailing newline (and no leading 0xFF). */
int test_agent_call(struct test_agent *a, const char *request, char **ret_reply);
/* Closes its stdin and waits; returns the exit status (128+N for signal N; -ECHILD when already
 * stopped, so a group teardown can stop what a failed test left running). */
int test_agent_stop(struct test_agent *a);

/* For a suite that runs one agent for all its cases: its group set-up stores the agent in
 * *state, the group teardown is test_agent_group_teardown() and the last case
 * test_agent_case_exits_cleanly(). cmocka 1.1.5 prints GROUP TEARDOWN FAILED and still exits 0, so
 * the agent's exit status (a memory checker's verdict under VMUSER_AGENT_WRAPPER) is asserted in
 * that last case; the teardown only stops an agent a failed run left behind. */
int test_agent_group_teardown(void **state);
void test_agent_case_exits_cleanly(void **state);

/* The file type lstat() finds at the printf-formatted path (S_IFREG, S_IFLNK ...), or 0 when
 * nothing is there. */
mode_t test_path_type(const char *fmt, ...) _printf_(1, 2);
/* Fails the cmocka test when anything (a dangling symlink too) is at the printf-formatted path. */
void test_assert_absent(const char *fmt, ...) _printf_(1, 2);

/* Byte-for-byte snapshot of a directory tree (names, modes, owners, link targets, contents),
 * as a malloc'ed string, for "nothing changed" assertions. */
char *test_snapshot_dir(const char *path);

/* test_run() with the arguments listed (at most 15, NULL-terminated), stdout into *ret_out. */
int test_run_capture(char **ret_out, const char *arg0, ...);

/* Reads fd (a pipe from the agent) until needle shows up or nothing came for timeout_ms: all
 * that was read, malloc'ed (at most 1 MiB), or NULL. */
char *test_read_until(int fd, const char *needle, int timeout_ms);

/* Reads inotify events from fd until want of them came or none for quiet_ms; how many came. */
int test_wait_inotify(int fd, int want, int quiet_ms);
