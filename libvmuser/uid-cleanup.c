/* uid-cleanup.c: ending the processes and removing the IPC objects and files of a UID (see
 * uid-cleanup.h).
 *
 * Order matters: processes first (a live process could recreate what we remove, or race the
 * walk by renaming its own entries), then IPC, then the file walk. The kill loop opens a pidfd
 * before it reads the process's UIDs, so a PID reused between the scan and the signal is never
 * hit. IPC_RMID needs the owner's or creator's effective UID (or CAP_SYS_ADMIN, which the agent
 * does not hold), so the removal runs with the effective UID switched to the UID for a moment.
 * The file walk descends into directories of other users only to find entries of the UID (each
 * directory opened with O_NOFOLLOW and checked to be the one fstatat() saw); a directory the UID
 * owns goes as a whole, with whatever others left in it. A regular file of the UID with more
 * than one link or a set-ID bit is made mode 0 before its name goes: a link elsewhere must not
 * keep a working set-ID copy alive. */
#include "uid-cleanup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "dir-util.h"
#include "macro.h"
#include "strv.h"

/* Bounds: the walk's depth and entry count, and the kill loop's rounds (20 ms apart). */
#define WALK_DEPTH_MAX 32
#define WALK_ENTRIES_MAX 1000000u
#define KILL_ROUNDS 250

struct walk {
        uid_t uid;
        bool remove;
        unsigned long entries;
        unsigned found; /* check mode: entries of the UID */
        struct uid_cleanup_report *report;
        /* scan mode (uid_leftovers_scan): every owner in lo..hi is marked in bits instead */
        uid_t lo, hi;
        uint8_t *bits;
};

static void mark(uid_t lo, uid_t hi, uint8_t *bits, unsigned long long id) {
        if (id >= lo && id <= hi)
                bits[(id - lo) / 8] |= (uint8_t) (1u << ((id - lo) % 8));
}

void uid_cleanup_report_done(struct uid_cleanup_report *r) {
        for (size_t i = 0; i < UID_CLEANUP_KEPT_MAX; i++)
                free(r->kept[i]);
        *r = (struct uid_cleanup_report) {};
}

bool uid_cleanup_report_dirty(const struct uid_cleanup_report *r) {
        return r->processes_left > 0 || r->ipc_left > 0 || r->kept_count > 0;
}

static void keep(struct walk *w, const char *path, const char *fmt, ...) _printf_(3, 4);
static void keep(struct walk *w, const char *path, const char *fmt, ...) {
        char reason[256];
        va_list ap;

        if (!w->remove) {
                w->found++;
                return;
        }
        /* A named entry (crontabs/NAME) is also met by the walk of its place: report it once. */
        size_t len = strlen(path);
        for (size_t i = 0; i < w->report->kept_count && i < UID_CLEANUP_KEPT_MAX; i++)
                if (w->report->kept[i] && strncmp(w->report->kept[i], path, len) == 0 && w->report->kept[i][len] == ':')
                        return;
        va_start(ap, fmt);
        vsnprintf(reason, sizeof(reason), fmt, ap);
        va_end(ap);
        if (w->report->kept_count < UID_CLEANUP_KEPT_MAX &&
            asprintf(&w->report->kept[w->report->kept_count], "%s: %s", path, reason) < 0)
                w->report->kept[w->report->kept_count] = NULL;
        w->report->kept_count++;
}

static int join(char *buf, size_t size, const char *a, const char *b) {
        int n = snprintf(buf, size, "%s%s%s", a, streq(a, "/") || a[0] == '\0' ? "" : "/", b);
        return n < 0 || (size_t) n >= size ? -ENAMETOOLONG : 0;
}

/* Opens name below dfd as a directory, refusing symlinks, and checks it is what st described. */
static int open_dir_checked(int dfd, const char *name, const struct stat *st) {
        struct stat now;
        int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &now) < 0 || now.st_dev != st->st_dev || now.st_ino != st->st_ino) {
                close(fd);
                return -ESTALE;
        }
        return fd;
}

/* A regular file of the UID that has other links, or a set-ID bit: mode 0 on the inode first. */
static void neutralize(int dfd, const char *name, const struct stat *st, uid_t uid) {
        struct stat now;

        if (!S_ISREG(st->st_mode) || (st->st_nlink <= 1 && !(st->st_mode & (S_ISUID | S_ISGID))))
                return;
        _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd >= 0 && fstat(fd, &now) == 0 && now.st_ino == st->st_ino && now.st_uid == uid)
                (void) fchmod(fd, 0);
}

static void remove_contents(struct walk *w, int fd, const char *path, dev_t dev, int depth);

/* The next listed name of the walk, stat'ed without following, its path in sub: false when the
 * walk's entry budget is spent, the path does not fit or the entry is gone (skip it). */
static bool stat_listed(struct walk *w, int fd, const char *path, const char *name, char sub[static PATH_MAX],
                        struct stat *st) {
        return w->entries++ < WALK_ENTRIES_MAX && join(sub, PATH_MAX, path, name) >= 0 &&
               fstatat(fd, name, st, AT_SYMLINK_NOFOLLOW) >= 0;
}

/* Removes one entry at depth: a directory with all it holds (opened no deeper than
 * WALK_DEPTH_MAX), or a file, made harmless first if it is the UID's (neutralize()). Kept, with
 * the reason, what cannot go. */
static void remove_entry(struct walk *w, int dfd, const char *name, const char *path, const struct stat *st,
                         int depth) {
        if (S_ISDIR(st->st_mode)) {
                int fd = depth <= WALK_DEPTH_MAX ? open_dir_checked(dfd, name, st) : -ELOOP;
                if (fd < 0) {
                        keep(w, path, "cannot open it: %s", strerror(-fd));
                        return;
                }
                remove_contents(w, fd, path, st->st_dev, depth);
                close(fd);
                if (unlinkat(dfd, name, AT_REMOVEDIR) < 0)
                        keep(w, path, "cannot remove it: %m");
                else
                        w->report->dirs_removed++;
                return;
        }
        neutralize(dfd, name, st, w->uid);
        if (unlinkat(dfd, name, 0) < 0)
                keep(w, path, "cannot remove it: %m");
        else
                w->report->files_removed++;
}

/* Removes all that the directory open as fd holds (path names it in messages); what lies on
 * another file system stays. */
static void remove_contents(struct walk *w, int fd, const char *path, dev_t dev, int depth) {
        _cleanup_(strv_freep) char **names = NULL;
        size_t n = 0;
        char sub[PATH_MAX];
        int r;

        /* Names first, work after: removing while readdir() runs may skip entries. */
        r = dir_list_names_at(fd, SIZE_MAX, &names, &n);
        if (r < 0) {
                errno = -r;
                keep(w, path, "cannot list it: %m");
                return;
        }
        for (size_t i = 0; i < n; i++) {
                struct stat st;
                if (!stat_listed(w, fd, path, names[i], sub, &st))
                        continue;
                if (st.st_dev != dev) {
                        keep(w, sub, "a mount point (another file system)");
                        continue;
                }
                remove_entry(w, fd, names[i], sub, &st, depth + 1);
        }
}

/* An entry of the UID found by the walk: removed (a directory with all it holds) or counted. */
static void take_entry(struct walk *w, int dfd, const char *name, const char *path, const struct stat *st, int depth) {
        if (!w->remove) {
                w->found++;
                return;
        }
        remove_entry(w, dfd, name, path, st, depth + 1);
}

/* Looks for entries of the UID below the directory open as fd (not owned by the UID). */
static void walk_dir(struct walk *w, int fd, const char *path, dev_t dev, int depth) {
        _cleanup_(strv_freep) char **names = NULL;
        size_t n = 0;
        char sub[PATH_MAX];

        if (dir_list_names_at(fd, SIZE_MAX, &names, &n) < 0)
                return;
        for (size_t i = 0; i < n; i++) {
                struct stat st;
                if (!stat_listed(w, fd, path, names[i], sub, &st))
                        continue;
                if (w->bits) {
                        /* Scan mode: mark the owner, and look inside whoever owns a directory. */
                        mark(w->lo, w->hi, w->bits, st.st_uid);
                        if (st.st_dev != dev || !S_ISDIR(st.st_mode) || depth >= WALK_DEPTH_MAX)
                                continue;
                        int sfd = open_dir_checked(fd, names[i], &st);
                        if (sfd < 0)
                                continue;
                        walk_dir(w, sfd, sub, dev, depth + 1);
                        close(sfd);
                        continue;
                }
                if (st.st_dev != dev) {
                        if (st.st_uid == w->uid)
                                keep(w, sub, "a mount point (another file system)");
                        continue;
                }
                if (st.st_uid == w->uid) {
                        take_entry(w, fd, names[i], sub, &st, depth);
                        continue;
                }
                if (!S_ISDIR(st.st_mode))
                        continue;
                if (depth >= WALK_DEPTH_MAX)
                        continue;
                int cfd = open_dir_checked(fd, names[i], &st);
                if (cfd < 0)
                        continue;
                walk_dir(w, cfd, sub, dev, depth + 1);
                close(cfd);
        }
}

/* One place: a directory searched for entries of the UID. Missing places are fine. */
static void walk_place(struct walk *w, const char *root, const char *place) {
        char path[PATH_MAX];
        struct stat st;

        if (join(path, sizeof(path), root, place) < 0)
                return;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
                return;
        walk_dir(w, fd, path, st.st_dev, 0);
}

/* One named entry (crontabs/NAME, /var/mail/NAME, /run/user/UID): taken whatever its owner, as
 * it is the user's by its name; a directory (the runtime dir) is its own file system. */
static void take_named(struct walk *w, const char *root, const char *dir, const char *name) {
        char path[PATH_MAX], sub[PATH_MAX];
        struct stat st;

        if (join(path, sizeof(path), root, dir) < 0 || join(sub, sizeof(sub), path, name) < 0)
                return;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return;
        if (!w->remove) {
                w->found++;
                return;
        }
        if (S_ISDIR(st.st_mode)) {
                int cfd = open_dir_checked(fd, name, &st);
                if (cfd < 0) {
                        keep(w, sub, "cannot open it: %s", strerror(-cfd));
                        return;
                }
                remove_contents(w, cfd, sub, st.st_dev, 1);
                close(cfd);
                /* logind unmounts /run/user/UID when it stops user-runtime-dir@UID.service,
                 * shortly after the user's slice went: give it two seconds. */
                int k;
                for (int i = 0; (k = unlinkat(fd, name, AT_REMOVEDIR)) < 0 && errno == EBUSY && i < 20; i++)
                        nanosleep(&(struct timespec) { .tv_nsec = 100 * 1000 * 1000 }, NULL);
                if (k < 0)
                        keep(w, sub, errno == EBUSY ? "a mount point (logind's runtime directory is still mounted)"
                                                    : "cannot remove it: %m");
                else
                        w->report->dirs_removed++;
                return;
        }
        take_entry(w, fd, name, sub, &st, 0);
}

/* pam_namespace's instance of a polyinstantiated directory for method "user" is PREFIX/NAME,
 * owned like the polydir (root, for /tmp): not the user's by owner, but by name. Taken only when
 * the prefix directory is root's and closed to others, as pam_namespace requires (mode 000), so
 * nobody else can have put a NAME there. */
static void take_instance(struct walk *w, const char *root, const char *prefix, const char *name) {
        char path[PATH_MAX];
        struct stat st;

        if (join(path, sizeof(path), root, prefix) < 0 || lstat(path, &st) < 0 || !S_ISDIR(st.st_mode) ||
            st.st_uid != 0 || (st.st_mode & 0022))
                return;
        take_named(w, root, prefix, name);
}

static const char *const places[] = {
        "tmp", "var/tmp", "dev/shm", "dev/mqueue", "run/lock",
        "var/spool/cron/crontabs", "var/spool/cron/atjobs", "var/spool/cron/atspool", "var/mail",
};

static void walk_files(struct walk *w, const char *root, const char *user_name) {
        char uid_text[16];

        snprintf(uid_text, sizeof(uid_text), "%u", (unsigned) w->uid);
        take_named(w, root, "run/user", uid_text);
        if (user_name) {
                take_named(w, root, "var/spool/cron/crontabs", user_name);
                take_named(w, root, "var/mail", user_name);
                take_instance(w, root, "tmp/tmp-inst", user_name);
                take_instance(w, root, "var/tmp/tmp-inst", user_name);
        }
        for (size_t i = 0; i < ELEMENTSOF(places); i++)
                walk_place(w, root, places[i]);
}

/* The four UIDs of a process from /proc/PID/status ("Uid:\treal\teffective\tsaved\tfs") and
 * whether it is a zombie. 0 or -errno (-EBADMSG: no Uid line). */
static int proc_status_uids(int proc_fd, const char *pid, unsigned long uids[static 4], bool *ret_zombie) {
        char path[NAME_MAX + 16], buf[4096];
        ssize_t n;

        snprintf(path, sizeof(path), "%s/status", pid);
        _cleanup_close_ int fd = openat(proc_fd, path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        n = read(fd, buf, sizeof(buf) - 1);
        if (n < 0)
                return negative_errno();
        buf[n] = '\0';
        const char *s = strstr(buf, "\nState:\t");
        *ret_zombie = s && s[8] == 'Z';
        s = strstr(buf, "\nUid:");
        if (!s)
                return -EBADMSG;
        s += 5;
        for (int i = 0; i < 4; i++) {
                char *end;
                uids[i] = strtoul(s, &end, 10);
                if (end == s)
                        return -EBADMSG;
                s = end;
        }
        return 0;
}

/* 1 if any of the process's four UIDs is uid, 0 if none (or the process is a zombie: it can do
 * nothing, and its parent reaps it), -errno. */
static int proc_has_uid(int proc_fd, const char *pid, uid_t uid) {
        unsigned long uids[4];
        bool zombie;
        int r = proc_status_uids(proc_fd, pid, uids, &zombie);

        if (r < 0)
                return r;
        for (int i = 0; i < 4; i++)
                if (uids[i] == uid)
                        return zombie ? 0 : 1;
        return 0;
}

static bool is_pid_name(const char *s) {
        if (!*s)
                return false;
        for (; *s; s++)
                if (*s < '0' || *s > '9')
                        return false;
        return true;
}

struct proc_pass {
        uid_t uid;
        bool kill_them;
        pid_t *seen;
        size_t seen_max, *n_seen;
        int found;
};

static int proc_pass_one(int proc_fd, const char *name, void *userdata) {
        struct proc_pass *p = userdata;

        if (!is_pid_name(name))
                return 0;
        long pid = strtol(name, NULL, 10);
        if (pid <= 1 || pid == getpid())
                return 0;
        /* The pidfd first: the UIDs read after it are those of the process it names.
         * Without pidfds (old kernels, valgrind) plain kill() after the check has to do. */
        _cleanup_close_ int pidfd = p->kill_them ? (int) syscall(SYS_pidfd_open, (pid_t) pid, 0) : -1;
        if (p->kill_them && pidfd < 0 && errno == ESRCH)
                return 0;
        if (proc_has_uid(proc_fd, name, p->uid) > 0) {
                p->found++;
                int k = !p->kill_them ? -1
                        : pidfd >= 0 ? (int) syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0)
                                     : kill((pid_t) pid, SIGKILL);
                if (k == 0) {
                        bool known = false;
                        for (size_t i = 0; i < *p->n_seen; i++)
                                known = known || p->seen[i] == (pid_t) pid;
                        if (!known && *p->n_seen < p->seen_max)
                                p->seen[(*p->n_seen)++] = (pid_t) pid;
                }
        }
        return 0;
}

/* One pass over /proc: signals (when kill) or counts every process of the UID. Returns the number
 * found, -errno if /proc cannot be read. */
static int proc_pass(const char *root, uid_t uid, bool kill_them, pid_t *seen, size_t seen_max, size_t *n_seen) {
        struct proc_pass p = { uid, kill_them, seen, seen_max, n_seen, 0 };
        char path[PATH_MAX];
        int r;

        if (join(path, sizeof(path), root, "proc") < 0)
                return -ENAMETOOLONG;
        _cleanup_close_ int proc_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (proc_fd < 0)
                return errno == ENOENT ? 0 : negative_errno();
        r = dir_foreach_at(proc_fd, proc_pass_one, &p);
        if (r < 0 && p.found == 0)
                return r;
        return p.found;
}

int uid_count_processes(const char *root, uid_t uid) {
        size_t n_seen = 0;

        return proc_pass(root, uid, false, NULL, 0, &n_seen);
}

#define SEEN_MAX 4096u

static int end_processes(const char *root, uid_t uid, struct uid_cleanup_report *report) {
        _cleanup_free_ pid_t *seen = calloc(SEEN_MAX, sizeof(pid_t));
        size_t n_seen = 0;
        int found = 0;

        if (!seen)
                return -ENOMEM;
        for (int round = 0; round < KILL_ROUNDS; round++) {
                found = proc_pass(root, uid, true, seen, SEEN_MAX, &n_seen);
                if (found <= 0)
                        break;
                struct timespec ts = { .tv_nsec = 20 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        if (found < 0)
                return found;
        report->processes_ended = (unsigned) n_seen;
        report->processes_left = (unsigned) found;
        if (found > 0 && report->processes_ended >= (unsigned) found)
                report->processes_ended -= (unsigned) found;
        return 0;
}

/* The SysV objects of the UID, from ROOT/proc/sysvipc/KIND: their ids. The column layout is
 * read from the header line, as it differs between the three files. */
static int ipc_list(const char *root, const char *kind, uid_t uid, int *ids, size_t max, size_t *ret_n) {
        char path[PATH_MAX], line[1024];
        int col_uid = -1, col_cuid = -1;
        size_t n = 0;

        snprintf(line, sizeof(line), "proc/sysvipc/%s", kind);
        if (join(path, sizeof(path), root, line) < 0)
                return -ENAMETOOLONG;
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f) {
                *ret_n = 0;
                return errno == ENOENT ? 0 : negative_errno();
        }
        if (!fgets(line, sizeof(line), f))
                return 0;
        {
                int col = 0;
                for (char *save = NULL, *t = strtok_r(line, " \t\n", &save); t; t = strtok_r(NULL, " \t\n", &save), col++) {
                        if (streq(t, "uid"))
                                col_uid = col;
                        else if (streq(t, "cuid"))
                                col_cuid = col;
                }
        }
        if (col_uid < 0 || col_cuid < 0)
                return -EBADMSG;
        while (fgets(line, sizeof(line), f) && n < max) {
                long long v[32];
                int col = 0;
                for (char *save = NULL, *t = strtok_r(line, " \t\n", &save); t && col < 32;
                     t = strtok_r(NULL, " \t\n", &save), col++)
                        v[col] = strtoll(t, NULL, 10);
                if (col <= col_uid || col <= col_cuid || col < 2)
                        continue;
                if (v[col_uid] == (long long) uid || v[col_cuid] == (long long) uid)
                        ids[n++] = (int) v[1];
        }
        *ret_n = n;
        return 0;
}

#define IPC_IDS_MAX 4096u

static int remove_ipc(const char *root, uid_t uid, bool remove, struct uid_cleanup_report *report) {
        static const char *const kinds[] = { "shm", "sem", "msg" };
        _cleanup_free_ int *ids = calloc(IPC_IDS_MAX, sizeof(int));
        int total = 0;

        if (!ids)
                return -ENOMEM;
        for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
                size_t n = 0;
                int r = ipc_list(root, kinds[k], uid, ids, IPC_IDS_MAX, &n);
                if (r < 0)
                        return r;
                total += (int) n;
                if (!remove || n == 0)
                        continue;
                /* IPC_RMID wants the owner's or creator's effective UID. */
                uid_t saved = geteuid();
                if (seteuid(uid) < 0) {
                        report->ipc_left += (unsigned) n;
                        continue;
                }
                for (size_t i = 0; i < n; i++) {
                        int q = k == 0 ? shmctl(ids[i], IPC_RMID, NULL)
                                : k == 1 ? semctl(ids[i], 0, IPC_RMID)
                                         : msgctl(ids[i], IPC_RMID, NULL);
                        if (q == 0 || errno == EINVAL || errno == EIDRM)
                                report->ipc_removed++;
                        else
                                report->ipc_left++;
                }
                if (seteuid(saved) < 0)
                        abort(); /* never go on with the wrong identity */
        }
        return total;
}

int uid_cleanup(const char *root, uid_t uid, const char *user_name, struct uid_cleanup_report *ret) {
        struct uid_cleanup_report report = {};
        struct walk w = { .uid = uid, .remove = true, .report = &report };
        int r;

        if (uid == 0)
                return -EINVAL;
        r = end_processes(root, uid, &report);
        if (r < 0)
                return r;
        r = remove_ipc(root, uid, true, &report);
        if (r < 0) {
                uid_cleanup_report_done(&report);
                return r;
        }
        walk_files(&w, root, user_name);
        *ret = report;
        return 0;
}

int uid_leftovers(const char *root, uid_t uid, const char *user_name) {
        struct uid_cleanup_report report = {};
        struct walk w = { .uid = uid, .remove = false, .report = &report };
        size_t n_seen = 0;
        int processes, ipc;

        if (uid == 0)
                return -EINVAL;
        processes = proc_pass(root, uid, false, NULL, 0, &n_seen);
        if (processes < 0)
                return processes;
        ipc = remove_ipc(root, uid, false, &report);
        if (ipc < 0)
                return ipc;
        walk_files(&w, root, user_name);
        return processes + ipc + (int) w.found;
}

struct uid_marks {
        uid_t lo, hi;
        uint8_t *bits;
};

/* One /proc entry: the process's four UIDs marked (zombies skipped, as above). */
static int mark_process(int proc_fd, const char *name, void *userdata) {
        struct uid_marks *m = userdata;
        unsigned long uids[4];
        bool zombie;

        if (!is_pid_name(name) || proc_status_uids(proc_fd, name, uids, &zombie) < 0 || zombie)
                return 0;
        for (int i = 0; i < 4; i++)
                mark(m->lo, m->hi, m->bits, uids[i]);
        return 0;
}

/* One entry of run/user: named after a UID, whoever owns it. */
static int mark_runtime_dir(int dir_fd, const char *name, void *userdata) {
        struct uid_marks *m = userdata;

        if (is_pid_name(name) && strlen(name) < 11)
                mark(m->lo, m->hi, m->bits, strtoull(name, NULL, 10));
        return 0;
}

/* Runs visit over the entries of ROOT/sub; a missing directory has none. */
static int mark_entries(const char *root, const char *sub, int (*visit)(int, const char *, void *), struct uid_marks *m) {
        char path[PATH_MAX];

        if (join(path, sizeof(path), root, sub) < 0)
                return -ENAMETOOLONG;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : negative_errno();
        return dir_foreach_at(fd, visit, m);
}

/* /proc/sysvipc/{shm,sem,msg}: owner and creator of every object marked. */
static int ipc_scan(const char *root, uid_t lo, uid_t hi, uint8_t *bits) {
        static const char *const kinds[] = { "shm", "sem", "msg" };
        for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
                char path[PATH_MAX], line[1024];
                int col_uid = -1, col_cuid = -1, col = 0;
                snprintf(line, sizeof(line), "proc/sysvipc/%s", kinds[k]);
                if (join(path, sizeof(path), root, line) < 0)
                        return -ENAMETOOLONG;
                _cleanup_fclose_ FILE *f = fopen(path, "re");
                if (!f) {
                        if (errno == ENOENT)
                                continue;
                        return negative_errno();
                }
                if (!fgets(line, sizeof(line), f))
                        continue;
                for (char *save = NULL, *t = strtok_r(line, " \t\n", &save); t; t = strtok_r(NULL, " \t\n", &save), col++) {
                        if (streq(t, "uid"))
                                col_uid = col;
                        else if (streq(t, "cuid"))
                                col_cuid = col;
                }
                if (col_uid < 0 || col_cuid < 0)
                        return -EBADMSG;
                while (fgets(line, sizeof(line), f)) {
                        long long v[32];
                        col = 0;
                        for (char *save = NULL, *t = strtok_r(line, " \t\n", &save); t && col < 32;
                             t = strtok_r(NULL, " \t\n", &save), col++)
                                v[col] = strtoll(t, NULL, 10);
                        if (col > col_uid && col > col_cuid) {
                                mark(lo, hi, bits, (unsigned long long) v[col_uid]);
                                mark(lo, hi, bits, (unsigned long long) v[col_cuid]);
                        }
                }
        }
        return 0;
}

int uid_leftovers_scan(const char *root, uid_t lo, uid_t hi, uint8_t *bits) {
        struct walk w = { .lo = lo, .hi = hi, .bits = bits };
        struct uid_marks m = { lo, hi, bits };
        int r;

        if (lo == 0 || lo > hi)
                return -EINVAL;
        memset(bits, 0, ((size_t) hi - lo) / 8 + 1);
        if ((r = mark_entries(root, "proc", mark_process, &m)) < 0 || (r = ipc_scan(root, lo, hi, bits)) < 0)
                return r;
        /* run/user/UID: named after the UID whoever owns it (unreadable: nothing to mark). */
        (void) mark_entries(root, "run/user", mark_runtime_dir, &m);
        for (size_t i = 0; i < ELEMENTSOF(places); i++)
                walk_place(&w, root, places[i]);
        return 0;
}
