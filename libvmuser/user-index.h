/* user-index.h: the attached users, groups and memberships in memory, served as
 * io.systemd.UserDatabase over varlink (see varlink.h and doc/PROTOCOL.txt, section 9).
 *
 * The index is a cache of what userdb.c wrote: the user's line in the record store
 * (record-store.h), records and attach state. It is built from the
 * store at start (user_index_load_all) and one user is re-read after each attach or detach
 * (user_index_refresh), so the store stays the single source of truth and crash safety is its. Records are kept as compact JSON text with "service" set to the index's service name
 * (nss-systemd refuses records without it), hashed by user name, UID, group name, GID, and
 * memberships by group name, so every lookup costs the same whatever the number of users.
 * The privileged section (password hashes, SSH keys) is only sent to peers whose UID is 0. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "varlink.h"

struct user_index;

int user_index_new(const char *service, struct user_index **ret);
struct user_index *user_index_free(struct user_index *idx);
void user_index_freep(struct user_index **idx);

/* Re-indexes user name from its record-store line (NULL: not attached, dropped): records, and
 * the attach state with its memberOf list from the line's "state" (a line without one, written
 * by an older agent: state_fd's users/NAME.json). 1: indexed, 0: dropped, <0: unreadable
 * (dropped). */
int user_index_refresh(struct user_index *idx, const char *line, int state_fd, const char *name);
/* The same after an attach that wrote line with uid and gid: the records are not parsed again
 * (user-index-line.c; a line it cannot take apart is parsed). */
int user_index_refresh_attached(struct user_index *idx, const char *line, int state_fd, const char *name, uint32_t uid,
                                uint32_t gid);
/* Indexes every user of the store. Returns how many were indexed; users whose records are
 * unreadable are skipped (and counted in *ret_failed when given). */
struct record_store;
int user_index_load_all(struct user_index *idx, const struct record_store *store, int state_fd, unsigned *ret_failed);
size_t user_index_count(const struct user_index *idx);
const char *user_index_service(const struct user_index *idx);

/* Marks user name as being detached (NULL: nobody): io.vmuser.GetAttachState then says
 * "detaching": true for it. The mark lives only here (an agent restart forgets it). */
int user_index_set_detaching(struct user_index *idx, const char *name);

/* io.systemd.UserDatabase.GetUserRecord, GetGroupRecord, GetMemberships, and
 * io.vmuser.GetAttachState; userdata is the index. */
extern const struct varlink_method user_index_methods[];
extern const size_t user_index_n_methods;
