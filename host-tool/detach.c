/* detach.c: `vmuser detach [--force] VM USER...`, remove attached users from a running VM.
 *
 * Flow: check the names -> one agent connection for the batch (opened at the first valid name)
 * -> vmuser-detach {userName, force} per user -> check the reply -> one sentence or JSON object
 * per user. The host user database is not consulted: a user deleted on the host can still be
 * detached. Without --force the agent refuses a user with sessions (UserBusy); with it, the
 * agent ends the sessions and unmounts the home first. */
#include <errno.h>
#include <string.h>

#include "agent-conn.h"
#include "json-util.h"
#include "macro.h"
#include "names.h"
#include "output.h"
#include "qga-client.h"
#include "vm.h"
#include "vmuser.h"

static int check_reply(json_object *v, const char *name, uint32_t *ret_uid, struct verr *e) {
        const char *s;

        if (!json_object_is_type(v, json_type_object) || json_get_string(v, "userName", &s) < 0 || !streq(s, name) ||
            json_get_uint32(v, "uid", ret_uid) < 0)
                return verr_set(e, -EBADMSG, "the agent's reply to vmuser-detach lacks userName '%s' or a valid uid", name);
        return 0;
}

enum outcome detach_run(const struct detach_options *o) {
        _cleanup_qga_client_ struct qga_client *agent = NULL;
        struct report rep = { .json = o->common.json, .verb = "detach", .preposition = "from", .vm_label = o->common.vm };
        struct vm vm = {};
        struct verr agent_e = {};
        int agent_r = 0;
        int r;

        r = vm_resolve(o->common.vm, o->common.agent_socket, o->common.qmp_socket, &vm, &agent_e);
        if (r < 0) {
                log_error("%s", verr_text(&agent_e, r));
                return r == -ENOMEM ? OUTCOME_FAILED : OUTCOME_USAGE;
        }
        rep.vm_label = vm.label;

        for (size_t i = 0; i < o->n_users; i++) {
                _cleanup_json_ json_object *args = NULL, *value = NULL;
                const char *name = o->users[i];
                struct qga_error qe = {};
                struct verr e = {};
                uint32_t uid;

                if (!name_is_valid(name)) {
                        verr_set(&e, -EINVAL, "'%s' is not a valid user name", name);
                        report_failure(&rep, name, OUTCOME_USAGE, NULL, e.text);
                        continue;
                }
                if (!agent && agent_r == 0)
                        agent_r = agent_open(&vm, o->common.timeout_ms, &agent, &agent_e);
                if (agent_r < 0) {
                        report_failure(&rep, name, outcome_from_agent_error(agent_r, NULL), NULL,
                                       verr_text(&agent_e, agent_r));
                        continue;
                }

                args = json_object_new_object();
                if (!args || json_object_object_add(args, "userName", json_object_new_string(name)) < 0 ||
                    (o->force && json_object_object_add(args, "force", json_object_new_boolean(true)) < 0)) {
                        report_failure(&rep, name, OUTCOME_FAILED, NULL, strerror(ENOMEM));
                        continue;
                }
                r = qga_client_call(agent, "vmuser-detach", args, o->common.timeout_ms, &value, &qe, &e);
                if (r < 0) {
                        report_failure(&rep, name, outcome_from_agent_error(r, &qe), r == -EREMOTEIO ? &qe : NULL,
                                       verr_text(&e, r));
                        continue;
                }
                r = check_reply(value, name, &uid, &e);
                if (r < 0) {
                        report_failure(&rep, name, OUTCOME_UNREACHABLE, NULL, verr_text(&e, r));
                        continue;
                }

                _cleanup_json_ json_object *fields = json_object_new_object();
                if (fields)
                        json_object_object_add(fields, "uid", json_object_new_int64(uid));
                report_success(&rep, name, fields, "Detached '%s' (uid %u) from %s.", name, uid, vm.label);
        }

        vm_done(&vm);
        return report_outcome(&rep);
}
