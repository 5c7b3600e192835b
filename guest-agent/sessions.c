/* sessions.c: what the agent needs to know and do about logins of attached users.
 *
 * Sessions are counted from two sources: pam_vmuser's tracking directory (works everywhere) and
 * logind via sd-login (catches sessions that did not go through pam_vmuser). A forced detach
 * asks logind to terminate the user (sd-bus, TerminateUser), signals the tracked session
 * processes, then unmounts the home. Every detach also waits for logind to let go of the user
 * (its user manager lingers after the last logout) before the records go. Mounts belong to the login namespace: under systemd the
 * agent runs in a namespace of its own (ProtectSystem=), so with --host-mounts it asks systemd to
 * stop the home's mount unit and reads PID 1's mountinfo to see it gone. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-login.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "macro.h"
#include "mount-home.h"
#include "session-track.h"

int agent_user_session_count(struct agent *a, const struct attach_state *s) {
        _cleanup_(session_lock_releasep) struct session_lock *l = NULL;
        int tracked = 0, logind;
        int r;

        r = session_lock_acquire(userdb_state_fd(a->db), s->user_name, false, &l);
        if (r >= 0)
                tracked = session_prune_and_count(l);
        else if (r != -ENOENT)
                tracked = r;

        logind = sd_uid_get_sessions(s->uid, 0, NULL);
        if (logind < 0)
                logind = 0; /* no logind here (tests, containers): the tracked count stands */
        if (tracked < 0)
                return logind > 0 ? logind : tracked;
        return tracked > logind ? tracked : logind;
}

static int collect_pid(pid_t pid, void *userdata) {
        pid_t *pids = userdata;
        for (int i = 0; i < 64; i++)
                if (pids[i] == 0) {
                        pids[i] = pid;
                        return 0;
                }
        return 0;
}

static bool pid_alive(pid_t pid) {
        return kill(pid, 0) == 0 || errno == EPERM;
}

static int logind_terminate_user(const struct attach_state *s, struct verr *e) {
        sd_bus *bus = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_open_system(&bus);
        if (r >= 0)
                r = sd_bus_call_method(bus, "org.freedesktop.login1", "/org/freedesktop/login1",
                                       "org.freedesktop.login1.Manager", "TerminateUser", &error, NULL, "u",
                                       (uint32_t) s->uid);
        if (r < 0)
                verr_set(e, r, "asking logind to terminate user '%s' failed: %s", s->user_name,
                         error.message ? error.message : strerror(-r));
        sd_bus_error_free(&error);
        sd_bus_flush_close_unref(bus);
        return r;
}

/* True while logind still tracks the user (sessions, or a user manager that lingers for a few
 * seconds after the last logout). */
static bool logind_knows_user(uid_t uid) {
        char *state = NULL;
        int r = sd_uid_get_state(uid, &state);
        bool known = r >= 0 && state && strcmp(state, "offline") != 0;
        free(state);
        return known;
}

/* True while the user's slice (sessions and user@UID.service) has a cgroup. Without cgroup v2
 * in the usual place, fall back to asking logind. */
static bool user_slice_exists(uid_t uid) {
        char path[128];

        if (access("/sys/fs/cgroup/user.slice", F_OK) < 0)
                return logind_knows_user(uid);
        snprintf(path, sizeof(path), "/sys/fs/cgroup/user.slice/user-%u.slice", (unsigned) uid);
        return access(path, F_OK) == 0;
}

int agent_release_user_manager(struct agent *a, const struct attach_state *s, struct verr *e) {
        int r;

        /* user@UID.service outlives the last session by a few seconds; its records must outlive
         * it, or stopping it hangs until its timeout (and with it, a guest's poweroff). logind
         * itself keeps the user "closing" for a while after everything stopped: what counts is
         * that the user's slice is gone. */
        if (!logind_knows_user(s->uid) && !user_slice_exists(s->uid))
                return 0;
        r = logind_terminate_user(s, e);
        if (r < 0 && logind_knows_user(s->uid))
                return r;
        for (int i = 0; i < 200 && user_slice_exists(s->uid); i++)
                usleep(50 * 1000);
        if (user_slice_exists(s->uid))
                return verr_set(e, -ETIMEDOUT, "the processes of user '%s' did not end within 10 s", s->user_name);
        return 0;
}

int agent_terminate_sessions(struct agent *a, const struct attach_state *s, struct verr *e) {
        pid_t pids[64] = {};
        int r;

        {
                _cleanup_(session_lock_releasep) struct session_lock *l = NULL;
                r = session_lock_acquire(userdb_state_fd(a->db), s->user_name, false, &l);
                if (r >= 0)
                        (void) session_foreach(l, collect_pid, pids);
        }

        if (sd_uid_get_sessions(s->uid, 0, NULL) > 0) {
                r = logind_terminate_user(s, e);
                if (r < 0)
                        return r;
        }

        for (int i = 0; i < 64 && pids[i]; i++)
                (void) kill(pids[i], SIGTERM);
        for (int round = 0; round < 40; round++) {
                bool any = false;
                for (int i = 0; i < 64 && pids[i]; i++)
                        any = any || pid_alive(pids[i]);
                if (!any)
                        break;
                if (round == 30)
                        for (int i = 0; i < 64 && pids[i]; i++)
                                (void) kill(pids[i], SIGKILL);
                usleep(50 * 1000);
        }
        return 0;
}

int agent_path_is_mounted(struct agent *a, const char *path) {
        _cleanup_fclose_ FILE *f = fopen(a->config.host_mounts ? "/proc/1/mountinfo" : "/proc/self/mountinfo", "re");
        char line[4096];

        if (!f)
                return negative_errno();
        while (fgets(line, sizeof(line), f)) {
                /* "ID PARENT MAJ:MIN ROOT MOUNTPOINT ..." — paths we accept have no spaces. */
                char *p = line;
                for (int field = 0; field < 4 && p; field++) {
                        p = strchr(p, ' ');
                        if (p)
                                p++;
                }
                if (!p)
                        continue;
                size_t n = strlen(path);
                if (strncmp(p, path, n) == 0 && p[n] == ' ')
                        return 1;
        }
        return 0;
}

static int unmount_here(const char *path) {
        for (int i = 0; i < 8; i++) {
                if (umount2(path, UMOUNT_NOFOLLOW) == 0)
                        continue;
                if (errno == EINVAL || errno == ENOENT)
                        return 0; /* not (or no longer) a mount point */
                if (errno != EBUSY)
                        return negative_errno();
                if (umount2(path, UMOUNT_NOFOLLOW | MNT_DETACH) < 0)
                        return negative_errno();
        }
        return 0;
}

/* The home lives in PID 1's mount namespace, ours is a private one (ProtectSystem=). Rather than
 * joining PID 1's namespace (which needs CAP_SYS_PTRACE to open /proc/1/ns/mnt), ask systemd,
 * which owns every mount as a unit, to stop the mount unit, and wait for it to go. */
static int unmount_via_systemd(struct agent *a, const struct attach_state *s, struct verr *e) {
        sd_bus *bus = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        char unit[512], job[256] = "";
        const char *path = NULL;
        int r;

        r = mount_unit_name(s->home_directory, unit, sizeof(unit));
        if (r < 0)
                return verr_set(e, r, "home directory '%s' has no mount unit name", s->home_directory);
        r = sd_bus_open_system(&bus);
        if (r >= 0)
                r = sd_bus_call_method(bus, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                       "org.freedesktop.systemd1.Manager", "StopUnit", &error, &reply, "ss", unit,
                                       "replace");
        if (r >= 0 && sd_bus_message_read(reply, "o", &path) > 0 && path)
                snprintf(job, sizeof(job), "%s", path);
        sd_bus_message_unref(reply);
        if (r < 0)
                verr_set(e, r, "asking systemd to stop '%s' failed: %s", unit, error.message ? error.message : strerror(-r));
        sd_bus_error_free(&error);
        if (r < 0) {
                sd_bus_flush_close_unref(bus);
                return r;
        }
        for (int i = 0; i < 200; i++) {
                uint32_t id;

                r = agent_path_is_mounted(a, s->home_directory);
                if (r <= 0)
                        break;
                /* The stop job is over but the home is still there: systemd's umount failed
                 * (busy). Say so now rather than after the whole wait. */
                if (job[0] && i > 0 &&
                    sd_bus_get_property_trivial(bus, "org.freedesktop.systemd1", job, "org.freedesktop.systemd1.Job",
                                                "Id", &error, 'u', &id) < 0 &&
                    (sd_bus_error_has_name(&error, "org.freedesktop.DBus.Error.UnknownObject") ||
                     sd_bus_error_has_name(&error, "org.freedesktop.DBus.Error.UnknownMethod"))) {
                        sd_bus_error_free(&error);
                        r = agent_path_is_mounted(a, s->home_directory);
                        if (r > 0)
                                r = verr_set(e, -EBUSY, "systemd could not unmount '%s' (%s); it is in use",
                                             s->home_directory, unit);
                        break;
                }
                sd_bus_error_free(&error);
                usleep(50 * 1000);
        }
        sd_bus_flush_close_unref(bus);
        if (r < 0) /* keeps the reason set above, if any */
                return verr_set(e, r, "checking whether '%s' is mounted failed: %s", s->home_directory, strerror(-r));
        if (r > 0)
                return verr_set(e, -EBUSY, "systemd did not unmount '%s' (%s) within 10 s; it is still in use",
                                s->home_directory, unit);
        return 0;
}

int agent_unmount_home(struct agent *a, const struct attach_state *s, struct verr *e) {
        int r;

        if (a->config.host_mounts) {
                r = agent_path_is_mounted(a, s->home_directory);
                if (r < 0)
                        return verr_set(e, r, "checking whether '%s' is mounted failed: %s", s->home_directory,
                                        strerror(-r));
                return r == 0 ? 0 : unmount_via_systemd(a, s, e);
        }
        r = unmount_here(s->home_directory);
        return r < 0 ? verr_set(e, r, "unmounting '%s' failed: %s", s->home_directory, strerror(-r)) : 0;
}
