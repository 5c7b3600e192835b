/* home-export-qmp.h: the QMP questions and requests about a home's device and chardev that
 * home_export() and home_unexport() share (see home-export-qmp.c). Not for other callers. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "qmp-client.h"
#include "verr.h"

/* Whether /machine/peripheral has a child called id: 1 yes, 0 no, -errno. */
int export_qmp_device_exists(struct qmp_client *c, const char *id, int timeout_ms, struct verr *e);

/* Whether QEMU has a chardev labelled id: 1 yes, 0 no, -errno. */
int export_qmp_chardev_exists(struct qmp_client *c, const char *id, int timeout_ms, struct verr *e);

int export_qmp_chardev_remove(struct qmp_client *c, const char *id, int timeout_ms, struct verr *e);

/* The VM's RAM must be shareable with virtiofsd (vhost-user maps it). QEMU would accept
 * device_add anyway and fail only when the guest driver starts, so check up front. */
int export_qmp_check_shared_memory(struct qmp_client *c, int timeout_ms, struct verr *e);

/* The bus for a new device: pci.0 on a pc machine, the first free hot-plug root port (in natural
 * order of their ids) on q35. */
int export_qmp_find_bus(struct qmp_client *c, int timeout_ms, char *bus, size_t size, struct verr *e);

/* device_del, then wait for DEVICE_DELETED of the device itself. 1: gone, 0: still there when
 * the time was up. */
int export_qmp_unplug_device(struct qmp_client *c, const char *id, int qmp_timeout, int unplug_timeout,
                             struct verr *e);
