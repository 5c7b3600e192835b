/* userdb-ids.c: who else holds a name or an ID, and which UID a new user gets (see
 * userdb-internal.h).
 *
 * Conflict checks ask NSS (through one nss-view.h snapshot per batch of attaches when the
 * guest's NSS sources all enumerate, and the record store for our own users, whom the agent's
 * own lookups do not see); allocation walks the range from the high-water mark, skipping IDs
 * that are taken, reserved for another user's kept export, or hold leftovers of an earlier
 * user (one uid_leftovers_scan() per batch; a marked candidate gets the exact check). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nss-util.h"
#include "nss-view.h"
#include "record-store.h"
#include "uid-alloc.h"
#include "uid-cleanup.h"
#include "userdb-internal.h"

/* How long one NSS view and one leftovers scan serve the attaches that follow (a batch). A
 * user or file appearing meanwhile is the same race a single check has, over a longer window. */
#define BATCH_VIEW_USEC (1000u * 1000u)
#define DIRTY_WINDOW 65536u

bool batch_fresh(uint64_t taken) {
        uint64_t now = userdb_now_usec();
        return now >= taken && now - taken < BATCH_VIEW_USEC;
}

void batch_forget(struct userdb *db) {
        db->view = nss_view_free(db->view);
        free(db->dirty);
        db->dirty = NULL;
        batch_marks_forget(db);
}

/* The NSS view of this batch, or NULL when NSS must be asked one lookup at a time. Only with
 * the record store: it knows our users (the agent's own lookups skip its service), while
 * drop-ins written after the view was taken would be missing from it. */
static struct nss_view *fresh_view(struct userdb *db) {
        if (!db->store)
                return NULL;
        /* Whether /etc/passwd and /etc/group changed is asked once per hold of the lock (an
         * attach makes up to a dozen lookups). */
        if (db->view && batch_fresh(db->view_usec) && (db->view_checked || !nss_view_stale(db->view))) {
                db->view_checked = true;
                return db->view;
        }
        db->view = nss_view_free(db->view);
        if (nss_view_new(NULL, &db->view) < 0)
                return NULL;
        db->view_usec = userdb_now_usec();
        db->view_checked = true;
        return db->view;
}

/* One NSS look-up by name or ID (nss-util.c retries with a larger buffer). ret_name (if set)
 * receives the name found. 1 = exists, 0 = not found, <0 = error. */
static int nss_lookup(bool group, const char *name, uint32_t id, char *ret_name, size_t ret_name_size,
                      uint32_t *ret_id) {
        uint32_t found_id;
        int r;

        if (group) {
                _cleanup_free_ struct group *gr = NULL;
                r = name ? nss_getgrnam(name, &gr) : nss_getgrgid(id, &gr);
                if (r < 0)
                        return r == -ENOENT ? 0 : r;
                found_id = gr->gr_gid;
                if (ret_name)
                        snprintf(ret_name, ret_name_size, "%s", gr->gr_name);
        } else {
                _cleanup_free_ struct passwd *pw = NULL;
                r = name ? nss_getpwnam(name, &pw) : nss_getpwuid(id, &pw);
                if (r < 0)
                        return r == -ENOENT ? 0 : r;
                found_id = pw->pw_uid;
                if (ret_name)
                        snprintf(ret_name, ret_name_size, "%s", pw->pw_name);
        }
        if (ret_id)
                *ret_id = found_id;
        return 1;
}

/* nss_lookup() through the batch's view when there is one. */
static int lookup(struct userdb *db, bool group, const char *name, uint32_t id, char *ret_name, size_t ret_name_size,
                  uint32_t *ret_id) {
        struct nss_view *v = fresh_view(db);
        const char *found;
        int r;

        if (!v)
                return nss_lookup(group, name, id, ret_name, ret_name_size, ret_id);
        if (name)
                return nss_view_by_name(v, group, name, ret_id);
        r = nss_view_by_id(v, group, id, &found);
        if (r > 0 && ret_name)
                snprintf(ret_name, ret_name_size, "%s", found);
        return r;
}

static int id_is_free(struct userdb *db, uint32_t id) {
        char name[32];
        int r;

        r = lookup(db, false, NULL, id, NULL, 0, NULL);
        if (r != 0)
                return r < 0 ? r : 0;
        r = lookup(db, true, NULL, id, NULL, 0, NULL);
        if (r != 0)
                return r < 0 ? r : 0;
        /* Our own users (the agent's lookups skip its own service) and records nss-systemd would
         * refuse (or not yet see) still occupy their number. */
        if (db->store && (record_store_owner_of(db->store, false, id) || record_store_owner_of(db->store, true, id)))
                return 0;
        unsigned marks;
        r = batch_marks(db, id, &marks);
        if (r > 0)
                return marks & BATCH_MARK_DROPIN ? 0 : 1;
        snprintf(name, sizeof(name), "%u.user", id);
        if (faccessat(db->userdb_fd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
                return 0;
        snprintf(name, sizeof(name), "%u.group", id);
        if (faccessat(db->userdb_fd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
                return 0;
        return 1;
}

/* How many candidates with leftovers one allocation looks at before giving up. */
#define ALLOC_DIRTY_MAX 64

/* A UID may go to user_name: not reserved for someone else, and nothing of an earlier user of
 * it is left (process, IPC object, file in the places uid-cleanup.c searches). 1 = fit, 0 = not
 * (reason in why), <0 = error. A UID found dirty is quarantined; a clean one leaves quarantine. */
/* 1 when id is not reserved for another user than user_name, 0 (reason in why) when it is, <0. */
static int id_is_free_of_reservations(struct userdb *db, uint32_t id, const char *user_name, char *why,
                                      size_t why_size) {
        char owner[VMUSER_NAME_MAX + 1];
        int r = uid_reserved_for(db->state_fd, id, owner, sizeof(owner));

        if (r < 0)
                return r;
        if (r > 0 && !streq(owner, user_name)) {
                snprintf(why, why_size, "uid %u is reserved for '%s', whose home export the host keeps", id, owner);
                return 0;
        }
        return 1;
}

int id_is_fit(struct userdb *db, uint32_t id, const char *user_name, char *why, size_t why_size) {
        int r;

        r = id_is_free_of_reservations(db, id, user_name, why, why_size);
        if (r <= 0)
                return r;
        r = uid_leftovers(db->cleanup_root, id, NULL);
        if (r < 0)
                return r;
        if (r > 0) {
                (void) uid_quarantine_set(db->state_fd, id, true);
                batch_marks_forget(db);
                snprintf(why, why_size,
                         "uid %u still owns %d process(es), IPC object(s) or file(s) of an earlier user", id, r);
                return 0;
        }
        (void) uid_quarantine_set(db->state_fd, id, false);
        return 1;
}

/* id_is_fit() for allocation, with one leftovers scan for the batch (a window of the range from
 * id on) instead of one per candidate. */
static int id_is_fit_batch(struct userdb *db, uint32_t id, const char *user_name, char *why, size_t why_size) {
        unsigned marks = 0;
        int r;

        /* No batch (or no listing): ask the files. */
        if (batch_marks(db, id, &marks) <= 0)
                marks = BATCH_MARK_RESERVED | BATCH_MARK_QUARANTINED;
        if (marks & BATCH_MARK_RESERVED) {
                r = id_is_free_of_reservations(db, id, user_name, why, why_size);
                if (r <= 0)
                        return r;
        }
        if (!db->dirty || !batch_fresh(db->dirty_usec) || id < db->dirty_lo || id > db->dirty_hi) {
                uid_t hi = db->range.max - id < DIRTY_WINDOW - 1 ? db->range.max : id + DIRTY_WINDOW - 1;
                free(db->dirty);
                db->dirty = malloc(((size_t) hi - id) / 8 + 1);
                if (!db->dirty)
                        return -ENOMEM;
                r = uid_leftovers_scan(db->cleanup_root, id, hi, db->dirty);
                if (r < 0) {
                        free(db->dirty);
                        db->dirty = NULL;
                        return r;
                }
                db->dirty_lo = id;
                db->dirty_hi = hi;
                db->dirty_usec = userdb_now_usec();
        }
        /* Marked: what the scan saw may be gone since; the exact check decides (rare). */
        if (db->dirty[(id - db->dirty_lo) / 8] & (1u << ((id - db->dirty_lo) % 8)))
                return id_is_fit(db, id, user_name, why, why_size);
        if (marks & BATCH_MARK_QUARANTINED)
                (void) uid_quarantine_set(db->state_fd, id, false);
        return 1;
}

/* Never-used IDs of this boot first (from the high-water mark up), then freed ones from the
 * start of the range; each candidate must be free in NSS and fit (id_is_fit()). */
int allocate_id(struct userdb *db, const char *user_name, uint32_t *ret) {
        uint32_t start;
        unsigned dirty = 0;
        char why[256];
        int r;

        r = uid_highwater_get(db->highwater_fd, &db->range, &start);
        if (r < 0)
                return r;
        if (start < db->range.min || start > db->range.max)
                start = db->range.min;
        for (int pass = 0; pass < 2; pass++) {
                uint32_t from = pass == 0 ? start : db->range.min, to = pass == 0 ? db->range.max : start - 1;
                if (pass == 1 && start == db->range.min)
                        break;
                for (uint64_t id = from; id <= to; id++) {
                        if (id_is_special((uint32_t) id))
                                continue;
                        r = id_is_free(db, (uint32_t) id);
                        if (r < 0)
                                return r;
                        if (r == 0)
                                continue;
                        r = id_is_fit_batch(db, (uint32_t) id, user_name, why, sizeof(why));
                        if (r < 0)
                                return r;
                        if (r > 0) {
                                *ret = (uint32_t) id;
                                return 0;
                        }
                        if (++dirty >= ALLOC_DIRTY_MAX)
                                return -ENOSPC;
                }
        }
        return -ENOSPC;
}

int check_conflicts(struct userdb *db, const struct attach_request *req, bool ours, uint32_t uid, uint32_t gid,
                           struct verr *e) {
        char other[256];
        uint32_t other_id;
        int r;

        if (!ours) {
                r = lookup(db, false, req->user_name, 0, NULL, 0, &other_id);
                if (r < 0)
                        return verr_set(e, r, "looking up user '%s' failed: %s", req->user_name, strerror(-r));
                if (r > 0)
                        return verr_set(e, -EEXIST, "user '%s' already exists in the guest (uid %u) and was not attached by vmuser",
                                        req->user_name, other_id);
                r = lookup(db, true, req->user_name, 0, NULL, 0, &other_id);
                if (r < 0)
                        return verr_set(e, r, "looking up group '%s' failed: %s", req->user_name, strerror(-r));
                if (r > 0)
                        return verr_set(e, -EEXIST, "group '%s' already exists in the guest (gid %u) and was not attached by vmuser",
                                        req->user_name, other_id);
        }

        /* With the record store the agent's own lookups skip its service: ask the store. */
        const char *owner = db->store ? record_store_owner_of(db->store, false, uid) : NULL;
        if (owner && !streq(owner, req->user_name))
                return verr_set(e, -EEXIST, "uid %u already belongs to user '%s' in the guest", uid, owner);
        owner = db->store ? record_store_owner_of(db->store, true, gid) : NULL;
        if (owner && !streq(owner, req->user_name))
                return verr_set(e, -EEXIST, "gid %u already belongs to group '%s' in the guest", gid, owner);

        r = lookup(db, false, NULL, uid, other, sizeof(other), NULL);
        if (r < 0)
                return verr_set(e, r, "looking up uid %u failed: %s", uid, strerror(-r));
        if (r > 0 && !streq(other, req->user_name))
                return verr_set(e, -EEXIST, "uid %u already belongs to user '%s' in the guest", uid, other);
        r = lookup(db, true, NULL, gid, other, sizeof(other), NULL);
        if (r < 0)
                return verr_set(e, r, "looking up gid %u failed: %s", gid, strerror(-r));
        if (r > 0 && !streq(other, req->user_name))
                return verr_set(e, -EEXIST, "gid %u already belongs to group '%s' in the guest", gid, other);

        for (size_t i = 0; i < req->n_member_of; i++) {
                r = lookup(db, true, req->member_of[i], 0, NULL, 0, NULL);
                if (r < 0)
                        return verr_set(e, r, "looking up group '%s' failed: %s", req->member_of[i], strerror(-r));
                if (r == 0)
                        return verr_set(e, -ENOENT, "group '%s' (memberOf) does not exist in the guest", req->member_of[i]);
        }
        return 0;
}
