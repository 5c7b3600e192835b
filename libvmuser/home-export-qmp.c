/* home-export-qmp.c: what home_export() and home_unexport() ask QEMU about a home's device.
 *
 * Every question goes over the caller's QMP connection with the caller's timeout: qom-list and
 * qom-get for /machine/peripheral (does a device of that id exist, which root port is free, is
 * the RAM shared), query-chardev for the chardev; the requests are chardev-remove and device_del,
 * the latter followed by a wait for DEVICE_DELETED (or a look, when the event came before we
 * connected). */
#include "home-export-qmp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json-util.h"
#include "macro.h"

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
int export_qmp_device_exists(struct qmp_client *c, const char *id, int timeout_ms, struct verr *e) {
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

int export_qmp_chardev_exists(struct qmp_client *c, const char *id, int timeout_ms, struct verr *e) {
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

int export_qmp_chardev_remove(struct qmp_client *c, const char *id, int timeout_ms, struct verr *e) {
        _cleanup_json_ json_object *args = json_object_new_object();

        if (!args || json_object_object_add(args, "id", json_object_new_string(id)) < 0)
                return -ENOMEM;
        return qmp_client_execute(c, "chardev-remove", args, timeout_ms, NULL, NULL, e);
}

int export_qmp_check_shared_memory(struct qmp_client *c, int timeout_ms, struct verr *e) {
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

int export_qmp_find_bus(struct qmp_client *c, int timeout_ms, char *bus, size_t size, struct verr *e) {
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

int export_qmp_unplug_device(struct qmp_client *c, const char *id, int qmp_timeout, int unplug_timeout,
                             struct verr *e) {
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
        k = export_qmp_device_exists(c, id, qmp_timeout, e);
        if (k < 0)
                return k;
        return !k;
}

