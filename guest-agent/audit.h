/* audit.h: the agent's audit journal entries (IDs in libvmuser/audit-log.h, fields in
 * vmuser-agent(8)): one per state change (a user attached, replaced, detached) and one per
 * refused vmuser-attach/vmuser-detach, with the reason. commands.c calls these right where the
 * change is committed or the refusal is replied; attaches handled together share an entry. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "records.h"
#include "userdb.h"
#include "verr.h"

/* A vmuser-attach changed something: attached (replaced: the user was attached before).
 * Queued, not written: the attaches handled together (the requests of one read, pipelined by
 * the host) share one entry of up to AUDIT_BATCH_USERS users, written by agent_audit_flush().
 * An entry of one user is as it always was; one of several has each user's fields once per
 * user, VMUSER_USER_COUNT, and a MESSAGE that gives each user with all of its fields (journald
 * does not keep which repeated field belongs to which user). */
#define AUDIT_BATCH_USERS 16
void agent_audit_attached(const struct attach_request *req, const struct attach_result *res, bool replaced);

/* Writes the queued attaches' entry. The transport calls it before it writes replies (and the
 * agent at exit): a reply never reports an attach that is not in the journal. */
void agent_audit_flush(void);

/* A user was detached. extra: NULL-terminated "VMUSER_...=value" fields to add (the clean-up
 * counts of the detach, say), or NULL. */
void agent_audit_detached(const char *user_name, uint32_t uid, const char *const *extra);

/* A vmuser-attach or vmuser-detach was refused with r and e (other verbs: nothing logged). */
void agent_audit_refused(const char *verb, json_object *args, int r, const struct verr *e);
