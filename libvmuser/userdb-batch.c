/* userdb-batch.c: what the allocator asks the file system about each candidate UID, read once
 * per batch of attaches (with the record store, as userdb-ids.c's NSS view and leftovers scan):
 * which IDs have a drop-in in the userdb directory (N.user, N.group: records nss-systemd may
 * refuse or not see yet), which are reserved for a kept export (reserved/N) and which are
 * quarantined (quarantine/N). One listing of three (mostly empty) directories per batch instead
 * of four probes per candidate (each a syscall, dear under TCG).
 *
 * A mark says "ask exactly" (the reserved UID's owner, the quarantine file to remove); no mark
 * says "nothing there". The batch is forgotten when this agent changes any of them (a detach, the
 * host's reservedUids, a quarantine set); another agent's change within the batch's window is the
 * race a single probe has, over a longer window. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dir-util.h"
#include "uid-alloc.h"
#include "userdb-internal.h"

struct id_mark {
        uint32_t id;
        unsigned bits; /* enum batch_mark */
};

/* "N" (suffix NULL) or "N" + suffix as an ID; false for anything else. */
static bool parse_id_name(const char *name, const char *suffix, uint32_t *ret) {
        char *end;
        unsigned long v;

        if (name[0] < '0' || name[0] > '9')
                return false;
        errno = 0;
        v = strtoul(name, &end, 10);
        if (errno != 0 || v > UINT32_MAX || !streq(end, suffix ? suffix : ""))
                return false;
        *ret = (uint32_t) v;
        return true;
}

static int add_mark(struct userdb *db, uint32_t id, unsigned bits) {
        if (db->n_marks == db->marks_cap) {
                size_t cap = db->marks_cap ? db->marks_cap * 2 : 16;
                struct id_mark *m = reallocarray(db->marks, cap, sizeof(*m));
                if (!m)
                        return -ENOMEM;
                db->marks = m;
                db->marks_cap = cap;
        }
        db->marks[db->n_marks++] = (struct id_mark) { id, bits };
        return 0;
}

static int visit_userdb(int dir_fd, const char *name, void *userdata) {
        uint32_t id;
        if (parse_id_name(name, ".user", &id) || parse_id_name(name, ".group", &id))
                return add_mark(userdata, id, BATCH_MARK_DROPIN);
        return 0;
}

static int visit_reserved(int dir_fd, const char *name, void *userdata) {
        uint32_t id;
        return parse_id_name(name, NULL, &id) ? add_mark(userdata, id, BATCH_MARK_RESERVED) : 0;
}

static int visit_quarantine(int dir_fd, const char *name, void *userdata) {
        uint32_t id;
        return parse_id_name(name, NULL, &id) ? add_mark(userdata, id, BATCH_MARK_QUARANTINED) : 0;
}

static int cmp_mark(const void *a, const void *b) {
        const struct id_mark *x = a, *y = b;
        return x->id < y->id ? -1 : x->id > y->id;
}

/* Lists one subdirectory of the state directory (absent: no marks). */
static int list_state_subdir(struct userdb *db, const char *sub, int (*visit)(int, const char *, void *)) {
        _cleanup_close_ int fd = openat(db->state_fd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : negative_errno();
        return dir_foreach_at(fd, visit, db);
}

static int load_marks(struct userdb *db) {
        int r;

        db->n_marks = 0;
        db->marks_valid = false;
        if ((r = dir_foreach_at(db->userdb_fd, visit_userdb, db)) < 0 ||
            (r = list_state_subdir(db, UID_RESERVED_DIR, visit_reserved)) < 0 ||
            (r = list_state_subdir(db, UID_QUARANTINE_DIR, visit_quarantine)) < 0)
                return r;
        if (db->n_marks > 1) /* qsort() wants a base even for none */
                qsort(db->marks, db->n_marks, sizeof(*db->marks), cmp_mark);
        db->marks_usec = userdb_now_usec();
        db->marks_valid = true;
        return 0;
}

int batch_marks(struct userdb *db, uint32_t id, unsigned *ret_bits) {
        if (!db->store)
                return 0;
        if (!db->marks_valid || !batch_fresh(db->marks_usec)) {
                int r = load_marks(db);
                if (r < 0)
                        return r;
        }
        unsigned bits = 0;
        /* The first mark of id (an ID may have several: a drop-in and a quarantine file). */
        size_t lo = 0, hi = db->n_marks;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (db->marks[mid].id < id)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        for (; lo < db->n_marks && db->marks[lo].id == id; lo++)
                bits |= db->marks[lo].bits;
        *ret_bits = bits;
        return 1;
}

void batch_marks_forget(struct userdb *db) {
        db->marks_valid = false;
}

int userdb_set_reservations(struct userdb *db, json_object *array, struct verr *e) {
        /* Whatever the outcome, some may be on disk now that the batch does not know of. */
        batch_marks_forget(db);
        return uid_reservations_from_json(db->state_fd, array, &db->range, e);
}
