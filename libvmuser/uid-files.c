/* uid-files.c: the entries a UID left in the places any login can write to (see
 * uid-cleanup-internal.h), removed, counted or marked.
 *
 * A request (uid_files_remove()) first takes the entries that are the user's by name, whoever
 * owns them: /run/user/UID, crontabs/NAME, /var/mail/NAME and pam_namespace's instances
 * tmp-inst/NAME; then it walks each place (/tmp, /var/tmp, /dev/shm, ...) for entries the UID
 * owns. The walk descends into directories of other users only to find entries of the UID (each
 * directory opened with O_NOFOLLOW and checked to be the one fstatat() saw); a directory the UID
 * owns goes as a whole, with whatever others left in it. A regular file of the UID with more
 * than one link or a set-ID bit is made mode 0 before its name goes: a link elsewhere must not
 * keep a working set-ID copy alive. What cannot go is kept in the report with the reason. The
 * scan (uid_files_mark()) is the same walk marking every owner instead. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dir-util.h"
#include "macro.h"
#include "strv.h"
#include "uid-cleanup-internal.h"

/* Bounds: the walk's depth and entry count. */
#define WALK_DEPTH_MAX 32
#define WALK_ENTRIES_MAX 1000000u

struct walk {
        uid_t uid;
        bool remove;
        unsigned long entries;
        unsigned found; /* check mode: entries of the UID */
        struct uid_cleanup_report *report;
        /* scan mode (uid_files_mark): every owner in the range is marked instead */
        struct uid_marks *marks;
};

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
        return w->entries++ < WALK_ENTRIES_MAX && uid_path_join(sub, PATH_MAX, path, name) >= 0 &&
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

static void walk_dir(struct walk *w, int fd, const char *path, dev_t dev, int depth);

/* Walks the directory name below fd at path sub (st as fstatat() saw it; the place's file
 * system), one level deeper unless that is beyond WALK_DEPTH_MAX. */
static void walk_into(struct walk *w, int fd, const char *name, const char *sub, const struct stat *st, int depth) {
        if (depth >= WALK_DEPTH_MAX)
                return;
        int cfd = open_dir_checked(fd, name, st);
        if (cfd < 0)
                return;
        walk_dir(w, cfd, sub, st->st_dev, depth + 1);
        close(cfd);
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
                if (w->marks) {
                        /* Scan mode: mark the owner, and look inside whoever owns a directory. */
                        uid_mark(w->marks, st.st_uid);
                        if (st.st_dev == dev && S_ISDIR(st.st_mode))
                                walk_into(w, fd, names[i], sub, &st, depth);
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
                if (S_ISDIR(st.st_mode))
                        walk_into(w, fd, names[i], sub, &st, depth);
        }
}

/* One place: a directory searched for entries of the UID. Missing places are fine. */
static void walk_place(struct walk *w, const char *root, const char *place) {
        char path[PATH_MAX];
        struct stat st;

        if (uid_path_join(path, sizeof(path), root, place) < 0)
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

        if (uid_path_join(path, sizeof(path), root, dir) < 0 || uid_path_join(sub, sizeof(sub), path, name) < 0)
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

        if (uid_path_join(path, sizeof(path), root, prefix) < 0 || lstat(path, &st) < 0 || !S_ISDIR(st.st_mode) ||
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

unsigned uid_files_remove(const char *root, uid_t uid, const char *user_name, bool remove,
                          struct uid_cleanup_report *report) {
        struct walk w = { .uid = uid, .remove = remove, .report = report };

        walk_files(&w, root, user_name);
        return w.found;
}

/* One entry of run/user: named after a UID, whoever owns it. */
static int mark_runtime_dir(int dir_fd, const char *name, void *userdata) {
        struct uid_marks *m = userdata;

        if (uid_name_is_number(name) && strlen(name) < 11)
                uid_mark(m, strtoull(name, NULL, 10));
        return 0;
}

void uid_files_mark(const char *root, struct uid_marks *m) {
        struct walk w = { .marks = m };

        /* run/user/UID: named after the UID whoever owns it (unreadable: nothing to mark). */
        (void) uid_foreach_entry(root, "run/user", mark_runtime_dir, m);
        for (size_t i = 0; i < ELEMENTSOF(places); i++)
                walk_place(&w, root, places[i]);
}
