/* attach-report.c: what `vmuser attach` says about each user: on success the JSON fields (uid,
 * gid, homeDirectory, changed, hostUid and, for an export, homeTag, homeSource, readOnly,
 * sourceAllowsSetuid, fileServer[, fileServerUid]) and one sentence; the audit entry of every
 * result (audit.c). Failures are reported where the batch decides them (attach.c). */
#include <limits.h>
#include <stdio.h>

#include "attach.h"
#include "audit.h"
#include "json-util.h"
#include "macro.h"

/* The audit entry of the user being reported (report.on_result). */
void attach_audit(void *userdata, const char *user, const char *result, const char *reason, json_object *fields) {
        struct attach_batch *b = userdata;
        bool changed = true;

        if (fields)
                (void) json_get_bool(fields, "changed", &changed);
        /* A record already there, but a new export of it, is a change too. */
        if (b->current && b->current->exported && !b->current->export_existed)
                changed = true;
        audit_host_result(b->o->replace ? "replace" : "attach", b->vm.label, user, changed ? result : "unchanged",
                          reason, fields, b->current ? b->current->record : NULL);
}

/* The result of a user that went through every step: the fields for --json and the sentence. */
void attach_report_success(struct attach_batch *b, const struct attach_job *j) {
        _cleanup_json_ json_object *fields = json_object_new_object();
        const char *name = j->name;

        if (fields) {
                json_object_object_add(fields, "uid", json_object_new_int64(j->uid));
                json_object_object_add(fields, "gid", json_object_new_int64(j->gid));
                json_object_object_add(fields, "homeDirectory", json_object_new_string(j->home_directory));
                json_object_object_add(fields, "changed", json_object_new_boolean(j->changed));
                json_object_object_add(fields, "hostUid", json_object_new_int64(j->host->uid));
                if (j->exported) {
                        json_object_object_add(fields, "homeTag", json_object_new_string(j->export.tag));
                        json_object_object_add(fields, "homeSource", json_object_new_string(j->export.source));
                        json_object_object_add(fields, "readOnly", json_object_new_boolean(j->export.read_only));
                        json_object_object_add(fields, "sourceAllowsSetuid",
                                               json_object_new_boolean(j->source_allows_setuid));
                        json_object_object_add(fields, "fileServer",
                                               json_object_new_string(home_export_server_to_string(j->export.server)));
                        if (j->export.server == HOME_EXPORT_SERVER_UNPRIVILEGED)
                                json_object_object_add(fields, "fileServerUid",
                                                       json_object_new_int64(j->export.server_uid));
                }
        }
        char home[HOME_PATH_MAX + 1], export[PATH_MAX + 128] = "", server[80] = "";
        text_sanitize(j->home_directory, home, sizeof(home));
        if (j->exported)
                snprintf(export, sizeof(export), "; %s %s%s as virtio-fs tag %s",
                         j->export_existed ? "already exported" : "exported", j->export.source,
                         j->export.read_only ? " read-only" : "", j->export.tag);
        /* Which file server serves the home: a sentence of its own, after the rest. */
        if (j->exported && j->export.server == HOME_EXPORT_SERVER_UNPRIVILEGED)
                snprintf(server, sizeof(server), " File server: unprivileged, host uid %u.",
                         (unsigned) j->export.server_uid);
        else if (j->exported)
                snprintf(server, sizeof(server), " File server: root.");
        if (j->changed)
                report_success(&b->report, name, fields, "Attached '%s' to %s as uid %u (host uid %u), home %s%s.%s",
                               name, b->vm.label, j->uid, (unsigned) j->host->uid, home, export, server);
        else if (j->exported && !j->export_existed)
                report_success(&b->report, name, fields, "'%s' was already attached to %s as uid %u%s.%s", name,
                               b->vm.label, j->uid, export, server);
        else
                report_success(&b->report, name, fields, "'%s' was already attached to %s as uid %u%s; nothing changed.%s",
                               name, b->vm.label, j->uid, export, server);
}
