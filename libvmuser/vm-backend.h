/* vm-backend.h: the VM a host tool command talks to, whoever runs it.
 *
 * Two backends implement the same small ops table:
 *   qemu     a bare QEMU started with a runtime directory holding agent.sock (the virtio-serial
 *            port org.vmuser.agent.0) and qmp.sock; home export is home-export.c over QMP.
 *   libvirt  a libvirt domain ("libvirt:DOMAIN", or any VM argument with --connect URI). libvirt
 *            owns the monitor and its own channels, so the backend asks libvirt's C API: the
 *            agent channel is found in the live XML or hot-plugged (virDomainAttachDeviceFlags,
 *            UNIX bind socket below /run/vmuser/libvirt/UUID/), the home is an idmapped staging
 *            mount served by vmuser's unprivileged virtiofsd, plugged in as a virtiofs
 *            <filesystem> with <source socket> (root fallback: libvirt's own virtiofsd on the
 *            staging mount). doc/LIBVIRT.txt.
 * The rest of the tool (record building, the QGA client, the agent steps) only sees this API.
 *
 * Flow for a caller (host-tool attach/detach/list/status):
 *   vm_backend_open(argv VM, options) -> vm_backend_agent_socket() -> qga_client_connect(path)
 *   attach: vm_backend_export_home() -> vmuser-attach with the tag of the returned info
 *   detach: vmuser-detach (the guest unmounts) -> vm_backend_unexport_home()
 *   list:   vm_backend_list_exports();  status: vm_backend_describe(), vm_backend_probe_monitor()
 *   vm_backend_free()
 *
 * Errors are -errno with a sentence in the verr, as everywhere in libvmuser; nothing prints. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "home-export.h"
#include "verr.h"

#define VM_BACKEND_LIBVIRT_PREFIX "libvirt:"
#define VM_BACKEND_LIBVIRT_DEFAULT_URI "qemu:///system"
/* Where the libvirt backend keeps its sockets, staging mounts and state: DIR/UUID/. */
#define VM_BACKEND_LIBVIRT_STATE_DIR "/run/vmuser/libvirt"
/* Where a bare VM name is looked up for the qemu backend; $VMUSER_VM_DIR overrides it. */
#define VM_BACKEND_QEMU_VM_DIR_DEFAULT "/run/vmuser/vm"

enum vm_backend_kind {
        VM_BACKEND_QEMU,
        VM_BACKEND_LIBVIRT,
};

const char *vm_backend_kind_to_string(enum vm_backend_kind k); /* "qemu", "libvirt" */

struct vm_backend_options {
        const char *connect_uri;  /* --connect: a libvirt URI; the VM argument is then a domain */
        const char *agent_socket; /* --agent: overrides the agent socket (qemu backend only) */
        const char *qmp_socket;   /* --qmp: overrides VM/qmp.sock (qemu backend only) */
        int timeout_ms;           /* per libvirt/QMP call; 0: default */
};

enum {
        /* libvirt: hot-plug the agent channel when the live domain has none. Without this flag
         * a missing channel is -ENOENT (what list and status want: they change nothing). */
        VM_BACKEND_AGENT_HOTPLUG = 1u << 0,
        /* libvirt: also add the channel to the stored (persistent) definition. */
        VM_BACKEND_AGENT_PERSISTENT = 1u << 1,
};

/* What to export: the user's IDs on both sides and the directory. The tag, device and
 * bookkeeping are the backend's business; the returned home_export_info names them. */
struct vm_home_params {
        const char *user;       /* user name (names.h rules) */
        uid_t host_uid;         /* owner of source_dir on the host; not 0 */
        gid_t host_gid;
        uid_t guest_uid;        /* the IDs in the guest; not 0 */
        gid_t guest_gid;
        const char *source_dir; /* absolute path, owned by host_uid */
        bool read_only;
};

enum {
        /* The guest did not release the device in time: clean the host side anyway. */
        VM_BACKEND_UNEXPORT_FORCE = 1u << 0,
};

/* One sentence worth of facts about the VM, for `vmuser status`. */
struct vm_backend_info {
        enum vm_backend_kind kind;
        char name[PATH_MAX];         /* qemu: the VM directory; libvirt: the domain name */
        char uri[256];               /* libvirt connection URI, "" for qemu */
        char uuid[40];               /* libvirt domain UUID, "" for qemu */
        bool running;                /* qemu: false only when the QMP socket is missing or refuses */
        bool saved;                  /* libvirt: not running, but a managed save will restore it */
        char machine[64];            /* libvirt: e.g. "pc-q35-7.2"; "" when unknown */
        char agent_socket[PATH_MAX]; /* "" when the libvirt domain has no vmuser channel yet */
        char state_dir[PATH_MAX];    /* where exports are recorded */
        int shared_memory;           /* 1, 0, or -1 when unknown (qemu: asked at export) */
        int free_ports;              /* free hot-plug PCIe root ports; -1: unknown or not q35 */
};

enum {
        /* Also connect to the monitor and negotiate (a monitor that answers, not only a socket). */
        VM_BACKEND_MONITOR_CONNECT = 1u << 0,
};

/* The VM monitor the backend talks to itself when exporting a home: a bare QEMU's QMP socket.
 * libvirt owns its domains' monitors: socket is "" and nothing more is said. */
struct vm_backend_monitor {
        char socket[PATH_MAX]; /* the monitor's socket; "" when the backend has none to show */
        int exists;            /* 0, or stat()'s -errno for the socket */
        bool is_socket;        /* exists and is a socket */
        int reachable;         /* VM_BACKEND_MONITOR_CONNECT: 0 answered; -errno (error says why);
                                * -ENOENT when not asked or not a socket */
        char version[64];      /* QEMU's version, when reachable */
        struct verr error;     /* why not reachable */
};

struct vm_backend;

/* The ops table every backend fills; callers use the vm_backend_*() wrappers below. */
struct vm_backend_ops {
        enum vm_backend_kind kind;
        /* Path of the UNIX socket behind the guest's org.vmuser.agent.0 port (flags above). */
        int (*agent_socket)(struct vm_backend *b, unsigned flags, char *buf, size_t size, struct verr *e);
        int (*export_home)(struct vm_backend *b, const struct vm_home_params *p, struct home_export_info *ret,
                           struct verr *e);
        /* 0: gone; 1: host side gone but the VM still holds the device (FORCE); -ENOENT: none. */
        int (*unexport_home)(struct vm_backend *b, const char *user, unsigned flags, int unplug_timeout_ms,
                             struct verr *e);
        int (*list_exports)(struct vm_backend *b, struct home_export_info **ret, size_t *ret_n, struct verr *e);
        int (*describe)(struct vm_backend *b, struct vm_backend_info *ret, struct verr *e);
        /* May be NULL: the backend owns the monitor (vm_backend_probe_monitor() says so). */
        void (*probe_monitor)(struct vm_backend *b, unsigned flags, struct vm_backend_monitor *ret);
        void (*free)(struct vm_backend *b);
};

/* The common head of every backend object; implementations put it first. */
struct vm_backend {
        const struct vm_backend_ops *ops;
        char label[256]; /* what messages call the VM: the argument as given */
};

/* Picks the backend from spec: "libvirt:DOMAIN", or any spec when o->connect_uri is set, is a
 * libvirt domain (connects and looks it up: -ENOENT when there is no such domain); otherwise a
 * VM directory (contains '/') or a bare name under $VMUSER_VM_DIR (default /run/vmuser/vm).
 * o may be NULL. */
int vm_backend_open(const char *spec, const struct vm_backend_options *o, struct vm_backend **ret, struct verr *e);
struct vm_backend *vm_backend_free(struct vm_backend *b);
void vm_backend_freep(struct vm_backend **b);
#define _cleanup_vm_backend_ __attribute__((cleanup(vm_backend_freep)))

enum vm_backend_kind vm_backend_kind(const struct vm_backend *b);

int vm_backend_agent_socket(struct vm_backend *b, unsigned flags, char *buf, size_t size, struct verr *e);
int vm_backend_export_home(struct vm_backend *b, const struct vm_home_params *p, struct home_export_info *ret,
                           struct verr *e);
int vm_backend_unexport_home(struct vm_backend *b, const char *user, unsigned flags, int unplug_timeout_ms,
                             struct verr *e);
/* Sorted by user name; *ret is malloc'ed (free()). */
int vm_backend_list_exports(struct vm_backend *b, struct home_export_info **ret, size_t *ret_n, struct verr *e);
int vm_backend_describe(struct vm_backend *b, struct vm_backend_info *ret, struct verr *e);
/* Where the monitor is and whether it answers (flags: VM_BACKEND_MONITOR_*), asked afresh each
 * time; the connection, if any, is closed again (a QMP monitor serves one client at a time). */
void vm_backend_probe_monitor(struct vm_backend *b, unsigned flags, struct vm_backend_monitor *ret);

/* libvirt only (-EOPNOTSUPP otherwise): the fallback for what libvirt's API cannot do, through
 * virDomainQemuMonitorCommand: a QMP command (JSON text), or an HMP command line when hmp.
 * *ret is QEMU's reply, malloc'ed. libvirt marks the domain "tainted" when this is used. */
int vm_backend_monitor_command(struct vm_backend *b, const char *command, bool hmp, char **ret, struct verr *e);

/* Constructors, called by vm_backend_open(). */
int vm_backend_qemu_open(const char *spec, const struct vm_backend_options *o, struct vm_backend **ret,
                         struct verr *e);
int vm_backend_libvirt_open(const char *uri, const char *domain, const struct vm_backend_options *o,
                            struct vm_backend **ret, struct verr *e);
int vm_backend_libvirt_monitor_command(struct vm_backend *b, const char *command, bool hmp, char **ret,
                                       struct verr *e);
