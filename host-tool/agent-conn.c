/* agent-conn.c: socket from the backend -> connect + sync, with explanations (see
 * agent-conn.h). */
#include "agent-conn.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "json-util.h"
#include "macro.h"
#include "names.h"
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

/* The pages of a listing: small enough for the host's reply limits (doc/PROTOCOL.txt section
 * 8), and a bound on what one listing may hold in the host's memory altogether. */
#define AGENT_LIST_PAGE 512u
#define AGENT_LIST_MAX_USERS 65536u

int agent_list_users(struct qga_client *c, int timeout_ms, json_object **ret, struct qga_error *qe, struct verr *e) {
        _cleanup_json_ json_object *all = json_object_new_array();
        char after[VMUSER_NAME_MAX + 1] = "";

        if (!all)
                return -ENOMEM;
        for (;;) {
                _cleanup_json_ json_object *args = json_object_new_object(), *page = NULL;
                size_t n;
                int r;

                if (!args || json_object_object_add(args, "limit", json_object_new_int(AGENT_LIST_PAGE)) < 0 ||
                    (after[0] && json_object_object_add(args, "after", json_object_new_string(after)) < 0))
                        return -ENOMEM;
                r = qga_client_call(c, "vmuser-list", args, timeout_ms, &page, qe, e);
                if (r == -EREMOTEIO && !after[0] && strstr(qe->desc, "takes no arguments")) {
                        /* An agent from before paging: its whole list in one reply. */
                        *qe = (struct qga_error) {};
                        *e = (struct verr) {};
                        return qga_client_call(c, "vmuser-list", NULL, timeout_ms, ret, qe, e);
                }
                if (r < 0)
                        return r;
                if (!json_object_is_type(page, json_type_array))
                        return verr_set(e, -EBADMSG, "the reply to vmuser-list is not an array");
                n = json_object_array_length(page);
                for (size_t i = 0; i < n; i++) {
                        json_object *entry = json_object_array_get_idx(page, i);
                        const char *name;
                        /* Names come sorted: each page must move on, or a guest could loop us. */
                        if (json_get_string(entry, "userName", &name) < 0 || !name_is_valid(name) ||
                            (after[0] && strcmp(name, after) <= 0))
                                return verr_set(e, -EBADMSG, "the reply to vmuser-list is not a sorted list of users");
                        snprintf(after, sizeof(after), "%s", name);
                        if (json_object_array_add(all, json_object_get(entry)) < 0) {
                                json_object_put(entry);
                                return -ENOMEM;
                        }
                }
                if (json_object_array_length(all) > AGENT_LIST_MAX_USERS)
                        return verr_set(e, -E2BIG, "the guest lists more than %u users", AGENT_LIST_MAX_USERS);
                if (n < AGENT_LIST_PAGE)
                        break;
        }
        *ret = TAKE_PTR(all);
        return 0;
}
