/* virtiofsd-internal.h: what the parts of the virtiofsd code share and nobody else uses.
 *
 * virtiofsd.c (start, state, stop) is the entry; it picks a supervisor and calls
 * virtiofsd-daemon.c (our own supervisor, and through it virtiofsd-userns.c for an unprivileged
 * start) or virtiofsd-systemd.c (a transient unit); virtiofsd-binary.c finds the binary and
 * builds its command line. Callers outside these files include virtiofsd.h only. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "virtiofsd.h"

#define DETECT_TIMEOUT_MS 5000 /* --help, --version, and the supervisor's report */
#define STOP_KILL_WAIT_MS 5000 /* after SIGKILL (or StopUnit's own timeout) */
#define POLL_STEP_MS 20

/* In a child between fork and exec: default signal dispositions and an empty mask, so that a
 * caller ignoring SIGTERM or SIGPIPE does not pass that on to virtiofsd. */
void virtiofsd_child_reset_signals(void);

/* Async-signal-safe decimal formatting; returns the number of digits written (no NUL). */
size_t virtiofsd_fmt_ulong(char *buf, unsigned long v);

/* ---- the daemon supervisor (virtiofsd-daemon.c) ---- */

/* What the pid file holds: virtiofsd and its supervisor, each with its start time. */
struct daemon_ids {
        pid_t pid;
        unsigned long long starttime;
        pid_t supervisor;
        unsigned long long supervisor_starttime;
};

/* Starts argv under a new supervisor, its output appended to state_fd's log; *ret gets the
 * PIDs and start times for the pid file (which the caller writes). */
int virtiofsd_daemon_start(const char *path, char **argv, const struct virtiofsd_config *cfg, int state_fd,
                           struct daemon_ids *ret, struct verr *e);

/* "PID STARTTIME SUPERVISOR_PID SUPERVISOR_STARTTIME" (or the first two) from the pid file. */
int virtiofsd_daemon_read_pid_file(int state_fd, struct daemon_ids *ret);

/* The last lines of the log (at most ~300 bytes), on one line, for an error message. */
void virtiofsd_daemon_log_tail(int state_fd, char *buf, size_t size);

/* Stops what the pid file names; 1 stopped, 0 nothing was running, -errno. */
int virtiofsd_daemon_stop(int state_fd, int timeout_ms, struct verr *e);

/* ---- the user namespace of an unprivileged start (virtiofsd-userns.c) ---- */

/* Where starting virtiofsd failed, with errno: reported by the child (or, for the maps, by the
 * supervisor) over a pipe. */
enum launch_stage {
        LAUNCH_OK,
        LAUNCH_EXEC,
        LAUNCH_CHDIR,
        LAUNCH_DROP_IDS,
        LAUNCH_UNSHARE,
        LAUNCH_MAPS,
        LAUNCH_CAPS,
};

struct launch_error {
        int stage;
        int err;
};

/* An unprivileged start, everything prepared before the fork (the children may not allocate). */
struct userns_launch {
        bool enabled;
        const char *dir;          /* bind-mounted on root while still root */
        char root[64];            /* VIRTIOFSD_USERNS_ROOT/UID */
        uid_t uid;                /* the file server's host IDs */
        gid_t gid;
        char uid_map[64], gid_map[64];
        uint64_t caps;            /* what virtiofsd keeps, in its namespace */
};

/* In the supervisor and its child, the listening socket of an unprivileged start. */
#define SUPERVISOR_LISTEN_FD 4

void virtiofsd_userns_prepare(const struct virtiofsd_config *cfg, struct userns_launch *u);

/* A listening socket bound to path, for an unprivileged virtiofsd (which could not create one in
 * a root-only directory). QEMU's connection waits in the backlog until virtiofsd accepts it. */
int virtiofsd_listen_socket(const char *path, int *ret_fd, struct verr *e);

/* In the child: returns the failed stage (errno set) or LAUNCH_OK. */
int virtiofsd_userns_enter(const struct userns_launch *u, int sync_wr, int go_rd);

/* In the supervisor: 0 or the errno of the map write that failed. */
int virtiofsd_userns_write_maps(pid_t pid, const struct userns_launch *u);

/* ---- the transient systemd unit (virtiofsd-systemd.c) ---- */

/* Capabilities virtiofsd may ever need (the unit's bounding set; unprivileged, what it keeps). */
uint64_t virtiofsd_capability_bounding_set(void);

bool virtiofsd_unit_name_is_valid(const char *unit);
int virtiofsd_unit_start(const char *unit, char **argv, struct verr *e);

/* The unit's ActiveState ("" when systemd does not know it) and main PID. */
int virtiofsd_unit_state(const char *unit, char *state, size_t size, pid_t *ret_pid, struct verr *e);

/* 1 stopped, 0 it was not running, -errno. */
int virtiofsd_unit_stop(const char *unit, int timeout_ms, struct verr *e);
