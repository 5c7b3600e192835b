/* pam_vmuser.c: the PAM session module that mounts a vmuser-attached user's home in the guest.
 *
 * open_session: is the user attached? The attach state is /run/vmuser/users/NAME.json when that
 * exists (vmuser-agent --userdb=dropin), else vmuser-agent's answer to io.vmuser.GetAttachState on
 * its userdb socket (varlink, the default; attach-state-client.c: a root listener, a bounded
 * reply, a deadline). If not attached (no file, NoSuchUser, no socket), PAM_IGNORE before
 * touching anything; if it is, /run/vmuser and its users/ must be root's
 * and writable by nobody else, or the session fails. Otherwise lock /run/vmuser/sessions/NAME, prune
 * the entries of sessions whose process died without a close, record this process's session
 * (before mounting: vmuser-agent watches each entry's process and unmounts the home of a user
 * whose sessions all died without a close), mount the home unless it is mounted already (a
 * virtio-fs tag that is not there yet is waited for, up to tag_wait, with the lock dropped
 * between tries: vmuser attach plugs the share in a second or two after it pushed the record),
 * unlock.
 * close_session: lock, remove this process's entry, prune, and unmount when no live session is
 * left (lazily if the home is busy).
 * The work lives in libvmuser (attach-state.c, attach-state-client.c, session-track.c,
 * mount-home.c); this file parses
 * the module arguments, translates -errno into PAM_* codes, and logs each failure once, naming
 * the value at fault. See man/pam_vmuser.8.scd. */
#define PAM_SM_SESSION

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <security/pam_ext.h>
#include <security/pam_modules.h>
#include <security/pam_modutil.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>

#include "attach-state-client.h"
#include "audit-log.h"
#include "macro.h"
#include "mount-home.h"
#include "names.h"
#include "paths.h"
#include "session-track.h"
#include "time-util.h"
#include "verr.h"

#define LOCK_TIMEOUT_SEC_MAX 300u
#define TAG_WAIT_SEC_MAX 300u
/* vmuser attach pushes the record, then plugs the share in: the tag shows up 1-3 s later. */
#define TAG_WAIT_MSEC_DEFAULT 20000u
#define TAG_WAIT_POLL_MSEC 250u

struct args {
        bool debug;
        bool nofail;
        unsigned lock_timeout_msec;
        unsigned tag_wait_msec;
};

/* "NAME=SECONDS" with SECONDS in min..max: *ret_msec set, true. Otherwise false (logged). */
static bool parse_seconds(pam_handle_t *pamh, const char *arg, size_t prefix_len, unsigned min, unsigned max,
                          unsigned *ret_msec) {
        const char *v = arg + prefix_len;
        unsigned long sec;
        char *end;

        errno = 0;
        sec = strtoul(v, &end, 10);
        if (errno != 0 || end == v || *end || *v == '-' || sec < min || sec > max) {
                pam_syslog(pamh, LOG_WARNING, "Invalid %.*s '%s' (%u..%u seconds), ignoring.", (int) prefix_len - 1, arg,
                           v, min, max);
                return false;
        }
        *ret_msec = (unsigned) sec * 1000u;
        return true;
}

static void parse_args(pam_handle_t *pamh, int argc, const char **argv, struct args *ret) {
        struct args a = {
                .lock_timeout_msec = SESSION_LOCK_TIMEOUT_MSEC_DEFAULT,
                .tag_wait_msec = TAG_WAIT_MSEC_DEFAULT,
        };

        for (int i = 0; i < argc; i++) {
                if (streq(argv[i], "debug"))
                        a.debug = true;
                else if (streq(argv[i], "nofail"))
                        a.nofail = true;
                else if (strncmp(argv[i], "lock_timeout=", 13) == 0)
                        (void) parse_seconds(pamh, argv[i], 13, 1, LOCK_TIMEOUT_SEC_MAX, &a.lock_timeout_msec);
                else if (strncmp(argv[i], "tag_wait=", 9) == 0)
                        (void) parse_seconds(pamh, argv[i], 9, 0, TAG_WAIT_SEC_MAX, &a.tag_wait_msec);
                else
                        pam_syslog(pamh, LOG_WARNING, "Unknown option '%s', ignoring.", argv[i]);
        }
        *ret = a;
}

static const char *errno_text(int r) {
        return strerror(r < 0 ? -r : r);
}

/* A failure that stops the home from being there: logged, told to the user, and fatal for the
 * session unless nofail. */
static int open_failed(pam_handle_t *pamh, const struct args *a, int flags, const char *user,
                       const char *fmt, ...) _printf_(5, 6);
static int open_failed(pam_handle_t *pamh, const struct args *a, int flags, const char *user,
                       const char *fmt, ...) {
        char reason[768];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(reason, sizeof(reason), fmt, ap);
        va_end(ap);

        pam_syslog(pamh, a->nofail ? LOG_WARNING : LOG_ERR, "Cannot provide the home of %s: %s%s", user,
                   reason, a->nofail ? " (nofail: the session goes on without it)" : "");
        if (!(flags & PAM_SILENT))
                pam_error(pamh, "%s: %s",
                          a->nofail ? "Your home directory is not available"
                                    : "Cannot mount your home directory",
                          reason);
        return a->nofail ? PAM_IGNORE : PAM_SESSION_ERR;
}

/* The attach state decides what gets mounted where, as root: it must come from a directory only
 * root can change. 0, or -EPERM/-ENOTDIR with the reason in e. dir_fd is the directory itself
 * (name NULL) or its parent. A missing entry is not our business here (-ENOENT passes as 0). */
static int check_root_dir(int dir_fd, const char *name, const char *shown, struct verr *e) {
        struct stat st;

        if (name ? fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 : fstat(dir_fd, &st) < 0)
                return errno == ENOENT ? 0 : verr_set(e, -errno, "cannot check %s: %s", shown, strerror(errno));
        if (!S_ISDIR(st.st_mode))
                return verr_set(e, -ENOTDIR, "%s is not a directory; refusing to trust it", shown);
        if (st.st_uid != 0 || (st.st_mode & 0022))
                return verr_set(e, -EPERM,
                                "%s belongs to UID %u with mode %04o; it must be root's and writable by nobody "
                                "else: refusing to trust it",
                                shown, (unsigned) st.st_uid, (unsigned) (st.st_mode & 07777));
        return 0;
}

/* The reason a state could not be had, in e: the agent's answer (attach_state_lookup() said why
 * in e already) or the state file. */
static void state_error(struct verr *e, const char *user, int r) {
        char why[sizeof(e->text)];

        if (e->text[0]) {
                snprintf(why, sizeof(why), "%s", e->text);
                e->text[0] = '\0';
                verr_set(e, r, "cannot ask vmuser-agent on '%s' for the attach state: %s", VMUSER_VARLINK_SOCKET, why);
        } else
                verr_set(e, r, "cannot read '%s/%s/%s.json': %s", VMUSER_STATE_DIR, VMUSER_USERS_SUBDIR, user,
                         r == -EBADMSG ? "not a valid attach state" : errno_text(r));
}

/* Common start of both entry points: finds the user and whether vmuser attached it.
 * PAM_SUCCESS with *ret_state filled when it did, PAM_IGNORE when the user is none of ours
 * (nothing touched, nothing logged but at debug level), PAM_SESSION_ERR with the reason in e
 * (for the caller to log) when we cannot tell. *ret_user is set in every case but the first
 * PAM_IGNORE. */
static int lookup_attached_user(pam_handle_t *pamh, const struct args *a, const char **ret_user,
                                int *ret_state_fd, struct attach_state *ret_state, struct verr *e) {
        _cleanup_close_ int state_fd = -1;
        const void *item = NULL;
        const struct passwd *pw;
        const char *user;
        int r;

        /* systemd's user manager opens a PAM session of its own ("systemd-user") and closes it
         * from its (sd-pam) helper after dropping privileges, or not at all: tracking it would
         * keep the home mounted long after the last login. It is not a login; leave it out. */
        if (pam_get_item(pamh, PAM_SERVICE, &item) == PAM_SUCCESS && item && streq(item, "systemd-user")) {
                if (a->debug)
                        pam_syslog(pamh, LOG_DEBUG, "The systemd user manager is not a login; ignoring.");
                return PAM_IGNORE;
        }

        /* Not pam_get_user(): a session stack must not prompt. */
        r = pam_get_item(pamh, PAM_USER, &item);
        user = item;
        if (r != PAM_SUCCESS || !user || !*user) {
                pam_syslog(pamh, LOG_WARNING, "No user name set for this session; ignoring it.");
                return PAM_IGNORE;
        }
        *ret_user = user;
        if (!name_is_valid(user)) {
                if (a->debug)
                        pam_syslog(pamh, LOG_DEBUG, "'%s' cannot be a vmuser name; ignoring.", user);
                return PAM_IGNORE;
        }

        state_fd = open(VMUSER_STATE_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (state_fd < 0 && errno == ENOENT) {
                if (a->debug)
                        pam_syslog(pamh, LOG_DEBUG, "%s does not exist: no user is attached.",
                                   VMUSER_STATE_DIR);
                return PAM_IGNORE;
        }
        if (state_fd < 0) {
                verr_set(e, -errno, "cannot open %s: %s", VMUSER_STATE_DIR, strerror(errno));
                return PAM_SESSION_ERR;
        }

        /* An account of /etc/passwd (root on the console) is never one the agent attached (it
         * refuses names that resolve already): its state file, if any, is read, but the agent is
         * not asked, so that a stuck agent cannot hold up or fail a local login. */
        if (pam_modutil_check_user_in_passwd(pamh, user, NULL) == PAM_SUCCESS)
                r = attach_state_read(state_fd, user, ret_state);
        else
                r = attach_state_lookup(state_fd, VMUSER_VARLINK_SOCKET, user, ret_state, e);
        if (r == -ENOENT) {
                if (a->debug)
                        pam_syslog(pamh, LOG_DEBUG, "%s is not attached by vmuser; ignoring.", user);
                return PAM_IGNORE;
        }
        /* Only now: a user who is not attached (root on the console) is never refused for it. */
        if (check_root_dir(state_fd, NULL, "'" VMUSER_STATE_DIR "'", e) < 0 ||
            check_root_dir(state_fd, VMUSER_USERS_SUBDIR, "'" VMUSER_STATE_DIR "/" VMUSER_USERS_SUBDIR "'", e) < 0)
                return PAM_SESSION_ERR;
        if (r < 0) {
                state_error(e, user, r);
                return PAM_SESSION_ERR;
        }

        /* Mid-detach the records may already be gone from NSS: the caller decides (open refuses,
         * close goes on), not the NSS check below. */
        if (ret_state->detaching) {
                *ret_state_fd = TAKE_FD(state_fd);
                return PAM_SUCCESS;
        }

        /* A local account of the same name shadowing the attached one must not get its home. */
        pw = pam_modutil_getpwnam(pamh, user);
        if (!pw || pw->pw_uid != ret_state->uid) {
                /* A detach may have removed the records since the state was read: then this is a
                 * user going away (the caller refuses an open), not somebody else's account. */
                struct attach_state now;
                struct verr ignored = {};
                int k = attach_state_lookup(state_fd, VMUSER_VARLINK_SOCKET, user, &now, &ignored);
                if (k == -ENOENT || (k >= 0 && now.detaching)) {
                        ret_state->detaching = true;
                        *ret_state_fd = TAKE_FD(state_fd);
                        return PAM_SUCCESS;
                }
        }
        if (!pw) {
                pam_syslog(pamh, LOG_WARNING,
                           "%s is attached by vmuser but does not resolve through NSS; ignoring.", user);
                return PAM_IGNORE;
        }
        if (pw->pw_uid != ret_state->uid) {
                pam_syslog(pamh, LOG_WARNING, "%s resolves to UID %u, but vmuser attached UID %u; ignoring.", user,
                           (unsigned) pw->pw_uid, (unsigned) ret_state->uid);
                return PAM_IGNORE;
        }

        *ret_state_fd = TAKE_FD(state_fd);
        return PAM_SUCCESS;
}

static const char *lock_error_text(int r) {
        switch (r) {
        case -ETIMEDOUT:
                return "another login or logout of this user holds the lock for too long";
        case -EPERM:
                return "the directory is not root's or is writable by others";
        case -ENOTDIR:
                return "it is not a directory (a symlink?)";
        default:
                return errno_text(r);
        }
}

static const char *count_error_text(int r) {
        return r == -ENOMEDIUM ? "/proc is not mounted" : errno_text(r);
}

/* The audit entry of a mount or unmount (MESSAGE_ID, fields in pam_vmuser(8)). Without journald
 * (no native socket) it fails, and the caller logs the same sentence through syslog instead. */
static int audit_home(pam_handle_t *pamh, const char *message_id, int priority, const struct attach_state *s,
                      const char *how, const char *message) {
        const void *service = NULL;
        char *f[8] = {};
        size_t n = 0;
        int r;

        if (pam_get_item(pamh, PAM_SERVICE, &service) != PAM_SUCCESS || !service)
                service = "pam_vmuser";
        f[n++] = audit_field("VMUSER_USER", "%s", s->user_name);
        f[n++] = audit_field("VMUSER_UID", "%u", s->uid);
        f[n++] = audit_field("VMUSER_HOME", "%s", s->home_directory);
        f[n++] = audit_field("VMUSER_HOME_TAG", "%s", s->home.tag);
        f[n++] = audit_field("VMUSER_FSTYPE", "%s", home_fstype_to_string(s->home.fstype));
        f[n++] = audit_field("VMUSER_PAM_SERVICE", "%s", (const char *) service);
        if (how)
                f[n++] = audit_field("VMUSER_UNMOUNT", "%s", how);
        bool oom = false;
        for (size_t i = 0; i < n; i++)
                oom = oom || !f[i];
        r = oom ? -ENOMEM : audit_log((const char *) service, message_id, priority, (const char *const *) f, "%s", message);
        for (size_t i = 0; i < n; i++)
                free(f[i]);
        return r;
}

/* The user is being (or was just) detached by vmuser-agent: the session is refused, nofail or not
 * (the agent ends every process of the UID when the detach completes). */
static int refuse_detaching(pam_handle_t *pamh, int flags, const char *user) {
        pam_syslog(pamh, LOG_NOTICE, "Refusing a session of %s: vmuser is detaching the user from this guest.", user);
        if (!(flags & PAM_SILENT))
                pam_error(pamh, "Your account is being removed from this machine (vmuser detach); no new "
                                "sessions are accepted.");
        return PAM_SESSION_ERR;
}

/* One opening session, between its steps. */
struct open_session {
        pam_handle_t *pamh;
        int flags;
        const struct args *a;
        const char *user;
        int state_fd;
        struct attach_state state;
        struct session_lock *lock; /* held from lock_and_record() on */
        int live;                  /* other live sessions of the user */
        int added;                 /* 1 when this process's entry was recorded */
        uid_t root_uid;            /* owner of the mounted home's root */
        struct verr e;
};

static void session_forget(struct open_session *o) {
        if (o->added > 0)
                (void) session_remove(o->lock, getpid());
        o->added = 0;
}

/* Step 1: take the user's session lock, read the attach state again under it (the agent may have
 * detached or replaced the user since the look-up), prune dead entries and record this process.
 * PAM_SUCCESS to go on, or the session's result. Recorded before the mount: a process killed
 * between the two leaves an entry whose process is dead, which the agent's reaper sees end,
 * never a mount that no entry accounts for. */
static int lock_and_record(struct open_session *o) {
        int r = session_lock_acquire_timeout(o->state_fd, o->user, true, o->a->lock_timeout_msec, &o->lock);
        if (r < 0) {
                /* The agent holds the lock through a whole detach: not a case for nofail. */
                struct attach_state now;
                struct verr ignored = {};
                int k = attach_state_lookup(o->state_fd, VMUSER_VARLINK_SOCKET, o->user, &now, &ignored);
                if (k == -ENOENT || (k >= 0 && now.detaching))
                        return refuse_detaching(o->pamh, o->flags, o->user);
                return open_failed(o->pamh, o->a, o->flags, o->user, "cannot lock '%s/%s/%s': %s", VMUSER_STATE_DIR,
                                   VMUSER_SESSIONS_SUBDIR, o->user, lock_error_text(r));
        }
        /* A user that is gone or going must not get a session (nor a home). */
        o->e.text[0] = '\0';
        r = attach_state_lookup(o->state_fd, VMUSER_VARLINK_SOCKET, o->user, &o->state, &o->e);
        if (r == -ENOENT || (r >= 0 && o->state.detaching))
                return refuse_detaching(o->pamh, o->flags, o->user);
        if (r < 0) {
                state_error(&o->e, o->user, r);
                return open_failed(o->pamh, o->a, o->flags, o->user, "cannot read its attach state again: %s",
                                   verr_text(&o->e, r));
        }
        o->live = session_prune_and_count(o->lock);
        if (o->live < 0)
                return open_failed(o->pamh, o->a, o->flags, o->user, "cannot count its sessions: %s",
                                   count_error_text(o->live));
        o->added = session_add(o->lock, getpid());
        if (o->added < 0)
                return open_failed(o->pamh, o->a, o->flags, o->user,
                                   "cannot record the session of process %d in '%s/%s/%s': %s", (int) getpid(),
                                   VMUSER_STATE_DIR, VMUSER_SESSIONS_SUBDIR, o->user, count_error_text(o->added));
        return PAM_SUCCESS;
}

/* Step 2, looped with step 1: mount the home unless it is mounted already (the first live session
 * mounts, later ones find it there, or mount it if an earlier nofail session could not). A
 * virtio-fs tag that is not there yet (-ENXIO: vmuser attach plugs the share in after pushing the
 * record) is waited for, up to tag_wait, WITHOUT the lock: other logins and logouts of the user,
 * and the agent, must not wait behind us. PAM_SUCCESS with the mount's result in *ret_mount (or
 * no mount: the user has no home share), or the session's result; the lock is held on success. */
static int record_and_mount(struct open_session *o, int *ret_mount) {
        uint64_t start = now_ms();
        bool told = false;

        for (;;) {
                int q = lock_and_record(o);
                if (q != PAM_SUCCESS)
                        return q;
                if (!o->state.has_home) {
                        *ret_mount = 0;
                        return PAM_SUCCESS;
                }
                o->e.text[0] = '\0';
                int r = mount_home(o->state.home_directory, &o->state.home, o->state.uid, o->state.gid, &o->root_uid,
                                   &o->e);
                uint64_t waited = now_ms() - start;
                if (r != -ENXIO || waited >= o->a->tag_wait_msec) {
                        if (told && r >= 0)
                                pam_syslog(o->pamh, LOG_INFO, "The virtio-fs tag '%s' of %s showed up after %.1f s.",
                                           o->state.home.tag, o->user, waited / 1000.0);
                        else if (told) {
                                size_t n = strlen(o->e.text);
                                snprintf(o->e.text + n, sizeof(o->e.text) - n, "; waited %.1f s", waited / 1000.0);
                        }
                        *ret_mount = r;
                        return PAM_SUCCESS;
                }
                /* No entry while we wait without the lock: nothing is mounted for it. */
                session_forget(o);
                o->lock = session_lock_release(o->lock);
                if (!told) {
                        pam_syslog(o->pamh, LOG_INFO, "The virtio-fs tag '%s' of %s is not there yet; waiting up to %u s.",
                                   o->state.home.tag, o->user, o->a->tag_wait_msec / 1000u);
                        if (!(o->flags & PAM_SILENT))
                                pam_info(o->pamh, "Waiting up to %u s for your home directory to be shared by the host...",
                                         o->a->tag_wait_msec / 1000u);
                        told = true;
                }
                struct timespec ts = { .tv_nsec = TAG_WAIT_POLL_MSEC * 1000000L };
                nanosleep(&ts, NULL);
        }
}

/* Step 3: say what the mount did. PAM_SUCCESS (with nofail also after a failed mount: the
 * session goes on, its entry kept), or the failure's result with the entry removed. */
static int report_mount(struct open_session *o, int r) {
        if (r < 0) {
                int q = open_failed(o->pamh, o->a, o->flags, o->user, "%s", verr_text(&o->e, r));
                if (o->a->nofail)
                        return PAM_SUCCESS;
                session_forget(o);
                return q;
        }

        char text[2 * HOME_PATH_MAX + 128];
        snprintf(text, sizeof(text), "Mounted %s '%s' on '%s' for %s.", home_fstype_to_string(o->state.home.fstype),
                 o->state.home.tag, o->state.home_directory, o->user);
        if (r == MOUNT_HOME_MOUNTED) {
                if (audit_home(o->pamh, AUDIT_PAM_MOUNTED, LOG_INFO, &o->state, NULL, text) < 0)
                        pam_syslog(o->pamh, LOG_INFO, "%s", text);
        } else if (o->a->debug)
                pam_syslog(o->pamh, LOG_DEBUG, "'%s' is mounted already (%d live session%s).", o->state.home_directory,
                           o->live, o->live == 1 ? "" : "s");
        if (o->root_uid != o->state.uid)
                pam_syslog(o->pamh, LOG_WARNING,
                           "The root of the home '%s' belongs to UID %u, but %s has UID %u; check the ID mapping of "
                           "the share on the host.",
                           o->state.home_directory, (unsigned) o->root_uid, o->user, (unsigned) o->state.uid);
        return PAM_SUCCESS;
}

PAM_EXTERN int pam_sm_open_session(pam_handle_t *pamh, int flags, int argc, const char **argv) {
        _cleanup_(session_lock_releasep) struct session_lock *lock = NULL;
        _cleanup_close_ int state_fd = -1;
        struct args a;
        struct open_session o = { .pamh = pamh, .flags = flags, .a = &a, .state_fd = -1 };
        int r, q, mount_r;

        parse_args(pamh, argc, argv, &a);
        r = lookup_attached_user(pamh, &a, &o.user, &state_fd, &o.state, &o.e);
        if (r == PAM_SESSION_ERR)
                return open_failed(pamh, &a, flags, o.user, "%s", verr_text(&o.e, -EIO));
        if (r != PAM_SUCCESS)
                return r;
        o.state_fd = state_fd;

        if (o.state.detaching)
                return refuse_detaching(pamh, flags, o.user);

        if (geteuid() != 0) {
                pam_syslog(pamh, LOG_WARNING,
                           "Running as UID %u, not root: cannot mount the home of %s or track its "
                           "session; skipping.",
                           (unsigned) geteuid(), o.user);
                return PAM_IGNORE;
        }

        q = record_and_mount(&o, &mount_r);
        lock = TAKE_PTR(o.lock); /* released when this returns, whatever the result */
        o.lock = lock;
        if (q != PAM_SUCCESS)
                return q;
        if (o.state.has_home) {
                q = report_mount(&o, mount_r);
                if (q != PAM_SUCCESS)
                        return q;
        }

        if (a.debug)
                pam_syslog(pamh, LOG_DEBUG, "Session of %s in process %d recorded; %d live session%s.", o.user,
                           (int) getpid(), o.live + o.added, o.live + o.added == 1 ? "" : "s");
        return PAM_SUCCESS;
}

PAM_EXTERN int pam_sm_close_session(pam_handle_t *pamh, int flags, int argc, const char **argv) {
        _cleanup_(session_lock_releasep) struct session_lock *lock = NULL;
        _cleanup_close_ int state_fd = -1;
        struct attach_state state;
        struct verr e = {};
        struct args a;
        const char *user = NULL;
        int r, live;

        parse_args(pamh, argc, argv, &a);
        r = lookup_attached_user(pamh, &a, &user, &state_fd, &state, &e);
        if (r == PAM_SESSION_ERR)
                pam_syslog(pamh, LOG_ERR, "Cannot close the session of %s: %s", user, verr_text(&e, -EIO));
        if (r != PAM_SUCCESS)
                return r;

        /* An application that dropped privileges before closing cannot change root's state; it
         * must not try, and the process's entry is pruned once it exits. */
        if (geteuid() != 0) {
                pam_syslog(pamh, LOG_WARNING,
                           "Running as UID %u, not root: leaving the session state and home of %s alone.",
                           (unsigned) geteuid(), user);
                return PAM_IGNORE;
        }

        /* create: an open racing with this close must wait for it, not miss it. */
        r = session_lock_acquire_timeout(state_fd, user, true, a.lock_timeout_msec, &lock);
        if (r < 0) {
                pam_syslog(pamh, LOG_ERR, "Cannot lock '%s/%s/%s': %s", VMUSER_STATE_DIR,
                           VMUSER_SESSIONS_SUBDIR, user, lock_error_text(r));
                return PAM_SESSION_ERR;
        }

        r = session_remove(lock, getpid());
        if (r < 0) {
                pam_syslog(pamh, LOG_ERR, "Cannot remove the session of process %d of %s: %s",
                           (int) getpid(), user, count_error_text(r));
                return PAM_SESSION_ERR;
        }
        if (r == 0 && a.debug)
                pam_syslog(pamh, LOG_DEBUG, "Process %d had no session of %s recorded.", (int) getpid(),
                           user);

        live = session_prune_and_count(lock);
        if (live < 0) {
                pam_syslog(pamh, LOG_ERR, "Cannot count the sessions of %s: %s", user,
                           count_error_text(live));
                return PAM_SESSION_ERR;
        }
        if (live > 0 || !state.has_home) {
                if (a.debug)
                        pam_syslog(pamh, LOG_DEBUG, "%d live session%s of %s left.", live,
                                   live == 1 ? "" : "s", user);
                return PAM_SUCCESS;
        }

        char text[HOME_PATH_MAX + VMUSER_NAME_MAX + 96];
        r = unmount_home(state.home_directory, &state.home, &e);
        switch (r) {
        case UNMOUNT_HOME_NOT_MOUNTED:
                if (a.debug)
                        pam_syslog(pamh, LOG_DEBUG, "Last session of %s closed; '%s' was not mounted.", user,
                                   state.home_directory);
                return PAM_SUCCESS;
        case UNMOUNT_HOME_UNMOUNTED:
                snprintf(text, sizeof(text), "Last session of %s closed; unmounted '%s'.", user, state.home_directory);
                if (audit_home(pamh, AUDIT_PAM_UNMOUNTED, LOG_INFO, &state, "clean", text) < 0)
                        pam_syslog(pamh, LOG_INFO, "%s", text);
                return PAM_SUCCESS;
        case UNMOUNT_HOME_DETACHED:
                snprintf(text, sizeof(text), "Last session of %s closed, but '%s' was busy; detached it lazily.", user,
                         state.home_directory);
                if (audit_home(pamh, AUDIT_PAM_UNMOUNTED, LOG_WARNING, &state, "lazy", text) < 0)
                        pam_syslog(pamh, LOG_WARNING, "%s", text);
                return PAM_SUCCESS;
        default:
                pam_syslog(pamh, LOG_ERR, "Last session of %s closed, but the home stays mounted: %s", user,
                           verr_text(&e, r));
                return PAM_SESSION_ERR;
        }
}
