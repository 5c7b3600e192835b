/* pam-test.h: helpers for the PAM suite (pam_vmuser.so through a real PAM stack).
 *
 * A test process enters a private mount namespace (test_enter_private_run()), then
 * pam_test_setup() puts a tmpfs on /dev there with a /dev/log socket whose messages a reader
 * process appends to a file, so tests can assert what the module logged. Users are attached by
 * the real vmuser-agent (--stdio). Sessions run in child processes ("holders") that open a
 * session through pam_start_confdir() with the service files generated in the build tree, and
 * close it or die when told: one process per session, as login, su and sshd do it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Call once, after test_enter_private_run(): syslog capture and a scratch directory
 * PAM_TEST_DIR. Exits (status 99) on failure. */
#define PAM_TEST_DIR "/run/pamtest"
void pam_test_setup(void);
void pam_test_teardown(void);
/* The same as cmocka group fixtures, for the suites that need nothing else. */
int pam_test_group_setup(void **state);
int pam_test_group_teardown(void **state);

/* Attaches (or re-attaches, with replace) a user through the agent; home_json is the "home" object or NULL,
 * home_dir the homeDirectory or NULL for the default. Fails the test on any error. */
void pam_test_attach(const char *name, uint32_t uid, const char *home_dir, const char *home_json);

/* All log lines so far (malloc'ed), after making sure every message sent before the call has
 * arrived. pam_test_log_contains() looks for a substring in the lines logged since the last
 * pam_test_log_mark(). */
char *pam_test_log(void);
void pam_test_log_mark(void);
bool pam_test_log_contains(const char *needle);
void pam_test_log_dump(void);
#define assert_logged(needle)                                                                               \
        do {                                                                                                \
                if (!pam_test_log_contains(needle)) {                                                       \
                        pam_test_log_dump();                                                                \
                        fail_msg("not logged: %s", needle);                                                 \
                }                                                                                           \
        } while (0)

/* How many mounts are stacked on path in this namespace; the options ("rw,nosuid,...") of the
 * topmost are copied to opts if opts is not NULL. */
int pam_test_mount_count(const char *path, char *opts, size_t opts_size);
/* Number of session entries (files other than "lock") in /run/vmuser/sessions/NAME, -1 when
 * the directory does not exist. */
int pam_test_session_entries(const char *user);
/* Fails the test unless exactly one mount is on path, and that one has nosuid and nodev. */
void pam_test_assert_home_mounted_once(const char *path);
/* A text snapshot (malloc'ed) of /run/vmuser, /run/userdb, /run/vmhost and the mount table, to
 * compare before and after something that must change nothing. */
char *pam_test_snapshot_state(void);

/* The service directory generated in the build tree (env PAM_VMUSER_CONFDIR). */
const char *pam_test_confdir(void);

/* Runs one PAM transaction in this process: pam_start_confdir(service, user), then
 * pam_open_session() if open, pam_close_session() if close. Returns the first failing PAM
 * code (or PAM_SUCCESS); messages from the module (conversation) are appended to msgs. */
int pam_test_run(const char *service, const char *user, bool open, bool close, char *msgs, size_t msgs_size);

/* Calls the module's pam_sm_open_session() (open) or pam_sm_close_session() directly, with a
 * handle from pam_start_confdir() for user and the module arguments in args (space-separated),
 * and returns its own PAM code: the stack would fold PAM_IGNORE into something else. Only for
 * users the module turns away before its NSS lookup (not attached): pam_modutil_getpwnam()
 * needs pam_set_data(), which refuses calls that do not come through the dispatcher. */
int pam_test_module_call(const char *user, bool open, const char *args, char *msgs, size_t msgs_size);

struct pam_test_holder {
        pid_t pid;
        int cmd_fd;
        int res_fd;
};
/* Forks a holder that opens a session and waits; returns the PAM code of the open (the holder
 * is gone again when the open failed). Messages go to msgs if not NULL. */
int pam_test_holder_open(struct pam_test_holder *h, const char *service, const char *user, char *msgs,
                         size_t msgs_size);
/* Tells the holder to close its session; returns the PAM code of the close and reaps it. */
int pam_test_holder_close(struct pam_test_holder *h);
/* SIGKILLs the holder (no close runs); reaps it only if reap. */
void pam_test_holder_kill(struct pam_test_holder *h, bool reap);
