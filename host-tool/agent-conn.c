/* agent-conn.c: socket from the backend -> connect + sync, with explanations (see
 * agent-conn.h). */
#include "agent-conn.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "macro.h"
#include "time-util.h"

#define HOTPLUG_SYNC_TIMEOUT_MS 2000
#define HOTPLUG_RETRY_MS 500

/* A bare QEMU that left its QMP socket behind and does not accept on it any more has exited. (A
 * QEMU started without a QMP socket may well run: no claim then.) The backend says where its
 * monitor is (ret->socket, for the message); libvirt names none. */
static bool qemu_gone(const struct vm *vm, struct vm_backend_monitor *ret) {
        vm_backend_probe_monitor(vm->backend, 0, ret);
        return ret->socket[0] && !vm->info.running && ret->is_socket;
}

static int explain_connect_error(const struct vm *vm, const char *path, int r, const struct verr *lib,
                                 struct verr *e) {
        struct vm_backend_monitor mon;
        struct stat st;

        switch (r) {
        case -ENOENT:
                if (vm->dir[0] && stat(vm->dir, &st) < 0 && errno == ENOENT && strncmp(path, vm->dir, strlen(vm->dir)) == 0)
                        return verr_set(e, r, "the VM directory '%s' does not exist (no VM '%s' running here?)", vm->dir,
                                        vm->label);
                if (qemu_gone(vm, &mon))
                        return verr_set(e, r, "the VM is not running: the agent socket '%s' does not exist, and "
                                              "nothing accepts on its QMP socket '%s'", path, mon.socket);
                return verr_set(e, r, "the agent socket '%s' does not exist: is the VM running, with the "
                                      "org.vmuser.agent.0 chardev (see QEMU in vmuser(1))?", path);
        case -ECONNREFUSED:
                if (qemu_gone(vm, &mon))
                        return verr_set(e, r, "the VM is not running: nobody is listening on '%s' (a stale socket), "
                                              "nor on its QMP socket '%s'", path, mon.socket);
                return verr_set(e, r, "nobody is listening on '%s': the VM is not running (stale socket) or its "
                                      "chardev is gone", path);
        case -EACCES:
        case -EPERM:
                return verr_set(e, r, "no permission to connect to '%s' (vmuser normally runs as root)", path);
        case -ENOTSOCK:
                return verr_set(e, r, "'%s' is not a socket", path);
        default:
                return verr_set(e, r, "%s", verr_text(lib, r));
        }
}

/* A freshly plugged port: the agent in the guest starts within seconds; until then the sync
 * times out (or the connect is refused while QEMU sets the chardev up). */
static int wait_for_agent(const char *path, int timeout_ms, struct qga_client **ret, struct verr *e) {
        int64_t deadline = now_ms() + VMUSER_HOTPLUG_AGENT_WAIT_MS;
        int sync_ms = timeout_ms < HOTPLUG_SYNC_TIMEOUT_MS ? timeout_ms : HOTPLUG_SYNC_TIMEOUT_MS;

        for (;;) {
                _cleanup_qga_client_ struct qga_client *c = NULL;
                struct verr why = {};
                int r = qga_client_connect(path, timeout_ms, &c, &why);
                if (r >= 0)
                        r = qga_client_sync(c, sync_ms, &why);
                if (r >= 0) {
                        *ret = TAKE_PTR(c);
                        return 0;
                }
                if (r == -ENOMEM || now_ms() >= deadline)
                        return verr_set(e, r, "the vmuser channel was hot-plugged, but no agent answered on '%s' within "
                                              "%d s (is vmuser-agent with its udev rule installed in the guest?): %s",
                                        path, VMUSER_HOTPLUG_AGENT_WAIT_MS / 1000, verr_text(&why, r));
                struct timespec ts = { .tv_nsec = HOTPLUG_RETRY_MS * 1000L * 1000L };
                nanosleep(&ts, NULL);
        }
}

int agent_open(const struct vm *vm, unsigned flags, int timeout_ms, struct qga_client **ret, struct verr *e) {
        _cleanup_qga_client_ struct qga_client *c = NULL;
        struct verr lib = {};
        char path[PATH_MAX];
        int r;

        r = vm_backend_agent_socket(vm->backend, flags, path, sizeof(path), e);
        if (r == -ENOENT && !(flags & VM_BACKEND_AGENT_HOTPLUG))
                return -ENOLINK; /* the backend's sentence stays in e */
        if (r < 0)
                return r;

        /* The channel was not there when the VM was opened: it has just been hot-plugged. */
        if (!vm->info.agent_socket[0])
                return wait_for_agent(path, timeout_ms, ret, e);

        r = qga_client_connect(path, timeout_ms, &c, &lib);
        if (r < 0)
                return explain_connect_error(vm, path, r, &lib, e);

        r = qga_client_sync(c, timeout_ms, e);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(c);
        return 0;
}
