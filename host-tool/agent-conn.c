/* agent-conn.c: connect + sync with explanations (see agent-conn.h). */
#include "agent-conn.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "macro.h"

static int explain_connect_error(const struct vm *vm, int r, const struct verr *lib, struct verr *e) {
        struct stat st;

        switch (r) {
        case -ENOENT:
                if (stat(vm->dir, &st) < 0 && errno == ENOENT && strncmp(vm->agent_socket, vm->dir, strlen(vm->dir)) == 0)
                        return verr_set(e, r, "the VM directory '%s' does not exist (no VM '%s' running here?)", vm->dir,
                                        vm->label);
                return verr_set(e, r, "the agent socket '%s' does not exist: is the VM running, with the "
                                      "org.vmuser.agent.0 chardev (see QEMU in vmuser(1))?", vm->agent_socket);
        case -ECONNREFUSED:
                return verr_set(e, r, "nobody is listening on '%s': the VM is not running (stale socket) or its "
                                      "chardev is gone", vm->agent_socket);
        case -EACCES:
        case -EPERM:
                return verr_set(e, r, "no permission to connect to '%s' (vmuser normally runs as root)", vm->agent_socket);
        case -ENOTSOCK:
                return verr_set(e, r, "'%s' is not a socket", vm->agent_socket);
        default:
                return verr_set(e, r, "%s", verr_text(lib, r));
        }
}

int agent_open(const struct vm *vm, int timeout_ms, struct qga_client **ret, struct verr *e) {
        _cleanup_qga_client_ struct qga_client *c = NULL;
        struct verr lib = {};
        int r;

        r = qga_client_connect(vm->agent_socket, timeout_ms, &c, &lib);
        if (r < 0)
                return explain_connect_error(vm, r, &lib, e);

        r = qga_client_sync(c, timeout_ms, e);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(c);
        return 0;
}
