/* session-track.h: live login sessions of attached users, tracked in the filesystem.
 *
 * /run/vmuser/sessions/NAME/ holds a lock file and one entry per open session, named
 * "PID-STARTTIME" after the process that opened it (see doc/PROTOCOL.txt, section 7). Every
 * operation takes the lock and prunes entries whose process is gone, so a session killed
 * without a close never keeps a home mounted. Used by pam_vmuser (open/close) and by the agent
 * (count for list/detach, clear on forced detach). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct session_lock; /* an open, flock()ed sessions/NAME directory */

/* How long session_lock_acquire() waits for another holder before giving up with -ETIMEDOUT. */
#define SESSION_LOCK_TIMEOUT_MSEC_DEFAULT 5000u

/* Locks sessions/NAME under state_dir_fd (/run/vmuser), creating it (0700 root) if create.
 * -ENOENT when it does not exist and !create; -EPERM when sessions/ or sessions/NAME/ is not
 * owned by the caller's effective UID or is writable by others; -ENOTDIR when one is a symlink;
 * -ETIMEDOUT when the lock stayed busy for the whole timeout. */
int session_lock_acquire(int state_dir_fd, const char *user_name, bool create, struct session_lock **ret);
int session_lock_acquire_timeout(int state_dir_fd, const char *user_name, bool create, unsigned timeout_msec,
                                 struct session_lock **ret);
struct session_lock *session_lock_release(struct session_lock *l);
void session_lock_releasep(struct session_lock **l);

/* Removes dead entries (process gone, zombie, or PID reused) and anything that is not an entry;
 * returns the number of live ones. -ENOMEDIUM when /proc is not mounted. */
int session_prune_and_count(struct session_lock *l);
/* Adds/removes the entry for pid (its start time read from /proc). session_add() returns 1 when
 * it created the entry, 0 when it was there already (one process, one entry). session_remove()
 * returns 1 when it removed the entry, 0 when there was none (or pid is gone). */
int session_add(struct session_lock *l, pid_t pid);
int session_remove(struct session_lock *l, pid_t pid);
/* Calls cb for each live session pid (for forced detach). */
int session_foreach(struct session_lock *l, int (*cb)(pid_t pid, void *userdata), void *userdata);
/* Removes every entry, the lock file and the directory (forced detach, after the sessions ended). */
int session_remove_all(int state_dir_fd, const char *user_name);

/* An entry's name "PID-START" (the process that opened the session and its start time in clock
 * ticks since boot): 0, or -EINVAL when name is not an entry. */
int session_entry_parse(const char *name, pid_t *ret_pid, uint64_t *ret_start);
/* A pidfd (pidfd_open(2); readable once the process has exited) for the process of an entry, or
 * -ESRCH when that process is gone (or its PID now belongs to another process). For the agent,
 * which watches sessions end without polling. */
int session_entry_pidfd(pid_t pid, uint64_t start);
/* session_remove_all(), for a caller that holds the lock already (the agent's detach holds it
 * throughout). */
int session_remove_all_locked(struct session_lock *l);
