/* attach-push.c: the "send" and "reply" steps of `vmuser attach` (see attach.c), over the
 * batch's one agent connection, several users in flight at once.
 *
 * How a request flows: attach.c runs a user's steps up to and including "send" when it enters
 * the batch's window (ATTACH_WINDOW users at most): the connection is opened on the first send
 * (ensure_agent), the record goes out as vmuser-attach with its own id (qga_client_send), and the
 * record's hash is wiped. attach.c then takes the users out of the window in argv order: "reply"
 * waits for that user's reply by its id (qga_client_receive; replies to the other users in
 * flight that come first are kept for them, until each one's own deadline of --timeout after it
 * was sent), checks it (check_reply: the agent is not trusted), and the export and the report
 * follow. A timeout or a malformed reply leaves the channel to be re-synced: attach.c takes every
 * user in flight out of the window first (each gets its own reply or error), then the next send
 * syncs. A broken connection fails every user still in flight with the reason. Undo (a later
 * step failed): vmuser-detach, only when this push created the user. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "agent-conn.h"
#include "attach.h"
#include "json-util.h"
#include "macro.h"
#include "qga-client.h"
#include "vmuser.h"

static int ensure_agent(struct attach_batch *b, struct attach_job *j) {
        if (b->agent)
                return 0;
        if (!b->agent_failed) {
                unsigned flags = VM_BACKEND_AGENT_HOTPLUG | (b->o->persistent ? VM_BACKEND_AGENT_PERSISTENT : 0);
                b->agent_error = agent_open(&b->vm, flags, b->o->common.timeout_ms, &b->agent, &b->agent_verr);
                b->agent_failed = b->agent_error < 0;
                /* Pipelined: the requests of a chunk leave in one write. */
                if (!b->agent_failed && attach_corks(b))
                        qga_client_cork(b->agent, true);
                /* With --replace, "changed" does not tell a new user from a replaced one; the list
                 * does. When it cannot be had, no push is undone (the safe side). */
                if (!b->agent_failed && b->o->replace && attach_exports(b->o)) {
                        struct qga_error qe = {};
                        struct verr ignored = {};
                        json_object *list = NULL;
                        if (agent_list_users(b->agent, b->o->common.timeout_ms, &list, &qe, &ignored) >= 0 &&
                            json_object_is_type(list, json_type_array))
                                b->attached_before = list;
                        else
                                json_object_put(list);
                }
        }
        if (b->agent_failed) {
                verr_set(&j->e, b->agent_error, "%s", verr_text(&b->agent_verr, b->agent_error));
                j->outcome = outcome_from_agent_error(b->agent_error, NULL);
                return b->agent_error;
        }
        return 0;
}

/* The agent is not trusted: its answer must be the one PROTOCOL.txt promises, for our user. */
static int check_reply(struct attach_job *j, json_object *v) {
        const char *name, *home;
        int r;

        if (!json_object_is_type(v, json_type_object))
                return verr_set(&j->e, -EBADMSG, "the agent's reply to vmuser-attach is not an object");
        r = json_get_string(v, "userName", &name);
        if (r < 0 || !streq(name, j->name))
                return verr_set(&j->e, -EBADMSG, "the agent's reply to vmuser-attach names another user");
        if (json_get_uint32(v, "uid", &j->uid) < 0 || json_get_uint32(v, "gid", &j->gid) < 0 ||
            json_get_bool(v, "changed", &j->changed) < 0 || json_get_string(v, "homeDirectory", &home) < 0 ||
            strlen(home) > HOME_PATH_MAX)
                return verr_set(&j->e, -EBADMSG, "the agent's reply to vmuser-attach lacks a valid uid, gid, "
                                                 "homeDirectory or changed");
        if (j->uid == 0 || j->gid == 0)
                return verr_set(&j->e, -EBADMSG, "the agent reports uid %u / gid %u for '%s'", j->uid, j->gid, j->name);
        strcpy(j->home_directory, home);
        return 0;
}

/* The guest UIDs of the live exports this host keeps for the VM, for the agent to reserve for
 * their users (doc/PROTOCOL.txt, section 10): after a guest reboot nobody else may get one. NULL
 * when there are none (then older agents, which refuse the argument, see no difference). */
static json_object *reserved_uids(struct attach_batch *b) {
        json_object *list = NULL;
        uint32_t ignored;

        if (!attach_exports(b->o))
                return NULL;
        (void) attach_leftover_export_uid(b, "", &ignored); /* lists the exports once per batch */
        for (size_t i = 0; i < b->n_exports_before && i < 64; i++) {
                const struct home_export_info *x = &b->exports_before[i];
                if (!streq(x->phase, "exported") || x->guest_uid != x->guest_gid ||
                    x->virtiofsd_state != VIRTIOFSD_STATE_RUNNING || !name_is_valid(x->user))
                        continue;
                json_object *o = json_object_new_object();
                if (!list)
                        list = json_object_new_array();
                if (!o || !list || json_object_array_add(list, o) < 0) {
                        json_object_put(o);
                        json_object_put(list);
                        return NULL;
                }
                json_object_object_add(o, "uid", json_object_new_int64(x->guest_uid));
                json_object_object_add(o, "userName", json_object_new_string(x->user));
        }
        return list;
}

/* Sends the request; its reply is step_reply()'s. */
int attach_step_send(struct attach_batch *b, struct attach_job *j) {
        _cleanup_json_ json_object *args = NULL;
        int r;

        r = ensure_agent(b, j);
        if (r < 0)
                return r;

        args = json_object_new_object();
        if (!args || json_object_object_add(args, "user", json_object_get(j->record)) < 0 ||
            (j->home && json_object_object_add(args, "home", json_object_get(j->home)) < 0) ||
            (b->o->replace && json_object_object_add(args, "replace", json_object_new_boolean(true)) < 0)) {
                j->outcome = OUTCOME_FAILED;
                return -ENOMEM;
        }
        json_object *reserved = reserved_uids(b);
        if (reserved && json_object_object_add(args, "reservedUids", reserved) < 0) {
                j->outcome = OUTCOME_FAILED;
                return -ENOMEM;
        }

        r = qga_client_send(b->agent, "vmuser-attach", args, b->o->common.timeout_ms, &j->request_id, &j->e);
        if (r < 0) {
                j->outcome = outcome_from_agent_error(r, NULL);
                return r;
        }
        /* Sent (and the serialization wiped): the hash is not needed here any more, and the
         * records of a window must not linger in memory an export's fork would copy. */
        host_user_record_erase(j->record);
        return 0;
}

/* The agent's answer to the request step_send() sent. */
int attach_step_reply(struct attach_batch *b, struct attach_job *j) {
        _cleanup_json_ json_object *value = NULL;
        int r;

        r = qga_client_receive(b->agent, j->request_id, &value, &j->qerr, &j->e);
        if (r < 0) {
                j->remote = r == -EREMOTEIO;
                j->outcome = outcome_from_agent_error(r, &j->qerr);
                return r;
        }
        r = check_reply(j, value);
        if (r < 0) {
                j->outcome = OUTCOME_UNREACHABLE;
                return r;
        }
        j->created = j->changed && !b->o->replace;
        if (j->changed && b->o->replace && b->attached_before) {
                j->created = true;
                for (size_t i = 0; i < json_object_array_length(b->attached_before); i++) {
                        const char *s;
                        if (json_get_string(json_object_array_get_idx(b->attached_before, i), "userName", &s) == 0 &&
                            streq(s, j->name))
                                j->created = false;
                }
        }
        return 0;
}

/* A later step failed: take the user out again if this push put it in. The failure's reason
 * stays the step's own; what happened to the record goes into j->note. */
void attach_undo_push(struct attach_batch *b, struct attach_job *j) {
        _cleanup_json_ json_object *args = NULL, *value = NULL;
        struct qga_error qe = {};
        struct verr e = {};
        int r;

        if (!j->created) {
                snprintf(j->note, sizeof(j->note), "; the user record in the guest was attached before and is left as it is");
                return;
        }
        args = json_object_new_object();
        if (!args || json_object_object_add(args, "userName", json_object_new_string(j->name)) < 0)
                r = -ENOMEM;
        else
                r = qga_client_call(b->agent, "vmuser-detach", args, b->o->common.timeout_ms, &value, &qe, &e);
        if (r >= 0)
                snprintf(j->note, sizeof(j->note), "; the user was detached from the guest again");
        else
                snprintf(j->note, sizeof(j->note), "; detaching the user from the guest again failed too (%.200s): run "
                         "'vmuser detach %s%s%s%s %s'", r == -EREMOTEIO ? qe.desc : verr_text(&e, r),
                         b->o->common.connect_uri ? "--connect " : "", strempty(b->o->common.connect_uri),
                         b->o->common.connect_uri ? " " : "", b->vm.label, j->name);
}

