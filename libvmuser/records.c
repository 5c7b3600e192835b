/* records.c: vmuser-attach argument validation and record rendering (see records.h).
 *
 * Every field is type-checked and bounded before it is copied; unknown fields are refused by
 * name, so a host that sends something the agent would silently drop learns about it. The
 * "privileged" section is only accepted inside the user record and is always written to its own
 * 0600 file: nss-systemd 252 rejects a user record that carries it inline. */
#include "records.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "json-util.h"
#include "macro.h"

static void strv_free_n(char **v, size_t n, bool erase) {
        if (!v)
                return;
        for (size_t i = 0; i < n; i++) {
                if (erase)
                        erase_and_free(v[i]);
                else
                        free(v[i]);
        }
        free(v);
}

struct attach_request *attach_request_free(struct attach_request *req) {
        if (!req)
                return NULL;
        free(req->real_name);
        free(req->shell);
        free(req->service);
        free(req->group_description);
        strv_free_n(req->member_of, req->n_member_of, false);
        strv_free_n(req->hashed_passwords, req->n_hashed_passwords, true);
        strv_free_n(req->ssh_keys, req->n_ssh_keys, false);
        free(req);
        return NULL;
}

void attach_request_freep(struct attach_request **req) {
        attach_request_free(*req);
}

bool records_text_is_safe(const char *s, size_t max) {
        size_t n = 0;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++, n++)
                if (*p < 0x20 || *p == 0x7f || *p == ':')
                        return false;
        return n <= max;
}

bool records_hash_is_safe(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > RECORDS_MAX_HASH_LEN)
                return false;
        for (const char *p = s; *p; p++)
                if (*p <= 0x20 || *p >= 0x7f || *p == ':')
                        return false;
        return true;
}

bool records_ssh_key_is_safe(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > RECORDS_MAX_SSH_KEY_LEN)
                return false;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if (*p < 0x20 || *p == 0x7f)
                        return false;
        return true;
}

static int dup_text(json_object *obj, const char *key, const char *what, size_t max, char **ret, struct verr *e) {
        const char *s;
        int r = json_get_string(obj, key, &s);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return verr_set(e, -EINVAL, "%s field '%s' must be a string", what, key);
        if (!records_text_is_safe(s, max))
                return verr_set(e, -EINVAL, "%s field '%s' contains a control character or ':', or is longer than %zu bytes",
                                what, key, max);
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Adds the group names of a JSON array to req->member_of (validated, deduplicated). */
static int add_member_of(struct attach_request *req, json_object *arr, const char *where, struct verr *e) {
        size_t n = json_object_array_length(arr);

        for (size_t i = 0; i < n; i++) {
                json_object *v = json_object_array_get_idx(arr, i);
                const char *g;
                bool dup = false;

                if (!json_object_is_type(v, json_type_string))
                        return verr_set(e, -EINVAL, "%s: every entry must be a string", where);
                g = json_object_get_string(v);
                if (!name_is_valid(g))
                        return verr_set(e, -EINVAL, "%s: group name '%s' is not valid", where, g);
                if (streq(g, req->user_name))
                        continue; /* the primary group: implied */
                for (size_t j = 0; j < req->n_member_of; j++)
                        dup = dup || streq(req->member_of[j], g);
                if (dup)
                        continue;
                if (req->n_member_of >= RECORDS_MAX_MEMBER_OF)
                        return verr_set(e, -E2BIG, "%s: more than %d groups", where, RECORDS_MAX_MEMBER_OF);
                char **nv = realloc(req->member_of, (req->n_member_of + 1) * sizeof(char *));
                if (!nv)
                        return -ENOMEM;
                req->member_of = nv;
                req->member_of[req->n_member_of] = strdup(g);
                if (!req->member_of[req->n_member_of])
                        return -ENOMEM;
                req->n_member_of++;
        }
        return 0;
}

static int copy_string_array(json_object *arr, const char *what, size_t max_count, bool (*ok)(const char *),
                             char ***ret, size_t *ret_n, struct verr *e) {
        size_t n = json_object_array_length(arr);
        char **v;

        if (n > max_count)
                return verr_set(e, -E2BIG, "%s has %zu entries, at most %zu are accepted", what, n, max_count);
        v = calloc(n + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        *ret = v;
        for (size_t i = 0; i < n; i++) {
                json_object *s = json_object_array_get_idx(arr, i);
                if (!json_object_is_type(s, json_type_string))
                        return verr_set(e, -EINVAL, "%s: entry %zu is not a string", what, i);
                if (!ok(json_object_get_string(s)))
                        return verr_set(e, -EINVAL, "%s: entry %zu is empty, too long or contains forbidden characters",
                                        what, i);
                v[i] = strdup(json_object_get_string(s));
                if (!v[i])
                        return -ENOMEM;
                *ret_n = i + 1;
        }
        return 0;
}

static int parse_privileged(struct attach_request *req, json_object *priv, struct verr *e) {
        json_object *arr;
        int r;

        if (!json_object_is_type(priv, json_type_object))
                return verr_set(e, -EINVAL, "user record section 'privileged' must be an object");
        json_object_object_foreach(priv, key, val) {
                (void) val;
                if (!streq(key, "hashedPassword") && !streq(key, "sshAuthorizedKeys"))
                        return verr_set(e, -EINVAL, "unknown field '%s' in section 'privileged'", key);
        }

        r = json_get_array(priv, "hashedPassword", &arr);
        if (r == -EINVAL)
                return verr_set(e, -EINVAL, "privileged field 'hashedPassword' must be an array of strings");
        if (r == 0) {
                r = copy_string_array(arr, "privileged.hashedPassword", RECORDS_MAX_HASHES, records_hash_is_safe,
                                      &req->hashed_passwords, &req->n_hashed_passwords, e);
                if (r < 0)
                        return r;
        }

        r = json_get_array(priv, "sshAuthorizedKeys", &arr);
        if (r == -EINVAL)
                return verr_set(e, -EINVAL, "privileged field 'sshAuthorizedKeys' must be an array of strings");
        if (r == 0) {
                r = copy_string_array(arr, "privileged.sshAuthorizedKeys", RECORDS_MAX_SSH_KEYS, records_ssh_key_is_safe,
                                      &req->ssh_keys, &req->n_ssh_keys, e);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_id(json_object *obj, const char *key, const char *what, const struct id_range *range, bool *has,
                    uint32_t *ret, struct verr *e) {
        json_object *v;
        int r = json_get_uint32(obj, key, ret);

        if (r == -ENOENT)
                return 0;
        if (r < 0) {
                json_object_object_get_ex(obj, key, &v);
                return verr_set(e, -EINVAL, "%s field '%s' must be an integer from 0 to 4294967295, got %s", what, key,
                                json_to_compact(v));
        }
        if (id_is_special(*ret))
                return verr_set(e, -EPERM, "%s %s %u is reserved", what, key, *ret);
        if (*ret < range->min || *ret > range->max)
                return verr_set(e, -ERANGE, "%s %s %u is outside the agent's range %u-%u", what, key, *ret, range->min,
                                range->max);
        *has = true;
        return 0;
}

static const char *const user_fields[] = {
        "userName", "realName", "uid", "gid", "homeDirectory", "shell",
        "disposition", "service", "memberOf", "privileged",
};
static const char *const user_sections_refused[] = {
        "secret", "perMachine", "binding", "status", "signature",
};

static bool in_list(const char *key, const char *const *list, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (streq(key, list[i]))
                        return true;
        return false;
}

static int parse_user(struct attach_request *req, json_object *user, const struct id_range *range, struct verr *e) {
        const char *name, *s;
        json_object *v;
        int r;

        if (!json_object_is_type(user, json_type_object))
                return verr_set(e, -EINVAL, "argument 'user' must be an object (a JSON user record)");

        json_object_object_foreach(user, key, val) {
                (void) val;
                if (in_list(key, user_sections_refused, ELEMENTSOF(user_sections_refused)))
                        return verr_set(e, -EINVAL, "user record section '%s' is not accepted", key);
                if (!in_list(key, user_fields, ELEMENTSOF(user_fields)))
                        return verr_set(e, -EINVAL, "unknown field '%s' in user record", key);
        }

        r = json_get_string(user, "userName", &name);
        if (r < 0)
                return verr_set(e, -EINVAL, "user record field 'userName' is %s", r == -ENOENT ? "missing" : "not a string");
        if (!name_is_valid(name))
                return verr_set(e, -EINVAL, "user name '%s' is not valid (want [a-z_][a-z0-9_-]*, at most %d characters)",
                                name, VMUSER_NAME_MAX);
        if (name_is_reserved(name))
                return verr_set(e, -EPERM, "user name '%s' is reserved", name);
        strcpy(req->user_name, name);

        r = parse_id(user, "uid", "user", range, &req->has_uid, &req->uid, e);
        if (r < 0)
                return r;
        r = parse_id(user, "gid", "user", range, &req->has_gid, &req->gid, e);
        if (r < 0)
                return r;

        r = json_get_string(user, "homeDirectory", &s);
        if (r == -EINVAL)
                return verr_set(e, -EINVAL, "user record field 'homeDirectory' must be a string");
        if (r == -ENOENT)
                snprintf(req->home_directory, sizeof(req->home_directory), "/run/vmhost/home/%s", name);
        else if (!home_path_is_valid(s))
                return verr_set(e, -EINVAL,
                                "home directory '%s' is not a normalized absolute path under /home, /run/vmhost, "
                                "/var/home, /srv or /mnt",
                                s);
        else
                strcpy(req->home_directory, s);

        r = dup_text(user, "realName", "user record", RECORDS_MAX_TEXT_LEN, &req->real_name, e);
        if (r < 0)
                return r;
        r = dup_text(user, "service", "user record", 64, &req->service, e);
        if (r < 0)
                return r;
        r = dup_text(user, "shell", "user record", HOME_PATH_MAX, &req->shell, e);
        if (r < 0)
                return r;
        if (req->shell && !path_is_normalized_absolute(req->shell))
                return verr_set(e, -EINVAL, "shell '%s' is not a normalized absolute path", req->shell);

        r = json_get_string(user, "disposition", &s);
        if (r == -EINVAL || (r == 0 && !streq(s, "regular")))
                return verr_set(e, -EINVAL, "user record field 'disposition' must be \"regular\"");

        r = json_get_array(user, "memberOf", &v);
        if (r == -EINVAL)
                return verr_set(e, -EINVAL, "user record field 'memberOf' must be an array of group names");
        if (r == 0) {
                r = add_member_of(req, v, "user record field 'memberOf'", e);
                if (r < 0)
                        return r;
        }

        if (json_object_object_get_ex(user, "privileged", &v)) {
                r = parse_privileged(req, v, e);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_group(struct attach_request *req, json_object *group, const struct id_range *range, struct verr *e) {
        const char *s;
        bool has_gid = false;
        uint32_t gid;
        int r;

        if (!json_object_is_type(group, json_type_object))
                return verr_set(e, -EINVAL, "argument 'group' must be an object (a JSON group record)");
        json_object_object_foreach(group, key, val) {
                (void) val;
                if (streq(key, "privileged"))
                        return verr_set(e, -EINVAL, "section 'privileged' is not accepted in a group record");
                if (!streq(key, "groupName") && !streq(key, "gid") && !streq(key, "disposition") &&
                    !streq(key, "description") && !streq(key, "service"))
                        return verr_set(e, -EINVAL, "unknown field '%s' in group record", key);
        }

        r = json_get_string(group, "groupName", &s);
        if (r == -EINVAL)
                return verr_set(e, -EINVAL, "group record field 'groupName' must be a string");
        if (r == 0 && !streq(s, req->user_name))
                return verr_set(e, -EINVAL, "group name '%s' differs from user name '%s' (only user private groups)", s,
                                req->user_name);

        r = parse_id(group, "gid", "group", range, &has_gid, &gid, e);
        if (r < 0)
                return r;
        if (has_gid) {
                if (req->has_gid && gid != req->gid)
                        return verr_set(e, -EINVAL, "group gid %u differs from the user's gid %u", gid, req->gid);
                req->has_gid = true;
                req->gid = gid;
        }

        r = json_get_string(group, "disposition", &s);
        if (r == -EINVAL || (r == 0 && !streq(s, "regular")))
                return verr_set(e, -EINVAL, "group record field 'disposition' must be \"regular\"");

        r = dup_text(group, "description", "group record", RECORDS_MAX_TEXT_LEN, &req->group_description, e);
        if (r < 0)
                return r;
        return 0;
}

int records_parse_attach(json_object *args, const struct id_range *range, struct attach_request **ret,
                         struct verr *e) {
        _cleanup_(attach_request_freep) struct attach_request *req = NULL;
        json_object *user, *v;
        int r;

        if (!json_object_is_type(args, json_type_object))
                return verr_set(e, -EINVAL, "'arguments' must be an object");
        json_object_object_foreach(args, key, val) {
                (void) val;
                if (streq(key, "privileged"))
                        return verr_set(e, -EINVAL, "section 'privileged' belongs inside the user record");
                if (!streq(key, "user") && !streq(key, "group") && !streq(key, "memberOf") && !streq(key, "home") &&
                    !streq(key, "replace"))
                        return verr_set(e, -EINVAL, "unknown argument '%s' for vmuser-attach", key);
        }

        req = calloc(1, sizeof(*req));
        if (!req)
                return -ENOMEM;

        if (!json_object_object_get_ex(args, "user", &user))
                return verr_set(e, -EINVAL, "argument 'user' is missing");
        r = parse_user(req, user, range, e);
        if (r < 0)
                return r;

        if (req->has_uid && !req->has_gid) {
                req->has_gid = true;
                req->gid = req->uid;
        }
        if (req->has_gid && req->has_uid && req->gid != req->uid)
                return verr_set(e, -EINVAL, "user gid %u differs from uid %u (the primary group is the user's own)",
                                req->gid, req->uid);

        if (json_object_object_get_ex(args, "group", &v)) {
                r = parse_group(req, v, range, e);
                if (r < 0)
                        return r;
        }
        if (req->has_gid && !req->has_uid)
                return verr_set(e, -EINVAL, "a gid (%u) without a uid is not accepted", req->gid);

        r = json_get_array(args, "memberOf", &v);
        if (r == -EINVAL)
                return verr_set(e, -EINVAL, "argument 'memberOf' must be an array of group names");
        if (r == 0) {
                r = add_member_of(req, v, "argument 'memberOf'", e);
                if (r < 0)
                        return r;
        }
        if (req->n_member_of > 1)
                qsort(req->member_of, req->n_member_of, sizeof(char *), cmp_str);

        if (json_object_object_get_ex(args, "home", &v) && !json_object_is_type(v, json_type_null)) {
                r = home_spec_from_json(v, &req->home, e);
                if (r < 0)
                        return r;
                req->has_home = true;
        }

        r = json_get_bool(args, "replace", &req->replace);
        if (r == -EINVAL)
                return verr_set(e, -EINVAL, "argument 'replace' must be a boolean");

        *ret = TAKE_PTR(req);
        return 0;
}

void attach_files_done(struct attach_files *f) {
        free(f->user);
        erase_and_free(f->privileged);
        free(f->group);
        if (f->member_of)
                json_object_put(f->member_of);
        *f = (struct attach_files) {};
}

static int add_string(json_object *obj, const char *key, const char *value) {
        if (!value)
                return 0;
        return json_object_object_add(obj, key, json_object_new_string(value)) < 0 ? -ENOMEM : 0;
}

static int render(json_object *obj, char **ret) {
        const char *s = json_to_compact(obj);
        size_t n;
        if (!s)
                return -ENOMEM;
        n = strlen(s);
        *ret = malloc(n + 2);
        if (!*ret)
                return -ENOMEM;
        memcpy(*ret, s, n);
        (*ret)[n] = '\n';
        (*ret)[n + 1] = '\0';
        return 0;
}

static json_object *string_array(char *const *v, size_t n) {
        json_object *a = json_object_new_array();
        for (size_t i = 0; a && i < n; i++)
                json_object_array_add(a, json_object_new_string(v[i]));
        return a;
}

int records_build_files(const struct attach_request *req, uint32_t uid, uint32_t gid, struct attach_files *ret) {
        _cleanup_json_ json_object *user = json_object_new_object(), *group = json_object_new_object();
        struct attach_files f = {};
        int r;

        if (!user || !group)
                return -ENOMEM;

        f.member_of = string_array(req->member_of, req->n_member_of);
        if (!f.member_of)
                return -ENOMEM;

        if ((r = add_string(user, "userName", req->user_name)) < 0 ||
            (r = add_string(user, "realName", req->real_name)) < 0 ||
            json_object_object_add(user, "uid", json_object_new_int64(uid)) < 0 ||
            json_object_object_add(user, "gid", json_object_new_int64(gid)) < 0 ||
            (r = add_string(user, "homeDirectory", req->home_directory)) < 0 ||
            (r = add_string(user, "shell", req->shell)) < 0 ||
            (r = add_string(user, "disposition", "regular")) < 0 ||
            (r = add_string(user, "service", req->service ? req->service : "io.vmuser")) < 0)
                goto fail;
        if (req->n_member_of > 0 && json_object_object_add(user, "memberOf", json_object_get(f.member_of)) < 0)
                goto fail;

        if ((r = add_string(group, "groupName", req->user_name)) < 0 ||
            json_object_object_add(group, "gid", json_object_new_int64(gid)) < 0 ||
            (r = add_string(group, "description", req->group_description)) < 0 ||
            (r = add_string(group, "disposition", "regular")) < 0 ||
            (r = add_string(group, "service", req->service ? req->service : "io.vmuser")) < 0)
                goto fail;

        if ((r = render(user, &f.user)) < 0 || (r = render(group, &f.group)) < 0)
                goto fail;

        if (req->n_hashed_passwords > 0 || req->n_ssh_keys > 0) {
                _cleanup_json_ json_object *outer = json_object_new_object(), *priv = json_object_new_object();
                if (!outer || !priv)
                        goto fail;
                if (req->n_hashed_passwords > 0 &&
                    json_object_object_add(priv, "hashedPassword",
                                           string_array(req->hashed_passwords, req->n_hashed_passwords)) < 0)
                        goto fail;
                if (req->n_ssh_keys > 0 &&
                    json_object_object_add(priv, "sshAuthorizedKeys", string_array(req->ssh_keys, req->n_ssh_keys)) < 0)
                        goto fail;
                if (json_object_object_add(outer, "privileged", json_object_get(priv)) < 0)
                        goto fail;
                r = render(outer, &f.privileged);
                /* json-c keeps a copy of the serialization in the object; clear the hashes there. */
                const char *ser = json_object_to_json_string_ext(outer, JSON_C_TO_STRING_PLAIN);
                if (ser)
                        explicit_bzero((char *) ser, strlen(ser));
                if (r < 0)
                        goto fail;
        }

        *ret = f;
        return 0;

fail:
        attach_files_done(&f);
        return r < 0 ? r : -ENOMEM;
}
