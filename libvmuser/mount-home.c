/* mount-home.c: mounting and unmounting a user's home on its mount point (see mount-home.h).
 *
 * A mount flows like this: open_parent() walks from "/" to the directory holding the mount point
 * with openat(O_PATH|O_NOFOLLOW), one component at a time, refusing symlinks and directories that
 * are not root-owned or are writable by others, and creating missing ones root-owned 0755. The
 * mount point itself is opened (or created) the same way, then identify() asks the kernel whether
 * it is already a mount root and, if so, whether that mount is this home (same fstype and source
 * in /proc/self/mountinfo, or the same directory for a bind). Otherwise the filesystem is mounted
 * on /proc/self/fd/N of the mount point's fd, so nothing between the checks and the mount can
 * redirect it. Unmounting walks the same way without creating anything and unmounts through the
 * parent's fd, so a symlink planted meanwhile cannot make us unmount something else. */
#include "mount-home.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>

#include "macro.h"

/* Room for the spec's own data plus ",uid=4294967295,gid=4294967295,mode=0700". */
#define MOUNT_DATA_MAX (HOME_SPEC_OPTIONS_MAX + 64)

/* Opens path (absolute) with no symlink anywhere on the way (openat2 RESOLVE_NO_SYMLINKS), or,
 * on kernels without openat2, at least not as its last component. For bind sources. */
static int open_no_symlinks(const char *path, int flags) {
        struct open_how how = {
                .flags = (uint64_t) (flags | O_CLOEXEC),
                .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        int fd;

        fd = (int) syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
        if (fd < 0 && errno == ENOSYS)
                fd = open(path, flags | O_CLOEXEC | O_NOFOLLOW);
        return fd < 0 ? negative_errno() : fd;
}

/* A directory on the way to a mount point: a real directory (not a symlink), owned by root and
 * writable by nobody else, so no other user can swap what comes after it. */
static int check_parent(int fd, const char *shown, struct verr *e) {
        struct stat st;

        if (fstat(fd, &st) < 0)
                return verr_set(e, negative_errno(), "Cannot inspect '%s': %s", shown, strerror(errno));
        if (S_ISLNK(st.st_mode))
                return verr_set(e, -ELOOP,
                                "'%s' is a symbolic link; mount points are never reached through one",
                                shown);
        if (!S_ISDIR(st.st_mode))
                return verr_set(e, -ENOTDIR, "'%s' is not a directory", shown);
        if (st.st_uid != 0)
                return verr_set(e, -EPERM, "'%s' belongs to UID %u, not root; refusing to mount below it",
                                shown, (unsigned) st.st_uid);
        if (st.st_mode & 0022)
                return verr_set(
                        e, -EPERM,
                        "'%s' is writable by group or others (mode %04o); refusing to mount below it", shown,
                        (unsigned) (st.st_mode & 07777));
        return 0;
}

/* The mount point itself may belong to anyone (it is often the user's existing home), but it
 * must be a directory and not a symlink. AT_STATX_DONT_SYNC: when a virtiofs home is mounted
 * there and its host side is gone, asking the filesystem would fail (or wait); the cached type
 * is all we need. */
static int check_mount_point(int fd, const char *shown, struct verr *e) {
        struct statx sx;

        if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC, STATX_TYPE, &sx) < 0)
                return verr_set(e, negative_errno(), "Cannot inspect '%s': %s", shown, strerror(errno));
        if (S_ISLNK(sx.stx_mode))
                return verr_set(e, -ELOOP, "mount point '%s' is a symbolic link", shown);
        if (!S_ISDIR(sx.stx_mode))
                return verr_set(e, -ENOTDIR, "mount point '%s' is not a directory", shown);
        return 0;
}

/* Creates name below parent_fd as a root-owned 0755 directory (whatever the umask) and returns
 * an fd to it. Someone else creating it first is fine: the caller checks what is there. */
static int make_dir(int parent_fd, const char *name, const char *shown, struct verr *e) {
        _cleanup_close_ int fd = -1;
        bool created;

        created = mkdirat(parent_fd, name, 0755) >= 0;
        if (!created && errno != EEXIST)
                return verr_set(e, negative_errno(), "Cannot create '%s': %s", shown, strerror(errno));

        fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return verr_set(e, negative_errno(), "Cannot open '%s': %s", shown,
                                errno == ELOOP ? "it is a symbolic link" : strerror(errno));
        if (created && (fchown(fd, 0, 0) < 0 || fchmod(fd, 0755) < 0))
                return verr_set(e, negative_errno(), "Cannot set owner and mode of '%s': %s", shown,
                                strerror(errno));
        return TAKE_FD(fd);
}

/* Opens the directory that holds path's last component, checking each directory from "/" down
 * (and creating missing ones if create). *ret_leaf points into path. -ENOENT (without a reason)
 * when a component is missing and !create. */
static int open_parent(const char *path, bool create, int *ret_fd, const char **ret_leaf, struct verr *e) {
        _cleanup_close_ int fd = -1;
        const char *leaf;
        int r;

        if (!path_is_normalized_absolute(path) || !strchr(path + 1, '/'))
                return verr_set(e, -EINVAL, "home directory '%s' is not a normalized absolute path below /",
                                path);
        leaf = strrchr(path, '/') + 1;

        fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return verr_set(e, negative_errno(), "Cannot open '/': %s", strerror(errno));
        r = check_parent(fd, "/", e);
        if (r < 0)
                return r;

        for (const char *p = path + 1; p < leaf;) {
                const char *end = strchr(p, '/');
                char comp[NAME_MAX + 1], shown[HOME_PATH_MAX + 1];
                _cleanup_close_ int child = -1;

                if ((size_t) (end - p) > NAME_MAX)
                        return verr_set(e, -ENAMETOOLONG, "a component of '%s' is too long", path);
                snprintf(comp, sizeof(comp), "%.*s", (int) (end - p), p);
                snprintf(shown, sizeof(shown), "%.*s", (int) (end - path), path);

                child = openat(fd, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
                if (child < 0 && errno == ENOENT && create)
                        child = make_dir(fd, comp, shown, e);
                else if (child < 0 && errno == ENOENT)
                        return -ENOENT;
                else if (child < 0)
                        child = verr_set(e, negative_errno(), "Cannot open '%s': %s", shown,
                                         strerror(errno));
                if (child < 0)
                        return child;

                r = check_parent(child, shown, e);
                if (r < 0)
                        return r;

                closep(&fd);
                fd = TAKE_FD(child);
                p = end + 1;
        }

        *ret_fd = TAKE_FD(fd);
        *ret_leaf = leaf;
        return 0;
}

/* Finds mount mnt_id in /proc/self/mountinfo and copies its fstype and source. */
static int mountinfo_lookup(uint64_t mnt_id, char *fstype, size_t fstype_size, char *source,
                            size_t source_size) {
        _cleanup_fclose_ FILE *f = NULL;
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;

        f = fopen("/proc/self/mountinfo", "re");
        if (!f)
                return negative_errno();
        while (getline(&line, &cap, f) > 0) {
                unsigned long long id;
                const char *sep;
                char *t, *s;

                if (sscanf(line, "%llu ", &id) != 1 || id != mnt_id)
                        continue;
                /* "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS" */
                sep = strstr(line, " - ");
                if (!sep)
                        return -EBADMSG;
                t = strdupa(sep + 3);
                s = strchr(t, ' ');
                if (!s)
                        return -EBADMSG;
                *s++ = '\0';
                s[strcspn(s, " \n")] = '\0';
                snprintf(fstype, fstype_size, "%s", t);
                snprintf(source, source_size, "%s", s);
                return 0;
        }
        return -ENOENT;
}

/* Is the directory at fd (reached as path) a mount root, and is that mount this home?
 * 1: yes, ours; 0: not a mount root; -EEXIST: another mount. */
static int identify(int fd, const char *path, const struct home_spec *spec, struct verr *e) {
        char fstype[64], source[HOME_PATH_MAX * 4 + 1];
        struct statx sx;
        int r;

        /* Mount root and mount ID come from the VFS; DONT_SYNC spares a broken share the question. */
        r = statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC,
                  STATX_TYPE | STATX_INO | STATX_MNT_ID, &sx);
        if (r < 0)
                return verr_set(e, negative_errno(), "Cannot inspect '%s': %s", path, strerror(errno));
        if (!(sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) || !(sx.stx_mask & STATX_MNT_ID))
                return verr_set(e, -EOPNOTSUPP,
                                "the kernel does not tell mount roots apart (Linux 5.8 or newer needed)");
        if (!(sx.stx_attributes & STATX_ATTR_MOUNT_ROOT))
                return 0;

        r = mountinfo_lookup(sx.stx_mnt_id, fstype, sizeof(fstype), source, sizeof(source));
        if (r < 0)
                return verr_set(e, r, "Cannot find the mount on '%s' in /proc/self/mountinfo: %s", path,
                                strerror(-r));

        if (spec->fstype == HOME_FSTYPE_BIND) {
                _cleanup_close_ int src_fd = -1;
                struct stat st;

                src_fd = open_no_symlinks(spec->tag, O_PATH | O_DIRECTORY);
                if (src_fd >= 0 && fstat(src_fd, &st) >= 0 && st.st_ino == sx.stx_ino &&
                    st.st_dev == makedev(sx.stx_dev_major, sx.stx_dev_minor))
                        return 1;
                return verr_set(e, -EEXIST,
                                "'%s' already has a mount (%s '%s') that is not the bind of '%s'", path,
                                fstype, source, spec->tag);
        }

        if (streq(fstype, home_fstype_to_string(spec->fstype)) && streq(source, spec->tag))
                return 1;
        return verr_set(e, -EEXIST, "'%s' already has a mount (%s '%s') that is not %s '%s'", path, fstype,
                        source, home_fstype_to_string(spec->fstype), spec->tag);
}

static int owner_of(int fd, uid_t *ret) {
        struct stat st;

        if (fstat(fd, &st) < 0)
                return negative_errno();
        *ret = st.st_uid;
        return 0;
}

/* tmpfs roots belong to whoever mounts them, mode 1777, unless told otherwise: make the root
 * the user's, private unless the spec chose a mode. */
static int tmpfs_add_owner(char *data, uid_t uid, gid_t gid) {
        bool has_mode = strncmp(data, "mode=", 5) == 0 || strstr(data, ",mode=");
        size_t len = strlen(data);
        int n;

        n = snprintf(data + len, MOUNT_DATA_MAX - len, "%suid=%u,gid=%u%s", len > 0 ? "," : "",
                     (unsigned) uid, (unsigned) gid, has_mode ? "" : ",mode=0700");
        return n < 0 || (size_t) n >= MOUNT_DATA_MAX - len ? -E2BIG : 0;
}

/* What an errno from mount(2) most likely means for a home, beyond strerror(). */
static const char *mount_error_hint(const struct home_spec *spec, int err) {
        if (err == ENOENT && access("/proc/self/fd", F_OK) < 0)
                return " (/proc is not mounted)";
        if (spec->fstype != HOME_FSTYPE_VIRTIOFS)
                return "";
        if (err == ENODEV)
                return " (this kernel has no virtiofs: is the virtiofs module loaded?)";
        if (err == EINVAL)
                return " (no virtio-fs device has this tag, or the options are not valid for virtiofs)";
        return "";
}

/* Mounts on the mount point open at leaf_fd (reached as path/leaf below parent_fd). */
static int do_mount(int parent_fd, const char *leaf, int leaf_fd, const char *path,
                    const struct home_spec *spec, uid_t uid, gid_t gid, struct verr *e) {
        char data[MOUNT_DATA_MAX + 1], target[64];
        const char *source, *fstype;
        unsigned long flags;
        int r;

        r = home_spec_mount_args(spec, &source, &fstype, &flags, data);
        if (r < 0)
                return verr_set(e, r, "home options '%s' are not valid", spec->options);
        snprintf(target, sizeof(target), "/proc/self/fd/%d", leaf_fd);

        if (spec->fstype != HOME_FSTYPE_BIND) {
                if (spec->fstype == HOME_FSTYPE_TMPFS && tmpfs_add_owner(data, uid, gid) < 0)
                        return verr_set(e, -E2BIG, "home options '%s' are too long", spec->options);
                if (mount(source, target, fstype, flags, data) < 0) {
                        r = negative_errno();
                        /* virtio-fs answers EINVAL for a tag no device has (kernel 6.1 lists tags
                         * nowhere else): the host has not plugged the share in, or not yet. It also
                         * does for options it rejects, so only a mount without options says
                         * which. */
                        if (r == -EINVAL && spec->fstype == HOME_FSTYPE_VIRTIOFS && data[0] == '\0')
                                return verr_set(e, -ENXIO, "Failed to mount virtiofs '%s' on '%s': the VM has no "
                                                           "virtio-fs device with that tag (not exported by the host, "
                                                           "or not yet)", source, path);
                        return verr_set(e, r, "Failed to mount %s '%s' on '%s': %s%s", fstype, source, path,
                                        strerror(-r), mount_error_hint(spec, -r));
                }
                return 0;
        }

        /* A bind ignores every flag but MS_BIND (and MS_REC); the flags need a second step. The
         * bind alone grants nothing: it shows what the source already shows, with its flags. */
        _cleanup_close_ int src_fd = -1, root_fd = -1;
        char src_path[64];

        src_fd = open_no_symlinks(source, O_PATH | O_DIRECTORY);
        if (src_fd < 0)
                return verr_set(e, src_fd, "Cannot open bind source '%s': %s", source,
                                src_fd == -ELOOP ? "a component is a symbolic link" : strerror(-src_fd));
        snprintf(src_path, sizeof(src_path), "/proc/self/fd/%d", src_fd);
        if (mount(src_path, target, NULL, MS_BIND, NULL) < 0) {
                r = negative_errno();
                return verr_set(e, r, "Failed to bind '%s' on '%s': %s%s", source, path, strerror(-r),
                                mount_error_hint(spec, -r));
        }

        root_fd = openat(parent_fd, leaf, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (root_fd >= 0) {
                snprintf(target, sizeof(target), "/proc/self/fd/%d", root_fd);
                if (mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | flags, NULL) >= 0)
                        return 0;
        }
        r = negative_errno();
        closep(&root_fd);
        /* Do not leave a bind without nosuid,nodev behind. */
        snprintf(target, sizeof(target), "/proc/self/fd/%d/%s", parent_fd, leaf);
        (void) umount2(target, UMOUNT_NOFOLLOW | MNT_DETACH);
        return verr_set(e, r, "Failed to apply nosuid,nodev%s%s to the bind of '%s' on '%s': %s",
                        spec->options[0] ? "," : "", spec->options, source, path, strerror(-r));
}

int mount_home(const char *path, const struct home_spec *spec, uid_t uid, gid_t gid, uid_t *ret_root_uid,
               struct verr *e) {
        _cleanup_close_ int parent_fd = -1, leaf_fd = -1, root_fd = -1;
        const char *leaf;
        int r, result;
        uid_t root_uid;

        r = open_parent(path, true, &parent_fd, &leaf, e);
        if (r < 0)
                return r;

        leaf_fd = openat(parent_fd, leaf, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (leaf_fd < 0 && errno == ENOENT)
                leaf_fd = make_dir(parent_fd, leaf, path, e);
        else if (leaf_fd < 0)
                leaf_fd = verr_set(e, negative_errno(), "Cannot open '%s': %s", path, strerror(errno));
        if (leaf_fd < 0)
                return leaf_fd;
        r = check_mount_point(leaf_fd, path, e);
        if (r < 0)
                return r;

        r = identify(leaf_fd, path, spec, e);
        if (r < 0)
                return r;
        if (r > 0)
                result = MOUNT_HOME_ALREADY;
        else {
                r = do_mount(parent_fd, leaf, leaf_fd, path, spec, uid, gid, e);
                if (r < 0)
                        return r;
                result = MOUNT_HOME_MOUNTED;
        }

        /* Looked up again from the parent, the name now leads into the mounted root. */
        root_fd = openat(parent_fd, leaf, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (root_fd < 0 || owner_of(root_fd, &root_uid) < 0)
                return verr_set(e, negative_errno(), "Cannot inspect the mounted '%s': %s", path,
                                strerror(errno));
        if (ret_root_uid)
                *ret_root_uid = root_uid;
        return result;
}

int unmount_home(const char *path, const struct home_spec *spec, struct verr *e) {
        _cleanup_close_ int parent_fd = -1;
        const char *leaf;
        char target[64 + NAME_MAX];
        int r, result = UNMOUNT_HOME_NOT_MOUNTED;

        r = open_parent(path, false, &parent_fd, &leaf, e);
        if (r == -ENOENT)
                return UNMOUNT_HOME_NOT_MOUNTED;
        if (r < 0)
                return r;
        /* Through the parent's fd: the last component is looked up (and not followed) right here. */
        snprintf(target, sizeof(target), "/proc/self/fd/%d/%s", parent_fd, leaf);

        /* More than one round only if copies got stacked (e.g. by hand): leave none behind. */
        for (int round = 0; round < 8; round++) {
                _cleanup_close_ int leaf_fd = -1;

                leaf_fd = openat(parent_fd, leaf, O_PATH | O_NOFOLLOW | O_CLOEXEC);
                if (leaf_fd < 0 && errno == ENOENT)
                        return result;
                if (leaf_fd < 0)
                        return verr_set(e, negative_errno(), "Cannot open '%s': %s", path, strerror(errno));
                r = check_mount_point(leaf_fd, path, e);
                if (r < 0)
                        return r;
                r = identify(leaf_fd, path, spec, result == UNMOUNT_HOME_NOT_MOUNTED ? e : NULL);
                if (r == 0)
                        return result;
                if (r == -EEXIST && result != UNMOUNT_HOME_NOT_MOUNTED)
                        /* Ours is gone; what it covered is not ours to touch. */
                        return result;
                if (r < 0)
                        return r;

                /* Our own fd would keep the mount busy. */
                closep(&leaf_fd);
                if (umount2(target, UMOUNT_NOFOLLOW) >= 0) {
                        if (result == UNMOUNT_HOME_NOT_MOUNTED)
                                result = UNMOUNT_HOME_UNMOUNTED;
                        continue;
                }
                r = negative_errno();
                /* In use (a process still has its cwd there, say), or a share whose host side is
                 * gone: detach now, the kernel frees it when the last user goes. Waiting could
                 * hang a logout. */
                if (umount2(target, UMOUNT_NOFOLLOW | MNT_DETACH) < 0)
                        return verr_set(e, r, "Failed to unmount '%s': %s", path, strerror(-r));
                result = UNMOUNT_HOME_DETACHED;
        }
        return result;
}

int mount_home_check(const char *path, const struct home_spec *spec, struct verr *e) {
        _cleanup_close_ int parent_fd = -1, leaf_fd = -1;
        const char *leaf;
        int r;

        r = open_parent(path, false, &parent_fd, &leaf, e);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        leaf_fd = openat(parent_fd, leaf, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (leaf_fd < 0)
                return errno == ENOENT ? 0
                                       : verr_set(e, negative_errno(), "Cannot open '%s': %s", path,
                                                  strerror(errno));
        r = check_mount_point(leaf_fd, path, e);
        if (r < 0)
                return r;
        return identify(leaf_fd, path, spec, e);
}

int mount_unit_name(const char *path, char *buf, size_t size) {
        /* systemd's unit_name_from_path() (what systemd-escape --path prints): the path without
         * its leading "/", each "/" as "-", and every byte outside [A-Za-z0-9:_.] as "\xNN", plus
         * a '.' at the very start (a unit name must not begin with a dot). A '.' that starts a
         * later component stays as it is. "/" alone is "-". */
        static const char hex[] = "0123456789abcdef";
        size_t n = 0;

        if (!path || path[0] != '/')
                return -EINVAL;
        path++;
        if (!*path) {
                if (size < sizeof("-.mount"))
                        return -ENAMETOOLONG;
                memcpy(buf, "-.mount", sizeof("-.mount"));
                return 0;
        }
        for (const char *p = path; *p; p++) {
                unsigned char c = (unsigned char) *p;
                char piece[4];
                size_t l;

                if (c == '/') {
                        if (p[1] == '/' || !p[1])
                                return -EINVAL; /* not normalized */
                        piece[0] = '-';
                        l = 1;
                } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                           c == ':' || c == '_' || (c == '.' && p != path)) {
                        piece[0] = (char) c;
                        l = 1;
                } else {
                        piece[0] = '\\';
                        piece[1] = 'x';
                        piece[2] = hex[c >> 4];
                        piece[3] = hex[c & 15];
                        l = 4;
                }
                if (n + l + sizeof(".mount") > size)
                        return -ENAMETOOLONG;
                memcpy(buf + n, piece, l);
                n += l;
        }
        /* systemd shortens names past UNIT_NAME_MAX (256) with a hash; no home path needs that. */
        if (n + strlen(".mount") >= 256)
                return -ENAMETOOLONG;
        memcpy(buf + n, ".mount", sizeof(".mount"));
        return 0;
}
