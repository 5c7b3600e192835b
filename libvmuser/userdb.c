/* userdb.c: plans, journal, apply and recovery for the guest's transient users (see userdb.h).
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
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "atomic-file.h"
#include "json-util.h"
#include "nss-view.h"
#include "record-store.h"
#include "macro.h"
#include "paths.h"
#include "uid-alloc.h"
#include "uid-cleanup.h"

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
        uint8_t *dirty;
        uid_t dirty_lo, dirty_hi;
        uint64_t dirty_usec;
        char userdb_path[PATH_MAX]; /* for messages */
        char state_path[PATH_MAX];
};

static void plan_done(struct plan *p) {
        for (size_t i = 0; i < p->n_steps; i++)
                erase_and_free(p->steps[i].content);
        free(p->steps);
        *p = (struct plan) {};
}

static int plan_add(struct plan *p, enum plan_kind kind, enum plan_dir dir, const char *content, mode_t mode,
                    const char *name_fmt, ...) _printf_(6, 7);
#include <stdarg.h>
static int plan_add(struct plan *p, enum plan_kind kind, enum plan_dir dir, const char *content, mode_t mode,
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
                const char *line = db->store ? record_store_get(db->store, s->name) : NULL;
                if (!db->store)
                        return -EINVAL;
                return s->kind == PLAN_REMOVE ? !line : line && s->content && streq(line, s->content);
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

static int plan_to_json(const struct plan *p, char **ret) {
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

static int plan_from_json(json_object *obj, struct plan *ret) {
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
static int plan_build_undo(const struct plan *p, struct plan *ret) {
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
static int plan_commit(struct userdb *db, const struct plan *p, const struct plan *undo) {
        _cleanup_erase_free_ char *journal = NULL;
        char name[VMUSER_NAME_MAX + 8];
        int r;

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

static int replay_journal(struct userdb *db, const char *file) {
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

int userdb_lock(struct userdb *db, int *ret_lock_fd) {
        _cleanup_close_ int fd = -1;

        fd = openat(db->state_fd, VMUSER_LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return negative_errno();
        for (int i = 0; i < 500; i++) {
                if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
                        *ret_lock_fd = TAKE_FD(fd);
                        return 0;
                }
                if (errno != EWOULDBLOCK && errno != EINTR)
                        return negative_errno();
                usleep(10 * 1000);
        }
        return -EWOULDBLOCK;
}

static int clear_detaching(const struct attach_state *s, void *userdata) {
        struct userdb *db = userdata;
        if (s->detaching)
                (void) attach_state_set_detaching(db->users_fd, s->user_name, false);
        return 0;
}

static int read_old_state(struct userdb *db, const char *name, struct attach_state *ret, json_object **ret_member_of);

static int read_text_at(int dir_fd, const char *file, char **ret) {
        _cleanup_json_ json_object *obj = NULL;
        const char *text;
        int r = json_read_file_at(dir_fd, file, VMUSER_STATE_FILE_MAX, &obj);
        if (r < 0)
                return r;
        text = json_to_compact(obj);
        if (!text || !(*ret = strdup(text)))
                return -ENOMEM;
        explicit_bzero((char *) text, strlen(text));
        return 0;
}

/* One user attached as drop-ins before the agent used the record store: its records go into the
 * store, then its drop-ins go. A crash in between leaves both (the same records); the next start
 * finds the drop-ins again and removes them. */
static int migrate_user(struct userdb *db, const char *name) {
        _cleanup_(erase_and_freep) char *user = NULL, *group = NULL, *priv = NULL, *line = NULL;
        _cleanup_json_ json_object *member_of = NULL;
        struct attach_state st;
        char file[VMUSER_NAME_MAX * 2 + 32];
        int r;

        r = read_old_state(db, name, &st, &member_of);
        if (r < 0)
                return r == -ENOENT ? 0 : r; /* not ours */
        if (!record_store_get(db->store, name)) {
                snprintf(file, sizeof(file), "%s.user", name);
                if ((r = read_text_at(db->userdb_fd, file, &user)) < 0)
                        return r;
                snprintf(file, sizeof(file), "%s.group", name);
                if ((r = read_text_at(db->userdb_fd, file, &group)) < 0)
                        return r;
                snprintf(file, sizeof(file), "%s.user-privileged", name);
                if ((r = read_text_at(db->userdb_fd, file, &priv)) < 0 && r != -ENOENT)
                        return r;
                if ((r = record_store_make_line(name, user, group, priv, &line)) < 0 ||
                    (r = record_store_put(db->store, name, line)) < 0)
                        return r;
        }
        const char *suffixes[] = { "user", "user-privileged", "group" };
        for (size_t i = 0; i < 2 * ELEMENTSOF(suffixes); i++) {
                const char *suffix = suffixes[i / 2];
                if (i % 2 == 0)
                        snprintf(file, sizeof(file), "%s.%s", name, suffix);
                else
                        snprintf(file, sizeof(file), "%u.%s", streq(suffix, "group") ? st.gid : st.uid, suffix);
                if ((r = unlink_if_exists_at(db->userdb_fd, file)) < 0)
                        return r;
        }
        for (size_t i = 0; member_of && i < json_object_array_length(member_of); i++) {
                const char *g = json_object_get_string(json_object_array_get_idx(member_of, i));
                if (!g || !name_is_valid(g))
                        continue;
                snprintf(file, sizeof(file), "%s:%s.membership", name, g);
                if ((r = unlink_if_exists_at(db->userdb_fd, file)) < 0)
                        return r;
        }
        return 1;
}

/* Drop-ins of our users left in the userdb directory (an upgrade from the drop-in agent). */
static int migrate_dropins(struct userdb *db) {
        _cleanup_close_ int dfd = -1;
        struct dirent *de;
        int r = 0, n = 0;
        DIR *d;

        dfd = openat(db->userdb_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return negative_errno();
        d = fdopendir(dfd);
        if (!d)
                return negative_errno();
        TAKE_FD(dfd);
        while ((de = readdir(d))) {
                char name[VMUSER_NAME_MAX + 1];
                size_t len = strlen(de->d_name);
                if (de->d_type != DT_REG || len < 6 || len - 5 > VMUSER_NAME_MAX || !streq(de->d_name + len - 5, ".user"))
                        continue;
                memcpy(name, de->d_name, len - 5);
                name[len - 5] = '\0';
                if (!name_is_valid(name))
                        continue;
                int k = migrate_user(db, name);
                if (k < 0 && r == 0)
                        r = k;
                n += k > 0;
        }
        closedir(d);
        return r < 0 ? r : n;
}

int userdb_recover(struct userdb *db) {
        _cleanup_close_ int lock_fd = -1, dfd = -1;
        struct dirent *de;
        DIR *d;
        int r, n = 0, first_error = 0;

        r = userdb_lock(db, &lock_fd);
        if (r < 0)
                return r;

        dfd = openat(db->pending_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return negative_errno();
        d = fdopendir(dfd);
        if (!d)
                return negative_errno();
        TAKE_FD(dfd);
        while ((de = readdir(d))) {
                size_t len = strlen(de->d_name);
                if (de->d_name[0] == '.' || len < 6 || !streq(de->d_name + len - 5, ".json"))
                        continue;
                r = replay_journal(db, de->d_name);
                if (r < 0 && first_error == 0)
                        first_error = r;
                n++;
        }
        closedir(d);

        if (db->store) {
                r = migrate_dropins(db);
                if (r < 0 && first_error == 0)
                        first_error = r;
                else if (r > 0)
                        fprintf(stderr, "<5>Moved %d user(s) from drop-ins in %s to %s/" RECORD_STORE_FILE "\n", r,
                                db->userdb_path, db->state_path);
        }

        /* A detach the agent did not finish (it crashed before the records went) did not
         * happen: the user is attached, and logins must work again. */
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
        db->userdb_fd = db->state_fd = db->users_fd = db->pending_fd = -1;
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
        /* The high-water mark's file exists from the start (best effort), so an attach only ever
         * rewrites it: the last free inode of a full /run/vmuser is then left to the journal of
         * a later detach, never taken by the mark (a full /run must not keep a user attached). */
        if (db->range.min > 0)
                (void) uid_highwater_raise(db->state_fd, db->range.min - 1);
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
        record_store_free(db->store);
        nss_view_free(db->view);
        free(db->dirty);
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

static uint64_t now_usec(void);

/* How long one NSS view and one leftovers scan serve the attaches that follow (a batch). A
 * user or file appearing meanwhile is the same race a single check has, over a longer window. */
#define BATCH_VIEW_USEC (1000u * 1000u)
#define DIRTY_WINDOW 65536u

static bool batch_fresh(uint64_t taken) {
        uint64_t now = now_usec();
        return now >= taken && now - taken < BATCH_VIEW_USEC;
}

static void batch_forget(struct userdb *db) {
        db->view = nss_view_free(db->view);
        free(db->dirty);
        db->dirty = NULL;
}

/* The NSS view of this batch, or NULL when NSS must be asked one lookup at a time. Only with
 * the record store: it knows our users (the agent's own lookups skip its service), while
 * drop-ins written after the view was taken would be missing from it. */
static struct nss_view *fresh_view(struct userdb *db) {
        if (!db->store)
                return NULL;
        if (db->view && batch_fresh(db->view_usec) && !nss_view_stale(db->view))
                return db->view;
        db->view = nss_view_free(db->view);
        if (nss_view_new(NULL, &db->view) < 0)
                return NULL;
        db->view_usec = now_usec();
        return db->view;
}

/* NSS look-ups with the buffer-size retry every caller needs. ret_name (if set) receives the
 * name found. 1 = exists, 0 = not found, <0 = error. */
static int nss_lookup(bool group, const char *name, uint32_t id, char *ret_name, size_t ret_name_size,
                      uint32_t *ret_id) {
        size_t bufsize = 1024;

        for (;;) {
                _cleanup_free_ char *buf = malloc(bufsize);
                int r;

                if (!buf)
                        return -ENOMEM;
                if (group) {
                        struct group gr, *res = NULL;
                        r = name ? getgrnam_r(name, &gr, buf, bufsize, &res) : getgrgid_r(id, &gr, buf, bufsize, &res);
                        if (r == 0) {
                                if (!res)
                                        return 0;
                                if (ret_name)
                                        snprintf(ret_name, ret_name_size, "%s", res->gr_name);
                                if (ret_id)
                                        *ret_id = res->gr_gid;
                                return 1;
                        }
                } else {
                        struct passwd pw, *res = NULL;
                        r = name ? getpwnam_r(name, &pw, buf, bufsize, &res) : getpwuid_r(id, &pw, buf, bufsize, &res);
                        if (r == 0) {
                                if (!res)
                                        return 0;
                                if (ret_name)
                                        snprintf(ret_name, ret_name_size, "%s", res->pw_name);
                                if (ret_id)
                                        *ret_id = res->pw_uid;
                                return 1;
                        }
                }
                if (r != ERANGE)
                        /* ENOENT and friends are "not found" for some NSS modules. */
                        return r == ENOENT || r == ESRCH ? 0 : -r;
                if (bufsize >= 1024 * 1024)
                        return -ERANGE;
                bufsize *= 4;
        }
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
static int id_is_fit(struct userdb *db, uint32_t id, const char *user_name, char *why, size_t why_size) {
        char owner[VMUSER_NAME_MAX + 1];
        int r;

        r = uid_reserved_for(db->state_fd, id, owner, sizeof(owner));
        if (r < 0)
                return r;
        if (r > 0 && !streq(owner, user_name)) {
                snprintf(why, why_size, "uid %u is reserved for '%s', whose home export the host keeps", id, owner);
                return 0;
        }
        r = uid_leftovers(db->cleanup_root, id, NULL);
        if (r < 0)
                return r;
        if (r > 0) {
                (void) uid_quarantine_set(db->state_fd, id, true);
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
        char owner[VMUSER_NAME_MAX + 1];
        int r;

        r = uid_reserved_for(db->state_fd, id, owner, sizeof(owner));
        if (r < 0)
                return r;
        if (r > 0 && !streq(owner, user_name)) {
                snprintf(why, why_size, "uid %u is reserved for '%s', whose home export the host keeps", id, owner);
                return 0;
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
                db->dirty_usec = now_usec();
        }
        /* Marked: what the scan saw may be gone since; the exact check decides (rare). */
        if (db->dirty[(id - db->dirty_lo) / 8] & (1u << ((id - db->dirty_lo) % 8)))
                return id_is_fit(db, id, user_name, why, why_size);
        (void) uid_quarantine_set(db->state_fd, id, false);
        return 1;
}

/* Never-used IDs of this boot first (from the high-water mark up), then freed ones from the
 * start of the range; each candidate must be free in NSS and fit (id_is_fit()). */
static int allocate_id(struct userdb *db, const char *user_name, uint32_t *ret) {
        uint32_t start;
        unsigned dirty = 0;
        char why[256];
        int r;

        r = uid_highwater_get(db->state_fd, &db->range, &start);
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

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

/* Steps that remove what `old` installed and `new_state` (may be NULL: detach) does not. */
static int plan_add_stale(struct plan *p, const struct attach_state *old, json_object *old_member_of,
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

/* Reads our state for name, with its memberOf array. */
static int read_old_state(struct userdb *db, const char *name, struct attach_state *ret, json_object **ret_member_of) {
        _cleanup_json_ json_object *obj = NULL;
        char file[VMUSER_NAME_MAX + 8];
        json_object *m;
        int r;

        snprintf(file, sizeof(file), "%s.json", name);
        r = json_read_file_at(db->users_fd, file, VMUSER_STATE_FILE_MAX, &obj);
        if (r < 0)
                return r;
        r = attach_state_from_json(obj, ret);
        if (r < 0)
                return r;
        if (!streq(ret->user_name, name))
                return -EBADMSG;
        if (ret_member_of)
                *ret_member_of = json_object_object_get_ex(obj, "memberOf", &m) &&
                                                 json_object_is_type(m, json_type_array)
                                         ? json_object_get(m)
                                         : NULL;
        return 0;
}

static int check_conflicts(struct userdb *db, const struct attach_request *req, bool ours, uint32_t uid, uint32_t gid,
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
        _cleanup_free_ char *state_line = NULL;
        if (asprintf(&state_line, "%s\n", state_text) < 0)
                return -ENOMEM;

        char target[VMUSER_NAME_MAX + 32];
        strcpy(p->user_name, name);
        if (db->store) {
                /* The state file, then the records in one line: the user appears last. */
                _cleanup_(erase_and_freep) char *line = NULL;
                r = record_store_make_line(name, files.user, files.group, files.privileged, &line);
                if (r < 0)
                        return r;
                if ((r = plan_add(p, PLAN_WRITE, PLAN_DIR_USERS, state_line, 0644, "%s.json", name)) < 0 ||
                    (r = plan_add(p, PLAN_WRITE, PLAN_DIR_STORE, line, 0600, "%s", name)) < 0)
                        return r;
                return 0;
        }
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

static int plan_is_noop(struct userdb *db, const struct plan *p) {
        for (size_t i = 0; i < p->n_steps; i++) {
                int r = plan_step_is_noop(db, &p->steps[i]);
                if (r <= 0)
                        return r;
        }
        return 1;
}

int userdb_attach(struct userdb *db, const struct attach_request *req, struct attach_result *ret, struct verr *e) {
        _cleanup_close_ int lock_fd = -1;
        _cleanup_json_ json_object *old_member_of = NULL;
        struct attach_state old;
        struct plan p = {};
        bool ours;
        uint32_t uid, gid;
        int r;

        r = userdb_lock(db, &lock_fd);
        if (r < 0)
                return verr_set(e, r, "could not take the lock " VMUSER_STATE_DIR "/" VMUSER_LOCK_FILE ": %s",
                                strerror(-r));

        r = read_old_state(db, req->user_name, &old, &old_member_of);
        if (r < 0 && r != -ENOENT)
                return verr_set(e, r, "state file for '%s' is unreadable: %s", req->user_name, strerror(-r));
        ours = r >= 0;

        if (req->has_uid) {
                uid = req->uid;
                gid = req->gid;
        } else if (ours) {
                uid = old.uid;
                gid = old.gid;
        } else {
                r = allocate_id(db, req->user_name, &uid);
                if (r < 0)
                        return verr_set(e, r, "no free uid in the agent's range %u-%u (UIDs in quarantine or "
                                        "reserved do not count)", db->range.min, db->range.max);
                gid = uid;
        }

        /* A UID the host chose (--uid, or a kept export's after a guest reboot) that this user
         * does not hold already must be as clean as an allocated one. */
        if (req->has_uid && (!ours || old.uid != uid)) {
                char why[256];
                r = id_is_fit(db, uid, req->user_name, why, sizeof(why));
                if (r < 0)
                        return verr_set(e, r, "checking uid %u for leftovers failed: %s", uid, strerror(-r));
                if (r == 0)
                        return verr_set(e, -EBUSY, "%s; it is in quarantine until they are gone", why);
        }

        /* A replace that moves the user to another UID or home under a live session would leave
         * that session with the old identity or home. */
        if (ours && req->replace && db->session_count &&
            (old.uid != uid || old.gid != gid || !streq(old.home_directory, req->home_directory) ||
             old.has_home != req->has_home ||
             (old.has_home && (old.home.fstype != req->home.fstype || !streq(old.home.tag, req->home.tag) ||
                               !streq(old.home.options, req->home.options))))) {
                int n = db->session_count(&old, db->session_count_userdata);
                if (n > 0)
                        return verr_set(e, -EBUSY, "user '%s' has %d session(s): a replace that changes the UID or "
                                        "the home is refused while they last; log them out or detach first",
                                        req->user_name, n);
        }

        r = check_conflicts(db, req, ours, uid, gid, e);
        if (r < 0)
                return r;

        r = build_attach_plan(db, req, uid, gid, ours ? old.attached_usec : now_usec(), ours ? &old : NULL, old_member_of, &p);
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
                r = build_attach_plan(db, req, uid, gid, now_usec(), &old, old_member_of, &p);
                if (r < 0)
                        goto finish;
        }

        /* A new user must leave room for the rest of the guest: /run also holds utmp, logind's
         * sessions and every service's runtime files. A replace changes little and may fix things. */
        if (!ours) {
                r = check_space(db, &p, req->user_name, e);
                if (r < 0)
                        goto finish;
        }

        {
                struct plan undo = {};
                if (!ours) {
                        r = plan_build_undo(&p, &undo);
                        if (r < 0)
                                goto finish;
                }
                r = plan_commit(db, &p, ours ? NULL : &undo);
                plan_done(&undo);
        }
        if (r < 0) {
                verr_set(e, r, "writing the records of '%s' failed: %s", req->user_name, strerror(-r));
                goto finish;
        }
        if (uid >= db->range.min && uid <= db->range.max)
                (void) uid_highwater_raise(db->state_fd, uid);
        *ret = (struct attach_result) { .uid = uid, .gid = gid, .changed = true };
fill:
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
                if ((r = plan_add(&p, PLAN_REMOVE, PLAN_DIR_STORE, NULL, 0, "%s", user_name)) < 0 ||
                    (r = plan_add(&p, PLAN_REMOVE, PLAN_DIR_USERS, NULL, 0, "%s.json", user_name)) < 0)
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

static int cmp_name(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

int userdb_foreach(struct userdb *db, int (*cb)(const struct attach_state *s, void *userdata), void *userdata) {
        return userdb_foreach_page(db, NULL, 0, cb, userdata);
}

int userdb_foreach_page(struct userdb *db, const char *after, size_t limit,
                        int (*cb)(const struct attach_state *s, void *userdata), void *userdata) {
        _cleanup_close_ int dfd = -1;
        char **names = NULL;
        size_t n = 0;
        struct dirent *de;
        DIR *d;
        int r = 0;

        dfd = openat(db->users_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return negative_errno();
        d = fdopendir(dfd);
        if (!d)
                return negative_errno();
        TAKE_FD(dfd);
        while ((de = readdir(d))) {
                size_t len = strlen(de->d_name);
                if (de->d_name[0] == '.' || len < 6 || !streq(de->d_name + len - 5, ".json"))
                        continue;
                char **nv = realloc(names, (n + 1) * sizeof(char *));
                if (!nv) {
                        r = -ENOMEM;
                        break;
                }
                names = nv;
                names[n] = strndup(de->d_name, len - 5);
                if (!names[n]) {
                        r = -ENOMEM;
                        break;
                }
                n++;
        }
        closedir(d);
        if (n > 1)
                qsort(names, n, sizeof(char *), cmp_name);
        size_t done = 0;
        for (size_t i = 0; i < n && r >= 0 && (limit == 0 || done < limit); i++) {
                struct attach_state s;
                if (after && strcmp(names[i], after) <= 0)
                        continue;
                if (read_old_state(db, names[i], &s, NULL) >= 0) {
                        r = cb(&s, userdata);
                        done++;
                }
        }
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
        return r;
}
