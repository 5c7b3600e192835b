/* userdb-internal.h: what the files of the userdb share (userdb.c: open, recover, attach,
 * detach; userdb-plan.c: plans, their journal and undo; userdb-ids.c: NSS conflict checks and
 * ID allocation; userdb-migrate.c: drop-ins of an older agent into the record store;
 * userdb-state.c: where the attach state lives). Not for
 * other callers: see userdb.h. */
#pragma once

#include <json-c/json.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"
#include "userdb.h"

struct id_mark;
struct nss_view;
struct record_store;

enum plan_dir {
        PLAN_DIR_USERDB,
        PLAN_DIR_USERS,
        PLAN_DIR_STORE, /* record-store.h: name is the user, content its line */
};

enum plan_kind {
        PLAN_WRITE,
        PLAN_SYMLINK,
        PLAN_REMOVE,
};

struct plan_step {
        enum plan_kind kind;
        enum plan_dir dir;
        char name[VMUSER_NAME_MAX * 2 + 32];
        char *content; /* file content or symlink target */
        mode_t mode;
        bool joined;        /* PLAN_DIR_STORE write of a joined line: its IDs below */
        uint32_t uid, gid;
};

struct plan {
        char user_name[VMUSER_NAME_MAX + 1];
        struct plan_step *steps;
        size_t n_steps;
};

struct userdb {
        int userdb_fd;
        int state_fd;
        int users_fd;
        int pending_fd;
        int highwater_fd; /* uid-alloc.h: the mark, kept open */
        bool hold_lock;   /* userdb_hold_lock(): the lock, once taken, stays in held_lock_fd */
        int held_lock_fd;
        struct id_range range;
        unsigned reserve_percent;
        char cleanup_root[PATH_MAX]; /* where uid_leftovers() looks ("/" but in tests) */
        int (*session_count)(const struct attach_state *s, void *userdata);
        void *session_count_userdata;
        struct record_store *store; /* --userdb=varlink: records here, none in userdb_fd */
        /* A batch of attaches: one NSS view and one leftovers scan (of dirty_lo..dirty_hi) serve
         * every attach within BATCH_VIEW_USEC of taking them (see fresh_view, id_is_clean). */
        struct nss_view *view;
        uint64_t view_usec;
        bool view_checked; /* checked for staleness since the lock was taken */
        uint8_t *dirty;
        uid_t dirty_lo, dirty_hi;
        uint64_t dirty_usec;
        struct id_mark *marks; /* userdb-batch.c: sorted by ID */
        size_t n_marks, marks_cap;
        uint64_t marks_usec;
        bool marks_valid;
        char userdb_path[PATH_MAX]; /* for messages */
        char state_path[PATH_MAX];
};

/* userdb-plan.c */
void plan_done(struct plan *p);
int plan_add(struct plan *p, enum plan_kind kind, enum plan_dir dir, const char *content, mode_t mode,
             const char *name_fmt, ...) _printf_(6, 7);
/* The plan as its journal holds it, and back (-EBADMSG for anything but a plan of ours). */
int plan_to_json(const struct plan *p, char **ret);
int plan_from_json(json_object *obj, struct plan *ret);
/* The undo of a plan that only created entries: remove each, in reverse order. */
int plan_build_undo(const struct plan *p, struct plan *ret);
int plan_commit(struct userdb *db, const struct plan *p, const struct plan *undo);
int replay_journal(struct userdb *db, const char *file);
int plan_add_stale(struct plan *p, const struct attach_state *old, json_object *old_member_of,
                   const struct attach_state *new_state, json_object *new_member_of);
int plan_is_noop(struct userdb *db, const struct plan *p);

/* userdb-ids.c */
bool batch_fresh(uint64_t taken_usec);
void batch_forget(struct userdb *db);
int id_is_fit(struct userdb *db, uint32_t id, const char *user_name, char *why, size_t why_size);
int allocate_id(struct userdb *db, const char *user_name, uint32_t *ret);
int check_conflicts(struct userdb *db, const struct attach_request *req, bool ours, uint32_t uid, uint32_t gid,
                    struct verr *e);

/* userdb-batch.c: the file-system marks of a UID in this batch. 1 with the marks in
 * *ret_bits, 0 when there is no batch (ask the files), -errno. */
enum batch_mark {
        BATCH_MARK_DROPIN = 1u << 0,      /* userdb dir: N.user or N.group */
        BATCH_MARK_RESERVED = 1u << 1,    /* reserved/N */
        BATCH_MARK_QUARANTINED = 1u << 2, /* quarantine/N */
};
int batch_marks(struct userdb *db, uint32_t id, unsigned *ret_bits);
void batch_marks_forget(struct userdb *db);

/* userdb-migrate.c */
int migrate_dropins(struct userdb *db);

/* userdb-state.c: the user's state and memberOf, from the store (varlink) or users/NAME.json. */
int read_old_state(struct userdb *db, const char *name, struct attach_state *ret, json_object **ret_member_of);
int read_state_file(struct userdb *db, const char *name, struct attach_state *ret, json_object **ret_member_of);
int migrate_state_files(struct userdb *db);

/* userdb.c */
uint64_t userdb_now_usec(void);
