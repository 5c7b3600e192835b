/* vm-backend-qemu.c: the bare-QEMU backend (see vm-backend.h).
 *
 * The VM is a runtime directory, given as a path (anything with a '/') or as a bare name below
 * $VMUSER_VM_DIR (default /run/vmuser/vm). It holds agent.sock, the chardev behind the guest's
 * org.vmuser.agent.0 port, and qmp.sock; --agent and --qmp override either. Home export is
 * home-export.c as it is: the backend only hands it the directory and the QMP socket. Nothing
 * here touches the file system when opening: a missing socket is found (and explained) when
 * connecting. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "export-prepare.h"
#include "macro.h"
#include "qmp-client.h"
#include "vm-backend.h"

#define VM_NAME_MAX 128

struct qemu_backend {
        struct vm_backend base; /* first */
        char dir[PATH_MAX];
        char agent_socket[PATH_MAX];
        char qmp_socket[PATH_MAX];
        int timeout_ms;
};

static struct qemu_backend *to_qemu(struct vm_backend *b) {
        return (struct qemu_backend *) b;
}

static bool vm_name_is_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > VM_NAME_MAX || s[0] == '.' || s[0] == '-')
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '_' || *p == '-' || *p == '.'))
                        return false;
        return true;
}

static int qemu_agent_socket(struct vm_backend *b, unsigned flags, char *buf, size_t size, struct verr *e) {
        struct qemu_backend *q = to_qemu(b);

        if ((size_t) snprintf(buf, size, "%s", q->agent_socket) >= size)
                return verr_set(e, -ENAMETOOLONG, "agent socket path '%s' is too long", q->agent_socket);
        return 0;
}

static int qemu_export_home(struct vm_backend *b, const struct vm_home_params *p, struct home_export_info *ret,
                            struct verr *e) {
        struct qemu_backend *q = to_qemu(b);
        struct home_export_params hp = {
                .vm_dir = q->dir,
                .qmp_socket = q->qmp_socket,
                .user = p->user,
                .host_uid = p->host_uid,
                .host_gid = p->host_gid,
                .guest_uid = p->guest_uid,
                .guest_gid = p->guest_gid,
                .source_dir = p->source_dir,
                .read_only = p->read_only,
                .qmp_timeout_ms = q->timeout_ms,
        };
        /* $VMUSER_FILE_SERVER (vmuser(1)); the libvirt backend reads it the same way. */
        int k = export_server_requested(&hp.server, e);
        if (k < 0)
                return k;
        return home_export(&hp, ret, NULL, e);
}

static int qemu_unexport_home(struct vm_backend *b, const char *user, unsigned flags, int unplug_timeout_ms,
                              struct verr *e) {
        struct qemu_backend *q = to_qemu(b);
        struct home_unexport_params hp = {
                .vm_dir = q->dir,
                .qmp_socket = q->qmp_socket,
                .user = user,
                .flags = flags & VM_BACKEND_UNEXPORT_FORCE ? HOME_UNEXPORT_FORCE : 0,
                .qmp_timeout_ms = q->timeout_ms,
                .unplug_timeout_ms = unplug_timeout_ms,
        };
        return home_unexport(&hp, e);
}

static int qemu_list_exports(struct vm_backend *b, struct home_export_info **ret, size_t *ret_n, struct verr *e) {
        return home_export_list(to_qemu(b)->dir, ret, ret_n, e);
}

static int qemu_describe(struct vm_backend *b, struct vm_backend_info *ret, struct verr *e) {
        struct qemu_backend *q = to_qemu(b);
        struct vm_backend_info i = {
                .kind = VM_BACKEND_QEMU,
                .shared_memory = -1,
                .free_ports = -1,
        };
        if (snprintf(i.name, sizeof(i.name), "%s", q->dir) >= (int) sizeof(i.name) ||
            snprintf(i.agent_socket, sizeof(i.agent_socket), "%s", q->agent_socket) >= (int) sizeof(i.agent_socket) ||
            snprintf(i.state_dir, sizeof(i.state_dir), "%s/" HOME_EXPORT_SUBDIR, q->dir) >= (int) sizeof(i.state_dir))
                return verr_set(e, -ENAMETOOLONG, "the paths of VM '%s' are too long", q->dir);
        /* Only a QMP socket that is missing or refuses says QEMU is gone; a busy or unreadable one
         * counts as running. */
        i.running = qmp_socket_probe(q->qmp_socket) != 0;
        *ret = i;
        return 0;
}

static void qemu_probe_monitor(struct vm_backend *b, unsigned flags, struct vm_backend_monitor *ret) {
        _cleanup_qmp_client_ struct qmp_client *qmp = NULL;
        struct qemu_backend *q = to_qemu(b);
        struct stat st;

        snprintf(ret->socket, sizeof(ret->socket), "%s", q->qmp_socket); /* fits: checked at open */
        ret->exists = stat(q->qmp_socket, &st) < 0 ? negative_errno() : 0;
        ret->is_socket = ret->exists == 0 && S_ISSOCK(st.st_mode);
        if (!(flags & VM_BACKEND_MONITOR_CONNECT) || !ret->is_socket)
                return;
        ret->reachable = qmp_client_connect(q->qmp_socket, q->timeout_ms, &qmp, &ret->error);
        if (ret->reachable >= 0) {
                ret->reachable = 0;
                snprintf(ret->version, sizeof(ret->version), "%s", qmp_client_qemu_version(qmp));
        }
}

static void qemu_free(struct vm_backend *b) {
        free(b);
}

static const struct vm_backend_ops qemu_ops = {
        .kind = VM_BACKEND_QEMU,
        .agent_socket = qemu_agent_socket,
        .export_home = qemu_export_home,
        .unexport_home = qemu_unexport_home,
        .list_exports = qemu_list_exports,
        .describe = qemu_describe,
        .probe_monitor = qemu_probe_monitor,
        .free = qemu_free,
};

int vm_backend_qemu_open(const char *spec, const struct vm_backend_options *o, struct vm_backend **ret,
                         struct verr *e) {
        _cleanup_free_ struct qemu_backend *q = calloc(1, sizeof(*q));
        const char *root;
        int k = 0;

        if (!q)
                return -ENOMEM;
        q->base.ops = &qemu_ops;
        q->timeout_ms = o->timeout_ms;
        if (strlen(spec) >= sizeof(q->base.label))
                return verr_set(e, -ENAMETOOLONG, "VM argument '%.64s...' is too long", spec);
        strcpy(q->base.label, spec);

        if (strchr(spec, '/') || streq(spec, ".") || streq(spec, "..")) {
                size_t n = strlen(spec);
                while (n > 1 && spec[n - 1] == '/')
                        n--;
                k |= snprintf(q->dir, sizeof(q->dir), "%.*s", (int) n, spec) >= (int) sizeof(q->dir);
        } else {
                root = getenv("VMUSER_VM_DIR");
                if (!root || !*root)
                        root = VM_BACKEND_QEMU_VM_DIR_DEFAULT;
                if (!vm_name_is_valid(spec))
                        return verr_set(e, -EINVAL,
                                        "'%s' is neither a directory (it has no '/') nor a valid VM name "
                                        "([A-Za-z0-9._-], at most %d characters, not starting with '.' or '-'); "
                                        "libvirt domains are written libvirt:DOMAIN",
                                        spec, VM_NAME_MAX);
                k |= snprintf(q->dir, sizeof(q->dir), "%s/%s", root, spec) >= (int) sizeof(q->dir);
        }
        {
                const char *d = streq(q->dir, "/") ? "" : q->dir;
                if (o->agent_socket)
                        k |= snprintf(q->agent_socket, sizeof(q->agent_socket), "%s", o->agent_socket) >=
                             (int) sizeof(q->agent_socket);
                else
                        k |= snprintf(q->agent_socket, sizeof(q->agent_socket), "%s/agent.sock", d) >=
                             (int) sizeof(q->agent_socket);
                if (o->qmp_socket)
                        k |= snprintf(q->qmp_socket, sizeof(q->qmp_socket), "%s", o->qmp_socket) >=
                             (int) sizeof(q->qmp_socket);
                else
                        k |= snprintf(q->qmp_socket, sizeof(q->qmp_socket), "%s/" HOME_EXPORT_DEFAULT_QMP_SOCKET, d) >=
                             (int) sizeof(q->qmp_socket);
        }
        if (k)
                return verr_set(e, -ENAMETOOLONG, "the socket paths of VM '%s' are too long", spec);
        *ret = &TAKE_PTR(q)->base;
        return 0;
}
