/* audit.c: the agent's audit journal entries (see audit.h). */
#include "audit.h"

#include <errno.h>
#include <string.h>
#include <syslog.h>

#include "audit-log.h"
#include "json-util.h"
#include "macro.h"

#define IDENT "vmuser-agent"

static void add(char **f, size_t *n, char *field) {
        if (field && *n < AUDIT_FIELDS_MAX - 8)
                f[(*n)++] = field;
        else
                free(field);
}

static void free_fields(char **f, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(f[i]);
}

void agent_audit_attached(const struct attach_request *req, const struct attach_result *res, bool replaced) {
        char *f[AUDIT_FIELDS_MAX] = {};
        size_t n = 0;

        add(f, &n, audit_field("VMUSER_USER", "%s", res->user_name));
        add(f, &n, audit_field("VMUSER_UID", "%u", res->uid));
        add(f, &n, audit_field("VMUSER_GID", "%u", res->gid));
        add(f, &n, audit_field("VMUSER_HOME", "%s", res->home_directory));
        if (req->has_home)
                add(f, &n, audit_field("VMUSER_HOME_TAG", "%s", req->home.tag));
        add(f, &n, audit_field("VMUSER_KEY_COUNT", "%zu", req->n_ssh_keys));
        add(f, &n, audit_field("VMUSER_PASSWORD", "%s", req->n_hashed_passwords > 0 ? "yes" : "no"));
        for (size_t i = 0; i < req->n_member_of; i++)
                add(f, &n, audit_field("VMUSER_GROUP", "%s", req->member_of[i]));
        (void) audit_log(IDENT, replaced ? AUDIT_AGENT_REPLACED : AUDIT_AGENT_ATTACHED, LOG_INFO,
                         (const char *const *) f, "%s %s as uid %u, home %s", replaced ? "Replaced" : "Attached",
                         res->user_name, res->uid, res->home_directory);
        free_fields(f, n);
}

void agent_audit_detached(const char *user_name, uint32_t uid, const char *const *extra) {
        char *f[AUDIT_FIELDS_MAX] = {};
        const char *all[AUDIT_FIELDS_MAX];
        size_t n = 0, m = 0;

        add(f, &n, audit_field("VMUSER_USER", "%s", user_name));
        add(f, &n, audit_field("VMUSER_UID", "%u", uid));
        for (size_t i = 0; i < n; i++)
                all[m++] = f[i];
        for (const char *const *x = extra; x && *x && m < AUDIT_FIELDS_MAX - 8; x++)
                all[m++] = *x;
        all[m] = NULL;
        (void) audit_log(IDENT, AUDIT_AGENT_DETACHED, LOG_INFO, all, "Detached %s (uid %u)", user_name, uid);
        free_fields(f, n);
}

void agent_audit_refused(const char *verb, json_object *args, int r, const struct verr *e) {
        char *f[AUDIT_FIELDS_MAX] = {};
        const char *user = NULL;
        json_object *u;
        size_t n = 0;

        if (!streq(verb, "vmuser-attach") && !streq(verb, "vmuser-detach"))
                return;
        /* The user named by the request, if it names one as a string. */
        if (args && json_get_string(args, "userName", &user) < 0) {
                user = NULL;
                if (json_object_object_get_ex(args, "user", &u) && json_get_string(u, "userName", &user) < 0)
                        user = NULL;
        }
        add(f, &n, audit_field("VMUSER_COMMAND", "%s", verb));
        if (user)
                add(f, &n, audit_field("VMUSER_USER", "%.64s", user));
        add(f, &n, audit_field("VMUSER_ERROR", "%s", verr_text(e, r)));
        add(f, &n, audit_field("ERRNO", "%d", -r));
        (void) audit_log(IDENT, AUDIT_AGENT_REFUSED, LOG_NOTICE, (const char *const *) f, "Refused %s%s%.64s: %s", verb,
                         user ? " of " : "", user ? user : "", verr_text(e, r));
        free_fields(f, n);
}
