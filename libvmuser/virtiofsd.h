/* virtiofsd.h: finding, starting, watching and stopping the virtiofsd that serves one home.
 *
 * Two implementations exist and take different options: the C one shipped with QEMU up to 8.0
 * (Debian 12: /usr/lib/qemu/virtiofsd; "-o source=", "-o sandbox=", "-o modcaps=", no ID
 * translation, no read-only switch) and the Rust one that replaced it (/usr/libexec/virtiofsd
 * or in PATH; "--shared-dir", "--sandbox", "--modcaps", and in newer releases "--readonly" and
 * "--translate-uid/--translate-gid"). virtiofsd_detect() runs the binary with --help and decides
 * from what it prints, not from where it lives.
 *
 * One virtiofsd serves one user's home and must outlive the vmuser process that started it:
 *   - when the host runs systemd (sd_booted()), it becomes a transient service started through
 *     sd-bus (StartTransientUnit) with sandboxing properties; state_dir/virtiofsd.unit names it;
 *   - otherwise a detached supervisor (its own session, a child subreaper) starts it, reaps it
 *     and notes its exit status in state_dir/virtiofsd.log; state_dir/virtiofsd.pid holds
 *     "PID STARTTIME" so a recycled PID is never mistaken for it.
 * Either way virtiofsd runs with its own namespace sandbox and without the capabilities a home
 * share does not need (mknod, setfcap).
 *
 * Without host root (cfg->unprivileged, the default where user namespaces exist): vmuser binds
 * and listens on the socket itself; the supervisor forks a child that makes a mount namespace
 * with the shared directory on VIRTIOFSD_USERNS_ROOT/SERVER_UID, makes a user namespace (owned
 * by root) and waits; the supervisor writes its maps, "VIRTIOFSD_SERVER_INSIDE_ID SERVER 1" and
 * "GUEST HOST 1" for users and groups (setgroups denied); the child becomes
 * VIRTIOFSD_SERVER_INSIDE_ID inside (server_uid/gid outside: no capability left in the host's
 * namespace), raises the capabilities virtiofsd needs as ambient ones in its namespace and
 * execs "virtiofsd --fd=3". virtiofsd must be able to switch back to its own IDs after acting
 * as the caller's, hence its own ID is mapped; ID 0 is not, so nothing guest root asks for as
 * 0 can be done; its capabilities only reach files whose owner and group are mapped (the
 * user's, and the server's own). systemd cannot write such maps: this mode always uses the
 * daemon supervisor.
 *
 * Flow: virtiofsd_detect() -> virtiofsd_build_argv() -> virtiofsd_start(): stale socket removed,
 * process started, then waits until the socket listens (without connecting: virtiofsd serves the
 * first connection only) or the process dies (the error then quotes its log) ->
 * virtiofsd_get_state() for `vmuser list` -> virtiofsd_stop(): SIGTERM (or StopUnit), SIGKILL
 * after the timeout, state files and socket removed. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#include "verr.h"

#define VIRTIOFSD_PID_FILE "virtiofsd.pid"
#define VIRTIOFSD_UNIT_FILE "virtiofsd.unit"
#define VIRTIOFSD_LOG_FILE "virtiofsd.log"

/* Capabilities dropped from virtiofsd's default set: device nodes and file capabilities have no
 * place in a home shared with a guest. */
#define VIRTIOFSD_MODCAPS "-mknod:-setfcap"

enum virtiofsd_flavour {
        VIRTIOFSD_FLAVOUR_C,
        VIRTIOFSD_FLAVOUR_RUST,
};

struct virtiofsd_binary {
        char path[PATH_MAX];
        enum virtiofsd_flavour flavour;
        char version[64];    /* first line of --version, trimmed */
        bool translate_ids;  /* understands --translate-uid/--translate-gid */
        bool read_only;      /* understands --readonly */
};

const char *virtiofsd_flavour_to_string(enum virtiofsd_flavour f);

/* Checks path (when not NULL) or else searches /usr/libexec/virtiofsd, virtiofsd in PATH and
 * /usr/lib/qemu/virtiofsd, in that order, and takes the first that answers --help like a
 * virtiofsd. -ENOENT when none is found, -ENOEXEC when path is not a virtiofsd. */
int virtiofsd_detect(const char *path, struct virtiofsd_binary *ret, struct verr *e);

struct virtiofsd_config {
        const char *shared_dir;  /* what to serve (the staging mount) */
        const char *socket_path; /* vhost-user socket virtiofsd (or, unprivileged, vmuser) listens on */
        bool read_only;          /* adds --readonly when the binary has it */
        bool translate_ids;      /* adds --translate-uid/gid map:GUEST:HOST:1 (binary must have it) */
        uid_t host_uid, guest_uid;
        gid_t host_gid, guest_gid;
        /* Unprivileged (see "Without host root" above): virtiofsd runs as server_uid/server_gid
         * in a user namespace that maps only guest_uid/gid -> host_uid/gid; always under the
         * daemon supervisor. */
        bool unprivileged;
        uid_t server_uid;
        gid_t server_gid;
};

/* 1 when this kernel lets a process make a user namespace (a forked child tries), 0 when not
 * (user.max_user_namespaces=0, a seccomp policy, ...): then only the root virtiofsd is left. */
int virtiofsd_userns_available(void);

/* The descriptor an unprivileged virtiofsd gets its listening socket on (--fd=), and the path it
 * serves: VIRTIOFSD_USERNS_ROOT/SERVER_UID, an empty directory (root's, 0755) on which, in a
 * mount namespace of its own made while still root, the shared directory is bind-mounted (the
 * staging mount lies below root-only directories that the server's ID could not walk; the bind
 * is seen by nobody else). ps shows the ID in that path and as the process's user. */
#define VIRTIOFSD_LISTEN_FD 3
/* The unprivileged virtiofsd's own UID and GID inside its namespace: (uid_t) -2, the last valid
 * one, which no guest account uses (guest root could switch to it; the staging mount, which
 * maps only the user's IDs, still refuses its creations: see HOME-EXPORT.txt). */
#define VIRTIOFSD_SERVER_INSIDE_ID 4294967294u
#define VIRTIOFSD_USERNS_ROOT "/run/vmuser/server-root"

/* The command line for cfg: a NULL-terminated, malloc'ed vector (argv[0] is the binary's path);
 * free it with virtiofsd_argv_free(). */
int virtiofsd_build_argv(const struct virtiofsd_binary *b, const struct virtiofsd_config *cfg, char ***ret,
                         struct verr *e);
void virtiofsd_argv_free(char **argv);
void virtiofsd_argv_freep(char ***argv);

/* What ps shows for the daemon supervisor: "vmuser-virtiofsd-supervisor SOCKET". */
#define VIRTIOFSD_SUPERVISOR_TITLE "vmuser-virtiofsd-supervisor"

enum virtiofsd_supervisor {
        VIRTIOFSD_SUPERVISOR_AUTO,    /* systemd when booted with it, else daemon */
        VIRTIOFSD_SUPERVISOR_DAEMON,
        VIRTIOFSD_SUPERVISOR_SYSTEMD,
};

struct virtiofsd_process {
        enum virtiofsd_supervisor supervisor; /* DAEMON or SYSTEMD */
        pid_t pid;                            /* main PID (0 if unknown) */
        char unit[256];                       /* systemd unit name, "" for a daemon */
};

/* Starts virtiofsd as cfg says, supervised as `supervisor` says, with its files in state_dir (an
 * existing directory only root can write to), and waits up to timeout_ms for its socket to
 * listen. unit_name is the transient unit to create under systemd (ignored otherwise). */
int virtiofsd_start(const struct virtiofsd_binary *b, const struct virtiofsd_config *cfg, const char *state_dir,
                    enum virtiofsd_supervisor supervisor, const char *unit_name, int timeout_ms,
                    struct virtiofsd_process *ret, struct verr *e);

enum virtiofsd_state {
        VIRTIOFSD_STATE_NONE,    /* never started here, or stopped cleanly */
        VIRTIOFSD_STATE_RUNNING,
        VIRTIOFSD_STATE_DEAD,    /* started, but gone (exited, killed, unit failed) */
};

const char *virtiofsd_state_to_string(enum virtiofsd_state s);

/* The state of the virtiofsd whose files are in state_dir; *ret (optional) gets its process. */
int virtiofsd_get_state(const char *state_dir, enum virtiofsd_state *ret_state, struct virtiofsd_process *ret,
                        struct verr *e);

/* Stops the virtiofsd of state_dir: SIGTERM (StopUnit under systemd), SIGKILL when it has not
 * exited after timeout_ms. Removes the pid/unit file and the socket at socket_path (may be NULL).
 * Returns 1 when it stopped a running virtiofsd, 0 when none was running. */
int virtiofsd_stop(const char *state_dir, const char *socket_path, int timeout_ms, struct verr *e);
