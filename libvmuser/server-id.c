/* server-id.c: claiming and releasing the file servers' host IDs (see server-id.h).
 *
 * Flow of a claim: ensure /run/vmuser/server-ids (root's, 0700) -> for each ID of the range:
 * NSS (getpwuid_r, getgrgid_r) and /etc/subuid, /etc/subgid must not know it -> openat(ID,
 * O_CREAT|O_EXCL) -> write the owner -> return the ID. The first free ID wins, so IDs are
 * reused after a release. */
#include "server-id.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"
#include "virtiofsd.h"

static bool in_range(uid_t id) {
        return id >= SERVER_ID_BASE && id - SERVER_ID_BASE < SERVER_ID_COUNT;
}

/* Whether a subordinate ID file ("name:start:count" lines) hands out id. A missing file hands
 * out nothing. */
static bool subid_file_covers(const char *path, unsigned long id) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        char line[512];

        if (!f)
                return false;
        while (fgets(line, sizeof(line), f)) {
                unsigned long start, count;
                char *colon = strchr(line, ':');
                if (!colon || sscanf(colon + 1, "%lu:%lu", &start, &count) != 2)
                        continue;
                if (id >= start && id - start < count)
                        return true;
        }
        return false;
}

static bool nss_knows(uid_t id) {
        struct passwd pw, *pwp = NULL;
        struct group gr, *grp = NULL;
        char buf[16384];

        if (getpwuid_r(id, &pw, buf, sizeof(buf), &pwp) == 0 && pwp)
                return true;
        if (getgrgid_r((gid_t) id, &gr, buf, sizeof(buf), &grp) == 0 && grp)
                return true;
        return false;
}

int server_id_is_usable(uid_t id) {
        if (!in_range(id))
                return 0;
        if (nss_knows(id) || subid_file_covers("/etc/subuid", id) || subid_file_covers("/etc/subgid", id))
                return 0;
        return 1;
}

static int open_dir(int *ret_fd) {
        _cleanup_close_ int fd = -1;
        struct stat st;

        (void) mkdir("/run/vmuser", 0755);
        if (mkdir(SERVER_ID_DIR, 0700) < 0 && errno != EEXIST)
                return negative_errno();
        fd = open(SERVER_ID_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)))
                return -EPERM;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int server_id_claim(const char *owner, uid_t *ret, struct verr *e) {
        _cleanup_close_ int dir_fd = -1;
        int k = open_dir(&dir_fd);

        if (k < 0)
                return verr_set(e, k, "cannot use '" SERVER_ID_DIR "': %s", strerror(-k));
        for (uid_t id = SERVER_ID_BASE; id - SERVER_ID_BASE < SERVER_ID_COUNT; id++) {
                _cleanup_close_ int fd = -1;
                char name[16];

                if (!server_id_is_usable(id))
                        continue;
                snprintf(name, sizeof(name), "%u", (unsigned) id);
                fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (fd < 0) {
                        if (errno == EEXIST)
                                continue;
                        return verr_set(e, negative_errno(), "cannot claim file server ID %u: %m", (unsigned) id);
                }
                if (owner)
                        (void) !write(fd, owner, strlen(owner));
                *ret = id;
                return 0;
        }
        return verr_set(e, -ENOSPC, "all %u file server IDs from %u are in use or taken by users", SERVER_ID_COUNT,
                        SERVER_ID_BASE);
}

int server_id_release(uid_t id) {
        _cleanup_close_ int dir_fd = -1;
        char name[16];
        int k;

        if (!in_range(id))
                return -EINVAL;
        k = open_dir(&dir_fd);
        if (k < 0)
                return k;
        snprintf(name, sizeof(name), "%u", (unsigned) id);
        if (unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT)
                return negative_errno();
        /* The (empty) directory its virtiofsd served from, see virtiofsd.h. */
        char root[64];
        snprintf(root, sizeof(root), VIRTIOFSD_USERNS_ROOT "/%u", (unsigned) id);
        (void) rmdir(root);
        return 0;
}
