/* attach-state.c: reading and writing /run/vmuser/users/NAME.json (see attach-state.h).
 *
 * The file is trusted only as far as its directory is: it is root-owned and written by the
 * agent, but it is parsed with the same validation as host input, so a corrupted file is an
 * error, never a mount of something unexpected. */
#include "attach-state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>

#include "atomic-file.h"
#include "json-util.h"
#include "macro.h"
#include "paths.h"

int attach_state_from_json(json_object *obj, struct attach_state *ret) {
        struct attach_state s = {};
        const char *name, *home_dir;
        json_object *home = NULL;
        int r;

        if (json_get_string(obj, "userName", &name) < 0 || !name_is_valid(name))
                return -EBADMSG;
        if (json_get_uint32(obj, "uid", &s.uid) < 0 || json_get_uint32(obj, "gid", &s.gid) < 0)
                return -EBADMSG;
        if (json_get_string(obj, "homeDirectory", &home_dir) < 0 || !home_path_is_valid(home_dir))
                return -EBADMSG;

        r = json_object_object_get_ex(obj, "home", &home);
        if (r && home) {
                if (home_spec_from_json(home, &s.home, NULL) < 0)
                        return -EBADMSG;
                s.has_home = true;
        }

        json_object *at;
        if (json_object_object_get_ex(obj, "attachedAt", &at) && json_object_is_type(at, json_type_int))
                s.attached_usec = (uint64_t) json_object_get_int64(at);

        json_object *det;
        if (json_object_object_get_ex(obj, "detaching", &det)) {
                if (!json_object_is_type(det, json_type_boolean))
                        return -EBADMSG;
                s.detaching = json_object_get_boolean(det);
        }

        snprintf(s.user_name, sizeof(s.user_name), "%s", name);
        snprintf(s.home_directory, sizeof(s.home_directory), "%s", home_dir);
        *ret = s;
        return 0;
}

int attach_state_read(int state_dir_fd, const char *user_name, struct attach_state *ret) {
        _cleanup_json_ json_object *obj = NULL;
        char path[sizeof(VMUSER_USERS_SUBDIR) + VMUSER_NAME_MAX + 8];
        struct attach_state s;
        int r;

        if (!name_is_valid(user_name))
                return -ENOENT;
        snprintf(path, sizeof(path), VMUSER_USERS_SUBDIR "/%s.json", user_name);

        r = json_read_file_at(state_dir_fd, path, VMUSER_STATE_FILE_MAX, &obj);
        if (r < 0)
                return r == -ENOENT ? -ENOENT : (r == -ENOMEM ? r : -EBADMSG);
        r = attach_state_from_json(obj, &s);
        if (r < 0)
                return r;
        if (!streq(s.user_name, user_name))
                return -EBADMSG;
        *ret = s;
        return 0;
}

int attach_state_to_json(const struct attach_state *s, json_object *member_of, json_object **ret) {
        _cleanup_json_ json_object *obj = json_object_new_object();
        json_object *home = NULL;
        int r;

        if (!obj)
                return -ENOMEM;
        if (s->has_home) {
                r = home_spec_to_json(&s->home, &home);
                if (r < 0)
                        return r;
        }
        if (json_object_object_add(obj, "userName", json_object_new_string(s->user_name)) < 0 ||
            json_object_object_add(obj, "uid", json_object_new_int64(s->uid)) < 0 ||
            json_object_object_add(obj, "gid", json_object_new_int64(s->gid)) < 0 ||
            json_object_object_add(obj, "homeDirectory", json_object_new_string(s->home_directory)) < 0 ||
            json_object_object_add(obj, "home", home) < 0 ||
            json_object_object_add(obj, "memberOf", member_of ? json_object_get(member_of) : json_object_new_array()) < 0 ||
            json_object_object_add(obj, "attachedAt", json_object_new_int64((int64_t) s->attached_usec)) < 0)
                return -ENOMEM;
        if (s->detaching && json_object_object_add(obj, "detaching", json_object_new_boolean(true)) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(obj);
        return 0;
}

int attach_state_set_detaching(int users_dir_fd, const char *user_name, bool on) {
        _cleanup_json_ json_object *obj = NULL;
        _cleanup_free_ char *line = NULL;
        char file[VMUSER_NAME_MAX + 8];
        const char *text;
        int r;

        if (!name_is_valid(user_name))
                return -ENOENT;
        snprintf(file, sizeof(file), "%s.json", user_name);
        r = json_read_file_at(users_dir_fd, file, VMUSER_STATE_FILE_MAX, &obj);
        if (r < 0)
                return r == -ENOENT || r == -ENOMEM ? r : -EBADMSG;
        if (!json_object_is_type(obj, json_type_object))
                return -EBADMSG;
        json_object_object_del(obj, "detaching");
        if (on && json_object_object_add(obj, "detaching", json_object_new_boolean(true)) < 0)
                return -ENOMEM;
        text = json_to_compact(obj);
        if (!text || asprintf(&line, "%s\n", text) < 0)
                return -ENOMEM;
        return atomic_write_at(users_dir_fd, file, line, strlen(line), 0644);
}
