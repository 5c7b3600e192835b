/* test-host-audit.c: the audit trail (issue 11 §8) as journald would receive it.
 *
 * This machine has no journald, so the test is one: in its private /run (host-test.h) it binds
 * a datagram socket at /run/systemd/journal/socket, where sd_journal_sendv() writes, and parses
 * the native-protocol datagrams that the real vmuser (host view) and the real vmuser-agent
 * (guest view) send: "KEY=value\n" fields, or "KEY\n" + 64-bit little-endian length + data +
 * "\n". Checked: one host entry per attach, replace, unchanged re-attach, refused attach,
 * unknown host user and detach, with the invoker (SUDO_USER), VM, user, host and guest UID and
 * the SHA256 fingerprints of the keys sent (as `ssh-keygen -l` prints them); the agent's
 * attached, replaced, refused (with the reason) and detached entries; and the one entry the agent
 * writes for the attaches of one read (a pipelined batch), before its replies. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "audit-log.h"
#include "host-test.h"
#include "macro.h"
#include "test-util.h"

#define KEY_A "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMNi5poGgfAWwdqhZ1KsqRSaNsg2YANNtC+ac2ioH0xj vmtaud@host"
#define KEY_A_FP "SHA256:kfhb3kmVXPDGKnP/ZoLN3Y5GkJBzFh2cKYrIDVOCEN0"
#define KEY_B "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAK9X+HKDnUuaVvTQesSrvnQ5zRCayyCQIbXMeKwpGHq vmtaud@laptop"
#define KEY_B_FP "SHA256:Vtqp+umsAiclJ09MCy/oiKWE2UipqEJ9f/co3KWltBA"
#define KEY_FILE HT_BASE "/vmtaud.pub"

#define MAX_FIELDS 64
#define MAX_ENTRIES 16

struct entry {
        size_t n;
        char *key[MAX_FIELDS];
        char *value[MAX_FIELDS];
};

static int journal_fd = -1;
static uid_t host_uid;
static struct entry entries[MAX_ENTRIES];
static size_t n_entries;

static void entries_clear(void) {
        for (size_t i = 0; i < n_entries; i++)
                for (size_t j = 0; j < entries[i].n; j++) {
                        free(entries[i].key[j]);
                        free(entries[i].value[j]);
                }
        n_entries = 0;
}

/* journald's native protocol, as sd_journal_sendv() writes it. */
static void parse_datagram(const char *p, size_t len, struct entry *e) {
        const char *end = p + len;

        *e = (struct entry) {};
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                assert_non_null(nl);
                const char *eq = memchr(p, '=', (size_t) (nl - p));
                assert_true(e->n < MAX_FIELDS);
                if (eq) {
                        e->key[e->n] = strndup(p, (size_t) (eq - p));
                        e->value[e->n] = strndup(eq + 1, (size_t) (nl - eq - 1));
                        p = nl + 1;
                } else {
                        uint64_t l = 0;
                        e->key[e->n] = strndup(p, (size_t) (nl - p));
                        assert_true(end - (nl + 1) >= 8);
                        for (int i = 7; i >= 0; i--)
                                l = l << 8 | (unsigned char) nl[1 + i];
                        assert_true((uint64_t) (end - (nl + 9)) >= l + 1);
                        e->value[e->n] = strndup(nl + 9, (size_t) l);
                        assert_int_equal(nl[9 + l], '\n');
                        p = nl + 10 + l;
                }
                e->n++;
        }
}

/* Reads every datagram that has arrived (the commands have finished: nothing is in flight). */
static void drain(void) {
        char buf[65536];

        entries_clear();
        for (;;) {
                ssize_t k = recv(journal_fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (k < 0) {
                        assert_int_equal(errno, EAGAIN);
                        return;
                }
                assert_true(n_entries < MAX_ENTRIES);
                parse_datagram(buf, (size_t) k, &entries[n_entries++]);
        }
}

static const char *field(const struct entry *e, const char *key, size_t nth) {
        for (size_t i = 0; i < e->n; i++)
                if (streq(e->key[i], key) && nth-- == 0)
                        return e->value[i];
        return NULL;
}

/* The one entry with this MESSAGE_ID (fails if there is none or more than one). */
static const struct entry *the_entry(const char *id) {
        const struct entry *found = NULL;
        for (size_t i = 0; i < n_entries; i++)
                if (streq_ptr(field(&entries[i], "MESSAGE_ID", 0), id)) {
                        if (found)
                                fail_msg("two entries with MESSAGE_ID %s", id);
                        found = &entries[i];
                }
        if (!found)
                fail_msg("no entry with MESSAGE_ID %s among %zu", id, n_entries);
        return found;
}

static void expect_field(const struct entry *e, const char *key, const char *value) {
        const char *v = field(e, key, 0);
        if (!streq_ptr(v, value))
                fail_msg("%s=%s, wanted %s (MESSAGE=%s)", key, v ? v : "(none)", value ? value : "(none)",
                         field(e, "MESSAGE", 0));
}

static int group_setup(void **state) {
        char *plain[] = { NULL };
        struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = AUDIT_JOURNAL_SOCKET };

        ht_setup();
        if (ht_useradd("vmtaud", plain) != 0 || ht_host_ids("vmtaud", &host_uid, NULL) < 0)
                return -1;
        for (const char *u = "vmtaub1\0vmtaub2\0vmtaub3\0"; *u; u += strlen(u) + 1)
                if (ht_useradd(u, plain) != 0)
                        return -1;
        ht_make_home("vmtaud", KEY_A "\n");
        _cleanup_close_ int fd = open(KEY_FILE, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, KEY_B "\n", strlen(KEY_B) + 1) < 0)
                return -1;

        if (mkdir("/run/systemd", 0755) < 0 || mkdir("/run/systemd/journal", 0755) < 0)
                return -1;
        journal_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (journal_fd < 0 || bind(journal_fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -1;
        /* sd_journal_sendv() sends up to its buffer; make room for a burst. */
        int size = 4 << 20;
        (void) setsockopt(journal_fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));

        setenv("SUDO_USER", "auditor", 1);
        unsetenv("SUDO_UID");
        return ht_agent_start("web01", NULL) > 0 ? 0 : -1;
}

static int group_teardown(void **state) {
        entries_clear();
        return 0;
}

static void run(int status, const char *first, ...) __attribute__((sentinel));
static void run(int status, const char *first, ...) {
        char *argv[16];
        size_t n = 0;
        struct ht_result r = {};
        va_list ap;

        va_start(ap, first);
        for (const char *a = first; a && n < 15; a = va_arg(ap, const char *))
                argv[n++] = (char *) a;
        va_end(ap);
        argv[n] = NULL;
        ht_vmuserv(&r, argv);
        ht_expect(&r, status, NULL, NULL);
        ht_result_done(&r);
        drain();
}

static char guest_uid[16], host_uid_text[16];

static void test_attach(void **state) {
        run(0, "attach", "--no-home", "--ssh-key", KEY_FILE, "web01", "vmtaud", NULL);
        assert_int_equal(n_entries, 2);

        const struct entry *a = the_entry(AUDIT_AGENT_ATTACHED);
        expect_field(a, "VMUSER_USER", "vmtaud");
        expect_field(a, "SYSLOG_IDENTIFIER", "vmuser-agent");
        expect_field(a, "VMUSER_KEY_COUNT", "2");
        expect_field(a, "VMUSER_USER_COUNT", NULL); /* an attach alone: the entry it always had */
        snprintf(guest_uid, sizeof(guest_uid), "%s", field(a, "VMUSER_UID", 0));

        const struct entry *h = the_entry(AUDIT_HOST_ATTACH);
        snprintf(host_uid_text, sizeof(host_uid_text), "%u", (unsigned) host_uid);
        expect_field(h, "SYSLOG_IDENTIFIER", "vmuser");
        expect_field(h, "PRIORITY", "6");
        expect_field(h, "VMUSER_ACTION", "attach");
        expect_field(h, "VMUSER_RESULT", "ok");
        expect_field(h, "VMUSER_VM", "web01");
        expect_field(h, "VMUSER_USER", "vmtaud");
        expect_field(h, "VMUSER_HOST_UID", host_uid_text);
        expect_field(h, "VMUSER_GUEST_UID", guest_uid);
        expect_field(h, "VMUSER_INVOKER_UID", "0");
        expect_field(h, "VMUSER_INVOKER_SUDO_USER", "auditor");
        expect_field(h, "VMUSER_KEY_COUNT", "2");
        expect_field(h, "VMUSER_ERROR", NULL);
        /* authorized_keys first, then the --ssh-key file */
        assert_string_equal(field(h, "VMUSER_KEY_FINGERPRINT", 0), KEY_A_FP);
        assert_string_equal(field(h, "VMUSER_KEY_FINGERPRINT", 1), KEY_B_FP);
        assert_null(field(h, "VMUSER_KEY_FINGERPRINT", 2));
}

static void test_reattach_unchanged(void **state) {
        run(0, "attach", "--no-home", "--ssh-key", KEY_FILE, "web01", "vmtaud", NULL);
        /* Nothing changed in the guest: the host still records who asked. */
        assert_int_equal(n_entries, 1);
        expect_field(the_entry(AUDIT_HOST_ATTACH), "VMUSER_RESULT", "unchanged");
}

static void test_refused(void **state) {
        /* A changed record without --replace: the agent refuses, both sides say so. */
        run(4, "attach", "--no-home", "--shell", "/bin/sh", "web01", "vmtaud", NULL);
        assert_int_equal(n_entries, 2);
        const struct entry *a = the_entry(AUDIT_AGENT_REFUSED);
        expect_field(a, "VMUSER_COMMAND", "vmuser-attach");
        expect_field(a, "VMUSER_USER", "vmtaud");
        assert_non_null(strstr(field(a, "VMUSER_ERROR", 0), "replace"));
        const struct entry *h = the_entry(AUDIT_HOST_ATTACH);
        expect_field(h, "VMUSER_RESULT", "refused");
        assert_non_null(strstr(field(h, "VMUSER_ERROR", 0), "replace"));
        expect_field(h, "PRIORITY", "4");
}

static void test_replace(void **state) {
        run(0, "attach", "--replace", "--no-home", "--shell", "/bin/sh", "web01", "vmtaud", NULL);
        assert_int_equal(n_entries, 2);
        expect_field(the_entry(AUDIT_AGENT_REPLACED), "VMUSER_UID", guest_uid);
        const struct entry *h = the_entry(AUDIT_HOST_REPLACE);
        expect_field(h, "VMUSER_ACTION", "replace");
        expect_field(h, "VMUSER_RESULT", "ok");
        expect_field(h, "VMUSER_KEY_COUNT", "1");
        assert_string_equal(field(h, "VMUSER_KEY_FINGERPRINT", 0), KEY_A_FP);
}

static void test_unknown_host_user(void **state) {
        run(7, "attach", "--no-home", "web01", "vmtnosuch", NULL);
        assert_int_equal(n_entries, 1);
        const struct entry *h = the_entry(AUDIT_HOST_ATTACH);
        expect_field(h, "VMUSER_USER", "vmtnosuch");
        expect_field(h, "VMUSER_RESULT", "host-user");
        assert_non_null(field(h, "VMUSER_ERROR", 0));
}

static void test_detach(void **state) {
        run(0, "detach", "web01", "vmtaud", NULL);
        assert_int_equal(n_entries, 2);
        expect_field(the_entry(AUDIT_AGENT_DETACHED), "VMUSER_UID", guest_uid);
        const struct entry *h = the_entry(AUDIT_HOST_DETACH);
        expect_field(h, "VMUSER_ACTION", "detach");
        expect_field(h, "VMUSER_RESULT", "ok");
        expect_field(h, "VMUSER_GUEST_UID", guest_uid);
        expect_field(h, "VMUSER_INVOKER_SUDO_USER", "auditor");

        /* Detaching again: refused by the agent, failed on the host. */
        run(4, "detach", "web01", "vmtaud", NULL);
        expect_field(the_entry(AUDIT_AGENT_REFUSED), "VMUSER_COMMAND", "vmuser-detach");
        expect_field(the_entry(AUDIT_HOST_DETACH), "VMUSER_RESULT", "refused");
}

/* Three users in one `vmuser attach`: pipelined, their requests reach the agent in one read and
 * share one entry (guest-agent/audit.h), written before the replies that report them. */
static void test_batch_shares_an_entry(void **state) {
        run(0, "attach", "--no-home", "web01", "vmtaub1", "vmtaub2", "vmtaub3", NULL);
        assert_int_equal(n_entries, 4);
        /* The agent's entry came first: the host logs each user once it has the reply. */
        const struct entry *a = &entries[0];
        assert_true(a == the_entry(AUDIT_AGENT_ATTACHED));
        expect_field(a, "VMUSER_USER_COUNT", "3");
        char want[32];
        for (size_t i = 0; i < 3; i++) {
                snprintf(want, sizeof(want), "vmtaub%zu", i + 1);
                assert_string_equal(field(a, "VMUSER_USER", i), want);
                assert_non_null(field(a, "VMUSER_UID", i));
                assert_non_null(field(a, "VMUSER_HOME", i));
                expect_field(&entries[i + 1], "MESSAGE_ID", AUDIT_HOST_ATTACH);
                expect_field(&entries[i + 1], "VMUSER_USER", want);
                /* MESSAGE gives each user with its uid (as the host saw it too) and its fields. */
                char pair[128];
                snprintf(pair, sizeof(pair), "%s as uid %s (gid %s, home ", want,
                         field(&entries[i + 1], "VMUSER_GUEST_UID", 0), field(&entries[i + 1], "VMUSER_GUEST_UID", 0));
                if (!strstr(field(a, "MESSAGE", 0), pair))
                        fail_msg("'%s' not in MESSAGE=%s", pair, field(a, "MESSAGE", 0));
        }
        assert_null(field(a, "VMUSER_USER", 3));
        assert_int_equal(strncmp(field(a, "MESSAGE", 0), "Attached 3 users: ", 18), 0);

        /* A detach is logged on its own, after them. */
        run(0, "detach", "web01", "vmtaub1", "vmtaub2", "vmtaub3", NULL);
        assert_int_equal(n_entries, 6);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_attach),
                cmocka_unit_test(test_reattach_unchanged),
                cmocka_unit_test(test_refused),
                cmocka_unit_test(test_replace),
                cmocka_unit_test(test_unknown_host_user),
                cmocka_unit_test(test_detach),
                cmocka_unit_test(test_batch_shares_an_entry),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
