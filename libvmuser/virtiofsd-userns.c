/* virtiofsd-userns.c: an unprivileged virtiofsd's user namespace (see "Without host root" in
 * virtiofsd.h).
 *
 * Flow: before the fork, virtiofsd_userns_prepare() computes everything (the children may not
 * allocate) and virtiofsd_listen_socket() binds the socket vmuser hands over -> in the
 * supervisor's child, virtiofsd_userns_enter(): its own mount namespace with the shared
 * directory bind-mounted on VIRTIOFSD_USERNS_ROOT/ID, then the user namespace, then a wait ->
 * meanwhile the supervisor runs virtiofsd_userns_write_maps() for it -> the child becomes the
 * server's ID, keeps only the capabilities virtiofsd needs and goes on to exec it. Everything
 * after the fork is async-signal-safe. */
#include "virtiofsd-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "macro.h"

int virtiofsd_userns_available(void) {
        int status;
        pid_t pid = fork();

        if (pid < 0)
                return 0;
        if (pid == 0)
                _exit(unshare(CLONE_NEWUSER) < 0 ? 1 : 0);
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return 0;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Writes s to /proc/PID/NAME; 0 or errno. Async-signal-safe. */
static int write_proc_file(pid_t pid, const char *name, const char *s) {
        char path[64];
        size_t n = 0, len = strlen(s);
        int fd, err = 0;

        memcpy(path, "/proc/", 6), n = 6;
        n += virtiofsd_fmt_ulong(path + n, (unsigned long) pid);
        path[n++] = '/';
        memcpy(path + n, name, strlen(name) + 1);
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return errno;
        if (write(fd, s, len) != (ssize_t) len)
                err = errno ? errno : EIO;
        close(fd);
        return err;
}

static int capset_raw(uint64_t permitted, uint64_t effective, uint64_t inheritable) {
        struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct d[2] = {
                { (uint32_t) effective, (uint32_t) permitted, (uint32_t) inheritable },
                { (uint32_t) (effective >> 32), (uint32_t) (permitted >> 32), (uint32_t) (inheritable >> 32) },
        };
        return (int) syscall(SYS_capset, &h, d);
}

/* The child of an unprivileged start, still root on the host: mount the directory where the
 * server can reach it, in a mount namespace of its own, make the user namespace, let the
 * supervisor write the maps, become the server's ID inside (its host ID outside; all
 * capabilities in the host's namespace go), then keep only u->caps (bounding set, and ambient so
 * they survive the exec of a binary run by an ID that is not 0 in its namespace). Returns the
 * failed stage (errno set) or LAUNCH_OK. */
int virtiofsd_userns_enter(const struct userns_launch *u, int sync_wr, int go_rd) {
        struct rlimit nofile = { 1048576, 1048576 };
        char c = 0;

        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0 ||
            mount(u->dir, u->root, NULL, MS_BIND, NULL) < 0 || chdir("/") < 0)
                return LAUNCH_CHDIR;
        /* virtiofsd wants many descriptors; only here can the hard limit still be raised. */
        (void) setrlimit(RLIMIT_NOFILE, &nofile);
        if (setgroups(0, NULL) < 0)
                return LAUNCH_DROP_IDS;
        /* Made while still root: the namespace's owner is root, so no host process running as
         * the server's ID has any capability in it. */
        if (unshare(CLONE_NEWUSER) < 0)
                return LAUNCH_UNSHARE;
        if (write(sync_wr, &c, 1) != 1 || read(go_rd, &c, 1) != 1) {
                errno = EPROTO;
                return LAUNCH_MAPS; /* the supervisor reports why */
        }
        /* VIRTIOFSD_SERVER_INSIDE_ID is the server's host ID: everything of ours goes. */
        if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0 ||
            setresgid(VIRTIOFSD_SERVER_INSIDE_ID, VIRTIOFSD_SERVER_INSIDE_ID, VIRTIOFSD_SERVER_INSIDE_ID) < 0 ||
            setresuid(VIRTIOFSD_SERVER_INSIDE_ID, VIRTIOFSD_SERVER_INSIDE_ID, VIRTIOFSD_SERVER_INSIDE_ID) < 0 ||
            prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
                return LAUNCH_DROP_IDS;
        for (int cap = 0; cap < 64; cap++)
                if (!(u->caps & (UINT64_C(1) << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
                        return LAUNCH_CAPS;
        if (capset_raw(u->caps, u->caps, u->caps) < 0)
                return LAUNCH_CAPS;
        for (int cap = 0; cap < 64; cap++)
                if ((u->caps & (UINT64_C(1) << cap)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
                        return LAUNCH_CAPS;
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return LAUNCH_CAPS;
        return LAUNCH_OK;
}

/* In the supervisor, once the child has made its user namespace: "deny" setgroups, then the UID
 * and GID maps. 0 or the errno of the write that failed. Async-signal-safe. */
int virtiofsd_userns_write_maps(pid_t pid, const struct userns_launch *u) {
        int err = write_proc_file(pid, "setgroups", "deny");
        if (!err)
                err = write_proc_file(pid, "uid_map", u->uid_map);
        if (!err)
                err = write_proc_file(pid, "gid_map", u->gid_map);
        return err;
}

/* A listening socket bound to path, for an unprivileged virtiofsd (which could not create one in
 * a root-only directory). QEMU's connection waits in the backlog until virtiofsd accepts it. */
int virtiofsd_listen_socket(const char *path, int *ret_fd, struct verr *e) {
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        if (fd < 0)
                return verr_set(e, negative_errno(), "cannot make a socket: %m");
        if (strlen(path) >= sizeof(sa.sun_path))
                return verr_set(e, -ENAMETOOLONG, "socket path '%s' is too long", path);
        memcpy(sa.sun_path, path, strlen(path) + 1);
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return verr_set(e, negative_errno(), "cannot bind socket '%s': %m", path);
        if (chmod(path, 0600) < 0 || listen(fd, 1) < 0) {
                int k = negative_errno();
                (void) unlink(path);
                return verr_set(e, k, "cannot listen on socket '%s': %s", path, strerror(-k));
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

void virtiofsd_userns_prepare(const struct virtiofsd_config *cfg, struct userns_launch *u) {
        *u = (struct userns_launch){
                .enabled = true,
                .dir = cfg->shared_dir,
                .uid = cfg->server_uid,
                .gid = cfg->server_gid,
                .caps = virtiofsd_capability_bounding_set(),
        };
        snprintf(u->root, sizeof(u->root), VIRTIOFSD_USERNS_ROOT "/%u", (unsigned) cfg->server_uid);
        snprintf(u->uid_map, sizeof(u->uid_map), "%lu %lu 1\n%lu %lu 1\n", (unsigned long) VIRTIOFSD_SERVER_INSIDE_ID,
                 (unsigned long) cfg->server_uid, (unsigned long) cfg->guest_uid, (unsigned long) cfg->host_uid);
        snprintf(u->gid_map, sizeof(u->gid_map), "%lu %lu 1\n%lu %lu 1\n", (unsigned long) VIRTIOFSD_SERVER_INSIDE_ID,
                 (unsigned long) cfg->server_gid, (unsigned long) cfg->guest_gid, (unsigned long) cfg->host_gid);
}
