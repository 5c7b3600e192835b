/* libvirt-export.c: the libvirt backend's home export (see libvirt-backend.h, and
 * vm-backend-libvirt.c's header for the flow).
 *
 * A home goes to a libvirt domain as a live-attached <filesystem> with <driver type='virtiofs'/>,
 * alias ua-vmuser-fs-USER and the tag as its target, behind the idmapped staging mount
 * STATE/homes/USER/mnt/home (export-prepare.c). Who serves it:
 *   unprivileged  vmuser's own virtiofsd (virtiofsd.c, as for bare QEMU: a host ID of its own,
 *                 server-id.c, in a user namespace) listening on STATE/homes/USER/virtiofsd.sock,
 *                 which is handed to the IDs libvirt runs the domain's QEMU as (the DAC label of
 *                 the live XML); the <filesystem> has <source socket='...'/> and libvirt only
 *                 plugs the device in. Unexport stops it and releases its ID.
 *   root          where user namespaces are unavailable (or VMUSER_FILE_SERVER=root): <source
 *                 dir='STAGING'/>, and libvirt 9.0 starts its own virtiofsd as root, which it
 *                 stops when the device is gone; found through /proc (libvirt keeps no file of
 *                 ours). Its state.json leaves out the fields about a virtiofsd of vmuser's own.
 * libvirt 9.0 labels neither socket nor directory for an external virtiofsd; with DAC only (no
 * AppArmor or SELinux, as on the test machine) the socket's owner is what QEMU needs. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "dir-util.h"
#include "export-prepare.h"
#include "export-state.h"
#include "idmap-mount.h"
#include "libvirt-backend.h"
#include "libvirt-xml.h"
#include "macro.h"
#include "names.h"
#include "server-id.h"
#include "time-util.h"
#include "virtiofsd.h"

#define FS_ALIAS_PREFIX "ua-" HOME_EXPORT_ID_PREFIX /* ua-vmuser-fs-USER: a libvirt user alias */
#define VIRTIOFSD_EXIT_TIMEOUT_MS 5000
#define POLL_MS 100

#define SHARED_MEMORY_XML "<memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>"
#define ROOT_PORT_XML "<controller type='pci' model='pcie-root-port'/>"

struct user_paths {
        struct export_state_paths dirs; /* STATE/homes, STATE/homes/USER, .../USER/mnt/home */
        char socket[PATH_MAX];          /* .../USER/virtiofsd.sock (the unprivileged server's) */
        char alias[64];                 /* ua-vmuser-fs-USER */
        char tag[HOME_SPEC_TAG_MAX + 1];
};

static int make_user_paths(struct libvirt_backend *l, const char *user, struct user_paths *ret, struct verr *e) {
        struct user_paths p = {};
        int k = 0;

        if (!user || !name_is_valid(user))
                return verr_set(e, -EINVAL, "user name '%s' is not valid", strempty(user));
        k |= export_state_paths_make(l->state_dir, user, &p.dirs) < 0;
        k |= snprintf(p.alias, sizeof(p.alias), FS_ALIAS_PREFIX "%s", user) >= (int) sizeof(p.alias);
        k |= snprintf(p.socket, sizeof(p.socket), "%s/" HOME_EXPORT_SOCKET, p.dirs.user_dir) >= (int) sizeof(p.socket);
        if (k)
                return verr_set(e, -ENAMETOOLONG, "user name '%s' is too long for a libvirt device alias", user);
        k = home_export_tag(user, p.tag, sizeof(p.tag));
        if (k < 0)
                return verr_set(e, k, "cannot make a tag for '%s'", user);
        *ret = p;
        return 0;
}

/* What state.json leaves out for exports libvirt serves (EXPORT_STATE_NO_VIRTIOFSD: the root
 * fallback, where libvirt runs virtiofsd and the chardev). */
static const struct home_export_info libvirt_state_defaults = {
        .virtiofsd_path = "(libvirt)",
        .server = HOME_EXPORT_SERVER_ROOT,
        .flavour = VIRTIOFSD_FLAVOUR_C,
};

struct virtiofsd_search {
        char needle[PATH_MAX + 16]; /* "source=DIR" */
        pid_t found;
};

/* One /proc entry: a virtiofsd whose command line has the needle as a whole option ends the walk. */
static int visit_process(int proc_fd, const char *name, void *userdata) {
        struct virtiofsd_search *q = userdata;
        char path[320], exe[PATH_MAX], buf[8192];
        _cleanup_close_ int fd = -1;
        ssize_t n;
        const char *base;

        if (name[0] < '1' || name[0] > '9')
                return 0;
        snprintf(path, sizeof(path), "%s/exe", name);
        n = readlinkat(proc_fd, path, exe, sizeof(exe) - 1);
        if (n <= 0)
                return 0;
        exe[n] = '\0';
        base = strrchr(exe, '/');
        base = base ? base + 1 : exe;
        if (strncmp(base, "virtiofsd", 9) != 0)
                return 0;
        snprintf(path, sizeof(path), "%s/cmdline", name);
        fd = openat(proc_fd, path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        n = read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
                return 0;
        for (ssize_t i = 0; i < n; i++)
                if (buf[i] == '\0')
                        buf[i] = ' ';
        buf[n] = '\0';
        for (const char *f = strstr(buf, q->needle); f; f = strstr(f + 1, q->needle)) {
                char after = f[strlen(q->needle)];
                if (after == ' ' || after == ',' || after == '\0') {
                        q->found = (pid_t) atoi(name);
                        return -ECANCELED; /* found: stop */
                }
        }
        return 0;
}

/* The PID of a virtiofsd serving dir ("source=DIR" on its command line), 0 when none. libvirt
 * starts it and keeps no file of ours, so /proc is the only place to look. */
static pid_t find_virtiofsd(const char *dir) {
        struct virtiofsd_search q = {};
        _cleanup_close_ int proc_fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (proc_fd < 0)
                return 0;
        snprintf(q.needle, sizeof(q.needle), "source=%s", dir);
        (void) dir_foreach_at(proc_fd, visit_process, &q);
        return q.found;
}

/* ---- home export ----------------------------------------------------------------------------- */

static bool has_filesystem(xmlDocPtr doc, const struct user_paths *p) {
        return libvirt_xml_has_filesystem(doc, p->alias, p->tag);
}

/* The live facts of an export: the staging mount, and who serves it (ours: virtiofsd.c's pid
 * file; libvirt's: found in /proc). */
static void fill_live(struct libvirt_backend *l, struct home_export_info *i) {
        struct user_paths up;
        struct verr ignore = {};

        if (make_user_paths(l, i->user, &up, &ignore) < 0)
                return;
        i->staging_mounted = idmap_mount_is_mounted(up.dirs.staging) > 0;
        if (i->server == HOME_EXPORT_SERVER_UNPRIVILEGED) {
                if (virtiofsd_get_state(up.dirs.user_dir, &i->virtiofsd_state, &i->virtiofsd, &ignore) < 0)
                        i->virtiofsd_state = VIRTIOFSD_STATE_DEAD;
                return;
        }
        i->virtiofsd.supervisor = VIRTIOFSD_SUPERVISOR_DAEMON;
        i->virtiofsd.pid = find_virtiofsd(up.dirs.staging);
        i->virtiofsd_state = i->virtiofsd.pid > 0         ? VIRTIOFSD_STATE_RUNNING :
                             streq(i->phase, "exported") ? VIRTIOFSD_STATE_DEAD :
                                                           VIRTIOFSD_STATE_NONE;
}

/* The unprivileged file server: vmuser's own virtiofsd (virtiofsd.c) on up->socket, which then
 * goes to the IDs libvirt runs the domain's QEMU as (qemu.conf user and group; the live XML's
 * DAC label says which): QEMU connects to it when libvirt plugs the device in. */
static int start_server(struct libvirt_backend *l, const struct vm_home_params *p, const struct user_paths *up,
                        const struct virtiofsd_binary *bin, const struct home_export_info *i, xmlDocPtr doc,
                        struct verr *e) {
        struct virtiofsd_config cfg = {
                .shared_dir = up->dirs.staging,
                .socket_path = up->socket,
                .read_only = p->read_only,
                .host_uid = p->host_uid,
                .host_gid = p->host_gid,
                .guest_uid = p->guest_uid,
                .guest_gid = p->guest_gid,
                .unprivileged = true,
                .server_uid = i->server_uid,
                .server_gid = (gid_t) i->server_uid,
        };
        uid_t qemu_uid = 0;
        gid_t qemu_gid = 0;
        int k;

        k = libvirt_xml_dac_ids(doc, &qemu_uid, &qemu_gid);
        if (k < 0 && k != -ENOENT)
                return verr_set(e, k, "cannot read the IDs of the QEMU of libvirt domain '%s' from its DAC label",
                                l->name);
        k = virtiofsd_start(bin, &cfg, up->dirs.user_dir, VIRTIOFSD_SUPERVISOR_DAEMON, NULL, l->timeout_ms, NULL, e);
        if (k < 0)
                return k;
        /* vmuser made the socket root's, 0600; the directories above it are 0711 or 0755. */
        if ((qemu_uid != 0 || qemu_gid != 0) && chown(up->socket, qemu_uid, qemu_gid) < 0)
                return verr_set(e, negative_errno(), "cannot hand socket '%s' to QEMU's IDs %u:%u: %m", up->socket,
                                (unsigned) qemu_uid, (unsigned) qemu_gid);
        return 0;
}

int libvirt_export_home(struct vm_backend *b, const struct vm_home_params *p, struct home_export_info *ret,
                        struct verr *e) {
        struct libvirt_backend *l = libvirt_backend_of(b);
        _cleanup_xml_doc_ xmlDocPtr doc = NULL;
        _cleanup_close_ int source_fd = -1, homes_fd = -1, lock_fd = -1, user_fd = -1;
        _cleanup_free_ char *xml = NULL;
        struct home_export_info i = {};
        struct virtiofsd_binary bin = {};
        enum home_export_server requested;
        struct user_paths up;
        struct sockaddr_un sa;
        char machine[64], port[64];
        bool unpriv, claimed = false, started = false;
        unsigned state_flags;
        int k;

        k = make_user_paths(l, p->user, &up, e);
        if (k < 0)
                return k;
        k = export_source_open(p->user, p->host_uid, p->host_gid, p->guest_uid, p->guest_gid, p->source_dir,
                               &source_fd, e);
        if (k >= 0)
                k = export_server_requested(&requested, e);
        if (k < 0)
                return k;

        /* The domain: running, shared memory, a free port, nothing of ours plugged. */
        k = libvirt_backend_running_xml(l, &doc, e);
        if (k < 0)
                return k;
        if (!libvirt_xml_has_shared_memory(doc))
                return verr_set(e, -EOPNOTSUPP,
                                "libvirt domain '%s' has no shared memory, which virtiofs needs: add "
                                SHARED_MEMORY_XML " to its XML (virsh edit %s) and restart it", l->name, l->name);
        if (libvirt_xml_machine_is_q35(doc, machine, sizeof(machine)) &&
            libvirt_xml_free_root_ports(doc, port, sizeof(port)) == 0)
                return verr_set(e, -ENOSPC,
                                "libvirt domain '%s' has no free PCIe root port to hot-plug the home of %s into: add one "
                                ROOT_PORT_XML " per user to share at the same time (virsh edit %s, then restart it)",
                                l->name, p->user, l->name);

        k = libvirt_backend_state_dir(l, true, true, &homes_fd, e);
        if (k < 0)
                return k;
        k = export_state_lock(homes_fd, "domain", l->timeout_ms, &lock_fd, e);
        if (k < 0)
                return k;
        k = export_leftover_check(homes_fd, p->user, &up.dirs, &libvirt_state_defaults, "domain", e);
        if (k < 0)
                return k;
        if (has_filesystem(doc, &up))
                return verr_set(e, -EBUSY, "libvirt domain '%s' still has a filesystem with tag %s or alias %s: the guest "
                                           "has not completed an earlier unplug of %s's home", l->name, up.tag, up.alias,
                                p->user);

        snprintf(i.user, sizeof(i.user), "%s", p->user);
        snprintf(i.tag, sizeof(i.tag), "%s", up.tag);
        snprintf(i.device_id, sizeof(i.device_id), "%s", up.alias);
        snprintf(i.source, sizeof(i.source), "%s", p->source_dir);
        i.read_only = p->read_only;
        i.host_uid = p->host_uid, i.host_gid = p->host_gid;
        i.guest_uid = p->guest_uid, i.guest_gid = p->guest_gid;
        k = export_server_choose(requested, &i.server, e);
        if (k < 0)
                return k;
        unpriv = i.server == HOME_EXPORT_SERVER_UNPRIVILEGED;
        state_flags = unpriv ? 0 : EXPORT_STATE_NO_VIRTIOFSD;
        if (unpriv) {
                if (strlen(up.socket) >= sizeof(sa.sun_path))
                        return verr_set(e, -ENAMETOOLONG, "socket path '%s' is too long for QEMU (at most %zu bytes)",
                                        up.socket, sizeof(sa.sun_path) - 1);
                k = virtiofsd_detect(NULL, &bin, e);
                if (k < 0)
                        return k;
                snprintf(i.virtiofsd_path, sizeof(i.virtiofsd_path), "%s", bin.path);
                i.flavour = bin.flavour;
                k = server_id_claim(up.dirs.user_dir, &i.server_uid, e);
                if (k < 0)
                        return k;
                claimed = true;
        } else
                snprintf(i.virtiofsd_path, sizeof(i.virtiofsd_path), "%s", libvirt_state_defaults.virtiofsd_path);

        k = export_state_ensure_dir_at(homes_fd, p->user, 0711, &user_fd);
        if (k < 0) {
                verr_set(e, k, "cannot create '%s': %s", up.dirs.user_dir, strerror(-k));
                goto undo_id;
        }
        k = export_state_write(user_fd, &i, "exporting", state_flags);
        if (k < 0) {
                verr_set(e, k, "cannot write '%s/" HOME_EXPORT_STATE_FILE "': %s", up.dirs.user_dir, strerror(-k));
                goto undo_dir;
        }
        {
                /* The unprivileged server's namespace maps the IDs: the mount maps the host's onto
                 * themselves (and still confines the share to them, nosuid, nodev). */
                struct idmap_mount_map map = {
                        .disk_uid = p->host_uid,
                        .disk_gid = p->host_gid,
                        .mount_uid = unpriv ? p->host_uid : p->guest_uid,
                        .mount_gid = unpriv ? p->host_gid : p->guest_gid,
                };
                k = export_staging_make(user_fd, &up.dirs, source_fd, &map, p->read_only, e);
                if (k < 0)
                        goto undo_dir;
        }
        if (unpriv) {
                started = true; /* from here on, the rollback stops whatever started */
                k = start_server(l, p, &up, &bin, &i, doc, e);
                if (k < 0)
                        goto undo_mount;
        }

        /* Unprivileged: libvirt only plugs the device in; root: libvirt starts its own virtiofsd
         * on the staging mount, then plugs it in. */
        if (asprintf(&xml,
                     "<filesystem type='mount'%s><driver type='virtiofs'/><source %s='%s'/><target dir='%s'/>"
                     "<alias name='%s'/></filesystem>",
                     unpriv ? "" : " accessmode='passthrough'", unpriv ? "socket" : "dir",
                     unpriv ? up.socket : up.dirs.staging, up.tag, up.alias) < 0) {
                k = -ENOMEM;
                goto undo_mount;
        }
        if (virDomainAttachDeviceFlags(l->dom, xml, VIR_DOMAIN_AFFECT_LIVE) < 0) {
                k = libvirt_backend_fail(e, -EREMOTEIO, "libvirt refused the virtiofs live attach");
                goto undo_mount;
        }

        {
                _cleanup_xml_doc_ xmlDocPtr after = NULL;
                struct verr ignore = {};
                if (libvirt_backend_xml(l, 0, &after, &ignore) == 0)
                        libvirt_xml_filesystem_bus(after, up.alias, i.bus, sizeof(i.bus));
        }
        k = export_state_write(user_fd, &i, "exported", state_flags);
        if (k < 0) {
                /* The device is in; leave the state saying "exporting" so detach cleans up. */
                return verr_set(e, k, "the home of %s is plugged in, but '%s/" HOME_EXPORT_STATE_FILE "' could not be "
                                      "written (%s): detach %s to clean up",
                                p->user, up.dirs.user_dir, strerror(-k), p->user);
        }
        fill_live(l, &i);
        if (ret)
                *ret = i;
        return 0;

undo_mount: {
        struct verr ignore = {};
        if (started)
                (void) virtiofsd_stop(up.dirs.user_dir, up.socket, VIRTIOFSD_EXIT_TIMEOUT_MS, &ignore);
        (void) idmap_mount_remove(up.dirs.staging, &ignore);
}
undo_dir: {
        struct verr ignore = {};
        (void) export_state_remove_user_dir(homes_fd, p->user, &up.dirs, &ignore);
}
undo_id:
        if (claimed)
                (void) server_id_release(i.server_uid, up.dirs.user_dir);
        return k;
}

int libvirt_unexport_home(struct vm_backend *b, const char *user, unsigned flags, int unplug_timeout_ms,
                          struct verr *e) {
        struct libvirt_backend *l = libvirt_backend_of(b);
        _cleanup_close_ int homes_fd = -1, lock_fd = -1, user_fd = -1;
        struct home_export_info st = {};
        struct user_paths up;
        bool have_state, read_state = false, device_left = false;
        int64_t deadline;
        int k, running;

        k = make_user_paths(l, user, &up, e);
        if (k < 0)
                return k;
        if (unplug_timeout_ms <= 0)
                unplug_timeout_ms = HOME_EXPORT_DEFAULT_UNPLUG_TIMEOUT_MS;

        k = libvirt_backend_state_dir(l, false, true, &homes_fd, e);
        if (k < 0 && k != -ENOENT)
                return k;
        if (homes_fd >= 0) {
                k = export_state_lock(homes_fd, "domain", l->timeout_ms, &lock_fd, e);
                if (k < 0)
                        return k;
                user_fd = openat(homes_fd, user, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        }
        have_state = user_fd >= 0;
        if (have_state && export_state_read(user_fd, &libvirt_state_defaults, &st) == 0) {
                read_state = true;
                (void) export_state_write(user_fd, &st, "unexporting",
                                          st.server == HOME_EXPORT_SERVER_UNPRIVILEGED ? 0 : EXPORT_STATE_NO_VIRTIOFSD);
        }

        /* The device: ask libvirt to unplug it, then wait for the guest to let go. */
        running = virDomainIsActive(l->dom);
        if (running == 1) {
                _cleanup_xml_doc_ xmlDocPtr doc = NULL;
                k = libvirt_backend_xml(l, 0, &doc, e);
                if (k < 0)
                        return k;
                if (has_filesystem(doc, &up)) {
                        if (virDomainDetachDeviceAlias(l->dom, up.alias, VIR_DOMAIN_AFFECT_LIVE) < 0 &&
                            virGetLastErrorCode() != VIR_ERR_DEVICE_MISSING)
                                return libvirt_backend_fail(e, -EREMOTEIO, "libvirt refused to unplug the home");
                        deadline = now_ms() + unplug_timeout_ms;
                        for (;;) {
                                _cleanup_xml_doc_ xmlDocPtr now = NULL;
                                k = libvirt_backend_xml(l, 0, &now, e);
                                if (k < 0)
                                        return k;
                                if (!has_filesystem(now, &up))
                                        break;
                                if (now_ms() >= deadline) {
                                        device_left = true;
                                        break;
                                }
                                sleep_ms(POLL_MS);
                        }
                        if (device_left && !(flags & VM_BACKEND_UNEXPORT_FORCE))
                                return verr_set(e, -ETIMEDOUT,
                                                "the guest did not release device %s within %.1f s (is the tag still "
                                                "mounted, is the guest running?); nothing else was changed: detach "
                                                "again, or with --force to remove the host side anyway",
                                                up.alias, unplug_timeout_ms / 1000.0);
                } else if (!have_state)
                        return verr_set(e, -ENOENT, "the home of %s is not exported to libvirt domain '%s'", user,
                                        l->name);
        } else if (running < 0)
                return libvirt_backend_fail(e, -EIO, "cannot ask libvirt whether the domain runs");
        else if (!have_state)
                return verr_set(e, -ENOENT, "the home of %s is not exported to libvirt domain '%s'", user, l->name);

        /* The file server: ours is stopped (whatever the state says: an attach that crashed may
         * have started one); libvirt stops its own once the device is gone, and we wait for it
         * to let go of the mount. */
        if (have_state) {
                k = virtiofsd_stop(up.dirs.user_dir, up.socket, VIRTIOFSD_EXIT_TIMEOUT_MS, e);
                if (k < 0)
                        return k;
        }
        deadline = now_ms() + VIRTIOFSD_EXIT_TIMEOUT_MS;
        while (!device_left && find_virtiofsd(up.dirs.staging) > 0 && now_ms() < deadline)
                sleep_ms(POLL_MS);

        if (have_state) {
                k = idmap_mount_remove(up.dirs.staging, e);
                if (k < 0)
                        return k;
                closep(&user_fd);
                k = export_state_remove_user_dir(homes_fd, user, &up.dirs, e);
                if (k < 0)
                        return k;
                if (read_state && st.server == HOME_EXPORT_SERVER_UNPRIVILEGED)
                        (void) server_id_release(st.server_uid, up.dirs.user_dir);
        }
        return device_left ? 1 : 0;
}

static int compare_info(const void *a, const void *b) {
        return strcmp(((const struct home_export_info *) a)->user, ((const struct home_export_info *) b)->user);
}

struct export_listing {
        struct libvirt_backend *l;
        struct home_export_info *list;
        size_t n, cap;
};

/* One entry of STATE/homes: an export whose state reads is listed, anything else skipped. */
static int visit_export(int homes_fd, const char *name, void *userdata) {
        struct export_listing *x = userdata;
        _cleanup_close_ int fd = -1;
        struct home_export_info i;

        if (!name_is_valid(name))
                return 0;
        fd = openat(homes_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 || export_state_read(fd, &libvirt_state_defaults, &i) < 0)
                return 0;
        fill_live(x->l, &i);
        if (x->n == x->cap) {
                size_t ncap = x->cap ? x->cap * 2 : 8;
                struct home_export_info *m = reallocarray(x->list, ncap, sizeof(*m));
                if (!m)
                        return -ENOMEM;
                x->list = m, x->cap = ncap;
        }
        x->list[x->n++] = i;
        return 0;
}

int libvirt_list_exports(struct vm_backend *b, struct home_export_info **ret, size_t *ret_n, struct verr *e) {
        struct export_listing x = { .l = libvirt_backend_of(b) };
        _cleanup_close_ int homes_fd = -1;
        int k;

        k = libvirt_backend_state_dir(x.l, false, true, &homes_fd, e);
        if (k == -ENOENT) {
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        if (k < 0)
                return k;
        k = dir_foreach_at(homes_fd, visit_export, &x);
        if (k < 0) {
                free(x.list);
                return k;
        }
        if (x.n > 0)
                qsort(x.list, x.n, sizeof(*x.list), compare_info);
        *ret = x.list;
        *ret_n = x.n;
        return 0;
}

