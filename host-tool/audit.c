/* audit.c: the host's audit journal entries (see audit.h). */
#include "audit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "audit-log.h"
#include "home-export.h"
#include "json-util.h"
#include "macro.h"
#include "ssh-key.h"

static int parse_uid(const char *s, uid_t *ret) {
        char *end;
        unsigned long v;

        if (!s || !*s)
                return -EINVAL;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || *end || *s == '-' || v >= (uid_t) -1)
                return -EINVAL;
        *ret = (uid_t) v;
        return 0;
}

static int read_loginuid_file(uid_t *ret) {
        char buf[32] = "";
        _cleanup_fclose_ FILE *f = fopen("/proc/self/loginuid", "re");

        if (!f || !fgets(buf, sizeof(buf), f))
                return -ENOENT;
        buf[strcspn(buf, "\n")] = '\0';
        return parse_uid(buf, ret);
}

/* Read once per process: it does not change under us, and a batch writes an entry per user. */
static int read_loginuid(uid_t *ret) {
        static int cached_r = 1;
        static uid_t cached;

        if (cached_r > 0)
                cached_r = read_loginuid_file(&cached);
        *ret = cached;
        return cached_r;
}

uid_t audit_invoker_uid(void) {
        uid_t uid;

        if (getuid() != 0)
                return getuid();
        if (parse_uid(getenv("SUDO_UID"), &uid) == 0)
                return uid;
        if (read_loginuid(&uid) == 0)
                return uid;
        return 0;
}

static const char *message_id(const char *action) {
        return streq(action, "detach") ? AUDIT_HOST_DETACH : streq(action, "replace") ? AUDIT_HOST_REPLACE :
                                                                                        AUDIT_HOST_ATTACH;
}

/* Appends a field; allocation failures just leave it out (the entry is still worth having). */
static void add(char **fields, size_t *n, char *field) {
        if (field && *n < AUDIT_FIELDS_MAX - 8)
                fields[(*n)++] = field;
        else
                free(field);
}

void audit_host_result(const char *action, const char *vm, const char *user, const char *result, const char *reason,
                       json_object *fields, json_object *record) {
        char *f[AUDIT_FIELDS_MAX] = {};
        size_t n = 0, n_keys = 0;
        uint32_t guest_uid = 0, host_uid = 0;
        bool has_guest = false, has_host = false, read_only = false, unexported = false;
        const char *tag = NULL, *source = NULL, *sudo_user = getenv("SUDO_USER");
        char derived_tag[64];
        uid_t loginuid;
        json_object *priv, *keys;

        add(f, &n, audit_field("VMUSER_ACTION", "%s", action));
        add(f, &n, audit_field("VMUSER_VM", "%s", vm));
        add(f, &n, audit_field("VMUSER_USER", "%s", user));
        add(f, &n, audit_field("VMUSER_RESULT", "%s", result));
        if (reason)
                add(f, &n, audit_field("VMUSER_ERROR", "%s", reason));
        add(f, &n, audit_field("VMUSER_INVOKER_UID", "%u", (unsigned) getuid()));
        if (sudo_user)
                add(f, &n, audit_field("VMUSER_INVOKER_SUDO_USER", "%s", sudo_user));
        if (read_loginuid(&loginuid) == 0)
                add(f, &n, audit_field("VMUSER_INVOKER_LOGINUID", "%u", (unsigned) loginuid));

        if (fields) {
                has_guest = json_get_uint32(fields, "uid", &guest_uid) == 0;
                has_host = json_get_uint32(fields, "hostUid", &host_uid) == 0;
                (void) json_get_string(fields, "homeTag", &tag);
                (void) json_get_string(fields, "homeSource", &source);
                (void) json_get_bool(fields, "readOnly", &read_only);
                (void) json_get_bool(fields, "homeUnexported", &unexported);
        }
        if (!tag && unexported && home_export_tag(user, derived_tag, sizeof(derived_tag)) >= 0)
                tag = derived_tag;
        if (has_guest)
                add(f, &n, audit_field("VMUSER_GUEST_UID", "%u", guest_uid));
        if (has_host)
                add(f, &n, audit_field("VMUSER_HOST_UID", "%u", host_uid));
        if (tag)
                add(f, &n, audit_field("VMUSER_EXPORT_TAG", "%s", tag));
        if (source) {
                add(f, &n, audit_field("VMUSER_EXPORT_SOURCE", "%s", source));
                add(f, &n, audit_field("VMUSER_READ_ONLY", "%s", read_only ? "yes" : "no"));
        }

        if (record && json_object_object_get_ex(record, "privileged", &priv) &&
            json_object_object_get_ex(priv, "sshAuthorizedKeys", &keys) && json_object_is_type(keys, json_type_array)) {
                for (size_t i = 0; i < json_object_array_length(keys); i++) {
                        const char *line = json_object_get_string(json_object_array_get_idx(keys, i));
                        char fp[SSH_KEY_FINGERPRINT_MAX];
                        if (line && ssh_key_line_fingerprint(line, fp) == 0) {
                                add(f, &n, audit_field("VMUSER_KEY_FINGERPRINT", "%s", fp));
                                n_keys++;
                        }
                }
        }
        if (record)
                add(f, &n, audit_field("VMUSER_KEY_COUNT", "%zu", n_keys));

        bool detach = streq(action, "detach");
        if (reason)
                (void) audit_log("vmuser", message_id(action), LOG_WARNING, (const char *const *) f,
                                 "Failed to %s %s %s %s (%s): %s", action, user, detach ? "from" : "in", vm, result,
                                 reason);
        else
                (void) audit_log("vmuser", message_id(action), LOG_INFO, (const char *const *) f, "%s %s %s %s (%s)%s%s",
                                 detach ? "Detached" : streq(action, "replace") ? "Replaced" : "Attached", user,
                                 detach ? "from" : "in", vm, result, sudo_user ? " by " : "", sudo_user ? sudo_user : "");
        for (size_t i = 0; i < n; i++)
                free(f[i]);
}
