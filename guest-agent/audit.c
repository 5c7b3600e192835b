/* audit.c: the agent's audit journal entries (see audit.h).
 *
 * An attach is queued in the batch below with the fields of its own entry; agent_audit_flush()
 * writes the batch as one entry (exactly the single entry when it holds one user). The
 * transport flushes before it writes replies, so no reply reports an attach whose entry is not
 * written; a detach or a refusal flushes first, so the journal keeps the requests' order. */
#include "audit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
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

/* The attaches not logged yet: the requests of one read are logged together (audit.h). The
 * agent handles requests in one thread, so one batch serves it. */
static struct {
        bool replaced;          /* the kind of every user in it */
        size_t n_users;
        char *fields[AUDIT_FIELDS_MAX];
        size_t n_fields;
        char *single;           /* "NAME as uid N, home H": the MESSAGE of an entry of one */
        char *users;            /* each user with all of its fields, "; "-separated */
} batch;

void agent_audit_flush(void) {
        char count[48];

        if (batch.n_users == 1)
                (void) audit_log(IDENT, batch.replaced ? AUDIT_AGENT_REPLACED : AUDIT_AGENT_ATTACHED, LOG_INFO,
                                 (const char *const *) batch.fields, "%s %s", batch.replaced ? "Replaced" : "Attached",
                                 batch.single);
        else if (batch.n_users > 1) {
                snprintf(count, sizeof(count), "VMUSER_USER_COUNT=%zu", batch.n_users);
                batch.fields[batch.n_fields] = count;
                (void) audit_log(IDENT, batch.replaced ? AUDIT_AGENT_REPLACED : AUDIT_AGENT_ATTACHED, LOG_INFO,
                                 (const char *const *) batch.fields, "%s %zu users: %s",
                                 batch.replaced ? "Replaced" : "Attached", batch.n_users, batch.users);
                batch.fields[batch.n_fields] = NULL;
        }
        free_fields(batch.fields, batch.n_fields);
        memset(batch.fields, 0, sizeof(batch.fields));
        free(batch.users);
        free(batch.single);
        batch.n_fields = batch.n_users = 0;
        batch.users = batch.single = NULL;
}

/* One user in the MESSAGE of an entry of several: the fields journald does not pair. */
static char *describe(const struct attach_request *req, const struct attach_result *res) {
        _cleanup_free_ char *groups = NULL;
        char *s = NULL;

        for (size_t i = 0; i < req->n_member_of; i++) {
                char *g = NULL;
                if (asprintf(&g, "%s%s%s", strempty(groups), groups ? " " : "", req->member_of[i]) < 0)
                        return NULL;
                free(groups);
                groups = g;
        }
        if (asprintf(&s, "%s as uid %u (gid %u, home %s%s%s, %zu SSH key%s, %s password%s%s)", res->user_name,
                     res->uid, res->gid, res->home_directory, req->has_home ? ", tag " : "",
                     req->has_home ? req->home.tag : "", req->n_ssh_keys, req->n_ssh_keys == 1 ? "" : "s",
                     req->n_hashed_passwords > 0 ? "a" : "no", groups ? ", groups " : "", strempty(groups)) < 0)
                return NULL;
        return s;
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

        /* Another kind, a full batch, or no room for this user's fields: log what is there first
         * (room is kept for VMUSER_USER_COUNT and the four fields audit_log() adds). */
        if (batch.n_users > 0 && (batch.replaced != replaced || batch.n_users >= AUDIT_BATCH_USERS ||
                                  batch.n_fields + n > AUDIT_FIELDS_MAX - 8))
                agent_audit_flush();
        _cleanup_free_ char *detail = describe(req, res);
        char *users, *single = NULL;
        /* (asprintf() leaves its pointer undefined when it fails) */
        if (!detail || asprintf(&users, "%s%s%s", strempty(batch.users), batch.users ? "; " : "", detail) < 0) {
                free_fields(f, n);
                return;
        }
        if (batch.n_users == 0 &&
            asprintf(&single, "%s as uid %u, home %s", res->user_name, res->uid, res->home_directory) < 0) {
                free(users);
                free_fields(f, n);
                return;
        }
        free(batch.users);
        batch.users = users;
        if (single)
                batch.single = single;
        batch.replaced = replaced;
        batch.n_users++;
        for (size_t i = 0; i < n; i++)
                batch.fields[batch.n_fields++] = f[i];
}

void agent_audit_detached(const char *user_name, uint32_t uid, const char *const *extra) {
        char *f[AUDIT_FIELDS_MAX] = {};
        const char *all[AUDIT_FIELDS_MAX];
        size_t n = 0, m = 0;

        agent_audit_flush(); /* the journal keeps the order of the requests */

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
        agent_audit_flush();
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
