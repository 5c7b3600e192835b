/* libvirt-backend.h: what the two halves of the libvirt backend share (not an API for others).
 *
 * vm-backend-libvirt.c is the backend itself: connecting, the agent channel, describe, the
 * monitor fallback and the ops table; libvirt-export.c is its home export (export, unexport,
 * list: the file server, the staging mount and the live <filesystem> attach). Both work on the
 * object below and ask the domain XML through libvirt-xml.c. */
#pragma once

#include <limits.h>
#include <stdbool.h>

#include <libvirt/libvirt.h>
#include <libxml/tree.h>

#include "home-export.h"
#include "verr.h"
#include "vm-backend.h"

struct libvirt_backend {
        struct vm_backend base; /* first */
        virConnectPtr conn;
        virDomainPtr dom;
        char uri[256];
        char name[256];
        char uuid[VIR_UUID_STRING_BUFLEN];
        char state_dir[PATH_MAX]; /* /run/vmuser/libvirt/UUID */
        int timeout_ms;
};

static inline struct libvirt_backend *libvirt_backend_of(struct vm_backend *b) {
        return (struct libvirt_backend *) b;
}

/* r with "WHAT: libvirt's last error message" in e. */
int libvirt_backend_fail(struct verr *e, int r, const char *what);
/* The domain's XML (flags: virDomainGetXMLDesc's), parsed (libvirt-xml.c). */
int libvirt_backend_xml(struct libvirt_backend *l, unsigned flags, xmlDocPtr *ret, struct verr *e);
/* The live XML of a running domain, parsed; -ESRCH (with the virsh command that starts it) when
 * the domain does not run. */
int libvirt_backend_running_xml(struct libvirt_backend *l, xmlDocPtr *ret, struct verr *e);
/* Opens (creating as needed) /run/vmuser/libvirt/UUID and, when homes, its homes/ below; -ENOENT
 * without a message when it is missing and not create. */
int libvirt_backend_state_dir(struct libvirt_backend *l, bool create, bool homes, int *ret_fd, struct verr *e);

/* The home export ops (libvirt-export.c). */
int libvirt_export_home(struct vm_backend *b, const struct vm_home_params *p, struct home_export_info *ret,
                        struct verr *e);
int libvirt_unexport_home(struct vm_backend *b, const char *user, unsigned flags, int unplug_timeout_ms,
                          struct verr *e);
int libvirt_list_exports(struct vm_backend *b, struct home_export_info **ret, size_t *ret_n, struct verr *e);
