/* userdb.c: opening, recovery, attach and detach of the guest's transient users (see userdb.h;
 * plans and their journal in userdb-plan.c, conflict checks and UID allocation in userdb-ids.c,
 * the upgrade from drop-ins in userdb-migrate.c).
 *
 * Attach flow: lock -> read our old state (if any) -> decide UID/GID (request, old state, or
 * allocation) -> NSS conflict checks -> render records -> build plan (group, privileged,
 * memberships, state file, UID link, and NAME.user last; then stale entries of a replaced
 * record) -> compare with disk (identical: done, "changed": false) -> journal -> apply -> drop
 * journal. Detach builds the reverse plan with NAME.user removed first. */
#include "userdb.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "atomic-file.h"
#include "dir-util.h"
#include "json-util.h"
#include "lock-util.h"
#include "nss-view.h"
#include "record-store.h"
#include "macro.h"
#include "paths.h"
#include "strv.h"
#include "uid-alloc.h"
#include "uid-cleanup.h"
#include "userdb-internal.h"

/* How long an agent request waits for another one's lock (a stuck holder is an error). */
#define USERDB_LOCK_TIMEOUT_MS 5000

int userdb_lock(struct userdb *db, int *ret_lock_fd) {
        _cleanup_close_ int fd = -1;

        /* Held for the requests of one read already (userdb_hold_lock()): nothing to release. */
        if (db->hold_lock && db->held_lock_fd >= 0) {
                *ret_lock_fd = -1;
                return 0;
        }
        fd = openat(db->state_fd, VMUSER_LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return negative_errno();
        int r = flock_timeout(fd, LOCK_EX, USERDB_LOCK_TIMEOUT_MS, 10);
        if (r < 0)
                return r == -ETIMEDOUT ? -EWOULDBLOCK : r;
        db->view_checked = false;
        if (db->hold_lock) {
                db->held_lock_fd = TAKE_FD(fd);
                *ret_lock_fd = -1;
                return 0;
        }
        *ret_lock_fd = TAKE_FD(fd);
        return 0;
}

void userdb_hold_lock(struct userdb *db, bool hold) {
        db->hold_lock = hold;
        if (!hold) {
                closep(&db->held_lock_fd);
                db->held_lock_fd = -1;
        }
}

static int clear_detaching(const struct attach_state *s, void *userdata) {
        struct userdb *db = userdata;
        if (s->detaching)
                (void) attach_state_set_detaching(db->users_fd, s->user_name, false);
        return 0;
}

struct replay {
        struct userdb *db;
        int n, first_error;
};

/* One entry of the pending directory: a plan's journal (NAME.json) is replayed or undone. */
static int visit_pending(int dir_fd, const char *name, void *userdata) {
        struct replay *p = userdata;
        size_t len = strlen(name);

        if (name[0] == '.' || len < 6 || !streq(name + len - 5, ".json"))
                return 0;
        int r = replay_journal(p->db, name);
        if (r < 0 && p->first_error == 0)
                p->first_error = r;
        p->n++;
        return 0;
}

int userdb_recover(struct userdb *db) {
        _cleanup_close_ int lock_fd = -1;
        struct replay p = { .db = db };
        int r, n, first_error;

        r = userdb_lock(db, &lock_fd);
        if (r < 0)
                return r;

        r = dir_foreach_at(db->pending_fd, visit_pending, &p);
        if (r < 0)
                return r;
        n = p.n;
        first_error = p.first_error;

        if (db->store) {
                r = migrate_dropins(db);
                if (r < 0 && first_error == 0)
                        first_error = r;
                else if (r > 0)
                        fprintf(stderr, "<5>Moved %d user(s) from drop-ins in %s to %s/" RECORD_STORE_FILE "\n", r,
                                db->userdb_path, db->state_path);
                /* States an older agent kept in users/NAME.json go into their lines. */
                r = migrate_state_files(db);
                if (r < 0 && first_error == 0)
                        first_error = r;
        } else
                /* A detach the agent did not finish (it crashed before the records went) did not
                 * happen: the user is attached, and logins must work again. (With the store the
                 * mark lives in the agent's memory only, and went with it.) */
                (void) userdb_foreach(db, clear_detaching, db);

        (void) atomic_clean_temporaries(db->userdb_fd);
        (void) atomic_clean_temporaries(db->users_fd);
        (void) atomic_clean_temporaries(db->pending_fd);
        return first_error < 0 ? first_error : n;
}

int userdb_open(const char *userdb_dir, const char *state_dir, const struct id_range *range, struct userdb **ret) {
        _cleanup_(userdb_closep) struct userdb *db = NULL;
        int r;

        if (range->min > range->max || id_is_special(range->min) || range->min == 0)
                return -EINVAL;

        db = calloc(1, sizeof(*db));
        if (!db)
                return -ENOMEM;
        db->userdb_fd = db->state_fd = db->users_fd = db->pending_fd = db->highwater_fd = db->held_lock_fd = -1;
        db->range = *range;
        strcpy(db->cleanup_root, "/");
        if (snprintf(db->userdb_path, sizeof(db->userdb_path), "%s", userdb_dir) >= (int) sizeof(db->userdb_path) ||
            snprintf(db->state_path, sizeof(db->state_path), "%s", state_dir) >= (int) sizeof(db->state_path))
                return -ENAMETOOLONG;

        r = open_private_dir_at(AT_FDCWD, userdb_dir, 0755, &db->userdb_fd);
        if (r < 0)
                return r;
        r = open_private_dir_at(AT_FDCWD, state_dir, 0755, &db->state_fd);
        if (r < 0)
                return r;
        r = open_private_dir_at(db->state_fd, VMUSER_USERS_SUBDIR, 0755, &db->users_fd);
        if (r < 0)
                return r;
        r = open_private_dir_at(db->state_fd, VMUSER_PENDING_SUBDIR, 0700, &db->pending_fd);
        if (r < 0)
                return r;
        /* The high-water mark's file exists from the start, so an attach only ever rewrites it in
         * place: the last free inode of a full /run/vmuser is then left to the journal of a
         * later detach, never taken by the mark (a full /run must not keep a user attached). */
        r = uid_highwater_open(db->state_fd, &db->highwater_fd);
        if (r < 0)
                return r;
        (void) uid_highwater_raise(db->highwater_fd, db->range.min - 1);
        *ret = TAKE_PTR(db);
        return 0;
}

struct userdb *userdb_close(struct userdb *db) {
        if (!db)
                return NULL;
        closep(&db->userdb_fd);
        closep(&db->state_fd);
        closep(&db->users_fd);
        closep(&db->pending_fd);
        closep(&db->highwater_fd);
        closep(&db->held_lock_fd);
        record_store_free(db->store);
        nss_view_free(db->view);
        free(db->dirty);
        free(db->marks);
        free(db);
        return NULL;
}

void userdb_closep(struct userdb **db) {
        userdb_close(*db);
}

int userdb_use_store(struct userdb *db) {
        if (db->store)
                return 0;
        return record_store_open(db->state_fd, &db->store);
}

const struct record_store *userdb_store(const struct userdb *db) {
        return db->store;
}

int userdb_state_fd(const struct userdb *db) {
        return db->state_fd;
}

const struct id_range *userdb_range(const struct userdb *db) {
        return &db->range;
}

void userdb_set_cleanup_root(struct userdb *db, const char *root) {
        snprintf(db->cleanup_root, sizeof(db->cleanup_root), "%s", root);
}

const char *userdb_cleanup_root(const struct userdb *db) {
        return db->cleanup_root;
}

void userdb_set_session_counter(struct userdb *db, int (*fn)(const struct attach_state *s, void *userdata),
                                void *userdata) {
        db->session_count = fn;
        db->session_count_userdata = userdata;
}

uint64_t userdb_now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static int build_attach_plan(const struct userdb *db, const struct attach_request *req, uint32_t uid, uint32_t gid,
                             uint64_t attached_usec, const struct attach_state *old, json_object *old_member_of,
                             struct plan *p) {
        _cleanup_(attach_files_done) struct attach_files files = {};
        _cleanup_json_ json_object *state_obj = NULL;
        struct attach_state st = {};
        const char *name = req->user_name;
        const char *state_text;
        int r;

        r = records_build_files(req, uid, gid, &files);
        if (r < 0)
                return r;

        strcpy(st.user_name, name);
        st.uid = uid;
        st.gid = gid;
        strcpy(st.home_directory, req->home_directory);
        st.has_home = req->has_home;
        st.home = req->home;
        st.attached_usec = attached_usec;
        r = attach_state_to_json(&st, files.member_of, &state_obj);
        if (r < 0)
                return r;
        state_text = json_to_compact(state_obj);
        if (!state_text)
                return -ENOMEM;

        char target[VMUSER_NAME_MAX + 32];
        strcpy(p->user_name, name);
        if (db->store) {
                /* The records and the state in one line: one append, no journal needed. */
                _cleanup_(erase_and_freep) char *line = NULL;
                r = record_store_join_line(name, files.user, files.group, files.privileged, state_text, &line);
                if (r < 0)
                        return r;
                r = plan_add(p, PLAN_WRITE, PLAN_DIR_STORE, line, 0600, "%s", name);
                if (r < 0)
                        return r;
                struct plan_step *s = &p->steps[p->n_steps - 1];
                s->joined = true;
                s->uid = uid;
                s->gid = gid;
                return 0;
        }
        _cleanup_free_ char *state_line = NULL;
        if (asprintf(&state_line, "%s\n", state_text) < 0)
                return -ENOMEM;
        snprintf(target, sizeof(target), "%s.group", name);
        if ((r = plan_add(p, PLAN_WRITE, PLAN_DIR_USERDB, files.group, 0644, "%s.group", name)) < 0 ||
            (r = plan_add(p, PLAN_SYMLINK, PLAN_DIR_USERDB, target, 0, "%u.group", gid)) < 0)
                return r;

        if (files.privileged) {
                if ((r = plan_add(p, PLAN_WRITE, PLAN_DIR_USERDB, files.privileged, 0600, "%s.user-privileged", name)) < 0)
                        return r;
                snprintf(target, sizeof(target), "%s.user-privileged", name);
                if ((r = plan_add(p, PLAN_SYMLINK, PLAN_DIR_USERDB, target, 0, "%u.user-privileged", uid)) < 0)
                        return r;
        } else {
                if ((r = plan_add(p, PLAN_REMOVE, PLAN_DIR_USERDB, NULL, 0, "%u.user-privileged", uid)) < 0 ||
                    (r = plan_add(p, PLAN_REMOVE, PLAN_DIR_USERDB, NULL, 0, "%s.user-privileged", name)) < 0)
                        return r;
        }

        for (size_t i = 0; i < req->n_member_of; i++)
                if ((r = plan_add(p, PLAN_WRITE, PLAN_DIR_USERDB, "{}\n", 0644, "%s:%s.membership", name,
                                  req->member_of[i])) < 0)
                        return r;

        if ((r = plan_add(p, PLAN_WRITE, PLAN_DIR_USERS, state_line, 0644, "%s.json", name)) < 0)
                return r;
        snprintf(target, sizeof(target), "%s.user", name);
        if ((r = plan_add(p, PLAN_SYMLINK, PLAN_DIR_USERDB, target, 0, "%u.user", uid)) < 0 ||
            (r = plan_add(p, PLAN_WRITE, PLAN_DIR_USERDB, files.user, 0644, "%s.user", name)) < 0)
                return r;

        if (old)
                return plan_add_stale(p, old, old_member_of, &st, files.member_of);
        return 0;
}

void userdb_set_reserve(struct userdb *db, unsigned percent) {
        db->reserve_percent = percent > USERDB_RESERVE_PERCENT_MAX ? USERDB_RESERVE_PERCENT_MAX : percent;
}

/* Whether the files of a plan fit on the file system of dir_fd and leave the reserve free, in
 * blocks and in inodes (tmpfs limits both). The estimate counts one block per started block of
 * each file and one inode per file or symlink; the journal and temporaries come on top, which
 * the reserve covers. */
static int check_space_at(struct userdb *db, int dir_fd, const char *dir, const struct plan *p, enum plan_dir which,
                          const char *user_name, struct verr *e) {
        unsigned long long need_blocks = 0, need_inodes = 0;
        struct statvfs sv;

        if (db->reserve_percent == 0)
                return 0;
        if (fstatvfs(dir_fd, &sv) < 0)
                return verr_set(e, negative_errno(), "cannot stat the file system of '%s': %m", dir);
        for (size_t i = 0; i < p->n_steps; i++) {
                const struct plan_step *st = &p->steps[i];
                if ((st->dir == PLAN_DIR_STORE ? PLAN_DIR_USERS : st->dir) != which || st->kind == PLAN_REMOVE)
                        continue;
                need_inodes++;
                if (st->kind == PLAN_WRITE && sv.f_frsize > 0)
                        need_blocks += (strlen(st->content) + sv.f_frsize - 1) / sv.f_frsize;
        }
        /* Blocks are shown in KiB, inodes as they are. */
        const struct {
                const char *what, *unit;
                unsigned long long total, avail, need, shown_per_unit_x1024;
        } limits[] = {
                { "full", " KiB", sv.f_blocks, sv.f_bavail, need_blocks, sv.f_frsize },
                { "out of inodes", "", sv.f_files, sv.f_favail, need_inodes, 1024 },
        };
        for (size_t i = 0; i < ELEMENTSOF(limits); i++) {
                unsigned long long reserve = limits[i].total * db->reserve_percent / 100;
                unsigned long long per = limits[i].shown_per_unit_x1024;
                if (limits[i].total == 0 || (limits[i].avail >= limits[i].need && limits[i].avail - limits[i].need >= reserve))
                        continue;
                return verr_set(e, -ENOSPC,
                                "the guest's '%s' is nearly %s (%llu%s free of %llu%s): attaching '%s' would leave less "
                                "than the %u%% the agent keeps free for the rest of the system (vmuser-agent --run-reserve)",
                                dir, limits[i].what, limits[i].avail * per / 1024, limits[i].unit,
                                limits[i].total * per / 1024, limits[i].unit, user_name, db->reserve_percent);
        }
        return 0;
}

static int check_space(struct userdb *db, const struct plan *p, const char *user_name, struct verr *e) {
        int r = check_space_at(db, db->userdb_fd, db->userdb_path, p, PLAN_DIR_USERDB, user_name, e);
        if (r < 0)
                return r;
        return check_space_at(db, db->users_fd, db->state_path, p, PLAN_DIR_USERS, user_name, e);
}

/* The UID and GID of an attach: the request's, the user's old ones (old: NULL for a new user), or
 * a fresh allocation. */
static int choose_ids(struct userdb *db, const struct attach_request *req, const struct attach_state *old,
                      uint32_t *ret_uid, uint32_t *ret_gid, struct verr *e) {
        uint32_t uid, gid;
        int r;

        if (req->has_uid) {
                uid = req->uid;
                gid = req->gid;
        } else if (old) {
                uid = old->uid;
                gid = old->gid;
        } else {
                r = allocate_id(db, req->user_name, &uid);
                if (r < 0)
                        return verr_set(e, r, "no free uid in the agent's range %u-%u (UIDs in quarantine or "
                                        "reserved do not count)", db->range.min, db->range.max);
                gid = uid;
        }

        /* A UID the host chose (--uid, or a kept export's after a guest reboot) that this user
         * does not hold already must be as clean as an allocated one. */
        if (req->has_uid && (!old || old->uid != uid)) {
                char why[256];
                r = id_is_fit(db, uid, req->user_name, why, sizeof(why));
                if (r < 0)
                        return verr_set(e, r, "checking uid %u for leftovers failed: %s", uid, strerror(-r));
                if (r == 0)
                        return verr_set(e, -EBUSY, "%s; it is in quarantine until they are gone", why);
        }
        *ret_uid = uid;
        *ret_gid = gid;
        return 0;
}

/* A replace that moves the user to another UID or home under a live session would leave that
 * session with the old identity or home: refused (-EBUSY). old: the user's state, NULL for a
 * new user. */
static int check_live_replace(struct userdb *db, const struct attach_request *req, const struct attach_state *old,
                              uint32_t uid, uint32_t gid, struct verr *e) {
        if (!old || !req->replace || !db->session_count)
                return 0;
        bool moves = old->uid != uid || old->gid != gid || !streq(old->home_directory, req->home_directory) ||
                     old->has_home != req->has_home ||
                     (old->has_home && (old->home.fstype != req->home.fstype || !streq(old->home.tag, req->home.tag) ||
                                        !streq(old->home.options, req->home.options)));
        if (!moves)
                return 0;
        int n = db->session_count(old, db->session_count_userdata);
        if (n > 0)
                return verr_set(e, -EBUSY, "user '%s' has %d session(s): a replace that changes the UID or "
                                "the home is refused while they last; log them out or detach first",
                                req->user_name, n);
        return 0;
}

/* Journals and applies an attach's plan (ours: a replace of the user's own records). */
static int commit_attach_plan(struct userdb *db, const struct attach_request *req, const struct plan *p, bool ours,
                              struct verr *e) {
        struct plan undo = {};
        int r;

        /* A new user must leave room for the rest of the guest: /run also holds utmp, logind's
         * sessions and every service's runtime files. A replace changes little and may fix things. */
        if (!ours) {
                r = check_space(db, p, req->user_name, e);
                if (r < 0)
                        return r;
                r = plan_build_undo(p, &undo);
                if (r < 0)
                        return r;
        }
        r = plan_commit(db, p, ours ? NULL : &undo);
        plan_done(&undo);
        if (r < 0)
                return verr_set(e, r, "writing the records of '%s' failed: %s", req->user_name, strerror(-r));
        return 0;
}

int userdb_attach(struct userdb *db, const struct attach_request *req, struct attach_result *ret, struct verr *e) {
        _cleanup_close_ int lock_fd = -1;
        _cleanup_json_ json_object *old_member_of = NULL;
        struct attach_state old;
        struct plan p = {};
        bool ours;
        uint32_t uid = 0, gid = 0; /* set by choose_ids() */
        int r;

        r = userdb_lock(db, &lock_fd);
        if (r < 0)
                return verr_set(e, r, "could not take the lock " VMUSER_STATE_DIR "/" VMUSER_LOCK_FILE ": %s",
                                strerror(-r));

        r = read_old_state(db, req->user_name, &old, &old_member_of);
        if (r < 0 && r != -ENOENT)
                return verr_set(e, r, "state file for '%s' is unreadable: %s", req->user_name, strerror(-r));
        ours = r >= 0;

        r = choose_ids(db, req, ours ? &old : NULL, &uid, &gid, e);
        if (r < 0)
                return r;
        r = check_live_replace(db, req, ours ? &old : NULL, uid, gid, e);
        if (r < 0)
                return r;
        r = check_conflicts(db, req, ours, uid, gid, e);
        if (r < 0)
                return r;

        r = build_attach_plan(db, req, uid, gid, ours ? old.attached_usec : userdb_now_usec(), ours ? &old : NULL, old_member_of, &p);
        if (r < 0)
                goto finish;

        r = plan_is_noop(db, &p);
        if (r < 0)
                goto finish;
        if (r > 0) {
                *ret = (struct attach_result) { .uid = uid, .gid = gid, .changed = false };
                goto fill;
        }

        if (ours && !req->replace) {
                r = verr_set(e, -EEXIST, "user '%s' is already attached with a different record (uid %u); "
                             "pass replace to overwrite it", req->user_name, old.uid);
                goto finish;
        }
        if (ours) {
                /* A replace: the state file's timestamp follows the new record. */
                plan_done(&p);
                r = build_attach_plan(db, req, uid, gid, userdb_now_usec(), &old, old_member_of, &p);
                if (r < 0)
                        goto finish;
        }

        r = commit_attach_plan(db, req, &p, ours, e);
        if (r < 0)
                goto finish;
        if (uid >= db->range.min && uid <= db->range.max)
                (void) uid_highwater_raise(db->highwater_fd, uid);
        *ret = (struct attach_result) { .uid = uid, .gid = gid, .changed = true };
fill:
        ret->replaced = ours;
        strcpy(ret->user_name, req->user_name);
        strcpy(ret->home_directory, req->home_directory);
        r = 0;
finish:
        plan_done(&p);
        return r;
}

int userdb_detach_locked(struct userdb *db, const char *user_name, struct attach_state *ret_old, struct verr *e) {
        _cleanup_json_ json_object *old_member_of = NULL;
        struct attach_state old;
        struct plan p = {};
        int r;

        if (!name_is_valid(user_name))
                return verr_set(e, -EINVAL, "user name '%s' is not valid", user_name);
        r = read_old_state(db, user_name, &old, &old_member_of);
        if (r == -ENOENT)
                return verr_set(e, -ENOENT, "user '%s' is not attached", user_name);
        if (r < 0)
                return verr_set(e, r, "state file for '%s' is unreadable: %s", user_name, strerror(-r));

        strcpy(p.user_name, user_name);
        if (db->store) {
                if ((r = plan_add(&p, PLAN_REMOVE, PLAN_DIR_STORE, NULL, 0, "%s", user_name)) < 0)
                        goto finish;
        } else if ((r = plan_add(&p, PLAN_REMOVE, PLAN_DIR_USERDB, NULL, 0, "%s.user", user_name)) < 0 ||
            (r = plan_add_stale(&p, &old, old_member_of, NULL, NULL)) < 0 ||
            (r = plan_add(&p, PLAN_REMOVE, PLAN_DIR_USERDB, NULL, 0, "%s.user-privileged", user_name)) < 0 ||
            (r = plan_add(&p, PLAN_REMOVE, PLAN_DIR_USERDB, NULL, 0, "%s.group", user_name)) < 0 ||
            (r = plan_add(&p, PLAN_REMOVE, PLAN_DIR_USERS, NULL, 0, "%s.json", user_name)) < 0)
                goto finish;

        /* The UID may leave something behind now: the next attach looks afresh. */
        batch_forget(db);
        r = plan_commit(db, &p, NULL);
        if (r < 0) {
                verr_set(e, r, "removing the records of '%s' failed: %s", user_name, strerror(-r));
                goto finish;
        }
        if (ret_old)
                *ret_old = old;
finish:
        plan_done(&p);
        return r;
}
