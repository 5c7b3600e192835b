/* home-export.c: the export steps, their rollback, and the state queries (see home-export.h).
 *
 * home_export() runs the step table in order on one struct export_ctx, which remembers what has
 * been done (directory made, state written, mounted, virtiofsd started, chardev added, device
 * added). When a step fails, or the progress callback says stop, export_rollback() undoes
 * exactly those things in reverse order and the error names the failed step; if undoing
 * something fails too, that is added to the message and the state file is kept so that
 * home_unexport() can finish the job later.
 *
 * home_unexport() works from the state file but trusts only what it finds: it asks QEMU whether
 * the device and chardev exist, asks virtiofsd.c whether virtiofsd runs, and looks whether the
 * staging mount is there. The QMP side is skipped when the VM is gone.
 *
 * The state directory VM_DIR/homes/NAME (its lock, state.json, removal) is export-state.c's,
 * shared with the libvirt backend; this file adds virtiofsd's files and the QMP objects. */
#include "home-export.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "dir-util.h"
#include "export-prepare.h"
#include "export-state.h"
#include "idmap-mount.h"
#include "json-util.h"
#include "macro.h"
#include "names.h"
#include "qmp-client.h"
#include "server-id.h"

#define VIRTIOFSD_STOP_TIMEOUT_MS 5000

const char *home_export_step_to_string(enum home_export_step step) {
        static const char *const names[_HOME_EXPORT_STEP_MAX] = {
                [HOME_EXPORT_STEP_CHECK] = "check",         [HOME_EXPORT_STEP_STAGING] = "staging",
                [HOME_EXPORT_STEP_VIRTIOFSD] = "virtiofsd", [HOME_EXPORT_STEP_CHARDEV] = "chardev",
                [HOME_EXPORT_STEP_DEVICE] = "device",       [HOME_EXPORT_STEP_RECORD] = "record",
        };
        return step < _HOME_EXPORT_STEP_MAX ? names[step] : "unknown";
}

const char *home_export_server_to_string(enum home_export_server s) {
        switch (s) {
        case HOME_EXPORT_SERVER_UNPRIVILEGED:
                return "unprivileged";
        case HOME_EXPORT_SERVER_ROOT:
                return "root";
        default:
                return "auto";
        }
}

int home_export_server_from_string(const char *s, enum home_export_server *ret) {
        for (enum home_export_server i = HOME_EXPORT_SERVER_AUTO; i <= HOME_EXPORT_SERVER_ROOT; i++)
                if (s && streq(s, home_export_server_to_string(i))) {
                        *ret = i;
                        return 0;
                }
        return -EINVAL;
}

/* What a step does, for "Cannot export ...: <what> failed: ...". */
static const char *step_description(enum home_export_step step) {
        static const char *const desc[_HOME_EXPORT_STEP_MAX] = {
                [HOME_EXPORT_STEP_CHECK] = "checking the VM and the arguments",
                [HOME_EXPORT_STEP_STAGING] = "making the idmapped staging mount",
                [HOME_EXPORT_STEP_VIRTIOFSD] = "starting virtiofsd",
                [HOME_EXPORT_STEP_CHARDEV] = "chardev-add",
                [HOME_EXPORT_STEP_DEVICE] = "device_add",
                [HOME_EXPORT_STEP_RECORD] = "recording the export",
        };
        return step < _HOME_EXPORT_STEP_MAX ? desc[step] : "an unknown step";
}

static uint32_t fnv1a(const char *s) {
        uint32_t h = 2166136261u;
        for (; *s; s++)
                h = (h ^ (unsigned char) *s) * 16777619u;
        return h;
}

int home_export_tag(const char *user, char *buf, size_t size) {
        size_t n;

        if (!user || !name_is_valid(user))
                return -EINVAL;
        n = strlen(HOME_EXPORT_TAG_PREFIX) + strlen(user);
        if (n <= HOME_SPEC_TAG_MAX) {
                if (size <= n)
                        return -ENOBUFS;
                snprintf(buf, size, HOME_EXPORT_TAG_PREFIX "%s", user);
                return 0;
        }
        if (size <= HOME_SPEC_TAG_MAX)
                return -ENOBUFS;
        snprintf(buf, size, HOME_EXPORT_TAG_PREFIX "%.20s-%08x", user, fnv1a(user));
        return 0;
}

/* ---- paths and directories ----------------------------------------------------------------- */

struct export_paths {
        struct export_state_paths dirs; /* VM_DIR/homes, VM_DIR/homes/NAME, .../NAME/mnt/home */
        char socket[PATH_MAX];          /* VM_DIR/homes/NAME/virtiofsd.sock */
        char qmp[PATH_MAX];
};

static int make_paths(const char *vm_dir, const char *qmp_socket, const char *user, struct export_paths *ret,
                      struct verr *e) {
        struct export_paths p = {};
        int k = 0;

        if (!vm_dir || vm_dir[0] != '/')
                return verr_set(e, -EINVAL, "VM directory '%s' is not an absolute path", strempty(vm_dir));
        if (!user || !name_is_valid(user))
                return verr_set(e, -EINVAL, "user name '%s' is not valid", strempty(user));
        if (qmp_socket && qmp_socket[0] != '/')
                return verr_set(e, -EINVAL, "QMP socket '%s' is not an absolute path", qmp_socket);

        k |= export_state_paths_make(vm_dir, user, &p.dirs) < 0;
        k |= snprintf(p.socket, sizeof(p.socket), "%s/" HOME_EXPORT_SOCKET, p.dirs.user_dir) >=
             (int) sizeof(p.socket);
        if (qmp_socket)
                k |= snprintf(p.qmp, sizeof(p.qmp), "%s", qmp_socket) >= (int) sizeof(p.qmp);
        else
                k |= snprintf(p.qmp, sizeof(p.qmp), "%s/" HOME_EXPORT_DEFAULT_QMP_SOCKET, vm_dir) >=
                     (int) sizeof(p.qmp);
        if (k)
                return verr_set(e, -ENAMETOOLONG, "VM directory '%s' is too long", vm_dir);
        *ret = p;
        return 0;
}

/* The VM directory must be root's and writable by nobody else: we hand paths below it to
 * virtiofsd, QEMU and umount, so no other user may be able to swap a component. */
static int open_vm_dir(const char *vm_dir, int *ret_fd, struct verr *e) {
        _cleanup_close_ int fd = open(vm_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct stat st;

        if (fd < 0)
                return verr_set(e, negative_errno(), "cannot open VM directory '%s': %m", vm_dir);
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)))
                return verr_set(e, -EPERM, "VM directory '%s' must belong to root and not be writable by others",
                                vm_dir);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* ---- QMP helpers --------------------------------------------------------------------------- */

static int qom_get(struct qmp_client *c, const char *path, const char *property, int timeout_ms,
                   json_object **ret, struct qmp_error *qe, struct verr *e) {
        _cleanup_json_ json_object *args = json_object_new_object();

        if (!args || json_object_object_add(args, "path", json_object_new_string(path)) < 0 ||
            json_object_object_add(args, "property", json_object_new_string(property)) < 0)
                return -ENOMEM;
        return qmp_client_execute(c, "qom-get", args, timeout_ms, ret, qe, e);
}

static int qom_list(struct qmp_client *c, const char *path, int timeout_ms, json_object **ret, struct verr *e) {
        _cleanup_json_ json_object *args = json_object_new_object();
        _cleanup_json_ json_object *list = NULL;
        int k;

        if (!args || json_object_object_add(args, "path", json_object_new_string(path)) < 0)
                return -ENOMEM;
        k = qmp_client_execute(c, "qom-list", args, timeout_ms, &list, NULL, e);
        if (k < 0)
                return k;
        if (!json_object_is_type(list, json_type_array))
                return verr_set(e, -EBADMSG, "qom-list %s did not return a list", path);
        *ret = TAKE_PTR(list);
        return 0;
}

/* Whether /machine/peripheral has a child called id. */
static int device_exists(struct qmp_client *c, const char *id, int timeout_ms, struct verr *e) {
        _cleanup_json_ json_object *list = NULL;
        int k = qom_list(c, "/machine/peripheral", timeout_ms, &list, e);

        if (k < 0)
                return k;
        for (size_t i = 0; i < json_object_array_length(list); i++) {
                const char *name;
                if (json_get_string(json_object_array_get_idx(list, i), "name", &name) == 0 && streq(name, id))
                        return 1;
        }
        return 0;
}

static int chardev_exists(struct qmp_client *c, const char *id, int timeout_ms, struct verr *e) {
        _cleanup_json_ json_object *list = NULL;
        int k = qmp_client_execute(c, "query-chardev", NULL, timeout_ms, &list, NULL, e);

        if (k < 0)
                return k;
        if (!json_object_is_type(list, json_type_array))
                return verr_set(e, -EBADMSG, "query-chardev did not return a list");
        for (size_t i = 0; i < json_object_array_length(list); i++) {
                const char *label;
                if (json_get_string(json_object_array_get_idx(list, i), "label", &label) == 0 && streq(label, id))
                        return 1;
        }
        return 0;
}

static int chardev_remove(struct qmp_client *c, const char *id, int timeout_ms, struct verr *e) {
        _cleanup_json_ json_object *args = json_object_new_object();

        if (!args || json_object_object_add(args, "id", json_object_new_string(id)) < 0)
                return -ENOMEM;
        return qmp_client_execute(c, "chardev-remove", args, timeout_ms, NULL, NULL, e);
}

/* The VM's RAM must be shareable with virtiofsd (vhost-user maps it). QEMU would accept
 * device_add anyway and fail only when the guest driver starts, so check up front. */
static int check_shared_memory(struct qmp_client *c, int timeout_ms, struct verr *e) {
        _cleanup_json_ json_object *backend = NULL, *share = NULL;
        const char *path;
        int k;

        k = qom_get(c, "/machine", "memory-backend", timeout_ms, &backend, NULL, NULL);
        if (k == -EREMOTEIO)
                return 0; /* a QEMU without the property: cannot tell, let device_add decide */
        if (k < 0)
                return verr_set(e, k, "cannot read the VM's memory backend");
        if (!json_object_is_type(backend, json_type_string))
                return verr_set(e, -EBADMSG, "qom-get memory-backend did not return a string");
        path = json_object_get_string(backend);
        if (!*path)
                return 0; /* RAM from NUMA nodes' memdevs: not checked here */
        if (path[0] != '/')
                return 0;
        k = qom_get(c, path, "share", timeout_ms, &share, NULL, NULL);
        if (k == -EREMOTEIO)
                return 0;
        if (k < 0)
                return verr_set(e, k, "cannot read whether the VM's memory is shared");
        if (json_object_is_type(share, json_type_boolean) && !json_object_get_boolean(share))
                return verr_set(e, -EOPNOTSUPP,
                                "the VM's memory (%s) is not shared, which vhost-user-fs needs: start the VM with "
                                "-object memory-backend-memfd,id=mem,size=SIZE,share=on -machine TYPE,memory-backend=mem",
                                path);
        return 0;
}

static bool is_root_port_type(const char *type) {
        return streq(type, "child<pcie-root-port>") || streq(type, "child<ioh3420>");
}

/* A root port is free when its secondary bus (named like the port) has no child device, and it
 * is hot-plug capable (hotplug=off ports are skipped). */
static int root_port_is_free(struct qmp_client *c, const char *id, int timeout_ms, struct verr *e) {
        _cleanup_json_ json_object *hotplug = NULL, *children = NULL;
        char path[256];
        int k;

        snprintf(path, sizeof(path), "/machine/peripheral/%s", id);
        k = qom_get(c, path, "hotplug", timeout_ms, &hotplug, NULL, NULL);
        if (k == 0 && json_object_is_type(hotplug, json_type_boolean) && !json_object_get_boolean(hotplug))
                return 0;
        if (k < 0 && k != -EREMOTEIO)
                return verr_set(e, k, "cannot read property hotplug of %s", id);

        snprintf(path, sizeof(path), "/machine/peripheral/%s/%s", id, id);
        k = qom_list(c, path, timeout_ms, &children, e);
        if (k < 0)
                return k;
        for (size_t i = 0; i < json_object_array_length(children); i++) {
                const char *name;
                if (json_get_string(json_object_array_get_idx(children, i), "name", &name) == 0 &&
                    strncmp(name, "child[", 6) == 0)
                        return 0;
        }
        return 1;
}

static int compare_port_names(const void *a, const void *b) {
        return strverscmp(*(const char *const *) a, *(const char *const *) b);
}

/* Root ports are tried in natural order of their ids (rp1, rp2, ..., rp10), not in QOM's
 * (hash) order, so that exports land predictably. */
#define ROOT_PORTS_MAX 256

static int find_bus(struct qmp_client *c, int timeout_ms, char *bus, size_t size, struct verr *e) {
        _cleanup_json_ json_object *type = NULL, *list = NULL;
        const char *ports[ROOT_PORTS_MAX];
        const char *machine;
        size_t n_ports = 0;
        int k;

        k = qom_get(c, "/machine", "type", timeout_ms, &type, NULL, e);
        if (k < 0)
                return k;
        if (!json_object_is_type(type, json_type_string))
                return verr_set(e, -EBADMSG, "qom-get /machine type did not return a string");
        machine = json_object_get_string(type);

        if (!strstr(machine, "q35")) {
                if (strstr(machine, "i440fx") || strncmp(machine, "pc-", 3) == 0) {
                        snprintf(bus, size, "pci.0");
                        return 0;
                }
                return verr_set(e, -EOPNOTSUPP, "machine type '%s' is not supported (q35 or pc)", machine);
        }

        k = qom_list(c, "/machine/peripheral", timeout_ms, &list, e);
        if (k < 0)
                return k;
        for (size_t i = 0; i < json_object_array_length(list) && n_ports < ROOT_PORTS_MAX; i++) {
                json_object *entry = json_object_array_get_idx(list, i);
                const char *name, *t;
                if (json_get_string(entry, "name", &name) < 0 || json_get_string(entry, "type", &t) < 0 ||
                    !is_root_port_type(t) || strlen(name) >= size || strlen(name) > 100)
                        continue;
                ports[n_ports++] = name;
        }
        qsort(ports, n_ports, sizeof(ports[0]), compare_port_names);
        for (size_t i = 0; i < n_ports; i++) {
                k = root_port_is_free(c, ports[i], timeout_ms, e);
                if (k < 0)
                        return k;
                if (k > 0) {
                        snprintf(bus, size, "%s", ports[i]);
                        return 0;
                }
        }
        return verr_set(e, -ENOSPC,
                        "no free pcie-root-port on this q35 VM (%zu with an id, all in use or without hotplug): "
                        "start the VM with one spare port per user to attach, e.g. "
                        "-device pcie-root-port,id=rp1,bus=pcie.0,chassis=1,slot=1",
                        n_ports);
}

/* ---- export --------------------------------------------------------------------------------- */

struct export_ctx {
        const struct home_export_params *p;
        struct export_paths paths;
        struct home_export_info info;
        struct virtiofsd_binary binary;
        struct qmp_client *qmp;
        int vm_fd, homes_fd, user_fd, lock_fd, source_fd;
        int qmp_timeout, start_timeout;
        char unit[256];
        bool dir_made, mounted, virtiofsd_started, chardev_added, device_added, id_claimed;
};

static int export_check(struct export_ctx *x, struct verr *e) {
        const struct home_export_params *p = x->p;
        struct home_export_info *i = &x->info;
        struct sockaddr_un sa;
        int k;

        k = make_paths(p->vm_dir, p->qmp_socket, p->user, &x->paths, e);
        if (k < 0)
                return k;
        if (strlen(x->paths.socket) >= sizeof(sa.sun_path))
                return verr_set(e, -ENAMETOOLONG, "socket path '%s' is too long for QEMU (at most %zu bytes)",
                                x->paths.socket, sizeof(sa.sun_path) - 1);
        /* The source: must be a directory of the host user, whatever symlinks led there. */
        k = export_source_open(p->user, p->host_uid, p->host_gid, p->guest_uid, p->guest_gid, p->source_dir,
                               &x->source_fd, e);
        if (k < 0)
                return k;

        k = open_vm_dir(p->vm_dir, &x->vm_fd, e);
        if (k < 0)
                return k;
        k = export_state_ensure_dir_at(x->vm_fd, HOME_EXPORT_SUBDIR, 0711, &x->homes_fd);
        if (k < 0)
                return verr_set(e, k, "cannot create '%s': %s", x->paths.dirs.homes, strerror(-k));
        k = export_state_lock(x->homes_fd, "VM", x->qmp_timeout, &x->lock_fd, e);
        if (k < 0)
                return k;

        /* Left over from an earlier attempt? (export-prepare.c, the same for libvirt) */
        k = export_leftover_check(x->homes_fd, p->user, &x->paths.dirs, NULL, "VM", e);
        if (k < 0)
                return k;

        k = virtiofsd_detect(p->virtiofsd, &x->binary, e);
        if (k < 0)
                return k;

        {
                struct verr why = {};
                k = qmp_client_connect(x->paths.qmp, x->qmp_timeout, &x->qmp, &why);
                if (k < 0)
                        return verr_set(e, k, "%s (is the VM running?)", verr_text(&why, k));
        }
        k = check_shared_memory(x->qmp, x->qmp_timeout, e);
        if (k < 0)
                return k;

        snprintf(i->user, sizeof(i->user), "%s", p->user);
        k = home_export_tag(p->user, i->tag, sizeof(i->tag));
        if (k < 0)
                return verr_set(e, k, "cannot make a tag for '%s'", p->user);
        snprintf(i->device_id, sizeof(i->device_id), HOME_EXPORT_ID_PREFIX "%s", p->user);
        snprintf(i->chardev_id, sizeof(i->chardev_id), HOME_EXPORT_ID_PREFIX "%s", p->user);

        k = device_exists(x->qmp, i->device_id, x->qmp_timeout, e);
        if (k < 0)
                return k;
        if (k > 0)
                return verr_set(e, -EBUSY,
                                "QEMU still has device %s: the guest has not completed an earlier unplug of %s's home",
                                i->device_id, p->user);
        k = chardev_exists(x->qmp, i->chardev_id, x->qmp_timeout, e);
        if (k < 0)
                return k;
        if (k > 0) {
                /* From a forced detach whose unplug the guest completed since. */
                k = chardev_remove(x->qmp, i->chardev_id, x->qmp_timeout, e);
                if (k < 0)
                        return k;
        }

        k = find_bus(x->qmp, x->qmp_timeout, i->bus, sizeof(i->bus), e);
        if (k < 0)
                return k;

        snprintf(i->source, sizeof(i->source), "%s", p->source_dir);
        i->read_only = p->read_only;
        i->host_uid = p->host_uid, i->host_gid = p->host_gid;
        i->guest_uid = p->guest_uid, i->guest_gid = p->guest_gid;
        snprintf(i->virtiofsd_path, sizeof(i->virtiofsd_path), "%s", x->binary.path);
        i->flavour = x->binary.flavour;
        i->translate_ids = x->binary.translate_ids && (p->host_uid != p->guest_uid || p->host_gid != p->guest_gid);

        /* The file server: unprivileged unless the kernel cannot make user namespaces. */
        k = export_server_choose(p->server, &i->server, e);
        if (k < 0)
                return k;
        if (i->server == HOME_EXPORT_SERVER_UNPRIVILEGED) {
                i->translate_ids = false; /* the user namespace maps the IDs */
                k = server_id_claim(x->paths.dirs.user_dir, &i->server_uid, e);
                if (k < 0)
                        return k;
                x->id_claimed = true;
        }

        /* The user's directory, and the state file before anything else happens. */
        k = export_state_ensure_dir_at(x->homes_fd, p->user, 0711, &x->user_fd);
        if (k < 0)
                return verr_set(e, k, "cannot create '%s': %s", x->paths.dirs.user_dir, strerror(-k));
        x->dir_made = true;
        k = export_state_write(x->user_fd, i, "exporting", 0);
        if (k < 0)
                return verr_set(e, k, "cannot write '%s/" HOME_EXPORT_STATE_FILE "': %s", x->paths.dirs.user_dir,
                                strerror(-k));
        return 0;
}

static int export_staging(struct export_ctx *x, struct verr *e) {
        const struct home_export_params *p = x->p;
        bool unprivileged = x->info.server == HOME_EXPORT_SERVER_UNPRIVILEGED;
        struct idmap_mount_map map = {
                .disk_uid = p->host_uid,
                .disk_gid = p->host_gid,
                /* When virtiofsd translates, or its user namespace maps, the mount maps the host
                 * IDs onto themselves: it still confines what the guest can create to the user's
                 * own IDs, and carries nosuid, nodev and read-only. */
                .mount_uid = x->info.translate_ids || unprivileged ? p->host_uid : p->guest_uid,
                .mount_gid = x->info.translate_ids || unprivileged ? p->host_gid : p->guest_gid,
        };
        int k;

        k = export_staging_make(x->user_fd, &x->paths.dirs, x->source_fd, &map, p->read_only, e);
        if (k < 0)
                return k;
        x->mounted = true;
        return 0;
}

static void unit_name_for(const struct export_ctx *x, char *buf, size_t size) {
        snprintf(buf, size, "vmuser-virtiofsd-%s-%08x.service", x->p->user, fnv1a(x->p->vm_dir));
}

static int export_virtiofsd(struct export_ctx *x, struct verr *e) {
        const struct home_export_params *p = x->p;
        struct virtiofsd_config cfg = {
                .shared_dir = x->paths.dirs.staging,
                .socket_path = x->paths.socket,
                .read_only = p->read_only,
                .translate_ids = x->info.translate_ids,
                .host_uid = p->host_uid,
                .host_gid = p->host_gid,
                .guest_uid = p->guest_uid,
                .guest_gid = p->guest_gid,
                .unprivileged = x->info.server == HOME_EXPORT_SERVER_UNPRIVILEGED,
                .server_uid = x->info.server_uid,
                .server_gid = (gid_t) x->info.server_uid,
        };
        uid_t qemu_uid = qmp_client_peer_uid(x->qmp);
        int k;

        unit_name_for(x, x->unit, sizeof(x->unit));
        x->virtiofsd_started = true; /* from here on, rollback asks virtiofsd.c to stop whatever started */
        k = virtiofsd_start(&x->binary, &cfg, x->paths.dirs.user_dir, p->supervisor, x->unit, x->start_timeout, NULL,
                            e);
        if (k < 0)
                return k;
        /* QEMU has to connect to the socket; virtiofsd makes it root's, 0600. */
        if (qemu_uid != 0 &&
            fchownat(x->user_fd, HOME_EXPORT_SOCKET, qemu_uid, qmp_client_peer_gid(x->qmp), AT_SYMLINK_NOFOLLOW) < 0)
                return verr_set(e, negative_errno(), "cannot hand socket '%s' to QEMU's UID %u: %m", x->paths.socket,
                                (unsigned) qemu_uid);
        return 0;
}

static int export_chardev(struct export_ctx *x, struct verr *e) {
        _cleanup_json_ json_object *args = NULL;
        char json[PATH_MAX + 256];
        int k;

        /* Built as text and parsed back: the nesting is easier to read this way. */
        _cleanup_json_ json_object *path = json_object_new_string(x->paths.socket);
        if (!path)
                return -ENOMEM;
        snprintf(json, sizeof(json),
                 "{\"id\":\"%s\",\"backend\":{\"type\":\"socket\",\"data\":{\"addr\":{\"type\":\"unix\","
                 "\"data\":{\"path\":%s}},\"server\":false}}}",
                 x->info.chardev_id, json_to_compact(path));
        k = json_parse_strict(json, strlen(json), &args);
        if (k < 0)
                return verr_set(e, k, "cannot build the chardev-add arguments");
        /* Set before asking: a request that timed out may still have been carried out, so the
         * rollback looks whether the chardev exists (any of that name is ours, see export_check). */
        x->chardev_added = true;
        return qmp_client_execute(x->qmp, "chardev-add", args, x->qmp_timeout, NULL, NULL, e);
}

static int export_device(struct export_ctx *x, struct verr *e) {
        _cleanup_json_ json_object *args = json_object_new_object();

        if (!args || json_object_object_add(args, "driver", json_object_new_string("vhost-user-fs-pci")) < 0 ||
            json_object_object_add(args, "id", json_object_new_string(x->info.device_id)) < 0 ||
            json_object_object_add(args, "chardev", json_object_new_string(x->info.chardev_id)) < 0 ||
            json_object_object_add(args, "tag", json_object_new_string(x->info.tag)) < 0 ||
            json_object_object_add(args, "bus", json_object_new_string(x->info.bus)) < 0)
                return -ENOMEM;
        x->device_added = true; /* as for the chardev: the rollback looks */
        return qmp_client_execute(x->qmp, "device_add", args, x->qmp_timeout, NULL, NULL, e);
}

static int export_record(struct export_ctx *x, struct verr *e) {
        int k = export_state_write(x->user_fd, &x->info, "exported", 0);
        if (k < 0)
                return verr_set(e, k, "cannot write '%s/" HOME_EXPORT_STATE_FILE "': %s", x->paths.dirs.user_dir,
                                strerror(-k));
        return 0;
}

/* device_del, then wait for DEVICE_DELETED of the device itself. 1: gone, 0: still there when
 * the time was up. */
static int unplug_device(struct qmp_client *c, const char *id, int qmp_timeout, int unplug_timeout, struct verr *e) {
        _cleanup_json_ json_object *args = json_object_new_object();
        struct qmp_match_string match = { .key = "device", .value = id };
        struct qmp_error qe = {};
        struct verr ignored = {};
        int k;

        if (!args || json_object_object_add(args, "id", json_object_new_string(id)) < 0)
                return -ENOMEM;
        k = qmp_client_execute(c, "device_del", args, qmp_timeout, NULL, &qe, &ignored);
        if (k == -EREMOTEIO) {
                if (streq(qe.error_class, "DeviceNotFound"))
                        return 1;
                /* "Device X is already in the process of unplug": an earlier detach asked. */
                if (!strstr(qe.desc, "process of unplug"))
                        return verr_set(e, k, "QEMU refused device_del %s: %s", id, qe.desc);
        } else if (k < 0)
                return verr_set(e, k, "device_del %s: %s", id, verr_text(&ignored, k));

        k = qmp_client_wait_event(c, "DEVICE_DELETED", qmp_match_data_string, &match, unplug_timeout, NULL, &ignored);
        if (k == 0)
                return 1;
        if (k != -ETIMEDOUT)
                return verr_set(e, k, "waiting for DEVICE_DELETED of %s: %s", id, verr_text(&ignored, k));
        /* The event may have come before we connected (an earlier detach): look. */
        k = device_exists(c, id, qmp_timeout, e);
        if (k < 0)
                return k;
        return !k;
}

/* The QMP connection for the rollback: the one we have if it still works, else a new one (QEMU
 * may have closed ours). 0 with *ret_gone set when QEMU is not there any more: its devices are
 * gone with it. */
static int rollback_qmp(struct export_ctx *x, bool *ret_gone, struct verr *e) {
        int k;

        *ret_gone = false;
        if (x->qmp && !qmp_client_is_dead(x->qmp))
                return 0;
        struct verr why = {};
        x->qmp = qmp_client_free(x->qmp);
        k = qmp_client_connect(x->paths.qmp, x->qmp_timeout, &x->qmp, &why);
        if (k == -ENOENT || k == -ECONNREFUSED) {
                *ret_gone = true;
                return 0;
        }
        return k < 0 ? verr_set(e, k, "%s", verr_text(&why, k)) : 0;
}

/* Undoes what x says was done, in reverse order; reasons for what could not be undone go to e.
 * Anything that cannot be undone stops the rollback there, and the state file stays (phase
 * "exporting") so that home_unexport() can finish. */
static void export_rollback(struct export_ctx *x, struct verr *e) {
        bool keep_state = false, vm_gone = false;
        int k;

        if (x->device_added || x->chardev_added) {
                k = rollback_qmp(x, &vm_gone, e);
                if (k < 0)
                        keep_state = true;
        }
        if (x->device_added && !vm_gone && !keep_state) {
                k = device_exists(x->qmp, x->info.device_id, x->qmp_timeout, e);
                if (k > 0) {
                        k = unplug_device(x->qmp, x->info.device_id, x->qmp_timeout,
                                          HOME_EXPORT_DEFAULT_UNPLUG_TIMEOUT_MS, e);
                        if (k == 0)
                                k = verr_set(e, -ETIMEDOUT, "the guest did not release device %s",
                                             x->info.device_id);
                }
                if (k < 0)
                        keep_state = true;
        }
        if (x->chardev_added && !vm_gone && !keep_state) {
                k = chardev_exists(x->qmp, x->info.chardev_id, x->qmp_timeout, e);
                if (k > 0)
                        k = chardev_remove(x->qmp, x->info.chardev_id, x->qmp_timeout, e);
                if (k < 0)
                        keep_state = true;
        }
        if (x->virtiofsd_started && !keep_state) {
                k = virtiofsd_stop(x->paths.dirs.user_dir, x->paths.socket, VIRTIOFSD_STOP_TIMEOUT_MS, e);
                if (k < 0)
                        keep_state = true;
        }
        if (x->mounted && !keep_state) {
                k = idmap_mount_remove(x->paths.dirs.staging, e);
                if (k < 0)
                        keep_state = true;
        }
        if (x->dir_made && !keep_state) {
                k = export_state_remove_user_dir(x->homes_fd, x->p->user, &x->paths.dirs, e);
                if (k < 0)
                        keep_state = true;
        }
        if (x->id_claimed && !keep_state)
                (void) server_id_release(x->info.server_uid);
        if (keep_state && x->user_fd >= 0)
                (void) export_state_write(x->user_fd, &x->info, "exporting", 0);
}

static void export_ctx_done(struct export_ctx *x) {
        qmp_client_free(x->qmp);
        x->qmp = NULL;
        int *fds[] = { &x->source_fd, &x->user_fd, &x->homes_fd, &x->vm_fd, &x->lock_fd };
        /* The lock goes last, after everything it protects is settled. */
        for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                closep(fds[i]), *fds[i] = -1;
}

int home_export(const struct home_export_params *p, struct home_export_info *ret,
                enum home_export_step *ret_failed_step, struct verr *e) {
        static int (*const steps[_HOME_EXPORT_STEP_MAX])(struct export_ctx *, struct verr *) = {
                [HOME_EXPORT_STEP_CHECK] = export_check,         [HOME_EXPORT_STEP_STAGING] = export_staging,
                [HOME_EXPORT_STEP_VIRTIOFSD] = export_virtiofsd, [HOME_EXPORT_STEP_CHARDEV] = export_chardev,
                [HOME_EXPORT_STEP_DEVICE] = export_device,       [HOME_EXPORT_STEP_RECORD] = export_record,
        };
        struct export_ctx x = {
                .p = p,
                .vm_fd = -1, .homes_fd = -1, .user_fd = -1, .lock_fd = -1, .source_fd = -1,
                .qmp_timeout = p->qmp_timeout_ms > 0 ? p->qmp_timeout_ms : HOME_EXPORT_DEFAULT_QMP_TIMEOUT_MS,
                .start_timeout = p->start_timeout_ms > 0 ? p->start_timeout_ms : HOME_EXPORT_DEFAULT_START_TIMEOUT_MS,
        };
        struct verr cause = {}, rollback = {};
        enum home_export_step step;
        int k = 0;

        for (step = 0; step < _HOME_EXPORT_STEP_MAX; step++) {
                k = steps[step](&x, &cause);
                if (k < 0)
                        break;
                if (p->progress) {
                        k = p->progress(step, p->userdata);
                        if (k < 0) {
                                verr_set(&cause, k, "interrupted by the caller after step %s",
                                         home_export_step_to_string(step));
                                break;
                        }
                }
        }

        if (k >= 0) {
                if (ret)
                        *ret = x.info;
                export_ctx_done(&x);
                return 0;
        }

        export_rollback(&x, &rollback);
        export_ctx_done(&x);
        if (ret_failed_step)
                *ret_failed_step = step;
        if (rollback.text[0])
                return verr_set(e, k, "Cannot export the home of %s: %s failed: %s; the rollback is incomplete (%s), "
                                      "detach %s to finish it",
                                strempty(p->user), step_description(step), verr_text(&cause, k), rollback.text,
                                strempty(p->user));
        if (step == HOME_EXPORT_STEP_CHECK && !x.dir_made)
                return verr_set(e, k, "Cannot export the home of %s: %s", strempty(p->user), verr_text(&cause, k));
        return verr_set(e, k, "Cannot export the home of %s: %s failed: %s; everything done before was rolled back",
                        strempty(p->user), step_description(step), verr_text(&cause, k));
}

/* ---- unexport ------------------------------------------------------------------------------- */

int home_unexport(const struct home_unexport_params *p, struct verr *e) {
        _cleanup_close_ int vm_fd = -1, homes_fd = -1, lock_fd = -1, user_fd = -1;
        _cleanup_qmp_client_ struct qmp_client *qmp = NULL;
        int qmp_timeout = p->qmp_timeout_ms > 0 ? p->qmp_timeout_ms : HOME_EXPORT_DEFAULT_QMP_TIMEOUT_MS;
        int unplug_timeout = p->unplug_timeout_ms > 0 ? p->unplug_timeout_ms : HOME_EXPORT_DEFAULT_UNPLUG_TIMEOUT_MS;
        bool force = p->flags & HOME_UNEXPORT_FORCE, qemu_keeps = false;
        struct export_paths paths;
        struct home_export_info info;
        struct verr why = {};
        int k;

        k = make_paths(p->vm_dir, p->qmp_socket, p->user, &paths, e);
        if (k < 0)
                return k;
        k = open_vm_dir(p->vm_dir, &vm_fd, e);
        if (k < 0)
                return k;
        homes_fd = openat(vm_fd, HOME_EXPORT_SUBDIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (homes_fd < 0) {
                if (errno == ENOENT)
                        return verr_set(e, -ENOENT, "no home of %s is exported to this VM", p->user);
                return verr_set(e, negative_errno(), "cannot open '%s': %m", paths.dirs.homes);
        }
        k = export_state_lock(homes_fd, "VM", qmp_timeout, &lock_fd, e);
        if (k < 0)
                return k;
        user_fd = openat(homes_fd, p->user, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (user_fd < 0) {
                if (errno == ENOENT)
                        return verr_set(e, -ENOENT, "no home of %s is exported to this VM", p->user);
                return verr_set(e, negative_errno(), "cannot open '%s': %m", paths.dirs.user_dir);
        }
        k = export_state_read(user_fd, NULL, &info);
        if (k == -ENOENT) {
                /* Only an early part of an export was made: no QEMU object can exist. */
                k = virtiofsd_stop(paths.dirs.user_dir, paths.socket, VIRTIOFSD_STOP_TIMEOUT_MS, e);
                if (k >= 0)
                        k = idmap_mount_remove(paths.dirs.staging, e);
                if (k >= 0)
                        k = export_state_remove_user_dir(homes_fd, p->user, &paths.dirs, e);
                return k < 0 ? k : 0;
        }
        if (k < 0)
                return verr_set(e, k, "cannot read '%s/" HOME_EXPORT_STATE_FILE "': %s", paths.dirs.user_dir,
                                strerror(-k));
        if (!streq(info.user, p->user))
                return verr_set(e, -EBADMSG, "'%s/" HOME_EXPORT_STATE_FILE "' is about user '%s'", paths.dirs.user_dir,
                                info.user);
        k = export_state_write(user_fd, &info, "unexporting", 0);
        if (k < 0)
                return verr_set(e, k, "cannot write '%s/" HOME_EXPORT_STATE_FILE "': %s", paths.dirs.user_dir,
                                strerror(-k));

        /* QEMU's side: device, then chardev. */
        k = qmp_client_connect(paths.qmp, qmp_timeout, &qmp, &why);
        if (k == -ENOENT || k == -ECONNREFUSED)
                qmp = NULL; /* the VM is gone, and its devices with it */
        else if (k < 0) {
                if (!force)
                        return verr_set(e, k, "Cannot detach the home of %s: %s (nothing was changed; --force "
                                              "removes the host side anyway)",
                                        p->user, verr_text(&why, k));
                qemu_keeps = true;
        }

        if (qmp) {
                why.text[0] = '\0';
                k = device_exists(qmp, info.device_id, qmp_timeout, &why);
                if (k > 0) {
                        k = unplug_device(qmp, info.device_id, qmp_timeout, unplug_timeout, &why);
                        if (k == 0) {
                                if (!force)
                                        return verr_set(
                                                e, -ETIMEDOUT,
                                                "Cannot detach the home of %s: the guest did not release device %s "
                                                "within %.1f s (is the tag still mounted, is the guest running?); "
                                                "nothing else was changed: detach again, or with --force to stop "
                                                "virtiofsd anyway",
                                                p->user, info.device_id, unplug_timeout / 1000.0);
                                qemu_keeps = true;
                        }
                }
                if (k < 0)
                        return verr_set(e, k, "Cannot detach the home of %s: %s", p->user, verr_text(&why, k));

                if (!qemu_keeps) {
                        why.text[0] = '\0';
                        k = chardev_exists(qmp, info.chardev_id, qmp_timeout, &why);
                        if (k > 0)
                                k = chardev_remove(qmp, info.chardev_id, qmp_timeout, &why);
                        if (k < 0 && !force)
                                return verr_set(e, k, "Cannot detach the home of %s: %s", p->user, verr_text(&why, k));
                        if (k < 0)
                                qemu_keeps = true;
                }
        }

        /* The host's side. */
        why.text[0] = '\0';
        k = virtiofsd_stop(paths.dirs.user_dir, paths.socket, VIRTIOFSD_STOP_TIMEOUT_MS, &why);
        if (k < 0)
                return verr_set(e, k, "Cannot detach the home of %s: stopping virtiofsd failed: %s", p->user,
                                verr_text(&why, k));
        why.text[0] = '\0';
        k = idmap_mount_remove(paths.dirs.staging, &why);
        if (k < 0)
                return verr_set(e, k, "Cannot detach the home of %s: %s", p->user, verr_text(&why, k));
        close(TAKE_FD(user_fd));
        why.text[0] = '\0';
        k = export_state_remove_user_dir(homes_fd, p->user, &paths.dirs, &why);
        if (k < 0)
                return verr_set(e, k, "Cannot detach the home of %s: %s", p->user, verr_text(&why, k));
        if (info.server == HOME_EXPORT_SERVER_UNPRIVILEGED)
                (void) server_id_release(info.server_uid);
        return qemu_keeps ? 1 : 0;
}

/* ---- state queries -------------------------------------------------------------------------- */

static int get_one(int homes_fd, const char *vm_dir, const char *user, struct home_export_info *ret, struct verr *e) {
        _cleanup_close_ int user_fd = openat(homes_fd, user, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        struct export_paths paths;
        struct home_export_info info;
        int k;

        if (user_fd < 0)
                return errno == ENOENT ? -ENOENT : verr_set(e, negative_errno(), "cannot open the state of %s: %m", user);
        k = make_paths(vm_dir, NULL, user, &paths, e);
        if (k < 0)
                return k;
        k = export_state_read(user_fd, NULL, &info);
        if (k < 0)
                return k == -ENOENT ? -ENOENT
                                    : verr_set(e, k, "cannot read '%s/" HOME_EXPORT_STATE_FILE "': %s",
                                               paths.dirs.user_dir, strerror(-k));
        k = virtiofsd_get_state(paths.dirs.user_dir, &info.virtiofsd_state, &info.virtiofsd, e);
        if (k < 0)
                return k;
        k = idmap_mount_is_mounted(paths.dirs.staging);
        info.staging_mounted = k > 0;
        *ret = info;
        return 0;
}

static int open_homes(const char *vm_dir, int *ret_fd, struct verr *e) {
        _cleanup_close_ int vm_fd = -1;
        int k = open_vm_dir(vm_dir, &vm_fd, e);

        if (k < 0)
                return k;
        *ret_fd = openat(vm_fd, HOME_EXPORT_SUBDIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (*ret_fd < 0)
                return errno == ENOENT ? -ENOENT : verr_set(e, negative_errno(), "cannot open '%s/homes': %m", vm_dir);
        return 0;
}

int home_export_get(const char *vm_dir, const char *user, struct home_export_info *ret, struct verr *e) {
        _cleanup_close_ int homes_fd = -1;
        int k;

        if (!vm_dir || vm_dir[0] != '/')
                return verr_set(e, -EINVAL, "VM directory '%s' is not an absolute path", strempty(vm_dir));
        if (!user || !name_is_valid(user))
                return verr_set(e, -EINVAL, "user name '%s' is not valid", strempty(user));
        k = open_homes(vm_dir, &homes_fd, e);
        if (k == 0)
                k = get_one(homes_fd, vm_dir, user, ret, e);
        if (k == -ENOENT)
                return verr_set(e, -ENOENT, "no home of %s is exported to this VM", user);
        return k;
}

static int compare_info(const void *a, const void *b) {
        return strcmp(((const struct home_export_info *) a)->user, ((const struct home_export_info *) b)->user);
}

/* More than this many entries in VM_DIR/homes is not something vmuser made. */
#define HOME_EXPORT_LIST_MAX 4096

struct list_ctx {
        int homes_fd;
        const char *vm_dir;
        struct home_export_info *list;
        size_t n, cap;
        struct verr *e;
};

static int list_one(int dir_fd, const char *name, void *userdata) {
        struct list_ctx *c = userdata;
        int k;

        if (name[0] == '.' || !name_is_valid(name))
                return 0;
        if (c->n == HOME_EXPORT_LIST_MAX)
                return verr_set(c->e, -E2BIG, "more than %d entries in '%s/homes'", HOME_EXPORT_LIST_MAX, c->vm_dir);
        if (c->n == c->cap) {
                size_t ncap = c->cap ? c->cap * 2 : 8;
                struct home_export_info *l = reallocarray(c->list, ncap, sizeof(*c->list));
                if (!l)
                        return -ENOMEM;
                c->list = l, c->cap = ncap;
        }
        k = get_one(c->homes_fd, c->vm_dir, name, &c->list[c->n], c->e);
        if (k == -ENOENT)
                return 0;
        if (k < 0)
                return k;
        c->n++;
        return 0;
}

int home_export_list(const char *vm_dir, struct home_export_info **ret, size_t *ret_n, struct verr *e) {
        _cleanup_close_ int homes_fd = -1;
        struct list_ctx c = { .vm_dir = vm_dir, .e = e };
        int k;

        if (!vm_dir || vm_dir[0] != '/')
                return verr_set(e, -EINVAL, "VM directory '%s' is not an absolute path", strempty(vm_dir));
        k = open_homes(vm_dir, &homes_fd, e);
        if (k == -ENOENT) {
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        if (k < 0)
                return k;
        c.homes_fd = homes_fd;
        k = dir_foreach_at(homes_fd, list_one, &c);
        if (k < 0) {
                free(c.list);
                return k;
        }
        if (c.n > 1)
                qsort(c.list, c.n, sizeof(*c.list), compare_info);
        *ret = c.list;
        *ret_n = c.n;
        return 0;
}
