/* home-export.h: making a host user's home available in a running VM, and taking it away again.
 *
 * `vmuser attach` sends the user record (its home spec names the tag home_export_tag() gives)
 * and, with the guest UID from the agent's reply, calls home_export(); a failed export detaches
 * the user again. `vmuser detach` calls home_unexport() after the agent has removed the user and
 * the guest has unmounted the home; `vmuser list` calls
 * home_export_list(). The VM needs nothing at boot beyond shared guest memory and, on q35, spare
 * pcie-root-ports (doc/HOME-EXPORT.txt has the QEMU options).
 *
 * Export, one step after the other, each undone in reverse order when a later one fails:
 *   check     arguments, source directory owned by the host user, QMP connection, the VM's
 *             memory is shared, a free hot-plug bus (a pcie-root-port with nothing behind it on
 *             q35, pci.0 on pc), no device of ours left over (a stale chardev is removed)
 *   staging   VMDIR/homes/NAME/mnt/home: an idmapped, nosuid,nodev[,ro] clone of the source,
 *             mapping host UID/GID -> guest UID/GID (or identity when virtiofsd translates IDs
 *             itself, or when it runs unprivileged and its user namespace maps them; the mount
 *             still confines the share to that one UID/GID)
 *   virtiofsd one per user, serving the staging mount on VMDIR/homes/NAME/virtiofsd.sock:
 *             unprivileged (a host ID of its own from server-id.h, in a user namespace, under
 *             the daemon supervisor) where the kernel has user namespaces, else as root, as a
 *             transient systemd unit or a supervised daemon (see virtiofsd.h)
 *   chardev   chardev-add vmuser-fs-NAME, a socket client of virtiofsd.sock
 *   device    device_add vhost-user-fs-pci, id vmuser-fs-NAME, tag vmuser-NAME, on that bus
 *   record    VMDIR/homes/NAME/state.json says "exported"
 * The state file is written first (phase "exporting"), so a crash at any point leaves enough
 * behind for home_unexport() to clean up. Exports of one VM are serialized by a lock on
 * VMDIR/homes/.lock (two attaches must not pick the same root port).
 *
 * Unexport: device_del, wait for DEVICE_DELETED (the guest has to cooperate: without a guest
 * OS, or with a hung one, it never comes), chardev-remove, stop virtiofsd, unmount the staging
 * mount, remove VMDIR/homes/NAME. Every step checks first whether there is anything to undo, so
 * it also cleans up after a crashed export, and after a VM that is gone (QMP socket missing or
 * refusing: host side only).
 *
 * Errors are -errno with a sentence naming the step and the cause, e.g. "Cannot export the home
 * of alice: device_add failed: QEMU refused device_add: ...; everything done before was rolled
 * back". */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "home-spec.h"
#include "names.h"
#include "verr.h"
#include "virtiofsd.h"

#define HOME_EXPORT_SUBDIR "homes"
#define HOME_EXPORT_STATE_FILE "state.json"
#define HOME_EXPORT_SOCKET "virtiofsd.sock"
#define HOME_EXPORT_DEFAULT_QMP_SOCKET "qmp.sock"
#define HOME_EXPORT_TAG_PREFIX "vmuser-"
#define HOME_EXPORT_ID_PREFIX "vmuser-fs-"

#define HOME_EXPORT_DEFAULT_QMP_TIMEOUT_MS 10000
#define HOME_EXPORT_DEFAULT_START_TIMEOUT_MS 10000
#define HOME_EXPORT_DEFAULT_UNPLUG_TIMEOUT_MS 15000

enum home_export_step {
        HOME_EXPORT_STEP_CHECK,
        HOME_EXPORT_STEP_STAGING,
        HOME_EXPORT_STEP_VIRTIOFSD,
        HOME_EXPORT_STEP_CHARDEV,
        HOME_EXPORT_STEP_DEVICE,
        HOME_EXPORT_STEP_RECORD,
        _HOME_EXPORT_STEP_MAX,
};

/* "check", "staging", "virtiofsd", "chardev", "device", "record". */
const char *home_export_step_to_string(enum home_export_step step);

/* Called after each step has succeeded. A negative return aborts the export there (everything is
 * rolled back and the export fails with that error): for progress output and for tests. */
typedef int (*home_export_progress)(enum home_export_step done, void *userdata);

/* How the export's virtiofsd runs (doc/HOME-EXPORT.txt, "The file server"). */
enum home_export_server {
        HOME_EXPORT_SERVER_AUTO,         /* unprivileged where user namespaces exist, else root */
        HOME_EXPORT_SERVER_UNPRIVILEGED, /* a host ID of its own (server-id.h) in a user namespace */
        HOME_EXPORT_SERVER_ROOT,         /* host root, IDs mapped by the idmapped staging mount */
};

/* "auto", "unprivileged", "root"; and back (-EINVAL for anything else). */
const char *home_export_server_to_string(enum home_export_server s);
int home_export_server_from_string(const char *s, enum home_export_server *ret);

struct home_export_params {
        const char *vm_dir;     /* the VM's runtime directory, e.g. /run/vmuser/vm/web01 */
        const char *qmp_socket; /* NULL: VM_DIR/qmp.sock */
        const char *user;       /* user name (names.h rules); the same on host and guest */
        uid_t host_uid;         /* owner of the files on the host; not 0 */
        gid_t host_gid;
        uid_t guest_uid;        /* the user's IDs in the guest; not 0 */
        gid_t guest_gid;
        const char *source_dir; /* absolute path of the directory to export (the home or a
                                 * directory below it); must be owned by host_uid */
        bool read_only;
        const char *virtiofsd;  /* NULL: find one (virtiofsd_detect()) */
        enum virtiofsd_supervisor supervisor; /* normally VIRTIOFSD_SUPERVISOR_AUTO */
        enum home_export_server server;       /* normally HOME_EXPORT_SERVER_AUTO */
        int qmp_timeout_ms;     /* per QMP command and for connecting; 0: default */
        int start_timeout_ms;   /* for virtiofsd to listen; 0: default */
        home_export_progress progress; /* may be NULL */
        void *userdata;
};

/* What is exported, as recorded in VMDIR/homes/NAME/state.json, plus live state. */
struct home_export_info {
        char user[VMUSER_NAME_MAX + 1];
        char tag[HOME_SPEC_TAG_MAX + 1];
        char device_id[64];
        char chardev_id[64];
        char bus[64];
        char source[PATH_MAX];
        bool read_only;
        uid_t host_uid, guest_uid;
        gid_t host_gid, guest_gid;
        char virtiofsd_path[PATH_MAX];
        enum virtiofsd_flavour flavour;
        bool translate_ids;                 /* virtiofsd maps the IDs (else the staging mount) */
        enum home_export_server server;     /* UNPRIVILEGED or ROOT */
        uid_t server_uid;                   /* host UID (= GID) of an unprivileged virtiofsd */
        char phase[16];                     /* "exporting", "exported" or "unexporting" */
        /* Live state (filled by home_export_get/list, not stored): */
        enum virtiofsd_state virtiofsd_state;
        struct virtiofsd_process virtiofsd;
        bool staging_mounted;
};

/* The tag for user: "vmuser-NAME", or for names too long for the 36-byte virtio-fs tag limit,
 * "vmuser-" + the first 20 characters + "-" + 8 hex digits of a hash of the whole name. */
int home_export_tag(const char *user, char *buf, size_t size);

/* Exports as described above. On success *ret (if not NULL) describes the export. On failure
 * *ret_failed_step (if not NULL) says which step failed; nothing of the export is left behind
 * unless the verr says that the rollback was incomplete. -EEXIST when user's home is already
 * exported to this VM (or a previous attempt left state behind: home_unexport() cleans it). */
int home_export(const struct home_export_params *p, struct home_export_info *ret,
                enum home_export_step *ret_failed_step, struct verr *e);

enum {
        /* When the guest does not release the device in time, or QMP cannot be reached, still stop
         * virtiofsd and remove everything on the host. QEMU then keeps the device (and its
         * chardev) until the guest completes the unplug. */
        HOME_UNEXPORT_FORCE = 1u << 0,
};

struct home_unexport_params {
        const char *vm_dir;
        const char *qmp_socket;  /* NULL: VM_DIR/qmp.sock */
        const char *user;
        unsigned flags;
        int qmp_timeout_ms;      /* 0: default */
        int unplug_timeout_ms;   /* how long to wait for DEVICE_DELETED; 0: default */
};

/* Takes the export away (see above). Returns 0 when everything is gone, 1 when (with
 * HOME_UNEXPORT_FORCE) the host side is gone but QEMU still holds the device or chardev.
 * -ENOENT when nothing of user is exported; -ETIMEDOUT when the guest did not release the
 * device (without FORCE nothing else was changed then, and detach can simply be retried). */
int home_unexport(const struct home_unexport_params *p, struct verr *e);

/* The export of user (-ENOENT if none), with live state. */
int home_export_get(const char *vm_dir, const char *user, struct home_export_info *ret, struct verr *e);

/* All exports of the VM, sorted by user name; *ret is malloc'ed (free()). */
int home_export_list(const char *vm_dir, struct home_export_info **ret, size_t *ret_n, struct verr *e);
