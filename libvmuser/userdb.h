/* userdb.h: installing and removing attached users in the guest, crash-safe.
 *
 * One struct userdb holds directory fds for /run/userdb and /run/vmuser (or scratch trees in
 * tests). A change is a plan: an ordered list of "write file", "make symlink", "remove entry"
 * steps. userdb_attach() builds the plan for a validated request, checks it against NSS (no name
 * or ID of anyone else may be shadowed) under the lock, journals it to pending/NAME.json (the
 * commit point), applies it, and drops the journal. userdb_recover() re-applies journals left by
 * a crash, so the visible state is always the old one or the new one. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "attach-state.h"
#include "records.h"
#include "verr.h"

struct userdb;

/* Opens (creating if needed) the two roots and the subdirectories below the state root. */
int userdb_open(const char *userdb_dir, const char *state_dir, const struct id_range *range, struct userdb **ret);
struct userdb *userdb_close(struct userdb *db);
void userdb_closep(struct userdb **db);

/* A first attach is refused (-ENOSPC, nothing written) when it would leave less than percent of
 * the blocks or inodes of either root's file system free. 0 turns the check off (the default of
 * userdb_open); the agent sets USERDB_RESERVE_PERCENT_DEFAULT unless told otherwise. */
#define USERDB_RESERVE_PERCENT_DEFAULT 5u
#define USERDB_RESERVE_PERCENT_MAX 50u
void userdb_set_reserve(struct userdb *db, unsigned percent);

/* Where uid_leftovers() looks before a UID is handed out ("/" by default; tests use a scratch
 * tree, see vmuser-agent --cleanup-root). */
void userdb_set_cleanup_root(struct userdb *db, const char *root);
const char *userdb_cleanup_root(const struct userdb *db);

/* Counts the live sessions of an attached user: a replace that changes its UID or home is
 * refused (-EBUSY) while there are any. Without a counter the check is skipped. */
void userdb_set_session_counter(struct userdb *db, int (*fn)(const struct attach_state *s, void *userdata),
                                void *userdata);

/* --userdb=varlink: keep the records in the state directory's record store (record-store.h)
 * instead of drop-in files; userdb_recover() then moves users it finds as drop-ins in the userdb
 * directory (attached before an upgrade) into the store. Call before userdb_recover(). */
struct record_store;
int userdb_use_store(struct userdb *db);
const struct record_store *userdb_store(const struct userdb *db);

int userdb_state_fd(const struct userdb *db);
const struct id_range *userdb_range(const struct userdb *db);

/* Re-applies leftover journals and removes temporary files. Returns the number of journals
 * replayed. Takes the lock. */
int userdb_recover(struct userdb *db);

/* Takes /run/vmuser/lock (waits up to 5 s: -EWOULDBLOCK after) into *ret_lock_fd: held until
 * that fd is closed, or (-1 in *ret_lock_fd) while userdb_hold_lock() holds it. */
int userdb_lock(struct userdb *db, int *ret_lock_fd);
/* While hold is true, the lock once taken stays taken (the requests of one read of the
 * transport: one lock, and one check of /etc/passwd and /etc/group, for all of them); false
 * releases it. Other agents on the same state directory wait for the whole batch. */
void userdb_hold_lock(struct userdb *db, bool hold);

/* The host's "reservedUids" of a vmuser-attach (uid_reservations_from_json(), uid-alloc.h), with
 * the lock held; the allocator's batch (userdb-batch.c) sees them at once. */
int userdb_set_reservations(struct userdb *db, json_object *array, struct verr *e);

struct attach_result {
        char user_name[VMUSER_NAME_MAX + 1];
        uint32_t uid;
        uint32_t gid;
        char home_directory[HOME_PATH_MAX + 1];
        bool changed;
        bool replaced; /* the user was attached before (changed or not) */
};

/* Takes the lock itself. -EEXIST: name/ID taken by someone else or a different record is
 * attached (without replace); -ENOSPC: no free ID, or not enough room left (see
 * userdb_set_reserve); -ENOENT: a memberOf group is missing; -EBUSY: the requested UID still has
 * leftovers of an earlier user or is reserved for another (uid-alloc.h), or a replace would
 * change the UID or home under live sessions. Allocation prefers UIDs never used in this boot. */
int userdb_attach(struct userdb *db, const struct attach_request *req, struct attach_result *ret, struct verr *e);

/* Removes every record of an attached user (the caller has dealt with sessions and the home
 * mount). Call with the lock held. -ENOENT if not attached by vmuser. */
int userdb_detach_locked(struct userdb *db, const char *user_name, struct attach_state *ret_old, struct verr *e);

/* The attach state of user name (--userdb=dropin: users/NAME.json; varlink: the record store,
 * "detaching" never set: the agent keeps that mark in memory). -ENOENT when not attached. */
int userdb_get_state(struct userdb *db, const char *name, struct attach_state *ret);
/* Whether the state lives in the record store (--userdb=varlink) rather than users/NAME.json. */
bool userdb_state_in_store(const struct userdb *db);

/* Calls cb for every attached user, sorted by name. */
int userdb_foreach(struct userdb *db, int (*cb)(const struct attach_state *s, void *userdata), void *userdata);
/* The same for at most limit users (0: all) whose names sort after after (NULL: from the start). */
int userdb_foreach_page(struct userdb *db, const char *after, size_t limit,
                        int (*cb)(const struct attach_state *s, void *userdata), void *userdata);
