/* status.c: `vmuser status [--json] VM`, is the agent reachable, which version, what can it do.
 *
 * Flow: the backend's description of the VM (vm_backend_describe: for a libvirt domain its
 * name, URI, whether it runs, shared memory, free root ports, the vmuser channel) -> a bare
 * QEMU's QMP: connect and negotiate capabilities within the timeout (qmp-client.c), since the
 * home export needs a monitor that answers, not just a socket file (libvirt owns its monitor) ->
 * connect + sync (this alone tells "socket missing", "nobody listening" and "agent not running
 * in the guest" apart; a libvirt domain without the channel gets none plugged in) -> guest-info
 * -> the reply is checked (version string, supported_commands with name and enabled) -> text, or
 * one JSON object. The exit status is the agent's alone: a VM attached with --no-home needs no
 * QMP. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "agent-conn.h"
#include "home-export.h"
#include "json-util.h"
#include "macro.h"
#include "output.h"
#include "qga-client.h"
#include "qmp-client.h"
#include "vm-backend.h"
#include "vm.h"
#include "vmuser.h"

#define STATUS_MAX_COMMANDS 256
#define STATUS_MAX_NAME 64

/* The vmuser verbs a host needs; a guest that lacks or disables one is worth a warning. */
static const char *const needed[] = { "vmuser-attach", "vmuser-detach", "vmuser-list" };

static int check_info(json_object *info, const char **ret_version, json_object **ret_commands, struct verr *e) {
        json_object *list;
        size_t n;

        if (!json_object_is_type(info, json_type_object) || json_get_string(info, "version", ret_version) < 0 ||
            strlen(*ret_version) > STATUS_MAX_NAME)
                return verr_set(e, -EBADMSG, "the reply to guest-info has no valid 'version'");
        if (json_get_array(info, "supported_commands", &list) < 0)
                return verr_set(e, -EBADMSG, "the reply to guest-info has no 'supported_commands' array");
        n = json_object_array_length(list);
        if (n > STATUS_MAX_COMMANDS)
                return verr_set(e, -EBADMSG, "the reply to guest-info lists %zu commands", n);
        for (size_t i = 0; i < n; i++) {
                json_object *c = json_object_array_get_idx(list, i);
                const char *name;
                bool enabled;
                if (json_get_string(c, "name", &name) < 0 || strlen(name) > STATUS_MAX_NAME ||
                    json_get_bool(c, "enabled", &enabled) < 0)
                        return verr_set(e, -EBADMSG, "guest-info command entry %zu lacks a valid name or enabled", i);
        }
        *ret_commands = list;
        return 0;
}

static int command_state(json_object *commands, const char *name) {
        for (size_t i = 0; i < json_object_array_length(commands); i++) {
                json_object *c = json_object_array_get_idx(commands, i);
                const char *s;
                bool enabled = false;
                if (json_get_string(c, "name", &s) == 0 && streq(s, name)) {
                        (void) json_get_bool(c, "enabled", &enabled);
                        return enabled ? 1 : 0;
                }
        }
        return -ENOENT;
}

enum outcome status_run(const struct common_options *o) {
        _cleanup_qga_client_ struct qga_client *agent = NULL;
        _cleanup_json_ json_object *info = NULL, *out = NULL;
        json_object *commands = NULL;
        const char *version = NULL;
        struct qga_error qe = {};
        struct verr e = {};
        struct vm vm = {};
        struct stat st;
        bool no_channel = false;
        enum outcome result = OUTCOME_OK;
        _cleanup_qmp_client_ struct qmp_client *qmp = NULL;
        struct verr qmp_e = {};
        bool qmp_present;
        int qmp_r;
        char safe[2048], qmp_state[1024], qemu_version[64] = "";
        int r;

        r = vm_open(o, &vm, &e);
        if (r < 0) {
                log_error("%s", verr_text(&e, r));
                return vm_open_outcome(r);
        }
        qmp_present = vm.monitor_socket[0] && stat(vm.monitor_socket, &st) == 0 && S_ISSOCK(st.st_mode);
        qmp_r = qmp_present ? qmp_client_connect(vm.monitor_socket, o->timeout_ms, &qmp, &qmp_e) : -ENOENT;
        if (qmp_r >= 0)
                snprintf(qemu_version, sizeof(qemu_version), "%s", qmp_client_qemu_version(qmp));
        if (qmp_r >= 0)
                snprintf(qmp_state, sizeof(qmp_state), "answers (QEMU %s)", qmp_client_qemu_version(qmp));
        else if (!qmp_present)
                snprintf(qmp_state, sizeof(qmp_state), "missing (home exports need it; attach --no-home works without)");
        else
                snprintf(qmp_state, sizeof(qmp_state), "not answering: %s", text_sanitize(verr_text(&qmp_e, qmp_r), safe,
                                                                                         sizeof(safe)));
        qmp = qmp_client_free(qmp); /* the monitor serves one client at a time: let it go */

        r = agent_open(&vm, 0, o->timeout_ms, &agent, &e);
        no_channel = r == -ENOLINK;
        if (r >= 0)
                r = qga_client_call(agent, "guest-info", NULL, o->timeout_ms, &info, &qe, &e);
        if (r >= 0)
                r = check_info(info, &version, &commands, &e);
        if (r < 0) {
                result = r == -EBADMSG ? OUTCOME_UNREACHABLE : outcome_from_agent_error(r, &qe);
                log_error("VM %s: %s", vm.label, text_sanitize(verr_text(&e, r), safe, sizeof(safe)));
        }

        /* Which file server the home exports run (new ones, and those there now). */
        bool userns = virtiofsd_userns_available() > 0;
        const char *new_server = userns ? "unprivileged" : "root"; /* both backends alike */
        _cleanup_free_ struct home_export_info *exports = NULL;
        size_t n_exports = 0;
        {
                struct verr ignored = {};
                if (vm_backend_list_exports(vm.backend, &exports, &n_exports, &ignored) < 0)
                        n_exports = 0;
        }

        if (o->json) {
                out = json_object_new_object();
                if (!out) {
                        result = OUTCOME_FAILED;
                        goto finish;
                }
                json_object_object_add(out, "vm", json_object_new_string(vm.label));
                json_object_object_add(out, "backend", json_object_new_string(vm_backend_kind_to_string(vm.info.kind)));
                if (vm.dir[0])
                        json_object_object_add(out, "directory", json_object_new_string(vm.dir));
                json_object_object_add(out, "running", json_object_new_boolean(vm.info.running));
                if (vm.info.uri[0]) {
                        json_object_object_add(out, "domain", json_object_new_string(vm.info.name));
                        json_object_object_add(out, "uri", json_object_new_string(vm.info.uri));
                        json_object_object_add(out, "uuid", json_object_new_string(vm.info.uuid));
                        if (vm.info.machine[0])
                                json_object_object_add(out, "machine", json_object_new_string(vm.info.machine));
                        if (vm.info.shared_memory >= 0)
                                json_object_object_add(out, "sharedMemory", json_object_new_boolean(vm.info.shared_memory));
                        if (vm.info.free_ports >= 0)
                                json_object_object_add(out, "freeRootPorts", json_object_new_int(vm.info.free_ports));
                        json_object_object_add(out, "agentChannel", json_object_new_boolean(!no_channel));
                }
                json_object_object_add(out, "agentSocket", vm.info.agent_socket[0] ?
                                                                   json_object_new_string(vm.info.agent_socket) : NULL);
                if (vm.monitor_socket[0]) {
                        json_object_object_add(out, "qmpSocket", json_object_new_string(vm.monitor_socket));
                        json_object_object_add(out, "qmpSocketPresent", json_object_new_boolean(qmp_present));
                        json_object_object_add(out, "qmpReachable", json_object_new_boolean(qmp_r >= 0));
                }
                if (qmp_r >= 0)
                        json_object_object_add(out, "qemuVersion", json_object_new_string(qemu_version));
                if (qmp_present && qmp_r < 0)
                        json_object_object_add(out, "qmpError", json_object_new_string(verr_text(&qmp_e, qmp_r)));
                json_object_object_add(out, "fileServer", json_object_new_string(new_server));
                json_object_object_add(out, "userNamespaces", json_object_new_boolean(userns));
                json_object *xs = json_object_new_array();
                json_object_object_add(out, "exports", xs);
                for (size_t i = 0; xs && i < n_exports; i++) {
                        json_object *x = json_object_new_object();
                        if (!x)
                                break;
                        json_object_object_add(x, "user", json_object_new_string(exports[i].user));
                        json_object_object_add(x, "tag", json_object_new_string(exports[i].tag));
                        json_object_object_add(x, "fileServer",
                                               json_object_new_string(home_export_server_to_string(exports[i].server)));
                        if (exports[i].server == HOME_EXPORT_SERVER_UNPRIVILEGED)
                                json_object_object_add(x, "fileServerUid", json_object_new_int64(exports[i].server_uid));
                        json_object_array_add(xs, x);
                }
                json_object_object_add(out, "reachable", json_object_new_boolean(result == OUTCOME_OK ||
                                                                                 result == OUTCOME_REFUSED));
                json_object_object_add(out, "result", json_object_new_string(outcome_to_string(result)));
                if (result == OUTCOME_OK) {
                        json_object *list = json_object_new_array();
                        json_object_object_add(out, "version", json_object_new_string(version));
                        json_object_object_add(out, "commands", list);
                        for (size_t i = 0; list && i < json_object_array_length(commands); i++) {
                                json_object *c = json_object_array_get_idx(commands, i), *entry = json_object_new_object();
                                const char *name = NULL;
                                bool enabled = false;
                                (void) json_get_string(c, "name", &name);
                                (void) json_get_bool(c, "enabled", &enabled);
                                json_object_object_add(entry, "name", json_object_new_string(name));
                                json_object_object_add(entry, "enabled", json_object_new_boolean(enabled));
                                json_object_array_add(list, entry);
                        }
                } else
                        json_object_object_add(out, "error", json_object_new_string(verr_text(&e, r)));
                json_print_line(out);
                goto finish;
        }

        if (vm.dir[0])
                printf("VM:       %s (%s)\n", vm.label, vm.dir);
        else
                printf("VM:       %s (%s domain %s at %s, UUID %s)\n", vm.label, vm_backend_kind_to_string(vm.info.kind),
                       vm.info.name, vm.info.uri, vm.info.uuid);
        if (vm.info.uri[0]) {
                char ports[32] = "unknown";
                if (vm.info.free_ports >= 0)
                        snprintf(ports, sizeof(ports), "%d", vm.info.free_ports);
                printf("Domain:   %s, machine %s, shared memory %s, free PCIe root ports %s\n",
                       vm.info.running ? "running" : "not running", vm.info.machine[0] ? vm.info.machine : "unknown",
                       vm.info.shared_memory < 0 ? "unknown" : vm.info.shared_memory ? "yes" : "no (virtiofs needs it)",
                       ports);
        }
        if (no_channel)
                printf("Agent:    no vmuser channel (vmuser attach hot-plugs one): unreachable\n");
        else
                printf("Agent:    %s: %s\n", vm.info.agent_socket,
                       result == OUTCOME_OK ? "reachable" : result == OUTCOME_REFUSED ? "reachable, guest-info refused" :
                                                                                        "unreachable");
        if (vm.monitor_socket[0])
                printf("QMP:      %s: %s\n", vm.monitor_socket, qmp_state);
        printf("Files:    new exports: %s file server (%s)\n", new_server,
               userns                               ? "in a user namespace, as a host ID of its own"
               : vm.info.kind == VM_BACKEND_LIBVIRT ? "user namespaces unavailable: libvirt starts virtiofsd"
                                                    : "user namespaces unavailable");
        for (size_t i = 0; i < n_exports; i++) {
                if (exports[i].server == HOME_EXPORT_SERVER_UNPRIVILEGED)
                        printf("          %s: unprivileged, host uid %u\n", exports[i].user,
                               (unsigned) exports[i].server_uid);
                else
                        printf("          %s: root\n", exports[i].user);
        }
        if (result != OUTCOME_OK)
                goto finish;
        printf("Version:  %s\n", text_sanitize(version, safe, sizeof(safe)));
        printf("Commands:");
        for (size_t i = 0; i < json_object_array_length(commands); i++) {
                json_object *c = json_object_array_get_idx(commands, i);
                const char *name = NULL;
                bool enabled = false;
                (void) json_get_string(c, "name", &name);
                (void) json_get_bool(c, "enabled", &enabled);
                printf(" %s%s", text_sanitize(name, safe, sizeof(safe)), enabled ? "" : " (disabled)");
        }
        printf("\n");

finish:
        if (result == OUTCOME_OK)
                for (size_t i = 0; i < ELEMENTSOF(needed); i++) {
                        int s = command_state(commands, needed[i]);
                        if (s <= 0)
                                log_warning("the agent in VM %s %s '%s'", vm.label, s == 0 ? "has disabled" : "does not offer",
                                            needed[i]);
                }
        vm_close(&vm);
        return result;
}
