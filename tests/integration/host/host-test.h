/* host-test.h: one machine, two views, for the host suite (the real vmuser against the real
 * vmuser-agent, or against fake agents).
 *
 * vmuser normally runs on the host and the agent in the guest, each with its own user database.
 * Here both run on the test machine, and a host user attached to the "guest" must not already
 * exist there (the agent refuses names that resolve in the guest). So the test builds two
 * mount-namespace views:
 *
 *   guest view  the test process itself, after test_enter_private_run(): a private tmpfs on
 *               /run, the machine's own /etc/passwd, shadow and group (untouched), and an
 *               nsswitch.conf with "files systemd". The agent runs here (--listen on a socket
 *               under /run), and the checks run here: getent, id, userdbctl see what a guest
 *               would see. The test users do not exist in this view's files.
 *
 *   host view   a nested mount namespace that every vmuser run enters (ht_run_host): the
 *               passwd, shadow, group and gshadow copies of a scratch "host root" are
 *               bind-mounted over their /etc names, and an empty tmpfs covers /run/userdb so vmuser sees
 *               neither the guest's drop-in records nor anything the agent writes. The rest of
 *               /run is shared, which is how vmuser reaches the agent's socket.
 *
 * Test users are created with `useradd --prefix HT_ROOT` (or, for the bulk test, by appending
 * lines), which writes only the scratch copies: the machine's user database is never modified.
 * (useradd on bind-mounted files fails: it replaces /etc/passwd with rename(), and a bind-mount
 * target cannot be renamed over. So the copies are edited in place under HT_ROOT, and each
 * fresh host view binds the current copies.)
 *
 * Everything lives under the private /run and disappears with the test's namespace. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define HT_BASE "/run/vmuser-test"
#define HT_ROOT HT_BASE "/hostroot" /* the host view's etc/ copies */
#define HT_HOMES HT_BASE "/homes"   /* host users' home directories */
#define HT_VM_DIR HT_BASE "/vms"    /* $VMUSER_VM_DIR for vmuser */

/* Enters the guest view and prepares the host root. Exits 77 when not root. */
void ht_setup(void);

/* useradd --prefix HT_ROOT -M -d HT_HOMES/NAME [extra...] NAME; returns the exit status. */
int ht_useradd(const char *name, char *const extra_args[]);
/* The host view's passwd entry of name: uid and gid, or -1 if absent. */
int ht_host_ids(const char *name, uid_t *ret_uid, gid_t *ret_gid);
/* Creates HT_HOMES/NAME owned by the user; with authorized_keys text, also .ssh/ (0700) and
 * .ssh/authorized_keys (0600), owned by the user. */
void ht_make_home(const char *name, const char *authorized_keys);
/* Appends n users PREFIX0..PREFIXn-1 (the number zero-padded to digits) with IDs from first_id,
 * each with a private group and the hash, straight to the host root's files (the bulk tests);
 * fills ret_names. */
#define HT_NAME_SIZE 16
void ht_append_users(char (*ret_names)[HT_NAME_SIZE], size_t n, const char *prefix, int digits, unsigned first_id,
                     const char *hash);
/* Appends a line (with its newline) to a file, e.g. a group to HT_ROOT "/etc/group". */
void ht_append_line(const char *file, const char *line);

/* A user or group record in the guest view that vmuser did not attach (a local account). */
void ht_guest_drop_in_user(const char *name, unsigned uid);
void ht_guest_drop_in_group(const char *name, unsigned gid);

struct ht_result {
        int status;   /* exit status, or 128+signal */
        char *out;    /* stdout */
        char *err;    /* stderr */
        double seconds;
        long maxrss_kib; /* peak RSS of the child (wait4's ru_maxrss) */
};
void ht_result_done(struct ht_result *r);

/* Runs argv to completion (killed after 600 s) in the host view / in the guest view. */
int ht_run_host(char *const argv[], struct ht_result *ret);
int ht_run_guest(char *const argv[], struct ht_result *ret);
/* Runs $VMUSER_TOOL with the NULL-terminated arguments in the host view; stderr is echoed to the
 * test's stderr, so the log shows what vmuser said. */
int ht_vmuser(struct ht_result *ret, const char *arg, ...) __attribute__((sentinel));
int ht_vmuserv(struct ht_result *ret, char *const args[]);

/* Starts the real agent on HT_VM_DIR/VM/agent.sock with extra arguments, and waits until it
 * accepts connections. */
pid_t ht_agent_start(const char *vm, char *const extra_args[]);
/* Starts the real agent (never under VMUSER_AGENT_WRAPPER: the apply test runs 45 of them) on
 * HT_VM_DIR/VM/agent.sock in a mount namespace of its own, with its own tmpfs on /run/userdb and
 * /run/vmuser: a guest with a user database of its own. */
pid_t ht_private_agent_start(const char *vm);
/* Starts tests/integration/host/fake-agent.py on HT_VM_DIR/VM/agent.sock in a mode. */
pid_t ht_fake_start(const char *vm, const char *mode, char *const extra_args[]);
/* Starts fake-agent.py --qmp in a mode on HT_VM_DIR/VM/qmp.sock (a hostile QEMU). */
pid_t ht_fake_qmp_start(const char *vm, const char *mode);
/* SIGTERM and wait; returns the exit status (128+N for signal N, -ECHILD for pid <= 0), which
 * for the real agent carries a memory checker's verdict: assert it in a test case, not in a
 * group teardown (cmocka 1.1.5 exits 0 when one fails). Whatever is still running when the test
 * exits is killed then (a failed test must not leave a listener holding the test's output pipes
 * open). */
int ht_stop(pid_t pid);

/* Counts lines; finds a line containing needle (NULL if none). */
size_t ht_count_lines(const char *s);
bool ht_contains(const char *haystack, const char *needle);

/* cmocka checks on a vmuser run: the exit status, and text that stdout and stderr must contain
 * (NULL: no check). A mismatch fails the test with both outputs. */
void ht_expect(const struct ht_result *r, int status, const char *in_out, const char *in_err);

/* Line i (0-based) of --json output, parsed (json_object_put() it); fails the test if there is
 * no such line or it is not JSON. */
json_object *ht_json_line(const char *out, size_t i);
/* The first line of --json output whose string member key is value (json_object_put() it), or
 * NULL; fails the test on a line that is not JSON or lacks key. */
json_object *ht_json_find(const char *out, const char *key, const char *value);
/* --json output of n lines, each with "result" equal to result (and, unless in_error is NULL,
 * an "error" containing in_error); fails the test otherwise. */
void ht_expect_results(const char *out, size_t n, const char *result, const char *in_error);
/* Member key of o, of the right type; fails the test otherwise. */
json_object *ht_jget(json_object *o, const char *key);
const char *ht_jstr(json_object *o, const char *key);
int64_t ht_jint(json_object *o, const char *key);
bool ht_jbool(json_object *o, const char *key);
