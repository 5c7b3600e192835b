/* userdb-plan.c: a change to the guest's users as a plan (see userdb-internal.h).
 *
 * A plan is an ordered list of steps: write a file, make a symlink, remove an entry (in the
 * userdb or users directory), or set/remove a user's line in the record store. plan_commit()
 * journals the whole plan to pending/NAME.json (the commit point), applies the steps, and
 * drops the journal; replay_journal() finishes one a crash interrupted. A first attach carries
 * its undo (every created entry removed again) for when a step fails. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic-file.h"
#include "json-util.h"
#include "names.h"
#include "record-store.h"
#include "userdb-internal.h"

void plan_done(struct plan *p) {
        for (size_t i = 0; i < p->n_steps; i++)
                erase_and_free(p->steps[i].content);
        free(p->steps);
        *p = (struct plan) {};
}

int plan_add(struct plan *p, enum plan_kind kind, enum plan_dir dir, const char *content, mode_t mode,
                    const char *name_fmt, ...) {
        struct plan_step *steps, *s;
        va_list ap;

        steps = realloc(p->steps, (p->n_steps + 1) * sizeof(*steps));
        if (!steps)
                return -ENOMEM;
        p->steps = steps;
        s = &p->steps[p->n_steps];
        *s = (struct plan_step) { .kind = kind, .dir = dir, .mode = mode };
        va_start(ap, name_fmt);
        vsnprintf(s->name, sizeof(s->name), name_fmt, ap);
        va_end(ap);
        if (content) {
                s->content = strdup(content);
                if (!s->content)
                        return -ENOMEM;
        }
        p->n_steps++;
        return 0;
}

static int dir_fd_of(const struct userdb *db, enum plan_dir d) {
        return d == PLAN_DIR_USERDB ? db->userdb_fd : db->users_fd;
}

static int plan_step_apply(const struct userdb *db, const struct plan_step *s) {
        int fd = dir_fd_of(db, s->dir);
        if (s->dir == PLAN_DIR_STORE) {
                if (!db->store)
                        return -EINVAL;
                if (s->kind == PLAN_WRITE && s->joined)
                        return record_store_put_joined(db->store, s->name, s->content, s->uid, s->gid);
                if (s->kind == PLAN_WRITE)
                        return record_store_put(db->store, s->name, s->content);
                return s->kind == PLAN_REMOVE ? record_store_remove(db->store, s->name) : -EINVAL;
        }
        switch (s->kind) {
        case PLAN_WRITE:
                return atomic_write_at(fd, s->name, s->content, strlen(s->content), s->mode);
        case PLAN_SYMLINK:
                return atomic_symlink_at(fd, s->name, s->content);
        case PLAN_REMOVE:
                return unlink_if_exists_at(fd, s->name);
        }
        return -EINVAL;
}

/* 1 when applying the step would change nothing. */
static int plan_step_is_noop(const struct userdb *db, const struct plan_step *s) {
        int fd = dir_fd_of(db, s->dir);
        if (s->dir == PLAN_DIR_STORE) {
                if (!db->store)
                        return -EINVAL;
                if (s->kind == PLAN_REMOVE)
                        return !record_store_has(db->store, s->name);
                return s->content ? record_store_equals(db->store, s->name, s->content) : 0;
        }
        switch (s->kind) {
        case PLAN_WRITE:
                return file_equals_at(fd, s->name, s->content, strlen(s->content), s->mode);
        case PLAN_SYMLINK:
                return symlink_equals_at(fd, s->name, s->content);
        case PLAN_REMOVE:
                if (faccessat(fd, s->name, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
                        return 0;
                return errno == ENOENT ? 1 : negative_errno();
        }
        return -EINVAL;
}

static const char *const kind_names[] = { "write", "symlink", "remove" };
static const char *const dir_names[] = { "userdb", "users", "store" };

int plan_to_json(const struct plan *p, char **ret) {
        _cleanup_json_ json_object *obj = json_object_new_object();
        json_object *steps = json_object_new_array();
        const char *s;

        if (!obj || !steps || json_object_object_add(obj, "steps", steps) < 0) {
                if (!obj || !json_object_object_get_ex(obj, "steps", NULL))
                        json_object_put(steps);
                return -ENOMEM;
        }
        json_object_object_add(obj, "userName", json_object_new_string(p->user_name));
        for (size_t i = 0; i < p->n_steps; i++) {
                const struct plan_step *st = &p->steps[i];
                json_object *o = json_object_new_object();
                if (!o || json_object_array_add(steps, o) < 0)
                        return -ENOMEM;
                json_object_object_add(o, "op", json_object_new_string(kind_names[st->kind]));
                json_object_object_add(o, "dir", json_object_new_string(dir_names[st->dir]));
                json_object_object_add(o, "name", json_object_new_string(st->name));
                if (st->content)
                        json_object_object_add(o, "content", json_object_new_string(st->content));
                json_object_object_add(o, "mode", json_object_new_int(st->mode));
        }
        s = json_to_compact(obj);
        if (!s)
                return -ENOMEM;
        *ret = strdup(s);
        explicit_bzero((char *) s, strlen(s));
        return *ret ? 0 : -ENOMEM;
}

static bool step_name_is_safe(const char *name) {
        return name[0] && name[0] != '.' && !strchr(name, '/') && strlen(name) < sizeof(((struct plan_step *) 0)->name);
}

int plan_from_json(json_object *obj, struct plan *ret) {
        struct plan p = {};
        json_object *steps;
        const char *name;
        int r;

        if (json_get_string(obj, "userName", &name) < 0 || !name_is_valid(name))
                return -EBADMSG;
        strcpy(p.user_name, name);
        if (json_get_array(obj, "steps", &steps) < 0)
                return -EBADMSG;
        for (size_t i = 0; i < json_object_array_length(steps); i++) {
                json_object *o = json_object_array_get_idx(steps, i);
                const char *op, *dir, *step_name, *content = NULL;
                uint32_t mode;
                enum plan_kind k;

                if (json_get_string(o, "op", &op) < 0 || json_get_string(o, "dir", &dir) < 0 ||
                    json_get_string(o, "name", &step_name) < 0 || json_get_uint32(o, "mode", &mode) < 0 ||
                    !step_name_is_safe(step_name) || (mode & ~07777u))
                        goto bad;
                if (streq(op, "write"))
                        k = PLAN_WRITE;
                else if (streq(op, "symlink"))
                        k = PLAN_SYMLINK;
                else if (streq(op, "remove"))
                        k = PLAN_REMOVE;
                else
                        goto bad;
                if (k != PLAN_REMOVE && json_get_string(o, "content", &content) < 0)
                        goto bad;
                enum plan_dir d;
                if (streq(dir, "userdb"))
                        d = PLAN_DIR_USERDB;
                else if (streq(dir, "users"))
                        d = PLAN_DIR_USERS;
                else if (streq(dir, "store") && k != PLAN_SYMLINK && name_is_valid(step_name))
                        d = PLAN_DIR_STORE;
                else
                        goto bad;
                r = plan_add(&p, k, d, content, (mode_t) mode, "%s", step_name);
                if (r < 0) {
                        plan_done(&p);
                        return r;
                }
        }
        *ret = p;
        return 0;
bad:
        plan_done(&p);
        return -EBADMSG;
}

/* The undo of a plan that only created entries (a first attach): remove each of them, NAME.user
 * first so the user disappears before its parts. Removing needs no space, so this works where
 * the plan failed for lack of it. */
int plan_build_undo(const struct plan *p, struct plan *ret) {
        struct plan u = {};
        int r = 0;

        strcpy(u.user_name, p->user_name);
        for (size_t i = p->n_steps; i > 0 && r >= 0; i--) {
                const struct plan_step *s = &p->steps[i - 1];
                if (s->kind != PLAN_REMOVE)
                        r = plan_add(&u, PLAN_REMOVE, s->dir, NULL, 0, "%s", s->name);
        }
        if (r < 0) {
                plan_done(&u);
                return r;
        }
        *ret = u;
        return 0;
}

/* Journals, applies and un-journals a plan. The journal rename is the commit point. When a step
 * fails and undo is given, the entries already written are removed again and the journal is
 * dropped (nothing changed); without undo the journal stays for the next start-up to finish. */
int plan_commit(struct userdb *db, const struct plan *p, const struct plan *undo) {
        _cleanup_erase_free_ char *journal = NULL;
        char name[VMUSER_NAME_MAX + 8];
        int r;

        /* One line appended to the record store is atomic by itself (record-store.h), and a failed
         * append changes nothing: no journal, no undo. */
        if (p->n_steps == 1 && p->steps[0].dir == PLAN_DIR_STORE)
                return plan_step_apply(db, &p->steps[0]);

        r = plan_to_json(p, &journal);
        if (r < 0)
                return r;
        snprintf(name, sizeof(name), "%s.json", p->user_name);
        r = atomic_write_at(db->pending_fd, name, journal, strlen(journal), 0600);
        if (r < 0)
                return r;
        for (size_t i = 0; i < p->n_steps; i++) {
                r = plan_step_apply(db, &p->steps[i]);
                if (r < 0) {
                        if (!undo)
                                return r;
                        for (size_t j = 0; j < undo->n_steps; j++)
                                if (plan_step_apply(db, &undo->steps[j]) < 0)
                                        return r; /* the journal stays for start-up */
                        (void) unlink_if_exists_at(db->pending_fd, name);
                        return r;
                }
        }
        return unlink_if_exists_at(db->pending_fd, name);
}

int replay_journal(struct userdb *db, const char *file) {
        _cleanup_json_ json_object *obj = NULL;
        struct plan p = {};
        int r;

        r = json_read_file_at(db->pending_fd, file, 4u * 1024u * 1024u, &obj);
        if (r >= 0)
                r = plan_from_json(obj, &p);
        if (r < 0)
                /* A journal we cannot read was never committed (the rename is atomic), or was
                 * tampered with: either way there is nothing safe to apply. */
                return unlink_if_exists_at(db->pending_fd, file);
        for (size_t i = 0; i < p.n_steps && r >= 0; i++)
                r = plan_step_apply(db, &p.steps[i]);
        plan_done(&p);
        if (r < 0)
                return r;
        return unlink_if_exists_at(db->pending_fd, file);
}

/* Steps that remove what `old` installed and `new_state` (may be NULL: detach) does not. */
int plan_add_stale(struct plan *p, const struct attach_state *old, json_object *old_member_of,
                          const struct attach_state *new_state, json_object *new_member_of) {
        int r;

        if (!new_state || old->uid != new_state->uid) {
                if ((r = plan_add(p, PLAN_REMOVE, PLAN_DIR_USERDB, NULL, 0, "%u.user", old->uid)) < 0 ||
                    (r = plan_add(p, PLAN_REMOVE, PLAN_DIR_USERDB, NULL, 0, "%u.user-privileged", old->uid)) < 0)
                        return r;
        }
        if (!new_state || old->gid != new_state->gid)
                if ((r = plan_add(p, PLAN_REMOVE, PLAN_DIR_USERDB, NULL, 0, "%u.group", old->gid)) < 0)
                        return r;

        for (size_t i = 0; old_member_of && i < json_object_array_length(old_member_of); i++) {
                const char *g = json_object_get_string(json_object_array_get_idx(old_member_of, i));
                bool keep = false;
                if (!g || !name_is_valid(g))
                        continue;
                for (size_t j = 0; new_member_of && j < json_object_array_length(new_member_of); j++)
                        keep = keep || streq_ptr(g, json_object_get_string(json_object_array_get_idx(new_member_of, j)));
                if (!keep && (r = plan_add(p, PLAN_REMOVE, PLAN_DIR_USERDB, NULL, 0, "%s:%s.membership", old->user_name, g)) < 0)
                        return r;
        }
        return 0;
}

int plan_is_noop(struct userdb *db, const struct plan *p) {
        for (size_t i = 0; i < p->n_steps; i++) {
                int r = plan_step_is_noop(db, &p->steps[i]);
                if (r <= 0)
                        return r;
        }
        return 1;
}
