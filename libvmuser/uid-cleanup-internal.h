/* uid-cleanup-internal.h: the parts of uid-cleanup.c and what they share; not for use outside
 * them (the public API is uid-cleanup.h).
 *
 * uid-cleanup.c runs a request in order through the parts, each of one kind of leftover:
 * uid-processes.c (processes, from ROOT/proc), uid-ipc.c (SysV IPC objects, from
 * ROOT/proc/sysvipc) and uid-files.c (entries in the places any login can write to). Each part
 * either acts on one UID (ending, removing or counting) or marks every UID of a range it meets
 * (struct uid_marks, for uid_leftovers_scan()). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "uid-cleanup.h"

/* The UIDs of lo..hi met by a scan: bit (uid - lo) of bits. */
struct uid_marks {
        uid_t lo, hi;
        uint8_t *bits;
};

/* Sets the bit of id when it lies in m's range. */
void uid_mark(const struct uid_marks *m, unsigned long long id);

/* a "/" b into buf ("/" left out after "/" or ""); -ENAMETOOLONG when it does not fit. */
int uid_path_join(char *buf, size_t size, const char *a, const char *b);

/* Whether s is a non-empty string of decimal digits (a PID in /proc, a UID in /run/user). */
bool uid_name_is_number(const char *s);

/* Runs visit over the entries of ROOT/sub (dir_foreach_at()); a missing directory has none
 * (0). -errno when it cannot be opened, or visit()'s first negative return. */
int uid_foreach_entry(const char *root, const char *sub, int (*visit)(int dir_fd, const char *name, void *userdata),
                      void *userdata);

/* uid-processes.c: SIGKILL to every process of the UID, in bounded rounds until none is left;
 * the report's processes_ended and processes_left filled. 0 or -errno (/proc unreadable). */
int uid_processes_end(const char *root, uid_t uid, struct uid_cleanup_report *report);

/* uid-processes.c: marks the four UIDs of every live process in ROOT/proc. 0 or -errno. */
int uid_processes_mark(const char *root, struct uid_marks *m);

/* uid-ipc.c: the SysV IPC objects of the UID (owner or creator), removed when remove (the
 * report's ipc_removed and ipc_left counted) or only counted. Returns how many were found, or
 * -errno. */
int uid_ipc_remove(const char *root, uid_t uid, bool remove, struct uid_cleanup_report *report);

/* uid-ipc.c: marks the owner and creator of every SysV IPC object. 0 or -errno. */
int uid_ipc_mark(const char *root, struct uid_marks *m);

/* uid-files.c: the entries of the UID in the places (and the per-name ones of user_name, which
 * may be NULL), removed when remove (counted and kept paths in the report) or only counted.
 * Returns how many were found in check mode (0 when removing). */
unsigned uid_files_remove(const char *root, uid_t uid, const char *user_name, bool remove,
                          struct uid_cleanup_report *report);

/* uid-files.c: marks the UIDs named by ROOT/run/user's entries and the owner of every entry in
 * the places (not the per-name ones). */
void uid_files_mark(const char *root, struct uid_marks *m);
