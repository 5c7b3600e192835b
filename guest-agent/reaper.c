/* reaper.c: the agent unmounts the home of a user whose sessions all ended without a close.
 *
 * pam_vmuser unmounts a home at the last close_session. A session that never closes (sshd
 * SIGKILLed, an OOM kill, a killed user manager) used to keep the home mounted until the user's
 * next login. The reaper watches, without any timer or polling:
 *   - /run/vmuser/sessions/ and each sessions/NAME/ with inotify, to learn of users and of
 *     session entries ("PID-START", written by pam_vmuser before it mounts);
 *   - every entry's process with a pidfd (pidfd_open(2)), which becomes readable when the process
 *     exits;
 *   - logind's sessions with an sd-login monitor (when logind runs).
 * Any of these marks the user "to check"; a deferred event then checks each such user once:
 * under the user's session lock (the one pam_vmuser takes), dead entries are pruned, and when
 * no tracked entry is alive and logind lists no session of the UID that is not closing, the
 * home is unmounted (through systemd with --host-mounts) and that is logged. A user whose
 * logind sessions are still open, or whose home was busy, is checked again at logind's next
 * change. Lingering
 * (loginctl enable-linger) does not keep a home: only login sessions do, as in pam_vmuser.
 * An idle agent thus has no wake-ups; everything here costs only when sessions change. The one
 * exception is a session whose process cannot get a pidfd (no pidfd_open(2): kernels before 5.3,
 * valgrind before 3.20; or out of fds): while such a session exists, its user is checked once a
 * second. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-login.h>
#include <unistd.h>

#include "agent.h"
#include "attach-state.h"
#include "audit-log.h"
#include "dir-util.h"
#include "macro.h"
#include "names.h"
#include "paths.h"
#include "reaper.h"
#include "session-track.h"

/* pidfds held at most (one per live session entry); beyond that a user is still checked when
 * its other sessions or logind change, and at the next start. */
#define REAPER_PIDFDS_MAX 4096u
/* How often users with sessions we could not give a pidfd are checked (see unwatched()). */
#define REAPER_POLL_SEC 1u
/* How long a check waits for a login or logout of the user that holds the session lock. */
#define REAPER_LOCK_TIMEOUT_MSEC 2000u

struct reaper_entry {
        struct reaper_entry *next;
        struct reaper_user *user;
        sd_event_source *source; /* owns the pidfd */
        char name[48];
};

struct reaper_user {
        struct reaper_user *next;
        struct reaper *reaper;
        struct reaper_entry *entries;
        int wd;
        bool dirty;             /* to be checked by the deferred event */
        bool waiting_for_logind; /* no tracked session left, but logind still lists one */
        bool unwatched;          /* has an entry without a pidfd (see unwatched()) */
        char name[VMUSER_NAME_MAX + 1];
};

struct reaper {
        struct agent *agent;
        sd_event *event;
        int sessions_fd;
        int inotify_fd;
        int sessions_wd;
        sd_event_source *inotify_source;
        sd_event_source *defer_source;
        sd_event_source *poll_source;
        sd_login_monitor *monitor;
        sd_event_source *monitor_source;
        struct reaper_user *users;
        unsigned n_pidfds;
        bool told_pidfds_max;
        bool told_pidfd_error;
};

static void entry_free(struct reaper_entry *e) {
        if (!e)
                return;
        if (e->source) {
                sd_event_source_disable_unref(e->source);
                e->user->reaper->n_pidfds--;
        }
        free(e);
}

static void user_free(struct reaper *r, struct reaper_user *u) {
        while (u->entries) {
                struct reaper_entry *e = u->entries;
                u->entries = e->next;
                entry_free(e);
        }
        if (u->wd >= 0 && r->inotify_fd >= 0)
                (void) inotify_rm_watch(r->inotify_fd, u->wd);
        free(u);
}

static void mark_dirty(struct reaper_user *u) {
        u->dirty = true;
        (void) sd_event_source_set_enabled(u->reaper->defer_source, SD_EVENT_ONESHOT);
}

/* The fallback for entries we could not give a pidfd: check their users again in a while.
 * Armed only while such an entry exists; never on a kernel with pidfds and fds to spare. */
static void unwatched(struct reaper_user *u) {
        struct reaper *r = u->reaper;

        u->unwatched = true;
        if (sd_event_source_get_enabled(r->poll_source, NULL) > 0)
                return;
        (void) sd_event_source_set_time_relative(r->poll_source, REAPER_POLL_SEC * 1000000ULL);
        (void) sd_event_source_set_enabled(r->poll_source, SD_EVENT_ONESHOT);
}

static int on_poll(sd_event_source *s, uint64_t usec, void *userdata) {
        struct reaper *r = userdata;

        for (struct reaper_user *u = r->users; u; u = u->next)
                if (u->unwatched)
                        mark_dirty(u);
        return 0;
}

static int on_pidfd(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct reaper_entry *e = userdata;
        struct reaper_user *u = e->user;

        /* The process exited (or is a zombie): its pidfd stays readable, so forget it now. */
        for (struct reaper_entry **p = &u->entries; *p; p = &(*p)->next)
                if (*p == e) {
                        *p = e->next;
                        break;
                }
        entry_free(e);
        mark_dirty(u);
        return 0;
}

static struct reaper_entry *entry_find(struct reaper_user *u, const char *name) {
        for (struct reaper_entry *e = u->entries; e; e = e->next)
                if (streq(e->name, name))
                        return e;
        return NULL;
}

static void entry_drop(struct reaper_user *u, const char *name) {
        for (struct reaper_entry **p = &u->entries; *p; p = &(*p)->next)
                if (streq((*p)->name, name)) {
                        struct reaper_entry *e = *p;
                        *p = e->next;
                        entry_free(e);
                        return;
                }
}

/* Starts watching the process of entry name of u. Not an entry, or one we watch already:
 * nothing. Its process gone already: the user is to be checked. */
static void entry_add(struct reaper_user *u, const char *name) {
        struct reaper *r = u->reaper;
        struct reaper_entry *e;
        uint64_t start;
        pid_t pid;
        int fd, k;

        if (session_entry_parse(name, &pid, &start) < 0 || strlen(name) >= sizeof(e->name) || entry_find(u, name))
                return;
        if (r->n_pidfds >= REAPER_PIDFDS_MAX) {
                if (!r->told_pidfds_max)
                        fprintf(stderr, SD_WARNING "Watching %u sessions already; further ones are checked "
                                                   "every %u s instead.\n", REAPER_PIDFDS_MAX, REAPER_POLL_SEC);
                r->told_pidfds_max = true;
                unwatched(u);
                return;
        }
        fd = session_entry_pidfd(pid, start);
        if (fd == -ESRCH) {
                mark_dirty(u); /* ended before we looked */
                return;
        }
        if (fd < 0) {
                /* No pidfd (ENOSYS: a kernel before 5.3, or valgrind before 3.20; EMFILE): this
                 * user is checked by the fallback timer while such an entry exists. Said once. */
                if (!r->told_pidfd_error)
                        fprintf(stderr, SD_WARNING "Cannot watch process %d of a session of %s: %s; checking "
                                                   "such sessions every %u s instead.\n", (int) pid, u->name,
                                strerror(-fd), REAPER_POLL_SEC);
                r->told_pidfd_error = true;
                unwatched(u);
                return;
        }
        e = calloc(1, sizeof(*e));
        if (!e) {
                close(fd);
                return;
        }
        e->user = u;
        snprintf(e->name, sizeof(e->name), "%s", name);
        k = sd_event_add_io(r->event, &e->source, fd, EPOLLIN, on_pidfd, e);
        if (k < 0) {
                close(fd);
                free(e);
                fprintf(stderr, SD_WARNING "Cannot watch process %d of a session of %s: %s\n", (int) pid, u->name,
                        strerror(-k));
                return;
        }
        (void) sd_event_source_set_io_fd_own(e->source, true);
        r->n_pidfds++;
        e->next = u->entries;
        u->entries = e;
}

static int user_scan_one(int dir_fd, const char *name, void *userdata) {
        entry_add(userdata, name);
        return 0;
}

/* Adds every entry of u's directory that we do not watch yet. */
static void user_scan(struct reaper_user *u) {
        _cleanup_close_ int fd = openat(u->reaper->sessions_fd, u->name,
                                        O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

        if (fd >= 0)
                (void) dir_foreach_at(fd, user_scan_one, u);
}

static struct reaper_user *user_find_wd(struct reaper *r, int wd) {
        for (struct reaper_user *u = r->users; u; u = u->next)
                if (u->wd == wd)
                        return u;
        return NULL;
}

static struct reaper_user *user_find(struct reaper *r, const char *name) {
        for (struct reaper_user *u = r->users; u; u = u->next)
                if (streq(u->name, name))
                        return u;
        return NULL;
}

static void user_drop(struct reaper *r, struct reaper_user *u, bool rm_watch) {
        for (struct reaper_user **p = &r->users; *p; p = &(*p)->next)
                if (*p == u) {
                        *p = u->next;
                        break;
                }
        if (!rm_watch)
                u->wd = -1; /* the kernel removed it already */
        user_free(r, u);
}

/* Starts watching sessions/NAME: its directory (for new and removed entries) and each entry's
 * process. Only a directory pam_vmuser could have made (ours, nobody else may write to it). */
static void user_add(struct reaper *r, const char *name) {
        _cleanup_close_ int fd = -1;
        struct reaper_user *u;
        struct stat st;
        char path[64];

        if (!name_is_valid(name) || user_find(r, name))
                return;
        fd = openat(r->sessions_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & 0022))
                return;
        u = calloc(1, sizeof(*u));
        if (!u)
                return;
        u->reaper = r;
        snprintf(u->name, sizeof(u->name), "%s", name);
        /* Through the fd: the watch is on the directory we checked, whatever the path is now. */
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        u->wd = inotify_add_watch(r->inotify_fd, path,
                                  IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM | IN_ONLYDIR);
        if (u->wd < 0) {
                fprintf(stderr, SD_WARNING "Cannot watch the sessions of %s: %m\n", name);
                free(u);
                return;
        }
        /* Two names for one directory would share a watch descriptor: keep one. */
        if (user_find_wd(r, u->wd)) {
                free(u);
                return;
        }
        u->next = r->users;
        r->users = u;
        /* Entries made before the watch existed. */
        user_scan(u);
        /* Sessions may have ended while nobody watched (agent restart): check once. */
        mark_dirty(u);
}

static int scan_all_one(int dir_fd, const char *name, void *userdata) {
        user_add(userdata, name);
        return 0;
}

static void scan_all(struct reaper *r) {
        (void) dir_foreach_at(r->sessions_fd, scan_all_one, r);
        for (struct reaper_user *u = r->users; u; u = u->next) {
                user_scan(u);
                mark_dirty(u);
        }
}

static int on_inotify(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct reaper *r = userdata;
        union {
                struct inotify_event ev;
                char buf[4096];
        } u;
        bool overflow = false;
        ssize_t n;

        n = read(fd, u.buf, sizeof(u.buf));
        if (n <= 0)
                return 0; /* EAGAIN, EINTR: epoll calls again if there is more */
        for (char *p = u.buf; p < u.buf + n;) {
                struct inotify_event *ev = (struct inotify_event *) (void *) p;
                const char *name = ev->len > 0 ? ev->name : "";

                p += sizeof(struct inotify_event) + ev->len;
                if (ev->mask & IN_Q_OVERFLOW) {
                        overflow = true;
                        continue;
                }
                if (ev->wd == r->sessions_wd) {
                        if (!(ev->mask & IN_ISDIR))
                                continue;
                        if (ev->mask & (IN_CREATE | IN_MOVED_TO))
                                user_add(r, name);
                        continue;
                }
                struct reaper_user *ru = user_find_wd(r, ev->wd);
                if (!ru)
                        continue;
                if (ev->mask & IN_IGNORED)
                        user_drop(r, ru, false); /* its directory went (a detach) */
                else if (ev->mask & (IN_CREATE | IN_MOVED_TO))
                        entry_add(ru, name);
                else if (ev->mask & (IN_DELETE | IN_MOVED_FROM))
                        entry_drop(ru, name);
        }
        if (overflow)
                scan_all(r);
        return 0;
}

/* Sessions logind lists for uid that are not closing (a closing session's process that opened
 * it is gone; what is left of it does not keep the home, as after a normal logout). 0 without
 * logind. */
static int logind_open_sessions(uid_t uid) {
        char **sessions = NULL;
        int n, open = 0;

        n = sd_uid_get_sessions(uid, 0, &sessions);
        if (n <= 0)
                return 0;
        for (int i = 0; i < n; i++) {
                char *state = NULL;
                /* A session that vanished meanwhile is not open. */
                if (sd_session_get_state(sessions[i], &state) >= 0 && !streq(state, "closing"))
                        open++;
                free(state);
                free(sessions[i]);
        }
        free(sessions);
        return open;
}

static void user_check(struct reaper *r, struct reaper_user *u) {
        _cleanup_(session_lock_releasep) struct session_lock *l = NULL;
        struct attach_state s;
        struct verr e = {};
        int k, live, logind;

        /* Whatever still has no pidfd after this check sets it again. */
        u->unwatched = false;
        k = userdb_get_state(r->agent->db, u->name, &s);
        if (k < 0 || !s.has_home) {
                if (k < 0 && k != -ENOENT)
                        fprintf(stderr, SD_WARNING "Cannot read the attach state of %s: %s\n", u->name,
                                strerror(-k));
                return;
        }
        k = session_lock_acquire_timeout(userdb_state_fd(r->agent->db), u->name, false, REAPER_LOCK_TIMEOUT_MSEC,
                                         &l);
        if (k == -ETIMEDOUT) {
                /* A login or logout of the user is running; it prunes and counts itself. */
                return;
        }
        if (k < 0) {
                if (k != -ENOENT)
                        fprintf(stderr, SD_WARNING "Cannot lock the sessions of %s: %s\n", u->name, strerror(-k));
                return;
        }
        live = session_prune_and_count(l);
        if (live < 0) {
                fprintf(stderr, SD_WARNING "Cannot count the sessions of %s: %s\n", u->name, strerror(-live));
                return;
        }
        if (live > 0) {
                /* Entries without a pidfd (limit, errors) are tried again; still failing, they
                 * set unwatched again. */
                user_scan(u);
                u->waiting_for_logind = false;
                return;
        }
        logind = logind_open_sessions(s.uid);
        u->waiting_for_logind = logind > 0;
        if (logind > 0)
                return;

        k = agent_path_is_mounted(r->agent, s.home_directory);
        if (k <= 0) {
                if (k < 0)
                        fprintf(stderr, SD_WARNING "Cannot tell whether '%s' is mounted: %s\n", s.home_directory,
                                strerror(-k));
                return;
        }
        /* Still under the lock: a login of the user waits, then mounts the home again. */
        k = agent_unmount_home(r->agent, &s, &e);
        if (k < 0) {
                /* Busy: what keeps it busy is usually left in a closing session's scope; when
                 * that ends, logind changes, and we try again. */
                u->waiting_for_logind = true;
                fprintf(stderr, SD_ERR "The sessions of %s ended without a close, but its home '%s' stays mounted: %s\n",
                        u->name, s.home_directory, verr_text(&e, k));
        }
        else {
                _cleanup_free_ char *f_user = audit_field("VMUSER_USER", "%s", u->name);
                _cleanup_free_ char *f_home = audit_field("VMUSER_HOME", "%s", s.home_directory);
                const char *fields[] = { f_user, f_home, NULL };

                fprintf(stderr, SD_NOTICE "The sessions of %s ended without a close; unmounted its home '%s'.\n",
                        u->name, s.home_directory);
                if (f_user && f_home)
                        (void) audit_log("vmuser-agent", AUDIT_AGENT_REAPED, LOG_NOTICE, fields,
                                         "The sessions of %s ended without a close; unmounted its home '%s'.",
                                         u->name, s.home_directory);
        }
}

static int on_defer(sd_event_source *s, void *userdata) {
        struct reaper *r = userdata;

        /* user_check() may drop users (through nothing but inotify events, which come later), so
         * walking the list while checking is safe. */
        for (struct reaper_user *u = r->users; u; u = u->next)
                if (u->dirty) {
                        u->dirty = false;
                        user_check(r, u);
                }
        return 0;
}

static int on_logind(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct reaper *r = userdata;

        (void) sd_login_monitor_flush(r->monitor);
        for (struct reaper_user *u = r->users; u; u = u->next)
                if (u->waiting_for_logind)
                        mark_dirty(u);
        return 0;
}

struct reaper *reaper_free(struct reaper *r) {
        if (!r)
                return NULL;
        while (r->users) {
                struct reaper_user *u = r->users;
                r->users = u->next;
                user_free(r, u);
        }
        sd_event_source_disable_unref(r->inotify_source);
        sd_event_source_disable_unref(r->defer_source);
        sd_event_source_disable_unref(r->poll_source);
        sd_event_source_disable_unref(r->monitor_source);
        sd_login_monitor_unref(r->monitor);
        closep(&r->inotify_fd);
        closep(&r->sessions_fd);
        free(r);
        return NULL;
}

void reaper_freep(struct reaper **r) {
        *r = reaper_free(*r);
}

int reaper_new(sd_event *event, struct agent *agent, struct reaper **ret) {
        _cleanup_(reaper_freep) struct reaper *r = NULL;
        int state_fd = userdb_state_fd(agent->db);
        struct stat st;
        char path[64];
        int k;

        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->agent = agent;
        r->event = event;
        r->sessions_fd = r->inotify_fd = r->sessions_wd = -1;

        /* pam_vmuser makes sessions/ on the first login; make it now so it can be watched. */
        if (mkdirat(state_fd, VMUSER_SESSIONS_SUBDIR, 0755) < 0 && errno != EEXIST)
                return negative_errno();
        r->sessions_fd = openat(state_fd, VMUSER_SESSIONS_SUBDIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (r->sessions_fd < 0)
                return errno == ELOOP ? -ENOTDIR : negative_errno();
        if (fstat(r->sessions_fd, &st) < 0)
                return negative_errno();
        if (st.st_uid != geteuid() || (st.st_mode & 0022))
                return -EPERM;

        r->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (r->inotify_fd < 0)
                return negative_errno();
        snprintf(path, sizeof(path), "/proc/self/fd/%d", r->sessions_fd);
        r->sessions_wd = inotify_add_watch(r->inotify_fd, path, IN_CREATE | IN_MOVED_TO | IN_ONLYDIR);
        if (r->sessions_wd < 0)
                return negative_errno();
        k = sd_event_add_io(event, &r->inotify_source, r->inotify_fd, EPOLLIN, on_inotify, r);
        if (k < 0)
                return k;
        k = sd_event_add_defer(event, &r->defer_source, on_defer, r);
        if (k < 0)
                return k;
        (void) sd_event_source_set_enabled(r->defer_source, SD_EVENT_OFF);
        k = sd_event_add_time_relative(event, &r->poll_source, CLOCK_MONOTONIC, REAPER_POLL_SEC * 1000000ULL, 0,
                                       on_poll, r);
        if (k < 0)
                return k;
        (void) sd_event_source_set_enabled(r->poll_source, SD_EVENT_OFF);

        /* logind's view: without logind (containers, the tests) tracked entries alone count. */
        k = sd_login_monitor_new("session", &r->monitor);
        if (k >= 0) {
                k = sd_event_add_io(event, &r->monitor_source, sd_login_monitor_get_fd(r->monitor),
                                    (uint32_t) sd_login_monitor_get_events(r->monitor), on_logind, r);
                if (k < 0)
                        return k;
        } else
                r->monitor = NULL;

        scan_all(r);
        *ret = TAKE_PTR(r);
        return 0;
}
