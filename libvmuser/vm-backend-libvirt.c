/* vm-backend-libvirt.c: the libvirt backend (see vm-backend.h and doc/LIBVIRT.txt).
 *
 * libvirt owns the domain's QEMU monitor and the sockets of the channels it declared, so
 * everything goes through libvirt's C API and the live domain XML (read with libxml2 XPath):
 *
 *   agent socket  find a <channel> whose virtio target is org.vmuser.agent.0 in the live XML and
 *                 use its UNIX bind socket; if there is none (and the caller allows it),
 *                 hot-plug one with virDomainAttachDeviceFlags(VIR_DOMAIN_AFFECT_LIVE, and
 *                 _CONFIG with VM_BACKEND_AGENT_PERSISTENT), source STATE/agent.sock, where
 *                 STATE is /run/vmuser/libvirt/UUID. That socket is then made root's, 0600
 *                 (libvirt gives it to the QEMU user all domains share; QEMU needs only its fd).
 *   export        check (running, shared memory, a free pcie-root-port on q35, no filesystem
 *                 with our tag) -> STATE/homes/USER/state.json "exporting" -> the idmapped
 *                 staging mount STATE/homes/USER/mnt/home (idmap-mount.c; libvirt 9.0 ignores
 *                 <idmap> for virtiofs, and the mount also confines the share to one UID/GID,
 *                 nosuid,nodev) -> live attach of <filesystem> with <driver type='virtiofs'/>,
 *                 alias ua-vmuser-fs-USER, source the staging mount (libvirt starts its own
 *                 virtiofsd, as root) -> state "exported". A failed step undoes the earlier ones.
 *   unexport      virDomainDetachDeviceAlias -> wait until the alias left the live XML (the guest
 *                 must release the device; it should have unmounted the tag first) -> wait for
 *                 libvirt's virtiofsd of that share to exit -> unmount staging -> remove the
 *                 user's state directory.
 *   list          the state directories, with live facts (virtiofsd running, staging mounted).
 * The state directory STATE/homes/USER (lock, state.json without the fields about a virtiofsd
 * of vmuser's own, removal) is export-state.c's, shared with the bare-QEMU export.
 * virDomainQemuMonitorCommand (libvirt-qemu) is the fallback for what the API cannot do.
 *
 * libvirt's default error handler prints to stderr; the backend installs a silent one and puts
 * virGetLastErrorMessage() into the verr instead. */
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

#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>

#include "atomic-file.h"
#include "export-state.h"
#include "idmap-mount.h"
#include "macro.h"
#include "names.h"
#include "proto.h"
#include "qmp-client.h"
#include "vm-backend.h"

#define AGENT_PORT_NAME "org.vmuser.agent.0"
#define AGENT_SOCKET_NAME "agent.sock"
#define AGENT_ALIAS "ua-vmuser-agent"
#define FS_ALIAS_PREFIX "ua-" HOME_EXPORT_ID_PREFIX /* ua-vmuser-fs-USER: a libvirt user alias */
#define DEFAULT_TIMEOUT_MS 10000
#define VIRTIOFSD_EXIT_TIMEOUT_MS 5000
#define POLL_MS 100
/* The live XML of a domain with a few hundred devices is some 100 KiB. */
#define LIBVIRT_MAX_XML_SIZE (2u * 1024u * 1024u)

#define SHARED_MEMORY_XML "<memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>"
#define ROOT_PORT_XML "<controller type='pci' model='pcie-root-port'/>"

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

static struct libvirt_backend *to_libvirt(struct vm_backend *b) {
        return (struct libvirt_backend *) b;
}

static void silent_error_handler(void *userdata, virErrorPtr error) {
}

static void closedirp_(DIR **d) {
        if (*d)
                closedir(*d);
}

/* "WHAT: libvirt's message" */
static int lv_fail(struct verr *e, int r, const char *what) {
        return verr_set(e, r, "%s: %s", what, virGetLastErrorMessage());
}

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
}

/* ---- the domain XML -------------------------------------------------------------------------- */

static void xml_doc_freep(xmlDocPtr *d) {
        if (*d)
                xmlFreeDoc(*d);
}
#define _cleanup_xml_doc_ _cleanup_(xml_doc_freep)

static void xpath_object_freep(xmlXPathObjectPtr *o) {
        if (*o)
                xmlXPathFreeObject(*o);
}
#define _cleanup_xpath_object_ _cleanup_(xpath_object_freep)

static void xpath_context_freep(xmlXPathContextPtr *c) {
        if (*c)
                xmlXPathFreeContext(*c);
}

static int domain_xml(struct libvirt_backend *l, unsigned flags, xmlDocPtr *ret, struct verr *e) {
        _cleanup_free_ char *text = virDomainGetXMLDesc(l->dom, flags);
        xmlDocPtr doc;
        size_t n;

        if (!text)
                return lv_fail(e, -EIO, "cannot read the domain XML");
        /* Bounded before libxml2 builds a tree of it (doc/PROTOCOL.txt, "Reply limits"). */
        n = strnlen(text, LIBVIRT_MAX_XML_SIZE + 1);
        if (n > LIBVIRT_MAX_XML_SIZE)
                return verr_set(e, -EMSGSIZE, "libvirt returned a domain XML larger than %u bytes: not parsed",
                                LIBVIRT_MAX_XML_SIZE);
        doc = xmlReadMemory(text, (int) n, "domain.xml", NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        if (!doc)
                return verr_set(e, -EBADMSG, "libvirt returned domain XML that does not parse");
        *ret = doc;
        return 0;
}

/* Evaluates expr relative to node (NULL: the document). */
static xmlXPathObjectPtr xpath_eval(xmlDocPtr doc, xmlNodePtr node, const char *expr) {
        _cleanup_(xpath_context_freep) xmlXPathContextPtr ctx = xmlXPathNewContext(doc);

        if (!ctx)
                return NULL;
        if (node)
                ctx->node = node;
        return xmlXPathEvalExpression((const xmlChar *) expr, ctx);
}

/* string(expr) into buf; returns its length (0: absent or empty), -ENAMETOOLONG when it does not
 * fit. */
static int xpath_string(xmlDocPtr doc, xmlNodePtr node, const char *expr, char *buf, size_t size) {
        _cleanup_free_ char *full = NULL;
        _cleanup_xpath_object_ xmlXPathObjectPtr o = NULL;
        size_t n;

        buf[0] = '\0';
        if (asprintf(&full, "string(%s)", expr) < 0)
                return -ENOMEM;
        o = xpath_eval(doc, node, full);
        if (!o || o->type != XPATH_STRING || !o->stringval)
                return 0;
        n = strlen((const char *) o->stringval);
        if (n >= size)
                return -ENAMETOOLONG;
        memcpy(buf, o->stringval, n + 1);
        return (int) n;
}

static int xpath_count(xmlDocPtr doc, const char *expr) {
        _cleanup_free_ char *full = NULL;
        _cleanup_xpath_object_ xmlXPathObjectPtr o = NULL;

        if (asprintf(&full, "count(%s)", expr) < 0)
                return -ENOMEM;
        o = xpath_eval(doc, NULL, full);
        if (!o || o->type != XPATH_NUMBER)
                return -EBADMSG;
        return (int) o->floatval;
}

static bool has_shared_memory(xmlDocPtr doc) {
        return xpath_count(doc, "/domain/memoryBacking/access[@mode='shared']") > 0 ||
               xpath_count(doc, "/domain/cpu/numa/cell[@memAccess='shared']") > 0;
}

static bool machine_is_q35(xmlDocPtr doc, char *machine, size_t size) {
        if (xpath_string(doc, NULL, "/domain/os/type/@machine", machine, size) < 0)
                machine[0] = '\0';
        return strstr(machine, "q35") != NULL;
}

/* The number of pcie-root-ports that can take a hot-plugged device: hotplug not off and no
 * device addressed behind them. ret_alias (optional) gets the first free one's alias. */
static int free_root_ports(xmlDocPtr doc, char *ret_alias, size_t alias_size) {
        _cleanup_xpath_object_ xmlXPathObjectPtr ports = NULL, addrs = NULL;
        bool used[256] = {};
        int n = 0;

        if (ret_alias)
                ret_alias[0] = '\0';
        addrs = xpath_eval(doc, NULL, "/domain/devices/*/address[@type='pci']");
        for (int i = 0; addrs && addrs->nodesetval && i < addrs->nodesetval->nodeNr; i++) {
                char bus[16];
                if (xpath_string(doc, addrs->nodesetval->nodeTab[i], "@bus", bus, sizeof(bus)) > 0) {
                        unsigned long v = strtoul(bus, NULL, 0);
                        if (v < ELEMENTSOF(used))
                                used[v] = true;
                }
        }
        ports = xpath_eval(doc, NULL, "/domain/devices/controller[@type='pci'][@model='pcie-root-port']");
        for (int i = 0; ports && ports->nodesetval && i < ports->nodesetval->nodeNr; i++) {
                xmlNodePtr c = ports->nodesetval->nodeTab[i];
                char index[16], hotplug[8];
                unsigned long v;

                if (xpath_string(doc, c, "@index", index, sizeof(index)) <= 0)
                        continue;
                v = strtoul(index, NULL, 10);
                if (v >= ELEMENTSOF(used) || used[v])
                        continue;
                if (xpath_string(doc, c, "target/@hotplug", hotplug, sizeof(hotplug)) > 0 && streq(hotplug, "off"))
                        continue;
                if (n == 0 && ret_alias && xpath_string(doc, c, "alias/@name", ret_alias, alias_size) <= 0)
                        snprintf(ret_alias, alias_size, "index %lu", v);
                n++;
        }
        return n;
}

static int require_running(struct libvirt_backend *l, struct verr *e) {
        int k = virDomainIsActive(l->dom);

        if (k < 0)
                return lv_fail(e, -EIO, "cannot ask libvirt whether the domain runs");
        if (k == 0)
                return verr_set(e, -ESRCH, "libvirt domain '%s' is not running (virsh -c %s start %s)", l->name, l->uri,
                                l->name);
        return 0;
}

/* ---- directories ----------------------------------------------------------------------------- */

/* Opens (creating as needed) /run/vmuser/libvirt/UUID and, when homes, its homes/ below. */
static int open_state_dir(struct libvirt_backend *l, bool create, bool homes, int *ret_fd, struct verr *e) {
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

struct user_paths {
        struct export_state_paths dirs; /* STATE/homes, STATE/homes/USER, .../USER/mnt/home */
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
        if (k)
                return verr_set(e, -ENAMETOOLONG, "user name '%s' is too long for a libvirt device alias", user);
        k = home_export_tag(user, p.tag, sizeof(p.tag));
        if (k < 0)
                return verr_set(e, k, "cannot make a tag for '%s'", user);
        *ret = p;
        return 0;
}

/* What state.json leaves out for libvirt's exports (EXPORT_STATE_NO_VIRTIOFSD): libvirt runs
 * virtiofsd and the chardev. */
static const struct home_export_info libvirt_state_defaults = {
        .virtiofsd_path = "(libvirt)",
        .server = HOME_EXPORT_SERVER_ROOT,
        .flavour = VIRTIOFSD_FLAVOUR_C,
};

/* The PID of a virtiofsd serving dir ("source=DIR" on its command line), 0 when none. libvirt
 * starts it and keeps no file of ours, so /proc is the only place to look. */
static pid_t find_virtiofsd(const char *dir) {
        _cleanup_(closedirp_) DIR *d = NULL;
        char needle[PATH_MAX + 16];
        struct dirent *de;

        snprintf(needle, sizeof(needle), "source=%s", dir);
        d = opendir("/proc");
        if (!d)
                return 0;
        while ((de = readdir(d))) {
                char path[320], exe[PATH_MAX], buf[8192];
                _cleanup_close_ int fd = -1;
                ssize_t n;
                const char *base;

                if (de->d_name[0] < '1' || de->d_name[0] > '9')
                        continue;
                snprintf(path, sizeof(path), "/proc/%s/exe", de->d_name);
                n = readlink(path, exe, sizeof(exe) - 1);
                if (n <= 0)
                        continue;
                exe[n] = '\0';
                base = strrchr(exe, '/');
                base = base ? base + 1 : exe;
                if (strncmp(base, "virtiofsd", 9) != 0)
                        continue;
                snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                n = read(fd, buf, sizeof(buf) - 1);
                if (n <= 0)
                        continue;
                for (ssize_t i = 0; i < n; i++)
                        if (buf[i] == '\0')
                                buf[i] = ' ';
                buf[n] = '\0';
                for (const char *s = strstr(buf, needle); s; s = strstr(s + 1, needle)) {
                        char after = s[strlen(needle)];
                        if (after == ' ' || after == ',' || after == '\0')
                                return (pid_t) atoi(de->d_name);
                }
        }
        return 0;
}

/* ---- agent channel --------------------------------------------------------------------------- */

/* 1 and the socket path when doc has our channel; 0 when not; -errno when it has one we cannot
 * use. */
static int find_agent_channel(struct libvirt_backend *l, xmlDocPtr doc, char *buf, size_t size, struct verr *e) {
        _cleanup_xpath_object_ xmlXPathObjectPtr o = NULL;
        xmlNodePtr c;
        char type[32], mode[32];
        int k;

        o = xpath_eval(doc, NULL,
                       "/domain/devices/channel[target/@type='virtio'][target/@name='" AGENT_PORT_NAME "']");
        if (!o || !o->nodesetval || o->nodesetval->nodeNr == 0)
                return 0;
        c = o->nodesetval->nodeTab[0];
        xpath_string(doc, c, "@type", type, sizeof(type));
        xpath_string(doc, c, "source/@mode", mode, sizeof(mode));
        if (!streq(type, "unix") || !streq(mode, "bind"))
                return verr_set(e, -EPROTONOSUPPORT,
                                "libvirt domain '%s' has a channel " AGENT_PORT_NAME " of type '%s' (source mode '%s'); "
                                "vmuser needs <channel type='unix'><source mode='bind' path='...'/>"
                                "<target type='virtio' name='" AGENT_PORT_NAME "'/></channel>",
                                l->name, type, mode);
        k = xpath_string(doc, c, "source/@path", buf, size);
        if (k == -ENAMETOOLONG)
                return verr_set(e, k, "the socket path of channel " AGENT_PORT_NAME " is too long");
        if (k <= 0)
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
                return lv_fail(e, -EIO, affect & VIR_DOMAIN_AFFECT_LIVE ?
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
        k = open_state_dir(l, false, false, &state_fd, e);
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
        struct libvirt_backend *l = to_libvirt(b);
        _cleanup_xml_doc_ xmlDocPtr doc = NULL;
        _cleanup_close_ int state_fd = -1;
        char path[PATH_MAX];
        struct sockaddr_un sa;
        struct stat st;
        int k;

        k = require_running(l, e);
        if (k < 0)
                return k;
        k = domain_xml(l, 0, &doc, e);
        if (k < 0)
                return k;
        k = find_agent_channel(l, doc, buf, size, e);
        if (k < 0)
                return k;
        if (k == 0) {
                if (!(flags & VM_BACKEND_AGENT_HOTPLUG))
                        return verr_set(e, -ENOENT, "libvirt domain '%s' has no channel " AGENT_PORT_NAME
                                                    " (vmuser attach hot-plugs one)", l->name);
                k = open_state_dir(l, true, false, &state_fd, e);
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

                k = domain_xml(l, VIR_DOMAIN_XML_INACTIVE, &stored, e);
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

/* ---- home export ----------------------------------------------------------------------------- */

/* 1 when the live XML has a filesystem with this alias or tag, 0 when not. */
static int has_filesystem(xmlDocPtr doc, const struct user_paths *p) {
        char expr[256];

        snprintf(expr, sizeof(expr), "/domain/devices/filesystem[alias/@name='%s' or target/@dir='%s']", p->alias,
                 p->tag);
        return xpath_count(doc, expr) > 0;
}

/* The alias of the controller the filesystem sits behind, e.g. "pci.5"; "" when unknown. */
static void filesystem_bus(xmlDocPtr doc, const struct user_paths *p, char *buf, size_t size) {
        char expr[256], bus[16];

        buf[0] = '\0';
        snprintf(expr, sizeof(expr), "/domain/devices/filesystem[alias/@name='%s']/address/@bus", p->alias);
        if (xpath_string(doc, NULL, expr, bus, sizeof(bus)) <= 0)
                return;
        snprintf(expr, sizeof(expr), "/domain/devices/controller[@type='pci'][@index='%lu']/alias/@name",
                 strtoul(bus, NULL, 0));
        if (xpath_string(doc, NULL, expr, buf, size) <= 0)
                snprintf(buf, size, "bus %s", bus);
}

static int lv_export_home(struct vm_backend *b, const struct vm_home_params *p, struct home_export_info *ret,
                          struct verr *e) {
        struct libvirt_backend *l = to_libvirt(b);
        _cleanup_xml_doc_ xmlDocPtr doc = NULL;
        _cleanup_close_ int source_fd = -1, homes_fd = -1, lock_fd = -1, user_fd = -1, mnt_fd = -1, staging_fd = -1;
        _cleanup_free_ char *xml = NULL;
        struct home_export_info i = {};
        struct user_paths up;
        char machine[64], port[64];
        int k;

        k = make_user_paths(l, p->user, &up, e);
        if (k < 0)
                return k;
        k = export_source_open(p->user, p->host_uid, p->host_gid, p->guest_uid, p->guest_gid, p->source_dir,
                               &source_fd, e);
        if (k < 0)
                return k;

        /* The domain: running, shared memory, a free port, nothing of ours plugged. */
        k = require_running(l, e);
        if (k < 0)
                return k;
        k = domain_xml(l, 0, &doc, e);
        if (k < 0)
                return k;
        if (!has_shared_memory(doc))
                return verr_set(e, -EOPNOTSUPP,
                                "libvirt domain '%s' has no shared memory, which virtiofs needs: add "
                                SHARED_MEMORY_XML " to its XML (virsh edit %s) and restart it", l->name, l->name);
        if (machine_is_q35(doc, machine, sizeof(machine)) && free_root_ports(doc, port, sizeof(port)) == 0)
                return verr_set(e, -ENOSPC,
                                "libvirt domain '%s' has no free PCIe root port to hot-plug the home of %s into: add one "
                                ROOT_PORT_XML " per user to share at the same time (virsh edit %s, then restart it)",
                                l->name, p->user, l->name);

        k = open_state_dir(l, true, true, &homes_fd, e);
        if (k < 0)
                return k;
        k = export_state_lock(homes_fd, "domain", l->timeout_ms, &lock_fd, e);
        if (k < 0)
                return k;
        user_fd = openat(homes_fd, p->user, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (user_fd >= 0) {
                struct home_export_info old;
                k = export_state_read(user_fd, &libvirt_state_defaults, &old);
                if (k == 0 && streq(old.phase, "exported"))
                        return verr_set(e, -EEXIST, "the home of %s is already exported to this domain (tag %s)", p->user,
                                        old.tag);
                return verr_set(e, -EEXIST, "an earlier attach or detach of %s did not finish (phase %s); detach %s "
                                            "to clean up", p->user, k == 0 ? old.phase : "unknown", p->user);
        }
        if (has_filesystem(doc, &up))
                return verr_set(e, -EBUSY, "libvirt domain '%s' still has a filesystem with tag %s or alias %s: the guest "
                                           "has not completed an earlier unplug of %s's home", l->name, up.tag, up.alias,
                                p->user);

        snprintf(i.user, sizeof(i.user), "%s", p->user);
        snprintf(i.tag, sizeof(i.tag), "%s", up.tag);
        snprintf(i.device_id, sizeof(i.device_id), "%s", up.alias);
        snprintf(i.source, sizeof(i.source), "%s", p->source_dir);
        snprintf(i.virtiofsd_path, sizeof(i.virtiofsd_path), "(libvirt)");
        i.server = HOME_EXPORT_SERVER_ROOT; /* libvirt 9.0 starts virtiofsd itself, as root */
        i.read_only = p->read_only;
        i.host_uid = p->host_uid, i.host_gid = p->host_gid;
        i.guest_uid = p->guest_uid, i.guest_gid = p->guest_gid;

        k = export_state_ensure_dir_at(homes_fd, p->user, 0711, &user_fd);
        if (k < 0)
                return verr_set(e, k, "cannot create '%s': %s", up.dirs.user_dir, strerror(-k));
        k = export_state_write(user_fd, &i, "exporting", EXPORT_STATE_NO_VIRTIOFSD);
        if (k < 0) {
                verr_set(e, k, "cannot write '%s/" HOME_EXPORT_STATE_FILE "': %s", up.dirs.user_dir, strerror(-k));
                goto undo_dir;
        }

        /* The staging mount: root's only below mnt/ (the files look like the guest UID's there). */
        k = export_state_ensure_dir_at(user_fd, EXPORT_STATE_MNT_SUBDIR, 0700, &mnt_fd);
        if (k >= 0)
                k = export_state_ensure_dir_at(mnt_fd, EXPORT_STATE_STAGING_NAME, 0700, &staging_fd);
        if (k < 0) {
                verr_set(e, k, "cannot create '%s': %s", up.dirs.staging, strerror(-k));
                goto undo_dir;
        }
        {
                struct idmap_mount_map map = {
                        .disk_uid = p->host_uid,
                        .disk_gid = p->host_gid,
                        .mount_uid = p->guest_uid,
                        .mount_gid = p->guest_gid,
                };
                k = idmap_mount_make(source_fd, up.dirs.staging, &map, p->read_only ? IDMAP_MOUNT_READ_ONLY : 0, e);
                if (k < 0)
                        goto undo_dir;
        }

        /* libvirt starts virtiofsd on the staging mount and hot-plugs vhost-user-fs-pci. */
        if (asprintf(&xml,
                     "<filesystem type='mount' accessmode='passthrough'>"
                     "<driver type='virtiofs'/>"
                     "<source dir='%s'/>"
                     "<target dir='%s'/>"
                     "<alias name='%s'/>"
                     "</filesystem>",
                     up.dirs.staging, up.tag, up.alias) < 0) {
                k = -ENOMEM;
                goto undo_mount;
        }
        if (virDomainAttachDeviceFlags(l->dom, xml, VIR_DOMAIN_AFFECT_LIVE) < 0) {
                k = lv_fail(e, -EREMOTEIO, "libvirt refused the virtiofs live attach");
                goto undo_mount;
        }

        {
                _cleanup_xml_doc_ xmlDocPtr after = NULL;
                struct verr ignore = {};
                if (domain_xml(l, 0, &after, &ignore) == 0)
                        filesystem_bus(after, &up, i.bus, sizeof(i.bus));
        }
        k = export_state_write(user_fd, &i, "exported", EXPORT_STATE_NO_VIRTIOFSD);
        if (k < 0) {
                /* The device is in; leave the state saying "exporting" so detach cleans up. */
                return verr_set(e, k, "the home of %s is plugged in, but '%s/" HOME_EXPORT_STATE_FILE "' could not be "
                                      "written (%s): detach %s to clean up",
                                p->user, up.dirs.user_dir, strerror(-k), p->user);
        }
        i.staging_mounted = true;
        i.virtiofsd.pid = find_virtiofsd(up.dirs.staging);
        i.virtiofsd_state = i.virtiofsd.pid > 0 ? VIRTIOFSD_STATE_RUNNING : VIRTIOFSD_STATE_DEAD;
        if (ret)
                *ret = i;
        return 0;

undo_mount: {
        struct verr ignore = {};
        (void) idmap_mount_remove(up.dirs.staging, &ignore);
}
undo_dir: {
        struct verr ignore = {};
        (void) export_state_remove_user_dir(homes_fd, p->user, &up.dirs, &ignore);
}
        return k;
}

static int lv_unexport_home(struct vm_backend *b, const char *user, unsigned flags, int unplug_timeout_ms,
                            struct verr *e) {
        struct libvirt_backend *l = to_libvirt(b);
        _cleanup_close_ int homes_fd = -1, lock_fd = -1, user_fd = -1;
        struct home_export_info st = {};
        struct user_paths up;
        bool have_state, device_left = false;
        int64_t deadline;
        pid_t pid;
        int k, running;

        k = make_user_paths(l, user, &up, e);
        if (k < 0)
                return k;
        if (unplug_timeout_ms <= 0)
                unplug_timeout_ms = HOME_EXPORT_DEFAULT_UNPLUG_TIMEOUT_MS;

        k = open_state_dir(l, false, true, &homes_fd, e);
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
                snprintf(st.phase, sizeof(st.phase), "unexporting");
                (void) export_state_write(user_fd, &st, "unexporting", EXPORT_STATE_NO_VIRTIOFSD);
        }

        /* The device: ask libvirt to unplug it, then wait for the guest to let go. */
        running = virDomainIsActive(l->dom);
        if (running == 1) {
                _cleanup_xml_doc_ xmlDocPtr doc = NULL;
                k = domain_xml(l, 0, &doc, e);
                if (k < 0)
                        return k;
                if (has_filesystem(doc, &up)) {
                        if (virDomainDetachDeviceAlias(l->dom, up.alias, VIR_DOMAIN_AFFECT_LIVE) < 0 &&
                            virGetLastErrorCode() != VIR_ERR_DEVICE_MISSING)
                                return lv_fail(e, -EREMOTEIO, "libvirt refused to unplug the home");
                        deadline = now_ms() + unplug_timeout_ms;
                        for (;;) {
                                _cleanup_xml_doc_ xmlDocPtr now = NULL;
                                k = domain_xml(l, 0, &now, e);
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
                return lv_fail(e, -EIO, "cannot ask libvirt whether the domain runs");
        else if (!have_state)
                return verr_set(e, -ENOENT, "the home of %s is not exported to libvirt domain '%s'", user, l->name);

        /* libvirt stops its virtiofsd when the device is gone; wait for it to let go of the mount. */
        deadline = now_ms() + VIRTIOFSD_EXIT_TIMEOUT_MS;
        while (!device_left && (pid = find_virtiofsd(up.dirs.staging)) > 0 && now_ms() < deadline)
                sleep_ms(POLL_MS);

        if (have_state) {
                k = idmap_mount_remove(up.dirs.staging, e);
                if (k < 0)
                        return k;
                k = export_state_remove_user_dir(homes_fd, user, &up.dirs, e);
                if (k < 0)
                        return k;
        }
        return device_left ? 1 : 0;
}

static int fill_live(struct libvirt_backend *l, struct home_export_info *i) {
        struct user_paths up;
        struct verr ignore = {};

        if (make_user_paths(l, i->user, &up, &ignore) < 0)
                return 0;
        i->staging_mounted = idmap_mount_is_mounted(up.dirs.staging) > 0;
        i->virtiofsd.supervisor = VIRTIOFSD_SUPERVISOR_DAEMON;
        i->virtiofsd.pid = find_virtiofsd(up.dirs.staging);
        i->virtiofsd_state = i->virtiofsd.pid > 0         ? VIRTIOFSD_STATE_RUNNING :
                             streq(i->phase, "exported") ? VIRTIOFSD_STATE_DEAD :
                                                           VIRTIOFSD_STATE_NONE;
        return 0;
}

static int compare_info(const void *a, const void *b) {
        return strcmp(((const struct home_export_info *) a)->user, ((const struct home_export_info *) b)->user);
}

static int lv_list_exports(struct vm_backend *b, struct home_export_info **ret, size_t *ret_n, struct verr *e) {
        struct libvirt_backend *l = to_libvirt(b);
        _cleanup_close_ int homes_fd = -1;
        _cleanup_(closedirp_) DIR *d = NULL;
        _cleanup_free_ struct home_export_info *list = NULL;
        size_t n = 0, cap = 0;
        struct dirent *de;
        int k;

        k = open_state_dir(l, false, true, &homes_fd, e);
        if (k == -ENOENT) {
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        if (k < 0)
                return k;
        d = fdopendir(homes_fd);
        if (!d)
                return negative_errno();
        homes_fd = -1;
        while ((de = readdir(d))) {
                _cleanup_close_ int fd = -1;
                struct home_export_info i;

                if (!name_is_valid(de->d_name))
                        continue;
                fd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
                if (fd < 0 || export_state_read(fd, &libvirt_state_defaults, &i) < 0)
                        continue;
                fill_live(l, &i);
                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 8;
                        struct home_export_info *m = reallocarray(list, ncap, sizeof(*m));
                        if (!m)
                                return -ENOMEM;
                        list = m, cap = ncap;
                }
                list[n++] = i;
        }
        if (n > 0)
                qsort(list, n, sizeof(*list), compare_info);
        *ret = TAKE_PTR(list);
        *ret_n = n;
        return 0;
}

static int lv_describe(struct vm_backend *b, struct vm_backend_info *ret, struct verr *e) {
        struct libvirt_backend *l = to_libvirt(b);
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
                return lv_fail(e, -EIO, "cannot ask libvirt whether the domain runs");
        i.running = k == 1;
        /* A managed save (virsh managedsave) comes back with its devices, our share included. */
        i.saved = !i.running && virDomainHasManagedSaveImage(l->dom, 0) == 1;
        k = domain_xml(l, 0, &doc, e);
        if (k < 0)
                return k;
        i.shared_memory = has_shared_memory(doc);
        if (machine_is_q35(doc, i.machine, sizeof(i.machine)))
                i.free_ports = free_root_ports(doc, NULL, 0);
        {
                struct verr ignore = {};
                if (find_agent_channel(l, doc, i.agent_socket, sizeof(i.agent_socket), &ignore) <= 0)
                        i.agent_socket[0] = '\0';
        }
        *ret = i;
        return 0;
}

static void lv_free(struct vm_backend *b) {
        struct libvirt_backend *l = to_libvirt(b);

        if (l->dom)
                virDomainFree(l->dom);
        if (l->conn)
                virConnectClose(l->conn);
        free(l);
}

static const struct vm_backend_ops libvirt_ops = {
        .kind = VM_BACKEND_LIBVIRT,
        .agent_socket = lv_agent_socket,
        .export_home = lv_export_home,
        .unexport_home = lv_unexport_home,
        .list_exports = lv_list_exports,
        .describe = lv_describe,
        .free = lv_free,
};

int vm_backend_libvirt_monitor_command(struct vm_backend *b, const char *command, bool hmp, char **ret,
                                       struct verr *e) {
        struct libvirt_backend *l = to_libvirt(b);
        char *result = NULL;

        int k;

        if (virDomainQemuMonitorCommand(l->dom, command, &result, hmp ? VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP : 0) < 0)
                return lv_fail(e, -EREMOTEIO, "the monitor command failed");
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
                            lv_fail(e, -EIO, "cannot look up the libvirt domain");
                goto fail;
        }
        if (virDomainGetUUIDString(l->dom, l->uuid) < 0) {
                k = lv_fail(e, -EIO, "cannot read the domain's UUID");
                goto fail;
        }
        snprintf(l->state_dir, sizeof(l->state_dir), VM_BACKEND_LIBVIRT_STATE_DIR "/%s", l->uuid);
        *ret = &l->base;
        return 0;
fail:
        lv_free(&l->base);
        return k;
}
