/* uid-alloc.h: the agent's memory of which UIDs it handed out in this boot, for the allocator.
 *
 * Three small pieces of state under /run/vmuser (a tmpfs: they last one boot):
 *   uid-highwater      one past the highest UID attached in this boot. Allocation starts there,
 *                      so a freed UID is handed out again only when the range above is used up.
 *   quarantine/UID     a detached UID whose clean-up left something (uid-cleanup.h); it is
 *                      checked again before any reuse and leaves quarantine once clean.
 *   reserved/UID       the UID is reserved for the user named in the file: the host keeps that
 *                      user's home export, whose ID mapping is fixed to this guest UID (after a
 *                      guest reboot). Set from the "reservedUids" of vmuser-attach.
 * See doc/PROTOCOL.txt, "The life of a transient UID". All functions take the /run/vmuser fd and
 * are called with the agent lock held. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "records.h"
#include "verr.h"

#define UID_QUARANTINE_DIR "quarantine"
#define UID_RESERVED_DIR "reserved"

/* The mark's file, opened (created empty: no mark yet) once; the agent keeps the fd, so a read
 * is one pread(2) and a raise one pwrite(2) in place (see uid_highwater_raise). */
int uid_highwater_open(int state_fd, int *ret_fd);
/* The first never-used UID of this boot (range->min when none was used yet); fd: the mark's. */
int uid_highwater_get(int fd, const struct id_range *range, uint32_t *ret);
/* Raises the mark past uid (never lowers it). */
int uid_highwater_raise(int fd, uint32_t uid);

int uid_quarantine_set(int state_fd, uint32_t uid, bool on);
/* 1 when quarantined, 0 when not, -errno. */
int uid_quarantine_has(int state_fd, uint32_t uid);

/* Reserves uid for user_name (replacing an earlier reservation of that UID). */
int uid_reserve_set(int state_fd, uint32_t uid, const char *user_name);
/* Records the reservations of a vmuser-attach "reservedUids" argument: an array of at most
 * UID_RESERVED_MAX {"uid": N, "userName": S} (N inside range). -EINVAL with the reason in e. */
#define UID_RESERVED_MAX 64u
int uid_reservations_from_json(int state_fd, json_object *array, const struct id_range *range, struct verr *e);

/* 1 with the owner's name in ret_name when uid is reserved, 0 when not, -errno. */
int uid_reserved_for(int state_fd, uint32_t uid, char *ret_name, size_t size);
