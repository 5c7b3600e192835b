/* home-spec.c: validation of home specs and home paths, and their translation into mount(2)
 * arguments (see home-spec.h). Pure functions: no mount happens here. */
#include "home-spec.h"

#include <errno.h>
#include <string.h>
#include <sys/mount.h>

#include "json-util.h"
#include "macro.h"

static const char *const fstype_names[] = {
        [HOME_FSTYPE_VIRTIOFS] = "virtiofs",
        [HOME_FSTYPE_TMPFS] = "tmpfs",
        [HOME_FSTYPE_BIND] = "bind",
};

const char *home_fstype_to_string(enum home_fstype t) {
        return (size_t) t < ELEMENTSOF(fstype_names) ? fstype_names[t] : NULL;
}

static bool char_is_path_safe(char c) {
        return c > 0x20 && c < 0x7f && c != ':' && c != '\\';
}

bool path_is_normalized_absolute(const char *path) {
        size_t n;

        if (!path || path[0] != '/')
                return false;
        n = strlen(path);
        if (n < 2 || n > HOME_PATH_MAX || path[n - 1] == '/')
                return false;
        for (const char *p = path; *p; p++)
                if (!char_is_path_safe(*p))
                        return false;
        /* Each component: not empty, not "." and not "..". */
        for (const char *p = path; *p;) {
                const char *c = p + 1, *end = strchrnul(c, '/');
                size_t len = (size_t) (end - c);
                if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
                        return false;
                p = end;
        }
        return true;
}

bool home_path_is_valid(const char *path) {
        static const char *const roots[] = { "/home/", "/run/vmhost/", "/var/home/", "/srv/", "/mnt/" };

        if (!path_is_normalized_absolute(path))
                return false;
        for (size_t i = 0; i < ELEMENTSOF(roots); i++)
                if (strncmp(path, roots[i], strlen(roots[i])) == 0)
                        return true;
        return false;
}

static bool tag_is_valid(const char *tag) {
        size_t n = strlen(tag);

        if (n == 0 || n > HOME_SPEC_TAG_MAX)
                return false;
        for (const char *p = tag; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '.' || *p == '_' || *p == '-'))
                        return false;
        return true;
}

struct flag_option {
        const char *name;
        unsigned long set;
        unsigned long clear;
};

static const struct flag_option flag_options[] = {
        { "ro", MS_RDONLY, 0 },
        { "rw", 0, MS_RDONLY },
        { "noexec", MS_NOEXEC, 0 },
        { "noatime", MS_NOATIME, 0 },
        { "relatime", MS_RELATIME, 0 },
        { "nodiratime", MS_NODIRATIME, 0 },
        { "lazytime", MS_LAZYTIME, 0 },
        { "sync", MS_SYNCHRONOUS, 0 },
        { "dirsync", MS_DIRSYNC, 0 },
        /* Accepted and implied anyway. */
        { "nosuid", MS_NOSUID, 0 },
        { "nodev", MS_NODEV, 0 },
};

static bool value_is_digits(const char *v, size_t n, const char *allowed_suffixes, bool octal) {
        if (n == 0)
                return false;
        if (allowed_suffixes && strchr(allowed_suffixes, v[n - 1]))
                n--;
        if (n == 0 || n > 12)
                return false;
        for (size_t i = 0; i < n; i++)
                if (v[i] < '0' || v[i] > (octal ? '7' : '9'))
                        return false;
        return true;
}

/* Walks the comma-separated options: flag words into *flags, data options (tmpfs size=/mode=)
 * appended to data (when data is not NULL). */
static int parse_options(const char *options, enum home_fstype fstype, unsigned long *flags, char *data,
                         struct verr *e) {
        size_t data_len = 0;

        if (data)
                data[0] = '\0';
        for (const char *p = options; *p;) {
                const char *end = strchrnul(p, ',');
                size_t n = (size_t) (end - p);
                bool known = false;

                if (n == 0)
                        return verr_set(e, -EINVAL, "home options '%s' contain an empty option", options);

                for (size_t i = 0; i < ELEMENTSOF(flag_options); i++)
                        if (strlen(flag_options[i].name) == n && strncmp(p, flag_options[i].name, n) == 0) {
                                *flags = (*flags | flag_options[i].set) & ~flag_options[i].clear;
                                known = true;
                        }

                if (!known && fstype == HOME_FSTYPE_TMPFS &&
                    ((n > 5 && strncmp(p, "size=", 5) == 0 && value_is_digits(p + 5, n - 5, "kmg", false)) ||
                     (n > 5 && strncmp(p, "mode=", 5) == 0 && value_is_digits(p + 5, n - 5, NULL, true)))) {
                        if (data) {
                                if (data_len + n + 2 > HOME_SPEC_OPTIONS_MAX)
                                        return verr_set(e, -EINVAL, "home options '%s' are too long", options);
                                if (data_len > 0)
                                        data[data_len++] = ',';
                                memcpy(data + data_len, p, n);
                                data_len += n;
                                data[data_len] = '\0';
                        }
                        known = true;
                }

                if (!known)
                        return verr_set(e, -EINVAL, "home option '%.*s' is not accepted for %s", (int) n, p,
                                        home_fstype_to_string(fstype));
                p = *end ? end + 1 : end;
        }
        return 0;
}

int home_spec_from_json(json_object *obj, struct home_spec *ret, struct verr *e) {
        struct home_spec spec = {};
        const char *fstype, *tag, *options = "";
        unsigned long flags = 0;
        int r;

        if (!json_object_is_type(obj, json_type_object))
                return verr_set(e, -EINVAL, "'home' must be an object");

        json_object_object_foreach(obj, key, val) {
                (void) val;
                if (!streq(key, "tag") && !streq(key, "fstype") && !streq(key, "options"))
                        return verr_set(e, -EINVAL, "unknown field '%s' in home spec", key);
        }

        r = json_get_string(obj, "fstype", &fstype);
        if (r == -ENOENT)
                fstype = "virtiofs";
        else if (r < 0)
                return verr_set(e, -EINVAL, "home field 'fstype' must be a string");
        if (streq(fstype, "virtiofs"))
                spec.fstype = HOME_FSTYPE_VIRTIOFS;
        else if (streq(fstype, "tmpfs"))
                spec.fstype = HOME_FSTYPE_TMPFS;
        else if (streq(fstype, "bind"))
                spec.fstype = HOME_FSTYPE_BIND;
        else
                return verr_set(e, -EINVAL, "home fstype '%s' is not one of virtiofs, tmpfs, bind", fstype);

        r = json_get_string(obj, "tag", &tag);
        if (r < 0)
                return verr_set(e, -EINVAL, "home field 'tag' is %s", r == -ENOENT ? "missing" : "not a string");
        if (spec.fstype == HOME_FSTYPE_BIND ? !path_is_normalized_absolute(tag) : !tag_is_valid(tag))
                return verr_set(e, -EINVAL, "home tag '%s' is not valid for %s", tag, fstype);

        r = json_get_string(obj, "options", &options);
        if (r < 0 && r != -ENOENT)
                return verr_set(e, -EINVAL, "home field 'options' must be a string");
        if (r == -ENOENT)
                options = "";
        if (strlen(options) > HOME_SPEC_OPTIONS_MAX)
                return verr_set(e, -EINVAL, "home options are longer than %u bytes", HOME_SPEC_OPTIONS_MAX);
        r = parse_options(options, spec.fstype, &flags, NULL, e);
        if (r < 0)
                return r;

        strcpy(spec.tag, tag);
        strcpy(spec.options, options);
        *ret = spec;
        return 0;
}

int home_spec_to_json(const struct home_spec *spec, json_object **ret) {
        _cleanup_json_ json_object *obj = json_object_new_object();

        if (!obj)
                return -ENOMEM;
        if (json_object_object_add(obj, "tag", json_object_new_string(spec->tag)) < 0 ||
            json_object_object_add(obj, "fstype", json_object_new_string(home_fstype_to_string(spec->fstype))) < 0 ||
            json_object_object_add(obj, "options", json_object_new_string(spec->options)) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(obj);
        return 0;
}

int home_spec_mount_args(const struct home_spec *spec, const char **ret_source, const char **ret_fstype,
                         unsigned long *ret_flags, char *data) {
        unsigned long flags = MS_NOSUID | MS_NODEV;
        int r;

        r = parse_options(spec->options, spec->fstype, &flags, data, NULL);
        if (r < 0)
                return r;
        flags |= MS_NOSUID | MS_NODEV;
        if (spec->fstype == HOME_FSTYPE_BIND)
                flags |= MS_BIND;

        *ret_source = spec->tag;
        *ret_fstype = spec->fstype == HOME_FSTYPE_BIND ? NULL : home_fstype_to_string(spec->fstype);
        *ret_flags = flags;
        return 0;
}
