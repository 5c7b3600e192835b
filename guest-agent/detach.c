/* detach.c: vmuser-detach, the end of a transient UID's attachment (doc/PROTOCOL.txt, "The life
 * of a transient UID").
 *
 * Under the agent lock: mark the user "detaching" in its state file (pam_vmuser refuses new
 * sessions from here on), take the user's session lock and hold it to the end (a login that got
 * past the mark waits behind it, then finds the state gone and fails), count sessions (busy
 * without force), end them (tracked session processes, logind's user), unmount the home, remove
 * the records, then end every process still running as the UID and remove its IPC objects and
 * files (uid-cleanup.c). A UID with anything left goes into quarantine (uid-alloc.h). Any failure
 * before the records go clears the mark again. The reply says what was ended and removed. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-login.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "audit-log.h"
#include "audit.h"
#include "json-util.h"
#include "macro.h"
#include "paths.h"
#include "proc-util.h"
#include "session-track.h"
#include "uid-alloc.h"
#include "uid-cleanup.h"

/* The agent holds the user's session lock for the whole detach; a forced one may take a while. */
#define DETACH_SESSION_LOCK_MSEC 10000u

#define PIDS_PER_BATCH 64
#define BATCHES_MAX 64

struct pid_batch {
        pid_t pids[PIDS_PER_BATCH];
        size_t n;
};

static int collect_pid(pid_t pid, void *userdata) {
        struct pid_batch *b = userdata;
        if (b->n < PIDS_PER_BATCH)
                b->pids[b->n++] = pid;
        return 0;
}

/* Gone or a zombie (its parent reaps it; it holds nothing any more). */
static bool pid_done(pid_t pid) {
        char state;
        int r = proc_stat_read(pid, &state, NULL);

        if (r == -EBADMSG)
                return false;
        if (r < 0)
                return kill(pid, 0) < 0 && errno == ESRCH;
        return state == 'Z' || state == 'X';
}

/* Ends the sessions recorded under l, in batches (a user may have more sessions than one batch
 * holds): SIGTERM to the processes that opened them, SIGKILL to those still there after 1.5 s,
 * until no live entry is left. Then logind's part: TerminateUser through
 * agent_release_user_manager(), which waits for the user's slice to go. */
static int end_sessions(struct agent *a, const struct attach_state *s, struct session_lock *l, struct verr *e) {
        for (int batch = 0; batch < BATCHES_MAX; batch++) {
                struct pid_batch b = {};
                (void) session_foreach(l, collect_pid, &b);
                if (b.n == 0)
                        break;
                for (size_t i = 0; i < b.n; i++)
                        (void) kill(b.pids[i], SIGTERM);
                for (int round = 0; round < 40; round++) {
                        bool any = false;
                        for (size_t i = 0; i < b.n; i++)
                                any = any || !pid_done(b.pids[i]);
                        if (!any)
                                break;
                        if (round == 30)
                                for (size_t i = 0; i < b.n; i++)
                                        (void) kill(b.pids[i], SIGKILL);
                        usleep(50 * 1000);
                }
        }
        return agent_release_user_manager(a, s, e);
}

static json_object *cleanup_to_json(const struct uid_cleanup_report *c, bool quarantined) {
        json_object *o = json_object_new_object(), *kept = json_object_new_array();

        if (!o || !kept) {
                json_object_put(o);
                json_object_put(kept);
                return NULL;
        }
        for (size_t i = 0; i < UID_CLEANUP_KEPT_MAX && i < c->kept_count; i++)
                if (c->kept[i])
                        json_object_array_add(kept, json_object_new_string(c->kept[i]));
        json_object_object_add(o, "processesEnded", json_object_new_int64(c->processes_ended));
        json_object_object_add(o, "processesLeft", json_object_new_int64(c->processes_left));
        json_object_object_add(o, "ipcRemoved", json_object_new_int64(c->ipc_removed));
        json_object_object_add(o, "ipcLeft", json_object_new_int64(c->ipc_left));
        json_object_object_add(o, "filesRemoved", json_object_new_int64(c->files_removed));
        json_object_object_add(o, "dirsRemoved", json_object_new_int64(c->dirs_removed));
        json_object_object_add(o, "keptCount", json_object_new_int64(c->kept_count));
        json_object_object_add(o, "kept", kept);
        json_object_object_add(o, "quarantined", json_object_new_boolean(quarantined));
        return o;
}

/* Whether /run/vmuser/sessions/NAME exists (pam_vmuser makes it at a user's first session). */
static bool user_sessions_dir_exists(int state_fd, const char *name) {
        char path[PATH_MAX];
        struct stat st;

        snprintf(path, sizeof(path), "%s/%s", VMUSER_SESSIONS_SUBDIR, name);
        return fstatat(state_fd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT;
}

/* The audit entry of a detach, with what the clean-up ended, removed and kept. */
static void audit_detached(const char *name, uint32_t uid, const struct uid_cleanup_report *c, bool quarantined) {
        char *f[8] = {
                audit_field("VMUSER_PROCESSES_ENDED", "%u", c->processes_ended),
                audit_field("VMUSER_PROCESSES_LEFT", "%u", c->processes_left),
                audit_field("VMUSER_IPC_REMOVED", "%u", c->ipc_removed),
                audit_field("VMUSER_FILES_REMOVED", "%u", c->files_removed),
                audit_field("VMUSER_DIRS_REMOVED", "%u", c->dirs_removed),
                audit_field("VMUSER_PATHS_KEPT", "%u", c->kept_count),
                audit_field("VMUSER_UID_QUARANTINED", "%s", quarantined ? "yes" : "no"),
                NULL,
        };
        bool complete = true;

        for (size_t i = 0; i < 7; i++)
                complete = complete && f[i];
        agent_audit_detached(name, uid, complete ? (const char *const *) f : NULL);
        for (size_t i = 0; i < 7; i++)
                free(f[i]);
}

/* Takes the agent lock (into *lock_fd, held to the end), reads the user's state and marks it
 * detaching: --userdb=varlink in the agent's memory (io.vmuser.GetAttachState tells pam_vmuser),
 * dropin in users/NAME.json (through *users_fd). A failure here has nothing to undo. */
static int mark_detaching(struct agent *a, const char *name, int *lock_fd, int *users_fd,
                          struct attach_state *s, struct verr *e) {
        int state_fd = userdb_state_fd(a->db);
        int r;

        r = userdb_lock(a->db, lock_fd);
        if (r < 0)
                return verr_set(e, r, "could not take the agent lock: %s", strerror(-r));
        r = userdb_get_state(a->db, name, s);
        if (r == -ENOENT)
                return verr_set(e, -ENOENT, "user '%s' is not attached", name);
        if (r < 0)
                return verr_set(e, r, "state of user '%s' is unreadable: %s", name, strerror(-r));

        if (userdb_state_in_store(a->db)) {
                r = agent_userdb_set_detaching(a, name);
                if (r < 0)
                        return verr_set(e, r, "cannot mark user '%s' as detaching: %s", name, strerror(-r));
                return 0;
        }
        *users_fd = openat(state_fd, VMUSER_USERS_SUBDIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (*users_fd < 0)
                return verr_set(e, negative_errno(), "cannot open %s/%s: %m", VMUSER_STATE_DIR, VMUSER_USERS_SUBDIR);
        r = attach_state_set_detaching(*users_fd, name, true);
        if (r == -ENOSPC || r == -EDQUOT)
                /* A full /run must not keep a user attached: the mark only makes logins fail
                 * fast; the session lock held below keeps them out all the same, and pam_vmuser
                 * re-reads the state under it. */
                fprintf(stderr, SD_WARNING "Cannot mark user '%s' as detaching (%s); detaching under the session "
                        "lock alone.\n", name, strerror(-r));
        else if (r < 0)
                return verr_set(e, r, "cannot mark user '%s' as detaching: %s", name, strerror(-r));
        return 0;
}

/* Clears what mark_detaching() set. */
static void unmark_detaching(struct agent *a, const char *name, int users_fd) {
        if (userdb_state_in_store(a->db))
                (void) agent_userdb_set_detaching(a, NULL);
        else if (users_fd >= 0)
                (void) attach_state_set_detaching(users_fd, name, false);
}

/* Takes the user's session lock into *ret, held to the end. *ret stays NULL when /run/vmuser is
 * full and the user never had a tracked session. */
static int lock_sessions(int state_fd, const char *name, struct session_lock **ret, struct verr *e) {
        bool had_sessions_dir = user_sessions_dir_exists(state_fd, name);
        int r;

        r = session_lock_acquire_timeout(state_fd, name, true, DETACH_SESSION_LOCK_MSEC, ret);
        if ((r == -ENOSPC || r == -EDQUOT) && !had_sessions_dir) {
                /* A full /run/vmuser, and the user never had a tracked session: none can start
                 * now either (pam_vmuser cannot make the directory), so there is nothing to lock
                 * out; logind's sessions are still counted below. The directory the attempt may
                 * have made goes again: its inode is the one the records' journal needs. */
                char dir[PATH_MAX];
                snprintf(dir, sizeof(dir), "%s/%s", VMUSER_SESSIONS_SUBDIR, name);
                (void) unlinkat(state_fd, dir, AT_REMOVEDIR);
                fprintf(stderr, SD_WARNING "Cannot make the session lock of '%s' (%s); it has no tracked session.\n",
                        name, strerror(-r));
        } else if (r < 0)
                return verr_set(e, r, "cannot lock the sessions of '%s': %s", name, strerror(-r));
        return 0;
}

/* The user's sessions, tracked or logind's, whichever are more; -EBUSY when there are any and
 * not force. */
static int count_sessions(const struct attach_state *s, struct session_lock *l, const char *name, bool force,
                          struct verr *e) {
        int sessions = l ? session_prune_and_count(l) : 0;
        int logind = sd_uid_get_sessions(s->uid, 0, NULL);

        if (sessions < 0)
                return verr_set(e, sessions, "cannot count the sessions of '%s': %s", name, strerror(-sessions));
        if (logind > sessions)
                sessions = logind;
        if (sessions > 0 && !force)
                return verr_set(e, -EBUSY, "user '%s' has %d session(s); log them out or detach with force", name,
                                sessions);
        return sessions;
}

/* Ends the sessions and the user's manager, unmounts the home and drops the session entries.
 * Sets *early when a forced pass of uid_cleanup() ran already, into *report. */
static int end_user(struct agent *a, const char *name, const struct attach_state *s, struct session_lock *l,
                    int sessions, bool force, struct uid_cleanup_report *report, bool *early, struct verr *e) {
        int r;

        r = sessions > 0 && l ? end_sessions(a, s, l, e) : agent_release_user_manager(a, s, e);
        if (r == -ETIMEDOUT && force) {
                /* logind's stop did not empty the user's slice in time (processes it does not
                 * end, a user manager that hangs): with force, end every process of the UID now,
                 * while its records still resolve, and wait for the slice once more. */
                if (uid_cleanup(userdb_cleanup_root(a->db), s->uid, name, report) >= 0)
                        *early = true;
                e->text[0] = '\0';
                r = agent_release_user_manager(a, s, e);
        }
        if (r < 0)
                return r;
        r = agent_unmount_home(a, s, e);
        if (r < 0)
                return r;
        if (l)
                (void) session_remove_all_locked(l);
        return 0;
}

/* The records are gone: nothing can log in as the user any more, and whatever still runs as the
 * UID (an escapee of the session, an at job, a nohup'ed process) goes now. *report holds the
 * early pass (if early) on entry, the whole clean-up on return; a dirty UID goes into quarantine.
 * Returns whether it is dirty. */
static int clean_uid(struct agent *a, const char *name, uint32_t uid, struct uid_cleanup_report *report,
                     bool early, struct verr *e) {
        struct uid_cleanup_report late = {};
        int r;

        r = uid_cleanup(userdb_cleanup_root(a->db), uid, name, &late);
        if (r < 0)
                return verr_set(e, r, "user '%s' is detached, but looking for what uid %u left failed: %s", name,
                                uid, strerror(-r));
        if (early) {
                /* Counts add up; what is left is what the last pass found. */
                late.processes_ended += report->processes_ended;
                late.ipc_removed += report->ipc_removed;
                late.files_removed += report->files_removed;
                late.dirs_removed += report->dirs_removed;
        }
        uid_cleanup_report_done(report);
        *report = late;
        bool dirty = uid_cleanup_report_dirty(report);
        if (dirty)
                (void) uid_quarantine_set(userdb_state_fd(a->db), uid, true);
        audit_detached(name, uid, report, dirty);
        return dirty;
}

static int detach_reply(const char *name, uint32_t uid, const struct uid_cleanup_report *report, bool dirty,
                        json_object **ret) {
        _cleanup_json_ json_object *reply = json_object_new_object();
        json_object *cleanup = cleanup_to_json(report, dirty);

        if (!reply || !cleanup) {
                json_object_put(cleanup);
                return -ENOMEM;
        }
        json_object_object_add(reply, "userName", json_object_new_string(name));
        json_object_object_add(reply, "uid", json_object_new_int64(uid));
        json_object_object_add(reply, "cleanup", cleanup);
        *ret = TAKE_PTR(reply);
        return 0;
}

int agent_detach(struct agent *a, const char *name, bool force, json_object **ret, struct verr *e) {
        _cleanup_(session_lock_releasep) struct session_lock *l = NULL;
        _cleanup_(uid_cleanup_report_done) struct uid_cleanup_report report = {};
        _cleanup_close_ int lock_fd = -1, users_fd = -1;
        struct attach_state s, removed;
        bool early = false;
        int r, sessions;

        r = mark_detaching(a, name, &lock_fd, &users_fd, &s, e);
        if (r < 0) {
                unmark_detaching(a, name, -1);
                return r;
        }
        r = lock_sessions(userdb_state_fd(a->db), name, &l, e);
        if (r < 0)
                goto undo;
        sessions = count_sessions(&s, l, name, force, e);
        if (sessions < 0) {
                r = sessions;
                goto undo;
        }
        r = end_user(a, name, &s, l, sessions, force, &report, &early, e);
        if (r < 0)
                goto undo;
        r = userdb_detach_locked(a->db, name, &removed, e);
        if (r < 0)
                goto undo;
        agent_userdb_changed(a, name);
        unmark_detaching(a, name, -1);

        r = clean_uid(a, name, removed.uid, &report, early, e);
        if (r < 0)
                return r;
        return detach_reply(name, removed.uid, &report, r > 0, ret);

undo:
        unmark_detaching(a, name, users_fd);
        return r;
}
