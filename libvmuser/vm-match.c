/* vm-match.c: VM patterns -> VM arguments (see vm-match.h).
 *
 * Flow: no wildcard -> the pattern itself; libvirt -> virConnectListAllDomains(ACTIVE) and
 * fnmatch on the names; a bare QEMU -> opendir of the VM directory and fnmatch on the
 * subdirectory names. Each source is read once per pattern, at the start of an apply. */
#include "vm-match.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "dir-util.h"
#include "macro.h"
#include "vm-backend.h"

/* Libraries do not print: libvirt's default error handler would. */
static void quiet_libvirt(void *userdata, virErrorPtr err) {
}

static int push(char ***list, size_t *n, char *s) {
        char **l;

        if (!s)
                return -ENOMEM;
        l = realloc(*list, (*n + 1) * sizeof(char *));
        if (!l) {
                free(s);
                return -ENOMEM;
        }
        l[(*n)++] = s;
        *list = l;
        return 0;
}

static int compare(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static int match_libvirt(const char *glob, const char *uri, bool prefixed, char ***list, size_t *n, struct verr *e) {
        virConnectPtr conn;
        virDomainPtr *doms = NULL;
        size_t first = *n;
        int k, r = 0;

        virSetErrorFunc(NULL, quiet_libvirt);
        conn = virConnectOpen(uri);
        if (!conn)
                return verr_set(e, -ECONNREFUSED, "cannot connect to libvirt at %s to list its domains: %s", uri,
                                virGetLastErrorMessage());
        k = virConnectListAllDomains(conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
        if (k < 0) {
                r = verr_set(e, -EIO, "cannot list the domains of libvirt at %s: %s", uri, virGetLastErrorMessage());
                goto finish;
        }
        for (int i = 0; i < k; i++) {
                const char *name = virDomainGetName(doms[i]);
                char *s = NULL;
                if (r >= 0 && name && name[0] != '.' && fnmatch(glob, name, 0) == 0) {
                        if (asprintf(&s, "%s%s", prefixed ? VM_BACKEND_LIBVIRT_PREFIX : "", name) < 0)
                                s = NULL;
                        r = push(list, n, s);
                }
                virDomainFree(doms[i]);
        }
        free(doms);
        qsort(*list + first, *n - first, sizeof(char *), compare);
finish:
        virConnectClose(conn);
        return r;
}

struct match_ctx {
        const char *dir, *glob;
        bool bare;
        char ***list;
        size_t *n;
};

static int match_one(int dir_fd, const char *name, void *userdata) {
        struct match_ctx *c = userdata;
        struct stat st;
        char *s = NULL;

        if (name[0] == '.' || fnmatch(c->glob, name, 0) != 0)
                return 0;
        if (fstatat(dir_fd, name, &st, 0) < 0 || !S_ISDIR(st.st_mode))
                return 0;
        if (c->bare)
                s = strdup(name);
        else if (asprintf(&s, "%s/%s", streq(c->dir, "/") ? "" : c->dir, name) < 0)
                s = NULL;
        return push(c->list, c->n, s);
}

static int match_dir(const char *dir, const char *glob, bool bare, char ***list, size_t *n, struct verr *e) {
        struct match_ctx c = { dir, glob, bare, list, n };
        size_t first = *n;
        _cleanup_close_ int fd = -1;
        int r;

        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
                if (errno == ENOENT)
                        return 0; /* no VM directory: no VMs */
                return verr_set(e, -errno, "cannot list the VM directory '%s': %s", dir, strerror(errno));
        }
        r = dir_foreach_at(fd, match_one, &c);
        qsort(*list + first, *n - first, sizeof(char *), compare);
        return r;
}

int vm_match(const char *pattern, const char *connect_uri, char ***list, size_t *n, struct verr *e) {
        size_t plen = strlen(VM_BACKEND_LIBVIRT_PREFIX);
        bool prefixed = strncmp(pattern, VM_BACKEND_LIBVIRT_PREFIX, plen) == 0;
        const char *slash;

        if (!strpbrk(pattern, "*?["))
                return push(list, n, strdup(pattern));
        if (prefixed || connect_uri)
                return match_libvirt(prefixed ? pattern + plen : pattern,
                                     connect_uri ? connect_uri : VM_BACKEND_LIBVIRT_DEFAULT_URI, prefixed, list, n, e);

        slash = strrchr(pattern, '/');
        if (!slash) {
                const char *root = getenv("VMUSER_VM_DIR");
                return match_dir(root && *root ? root : VM_BACKEND_QEMU_VM_DIR_DEFAULT, pattern, true, list, n, e);
        }
        if (strpbrk(pattern, "*?[") < slash)
                return verr_set(e, -EINVAL, "VM pattern '%s': wildcards are allowed in the last component only", pattern);
        _cleanup_free_ char *dir = strndup(pattern, (size_t) (slash - pattern));
        if (!dir)
                return -ENOMEM;
        return match_dir(*dir ? dir : "/", slash + 1, false, list, n, e);
}
