/* vm-backend.c: picking the backend for a VM argument, and the calls that dispatch through its
 * ops table (see vm-backend.h). The backends themselves are vm-backend-qemu.c and
 * vm-backend-libvirt.c. */
#include "vm-backend.h"

#include <errno.h>
#include <string.h>

#include "macro.h"

const char *vm_backend_kind_to_string(enum vm_backend_kind k) {
        return k == VM_BACKEND_LIBVIRT ? "libvirt" : "qemu";
}

int vm_backend_open(const char *spec, const struct vm_backend_options *o, struct vm_backend **ret, struct verr *e) {
        static const struct vm_backend_options none = {};

        if (!o)
                o = &none;
        if (!spec || !*spec)
                return verr_set(e, -EINVAL, "the VM argument is empty");
        if (strncmp(spec, VM_BACKEND_LIBVIRT_PREFIX, strlen(VM_BACKEND_LIBVIRT_PREFIX)) == 0) {
                const char *domain = spec + strlen(VM_BACKEND_LIBVIRT_PREFIX);
                if (!*domain)
                        return verr_set(e, -EINVAL, "'%s' names no libvirt domain (libvirt:DOMAIN)", spec);
                return vm_backend_libvirt_open(o->connect_uri ? o->connect_uri : VM_BACKEND_LIBVIRT_DEFAULT_URI,
                                               domain, o, ret, e);
        }
        if (o->connect_uri)
                return vm_backend_libvirt_open(o->connect_uri, spec, o, ret, e);
        return vm_backend_qemu_open(spec, o, ret, e);
}

struct vm_backend *vm_backend_free(struct vm_backend *b) {
        if (b)
                b->ops->free(b);
        return NULL;
}

void vm_backend_freep(struct vm_backend **b) {
        vm_backend_free(*b);
}

enum vm_backend_kind vm_backend_kind(const struct vm_backend *b) {
        return b->ops->kind;
}

int vm_backend_agent_socket(struct vm_backend *b, unsigned flags, char *buf, size_t size, struct verr *e) {
        return b->ops->agent_socket(b, flags, buf, size, e);
}

int vm_backend_export_home(struct vm_backend *b, const struct vm_home_params *p, struct home_export_info *ret,
                           struct verr *e) {
        return b->ops->export_home(b, p, ret, e);
}

int vm_backend_unexport_home(struct vm_backend *b, const char *user, unsigned flags, int unplug_timeout_ms,
                             struct verr *e) {
        return b->ops->unexport_home(b, user, flags, unplug_timeout_ms, e);
}

int vm_backend_list_exports(struct vm_backend *b, struct home_export_info **ret, size_t *ret_n, struct verr *e) {
        return b->ops->list_exports(b, ret, ret_n, e);
}

int vm_backend_describe(struct vm_backend *b, struct vm_backend_info *ret, struct verr *e) {
        return b->ops->describe(b, ret, e);
}

void vm_backend_probe_monitor(struct vm_backend *b, unsigned flags, struct vm_backend_monitor *ret) {
        *ret = (struct vm_backend_monitor) { .reachable = -ENOENT };
        if (b->ops->probe_monitor)
                b->ops->probe_monitor(b, flags, ret);
}

int vm_backend_monitor_command(struct vm_backend *b, const char *command, bool hmp, char **ret, struct verr *e) {
        if (b->ops->kind != VM_BACKEND_LIBVIRT)
                return verr_set(e, -EOPNOTSUPP, "%s is a bare QEMU: talk to its QMP socket directly", b->label);
        return vm_backend_libvirt_monitor_command(b, command, hmp, ret, e);
}
