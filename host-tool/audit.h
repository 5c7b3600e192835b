/* audit.h: the host's audit trail: one journal entry per user per attach, attach --replace and
 * detach (whatever the result), so an admin can answer "who put whom into which VM, with which
 * keys, and when" with `journalctl MESSAGE_ID=...` (the IDs are in audit-log.h and vmuser(1)).
 *
 * Flow: attach.c and detach.c hand every per-user result to output.c's report, whose on_result
 * hook calls audit_host_result() with the fields the result carries (guest uid, host uid, export
 * tag) and, for an attach, the record that was sent (its SSH keys become SHA256 fingerprints,
 * as `ssh-keygen -l` prints them). The invoking user is who ran vmuser: the real UID, sudo's
 * SUDO_USER/SUDO_UID and the audit login UID. */
#pragma once

#include <json-c/json.h>
#include <sys/types.h>

/* Who ran the command, for a file-ownership decision: the real UID when it is not root, else
 * SUDO_UID, else the login UID; 0 when none of them names a user. */
uid_t audit_invoker_uid(void);

/* action: "attach", "replace" or "detach"; result: "ok", "unchanged" or an outcome name; reason:
 * the failure's sentence (NULL on success); fields: the report's JSON fields (may be NULL);
 * record: the user record sent to the guest (may be NULL). */
void audit_host_result(const char *action, const char *vm, const char *user, const char *result, const char *reason,
                       json_object *fields, json_object *record);
