/* test-idmap-mount.c: the idmapped staging mount (libvmuser/idmap-mount.c) on this kernel.
 *
 * Runs on tmpfs (a private /run) and on the root filesystem (ext4 here), as FACTS.md verified by
 * hand: the host user's files show as the guest UID/GID through the mount; a file created
 * through it by the guest UID is owned by the host UID underneath; IDs outside the map show as
 * the overflow ID and cannot be created (a guest root cannot plant root-owned files); the mount
 * is nosuid,nodev, private, not recursive; read-only when asked; removal is idempotent. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "idmap-mount.h"
#include "macro.h"
#include "test-util.h"

#define HOST_UID 4242
#define HOST_GID 4243
#define GUEST_UID 60002
#define GUEST_GID 60003
#define OTHER_UID 5000
#define OVERFLOW_ID 65534

struct fixture {
        char base[256];   /* scratch directory */
        char src[300];    /* the "home", owned by HOST_UID */
        char target[300]; /* the staging mount point */
};

static const struct idmap_mount_map guest_map = {
        .disk_uid = HOST_UID, .disk_gid = HOST_GID, .mount_uid = GUEST_UID, .mount_gid = GUEST_GID
};

static void write_file(const char *path, uid_t uid, gid_t gid) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "x\n", 2), 2);
        assert_int_equal(fchown(fd, uid, gid), 0);
        close(fd);
}

static int setup_in(void **state, const char *parent) {
        struct fixture *f = calloc(1, sizeof(*f));
        snprintf(f->base, sizeof(f->base), "%s/vmuser-idmap-XXXXXX", parent);
        assert_non_null(mkdtemp(f->base));
        /* The guest UID must be able to walk to the mount (virtiofsd does not need this: it
         * pivot_roots into the share). */
        assert_int_equal(chmod(f->base, 0711), 0);
        snprintf(f->src, sizeof(f->src), "%s/home", f->base);
        snprintf(f->target, sizeof(f->target), "%s/staging", f->base);
        assert_int_equal(mkdir(f->src, 0755), 0);
        assert_int_equal(chown(f->src, HOST_UID, HOST_GID), 0);
        assert_int_equal(mkdir(f->target, 0700), 0);
        char path[400];
        snprintf(path, sizeof(path), "%s/mine", f->src);
        write_file(path, HOST_UID, HOST_GID);
        snprintf(path, sizeof(path), "%s/others", f->src);
        write_file(path, OTHER_UID, OTHER_UID);
        *state = f;
        return 0;
}

static int setup_tmpfs(void **state) {
        return setup_in(state, "/run");
}

static int setup_rootfs(void **state) {
        return setup_in(state, "/var/tmp");
}

static int teardown(void **state) {
        struct fixture *f = *state;
        char cmd[400];
        (void) idmap_mount_remove(f->target, NULL);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->base);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

static int open_src(const struct fixture *f) {
        int fd = open(f->src, O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(fd >= 0);
        return fd;
}

static void assert_owner(const char *dir, const char *name, uid_t uid, gid_t gid) {
        char path[400];
        struct stat st;
        snprintf(path, sizeof(path), "%s%s%s", dir, name ? "/" : "", name ? name : "");
        assert_int_equal(lstat(path, &st), 0);
        if (st.st_uid != uid || st.st_gid != gid)
                fail_msg("%s is owned by %u:%u, expected %u:%u", path, (unsigned) st.st_uid, (unsigned) st.st_gid,
                         (unsigned) uid, (unsigned) gid);
}

/* Creates dir/name as uid:gid (in a child, with only those credentials); returns 0 or -errno. */
static int create_as(const char *dir, const char *name, uid_t uid, gid_t gid) {
        int p[2], result = 0, status;
        pid_t pid;

        assert_int_equal(pipe(p), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                char path[400];
                int r = 0, fd;
                close(p[0]);
                if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
                        r = -errno;
                snprintf(path, sizeof(path), "%s/%s", dir, name);
                if (r == 0) {
                        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
                        r = fd < 0 ? -errno : 0;
                }
                (void) !write(p[1], &r, sizeof(r));
                _exit(0);
        }
        close(p[1]);
        assert_int_equal(read(p[0], &result, sizeof(result)), (ssize_t) sizeof(result));
        close(p[0]);
        waitpid(pid, &status, 0);
        return result;
}

static void test_mapping(void **state) {
        struct fixture *f = *state;
        _cleanup_close_ int src = open_src(f);
        struct verr e = {};
        struct statvfs sv;

        assert_int_equal(idmap_mount_make(src, f->target, &guest_map, 0, &e), 0);
        assert_int_equal(idmap_mount_is_mounted(f->target), 1);

        /* The host user's files show as the guest's; others as the overflow ID. */
        assert_owner(f->target, NULL, GUEST_UID, GUEST_GID);
        assert_owner(f->target, "mine", GUEST_UID, GUEST_GID);
        assert_owner(f->target, "others", OVERFLOW_ID, OVERFLOW_ID);

        /* The guest UID creates a file: on disk it is the host UID's. */
        assert_int_equal(create_as(f->target, "from-guest", GUEST_UID, GUEST_GID), 0);
        assert_owner(f->src, "from-guest", HOST_UID, HOST_GID);
        assert_owner(f->target, "from-guest", GUEST_UID, GUEST_GID);

        /* Root (virtiofsd on behalf of guest root) cannot create anything: 0 is not mapped. */
        assert_int_equal(create_as(f->target, "from-root", 0, 0), -EOVERFLOW);
        char path[400];
        snprintf(path, sizeof(path), "%s/mine", f->target);
        assert_int_equal(chown(path, 0, 0), -1);
        assert_true(errno == EOVERFLOW || errno == EINVAL);
        /* An unrelated UID is not mapped either. */
        assert_int_equal(create_as(f->target, "from-other", OTHER_UID, OTHER_UID), -EOVERFLOW);

        assert_int_equal(statvfs(f->target, &sv), 0);
        assert_true(sv.f_flag & ST_NOSUID);
        assert_true(sv.f_flag & ST_NODEV);
        assert_false(sv.f_flag & ST_RDONLY);

        assert_int_equal(idmap_mount_remove(f->target, &e), 1);
        assert_int_equal(idmap_mount_is_mounted(f->target), 0);
        assert_int_equal(idmap_mount_remove(f->target, &e), 0);
        /* The files stayed where they were. */
        assert_owner(f->src, "mine", HOST_UID, HOST_GID);
}

static void test_read_only(void **state) {
        struct fixture *f = *state;
        _cleanup_close_ int src = open_src(f);
        struct verr e = {};
        struct statvfs sv;

        assert_int_equal(idmap_mount_make(src, f->target, &guest_map, IDMAP_MOUNT_READ_ONLY, &e), 0);
        assert_owner(f->target, "mine", GUEST_UID, GUEST_GID);
        assert_int_equal(create_as(f->target, "nope", GUEST_UID, GUEST_GID), -EROFS);
        assert_int_equal(statvfs(f->target, &sv), 0);
        assert_true(sv.f_flag & ST_RDONLY);
        assert_true(sv.f_flag & ST_NOSUID);
        assert_int_equal(idmap_mount_remove(f->target, &e), 1);
}

static void test_identity(void **state) {
        struct fixture *f = *state;
        _cleanup_close_ int src = open_src(f);
        struct idmap_mount_map same = {
                .disk_uid = HOST_UID, .disk_gid = HOST_GID, .mount_uid = HOST_UID, .mount_gid = HOST_GID
        };
        struct verr e = {};

        assert_int_equal(idmap_mount_make(src, f->target, &same, 0, &e), 0);
        assert_owner(f->target, "mine", HOST_UID, HOST_GID);
        assert_owner(f->target, "others", OVERFLOW_ID, OVERFLOW_ID);
        assert_int_equal(create_as(f->target, "same", HOST_UID, HOST_GID), 0);
        assert_owner(f->src, "same", HOST_UID, HOST_GID);
        assert_int_equal(create_as(f->target, "root", 0, 0), -EOVERFLOW);
        assert_int_equal(idmap_mount_remove(f->target, &e), 1);
}

static void test_busy_and_bad_target(void **state) {
        struct fixture *f = *state;
        _cleanup_close_ int src = open_src(f);
        struct verr e = {};
        char link[400];

        assert_int_equal(idmap_mount_make(src, f->target, &guest_map, 0, &e), 0);
        memset(&e, 0, sizeof(e));
        assert_int_equal(idmap_mount_make(src, f->target, &guest_map, 0, &e), -EBUSY);
        assert_non_null(strstr(e.text, "mounted"));
        assert_int_equal(idmap_mount_remove(f->target, &e), 1);

        /* A symlink as the mount point is not followed. */
        snprintf(link, sizeof(link), "%s/link", f->base);
        assert_int_equal(symlink(f->target, link), 0);
        assert_true(idmap_mount_make(src, link, &guest_map, 0, NULL) < 0);
        assert_int_equal(idmap_mount_is_mounted(f->target), 0);
        assert_int_equal(idmap_mount_make(src, "relative", &guest_map, 0, NULL), -EINVAL);
}

static void test_not_recursive(void **state) {
        struct fixture *f = *state;
        _cleanup_close_ int src = -1;
        char sub[400], through[512];
        struct verr e = {};

        snprintf(sub, sizeof(sub), "%s/sub", f->src);
        assert_int_equal(mkdir(sub, 0755), 0);
        assert_int_equal(mount("tmpfs", sub, "tmpfs", 0, "mode=0755"), 0);
        snprintf(through, sizeof(through), "%s/secret", sub);
        write_file(through, HOST_UID, HOST_GID);

        src = open_src(f);
        assert_int_equal(idmap_mount_make(src, f->target, &guest_map, 0, &e), 0);
        snprintf(through, sizeof(through), "%s/sub/secret", f->target);
        assert_int_equal(access(through, F_OK), -1);
        assert_int_equal(errno, ENOENT);
        assert_int_equal(idmap_mount_remove(f->target, &e), 1);
        assert_int_equal(umount(sub), 0);
}

static void test_userns_fd(void **state) {
        _cleanup_close_ int fd = -1;
        struct verr e = {};
        assert_int_equal(idmap_userns_fd(&guest_map, &fd, &e), 0);
        assert_true(fd >= 0);
}

int main(void) {
        test_enter_private_run();

        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_userns_fd),
                cmocka_unit_test_setup_teardown(test_mapping, setup_tmpfs, teardown),
                cmocka_unit_test_setup_teardown(test_mapping, setup_rootfs, teardown),
                cmocka_unit_test_setup_teardown(test_read_only, setup_tmpfs, teardown),
                cmocka_unit_test_setup_teardown(test_read_only, setup_rootfs, teardown),
                cmocka_unit_test_setup_teardown(test_identity, setup_rootfs, teardown),
                cmocka_unit_test_setup_teardown(test_busy_and_bad_target, setup_tmpfs, teardown),
                cmocka_unit_test_setup_teardown(test_not_recursive, setup_rootfs, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
