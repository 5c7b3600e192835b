/* vm.c: VM argument -> backend (see vm.h).
 *
 * Flow: a relative directory of a bare QEMU is made absolute -> vm_backend_open() picks and
 * opens the backend (libvirt: connects and looks the domain up; qemu: no file system access, a
 * missing socket is found out when connecting, where the error can say what is missing) ->
 * vm_backend_describe() once, for the facts messages and status need. What the monitor is and
 * does is the backend's to say (vm_backend_probe_monitor()): nothing here knows QMP. */
#include "vm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"
#include "output.h"

static bool spec_is_libvirt(const char *spec, const struct common_options *o) {
        return o->connect_uri || strncmp(spec, VM_BACKEND_LIBVIRT_PREFIX, strlen(VM_BACKEND_LIBVIRT_PREFIX)) == 0;
}

void vm_close(struct vm *v) {
        v->backend = vm_backend_free(v->backend);
}

enum outcome vm_open_outcome(int r) {
        switch (r) {
        case -ENOMEM:
                return OUTCOME_FAILED;
        case -EINVAL:
        case -ENAMETOOLONG:
                return OUTCOME_USAGE;
        default:
                return OUTCOME_UNREACHABLE;
        }
}

int vm_open(const struct common_options *o, struct vm *ret, struct verr *e) {
        struct vm_backend_options bo = {
                .connect_uri = o->connect_uri,
                .agent_socket = o->agent_socket,
                .qmp_socket = o->qmp_socket,
                .timeout_ms = o->timeout_ms,
        };
        _cleanup_free_ char *absolute = NULL;
        const char *spec = o->vm;
        struct vm v = {};
        int r;

        if (!spec || !*spec)
                return verr_set(e, -EINVAL, "the VM argument is empty");
        if (strlen(spec) >= sizeof(v.label))
                return verr_set(e, -ENAMETOOLONG, "VM argument '%.64s...' is too long", spec);
        strcpy(v.label, spec);

        if (spec_is_libvirt(spec, o) && (o->agent_socket || o->qmp_socket))
                return verr_set(e, -EINVAL, "%s applies to a bare QEMU only: libvirt knows the sockets of domain '%s'",
                                o->agent_socket ? "--agent" : "--qmp", v.label);
        if (!spec_is_libvirt(spec, o) && spec[0] != '/' && (strchr(spec, '/') || streq(spec, ".") || streq(spec, ".."))) {
                _cleanup_free_ char *cwd = getcwd(NULL, 0);
                if (!cwd)
                        return verr_set(e, negative_errno(), "cannot resolve the VM directory '%s': %m", spec);
                if (asprintf(&absolute, "%s/%s", streq(cwd, "/") ? "" : cwd, spec) < 0)
                        return -ENOMEM;
                spec = absolute;
        }
        r = vm_backend_open(spec, &bo, &v.backend, e);
        if (r < 0)
                return r;
        r = vm_backend_describe(v.backend, &v.info, e);
        if (r < 0) {
                vm_close(&v);
                return r;
        }
        if (vm_backend_kind(v.backend) == VM_BACKEND_QEMU)
                snprintf(v.dir, sizeof(v.dir), "%s", v.info.name);
        *ret = v;
        return 0;
}

enum outcome vm_acquire(const struct common_options *o, struct vm *ret_vm, struct qga_client **ret_agent) {
        struct verr e = {};
        int r;

        if (o->opened_vm)
                *ret_vm = *o->opened_vm;
        else {
                r = vm_open(o, ret_vm, &e);
                if (r < 0) {
                        log_error("%s", verr_text(&e, r));
                        return vm_open_outcome(r);
                }
        }
        *ret_agent = o->shared_agent ? *o->shared_agent : NULL;
        return OUTCOME_OK;
}

void vm_release(const struct common_options *o, struct vm *vm, struct qga_client *agent) {
        if (o->shared_agent)
                *o->shared_agent = agent;
        else
                qga_client_free(agent);
        if (!o->opened_vm)
                vm_close(vm);
}

/* The VM is gone, with every user of its guest, when its agent cannot be reached because nothing
 * listens (QEMU owns the agent socket: a timeout or a garbled reply prove it alive) and the
 * backend says it does not run either: a bare QEMU's QMP socket is missing or refuses, a libvirt
 * domain is shut off (-ESRCH) and has no managed save that would bring our share back. */
bool vm_is_gone(const struct vm *vm, int agent_r) {
        return (agent_r == -ENOENT || agent_r == -ECONNREFUSED || agent_r == -ESRCH) && !vm->info.running &&
               !vm->info.saved;
}
