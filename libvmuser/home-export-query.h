/* home-export-query.h: where a bare-QEMU export's files are, and the checks on the VM directory
 * that home_export(), home_unexport() and the queries share (see home-export-query.c). The
 * queries themselves are declared in home-export.h. */
#pragma once

#include <limits.h>

#include "export-state.h"
#include "home-export.h"

/* How long virtiofsd gets for SIGTERM (or StopUnit) at an unexport or a rollback. */
#define VIRTIOFSD_STOP_TIMEOUT_MS 5000

struct export_paths {
        struct export_state_paths dirs; /* VM_DIR/homes, VM_DIR/homes/NAME, .../NAME/mnt/home */
        char socket[PATH_MAX];          /* VM_DIR/homes/NAME/virtiofsd.sock */
        char qmp[PATH_MAX];
};

/* The paths of user's export below vm_dir; qmp_socket NULL means VM_DIR/qmp.sock. Checks that
 * vm_dir and qmp_socket are absolute and user a valid name. */
int home_export_make_paths(const char *vm_dir, const char *qmp_socket, const char *user, struct export_paths *ret,
                           struct verr *e);

/* Opens vm_dir, which must be root's and writable by nobody else. */
int home_export_open_vm_dir(const char *vm_dir, int *ret_fd, struct verr *e);
