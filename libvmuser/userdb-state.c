/* userdb-state.c: where an attached user's state lives, per mode (see userdb.h and
 * doc/PROTOCOL.txt sections 5 and 9).
 *
 * --userdb=dropin: /run/vmuser/users/NAME.json, written by an attach's plan.
 * --userdb=varlink: the "state" member of the user's record-store line, written with the records
 * in one append; no file per user. A line without "state" (a store an older agent wrote, with the
 * state still in users/NAME.json) is read through the file, and userdb_recover() moves such
 * states into their lines (migrate_state_files). Every reader goes through read_old_state(). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic-file.h"
#include "dir-util.h"
#include "json-util.h"
#include "names.h"
#include "paths.h"
#include "record-store.h"
#include "strv.h"
#include "userdb-internal.h"

/* The state object obj (a file's or a line's): parsed, its name checked, memberOf handed out. */
static int state_from_object(json_object *obj, const char *name, struct attach_state *ret,
                             json_object **ret_member_of) {
        json_object *m;
        int r = attach_state_from_json(obj, ret);
        if (r < 0)
                return r;
        if (!streq(ret->user_name, name))
                return -EBADMSG;
        if (ret_member_of)
                *ret_member_of = json_object_object_get_ex(obj, "memberOf", &m) && json_object_is_type(m, json_type_array)
                                         ? json_object_get(m)
                                         : NULL;
        return 0;
}

int read_state_file(struct userdb *db, const char *name, struct attach_state *ret, json_object **ret_member_of) {
        _cleanup_json_ json_object *obj = NULL;
        char file[VMUSER_NAME_MAX + 8];
        int r;

        snprintf(file, sizeof(file), "%s.json", name);
        r = json_read_file_at(db->users_fd, file, VMUSER_STATE_FILE_MAX, &obj);
        if (r < 0)
                return r;
        return state_from_object(obj, name, ret, ret_member_of);
}

int read_old_state(struct userdb *db, const char *name, struct attach_state *ret, json_object **ret_member_of) {
        _cleanup_json_ json_object *obj = NULL;
        json_object *state;
        const char *line;
        int r;

        if (!db->store)
                return read_state_file(db, name, ret, ret_member_of);
        r = record_store_read(db->store, name, &line);
        if (r < 0)
                return r;
        r = json_parse_strict(line, strlen(line), &obj);
        if (r < 0)
                return -EBADMSG;
        if (!json_object_object_get_ex(obj, "state", &state))
                return read_state_file(db, name, ret, ret_member_of);
        r = state_from_object(state, name, ret, ret_member_of);
        if (r >= 0)
                ret->detaching = false; /* never stored: the agent keeps it in memory */
        return r;
}

int userdb_get_state(struct userdb *db, const char *name, struct attach_state *ret) {
        if (!name_is_valid(name))
                return -ENOENT;
        return read_old_state(db, name, ret, NULL);
}

bool userdb_state_in_store(const struct userdb *db) {
        return db->store;
}

/* users/NAME.json of a store user: its content goes into the user's line (unless the line has a
 * state already), then the file goes. A crash in between leaves the line with the state and the
 * file, which the next start removes. A file of no stored user is a leftover: removed. */
static int migrate_state_file(struct userdb *db, const char *name) {
        _cleanup_json_ json_object *file = NULL, *line_obj = NULL;
        char entry[VMUSER_NAME_MAX + 8];
        const char *line, *text;
        int r;

        snprintf(entry, sizeof(entry), "%s.json", name);
        r = record_store_read(db->store, name, &line);
        if (r < 0 && r != -ENOENT)
                return r;
        if (r < 0)
                line = NULL;
        else if ((r = json_parse_strict(line, strlen(line), &line_obj)) < 0)
                return r;
        if (line && !json_object_object_get_ex(line_obj, "state", NULL)) {
                struct attach_state st;
                r = json_read_file_at(db->users_fd, entry, VMUSER_STATE_FILE_MAX, &file);
                if (r < 0)
                        return r;
                r = state_from_object(file, name, &st, NULL);
                if (r < 0)
                        return r;
                json_object_object_del(file, "detaching");
                if (json_object_object_add(line_obj, "state", TAKE_PTR(file)) < 0)
                        return -ENOMEM;
                text = json_to_compact(line_obj);
                if (!text)
                        return -ENOMEM;
                r = record_store_put(db->store, name, text);
                explicit_bzero((char *) text, strlen(text));
                if (r < 0)
                        return r;
        }
        return unlink_if_exists_at(db->users_fd, entry);
}

int migrate_state_files(struct userdb *db) {
        _cleanup_(strv_freep) char **names = NULL;
        size_t n = 0;
        int r, first_error = 0;

        r = dir_list_names_at(db->users_fd, SIZE_MAX, &names, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                size_t len = strlen(names[i]);
                if (names[i][0] == '.' || len < 6 || !streq(names[i] + len - 5, ".json"))
                        continue;
                names[i][len - 5] = '\0';
                if (!name_is_valid(names[i]))
                        continue;
                r = migrate_state_file(db, names[i]);
                if (r < 0 && first_error == 0)
                        first_error = r;
        }
        return first_error;
}

static int cmp_name(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

struct name_list {
        char **names;
        size_t n;
};

static int collect_name(const char *name, const char *line, void *userdata) {
        struct name_list *l = userdata;
        (void) line;
        return (l->names[l->n++] = strdup(name)) ? 0 : -ENOMEM;
}

/* The attached users' names, unsorted: the store's, or the state files' (NAME.json). */
static int list_names(struct userdb *db, char ***ret, size_t *ret_n) {
        _cleanup_(strv_freep) char **names = NULL;
        size_t all = 0, n = 0;
        int r;

        if (db->store) {
                struct name_list l = { .names = calloc(record_store_count(db->store) + 1, sizeof(char *)) };
                if (!l.names)
                        return -ENOMEM;
                r = record_store_foreach(db->store, collect_name, &l);
                names = l.names;
                if (r < 0)
                        return r;
                *ret_n = l.n;
                *ret = TAKE_PTR(names);
                return 0;
        }
        r = dir_list_names_at(db->users_fd, SIZE_MAX, &names, &all);
        if (r < 0)
                return r;
        for (size_t i = 0; i < all; i++) {
                size_t len = strlen(names[i]);
                if (names[i][0] == '.' || len < 6 || !streq(names[i] + len - 5, ".json")) {
                        free(names[i]);
                        continue;
                }
                names[i][len - 5] = '\0';
                names[n++] = names[i];
        }
        names[n] = NULL;
        *ret_n = n;
        *ret = TAKE_PTR(names);
        return 0;
}

int userdb_foreach(struct userdb *db, int (*cb)(const struct attach_state *s, void *userdata), void *userdata) {
        return userdb_foreach_page(db, NULL, 0, cb, userdata);
}

int userdb_foreach_page(struct userdb *db, const char *after, size_t limit,
                        int (*cb)(const struct attach_state *s, void *userdata), void *userdata) {
        _cleanup_(strv_freep) char **names = NULL;
        size_t n = 0, done = 0;
        int r;

        r = list_names(db, &names, &n);
        if (r < 0)
                return r;
        if (n > 1)
                qsort(names, n, sizeof(char *), cmp_name);
        for (size_t i = 0; i < n && r >= 0 && (limit == 0 || done < limit); i++) {
                struct attach_state s;
                if (after && strcmp(names[i], after) <= 0)
                        continue;
                if (read_old_state(db, names[i], &s, NULL) >= 0) {
                        r = cb(&s, userdata);
                        done++;
                }
        }
        return r;
}
