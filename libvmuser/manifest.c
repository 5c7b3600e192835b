/* manifest.c: strict, bounded parsing of an apply manifest (see manifest.h).
 *
 * Flow: read the file (size checked before the whole of it is kept) -> json_parse_strict (depth
 * bound) -> walk the tree: top-level keys, then each VM entry, then each user entry and its
 * options, refusing the first thing that is wrong with its key path ("vms[1].users[3].groups[0]")
 * and value. Only the shape and the local rules (names, paths, fstype) are checked here; whether
 * a host user or group exists is apply's business, per VM, where a missing one is reported as
 * that VM's failure for that user. */
#include "manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "home-spec.h"
#include "json-util.h"
#include "macro.h"
#include "names.h"

struct manifest *manifest_free(struct manifest *m) {
        if (!m)
                return NULL;
        for (size_t i = 0; i < m->n_vms; i++)
                free(m->vms[i].users);
        free(m->vms);
        for (size_t i = 0; i < m->n_arrays; i++)
                free(m->arrays[i]);
        free(m->arrays);
        json_object_put(m->root);
        free(m);
        return NULL;
}

bool manifest_pattern_is_glob(const char *pattern) {
        return strpbrk(pattern, "*?[") != NULL;
}

void manifest_options_merge(struct manifest_user_options *o, const struct manifest_user_options *d) {
        if (!o->groups)
                o->groups = d->groups;
        if (!o->ssh_key_files)
                o->ssh_key_files = d->ssh_key_files;
        if (o->shell == MANIFEST_SHELL_UNSET) {
                o->shell = d->shell;
                o->shell_path = d->shell_path;
        }
        if (!o->home_dir)
                o->home_dir = d->home_dir;
        if (!o->home_tag && !o->home_source && o->no_home < 1) {
                o->home_tag = d->home_tag;
                if (!o->home_fstype)
                        o->home_fstype = d->home_fstype;
        }
        if (!o->home_source && !o->home_tag && o->no_home < 1)
                o->home_source = d->home_source;
        if (o->read_only < 0)
                o->read_only = d->read_only;
        if (o->no_home < 0)
                o->no_home = d->no_home;
        if (o->no_password < 0)
                o->no_password = d->no_password;
        if (o->no_authorized_keys < 0)
                o->no_authorized_keys = d->no_authorized_keys;
}

/* A string of at most MANIFEST_STRING_MAX bytes; where names the key. */
static int get_string(json_object *v, const char *where, const char **ret, struct verr *e) {
        const char *s;

        if (!json_object_is_type(v, json_type_string))
                return verr_set(e, -EINVAL, "%s: is a %s, not a string", where, json_type_to_name(json_object_get_type(v)));
        s = json_object_get_string(v);
        if (strlen(s) > MANIFEST_STRING_MAX)
                return verr_set(e, -E2BIG, "%s: '%.32s...' is longer than %d bytes", where, s, MANIFEST_STRING_MAX);
        if (!*s)
                return verr_set(e, -EINVAL, "%s: is empty", where);
        *ret = s;
        return 0;
}

static int get_bool(json_object *v, const char *where, int *ret, struct verr *e) {
        if (!json_object_is_type(v, json_type_boolean))
                return verr_set(e, -EINVAL, "%s: '%s' is not true or false", where, json_object_to_json_string(v));
        *ret = json_object_get_boolean(v);
        return 0;
}

/* The percent rules of attach's templates: %u and %% only. */
static int check_template(const char *s, const char *where, struct verr *e) {
        for (const char *p = s; *p; p++)
                if (*p == '%') {
                        if (p[1] != 'u' && p[1] != '%')
                                return verr_set(e, -EINVAL, "%s: '%s' has a '%%' that is not %%u or %%%%", where, s);
                        p++;
                }
        return 0;
}

static int get_path_template(json_object *v, const char *where, const char **ret, struct verr *e) {
        int r = get_string(v, where, ret, e);
        if (r < 0)
                return r;
        if ((*ret)[0] != '/')
                return verr_set(e, -EINVAL, "%s: '%s' is not an absolute path", where, *ret);
        return check_template(*ret, where, e);
}

static int get_string_array(struct manifest *m, json_object *v, const char *where, size_t max, bool names,
                            const char *const **ret, struct verr *e) {
        const char **list, ***arrays;
        size_t n;
        int r;

        if (!json_object_is_type(v, json_type_array))
                return verr_set(e, -EINVAL, "%s: is a %s, not an array", where, json_type_to_name(json_object_get_type(v)));
        n = json_object_array_length(v);
        if (n > max)
                return verr_set(e, -E2BIG, "%s: has %zu entries, at most %zu are allowed", where, n, max);
        arrays = realloc(m->arrays, (m->n_arrays + 1) * sizeof(*arrays));
        if (!arrays)
                return -ENOMEM;
        m->arrays = arrays;
        list = calloc(n + 1, sizeof(*list));
        if (!list)
                return -ENOMEM;
        m->arrays[m->n_arrays++] = list;
        for (size_t i = 0; i < n; i++) {
                char w[256];
                snprintf(w, sizeof(w), "%s[%zu]", where, i);
                r = get_string(json_object_array_get_idx(v, i), w, &list[i], e);
                if (r < 0)
                        return r;
                if (names && !name_is_valid(list[i]))
                        return verr_set(e, -EINVAL, "%s: '%s' is not a valid group name", w, list[i]);
                if (!names && !path_is_normalized_absolute(list[i]))
                        return verr_set(e, -EINVAL, "%s: '%s' is not a normalized absolute path", w, list[i]);
        }
        *ret = list;
        return 0;
}

/* One option key of a user entry or of "defaults": 1 handled, 0 not an option key, <0 error. */
static int parse_option(struct manifest *m, const char *key, json_object *v, const char *where,
                        struct manifest_user_options *o, struct verr *e) {
        char w[256];
        const char *s;
        int r;

        snprintf(w, sizeof(w), "%s.%s", where, key);
        if (streq(key, "groups"))
                r = get_string_array(m, v, w, MANIFEST_GROUPS_MAX, true, &o->groups, e);
        else if (streq(key, "sshKeyFiles"))
                r = get_string_array(m, v, w, MANIFEST_KEY_FILES_MAX, false, &o->ssh_key_files, e);
        else if (streq(key, "shell")) {
                r = get_string(v, w, &s, e);
                if (r < 0)
                        return r;
                if (streq(s, "no"))
                        o->shell = MANIFEST_SHELL_GUEST_DEFAULT;
                else if (streq(s, "yes"))
                        o->shell = MANIFEST_SHELL_FROM_HOST;
                else if (path_is_normalized_absolute(s)) {
                        o->shell = MANIFEST_SHELL_PATH;
                        o->shell_path = s;
                } else
                        return verr_set(e, -EINVAL, "%s: '%s' is neither yes, no nor an absolute path", w, s);
        } else if (streq(key, "homeDir"))
                r = get_path_template(v, w, &o->home_dir, e);
        else if (streq(key, "homeSource"))
                r = get_path_template(v, w, &o->home_source, e);
        else if (streq(key, "homeTag")) {
                r = get_string(v, w, &o->home_tag, e);
                if (r >= 0)
                        r = check_template(o->home_tag, w, e);
        } else if (streq(key, "homeFstype")) {
                r = get_string(v, w, &o->home_fstype, e);
                if (r >= 0 && !streq(o->home_fstype, "virtiofs") && !streq(o->home_fstype, "tmpfs") &&
                    !streq(o->home_fstype, "bind"))
                        return verr_set(e, -EINVAL, "%s: '%s' is not virtiofs, tmpfs or bind", w, o->home_fstype);
        } else if (streq(key, "readOnly"))
                r = get_bool(v, w, &o->read_only, e);
        else if (streq(key, "home")) {
                int home = 1;
                r = get_bool(v, w, &home, e);
                o->no_home = !home;
        } else if (streq(key, "password")) {
                int b = 1;
                r = get_bool(v, w, &b, e);
                o->no_password = !b;
        } else if (streq(key, "authorizedKeys")) {
                int b = 1;
                r = get_bool(v, w, &b, e);
                o->no_authorized_keys = !b;
        } else
                return 0;
        return r < 0 ? r : 1;
}

static int check_options(const struct manifest_user_options *o, const char *where, struct verr *e) {
        if (o->no_home == 1 && (o->home_tag || o->home_source || o->read_only == 1))
                return verr_set(e, -EINVAL, "%s: \"home\": false exports and sends no home; it cannot be combined with %s",
                                where, o->home_tag ? "homeTag" : o->home_source ? "homeSource" : "readOnly");
        if (o->home_tag && o->home_source)
                return verr_set(e, -EINVAL, "%s: homeSource names what to export, homeTag sends a tag without exporting: "
                                            "use one of them", where);
        if (o->home_fstype && !o->home_tag)
                return verr_set(e, -EINVAL, "%s: homeFstype needs homeTag", where);
        return 0;
}

static void options_init(struct manifest_user_options *o) {
        *o = (struct manifest_user_options) { .read_only = -1, .no_home = -1, .no_password = -1, .no_authorized_keys = -1 };
}

static int parse_defaults(struct manifest *m, json_object *v, struct verr *e) {
        int r;

        if (!json_object_is_type(v, json_type_object))
                return verr_set(e, -EINVAL, "defaults: is a %s, not an object", json_type_to_name(json_object_get_type(v)));
        json_object_object_foreach(v, key, val) {
                r = parse_option(m, key, val, "defaults", &m->defaults, e);
                if (r < 0)
                        return r;
                if (r == 0)
                        return verr_set(e, -EINVAL, "defaults: unknown key '%s'", key);
        }
        return check_options(&m->defaults, "defaults", e);
}

static int parse_user(struct manifest *m, json_object *v, const char *where, struct manifest_user *u, struct verr *e) {
        int r;

        options_init(&u->options);
        if (json_object_is_type(v, json_type_string)) {
                r = get_string(v, where, &u->name, e);
                if (r < 0)
                        return r;
                if (!name_is_valid(u->name))
                        return verr_set(e, -EINVAL, "%s: '%s' is not a valid user name", where, u->name);
                return 0;
        }
        if (!json_object_is_type(v, json_type_object))
                return verr_set(e, -EINVAL, "%s: is a %s, not a user name or an object", where,
                                json_type_to_name(json_object_get_type(v)));
        json_object_object_foreach(v, key, val) {
                char w[256];
                snprintf(w, sizeof(w), "%s.%s", where, key);
                if (streq(key, "user") || streq(key, "group")) {
                        if (u->name)
                                return verr_set(e, -EINVAL, "%s: has both \"user\" and \"group\"", where);
                        r = get_string(val, w, &u->name, e);
                        if (r < 0)
                                return r;
                        u->is_group = streq(key, "group");
                        if (!name_is_valid(u->name))
                                return verr_set(e, -EINVAL, "%s: '%s' is not a valid %s name", w, u->name, key);
                        continue;
                }
                r = parse_option(m, key, val, where, &u->options, e);
                if (r < 0)
                        return r;
                if (r == 0)
                        return verr_set(e, -EINVAL, "%s: unknown key '%s'", where, key);
        }
        if (!u->name)
                return verr_set(e, -EINVAL, "%s: needs \"user\" or \"group\"", where);
        return check_options(&u->options, where, e);
}

static int parse_vm(struct manifest *m, json_object *v, size_t index, struct manifest_vm *vm, struct verr *e) {
        json_object *users = NULL;
        char where[64];
        int r;

        snprintf(where, sizeof(where), "vms[%zu]", index);
        if (!json_object_is_type(v, json_type_object))
                return verr_set(e, -EINVAL, "%s: is a %s, not an object", where, json_type_to_name(json_object_get_type(v)));
        json_object_object_foreach(v, key, val) {
                char w[96];
                snprintf(w, sizeof(w), "%s.%s", where, key);
                if (streq(key, "vm")) {
                        r = get_string(val, w, &vm->pattern, e);
                        if (r < 0)
                                return r;
                } else if (streq(key, "users")) {
                        if (!json_object_is_type(val, json_type_array))
                                return verr_set(e, -EINVAL, "%s: is a %s, not an array", w,
                                                json_type_to_name(json_object_get_type(val)));
                        users = val;
                } else
                        return verr_set(e, -EINVAL, "%s: unknown key '%s' (an entry has \"vm\" and \"users\")", where, key);
        }
        if (!vm->pattern)
                return verr_set(e, -EINVAL, "%s: needs \"vm\"", where);
        if (!users)
                return verr_set(e, -EINVAL, "%s (\"%s\"): needs \"users\" (an empty list detaches everyone)", where,
                                vm->pattern);
        vm->n_users = json_object_array_length(users);
        if (vm->n_users > MANIFEST_USERS_MAX)
                return verr_set(e, -E2BIG, "%s.users: has %zu entries, at most %d are allowed", where, vm->n_users,
                                MANIFEST_USERS_MAX);
        vm->users = calloc(vm->n_users ? vm->n_users : 1, sizeof(*vm->users));
        if (!vm->users)
                return -ENOMEM;
        for (size_t i = 0; i < vm->n_users; i++) {
                char w[96];
                snprintf(w, sizeof(w), "%s.users[%zu]", where, i);
                r = parse_user(m, json_object_array_get_idx(users, i), w, &vm->users[i], e);
                if (r < 0)
                        return r;
        }
        return 0;
}

int manifest_parse(const char *text, size_t len, struct manifest **ret, struct verr *e) {
        struct manifest *m = NULL;
        json_object *vms = NULL;
        int r;

        if (len > MANIFEST_SIZE_MAX)
                return verr_set(e, -E2BIG, "is larger than %d bytes", MANIFEST_SIZE_MAX);
        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        options_init(&m->defaults);
        r = json_parse_strict(text, len, &m->root);
        if (r < 0) {
                r = verr_set(e, r, "is not one valid JSON value (nested at most %d deep)", VMUSER_JSON_MAX_DEPTH);
                goto fail;
        }
        if (!json_object_is_type(m->root, json_type_object)) {
                r = verr_set(e, -EINVAL, "is a JSON %s, not an object with \"vms\"",
                             json_type_to_name(json_object_get_type(m->root)));
                goto fail;
        }
        json_object_object_foreach(m->root, key, val) {
                if (streq(key, "vms")) {
                        if (!json_object_is_type(val, json_type_array)) {
                                r = verr_set(e, -EINVAL, "vms: is a %s, not an array",
                                             json_type_to_name(json_object_get_type(val)));
                                goto fail;
                        }
                        vms = val;
                } else if (streq(key, "defaults")) {
                        r = parse_defaults(m, val, e);
                        if (r < 0)
                                goto fail;
                } else {
                        r = verr_set(e, -EINVAL, "unknown top-level key '%s' (expected \"vms\" and \"defaults\")", key);
                        goto fail;
                }
        }
        if (!vms) {
                r = verr_set(e, -EINVAL, "has no \"vms\" list");
                goto fail;
        }
        m->n_vms = json_object_array_length(vms);
        if (m->n_vms > MANIFEST_VMS_MAX) {
                r = verr_set(e, -E2BIG, "vms: has %zu entries, at most %d are allowed", m->n_vms, MANIFEST_VMS_MAX);
                goto fail;
        }
        m->vms = calloc(m->n_vms ? m->n_vms : 1, sizeof(*m->vms));
        if (!m->vms) {
                r = -ENOMEM;
                goto fail;
        }
        for (size_t i = 0; i < m->n_vms; i++) {
                r = parse_vm(m, json_object_array_get_idx(vms, i), i, &m->vms[i], e);
                if (r < 0)
                        goto fail;
        }
        for (size_t i = 0; i < m->n_vms; i++)
                for (size_t k = 0; k < m->vms[i].n_users; k++) {
                        char where[96];
                        struct manifest_user_options merged = m->vms[i].users[k].options;
                        manifest_options_merge(&merged, &m->defaults);
                        snprintf(where, sizeof(where), "vms[%zu].users[%zu] (with the defaults)", i, k);
                        r = check_options(&merged, where, e);
                        if (r < 0)
                                goto fail;
                }
        *ret = m;
        return 0;
fail:
        manifest_free(m);
        return r;
}

int manifest_load(const char *path, struct manifest **ret, struct verr *e) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        struct verr why = {};
        int r;

        fd = streq(path, "-") ? dup(STDIN_FILENO) : open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return verr_set(e, -errno, "cannot open the manifest '%s': %s", path, strerror(errno));
        buf = malloc(MANIFEST_SIZE_MAX + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t n = read(fd, buf + len, MANIFEST_SIZE_MAX + 1 - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return verr_set(e, -errno, "cannot read the manifest '%s': %s", path, strerror(errno));
                }
                if (n == 0)
                        break;
                len += (size_t) n;
                if (len > MANIFEST_SIZE_MAX)
                        return verr_set(e, -E2BIG, "the manifest '%s' is larger than %d bytes", path, MANIFEST_SIZE_MAX);
        }
        r = manifest_parse(buf, len, ret, &why);
        if (r < 0)
                return verr_set(e, r, "manifest '%s': %s", path, verr_text(&why, r));
        return 0;
}
