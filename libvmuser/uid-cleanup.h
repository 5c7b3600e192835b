/* uid-cleanup.h: what a transient UID leaves behind, found and removed at detach.
 *
 * A detached user's UID goes back to the pool; the next user who gets it must not inherit a
 * process, an IPC object or a file of the previous one (doc/PROTOCOL.txt, "Leftovers of a
 * UID"). uid_cleanup() ends every process whose real, effective, saved or file-system UID is
 * the UID (scanning /proc, not only logind's sessions), removes its SysV IPC objects, and
 * removes what it owns in the places any login can write to: /tmp, /var/tmp, /dev/shm,
 * /dev/mqueue, /run/lock, /run/user/UID, the cron and at spools and /var/mail/NAME, and
 * pam_namespace's instances /tmp/tmp-inst/NAME and /var/tmp/tmp-inst/NAME. What cannot
 * be removed safely is kept and reported with the reason. uid_leftovers() is the same search
 * without removing anything, for the allocator (uid-alloc.c).
 *
 * The walk works on directory fds: fstatat(AT_SYMLINK_NOFOLLOW), openat(O_NOFOLLOW|O_DIRECTORY)
 * checked against the fstatat result, unlinkat(); it never follows a symlink and never leaves
 * the file system of the place it started in. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Paths kept (not removable, or not safely) are listed up to this many; more are only counted. */
#define UID_CLEANUP_KEPT_MAX 16u

struct uid_cleanup_report {
        unsigned processes_ended; /* processes of the UID signalled (SIGKILL) that are gone */
        unsigned processes_left;  /* still there after the bounded kill loop */
        unsigned ipc_removed;     /* SysV shared memory segments, semaphore sets, message queues */
        unsigned ipc_left;
        unsigned files_removed;   /* non-directories, including POSIX shm and mqueue entries */
        unsigned dirs_removed;
        unsigned kept_count;      /* paths kept; the first UID_CLEANUP_KEPT_MAX are in kept[] */
        char *kept[UID_CLEANUP_KEPT_MAX]; /* "PATH: reason", malloc'ed */
};

void uid_cleanup_report_done(struct uid_cleanup_report *r);

/* True when anything of the UID is left (a process, an IPC object or a kept path). */
bool uid_cleanup_report_dirty(const struct uid_cleanup_report *r);

/* root is "/" in production; tests point it at a scratch tree with its own proc mount (processes
 * are then looked for in ROOT/proc, files in ROOT/tmp, ...). user_name (may be NULL) names the
 * per-user files of the spools (crontabs/NAME, /var/mail/NAME). Returns 0 with the report filled
 * (also when something was kept), -errno only when the search itself could not run. */
int uid_cleanup(const char *root, uid_t uid, const char *user_name, struct uid_cleanup_report *ret);

/* Counts what the UID still owns (processes, IPC objects, entries in those places) without
 * changing anything; returns the count (0: clean) or -errno. */
int uid_leftovers(const char *root, uid_t uid, const char *user_name);

/* uid_leftovers() for every UID of lo..hi in one pass (without the per-name places): bit
 * (uid - lo) of bits (at least (hi - lo) / 8 + 1 bytes, cleared first) is set when the UID owns a
 * process, an IPC object or an entry in the places. 0 or -errno. */
int uid_leftovers_scan(const char *root, uid_t lo, uid_t hi, uint8_t *bits);
/* Counts the live processes whose real, effective, saved or file-system UID is uid (zombies and
 * the caller not counted), in ROOT/proc; 0 also without a ROOT/proc; -errno when it cannot be
 * read. */
int uid_count_processes(const char *root, uid_t uid);
