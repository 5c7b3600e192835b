/* userdb-migrate.c: users an older agent attached as drop-ins, moved into the record store
 * (see userdb-internal.h and doc/PROTOCOL.txt section 9, "Upgrade"). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic-file.h"
#include "dir-util.h"
#include "json-util.h"
#include "names.h"
#include "paths.h"
#include "record-store.h"
#include "userdb-internal.h"

/* The compact text of a JSON file, without its member drop (NULL: all of it). */
static int read_text_at(int dir_fd, const char *file, const char *drop, char **ret) {
        _cleanup_json_ json_object *obj = NULL;
        const char *text;
        int r = json_read_file_at(dir_fd, file, VMUSER_STATE_FILE_MAX, &obj);
        if (r < 0)
                return r;
        if (drop && json_object_is_type(obj, json_type_object))
                json_object_object_del(obj, drop);
        text = json_to_compact(obj);
        if (!text || !(*ret = strdup(text)))
                return -ENOMEM;
        explicit_bzero((char *) text, strlen(text));
        return 0;
}

/* One user attached as drop-ins before the agent used the record store: its records and its
 * state (users/NAME.json, "detaching" left out) go into the store, then its drop-ins go.
 * A crash in between leaves both (the same records); the next start
 * finds the drop-ins again and removes them. */
static int migrate_user(struct userdb *db, const char *name) {
        _cleanup_(erase_and_freep) char *user = NULL, *group = NULL, *priv = NULL, *line = NULL, *state = NULL;
        _cleanup_json_ json_object *member_of = NULL;
        struct attach_state st;
        char file[VMUSER_NAME_MAX * 2 + 32];
        int r;

        r = read_state_file(db, name, &st, &member_of);
        if (r < 0)
                return r == -ENOENT ? 0 : r; /* not ours */
        if (!record_store_has(db->store, name)) {
                snprintf(file, sizeof(file), "%s.json", name);
                if ((r = read_text_at(db->users_fd, file, "detaching", &state)) < 0)
                        return r;
                snprintf(file, sizeof(file), "%s.user", name);
                if ((r = read_text_at(db->userdb_fd, file, NULL, &user)) < 0)
                        return r;
                snprintf(file, sizeof(file), "%s.group", name);
                if ((r = read_text_at(db->userdb_fd, file, NULL, &group)) < 0)
                        return r;
                snprintf(file, sizeof(file), "%s.user-privileged", name);
                if ((r = read_text_at(db->userdb_fd, file, NULL, &priv)) < 0 && r != -ENOENT)
                        return r;
                if ((r = record_store_make_line(name, user, group, priv, state, &line)) < 0 ||
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
        /* The state is in the line now (migrate_state_files() removes the file). */
        return 1;
}

/* Drop-ins of our users left in the userdb directory (an upgrade from the drop-in agent). */
struct migration {
        struct userdb *db;
        int n, first_error;
};

/* One entry of the userdb directory: a regular NAME.user of ours is moved into the store. */
static int visit_dropin(int dir_fd, const char *entry, void *userdata) {
        struct migration *m = userdata;
        char name[VMUSER_NAME_MAX + 1];
        size_t len = strlen(entry);
        struct stat st;

        if (len < 6 || len - 5 > VMUSER_NAME_MAX || !streq(entry + len - 5, ".user"))
                return 0;
        if (fstatat(dir_fd, entry, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                return 0;
        memcpy(name, entry, len - 5);
        name[len - 5] = '\0';
        if (!name_is_valid(name))
                return 0;
        int k = migrate_user(m->db, name);
        if (k < 0 && m->first_error == 0)
                m->first_error = k;
        m->n += k > 0;
        return 0;
}

int migrate_dropins(struct userdb *db) {
        struct migration m = { .db = db };
        int r = dir_foreach_at(db->userdb_fd, visit_dropin, &m);

        if (r < 0)
                return r;
        return m.first_error < 0 ? m.first_error : m.n;
}
