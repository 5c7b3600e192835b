/* server-id.c: claiming and releasing the file servers' host IDs (see server-id.h).
 *
 * Flow of a claim: ensure /run/vmuser/server-ids (root's, 0700) and lock it -> for each ID of
 * the range: NSS (getpwuid_r, getgrgid_r) and /etc/subuid, /etc/subgid must not know it ->
 * openat(ID, O_CREAT|O_EXCL); when a claim exists already but is stale (its claimer is gone and
 * no process runs as the ID: a crash, or a virtiofsd that died with nobody detaching), it is
 * removed and the ID claimed again -> write "OWNER\nPID STARTTIME\n" (the claimer) -> return
 * the ID. The first free ID wins, so IDs are reused after a release. The lock makes the
 * stale-check and the new claim one step: no other claimer sees a claim half written. */
#include "server-id.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/file.h>
#include <unistd.h>

#include "atomic-file.h"
#include "lock-util.h"
#include "macro.h"
#include "proc-util.h"
#include "uid-cleanup.h"
#include "virtiofsd.h"

/* Claims take well under a second; a holder for longer than this is stuck. */
#define CLAIM_LOCK_TIMEOUT_MS 10000

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

/* 1 when the claim `name` is stale: the process that wrote it is gone (or it records none: a
 * claim from before the claimer was recorded) and no process runs as id; 0 when it is not, or
 * when that cannot be told (no /proc). */
static int claim_is_stale(int dir_fd, const char *name, uid_t id) {
        char buf[PATH_MAX + 64];
        unsigned long long starttime;
        const char *line;
        long pid;
        int k;

        if (proc_stat_read(getpid(), NULL, NULL) < 0)
                return 0;
        k = read_small_file_at(dir_fd, name, buf, sizeof(buf));
        if (k < 0)
                return k == -ENOENT ? 0 : k;
        line = strchr(buf, '\n');
        if (line && sscanf(line + 1, "%ld %llu", &pid, &starttime) == 2 && pid > 0 && pid <= INT32_MAX) {
                k = proc_is_alive((pid_t) pid, starttime);
                if (k != 0)
                        return k < 0 ? k : 0;
        }
        k = uid_count_processes("/", id);
        if (k != 0)
                return k < 0 ? k : 0;
        return 1;
}

/* Creates the claim of id: 1 claimed, 0 somebody else holds it, -errno. */
static int claim_one(int dir_fd, uid_t id, const char *owner) {
        _cleanup_close_ int fd = -1;
        char name[16], claimer[64];
        uint64_t starttime = 0;

        snprintf(name, sizeof(name), "%u", (unsigned) id);
        fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 && errno == EEXIST) {
                int k = claim_is_stale(dir_fd, name, id);
                if (k <= 0)
                        return k;
                if (unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT)
                        return negative_errno();
                fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        }
        if (fd < 0)
                return negative_errno();
        (void) proc_stat_read(getpid(), NULL, &starttime);
        snprintf(claimer, sizeof(claimer), "\n%d %llu\n", (int) getpid(), (unsigned long long) starttime);
        if (owner)
                (void) !write(fd, owner, strlen(owner));
        (void) !write(fd, claimer, strlen(claimer));
        return 1;
}

int server_id_claim_at(int dir_fd, const char *owner, uid_t *ret, struct verr *e) {
        int k = flock_timeout(dir_fd, LOCK_EX, CLAIM_LOCK_TIMEOUT_MS, 10);

        if (k < 0)
                return verr_set(e, k, "cannot lock '" SERVER_ID_DIR "': %s", strerror(-k));
        for (uid_t id = SERVER_ID_BASE; id - SERVER_ID_BASE < SERVER_ID_COUNT; id++) {
                if (!server_id_is_usable(id))
                        continue;
                k = claim_one(dir_fd, id, owner);
                if (k < 0) {
                        (void) flock(dir_fd, LOCK_UN);
                        return verr_set(e, k, "cannot claim file server ID %u: %s", (unsigned) id, strerror(-k));
                }
                if (k > 0) {
                        (void) flock(dir_fd, LOCK_UN);
                        *ret = id;
                        return 0;
                }
        }
        (void) flock(dir_fd, LOCK_UN);
        return verr_set(e, -ENOSPC, "all %u file server IDs from %u are in use or taken by users", SERVER_ID_COUNT,
                        SERVER_ID_BASE);
}

int server_id_claim(const char *owner, uid_t *ret, struct verr *e) {
        _cleanup_close_ int dir_fd = -1;
        int k = open_dir(&dir_fd);

        if (k < 0)
                return verr_set(e, k, "cannot use '" SERVER_ID_DIR "': %s", strerror(-k));
        return server_id_claim_at(dir_fd, owner, ret, e);
}

/* Whether the claim `name` names owner on its first line (a claim that cannot be read counts as
 * owner's: releasing it is what was asked). */
static bool claim_is_owners(int dir_fd, const char *name, const char *owner) {
        char buf[PATH_MAX + 64];
        int k = read_small_file_at(dir_fd, name, buf, sizeof(buf));

        if (k < 0)
                return true;
        buf[strcspn(buf, "\n")] = '\0';
        return streq(buf, owner);
}

int server_id_release_at(int dir_fd, uid_t id, const char *owner) {
        char name[16], root[64];
        int k;

        if (!in_range(id))
                return -EINVAL;
        k = flock_timeout(dir_fd, LOCK_EX, CLAIM_LOCK_TIMEOUT_MS, 10);
        if (k < 0)
                return k;
        snprintf(name, sizeof(name), "%u", (unsigned) id);
        /* Taken over since (it was stale: see server_id_claim_at()): no longer ours to remove. */
        if (owner && !claim_is_owners(dir_fd, name, owner)) {
                (void) flock(dir_fd, LOCK_UN);
                return 0;
        }
        k = unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT ? negative_errno() : 0;
        (void) flock(dir_fd, LOCK_UN);
        if (k < 0)
                return k;
        /* The (empty) directory its virtiofsd served from, see virtiofsd.h. */
        snprintf(root, sizeof(root), VIRTIOFSD_USERNS_ROOT "/%u", (unsigned) id);
        (void) rmdir(root);
        return 0;
}

int server_id_release(uid_t id, const char *owner) {
        _cleanup_close_ int dir_fd = -1;
        int k;

        if (!in_range(id))
                return -EINVAL;
        k = open_dir(&dir_fd);
        if (k < 0)
                return k;
        return server_id_release_at(dir_fd, id, owner);
}
