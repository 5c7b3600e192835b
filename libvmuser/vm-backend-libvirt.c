/* vm-backend-libvirt.c: the libvirt backend (see vm-backend.h and doc/LIBVIRT.txt).
 *
 * libvirt owns the domain's QEMU monitor and the sockets of the channels it declared, so
 * everything goes through libvirt's C API and the live domain XML (what the XML says is asked
 * of libvirt-xml.c). This file is the backend's frame: connecting, the agent channel, describe,
 * the monitor fallback and the ops table; the home export is libvirt-export.c's.
 *
 *   agent socket  find a <channel> whose virtio target is org.vmuser.agent.0 in the live XML and
 *                 use its UNIX bind socket; if there is none (and the caller allows it),
 *                 hot-plug one with virDomainAttachDeviceFlags(VIR_DOMAIN_AFFECT_LIVE, and
 *                 _CONFIG with VM_BACKEND_AGENT_PERSISTENT), source STATE/agent.sock, where
 *                 STATE is /run/vmuser/libvirt/UUID. That socket is then made root's, 0600
 *                 (libvirt gives it to the QEMU user all domains share; QEMU needs only its fd).
 *   export        check -> state "exporting" -> staging mount -> the file server (vmuser's
 *                 unprivileged virtiofsd on a socket, or libvirt's own as root where user
 *                 namespaces are unavailable) -> live <filesystem> attach -> "exported"
 *                 (libvirt-export.c).
 *   describe      running or saved, machine, shared memory, free root ports, the channel.
 * virDomainQemuMonitorCommand (libvirt-qemu) is the fallback for what the API cannot do.
 *
 * libvirt's default error handler prints to stderr; the backend installs a silent one and puts
 * virGetLastErrorMessage() into the verr instead. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "atomic-file.h"
#include "export-state.h"
#include "libvirt-backend.h"
#include "libvirt-xml.h"
#include "macro.h"
#include "proto.h"
#include "qmp-client.h"
#include "vm-backend.h"

#define AGENT_PORT_NAME "org.vmuser.agent.0"
#define AGENT_SOCKET_NAME "agent.sock"
#define AGENT_ALIAS "ua-vmuser-agent"
#define DEFAULT_TIMEOUT_MS 10000

static void silent_error_handler(void *userdata, virErrorPtr error) {
}

/* "WHAT: libvirt's message" */
int libvirt_backend_fail(struct verr *e, int r, const char *what) {
        return verr_set(e, r, "%s: %s", what, virGetLastErrorMessage());
}

/* ---- the domain XML -------------------------------------------------------------------------- */

int libvirt_backend_xml(struct libvirt_backend *l, unsigned flags, xmlDocPtr *ret, struct verr *e) {
        _cleanup_free_ char *text = virDomainGetXMLDesc(l->dom, flags);

        if (!text)
                return libvirt_backend_fail(e, -EIO, "cannot read the domain XML");
        return libvirt_xml_parse(text, ret, e);
}

int libvirt_backend_running_xml(struct libvirt_backend *l, xmlDocPtr *ret, struct verr *e) {
        int k = virDomainIsActive(l->dom);

        if (k < 0)
                return libvirt_backend_fail(e, -EIO, "cannot ask libvirt whether the domain runs");
        if (k == 0)
                return verr_set(e, -ESRCH, "libvirt domain '%s' is not running (virsh -c %s start %s)", l->name, l->uri,
                                l->name);
        return libvirt_backend_xml(l, 0, ret, e);
}

/* ---- directories ----------------------------------------------------------------------------- */

/* Opens (creating as needed) /run/vmuser/libvirt/UUID and, when homes, its homes/ below. */
int libvirt_backend_state_dir(struct libvirt_backend *l, bool create, bool homes, int *ret_fd, struct verr *e) {
        static const char *const parts[] = { "run", "vmuser", "libvirt" };
        _cleanup_close_ int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int k;

        if (fd < 0)
                return negative_errno();
        for (size_t i = 0; i < ELEMENTSOF(parts) + 1 + homes; i++) {
                const char *name = i < ELEMENTSOF(parts) ? parts[i] : i == ELEMENTSOF(parts) ? l->uuid : HOME_EXPORT_SUBDIR;
                int next;
                mode_t mode = i == ELEMENTSOF(parts) + 1 ? 0711 : 0755;

                if (create && i > 0)
                        k = export_state_ensure_dir_at(fd, name, mode, &next);
                else {
                        next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
                        k = next < 0 ? negative_errno() : 0;
                }
                if (k < 0) {
                        if (k == -ENOENT && !create)
                                return k;
                        return verr_set(e, k, "cannot %s the state directory '%s%s%s' (at '%s'): %s",
                                        create ? "create" : "open", l->state_dir, homes ? "/" : "",
                                        homes ? HOME_EXPORT_SUBDIR : "", name, strerror(-k));
                }
                closep(&fd);
                fd = next;
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* ---- agent channel --------------------------------------------------------------------------- */

/* 1 and the socket path when doc has our channel; 0 when not; -errno when it has one we cannot
 * use. */
static int find_agent_channel(struct libvirt_backend *l, xmlDocPtr doc, char *buf, size_t size, struct verr *e) {
        char type[32], mode[32];
        int k;

        k = libvirt_xml_channel(doc, AGENT_PORT_NAME, type, sizeof(type), mode, sizeof(mode), buf, size);
        if (k == 0)
                return 0;
        if (!streq(type, "unix") || !streq(mode, "bind"))
                return verr_set(e, -EPROTONOSUPPORT,
                                "libvirt domain '%s' has a channel " AGENT_PORT_NAME " of type '%s' (source mode '%s'); "
                                "vmuser needs <channel type='unix'><source mode='bind' path='...'/>"
                                "<target type='virtio' name='" AGENT_PORT_NAME "'/></channel>",
                                l->name, type, mode);
        if (k == -ENAMETOOLONG)
                return verr_set(e, k, "the socket path of channel " AGENT_PORT_NAME " is too long");
        if (k < 0 || !buf[0])
                return verr_set(e, -EBADMSG, "channel " AGENT_PORT_NAME " of domain '%s' has no socket path", l->name);
        return 1;
}

static int attach_agent_channel(struct libvirt_backend *l, const char *path, unsigned affect, struct verr *e) {
        _cleanup_free_ char *xml = NULL;

        if (asprintf(&xml,
                     "<channel type='unix'>"
                     "<source mode='bind' path='%s'/>"
                     "<target type='virtio' name='" AGENT_PORT_NAME "'/>"
                     "<alias name='" AGENT_ALIAS "'/>"
                     "</channel>",
                     path) < 0)
                return -ENOMEM;
        if (virDomainAttachDeviceFlags(l->dom, xml, affect) < 0)
                return libvirt_backend_fail(e, -EIO, affect & VIR_DOMAIN_AFFECT_LIVE ?
                                                "libvirt refused to hot-plug the vmuser channel "
                                                "(a domain needs a <controller type='virtio-serial'/> for it)" :
                                                "libvirt refused to add the vmuser channel to the stored definition");
        return 0;
}

/* libvirt hands the channel's socket to the QEMU user that every domain shares (libvirt-qemu,
 * mode 0775 on Debian 12): another domain's QEMU could connect and push users into this guest.
 * QEMU listens on the descriptor libvirt passed it and needs no access to the path; the only
 * client is vmuser, as root. So the socket becomes root's, 0600, whenever vmuser finds it in
 * its state directory (hot-plugged now, or by libvirt at the start of a persistent channel). */
static int restrict_agent_socket(struct libvirt_backend *l, const char *path, struct verr *e) {
        _cleanup_close_ int state_fd = -1;
        size_t n = strlen(l->state_dir);
        struct stat st;
        int k;

        if (strncmp(path, l->state_dir, n) != 0 || !streq(path + n, "/" AGENT_SOCKET_NAME))
                return 0; /* a channel the admin declared with a socket elsewhere: theirs to protect */
        k = libvirt_backend_state_dir(l, false, false, &state_fd, e);
        if (k < 0)
                return k == -ENOENT ? 0 : k;
        if (fstatat(state_fd, AGENT_SOCKET_NAME, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISSOCK(st.st_mode))
                return 0;
        /* root's (vmuser's own IDs, should it ever run unprivileged against qemu:///session) */
        if ((st.st_uid != geteuid() || st.st_gid != getegid()) &&
            fchownat(state_fd, AGENT_SOCKET_NAME, geteuid(), getegid(), AT_SYMLINK_NOFOLLOW) < 0)
                return verr_set(e, negative_errno(), "cannot make the agent socket '%s' root's: %m", path);
        if ((st.st_mode & 07777) != 0600 && fchmodat(state_fd, AGENT_SOCKET_NAME, 0600, 0) < 0)
                return verr_set(e, negative_errno(), "cannot make the agent socket '%s' mode 0600: %m", path);
        return 0;
}

static int lv_agent_socket(struct vm_backend *b, unsigned flags, char *buf, size_t size, struct verr *e) {
        struct libvirt_backend *l = libvirt_backend_of(b);
        _cleanup_xml_doc_ xmlDocPtr doc = NULL;
        _cleanup_close_ int state_fd = -1;
        char path[PATH_MAX];
        struct sockaddr_un sa;
        struct stat st;
        int k;

        k = libvirt_backend_running_xml(l, &doc, e);
        if (k < 0)
                return k;
        k = find_agent_channel(l, doc, buf, size, e);
        if (k < 0)
                return k;
        if (k == 0) {
                if (!(flags & VM_BACKEND_AGENT_HOTPLUG))
                        return verr_set(e, -ENOENT, "libvirt domain '%s' has no channel " AGENT_PORT_NAME
                                                    " (vmuser attach hot-plugs one)", l->name);
                k = libvirt_backend_state_dir(l, true, false, &state_fd, e);
                if (k < 0)
                        return k;
                if ((size_t) snprintf(path, sizeof(path), "%s/" AGENT_SOCKET_NAME, l->state_dir) >= sizeof(sa.sun_path))
                        return verr_set(e, -ENAMETOOLONG, "socket path '%s' is too long", path);
                /* Left behind by an earlier channel (detach leaves the socket file): nothing listens. */
                k = unlink_if_exists_at(state_fd, AGENT_SOCKET_NAME);
                if (k < 0)
                        return verr_set(e, k, "cannot remove the stale socket '%s': %s", path, strerror(-k));
                k = attach_agent_channel(l, path, VIR_DOMAIN_AFFECT_LIVE, e);
                if (k < 0)
                        return k;
                if (fstatat(state_fd, AGENT_SOCKET_NAME, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISSOCK(st.st_mode))
                        return verr_set(e, -ENOENT, "libvirt hot-plugged the vmuser channel, but '%s' is no socket", path);
                if ((size_t) snprintf(buf, size, "%s", path) >= size)
                        return -ENAMETOOLONG;
        }

        k = restrict_agent_socket(l, buf, e);
        if (k < 0)
                return k;

        if ((flags & VM_BACKEND_AGENT_PERSISTENT) && virDomainIsPersistent(l->dom) == 1) {
                _cleanup_xml_doc_ xmlDocPtr stored = NULL;
                char stored_path[PATH_MAX];
                struct verr ignore = {};

                k = libvirt_backend_xml(l, VIR_DOMAIN_XML_INACTIVE, &stored, e);
                if (k < 0)
                        return k;
                if (find_agent_channel(l, stored, stored_path, sizeof(stored_path), &ignore) == 0) {
                        k = attach_agent_channel(l, buf, VIR_DOMAIN_AFFECT_CONFIG, e);
                        if (k < 0)
                                return k;
                }
        }
        return 0;
}

static int lv_describe(struct vm_backend *b, struct vm_backend_info *ret, struct verr *e) {
        struct libvirt_backend *l = libvirt_backend_of(b);
        _cleanup_xml_doc_ xmlDocPtr doc = NULL;
        struct vm_backend_info i = {
                .kind = VM_BACKEND_LIBVIRT,
                .shared_memory = -1,
                .free_ports = -1,
        };
        int k;

        snprintf(i.name, sizeof(i.name), "%s", l->name);
        snprintf(i.uri, sizeof(i.uri), "%s", l->uri);
        snprintf(i.uuid, sizeof(i.uuid), "%s", l->uuid);
        snprintf(i.state_dir, sizeof(i.state_dir), "%s", l->state_dir);
        k = virDomainIsActive(l->dom);
        if (k < 0)
                return libvirt_backend_fail(e, -EIO, "cannot ask libvirt whether the domain runs");
        i.running = k == 1;
        /* A managed save (virsh managedsave) comes back with its devices, our share included. */
        i.saved = !i.running && virDomainHasManagedSaveImage(l->dom, 0) == 1;
        k = libvirt_backend_xml(l, 0, &doc, e);
        if (k < 0)
                return k;
        i.shared_memory = libvirt_xml_has_shared_memory(doc);
        if (libvirt_xml_machine_is_q35(doc, i.machine, sizeof(i.machine)))
                i.free_ports = libvirt_xml_free_root_ports(doc, NULL, 0);
        {
                struct verr ignore = {};
                if (find_agent_channel(l, doc, i.agent_socket, sizeof(i.agent_socket), &ignore) <= 0)
                        i.agent_socket[0] = '\0';
        }
        *ret = i;
        return 0;
}

static void lv_free(struct vm_backend *b) {
        struct libvirt_backend *l = libvirt_backend_of(b);

        if (l->dom)
                virDomainFree(l->dom);
        if (l->conn)
                virConnectClose(l->conn);
        free(l);
}

static const struct vm_backend_ops libvirt_ops = {
        .kind = VM_BACKEND_LIBVIRT,
        .agent_socket = lv_agent_socket,
        .export_home = libvirt_export_home,
        .unexport_home = libvirt_unexport_home,
        .list_exports = libvirt_list_exports,
        .describe = lv_describe,
        .free = lv_free,
};

int vm_backend_libvirt_monitor_command(struct vm_backend *b, const char *command, bool hmp, char **ret,
                                       struct verr *e) {
        struct libvirt_backend *l = libvirt_backend_of(b);
        char *result = NULL;

        int k;

        if (virDomainQemuMonitorCommand(l->dom, command, &result, hmp ? VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP : 0) < 0)
                return libvirt_backend_fail(e, -EREMOTEIO, "the monitor command failed");
        /* QEMU's reply, relayed: held to the limits of our own QMP client before anyone parses
         * it (HMP text only to the size). */
        size_t n = strnlen(result, QMP_MAX_FRAME_SIZE + 1);
        if (n > QMP_MAX_FRAME_SIZE)
                k = -EMSGSIZE;
        else
                k = hmp ? 0 : proto_scan(result, n, qmp_client_limits(), NULL);
        if (k < 0) {
                char why[128];
                free(result);
                return verr_set(e, -EMSGSIZE, "the reply of QEMU to the monitor command %s (the limit for QMP): not "
                                              "parsed", proto_limit_describe(k, qmp_client_limits(), why, sizeof(why)));
        }
        *ret = result;
        return 0;
}

int vm_backend_libvirt_open(const char *uri, const char *domain, const struct vm_backend_options *o,
                            struct vm_backend **ret, struct verr *e) {
        struct libvirt_backend *l;
        int k;

        if (strlen(domain) >= sizeof(l->name) || strlen(uri) >= sizeof(l->uri))
                return verr_set(e, -ENAMETOOLONG, "libvirt domain name or URI is too long");
        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->base.ops = &libvirt_ops;
        l->timeout_ms = o && o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
        snprintf(l->name, sizeof(l->name), "%s", domain);
        snprintf(l->uri, sizeof(l->uri), "%s", uri);
        snprintf(l->base.label, sizeof(l->base.label), "libvirt:%s", domain);

        virSetErrorFunc(NULL, silent_error_handler);
        l->conn = virConnectOpen(uri);
        if (!l->conn) {
                k = verr_set(e, -ECONNREFUSED, "cannot connect to libvirt at %s (is libvirtd running?): %s", uri,
                             virGetLastErrorMessage());
                goto fail;
        }
        l->dom = virDomainLookupByName(l->conn, domain);
        if (!l->dom) {
                k = virGetLastErrorCode() == VIR_ERR_NO_DOMAIN ?
                            verr_set(e, -ENOENT, "libvirt at %s has no domain '%s'", uri, domain) :
                            libvirt_backend_fail(e, -EIO, "cannot look up the libvirt domain");
                goto fail;
        }
        if (virDomainGetUUIDString(l->dom, l->uuid) < 0) {
                k = libvirt_backend_fail(e, -EIO, "cannot read the domain's UUID");
                goto fail;
        }
        snprintf(l->state_dir, sizeof(l->state_dir), VM_BACKEND_LIBVIRT_STATE_DIR "/%s", l->uuid);
        *ret = &l->base;
        return 0;
fail:
        lv_free(&l->base);
        return k;
}
