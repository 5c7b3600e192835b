/* session-track.c: live login sessions of attached users, one file per session (see
 * session-track.h and doc/PROTOCOL.txt, section 7).
 *
 * A request flows like this: session_lock_acquire() opens /run/vmuser/sessions/NAME/ (creating
 * it 0700 if asked, never through a symlink), takes an exclusive flock on its "lock" file with a
 * bounded wait, and checks that the lock it got is still linked (session_remove_all() may have
 * removed the directory while we waited; then we start over). Under the lock the caller prunes
 * and counts (every entry "PID-START" whose process is gone, a zombie, or has another start
 * time is unlinked), adds or removes its own entry, and releases. Nothing here prints: errors
 * are -errno, the caller logs them. */
#include "session-track.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <time.h>

#include "atomic-file.h"
#include "dir-util.h"
#include "lock-util.h"
#include "macro.h"
#include "names.h"
#include "paths.h"
#include "proc-util.h"
#include "time-util.h"

struct session_lock {
        int sessions_fd; /* /run/vmuser/sessions */
        int dir_fd;      /* /run/vmuser/sessions/NAME */
        int lock_fd;     /* .../NAME/lock, flock()ed */
        char user_name[VMUSER_NAME_MAX + 1];
};

/* "PID-" + 20 digits + NUL */
#define ENTRY_NAME_MAX 48

/* Parses a decimal number without sign, spaces or leading zeros. */
static int parse_u64(const char *s, size_t n, uint64_t *ret) {
        uint64_t v = 0;

        if (n == 0 || n > 20 || (n > 1 && s[0] == '0'))
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                if (v > (UINT64_MAX - (uint64_t) (s[i] - '0')) / 10)
                        return -ERANGE;
                v = v * 10 + (uint64_t) (s[i] - '0');
        }
        *ret = v;
        return 0;
}

static int entry_name_parse(const char *name, pid_t *ret_pid, uint64_t *ret_start) {
        const char *dash = strchr(name, '-');
        uint64_t pid, start;

        if (!dash || parse_u64(name, (size_t) (dash - name), &pid) < 0 ||
            parse_u64(dash + 1, strlen(dash + 1), &start) < 0)
                return -EINVAL;
        if (pid == 0 || pid > INT_MAX)
                return -EINVAL;
        *ret_pid = (pid_t) pid;
        *ret_start = start;
        return 0;
}

/* Does pid exist at all (a zombie counts)? Works where /proc hides other users' processes
 * (hidepid=): kill(pid, 0) says ESRCH only for a PID nobody has; EPERM means it is there. */
static bool pid_exists(pid_t pid) {
        return kill(pid, 0) == 0 || errno != ESRCH;
}

/* Is the process that opened entry (pid, start) still there? 1 alive, 0 dead, -errno when we
 * cannot tell (then the entry is kept: pruning a live session would unmount a home in use).
 * When /proc will not show the process (mounted hidepid=, or a reader without ptrace access)
 * the start time cannot be compared: a PID that exists counts as the session's, since calling
 * a live session dead would unmount a home in use. */
static int entry_is_alive(pid_t pid, uint64_t start) {
        uint64_t actual;
        char state = '?';
        int r;

        r = proc_stat_read(pid, &state, &actual);
        if (r == -ENOENT || r == -EACCES || r == -EPERM)
                return pid_exists(pid) ? 1 : 0;
        if (r < 0)
                return r;
        if (actual != start)
                return 0; /* the PID was reused */
        if (proc_state_is_dead(state))
                return 0; /* killed, not yet reaped: its session is over */
        return 1;
}

/* Opens (and with create, makes) a directory below parent_fd that must be ours: owned by the
 * effective UID, not writable by anyone else, not a symlink. */
static int open_private_dir(int parent_fd, const char *name, bool create, mode_t mode) {
        int fd = -1, r;

        r = open_private_dir_full_at(parent_fd, name, mode,
                                     (create ? PRIVATE_DIR_CREATE : 0) | PRIVATE_DIR_OWNER_EUID |
                                             PRIVATE_DIR_NO_GROUP_WRITE,
                                     &fd);
        return r < 0 ? r : fd;
}

static int lock_file_is_current(int dir_fd, int lock_fd) {
        struct stat dir_st, lock_st;

        if (fstat(dir_fd, &dir_st) < 0 || fstat(lock_fd, &lock_st) < 0)
                return negative_errno();
        return dir_st.st_nlink > 0 && lock_st.st_nlink > 0;
}

int session_lock_acquire_timeout(int state_dir_fd, const char *user_name, bool create, unsigned timeout_msec,
                                 struct session_lock **ret) {
        _cleanup_close_ int sessions_fd = -1;
        int64_t deadline = now_ms() + timeout_msec;
        struct session_lock *l;

        if (!name_is_valid(user_name))
                return -EINVAL;

        sessions_fd = open_private_dir(state_dir_fd, VMUSER_SESSIONS_SUBDIR, create, 0755);
        if (sessions_fd < 0)
                return sessions_fd;

        for (;;) {
                _cleanup_close_ int dir_fd = -1, lock_fd = -1;
                int r;

                dir_fd = open_private_dir(sessions_fd, user_name, create, 0700);
                if (dir_fd < 0)
                        return dir_fd;
                lock_fd = openat(dir_fd, VMUSER_LOCK_FILE,
                                 O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | (create ? O_CREAT : 0), 0600);
                if (lock_fd < 0)
                        return negative_errno();

                /* Bounded: a stuck holder must not hang every login of this user. */
                r = flock_timeout(lock_fd, LOCK_EX, ms_left(deadline), 5);
                if (r < 0)
                        return r;

                r = lock_file_is_current(dir_fd, lock_fd);
                if (r < 0)
                        return r;
                if (r == 0) {
                        /* session_remove_all() ran while we waited: start over. */
                        if (now_ms() >= deadline)
                                return -ETIMEDOUT;
                        continue;
                }

                l = calloc(1, sizeof(*l));
                if (!l)
                        return -ENOMEM;
                l->sessions_fd = TAKE_FD(sessions_fd);
                l->dir_fd = TAKE_FD(dir_fd);
                l->lock_fd = TAKE_FD(lock_fd);
                snprintf(l->user_name, sizeof(l->user_name), "%s", user_name);
                *ret = l;
                return 0;
        }
}

int session_lock_acquire(int state_dir_fd, const char *user_name, bool create, struct session_lock **ret) {
        return session_lock_acquire_timeout(state_dir_fd, user_name, create,
                                            SESSION_LOCK_TIMEOUT_MSEC_DEFAULT, ret);
}

struct session_lock *session_lock_release(struct session_lock *l) {
        if (!l)
                return NULL;
        /* Closing the last fd of the open file description drops the flock. */
        closep(&l->lock_fd);
        closep(&l->dir_fd);
        closep(&l->sessions_fd);
        free(l);
        return NULL;
}

void session_lock_releasep(struct session_lock **l) {
        *l = session_lock_release(*l);
}

struct entry_visit {
        struct session_lock *l;
        int (*visit)(struct session_lock *l, const char *name, void *userdata);
        void *userdata;
};

static int entry_visit_one(int dir_fd, const char *name, void *userdata) {
        struct entry_visit *c = userdata;

        if (streq(name, VMUSER_LOCK_FILE))
                return 0;
        return c->visit(c->l, name, c->userdata);
}

/* Calls visit() for every entry of the locked directory except "." , ".." and the lock file,
 * with a fresh directory stream (dir_fd's own offset is left alone). */
static int foreach_entry(struct session_lock *l,
                         int (*visit)(struct session_lock *l, const char *name, void *userdata),
                         void *userdata) {
        struct entry_visit c = { l, visit, userdata };

        return dir_foreach_at(l->dir_fd, entry_visit_one, &c);
}

static int prune_one(struct session_lock *l, const char *name, void *userdata) {
        unsigned *live = userdata;
        uint64_t start;
        pid_t pid;
        int r;

        /* Anything that is not a well-formed entry cannot be a live session. */
        if (entry_name_parse(name, &pid, &start) < 0) {
                if (unlinkat(l->dir_fd, name, 0) < 0 && errno != ENOENT && errno != EISDIR)
                        return negative_errno();
                return 0;
        }

        r = entry_is_alive(pid, start);
        if (r < 0)
                return r;
        if (r > 0) {
                (*live)++;
                return 0;
        }
        if (unlinkat(l->dir_fd, name, 0) < 0 && errno != ENOENT)
                return negative_errno();
        return 0;
}

int session_prune_and_count(struct session_lock *l) {
        unsigned live = 0;
        int r;

        r = foreach_entry(l, prune_one, &live);
        if (r < 0)
                return r;
        return live > INT_MAX ? INT_MAX : (int) live;
}

static int entry_name_for(pid_t pid, char name[static ENTRY_NAME_MAX]) {
        uint64_t start;
        char state;
        int r;

        if (pid <= 0)
                return -EINVAL;
        r = proc_stat_read(pid, &state, &start);
        if (r < 0)
                return r;
        if (proc_state_is_dead(state))
                return -ENOENT;
        snprintf(name, ENTRY_NAME_MAX, "%d-%" PRIu64, (int) pid, start);
        return 0;
}

int session_add(struct session_lock *l, pid_t pid) {
        char name[ENTRY_NAME_MAX];
        int fd, r;

        r = entry_name_for(pid, name);
        if (r < 0)
                return r;
        fd = openat(l->dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
        if (fd < 0)
                return errno == EEXIST ? 0 : negative_errno();
        close(fd);
        return 1;
}

int session_remove(struct session_lock *l, pid_t pid) {
        char name[ENTRY_NAME_MAX];
        int r;

        r = entry_name_for(pid, name);
        if (r == -ENOENT)
                return 0; /* gone: its entry is dead and the next prune drops it */
        if (r < 0)
                return r;
        if (unlinkat(l->dir_fd, name, 0) < 0)
                return errno == ENOENT ? 0 : negative_errno();
        return 1;
}

struct foreach_ctx {
        int (*cb)(pid_t pid, void *userdata);
        void *userdata;
};

static int foreach_live_one(struct session_lock *l, const char *name, void *userdata) {
        struct foreach_ctx *ctx = userdata;
        uint64_t start;
        pid_t pid;

        if (entry_name_parse(name, &pid, &start) < 0 || entry_is_alive(pid, start) <= 0)
                return 0;
        return ctx->cb(pid, ctx->userdata);
}

int session_foreach(struct session_lock *l, int (*cb)(pid_t pid, void *userdata), void *userdata) {
        struct foreach_ctx ctx = {.cb = cb, .userdata = userdata};

        return foreach_entry(l, foreach_live_one, &ctx);
}

static int remove_one(struct session_lock *l, const char *name, void *userdata) {
        if (unlinkat(l->dir_fd, name, 0) < 0 && errno != ENOENT)
                return negative_errno();
        return 0;
}

int session_remove_all(int state_dir_fd, const char *user_name) {
        _cleanup_(session_lock_releasep) struct session_lock *l = NULL;
        int r;

        r = session_lock_acquire(state_dir_fd, user_name, false, &l);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        return session_remove_all_locked(l);
}

int session_remove_all_locked(struct session_lock *l) {
        int r;

        r = foreach_entry(l, remove_one, NULL);
        if (r < 0)
                return r;
        /* Waiters holding the old lock file notice it is unlinked and start over. */
        if (unlinkat(l->dir_fd, VMUSER_LOCK_FILE, 0) < 0 && errno != ENOENT)
                return negative_errno();
        if (unlinkat(l->sessions_fd, l->user_name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                return negative_errno();
        return 0;
}

int session_entry_parse(const char *name, pid_t *ret_pid, uint64_t *ret_start) {
        return entry_name_parse(name, ret_pid, ret_start);
}

int session_entry_pidfd(pid_t pid, uint64_t start) {
        _cleanup_close_ int fd = -1;
        uint64_t actual;
        char state = '?';
        int r;

        fd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (fd < 0)
                return errno == ESRCH ? -ESRCH : negative_errno();
        /* The pidfd names whatever has the PID now; the start time says whether that is still
         * the process that opened the session. Where /proc will not tell, the entry is taken at
         * its word, as in entry_is_alive(). */
        r = proc_stat_read(pid, &state, &actual);
        if (r == -ENOENT || r == -EACCES || r == -EPERM)
                return TAKE_FD(fd);
        if (r < 0)
                return r;
        if (actual != start)
                return -ESRCH;
        /* A zombie's pidfd is readable at once: the caller sees it end right away. */
        return TAKE_FD(fd);
}
