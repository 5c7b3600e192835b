/* status.c: `vmuser status [--json] VM`, is the agent reachable, which version, what can it do.
 *
 * Flow: the backend's description of the VM (vm_backend_describe: for a libvirt domain its
 * name, URI, whether it runs, shared memory, free root ports, the vmuser channel) -> the
 * backend's monitor probe (a bare QEMU's QMP: connect and negotiate capabilities within the
 * timeout, since the home export needs a monitor that answers, not just a socket file; libvirt
 * owns its monitor and names none) ->
 * connect + sync (this alone tells "socket missing", "nobody listening" and "agent not running
 * in the guest" apart; a libvirt domain without the channel gets none plugged in) -> guest-info
 * -> the reply is checked (version string, supported_commands with name and enabled) -> text, or
 * one JSON object. The exit status is the agent's alone: a VM attached with --no-home needs no
 * QMP. status_gather() collects the facts, render_json() / render_text() print them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent-conn.h"
#include "home-export.h"
#include "json-util.h"
#include "macro.h"
#include "output.h"
#include "qga-client.h"
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

/* What status found out, for the renderers. */
struct status_facts {
        struct vm vm;
        struct vm_backend_monitor monitor;
        bool qmp_present;               /* the monitor's socket is there (a bare QEMU) */
        bool no_channel;                /* no vmuser channel (libvirt, before the first attach) */
        json_object *info;              /* guest-info's reply */
        const char *version;            /* in info, when result is OUTCOME_OK */
        json_object *commands;          /* in info, when result is OUTCOME_OK */
        enum outcome result;
        int r;                          /* the agent's failure when result is not OUTCOME_OK */
        struct verr e;
        bool userns;                    /* new exports run an unprivileged file server */
        struct home_export_info *exports;
        size_t n_exports;
};

static void status_facts_done(struct status_facts *f) {
        json_object_put(f->info);
        free(f->exports);
        vm_close(&f->vm);
}

/* Everything but the VM's opening is gathered even when it fails: the output tells what is
 * missing. */
static void status_gather(const struct common_options *o, struct status_facts *f) {
        _cleanup_qga_client_ struct qga_client *agent = NULL;
        struct qga_error qe = {};
        struct verr ignored = {};
        char safe[2048];
        int r;

        vm_backend_probe_monitor(f->vm.backend, VM_BACKEND_MONITOR_CONNECT, &f->monitor);
        f->qmp_present = f->monitor.socket[0] && f->monitor.is_socket;

        r = agent_open(&f->vm, 0, o->timeout_ms, &agent, &f->e);
        f->no_channel = r == -ENOLINK;
        if (r >= 0)
                r = qga_client_call(agent, "guest-info", NULL, o->timeout_ms, &f->info, &qe, &f->e);
        if (r >= 0)
                r = check_info(f->info, &f->version, &f->commands, &f->e);
        f->r = r;
        if (r < 0) {
                f->result = r == -EBADMSG ? OUTCOME_UNREACHABLE : outcome_from_agent_error(r, &qe);
                log_error("VM %s: %s", f->vm.label, text_sanitize(verr_text(&f->e, r), safe, sizeof(safe)));
        }

        /* Which file server the home exports run (new ones, and those there now). */
        f->userns = virtiofsd_userns_available() > 0;
        if (vm_backend_list_exports(f->vm.backend, &f->exports, &f->n_exports, &ignored) < 0)
                f->n_exports = 0;
}

static const char *new_server(const struct status_facts *f) {
        return f->userns ? "unprivileged" : "root"; /* both backends alike */
}

static int render_json(const struct status_facts *f) {
        _cleanup_json_ json_object *out = json_object_new_object();
        const struct vm *vm = &f->vm;

        if (!out)
                return -ENOMEM;
        json_object_object_add(out, "vm", json_object_new_string(vm->label));
        json_object_object_add(out, "backend", json_object_new_string(vm_backend_kind_to_string(vm->info.kind)));
        if (vm->dir[0])
                json_object_object_add(out, "directory", json_object_new_string(vm->dir));
        json_object_object_add(out, "running", json_object_new_boolean(vm->info.running));
        if (vm->info.uri[0]) {
                json_object_object_add(out, "domain", json_object_new_string(vm->info.name));
                json_object_object_add(out, "uri", json_object_new_string(vm->info.uri));
                json_object_object_add(out, "uuid", json_object_new_string(vm->info.uuid));
                if (vm->info.machine[0])
                        json_object_object_add(out, "machine", json_object_new_string(vm->info.machine));
                if (vm->info.shared_memory >= 0)
                        json_object_object_add(out, "sharedMemory", json_object_new_boolean(vm->info.shared_memory));
                if (vm->info.free_ports >= 0)
                        json_object_object_add(out, "freeRootPorts", json_object_new_int(vm->info.free_ports));
                json_object_object_add(out, "agentChannel", json_object_new_boolean(!f->no_channel));
        }
        json_object_object_add(out, "agentSocket", vm->info.agent_socket[0] ?
                                                           json_object_new_string(vm->info.agent_socket) : NULL);
        if (f->monitor.socket[0]) {
                json_object_object_add(out, "qmpSocket", json_object_new_string(f->monitor.socket));
                json_object_object_add(out, "qmpSocketPresent", json_object_new_boolean(f->qmp_present));
                json_object_object_add(out, "qmpReachable", json_object_new_boolean(f->monitor.reachable >= 0));
        }
        if (f->monitor.reachable >= 0)
                json_object_object_add(out, "qemuVersion", json_object_new_string(f->monitor.version));
        if (f->qmp_present && f->monitor.reachable < 0)
                json_object_object_add(out, "qmpError", json_object_new_string(verr_text(&f->monitor.error,
                                                                                          f->monitor.reachable)));
        json_object_object_add(out, "fileServer", json_object_new_string(new_server(f)));
        json_object_object_add(out, "userNamespaces", json_object_new_boolean(f->userns));
        json_object *xs = json_object_new_array();
        json_object_object_add(out, "exports", xs);
        for (size_t i = 0; xs && i < f->n_exports; i++) {
                const struct home_export_info *x = &f->exports[i];
                json_object *j = json_object_new_object();
                if (!j)
                        break;
                json_object_object_add(j, "user", json_object_new_string(x->user));
                json_object_object_add(j, "tag", json_object_new_string(x->tag));
                json_object_object_add(j, "fileServer", json_object_new_string(home_export_server_to_string(x->server)));
                if (x->server == HOME_EXPORT_SERVER_UNPRIVILEGED)
                        json_object_object_add(j, "fileServerUid", json_object_new_int64(x->server_uid));
                json_object_array_add(xs, j);
        }
        json_object_object_add(out, "reachable", json_object_new_boolean(f->result == OUTCOME_OK ||
                                                                         f->result == OUTCOME_REFUSED));
        json_object_object_add(out, "result", json_object_new_string(outcome_to_string(f->result)));
        if (f->result == OUTCOME_OK) {
                json_object *list = json_object_new_array();
                json_object_object_add(out, "version", json_object_new_string(f->version));
                json_object_object_add(out, "commands", list);
                for (size_t i = 0; list && i < json_object_array_length(f->commands); i++) {
                        json_object *c = json_object_array_get_idx(f->commands, i), *entry = json_object_new_object();
                        const char *name = NULL;
                        bool enabled = false;
                        (void) json_get_string(c, "name", &name);
                        (void) json_get_bool(c, "enabled", &enabled);
                        json_object_object_add(entry, "name", json_object_new_string(name));
                        json_object_object_add(entry, "enabled", json_object_new_boolean(enabled));
                        json_object_array_add(list, entry);
                }
        } else
                json_object_object_add(out, "error", json_object_new_string(verr_text(&f->e, f->r)));
        json_print_line(out);
        return 0;
}

static void render_text(const struct status_facts *f) {
        const struct vm *vm = &f->vm;
        const struct vm_backend_monitor *m = &f->monitor;
        char safe[2048], qmp_state[1024];

        if (vm->dir[0])
                printf("VM:       %s (%s)\n", vm->label, vm->dir);
        else
                printf("VM:       %s (%s domain %s at %s, UUID %s)\n", vm->label, vm_backend_kind_to_string(vm->info.kind),
                       vm->info.name, vm->info.uri, vm->info.uuid);
        if (vm->info.uri[0]) {
                char ports[32] = "unknown";
                if (vm->info.free_ports >= 0)
                        snprintf(ports, sizeof(ports), "%d", vm->info.free_ports);
                printf("Domain:   %s, machine %s, shared memory %s, free PCIe root ports %s\n",
                       vm->info.running ? "running" : "not running", vm->info.machine[0] ? vm->info.machine : "unknown",
                       vm->info.shared_memory < 0 ? "unknown" : vm->info.shared_memory ? "yes" : "no (virtiofs needs it)",
                       ports);
        }
        if (f->no_channel)
                printf("Agent:    no vmuser channel (vmuser attach hot-plugs one): unreachable\n");
        else
                printf("Agent:    %s: %s\n", vm->info.agent_socket,
                       f->result == OUTCOME_OK      ? "reachable" :
                       f->result == OUTCOME_REFUSED ? "reachable, guest-info refused" :
                                                      "unreachable");
        if (m->socket[0]) {
                if (m->reachable >= 0)
                        snprintf(qmp_state, sizeof(qmp_state), "answers (QEMU %s)", m->version);
                else if (!f->qmp_present)
                        snprintf(qmp_state, sizeof(qmp_state),
                                 "missing (home exports need it; attach --no-home works without)");
                else
                        snprintf(qmp_state, sizeof(qmp_state), "not answering: %s",
                                 text_sanitize(verr_text(&m->error, m->reachable), safe, sizeof(safe)));
                printf("QMP:      %s: %s\n", m->socket, qmp_state);
        }
        printf("Files:    new exports: %s file server (%s)\n", new_server(f),
               f->userns                             ? "in a user namespace, as a host ID of its own"
               : vm->info.kind == VM_BACKEND_LIBVIRT ? "user namespaces unavailable: libvirt starts virtiofsd"
                                                     : "user namespaces unavailable");
        for (size_t i = 0; i < f->n_exports; i++) {
                if (f->exports[i].server == HOME_EXPORT_SERVER_UNPRIVILEGED)
                        printf("          %s: unprivileged, host uid %u\n", f->exports[i].user,
                               (unsigned) f->exports[i].server_uid);
                else
                        printf("          %s: root\n", f->exports[i].user);
        }
        if (f->result != OUTCOME_OK)
                return;
        printf("Version:  %s\n", text_sanitize(f->version, safe, sizeof(safe)));
        printf("Commands:");
        for (size_t i = 0; i < json_object_array_length(f->commands); i++) {
                json_object *c = json_object_array_get_idx(f->commands, i);
                const char *name = NULL;
                bool enabled = false;
                (void) json_get_string(c, "name", &name);
                (void) json_get_bool(c, "enabled", &enabled);
                printf(" %s%s", text_sanitize(name, safe, sizeof(safe)), enabled ? "" : " (disabled)");
        }
        printf("\n");
}

enum outcome status_run(const struct common_options *o) {
        struct status_facts f = {};
        enum outcome result;
        int r;

        r = vm_open(o, &f.vm, &f.e);
        if (r < 0) {
                log_error("%s", verr_text(&f.e, r));
                return vm_open_outcome(r);
        }
        status_gather(o, &f);
        if (o->json) {
                if (render_json(&f) < 0)
                        f.result = OUTCOME_FAILED;
        } else
                render_text(&f);

        if (f.result == OUTCOME_OK)
                for (size_t i = 0; i < ELEMENTSOF(needed); i++) {
                        int s = command_state(f.commands, needed[i]);
                        if (s <= 0)
                                log_warning("the agent in VM %s %s '%s'", f.vm.label,
                                            s == 0 ? "has disabled" : "does not offer", needed[i]);
                }
        result = f.result;
        status_facts_done(&f);
        return result;
}
