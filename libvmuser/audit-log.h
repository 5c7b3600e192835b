/* audit-log.h: the audit trail: one structured journal entry per state change, with a
 * MESSAGE_ID of the project, so `journalctl MESSAGE_ID=...` answers "who put whom into which VM,
 * with which keys, and when" on the host, and what the agent and pam_vmuser did in the guest.
 *
 * Flow: a caller names the ID, the priority, the MESSAGE text and extra "KEY=value" fields; the
 * entry goes to journald over its native socket (sd_journal_sendv). Without journald (no socket)
 * audit_log() returns -ENOENT and writes nothing (pam_vmuser then logs the sentence through
 * syslog); the audit trail never blocks the change it describes.
 * The fields of each ID are listed in vmuser(1), vmuser-agent(8) and pam_vmuser(8). */
#pragma once

#include "macro.h"

/* Host, vmuser(1): one entry per user per attach / attach --replace / detach, whatever the result. */
#define AUDIT_HOST_ATTACH "42a96ccd3f274bbbb4effb4ba128923f"
#define AUDIT_HOST_REPLACE "11b0fe7971924ff284fef1b40e19d5a9"
#define AUDIT_HOST_DETACH "f1b78c62e3ed4841bbc09cb05a94ab13"
/* Guest, vmuser-agent(8): a user attached, replaced, detached; a vmuser-attach/-detach refused. */
#define AUDIT_AGENT_ATTACHED "573e25a0e86f4162b2285c63a39d7b64"
#define AUDIT_AGENT_REPLACED "37fc7146c48742c5bd9bc1b6eaa0c50a"
#define AUDIT_AGENT_DETACHED "83fac5821ef44bb093de1770919bed8f"
#define AUDIT_AGENT_REFUSED "61c50dd736dc41e38049fb3bdebc7cbe"
/* Guest, vmuser-agent(8): the home of a user whose sessions all ended without a close (killed)
 * was unmounted by the agent's reaper. */
#define AUDIT_AGENT_REAPED "d1a0a3d26f6e4d0c9b3e2a4f5c7e8b19"
/* Guest, pam_vmuser(8): a home mounted at a first login, unmounted at a last logout. */
#define AUDIT_PAM_MOUNTED "fb4a8626a6cb43e39078ccf76fef9284"
#define AUDIT_PAM_UNMOUNTED "78c02f14482c43bea26308f9cce4c748"

/* journald's native socket, where sd_journal_sendv() writes. */
#define AUDIT_JOURNAL_SOCKET "/run/systemd/journal/socket"

/* Most fields one entry carries (MESSAGE, MESSAGE_ID, PRIORITY, SYSLOG_IDENTIFIER included). */
#define AUDIT_FIELDS_MAX 128

/* Sends one entry. fields: NULL-terminated "KEY=value" strings (KEY upper case, may repeat), or
 * NULL. Returns 0; -ENOENT when there is no journald socket; else the -errno of sd_journal_sendv(). */
int audit_log(const char *identifier, const char *message_id, int priority, const char *const *fields,
              const char *format, ...) _printf_(5, 6);

/* A "KEY=value" field, malloc'ed, with the value's control characters replaced by '?' (NULL
 * value: empty). NULL on allocation failure. */
char *audit_field(const char *key, const char *format, ...) _printf_(2, 3);
